//! Edgeplane's HTTP server: Prometheus metrics, liveness and readiness, the REST API and
//! the operations portal.
//!
//! [`Portal::start`] binds two listeners and serves them on the current Tokio runtime:
//!
//! - the **HTTP address** (`edgeplane run --http`) answers `GET /healthz` (200 while the
//!   process serves), `GET /readyz` (200 when every [`Readiness`] check passes, else 503
//!   naming the failing ones), `GET /metrics`, and, when started with [`Services`]
//!   ([`Portal::start_with_services`]), the REST API under `/api/v1/` behind sign-in
//!   (`auth.rs`, sessions lasting the [`SessionLifetime`] of `lifetime.rs`; devices and
//!   assets `api.rs`, dataflows `flows.rs`, broker and topic explorer `live.rs`, state
//!   store `store.rs`, certificates `certs.rs`, activity log `activity.rs`, export
//!   `export.rs`) and the single-page app at `/` (`ui.rs`);
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

// Helpers return the HTTP refusal itself as their error: it is built on the cold path and
// handed straight back to axum, so boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

mod activity;
mod api;
mod auth;
mod certs;
mod export;
mod flows;
mod health;
mod lifetime;
mod live;
pub mod metrics;
mod otlp;
mod otlp_http;
mod store;
mod ui;
mod yaml;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use edgeplane_broker::{LocalFactory, Stats};
use edgeplane_dataflow::runtime::StatusBoard;
use edgeplane_registry::Registry;
use edgeplane_statestore::StateStoreHandle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use auth::{COOKIE, CSRF_HEADER, MAX_SESSIONS_PER_USER};
pub use certs::{Pki, RejectedCertificate};
pub use health::{Check, Readiness, Report};
pub use lifetime::{SessionLifetime, SessionLifetimeError};
pub use otlp::OtlpSettings;
pub use otlp_http::Collector;
pub use ui::first_load_bytes;

/// What the API and the portal serve. Only the registry is required; a missing part makes
/// its pages and calls report that it is not attached.
#[derive(Clone)]
pub struct Services {
    pub registry: Registry,
    /// In-process clients of the broker (topic explorer, retained messages).
    pub broker: Option<LocalFactory>,
    pub state: Option<StateStoreHandle>,
    /// The running dataflows' health and counters.
    pub dataflows: Option<StatusBoard>,
    /// The configuration folder: dataflows are read from it and written to it.
    pub config_dir: Option<std::path::PathBuf>,
    /// The data folder: portal users and the activity log are kept there.
    pub data_dir: Option<std::path::PathBuf>,
    pub pki: Option<Pki>,
    /// How long a portal session lasts after sign-in (`edgeplane run --session-lifetime`).
    pub session_lifetime: SessionLifetime,
}

impl Services {
    /// Only a registry: the devices and assets API.
    pub fn registry(registry: Registry) -> Services {
        Services {
            registry,
            broker: None,
            state: None,
            dataflows: None,
            config_dir: None,
            data_dir: None,
            pki: None,
            session_lifetime: SessionLifetime::DEFAULT,
        }
    }
}

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
    scrape: Scrape,
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
        Self::start_with_services(
            http,
            metrics,
            stats,
            readiness,
            registry.map(Services::registry),
        )
        .await
    }

    /// [`Portal::start`], also serving the REST API and the portal over `services`.
    pub async fn start_with_services(
        http: &Listen,
        metrics: &Listen,
        stats: Arc<Stats>,
        readiness: Readiness,
        services: Option<Services>,
    ) -> Result<Portal, PortalError> {
        let http_listener = bind("the HTTP API", http).await?;
        let metrics_listener = bind("metrics", metrics).await?;
        let http_addr = http_listener.local_addr().unwrap_or(http.addr);
        let metrics_addr = metrics_listener.local_addr().unwrap_or(metrics.addr);
        tracing::info!(addr = %http_addr, "http listening");
        tracing::info!(addr = %metrics_addr, "metrics listening");
        let sources: Arc<parking_lot::RwLock<Vec<MetricsSource>>> = Arc::default();
        let scrape = Scrape {
            stats: Arc::clone(&stats),
            sources: Arc::clone(&sources),
        };
        let state = AppState {
            scrape: scrape.clone(),
            readiness,
        };
        let mut tasks = Vec::new();
        let api = services.map(|s| {
            let live = live::Live {
                stats,
                broker: s.broker.clone(),
                history: Arc::default(),
            };
            tasks.push(live::spawn_sampler(&live));
            api_router(s, live)
        });
        tasks.push(tokio::spawn(serve(
            "http",
            http_listener,
            http_router(state.clone(), api),
        )));
        tasks.push(tokio::spawn(serve(
            "metrics",
            metrics_listener,
            metrics_router(scrape.clone()),
        )));
        Ok(Portal {
            http_addr,
            metrics_addr,
            tasks,
            sources,
            scrape,
        })
    }

    /// Push the `/metrics` families to an OpenTelemetry collector every interval (OTLP/HTTP),
    /// until the portal is dropped.
    pub fn export_otlp(&mut self, settings: OtlpSettings) {
        tracing::info!(url = %settings.collector.url(), interval = ?settings.interval, "exporting metrics over otlp");
        let scrape = self.scrape.clone();
        self.tasks
            .push(tokio::spawn(otlp::run(settings, move || scrape.render())));
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

/// Everything behind sign-in, the sign-in calls themselves, and the portal's files.
fn api_router(s: Services, live: live::Live) -> Router {
    let auth = auth::Auth::open(s.data_dir.as_deref(), s.session_lifetime);
    let activity = activity::Activity::open(s.data_dir.as_deref());
    let flows = flows::Flows {
        config_dir: s.config_dir.clone(),
        board: s.dataflows.clone(),
        activity: activity.clone(),
    };
    let sign_in = Router::new()
        .route("/api/v1/session", get(auth::session))
        .route("/api/v1/setup", post(auth::setup))
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/logout", post(auth::logout))
        .route("/api/v1/users", get(auth::list_users).post(auth::add_user))
        .route("/api/v1/users/{name}", delete(auth::delete_user))
        .with_state(auth::AuthState {
            auth: auth.clone(),
            activity: activity.clone(),
        });
    Router::new()
        .merge(sign_in)
        .merge(api::router(api::RegistryApi {
            registry: s.registry.clone(),
            activity: activity.clone(),
        }))
        .merge(flows::router(flows.clone()))
        .merge(live::router(live))
        .merge(store::router(store::StateApi {
            store: s.state,
            activity: activity.clone(),
        }))
        .merge(certs::router(certs::Certs {
            pki: s.pki,
            activity: activity.clone(),
        }))
        .merge(export::router(export::Export {
            registry: s.registry,
            flows,
        }))
        .route("/api/v1/activity", get(activity::list).with_state(activity))
        .layer(axum::middleware::from_fn_with_state(
            auth,
            auth::require_session,
        ))
        .merge(ui::router())
}

/// `/healthz`, `/readyz`, `/metrics` and, with services, `/api/v1/` and the portal.
fn http_router(state: AppState, api: Option<Router>) -> Router {
    let served = if api.is_some() {
        "not found: this address serves /healthz, /readyz, /metrics, /api/v1/ and the portal at /\n"
    } else {
        "not found: this address serves /healthz, /readyz and /metrics\n"
    };
    let api = api.unwrap_or_default();
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

impl Scrape {
    /// The whole exposition: the broker's families, then each component's.
    fn render(&self) -> String {
        let mut text = metrics::render(&self.stats);
        for source in self.sources.read().iter() {
            source(&mut text);
        }
        text
    }
}

async fn prometheus(State(scrape): State<Scrape>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        scrape.render(),
    )
}
