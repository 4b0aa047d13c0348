//! `edgeplane certs`: a local CA, a server certificate and client certificates, written as
//! ready-to-apply manifests (Secrets of type `kubernetes.io/tls`, a ConfigMap of trusted
//! client CAs) plus the same PEM files for clients such as `mosquitto_pub --cafile`.

use std::path::Path;

use anyhow::Context as _;
use edgeplane_broker::tls::{issue_ca, issue_leaf, Issued};

use crate::listeners::LOCAL_CA_SECRET;

/// What to issue.
pub struct Request<'a> {
    pub out: &'a Path,
    /// Name of the server certificate's Secret (for `tls.manual.secretRef`).
    pub server_secret: &'a str,
    /// DNS names and IP addresses of the server.
    pub names: &'a [String],
    /// Common names of client certificates to issue.
    pub clients: &'a [String],
}

pub fn write(r: &Request<'_>) -> anyhow::Result<()> {
    std::fs::create_dir_all(r.out).with_context(|| format!("creating {}", r.out.display()))?;
    let ca = issue_ca("Edgeplane local CA")?;
    write_file(r.out, "ca.crt", &ca.cert_pem)?;
    write_file(
        r.out,
        "edgeplane-ca.yaml",
        &tls_secret(LOCAL_CA_SECRET, &ca),
    )?;
    let configmap = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: client-ca\ndata:\n  client_ca.pem: |\n{}",
        indent(&ca.cert_pem)
    );
    write_file(r.out, "client-ca.yaml", &configmap)?;
    let server = issue_leaf(&ca, r.server_secret, r.names, false)?;
    write_file(
        r.out,
        &format!("{}.yaml", r.server_secret),
        &tls_secret(r.server_secret, &server),
    )?;
    for cn in r.clients {
        let client = issue_leaf(&ca, cn, &[], true)?;
        write_file(r.out, &format!("client-{cn}.crt"), &client.cert_pem)?;
        write_file(r.out, &format!("client-{cn}.key"), &client.key_pem)?;
    }
    println!(
        "wrote the local CA (ca.crt, Secret {LOCAL_CA_SECRET}, ConfigMap client-ca), Secret {} for {} and {} client certificate(s) to {}",
        r.server_secret,
        r.names.join(", "),
        r.clients.len(),
        r.out.display()
    );
    Ok(())
}

fn tls_secret(name: &str, c: &Issued) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&c.cert_pem),
        indent(&c.key_pem)
    )
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if name.ends_with(".key") || name.ends_with(".yaml") && text.contains("PRIVATE KEY") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}
