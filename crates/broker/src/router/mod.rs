//! The router: owns sessions, subscriptions and queues, split into partitions (one task each)
//! so a node uses every core and a partition can later be the unit of persistence and
//! replication.
//!
//! Sessions live in the partition chosen by a hash of the client id. A connection sends its
//! session's commands (connect, subscribe, acks, disconnect) to that partition, and every
//! PUBLISH to all partitions, each of which matches it against its own sessions'
//! subscriptions. A shared-subscription group lives in the partition chosen by a hash of its
//! name and filter, which picks one member per message and forwards it to the member's
//! partition. Partitions never block on connections (they `try_send` and queue), so
//! connections may block on partitions for backpressure without risk of deadlock.

mod clients;
pub(crate) mod mailbox;
mod partition;
mod queue;
mod session;
mod shared;
pub mod spill;
mod trie;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use edgeplane_codec::{
    ConnAck, Packet, ProtocolVersion, Publish, QoS, SubOptions, Subscribe, Unsubscribe,
};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::message::Message;
use crate::retain::RetainStore;
use crate::settings::Settings;
use crate::stats::{Stats, GAUGE_SLOTS};
use crate::store::{Record, State, Store};

/// Capacity of a partition's inbox from connections: a full inbox slows publishers down.
const INBOX_CAPACITY: usize = 4096;

pub use crate::client_events::ClientEvent;
pub use clients::{ClientDetails, ClientInfo, ClientList};

/// What a partition hands to a connection to write.
#[derive(Debug)]
pub enum Outgoing {
    /// Boxed: control packets are rare and `Packet` is large; this keeps the per-connection
    /// channel small.
    Packet(Box<Packet>),
    Publish(Delivery),
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub msg: Arc<Message>,
    pub qos: QoS,
    pub retain: bool,
    pub packet_id: u16,
    pub dup: bool,
    pub sub_ids: Vec<u32>,
    /// Session sequence number of a QoS 1/2 delivery (0 for QoS 0); gives the packet id.
    pub seq: u64,
    /// Not sent before this LSN is durable (0: at once).
    pub ready: u64,
    /// A QoS 2 message waiting for its publisher's commit record (see [`Ticket`]).
    pub gate: Option<Arc<Ticket>>,
}

impl Delivery {
    /// The LSN that must be durable before this delivery goes out.
    pub fn ready_at(&self) -> u64 {
        self.gate
            .as_ref()
            .map_or(self.ready, |t| self.ready.max(t.gate()))
    }
}

/// One published QoS 1/2 message on its way through the store. Each partition that routes
/// it (and each forwarded shared delivery) raises `required` to the LSN of the records it
/// wrote and finishes; the publisher's acknowledgement goes out once all finished and the
/// store is durable up to `required`.
///
/// A QoS 2 message from a persisted session also needs its commit: the publisher's
/// connection writes the QoS 2 receive record after every queue record of the message, so
/// the receive record being durable means the routing is too (recovery drops queue records
/// of a message whose receive record never made it, and the publisher sends it again).
/// Deliveries of such a message wait for the commit (`gate`).
#[derive(Debug)]
pub struct Ticket {
    remaining: AtomicUsize,
    required: AtomicU64,
    /// The packet id whose receive record commits the message (QoS 2, persisted session).
    pub commit_for: Option<u16>,
    /// LSN of the commit record; `u64::MAX` until written.
    commit: AtomicU64,
    notify: Arc<Notify>,
}

impl Ticket {
    pub fn new(parts: usize, notify: Arc<Notify>, commit_for: Option<u16>) -> Arc<Ticket> {
        Arc::new(Ticket {
            remaining: AtomicUsize::new(parts),
            required: AtomicU64::new(0),
            commit_for,
            commit: AtomicU64::new(if commit_for.is_some() { u64::MAX } else { 0 }),
            notify,
        })
    }

    /// One more party must finish (a shared delivery forwarded to another partition).
    pub fn add(&self) {
        self.remaining.fetch_add(1, Ordering::AcqRel);
    }

    /// A party finished routing; what it wrote is durable at `lsn`. The last one wakes the
    /// publisher.
    pub fn done(&self, lsn: u64) {
        self.required.fetch_max(lsn, Ordering::AcqRel);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.notify.notify_one();
        }
    }

    /// Every partition has routed the message.
    pub fn routed(&self) -> bool {
        self.remaining.load(Ordering::Acquire) == 0
    }

    /// Whether the commit record still has to be written.
    pub fn needs_commit(&self) -> bool {
        self.commit.load(Ordering::Acquire) == u64::MAX
    }

    pub fn set_commit(&self, lsn: u64) {
        self.commit.store(lsn, Ordering::Release);
    }

    /// The LSN deliveries of the message wait for (`u64::MAX` until committed).
    pub fn gate(&self) -> u64 {
        self.commit.load(Ordering::Acquire)
    }

    /// The LSN that must be durable before the acknowledgement, once routed and committed.
    pub fn required(&self) -> u64 {
        self.required.load(Ordering::Acquire).max(self.gate())
    }
}

/// State shared between a connection task and the partition that owns its session.
#[derive(Debug, Default)]
pub struct ConnSignals {
    /// Set by the partition when the outgoing channel was full; the connection answers with
    /// [`Cmd::Drained`] once it has emptied the channel.
    pub drain: AtomicBool,
    /// The reason code of the DISCONNECT to send when killed (MQTT 5 only); the order to
    /// close itself reaches the connection through its mailbox
    /// ([`MailboxTx::kill`](mailbox::MailboxTx::kill)).
    pub kill_reason: AtomicU8,
    /// When the connection last received bytes from its client, on [`clock_ms`]'s clock.
    /// The partition reads it to enforce the keep alive: a shared word instead of a timer
    /// in every connection's task (112 B of its future, held by every idle connection).
    pub last_input_ms: AtomicU64,
}

/// Milliseconds on the broker's monotonic clock (counted from its first use), rounded up,
/// so a deadline measured from a reading is never early.
pub fn clock_ms() -> u64 {
    u64::try_from(clock_epoch().elapsed().as_millis() + 1).unwrap_or(u64::MAX)
}

/// The instant a [`clock_ms`] reading stands for.
pub fn clock_instant(ms: u64) -> std::time::Instant {
    clock_epoch() + std::time::Duration::from_millis(ms)
}

fn clock_epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// A will message waiting for its connection to end (§3.1.2.5).
#[derive(Debug, Clone)]
pub struct WillMsg {
    pub publish: Publish,
    pub delay: u32,
    /// Who left it, on topics whose messages carry their publisher (the state store's);
    /// `None` elsewhere and for wills read back from the store after a restart.
    pub publisher: Option<Arc<crate::message::Publisher>>,
}

/// How a connection ended, as the session needs to know.
#[derive(Debug, Clone, Copy)]
pub enum Ending {
    /// DISCONNECT received: will discarded only for reason 0x00; session expiry may be
    /// overridden.
    Graceful {
        publish_will: bool,
        session_expiry: Option<u32>,
    },
    /// Network error, keep-alive timeout, protocol violation, shutdown.
    Abnormal,
}

pub struct ConnectRequest {
    pub client_id: Arc<str>,
    /// An in-process service (not counted as a client in statistics).
    pub internal: bool,
    pub conn_id: u64,
    pub version: ProtocolVersion,
    pub clean_start: bool,
    pub session_expiry: u32,
    pub will: Option<WillMsg>,
    /// The client asked for persistence with the dynamic user property on CONNECT.
    pub opted_in: bool,
    /// How many QoS 1/2 messages we may have in flight towards the client.
    pub window: u16,
    /// 1.5 times the keep alive in milliseconds: the partition disconnects a client silent
    /// that long [MQTT-3.1.2-22]; `None`: no limit.
    pub keep_alive_ms: Option<std::num::NonZeroU32>,
    pub tx: mailbox::MailboxTx<Outgoing>,
    /// What the connection knows of the client, for the connected-clients snapshot.
    pub details: Option<Arc<ClientDetails>>,
    /// CONNACK to send once the session is attached; the partition fills Session Present.
    pub connack: ConnAck,
    pub reply: oneshot::Sender<ConnectReply>,
}

pub struct ConnectReply {
    /// QoS 2 packet ids received from the client and not yet released (PUBREL).
    pub incoming_qos2: Vec<u16>,
    /// The store keeps the session: QoS 2 receive state must be written before it is
    /// acknowledged.
    pub persist: bool,
}

/// Which acknowledgement a client sent for a message we delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK.
    Qos1Acked,
    /// PUBREC; `failed` when its reason code is an error, which ends the QoS 2 flow.
    Qos2Received { failed: bool },
    /// PUBCOMP.
    Qos2Completed,
}

/// Commands from connections (and in-process clients) to a partition.
pub enum Cmd {
    Connect(Box<ConnectRequest>),
    Publish(Routed),
    Subscribe {
        client: Arc<str>,
        conn: u64,
        /// Boxed, as is every rare large command: each PUBLISH is copied into every
        /// partition's inbox as a `Cmd`, which is as large as its largest variant.
        packet: Box<Subscribe>,
        /// Per filter, whether authorization refused it (empty: none refused).
        denied: Vec<bool>,
    },
    Unsubscribe {
        client: Arc<str>,
        conn: u64,
        packet: Box<Unsubscribe>,
    },
    Ack {
        client: Arc<str>,
        conn: u64,
        packet_id: u16,
        kind: AckKind,
    },
    /// A QoS 2 PUBLISH was received (`released: false`) or released by PUBREL (`true`).
    /// On release the partition sends PUBCOMP once `lsn` (the release record) is durable.
    IncomingQos2 {
        client: Arc<str>,
        conn: u64,
        packet_id: u16,
        released: bool,
        lsn: u64,
    },
    Drained {
        client: Arc<str>,
        conn: u64,
    },
    Disconnected {
        client: Arc<str>,
        conn: u64,
        ending: Ending,
    },
    /// The partition's connected clients, for the snapshot (see `clients.rs`).
    Clients {
        limit: usize,
        reply: oneshot::Sender<clients::PartitionClients>,
    },
}

/// Messages between partitions.
pub(crate) enum Inter {
    Publish(Routed),
    /// The store made everything up to this LSN durable.
    Durable(u64),
    SharedJoin(shared::Member, String, String),
    SharedLeave {
        group: String,
        filter: String,
        client: Arc<str>,
    },
    SharedOnline {
        group: String,
        filter: String,
        client: Arc<str>,
        online: bool,
    },
    Deliver {
        client: Arc<str>,
        msg: Arc<Message>,
        opts: SubOptions,
        sub_id: Option<u32>,
        after: u64,
        ticket: Option<Arc<Ticket>>,
    },
    /// The server is shutting down: every network connection, attached now or later, is
    /// told so through its mailbox.
    Shutdown,
}

/// A message on its way through the partitions.
#[derive(Clone)]
pub struct Routed {
    pub msg: Arc<Message>,
    /// Deliveries wait for this LSN (the publisher's QoS 2 or retained record).
    pub after: u64,
    /// Completed by each partition once what it wrote for the message is durable.
    pub ticket: Option<Arc<Ticket>>,
}

/// Handle to every partition; cheap to clone through `Arc`.
pub struct Router {
    inboxes: Vec<mpsc::Sender<Cmd>>,
    inter: Vec<mpsc::UnboundedSender<Inter>>,
    pub retain: Arc<RetainStore>,
    pub stats: Arc<Stats>,
    pub settings: Arc<Settings>,
    /// Connections that ended, for in-process services (lossless, one queue per listener).
    pub events: crate::client_events::ClientEvents,
    /// The durable store, when the broker runs with a data folder.
    pub store: Option<Arc<Store>>,
    /// The disk-backed message buffer, when configured (`diskBackedMessageBuffer`).
    pub disk_buffer: Option<Arc<spill::DiskBuffer>>,
}

impl Router {
    /// Spawn the partitions on the current Tokio runtime, with the sessions and retained
    /// messages recovered from the store.
    pub fn start(
        settings: Arc<Settings>,
        stats: Arc<Stats>,
        store: Option<(Arc<Store>, State)>,
    ) -> Arc<Router> {
        let n = settings.partitions.max(1);
        let mut inboxes = Vec::with_capacity(n);
        let mut inter = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
            let (itx, irx) = mpsc::unbounded_channel();
            inboxes.push(tx);
            inter.push(itx);
            receivers.push((rx, irx));
        }
        let (store, state) = store.map_or((None, State::default()), |(s, st)| (Some(s), st));
        let disk_buffer = spill::DiskBuffer::start(&settings, n);
        let router = Arc::new(Router {
            inboxes,
            inter,
            retain: Arc::default(),
            stats,
            settings,
            events: crate::client_events::ClientEvents::default(),
            store,
            disk_buffer,
        });
        if let Some(store) = &router.store {
            let inter = router.inter.clone();
            store.on_durable(Box::new(move |lsn| {
                for p in &inter {
                    let _ = p.send(Inter::Durable(lsn));
                }
            }));
        }
        let mut parts: Vec<_> = (0..n)
            .map(|index| partition::Partition::new(index, Arc::clone(&router)))
            .collect();
        partition::restore(&router, &mut parts, state);
        for (p, (rx, irx)) in parts.into_iter().zip(receivers) {
            tokio::spawn(p.run(rx, irx));
        }
        router
    }

    pub fn partitions(&self) -> usize {
        self.inboxes.len()
    }

    /// Bytes queued for subscribers, all partitions together.
    pub fn queued_bytes(&self) -> u64 {
        self.stats.queued_bytes_in(self.partitions())
    }

    /// Queued bytes are over `maxQueuedBytes`: MQTT 5 QoS 1/2 publishes are refused with
    /// 0x97, QoS 0 messages dropped, MQTT 3.1.1 connections no longer read.
    pub fn over_memory(&self) -> bool {
        self.queued_bytes() > self.settings.clients.max_queued_bytes
    }

    /// Publishers must be pushed back: queued bytes over `maxQueuedBytes`, or the store
    /// over `persistence.maxSize`.
    pub fn over_bounds(&self) -> bool {
        self.over_memory() || self.store.as_ref().is_some_and(|s| s.over_size())
    }

    /// Both queued bytes and the store are back under their low-water marks.
    pub fn below_bounds(&self) -> bool {
        self.below_low_water() && self.store.as_ref().is_none_or(|s| s.below_size_low_water())
    }

    /// Queued bytes are back under the low-water mark (three quarters of `maxQueuedBytes`),
    /// where paused MQTT 3.1.1 connections are read again. The gap keeps a connection from
    /// flapping between paused and reading on every message.
    pub fn below_low_water(&self) -> bool {
        let max = self.settings.clients.max_queued_bytes;
        self.queued_bytes() <= max - max / 4
    }

    /// The partition that owns the session of `client_id`.
    pub fn partition_of(&self, client_id: &str) -> usize {
        hash_index(client_id, self.inboxes.len())
    }

    /// Tell every network connection (attached now or later) that the server is shutting
    /// down; each then sends what is queued for it, DISCONNECT 0x8B (MQTT 5) and closes.
    pub fn shutdown_connections(&self) {
        for p in 0..self.inter.len() {
            self.send_inter(p, Inter::Shutdown);
        }
    }

    /// Send a command to one partition, waiting while its inbox is full.
    pub async fn send(&self, partition: usize, cmd: Cmd) -> bool {
        self.inboxes[partition].send(cmd).await.is_ok()
    }

    /// Route a message from a client or in-process publisher: update the retained store
    /// (durably when the policy says so), then hand it to every partition (waiting while
    /// inboxes are full). Deliveries wait for LSN `after`; `ticket` counts the partitions.
    pub async fn publish(&self, msg: Arc<Message>, after: u64, ticket: Option<Arc<Ticket>>) {
        let after = after.max(self.retain_message(&msg));
        // Counted as routing until the partition takes it (it subtracts the same weight).
        let w = queue::weight(&msg);
        for (k, inbox) in self.inboxes.iter().enumerate() {
            let routing = &self.stats.queued[k % GAUGE_SLOTS].routing;
            routing.fetch_add(w, Ordering::Relaxed);
            let routed = Routed {
                msg: Arc::clone(&msg),
                after,
                ticket: ticket.clone(),
            };
            if inbox.send(Cmd::Publish(routed)).await.is_err() {
                routing.fetch_sub(w, Ordering::Relaxed);
            }
        }
    }

    /// Update the retained store with a retained message; returns the LSN of its record
    /// (0 when not persisted).
    pub fn retain_message(&self, msg: &Arc<Message>) -> u64 {
        if !msg.retain {
            return 0;
        }
        self.retain.update(msg, &self.stats);
        let Some(store) = &self.store else { return 0 };
        let opted_in = store.policy.opted_in(&msg.properties);
        if !store.policy.persist_retained(&msg.topic, opted_in) {
            return 0;
        }
        let msg_id = (!msg.payload.is_empty()).then(|| store.message_id(msg));
        store.append(Record::Retain {
            topic: msg.topic.clone(),
            msg_id,
        })
    }

    /// The LSN up to which the store is durable (everything, without a store).
    pub fn durable(&self) -> u64 {
        self.store.as_ref().map_or(u64::MAX, |s| s.durable())
    }

    fn send_inter(&self, partition: usize, m: Inter) {
        let _ = self.inter[partition].send(m);
    }
}

/// Stable hash of a key onto `n` buckets (SipHash with fixed keys: same on every run).
pub(crate) fn hash_index(key: &str, n: usize) -> usize {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    /// Every PUBLISH is moved into each partition's inbox as a `Cmd`, and a `Cmd` is as
    /// large as its largest variant: rare large commands are boxed to keep it small.
    #[test]
    fn partition_commands_stay_small() {
        let size = std::mem::size_of::<super::Cmd>();
        assert!(size <= 64, "Cmd is {size} bytes");
    }
}
