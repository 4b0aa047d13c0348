//! Edgeplane's HTTP server: Prometheus metrics, liveness and readiness, and the REST API.
//!
//! [`Portal::start`] binds two listeners and serves them on the current Tokio runtime:
//!
//! - the **HTTP address** (`edgeplane run --http`, the future API and portal) answers
//!   `GET /healthz` (200 while the process serves), `GET /readyz` (200 when every
//!   [`Readiness`] check passes, else 503 naming the failing ones), `GET /metrics`, and,
//!   when started with a registry ([`Portal::start_with_registry`]), the REST API under
//!   `/api/v1/` (devices and assets, see `api.rs`);
//! - the **metrics address** (Azure IoT Operations' `diagnostics.metrics.prometheusPort`,
//!   9600) answers `GET /metrics` only, so it can be opened to a scraper without exposing
//!   anything else.
//!
//! Data enters as the broker's shared [`Stats`] (read with relaxed loads on each scrape: the
//! data path does no extra work for metrics) and the [`Check`]s components flip; it leaves as
//! text responses. Nothing here holds a lock the broker takes.
//!
//! Built on axum with only `http1` and `tokio`: no forms, query strings or HTTP/2, which
//! keeps the dependency tree to hyper, hyper-util and tower's core. The API reads bodies as
//! text and writes JSON with serde_json itself (the manifests are validated by the
//! configuration crate, not deserialized by axum).

mod api;
mod health;
pub mod metrics;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use edgeplane_broker::Stats;
use edgeplane_registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use health::{Check, Readiness, Report};

/// An address to listen on, and where it was configured (for error messages).
#[derive(Debug, Clone)]
pub struct Listen {
    pub addr: SocketAddr,
    /// The flag or field that chose `addr`, such as `--http`.
    pub origin: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error(
        "cannot listen on {addr} for {purpose} (set by {origin}): {source}; \
         stop what holds that address or choose another one"
    )]
    Bind {
        purpose: &'static str,
        addr: SocketAddr,
        origin: String,
        source: io::Error,
    },
}

/// More metrics for `/metrics`, from a component outside the broker (dataflows,
/// connectors): it appends whole families in the text exposition format.
pub type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;

/// The running HTTP server; dropping it stops serving.
pub struct Portal {
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    sources: Arc<parking_lot::RwLock<Vec<MetricsSource>>>,
}

impl Portal {
    /// Bind both listeners, then serve them. Must be called inside a Tokio runtime.
    pub async fn start(
        http: &Listen,
        metrics: &Listen,
        stats: Arc<Stats>,
        readiness: Readiness,
    ) -> Result<Portal, PortalError> {
        Self::start_with_registry(http, metrics, stats, readiness, None).await
    }

    /// [`Portal::start`], also serving the REST API over `registry` on the HTTP address.
    pub async fn start_with_registry(
        http: &Listen,
        metrics: &Listen,
        stats: Arc<Stats>,
        readiness: Readiness,
        registry: Option<Registry>,
    ) -> Result<Portal, PortalError> {
        let http_listener = bind("the HTTP API", http).await?;
        let metrics_listener = bind("metrics", metrics).await?;
        let http_addr = http_listener.local_addr().unwrap_or(http.addr);
        let metrics_addr = metrics_listener.local_addr().unwrap_or(metrics.addr);
        tracing::info!(addr = %http_addr, "http listening");
        tracing::info!(addr = %metrics_addr, "metrics listening");
        let sources: Arc<parking_lot::RwLock<Vec<MetricsSource>>> = Arc::default();
        let scrape = Scrape {
            stats,
            sources: Arc::clone(&sources),
        };
        let state = AppState {
            scrape: scrape.clone(),
            readiness,
        };
        let tasks = vec![
            tokio::spawn(serve(
                "http",
                http_listener,
                http_router(state.clone(), registry),
            )),
            tokio::spawn(serve("metrics", metrics_listener, metrics_router(scrape))),
        ];
        Ok(Portal {
            http_addr,
            metrics_addr,
            tasks,
            sources,
        })
    }

    /// Serve `source`'s metrics on `/metrics` (both addresses) from now on.
    pub fn add_metrics(&self, source: MetricsSource) {
        self.sources.write().push(source);
    }

    /// The HTTP address as bound (with the real port when 0 was asked for).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The metrics address as bound.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn bind(purpose: &'static str, listen: &Listen) -> Result<TcpListener, PortalError> {
    TcpListener::bind(listen.addr)
        .await
        .map_err(|source| PortalError::Bind {
            purpose,
            addr: listen.addr,
            origin: listen.origin.clone(),
            source,
        })
}

async fn serve(name: &'static str, listener: TcpListener, router: Router) {
    // axum retries failed accepts itself, so this only ends if the server does.
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(server = name, error = %e, "http server stopped");
    }
}

#[derive(Clone)]
struct AppState {
    scrape: Scrape,
    readiness: Readiness,
}

/// What a scrape of `/metrics` reads.
#[derive(Clone)]
struct Scrape {
    stats: Arc<Stats>,
    sources: Arc<parking_lot::RwLock<Vec<MetricsSource>>>,
}

impl FromRef<AppState> for Scrape {
    fn from_ref(state: &AppState) -> Self {
        state.scrape.clone()
    }
}

impl FromRef<AppState> for Readiness {
    fn from_ref(state: &AppState) -> Self {
        state.readiness.clone()
    }
}

/// `/healthz`, `/readyz`, `/metrics` and, with a registry, `/api/v1/`.
fn http_router(state: AppState, registry: Option<Registry>) -> Router {
    let served = if registry.is_some() {
        "not found: this address serves /healthz, /readyz, /metrics and /api/v1/\n"
    } else {
        "not found: this address serves /healthz, /readyz and /metrics\n"
    };
    let api = registry.map_or_else(Router::new, api::router);
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(prometheus))
        .fallback(move || async move { (StatusCode::NOT_FOUND, served) })
        .with_state(state)
        .merge(api)
}

/// `/metrics` only.
fn metrics_router(scrape: Scrape) -> Router {
    Router::new()
        .route("/metrics", get(prometheus))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                "not found: this address serves /metrics\n",
            )
        })
        .with_state(scrape)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let report = readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, report.text)
}

async fn prometheus(State(scrape): State<Scrape>) -> impl IntoResponse {
    let mut text = metrics::render(&scrape.stats);
    for source in scrape.sources.read().iter() {
        source(&mut text);
    }
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text)
}
