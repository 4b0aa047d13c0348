//! The portal's API over real sockets: sign-in (first-run set-up, sessions, cookie flags,
//! CSRF), dataflows written to the configuration folder and exported, the dry run, the
//! state store browser, the topic explorer stream and the embedded app.

mod common;

use common::{call, start_with_state, Http};
use edgeplane_codec::QoS;
use edgeplane_portal::Portal;
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::json;

async fn start(
    config_dir: Option<&std::path::Path>,
    data_dir: Option<&std::path::Path>,
) -> (TestBroker, Portal) {
    let registry = Registry::open(None).expect("registry");
    start_with_state(
        registry,
        config_dir.map(Into::into),
        data_dir.map(Into::into),
    )
    .await
}

const JSON: &str = "Content-Type: application/json";

#[tokio::test]
async fn nothing_but_probes_and_the_shell_without_a_session() {
    let dir = TempDir::new("portal-auth");
    let (_b, portal) = start(None, Some(&dir)).await;
    let anon = Http::anonymous(portal.http_addr());
    for path in ["/healthz", "/readyz", "/metrics", "/", "/ui/app.js"] {
        assert_eq!(anon.send("GET", path, "", &[]).await.status, 200, "{path}");
    }
    // The shell and every module it imports are served, same-origin only (CSP), and the
    // whole first load stays within its 300 KB budget.
    let shell = anon.send("GET", "/", "", &[]).await;
    let csp = shell.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let app = anon.send("GET", "/ui/app.js", "", &[]).await;
    for module in app
        .body
        .split("from './")
        .skip(1)
        .filter_map(|r| r.split('\'').next())
    {
        let served = anon.send("GET", &format!("/ui/{module}"), "", &[]).await;
        assert_eq!(served.status, 200, "{module} is imported but not served");
    }
    assert!(edgeplane_portal::first_load_bytes() < 300_000);
    for path in [
        "/api/v1/devices",
        "/api/v1/dataflows",
        "/api/v1/broker",
        "/api/v1/state",
        "/api/v1/activity",
        "/api/v1/export",
        "/api/v1/topics/stream?filter=%23",
    ] {
        assert_eq!(anon.send("GET", path, "", &[]).await.status, 401, "{path}");
    }
    let s = anon.send("GET", "/api/v1/session", "", &[]).await;
    assert_eq!(
        (s.status, s.json()["setupRequired"].as_bool()),
        (401, Some(true))
    );

    // Set-up wants JSON (a cross-site form cannot send it) and a real password.
    let creds = json!({"user": "admin", "password": "correct horse"}).to_string();
    let form = anon
        .send(
            "POST",
            "/api/v1/setup",
            &creds,
            &["Content-Type: application/x-www-form-urlencoded"],
        )
        .await;
    assert_eq!(form.status, 415);
    let short = anon
        .send(
            "POST",
            "/api/v1/setup",
            r#"{"user":"admin","password":"short"}"#,
            &[JSON],
        )
        .await;
    assert_eq!(short.status, 422, "{}", short.body);

    let admin = Http::set_up(portal.http_addr()).await;
    let again = anon.send("POST", "/api/v1/setup", &creds, &[JSON]).await;
    assert_eq!(again.status, 409, "set-up only while no user exists");
    let wrong = anon
        .send(
            "POST",
            "/api/v1/login",
            r#"{"user":"admin","password":"wrong password"}"#,
            &[JSON],
        )
        .await;
    assert_eq!(wrong.status, 401);
    // Password guessing for one name stops after five failures in a minute.
    for _ in 0..4 {
        let guess = r#"{"user":"operator","password":"guess guess"}"#;
        assert_eq!(
            anon.send("POST", "/api/v1/login", guess, &[JSON])
                .await
                .status,
            401
        );
    }
    let guess = r#"{"user":"operator","password":"guess guess"}"#;
    assert_eq!(
        anon.send("POST", "/api/v1/login", guess, &[JSON])
            .await
            .status,
        401
    );
    let locked = anon.send("POST", "/api/v1/login", guess, &[JSON]).await;
    assert_eq!(locked.status, 429, "{}", locked.body);

    let login = anon.send("POST", "/api/v1/login", &creds, &[JSON]).await;
    let cookie = login.header("set-cookie").expect("cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Max-Age=28800", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let (code, _) = call(&admin, "GET", "/api/v1/devices", "").await;
    assert_eq!(code, 200);

    // A state-changing request needs the session's CSRF token.
    let no_token = Http {
        csrf: None,
        ..admin.clone()
    };
    let a = no_token.send("PUT", "/api/v1/state/k", "v", &[]).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let forged = Http {
        csrf: Some("0".repeat(64)),
        ..admin.clone()
    };
    assert_eq!(
        forged.send("PUT", "/api/v1/state/k", "v", &[]).await.status,
        403
    );
    assert_eq!(
        admin.send("PUT", "/api/v1/state/k", "v", &[]).await.status,
        200
    );

    // Users persist in the data folder as argon2id hashes; the activity log says who did what.
    let users = std::fs::read_to_string(dir.join("portal-users")).expect("users file");
    assert!(
        users.starts_with("admin:$argon2id$") && !users.contains("correct horse"),
        "{users}"
    );
    let (_, log) = call(&admin, "GET", "/api/v1/activity", "").await;
    let entries: Vec<String> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["user"].as_str().unwrap_or(""),
                e["action"].as_str().unwrap_or(""),
                e["resource"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert!(
        entries.contains(&"admin set up User/admin".to_owned()),
        "{entries:?}"
    );
    assert!(
        entries.contains(&"admin set StateStoreKey/k".to_owned()),
        "{entries:?}"
    );

    let out = admin.send("POST", "/api/v1/logout", "", &[]).await;
    assert_eq!(out.status, 204);
    assert_eq!(
        admin.send("GET", "/api/v1/devices", "", &[]).await.status,
        401,
        "signed out"
    );
    drop(portal);

    // After a restart the user can still sign in; set-up is not offered.
    let (_b2, portal) = start(None, Some(&dir)).await;
    let s = Http::anonymous(portal.http_addr())
        .send("GET", "/api/v1/session", "", &[])
        .await;
    assert_eq!(s.json()["setupRequired"].as_bool(), Some(false));
    Http::sign_in(portal.http_addr()).await;
}

const FLOW: &str = "apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: fahrenheit}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: [\"plant/+/temp\"]}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      map: [{inputs: [c], output: f, expression: \"$1 * 9 / 5 + 32\"}]
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: \"f/${inputTopic.2}\"}
";

#[tokio::test]
async fn dataflows_are_files_of_the_folder() {
    let dir = TempDir::new("portal-flows");
    std::fs::write(
        dir.join("other.yaml"),
        FLOW.replace("fahrenheit", "from-file"),
    )
    .expect("write");
    let (_b, portal) = start(Some(&dir), None).await;
    let http = Http::set_up(portal.http_addr()).await;

    let (code, body) = call(&http, "POST", "/api/v1/dataflows", FLOW).await;
    assert_eq!(code, 201, "{body}");
    let file = dir.join("portal-dataflow-fahrenheit.yaml");
    let written = std::fs::read_to_string(&file).expect("portal file");
    let reread = edgeplane_config::load_dir(&dir).expect("the folder stays valid");
    assert_eq!(reread.dataflows.len(), 2, "{written}");

    let (code, list) = call(&http, "GET", "/api/v1/dataflows", "").await;
    assert_eq!(code, 200);
    let origins: Vec<_> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|f| {
            (
                f["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                f["status"]["origin"]["source"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            ("fahrenheit".to_owned(), "portal".to_owned()),
            ("from-file".to_owned(), "config".to_owned())
        ]
    );

    // A bad expression is refused with its field, and nothing is written.
    let bad = FLOW
        .replace("$1 * 9 / 5 + 32", "$1 * (")
        .replace("fahrenheit", "broken");
    let (code, body) = call(&http, "POST", "/api/v1/dataflows", &bad).await;
    assert_eq!(code, 422, "{body}");
    assert!(!dir.join("portal-dataflow-broken.yaml").exists());
    // Files not written by the portal are read-only.
    let (code, _) = call(&http, "DELETE", "/api/v1/dataflows/from-file", "").await;
    assert_eq!(code, 409);

    let (code, body) = call(&http, "POST", "/api/v1/dataflows/fahrenheit/disable", "").await;
    assert_eq!(
        (code, body["spec"]["mode"].as_str()),
        (200, Some("Disabled")),
        "{body}"
    );
    let (_, one) = call(&http, "GET", "/api/v1/dataflows/fahrenheit", "").await;
    assert_eq!(one["status"]["health"], "Disabled");

    let tryit = json!({"manifest": FLOW, "samples": "{\"topic\": \"plant/oven/temp\", \"payload\": {\"c\": 100}}\nnot json", "topic": "x"});
    let (code, body) = call(
        &http,
        "POST",
        "/api/v1/dataflows/dry-run",
        &tryit.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let results = body["results"].as_array().expect("results");
    assert!(
        results[0]
            .as_str()
            .is_some_and(|r| r.contains("f/oven") && r.contains("212")),
        "{results:?}"
    );
    assert!(
        results[1]
            .as_str()
            .is_some_and(|r| r.contains("invalid sample")),
        "{results:?}"
    );

    let (code, parsed) = call(&http, "POST", "/api/v1/parse", FLOW).await;
    assert_eq!(
        (code, parsed["manifest"]["metadata"]["name"].as_str()),
        (200, Some("fahrenheit"))
    );

    let export = http.send("GET", "/api/v1/export", "", &[]).await;
    assert_eq!(export.status, 200);
    assert!(
        export.body.contains("name: fahrenheit") && export.body.contains("name: from-file"),
        "{}",
        export.body
    );
    let exported = edgeplane_config::load_str("export.yaml", &export.body)
        .expect("an export loads as a folder");
    assert_eq!(exported.dataflows.len(), 2);

    let (code, _) = call(&http, "DELETE", "/api/v1/dataflows/fahrenheit", "").await;
    assert_eq!(code, 204);
    assert!(!file.exists());
}

#[tokio::test]
async fn topic_stream_and_state_store() {
    let (b, portal) = start(None, None).await;
    let http = Http::set_up(portal.http_addr()).await;
    assert_eq!(
        http.send("PUT", "/api/v1/state/line%2F1", "running", &[])
            .await
            .status,
        200
    );
    let (code, keys) = call(&http, "GET", "/api/v1/state?pattern=line*", "").await;
    assert_eq!(code, 200);
    assert_eq!(keys["items"][0]["key"], "line/1");
    assert_eq!(keys["items"][0]["value"], "running");

    // The explorer streams what a real client publishes.
    let addr = portal.http_addr();
    let cookie = http.cookie.clone().expect("cookie");
    let reader = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET /api/v1/topics/stream?filter=plant%2F%2B HTTP/1.1\r\nHost: {addr}\r\nCookie: edgeplane_session={cookie}\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send");
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        while !seen.contains("hot") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        seen
    });
    let mut publisher = Client::open(b.addr, V5).await;
    publisher.connect(connect("pub", V5)).await;
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            publisher
                .publish(publish(
                    "plant/oven",
                    "{\"state\": \"hot\"}",
                    QoS::AtMostOnce,
                    0,
                ))
                .await;
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if reader.is_finished() {
                return reader.await.expect("reader");
            }
        }
    })
    .await
    .expect("the message reaches the stream");
    assert!(seen.contains("text/event-stream"), "{seen}");
    assert!(
        seen.contains("event: message") && seen.contains("plant/oven"),
        "{seen}"
    );
    // The broker page counts that MQTT 5 connection (the stream's in-process session is
    // no MQTT connection).
    let (code, broker) = call(&http, "GET", "/api/v1/broker", "").await;
    assert_eq!(code, 200);
    let by_version = &broker["counters"]["connectionsAcceptedByVersion"];
    assert_eq!(
        (by_version["5"].as_u64(), by_version["3.1.1"].as_u64()),
        (Some(1), Some(0)),
        "{broker}"
    );
}

/// The broker page's retained messages (by filter) and its message rates over time.
#[tokio::test]
async fn retained_messages_and_message_rates() {
    let (b, portal) = start(None, None).await;
    let http = Http::set_up(portal.http_addr()).await;
    let mut publisher = Client::open(b.addr, V5).await;
    assert_eq!(publisher.connect(connect("pub", V5)).await.code, 0);
    for (topic, payload) in [
        ("plant/oven/state", "hot"),
        ("plant/press/state", "idle"),
        ("office/door", "open"),
    ] {
        let mut p = publish(topic, payload, QoS::AtLeastOnce, 1);
        p.retain = true;
        publisher.publish(p).await;
    }
    let listed = |body: &serde_json::Value| -> Vec<(String, String)> {
        let mut items: Vec<(String, String)> = body["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                        (text("topic"), text("payload"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        items.sort();
        items
    };
    let want = vec![
        ("plant/oven/state".to_owned(), "hot".to_owned()),
        ("plant/press/state".to_owned(), "idle".to_owned()),
    ];
    // The list is gathered within a quiet spell; ask again while the machine is busy.
    let deadline = tokio::time::Instant::now() + STARTUP;
    loop {
        let (code, body) = call(
            &http,
            "GET",
            "/api/v1/broker/retained?filter=plant%2F%23",
            "",
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["filter"], "plant/#");
        let got = listed(&body);
        if got == want {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retained messages under plant/#: {got:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (code, body) = call(
        &http,
        "GET",
        "/api/v1/broker/retained?filter=plant%2F%2B%2F",
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(listed(&body), Vec::new(), "plant/+/ matches none of them");
    let (code, _) = call(
        &http,
        "GET",
        "/api/v1/broker/retained?filter=a%2F%23%2Fb",
        "",
    )
    .await;
    assert_eq!(code, 422, "an invalid filter is refused");

    // Traffic shows in the sampled history the chart is drawn from.
    let history = tokio::time::timeout(STARTUP, async {
        loop {
            publisher
                .publish(publish("plant/oven/t", "1", QoS::AtMostOnce, 0))
                .await;
            let (code, body) = call(&http, "GET", "/api/v1/broker", "").await;
            assert_eq!(code, 200, "{body}");
            let history = body["history"].as_array().cloned().unwrap_or_default();
            if history
                .iter()
                .any(|s| s["receivedPerSecond"].as_f64().is_some_and(|r| r > 0.0))
            {
                return history;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a sample with messages received within 30 s");
    for sample in &history {
        assert!(
            sample["time"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{sample}"
        );
        assert!(sample["sentPerSecond"].as_f64().is_some(), "{sample}");
        assert!(sample["clientsConnected"].as_u64().is_some(), "{sample}");
    }
    assert!(
        history
            .iter()
            .any(|s| s["clientsConnected"].as_u64() >= Some(1)),
        "the publisher is counted: {history:?}"
    );
}
