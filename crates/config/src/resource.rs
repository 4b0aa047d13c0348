//! The resource envelope: `apiVersion`, `kind` and `metadata`, shared by every kind.
//!
//! A document enters as a parsed [`Node`]; [`read_header`] finds its [`Kind`], checks the
//! apiVersion against the kind and checks the whole document against the kind's field
//! table (the kind modules own the `spec` tables). What leaves is a [`Header`] naming the
//! resource, or nothing when the document has no usable kind. Identity is `kind` + `name`;
//! `metadata.namespace` is recorded but does not separate resources, since one Edgeplane
//! process serves one broker.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::Sink;
use crate::schema::{check_object, opt, req, Field, Schema};
use crate::yaml::Node;
use crate::{auth, broker, dataflow, device, listener, secret};

/// Our own API group and version, served for every Edgeplane kind.
pub const EDGEPLANE_API_VERSION: &str = "edgeplane.io/v1";

/// Azure IoT Operations' broker API versions, accepted as aliases so AIO manifests load.
pub const AIO_BROKER_API_VERSIONS: [&str; 2] = [
    "mqttbroker.iotoperations.azure.com/v1",
    "mqttbroker.iotoperations.azure.com/v1beta1",
];

/// Azure IoT Operations' dataflow API versions, accepted as aliases for the dataflow kinds.
pub const AIO_CONNECTIVITY_API_VERSIONS: [&str; 2] = [
    "connectivity.iotoperations.azure.com/v1",
    "connectivity.iotoperations.azure.com/v1beta1",
];

/// Azure IoT Operations' device registry API versions, accepted as aliases for `Device`
/// and `Asset`.
pub const AIO_DEVICE_REGISTRY_API_VERSIONS: [&str; 2] = [
    "namespaces.deviceregistry.microsoft.com/v1",
    "namespaces.deviceregistry.microsoft.com/v1beta1",
];

/// The Kubernetes core API version, used by `ConfigMap` and `Secret`.
pub const CORE_API_VERSION: &str = "v1";

/// A supported resource kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Kind {
    Broker,
    BrokerListener,
    BrokerAuthentication,
    BrokerAuthorization,
    DataflowProfile,
    DataflowEndpoint,
    Dataflow,
    Device,
    Asset,
    ConfigMap,
    Secret,
}

impl Kind {
    /// Every supported kind, in the order messages list them.
    pub const ALL: [Kind; 11] = [
        Kind::Broker,
        Kind::BrokerListener,
        Kind::BrokerAuthentication,
        Kind::BrokerAuthorization,
        Kind::DataflowProfile,
        Kind::DataflowEndpoint,
        Kind::Dataflow,
        Kind::Device,
        Kind::Asset,
        Kind::ConfigMap,
        Kind::Secret,
    ];

    /// The kind as written in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Broker => "Broker",
            Kind::BrokerListener => "BrokerListener",
            Kind::BrokerAuthentication => "BrokerAuthentication",
            Kind::BrokerAuthorization => "BrokerAuthorization",
            Kind::DataflowProfile => "DataflowProfile",
            Kind::DataflowEndpoint => "DataflowEndpoint",
            Kind::Dataflow => "Dataflow",
            Kind::Device => "Device",
            Kind::Asset => "Asset",
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
        }
    }

    /// The kind spelled `text`, if supported (exact spelling, as Kubernetes does).
    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The apiVersions that serve this kind; the first is the one to suggest.
    pub fn api_versions(self) -> &'static [&'static str] {
        match self {
            Kind::Broker
            | Kind::BrokerListener
            | Kind::BrokerAuthentication
            | Kind::BrokerAuthorization => &[
                EDGEPLANE_API_VERSION,
                AIO_BROKER_API_VERSIONS[0],
                AIO_BROKER_API_VERSIONS[1],
            ],
            Kind::DataflowProfile | Kind::DataflowEndpoint | Kind::Dataflow => &[
                EDGEPLANE_API_VERSION,
                AIO_CONNECTIVITY_API_VERSIONS[0],
                AIO_CONNECTIVITY_API_VERSIONS[1],
            ],
            Kind::Device | Kind::Asset => &[
                EDGEPLANE_API_VERSION,
                AIO_DEVICE_REGISTRY_API_VERSIONS[0],
                AIO_DEVICE_REGISTRY_API_VERSIONS[1],
            ],
            Kind::ConfigMap | Kind::Secret => &[CORE_API_VERSION],
        }
    }

    /// The field table of a whole document of this kind.
    fn document(self) -> &'static [Field] {
        match self {
            Kind::Broker => &broker::DOCUMENT,
            Kind::BrokerListener => &listener::DOCUMENT,
            Kind::BrokerAuthentication => &auth::AUTHENTICATION_DOCUMENT,
            Kind::BrokerAuthorization => &auth::AUTHORIZATION_DOCUMENT,
            Kind::DataflowProfile => &dataflow::PROFILE_DOCUMENT,
            Kind::DataflowEndpoint => &dataflow::ENDPOINT_DOCUMENT,
            Kind::Dataflow => &dataflow::DATAFLOW_DOCUMENT,
            Kind::Device => &device::DEVICE_DOCUMENT,
            Kind::Asset => &device::ASSET_DOCUMENT,
            Kind::ConfigMap => &secret::CONFIG_MAP_DOCUMENT,
            Kind::Secret => &secret::SECRET_DOCUMENT,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One loaded resource, for listings (`edgeplane validate`) and later lookups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceRef {
    pub kind: Kind,
    pub name: String,
    pub namespace: Option<String>,
    pub file: PathBuf,
    /// 1-based line where the document starts.
    pub line: usize,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// What the envelope says about a document.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub kind: Kind,
    /// `None` when `metadata.name` is missing or invalid (already reported).
    pub name: Option<String>,
    /// `metadata.name` as written, even if invalid, so errors can still name the resource.
    pub written_name: Option<String>,
    pub namespace: Option<String>,
    pub line: usize,
}

impl Header {
    /// `Kind/name` for error messages, or just `Kind` when there is no name.
    pub(crate) fn label(&self) -> String {
        match &self.written_name {
            Some(name) => format!("{}/{name}", self.kind),
            None => self.kind.to_string(),
        }
    }

    pub(crate) fn to_ref(&self, file: PathBuf) -> Option<ResourceRef> {
        Some(ResourceRef {
            kind: self.kind,
            name: self.name.clone()?,
            namespace: self.namespace.clone(),
            file,
            line: self.line,
        })
    }
}

/// `metadata`. Server-populated fields are accepted and ignored so that
/// `kubectl get -o yaml` output loads unchanged.
pub(crate) static METADATA: [Field; 11] = [
    req("name", Schema::StrWith(check_name)),
    opt("namespace", Schema::StrWith(check_namespace)),
    opt("labels", Schema::Map(&Schema::Str)),
    opt("annotations", Schema::Map(&Schema::Str)),
    opt("uid", Schema::Any),
    opt("resourceVersion", Schema::Any),
    opt("generation", Schema::Any),
    opt("creationTimestamp", Schema::Any),
    opt("finalizers", Schema::Any),
    opt("ownerReferences", Schema::Any),
    opt("managedFields", Schema::Any),
];

/// The envelope of a custom-resource kind around its `spec` schema.
pub(crate) const fn crd_document(spec_required: bool, spec: Schema) -> [Field; 5] {
    [
        req("apiVersion", Schema::Str),
        req("kind", Schema::Str),
        req("metadata", Schema::Object(&METADATA)),
        Field {
            name: "spec",
            required: spec_required,
            schema: spec,
        },
        opt("status", Schema::Any),
    ]
}

/// Find the kind, check the envelope and the whole document against the kind's table.
///
/// Sets the sink's resource to `Kind/name` so that every later error about this document
/// names it. Returns `None` when the kind is missing or unsupported (already reported).
pub(crate) fn read_header(doc: &Node, sink: &mut Sink) -> Option<Header> {
    sink.set_resource(None);
    let kind_text = match doc.get("kind") {
        None => {
            sink.error(
                "kind",
                Some(doc.line),
                format!("missing required field; add `kind` ({})", supported_kinds()),
            );
            return None;
        }
        Some(node) => match node.as_str() {
            Some(text) => text,
            None => {
                sink.error("kind", Some(node.line), "expected a string naming the kind");
                return None;
            }
        },
    };
    let Some(kind) = Kind::parse(kind_text) else {
        let line = doc.get("kind").map(|n| n.line);
        sink.error(
            "kind",
            line,
            format!("unsupported kind {kind_text}; {}", supported_kinds()),
        );
        return None;
    };
    let metadata = doc.get("metadata");
    let written_name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .map(str::to_owned);
    let name = written_name.clone().filter(|n| check_name(n).is_ok());
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Node::as_str)
        .map(str::to_owned);
    let header = Header {
        kind,
        name,
        written_name,
        namespace,
        line: doc.line,
    };
    sink.set_resource(Some(header.label()));
    check_object(doc, kind.document(), "", sink);
    check_api_version(doc, kind, sink);
    Some(header)
}

fn check_api_version(doc: &Node, kind: Kind, sink: &mut Sink) {
    let Some(node) = doc.get("apiVersion") else {
        return; // reported as a missing required field
    };
    let Some(version) = node.as_str() else {
        return; // reported as a type mismatch
    };
    let allowed = kind.api_versions();
    if !allowed.contains(&version) {
        let also = if allowed.len() > 1 {
            format!(" (also accepted: {})", allowed[1..].join(", "))
        } else {
            String::new()
        };
        sink.error(
            "apiVersion",
            Some(node.line),
            format!(
                "apiVersion {version} does not serve kind {kind}; use {}{also}",
                allowed[0]
            ),
        );
    }
}

fn supported_kinds() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    format!("supported: {}", names.join(", "))
}

/// Resource names follow Kubernetes: a DNS subdomain (RFC 1123), at most 253 characters.
fn check_name(name: &str) -> Result<(), String> {
    check_dns(name, 253, true)
}

/// Namespaces are DNS labels: no dots, at most 63 characters.
fn check_namespace(name: &str) -> Result<(), String> {
    check_dns(name, 63, false)
}

fn check_dns(name: &str, max: usize, dots: bool) -> Result<(), String> {
    let allowed =
        |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (dots && c == '.');
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.len() <= max
        && name.chars().all(allowed)
        && edge_ok(name.chars().next())
        && edge_ok(name.chars().last())
    {
        return Ok(());
    }
    let chars = if dots { "'-' and '.'" } else { "'-'" };
    Err(format!(
        "invalid name `{name}`; use at most {max} lowercase letters, digits and {chars}, \
         starting and ending with a letter or digit"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(check_name("default").is_ok());
        assert!(check_name("my-server.cert").is_ok());
        assert!(check_name("Default").is_err());
        assert!(check_name("-x").is_err());
        assert!(check_name("").is_err());
        assert!(check_namespace("a.b").is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(Kind::parse("broker"), None);
    }
}
