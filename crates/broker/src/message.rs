//! An application message as the router holds it: decoded once at ingress, shared by
//! reference (`Arc`) across every subscriber queue, re-encoded per connection on egress.
//!
//! Messages to an in-process service that authorizes each request (the state store, on
//! [`STATE_STORE_REQUEST_TOPIC`]) also carry their [`Publisher`]: the publishing connection's
//! principal and its listener port's authorization, set at ingress. Other topics carry none,
//! so the hot path allocates nothing for it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use edgeplane_codec::{Properties, Publish, QoS};

use crate::auth::{ListenerAuth, Principal};

/// The Azure IoT Operations state store's request topic (a protocol constant). The state
/// store is served in-process and authorizes requests by their publisher, so messages to
/// this topic carry a [`Publisher`].
pub const STATE_STORE_REQUEST_TOPIC: &str =
    "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";

/// Whether a message to `topic` carries its [`Publisher`].
pub fn carries_publisher(topic: &str) -> bool {
    topic == STATE_STORE_REQUEST_TOPIC
}

/// Who published a message, for services that authorize requests.
#[derive(Debug)]
pub enum Publisher {
    /// An in-process service of the binary (trusted, as its code is ours).
    Service,
    /// A network client: who it is, and what its listener port enforces. The port's policy
    /// is read when the request is handled, so a replaced policy applies at once.
    Client {
        principal: Principal,
        auth: Arc<ListenerAuth>,
        /// The id of the network connection that sent the PUBLISH (broker-wide unique, the
        /// `conn_id` that [`crate::ClientEvent::Disconnected`] names when it ends), so a
        /// service can tell a request from an ended connection from one from its
        /// successor. `None` for a will: it is published after its connection ended.
        conn: Option<u64>,
    },
}

/// One published message. Properties that travel with it (payload format, content type,
/// response topic, correlation data, user properties) are kept as received, in order.
#[derive(Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Forwarded properties only: no topic alias, subscription identifiers or expiry.
    pub properties: Properties,
    /// When the message expires (Message Expiry Interval, capped by the broker's maximum).
    pub expires_at: Option<Instant>,
    /// Client id of the publisher, for No Local; `None` for broker-originated messages.
    pub origin: Option<Arc<str>>,
    /// Who published it, on topics where [`carries_publisher`] holds; `None` elsewhere and
    /// for messages whose publisher is unknown (wills, messages read back from the store).
    pub publisher: Option<Arc<Publisher>>,
    /// The id of the message's body in the durable store, once a queue or the retained
    /// index there refers to it (written once however many sessions it reaches).
    pub(crate) store_id: std::sync::OnceLock<u64>,
}

impl Message {
    /// Build from a client's PUBLISH (topic alias already resolved into `topic`).
    pub fn from_publish(mut p: Publish, origin: Option<Arc<str>>, max_expiry: Option<u32>) -> Self {
        let expiry = match (p.properties.message_expiry_interval.take(), max_expiry) {
            (Some(e), Some(m)) => Some(e.min(m)),
            (e, m) => e.or(m),
        };
        p.properties.topic_alias = None;
        p.properties.subscription_identifiers.clear();
        Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
            // The clock is read only for messages that expire.
            expires_at: expiry
                .map(|s| Instant::now() + std::time::Duration::from_secs(u64::from(s))),
            origin,
            publisher: None,
            store_id: std::sync::OnceLock::new(),
        }
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Seconds left before expiry, rounded up, as forwarded in Message Expiry Interval.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
        })
    }
}
