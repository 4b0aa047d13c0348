//! Message-flow scenarios: publishers and subscribers on one topic, closed loop. Publishers
//! send as fast as the broker takes them (QoS 1/2 with a window of unacknowledged messages);
//! subscribers count every delivery until all expected arrived or the deadline passed.

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

const V: ProtocolVersion = ProtocolVersion::V311;

#[derive(clap::Args, Clone)]
pub struct FlowArgs {
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Publishers (fan-in) or subscribers (fan-out).
    #[arg(long, default_value_t = 10)]
    clients: usize,
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
    /// Give up waiting for deliveries after this long.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Subscribers keep a persistent session (MQTT 3.1.1 Clean Session 0), so a broker
    /// with persistence writes their queues to disk.
    #[arg(long)]
    pub persistent: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    FanIn,
    FanOut,
}

pub async fn run(a: FlowArgs, shape: Shape) -> anyhow::Result<()> {
    let qos = QoS::try_from(a.qos).map_err(|q| anyhow::anyhow!("QoS {q} does not exist"))?;
    let (publishers, subscribers) = match shape {
        Shape::FanIn => (a.clients, 1),
        Shape::FanOut => (1, a.clients),
    };
    let topic = format!("bench/{}", std::process::id());
    let expected = a.messages * publishers as u64 * subscribers as u64;
    let received = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let mut s = connect(a.broker, &format!("bench-sub-{i}"), !a.persistent).await?;
        let sub = Subscribe {
            packet_id: 1,
            filters: vec![(topic.clone(), SubOptions::new(qos))],
            properties: Properties::default(),
        };
        send(&mut s, &Packet::Subscribe(sub)).await?;
        let mut buf = BytesMut::new();
        match read_packet(&mut s, &mut buf).await? {
            Packet::SubAck(_) => {}
            p => anyhow::bail!("expected SUBACK, got {}", p.name()),
        }
        subs.push(tokio::spawn(subscriber(s, buf, Arc::clone(&received))));
    }
    let payload = Bytes::from(vec![b'x'; a.payload]);
    let start = Instant::now();
    let mut pubs = Vec::new();
    for i in 0..publishers {
        let s = connect(a.broker, &format!("bench-pub-{i}"), true).await?;
        pubs.push(tokio::spawn(publisher(
            s,
            topic.clone(),
            payload.clone(),
            qos,
            a.messages,
            a.window,
        )));
    }
    for p in pubs {
        p.await??;
    }
    let publish_secs = start.elapsed().as_secs_f64();
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
    let secs = if got == expected {
        start.elapsed().as_secs_f64()
    } else {
        (last.1 - start).as_secs_f64()
    };
    for s in subs {
        s.abort();
    }
    let name = if shape == Shape::FanIn {
        "fan-in"
    } else {
        "fan-out"
    };
    println!(
        "{{\"scenario\":\"{name}\",\"publishers\":{publishers},\"subscribers\":{subscribers},\"qos\":{},\"payload\":{},\"expected\":{expected},\"received\":{got},\"lost\":{},\"secs\":{secs:.3},\"publish_secs\":{publish_secs:.3},\"deliveries_per_sec\":{:.0}}}",
        a.qos,
        a.payload,
        expected - got.min(expected),
        got as f64 / secs
    );
    Ok(())
}

async fn connect(broker: SocketAddr, id: &str, clean_start: bool) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(broker).await?;
    s.set_nodelay(true)?;
    let c = Connect {
        protocol: V,
        clean_start,
        keep_alive: 0,
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

async fn subscriber(
    mut s: TcpStream,
    mut buf: BytesMut,
    received: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    loop {
        if s.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let mut n = 0;
        while let Some(p) = edgeplane_codec::decode(&mut buf, V, usize::MAX)? {
            match p {
                Packet::Publish(p) => {
                    n += 1;
                    match p.qos {
                        QoS::AtMostOnce => {}
                        QoS::AtLeastOnce => edgeplane_codec::encode(
                            &Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)),
                            V,
                            &mut out,
                        ),
                        QoS::ExactlyOnce => edgeplane_codec::encode(
                            &Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)),
                            V,
                            &mut out,
                        ),
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
        received.fetch_add(n, Ordering::Relaxed);
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
    }
}

async fn publisher(
    mut s: TcpStream,
    topic: String,
    payload: Bytes,
    qos: QoS,
    count: u64,
    window: usize,
) -> anyhow::Result<()> {
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut inbuf = BytesMut::new();
    let mut inflight = 0usize;
    let mut sent = 0u64;
    let mut next_id: u16 = 1;
    while sent < count || inflight > 0 {
        // Fill the window (QoS 0: a batch) and write it in one go.
        while sent < count && (qos == QoS::AtMostOnce || inflight < window) && out.len() < 60 * 1024
        {
            let packet_id = if qos == QoS::AtMostOnce { 0 } else { next_id };
            next_id = next_id.wrapping_add(1).max(1);
            let p = Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id,
                properties: Properties::default(),
                payload: payload.clone(),
            };
            edgeplane_codec::encode(&Packet::Publish(p), V, &mut out);
            sent += 1;
            if qos != QoS::AtMostOnce {
                inflight += 1;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if inflight == 0 {
            continue;
        }
        if s.read_buf(&mut inbuf).await? == 0 {
            anyhow::bail!("broker closed the publisher's connection");
        }
        while let Some(p) = edgeplane_codec::decode(&mut inbuf, V, usize::MAX)? {
            match p {
                Packet::PubAck(_) | Packet::PubComp(_) => inflight -= 1,
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
    send(&mut s, &Packet::PingReq).await?;
    loop {
        if let Packet::PingResp = read_packet(&mut s, &mut inbuf).await? {
            return Ok(());
        }
    }
}
