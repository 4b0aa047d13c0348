//! `GET /api/v1/export` over real sockets, as a script uses it: a download of every
//! device, asset and dataflow as YAML without their runtime status, `?kind=` keeping one
//! kind, and the documents posted back to the API after the resources were deleted
//! recreating them unchanged (the round trip an operator makes to move a site).
//!
//! An asset created through the API without sampling settings is stored and exported as
//! sent: the defaults (500 ms sampling, 1,000 ms publishing, AIO's) are the connector's
//! at run time and the form's initial values (see `asset_csv.rs`), not written into the
//! manifest by the API.

mod common;

use common::{call, start_with_state, Http, DEVICE};
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::Value;

const ASSET: &str = "apiVersion: edgeplane.io/v1
kind: Asset
metadata: {name: oven}
spec:
  deviceRef: {deviceName: plc, endpointName: opc-ua}
  description: 'Oven 3, line 1: zones #1 and #2'
  datasets:
  - name: zones
    dataPoints:
    - {name: zone-1, dataSource: 'ns=2;s=Oven.Zone1'}
    - {name: 'zone 2, top', dataSource: 'nsu=http://plant.example/oven;s=Zone2',
       dataPointConfiguration: '{\"samplingInterval\": 250}'}
  eventGroups:
  - name: alarms
    events:
    - {name: overheat, dataSource: 'ns=2;s=Oven.Alarms'}
";

const FLOW: &str = "apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: oven-copy}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: [azure-iot-operations/data/oven]}
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: curated/oven}
";

/// The export's documents (the text between `---` lines), each with its kind and name.
fn documents(text: &str) -> Vec<(String, String, String)> {
    text.split("\n---\n")
        .skip(1)
        .map(|doc| {
            let field = |prefix: &str| {
                doc.lines()
                    .find_map(|l| l.trim().strip_prefix(prefix))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            let name = field("name:").trim_matches(['"', '\'']).to_owned();
            (field("kind:"), name, format!("{doc}\n"))
        })
        .collect()
}

/// `metadata` and `spec` of a resource read from the API (its `status` differs between
/// the copies: the origin and timestamps).
fn essence(v: &Value) -> (Value, Value) {
    (v["metadata"].clone(), v["spec"].clone())
}

#[tokio::test]
async fn the_export_posts_back_as_the_same_resources() {
    let config = TempDir::new("portal-export-config");
    let registry = Registry::open(None).expect("registry");
    let (_b, portal) = start_with_state(registry, Some(config.to_path_buf()), None).await;
    let http = Http::set_up(portal.http_addr()).await;
    for (path, body) in [
        ("/api/v1/devices", DEVICE),
        ("/api/v1/assets", ASSET),
        ("/api/v1/dataflows", FLOW),
    ] {
        let (code, body) = call(&http, "POST", path, body).await;
        assert_eq!(code, 201, "{path}: {body}");
    }
    let (_, device) = call(&http, "GET", "/api/v1/devices/plc", "").await;
    let (_, asset) = call(&http, "GET", "/api/v1/assets/oven", "").await;
    let (_, flow) = call(&http, "GET", "/api/v1/dataflows/oven-copy", "").await;
    // Stored as sent: no sampling settings invented.
    assert!(
        asset["spec"].get("defaultDatasetsConfiguration").is_none(),
        "{asset}"
    );

    let export = http.send("GET", "/api/v1/export", "", &[]).await;
    assert_eq!(export.status, 200, "{}", export.body);
    assert!(
        export
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/yaml")),
        "{}",
        export.head
    );
    assert_eq!(
        export.header("content-disposition").as_deref(),
        Some("attachment; filename=\"edgeplane-export.yaml\"")
    );
    assert!(
        !export.body.contains("status:") && !export.body.contains("origin"),
        "no runtime status in an export:\n{}",
        export.body
    );
    assert!(
        !export.body.contains("defaultDatasetsConfiguration"),
        "{}",
        export.body
    );
    let docs = documents(&export.body);
    let kinds: Vec<(&str, &str)> = docs
        .iter()
        .map(|(k, n, _)| (k.as_str(), n.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Device", "plc"),
            ("Asset", "oven"),
            ("Dataflow", "oven-copy")
        ],
        "{}",
        export.body
    );
    // The whole export is a valid folder.
    let folder = edgeplane_config::load_str("export.yaml", &export.body)
        .unwrap_or_else(|e| panic!("the export loads ({e}):\n{}", export.body));
    assert_eq!(folder.assets["oven"].spec, asset["spec"]);
    assert_eq!(folder.devices["plc"].spec, device["spec"]);

    // One kind at a time.
    for kind in ["Device", "Asset", "Dataflow"] {
        let one = http
            .send("GET", &format!("/api/v1/export?kind={kind}"), "", &[])
            .await;
        assert_eq!(one.status, 200);
        let got: Vec<String> = documents(&one.body).into_iter().map(|d| d.0).collect();
        assert_eq!(got, [kind], "{}", one.body);
    }

    // Delete everything, post the exported documents back: the same resources again.
    for path in [
        "/api/v1/dataflows/oven-copy",
        "/api/v1/assets/oven",
        "/api/v1/devices/plc",
    ] {
        let (code, body) = call(&http, "DELETE", path, "").await;
        assert_eq!(code, 204, "{path}: {body}");
    }
    let (_, left) = call(&http, "GET", "/api/v1/assets", "").await;
    assert_eq!(left["items"], Value::Array(Vec::new()));
    for (kind, name, doc) in &docs {
        let path = match kind.as_str() {
            "Device" => "/api/v1/devices",
            "Asset" => "/api/v1/assets",
            _ => "/api/v1/dataflows",
        };
        let (code, body) = call(&http, "POST", path, doc).await;
        assert_eq!(code, 201, "{kind}/{name} posted back: {body}\n{doc}");
    }
    let (_, device2) = call(&http, "GET", "/api/v1/devices/plc", "").await;
    let (_, asset2) = call(&http, "GET", "/api/v1/assets/oven", "").await;
    let (_, flow2) = call(&http, "GET", "/api/v1/dataflows/oven-copy", "").await;
    assert_eq!(essence(&device2), essence(&device));
    assert_eq!(essence(&asset2), essence(&asset));
    assert_eq!(essence(&flow2), essence(&flow));
    let again = http.send("GET", "/api/v1/export", "", &[]).await;
    assert_eq!(again.body, export.body, "the second export is the first");

    // Disabling and enabling again is what the file and the export say, and is logged.
    let file = config.join("portal-dataflow-oven-copy.yaml");
    for (action, mode) in [("disable", "Disabled"), ("enable", "Enabled")] {
        let path = format!("/api/v1/dataflows/oven-copy/{action}");
        let (code, body) = call(&http, "POST", &path, "").await;
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(body["spec"]["mode"], mode, "{body}");
        let written = std::fs::read_to_string(&file).expect("the dataflow's file");
        assert!(written.contains(&format!("mode: {mode}")), "{written}");
        let one = http
            .send("GET", "/api/v1/export?kind=Dataflow", "", &[])
            .await;
        assert!(one.body.contains(&format!("mode: {mode}")), "{}", one.body);
    }
    let (_, log) = call(&http, "GET", "/api/v1/activity", "").await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["resource"] == "Dataflow/oven-copy")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions[..2], ["enabled", "disabled"], "newest first: {log}");
}
