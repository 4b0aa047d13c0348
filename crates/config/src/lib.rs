//! Edgeplane configuration as resources: a folder of Kubernetes-style YAML manifests in, a
//! validated [`Config`] out, or every problem at once.
//!
//! # What enters
//! Manifests with `apiVersion`, `kind`, `metadata` (`name`, optional `namespace`) and
//! `spec` (`ConfigMap` and `Secret` use `data` / `stringData` / `type`), one or many
//! documents per file separated by `---`. [`load_dir`] reads every `*.yaml` / `*.yml`
//! file directly inside a folder, in name order; [`load_str`] reads one text.
//!
//! Supported kinds ([`Kind`]) and their apiVersions:
//! - `Broker`, `BrokerListener`, `BrokerAuthentication`, `BrokerAuthorization`:
//!   `edgeplane.io/v1`, or Azure IoT Operations' `mqttbroker.iotoperations.azure.com/v1`
//!   (and `v1beta1`) so AIO manifests load unchanged.
//! - `DataflowProfile`, `DataflowEndpoint`, `Dataflow`: `edgeplane.io/v1`, or Azure IoT
//!   Operations' `connectivity.iotoperations.azure.com/v1` (and `v1beta1`).
//! - `Device`, `Asset` (the device registry): `edgeplane.io/v1`, or Azure IoT Operations'
//!   `namespaces.deviceregistry.microsoft.com/v1` (and `v1beta1`).
//! - `ConfigMap`, `Secret`: `v1`.
//!
//! # What is checked
//! Each document is walked against its kind's field tables (`schema.rs`): unknown fields,
//! missing required fields, wrong types, out-of-range numbers and unknown enum values are
//! all reported, never just the first. Then rules between fields and between resources:
//! TLS mode versus its settings, references (`tls.manual.secretRef` to a Secret,
//! `authenticationRef` / `authorizationRef` to the auth kinds, `brokerRef` to the Broker),
//! duplicate names, at most one Broker, and listener ports that would bind the same socket.
//! Each [`ConfigError`] names the file, the resource (`Kind/name`), the field path
//! (`spec.ports[1].protocol`) and the line.
//!
//! # What leaves
//! [`Config`]: broker settings (defaults without a Broker resource), the flattened listener
//! ports, ConfigMap and Secret data, the opaque auth specs and a list of every resource.
//!
//! # YAML parser
//! We use `saphyr` (the maintained successor of `yaml-rust`/`yaml-rust2`, by the same
//! authors). Its `MarkedYaml` gives every node, including mapping keys, a line and column,
//! loads multi-document streams natively, rejects duplicate keys, and bounds alias
//! expansion ("billion laughs"). `serde_yaml` is archived; `serde_yaml_ng` only gives a
//! location for the first error of a serde deserialisation, which is exactly the
//! stop-at-first-error behaviour we avoid by walking the tree ourselves.

mod asset;
mod auth;
mod broker;
mod dataflow;
mod device;
mod device_spec;
mod error;
mod listener;
mod load;
mod persistence;
mod resource;
mod schema;
mod secret;
mod watch;
mod yaml;

use std::collections::BTreeMap;
use std::path::Path;

pub use broker::{
    BrokerSettings, ClientLimits, DiskBufferSettings, MemoryProfile, OtlpExport, QueueLimit,
    QueueStrategy, DEFAULT_BROKER_NAME,
};
pub use dataflow::{
    is_local_host, SpecDoc, DEFAULT_ENDPOINT, DEFAULT_PROFILE, LOCAL_BROKER_HOST,
    SUPPORTED_ENDPOINT_TYPES,
};
pub use device::{
    check_resource, secret_key, secret_name, CheckedResource, DEFAULT_NAMESPACE,
    OPCUA_ENDPOINT_TYPE,
};
pub use device_spec::{
    configuration_value, AssetDataPoint, AssetDataset, AssetEvent, AssetEventGroup, AssetSpec,
    Authentication, Destination, DestinationConfiguration, DeviceRef, DeviceSpec, EndpointSecurity,
    InboundEndpoint,
};
pub use error::{ConfigError, ConfigErrors};
pub use listener::{ListenerPort, Protocol, TlsSettings};
pub use persistence::{PersistMode, PersistPolicy, Persistence, StateStoreKey};
pub use resource::{
    Kind, ResourceRef, AIO_BROKER_API_VERSIONS, AIO_CONNECTIVITY_API_VERSIONS,
    AIO_DEVICE_REGISTRY_API_VERSIONS, CORE_API_VERSION, EDGEPLANE_API_VERSION,
};
pub use secret::{SecretData, TLS_CERT_KEY, TLS_KEY_KEY, TLS_SECRET_TYPE};
pub use watch::FolderWatch;

/// Everything a configuration folder declares, validated and resolved.
///
/// Serializes to JSON for `validate` output and the API; Secret values are left out.
///
/// `Config::default()` is the configuration of an empty folder: default broker settings
/// and no listeners (the binary decides what to serve then).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Config {
    /// From the `Broker` resource, or defaults when there is none.
    pub broker: BrokerSettings,
    /// Every port of every `BrokerListener`, in file order and then port order.
    pub listeners: Vec<ListenerPort>,
    /// ConfigMap name to its `data`.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secret name to its decoded data.
    pub secrets: BTreeMap<String, SecretData>,
    /// BrokerAuthentication name to its `spec` (methods and their settings checked; the
    /// Secrets and ConfigMaps they name are resolved by the broker).
    pub authentications: BTreeMap<String, serde_json::Value>,
    /// BrokerAuthorization name to its `spec` (a mapping; the broker's policy compiler checks
    /// the rules).
    pub authorizations: BTreeMap<String, serde_json::Value>,
    /// DataflowProfile name to its spec (structure checked; `instanceCount`).
    pub dataflow_profiles: BTreeMap<String, SpecDoc>,
    /// DataflowEndpoint name to its spec (structure and references checked).
    pub dataflow_endpoints: BTreeMap<String, SpecDoc>,
    /// Dataflow name to its spec (structure and references checked; expressions are
    /// compiled by the dataflow crate, which reports with the same file, field and line).
    pub dataflows: BTreeMap<String, SpecDoc>,
    /// Device name to its spec (structure and Secret references checked).
    pub devices: BTreeMap<String, SpecDoc>,
    /// Asset name to its spec (structure and device references checked).
    pub assets: BTreeMap<String, SpecDoc>,
    /// Every loaded resource, in load order.
    pub resources: Vec<ResourceRef>,
}

/// Load and validate every `*.yaml` / `*.yml` file directly inside `dir`.
///
/// An empty folder gives `Config::default()`.
///
/// # Errors
/// Any problem — an unreadable folder or file, a YAML syntax error, an invalid resource, a
/// reference to nothing, colliding ports — fails the whole load with every error found.
pub fn load_dir(dir: &Path) -> Result<Config, ConfigErrors> {
    let mut loader = load::Loader::default();
    loader.add_dir(dir);
    loader.finish()
}

/// Load and validate one YAML text as if it were the only file, named `file_name`, of a
/// folder.
///
/// # Errors
/// The same checks, and the same all-at-once report, as [`load_dir`].
pub fn load_str(file_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let mut loader = load::Loader::default();
    loader.add_text(Path::new(file_name), text);
    loader.finish()
}
