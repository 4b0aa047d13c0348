//! `/api/v1/state`: the state store browser, over the in-process state store client.
//!
//! ```text
//! GET    /api/v1/state?pattern=GLOB   keys matching GLOB (default `*`, at most 500) with values
//! PUT    /api/v1/state/{key}          set (body: the value, as text)
//! DELETE /api/v1/state/{key}          delete (204, or 404 when absent)
//! ```
//!
//! Values are shown as UTF-8 text (lossy) with their version (the hybrid logical clock);
//! keys in paths are percent-decoded, so any key can be named.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use edgeplane_statestore::{SetOptions, StateStoreHandle};
use serde_json::json;

use crate::activity::Activity;
use crate::api::{json_response, message};
use crate::auth::Principal;

const KEYS_SHOWN: usize = 500;

#[derive(Clone)]
pub(crate) struct StateApi {
    pub store: Option<StateStoreHandle>,
    pub activity: Activity,
}

pub(crate) fn router(api: StateApi) -> Router {
    Router::new()
        .route("/api/v1/state", get(list))
        .route("/api/v1/state/{*key}", get(read).put(write).delete(delete))
        .with_state(api)
}

fn no_store() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "",
        "this server has no state store attached".into(),
    )
}

fn failed(e: impl std::fmt::Display) -> Response {
    message(StatusCode::SERVICE_UNAVAILABLE, "", e.to_string())
}

async fn list(State(api): State<StateApi>, uri: Uri) -> Response {
    let Some(store) = &api.store else {
        return no_store();
    };
    let pattern = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "pattern")
        .and_then(|(_, v)| crate::live::percent_decode(v))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "*".to_owned());
    let keys = match store.list(pattern.clone().into_bytes()).await {
        Ok(k) => k,
        Err(e) => return failed(e),
    };
    let total = keys.len();
    let mut items = Vec::new();
    for key in keys.into_iter().take(KEYS_SHOWN) {
        let value = match store.get(key.clone()).await {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        if let Some(v) = value {
            items.push(json!({
                "key": String::from_utf8_lossy(&key),
                "value": String::from_utf8_lossy(&v.value),
                "version": v.version.to_string(),
            }));
        }
    }
    json_response(
        StatusCode::OK,
        &json!({ "pattern": pattern, "total": total, "items": items }),
    )
}

async fn read(State(api): State<StateApi>, Path(key): Path<String>) -> Response {
    let Some(store) = &api.store else {
        return no_store();
    };
    match store.get(key.clone().into_bytes()).await {
        Ok(Some(v)) => json_response(
            StatusCode::OK,
            &json!({ "key": key, "value": String::from_utf8_lossy(&v.value), "version": v.version.to_string() }),
        ),
        Ok(None) => message(StatusCode::NOT_FOUND, "", format!("key `{key}` not found")),
        Err(e) => failed(e),
    }
}

async fn write(
    State(api): State<StateApi>,
    Extension(who): Extension<Principal>,
    Path(key): Path<String>,
    body: String,
) -> Response {
    let Some(store) = &api.store else {
        return no_store();
    };
    match store
        .set(
            key.clone().into_bytes(),
            body.into_bytes(),
            SetOptions::default(),
        )
        .await
    {
        Ok(_) => {
            api.activity
                .record(&who.0, "set", &format!("StateStoreKey/{key}"));
            json_response(StatusCode::OK, &json!({ "key": key }))
        }
        Err(e) => failed(e),
    }
}

async fn delete(
    State(api): State<StateApi>,
    Extension(who): Extension<Principal>,
    Path(key): Path<String>,
) -> Response {
    let Some(store) = &api.store else {
        return no_store();
    };
    match store.del(key.clone().into_bytes(), None).await {
        Ok(true) => {
            api.activity
                .record(&who.0, "deleted", &format!("StateStoreKey/{key}"));
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(false) => message(StatusCode::NOT_FOUND, "", format!("key `{key}` not found")),
        Err(e) => failed(e),
    }
}
