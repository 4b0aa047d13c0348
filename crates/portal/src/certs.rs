//! `/api/v1/certificates`: the OPC UA server certificates the connector rejected, and
//! trusting one of them.
//!
//! ```text
//! GET  /api/v1/certificates/rejected                 [{thumbprint, commonName, file}]
//! POST /api/v1/certificates/rejected/{thumbprint}/trust
//! ```
//!
//! The PKI folder belongs to the connector; the binary hands the portal a [`Pki`] (two
//! functions) so this crate needs no OPC UA code.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::json;

use crate::activity::Activity;
use crate::api::{json_response, message};
use crate::auth::Principal;

/// A certificate the connector rejected.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectedCertificate {
    /// SHA-1 thumbprint, upper-case hex.
    pub thumbprint: String,
    pub common_name: Option<String>,
    pub file: String,
}

/// Lists rejected certificates; the error says what went wrong.
pub type ListRejected = Arc<dyn Fn() -> Result<Vec<RejectedCertificate>, String> + Send + Sync>;
/// Trusts the certificate with this thumbprint; returns the trusted file.
pub type Trust = Arc<dyn Fn(&str) -> Result<String, String> + Send + Sync>;

/// The connector's PKI, as the portal reaches it.
#[derive(Clone)]
pub struct Pki {
    pub list: ListRejected,
    pub trust: Trust,
}

#[derive(Clone)]
pub(crate) struct Certs {
    pub pki: Option<Pki>,
    pub activity: Activity,
}

pub(crate) fn router(certs: Certs) -> Router {
    Router::new()
        .route("/api/v1/certificates/rejected", get(list))
        .route(
            "/api/v1/certificates/rejected/{thumbprint}/trust",
            post(trust),
        )
        .with_state(certs)
}

async fn list(State(certs): State<Certs>) -> Response {
    let Some(pki) = &certs.pki else {
        return json_response(StatusCode::OK, &json!({ "items": [] }));
    };
    match (pki.list)() {
        Ok(items) => json_response(StatusCode::OK, &json!({ "items": items })),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, "", e),
    }
}

async fn trust(
    State(certs): State<Certs>,
    Extension(who): Extension<Principal>,
    Path(thumbprint): Path<String>,
) -> Response {
    let Some(pki) = &certs.pki else {
        return message(
            StatusCode::NOT_FOUND,
            "",
            "this server has no OPC UA connector".into(),
        );
    };
    match (pki.trust)(&thumbprint) {
        Ok(file) => {
            certs
                .activity
                .record(&who.0, "trusted", &format!("Certificate/{thumbprint}"));
            json_response(StatusCode::OK, &json!({ "trusted": file }))
        }
        Err(e) => message(StatusCode::NOT_FOUND, "", e),
    }
}
