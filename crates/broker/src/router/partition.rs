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

mod subscriptions;

use super::session::{Conn, Inflight, Offer, Session};
use super::shared::Group;
use super::trie::{Target, Trie};
use super::{
    AckKind, Cmd, ConnectReply, ConnectRequest, Delivery, Ending, Inter, Outgoing, Router,
};
use crate::message::Message;
use crate::settings::QueueStrategy;
use crate::stats::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Will,
    Expire,
}

pub(super) struct Partition {
    index: usize,
    router: Arc<Router>,
    sessions: Vec<Option<Session>>,
    free: Vec<u32>,
    by_id: HashMap<Arc<str>, u32>,
    trie: Trie,
    groups: Vec<Option<Group>>,
    group_ids: HashMap<(String, String), u32>,
    timers: BinaryHeap<Reverse<(Instant, u32, u64, TimerKind)>>,
    next_epoch: u64,
    /// Buffers reused by every routed message, so matching allocates nothing per message:
    /// (session, QoS, retain as published, subscription ids) per matched session, and the
    /// shared groups matched.
    hits: Vec<(u32, QoS, bool, Vec<u32>)>,
    shared_hits: Vec<u32>,
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
            next_epoch: 1,
            hits: Vec::new(),
            shared_hits: Vec::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Cmd>,
        mut inter: mpsc::UnboundedReceiver<Inter>,
    ) {
        let mut cmds = Vec::with_capacity(BATCH);
        let mut inters = Vec::with_capacity(BATCH);
        loop {
            let deadline = self.timers.peek().map(|Reverse((at, ..))| *at);
            tokio::select! {
                biased;
                n = inter.recv_many(&mut inters, BATCH) => {
                    if n == 0 { return; }
                    for m in inters.drain(..) { self.on_inter(m); }
                }
                n = inbox.recv_many(&mut cmds, BATCH) => {
                    if n == 0 { return; }
                    for c in cmds.drain(..) { self.on_cmd(c); }
                }
                _ = sleep_until(deadline) => self.fire_timers(),
            }
        }
    }

    fn session(&mut self, idx: u32) -> Option<&mut Session> {
        self.sessions.get_mut(idx as usize).and_then(Option::as_mut)
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
            Cmd::Publish(msg) => self.on_publish(&msg),
            Cmd::Subscribe {
                client,
                conn,
                packet,
                denied,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_subscribe(idx, packet, &denied);
                }
            }
            Cmd::Unsubscribe {
                client,
                conn,
                packet,
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    self.on_unsubscribe(idx, packet);
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
            } => {
                if let Some(idx) = self.attached(&client, conn) {
                    if let Some(s) = self.session(idx) {
                        if released {
                            s.incoming_qos2.remove(&packet_id);
                        } else {
                            s.incoming_qos2.insert(packet_id);
                        }
                    }
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
        }
    }

    fn on_inter(&mut self, m: Inter) {
        match m {
            Inter::Publish(msg) => self.on_publish(&msg),
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
            } => {
                if let Some(&idx) = self.by_id.get(&client) {
                    let qos = msg.qos.min(opts.qos);
                    let retain = msg.retain && opts.retain_as_published;
                    self.enqueue(idx, &msg, qos, retain, sub_id.into_iter().collect());
                }
            }
        }
    }

    // ---- connect / disconnect / expiry -------------------------------------------------

    fn on_connect(&mut self, req: ConnectRequest) {
        let stats = Arc::clone(&self.router.stats);
        let existing = self.by_id.get(&req.client_id).copied();
        let mut session_present = false;
        if let Some(idx) = existing {
            let (taken_over, internal) = self.session(idx).map_or((false, false), |s| {
                (
                    s.kill_connection(ReasonCode::SESSION_TAKEN_OVER.0),
                    s.internal,
                )
            });
            if taken_over {
                if !internal {
                    Stats::sub(&stats.clients_connected, 1);
                }
                self.set_shared_online(idx, false);
                self.client_event_disconnected(&req.client_id);
            }
            if req.clean_start {
                self.end_session(idx);
            } else {
                let epoch = self.bump_epoch();
                let will = self.session(idx).and_then(|s| {
                    s.epoch = epoch;
                    s.will.take()
                });
                // A will with no delay is due at once; a delayed one is cancelled because the
                // session reconnected within its delay [MQTT-3.1.3-9].
                if let Some(w) = will.filter(|w| w.delay == 0) {
                    self.publish_will(&req.client_id, w);
                }
                session_present = true;
            }
        }
        let idx = match self.by_id.get(&req.client_id) {
            Some(&idx) => idx,
            None => {
                if !req.internal {
                    Stats::add(&stats.clients_total, 1);
                }
                let mut session = Session::new(Arc::clone(&req.client_id), req.version);
                session.internal = req.internal;
                self.insert_session(session)
            }
        };
        let epoch = self.bump_epoch();
        let Some(s) = self.session(idx) else { return };
        s.version = req.version;
        s.epoch = epoch;
        s.expiry = req.session_expiry;
        s.will = req.will;
        s.conn = Some(Conn {
            id: req.conn_id,
            tx: req.tx,
            signals: req.signals,
            window: req.window.max(1),
        });
        let mut connack = req.connack;
        connack.session_present = session_present;
        // Packets still owed to a taken-over connection are not the new one's; in-flight
        // re-sends are rebuilt below. CONNACK must be first [MQTT-3.2.0-1].
        s.control.clear();
        s.control
            .push_back(Outgoing::Packet(Box::new(Packet::ConnAck(connack))));
        // Re-send what was in flight, in order: PUBREL for released QoS 2, PUBLISH with DUP.
        for (&id, inflight) in &s.inflight {
            let item = if inflight.released {
                Outgoing::Packet(Box::new(Packet::PubRel(Ack::new(id, ReasonCode::SUCCESS))))
            } else {
                let mut d = inflight.delivery.clone();
                d.dup = true;
                Outgoing::Publish(d)
            };
            s.control.push_back(item);
        }
        let _ = req.reply.send(ConnectReply {
            incoming_qos2: s.incoming_qos2.iter().copied().collect(),
        });
        if !req.internal {
            stats.client_connected();
        }
        self.set_shared_online(idx, true);
        self.pump(idx);
    }

    fn on_disconnected(&mut self, idx: u32, ending: Ending) {
        let stats = Arc::clone(&self.router.stats);
        let epoch = self.bump_epoch();
        let Some(s) = self.session(idx) else { return };
        s.conn = None;
        s.epoch = epoch;
        s.control.clear();
        let client_id = Arc::clone(&s.client_id);
        if !s.internal {
            Stats::sub(&stats.clients_connected, 1);
        }
        if let Ending::Graceful {
            publish_will,
            session_expiry,
        } = ending
        {
            if !publish_will {
                s.will = None;
            }
            if let Some(e) = session_expiry {
                s.expiry = e;
            }
        }
        let expiry = s.expiry;
        let will_delay = s.will.as_ref().map(|w| w.delay.min(expiry));
        self.client_event_disconnected(&client_id);
        self.set_shared_online(idx, false);
        if expiry == 0 {
            self.end_session(idx);
            return;
        }
        let now = Instant::now();
        match will_delay {
            Some(0) => {
                if let Some((client, w)) = self
                    .session(idx)
                    .and_then(|s| Some((Arc::clone(&s.client_id), s.will.take()?)))
                {
                    self.publish_will(&client, w);
                }
            }
            Some(d) => self
                .timers
                .push(Reverse((now + secs(d), idx, epoch, TimerKind::Will))),
            None => {}
        }
        if expiry != u32::MAX {
            self.timers
                .push(Reverse((now + secs(expiry), idx, epoch, TimerKind::Expire)));
        }
    }

    /// Tell in-process listeners (state store) that a client's connection ended; nobody
    /// listening is not an error.
    fn client_event_disconnected(&self, client_id: &Arc<str>) {
        let _ = self.router.events.send(super::ClientEvent::Disconnected {
            client_id: Arc::clone(client_id),
        });
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, idx, epoch, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(s) = self.session(idx) else { continue };
            if s.epoch != epoch || s.conn.is_some() {
                continue;
            }
            match kind {
                TimerKind::Will => {
                    if let Some(w) = s.will.take() {
                        let client = Arc::clone(&s.client_id);
                        self.publish_will(&client, w);
                    }
                }
                TimerKind::Expire => self.end_session(idx),
            }
        }
    }

    /// End a session: its will (if still pending) is published, its subscriptions removed.
    fn end_session(&mut self, idx: u32) {
        let Some(mut s) = self.sessions.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        self.by_id.remove(&s.client_id);
        if !s.internal {
            Stats::sub(&self.router.stats.clients_total, 1);
        }
        s.kill_connection(ReasonCode::SESSION_TAKEN_OVER.0);
        if let Some(w) = s.will.take() {
            self.publish_will(&s.client_id, w);
        }
        for raw in s.subs.drain() {
            self.remove_subscription(idx, &s.client_id, &raw, s.internal);
        }
    }

    fn insert_session(&mut self, s: Session) -> u32 {
        let id = Arc::clone(&s.client_id);
        let idx = match self.free.pop() {
            Some(i) => {
                self.sessions[i as usize] = Some(s);
                i
            }
            None => {
                self.sessions.push(Some(s));
                (self.sessions.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        idx
    }

    fn bump_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    fn publish_will(&mut self, client: &Arc<str>, will: super::WillMsg) {
        let max = self.router.settings.clients.max_message_expiry_secs;
        let msg = Arc::new(Message::from_publish(
            will.publish,
            Some(Arc::clone(client)),
            max,
        ));
        self.publish_from_partition(msg);
    }

    /// Route a message that originates inside the router (wills).
    fn publish_from_partition(&mut self, msg: Arc<Message>) {
        if msg.retain {
            self.router.retain.update(&msg, &self.router.stats);
        }
        Stats::add(&self.router.stats.messages_received, 1);
        for p in 0..self.router.partitions() {
            if p != self.index {
                self.router.send_inter(p, Inter::Publish(Arc::clone(&msg)));
            }
        }
        self.on_publish(&msg);
    }

    // ---- publish path ----------------------------------------------------------------

    fn on_publish(&mut self, msg: &Arc<Message>) {
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
            self.enqueue(idx, msg, msg.qos.min(qos), msg.retain && rap, sub_ids);
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
                    self.enqueue(
                        idx,
                        msg,
                        msg.qos.min(member.opts.qos),
                        retain,
                        member.sub_id.into_iter().collect(),
                    );
                }
            } else {
                let m = Inter::Deliver {
                    client: member.client,
                    msg: Arc::clone(msg),
                    opts: member.opts,
                    sub_id: member.sub_id,
                };
                self.router.send_inter(member.partition, m);
            }
        }
        self.shared_hits = shared;
    }

    /// Queue one message for a session (applying the queue limit) and push what can go out.
    fn enqueue(&mut self, idx: u32, msg: &Arc<Message>, qos: QoS, retain: bool, sub_ids: Vec<u32>) {
        let settings = Arc::clone(&self.router.settings);
        let stats = Arc::clone(&self.router.stats);
        let Some(s) = self.session(idx) else { return };
        if s.conn.is_none() && qos == QoS::AtMostOnce && !settings.clients.queue_qos0_offline {
            Stats::add(&stats.dropped_qos0_offline, 1);
            return;
        }
        // `strategy: None` never drops (as in Azure IoT Operations); `DropOldest` makes room.
        if let Some(limit) = &settings.clients.subscriber_queue_limit {
            if limit.strategy == QueueStrategy::DropOldest && s.queue.len() as u64 >= limit.length {
                Stats::add(&stats.dropped_queue_full, 1);
                s.queue.pop_front();
            }
        }
        s.queue.push_back(Delivery {
            msg: Arc::clone(msg),
            qos,
            retain,
            packet_id: 0,
            dup: false,
            sub_ids,
        });
        if s.conn.is_some() {
            self.pump(idx);
        }
    }

    /// Hand control packets, then queued messages, to the connection while the channel
    /// accepts them and the in-flight window has room.
    fn pump(&mut self, idx: u32) {
        let stats = Arc::clone(&self.router.stats);
        let Some(s) = self.session(idx) else { return };
        let Some(window) = s.conn.as_ref().map(|c| c.window as usize) else {
            return;
        };
        while let Some(item) = s.control.pop_front() {
            match s.offer(item) {
                Offer::Sent => {}
                Offer::Full(item) | Offer::Gone(item) => {
                    s.control.push_front(item);
                    return;
                }
            }
        }
        let now = Instant::now();
        while let Some(mut d) = s.queue.pop_front() {
            if d.msg.is_expired(now) {
                Stats::add(&stats.dropped_expired, 1);
                continue;
            }
            if d.qos != QoS::AtMostOnce {
                if s.inflight.len() >= window {
                    s.queue.push_front(d);
                    return;
                }
                d.packet_id = s.allocate_packet_id();
            }
            let keep = (d.qos != QoS::AtMostOnce).then(|| d.clone());
            match s.offer(Outgoing::Publish(d)) {
                Offer::Sent => {
                    if let Some(d) = keep {
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
    }

    fn on_ack(&mut self, idx: u32, packet_id: u16, kind: AckKind) {
        let Some(s) = self.session(idx) else { return };
        match kind {
            AckKind::Qos1Acked
            | AckKind::Qos2Completed
            | AckKind::Qos2Received { failed: true } => {
                s.inflight.remove(&packet_id);
            }
            AckKind::Qos2Received { failed: false } => {
                if let Some(i) = s.inflight.get_mut(&packet_id) {
                    i.released = true;
                }
            }
        }
        self.pump(idx);
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
