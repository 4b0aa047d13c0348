//! `ServiceAccountToken` (Azure IoT Operations' `K8S-SAT` enhanced authentication). In a
//! cluster the API server reviews the token (`tokenreview.rs`). Standalone,
//! the JWT a client sends as MQTT 5 Authentication Data is verified here, without a cluster,
//! against public keys from a JWKS document (RS256 and ES256, via `ring`, the crypto provider
//! rustls already uses), then its `aud` against the configured audiences and its `exp` / `nbf`
//! against the clock. What leaves is the token's expiry (the connection is closed then unless
//! the client re-authenticates) and its subject. Errors never carry the token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

/// The MQTT 5 Authentication Method of Kubernetes service account tokens.
pub const SAT_METHOD: &str = "K8S-SAT";

/// A configuration problem with the keys or audiences (reported at start-up).
#[derive(Debug, thiserror::Error)]
pub enum SatConfigError {
    #[error("the JWKS document is not JSON with a `keys` array: {0}")]
    NotJwks(String),
    #[error("JWKS key {index}: {why}")]
    BadKey { index: usize, why: String },
    #[error("no usable RS256 or ES256 public key in the JWKS documents")]
    NoKeys,
    #[error("audiences: list at least one audience tokens must be issued for")]
    NoAudiences,
}

/// Why a token was refused. The messages name the check, never the token's content.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT (three base64url parts with JSON header and claims)")]
    Malformed,
    #[error("signature algorithm {0:?} is not accepted (RS256, ES256)")]
    Algorithm(String),
    #[error("no configured key matches the token's key id and algorithm")]
    UnknownKey,
    #[error("signature does not verify")]
    Signature,
    #[error("token has no numeric `exp` claim")]
    NoExpiry,
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (`nbf`)")]
    NotYetValid,
    #[error("token audience is not one of the configured audiences")]
    Audience,
    #[error("TokenReview: {0}")]
    Review(#[from] super::tokenreview::ReviewError),
}

#[derive(Debug)]
enum KeyMaterial {
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point (0x04 ‖ x ‖ y).
    P256(Vec<u8>),
}

#[derive(Debug)]
struct Key {
    kid: Option<String>,
    material: KeyMaterial,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub expiry: SystemTime,
    pub subject: Option<String>,
}

/// Settings of one `ServiceAccountToken` method.
#[derive(Debug)]
pub struct SatSettings {
    audiences: Vec<String>,
    verifier: Verifier,
}

/// Who checks a token's signature.
#[derive(Debug)]
enum Verifier {
    /// Public keys from JWKS documents (standalone).
    Keys(Vec<Key>),
    /// The cluster's API server (TokenReview).
    Cluster(super::tokenreview::TokenReview),
}

impl SatSettings {
    /// `audiences`: `serviceAccountTokenSettings.audiences`; `jwks`: JWKS documents (JSON).
    pub fn new(audiences: Vec<String>, jwks: &[&[u8]]) -> Result<Self, SatConfigError> {
        if audiences.is_empty() {
            return Err(SatConfigError::NoAudiences);
        }
        let mut keys = Vec::new();
        for doc in jwks {
            let v: Value =
                serde_json::from_slice(doc).map_err(|e| SatConfigError::NotJwks(e.to_string()))?;
            let list = v
                .get("keys")
                .and_then(Value::as_array)
                .ok_or_else(|| SatConfigError::NotJwks("no `keys` array".into()))?;
            for (index, k) in list.iter().enumerate() {
                if let Some(key) =
                    parse_jwk(k).map_err(|why| SatConfigError::BadKey { index, why })?
                {
                    keys.push(key);
                }
            }
        }
        if keys.is_empty() {
            return Err(SatConfigError::NoKeys);
        }
        Ok(Self {
            audiences,
            verifier: Verifier::Keys(keys),
        })
    }

    /// In a cluster: tokens are reviewed by the API server (TokenReview) for `audiences`.
    pub fn with_token_review(
        audiences: Vec<String>,
        review: super::tokenreview::TokenReview,
    ) -> Result<Self, SatConfigError> {
        if audiences.is_empty() {
            return Err(SatConfigError::NoAudiences);
        }
        Ok(Self {
            audiences,
            verifier: Verifier::Cluster(review),
        })
    }

    /// Check a token as configured: against the keys, or, in a cluster, its claims' `exp`
    /// and `nbf` here (a token that has expired costs the API server nothing) and then the
    /// signature and audiences by TokenReview. The reviewed user name is the subject.
    pub async fn check(&self, token: &[u8], now: SystemTime) -> Result<VerifiedToken, TokenError> {
        let review = match &self.verifier {
            Verifier::Keys(_) => return self.verify(token, now),
            Verifier::Cluster(review) => review,
        };
        let text = std::str::from_utf8(token)
            .map_err(|_| TokenError::Malformed)?
            .trim();
        let mut parts = text.split('.');
        let (Some(_), Some(c), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let claims: Value = decode_json(c)?;
        let expiry = times(&claims, now)?;
        let user = review.review(text, &self.audiences).await?;
        Ok(VerifiedToken {
            expiry,
            subject: Some(user),
        })
    }

    /// Verify a compact JWT: signature, then `exp`, `nbf` and `aud` at `now`.
    pub fn verify(&self, token: &[u8], now: SystemTime) -> Result<VerifiedToken, TokenError> {
        let text = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let mut parts = text.trim().split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = decode_json(h)?;
        let claims: Value = decode_json(c)?;
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed)?;
        let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let kid = header.get("kid").and_then(Value::as_str);
        let signed = &text.trim().as_bytes()[..h.len() + 1 + c.len()];
        let Verifier::Keys(keys) = &self.verifier else {
            return Err(TokenError::UnknownKey);
        };
        let mut candidates = keys.iter().filter(|k| match (kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        });
        let verified = match alg {
            "RS256" => candidates.any(|k| match &k.material {
                KeyMaterial::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                    .is_ok(),
                KeyMaterial::P256(_) => false,
            }),
            "ES256" => candidates.any(|k| match &k.material {
                KeyMaterial::P256(point) => {
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                        .verify(signed, &sig)
                        .is_ok()
                }
                KeyMaterial::Rsa { .. } => false,
            }),
            other => return Err(TokenError::Algorithm(other.to_owned())),
        };
        if !verified {
            let any_key = keys.iter().any(|k| {
                kid.is_none_or(|want| k.kid.as_deref() == Some(want))
                    && matches!(
                        (alg, &k.material),
                        ("RS256", KeyMaterial::Rsa { .. }) | ("ES256", KeyMaterial::P256(_))
                    )
            });
            return Err(if any_key {
                TokenError::Signature
            } else {
                TokenError::UnknownKey
            });
        }
        let expiry = times(&claims, now)?;
        let audience_ok = match claims.get("aud") {
            Some(Value::String(a)) => self.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.audiences.iter().any(|want| want == a)),
            _ => false,
        };
        if !audience_ok {
            return Err(TokenError::Audience);
        }
        Ok(VerifiedToken {
            expiry,
            subject: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
        })
    }
}

/// The claims' `exp` (required) and `nbf` checked at `now`: the expiry.
fn times(claims: &Value, now: SystemTime) -> Result<SystemTime, TokenError> {
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let exp = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(TokenError::NoExpiry)?;
    if exp <= now_secs {
        return Err(TokenError::Expired);
    }
    if claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| nbf > now_secs)
    {
        return Err(TokenError::NotYetValid);
    }
    Ok(UNIX_EPOCH + Duration::from_secs(exp))
}

fn decode_json(part: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(TokenError::Malformed)
    }
}

/// One JWK; `Ok(None)` for keys that are not for signatures we accept (e.g. `use: enc`).
fn parse_jwk(k: &Value) -> Result<Option<Key>, String> {
    let field = |name: &str| -> Result<Vec<u8>, String> {
        let s = k
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("missing `{name}`"))?;
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    if k.get("use")
        .and_then(Value::as_str)
        .is_some_and(|u| u != "sig")
    {
        return Ok(None);
    }
    let kid = k.get("kid").and_then(Value::as_str).map(str::to_owned);
    let material = match k.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            // ring wants the minimal big-endian encoding.
            let strip = |v: Vec<u8>| {
                let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
                v[start..].to_vec()
            };
            KeyMaterial::Rsa {
                n: strip(field("n")?),
                e: strip(field("e")?),
            }
        }
        Some("EC") => {
            if k.get("crv").and_then(Value::as_str) != Some("P-256") {
                return Err("only EC keys on curve P-256 (ES256) are accepted".into());
            }
            let (x, y) = (field("x")?, field("y")?);
            if x.len() != 32 || y.len() != 32 {
                return Err("P-256 coordinates must be 32 bytes".into());
            }
            let mut point = vec![0x04];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::P256(point)
        }
        other => return Err(format!("key type {other:?} is not RSA or EC")),
    };
    Ok(Some(Key { kid, material }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

    fn es256() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load key");
        let point = pair.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]});
        (pair, jwks.to_string())
    }

    fn sign(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let c = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{h}.{c}");
        let sig = pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    #[test]
    fn checks_signature_audience_and_times() {
        let (pair, jwks) = es256();
        let (other, _) = es256();
        let sat = SatSettings::new(vec!["edge".into()], &[jwks.as_bytes()]).expect("settings");
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let header = serde_json::json!({"alg": "ES256", "kid": "k1"});
        let claims = |aud: Value, exp: u64, nbf: u64| serde_json::json!({"aud": aud, "exp": exp, "nbf": nbf, "sub": "system:serviceaccount:a:b"});
        let good = sign(&pair, &header, &claims("edge".into(), 1_000_060, 999_000));
        let t = sat.verify(good.as_bytes(), now).expect("valid token");
        assert_eq!(t.expiry, UNIX_EPOCH + Duration::from_secs(1_000_060));
        assert_eq!(t.subject.as_deref(), Some("system:serviceaccount:a:b"));
        let list = sign(
            &pair,
            &header,
            &claims(serde_json::json!(["x", "edge"]), 1_000_060, 0),
        );
        assert!(sat.verify(list.as_bytes(), now).is_ok());

        let cases = [
            (
                sign(&other, &header, &claims("edge".into(), 1_000_060, 0)),
                TokenError::Signature,
            ),
            (
                sign(&pair, &header, &claims("other".into(), 1_000_060, 0)),
                TokenError::Audience,
            ),
            (
                sign(&pair, &header, &claims("edge".into(), 999_999, 0)),
                TokenError::Expired,
            ),
            (
                sign(&pair, &header, &claims("edge".into(), 1_000_060, 1_000_010)),
                TokenError::NotYetValid,
            ),
            (
                sign(
                    &pair,
                    &serde_json::json!({"alg": "ES256", "kid": "k9"}),
                    &claims("edge".into(), 1_000_060, 0),
                ),
                TokenError::UnknownKey,
            ),
            (
                sign(
                    &pair,
                    &serde_json::json!({"alg": "none"}),
                    &claims("edge".into(), 1_000_060, 0),
                ),
                TokenError::Algorithm("none".into()),
            ),
            ("a.b".to_owned(), TokenError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(sat.verify(token.as_bytes(), now), Err(want));
        }
        // A tampered claim set fails the signature.
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(claims("edge".into(), 9_999_999, 0).to_string());
        assert_eq!(
            sat.verify(parts.join(".").as_bytes(), now),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn refuses_bad_configuration() {
        assert!(matches!(
            SatSettings::new(vec![], &[b"{\"keys\":[]}"]),
            Err(SatConfigError::NoAudiences)
        ));
        assert!(matches!(
            SatSettings::new(vec!["a".into()], &[b"{\"keys\":[]}"]),
            Err(SatConfigError::NoKeys)
        ));
        assert!(matches!(
            SatSettings::new(vec!["a".into()], &[b"not json"]),
            Err(SatConfigError::NotJwks(_))
        ));
    }
}
