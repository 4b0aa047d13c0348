//! The Broker kind: the AIO example loads with the right values, defaults apply, ranges
//! and enums are enforced, and only one Broker is allowed.

mod common;

use common::{broker_with, error_at, errors, load};
use edgeplane_config::{load_str, ClientLimits, Config, MemoryProfile, QueueLimit, QueueStrategy};

/// The Broker example of the AIO reference notes, with a full persistence section.
const AIO_BROKER: &str = r#"
apiVersion: mqttbroker.iotoperations.azure.com/v1
kind: Broker
metadata: {name: default, namespace: azure-iot-operations}
spec:
  memoryProfile: Medium            # Tiny|Low|Medium(default)|High
  cardinality:
    frontend:     {replicas: 2, workers: 2}
    backendChain: {partitions: 2, redundancyFactor: 2, workers: 1}
  generateResourceLimits: {cpu: Enabled}
  advanced:
    encryptInternalTraffic: Enabled
    internalCerts: {duration: 240h, renewBefore: 45m, privateKey: {algorithm: Rsa2048, rotationPolicy: Always}}
    clients:
      maxSessionExpirySeconds: 282277
      maxMessageExpirySeconds: 1622
      maxPacketSizeBytes: 268435456
      maxReceiveMaximum: 15000
      maxKeepAliveSeconds: 300
      subscriberQueueLimit: {length: 1000, strategy: DropOldest}
  diskBackedMessageBuffer:
    maxSize: "1G"
    ephemeralVolumeClaimSpec: {storageClassName: foo, accessModes: [ReadWriteOnce]}
  diagnostics:
    logs: {level: info}
    metrics: {prometheusPort: 9600}
    selfCheck: {mode: Enabled, intervalSeconds: 30, timeoutSeconds: 15}
    traces: {mode: Enabled, cacheSizeMegabytes: 16, spanChannelCapacity: 1000, selfTracing: {mode: Enabled, intervalSeconds: 30}}
  persistence:
    maxSize: 10G
    encryption: {mode: Enabled}
    persistentVolumeClaimSpec: {storageClassName: local-path, accessModes: [ReadWriteOncePod]}
    retain:
      mode: Custom
      retainSettings: {topics: ["factory/#"], dynamic: {mode: Enabled}}
    subscriberQueue:
      mode: Custom
      subscriberQueueSettings: {subscriberClientIds: ["line-*"], dynamic: {mode: Disabled}}
    stateStore:
      mode: Custom
      stateStoreSettings:
        stateStoreResources: [{keyType: Pattern, keys: ["config/*"]}]
        dynamic: {mode: Enabled}
"#;

#[test]
fn aio_broker_example_loads_with_its_values() {
    let config = load(AIO_BROKER);
    let broker = &config.broker;
    assert_eq!(broker.name, "default");
    assert_eq!(broker.memory_profile, MemoryProfile::Medium);
    assert_eq!(broker.prometheus_port, Some(9600));
    assert_eq!(broker.log_level.as_deref(), Some("info"));
    assert_eq!(
        broker.clients,
        ClientLimits {
            max_session_expiry_secs: 282_277,
            max_message_expiry_secs: Some(1622),
            // 256 MiB asked, bounded by the Medium profile's 64 MiB.
            max_packet_size: 64 << 20,
            max_receive_maximum: 15_000,
            max_keep_alive_secs: Some(300),
            subscriber_queue_limit: Some(QueueLimit {
                length: 1000,
                max_bytes: None,
                strategy: QueueStrategy::DropOldest,
            }),
            queue_qos0_offline: false,
            max_queued_bytes: 512 << 20,
            max_inflight_bytes: None,
        }
    );
    assert_eq!(broker.raw_spec["cardinality"]["frontend"]["replicas"], 2);
    assert_eq!(broker.raw_spec["persistence"]["maxSize"], "10G");
    assert!(config.listeners.is_empty());
    assert_eq!(config.resources.len(), 1);
    assert_eq!(
        config.resources[0].namespace.as_deref(),
        Some("azure-iot-operations")
    );
}

#[test]
fn defaults_without_a_broker_or_without_a_spec() {
    assert_eq!(load(""), Config::default());
    assert_eq!(load("# only a comment\n---\n"), Config::default());

    let config = load("apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: edge}\n");
    assert_eq!(config.broker.name, "edge");
    assert_eq!(config.broker.clients, ClientLimits::default());
    assert_eq!(config.broker.memory_profile, MemoryProfile::Medium);
    assert_eq!(config.broker.prometheus_port, None);

    let defaults = ClientLimits::default();
    assert_eq!(defaults.max_session_expiry_secs, u32::MAX);
    assert_eq!(defaults.max_receive_maximum, 65_535);
    assert_eq!(defaults.max_packet_size, 64 << 20);
    assert_eq!(defaults.subscriber_queue_limit, None);
}

/// Our extensions for bounded memory: a byte bound per subscriber queue, `DropNewest`, and
/// the broker-wide `maxQueuedBytes`, whose default follows the memory profile.
#[test]
fn queue_byte_limits_load() {
    let spec = "advanced: {clients: {maxQueuedBytes: 1048576, subscriberQueueLimit: {length: 10, maxBytes: 65536, strategy: DropNewest}}}";
    let clients = load(&broker_with(spec)).broker.clients;
    assert_eq!(clients.max_queued_bytes, 1 << 20);
    assert_eq!(
        clients.subscriber_queue_limit,
        Some(QueueLimit {
            length: 10,
            max_bytes: Some(65_536),
            strategy: QueueStrategy::DropNewest,
        })
    );
    let tiny = load(&broker_with("memoryProfile: Tiny")).broker.clients;
    assert_eq!(tiny.max_queued_bytes, 32 << 20);
    let bad = "advanced: {clients: {maxQueuedBytes: 10}}";
    let found = error_at(
        &errors(&broker_with(bad)),
        "spec.advanced.clients.maxQueuedBytes",
    );
    assert!(found.message.contains("from 1024"), "{}", found.message);
}

#[test]
fn memory_profile_bounds_the_packet_size() {
    let cases = [
        ("Tiny", None, 4 << 20),
        ("Low", None, 16 << 20),
        ("High", None, 256 << 20),
        ("Tiny", Some(1024), 1024),
        ("Low", Some(100 << 20), 16 << 20),
        ("High", Some(268_435_456), 256 << 20),
    ];
    for (profile, asked, expected) in cases {
        let clients = asked
            .map(|n| format!("advanced: {{clients: {{maxPacketSizeBytes: {n}}}}}\n"))
            .unwrap_or_default();
        let config = load(&broker_with(&format!(
            "memoryProfile: {profile}\n{clients}"
        )));
        assert_eq!(
            config.broker.clients.max_packet_size, expected,
            "{profile} {asked:?}"
        );
    }
}

#[test]
fn out_of_range_values_name_the_field_and_the_range() {
    let cases = [
        ("advanced: {clients: {maxReceiveMaximum: 0}}", "spec.advanced.clients.maxReceiveMaximum", "from 1 to 65535"),
        ("advanced: {clients: {maxReceiveMaximum: 65536}}", "spec.advanced.clients.maxReceiveMaximum", "from 1 to 65535"),
        ("advanced: {clients: {maxKeepAliveSeconds: -1}}", "spec.advanced.clients.maxKeepAliveSeconds", "from 0 to 65535"),
        ("advanced: {clients: {maxPacketSizeBytes: 268435457}}", "spec.advanced.clients.maxPacketSizeBytes", "from 1 to 268435456"),
        ("advanced: {clients: {maxSessionExpirySeconds: 4294967296}}", "spec.advanced.clients.maxSessionExpirySeconds", "from 1 to 4294967295"),
        ("advanced: {clients: {subscriberQueueLimit: {length: 0}}}", "spec.advanced.clients.subscriberQueueLimit.length", "from 1 to"),
        ("diagnostics: {selfCheck: {intervalSeconds: 10}}", "spec.diagnostics.selfCheck.intervalSeconds", "from 30 to 300"),
        ("diagnostics: {selfCheck: {timeoutSeconds: 121}}", "spec.diagnostics.selfCheck.timeoutSeconds", "from 5 to 120"),
        ("cardinality: {frontend: {replicas: 17}, backendChain: {partitions: 1, redundancyFactor: 2}}", "spec.cardinality.frontend.replicas", "from 1 to 16"),
        ("diagnostics: {metrics: {prometheusPort: 70000}}", "spec.diagnostics.metrics.prometheusPort", "from 0 to 65535"),
    ];
    for (spec, field, range) in cases {
        let found = error_at(&errors(&broker_with(spec)), field);
        assert!(found.message.contains(range), "{spec}: {}", found.message);
        assert_eq!(found.resource.as_deref(), Some("Broker/default"));
    }
}

#[test]
fn bad_values_are_reported_with_what_to_do() {
    let cases = [
        ("memoryProfile: Huge", "spec.memoryProfile", "use one of: Tiny, Low, Medium, High"),
        ("memoryProfile: medium", "spec.memoryProfile", "did you mean `Medium`? (allowed: Tiny, Low, Medium, High)"),
        ("advanced: {clients: {subscriberQueueLimit: {length: 5, strategy: DropOlest}}}", "spec.advanced.clients.subscriberQueueLimit.strategy", "did you mean `DropOldest`?"),
        ("advanced: {clients: {subscriberQueueLimit: {strategy: DropOldest}}}", "spec.advanced.clients.subscriberQueueLimit.length", "missing required field"),
        ("advanced: {clients: {maxReceiveMaximum: \"100\"}}", "spec.advanced.clients.maxReceiveMaximum", "expected an integer, found a string"),
        ("diskBackedMessageBuffer: {maxSize: 1Gi}", "spec.diskBackedMessageBuffer.maxSize", "such as 1G"),
        ("advanced: {internalCerts: {duration: 10d, renewBefore: 1h, privateKey: {algorithm: Ec256, rotationPolicy: Never}}}", "spec.advanced.internalCerts.duration", "such as 240h"),
        ("advanced: {internalCerts: {duration: 1h, renewBefore: 2h, privateKey: {algorithm: Ec256, rotationPolicy: Never}}}", "spec.advanced.internalCerts.renewBefore", "shorter than duration"),
        ("cardinality: {frontend: {replicas: 1}}", "spec.cardinality.backendChain", "missing required field"),
        ("persistence: {maxSize: 1G, retain: {mode: Custom}}", "spec.persistence.retain.retainSettings", "mode Custom needs"),
        ("persistence: {maxSize: 1G, stateStore: {mode: All, stateStoreSettings: {}}}", "spec.persistence.stateStore.stateStoreSettings", "applies only to mode Custom"),
        ("persistence: {retain: {mode: All}}", "spec.persistence.maxSize", "missing required field"),
        ("persistence: {maxSize: 1G, persistentVolumeClaimSpec: {accessModes: [ReadWriteOnce]}}", "spec.persistence.persistentVolumeClaimSpec.accessModes[0]", "ReadWriteOncePod"),
    ];
    for (spec, field, says) in cases {
        let found = error_at(&errors(&broker_with(spec)), field);
        assert!(found.message.contains(says), "{spec}: {}", found.message);
    }
}

#[test]
fn api_versions_accept_aio_aliases_and_reject_others() {
    for version in [
        "edgeplane.io/v1",
        "mqttbroker.iotoperations.azure.com/v1",
        "mqttbroker.iotoperations.azure.com/v1beta1",
    ] {
        let text = format!("apiVersion: {version}\nkind: Broker\nmetadata: {{name: default}}\n");
        assert!(load_str("b.yaml", &text).is_ok(), "{version}");
    }
    for version in [
        "v1",
        "edgeplane.io/v2",
        "mq.iotoperations.azure.com/v1beta1",
    ] {
        let text = format!("apiVersion: {version}\nkind: Broker\nmetadata: {{name: default}}\n");
        let found = error_at(&errors(&text), "apiVersion");
        assert!(
            found.message.contains("use edgeplane.io/v1"),
            "{version}: {}",
            found.message
        );
    }
}

#[test]
fn only_one_broker_is_allowed() {
    let text = "apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: default}\n---\n\
                apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {name: second}\n";
    let found = error_at(&errors(text), "metadata.name");
    assert_eq!(found.resource.as_deref(), Some("Broker/second"));
    assert_eq!(found.line, Some(5));
    assert!(
        found.message.contains("only one Broker"),
        "{}",
        found.message
    );
}

/// Our extension `advanced.clients.queueQos0WhileOffline` turns on QoS 0 queueing for
/// offline sessions; a value that is not a boolean is an error naming the field.
#[test]
fn queue_qos0_while_offline() {
    let doc = |v: &str| {
        format!("apiVersion: edgeplane.io/v1\nkind: Broker\nmetadata: {{name: default}}\nspec:\n  advanced:\n    clients:\n      queueQos0WhileOffline: {v}\n")
    };
    let config = edgeplane_config::load_str("b.yaml", &doc("true")).expect("valid");
    assert!(config.broker.clients.queue_qos0_offline);
    assert!(
        !edgeplane_config::Config::default()
            .broker
            .clients
            .queue_qos0_offline
    );
    let errors = edgeplane_config::load_str("b.yaml", &doc("sometimes")).expect_err("invalid");
    assert!(
        errors
            .to_string()
            .contains("spec.advanced.clients.queueQos0WhileOffline"),
        "{errors}"
    );
}

#[test]
fn state_store_persistence_keys_follow_their_key_type() {
    use edgeplane_config::StateStoreKey;
    let spec = "persistence:
  maxSize: 1G
  stateStore:
    mode: Custom
    stateStoreSettings:
      stateStoreResources:
      - {keyType: Pattern, keys: ['config/*']}
      - {keyType: String, keys: ['line[2]']}
      - {keyType: Binary, keys: ['AP8=']}";
    let config = load(&broker_with(spec));
    let keys = &config
        .broker
        .persistence
        .expect("persistence")
        .state_store
        .keys;
    assert_eq!(
        keys,
        &[
            StateStoreKey::Pattern("config/*".into()),
            StateStoreKey::String("line[2]".into()),
            StateStoreKey::Binary(vec![0x00, 0xff]),
        ]
    );
    let bad = spec.replace("'AP8='", "'not base64!'");
    let found = error_at(
        &errors(&broker_with(&bad)),
        "spec.persistence.stateStore.stateStoreSettings.stateStoreResources[2].keys[0]",
    );
    assert!(found.message.contains("base64"), "{}", found.message);
}

#[test]
fn otlp_export_loads_and_a_bad_endpoint_names_the_field() {
    let config = load(&broker_with(
        "diagnostics: {metrics: {otlp: {endpoint: 'http://collector:4318', intervalSeconds: 15}}}",
    ));
    let otlp = config.broker.otlp.expect("otlp");
    assert_eq!(
        (otlp.endpoint.as_str(), otlp.interval_seconds),
        ("http://collector:4318", 15)
    );
    let found = error_at(
        &errors(&broker_with(
            "diagnostics: {metrics: {otlp: {endpoint: 'grpc://collector:4317'}}}",
        )),
        "spec.diagnostics.metrics.otlp.endpoint",
    );
    assert!(found.message.contains("http://"), "{}", found.message);
}
