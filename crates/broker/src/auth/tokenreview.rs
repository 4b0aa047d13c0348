//! Kubernetes TokenReview for `ServiceAccountToken` in a cluster: the broker asks the API
//! server (`POST /apis/authentication.k8s.io/v1/tokenreviews`) whether a client's token is
//! valid for the configured audiences, authenticating itself with its own service account
//! token. The in-cluster configuration is the one every Kubernetes client uses: the API
//! server at `KUBERNETES_SERVICE_HOST`:`KUBERNETES_SERVICE_PORT`, its CA and the broker's
//! token in the service account folder (`ca.crt`, `token`). The token file is read at each
//! review, so a rotated (projected) token is picked up. What leaves is the reviewed user
//! name, or why the token was not accepted; the token itself is never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};

use super::custom::Https;

/// Where a pod's service account credentials are mounted.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ClusterConfigError {
    #[error("API server address {0:?}: expected KUBERNETES_SERVICE_HOST and a numeric KUBERNETES_SERVICE_PORT")]
    Address(String),
    #[error("{}: {why}", path.display())]
    File { path: PathBuf, why: String },
}

/// Why the cluster did not accept a token (safe to log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    #[error("the API server gave no answer: {0}")]
    Unavailable(String),
    #[error("the API server did not authenticate the token: {0}")]
    NotAuthenticated(String),
    #[error("the token is not valid for any configured audience")]
    Audience,
}

/// The TokenReview client of one `ServiceAccountToken` method.
pub struct TokenReview {
    https: Https,
    token_file: PathBuf,
}

impl std::fmt::Debug for TokenReview {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReview")
            .field("host", &self.https.host)
            .field("port", &self.https.port)
            .finish_non_exhaustive()
    }
}

impl TokenReview {
    /// The in-cluster client: API server `host`:`port`, credentials in `dir` (normally
    /// [`SERVICE_ACCOUNT_DIR`]). The token file must exist now; it is re-read per review.
    pub fn in_cluster(host: &str, port: &str, dir: &Path) -> Result<Self, ClusterConfigError> {
        let address = || ClusterConfigError::Address(format!("{host}:{port}"));
        let port: u16 = port.trim().parse().map_err(|_| address())?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(address());
        }
        let server_name = ServerName::try_from(host.to_owned()).map_err(|_| address())?;
        let file = |name: &str| {
            let path = dir.join(name);
            std::fs::read(&path).map_err(|e| ClusterConfigError::File {
                path,
                why: e.to_string(),
            })
        };
        let ca = file("ca.crt")?;
        file("token")?;
        let bad_ca = |why: String| ClusterConfigError::File {
            path: dir.join("ca.crt"),
            why,
        };
        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(&ca) {
            roots
                .add(der.map_err(|e| bad_ca(e.to_string()))?)
                .map_err(|e| bad_ca(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(bad_ca("no PEM certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad_ca(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            https: Https {
                host: host.to_owned(),
                port,
                server_name,
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            },
            token_file: dir.join("token"),
        })
    }

    /// Ask the cluster about `token` for `audiences`: the reviewed user name.
    pub async fn review(&self, token: &str, audiences: &[String]) -> Result<String, ReviewError> {
        let bearer = std::fs::read_to_string(&self.token_file)
            .map_err(|e| ReviewError::Unavailable(format!("{}: {e}", self.token_file.display())))?;
        let auth = HeaderValue::from_str(&format!("Bearer {}", bearer.trim())).map_err(|_| {
            ReviewError::Unavailable("the broker's token is not a header value".into())
        })?;
        let headers = [(HeaderName::from_static("authorization"), auth)];
        let body = json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences},
        })
        .to_string();
        let post = self.https.post(PATH, &headers, body);
        let (status, bytes) = match tokio::time::timeout(TIMEOUT, post).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => return Err(ReviewError::Unavailable(why)),
            Err(_) => return Err(ReviewError::Unavailable("no answer within 10 s".into())),
        };
        if !matches!(status, 200 | 201) {
            return Err(ReviewError::Unavailable(format!("HTTP status {status}")));
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| ReviewError::Unavailable("the answer is not JSON".into()))?;
        interpret(&answer, audiences)
    }
}

/// A TokenReview's `status`: authenticated, for one of `audiences`, with a user name.
fn interpret(answer: &Value, audiences: &[String]) -> Result<String, ReviewError> {
    let status = answer.get("status").unwrap_or(&Value::Null);
    if status.get("authenticated").and_then(Value::as_bool) != Some(true) {
        let why = status
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("no reason given");
        return Err(ReviewError::NotAuthenticated(why.to_owned()));
    }
    // An audience-aware authenticator lists the audiences it checked; an empty or absent
    // list would mean it did not check them, which is not enough here.
    let granted = status
        .get("audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .any(|a| audiences.iter().any(|want| want == a));
    if !granted {
        return Err(ReviewError::Audience);
    }
    status
        .pointer("/user/username")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ReviewError::NotAuthenticated("no user name in the review".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_decides() {
        let want = vec!["edge".to_owned()];
        let ok = json!({"status": {"authenticated": true, "audiences": ["edge"], "user": {"username": "system:serviceaccount:ns:app"}}});
        assert_eq!(
            interpret(&ok, &want).as_deref(),
            Ok("system:serviceaccount:ns:app")
        );
        let no = json!({"status": {"authenticated": false, "error": "invalid bearer token"}});
        assert!(
            matches!(interpret(&no, &want), Err(ReviewError::NotAuthenticated(e)) if e == "invalid bearer token")
        );
        let other = json!({"status": {"authenticated": true, "audiences": ["api"], "user": {"username": "u"}}});
        assert_eq!(interpret(&other, &want), Err(ReviewError::Audience));
        let unchecked = json!({"status": {"authenticated": true, "user": {"username": "u"}}});
        assert_eq!(interpret(&unchecked, &want), Err(ReviewError::Audience));
    }
}
