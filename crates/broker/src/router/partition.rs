//! One router partition: a task that owns a slice of the sessions, their subscription trie,
//! the shared-subscription groups hashed to it, and the timers of wills and session expiry.
//! Commands arrive from connections (bounded inbox) and other partitions (unbounded); every
//! outgoing packet is offered to the session's connection without blocking.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgeplane_codec::{Ack, Packet, QoS, ReasonCode};
use tokio::sync::mpsc;

mod clients;
mod lifecycle;
mod recovery;
mod subscriptions;

pub(super) use recovery::restore;

use super::queue::{weight, Queue};
use super::session::{packet_id_of, Inflight, Offer, Session};
use super::shared::Group;
use super::trie::{Target, Trie};
use super::{AckKind, Cmd, Delivery, Inter, Outgoing, Routed, Router, Ticket};
use crate::message::Message;
use crate::settings::{QueueLimit, QueueStrategy};
use crate::stats::{Refusal, Stats, GAUGE_SLOTS};
use crate::store::{Queued, Record};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKind {
    Will,
    Expire,
}

pub(super) struct Partition {
    pub(super) index: usize,
    pub(super) router: Arc<Router>,
    /// Boxed, so a slot is 8 bytes and the vector's spare capacity costs next to nothing
    /// (at 10,000 sessions it doubled into 6,000 empty slots of a whole session each).
    sessions: Vec<Option<Box<Session>>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    trie: Trie,
    groups: Vec<Option<Group>>,
    group_ids: HashMap<(String, String), u32>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, u32, u64, TimerKind)>>,
    /// Keep-alive checks of attached connections: (due on [`super::clock_ms`]'s clock,
    /// session, low 32 bits of its epoch). 16 B per connection, where a tokio timer in each
    /// connection's task took 112 B of every idle connection's future.
    keep_alive: BinaryHeap<Reverse<(u64, u32, u32)>>,
    next_epoch: u64,
    /// Sessions with output held back until the store catches up.
    waiting: Vec<u32>,
    /// Buffers reused by every routed message, so matching allocates nothing per message:
    /// (session, QoS, retain as published, subscription ids) per matched session, and the
    /// shared groups matched.
    hits: Vec<(u32, QoS, bool, Vec<u32>)>,
    shared_hits: Vec<u32>,
    /// Queued bytes were over `maxQueuedBytes` when this batch of commands began (read once
    /// per batch: summing the partitions' gauges per message would cost more than it saves).
    over_memory: bool,
    /// The server is shutting down: connections attaching from now on are told at once.
    pub(super) shutting_down: bool,
}

const BATCH: usize = 64;

impl Partition {
    pub(super) fn new(index: usize, router: Arc<Router>) -> Self {
        Self {
            index,
            router,
            sessions: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            trie: Trie::default(),
            groups: Vec::new(),
            group_ids: HashMap::new(),
            timers: BinaryHeap::new(),
            keep_alive: BinaryHeap::new(),
            next_epoch: 1,
            waiting: Vec::new(),
            hits: Vec::new(),
            shared_hits: Vec::new(),
            over_memory: false,
            shutting_down: false,
        }
    }

    /// An empty queue for a new session of this partition.
    pub(super) fn new_queue(&self) -> Queue {
        let buffer = self.router.disk_buffer.clone();
        Queue::new(Arc::clone(&self.router.stats), self.index, buffer)
    }

    pub(super) async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Cmd>,
        mut inter: mpsc::UnboundedReceiver<Inter>,
    ) {
        let mut cmds = Vec::with_capacity(BATCH);
        let mut inters = Vec::with_capacity(BATCH);
        // One timer for the whole loop, moved only when the earliest deadline changes: every
        // connection with a keep alive has a check, so there nearly always is a deadline,
        // and a fresh `Sleep` per batch registered and removed a timer at every wake-up.
        let timer = tokio::time::sleep(Duration::from_secs(86_400));
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let next = self.timers.peek().map(|Reverse((at, ..))| *at);
            let check = self
                .keep_alive
                .peek()
                .map(|Reverse((due, ..))| super::clock_instant(*due));
            let deadline = match (next, check) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if deadline != armed {
                armed = deadline;
                if let Some(at) = deadline {
                    timer.as_mut().reset(at.into());
                }
            }
            tokio::select! {
                biased;
                n = inter.recv_many(&mut inters, BATCH) => {
                    if n == 0 { return; }
                    self.over_memory = self.router.over_memory();
                    for m in inters.drain(..) { self.on_inter(m); }
                }
                n = inbox.recv_many(&mut cmds, BATCH) => {
                    if n == 0 { return; }
                    self.over_memory = self.router.over_memory();
                    for c in cmds.drain(..) { self.on_cmd(c); }
                }
                () = &mut timer, if armed.is_some() => {
                    // Fired: re-armed at the next deadline, if any, before it is polled again.
                    armed = None;
                    self.fire_timers();
                }
            }
        }
    }

    pub(super) fn session(&mut self, idx: u32) -> Option<&mut Session> {
        self.sessions
            .get_mut(idx as usize)
            .and_then(|s| s.as_deref_mut())
    }

    /// The session of `client` if `conn` is its attached connection.
    fn attached(&mut self, client: &str, conn: u64) -> Option<u32> {
        let idx = *self.by_id.get(client)?;
        let s = self.session(idx)?;
        (s.conn.as_ref()?.id == conn).then_some(idx)
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect(req) => self.on_connect(*req),
            Cmd::Publish(routed) => {
                // Routed now: its bytes leave this inbox's share of the gauge.
                let w = weight(&routed.msg);
                let slot = &self.router.stats.queued[self.index % GAUGE_SLOTS];
                slot.routing
                    .fetch_sub(w, std::sync::atomic::Ordering::Relaxed);
                self.on_publish(routed);
            }
            Cmd::Subscribe {
                client,
                conn,
                packet,
                denied,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_subscribe(idx, *packet, &denied);
                }
            }
            Cmd::Unsubscribe {
                client,
                conn,
                packet,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_unsubscribe(idx, *packet);
                }
            }
            Cmd::Ack {
                client,
                conn,
                packet_id,
                kind,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_ack(idx, packet_id, kind);
                }
            }
            Cmd::IncomingQos2 {
                client,
                conn,
                packet_id,
                released,
                lsn,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_incoming_qos2(idx, packet_id, released, lsn);
                }
            }
            Cmd::Drained { client, conn } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.pump(idx);
                }
            }
            Cmd::Disconnected {
                client,
                conn,
                ending,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_disconnected(idx, ending);
                }
            }
            Cmd::Clients { limit, reply } => {
                let _ = reply.send(self.connected_clients(limit));
            }
        }
    }

    fn on_inter(&mut self, m: Inter) {
        match m {
            Inter::Publish(routed) => self.on_publish(routed),
            Inter::Durable(lsn) => self.on_durable(lsn),
            Inter::Shutdown => {
                self.shutting_down = true;
                for s in self.sessions.iter().flatten() {
                    // In-process clients (no details) end with the runtime.
                    if let Some(c) = s.conn.as_ref().filter(|c| c.details.is_some()) {
                        c.tx.shutdown();
                    }
                }
            }
            Inter::SharedJoin(member, group, filter) => self.shared_join(member, group, filter),
            Inter::SharedLeave {
                group,
                filter,
                client,
            } => {
                if let Some(&g) = self.group_ids.get(&(group, filter)) {
                    let empty = self.groups[g as usize].as_mut().map(|grp| {
                        grp.leave(&client);
                        grp.members.is_empty()
                    });
                    if empty == Some(true) {
                        self.remove_group(g);
                    }
                }
            }
            Inter::SharedOnline {
                group,
                filter,
                client,
                online,
            } => {
                if let Some(&g) = self.group_ids.get(&(group, filter)) {
                    if let Some(grp) = self.groups[g as usize].as_mut() {
                        grp.set_online(&client, online);
                    }
                }
            }
            Inter::Deliver {
                client,
                msg,
                opts,
                sub_id,
                after,
                ticket,
            } => {
                let mut required = after;
                if let Some(&idx) = self.by_id.get(&client) {
                    let qos = msg.qos.min(opts.qos);
                    let retain = msg.retain && opts.retain_as_published;
                    let ids = sub_id.into_iter().collect();
                    let lsn = self.enqueue(idx, &msg, qos, retain, ids, after, ticket.as_ref());
                    required = required.max(lsn);
                }
                if let Some(t) = ticket {
                    t.done(required);
                }
            }
        }
    }

    // ---- publish path ----------------------------------------------------------------

    fn on_publish(&mut self, routed: Routed) {
        let Routed { msg, after, ticket } = routed;
        let msg = &msg;
        let mut required = after;
        // One copy per matched session at the highest granted QoS with every matching
        // subscription identifier.
        let mut hits = std::mem::take(&mut self.hits);
        let mut shared = std::mem::take(&mut self.shared_hits);
        let sessions = &self.sessions;
        self.trie.for_each_match(&msg.topic, |e| match e.target {
            Target::Session(idx) => {
                let Some(Some(s)) = sessions.get(idx as usize) else {
                    return;
                };
                if e.opts.no_local && msg.origin.as_deref() == Some(&*s.client_id) {
                    return;
                }
                match hits.iter_mut().find(|h| h.0 == idx) {
                    Some(h) => {
                        h.1 = h.1.max(e.opts.qos);
                        h.2 |= e.opts.retain_as_published;
                        h.3.extend(e.sub_id);
                    }
                    None => hits.push((
                        idx,
                        e.opts.qos,
                        e.opts.retain_as_published,
                        e.sub_id.into_iter().collect(),
                    )),
                }
            }
            Target::Shared(g) => shared.push(g),
        });
        for (idx, qos, rap, sub_ids) in hits.drain(..) {
            let (qos, retain) = (msg.qos.min(qos), msg.retain && rap);
            let lsn = self.enqueue(idx, msg, qos, retain, sub_ids, after, ticket.as_ref());
            required = required.max(lsn);
        }
        self.hits = hits;
        for g in shared.drain(..) {
            let Some(member) = self.groups[g as usize]
                .as_mut()
                .and_then(|grp| grp.pick(msg))
                .cloned()
            else {
                continue;
            };
            if member.partition == self.index {
                if let Some(&idx) = self.by_id.get(&member.client) {
                    let retain = msg.retain && member.opts.retain_as_published;
                    let qos = msg.qos.min(member.opts.qos);
                    let ids = member.sub_id.into_iter().collect();
                    let lsn = self.enqueue(idx, msg, qos, retain, ids, after, ticket.as_ref());
                    required = required.max(lsn);
                }
            } else {
                if let Some(t) = &ticket {
                    t.add();
                }
                let m = Inter::Deliver {
                    client: member.client,
                    msg: Arc::clone(msg),
                    opts: member.opts,
                    sub_id: member.sub_id,
                    after,
                    ticket: ticket.clone(),
                };
                self.router.send_inter(member.partition, m);
            }
        }
        self.shared_hits = shared;
        if let Some(t) = ticket {
            t.done(required);
        }
    }

    /// The store made more durable: let held output go.
    fn on_durable(&mut self, _lsn: u64) {
        for idx in std::mem::take(&mut self.waiting) {
            if let Some(s) = self.session(idx) {
                s.waiting = false;
            }
            self.pump(idx);
        }
    }

    /// Append a record for this partition's sessions; returns its LSN (0 without a store).
    pub(super) fn persist(&self, rec: Record) -> u64 {
        self.router.store.as_ref().map_or(0, |st| st.append(rec))
    }

    /// Queue one message for a session (applying the queue limit) and push what can go out.
    /// Returns the LSN of the queue record written for it (0 if none). A QoS 2 message whose
    /// publisher's session is persisted (`ticket` with a commit) waits for the commit.
    #[allow(clippy::too_many_arguments)]
    fn enqueue(
        &mut self,
        idx: u32,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        sub_ids: Vec<u32>,
        after: u64,
        ticket: Option<&Arc<Ticket>>,
    ) -> u64 {
        let gate = ticket.filter(|t| t.commit_for.is_some()).cloned();
        let router = Arc::clone(&self.router);
        let stats = &router.stats;
        let over_memory = self.over_memory;
        let Some(s) = self.session(idx) else { return 0 };
        if s.conn.is_none() && qos == QoS::AtMostOnce && !router.settings.clients.queue_qos0_offline
        {
            Stats::add(&stats.dropped_qos0_offline, 1);
            return 0;
        }
        if qos == QoS::AtMostOnce && over_memory {
            Stats::add(&stats.dropped_memory, 1);
            if let Some(more) = stats.why(Refusal::Qos0Memory) {
                tracing::warn!(cause = Refusal::Qos0Memory.as_str(), client_id = %s.client_id, more_since_last_line = more, "QoS 0 message not queued for a subscriber: queued bytes over maxQueuedBytes");
            }
            return 0;
        }
        if let Some(limit) = &router.settings.clients.subscriber_queue_limit {
            if !make_room(s, limit, qos, weight(msg), &router) {
                return 0;
            }
        }
        let seq = if qos == QoS::AtMostOnce {
            0
        } else {
            s.take_seq()
        };
        let mut lsn = 0;
        if let (true, Some(store), true) = (s.persist, &router.store, seq != 0) {
            if store
                .policy
                .persist_queued(&msg.topic, store.policy.opted_in(&msg.properties))
            {
                let msg_id = store.message_id(msg);
                let origin = match (&gate, &msg.origin) {
                    (Some(t), Some(publisher)) => {
                        t.commit_for.map(|pid| (Arc::clone(publisher), pid))
                    }
                    _ => None,
                };
                lsn = store.append(Record::Enqueue(Queued {
                    client: Arc::clone(&s.client_id),
                    seq,
                    msg_id,
                    qos,
                    retain,
                    sub_ids: sub_ids.clone(),
                    origin,
                }));
            }
        }
        s.queue.push_back(Delivery {
            msg: Arc::clone(msg),
            qos,
            retain,
            packet_id: 0,
            dup: false,
            sub_ids,
            seq,
            ready: after.max(lsn),
            gate,
        });
        if s.conn.is_some() {
            self.pump(idx);
        }
        lsn
    }

    /// Hand control packets, then queued messages, to the connection while the channel
    /// accepts them, the in-flight window has room and the store has written what they
    /// acknowledge or carry.
    pub(super) fn pump(&mut self, idx: u32) {
        let router = Arc::clone(&self.router);
        let durable = router.durable();
        let Some(s) = self.session(idx) else { return };
        let Some(window) = s.conn.as_ref().map(|c| c.window as usize) else {
            return;
        };
        let max_inflight_bytes = router.settings.clients.max_inflight_bytes;
        let mut blocked = s.hold > durable;
        if !blocked {
            while let Some(item) = s.control.pop_front() {
                match s.offer(item) {
                    Offer::Sent => {}
                    Offer::Full(item) | Offer::Gone(item) => {
                        s.control.push_front(item);
                        return;
                    }
                }
            }
            // Control packets come one or a few at a time (CONNACK, PUBREL, PUBCOMP): an
            // emptied queue gives its buffer back, as every idle session would hold one.
            if s.control.capacity() > 0 {
                s.control = std::collections::VecDeque::new();
            }
        }
        // The clock is read once per pump, and only if a message that expires comes up.
        let mut now = None;
        while !blocked {
            let Some(mut d) = s.queue.pop_front() else {
                break;
            };
            if d.msg.expires_at.is_some() && d.msg.is_expired(*now.get_or_insert_with(Instant::now))
            {
                Stats::add(&router.stats.dropped_expired, 1);
                s.record_done(router.store.as_deref(), d.seq);
                continue;
            }
            if d.ready_at() > durable {
                s.queue.push_front(d);
                blocked = true;
                break;
            }
            if d.qos != QoS::AtMostOnce {
                d.packet_id = packet_id_of(d.seq);
                // `maxInflightBytes` bounds the window's bytes; one message always fits.
                let over_bytes = max_inflight_bytes.is_some_and(|max| {
                    let held = s.queue.inflight_bytes();
                    held > 0 && held + weight(&d.msg) > max
                });
                if s.inflight.len() >= window || over_bytes || s.inflight.contains_key(&d.packet_id)
                {
                    s.queue.push_front(d);
                    return;
                }
            }
            let keep = (d.qos != QoS::AtMostOnce).then(|| d.clone());
            match s.offer(Outgoing::Publish(d)) {
                Offer::Sent => {
                    if let Some(d) = keep {
                        s.queue.sent(&d);
                        s.inflight.insert(
                            d.packet_id,
                            Inflight {
                                delivery: d,
                                released: false,
                            },
                        );
                    }
                }
                Offer::Full(Outgoing::Publish(mut d)) | Offer::Gone(Outgoing::Publish(mut d)) => {
                    d.packet_id = 0;
                    s.queue.push_front(d);
                    return;
                }
                Offer::Full(_) | Offer::Gone(_) => return,
            }
        }
        if blocked && !s.waiting {
            s.waiting = true;
            self.waiting.push(idx);
        }
    }

    fn on_ack(&mut self, idx: u32, packet_id: u16, kind: AckKind) {
        // Disjoint borrows: the store through the router, the session from the slab.
        let store = self.router.store.as_deref();
        let Some(s) = self
            .sessions
            .get_mut(idx as usize)
            .and_then(|s| s.as_deref_mut())
        else {
            return;
        };
        let persist = s.persist;
        match kind {
            AckKind::Qos1Acked
            | AckKind::Qos2Completed
            | AckKind::Qos2Received { failed: true } => {
                if let Some(done) = s.inflight.remove(&packet_id) {
                    s.queue.acked(&done.delivery);
                    s.record_done(store, done.delivery.seq);
                }
            }
            AckKind::Qos2Received { failed: false } => {
                // PUBREL goes out once the store knows the message was received, so a
                // restart never sends the PUBLISH again [MQTT-4.3.3-5].
                let seq = match s.inflight.get_mut(&packet_id) {
                    Some(i) if !i.released => {
                        i.released = true;
                        Some(i.delivery.seq)
                    }
                    Some(_) => None,
                    None => {
                        let reason = ReasonCode::PACKET_IDENTIFIER_NOT_FOUND;
                        let rel = Packet::PubRel(Ack::new(packet_id, reason));
                        s.control.push_back(Outgoing::Packet(Box::new(rel)));
                        self.pump(idx);
                        return;
                    }
                };
                let lsn = match seq {
                    Some(seq) if persist => {
                        let client = Arc::clone(&s.client_id);
                        self.persist(Record::Released { client, seq })
                    }
                    _ => 0,
                };
                if let Some(s) = self.session(idx) {
                    s.hold = s.hold.max(lsn);
                    let rel = Packet::PubRel(Ack::new(packet_id, ReasonCode::SUCCESS));
                    s.control.push_back(Outgoing::Packet(Box::new(rel)));
                }
            }
        }
        self.pump(idx);
    }

    /// QoS 2 receive state from the connection: kept in the session for a resumed
    /// connection; on release, PUBCOMP follows once the release record (`lsn`) is durable.
    fn on_incoming_qos2(&mut self, idx: u32, packet_id: u16, released: bool, lsn: u64) {
        let Some(s) = self.session(idx) else { return };
        if !released {
            s.incoming_qos2.insert(packet_id);
            return;
        }
        s.incoming_qos2.remove(&packet_id);
        if lsn != 0 {
            s.hold = s.hold.max(lsn);
            let comp = Packet::PubComp(Ack::new(packet_id, ReasonCode::SUCCESS));
            s.control.push_back(Outgoing::Packet(Box::new(comp)));
            self.pump(idx);
        }
    }
}

/// Apply a subscriber queue limit before queueing a message of `qos` weighing `w` bytes;
/// `false` drops the new message. The limit is reached at `length` messages or when `w`
/// would take a non-empty queue past `maxBytes` (an empty queue takes any one message, so
/// a message larger than `maxBytes` still reaches a subscriber that keeps up). `None`
/// never drops (as in Azure IoT Operations: `maxQueuedBytes` bounds memory instead);
/// `DropOldest` drops the oldest QoS 0/1 entries, `DropNewest` the new message; QoS 2 is
/// never dropped by either. Every drop is counted.
fn make_room(s: &mut Session, limit: &QueueLimit, qos: QoS, w: u64, router: &Router) -> bool {
    let full = |q: &Queue| {
        q.len() as u64 >= limit.length
            || limit
                .max_bytes
                .is_some_and(|m| q.bytes() > 0 && q.bytes() + w > m)
    };
    let count = |qos: QoS, client_id: &str| {
        Stats::add(&router.stats.dropped_queue_full, 1);
        if let Some(more) = router.stats.why(Refusal::QueueFull) {
            tracing::warn!(cause = Refusal::QueueFull.as_str(), %client_id, more_since_last_line = more, "message dropped: the subscriber's queue is at subscriberQueueLimit");
        }
        if qos == QoS::AtMostOnce {
            Stats::add(&router.stats.dropped_qos0_queue_full, 1);
        }
    };
    match limit.strategy {
        QueueStrategy::None => return true,
        QueueStrategy::DropOldest => {
            while full(&s.queue) {
                let Some(old) = s.queue.pop_oldest_droppable() else {
                    break;
                };
                count(old.qos, &s.client_id);
                s.record_done(router.store.as_deref(), old.seq);
            }
        }
        QueueStrategy::DropNewest => {}
    }
    if full(&s.queue) && qos != QoS::ExactlyOnce {
        count(qos, &s.client_id);
        return false;
    }
    true
}

pub(super) fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}
