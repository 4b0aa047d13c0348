//! `BrokerAuthorization` policies: allow-only rules, each naming principals (client ids,
//! user names, attribute sets: OR across the lists, AND inside one attribute set) and the
//! broker resources they may use (Connect with client id patterns, Publish and Subscribe
//! with topic patterns) and the state store keys they may read or write
//! (`stateStoreResources`, compiled and matched in `keys.rs`).
//!
//! Substitution tokens `{principal.clientId}`, `{principal.username}` and
//! `{principal.attributes.NAME}` must fill a whole topic segment. Matching is structural,
//! segment by segment: a substituted value is compared literally with one segment of the
//! topic, never parsed as a pattern, so `+ # * ? [ ] /` in a client id, user name or
//! attribute can never widen a grant (a value containing `/` matches nothing).

use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::{key_grant, KeyAccess, KeyGrant};
use super::Principal;

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    /// Field path inside the resource, e.g. `spec.authorizationPolicies.rules[0].brokerResources[1].topics[2]`.
    pub field: String,
    pub message: String,
}

pub(super) fn err(field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        field: field.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Token {
    ClientId,
    Username,
    Attribute(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Plus,
    Hash,
    Token(Token),
}

/// A client id pattern for Connect: literal parts, `*` (any run of characters) and tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Star,
    Token(Token),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Connect,
    Publish,
    Subscribe,
}

#[derive(Debug)]
struct Grant {
    action: Action,
    client_ids: Vec<Vec<Part>>,
    topics: Vec<Vec<Seg>>,
}

#[derive(Debug, Default)]
struct Principals {
    client_ids: Vec<String>,
    usernames: Vec<String>,
    attributes: Vec<BTreeMap<String, String>>,
}

#[derive(Debug)]
struct Rule {
    principals: Principals,
    grants: Vec<Grant>,
    keys: Vec<KeyGrant>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Authorization {
    rules: Vec<Rule>,
    /// `cache: Enabled` (the default): connections may remember decisions (see `cache.rs`).
    cache: bool,
}

impl Authorization {
    /// Compile a `BrokerAuthorization` spec, reporting every problem with its field path.
    pub fn from_spec(spec: &Value) -> Result<Self, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let base = "spec.authorizationPolicies";
        let policies = spec.get("authorizationPolicies");
        if let Some(p) = policies.and_then(Value::as_object) {
            for key in p
                .keys()
                .filter(|k| !matches!(k.as_str(), "cache" | "rules"))
            {
                errors.push(err(
                    &format!("{base}.{key}"),
                    "unknown field; expected cache or rules",
                ));
            }
        } else {
            errors.push(err(
                base,
                "missing; a BrokerAuthorization needs authorizationPolicies.rules",
            ));
        }
        let cache = match policies.and_then(|p| p.get("cache")) {
            None => true,
            Some(v) if v == "Enabled" => true,
            Some(v) if v == "Disabled" => false,
            Some(_) => {
                errors.push(err(
                    &format!("{base}.cache"),
                    "expected Enabled or Disabled",
                ));
                true
            }
        };
        let mut rules = Vec::new();
        let list = policies
            .and_then(|p| p.get("rules"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, r) in list.iter().enumerate() {
            let at = format!("{base}.rules[{i}]");
            match rule(r, &at) {
                Ok(rule) => rules.push(rule),
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(Self { rules, cache })
        } else {
            Err(errors)
        }
    }

    /// Whether connections may cache this policy's decisions.
    pub fn cache_enabled(&self) -> bool {
        self.cache
    }

    /// May this client connect with its client id?
    pub fn allows_connect(&self, p: &Principal) -> bool {
        self.grants(p, Action::Connect).any(|g| {
            g.client_ids.is_empty() || g.client_ids.iter().any(|pat| glob(pat, &p.client_id, p))
        })
    }

    /// May this client publish to `topic`?
    pub fn allows_publish(&self, p: &Principal, topic: &str) -> bool {
        let levels: Vec<&str> = topic.split('/').collect();
        self.grants(p, Action::Publish)
            .any(|g| g.topics.iter().any(|pat| matches_topic(pat, &levels, p)))
    }

    /// May this client subscribe to `filter` (the filter proper, without `$share/group/`)?
    /// Every topic the filter can match must be granted.
    pub fn allows_subscribe(&self, p: &Principal, filter: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        self.grants(p, Action::Subscribe)
            .any(|g| g.topics.iter().any(|pat| covers(pat, &levels, p)))
    }

    /// May this client read or write the state store key `key`? Allow-only, like topics:
    /// some rule naming the principal must grant the access to a pattern matching the key.
    pub fn allows_key(&self, p: &Principal, access: KeyAccess, key: &[u8]) -> bool {
        self.rules
            .iter()
            .filter(|r| r.principals.matches(p))
            .flat_map(|r| r.keys.iter())
            .any(|g| g.allows(p, access, key))
    }

    fn grants<'a>(
        &'a self,
        p: &'a Principal,
        action: Action,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.principals.matches(p))
            .flat_map(|r| r.grants.iter())
            .filter(move |g| g.action == action)
    }
}

impl Principals {
    fn matches(&self, p: &Principal) -> bool {
        self.client_ids.iter().any(|id| **id == *p.client_id)
            || p.username
                .as_ref()
                .is_some_and(|u| self.usernames.iter().any(|n| **n == **u))
            || self.attributes.iter().any(|set| {
                !set.is_empty() && set.iter().all(|(k, v)| p.attributes.get(k) == Some(v))
            })
    }
}

pub(super) fn value<'a>(t: &Token, p: &'a Principal) -> Option<&'a str> {
    match t {
        Token::ClientId => Some(&p.client_id),
        Token::Username => p.username.as_deref(),
        Token::Attribute(name) => p.attributes.get(name).map(String::as_str),
    }
}

/// Does the topic name match the pattern?
fn matches_topic(pat: &[Seg], levels: &[&str], p: &Principal) -> bool {
    match (pat.split_first(), levels.split_first()) {
        (Some((Seg::Hash, _)), _) => true,
        (None, None) => true,
        (Some((seg, rest)), Some((level, more))) => {
            let ok = match seg {
                Seg::Lit(l) => l == level,
                Seg::Plus => true,
                Seg::Token(t) => value(t, p) == Some(*level),
                Seg::Hash => true,
            };
            ok && matches_topic(rest, more, p)
        }
        _ => false,
    }
}

/// Does the pattern cover every topic the requested filter can match?
fn covers(pat: &[Seg], levels: &[&str], p: &Principal) -> bool {
    match (pat.split_first(), levels.split_first()) {
        (Some((Seg::Hash, _)), _) => true,
        (None, None) => true,
        (Some((seg, rest)), Some((level, more))) => {
            let ok = match seg {
                Seg::Plus => *level != "#",
                // A literal or a substituted value covers only that same literal segment.
                Seg::Lit(l) => l == level,
                Seg::Token(t) => !matches!(*level, "+" | "#") && value(t, p) == Some(*level),
                Seg::Hash => true,
            };
            ok && covers(rest, more, p)
        }
        _ => false,
    }
}

/// Match a client id against a Connect pattern; only the pattern's own `*` is a wildcard.
fn glob(pat: &[Part], text: &str, p: &Principal) -> bool {
    match pat.split_first() {
        None => text.is_empty(),
        Some((Part::Star, rest)) => (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .any(|i| glob(rest, &text[i..], p)),
        Some((Part::Lit(l), rest)) => text
            .strip_prefix(l.as_str())
            .is_some_and(|t| glob(rest, t, p)),
        Some((Part::Token(t), rest)) => {
            value(t, p).is_some_and(|v| text.strip_prefix(v).is_some_and(|t| glob(rest, t, p)))
        }
    }
}

fn rule(r: &Value, at: &str) -> Result<Rule, Vec<PolicyError>> {
    let mut errors = Vec::new();
    let Some(obj) = r.as_object() else {
        return Err(vec![err(at, "expected a mapping")]);
    };
    for key in obj.keys().filter(|k| {
        !matches!(
            k.as_str(),
            "principals" | "brokerResources" | "stateStoreResources"
        )
    }) {
        errors.push(err(
            &format!("{at}.{key}"),
            "unknown field; expected principals, brokerResources or stateStoreResources",
        ));
    }
    let mut principals = Principals::default();
    let pat = format!("{at}.principals");
    match obj.get("principals").and_then(Value::as_object) {
        None => errors.push(err(
            &pat,
            "missing; name clientIds, usernames or attributes",
        )),
        Some(p) => {
            for (key, v) in p {
                let f = format!("{pat}.{key}");
                match key.as_str() {
                    "clientIds" => principals.client_ids = strings(v, &f, &mut errors),
                    "usernames" => principals.usernames = strings(v, &f, &mut errors),
                    "attributes" => match v.as_array() {
                        Some(sets) => {
                            for (j, set) in sets.iter().enumerate() {
                                let mut m = BTreeMap::new();
                                match set.as_object() {
                                    Some(o) => {
                                        for (k, v) in o {
                                            match v.as_str() {
                                                Some(s) => {
                                                    m.insert(k.clone(), s.to_owned());
                                                }
                                                None => errors.push(err(
                                                    &format!("{f}[{j}].{k}"),
                                                    "expected a string",
                                                )),
                                            }
                                        }
                                    }
                                    None => errors.push(err(
                                        &format!("{f}[{j}]"),
                                        "expected a mapping of attribute to value",
                                    )),
                                }
                                principals.attributes.push(m);
                            }
                        }
                        None => errors.push(err(&f, "expected a list of attribute mappings")),
                    },
                    _ => errors.push(err(
                        &f,
                        "unknown field; expected clientIds, usernames or attributes",
                    )),
                }
            }
        }
    }
    let mut grants = Vec::new();
    let list = obj
        .get("brokerResources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (j, g) in list.iter().enumerate() {
        let f = format!("{at}.brokerResources[{j}]");
        if let Some(grant) = grant(g, &f, &mut errors) {
            grants.push(grant);
        }
    }
    let mut keys = Vec::new();
    let list = obj
        .get("stateStoreResources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (j, g) in list.iter().enumerate() {
        let f = format!("{at}.stateStoreResources[{j}]");
        if let Some(grant) = key_grant(g, &f, &mut errors) {
            keys.push(grant);
        }
    }
    if errors.is_empty() {
        Ok(Rule {
            principals,
            grants,
            keys,
        })
    } else {
        Err(errors)
    }
}

fn grant(g: &Value, f: &str, errors: &mut Vec<PolicyError>) -> Option<Grant> {
    let Some(obj) = g.as_object() else {
        errors.push(err(
            f,
            "expected a mapping with method and topics or clientIds",
        ));
        return None;
    };
    let action = match obj.get("method").and_then(Value::as_str) {
        Some("Connect") => Action::Connect,
        Some("Publish") => Action::Publish,
        Some("Subscribe") => Action::Subscribe,
        other => {
            errors.push(err(
                &format!("{f}.method"),
                format!("{other:?} is not one of Connect, Publish, Subscribe"),
            ));
            return None;
        }
    };
    let mut out = Grant {
        action,
        client_ids: Vec::new(),
        topics: Vec::new(),
    };
    for (key, v) in obj {
        let k = format!("{f}.{key}");
        match key.as_str() {
            "method" => {}
            "clientIds" if action == Action::Connect => {
                out.client_ids = strings(v, &k, errors)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| parts(s, &format!("{k}[{i}]"), errors))
                    .collect();
            }
            "topics" if action != Action::Connect => {
                out.topics = strings(v, &k, errors)
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| segments(s, &format!("{k}[{i}]"), errors))
                    .collect();
            }
            "clientIds" => errors.push(err(&k, "clientIds apply to method Connect only")),
            "topics" => errors.push(err(&k, "topics apply to methods Publish and Subscribe")),
            _ => errors.push(err(
                &k,
                "unknown field; expected method, clientIds or topics",
            )),
        }
    }
    Some(out)
}

fn strings(v: &Value, f: &str, errors: &mut Vec<PolicyError>) -> Vec<String> {
    match v.as_array() {
        Some(a) => a
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.as_str() {
                Some(s) => Some(s.to_owned()),
                None => {
                    errors.push(err(&format!("{f}[{i}]"), "expected a string"));
                    None
                }
            })
            .collect(),
        None => {
            errors.push(err(f, "expected a list of strings"));
            Vec::new()
        }
    }
}

pub(super) fn token(s: &str) -> Option<Token> {
    let inner = s.strip_prefix("{principal.")?.strip_suffix('}')?;
    match inner {
        "clientId" => Some(Token::ClientId),
        "username" => Some(Token::Username),
        _ => inner
            .strip_prefix("attributes.")
            .filter(|n| !n.is_empty())
            .map(|n| Token::Attribute(n.to_owned())),
    }
}

fn segments(s: &str, f: &str, errors: &mut Vec<PolicyError>) -> Option<Vec<Seg>> {
    if s.is_empty() {
        errors.push(err(f, "empty topic"));
        return None;
    }
    let levels: Vec<&str> = s.split('/').collect();
    let mut out = Vec::with_capacity(levels.len());
    for (i, level) in levels.iter().enumerate() {
        let seg = match *level {
            "+" => Seg::Plus,
            "#" if i + 1 == levels.len() => Seg::Hash,
            l if l.contains('{') || l.contains('}') => match token(l) {
                Some(t) => Seg::Token(t),
                None => {
                    errors.push(err(f, format!("{l:?}: a substitution must be a whole topic segment: {{principal.clientId}}, {{principal.username}} or {{principal.attributes.NAME}}")));
                    return None;
                }
            },
            l if l.contains(['+', '#']) => {
                errors.push(err(f, format!("{s:?} is not a valid topic filter")));
                return None;
            }
            l => Seg::Lit(l.to_owned()),
        };
        out.push(seg);
    }
    Some(out)
}

fn parts(s: &str, f: &str, errors: &mut Vec<PolicyError>) -> Option<Vec<Part>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('*') {
            out.push(Part::Star);
            rest = r;
        } else if rest.starts_with('{') {
            let end = rest.find('}').map(|e| e + 1).unwrap_or(rest.len());
            match token(&rest[..end]) {
                Some(t) => out.push(Part::Token(t)),
                None => {
                    errors.push(err(
                        f,
                        format!("{:?} is not a substitution token", &rest[..end]),
                    ));
                    return None;
                }
            }
            rest = &rest[end..];
        } else {
            let end = rest.find(['*', '{']).unwrap_or(rest.len());
            out.push(Part::Lit(rest[..end].to_owned()));
            rest = &rest[end..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml_json: Value) -> Authorization {
        match Authorization::from_spec(&yaml_json) {
            Ok(a) => a,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn principal(id: &str, user: Option<&str>, attrs: &[(&str, &str)]) -> Principal {
        Principal {
            client_id: id.into(),
            username: user.map(Into::into),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn example() -> Authorization {
        policy(
            serde_json::json!({"authorizationPolicies": {"cache": "Enabled", "rules": [
            {"principals": {"clientIds": ["sensor"], "attributes": [{"building": "17", "organization": "contoso"}]},
             "brokerResources": [
                {"method": "Connect", "clientIds": ["{principal.attributes.building}*", "sensor"]},
                {"method": "Publish", "topics": ["sensors/{principal.attributes.building}/{principal.clientId}/telemetry"]},
                {"method": "Subscribe", "topics": ["commands/{principal.clientId}/#", "public/+"]}]}]}}),
        )
    }

    #[test]
    fn grants_follow_the_rules() {
        let a = example();
        let p = principal(
            "17-fan",
            None,
            &[("building", "17"), ("organization", "contoso")],
        );
        assert!(a.allows_connect(&p));
        assert!(a.allows_publish(&p, "sensors/17/17-fan/telemetry"));
        assert!(!a.allows_publish(&p, "sensors/18/17-fan/telemetry"));
        assert!(a.allows_subscribe(&p, "commands/17-fan/#"));
        assert!(a.allows_subscribe(&p, "commands/17-fan/a/+"));
        assert!(a.allows_subscribe(&p, "public/x"));
        assert!(a.allows_subscribe(&p, "public/+"));
        assert!(!a.allows_subscribe(&p, "public/#"));
        assert!(!a.allows_subscribe(&p, "commands/+/#"));
        let half = principal("17-fan", None, &[("building", "17")]);
        assert!(!a.allows_connect(&half), "attributes in one set are ANDed");
        let other = principal(
            "18-fan",
            None,
            &[("building", "18"), ("organization", "contoso")],
        );
        assert!(!a.allows_connect(&other));
    }

    #[test]
    fn substituted_values_never_widen_a_grant() {
        let a = example();
        for id in ["+", "#", "*", "?", "[a]", "a/b", "17-fan/+", ""] {
            let p = principal(id, None, &[("building", "17"), ("organization", "contoso")]);
            // The literal topic with the value in place works only when it is one segment.
            assert!(!a.allows_subscribe(&p, "commands/+/#"), "{id}");
            assert!(!a.allows_subscribe(&p, "commands/#"), "{id}");
            assert!(!a.allows_publish(&p, "sensors/17/other/telemetry"), "{id}");
        }
        let hash = principal(
            "#",
            None,
            &[("building", "17"), ("organization", "contoso")],
        );
        assert!(!a.allows_subscribe(&hash, "commands/#/x"));
    }

    /// In a Connect pattern only the pattern's own `*` is a wildcard; a `*` in a substituted
    /// value matches itself only.
    #[test]
    fn glob_characters_in_values_are_literal() {
        let a = policy(serde_json::json!({"authorizationPolicies": {"rules": [
            {"principals": {"usernames": ["*", "plant"]},
             "brokerResources": [{"method": "Connect", "clientIds": ["{principal.username}-*"]}]}]}}));
        assert!(a.allows_connect(&principal("plant-7", Some("plant"), &[])));
        assert!(!a.allows_connect(&principal("other-7", Some("plant"), &[])));
        assert!(a.allows_connect(&principal("*-7", Some("*"), &[])));
        assert!(!a.allows_connect(&principal("anything-7", Some("*"), &[])));
    }

    #[test]
    fn policy_errors_name_the_field() {
        let errs =
            Authorization::from_spec(&serde_json::json!({"authorizationPolicies": {"rules": [
            {"principals": {"clientIds": ["a"]}, "brokerResources": [
                {"method": "Publish", "topics": ["client-{principal.clientId}/#"]},
                {"method": "Delete"},
                {"method": "Publish", "clientIds": ["x"]}]}]}}))
            .expect_err("invalid");
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert!(
            fields.contains(&"spec.authorizationPolicies.rules[0].brokerResources[0].topics[0]"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.authorizationPolicies.rules[0].brokerResources[1].method"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"spec.authorizationPolicies.rules[0].brokerResources[2].clientIds"),
            "{fields:?}"
        );
    }
}
