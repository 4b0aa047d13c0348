//! The durable store through a real broker: what was acknowledged survives a restart on the
//! same data folder (sessions, subscriptions, queued messages, QoS 2 state, retained
//! messages), a torn tail is cut off with the rest kept, and damage elsewhere stops the
//! start with the file and offset named.

use std::path::Path;

use edgeplane_broker::store::{self, StoreError};
use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

async fn broker_on(dir: &Path) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::with(move |s| s.data_dir = Some(dir)).await
}

async fn restart(b: TestBroker, dir: &Path) -> TestBroker {
    b.broker.shutdown(std::time::Duration::from_secs(1)).await;
    broker_on(dir).await
}

/// A persistent subscriber's subscription and queued QoS 1/2 messages, and a retained
/// message, survive a restart [MQTT-4.1.0-1].
#[tokio::test]
async fn acknowledged_state_survives_a_restart() {
    let dir = TempDir::new("durable-restart");
    let b = broker_on(&dir).await;
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    sub.sub("plant/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut p = b.client("pub", V5).await;
    p.publish(publish("plant/a", "one", QoS::AtLeastOnce, 1))
        .await;
    p.publish(publish("plant/b", "two", QoS::ExactlyOnce, 2))
        .await;
    let mut retained = publish("plant/state", "running", QoS::AtLeastOnce, 3);
    retained.retain = true;
    p.publish(retained).await;
    p.disconnect().await;

    let b = restart(b, &dir).await;
    let mut sub = Client::open(b.addr, V5).await;
    let ack = sub.connect(connect_persistent("keeper", V5, 3600)).await;
    assert!(ack.session_present, "the session survives the restart");
    // Queued messages come back to back (the window allows it): answer every flow.
    let (mut got, mut completed) = (Vec::new(), 0);
    while got.len() < 3 || completed < 1 {
        match sub.recv().await {
            Some(Packet::Publish(m)) => {
                let ack = Ack::new(m.packet_id, ReasonCode::SUCCESS);
                match m.qos {
                    QoS::AtLeastOnce => sub.send(&Packet::PubAck(ack)).await,
                    QoS::ExactlyOnce => sub.send(&Packet::PubRec(ack)).await,
                    QoS::AtMostOnce => {}
                }
                let payload = String::from_utf8_lossy(&m.payload).into_owned();
                got.push((m.topic, payload, m.qos));
            }
            Some(Packet::PubRel(a)) => {
                let comp = Ack::new(a.packet_id, ReasonCode::SUCCESS);
                sub.send(&Packet::PubComp(comp)).await;
                completed += 1;
            }
            other => panic!("expected the queued messages, got {other:?}"),
        }
    }
    assert_eq!(
        got,
        vec![
            ("plant/a".into(), "one".into(), QoS::AtLeastOnce),
            ("plant/b".into(), "two".into(), QoS::ExactlyOnce),
            ("plant/state".into(), "running".into(), QoS::AtLeastOnce),
        ]
    );
    // The subscription itself survived: a new message arrives without subscribing again.
    let mut p = b.client("pub", V5).await;
    p.publish(publish("plant/c", "three", QoS::AtLeastOnce, 4))
        .await;
    assert_eq!(sub.receive_and_ack().await.topic, "plant/c");
    // And the retained message is served to a new subscriber.
    let mut fresh = b.client("fresh", V5).await;
    fresh.sub("plant/state", QoS::AtMostOnce).await;
    let m = fresh.expect_publish().await;
    assert!(m.retain);
    assert_eq!(&m.payload[..], b"running");
}

/// A QoS 2 message received (PUBREC sent) before a restart is recognised when the publisher
/// sends it again, and delivered once [MQTT-4.3.3-10].
#[tokio::test]
async fn qos2_receive_state_survives_a_restart() {
    let dir = TempDir::new("durable-qos2");
    let b = broker_on(&dir).await;
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("once-sub", V5, 3600)).await;
    sub.sub("line/#", QoS::ExactlyOnce).await;
    sub.disconnect().await;
    let mut p = Client::open(b.addr, V5).await;
    p.connect(connect_persistent("once-pub", V5, 3600)).await;
    p.send(&Packet::Publish(publish(
        "line/x",
        "only once",
        QoS::ExactlyOnce,
        7,
    )))
    .await;
    match p.recv().await {
        Some(Packet::PubRec(a)) if a.packet_id == 7 => {}
        other => panic!("expected PUBREC, got {other:?}"),
    }
    p.drop_connection();

    let b = restart(b, &dir).await;
    let mut p = Client::open(b.addr, V5).await;
    assert!(
        p.connect(connect_persistent("once-pub", V5, 3600))
            .await
            .session_present
    );
    // The publisher did not see PUBCOMP: it sends the PUBLISH again with DUP.
    let mut again = publish("line/x", "only once", QoS::ExactlyOnce, 7);
    again.dup = true;
    p.send(&Packet::Publish(again)).await;
    match p.recv().await {
        Some(Packet::PubRec(a)) if a.packet_id == 7 => {}
        other => panic!("expected PUBREC, got {other:?}"),
    }
    p.send(&Packet::PubRel(Ack::new(7, ReasonCode::SUCCESS)))
        .await;
    match p.recv().await {
        Some(Packet::PubComp(a)) if a.packet_id == 7 => {}
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("once-sub", V5, 3600)).await;
    assert_eq!(&sub.receive_and_ack().await.payload[..], b"only once");
    sub.expect_nothing().await;
}

fn segment(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .expect("data folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

/// A write cut short by a crash is truncated at start, with a log line; what precedes it
/// is kept.
#[tokio::test]
async fn torn_tail_is_truncated_and_the_rest_kept() {
    let dir = TempDir::new("durable-torn");
    let b = broker_on(&dir).await;
    let mut p = b.client("pub", V5).await;
    let mut r = publish("site/mode", "auto", QoS::AtLeastOnce, 1);
    r.retain = true;
    p.publish(r).await;
    b.broker.shutdown(std::time::Duration::from_secs(1)).await;
    // Half a frame: a length and part of its body, as a crash mid-write leaves it.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(segment(&dir))
        .expect("open segment");
    f.write_all(&[0, 0, 1, 0, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3])
        .expect("append garbage");
    drop(f);
    let report = store::check(&dir).expect("a torn tail is not an error");
    assert_eq!(report.truncated.len(), 1, "{:?}", report.truncated);
    assert_eq!(report.state.retained.len(), 1);
    let b = broker_on(&dir).await;
    let mut c = b.client("reader", V5).await;
    c.sub("site/mode", QoS::AtMostOnce).await;
    assert_eq!(&c.expect_publish().await.payload[..], b"auto");
}

/// A damaged record with valid ones after it is corruption, not a torn write: the store
/// refuses to start and names the file and offset; `repair` keeps what precedes it.
#[tokio::test]
async fn corruption_is_reported_and_repair_keeps_the_prefix() {
    let dir = TempDir::new("durable-corrupt");
    let b = broker_on(&dir).await;
    let mut p = b.client("pub", V5).await;
    for (i, t) in ["a/1", "a/2", "a/3"].iter().enumerate() {
        let mut r = publish(t, "v", QoS::AtLeastOnce, i as u16 + 1);
        r.retain = true;
        p.publish(r).await;
    }
    b.broker.shutdown(std::time::Duration::from_secs(1)).await;
    let path = segment(&dir);
    let mut bytes = std::fs::read(&path).expect("read segment");
    // Flip a byte inside the first record after the 16-byte header.
    bytes[16 + 12] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write segment");
    match store::check(&dir) {
        Err(StoreError::Corrupt { file, offset, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, 16);
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(_) => panic!("expected corruption to be reported"),
    }
    let repaired = store::repair(&dir).expect("repair");
    assert_eq!(repaired.truncated.len(), 1);
    store::check(&dir).expect("a repaired store checks clean");
}
