//! Error reporting: every problem at once, each with file, resource, field and line;
//! unknown fields and kinds; broken documents; multi-document files.

mod common;

use common::{error_at, errors, expect_error, load};
use edgeplane_config::{load_str, Kind};

/// One file, three resources, seven distinct mistakes.
const MANY_MISTAKES: &str = r#"apiVersion: edgeplane.io/v1
kind: Broker
metadata:
  name: default
spec:
  memoryProfile: Huge
  advanced:
    clients:
      maxRecieveMaximum: 100
      maxKeepAliveSeconds: 70000
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata:
  name: edge
spec:
  ports:
  - port: 1883
    protocol: Mqtts
  - port: 8883
    tls: {mode: Manual, manual: {secretRef: nowhere}}
---
apiVersion: edgeplane.io/v1
kind: Dataflw
metadata: {name: x}
---
apiVersion: v1
kind: Secret
metadata: {name: Bad_Name}
data: {tls.crt: "%%%"}
"#;

#[test]
fn reports_every_error_with_file_resource_field_and_line() {
    let all = errors(MANY_MISTAKES);
    let got: Vec<(Option<&str>, &str, Option<usize>)> = all
        .iter()
        .map(|e| (e.resource.as_deref(), e.field.as_str(), e.line))
        .collect();
    assert_eq!(
        got,
        [
            (Some("Broker/default"), "spec.memoryProfile", Some(6)),
            (
                Some("Broker/default"),
                "spec.advanced.clients.maxRecieveMaximum",
                Some(9)
            ),
            (
                Some("Broker/default"),
                "spec.advanced.clients.maxKeepAliveSeconds",
                Some(10)
            ),
            (
                Some("BrokerListener/edge"),
                "spec.ports[0].protocol",
                Some(19)
            ),
            (
                Some("BrokerListener/edge"),
                "spec.ports[1].tls.manual.secretRef",
                Some(21)
            ),
            (None, "kind", Some(24)),
            (Some("Secret/Bad_Name"), "metadata.name", Some(29)),
            (Some("Secret/Bad_Name"), "data[\"tls.crt\"]", Some(30)),
        ]
    );
    assert!(all.iter().all(|e| e.file.to_str() == Some("test.yaml")));
    assert!(all[1].message.contains("did you mean `maxReceiveMaximum`?"));
    assert!(all[3].message.contains("did you mean `Mqtt`?"));
    assert!(all[6].message.contains("invalid name `Bad_Name`"));
    assert!(all[7].message.contains("not valid base64"));
}

#[test]
fn display_gives_one_error_per_line() {
    let report = match load_str("site/broker.yaml", MANY_MISTAKES) {
        Ok(_) => panic!("expected errors"),
        Err(errors) => errors.to_string(),
    };
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 8, "{report}");
    assert_eq!(
        lines[0],
        "site/broker.yaml:6: Broker/default spec.memoryProfile: unknown value `Huge`; \
         use one of: Tiny, Low, Medium, High"
    );
    assert!(
        lines[5].starts_with("site/broker.yaml:24: kind: unsupported kind Dataflw; supported: ")
    );
}

#[test]
fn messages_are_lowercase() {
    for error in errors(MANY_MISTAKES) {
        let first = error.message.chars().next();
        assert!(first.is_some_and(|c| !c.is_uppercase()), "{error}");
    }
}

#[test]
fn unknown_fields_are_errors_at_every_level() {
    let cases = [
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {}\nbinaryData: {}\n", "binaryData"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labelz: {}}\n", "metadata.labelz"),
        ("apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: default}\nspec: {diagnostics: {logs: {lvl: info}}}\n", "spec.diagnostics.logs.lvl"),
        ("apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: l}\nspec: {ports: [{port: 1, tls: {mode: Automatic, extra: 1}}]}\n", "spec.ports[0].tls.extra"),
    ];
    for (text, field) in cases {
        let found = error_at(&errors(text), field);
        assert!(
            found.message.starts_with("unknown field"),
            "{field}: {}",
            found.message
        );
    }
}

#[test]
fn unknown_kinds_list_the_supported_ones() {
    let found = error_at(
        &errors("apiVersion: edgeplane.io/v1\nkind: DataflowGraph\nmetadata: {name: d}\n"),
        "kind",
    );
    for kind in Kind::ALL {
        assert!(found.message.contains(kind.as_str()), "{}", found.message);
    }
    assert!(found
        .message
        .starts_with("unsupported kind DataflowGraph; supported: "));
}

#[test]
fn broken_documents_are_reported() {
    let cases = [
        ("kind: Broker\n", "metadata", "missing required field"),
        ("kind: Broker\nmetadata: {}\n", "apiVersion", "missing required field"),
        ("apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {}\n", "metadata.name", "missing required field"),
        ("apiVersion: edgeplane.io/v1\nmetadata: {name: a}\n", "kind", "add `kind`"),
        ("apiVersion: edgeplane.io/v1\nkind: [Broker]\nmetadata: {name: a}\n", "kind", "expected a string"),
        ("- just\n- a list\n", "", "expected a resource"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata: {key: 1}\n", "data.key", "put the value in quotes"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n", "data[\"tls.key\"]", "needs `tls.key`"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {\"a b\": x}\n", "data[\"a b\"]", "invalid key"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {1: x}\n", "data[\"<key on line 4>\"]", "keys must be plain strings"),
        ("apiVersion: edgeplane.io/v1\nkind: BrokerAuthentication\nmetadata: {name: a}\n", "spec", "missing required field"),
        ("apiVersion: edgeplane.io/v1\nkind: BrokerAuthorization\nmetadata: {name: a}\nspec: [1]\n", "spec", "expected a mapping"),
        ("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\n", "metadata.name", "duplicate Secret/s, first defined at test.yaml:1"),
    ];
    for (text, field, says) in cases {
        expect_error(&errors(text), field, says);
    }
}

#[test]
fn syntax_errors_name_the_line() {
    let all = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c\ndata: {}\n");
    assert_eq!(all.len(), 1);
    assert!(
        all[0].message.starts_with("yaml syntax error"),
        "{}",
        all[0]
    );
    assert!(all[0].line.is_some_and(|l| l >= 3), "{}", all[0]);
}

#[test]
fn multi_document_files_load_every_resource() {
    let text = "# site config\n---\n\
                apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: default}\n\
                spec: {memoryProfile: Low}\n---\n\
                apiVersion: v1\nkind: ConfigMap\nmetadata: {name: client-ca}\n\
                data: {ca.pem: PEM}\n---\n\
                apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: l}\n\
                spec: {ports: [{port: 1883}]}\n---\n";
    let config = load(text);
    let kinds: Vec<(Kind, &str, usize)> = config
        .resources
        .iter()
        .map(|r| (r.kind, r.name.as_str(), r.line))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::Broker, "default", 3),
            (Kind::ConfigMap, "client-ca", 8),
            (Kind::BrokerListener, "l", 13),
        ]
    );
    assert_eq!(config.config_maps["client-ca"]["ca.pem"], "PEM");
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.broker.clients.max_packet_size, 16 << 20);
}

#[test]
fn kubectl_output_loads() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: ns\n  \
                uid: 1234\n  resourceVersion: \"42\"\n  creationTimestamp: 2024-01-01T00:00:00Z\n  \
                labels: {app: edge}\n  annotations: {note: x}\ndata: {a: b}\n";
    assert_eq!(load(text).config_maps["c"]["a"], "b");
}
