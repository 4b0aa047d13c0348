//! `stalled-subscriber`: one subscriber subscribes at QoS 1 and then never reads its socket
//! again, while publishers keep publishing QoS 1 to its topic (half MQTT 5, half MQTT 3.1.1,
//! each with a window of unacknowledged messages). Every 0.5 s the broker's resident memory
//! is read from `/proc/<pid>/status` (`VmRSS`) with the publishers' counts. Writes a CSV and
//! an SVG plot of RSS over time against the configured bound, and prints a JSON summary.
//!
//! What a broker should do: keep its memory bounded (Edgeplane: `maxQueuedBytes`), pushing
//! back on publishers (MQTT 5 PUBACK 0x97, MQTT 3.1.1 by not reading them).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Connect, Packet, Properties, ProtocolVersion, Publish, QoS, SubOptions, Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(clap::Args, Clone)]
pub struct StalledArgs {
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Process id of the broker, whose RSS is sampled.
    #[arg(long)]
    pid: u32,
    /// Publishers (half MQTT 5, half MQTT 3.1.1).
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 4096)]
    payload: usize,
    /// Unacknowledged messages per publisher.
    #[arg(long, default_value_t = 100)]
    window: usize,
    #[arg(long, default_value_t = 60)]
    duration_secs: u64,
    /// The bound the broker was configured with, in MiB, drawn on the plot.
    #[arg(long)]
    bound_mib: f64,
    /// CSV output (t_s, rss_mib, accepted, refused).
    #[arg(long)]
    csv: PathBuf,
    /// SVG plot output.
    #[arg(long)]
    svg: PathBuf,
}

#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    refused: AtomicU64,
}

struct Sample {
    t: f64,
    rss_mib: f64,
    accepted: u64,
    refused: u64,
}

pub async fn run(a: StalledArgs) -> anyhow::Result<()> {
    let topic = format!("stalled/{}", std::process::id());
    // The subscriber: subscribe, then hold the socket without reading it.
    let mut sub = connect(a.broker, "stalled-sub", ProtocolVersion::V5).await?;
    let s = Subscribe {
        packet_id: 1,
        filters: vec![(topic.clone(), SubOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    };
    send(&mut sub, &Packet::Subscribe(s), ProtocolVersion::V5).await?;
    let mut buf = BytesMut::new();
    match read_packet(&mut sub, &mut buf, ProtocolVersion::V5).await? {
        Packet::SubAck(_) => {}
        p => anyhow::bail!("expected SUBACK, got {}", p.name()),
    }

    let rss_start = rss_kib(a.pid)? as f64 / 1024.0;
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let payload = Bytes::from(vec![b'x'; a.payload]);
    let mut tasks = Vec::new();
    for i in 0..a.publishers {
        let v = if i % 2 == 0 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let stream = connect(a.broker, &format!("stalled-pub-{i}"), v).await?;
        tasks.push(tokio::spawn(publisher(
            stream,
            v,
            topic.clone(),
            payload.clone(),
            a.window,
            Arc::clone(&counts),
            Arc::clone(&stop),
        )));
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while start.elapsed() < Duration::from_secs(a.duration_secs) {
        tick.tick().await;
        samples.push(Sample {
            t: start.elapsed().as_secs_f64(),
            rss_mib: rss_kib(a.pid)? as f64 / 1024.0,
            accepted: counts.accepted.load(Ordering::Relaxed),
            refused: counts.refused.load(Ordering::Relaxed),
        });
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.abort();
    }
    drop(sub);

    let mut csv = String::from("t_s,rss_mib,accepted,refused\n");
    for s in &samples {
        let _ = writeln!(
            csv,
            "{:.1},{:.1},{},{}",
            s.t, s.rss_mib, s.accepted, s.refused
        );
    }
    std::fs::write(&a.csv, csv).with_context(|| format!("write {}", a.csv.display()))?;
    std::fs::write(&a.svg, plot(&samples, rss_start, &a))
        .with_context(|| format!("write {}", a.svg.display()))?;
    let max = samples.iter().map(|s| s.rss_mib).fold(0.0, f64::max);
    let last = samples.last().map_or(0.0, |s| s.rss_mib);
    println!(
        "{{\"scenario\":\"stalled-subscriber\",\"seconds\":{},\"publishers\":{},\"payload\":{},\"accepted\":{},\"refused\":{},\"rss_start_mib\":{:.1},\"rss_max_mib\":{:.1},\"rss_last_mib\":{:.1},\"bound_mib\":{}}}",
        a.duration_secs,
        a.publishers,
        a.payload,
        counts.accepted.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        rss_start,
        max,
        last,
        a.bound_mib
    );
    Ok(())
}

/// `VmRSS` of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in {path}"))
}

/// Publish QoS 1 with up to `window` unacknowledged, counting PUBACKs that accept and
/// those that refuse (any reason code of 0x80 or above).
async fn publisher(
    stream: TcpStream,
    v: ProtocolVersion,
    topic: String,
    payload: Bytes,
    window: usize,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (mut rd, mut wr) = stream.into_split();
    let credit = Arc::new(tokio::sync::Semaphore::new(window));
    let reader = {
        let credit = Arc::clone(&credit);
        let counts = Arc::clone(&counts);
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            loop {
                let packet = loop {
                    match edgeplane_codec::decode(&mut buf, v, usize::MAX) {
                        Ok(Some(p)) => break p,
                        Ok(None) => {}
                        Err(_) => return,
                    }
                    match rd.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                };
                if let Packet::PubAck(a) = packet {
                    if a.reason.is_error() {
                        counts.refused.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counts.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    credit.add_permits(1);
                }
            }
        })
    };
    let mut id: u16 = 0;
    let mut out = BytesMut::new();
    while !stop.load(Ordering::Relaxed) {
        let permit = credit.acquire().await?;
        permit.forget();
        id = id % u16::MAX + 1;
        let p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: id,
            properties: Properties::default(),
            payload: payload.clone(),
        };
        out.clear();
        edgeplane_codec::encode(&Packet::Publish(p), v, &mut out);
        wr.write_all(&out).await?;
    }
    reader.abort();
    Ok(())
}

/// An SVG line chart of RSS over time, with the ceiling the bound implies (RSS before the
/// load plus `maxQueuedBytes`) as a dashed line.
fn plot(samples: &[Sample], rss_start: f64, a: &StalledArgs) -> String {
    let bound = rss_start + a.bound_mib;
    let (w, h, left, right, top, bottom) = (800.0, 420.0, 70.0, 20.0, 50.0, 50.0);
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let y_max = samples
        .iter()
        .map(|s| s.rss_mib)
        .fold(bound, f64::max)
        .max(1.0)
        * 1.15;
    let x = |t: f64| left + (w - left - right) * t / t_max;
    let y = |v: f64| h - bottom - (h - top - bottom) * v / y_max;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="20" font-size="14">Broker RSS with a stalled subscriber: {} publishers, {} B QoS 1, {} s</text>"#,
        a.publishers, a.payload, a.duration_secs
    );
    // Axes with ticks.
    let _ = writeln!(
        svg,
        r#"<line x1="{left}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let (yv, x_end, x_label, y_label) = (y(v), w - right, left - 6.0, y(v) + 4.0);
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" y1="{yv:.1}" x2="{x_end}" y2="{yv:.1}" stroke="#ddd"/><text x="{x_label}" y="{y_label:.1}" text-anchor="end">{v:.0}</text>"##
        );
        let t = t_max * f64::from(i) / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{t:.0}</text>"#,
            x(t),
            h - bottom + 18.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">seconds</text><text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">RSS (MiB)</text>"#,
        (left + w - right) / 2.0,
        h - 12.0,
        h / 2.0,
        h / 2.0
    );
    let (yb, x_end, y_text, mib) = (y(bound), w - right, y(bound) - 5.0, a.bound_mib);
    let _ = writeln!(
        svg,
        r##"<line x1="{left}" y1="{yb:.1}" x2="{x_end}" y2="{yb:.1}" stroke="#c00" stroke-dasharray="6 4"/><text x="{x_end}" y="{y_text:.1}" fill="#c00" text-anchor="end">RSS before the load ({rss_start:.0} MiB) + maxQueuedBytes ({mib} MiB)</text>"##
    );
    let points: Vec<String> = samples
        .iter()
        .map(|s| format!("{:.1},{:.1}", x(s.t), y(s.rss_mib)))
        .collect();
    let _ = writeln!(
        svg,
        r##"<polyline fill="none" stroke="#06c" stroke-width="2" points="{}"/>"##,
        points.join(" ")
    );
    svg.push_str("</svg>\n");
    svg
}

async fn connect(
    broker: SocketAddr,
    client_id: &str,
    v: ProtocolVersion,
) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(broker)
        .await
        .with_context(|| format!("connect {broker}"))?;
    s.set_nodelay(true)?;
    let c = Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 0,
        client_id: client_id.to_owned(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    send(&mut s, &Packet::Connect(Box::new(c)), v).await?;
    let mut buf = BytesMut::new();
    match read_packet(&mut s, &mut buf, v).await? {
        Packet::ConnAck(a) if a.code == 0 => Ok(s),
        p => anyhow::bail!("connection refused: {}", p.name()),
    }
}

async fn send(s: &mut TcpStream, p: &Packet, v: ProtocolVersion) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    edgeplane_codec::encode(p, v, &mut out);
    s.write_all(&out).await?;
    Ok(())
}

async fn read_packet(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    v: ProtocolVersion,
) -> anyhow::Result<Packet> {
    loop {
        if let Some(p) = edgeplane_codec::decode(buf, v, usize::MAX)? {
            return Ok(p);
        }
        let read = tokio::time::timeout(Duration::from_secs(30), s.read_buf(buf)).await;
        if read.context("no answer from the broker")?? == 0 {
            anyhow::bail!("the broker closed the connection");
        }
    }
}
