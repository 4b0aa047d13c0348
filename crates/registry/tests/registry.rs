//! The registry as the API uses it: create, replace, delete with validation and reference
//! checks, config-origin resources read-only, API resources surviving a reopen, status.

use edgeplane_config::load_str;
use edgeplane_registry::{ConnectionState, Origin, Registry, RegistryError, RegistryKind};

const DEVICE: &str = r#"{"apiVersion": "edgeplane.io/v1", "kind": "Device",
  "metadata": {"name": "plc"},
  "spec": {"endpoints": {"inbound": {"opc-ua": {
    "endpointType": "Microsoft.OpcUa", "address": "opc.tcp://127.0.0.1:50000"}}}}}"#;

const ASSET: &str = r#"{"apiVersion": "namespaces.deviceregistry.microsoft.com/v1", "kind": "Asset",
  "metadata": {"name": "oven", "namespace": "factory"},
  "spec": {"deviceRef": {"deviceName": "plc", "endpointName": "opc-ua"},
    "datasets": [{"name": "d", "dataPoints": [{"name": "t", "dataSource": "ns=2;s=T"}]}]}}"#;

const CONFIG: &str = "apiVersion: edgeplane.io/v1
kind: Device
metadata: {name: press}
spec:
  endpoints:
    inbound:
      main: {endpointType: Microsoft.OpcUa, address: 'opc.tcp://press:4840'}
";

fn invalid_fields(r: Result<impl std::fmt::Debug, RegistryError>) -> Vec<String> {
    match r {
        Err(RegistryError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn api_resources_are_validated_persisted_and_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Registry::open(Some(dir.path())).expect("open");
    // The asset's device does not exist yet.
    assert_eq!(
        invalid_fields(registry.create(RegistryKind::Asset, ASSET)),
        ["spec.deviceRef.deviceName"]
    );
    registry
        .create(RegistryKind::Device, DEVICE)
        .expect("device");
    registry.create(RegistryKind::Asset, ASSET).expect("asset");
    assert!(matches!(
        registry.create(RegistryKind::Device, DEVICE),
        Err(RegistryError::Conflict(_))
    ));
    // A device used by an asset cannot go.
    assert!(matches!(
        registry.delete(RegistryKind::Device, "plc"),
        Err(RegistryError::Conflict(m)) if m.contains("oven")
    ));
    // Wrong kind, name mismatch and a bad field, all at once.
    let wrong = DEVICE.replace("\"plc\"", "\"other\"");
    assert_eq!(
        invalid_fields(registry.replace(RegistryKind::Device, "plc", &wrong)),
        ["metadata.name"]
    );
    assert_eq!(
        invalid_fields(registry.replace(RegistryKind::Asset, "plc", DEVICE)),
        ["kind"]
    );

    let reopened = Registry::open(Some(dir.path())).expect("reopen");
    let asset = reopened
        .get(RegistryKind::Asset, "oven")
        .expect("persisted");
    assert_eq!(asset.origin, Origin::Api);
    assert_eq!(asset.namespace.as_deref(), Some("factory"));
    assert_eq!(asset.to_json()["spec"]["deviceRef"]["deviceName"], "plc");
    assert_eq!(
        asset.to_json()["apiVersion"],
        "namespaces.deviceregistry.microsoft.com/v1"
    );
    reopened
        .delete(RegistryKind::Asset, "oven")
        .expect("delete");
    let again = Registry::open(Some(dir.path())).expect("reopen");
    assert!(again.get(RegistryKind::Asset, "oven").is_none());
    assert!(again.get(RegistryKind::Device, "plc").is_some());
}

#[test]
fn config_resources_share_the_store_and_are_read_only() {
    let registry = Registry::open(None).expect("in memory");
    let mut changes = registry.changes();
    let config = load_str("folder/device.yaml", CONFIG).expect("config");
    registry.apply_config(&config);
    assert!(changes.has_changed().unwrap_or(false));
    changes.mark_unchanged();
    let press = registry
        .get(RegistryKind::Device, "press")
        .expect("from config");
    assert!(matches!(&press.origin, Origin::Config { file } if file.ends_with("device.yaml")));
    let text = press.to_json().to_string();
    match registry.replace(RegistryKind::Device, "press", &text) {
        Err(RegistryError::Conflict(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(matches!(
        registry.delete(RegistryKind::Device, "press"),
        Err(RegistryError::Conflict(_))
    ));
    registry
        .create(RegistryKind::Device, DEVICE)
        .expect("api device");
    assert!(changes.has_changed().unwrap_or(false));
    let names: Vec<String> = registry
        .list(RegistryKind::Device)
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["plc", "press"]);
    // A new folder without the device removes it.
    registry.apply_config(&edgeplane_config::Config::default());
    assert!(registry.get(RegistryKind::Device, "press").is_none());
    assert_eq!(registry.snapshot().devices.len(), 1);
}

#[test]
fn status_keeps_the_last_error() {
    let registry = Registry::open(None).expect("in memory");
    registry
        .create(RegistryKind::Device, DEVICE)
        .expect("device");
    registry.set_endpoint_status(
        "plc",
        "opc-ua",
        ConnectionState::Error("bad user or password".into()),
    );
    let status = registry
        .status(RegistryKind::Device, "plc")
        .expect("status");
    assert_eq!(status["endpoints"]["opc-ua"]["state"], "error");
    assert_eq!(
        status["endpoints"]["opc-ua"]["error"],
        "bad user or password"
    );
    registry.set_endpoint_status("plc", "opc-ua", ConnectionState::Connected);
    let status = registry
        .status(RegistryKind::Device, "plc")
        .expect("status");
    assert_eq!(status["endpoints"]["opc-ua"]["state"], "connected");
    assert!(status["endpoints"]["opc-ua"]["error"].is_null());
    assert_eq!(
        status["endpoints"]["opc-ua"]["lastError"],
        "bad user or password"
    );
    assert_eq!(status["origin"]["source"], "api");
    assert!(registry.status(RegistryKind::Asset, "nothing").is_none());
}
