//! §4.8.2 Shared Subscriptions: `$share/{group}/{filter}` distributes each message to one
//! member of the group (round-robin over connected members, or sticky by the `$partition`
//! user property as in Azure IoT Operations), independently of other groups and of
//! non-shared subscriptions.

use std::collections::HashMap;
use std::time::Duration;

use edgeplane_tests::codec::{
    Ack, Connect, Packet, Properties, QoS, ReasonCode, SubOptions, Subscribe,
};
use edgeplane_tests::*;

/// Payloads `c` receives (acknowledged) until it goes quiet for [`QUIET`].
async fn drain(c: &mut Client) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(QUIET).await {
        match p {
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    let ack = Ack::new(p.packet_id, ReasonCode::SUCCESS);
                    c.send(&Packet::PubAck(ack)).await;
                }
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
    got
}

/// Publish `n` QoS 1 messages "0".."n-1" to `topic`.
async fn publish_n(c: &mut Client, topic: &str, n: u16) {
    for i in 0..n {
        c.publish(publish(topic, &i.to_string(), QoS::AtLeastOnce, i + 1))
            .await;
    }
}

/// Let the broker process a disconnect before the test goes on.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A CONNECT that keeps the session for a minute after the connection ends.
fn persistent(id: &str) -> Connect {
    let mut c = connect(id, V5);
    c.clean_start = false;
    c.properties.session_expiry_interval = Some(60);
    c
}

/// §4.8.2 Each message published to a shared subscription's filter goes to exactly one
/// member; with no `$partition` the members take turns: 6 messages over 2 members are 3
/// each, over 3 members 2 each. MQTT 3.1.1 clients can be members too.
#[tokio::test]
async fn round_robin_over_members() {
    for n in [2usize, 3] {
        let b = TestBroker::start().await;
        let mut members = Vec::new();
        for i in 0..n {
            let v = if i == 1 { V311 } else { V5 };
            let mut m = b.client(&format!("m{i}"), v).await;
            m.sub("$share/g/rr/t", QoS::AtLeastOnce).await;
            members.push(m);
        }
        let mut publ = b.client("pub", V5).await;
        publish_n(&mut publ, "rr/t", 6).await;
        let mut all = Vec::new();
        for m in &mut members {
            let got = drain(m).await;
            assert_eq!(got.len(), 6 / n, "{n} members: {:?} got {got:?}", m.version);
            all.extend(got);
        }
        all.sort();
        assert_eq!(
            all,
            ["0", "1", "2", "3", "4", "5"],
            "{n} members: each message exactly once"
        );
    }
}

/// §4.8.2 Two groups on the same filter are independent: each group gets every message
/// once. A shared subscription is its share name and filter together, so `$share/a/gs/+`
/// is another one beside `$share/a/gs/t`. A non-shared subscription also gets every message.
#[tokio::test]
async fn groups_and_non_shared_subscriptions_each_get_every_message() {
    let b = TestBroker::start().await;
    let mut a1 = b.client("a1", V5).await;
    a1.sub("$share/a/gs/t", QoS::AtLeastOnce).await;
    let mut a2 = b.client("a2", V5).await;
    a2.sub("$share/a/gs/t", QoS::AtLeastOnce).await;
    let mut b1 = b.client("b1", V5).await;
    b1.sub("$share/b/gs/t", QoS::AtLeastOnce).await;
    let mut b2 = b.client("b2", V311).await;
    b2.sub("$share/b/gs/t", QoS::AtLeastOnce).await;
    let mut other_filter = b.client("a-plus", V5).await;
    other_filter.sub("$share/a/gs/+", QoS::AtLeastOnce).await;
    let mut plain = b.client("plain", V5).await;
    plain.sub("gs/t", QoS::AtLeastOnce).await;

    let mut publ = b.client("pub", V5).await;
    publish_n(&mut publ, "gs/t", 4).await;
    for (name, group) in [("a", [&mut a1, &mut a2]), ("b", [&mut b1, &mut b2])] {
        let [m1, m2] = group;
        let mut got = drain(m1).await;
        let second = drain(m2).await;
        assert_eq!(
            (got.len(), second.len()),
            (2, 2),
            "group {name}: {got:?} {second:?}"
        );
        got.extend(second);
        got.sort();
        assert_eq!(got, ["0", "1", "2", "3"], "group {name}");
    }
    assert_eq!(drain(&mut other_filter).await, ["0", "1", "2", "3"]);
    assert_eq!(drain(&mut plain).await, ["0", "1", "2", "3"]);
}

/// §4.8.2 [MQTT-4.8.2-3] A member receives at most the QoS it was granted.
#[tokio::test]
async fn member_granted_qos_respected() {
    let b = TestBroker::start().await;
    let mut m = b.client("m", V5).await;
    m.sub("$share/g/q/t", QoS::AtMostOnce).await;
    let mut publ = b.client("pub", V5).await;
    publ.publish(publish("q/t", "x", QoS::ExactlyOnce, 1)).await;
    let p = m.receive_and_ack().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &b"x"[..]));
}

/// Azure IoT Operations extension: messages with the same `$partition` user property value
/// go to the same member, and different values spread over the members.
#[tokio::test]
async fn partition_property_keeps_related_messages_together() {
    let b = TestBroker::start().await;
    let mut members = Vec::new();
    for i in 0..3 {
        let mut m = b.client(&format!("m{i}"), V5).await;
        m.sub("$share/g/part/t", QoS::AtLeastOnce).await;
        members.push(m);
    }
    let mut publ = b.client("pub", V5).await;
    // Two keys alternating: round-robin over 3 members would give each key to all three.
    for i in 0..20u16 {
        let key = if i % 2 == 0 { "even" } else { "odd" };
        let mut p = publish("part/t", &format!("{key}-{i}"), QoS::AtLeastOnce, i + 1);
        p.properties
            .user_properties
            .push(("$partition".into(), key.into()));
        publ.publish(p).await;
    }
    let mut owner: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for (i, m) in members.iter_mut().enumerate() {
        for payload in drain(m).await {
            total += 1;
            let key = payload.split('-').next().unwrap_or_default().to_owned();
            let first = *owner.entry(key.clone()).or_insert(i);
            assert_eq!(
                first, i,
                "messages with $partition={key} went to members {first} and {i}"
            );
        }
    }
    assert_eq!(total, 20);

    // Many distinct keys use more than one member.
    for i in 0..12u16 {
        let mut p = publish("part/t", "k", QoS::AtLeastOnce, 100 + i);
        p.properties
            .user_properties
            .push(("$partition".into(), format!("key-{i}")));
        publ.publish(p).await;
    }
    let mut used = 0;
    for m in &mut members {
        used += usize::from(!drain(m).await.is_empty());
    }
    assert!(
        used >= 2,
        "12 distinct $partition values all went to one member"
    );
}

/// [MQTT-4.8.2-1] [MQTT-4.8.2-2] A share name must be non-empty, without `/`, `+` or `#`,
/// and be followed by `/` and a topic filter: otherwise SUBACK 0x8F (MQTT 5) / 0x80
/// (MQTT 3.1.1) for that filter, while valid filters in the same SUBSCRIBE are granted.
#[tokio::test]
async fn invalid_share_names_refused() {
    for (v, bad) in [
        (V5, ReasonCode::TOPIC_FILTER_INVALID),
        (V311, ReasonCode::UNSPECIFIED_ERROR),
    ] {
        let b = TestBroker::start().await;
        let mut c = b.client("c", v).await;
        let filters = [
            ("$share/g+/t", QoS::AtLeastOnce),
            ("$share//t", QoS::AtLeastOnce),
            ("$share/g", QoS::AtLeastOnce),
            ("$share/g#/t", QoS::AtLeastOnce),
            ("$share/g/", QoS::AtLeastOnce),
            ("$share/g/a/#/b", QoS::AtLeastOnce),
            ("$share/ok/t", QoS::AtLeastOnce),
        ];
        let ack = c.subscribe(subscribe(5, &filters)).await;
        let mut want = vec![bad; 6];
        want.push(ReasonCode::GRANTED_QOS_1);
        assert_eq!(ack.reasons, want, "{v:?}");
        let mut publ = b.client("pub", v).await;
        publ.publish(publish("t", "x", QoS::AtLeastOnce, 1)).await;
        assert_eq!(
            drain(&mut c).await,
            ["x"],
            "{v:?}: the valid shared subscription works"
        );
    }
}

/// [MQTT-3.8.3-4] No Local on a shared subscription is a Protocol Error: DISCONNECT 0x82 and
/// the connection is closed.
#[tokio::test]
async fn no_local_on_shared_subscription_is_protocol_error() {
    let b = TestBroker::start().await;
    let mut c = b.client("c", V5).await;
    let opts = SubOptions {
        no_local: true,
        ..SubOptions::new(QoS::AtLeastOnce)
    };
    let s = Subscribe {
        packet_id: 1,
        filters: vec![("$share/g/t".into(), opts)],
        properties: Properties::default(),
    };
    c.send(&Packet::Subscribe(s)).await;
    assert_eq!(c.expect_closed().await, Some(ReasonCode::PROTOCOL_ERROR));
    assert_broker_serves(&b).await;
}

/// §4.8.2 When a member unsubscribes, or disconnects and its session ends, the remaining
/// members get every message.
#[tokio::test]
async fn remaining_members_get_all_after_others_leave() {
    let b = TestBroker::start().await;
    let mut stay = b.client("stay", V5).await;
    stay.sub("$share/g/lv/t", QoS::AtLeastOnce).await;
    let mut unsub = b.client("unsub", V5).await;
    unsub.sub("$share/g/lv/t", QoS::AtLeastOnce).await;
    let mut gone = b.client("gone", V311).await;
    gone.sub("$share/g/lv/t", QoS::AtLeastOnce).await;
    let mut publ = b.client("pub", V5).await;

    let ack = unsub.unsubscribe(2, &["$share/g/lv/t"]).await;
    assert_eq!(ack.reasons, vec![ReasonCode::SUCCESS]);
    publish_n(&mut publ, "lv/t", 4).await;
    assert_eq!(drain(&mut unsub).await, Vec::<String>::new());
    let (s, g) = (drain(&mut stay).await, drain(&mut gone).await);
    assert_eq!((s.len(), g.len()), (2, 2), "{s:?} {g:?}");

    gone.disconnect().await;
    settle().await;
    publish_n(&mut publ, "lv/t", 4).await;
    assert_eq!(drain(&mut stay).await, ["0", "1", "2", "3"]);
}

/// §4.8.2 While a member with a persistent session is offline, round-robin skips it: the
/// connected member gets every message and nothing waits in the offline session.
#[tokio::test]
async fn offline_persistent_member_skipped() {
    let b = TestBroker::start().await;
    let mut online = b.client("online", V5).await;
    online.sub("$share/g/off/t", QoS::AtLeastOnce).await;
    let mut away = Client::open(b.addr, V5).await;
    assert_eq!(away.connect(persistent("away")).await.code, 0);
    away.sub("$share/g/off/t", QoS::AtLeastOnce).await;
    away.disconnect().await;
    settle().await;

    let mut publ = b.client("pub", V5).await;
    publish_n(&mut publ, "off/t", 4).await;
    assert_eq!(drain(&mut online).await, ["0", "1", "2", "3"]);

    let mut back = Client::open(b.addr, V5).await;
    let ack = back.connect(persistent("away")).await;
    assert!(ack.session_present);
    back.expect_nothing().await;
    // Back online, it takes its turns again.
    publish_n(&mut publ, "off/t", 4).await;
    let (o, a) = (drain(&mut online).await, drain(&mut back).await);
    assert_eq!((o.len(), a.len()), (2, 2), "{o:?} {a:?}");
}
