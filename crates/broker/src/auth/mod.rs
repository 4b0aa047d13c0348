//! Authentication and authorization per listener port, with Azure IoT Operations' semantics:
//! authentication methods tried in order (a method whose credentials are not relevant falls
//! through, a relevant one decides), and allow-only authorization rules (deny when no rule
//! grants) over Connect, Publish and Subscribe.

mod authz;
mod password;
mod x509;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

pub use authz::{Authorization, PolicyError};
pub use password::{hash_password, PasswordFile, PasswordFileError};
pub use x509::{X509Error, X509Settings};

/// The certificate chain a client presented over TLS (leaf first), already verified.
pub type ClientCerts = Arc<Vec<rustls::pki_types::CertificateDer<'static>>>;

/// Who a connection is, as authorization sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    pub client_id: String,
    pub username: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// One authentication method of a `BrokerAuthentication`, in its listed order.
#[derive(Debug)]
pub enum Method {
    /// User name and password checked against a file of argon2id hashes (Edgeplane's
    /// `UsernamePassword` method). Relevant when CONNECT carries a user name.
    UsernamePassword(PasswordFile),
    /// A client certificate verified against the port's trusted CAs during the TLS handshake
    /// (so chain and validity are already checked). Relevant when the client presented one;
    /// its CN becomes the user name.
    X509(X509Settings),
}

/// The authentication of a listener port.
#[derive(Debug)]
pub struct Authentication {
    pub methods: Vec<Method>,
}

/// Outcome of authenticating a CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed {
        username: Option<String>,
        attributes: BTreeMap<String, String>,
    },
    /// Credentials were relevant to a method and wrong (CONNACK 0x86 / 3.1.1 0x04).
    BadCredentials,
    /// No method found the credentials relevant (CONNACK 0x87 / 3.1.1 0x05).
    NotAuthorized,
}

impl Authentication {
    /// Check the CONNECT's credentials. Slow hashing runs on the blocking pool.
    pub async fn authenticate(
        self: &Arc<Self>,
        username: Option<String>,
        password: Option<bytes::Bytes>,
        certs: Option<ClientCerts>,
    ) -> Verdict {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let chain = certs.as_deref().map(Vec::as_slice);
            this.authenticate_blocking(username.as_deref(), password.as_deref(), chain)
        })
        .await
        .unwrap_or(Verdict::NotAuthorized)
    }

    fn authenticate_blocking(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
        certs: Option<&[rustls::pki_types::CertificateDer<'static>]>,
    ) -> Verdict {
        for method in &self.methods {
            match method {
                Method::X509(settings) => {
                    let Some(chain) = certs.filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    return match settings.identify(chain) {
                        Some((cn, attributes)) => Verdict::Allowed {
                            username: Some(cn),
                            attributes,
                        },
                        None => Verdict::BadCredentials,
                    };
                }
                Method::UsernamePassword(file) => {
                    let Some(user) = username else { continue };
                    return if file.verify(user, password.unwrap_or_default()) {
                        Verdict::Allowed {
                            username: Some(user.to_owned()),
                            attributes: BTreeMap::new(),
                        }
                    } else {
                        Verdict::BadCredentials
                    };
                }
            }
        }
        Verdict::NotAuthorized
    }
}

/// What a listener port enforces. Authorization sits behind a lock so a changed policy
/// applies to connected clients at their next operation.
#[derive(Debug, Default)]
pub struct ListenerAuth {
    pub authentication: Option<Arc<Authentication>>,
    pub authorization: Option<Arc<RwLock<Arc<Authorization>>>>,
}

impl ListenerAuth {
    pub fn authorization(&self) -> Option<Arc<Authorization>> {
        self.authorization.as_ref().map(|a| Arc::clone(&a.read()))
    }
}
