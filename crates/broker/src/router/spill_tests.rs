//! The spill segment format and the disk budget: records read back as written, a damaged
//! record is reported (checksum, torn tail) instead of misread, segments go once consumed,
//! `maxSize` is never passed, and the folder is emptied at start-up.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use edgeplane_codec::{Properties, QoS};

use super::*;
use crate::message::Message;

/// A fresh folder under the system's temporary folder for one test.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "edgeplane-spill-test-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn delivery(n: u64, qos: QoS) -> Delivery {
    let properties = Properties {
        content_type: Some("text/plain".into()),
        user_properties: vec![("k".into(), format!("v{n}"))],
        ..Properties::default()
    };
    let msg = Message {
        topic: format!("t/{n}"),
        payload: Bytes::from(format!("payload {n}")),
        qos,
        retain: n.is_multiple_of(2),
        properties,
        expires_at: None,
        origin: Some("publisher".into()),
        publisher: None,
        store_id: std::sync::OnceLock::new(),
    };
    Delivery {
        msg: Arc::new(msg),
        qos,
        retain: n.is_multiple_of(2),
        packet_id: n as u16,
        dup: n.is_multiple_of(3),
        sub_ids: vec![n as u32, 7],
        seq: n,
        ready: 1000 + n,
        gate: None,
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn buffer(dir: &Path, max_size: u64) -> DiskBuffer {
    DiskBuffer::open(dir, true, max_size, 0, 2).expect("spill folder")
}

#[test]
fn records_read_back_as_written_and_segments_go_once_consumed() {
    let dir = scratch_dir("roundtrip");
    let b = buffer(&dir, 1 << 20);
    let stats = Stats::default();
    let written: Vec<_> = (1..=5)
        .map(|n| {
            let d = delivery(n, QoS::AtLeastOnce);
            if n == 1 {
                let _ = d.msg.store_id.set(42);
            }
            let at = b.append(0, &d, &stats).expect("spilled");
            (d, at)
        })
        .collect();
    assert_eq!(files_in(&dir).len(), 1, "one segment for partition 0");
    assert_eq!(stats.spilled_messages.load(Relaxed), 5);
    assert_eq!(
        stats.spilled_bytes.load(Relaxed),
        fs::metadata(&files_in(&dir)[0])
            .map(|m| m.len())
            .unwrap_or(0)
    );
    for (i, (d, at)) in written.iter().enumerate() {
        let back = b.read(0, *at).expect("reads back");
        assert_eq!(back.msg.topic, d.msg.topic);
        assert_eq!(back.msg.payload, d.msg.payload);
        assert_eq!(back.msg.properties, d.msg.properties);
        assert_eq!(back.msg.origin, d.msg.origin);
        assert_eq!(back.msg.retain, d.msg.retain);
        assert_eq!(
            (back.qos, back.retain, back.dup, back.packet_id),
            (d.qos, d.retain, d.dup, d.packet_id)
        );
        assert_eq!((back.seq, back.ready), (d.seq, d.ready));
        assert_eq!(back.sub_ids, d.sub_ids);
        let id = back.msg.store_id.get().copied();
        assert_eq!(id, (i == 0).then_some(42), "the store id travels along");
        b.release(0, *at, &stats);
        let left = files_in(&dir).len();
        assert_eq!(
            left,
            usize::from(i < 4),
            "deleted only when all are consumed"
        );
    }
    assert_eq!(stats.spilled_messages.load(Relaxed), 0);
    assert_eq!(stats.spilled_bytes.load(Relaxed), 0);
    drop(b);
    assert!(!dir.exists(), "a temporary folder goes with the buffer");
}

#[test]
fn a_damaged_record_fails_its_checksum() {
    let dir = scratch_dir("checksum");
    let b = buffer(&dir, 1 << 20);
    let stats = Stats::default();
    let first = b.append(0, &delivery(1, QoS::AtLeastOnce), &stats);
    let second = b.append(0, &delivery(2, QoS::AtLeastOnce), &stats);
    let (Some(first), Some(second)) = (first, second) else {
        panic!("both spill");
    };
    let path = files_in(&dir).remove(0);
    let mut bytes = fs::read(&path).expect("segment");
    let flip = second.offset as usize + second.len as usize - 3;
    bytes[flip] ^= 0x40;
    fs::write(&path, &bytes).expect("damage it");
    assert!(b.read(0, first).is_ok(), "the record before is intact");
    match b.read(0, second) {
        Err(SpillError::Checksum { offset, .. }) => assert_eq!(offset, u64::from(second.offset)),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn a_torn_tail_is_reported_not_misread() {
    let dir = scratch_dir("torn");
    let b = buffer(&dir, 1 << 20);
    let stats = Stats::default();
    let first = b.append(1, &delivery(1, QoS::AtMostOnce), &stats);
    let second = b.append(1, &delivery(2, QoS::AtMostOnce), &stats);
    let (Some(first), Some(second)) = (first, second) else {
        panic!("both spill");
    };
    let path = files_in(&dir).remove(0);
    let file = OpenOptions::new().write(true).open(&path).expect("segment");
    file.set_len(u64::from(second.offset) + 11)
        .expect("tear it");
    assert!(b.read(1, first).is_ok());
    assert!(
        matches!(b.read(1, second), Err(SpillError::Torn { .. })),
        "cut short"
    );
    // Frames cut anywhere, or with a length past their end, are torn too.
    let mut frame = BytesMut::new();
    encode_frame(&delivery(3, QoS::AtLeastOnce), &mut frame);
    let frame = frame.freeze();
    for cut in [0, 4, 7, 8, frame.len() / 2, frame.len() - 1] {
        assert_eq!(
            decode_frame(frame.slice(..cut)).err(),
            Some(FrameError::Torn),
            "cut at {cut}"
        );
    }
    assert!(decode_frame(frame).is_ok());
}

#[test]
fn max_size_is_never_passed() {
    let dir = scratch_dir("max-size");
    let max = 4096;
    let b = buffer(&dir, max);
    let stats = Stats::default();
    let mut spilled = Vec::new();
    for n in 0..1000 {
        match b.append(0, &delivery(n, QoS::AtLeastOnce), &stats) {
            Some(at) => spilled.push(at),
            None => break,
        }
    }
    assert!(spilled.len() > 10, "{} records fit", spilled.len());
    assert!(spilled.len() < 1000, "the budget stops spilling");
    let on_disk: u64 = files_in(&dir)
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= max, "{on_disk} bytes on disk");
    assert_eq!(stats.spilled_bytes.load(Relaxed), on_disk);
    // Consuming everything frees the budget again.
    for at in spilled {
        b.release(0, at, &stats);
    }
    assert!(b
        .append(0, &delivery(1, QoS::AtLeastOnce), &stats)
        .is_some());
}

#[test]
fn start_up_empties_the_folder_and_partitions_write_their_own_segments() {
    let dir = scratch_dir("startup");
    fs::create_dir_all(&dir).expect("folder");
    fs::write(dir.join("p0-0000000000.spill"), b"left by a previous run").expect("stale");
    let b = DiskBuffer::open(&dir, false, 1 << 20, 0, 2).expect("spill folder");
    assert!(files_in(&dir).is_empty(), "stale spill files removed");
    let stats = Stats::default();
    assert!(b
        .append(0, &delivery(1, QoS::AtLeastOnce), &stats)
        .is_some());
    assert!(b
        .append(1, &delivery(2, QoS::AtLeastOnce), &stats)
        .is_some());
    let names: Vec<_> = files_in(&dir)
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect();
    assert_eq!(names, ["p0-0000000000.spill", "p1-0000000000.spill"]);
    drop(b);
    assert!(
        dir.exists(),
        "a data-folder buffer is kept (emptied at the next start)"
    );
    let _ = fs::remove_dir_all(&dir);
}
