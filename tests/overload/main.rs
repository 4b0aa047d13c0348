//! Bounded memory under overload, over real sockets: a subscriber's queue limit in bytes
//! with each strategy, the broker-wide `maxQueuedBytes` bound (MQTT 5 publishers refused
//! with 0x97 Quota exceeded, MQTT 3.1.1 publishers no longer read until the queues drain),
//! and a full disk under the durable store.

mod disk_full;

use edgeplane_broker::settings::{QueueLimit, QueueStrategy};
use edgeplane_broker::{Settings, Stats};
use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

/// Payload size of the numbered messages; each is accounted 1 (topic) + 1,000 + 160 bytes.
const SIZE: usize = 1000;
const WEIGHT: u64 = 1161;

/// `n`, padded to [`SIZE`] bytes.
fn numbered(n: usize) -> String {
    format!("{n:<SIZE$}")
}

fn number_of(p: &codec::Publish) -> usize {
    let text = String::from_utf8_lossy(&p.payload);
    text.trim_end().parse().expect("numbered payload")
}

fn limit(
    length: u64,
    max_bytes: Option<u64>,
    strategy: QueueStrategy,
) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.clients.subscriber_queue_limit = Some(QueueLimit {
            length,
            max_bytes,
            strategy,
        })
    }
}

/// A persistent subscriber to `t` at `qos` that then goes offline.
async fn offline_subscriber(b: &TestBroker, id: &str, v: codec::ProtocolVersion, qos: QoS) {
    let mut c = Client::open(b.addr, v).await;
    c.connect(connect_persistent(id, v, 3600)).await;
    c.sub("t", qos).await;
    c.disconnect().await;
}

/// Publish `numbers` to `t` at `qos` from a fresh MQTT 5 client, completing each flow.
async fn publish_numbers(b: &TestBroker, qos: QoS, numbers: impl Iterator<Item = usize>) {
    let mut p = b.client("publisher", V5).await;
    for (i, n) in numbers.enumerate() {
        let id = if qos == QoS::AtMostOnce {
            0
        } else {
            i as u16 + 1
        };
        p.publish(publish("t", &numbered(n), qos, id)).await;
    }
    // A round trip after the last message: everything before it was routed.
    p.sub("sync", QoS::AtMostOnce).await;
    p.disconnect().await;
}

/// Reconnect `id` and take what its queue holds, acknowledging each message.
async fn drain(b: &TestBroker, id: &str, v: codec::ProtocolVersion) -> Vec<usize> {
    let mut c = Client::open(b.addr, v).await;
    let ack = c.connect(connect_persistent(id, v, 3600)).await;
    assert!(ack.session_present, "{id}'s session is kept");
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(QUIET * 2).await {
        match p {
            Packet::Publish(p) => {
                got.push(number_of(&p));
                let ack = Ack::new(p.packet_id, ReasonCode::SUCCESS);
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => c.send(&Packet::PubAck(ack)).await,
                    QoS::ExactlyOnce => c.send(&Packet::PubRec(ack)).await,
                }
            }
            Packet::PubRel(a) => {
                c.send(&Packet::PubComp(Ack::new(a.packet_id, ReasonCode::SUCCESS)))
                    .await
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// `maxBytes` with DropOldest: an offline subscriber's queue keeps the newest messages
/// that fit in the byte bound, although the count limit is far away; drops are counted.
#[tokio::test]
async fn byte_limit_drop_oldest_keeps_the_newest_that_fit() {
    for v in [V5, V311] {
        let b = TestBroker::with(limit(1000, Some(6000), QueueStrategy::DropOldest)).await;
        offline_subscriber(&b, "sub", v, QoS::AtLeastOnce).await;
        publish_numbers(&b, QoS::AtLeastOnce, 0..20).await;
        let stats = b.broker.stats_handle();
        eventually("five messages queued", || {
            stats.queued_bytes() == 5 * WEIGHT
        })
        .await;
        assert_eq!(drain(&b, "sub", v).await, [15, 16, 17, 18, 19], "{v:?}");
        assert_eq!(
            Stats::get(&b.broker.stats().dropped_queue_full),
            15,
            "{v:?}"
        );
        assert_eq!(b.broker.stats().queued_bytes(), 0, "{v:?}: drained");
    }
}

/// `maxBytes` with DropNewest (our extension): the queue keeps the oldest messages that
/// fit; QoS 0 drops are counted apart as well.
#[tokio::test]
async fn byte_limit_drop_newest_keeps_the_oldest() {
    let b = TestBroker::with(|s| {
        limit(1000, Some(6000), QueueStrategy::DropNewest)(s);
        s.clients.queue_qos0_offline = true;
    })
    .await;
    offline_subscriber(&b, "sub", V5, QoS::AtMostOnce).await;
    publish_numbers(&b, QoS::AtMostOnce, 0..20).await;
    assert_eq!(drain(&b, "sub", V5).await, [0, 1, 2, 3, 4]);
    let stats = b.broker.stats();
    assert_eq!(Stats::get(&stats.dropped_queue_full), 15);
    assert_eq!(Stats::get(&stats.dropped_qos0_queue_full), 15);
}

/// DropOldest never drops a QoS 2 message: the oldest QoS 0/1 one goes instead.
#[tokio::test]
async fn drop_oldest_spares_qos2() {
    let b = TestBroker::with(limit(2, None, QueueStrategy::DropOldest)).await;
    offline_subscriber(&b, "sub", V5, QoS::ExactlyOnce).await;
    let mut p = b.client("publisher", V5).await;
    p.publish(publish("t", &numbered(0), QoS::ExactlyOnce, 1))
        .await;
    for n in 1..4 {
        p.publish(publish("t", &numbered(n), QoS::AtLeastOnce, n as u16 + 1))
            .await;
    }
    p.disconnect().await;
    assert_eq!(drain(&b, "sub", V5).await, [0, 3]);
    assert_eq!(Stats::get(&b.broker.stats().dropped_queue_full), 2);
}

/// With queued bytes over `maxQueuedBytes`, an MQTT 5 publisher's QoS 1 and QoS 2
/// messages are refused with 0x97 Quota exceeded and not delivered, its QoS 0 messages are
/// dropped (counted by cause); once the subscriber drains, publishing is accepted again.
/// Everything acknowledged with success arrives.
#[tokio::test]
async fn v5_publishers_get_quota_exceeded_over_the_memory_bound() {
    let b = TestBroker::with(|s| s.clients.max_queued_bytes = 16 * 1024).await;
    offline_subscriber(&b, "sub", V5, QoS::ExactlyOnce).await;
    let mut p = b.client("publisher", V5).await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for n in 0..100 {
        let id = n as u16 + 1;
        p.send(&Packet::Publish(publish(
            "t",
            &numbered(n),
            QoS::AtLeastOnce,
            id,
        )))
        .await;
        match p.recv().await {
            Some(Packet::PubAck(a)) if a.reason == ReasonCode::SUCCESS => accepted.push(n),
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason, ReasonCode::QUOTA_EXCEEDED);
                refused = Some(n);
                break;
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let refused = refused.expect("a publish is refused once the bound is passed");
    assert!(accepted.len() as u64 * WEIGHT > 16 * 1024, "{accepted:?}");
    p.send(&Packet::Publish(publish(
        "t",
        &numbered(500),
        QoS::ExactlyOnce,
        200,
    )))
    .await;
    match p.recv().await {
        Some(Packet::PubRec(a)) => assert_eq!(a.reason, ReasonCode::QUOTA_EXCEEDED),
        other => panic!("expected PUBREC 0x97, got {other:?}"),
    }
    p.send(&Packet::Publish(publish(
        "t",
        &numbered(600),
        QoS::AtMostOnce,
        0,
    )))
    .await;
    p.sub("sync", QoS::AtMostOnce).await;
    let stats = b.broker.stats();
    assert_eq!(Stats::get(&stats.rejected_memory), 2);
    assert_eq!(Stats::get(&stats.dropped_memory), 1);

    assert_eq!(
        drain(&b, "sub", V5).await,
        accepted,
        "refused {refused} is not delivered"
    );
    assert_eq!(stats.queued_bytes(), 0);
    let again = publish("t", &numbered(700), QoS::AtLeastOnce, 300);
    p.send(&Packet::Publish(again)).await;
    match p.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}

/// Wait (bounded) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// With queued bytes over `maxQueuedBytes`, an MQTT 3.1.1 publisher is no longer read: its
/// acknowledgements stop while it keeps sending, but it still gets PINGRESP. When the
/// subscriber drains the queue it is read again, and every message arrives, none refused.
#[tokio::test]
async fn v311_publishers_are_paused_until_memory_falls() {
    // Few enough that all of it fits in what a paused connection still reads, so the
    // PINGREQ behind it is seen.
    const TOTAL: usize = 50;
    let b = TestBroker::with(|s| s.clients.max_queued_bytes = 16 * 1024).await;
    offline_subscriber(&b, "sub", V311, QoS::AtLeastOnce).await;
    let mut p = b.client("publisher", V311).await;
    for n in 0..TOTAL {
        let m = publish("t", &numbered(n), QoS::AtLeastOnce, n as u16 + 1);
        p.send(&Packet::Publish(m)).await;
    }
    let stats = b.broker.stats_handle();
    eventually("the publisher is paused", || {
        Stats::get(&stats.reads_paused_now) == 1
    })
    .await;
    let mut acked = 0;
    while let Some(packet) = p.recv_within(QUIET).await {
        assert!(matches!(packet, Packet::PubAck(_)), "{packet:?}");
        acked += 1;
    }
    assert!(
        acked < TOTAL,
        "acknowledgements stop while paused ({acked}, {} queued, paused {} times, now {})",
        stats.queued_bytes(),
        Stats::get(&stats.reads_paused),
        Stats::get(&stats.reads_paused_now)
    );
    let queued = stats.queued_bytes();
    assert!(
        queued <= 16 * 1024 + 2 * WEIGHT,
        "the bound holds: {queued} queued"
    );
    p.send(&Packet::PingReq).await;
    assert!(
        matches!(p.recv().await, Some(Packet::PingResp)),
        "PINGRESP while paused"
    );

    let mut sub = Client::open(b.addr, V311).await;
    sub.connect(connect_persistent("sub", V311, 3600)).await;
    let mut got = Vec::new();
    while got.len() < TOTAL {
        got.push(number_of(&sub.receive_and_ack().await));
    }
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>());
    while acked < TOTAL {
        match p.recv().await {
            Some(Packet::PubAck(_)) => acked += 1,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert_eq!(Stats::get(&stats.reads_paused_now), 0);
    assert!(Stats::get(&stats.reads_paused) >= 1);
    assert_eq!(Stats::get(&stats.rejected_memory), 0);
}

/// Messages sent to a subscriber that never acknowledges them stay counted until it does:
/// a consumer that reads but does not acknowledge cannot make the broker hold more than
/// `maxQueuedBytes` either.
#[tokio::test]
async fn unacknowledged_deliveries_count_towards_the_bound() {
    let b = TestBroker::with(|s| s.clients.max_queued_bytes = 16 * 1024).await;
    let mut sub = b.client("sub", V5).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    let mut p = b.client("publisher", V5).await;
    let mut refused = false;
    for n in 0..100 {
        let id = n as u16 + 1;
        p.send(&Packet::Publish(publish(
            "t",
            &numbered(n),
            QoS::AtLeastOnce,
            id,
        )))
        .await;
        match p.recv().await {
            Some(Packet::PubAck(a)) if a.reason == ReasonCode::QUOTA_EXCEEDED => {
                refused = true;
                break;
            }
            Some(Packet::PubAck(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(
        refused,
        "refused once the unacknowledged deliveries pass the bound"
    );
    let mut received = 0;
    while let Some(Packet::Publish(m)) = sub.recv_within(QUIET).await {
        sub.send(&Packet::PubAck(Ack::new(m.packet_id, ReasonCode::SUCCESS)))
            .await;
        received += 1;
    }
    assert!(received > 0);
    let stats = b.broker.stats_handle();
    eventually("acknowledged deliveries leave the gauge", || {
        stats.queued_bytes() == 0
    })
    .await;
}
