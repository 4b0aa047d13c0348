//! An application message as the router holds it: decoded once at ingress, shared by
//! reference (`Arc`) across every subscriber queue, re-encoded per connection on egress.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use edgeplane_codec::{Properties, Publish, QoS};

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
    /// The id of the message's body in the durable store, once a queue or the retained
    /// index there refers to it (written once however many sessions it reaches).
    pub(crate) store_id: std::sync::OnceLock<u64>,
}

impl Message {
    /// Build from a client's PUBLISH (topic alias already resolved into `topic`).
    pub fn from_publish(mut p: Publish, origin: Option<Arc<str>>, max_expiry: Option<u32>) -> Self {
        let now = Instant::now();
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
            expires_at: expiry.map(|s| now + std::time::Duration::from_secs(u64::from(s))),
            origin,
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
