//! The Edgeplane MQTT broker core: listeners, connections, sessions, the partitioned router
//! and, with a data folder, the durable store behind them.
//!
//! [`Broker::start`] binds the listeners and spawns the router partitions on the current
//! Tokio runtime; [`Broker::shutdown`] stops accepting, tells MQTT 5 clients the server is
//! shutting down (DISCONNECT 0x8B) after writing what was already queued for them, and waits
//! for connections to close.

pub mod auth;
mod client_events;
mod connection;
mod listener;
mod local;
pub mod message;
mod retain;
mod router;
pub mod selfcheck;
pub mod settings;
pub mod stats;
pub mod store;
mod sys;
pub mod tls;
pub mod ws;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use client_events::{ClientEvent, ClientEventReceiver};
pub use edgeplane_config::Protocol;
pub use listener::{BoundListener, ConnectionLimits, ListenerSpec};
pub use local::{LocalClient, LocalError, LocalFactory, LocalOptions, Received};
pub use router::{ClientInfo, ClientList};
pub use settings::Settings;
pub use stats::Stats;

use connection::Context;
use router::Router;

/// How long [`Broker::clients`] waits for the partitions' answers.
pub const CLIENTS_WAIT: Duration = Duration::from_secs(2);

/// Most entries [`Broker::clients`] callers should ask for (the portal's page shows this many).
pub const CLIENTS_SHOWN: usize = 1000;

impl LocalFactory {
    /// The connected clients, as [`Broker::clients`], for services that hold a factory.
    pub async fn clients(&self, limit: usize) -> ClientList {
        self.0.router.clients(limit, CLIENTS_WAIT).await
    }
}

/// A running broker.
pub struct Broker {
    router: Arc<Router>,
    ctx: Arc<Context>,
    listeners: Vec<BoundListener>,
    shutdown: watch::Sender<bool>,
    live: Arc<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot listen on {addr} for listener {name:?}: {source}; is another broker running there?"
    )]
    Bind {
        name: String,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl Broker {
    /// Bind every listener and start serving. Must be called inside a Tokio runtime.
    pub async fn start(
        settings: Settings,
        listeners: Vec<ListenerSpec>,
    ) -> Result<Broker, StartError> {
        let settings = Arc::new(settings);
        let stats = Arc::new(Stats::default());
        let mut bound = Vec::new();
        for spec in &listeners {
            let l = TcpListener::bind(spec.bind)
                .await
                .map_err(|source| StartError::Bind {
                    name: spec.name.clone(),
                    addr: spec.bind,
                    source,
                })?;
            let addr = l.local_addr().unwrap_or(spec.bind);
            let info = BoundListener {
                name: spec.name.clone(),
                addr,
                protocol: spec.protocol,
                tls: spec.tls.is_some(),
            };
            let port = listener::Port {
                name: spec.name.as_str().into(),
                protocol: spec.protocol,
                tls: spec.tls.clone(),
                auth: Arc::clone(&spec.auth),
                limits: spec.limits,
            };
            bound.push((l, info, port));
        }
        let store = match &settings.data_dir {
            Some(dir) => {
                let policy = store::Policy::new(settings.persistence.clone());
                Some(store::Store::open(dir, policy, settings.store.clone())?)
            }
            None => None,
        };
        let router = Router::start(Arc::clone(&settings), Arc::clone(&stats), store);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Context {
            router: Arc::clone(&router),
            settings: Arc::clone(&settings),
            stats,
            next_conn_id: AtomicU64::new(1),
        });
        let live = Arc::new(());
        let mut listeners = Vec::new();
        for (l, info, port) in bound {
            tracing::info!(listener = %info.name, addr = %info.addr, protocol = ?info.protocol, tls = info.tls, "listening");
            let task = listener::accept_loop(
                l,
                port,
                Arc::clone(&ctx),
                shutdown_rx.clone(),
                Arc::clone(&live),
            );
            tokio::spawn(task);
            listeners.push(info);
        }
        if let Some(period) = settings.sys_interval {
            let r = Arc::clone(&router);
            let mut stop = shutdown_rx;
            tokio::spawn(async move {
                tokio::select! {
                    _ = sys::run(r, period) => {}
                    _ = stop.changed() => {}
                }
            });
        }
        Ok(Broker {
            router,
            ctx,
            listeners,
            shutdown,
            live,
        })
    }

    /// A handle that attaches in-process clients, for services running in their own tasks.
    pub fn local_factory(&self) -> LocalFactory {
        LocalFactory(Arc::clone(&self.ctx))
    }

    /// Attach an in-process client (state store, self-check, dataflows, connectors): a
    /// session like any other, reached through channels instead of a socket.
    pub async fn local_client(&self, options: LocalOptions) -> Result<LocalClient, LocalError> {
        LocalClient::connect(Arc::clone(&self.ctx), options).await
    }

    /// The connected clients (in-process services left out): at most `limit`, sorted by
    /// client id, with the total count. Every partition is asked and the answers gathered
    /// for at most [`CLIENTS_WAIT`]; `complete` is false if one did not answer in time.
    pub async fn clients(&self, limit: usize) -> ClientList {
        self.router.clients(limit, CLIENTS_WAIT).await
    }

    /// Client lifecycle events (disconnections) from now on, for in-process services that
    /// keep per-client state. Lossless: the listener has its own queue, so none is missed
    /// however many clients go at once; read it continuously.
    pub fn client_events(&self) -> ClientEventReceiver {
        self.router.events.subscribe()
    }

    /// The listeners as bound (with the real port when 0 was asked for).
    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Address of the first listener of `protocol`.
    pub fn addr(&self, protocol: Protocol) -> Option<std::net::SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.protocol == protocol)
            .map(|l| l.addr)
    }

    pub fn stats(&self) -> &Stats {
        &self.router.stats
    }

    /// The broker's counters, shared with readers that outlive a borrow of the broker
    /// (the metrics endpoint).
    pub fn stats_handle(&self) -> Arc<Stats> {
        Arc::clone(&self.router.stats)
    }

    /// Graceful shutdown: stop accepting, send DISCONNECT 0x8B to MQTT 5 clients after what
    /// was queued for them, and wait (at most `grace`) for connections to close.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        self.router.shutdown_connections();
        let deadline = tokio::time::Instant::now() + grace;
        // Every accept loop and connection task holds a clone of `live`.
        while Arc::strong_count(&self.live) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(store) = self.router.store.clone() {
            // Sessions record their disconnection; then the writer finishes and stops.
            tokio::time::sleep(Duration::from_millis(50)).await;
            tokio::task::spawn_blocking(move || store.close())
                .await
                .ok();
        }
    }

    /// With a data folder: a probe that tells why the durable store cannot write at the
    /// moment (disk full, I/O error), or `None` while it can.
    pub fn store_probe(&self) -> Option<impl Fn() -> Option<String> + Send + 'static> {
        let store = self.router.store.clone()?;
        Some(move || store.failing())
    }
}
