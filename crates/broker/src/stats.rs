//! Broker-wide counters, updated with relaxed atomics on the data path and read by `$SYS`
//! and the metrics endpoint; plus the queue gauges the backpressure decisions read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Number of queue gauge slots; partition `k` writes slot `k % GAUGE_SLOTS`.
pub const GAUGE_SLOTS: usize = 64;

/// What one partition's subscriber queues hold. Aligned to its own cache lines so that
/// partitions updating their slots on the data path never contend.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct QueueGauge {
    pub bytes: AtomicU64,
    pub messages: AtomicU64,
    /// Bytes of messages published into this partition's inbox and not yet routed: counted
    /// towards the bound so that a burst is seen before the partition gets to it.
    pub routing: AtomicU64,
}

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub clients_connected: AtomicU64,
    /// Sessions that exist now, connected or not (Mosquitto's `clients/total`).
    pub clients_total: AtomicU64,
    pub clients_maximum: AtomicU64,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub subscriptions: AtomicU64,
    pub retained: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_expired: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub dropped_qos0_offline: AtomicU64,
    /// QoS 0 messages dropped because the broker-wide bound (`maxQueuedBytes`) was exceeded:
    /// at ingress from MQTT 5 publishers, or when queueing for a subscriber.
    pub dropped_memory: AtomicU64,
    /// The QoS 0 part of `dropped_queue_full` (a subscriber's own queue limit).
    pub dropped_qos0_queue_full: AtomicU64,
    /// MQTT 5 QoS 1/2 publishes refused with 0x97 Quota exceeded because queued bytes were
    /// over `maxQueuedBytes`.
    pub rejected_memory: AtomicU64,
    /// MQTT 5 QoS 1/2 publishes refused with 0x97 Quota exceeded because the durable store
    /// is over its size limit.
    pub rejected_disk: AtomicU64,
    /// Times an MQTT 3.1.1 connection stopped being read because queued bytes were over
    /// `maxQueuedBytes`; `reads_paused_now` is how many are paused at this moment.
    pub reads_paused: AtomicU64,
    pub reads_paused_now: AtomicU64,
    /// Bytes and messages waiting in subscriber queues, one slot per router partition.
    pub queued: [QueueGauge; GAUGE_SLOTS],
    /// Self-check probes run, failed, and the latest successful round trip in microseconds.
    pub selfcheck_runs: AtomicU64,
    pub selfcheck_failures: AtomicU64,
    pub selfcheck_latency_us: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            clients_connected: AtomicU64::new(0),
            clients_total: AtomicU64::new(0),
            clients_maximum: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            subscriptions: AtomicU64::new(0),
            retained: AtomicU64::new(0),
            dropped_queue_full: AtomicU64::new(0),
            dropped_expired: AtomicU64::new(0),
            dropped_oversize: AtomicU64::new(0),
            dropped_qos0_offline: AtomicU64::new(0),
            dropped_memory: AtomicU64::new(0),
            dropped_qos0_queue_full: AtomicU64::new(0),
            rejected_memory: AtomicU64::new(0),
            rejected_disk: AtomicU64::new(0),
            reads_paused: AtomicU64::new(0),
            reads_paused_now: AtomicU64::new(0),
            queued: std::array::from_fn(|_| QueueGauge::default()),
            selfcheck_runs: AtomicU64::new(0),
            selfcheck_failures: AtomicU64::new(0),
            selfcheck_latency_us: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    /// Bytes queued for subscribers in the first `partitions` slots (all of them when the
    /// broker has more partitions than slots).
    pub fn queued_bytes_in(&self, partitions: usize) -> u64 {
        let n = partitions.clamp(1, GAUGE_SLOTS);
        self.queued[..n]
            .iter()
            .map(|g| g.bytes.load(Relaxed) + g.routing.load(Relaxed))
            .sum()
    }

    /// Bytes queued for subscribers, all partitions.
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes_in(GAUGE_SLOTS)
    }

    /// Messages queued for subscribers, all partitions.
    pub fn queued_messages(&self) -> u64 {
        self.queued.iter().map(|g| g.messages.load(Relaxed)).sum()
    }

    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
    }
}
