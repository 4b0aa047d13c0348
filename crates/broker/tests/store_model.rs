//! The durable store against an in-memory model: random sequences of records (sessions,
//! subscriptions, queued messages and their acknowledgements, QoS 2 state, retained
//! messages) are written to a real store, with compaction forced often, and what a fresh
//! recovery reads back must equal the model that applied the same records.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use edgeplane_broker::message::Message;
use edgeplane_broker::store::{
    self, Policy, Queued, Record, Repair, SessionMeta, State, Store, StoreOptions,
};
use edgeplane_codec::{Properties, ProtocolVersion, Publish, QoS, SubOptions};

struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn message(topic: &str, payload: &str) -> Arc<Message> {
    let p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: 1,
        properties: Properties::default(),
        payload: Bytes::from(payload.to_owned()),
    };
    Arc::new(Message::from_publish(p, Some("origin".into()), None))
}

/// What a user could observe of the state, in a comparable form.
fn summary(s: &State) -> String {
    let mut out = BTreeMap::new();
    for (client, sess) in &s.sessions {
        let queue: Vec<String> = sess
            .queue
            .iter()
            .map(|(seq, q)| {
                let body = s.messages.get(&q.msg_id).map(|m| m.msg.payload.clone());
                format!("{seq}:{body:?}:{}:{:?}", q.released, q.qos)
            })
            .collect();
        let subs: Vec<&String> = sess.subs.keys().collect();
        out.insert(
            client.to_string(),
            format!(
                "expiry={} subs={subs:?} queue={queue:?} incoming={:?}",
                sess.meta.expiry, sess.incoming
            ),
        );
    }
    for (topic, id) in &s.retained {
        let body = s.messages.get(id).map(|m| m.msg.payload.clone());
        out.insert(format!("retained {topic}"), format!("{body:?}"));
    }
    format!("{out:#?}")
}

#[test]
fn recovery_matches_the_model_through_compactions() {
    for seed in 1..=20u64 {
        let dir = std::env::temp_dir().join(format!(
            "edgeplane-store-model-{}-{seed}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let options = StoreOptions {
            compact_min_bytes: 4096,
        };
        let (store, _) = Store::open(&dir, Policy::default(), options.clone()).expect("open");
        let mut model = State::default();
        let mut rng = Rng(seed * 7919);
        let mut seqs: BTreeMap<u64, u64> = BTreeMap::new();
        let mut next_id = 1_000;
        let apply = |store: &Store, model: &mut State, r: Record| {
            model.apply(r.clone());
            store.append(r);
        };
        for step in 0..2_000 {
            let c = rng.next(4);
            let client: Arc<str> = format!("c{c}").into();
            match rng.next(9) {
                0 => {
                    let meta = SessionMeta {
                        client,
                        version: ProtocolVersion::V5,
                        expiry: 100 + rng.next(1000) as u32,
                        will: None,
                        disconnected_at: None,
                    };
                    apply(&store, &mut model, Record::Session(Box::new(meta)));
                }
                1 if rng.next(4) == 0 => apply(&store, &mut model, Record::SessionEnd { client }),
                2 => {
                    let filter = format!("t/{}", rng.next(5));
                    let opts = SubOptions::new(QoS::ExactlyOnce);
                    apply(
                        &store,
                        &mut model,
                        Record::Subscribe {
                            client,
                            filter,
                            opts,
                            sub_id: None,
                        },
                    );
                }
                3 => {
                    let filter = format!("t/{}", rng.next(5));
                    apply(&store, &mut model, Record::Unsubscribe { client, filter });
                }
                4 | 5 => {
                    next_id += 1;
                    let msg = message("t/x", &format!("m{step}"));
                    apply(&store, &mut model, Record::Message { id: next_id, msg });
                    let seq = seqs.entry(c).or_insert(0);
                    *seq += 1;
                    let q = Queued {
                        client,
                        seq: *seq,
                        msg_id: next_id,
                        qos: QoS::ExactlyOnce,
                        retain: false,
                        sub_ids: vec![],
                        origin: None,
                    };
                    apply(&store, &mut model, Record::Enqueue(q));
                }
                6 => {
                    let seq = 1 + rng.next(seqs.get(&c).copied().unwrap_or(0) + 1);
                    if rng.next(2) == 0 {
                        apply(&store, &mut model, Record::Done { client, seq });
                    } else {
                        apply(&store, &mut model, Record::Released { client, seq });
                    }
                }
                7 => {
                    let packet_id = 1 + rng.next(5) as u16;
                    let released = rng.next(2) == 0;
                    apply(
                        &store,
                        &mut model,
                        Record::Incoming {
                            client,
                            packet_id,
                            released,
                        },
                    );
                }
                _ => {
                    let topic = format!("r/{}", rng.next(3));
                    if rng.next(3) == 0 {
                        apply(
                            &store,
                            &mut model,
                            Record::Retain {
                                topic,
                                msg_id: None,
                            },
                        );
                    } else {
                        next_id += 1;
                        let msg = message(&topic, &format!("r{step}"));
                        apply(&store, &mut model, Record::Message { id: next_id, msg });
                        apply(
                            &store,
                            &mut model,
                            Record::Retain {
                                topic,
                                msg_id: Some(next_id),
                            },
                        );
                    }
                }
            }
        }
        store.close();
        drop(store);
        model.collect_garbage();
        let recovered = store::recover(&dir, Repair::No).expect("recover");
        assert_eq!(summary(&recovered.state), summary(&model), "seed {seed}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn session(client: &Arc<str>) -> Record {
    Record::Session(Box::new(SessionMeta {
        client: Arc::clone(client),
        version: ProtocolVersion::V5,
        expiry: 3600,
        will: None,
        disconnected_at: None,
    }))
}

fn enqueue(client: &Arc<str>, seq: u64, msg_id: u64) -> Record {
    Record::Enqueue(Queued {
        client: Arc::clone(client),
        seq,
        msg_id,
        qos: QoS::AtLeastOnce,
        retain: false,
        sub_ids: vec![],
        origin: None,
    })
}

fn queued_payloads(state: &State, client: &str) -> Vec<Option<Bytes>> {
    state.sessions[client]
        .queue
        .values()
        .map(|q| state.messages.get(&q.msg_id).map(|m| m.msg.payload.clone()))
        .collect()
}

/// A message routed to sessions of two partitions: the first session's delivery is
/// acknowledged (its entry done) before the second partition writes its entry. Replay must
/// still find the body for the second entry, and drop it only once nothing refers to it.
#[test]
fn a_body_outlives_its_first_reader_until_every_reference_is_written() {
    let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
    let mut state = State::default();
    state.apply(session(&a));
    state.apply(session(&b));
    state.apply(Record::Message {
        id: 7,
        msg: message("t/x", "body"),
    });
    state.apply(enqueue(&a, 1, 7));
    state.apply(Record::Done {
        client: Arc::clone(&a),
        seq: 1,
    });
    state.apply(enqueue(&b, 1, 7));
    assert_eq!(
        queued_payloads(&state, "b"),
        vec![Some(Bytes::from("body"))]
    );
    state.collect_garbage();
    assert_eq!(
        queued_payloads(&state, "b"),
        vec![Some(Bytes::from("body"))]
    );

    state.apply(Record::Done {
        client: Arc::clone(&b),
        seq: 1,
    });
    state.sweep();
    assert!(
        state.messages.is_empty(),
        "a body nothing refers to or holds is swept"
    );
}

/// While a partition still holds a message whose body is written but whose entry is not
/// (yet), a compaction must keep the body: the entry that follows in the new segment refers
/// to it. Compaction here runs after every write (`compact_min_bytes: 1`), and each record
/// is made durable before the next is appended, so one lands between the two.
#[test]
fn compaction_keeps_a_body_whose_reference_is_still_to_come() {
    let dir = std::env::temp_dir().join(format!(
        "edgeplane-store-pending-ref-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let options = StoreOptions {
        compact_min_bytes: 1,
    };
    let (store, _) = Store::open(&dir, Policy::default(), options).expect("open");
    let client: Arc<str> = "c".into();
    let wait = |lsn: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.durable() < lsn {
            assert!(std::time::Instant::now() < deadline, "lsn {lsn} durable");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    };
    wait(store.append(session(&client)));
    let held = message("t/x", "in flight");
    wait(store.append(Record::Message {
        id: 11,
        msg: Arc::clone(&held),
    }));
    // Records that add nothing to the state grow the log past twice the state: compactions
    // run while the body has no reference.
    for _ in 0..20 {
        wait(store.append(session(&client)));
    }
    wait(store.append(enqueue(&client, 1, 11)));
    drop(held);
    store.close();
    drop(store);
    let recovered = store::recover(&dir, Repair::No).expect("recover");
    assert!(recovered.last_segment > 1, "the log was compacted");
    assert_eq!(
        queued_payloads(&recovered.state, "c"),
        vec![Some(Bytes::from("in flight"))]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
