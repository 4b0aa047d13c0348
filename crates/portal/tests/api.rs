//! The REST API over real sockets: devices and assets created, read, replaced and deleted
//! as JSON or YAML manifests, per-field validation errors, read-only config resources, and
//! status documents, all through a signed-in session.

use edgeplane_portal::{Portal, Services};
use edgeplane_registry::{ConnectionState, Registry};
mod common;

use common::{call, start_portal, Http, DEVICE};
use edgeplane_tests::*;
use serde_json::Value;

async fn start(registry: Registry) -> (TestBroker, Portal) {
    let b = TestBroker::start().await;
    let portal = start_portal(&b, Services::registry(registry)).await;
    (b, portal)
}

const ASSET_YAML: &str = "apiVersion: edgeplane.io/v1
kind: Asset
metadata: {name: oven}
spec:
  deviceRef: {deviceName: plc, endpointName: opc-ua}
  datasets:
  - name: d
    dataPoints:
    - {name: temperature, dataSource: ns=2;s=Fast.Sine.0}
";

fn fields(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("errors list in {body}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn devices_and_assets_round_trip() {
    let dir = TempDir::new("portal-api");
    let registry = Registry::open(Some(&dir)).expect("registry");
    let (_b, portal) = start(registry.clone()).await;
    let http = Http::set_up(portal.http_addr()).await;

    let (code, list) = call(&http, "GET", "/api/v1/devices", "").await;
    assert_eq!((code, list["kind"].as_str()), (200, Some("DeviceList")));
    assert_eq!(list["items"], Value::Array(Vec::new()));

    let (code, body) = call(&http, "POST", "/api/v1/assets", ASSET_YAML).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(fields(&body), ["spec.deviceRef.deviceName"]);

    let (code, body) = call(&http, "POST", "/api/v1/devices", DEVICE).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(body["status"]["origin"]["source"], "api");
    let (code, _) = call(&http, "POST", "/api/v1/assets", ASSET_YAML).await;
    assert_eq!(code, 201);
    let (code, body) = call(&http, "POST", "/api/v1/devices", DEVICE).await;
    assert_eq!(code, 409, "{body}");

    let (code, asset) = call(&http, "GET", "/api/v1/assets/oven", "").await;
    assert_eq!(code, 200);
    assert_eq!(asset["kind"], "Asset");
    assert_eq!(asset["metadata"]["name"], "oven");
    assert_eq!(
        asset["spec"]["datasets"][0]["dataPoints"][0]["name"],
        "temperature"
    );

    // Every invalid field at once, with its path.
    let bad = r#"{"apiVersion": "edgeplane.io/v1", "kind": "Asset", "metadata": {"name": "oven"},
      "spec": {"deviceRef": {"deviceName": "plc", "endpointName": "modbus"},
        "datasets": [{"name": "d", "dataPoints": [{"name": "t", "dataSource": "Temperature"}]}],
        "colour": "red"}}"#;
    let (code, body) = call(&http, "PUT", "/api/v1/assets/oven", bad).await;
    assert_eq!(code, 422, "{body}");
    let mut found = fields(&body);
    found.sort();
    assert_eq!(
        found,
        ["spec.colour", "spec.datasets[0].dataPoints[0].dataSource",],
        "structural errors come first; references are checked once the structure is valid"
    );

    // A device in use cannot be deleted; the asset can.
    let (code, body) = call(&http, "DELETE", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 409, "{body}");
    registry.set_asset_status("oven", ConnectionState::Connected);
    let (code, status) = call(&http, "GET", "/api/v1/assets/oven/status", "").await;
    assert_eq!((code, status["state"].as_str()), (200, Some("connected")));
    let (code, _) = call(&http, "DELETE", "/api/v1/assets/oven", "").await;
    assert_eq!(code, 204);
    let (code, body) = call(&http, "GET", "/api/v1/assets/oven", "").await;
    assert_eq!(code, 404);
    assert!(body["errors"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not found")));
    let (code, _) = call(&http, "GET", "/api/v1/widgets", "").await;
    assert_eq!(code, 404);
    drop(portal);

    // The device survives a restart of the registry.
    let reopened = Registry::open(Some(&dir)).expect("reopen");
    let (_b, portal) = start(reopened).await;
    let http = Http::set_up(portal.http_addr()).await;
    let (code, list) = call(&http, "GET", "/api/v1/devices", "").await;
    assert_eq!(code, 200);
    assert_eq!(list["items"][0]["metadata"]["name"], "plc");
}

#[tokio::test]
async fn config_resources_are_read_only() {
    let registry = Registry::open(None).expect("registry");
    let config = edgeplane_config::load_str(
        "config/plc.yaml",
        "apiVersion: edgeplane.io/v1\nkind: Device\nmetadata: {name: plc}\nspec:\n  endpoints:\n    inbound:\n      opc-ua: {endpointType: Microsoft.OpcUa, address: 'opc.tcp://127.0.0.1:50000'}\n",
    )
    .expect("config");
    registry.apply_config(&config);
    let (_b, portal) = start(registry).await;
    let http = Http::set_up(portal.http_addr()).await;
    let (code, device) = call(&http, "GET", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 200);
    assert_eq!(device["status"]["origin"]["source"], "config");
    assert_eq!(device["status"]["origin"]["file"], "config/plc.yaml");
    let (code, body) = call(&http, "PUT", "/api/v1/devices/plc", DEVICE).await;
    assert_eq!(code, 409);
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("read-only") && message.contains("config/plc.yaml"),
        "{message}"
    );
    let (code, _) = call(&http, "DELETE", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 409);
}

/// An edit replaces the resource (and survives a restart of the registry), a PUT of a new
/// name creates it, and deletes remove the asset and then the device it used.
#[tokio::test]
async fn edits_replace_and_deletes_remove() {
    let dir = TempDir::new("portal-api-edit");
    let registry = Registry::open(Some(&dir)).expect("registry");
    let (_b, portal) = start(registry).await;
    let http = Http::set_up(portal.http_addr()).await;
    let (code, body) = call(&http, "POST", "/api/v1/devices", DEVICE).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = call(&http, "POST", "/api/v1/assets", ASSET_YAML).await;
    assert_eq!(code, 201, "{body}");

    let moved = DEVICE.replace("127.0.0.1:50000", "10.1.2.3:4840");
    let (code, body) = call(&http, "PUT", "/api/v1/devices/plc", &moved).await;
    assert_eq!(code, 200, "{body}");
    let renamed = ASSET_YAML.replace("name: temperature", "name: heat");
    let (code, body) = call(&http, "PUT", "/api/v1/assets/oven", &renamed).await;
    assert_eq!(code, 200, "{body}");
    let second = ASSET_YAML.replace("{name: oven}", "{name: kiln}");
    let (code, body) = call(&http, "PUT", "/api/v1/assets/kiln", &second).await;
    assert_eq!(code, 201, "{body}");
    drop(portal);

    let reopened = Registry::open(Some(&dir)).expect("reopen");
    let (_b, portal) = start(reopened).await;
    // Users live in memory here (no data folder): set up again.
    let http = Http::set_up(portal.http_addr()).await;
    let (code, device) = call(&http, "GET", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        device["spec"]["endpoints"]["inbound"]["opc-ua"]["address"],
        "opc.tcp://10.1.2.3:4840"
    );
    let (code, asset) = call(&http, "GET", "/api/v1/assets/oven", "").await;
    assert_eq!(code, 200);
    assert_eq!(
        asset["spec"]["datasets"][0]["dataPoints"][0]["name"],
        "heat"
    );

    for asset in ["oven", "kiln"] {
        let (code, body) = call(&http, "DELETE", &format!("/api/v1/assets/{asset}"), "").await;
        assert_eq!(code, 204, "{asset}: {body}");
    }
    let (code, body) = call(&http, "DELETE", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 204, "no asset uses it any more: {body}");
    let (code, list) = call(&http, "GET", "/api/v1/devices", "").await;
    assert_eq!(
        (code, list["items"].clone()),
        (200, Value::Array(Vec::new()))
    );
    let (code, _) = call(&http, "GET", "/api/v1/devices/plc", "").await;
    assert_eq!(code, 404);
}
