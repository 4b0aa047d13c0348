//! State store throughput and latency through MQTT: N MQTT v5 clients, each with a window of
//! pipelined requests (alternating `SET` and `GET` on its own keys) published to the state
//! store's request topic with a response topic and correlation data, as the Azure IoT
//! Operations SDK does. Reports operations per second and p50/p99/p99.9 latency.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V: ProtocolVersion = ProtocolVersion::V5;
const REQUEST_TOPIC: &str = "statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/command/invoke";

#[derive(clap::Args, Clone)]
pub struct StateStoreArgs {
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: SocketAddr,
    /// Concurrent MQTT clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Operations per client.
    #[arg(long, default_value_t = 50_000)]
    operations: usize,
    /// Requests in flight per client.
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Value size in bytes for SET.
    #[arg(long, default_value_t = 64)]
    value: usize,
}

pub async fn run(a: StateStoreArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        tasks.push(tokio::spawn(client(
            a.broker,
            i,
            a.operations,
            a.window,
            a.value,
        )));
    }
    let mut latencies = Vec::with_capacity(a.clients * a.operations);
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        latencies.extend(l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d: &Duration| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"scenario\":\"statestore\",\"clients\":{},\"window\":{},\"operations\":{},\"errors\":{errors},\"secs\":{secs:.3},\"ops_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3}}}",
        a.clients,
        a.window,
        latencies.len(),
        latencies.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        pct(0.999)
    );
    Ok(())
}

fn resp_array(parts: &[&[u8]]) -> Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(format!("*{}\r\n", parts.len()).as_bytes());
    for p in parts {
        out.extend_from_slice(format!("${}\r\n", p.len()).as_bytes());
        out.extend_from_slice(p);
        out.extend_from_slice(b"\r\n");
    }
    out.into()
}

fn hlc_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{ms:0>15}:{:0>5}:bench", 0)
}

async fn client(
    broker: SocketAddr,
    n: usize,
    ops: usize,
    window: usize,
    value: usize,
) -> anyhow::Result<(Vec<Duration>, usize)> {
    let id = format!("bench-ss-{n}-{}", std::process::id());
    let response_topic = format!("clients/{id}/services/statestore/response");
    let mut s = TcpStream::connect(broker).await?;
    s.set_nodelay(true)?;
    let mut out = BytesMut::new();
    let mut inbuf = BytesMut::new();
    let c = Connect {
        protocol: V,
        clean_start: true,
        keep_alive: 0,
        client_id: id.clone(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    edgeplane_codec::encode(&Packet::Connect(Box::new(c)), V, &mut out);
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![(response_topic.clone(), SubOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    };
    edgeplane_codec::encode(&Packet::Subscribe(sub), V, &mut out);
    s.write_all(&out).await?;
    out.clear();
    let mut acked = 0;
    while acked < 2 {
        if s.read_buf(&mut inbuf).await? == 0 {
            anyhow::bail!("broker closed the connection");
        }
        while let Some(p) = edgeplane_codec::decode(&mut inbuf, V, usize::MAX)? {
            if matches!(p, Packet::ConnAck(_) | Packet::SubAck(_)) {
                acked += 1;
            }
        }
    }
    let val = vec![b'v'; value];
    let mut pending: HashMap<u64, Instant> = HashMap::new();
    let mut latencies = Vec::with_capacity(ops);
    let (mut sent, mut errors, mut packet_id) = (0usize, 0usize, 1u16);
    while latencies.len() < ops {
        while sent < ops && pending.len() < window {
            let key = format!("bench/{n}/{}", sent % 1000);
            let payload = if sent % 2 == 0 {
                resp_array(&[b"SET", key.as_bytes(), &val])
            } else {
                resp_array(&[b"GET", key.as_bytes()])
            };
            let corr = sent as u64;
            let props = Properties {
                response_topic: Some(response_topic.clone()),
                correlation_data: Some(Bytes::copy_from_slice(&corr.to_be_bytes())),
                user_properties: vec![
                    ("__ts".into(), hlc_now()),
                    ("__protVer".into(), "1.0".into()),
                    ("__srcId".into(), id.clone()),
                ],
                ..Properties::default()
            };
            packet_id = packet_id.wrapping_add(1).max(1);
            let p = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: REQUEST_TOPIC.into(),
                packet_id,
                properties: props,
                payload,
            };
            edgeplane_codec::encode(&Packet::Publish(p), V, &mut out);
            pending.insert(corr, Instant::now());
            sent += 1;
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if s.read_buf(&mut inbuf).await? == 0 {
            anyhow::bail!("broker closed the connection");
        }
        while let Some(p) = edgeplane_codec::decode(&mut inbuf, V, usize::MAX)? {
            if let Packet::Publish(r) = p {
                if r.qos != QoS::AtMostOnce {
                    edgeplane_codec::encode(
                        &Packet::PubAck(Ack::new(r.packet_id, ReasonCode::SUCCESS)),
                        V,
                        &mut out,
                    );
                }
                let corr = r
                    .properties
                    .correlation_data
                    .as_ref()
                    .and_then(|c| <[u8; 8]>::try_from(&c[..]).ok())
                    .map(u64::from_be_bytes);
                if let Some(t) = corr.and_then(|c| pending.remove(&c)) {
                    latencies.push(t.elapsed());
                    if r.payload.starts_with(b"-") {
                        errors += 1;
                    }
                }
            }
        }
    }
    Ok((latencies, errors))
}
