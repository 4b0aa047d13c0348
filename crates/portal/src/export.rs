//! `GET /api/v1/export`: every resource as one multi-document YAML text, the shape of a
//! configuration folder: devices and assets (from the folder and the API), then the
//! dataflows of the folder (including those the portal wrote). `status` is left out;
//! `?kind=Device|Asset|Dataflow` keeps one kind.

use axum::extract::State;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use edgeplane_registry::{Registry, RegistryKind};
use serde_json::Value;

use crate::flows::{self, Flows};
use crate::yaml::to_yaml;

#[derive(Clone)]
pub(crate) struct Export {
    pub registry: Registry,
    pub flows: Flows,
}

pub(crate) fn router(export: Export) -> Router {
    Router::new()
        .route("/api/v1/export", get(export_all))
        .with_state(export)
}

/// The manifests, in export order.
pub(crate) fn manifests(export: &Export) -> Vec<Value> {
    let mut out = Vec::new();
    for kind in [RegistryKind::Device, RegistryKind::Asset] {
        for entry in export.registry.list(kind) {
            let mut m = entry.to_json();
            if let Some(o) = m.as_object_mut() {
                o.remove("status");
            }
            out.push(m);
        }
    }
    out.extend(flows::manifests(&export.flows));
    out
}

async fn export_all(State(export): State<Export>, uri: Uri) -> Response {
    let only = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "kind")
        .map(|(_, v)| v.to_owned());
    let mut text = String::from("# Exported by the Edgeplane portal\n");
    for m in manifests(&export) {
        if only
            .as_deref()
            .is_some_and(|k| m["kind"].as_str() != Some(k))
        {
            continue;
        }
        text.push_str("---\n");
        text.push_str(&to_yaml(&m));
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/yaml; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"edgeplane-export.yaml\"",
            ),
        ],
        text,
    )
        .into_response()
}
