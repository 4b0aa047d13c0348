//! Running dataflows: every [`Plan`] becomes `instances` tasks that read the source, run
//! the BuiltInTransformation, and hand results to the destination.
//!
//! Data enters from the local broker through an in-process client (a persistent session
//! named `edgeplane-dataflow-<name>-<i>`, so the broker keeps — and with a data folder
//! stores — what arrives while the dataflow is down or its destination unreachable), or
//! from a remote broker through an [`mqtt::MqttLink`]. It leaves through a
//! [`sink::Sink`].
//!
//! Delivery is at least once and in order: a source message is acknowledged only after
//! the destination has accepted its result (or after it was dropped on purpose, by a
//! filter or an unresolvable topic), results reach the destination in arrival order, and at most
//! [`WINDOW`] messages are in flight per instance, so a stalled destination stops the
//! reading instead of filling memory. Each dataflow's counters and health are in
//! [`DataflowStatus`]. Enrichment datasets are read from the state store at start and
//! again on each KEYNOTIFY notification of their key.

pub mod mqtt;
mod parquet;
pub mod sink;
pub mod topic;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edgeplane_broker::{LocalClient, LocalError, LocalFactory, LocalOptions, Received};
use edgeplane_codec::{Properties, Publish, QoS, SubOptions};
use edgeplane_statestore::StateStoreHandle;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::dataset::{parse_json_lines, Datasets};
use crate::resources::{EndpointPlan, Plan, RemotePlan};
use crate::{BuiltInTransformation, Message, Outcome};
use mqtt::{Delivery, DeliveryAck, LinkSettings, LinkStatus, MqttLink};
use sink::Sink;

/// How long [`Dataflows::start`] waits for its instances to attach.
pub const ATTACH_WAIT: Duration = Duration::from_secs(10);

/// Wait for every receiver (a sender dropped counts as done).
async fn all_done(receivers: Vec<oneshot::Receiver<()>>) {
    for rx in receivers {
        let _ = rx.await;
    }
}

/// Messages in flight (taken from the source, not yet acknowledged) per instance.
pub const WINDOW: usize = 256;

/// Health as Azure IoT Operations reports it for a dataflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Health {
    Available,
    Degraded,
    Unavailable,
}

/// Counters and health of one dataflow, shared by its instances.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages taken from the source.
    pub received: AtomicU64,
    /// Messages the destination accepted.
    pub sent: AtomicU64,
    /// Dropped by a filter rule.
    pub filtered: AtomicU64,
    /// Dropped because the destination topic could not be resolved.
    pub unroutable: AtomicU64,
    /// Dropped because the transform could not run (payload not JSON, evaluation error).
    pub failed: AtomicU64,
}

/// What an operator sees of one dataflow.
#[derive(Clone)]
pub struct DataflowStatus {
    pub name: String,
    pub counters: Arc<Counters>,
    /// Why the dataflow is not Available, if it is not.
    pub problem: watch::Receiver<Option<String>>,
}

impl DataflowStatus {
    pub fn health(&self) -> Health {
        match &*self.problem.borrow() {
            None => Health::Available,
            Some(_) => Health::Degraded,
        }
    }
}

/// Where a dataflow's messages come from.
enum Source {
    Local(LocalClient),
    Remote(MqttLink, mpsc::Receiver<Delivery>),
}

/// A source message and how to acknowledge it.
struct Incoming {
    topic: String,
    payload: Bytes,
    properties: Properties,
    qos: QoS,
    retain: bool,
    ack: AckToken,
}

enum AckToken {
    Local(Received),
    Remote(DeliveryAck),
}

impl Source {
    async fn recv(&mut self) -> Option<Incoming> {
        match self {
            Source::Local(client) => {
                let r = client.recv().await?;
                Some(Incoming {
                    topic: r.message.topic.clone(),
                    payload: r.message.payload.clone(),
                    properties: r.message.properties.clone(),
                    qos: r.qos,
                    retain: r.retain,
                    ack: AckToken::Local(r),
                })
            }
            Source::Remote(_, rx) => {
                let d = rx.recv().await?;
                Some(Incoming {
                    topic: d.publish.topic,
                    payload: d.publish.payload,
                    properties: d.publish.properties,
                    qos: d.publish.qos,
                    retain: d.publish.retain,
                    ack: AckToken::Remote(d.ack),
                })
            }
        }
    }

    async fn ack(&mut self, token: AckToken) {
        match (self, token) {
            (Source::Local(client), AckToken::Local(r)) => client.ack(&r).await,
            (Source::Remote(link, _), AckToken::Remote(a)) => link.ack(a).await,
            _ => {}
        }
    }
}

/// The running dataflows.
pub struct Dataflows {
    broker: LocalFactory,
    state_store: Option<StateStoreHandle>,
    running: BTreeMap<String, Running>,
    board: StatusBoard,
}

/// The statuses of the running dataflows, kept current across reloads, for metrics and
/// the API. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusBoard(Arc<std::sync::RwLock<Vec<DataflowStatus>>>);

impl StatusBoard {
    pub fn statuses(&self) -> Vec<DataflowStatus> {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Append the dataflows' counters and health in the Prometheus text format. Labels:
    /// the dataflow's name (from configuration, so bounded) and a fixed `outcome`.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let statuses = self.statuses();
        let _ = writeln!(
            out,
            "# HELP edgeplane_dataflow_messages_total Messages through a dataflow by outcome: \
             received from the source, sent to the destination, or dropped (filtered, \
             unroutable, failed).\n# TYPE edgeplane_dataflow_messages_total counter"
        );
        for s in &statuses {
            let name = label(&s.name);
            let c = &s.counters;
            for (outcome, n) in [
                ("received", &c.received),
                ("sent", &c.sent),
                ("filtered", &c.filtered),
                ("unroutable", &c.unroutable),
                ("failed", &c.failed),
            ] {
                let _ = writeln!(
                    out,
                    "edgeplane_dataflow_messages_total{{dataflow=\"{name}\",outcome=\"{outcome}\"}} {}",
                    n.load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP edgeplane_dataflow_available 1 while a dataflow is Available, 0 while it is \
             Degraded (an endpoint is down).\n# TYPE edgeplane_dataflow_available gauge"
        );
        for s in &statuses {
            let up = u8::from(s.health() == Health::Available);
            let _ = writeln!(
                out,
                "edgeplane_dataflow_available{{dataflow=\"{}\"}} {up}",
                label(&s.name)
            );
        }
    }
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One running dataflow: its tasks end when this is dropped. Its source session stays in
/// the broker, so messages not yet acknowledged are delivered again to the next run.
struct Running {
    fingerprint: u64,
    status: DataflowStatus,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What [`Dataflows::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

impl Dataflows {
    /// Start every plan and wait (at most [`ATTACH_WAIT`]) until each instance has made
    /// its first attempt to attach, so a local source is subscribed before the caller
    /// reports the broker ready. `state_store` serves enrichment datasets (none: datasets
    /// stay empty and `$context` reads give `()`).
    pub async fn start(
        broker: LocalFactory,
        state_store: Option<StateStoreHandle>,
        plans: Vec<Plan>,
    ) -> Dataflows {
        let mut flows = Dataflows {
            broker,
            state_store,
            running: BTreeMap::new(),
            board: StatusBoard::default(),
        };
        let (_, attached) = flows.apply_waiting(plans);
        let all = all_done(attached);
        if tokio::time::timeout(ATTACH_WAIT, all).await.is_err() {
            tracing::warn!("some dataflows are still attaching; starting without waiting for them");
        }
        flows
    }

    /// Make the running dataflows those of `plans`: new ones start, those whose
    /// fingerprint changed restart, those no longer planned (or now disabled) stop.
    pub fn apply(&mut self, plans: Vec<Plan>) -> Applied {
        self.apply_waiting(plans).0
    }

    fn apply_waiting(&mut self, plans: Vec<Plan>) -> (Applied, Vec<oneshot::Receiver<()>>) {
        let mut attached = Vec::new();
        let mut applied = Applied::default();
        let names: std::collections::BTreeSet<String> =
            plans.iter().map(|p| p.name.clone()).collect();
        self.running.retain(|name, _| {
            let keep = names.contains(name);
            if !keep {
                tracing::info!(dataflow = %name, "dataflow stopped");
                applied.stopped.push(name.clone());
            }
            keep
        });
        for plan in plans {
            match self.running.get(&plan.name) {
                Some(r) if r.fingerprint == plan.fingerprint => continue,
                Some(_) => applied.restarted.push(plan.name.clone()),
                None => applied.started.push(plan.name.clone()),
            }
            // Stop the old run before the new one attaches to the same sessions.
            self.running.remove(&plan.name);
            let running = self.launch(plan, &mut attached);
            self.running.insert(running.status.name.clone(), running);
        }
        if let Ok(mut board) = self.board.0.write() {
            *board = self.statuses();
        }
        (applied, attached)
    }

    /// The statuses, kept current by [`Dataflows::apply`].
    pub fn board(&self) -> StatusBoard {
        self.board.clone()
    }

    fn launch(&self, plan: Plan, attached: &mut Vec<oneshot::Receiver<()>>) -> Running {
        let counters = Arc::new(Counters::default());
        let (problem_tx, problem) = watch::channel(None);
        let problem_tx = Arc::new(problem_tx);
        let (datasets, datasets_task) =
            start_datasets(&plan, &self.broker, self.state_store.clone());
        let mut tasks: Vec<JoinHandle<()>> = datasets_task.into_iter().collect();
        for instance in 0..plan.instances {
            let flow = Instance {
                plan: plan.clone(),
                instance,
                counters: Arc::clone(&counters),
                problem: Arc::clone(&problem_tx),
                datasets: datasets.clone(),
            };
            let (tx, rx) = oneshot::channel();
            attached.push(rx);
            tasks.push(tokio::spawn(flow.run(self.broker.clone(), Some(tx))));
        }
        tracing::info!(dataflow = %plan.name, instances = plan.instances, "dataflow started");
        Running {
            fingerprint: plan.fingerprint,
            status: DataflowStatus {
                name: plan.name.clone(),
                counters,
                problem,
            },
            tasks,
        }
    }

    /// Every running dataflow's status, by name.
    pub fn statuses(&self) -> Vec<DataflowStatus> {
        self.running.values().map(|r| r.status.clone()).collect()
    }
}

/// Keep the datasets a plan's transform reads fresh: read each key from the state store
/// at start, then again whenever a KEYNOTIFY notification says it changed. The watcher is
/// an in-process client, so its registrations end with it, as a network client's would.
fn start_datasets(
    plan: &Plan,
    broker: &LocalFactory,
    store: Option<StateStoreHandle>,
) -> (watch::Receiver<Arc<Datasets>>, Option<JoinHandle<()>>) {
    let (tx, rx) = watch::channel(Arc::new(Datasets::new()));
    let keys: Vec<String> = plan
        .transform
        .as_ref()
        .and_then(|t| BuiltInTransformation::compile(t).ok())
        .map(|t| t.dataset_keys().map(str::to_owned).collect())
        .unwrap_or_default();
    let (Some(store), false) = (store, keys.is_empty()) else {
        return (rx, None);
    };
    let name = plan.name.clone();
    let broker = broker.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match watch_datasets(&name, &broker, &store, &keys, &tx).await {
                Ok(()) => return, // shutting down
                Err(e) => {
                    tracing::warn!(dataflow = %name, error = %e, "enrichment datasets cannot be watched; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    (rx, Some(task))
}

async fn watch_datasets(
    name: &str,
    broker: &LocalFactory,
    store: &StateStoreHandle,
    keys: &[String],
    tx: &watch::Sender<Arc<Datasets>>,
) -> Result<(), String> {
    let client_id = format!("edgeplane-dataflow-{name}-datasets");
    let mut client = match broker.attach(LocalOptions::new(client_id.clone())).await {
        Ok(c) => c,
        Err(LocalError::Closed) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for key in keys {
        let topic = edgeplane_statestore::notification_topic(&client_id, key.as_bytes());
        client
            .subscribe(&topic, SubOptions::new(QoS::AtLeastOnce))
            .await
            .map_err(|e| e.to_string())?;
        store
            .keynotify(&client_id, key.clone().into_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    // Registered before reading: a change from here on is either read or notified.
    for key in keys {
        refresh(name, store, key, tx).await?;
    }
    while let Some(r) = client.recv().await {
        client.ack(&r).await;
        let changed = keys.iter().find(|k| {
            r.message.topic == edgeplane_statestore::notification_topic(&client_id, k.as_bytes())
        });
        if let Some(key) = changed {
            refresh(name, store, key, tx).await?;
        }
    }
    Ok(())
}

async fn refresh(
    name: &str,
    store: &StateStoreHandle,
    key: &str,
    tx: &watch::Sender<Arc<Datasets>>,
) -> Result<(), String> {
    let found = store
        .get(Bytes::copy_from_slice(key.as_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    let mut next = (**tx.borrow()).clone();
    match found {
        None => {
            next.remove(key);
        }
        Some(v) => match parse_json_lines(&String::from_utf8_lossy(&v.value)) {
            Ok(records) => next.set(key.to_owned(), records),
            Err(e) => {
                tracing::warn!(dataflow = %name, key = %key, error = %e, "enrichment dataset is not JSON lines; keeping the previous records");
                return Ok(());
            }
        },
    }
    tracing::debug!(dataflow = %name, key = %key, "enrichment dataset refreshed");
    let _ = tx.send(Arc::new(next));
    Ok(())
}

struct Instance {
    plan: Plan,
    instance: u16,
    counters: Arc<Counters>,
    problem: Arc<watch::Sender<Option<String>>>,
    datasets: watch::Receiver<Arc<Datasets>>,
}

impl Instance {
    fn client_id(&self, role: &str) -> String {
        format!(
            "edgeplane-dataflow-{}-{role}-{}",
            self.plan.name, self.instance
        )
    }

    /// Attach and pump until the broker shuts down; `attached` fires after the first
    /// attempt (a local source is then subscribed).
    async fn run(self, broker: LocalFactory, mut attached: Option<oneshot::Sender<()>>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let result = self.attach(&broker).await;
            if let Some(tx) = attached.take() {
                let _ = tx.send(());
            }
            match result {
                Ok((source, sink)) => {
                    backoff = Duration::from_millis(200);
                    self.pump(source, sink).await;
                }
                // The broker is shutting down: so is the dataflow.
                Err(Attach::Closed) => return,
                Err(Attach::Failed(e)) => {
                    tracing::warn!(dataflow = %self.plan.name, error = %e, "dataflow cannot start; retrying");
                    let _ = self.problem.send(Some(e));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn attach(&self, broker: &LocalFactory) -> Result<(Source, Sink), Attach> {
        let plan = &self.plan;
        let sink = match &plan.destination.endpoint {
            EndpointPlan::Local => {
                let client = broker
                    .attach(LocalOptions::new(self.client_id("out")))
                    .await?;
                Sink::Local(client)
            }
            EndpointPlan::Remote(remote) => {
                let link = MqttLink::start(self.link_settings(remote, Vec::new(), "out"), None);
                self.watch_link(&link, &remote.endpoint);
                Sink::Remote(link)
            }
            EndpointPlan::Files(files) => {
                let folder = files.path.join(&plan.destination.data_destination);
                sink::start_files(files, folder)
            }
        };
        let source = match &plan.source.endpoint {
            EndpointPlan::Local => {
                let mut options = LocalOptions::new(self.client_id("in"));
                options.clean_start = false;
                options.session_expiry = if plan.disk_persistence {
                    u32::MAX
                } else {
                    3600
                };
                options.receive_maximum = WINDOW as u16;
                let mut client = broker.attach(options).await?;
                for topic in &plan.source.topics {
                    let filter = self.shared(topic);
                    client
                        .subscribe(&filter, SubOptions::new(QoS::AtLeastOnce))
                        .await?;
                }
                Source::Local(client)
            }
            EndpointPlan::Remote(remote) => {
                let subs = plan
                    .source
                    .topics
                    .iter()
                    .map(|t| (self.shared(t), remote.qos))
                    .collect();
                let (tx, rx) = mpsc::channel(WINDOW);
                let link = MqttLink::start(self.link_settings(remote, subs, "in"), Some(tx));
                self.watch_link(&link, &remote.endpoint);
                Source::Remote(link, rx)
            }
            EndpointPlan::Files(_) => {
                return Err(Attach::Failed(
                    "a LocalStorage endpoint cannot be a source".into(),
                ))
            }
        };
        Ok((source, sink))
    }

    /// With several instances, the source filter is shared among them.
    fn shared(&self, topic: &str) -> String {
        if self.plan.instances > 1 && !topic.starts_with("$share/") {
            format!("$share/edgeplane-dataflow-{}/{topic}", self.plan.name)
        } else {
            topic.to_owned()
        }
    }

    fn link_settings(
        &self,
        remote: &RemotePlan,
        subs: Vec<(String, QoS)>,
        role: &str,
    ) -> LinkSettings {
        LinkSettings {
            host: remote.host.clone(),
            tls: remote.tls.clone(),
            websocket: remote.websocket,
            client_id: format!(
                "{}-{}-{role}-{}",
                remote.client_id_prefix, self.plan.name, self.instance
            ),
            username: remote.username.clone(),
            password: remote.password.clone(),
            keep_alive: remote.keep_alive,
            session_expiry: remote.session_expiry,
            max_inflight: remote.max_inflight,
            subscriptions: subs,
        }
    }

    /// The dataflow is Degraded while a remote endpoint is down.
    fn watch_link(&self, link: &MqttLink, endpoint: &str) {
        let mut status = link.status();
        let problem = Arc::clone(&self.problem);
        let endpoint = endpoint.to_owned();
        tokio::spawn(async move {
            loop {
                let now = status.borrow_and_update().clone();
                match now {
                    LinkStatus::Connected => {
                        let _ = problem.send(None);
                    }
                    LinkStatus::Down(why) => {
                        let _ = problem.send(Some(format!("endpoint {endpoint}: {why}")));
                    }
                    LinkStatus::Connecting => {}
                }
                if status.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// Move messages until the source ends.
    async fn pump(&self, mut source: Source, mut sink: Sink) {
        let mut transform = self
            .plan
            .transform
            .as_ref()
            .and_then(|t| BuiltInTransformation::compile(t).ok());
        let mut pending: VecDeque<(sink::Accepted, AckToken)> = VecDeque::new();
        let mut logged_unroutable = false;
        if matches!(sink, Sink::Local(_) | Sink::Files(_)) {
            let _ = self.problem.send(None);
        }
        loop {
            // Acknowledge, in order, what the destination has accepted.
            while let Some((accepted, _)) = pending.front_mut() {
                let ready = match accepted {
                    sink::Accepted::Now => true,
                    sink::Accepted::Later(rx) => match rx.try_recv() {
                        Ok(()) => true,
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => false,
                        Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return,
                    },
                };
                if !ready {
                    break;
                }
                if let Some((_, token)) = pending.pop_front() {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    source.ack(token).await;
                }
            }
            if pending.len() >= WINDOW {
                // Full: wait for the oldest to be accepted.
                if let Some((accepted, _)) = pending.front_mut() {
                    let done = match accepted {
                        sink::Accepted::Now => Ok(()),
                        sink::Accepted::Later(rx) => rx.await.map_err(|_| ()),
                    };
                    if done.is_err() {
                        return;
                    }
                    *accepted = sink::Accepted::Now;
                }
                continue;
            }
            let next = if pending.is_empty() {
                source.recv().await
            } else {
                // Something is in flight: take more input, or wake when the oldest lands.
                tokio::select! {
                    biased;
                    done = wait_front(&mut pending) => {
                        if done.is_err() { return; }
                        continue;
                    }
                    next = source.recv() => next,
                }
            };
            let Some(msg) = next else {
                return; // the source session ended (shutdown or takeover)
            };
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            let token_msg = self.process(&mut transform, msg, &mut logged_unroutable);
            match token_msg {
                Step::Drop(token) => source.ack(token).await,
                Step::Send(publish, token) => match sink.send(*publish).await {
                    Some(accepted) => pending.push_back((accepted, token)),
                    None => return,
                },
            }
        }
    }

    fn process(
        &self,
        transform: &mut Option<BuiltInTransformation>,
        msg: Incoming,
        logged_unroutable: &mut bool,
    ) -> Step {
        let plan = &self.plan;
        let Incoming {
            topic: input_topic,
            mut payload,
            mut properties,
            qos,
            retain,
            ack,
        } = msg;
        let mut topic_after = input_topic.clone();
        if let Some(t) = transform.as_mut() {
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(dataflow = %plan.name, topic = %input_topic, "payload is not JSON; dropped");
                return Step::Drop(ack);
            };
            let message = Message {
                topic: input_topic.clone(),
                payload: json,
                user_properties: std::mem::take(&mut properties.user_properties),
                content_type: properties.content_type.take(),
            };
            let datasets = Arc::clone(&self.datasets.borrow());
            match t.apply(message, &*datasets) {
                Ok(Outcome::Emit(out)) => {
                    payload = Bytes::from(serde_json::to_vec(&out.payload).unwrap_or_default());
                    properties.user_properties = out.user_properties;
                    properties.content_type = out.content_type;
                    topic_after = out.topic;
                }
                Ok(Outcome::Dropped(_)) => {
                    self.counters.filtered.fetch_add(1, Ordering::Relaxed);
                    return Step::Drop(ack);
                }
                Err(e) => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(dataflow = %plan.name, error = %e, "transform failed; dropped");
                    return Step::Drop(ack);
                }
            }
        }
        let template = plan
            .destination
            .data_destination
            .replace("${outputTopic}", &topic_after);
        let Some(topic) = topic::resolve(&template, &input_topic) else {
            self.counters.unroutable.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(logged_unroutable, true) {
                tracing::warn!(dataflow = %plan.name, topic = %input_topic, destination = %plan.destination.data_destination, "destination topic cannot be resolved for this message; dropped (logged once)");
            }
            return Step::Drop(ack);
        };
        topic::apply_headers(&plan.destination.headers, &mut properties.user_properties);
        let (qos, retain) = match &plan.destination.endpoint {
            EndpointPlan::Remote(r) => {
                if r.create_cloud_events {
                    cloud_events(&mut properties, &r.endpoint, &topic);
                }
                (
                    r.qos.min(qos.max(QoS::AtLeastOnce)),
                    retain && r.keep_retain,
                )
            }
            _ => (qos.min(QoS::AtLeastOnce), retain),
        };
        properties.subscription_identifiers.clear();
        properties.topic_alias = None;
        Step::Send(
            Box::new(Publish {
                dup: false,
                qos,
                retain,
                topic,
                packet_id: 0,
                properties,
                payload,
            }),
            ack,
        )
    }
}

enum Step {
    Drop(AckToken),
    Send(Box<Publish>, AckToken),
}

async fn wait_front(pending: &mut VecDeque<(sink::Accepted, AckToken)>) -> Result<(), ()> {
    match pending.front_mut() {
        Some((sink::Accepted::Later(rx), _)) => {
            let r = rx.await.map_err(|_| ());
            if let Some(front) = pending.front_mut() {
                front.0 = sink::Accepted::Now;
            }
            r
        }
        _ => Ok(()),
    }
}

/// Why an instance could not attach to its endpoints.
enum Attach {
    Closed,
    Failed(String),
}

impl From<LocalError> for Attach {
    fn from(e: LocalError) -> Attach {
        match e {
            LocalError::Closed => Attach::Closed,
            other => Attach::Failed(other.to_string()),
        }
    }
}

static EVENT_IDS: AtomicU64 = AtomicU64::new(0);

/// `CreateOrRemap`: fill in the CloudEvents attributes a message lacks.
fn cloud_events(props: &mut Properties, endpoint: &str, topic: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let id = format!(
        "{:016x}-{:08x}",
        now.as_nanos() as u64,
        EVENT_IDS.fetch_add(1, Ordering::Relaxed)
    );
    let defaults = [
        ("specversion", "1.0".to_owned()),
        ("type", "ms.aio-dataflow.telemetry".to_owned()),
        ("source", format!("aio://{endpoint}")),
        ("id", id),
        ("subject", topic.to_owned()),
        ("time", rfc3339(now)),
    ];
    for (key, value) in defaults {
        if !props.user_properties.iter().any(|(k, _)| k == key) {
            props.user_properties.push((key.to_owned(), value));
        }
    }
}

/// `2026-12-02T03:04:05.678Z` from a time since the Unix epoch.
pub(crate) fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(
            rfc3339(Duration::from_millis(0)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(Duration::from_millis(1_796_180_645_678)),
            "2026-12-02T03:04:05.678Z"
        );
        assert_eq!(
            rfc3339(Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
    }
}

#[cfg(test)]
mod metric_tests {
    use super::*;

    #[test]
    fn metrics_have_one_sample_per_outcome_and_escape_names() {
        let counters = Arc::new(Counters::default());
        counters.received.store(5, Ordering::Relaxed);
        counters.sent.store(4, Ordering::Relaxed);
        let (_tx, problem) = watch::channel(Some("endpoint x: down".to_owned()));
        let board = StatusBoard::default();
        if let Ok(mut b) = board.0.write() {
            b.push(DataflowStatus {
                name: "line\"1".into(),
                counters,
                problem,
            });
        }
        let mut out = String::new();
        board.render_metrics(&mut out);
        assert!(out.contains(
            "edgeplane_dataflow_messages_total{dataflow=\"line\\\"1\",outcome=\"received\"} 5\n"
        ));
        assert!(out.contains("outcome=\"sent\"} 4\n"));
        assert!(out.contains("edgeplane_dataflow_available{dataflow=\"line\\\"1\"} 0\n"));
        assert_eq!(out.matches("# TYPE").count(), 2);
    }
}
