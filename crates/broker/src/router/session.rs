//! A session's state (§4.1) as its partition owns it: subscriptions, queued and in-flight
//! messages, QoS 2 receive state, will, expiry. It outlives connections and holds nothing
//! tied to a socket except the optional handle of the attached connection.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use edgeplane_codec::ProtocolVersion;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::{ConnSignals, Delivery, Outgoing, WillMsg};

/// The connection currently attached to a session.
pub struct Conn {
    pub id: u64,
    pub tx: mpsc::Sender<Outgoing>,
    pub signals: Arc<ConnSignals>,
    pub window: u16,
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
    /// Raw filters as subscribed (including `$share/...`); options live in the trie.
    pub subs: HashSet<String>,
    /// Control packets and re-sends that must go out before queued messages.
    pub control: VecDeque<Outgoing>,
    /// Messages not yet handed to the connection.
    pub queue: VecDeque<Delivery>,
    pub inflight: BTreeMap<u16, Inflight>,
    next_packet_id: u16,
    pub incoming_qos2: HashSet<u16>,
    pub expiry: u32,
    pub will: Option<WillMsg>,
    /// Changes at every attach/detach so stale timers are recognised.
    pub epoch: u64,
    /// An in-process service's session: not counted as a client in statistics.
    pub internal: bool,
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
    pub fn new(client_id: Arc<str>, version: ProtocolVersion) -> Self {
        Self {
            client_id,
            version,
            conn: None,
            subs: HashSet::new(),
            control: VecDeque::new(),
            queue: VecDeque::new(),
            inflight: BTreeMap::new(),
            next_packet_id: 1,
            incoming_qos2: HashSet::new(),
            expiry: 0,
            will: None,
            epoch: 0,
            internal: false,
        }
    }

    /// A packet id not in use by an in-flight message.
    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.inflight.contains_key(&id) {
                return id;
            }
        }
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
                conn.signals.drain.store(true, Ordering::Release);
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
            conn.signals.kill_reason.store(reason, Ordering::Release);
            conn.signals.kill.notify_one();
        }
    }

    /// Close the attached connection with a DISCONNECT reason (MQTT 5) and forget it.
    pub fn kill_connection(&mut self, reason: u8) -> bool {
        self.signal_kill(reason);
        self.conn.take().is_some()
    }
}
