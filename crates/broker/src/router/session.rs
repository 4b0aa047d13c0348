//! A session's state (§4.1) as its partition owns it: subscriptions, queued and in-flight
//! messages, QoS 2 receive state, will, expiry. It outlives connections and holds nothing
//! tied to a socket except the optional handle of the attached connection.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgeplane_codec::{ProtocolVersion, SubOptions};

use super::mailbox::{MailboxTx, TrySendError};
use super::queue::Queue;
use super::{Delivery, Outgoing, WillMsg};
use crate::store::{Record, Store};

/// The connection currently attached to a session.
pub struct Conn {
    pub id: u64,
    pub tx: MailboxTx<Outgoing>,
    pub window: u16,
    /// 1.5 times the client's keep alive, in milliseconds (see [`super::ConnSignals`]).
    pub keep_alive_ms: Option<std::num::NonZeroU32>,
    /// Who connected, through which listener, from where (none for in-process clients).
    pub details: Option<Arc<super::clients::ClientDetails>>,
}

pub struct Inflight {
    pub delivery: Delivery,
    /// PUBREC received and PUBREL sent: only PUBCOMP is awaited.
    pub released: bool,
}

pub struct Session {
    pub client_id: Arc<str>,
    pub version: ProtocolVersion,
    pub conn: Option<Conn>,
    /// Raw filters as subscribed (including `$share/...`), with their options and
    /// subscription identifier (the trie and shared groups hold copies for matching).
    /// A `BTreeMap`: 24 B and no allocation when empty (a `HashMap` is 48 B), and a session
    /// holds few filters.
    pub subs: BTreeMap<String, (SubOptions, Option<u32>)>,
    /// Control packets and re-sends that must go out before queued messages.
    pub control: VecDeque<Outgoing>,
    /// Messages not yet handed to the connection, their bytes accounted broker-wide.
    pub queue: Queue,
    pub inflight: BTreeMap<u16, Inflight>,
    /// Sequence number of the next QoS 1/2 message queued; a message's packet id is derived
    /// from it, so a session recovered from the store re-sends with the same ids.
    pub next_seq: u64,
    /// The store keeps this session (session expiry above zero and the policy says so).
    pub persist: bool,
    /// Nothing goes out before this LSN is durable (the CONNACK, SUBACK, PUBREL... queued in
    /// `control` acknowledge what it wrote).
    pub hold: u64,
    /// In the partition's list of sessions waiting for the store.
    pub waiting: bool,
    pub incoming_qos2: PacketIds,
    pub expiry: u32,
    /// Boxed: a will holds a whole PUBLISH (400 bytes) and most sessions have none.
    pub will: Option<Box<WillMsg>>,
    /// Changes at every attach/detach so stale timers are recognised.
    pub epoch: u64,
    /// An in-process service's session: not counted as a client in statistics.
    pub internal: bool,
}

/// Packet ids of QoS 2 messages received and not yet released. Allocated on first use:
/// most sessions never receive QoS 2, and an empty `HashSet` alone is 48 B per session.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // the point: 8 B when empty instead of 48
pub struct PacketIds(Option<Box<HashSet<u16>>>);

impl PacketIds {
    pub fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_with(Default::default).insert(id)
    }

    pub fn remove(&mut self, id: &u16) -> bool {
        let Some(set) = &mut self.0 else { return false };
        let removed = set.remove(id);
        if set.is_empty() {
            self.0 = None;
        }
        removed
    }

    pub fn iter(&self) -> std::iter::Flatten<std::option::IntoIter<&HashSet<u16>>> {
        self.0.as_deref().into_iter().flatten()
    }
}

impl<'a> IntoIterator for &'a PacketIds {
    type Item = &'a u16;
    type IntoIter = std::iter::Flatten<std::option::IntoIter<&'a HashSet<u16>>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl FromIterator<u16> for PacketIds {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let set: HashSet<u16> = iter.into_iter().collect();
        PacketIds((!set.is_empty()).then(|| Box::new(set)))
    }
}

/// The packet id of the QoS 1/2 message with sequence number `seq`: ids cycle through
/// 1..=65535 in queue order, and one still in flight holds back the message that would
/// reuse it.
pub fn packet_id_of(seq: u64) -> u16 {
    ((seq.wrapping_sub(1) % 65_535) + 1) as u16
}

/// Result of offering one item to the connection's channel.
pub enum Offer {
    Sent,
    /// Channel full: the item comes back and the connection will report `Drained`.
    Full(Outgoing),
    /// The connection is gone; its `Disconnected` command is on the way.
    Gone(Outgoing),
}

impl Session {
    pub fn new(client_id: Arc<str>, version: ProtocolVersion, queue: Queue) -> Self {
        Self {
            client_id,
            version,
            conn: None,
            subs: BTreeMap::new(),
            control: VecDeque::new(),
            queue,
            inflight: BTreeMap::new(),
            next_seq: 1,
            persist: false,
            hold: 0,
            waiting: false,
            incoming_qos2: PacketIds::default(),
            expiry: 0,
            will: None,
            epoch: 0,
            internal: false,
        }
    }

    /// Record that the QoS 1/2 message `seq` left a persisted session's queue (acknowledged,
    /// expired or dropped); nothing for QoS 0 or sessions kept in memory.
    pub fn record_done(&self, store: Option<&Store>, seq: u64) {
        if let (true, Some(store), true) = (self.persist, store, seq != 0) {
            let client = Arc::clone(&self.client_id);
            store.append(Record::Done { client, seq });
        }
    }

    /// Take the sequence number for the next QoS 1/2 message.
    pub fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Try to hand one item to the attached connection.
    pub fn offer(&self, item: Outgoing) -> Offer {
        let Some(conn) = &self.conn else {
            return Offer::Gone(item);
        };
        match conn.tx.try_send(item) {
            Ok(()) => Offer::Sent,
            Err(TrySendError::Closed(item)) => Offer::Gone(item),
            Err(TrySendError::Full(item)) => {
                conn.tx.signals().drain.store(true, Ordering::Release);
                // The connection may have emptied the channel before seeing the flag: retry
                // once so that either this succeeds or a `Drained` is guaranteed to follow.
                match conn.tx.try_send(item) {
                    Ok(()) => Offer::Sent,
                    Err(TrySendError::Full(item)) => Offer::Full(item),
                    Err(TrySendError::Closed(item)) => Offer::Gone(item),
                }
            }
        }
    }

    /// Ask the attached connection to close with a DISCONNECT reason (MQTT 5), keeping it
    /// attached until the caller detaches it.
    pub fn signal_kill(&self, reason: u8) {
        if let Some(conn) = &self.conn {
            conn.tx
                .signals()
                .kill_reason
                .store(reason, Ordering::Release);
            conn.tx.kill();
        }
    }

    /// Close the attached connection with a DISCONNECT reason (MQTT 5) and forget it.
    pub fn kill_connection(&mut self, reason: u8) -> bool {
        self.signal_kill(reason);
        self.conn.take().is_some()
    }
}
