//! SUBSCRIBE (§3.8), SUBACK (§3.9), UNSUBSCRIBE (§3.10) and UNSUBACK (§3.11).

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;
use crate::primitives::{put_string, Reader};
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::{ProtocolVersion, QoS};

/// Subscription options (§3.8.3.1). MQTT 3.1.1 carries only the QoS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained at subscribe; 1: only if the subscription is new; 2: never.
    pub retain_handling: u8,
}

impl SubOptions {
    pub fn new(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<(String, SubOptions)>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    /// MQTT 5 reason codes; in MQTT 3.1.1 any failure is sent as 0x80.
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<String>,
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    /// MQTT 5 only; MQTT 3.1.1 UNSUBACK has no payload.
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

fn packet_id(r: &mut Reader) -> Result<u16, ProtocolError> {
    match r.u16("packet identifier")? {
        0 => Err(ProtocolError::ZeroPacketId),
        id => Ok(id),
    }
}

/// Topic filters are decoded as strings; their syntax is checked by the broker per filter so
/// that one bad filter gets its own SUBACK reason code instead of failing the packet.
pub(crate) fn decode_subscribe(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Subscribe, ProtocolError> {
    let packet_id = packet_id(r)?;
    let properties = match v {
        ProtocolVersion::V5 => Properties::decode(r, Context::Subscribe)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string("topic filter")?;
        let opts = r.u8("subscription options")?;
        let reserved = match v {
            ProtocolVersion::V5 => 0xC0,
            ProtocolVersion::V311 => 0xFC,
        };
        if opts & reserved != 0 {
            return Err(ProtocolError::SubscriptionOptionsReserved);
        }
        let qos = QoS::try_from(opts & 0x03).map_err(|_| ProtocolError::InvalidSubscriptionQos)?;
        let retain_handling = (opts >> 4) & 0x03;
        if retain_handling == 3 {
            return Err(ProtocolError::InvalidRetainHandling);
        }
        let no_local = opts & 0x04 != 0;
        // A whole-packet Protocol Error, unlike a bad filter, so it is caught here.
        if no_local && filter.starts_with("$share/") {
            return Err(ProtocolError::NoLocalOnSharedSubscription);
        }
        filters.push((
            filter,
            SubOptions {
                qos,
                no_local,
                retain_as_published: opts & 0x08 != 0,
                retain_handling,
            },
        ));
    }
    if filters.is_empty() {
        return Err(ProtocolError::NoTopicFilters("SUBSCRIBE"));
    }
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(crate) fn subscribe_body_len(s: &Subscribe, v: ProtocolVersion) -> usize {
    let props = if v == ProtocolVersion::V5 {
        s.properties.encoded_len()
    } else {
        0
    };
    2 + props + s.filters.iter().map(|(f, _)| 3 + f.len()).sum::<usize>()
}

pub(crate) fn encode_subscribe(s: &Subscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    if v == ProtocolVersion::V5 {
        s.properties.encode(out);
    }
    for (f, o) in &s.filters {
        put_string(out, f);
        let mut b = o.qos as u8;
        if v == ProtocolVersion::V5 {
            b |= u8::from(o.no_local) << 2
                | u8::from(o.retain_as_published) << 3
                | o.retain_handling << 4;
        }
        out.put_u8(b);
    }
}

/// SUBACK reason codes of MQTT 5 (§3.9.3).
const SUBACK_CODES_V5: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
];
/// SUBACK return codes of MQTT 3.1.1; the others are reserved [MQTT-3.9.3-2].
const SUBACK_CODES_V311: &[u8] = &[0x00, 0x01, 0x02, 0x80];
/// UNSUBACK reason codes of MQTT 5 (§3.11.3).
const UNSUBACK_CODES: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];

/// The rest of the packet as one reason code a byte, each checked against `valid`.
fn reason_codes(
    r: &mut Reader,
    valid: &[u8],
    kind: &'static str,
) -> Result<Vec<ReasonCode>, ProtocolError> {
    let mut reasons = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = r.u8("reason code")?;
        if !valid.contains(&code) {
            return Err(ProtocolError::InvalidReasonCode(code, kind));
        }
        reasons.push(ReasonCode(code));
    }
    Ok(reasons)
}

pub(crate) fn decode_suback(r: &mut Reader, v: ProtocolVersion) -> Result<SubAck, ProtocolError> {
    let packet_id = packet_id(r)?;
    let properties = match v {
        ProtocolVersion::V5 => Properties::decode(r, Context::SubAck)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    let valid = match v {
        ProtocolVersion::V5 => SUBACK_CODES_V5,
        ProtocolVersion::V311 => SUBACK_CODES_V311,
    };
    let reasons = reason_codes(r, valid, "SUBACK")?;
    Ok(SubAck {
        packet_id,
        reasons,
        properties,
    })
}

pub(crate) fn suback_body_len(s: &SubAck, v: ProtocolVersion) -> usize {
    let props = if v == ProtocolVersion::V5 {
        s.properties.encoded_len()
    } else {
        0
    };
    2 + props + s.reasons.len()
}

pub(crate) fn encode_suback(s: &SubAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    match v {
        ProtocolVersion::V5 => {
            s.properties.encode(out);
            s.reasons.iter().for_each(|r| out.put_u8(r.0));
        }
        ProtocolVersion::V311 => s
            .reasons
            .iter()
            .for_each(|r| out.put_u8(if r.is_error() { 0x80 } else { r.0 })),
    }
}

pub(crate) fn decode_unsubscribe(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Unsubscribe, ProtocolError> {
    let packet_id = packet_id(r)?;
    let properties = match v {
        ProtocolVersion::V5 => Properties::decode(r, Context::Unsubscribe)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(r.string("topic filter")?);
    }
    if filters.is_empty() {
        return Err(ProtocolError::NoTopicFilters("UNSUBSCRIBE"));
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

pub(crate) fn unsubscribe_body_len(s: &Unsubscribe, v: ProtocolVersion) -> usize {
    let props = if v == ProtocolVersion::V5 {
        s.properties.encoded_len()
    } else {
        0
    };
    2 + props + s.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
}

pub(crate) fn encode_unsubscribe(s: &Unsubscribe, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(s.packet_id);
    if v == ProtocolVersion::V5 {
        s.properties.encode(out);
    }
    s.filters.iter().for_each(|f| put_string(out, f));
}

pub(crate) fn decode_unsuback(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<UnsubAck, ProtocolError> {
    let packet_id = packet_id(r)?;
    let mut u = UnsubAck {
        packet_id,
        reasons: Vec::new(),
        properties: Properties::default(),
    };
    if v == ProtocolVersion::V5 {
        u.properties = Properties::decode(r, Context::UnsubAck)?;
        u.reasons = reason_codes(r, UNSUBACK_CODES, "UNSUBACK")?;
    }
    r.finish("UNSUBACK")?;
    Ok(u)
}

pub(crate) fn unsuback_body_len(u: &UnsubAck, v: ProtocolVersion) -> usize {
    match v {
        ProtocolVersion::V5 => 2 + u.properties.encoded_len() + u.reasons.len(),
        ProtocolVersion::V311 => 2,
    }
}

pub(crate) fn encode_unsuback(u: &UnsubAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u16(u.packet_id);
    if v == ProtocolVersion::V5 {
        u.properties.encode(out);
        u.reasons.iter().for_each(|r| out.put_u8(r.0));
    }
}
