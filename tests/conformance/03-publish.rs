//! §3.3–§3.7 PUBLISH and its acknowledgements, §4.3 QoS flows: end-to-end delivery at each
//! QoS, QoS downgrade, QoS 2 duplicate suppression, refused publishes, packet identifiers the
//! broker assigns, the RETAIN flag on live forwarding, and payload edge cases.

use edgeplane_tests::codec::{Ack, Connect, Packet, Publish, QoS, ReasonCode};
use edgeplane_tests::*;

/// A client whose Receive Maximum is `window`, so the broker has at most that many QoS 1/2
/// messages in flight towards it.
async fn client_with_window(b: &TestBroker, id: &str, window: u16) -> Client {
    let mut c = Client::open(b.addr, V5).await;
    let mut req: Connect = connect(id, V5);
    req.properties.receive_maximum = Some(window);
    assert_eq!(c.connect(req).await.code, 0);
    c
}

/// [MQTT-3.3.4-1] [MQTT-4.3.1-1] [MQTT-4.3.2-4] [MQTT-4.3.3-8] [MQTT-4.3.3-11] A message
/// published at QoS 0, 1 and 2 is acknowledged as its QoS requires (PUBACK; PUBREC then
/// PUBCOMP) and reaches a QoS 2 subscriber at the same QoS with DUP 0, in both versions.
#[tokio::test]
async fn qos_end_to_end() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("e2e/t", QoS::ExactlyOnce).await;
        let mut publ = b.client("pub", v).await;
        for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
            .into_iter()
            .enumerate()
        {
            let id = if qos == QoS::AtMostOnce {
                0
            } else {
                20 + i as u16
            };
            // `publish` asserts the acknowledgements with the same packet id.
            publ.publish(publish("e2e/t", &format!("q{i}"), qos, id))
                .await;
            let p = sub.receive_and_ack().await;
            assert_eq!(p.topic, "e2e/t", "{v:?}");
            assert_eq!(p.payload, format!("q{i}").as_bytes(), "{v:?}");
            assert_eq!(p.qos, qos, "{v:?}");
            assert!(!p.dup, "{v:?}: a first delivery has DUP 0 [MQTT-3.3.1-1]");
        }
        sub.expect_nothing().await;
    }
}

/// [MQTT-3.8.4-8] A message is delivered at the minimum of its QoS and the subscription's
/// granted QoS: QoS 2 to a QoS 1 subscription arrives as QoS 1, QoS 1 to QoS 0 as QoS 0,
/// and QoS 0 to a QoS 2 subscription stays QoS 0.
#[tokio::test]
async fn qos_downgraded_to_granted_maximum() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut s1 = b.client("s1", v).await;
        s1.sub("dg/t", QoS::AtLeastOnce).await;
        let mut s0 = b.client("s0", v).await;
        s0.sub("dg/t", QoS::AtMostOnce).await;
        let mut s2 = b.client("s2", v).await;
        s2.sub("dg/t", QoS::ExactlyOnce).await;
        let mut publ = b.client("pub", v).await;

        publ.publish(publish("dg/t", "two", QoS::ExactlyOnce, 1))
            .await;
        assert_eq!(s1.receive_and_ack().await.qos, QoS::AtLeastOnce, "{v:?}");
        assert_eq!(s0.receive_and_ack().await.qos, QoS::AtMostOnce, "{v:?}");
        assert_eq!(s2.receive_and_ack().await.qos, QoS::ExactlyOnce, "{v:?}");

        publ.publish(publish("dg/t", "zero", QoS::AtMostOnce, 0))
            .await;
        for s in [&mut s0, &mut s1, &mut s2] {
            let p = s.receive_and_ack().await;
            assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, 0), "{v:?}");
        }
    }
}

/// [MQTT-4.3.3-10] Until PUBREL, a re-sent QoS 2 PUBLISH (DUP 1, same packet id) is answered
/// with PUBREC again and not delivered a second time; after PUBCOMP the id is free for a new
/// message [MQTT-4.3.3-12].
#[tokio::test]
async fn qos2_duplicate_before_pubrel_delivered_once() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("x2/t", QoS::ExactlyOnce).await;
        let mut publ = b.client("pub", v).await;
        let first = publish("x2/t", "once", QoS::ExactlyOnce, 7);
        publ.send(&Packet::Publish(first.clone())).await;
        assert_eq!(
            publ.recv().await,
            Some(Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        let again = Publish { dup: true, ..first };
        publ.send(&Packet::Publish(again.clone())).await;
        assert_eq!(
            publ.recv().await,
            Some(Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        publ.send(&Packet::PubRel(Ack::new(7, ReasonCode::SUCCESS)))
            .await;
        assert_eq!(
            publ.recv().await,
            Some(Packet::PubComp(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );

        assert_eq!(&sub.receive_and_ack().await.payload[..], b"once", "{v:?}");
        sub.expect_nothing().await;

        // Packet id 7 now starts a new message.
        publ.publish(publish("x2/t", "new", QoS::ExactlyOnce, 7))
            .await;
        assert_eq!(&sub.receive_and_ack().await.payload[..], b"new", "{v:?}");
    }
}

/// [MQTT-4.3.3-11] §3.7.2.1 A PUBREL for a packet id the broker does not know is still
/// answered with PUBCOMP, with reason 0x92 (Packet Identifier not found) in MQTT 5.
#[tokio::test]
async fn pubrel_for_unknown_packet_id() {
    let b = TestBroker::start().await;
    let mut c = b.client("c5", V5).await;
    c.send(&Packet::PubRel(Ack::new(99, ReasonCode::SUCCESS)))
        .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubComp(Ack::new(
            99,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        )))
    );
    let mut c = b.client("c3", V311).await;
    c.send(&Packet::PubRel(Ack::new(98, ReasonCode::SUCCESS)))
        .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubComp(Ack::new(98, ReasonCode::SUCCESS)))
    );
    c.send(&Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

/// §4.7.2 Topics starting with `$SYS` belong to the broker: a client PUBLISH there is
/// refused (MQTT 5 PUBACK/PUBREC 0x87 Not authorized) and reaches no subscriber.
#[tokio::test]
async fn publish_to_sys_refused() {
    let b = TestBroker::start().await;
    let mut sys = b.client("sys", V5).await;
    sys.sub("$SYS/#", QoS::AtLeastOnce).await;

    let mut c = b.client("c5", V5).await;
    c.send(&Packet::Publish(publish(
        "$SYS/broker/uptime",
        "fake",
        QoS::AtLeastOnce,
        1,
    )))
    .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubAck(Ack::new(1, ReasonCode::NOT_AUTHORIZED)))
    );
    c.send(&Packet::Publish(publish(
        "$SYS/x",
        "fake",
        QoS::ExactlyOnce,
        2,
    )))
    .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubRec(Ack::new(2, ReasonCode::NOT_AUTHORIZED)))
    );
    c.send(&Packet::Publish(publish(
        "$SYS/y",
        "fake",
        QoS::AtMostOnce,
        0,
    )))
    .await;

    // MQTT 3.1.1 has no way to say no: the PUBACK is positive [MQTT-3.3.5-2], nothing flows.
    let mut old = b.client("c3", V311).await;
    old.publish(publish("$SYS/broker/uptime", "fake", QoS::AtLeastOnce, 3))
        .await;

    sys.expect_nothing().await;
    // A refused QoS 2 leaves no receive state behind: id 2 is unknown to PUBREL.
    c.send(&Packet::PubRel(Ack::new(2, ReasonCode::SUCCESS)))
        .await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubComp(Ack::new(
            2,
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        )))
    );
}

/// [MQTT-3.3.2-4] §3.3.2.3.2 With Payload Format Indicator 1 the payload must be UTF-8: an
/// invalid one is refused with PUBACK 0x99 (Payload format invalid) and not delivered; a
/// valid one is delivered with the indicator unaltered.
#[tokio::test]
async fn invalid_utf8_payload_with_format_indicator_refused() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("pfi/t", QoS::AtLeastOnce).await;
    let mut c = b.client("pub", V5).await;

    let mut bad = publish("pfi/t", "", QoS::AtLeastOnce, 1);
    bad.properties.payload_format_indicator = Some(1);
    bad.payload = vec![0x61, 0xFF, 0xFE].into();
    c.send(&Packet::Publish(bad)).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::PubAck(Ack::new(
            1,
            ReasonCode::PAYLOAD_FORMAT_INVALID
        )))
    );
    sub.expect_nothing().await;

    let mut good = publish("pfi/t", "héllo", QoS::AtLeastOnce, 2);
    good.properties.payload_format_indicator = Some(1);
    c.publish(good).await;
    let p = sub.receive_and_ack().await;
    assert_eq!(p.payload, "héllo".as_bytes());
    assert_eq!(p.properties.payload_format_indicator, Some(1));

    // Indicator 0 (unspecified bytes): the same invalid bytes are fine.
    let mut raw = publish("pfi/t", "", QoS::AtLeastOnce, 3);
    raw.properties.payload_format_indicator = Some(0);
    raw.payload = vec![0x61, 0xFF, 0xFE].into();
    c.publish(raw).await;
    assert_eq!(
        &sub.receive_and_ack().await.payload[..],
        &[0x61, 0xFF, 0xFE]
    );
}

/// [MQTT-2.2.1-4] [MQTT-2.2.1-5] [MQTT-4.3.3-4] [MQTT-3.3.4-9] QoS 1 and 2 deliveries carry a
/// non-zero packet id, and the broker completes the subscriber's side of each flow: PUBREL
/// with the same id after PUBREC, and the id released on PUBACK/PUBCOMP. With Receive
/// Maximum 1, the next message only comes once the previous flow has completed.
#[tokio::test]
async fn broker_assigns_packet_ids_and_completes_subscriber_flows() {
    let b = TestBroker::start().await;
    let mut sub = client_with_window(&b, "sub", 1).await;
    sub.sub("ids/t", QoS::ExactlyOnce).await;
    let mut publ = b.client("pub", V5).await;
    for (i, qos) in [
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        publ.publish(publish("ids/t", &i.to_string(), qos, 1 + i as u16))
            .await;
    }
    for (i, qos) in [
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
    ]
    .into_iter()
    .enumerate()
    {
        let p = sub.expect_publish().await;
        assert_ne!(p.packet_id, 0);
        assert_eq!((p.qos, &p.payload[..]), (qos, i.to_string().as_bytes()));
        // Nothing else while this one is unacknowledged (window 1).
        sub.expect_nothing().await;
        match qos {
            QoS::AtLeastOnce => {
                sub.send(&Packet::PubAck(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await
            }
            _ => {
                sub.send(&Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await;
                assert_eq!(
                    sub.recv().await,
                    Some(Packet::PubRel(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                );
                sub.send(&Packet::PubComp(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
                    .await;
            }
        }
    }
    sub.expect_nothing().await;
}

/// [MQTT-3.3.1-12] (MQTT 5) / [MQTT-3.3.1-9] (MQTT 3.1.1) A message published with RETAIN 1
/// is forwarded to an existing subscription with RETAIN 0 (Retain As Published not set).
#[tokio::test]
async fn retain_flag_cleared_on_live_forwarding() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("live/t", QoS::AtLeastOnce).await;
        let mut publ = b.client("pub", v).await;
        let mut p = publish("live/t", "kept", QoS::AtLeastOnce, 1);
        p.retain = true;
        publ.publish(p).await;
        let got = sub.receive_and_ack().await;
        assert_eq!(&got.payload[..], b"kept", "{v:?}");
        assert!(!got.retain, "{v:?}: live forwarding clears RETAIN");
    }
}

/// §3.3.3 A zero-length payload is a valid message and is delivered as such.
#[tokio::test]
async fn empty_payload_delivered() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("empty/t", QoS::AtLeastOnce).await;
        let mut publ = b.client("pub", v).await;
        publ.publish(publish("empty/t", "", QoS::AtLeastOnce, 1))
            .await;
        let p = sub.receive_and_ack().await;
        assert_eq!((p.topic.as_str(), p.payload.len()), ("empty/t", 0), "{v:?}");
    }
}

/// §3.3.3 A 1 MiB payload (within the broker's maximum packet size) arrives intact, byte for
/// byte, at QoS 1 and QoS 0.
#[tokio::test]
async fn large_payload_delivered_intact() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("big/t", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V311).await;
    let payload: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::AtMostOnce, 0)] {
        let mut p = publish("big/t", "", qos, id);
        p.payload = payload.clone().into();
        publ.publish(p).await;
        let got = sub.receive_and_ack().await;
        assert_eq!(got.qos, qos);
        assert!(
            got.payload[..] == payload[..],
            "payload of {} bytes altered",
            got.payload.len()
        );
    }
}
