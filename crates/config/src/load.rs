//! Files in, one [`Config`] or every error out.
//!
//! [`Loader`] takes files one at a time: each is parsed into documents, each document's
//! envelope and spec are checked against its kind's tables, and what survives is kept by
//! kind. [`Loader::finish`] then checks what only the whole folder can tell — duplicate
//! names, a second Broker, references between resources, ports that would collide — and
//! either assembles the [`Config`] or returns every error found, sorted by file and line.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::auth;
use crate::broker::{self, BrokerSettings, DEFAULT_BROKER_NAME};
use crate::dataflow::{self, DataflowDoc, EndpointDoc, SpecDoc, DEFAULT_ENDPOINT, DEFAULT_PROFILE};
use crate::device::{self, AssetDoc, DeviceDoc};
use crate::error::{ConfigError, ConfigErrors, Sink};
use crate::listener::{self, binds_conflict, ListenerDoc, PortDoc, Ref};
use crate::resource::{read_header, Kind, ResourceRef};
use crate::secret::{self, SecretData, TLS_CERT_KEY, TLS_KEY_KEY, TLS_SECRET_TYPE};
use crate::yaml::{parse_documents, Node, Value};
use crate::Config;

/// Accumulates resources and errors over the files of one load.
#[derive(Debug, Default)]
pub(crate) struct Loader {
    errors: Vec<ConfigError>,
    resources: Vec<ResourceRef>,
    broker: Option<(ResourceRef, BrokerSettings)>,
    listeners: Vec<(ResourceRef, ListenerDoc)>,
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    secrets: BTreeMap<String, SecretData>,
    authentications: BTreeMap<String, serde_json::Value>,
    authorizations: BTreeMap<String, serde_json::Value>,
    dataflow_profiles: BTreeMap<String, SpecDoc>,
    dataflow_endpoints: BTreeMap<String, EndpointDoc>,
    dataflows: BTreeMap<String, DataflowDoc>,
    devices: BTreeMap<String, DeviceDoc>,
    assets: BTreeMap<String, AssetDoc>,
}

impl Loader {
    /// Load every `*.yaml` / `*.yml` file directly inside `dir`, in name order.
    pub(crate) fn add_dir(&mut self, dir: &Path) {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                self.file_error(
                    dir,
                    format!("cannot read config folder: {e}; check that it exists and is a folder"),
                );
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| is_manifest(path))
            .collect();
        files.sort();
        for file in files {
            match fs::read_to_string(&file) {
                Ok(text) => self.add_text(&file, &text),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.file_error(&file, "file is not utf-8 text; save it as utf-8".to_owned());
                }
                Err(e) => {
                    self.file_error(
                        &file,
                        format!("cannot read file: {e}; check its permissions"),
                    );
                }
            }
        }
    }

    /// Load one file's text; `file` is used in errors and [`ResourceRef`]s.
    pub(crate) fn add_text(&mut self, file: &Path, text: &str) {
        let mut sink = Sink::new(file.to_path_buf());
        match parse_documents(text) {
            Err(e) => sink.error(
                "",
                Some(e.line),
                format!("yaml syntax error: {}; fix the yaml", e.message),
            ),
            Ok(docs) => {
                for doc in &docs {
                    match doc.value {
                        Value::Null => {} // empty document, e.g. a trailing `---`
                        Value::Map(_) => self.add_document(doc, &mut sink),
                        _ => {
                            sink.set_resource(None);
                            sink.error(
                                "",
                                Some(doc.line),
                                format!(
                                    "expected a resource (a mapping with apiVersion, kind, \
                                     metadata), found {}",
                                    doc.value.type_name()
                                ),
                            );
                        }
                    }
                }
            }
        }
        self.errors.extend(sink.into_errors());
    }

    fn add_document(&mut self, doc: &Node, sink: &mut Sink) {
        let Some(header) = read_header(doc, sink) else {
            return;
        };
        let name = header.name.clone().unwrap_or_default();
        let this = header.to_ref(sink.file().clone());
        // Read even without a usable name so that every error in the spec is reported.
        match header.kind {
            Kind::Broker => {
                let settings = broker::read(doc, &name, sink);
                let Some(this) = this else {
                    return;
                };
                let other = self
                    .broker
                    .as_ref()
                    .filter(|(first, _)| first.name != this.name);
                if let Some((first, _)) = other {
                    sink.error(
                        "metadata.name",
                        Some(this.line),
                        format!(
                            "only one Broker is allowed and {first} is defined at {}; \
                             remove one of them",
                            location(first)
                        ),
                    );
                } else if self.admit(&this, sink) {
                    self.broker = Some((this, settings));
                }
            }
            Kind::BrokerListener => {
                let listener = listener::read(doc, &name, sink);
                if let Some(this) = this.filter(|r| self.admit(r, sink)) {
                    self.listeners.push((this, listener));
                }
            }
            Kind::BrokerAuthentication | Kind::BrokerAuthorization => {
                let spec = auth::read_spec(doc);
                if self.admit_opt(this, sink) {
                    let map = if header.kind == Kind::BrokerAuthentication {
                        &mut self.authentications
                    } else {
                        &mut self.authorizations
                    };
                    map.insert(name, spec);
                }
            }
            Kind::DataflowProfile => {
                if let Some(this) = this.filter(|r| self.admit(r, sink)) {
                    self.dataflow_profiles
                        .insert(name, dataflow::read_profile(doc, this));
                }
            }
            Kind::DataflowEndpoint => {
                let endpoint = dataflow::read_endpoint(doc, this.clone(), sink);
                if let (Some(endpoint), true) = (endpoint, self.admit_opt(this, sink)) {
                    self.dataflow_endpoints.insert(name, endpoint);
                }
            }
            Kind::Dataflow => {
                let flow = dataflow::read_dataflow(doc, this.clone(), sink);
                if let (Some(flow), true) = (flow, self.admit_opt(this, sink)) {
                    self.dataflows.insert(name, flow);
                }
            }
            Kind::Device => {
                let device = device::read_device(doc, this.clone(), sink);
                if let (Some(device), true) = (device, self.admit_opt(this, sink)) {
                    self.devices.insert(name, device);
                }
            }
            Kind::Asset => {
                let asset = device::read_asset(doc, this.clone(), sink);
                if let (Some(asset), true) = (asset, self.admit_opt(this, sink)) {
                    self.assets.insert(name, asset);
                }
            }
            Kind::ConfigMap => {
                let data = secret::read_config_map(doc, sink);
                if self.admit_opt(this, sink) {
                    self.config_maps.insert(name, data);
                }
            }
            Kind::Secret => {
                let data = secret::read_secret(doc, sink);
                if self.admit_opt(this, sink) {
                    self.secrets.insert(name, data);
                }
            }
        }
    }

    fn admit_opt(&mut self, this: Option<ResourceRef>, sink: &mut Sink) -> bool {
        this.is_some_and(|r| self.admit(&r, sink))
    }

    /// Record a named resource unless one of the same kind and name exists already.
    fn admit(&mut self, this: &ResourceRef, sink: &mut Sink) -> bool {
        let existing = self
            .resources
            .iter()
            .find(|r| r.kind == this.kind && r.name == this.name);
        if let Some(first) = existing {
            sink.error(
                "metadata.name",
                Some(this.line),
                format!(
                    "duplicate {this}, first defined at {}; give each {} its own name",
                    location(first),
                    this.kind
                ),
            );
            return false;
        }
        self.resources.push(this.clone());
        true
    }

    fn file_error(&mut self, file: &Path, message: String) {
        let mut sink = Sink::new(file.to_path_buf());
        sink.error("", None, message);
        self.errors.extend(sink.into_errors());
    }

    /// Check what spans resources, then build the [`Config`] or return every error.
    pub(crate) fn finish(mut self) -> Result<Config, ConfigErrors> {
        let references = self.check_references();
        let conflicts = self.check_port_conflicts();
        let dataflows = self.check_dataflow_references();
        let devices = self.check_device_references();
        self.errors.extend(
            references
                .into_iter()
                .chain(conflicts)
                .chain(dataflows)
                .chain(devices),
        );
        if !self.errors.is_empty() {
            let mut errors = self.errors;
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(ConfigErrors(errors));
        }
        let broker = self.broker.map(|(_, b)| b).unwrap_or_default();
        Ok(Config {
            broker,
            listeners: self
                .listeners
                .into_iter()
                .flat_map(|(_, l)| l.ports.into_iter().map(|p| p.port))
                .collect(),
            config_maps: self.config_maps,
            secrets: self.secrets,
            authentications: self.authentications,
            authorizations: self.authorizations,
            dataflow_profiles: self.dataflow_profiles,
            dataflow_endpoints: self
                .dataflow_endpoints
                .into_iter()
                .map(|(name, e)| (name, e.doc))
                .collect(),
            dataflows: self
                .dataflows
                .into_iter()
                .map(|(name, d)| (name, d.doc))
                .collect(),
            devices: self
                .devices
                .into_iter()
                .map(|(name, d)| (name, d.doc))
                .collect(),
            assets: self
                .assets
                .into_iter()
                .map(|(name, a)| (name, a.doc))
                .collect(),
            resources: self.resources,
        })
    }

    /// Devices name existing Secrets; assets name an existing Device and one of its
    /// inbound endpoints.
    fn check_device_references(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for device in self.devices.values() {
            for r in &device.secret_refs {
                if !self.secrets.contains_key(&r.name) {
                    let owner = &device.doc.resource;
                    errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        missing(Kind::Secret, &r.name),
                    ));
                }
            }
        }
        for asset in self.assets.values() {
            let owner = &asset.doc.resource;
            let Some(r) = &asset.device_ref else {
                continue;
            };
            let Some(device) = self.devices.get(&r.name) else {
                errors.push(error_at(
                    owner,
                    &r.path,
                    r.line,
                    missing(Kind::Device, &r.name),
                ));
                continue;
            };
            if let Some(e) = &asset.endpoint_ref {
                if !device.endpoints.contains(&e.name) {
                    let known: Vec<&str> = device.endpoints.iter().map(String::as_str).collect();
                    errors.push(error_at(
                        owner,
                        &e.path,
                        e.line,
                        format!(
                            "device `{}` has no inbound endpoint `{}`; use one of: {}",
                            r.name,
                            e.name,
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        errors
    }

    /// Dataflows name existing endpoints and profiles (`default` of each needs no
    /// declaration), and one end of every dataflow is the local broker; endpoints name
    /// existing Secrets and ConfigMaps.
    fn check_dataflow_references(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for endpoint in self.dataflow_endpoints.values() {
            let owner = &endpoint.doc.resource;
            for r in &endpoint.secret_refs {
                if !self.secrets.contains_key(&r.name) {
                    errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        missing(Kind::Secret, &r.name),
                    ));
                }
            }
            for r in &endpoint.config_map_refs {
                if !self.config_maps.contains_key(&r.name) {
                    errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        missing(Kind::ConfigMap, &r.name),
                    ));
                }
            }
        }
        // Whether an endpoint name resolves, and to the local broker.
        let resolve = |name: &str| match self.dataflow_endpoints.get(name) {
            Some(e) => Some(e.local),
            None => (name == DEFAULT_ENDPOINT).then_some(true),
        };
        for flow in self.dataflows.values() {
            let owner = &flow.doc.resource;
            if let Some(r) = &flow.profile_ref {
                if r.name != DEFAULT_PROFILE && !self.dataflow_profiles.contains_key(&r.name) {
                    errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        missing(Kind::DataflowProfile, &r.name),
                    ));
                }
            }
            let mut ends = Vec::new();
            for r in [&flow.source_ref, &flow.destination_ref]
                .into_iter()
                .flatten()
            {
                match resolve(&r.name) {
                    Some(local) => ends.push(local),
                    None => errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        missing(Kind::DataflowEndpoint, &r.name),
                    )),
                }
            }
            if ends.len() == 2 && !ends.contains(&true) {
                let r = flow.destination_ref.as_ref().or(flow.source_ref.as_ref());
                if let Some(r) = r {
                    errors.push(error_at(
                        owner,
                        &r.path,
                        r.line,
                        format!(
                            "neither end of this dataflow is the local broker; use the                              `{DEFAULT_ENDPOINT}` endpoint (or one with host {}) as its source                              or its destination",
                            dataflow::LOCAL_BROKER_HOST
                        ),
                    ));
                }
            }
        }
        errors
    }

    /// Every name a listener writes must name a resource in the folder.
    fn check_references(&self) -> Vec<ConfigError> {
        let broker_name = self
            .broker
            .as_ref()
            .map_or(DEFAULT_BROKER_NAME, |(r, _)| r.name.as_str());
        let mut errors = Vec::new();
        for (owner, doc) in &self.listeners {
            let mut report = |r: &Ref, message: String| {
                errors.push(error_at(owner, &r.path, r.line, message));
            };
            if let Some(r) = doc.broker_ref.as_ref().filter(|r| r.name != broker_name) {
                report(
                    r,
                    format!("broker `{}` not found; use `{broker_name}`", r.name),
                );
            }
            for port in &doc.ports {
                if let Some(r) = &port.secret_ref {
                    if let Some(message) = self.check_tls_secret(&r.name) {
                        report(r, message);
                    }
                }
                if let Some(r) = &port.authentication_ref {
                    if !self.authentications.contains_key(&r.name) {
                        report(r, missing(Kind::BrokerAuthentication, &r.name));
                    }
                }
                if let Some(r) = &port.authorization_ref {
                    if !self.authorizations.contains_key(&r.name) {
                        report(r, missing(Kind::BrokerAuthorization, &r.name));
                    }
                }
            }
        }
        errors
    }

    /// No two ports, in one listener or across listeners, may bind the same socket; the
    /// later one is reported, naming the earlier.
    fn check_port_conflicts(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let mut seen: Vec<(&ResourceRef, &PortDoc)> = Vec::new();
        for (owner, doc) in &self.listeners {
            for port in &doc.ports {
                let bind = port.port.bind;
                let clash = seen
                    .iter()
                    .find(|(_, other)| binds_conflict(other.port.bind, bind));
                if let Some((first_owner, first)) = clash {
                    errors.push(error_at(
                        owner,
                        &format!("{}.port", port.path),
                        port.line,
                        format!(
                            "port {} on {} conflicts with {first_owner} {} ({}:{}); use another \
                             port or bindAddress",
                            bind.port(),
                            bind.ip(),
                            first.path,
                            first_owner.file.display(),
                            first.line
                        ),
                    ));
                }
                seen.push((owner, port));
            }
        }
        errors
    }

    /// What is wrong with using secret `name` as a server certificate, if anything.
    fn check_tls_secret(&self, name: &str) -> Option<String> {
        let Some(secret) = self.secrets.get(name) else {
            return Some(format!(
                "secret `{name}` not found; add a {TLS_SECRET_TYPE} Secret named {name} to the \
                 folder or fix the name"
            ));
        };
        if secret.type_.as_deref() == Some(TLS_SECRET_TYPE) {
            return None; // its keys were checked with the Secret itself
        }
        let absent: Vec<&str> = [TLS_CERT_KEY, TLS_KEY_KEY]
            .into_iter()
            .filter(|k| !secret.data.contains_key(*k))
            .collect();
        (!absent.is_empty()).then(|| {
            format!(
                "secret `{name}` has no {}; a server certificate secret needs {TLS_CERT_KEY} \
                 and {TLS_KEY_KEY}",
                absent.join(" or ")
            )
        })
    }
}

fn missing(kind: Kind, name: &str) -> String {
    format!("{kind} `{name}` not found; add a {kind} named {name} to the folder or fix the name")
}

fn error_at(owner: &ResourceRef, field: &str, line: usize, message: String) -> ConfigError {
    ConfigError {
        file: owner.file.clone(),
        resource: Some(owner.to_string()),
        field: field.to_owned(),
        line: Some(line),
        message,
    }
}

fn location(r: &ResourceRef) -> String {
    format!("{}:{}", r.file.display(), r.line)
}

pub(crate) fn is_manifest(path: &Path) -> bool {
    let extension_ok = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
    extension_ok && path.is_file()
}
