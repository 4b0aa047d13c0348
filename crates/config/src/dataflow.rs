//! The `DataflowProfile`, `DataflowEndpoint` and `Dataflow` kinds: their field tables, the
//! rules inside one resource, and what they leave for the dataflow runtime.
//!
//! A document enters checked against its kind's table (field names as in Azure IoT
//! Operations' `connectivity.iotoperations.azure.com/v1`). [`read_endpoint`],
//! [`read_dataflow`] and [`read_profile`] then check what the tables cannot say (the
//! `<type>Settings` block that matches `endpointType`, one Source and one Destination per
//! dataflow, wildcards in destination topics) and keep each resource as a [`SpecDoc`]: its
//! spec as JSON plus the line of every field, so the dataflow crate, which compiles the
//! expressions, can report its own errors at the right file, resource, field and line.
//! References between resources (endpoints, profiles, the local broker at one end) are
//! checked by the loader once the whole folder is read.
//!
//! Our extensions, marked in the tables: `mqttSettings.authentication.method:
//! UsernamePassword` with `usernamePasswordSettings.secretRef` (a Secret with `username`
//! and `password`), `mqttSettings.tls.insecureSkipVerify` is *not* offered; and
//! `localStorageSettings.path` (a folder on this machine, where Kubernetes would mount the
//! `persistentVolumeClaimRef`) and `localStorageSettings.format`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Sink;
use crate::listener::Ref;
use crate::resource::{crd_document, ResourceRef};
use crate::schema::{index, join, opt, req, EnumDef, Field, Schema, OPERATIONAL_MODE};
use crate::yaml::{Node, Value};

/// The endpoint every Dataflow may use without declaring it: the local broker, reached
/// through an in-process link.
pub const DEFAULT_ENDPOINT: &str = "default";
/// The profile every Dataflow may use without declaring it (one instance).
pub const DEFAULT_PROFILE: &str = "default";
/// Host prefix that names the local broker in an Mqtt endpoint, as in AIO manifests
/// (`aio-broker:18883`).
pub const LOCAL_BROKER_HOST: &str = "aio-broker";

/// A resource kept for a later stage: its spec as JSON and where each field was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecDoc {
    pub resource: ResourceRef,
    /// `spec` as JSON (null when absent).
    pub spec: serde_json::Value,
    /// Field path (`spec.operations[1].builtInTransformationSettings.map[0].expression`)
    /// to the 1-based line of its value.
    #[serde(skip)]
    pub lines: BTreeMap<String, usize>,
}

impl SpecDoc {
    /// The line of `path`, or of its nearest parent that has one, or of the document.
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => return self.resource.line,
            }
        }
    }
}

/// Endpoint types this build can run.
pub const SUPPORTED_ENDPOINT_TYPES: [&str; 2] = ["Mqtt", "LocalStorage"];

pub(crate) static PROFILE_DOCUMENT: [Field; 5] = crd_document(false, Schema::Object(&PROFILE));
pub(crate) static ENDPOINT_DOCUMENT: [Field; 5] = crd_document(true, Schema::Object(&ENDPOINT));
pub(crate) static DATAFLOW_DOCUMENT: [Field; 5] = crd_document(true, Schema::Object(&DATAFLOW));

static PROFILE: [Field; 2] = [
    opt("instanceCount", Schema::Int(1, 16)),
    opt("diagnostics", Schema::FreeMap),
];

static ENDPOINT_TYPE: EnumDef = EnumDef {
    values: &[
        "Mqtt",
        "Kafka",
        "LocalStorage",
        "DataLakeStorage",
        "FabricOneLake",
        "DataExplorer",
        "OpenTelemetry",
    ],
    aliases: &[],
};

static ENDPOINT: [Field; 9] = [
    req("endpointType", Schema::Enum(&ENDPOINT_TYPE)),
    opt(
        "hostType",
        Schema::Enum(&EnumDef {
            values: &[
                "LocalBroker",
                "EventGrid",
                "CustomMqtt",
                "Eventhub",
                "CustomKafka",
                "FabricRT",
            ],
            aliases: &[],
        }),
    ),
    opt("mqttSettings", Schema::Object(&MQTT)),
    opt("localStorageSettings", Schema::Object(&LOCAL_STORAGE)),
    // Accepted so AIO manifests load; `read_endpoint` says they cannot run here yet.
    opt("kafkaSettings", Schema::FreeMap),
    opt("dataLakeStorageSettings", Schema::FreeMap),
    opt("fabricOneLakeSettings", Schema::FreeMap),
    opt("dataExplorerSettings", Schema::FreeMap),
    opt("openTelemetrySettings", Schema::FreeMap),
];

static MQTT: [Field; 12] = [
    opt("host", Schema::StrWith(check_host)),
    opt(
        "protocol",
        Schema::Enum(&EnumDef {
            values: &["Mqtt", "WebSockets"],
            aliases: &[("Websockets", "WebSockets")],
        }),
    ),
    opt("authentication", Schema::Object(&MQTT_AUTH)),
    opt("clientIdPrefix", Schema::StrWith(check_client_id_prefix)),
    opt("qos", Schema::Int(0, 1)),
    opt(
        "retain",
        Schema::Enum(&EnumDef {
            values: &["Keep", "Never"],
            aliases: &[],
        }),
    ),
    opt("sessionExpirySeconds", Schema::Int(0, u32::MAX as i64)),
    opt("keepAliveSeconds", Schema::Int(0, 65_535)),
    opt("maxInflightMessages", Schema::Int(1, 65_535)),
    opt("tls", Schema::Object(&MQTT_TLS)),
    opt(
        "cloudEventAttributes",
        Schema::Enum(&EnumDef {
            values: &["Propagate", "CreateOrRemap"],
            aliases: &[],
        }),
    ),
    opt("cloudEventAttributesSettings", Schema::FreeMap),
];

static MQTT_AUTH: [Field; 6] = [
    req(
        "method",
        Schema::Enum(&EnumDef {
            values: &[
                "Anonymous",
                "X509Certificate",
                "UsernamePassword",
                "ServiceAccountToken",
                "SystemAssignedManagedIdentity",
                "UserAssignedManagedIdentity",
            ],
            aliases: &[],
        }),
    ),
    opt("anonymousSettings", Schema::FreeMap),
    opt(
        "x509CertificateSettings",
        Schema::Object(&[req("secretRef", Schema::Str)]),
    ),
    // Edgeplane extension: a Secret with `username` and `password`.
    opt(
        "usernamePasswordSettings",
        Schema::Object(&[req("secretRef", Schema::Str)]),
    ),
    opt("serviceAccountTokenSettings", Schema::FreeMap),
    opt("systemAssignedManagedIdentitySettings", Schema::FreeMap),
];

static MQTT_TLS: [Field; 2] = [
    opt("mode", Schema::Enum(&OPERATIONAL_MODE)),
    opt("trustedCaCertificateConfigMapRef", Schema::Str),
];

static LOCAL_STORAGE: [Field; 4] = [
    opt("persistentVolumeClaimRef", Schema::Str),
    // Edgeplane extension: the folder files are written to.
    opt("path", Schema::Str),
    // Edgeplane extension: the file format.
    opt(
        "format",
        Schema::Enum(&EnumDef {
            values: &["JsonLines", "Parquet"],
            aliases: &[],
        }),
    ),
    opt("batching", Schema::Object(&BATCHING)),
];

static BATCHING: [Field; 2] = [
    opt("latencySeconds", Schema::Int(0, 3600)),
    opt("maxMessages", Schema::Int(1, 10_000_000)),
];

static DATAFLOW: [Field; 4] = [
    opt("profileRef", Schema::Str),
    opt("mode", Schema::Enum(&OPERATIONAL_MODE)),
    opt("requestDiskPersistence", Schema::Enum(&OPERATIONAL_MODE)),
    req("operations", Schema::List(&Schema::Object(&OPERATION))),
];

static OPERATION_TYPE: EnumDef = EnumDef {
    values: &["Source", "BuiltInTransformation", "Destination"],
    aliases: &[],
};

static OPERATION: [Field; 5] = [
    req("operationType", Schema::Enum(&OPERATION_TYPE)),
    opt("name", Schema::Str),
    opt("sourceSettings", Schema::Object(&SOURCE)),
    opt(
        "builtInTransformationSettings",
        Schema::Object(&TRANSFORMATION),
    ),
    opt("destinationSettings", Schema::Object(&DESTINATION)),
];

static SERIALIZATION: EnumDef = EnumDef {
    values: &["Json", "Delta", "Parquet"],
    aliases: &[],
};

static SOURCE: [Field; 5] = [
    req("endpointRef", Schema::Str),
    req("dataSources", Schema::List(&Schema::Str)),
    opt("assetRef", Schema::Str),
    opt("serializationFormat", Schema::Enum(&SERIALIZATION)),
    opt("schemaRef", Schema::Str),
];

static TRANSFORMATION: [Field; 5] = [
    opt("serializationFormat", Schema::Enum(&SERIALIZATION)),
    opt("schemaRef", Schema::Str),
    opt("datasets", Schema::List(&Schema::Object(&DATASET))),
    opt("filter", Schema::List(&Schema::Object(&FILTER))),
    opt("map", Schema::List(&Schema::Object(&MAP))),
];

static DATASET: [Field; 5] = [
    req("key", Schema::Str),
    opt("description", Schema::Str),
    opt("schemaRef", Schema::Str),
    opt("inputs", Schema::List(&Schema::Str)),
    req("expression", Schema::Str),
];

static FILTER: [Field; 4] = [
    opt(
        "type",
        Schema::Enum(&EnumDef {
            values: &["Filter"],
            aliases: &[],
        }),
    ),
    opt("description", Schema::Str),
    req("inputs", Schema::List(&Schema::Str)),
    req("expression", Schema::Str),
];

static MAP: [Field; 5] = [
    opt(
        "type",
        Schema::Enum(&EnumDef {
            values: &[
                "NewProperties",
                "Rename",
                "Compute",
                "PassThrough",
                "BuiltInFunction",
            ],
            aliases: &[],
        }),
    ),
    opt("description", Schema::Str),
    req("inputs", Schema::List(&Schema::Str)),
    opt("output", Schema::Any),
    opt("expression", Schema::Str),
];

static DESTINATION: [Field; 3] = [
    req("endpointRef", Schema::Str),
    req("dataDestination", Schema::Str),
    opt("headers", Schema::List(&Schema::Object(&HEADER))),
];

static HEADER: [Field; 3] = [
    req(
        "actionType",
        Schema::Enum(&EnumDef {
            values: &["AddIfNotPresent", "AddOrReplace", "Remove"],
            aliases: &[],
        }),
    ),
    req("key", Schema::Str),
    opt("value", Schema::Str),
];

/// What the loader needs of an endpoint to check references to it.
#[derive(Debug, Clone)]
pub(crate) struct EndpointDoc {
    pub doc: SpecDoc,
    /// True for an Mqtt endpoint whose host is the local broker (or absent).
    pub local: bool,
    /// Secrets and ConfigMaps it names.
    pub secret_refs: Vec<Ref>,
    pub config_map_refs: Vec<Ref>,
}

/// What the loader needs of a dataflow to check its references.
#[derive(Debug, Clone)]
pub(crate) struct DataflowDoc {
    pub doc: SpecDoc,
    pub profile_ref: Option<Ref>,
    pub source_ref: Option<Ref>,
    pub destination_ref: Option<Ref>,
}

pub(crate) fn read_profile(doc: &Node, this: ResourceRef) -> SpecDoc {
    spec_doc(doc, this)
}

pub(crate) fn read_endpoint(
    doc: &Node,
    this: Option<ResourceRef>,
    sink: &mut Sink,
) -> Option<EndpointDoc> {
    let spec = doc.get("spec")?;
    let kind = spec.get("endpointType").and_then(Node::as_str);
    let mut local = false;
    let mut secret_refs = Vec::new();
    let mut config_map_refs = Vec::new();
    if let Some(kind) = kind {
        let expected = settings_field(kind);
        for entry in spec.as_map() {
            if entry.key.ends_with("Settings") && entry.key != expected {
                sink.error(
                    &join("spec", &entry.key),
                    Some(entry.key_line),
                    format!(
                        "`{}` does not apply to endpointType {kind}; remove it or use `{expected}`",
                        entry.key
                    ),
                );
            }
        }
        if !SUPPORTED_ENDPOINT_TYPES.contains(&kind) {
            let line = spec.get("endpointType").map(|n| n.line);
            sink.error(
                "spec.endpointType",
                line,
                format!(
                    "endpointType {kind} is not supported by this version of Edgeplane yet; \
                     use one of {}",
                    SUPPORTED_ENDPOINT_TYPES.join(", ")
                ),
            );
        }
        match kind {
            "Mqtt" => {
                let mqtt = spec.get("mqttSettings");
                local = read_mqtt(mqtt, sink, &mut secret_refs, &mut config_map_refs);
            }
            "LocalStorage" => read_local_storage(spec, sink),
            _ => {}
        }
    }
    Some(EndpointDoc {
        doc: spec_doc(doc, this?),
        local,
        secret_refs,
        config_map_refs,
    })
}

fn settings_field(endpoint_type: &str) -> String {
    let mut chars = endpoint_type.chars();
    let first = chars.next().map(|c| c.to_ascii_lowercase());
    let rest: String = chars.collect();
    format!(
        "{}{rest}Settings",
        first.map(String::from).unwrap_or_default()
    )
}

/// Check an Mqtt endpoint's settings; true when it names the local broker.
fn read_mqtt(
    mqtt: Option<&Node>,
    sink: &mut Sink,
    secrets: &mut Vec<Ref>,
    config_maps: &mut Vec<Ref>,
) -> bool {
    let Some(mqtt) = mqtt else {
        return true; // no host: the local broker
    };
    let path = "spec.mqttSettings";
    let host = mqtt.get("host").and_then(Node::as_str);
    let local = host.is_none_or(is_local_host);
    if let Some(auth) = mqtt.get("authentication") {
        let auth_path = join(path, "authentication");
        let method = auth.get("method").and_then(Node::as_str).unwrap_or("");
        let needs = match method {
            "X509Certificate" => Some("x509CertificateSettings"),
            "UsernamePassword" => Some("usernamePasswordSettings"),
            _ => None,
        };
        if let Some(field) = needs {
            match auth.get(field) {
                None => sink.error(
                    &join(&auth_path, field),
                    Some(auth.line),
                    format!("method {method} needs `{field}: {{secretRef: NAME}}`"),
                ),
                Some(settings) => {
                    if let Some(node) = settings.get("secretRef") {
                        if let Some(name) = node.as_str() {
                            secrets.push(Ref {
                                name: name.to_owned(),
                                path: join(&join(&auth_path, field), "secretRef"),
                                line: node.line,
                            });
                        }
                    }
                }
            }
        }
        let unsupported = matches!(
            method,
            "ServiceAccountToken" | "SystemAssignedManagedIdentity" | "UserAssignedManagedIdentity"
        );
        if unsupported && !local {
            let line = auth.get("method").map(|n| n.line);
            sink.error(
                &join(&auth_path, "method"),
                line,
                format!(
                    "method {method} needs a Kubernetes or Azure identity, which a standalone \
                     Edgeplane does not have; use X509Certificate, UsernamePassword or Anonymous"
                ),
            );
        }
    }
    if let Some(node) = mqtt.at(&["tls", "trustedCaCertificateConfigMapRef"]) {
        if let Some(name) = node.as_str() {
            config_maps.push(Ref {
                name: name.to_owned(),
                path: join(path, "tls.trustedCaCertificateConfigMapRef"),
                line: node.line,
            });
        }
    }
    local
}

/// `aio-broker`, `aio-broker:18883`, `aio-broker.azure-iot-operations:18883` and the like.
pub fn is_local_host(host: &str) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name == LOCAL_BROKER_HOST || name.starts_with("aio-broker.")
}

fn read_local_storage(spec: &Node, sink: &mut Sink) {
    let settings = spec.get("localStorageSettings");
    let has_path = settings.is_some_and(|s| s.get("path").is_some());
    let has_pvc = settings.is_some_and(|s| s.get("persistentVolumeClaimRef").is_some());
    if !has_path && !has_pvc {
        sink.error(
            "spec.localStorageSettings.path",
            Some(settings.map_or(spec.line, |s| s.line)),
            "a LocalStorage endpoint needs the folder to write to; add `localStorageSettings: \
             {path: /var/lib/edgeplane/out}`",
        );
    }
}

pub(crate) fn read_dataflow(
    doc: &Node,
    this: Option<ResourceRef>,
    sink: &mut Sink,
) -> Option<DataflowDoc> {
    let spec = doc.get("spec")?;
    let profile_ref = spec.get("profileRef").and_then(|n| {
        Some(Ref {
            name: n.as_str()?.to_owned(),
            path: "spec.profileRef".into(),
            line: n.line,
        })
    });
    let mut source_ref = None;
    let mut destination_ref = None;
    let mut counts = BTreeMap::<&str, usize>::new();
    let operations = spec.get("operations");
    for (i, op) in operations
        .map(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let path = index("spec.operations", i);
        let Some(kind) = op.get("operationType").and_then(Node::as_str) else {
            continue;
        };
        let settings_name = match kind {
            "Source" => "sourceSettings",
            "BuiltInTransformation" => "builtInTransformationSettings",
            _ => "destinationSettings",
        };
        *counts.entry(kind).or_default() += 1;
        for entry in op.as_map() {
            if entry.key.ends_with("Settings") && entry.key != settings_name {
                sink.error(
                    &join(&path, &entry.key),
                    Some(entry.key_line),
                    format!(
                        "`{}` does not apply to a {kind} operation; remove it",
                        entry.key
                    ),
                );
            }
        }
        let Some(settings) = op.get(settings_name) else {
            sink.error(
                &join(&path, settings_name),
                Some(op.line),
                format!("a {kind} operation needs `{settings_name}`"),
            );
            continue;
        };
        let settings_path = join(&path, settings_name);
        let endpoint = settings.get("endpointRef").and_then(|n| {
            Some(Ref {
                name: n.as_str()?.to_owned(),
                path: join(&settings_path, "endpointRef"),
                line: n.line,
            })
        });
        match kind {
            "Source" => {
                source_ref = source_ref.or(endpoint);
                check_data_sources(settings, &settings_path, sink);
            }
            "Destination" => {
                destination_ref = destination_ref.or(endpoint);
                check_destination(settings, &settings_path, sink);
            }
            _ => {}
        }
    }
    if let Some(list) = operations {
        for (kind, max) in [
            ("Source", 1),
            ("BuiltInTransformation", 1),
            ("Destination", 1),
        ] {
            let n = counts.get(kind).copied().unwrap_or(0);
            if n > max {
                sink.error(
                    "spec.operations",
                    Some(list.line),
                    format!("a dataflow has at most one {kind} operation; found {n}"),
                );
            }
            if n == 0 && kind != "BuiltInTransformation" {
                sink.error(
                    "spec.operations",
                    Some(list.line),
                    format!("a dataflow needs a {kind} operation; add one"),
                );
            }
        }
    }
    Some(DataflowDoc {
        doc: spec_doc(doc, this?),
        profile_ref,
        source_ref,
        destination_ref,
    })
}

fn check_data_sources(settings: &Node, path: &str, sink: &mut Sink) {
    let Some(list) = settings.get("dataSources") else {
        return;
    };
    if list.as_seq().is_empty() && matches!(list.value, Value::Seq(_)) {
        sink.error(
            &join(path, "dataSources"),
            Some(list.line),
            "a source needs at least one topic filter; add one such as `factory/#`",
        );
    }
    for (i, item) in list.as_seq().iter().enumerate() {
        let Some(filter) = item.as_str() else {
            continue;
        };
        let bare = filter
            .strip_prefix("$share/")
            .and_then(|rest| rest.split_once('/').map(|(_, f)| f))
            .unwrap_or(filter);
        if let Err(why) = check_filter(bare) {
            sink.error(&index(&join(path, "dataSources"), i), Some(item.line), why);
        }
    }
}

/// The MQTT topic filter rules that a user can break in a manifest.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("empty topic filter; use a topic such as `factory/line1/#`".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(format!(
                "invalid topic filter `{filter}`: `#` must be a whole last level"
            ));
        }
        if level.contains('+') && *level != "+" {
            return Err(format!(
                "invalid topic filter `{filter}`: `+` must be a whole level"
            ));
        }
    }
    Ok(())
}

fn check_destination(settings: &Node, path: &str, sink: &mut Sink) {
    if let Some(node) = settings.get("dataDestination") {
        if let Some(topic) = node.as_str() {
            if topic.is_empty() {
                sink.error(
                    &join(path, "dataDestination"),
                    Some(node.line),
                    "empty destination; name a topic (or folder), e.g. `${inputTopic}/out`",
                );
            } else if topic.contains(['+', '#']) {
                sink.error(
                    &join(path, "dataDestination"),
                    Some(node.line),
                    format!(
                        "destination `{topic}` has a wildcard; name one topic, or use \
                         ${{inputTopic}} / ${{inputTopic.N}} to follow the source topic"
                    ),
                );
            }
        }
    }
    for (i, header) in settings
        .get("headers")
        .map(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let action = header.get("actionType").and_then(Node::as_str);
        let has_value = header.get("value").is_some();
        if matches!(action, Some("AddIfNotPresent" | "AddOrReplace")) && !has_value {
            sink.error(
                &join(&index(&join(path, "headers"), i), "value"),
                Some(header.line),
                "this header action needs a `value`",
            );
        }
    }
}

pub(crate) fn spec_doc(doc: &Node, resource: ResourceRef) -> SpecDoc {
    let mut lines = BTreeMap::new();
    let spec = match doc.get("spec") {
        Some(spec) => {
            collect_lines(spec, "spec", &mut lines);
            spec.to_json()
        }
        None => serde_json::Value::Null,
    };
    SpecDoc {
        resource,
        spec,
        lines,
    }
}

fn collect_lines(node: &Node, path: &str, lines: &mut BTreeMap<String, usize>) {
    lines.insert(path.to_owned(), node.line);
    match &node.value {
        Value::Map(entries) => {
            for e in entries {
                collect_lines(&e.value, &join(path, &e.key), lines);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_lines(item, &index(path, i), lines);
            }
        }
        _ => {}
    }
}

fn check_host(text: &str) -> Result<(), String> {
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!(
            "host `{text}` needs a port; write it as `name:port`, e.g. `broker.local:1883`"
        ));
    };
    if host.is_empty() {
        return Err(format!("host `{text}` has no name before the port"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("`{port}` is not a port number from 1 to 65535")),
    }
}

fn check_client_id_prefix(text: &str) -> Result<(), String> {
    if text.contains(['+', '#', '/']) {
        return Err(format!(
            "clientIdPrefix `{text}` contains `+`, `#` or `/`; use letters, digits and `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        assert!(is_local_host("aio-broker:18883"));
        assert!(is_local_host("aio-broker.azure-iot-operations:18883"));
        assert!(!is_local_host("mosquitto:1883"));
    }

    #[test]
    fn settings_names() {
        assert_eq!(settings_field("Mqtt"), "mqttSettings");
        assert_eq!(settings_field("LocalStorage"), "localStorageSettings");
    }

    #[test]
    fn filters() {
        assert!(check_filter("a/+/b/#").is_ok());
        assert!(check_filter("a/b#").is_err());
        assert!(check_filter("a/#/b").is_err());
        assert!(check_filter("a+/b").is_err());
    }
}
