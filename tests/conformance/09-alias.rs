//! §3.3.2.3.4 topic aliases in both directions.
//!
//! Inbound: a client teaches the broker an alias with topic + alias, then publishes with an
//! empty topic; aliases above the broker's Topic Alias Maximum, alias 0 and unknown aliases
//! end the connection. Outbound: the broker aliases topics for a subscriber that asked for
//! them (Topic Alias Maximum in CONNECT), never above its maximum, and never for one that did
//! not.

use edgeplane_tests::codec::{Packet, Properties, Publish, QoS, ReasonCode};
use edgeplane_tests::*;

/// A PUBLISH carrying a Topic Alias (the topic may be empty to use the alias).
fn aliased(topic: &str, alias: u16, payload: &str, qos: QoS, packet_id: u16) -> Publish {
    let mut p = publish(topic, payload, qos, packet_id);
    p.properties.topic_alias = Some(alias);
    p
}

/// An MQTT 5 client that accepts up to `max` topic aliases from the broker.
async fn alias_client(b: &TestBroker, id: &str, max: u16) -> Client {
    let mut c = Client::open(b.addr, V5).await;
    let mut req = connect(id, V5);
    req.properties = Properties {
        topic_alias_maximum: Some(max),
        ..Properties::default()
    };
    let ack = c.connect(req).await;
    assert_eq!(ack.code, 0, "CONNACK for {id}");
    c
}

/// [MQTT-3.3.2-12] A PUBLISH with an empty topic and a known alias is delivered on the topic
/// the alias was set to; the publisher's alias is not forwarded [MQTT-3.3.2-7].
#[tokio::test]
async fn inbound_alias_stands_for_its_topic() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("a/#", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(aliased("a/b", 1, "first", QoS::AtLeastOnce, 1))
        .await;
    publ.publish(aliased("", 1, "second", QoS::AtLeastOnce, 2))
        .await;
    publ.publish(aliased("", 1, "third", QoS::AtMostOnce, 0))
        .await;
    for payload in ["first", "second", "third"] {
        let p = sub.receive_and_ack().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("a/b", payload.as_bytes())
        );
        assert_eq!(
            p.properties.topic_alias, None,
            "the publisher's alias must not reach subscribers"
        );
    }
    sub.expect_nothing().await;
}

/// [MQTT-3.3.2-12] §3.3.2.3.4: a PUBLISH with a topic and an alias already in use replaces the
/// mapping; later empty-topic PUBLISHes use the new topic.
#[tokio::test]
async fn inbound_alias_can_be_remapped() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("a/#", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(aliased("a/b", 3, "1", QoS::AtLeastOnce, 1))
        .await;
    publ.publish(aliased("a/c", 3, "2", QoS::AtLeastOnce, 2))
        .await;
    publ.publish(aliased("", 3, "3", QoS::AtLeastOnce, 3)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let p = sub.receive_and_ack().await;
        seen.push((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
    }
    let want = [("a/b", "1"), ("a/c", "2"), ("a/c", "3")];
    assert_eq!(seen, want.map(|(t, p)| (t.to_owned(), p.to_owned())));
}

/// §3.2.2.3.8 The broker advertises its Topic Alias Maximum in CONNACK and accepts aliases up
/// to it; [MQTT-3.3.2-9] one above it gets DISCONNECT 0x94 and the connection is closed.
#[tokio::test]
async fn inbound_alias_above_maximum_is_refused() {
    let b = TestBroker::with(|s| s.topic_alias_maximum = 5).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("pub", V5)).await;
    assert_eq!(
        ack.properties.topic_alias_maximum,
        Some(5),
        "CONNACK Topic Alias Maximum"
    );
    c.publish(aliased("t", 5, "at max", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"at max");
    c.send(&Packet::Publish(aliased(
        "t",
        6,
        "above",
        QoS::AtLeastOnce,
        2,
    )))
    .await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
    sub.expect_nothing().await;
}

/// §3.2.2.3.8 With Topic Alias Maximum 0 the broker sends none in CONNACK (absent means 0) and
/// refuses any alias with DISCONNECT 0x94 [MQTT-3.3.2-9].
#[tokio::test]
async fn inbound_alias_refused_when_broker_accepts_none() {
    let b = TestBroker::with(|s| s.topic_alias_maximum = 0).await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect("pub", V5)).await;
    assert_eq!(
        ack.properties.topic_alias_maximum, None,
        "no Topic Alias Maximum means 0"
    );
    c.send(&Packet::Publish(aliased("t", 1, "x", QoS::AtMostOnce, 0)))
        .await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
}

/// [MQTT-3.3.2-8] Topic Alias 0 is not permitted: DISCONNECT 0x94 (Topic Alias invalid).
#[tokio::test]
async fn inbound_alias_zero_is_refused() {
    let b = TestBroker::start().await;
    let mut c = b.client("pub", V5).await;
    // Topic "t", QoS 0, properties: Topic Alias (0x23) = 0.
    c.send_raw(&[0x30, 0x08, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x00, b'x'])
        .await;
    assert_eq!(
        c.expect_closed().await,
        Some(ReasonCode::TOPIC_ALIAS_INVALID)
    );
    assert_broker_serves(&b).await;
}

/// §3.3.2.3.4 An empty topic with an alias the client never set is a Protocol Error:
/// DISCONNECT 0x82, and nothing is delivered.
#[tokio::test]
async fn inbound_unknown_alias_is_a_protocol_error() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("#", QoS::AtLeastOnce).await;
    let mut c = b.client("pub", V5).await;
    c.publish(aliased("a", 1, "known", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"known");
    c.send(&Packet::Publish(aliased(
        "",
        2,
        "unknown",
        QoS::AtLeastOnce,
        2,
    )))
    .await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
    sub.expect_nothing().await;
}

/// [MQTT-3.3.2-7] Alias mappings belong to one network connection: after reconnecting (even
/// to the same session) an alias set before is unknown.
#[tokio::test]
async fn inbound_aliases_do_not_survive_reconnect() {
    let b = TestBroker::start().await;
    let mut req = connect("pub", V5);
    req.clean_start = false;
    req.properties.session_expiry_interval = Some(60);
    let mut c = Client::open(b.addr, V5).await;
    c.connect(req.clone()).await;
    c.publish(aliased("a", 1, "x", QoS::AtLeastOnce, 1)).await;
    c.disconnect().await;
    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(req).await;
    assert!(ack.session_present);
    c.send(&Packet::Publish(aliased("", 1, "y", QoS::AtLeastOnce, 2)))
        .await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
}

/// [MQTT-3.3.2-12] Outbound: a subscriber that accepts aliases gets the first message on a
/// topic with the topic and an alias, later ones with an empty topic and the same alias; a
/// second topic gets another alias, each within the client's maximum [MQTT-3.3.2-10].
#[tokio::test]
async fn outbound_alias_replaces_repeated_topic() {
    let b = TestBroker::start().await;
    let mut sub = alias_client(&b, "sub", 10).await;
    sub.sub("a/#", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    for (i, topic) in ["a/b", "a/b", "a/c", "a/b", "a/c"].iter().enumerate() {
        publ.publish(publish(
            topic,
            &i.to_string(),
            QoS::AtLeastOnce,
            i as u16 + 1,
        ))
        .await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(sub.receive_and_ack().await);
    }
    let alias_b = got[0]
        .properties
        .topic_alias
        .expect("first a/b carries an alias");
    let alias_c = got[2]
        .properties
        .topic_alias
        .expect("first a/c carries an alias");
    assert!((1..=10).contains(&alias_b) && (1..=10).contains(&alias_c));
    assert_ne!(alias_b, alias_c, "two topics, two aliases");
    assert_eq!(
        got[0].topic, "a/b",
        "the first use of an alias carries the topic"
    );
    assert_eq!(got[2].topic, "a/c");
    for (i, alias) in [(1, alias_b), (3, alias_b), (4, alias_c)] {
        assert_eq!(got[i].topic, "", "message {i} should use the alias alone");
        assert_eq!(got[i].properties.topic_alias, Some(alias), "message {i}");
    }
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [b"0", b"1", b"2", b"3", b"4"]);
}

/// [MQTT-3.3.2-10] The broker never sends an alias above the client's Topic Alias Maximum:
/// with maximum 2 and three topics, the third is always sent in full without an alias.
#[tokio::test]
async fn outbound_alias_never_above_client_maximum() {
    let b = TestBroker::start().await;
    let mut sub = alias_client(&b, "sub", 2).await;
    sub.sub("t/#", QoS::AtMostOnce).await;
    let mut publ = b.client("pub", V5).await;
    let topics = ["t/1", "t/2", "t/3", "t/3", "t/1", "t/2", "t/3"];
    for (i, topic) in topics.iter().enumerate() {
        publ.publish(publish(
            topic,
            &i.to_string(),
            QoS::AtLeastOnce,
            i as u16 + 1,
        ))
        .await;
    }
    let mut aliases = std::collections::HashMap::new();
    for (i, topic) in topics.iter().enumerate() {
        let p = sub.expect_publish().await;
        assert_eq!(&p.payload[..], i.to_string().as_bytes());
        if let Some(a) = p.properties.topic_alias {
            assert!(
                (1..=2).contains(&a),
                "alias {a} above the client's maximum 2"
            );
        }
        if *topic == "t/3" {
            assert_eq!(
                (p.topic.as_str(), p.properties.topic_alias),
                ("t/3", None),
                "message {i}"
            );
            continue;
        }
        let alias = p
            .properties
            .topic_alias
            .expect("t/1 and t/2 fit in two aliases");
        match aliases.insert(*topic, alias) {
            None => assert_eq!(
                p.topic, *topic,
                "first use of alias {alias} carries the topic"
            ),
            Some(prev) => {
                assert_eq!(prev, alias, "{topic} keeps its alias");
                assert_eq!(
                    p.topic, "",
                    "message {i} on {topic} should use the alias alone"
                );
            }
        }
    }
}

/// [MQTT-3.3.2-11] [MQTT-3.1.2-26] A subscriber that sent no Topic Alias Maximum (or 0), or
/// speaks MQTT 3.1.1, never receives an alias: every PUBLISH carries its full topic.
#[tokio::test]
async fn outbound_no_alias_without_client_maximum() {
    let b = TestBroker::start().await;
    let mut absent = b.client("absent", V5).await;
    let mut zero = alias_client(&b, "zero", 0).await;
    let mut old = b.client("old", V311).await;
    for c in [&mut absent, &mut zero, &mut old] {
        c.sub("t/#", QoS::AtLeastOnce).await;
    }
    let mut publ = b.client("pub", V5).await;
    for i in 0..3u16 {
        publ.publish(publish("t/x", "p", QoS::AtLeastOnce, i + 1))
            .await;
    }
    for (name, c) in [
        ("absent", &mut absent),
        ("zero", &mut zero),
        ("3.1.1", &mut old),
    ] {
        for i in 0..3 {
            let p = c.receive_and_ack().await;
            assert_eq!(p.topic, "t/x", "{name}: message {i} must carry its topic");
            assert_eq!(p.properties.topic_alias, None, "{name}: message {i}");
        }
    }
}

/// [MQTT-3.3.2-12] [MQTT-3.1.2-25] A message dropped because it is too large for the
/// subscriber does not teach it an alias: the next message on that topic carries the topic.
#[tokio::test]
async fn outbound_alias_not_taught_by_dropped_message() {
    let b = TestBroker::start().await;
    let mut sub = Client::open(b.addr, V5).await;
    let mut req = connect("sub", V5);
    req.properties.topic_alias_maximum = Some(5);
    req.properties.maximum_packet_size = Some(64);
    sub.connect(req).await;
    sub.sub("t/#", QoS::AtMostOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("t/x", &"x".repeat(100), QoS::AtLeastOnce, 1))
        .await;
    publ.publish(publish("t/x", "small", QoS::AtLeastOnce, 2))
        .await;
    publ.publish(publish("t/x", "again", QoS::AtLeastOnce, 3))
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(
        &p.payload[..],
        b"small",
        "the oversized message must be dropped"
    );
    assert_eq!(
        p.topic, "t/x",
        "the client never learned an alias from the dropped message"
    );
    let alias = p.properties.topic_alias.expect("an alias is taught now");
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), p.properties.topic_alias, &p.payload[..]),
        ("", Some(alias), &b"again"[..])
    );
}
