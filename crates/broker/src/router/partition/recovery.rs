//! Start-up from the store: the recovered sessions go to the partitions that own their
//! client ids (the partition count may differ from the last run), with subscriptions back in
//! the trie and shared groups, queues and QoS 2 state as they were, and the timers of wills
//! and session expiry running on from when each connection ended. Every recovered session
//! starts offline; a session whose connection the crash ended is treated as ended now.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::session::{packet_id_of, Inflight, Session};
use super::super::{Delivery, Router};
use super::{Partition, TimerKind};
use crate::stats::Stats;
use crate::store::model::{SessionState, StoredMessage};
use crate::store::record::unix_ms;
use crate::store::{Record, SessionMeta, State};

/// Hand the recovered state to the partitions and the retained store.
pub(in crate::router) fn restore(router: &Arc<Router>, parts: &mut [Partition], mut state: State) {
    let mut retained = 0;
    for (id, topic) in state.retained.iter().map(|(t, id)| (*id, t)) {
        if let Some(m) = state.messages.get(&id) {
            let _ = m.msg.store_id.set(id);
            if m.msg.topic == *topic {
                router.retain.update(&m.msg, &router.stats);
                retained += 1;
            }
        }
    }
    let now = unix_ms() / 1000;
    let sessions = std::mem::take(&mut state.sessions);
    let (count, mut queued) = (sessions.len(), 0);
    for (client, s) in sessions {
        queued += s.queue.len();
        let p = router.partition_of(&client);
        parts[p].restore_session(s, &state.messages, now);
    }
    if count > 0 || retained > 0 {
        tracing::info!(
            sessions = count,
            queued,
            retained,
            "recovered state from the store"
        );
    }
}

impl Partition {
    fn restore_session(
        &mut self,
        state: SessionState,
        messages: &HashMap<u64, StoredMessage>,
        now: u64,
    ) {
        let SessionState {
            meta,
            subs,
            queue,
            incoming,
        } = state;
        let mut s = Session::new(Arc::clone(&meta.client), meta.version, self.new_queue());
        s.expiry = meta.expiry;
        s.will = meta.will.clone().map(Box::new);
        s.persist = true;
        s.incoming_qos2 = incoming.into_iter().collect();
        s.next_seq = queue.keys().next_back().map_or(1, |last| last + 1);
        for (seq, q) in queue {
            let Some(m) = messages.get(&q.msg_id) else {
                continue;
            };
            let _ = m.msg.store_id.set(q.msg_id);
            // It may have been sent before the restart: DUP tells the client so.
            let mut d = Delivery {
                msg: Arc::clone(&m.msg),
                qos: q.qos,
                retain: q.retain,
                packet_id: 0,
                dup: true,
                sub_ids: q.sub_ids,
                seq,
                ready: 0,
                gate: None,
            };
            if q.released {
                d.packet_id = packet_id_of(seq);
                s.queue.sent(&d);
                let inflight = Inflight {
                    delivery: d,
                    released: true,
                };
                s.inflight.insert(packet_id_of(seq), inflight);
            } else {
                s.queue.push_back(d);
            }
        }
        let epoch = self.bump_epoch();
        s.epoch = epoch;
        Stats::add(&self.router.stats.clients_total, 1);
        let client = Arc::clone(&meta.client);
        let idx = self.insert_session(s);
        for (filter, (opts, sub_id)) in subs {
            self.add_subscription(idx, Arc::clone(&client), &filter, opts, sub_id, false);
        }
        let ended = meta.disconnected_at.unwrap_or(now);
        if meta.disconnected_at.is_none() {
            self.persist(Record::Session(Box::new(SessionMeta {
                disconnected_at: Some(now),
                ..meta.clone()
            })));
        }
        let elapsed = u32::try_from(now.saturating_sub(ended)).unwrap_or(u32::MAX);
        let at = |secs: u32| Instant::now() + Duration::from_secs(u64::from(secs));
        if let Some(w) = &meta.will {
            let due = w.delay.min(meta.expiry).saturating_sub(elapsed);
            self.timers
                .push(Reverse((at(due), idx, epoch, TimerKind::Will)));
        }
        if meta.expiry != u32::MAX {
            let due = meta.expiry.saturating_sub(elapsed);
            self.timers
                .push(Reverse((at(due), idx, epoch, TimerKind::Expire)));
        }
    }
}
