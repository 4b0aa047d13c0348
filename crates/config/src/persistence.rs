//! `Broker.spec.persistence`: the field tables of AIO's disk persistence section and the
//! rules between its fields.
//!
//! Each policy (retain, subscriber queues, state store) has a `mode` of `None | All |
//! Custom`; its settings block belongs with `Custom` only, and `Custom` needs one.
//! [`read`] turns a checked section into [`Persistence`], which the broker's store applies
//! when it runs with a data folder.

use crate::error::Sink;
use crate::schema::{index, opt, req, EnumDef, Field, Schema, OPERATIONAL_MODE};
use crate::yaml::Node;

pub(crate) static PERSISTENCE: [Field; 7] = [
    req("maxSize", Schema::StrWith(check_quantity)),
    opt("persistentVolumeClaimSpec", Schema::FreeMap),
    opt("encryption", Schema::Object(&MODE_ONLY)),
    opt("retain", Schema::Object(&RETAIN)),
    opt("subscriberQueue", Schema::Object(&SUBSCRIBER_QUEUE)),
    opt("stateStore", Schema::Object(&STATE_STORE)),
    opt("dynamicSettings", Schema::Object(&DYNAMIC_SETTINGS)),
];

static MODE_ONLY: [Field; 1] = [req("mode", Schema::Enum(&OPERATIONAL_MODE))];

static POLICY_MODE: EnumDef = EnumDef {
    values: &["None", "All", "Custom"],
    aliases: &[],
};

static RETAIN: [Field; 2] = [
    req("mode", Schema::Enum(&POLICY_MODE)),
    opt("retainSettings", Schema::Object(&RETAIN_SETTINGS)),
];

static RETAIN_SETTINGS: [Field; 2] = [
    opt("topics", Schema::List(&Schema::Str)),
    opt("dynamic", Schema::Object(&MODE_ONLY)),
];

static SUBSCRIBER_QUEUE: [Field; 2] = [
    req("mode", Schema::Enum(&POLICY_MODE)),
    opt(
        "subscriberQueueSettings",
        Schema::Object(&SUBSCRIBER_QUEUE_SETTINGS),
    ),
];

static SUBSCRIBER_QUEUE_SETTINGS: [Field; 3] = [
    opt("subscriberClientIds", Schema::List(&Schema::Str)),
    opt("topics", Schema::List(&Schema::Str)),
    opt("dynamic", Schema::Object(&MODE_ONLY)),
];

static STATE_STORE: [Field; 2] = [
    req("mode", Schema::Enum(&POLICY_MODE)),
    opt("stateStoreSettings", Schema::Object(&STATE_STORE_SETTINGS)),
];

static STATE_STORE_SETTINGS: [Field; 2] = [
    opt(
        "stateStoreResources",
        Schema::List(&Schema::Object(&STATE_STORE_RESOURCE)),
    ),
    opt("dynamic", Schema::Object(&MODE_ONLY)),
];

static STATE_STORE_RESOURCE: [Field; 2] = [
    req(
        "keyType",
        Schema::Enum(&EnumDef {
            values: &["Pattern", "String", "Binary"],
            aliases: &[],
        }),
    ),
    req("keys", Schema::List(&Schema::Str)),
];

static DYNAMIC_SETTINGS: [Field; 2] = [
    req("userPropertyKey", Schema::Str),
    req("userPropertyValue", Schema::Str),
];

/// Policy name and the settings block that goes with its `Custom` mode.
const POLICIES: [(&str, &str); 3] = [
    ("retain", "retainSettings"),
    ("subscriberQueue", "subscriberQueueSettings"),
    ("stateStore", "stateStoreSettings"),
];

/// Check the rules between persistence fields of a Broker `spec`.
pub(crate) fn check(spec: &Node, sink: &mut Sink) {
    let Some(persistence) = spec.get("persistence") else {
        return;
    };
    for (policy, settings) in POLICIES {
        let Some(node) = persistence.get(policy) else {
            continue;
        };
        let path = format!("spec.persistence.{policy}");
        let custom = node.get("mode").and_then(Node::as_str) == Some("Custom");
        match (custom, node.entry(settings)) {
            (true, None) => sink.error(
                &format!("{path}.{settings}"),
                Some(node.line),
                format!("mode Custom needs `{settings}`; add it or use mode All or None"),
            ),
            (false, Some(entry)) => sink.error(
                &format!("{path}.{settings}"),
                Some(entry.key_line),
                format!("`{settings}` applies only to mode Custom; remove it or set mode: Custom"),
            ),
            _ => {}
        }
    }
    check_access_modes(persistence, sink);
    check_state_store_keys(persistence, sink);
}

/// AIO requires the persistence volume to be `ReadWriteOncePod` (one writer at a time).
fn check_access_modes(persistence: &Node, sink: &mut Sink) {
    let Some(modes) = persistence.at(&["persistentVolumeClaimSpec", "accessModes"]) else {
        return;
    };
    let path = "spec.persistence.persistentVolumeClaimSpec.accessModes";
    for (i, mode) in modes.as_seq().iter().enumerate() {
        if mode.as_str() != Some("ReadWriteOncePod") {
            sink.error(
                &index(path, i),
                Some(mode.line),
                "the persistence volume must be ReadWriteOncePod; use that access mode only",
            );
        }
    }
}

/// A Kubernetes-style size: digits, then optionally a unit `K M G T P E` with an optional
/// binary `i` (`10G`, `500Mi`).
fn check_quantity(text: &str) -> Result<(), String> {
    let unit_start = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(unit_start);
    let unit_ok = matches!(
        unit,
        "" | "K" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"
    );
    if !digits.is_empty() && unit_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid size `{text}`; use digits and an optional unit such as 10G or 500Mi"
        ))
    }
}

/// What to persist, from `spec.persistence` (typed; the field tables checked it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Persistence {
    /// `maxSize` in bytes.
    pub max_size: Option<u64>,
    pub retain: PersistPolicy,
    pub subscriber_queue: PersistPolicy,
    pub state_store: PersistPolicy,
    /// The user property by which a v5 client asks for persistence (`aio-persistence=true`).
    pub dynamic_key: String,
    pub dynamic_value: String,
}

impl Default for Persistence {
    /// Everything durable: what a data folder without a `persistence` section means.
    fn default() -> Self {
        let all = PersistPolicy {
            mode: PersistMode::All,
            topics: Vec::new(),
            client_ids: Vec::new(),
            keys: Vec::new(),
            dynamic: true,
        };
        Self {
            max_size: None,
            retain: all.clone(),
            subscriber_queue: all.clone(),
            state_store: all,
            dynamic_key: "aio-persistence".into(),
            dynamic_value: "true".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum PersistMode {
    None,
    All,
    Custom,
}

/// One policy: its mode, the `Custom` selection, and whether clients may opt in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PersistPolicy {
    pub mode: PersistMode,
    /// Topic filters (`retainSettings.topics`, `subscriberQueueSettings.topics`).
    pub topics: Vec<String>,
    /// Client id patterns with `*` (`subscriberQueueSettings.subscriberClientIds`).
    pub client_ids: Vec<String>,
    /// State store keys (`stateStoreSettings.stateStoreResources[]`, by `keyType`).
    pub keys: Vec<StateStoreKey>,
    /// `dynamic.mode: Enabled` (the default): the dynamic user property opts in.
    pub dynamic: bool,
}

/// One key of a `stateStoreResources` entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum StateStoreKey {
    /// `keyType: Pattern`: a glob (`*`, `?`, `[a-z]`).
    Pattern(String),
    /// `keyType: String`: this UTF-8 key exactly.
    String(String),
    /// `keyType: Binary`: this key's raw bytes (given as base64).
    Binary(Vec<u8>),
}

impl StateStoreKey {
    fn parse(key_type: &str, text: &str) -> Option<Self> {
        use base64::Engine as _;
        match key_type {
            "String" => Some(StateStoreKey::String(text.to_owned())),
            "Binary" => base64::engine::general_purpose::STANDARD
                .decode(text)
                .ok()
                .filter(|raw| !raw.is_empty())
                .map(StateStoreKey::Binary),
            _ => Some(StateStoreKey::Pattern(text.to_owned())),
        }
    }
}

/// `keyType: Binary` keys must be base64.
fn check_state_store_keys(persistence: &Node, sink: &mut Sink) {
    let path = "spec.persistence.stateStore.stateStoreSettings.stateStoreResources";
    let Some(list) = persistence.at(&["stateStore", "stateStoreSettings", "stateStoreResources"])
    else {
        return;
    };
    for (i, resource) in list.as_seq().iter().enumerate() {
        let Some(key_type) = resource.get("keyType").and_then(Node::as_str) else {
            continue;
        };
        let Some(keys) = resource.get("keys") else {
            continue;
        };
        for (j, key) in keys.as_seq().iter().enumerate() {
            if let Some(text) = key.as_str() {
                if StateStoreKey::parse(key_type, text).is_none() {
                    sink.error(
                        &index(&format!("{}.keys", index(path, i)), j),
                        Some(key.line),
                        "keyType Binary needs the base64 (standard alphabet) of the key's bytes",
                    );
                }
            }
        }
    }
}

/// Read a Broker `spec.persistence` section; `None` when there is none.
pub(crate) fn read(spec: &Node) -> Option<Persistence> {
    let p = spec.get("persistence")?;
    let defaults = Persistence::default();
    let strings = |n: Option<&Node>| -> Vec<String> {
        n.map(|n| {
            n.as_seq()
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    };
    let policy = |name: &str, settings: &str| -> PersistPolicy {
        // A policy left out keeps everything, like a data folder without the section.
        let Some(node) = p.get(name) else {
            return Persistence::default().retain;
        };
        let mode = match node.get("mode").and_then(Node::as_str) {
            Some("None") => PersistMode::None,
            Some("Custom") => PersistMode::Custom,
            _ => PersistMode::All,
        };
        let s = node.get(settings);
        let keys = s
            .and_then(|s| s.get("stateStoreResources"))
            .map(|r| {
                r.as_seq()
                    .iter()
                    .flat_map(|res| {
                        let key_type = res
                            .get("keyType")
                            .and_then(Node::as_str)
                            .unwrap_or("Pattern");
                        strings(res.get("keys"))
                            .into_iter()
                            .filter_map(move |k| StateStoreKey::parse(key_type, &k))
                    })
                    .collect()
            })
            .unwrap_or_default();
        PersistPolicy {
            mode,
            topics: strings(s.and_then(|s| s.get("topics"))),
            client_ids: strings(s.and_then(|s| s.get("subscriberClientIds"))),
            keys,
            dynamic: s
                .and_then(|s| s.at(&["dynamic", "mode"]))
                .and_then(Node::as_str)
                != Some("Disabled"),
        }
    };
    Some(Persistence {
        max_size: p.get("maxSize").and_then(Node::as_str).and_then(quantity),
        retain: policy("retain", "retainSettings"),
        subscriber_queue: policy("subscriberQueue", "subscriberQueueSettings"),
        state_store: policy("stateStore", "stateStoreSettings"),
        dynamic_key: p
            .at(&["dynamicSettings", "userPropertyKey"])
            .and_then(Node::as_str)
            .map_or(defaults.dynamic_key, str::to_owned),
        dynamic_value: p
            .at(&["dynamicSettings", "userPropertyValue"])
            .and_then(Node::as_str)
            .map_or(defaults.dynamic_value, str::to_owned),
    })
}

/// Bytes of a Kubernetes-style size checked by [`check_quantity`].
fn quantity(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let power = |base: u64, exp: u32| base.checked_pow(exp);
    let mult = match unit {
        "" => 1,
        "K" | "M" | "G" | "T" | "P" | "E" => power(1000, "KMGTPE".find(unit)? as u32 + 1)?,
        _ => power(1024, "KMGTPE".find(&unit[..1])? as u32 + 1)?,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for good in ["1024", "10G", "500Mi"] {
            assert!(check_quantity(good).is_ok(), "{good}");
        }
        for bad in ["", "G", "10GB", "1.5G", "10 G"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
        assert_eq!(quantity("500Mi"), Some(500 * 1024 * 1024));
        assert_eq!(quantity("10G"), Some(10_000_000_000));
        assert_eq!(quantity("1024"), Some(1024));
    }
}
