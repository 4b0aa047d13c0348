//! Re-authentication with the `Custom` method, through the real binary against a real HTTPS
//! webhook served by this test (hyper over tokio-rustls, speaking custom authentication API
//! 0.5.0): an MQTT 5 client that connected with an Authentication Method renews its
//! credentials with AUTH 0x19 before the webhook's `expiry`, the webhook is asked with
//! `type: auth` and its new attributes apply to authorization at once; a client that does
//! not renew is disconnected with 0xA0 at the expiry; a refused renewal ends the connection
//! with 0x87.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use edgeplane_tests::codec::{Auth, Packet, Properties, ReasonCode};
use edgeplane_tests::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

mod auth_support;
mod https_support;
use auth_support::{
    ca_config_map, custom_authentication, listener, named_policy, publish_reason, BIN,
};
use https_support::{json_reply, serve_https};

const METHOD: &str = "edgeplane-test-token";
/// Seconds of validity the webhook grants for each token it knows.
const SHORT: u64 = 3;
const LONG: u64 = 120;

type Requests = Arc<Mutex<Vec<Value>>>;

/// RFC 3339 (UTC, seconds) of `t`.
fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The webhook's decision on one request body: tokens `short-N` are granted for [`SHORT`]
/// seconds, `long-N` for [`LONG`], both with attribute `line: N`; anything else is refused
/// with 403 reason 135.
fn decide(body: &Value) -> (u16, Value) {
    let token = body
        .get("authenticationData")
        .and_then(Value::as_str)
        .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
        .and_then(|d| String::from_utf8(d).ok())
        .unwrap_or_default();
    let grant = |secs: u64, line: &str| {
        let expiry = rfc3339(SystemTime::now() + Duration::from_secs(secs));
        (200, json!({"expiry": expiry, "attributes": {"line": line}}))
    };
    match token.split_once('-') {
        Some(("short", line)) => grant(SHORT, line),
        Some(("long", line)) => grant(LONG, line),
        _ => (403, json!({"reason": 135, "message": "unknown token"})),
    }
}

/// Serve the webhook on an ephemeral loopback port with a certificate from a fresh CA;
/// returns its port, the CA's PEM and the log of request bodies.
async fn start_webhook() -> (u16, String, Requests) {
    let requests = Requests::default();
    let log = Arc::clone(&requests);
    let (port, ca) = serve_https("re-auth webhook CA", "webhook", move |req| {
        let log = Arc::clone(&log);
        async move { answer(req, &log).await }
    })
    .await;
    (port, ca, requests)
}

/// One request as API 0.5.0 has it: POST `/?api-version=0.5.0` with a JSON body.
async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    log: &Requests,
) -> hyper::Response<Full<Bytes>> {
    let reply = json_reply;
    if req.method() != hyper::Method::POST {
        return reply(405, json!("method not allowed"));
    }
    if req.uri().path() != "/" || req.uri().query() != Some("api-version=0.5.0") {
        return reply(422, json!({"supportedVersions": ["0.5.0"]}));
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(400, json!("no body"));
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return reply(400, json!("not JSON"));
    };
    let (status, out) = decide(&body);
    log.lock().expect("log").push(body);
    reply(status, out)
}

/// Attribute `line` (from the webhook) `1` or `2` may publish under `lines/{line}/`.
const LINES: &str = r#"
    - principals:
        attributes: [{line: "1"}, {line: "2"}]
      brokerResources:
      - method: Connect
      - method: Publish
        topics: ["lines/{principal.attributes.line}/#"]
"#;

fn config(dir: &Path, port: u16, ca_pem: &str) {
    let endpoint = format!("endpoint: https://127.0.0.1:{port}");
    let text = [
        custom_authentication(
            "webhook",
            &[&endpoint, "caCertConfigMap: webhook-ca"],
            false,
        ),
        ca_config_map("webhook-ca", ca_pem),
        named_policy("lines", LINES),
        listener(
            "plant",
            &[&["authenticationRef: webhook", "authorizationRef: lines"]],
        ),
    ];
    std::fs::write(dir.join("config.yaml"), text.join("---\n")).expect("write config");
}

/// Connect with enhanced authentication under [`METHOD`] and `token` as data.
async fn connect_with(addr: SocketAddr, id: &str, token: &str) -> Client {
    let mut client = Client::open(addr, V5).await;
    let mut c = connect(id, V5);
    c.properties.authentication_method = Some(METHOD.into());
    c.properties.authentication_data = Some(token.to_owned().into_bytes().into());
    let ack = client.connect(c).await;
    assert_eq!(ack.code, 0, "CONNACK for {id}");
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    client
}

async fn reauth(client: &mut Client, token: &str) {
    let properties = Properties {
        authentication_method: Some(METHOD.into()),
        authentication_data: Some(token.to_owned().into_bytes().into()),
        ..Properties::default()
    };
    let auth = Auth {
        reason: ReasonCode::RE_AUTHENTICATE,
        properties,
    };
    client.send(&Packet::Auth(auth)).await;
}

/// The DISCONNECT that ends `client` within `limit`, and that the connection then closes.
async fn disconnect_reason(client: &mut Client, limit: Duration) -> ReasonCode {
    match client.recv_within(limit).await {
        Some(Packet::Disconnect(d)) => {
            let after = client.recv_within(WAIT).await;
            assert!(after.is_none(), "closed after DISCONNECT, got {after:?}");
            d.reason
        }
        other => panic!("expected DISCONNECT, got {other:?}"),
    }
}

#[tokio::test]
async fn custom_method_re_authentication_with_auth() {
    let (port, ca, requests) = start_webhook().await;
    let dir = TempDir::new("custom-reauth");
    config(&dir, port, &ca);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let addr = addrs[0];

    // Renewed before the expiry: AUTH 0x00, the new attributes apply, the old expiry passes.
    let mut renewer = connect_with(addr, "renewer", "short-1").await;
    let mut lapser = connect_with(addr, "lapser", "short-1").await;
    assert_eq!(
        publish_reason(&mut renewer, "lines/1/t", 1).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        publish_reason(&mut renewer, "lines/2/t", 2).await,
        ReasonCode::NOT_AUTHORIZED
    );
    reauth(&mut renewer, "long-2").await;
    match renewer.recv().await {
        Some(Packet::Auth(a)) => {
            assert_eq!(a.reason, ReasonCode::SUCCESS);
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
        }
        other => panic!("expected AUTH success, got {other:?}"),
    }
    assert_eq!(
        publish_reason(&mut renewer, "lines/2/t", 3).await,
        ReasonCode::SUCCESS
    );
    assert_eq!(
        publish_reason(&mut renewer, "lines/1/t", 4).await,
        ReasonCode::NOT_AUTHORIZED
    );

    // Not renewed: DISCONNECT 0xA0 (Maximum connect time) at the webhook's expiry.
    let limit = Duration::from_secs(SHORT + 5);
    let reason = disconnect_reason(&mut lapser, limit).await;
    assert_eq!(reason, ReasonCode(0xA0));

    // The renewed client outlived its first expiry.
    renewer.send(&Packet::PingReq).await;
    let pong = renewer.recv().await;
    assert!(matches!(pong, Some(Packet::PingResp)), "got {pong:?}");

    // A renewal the webhook refuses ends the connection with 0x87.
    let mut refused = connect_with(addr, "refused", "long-1").await;
    reauth(&mut refused, "stolen").await;
    let reason = disconnect_reason(&mut refused, WAIT).await;
    assert_eq!(reason, ReasonCode::NOT_AUTHORIZED);

    let seen = requests.lock().expect("log").clone();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let auths: Vec<_> = seen.iter().filter(|b| b["type"] == "auth").collect();
    assert_eq!(auths.len(), 2, "one type: auth request per AUTH: {seen:?}");
    assert_eq!(auths[0]["authenticationMethod"], METHOD);
    assert_eq!(auths[0]["authenticationData"], b64("long-2"));
    let connects: BTreeMap<String, usize> =
        seen.iter()
            .filter(|b| b["type"] == "connect")
            .fold(BTreeMap::new(), |mut m, b| {
                *m.entry(b["authenticationData"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
                m
            });
    assert_eq!(connects.get(&b64("short-1")), Some(&2), "{seen:?}");
}
