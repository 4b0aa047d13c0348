//! The durable state as the log describes it: what replaying the records yields. The writer
//! keeps one up to date as it writes, so it can write a snapshot of it at any moment (log
//! compaction), and recovery builds one from disk and hands it to the router.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use edgeplane_codec::{QoS, SubOptions};

use super::record::{Queued, Record, SessionMeta};
use crate::message::Message;

/// A publisher and the packet id of its QoS 2 message.
type Origin = (Arc<str>, u16);

/// Everything durable.
#[derive(Debug, Default)]
pub struct State {
    pub messages: HashMap<u64, StoredMessage>,
    pub sessions: HashMap<Arc<str>, SessionState>,
    pub retained: HashMap<String, u64>,
    /// Approximate bytes a snapshot of this state takes.
    pub live_bytes: u64,
    /// Records that referred to something that no longer exists (ignored).
    pub dangling: u64,
    /// Queue entries of QoS 2 messages whose publisher's receive record has not been seen
    /// yet: (publisher, packet id) → (session, seq).
    uncommitted: HashMap<Origin, Vec<(Arc<str>, u64)>>,
    /// Messages whose last reference went: removed by [`State::sweep`] once nobody holds
    /// them, or by [`State::collect_garbage`].
    unreferenced: Vec<u64>,
}

#[derive(Debug)]
pub struct StoredMessage {
    pub msg: Arc<Message>,
    refs: u32,
}

impl StoredMessage {
    /// Still needed: a queue entry or the retained index refers to it, or something else in
    /// the process holds the message. The body is written once, by whichever partition
    /// first needs it, and the references follow as separate records from every partition
    /// that routes it; a message with no reference yet, or none left while another
    /// partition still routes it, gets its reference (after a compaction, too) from a
    /// holder of the message. Only a message nobody holds and nothing refers to is garbage.
    fn needed(&self) -> bool {
        self.refs > 0 || Arc::strong_count(&self.msg) > 1
    }
}

#[derive(Debug)]
pub struct SessionState {
    pub meta: SessionMeta,
    pub subs: BTreeMap<String, (SubOptions, Option<u32>)>,
    pub queue: BTreeMap<u64, QueuedState>,
    pub incoming: BTreeSet<u16>,
}

#[derive(Debug, Clone)]
pub struct QueuedState {
    pub msg_id: u64,
    pub qos: QoS,
    pub retain: bool,
    pub sub_ids: Vec<u32>,
    /// PUBREC received: PUBREL is owed, not the PUBLISH.
    pub released: bool,
    /// Uncommitted: see [`super::record::Queued::origin`].
    pub origin: Option<(Arc<str>, u16)>,
}

fn message_size(m: &Message) -> u64 {
    (m.payload.len() + m.topic.len() + 64) as u64
}

impl State {
    /// Apply one record. Records that refer to a session or message that is gone are
    /// counted in `dangling` and otherwise ignored: they can follow an end of session that
    /// raced with them in the log, and never change the outcome.
    pub fn apply(&mut self, rec: Record) {
        match rec {
            Record::Message { id, msg } => {
                self.live_bytes += message_size(&msg);
                self.messages.insert(id, StoredMessage { msg, refs: 0 });
            }
            Record::Session(meta) => match self.sessions.get_mut(&meta.client) {
                Some(s) => s.meta = *meta,
                None => {
                    self.live_bytes += 64;
                    let client = Arc::clone(&meta.client);
                    let s = SessionState {
                        meta: *meta,
                        subs: BTreeMap::new(),
                        queue: BTreeMap::new(),
                        incoming: BTreeSet::new(),
                    };
                    self.sessions.insert(client, s);
                }
            },
            Record::SessionEnd { client } => {
                if let Some(s) = self.sessions.remove(&client) {
                    self.live_bytes = self.live_bytes.saturating_sub(64);
                    for q in s.queue.values() {
                        self.unref(q.msg_id);
                    }
                }
            }
            Record::Subscribe {
                client,
                filter,
                opts,
                sub_id,
            } => match self.sessions.get_mut(&client) {
                Some(s) => {
                    s.subs.insert(filter, (opts, sub_id));
                }
                None => self.dangling += 1,
            },
            Record::Unsubscribe { client, filter } => {
                if let Some(s) = self.sessions.get_mut(&client) {
                    s.subs.remove(&filter);
                }
            }
            Record::Enqueue(q) => self.enqueue(q),
            Record::Released { client, seq } => {
                match self
                    .sessions
                    .get_mut(&client)
                    .and_then(|s| s.queue.get_mut(&seq))
                {
                    Some(q) => q.released = true,
                    None => self.dangling += 1,
                }
            }
            Record::Done { client, seq } => {
                let done = self
                    .sessions
                    .get_mut(&client)
                    .and_then(|s| s.queue.remove(&seq));
                if let Some(q) = done {
                    self.unref(q.msg_id);
                }
            }
            Record::Incoming {
                client,
                packet_id,
                released,
            } => {
                if !released {
                    self.commit(&client, packet_id);
                }
                if let Some(s) = self.sessions.get_mut(&client) {
                    if released {
                        s.incoming.remove(&packet_id);
                    } else {
                        s.incoming.insert(packet_id);
                    }
                }
            }
            Record::Retain { topic, msg_id } => {
                let old = match msg_id {
                    Some(id) if self.messages.contains_key(&id) => {
                        self.add_ref(id);
                        self.retained.insert(topic, id)
                    }
                    Some(_) => {
                        self.dangling += 1;
                        None
                    }
                    None => self.retained.remove(&topic),
                };
                if let Some(old) = old {
                    self.unref(old);
                }
            }
        }
    }

    fn enqueue(&mut self, q: Queued) {
        let known = self.messages.contains_key(&q.msg_id);
        let Some(s) = self.sessions.get_mut(&q.client).filter(|_| known) else {
            self.dangling += 1;
            return;
        };
        if let Some(origin) = &q.origin {
            self.uncommitted
                .entry(origin.clone())
                .or_default()
                .push((Arc::clone(&q.client), q.seq));
        }
        let state = QueuedState {
            msg_id: q.msg_id,
            qos: q.qos,
            retain: q.retain,
            sub_ids: q.sub_ids,
            released: false,
            origin: q.origin,
        };
        if let Some(old) = s.queue.insert(q.seq, state) {
            self.unref(old.msg_id);
        }
        self.add_ref(q.msg_id);
    }

    fn add_ref(&mut self, id: u64) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.refs += 1;
        }
    }

    /// One reference fewer. A message whose last reference goes stays until it is swept:
    /// another partition may still refer to it in a record that comes later in the log (its
    /// delivery to one session acknowledged before another session's entry was written), and
    /// replay must find it then.
    fn unref(&mut self, id: u64) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                self.unreferenced.push(id);
            }
        }
    }

    /// Remove the messages that lost their last reference and that nothing else in the
    /// process holds (so no later record can refer to them); the writer calls this after
    /// each batch. Those still held are looked at again next time.
    pub fn sweep(&mut self) {
        let mut held = Vec::new();
        for id in std::mem::take(&mut self.unreferenced) {
            match self.messages.get(&id) {
                Some(m) if m.refs == 0 && m.needed() => held.push(id),
                Some(m) if m.refs == 0 => {
                    let size = message_size(&m.msg);
                    self.messages.remove(&id);
                    self.live_bytes = self.live_bytes.saturating_sub(size);
                }
                _ => {}
            }
        }
        held.sort_unstable();
        held.dedup();
        self.unreferenced = held;
    }

    /// The publisher's receive record for `packet_id` arrived: its entries are committed.
    fn commit(&mut self, publisher: &Arc<str>, packet_id: u16) {
        let key = (Arc::clone(publisher), packet_id);
        for (client, seq) in self.uncommitted.remove(&key).unwrap_or_default() {
            if let Some(q) = self
                .sessions
                .get_mut(&client)
                .and_then(|s| s.queue.get_mut(&seq))
            {
                q.origin = None;
            }
        }
    }

    /// End of recovery: entries of QoS 2 messages that were never acknowledged to their
    /// publisher are dropped (the publisher sends them again).
    pub fn roll_back_uncommitted(&mut self) -> usize {
        let mut dropped = 0;
        for ((publisher, pid), entries) in std::mem::take(&mut self.uncommitted) {
            for (client, seq) in entries {
                let removed = self.sessions.get_mut(&client).and_then(|s| {
                    s.queue
                        .remove_entry(&seq)
                        .filter(|(_, q)| q.origin.as_ref() == Some(&(Arc::clone(&publisher), pid)))
                });
                if let Some((_, q)) = removed {
                    self.unref(q.msg_id);
                    dropped += 1;
                }
            }
        }
        dropped
    }

    /// Drop messages nothing refers to and nobody holds (written, then their only reader
    /// vanished).
    pub fn collect_garbage(&mut self) {
        let dead: Vec<u64> = self
            .messages
            .iter()
            .filter(|(_, m)| !m.needed())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            if let Some(m) = self.messages.remove(&id) {
                self.live_bytes = self.live_bytes.saturating_sub(message_size(&m.msg));
            }
        }
        self.unreferenced
            .retain(|id| self.messages.contains_key(id));
    }

    /// The records that rebuild this state from nothing, in an order replay accepts.
    pub fn snapshot(&self, mut emit: impl FnMut(&Record)) {
        for (id, m) in &self.messages {
            if m.needed() {
                emit(&Record::Message {
                    id: *id,
                    msg: Arc::clone(&m.msg),
                });
            }
        }
        for (client, s) in &self.sessions {
            emit(&Record::Session(Box::new(s.meta.clone())));
            for (filter, (opts, sub_id)) in &s.subs {
                emit(&Record::Subscribe {
                    client: Arc::clone(client),
                    filter: filter.clone(),
                    opts: *opts,
                    sub_id: *sub_id,
                });
            }
            for (&seq, q) in &s.queue {
                emit(&Record::Enqueue(Queued {
                    client: Arc::clone(client),
                    seq,
                    msg_id: q.msg_id,
                    qos: q.qos,
                    retain: q.retain,
                    sub_ids: q.sub_ids.clone(),
                    origin: q.origin.clone(),
                }));
                if q.released {
                    emit(&Record::Released {
                        client: Arc::clone(client),
                        seq,
                    });
                }
            }
            for &packet_id in &s.incoming {
                emit(&Record::Incoming {
                    client: Arc::clone(client),
                    packet_id,
                    released: false,
                });
            }
        }
        for (topic, id) in &self.retained {
            emit(&Record::Retain {
                topic: topic.clone(),
                msg_id: Some(*id),
            });
        }
    }

    /// The highest message id in use, so new ids never collide with stored ones.
    pub fn max_message_id(&self) -> u64 {
        self.messages.keys().copied().max().unwrap_or(0)
    }
}
