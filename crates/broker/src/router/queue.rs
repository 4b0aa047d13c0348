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
//!
//! With the disk-backed message buffer ([`DiskBuffer`]), an entry pushed while queued bytes
//! in memory are over its threshold, to a queue that already has a backlog of
//! [`SPILL_BACKLOG`] entries, is written to disk and kept as a handle: the gauge then counts
//! [`HANDLE_WEIGHT`] for it instead of its weight (the disk budget, `maxSize`, bounds the
//! rest), while [`Queue::bytes`] and [`Queue::len`] still count it whole, so subscriber
//! queue limits mean the same with or without the buffer. Spilled entries are read back in
//! queue order as they leave. Entries that stay in memory whatever the load: QoS 2
//! deliveries waiting for their publisher's commit (the gate lives in memory only) and
//! messages carrying their publisher (state store requests). A subscriber that keeps up has
//! no backlog, so its messages never go through the disk.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};

use edgeplane_codec::QoS;

use super::spill::{DiskBuffer, RecordAt};
use super::Delivery;
use crate::message::Message;
use crate::stats::{Stats, GAUGE_SLOTS};

/// Fixed cost of one queued entry beside the message's variable parts: the `Delivery`, its
/// slot in the deque, and the message's own header, rounded up.
const ENTRY_OVERHEAD: u64 = 160;

/// What a spilled entry is accounted for in memory: its slot in the deque.
pub const HANDLE_WEIGHT: u64 = 96;

/// Entries a queue holds before new ones may spill: a subscriber that keeps up never has
/// this many waiting, so its messages never make the round trip through the disk.
pub const SPILL_BACKLOG: usize = 8;

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

/// A waiting entry: in memory, or on disk with what the queue needs without reading it.
#[derive(Debug)]
enum Entry {
    Mem(Delivery),
    Disk(Spilled),
}

#[derive(Debug)]
struct Spilled {
    at: RecordAt,
    /// [`weight`] of the message.
    weight: u64,
    qos: QoS,
    /// Read back by [`Queue::iter`], which lends references (rare: a session switching to
    /// the durable store).
    cache: OnceLock<Box<Delivery>>,
}

impl Entry {
    fn qos(&self) -> QoS {
        match self {
            Entry::Mem(d) => d.qos,
            Entry::Disk(s) => s.qos,
        }
    }
}

pub struct Queue {
    items: VecDeque<Entry>,
    /// Weight of the waiting entries, spilled ones included.
    bytes: u64,
    /// What the waiting entries hold in the partition's gauge (spilled ones as handles).
    in_memory: u64,
    /// Bytes of the session's in-flight QoS 1/2 deliveries.
    inflight_bytes: u64,
    stats: Arc<Stats>,
    partition: usize,
    slot: usize,
    buffer: Option<Arc<DiskBuffer>>,
}

impl Queue {
    /// An empty queue of a session owned by partition `partition`, spilling to `buffer`.
    pub fn new(stats: Arc<Stats>, partition: usize, buffer: Option<Arc<DiskBuffer>>) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            in_memory: 0,
            inflight_bytes: 0,
            stats,
            partition,
            slot: partition % GAUGE_SLOTS,
            buffer,
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes this queue is accounted for: every waiting entry's weight, spilled or not.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of the session's in-flight QoS 1/2 deliveries.
    pub fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }

    /// The waiting deliveries in order; spilled ones are read back (and kept in memory
    /// until they leave the queue). One that cannot be read is logged and left out.
    pub fn iter(&self) -> impl Iterator<Item = &Delivery> {
        self.items.iter().filter_map(|e| match e {
            Entry::Mem(d) => Some(d),
            Entry::Disk(s) => self.cached(s),
        })
    }

    fn cached<'a>(&'a self, s: &'a Spilled) -> Option<&'a Delivery> {
        if s.cache.get().is_none() {
            let buffer = self.buffer.as_ref()?;
            match buffer.read(self.partition, s.at) {
                Ok(d) => {
                    let _ = s.cache.set(Box::new(d));
                }
                Err(e) => {
                    buffer.read_failed(self.partition, &e, &self.stats);
                    return None;
                }
            }
        }
        s.cache.get().map(|d| &**d)
    }

    /// An entry of `weight`, held as `held` bytes in memory, joins (`add`) or leaves.
    fn account(&mut self, add: bool, weight: u64, held: u64) {
        let g = &self.stats.queued[self.slot];
        if add {
            self.bytes += weight;
            self.in_memory += held;
            g.bytes.fetch_add(held, Relaxed);
            g.messages.fetch_add(1, Relaxed);
        } else {
            self.bytes -= weight;
            self.in_memory -= held;
            g.bytes.fetch_sub(held, Relaxed);
            g.messages.fetch_sub(1, Relaxed);
        }
    }

    pub fn push_back(&mut self, d: Delivery) {
        let w = weight(&d.msg);
        if let Some(at) = self.spill(&d) {
            self.account(true, w, HANDLE_WEIGHT);
            self.items.push_back(Entry::Disk(Spilled {
                at,
                weight: w,
                qos: d.qos,
                cache: OnceLock::new(),
            }));
            return;
        }
        self.account(true, w, w);
        self.items.push_back(Entry::Mem(d));
    }

    /// Write `d` to the disk buffer if it should spill (see the module docs) and fits.
    fn spill(&self, d: &Delivery) -> Option<RecordAt> {
        let buffer = self.buffer.as_ref()?;
        let eligible = self.items.len() >= SPILL_BACKLOG
            && d.gate.is_none()
            && d.msg.publisher.is_none()
            && buffer.over_threshold(&self.stats);
        if !eligible {
            return None;
        }
        buffer.append(self.partition, d, &self.stats)
    }

    /// Put back at the front an entry just taken (it stays in memory).
    pub fn push_front(&mut self, d: Delivery) {
        let w = weight(&d.msg);
        self.account(true, w, w);
        self.items.push_front(Entry::Mem(d));
    }

    pub fn pop_front(&mut self) -> Option<Delivery> {
        loop {
            let e = self.items.pop_front()?;
            if let Some(d) = self.take(e) {
                return Some(d);
            }
        }
    }

    /// Remove the oldest entry that may be dropped to make room: QoS 0 or 1, never QoS 2
    /// (exactly once is a promise the broker keeps even under a queue limit).
    pub fn pop_oldest_droppable(&mut self) -> Option<Delivery> {
        loop {
            let at = self
                .items
                .iter()
                .position(|e| e.qos() != QoS::ExactlyOnce)?;
            let e = self.items.remove(at)?;
            if let Some(d) = self.take(e) {
                return Some(d);
            }
        }
    }

    /// Account for `e` leaving and hand out its delivery, read back from disk if it
    /// spilled; `None` if it cannot be read (logged and counted in `spill_failures`).
    fn take(&mut self, e: Entry) -> Option<Delivery> {
        match e {
            Entry::Mem(d) => {
                let w = weight(&d.msg);
                self.account(false, w, w);
                Some(d)
            }
            Entry::Disk(s) => {
                self.account(false, s.weight, HANDLE_WEIGHT);
                let buffer = self.buffer.as_ref()?;
                let read = match s.cache.into_inner() {
                    Some(d) => Ok(*d),
                    None => buffer.read(self.partition, s.at),
                };
                buffer.release(self.partition, s.at, &self.stats);
                read.map_err(|e| buffer.read_failed(self.partition, &e, &self.stats))
                    .ok()
            }
        }
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
        g.bytes
            .fetch_sub(self.in_memory + self.inflight_bytes, Relaxed);
        g.messages.fetch_sub(self.items.len() as u64, Relaxed);
        if let Some(buffer) = &self.buffer {
            for e in &self.items {
                if let Entry::Disk(s) = e {
                    buffer.release(self.partition, s.at, &self.stats);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spilled entry's memory estimate covers its slot in the deque.
    #[test]
    fn a_handle_costs_no_more_than_it_is_counted_for() {
        let slot = std::mem::size_of::<Entry>() as u64;
        assert!(slot <= HANDLE_WEIGHT, "{slot} bytes per entry");
    }
}
