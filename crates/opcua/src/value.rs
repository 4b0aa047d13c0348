//! Values as the connector hands them on: OPC UA variants become `serde_json::Value`s and
//! OPC UA status codes become [`Status`].
//!
//! Data enters as `opcua_types` values received from a server; it leaves as plain JSON and
//! a status that callers can inspect without depending on the OPC UA crates.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use opcua_types::{StatusCode, Variant};
use serde_json::{json, Value};

/// The status (quality) of a value as reported by the server: the raw 32-bit OPC UA
/// status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(u32);

impl Status {
    /// The value is good.
    pub const GOOD: Status = Status(0);

    /// A status from its raw OPC UA code.
    pub fn from_code(code: u32) -> Self {
        Status(code)
    }

    /// The raw OPC UA status code.
    pub fn code(self) -> u32 {
        self.0
    }

    /// True when the severity is Good.
    pub fn is_good(self) -> bool {
        StatusCode::from(self.0).is_good()
    }

    /// True when the severity is Bad.
    pub fn is_bad(self) -> bool {
        StatusCode::from(self.0).is_bad()
    }

    /// True when the severity is Uncertain.
    pub fn is_uncertain(self) -> bool {
        StatusCode::from(self.0).is_uncertain()
    }

    /// The symbolic name of the code, e.g. `BadSensorFailure`.
    pub fn symbol(self) -> String {
        StatusCode::from(self.0).sub_code().to_string()
    }
}

impl From<StatusCode> for Status {
    fn from(code: StatusCode) -> Self {
        Status(code.bits())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:08X})", self.symbol(), self.0)
    }
}

/// Formats a timestamp the way the payloads carry it: RFC 3339, UTC, `Z` suffix.
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Converts an OPC UA variant to JSON.
///
/// Numbers stay numbers (non-finite floats become `null`, as JSON has no NaN), times become
/// RFC 3339 strings, byte strings become base64, node ids and qualified names their OPC UA
/// string form, localized texts their text, and arrays JSON arrays. Structures the
/// connector cannot decode become a string describing them rather than being dropped.
pub(crate) fn variant_to_json(variant: &Variant) -> Value {
    match variant {
        Variant::Empty => Value::Null,
        Variant::Boolean(v) => json!(v),
        Variant::SByte(v) => json!(v),
        Variant::Byte(v) => json!(v),
        Variant::Int16(v) => json!(v),
        Variant::UInt16(v) => json!(v),
        Variant::Int32(v) => json!(v),
        Variant::UInt32(v) => json!(v),
        Variant::Int64(v) => json!(v),
        Variant::UInt64(v) => json!(v),
        Variant::Float(v) => float(f64::from(*v)),
        Variant::Double(v) => float(*v),
        Variant::String(v) => v.value().as_deref().map_or(Value::Null, |s| json!(s)),
        Variant::DateTime(v) => json!(rfc3339(v.as_chrono())),
        Variant::Guid(v) => json!(v.to_string()),
        Variant::StatusCode(v) => json!(v.bits()),
        Variant::ByteString(v) => {
            if v.is_null() {
                Value::Null
            } else {
                json!(v.as_base64())
            }
        }
        Variant::XmlElement(v) => json!(v.to_string()),
        Variant::QualifiedName(v) => json!(v.to_string()),
        Variant::LocalizedText(v) => v.text.value().as_deref().map_or(Value::Null, |s| json!(s)),
        Variant::NodeId(v) => json!(v.to_string()),
        Variant::ExpandedNodeId(v) => json!(v.to_string()),
        Variant::Variant(v) => variant_to_json(v),
        Variant::DataValue(v) => v.value.as_ref().map_or(Value::Null, variant_to_json),
        Variant::Array(a) => Value::Array(a.values.iter().map(variant_to_json).collect()),
        Variant::ExtensionObject(v) => json!(format!("{v:?}")),
        Variant::DiagnosticInfo(v) => json!(format!("{v:?}")),
    }
}

fn float(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opcua_types::{ByteString, LocalizedText, NodeId};

    #[test]
    fn scalars_become_json_scalars() {
        assert_eq!(variant_to_json(&Variant::Boolean(true)), json!(true));
        assert_eq!(variant_to_json(&Variant::UInt32(7)), json!(7));
        assert_eq!(variant_to_json(&Variant::Double(0.5)), json!(0.5));
        assert_eq!(variant_to_json(&Variant::Double(f64::NAN)), Value::Null);
        assert_eq!(variant_to_json(&Variant::from("abc")), json!("abc"));
        assert_eq!(variant_to_json(&Variant::Empty), Value::Null);
    }

    #[test]
    fn structured_values_become_strings_or_arrays() {
        let text = Variant::from(LocalizedText::new("en", "hello"));
        assert_eq!(variant_to_json(&text), json!("hello"));
        let id = Variant::from(NodeId::new(2, "Fast.Sine.0"));
        assert_eq!(variant_to_json(&id), json!("ns=2;s=Fast.Sine.0"));
        let bytes = Variant::from(ByteString::from(vec![1u8, 2, 3]));
        assert_eq!(variant_to_json(&bytes), json!("AQID"));
        let array = Variant::from(vec![1i32, 2, 3]);
        assert_eq!(variant_to_json(&array), json!([1, 2, 3]));
    }

    #[test]
    fn status_names_its_code() {
        let bad = Status::from(StatusCode::BadSensorFailure);
        assert!(bad.is_bad());
        assert_eq!(bad.symbol(), "BadSensorFailure");
        assert!(Status::GOOD.is_good());
        assert!(Status::from(StatusCode::UncertainLastUsableValue).is_uncertain());
    }
}
