//! The operations portal's single-page app, embedded in the binary: `GET /` is the shell
//! (`ui/index.html`), `GET /ui/{file}` its scripts and styles (`ui/`), hand-written
//! HTML, CSS and vanilla JavaScript modules with no build step and nothing from a CDN.
//!
//! The shell holds no data: every page reads and writes through `/api/v1/`, which needs a
//! session. Responses carry a strict Content-Security-Policy (same origin only, no inline
//! script) and `X-Frame-Options: DENY` against clickjacking.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// (file name, content type, content).
const FILES: &[(&str, &str, &str)] = &[
    ("app.css", "text/css", include_str!("../ui/app.css")),
    ("app.js", "text/javascript", include_str!("../ui/app.js")),
    ("core.js", "text/javascript", include_str!("../ui/core.js")),
    (
        "registry.js",
        "text/javascript",
        include_str!("../ui/registry.js"),
    ),
    (
        "assets.js",
        "text/javascript",
        include_str!("../ui/assets.js"),
    ),
    (
        "flows.js",
        "text/javascript",
        include_str!("../ui/flows.js"),
    ),
    (
        "broker.js",
        "text/javascript",
        include_str!("../ui/broker.js"),
    ),
    (
        "admin.js",
        "text/javascript",
        include_str!("../ui/admin.js"),
    ),
];

const INDEX: &str = include_str!("../ui/index.html");

const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

async fn index() -> Response {
    with_headers("text/html; charset=utf-8", INDEX)
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, ty, body)) => with_headers(ty, body),
        None => (StatusCode::NOT_FOUND, "no such portal file\n").into_response(),
    }
}

/// Bytes of the shell and every file it loads, as served (no compression).
pub fn first_load_bytes() -> usize {
    INDEX.len() + FILES.iter().map(|(_, _, b)| b.len()).sum::<usize>()
}
