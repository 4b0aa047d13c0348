//! In-process clients: services inside the binary (state store, self-check probe, dataflows,
//! connectors) attach a session to the router through channels instead of a socket. The
//! session is an ordinary one — subscriptions, queues, QoS flows, expiry, takeover — so
//! everything the broker guarantees to network clients holds for them too, without encoding
//! packets.
//!
//! Deliveries come out of [`LocalClient::recv`] and are acknowledged with
//! [`LocalClient::ack`] once the service has handled them (QoS 1/2 messages stay in flight,
//! and are re-sent to a resumed session, until then).
//!
//! Each attach takes an id from the counter network connections use, so when it ends,
//! [`crate::ClientEvent::Disconnected`] names it like any connection. Its messages name no
//! connection, though: their publisher is [`crate::message::Publisher::Service`], and the
//! state store ends an in-process client's KEYNOTIFY registrations at any disconnection of
//! its client id, whichever session made them (our services register through the state
//! store's typed API, which does the same, not over MQTT).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgeplane_codec::{
    ConnAck, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions, Subscribe,
    Unsubscribe,
};
use tokio::sync::oneshot;

use crate::connection::Context;
use crate::message::Message;
use crate::router::mailbox::{mailbox, MailboxRx, Next};
use crate::router::{AckKind, Cmd, ConnectRequest, Delivery, Ending, Outgoing, Ticket};

/// Outgoing channel capacity of an in-process client.
const CAPACITY: usize = 1024;

/// How an in-process client's session is set up.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub client_id: String,
    /// Start a new session (true) or resume one left by an earlier client with this id.
    pub clean_start: bool,
    /// Seconds the session outlives the client (0: ends with it; `u32::MAX`: never).
    pub session_expiry: u32,
    /// QoS 1/2 messages in flight to this client before the router waits for acks.
    pub receive_maximum: u16,
}

impl LocalOptions {
    /// A clean, non-persistent session named `client_id`.
    pub fn new(client_id: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            clean_start: true,
            session_expiry: 0,
            receive_maximum: 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("the broker is shutting down")]
    Closed,
    #[error("the session of {0:?} was taken over by another client with the same id")]
    TakenOver(String),
    #[error("subscription to {filter:?} refused with reason {reason}")]
    Refused { filter: String, reason: ReasonCode },
    #[error("the router answered with {0} where another packet was expected")]
    Unexpected(&'static str),
}

/// Attaches in-process clients from anywhere (a task, a service), independent of the
/// [`crate::Broker`] value's lifetime.
#[derive(Clone)]
pub struct LocalFactory(pub(crate) Arc<Context>);

impl LocalFactory {
    pub async fn attach(&self, options: LocalOptions) -> Result<LocalClient, LocalError> {
        LocalClient::connect(Arc::clone(&self.0), options).await
    }
}

/// A message delivered to an in-process client.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Arc<Message>,
    /// QoS of this delivery (the minimum of the message's and the subscription's).
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    packet_id: u16,
}

/// A session attached from inside the process.
pub struct LocalClient {
    ctx: Arc<Context>,
    client_id: Arc<str>,
    conn_id: u64,
    partition: usize,
    rx: MailboxRx<Outgoing>,
    /// Deliveries that arrived while waiting for a SUBACK/UNSUBACK.
    pending: VecDeque<Received>,
    next_packet_id: u16,
    closed: bool,
}

impl LocalClient {
    pub(crate) async fn connect(
        ctx: Arc<Context>,
        o: LocalOptions,
    ) -> Result<LocalClient, LocalError> {
        let client_id: Arc<str> = o.client_id.into();
        let conn_id = ctx.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mailbox(CAPACITY);
        let (reply, reply_rx) = oneshot::channel();
        let request = ConnectRequest {
            client_id: Arc::clone(&client_id),
            internal: true,
            conn_id,
            version: ProtocolVersion::V5,
            clean_start: o.clean_start,
            session_expiry: o.session_expiry,
            will: None,
            opted_in: false,
            window: o.receive_maximum.max(1),
            keep_alive_ms: None,
            tx,
            details: None,
            connack: ConnAck {
                session_present: false,
                code: 0,
                properties: Properties::default(),
            },
            reply,
        };
        let partition = ctx.router.partition_of(&client_id);
        if !ctx
            .router
            .send(partition, Cmd::Connect(Box::new(request)))
            .await
        {
            return Err(LocalError::Closed);
        }
        reply_rx.await.map_err(|_| LocalError::Closed)?;
        let mut client = LocalClient {
            ctx,
            client_id,
            conn_id,
            partition,
            rx,
            pending: VecDeque::new(),
            next_packet_id: 1,
            closed: false,
        };
        match client.next_control().await? {
            Packet::ConnAck(_) => Ok(client),
            other => Err(LocalError::Unexpected(other.name())),
        }
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Subscribe to one filter (`$share/...` allowed) and return the granted QoS.
    pub async fn subscribe(&mut self, filter: &str, opts: SubOptions) -> Result<QoS, LocalError> {
        let packet_id = self.packet_id();
        let packet = Subscribe {
            packet_id,
            filters: vec![(filter.to_owned(), opts)],
            properties: Properties::default(),
        };
        self.command(Cmd::Subscribe {
            client: Arc::clone(&self.client_id),
            conn: self.conn_id,
            packet: Box::new(packet),
            denied: Vec::new(),
        })
        .await?;
        match self.next_control().await? {
            Packet::SubAck(ack) => match ack.reasons.first() {
                Some(r) if !r.is_error() => Ok(QoS::try_from(r.0).unwrap_or(QoS::AtMostOnce)),
                Some(r) => Err(LocalError::Refused {
                    filter: filter.to_owned(),
                    reason: *r,
                }),
                None => Err(LocalError::Refused {
                    filter: filter.to_owned(),
                    reason: ReasonCode::UNSPECIFIED_ERROR,
                }),
            },
            other => Err(LocalError::Unexpected(other.name())),
        }
    }

    /// Remove a subscription; true if it existed.
    pub async fn unsubscribe(&mut self, filter: &str) -> Result<bool, LocalError> {
        let packet_id = self.packet_id();
        let packet = Unsubscribe {
            packet_id,
            filters: vec![filter.to_owned()],
            properties: Properties::default(),
        };
        self.command(Cmd::Unsubscribe {
            client: Arc::clone(&self.client_id),
            conn: self.conn_id,
            packet: Box::new(packet),
        })
        .await?;
        match self.next_control().await? {
            Packet::UnsubAck(ack) => Ok(ack.reasons.first() == Some(&ReasonCode::SUCCESS)),
            other => Err(LocalError::Unexpected(other.name())),
        }
    }

    /// Publish a message, with this client as its origin (for No Local) and, to a service
    /// that authorizes requests, [`crate::message::Publisher::Service`] as its publisher
    /// (in-process services are trusted). It is routed (and, if retained, stored) before
    /// this returns, and a QoS 1/2 message is durable where the store keeps it (as a
    /// network client's would be when acknowledged); the QoS decides how subscribers get it.
    /// In-process publishes are not counted as received messages (those count clients').
    pub async fn publish(&self, publish: Publish) -> Result<(), LocalError> {
        if self.closed {
            return Err(LocalError::Closed);
        }
        let max_expiry = self.ctx.settings.clients.max_message_expiry_secs;
        let mut msg = Message::from_publish(publish, Some(Arc::clone(&self.client_id)), max_expiry);
        if crate::message::carries_publisher(&msg.topic) {
            msg.publisher = Some(Arc::new(crate::message::Publisher::Service));
        }
        let router = &self.ctx.router;
        // Only a QoS 1/2 message with a store behind the broker has anything to wait for.
        let wait = router
            .store
            .as_ref()
            .filter(|_| msg.qos != QoS::AtMostOnce)
            .map(|store| {
                let notify = Arc::new(tokio::sync::Notify::new());
                let ticket = Ticket::new(router.partitions(), Arc::clone(&notify), None);
                (store, ticket, notify)
            });
        let ticket = wait.as_ref().map(|(_, t, _)| Arc::clone(t));
        router.publish(Arc::new(msg), 0, ticket).await;
        if let Some((store, t, notify)) = wait {
            while !t.routed() {
                notify.notified().await;
            }
            let mut durable = store.watch_durable();
            let _ = durable.wait_for(|d| *d >= t.required()).await;
        }
        Ok(())
    }

    /// The next delivered message; `None` once the broker shuts down or the session was
    /// taken over. QoS 1/2 deliveries must be passed to [`LocalClient::ack`] when handled.
    pub async fn recv(&mut self) -> Option<Received> {
        if let Some(r) = self.pending.pop_front() {
            return Some(r);
        }
        loop {
            match self.next_item().await.ok()? {
                Outgoing::Publish(d) => return Some(received(d)),
                // Re-sent PUBREL of a resumed session: the message was received already.
                Outgoing::Packet(p) => {
                    if let Packet::PubRel(a) = *p {
                        self.send_ack(a.packet_id, AckKind::Qos2Completed).await;
                    }
                }
            }
        }
    }

    /// Acknowledge a delivery: it leaves the session and frees its in-flight slot.
    pub async fn ack(&mut self, r: &Received) {
        match r.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_ack(r.packet_id, AckKind::Qos1Acked).await,
            QoS::ExactlyOnce => {
                self.send_ack(r.packet_id, AckKind::Qos2Received { failed: false })
                    .await;
                self.send_ack(r.packet_id, AckKind::Qos2Completed).await;
            }
        }
    }

    /// End the session's connection normally (no will; the session expires as configured).
    pub async fn disconnect(mut self) {
        self.detach().await;
    }

    async fn detach(&mut self) {
        if !self.closed {
            self.closed = true;
            let ending = Ending::Graceful {
                publish_will: false,
                session_expiry: None,
            };
            let cmd = Cmd::Disconnected {
                client: Arc::clone(&self.client_id),
                conn: self.conn_id,
                ending,
            };
            self.ctx.router.send(self.partition, cmd).await;
        }
    }

    async fn send_ack(&self, packet_id: u16, kind: AckKind) {
        let cmd = Cmd::Ack {
            client: Arc::clone(&self.client_id),
            conn: self.conn_id,
            packet_id,
            kind,
        };
        self.ctx.router.send(self.partition, cmd).await;
    }

    async fn command(&self, cmd: Cmd) -> Result<(), LocalError> {
        if self.closed || !self.ctx.router.send(self.partition, cmd).await {
            return Err(LocalError::Closed);
        }
        Ok(())
    }

    fn packet_id(&mut self) -> u16 {
        let id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
        id
    }

    /// The next control packet; deliveries met on the way are kept for `recv`, and PUBRELs
    /// re-sent to a resumed session are completed.
    async fn next_control(&mut self) -> Result<Packet, LocalError> {
        loop {
            match self.next_item().await? {
                Outgoing::Publish(d) => self.pending.push_back(received(d)),
                Outgoing::Packet(p) => match *p {
                    Packet::PubRel(a) => self.send_ack(a.packet_id, AckKind::Qos2Completed).await,
                    other => return Ok(other),
                },
            }
        }
    }

    async fn next_item(&mut self) -> Result<Outgoing, LocalError> {
        if self.closed {
            return Err(LocalError::Closed);
        }
        let item = match self.rx.next().await {
            Next::Item(item) => item,
            // In-process clients are never sent the shutdown order (they end with the
            // runtime), so any order is a takeover.
            Next::Order(_) => {
                self.closed = true;
                return Err(LocalError::TakenOver(self.client_id.to_string()));
            }
            Next::Closed => {
                self.closed = true;
                return Err(LocalError::Closed);
            }
        };
        if self.rx.is_empty() && self.rx.signals().drain.swap(false, Ordering::AcqRel) {
            let cmd = Cmd::Drained {
                client: Arc::clone(&self.client_id),
                conn: self.conn_id,
            };
            self.ctx.router.send(self.partition, cmd).await;
        }
        Ok(item)
    }
}

impl Drop for LocalClient {
    fn drop(&mut self) {
        if !self.closed {
            // Dropped without `disconnect`: detach as an abnormal end, from a task.
            let cmd = Cmd::Disconnected {
                client: Arc::clone(&self.client_id),
                conn: self.conn_id,
                ending: Ending::Abnormal,
            };
            let router = Arc::clone(&self.ctx.router);
            let partition = self.partition;
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { router.send(partition, cmd).await });
            }
        }
    }
}

fn received(d: Delivery) -> Received {
    Received {
        message: d.msg,
        qos: d.qos,
        retain: d.retain,
        subscription_ids: d.sub_ids,
        packet_id: d.packet_id,
    }
}
