//! Certificate subjects as X509 authentication compares them: the set of (attribute type,
//! value) pairs of a distinguished name, never its formatted text.
//!
//! Two sources enter here. A configured subject (`authorizationAttributes.*.subject`) is
//! text in Azure IoT Operations' form, `CN = smart-fan, OU = Engineering, C = US`:
//! attributes separated by `,`, each `TYPE = value`, spaces around either optional, types
//! case-insensitive (`CN`, `O`, `OU`, `C`, `L`, `ST`, `STREET`, `DC`, `UID`,
//! `SERIALNUMBER`, `emailAddress`, … or a dotted OID). In a value, `\` escapes the next
//! character as in RFC 4514 (`\,` is a comma that belongs to the value, `\\` a backslash,
//! `\ ` a space kept at either end) or, followed by two hex digits, gives that byte of the
//! UTF-8 value (`\2C`). A certificate's subject enters as DER and is read attribute by
//! attribute. What leaves is a [`Subject`]: pairs sorted, so attribute order does not
//! matter, and a value holding a comma stays one value, so it can never stand for two
//! configured attributes.

use x509_parser::asn1_rs::{Any, Tag};
use x509_parser::x509::X509Name;

/// The attribute type `CN`, as a dotted OID.
pub(crate) const COMMON_NAME: &str = "2.5.4.3";

/// Attribute type names a configured subject may use, and their OIDs (RFC 4514 section 3,
/// and the names OpenSSL prints).
const TYPES: [(&str, &str); 17] = [
    ("CN", COMMON_NAME),
    ("SN", "2.5.4.4"),
    ("SURNAME", "2.5.4.4"),
    ("SERIALNUMBER", "2.5.4.5"),
    ("C", "2.5.4.6"),
    ("L", "2.5.4.7"),
    ("ST", "2.5.4.8"),
    ("S", "2.5.4.8"),
    ("STREET", "2.5.4.9"),
    ("O", "2.5.4.10"),
    ("OU", "2.5.4.11"),
    ("T", "2.5.4.12"),
    ("TITLE", "2.5.4.12"),
    ("GN", "2.5.4.42"),
    ("GIVENNAME", "2.5.4.42"),
    ("DC", "0.9.2342.19200300.100.1.25"),
    ("UID", "0.9.2342.19200300.100.1.1"),
];
/// `emailAddress` (PKCS #9), also written `E`.
const EMAIL: (&str, &str) = ("1.2.840.113549.1.9.1", "EMAILADDRESS");

/// A subject: its (type as dotted OID, value) pairs, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject(Vec<(String, String)>);

impl Subject {
    /// The subject of a certificate; `None` when an attribute value is not a character
    /// string (such a subject matches no configured one).
    pub(crate) fn of_certificate(name: &X509Name<'_>) -> Option<Self> {
        let mut pairs = Vec::new();
        for rdn in name.iter() {
            for attr in rdn.iter() {
                let value = string_value(attr.attr_value())?;
                pairs.push((attr.attr_type().to_id_string(), value));
            }
        }
        pairs.sort();
        Some(Self(pairs))
    }

    /// Parse a configured subject (the format is in the module doc). The error says what
    /// is wrong, for the configuration's error message.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut chars = text.chars().peekable();
        loop {
            let mut kind = String::new();
            let mut value: Vec<u8> = Vec::new();
            // Length of `value` up to its last character that is not an unescaped space.
            let mut kept = 0;
            let mut in_value = false;
            let mut more = false;
            while let Some(c) = chars.next() {
                match c {
                    ',' => {
                        more = true;
                        break;
                    }
                    '=' if !in_value => in_value = true,
                    '\\' if in_value => {
                        unescape(&mut chars, &mut value)?;
                        kept = value.len();
                    }
                    '\\' => return Err("`\\` may only escape characters of a value".into()),
                    c if in_value => {
                        if value.is_empty() && c.is_whitespace() {
                            continue;
                        }
                        let mut buf = [0; 4];
                        value.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        if !c.is_whitespace() {
                            kept = value.len();
                        }
                    }
                    c => kind.push(c),
                }
            }
            value.truncate(kept);
            let kind = kind.trim();
            if kind.is_empty() || !in_value {
                return Err(
                    "expected attributes `TYPE = value` separated by `,` (`CN = name, O = org`)"
                        .into(),
                );
            }
            let oid = oid_of(kind).ok_or_else(|| {
                format!("unknown attribute type `{kind}`; use CN, O, OU, C, L, ST, STREET, DC, UID, SERIALNUMBER, emailAddress or a dotted OID")
            })?;
            let value = String::from_utf8(value)
                .map_err(|_| format!("the value of `{kind}` is not UTF-8 once unescaped"))?;
            if value.is_empty() {
                return Err(format!("`{kind}` has an empty value"));
            }
            pairs.push((oid, value));
            if !more {
                break;
            }
        }
        pairs.sort();
        Ok(Self(pairs))
    }
}

/// The character after a `\` in a value, or the byte of the two hex digits after it.
fn unescape(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    value: &mut Vec<u8>,
) -> Result<(), String> {
    let Some(first) = chars.next() else {
        return Err("a value ends with a lone `\\`; write `\\\\` for a backslash".into());
    };
    let hex = |c: char| c.to_digit(16);
    match (hex(first), chars.peek().copied().and_then(hex)) {
        (Some(high), Some(low)) => {
            chars.next();
            // Both digits are below 16, so the byte fits.
            value.push(u8::try_from(high * 16 + low).unwrap_or_default());
        }
        _ => {
            let mut buf = [0; 4];
            value.extend_from_slice(first.encode_utf8(&mut buf).as_bytes());
        }
    }
    Ok(())
}

/// The dotted OID of a configured attribute type.
fn oid_of(kind: &str) -> Option<String> {
    let upper = kind.to_ascii_uppercase();
    if let Some((_, oid)) = TYPES.iter().find(|(name, _)| *name == upper) {
        return Some((*oid).to_owned());
    }
    if upper == EMAIL.1 || upper == "E" {
        return Some(EMAIL.0.to_owned());
    }
    let dotted = kind.split('.').count() >= 2
        && kind
            .split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()));
    dotted.then(|| kind.to_owned())
}

/// An attribute value as text, for the DirectoryString types and the other character
/// strings certificates use; `None` for anything else.
pub(crate) fn string_value(any: &Any<'_>) -> Option<String> {
    match any.header.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::TeletexString => std::str::from_utf8(any.data).ok().map(str::to_owned),
        Tag::BmpString => {
            let units = any
                .data
                .chunks_exact(2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]));
            any.data
                .len()
                .is_multiple_of(2)
                .then(|| {
                    char::decode_utf16(units)
                        .collect::<Result<String, _>>()
                        .ok()
                })
                .flatten()
        }
        Tag::UniversalString => {
            let chars = any
                .data
                .chunks_exact(4)
                .map(|b| char::from_u32(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
            any.data
                .len()
                .is_multiple_of(4)
                .then(|| chars.collect::<Option<String>>())
                .flatten()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Subject {
        let mut v: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        v.sort();
        Subject(v)
    }

    #[test]
    fn spacing_order_and_type_case_do_not_matter() {
        let want = pairs(&[(COMMON_NAME, "fan"), ("2.5.4.10", "Contoso")]);
        assert_eq!(Subject::parse("CN = fan, O = Contoso"), Ok(want.clone()));
        assert_eq!(Subject::parse("o=Contoso,cn=fan"), Ok(want.clone()));
        assert_eq!(Subject::parse("2.5.4.3=fan, 2.5.4.10 = Contoso"), Ok(want));
        assert_ne!(Subject::parse("CN = fan"), Subject::parse("CN = fan2"));
    }

    #[test]
    fn an_escaped_comma_stays_in_its_value() {
        let one = pairs(&[(COMMON_NAME, "admin, O = Edgeplane")]);
        assert_eq!(
            Subject::parse(r"CN = admin\, O = Edgeplane"),
            Ok(one.clone())
        );
        assert_eq!(
            Subject::parse(r"CN = admin\2C O = Edgeplane"),
            Ok(one.clone())
        );
        let two = Subject::parse("CN = admin, O = Edgeplane");
        assert_eq!(
            two,
            Ok(pairs(&[(COMMON_NAME, "admin"), ("2.5.4.10", "Edgeplane")]))
        );
        assert_ne!(two, Ok(one), "one value with a comma is not two attributes");
    }

    #[test]
    fn escapes_keep_spaces_and_backslashes() {
        assert_eq!(
            Subject::parse(r"CN = \ padded\ , OU = a\\b\+c"),
            Ok(pairs(&[(COMMON_NAME, " padded "), ("2.5.4.11", r"a\b+c")]))
        );
        assert_eq!(
            Subject::parse(r"CN = caf\C3\A9"),
            Ok(pairs(&[(COMMON_NAME, "café")]))
        );
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for bad in [
            "",
            "CN",
            "CN = a,",
            "= a",
            "CN = ",
            r"CN = a\",
            r"C\N = a",
            "XYZ = a",
            r"CN = \FF",
        ] {
            assert!(Subject::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
