//! The state store service on the broker: a reader task owns the session subscribed to the
//! request topic and hands each request to the store task, which owns the [`Store`],
//! executes requests and in-process calls in arrival order, expires keys on time, drops the
//! KEYNOTIFY registrations of clients that disconnect, and publishes responses and
//! notifications through a second session.
//!
//! Two sessions, because [`LocalClient::recv`] is not cancel-safe (it may wait on the
//! router after taking a delivery), so it cannot sit in a `select!` beside timers and
//! events; the reader only receives, forwards and acknowledges.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use edgeplane_broker::message::Message;
use edgeplane_broker::{ClientEvent, LocalClient};
use edgeplane_codec::{Properties, Publish, QoS};
use tokio::sync::{broadcast, mpsc};

use crate::command::{self, Limits, Request, TIMESTAMP_PROPERTY};
use crate::store::{Notification, Store};
use crate::{notification_topic, CONTENT_TYPE, NOTIFY_TOPIC_PREFIX, REQUEST_TOPIC};

/// A call from an in-process caller, run on the store task.
pub(crate) type Call = Box<dyn FnOnce(&mut Store, Instant) + Send>;

/// Requests read ahead of the store task.
pub(crate) const REQUEST_QUEUE: usize = 1024;

/// Receive requests and forward them; ends when the broker or the store task stops.
pub(crate) async fn read_requests(mut client: LocalClient, tx: mpsc::Sender<Arc<Message>>) {
    while let Some(r) = client.recv().await {
        if tx.send(Arc::clone(&r.message)).await.is_err() {
            break;
        }
        // Handed to the store task, which keeps state in memory only: a crash loses the
        // request either way, so acknowledging now costs nothing and frees the window.
        client.ack(&r).await;
    }
    client.disconnect().await;
}

pub(crate) struct StoreTask {
    pub store: Store,
    pub publisher: LocalClient,
    pub requests: mpsc::Receiver<Arc<Message>>,
    pub calls: mpsc::Receiver<Call>,
    pub events: broadcast::Receiver<ClientEvent>,
    pub limits: Limits,
}

impl StoreTask {
    pub(crate) async fn run(mut self) {
        loop {
            let deadline = self.store.next_expiry();
            tokio::select! {
                biased;
                event = self.events.recv() => match event {
                    Ok(ClientEvent::Disconnected { client_id }) => self.store.drop_client(&client_id),
                    Err(broadcast::error::RecvError::Lagged(n)) => tracing::warn!(
                        missed = n,
                        "state store missed client disconnections; their key notifications stay registered"
                    ),
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                Some(call) = self.calls.recv() => call(&mut self.store, Instant::now()),
                request = self.requests.recv() => match request {
                    Some(msg) => self.on_request(&msg).await,
                    None => break,
                },
                () = sleep_until(deadline) => self.store.expire(Instant::now()),
            }
            self.publish_notifications().await;
        }
        self.publisher.disconnect().await;
    }

    async fn on_request(&mut self, msg: &Message) {
        let Some(response_topic) = msg.properties.response_topic.as_deref() else {
            tracing::debug!(client = ?msg.origin, "state store request without a response topic ignored");
            return;
        };
        // Answering there would loop back into the service or spoof notifications.
        if response_topic == REQUEST_TOPIC || response_topic.starts_with(NOTIFY_TOPIC_PREFIX) {
            tracing::warn!(client = ?msg.origin, topic = response_topic, "state store request with a forbidden response topic ignored");
            return;
        }
        let request = Request {
            payload: &msg.payload,
            client_id: msg.origin.as_ref(),
            user_properties: &msg.properties.user_properties,
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
        self.publish(response_topic.to_owned(), properties, reply.encode())
            .await;
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

    async fn publish(&self, topic: String, properties: Properties, payload: Bytes) {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic,
            packet_id: 0,
            properties,
            payload,
        };
        if let Err(e) = self.publisher.publish(publish).await {
            tracing::debug!(error = %e, "state store could not publish");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
