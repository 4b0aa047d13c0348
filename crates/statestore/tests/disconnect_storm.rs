//! Thousands of clients with KEYNOTIFY registrations disconnecting at once, over real
//! sockets: every registration is dropped (none leaks because a disconnection was missed),
//! and a client that stays connected keeps its own.
//!
//! A bounded broadcast of client events (4096) once lagged in such a storm; the state
//! store then kept notifying clients that were gone. The storm here is larger than that
//! bound.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use edgeplane_statestore::{
    notification_topic, SetOptions, StateStore, StateStoreHandle, StateStoreSettings,
    NOTIFY_TOPIC_PREFIX,
};
use edgeplane_tests::codec::{Packet, Publish, QoS};
use edgeplane_tests::{Client, TestBroker, V5};

mod common;
use common::request;

/// More than the 4096 events the old broadcast held.
const CLIENTS: usize = 5_000;
/// Clients connected at the same time while the storm is set up.
const CONNECTING: usize = 50;
/// How long the broker may take to process the storm.
const SETTLE: Duration = Duration::from_secs(30);

fn keynotify(key: &str, packet_id: u16) -> Publish {
    request(
        &[b"KEYNOTIFY", key.as_bytes()],
        packet_id,
        "storm/responses",
    )
}

/// Wait until the store has handled every request routed so far. A PUBACK only says a
/// request was routed to the store's session; requests reach the store through that one
/// session in routing order, so the answer to one sent now comes after all of theirs (an
/// in-process `set` could otherwise overtake a KEYNOTIFY still on its way).
async fn barrier(b: &TestBroker) -> Result<()> {
    let mut c = b.client("barrier", V5).await;
    c.sub("storm/barrier", QoS::AtMostOnce).await;
    c.publish(request(&[b"GET", b"fence"], 1, "storm/barrier"))
        .await;
    loop {
        match tokio::time::timeout(SETTLE, c.recv()).await {
            Ok(Some(Packet::Publish(p))) if p.topic == "storm/barrier" => return Ok(()),
            Ok(Some(_)) => {}
            other => bail!("no answer to the barrier request: {other:?}"),
        }
    }
}

/// Connect `id` and register KEYNOTIFY on each of `keys` (PUBACK received for each).
async fn watcher(b: &TestBroker, id: &str, keys: &[&str]) -> Client {
    let mut c = b.client(id, V5).await;
    for (i, key) in keys.iter().enumerate() {
        c.publish(keynotify(key, i as u16 + 1)).await;
    }
    c
}

/// Set `storm` then `fence` (watched by the keeper only), and count the `storm`
/// notifications the monitor sees before the `fence` one: notifications leave the store in
/// order, so by then all of `storm`'s have arrived.
async fn storm_notifications(
    store: &StateStoreHandle,
    monitor: &mut Client,
    round: usize,
) -> Result<usize> {
    let value = format!("v{round}");
    store
        .set("storm", value.clone(), SetOptions::default())
        .await?;
    store.set("fence", value, SetOptions::default()).await?;
    let fence = notification_topic("keeper", b"fence");
    let storm_suffix = format!("/command/notify/{}", hex("storm"));
    let mut count = 0;
    loop {
        match monitor.recv().await {
            Some(Packet::Publish(p)) if p.topic == fence => return Ok(count),
            Some(Packet::Publish(p)) if p.topic.ends_with(&storm_suffix) => count += 1,
            Some(Packet::Publish(p)) => bail!("unexpected notification on {}", p.topic),
            other => bail!("monitor got {other:?} instead of notifications"),
        }
    }
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02X}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_disconnecting_at_once_lose_their_registrations() -> Result<()> {
    let b = TestBroker::start().await;
    let store = StateStore::start(&b.broker, StateStoreSettings::default()).await?;
    let mut monitor = b.client("monitor", V5).await;
    monitor
        .sub(&format!("{NOTIFY_TOPIC_PREFIX}#"), QoS::AtMostOnce)
        .await;
    let _keeper = watcher(&b, "keeper", &["storm", "fence"]).await;

    let b = std::sync::Arc::new(b);
    let mut tasks = Vec::new();
    for t in 0..CONNECTING {
        let b = std::sync::Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            let mut clients = Vec::new();
            for i in (t..CLIENTS).step_by(CONNECTING) {
                clients.push(watcher(&b, &format!("storm-{i}"), &["storm"]).await);
            }
            clients
        }));
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    for t in tasks {
        clients.extend(t.await.context("a connecting task failed")?);
    }
    barrier(&b).await?;
    assert_eq!(
        storm_notifications(&store, &mut monitor, 0).await?,
        CLIENTS + 1,
        "every client and the keeper are registered before the storm"
    );

    // All connections end together, without DISCONNECT.
    for c in clients {
        c.drop_connection();
    }
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut round = 1;
    loop {
        let seen = storm_notifications(&store, &mut monitor, round).await?;
        if seen == 1 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} registrations of disconnected clients still notified after {SETTLE:?}",
                seen - 1
            );
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And it stays so: the keeper alone is notified.
    assert_eq!(
        storm_notifications(&store, &mut monitor, round + 1).await?,
        1
    );
    Ok(())
}
