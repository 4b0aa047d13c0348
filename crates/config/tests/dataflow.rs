//! The dataflow kinds: AIO manifests load unchanged, references resolve (with the implicit
//! `default` endpoint and profile), one end must be the local broker, and mistakes are
//! reported at their field.

mod common;

use common::{errors, expect_error, load};

/// The AIO documentation's shape: a local-broker source, a transform and a remote MQTT
/// destination with username/password and TLS.
const FLOW: &str = r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {name: cloud}
spec:
  endpointType: Mqtt
  mqttSettings:
    host: "broker.example:8883"
    authentication:
      method: UsernamePassword
      usernamePasswordSettings: {secretRef: cloud-login}
    tls: {mode: Enabled, trustedCaCertificateConfigMapRef: cloud-ca}
    qos: 1
    retain: Never
    maxInflightMessages: 100
---
apiVersion: v1
kind: Secret
metadata: {name: cloud-login}
stringData: {username: plant, password: secret}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cloud-ca}
data: {ca.crt: "-----BEGIN CERTIFICATE-----"}
---
apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: to-cloud, namespace: azure-iot-operations}
spec:
  profileRef: default
  mode: Enabled
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: ["thermostats/+/telemetry/#"]}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      filter: [{inputs: ["temperature ? $last"], expression: "$1 <= 20"}]
      map:
      - {inputs: ["*"], output: "*"}
      - {inputs: [temperature], output: TemperatureF, expression: "cToF($1)"}
  - operationType: Destination
    destinationSettings:
      endpointRef: cloud
      dataDestination: "factory/${inputTopic.2}"
      headers: [{actionType: AddOrReplace, key: site, value: plant-1}]
"#;

#[test]
fn aio_dataflow_manifests_load() {
    let config = load(FLOW);
    let flow = &config.dataflows["to-cloud"];
    assert_eq!(flow.resource.file.to_str(), Some("test.yaml"));
    assert_eq!(
        flow.spec
            .pointer("/operations/2/destinationSettings/endpointRef"),
        Some(&serde_json::json!("cloud"))
    );
    // Lines of nested fields are kept for the expression compiler's errors.
    let line = flow.line_of("spec.operations[1].builtInTransformationSettings.map[1].expression");
    assert_eq!(
        FLOW.lines().nth(line - 1).map(|l| l.contains("cToF")),
        Some(true)
    );
    assert!(config.dataflow_endpoints.contains_key("cloud"));
}

#[test]
fn references_must_resolve() {
    let text = FLOW
        .replace("endpointRef: cloud", "endpointRef: clod")
        .replace("profileRef: default", "profileRef: fast")
        .replace("secretRef: cloud-login", "secretRef: nope");
    let errors = errors(&text);
    expect_error(
        &errors,
        "spec.operations[2].destinationSettings.endpointRef",
        "DataflowEndpoint `clod` not found",
    );
    expect_error(
        &errors,
        "spec.profileRef",
        "DataflowProfile `fast` not found",
    );
    expect_error(
        &errors,
        "spec.mqttSettings.authentication.usernamePasswordSettings.secretRef",
        "Secret `nope` not found",
    );
}

#[test]
fn one_end_must_be_the_local_broker() {
    let text = FLOW.replace("endpointRef: default", "endpointRef: cloud");
    let errors = errors(&text);
    expect_error(
        &errors,
        "spec.operations[2].destinationSettings.endpointRef",
        "neither end of this dataflow is the local broker",
    );
}

#[test]
fn operations_and_destinations_are_checked() {
    let text = r#"
apiVersion: edgeplane.io/v1
kind: Dataflow
metadata: {name: bad}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: ["a/#/b"]}
    destinationSettings: {endpointRef: default, dataDestination: x}
  - operationType: Destination
    destinationSettings:
      endpointRef: default
      dataDestination: "out/+"
      headers: [{actionType: AddIfNotPresent, key: k}]
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: y}
"#;
    let errors = errors(text);
    expect_error(
        &errors,
        "spec.operations[0].sourceSettings.dataSources[0]",
        "`#` must be a whole last level",
    );
    expect_error(
        &errors,
        "spec.operations[0].destinationSettings",
        "does not apply to a Source operation",
    );
    expect_error(
        &errors,
        "spec.operations[1].destinationSettings.dataDestination",
        "has a wildcard",
    );
    expect_error(
        &errors,
        "spec.operations[1].destinationSettings.headers[0].value",
        "needs a `value`",
    );
    expect_error(&errors, "spec.operations", "at most one Destination");
}

#[test]
fn unsupported_endpoint_types_say_so() {
    let text = r#"
apiVersion: connectivity.iotoperations.azure.com/v1
kind: DataflowEndpoint
metadata: {name: hub}
spec:
  endpointType: Kafka
  kafkaSettings: {host: "hub.servicebus.windows.net:9093"}
  mqttSettings: {host: "x:1"}
"#;
    let errors = errors(text);
    expect_error(
        &errors,
        "spec.endpointType",
        "not supported by this version",
    );
    expect_error(
        &errors,
        "spec.mqttSettings",
        "does not apply to endpointType Kafka",
    );
}

#[test]
fn endpoint_fields_are_validated() {
    let text = r#"
apiVersion: edgeplane.io/v1
kind: DataflowEndpoint
metadata: {name: e}
spec:
  endpointType: Mqtt
  mqttSettings:
    host: "no-port"
    qos: 2
    authentication: {method: X509Certificate}
---
apiVersion: edgeplane.io/v1
kind: DataflowEndpoint
metadata: {name: files}
spec:
  endpointType: LocalStorage
  localStorageSettings: {batching: {latencySeconds: 5}}
"#;
    let errors = errors(text);
    expect_error(&errors, "spec.mqttSettings.host", "needs a port");
    expect_error(&errors, "spec.mqttSettings.qos", "out of range");
    expect_error(
        &errors,
        "spec.mqttSettings.authentication.x509CertificateSettings",
        "needs `x509CertificateSettings",
    );
    expect_error(
        &errors,
        "spec.localStorageSettings.path",
        "needs the folder",
    );
}
