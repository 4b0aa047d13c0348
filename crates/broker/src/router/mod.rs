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

mod partition;
mod session;
mod shared;
mod trie;

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU8};
use std::sync::Arc;

use edgeplane_codec::{
    ConnAck, Packet, ProtocolVersion, Publish, QoS, SubOptions, Subscribe, Unsubscribe,
};
use tokio::sync::{broadcast, mpsc, oneshot, Notify};

use crate::message::Message;
use crate::retain::RetainStore;
use crate::settings::Settings;
use crate::stats::Stats;

/// Capacity of a partition's inbox from connections: a full inbox slows publishers down.
const INBOX_CAPACITY: usize = 4096;

/// Client lifecycle events kept for a slow [`ClientEvent`] listener before it lags.
const EVENTS_CAPACITY: usize = 4096;

/// A change in a client's connection, for in-process services that keep per-client state
/// (the state store drops a client's key notifications when it disconnects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The client's connection ended (normally, abnormally, or taken over by a new one).
    Disconnected { client_id: Arc<str> },
}

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
}

/// State shared between a connection task and the partition that owns its session.
#[derive(Debug, Default)]
pub struct ConnSignals {
    /// Set by the partition when the outgoing channel was full; the connection answers with
    /// [`Cmd::Drained`] once it has emptied the channel.
    pub drain: AtomicBool,
    /// Wakes the connection to close it (takeover, protocol error, shutdown).
    pub kill: Notify,
    /// The reason code of the DISCONNECT to send when killed (MQTT 5 only).
    pub kill_reason: AtomicU8,
}

/// A will message waiting for its connection to end (§3.1.2.5).
#[derive(Debug, Clone)]
pub struct WillMsg {
    pub publish: Publish,
    pub delay: u32,
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
    /// How many QoS 1/2 messages we may have in flight towards the client.
    pub window: u16,
    pub tx: mpsc::Sender<Outgoing>,
    pub signals: Arc<ConnSignals>,
    /// CONNACK to send once the session is attached; the partition fills Session Present.
    pub connack: ConnAck,
    pub reply: oneshot::Sender<ConnectReply>,
}

pub struct ConnectReply {
    /// QoS 2 packet ids received from the client and not yet released (PUBREL).
    pub incoming_qos2: Vec<u16>,
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
    Publish(Arc<Message>),
    Subscribe {
        client: Arc<str>,
        conn: u64,
        packet: Subscribe,
        /// Per filter, whether authorization refused it (empty: none refused).
        denied: Vec<bool>,
    },
    Unsubscribe {
        client: Arc<str>,
        conn: u64,
        packet: Unsubscribe,
    },
    Ack {
        client: Arc<str>,
        conn: u64,
        packet_id: u16,
        kind: AckKind,
    },
    /// A QoS 2 PUBLISH was received (`released: false`) or released by PUBREL (`true`).
    IncomingQos2 {
        client: Arc<str>,
        conn: u64,
        packet_id: u16,
        released: bool,
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
}

/// Messages between partitions.
pub(crate) enum Inter {
    Publish(Arc<Message>),
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
    },
}

/// Handle to every partition; cheap to clone through `Arc`.
pub struct Router {
    inboxes: Vec<mpsc::Sender<Cmd>>,
    inter: Vec<mpsc::UnboundedSender<Inter>>,
    pub retain: Arc<RetainStore>,
    pub stats: Arc<Stats>,
    pub settings: Arc<Settings>,
    pub events: broadcast::Sender<ClientEvent>,
}

impl Router {
    /// Spawn the partitions on the current Tokio runtime.
    pub fn start(settings: Arc<Settings>, stats: Arc<Stats>) -> Arc<Router> {
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
        let router = Arc::new(Router {
            inboxes,
            inter,
            retain: Arc::default(),
            stats,
            settings,
            events: broadcast::channel(EVENTS_CAPACITY).0,
        });
        for (index, (rx, irx)) in receivers.into_iter().enumerate() {
            let p = partition::Partition::new(index, Arc::clone(&router));
            tokio::spawn(p.run(rx, irx));
        }
        router
    }

    pub fn partitions(&self) -> usize {
        self.inboxes.len()
    }

    /// The partition that owns the session of `client_id`.
    pub fn partition_of(&self, client_id: &str) -> usize {
        hash_index(client_id, self.inboxes.len())
    }

    /// Send a command to one partition, waiting while its inbox is full.
    pub async fn send(&self, partition: usize, cmd: Cmd) -> bool {
        self.inboxes[partition].send(cmd).await.is_ok()
    }

    /// Route a message from a client or in-process publisher: update the retained store,
    /// then hand it to every partition (waiting while inboxes are full).
    pub async fn publish(&self, msg: Arc<Message>) {
        if msg.retain {
            self.retain.update(&msg, &self.stats);
        }
        for inbox in &self.inboxes {
            let _ = inbox.send(Cmd::Publish(Arc::clone(&msg))).await;
        }
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
