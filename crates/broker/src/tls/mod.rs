//! TLS for listeners (rustls, TLS 1.2 and 1.3, `ring` provider): a server identity built from
//! PEM (a `kubernetes.io/tls` Secret's `tls.crt` and `tls.key`), swappable at run time so a
//! renewed certificate applies to new connections without dropping connected clients, and,
//! for ports with X509 authentication, client certificates verified against trusted CAs
//! (chain and validity; a client without a certificate may still try other methods), which
//! can be replaced at run time the same way.

mod issue;

use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub use issue::{issue_ca, issue_leaf, CertError, Issued};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificate found in the PEM data (tls.crt); expected one or more \"BEGIN CERTIFICATE\" blocks")]
    NoCertificate,
    #[error("the certificate PEM data (tls.crt) cannot be read: {0}")]
    BadCertificate(String),
    #[error("the private key PEM data (tls.key) cannot be read: {0}; expected a PKCS#8, PKCS#1 or SEC1 key")]
    BadKey(String),
    #[error("the certificate and key do not form a usable identity: {0}")]
    Identity(#[from] rustls::Error),
}

/// A listener's server identity and trusted client CAs; [`ServerTls::reload`] and
/// [`ServerTls::set_client_cas`] swap them for new connections (established sessions keep
/// what they were made with).
pub struct ServerTls {
    state: RwLock<State>,
}

/// What the current configuration was built from, so either half can be replaced alone.
struct State {
    config: Arc<ServerConfig>,
    /// PEM certificate chain and key of the identity.
    identity: (Vec<u8>, Vec<u8>),
    /// CAs that client certificates must chain to (X509 authentication), if any.
    client_roots: Option<Arc<RootCertStore>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// Build from a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<Arc<ServerTls>, TlsError> {
        Self::with_client_cas(cert_chain, key, None)
    }

    /// Like [`ServerTls::from_pem`], also asking clients for certificates that must chain to
    /// one of the PEM CAs in `client_cas` (clients may still connect without one).
    pub fn with_client_cas(
        cert_chain: &[u8],
        key: &[u8],
        client_cas: Option<&[u8]>,
    ) -> Result<Arc<ServerTls>, TlsError> {
        let client_roots = client_cas.map(roots).transpose()?;
        let config = server_config(cert_chain, key, client_roots.as_ref())?;
        Ok(Arc::new(ServerTls {
            state: RwLock::new(State {
                config,
                identity: (cert_chain.to_vec(), key.to_vec()),
                client_roots,
            }),
        }))
    }

    /// Replace the identity; connections already established keep theirs.
    pub fn reload(&self, cert_chain: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let mut state = self.state.write();
        state.config = server_config(cert_chain, key, state.client_roots.as_ref())?;
        state.identity = (cert_chain.to_vec(), key.to_vec());
        Ok(())
    }

    /// Replace the trusted client CAs (`None`: stop asking for client certificates), for
    /// new handshakes; connected clients stay. Nothing changes if the PEM is unusable.
    pub fn set_client_cas(&self, client_cas: Option<&[u8]>) -> Result<(), TlsError> {
        let client_roots = client_cas.map(roots).transpose()?;
        let mut state = self.state.write();
        let (cert, key) = &state.identity;
        state.config = server_config(cert, key, client_roots.as_ref())?;
        state.client_roots = client_roots;
        Ok(())
    }

    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.state.read().config))
    }
}

/// The CAs of a PEM bundle (at least one).
fn roots(pem: &[u8]) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(Arc::new(roots))
}

fn server_config(
    cert_chain: &[u8],
    key: &[u8],
    client_roots: Option<&Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_chain)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::BadKey(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let config = match client_roots {
        None => config.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
            config.with_client_cert_verifier(verifier)
        }
    };
    let config = config.with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}
