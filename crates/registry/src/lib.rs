//! The device registry: devices, assets and their status, in one store whatever their
//! origin.
//!
//! # What enters
//! - Resources from the configuration folder, through [`Registry::apply_config`] (at start
//!   and whenever the folder changes): they replace every earlier config-origin resource
//!   and carry the file they came from. They are read-only through the API.
//! - Resources from the REST API, through [`Registry::create`], [`Registry::replace`] and
//!   [`Registry::delete`], as manifest text (JSON or YAML) checked by the configuration
//!   crate's own validation plus the references it cannot check alone (an Asset's device
//!   and endpoint, a Device's Secrets). They are persisted in the data folder
//!   (`registry.json`, see [`persist`]) and survive a restart.
//! - Status from the connector: [`Registry::set_endpoint_status`] and
//!   [`Registry::set_asset_status`].
//!
//! # What leaves
//! Manifests in the shape they were written (`apiVersion`, `kind`, `metadata`, `spec`) with
//! a `status` holding the origin; status documents; and, for the connector,
//! [`Registry::snapshot`] plus a change counter ([`Registry::changes`]) that moves on
//! every change of a resource or of the Secrets.
//!
//! One lock guards the store; every operation holds it briefly and none awaits under it.
//! No HTTP here: the portal serves this over `/api/v1/`.

mod persist;
mod status;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use edgeplane_config::{
    check_resource, secret_name, AssetSpec, Config, DeviceSpec, Kind, SecretData,
    EDGEPLANE_API_VERSION,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;

pub use status::{AssetStatus, ConnectionState, DeviceStatus, EndpointStatus};

/// The two kinds the registry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum RegistryKind {
    Device,
    Asset,
}

impl RegistryKind {
    fn kind(self) -> Kind {
        match self {
            RegistryKind::Device => Kind::Device,
            RegistryKind::Asset => Kind::Asset,
        }
    }

    /// The plural used in API paths (`devices`).
    pub fn plural(self) -> &'static str {
        match self {
            RegistryKind::Device => "devices",
            RegistryKind::Asset => "assets",
        }
    }
}

impl std::fmt::Display for RegistryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().as_str())
    }
}

/// Where a resource came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "camelCase")]
pub enum Origin {
    /// A manifest in the configuration folder; read-only through the API.
    Config { file: PathBuf },
    /// Created through the REST API; persisted in the data folder.
    Api,
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: RegistryKind,
    pub api_version: String,
    pub name: String,
    pub namespace: Option<String>,
    pub spec: Value,
    pub origin: Origin,
}

impl Entry {
    /// The manifest, with `status.origin`.
    pub fn to_json(&self) -> Value {
        let mut metadata = json!({ "name": self.name });
        if let Some(ns) = &self.namespace {
            metadata["namespace"] = json!(ns);
        }
        json!({
            "apiVersion": self.api_version,
            "kind": self.kind.to_string(),
            "metadata": metadata,
            "spec": self.spec,
            "status": { "origin": self.origin },
        })
    }

    /// The manifest as stored on disk (no status).
    fn to_stored(&self) -> Value {
        let mut v = self.to_json();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
        }
        v
    }
}

/// A problem with one field of a resource sent to the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Field path, e.g. `spec.deviceRef.deviceName`; empty for the whole document.
    pub field: String,
    pub message: String,
}

/// Why an API operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The resource is invalid; every problem is listed.
    #[error("invalid resource: {}", .0.iter().map(|e| format!("{} {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    /// No such resource.
    #[error("{0} `{1}` not found")]
    NotFound(RegistryKind, String),
    /// The operation conflicts with the store: an existing name, a config-origin resource,
    /// a device still used by assets. The text says what to do.
    #[error("{0}")]
    Conflict(String),
    /// The data folder could not be written; nothing changed.
    #[error(
        "cannot save the registry to {0}: {1}; check the data folder's permissions and free space"
    )]
    Io(PathBuf, std::io::Error),
    /// The persisted registry could not be read.
    #[error("cannot read the registry from {0}: {1}")]
    Corrupt(PathBuf, String),
}

/// What the connector needs: every device and asset with its typed spec, and the Secrets.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub devices: BTreeMap<String, (DeviceSpec, Option<String>)>,
    /// Asset name to its spec and namespace.
    pub assets: BTreeMap<String, (AssetSpec, Option<String>)>,
    pub secrets: BTreeMap<String, SecretData>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: BTreeMap<(RegistryKind, String), Entry>,
    secrets: BTreeMap<String, SecretData>,
    devices_status: BTreeMap<String, DeviceStatus>,
    assets_status: BTreeMap<String, AssetStatus>,
}

/// The registry; cheap to clone (one shared store).
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    file: Option<PathBuf>,
    changes: Arc<watch::Sender<u64>>,
}

impl Registry {
    /// A registry persisted in `data_dir/registry.json` (read now if it exists), or kept in
    /// memory only when `data_dir` is `None`.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn open(data_dir: Option<&Path>) -> Result<Registry, RegistryError> {
        let file = data_dir.map(|d| d.join(persist::FILE_NAME));
        let mut inner = Inner::default();
        if let Some(file) = &file {
            for entry in persist::load(file)? {
                inner
                    .entries
                    .insert((entry.kind, entry.name.clone()), entry);
            }
        }
        Ok(Registry {
            inner: Arc::new(Mutex::new(inner)),
            file,
            changes: Arc::new(watch::channel(0).0),
        })
    }

    /// A counter that moves on every change of a resource or of the Secrets.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n += 1);
    }

    /// Replace the config-origin resources and the Secrets with those of `config`.
    /// An API resource of the same kind and name is replaced by the config one (and no
    /// longer persisted), with a warning.
    pub fn apply_config(&self, config: &Config) {
        let mut inner = self.inner.lock();
        inner
            .entries
            .retain(|_, e| !matches!(e.origin, Origin::Config { .. }));
        let mut shadowed = false;
        for (kind, docs) in [
            (RegistryKind::Device, &config.devices),
            (RegistryKind::Asset, &config.assets),
        ] {
            for (name, doc) in docs {
                let entry = Entry {
                    kind,
                    api_version: EDGEPLANE_API_VERSION.to_owned(),
                    name: name.clone(),
                    namespace: doc.resource.namespace.clone(),
                    spec: doc.spec.clone(),
                    origin: Origin::Config {
                        file: doc.resource.file.clone(),
                    },
                };
                if let Some(old) = inner.entries.insert((kind, name.clone()), entry) {
                    tracing::warn!(
                        resource = %format!("{kind}/{name}"),
                        "the configuration folder now defines this resource; it replaces the one created through the API"
                    );
                    shadowed |= old.origin == Origin::Api;
                }
            }
        }
        inner.secrets = config.secrets.clone();
        if shadowed {
            if let Err(e) = self.save(&inner) {
                tracing::warn!(error = %e, "registry not saved");
            }
        }
        drop(inner);
        self.changed();
    }

    /// Every resource of `kind`, by name.
    pub fn list(&self, kind: RegistryKind) -> Vec<Entry> {
        let inner = self.inner.lock();
        inner
            .entries
            .values()
            .filter(|e| e.kind == kind)
            .cloned()
            .collect()
    }

    /// One resource.
    pub fn get(&self, kind: RegistryKind, name: &str) -> Option<Entry> {
        self.inner
            .lock()
            .entries
            .get(&(kind, name.to_owned()))
            .cloned()
    }

    /// Create a resource from manifest text (JSON or YAML).
    ///
    /// # Errors
    /// Invalid, a resource of that name exists, or it cannot be saved.
    pub fn create(&self, kind: RegistryKind, text: &str) -> Result<Entry, RegistryError> {
        let mut inner = self.inner.lock();
        let entry = check(&inner, kind, text, None)?;
        if let Some(existing) = inner.entries.get(&(kind, entry.name.clone())) {
            return Err(RegistryError::Conflict(format!(
                "{kind} `{}` exists already ({}); replace it with PUT /api/v1/{}/{} or choose another name",
                entry.name,
                origin_words(&existing.origin),
                kind.plural(),
                entry.name
            )));
        }
        self.commit(&mut inner, Some(entry.clone()), None)?;
        Ok(entry)
    }

    /// Replace (or create) resource `name` from manifest text.
    ///
    /// # Errors
    /// Invalid, the name in the text differs, the resource comes from the config folder,
    /// or it cannot be saved.
    pub fn replace(
        &self,
        kind: RegistryKind,
        name: &str,
        text: &str,
    ) -> Result<Entry, RegistryError> {
        let mut inner = self.inner.lock();
        read_only(&inner, kind, name)?;
        let entry = check(&inner, kind, text, Some(name))?;
        self.commit(&mut inner, Some(entry.clone()), None)?;
        Ok(entry)
    }

    /// Delete resource `name`.
    ///
    /// # Errors
    /// Not found, from the config folder, a device still used by assets, or it cannot be
    /// saved.
    pub fn delete(&self, kind: RegistryKind, name: &str) -> Result<(), RegistryError> {
        let mut inner = self.inner.lock();
        if !inner.entries.contains_key(&(kind, name.to_owned())) {
            return Err(RegistryError::NotFound(kind, name.to_owned()));
        }
        read_only(&inner, kind, name)?;
        if kind == RegistryKind::Device {
            let users: Vec<&str> = inner
                .entries
                .values()
                .filter(|e| {
                    e.kind == RegistryKind::Asset
                        && e.spec.pointer("/deviceRef/deviceName") == Some(&json!(name))
                })
                .map(|e| e.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(RegistryError::Conflict(format!(
                    "device `{name}` is used by asset(s) {}; delete or change them first",
                    users.join(", ")
                )));
            }
        }
        self.commit(&mut inner, None, Some((kind, name.to_owned())))
    }

    /// Apply one change, save, and only then keep it (a failed save changes nothing).
    fn commit(
        &self,
        inner: &mut Inner,
        insert: Option<Entry>,
        remove: Option<(RegistryKind, String)>,
    ) -> Result<(), RegistryError> {
        let mut undo = Vec::new();
        if let Some(key) = remove {
            if key.0 == RegistryKind::Device {
                inner.devices_status.remove(&key.1);
            } else {
                inner.assets_status.remove(&key.1);
            }
            if let Some(old) = inner.entries.remove(&key) {
                undo.push((key, Some(old)));
            }
        }
        if let Some(entry) = insert {
            let key = (entry.kind, entry.name.clone());
            let old = inner.entries.insert(key.clone(), entry);
            undo.push((key, old));
        }
        if let Err(e) = self.save(inner) {
            for (key, old) in undo.into_iter().rev() {
                match old {
                    Some(old) => inner.entries.insert(key, old),
                    None => inner.entries.remove(&key),
                };
            }
            return Err(e);
        }
        self.changed();
        Ok(())
    }

    fn save(&self, inner: &Inner) -> Result<(), RegistryError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let stored: Vec<Value> = inner
            .entries
            .values()
            .filter(|e| e.origin == Origin::Api)
            .map(Entry::to_stored)
            .collect();
        persist::save(file, &stored)
    }

    /// Everything the connector needs, typed. Resources whose spec does not parse (which
    /// validation prevents) are left out with a warning.
    pub fn snapshot(&self) -> Snapshot {
        let inner = self.inner.lock();
        let mut out = Snapshot {
            secrets: inner.secrets.clone(),
            ..Snapshot::default()
        };
        for entry in inner.entries.values() {
            let ns = entry.namespace.clone();
            let parsed = match entry.kind {
                RegistryKind::Device => serde_json::from_value::<DeviceSpec>(entry.spec.clone())
                    .map(|d| {
                        out.devices.insert(entry.name.clone(), (d, ns));
                    }),
                RegistryKind::Asset => {
                    serde_json::from_value::<AssetSpec>(entry.spec.clone()).map(|a| {
                        out.assets.insert(entry.name.clone(), (a, ns));
                    })
                }
            };
            if let Err(e) = parsed {
                tracing::warn!(resource = %format!("{}/{}", entry.kind, entry.name), error = %e, "skipped by the connector");
            }
        }
        out
    }

    /// Record the connection state of one device endpoint.
    pub fn set_endpoint_status(&self, device: &str, endpoint: &str, state: ConnectionState) {
        let mut inner = self.inner.lock();
        let status = inner.devices_status.entry(device.to_owned()).or_default();
        status.update(endpoint, state);
    }

    /// Record the state of one asset.
    pub fn set_asset_status(&self, asset: &str, state: ConnectionState) {
        let mut inner = self.inner.lock();
        let status = inner.assets_status.entry(asset.to_owned()).or_default();
        status.update(state);
    }

    /// Count messages an asset published.
    pub fn count_published(&self, asset: &str, messages: u64) {
        let mut inner = self.inner.lock();
        inner
            .assets_status
            .entry(asset.to_owned())
            .or_default()
            .messages_published += messages;
    }

    /// Forget the status of resources the connector no longer serves.
    pub fn clear_status(&self, kind: RegistryKind, name: &str) {
        let mut inner = self.inner.lock();
        match kind {
            RegistryKind::Device => {
                inner.devices_status.remove(name);
            }
            RegistryKind::Asset => {
                inner.assets_status.remove(name);
            }
        }
    }

    /// The status document of a resource, `None` when it does not exist.
    pub fn status(&self, kind: RegistryKind, name: &str) -> Option<Value> {
        let inner = self.inner.lock();
        let entry = inner.entries.get(&(kind, name.to_owned()))?;
        let mut doc = match kind {
            RegistryKind::Device => {
                let status = inner.devices_status.get(name).cloned().unwrap_or_default();
                serde_json::to_value(status).unwrap_or_default()
            }
            RegistryKind::Asset => {
                let status = inner.assets_status.get(name).cloned().unwrap_or_default();
                serde_json::to_value(status).unwrap_or_default()
            }
        };
        if let Some(o) = doc.as_object_mut() {
            o.insert("name".into(), json!(name));
            o.insert("kind".into(), json!(kind.to_string()));
            o.insert("origin".into(), json!(entry.origin));
        }
        Some(doc)
    }
}

fn origin_words(origin: &Origin) -> String {
    match origin {
        Origin::Config { file } => format!("from the configuration file {}", file.display()),
        Origin::Api => "created through the API".into(),
    }
}

/// Config-origin resources cannot be changed through the API.
fn read_only(inner: &Inner, kind: RegistryKind, name: &str) -> Result<(), RegistryError> {
    match inner
        .entries
        .get(&(kind, name.to_owned()))
        .map(|e| &e.origin)
    {
        Some(Origin::Config { file }) => Err(RegistryError::Conflict(format!(
            "{kind} `{name}` comes from the configuration file {}; it is read-only through \
             the API, change the file instead",
            file.display()
        ))),
        _ => Ok(()),
    }
}

/// Validate manifest text as a resource of `kind` (named `name` when given), including
/// its references to the store and the Secrets.
fn check(
    inner: &Inner,
    kind: RegistryKind,
    text: &str,
    name: Option<&str>,
) -> Result<Entry, RegistryError> {
    let label = format!("api/v1/{}", kind.plural());
    let checked = check_resource(&label, text).map_err(|errors| {
        RegistryError::Invalid(
            errors
                .iter()
                .map(|e| FieldError {
                    field: e.field.clone(),
                    message: e.message.clone(),
                })
                .collect(),
        )
    })?;
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(FieldError {
            field: field.to_owned(),
            message,
        })
    };
    if checked.kind != kind.kind() {
        problem(
            "kind",
            format!(
                "this address serves {kind}, not {}; send it to /api/v1/{}",
                checked.kind,
                checked.kind.as_str().to_lowercase() + "s"
            ),
        );
    }
    if let Some(name) = name.filter(|n| *n != checked.name) {
        problem(
            "metadata.name",
            format!(
                "the name `{}` differs from `{name}` in the address; they must be the same",
                checked.name
            ),
        );
    }
    match kind {
        RegistryKind::Device => check_device_refs(inner, &checked.spec, &mut problem),
        RegistryKind::Asset => check_asset_refs(inner, &checked.spec, &mut problem),
    }
    if !problems.is_empty() {
        return Err(RegistryError::Invalid(problems));
    }
    Ok(Entry {
        kind,
        api_version: checked.api_version,
        name: checked.name,
        namespace: checked.namespace,
        spec: checked.spec,
        origin: Origin::Api,
    })
}

fn check_device_refs(inner: &Inner, spec: &Value, problem: &mut impl FnMut(&str, String)) {
    let Some(inbound) = spec
        .pointer("/endpoints/inbound")
        .and_then(Value::as_object)
    else {
        return;
    };
    for (endpoint, settings) in inbound {
        for (block, fields) in [
            (
                "usernamePasswordCredentials",
                &["usernameSecretName", "passwordSecretName"][..],
            ),
            (
                "x509Credentials",
                &["certificateSecretName", "keySecretName"][..],
            ),
        ] {
            for field in fields {
                let Some(reference) = settings
                    .pointer(&format!("/authentication/{block}/{field}"))
                    .and_then(Value::as_str)
                else {
                    continue;
                };
                let secret = secret_name(reference);
                if !inner.secrets.contains_key(secret) {
                    problem(
                        &format!("spec.endpoints.inbound.{endpoint}.authentication.{block}.{field}"),
                        format!(
                            "Secret `{secret}` not found; add a Secret named {secret} to the configuration folder or fix the name"
                        ),
                    );
                }
            }
        }
    }
}

fn check_asset_refs(inner: &Inner, spec: &Value, problem: &mut impl FnMut(&str, String)) {
    let Some(device) = spec
        .pointer("/deviceRef/deviceName")
        .and_then(Value::as_str)
    else {
        return;
    };
    let Some(entry) = inner
        .entries
        .get(&(RegistryKind::Device, device.to_owned()))
    else {
        problem(
            "spec.deviceRef.deviceName",
            format!("Device `{device}` not found; create it first or fix the name"),
        );
        return;
    };
    let Some(endpoint) = spec
        .pointer("/deviceRef/endpointName")
        .and_then(Value::as_str)
    else {
        return;
    };
    let endpoints: Vec<&str> = entry
        .spec
        .pointer("/endpoints/inbound")
        .and_then(Value::as_object)
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if !endpoints.contains(&endpoint) {
        problem(
            "spec.deviceRef.endpointName",
            format!(
                "device `{device}` has no inbound endpoint `{endpoint}`; use one of: {}",
                endpoints.join(", ")
            ),
        );
    }
}
