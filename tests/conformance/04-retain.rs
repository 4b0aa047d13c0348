//! §3.3.1.3 retained messages and the Retain Handling / Retain As Published subscription
//! options (§3.8.3.1). MQTT 5 clause numbers unless marked (3.1.1).

use edgeplane_tests::codec::{Properties, QoS, ReasonCode, SubOptions, Subscribe};
use edgeplane_tests::*;

fn subscribe_with(packet_id: u16, filter: &str, opts: SubOptions) -> Subscribe {
    Subscribe {
        packet_id,
        filters: vec![(filter.to_string(), opts)],
        properties: Properties::default(),
    }
}

fn retain_handling(qos: QoS, retain_handling: u8) -> SubOptions {
    SubOptions {
        retain_handling,
        ..SubOptions::new(qos)
    }
}

/// Publish a retained message and complete its QoS flow.
async fn retain(c: &mut Client, topic: &str, payload: &str, qos: QoS, id: u16) {
    let mut p = publish(topic, payload, qos, id);
    p.retain = true;
    c.publish(p).await;
}

/// [MQTT-3.3.1-5] [MQTT-3.3.1-9] (3.1.1: [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8]) A
/// retained message is stored and sent to a later subscriber with RETAIN 1, in both versions.
#[tokio::test]
async fn retained_message_sent_on_subscribe() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut publ = b.client("pub", v).await;
        retain(&mut publ, "ret/t", "last", QoS::AtLeastOnce, 1).await;
        let mut sub = b.client("sub", v).await;
        sub.sub("ret/t", QoS::AtLeastOnce).await;
        let p = sub.receive_and_ack().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("ret/t", &b"last"[..]),
            "{v:?}"
        );
        assert!(
            p.retain,
            "{v:?}: a retained message sent at subscribe has RETAIN 1"
        );
        assert_eq!(p.qos, QoS::AtLeastOnce, "{v:?}");
        sub.expect_nothing().await;
    }
}

/// [MQTT-3.3.1-5] A newer retained message replaces the older one: a new subscriber gets
/// only the latest.
#[tokio::test]
async fn newer_retained_message_replaces_older() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "ret/t", "old", QoS::AtLeastOnce, 1).await;
    retain(&mut publ, "ret/t", "new", QoS::AtLeastOnce, 2).await;
    let mut sub = b.client("sub", V311).await;
    sub.sub("ret/t", QoS::AtLeastOnce).await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"new");
    sub.expect_nothing().await;
}

/// [MQTT-3.3.1-6] [MQTT-3.3.1-7] (3.1.1: [MQTT-3.3.1-10] [MQTT-3.3.1-11]) A retained PUBLISH
/// with an empty payload is forwarded as normal to existing subscribers and removes the
/// retained message: later subscribers get nothing.
#[tokio::test]
async fn empty_retained_message_clears() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut publ = b.client("pub", v).await;
        retain(&mut publ, "ret/t", "soon gone", QoS::AtLeastOnce, 1).await;
        let mut live = b.client("live", v).await;
        live.sub("ret/t", QoS::AtLeastOnce).await;
        assert_eq!(
            &live.receive_and_ack().await.payload[..],
            b"soon gone",
            "{v:?}"
        );

        retain(&mut publ, "ret/t", "", QoS::AtLeastOnce, 2).await;
        let p = live.receive_and_ack().await;
        assert_eq!(
            (p.payload.len(), p.retain),
            (0, false),
            "{v:?}: forwarded as normal"
        );

        let mut late = b.client("late", v).await;
        late.sub("ret/t", QoS::AtLeastOnce).await;
        late.sub("ret/#", QoS::AtLeastOnce).await;
        late.expect_nothing().await;
    }
}

/// [MQTT-3.3.1-8] (3.1.1: [MQTT-3.3.1-12]) A PUBLISH with RETAIN 0 neither replaces nor
/// removes the retained message, even with an empty payload.
#[tokio::test]
async fn non_retained_publish_leaves_retained_message() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "ret/t", "kept", QoS::AtLeastOnce, 1).await;
    publ.publish(publish("ret/t", "not retained", QoS::AtLeastOnce, 2))
        .await;
    publ.publish(publish("ret/t", "", QoS::AtLeastOnce, 3))
        .await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("ret/t", QoS::AtLeastOnce).await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"kept");
    sub.expect_nothing().await;
}

/// [MQTT-3.3.1-9] §3.3.1.3 A wildcard subscription gets the retained message of every
/// matching topic, and only those.
#[tokio::test]
async fn wildcard_subscription_gets_all_matching_retained() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "w", "parent", QoS::AtLeastOnce, 1).await;
    retain(&mut publ, "w/a", "a", QoS::AtLeastOnce, 2).await;
    retain(&mut publ, "w/b/c", "bc", QoS::AtLeastOnce, 3).await;
    retain(&mut publ, "x/a", "other", QoS::AtLeastOnce, 4).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("w/#", QoS::AtLeastOnce).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = sub.receive_and_ack().await;
        assert!(p.retain);
        got.push(p.topic);
    }
    got.sort();
    assert_eq!(got, vec!["w", "w/a", "w/b/c"]);
    sub.expect_nothing().await;

    let mut plus = b.client("plus", V5).await;
    plus.sub("+/a", QoS::AtLeastOnce).await;
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        got.push(plus.receive_and_ack().await.topic);
    }
    got.sort();
    assert_eq!(got, vec!["w/a", "x/a"]);
    plus.expect_nothing().await;
}

/// [MQTT-3.3.1-9] [MQTT-3.8.4-4] Retain Handling 0: retained messages are sent at every
/// SUBSCRIBE, including one that replaces an existing subscription.
#[tokio::test]
async fn retain_handling_0_sends_at_every_subscribe() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "rh/t", "r", QoS::AtLeastOnce, 1).await;
    let mut sub = b.client("sub", V5).await;
    for id in 1..=2 {
        let ack = sub
            .subscribe(subscribe_with(
                id,
                "rh/t",
                retain_handling(QoS::AtLeastOnce, 0),
            ))
            .await;
        assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
        let p = sub.receive_and_ack().await;
        assert!(p.retain && &p.payload[..] == b"r", "subscribe #{id}: {p:?}");
    }
    sub.expect_nothing().await;
}

/// [MQTT-3.3.1-10] Retain Handling 1: retained messages are sent only if the subscription
/// did not exist; re-subscribing to the same filter gets nothing, a new filter does.
#[tokio::test]
async fn retain_handling_1_only_for_new_subscription() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "rh/t", "r", QoS::AtLeastOnce, 1).await;
    let mut sub = b.client("sub", V5).await;
    let opts = retain_handling(QoS::AtLeastOnce, 1);
    sub.subscribe(subscribe_with(1, "rh/t", opts)).await;
    let p = sub.receive_and_ack().await;
    assert!(p.retain && &p.payload[..] == b"r", "{p:?}");

    sub.subscribe(subscribe_with(2, "rh/t", opts)).await;
    sub.expect_nothing().await;

    // A different (overlapping) filter is a new subscription.
    sub.subscribe(subscribe_with(3, "rh/+", opts)).await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"r");
    // After UNSUBSCRIBE the subscription is new again.
    sub.unsubscribe(4, &["rh/t"]).await;
    sub.subscribe(subscribe_with(5, "rh/t", opts)).await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"r");
    sub.expect_nothing().await;
}

/// [MQTT-3.3.1-11] Retain Handling 2: retained messages are never sent at subscribe, but
/// live messages flow.
#[tokio::test]
async fn retain_handling_2_never_sends() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "rh/t", "r", QoS::AtLeastOnce, 1).await;
    let mut sub = b.client("sub", V5).await;
    let ack = sub
        .subscribe(subscribe_with(
            1,
            "rh/#",
            retain_handling(QoS::AtLeastOnce, 2),
        ))
        .await;
    assert_eq!(ack.reasons, vec![ReasonCode::GRANTED_QOS_1]);
    sub.expect_nothing().await;
    publ.publish(publish("rh/t", "live", QoS::AtLeastOnce, 2))
        .await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"live");
}

/// [MQTT-3.3.1-12] [MQTT-3.3.1-13] Retain As Published 1 keeps the publisher's RETAIN flag
/// on live forwarding; 0 clears it. A non-retained message has RETAIN 0 either way.
#[tokio::test]
async fn retain_as_published() {
    let b = TestBroker::start().await;
    let mut keep = b.client("keep", V5).await;
    let rap = SubOptions {
        retain_as_published: true,
        ..SubOptions::new(QoS::AtLeastOnce)
    };
    keep.subscribe(subscribe_with(1, "rap/t", rap)).await;
    let mut clear = b.client("clear", V5).await;
    clear.sub("rap/t", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;

    retain(&mut publ, "rap/t", "retained", QoS::AtLeastOnce, 1).await;
    assert!(keep.receive_and_ack().await.retain, "Retain As Published 1");
    assert!(
        !clear.receive_and_ack().await.retain,
        "Retain As Published 0"
    );

    publ.publish(publish("rap/t", "plain", QoS::AtLeastOnce, 2))
        .await;
    assert!(!keep.receive_and_ack().await.retain);
    assert!(!clear.receive_and_ack().await.retain);
}

/// §4.8.2 "No Retained Messages are sent to the Session when it first subscribes" to a
/// Shared Subscription; a non-shared subscription to the same filter gets them.
#[tokio::test]
async fn no_retained_messages_for_shared_subscriptions() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    retain(&mut publ, "sh/t", "r", QoS::AtLeastOnce, 1).await;
    let mut member = b.client("member", V5).await;
    member.sub("$share/g/sh/t", QoS::AtLeastOnce).await;
    member.sub("$share/g2/sh/#", QoS::AtLeastOnce).await;
    member.expect_nothing().await;
    let mut plain = b.client("plain", V5).await;
    plain.sub("sh/t", QoS::AtLeastOnce).await;
    assert_eq!(&plain.receive_and_ack().await.payload[..], b"r");
}

/// [MQTT-3.8.4-8] A retained message is sent at the minimum of its own QoS and the granted
/// QoS: QoS 2 retained to a QoS 1 subscription arrives as QoS 1, QoS 0 retained to a QoS 2
/// subscription as QoS 0.
#[tokio::test]
async fn retained_delivery_qos_is_minimum() {
    for v in [V5, V311] {
        let b = TestBroker::start().await;
        let mut publ = b.client("pub", v).await;
        retain(&mut publ, "q/two", "2", QoS::ExactlyOnce, 1).await;
        retain(&mut publ, "q/zero", "0", QoS::AtMostOnce, 0).await;
        let mut sub = b.client("sub", v).await;
        sub.sub("q/two", QoS::AtLeastOnce).await;
        let p = sub.receive_and_ack().await;
        assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, true), "{v:?}");
        sub.sub("q/zero", QoS::ExactlyOnce).await;
        let p = sub.receive_and_ack().await;
        assert_eq!((p.qos, p.retain), (QoS::AtMostOnce, true), "{v:?}");
        sub.sub("q/two", QoS::ExactlyOnce).await;
        assert_eq!(sub.receive_and_ack().await.qos, QoS::ExactlyOnce, "{v:?}");
    }
}
