//! A link to a remote MQTT v5 broker for dataflow endpoints, on Edgeplane's own codec.
//!
//! One task owns the connection and reconnects by itself, with backoff, forever. What
//! enters: [`MqttLink::publish`] (a message to send; the returned receiver fires once the
//! remote broker has acknowledged it, PUBACK for QoS 1, written for QoS 0) and
//! [`MqttLink::ack`] (a delivery the dataflow has handled). What leaves: deliveries from
//! the link's subscriptions on the channel given to [`MqttLink::start`], and the link's
//! [`LinkStatus`].
//!
//! Guarantees: messages are sent in the order given and, after a lost connection, every
//! one not yet acknowledged is sent again, first and in order, before anything new (so
//! order per topic holds and nothing is lost; a re-sent message may arrive twice, which
//! at-least-once allows). A delivery is acknowledged to the remote broker only when the
//! dataflow says so; one that was not when the connection dropped comes again, from the
//! remote session (`cleanStart` false).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use edgeplane_codec::{
    Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode, SubOptions,
    Subscribe,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};

const V: ProtocolVersion = ProtocolVersion::V5;
/// Largest packet accepted from the remote broker.
const MAX_PACKET: usize = 16 << 20;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach and log in to the remote broker.
#[derive(Clone)]
pub struct LinkSettings {
    /// `name:port`.
    pub host: String,
    /// TLS client settings, and the name to verify the server certificate against.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
    /// MQTT over WebSocket (`ws://host/mqtt`, or `wss` with TLS).
    pub websocket: bool,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub keep_alive: u16,
    pub session_expiry: u32,
    /// Messages sent and not yet acknowledged, at most.
    pub max_inflight: u16,
    /// Topic filters to subscribe to (a source), with the QoS asked for.
    pub subscriptions: Vec<(String, QoS)>,
}

/// The link's state, in words for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    Connecting,
    Connected,
    /// Down, with why; it keeps retrying.
    Down(String),
}

/// A message delivered by a subscription; pass its [`DeliveryAck`] to [`MqttLink::ack`].
#[derive(Debug)]
pub struct Delivery {
    pub publish: Publish,
    pub ack: DeliveryAck,
}

/// Identifies a delivery on the connection it came on.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryAck {
    connection: u64,
    packet_id: u16,
    qos: QoS,
}

enum Command {
    Publish(Box<Publish>, oneshot::Sender<()>),
    Ack(DeliveryAck),
}

/// Handle to the link task; dropping every handle ends it.
#[derive(Clone)]
pub struct MqttLink {
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<LinkStatus>,
}

impl MqttLink {
    /// Start the link task; deliveries (if it subscribes) go to `deliveries`.
    pub fn start(settings: LinkSettings, deliveries: Option<mpsc::Sender<Delivery>>) -> MqttLink {
        let (commands, rx) = mpsc::channel(usize::from(settings.max_inflight.max(1)));
        let (status_tx, status) = watch::channel(LinkStatus::Connecting);
        let task = LinkTask {
            settings,
            commands: rx,
            deliveries,
            status: status_tx,
            inflight: VecDeque::new(),
            next_packet_id: 1,
            connection: 0,
            pending_writes: BytesMut::new(),
        };
        tokio::spawn(task.run());
        MqttLink { commands, status }
    }

    /// Queue a message; the receiver fires when the remote broker has it. Waits while the
    /// link holds as many unacknowledged messages as it may (backpressure).
    pub async fn publish(&self, publish: Publish) -> Option<oneshot::Receiver<()>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Publish(Box::new(publish), tx))
            .await
            .ok()?;
        Some(rx)
    }

    /// Acknowledge a delivery to the remote broker.
    pub async fn ack(&self, ack: DeliveryAck) {
        if ack.qos != QoS::AtMostOnce {
            let _ = self.commands.send(Command::Ack(ack)).await;
        }
    }

    pub fn status(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

struct Inflight {
    packet_id: u16,
    publish: Publish,
    done: oneshot::Sender<()>,
}

struct LinkTask {
    settings: LinkSettings,
    commands: mpsc::Receiver<Command>,
    deliveries: Option<mpsc::Sender<Delivery>>,
    status: watch::Sender<LinkStatus>,
    /// Sent, not yet acknowledged, in send order.
    inflight: VecDeque<Inflight>,
    next_packet_id: u16,
    /// Counts connections, so an ack meant for an earlier one is not sent on a later one.
    connection: u64,
    /// Packets to write that arose while reading (PUBCOMP).
    pending_writes: BytesMut,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        source: std::io::Error,
    },
    #[error("tls handshake with {host} failed: {source}")]
    Tls {
        host: String,
        source: std::io::Error,
    },
    #[error("websocket upgrade at {host}/mqtt failed: {source}")]
    WebSocket {
        host: String,
        source: std::io::Error,
    },
    #[error("no answer from {0} within {CONNECT_TIMEOUT:?}")]
    Timeout(String),
    #[error("the broker refused the connection: {0}")]
    Refused(String),
    #[error("the broker refused subscription {0:?} with reason {1}")]
    Subscribe(String, ReasonCode),
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker sent an invalid packet: {0}")]
    Protocol(#[from] edgeplane_codec::ProtocolError),
    #[error("the broker closed the connection{0}")]
    Closed(String),
    #[error("no packet from the broker within 1.5 keep-alive periods")]
    KeepAlive,
    #[error("the dataflow stopped")]
    Stopped,
}

impl LinkTask {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        loop {
            let _ = self.status.send(LinkStatus::Connecting);
            let why = match self.connect().await {
                Ok((stream, rbuf, early)) => {
                    backoff = BACKOFF_MIN;
                    self.connection += 1;
                    let _ = self.status.send(LinkStatus::Connected);
                    tracing::info!(host = %self.settings.host, client_id = %self.settings.client_id, "dataflow endpoint connected");
                    self.serve(stream, rbuf, early).await
                }
                Err(e) => e,
            };
            // Stopped, or every handle is gone (the dataflow was stopped or reconfigured).
            if matches!(why, LinkError::Stopped) || self.commands.is_closed() {
                return;
            }
            tracing::warn!(host = %self.settings.host, error = %why, "dataflow endpoint unreachable; retrying");
            let _ = self.status.send(LinkStatus::Down(why.to_string()));
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Connect, log in and subscribe; packets that came before the SUBACK are returned.
    async fn connect(
        &mut self,
    ) -> Result<(Pin<Box<dyn Stream>>, BytesMut, Vec<Packet>), LinkError> {
        let s = &self.settings;
        let host = s.host.clone();
        let attempt = async {
            let tcp = TcpStream::connect(&host)
                .await
                .map_err(|source| LinkError::Connect {
                    host: host.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let mut stream: Pin<Box<dyn Stream>> = match &s.tls {
                None => Box::pin(tcp),
                Some((config, name)) => {
                    let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
                    let tls = connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(|source| LinkError::Tls {
                            host: host.clone(),
                            source,
                        })?;
                    Box::pin(tls)
                }
            };
            if s.websocket {
                let ws = edgeplane_broker::ws::connect(stream, &host, s.tls.is_some())
                    .await
                    .map_err(|source| LinkError::WebSocket {
                        host: host.clone(),
                        source,
                    })?;
                stream = Box::pin(ws);
            }
            let connect = Connect {
                protocol: V,
                clean_start: false,
                keep_alive: s.keep_alive,
                client_id: s.client_id.clone(),
                will: None,
                username: s.username.clone(),
                password: s.password.clone(),
                properties: Properties {
                    session_expiry_interval: Some(s.session_expiry),
                    receive_maximum: Some(s.max_inflight.max(1)),
                    ..Properties::default()
                },
            };
            let mut rbuf = BytesMut::with_capacity(16 * 1024);
            write(&mut stream, &Packet::Connect(Box::new(connect))).await?;
            let present = match read(&mut stream, &mut rbuf).await? {
                Packet::ConnAck(a) if a.code == 0 => a.session_present,
                Packet::ConnAck(a) => {
                    let reason = a
                        .properties
                        .reason_string
                        .unwrap_or_else(|| format!("reason code 0x{:02X}", a.code));
                    return Err(LinkError::Refused(reason));
                }
                other => {
                    return Err(LinkError::Refused(format!(
                        "{} before CONNACK",
                        other.name()
                    )))
                }
            };
            let mut early = Vec::new();
            if !s.subscriptions.is_empty() && !present {
                early = subscribe(&mut stream, &mut rbuf, &s.subscriptions).await?;
            }
            Ok((stream, rbuf, early))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, attempt)
            .await
            .map_err(|_| LinkError::Timeout(self.settings.host.clone()))?
    }

    /// Serve one connection until it fails; unacknowledged messages stay in `inflight`.
    async fn serve(
        &mut self,
        mut stream: Pin<Box<dyn Stream>>,
        mut rbuf: BytesMut,
        early: Vec<Packet>,
    ) -> LinkError {
        let mut out = BytesMut::with_capacity(16 * 1024);
        self.pending_writes.clear();
        for p in early {
            if let Err(e) = self.incoming(p).await {
                return e;
            }
        }
        // Everything not yet acknowledged goes again, first, in order.
        for f in &mut self.inflight {
            f.publish.dup = f.publish.qos != QoS::AtMostOnce;
            edgeplane_codec::encode(&Packet::Publish(f.publish.clone()), V, &mut out);
        }
        let keep_alive = Duration::from_secs(u64::from(self.settings.keep_alive.max(1)));
        let mut ping = tokio::time::interval(keep_alive);
        ping.tick().await;
        let mut last_heard = tokio::time::Instant::now();
        let max_inflight = usize::from(self.settings.max_inflight.max(1));
        loop {
            if !self.pending_writes.is_empty() {
                out.extend_from_slice(&self.pending_writes);
                self.pending_writes.clear();
            }
            if !out.is_empty() {
                if let Err(e) = stream.write_all(&out).await {
                    return e.into();
                }
                out.clear();
            }
            tokio::select! {
                read = stream.read_buf(&mut rbuf) => {
                    match read {
                        Ok(0) => return LinkError::Closed(String::new()),
                        Ok(_) => last_heard = tokio::time::Instant::now(),
                        Err(e) => return e.into(),
                    }
                    loop {
                        match edgeplane_codec::decode(&mut rbuf, V, MAX_PACKET) {
                            Ok(Some(p)) => {
                                if let Err(e) = self.incoming(p).await {
                                    return e;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        }
                    }
                }
                cmd = self.commands.recv(), if self.inflight.len() < max_inflight => {
                    let Some(cmd) = cmd else { return LinkError::Stopped };
                    self.command(cmd, &mut out);
                    // Take what else is waiting, for one write.
                    while self.inflight.len() < max_inflight {
                        match self.commands.try_recv() {
                            Ok(cmd) => self.command(cmd, &mut out),
                            Err(_) => break,
                        }
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > keep_alive * 3 / 2 {
                        return LinkError::KeepAlive;
                    }
                    edgeplane_codec::encode(&Packet::PingReq, V, &mut out);
                }
            }
        }
    }

    fn command(&mut self, cmd: Command, out: &mut BytesMut) {
        match cmd {
            Command::Publish(publish, done) => {
                let mut publish = *publish;
                if publish.qos == QoS::AtMostOnce {
                    publish.packet_id = 0;
                    edgeplane_codec::encode(&Packet::Publish(publish), V, out);
                    let _ = done.send(());
                    return;
                }
                let packet_id = self.packet_id();
                publish.packet_id = packet_id;
                edgeplane_codec::encode(&Packet::Publish(publish.clone()), V, out);
                self.inflight.push_back(Inflight {
                    packet_id,
                    publish,
                    done,
                });
            }
            Command::Ack(ack) if ack.connection == self.connection => {
                let packet = match ack.qos {
                    QoS::AtLeastOnce => {
                        Packet::PubAck(Ack::new(ack.packet_id, ReasonCode::SUCCESS))
                    }
                    QoS::ExactlyOnce => {
                        Packet::PubRec(Ack::new(ack.packet_id, ReasonCode::SUCCESS))
                    }
                    QoS::AtMostOnce => return,
                };
                edgeplane_codec::encode(&packet, V, out);
            }
            // For an earlier connection: the remote session sends the message again.
            Command::Ack(_) => {}
        }
    }

    async fn incoming(&mut self, p: Packet) -> Result<(), LinkError> {
        match p {
            Packet::PubAck(a) | Packet::PubComp(a) => {
                if let Some(i) = self
                    .inflight
                    .iter()
                    .position(|f| f.packet_id == a.packet_id)
                {
                    if a.reason.is_error() {
                        tracing::warn!(host = %self.settings.host, reason = %a.reason, "remote broker refused a dataflow message; it is dropped");
                    }
                    if let Some(f) = self.inflight.remove(i) {
                        let _ = f.done.send(());
                    }
                }
            }
            Packet::Publish(publish) => {
                let ack = DeliveryAck {
                    connection: self.connection,
                    packet_id: publish.packet_id,
                    qos: publish.qos,
                };
                if let Some(tx) = &self.deliveries {
                    if tx.send(Delivery { publish, ack }).await.is_err() {
                        return Err(LinkError::Stopped);
                    }
                }
            }
            // We publish at QoS 0 or 1 only, so no PUBREC comes; a PUBREL completes a QoS 2
            // delivery whose PUBREC went out with its ack.
            Packet::PubRel(a) => {
                let mut out = BytesMut::new();
                edgeplane_codec::encode(
                    &Packet::PubComp(Ack::new(a.packet_id, ReasonCode::SUCCESS)),
                    V,
                    &mut out,
                );
                self.pending_writes.extend_from_slice(&out);
            }
            Packet::PingResp | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PubRec(_) => {}
            Packet::Disconnect(d) => {
                let why = d
                    .properties
                    .reason_string
                    .map(|s| format!(": {s}"))
                    .unwrap_or_else(|| format!(" (reason {})", d.reason));
                return Err(LinkError::Closed(why));
            }
            other => {
                return Err(LinkError::Closed(format!(
                    " after sending an unexpected {}",
                    other.name()
                )))
            }
        }
        Ok(())
    }

    fn packet_id(&mut self) -> u16 {
        loop {
            let id = self.next_packet_id;
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.inflight.iter().any(|f| f.packet_id == id) {
                return id;
            }
        }
    }
}

async fn subscribe(
    stream: &mut Pin<Box<dyn Stream>>,
    rbuf: &mut BytesMut,
    filters: &[(String, QoS)],
) -> Result<Vec<Packet>, LinkError> {
    let packet = Subscribe {
        packet_id: 1,
        filters: filters
            .iter()
            .map(|(f, q)| (f.clone(), SubOptions::new(*q)))
            .collect(),
        properties: Properties::default(),
    };
    write(stream, &Packet::Subscribe(packet)).await?;
    let mut early = Vec::new();
    loop {
        match read(stream, rbuf).await? {
            Packet::SubAck(ack) => {
                for ((filter, _), reason) in filters.iter().zip(&ack.reasons) {
                    if reason.is_error() {
                        return Err(LinkError::Subscribe(filter.clone(), *reason));
                    }
                }
                return Ok(early);
            }
            other => early.push(other),
        }
    }
}

async fn write(stream: &mut Pin<Box<dyn Stream>>, p: &Packet) -> Result<(), LinkError> {
    let mut out = BytesMut::new();
    edgeplane_codec::encode(p, V, &mut out);
    stream.write_all(&out).await?;
    Ok(())
}

async fn read(stream: &mut Pin<Box<dyn Stream>>, rbuf: &mut BytesMut) -> Result<Packet, LinkError> {
    loop {
        if let Some(p) = edgeplane_codec::decode(rbuf, V, MAX_PACKET)? {
            return Ok(p);
        }
        if stream.read_buf(rbuf).await? == 0 {
            return Err(LinkError::Closed(String::new()));
        }
    }
}
