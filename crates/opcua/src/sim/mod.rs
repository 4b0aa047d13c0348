//! An OPC UA server simulator in the spirit of Microsoft's OPC PLC, for tests, demos and
//! trying the connector without a PLC.
//!
//! [`Sim::start`] binds the configured address (port 0 picks a free port), creates the
//! application instance certificate in the PKI directory on first start, and serves the
//! nodes described in [`nodes`]: fast and slow sets of counters, random numbers, sines,
//! trends and toggles, a node whose status is always bad, and an object emitting events.
//! Timer tasks owned by the [`SimHandle`] change the values; [`SimHandle::shutdown`] stops
//! them and the server, freeing the port.
//!
//! Endpoints: security None, Basic256Sha256 Sign and Basic256Sha256 SignAndEncrypt (choose
//! with [`SimConfig::security`]); identities: anonymous (unless disabled) and the
//! configured username/password users.

mod core;
mod manager;
pub mod nodes;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use opcua_crypto::{SecurityPolicy, X509Data};
use opcua_nodes::BaseEventType;
use opcua_server::{
    address_space::NodeType, node_manager::memory::InMemoryNodeManagerBuilder, ServerBuilder,
    ServerHandle, ServerUserToken, ANONYMOUS_USER_TOKEN_ID,
};
use opcua_types::{
    AttributeId, ByteString, DataValue, DateTime, MessageSecurityMode, NodeId, ObjectTypeId,
    UAString,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use self::core::CoreLiteBuilder;
use self::manager::{MonitoredCounts, SimManager, SimManagerBuilder};
use self::nodes::{all_nodes, NodeKind, NodeSet, SimNode};

pub use self::nodes::NAMESPACE_URI;

/// The simulator's application URI (its certificate and namespace 1 carry it).
pub const APPLICATION_URI: &str = "urn:edgeplane:opcua-sim";

/// How often the server looks at its subscriptions, in ms. A notification waits for the
/// first tick after its publishing interval ends, so the tick is kept well below the
/// shortest publishing interval: a 20 ms interval then waits at most 22 ms (a server with
/// a timer per subscription, as most have, would wait 20). Looking costs little when no
/// interval has ended (a time comparison per subscription).
const SUBSCRIPTION_TICK_MS: u64 = 2;

/// The shortest publishing interval the server grants, in ms.
const MIN_PUBLISHING_INTERVAL_MS: f64 = 10.0;

/// Errors starting the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}; pick a free port or use port 0")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// The application instance certificate could not be created or read.
    #[error("no application instance certificate in {0}: check that the directory is writable")]
    Certificate(PathBuf),
}

/// A set of nodes changing together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRate {
    /// How many nodes of each kind.
    pub count: usize,
    /// How often their values change.
    pub interval: Duration,
}

/// A username/password identity the simulator accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimUser {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A security mode and policy the simulator offers an endpoint for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimSecurity {
    /// No signing, no encryption.
    None,
    /// Basic256Sha256, messages signed.
    Basic256Sha256Sign,
    /// Basic256Sha256, messages signed and encrypted.
    Basic256Sha256SignAndEncrypt,
}

impl SimSecurity {
    fn endpoint(self) -> (&'static str, SecurityPolicy, MessageSecurityMode) {
        match self {
            SimSecurity::None => ("none", SecurityPolicy::None, MessageSecurityMode::None),
            SimSecurity::Basic256Sha256Sign => (
                "basic256sha256_sign",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::Sign,
            ),
            SimSecurity::Basic256Sha256SignAndEncrypt => (
                "basic256sha256_sign_encrypt",
                SecurityPolicy::Basic256Sha256,
                MessageSecurityMode::SignAndEncrypt,
            ),
        }
    }
}

/// Simulator settings. The default is OPC PLC's: port 50000 on all interfaces, one fast
/// node of each kind changing every second, one slow node of each kind every 10 seconds.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port ([`SimHandle::endpoint_url`] tells it).
    pub bind: SocketAddr,
    /// Host name put in the endpoint URL; default: the bind IP, or this machine's name
    /// when binding all interfaces.
    pub host_name: Option<String>,
    /// PKI directory: `own/cert.der` and `private/private.pem` (created on first start),
    /// `trusted/` and `rejected/` client certificates.
    pub pki_dir: PathBuf,
    /// The fast node set.
    pub fast: NodeRate,
    /// The slow node set.
    pub slow: NodeRate,
    /// How often `Special.Events` emits an event.
    pub event_interval: Duration,
    /// Username/password identities.
    pub users: Vec<SimUser>,
    /// Whether anonymous sessions are allowed.
    pub allow_anonymous: bool,
    /// Endpoints offered; must not be empty.
    pub security: Vec<SimSecurity>,
    /// Accept any client certificate (OPC PLC's `--aa`); otherwise unknown client
    /// certificates land in `pki_dir/rejected` and secure connections fail.
    pub trust_client_certs: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 50000)),
            host_name: None,
            pki_dir: PathBuf::from("pki"),
            fast: NodeRate {
                count: 1,
                interval: Duration::from_secs(1),
            },
            slow: NodeRate {
                count: 1,
                interval: Duration::from_secs(10),
            },
            event_interval: Duration::from_secs(5),
            users: Vec::new(),
            allow_anonymous: true,
            security: vec![
                SimSecurity::None,
                SimSecurity::Basic256Sha256Sign,
                SimSecurity::Basic256Sha256SignAndEncrypt,
            ],
            trust_client_certs: true,
        }
    }
}

impl SimConfig {
    fn validate(&self) -> Result<(), SimError> {
        let mut problems = Vec::new();
        if self.security.is_empty() {
            problems.push("security lists no endpoint; add at least one".to_owned());
        }
        if !self.allow_anonymous && self.users.is_empty() {
            problems.push("anonymous is off and there are no users; add a user".to_owned());
        }
        for (name, d) in [
            ("fast.interval", self.fast.interval),
            ("slow.interval", self.slow.interval),
            ("event_interval", self.event_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} is zero; use a positive duration"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SimError::Config(problems.join("; ")))
        }
    }
}

/// Entry point; see [`Sim::start`].
pub struct Sim;

impl Sim {
    /// Starts the simulator and returns once it accepts connections. On first start it
    /// creates the certificate, which blocks the calling thread for a moment.
    pub async fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
        cfg.validate()?;
        let listener = TcpListener::bind(cfg.bind)
            .await
            .map_err(|source| SimError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: cfg.bind,
            source,
        })?;
        let host = advertised_host(&cfg, local_addr);
        let endpoint_url = format!("opc.tcp://{host}:{}/", local_addr.port());
        let nodes = all_nodes(cfg.fast.count, cfg.slow.count);
        let counts = Arc::new(MonitoredCounts::default());

        let builder = server_builder(&cfg, &host, local_addr.port(), &endpoint_url)
            .with_node_manager(InMemoryNodeManagerBuilder::new(CoreLiteBuilder {
                application_uri: APPLICATION_URI.to_owned(),
            }))
            .with_node_manager(InMemoryNodeManagerBuilder::new(SimManagerBuilder {
                nodes: nodes.clone(),
                counts: counts.clone(),
            }));
        let (server, handle) = builder.build().map_err(SimError::Config)?;
        let certificate = cfg.pki_dir.join("own/cert.der");
        if cfg.security.iter().any(|s| *s != SimSecurity::None) && !certificate.exists() {
            return Err(SimError::Certificate(cfg.pki_dir.clone()));
        }
        let manager = handle
            .node_managers()
            .get_of_type::<SimManager>()
            .ok_or_else(|| SimError::Config("simulator node manager missing".into()))?;

        let server_task = tokio::spawn(async move {
            if let Err(e) = server.run_with(listener).await {
                tracing::error!(error = %e, "opc ua simulator stopped");
            }
        });
        let tickers = spawn_tickers(&cfg, &nodes, &handle, &manager);
        tracing::info!(%endpoint_url, "opc ua simulator listening");
        Ok(SimHandle {
            endpoint_url,
            local_addr,
            certificate,
            nodes,
            counts,
            handle,
            server_task: Some(server_task),
            tickers,
        })
    }
}

fn advertised_host(cfg: &SimConfig, addr: SocketAddr) -> String {
    if let Some(h) = &cfg.host_name {
        return h.clone();
    }
    match addr.ip() {
        ip if ip.is_unspecified() => X509Data::computer_hostnames()
            .into_iter()
            .next()
            .unwrap_or_else(|| "localhost".to_owned()),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    }
}

fn server_builder(cfg: &SimConfig, host: &str, port: u16, endpoint_url: &str) -> ServerBuilder {
    let mut token_ids: Vec<String> = Vec::new();
    if cfg.allow_anonymous {
        token_ids.push(ANONYMOUS_USER_TOKEN_ID.to_owned());
    }
    let mut builder = ServerBuilder::new()
        .application_name("Edgeplane OPC UA simulator")
        .application_uri(APPLICATION_URI)
        .product_uri("urn:edgeplane:opcua-sim:product")
        .create_sample_keypair(true)
        .pki_dir(&cfg.pki_dir)
        .trust_client_certs(cfg.trust_client_certs)
        .host(host.trim_start_matches('[').trim_end_matches(']'))
        .port(port)
        .discovery_urls(vec![endpoint_url.to_owned()])
        // The library checks subscriptions every 100 ms and refuses faster sampling and
        // publishing, so a value waited up to 100 ms before it was even looked at. Like
        // OPC PLC, serve what clients ask for: publishing from 10 ms, sampling interval 0
        // meaning every change as it happens.
        .subscription_poll_interval_ms(SUBSCRIPTION_TICK_MS);
    let limits = builder.limits_mut();
    limits.subscriptions.min_publishing_interval_ms = MIN_PUBLISHING_INTERVAL_MS;
    limits.subscriptions.min_sampling_interval_ms = 0.0;
    // Clients keep more publish requests waiting when their round trip is long compared
    // to the publishing interval (async-opcua: round trip / interval × 2 per
    // subscription); refusing them with BadTooManyPublishRequests stalls their publishing.
    limits.subscriptions.max_pending_publish_requests = 500;
    limits.subscriptions.max_publish_requests_per_subscription = 50;
    for (i, user) in cfg.users.iter().enumerate() {
        let id = format!("user-{i}");
        builder = builder.add_user_token(
            &id,
            ServerUserToken::user_pass(user.username.as_str(), user.password.as_str()),
        );
        token_ids.push(id);
    }
    let token_refs: Vec<&str> = token_ids.iter().map(String::as_str).collect();
    for security in &cfg.security {
        let (id, policy, mode) = security.endpoint();
        builder = builder.add_endpoint(id, ("/", policy, mode, token_refs.as_slice()));
    }
    builder
}

fn spawn_tickers(
    cfg: &SimConfig,
    nodes: &[SimNode],
    handle: &ServerHandle,
    manager: &Arc<SimManager>,
) -> Vec<JoinHandle<()>> {
    let fast: Vec<SimNode> = nodes
        .iter()
        .filter(|n| n.set == NodeSet::Fast || n.kind == NodeKind::BadStatus)
        .cloned()
        .collect();
    let slow: Vec<SimNode> = nodes
        .iter()
        .filter(|n| n.set == NodeSet::Slow)
        .cloned()
        .collect();
    let mut tasks = vec![
        tokio::spawn(tick_values(
            fast,
            cfg.fast.interval,
            handle.clone(),
            manager.clone(),
        )),
        tokio::spawn(tick_values(
            slow,
            cfg.slow.interval,
            handle.clone(),
            manager.clone(),
        )),
    ];
    if let Some(source) = nodes.iter().find(|n| n.kind == NodeKind::EventSource) {
        tasks.push(tokio::spawn(emit_events(
            source.clone(),
            cfg.event_interval,
            handle.clone(),
        )));
    }
    tasks
}

async fn tick_values(
    nodes: Vec<SimNode>,
    interval: Duration,
    handle: ServerHandle,
    manager: Arc<SimManager>,
) {
    let ids: Vec<NodeId> = nodes.iter().map(SimNode::opcua_node_id).collect();
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    timer.tick().await;
    let mut tick = 0u64;
    loop {
        timer.tick().await;
        tick += 1;
        let now = DateTime::now();
        let values: Vec<DataValue> = nodes
            .iter()
            .map(|node| DataValue {
                value: Some(node.value_at(tick)),
                status: Some(node.status()),
                source_timestamp: Some(now),
                server_timestamp: Some(now),
                ..Default::default()
            })
            .collect();
        set_values(&manager, &ids, &values);
        // Monitored items get the values themselves: the library's `set_values` would look
        // every node up a second time and read the value back from it, all under the
        // address space's write lock, which makes a tick of 10,000 values last longer.
        handle.subscriptions().notify_data_change(
            values
                .into_iter()
                .zip(&ids)
                .map(|(value, id)| (value, id, AttributeId::Value)),
        );
    }
}

/// Stores a tick's values in the address space (for reads), holding its lock only for that.
fn set_values(manager: &SimManager, ids: &[NodeId], values: &[DataValue]) {
    let mut space = manager.address_space().write();
    for (id, value) in ids.iter().zip(values) {
        match space.find_mut(id) {
            Some(NodeType::Variable(v)) => v.set_data_value(value.clone()),
            _ => tracing::warn!(node = %id, "simulator node missing from its address space"),
        }
    }
}

async fn emit_events(source: SimNode, interval: Duration, handle: ServerHandle) {
    let node_id = source.opcua_node_id();
    let mut timer = tokio::time::interval(interval);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    timer.tick().await;
    let mut n = 0u64;
    loop {
        timer.tick().await;
        n += 1;
        let event_id = ByteString::from(uuid::Uuid::new_v4().as_bytes().to_vec());
        let severity = u16::try_from(100 + (n % 9) * 100).unwrap_or(500);
        let event = BaseEventType::new_now(
            ObjectTypeId::BaseEventType,
            event_id,
            format!("simulated event {n}"),
        )
        .set_source_node(node_id.clone())
        .set_source_name(UAString::from(source.name.as_str()))
        .set_severity(severity);
        handle
            .subscriptions()
            .notify_events([(&event as &dyn opcua_nodes::Event, &node_id)].into_iter());
    }
}

/// A running simulator. Dropping it stops the timers and asks the server to stop;
/// [`SimHandle::shutdown`] also waits until the port is free.
pub struct SimHandle {
    endpoint_url: String,
    local_addr: SocketAddr,
    certificate: PathBuf,
    nodes: Vec<SimNode>,
    counts: Arc<MonitoredCounts>,
    handle: ServerHandle,
    server_task: Option<JoinHandle<()>>,
    tickers: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The endpoint URL clients connect to, e.g. `opc.tcp://127.0.0.1:40123/`.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint_url
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's application instance certificate (DER).
    pub fn certificate_path(&self) -> &Path {
        &self.certificate
    }

    /// Every simulated node.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// Every simulated node id, e.g. `ns=2;s=Fast.Sine.0`.
    pub fn node_ids(&self) -> Vec<String> {
        self.nodes.iter().map(SimNode::node_id).collect()
    }

    /// How many monitored items clients hold on all simulated nodes.
    pub fn monitored_items(&self) -> usize {
        self.counts.total()
    }

    /// How many monitored items clients hold on `node_id` (`ns=2;s=…` form).
    pub fn monitored_items_on(&self, node_id: &str) -> usize {
        node_id
            .parse::<NodeId>()
            .map_or(0, |id| self.counts.for_node(&id))
    }

    /// Stops the timers and the server, closing client connections and freeing the port.
    pub async fn shutdown(mut self) {
        self.stop();
        let Some(mut server_task) = self.server_task.take() else {
            return;
        };
        if tokio::time::timeout(Duration::from_secs(5), &mut server_task)
            .await
            .is_err()
        {
            tracing::warn!("opc ua simulator did not stop within 5 s; aborting it");
            server_task.abort();
            let _ = server_task.await;
        }
    }

    fn stop(&mut self) {
        for t in self.tickers.drain(..) {
            t.abort();
        }
        self.handle.cancel();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
