//! §3.3.2.3 forwarded properties and subscription identifiers.
//!
//! Application properties of a PUBLISH travel unchanged from publisher to subscriber; the
//! broker adds the Subscription Identifiers of the subscriptions a message matched, one copy
//! per session; MQTT 3.1.1 subscribers get the message without any properties.

use bytes::Bytes;
use edgeplane_tests::codec::{Packet, Properties, Publish, QoS, ReasonCode, Subscribe};
use edgeplane_tests::*;

/// Subscribe with a Subscription Identifier (or none) and assert the grant.
async fn sub_with_id(c: &mut Client, packet_id: u16, filter: &str, id: Option<u32>) {
    let mut s: Subscribe = subscribe(packet_id, &[(filter, QoS::AtLeastOnce)]);
    s.properties.subscription_identifiers = id.into_iter().collect();
    let ack = c.subscribe(s).await;
    assert_eq!(
        ack.reasons,
        vec![ReasonCode::GRANTED_QOS_1],
        "SUBACK for {filter}"
    );
}

fn sorted_ids(p: &Publish) -> Vec<u32> {
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    ids
}

/// [MQTT-3.3.2-17] [MQTT-3.3.2-18] User Properties are forwarded unchanged and in order,
/// duplicate keys included, at every QoS.
#[tokio::test]
async fn user_properties_forwarded_in_order() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::ExactlyOnce).await;
    let mut publ = b.client("pub", V5).await;
    let props: Vec<(String, String)> = [
        ("b", "1"),
        ("a", "2"),
        ("b", "3"),
        ("a", "2"),
        ("ключ", "значение"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let mut p = publish("t", "x", qos, i as u16 + 1);
        p.properties.user_properties = props.clone();
        publ.publish(p).await;
        let got = sub.receive_and_ack().await;
        assert_eq!(got.properties.user_properties, props, "{qos:?}");
    }
}

/// [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-20] Payload Format Indicator,
/// Response Topic, Correlation Data and Content Type reach the subscriber unchanged, also on a
/// retained message delivered at subscribe time.
#[tokio::test]
async fn request_response_properties_forwarded() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("req/#", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;
    let props = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("application/json; charset=utf-8".into()),
        response_topic: Some("resp/client-7".into()),
        correlation_data: Some(Bytes::from_static(&[0, 1, 2, 0xFF, 0xFE])),
        ..Properties::default()
    };
    let mut p = publish("req/a", "{\"n\":1}", QoS::AtLeastOnce, 1);
    p.properties = props.clone();
    p.retain = true;
    publ.publish(p).await;
    let got = sub.receive_and_ack().await;
    assert_eq!(got.properties, props, "live delivery");
    assert_eq!(&got.payload[..], b"{\"n\":1}");
    let mut late = b.client("late", V5).await;
    late.sub("req/#", QoS::AtLeastOnce).await;
    let got = late.receive_and_ack().await;
    assert!(got.retain);
    assert_eq!(got.properties, props, "retained delivery");
}

/// [MQTT-3.3.2-4] A Payload Format Indicator of 0 (unspecified bytes) is forwarded as well.
#[tokio::test]
async fn payload_format_indicator_zero_forwarded() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtMostOnce).await;
    let mut publ = b.client("pub", V5).await;
    let mut p = publish("t", "", QoS::AtMostOnce, 0);
    p.payload = Bytes::from_static(&[0xFF, 0x00]);
    p.properties.payload_format_indicator = Some(0);
    publ.publish(p).await;
    let got = sub.expect_publish().await;
    assert_eq!(got.properties.payload_format_indicator, Some(0));
    assert_eq!(&got.payload[..], &[0xFF, 0x00]);
}

/// [MQTT-3.3.4-3] A PUBLISH sent because of a subscription with identifier N carries N, also
/// for a retained message sent at subscribe time.
#[tokio::test]
async fn subscription_identifier_sent() {
    let b = TestBroker::start().await;
    let mut publ = b.client("pub", V5).await;
    let mut retained = publish("s/retained", "r", QoS::AtLeastOnce, 1);
    retained.retain = true;
    publ.publish(retained).await;
    let mut sub = b.client("sub", V5).await;
    sub_with_id(&mut sub, 1, "s/#", Some(268_435_455)).await;
    let got = sub.receive_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), sorted_ids(&got)),
        ("s/retained", vec![268_435_455])
    );
    publ.publish(publish("s/live", "l", QoS::AtLeastOnce, 2))
        .await;
    let got = sub.receive_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), sorted_ids(&got)),
        ("s/live", vec![268_435_455])
    );
}

/// [MQTT-3.3.4-4] [MQTT-3.3.4-5] Overlapping subscriptions with identifiers 1 and 2: the
/// session gets ONE copy that carries both identifiers (order not significant).
#[tokio::test]
async fn overlapping_subscriptions_one_copy_with_all_identifiers() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub_with_id(&mut sub, 1, "o/+", Some(1)).await;
    sub_with_id(&mut sub, 2, "o/#", Some(2)).await;
    sub_with_id(&mut sub, 3, "x/#", Some(3)).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("o/a", "m", QoS::AtLeastOnce, 1)).await;
    let got = sub.receive_and_ack().await;
    assert_eq!(sorted_ids(&got), vec![1, 2]);
    sub.expect_nothing().await;
}

/// [MQTT-3.3.4-4] A subscription without identifier adds none: alone the PUBLISH carries no
/// identifier; overlapping with one that has identifier 7 it carries just 7.
#[tokio::test]
async fn subscription_without_identifier_adds_none() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub_with_id(&mut sub, 1, "n/+", None).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("n/a", "1", QoS::AtLeastOnce, 1)).await;
    assert_eq!(sorted_ids(&sub.receive_and_ack().await), Vec::<u32>::new());
    sub_with_id(&mut sub, 2, "n/#", Some(7)).await;
    publ.publish(publish("n/a", "2", QoS::AtLeastOnce, 2)).await;
    assert_eq!(sorted_ids(&sub.receive_and_ack().await), vec![7]);
    sub.expect_nothing().await;
}

/// §3.8.2.1.2 A SUBSCRIBE that replaces an existing subscription replaces its identifier: the
/// new one is sent, the old one never again; re-subscribing without one removes it.
#[tokio::test]
async fn updating_subscription_changes_identifier() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    let mut publ = b.client("pub", V5).await;
    for (n, id) in [(1u16, Some(5)), (2, Some(9)), (3, None)] {
        sub_with_id(&mut sub, n, "u", id).await;
        publ.publish(publish("u", &n.to_string(), QoS::AtLeastOnce, n))
            .await;
        let got = sub.receive_and_ack().await;
        assert_eq!(
            sorted_ids(&got),
            id.into_iter().collect::<Vec<_>>(),
            "after SUBSCRIBE {n}"
        );
        sub.expect_nothing().await;
    }
}

/// [MQTT-3.3.4-6] A PUBLISH from a client must not carry a Subscription Identifier: DISCONNECT
/// 0x82, and the message is not delivered.
#[tokio::test]
async fn client_publish_with_subscription_identifier_is_refused() {
    let b = TestBroker::start().await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    let mut c = b.client("pub", V5).await;
    let mut p = publish("t", "x", QoS::AtLeastOnce, 1);
    p.properties.subscription_identifiers = vec![4];
    c.send(&Packet::Publish(p)).await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
    sub.expect_nothing().await;
}

/// §3.3.2.3 MQTT 3.1.1 has no properties: a 3.1.1 subscriber gets a v5 publisher's message
/// as topic and payload only (a property block would corrupt the 3.1.1 payload). The other
/// way round a v5 subscriber gets a 3.1.1 message with no properties.
#[tokio::test]
async fn properties_across_protocol_versions() {
    let b = TestBroker::start().await;
    let mut old = b.client("old", V311).await;
    old.sub("v/#", QoS::AtLeastOnce).await;
    let mut new = b.client("new", V5).await;
    sub_with_id(&mut new, 1, "v/#", Some(3)).await;
    let mut publ5 = b.client("pub5", V5).await;
    let mut p = publish("v/5", "payload", QoS::AtLeastOnce, 1);
    p.properties = Properties {
        payload_format_indicator: Some(1),
        content_type: Some("text/plain".into()),
        response_topic: Some("r".into()),
        correlation_data: Some(Bytes::from_static(b"c")),
        user_properties: vec![("k".into(), "v".into())],
        message_expiry_interval: Some(100),
        ..Properties::default()
    };
    publ5.publish(p).await;
    let got = old.receive_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("v/5", &b"payload"[..])
    );
    let got = new.receive_and_ack().await;
    assert_eq!(
        got.properties.content_type.as_deref(),
        Some("text/plain"),
        "v5 subscriber keeps them"
    );

    let mut publ3 = b.client("pub3", V311).await;
    publ3
        .publish(publish("v/3", "plain", QoS::AtLeastOnce, 1))
        .await;
    let got = new.receive_and_ack().await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("v/3", &b"plain"[..])
    );
    let want = Properties {
        subscription_identifiers: vec![3],
        ..Properties::default()
    };
    assert_eq!(
        got.properties, want,
        "only the subscription identifier is added"
    );
    assert_eq!(&old.receive_and_ack().await.payload[..], b"plain");
}
