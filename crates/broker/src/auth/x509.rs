//! X509 authentication: the identity and attributes of a client certificate that rustls has
//! already verified (chain to a trusted CA, validity period). The leaf's common name becomes
//! the user name; `authorizationAttributes` give attributes by certificate subject, matched
//! leaf first, then up the presented chain, then the trusted CAs; the first match wins.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("a trusted CA certificate cannot be parsed: {0}")]
    BadCa(String),
}

/// Subject attributes of a certificate as a set of `(type, value)` pairs, so that
/// `CN = fan, O = Contoso` and `O=Contoso,CN=fan` compare equal.
type Subject = Vec<(String, String)>;

#[derive(Debug)]
pub struct X509Settings {
    /// DER of the trusted CAs, for matching their subjects.
    trusted_subjects: Vec<Subject>,
    /// Subject → attributes, in the resource's order.
    rules: Vec<(Subject, BTreeMap<String, String>)>,
}

impl X509Settings {
    /// `trusted_cas`: the PEM CAs of `trustedClientCaCert`; `rules`: (subject string as in
    /// the resource, e.g. `CN = smart-fan, OU = Engineering`, attributes).
    pub fn new(
        trusted_cas: &[u8],
        rules: Vec<(String, BTreeMap<String, String>)>,
    ) -> Result<Self, X509Error> {
        use rustls::pki_types::pem::PemObject;
        let mut trusted_subjects = Vec::new();
        for der in CertificateDer::pem_slice_iter(trusted_cas) {
            let der = der.map_err(|e| X509Error::BadCa(e.to_string()))?;
            let (_, cert) =
                X509Certificate::from_der(&der).map_err(|e| X509Error::BadCa(e.to_string()))?;
            trusted_subjects.push(normalize(&cert.subject().to_string()));
        }
        let rules = rules.into_iter().map(|(s, a)| (normalize(&s), a)).collect();
        Ok(Self {
            trusted_subjects,
            rules,
        })
    }

    /// Common name and attributes of a verified chain; `None` if the leaf has no CN or cannot
    /// be parsed.
    pub fn identify(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Option<(String, BTreeMap<String, String>)> {
        let mut subjects = Vec::new();
        let mut cn = None;
        for (i, der) in chain.iter().enumerate() {
            let (_, cert) = X509Certificate::from_der(der).ok()?;
            if i == 0 {
                cn = cert
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|c| c.as_str().ok())
                    .map(str::to_owned);
            }
            subjects.push(normalize(&cert.subject().to_string()));
        }
        subjects.extend(self.trusted_subjects.iter().cloned());
        let attributes = subjects
            .iter()
            .find_map(|s| {
                self.rules
                    .iter()
                    .find(|(rule, _)| rule == s)
                    .map(|(_, a)| a.clone())
            })
            .unwrap_or_default();
        Some((cn?, attributes))
    }
}

fn normalize(subject: &str) -> Subject {
    let mut parts: Subject = subject
        .split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim().to_ascii_uppercase(), v.trim().to_owned()))
        .collect();
    parts.sort();
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_compare_regardless_of_spacing_and_order() {
        assert_eq!(
            normalize("CN = fan, O = Contoso"),
            normalize("O=Contoso,CN=fan")
        );
        assert_ne!(normalize("CN = fan"), normalize("CN = fan2"));
    }
}
