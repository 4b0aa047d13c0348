//! A KEYNOTIFY whose connection drops right after sending it, over real sockets. The broker
//! reports a connection's end to the state store on a queue of its own, not ordered with
//! the requests that connection published, so the request can reach the store after the
//! disconnection. It must not register then: a later connection with the same client id
//! would get notifications it never asked for.
//!
//! To make the late arrival happen every round rather than by chance, another client queues
//! a backlog of requests ahead of each KEYNOTIFY (the PUBACKs say they were routed, so the
//! order is fixed), and the KEYNOTIFY's connection is dropped without DISCONNECT as soon as
//! its PUBACK arrives: the disconnection reaches the store while the KEYNOTIFY still waits
//! behind the backlog.

use anyhow::{bail, Result};
use bytes::Bytes;
use edgeplane_statestore::{
    notification_topic, StateStore, StateStoreSettings, NOTIFY_TOPIC_PREFIX,
};
use edgeplane_tests::codec::{Packet, QoS};
use edgeplane_tests::{Client, TestBroker, V5};

mod common;
use common::request;

/// Connections that send a KEYNOTIFY and drop.
const ROUNDS: u16 = 30;
/// Requests queued ahead of each KEYNOTIFY.
const BACKLOG: u16 = 600;
/// Backlog requests sent before their PUBACKs are read.
const CHUNK: u16 = 100;

/// Queue `BACKLOG` GETs (answered to a topic nobody reads); returns once all are routed.
async fn backlog(loader: &mut Client) {
    for chunk in 0..BACKLOG / CHUNK {
        for i in 1..=CHUNK {
            let p = request(&[b"GET", b"filler"], chunk * CHUNK + i, "race/void");
            loader.send(&Packet::Publish(p)).await;
        }
        for _ in 0..CHUNK {
            match loader.recv().await {
                Some(Packet::PubAck(_)) => {}
                other => panic!("loader expected PUBACK, got {other:?}"),
            }
        }
    }
}

/// Send a request from `c` and return its response payload (`c` is subscribed to its
/// response topic). Responses to the rounds' KEYNOTIFYs share that topic and may still be
/// on their way (the store answers a request of an ended connection, after the backlog),
/// before or after this request's PUBACK: only the one carrying this request's correlation
/// data counts.
async fn call(c: &mut Client, args: &[&[u8]], packet_id: u16) -> Result<Bytes> {
    c.send(&Packet::Publish(request(
        args,
        packet_id,
        "racer/responses",
    )))
    .await;
    let correlation = packet_id.to_be_bytes();
    let (mut acked, mut response) = (false, None);
    while !acked || response.is_none() {
        match c.recv().await {
            Some(Packet::PubAck(a)) if a.packet_id == packet_id => acked = true,
            Some(Packet::Publish(p)) if p.topic == "racer/responses" => {
                if p.properties.correlation_data.as_deref() == Some(&correlation[..]) {
                    response = Some(p.payload);
                }
            }
            other => bail!("expected a PUBACK or a response, got {other:?}"),
        }
    }
    response.ok_or_else(|| anyhow::anyhow!("no response"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keynotify_overtaken_by_its_connections_end_registers_nothing() -> Result<()> {
    let b = TestBroker::start().await;
    let _store = StateStore::start(&b.broker, StateStoreSettings::default()).await?;
    let mut loader = b.client("loader", V5).await;

    for round in 0..ROUNDS {
        let mut racer = b.client("racer", V5).await;
        backlog(&mut loader).await;
        // Routed (PUBACK) behind the backlog; the connection ends before it is executed.
        racer
            .publish(request(
                &[b"KEYNOTIFY", b"race"],
                round + 1,
                "racer/responses",
            ))
            .await;
        racer.drop_connection();
    }

    // A new connection of the same client id that never asked for `race`. Its requests
    // are routed after every KEYNOTIFY above, and the store executes requests in order.
    // Its packet ids (from 1001) are not the rounds' (1..=ROUNDS), so their correlation
    // data tells its responses from the rounds' late ones.
    let mut fresh = b.client("racer", V5).await;
    // The response topic last: once subscribed, late responses to the rounds' requests
    // may arrive at any time, and `sub` wants its SUBACK to be the next packet.
    let hex_racer: String = "racer".bytes().map(|b| format!("{b:02X}")).collect();
    fresh
        .sub(
            &format!("{NOTIFY_TOPIC_PREFIX}{hex_racer}/#"),
            QoS::AtMostOnce,
        )
        .await;
    fresh.sub("racer/responses", QoS::AtMostOnce).await;
    assert_eq!(
        &call(&mut fresh, &[b"KEYNOTIFY", b"fence"], 1001).await?[..],
        b"+OK\r\n"
    );
    assert_eq!(
        &call(&mut fresh, &[b"SET", b"race", b"v"], 1002).await?[..],
        b"+OK\r\n"
    );
    let fence_set = request(&[b"SET", b"fence", b"v"], 1003, "racer/responses");
    fresh.send(&Packet::Publish(fence_set)).await;
    // Notifications leave the store in order: any for `race` comes before the fence's.
    let (race, fence) = (
        notification_topic("racer", b"race"),
        notification_topic("racer", b"fence"),
    );
    let mut leaked = 0;
    loop {
        match fresh.recv().await {
            Some(Packet::Publish(p)) if p.topic == fence => break,
            Some(Packet::Publish(p)) if p.topic == race => leaked += 1,
            Some(Packet::Publish(p)) if p.topic == "racer/responses" => {}
            Some(Packet::PubAck(a)) if a.packet_id == 1003 => {}
            other => bail!("expected the fence notification, got {other:?}"),
        }
    }
    assert_eq!(
        leaked, 0,
        "a KEYNOTIFY of an ended connection registered for its successor"
    );
    Ok(())
}
