//! The `BrokerAuthentication` and `BrokerAuthorization` kinds.
//!
//! A `BrokerAuthentication` is checked against field tables (every method and its settings,
//! unknown fields refused, all errors at once), so `edgeplane validate` reports a typo in a
//! method's settings; rules between fields and other resources (the Secret or ConfigMap a
//! method names, a method without its settings) are checked where the broker builds the
//! methods. A `BrokerAuthorization` spec is compiled (and its errors reported) by the
//! broker's policy compiler. Both specs leave as JSON for the broker's auth module.

use crate::resource::crd_document;
use crate::schema::{opt, req, EnumDef, Field, Schema};
use crate::yaml::Node;

pub(crate) static AUTHENTICATION_DOCUMENT: [Field; 5] =
    crd_document(true, Schema::Object(&AUTHENTICATION_SPEC));
pub(crate) static AUTHORIZATION_DOCUMENT: [Field; 5] = crd_document(true, Schema::FreeMap);

static AUTHENTICATION_SPEC: [Field; 1] = [req(
    "authenticationMethods",
    Schema::List(&Schema::Object(&METHOD)),
)];

/// One method: `method` names it, the matching `*Settings` configures it. `UsernamePassword`
/// is Edgeplane's (a password file Secret, see `edgeplane passwd`).
static METHOD: [Field; 5] = [
    req(
        "method",
        Schema::Enum(&EnumDef {
            values: &["Custom", "ServiceAccountToken", "X509", "UsernamePassword"],
            aliases: &[],
        }),
    ),
    opt("customSettings", Schema::Object(&CUSTOM)),
    opt("serviceAccountTokenSettings", Schema::Object(&SAT)),
    opt("x509Settings", Schema::Object(&X509)),
    opt(
        "usernamePasswordSettings",
        Schema::Object(&[req("passwordFileSecretRef", Schema::Str)]),
    ),
];

/// `customSettings`: the webhook (AIO custom authentication API 0.5.0).
static CUSTOM: [Field; 4] = [
    req("endpoint", Schema::StrWith(check_https)),
    opt("caCertConfigMap", Schema::Str),
    opt(
        "auth",
        Schema::Object(&[opt(
            "x509",
            Schema::Object(&[req("secretRef", Schema::Str), opt("namespace", Schema::Str)]),
        )]),
    ),
    opt("headers", Schema::Map(&Schema::Str)),
];

/// `serviceAccountTokenSettings`: AIO's `audiences`, and our `jwksSecretRef` (standalone keys).
static SAT: [Field; 2] = [
    req("audiences", Schema::List(&Schema::Str)),
    opt("jwksSecretRef", Schema::Str),
];

static X509: [Field; 3] = [
    opt("trustedClientCaCert", Schema::Str),
    opt(
        "authorizationAttributes",
        Schema::Map(&Schema::Object(&[
            req("subject", Schema::Str),
            opt("attributes", Schema::Map(&Schema::Str)),
        ])),
    ),
    opt(
        "additionalValidation",
        Schema::Enum(&EnumDef {
            // AzureDeviceRegistry (validation against registered devices) is not built:
            // refused rather than silently ignored.
            values: &["None"],
            aliases: &[],
        }),
    ),
];

fn check_https(text: &str) -> Result<(), String> {
    match text.strip_prefix("https://") {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        _ => Err(format!(
            "`{text}` is not an https URL; the authentication server must use TLS (https://host[:port][/path])"
        )),
    }
}

/// The `spec` as JSON (null when missing; that was reported).
pub(crate) fn read_spec(doc: &Node) -> serde_json::Value {
    doc.get("spec")
        .map_or(serde_json::Value::Null, Node::to_json)
}
