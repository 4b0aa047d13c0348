//! A full disk under the durable store: a 4 MiB tmpfs is the data folder and a filler file
//! takes the rest of it. Publishers' acknowledgements are withheld (nothing is acknowledged
//! that is not on disk), the store's readiness probe says why, and when space is freed the
//! store writes again, the acknowledgements go out, and every acknowledged message is
//! delivered, also after a restart on the same folder.
//!
//! Mounting needs root (CAP_SYS_ADMIN); without it the test prints why it is skipped.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use edgeplane_broker::Stats;
use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use edgeplane_tests::*;

use super::{eventually, number_of};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    /// Mount a `size` tmpfs on `dir`, or say why it cannot be done.
    fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Mount(dir.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A file that takes all the free space of its filesystem, removed when dropped (so a
/// failing test does not leave the store retrying forever).
struct Filler(PathBuf);

impl Filler {
    fn fill(path: PathBuf) -> Filler {
        let mut f = std::fs::File::create(&path).expect("filler file");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        // The last partial block: byte by byte until nothing fits.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        Filler(path)
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `n`, padded to 8 KiB: more than the rest of the store file's last page, which the full
/// filesystem still lets it use.
fn big(n: usize) -> String {
    format!("{n:<8192}")
}

async fn broker_on(dir: &Path) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::with(move |s| s.data_dir = Some(dir)).await
}

#[tokio::test]
async fn full_disk_withholds_acks_and_recovers_without_loss() {
    const COUNT: usize = 20;
    let root = TempDir::new("disk-full");
    let _mount = match Mount::tmpfs(&root, "4m") {
        Ok(m) => m,
        Err(why) => {
            println!("SKIPPED full_disk_withholds_acks_and_recovers_without_loss: cannot mount a 4 MiB tmpfs ({why})");
            return;
        }
    };
    let data = root.join("data");
    std::fs::create_dir(&data).expect("data folder");
    let b = broker_on(&data).await;
    let probe = b.broker.store_probe().expect("a store");
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    assert_eq!(probe(), None, "the store writes before the disk fills");

    let filler = Filler::fill(root.join("filler"));
    let mut p = b.client("publisher", V5).await;
    for n in 0..COUNT {
        let m = publish("t", &big(n), QoS::AtLeastOnce, n as u16 + 1);
        p.send(&Packet::Publish(m)).await;
    }
    // Acknowledgements wait for the disk; a refusal would be 0x97, never a success.
    let mut acked = Vec::new();
    while let Some(packet) = p.recv_within(QUIET).await {
        match packet {
            Packet::PubAck(a) if a.reason == ReasonCode::SUCCESS => acked.push(a.packet_id),
            Packet::PubAck(a) => assert_eq!(a.reason, ReasonCode::QUOTA_EXCEEDED),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(
        acked.is_empty(),
        "nothing is acknowledged on a full disk: {acked:?}"
    );
    eventually("the store probe reports the full disk", || {
        probe().is_some()
    })
    .await;
    let why = probe().unwrap_or_default();
    assert!(why.contains("No space left"), "{why}");
    drop(filler);
    while acked.len() < COUNT {
        match p.recv_within(WAIT).await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason, ReasonCode::SUCCESS);
                acked.push(a.packet_id);
            }
            other => panic!("expected the withheld PUBACKs, got {other:?}"),
        }
    }
    assert_eq!(probe(), None, "the store writes again");
    p.disconnect().await;
    // Nothing acknowledged is lost, and the log is sound: a restart reads it back.
    b.broker.shutdown(std::time::Duration::from_secs(1)).await;
    let b = broker_on(&data).await;
    let mut sub = Client::open(b.addr, V5).await;
    let ack = sub.connect(connect_persistent("keeper", V5, 3600)).await;
    assert!(ack.session_present);
    let mut got = Vec::new();
    while got.len() < COUNT {
        let m = sub.expect_publish().await;
        sub.send(&Packet::PubAck(Ack::new(m.packet_id, ReasonCode::SUCCESS)))
            .await;
        got.push(number_of(&m));
    }
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
}

/// `persistence.maxSize` caps the store: once the log is over it, MQTT 5 QoS 1/2 publishes
/// get 0x97 Quota exceeded (nothing refused is delivered); after the subscriber takes its
/// messages the log compacts and publishing is accepted again.
#[tokio::test]
async fn store_over_max_size_refuses_v5_publishes_until_it_compacts() {
    let root = TempDir::new("store-max-size");
    let data = root.to_path_buf();
    let b = TestBroker::with(move |s| {
        s.data_dir = Some(data);
        s.persistence.max_size = Some(64 * 1024);
    })
    .await;
    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    sub.sub("t", QoS::AtLeastOnce).await;
    sub.disconnect().await;

    let mut p = b.client("publisher", V5).await;
    let mut accepted = Vec::new();
    for n in 0..40 {
        p.send(&Packet::Publish(publish(
            "t",
            &big(n),
            QoS::AtLeastOnce,
            n as u16 + 1,
        )))
        .await;
        match p.recv().await {
            Some(Packet::PubAck(a)) if a.reason == ReasonCode::SUCCESS => accepted.push(n),
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason, ReasonCode::QUOTA_EXCEEDED);
                break;
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    assert!(accepted.len() < 40, "a publish is refused past maxSize");
    assert_eq!(Stats::get(&b.broker.stats().rejected_disk), 1);

    let mut sub = Client::open(b.addr, V5).await;
    sub.connect(connect_persistent("keeper", V5, 3600)).await;
    let mut got = Vec::new();
    while got.len() < accepted.len() {
        let m = sub.expect_publish().await;
        sub.send(&Packet::PubAck(Ack::new(m.packet_id, ReasonCode::SUCCESS)))
            .await;
        got.push(number_of(&m));
    }
    assert_eq!(got, accepted);
    sub.expect_nothing().await;
    let again = publish("t", &big(100), QoS::AtLeastOnce, 100);
    p.send(&Packet::Publish(again)).await;
    match p.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!(a.reason, ReasonCode::SUCCESS, "compacted"),
        other => panic!("expected PUBACK, got {other:?}"),
    }
}
