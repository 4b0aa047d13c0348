//! Helpers shared by the dataflow test binaries: start dataflows on a test broker (with a
//! state store holding an `assets` dataset), wait until they deliver, run Mosquitto.

#![allow(dead_code)] // each test binary uses a different subset

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use edgeplane_codec::{Packet, QoS};
use edgeplane_dataflow::resources;
use edgeplane_dataflow::runtime::{DataflowStatus, Dataflows};
use edgeplane_statestore::{SetOptions, StateStore, StateStoreSettings};
use edgeplane_tests::{publish, Client, TestBroker, WAIT};
use tokio::process::{Child, Command};

pub async fn start_flows(b: &TestBroker, manifests: &str) -> Dataflows {
    start_flows_with_store(b, manifests).await.0
}

pub async fn start_flows_with_store(
    b: &TestBroker,
    manifests: &str,
) -> (Dataflows, edgeplane_statestore::StateStoreHandle) {
    let state = StateStore::start(&b.broker, StateStoreSettings::default())
        .await
        .expect("state store starts");
    state
        .set(
            "assets",
            "{\"asset\": \"t1\", \"location\": \"hall-3\"}\n{\"asset\": \"t2\", \"location\": \"roof\"}\n",
            SetOptions::default(),
        )
        .await
        .expect("dataset stored");
    let config = edgeplane_config::load_str("flows.yaml", manifests).expect("manifests load");
    let plans = resources::plans(&config, None).expect("dataflows compile");
    let flows = Dataflows::start(b.broker.local_factory(), Some(state.clone()), plans).await;
    (flows, state)
}

/// Publish `topic`/`payload` until something arrives on `sub` (the dataflow attaches in
/// the background); returns what arrived.
pub async fn until_flowing(
    pubc: &mut Client,
    sub: &mut Client,
    topic: &str,
    payload: &str,
) -> edgeplane_codec::Publish {
    for _ in 0..50 {
        pubc.publish(publish(topic, payload, QoS::AtLeastOnce, 1))
            .await;
        if let Some(Packet::Publish(p)) = sub.recv_within(Duration::from_millis(200)).await {
            return p;
        }
    }
    panic!("the dataflow never delivered");
}

/// Publish `payload` on `topic` until the dataflow has taken a message from its source
/// (it subscribes in the background).
pub async fn until_received(pubc: &mut Client, received: &AtomicU64, topic: &str, payload: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while received.load(Ordering::Relaxed) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dataflow never subscribed"
        );
        pubc.publish(publish(topic, payload, QoS::AtLeastOnce, 1))
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub async fn start_mosquitto(dir: &std::path::Path, port: u16) -> Child {
    start_mosquitto_with(dir, port, "allow_anonymous true\n").await
}

pub async fn start_mosquitto_with(dir: &std::path::Path, port: u16, extra: &str) -> Child {
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\n{extra}persistence true\npersistence_location {}/\nmax_queued_messages 100000\nmax_inflight_messages 100\n",
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("mosquitto runs (scripts/install-deps.sh installs it)");
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mosquitto did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

/// Stop Mosquitto the way a service manager does (it saves its sessions on SIGTERM).
pub async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill").arg(pid.to_string()).status().await;
    }
    let _ = tokio::time::timeout(WAIT, child.wait()).await;
}

/// The dataflow's problem in words, once it reports one; fails with `what` after [`WAIT`].
pub async fn problem_of(status: &DataflowStatus, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(why) = status.problem.borrow().clone() {
            return why;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
