//! `Broker.spec.persistence`: the field tables of AIO's disk persistence section and the
//! rules between its fields.
//!
//! Persistence is accepted and validated so AIO manifests load; the broker's storage layer
//! reads it from `BrokerSettings::raw_spec` when it acts on it. Each policy (retain,
//! subscriber queues, state store) has a `mode` of `None | All | Custom`; its settings
//! block belongs with `Custom` only, and `Custom` needs one.

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
    }
}
