//! X509 authentication: the identity and attributes of a client certificate that rustls has
//! already verified (chain to a trusted CA, validity period). The leaf's one common name
//! becomes the user name; `authorizationAttributes` give attributes by certificate subject,
//! compared as (attribute type, value) pairs ([`super::subject`]), never as formatted text,
//! so a comma inside a value cannot pass for another attribute. They are matched leaf
//! first, then up the presented chain, then the trusted CAs; the first certificate with an
//! entry gives the attributes. Two entries naming the same subject are refused when the
//! settings are built, so one certificate matches at most one entry.

use std::collections::BTreeMap;

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::subject::{string_value, Subject, COMMON_NAME};

#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("a trusted CA certificate cannot be parsed: {0}")]
    BadCa(String),
    #[error("authorizationAttributes.{entry}.subject {subject:?}: {reason}")]
    BadSubject {
        entry: String,
        subject: String,
        reason: String,
    },
    #[error("authorizationAttributes.{first} and authorizationAttributes.{second} name the same subject, so which one applies would be arbitrary; merge their attributes into one entry")]
    SameSubject { first: String, second: String },
}

/// One `authorizationAttributes` entry as configured: its name, subject text, attributes.
pub type AttributeEntry = (String, String, BTreeMap<String, String>);

#[derive(Debug)]
pub struct X509Settings {
    /// Subjects of the trusted CAs, for matching them last.
    trusted_subjects: Vec<Option<Subject>>,
    /// Subject → attributes. No two entries have the same subject, so at most one matches
    /// a certificate and the entries' order does not matter.
    rules: Vec<(Subject, BTreeMap<String, String>)>,
}

impl X509Settings {
    /// `trusted_cas`: the PEM CAs of `trustedClientCaCert`; `entries`: the
    /// `authorizationAttributes` (subject text as in the resource, e.g.
    /// `CN = smart-fan, OU = Engineering`; the format is in [`super::subject`]).
    pub fn new(trusted_cas: &[u8], entries: Vec<AttributeEntry>) -> Result<Self, X509Error> {
        use rustls::pki_types::pem::PemObject;
        let mut trusted_subjects = Vec::new();
        for der in CertificateDer::pem_slice_iter(trusted_cas) {
            let der = der.map_err(|e| X509Error::BadCa(e.to_string()))?;
            let (_, cert) =
                X509Certificate::from_der(&der).map_err(|e| X509Error::BadCa(e.to_string()))?;
            trusted_subjects.push(Subject::of_certificate(cert.subject()));
        }
        let mut named: Vec<(String, Subject, BTreeMap<String, String>)> = Vec::new();
        for (entry, text, attributes) in entries {
            let subject = Subject::parse(&text).map_err(|reason| X509Error::BadSubject {
                entry: entry.clone(),
                subject: text.clone(),
                reason,
            })?;
            if let Some((first, _, _)) = named.iter().find(|(_, s, _)| *s == subject) {
                return Err(X509Error::SameSubject {
                    first: first.clone(),
                    second: entry,
                });
            }
            named.push((entry, subject, attributes));
        }
        Ok(Self {
            trusted_subjects,
            rules: named.into_iter().map(|(_, s, a)| (s, a)).collect(),
        })
    }

    /// Common name and attributes of a verified chain; `None` if the leaf cannot be parsed
    /// or has no single usable CN (none, several, not a character string, empty, or
    /// holding U+0000, which no MQTT user name may).
    pub fn identify(
        &self,
        chain: &[CertificateDer<'static>],
    ) -> Option<(String, BTreeMap<String, String>)> {
        let mut subjects = Vec::new();
        let mut cn = None;
        for (i, der) in chain.iter().enumerate() {
            let (_, cert) = X509Certificate::from_der(der).ok()?;
            if i == 0 {
                cn = Some(common_name(&cert)?);
            }
            subjects.push(Subject::of_certificate(cert.subject()));
        }
        subjects.extend(self.trusted_subjects.iter().cloned());
        let attributes = subjects
            .iter()
            .flatten()
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

/// The leaf's one CN, read as its value (never from formatted subject text).
fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    let mut names = cert
        .subject()
        .iter()
        .flat_map(|rdn| rdn.iter())
        .filter(|a| a.attr_type().to_id_string() == COMMON_NAME);
    let only = names.next()?;
    if names.next().is_some() {
        return None;
    }
    string_value(only.attr_value()).filter(|cn| !cn.is_empty() && !cn.contains('\0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate (DER) whose subject is exactly `dn`, self-signed.
    fn certificate(dn: &[(rcgen::DnType, &str)]) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::default();
        let mut name = rcgen::DistinguishedName::new();
        for (kind, value) in dn {
            name.push(kind.clone(), *value);
        }
        params.distinguished_name = name;
        let key = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key).expect("certificate").der().clone()
    }

    fn entry(name: &str, subject: &str, role: &str) -> AttributeEntry {
        let attributes = BTreeMap::from([("role".to_owned(), role.to_owned())]);
        (name.to_owned(), subject.to_owned(), attributes)
    }

    fn role(settings: &X509Settings, cert: CertificateDer<'static>) -> Option<String> {
        let (_, attributes) = settings.identify(&[cert])?;
        attributes.get("role").cloned()
    }

    #[test]
    fn a_comma_in_a_common_name_never_matches_two_attributes() -> Result<(), X509Error> {
        use rcgen::DnType::{CommonName, OrganizationName};
        let settings = X509Settings::new(
            b"",
            vec![
                entry("admins", "CN = admin, O = Edgeplane", "admin"),
                entry("literal", r"CN = admin\, O = Edgeplane", "literal"),
            ],
        )?;
        let spoof = certificate(&[(CommonName, "admin, O = Edgeplane")]);
        assert_eq!(
            settings.identify(std::slice::from_ref(&spoof)).map(|i| i.0),
            Some("admin, O = Edgeplane".to_owned()),
            "the CN is the user name as it is"
        );
        assert_eq!(role(&settings, spoof).as_deref(), Some("literal"));
        let admin = certificate(&[(CommonName, "admin"), (OrganizationName, "Edgeplane")]);
        assert_eq!(role(&settings, admin).as_deref(), Some("admin"));
        let other = certificate(&[(OrganizationName, "Edgeplane"), (CommonName, "admin2")]);
        assert_eq!(role(&settings, other), None);
        Ok(())
    }

    #[test]
    fn two_entries_for_one_subject_are_refused() {
        let refused = X509Settings::new(
            b"",
            vec![
                entry("listed-first", "CN = twice, O = Edgeplane", "first"),
                entry("also-matching", "O=Edgeplane,CN=twice", "second"),
            ],
        );
        assert!(
            matches!(&refused, Err(X509Error::SameSubject { first, second }) if first == "listed-first" && second == "also-matching"),
            "{refused:?}"
        );
        let bad = X509Settings::new(b"", vec![entry("typo", "CN: fan", "x")]);
        assert!(matches!(bad, Err(X509Error::BadSubject { .. })), "{bad:?}");
    }

    #[test]
    fn a_leaf_without_a_usable_common_name_is_not_identified() -> Result<(), X509Error> {
        let settings = X509Settings::new(b"", vec![])?;
        let none = certificate(&[(rcgen::DnType::OrganizationName, "Edgeplane")]);
        assert_eq!(settings.identify(&[none]), None);
        let empty = certificate(&[(rcgen::DnType::CommonName, "")]);
        assert_eq!(settings.identify(&[empty]), None);
        Ok(())
    }
}
