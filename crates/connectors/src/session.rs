//! One running device endpoint: the connection (one or more OPC UA sessions, see
//! [`session_count`]), the frames of each dataset, and the publishing of messages and
//! status.
//!
//! Notifications of all the endpoint's sessions arrive on the connection's one channel.
//! The session task routes each data notification (one server notification message of
//! one dataset) to that dataset's task, which owns the dataset's frames: it applies the
//! changes, builds one message and hands it to the broker (or the state store) before
//! taking the next, so each dataset's messages keep their order (a dataset lives on one
//! OPC UA session) while the datasets of an endpoint are built and published side by side
//! (a server tick of 10,000 values is worked through on every core, and a QoS 1 publish
//! waiting for the durable store holds back only its own dataset). Events are published by
//! the session task. Status changes of the connection (one status for the endpoint:
//! connected only when all its sessions are) are written to the registry for the device
//! endpoint and for each asset it serves. Per-stage latencies are logged at debug
//! level (see [`crate::stages`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use edgeplane_broker::LocalClient;
use edgeplane_codec::{Properties, Publish, QoS};
use edgeplane_opcua::client::{
    Connection, DataChange, DataPoint, Dataset, EndpointConfig, EndpointStatus, Event, EventSource,
    Notification,
};
use edgeplane_opcua::payload::{DataPointValue, DatasetFrames, DatasetMessage, FrameSettings};
use edgeplane_registry::{ConnectionState, Registry};
use edgeplane_statestore::{SetOptions, StateStoreHandle};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use crate::plan::{DatasetPlan, EndpointPlan, EventPlan, MqttTarget, Target};
use crate::stages::{Sample, Stages};
use crate::OpcUaSettings;

/// Notifications queued per dataset task. When a dataset's task falls this far behind, the
/// session task waits for it, and the connection's channel (which counts what it drops)
/// absorbs the rest.
const DATASET_QUEUE: usize = 64;

/// The most OPC UA sessions an endpoint gets by default.
const DEFAULT_MAX_SESSIONS: usize = 4;

/// How many OPC UA sessions an endpoint's datasets are spread over: its `sessionCount` if
/// set, otherwise one per core up to [`DEFAULT_MAX_SESSIONS`] (the connection never opens
/// more than one per dataset). One session is one TCP connection, encoded by one server
/// task and decoded by one client task, so a server tick's notification messages are
/// worked through one after the other; a session per core lets both sides use every core.
fn session_count(plan: &EndpointPlan) -> usize {
    plan.sessions.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(DEFAULT_MAX_SESSIONS)
    })
}

/// A session task and how to stop it.
pub(crate) struct Running {
    plan: EndpointPlan,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    pub(crate) fn start(
        plan: EndpointPlan,
        settings: &OpcUaSettings,
        sinks: Sinks,
        registry: Registry,
    ) -> Running {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(
            plan.clone(),
            settings.clone(),
            sinks,
            registry,
            stopped,
        ));
        Running { plan, stop, task }
    }

    pub(crate) fn plan(&self) -> &EndpointPlan {
        &self.plan
    }

    /// Close the session cleanly (its subscriptions are deleted on the server).
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(15), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}

fn endpoint_config(plan: &EndpointPlan, settings: &OpcUaSettings) -> EndpointConfig {
    let mut config = EndpointConfig::new(plan.url.clone(), settings.pki_dir.clone());
    config.auth = plan.auth.clone();
    config.security = plan.security;
    config.auto_accept_untrusted_server_certs = plan.auto_accept;
    config.reconnect = settings.reconnect;
    config.keep_alive_interval = settings.keep_alive_interval;
    config.request_timeout = settings.request_timeout;
    config.sessions = session_count(plan);
    config
}

/// The connection's name of a dataset: `asset/dataset` (asset names hold no `/`).
fn dataset_key(d: &DatasetPlan) -> String {
    format!("{}/{}", d.asset, d.name)
}

fn event_key(e: &EventPlan) -> String {
    format!("{}/{}", e.asset, e.name)
}

/// Where a session's messages go: the broker, and the state store for datasets whose
/// destination is `BrokerStateStore` (absent when the state store is not running).
#[derive(Clone)]
pub(crate) struct Sinks {
    client: Arc<LocalClient>,
    state_store: Option<StateStoreHandle>,
    /// Keys whose last write failed (their failure was logged).
    failing: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// One message to deliver.
enum Out {
    Publish(Box<Publish>),
    /// A state store write: the dataset's whole last known values under `key`.
    Set {
        key: String,
        value: Vec<u8>,
    },
}

async fn run(
    plan: EndpointPlan,
    settings: OpcUaSettings,
    sinks: Sinks,
    registry: Registry,
    mut stopped: oneshot::Receiver<()>,
) {
    let report = |state: ConnectionState| {
        registry.set_endpoint_status(&plan.device, &plan.endpoint, state.clone());
        for asset in &plan.assets {
            registry.set_asset_status(asset, state.clone());
        }
    };
    report(ConnectionState::Connecting);
    let config = endpoint_config(&plan, &settings);
    let datasets: Vec<Dataset> = plan
        .datasets
        .iter()
        .map(|d| Dataset {
            name: dataset_key(d),
            publishing_interval: d.publishing_interval,
            data_points: d
                .points
                .iter()
                .map(|p| DataPoint {
                    name: p.name.clone(),
                    node_id: p.node_id.clone(),
                    sampling_interval: p.sampling_interval,
                    queue_size: p.queue_size,
                })
                .collect(),
        })
        .collect();
    let events: Vec<EventSource> = plan
        .events
        .iter()
        .map(|e| EventSource {
            name: event_key(e),
            node_id: e.node_id.clone(),
            publishing_interval: e.publishing_interval,
            queue_size: e.queue_size,
        })
        .collect();
    // Creating the application instance certificate on first start blocks for a moment.
    let started =
        tokio::task::spawn_blocking(move || Connection::start(config, datasets, events)).await;
    let (connection, mut notifications) = match started {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            report(ConnectionState::Error(e.to_string()));
            let _ = stopped.await;
            return;
        }
        Err(e) => {
            report(ConnectionState::Error(format!(
                "the session task failed: {e}"
            )));
            let _ = stopped.await;
            return;
        }
    };
    let stages = Arc::new(Stages::new(&plan.url));
    let mut workers = JoinSet::new();
    let mut routes: HashMap<String, mpsc::Sender<DataBatch>> = HashMap::new();
    for d in &plan.datasets {
        let (tx, rx) = mpsc::channel(DATASET_QUEUE);
        routes.insert(dataset_key(d), tx);
        let frames = dataset_frames(d, &plan.url);
        workers.spawn(dataset_task(
            frames,
            d.clone(),
            rx,
            sinks.clone(),
            registry.clone(),
            Arc::clone(&stages),
        ));
    }
    let events: HashMap<String, EventPlan> = plan
        .events
        .iter()
        .map(|e| (event_key(e), e.clone()))
        .collect();
    let mut status = connection.watch_status();
    report(state_of(&status.borrow_and_update()));
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                let state = state_of(&status.borrow_and_update());
                report(state);
            }
            n = notifications.recv() => {
                let Some(n) = n else { break };
                if !route(n, &routes, &events, &sinks, &registry, &plan.url).await {
                    break;
                }
            }
        }
    }
    // The dataset tasks publish what they hold, then end as their queues close (or at
    // once if the broker is gone); aborted with this task if it is.
    drop(routes);
    connection.shutdown().await;
    while workers.join_next().await.is_some() {}
}

/// The frames of one dataset, its points at the positions the connection reports.
fn dataset_frames(d: &DatasetPlan, source: &str) -> DatasetFrames {
    let settings = FrameSettings {
        source: source.to_owned(),
        subject: d.subject.clone(),
        // A state store key holds the whole dataset: every message a key frame.
        key_frame_count: match d.target {
            Target::Mqtt(_) => d.key_frame_count,
            Target::StateStore { .. } => 1,
        },
    };
    DatasetFrames::with_points(settings, d.points.iter().map(|p| p.name.as_str()))
}

fn state_of(status: &EndpointStatus) -> ConnectionState {
    match status {
        EndpointStatus::Connecting => ConnectionState::Connecting,
        EndpointStatus::Connected => ConnectionState::Connected,
        EndpointStatus::Error(e) => ConnectionState::Error(e.clone()),
    }
}

/// One data notification of one dataset, as the connection delivered it.
struct DataBatch {
    changes: Vec<DataChange>,
    published: Option<DateTime<Utc>>,
    received: DateTime<Utc>,
}

/// Hands a data notification to its dataset's task, or publishes an event; false once
/// the broker is gone (a dataset task ended because of it, or an event publish failed).
async fn route(
    n: Notification,
    routes: &HashMap<String, mpsc::Sender<DataBatch>>,
    events: &HashMap<String, EventPlan>,
    sinks: &Sinks,
    registry: &Registry,
    source: &str,
) -> bool {
    match n {
        Notification::Data {
            changes,
            published,
            received,
        } => {
            let Some(tx) = changes.first().and_then(|c| routes.get(&*c.dataset)) else {
                return true;
            };
            tx.send(DataBatch {
                changes,
                published,
                received,
            })
            .await
            .is_ok()
        }
        Notification::Event(event) => {
            let Some(plan) = events.get(&*event.source) else {
                return true;
            };
            let publish = event_publish(plan, event, source);
            match deliver(sinks, Out::Publish(Box::new(publish))).await {
                Delivered::Yes => registry.count_published(&plan.asset, 1),
                Delivered::Dropped => {}
                Delivered::BrokerGone => return false,
            }
            true
        }
    }
}

/// A dataset's task: each notification becomes one message, built and delivered before
/// the next is taken, so nothing the server reported is folded away and the dataset's
/// sequence order is the broker's order. Ends when its queue closes or the broker is gone.
async fn dataset_task(
    mut frames: DatasetFrames,
    plan: DatasetPlan,
    mut rx: mpsc::Receiver<DataBatch>,
    sinks: Sinks,
    registry: Registry,
    stages: Arc<Stages>,
) {
    // Distinct source timestamps of the message being built, when measuring.
    let mut sources: Vec<(DateTime<Utc>, u32)> = Vec::new();
    while let Some(batch) = rx.recv().await {
        let measuring = Stages::enabled();
        sources.clear();
        for change in batch.changes {
            if measuring {
                count_source(&mut sources, change.source_timestamp);
            }
            let value = DataPointValue {
                value: change.value,
                source_timestamp: change.source_timestamp,
                status: change.status,
            };
            let index = usize::try_from(change.index).unwrap_or(usize::MAX);
            if let Err(value) = frames.update_at(index, value) {
                frames.update(&change.data_point, value);
            }
        }
        let Some(message) = frames.next_message() else {
            continue;
        };
        let built = Utc::now();
        let item = match &plan.target {
            Target::Mqtt(target) => Out::Publish(Box::new(dataset_publish(&plan, target, message))),
            Target::StateStore { key } => Out::Set {
                key: key.clone(),
                value: message.payload,
            },
        };
        match deliver(&sinks, item).await {
            Delivered::Yes => registry.count_published(&plan.asset, 1),
            Delivered::Dropped => {}
            Delivered::BrokerGone => return,
        }
        if measuring {
            stages.record(&Sample {
                sources: &sources,
                published: batch.published,
                received: batch.received,
                built,
                accepted: Utc::now(),
            });
        }
    }
}

/// Counts a value's source timestamp; the values of one server tick share one, so this
/// list stays short.
fn count_source(sources: &mut Vec<(DateTime<Utc>, u32)>, at: Option<DateTime<Utc>>) {
    let Some(at) = at else { return };
    match sources.iter_mut().find(|(t, _)| *t == at) {
        Some((_, n)) => *n += 1,
        None => sources.push((at, 1)),
    }
}

enum Delivered {
    Yes,
    /// Not delivered and not retried (the state store refused or is not running); logged.
    Dropped,
    BrokerGone,
}

async fn deliver(sinks: &Sinks, item: Out) -> Delivered {
    match item {
        Out::Publish(p) => match sinks.client.publish(*p).await {
            Ok(_) => Delivered::Yes,
            Err(e) => {
                tracing::warn!(error = %e, "opc ua connector cannot publish; stopping the session");
                Delivered::BrokerGone
            }
        },
        Out::Set { key, value } => {
            let Some(store) = &sinks.state_store else {
                sinks.set_failed(&key, "the state store is not running");
                return Delivered::Dropped;
            };
            match store.set(key.clone(), value, SetOptions::default()).await {
                Ok(_) => {
                    sinks.set_succeeded(&key);
                    Delivered::Yes
                }
                Err(e) => {
                    sinks.set_failed(&key, &e.to_string());
                    Delivered::Dropped
                }
            }
        }
    }
}

impl Sinks {
    pub(crate) fn new(client: Arc<LocalClient>, state_store: Option<StateStoreHandle>) -> Self {
        Sinks {
            client,
            state_store,
            failing: Arc::default(),
        }
    }

    /// A state store write failed: logged once per key until a write to it succeeds again.
    fn set_failed(&self, key: &str, why: &str) {
        let first = self
            .failing
            .lock()
            .map(|mut f| f.insert(key.to_owned()))
            .unwrap_or(true);
        if first {
            tracing::warn!(key, error = why, "opc ua connector cannot write a dataset to the state store; its values are dropped until it can");
        }
    }

    fn set_succeeded(&self, key: &str) {
        if let Ok(mut f) = self.failing.lock() {
            if f.remove(key) {
                tracing::info!(
                    key,
                    "opc ua connector writes the dataset to the state store again"
                );
            }
        }
    }
}

fn properties(target: &MqttTarget, user: Vec<(String, String)>) -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json".into()),
        message_expiry_interval: target.ttl,
        user_properties: user,
        ..Properties::default()
    }
}

fn publish(target: &MqttTarget, properties: Properties, payload: Vec<u8>) -> Publish {
    Publish {
        dup: false,
        qos: if target.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        retain: target.retain,
        topic: target.topic.clone(),
        packet_id: 0,
        properties,
        payload: Bytes::from(payload),
    }
}

fn dataset_publish(plan: &DatasetPlan, target: &MqttTarget, message: DatasetMessage) -> Publish {
    let payload = message.payload;
    let mut user = message.properties;
    if let Some(id) = &plan.external_asset_id {
        user.push(("externalAssetId".into(), id.clone()));
    }
    user.push(("dataset".into(), plan.name.clone()));
    publish(target, properties(target, user), payload)
}

/// An event as one message: its fields as the JSON payload, CloudEvents properties with
/// type `ua-event` (our choice; AIO's event type name is not documented in what we have).
fn event_publish(plan: &EventPlan, event: Event, source: &str) -> Publish {
    let time = event
        .time
        .unwrap_or_else(chrono::Utc::now)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let user = vec![
        ("specversion".to_owned(), "1.0".to_owned()),
        ("type".to_owned(), "ua-event".to_owned()),
        ("source".to_owned(), source.to_owned()),
        ("id".to_owned(), uuid::Uuid::new_v4().to_string()),
        ("time".to_owned(), time),
        ("subject".to_owned(), plan.subject.clone()),
        ("datacontenttype".to_owned(), "application/json".to_owned()),
        ("event".to_owned(), plan.name.clone()),
    ];
    let payload = Value::Object(event.fields).to_string().into_bytes();
    publish(&plan.target, properties(&plan.target, user), payload)
}
