//! From configuration to listeners: resolve each port's TLS settings to a server identity
//! (`mode: Manual` → the named `kubernetes.io/tls` Secret; `mode: Automatic` → a certificate
//! issued at start from the local CA Secret `edgeplane-ca` that `edgeplane certs` creates),
//! and keep Manual identities current when their Secret changes on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use edgeplane_broker::tls::{issue_leaf, Issued, ServerTls};
use edgeplane_broker::ListenerSpec;
use edgeplane_config::{Config, SecretData, TlsSettings, TLS_CERT_KEY, TLS_KEY_KEY};

/// Name of the Secret holding the local CA that `mode: Automatic` issues from.
pub const LOCAL_CA_SECRET: &str = "edgeplane-ca";

/// How often the config folder is re-read for renewed certificates.
const RELOAD_PERIOD: Duration = Duration::from_secs(5);

/// A Manual TLS identity to keep in step with its Secret.
pub struct Watched {
    secret: String,
    tls: Arc<ServerTls>,
    pem: (Vec<u8>, Vec<u8>),
}

/// The listeners a configuration declares, with their TLS identities.
pub fn from_config(
    config: &Config,
    dir: &Path,
) -> anyhow::Result<(Vec<ListenerSpec>, Vec<Watched>)> {
    let mut specs = Vec::new();
    let mut watched = Vec::new();
    for p in &config.listeners {
        let tls = match &p.tls {
            None => None,
            Some(TlsSettings::Manual { secret_ref }) => {
                let (cert, key) = secret_pem(&config.secrets, secret_ref).with_context(|| {
                    format!(
                        "{}: BrokerListener/{} tls.manual.secretRef",
                        dir.display(),
                        p.listener
                    )
                })?;
                let tls = ServerTls::from_pem(&cert, &key).map_err(|e| {
                    anyhow!(
                        "{}: Secret/{secret_ref} (BrokerListener/{} tls.manual.secretRef): {e}",
                        dir.display(),
                        p.listener
                    )
                })?;
                watched.push(Watched {
                    secret: secret_ref.clone(),
                    tls: Arc::clone(&tls),
                    pem: (cert, key),
                });
                Some(tls)
            }
            Some(TlsSettings::Automatic) => {
                let (ca_cert, ca_key) = secret_pem(&config.secrets, LOCAL_CA_SECRET).with_context(|| {
                    format!(
                        "{}: BrokerListener/{} tls.mode Automatic issues from the local CA; create it with `edgeplane certs --out {}`",
                        dir.display(),
                        p.listener,
                        dir.display()
                    )
                })?;
                let ca = Issued {
                    cert_pem: String::from_utf8_lossy(&ca_cert).into(),
                    key_pem: String::from_utf8_lossy(&ca_key).into(),
                };
                let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                if !p.bind.ip().is_unspecified() {
                    names.push(p.bind.ip().to_string());
                }
                let leaf = issue_leaf(&ca, &p.listener, &names, false)?;
                Some(ServerTls::from_pem(
                    leaf.cert_pem.as_bytes(),
                    leaf.key_pem.as_bytes(),
                )?)
            }
        };
        specs.push(ListenerSpec {
            name: p.listener.clone(),
            bind: p.bind,
            protocol: p.protocol,
            tls,
        });
    }
    Ok((specs, watched))
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

/// Re-read the folder periodically; a changed Secret replaces its listener's identity for new
/// connections (connected clients keep theirs). Invalid files are logged and skipped.
pub fn spawn_reload(dir: PathBuf, mut watched: Vec<Watched>) {
    if watched.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RELOAD_PERIOD);
        tick.tick().await;
        loop {
            tick.tick().await;
            let config = match edgeplane_config::load_dir(&dir) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), errors = %e, "configuration changed but is invalid; certificates not reloaded");
                    continue;
                }
            };
            for w in &mut watched {
                let Ok(pem) = secret_pem(&config.secrets, &w.secret) else {
                    continue;
                };
                if pem == w.pem {
                    continue;
                }
                match w.tls.reload(&pem.0, &pem.1) {
                    Ok(()) => {
                        tracing::info!(secret = %w.secret, "TLS certificate reloaded");
                        w.pem = pem;
                    }
                    Err(e) => {
                        tracing::warn!(secret = %w.secret, error = %e, "new TLS certificate rejected; keeping the current one")
                    }
                }
            }
        }
    });
}
