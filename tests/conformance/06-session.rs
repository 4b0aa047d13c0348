//! §4.1 session state, §3.1.2.4 Clean Start, §3.1.2.11.2 Session Expiry Interval and §4.4
//! message delivery retry: what survives a reconnect, what is queued while offline, when a
//! session ends, and how unacknowledged QoS 1/2 flows resume.

use std::time::Duration;

use edgeplane_tests::codec::{Ack, Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};
use edgeplane_tests::*;

/// Connect `c` and return the client and its CONNACK's Session Present.
async fn open(b: &TestBroker, c: Connect) -> (Client, bool) {
    let mut client = Client::open(b.addr, c.protocol).await;
    let ack = client.connect(c).await;
    assert_eq!(ack.code, 0);
    (client, ack.session_present)
}

/// DISCONNECT normally and wait until the broker has closed the connection, so the session is
/// detached before the test connects again.
async fn close(mut c: Client) {
    c.send(&Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)))
        .await;
    assert_eq!(c.expect_closed().await, None);
}

/// Start a persistent session subscribed to `filter` at `qos`, then close it normally.
async fn park_session(b: &TestBroker, id: &str, v: ProtocolVersion, filter: &str, qos: QoS) {
    let (mut c, _) = open(b, connect_persistent(id, v, 60)).await;
    c.sub(filter, qos).await;
    close(c).await;
}

/// [MQTT-3.1.2-4] [MQTT-3.2.2-2] (3.1.1: [MQTT-3.1.2-6] [MQTT-3.2.2-1]) Clean Start 1 discards
/// an existing session: Session Present 0, and its subscriptions are gone.
#[tokio::test]
async fn clean_start_discards_session() {
    let b = TestBroker::start().await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        let id = format!("fresh-{v:?}");
        park_session(&b, &id, v, "clean/t", QoS::AtLeastOnce).await;
        let (mut c, present) = open(&b, connect(&id, v)).await;
        assert!(!present, "{v:?}: Session Present 0 after Clean Start 1");
        publisher
            .publish(publish("clean/t", "orphan", QoS::AtLeastOnce, 1))
            .await;
        c.expect_nothing().await;
        close(c).await;
        // The clean session was not kept either (3.1.1 Clean Session 1, MQTT 5 expiry 0).
        let (_, present) = open(&b, connect_persistent(&id, v, 60)).await;
        assert!(!present, "{v:?}: a clean session ends with its connection");
    }
}

/// [MQTT-3.1.2-5] [MQTT-3.2.2-3] [MQTT-3.1.2-23] (3.1.1: [MQTT-3.1.2-4] [MQTT-3.2.2-2]) Clean
/// Start 0 with a stored session resumes it: Session Present 1 and the subscriptions still
/// deliver, across several reconnects.
#[tokio::test]
async fn resume_keeps_subscriptions() {
    let b = TestBroker::start().await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        let id = format!("kept-{v:?}");
        let (c, present) = open(&b, connect_persistent(&id, v, 60)).await;
        assert!(!present, "{v:?}: no session yet [MQTT-3.2.2-3]");
        drop(c);
        park_session(&b, &id, v, "kept/t", QoS::AtLeastOnce).await;
        for round in 0..2 {
            let (mut c, present) = open(&b, connect_persistent(&id, v, 60)).await;
            assert!(present, "{v:?} round {round}: Session Present 1");
            publisher
                .publish(publish("kept/t", "still subscribed", QoS::AtLeastOnce, 1))
                .await;
            assert_eq!(
                &c.receive_and_ack().await.payload[..],
                b"still subscribed",
                "{v:?} round {round}"
            );
            close(c).await;
        }
    }
}

/// [MQTT-3.1.2-23] §4.1 (3.1.1: [MQTT-3.1.2-5]) QoS 1 and QoS 2 messages published while the
/// session is offline are stored with it and delivered, in order, when it resumes; QoS 0
/// messages are not queued by default.
#[tokio::test]
async fn offline_messages_delivered_on_resume() {
    let b = TestBroker::start().await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        let id = format!("away-{v:?}");
        park_session(&b, &id, v, "away/#", QoS::ExactlyOnce).await;
        publisher
            .publish(publish("away/0", "qos0", QoS::AtMostOnce, 0))
            .await;
        publisher
            .publish(publish("away/1", "qos1", QoS::AtLeastOnce, 1))
            .await;
        publisher
            .publish(publish("away/2", "qos2", QoS::ExactlyOnce, 2))
            .await;
        let (mut c, present) = open(&b, connect_persistent(&id, v, 60)).await;
        assert!(present);
        let first = c.receive_and_ack().await;
        assert_eq!(
            (&first.payload[..], first.qos),
            (&b"qos1"[..], QoS::AtLeastOnce),
            "{v:?}"
        );
        let second = c.receive_and_ack().await;
        assert_eq!(
            (&second.payload[..], second.qos),
            (&b"qos2"[..], QoS::ExactlyOnce),
            "{v:?}"
        );
        c.expect_nothing().await;
    }
}

/// §4.1 (both versions): the session state OPTIONALLY holds QoS 0 messages for an offline
/// client. With `queueQos0WhileOffline` they are delivered on resume, in order with the others.
#[tokio::test]
async fn offline_qos0_queued_when_enabled() {
    let b = TestBroker::with(|s| s.clients.queue_qos0_offline = true).await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        let id = format!("away0-{v:?}");
        park_session(&b, &id, v, "away0/#", QoS::AtLeastOnce).await;
        publisher
            .publish(publish("away0/a", "first", QoS::AtMostOnce, 0))
            .await;
        publisher
            .publish(publish("away0/b", "second", QoS::AtLeastOnce, 1))
            .await;
        let (mut c, _) = open(&b, connect_persistent(&id, v, 60)).await;
        let p = c.receive_and_ack().await;
        assert_eq!(
            (&p.payload[..], p.qos),
            (&b"first"[..], QoS::AtMostOnce),
            "{v:?}"
        );
        assert_eq!(&c.receive_and_ack().await.payload[..], b"second", "{v:?}");
    }
}

/// [MQTT-4.1.0-2] [MQTT-3.2.2-3] A session is discarded once its Session Expiry Interval (1 s)
/// has passed after the connection closed: the next CONNECT gets Session Present 0 and the old
/// subscriptions deliver nothing.
#[tokio::test]
async fn session_expires_after_interval() {
    let b = TestBroker::start().await;
    let (mut c, _) = open(&b, connect_persistent("brief", V5, 1)).await;
    c.sub("brief/t", QoS::AtLeastOnce).await;
    close(c).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (mut c, present) = open(&b, connect_persistent("brief", V5, 60)).await;
    assert!(!present, "the session expired");
    let mut publisher = b.client("publisher", V5).await;
    publisher
        .publish(publish("brief/t", "gone", QoS::AtLeastOnce, 1))
        .await;
    c.expect_nothing().await;
}

/// §3.1.2.11.2 A Session Expiry Interval that is absent (0) ends the session when the
/// connection closes, even with Clean Start 0.
#[tokio::test]
async fn absent_session_expiry_ends_session_at_close() {
    let b = TestBroker::start().await;
    let mut c = connect("momentary", V5);
    c.clean_start = false;
    let (mut client, _) = open(&b, c.clone()).await;
    client.sub("momentary/t", QoS::AtLeastOnce).await;
    close(client).await;
    let (_, present) = open(&b, c).await;
    assert!(!present);
}

/// §3.14.2.2.2 The Session Expiry Interval on DISCONNECT replaces the one from CONNECT: 10 s on
/// CONNECT and 0 on DISCONNECT ends the session at once.
#[tokio::test]
async fn disconnect_overrides_session_expiry() {
    let b = TestBroker::start().await;
    let (mut c, _) = open(&b, connect_persistent("override", V5, 10)).await;
    c.sub("override/t", QoS::AtLeastOnce).await;
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(d)).await;
    assert_eq!(c.expect_closed().await, None);
    let (_, present) = open(&b, connect_persistent("override", V5, 10)).await;
    assert!(!present, "DISCONNECT set the expiry to 0");

    // And the other way: DISCONNECT may extend a non-zero expiry.
    let (mut c, _) = open(&b, connect_persistent("extend", V5, 1)).await;
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(60);
    c.send(&Packet::Disconnect(d)).await;
    assert_eq!(c.expect_closed().await, None);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, present) = open(&b, connect_persistent("extend", V5, 60)).await;
    assert!(present, "DISCONNECT extended the expiry beyond 1 s");
}

/// §3.14.2.2.2 A non-zero Session Expiry Interval on DISCONNECT after 0 on CONNECT is a
/// Protocol Error: DISCONNECT 0x82, and the session still ends with the connection.
#[tokio::test]
async fn disconnect_cannot_revive_zero_expiry() {
    let b = TestBroker::start().await;
    let mut req = connect("no-revive", V5);
    req.clean_start = false;
    let (mut c, _) = open(&b, req).await;
    let mut d = Disconnect::new(ReasonCode::SUCCESS);
    d.properties.session_expiry_interval = Some(30);
    c.send(&Packet::Disconnect(d)).await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
    let (_, present) = open(&b, connect_persistent("no-revive", V5, 30)).await;
    assert!(!present, "the session ended with its connection");
}

/// [MQTT-4.4.0-1] [MQTT-3.3.1-1] (3.1.1: [MQTT-4.4.0-1] [MQTT-3.3.1-1]) A QoS 1 or QoS 2
/// PUBLISH the client did not acknowledge is re-sent on resume with its original packet
/// identifier and DUP 1, and not again once acknowledged.
#[tokio::test]
async fn unacknowledged_publish_resent_with_dup() {
    let b = TestBroker::start().await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let id = format!("forgetful-{v:?}-{qos:?}");
            let (mut c, _) = open(&b, connect_persistent(&id, v, 60)).await;
            c.sub("retry/t", qos).await;
            publisher.publish(publish("retry/t", &id, qos, 1)).await;
            let first = c.expect_publish().await;
            assert!(!first.dup, "{id}: first delivery has DUP 0");
            c.drop_connection();

            let (mut c, present) = open(&b, connect_persistent(&id, v, 60)).await;
            assert!(present);
            let again = c.expect_publish().await;
            assert!(again.dup, "{id}: re-delivery has DUP 1");
            assert_eq!(
                again.packet_id, first.packet_id,
                "{id}: original packet identifier"
            );
            assert_eq!(
                (again.qos, &again.payload[..]),
                (qos, id.as_bytes()),
                "{id}"
            );
            match qos {
                QoS::AtLeastOnce => {
                    c.send(&Packet::PubAck(Ack::new(
                        again.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await
                }
                _ => {
                    c.send(&Packet::PubRec(Ack::new(
                        again.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await;
                    assert_eq!(
                        c.recv().await,
                        Some(Packet::PubRel(Ack::new(
                            again.packet_id,
                            ReasonCode::SUCCESS
                        )))
                    );
                    c.send(&Packet::PubComp(Ack::new(
                        again.packet_id,
                        ReasonCode::SUCCESS,
                    )))
                    .await;
                }
            }
            close(c).await;
            let (mut c, _) = open(&b, connect_persistent(&id, v, 60)).await;
            c.expect_nothing().await;
            close(c).await;
        }
    }
}

/// [MQTT-4.4.0-1] [MQTT-4.3.3-6] After PUBREC the server owes a PUBREL: on resume it re-sends
/// PUBREL with the original packet identifier, not the PUBLISH.
#[tokio::test]
async fn pubrel_resent_on_resume() {
    let b = TestBroker::start().await;
    let mut publisher = b.client("publisher", V5).await;
    for v in [V311, V5] {
        let id = format!("halfway-{v:?}");
        let (mut c, _) = open(&b, connect_persistent(&id, v, 60)).await;
        c.sub("halfway/t", QoS::ExactlyOnce).await;
        publisher
            .publish(publish("halfway/t", "q2", QoS::ExactlyOnce, 1))
            .await;
        let p = c.expect_publish().await;
        c.send(&Packet::PubRec(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
            .await;
        assert_eq!(
            c.recv().await,
            Some(Packet::PubRel(Ack::new(p.packet_id, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        c.drop_connection();

        let (mut c, present) = open(&b, connect_persistent(&id, v, 60)).await;
        assert!(present);
        assert_eq!(
            c.recv().await,
            Some(Packet::PubRel(Ack::new(p.packet_id, ReasonCode::SUCCESS))),
            "{v:?}: PUBREL re-sent"
        );
        c.send(&Packet::PubComp(Ack::new(p.packet_id, ReasonCode::SUCCESS)))
            .await;
        c.expect_nothing().await;
    }
}

/// [MQTT-4.3.3-10] [MQTT-4.4.0-1] A QoS 2 PUBLISH the server has acknowledged with PUBREC but
/// that was not released yet is re-sent by the client after reconnecting: the server answers
/// PUBREC again and does not deliver the message a second time; PUBREL then completes.
#[tokio::test]
async fn resent_qos2_publish_not_delivered_twice() {
    let b = TestBroker::start().await;
    let mut sub = b.client("subscriber", V5).await;
    sub.sub("once/t", QoS::ExactlyOnce).await;
    for v in [V311, V5] {
        let id = format!("resender-{v:?}");
        let (mut c, _) = open(&b, connect_persistent(&id, v, 60)).await;
        c.send(&Packet::Publish(publish(
            "once/t",
            &id,
            QoS::ExactlyOnce,
            7,
        )))
        .await;
        assert_eq!(
            c.recv().await,
            Some(Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        assert_eq!(
            &sub.receive_and_ack().await.payload[..],
            id.as_bytes(),
            "{v:?}"
        );
        c.drop_connection();

        let (mut c, present) = open(&b, connect_persistent(&id, v, 60)).await;
        assert!(present);
        let mut again = publish("once/t", &id, QoS::ExactlyOnce, 7);
        again.dup = true;
        c.send(&Packet::Publish(again)).await;
        assert_eq!(
            c.recv().await,
            Some(Packet::PubRec(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        c.send(&Packet::PubRel(Ack::new(7, ReasonCode::SUCCESS)))
            .await;
        assert_eq!(
            c.recv().await,
            Some(Packet::PubComp(Ack::new(7, ReasonCode::SUCCESS))),
            "{v:?}"
        );
        sub.expect_nothing().await;

        // Released: the same packet identifier now carries a new message [MQTT-4.3.3-12].
        c.publish(publish("once/t", "new", QoS::ExactlyOnce, 7))
            .await;
        assert_eq!(&sub.receive_and_ack().await.payload[..], b"new", "{v:?}");
    }
}
