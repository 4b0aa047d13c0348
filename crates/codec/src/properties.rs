//! MQTT 5 properties (§2.2.2): one struct for every packet, decoded with the checks the
//! specification makes of each property (which packets may carry it, at most once, legal
//! values) and encoded in identifier order. MQTT 3.1.1 packets carry none.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::primitives::{put_binary, put_string, put_varint, varint_len, Reader, VARINT_MAX};

/// The packet (or will) a property block belongs to; decides which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Connect => "CONNECT",
            Context::Will => "will properties",
            Context::ConnAck => "CONNACK",
            Context::Publish => "PUBLISH",
            Context::Ack => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            Context::Subscribe => "SUBSCRIBE",
            Context::SubAck => "SUBACK",
            Context::Unsubscribe => "UNSUBSCRIBE",
            Context::UnsubAck => "UNSUBACK",
            Context::Disconnect => "DISCONNECT",
            Context::Auth => "AUTH",
        }
    }
}

/// Every MQTT 5 property. Absent properties are `None` / empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

use Context as C;

/// (identifier, name, contexts where allowed)
const TABLE: &[(u8, &str, &[Context])] = &[
    (0x01, "Payload Format Indicator", &[C::Publish, C::Will]),
    (0x02, "Message Expiry Interval", &[C::Publish, C::Will]),
    (0x03, "Content Type", &[C::Publish, C::Will]),
    (0x08, "Response Topic", &[C::Publish, C::Will]),
    (0x09, "Correlation Data", &[C::Publish, C::Will]),
    (0x0B, "Subscription Identifier", &[C::Publish, C::Subscribe]),
    (
        0x11,
        "Session Expiry Interval",
        &[C::Connect, C::ConnAck, C::Disconnect],
    ),
    (0x12, "Assigned Client Identifier", &[C::ConnAck]),
    (0x13, "Server Keep Alive", &[C::ConnAck]),
    (
        0x15,
        "Authentication Method",
        &[C::Connect, C::ConnAck, C::Auth],
    ),
    (
        0x16,
        "Authentication Data",
        &[C::Connect, C::ConnAck, C::Auth],
    ),
    (0x17, "Request Problem Information", &[C::Connect]),
    (0x18, "Will Delay Interval", &[C::Will]),
    (0x19, "Request Response Information", &[C::Connect]),
    (0x1A, "Response Information", &[C::ConnAck]),
    (0x1C, "Server Reference", &[C::ConnAck, C::Disconnect]),
    (
        0x1F,
        "Reason String",
        &[
            C::ConnAck,
            C::Ack,
            C::SubAck,
            C::UnsubAck,
            C::Disconnect,
            C::Auth,
        ],
    ),
    (0x21, "Receive Maximum", &[C::Connect, C::ConnAck]),
    (0x22, "Topic Alias Maximum", &[C::Connect, C::ConnAck]),
    (0x23, "Topic Alias", &[C::Publish]),
    (0x24, "Maximum QoS", &[C::ConnAck]),
    (0x25, "Retain Available", &[C::ConnAck]),
    (0x26, "User Property", &[]),
    (0x27, "Maximum Packet Size", &[C::Connect, C::ConnAck]),
    (0x28, "Wildcard Subscription Available", &[C::ConnAck]),
    (0x29, "Subscription Identifier Available", &[C::ConnAck]),
    (0x2A, "Shared Subscription Available", &[C::ConnAck]),
];

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), ProtocolError> {
    if slot.is_some() {
        return Err(ProtocolError::DuplicateProperty(name));
    }
    *slot = Some(value);
    Ok(())
}

fn bool_byte(
    r: &mut Reader,
    name: &'static str,
    clause: &'static str,
) -> Result<u8, ProtocolError> {
    let v = r.u8(name)?;
    if v > 1 {
        return Err(ProtocolError::InvalidPropertyValue(name, clause));
    }
    Ok(v)
}

impl Properties {
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }

    /// Decode a property block (length prefix included) for the given packet.
    pub(crate) fn decode(r: &mut Reader, ctx: Context) -> Result<Self, ProtocolError> {
        let len = r.varint("property length")? as usize;
        let body = r.bytes(len, "properties")?;
        let mut r = Reader::new(body);
        let mut p = Properties::default();
        while !r.is_empty() {
            let id = r.varint("property identifier")?;
            let id = u8::try_from(id).map_err(|_| ProtocolError::UnknownProperty(0xFF))?;
            let Some(&(_, name, allowed)) = TABLE.iter().find(|(i, _, _)| *i == id) else {
                return Err(ProtocolError::UnknownProperty(id));
            };
            if id != 0x26 && !allowed.contains(&ctx) {
                return Err(ProtocolError::PropertyNotAllowed(name, ctx.name()));
            }
            match id {
                0x01 => set_once(
                    &mut p.payload_format_indicator,
                    bool_byte(&mut r, name, "§3.3.2.3.2")?,
                    name,
                )?,
                0x02 => set_once(&mut p.message_expiry_interval, r.u32(name)?, name)?,
                0x03 => set_once(&mut p.content_type, r.string(name)?, name)?,
                0x08 => {
                    let t = r.string(name)?;
                    if t.is_empty() || t.contains(['+', '#']) {
                        return Err(ProtocolError::InvalidPropertyValue(name, "MQTT-3.3.2-14"));
                    }
                    set_once(&mut p.response_topic, t, name)?
                }
                0x09 => set_once(&mut p.correlation_data, r.binary(name)?, name)?,
                0x0B => {
                    let v = r.varint(name)?;
                    if v == 0 {
                        return Err(ProtocolError::InvalidPropertyValue(name, "§3.8.2.1.2"));
                    }
                    if ctx == Context::Subscribe && !p.subscription_identifiers.is_empty() {
                        return Err(ProtocolError::DuplicateProperty(name));
                    }
                    p.subscription_identifiers.push(v);
                }
                0x11 => set_once(&mut p.session_expiry_interval, r.u32(name)?, name)?,
                0x12 => set_once(&mut p.assigned_client_identifier, r.string(name)?, name)?,
                0x13 => set_once(&mut p.server_keep_alive, r.u16(name)?, name)?,
                0x15 => set_once(&mut p.authentication_method, r.string(name)?, name)?,
                0x16 => set_once(&mut p.authentication_data, r.binary(name)?, name)?,
                0x17 => set_once(
                    &mut p.request_problem_information,
                    bool_byte(&mut r, name, "§3.1.2.11.7")?,
                    name,
                )?,
                0x18 => set_once(&mut p.will_delay_interval, r.u32(name)?, name)?,
                0x19 => set_once(
                    &mut p.request_response_information,
                    bool_byte(&mut r, name, "§3.1.2.11.6")?,
                    name,
                )?,
                0x1A => set_once(&mut p.response_information, r.string(name)?, name)?,
                0x1C => set_once(&mut p.server_reference, r.string(name)?, name)?,
                0x1F => set_once(&mut p.reason_string, r.string(name)?, name)?,
                0x21 => {
                    let v = r.u16(name)?;
                    if v == 0 {
                        return Err(ProtocolError::InvalidPropertyValue(name, "§3.1.2.11.3"));
                    }
                    set_once(&mut p.receive_maximum, v, name)?
                }
                0x22 => set_once(&mut p.topic_alias_maximum, r.u16(name)?, name)?,
                0x23 => {
                    let v = r.u16(name)?;
                    if v == 0 {
                        return Err(ProtocolError::TopicAliasZero);
                    }
                    set_once(&mut p.topic_alias, v, name)?
                }
                0x24 => set_once(
                    &mut p.maximum_qos,
                    bool_byte(&mut r, name, "MQTT-3.2.2-9")?,
                    name,
                )?,
                0x25 => set_once(
                    &mut p.retain_available,
                    bool_byte(&mut r, name, "§3.2.2.3.5")?,
                    name,
                )?,
                0x26 => {
                    let k = r.string(name)?;
                    let v = r.string(name)?;
                    p.user_properties.push((k, v));
                }
                0x27 => {
                    let v = r.u32(name)?;
                    if v == 0 {
                        return Err(ProtocolError::InvalidPropertyValue(name, "§3.1.2.11.4"));
                    }
                    set_once(&mut p.maximum_packet_size, v, name)?
                }
                0x28 => set_once(
                    &mut p.wildcard_subscription_available,
                    bool_byte(&mut r, name, "§3.2.2.3.11")?,
                    name,
                )?,
                0x29 => set_once(
                    &mut p.subscription_identifier_available,
                    bool_byte(&mut r, name, "§3.2.2.3.12")?,
                    name,
                )?,
                0x2A => set_once(
                    &mut p.shared_subscription_available,
                    bool_byte(&mut r, name, "§3.2.2.3.13")?,
                    name,
                )?,
                _ => return Err(ProtocolError::UnknownProperty(id)),
            }
        }
        Ok(p)
    }

    /// Encoded size of the property block's content (without its length prefix).
    pub fn content_len(&self) -> usize {
        fn s(v: &Option<String>) -> usize {
            v.as_ref().map_or(0, |s| 3 + s.len())
        }
        fn b(v: &Option<Bytes>) -> usize {
            v.as_ref().map_or(0, |b| 3 + b.len())
        }
        fn n<T>(v: &Option<T>, size: usize) -> usize {
            v.as_ref().map_or(0, |_| 1 + size)
        }
        n(&self.payload_format_indicator, 1)
            + n(&self.message_expiry_interval, 4)
            + s(&self.content_type)
            + s(&self.response_topic)
            + b(&self.correlation_data)
            + self
                .subscription_identifiers
                .iter()
                .map(|&i| 1 + varint_len(i as usize))
                .sum::<usize>()
            + n(&self.session_expiry_interval, 4)
            + s(&self.assigned_client_identifier)
            + n(&self.server_keep_alive, 2)
            + s(&self.authentication_method)
            + b(&self.authentication_data)
            + n(&self.request_problem_information, 1)
            + n(&self.will_delay_interval, 4)
            + n(&self.request_response_information, 1)
            + s(&self.response_information)
            + s(&self.server_reference)
            + s(&self.reason_string)
            + n(&self.receive_maximum, 2)
            + n(&self.topic_alias_maximum, 2)
            + n(&self.topic_alias, 2)
            + n(&self.maximum_qos, 1)
            + n(&self.retain_available, 1)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| 5 + k.len() + v.len())
                .sum::<usize>()
            + n(&self.maximum_packet_size, 4)
            + n(&self.wildcard_subscription_available, 1)
            + n(&self.subscription_identifier_available, 1)
            + n(&self.shared_subscription_available, 1)
    }

    /// Encoded size including the length prefix.
    pub fn encoded_len(&self) -> usize {
        let c = self.content_len();
        varint_len(c) + c
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_varint(out, self.content_len());
        self.encode_content(out, false);
    }

    /// Encoded size of the content without Message Expiry Interval, Subscription
    /// Identifiers and Topic Alias: what a forwarded message's properties contribute to a
    /// delivery, which sets those three itself (see [`crate::PublishView`]).
    pub(crate) fn forwarded_content_len(&self) -> usize {
        self.content_len()
            - self.message_expiry_interval.map_or(0, |_| 5)
            - self
                .subscription_identifiers
                .iter()
                .map(|&i| 1 + varint_len(i as usize))
                .sum::<usize>()
            - self.topic_alias.map_or(0, |_| 3)
    }

    /// Write the properties without their length prefix; `forwarded` leaves out the three
    /// that a delivery sets itself (see [`Properties::forwarded_content_len`]).
    pub(crate) fn encode_content(&self, out: &mut BytesMut, forwarded: bool) {
        let byte = |out: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u8(v);
            }
        };
        let u16p = |out: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u16(v);
            }
        };
        let u32p = |out: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u32(v);
            }
        };
        let strp = |out: &mut BytesMut, id: u8, v: &Option<String>| {
            if let Some(v) = v {
                out.put_u8(id);
                put_string(out, v);
            }
        };
        let binp = |out: &mut BytesMut, id: u8, v: &Option<Bytes>| {
            if let Some(v) = v {
                out.put_u8(id);
                put_binary(out, v);
            }
        };
        byte(out, 0x01, self.payload_format_indicator);
        if !forwarded {
            u32p(out, 0x02, self.message_expiry_interval);
        }
        strp(out, 0x03, &self.content_type);
        strp(out, 0x08, &self.response_topic);
        binp(out, 0x09, &self.correlation_data);
        if !forwarded {
            for &id in &self.subscription_identifiers {
                out.put_u8(0x0B);
                put_varint(out, id.min(VARINT_MAX) as usize);
            }
        }
        u32p(out, 0x11, self.session_expiry_interval);
        strp(out, 0x12, &self.assigned_client_identifier);
        u16p(out, 0x13, self.server_keep_alive);
        strp(out, 0x15, &self.authentication_method);
        binp(out, 0x16, &self.authentication_data);
        byte(out, 0x17, self.request_problem_information);
        u32p(out, 0x18, self.will_delay_interval);
        byte(out, 0x19, self.request_response_information);
        strp(out, 0x1A, &self.response_information);
        strp(out, 0x1C, &self.server_reference);
        strp(out, 0x1F, &self.reason_string);
        u16p(out, 0x21, self.receive_maximum);
        u16p(out, 0x22, self.topic_alias_maximum);
        if !forwarded {
            u16p(out, 0x23, self.topic_alias);
        }
        byte(out, 0x24, self.maximum_qos);
        byte(out, 0x25, self.retain_available);
        for (k, v) in &self.user_properties {
            out.put_u8(0x26);
            put_string(out, k);
            put_string(out, v);
        }
        u32p(out, 0x27, self.maximum_packet_size);
        byte(out, 0x28, self.wildcard_subscription_available);
        byte(out, 0x29, self.subscription_identifier_available);
        byte(out, 0x2A, self.shared_subscription_available);
    }
}
