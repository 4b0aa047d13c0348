//! The BrokerListener kind: ports load with the right values, references resolve to
//! resources in the folder, TLS settings are consistent, and ports never collide.

mod common;

use std::net::SocketAddr;

use common::{error_at, errors, expect_error, listener_with, load};
use edgeplane_config::{ListenerPort, Protocol, TlsSettings};

/// The BrokerListener example of the AIO reference notes, plus the auth resources it names.
const AIO_LISTENER: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerListener
metadata: {name: default-external, namespace: azure-iot-operations}
spec:
  brokerRef: default
  serviceName: aio-broker-external
  serviceType: LoadBalancer
  ports:
  - port: 1883
  - port: 8883
    nodePort: 31883
    protocol: Mqtt
    authenticationRef: default-x509
    authorizationRef: my-authz
    tls:
      mode: Automatic
      certManagerCertificateSpec:
        issuerRef: {group: cert-manager.io, kind: ClusterIssuer, name: azure-iot-operations-aio-certificate-issuer}
        duration: 240h
        privateKey: {algorithm: Ec256, rotationPolicy: Always}
        san: {dns: [aio-broker, localhost], ip: [127.0.0.1]}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: BrokerAuthentication
metadata: {name: default-x509}
spec:
  authenticationMethods:
  - method: X509
    x509Settings: {trustedClientCaCert: client-ca}
---
apiVersion: mqttbroker.iotoperations.azure.com/v1beta1
kind: BrokerAuthorization
metadata: {name: my-authz}
spec:
  authorizationPolicies:
    cache: Enabled
    rules: []
"#;

const TLS_SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: server-cert}\n\
                          type: kubernetes.io/tls\ndata: {tls.crt: Q0VSVA==}\n\
                          stringData: {tls.key: KEY}\n";

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("bad test address {text}: {e}"))
}

#[test]
fn aio_listener_example_loads_with_its_ports() {
    let config = load(AIO_LISTENER);
    assert_eq!(
        config.listeners,
        [
            ListenerPort {
                listener: "default-external".into(),
                bind: addr("0.0.0.0:1883"),
                protocol: Protocol::Mqtt,
                authentication_ref: None,
                authorization_ref: None,
                tls: None,
                max_connections: None,
                max_connects_per_second_per_address: None,
            },
            ListenerPort {
                listener: "default-external".into(),
                bind: addr("0.0.0.0:8883"),
                protocol: Protocol::Mqtt,
                authentication_ref: Some("default-x509".into()),
                authorization_ref: Some("my-authz".into()),
                tls: Some(TlsSettings::Automatic),
                max_connections: None,
                max_connects_per_second_per_address: None,
            },
        ]
    );
    let authn = &config.authentications["default-x509"];
    assert_eq!(authn["authenticationMethods"][0]["method"], "X509");
    assert_eq!(
        config.authorizations["my-authz"]["authorizationPolicies"]["cache"],
        "Enabled"
    );
}

#[test]
fn extensions_bind_address_ephemeral_port_and_websockets_spelling() {
    let config = load(&listener_with(
        "local",
        "ports:\n\
         - {port: 0, bindAddress: 127.0.0.1}\n\
         - {port: 0, bindAddress: 127.0.0.1, protocol: Websockets}\n\
         - {port: 9001, bindAddress: '::1', protocol: WebSockets}\n",
    ));
    let binds: Vec<(SocketAddr, Protocol)> = config
        .listeners
        .iter()
        .map(|p| (p.bind, p.protocol))
        .collect();
    assert_eq!(
        binds,
        [
            (addr("127.0.0.1:0"), Protocol::Mqtt),
            (addr("127.0.0.1:0"), Protocol::WebSockets),
            (addr("[::1]:9001"), Protocol::WebSockets),
        ]
    );
}

#[test]
fn manual_tls_reads_the_named_secret() {
    let text = format!(
        "{TLS_SECRET}---\n{}",
        listener_with(
            "tls",
            "ports:\n- port: 8883\n  tls: {mode: Manual, manual: {secretRef: server-cert}}\n"
        )
    );
    let config = load(&text);
    assert_eq!(
        config.listeners[0].tls,
        Some(TlsSettings::Manual {
            secret_ref: "server-cert".into()
        })
    );
    let secret = &config.secrets["server-cert"];
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(secret.data["tls.crt"], b"CERT");
    assert_eq!(secret.data["tls.key"], b"KEY");
}

#[test]
fn references_must_resolve() {
    let cases = [
        (
            "ports:\n- port: 8883\n  tls: {mode: Manual, manual: {secretRef: missing-cert}}\n",
            "spec.ports[0].tls.manual.secretRef",
            "secret `missing-cert` not found",
        ),
        (
            "ports:\n- {port: 1883, authenticationRef: nobody}\n",
            "spec.ports[0].authenticationRef",
            "BrokerAuthentication `nobody` not found",
        ),
        (
            "ports:\n- {port: 1883, authenticationRef: authn, authorizationRef: nobody}\n",
            "spec.ports[0].authorizationRef",
            "BrokerAuthorization `nobody` not found",
        ),
        (
            "brokerRef: other\nports:\n- port: 1883\n",
            "spec.brokerRef",
            "broker `other` not found; use `default`",
        ),
    ];
    let authn =
        "apiVersion: edgeplane.io/v1\nkind: BrokerAuthentication\nmetadata: {name: authn}\n\
                 spec: {authenticationMethods: []}\n---\n";
    for (spec, field, says) in cases {
        let found = error_at(
            &errors(&format!("{authn}{}", listener_with("l", spec))),
            field,
        );
        assert!(found.message.contains(says), "{spec}: {}", found.message);
        assert_eq!(found.resource.as_deref(), Some("BrokerListener/l"));
        assert!(found.line.is_some());
    }
}

#[test]
fn a_secret_without_tls_keys_cannot_serve_tls() {
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: half}}\nstringData: {{tls.crt: CERT}}\n---\n{}",
        listener_with(
            "l",
            "ports:\n- port: 8883\n  tls: {mode: Manual, manual: {secretRef: half}}\n"
        )
    );
    let found = error_at(&errors(&text), "spec.ports[0].tls.manual.secretRef");
    assert!(
        found.message.contains("has no tls.key"),
        "{}",
        found.message
    );
}

#[test]
fn tls_settings_must_match_the_mode() {
    let cases = [
        (
            "tls: {mode: Manual}",
            "spec.ports[0].tls.manual.secretRef",
            "mode Manual needs",
        ),
        (
            "tls: {mode: Automatic, manual: {secretRef: x}}",
            "spec.ports[0].tls.manual",
            "applies only to mode Manual",
        ),
        (
            "tls: {mode: Manual, manual: {secretRef: x}, certManagerCertificateSpec: {}}",
            "spec.ports[0].tls.certManagerCertificateSpec",
            "applies only to mode Automatic",
        ),
        (
            "tls: {mode: Auto}",
            "spec.ports[0].tls.mode",
            "use one of: Automatic, Manual",
        ),
        (
            "tls: {manual: {secretRef: x}}",
            "spec.ports[0].tls.mode",
            "missing required field",
        ),
    ];
    for (tls, field, says) in cases {
        let spec = format!("ports:\n- port: 8883\n  {tls}\n");
        let found = error_at(&errors(&listener_with("l", &spec)), field);
        assert!(found.message.contains(says), "{tls}: {}", found.message);
    }
}

#[test]
fn port_values_are_checked() {
    let cases = [
        ("[{port: 65536}]", "spec.ports[0].port", "from 0 to 65535"),
        (
            "[{nodePort: 1}]",
            "spec.ports[0].port",
            "missing required field",
        ),
        (
            "[{port: 1883, protocol: Http}]",
            "spec.ports[0].protocol",
            "use one of: Mqtt, WebSockets",
        ),
        (
            "[{port: 1883, bindAddress: localhost}]",
            "spec.ports[0].bindAddress",
            "invalid IP address",
        ),
        (
            "[{port: 1883, authorizationRef: z}]",
            "spec.ports[0].authorizationRef",
            "add authenticationRef",
        ),
        ("[]", "spec.ports", "at least one port"),
        (
            "{port: 1883}",
            "spec.ports",
            "expected a list, found a mapping",
        ),
    ];
    for (ports, field, says) in cases {
        let spec = format!("ports: {ports}\n");
        expect_error(&errors(&listener_with("l", &spec)), field, says);
    }
}

#[test]
fn ports_must_not_conflict_across_listeners() {
    let text = format!(
        "{}---\n{}",
        listener_with("a", "ports:\n- port: 1883\n- {port: 8883, bindAddress: 127.0.0.1}\n"),
        listener_with("b", "ports:\n- {port: 1883, bindAddress: 10.0.0.1}\n- {port: 8883, bindAddress: 127.0.0.2}\n")
    );
    let all = errors(&text);
    assert_eq!(all.len(), 1, "{all:?}");
    let found = error_at(&all, "spec.ports[0].port");
    assert_eq!(found.resource.as_deref(), Some("BrokerListener/b"));
    assert_eq!(found.line, Some(16));
    assert!(
        found
            .message
            .contains("conflicts with BrokerListener/a spec.ports[0] (test.yaml:7)"),
        "{}",
        found.message
    );
}

#[test]
fn ports_within_one_listener_must_differ_but_ephemeral_ports_never_conflict() {
    let found = error_at(
        &errors(&listener_with("a", "ports:\n- port: 1883\n- port: 1883\n")),
        "spec.ports[1].port",
    );
    assert!(found.message.contains("use another port or bindAddress"));

    let config = load(&listener_with("a", "ports:\n- port: 0\n- port: 0\n"));
    assert_eq!(config.listeners.len(), 2);
}
