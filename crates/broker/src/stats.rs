//! Broker-wide counters, updated with relaxed atomics on the data path and read by `$SYS`
//! (and later the metrics endpoint).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

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

    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
    }
}
