//! DISCONNECT (§3.14) and AUTH (§3.15): a reason code and properties, both optional on the
//! wire when the reason is Success and there are no properties.

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;
use crate::primitives::Reader;
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    pub fn new(reason: ReasonCode) -> Self {
        Self {
            reason,
            properties: Properties::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}

const DISCONNECT_CODES: &[u8] = &[
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95,
    0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
];
const AUTH_CODES: &[u8] = &[0x00, 0x18, 0x19];

fn decode_reason_props(
    r: &mut Reader,
    ctx: Context,
    kind: &'static str,
    valid: &[u8],
) -> Result<(ReasonCode, Properties), ProtocolError> {
    let mut reason = ReasonCode::SUCCESS;
    let mut properties = Properties::default();
    if !r.is_empty() {
        let code = r.u8("reason code")?;
        if !valid.contains(&code) {
            return Err(ProtocolError::InvalidReasonCode(code, kind));
        }
        reason = ReasonCode(code);
        if !r.is_empty() {
            properties = Properties::decode(r, ctx)?;
        }
    }
    r.finish(kind)?;
    Ok((reason, properties))
}

pub(crate) fn decode_disconnect(
    r: &mut Reader,
    v: ProtocolVersion,
) -> Result<Disconnect, ProtocolError> {
    if v == ProtocolVersion::V311 {
        r.finish("DISCONNECT")?;
        return Ok(Disconnect::new(ReasonCode::SUCCESS));
    }
    let (reason, properties) =
        decode_reason_props(r, Context::Disconnect, "DISCONNECT", DISCONNECT_CODES)?;
    Ok(Disconnect { reason, properties })
}

pub(crate) fn decode_auth(r: &mut Reader) -> Result<Auth, ProtocolError> {
    let (reason, properties) = decode_reason_props(r, Context::Auth, "AUTH", AUTH_CODES)?;
    Ok(Auth { reason, properties })
}

pub(crate) fn reason_props_len(
    reason: ReasonCode,
    props: &Properties,
    v: ProtocolVersion,
) -> usize {
    match v {
        ProtocolVersion::V311 => 0,
        ProtocolVersion::V5 if props.is_empty() && reason == ReasonCode::SUCCESS => 0,
        ProtocolVersion::V5 if props.is_empty() => 1,
        ProtocolVersion::V5 => 1 + props.encoded_len(),
    }
}

pub(crate) fn encode_reason_props(
    reason: ReasonCode,
    props: &Properties,
    v: ProtocolVersion,
    out: &mut BytesMut,
) {
    let len = reason_props_len(reason, props, v);
    if len >= 1 {
        out.put_u8(reason.0);
    }
    if len > 1 {
        props.encode(out);
    }
}
