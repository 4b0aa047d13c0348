//! A session's queue of messages not yet handed to its connection, with the bytes it holds
//! accounted in its partition's [`QueueGauge`](crate::stats::QueueGauge): every entry that
//! enters adds its weight there, every entry that leaves (sent, expired, dropped, or the
//! session dropped) takes it away. QoS 1/2 messages sent and not yet acknowledged stay
//! counted (the in-flight window holds them, however slow the client is to acknowledge);
//! the session reports them with [`Queue::sent`] and [`Queue::acked`]. The sum over
//! partitions is what `maxQueuedBytes` bounds; a subscriber's own `maxBytes` applies to
//! the waiting entries only, which are the ones a strategy can drop.
//!
//! Bytes are counted per subscriber copy, although copies share one `Arc<Message>`: the
//! bound is then conservative for fan-out, and a subscriber's own `maxBytes` means what it
//! says whatever other sessions hold.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use edgeplane_codec::QoS;

use super::Delivery;
use crate::message::Message;
use crate::stats::{Stats, GAUGE_SLOTS};

/// Fixed cost of one queued entry beside the message's variable parts: the `Delivery`, its
/// slot in the deque, and the message's own header, rounded up.
const ENTRY_OVERHEAD: u64 = 160;

/// The bytes a queued message is accounted for: topic, payload and forwarded properties
/// plus [`ENTRY_OVERHEAD`].
pub fn weight(msg: &Message) -> u64 {
    let p = &msg.properties;
    let strings = p.content_type.as_ref().map_or(0, String::len)
        + p.response_topic.as_ref().map_or(0, String::len)
        + p.correlation_data.as_ref().map_or(0, |b| b.len())
        + p.user_properties
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>();
    (msg.topic.len() + msg.payload.len() + strings) as u64 + ENTRY_OVERHEAD
}

pub struct Queue {
    items: VecDeque<Delivery>,
    bytes: u64,
    /// Bytes of the session's in-flight QoS 1/2 deliveries.
    inflight_bytes: u64,
    stats: Arc<Stats>,
    slot: usize,
}

impl Queue {
    /// An empty queue of a session owned by partition `partition`.
    pub fn new(stats: Arc<Stats>, partition: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            inflight_bytes: 0,
            stats,
            slot: partition % GAUGE_SLOTS,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes this queue is accounted for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the session's in-flight QoS 1/2 deliveries.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }

    pub fn iter(&self) -> impl Iterator<Item = &Delivery> {
        self.items.iter()
    }

    fn account(&mut self, add: bool, w: u64) {
        let g = &self.stats.queued[self.slot];
        if add {
            self.bytes += w;
            g.bytes.fetch_add(w, Relaxed);
            g.messages.fetch_add(1, Relaxed);
        } else {
            self.bytes -= w;
            g.bytes.fetch_sub(w, Relaxed);
            g.messages.fetch_sub(1, Relaxed);
        }
    }

    pub fn push_back(&mut self, d: Delivery) {
        self.account(true, weight(&d.msg));
        self.items.push_back(d);
    }

    pub fn push_front(&mut self, d: Delivery) {
        self.account(true, weight(&d.msg));
        self.items.push_front(d);
    }

    pub fn pop_front(&mut self) -> Option<Delivery> {
        let d = self.items.pop_front()?;
        self.account(false, weight(&d.msg));
        Some(d)
    }

    /// Remove the oldest entry that may be dropped to make room: QoS 0 or 1, never QoS 2
    /// (exactly once is a promise the broker keeps even under a queue limit).
    pub fn pop_oldest_droppable(&mut self) -> Option<Delivery> {
        let at = self.items.iter().position(|d| d.qos != QoS::ExactlyOnce)?;
        let d = self.items.remove(at)?;
        self.account(false, weight(&d.msg));
        Some(d)
    }

    /// `d` went into the in-flight window: its bytes stay counted until [`Queue::acked`].
    pub fn sent(&mut self, d: &Delivery) {
        let w = weight(&d.msg);
        self.inflight_bytes += w;
        self.stats.queued[self.slot].bytes.fetch_add(w, Relaxed);
    }

    /// `d` left the in-flight window (acknowledged, or refused by the client).
    pub fn acked(&mut self, d: &Delivery) {
        let w = weight(&d.msg).min(self.inflight_bytes);
        self.inflight_bytes -= w;
        self.stats.queued[self.slot].bytes.fetch_sub(w, Relaxed);
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let g = &self.stats.queued[self.slot];
        g.bytes.fetch_sub(self.bytes + self.inflight_bytes, Relaxed);
        g.messages.fetch_sub(self.items.len() as u64, Relaxed);
    }
}
