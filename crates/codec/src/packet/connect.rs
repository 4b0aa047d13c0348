//! CONNECT (§3.1) and CONNACK (§3.2), for both protocol versions.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::primitives::{check_str, put_binary, put_string, Reader};
use crate::properties::{Context, Properties};
use crate::{ProtocolVersion, QoS};

/// A client's CONNECT. The protocol version comes from the packet itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub client_id: String,
    pub will: Option<Will>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The Will Message carried by CONNECT (§3.1.2.5, §3.1.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

/// CONNACK. `code` is the MQTT 5 reason code or the MQTT 3.1.1 return code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: u8,
    pub properties: Properties,
}

pub(crate) fn decode_connect(r: &mut Reader) -> Result<Connect, ProtocolError> {
    let name = r.binary("protocol name")?;
    let level = r.u8("protocol level")?;
    let protocol = match (&name[..], level) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQTT", other) | (b"MQIsdp", other) => {
            return Err(ProtocolError::UnsupportedProtocolVersion(other))
        }
        _ => return Err(ProtocolError::InvalidProtocolName),
    };
    let flags = r.u8("connect flags")?;
    if flags & 0x01 != 0 {
        return Err(ProtocolError::ConnectReservedFlag);
    }
    let clean_start = flags & 0x02 != 0;
    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        return Err(ProtocolError::WillFlagsWithoutWill);
    }
    let will_qos = QoS::try_from(will_qos).map_err(|_| ProtocolError::InvalidWillQos)?;
    if protocol == ProtocolVersion::V311 && password_flag && !username_flag {
        return Err(ProtocolError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16("keep alive")?;
    let properties = match protocol {
        ProtocolVersion::V5 => Properties::decode(r, Context::Connect)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(ProtocolError::AuthenticationDataWithoutMethod);
    }
    let client_id = r.string("client identifier")?;
    let will = if will_flag {
        let properties = match protocol {
            ProtocolVersion::V5 => Properties::decode(r, Context::Will)?,
            ProtocolVersion::V311 => Properties::default(),
        };
        let topic = r.string("will topic")?;
        crate::topic::validate_topic_name(&topic)?;
        let payload = r.binary("will payload")?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag {
        Some(r.string("user name")?)
    } else {
        None
    };
    let password = if password_flag {
        Some(r.binary("password")?)
    } else {
        None
    };
    r.finish("CONNECT")?;
    Ok(Connect {
        protocol,
        clean_start,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

pub(crate) fn connect_body_len(c: &Connect) -> usize {
    let v5 = c.protocol == ProtocolVersion::V5;
    let mut n = 6 + 1 + 1 + 2 + 2 + c.client_id.len();
    if v5 {
        n += c.properties.encoded_len();
    }
    if let Some(w) = &c.will {
        n += 4 + w.topic.len() + w.payload.len();
        if v5 {
            n += w.properties.encoded_len();
        }
    }
    n += c.username.as_ref().map_or(0, |u| 2 + u.len());
    n += c.password.as_ref().map_or(0, |p| 2 + p.len());
    n
}

pub(crate) fn encode_connect(c: &Connect, out: &mut BytesMut) {
    let v5 = c.protocol == ProtocolVersion::V5;
    put_string(out, "MQTT");
    out.put_u8(if v5 { 5 } else { 4 });
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        c.properties.encode(out);
    }
    put_string(out, &c.client_id);
    if let Some(w) = &c.will {
        if v5 {
            w.properties.encode(out);
        }
        put_string(out, &w.topic);
        put_binary(out, &w.payload);
    }
    if let Some(u) = &c.username {
        put_string(out, u);
    }
    if let Some(p) = &c.password {
        put_binary(out, p);
    }
}

/// CONNACK reason codes of MQTT 5 (§3.2.2.2).
const CONNACK_CODES_V5: &[u8] = &[
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97,
    0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
];
/// CONNACK return codes of MQTT 3.1.1 (§3.2.2.3); 6-255 are reserved.
const CONNACK_CODES_V311: &[u8] = &[0x00, 0x01, 0x02, 0x03, 0x04, 0x05];

pub(crate) fn decode_connack(r: &mut Reader, v: ProtocolVersion) -> Result<ConnAck, ProtocolError> {
    let flags = r.u8("acknowledge flags")?;
    if flags & 0xFE != 0 {
        return Err(ProtocolError::ReservedFlags("CONNACK"));
    }
    let code = r.u8("connect reason code")?;
    let valid = match v {
        ProtocolVersion::V5 => CONNACK_CODES_V5,
        ProtocolVersion::V311 => CONNACK_CODES_V311,
    };
    if !valid.contains(&code) {
        return Err(ProtocolError::InvalidReasonCode(code, "CONNACK"));
    }
    let properties = match v {
        ProtocolVersion::V5 => Properties::decode(r, Context::ConnAck)?,
        ProtocolVersion::V311 => Properties::default(),
    };
    r.finish("CONNACK")?;
    if let Some(id) = &properties.assigned_client_identifier {
        check_str(id)?;
    }
    Ok(ConnAck {
        session_present: flags & 1 != 0,
        code,
        properties,
    })
}

pub(crate) fn connack_body_len(c: &ConnAck, v: ProtocolVersion) -> usize {
    2 + match v {
        ProtocolVersion::V5 => c.properties.encoded_len(),
        ProtocolVersion::V311 => 0,
    }
}

pub(crate) fn encode_connack(c: &ConnAck, v: ProtocolVersion, out: &mut BytesMut) {
    out.put_u8(u8::from(c.session_present));
    out.put_u8(c.code);
    if v == ProtocolVersion::V5 {
        c.properties.encode(out);
    }
}
