//! The connector's PKI directory and trust list.
//!
//! Layout (the one async-opcua uses): `own/cert.der` and `private/private.pem` hold the
//! application instance certificate, created on first start and kept; `trusted/` holds
//! trusted server certificates; `rejected/` receives server certificates that were not
//! trusted, named `<common name> [<thumbprint>].der`. [`trust`] moves one of those (or any
//! certificate file) into `trusted/`, which is all a later connection attempt needs.

use std::path::{Path, PathBuf};

use opcua_crypto::{CertificateStore, X509};

/// Errors handling the trust list.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// No rejected certificate matches and no such file exists.
    #[error("no certificate matches {0:?}: give a thumbprint or file name from {1}, or a path to a certificate file")]
    NotFound(String, PathBuf),
    /// More than one rejected certificate matches.
    #[error("{0:?} matches several rejected certificates; give more of the thumbprint")]
    Ambiguous(String),
    /// The file is not a certificate.
    #[error("{0} is not a DER or PEM certificate: {1}")]
    BadCertificate(PathBuf, String),
    /// Reading or writing the PKI directory failed.
    #[error("cannot update the trust list in {0}: {1}; check the directory permissions")]
    Io(PathBuf, std::io::Error),
}

/// A certificate waiting in `rejected/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedCertificate {
    /// Its file.
    pub path: PathBuf,
    /// SHA-1 thumbprint, upper-case hex.
    pub thumbprint: String,
    /// Subject common name, if any.
    pub common_name: Option<String>,
}

/// The certificates in `pki_dir/rejected`, oldest first.
pub fn rejected_certificates(pki_dir: &Path) -> Result<Vec<RejectedCertificate>, PkiError> {
    let dir = pki_dir.join("rejected");
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PkiError::Io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| PkiError::Io(dir.clone(), e))?;
        let path = entry.path();
        let Ok(cert) = CertificateStore::read_cert(&path) else {
            continue;
        };
        let modified = entry.metadata().and_then(|m| m.modified()).ok();
        found.push((
            modified,
            RejectedCertificate {
                path,
                thumbprint: cert.thumbprint().as_hex_string().to_uppercase(),
                common_name: cert.common_name().ok(),
            },
        ));
    }
    found.sort_by_key(|(modified, _)| *modified);
    Ok(found.into_iter().map(|(_, c)| c).collect())
}

/// Trusts a server certificate: `what` is a thumbprint (or a unique prefix of one), a file
/// name in `pki_dir/rejected`, or a path to a certificate file. The certificate is written
/// to `pki_dir/trusted` under the name the trust check looks for and removed from
/// `rejected/`. Returns the trusted file.
pub fn trust(pki_dir: &Path, what: &str) -> Result<PathBuf, PkiError> {
    let source = find_certificate(pki_dir, what)?;
    let cert = CertificateStore::read_cert(&source)
        .map_err(|e| PkiError::BadCertificate(source.clone(), e))?;
    let der = cert
        .to_der()
        .map_err(|e| PkiError::BadCertificate(source.clone(), format!("{e:?}")))?;
    let trusted_dir = pki_dir.join("trusted");
    std::fs::create_dir_all(&trusted_dir).map_err(|e| PkiError::Io(trusted_dir.clone(), e))?;
    let target = trusted_dir.join(CertificateStore::cert_file_name(&cert));
    std::fs::write(&target, der).map_err(|e| PkiError::Io(target.clone(), e))?;
    if source.parent() == Some(pki_dir.join("rejected").as_path()) {
        std::fs::remove_file(&source).map_err(|e| PkiError::Io(source.clone(), e))?;
    }
    Ok(target)
}

fn find_certificate(pki_dir: &Path, what: &str) -> Result<PathBuf, PkiError> {
    let as_path = Path::new(what);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let in_rejected = pki_dir.join("rejected").join(what);
    if in_rejected.is_file() {
        return Ok(in_rejected);
    }
    let wanted: String = what
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_uppercase();
    if wanted.is_empty() {
        return Err(PkiError::NotFound(what.into(), pki_dir.join("rejected")));
    }
    let mut matches: Vec<PathBuf> = rejected_certificates(pki_dir)?
        .into_iter()
        .filter(|c| c.thumbprint.starts_with(&wanted))
        .map(|c| c.path)
        .collect();
    match matches.len() {
        0 => Err(PkiError::NotFound(what.into(), pki_dir.join("rejected"))),
        1 => Ok(matches.remove(0)),
        _ => Err(PkiError::Ambiguous(what.into())),
    }
}

/// Where a server certificate ends up when it is rejected.
pub(crate) fn rejected_path(pki_dir: &Path, cert: &X509) -> PathBuf {
    pki_dir
        .join("rejected")
        .join(CertificateStore::cert_file_name(cert))
}
