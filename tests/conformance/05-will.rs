//! §3.1.2.5 will messages and §3.1.3.2 will properties: when a will is published (abnormal
//! close, protocol error, takeover, DISCONNECT 0x04) and when not (normal DISCONNECT), what it
//! carries (QoS, retain, properties), and the will delay against reconnects and session end.

use std::time::{Duration, Instant};

use edgeplane_tests::codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, Will};
use edgeplane_tests::*;

/// A clean-start CONNECT carrying `will`.
fn with_will(id: &str, v: ProtocolVersion, will: Will) -> Connect {
    let mut c = connect(id, v);
    c.will = Some(will);
    c
}

/// An MQTT 5 CONNECT with a session expiry and a will delayed by `delay` seconds.
fn delayed_will(id: &str, expiry: u32, delay: u32, topic: &str) -> Connect {
    let mut w = will(topic, "late", QoS::AtLeastOnce, false);
    w.properties.will_delay_interval = Some(delay);
    let mut c = with_will(id, V5, w);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// A client subscribed to `filter` at QoS 2, to observe wills.
async fn watcher(b: &TestBroker, filter: &str) -> Client {
    let mut w = b.client("watcher", V5).await;
    w.sub(filter, QoS::ExactlyOnce).await;
    w
}

async fn connected(b: &TestBroker, c: Connect) -> Client {
    let mut client = Client::open(b.addr, c.protocol).await;
    let ack = client.connect(c).await;
    assert_eq!(ack.code, 0);
    client
}

/// [MQTT-3.1.2-8] [MQTT-3.1.2-14] [MQTT-3.1.2-10] (3.1.1: [MQTT-3.1.2-8] [MQTT-3.1.2-16]
/// [MQTT-3.1.2-10]) A connection closed without DISCONNECT publishes its will once, with its
/// topic, payload and QoS, as a non-retained message.
#[tokio::test]
async fn will_published_on_abnormal_close() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    for (v, qos) in [(V311, QoS::AtLeastOnce), (V5, QoS::ExactlyOnce)] {
        let topic = format!("will/{v:?}");
        let c = connected(
            &b,
            with_will(&format!("dying-{v:?}"), v, will(&topic, "gone", qos, false)),
        )
        .await;
        c.drop_connection();
        let p = w.receive_and_ack().await;
        assert_eq!(p.topic, topic);
        assert_eq!(&p.payload[..], b"gone", "{v:?}");
        assert_eq!(p.qos, qos, "{v:?}: the will QoS");
        assert!(
            !p.retain,
            "{v:?}: a will without Will Retain is not retained"
        );
        w.expect_nothing().await;
    }
    // Not retained: a later subscriber gets nothing.
    let mut late = b.client("late", V5).await;
    late.sub("will/#", QoS::AtLeastOnce).await;
    late.expect_nothing().await;
}

/// [MQTT-3.1.2-10] [MQTT-3.14.4-3] (3.1.1: [MQTT-3.1.2-10]) DISCONNECT with reason 0x00
/// discards the will: nothing is published when the connection then closes.
#[tokio::test]
async fn no_will_after_normal_disconnect() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    for v in [V311, V5] {
        let c = connected(
            &b,
            with_will(
                &format!("polite-{v:?}"),
                v,
                will("will/polite", "gone", QoS::AtLeastOnce, false),
            ),
        )
        .await;
        c.disconnect().await;
    }
    // A persistent MQTT 5 session whose will was discarded does not publish it later either.
    let mut c = with_will(
        "polite-persistent",
        V5,
        will("will/polite", "gone", QoS::AtLeastOnce, false),
    );
    c.properties.session_expiry_interval = Some(1);
    connected(&b, c).await.disconnect().await;
    assert_eq!(w.recv_within(Duration::from_millis(1500)).await, None);
}

/// §3.14.2.1 DISCONNECT with reason 0x04 (Disconnect with Will Message) closes the connection
/// and publishes the will.
#[tokio::test]
async fn will_published_after_disconnect_with_will() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let mut c = connected(
        &b,
        with_will(
            "leaving",
            V5,
            will("will/leaving", "asked for", QoS::AtLeastOnce, false),
        ),
    )
    .await;
    c.send(&Packet::Disconnect(Disconnect::new(
        ReasonCode::DISCONNECT_WITH_WILL,
    )))
    .await;
    assert_eq!(
        c.expect_closed().await,
        None,
        "the server closes without a DISCONNECT of its own"
    );
    let p = w.receive_and_ack().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/leaving", &b"asked for"[..])
    );
}

/// [MQTT-3.1.2-8] [MQTT-3.14.4-3] §3.1.2.5 Only DISCONNECT 0x00 discards the will: a client
/// that disconnects with an error reason (0x80 Unspecified error, 0x83 Implementation
/// specific error) closed "without first sending a DISCONNECT with Reason Code 0x00", so the
/// will is published.
#[tokio::test]
async fn will_published_after_disconnect_with_error_reason() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    for reason in [
        ReasonCode::UNSPECIFIED_ERROR,
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR,
    ] {
        let id = format!("failing-{reason:?}");
        let mut c = connected(
            &b,
            with_will(&id, V5, will("will/failing", &id, QoS::AtLeastOnce, false)),
        )
        .await;
        c.send(&Packet::Disconnect(Disconnect::new(reason))).await;
        assert_eq!(c.expect_closed().await, None);
        let p = w.receive_and_ack().await;
        assert_eq!(p.payload, id.as_bytes(), "DISCONNECT {reason:?}");
    }
}

/// [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18]
/// [MQTT-3.3.2-20] §3.1.3.2 The will's properties (payload format, message expiry, content
/// type, response topic, correlation data, user properties in order) reach subscribers.
#[tokio::test]
async fn will_properties_forwarded() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let mut wm = will(
        "will/props",
        "{\"state\":\"offline\"}",
        QoS::AtLeastOnce,
        false,
    );
    let props = &mut wm.properties;
    props.payload_format_indicator = Some(1);
    props.message_expiry_interval = Some(120);
    props.content_type = Some("application/json".into());
    props.response_topic = Some("replies/dying".into());
    props.correlation_data = Some(b"\x00\x01corr".to_vec().into());
    props.user_properties = vec![
        ("b".into(), "2".into()),
        ("a".into(), "1".into()),
        ("b".into(), "3".into()),
    ];
    let c = connected(&b, with_will("propful", V5, wm)).await;
    c.drop_connection();

    let p = w.receive_and_ack().await;
    assert_eq!(&p.payload[..], b"{\"state\":\"offline\"}");
    let got = &p.properties;
    assert_eq!(got.payload_format_indicator, Some(1));
    assert!(
        got.message_expiry_interval
            .is_some_and(|e| e > 0 && e <= 120),
        "{:?}",
        got.message_expiry_interval
    );
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert_eq!(got.response_topic.as_deref(), Some("replies/dying"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"\x00\x01corr"[..]));
    let expected: Vec<(String, String)> = [("b", "2"), ("a", "1"), ("b", "3")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got.user_properties, expected);
    assert_eq!(
        got.will_delay_interval, None,
        "Will Delay Interval is not a PUBLISH property"
    );
}

/// [MQTT-3.1.2-15] (3.1.1: [MQTT-3.1.2-17]) A will with Will Retain 1 is published as a
/// retained message: a client subscribing afterwards receives it with RETAIN 1.
#[tokio::test]
async fn will_retain_sets_retained_message() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "status/#").await;
    for v in [V311, V5] {
        let topic = format!("status/{v:?}");
        let c = connected(
            &b,
            with_will(
                &format!("device-{v:?}"),
                v,
                will(&topic, "offline", QoS::AtLeastOnce, true),
            ),
        )
        .await;
        c.drop_connection();
        // The live copy shows the will was published (RETAIN 0: Retain As Published is off).
        let live = w.receive_and_ack().await;
        assert_eq!(&live.payload[..], b"offline", "{v:?}");

        let mut later = b.client(&format!("later-{v:?}"), v).await;
        later.sub(&topic, QoS::AtLeastOnce).await;
        let p = later.receive_and_ack().await;
        assert!(
            p.retain,
            "{v:?}: the will is the retained message of its topic"
        );
        assert_eq!(&p.payload[..], b"offline", "{v:?}");
    }
}

/// [MQTT-3.1.2-8] §3.1.3.2.2 A will with a Will Delay Interval of 1 s is not published when the
/// connection drops, but once the delay has passed.
#[tokio::test]
async fn will_delay_defers_publication() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let c = connected(&b, delayed_will("delayed", 10, 1, "will/delayed")).await;
    let dropped = Instant::now();
    c.drop_connection();
    assert_eq!(
        w.recv_within(Duration::from_millis(700)).await,
        None,
        "published before the delay"
    );
    let p = w.receive_and_ack().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("will/delayed", &b"late"[..])
    );
    let waited = dropped.elapsed();
    assert!(
        waited >= Duration::from_millis(950),
        "published after {waited:?}, before the 1 s delay"
    );
    w.expect_nothing().await;
}

/// [MQTT-3.1.3-9] [MQTT-3.1.2-8] A new connection to the session within the will delay
/// cancels the will: it is never published.
#[tokio::test]
async fn reconnect_within_will_delay_cancels_will() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let c = connected(&b, delayed_will("flaky", 10, 1, "will/flaky")).await;
    c.drop_connection();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut back = Client::open(b.addr, V5).await;
    let ack = back.connect(connect_persistent("flaky", V5, 10)).await;
    assert!(ack.session_present);
    assert_eq!(
        w.recv_within(Duration::from_millis(1500)).await,
        None,
        "the will was cancelled"
    );
    back.disconnect().await;
    w.expect_nothing().await;
}

/// [MQTT-3.1.2-8] §3.1.3.2.2 The will is published when the will delay passes or the session
/// ends, whichever is first: with a session expiry of 1 s and a will delay of 10 s it comes
/// after about 1 s.
#[tokio::test]
async fn will_published_when_session_ends_before_delay() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let c = connected(&b, delayed_will("short-lived", 1, 10, "will/short")).await;
    let dropped = Instant::now();
    c.drop_connection();
    assert_eq!(
        w.recv_within(Duration::from_millis(700)).await,
        None,
        "published before the session ended"
    );
    let p = w.receive_and_ack().await;
    assert_eq!(p.topic, "will/short");
    let waited = dropped.elapsed();
    assert!(
        waited < Duration::from_secs(3),
        "published after {waited:?}: the session ended at 1 s"
    );
}

/// [MQTT-3.1.2-8] §3.1.2.11.2 A session with expiry 0 ends when its connection closes, so a
/// delayed will is published at once.
#[tokio::test]
async fn will_delay_with_session_expiry_zero_publishes_at_close() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    let c = connected(&b, delayed_will("ephemeral", 0, 10, "will/ephemeral")).await;
    c.drop_connection();
    match w.recv_within(Duration::from_secs(1)).await {
        Some(Packet::Publish(p)) => assert_eq!(p.topic, "will/ephemeral"),
        other => panic!("expected the will at once, got {other:?}"),
    }
}

/// [MQTT-3.1.4-3] §3.1.4 (3.1.1: [MQTT-3.1.4-2] [MQTT-3.1.2-8]) When a connection is taken over
/// its will (without delay) is published, whether the new connection starts clean or resumes.
#[tokio::test]
async fn takeover_publishes_old_will() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    for v in [V311, V5] {
        for clean in [true, false] {
            let id = format!("twin-{v:?}-{clean}");
            let mut first = with_will(&id, v, will("will/twin", &id, QoS::AtLeastOnce, false));
            first.clean_start = false;
            if v == V5 {
                first.properties.session_expiry_interval = Some(60);
            }
            let _old = connected(&b, first).await;
            let mut second = connect(&id, v);
            second.clean_start = clean;
            let _new = connected(&b, second).await;
            let p = w.receive_and_ack().await;
            assert_eq!(p.payload, id.as_bytes(), "{v:?} clean start {clean}");
        }
    }
}

/// [MQTT-3.1.2-8] §3.1.2.5 A connection the server closes for a protocol error (here a second
/// CONNECT) publishes its will.
#[tokio::test]
async fn will_published_after_protocol_error() {
    let b = TestBroker::start().await;
    let mut w = watcher(&b, "will/#").await;
    for v in [V311, V5] {
        let id = format!("rude-{v:?}");
        let mut c = connected(
            &b,
            with_will(&id, v, will("will/rude", &id, QoS::AtLeastOnce, false)),
        )
        .await;
        c.send(&Packet::Connect(Box::new(connect(&id, v)))).await;
        c.expect_closed().await;
        let p = w.receive_and_ack().await;
        assert_eq!(p.payload, id.as_bytes(), "{v:?}");
    }
}
