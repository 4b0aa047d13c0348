//! One task per network connection: reads and decodes packets, applies the per-connection
//! protocol rules (topic aliases, receive maximum, keep alive, QoS 2 receive state) and sends
//! commands to the router; writes what the router hands back, batched into one socket write
//! per wake-up. The session itself lives in the router and outlives this task.

mod handshake;
mod inbound;
mod input;
mod main_loop;
mod outbound;

pub use input::Input;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use edgeplane_codec::{AckType, Disconnect, Packet, ProtocolVersion, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Notify};

use crate::auth::{ClientCerts, DecisionCache, ListenerAuth, Principal};
use crate::router::mailbox::{mailbox, MailboxRx, MailboxTx};
use crate::router::{Cmd, Ending, Outgoing, Router, Ticket};
use crate::settings::Settings;
use crate::stats::Stats;
use crate::store::{Record, Store};

/// Outgoing channel capacity per connection; beyond it messages wait in the session queue.
const OUTGOING_CAPACITY: usize = 1024;
/// Initial read buffer: enough for typical packets; grows for larger ones. Kept small
/// because idle connections dominate memory at scale.
const READ_BUFFER: usize = 256;
/// A busy connection reads up to this much per system call: the read size doubles while
/// reads fill it and halves when they stay small. At 256 bytes a publisher of small
/// messages cost one `recv` per three packets, 41 % of the broker's CPU in QoS 0 fan-in.
/// (The codec copies what a packet keeps out of the buffer, so it is reused in place.)
const READ_BUFFER_MAX: usize = 16 * 1024;
/// A write buffer that grew past this for a burst is released once written.
const WRITE_BUFFER_KEEP: usize = 64 * 1024;
/// A paused MQTT 3.1.1 connection keeps reading (to see acknowledgements and pings, which
/// free memory and keep it alive) until the packets it holds back reach this many bytes.
const PAUSED_BUFFER: usize = 64 * 1024;
/// How often a paused connection looks whether queued bytes fell below the low-water mark.
const PAUSE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// What every connection task shares.
pub struct Context {
    pub router: Arc<Router>,
    pub settings: Arc<Settings>,
    pub stats: Arc<Stats>,
    pub next_conn_id: AtomicU64,
}

/// Why the main loop stopped.
enum Stop {
    /// The session was told how it ended (or must be).
    Ended(Ending),
    /// The router detached us (takeover, kill): nothing to report.
    Detached,
    Shutdown,
}

/// Per-connection protocol state.
struct Conn {
    version: ProtocolVersion,
    client_id: Arc<str>,
    conn_id: u64,
    partition: usize,
    session_expiry: u32,
    client_max_packet: u32,
    client_alias_max: u16,
    /// State most connections never use (topic aliases, QoS 2 receipts, packets held back
    /// while paused, the enhanced-authentication method), made on first use: every idle
    /// connection holds a `Conn`.
    rare: Option<Box<Rare>>,
    /// The store keeps this client's session (QoS 2 receive state is written).
    persist: bool,
    /// PUBACK/PUBREC owed to the client, in the order of its PUBLISH packets
    /// [MQTT-4.6.0-2], each going out once its ticket says the message is durable.
    acks: VecDeque<(Option<Arc<Ticket>>, OwedAck)>,
    /// Woken when a ticket completes; made with the first ticket.
    ack_notify: Option<Arc<Notify>>,
    /// The durable store, if any, and its durable LSN.
    store: Option<(Arc<Store>, watch::Receiver<u64>)>,
    /// DISCONNECT to send after the pending acknowledgements.
    final_disconnect: Option<ReasonCode>,
    wbuf: BytesMut,
    /// Who the client is, for authorization of each PUBLISH and SUBSCRIBE (shared: 8 B
    /// here instead of 72 in every connection's task).
    principal: Arc<Principal>,
    auth: Arc<ListenerAuth>,
    /// PUBLISH decisions remembered under the current policy; made at the first PUBLISH
    /// a policy decides, so subscribers and ports without authorization hold none.
    authz_cache: Option<Box<DecisionCache>>,
    /// Backpressure on an MQTT 3.1.1 publisher: while queued bytes are over
    /// `maxQueuedBytes`, its PUBLISH (and whatever follows one) is held back unhandled in
    /// `deferred` until they fall below the low-water mark; acknowledgements and pings still
    /// go through, so a client that is also a subscriber can drain its own queue.
    paused: bool,
    deferred_bytes: usize,
    /// Queued bytes were over `maxQueuedBytes` when this read's packets began to be handled
    /// (MQTT 5: QoS 1/2 refused with 0x97, QoS 0 dropped).
    over_memory: bool,
    /// The store was over `persistence.maxSize` (MQTT 5: QoS 1/2 refused with 0x97).
    over_disk: bool,
    /// When the client's credentials expire: it is disconnected then (0xA0 Maximum connect
    /// time) unless it re-authenticated with AUTH, which moves this.
    expiry: Option<std::time::SystemTime>,
    /// `expiry` was set or moved and its timer not yet armed for it.
    expiry_moved: bool,
}

/// The rarely used part of [`Conn`].
#[derive(Default)]
struct Rare {
    inbound_aliases: HashMap<u16, String>,
    outbound_aliases: HashMap<String, u16>,
    /// Packet ids of QoS 2 messages received and not yet released.
    incoming_qos2: HashSet<u16>,
    /// Packets held back while reads are paused (see [`Conn::paused`]).
    deferred: VecDeque<Packet>,
    /// CONNECT's Authentication Method (enhanced authentication), which AUTH must repeat.
    auth_method: Option<String>,
}

impl Rare {
    /// What CONNECT leaves for the rare state: QoS 2 receipts of a resumed session and the
    /// enhanced-authentication method; `None` (nothing allocated) without either.
    fn after_connect(incoming_qos2: Vec<u16>, auth_method: Option<String>) -> Option<Box<Self>> {
        if incoming_qos2.is_empty() && auth_method.is_none() {
            return None;
        }
        Some(Box::new(Rare {
            incoming_qos2: incoming_qos2.into_iter().collect(),
            auth_method,
            ..Rare::default()
        }))
    }
}

/// A PUBACK, PUBREC or PUBCOMP owed to the client: 4 bytes where a [`Packet`] is 400.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwedAck {
    pub kind: AckType,
    pub packet_id: u16,
    pub reason: ReasonCode,
}

impl Conn {
    /// The rarely used state, made on first use.
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// QoS 2 messages received and not yet released.
    fn incoming_qos2(&self) -> usize {
        self.rare.as_ref().map_or(0, |r| r.incoming_qos2.len())
    }

    fn write(&mut self, p: &Packet) {
        edgeplane_codec::encode(p, self.version, &mut self.wbuf);
    }

    fn write_ack(&mut self, a: OwedAck) {
        edgeplane_codec::encode_ack(a.kind, a.packet_id, a.reason, self.version, &mut self.wbuf);
    }

    fn v5(&self) -> bool {
        self.version == ProtocolVersion::V5
    }

    /// Acknowledge a PUBLISH: at once, or (with a ticket, or behind acknowledgements still
    /// waiting for theirs) when the store has made the message durable.
    fn ack(&mut self, ack: OwedAck, ticket: Option<Arc<Ticket>>) {
        if ticket.is_none() && self.acks.is_empty() {
            self.write_ack(ack);
        } else {
            self.acks.push_back((ticket, ack));
            self.flush_acks();
        }
    }

    /// Commit routed QoS 2 messages (their receive record, written after every queue record
    /// of the message), then write the acknowledgements whose messages are durable, in order.
    fn flush_acks(&mut self) {
        let Some((store, durable)) = &self.store else {
            return;
        };
        for t in self.acks.iter().filter_map(|(t, _)| t.as_ref()) {
            if let (true, true, Some(pid)) = (t.routed(), t.needs_commit(), t.commit_for) {
                let lsn = store.append(Record::Incoming {
                    client: Arc::clone(&self.client_id),
                    packet_id: pid,
                    released: false,
                });
                t.set_commit(lsn);
            }
        }
        let durable = *durable.borrow();
        while self.acks.front().is_some_and(|(t, _)| {
            t.as_ref()
                .is_none_or(|t| t.routed() && !t.needs_commit() && t.required() <= durable)
        }) {
            if let Some((_, ack)) = self.acks.pop_front() {
                self.write_ack(ack);
            }
        }
    }

    /// Queue DISCONNECT with `reason` (MQTT 5 only; 3.1.1 just closes). Acknowledgements
    /// still waiting for the store go first (see [`flush_then`]).
    fn disconnect(&mut self, reason: ReasonCode) {
        if !self.v5() {
            return;
        }
        if self.acks.is_empty() {
            self.write(&Packet::Disconnect(Disconnect::new(reason)));
        } else {
            self.final_disconnect = Some(reason);
        }
    }
}

/// Where a connection comes from and what it may do: needed while CONNECT is handled, so it
/// travels boxed and is freed then (a future keeps the space of what it captured for its
/// whole life, and every idle connection holds this one).
pub struct Origin {
    pub peer: SocketAddr,
    /// The listener's name.
    pub listener: Arc<str>,
    pub auth: Arc<ListenerAuth>,
    /// The client's certificate chain, verified in the TLS handshake.
    pub certs: Option<ClientCerts>,
}

/// Serve one client connection until it ends. `guard` is dropped when it ends (the
/// listener's counts of open connections), so the listener can spawn this future as it is.
///
/// A plain function returning an `async move` block rather than an `async fn`: an async
/// function's future keeps its arguments twice (as captured and as moved into locals), and
/// every idle connection holds this future.
#[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
pub fn serve<S, G>(
    mut stream: S,
    origin: Box<Origin>,
    ctx: Arc<Context>,
    guard: G,
) -> impl std::future::Future<Output = ()> + Send
where
    S: Input + AsyncWrite + Send,
    G: Send,
{
    async move {
        // Captured (so dropped with this future), never moved: a local would be a copy.
        let _ = &guard;
        let conn_id = ctx.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let mut rbuf = BytesMut::with_capacity(READ_BUFFER);
        let (tx, mut rx) = mailbox(OUTGOING_CAPACITY);
        // Boxed: what only CONNECT needs (the origin, the CONNECT packet, the handshake's
        // futures) would otherwise keep its place in this future for the connection's life.
        let Some(mut conn) = Box::pin(establish(
            &mut stream,
            &mut rbuf,
            origin,
            (conn_id, tx),
            &ctx,
        ))
        .await
        else {
            return;
        };
        Box::pin(write_connack(&mut rx, &mut conn, &ctx)).await;
        let stop = main_loop::run(&mut stream, &mut rbuf, &mut rx, &mut conn, &ctx).await;
        if conn.paused {
            Stats::sub(&ctx.stats.reads_paused_now, 1);
        }
        if !matches!(stop, Stop::Shutdown) {
            Box::pin(settle_acks(&mut conn)).await;
        }
        match stop {
            Stop::Ended(ending) => {
                let cmd = Cmd::Disconnected {
                    client: Arc::clone(&conn.client_id),
                    conn: conn.conn_id,
                    ending,
                };
                Box::pin(ctx.router.send(conn.partition, cmd)).await;
            }
            Stop::Detached => {}
            Stop::Shutdown => {
                Box::pin(settle_acks(&mut conn)).await;
                conn.acks.clear();
                conn.disconnect(ReasonCode::SERVER_SHUTTING_DOWN);
                while let Some(item) = rx.try_recv() {
                    Box::pin(outbound::write_outgoing(&mut conn, item, &ctx)).await;
                }
            }
        }
        if !conn.wbuf.is_empty() {
            let _ = stream.write_all(&conn.wbuf).await;
            let _ = stream.flush().await;
        }
        Box::pin(linger_close(&mut stream)).await;
        tracing::debug!(client_id = %conn.client_id, "connection closed");
    }
}

/// Read CONNECT, attach the session, and build the connection's state: `None` if the
/// client is refused or goes away first (answered and logged by the handshake).
async fn establish<S>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    origin: Box<Origin>,
    (conn_id, tx): (u64, MailboxTx<Outgoing>),
    ctx: &Context,
) -> Option<Conn>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Origin {
        peer,
        listener,
        auth,
        certs,
    } = unbox(origin);
    // Futures awaited once, or once per wake-up, are boxed so an idle connection's
    // task stays small (idle connections dominate memory at scale).
    let connect = match Box::pin(handshake::read_connect(stream, rbuf, ctx)).await {
        Ok(c) => c,
        Err(_) => return None,
    };
    let attachment = handshake::Attachment {
        conn_id,
        tx,
        auth: &auth,
        certs,
        listener,
        peer,
    };
    // Taken apart as it arrives: a `Negotiated` local would keep its storage in
    // this future, even once every field is moved out of it.
    let handshake::Negotiated {
        version,
        client_id,
        session_expiry,
        client_max_packet,
        client_alias_max,
        incoming_qos2,
        persist,
        principal,
        auth_method,
        expiry,
    } = match Box::pin(handshake::attach(stream, connect, ctx, attachment)).await {
        Ok(n) => n,
        Err(_) => return None,
    };
    tracing::debug!(%peer, %client_id, ?version, "client connected");
    let conn = Conn {
        version,
        partition: ctx.router.partition_of(&client_id),
        client_id,
        conn_id,
        session_expiry,
        client_max_packet: u32::try_from(client_max_packet).unwrap_or(u32::MAX),
        client_alias_max,
        rare: Rare::after_connect(incoming_qos2, auth_method),
        persist,
        acks: VecDeque::new(),
        ack_notify: None,
        store: ctx
            .router
            .store
            .as_ref()
            .map(|st| (Arc::clone(st), st.watch_durable())),
        final_disconnect: None,
        wbuf: BytesMut::new(),
        principal: Arc::new(principal),
        auth,
        authz_cache: None,
        paused: false,
        deferred_bytes: 0,
        over_memory: false,
        over_disk: false,
        expiry_moved: expiry.is_some(),
        expiry,
    };
    Some(conn)
}

/// CONNACK goes out before the answer to any packet pipelined behind CONNECT
/// [MQTT-3.2.0-1]; the partition queues it on the fresh mailbox right after attaching.
/// Boxed by the caller: what this holds across its waits would otherwise take room in every
/// idle connection's future.
async fn write_connack(rx: &mut MailboxRx<Outgoing>, conn: &mut Conn, ctx: &Context) {
    while let Some(item) = rx.recv().await {
        let connack = matches!(&item, Outgoing::Packet(p) if p.name() == "CONNACK");
        outbound::write_outgoing(conn, item, ctx).await;
        if connack {
            break;
        }
    }
}

/// The value out of its box, the box freed now (moving out of a captured box would keep
/// the allocation until the future ends).
#[allow(clippy::boxed_local)] // the point: the box is taken by value and freed here
fn unbox<T>(b: Box<T>) -> T {
    *b
}

/// How long a closing connection keeps reading (and discarding) what the client still sends.
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Close our side, then read until the client closes too (bounded by [`LINGER`]). Closing a
/// socket with unread input makes the kernel reset the connection, which can destroy the
/// DISCONNECT we just sent before the client reads it, and fails the client's in-flight
/// writes (acknowledgements it was sending) with a broken pipe.
async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let _ = stream.shutdown().await;
    let drain = async {
        let mut sink = [0u8; 1024];
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// A ticket completed or the store's durable position moved: acknowledgements may be due.
async fn acks_progress(notify: Option<&Notify>, durable: Option<&mut watch::Receiver<u64>>) {
    tokio::select! {
        _ = notified(notify) => {}
        _ = durable_changed(durable) => {}
    }
}

/// A ticket completed (never, for a connection that has made none).
async fn notified(notify: Option<&Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn durable_changed(rx: Option<&mut watch::Receiver<u64>>) {
    match rx {
        Some(rx) => {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// How long a closing connection waits for the store to make acknowledged messages durable.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Wait (bounded by [`SETTLE`]) for pending acknowledgements to become writable. Routed
/// QoS 2 messages are committed even if their acknowledgement cannot be written any more,
/// so their deliveries are not held forever; the publisher's re-sent copy is recognised.
async fn settle_acks(conn: &mut Conn) {
    let notify = conn.ack_notify.clone();
    let mut durable = conn.store.as_ref().map(|(_, d)| d.clone());
    let settle = async {
        loop {
            conn.flush_acks();
            if conn.acks.is_empty() {
                break;
            }
            tokio::select! {
                _ = notified(notify.as_deref()) => {}
                _ = durable_changed(durable.as_mut()) => {}
            }
        }
    };
    let _ = tokio::time::timeout(SETTLE, settle).await;
}

async fn flush_then<S: AsyncWrite + Unpin>(stream: &mut S, conn: &mut Conn, stop: Stop) -> Stop {
    // Messages already routed get their acknowledgement before the DISCONNECT, once durable.
    settle_acks(conn).await;
    if let Some(reason) = conn.final_disconnect.take() {
        conn.acks.clear();
        conn.write(&Packet::Disconnect(Disconnect::new(reason)));
    }
    if !conn.wbuf.is_empty() {
        let _ = stream.write_all(&conn.wbuf).await;
        let _ = stream.flush().await;
        conn.wbuf.clear();
    }
    stop
}
