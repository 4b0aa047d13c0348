//! The disk-backed message buffer (`diskBackedMessageBuffer`) over real sockets: a stalled
//! subscriber's queue spills past a small memory threshold while publishers continue,
//! every message arrives in order once it reads, and the spill folder holds the data while
//! it is stalled and is empty afterwards; with the buffer's `maxSize` spent, the normal
//! queue-full behaviour (0x97 Quota exceeded over `maxQueuedBytes`) applies; a spill write
//! that fails keeps the message in memory.

use std::path::Path;

use edgeplane_broker::settings::DiskBufferSettings;
use edgeplane_broker::{Settings, Stats};
use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

/// Payload size of the numbered messages; each is accounted 1 (topic) + 1,000 + 160 bytes.
const SIZE: usize = 1000;
const WEIGHT: u64 = 1161;
/// Messages the broker accepts from one client before it must wait for PUBACKs (its
/// Receive Maximum is 100).
const WINDOW: usize = 50;

fn numbered(n: usize) -> String {
    format!("{n:<SIZE$}")
}

fn number_of(p: &codec::Publish) -> usize {
    let text = String::from_utf8_lossy(&p.payload);
    text.trim_end().parse().expect("numbered payload")
}

fn buffer(max_size: u64, memory_threshold: u64) -> impl FnOnce(&mut Settings) {
    move |s| {
        s.disk_buffer = Some(DiskBufferSettings {
            max_size,
            memory_threshold: Some(memory_threshold),
        })
    }
}

/// Bytes of the files in `dir` (0 if it does not exist).
fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Wait (bounded, generously for a loaded machine) until `f` holds.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Publish `0..n` to `t` at QoS 1 from `p`, [`WINDOW`] at a time, and return the numbers
/// acknowledged with success, stopping at the first refusal (which is returned too).
async fn publish_window(p: &mut Client, n: usize) -> (Vec<usize>, Option<(usize, ReasonCode)>) {
    let mut accepted = Vec::new();
    for start in (0..n).step_by(WINDOW) {
        let batch: Vec<usize> = (start..n.min(start + WINDOW)).collect();
        for &k in &batch {
            let id = (k % 60_000) as u16 + 1;
            let msg = publish("t", &numbered(k), QoS::AtLeastOnce, id);
            p.send(&Packet::Publish(msg)).await;
        }
        let mut refused = None;
        for &k in &batch {
            match p.recv().await {
                Some(Packet::PubAck(a)) if a.reason == ReasonCode::SUCCESS => accepted.push(k),
                Some(Packet::PubAck(a)) => {
                    refused.get_or_insert((k, a.reason));
                }
                other => panic!("expected PUBACK for {k}, got {other:?}"),
            }
        }
        if refused.is_some() {
            return (accepted, refused);
        }
    }
    (accepted, None)
}

/// Read `count` messages on `c`, acknowledging each, and return their numbers.
async fn read_and_ack(c: &mut Client, count: usize) -> Vec<usize> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match c.recv_within(WAIT * 2).await {
            Some(Packet::Publish(p)) => {
                got.push(number_of(&p));
                if p.qos == QoS::AtLeastOnce {
                    let ack = Ack::new(p.packet_id, ReasonCode::SUCCESS);
                    c.send(&Packet::PubAck(ack)).await;
                }
            }
            other => panic!("expected PUBLISH {} of {count}, got {other:?}", got.len()),
        }
    }
    got
}

/// A connected MQTT 5 subscriber with a persistent session and Receive Maximum 10 stops
/// reading; 2,000 QoS 1 messages (2.3 MB accounted) are published past a 64 KiB memory
/// threshold. They spill: the spill folder holds them and the broker's queued bytes in
/// memory stay far below what is queued. When the subscriber reads, every message arrives
/// once, in order, and the spill folder is emptied.
#[tokio::test]
async fn a_stalled_subscriber_spills_and_gets_everything_in_order() {
    const TOTAL: usize = 2000;
    let data = TempDir::new("disk-buffer-stalled");
    let dir = data.to_path_buf();
    let b = TestBroker::with(move |s| {
        buffer(64 << 20, 64 << 10)(s);
        s.data_dir = Some(dir);
    })
    .await;
    let spill = data.join("spill");
    let mut sub = Client::open(b.addr, V5).await;
    let mut c = connect_persistent("stalled", V5, 3600);
    c.properties.receive_maximum = Some(10);
    sub.connect(c).await;
    sub.sub("t", QoS::AtLeastOnce).await;

    let mut p = b.client("publisher", V5).await;
    let (accepted, refused) = publish_window(&mut p, TOTAL).await;
    assert_eq!(
        refused, None,
        "nothing is refused while the buffer has room"
    );
    assert_eq!(accepted.len(), TOTAL);

    let stats = b.broker.stats();
    let spilled = Stats::get(&stats.spilled_messages);
    assert!(spilled > TOTAL as u64 / 2, "{spilled} of {TOTAL} spilled");
    assert!(
        bytes_in(&spill) > spilled * SIZE as u64,
        "the spill folder holds them"
    );
    assert_eq!(Stats::get(&stats.spilled_bytes), bytes_in(&spill));
    let in_memory = stats.queued_bytes();
    assert!(
        in_memory < TOTAL as u64 * WEIGHT / 4,
        "{in_memory} bytes queued in memory for {} queued",
        TOTAL as u64 * WEIGHT
    );

    let got = read_and_ack(&mut sub, TOTAL).await;
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>(), "all, once, in order");
    sub.expect_nothing().await;
    eventually("spill files deleted once consumed", || {
        bytes_in(&spill) == 0 && Stats::get(&stats.spilled_messages) == 0
    })
    .await;
    assert_eq!(Stats::get(&stats.spilled_bytes), 0);
    assert_eq!(Stats::get(&stats.spill_failures), 0);
}

/// With the buffer's `maxSize` (256 KiB) spent, messages stay in memory until
/// `maxQueuedBytes` (256 KiB) is reached, and then MQTT 5 publishers get 0x97 Quota
/// exceeded as without the buffer; the buffer never holds more than `maxSize`. Everything
/// acknowledged with success arrives in order when the (offline) subscriber comes back,
/// and the private spill folder of a broker without a data folder is emptied.
#[tokio::test]
async fn max_size_spent_gives_the_queue_full_behaviour() {
    const MAX_SIZE: u64 = 256 << 10;
    const MAX_QUEUED: u64 = 256 << 10;
    let b = TestBroker::with(|s| {
        buffer(MAX_SIZE, 32 << 10)(s);
        s.clients.max_queued_bytes = MAX_QUEUED;
    })
    .await;
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("offline", V5, 3600)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut p = b.client("publisher", V5).await;
    let (accepted, refused) = publish_window(&mut p, 5000).await;
    let (first_refused, reason) = refused.expect("publishes are refused once both are full");
    assert_eq!(reason, ReasonCode::QUOTA_EXCEEDED);
    let stats = b.broker.stats();
    assert!(Stats::get(&stats.rejected_memory) >= 1);
    let on_disk = Stats::get(&stats.spilled_bytes);
    assert!(on_disk <= MAX_SIZE, "{on_disk} bytes spilled");
    assert!(on_disk > MAX_SIZE / 2, "{on_disk} bytes spilled");
    assert!(
        accepted.len() as u64 * WEIGHT > MAX_QUEUED + MAX_SIZE / 2,
        "the buffer holds more than memory alone: {} accepted",
        accepted.len()
    );
    assert!(!accepted.contains(&first_refused));

    let mut c = Client::open(b.addr, V5).await;
    let ack = c.connect(connect_persistent("offline", V5, 3600)).await;
    assert!(ack.session_present);
    let got = read_and_ack(&mut c, accepted.len()).await;
    assert_eq!(got, accepted, "everything accepted arrives, in order");
    c.expect_nothing().await;
    eventually("the buffer empties", || {
        Stats::get(&stats.spilled_bytes) == 0 && Stats::get(&stats.spilled_messages) == 0
    })
    .await;
    eventually("queued bytes fall to zero", || stats.queued_bytes() == 0).await;
}

/// The spill folder disappears under the broker (as a failing disk would make writes
/// fail): spilling fails, is counted, and the messages stay in memory; every accepted
/// message still arrives in order.
#[tokio::test]
async fn a_failing_spill_write_keeps_the_message_in_memory() {
    const TOTAL: usize = 300;
    let data = TempDir::new("disk-buffer-failing");
    let dir = data.to_path_buf();
    let b = TestBroker::with(move |s| {
        buffer(64 << 20, 16 << 10)(s);
        s.data_dir = Some(dir);
    })
    .await;
    std::fs::remove_dir_all(data.join("spill")).expect("remove the spill folder");
    let mut sub = Client::open(b.addr, V5).await;
    let mut c = connect_persistent("stalled", V5, 3600);
    c.properties.receive_maximum = Some(10);
    sub.connect(c).await;
    sub.sub("t", QoS::AtLeastOnce).await;

    let mut p = b.client("publisher", V5).await;
    let (accepted, refused) = publish_window(&mut p, TOTAL).await;
    assert_eq!(refused, None);
    assert_eq!(accepted.len(), TOTAL);
    let stats = b.broker.stats();
    assert!(
        Stats::get(&stats.spill_failures) >= 1,
        "the failure is counted"
    );
    assert_eq!(Stats::get(&stats.spilled_messages), 0);
    assert!(
        stats.queued_bytes() > (TOTAL as u64 - 20) * WEIGHT,
        "held in memory"
    );

    let got = read_and_ack(&mut sub, TOTAL).await;
    assert_eq!(got, (0..TOTAL).collect::<Vec<_>>(), "nothing lost");
}
