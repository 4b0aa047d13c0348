//! `ServiceAccountToken` in a cluster, through the real binary: without `jwksSecretRef` and
//! with `KUBERNETES_SERVICE_HOST`/`PORT` set, the broker asks the API server's TokenReview
//! endpoint about each K8S-SAT token. The API server here is a real HTTPS server in the
//! test that implements `POST /apis/authentication.k8s.io/v1/tokenreviews` as Kubernetes
//! does: the caller must present a bearer token, `spec.token` is looked up among the tokens
//! it issued, and `status.authenticated`, `status.audiences` (the intersection of the
//! token's and `spec.audiences`, refused when empty), `status.user` and `status.error` are
//! answered. Checked: an issued token connects, an unknown one or one for another audience
//! gets 0x86, an expired one is refused without asking, and AUTH 0x19 re-authentication is
//! reviewed too.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use edgeplane_tests::codec::{Auth, Packet, Properties, ReasonCode};
use edgeplane_tests::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{json, Value};

mod https_support;
use https_support::{json_reply, serve_https};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
const AUDIENCE: &str = "edge-broker";
/// The broker's own service account token, which the API server requires as bearer.
const BROKER_TOKEN: &str = "broker-service-account-token";

/// What the fake API server knows: tokens it issued (user name, audiences) and the
/// reviews it was asked for.
#[derive(Default)]
struct Cluster {
    issued: BTreeMap<String, (String, Vec<String>)>,
    reviewed: Vec<Value>,
    bearers: Vec<String>,
}

/// A JWT-shaped token with `aud` and `exp` (its signature is the API server's business).
fn token(name: &str, aud: &str, exp: i64) -> String {
    let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let header = enc(json!({"alg": "RS256", "kid": "cluster"}));
    let claims = enc(json!({
        "aud": [aud],
        "exp": exp,
        "sub": format!("system:serviceaccount:plant:{name}"),
    }));
    format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(name))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The TokenReview answer for `review` (a TokenReview object), as the API server gives it.
fn review(cluster: &Cluster, request: &Value) -> Value {
    let spec_token = request.pointer("/spec/token").and_then(Value::as_str);
    let wanted: Vec<&str> = request
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let status = match spec_token.and_then(|t| cluster.issued.get(t)) {
        None => json!({"authenticated": false, "user": {}, "error": "invalid bearer token"}),
        Some((user, audiences)) => {
            let common: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|a| audiences.iter().any(|b| b == a))
                .collect();
            if !wanted.is_empty() && common.is_empty() {
                json!({"authenticated": false, "user": {},
                    "error": format!("token audiences {audiences:?} is invalid for the target audiences {wanted:?}")})
            } else {
                json!({"authenticated": true, "audiences": common,
                    "user": {"username": user, "uid": "0d8f", "groups": ["system:serviceaccounts"]}})
            }
        }
    };
    json!({
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"creationTimestamp": null},
        "spec": request.get("spec").cloned().unwrap_or(Value::Null),
        "status": status,
    })
}

async fn answer(
    req: hyper::Request<hyper::body::Incoming>,
    cluster: &Mutex<Cluster>,
) -> hyper::Response<Full<Bytes>> {
    let reply = json_reply;
    let failure = |code: u16, reason: &str| json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code});
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if bearer.as_deref() != Some(BROKER_TOKEN) {
        return reply(401, failure(401, "Unauthorized"));
    }
    if req.method() != hyper::Method::POST
        || req.uri().path() != "/apis/authentication.k8s.io/v1/tokenreviews"
    {
        return reply(404, failure(404, "NotFound"));
    }
    let Ok(body) = req.into_body().collect().await else {
        return reply(400, failure(400, "BadRequest"));
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return reply(400, failure(400, "BadRequest"));
    };
    if request["kind"] != "TokenReview" || request["apiVersion"] != "authentication.k8s.io/v1" {
        return reply(400, failure(400, "BadRequest"));
    }
    let mut cluster = cluster.lock().expect("cluster");
    let out = review(&cluster, &request);
    cluster.reviewed.push(request);
    cluster.bearers.extend(bearer);
    reply(201, out)
}

/// Serve the API server on an ephemeral loopback port; returns the port and its CA (PEM).
async fn start_api_server(cluster: Arc<Mutex<Cluster>>) -> (u16, String) {
    serve_https("kubernetes", "kube-apiserver", move |req| {
        let cluster = Arc::clone(&cluster);
        async move { answer(req, &cluster).await }
    })
    .await
}

const CONFIG: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: sat}
spec:
  authenticationMethods:
  - method: ServiceAccountToken
    serviceAccountTokenSettings: {audiences: [edge-broker]}
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: plant}
spec:
  ports:
  - port: 0
    bindAddress: 127.0.0.1
    authenticationRef: sat
"#;

/// CONNECT with K8S-SAT and `token`: the client and the CONNACK code.
async fn connect_sat(addr: std::net::SocketAddr, id: &str, token: &str) -> (Client, u8) {
    let mut client = Client::open(addr, V5).await;
    let mut c = connect(id, V5);
    c.properties.authentication_method = Some("K8S-SAT".into());
    c.properties.authentication_data = Some(token.to_owned().into_bytes().into());
    let code = client.connect(c).await.code;
    (client, code)
}

#[tokio::test]
async fn tokens_are_reviewed_by_the_api_server() {
    let t = now();
    let good = token("line1", AUDIENCE, t + 600);
    let fresh = token("line1-renewed", AUDIENCE, t + 1200);
    let other_audience = token("api-client", "https://kubernetes.default.svc", t + 600);
    let unknown = token("forged", AUDIENCE, t + 600);
    let expired = token("old", AUDIENCE, t - 10);
    let mut cluster = Cluster::default();
    for (tok, name, aud) in [
        (&good, "line1", AUDIENCE),
        (&fresh, "line1", AUDIENCE),
        (
            &other_audience,
            "api-client",
            "https://kubernetes.default.svc",
        ),
        (&expired, "old", AUDIENCE),
    ] {
        let user = format!("system:serviceaccount:plant:{name}");
        cluster
            .issued
            .insert(tok.clone(), (user, vec![aud.to_owned()]));
    }
    let cluster = Arc::new(Mutex::new(cluster));
    let (port, ca) = start_api_server(Arc::clone(&cluster)).await;

    let dir = TempDir::new("sat-tokenreview");
    let sa = dir.join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("mkdir");
    std::fs::write(sa.join("ca.crt"), &ca).expect("write ca.crt");
    std::fs::write(sa.join("token"), format!("{BROKER_TOKEN}\n")).expect("write token");
    std::fs::write(sa.join("namespace"), "plant").expect("write namespace");
    std::fs::write(dir.join("config.yaml"), CONFIG).expect("write config");
    // The child inherits the in-cluster environment (this binary runs one test).
    std::env::set_var("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    std::env::set_var("KUBERNETES_SERVICE_PORT", port.to_string());
    std::env::set_var("EDGEPLANE_SERVICE_ACCOUNT_DIR", &sa);
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let addr = addrs[0];

    let (mut accepted, code) = connect_sat(addr, "line1", &good).await;
    assert_eq!(code, 0, "an issued token for the audience connects");
    for (id, tok, why) in [
        ("forged", &unknown, "a token the cluster did not issue"),
        (
            "api-client",
            &other_audience,
            "a token for another audience",
        ),
        ("old", &expired, "an expired token"),
    ] {
        let (_c, code) = connect_sat(addr, id, tok).await;
        assert_eq!(code, 0x86, "{why}: Bad user name or password");
    }

    let properties = Properties {
        authentication_method: Some("K8S-SAT".into()),
        authentication_data: Some(fresh.clone().into_bytes().into()),
        ..Properties::default()
    };
    let auth = Auth {
        reason: ReasonCode::RE_AUTHENTICATE,
        properties,
    };
    accepted.send(&Packet::Auth(auth)).await;
    match accepted.recv().await {
        Some(Packet::Auth(a)) => assert_eq!(a.reason, ReasonCode::SUCCESS),
        other => panic!("expected AUTH success after a reviewed renewal, got {other:?}"),
    }

    let cluster = cluster.lock().expect("cluster");
    let asked: Vec<&str> = cluster
        .reviewed
        .iter()
        .filter_map(|r| r.pointer("/spec/token").and_then(Value::as_str))
        .collect();
    assert_eq!(
        asked,
        [
            good.as_str(),
            unknown.as_str(),
            other_audience.as_str(),
            fresh.as_str()
        ],
        "each token reviewed once, in order; the expired one never sent"
    );
    for r in &cluster.reviewed {
        assert_eq!(r.pointer("/spec/audiences"), Some(&json!([AUDIENCE])));
    }
    assert!(cluster.bearers.iter().all(|b| b == BROKER_TOKEN));
}
