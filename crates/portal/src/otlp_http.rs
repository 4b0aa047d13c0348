//! The OTLP/HTTP client both exporters share (metrics in [`crate::otlp`], traces in the
//! binary's `traces` module): one JSON `POST` to a collector URL, over plain HTTP or HTTPS.
//!
//! HTTPS trusts the CA certificates of a configured PEM file, else the system's bundle
//! (`SSL_CERT_FILE`, else the first of the usual distribution paths that exists), read once
//! when the exporter is set up, so a missing or empty file is a configuration error at
//! start, not a warning at every export. Every request uses a fresh connection: exports
//! are seconds apart and a collector restart must not leave a dead connection behind.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

/// Where distributions keep the system's CA bundle (Debian and Ubuntu, then Fedora / RHEL,
/// then openSUSE, then Alpine's alternative path).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A collector URL, ready to post to.
#[derive(Clone)]
pub struct Collector {
    url: String,
    host: String,
    port: u16,
    /// `Host` header value.
    authority: String,
    /// Path and query the request goes to.
    target: String,
    /// Set for `https://` URLs.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("url", &self.url)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Collector {
    /// A client for `url` (`http://` or `https://` with a host). For HTTPS, `ca_file` is the
    /// PEM file of the CA certificates to trust; without one, the system's bundle.
    ///
    /// # Errors
    /// Not such a URL, or no CA certificate could be read.
    pub fn new(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "`{url}` must be an http:// or https:// URL of an OTLP/HTTP collector"
                ))
            }
        };
        let Some(host) = uri.host().filter(|h| !h.is_empty()) else {
            return Err(format!("`{url}` has no host"));
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map_or_else(|| host.clone(), |a| a.as_str().to_owned());
        let target = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        let tls = if https {
            let name = ServerName::try_from(host.clone())
                .map_err(|_| format!("`{host}` is not a valid TLS server name"))?;
            Some((connector(ca_file)?, name))
        } else {
            None
        };
        Ok(Collector {
            url: url.to_owned(),
            host,
            port,
            authority,
            target,
            tls,
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `POST` `body` (OTLP JSON): `Ok` when the collector answered 2xx.
    ///
    /// # Errors
    /// The collector is unreachable, the TLS handshake failed, or it refused the request.
    pub async fn post(&self, body: Vec<u8>) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.send(tcp, body).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS with {}: {e}", self.host))?;
                self.send(tls, body).await
            }
        }
    }

    async fn send<S>(&self, stream: S, body: Vec<u8>) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        // Drives the socket; it ends with the request.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = hyper::Request::post(self.target.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "the collector answered {status}: {}",
                String::from_utf8_lossy(&text[..text.len().min(200)])
            ))
        }
    }
}

/// A TLS client trusting `ca_file`'s certificates, else the system bundle's.
fn connector(ca_file: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let path = match (ca_file, &from_env) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(p)) => p.clone(),
        (None, None) => SYSTEM_BUNDLES
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or("no CA file is configured and no system CA bundle was found (install ca-certificates or set trustedCaFile)")?
            .to_path_buf(),
    };
    let pem = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(&pem) {
        let der = der.map_err(|e| format!("{}: {e}", path.display()))?;
        // A bundle may hold certificates rustls cannot use; the rest still count.
        let _ = roots.add(der);
    }
    if roots.is_empty() {
        return Err(format!("{} holds no CA certificate", path.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        let c = Collector::new("http://127.0.0.1:4318/v1/traces", None).expect("http");
        assert_eq!((c.port, c.target.as_str()), (4318, "/v1/traces"));
        assert_eq!(c.authority, "127.0.0.1:4318");
        assert!(Collector::new("collector:4318", None).is_err());
        assert!(Collector::new("ftp://collector/", None).is_err());
        let missing = Collector::new("https://c:4318", Some(Path::new("/nonexistent/ca.pem")));
        assert!(missing.is_err_and(|e| e.contains("/nonexistent/ca.pem")));
    }
}
