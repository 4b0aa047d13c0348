//! §3.3.2.3.3 Message Expiry Interval: forwarded minus the time a message waited, expired
//! messages dropped (queued and retained), and the broker's `max_message_expiry_secs` cap.

use std::time::Duration;

use edgeplane_tests::codec::{Connect, Publish, QoS};
use edgeplane_tests::*;

/// A CONNECT that keeps the session for a minute after the connection ends.
fn persistent(id: &str) -> Connect {
    let mut c = connect(id, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c
}

/// Connect `id` with a persistent session, subscribe to `filter` at QoS 1 and go offline.
async fn offline_subscriber(b: &TestBroker, id: &str, filter: &str) {
    let mut c = Client::open(b.addr, V5).await;
    assert_eq!(c.connect(persistent(id)).await.code, 0);
    c.sub(filter, QoS::AtLeastOnce).await;
    c.disconnect().await;
    // Let the broker detach the session, so what follows is queued rather than sent.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn reconnect(b: &TestBroker, id: &str) -> Client {
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(persistent(id)).await;
    assert!(ack.session_present, "the session of {id} survived");
    c
}

fn expiring(topic: &str, payload: &str, secs: u32, id: u16) -> Publish {
    let mut p = publish(topic, payload, QoS::AtLeastOnce, id);
    p.properties.message_expiry_interval = Some(secs);
    p
}

/// [MQTT-3.3.2-6] The forwarded Message Expiry Interval is the received value minus the time
/// the message waited in the broker: sent live it is (about) unchanged; queued for an
/// offline session for 2 s it is at most the original minus 2. A message without expiry is
/// forwarded without one.
#[tokio::test]
async fn forwarded_expiry_reduced_by_time_queued() {
    let b = TestBroker::start().await;
    let mut live = b.client("live", V5).await;
    live.sub("exp/t", QoS::AtLeastOnce).await;
    offline_subscriber(&b, "away", "exp/t").await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(expiring("exp/t", "e", 30, 1)).await;
    publ.publish(publish("exp/t", "forever", QoS::AtLeastOnce, 2))
        .await;

    let p = live.receive_and_ack().await;
    let live_left = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((29..=30).contains(&live_left), "live delivery: {live_left}");
    assert_eq!(
        live.receive_and_ack()
            .await
            .properties
            .message_expiry_interval,
        None
    );

    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut back = reconnect(&b, "away").await;
    let p = back.receive_and_ack().await;
    assert_eq!(&p.payload[..], b"e");
    let left = p
        .properties
        .message_expiry_interval
        .expect("expiry forwarded");
    assert!((1..=28).contains(&left), "after 2 s queued: {left}");
    let p = back.receive_and_ack().await;
    assert_eq!(
        (&p.payload[..], p.properties.message_expiry_interval),
        (&b"forever"[..], None)
    );
}

/// [MQTT-3.3.2-5] A queued message whose expiry passes before delivery starts is deleted:
/// the subscriber that comes back after it expired gets only the unexpired message.
#[tokio::test]
async fn expired_message_never_delivered() {
    let b = TestBroker::start().await;
    offline_subscriber(&b, "away", "exp/t").await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(expiring("exp/t", "short", 1, 1)).await;
    publ.publish(expiring("exp/t", "long", 60, 2)).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut back = reconnect(&b, "away").await;
    assert_eq!(&back.receive_and_ack().await.payload[..], b"long");
    back.expect_nothing().await;
}

/// [MQTT-3.3.2-5] §3.3.1.3 A retained message with an expiry is sent to subscribers (with
/// the remaining interval) until it expires, and not after.
#[tokio::test]
async fn retained_message_expires() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    let mut p = expiring("exp/r", "brief", 1, 1);
    p.retain = true;
    publ.publish(p).await;
    let mut early = b.client("early", V5).await;
    early.sub("exp/r", QoS::AtLeastOnce).await;
    let got = early.receive_and_ack().await;
    assert!(got.retain);
    assert_eq!(got.properties.message_expiry_interval, Some(1));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut late = b.client("late", V5).await;
    late.sub("exp/r", QoS::AtLeastOnce).await;
    late.sub("exp/#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
}

/// §3.3.2.3.3 `max_message_expiry_secs` caps the Message Expiry Interval: a larger value is
/// forwarded as at most the cap, a smaller one is kept, and a message without expiry gets
/// the cap.
#[tokio::test]
async fn max_message_expiry_caps_interval() {
    let b = TestBroker::with(|s| s.clients.max_message_expiry_secs = Some(5)).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("cap/t", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(expiring("cap/t", "big", 3600, 1)).await;
    publ.publish(expiring("cap/t", "small", 2, 2)).await;
    publ.publish(publish("cap/t", "none", QoS::AtLeastOnce, 3))
        .await;
    for (payload, range) in [("big", 4..=5), ("small", 1..=2), ("none", 4..=5)] {
        let p = sub.receive_and_ack().await;
        assert_eq!(p.payload, payload.as_bytes());
        let left = p.properties.message_expiry_interval.expect("expiry set");
        assert!(range.contains(&left), "{payload}: {left}");
    }
}

/// §3.3.2.3.3 The cap also makes messages expire: a message without its own expiry, queued
/// for an offline session longer than the cap, is not delivered.
#[tokio::test]
async fn max_message_expiry_expires_queued_messages() {
    let b = TestBroker::with(|s| s.clients.max_message_expiry_secs = Some(1)).await;
    offline_subscriber(&b, "away", "cap/t").await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("cap/t", "capped", QoS::AtLeastOnce, 1))
        .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut back = reconnect(&b, "away").await;
    back.expect_nothing().await;
}
