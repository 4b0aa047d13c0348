//! Message-flow scenarios: publishers and subscribers over one or many topics.
//!
//! Shapes: fan-in (N publishers → 1 subscriber), fan-out (1 → N), pairwise (N → N, one topic
//! per pair), shared (N publishers → M consumers of one shared subscription) and
//! subscriptions (1 publisher round-robin over N distinct topics, each subscribed once,
//! spread over M subscriber connections).
//!
//! Two ways to offer load:
//! - **closed loop** (default): publishers send as fast as the broker takes them (QoS 1/2
//!   with a window of unacknowledged messages), nothing may be lost;
//! - **open loop** (`--rate R`): publishers together offer R msg/s on a fixed schedule,
//!   whatever the broker does; loss is measured, and latency is counted from each message's
//!   *scheduled* send time, so a broker that stalls the publishers cannot hide it
//!   (no coordinated omission).
//!
//! Every payload of 8 bytes or more carries its send time, so subscribers record end-to-end
//! latency in an HDR histogram. With `--broker-pid` the broker's CPU seconds and peak
//! resident memory are read from `/proc`. The result is one JSON line on stdout and a small
//! table on stderr.

mod clients;
mod probe;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgeplane_codec::QoS;
use hdrhistogram::Histogram;

use clients::{Publisher, Subscription};

#[derive(clap::Args, Clone)]
pub struct FlowArgs {
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Publishers (fan-in, pairwise, shared), subscribers (fan-out) or distinct topics
    /// (subscriptions).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Consumers of the shared subscription (shared) or subscriber connections the topics
    /// are spread over (subscriptions).
    #[arg(long, default_value_t = 10)]
    consumers: usize,
    /// Messages per publisher.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    #[arg(long, default_value_t = 0)]
    qos: u8,
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 100)]
    window: usize,
    /// Open loop: offer this many messages per second over all publishers (0: closed loop).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Subscribers keep a persistent session (MQTT 3.1.1 Clean Session 0), so a broker
    /// with persistence writes their queues to disk.
    #[arg(long)]
    pub persistent: bool,
    /// The broker's process id: report its CPU seconds and peak RSS (Linux `/proc`).
    #[arg(long)]
    broker_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    FanIn,
    FanOut,
    Pairwise,
    Shared,
    Subscriptions,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::FanIn => "fan-in",
            Shape::FanOut => "fan-out",
            Shape::Pairwise => "pairwise",
            Shape::Shared => "shared",
            Shape::Subscriptions => "subscriptions",
        }
    }
}

/// The instant all send times are counted from, shared by publishers and subscribers.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Latency histogram in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub(crate) type Latency = Arc<Mutex<Histogram<u64>>>;

fn new_latency() -> anyhow::Result<Latency> {
    let h = Histogram::new_with_bounds(1, 600_000_000, 3)?;
    Ok(Arc::new(Mutex::new(h)))
}

/// Who publishes where, and who subscribes to what.
struct Plan {
    /// One entry per publisher: the topics it sends to, round-robin.
    publishers: Vec<Vec<String>>,
    /// One entry per subscriber connection: its filters.
    subscribers: Vec<Vec<String>>,
    /// Deliveries that a lossless broker makes.
    expected: u64,
}

fn plan(shape: Shape, a: &FlowArgs) -> Plan {
    let base = format!("bench/{}", std::process::id());
    let n = a.clients.max(1);
    let m = a.consumers.max(1);
    let one = |t: &str| vec![t.to_owned()];
    match shape {
        Shape::FanIn => Plan {
            publishers: vec![one(&base); n],
            subscribers: vec![one(&base)],
            expected: a.messages * n as u64,
        },
        Shape::FanOut => Plan {
            publishers: vec![one(&base)],
            subscribers: vec![one(&base); n],
            expected: a.messages * n as u64,
        },
        Shape::Pairwise => Plan {
            publishers: (0..n).map(|i| one(&format!("{base}/{i}"))).collect(),
            subscribers: (0..n).map(|i| one(&format!("{base}/{i}"))).collect(),
            expected: a.messages * n as u64,
        },
        Shape::Shared => Plan {
            publishers: vec![one(&base); n],
            subscribers: vec![one(&format!("$share/bench/{base}")); m],
            expected: a.messages * n as u64,
        },
        Shape::Subscriptions => {
            let topics: Vec<String> = (0..n).map(|i| format!("{base}/t{i}")).collect();
            let mut subscribers = vec![Vec::new(); m.min(n)];
            let connections = subscribers.len();
            for (i, t) in topics.iter().enumerate() {
                subscribers[i % connections].push(t.clone());
            }
            Plan {
                publishers: vec![topics],
                subscribers,
                expected: a.messages,
            }
        }
    }
}

pub async fn run(a: FlowArgs, shape: Shape) -> anyhow::Result<()> {
    let qos = QoS::try_from(a.qos).map_err(|q| anyhow::anyhow!("QoS {q} does not exist"))?;
    let plan = plan(shape, &a);
    epoch();
    let received = Arc::new(AtomicU64::new(0));
    let latency = new_latency()?;
    let mut subs = Vec::new();
    for (i, filters) in plan.subscribers.iter().enumerate() {
        let s = Subscription::open(
            a.broker,
            &format!("bench-sub-{i}"),
            !a.persistent,
            filters,
            qos,
        )
        .await?;
        subs.push(tokio::spawn(
            s.run(Arc::clone(&received), Arc::clone(&latency)),
        ));
    }
    let probe_start = a.broker_pid.map(probe::Sample::read).transpose()?;
    let payload = Bytes::from(vec![b'x'; a.payload]);
    // Open loop: each publisher offers its share of the rate.
    let interval =
        (a.rate > 0).then(|| Duration::from_secs_f64(plan.publishers.len() as f64 / a.rate as f64));
    let mut ready = Vec::new();
    for (i, topics) in plan.publishers.into_iter().enumerate() {
        ready.push(Publisher {
            stream: clients::connect(a.broker, &format!("bench-pub-{i}"), true).await?,
            topics,
            payload: payload.clone(),
            qos,
            count: a.messages,
            window: a.window.max(1),
            interval,
        });
    }
    let start = Instant::now();
    let pubs: Vec<_> = ready.into_iter().map(|p| tokio::spawn(p.run())).collect();
    for p in pubs {
        p.await??;
    }
    let publish_secs = start.elapsed().as_secs_f64();
    let expected = plan.expected;
    let deadline = Instant::now() + Duration::from_secs(a.timeout_secs);
    let mut last = (0, Instant::now());
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let n = received.load(Ordering::Relaxed);
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break; // nothing more is coming
        }
    }
    let got = received.load(Ordering::Relaxed);
    let secs = if got >= expected {
        start.elapsed().as_secs_f64()
    } else {
        (last.1 - start).as_secs_f64().max(publish_secs)
    };
    for s in subs {
        s.abort();
    }
    let broker = match (a.broker_pid, probe_start) {
        (Some(pid), Some(before)) => Some(probe::Sample::read(pid)?.since(&before).with_peak(pid)?),
        _ => None,
    };
    let report = Report {
        shape,
        args: &a,
        expected,
        received: got,
        secs,
        publish_secs,
        latency: latency
            .lock()
            .map_err(|_| anyhow::anyhow!("a subscriber panicked"))?
            .clone(),
        broker,
    };
    println!("{}", report.json());
    eprintln!("{}", report.table());
    Ok(())
}

struct Report<'a> {
    shape: Shape,
    args: &'a FlowArgs,
    expected: u64,
    received: u64,
    secs: f64,
    publish_secs: f64,
    latency: Histogram<u64>,
    broker: Option<probe::Usage>,
}

impl Report<'_> {
    fn rate(&self) -> f64 {
        self.received as f64 / self.secs.max(1e-9)
    }

    fn percentiles(&self) -> Option<[f64; 4]> {
        let h = &self.latency;
        (!h.is_empty()).then(|| {
            [
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                h.value_at_quantile(0.999) as f64 / 1000.0,
                h.max() as f64 / 1000.0,
            ]
        })
    }

    fn json(&self) -> String {
        let a = self.args;
        let mut out = format!(
            "{{\"scenario\":\"{}\",\"clients\":{},\"consumers\":{},\"qos\":{},\"payload\":{},\
             \"offered_rate\":{},\"expected\":{},\"received\":{},\"lost\":{},\"secs\":{:.3},\
             \"publish_secs\":{:.3},\"deliveries_per_sec\":{:.0},\"mb_per_sec\":{:.2}",
            self.shape.name(),
            a.clients,
            a.consumers,
            a.qos,
            a.payload,
            a.rate,
            self.expected,
            self.received,
            self.expected.saturating_sub(self.received),
            self.secs,
            self.publish_secs,
            self.rate(),
            self.rate() * a.payload as f64 / 1e6,
        );
        if let Some([p50, p99, p999, max]) = self.percentiles() {
            out += &format!(
                ",\"latency_ms\":{{\"p50\":{p50:.3},\"p99\":{p99:.3},\"p999\":{p999:.3},\"max\":{max:.3}}}"
            );
        }
        if let Some(b) = &self.broker {
            out += &format!(
                ",\"broker_cpu_secs\":{:.3},\"broker_cpu_secs_per_million\":{:.3},\"broker_peak_rss_kb\":{}",
                b.cpu_secs,
                b.cpu_secs / (self.received.max(1) as f64) * 1e6,
                b.peak_rss_kb
            );
        }
        out.push('}');
        out
    }

    fn table(&self) -> String {
        let mut rows = vec![
            (
                "scenario",
                format!("{} QoS {}", self.shape.name(), self.args.qos),
            ),
            (
                "delivered",
                format!("{} of {}", self.received, self.expected),
            ),
            ("msg/s", format!("{:.0}", self.rate())),
            (
                "MB/s",
                format!("{:.2}", self.rate() * self.args.payload as f64 / 1e6),
            ),
        ];
        if let Some([p50, p99, p999, max]) = self.percentiles() {
            rows.push((
                "latency ms",
                format!("p50 {p50:.2}  p99 {p99:.2}  p99.9 {p999:.2}  max {max:.2}"),
            ));
        }
        if let Some(b) = &self.broker {
            rows.push(("broker CPU s", format!("{:.2}", b.cpu_secs)));
            rows.push(("broker peak RSS", format!("{} KiB", b.peak_rss_kb)));
        }
        rows.iter()
            .map(|(k, v)| format!("{k:>16}  {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
