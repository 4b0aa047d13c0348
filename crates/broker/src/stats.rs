//! Broker-wide counters, updated with relaxed atomics on the data path and read by `$SYS`
//! and the metrics endpoint; plus the queue gauges the backpressure decisions read.
//!
//! Breakdowns have bounded labels: protocol version (two slots), QoS (three slots), and
//! the CONNECT user property `metriccategory` (as in Azure IoT Operations), of which the
//! first [`MAX_CATEGORIES`] distinct values are kept and the rest count as `other`. The
//! per-category map is touched once per CONNECT, never per message. Per-listener counts
//! are keyed by the listener's configured name (not client-chosen, so bounded by the
//! configuration) and touched once per accepted socket and per CONNECT.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use edgeplane_codec::{ProtocolVersion, QoS};
use parking_lot::Mutex;

/// Distinct `metriccategory` values kept as labels; later ones count as [`OTHER_CATEGORY`].
pub const MAX_CATEGORIES: usize = 32;
/// The category of a CONNECT without a `metriccategory` user property.
pub const NO_CATEGORY: &str = "none";
/// The category of CONNECTs past the first [`MAX_CATEGORIES`] distinct values.
pub const OTHER_CATEGORY: &str = "other";
/// The CONNECT user property whose value becomes the `category` label.
pub const CATEGORY_PROPERTY: &str = "metriccategory";

/// Why the broker refused a client or dropped a message: each cause leaves at most one log
/// line per [`WHY_INTERVAL`], carrying how many more happened since the previous line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// CONNECT credentials refused by an authentication method (or none configured).
    Authentication,
    /// CONNECT denied by the authorization policy.
    ConnectDenied,
    /// PUBLISH denied by the authorization policy (or to `$SYS`, `$share`).
    PublishDenied,
    /// MQTT 5 QoS 1/2 PUBLISH refused with 0x97: queued bytes over `maxQueuedBytes`.
    QuotaMemory,
    /// MQTT 5 QoS 1/2 PUBLISH refused with 0x97: the durable store over its size limit.
    QuotaDisk,
    /// A message dropped because a subscriber's queue was at its limit.
    QueueFull,
    /// A QoS 0 message dropped because queued bytes were over `maxQueuedBytes`.
    Qos0Memory,
}

impl Refusal {
    const COUNT: usize = 7;

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Authentication => "authentication",
            Refusal::ConnectDenied => "connect_not_authorized",
            Refusal::PublishDenied => "publish_not_authorized",
            Refusal::QuotaMemory => "quota_memory",
            Refusal::QuotaDisk => "quota_disk",
            Refusal::QueueFull => "queue_full",
            Refusal::Qos0Memory => "qos0_memory",
        }
    }
}

/// At most one "why" log line per cause per interval.
pub const WHY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The rate limiter of "why" log lines: lock-free, one slot per [`Refusal`].
#[derive(Debug, Default)]
pub struct WhyLog {
    /// Milliseconds since `Stats::started` of the latest line, plus one (0: never).
    last_line: [AtomicU64; Refusal::COUNT],
    /// Events of the cause since its latest line that left none.
    suppressed: [AtomicU64; Refusal::COUNT],
}

impl WhyLog {
    /// One event of `cause` at `now_ms` (milliseconds since start). `Some(n)`: log a line
    /// now, `n` being the events of this cause that left no line since the previous one;
    /// `None`: counted for the next line.
    pub fn note(&self, cause: Refusal, now_ms: u64) -> Option<u64> {
        let i = cause as usize;
        let interval = WHY_INTERVAL.as_millis() as u64;
        let last = self.last_line[i].load(Relaxed);
        let due = last == 0 || now_ms + 1 >= last + interval;
        if due
            && self.last_line[i]
                .compare_exchange(last, now_ms + 1, Relaxed, Relaxed)
                .is_ok()
        {
            return Some(self.suppressed[i].swap(0, Relaxed));
        }
        self.suppressed[i].fetch_add(1, Relaxed);
        None
    }
}

/// One counter per MQTT protocol version: index 0 is 3.1.1, 1 is 5.0.
#[derive(Debug, Default)]
pub struct ByVersion(pub [AtomicU64; 2]);

impl ByVersion {
    /// The label values, in slot order.
    pub const LABELS: [&'static str; 2] = ["3.1.1", "5"];

    pub fn add(&self, version: ProtocolVersion) {
        let slot = usize::from(version == ProtocolVersion::V5);
        self.0[slot].fetch_add(1, Relaxed);
    }

    /// `(label, value)` per version.
    pub fn samples(&self) -> [(&'static str, u64); 2] {
        [
            (Self::LABELS[0], self.0[0].load(Relaxed)),
            (Self::LABELS[1], self.0[1].load(Relaxed)),
        ]
    }
}

/// One counter per QoS level.
#[derive(Debug, Default)]
pub struct ByQos(pub [AtomicU64; 3]);

impl ByQos {
    pub fn add(&self, qos: QoS) {
        self.0[qos as usize].fetch_add(1, Relaxed);
    }

    /// `(label, value)` per QoS, `"0"` to `"2"`.
    pub fn samples(&self) -> [(&'static str, u64); 3] {
        [
            ("0", self.0[0].load(Relaxed)),
            ("1", self.0[1].load(Relaxed)),
            ("2", self.0[2].load(Relaxed)),
        ]
    }
}

/// What happened to CONNECTs, by protocol version and category.
#[derive(Debug, Default)]
pub struct ConnectOutcomes {
    /// Accepted: the session was attached and CONNACK 0 sent.
    pub accepted: ByVersion,
    /// An authentication method accepted the credentials.
    pub authn_successes: ByVersion,
    /// The credentials were refused (bad password, token, certificate, unsupported method).
    pub authn_failures: ByVersion,
    /// The authorization policy allowed or denied the CONNECT.
    pub authz_allowed: ByVersion,
    pub authz_denied: ByVersion,
    /// Accepted CONNECTs by `metriccategory`, bounded by [`MAX_CATEGORIES`].
    categories: Mutex<BTreeMap<String, u64>>,
}

impl ConnectOutcomes {
    /// Count an accepted CONNECT whose `metriccategory` is `category`.
    pub fn accepted_in(&self, version: ProtocolVersion, category: Option<&str>) {
        self.accepted.add(version);
        let name = category.unwrap_or(NO_CATEGORY);
        let mut map = self.categories.lock();
        if let Some(n) = map.get_mut(name) {
            *n += 1;
        } else if map.len() < MAX_CATEGORIES {
            map.insert(name.to_owned(), 1);
        } else {
            *map.entry(OTHER_CATEGORY.to_owned()).or_default() += 1;
        }
    }

    /// Accepted CONNECTs per category, in name order.
    pub fn by_category(&self) -> Vec<(String, u64)> {
        self.categories
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// The counts of one listener.
#[derive(Debug, Default)]
pub struct ListenerCounts {
    /// Network connections open on the listener now (CONNECT done or not).
    pub open: AtomicU64,
    /// CONNECTs accepted on the listener, by protocol version.
    pub accepted: ByVersion,
}

/// Per-listener counts, by listener name.
#[derive(Debug, Default)]
pub struct ListenerStats(Mutex<BTreeMap<std::sync::Arc<str>, std::sync::Arc<ListenerCounts>>>);

impl ListenerStats {
    /// The counts of the listener `name` (created at its first use).
    pub fn of(&self, name: &std::sync::Arc<str>) -> std::sync::Arc<ListenerCounts> {
        std::sync::Arc::clone(
            self.0
                .lock()
                .entry(std::sync::Arc::clone(name))
                .or_default(),
        )
    }

    /// Every listener's counts, in name order.
    pub fn snapshot(&self) -> Vec<(std::sync::Arc<str>, std::sync::Arc<ListenerCounts>)> {
        self.0
            .lock()
            .iter()
            .map(|(k, v)| (std::sync::Arc::clone(k), std::sync::Arc::clone(v)))
            .collect()
    }
}

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
    /// CONNECT outcomes by protocol version, authentication and authorization.
    pub connects: ConnectOutcomes,
    /// Open connections and accepted CONNECTs per listener.
    pub listeners: ListenerStats,
    /// PUBLISH packets written to clients, by the QoS they were sent at.
    pub sent_by_qos: ByQos,
    /// PUBLISH packets received from clients, by their QoS (wills not included).
    pub received_by_qos: ByQos,
    /// Rate limiter of the "why" log lines of refusals and drops.
    pub why: WhyLog,
    /// Disk-backed message buffer: bytes of spill files on disk, messages in them not yet
    /// read back, and writes or reads that failed (the message stayed in memory, or a
    /// spilled one was lost for its running session).
    pub spilled_bytes: AtomicU64,
    pub spilled_messages: AtomicU64,
    pub spill_failures: AtomicU64,
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
            connects: ConnectOutcomes::default(),
            listeners: ListenerStats::default(),
            sent_by_qos: ByQos::default(),
            received_by_qos: ByQos::default(),
            why: WhyLog::default(),
            spilled_bytes: AtomicU64::new(0),
            spilled_messages: AtomicU64::new(0),
            spill_failures: AtomicU64::new(0),
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

    /// Rate-limit a "why" line: `Some(n)` when one is due for `cause` now (`n` events of it
    /// left no line since the previous one), `None` otherwise.
    pub fn why(&self, cause: Refusal) -> Option<u64> {
        let now_ms = self.started.elapsed().as_millis() as u64;
        self.why.note(cause, now_ms)
    }

    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_bounded() {
        let c = ConnectOutcomes::default();
        c.accepted_in(ProtocolVersion::V5, Some("aiosdk-rust"));
        c.accepted_in(ProtocolVersion::V311, None);
        for i in 0..MAX_CATEGORIES + 5 {
            c.accepted_in(ProtocolVersion::V5, Some(&format!("c{i}")));
        }
        let cats = c.by_category();
        assert_eq!(cats.len(), MAX_CATEGORIES + 1, "{cats:?}");
        assert!(cats.contains(&("aiosdk-rust".to_owned(), 1)));
        assert!(cats.contains(&(NO_CATEGORY.to_owned(), 1)));
        // 2 named + 30 of the c-values fit; the other 7 count as other.
        assert!(cats.contains(&(OTHER_CATEGORY.to_owned(), 7)), "{cats:?}");
        assert_eq!(
            c.accepted.samples(),
            [("3.1.1", 1), ("5", MAX_CATEGORIES as u64 + 6)]
        );
    }

    /// One line per cause per interval; the next line carries the count of the silent ones;
    /// causes do not share a budget.
    #[test]
    fn why_lines_are_rate_limited_per_cause() {
        let w = WhyLog::default();
        let ms = WHY_INTERVAL.as_millis() as u64;
        assert_eq!(w.note(Refusal::Authentication, 0), Some(0));
        for t in 1..100 {
            assert_eq!(w.note(Refusal::Authentication, t), None);
        }
        assert_eq!(w.note(Refusal::QueueFull, 50), Some(0), "own budget");
        assert_eq!(w.note(Refusal::Authentication, ms - 1), None);
        assert_eq!(w.note(Refusal::Authentication, ms), Some(100));
        assert_eq!(w.note(Refusal::Authentication, ms + 1), None);
        assert_eq!(w.note(Refusal::Authentication, 3 * ms), Some(1));
    }

    #[test]
    fn qos_slots() {
        let q = ByQos::default();
        q.add(QoS::AtMostOnce);
        q.add(QoS::ExactlyOnce);
        q.add(QoS::ExactlyOnce);
        assert_eq!(q.samples(), [("0", 1), ("1", 0), ("2", 2)]);
    }
}
