//! The state store service on the broker: a reader task owns the session subscribed to the
//! request topic and hands each request to the store task, which owns the [`Store`],
//! executes requests and in-process calls in arrival order, expires keys on time, drops the
//! KEYNOTIFY registrations of connections that end (by connection id, as the broker reports
//! them in [`ClientEvent::Disconnected`]), and publishes responses and
//! notifications through a second session. Work is batched: whatever is ready is executed,
//! the batch's changes go to the journal (one write and sync, with a data folder), then the
//! answers go out.
//!
//! Two sessions, because [`LocalClient::recv`] is not cancel-safe (it may wait on the
//! router after taking a delivery), so it cannot sit in a `select!` beside timers and
//! events; the reader only receives, forwards and acknowledges.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeplane_broker::auth::KeyAccess;
use edgeplane_broker::message::{Message, Publisher};
use edgeplane_broker::{ClientEvent, ClientEventReceiver, LocalClient};
use edgeplane_codec::{Properties, Publish, QoS};
use tokio::sync::mpsc;

use crate::access::Access;
use crate::command::{self, Limits, Request, TIMESTAMP_PROPERTY};
use crate::cursor::CursorSeal;
use crate::persist::Journal;
use crate::store::{Change, Notification, Requester, Store};
use crate::{notification_topic, CONTENT_TYPE, NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};
use crate::{resp, DurableKeys};

/// A call from an in-process caller, run on the store task; it returns the delivery of its
/// answer, which the task runs once the batch's changes are durable.
pub(crate) type Call = Box<dyn FnOnce(&mut Store, Instant) -> Reply + Send>;
pub(crate) type Reply = Box<dyn FnOnce() + Send>;

/// Requests and calls executed together before one journal write.
const BATCH: usize = 256;

/// Requests read ahead of the store task.
pub(crate) const REQUEST_QUEUE: usize = 1024;

/// Receive requests and forward them; ends when the broker or the store task stops.
pub(crate) async fn read_requests(mut client: LocalClient, tx: mpsc::Sender<Arc<Message>>) {
    while let Some(r) = client.recv().await {
        if tx.send(Arc::clone(&r.message)).await.is_err() {
            break;
        }
        // The response, sent once the change is durable, is what tells the client it
        // applied; a request lost in a crash gets none and the client asks again.
        client.ack(&r).await;
    }
    client.disconnect().await;
}

pub(crate) struct StoreTask {
    pub store: Store,
    pub publisher: LocalClient,
    pub requests: mpsc::Receiver<Arc<Message>>,
    pub calls: mpsc::Receiver<Call>,
    /// Disconnections, lossless: each one drops that client's KEYNOTIFY registrations.
    pub events: ClientEventReceiver,
    pub limits: Limits,
    /// With a data folder: changes are written here before answers go out.
    pub journal: Option<Journal>,
    pub durable_keys: DurableKeys,
    /// Keys written by requests that asked for persistence (`Custom` with dynamic opt-in).
    pub opted_in: HashSet<Bytes>,
    /// Answers of the current batch: responses to publish and in-process replies.
    pub answers: Vec<(String, Properties, Bytes)>,
    pub replies: Vec<Reply>,
    /// Seals SCAN cursors handed to clients a policy restricts.
    pub cursors: CursorSeal,
}

impl StoreTask {
    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.store.next_expiry();
            tokio::select! {
                biased;
                Some(event) = self.events.recv() => self.on_event(event),
                Some(call) = self.calls.recv() => {
                    let reply = call(&mut self.store, Instant::now());
                    self.replies.push(reply);
                }
                request = self.requests.recv() => match request {
                    Some(msg) => self.on_request(&msg),
                    None => break,
                },
                () = sleep_until(deadline) => self.store.expire(Instant::now()),
            }
            self.take_ready();
            self.commit().await;
        }
        self.publisher.disconnect().await;
    }

    fn on_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::Disconnected { client_id, conn_id } => {
                self.store.drop_client(&client_id, conn_id, Instant::now());
            }
        }
    }

    /// Execute what else is waiting, up to a batch, without waiting. Disconnections are
    /// taken first each round, so a registration ends soon after its connection; which
    /// registrations a disconnection ends is decided by connection id, not by this order
    /// (a request of the ended connection may still be queued behind it, see `store.rs`).
    fn take_ready(&mut self) {
        for _ in 0..BATCH {
            while let Some(event) = self.events.try_recv() {
                self.on_event(event);
            }
            let mut progressed = false;
            if let Ok(call) = self.calls.try_recv() {
                let reply = call(&mut self.store, Instant::now());
                self.replies.push(reply);
                progressed = true;
            }
            if let Ok(msg) = self.requests.try_recv() {
                self.on_request(&msg);
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    /// Make the batch's changes durable, then send its answers and notifications. A failed
    /// write is retried (answers wait meanwhile): nothing is reported done that is not.
    async fn commit(&mut self) {
        let mut changes = self.store.take_changes();
        if let DurableKeys::Matching { keys, .. } = &self.durable_keys {
            let opted = &mut self.opted_in;
            changes.retain(|c| match c {
                Change::Put { key, .. } => {
                    opted.contains(key) || keys.iter().any(|k| k.matches(key))
                }
                Change::Remove { key } => {
                    opted.remove(key);
                    true
                }
            });
        }
        let journal = if changes.is_empty() {
            None
        } else {
            self.journal.take()
        };
        if let Some(journal) = journal {
            let mut backoff = Duration::from_millis(100);
            let mut journal = journal;
            loop {
                let batch = changes.clone();
                let (j, result) = tokio::task::spawn_blocking(move || {
                    let r = journal.append(&batch);
                    (journal, r)
                })
                .await
                .unwrap_or_else(|e| panic!("state store journal writer panicked: {e}"));
                journal = j;
                match result {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "state store cannot write its journal; answers wait until it can");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            if journal.wants_compaction(self.store.bytes()) {
                let snapshot = self.store.snapshot(Instant::now());
                let (j, result) = tokio::task::spawn_blocking(move || {
                    let r = journal.compact(&snapshot);
                    (journal, r)
                })
                .await
                .unwrap_or_else(|e| panic!("state store journal writer panicked: {e}"));
                journal = j;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "state store journal compaction failed; the journal keeps growing");
                }
            }
            self.journal = Some(journal);
        }
        publish_all(&self.publisher, std::mem::take(&mut self.answers)).await;
        for reply in std::mem::take(&mut self.replies) {
            reply();
        }
        self.publish_notifications().await;
    }

    fn on_request(&mut self, msg: &Message) {
        let Some(response_topic) = msg.properties.response_topic.as_deref() else {
            tracing::debug!(client = ?msg.origin, "state store request without a response topic ignored");
            return;
        };
        // Answering there would loop back into the service or spoof notifications.
        if response_topic == REQUEST_TOPIC || response_topic.starts_with(NOTIFY_TOPIC_PREFIX) {
            tracing::warn!(client = ?msg.origin, topic = response_topic, "state store request with a forbidden response topic ignored");
            return;
        }
        let access = Access::of(msg);
        if let DurableKeys::Matching {
            dynamic: Some((k, v)),
            ..
        } = &self.durable_keys
        {
            let asked = msg
                .properties
                .user_properties
                .iter()
                .any(|(pk, pv)| pk == k && pv == v);
            if asked {
                if let Some(key) = resp::parse_request(&msg.payload)
                    .ok()
                    .and_then(|a| a.get(1).cloned())
                    .filter(|key| access.allows(KeyAccess::Write, key))
                {
                    self.opted_in.insert(key);
                }
            }
        }
        let request = Request {
            payload: &msg.payload,
            client_id: msg.origin.as_ref(),
            requester: requester(msg),
            user_properties: &msg.properties.user_properties,
            access: &access,
            cursors: &self.cursors,
        };
        let (reply, version) =
            command::execute(&mut self.store, &request, self.limits, Instant::now());
        let properties = Properties {
            correlation_data: msg.properties.correlation_data.clone(),
            content_type: Some(CONTENT_TYPE.to_owned()),
            user_properties: vec![
                ("__stat".to_owned(), "200".to_owned()),
                ("__protVer".to_owned(), "1.0".to_owned()),
                (TIMESTAMP_PROPERTY.to_owned(), version.to_string()),
            ],
            ..Properties::default()
        };
        self.answers
            .push((response_topic.to_owned(), properties, reply.encode()));
    }

    async fn publish_notifications(&mut self) {
        for n in self.store.take_notifications() {
            let Notification {
                client_id,
                key,
                value,
                version,
            } = n;
            let properties = Properties {
                content_type: Some(CONTENT_TYPE.to_owned()),
                user_properties: vec![
                    (TIMESTAMP_PROPERTY.to_owned(), version.to_string()),
                    ("__protVer".to_owned(), "1.0".to_owned()),
                ],
                ..Properties::default()
            };
            let payload = crate::resp::encode_notification(value.as_deref());
            let topic = notification_topic(&client_id, &key);
            self.publish(topic, properties, payload).await;
        }
    }

    async fn publish(&mut self, topic: String, properties: Properties, payload: Bytes) {
        publish(&self.publisher, topic, properties, payload).await;
    }
}

/// Which connection a request came from. A will's connection has ended; so has that of a
/// message without a publisher (read back from the durable store after a restart).
fn requester(msg: &Message) -> Requester {
    match msg.publisher.as_deref() {
        Some(Publisher::Service) => Requester::InProcess,
        Some(Publisher::Client {
            conn: Some(conn), ..
        }) => Requester::Connection(*conn),
        Some(Publisher::Client { conn: None, .. }) | None => Requester::Ended,
    }
}

/// Publish an answer or notification (QoS 1) through the service's session.
async fn publish(publisher: &LocalClient, topic: String, properties: Properties, payload: Bytes) {
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic,
        packet_id: 0,
        properties,
        payload,
    };
    if let Err(e) = publisher.publish(publish).await {
        tracing::debug!(error = %e, "state store could not publish");
    }
}

/// Publish a batch's answers together. With a durable broker each publish waits until every
/// partition has routed it; awaited one by one, a batch of 256 answers was a chain of 256
/// such round trips. They are polled in batch order, so the partitions receive them in that
/// order unless an inbox is full. Notifications stay one at a time: their order per key is
/// part of the protocol.
async fn publish_all(publisher: &LocalClient, answers: Vec<(String, Properties, Bytes)>) {
    let mut pending: Vec<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = answers
        .into_iter()
        .map(|(topic, properties, payload)| {
            Box::pin(publish(publisher, topic, properties, payload)) as Pin<Box<_>>
        })
        .collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
