//! `BrokerAuthentication`: the manifest shapes of Azure IoT Operations (Custom, ServiceAccountToken,
//! X509) and Edgeplane's UsernamePassword load; mistakes in a method's settings are reported
//! all at once with their field paths.

mod common;

use common::{errors, expect_error, load};

const AIO_SHAPES: &str = r#"apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: all-methods}
spec:
  authenticationMethods:
  - method: Custom
    customSettings:
      endpoint: https://auth-server-template
      caCertConfigMap: custom-auth-ca
      auth:
        x509:
          secretRef: custom-auth-client-cert
          namespace: azure-iot-operations
      headers:
        header_key: header_value
  - method: ServiceAccountToken
    serviceAccountTokenSettings:
      audiences: [aio-internal, my-audience]
      jwksSecretRef: sat-keys
  - method: X509
    x509Settings:
      trustedClientCaCert: client-ca
      authorizationAttributes:
        root: {subject: "CN = Contoso Root CA Cert, OU = Engineering, C = US", attributes: {organization: contoso}}
        smart-fan: {subject: "CN = smart-fan", attributes: {building: "17"}}
  - method: UsernamePassword
    usernamePasswordSettings: {passwordFileSecretRef: edgeplane-passwords}
"#;

#[test]
fn aio_manifest_shapes_load() {
    let config = load(AIO_SHAPES);
    let spec = &config.authentications["all-methods"];
    let methods = spec["authenticationMethods"]
        .as_array()
        .expect("methods list");
    assert_eq!(methods.len(), 4);
    assert_eq!(
        methods[0]["customSettings"]["endpoint"],
        "https://auth-server-template"
    );
    assert_eq!(
        methods[1]["serviceAccountTokenSettings"]["audiences"][1],
        "my-audience"
    );
}

#[test]
fn method_settings_mistakes_are_all_reported() {
    let text = r#"apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: typos}
spec:
  authenticationMethods:
  - method: Custom
    customSettings:
      endpoint: http://auth-server
      caCertConfigmap: custom-auth-ca
      headers: {x: 1}
  - method: ServiceAccountToken
    serviceAccountTokenSettings: {audience: aio-internal}
  - method: Oauth
  - method: X509
    x509Settings: {additionalValidation: AzureDeviceRegistry}
"#;
    let all = errors(text);
    let m = "spec.authenticationMethods";
    expect_error(
        &all,
        &format!("{m}[0].customSettings.endpoint"),
        "not an https URL",
    );
    expect_error(
        &all,
        &format!("{m}[0].customSettings.caCertConfigmap"),
        "unknown field",
    );
    expect_error(&all, &format!("{m}[0].customSettings.headers.x"), "string");
    expect_error(
        &all,
        &format!("{m}[1].serviceAccountTokenSettings.audience"),
        "unknown field",
    );
    expect_error(
        &all,
        &format!("{m}[1].serviceAccountTokenSettings.audiences"),
        "missing",
    );
    expect_error(&all, &format!("{m}[2].method"), "ServiceAccountToken");
    expect_error(
        &all,
        &format!("{m}[3].x509Settings.additionalValidation"),
        "None",
    );
}
