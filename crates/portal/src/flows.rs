//! `/api/v1/dataflows`: the dataflows of the configuration folder, with health and message
//! counts from the running dataflows' status board, and the ones the portal manages.
//!
//! ```text
//! GET    /api/v1/dataflows                 list: manifests + status (origin, mode, health, messages)
//! POST   /api/v1/dataflows                 create (201), body: one Dataflow manifest, JSON or YAML
//! GET    /api/v1/dataflows/{name}          one
//! PUT    /api/v1/dataflows/{name}          replace or create (200 / 201)
//! DELETE /api/v1/dataflows/{name}          204
//! POST   /api/v1/dataflows/{name}/enable   spec.mode: Enabled (also /disable)
//! POST   /api/v1/dataflows/dry-run         {"manifest", "samples" (JSON lines), "topic"} -> results
//! POST   /api/v1/parse                     a manifest as YAML or JSON -> {"manifest"} (for the YAML view)
//! ```
//!
//! A dataflow made in the portal is a file of the configuration folder,
//! `portal-dataflow-<name>.yaml`, written whole (temporary file, then rename): the
//! binary's folder reload (every 5 s) starts, restarts or stops it like any other, it
//! survives a restart, and it is in every export and `edgeplane validate` of the folder.
//! Other files of the folder are read-only here. A manifest is checked with the rest of the
//! folder (references to endpoints and profiles, expressions compiled) before it is written.

use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use edgeplane_config::{check_resource, ConfigErrors, Kind};
use edgeplane_dataflow::runtime::StatusBoard;
use edgeplane_dataflow::{dry_run, resources, Datasets};
use edgeplane_registry::FieldError;
use serde_json::{json, Value};

use crate::activity::Activity;
use crate::api::{errors, json_response, message};
use crate::auth::Principal;
use crate::yaml::to_yaml;

const PREFIX: &str = "portal-dataflow-";
const API_VERSION: &str = "connectivity.iotoperations.azure.com/v1";
/// The name a dry run gives its copy of the dataflow, so it never meets the real one.
const TRIAL_NAME: &str = "portal-dry-run";

#[derive(Clone)]
pub(crate) struct Flows {
    pub config_dir: Option<PathBuf>,
    pub board: Option<StatusBoard>,
    pub activity: Activity,
}

pub(crate) fn router(flows: Flows) -> Router {
    Router::new()
        .route("/api/v1/dataflows", get(list).post(create))
        .route("/api/v1/dataflows/dry-run", post(try_it))
        .route(
            "/api/v1/dataflows/{name}",
            get(read).put(replace).delete(delete),
        )
        .route("/api/v1/dataflows/{name}/{mode}", post(set_mode))
        .route("/api/v1/parse", post(parse))
        .with_state(flows)
}

fn config_errors(e: &ConfigErrors) -> Response {
    let list: Vec<FieldError> = e
        .iter()
        .map(|e| FieldError {
            field: e.field.clone(),
            message: match &e.resource {
                Some(r) if !r.ends_with(TRIAL_NAME) => format!("{} ({r})", e.message),
                _ => e.message.clone(),
            },
        })
        .collect();
    errors(StatusCode::UNPROCESSABLE_ENTITY, &list)
}

fn no_folder() -> Response {
    message(
        StatusCode::CONFLICT,
        "",
        "this instance runs without a configuration folder; start it with `edgeplane run --config DIR` to manage dataflows".into(),
    )
}

/// Every manifest file directly in `dir` except `skip`, as one multi-document text.
fn folder_text(dir: &Path, skip: Option<&str>) -> std::io::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
                && p.file_name().and_then(|n| n.to_str()) != skip
        })
        .collect();
    files.sort();
    let mut text = String::new();
    for f in files {
        text.push_str(&std::fs::read_to_string(&f)?);
        text.push_str("\n---\n");
    }
    Ok(text)
}

fn file_name(name: &str) -> String {
    format!("{PREFIX}{name}.yaml")
}

/// A manifest from the API: parsed, a Dataflow, with its name checked.
fn parse_manifest(body: &str) -> Result<(String, Value), Response> {
    let checked = check_resource("api/v1/dataflows", body).map_err(|e| config_errors(&e))?;
    if checked.kind != Kind::Dataflow {
        return Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "kind",
            format!(
                "this address serves Dataflow, not {}; send it to its own address",
                checked.kind
            ),
        ));
    }
    let name = checked.name;
    let safe = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !safe {
        return Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata.name",
            "use lowercase letters, digits and '-' (at most 63)".into(),
        ));
    }
    let mut metadata = json!({ "name": name });
    if let Some(ns) = checked.namespace {
        metadata["namespace"] = json!(ns);
    }
    let manifest = json!({
        "apiVersion": if checked.api_version.is_empty() { API_VERSION.to_owned() } else { checked.api_version },
        "kind": "Dataflow",
        "metadata": metadata,
        "spec": checked.spec,
    });
    Ok((name, manifest))
}

/// Check `manifest` together with the rest of the folder (without the file `skip`).
fn check_with_folder(dir: &Path, skip: &str, manifest: &Value) -> Result<(), Response> {
    let mut text = folder_text(dir, Some(skip)).map_err(|e| {
        message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "",
            format!("cannot read {}: {e}", dir.display()),
        )
    })?;
    text.push_str(&to_yaml(manifest));
    let config = edgeplane_config::load_str(&dir.join(skip).display().to_string(), &text)
        .map_err(|e| config_errors(&e))?;
    resources::plans(&config, None).map_err(|e| config_errors(&e))?;
    Ok(())
}

fn status_of(flows: &Flows, name: &str, spec: &Value, file: &Path) -> Value {
    let mode = spec
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("Enabled");
    let running = flows
        .board
        .as_ref()
        .and_then(|b| b.statuses().into_iter().find(|s| s.name == name));
    let portal = file
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX));
    let origin = if portal {
        json!({ "source": "portal", "file": file })
    } else {
        json!({ "source": "config", "file": file })
    };
    let mut status = json!({ "origin": origin, "mode": mode });
    match running {
        Some(s) => {
            use std::sync::atomic::Ordering::Relaxed;
            let c = &s.counters;
            status["health"] = json!(s.health());
            status["problem"] = json!(*s.problem.borrow());
            status["messages"] = json!({
                "received": c.received.load(Relaxed),
                "sent": c.sent.load(Relaxed),
                "filtered": c.filtered.load(Relaxed),
                "unroutable": c.unroutable.load(Relaxed),
                "failed": c.failed.load(Relaxed),
            });
        }
        None if mode == "Disabled" => status["health"] = json!("Disabled"),
        None => status["health"] = json!("Starting"),
    }
    status
}

/// Every dataflow of the folder as (name, manifest with status).
fn all(flows: &Flows) -> Result<Vec<(String, Value)>, Response> {
    let Some(dir) = &flows.config_dir else {
        return Ok(Vec::new());
    };
    let config = edgeplane_config::load_dir(dir).map_err(|e| config_errors(&e))?;
    Ok(config
        .dataflows
        .iter()
        .map(|(name, doc)| {
            let mut metadata = json!({ "name": name });
            if let Some(ns) = &doc.resource.namespace {
                metadata["namespace"] = json!(ns);
            }
            let manifest = json!({
                "apiVersion": API_VERSION,
                "kind": "Dataflow",
                "metadata": metadata,
                "spec": doc.spec,
                "status": status_of(flows, name, &doc.spec, &doc.resource.file),
            });
            (name.clone(), manifest)
        })
        .collect())
}

/// The dataflows as manifests without status, for exports.
pub(crate) fn manifests(flows: &Flows) -> Vec<Value> {
    all(flows)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, mut m)| {
            if let Some(o) = m.as_object_mut() {
                o.remove("status");
            }
            m
        })
        .collect()
}

async fn list(State(flows): State<Flows>) -> Response {
    match all(&flows) {
        Ok(items) => json_response(
            StatusCode::OK,
            &json!({
                "apiVersion": API_VERSION,
                "kind": "DataflowList",
                "items": items.into_iter().map(|(_, m)| m).collect::<Vec<_>>(),
            }),
        ),
        Err(r) => r,
    }
}

async fn read(State(flows): State<Flows>, UrlPath(name): UrlPath<String>) -> Response {
    match all(&flows) {
        Ok(items) => match items.into_iter().find(|(n, _)| *n == name) {
            Some((_, m)) => json_response(StatusCode::OK, &m),
            None => not_found(&name),
        },
        Err(r) => r,
    }
}

fn not_found(name: &str) -> Response {
    message(
        StatusCode::NOT_FOUND,
        "",
        format!("Dataflow `{name}` not found"),
    )
}

/// Where dataflow `name` is defined, if anywhere.
fn defined_in(dir: &Path, name: &str) -> Result<Option<PathBuf>, Response> {
    let config = edgeplane_config::load_dir(dir).map_err(|e| config_errors(&e))?;
    Ok(config.dataflows.get(name).map(|d| d.resource.file.clone()))
}

fn write(dir: &Path, name: &str, manifest: &Value) -> Result<(), Response> {
    let path = dir.join(file_name(name));
    let tmp = dir.join(format!(".{}.tmp", file_name(name)));
    let text = format!(
        "# Written by the Edgeplane portal; edit it here or in the portal.\n{}",
        to_yaml(manifest)
    );
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                format!(
                    "cannot write {}: {e}; check the folder's permissions",
                    path.display()
                ),
            )
        })
}

fn read_only(name: &str, file: &Path) -> Response {
    message(
        StatusCode::CONFLICT,
        "",
        format!(
            "Dataflow `{name}` comes from {}; edit that file (the portal changes only the dataflows it created)",
            file.display()
        ),
    )
}

fn is_portal_file(file: &Path) -> bool {
    file.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX))
}

/// Create (when `expected` is None the name must be new) or replace dataflow `name`.
fn save(
    flows: &Flows,
    expected: Option<&str>,
    body: &str,
) -> Result<(StatusCode, Value), Response> {
    let Some(dir) = &flows.config_dir else {
        return Err(no_folder());
    };
    let (name, manifest) = parse_manifest(body)?;
    if let Some(e) = expected {
        if e != name {
            return Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "metadata.name",
                format!("the address names `{e}` but the manifest `{name}`; make them the same"),
            ));
        }
    }
    let existing = defined_in(dir, &name)?;
    let code = match (&existing, expected) {
        (Some(file), _) if !is_portal_file(file) => return Err(read_only(&name, file)),
        (Some(_), None) => {
            return Err(message(
                StatusCode::CONFLICT,
                "metadata.name",
                format!("Dataflow `{name}` exists already; replace it with PUT /api/v1/dataflows/{name} or choose another name"),
            ))
        }
        (Some(_), Some(_)) => StatusCode::OK,
        (None, _) => StatusCode::CREATED,
    };
    check_with_folder(dir, &file_name(&name), &manifest)?;
    write(dir, &name, &manifest)?;
    Ok((code, manifest))
}

async fn create(
    State(flows): State<Flows>,
    Extension(who): Extension<Principal>,
    body: String,
) -> Response {
    match save(&flows, None, &body) {
        Ok((code, m)) => {
            flows.activity.record(
                &who.0,
                "created",
                &format!(
                    "Dataflow/{}",
                    m["metadata"]["name"].as_str().unwrap_or_default()
                ),
            );
            json_response(code, &m)
        }
        Err(r) => r,
    }
}

async fn replace(
    State(flows): State<Flows>,
    Extension(who): Extension<Principal>,
    UrlPath(name): UrlPath<String>,
    body: String,
) -> Response {
    match save(&flows, Some(&name), &body) {
        Ok((code, m)) => {
            let verb = if code == StatusCode::CREATED {
                "created"
            } else {
                "replaced"
            };
            flows
                .activity
                .record(&who.0, verb, &format!("Dataflow/{name}"));
            json_response(code, &m)
        }
        Err(r) => r,
    }
}

async fn delete(
    State(flows): State<Flows>,
    Extension(who): Extension<Principal>,
    UrlPath(name): UrlPath<String>,
) -> Response {
    let Some(dir) = &flows.config_dir else {
        return no_folder();
    };
    match defined_in(dir, &name) {
        Err(r) => r,
        Ok(None) => not_found(&name),
        Ok(Some(file)) if !is_portal_file(&file) => read_only(&name, &file),
        Ok(Some(file)) => match std::fs::remove_file(&file) {
            Ok(()) => {
                flows
                    .activity
                    .record(&who.0, "deleted", &format!("Dataflow/{name}"));
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                format!("cannot delete {}: {e}", file.display()),
            ),
        },
    }
}

async fn set_mode(
    State(flows): State<Flows>,
    Extension(who): Extension<Principal>,
    UrlPath((name, action)): UrlPath<(String, String)>,
) -> Response {
    let mode = match action.as_str() {
        "enable" => "Enabled",
        "disable" => "Disabled",
        other => {
            return message(
                StatusCode::NOT_FOUND,
                "",
                format!("no action `{other}`; use /enable or /disable"),
            )
        }
    };
    let items = match all(&flows) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let Some((_, mut manifest)) = items.into_iter().find(|(n, _)| *n == name) else {
        return not_found(&name);
    };
    if let Some(o) = manifest.as_object_mut() {
        o.remove("status");
    }
    manifest["spec"]["mode"] = json!(mode);
    match save(&flows, Some(&name), &manifest.to_string()) {
        Ok((_, m)) => {
            let verb = if mode == "Enabled" {
                "enabled"
            } else {
                "disabled"
            };
            flows
                .activity
                .record(&who.0, verb, &format!("Dataflow/{name}"));
            json_response(StatusCode::OK, &m)
        }
        Err(r) => r,
    }
}

/// The dry run ("try it"): the manifest (as sent, not saved) over sample lines.
async fn try_it(State(flows): State<Flows>, body: String) -> Response {
    let req: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return message(
                StatusCode::BAD_REQUEST,
                "",
                format!("body is not JSON: {e}"),
            )
        }
    };
    let manifest_text = match &req["manifest"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (_, mut manifest) = match parse_manifest(&manifest_text) {
        Ok(m) => m,
        Err(r) => return r,
    };
    manifest["metadata"]["name"] = json!(TRIAL_NAME);
    manifest["spec"]["mode"] = json!("Enabled");
    let mut text = match &flows.config_dir {
        Some(dir) => match folder_text(dir, None) {
            Ok(t) => t,
            Err(e) => {
                return message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "",
                    format!("cannot read {}: {e}", dir.display()),
                )
            }
        },
        None => String::new(),
    };
    text.push_str(&to_yaml(&manifest));
    let config = match edgeplane_config::load_str("dry-run.yaml", &text) {
        Ok(c) => c,
        Err(e) => return config_errors(&e),
    };
    let plans = match resources::plans(&config, None) {
        Ok(p) => p,
        Err(e) => return config_errors(&e),
    };
    let Some(plan) = plans.iter().find(|p| p.name == TRIAL_NAME) else {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
            "the dataflow did not produce a runnable plan".into(),
        );
    };
    let samples = req["samples"].as_str().unwrap_or_default();
    let topic = req["topic"].as_str().unwrap_or("sample");
    let results: Vec<Value> = dry_run::run(plan, samples, topic, &Datasets::new())
        .iter()
        .map(|r| json!(r.to_string()))
        .collect();
    json_response(StatusCode::OK, &json!({ "results": results }))
}

/// YAML or JSON text of any resource to its manifest as JSON (checked as the folder would).
async fn parse(body: String) -> Response {
    match check_resource("yaml", &body) {
        Ok(c) => {
            let mut metadata = json!({ "name": c.name });
            if let Some(ns) = c.namespace {
                metadata["namespace"] = json!(ns);
            }
            json_response(
                StatusCode::OK,
                &json!({ "manifest": {
                    "apiVersion": c.api_version,
                    "kind": c.kind.to_string(),
                    "metadata": metadata,
                    "spec": c.spec,
                }}),
            )
        }
        Err(e) => config_errors(&e),
    }
}
