//! From configuration to listeners: resolve each port's TLS settings to a server identity
//! (`mode: Manual` → the named `kubernetes.io/tls` Secret; `mode: Automatic` → a certificate
//! issued at start from the local CA Secret `edgeplane-ca` that `edgeplane certs` creates),
//! its `authenticationRef` to authentication methods and its `authorizationRef` to a
//! compiled policy; then keep Manual identities and policies current when the folder changes
//! (a changed policy applies to connected clients at their next PUBLISH or SUBSCRIBE), and
//! rebuild authentication methods whose spec, Secrets or ConfigMaps changed, with the
//! trusted client CAs of X509 ports (new connections and re-authentication use them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use edgeplane_broker::auth::{
    Authentication, Authorization, CustomSettings, ListenerAuth, Method, PasswordFile, SatSettings,
    TokenReview, X509Error, X509Settings, SERVICE_ACCOUNT_DIR,
};
use edgeplane_broker::tls::{issue_leaf, Issued, ServerTls};
use edgeplane_broker::{ConnectionLimits, ListenerSpec};
use edgeplane_config::{Config, SecretData, TlsSettings, TLS_CERT_KEY, TLS_KEY_KEY};
use parking_lot::RwLock;
use serde_json::Value;

/// Name of the Secret holding the local CA that `mode: Automatic` issues from.
pub const LOCAL_CA_SECRET: &str = "edgeplane-ca";
/// Secret entry holding a password file (lines of `user:argon2id-hash`).
pub const PASSWORDS_KEY: &str = "passwords";

/// How often the config folder is re-read for renewed certificates and changed policies.
const RELOAD_PERIOD: Duration = Duration::from_secs(5);

type SharedPolicy = Arc<RwLock<Arc<Authorization>>>;
/// A certificate and key, PEM.
type Pem = (Vec<u8>, Vec<u8>);

/// What the reload task keeps current.
#[derive(Default)]
pub struct Watched {
    /// Manual TLS identities: Secret name, identity, PEM it was built from.
    tls: Vec<(String, Arc<ServerTls>, Pem)>,
    /// Authorization policies: resource name, policy, spec it was compiled from.
    policies: Vec<(String, SharedPolicy, Value)>,
    /// Authentications: resource name, methods in use, what they were built from.
    authentications: Vec<(String, Arc<Authentication>, String)>,
    /// TLS ports with an `authenticationRef`: its name, and the identity whose trusted
    /// client CAs follow the X509 method's ConfigMap.
    client_cas: Vec<(String, Arc<ServerTls>)>,
}

/// The listeners a configuration declares, with their TLS identities and auth.
pub fn from_config(config: &Config, dir: &Path) -> anyhow::Result<(Vec<ListenerSpec>, Watched)> {
    let mut specs = Vec::new();
    let mut watched = Watched::default();
    let mut policies: BTreeMap<String, SharedPolicy> = BTreeMap::new();
    let at = |listener: &str, field: &str| {
        format!("{}: BrokerListener/{listener} {field}", dir.display())
    };
    for p in &config.listeners {
        let (authentication, client_cas) = match &p.authentication_ref {
            Some(name) => {
                let (methods, cas) = authentication(config, name)
                    .map_err(|e| anyhow!("{}: BrokerAuthentication/{name} {e}", dir.display()))?;
                let authn = Arc::new(Authentication::new(methods));
                let inputs = authentication_inputs(config, name);
                watched
                    .authentications
                    .push((name.clone(), Arc::clone(&authn), inputs));
                (Some(authn), cas)
            }
            None => (None, None),
        };
        if client_cas.is_some() && p.tls.is_none() {
            anyhow::bail!(
                "{}: X509 authentication needs TLS on the port; add tls",
                at(&p.listener, "authenticationRef")
            );
        }
        let tls = match &p.tls {
            None => None,
            Some(TlsSettings::Manual { secret_ref }) => {
                let (cert, key) = secret_pem(&config.secrets, secret_ref)
                    .with_context(|| at(&p.listener, "tls.manual.secretRef"))?;
                let tls = ServerTls::with_client_cas(&cert, &key, client_cas.as_deref())
                    .map_err(|e| anyhow!("{} (Secret/{secret_ref}): {e}", at(&p.listener, "tls.manual.secretRef")))?;
                watched.tls.push((secret_ref.clone(), Arc::clone(&tls), (cert, key)));
                Some(tls)
            }
            Some(TlsSettings::Automatic) => Some(automatic_tls(config, p.bind.ip(), &p.listener, client_cas.as_deref()).with_context(|| {
                format!(
                    "{}: mode Automatic issues from the local CA; create it with `edgeplane certs --out {}`",
                    at(&p.listener, "tls"),
                    dir.display()
                )
            })?),
        };
        if let (Some(tls), Some(name)) = (&tls, &p.authentication_ref) {
            watched.client_cas.push((name.clone(), Arc::clone(tls)));
        }
        let authorization = match &p.authorization_ref {
            Some(name) => Some(match policies.get(name) {
                Some(policy) => Arc::clone(policy),
                None => {
                    let spec = config.authorizations.get(name).cloned().unwrap_or_default();
                    let policy = Arc::new(RwLock::new(Arc::new(compile(&spec, name, dir)?)));
                    policies.insert(name.clone(), Arc::clone(&policy));
                    watched
                        .policies
                        .push((name.clone(), Arc::clone(&policy), spec));
                    policy
                }
            }),
            None => None,
        };
        let auth = Arc::new(ListenerAuth {
            authentication,
            authorization,
        });
        specs.push(ListenerSpec {
            name: p.listener.clone(),
            bind: p.bind,
            protocol: p.protocol,
            tls,
            auth,
            limits: ConnectionLimits {
                max_connections: p.max_connections,
                max_connects_per_second_per_address: p.max_connects_per_second_per_address,
            },
        });
    }
    Ok((specs, watched))
}

fn automatic_tls(
    config: &Config,
    ip: std::net::IpAddr,
    listener: &str,
    client_cas: Option<&[u8]>,
) -> anyhow::Result<Arc<ServerTls>> {
    let (ca_cert, ca_key) = secret_pem(&config.secrets, LOCAL_CA_SECRET)?;
    let ca = Issued {
        cert_pem: String::from_utf8_lossy(&ca_cert).into(),
        key_pem: String::from_utf8_lossy(&ca_key).into(),
    };
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    let leaf = issue_leaf(&ca, listener, &names, false)?;
    Ok(ServerTls::with_client_cas(
        leaf.cert_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        client_cas,
    )?)
}

fn compile(spec: &Value, name: &str, dir: &Path) -> anyhow::Result<Authorization> {
    Authorization::from_spec(spec).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: BrokerAuthorization/{name} {e}", dir.display()))
            .collect();
        anyhow!("{}", lines.join("\n"))
    })
}

/// The methods of a `BrokerAuthentication`, in order, and the trusted client CAs of its X509
/// method. Edgeplane's `UsernamePassword` method names a Secret whose `passwords` entry is a
/// file written by `edgeplane passwd`.
fn authentication(config: &Config, name: &str) -> anyhow::Result<(Vec<Method>, Option<Vec<u8>>)> {
    let spec = config
        .authentications
        .get(name)
        .ok_or_else(|| anyhow!("not found in the folder"))?;
    let list = spec
        .get("authenticationMethods")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            anyhow!("spec.authenticationMethods: missing; list the methods to try in order")
        })?;
    let mut methods = Vec::new();
    let mut client_cas = None;
    for (i, m) in list.iter().enumerate() {
        let at = format!("spec.authenticationMethods[{i}]");
        match m.get("method").and_then(Value::as_str) {
            Some("UsernamePassword") => {
                let field = format!("{at}.usernamePasswordSettings.passwordFileSecretRef");
                let secret = m
                    .pointer("/usernamePasswordSettings/passwordFileSecretRef")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("{field}: missing; name a Secret made with `edgeplane passwd`"))?;
                let data = config
                    .secrets
                    .get(secret)
                    .and_then(|s| s.data.get(PASSWORDS_KEY))
                    .ok_or_else(|| anyhow!("{field}: Secret/{secret} with a {PASSWORDS_KEY:?} entry not found"))?;
                let text = std::str::from_utf8(data).map_err(|_| anyhow!("Secret/{secret} {PASSWORDS_KEY}: not UTF-8"))?;
                let file = PasswordFile::parse(text).map_err(|e| anyhow!("Secret/{secret} {PASSWORDS_KEY}: {e}"))?;
                methods.push(Method::UsernamePassword(file));
            }
            Some("X509") => {
                let (settings, cas) = x509(config, m, &at)?;
                methods.push(Method::X509(settings));
                client_cas = Some(cas);
            }
            Some("Custom") => methods.push(Method::Custom(custom(config, m, &at)?)),
            Some("ServiceAccountToken") => {
                methods.push(Method::ServiceAccountToken(service_account_token(config, m, &at)?))
            }
            other => anyhow::bail!("{at}.method: {other:?} is not one of UsernamePassword, X509, ServiceAccountToken, Custom"),
        }
    }
    Ok((methods, client_cas))
}

/// What a `BrokerAuthentication`'s methods are built from: its spec and the Secrets and
/// ConfigMaps it names (any string in the spec that names one, and X509's default
/// `client-ca`). Compared, never logged: it holds secret data.
fn authentication_inputs(config: &Config, name: &str) -> String {
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(list) => list.iter().for_each(|v| strings(v, out)),
            Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
    let Some(spec) = config.authentications.get(name) else {
        return String::new();
    };
    let mut names = vec!["client-ca"];
    strings(spec, &mut names);
    names.sort_unstable();
    names.dedup();
    let mut out = spec.to_string();
    for n in names {
        if let Some(secret) = config.secrets.get(n) {
            out.push_str(&format!("\nSecret/{n} {:?}", secret.data));
        }
        if let Some(map) = config.config_maps.get(n) {
            out.push_str(&format!("\nConfigMap/{n} {map:?}"));
        }
    }
    out
}

/// `x509Settings`: the ConfigMap of trusted client CAs (every entry's PEM, default name
/// `client-ca` as in Azure IoT Operations) and `authorizationAttributes` by subject. The
/// entries arrive as a JSON map (their YAML order is not kept), which is why two entries
/// with the same subject are refused rather than one picked by position.
fn x509(config: &Config, m: &Value, at: &str) -> anyhow::Result<(X509Settings, Vec<u8>)> {
    let settings = m.get("x509Settings");
    let ca_name = settings
        .and_then(|s| s.get("trustedClientCaCert"))
        .and_then(Value::as_str)
        .unwrap_or("client-ca");
    let cas: String = config
        .config_maps
        .get(ca_name)
        .ok_or_else(|| anyhow!("{at}.x509Settings.trustedClientCaCert: ConfigMap/{ca_name} not found (`edgeplane certs` writes one named client-ca)"))?
        .values()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let mut rules = Vec::new();
    if let Some(attrs) = settings
        .and_then(|s| s.get("authorizationAttributes"))
        .and_then(Value::as_object)
    {
        for (key, rule) in attrs {
            let field = format!("{at}.x509Settings.authorizationAttributes.{key}");
            let subject = rule
                .get("subject")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("{field}.subject: missing"))?;
            let mut map = BTreeMap::new();
            for (k, v) in rule
                .get("attributes")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let v = v
                    .as_str()
                    .ok_or_else(|| anyhow!("{field}.attributes.{k}: expected a string"))?;
                map.insert(k.clone(), v.to_owned());
            }
            rules.push((key.clone(), subject.to_owned(), map));
        }
    }
    let parsed = X509Settings::new(cas.as_bytes(), rules).map_err(|e| match e {
        X509Error::BadCa(_) => anyhow!("ConfigMap/{ca_name}: {e}"),
        _ => anyhow!("{at}.x509Settings.{e}"),
    })?;
    Ok((parsed, cas.into_bytes()))
}

/// `customSettings`: the webhook's https `endpoint`, the ConfigMap of CAs its certificate
/// must chain to (`caCertConfigMap`, required here: there is no cluster trust bundle), an
/// optional client certificate (`auth.x509.secretRef`, a `kubernetes.io/tls` Secret) and
/// extra `headers`.
fn custom(config: &Config, m: &Value, at: &str) -> anyhow::Result<CustomSettings> {
    let at = format!("{at}.customSettings");
    let settings = m
        .get("customSettings")
        .ok_or_else(|| anyhow!("{at}: missing; give at least endpoint and caCertConfigMap"))?;
    let endpoint = settings
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            anyhow!("{at}.endpoint: missing; the https URL of the authentication server")
        })?;
    let ca_name = settings
        .get("caCertConfigMap")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("{at}.caCertConfigMap: missing; name a ConfigMap with the PEM CA of the authentication server's certificate"))?;
    let cas: String = config
        .config_maps
        .get(ca_name)
        .ok_or_else(|| anyhow!("{at}.caCertConfigMap: ConfigMap/{ca_name} not found"))?
        .values()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let client = match settings
        .pointer("/auth/x509/secretRef")
        .and_then(Value::as_str)
    {
        Some(name) => Some(
            secret_pem(&config.secrets, name)
                .with_context(|| format!("{at}.auth.x509.secretRef"))?,
        ),
        None => None,
    };
    let mut headers = Vec::new();
    for (k, v) in settings
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = v
            .as_str()
            .ok_or_else(|| anyhow!("{at}.headers.{k}: expected a string"))?;
        headers.push((k.clone(), v.to_owned()));
    }
    let client = client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    CustomSettings::new(endpoint, cas.as_bytes(), client, &headers, None)
        .map_err(|e| anyhow!("{at}: {e}"))
}

/// `serviceAccountTokenSettings`: `audiences` as in AIO, and (standalone, our extension)
/// `jwksSecretRef`, a Secret whose entries are JWKS documents with the token issuer's public
/// keys (a cluster's are at `/openid/v1/jwks`); without it, in a cluster, TokenReview.
fn service_account_token(config: &Config, m: &Value, at: &str) -> anyhow::Result<SatSettings> {
    let at = format!("{at}.serviceAccountTokenSettings");
    let settings = m
        .get("serviceAccountTokenSettings")
        .ok_or_else(|| anyhow!("{at}: missing; give audiences and jwksSecretRef"))?;
    let audiences = settings
        .get("audiences")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("{at}.audiences: missing; list the audiences tokens must carry"))?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("{at}.audiences: expected strings"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let Some(name) = settings.get("jwksSecretRef").and_then(Value::as_str) else {
        return in_cluster(audiences, &at);
    };
    let secret = config
        .secrets
        .get(name)
        .ok_or_else(|| anyhow!("{at}.jwksSecretRef: Secret/{name} not found"))?;
    let docs: Vec<&[u8]> = secret.data.values().map(Vec::as_slice).collect();
    SatSettings::new(audiences, &docs).map_err(|e| anyhow!("{at} (Secret/{name}): {e}"))
}

/// In a Kubernetes pod (`KUBERNETES_SERVICE_HOST` set), tokens are reviewed by the API
/// server with the pod's service account (`EDGEPLANE_SERVICE_ACCOUNT_DIR` overrides the
/// standard mount point, for running outside a pod against a cluster).
fn in_cluster(audiences: Vec<String>, at: &str) -> anyhow::Result<SatSettings> {
    let Ok(host) = std::env::var("KUBERNETES_SERVICE_HOST") else {
        anyhow::bail!("{at}.jwksSecretRef: missing; outside a cluster, name a Secret holding the issuer's JWKS (kubectl get --raw /openid/v1/jwks)");
    };
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let dir = std::env::var_os("EDGEPLANE_SERVICE_ACCOUNT_DIR")
        .map_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR), PathBuf::from);
    let review = TokenReview::in_cluster(&host, &port, &dir)
        .map_err(|e| anyhow!("{at}: TokenReview in the cluster: {e}"))?;
    SatSettings::with_token_review(audiences, review).map_err(|e| anyhow!("{at}: {e}"))
}

fn secret_pem(
    secrets: &BTreeMap<String, SecretData>,
    name: &str,
) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let secret = secrets
        .get(name)
        .ok_or_else(|| anyhow!("no Secret named {name:?} in the configuration folder"))?;
    let get = |k: &str| {
        secret
            .data
            .get(k)
            .cloned()
            .ok_or_else(|| anyhow!("Secret/{name} has no {k:?} entry"))
    };
    Ok((get(TLS_CERT_KEY)?, get(TLS_KEY_KEY)?))
}

/// Re-read the folder periodically: a changed Secret replaces its listener's identity for new
/// connections (connected clients keep theirs); a changed policy applies at once. Invalid
/// changes are logged and the current state kept.
pub fn spawn_reload(dir: PathBuf, mut watched: Watched) {
    if watched.tls.is_empty() && watched.policies.is_empty() && watched.authentications.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_PERIOD);
        tick.tick().await;
        let folder = crate::folder::Folder::new(&dir);
        loop {
            tick.tick().await;
            let config = match folder.changed().await {
                None => continue,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    tracing::warn!(dir = %dir.display(), errors = %e, "configuration changed but is invalid; nothing reloaded");
                    continue;
                }
            };
            for (name, policy, current) in &mut watched.policies {
                let spec = config
                    .authorizations
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_default();
                if spec == *current {
                    continue;
                }
                match compile(&spec, name, &dir) {
                    Ok(p) => {
                        *policy.write() = Arc::new(p);
                        *current = spec;
                        tracing::info!(policy = %name, "authorization policy reloaded; it applies to connected clients now");
                    }
                    Err(e) => {
                        tracing::warn!(policy = %name, error = %e, "changed authorization policy is invalid; keeping the current one")
                    }
                }
            }
            for (name, authn, current) in &mut watched.authentications {
                let inputs = authentication_inputs(&config, name);
                if inputs == *current {
                    continue;
                }
                match authentication(&config, name) {
                    Ok((methods, cas)) => {
                        let ports = watched.client_cas.iter().filter(|(n, _)| n == name);
                        if let Err(e) = ports
                            .map(|(_, tls)| tls.set_client_cas(cas.as_deref()))
                            .collect::<Result<Vec<()>, _>>()
                        {
                            tracing::warn!(authentication = %name, error = %e, "changed trusted client CAs are unusable; keeping the current authentication");
                            continue;
                        }
                        authn.replace(methods);
                        *current = inputs;
                        tracing::info!(authentication = %name, "authentication methods and trusted client CAs reloaded; they apply to new connections and re-authentication, connected clients stay");
                    }
                    Err(e) => {
                        tracing::warn!(authentication = %name, error = %e, "changed authentication is invalid; keeping the current one")
                    }
                }
            }
            for (secret, tls, current) in &mut watched.tls {
                let Ok(pem) = secret_pem(&config.secrets, secret) else {
                    continue;
                };
                if pem == *current {
                    continue;
                }
                match tls.reload(&pem.0, &pem.1) {
                    Ok(()) => {
                        tracing::info!(secret = %secret, "TLS certificate reloaded");
                        *current = pem;
                    }
                    Err(e) => {
                        tracing::warn!(secret = %secret, error = %e, "new TLS certificate rejected; keeping the current one")
                    }
                }
            }
        }
    });
}
