//! `Device` and `Asset`: AIO device registry manifests load, every problem is reported with
//! its field, and references to Secrets, devices and endpoints must resolve.

mod common;

use common::{error_at, errors, expect_error, load};
use edgeplane_config::{check_resource, AssetSpec, DeviceSpec, Kind};

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata: {name: plc-user}
stringData: {username: operator, password: secret}
";

const DEVICE: &str = r#"apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Device
metadata:
  name: plc
  namespace: azure-iot-operations
spec:
  enabled: true
  externalDeviceId: plc-0001
  attributes: {line: "1"}
  endpoints:
    inbound:
      opc-ua:
        endpointType: Microsoft.OpcUa
        address: opc.tcp://plc.local:50000
        version: "1.5"
        authentication:
          method: UsernamePassword
          usernamePasswordCredentials:
            usernameSecretName: plc-user/username
            passwordSecretName: plc-user/password
        additionalConfiguration: '{"security":{"securityMode":"SignAndEncrypt","securityPolicy":"http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"}}'
"#;

const ASSET: &str = r#"apiVersion: namespaces.deviceregistry.microsoft.com/v1
kind: Asset
metadata:
  name: oven
spec:
  deviceRef: {deviceName: plc, endpointName: opc-ua}
  displayName: Oven
  externalAssetId: oven-42
  defaultDatasetsConfiguration: '{"publishingInterval": 1000, "samplingInterval": 500, "queueSize": 1}'
  datasets:
  - name: temperatures
    datasetConfiguration: '{"publishingInterval": 200, "keyFrameCount": 10}'
    dataPoints:
    - name: temperature
      dataSource: nsu=http://microsoft.com/Opc/OpcPlc/;s=FastUInt1
      dataPointConfiguration: '{"samplingInterval": 100, "queueSize": 5}'
    - {name: pressure, dataSource: ns=3;s=SlowUInt1}
    destinations:
    - target: Mqtt
      configuration: {topic: factory/oven, qos: Qos1, retain: Never, ttl: 60}
  eventGroups:
  - name: alarms
    events:
    - {name: overheat, dataSource: ns=3;s=Events}
"#;

fn folder(parts: &[&str]) -> String {
    parts.join("---\n")
}

#[test]
fn aio_device_registry_manifests_load() {
    let config = load(&folder(&[SECRET, DEVICE, ASSET]));
    let device = &config.devices["plc"];
    let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("typed device");
    let endpoint = &spec.endpoints.inbound["opc-ua"];
    assert_eq!(endpoint.address, "opc.tcp://plc.local:50000");
    let security = endpoint.security();
    assert_eq!(security.mode.as_deref(), Some("SignAndEncrypt"));
    assert_eq!(security.policy.as_deref(), Some("Basic256Sha256"));
    let asset: AssetSpec =
        serde_json::from_value(config.assets["oven"].spec.clone()).expect("typed asset");
    assert_eq!(asset.device_ref.endpoint_name, "opc-ua");
    assert_eq!(asset.datasets[0].data_points.len(), 2);
    assert_eq!(
        asset.datasets[0].destinations[0]
            .configuration
            .topic
            .as_deref(),
        Some("factory/oven")
    );
    let kinds: Vec<Kind> = config.resources.iter().map(|r| r.kind).collect();
    assert_eq!(kinds, [Kind::Secret, Kind::Device, Kind::Asset]);
}

#[test]
fn our_api_version_serves_the_kinds_too() {
    let ours = DEVICE.replace(
        "namespaces.deviceregistry.microsoft.com/v1",
        "edgeplane.io/v1",
    );
    load(&folder(&[SECRET, &ours]));
    let wrong = DEVICE.replace(
        "namespaces.deviceregistry.microsoft.com/v1",
        "mqttbroker.iotoperations.azure.com/v1",
    );
    let found = errors(&folder(&[SECRET, &wrong]));
    expect_error(&found, "apiVersion", "does not serve kind Device");
}

#[test]
fn references_must_resolve() {
    let asset = ASSET.replace("endpointName: opc-ua", "endpointName: modbus");
    let found = errors(&folder(&[DEVICE, &asset]));
    let secret = error_at(
        &found,
        "spec.endpoints.inbound.opc-ua.authentication.usernamePasswordCredentials.usernameSecretName",
    );
    assert!(secret.message.contains("Secret `plc-user` not found"));
    assert_eq!(secret.resource.as_deref(), Some("Device/plc"));
    let endpoint = error_at(&found, "spec.deviceRef.endpointName");
    assert!(endpoint.message.contains("no inbound endpoint `modbus`"));
    assert!(endpoint.message.contains("opc-ua"));

    let found = errors(&folder(&[SECRET, ASSET]));
    expect_error(
        &found,
        "spec.deviceRef.deviceName",
        "Device `plc` not found",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let device = r#"apiVersion: edgeplane.io/v1
kind: Device
metadata: {name: bad}
spec:
  endpoints:
    inbound:
      one:
        endpointType: Microsoft.Modbus
        address: http://plc
        authentication: {method: UsernamePassword}
        additionalConfiguration: '{"security":{"securityMode":"Encrypt"}}'
"#;
    let asset = r#"apiVersion: edgeplane.io/v1
kind: Asset
metadata: {name: bad-asset}
spec:
  deviceRef: {deviceName: bad, endpointName: one}
  datasets:
  - name: d
    datasetConfiguration: '{"publishingInterval": 0, "colour": 1}'
    dataPoints:
    - {name: a, dataSource: Temperature}
    - {name: a, dataSource: ns=2;s=A, samplingInterval: 5}
    destinations:
    - {target: BrokerStateStore}
"#;
    let found = errors(&folder(&[device, asset]));
    let at = "spec.endpoints.inbound.one";
    expect_error(&found, &format!("{at}.endpointType"), "not supported");
    expect_error(&found, &format!("{at}.address"), "opc.tcp://");
    expect_error(
        &found,
        &format!("{at}.authentication.usernamePasswordCredentials"),
        "needs",
    );
    expect_error(
        &found,
        &format!("{at}.additionalConfiguration"),
        "securityMode",
    );
    let ds = "spec.datasets[0]";
    expect_error(
        &found,
        &format!("{ds}.datasetConfiguration"),
        "publishingInterval",
    );
    expect_error(
        &found,
        &format!("{ds}.datasetConfiguration"),
        "unknown setting `colour`",
    );
    expect_error(
        &found,
        &format!("{ds}.dataPoints[0].dataSource"),
        "not a node id",
    );
    expect_error(
        &found,
        &format!("{ds}.dataPoints[1].name"),
        "duplicate data point",
    );
    expect_error(
        &found,
        &format!("{ds}.dataPoints[1].samplingInterval"),
        "unknown field",
    );
    expect_error(
        &found,
        &format!("{ds}.destinations[0].configuration.key"),
        "BrokerStateStore",
    );
    assert!(found.iter().all(|e| e.line.is_some()));
}

#[test]
fn one_resource_checks_without_its_references() {
    let checked = check_resource("api", ASSET).expect("valid on its own");
    assert_eq!(checked.kind, Kind::Asset);
    assert_eq!(checked.name, "oven");
    assert_eq!(checked.spec["deviceRef"]["deviceName"], "plc");

    let json = r#"{"apiVersion": "edgeplane.io/v1", "kind": "Device",
        "metadata": {"name": "x"}, "spec": {"endpoints": {"inbound": {"e": {
        "endpointType": "Microsoft.OpcUa", "address": "opc.tcp://h"}}}, "colour": 1}}"#;
    let found = check_resource("api", json).expect_err("invalid").0;
    expect_error(&found, "spec.endpoints.inbound.e.address", "port");
    expect_error(&found, "spec.colour", "unknown field");
    assert!(check_resource("api", "").is_err());
}
