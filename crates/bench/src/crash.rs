//! `crash`: kill -9 an Edgeplane broker again and again under a mixed QoS 1 / QoS 2 load of
//! persistent sessions, restart it on the same data folder, and check that nothing it
//! acknowledged was lost and no QoS 2 message arrived twice.
//!
//! Publishers count a message as acknowledged when the broker took it over (PUBACK for
//! QoS 1, PUBREC for QoS 2) and re-send their unfinished flows after every reconnect, as the
//! specification asks. Subscribers count every message as it arrives (a QoS 2 message on its
//! PUBLISH, so a re-sent copy with a new packet id would be counted twice) and keep their
//! QoS 2 receive state across reconnects. A retained message published all along must come
//! back no older than its last acknowledged version. Exit status 1 on any loss.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const V: ProtocolVersion = ProtocolVersion::V5;
/// QoS 1/2 messages a publisher keeps in flight.
const WINDOW: usize = 32;

#[derive(clap::Args)]
pub struct CrashArgs {
    /// The edgeplane binary to run.
    #[arg(long, default_value = "target/release/edgeplane")]
    edgeplane: PathBuf,
    /// kill -9 / restart cycles.
    #[arg(long, default_value_t = 100)]
    cycles: u32,
    /// Shortest run between kills, in milliseconds.
    #[arg(long, default_value_t = 200)]
    min_ms: u64,
    /// Longest run between kills, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    max_ms: u64,
    /// Data folder (default: a fresh one under the temporary folder).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seed of the kill timing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Default)]
struct PubState {
    next_seq: u64,
    /// Packet id → (sequence number, PUBREC received).
    inflight: BTreeMap<u16, (u64, bool)>,
    next_pid: u16,
    acked: HashSet<u64>,
}

#[derive(Default)]
struct SubState {
    /// (publisher, sequence) → times received.
    received: HashMap<(String, u64), u32>,
    /// QoS 2 packet ids received and not yet released.
    pending: HashSet<u16>,
    sessions_lost: u32,
}

struct Shared {
    broker: SocketAddr,
    stop: AtomicBool,
}

pub async fn run(a: CrashArgs) -> anyhow::Result<()> {
    let dir = a.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("edgeplane-crash-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let config = dir.join("config");
    std::fs::create_dir_all(&config)?;
    let port = free_port()?;
    std::fs::write(config.join("listener.yaml"), listener_yaml(port))?;
    let shared = Arc::new(Shared {
        broker: SocketAddr::from(([127, 0, 0, 1], port)),
        stop: AtomicBool::new(false),
    });
    let mut broker = start(&a.edgeplane, &config, &dir.join("data")).await?;
    wait_ready(shared.broker).await?;

    let subs: Vec<(&str, &str, QoS)> = vec![
        ("s1", "crash/q1", QoS::AtLeastOnce),
        ("s2", "crash/q2", QoS::ExactlyOnce),
        ("s3", "crash/#", QoS::ExactlyOnce),
    ];
    let mut sub_states = Vec::new();
    for (id, filter, qos) in &subs {
        let st = Arc::new(Mutex::new(SubState::default()));
        subscribe_once(shared.broker, id, filter, *qos).await?;
        tokio::spawn(subscriber(
            Arc::clone(&shared),
            id.to_string(),
            Arc::clone(&st),
        ));
        sub_states.push((id.to_string(), *qos, st));
    }
    let pubs: Vec<(&str, &str, QoS, bool)> = vec![
        ("p1", "crash/q1", QoS::AtLeastOnce, false),
        ("p2", "crash/q2", QoS::ExactlyOnce, false),
        ("r", "crash/retained", QoS::AtLeastOnce, true),
    ];
    let mut pub_states = Vec::new();
    for (id, topic, qos, retain) in &pubs {
        let st = Arc::new(Mutex::new(PubState::default()));
        let p = Publisher {
            shared: Arc::clone(&shared),
            id: id.to_string(),
            topic: topic.to_string(),
            qos: *qos,
            retain: *retain,
            state: Arc::clone(&st),
        };
        tokio::spawn(p.run());
        pub_states.push((id.to_string(), *qos, st));
    }

    let mut rng = a.seed.max(1);
    let mut restart_ms = Vec::new();
    for cycle in 1..=a.cycles {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let run_ms = a.min_ms + rng % (a.max_ms - a.min_ms).max(1);
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        broker.kill().await.context("kill -9 the broker")?;
        let t = Instant::now();
        broker = start(&a.edgeplane, &config, &dir.join("data")).await?;
        wait_ready(shared.broker).await?;
        restart_ms.push(t.elapsed().as_millis() as u64);
        if cycle % 10 == 0 {
            let acked: usize = pub_states.iter().map(|(_, _, s)| lock(s).acked.len()).sum();
            println!(
                "cycle {cycle}/{}: {acked} messages acknowledged so far",
                a.cycles
            );
        }
    }
    shared.stop.store(true, Ordering::Release);
    // Let publishers finish their flows and subscribers catch up.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let idle = pub_states
            .iter()
            .all(|(_, _, s)| lock(s).inflight.is_empty());
        let complete = sub_states
            .iter()
            .all(|(id, _, s)| missing(id, s, &pub_states).is_empty());
        if (idle && complete) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let retained = read_retained(shared.broker).await?;
    let _ = broker.kill().await;

    let mut failed = false;
    println!(
        "\n{} kill -9 / restart cycles; restart to accepting connections: median {} ms, max {} ms",
        a.cycles,
        median(&mut restart_ms),
        restart_ms.iter().max().copied().unwrap_or(0)
    );
    for (id, qos, s) in &pub_states {
        println!(
            "publisher {id} ({qos:?}): {} messages acknowledged by the broker",
            lock(s).acked.len()
        );
    }
    for (id, qos, s) in &sub_states {
        let lost = missing(id, s, &pub_states);
        let st = lock(s);
        let dups = st.received.values().filter(|n| **n > 1).count();
        let dup_qos2 = st
            .received
            .iter()
            .filter(|((p, _), n)| **n > 1 && qos2_publisher(p))
            .count();
        println!(
            "subscriber {id} ({qos:?}): {} received, {} acknowledged messages lost, {} duplicates ({} of QoS 2 messages), sessions lost {}",
            st.received.len(), lost.len(), dups, dup_qos2, st.sessions_lost
        );
        if !lost.is_empty() {
            println!(
                "  first lost: {:?}",
                lost.iter().take(5).collect::<Vec<_>>()
            );
        }
        failed |=
            !lost.is_empty() || (*qos == QoS::ExactlyOnce && dup_qos2 > 0) || st.sessions_lost > 0;
    }
    let last_acked = pub_states
        .iter()
        .find(|(id, _, _)| id == "r")
        .and_then(|(_, _, s)| lock(s).acked.iter().max().copied())
        .unwrap_or(0);
    println!("retained message: last acknowledged version {last_acked}, found {retained:?}");
    failed |= retained.is_none_or(|r| r < last_acked);
    println!(
        "{}",
        if failed {
            "RESULT: FAILED"
        } else {
            "RESULT: zero acknowledged messages lost, zero QoS 2 duplicates"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        bail!("durability check failed");
    }
    Ok(())
}

fn qos2_publisher(p: &str) -> bool {
    p == "p2"
}

/// Acknowledged messages that `sub` should have and has not received.
fn missing(
    sub: &str,
    s: &Arc<Mutex<SubState>>,
    pubs: &[(String, QoS, Arc<Mutex<PubState>>)],
) -> Vec<(String, u64)> {
    let st = lock(s);
    let mut out = Vec::new();
    for (id, _, p) in pubs {
        let wanted = match sub {
            "s1" => id == "p1",
            "s2" => id == "p2",
            _ => id != "r",
        };
        if !wanted {
            continue;
        }
        for seq in &lock(p).acked {
            if !st.received.contains_key(&(id.clone(), *seq)) {
                out.push((id.clone(), *seq));
            }
        }
    }
    out.sort();
    out
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn listener_yaml(port: u16) -> String {
    format!(
        "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerListener\nmetadata:\n  name: crash\nspec:\n  ports:\n  - port: {port}\n    bindAddress: 127.0.0.1\n"
    )
}

async fn start(bin: &Path, config: &Path, data: &Path) -> anyhow::Result<Child> {
    Command::new(bin)
        .args([
            "run",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))
}

async fn wait_ready(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("the broker did not accept connections within 30 s")
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn open(addr: SocketAddr, id: &str, clean_start: bool) -> anyhow::Result<(Conn, bool)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            buf: BytesMut::new(),
        };
        let properties = Properties {
            session_expiry_interval: Some(86_400),
            ..Properties::default()
        };
        let connect = Connect {
            protocol: V,
            clean_start,
            keep_alive: 0,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties,
        };
        c.send(&[Packet::Connect(Box::new(connect))]).await?;
        match c.read().await? {
            Packet::ConnAck(a) if a.code == 0 => Ok((c, a.session_present)),
            p => bail!("connection refused: {p:?}"),
        }
    }

    async fn send(&mut self, packets: &[Packet]) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        for p in packets {
            edgeplane_codec::encode(p, V, &mut out);
        }
        self.stream.write_all(&out).await?;
        Ok(())
    }

    async fn read(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = edgeplane_codec::decode(&mut self.buf, V, usize::MAX)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }
}

async fn subscribe_once(addr: SocketAddr, id: &str, filter: &str, qos: QoS) -> anyhow::Result<()> {
    let (mut c, _) = Conn::open(addr, id, true).await?;
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![(filter.into(), SubOptions::new(qos))],
        properties: Properties::default(),
    };
    c.send(&[Packet::Subscribe(sub)]).await?;
    match c.read().await? {
        Packet::SubAck(_) => Ok(()),
        p => bail!("expected SUBACK, got {p:?}"),
    }
}

async fn subscriber(shared: Arc<Shared>, id: String, state: Arc<Mutex<SubState>>) {
    loop {
        if let Ok((mut c, present)) = Conn::open(shared.broker, &id, false).await {
            if !present {
                lock(&state).sessions_lost += 1;
            }
            let _ = serve_subscriber(&mut c, &state).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_subscriber(c: &mut Conn, state: &Mutex<SubState>) -> anyhow::Result<()> {
    loop {
        let reply = match c.read().await? {
            Packet::Publish(p) => {
                let mut st = lock(state);
                let fresh = p.qos != QoS::ExactlyOnce || st.pending.insert(p.packet_id);
                if fresh {
                    if let Some(key) = parse_payload(&p.payload) {
                        *st.received.entry(key).or_insert(0) += 1;
                    }
                }
                match p.qos {
                    QoS::AtMostOnce => continue,
                    QoS::AtLeastOnce => Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)),
                    QoS::ExactlyOnce => Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)),
                }
            }
            Packet::PubRel(a) => {
                lock(state).pending.remove(&a.packet_id);
                Packet::PubComp(Ack::new(a.packet_id, ReasonCode::SUCCESS))
            }
            _ => continue,
        };
        c.send(&[reply]).await?;
    }
}

fn parse_payload(b: &Bytes) -> Option<(String, u64)> {
    let s = std::str::from_utf8(b).ok()?;
    let (id, seq) = s.split_once(':')?;
    Some((id.to_owned(), seq.parse().ok()?))
}

struct Publisher {
    shared: Arc<Shared>,
    id: String,
    topic: String,
    qos: QoS,
    retain: bool,
    state: Arc<Mutex<PubState>>,
}

impl Publisher {
    async fn run(self) {
        let mut first = true;
        loop {
            if let Ok((mut c, _)) = Conn::open(self.shared.broker, &self.id, first).await {
                first = false;
                let _ = self.serve(&mut c).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn packet(&self, seq: u64, pid: u16, dup: bool) -> Packet {
        Packet::Publish(Publish {
            dup,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic.clone(),
            packet_id: pid,
            properties: Properties::default(),
            payload: Bytes::from(format!("{}:{seq}", self.id)),
        })
    }

    /// Re-send unfinished flows, then keep the window full until told to stop.
    async fn serve(&self, c: &mut Conn) -> anyhow::Result<()> {
        let resend: Vec<Packet> = lock(&self.state)
            .inflight
            .iter()
            .map(|(&pid, &(seq, received))| {
                if received {
                    Packet::PubRel(Ack::new(pid, ReasonCode::SUCCESS))
                } else {
                    self.packet(seq, pid, true)
                }
            })
            .collect();
        c.send(&resend).await?;
        loop {
            let fresh = self.fill();
            c.send(&fresh).await?;
            let reply = match c.read().await? {
                Packet::PubAck(a) => {
                    let mut st = lock(&self.state);
                    if let Some((seq, _)) = st.inflight.remove(&a.packet_id) {
                        if !a.reason.is_error() {
                            st.acked.insert(seq);
                        }
                    }
                    None
                }
                Packet::PubRec(a) => {
                    let mut st = lock(&self.state);
                    let seq = st.inflight.get_mut(&a.packet_id).map(|e| {
                        e.1 = true;
                        e.0
                    });
                    if let Some(seq) = seq {
                        st.acked.insert(seq);
                    }
                    Some(Packet::PubRel(Ack::new(a.packet_id, ReasonCode::SUCCESS)))
                }
                Packet::PubComp(a) => {
                    lock(&self.state).inflight.remove(&a.packet_id);
                    None
                }
                _ => None,
            };
            if let Some(r) = reply {
                c.send(&[r]).await?;
            }
        }
    }

    /// New messages to keep `WINDOW` in flight (none once stopping).
    fn fill(&self) -> Vec<Packet> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut st = lock(&self.state);
        let mut out = Vec::new();
        while st.inflight.len() < WINDOW {
            st.next_seq += 1;
            let seq = st.next_seq;
            let mut pid = st.next_pid;
            loop {
                pid = pid.wrapping_add(1).max(1);
                if !st.inflight.contains_key(&pid) {
                    break;
                }
            }
            st.next_pid = pid;
            st.inflight.insert(pid, (seq, false));
            out.push(self.packet(seq, pid, false));
        }
        out
    }
}

async fn read_retained(addr: SocketAddr) -> anyhow::Result<Option<u64>> {
    let (mut c, _) = Conn::open(addr, "retained-check", true).await?;
    let sub = Subscribe {
        packet_id: 1,
        filters: vec![("crash/retained".into(), SubOptions::new(QoS::AtLeastOnce))],
        properties: Properties::default(),
    };
    c.send(&[Packet::Subscribe(sub)]).await?;
    let deadline = Duration::from_secs(5);
    loop {
        match tokio::time::timeout(deadline, c.read()).await {
            Ok(Ok(Packet::Publish(p))) => return Ok(parse_payload(&p.payload).map(|(_, s)| s)),
            Ok(Ok(_)) => continue,
            _ => return Ok(None),
        }
    }
}
