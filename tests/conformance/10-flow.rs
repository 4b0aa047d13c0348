//! §4.9 flow control: Receive Maximum, Maximum Packet Size, queue limits.
//!
//! Outbound, the broker keeps at most the subscriber's Receive Maximum (capped by
//! `clients.max_receive_maximum`) QoS 1/2 messages unacknowledged and never sends a packet
//! above the subscriber's Maximum Packet Size. Inbound, it advertises its own Receive Maximum
//! and Maximum Packet Size in CONNACK and disconnects clients that exceed them. Messages
//! waiting for a subscriber are bounded by `clients.subscriber_queue_limit`.

use edgeplane_broker::settings::{QueueLimit, QueueStrategy};
use edgeplane_broker::Stats;
use edgeplane_tests::codec::{Ack, Packet, Properties, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;

/// An MQTT 5 client connected with the given CONNECT properties.
async fn client_with(b: &TestBroker, id: &str, properties: Properties) -> Client {
    let mut c = Client::open(b.addr, V5).await;
    let mut req = connect(id, V5);
    req.properties = properties;
    let ack = c.connect(req).await;
    assert_eq!(ack.code, 0, "CONNACK for {id}");
    c
}

fn receive_maximum(n: u16) -> Properties {
    Properties {
        receive_maximum: Some(n),
        ..Properties::default()
    }
}

/// Publish `n` messages "0", "1", … on `topic` at `qos` from a fresh MQTT 5 client.
async fn publish_numbered(b: &TestBroker, topic: &str, qos: QoS, n: u16) {
    let mut publ = b.client("publisher", V5).await;
    for i in 0..n {
        publ.publish(publish(topic, &i.to_string(), qos, i + 1))
            .await;
    }
    publ.disconnect().await;
}

fn payload_str(p: &edgeplane_tests::codec::Publish) -> String {
    String::from_utf8_lossy(&p.payload).into_owned()
}

/// [MQTT-3.3.4-7] [MQTT-3.3.4-8] With Receive Maximum 2 an unacknowledging subscriber gets
/// exactly two QoS 1 messages; the third comes only after it PUBACKs one.
#[tokio::test]
async fn receive_maximum_limits_qos1_in_flight() {
    let b = TestBroker::start().await;
    let mut sub = client_with(&b, "sub", receive_maximum(2)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    publish_numbered(&b, "t", QoS::AtLeastOnce, 3).await;
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!(
        (payload_str(&first), payload_str(&second)),
        ("0".into(), "1".into())
    );
    sub.expect_nothing().await;
    sub.send(&Packet::PubAck(Ack::new(
        first.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    let third = sub.expect_publish().await;
    assert_eq!(payload_str(&third), "2");
    sub.expect_nothing().await;
}

/// [MQTT-3.3.4-7] [MQTT-3.3.4-8] For QoS 2 the window slot is freed at PUBCOMP, not at
/// PUBREC: two messages in flight, the third only after the first flow completes.
#[tokio::test]
async fn receive_maximum_limits_qos2_until_pubcomp() {
    let b = TestBroker::start().await;
    let mut sub = client_with(&b, "sub", receive_maximum(2)).await;
    sub.sub("t", QoS::ExactlyOnce).await;
    publish_numbered(&b, "t", QoS::ExactlyOnce, 3).await;
    let first = sub.expect_publish().await;
    let second = sub.expect_publish().await;
    assert_eq!(
        (payload_str(&first), payload_str(&second)),
        ("0".into(), "1".into())
    );
    sub.expect_nothing().await;
    sub.send(&Packet::PubRec(Ack::new(
        first.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    match sub.recv().await {
        Some(Packet::PubRel(a)) => assert_eq!(a.packet_id, first.packet_id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.expect_nothing().await;
    sub.send(&Packet::PubComp(Ack::new(
        first.packet_id,
        ReasonCode::SUCCESS,
    )))
    .await;
    let third = sub.expect_publish().await;
    assert_eq!(payload_str(&third), "2");
}

/// §3.1.2.11.3 `clients.max_receive_maximum` caps the Receive Maximum a client asks for: a
/// client asking for 10 with a cap of 1 gets one QoS 1 message at a time.
#[tokio::test]
async fn max_receive_maximum_caps_the_client_value() {
    let b = TestBroker::with(|s| s.clients.max_receive_maximum = 1).await;
    let mut sub = client_with(&b, "sub", receive_maximum(10)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    publish_numbered(&b, "t", QoS::AtLeastOnce, 3).await;
    for i in 0..3 {
        let p = sub.expect_publish().await;
        assert_eq!(payload_str(&p), i.to_string());
        sub.expect_nothing().await;
        sub.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
            .await;
    }
}

/// [MQTT-3.3.4-7] A client that sends no Receive Maximum gets many QoS 1 messages without
/// acknowledging (the default is 65,535), so the window above is really the client's value.
#[tokio::test]
async fn default_receive_maximum_does_not_throttle() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    publish_numbered(&b, "t", QoS::AtLeastOnce, 20).await;
    for i in 0..20 {
        assert_eq!(payload_str(&sub.expect_publish().await), i.to_string());
    }
}

/// §3.2.2.3.3 The broker advertises its Receive Maximum in CONNACK; [MQTT-3.3.4-9] a client
/// with more unreleased QoS 2 PUBLISHes than that gets DISCONNECT 0x93.
#[tokio::test]
async fn inbound_receive_maximum_exceeded() {
    let b = TestBroker::with(|s| s.receive_maximum = 2).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("pub", V5)).await;
    assert_eq!(
        ack.properties.receive_maximum,
        Some(2),
        "CONNACK Receive Maximum"
    );
    for id in 1..=2 {
        c.send(&Packet::Publish(publish("t", "x", QoS::ExactlyOnce, id)))
            .await;
        match c.recv().await {
            Some(Packet::PubRec(a)) => {
                assert_eq!((a.packet_id, a.reason), (id, ReasonCode::SUCCESS))
            }
            other => panic!("expected PUBREC {id}, got {other:?}"),
        }
    }
    c.send(&Packet::Publish(publish("t", "x", QoS::ExactlyOnce, 3)))
        .await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)
    );
}

/// [MQTT-3.3.4-9] Releasing a QoS 2 message (PUBREL) frees its slot: a client that stays
/// within the broker's Receive Maximum keeps its connection.
#[tokio::test]
async fn inbound_receive_maximum_released_by_pubrel() {
    let b = TestBroker::with(|s| s.receive_maximum = 2).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtMostOnce).await;
    let mut c = b.client("pub", V5).await;
    for id in 1..=5 {
        c.publish(publish("t", &id.to_string(), QoS::ExactlyOnce, id))
            .await;
    }
    for id in 1..=5 {
        assert_eq!(payload_str(&sub.expect_publish().await), id.to_string());
    }
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

/// §3.2.2.3.3 The broker advertises its default Receive Maximum (100, as Azure IoT
/// Operations) in CONNACK, and a setting of 65,535 (the protocol default) leaves it out.
#[tokio::test]
async fn default_receive_maximum_advertised() {
    let b = TestBroker::start().await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("c", V5)).await;
    assert_eq!(ack.properties.receive_maximum, Some(100));
    let b = TestBroker::with(|s| s.receive_maximum = u16::MAX).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("c", V5)).await;
    assert_eq!(ack.properties.receive_maximum, None);
}

/// §3.2.2.3.6 The broker advertises `clients.max_packet_size` in CONNACK; [MQTT-3.1.2-24] a
/// packet above it gets DISCONNECT 0x95 and the connection is closed, while one exactly at
/// the limit is accepted.
#[tokio::test]
async fn inbound_packet_too_large_v5() {
    let b = TestBroker::with(|s| s.clients.max_packet_size = 128).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("pub", V5)).await;
    assert_eq!(
        ack.properties.maximum_packet_size,
        Some(128),
        "CONNACK Maximum Packet Size"
    );
    // QoS 1 PUBLISH on "t": 2 header + 3 topic + 2 id + 1 properties + payload.
    let at_limit = publish("t", &"a".repeat(128 - 8), QoS::AtLeastOnce, 1);
    assert_eq!(codec::publish_len(&at_limit, V5), 128);
    c.publish(at_limit).await;
    assert_eq!(sub.receive_and_ack().await.payload.len(), 120);
    c.send(&Packet::Publish(publish(
        "t",
        &"b".repeat(121),
        QoS::AtLeastOnce,
        2,
    )))
    .await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PACKET_TOO_LARGE));
    sub.expect_nothing().await;
    assert_broker_serves(&b).await;
}

/// [MQTT-3.1.2-24] (3.1.1: the server closes the connection on a packet it will not process)
/// An MQTT 3.1.1 client sending a packet above `clients.max_packet_size` is disconnected.
#[tokio::test]
async fn inbound_packet_too_large_v311() {
    let b = TestBroker::with(|s| s.clients.max_packet_size = 128).await;
    let mut c = b.client("pub", V311).await;
    c.send(&Packet::Publish(publish(
        "t",
        &"b".repeat(200),
        QoS::AtMostOnce,
        0,
    )))
    .await;
    assert_eq!(
        c.expect_closed().await,
        None,
        "3.1.1 has no DISCONNECT from the server"
    );
}

/// A subscriber with Maximum Packet Size `max` and Receive Maximum `window`.
async fn small_client(b: &TestBroker, id: &str, max: u32, window: u16) -> Client {
    let props = Properties {
        maximum_packet_size: Some(max),
        receive_maximum: Some(window),
        ..Properties::default()
    };
    client_with(b, id, props).await
}

/// [MQTT-3.1.2-25] A message larger than the subscriber's Maximum Packet Size is not sent
/// (for QoS 0 it is simply dropped); later small messages still arrive and the drop is counted.
#[tokio::test]
async fn outbound_oversize_qos0_dropped() {
    let b = TestBroker::start().await;
    let mut sub = small_client(&b, "sub", 100, 10).await;
    sub.sub("t", QoS::AtMostOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("t", &"x".repeat(200), QoS::AtMostOnce, 0))
        .await;
    publ.publish(publish("t", "small", QoS::AtMostOnce, 0))
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"small");
    sub.expect_nothing().await;
    assert_eq!(Stats::get(&b.broker.stats().dropped_oversize), 1);
}

/// [MQTT-3.1.2-25] For QoS 1 and 2 the oversize message is discarded as if sent, so its
/// in-flight slot is released: with Receive Maximum 1 the following messages still flow. A
/// message exactly at the subscriber's limit is delivered.
#[tokio::test]
async fn outbound_oversize_releases_in_flight_slot() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let b = TestBroker::start().await;
        let mut sub = small_client(&b, "sub", 100, 1).await;
        sub.sub("t", qos).await;
        let mut publ = b.client("pub", V5).await;
        // Delivered PUBLISH on "t": 2 header + 3 topic + 2 id + 1 properties + payload.
        let exact = "e".repeat(100 - 8);
        let payloads = [
            "x".repeat(101 - 8),
            "small".to_owned(),
            "y".repeat(300),
            exact.clone(),
            "last".to_owned(),
        ];
        for (i, payload) in payloads.iter().enumerate() {
            publ.publish(publish("t", payload, qos, i as u16 + 1)).await;
        }
        for want in ["small", exact.as_str(), "last"] {
            let p = sub.receive_and_ack().await;
            assert_eq!(payload_str(&p), want, "{qos:?}");
        }
        sub.expect_nothing().await;
        assert_eq!(Stats::get(&b.broker.stats().dropped_oversize), 2, "{qos:?}");
    }
}

/// Connect `id` with a persistent session (expiry 300 s), subscribe QoS 1 to `t` and leave.
async fn offline_subscriber(b: &TestBroker, id: &str, v: ProtocolVersion) {
    let mut c = Client::open(b.addr, v).await;
    c.connect(persistent(id, v)).await;
    c.sub("t", QoS::AtLeastOnce).await;
    c.disconnect().await;
}

fn persistent(id: &str, v: ProtocolVersion) -> edgeplane_tests::codec::Connect {
    let mut req = connect(id, v);
    req.clean_start = false;
    if v == V5 {
        req.properties.session_expiry_interval = Some(300);
    }
    req
}

/// Reconnect a persistent session and collect the payloads of every queued message.
async fn reconnect_and_drain(b: &TestBroker, id: &str, v: ProtocolVersion) -> Vec<String> {
    let mut c = Client::open(b.addr, v).await;
    let ack = c.connect(persistent(id, v)).await;
    assert!(ack.session_present, "session of {id} kept");
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(QUIET).await {
        let Packet::Publish(p) = p else {
            panic!("expected PUBLISH, got {p:?}")
        };
        c.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
            .await;
        got.push(payload_str(&p));
    }
    got
}

/// `clients.subscriber_queue_limit` with DropOldest: an offline subscriber's queue keeps the
/// newest `length` messages; the drops are counted in `dropped_queue_full`. Both versions.
#[tokio::test]
async fn queue_limit_drop_oldest_keeps_newest() {
    for v in [V5, V311] {
        let b = TestBroker::with(|s| {
            s.clients.subscriber_queue_limit = Some(QueueLimit {
                length: 5,
                max_bytes: None,
                strategy: QueueStrategy::DropOldest,
            })
        })
        .await;
        offline_subscriber(&b, "sub", v).await;
        publish_numbered(&b, "t", QoS::AtLeastOnce, 10).await;
        let got = reconnect_and_drain(&b, "sub", v).await;
        assert_eq!(got, ["5", "6", "7", "8", "9"], "{v:?}");
        assert_eq!(Stats::get(&b.broker.stats().dropped_queue_full), 5, "{v:?}");
    }
}

/// `clients.subscriber_queue_limit` with strategy None never drops (as in Azure IoT
/// Operations): all ten messages arrive, in order, and nothing is counted as dropped.
#[tokio::test]
async fn queue_limit_strategy_none_never_drops() {
    let b = TestBroker::with(|s| {
        s.clients.subscriber_queue_limit = Some(QueueLimit {
            length: 5,
            max_bytes: None,
            strategy: QueueStrategy::None,
        })
    })
    .await;
    offline_subscriber(&b, "sub", V5).await;
    publish_numbered(&b, "t", QoS::AtLeastOnce, 10).await;
    let got = reconnect_and_drain(&b, "sub", V5).await;
    let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(Stats::get(&b.broker.stats().dropped_queue_full), 0);
}

/// `clients.subscriber_queue_limit` also bounds an online subscriber whose Receive Maximum
/// holds messages back: with window 1 and DropOldest 5, one message is in flight, the five
/// newest wait, the rest are dropped.
#[tokio::test]
async fn queue_limit_applies_to_slow_online_subscriber() {
    let b = TestBroker::with(|s| {
        s.clients.subscriber_queue_limit = Some(QueueLimit {
            length: 5,
            max_bytes: None,
            strategy: QueueStrategy::DropOldest,
        })
    })
    .await;
    let mut sub = client_with(&b, "sub", receive_maximum(1)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    publish_numbered(&b, "t", QoS::AtLeastOnce, 10).await;
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(payload_str(&sub.receive_and_ack().await));
    }
    sub.expect_nothing().await;
    assert_eq!(got, ["0", "5", "6", "7", "8", "9"]);
    assert_eq!(Stats::get(&b.broker.stats().dropped_queue_full), 4);
}
