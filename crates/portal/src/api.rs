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
//! No authentication yet: like the rest of this address, the API is meant for loopback
//! (`--http` defaults to 127.0.0.1:8080).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edgeplane_registry::{FieldError, Registry, RegistryError, RegistryKind};
use serde_json::{json, Value};

/// The `/api/v1/` routes over `registry`.
pub(crate) fn router(registry: Registry) -> Router {
    Router::new()
        .route("/api/v1/{kind}", get(list).post(create))
        .route(
            "/api/v1/{kind}/{name}",
            get(read).put(replace).delete(delete),
        )
        .route("/api/v1/{kind}/{name}/status", get(status))
        .with_state(registry)
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

fn errors(status: StatusCode, errors: &[FieldError]) -> Response {
    json_response(status, &json!({ "errors": errors }))
}

fn message(status: StatusCode, text: String) -> Response {
    errors(
        status,
        &[FieldError {
            field: String::new(),
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
        RegistryError::NotFound(..) => message(StatusCode::NOT_FOUND, e.to_string()),
        RegistryError::Conflict(text) => message(StatusCode::CONFLICT, text),
        RegistryError::Io(..) | RegistryError::Corrupt(..) => {
            message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

fn not_found(kind: RegistryKind, name: &str) -> Response {
    failure(RegistryError::NotFound(kind, name.to_owned()))
}

async fn list(State(registry): State<Registry>, Path(plural): Path<String>) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    let items: Vec<Value> = registry.list(kind).iter().map(|e| e.to_json()).collect();
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
    State(registry): State<Registry>,
    Path(plural): Path<String>,
    body: String,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    match registry.create(kind, &body) {
        Ok(entry) => json_response(StatusCode::CREATED, &entry.to_json()),
        Err(e) => failure(e),
    }
}

async fn read(
    State(registry): State<Registry>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    match registry.get(kind, &name) {
        Some(entry) => json_response(StatusCode::OK, &entry.to_json()),
        None => not_found(kind, &name),
    }
}

async fn replace(
    State(registry): State<Registry>,
    Path((plural, name)): Path<(String, String)>,
    body: String,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    let existed = registry.get(kind, &name).is_some();
    match registry.replace(kind, &name, &body) {
        Ok(entry) => {
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            json_response(code, &entry.to_json())
        }
        Err(e) => failure(e),
    }
}

async fn delete(
    State(registry): State<Registry>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    match registry.delete(kind, &name) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(e),
    }
}

async fn status(
    State(registry): State<Registry>,
    Path((plural, name)): Path<(String, String)>,
) -> Response {
    let kind = match kind_of(&plural) {
        Ok(k) => k,
        Err(text) => return message(StatusCode::NOT_FOUND, text),
    };
    match registry.status(kind, &name) {
        Some(doc) => json_response(StatusCode::OK, &doc),
        None => not_found(kind, &name),
    }
}
