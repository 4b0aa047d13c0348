//! Store invariants checked directly: byte accounting, stale expiry entries, lazy reaping,
//! watcher bookkeeping, and which connection's end drops which KEYNOTIFY registration.

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
    s.watch(&watcher, Bytes::from_static(b"k"), Requester::InProcess, t0);
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
    let now = Instant::now();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let by = Requester::InProcess;
    assert!(s.watch(&a, Bytes::from_static(b"k1"), by, now));
    assert!(s.watch(&a, Bytes::from_static(b"k2"), by, now));
    assert!(s.watch(&b, Bytes::from_static(b"k1"), by, now));
    assert!(s.unwatch("a", b"k2", by));
    assert!(!s.unwatch("a", b"k2", by));
    s.drop_client(&a, 1, now);
    assert!(!s.watched_by.contains_key("a"));
    assert_eq!(s.watchers.len(), 1);
    s.drop_client(&b, 2, now);
    assert!(s.watchers.is_empty() && s.watched_by.is_empty());
}

/// Set `key` and return the client ids notified, sorted.
fn notified(s: &mut Store, key: &'static [u8], now: Instant) -> Vec<String> {
    s.take_notifications();
    s.set(
        Bytes::from_static(key),
        Bytes::from_static(b"v"),
        SetOptions::default(),
        now,
    )
    .expect("the test's quota holds the key");
    let mut ids: Vec<String> = s
        .take_notifications()
        .into_iter()
        .map(|n| n.client_id.to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn a_late_disconnection_of_an_old_connection_keeps_a_newer_ones_registrations() {
    let mut s = store(10, 100);
    let now = Instant::now();
    let c: Arc<str> = Arc::from("c");
    let (k1, k2) = (Bytes::from_static(b"k1"), Bytes::from_static(b"k2"));
    // Connection 3 registers k1, then ends; connection 7 of the same client id registers
    // k1 again and k2 before the store hears of 3's end, and a late request of 3 comes too.
    assert!(s.watch(&c, k1.clone(), Requester::Connection(3), now));
    assert!(s.watch(&c, k1.clone(), Requester::Connection(7), now));
    assert!(s.watch(&c, k2, Requester::Connection(7), now));
    assert!(s.watch(&c, k1, Requester::Connection(3), now));
    s.drop_client(&c, 3, now);
    assert_eq!(notified(&mut s, b"k1", now), ["c"]);
    assert_eq!(notified(&mut s, b"k2", now), ["c"]);
    // 3's late STOP does not undo 7's KEYNOTIFY; 7's own does.
    assert!(!s.unwatch("c", b"k1", Requester::Connection(3)));
    assert_eq!(notified(&mut s, b"k1", now), ["c"]);
    assert!(s.unwatch("c", b"k1", Requester::Connection(7)));
    assert!(notified(&mut s, b"k1", now).is_empty());
    // 7's end drops the rest.
    s.drop_client(&c, 7, now);
    assert!(notified(&mut s, b"k2", now).is_empty());
    assert!(s.watchers.is_empty() && s.watched_by.is_empty());
}

#[test]
fn connection_ids_need_not_follow_the_order_of_attaching() {
    let mut s = store(10, 100);
    let now = Instant::now();
    let c: Arc<str> = Arc::from("c");
    // Connection 9 ends (taken over by connection 8, accepted earlier but slower to
    // CONNECT): 8 registers, and the disconnection of 9 does not end that.
    s.drop_client(&c, 9, now);
    assert!(s.watch(&c, Bytes::from_static(b"k"), Requester::Connection(8), now));
    s.drop_client(&c, 9, now);
    assert_eq!(notified(&mut s, b"k", now), ["c"]);
    s.drop_client(&c, 8, now);
    assert!(notified(&mut s, b"k", now).is_empty());
}

#[test]
fn a_request_from_an_ended_connection_registers_nothing() {
    let mut s = store(10, 100);
    let now = Instant::now();
    let (c, other): (Arc<str>, Arc<str>) = (Arc::from("c"), Arc::from("other"));
    let k = Bytes::from_static(b"k");
    s.drop_client(&c, 5, now);
    // Connection 5 has ended: its KEYNOTIFY, queued behind the disconnection, must not
    // register for a later connection with the same client id.
    assert!(!s.watch(&c, k.clone(), Requester::Connection(5), now));
    // A will's connection has ended too.
    assert!(!s.watch(&c, k.clone(), Requester::Ended, now));
    assert!(s.watched_by.is_empty());
    // Another client id's connection is unaffected.
    assert!(s.watch(&other, k.clone(), Requester::Connection(4), now));
    assert_eq!(notified(&mut s, b"k", now), ["other"]);
    // The next connection of `c` registers as usual.
    assert!(s.watch(&c, k, Requester::Connection(6), now));
    assert_eq!(notified(&mut s, b"k", now), ["c", "other"]);
    // A will cannot STOP a live connection's registration.
    assert!(!s.unwatch("c", b"k", Requester::Ended));
    assert_eq!(notified(&mut s, b"k", now), ["c", "other"]);
}

#[test]
fn in_process_registrations_end_at_any_disconnection_of_their_client_id() {
    let mut s = store(10, 100);
    let now = Instant::now();
    let c: Arc<str> = Arc::from("c");
    s.drop_client(&c, 9, now);
    // In-process callers name no connection: an ended one does not stop them registering,
    assert!(s.watch(&c, Bytes::from_static(b"k"), Requester::InProcess, now));
    assert_eq!(notified(&mut s, b"k", now), ["c"]);
    // and any disconnection of the client id ends them.
    s.drop_client(&c, 1, now);
    assert!(notified(&mut s, b"k", now).is_empty());
    // Their STOP ends the registration whoever made it.
    assert!(s.watch(&c, Bytes::from_static(b"k"), Requester::Connection(2), now));
    assert!(s.unwatch("c", b"k", Requester::InProcess));
    assert!(s.watched_by.is_empty() && s.watchers.is_empty());
}

#[test]
fn ended_connections_are_forgotten_after_the_retention() {
    let mut s = store(10, 100);
    let t0 = Instant::now();
    let half = ENDED_RETENTION / 2;
    // Client id churn: a thousand ids connect once and go.
    for i in 0..1_000 {
        let id: Arc<str> = Arc::from(format!("churn-{i}"));
        s.drop_client(&id, i, t0);
    }
    let c: Arc<str> = Arc::from("c");
    s.drop_client(&c, 2_000, t0 + half);
    assert_eq!((s.ended.len(), s.ended_log.len()), (1_001, 1_001));
    let churn: Arc<str> = Arc::from("churn-0");
    let k = Bytes::from_static(b"k");
    // Just before the bound, connection 0 is still known to have ended;
    let before = t0 + ENDED_RETENTION - Duration::from_millis(1);
    assert!(!s.watch(&churn, k.clone(), Requester::Connection(0), before));
    assert_eq!(s.ended.len(), 1_001);
    // at the bound it is forgotten, with the rest of the churn.
    assert!(s.watch(
        &churn,
        k.clone(),
        Requester::Connection(0),
        t0 + ENDED_RETENTION
    ));
    assert_eq!((s.ended.len(), s.ended_log.len()), (1, 1));
    assert!(s.watch(
        &c,
        k,
        Requester::Connection(2_000),
        t0 + half + ENDED_RETENTION
    ));
    assert!(s.ended.is_empty() && s.ended_log.is_empty());
}

#[test]
fn a_registration_that_came_too_late_ends_at_the_next_disconnection() {
    let mut s = store(10, 100);
    let t0 = Instant::now();
    let c: Arc<str> = Arc::from("c");
    // Connection 3's KEYNOTIFY arrives after its end was forgotten, so it registers;
    // connection 4 registers another key later.
    assert!(s.watch(&c, Bytes::from_static(b"old"), Requester::Connection(3), t0));
    let later = t0 + ENDED_RETENTION;
    assert!(s.watch(
        &c,
        Bytes::from_static(b"new"),
        Requester::Connection(4),
        later
    ));
    // The next disconnection of the client id (of whichever connection) ends the stale
    // one; 4's, made since, stays until 4 ends.
    s.drop_client(&c, 5, later);
    assert!(notified(&mut s, b"old", later).is_empty());
    assert_eq!(notified(&mut s, b"new", later), ["c"]);
}
