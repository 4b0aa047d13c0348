//! The `Asset` kind of the device registry: its field tables and the rules inside one
//! resource (unique names, JSON configuration texts, destinations, topics, node ids). An
//! Asset names one device endpoint in `deviceRef` and lists `datasets[].dataPoints[]` and
//! `eventGroups[].events[]` with their destinations; the Device side is in `device.rs`.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::dataflow::{spec_doc, SpecDoc};
use crate::error::Sink;
use crate::listener::Ref;
use crate::resource::{crd_document, ResourceRef};
use crate::schema::{index, join, opt, req, EnumDef, Field, Schema};
use crate::yaml::Node;

pub(crate) static ASSET_DOCUMENT: [Field; 5] = crd_document(true, Schema::Object(&ASSET));

static ASSET: [Field; 30] = [
    req(
        "deviceRef",
        Schema::Object(&[
            req("deviceName", Schema::Str),
            req("endpointName", Schema::Str),
        ]),
    ),
    opt("enabled", Schema::Bool),
    opt("displayName", Schema::Str),
    opt("description", Schema::Str),
    opt("externalAssetId", Schema::Str),
    opt("manufacturer", Schema::Str),
    opt("manufacturerUri", Schema::Str),
    opt("model", Schema::Str),
    opt("productCode", Schema::Str),
    opt("hardwareRevision", Schema::Str),
    opt("softwareRevision", Schema::Str),
    opt("serialNumber", Schema::Str),
    opt("documentationUri", Schema::Str),
    opt("attributes", Schema::FreeMap),
    opt("assetTypeRefs", Schema::List(&Schema::Str)),
    opt("discoveredAssetRefs", Schema::List(&Schema::Str)),
    opt("uuid", Schema::Any),
    opt("version", Schema::Any),
    opt("lastTransitionTime", Schema::Any),
    opt("datasets", Schema::List(&Schema::Object(&DATASET))),
    opt("eventGroups", Schema::List(&Schema::Object(&EVENT_GROUP))),
    // Accepted so AIO manifests load; `read_asset` says they do not run here yet.
    opt("streams", Schema::Any),
    opt("managementGroups", Schema::Any),
    opt("defaultDatasetsConfiguration", Schema::Str),
    opt(
        "defaultDatasetsDestinations",
        Schema::List(&Schema::Object(&DESTINATION)),
    ),
    opt("defaultEventsConfiguration", Schema::Str),
    opt(
        "defaultEventsDestinations",
        Schema::List(&Schema::Object(&DESTINATION)),
    ),
    opt("defaultStreamsConfiguration", Schema::Str),
    opt("defaultStreamsDestinations", Schema::Any),
    opt("defaultManagementGroupsConfiguration", Schema::Str),
];

static DATASET: [Field; 6] = [
    req("name", Schema::Str),
    opt("dataSource", Schema::Str),
    opt("datasetConfiguration", Schema::Str),
    opt("typeRef", Schema::Str),
    req("dataPoints", Schema::List(&Schema::Object(&DATA_POINT))),
    opt("destinations", Schema::List(&Schema::Object(&DESTINATION))),
];

static DATA_POINT: [Field; 4] = [
    req("name", Schema::Str),
    req("dataSource", Schema::Str),
    opt("dataPointConfiguration", Schema::Str),
    opt("typeRef", Schema::Str),
];

static EVENT_GROUP: [Field; 6] = [
    req("name", Schema::Str),
    opt("dataSource", Schema::Str),
    opt("eventGroupConfiguration", Schema::Str),
    opt("typeRef", Schema::Str),
    req("events", Schema::List(&Schema::Object(&EVENT))),
    opt(
        "defaultDestinations",
        Schema::List(&Schema::Object(&DESTINATION)),
    ),
];

static EVENT: [Field; 5] = [
    req("name", Schema::Str),
    req("dataSource", Schema::Str),
    opt("eventConfiguration", Schema::Str),
    opt("typeRef", Schema::Str),
    opt("destinations", Schema::List(&Schema::Object(&DESTINATION))),
];

static DESTINATION: [Field; 2] = [
    req(
        "target",
        Schema::Enum(&EnumDef {
            values: &["Mqtt", "BrokerStateStore", "Storage"],
            aliases: &[],
        }),
    ),
    opt("configuration", Schema::Object(&DESTINATION_CONFIGURATION)),
];

static DESTINATION_CONFIGURATION: [Field; 6] = [
    opt("topic", Schema::StrWith(check_topic)),
    opt(
        "qos",
        Schema::Enum(&EnumDef {
            values: &["Qos0", "Qos1"],
            aliases: &[],
        }),
    ),
    opt(
        "retain",
        Schema::Enum(&EnumDef {
            values: &["Keep", "Never"],
            aliases: &[],
        }),
    ),
    opt("ttl", Schema::Int(0, u32::MAX as i64)),
    opt("key", Schema::Str),
    opt("path", Schema::Str),
];

/// What the loader needs of an Asset to check its device reference.
#[derive(Debug, Clone)]
pub(crate) struct AssetDoc {
    pub doc: SpecDoc,
    pub device_ref: Option<Ref>,
    pub endpoint_ref: Option<Ref>,
}

pub(crate) fn read_asset(
    doc: &Node,
    this: Option<ResourceRef>,
    sink: &mut Sink,
) -> Option<AssetDoc> {
    let spec = doc.get("spec")?;
    let named = |key: &str| {
        let node = spec.at(&["deviceRef", key])?;
        Some(Ref {
            name: node.as_str()?.to_owned(),
            path: format!("spec.deviceRef.{key}"),
            line: node.line,
        })
    };
    let device_ref = named("deviceName");
    let endpoint_ref = named("endpointName");
    check_configuration(
        spec,
        "defaultDatasetsConfiguration",
        "spec",
        &DATASET_KEYS,
        sink,
    );
    check_configuration(
        spec,
        "defaultEventsConfiguration",
        "spec",
        &EVENT_KEYS,
        sink,
    );
    check_destinations(spec, "defaultDatasetsDestinations", "spec", sink);
    check_destinations(spec, "defaultEventsDestinations", "spec", sink);
    for field in ["streams", "managementGroups"] {
        if let Some(entry) = spec.entry(field) {
            if !entry.value.as_seq().is_empty() {
                sink.error(
                    &join("spec", field),
                    Some(entry.key_line),
                    format!(
                        "{field} are not supported by this version of Edgeplane yet; remove them"
                    ),
                );
            }
        }
    }
    let datasets = spec.get("datasets").map(Node::as_seq).unwrap_or_default();
    let mut names = BTreeSet::new();
    for (i, dataset) in datasets.iter().enumerate() {
        let path = index("spec.datasets", i);
        unique_name(dataset, &path, "dataset", &mut names, sink);
        check_configuration(dataset, "datasetConfiguration", &path, &DATASET_KEYS, sink);
        check_destinations(dataset, "destinations", &path, sink);
        let mut point_names = BTreeSet::new();
        let points = dataset
            .get("dataPoints")
            .map(Node::as_seq)
            .unwrap_or_default();
        for (j, point) in points.iter().enumerate() {
            let point_path = index(&join(&path, "dataPoints"), j);
            unique_name(point, &point_path, "data point", &mut point_names, sink);
            check_configuration(
                point,
                "dataPointConfiguration",
                &point_path,
                &POINT_KEYS,
                sink,
            );
            if let Some(node) = point.get("dataSource") {
                if let Some(source) = node.as_str() {
                    if let Err(why) = check_node_id(source) {
                        sink.error(&join(&point_path, "dataSource"), Some(node.line), why);
                    }
                }
            }
        }
    }
    let groups = spec
        .get("eventGroups")
        .map(Node::as_seq)
        .unwrap_or_default();
    let mut group_names = BTreeSet::new();
    for (i, group) in groups.iter().enumerate() {
        let path = index("spec.eventGroups", i);
        unique_name(group, &path, "event group", &mut group_names, sink);
        check_destinations(group, "defaultDestinations", &path, sink);
        let mut event_names = BTreeSet::new();
        let events = group.get("events").map(Node::as_seq).unwrap_or_default();
        for (j, event) in events.iter().enumerate() {
            let event_path = index(&join(&path, "events"), j);
            unique_name(event, &event_path, "event", &mut event_names, sink);
            check_configuration(event, "eventConfiguration", &event_path, &EVENT_KEYS, sink);
            check_destinations(event, "destinations", &event_path, sink);
            if let Some(node) = event.get("dataSource") {
                if let Some(source) = node.as_str() {
                    if let Err(why) = check_node_id(source) {
                        sink.error(&join(&event_path, "dataSource"), Some(node.line), why);
                    }
                }
            }
        }
    }
    Some(AssetDoc {
        doc: spec_doc(doc, this?),
        device_ref,
        endpoint_ref,
    })
}

fn unique_name(item: &Node, path: &str, what: &str, seen: &mut BTreeSet<String>, sink: &mut Sink) {
    let Some(node) = item.get("name") else {
        return;
    };
    let Some(name) = node.as_str() else {
        return;
    };
    if name.is_empty() {
        sink.error(
            &join(path, "name"),
            Some(node.line),
            format!("empty {what} name; give it a name"),
        );
    } else if !seen.insert(name.to_owned()) {
        sink.error(
            &join(path, "name"),
            Some(node.line),
            format!("duplicate {what} name `{name}`; give each {what} its own name"),
        );
    }
}

/// Keys of `datasetConfiguration` / `defaultDatasetsConfiguration` (milliseconds, counts).
static DATASET_KEYS: [(&str, i64, i64); 4] = [
    ("publishingInterval", 1, 86_400_000),
    ("samplingInterval", 0, 86_400_000),
    ("queueSize", 1, 100_000),
    ("keyFrameCount", -1, 1_000_000),
];
/// Keys of `dataPointConfiguration`.
static POINT_KEYS: [(&str, i64, i64); 2] = [
    ("samplingInterval", 0, 86_400_000),
    ("queueSize", 1, 100_000),
];
/// Keys of `eventConfiguration` / `defaultEventsConfiguration`.
static EVENT_KEYS: [(&str, i64, i64); 2] = [
    ("publishingInterval", 1, 86_400_000),
    ("queueSize", 1, 100_000),
];

/// Check a JSON configuration text at `parent.key` against the allowed integer keys.
fn check_configuration(
    parent: &Node,
    key: &str,
    parent_path: &str,
    keys: &[(&str, i64, i64)],
    sink: &mut Sink,
) {
    let Some(node) = parent.get(key) else {
        return;
    };
    let Some(text) = node.as_str() else {
        return;
    };
    let path = join(parent_path, key);
    let value: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            sink.error(
                &path,
                Some(node.line),
                format!("not valid JSON ({e}); write a JSON object in quotes"),
            );
            return;
        }
    };
    let Some(object) = value.as_object() else {
        sink.error(
            &path,
            Some(node.line),
            "expected a JSON object such as {\"samplingInterval\": 500}",
        );
        return;
    };
    let names: Vec<&str> = keys.iter().map(|(k, _, _)| *k).collect();
    for (k, v) in object {
        let Some((_, min, max)) = keys.iter().find(|(name, _, _)| name == k) else {
            sink.error(
                &path,
                Some(node.line),
                format!("unknown setting `{k}`; known: {}", names.join(", ")),
            );
            continue;
        };
        if !v.as_i64().is_some_and(|n| (*min..=*max).contains(&n)) {
            sink.error(
                &path,
                Some(node.line),
                format!("`{k}` is {v}; use an integer from {min} to {max}"),
            );
        }
    }
}

fn check_destinations(parent: &Node, key: &str, parent_path: &str, sink: &mut Sink) {
    let list = parent.get(key).map(Node::as_seq).unwrap_or_default();
    let path = join(parent_path, key);
    if list.len() > 1 {
        sink.error(
            &path,
            parent.get(key).map(|n| n.line),
            "at most one destination is supported; remove the others",
        );
    }
    for (i, destination) in list.iter().enumerate() {
        let item = index(&path, i);
        let target = destination.get("target").and_then(Node::as_str);
        let configuration = destination.get("configuration");
        match target {
            Some("BrokerStateStore") if configuration.and_then(|c| c.get("key")).is_none() => {
                sink.error(
                    &join(&join(&item, "configuration"), "key"),
                    Some(destination.line),
                    "target BrokerStateStore needs `configuration: {key: NAME}`",
                );
            }
            Some("Storage") => sink.error(
                &join(&item, "target"),
                destination.get("target").map(|n| n.line),
                "target Storage is not supported by this version of Edgeplane yet; use Mqtt or \
                 BrokerStateStore",
            ),
            _ => {}
        }
    }
}

fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty topic; name one such as `factory/data/oven`".into());
    }
    if topic.contains(['+', '#']) {
        return Err(format!("topic `{topic}` has a wildcard; name one topic"));
    }
    Ok(())
}

/// Node ids the connector understands: `ns=<index>;<id>`, `nsu=<uri>;<id>` or a bare
/// namespace-0 id (`i=2258`), where `<id>` is `s=`, `i=`, `g=` or `b=`.
pub(crate) fn check_node_id(text: &str) -> Result<(), String> {
    let id = if let Some(rest) = text.strip_prefix("nsu=") {
        rest.split_once(';').map(|(_, id)| id)
    } else if let Some(rest) = text.strip_prefix("ns=") {
        rest.split_once(';')
            .filter(|(n, _)| n.parse::<u16>().is_ok())
            .map(|(_, id)| id)
    } else {
        Some(text)
    };
    let ok = id.is_some_and(|id| {
        ["s=", "i=", "g=", "b="].iter().any(|p| id.starts_with(p))
            && (!id.starts_with("i=") || id[2..].parse::<u32>().is_ok())
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{text}` is not a node id; write it as ns=2;s=Name, nsu=<namespace uri>;s=Name \
             or i=<number>"
        ))
    }
}
