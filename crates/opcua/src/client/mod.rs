//! The connector side: one [`Connection`] per OPC UA endpoint.
//!
//! [`Connection::start`] takes an [`EndpointConfig`] (URL, identity, security, PKI
//! directory, reconnect backoff, how many sessions) and the [`Dataset`]s and
//! [`EventSource`]s to subscribe to. The datasets are spread over up to
//! [`EndpointConfig::sessions`] OPC UA sessions (each dataset whole on one session; see
//! `subscribe::Plan::split`), because one session is one TCP connection that the server
//! encodes and the client decodes on one task each: a server tick of ten 1,000-value
//! notification messages is worked through one after the other there, so the last
//! dataset waits for the other nine. With several sessions that work runs on every core.
//!
//! One supervisor task owns each OPC UA session: it picks the server endpoint (by default
//! the most secure one that accepts the identity), connects, creates one subscription per
//! dataset chunk of at most [`MAX_ITEMS_PER_SUBSCRIPTION`] data points and one per event
//! source, and reconnects with exponential backoff when the connection fails. Each new
//! server session gets a fresh set of subscriptions, so the server never holds duplicates.
//!
//! Data of every session leaves through the one [`Notification`] channel returned by
//! `start`, and the endpoint's health, one status aggregated over its sessions (see
//! [`status`]), through [`Connection::status`] / [`Connection::watch_status`].

mod pki;
mod session;
mod status;
mod subscribe;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use self::pki::{rejected_certificates, trust, PkiError, RejectedCertificate};
use crate::value::Status;

/// The most monitored items the connector puts in one subscription.
pub const MAX_ITEMS_PER_SUBSCRIPTION: usize = 1000;

/// How the connector identifies itself to the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No user identity.
    Anonymous,
    /// User name and password.
    UsernamePassword {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An X.509 user certificate and its private key (DER or PEM files).
    Certificate {
        /// Certificate file.
        cert: PathBuf,
        /// Private key file (PEM).
        key: PathBuf,
    },
}

/// Message security mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityMode {
    /// Neither signed nor encrypted.
    None,
    /// Signed.
    Sign,
    /// Signed and encrypted.
    SignAndEncrypt,
}

/// Security policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityPolicy {
    /// No security.
    None,
    /// Basic256Sha256.
    Basic256Sha256,
    /// Aes128_Sha256_RsaOaep.
    Aes128Sha256RsaOaep,
    /// Aes256_Sha256_RsaPss.
    Aes256Sha256RsaPss,
}

/// Which server endpoint to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Security {
    /// The endpoint with the highest security level that accepts the identity.
    #[default]
    MostSecure,
    /// Exactly this mode and policy; fails when the server does not offer it.
    Require(SecurityMode, SecurityPolicy),
}

/// Exponential backoff between connection attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

/// Connection settings for one endpoint.
#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Discovery URL, e.g. `opc.tcp://opcplc:50000/`. The host of the chosen endpoint is
    /// replaced by this URL's host, so servers advertising an unreachable name still work.
    pub url: String,
    /// User identity.
    pub auth: Auth,
    /// Endpoint choice.
    pub security: Security,
    /// PKI directory (see [`trust`]).
    pub pki_dir: PathBuf,
    /// Trust unknown server certificates (written to `trusted/`) instead of rejecting them.
    pub auto_accept_untrusted_server_certs: bool,
    /// Application name; also the certificate's common name.
    pub application_name: String,
    /// Application URI; must match the application instance certificate.
    pub application_uri: String,
    /// Backoff between connection attempts.
    pub reconnect: Backoff,
    /// How often the session checks the server is alive (a read of its state).
    pub keep_alive_interval: Duration,
    /// Timeout of each request.
    pub request_timeout: Duration,
    /// Capacity of the notification channel, in [`Notification`]s (a data notification
    /// holds one server notification message of a dataset); notifications beyond it are
    /// dropped and counted ([`Connection::dropped_notifications`]).
    pub channel_capacity: usize,
    /// The most OPC UA sessions (TCP connections) to spread the datasets over; never more
    /// than one per dataset, at least one. Event sources share a session with datasets.
    pub sessions: usize,
}

impl EndpointConfig {
    /// Settings with the defaults: anonymous, most secure endpoint, untrusted server
    /// certificates rejected, backoff 1 s to 60 s.
    pub fn new(url: impl Into<String>, pki_dir: impl Into<PathBuf>) -> Self {
        EndpointConfig {
            url: url.into(),
            auth: Auth::Anonymous,
            security: Security::MostSecure,
            pki_dir: pki_dir.into(),
            auto_accept_untrusted_server_certs: false,
            application_name: "Edgeplane OPC UA connector".into(),
            application_uri: "urn:edgeplane:opcua-connector".into(),
            reconnect: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
            keep_alive_interval: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            channel_capacity: 1_024,
            sessions: 1,
        }
    }
}

/// A data point: a node whose value the connector reports.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPoint {
    /// Name in messages.
    pub name: String,
    /// Node id: `ns=<index>;s=…` (or `i=`, `g=`, `b=`), or `nsu=<namespace uri>;s=…`.
    pub node_id: String,
    /// How often the server samples the value.
    pub sampling_interval: Duration,
    /// How many samples the server queues between publishes.
    pub queue_size: u32,
}

/// Data points published together.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Name in notifications.
    pub name: String,
    /// How often the server sends the changes.
    pub publishing_interval: Duration,
    /// The data points.
    pub data_points: Vec<DataPoint>,
}

/// A node whose events the connector reports.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSource {
    /// Name in notifications.
    pub name: String,
    /// The event notifier's node id (same forms as [`DataPoint::node_id`]).
    pub node_id: String,
    /// How often the server sends events.
    pub publishing_interval: Duration,
    /// How many events the server queues between publishes.
    pub queue_size: u32,
}

/// A new value of a data point.
#[derive(Clone, Debug, PartialEq)]
pub struct DataChange {
    /// The dataset's name.
    pub dataset: Arc<str>,
    /// The data point's name.
    pub data_point: Arc<str>,
    /// The data point's position in its dataset's [`Dataset::data_points`], so a consumer
    /// can keep per-point state in a vector instead of looking the name up per value.
    pub index: u32,
    /// The value as JSON.
    pub value: Value,
    /// When the source produced it, if the server said.
    pub source_timestamp: Option<DateTime<Utc>>,
    /// The server's status for the value; also used for items the server refused.
    pub status: Status,
}

/// An event from an event source.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The event source's name.
    pub source: Arc<str>,
    /// `Time` of the event.
    pub time: Option<DateTime<Utc>>,
    /// The BaseEventType fields: `EventId`, `EventType`, `SourceNode`, `SourceName`,
    /// `Time`, `ReceiveTime`, `Message`, `Severity`.
    pub fields: Map<String, Value>,
}

/// What the connection delivers.
#[derive(Clone, Debug, PartialEq)]
pub enum Notification {
    /// Data points of one dataset changed: the data changes of one notification message
    /// of the server (one publishing interval), in the server's order.
    Data {
        /// The changes.
        changes: Vec<DataChange>,
        /// The server's publish time of the notification message (its clock).
        published: Option<DateTime<Utc>>,
        /// When the session's callback received the notification message (wall clock, to
        /// compare with the values' source timestamps when measuring latency per stage).
        received: DateTime<Utc>,
    },
    /// An event happened.
    Event(Event),
}

/// The health of the connection to an endpoint (over all its sessions: connected only
/// when every session is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointStatus {
    /// Trying to connect (first attempt, or after losing a working connection).
    Connecting,
    /// Session up and subscriptions created.
    Connected,
    /// The last attempt failed; retrying with backoff. The message says why in words.
    Error(String),
}

impl std::fmt::Display for EndpointStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndpointStatus::Connecting => f.write_str("connecting"),
            EndpointStatus::Connected => f.write_str("connected"),
            EndpointStatus::Error(e) => write!(f, "error: {e}"),
        }
    }
}

/// Errors starting a connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The settings are unusable; every problem is listed.
    #[error("invalid opc ua connection settings: {0}")]
    Config(String),
}

/// State shared between the [`Connection`] and its supervisor task.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) dropped: AtomicU64,
    pub(crate) sessions: AtomicU64,
}

/// A running connection to one endpoint, over one or more sessions. Dropping it stops
/// the supervisors abruptly; [`Connection::shutdown`] closes the sessions cleanly first.
pub struct Connection {
    status: watch::Receiver<EndpointStatus>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Connection {
    /// Validates the settings and starts connecting in the background. Notifications
    /// arrive on the returned receiver.
    ///
    /// Must be called within a Tokio runtime. On first start this creates the application
    /// instance certificate in the PKI directory; RSA key generation blocks the calling
    /// thread for a moment (seconds in unoptimized builds).
    pub fn start(
        config: EndpointConfig,
        datasets: Vec<Dataset>,
        events: Vec<EventSource>,
    ) -> Result<(Connection, mpsc::Receiver<Notification>), ClientError> {
        let plans = subscribe::Plan::new(&datasets, &events)?.split(config.sessions);
        // Built one after the other: the first creates the certificate the others load.
        let clients = plans
            .iter()
            .map(|_| session::build_client(&config))
            .collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let (board, status) = status::StatusBoard::new(plans.len());
        let board = Arc::new(board);
        let (stop, stop_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let tasks = plans
            .into_iter()
            .zip(clients)
            .enumerate()
            .map(|(slot, (plan, client))| {
                let supervisor = session::Supervisor {
                    config: config.clone(),
                    client,
                    plan: Arc::new(plan),
                    tx: tx.clone(),
                    status: Arc::clone(&board),
                    slot,
                    stop: stop_rx.clone(),
                    counters: counters.clone(),
                };
                tokio::spawn(supervisor.run())
            })
            .collect();
        Ok((
            Connection {
                status,
                stop,
                tasks,
                counters,
            },
            rx,
        ))
    }

    /// The current status.
    pub fn status(&self) -> EndpointStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<EndpointStatus> {
        self.status.clone()
    }

    /// Notifications dropped because the channel was full.
    pub fn dropped_notifications(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// How many server sessions this connection has created, over all its sessions (one
    /// each, plus one per reconnect that needed a new session).
    pub fn sessions_created(&self) -> u64 {
        self.counters.sessions.load(Ordering::Relaxed)
    }

    /// Closes the sessions (deleting their subscriptions on the server) and stops.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for task in &mut self.tasks {
            let _ = tokio::time::timeout_at(deadline, task).await;
        }
        // Drop aborts whatever did not finish in time.
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}
