//! End-to-end dataflow throughput through a broker: publishers send thermostat telemetry
//! to `factory/line<k>/dev-<i>/telemetry` (QoS 1, a window of unacknowledged messages each,
//! so the run is closed loop and lossless), and one subscriber on `curated/#` counts what
//! the dataflow (Edgeplane's, or Node-RED's) delivers. Any broker, any dataflow engine:
//! only MQTT is spoken.
//!
//! `cargo run --release -p edgeplane-dataflow --example relay_bench -- \
//!     --broker 127.0.0.1:1883 --publishers 4 --messages 200000 --window 64`
//!
//! Prints one line of JSON: messages sent, received, seconds, msg/s and latency
//! percentiles (publish to delivery, from a timestamp in the payload).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V: ProtocolVersion = ProtocolVersion::V5;
const ASSETS: usize = 50;

struct Args {
    broker: SocketAddr,
    publishers: usize,
    messages: u64,
    window: usize,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        broker: SocketAddr::from(([127, 0, 0, 1], 1883)),
        publishers: 4,
        messages: 200_000,
        window: 64,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: String| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--broker" => {
                a.broker = value
                    .parse()
                    .map_err(|e: std::net::AddrParseError| bad(e.to_string()))?
            }
            "--publishers" => {
                a.publishers = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            "--messages" => {
                a.messages = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            "--window" => {
                a.window = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, id: &str) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(64 * 1024),
            wbuf: BytesMut::with_capacity(64 * 1024),
        };
        c.queue(&Packet::Connect(Box::new(Connect {
            protocol: V,
            clean_start: true,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties {
                receive_maximum: Some(65_535),
                ..Properties::default()
            },
        })));
        c.flush().await?;
        match c.read().await? {
            Packet::ConnAck(a) if a.code == 0 => Ok(c),
            other => Err(std::io::Error::other(format!("not accepted: {other:?}"))),
        }
    }

    fn queue(&mut self, p: &Packet) {
        edgeplane_codec::encode(p, V, &mut self.wbuf);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    async fn read(&mut self) -> std::io::Result<Packet> {
        loop {
            match edgeplane_codec::decode(&mut self.rbuf, V, usize::MAX) {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

async fn publisher(
    addr: SocketAddr,
    n: usize,
    messages: u64,
    window: usize,
) -> std::io::Result<()> {
    let mut c = Conn::open(addr, &format!("relay-bench-pub-{n}")).await?;
    let mut inflight = 0usize;
    let mut sent = 0u64;
    let mut next_id: u16 = 1;
    while sent < messages || inflight > 0 {
        while sent < messages && inflight < window {
            let i = (sent as usize * 7 + n) % ASSETS;
            let payload = format!(
                r#"{{"deviceId":"dev-{i}","temperature":{:.1},"humidity":{},"status":"ok","ts":{}}}"#,
                15.0 + (sent % 20) as f64,
                40 + sent % 20,
                now_us()
            );
            c.queue(&Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: format!("factory/line{}/dev-{i}/telemetry", n % 4),
                packet_id: next_id,
                properties: Properties::default(),
                payload: Bytes::from(payload),
            }));
            next_id = next_id.wrapping_add(1).max(1);
            inflight += 1;
            sent += 1;
        }
        c.flush().await?;
        // Take every ack already here, then wait for at least one.
        loop {
            match c.read().await? {
                Packet::PubAck(_) => inflight -= 1,
                other => return Err(std::io::Error::other(format!("unexpected {other:?}"))),
            }
            if c.rbuf.is_empty() {
                break;
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = args()?;
    let mut sub = Conn::open(a.broker, "relay-bench-sub").await?;
    sub.queue(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![("curated/#".into(), SubOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    }));
    sub.flush().await?;
    loop {
        if let Packet::SubAck(_) = sub.read().await? {
            break;
        }
    }
    let expected = a.messages * a.publishers as u64;
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        let mut latencies: Vec<u64> = Vec::with_capacity(expected as usize);
        let mut first: Option<Instant> = None;
        let mut per_topic: HashMap<String, u64> = HashMap::new();
        while (latencies.len() as u64) < expected {
            let p = match tokio::time::timeout(Duration::from_secs(10), sub.read()).await {
                Ok(Ok(Packet::Publish(p))) => p,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => break, // stalled: report what arrived
            };
            first.get_or_insert_with(Instant::now);
            if p.qos == QoS::AtLeastOnce {
                sub.queue(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)));
                if sub.rbuf.is_empty() {
                    sub.flush().await.map_err(|e| e.to_string())?;
                }
            }
            let ts = serde_json::from_slice::<serde_json::Value>(&p.payload)
                .ok()
                .and_then(|v| v.get("ts").and_then(serde_json::Value::as_u64));
            if let Some(ts) = ts {
                latencies.push(now_us().saturating_sub(ts));
            } else {
                latencies.push(0);
            }
            *per_topic.entry(p.topic).or_default() += 1;
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let _ = sub.flush().await;
        Ok((latencies, per_topic.len()))
    });
    let start = Instant::now();
    let pubs: Vec<_> = (0..a.publishers)
        .map(|n| tokio::spawn(publisher(a.broker, n, a.messages, a.window)))
        .collect();
    for p in pubs {
        p.await??;
    }
    let published = start.elapsed();
    let (mut latencies, topics) = reader.await?.map_err(std::io::Error::other)?;
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let pct = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let got = received.load(Ordering::Relaxed);
    println!(
        "{{\"sent\":{expected},\"received\":{got},\"topics\":{topics},\"publish_seconds\":{:.3},\"seconds\":{:.3},\"msg_per_s\":{:.0},\"p50_ms\":{:.2},\"p99_ms\":{:.2}}}",
        published.as_secs_f64(),
        elapsed.as_secs_f64(),
        got as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    if got < expected {
        return Err(format!("lossy run: {got} of {expected} arrived").into());
    }
    Ok(())
}
