//! State store grants of a `BrokerAuthorization` rule, `stateStoreResources[]`:
//! `{method: Read|Write|ReadWrite, keyType: Pattern|String|Binary, keys: [...]}`, compiled
//! once with the policy and decided per request by [`super::Authorization::allows_key`].
//!
//! - `Pattern`: a glob over the key's bytes (`*`, `?`, `[...]`, `\x`; see [`super::glob`]).
//! - `String`: the key's exact UTF-8 bytes.
//! - `Binary`: the base64 (standard alphabet, padded) of the key's raw bytes.
//!
//! `Pattern` and `String` keys may hold substitution tokens (`{principal.clientId}`,
//! `{principal.username}`, `{principal.attributes.NAME}`) anywhere in the text. A
//! substituted value is always literal: in a pattern every glob metacharacter of the value is
//! escaped, so a client id `a*` matches the key text `a*` only, never `ab`. A token whose value
//! the principal lacks (no user name, no such attribute) makes that key match nothing.

use base64::Engine as _;

use super::authz::{err, token, value, PolicyError, Token};
use super::{glob, Principal};

/// What a state store request does to a key: GET and KEYNOTIFY read (so does SCAN, per key
/// returned), SET, DEL and VDEL write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    Read,
    Write,
}

/// One `stateStoreResources` entry.
#[derive(Debug)]
pub(super) struct KeyGrant {
    read: bool,
    write: bool,
    keys: Vec<KeyPattern>,
}

#[derive(Debug)]
enum KeyPattern {
    Pattern(Vec<Piece>),
    Exact(Vec<Piece>),
    Binary(Vec<u8>),
}

/// Literal text of the policy, or a token filled from the principal.
#[derive(Debug)]
enum Piece {
    Text(String),
    Token(Token),
}

impl KeyGrant {
    /// Does this grant allow `access` to `key` for principal `p`?
    pub(super) fn allows(&self, p: &Principal, access: KeyAccess, key: &[u8]) -> bool {
        let method = match access {
            KeyAccess::Read => self.read,
            KeyAccess::Write => self.write,
        };
        method && self.keys.iter().any(|k| k.matches(p, key))
    }
}

impl KeyPattern {
    fn matches(&self, p: &Principal, key: &[u8]) -> bool {
        match self {
            KeyPattern::Binary(raw) => raw == key,
            KeyPattern::Exact(pieces) => {
                let mut text = Vec::with_capacity(key.len());
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => text.extend_from_slice(t.as_bytes()),
                        Piece::Token(t) => match value(t, p) {
                            Some(v) => text.extend_from_slice(v.as_bytes()),
                            None => return false,
                        },
                    }
                }
                text == key
            }
            KeyPattern::Pattern(pieces) => {
                let mut pattern = Vec::with_capacity(key.len() + 8);
                for piece in pieces {
                    match piece {
                        Piece::Text(t) => pattern.extend_from_slice(t.as_bytes()),
                        Piece::Token(t) => match value(t, p) {
                            Some(v) => glob::escape(v.as_bytes(), &mut pattern),
                            None => return false,
                        },
                    }
                }
                glob::matches(&pattern, key)
            }
        }
    }
}

/// Compile `stateStoreResources[j]` at field path `f`; problems go to `errors`.
pub(super) fn key_grant(
    g: &serde_json::Value,
    f: &str,
    errors: &mut Vec<PolicyError>,
) -> Option<KeyGrant> {
    let Some(obj) = g.as_object() else {
        errors.push(err(f, "expected a mapping with method, keyType and keys"));
        return None;
    };
    for key in obj
        .keys()
        .filter(|k| !matches!(k.as_str(), "method" | "keyType" | "keys"))
    {
        errors.push(err(
            &format!("{f}.{key}"),
            "unknown field; expected method, keyType or keys",
        ));
    }
    let (read, write) = match obj.get("method").and_then(|m| m.as_str()) {
        Some("Read") => (true, false),
        Some("Write") => (false, true),
        Some("ReadWrite") => (true, true),
        other => {
            errors.push(err(
                &format!("{f}.method"),
                format!("{other:?} is not one of Read, Write, ReadWrite"),
            ));
            return None;
        }
    };
    let kind = match obj.get("keyType").and_then(|m| m.as_str()) {
        Some(k @ ("Pattern" | "String" | "Binary")) => k,
        other => {
            errors.push(err(
                &format!("{f}.keyType"),
                format!("{other:?} is not one of Pattern, String, Binary"),
            ));
            return None;
        }
    };
    let at = format!("{f}.keys");
    let Some(list) = obj.get("keys").and_then(|k| k.as_array()) else {
        errors.push(err(&at, "missing; expected a list of keys"));
        return None;
    };
    let mut keys = Vec::with_capacity(list.len());
    for (i, k) in list.iter().enumerate() {
        let at = format!("{at}[{i}]");
        let Some(text) = k.as_str() else {
            errors.push(err(&at, "expected a string"));
            continue;
        };
        if text.is_empty() {
            errors.push(err(&at, "empty key"));
            continue;
        }
        let compiled = match kind {
            "Binary" => match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(raw) if !raw.is_empty() => Some(KeyPattern::Binary(raw)),
                _ => {
                    errors.push(err(
                        &at,
                        "keyType Binary needs the base64 of the key's bytes",
                    ));
                    None
                }
            },
            "String" => pieces(text, false, &at, errors).map(KeyPattern::Exact),
            _ => pieces(text, true, &at, errors).map(KeyPattern::Pattern),
        };
        keys.extend(compiled);
    }
    Some(KeyGrant { read, write, keys })
}

/// Split key text into literal text and substitution tokens. Only `{principal.…}` starts a
/// token; other braces are literal. In a pattern, a token may not follow an escaping
/// backslash (which would turn the value's own escape into a literal and free what follows).
fn pieces(s: &str, glob: bool, f: &str, errors: &mut Vec<PolicyError>) -> Option<Vec<Piece>> {
    const START: &str = "{principal.";
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(at) = rest.find(START) {
        let Some(len) = rest[at..].find('}').map(|e| e + 1) else {
            errors.push(err(f, format!("{:?} is not closed by }}", &rest[at..])));
            return None;
        };
        let Some(t) = token(&rest[at..at + len]) else {
            errors.push(err(f, format!("{:?}: expected {{principal.clientId}}, {{principal.username}} or {{principal.attributes.NAME}}", &rest[at..at + len])));
            return None;
        };
        let before = &rest[..at];
        if glob && before.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1 {
            errors.push(err(f, "a substitution cannot follow an escaping backslash"));
            return None;
        }
        if !before.is_empty() {
            out.push(Piece::Text(before.to_owned()));
        }
        out.push(Piece::Token(t));
        rest = &rest[at + len..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::Authorization;
    use super::*;

    fn policy(spec: serde_json::Value) -> Authorization {
        match Authorization::from_spec(&spec) {
            Ok(a) => a,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn principal(id: &str, user: Option<&str>) -> Principal {
        Principal {
            client_id: id.into(),
            username: user.map(Into::into),
            attributes: [("line".to_owned(), "1".to_owned())].into(),
        }
    }

    fn example() -> Authorization {
        policy(serde_json::json!({"authorizationPolicies": {"rules": [
            {"principals": {"usernames": ["reader"]},
             "stateStoreResources": [
                {"method": "Read", "keyType": "Pattern", "keys": ["sensor/*"]}]},
            {"principals": {"attributes": [{"line": "1"}]},
             "stateStoreResources": [
                {"method": "ReadWrite", "keyType": "Pattern", "keys": ["clients/{principal.clientId}/*"]},
                {"method": "Write", "keyType": "String", "keys": ["line{principal.attributes.line}-[x]"]},
                {"method": "Read", "keyType": "Binary", "keys": ["AP8="]}]}]}}))
    }

    #[test]
    fn methods_and_key_types() {
        let a = example();
        let r = Principal {
            attributes: Default::default(),
            ..principal("r1", Some("reader"))
        };
        assert!(a.allows_key(&r, KeyAccess::Read, b"sensor/t1"));
        assert!(!a.allows_key(&r, KeyAccess::Write, b"sensor/t1"));
        assert!(!a.allows_key(&r, KeyAccess::Read, b"other"));
        let p = principal("dev", None);
        assert!(a.allows_key(&p, KeyAccess::Read, b"clients/dev/x"));
        assert!(a.allows_key(&p, KeyAccess::Write, b"clients/dev/x"));
        assert!(!a.allows_key(&p, KeyAccess::Read, b"clients/other/x"));
        // String keys are exact: brackets are not a class.
        assert!(a.allows_key(&p, KeyAccess::Write, b"line1-[x]"));
        assert!(!a.allows_key(&p, KeyAccess::Write, b"line1-x"));
        assert!(!a.allows_key(&p, KeyAccess::Read, b"line1-[x]"));
        // Binary: base64 of raw bytes.
        assert!(a.allows_key(&p, KeyAccess::Read, &[0x00, 0xFF]));
        assert!(!a.allows_key(&p, KeyAccess::Write, &[0x00, 0xFF]));
        // No rule names this principal: denied.
        let stranger = Principal::default();
        assert!(!a.allows_key(&stranger, KeyAccess::Read, b"sensor/t1"));
    }

    /// A client id full of glob syntax matches only its own literal prefix.
    #[test]
    fn substituted_values_never_widen_a_grant() {
        let a = example();
        for id in ["a*", "*", "?", "[a-z]", "a\\", "\\*", "a-z"] {
            let p = principal(id, None);
            let own = format!("clients/{id}/k");
            assert!(a.allows_key(&p, KeyAccess::Read, own.as_bytes()), "{id}");
            for other in ["clients/ab/k", "clients/b/k", "clients/a/k", "clients/x/k"] {
                if other != own {
                    assert!(
                        !a.allows_key(&p, KeyAccess::Read, other.as_bytes()),
                        "{id} {other}"
                    );
                }
            }
        }
        // A token whose value is missing matches nothing.
        let b = policy(serde_json::json!({"authorizationPolicies": {"rules": [
            {"principals": {"clientIds": ["c"]},
             "stateStoreResources": [{"method": "Read", "keyType": "Pattern", "keys": ["{principal.username}*"]}]}]}}));
        assert!(!b.allows_key(&principal("c", None), KeyAccess::Read, b"anything"));
    }

    #[test]
    fn policy_errors_name_the_field() {
        let errs =
            Authorization::from_spec(&serde_json::json!({"authorizationPolicies": {"rules": [
            {"principals": {"clientIds": ["a"]}, "stateStoreResources": [
                {"method": "Delete", "keyType": "Pattern", "keys": ["k"]},
                {"method": "Read", "keyType": "Regex", "keys": ["k"]},
                {"method": "Read", "keyType": "Binary", "keys": ["not base64!"]},
                {"method": "Read", "keyType": "Pattern", "keys": ["{principal.nope}"]},
                {"method": "Read", "keyType": "Pattern", "keys": ["a\\{principal.clientId}"]},
                {"method": "Read", "keyType": "Pattern", "keys": ["k"], "extra": 1}]}]}}))
            .expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        let base = "spec.authorizationPolicies.rules[0].stateStoreResources";
        for want in [
            format!("{base}[0].method"),
            format!("{base}[1].keyType"),
            format!("{base}[2].keys[0]"),
            format!("{base}[3].keys[0]"),
            format!("{base}[4].keys[0]"),
            format!("{base}[5].extra"),
        ] {
            assert!(fields.contains(&want.as_str()), "{want} not in {fields:?}");
        }
    }
}
