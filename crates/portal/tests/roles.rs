//! Roles over real HTTP: an administrator adds a viewer; the viewer reads every page's
//! API but gets 403 on every state-changing call (and nothing changes), may still sign
//! out, parse and dry-run; roles are kept in the users file and survive a restart; an
//! unknown role in the file locks that user out instead of granting anything.

mod common;

use common::{call, start_with_state, Http, DEVICE};
use edgeplane_portal::Portal;
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::json;

async fn start(dir: &std::path::Path) -> (TestBroker, Portal) {
    let config = dir.join("config");
    let data = dir.join("data");
    std::fs::create_dir_all(&config).expect("config folder");
    std::fs::create_dir_all(&data).expect("data folder");
    let registry = Registry::open(Some(&data)).expect("registry");
    start_with_state(registry, Some(config), Some(data)).await
}

const ASSET: &str = r#"{"apiVersion": "namespaces.deviceregistry.microsoft.com/v1", "kind": "Asset",
 "metadata": {"name": "oven"},
 "spec": {"deviceRef": {"deviceName": "plc", "endpointName": "opc-ua"},
   "datasets": [{"name": "d", "dataPoints": [{"name": "t", "dataSource": "ns=2;s=Fast.Sine.0"}]}]}}"#;

const FLOW: &str = "apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: copy}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: [\"in/#\"]}
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: out}
";

#[tokio::test]
async fn viewers_read_everything_and_change_nothing() {
    let dir = TempDir::new("portal-roles");
    let (_b, portal) = start(&dir).await;
    let addr = portal.http_addr();
    let admin = Http::set_up(addr).await;
    let (_, me) = call(&admin, "GET", "/api/v1/session", "").await;
    assert_eq!(me["role"], "admin", "the first user is an administrator");
    for (path, body) in [
        ("/api/v1/devices", DEVICE),
        ("/api/v1/assets", ASSET),
        ("/api/v1/dataflows", FLOW),
    ] {
        let (code, answer) = call(&admin, "POST", path, body).await;
        assert_eq!(code, 201, "{path}: {answer}");
    }
    assert_eq!(
        admin.send("PUT", "/api/v1/state/k", "v", &[]).await.status,
        200
    );
    let viewer = json!({"user": "operator", "password": "look only 123", "role": "viewer"});
    let (code, body) = call(&admin, "POST", "/api/v1/users", &viewer.to_string()).await;
    assert_eq!(
        (code, body["role"].as_str()),
        (201, Some("viewer")),
        "{body}"
    );
    let bad_role = json!({"user": "x", "password": "long enough", "role": "root"});
    let (code, body) = call(&admin, "POST", "/api/v1/users", &bad_role.to_string()).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "role");

    let operator = Http::sign_in_as(addr, "operator", "look only 123").await;
    let (_, me) = call(&operator, "GET", "/api/v1/session", "").await;
    assert_eq!(me["role"], "viewer");
    // Every page's data is readable.
    for path in [
        "/api/v1/devices",
        "/api/v1/devices/plc",
        "/api/v1/assets",
        "/api/v1/assets/oven",
        "/api/v1/dataflows",
        "/api/v1/dataflows/copy",
        "/api/v1/broker",
        "/api/v1/broker/retained?filter=%23",
        "/api/v1/state?pattern=*",
        "/api/v1/state/k",
        "/api/v1/activity",
        "/api/v1/export",
        "/api/v1/users",
        "/api/v1/certificates/rejected",
    ] {
        let a = operator.send("GET", path, "", &[]).await;
        assert_eq!(a.status, 200, "{path}: {}", a.body);
    }
    // Every change is refused, with the reason, whatever the body.
    let changes = [
        ("POST", "/api/v1/devices", DEVICE),
        ("PUT", "/api/v1/devices/plc", DEVICE),
        ("DELETE", "/api/v1/devices/plc", ""),
        ("POST", "/api/v1/assets", ASSET),
        ("PUT", "/api/v1/assets/oven", ASSET),
        ("DELETE", "/api/v1/assets/oven", ""),
        ("POST", "/api/v1/dataflows", FLOW),
        ("PUT", "/api/v1/dataflows/copy", FLOW),
        ("DELETE", "/api/v1/dataflows/copy", ""),
        ("POST", "/api/v1/dataflows/copy/disable", ""),
        ("POST", "/api/v1/dataflows/copy/enable", ""),
        ("PUT", "/api/v1/state/k", "changed"),
        ("DELETE", "/api/v1/state/k", ""),
        ("POST", "/api/v1/certificates/rejected/00ff/trust", ""),
        (
            "POST",
            "/api/v1/users",
            r#"{"user":"mine","password":"12345678","role":"admin"}"#,
        ),
        ("DELETE", "/api/v1/users/admin", ""),
        (
            "POST",
            "/api/v1/setup",
            r#"{"user":"again","password":"12345678"}"#,
        ),
    ];
    for (method, path, body) in changes {
        let (code, answer) = call(&operator, method, path, body).await;
        let expected = if path == "/api/v1/setup" { 409 } else { 403 };
        assert_eq!(code, expected, "{method} {path}: {answer}");
        if expected == 403 {
            let why = answer["errors"][0]["message"].as_str().unwrap_or_default();
            assert!(why.contains("viewer role"), "{method} {path}: {why}");
        }
    }
    // Nothing changed.
    let (_, devices) = call(&admin, "GET", "/api/v1/devices", "").await;
    assert_eq!(devices["items"].as_array().map(Vec::len), Some(1));
    let (_, flow) = call(&admin, "GET", "/api/v1/dataflows/copy", "").await;
    assert_ne!(flow["spec"]["mode"], "Disabled", "{flow}");
    let value = admin.send("GET", "/api/v1/state/k", "", &[]).await;
    assert!(value.body.contains('v') && !value.body.contains("changed"));
    let (_, users) = call(&admin, "GET", "/api/v1/users", "").await;
    assert_eq!(
        users["items"],
        json!([{"name": "admin", "role": "admin"}, {"name": "operator", "role": "viewer"}])
    );
    let (_, log) = call(&admin, "GET", "/api/v1/activity", "").await;
    assert!(
        log["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["user"] != "operator" || e["action"] == "signed in"),
        "{log}"
    );

    // What changes nothing stays open to a viewer.
    let (code, body) = call(&operator, "POST", "/api/v1/parse", FLOW).await;
    assert_eq!(code, 200, "{body}");
    let tryit = json!({"manifest": FLOW, "samples": "{\"a\": 1}", "topic": "in/x"});
    let (code, body) = call(
        &operator,
        "POST",
        "/api/v1/dataflows/dry-run",
        &tryit.to_string(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // The last administrator cannot go while only viewers would remain.
    let (code, body) = call(&admin, "DELETE", "/api/v1/users/admin", "").await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        operator
            .send("POST", "/api/v1/logout", "", &[])
            .await
            .status,
        204
    );
    drop(portal);

    // Roles are in the users file and survive a restart.
    let users = dir.join("data").join("portal-users");
    let text = std::fs::read_to_string(&users).expect("users file");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("admin:$argon2id$")
            && lines[0].ends_with(":admin")
            && lines[1].starts_with("operator:$argon2id$")
            && lines[1].ends_with(":viewer"),
        "{text}"
    );
    let (_b2, portal) = start(&dir).await;
    let operator = Http::sign_in_as(portal.http_addr(), "operator", "look only 123").await;
    let (code, _) = call(&operator, "DELETE", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 403, "still a viewer after the restart");
    drop(portal);

    // A line without a role (written before roles existed) is an administrator; an unknown
    // role locks that user out rather than guessing.
    let legacy = format!(
        "{}\n{}\n",
        lines[0].trim_end_matches(":admin"),
        lines[1].replace(":viewer", ":superuser")
    );
    std::fs::write(&users, legacy).expect("rewrite users");
    let (_b3, portal) = start(&dir).await;
    let admin = Http::sign_in(portal.http_addr()).await;
    let (code, _) = call(&admin, "DELETE", "/api/v1/assets/oven", "").await;
    assert_eq!(code, 204, "a line without a role is an administrator");
    let refused = Http::anonymous(portal.http_addr())
        .send(
            "POST",
            "/api/v1/login",
            r#"{"user":"operator","password":"look only 123"}"#,
            &["Content-Type: application/json"],
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
}
