//! PUBLISH (§3.3) and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4–§3.7).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::primitives::{put_string, Reader};
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::{ProtocolVersion, QoS};

/// An application message in flight between client and broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in MQTT 5 when a Topic Alias stands for it.
    pub topic: String,
    /// 0 for QoS 0.
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP; the packet type is the [`crate::Packet`] variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: u16,
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Ack {
    pub fn new(packet_id: u16, reason: ReasonCode) -> Self {
        Self {
            packet_id,
            reason,
            properties: Properties::default(),
        }
    }
}

pub(crate) fn decode_publish(
    r: &mut Reader,
    flags: u8,
    v: ProtocolVersion,
) -> Result<Publish, ProtocolError> {
    let dup = flags & 0x08 != 0;
    let qos = QoS::try_from((flags >> 1) & 0x03).map_err(|_| ProtocolError::InvalidQos)?;
    let retain = flags & 0x01 != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(ProtocolError::DupOnQos0);
    }
    let topic = r.string("topic name")?;
    if topic.contains(['+', '#']) {
        return Err(ProtocolError::WildcardInTopicName);
    }
    let packet_id = if qos == QoS::AtMostOnce {
        0
    } else {
        match r.u16("packet identifier")? {
            0 => return Err(ProtocolError::ZeroPacketId),
            id => id,
        }
    };
    let properties = match v {
        ProtocolVersion::V5 => Properties::decode(r, Context::Publish)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(ProtocolError::EmptyTopic);
    }
    let payload = r.rest();
    Ok(Publish {
        dup,
        qos,
        retain,
        topic,
        packet_id,
        properties,
        payload,
    })
}

pub(crate) fn publish_flags(p: &Publish) -> u8 {
    (u8::from(p.dup) << 3) | ((p.qos as u8) << 1) | u8::from(p.retain)
}

pub(crate) fn publish_body_len(p: &Publish, v: ProtocolVersion) -> usize {
    let mut n = 2 + p.topic.len() + p.payload.len();
    if p.qos != QoS::AtMostOnce {
        n += 2;
    }
    if v == ProtocolVersion::V5 {
        n += p.properties.encoded_len();
    }
    n
}

pub(crate) fn encode_publish(p: &Publish, v: ProtocolVersion, out: &mut BytesMut) {
    put_string(out, &p.topic);
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    if v == ProtocolVersion::V5 {
        p.properties.encode(out);
    }
    out.put_slice(&p.payload);
}

const PUBACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const PUBREL_CODES: &[u8] = &[0x00, 0x92];

/// `kind` is "PUBACK", "PUBREC", "PUBREL" or "PUBCOMP".
pub(crate) fn decode_ack(
    r: &mut Reader,
    kind: &'static str,
    v: ProtocolVersion,
) -> Result<Ack, ProtocolError> {
    let packet_id = r.u16("packet identifier")?;
    if packet_id == 0 {
        return Err(ProtocolError::ZeroPacketId);
    }
    let mut ack = Ack::new(packet_id, ReasonCode::SUCCESS);
    if v == ProtocolVersion::V5 && !r.is_empty() {
        let code = r.u8("reason code")?;
        let valid = if matches!(kind, "PUBACK" | "PUBREC") {
            PUBACK_CODES
        } else {
            PUBREL_CODES
        };
        if !valid.contains(&code) {
            return Err(ProtocolError::InvalidReasonCode(code, kind));
        }
        ack.reason = ReasonCode(code);
        if !r.is_empty() {
            ack.properties = Properties::decode(r, Context::Ack)?;
        }
    }
    r.finish(kind)?;
    Ok(ack)
}

pub(crate) fn ack_body_len(a: &Ack, v: ProtocolVersion) -> usize {
    match v {
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 if a.properties.is_empty() && a.reason == ReasonCode::SUCCESS => 2,
        ProtocolVersion::V5 if a.properties.is_empty() => 3,
        ProtocolVersion::V5 => 3 + a.properties.encoded_len(),
    }
}

pub(crate) fn encode_ack(a: &Ack, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(a.packet_id);
    let len = ack_body_len(a, v);
    if len > 2 {
        out.put_u8(a.reason.0);
    }
    if len > 3 {
        a.properties.encode(out);
    }
}
