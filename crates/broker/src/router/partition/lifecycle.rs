//! Session lifecycle in a partition: connect (new, resumed, taken over), disconnect, will
//! messages, session expiry, and what of it the store keeps.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use edgeplane_codec::{Ack, Packet, ReasonCode};

use super::super::session::{Conn, Session};
use super::super::{clock_ms, ConnectReply, ConnectRequest, Ending, Inter, Outgoing, Routed};
use super::{secs, Partition, TimerKind};
use crate::message::Message;
use crate::stats::Stats;
use crate::store::{Queued, Record, SessionMeta};

impl Partition {
    pub(super) fn on_connect(&mut self, req: ConnectRequest) {
        let stats = Arc::clone(&self.router.stats);
        let existing = self.by_id.get(&req.client_id).copied();
        let mut session_present = false;
        if let Some(idx) = existing {
            let (taken_over, internal) = self.session(idx).map_or((None, false), |s| {
                let id = s.conn.as_ref().map(|c| c.id);
                s.kill_connection(ReasonCode::SESSION_TAKEN_OVER.0);
                (id, s.internal)
            });
            if let Some(conn_id) = taken_over {
                if !internal {
                    Stats::sub(&stats.clients_connected, 1);
                }
                self.set_shared_online(idx, false);
                self.client_event_disconnected(&req.client_id, conn_id);
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
                let mut session =
                    Session::new(Arc::clone(&req.client_id), req.version, self.new_queue());
                session.internal = req.internal;
                self.insert_session(session)
            }
        };
        let epoch = self.bump_epoch();
        let persist = self.router.store.as_ref().is_some_and(|st| {
            req.session_expiry > 0 && st.policy.persist_session(&req.client_id, req.opted_in)
        });
        let Some(s) = self.session(idx) else { return };
        s.version = req.version;
        s.epoch = epoch;
        s.expiry = req.session_expiry;
        s.will = req.will.map(Box::new);
        let was_persisted = s.persist;
        s.persist = persist;
        // CONNACK (Session Present) goes out once the session is durable.
        let hold = match (was_persisted, persist) {
            (_, true) => self.persist_session(idx, None, !was_persisted),
            (true, false) => self.persist(Record::SessionEnd {
                client: Arc::clone(&req.client_id),
            }),
            (false, false) => 0,
        };
        let shutting_down = self.shutting_down;
        let Some(s) = self.session(idx) else { return };
        s.hold = s.hold.max(hold);
        s.conn = Some(Conn {
            id: req.conn_id,
            tx: req.tx,
            window: req.window.max(1),
            keep_alive_ms: req.keep_alive_ms,
            details: req.details,
        });
        let keep_alive_check = req.keep_alive_ms.map(|ka| {
            // CONNECT was the client's last input: silence is counted from now.
            let now = clock_ms();
            if let Some(c) = &s.conn {
                c.tx.signals()
                    .last_input_ms
                    .fetch_max(now, Ordering::Relaxed);
            }
            Reverse((now + u64::from(ka.get()), idx, epoch as u32))
        });
        if shutting_down {
            if let Some(c) = s.conn.as_ref().filter(|c| c.details.is_some()) {
                c.tx.shutdown();
            }
        }
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
            persist: s.persist,
        });
        if !req.internal {
            stats.client_connected();
        }
        if let Some(check) = keep_alive_check {
            self.keep_alive.push(check);
        }
        self.set_shared_online(idx, true);
        self.pump(idx);
    }

    pub(super) fn on_disconnected(&mut self, idx: u32, ending: Ending) {
        let stats = Arc::clone(&self.router.stats);
        let epoch = self.bump_epoch();
        let Some(s) = self.session(idx) else { return };
        // Callers pass an attached session (`attached`); a detached one has nothing to end.
        let Some(conn_id) = s.conn.take().map(|c| c.id) else {
            return;
        };
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
        self.client_event_disconnected(&client_id, conn_id);
        self.set_shared_online(idx, false);
        if expiry == 0 {
            self.end_session(idx);
            return;
        }
        self.persist_session(idx, Some(crate::store::record::unix_ms() / 1000), false);
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

    /// Tell in-process listeners (state store) that the client's connection `conn_id` (a
    /// network connection's or an in-process session's id) ended; nobody listening is not
    /// an error.
    pub(super) fn client_event_disconnected(&self, client_id: &Arc<str>, conn_id: u64) {
        let _ = self
            .router
            .events
            .send(super::super::ClientEvent::Disconnected {
                client_id: Arc::clone(client_id),
                conn_id,
            });
    }

    pub(super) fn fire_timers(&mut self) {
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
                        let now = Some(crate::store::record::unix_ms() / 1000);
                        self.persist_session(idx, now, false);
                    }
                }
                TimerKind::Expire => self.end_session(idx),
            }
        }
        self.check_keep_alives();
    }

    /// Disconnect the clients whose keep-alive checks are due and that stayed silent for
    /// 1.5 times their keep alive [MQTT-3.1.2-22] (MQTT 5: DISCONNECT 0x8D), as if the
    /// network had failed: the will is published. A check finding input since then is
    /// moved to the new deadline; one for a connection that has gone is dropped.
    fn check_keep_alives(&mut self) {
        let now = clock_ms();
        while let Some(&Reverse((due, idx, epoch))) = self.keep_alive.peek() {
            if due > now {
                break;
            }
            self.keep_alive.pop();
            let Some(s) = self.session(idx) else { continue };
            // The epoch only tells this attachment's check from a stale one (the slot may
            // hold a newer connection, which has a check of its own): the check itself reads
            // whatever connection is attached now, so a truncated epoch cannot mislead it.
            let Some((c, ka)) = s
                .conn
                .as_ref()
                .and_then(|c| Some((c, c.keep_alive_ms?)))
                .filter(|_| s.epoch as u32 == epoch)
            else {
                continue;
            };
            let due = c.tx.signals().last_input_ms.load(Ordering::Relaxed) + u64::from(ka.get());
            if due > now {
                self.keep_alive.push(Reverse((due, idx, epoch)));
                continue;
            }
            tracing::debug!(client_id = %s.client_id, "keep alive timed out: disconnecting");
            s.signal_kill(ReasonCode::KEEP_ALIVE_TIMEOUT.0);
            self.on_disconnected(idx, Ending::Abnormal);
        }
    }

    /// End a session: its will (if still pending) is published, its subscriptions removed.
    pub(super) fn end_session(&mut self, idx: u32) {
        let Some(mut s) = self.sessions.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.free.push(idx);
        self.by_id.remove(&s.client_id);
        if s.persist {
            self.persist(Record::SessionEnd {
                client: Arc::clone(&s.client_id),
            });
        }
        if !s.internal {
            Stats::sub(&self.router.stats.clients_total, 1);
        }
        s.kill_connection(ReasonCode::SESSION_TAKEN_OVER.0);
        if let Some(w) = s.will.take() {
            self.publish_will(&s.client_id, w);
        }
        for (raw, _) in std::mem::take(&mut s.subs) {
            self.remove_subscription(idx, &s.client_id, &raw, s.internal);
        }
    }

    pub(super) fn insert_session(&mut self, s: Session) -> u32 {
        let id = Arc::clone(&s.client_id);
        let idx = match self.free.pop() {
            Some(i) => {
                self.sessions[i as usize] = Some(Box::new(s));
                i
            }
            None => {
                self.sessions.push(Some(Box::new(s)));
                (self.sessions.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        idx
    }

    pub(super) fn bump_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    pub(super) fn publish_will(&mut self, client: &Arc<str>, will: Box<super::super::WillMsg>) {
        let will = *will;
        let max = self.router.settings.clients.max_message_expiry_secs;
        let mut msg = Message::from_publish(will.publish, Some(Arc::clone(client)), max);
        msg.publisher = will.publisher;
        self.publish_from_partition(Arc::new(msg));
    }

    /// Route a message that originates inside the router (wills).
    pub(super) fn publish_from_partition(&mut self, msg: Arc<Message>) {
        let after = self.router.retain_message(&msg);
        Stats::add(&self.router.stats.messages_received, 1);
        let routed = Routed {
            msg,
            after,
            ticket: None,
        };
        for p in 0..self.router.partitions() {
            if p != self.index {
                self.router.send_inter(p, Inter::Publish(routed.clone()));
            }
        }
        self.on_publish(routed);
    }

    /// Write a persisted session's metadata (and, when it just became persisted, all it
    /// holds); returns the LSN to wait for. `disconnected_at` is in Unix seconds.
    pub(super) fn persist_session(
        &mut self,
        idx: u32,
        disconnected_at: Option<u64>,
        everything: bool,
    ) -> u64 {
        let Some(store) = self.router.store.clone() else {
            return 0;
        };
        let Some(s) = self.session(idx).filter(|s| s.persist) else {
            return 0;
        };
        let client = Arc::clone(&s.client_id);
        let mut lsn = store.append(Record::Session(Box::new(SessionMeta {
            client: Arc::clone(&client),
            version: s.version,
            expiry: s.expiry,
            will: s.will.as_deref().cloned(),
            disconnected_at,
        })));
        if !everything {
            return lsn;
        }
        // A session that was kept in memory only so far: its subscriptions and queue too.
        for (filter, opts, sub_id) in self.subscription_options(idx) {
            let client = Arc::clone(&client);
            lsn = store.append(Record::Subscribe {
                client,
                filter,
                opts,
                sub_id,
            });
        }
        let Some(s) = self.session(idx) else {
            return lsn;
        };
        let queued = s
            .inflight
            .values()
            .map(|i| &i.delivery)
            .chain(s.queue.iter());
        for d in queued.filter(|d| d.seq != 0) {
            let msg_id = store.message_id(&d.msg);
            lsn = store.append(Record::Enqueue(Queued {
                client: Arc::clone(&client),
                seq: d.seq,
                msg_id,
                qos: d.qos,
                retain: d.retain,
                sub_ids: d.sub_ids.clone(),
                origin: None,
            }));
        }
        for &packet_id in &s.incoming_qos2 {
            lsn = store.append(Record::Incoming {
                client: Arc::clone(&client),
                packet_id,
                released: false,
            });
        }
        lsn
    }
}
