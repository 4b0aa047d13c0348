//! The Kubernetes core kinds `ConfigMap` and `Secret`: files of data that other resources
//! name (TLS certificates, CA bundles).
//!
//! Documents enter checked against [`CONFIG_MAP_DOCUMENT`] / [`SECRET_DOCUMENT`]; what
//! leaves is plain data. As in Kubernetes, a Secret's `data` is base64 and its `stringData`
//! is plain text that wins over `data` on the same key, and a `kubernetes.io/tls` Secret
//! must hold `tls.crt` and `tls.key`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;

use crate::error::Sink;
use crate::resource::METADATA;
use crate::schema::{join, opt, req, Field, Schema};
use crate::yaml::Node;

/// The Secret type of a TLS server certificate and key.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Key of the PEM certificate chain in a TLS Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// Key of the PEM private key in a TLS Secret.
pub const TLS_KEY_KEY: &str = "tls.key";

/// The contents of one Secret.
///
/// `Debug` and `Serialize` show the type and the keys, never the values, so a logged or
/// served configuration does not leak private keys.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretData {
    /// `type`, e.g. `kubernetes.io/tls`; `None` when not set (Kubernetes' `Opaque`).
    pub type_: Option<String>,
    /// Decoded `data` merged with `stringData`.
    pub data: BTreeMap<String, Vec<u8>>,
}

impl SecretData {
    fn keys(&self) -> Vec<&str> {
        self.data.keys().map(String::as_str).collect()
    }
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("type_", &self.type_)
            .field("keys", &self.keys())
            .finish_non_exhaustive()
    }
}

impl Serialize for SecretData {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("SecretData", 2)?;
        out.serialize_field("type", &self.type_)?;
        out.serialize_field("keys", &self.keys())?;
        out.end()
    }
}

pub(crate) static CONFIG_MAP_DOCUMENT: [Field; 5] = [
    req("apiVersion", Schema::Str),
    req("kind", Schema::Str),
    req("metadata", Schema::Object(&METADATA)),
    opt("data", Schema::Map(&Schema::Str)),
    opt("immutable", Schema::Bool),
];

pub(crate) static SECRET_DOCUMENT: [Field; 7] = [
    req("apiVersion", Schema::Str),
    req("kind", Schema::Str),
    req("metadata", Schema::Object(&METADATA)),
    opt("data", Schema::Map(&Schema::StrWith(check_base64))),
    opt("stringData", Schema::Map(&Schema::Str)),
    opt("type", Schema::Str),
    opt("immutable", Schema::Bool),
];

/// Read a ConfigMap's `data`.
pub(crate) fn read_config_map(doc: &Node, sink: &mut Sink) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(data) = doc.get("data") {
        for entry in data.as_map() {
            check_key(&entry.key, "data", entry.key_line, sink);
            if let Some(text) = entry.value.as_str() {
                out.insert(entry.key.clone(), text.to_owned());
            }
        }
    }
    out
}

/// Read a Secret's `type`, `data` and `stringData`.
pub(crate) fn read_secret(doc: &Node, sink: &mut Sink) -> SecretData {
    let mut data = BTreeMap::new();
    if let Some(encoded) = doc.get("data") {
        for entry in encoded.as_map() {
            check_key(&entry.key, "data", entry.key_line, sink);
            if let Some(bytes) = entry.value.as_str().and_then(decode_base64) {
                data.insert(entry.key.clone(), bytes);
            }
        }
    }
    if let Some(plain) = doc.get("stringData") {
        for entry in plain.as_map() {
            check_key(&entry.key, "stringData", entry.key_line, sink);
            if let Some(text) = entry.value.as_str() {
                data.insert(entry.key.clone(), text.as_bytes().to_vec());
            }
        }
    }
    let type_ = doc.get("type").and_then(Node::as_str).map(str::to_owned);
    if type_.as_deref() == Some(TLS_SECRET_TYPE) {
        for key in [TLS_CERT_KEY, TLS_KEY_KEY] {
            if !data.contains_key(key) {
                sink.error(
                    &join("data", key),
                    Some(doc.line),
                    format!(
                        "a {TLS_SECRET_TYPE} secret needs `{key}`; add it under data or stringData"
                    ),
                );
            }
        }
    }
    SecretData { type_, data }
}

/// Keys name files when mounted, so Kubernetes limits them to `[-._a-zA-Z0-9]+`.
fn check_key(key: &str, section: &str, line: usize, sink: &mut Sink) {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        sink.error(
            &join(section, key),
            Some(line),
            format!("invalid key `{key}`; use letters, digits, '-', '_' and '.' only"),
        );
    }
}

/// Standard base64; whitespace (from folded YAML lines) is ignored.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .ok()
}

fn check_base64(text: &str) -> Result<(), String> {
    match decode_base64(text) {
        Some(_) => Ok(()),
        None => Err(
            "value is not valid base64; encode it (e.g. `base64 -w0 FILE`) or move it to \
             stringData as plain text"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_json_hide_values() -> Result<(), serde_json::Error> {
        let secret = SecretData {
            type_: Some(TLS_SECRET_TYPE.into()),
            data: BTreeMap::from([("tls.key".to_owned(), b"PRIVATE".to_vec())]),
        };
        let shown = format!("{secret:?} {}", serde_json::to_string(&secret)?);
        assert!(shown.contains("tls.key") && !shown.contains("PRIVATE"));
        Ok(())
    }

    #[test]
    fn base64_ignores_line_breaks() {
        assert_eq!(decode_base64("aGVs\nbG8="), Some(b"hello".to_vec()));
        assert_eq!(decode_base64("not base64!"), None);
    }
}
