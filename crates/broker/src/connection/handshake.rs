//! The CONNECT exchange (§3.1, §3.2): read the first packet within the connect deadline,
//! validate it, negotiate limits (keep alive, session expiry, receive maximum, packet size,
//! topic aliases), and attach the session in its partition, which sends CONNACK.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::BytesMut;
use edgeplane_codec::{
    ConnAck, Connect, Packet, Properties, ProtocolError, ProtocolVersion, Publish,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::Context;
use crate::auth::{code, ClientCerts, Credentials, ListenerAuth, Principal, Verdict};
use crate::router::mailbox::MailboxTx;
use crate::router::{ClientDetails, Cmd, ConnectRequest, Outgoing, WillMsg};
use crate::stats::{ConnectOutcomes, Refusal};

/// What the rest of the connection needs after a successful CONNECT.
pub struct Negotiated {
    pub version: ProtocolVersion,
    pub client_id: Arc<str>,
    pub session_expiry: u32,
    pub client_max_packet: usize,
    pub client_alias_max: u16,
    pub incoming_qos2: Vec<u16>,
    /// The store keeps the session.
    pub persist: bool,
    pub principal: Principal,
    /// The MQTT 5 Authentication Method of CONNECT, which AUTH must repeat.
    pub auth_method: Option<String>,
    /// When the credentials expire (the connection is closed then unless renewed).
    pub expiry: Option<SystemTime>,
}

/// The connection is refused (answered already where the specification asks): close it.
pub struct Refused;

impl From<std::io::Error> for Refused {
    fn from(_: std::io::Error) -> Self {
        Refused
    }
}

/// Read CONNECT from `stream` (bytes beyond it stay in `rbuf`).
pub async fn read_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    ctx: &Context,
) -> Result<Box<Connect>, Refused> {
    let max = ctx.settings.clients.max_packet_size as usize;
    let read = async {
        loop {
            // Read before decoding, which consumes a whole packet even when it then fails.
            let level = peek_level(rbuf);
            match edgeplane_codec::decode(rbuf, ProtocolVersion::V5, max) {
                Ok(Some(Packet::Connect(c))) => return Ok(c),
                // The first packet must be CONNECT [MQTT-3.1.0-1].
                Ok(Some(_)) => return Err(Refused),
                Ok(None) => {}
                Err(e) => return Err(refuse_malformed(stream, level, e).await),
            }
            if stream.read_buf(rbuf).await? == 0 {
                return Err(Refused);
            }
        }
    };
    match tokio::time::timeout(ctx.settings.connect_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(Refused),
    }
}

/// Answer a CONNECT that failed to decode: MQTT 3.1.1 gets return code 0x01 for an unknown
/// protocol level [MQTT-3.1.2-2]; an MQTT 5 CONNECT gets the violation's reason code.
async fn refuse_malformed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    level: Option<u8>,
    e: ProtocolError,
) -> Refused {
    tracing::debug!(error = %e, "refusing CONNECT");
    let (version, code) = match (e.connect_return_code(), level) {
        (Some(rc), level) if level != Some(5) => (ProtocolVersion::V311, rc),
        (_, Some(5)) => (ProtocolVersion::V5, e.reason_code().0),
        _ => return Refused,
    };
    let ack = ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    };
    let mut out = BytesMut::new();
    edgeplane_codec::encode(&Packet::ConnAck(ack), version, &mut out);
    let _ = stream.write_all(&out).await;
    Refused
}

/// The protocol level byte of a CONNECT at the front of the buffer, if it can be read.
fn peek_level(buf: &[u8]) -> Option<u8> {
    if buf.first()? >> 4 != 1 {
        return None;
    }
    let (_, n) = edgeplane_codec::decode_varint(buf.get(1..)?).ok()??;
    let start = 1 + n;
    let name_len = u16::from_be_bytes([*buf.get(start)?, *buf.get(start + 1)?]) as usize;
    buf.get(start + 2 + name_len).copied()
}

/// The connection's side of the attachment: its id, the channel the partition writes to,
/// and what authentication needs to know about the transport.
pub struct Attachment<'a> {
    pub conn_id: u64,
    pub tx: MailboxTx<Outgoing>,
    pub auth: &'a Arc<ListenerAuth>,
    pub certs: Option<ClientCerts>,
    /// The listener's name and the client's address, for the connected-clients snapshot.
    pub listener: Arc<str>,
    pub peer: std::net::SocketAddr,
}

/// Validate CONNECT, attach the session, and return the negotiated parameters; traced as the
/// `mqtt.connect` span inside the connection's, which learns the client's id and version
/// (and joins the trace of a `traceparent` user property).
pub async fn attach<S: AsyncWrite + Unpin>(
    stream: &mut S,
    connect: Box<Connect>,
    ctx: &Context,
    a: Attachment<'_>,
) -> Result<Negotiated, Refused> {
    use tracing::Instrument as _;
    let connection = tracing::Span::current();
    connection.record("mqtt.protocol_version", version_name(connect.protocol));
    if !connect.client_id.is_empty() {
        connection.record("mqtt.client_id", connect.client_id.as_str());
    }
    if let Some((_, parent)) =
        (connect.properties.user_properties.iter()).find(|(k, _)| k == "traceparent")
    {
        connection.record("traceparent", parent.as_str());
    }
    let span = tracing::debug_span!(
        "mqtt.connect",
        mqtt.clean_start = connect.clean_start,
        mqtt.connack.code = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    let attached = attach_session(stream, connect, ctx, a)
        .instrument(span.clone())
        .await;
    match &attached {
        Ok(n) => {
            connection.record("mqtt.client_id", &*n.client_id);
            connection.record("mqtt.connack.code", 0);
            span.record("mqtt.connack.code", 0);
        }
        Err(Refused) => {
            connection.record("error", "connection refused at CONNECT");
            span.record("error", "refused");
        }
    }
    attached
}

fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V5 => "5",
        ProtocolVersion::V311 => "3.1.1",
    }
}

async fn attach_session<S: AsyncWrite + Unpin>(
    stream: &mut S,
    connect: Box<Connect>,
    ctx: &Context,
    a: Attachment<'_>,
) -> Result<Negotiated, Refused> {
    let Attachment {
        conn_id,
        tx,
        auth,
        certs,
        listener,
        peer,
    } = a;
    let c = *connect;
    let v5 = c.protocol == ProtocolVersion::V5;
    let limits = &ctx.settings.clients;
    let mut props = Properties::default();

    if let (Some(method), None) = (&c.properties.authentication_method, &auth.authentication) {
        // No enhanced authentication method is configured: refuse and close [MQTT-4.12.0-1].
        ctx.stats.connects.authn_failures.add(c.protocol);
        if let Some(more) = ctx.stats.why(Refusal::Authentication) {
            tracing::info!(cause = Refusal::Authentication.as_str(), client_id = %c.client_id, %method, code = "0x8C", more_since_last_line = more, "connection refused: this listener has no enhanced authentication method");
        }
        let ack = ConnAck {
            session_present: false,
            code: code::BAD_AUTHENTICATION_METHOD,
            properties: Properties::default(),
        };
        write_packet(stream, Packet::ConnAck(ack), c.protocol).await?;
        return Err(Refused);
    }

    let client_id: Arc<str> = if c.client_id.is_empty() {
        if !v5 && !c.clean_start {
            // A zero-byte client id needs Clean Session in 3.1.1 [MQTT-3.1.3-8].
            let ack = ConnAck {
                session_present: false,
                code: 0x02,
                properties: Properties::default(),
            };
            write_packet(stream, Packet::ConnAck(ack), c.protocol).await?;
            return Err(Refused);
        }
        let id = format!("edgeplane-{:016x}", rand_id(conn_id));
        if v5 {
            props.assigned_client_identifier = Some(id.clone());
        }
        id.into()
    } else {
        c.client_id.as_str().into()
    };

    let outcomes = &ctx.stats.connects;
    let authn = tracing::debug_span!(
        "mqtt.authenticate",
        mqtt.username = c.username.as_deref(),
        mqtt.authentication.method = c.properties.authentication_method.as_deref(),
        error = tracing::field::Empty,
    );
    let verdict = tracing::Instrument::instrument(
        authenticate(&c, &client_id, auth, certs, outcomes),
        authn.clone(),
    )
    .await;
    if let Err((_, cause)) = &verdict {
        authn.record("error", cause.as_str());
    }
    drop(authn);
    let (principal, expiry) = match verdict {
        Ok(p) => p,
        Err((code, cause)) => {
            let code = if v5 { code } else { v311_return_code(code) };
            if let Some(more) = ctx.stats.why(cause) {
                let why = match cause {
                    Refusal::Authentication => "credentials not accepted",
                    _ => "not authorized to connect (or to publish its will)",
                };
                tracing::info!(cause = cause.as_str(), %client_id, code = format!("0x{code:02X}"), more_since_last_line = more, "connection refused: {why}");
            }
            let ack = ConnAck {
                session_present: false,
                code,
                properties: Properties::default(),
            };
            write_packet(stream, Packet::ConnAck(ack), c.protocol).await?;
            return Err(Refused);
        }
    };

    // The cap is applied only where Server Keep Alive tells the client (MQTT 5): a 3.1.1
    // client cannot learn it and would be cut off while pinging at its own, valid pace.
    let keep_alive = match limits.max_keep_alive_secs {
        Some(max) if v5 && (c.keep_alive == 0 || c.keep_alive > max) => {
            props.server_keep_alive = Some(max);
            max
        }
        _ => c.keep_alive,
    };

    let requested_expiry = if v5 {
        c.properties.session_expiry_interval.unwrap_or(0)
    } else if c.clean_start {
        0
    } else {
        u32::MAX
    };
    let session_expiry = requested_expiry.min(limits.max_session_expiry_secs);
    if v5 && session_expiry != requested_expiry {
        props.session_expiry_interval = Some(session_expiry);
    }
    if v5 {
        if ctx.settings.receive_maximum != u16::MAX {
            props.receive_maximum = Some(ctx.settings.receive_maximum);
        }
        props.maximum_packet_size = Some(limits.max_packet_size);
        if ctx.settings.topic_alias_maximum > 0 {
            props.topic_alias_maximum = Some(ctx.settings.topic_alias_maximum);
        }
    }

    if let Some(method) = &c.properties.authentication_method {
        // Enhanced authentication succeeded: CONNACK names its method [§3.2.2.3.17].
        props.authentication_method = Some(method.clone());
    }

    let will = c.will.map(|w| {
        let mut properties = w.properties;
        let delay = properties.will_delay_interval.take().unwrap_or(0);
        let publish = Publish {
            dup: false,
            qos: w.qos,
            retain: w.retain,
            topic: w.topic,
            packet_id: 0,
            properties,
            payload: w.payload,
        };
        let publisher = auth.will_publisher(&principal, &publish.topic);
        WillMsg {
            publish,
            delay,
            publisher,
        }
    });

    let window = c
        .properties
        .receive_maximum
        .unwrap_or(u16::MAX)
        .min(limits.max_receive_maximum);
    let (reply_tx, reply_rx) = oneshot::channel();
    let request = ConnectRequest {
        client_id: Arc::clone(&client_id),
        internal: false,
        conn_id,
        version: c.protocol,
        clean_start: c.clean_start,
        session_expiry,
        will,
        opted_in: ctx
            .router
            .store
            .as_ref()
            .is_some_and(|st| st.policy.opted_in(&c.properties)),
        window,
        // 1.5 times the keep alive, which the partition enforces [MQTT-3.1.2-22].
        keep_alive_ms: std::num::NonZeroU32::new(u32::from(keep_alive) * 1500),
        tx,
        details: Some(Arc::new(ClientDetails {
            username: principal.username.as_deref().map(Box::from),
            listener: Arc::clone(&listener),
            remote: peer,
            connected_at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })),
        connack: ConnAck {
            session_present: false,
            code: 0,
            properties: props,
        },
        reply: reply_tx,
    };
    let partition = ctx.router.partition_of(&client_id);
    if !ctx
        .router
        .send(partition, Cmd::Connect(Box::new(request)))
        .await
    {
        return Err(Refused);
    }
    let reply = reply_rx.await.map_err(|_| Refused)?;
    let category = c
        .properties
        .user_properties
        .iter()
        .find(|(k, _)| k == crate::stats::CATEGORY_PROPERTY)
        .map(|(_, v)| v.as_str());
    outcomes.accepted_in(c.protocol, category);
    ctx.stats.listeners.of(&listener).accepted.add(c.protocol);
    Ok(Negotiated {
        version: c.protocol,
        client_id,
        session_expiry,
        client_max_packet: c
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize),
        client_alias_max: c.properties.topic_alias_maximum.unwrap_or(0),
        incoming_qos2: reply.incoming_qos2,
        persist: reply.persist,
        principal,
        auth_method: c.properties.authentication_method,
        expiry,
    })
}

/// Authenticate (methods in order) and authorize Connect: the principal and when its
/// credentials expire. `Err` is the CONNACK reason code and the cause, for the log.
async fn authenticate(
    c: &Connect,
    client_id: &Arc<str>,
    auth: &ListenerAuth,
    certs: Option<ClientCerts>,
    outcomes: &ConnectOutcomes,
) -> Result<(Principal, Option<SystemTime>), (u8, Refusal)> {
    let mut principal = Principal {
        client_id: Arc::clone(client_id),
        username: c.username.as_deref().map(Box::from),
        attributes: Default::default(),
    };
    let mut expiry = None;
    if let Some(authn) = &auth.authentication {
        let creds = Credentials {
            username: c.username.clone(),
            password: c.password.clone(),
            certs,
            method: c.properties.authentication_method.clone(),
            data: c.properties.authentication_data.clone(),
        };
        match authn.authenticate(creds).await {
            Verdict::Allowed(grant) => {
                if grant.expiry.is_some_and(|t| t <= SystemTime::now()) {
                    // Credentials that have already expired let nobody in.
                    outcomes.authn_failures.add(c.protocol);
                    return Err((code::NOT_AUTHORIZED, Refusal::Authentication));
                }
                outcomes.authn_successes.add(c.protocol);
                principal.username = grant.username.map(String::into_boxed_str);
                principal.attributes = grant.attributes;
                expiry = grant.expiry;
            }
            Verdict::Refused(code) => {
                outcomes.authn_failures.add(c.protocol);
                return Err((code, Refusal::Authentication));
            }
        }
    }
    if c.will
        .as_ref()
        .is_some_and(|w| !auth.allows_will(&principal, &w.topic))
    {
        outcomes.authz_denied.add(c.protocol);
        return Err((code::NOT_AUTHORIZED, Refusal::ConnectDenied));
    }
    if let Some(authz) = auth.authorization() {
        if !authz.allows_connect(&principal) {
            outcomes.authz_denied.add(c.protocol);
            return Err((code::NOT_AUTHORIZED, Refusal::ConnectDenied));
        }
        outcomes.authz_allowed.add(c.protocol);
    }
    Ok((principal, expiry))
}

/// The MQTT 3.1.1 CONNACK return code for an MQTT 5 refusal reason (§3.2.2.3).
fn v311_return_code(reason: u8) -> u8 {
    match reason {
        0x84 => 0x01,
        0x85 => 0x02,
        0x88 | 0x89 => 0x03,
        0x86 => 0x04,
        _ => 0x05,
    }
}

async fn write_packet<S: AsyncWrite + Unpin>(
    s: &mut S,
    p: Packet,
    v: ProtocolVersion,
) -> std::io::Result<()> {
    if let Packet::ConnAck(ack) = &p {
        // A refusal: its code goes into the `mqtt.connect` span.
        tracing::Span::current().record("mqtt.connack.code", ack.code);
    }
    let mut out = BytesMut::new();
    edgeplane_codec::encode(&p, v, &mut out);
    s.write_all(&out).await
}

/// A client id suffix unique per process run: connection counter mixed with the clock.
fn rand_id(conn_id: u64) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = t ^ conn_id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^ (x >> 33)
}
