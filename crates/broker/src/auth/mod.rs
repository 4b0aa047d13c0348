//! Authentication and authorization per listener port, with Azure IoT Operations' semantics:
//! authentication methods tried in order (a method whose credentials are not relevant falls
//! through, a relevant one decides), and allow-only authorization rules (deny when no rule
//! grants) over Connect, Publish, Subscribe and state store keys.
//!
//! A CONNECT's credentials enter as [`Credentials`]; what leaves is a [`Verdict`]: a
//! [`Grant`] (user name and attributes for authorization, and when the credentials expire)
//! or the CONNACK reason code. MQTT 5 enhanced authentication (`K8S-SAT`, or any other
//! method name for the webhook) decides on the CONNECT alone and can be renewed with AUTH
//! ([`Authentication::reauthenticate`]).

mod authz;
mod cache;
mod custom;
pub mod glob;
mod keys;
mod password;
mod sat;
mod subject;
mod tokenreview;
mod x509;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;

pub use authz::{Authorization, PolicyError};
pub use cache::DecisionCache;
pub use custom::{parse_rfc3339, CustomConfigError, CustomSettings, Outcome, API_VERSION};
pub use keys::KeyAccess;
pub use password::{
    check_user_name, entries as password_entries, hash_password, PasswordFile, PasswordFileError,
};
pub use sat::{SatConfigError, SatSettings, TokenError, VerifiedToken, SAT_METHOD};
pub use tokenreview::{ClusterConfigError, ReviewError, TokenReview, SERVICE_ACCOUNT_DIR};
pub use x509::{AttributeEntry, X509Error, X509Settings};

/// The certificate chain a client presented over TLS (leaf first), already verified.
pub type ClientCerts = Arc<Vec<rustls::pki_types::CertificateDer<'static>>>;

/// CONNACK reason codes authentication answers with (MQTT 5; the connection maps them to
/// 3.1.1 return codes).
pub mod code {
    pub const BAD_CREDENTIALS: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
}

/// Who a connection is, as authorization sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principal {
    /// Shared with the connection's own client id: one copy per connection.
    pub client_id: Arc<str>,
    /// `Box<str>`: 8 B less than a `String` in every connection's principal.
    pub username: Option<Box<str>>,
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
    /// Kubernetes service account tokens (`K8S-SAT`): relevant when CONNECT's Authentication
    /// Method is `K8S-SAT` (the token is the Authentication Data), or, as older AIO clients
    /// do, when the user name starts with `K8S-SAT` (the token is the password).
    ServiceAccountToken(SatSettings),
    /// The custom authentication webhook: relevant whenever it answers. It also speaks MQTT 5
    /// enhanced authentication under any method name but `K8S-SAT` (and AUTH re-authentication).
    Custom(CustomSettings),
}

/// The authentication of a listener port. Its methods can be replaced while the broker runs
/// (renewed keys, passwords or webhook settings); a CONNECT or AUTH uses the methods current
/// when it arrives.
#[derive(Debug)]
pub struct Authentication {
    methods: RwLock<Arc<Vec<Method>>>,
}

/// What a client presented on CONNECT.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<bytes::Bytes>,
    pub certs: Option<ClientCerts>,
    /// MQTT 5 Authentication Method and Data (enhanced authentication).
    pub method: Option<String>,
    pub data: Option<bytes::Bytes>,
}

/// An accepted client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    pub username: Option<String>,
    pub attributes: BTreeMap<String, String>,
    /// When the credentials stop being valid: the connection is closed then unless the
    /// client re-authenticates.
    pub expiry: Option<SystemTime>,
}

/// Outcome of authenticating a CONNECT.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed(Grant),
    /// Refused with this MQTT 5 CONNACK reason code: 0x86 when credentials were relevant to a
    /// method and wrong, 0x87 when no method found them relevant, 0x8C for an enhanced
    /// authentication method no configured method speaks, or the webhook's code.
    Refused(u8),
}

impl Authentication {
    pub fn new(methods: Vec<Method>) -> Self {
        Self {
            methods: RwLock::new(Arc::new(methods)),
        }
    }

    /// Use `methods` from now on (connected clients keep their principal).
    pub fn replace(&self, methods: Vec<Method>) {
        *self.methods.write() = Arc::new(methods);
    }

    fn methods(&self) -> Arc<Vec<Method>> {
        Arc::clone(&self.methods.read())
    }

    /// Check the CONNECT's credentials, methods in order. Slow hashing runs on the blocking
    /// pool; the webhook is awaited.
    pub async fn authenticate(&self, creds: Credentials) -> Verdict {
        let methods = self.methods();
        if let Some(method) = &creds.method {
            // Enhanced authentication: only a method speaking it can decide [MQTT-4.12.0-1]:
            // `K8S-SAT` for service account tokens, any other name for the webhook.
            let data = creds.data.as_deref().unwrap_or_default();
            return match speaker(&methods, method) {
                Some(Method::ServiceAccountToken(s)) => sat_verdict(s, data, creds.username).await,
                Some(Method::Custom(settings)) => {
                    let asked = custom::ConnectCredentials {
                        username: creds.username.as_deref(),
                        password: creds.password.as_deref(),
                        certs: creds.certs.as_deref().map(Vec::as_slice),
                        enhanced: Some((method, data)),
                    };
                    match settings.authenticate(&asked).await {
                        Outcome::Allowed { attributes, expiry } => Verdict::Allowed(Grant {
                            username: creds.username,
                            attributes,
                            expiry,
                        }),
                        Outcome::Denied(reason) => Verdict::Refused(reason),
                        Outcome::Unavailable(why) => {
                            tracing::warn!(reason = %why, "custom authentication server gave no answer to an enhanced authentication CONNECT");
                            Verdict::Refused(code::NOT_AUTHORIZED)
                        }
                    }
                }
                _ => Verdict::Refused(code::BAD_AUTHENTICATION_METHOD),
            };
        }
        for (index, method) in methods.iter().enumerate() {
            match method {
                Method::X509(settings) => {
                    let Some(chain) = creds.certs.as_deref().filter(|c| !c.is_empty()) else {
                        continue;
                    };
                    return match settings.identify(chain) {
                        Some((cn, attributes)) => Verdict::Allowed(Grant {
                            username: Some(cn),
                            attributes,
                            expiry: None,
                        }),
                        None => Verdict::Refused(code::BAD_CREDENTIALS),
                    };
                }
                Method::UsernamePassword(_) => {
                    let Some(user) = creds.username.clone() else {
                        continue;
                    };
                    let all = Arc::clone(&methods);
                    let password = creds.password.clone().unwrap_or_default();
                    let ok = tokio::task::spawn_blocking(move || match &all[index] {
                        Method::UsernamePassword(file) => file.verify(&user, &password),
                        _ => false,
                    })
                    .await
                    .unwrap_or(false);
                    return if ok {
                        Verdict::Allowed(Grant {
                            username: creds.username,
                            ..Grant::default()
                        })
                    } else {
                        Verdict::Refused(code::BAD_CREDENTIALS)
                    };
                }
                Method::ServiceAccountToken(settings) => {
                    let legacy = creds
                        .username
                        .as_deref()
                        .is_some_and(|u| u.starts_with(SAT_METHOD));
                    if !legacy {
                        continue;
                    }
                    let token = creds.password.as_deref().unwrap_or_default();
                    return sat_verdict(settings, token, creds.username).await;
                }
                Method::Custom(settings) => {
                    let asked = custom::ConnectCredentials {
                        username: creds.username.as_deref(),
                        password: creds.password.as_deref(),
                        certs: creds.certs.as_deref().map(Vec::as_slice),
                        enhanced: None,
                    };
                    match settings.authenticate(&asked).await {
                        Outcome::Allowed { attributes, expiry } => {
                            return Verdict::Allowed(Grant {
                                username: creds.username,
                                attributes,
                                expiry,
                            })
                        }
                        Outcome::Denied(reason) => return Verdict::Refused(reason),
                        Outcome::Unavailable(why) => {
                            tracing::warn!(method = index, reason = %why, "custom authentication server gave no answer; trying the next method");
                        }
                    }
                }
            }
        }
        Verdict::Refused(code::NOT_AUTHORIZED)
    }

    /// Re-authentication with AUTH (reason 0x19) under the CONNECT's Authentication Method:
    /// what is renewed, or the DISCONNECT reason code. `K8S-SAT` verifies the fresh token;
    /// another method asks the webhook (`type: auth`), whose answer also replaces the
    /// attributes.
    pub async fn reauthenticate(&self, method: &str, data: &[u8]) -> Result<Renewal, u8> {
        let methods = self.methods();
        match speaker(&methods, method) {
            Some(Method::ServiceAccountToken(sat)) => {
                match sat.check(data, SystemTime::now()).await {
                    Ok(t) => Ok(Renewal {
                        expiry: Some(t.expiry),
                        attributes: None,
                    }),
                    Err(e) => {
                        tracing::info!(reason = %e, "re-authentication refused");
                        Err(code::NOT_AUTHORIZED)
                    }
                }
            }
            Some(Method::Custom(settings)) => match settings.reauthenticate(method, data).await {
                Outcome::Allowed { attributes, expiry } => {
                    if expiry.is_some_and(|t| t <= SystemTime::now()) {
                        tracing::info!(
                            "re-authentication refused: the webhook's expiry has passed"
                        );
                        return Err(code::NOT_AUTHORIZED);
                    }
                    Ok(Renewal {
                        expiry,
                        attributes: Some(attributes),
                    })
                }
                Outcome::Denied(reason) => {
                    tracing::info!(
                        code = format!("0x{reason:02X}"),
                        "re-authentication refused by the webhook"
                    );
                    Err(code::NOT_AUTHORIZED)
                }
                Outcome::Unavailable(why) => {
                    tracing::warn!(reason = %why, "custom authentication server gave no answer to a re-authentication");
                    Err(code::NOT_AUTHORIZED)
                }
            },
            _ => Err(code::NOT_AUTHORIZED),
        }
    }
}

/// What a successful re-authentication renews.
#[derive(Debug, PartialEq, Eq)]
pub struct Renewal {
    /// The new expiry (`None`: the credentials no longer expire).
    pub expiry: Option<SystemTime>,
    /// New attributes for authorization, when the method gives them (the webhook).
    pub attributes: Option<BTreeMap<String, String>>,
}

/// The method that speaks enhanced authentication method `name`: `K8S-SAT` service account
/// tokens, or the first `Custom` webhook for any other name.
fn speaker<'a>(methods: &'a [Method], name: &str) -> Option<&'a Method> {
    methods.iter().find(|m| match m {
        Method::ServiceAccountToken(_) => name == SAT_METHOD,
        Method::Custom(_) => name != SAT_METHOD,
        _ => false,
    })
}

async fn sat_verdict(settings: &SatSettings, token: &[u8], username: Option<String>) -> Verdict {
    match settings.check(token, SystemTime::now()).await {
        Ok(t) => Verdict::Allowed(Grant {
            // As in AIO, the user name is the client's (unverified) one.
            username,
            attributes: BTreeMap::new(),
            expiry: Some(t.expiry),
        }),
        Err(e) => {
            tracing::info!(reason = %e, "service account token refused");
            Verdict::Refused(code::BAD_CREDENTIALS)
        }
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
    /// A port that authenticates with `authentication` (none: anyone) and enforces
    /// `policy` (none: everything allowed).
    pub fn new(authentication: Option<Arc<Authentication>>, policy: Option<Authorization>) -> Self {
        Self {
            authentication,
            authorization: policy.map(|p| Arc::new(RwLock::new(Arc::new(p)))),
        }
    }

    pub fn authorization(&self) -> Option<Arc<Authorization>> {
        self.authorization.as_ref().map(|a| Arc::clone(&a.read()))
    }

    /// May a client with `principal` leave a will on `topic`? Checked at CONNECT with the
    /// rules a PUBLISH to the topic would meet (reserved `$SYS` and `$share` topics, then the
    /// port's Publish grants), so a will never publishes what its client could not: a refused
    /// will refuses the connection (0x87, 3.1.1: 5), as Mosquitto does.
    pub fn allows_will(&self, principal: &Principal, topic: &str) -> bool {
        !topic.starts_with("$SYS")
            && !topic.starts_with("$share")
            && self
                .authorization()
                .is_none_or(|a| a.allows_publish(principal, topic))
    }

    /// Who a will on `topic` is from, for the services that authorize requests by their
    /// publisher (the state store): the client's principal and this port, as for its
    /// PUBLISH packets, and no connection: a will is published once its connection has
    /// ended, so nothing it asks for may outlive that connection. `None` on other topics.
    pub fn will_publisher(
        self: &Arc<Self>,
        principal: &Principal,
        topic: &str,
    ) -> Option<Arc<crate::message::Publisher>> {
        crate::message::carries_publisher(topic).then(|| {
            Arc::new(crate::message::Publisher::Client {
                principal: principal.clone(),
                auth: Arc::clone(self),
                conn: None,
            })
        })
    }
}
