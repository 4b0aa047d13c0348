//! One instance of a dataflow: attach the source and the destination, then move messages
//! (transform, route, hand over, acknowledge) until the source ends, and attach again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use edgeplane_broker::{LocalClient, LocalError, LocalFactory, LocalOptions, Received};
use edgeplane_codec::{Properties, Publish, QoS, SubOptions};
use tokio::sync::{mpsc, oneshot, watch};

use super::mqtt::{Delivery, DeliveryAck, LinkSettings, LinkStatus, MqttLink};
use super::sink::{self, Sink};
use super::status::Counters;
use super::{topic, WINDOW};
use crate::dataset::Datasets;
use crate::resources::{EndpointPlan, Plan, RemotePlan};
use crate::{BuiltInTransformation, Message, Outcome};

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

pub(super) struct Instance {
    pub(super) plan: Plan,
    pub(super) instance: u16,
    pub(super) counters: Arc<Counters>,
    pub(super) problem: Arc<watch::Sender<Option<String>>>,
    pub(super) datasets: watch::Receiver<Arc<Datasets>>,
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
    pub(super) async fn run(self, broker: LocalFactory, mut attached: Option<oneshot::Sender<()>>) {
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
