//! Pure MQTT 3.1.1 and 5.0 encoder/decoder: bytes in, packets out, and back. No I/O.
//!
//! [`decode`] cuts one packet from the front of a stream buffer, checks the fixed header
//! (reserved flags, remaining length, maximum packet size) and hands the body to the packet's
//! own decoder; every violation is a [`ProtocolError`] that names the normative statement and
//! maps to the reason code the broker sends. [`encode`] writes a packet for one protocol
//! version: MQTT 3.1.1 output drops MQTT 5-only fields (properties, most reason codes).
//!
//! Both versions share one packet model; the version decides what goes on the wire. That
//! keeps the broker's session layer version-neutral without a translation layer.

mod error;
mod packet;
mod primitives;
mod properties;
mod reason;
pub mod topic;

use bytes::{Buf, BufMut, BytesMut};

pub use error::{Class, DecodeError, ProtocolError};
pub use packet::connect::{ConnAck, Connect, Will};
pub use packet::control::{Auth, Disconnect};
pub use packet::publish::{Ack, AckType, Publish, PublishView};
pub use packet::subscribe::{SubAck, SubOptions, Subscribe, UnsubAck, Unsubscribe};
pub use primitives::{decode_varint, VARINT_MAX};
pub use properties::{Context, Properties};
pub use reason::ReasonCode;

use packet::{connect, control, publish, subscribe};
use primitives::{put_varint, varint_len, Reader};

/// The protocol level a connection negotiated in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl TryFrom<u8> for QoS {
    type Error = u8;
    fn try_from(v: u8) -> Result<Self, u8> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            other => Err(other),
        }
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The packet's name as the specification writes it.
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }
}

/// Cut one packet from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed).
/// A packet larger than `max_packet_size` (fixed header included) is refused as soon as its
/// remaining length is known, before its body arrives. The CONNECT packet carries its own
/// protocol level; for every other packet `version` is the connection's.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, ProtocolError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((remaining, len_bytes)) = decode_varint(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining as usize;
    if total > max_packet_size {
        return Err(ProtocolError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        buf.reserve(total - buf.len());
        return Ok(None);
    }
    let header = buf[0];
    let mut frame = buf.split_to(total);
    frame.advance(1 + len_bytes);
    let mut r = Reader::new(frame.freeze());
    decode_body(header, &mut r, version).map(Some)
}

fn fixed_flags(header: u8, expected: u8, name: &'static str) -> Result<(), ProtocolError> {
    if header & 0x0F != expected {
        return Err(ProtocolError::ReservedFlags(name));
    }
    Ok(())
}

fn decode_body(header: u8, r: &mut Reader, v: ProtocolVersion) -> Result<Packet, ProtocolError> {
    let flags = header & 0x0F;
    let packet = match header >> 4 {
        0 => return Err(ProtocolError::ReservedPacketType),
        1 => {
            fixed_flags(header, 0, "CONNECT")?;
            Packet::Connect(Box::new(connect::decode_connect(r)?))
        }
        2 => {
            fixed_flags(header, 0, "CONNACK")?;
            Packet::ConnAck(connect::decode_connack(r, v)?)
        }
        3 => Packet::Publish(publish::decode_publish(r, flags, v)?),
        4 => {
            fixed_flags(header, 0, "PUBACK")?;
            Packet::PubAck(publish::decode_ack(r, "PUBACK", v)?)
        }
        5 => {
            fixed_flags(header, 0, "PUBREC")?;
            Packet::PubRec(publish::decode_ack(r, "PUBREC", v)?)
        }
        6 => {
            fixed_flags(header, 2, "PUBREL")?;
            Packet::PubRel(publish::decode_ack(r, "PUBREL", v)?)
        }
        7 => {
            fixed_flags(header, 0, "PUBCOMP")?;
            Packet::PubComp(publish::decode_ack(r, "PUBCOMP", v)?)
        }
        8 => {
            fixed_flags(header, 2, "SUBSCRIBE")?;
            Packet::Subscribe(subscribe::decode_subscribe(r, v)?)
        }
        9 => {
            fixed_flags(header, 0, "SUBACK")?;
            Packet::SubAck(subscribe::decode_suback(r, v)?)
        }
        10 => {
            fixed_flags(header, 2, "UNSUBSCRIBE")?;
            Packet::Unsubscribe(subscribe::decode_unsubscribe(r, v)?)
        }
        11 => {
            fixed_flags(header, 0, "UNSUBACK")?;
            Packet::UnsubAck(subscribe::decode_unsuback(r, v)?)
        }
        12 => {
            fixed_flags(header, 0, "PINGREQ")?;
            r.finish("PINGREQ")?;
            Packet::PingReq
        }
        13 => {
            fixed_flags(header, 0, "PINGRESP")?;
            r.finish("PINGRESP")?;
            Packet::PingResp
        }
        14 => {
            fixed_flags(header, 0, "DISCONNECT")?;
            Packet::Disconnect(control::decode_disconnect(r, v)?)
        }
        _ => {
            if v == ProtocolVersion::V311 {
                return Err(ProtocolError::AuthInV311);
            }
            fixed_flags(header, 0, "AUTH")?;
            Packet::Auth(control::decode_auth(r)?)
        }
    };
    Ok(packet)
}

/// (first header byte, body length) of a packet as it would be encoded.
fn header_and_body_len(p: &Packet, v: ProtocolVersion) -> (u8, usize) {
    match p {
        Packet::Connect(c) => (0x10, connect::connect_body_len(c)),
        Packet::ConnAck(c) => (0x20, connect::connack_body_len(c, v)),
        Packet::Publish(p) => (
            0x30 | publish::publish_flags(p),
            publish::publish_body_len(p, v),
        ),
        Packet::PubAck(a) => (0x40, publish::ack_body_len(a, v)),
        Packet::PubRec(a) => (0x50, publish::ack_body_len(a, v)),
        Packet::PubRel(a) => (0x62, publish::ack_body_len(a, v)),
        Packet::PubComp(a) => (0x70, publish::ack_body_len(a, v)),
        Packet::Subscribe(s) => (0x82, subscribe::subscribe_body_len(s, v)),
        Packet::SubAck(s) => (0x90, subscribe::suback_body_len(s, v)),
        Packet::Unsubscribe(u) => (0xA2, subscribe::unsubscribe_body_len(u, v)),
        Packet::UnsubAck(u) => (0xB0, subscribe::unsuback_body_len(u, v)),
        Packet::PingReq => (0xC0, 0),
        Packet::PingResp => (0xD0, 0),
        Packet::Disconnect(d) => (0xE0, control::reason_props_len(d.reason, &d.properties, v)),
        Packet::Auth(a) => (0xF0, control::reason_props_len(a.reason, &a.properties, v)),
    }
}

/// Size in bytes of the packet as [`encode`] would write it, fixed header included.
pub fn encoded_len(p: &Packet, v: ProtocolVersion) -> usize {
    let (_, body) = header_and_body_len(p, v);
    1 + varint_len(body) + body
}

/// Size of a PUBLISH as it would be encoded, without building a [`Packet`].
pub fn publish_len(p: &Publish, v: ProtocolVersion) -> usize {
    let body = publish::publish_body_len(p, v);
    1 + varint_len(body) + body
}

/// Size of a PUBLISH built from borrowed parts, fixed header included.
pub fn publish_view_len(p: &PublishView, v: ProtocolVersion) -> usize {
    let body = p.body_len(v);
    1 + varint_len(body) + body
}

/// Append a PUBLISH built from borrowed parts, encoded for protocol version `v`, to `out`:
/// the same bytes as [`encode`] of the equivalent [`Publish`] (property order aside).
pub fn encode_publish_view(p: &PublishView, v: ProtocolVersion, out: &mut BytesMut) {
    let body = p.body_len(v);
    out.reserve(1 + varint_len(body) + body);
    out.put_u8(0x30 | p.flags());
    put_varint(out, body);
    p.encode_body(v, out);
}

/// Append a PUBACK, PUBREC, PUBREL or PUBCOMP without properties: the same bytes as
/// [`encode`] of the equivalent [`Ack`], without building a [`Packet`] (an acknowledgement
/// per QoS 1/2 message is on the broker's hot path).
pub fn encode_ack(
    kind: AckType,
    packet_id: u16,
    reason: ReasonCode,
    v: ProtocolVersion,
    out: &mut BytesMut,
) {
    // MQTT 5 leaves the reason out when it is Success and there are no properties
    // (§3.4.2.1); MQTT 3.1.1 has none.
    let with_reason = v == ProtocolVersion::V5 && reason != ReasonCode::SUCCESS;
    out.reserve(5);
    out.put_u8(kind.header());
    out.put_u8(if with_reason { 3 } else { 2 });
    out.put_u16(packet_id);
    if with_reason {
        out.put_u8(reason.0);
    }
}

/// Append the packet, encoded for protocol version `v`, to `out`.
pub fn encode(p: &Packet, v: ProtocolVersion, out: &mut BytesMut) {
    let (header, body) = header_and_body_len(p, v);
    out.reserve(1 + varint_len(body) + body);
    out.put_u8(header);
    put_varint(out, body);
    match p {
        Packet::Connect(c) => connect::encode_connect(c, out),
        Packet::ConnAck(c) => connect::encode_connack(c, v, out),
        Packet::Publish(p) => publish::encode_publish(p, v, out),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            publish::encode_ack(a, v, out)
        }
        Packet::Subscribe(s) => subscribe::encode_subscribe(s, v, out),
        Packet::SubAck(s) => subscribe::encode_suback(s, v, out),
        Packet::Unsubscribe(u) => subscribe::encode_unsubscribe(u, v, out),
        Packet::UnsubAck(u) => subscribe::encode_unsuback(u, v, out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => control::encode_reason_props(d.reason, &d.properties, v, out),
        Packet::Auth(a) => control::encode_reason_props(a.reason, &a.properties, v, out),
    }
}
