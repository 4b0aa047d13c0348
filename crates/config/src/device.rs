//! The `Device` and `Asset` kinds of the device registry (the Asset tables and checks are in
//! `asset.rs`): their field tables, the rules
//! inside one resource, and typed views for the connector.
//!
//! Field names are Azure IoT Operations' (`namespaces.deviceregistry.microsoft.com/v1`,
//! Azure Device Registry's "namespaced" model): a Device lists `endpoints.inbound.<name>`
//! (`address`, `endpointType`, `authentication`, `trustSettings`, and
//! `additionalConfiguration`, a JSON text carrying the OPC UA security choice); an Asset names
//! one device endpoint in `deviceRef` and lists `datasets[].dataPoints[]` and
//! `eventGroups[].events[]` with their destinations.
//!
//! A document enters checked against [`DEVICE_DOCUMENT`] / [`ASSET_DOCUMENT`];
//! [`read_device`] and [`read_asset`] check what the tables cannot say (the JSON
//! configuration texts, unique names, the credentials a method needs) and record every name
//! the resource writes (secrets, the device and its endpoint) so the loader can check them
//! once the folder is read. What leaves is a [`SpecDoc`]; [`crate::DeviceSpec`] and
//! [`crate::AssetSpec`] (in `device_spec.rs`)
//! are the typed views of a spec that passed these checks.
//!
//! Secrets: `usernameSecretName`, `passwordSecretName`, `certificateSecretName` and
//! `keySecretName` name a Secret, optionally followed by `/key`; without a key the Secret's
//! `username`, `password`, `tls.crt` or `tls.key` (or its only key) is used.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value as Json;

use crate::dataflow::{spec_doc, SpecDoc};
use crate::error::{ConfigErrors, Sink};
use crate::listener::Ref;
use crate::resource::{crd_document, read_header, Kind, ResourceRef};
use crate::schema::{join, opt, req, EnumDef, Field, Schema};
use crate::yaml::{parse_documents, Node};

pub(crate) use crate::asset::{read_asset, AssetDoc, ASSET_DOCUMENT};

/// The endpoint type of an OPC UA server, as AIO spells it (compared ignoring case).
pub const OPCUA_ENDPOINT_TYPE: &str = "Microsoft.OpcUa";

/// The namespace of default topics (`<namespace>/data/<asset>`) when an Asset has none.
pub const DEFAULT_NAMESPACE: &str = "azure-iot-operations";

pub(crate) static DEVICE_DOCUMENT: [Field; 5] = crd_document(true, Schema::Object(&DEVICE));

static DEVICE: [Field; 14] = [
    opt("enabled", Schema::Bool),
    opt("externalDeviceId", Schema::Str),
    opt("displayName", Schema::Str),
    opt("description", Schema::Str),
    opt("manufacturer", Schema::Str),
    opt("model", Schema::Str),
    opt("operatingSystem", Schema::Str),
    opt("operatingSystemVersion", Schema::Str),
    opt("attributes", Schema::FreeMap),
    opt("discoveredDeviceRef", Schema::Str),
    opt("uuid", Schema::Any),
    opt("version", Schema::Any),
    opt("lastTransitionTime", Schema::Any),
    req("endpoints", Schema::Object(&ENDPOINTS)),
];

static ENDPOINTS: [Field; 2] = [
    opt("inbound", Schema::Map(&Schema::Object(&INBOUND))),
    opt("outbound", Schema::FreeMap),
];

static INBOUND: [Field; 6] = [
    req("address", Schema::Str),
    req("endpointType", Schema::Str),
    opt("version", Schema::Str),
    opt("authentication", Schema::Object(&AUTHENTICATION)),
    opt(
        "trustSettings",
        Schema::Object(&[opt("trustList", Schema::Str)]),
    ),
    opt("additionalConfiguration", Schema::Str),
];

static AUTH_METHOD: EnumDef = EnumDef {
    values: &["Anonymous", "UsernamePassword", "Certificate"],
    aliases: &[],
};

static AUTHENTICATION: [Field; 3] = [
    req("method", Schema::Enum(&AUTH_METHOD)),
    opt(
        "usernamePasswordCredentials",
        Schema::Object(&[
            req("usernameSecretName", Schema::Str),
            req("passwordSecretName", Schema::Str),
        ]),
    ),
    opt(
        "x509Credentials",
        Schema::Object(&[
            req("certificateSecretName", Schema::Str),
            opt("keySecretName", Schema::Str),
            opt("intermediateCertificatesSecretName", Schema::Str),
        ]),
    ),
];

/// What the loader needs of a Device to check the names it writes.
#[derive(Debug, Clone)]
pub(crate) struct DeviceDoc {
    pub doc: SpecDoc,
    /// The inbound endpoint names.
    pub endpoints: BTreeSet<String>,
    /// Secret names (without `/key`) with where they were written.
    pub secret_refs: Vec<Ref>,
}

pub(crate) fn read_device(
    doc: &Node,
    this: Option<ResourceRef>,
    sink: &mut Sink,
) -> Option<DeviceDoc> {
    let spec = doc.get("spec")?;
    let mut endpoints = BTreeSet::new();
    let mut secret_refs = Vec::new();
    let inbound = spec.at(&["endpoints", "inbound"]);
    for entry in inbound.map(Node::as_map).unwrap_or_default() {
        endpoints.insert(entry.key.clone());
        let path = join("spec.endpoints.inbound", &entry.key);
        read_inbound(&entry.value, &path, sink, &mut secret_refs);
    }
    if inbound.is_none_or(|n| n.as_map().is_empty()) {
        let line = spec.get("endpoints").map_or(spec.line, |n| n.line);
        sink.error(
            "spec.endpoints.inbound",
            Some(line),
            "a device needs at least one inbound endpoint; add one such as \
             `inbound: {opc-ua: {endpointType: Microsoft.OpcUa, address: opc.tcp://host:50000}}`",
        );
    }
    Some(DeviceDoc {
        doc: spec_doc(doc, this?),
        endpoints,
        secret_refs,
    })
}

fn read_inbound(endpoint: &Node, path: &str, sink: &mut Sink, secrets: &mut Vec<Ref>) {
    let kind = endpoint.get("endpointType").and_then(Node::as_str);
    if let Some(kind) = kind {
        if !kind.eq_ignore_ascii_case(OPCUA_ENDPOINT_TYPE) {
            sink.error(
                &join(path, "endpointType"),
                endpoint.get("endpointType").map(|n| n.line),
                format!(
                    "endpointType {kind} is not supported by this version of Edgeplane yet; \
                     use {OPCUA_ENDPOINT_TYPE}"
                ),
            );
        }
    }
    if let Some(node) = endpoint.get("address") {
        if let Some(address) = node.as_str() {
            if let Err(why) = check_opcua_address(address) {
                sink.error(&join(path, "address"), Some(node.line), why);
            }
        }
    }
    if let Some(node) = endpoint.get("additionalConfiguration") {
        if let Some(text) = node.as_str() {
            let field = join(path, "additionalConfiguration");
            for why in check_additional_configuration(text) {
                sink.error(&field, Some(node.line), why);
            }
        }
    }
    let Some(auth) = endpoint.get("authentication") else {
        return;
    };
    let auth_path = join(path, "authentication");
    let method = auth.get("method").and_then(Node::as_str).unwrap_or("");
    let needs = match method {
        "UsernamePassword" => Some((
            "usernamePasswordCredentials",
            &["usernameSecretName", "passwordSecretName"][..],
        )),
        "Certificate" => Some((
            "x509Credentials",
            &["certificateSecretName", "keySecretName"][..],
        )),
        _ => None,
    };
    for other in ["usernamePasswordCredentials", "x509Credentials"] {
        if let Some(entry) = auth.entry(other) {
            if needs.is_none_or(|(field, _)| field != other) {
                sink.error(
                    &join(&auth_path, other),
                    Some(entry.key_line),
                    format!("`{other}` does not apply to method {method}; remove it"),
                );
            }
        }
    }
    let Some((field, names)) = needs else {
        return;
    };
    let Some(credentials) = auth.get(field) else {
        sink.error(
            &join(&auth_path, field),
            Some(auth.line),
            format!("method {method} needs `{field}` naming the Secrets to use"),
        );
        return;
    };
    for name in names {
        if let Some(node) = credentials.get(name) {
            if let Some(text) = node.as_str() {
                secrets.push(Ref {
                    name: secret_name(text).to_owned(),
                    path: join(&join(&auth_path, field), name),
                    line: node.line,
                });
            }
        }
    }
}

/// The Secret part of `secret` or `secret/key`.
pub fn secret_name(reference: &str) -> &str {
    reference.split_once('/').map_or(reference, |(s, _)| s)
}

/// The key part of `secret/key`, if written.
pub fn secret_key(reference: &str) -> Option<&str> {
    reference.split_once('/').map(|(_, k)| k)
}

fn check_opcua_address(address: &str) -> Result<(), String> {
    let rest = address.strip_prefix("opc.tcp://").ok_or_else(|| {
        format!("address `{address}` is not an OPC UA address; write it as opc.tcp://host:port")
    })?;
    let host_port = rest.split('/').next().unwrap_or("");
    match host_port.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!(
            "address `{address}` needs a host and a port, e.g. opc.tcp://plc.local:50000"
        )),
    }
}

static SECURITY_MODES: [&str; 3] = ["None", "Sign", "SignAndEncrypt"];
static SECURITY_POLICIES: [&str; 4] = [
    "None",
    "Basic256Sha256",
    "Aes128_Sha256_RsaOaep",
    "Aes256_Sha256_RsaPss",
];
pub(crate) const POLICY_PREFIX: &str = "http://opcfoundation.org/UA/SecurityPolicy#";

/// Every problem with an endpoint's `additionalConfiguration` JSON text.
fn check_additional_configuration(text: &str) -> Vec<String> {
    let value: Json = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return vec![format!(
                "not valid JSON ({e}); write a JSON object in quotes"
            )]
        }
    };
    let Some(object) = value.as_object() else {
        return vec!["expected a JSON object such as {\"security\": {...}}".into()];
    };
    let mut problems = Vec::new();
    let Some(security) = object.get("security") else {
        return problems;
    };
    let Some(security) = security.as_object() else {
        return vec!["`security` must be a JSON object".into()];
    };
    for (key, value) in security {
        match key.as_str() {
            "securityMode" => match value.as_str() {
                Some(m) if SECURITY_MODES.contains(&m) => {}
                _ => problems.push(format!(
                    "security.securityMode {value} is not one of {}",
                    SECURITY_MODES.join(", ")
                )),
            },
            "securityPolicy" => match value.as_str() {
                Some(p) if SECURITY_POLICIES.contains(&p.trim_start_matches(POLICY_PREFIX)) => {}
                _ => problems.push(format!(
                    "security.securityPolicy {value} is not one of {} (optionally prefixed \
                     with {POLICY_PREFIX})",
                    SECURITY_POLICIES.join(", ")
                )),
            },
            "autoAcceptUntrustedServerCertificates" => {
                if !value.is_boolean() {
                    problems.push(
                        "security.autoAcceptUntrustedServerCertificates must be true or false"
                            .into(),
                    );
                }
            }
            other => problems.push(format!(
                "unknown field security.{other}; known: securityMode, securityPolicy, \
                 autoAcceptUntrustedServerCertificates"
            )),
        }
    }
    problems
}

/// One resource checked on its own (references to other resources are the caller's to
/// check), e.g. a resource sent to the REST API.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedResource {
    pub kind: Kind,
    pub api_version: String,
    pub name: String,
    pub namespace: Option<String>,
    /// `spec` as JSON (null when absent).
    pub spec: Json,
}

/// Check one document (YAML or JSON text) as [`crate::load_str`] would, except for
/// references to other resources; `file_name` labels the errors.
///
/// # Errors
/// Every problem at once; also when the text holds no document or more than one.
pub fn check_resource(file_name: &str, text: &str) -> Result<CheckedResource, ConfigErrors> {
    let mut sink = Sink::new(PathBuf::from(file_name));
    let docs = match parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            sink.error(
                "",
                Some(e.line),
                format!("syntax error: {}; fix the text", e.message),
            );
            return Err(ConfigErrors(sink.into_errors()));
        }
    };
    let docs: Vec<&Node> = docs.iter().filter(|d| !d.is_null()).collect();
    let [doc] = docs.as_slice() else {
        sink.error(
            "",
            Some(1),
            format!("expected exactly one resource, found {}", docs.len()),
        );
        return Err(ConfigErrors(sink.into_errors()));
    };
    if !matches!(doc.value, crate::yaml::Value::Map(_)) {
        sink.error(
            "",
            Some(doc.line),
            "expected a resource (an object with apiVersion, kind, metadata, spec)",
        );
        return Err(ConfigErrors(sink.into_errors()));
    }
    let header = read_header(doc, &mut sink);
    let this = header
        .as_ref()
        .and_then(|h| h.to_ref(PathBuf::from(file_name)));
    match header.as_ref().map(|h| h.kind) {
        Some(Kind::Device) => {
            read_device(doc, this, &mut sink);
        }
        Some(Kind::Asset) => {
            read_asset(doc, this, &mut sink);
        }
        _ => {}
    }
    let errors = sink.into_errors();
    match header {
        Some(h) if errors.is_empty() => Ok(CheckedResource {
            kind: h.kind,
            api_version: doc
                .get("apiVersion")
                .and_then(Node::as_str)
                .unwrap_or_default()
                .to_owned(),
            name: h.name.unwrap_or_default(),
            namespace: h.namespace,
            spec: doc.get("spec").map_or(Json::Null, Node::to_json),
        }),
        _ => Err(ConfigErrors(errors)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::check_node_id;
    use crate::device_spec::configuration_value;

    #[test]
    fn node_ids() {
        assert!(check_node_id("ns=2;s=Fast.Sine.0").is_ok());
        assert!(check_node_id("nsu=http://microsoft.com/Opc/OpcPlc/;s=FastUInt1").is_ok());
        assert!(check_node_id("i=2258").is_ok());
        assert!(check_node_id("ns=x;s=a").is_err());
        assert!(check_node_id("Temperature").is_err());
    }

    #[test]
    fn addresses() {
        assert!(check_opcua_address("opc.tcp://plc:50000").is_ok());
        assert!(check_opcua_address("opc.tcp://10.0.0.1:4840/UA/Server").is_ok());
        assert!(check_opcua_address("http://plc:50000").is_err());
        assert!(check_opcua_address("opc.tcp://plc").is_err());
    }

    #[test]
    fn additional_configuration() {
        let ok = r#"{"security":{"securityMode":"SignAndEncrypt","securityPolicy":"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256","autoAcceptUntrustedServerCertificates":true},"runAssetDiscovery":false}"#;
        assert!(check_additional_configuration(ok).is_empty());
        let bad = r#"{"security":{"securityMode":"Encrypt","securityPolicy":"Basic128"}}"#;
        assert_eq!(check_additional_configuration(bad).len(), 2);
        assert_eq!(check_additional_configuration("{").len(), 1);
    }

    #[test]
    fn configuration_values_fall_back() {
        let own = Some(r#"{"samplingInterval": 100}"#);
        let default = Some(r#"{"samplingInterval": 500, "queueSize": 5}"#);
        assert_eq!(
            configuration_value(own, default, "samplingInterval"),
            Some(100)
        );
        assert_eq!(configuration_value(own, default, "queueSize"), Some(5));
        assert_eq!(configuration_value(None, None, "queueSize"), None);
    }
}
