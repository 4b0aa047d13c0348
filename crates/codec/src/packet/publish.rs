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

/// Which acknowledgement [`crate::encode_ack`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    PubAck,
    PubRec,
    PubRel,
    PubComp,
}

impl AckType {
    /// The fixed header's first byte (PUBREL has the reserved flags 0b0010, §3.6.1).
    pub(crate) fn header(self) -> u8 {
        match self {
            AckType::PubAck => 0x40,
            AckType::PubRec => 0x50,
            AckType::PubRel => 0x62,
            AckType::PubComp => 0x70,
        }
    }
}

/// A PUBLISH encoded from borrowed parts, for a broker writing one shared message to many
/// subscribers without copying its topic, properties or payload per delivery. The message's
/// forwarded `properties` go out as they are except Message Expiry Interval, Subscription
/// Identifiers and Topic Alias, which are the delivery's own (the fields below); whatever
/// `properties` holds for those three is ignored.
#[derive(Debug, Clone, Copy)]
pub struct PublishView<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty when `topic_alias` stands for a topic the client already knows (MQTT 5).
    pub topic: &'a str,
    /// 0 for QoS 0.
    pub packet_id: u16,
    pub properties: &'a Properties,
    pub message_expiry_interval: Option<u32>,
    pub subscription_identifiers: &'a [u32],
    pub topic_alias: Option<u16>,
    pub payload: &'a [u8],
}

impl PublishView<'_> {
    fn properties_content_len(&self) -> usize {
        self.properties.forwarded_content_len()
            + self.message_expiry_interval.map_or(0, |_| 5)
            + self
                .subscription_identifiers
                .iter()
                .map(|&i| 1 + crate::primitives::varint_len(i.min(crate::VARINT_MAX) as usize))
                .sum::<usize>()
            + self.topic_alias.map_or(0, |_| 3)
    }

    pub(crate) fn flags(&self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> usize {
        let mut n = 2 + self.topic.len() + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            n += 2;
        }
        if v == ProtocolVersion::V5 {
            let c = self.properties_content_len();
            n += crate::primitives::varint_len(c) + c;
        }
        n
    }

    pub(crate) fn encode_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        put_string(out, self.topic);
        if self.qos != QoS::AtMostOnce {
            out.put_u16(self.packet_id);
        }
        if v == ProtocolVersion::V5 {
            crate::primitives::put_varint(out, self.properties_content_len());
            if let Some(e) = self.message_expiry_interval {
                out.put_u8(0x02);
                out.put_u32(e);
            }
            for &id in self.subscription_identifiers {
                out.put_u8(0x0B);
                crate::primitives::put_varint(out, id.min(crate::VARINT_MAX) as usize);
            }
            if let Some(a) = self.topic_alias {
                out.put_u8(0x23);
                out.put_u16(a);
            }
            self.properties.encode_content(out, true);
        }
        out.put_slice(self.payload);
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
