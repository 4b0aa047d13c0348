//! §3.8–§3.11 SUBSCRIBE/UNSUBSCRIBE and basic delivery: granted QoS per filter, wildcard and
//! `$`-topic matching (§4.7), invalid filters, subscription replacement, overlapping
//! subscriptions, No Local, ordering (§4.6) and MQTT 3.1.1 ↔ 5.0 interoperability.

use std::time::Duration;

use edgeplane_tests::codec::{Packet, Properties, QoS, ReasonCode, SubOptions, Subscribe};
use edgeplane_tests::*;

/// A SUBSCRIBE with explicit subscription options per filter.
fn subscribe_with(packet_id: u16, filters: &[(&str, SubOptions)]) -> Subscribe {
    Subscribe {
        packet_id,
        filters: filters.iter().map(|(f, o)| (f.to_string(), *o)).collect(),
        properties: Properties::default(),
    }
}

/// Topics of the QoS 0 messages `sub` receives until it goes quiet for [`QUIET`].
async fn topics_received(sub: &mut Client) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = sub.recv_within(QUIET).await {
        match p {
            Packet::Publish(p) => got.push(p.topic),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

/// [MQTT-3.8.4-1] [MQTT-3.8.4-2] [MQTT-3.8.4-5] [MQTT-3.8.4-6] [MQTT-3.8.4-7] [MQTT-3.9.3-1]
/// Several filters in one SUBSCRIBE get one SUBACK with the SUBSCRIBE's packet id and the
/// granted QoS of each filter, in order; each of them is then a working subscription.
#[tokio::test]
async fn suback_grants_qos_per_filter() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        let ack = sub
            .subscribe(subscribe(
                42,
                &[
                    ("g/2", QoS::ExactlyOnce),
                    ("g/0", QoS::AtMostOnce),
                    ("g/1", QoS::AtLeastOnce),
                ],
            ))
            .await;
        assert_eq!(ack.packet_id, 42, "{v:?}");
        assert_eq!(
            ack.reasons,
            vec![
                ReasonCode::GRANTED_QOS_2,
                ReasonCode::SUCCESS,
                ReasonCode::GRANTED_QOS_1
            ],
            "{v:?}"
        );
        let mut publ = b.client("pub", v).await;
        for (i, topic) in ["g/0", "g/1", "g/2"].into_iter().enumerate() {
            publ.publish(publish(topic, "x", QoS::ExactlyOnce, 10 + i as u16))
                .await;
            let p = sub.receive_and_ack().await;
            assert_eq!(p.topic, topic, "{v:?}");
            assert_eq!(
                p.qos as usize, i,
                "{v:?}: delivered at the QoS granted for {topic}"
            );
        }
    }
}

/// §4.7.1.3 [MQTT-4.7.1-2] `+` matches exactly one whole level, including an empty one.
#[tokio::test]
async fn single_level_wildcard() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("a/+/c", QoS::AtMostOnce).await;
        sub.sub("+", QoS::AtMostOnce).await;
        let mut publ = b.client("pub", v).await;
        for t in [
            "a/b/c", "a//c", "a/b/d", "a/b/c/d", "a/c", "top", "top/x", "/top",
        ] {
            publ.publish(publish(t, "x", QoS::AtMostOnce, 0)).await;
        }
        let got = topics_received(&mut sub).await;
        assert_eq!(got, vec!["a/b/c", "a//c", "top"], "{v:?}");
    }
}

/// §4.7.1.2 [MQTT-4.7.1-1] `#` matches its parent level and any number of child levels:
/// `a/#` matches `a`, `a/b` and `a/b/c` but not `ab` or `b/a`; `#` alone matches everything
/// not starting with `$`.
#[tokio::test]
async fn multi_level_wildcard() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("a/#", QoS::AtMostOnce).await;
        let mut all = b.client("all", v).await;
        all.sub("#", QoS::AtMostOnce).await;
        let mut publ = b.client("pub", v).await;
        let topics = ["a", "a/b", "a/b/c", "ab", "b/a", "/a"];
        for t in topics {
            publ.publish(publish(t, "x", QoS::AtMostOnce, 0)).await;
        }
        assert_eq!(
            topics_received(&mut sub).await,
            vec!["a", "a/b", "a/b/c"],
            "{v:?}"
        );
        assert_eq!(topics_received(&mut all).await, topics.to_vec(), "{v:?}");
    }
}

/// [MQTT-4.7.2-1] Topic filters starting with a wildcard do not match topic names starting
/// with `$`; a filter naming the `$` level does. Checked with a client topic `$internal/y`.
#[tokio::test]
async fn dollar_topics_not_matched_by_leading_wildcards() {
    let b = TestBroker::start().await;
    let mut hash = b.client("hash", V5).await;
    hash.sub("#", QoS::AtLeastOnce).await;
    let mut plus = b.client("plus", V311).await;
    plus.sub("+/y", QoS::AtLeastOnce).await;
    let mut named = b.client("named", V5).await;
    named.sub("$internal/#", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("$internal/y", "secret", QoS::AtLeastOnce, 1))
        .await;
    let p = named.receive_and_ack().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("$internal/y", &b"secret"[..])
    );
    hash.expect_nothing().await;
    plus.expect_nothing().await;
    // The same subscriptions do match an ordinary topic.
    publ.publish(publish("x/y", "plain", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(hash.receive_and_ack().await.topic, "x/y");
    assert_eq!(plus.receive_and_ack().await.topic, "x/y");
    named.expect_nothing().await;
}

/// [MQTT-4.7.2-1] The broker's own `$SYS/...` statistics (live and retained) reach `$SYS/#`
/// but not `#` or `+/broker/#`.
#[tokio::test]
async fn sys_topics_not_matched_by_leading_wildcards() {
    let b = TestBroker::with(|s| s.sys_interval = Some(Duration::from_millis(100))).await;
    let mut hash = b.client("hash", V5).await;
    hash.sub("#", QoS::AtMostOnce).await;
    let mut plus = b.client("plus", V5).await;
    plus.sub("+/broker/#", QoS::AtMostOnce).await;
    let mut sys = b.client("sys", V5).await;
    sys.sub("$SYS/#", QoS::AtMostOnce).await;
    let p = sys.expect_publish().await;
    assert!(p.topic.starts_with("$SYS/broker/"), "{}", p.topic);
    // Several statistics periods pass: none of them reaches the wildcard subscribers, and
    // neither do the retained `$SYS` messages when they subscribe again.
    hash.expect_nothing().await;
    plus.expect_nothing().await;
    hash.sub("#", QoS::AtMostOnce).await;
    hash.expect_nothing().await;
}

/// [MQTT-4.7.1-1] [MQTT-4.7.1-2] [MQTT-4.7.3-1] [MQTT-3.8.4-5] An invalid filter (`a/#/b`,
/// `a+`, `#/a`, empty) fails with SUBACK 0x8F (MQTT 5) or 0x80 (MQTT 3.1.1) while the valid
/// filters of the same SUBSCRIBE are granted and deliver.
#[tokio::test]
async fn invalid_filters_refused_valid_ones_granted() {
    for (v, bad) in [
        (V5, ReasonCode::TOPIC_FILTER_INVALID),
        (V311, ReasonCode::UNSPECIFIED_ERROR),
    ] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        let ack = sub
            .subscribe(subscribe(
                3,
                &[
                    ("a/#/b", QoS::AtLeastOnce),
                    ("ok/1", QoS::AtLeastOnce),
                    ("a+", QoS::AtMostOnce),
                    ("#/a", QoS::AtMostOnce),
                    ("", QoS::AtMostOnce),
                    ("ok/2", QoS::ExactlyOnce),
                ],
            ))
            .await;
        assert_eq!(
            ack.reasons,
            vec![
                bad,
                ReasonCode::GRANTED_QOS_1,
                bad,
                bad,
                bad,
                ReasonCode::GRANTED_QOS_2
            ],
            "{v:?}"
        );
        let mut publ = b.client("pub", v).await;
        publ.publish(publish("ok/1", "1", QoS::AtLeastOnce, 1))
            .await;
        publ.publish(publish("ok/2", "2", QoS::AtLeastOnce, 2))
            .await;
        assert_eq!(sub.receive_and_ack().await.topic, "ok/1", "{v:?}");
        assert_eq!(sub.receive_and_ack().await.topic, "ok/2", "{v:?}");
        // The connection is still usable.
        sub.send(&Packet::PingReq).await;
        assert_eq!(sub.recv().await, Some(Packet::PingResp), "{v:?}");
    }
}

/// [MQTT-3.10.4-1] [MQTT-3.10.4-2] [MQTT-3.10.4-5] [MQTT-3.10.4-6] [MQTT-3.11.3-1] UNSUBACK
/// carries the packet id and, in MQTT 5, 0x00 for a removed subscription and 0x11 (No
/// subscription existed) for an unknown filter, in order; delivery stops after it.
#[tokio::test]
async fn unsubscribe_reports_and_stops_delivery() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("u/1", QoS::AtLeastOnce).await;
        sub.sub("u/+", QoS::AtLeastOnce).await;
        let mut publ = b.client("pub", v).await;
        publ.publish(publish("u/1", "before", QoS::AtLeastOnce, 1))
            .await;
        assert_eq!(&sub.receive_and_ack().await.payload[..], b"before", "{v:?}");

        let ack = sub
            .unsubscribe(9, &["never/subscribed", "u/1", "u/+"])
            .await;
        assert_eq!(ack.packet_id, 9, "{v:?}");
        if v == V5 {
            assert_eq!(
                ack.reasons,
                vec![
                    ReasonCode::NO_SUBSCRIPTION_EXISTED,
                    ReasonCode::SUCCESS,
                    ReasonCode::SUCCESS
                ]
            );
        }
        publ.publish(publish("u/1", "after", QoS::AtLeastOnce, 2))
            .await;
        sub.expect_nothing().await;
        // Unsubscribing again finds nothing.
        let again = sub.unsubscribe(10, &["u/1"]).await;
        if v == V5 {
            assert_eq!(again.reasons, vec![ReasonCode::NO_SUBSCRIPTION_EXISTED]);
        }
    }
}

/// [MQTT-3.8.4-3] Subscribing again to an identical filter replaces the subscription: one
/// copy per message, at the QoS of the new subscription.
#[tokio::test]
async fn resubscribe_replaces_subscription() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("r/t", QoS::AtMostOnce).await;
        sub.sub("r/t", QoS::ExactlyOnce).await;
        let mut publ = b.client("pub", v).await;
        publ.publish(publish("r/t", "up", QoS::ExactlyOnce, 1))
            .await;
        let p = sub.receive_and_ack().await;
        assert_eq!(
            p.qos,
            QoS::ExactlyOnce,
            "{v:?}: the new subscription's QoS applies"
        );
        sub.expect_nothing().await;
        // And back down again.
        sub.sub("r/t", QoS::AtLeastOnce).await;
        publ.publish(publish("r/t", "down", QoS::ExactlyOnce, 2))
            .await;
        let p = sub.receive_and_ack().await;
        assert_eq!(
            (p.qos, &p.payload[..]),
            (QoS::AtLeastOnce, &b"down"[..]),
            "{v:?}"
        );
        sub.expect_nothing().await;
    }
}

/// [MQTT-3.3.4-2] A message matching several subscriptions of one client (`o/+` at QoS 0,
/// `o/#` at QoS 2) is delivered once, at the maximum QoS of the matching subscriptions.
#[tokio::test]
async fn overlapping_subscriptions_one_copy_at_max_qos() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("o/+", QoS::AtMostOnce).await;
    sub.sub("o/#", QoS::ExactlyOnce).await;
    sub.sub("o/t", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("o/t", "x", QoS::ExactlyOnce, 1)).await;
    let p = sub.receive_and_ack().await;
    assert_eq!(p.qos, QoS::ExactlyOnce);
    sub.expect_nothing().await;
    // At QoS 1 the copy is QoS 1 (the maximum granted is still capped by the message).
    publ.publish(publish("o/t", "y", QoS::AtLeastOnce, 2)).await;
    assert_eq!(sub.receive_and_ack().await.qos, QoS::AtLeastOnce);
    sub.expect_nothing().await;
}

/// [MQTT-3.8.3-3] With No Local a client does not receive its own messages on that
/// subscription; other subscribers do, and it still receives other clients' messages.
#[tokio::test]
async fn no_local_suppresses_own_messages() {
    let b = TestBroker::start().await;
    let mut me = b.client("me", V5).await;
    let opts = SubOptions {
        no_local: true,
        ..SubOptions::new(QoS::AtLeastOnce)
    };
    let ack = me.subscribe(subscribe_with(1, &[("nl/t", opts)])).await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    let mut other = b.client("other", V5).await;
    other.sub("nl/t", QoS::AtLeastOnce).await;

    me.publish(publish("nl/t", "mine", QoS::AtLeastOnce, 1))
        .await;
    assert_eq!(&other.receive_and_ack().await.payload[..], b"mine");
    me.expect_nothing().await;

    other
        .publish(publish("nl/t", "theirs", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(&me.receive_and_ack().await.payload[..], b"theirs");
    assert_eq!(&other.receive_and_ack().await.payload[..], b"theirs");
}

/// [MQTT-4.6.0-5] [MQTT-4.6.0-6] Messages of one publisher on one topic reach a non-shared
/// subscriber in the order they were published (100 QoS 1 messages, sent back to back).
#[tokio::test]
async fn messages_from_one_publisher_arrive_in_order() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut sub = b.client("sub", v).await;
        sub.sub("ord/t", QoS::AtLeastOnce).await;
        let mut publ = b.client("pub", v).await;
        for i in 1..=100u16 {
            publ.send(&Packet::Publish(publish(
                "ord/t",
                &i.to_string(),
                QoS::AtLeastOnce,
                i,
            )))
            .await;
        }
        for i in 1..=100u16 {
            match publ.recv().await {
                Some(Packet::PubAck(a)) => assert_eq!(a.packet_id, i, "{v:?}"),
                other => panic!("expected PUBACK {i}, got {other:?}"),
            }
        }
        for i in 1..=100u16 {
            let p = sub.receive_and_ack().await;
            assert_eq!(
                p.payload,
                i.to_string().as_bytes(),
                "{v:?}: message {i} out of order"
            );
        }
        sub.expect_nothing().await;
    }
}

/// §1.2 / [MQTT-3.3.4-1] A 3.1.1 and a 5.0 client exchange messages both ways through one
/// broker: topic, payload and QoS arrive; 5.0 properties are simply not seen by 3.1.1.
#[tokio::test]
async fn v311_and_v5_interoperate() {
    let b = TestBroker::start().await;
    let mut old_sub = b.client("old-sub", V311).await;
    old_sub.sub("mix/#", QoS::ExactlyOnce).await;
    let mut new_sub = b.client("new-sub", V5).await;
    new_sub.sub("mix/#", QoS::ExactlyOnce).await;
    let mut old_pub = b.client("old-pub", V311).await;
    let mut new_pub = b.client("new-pub", V5).await;

    let mut from_v5 = publish("mix/a", "from v5", QoS::ExactlyOnce, 1);
    from_v5
        .properties
        .user_properties
        .push(("k".into(), "v".into()));
    new_pub.publish(from_v5).await;
    for sub in [&mut old_sub, &mut new_sub] {
        let p = sub.receive_and_ack().await;
        let got = (p.topic.as_str(), &p.payload[..], p.qos);
        assert_eq!(
            got,
            ("mix/a", &b"from v5"[..], QoS::ExactlyOnce),
            "{:?}",
            sub.version
        );
    }

    old_pub
        .publish(publish("mix/b", "from v3", QoS::AtLeastOnce, 2))
        .await;
    for sub in [&mut new_sub, &mut old_sub] {
        let p = sub.receive_and_ack().await;
        let got = (p.topic.as_str(), &p.payload[..], p.qos);
        assert_eq!(
            got,
            ("mix/b", &b"from v3"[..], QoS::AtLeastOnce),
            "{:?}",
            sub.version
        );
    }
}
