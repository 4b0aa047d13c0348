//! Dataflow resources as the runtime runs them: the `Dataflow`, `DataflowEndpoint` and
//! `DataflowProfile` specs that the config crate checked and kept as JSON come in; a
//! [`Plan`] per enabled dataflow comes out, or every error, each naming the file, the
//! resource, the field and the line as the config crate's own errors do.
//!
//! What is checked here and not there: the BuiltInTransformation settings compile
//! (expressions, paths, wildcard rules), and the endpoint settings can be run (TLS
//! material parses, secrets hold the keys they need).

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use edgeplane_codec::QoS;
use edgeplane_config::{Config, ConfigError, ConfigErrors, SpecDoc, DEFAULT_ENDPOINT};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;

use crate::config::BuiltInTransformationSettings;
use crate::BuiltInTransformation;

/// One dataflow, ready to run.
#[derive(Clone)]
pub struct Plan {
    pub name: String,
    /// Instances from the profile's `instanceCount`; more than one share the source
    /// through a `$share` group.
    pub instances: u16,
    /// `requestDiskPersistence: Enabled`: the source session outlives restarts.
    pub disk_persistence: bool,
    pub source: SourcePlan,
    pub transform: Option<BuiltInTransformationSettings>,
    pub destination: DestinationPlan,
    /// Changes whenever anything the plan was built from changes (the dataflow, its
    /// endpoints and profile, the Secrets and ConfigMaps those name): a reload restarts
    /// only dataflows whose fingerprint moved.
    pub fingerprint: u64,
}

#[derive(Clone)]
pub struct SourcePlan {
    pub endpoint: EndpointPlan,
    pub topics: Vec<String>,
}

#[derive(Clone)]
pub struct DestinationPlan {
    pub endpoint: EndpointPlan,
    /// Topic (MQTT) or folder (LocalStorage), with `${inputTopic}` / `${inputTopic.N}`.
    pub data_destination: String,
    pub headers: Vec<Header>,
}

/// A `destinationSettings.headers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    AddIfNotPresent(String, String),
    AddOrReplace(String, String),
    Remove(String),
}

#[derive(Clone)]
pub enum EndpointPlan {
    /// The local broker, through an in-process client.
    Local,
    Remote(RemotePlan),
    Files(FilesPlan),
}

/// A remote MQTT broker.
#[derive(Clone)]
pub struct RemotePlan {
    pub endpoint: String,
    pub host: String,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    /// `protocol: WebSockets`: MQTT over WebSocket on `/mqtt`.
    pub websocket: bool,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub client_id_prefix: String,
    pub qos: QoS,
    pub keep_retain: bool,
    pub session_expiry: u32,
    pub keep_alive: u16,
    pub max_inflight: u16,
    pub create_cloud_events: bool,
}

/// A folder of batch files.
#[derive(Clone, Debug)]
pub struct FilesPlan {
    pub path: PathBuf,
    pub format: FileFormat,
    pub latency: std::time::Duration,
    pub max_messages: usize,
}

/// What a LocalStorage endpoint writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    JsonLines,
    Parquet,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataflowSpec {
    profile_ref: Option<String>,
    mode: Option<String>,
    request_disk_persistence: Option<String>,
    #[serde(default)]
    operations: Vec<OperationSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OperationSpec {
    operation_type: String,
    source_settings: Option<SourceSettings>,
    built_in_transformation_settings: Option<serde_json::Value>,
    destination_settings: Option<DestinationSettings>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceSettings {
    endpoint_ref: String,
    #[serde(default)]
    data_sources: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DestinationSettings {
    endpoint_ref: String,
    data_destination: String,
    #[serde(default)]
    headers: Vec<HeaderSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeaderSpec {
    action_type: String,
    key: String,
    value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EndpointSpec {
    endpoint_type: String,
    mqtt_settings: Option<MqttSettings>,
    local_storage_settings: Option<LocalStorageSettings>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct MqttSettings {
    host: Option<String>,
    protocol: Option<String>,
    authentication: Option<AuthSpec>,
    client_id_prefix: Option<String>,
    qos: Option<u8>,
    retain: Option<String>,
    session_expiry_seconds: Option<u32>,
    keep_alive_seconds: Option<u16>,
    max_inflight_messages: Option<u16>,
    tls: Option<TlsSpec>,
    cloud_event_attributes: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthSpec {
    method: String,
    x509_certificate_settings: Option<SecretRef>,
    username_password_settings: Option<SecretRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretRef {
    secret_ref: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TlsSpec {
    mode: Option<String>,
    trusted_ca_certificate_config_map_ref: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LocalStorageSettings {
    path: Option<String>,
    format: Option<String>,
    persistent_volume_claim_ref: Option<String>,
    batching: Option<Batching>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Batching {
    latency_seconds: Option<u64>,
    max_messages: Option<usize>,
}

/// Where errors go, stamped with the resource's file, name and lines.
struct Errors<'a> {
    doc: &'a SpecDoc,
    out: &'a mut Vec<ConfigError>,
}

impl Errors<'_> {
    fn at(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(ConfigError {
            file: self.doc.resource.file.clone(),
            resource: Some(self.doc.resource.to_string()),
            field: field.to_owned(),
            line: Some(self.doc.line_of(field)),
            message: message.into(),
        });
    }
}

/// Every enabled dataflow of `config` as a [`Plan`]. `data_dir` holds the folders of
/// LocalStorage endpoints that name a `persistentVolumeClaimRef` instead of a `path`.
///
/// # Errors
/// Every problem in every dataflow and endpoint, at once.
pub fn plans(
    config: &Config,
    data_dir: Option<&std::path::Path>,
) -> Result<Vec<Plan>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut plans = Vec::new();
    for doc in config.dataflows.values() {
        if let Some(plan) = plan(config, doc, data_dir, &mut errors) {
            plans.push(plan);
        }
    }
    if errors.is_empty() {
        Ok(plans)
    } else {
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        Err(ConfigErrors(errors))
    }
}

fn plan(
    config: &Config,
    doc: &SpecDoc,
    data_dir: Option<&std::path::Path>,
    out: &mut Vec<ConfigError>,
) -> Option<Plan> {
    let mut errors = Errors { doc, out };
    let spec: DataflowSpec = match serde_json::from_value(doc.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            errors.at("spec", format!("cannot read the dataflow: {e}"));
            return None;
        }
    };
    let mut source = None;
    let mut transform = None;
    let mut destination = None;
    for (i, op) in spec.operations.iter().enumerate() {
        let path = format!("spec.operations[{i}]");
        match op.operation_type.as_str() {
            "Source" => {
                let s = op.source_settings.as_ref()?;
                let field = format!("{path}.sourceSettings.endpointRef");
                let endpoint = endpoint(config, &s.endpoint_ref, data_dir, &field, &mut errors)?;
                source = Some(SourcePlan {
                    endpoint,
                    topics: s.data_sources.clone(),
                });
            }
            "BuiltInTransformation" => {
                let field = format!("{path}.builtInTransformationSettings");
                let raw = op.built_in_transformation_settings.clone()?;
                match serde_json::from_value::<BuiltInTransformationSettings>(raw) {
                    Err(e) => errors.at(&field, format!("cannot read the settings: {e}")),
                    Ok(settings) => match BuiltInTransformation::compile(&settings) {
                        Ok(_) => transform = Some(settings),
                        Err(compile) => {
                            for e in compile.0 {
                                errors.at(&format!("{field}.{}", e.location), e.kind.to_string());
                            }
                        }
                    },
                }
            }
            _ => {
                let d = op.destination_settings.as_ref()?;
                let field = format!("{path}.destinationSettings.endpointRef");
                let endpoint = endpoint(config, &d.endpoint_ref, data_dir, &field, &mut errors)?;
                let headers = d
                    .headers
                    .iter()
                    .map(|h| {
                        let value = h.value.clone().unwrap_or_default();
                        match h.action_type.as_str() {
                            "AddIfNotPresent" => Header::AddIfNotPresent(h.key.clone(), value),
                            "AddOrReplace" => Header::AddOrReplace(h.key.clone(), value),
                            _ => Header::Remove(h.key.clone()),
                        }
                    })
                    .collect();
                destination = Some(DestinationPlan {
                    endpoint,
                    data_destination: d.data_destination.clone(),
                    headers,
                });
            }
        }
    }
    if spec.mode.as_deref() == Some("Disabled") {
        return None;
    }
    let profile = spec.profile_ref.as_deref().unwrap_or(DEFAULT_ENDPOINT);
    let instances = config
        .dataflow_profiles
        .get(profile)
        .and_then(|p| p.spec.get("instanceCount"))
        .and_then(serde_json::Value::as_u64)
        .map_or(1, |n| n.clamp(1, 16) as u16);
    let (source, mut destination) = (source?, destination?);
    // As in AIO, the transform's serializationFormat decides what a storage endpoint writes.
    let wants_parquet = transform
        .as_ref()
        .is_some_and(|t| t.serialization_format.as_deref() == Some("Parquet"));
    if let (EndpointPlan::Files(files), true) = (&mut destination.endpoint, wants_parquet) {
        files.format = FileFormat::Parquet;
    }
    if matches!(source.endpoint, EndpointPlan::Files(_)) {
        errors.at(
            "spec.operations[0].sourceSettings.endpointRef",
            "a LocalStorage endpoint can only be a destination",
        );
        return None;
    }
    let fingerprint = fingerprint(
        config,
        doc,
        spec.profile_ref.as_deref().unwrap_or(DEFAULT_ENDPOINT),
    );
    Some(Plan {
        fingerprint,
        name: doc.resource.name.clone(),
        instances,
        disk_persistence: spec.request_disk_persistence.as_deref() == Some("Enabled"),
        source,
        transform,
        destination,
    })
}

/// A hash of everything `doc`'s plan depends on.
fn fingerprint(config: &Config, doc: &SpecDoc, profile: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    doc.spec.to_string().hash(&mut h);
    if let Some(p) = config.dataflow_profiles.get(profile) {
        p.spec.to_string().hash(&mut h);
    }
    let ops = doc
        .spec
        .get("operations")
        .and_then(serde_json::Value::as_array);
    for op in ops.into_iter().flatten() {
        let endpoint = [
            "/sourceSettings/endpointRef",
            "/destinationSettings/endpointRef",
        ]
        .iter()
        .find_map(|p| op.pointer(p).and_then(serde_json::Value::as_str));
        let Some(e) = endpoint.and_then(|name| config.dataflow_endpoints.get(name)) else {
            continue;
        };
        e.spec.to_string().hash(&mut h);
        for pointer in [
            "/mqttSettings/authentication/x509CertificateSettings/secretRef",
            "/mqttSettings/authentication/usernamePasswordSettings/secretRef",
        ] {
            let secret = e.spec.pointer(pointer).and_then(serde_json::Value::as_str);
            if let Some(data) = secret.and_then(|n| config.secrets.get(n)) {
                data.data.hash(&mut h);
            }
        }
        let ca = e
            .spec
            .pointer("/mqttSettings/tls/trustedCaCertificateConfigMapRef")
            .and_then(serde_json::Value::as_str);
        if let Some(data) = ca.and_then(|n| config.config_maps.get(n)) {
            data.hash(&mut h);
        }
    }
    h.finish()
}

fn endpoint(
    config: &Config,
    name: &str,
    data_dir: Option<&std::path::Path>,
    field: &str,
    flow_errors: &mut Errors<'_>,
) -> Option<EndpointPlan> {
    let Some(doc) = config.dataflow_endpoints.get(name) else {
        // The config crate checked the reference: only the implicit default is left.
        return (name == DEFAULT_ENDPOINT).then_some(EndpointPlan::Local);
    };
    let mut own = Vec::new();
    let plan = endpoint_plan(config, doc, data_dir, &mut Errors { doc, out: &mut own });
    if !own.is_empty() {
        flow_errors.at(
            field,
            format!("endpoint `{name}` cannot be used (see its errors)"),
        );
        // Report each endpoint's own problems once, however many dataflows use it.
        for e in own {
            if !flow_errors.out.contains(&e) {
                flow_errors.out.push(e);
            }
        }
    }
    plan
}

fn endpoint_plan(
    config: &Config,
    doc: &SpecDoc,
    data_dir: Option<&std::path::Path>,
    errors: &mut Errors<'_>,
) -> Option<EndpointPlan> {
    let spec: EndpointSpec = match serde_json::from_value(doc.spec.clone()) {
        Ok(s) => s,
        Err(e) => {
            errors.at("spec", format!("cannot read the endpoint: {e}"));
            return None;
        }
    };
    match spec.endpoint_type.as_str() {
        "Mqtt" => {
            let m = spec.mqtt_settings.unwrap_or_default();
            let Some(host) = m
                .host
                .clone()
                .filter(|h| !edgeplane_config::is_local_host(h))
            else {
                return Some(EndpointPlan::Local);
            };
            remote_plan(config, &doc.resource.name, host, m, errors).map(EndpointPlan::Remote)
        }
        "LocalStorage" => {
            let s = spec.local_storage_settings?;
            let path = match (s.path, s.persistent_volume_claim_ref, data_dir) {
                (Some(p), _, _) => PathBuf::from(p),
                (None, Some(pvc), Some(dir)) => dir.join("volumes").join(pvc),
                (None, Some(_), None) => {
                    errors.at(
                        "spec.localStorageSettings.persistentVolumeClaimRef",
                        "a volume claim is kept under --data-dir, and there is none; run with \
                         --data-dir or set localStorageSettings.path",
                    );
                    return None;
                }
                (None, None, _) => return None,
            };
            let batching = s.batching;
            Some(EndpointPlan::Files(FilesPlan {
                path,
                format: match s.format.as_deref() {
                    Some("Parquet") => FileFormat::Parquet,
                    _ => FileFormat::JsonLines,
                },
                latency: std::time::Duration::from_secs(
                    batching
                        .as_ref()
                        .and_then(|b| b.latency_seconds)
                        .unwrap_or(60),
                ),
                max_messages: batching
                    .as_ref()
                    .and_then(|b| b.max_messages)
                    .unwrap_or(100_000),
            }))
        }
        _ => None, // reported by the config crate
    }
}

fn remote_plan(
    config: &Config,
    endpoint: &str,
    host: String,
    m: MqttSettings,
    errors: &mut Errors<'_>,
) -> Option<RemotePlan> {
    let secret = |name: &str, key: &str, field: &str, errors: &mut Errors<'_>| {
        let value = config
            .secrets
            .get(name)
            .and_then(|s| s.data.get(key))
            .cloned();
        if value.is_none() {
            errors.at(field, format!("secret `{name}` has no `{key}`; add it"));
        }
        value
    };
    let (mut username, mut password, mut client_auth) = (None, None, None);
    if let Some(auth) = &m.authentication {
        match auth.method.as_str() {
            "UsernamePassword" => {
                let r = auth.username_password_settings.as_ref()?;
                let field = "spec.mqttSettings.authentication.usernamePasswordSettings.secretRef";
                let user = secret(&r.secret_ref, "username", field, errors)?;
                username = Some(String::from_utf8_lossy(&user).into_owned());
                password = secret(&r.secret_ref, "password", field, errors).map(Bytes::from);
            }
            "X509Certificate" => {
                let r = auth.x509_certificate_settings.as_ref()?;
                let field = "spec.mqttSettings.authentication.x509CertificateSettings.secretRef";
                let cert = secret(&r.secret_ref, "tls.crt", field, errors)?;
                let key = secret(&r.secret_ref, "tls.key", field, errors)?;
                client_auth = Some((cert, key, field));
            }
            _ => {}
        }
    }
    let tls_on = m
        .tls
        .as_ref()
        .is_none_or(|t| t.mode.as_deref() != Some("Disabled"));
    let tls = if tls_on {
        let ca_field = "spec.mqttSettings.tls.trustedCaCertificateConfigMapRef";
        let Some(ca_name) = m
            .tls
            .as_ref()
            .and_then(|t| t.trusted_ca_certificate_config_map_ref.as_ref())
        else {
            errors.at(
                "spec.mqttSettings.tls",
                "TLS is on by default and needs the CA that signed the broker's certificate; \
                 add `tls: {trustedCaCertificateConfigMapRef: NAME}` or set `tls: {mode: \
                 Disabled}`",
            );
            return None;
        };
        let pem: Vec<u8> = config
            .config_maps
            .get(ca_name)
            .map(|data| {
                data.values()
                    .flat_map(|v| v.bytes().chain(*b"\n"))
                    .collect()
            })
            .unwrap_or_default();
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            errors.at(
                ca_field,
                format!("configmap `{ca_name}` holds no PEM certificate"),
            );
            return None;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots);
        let config = match client_auth {
            None => builder.with_no_client_auth(),
            Some((cert, key, field)) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(&cert).flatten().collect();
                let key = PrivateKeyDer::from_pem_slice(&key);
                match (chain.is_empty(), key) {
                    (false, Ok(key)) => match builder.with_client_auth_cert(chain, key) {
                        Ok(c) => c,
                        Err(e) => {
                            errors.at(field, format!("the client certificate cannot be used: {e}"));
                            return None;
                        }
                    },
                    _ => {
                        errors.at(field, "tls.crt or tls.key is not PEM");
                        return None;
                    }
                }
            }
        };
        let name = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
        let Ok(server_name) = ServerName::try_from(name.to_owned()) else {
            errors.at(
                "spec.mqttSettings.host",
                format!("`{name}` is not a valid server name"),
            );
            return None;
        };
        Some((Arc::new(config), server_name))
    } else {
        if client_auth.is_some() {
            errors.at(
                "spec.mqttSettings.authentication.method",
                "X509Certificate needs TLS; remove `tls: {mode: Disabled}`",
            );
        }
        None
    };
    Some(RemotePlan {
        endpoint: endpoint.to_owned(),
        host,
        tls,
        websocket: matches!(m.protocol.as_deref(), Some("WebSockets" | "Websockets")),
        username,
        password,
        client_id_prefix: m.client_id_prefix.unwrap_or_else(|| "edgeplane".into()),
        qos: if m.qos == Some(0) {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        },
        keep_retain: m.retain.as_deref() != Some("Never"),
        session_expiry: m.session_expiry_seconds.unwrap_or(3600),
        keep_alive: m.keep_alive_seconds.unwrap_or(60),
        max_inflight: m.max_inflight_messages.unwrap_or(100).max(1),
        create_cloud_events: m.cloud_event_attributes.as_deref() == Some("CreateOrRemap"),
    })
}
