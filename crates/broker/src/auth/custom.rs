//! The `Custom` authentication method: an HTTPS webhook speaking Azure IoT Operations' custom
//! authentication API 0.5.0. A CONNECT's user name, password (base64) and TLS client chain
//! (PEM) go out as `POST <endpoint>?api-version=0.5.0`; the answer comes back as an
//! [`Outcome`]: 200 `{expiry, attributes}` allows, 403 `{reason, message}` refuses with the
//! server's CONNACK code, and anything that is not an answer (unreachable, timeout, TLS
//! failure, 422 unsupported version, other statuses, unreadable bodies) makes the method not
//! relevant, so the next method is tried.
//!
//! The webhook's certificate is verified against the CAs of `caCertConfigMap`; the broker can
//! present a client certificate (`auth.x509.secretRef`). One HTTP/1.1 connection per request
//! (hyper's connection API over tokio-rustls): one request per CONNECT, and per AUTH of an
//! MQTT 5 client re-authenticating (`{"type": "auth"}` with the packet's method and data);
//! no state is kept between clients. Credentials are never logged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// The API version this broker speaks.
pub const API_VERSION: &str = "0.5.0";
/// Connect, TLS handshake, request and response together.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Larger answers are not answers.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CustomConfigError {
    #[error("endpoint {0:?}: expected an https:// URL with a host (the webhook must use TLS)")]
    Endpoint(String),
    #[error("caCertConfigMap: no PEM certificate could be read; put the webhook's CA in it")]
    NoCa,
    #[error("caCertConfigMap: {0}")]
    BadCa(String),
    #[error("auth.x509: the client certificate or key cannot be used: {0}")]
    ClientCert(String),
    #[error("headers.{0}: not a valid HTTP header name and value")]
    Header(String),
}

/// What the webhook decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Allowed {
        attributes: BTreeMap<String, String>,
        expiry: Option<SystemTime>,
    },
    /// 403 with the CONNACK reason code the server chose.
    Denied(u8),
    /// No decision (the reason is safe to log).
    Unavailable(String),
}

/// The credentials of one CONNECT, as the webhook sees them.
pub struct ConnectCredentials<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub certs: Option<&'a [CertificateDer<'static>]>,
    /// MQTT 5 enhanced authentication (Authentication Method and Data), which a client needs
    /// on CONNECT to re-authenticate later.
    pub enhanced: Option<(&'a str, &'a [u8])>,
}

/// Settings of one `Custom` method.
pub struct CustomSettings {
    https: Https,
    /// Path and query of the request, `api-version` included.
    target: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl std::fmt::Debug for CustomSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be API keys: not shown.
        f.debug_struct("CustomSettings")
            .field("host", &self.https.host)
            .field("port", &self.https.port)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl CustomSettings {
    /// `endpoint`: the https URL; `ca_pem`: trusted CAs for the webhook's certificate;
    /// `client`: optional (certificate chain, key) PEM the broker presents.
    pub fn new(
        endpoint: &str,
        ca_pem: &[u8],
        client: Option<(&[u8], &[u8])>,
        headers: &[(String, String)],
        timeout: Option<Duration>,
    ) -> Result<Self, CustomConfigError> {
        let bad = || CustomConfigError::Endpoint(endpoint.to_owned());
        let uri: hyper::Uri = endpoint.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https") {
            return Err(bad());
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(bad)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let target = match uri.query() {
            Some(q) => format!("{}?{q}&api-version={API_VERSION}", uri.path()),
            None => format!("{}?api-version={API_VERSION}", uri.path()),
        };
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;

        let mut roots = rustls::RootCertStore::empty();
        for der in CertificateDer::pem_slice_iter(ca_pem) {
            let der = der.map_err(|e| CustomConfigError::BadCa(e.to_string()))?;
            roots
                .add(der)
                .map_err(|e| CustomConfigError::BadCa(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(CustomConfigError::NoCa);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CustomConfigError::BadCa(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| CustomConfigError::ClientCert(e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| CustomConfigError::ClientCert(e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| CustomConfigError::ClientCert(e.to_string()))?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.as_bytes());
                let value = HeaderValue::from_str(v);
                match (name, value) {
                    (Ok(n), Ok(v)) => Ok((n, v)),
                    _ => Err(CustomConfigError::Header(k.clone())),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            https: Https {
                host,
                port,
                server_name,
                tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            },
            target,
            headers,
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
        })
    }

    /// Ask the webhook about a CONNECT.
    pub async fn authenticate(&self, creds: &ConnectCredentials<'_>) -> Outcome {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), "connect".into());
        if let Some(u) = creds.username {
            body.insert("username".into(), u.into());
        }
        if let Some(p) = creds.password {
            body.insert("password".into(), STANDARD.encode(p).into());
        }
        if let Some(chain) = creds.certs.filter(|c| !c.is_empty()) {
            body.insert("certs".into(), pem_chain(chain).into());
        }
        if let Some((method, data)) = creds.enhanced {
            insert_enhanced(&mut body, method, data);
        }
        self.decide(body).await
    }

    /// Ask the webhook about an AUTH packet re-authenticating a connected MQTT 5 client
    /// (`{"type": "auth"}`, with the packet's method and data).
    pub async fn reauthenticate(&self, method: &str, data: &[u8]) -> Outcome {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), "auth".into());
        insert_enhanced(&mut body, method, data);
        self.decide(body).await
    }

    async fn decide(&self, body: serde_json::Map<String, Value>) -> Outcome {
        let body = Value::Object(body).to_string();
        let post = self.https.post(&self.target, &self.headers, body);
        match tokio::time::timeout(self.timeout, post).await {
            Ok(Ok((status, bytes))) => interpret(status, &bytes),
            Ok(Err(why)) => Outcome::Unavailable(why),
            Err(_) => {
                Outcome::Unavailable(format!("no answer within {} s", self.timeout.as_secs_f32()))
            }
        }
    }
}

/// An HTTPS endpoint (host, port, verified server name, TLS client settings), asked with one
/// HTTP/1.1 connection per request.
pub(crate) struct Https {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) server_name: ServerName<'static>,
    pub(crate) tls: tokio_rustls::TlsConnector,
}

impl Https {
    /// POST `body` (JSON) to `target` with `headers`: the status and body of the answer.
    pub(crate) async fn post(
        &self,
        target: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: String,
    ) -> Result<(u16, Bytes), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        // The connection future drives the socket; it ends with the request.
        let driver = tokio::spawn(conn);
        let authority = if self.port == 443 {
            host_header(&self.host)
        } else {
            format!("{}:{}", host_header(&self.host), self.port)
        };
        let mut request = hyper::Request::post(target)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("request: {e}"))?;
        for (k, v) in headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
            let status = response.status().as_u16();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| format!("response body: {e}"))?
                .to_bytes();
            Ok((status, bytes))
        }
        .await;
        driver.abort();
        result
    }
}

/// The Authentication Method and Data of CONNECT or AUTH. API 0.5.0 names no fields for
/// them (its AUTH request is `{"type": "auth"}`); these are Edgeplane's, which servers
/// written for 0.5.0 ignore.
fn insert_enhanced(body: &mut serde_json::Map<String, Value>, method: &str, data: &[u8]) {
    body.insert("authenticationMethod".into(), method.into());
    body.insert("authenticationData".into(), STANDARD.encode(data).into());
}

fn host_header(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn pem_chain(chain: &[CertificateDer<'static>]) -> String {
    let mut out = String::new();
    for der in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = STANDARD.encode(der.as_ref());
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Turn the webhook's status and body into an outcome.
fn interpret(status: u16, body: &[u8]) -> Outcome {
    let json = || serde_json::from_slice::<Value>(body).ok();
    match status {
        200 => {
            let Some(v) = json().filter(Value::is_object) else {
                return Outcome::Unavailable("200 without a JSON object body".into());
            };
            let expiry = match v.get("expiry") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => match parse_rfc3339(s) {
                    Some(t) => Some(t),
                    None => return Outcome::Unavailable(format!("expiry {s:?} is not RFC 3339")),
                },
                Some(_) => return Outcome::Unavailable("expiry is not a string".into()),
            };
            let attributes = v
                .get("attributes")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                            (k.clone(), v)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Outcome::Allowed { attributes, expiry }
        }
        403 => {
            let reason = json()
                .and_then(|v| v.get("reason").and_then(Value::as_u64))
                .and_then(|r| u8::try_from(r).ok())
                // A refusal must be a CONNACK error code; anything else is Not authorized.
                .filter(|r| *r >= 0x80)
                .unwrap_or(0x87);
            let message =
                json().and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned));
            tracing::info!(
                reason = format!("0x{reason:02X}"),
                message = message.as_deref().unwrap_or(""),
                "custom authentication server refused the client"
            );
            Outcome::Denied(reason)
        }
        422 => {
            let versions = json()
                .and_then(|v| v.get("supportedVersions").cloned())
                .map_or_else(|| "unknown".to_owned(), |v| v.to_string());
            Outcome::Unavailable(format!(
                "the server does not support API version {API_VERSION} (it supports {versions})"
            ))
        }
        other => Outcome::Unavailable(format!("unexpected HTTP status {other}")),
    }
}

/// Parse an RFC 3339 date-time (`2030-05-08T20:04:16+00:00`, `...Z`, fractional seconds).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let frac = s.get(start..i).filter(|f| !f.is_empty())?;
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().ok()?;
    }
    let offset = match s.get(i..)? {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            sign * (h * 3600 + m * 60)
        }
        _ => return None,
    };
    // Days from 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        let at = |s| parse_rfc3339(s).and_then(|t| t.duration_since(UNIX_EPOCH).ok());
        assert_eq!(at("1970-01-01T00:00:00Z"), Some(Duration::ZERO));
        assert_eq!(
            at("2030-05-08T20:04:16+00:00"),
            Some(Duration::from_secs(1_904_501_056))
        );
        assert_eq!(
            at("2030-05-08T22:04:16.5+02:00"),
            Some(Duration::new(1_904_501_056, 500_000_000))
        );
        assert_eq!(
            at("2000-02-29T00:00:00Z"),
            Some(Duration::from_secs(951_782_400))
        );
        for bad in [
            "",
            "2030-05-08",
            "2030-13-08T00:00:00Z",
            "2030-05-08T00:00:00",
            "x030-05-08T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn interprets_answers() {
        let allowed = interpret(
            200,
            br#"{"expiry":"2030-05-08T20:04:16Z","attributes":{"group":"a","n":3}}"#,
        );
        let Outcome::Allowed { attributes, expiry } = allowed else {
            panic!("{allowed:?}")
        };
        assert_eq!(attributes.get("group").map(String::as_str), Some("a"));
        assert_eq!(attributes.get("n").map(String::as_str), Some("3"));
        assert!(expiry.is_some());
        assert_eq!(
            interpret(200, b"{\"attributes\":{}}"),
            Outcome::Allowed {
                attributes: BTreeMap::new(),
                expiry: None
            }
        );
        assert_eq!(
            interpret(403, br#"{"reason":134,"message":"no"}"#),
            Outcome::Denied(0x86)
        );
        assert_eq!(interpret(403, b"{\"reason\":0}"), Outcome::Denied(0x87));
        assert_eq!(interpret(403, b"garbage"), Outcome::Denied(0x87));
        assert!(
            matches!(interpret(422, br#"{"supportedVersions":["9.0"]}"#), Outcome::Unavailable(m) if m.contains("9.0"))
        );
        assert!(matches!(interpret(500, b""), Outcome::Unavailable(_)));
        assert!(matches!(interpret(200, b"[]"), Outcome::Unavailable(_)));
    }

    #[test]
    fn endpoint_must_be_https() {
        for bad in ["http://auth", "auth", "https://"] {
            assert!(
                matches!(
                    CustomSettings::new(bad, b"", None, &[], None),
                    Err(CustomConfigError::Endpoint(_))
                ),
                "{bad}"
            );
        }
    }
}
