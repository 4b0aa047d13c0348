//! The REST API under `/api/v1/`: devices and assets of the registry.
//!
//! ```text
//! GET    /api/v1/{devices|assets}                list  {"apiVersion","kind":"DeviceList","items":[...]}
//! POST   /api/v1/{devices|assets}                create (201), body: one manifest, JSON or YAML
//! GET    /api/v1/{devices|assets}/{name}         one manifest, with status.origin
//! PUT    /api/v1/{devices|assets}/{name}         replace or create (200 / 201)
//! DELETE /api/v1/{devices|assets}/{name}         204
//! GET    /api/v1/{devices|assets}/{name}/status  runtime status from the connector
//! ```
//!
//! Bodies are manifests in the shape of the configuration folder's (`apiVersion`, `kind`,
//! `metadata`, `spec`; `status` is ignored). Errors are JSON `{"errors": [{"field",
//! "message"}]}`: 422 with one entry per invalid field (the configuration crate's own
//! checks), 404, 409 (name taken, resource from the configuration folder, device in use),
//! 500 (the data folder cannot be written).
//!
//! Every call needs a session (see `auth.rs`); each change is recorded in the activity log
//! with the signed-in user.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use edgeplane_registry::{FieldError, Registry, RegistryError, RegistryKind};
use serde_json::{json, Value};

use crate::activity::Activity;
use crate::auth::Principal;

/// What the registry routes use.
#[derive(Clone)]
pub(crate) struct RegistryApi {
    pub registry: Registry,
    pub activity: Activity,
}

/// The `/api/v1/` routes over `registry`.
pub(crate) fn router(registry: RegistryApi) -> Router {
    Router::new()
        .route("/api/v1/{kind}", get(list).post(create))
        .route(
            "/api/v1/{kind}/{name}",
            get(read).put(replace).delete(delete),
        )
        .route("/api/v1/{kind}/{name}/status", get(status))
        .with_state(registry)
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

pub(crate) fn errors(status: StatusCode, errors: &[FieldError]) -> Response {
    json_response(status, &json!({ "errors": errors }))
}

/// One error, about `field` (empty for the whole request).
pub(crate) fn message(status: StatusCode, field: &str, text: String) -> Response {
    errors(
        status,
        &[FieldError {
            field: field.to_owned(),
            message: text,
        }],
    )
}

/// The kind an API path segment names; the error is the 404 message.
fn kind_of(plural: &str) -> Result<RegistryKind, String> {
    match plural {
        "devices" => Ok(RegistryKind::Device),
        "assets" => Ok(RegistryKind::Asset),
        other => Err(format!(
            "no resources called `{other}`; this API serves /api/v1/devices and /api/v1/assets"
        )),
    }
}

fn failure(e: RegistryError) -> Response {
    match e {
        RegistryError::Invalid(list) => errors(StatusCode::UNPROCESSABLE_ENTITY, &list),
        RegistryError::NotFound(..) => message(StatusCode::NOT_FOUND, "", e.to_string()),
        RegistryError::Conflict(text) => message(StatusCode::CONFLICT, "", text),
        RegistryError::Io(..) | RegistryError::Corrupt(..) => {
            message(StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string())
        }
    }
}

fn not_found(kind: RegistryKind, name: &str) -> Response {
    failure(RegistryError::NotFound(kind, name.to_owned()))
}

async fn list(State(api): State<RegistryApi>, Path(plural): Path<String>) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    let items: Vec<Value> = api
        .registry
        .list(kind)
        .iter()
        .map(|e| e.to_json())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "apiVersion": edgeplane_config::EDGEPLANE_API_VERSION,
            "kind": format!("{kind}List"),
            "items": items,
        }),
    )
}

async fn create(
    State(api): State<RegistryApi>,
    Extension(who): Extension<Principal>,
    Path(plural): Path<String>,
    body: String,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    match api.registry.create(kind, &body) {
        Ok(entry) => {
            api.activity
                .record(&who.0, "created", &format!("{kind}/{}", entry.name));
            json_response(StatusCode::CREATED, &entry.to_json())
        }
        Err(e) => failure(e),
    }
}

async fn read(
    State(api): State<RegistryApi>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    match api.registry.get(kind, &name) {
        Some(entry) => json_response(StatusCode::OK, &entry.to_json()),
        None => not_found(kind, &name),
    }
}

async fn replace(
    State(api): State<RegistryApi>,
    Extension(who): Extension<Principal>,
    Path((plural, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    let existed = api.registry.get(kind, &name).is_some();
    match api.registry.replace(kind, &name, &body) {
        Ok(entry) => {
            let (code, verb) = if existed {
                (StatusCode::OK, "replaced")
            } else {
                (StatusCode::CREATED, "created")
            };
            api.activity.record(&who.0, verb, &format!("{kind}/{name}"));
            json_response(code, &entry.to_json())
        }
        Err(e) => failure(e),
    }
}

async fn delete(
    State(api): State<RegistryApi>,
    Extension(who): Extension<Principal>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    match api.registry.delete(kind, &name) {
        Ok(()) => {
            api.activity
                .record(&who.0, "deleted", &format!("{kind}/{name}"));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => failure(e),
    }
}

async fn status(
    State(api): State<RegistryApi>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, "", text),
    };
    match api.registry.status(kind, &name) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => not_found(kind, &name),
    }
}
