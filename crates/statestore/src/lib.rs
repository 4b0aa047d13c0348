//! Edgeplane's state store: the Azure IoT Operations distributed state store protocol,
//! served inside the broker so that applications built with the AIO SDKs (state store,
//! leased lock, leader election clients) run unchanged.
//!
//! Requests arrive as MQTT v5 messages on [`REQUEST_TOPIC`] (RESP3 arrays: `SET`, `GET`,
//! `DEL`, `VDEL`, `KEYNOTIFY`, and `SCAN`, our cursor-paged extension in the format of SDK
//! 1.5's `list_keys`); answers go to each request's response topic with its correlation
//! data and the user properties `__stat` (200), `__protVer` (1.0) and `__ts` (the key's
//! version, a hybrid logical clock). KEYNOTIFY notifications go to
//! [`notification_topic`]. See `docs/STATESTORE.md` for the protocol as implemented.
//!
//! Requests from network clients are authorized by the `stateStoreResources` of their
//! listener port's `BrokerAuthorization` (`access.rs`): a refused one is answered
//! `-ERR not authorized`. Ports without a policy, and in-process services, may do anything.
//!
//! [`StateStore::start`] attaches the service to a [`Broker`] and returns a
//! [`StateStoreHandle`], the typed in-process API for our own services. The data lives in
//! memory ([`store::Store`]), owned by one task; durability comes with the broker's.

mod access;
mod command;
mod cursor;
pub mod hlc;
pub mod persist;
pub mod remote;
pub mod resp;
mod service;
pub mod store;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeplane_broker::{Broker, LocalError, LocalOptions};
use edgeplane_codec::{QoS, SubOptions};
use tokio::sync::{mpsc, oneshot};

pub use command::text as error_text;
pub use hlc::Hlc;
pub use store::{Condition, SetOptions, StoreError, ValueDeleted, Versioned, Written};

use service::{Call, StoreTask};

/// Where clients send requests (the service subscribes; clients need not). Messages to it
/// carry their publisher (see [`edgeplane_broker::message::Publisher`]), which is what
/// requests are authorized by.
pub const REQUEST_TOPIC: &str = edgeplane_broker::message::STATE_STORE_REQUEST_TOPIC;
/// Prefix of KEYNOTIFY notification topics (reserved: never a valid response topic).
pub const NOTIFY_TOPIC_PREFIX: &str = "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/";
/// Content type of responses and notifications, the one the SDK accepts.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// `clients/statestore/v1/FA9AE35F-…/{HEX(clientId)}/command/notify/{HEX(key)}`, upper-case
/// Base16 as the SDK subscribes.
pub fn notification_topic(client_id: &str, key: &[u8]) -> String {
    let mut t =
        String::with_capacity(NOTIFY_TOPIC_PREFIX.len() + 2 * (client_id.len() + key.len()) + 16);
    t.push_str(NOTIFY_TOPIC_PREFIX);
    hex_upper(&mut t, client_id.as_bytes());
    t.push_str("/command/notify/");
    hex_upper(&mut t, key);
    t
}

fn hex_upper(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02X}");
    }
}

/// How the state store runs.
#[derive(Debug, Clone)]
pub struct StateStoreSettings {
    /// Client id of the service's session (`{client_id}/out` publishes the answers).
    pub client_id: String,
    /// Node id in the versions (`__ts`) this store hands out; no `:`.
    pub node_id: String,
    /// Most keys held at once; a SET beyond answers "the quota has been exceeded".
    pub max_keys: usize,
    /// Most bytes (keys plus values) held at once; same answer beyond.
    pub max_bytes: usize,
    /// How far ahead of our clock a request's `__ts` or `__ft` may be.
    pub max_clock_skew: Duration,
    /// Keys per SCAN page.
    pub scan_page_size: usize,
    /// The broker's data folder: the key space is kept in `statestore/journal` there and
    /// every change is durable before it is answered. `None`: memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// Which keys the journal keeps (the Broker's `persistence.stateStore`).
    pub durable_keys: DurableKeys,
}

/// Which keys are kept on disk, from the Broker's `persistence.stateStore` policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DurableKeys {
    /// `mode: All` (the default with a data folder).
    #[default]
    All,
    /// `mode: None`: the state store stays in memory.
    None,
    /// `mode: Custom`: keys matching one of `keys`, and keys written by a request carrying
    /// the user property `dynamic` (`aio-persistence=true`) when set.
    Matching {
        keys: Vec<DurableKey>,
        dynamic: Option<(String, String)>,
    },
}

/// One `stateStoreResources` entry's key, by its `keyType`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurableKey {
    /// `Pattern`: a glob (`*`, `?`, `[a-z]`) over the key's bytes.
    Glob(Vec<u8>),
    /// `String` (the UTF-8 key) and `Binary` (the decoded base64): this key exactly.
    Exact(Vec<u8>),
}

impl DurableKey {
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            DurableKey::Glob(pattern) => edgeplane_broker::auth::glob::matches(pattern, key),
            DurableKey::Exact(exact) => exact.as_slice() == key,
        }
    }
}

impl Default for StateStoreSettings {
    fn default() -> Self {
        Self {
            client_id: "$edgeplane-statestore".to_owned(),
            node_id: "edgeplane".to_owned(),
            max_keys: 1_000_000,
            max_bytes: 256 * 1024 * 1024,
            max_clock_skew: Duration::from_secs(60),
            scan_page_size: 100,
            data_dir: None,
            durable_keys: DurableKeys::All,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("state store node id {0:?} must be non-empty and contain no ':'")]
    NodeId(String),
    #[error("state store cannot attach to the broker: {0}")]
    Attach(#[from] LocalError),
    #[error(transparent)]
    Journal(#[from] persist::JournalError),
    #[error(
        "the system gave no randomness for the state store's SCAN cursor key; check /dev/urandom"
    )]
    Randomness,
}

/// Errors of the in-process API.
#[derive(Debug, thiserror::Error)]
pub enum StateStoreError {
    #[error("the state store has stopped (the broker is shutting down)")]
    Stopped,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The state store service.
pub struct StateStore;

impl StateStore {
    /// Attach the service to `broker` and start serving requests.
    pub async fn start(
        broker: &Broker,
        settings: StateStoreSettings,
    ) -> Result<StateStoreHandle, StartError> {
        if settings.node_id.is_empty() || settings.node_id.contains(':') {
            return Err(StartError::NodeId(settings.node_id));
        }
        let events = broker.client_events();
        let mut reader = broker
            .local_client(LocalOptions::new(settings.client_id.clone()))
            .await?;
        let publisher = broker
            .local_client(LocalOptions::new(format!("{}/out", settings.client_id)))
            .await?;
        let mut opts = SubOptions::new(QoS::AtLeastOnce);
        opts.no_local = true;
        reader.subscribe(REQUEST_TOPIC, opts).await?;
        let (req_tx, req_rx) = mpsc::channel(service::REQUEST_QUEUE);
        let (call_tx, call_rx) = mpsc::channel(service::REQUEST_QUEUE);
        let limits = store::Limits {
            max_keys: settings.max_keys,
            max_bytes: settings.max_bytes,
        };
        let mut store = store::Store::new(&settings.node_id, limits);
        let journal = match &settings.data_dir {
            None => None,
            Some(_) if settings.durable_keys == DurableKeys::None => None,
            Some(dir) => {
                let (journal, entries) = persist::Journal::open(dir)?;
                let count = entries.len();
                store.restore(entries, Instant::now());
                store.record_changes();
                tracing::info!(keys = count, "state store recovered from its journal");
                Some(journal)
            }
        };
        let task = StoreTask {
            store,
            journal,
            durable_keys: settings.durable_keys.clone(),
            opted_in: std::collections::HashSet::new(),
            answers: Vec::new(),
            replies: Vec::new(),
            cursors: cursor::CursorSeal::new().ok_or(StartError::Randomness)?,
            publisher,
            requests: req_rx,
            calls: call_rx,
            events,
            limits: command::Limits {
                max_clock_skew: settings.max_clock_skew,
                scan_page: settings.scan_page_size.max(1),
                scan_budget: settings.scan_page_size.max(1) * 16,
            },
        };
        tokio::spawn(service::read_requests(reader, req_tx));
        tokio::spawn(task.run());
        tracing::info!(topic = REQUEST_TOPIC, "state store serving");
        Ok(StateStoreHandle {
            calls: call_tx,
            scan_page: settings.scan_page_size.max(1),
        })
    }
}

/// The typed in-process API: the same store, operations and notifications as over MQTT,
/// without encoding. Cheap to clone.
#[derive(Clone)]
pub struct StateStoreHandle {
    calls: mpsc::Sender<Call>,
    scan_page: usize,
}

impl StateStoreHandle {
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Versioned>, StateStoreError> {
        let key = key.into();
        self.call(move |s, now| s.get(&key, now)).await
    }

    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        options: SetOptions,
    ) -> Result<Written, StateStoreError> {
        let (key, value) = (key.into(), value.into());
        Ok(self
            .call(move |s, now| s.set(key, value, options, now))
            .await??)
    }

    /// Delete a key; true if it existed.
    pub async fn del(
        &self,
        key: impl Into<Bytes>,
        fencing_token: Option<Hlc>,
    ) -> Result<bool, StateStoreError> {
        let key = key.into();
        let deleted = self
            .call(move |s, now| s.del(&key, fencing_token.as_ref(), now))
            .await??;
        Ok(deleted.is_some())
    }

    /// Delete a key if it holds `value`.
    pub async fn vdel(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        fencing_token: Option<Hlc>,
    ) -> Result<ValueDeleted, StateStoreError> {
        let (key, value) = (key.into(), value.into());
        Ok(self
            .call(move |s, now| s.vdel(&key, &value, fencing_token.as_ref(), now))
            .await??)
    }

    /// `KEYNOTIFY key` on behalf of the in-process client `client_id`: every change of
    /// `key` is published to [`notification_topic`]`(client_id, key)` (subscribe to it
    /// first), until that client disconnects.
    pub async fn keynotify(
        &self,
        client_id: &str,
        key: impl Into<Bytes>,
    ) -> Result<(), StateStoreError> {
        let (client, key): (std::sync::Arc<str>, Bytes) = (client_id.into(), key.into());
        self.call(move |s, now| {
            s.watch(&client, key, store::Requester::InProcess, now);
        })
        .await
    }

    /// Every key matching a glob pattern, in key order (fetched page by page so the store
    /// task never stalls on a large store).
    pub async fn list(&self, pattern: impl Into<Bytes>) -> Result<Vec<Bytes>, StateStoreError> {
        let pattern = pattern.into();
        let page = self.scan_page;
        let mut keys = Vec::new();
        let mut cursor: Option<Bytes> = None;
        loop {
            let p = pattern.clone();
            let c = cursor.take();
            let (mut found, next) = self
                .call(move |s, now| s.scan(&p, c.as_deref(), page, page * 16, now))
                .await?;
            keys.append(&mut found);
            match next {
                Some(n) => cursor = Some(n),
                None => return Ok(keys),
            }
        }
    }

    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut store::Store, Instant) -> R + Send + 'static,
    ) -> Result<R, StateStoreError> {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |s, now| {
            let result = f(s, now);
            Box::new(move || {
                let _ = tx.send(result);
            })
        });
        self.calls
            .send(call)
            .await
            .map_err(|_| StateStoreError::Stopped)?;
        rx.await.map_err(|_| StateStoreError::Stopped)
    }
}
