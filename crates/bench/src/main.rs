//! `edgeplane-bench`: drives any MQTT broker over loopback and reports what it measured.
//!
//! Scenarios:
//! - `idle` opens N MQTT connections (CONNECT, wait for CONNACK), spread over several
//!   127.0.0.x source addresses, and holds them, so the caller can read the broker's resident
//!   memory per idle connection.
//! - `fan-in` (N → 1), `fan-out` (1 → N), `pairwise` (N → N on distinct topics), `shared`
//!   (N → M consumers of a shared subscription) and `subscriptions` (many distinct topics):
//!   closed loop or open loop (`--rate`), QoS 0/1/2, any payload size; reports deliveries
//!   per second, MB/s, loss, end-to-end latency percentiles and, with `--broker-pid`, the
//!   broker's CPU seconds and peak RSS (see `flow/`).
//! - `statestore`: SET/GET requests to the state store through MQTT, pipelined; operations
//!   per second and latency percentiles.
//! - `stalled-subscriber`: one subscriber stops reading while publishers continue; samples
//!   the broker's RSS every 0.5 s into a CSV and an SVG plot against the configured bound.
//! - `crash`: kill -9 and restart an Edgeplane broker under a mixed QoS 1/2 load of
//!   persistent sessions, and report acknowledged messages lost and QoS 2 duplicates.

mod crash;
mod flow;
mod stalled;
mod statestore;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::BytesMut;
use clap::{Parser, Subcommand};
use edgeplane_codec::{Connect, Packet, Properties, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser)]
#[command(name = "edgeplane-bench", about = "MQTT broker load generator")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open idle connections and hold them.
    Idle {
        /// Broker address.
        #[arg(long, default_value = "127.0.0.1:1883")]
        broker: SocketAddr,
        /// How many connections.
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Spread source addresses over 127.0.0.1 .. 127.0.0.N (past 64k connections).
        #[arg(long, default_value_t = 1)]
        sources: u8,
        /// How long to hold the connections once all are open.
        #[arg(long, default_value_t = 10)]
        hold_secs: u64,
        /// Connections opened at once.
        #[arg(long, default_value_t = 200)]
        parallel: usize,
        /// Keep alive in CONNECT, seconds (0: none; rumqttd refuses 0).
        #[arg(long, default_value_t = 0)]
        keep_alive: u16,
    },
    /// N publishers → 1 subscriber on one topic.
    FanIn(flow::FlowArgs),
    /// 1 publisher → N subscribers on one topic.
    FanOut(flow::FlowArgs),
    /// N publishers → N subscribers, one topic per pair.
    Pairwise(flow::FlowArgs),
    /// N publishers → M consumers of one shared subscription (`$share/bench/...`).
    Shared(flow::FlowArgs),
    /// 1 publisher round-robin over N distinct topics, each subscribed once, spread over
    /// M subscriber connections.
    Subscriptions(flow::FlowArgs),
    /// State store requests through MQTT (SET/GET), pipelined.
    Statestore(statestore::StateStoreArgs),
    /// kill -9 / restart an Edgeplane broker under load; check nothing acknowledged is lost.
    Crash(crash::CrashArgs),
    /// One subscriber stops reading while publishers continue; plot the broker's RSS.
    StalledSubscriber(stalled::StalledArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Idle {
            broker,
            connections,
            sources,
            hold_secs,
            parallel,
            keep_alive,
        } => {
            let hold = Duration::from_secs(hold_secs);
            idle(
                broker,
                connections,
                sources.max(1),
                hold,
                parallel,
                keep_alive,
            )
            .await
        }
        Scenario::FanIn(args) => flow::run(args, flow::Shape::FanIn).await,
        Scenario::FanOut(args) => flow::run(args, flow::Shape::FanOut).await,
        Scenario::Pairwise(args) => flow::run(args, flow::Shape::Pairwise).await,
        Scenario::Shared(args) => flow::run(args, flow::Shape::Shared).await,
        Scenario::Subscriptions(args) => flow::run(args, flow::Shape::Subscriptions).await,
        Scenario::Statestore(args) => statestore::run(args).await,
        Scenario::Crash(args) => crash::run(args).await,
        Scenario::StalledSubscriber(args) => stalled::run(args).await,
    }
}

async fn idle(
    broker: SocketAddr,
    n: usize,
    sources: u8,
    hold: Duration,
    parallel: usize,
    keep_alive: u16,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut next = 0usize;
    while next < n {
        let batch = parallel.min(n - next);
        let mut tasks = Vec::with_capacity(batch);
        for i in next..next + batch {
            let source = Ipv4Addr::new(127, 0, 0, 1 + (i % usize::from(sources)) as u8);
            tasks.push(tokio::spawn(open(
                broker,
                source,
                format!("idle-{i}"),
                keep_alive,
            )));
        }
        for t in tasks {
            conns.push(t.await.context("connection task")??);
        }
        next += batch;
    }
    let elapsed = start.elapsed();
    println!(
        "{{\"scenario\":\"idle\",\"connections\":{},\"open_secs\":{:.2},\"connects_per_sec\":{:.0}}}",
        conns.len(),
        elapsed.as_secs_f64(),
        conns.len() as f64 / elapsed.as_secs_f64()
    );
    println!("holding {} connections for {:?}", conns.len(), hold);
    tokio::time::sleep(hold).await;
    Ok(())
}

async fn open(
    broker: SocketAddr,
    source: Ipv4Addr,
    client_id: String,
    keep_alive: u16,
) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let mut stream = socket
        .connect(broker)
        .await
        .with_context(|| format!("connect {broker}"))?;
    let connect = Connect {
        protocol: ProtocolVersion::V311,
        clean_start: true,
        keep_alive,
        client_id,
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    };
    let mut out = BytesMut::new();
    edgeplane_codec::encode(
        &Packet::Connect(Box::new(connect)),
        ProtocolVersion::V311,
        &mut out,
    );
    stream.write_all(&out).await?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(30), stream.read_exact(&mut ack))
        .await
        .context("CONNACK timeout")??;
    if ack != [0x20, 0x02, 0x00, 0x00] {
        bail!("connection refused: CONNACK {ack:02x?}");
    }
    Ok(stream)
}
