//! Protocol violations found while decoding, each naming the normative statement (or section)
//! of the MQTT specification it breaks, and the reason code the broker answers with.
//!
//! Data enters as a decoding failure; it leaves as [`ProtocolError::reason_code`] (MQTT 5) or
//! [`ProtocolError::connect_return_code`] (MQTT 3.1.1 CONNACK), so the broker never has to guess.

use crate::reason::ReasonCode;

/// A packet that breaks the MQTT specification. The message names the normative statement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error(
        "variable byte integer is longer than 4 bytes or not in its shortest form [MQTT-1.5.5-1]"
    )]
    MalformedVariableInteger,
    #[error("packet of {size} bytes exceeds the maximum packet size {max} [MQTT-3.1.2-24]")]
    PacketTooLarge { size: usize, max: usize },
    #[error("packet type 0 is reserved [MQTT-2.1.2]")]
    ReservedPacketType,
    #[error("AUTH packets do not exist in MQTT 3.1.1 [MQTT-2.1.2]")]
    AuthInV311,
    #[error("reserved flags of {0} packet are not as the specification fixes them [MQTT-2.1.3-1]")]
    ReservedFlags(&'static str),
    #[error("packet ends before its {0} field [MQTT-2.1.4]")]
    Truncated(&'static str),
    #[error("{0} packet has {1} bytes beyond its content [MQTT-2.1.4]")]
    TrailingBytes(&'static str, usize),
    #[error("string is not well-formed UTF-8 [MQTT-1.5.4-1]")]
    InvalidUtf8,
    #[error("string contains the null character U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    #[error("protocol name is not \"MQTT\" [MQTT-3.1.2-1]")]
    InvalidProtocolName,
    #[error("protocol level {0} is not supported; use 4 (3.1.1) or 5 (5.0) [MQTT-3.1.2-2]")]
    UnsupportedProtocolVersion(u8),
    #[error("reserved flag of CONNECT is set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    #[error("will QoS or will retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]")]
    WillFlagsWithoutWill,
    #[error("will QoS 3 is not allowed [MQTT-3.1.2-12]")]
    InvalidWillQos,
    #[error("password flag set without user name flag [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    #[error("QoS 3 is not allowed [MQTT-3.3.1-4]")]
    InvalidQos,
    #[error("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQos0,
    #[error("packet identifier must not be 0 [MQTT-2.2.1-3]")]
    ZeroPacketId,
    #[error("topic name contains a wildcard character [MQTT-3.3.2-2]")]
    WildcardInTopicName,
    #[error("topic name or filter is empty (and no topic alias stands for it) [MQTT-4.7.3-1] [§3.3.2.1]")]
    EmptyTopic,
    #[error("topic filter is invalid: {0} [MQTT-4.7.1-1] [MQTT-4.7.1-2]")]
    InvalidTopicFilter(&'static str),
    #[error("shared subscription is invalid: {0} [MQTT-4.8.2-1] [MQTT-4.8.2-2]")]
    InvalidSharedSubscription(&'static str),
    #[error("property 0x{0:02X} is unknown [MQTT-2.2.2-2]")]
    UnknownProperty(u8),
    #[error("property {0} is not allowed in {1} [MQTT-2.2.2-2]")]
    PropertyNotAllowed(&'static str, &'static str),
    #[error("property {0} appears more than once [MQTT-2.2.2-2]")]
    DuplicateProperty(&'static str),
    #[error("property {0} has an invalid value [{1}]")]
    InvalidPropertyValue(&'static str, &'static str),
    #[error("{0} packet contains no topic filter [MQTT-3.8.3-2] [MQTT-3.10.3-2]")]
    NoTopicFilters(&'static str),
    #[error("reserved bits of subscription options are set [MQTT-3.8.3-5]")]
    SubscriptionOptionsReserved,
    #[error("retain handling 3 is not allowed [§3.8.3.1]")]
    InvalidRetainHandling,
    #[error(
        "maximum QoS 3 in subscription options is not allowed [§3.8.3.1] [MQTT-3.8.3-4 in 3.1.1]"
    )]
    InvalidSubscriptionQos,
    #[error("no local is set on a shared subscription [MQTT-3.8.3-4]")]
    NoLocalOnSharedSubscription,
    #[error("topic alias 0 is not allowed [MQTT-3.3.2-8]")]
    TopicAliasZero,
    #[error("authentication data sent without an authentication method [§3.1.2.11.10]")]
    AuthenticationDataWithoutMethod,
    #[error("reason code 0x{0:02X} is not valid in {1} [MQTT-2.4]")]
    InvalidReasonCode(u8, &'static str),
    #[error("client identifier is not allowed: {0} [MQTT-3.1.3-5]")]
    InvalidClientId(&'static str),
}

/// How a violation is classified by the specification, which fixes the reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Malformed,
    Protocol,
}

impl ProtocolError {
    /// Malformed Packet or Protocol Error, as the specification classifies the violation.
    ///
    /// Where MQTT 5 names the class it wins: a property not valid for its packet type is a
    /// Malformed Packet (§2.2.2.2) while a repeated or out-of-range property is a Protocol
    /// Error (each property's own text); an empty topic name without a topic alias is a
    /// Protocol Error (§3.3.2.1), as are a maximum QoS or retain handling of 3 in subscription
    /// options (§3.8.3.1), whereas a QoS of 3 in a PUBLISH header is malformed (§3.3.1.2).
    /// Violations the specification does not classify are Protocol Errors unless the packet
    /// cannot be parsed.
    pub fn class(&self) -> Class {
        use ProtocolError::*;
        match self {
            MalformedVariableInteger
            | ReservedFlags(_)
            | Truncated(_)
            | TrailingBytes(..)
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlag
            | WillFlagsWithoutWill
            | InvalidWillQos
            | InvalidQos
            | WildcardInTopicName
            | InvalidTopicFilter(_)
            | UnknownProperty(_)
            | PropertyNotAllowed(..)
            | SubscriptionOptionsReserved
            | ReservedPacketType
            | AuthInV311
            | PasswordWithoutUsername => Class::Malformed,
            _ => Class::Protocol,
        }
    }

    /// The MQTT 5 reason code the broker sends (in CONNACK or DISCONNECT) for this violation.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            ProtocolError::PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            ProtocolError::UnsupportedProtocolVersion(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            ProtocolError::WildcardInTopicName => ReasonCode::TOPIC_NAME_INVALID,
            ProtocolError::TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            ProtocolError::InvalidClientId(_) => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            _ => match self.class() {
                Class::Malformed => ReasonCode::MALFORMED_PACKET,
                Class::Protocol => ReasonCode::PROTOCOL_ERROR,
            },
        }
    }

    /// The MQTT 3.1.1 CONNACK return code for a CONNECT that fails this way, if the
    /// specification asks for one (otherwise the connection is closed without CONNACK).
    pub fn connect_return_code(&self) -> Option<u8> {
        match self {
            ProtocolError::UnsupportedProtocolVersion(_) => Some(0x01),
            ProtocolError::InvalidClientId(_) => Some(0x02),
            _ => None,
        }
    }
}

/// Why [`crate::decode`] could not produce a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}
