//! Where a session's data spends its time: per-stage latency of every value, logged at
//! debug level (target `edgeplane_connectors::stages`) once per window.
//!
//! The stages, each measured on the wall clock so they compare with the server's source
//! timestamps (server and connector on one machine, or clocks in sync):
//! - `source→published`: the value's SourceTimestamp to the server's publish time of the
//!   notification message carrying it (the server's sampling and publishing interval);
//! - `published→callback`: that to the OPC UA client's subscription callback (the server
//!   answering a publish request and encoding, the network, the client decoding);
//! - `callback→built`: the callback to the dataset's message being built (the
//!   connector's queue and the frames; the message's CloudEvents `time` is taken here);
//! - `built→broker`: the message built to the broker accepting it (for QoS 1 with the
//!   durable store this includes the group commit);
//! - `source→broker`: the sum, per value.
//!
//! Each figure is weighted by the values it covers, so the p99 is the p99 of values, not
//! of messages. Nothing is collected unless the target is enabled at debug level.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// How often the figures are logged (and the window they cover).
const WINDOW: Duration = Duration::from_secs(10);

/// The tracing target the figures are logged under.
pub(crate) const TARGET: &str = "edgeplane_connectors::stages";

/// Shared by the tasks of one session.
pub(crate) struct Stages {
    endpoint: String,
    window: Mutex<Window>,
}

/// One message's timestamps, with the source timestamps of its values (distinct ones,
/// each with how many values carry it).
pub(crate) struct Sample<'a> {
    pub(crate) sources: &'a [(DateTime<Utc>, u32)],
    /// The server's publish time, when it gave one.
    pub(crate) published: Option<DateTime<Utc>>,
    pub(crate) received: DateTime<Utc>,
    pub(crate) built: DateTime<Utc>,
    pub(crate) accepted: DateTime<Utc>,
}

struct Window {
    started: Instant,
    /// (milliseconds, values) per stage.
    source_to_published: Vec<(f64, u32)>,
    published_to_callback: Vec<(f64, u32)>,
    callback_to_built: Vec<(f64, u32)>,
    built_to_broker: Vec<(f64, u32)>,
    source_to_broker: Vec<(f64, u32)>,
}

impl Stages {
    pub(crate) fn new(endpoint: &str) -> Stages {
        Stages {
            endpoint: endpoint.to_owned(),
            window: Mutex::new(Window::new()),
        }
    }

    /// Whether samples are wanted (checked once per message by the caller).
    pub(crate) fn enabled() -> bool {
        tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
    }

    /// Adds one message's figures; logs and restarts the window when it is over.
    pub(crate) fn record(&self, s: &Sample<'_>) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        let values: u32 = s.sources.iter().map(|(_, n)| n).sum();
        let ms = |from: DateTime<Utc>, to: DateTime<Utc>| {
            (to - from).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
        };
        let published = s.published.unwrap_or(s.received);
        for (source, n) in s.sources {
            w.source_to_published.push((ms(*source, published), *n));
            w.source_to_broker.push((ms(*source, s.accepted), *n));
        }
        w.published_to_callback
            .push((ms(published, s.received), values));
        w.callback_to_built.push((ms(s.received, s.built), values));
        w.built_to_broker.push((ms(s.built, s.accepted), values));
        if w.started.elapsed() >= WINDOW {
            let done = std::mem::replace(&mut *w, Window::new());
            drop(w);
            done.log(&self.endpoint);
        }
    }
}

impl Window {
    fn new() -> Window {
        Window {
            started: Instant::now(),
            source_to_published: Vec::new(),
            published_to_callback: Vec::new(),
            callback_to_built: Vec::new(),
            built_to_broker: Vec::new(),
            source_to_broker: Vec::new(),
        }
    }

    fn log(mut self, endpoint: &str) {
        let values: u64 = self
            .callback_to_built
            .iter()
            .map(|(_, n)| u64::from(*n))
            .sum();
        let seconds = self.started.elapsed().as_secs_f64();
        tracing::debug!(
            target: TARGET,
            endpoint,
            values,
            messages = self.callback_to_built.len(),
            "opc ua stages over {seconds:.1} s, ms p50/p99/max: source->published {}, published->callback {}, callback->built {}, built->broker {}, source->broker {}",
            summary(&mut self.source_to_published),
            summary(&mut self.published_to_callback),
            summary(&mut self.callback_to_built),
            summary(&mut self.built_to_broker),
            summary(&mut self.source_to_broker),
        );
    }
}

/// `p50/p99/max` of weighted samples.
fn summary(samples: &mut [(f64, u32)]) -> String {
    samples.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u64 = samples.iter().map(|(_, n)| u64::from(*n)).sum();
    let at = |q: f64| {
        let rank = (q * total as f64) as u64;
        let mut seen = 0u64;
        for (v, n) in samples.iter() {
            seen += u64::from(*n);
            if seen > rank {
                return *v;
            }
        }
        samples.last().map_or(0.0, |s| s.0)
    };
    format!("{:.1}/{:.1}/{:.1}", at(0.5), at(0.99), at(1.0))
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn percentiles_are_weighted_by_values() {
        // One message of 197 values at 1 ms, one of 2 at 2 ms, one of 1 at 100 ms: by
        // values the p99 is 2 ms (by messages it would be 100 ms).
        let mut s = vec![(100.0, 1), (1.0, 197), (2.0, 2)];
        assert_eq!(summary(&mut s), "1.0/2.0/100.0");
        let mut s = vec![(5.0, 1), (1.0, 1)];
        assert_eq!(summary(&mut s), "5.0/5.0/5.0");
        assert_eq!(summary(&mut []), "0.0/0.0/0.0");
    }
}
