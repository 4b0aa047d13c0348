//! The registry file: the API-origin resources as one JSON document,
//! `{"version": 1, "resources": [<manifest>, ...]}`, in the data folder.
//!
//! Written atomically: a temporary file beside it, fsync, rename over the old one, fsync of
//! the folder, so a crash leaves the old or the new file, never a torn one. Config-origin
//! resources are not written (the folder is their source of truth).

use std::fs::{self, File};
use std::io::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use crate::{Entry, Origin, RegistryError, RegistryKind};

/// The file name inside the data folder.
pub(crate) const FILE_NAME: &str = "registry.json";

pub(crate) fn load(file: &Path) -> Result<Vec<Entry>, RegistryError> {
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RegistryError::Corrupt(file.to_path_buf(), e.to_string())),
    };
    let corrupt = |why: String| RegistryError::Corrupt(file.to_path_buf(), why);
    let doc: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let resources = doc
        .get("resources")
        .and_then(Value::as_array)
        .ok_or_else(|| corrupt("no `resources` list".into()))?;
    let mut out = Vec::new();
    for r in resources {
        let text = |p: &str| r.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let kind = match text("/kind").as_deref() {
            Some("Device") => RegistryKind::Device,
            Some("Asset") => RegistryKind::Asset,
            other => return Err(corrupt(format!("unknown kind {other:?}"))),
        };
        let name =
            text("/metadata/name").ok_or_else(|| corrupt("a resource has no name".into()))?;
        out.push(Entry {
            kind,
            api_version: text("/apiVersion").unwrap_or_default(),
            name,
            namespace: text("/metadata/namespace"),
            spec: r.get("spec").cloned().unwrap_or(Value::Null),
            origin: Origin::Api,
        });
    }
    Ok(out)
}

pub(crate) fn save(file: &Path, resources: &[Value]) -> Result<(), RegistryError> {
    let io = |e| RegistryError::Io(file.to_path_buf(), e);
    let dir = file.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = file.with_extension("json.tmp");
    let body = json!({ "version": 1, "resources": resources });
    let mut f = File::create(&tmp).map_err(io)?;
    f.write_all(body.to_string().as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    fs::rename(&tmp, file).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    Ok(())
}
