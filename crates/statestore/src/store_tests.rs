//! Store invariants checked directly: byte accounting, stale expiry entries, lazy reaping,
//! watcher bookkeeping.

use super::*;

fn store(max_keys: usize, max_bytes: usize) -> Store {
    Store::new(
        "n",
        Limits {
            max_keys,
            max_bytes,
        },
    )
}

fn px(ms: u64) -> SetOptions {
    SetOptions {
        expires: Some(Duration::from_millis(ms)),
        ..SetOptions::default()
    }
}

#[test]
fn bytes_follow_overwrites_deletes_and_expiry() -> Result<(), StoreError> {
    let mut s = store(10, 100);
    let t0 = Instant::now();
    s.set(
        Bytes::from_static(b"ab"),
        Bytes::from_static(b"123"),
        SetOptions::default(),
        t0,
    )?;
    assert_eq!(s.bytes, 5);
    s.set(
        Bytes::from_static(b"ab"),
        Bytes::from_static(b"1"),
        px(10),
        t0,
    )?;
    assert_eq!(s.bytes, 3);
    s.set(
        Bytes::from_static(b"c"),
        Bytes::from_static(b"xyz"),
        SetOptions::default(),
        t0,
    )?;
    assert_eq!(s.bytes, 7);
    s.expire(t0 + Duration::from_millis(10));
    assert_eq!((s.len(), s.bytes), (1, 4));
    s.del(b"c", None, t0)?;
    assert!(s.is_empty());
    assert_eq!(s.bytes, 0);
    Ok(())
}

#[test]
fn a_rewritten_key_outlives_its_old_expiry() -> Result<(), StoreError> {
    let mut s = store(10, 100);
    let t0 = Instant::now();
    s.set(
        Bytes::from_static(b"k"),
        Bytes::from_static(b"1"),
        px(10),
        t0,
    )?;
    s.set(
        Bytes::from_static(b"k"),
        Bytes::from_static(b"2"),
        SetOptions::default(),
        t0,
    )?;
    s.expire(t0 + Duration::from_secs(1));
    assert!(s.get(b"k", t0 + Duration::from_secs(1)).is_some());
    assert_eq!(s.next_expiry(), None, "the stale heap entry was consumed");
    Ok(())
}

#[test]
fn expired_keys_are_gone_before_the_timer_fires() -> Result<(), StoreError> {
    let mut s = store(1, 100);
    let t0 = Instant::now();
    let watcher: Arc<str> = Arc::from("w");
    s.watch(&watcher, Bytes::from_static(b"k"));
    s.set(
        Bytes::from_static(b"k"),
        Bytes::from_static(b"1"),
        px(10),
        t0,
    )?;
    let later = t0 + Duration::from_millis(20);
    assert!(s.get(b"k", later).is_none());
    // The quota counts live keys only.
    s.set(
        Bytes::from_static(b"j"),
        Bytes::from_static(b"1"),
        SetOptions::default(),
        later,
    )?;
    let ops: Vec<_> = s
        .take_notifications()
        .into_iter()
        .map(|n| n.value)
        .collect();
    assert_eq!(ops, [Some(Bytes::from_static(b"1")), None]);
    Ok(())
}

#[test]
fn watchers_are_tracked_both_ways() {
    let mut s = store(10, 100);
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    s.watch(&a, Bytes::from_static(b"k1"));
    s.watch(&a, Bytes::from_static(b"k2"));
    s.watch(&b, Bytes::from_static(b"k1"));
    assert!(s.unwatch("a", b"k2"));
    assert!(!s.unwatch("a", b"k2"));
    s.drop_client("a");
    assert!(!s.watched_by.contains_key("a"));
    assert_eq!(s.watchers.len(), 1);
    s.drop_client("b");
    assert!(s.watchers.is_empty() && s.watched_by.is_empty());
}
