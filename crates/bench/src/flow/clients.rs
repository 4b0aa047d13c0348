//! The load tool's MQTT 3.1.1 clients: a publisher that sends pre-encoded PUBLISH packets
//! (only the packet id and the send time are patched per message, no allocation), and a
//! subscriber that acknowledges, counts and times every delivery.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{epoch, Latency};

const V: ProtocolVersion = ProtocolVersion::V311;
/// Filters per SUBSCRIBE packet when a subscriber holds many.
const FILTERS_PER_SUBSCRIBE: usize = 100;
/// Bytes of encoded packets a publisher gathers before one write.
const WRITE_BATCH: usize = 60 * 1024;
/// Keep alive of every client, in seconds: long enough for any run, and not 0, which some
/// brokers (rumqttd) refuse.
const KEEP_ALIVE: u16 = 600;

pub(crate) async fn connect(
    broker: SocketAddr,
    id: &str,
    clean_start: bool,
) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(broker).await?;
    s.set_nodelay(true)?;
    let c = Connect {
        protocol: V,
        clean_start,
        keep_alive: KEEP_ALIVE,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    send(&mut s, &Packet::Connect(Box::new(c))).await?;
    let mut buf = BytesMut::new();
    match read_packet(&mut s, &mut buf).await? {
        Packet::ConnAck(a) if a.code == 0 => Ok(s),
        p => anyhow::bail!("connection refused: {p:?}"),
    }
}

async fn send(s: &mut TcpStream, p: &Packet) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    edgeplane_codec::encode(p, V, &mut out);
    s.write_all(&out).await?;
    Ok(())
}

async fn read_packet(s: &mut TcpStream, buf: &mut BytesMut) -> anyhow::Result<Packet> {
    loop {
        if let Some(p) = edgeplane_codec::decode(buf, V, usize::MAX)? {
            return Ok(p);
        }
        if s.read_buf(buf).await? == 0 {
            anyhow::bail!("broker closed the connection");
        }
    }
}

/// Nanoseconds since the shared epoch, as carried in payloads.
fn stamp(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// A subscriber connection with its filters granted.
pub(crate) struct Subscription {
    stream: TcpStream,
    buf: BytesMut,
}

impl Subscription {
    pub(crate) async fn open(
        broker: SocketAddr,
        id: &str,
        clean_start: bool,
        filters: &[String],
        qos: QoS,
    ) -> anyhow::Result<Self> {
        let mut stream = connect(broker, id, clean_start).await?;
        let mut buf = BytesMut::new();
        for (i, chunk) in filters.chunks(FILTERS_PER_SUBSCRIBE).enumerate() {
            let sub = Subscribe {
                packet_id: u16::try_from(i + 1).unwrap_or(u16::MAX),
                filters: chunk
                    .iter()
                    .map(|f| (f.clone(), SubOptions::new(qos)))
                    .collect(),
                properties: Properties::default(),
            };
            send(&mut stream, &Packet::Subscribe(sub)).await?;
            match read_packet(&mut stream, &mut buf).await? {
                Packet::SubAck(ack) => {
                    if let Some(code) = ack.reasons.iter().find(|c| c.0 >= 0x80) {
                        anyhow::bail!("the broker refused a subscription of {id}: {code:?}");
                    }
                }
                p => anyhow::bail!("expected SUBACK, got {}", p.name()),
            }
        }
        Ok(Subscription { stream, buf })
    }

    /// Read, acknowledge and count deliveries until the connection closes.
    pub(crate) async fn run(
        mut self,
        received: Arc<AtomicU64>,
        latency: Latency,
    ) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        let mut times = Vec::with_capacity(1024);
        loop {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(());
            }
            let mut n = 0;
            let now = stamp(Instant::now());
            while let Some(p) = edgeplane_codec::decode(&mut self.buf, V, usize::MAX)? {
                match p {
                    Packet::Publish(p) => {
                        n += 1;
                        if let Some(sent) = p.payload.get(..8) {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(sent);
                            times.push(now.saturating_sub(u64::from_le_bytes(b)) / 1000);
                        }
                        let ack = match p.qos {
                            QoS::AtMostOnce => None,
                            QoS::AtLeastOnce => {
                                Some(Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                            }
                            QoS::ExactlyOnce => {
                                Some(Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                            }
                        };
                        if let Some(ack) = ack {
                            edgeplane_codec::encode(&ack, V, &mut out);
                        }
                    }
                    Packet::PubRel(a) => edgeplane_codec::encode(
                        &Packet::PubComp(Ack::new(a.packet_id, ReasonCode::SUCCESS)),
                        V,
                        &mut out,
                    ),
                    _ => {}
                }
            }
            if !times.is_empty() {
                let mut h = latency
                    .lock()
                    .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?;
                for t in times.drain(..) {
                    h.saturating_record(t.max(1));
                }
            }
            received.fetch_add(n, Ordering::Relaxed);
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
                out.clear();
            }
        }
    }
}

/// One PUBLISH encoded once; per message only its packet id and send time change.
struct Template {
    bytes: Bytes,
    /// Offset of the packet id (QoS 1/2), just before the payload.
    id_at: usize,
    /// Offset of the payload, whose first 8 bytes hold the send time.
    payload_at: usize,
}

impl Template {
    fn new(topic: &str, payload: &Bytes, qos: QoS) -> Self {
        let mut out = BytesMut::new();
        let p = Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_owned(),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            properties: Properties::default(),
            payload: payload.clone(),
        };
        edgeplane_codec::encode(&Packet::Publish(p), V, &mut out);
        let payload_at = out.len() - payload.len();
        Template {
            bytes: out.freeze(),
            id_at: payload_at.saturating_sub(2),
            payload_at,
        }
    }

    fn append(&self, out: &mut BytesMut, qos: QoS, packet_id: u16, sent_at: u64) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if qos != QoS::AtMostOnce {
            out[start + self.id_at..start + self.id_at + 2]
                .copy_from_slice(&packet_id.to_be_bytes());
        }
        if self.bytes.len() - self.payload_at >= 8 {
            let at = start + self.payload_at;
            out[at..at + 8].copy_from_slice(&sent_at.to_le_bytes());
        }
    }
}

/// A publisher: closed loop (`interval` None: as fast as the window allows) or open loop
/// (one message every `interval`, on schedule).
pub(crate) struct Publisher {
    pub stream: TcpStream,
    /// Sent to round-robin.
    pub topics: Vec<String>,
    pub payload: Bytes,
    pub qos: QoS,
    pub count: u64,
    pub window: usize,
    pub interval: Option<Duration>,
}

impl Publisher {
    pub(crate) async fn run(mut self) -> anyhow::Result<()> {
        let templates: Vec<Template> = self
            .topics
            .iter()
            .map(|t| Template::new(t, &self.payload, self.qos))
            .collect();
        let qos = self.qos;
        let mut out = BytesMut::with_capacity(WRITE_BATCH + 4096);
        let mut inbuf = BytesMut::new();
        let mut inflight = 0usize;
        let mut sent = 0u64;
        let mut next_id: u16 = 1;
        let started = Instant::now();
        let due_at = |n: u64| {
            self.interval
                .map(|iv| started + Duration::from_secs_f64(iv.as_secs_f64() * n as f64))
        };
        loop {
            let now = Instant::now();
            let due = match self.interval {
                None => self.count,
                Some(iv) => {
                    let n = (now - started).as_secs_f64() / iv.as_secs_f64();
                    (n as u64 + 1).min(self.count)
                }
            };
            let open = |inflight: usize| qos == QoS::AtMostOnce || inflight < self.window;
            while sent < due && open(inflight) && out.len() < WRITE_BATCH {
                // Open loop: latency counts from when the message was due, not from when
                // the broker let us send it.
                let at = due_at(sent).unwrap_or(now);
                let t = &templates[(sent % templates.len() as u64) as usize];
                t.append(&mut out, qos, next_id, stamp(at));
                next_id = next_id.wrapping_add(1).max(1);
                sent += 1;
                if qos != QoS::AtMostOnce {
                    inflight += 1;
                }
            }
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
                out.clear();
            }
            if sent >= self.count && inflight == 0 {
                break;
            }
            if sent < due && open(inflight) {
                continue; // the write batch was full
            }
            let next_due = due_at(sent).filter(|_| sent < self.count);
            if qos == QoS::AtMostOnce {
                if let Some(t) = next_due {
                    tokio::time::sleep_until(t.into()).await;
                }
                continue;
            }
            let wake = next_due.filter(|_| open(inflight));
            tokio::select! {
                r = self.stream.read_buf(&mut inbuf) => {
                    if r? == 0 {
                        anyhow::bail!("broker closed the publisher's connection");
                    }
                }
                _ = async {
                    match wake {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            while let Some(p) = edgeplane_codec::decode(&mut inbuf, V, usize::MAX)? {
                match p {
                    Packet::PubAck(_) | Packet::PubComp(_) => inflight = inflight.saturating_sub(1),
                    Packet::PubRec(a) => edgeplane_codec::encode(
                        &Packet::PubRel(Ack::new(a.packet_id, ReasonCode::SUCCESS)),
                        V,
                        &mut out,
                    ),
                    _ => {}
                }
            }
        }
        // Make sure everything was processed before the publisher leaves.
        send(&mut self.stream, &Packet::PingReq).await?;
        loop {
            if let Packet::PingResp = read_packet(&mut self.stream, &mut inbuf).await? {
                return Ok(());
            }
        }
    }
}
