//! With a data folder the state store's keys, versions, fencing tokens and expiries
//! survive a restart: what was answered `+OK` is there after the broker comes back.

use std::time::Duration;

use edgeplane_statestore::{
    Hlc, SetOptions, StateStore, StateStoreError, StateStoreHandle, StateStoreSettings, StoreError,
    Written,
};
use edgeplane_tests::{TempDir, TestBroker};

async fn start(dir: &std::path::Path) -> (TestBroker, StateStoreHandle) {
    let b = TestBroker::start().await;
    let settings = StateStoreSettings {
        data_dir: Some(dir.to_path_buf()),
        ..StateStoreSettings::default()
    };
    let handle = StateStore::start(&b.broker, settings)
        .await
        .expect("state store starts");
    (b, handle)
}

fn version(w: Written) -> Hlc {
    match w {
        Written::Applied(v) => v,
        Written::NotApplied => panic!("write not applied"),
    }
}

#[tokio::test]
async fn keys_versions_tokens_and_expiry_survive_a_restart() {
    let dir = TempDir::new("statestore-durable");
    let (b, store) = start(&dir).await;
    let token: Hlc = "000001700000000:00000:lock".parse().expect("hlc");
    let fenced = SetOptions {
        fencing_token: Some(token.clone()),
        ..SetOptions::default()
    };
    let v_config = version(
        store
            .set("config", "72.5", SetOptions::default())
            .await
            .expect("set"),
    );
    // A batch without changes (a read) must not disturb the journal.
    assert!(store.get("config").await.expect("get").is_some());
    store.set("locked", "holder-1", fenced).await.expect("set");
    let short = SetOptions {
        expires: Some(Duration::from_millis(300)),
        ..SetOptions::default()
    };
    store.set("short", "gone soon", short).await.expect("set");
    let long = SetOptions {
        expires: Some(Duration::from_secs(3600)),
        ..SetOptions::default()
    };
    store.set("long", "stays", long).await.expect("set");
    store
        .set("deleted", "x", SetOptions::default())
        .await
        .expect("set");
    assert!(store.del("deleted", None).await.expect("del"));
    b.broker.shutdown(Duration::from_secs(1)).await;
    drop(store);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let (_b, store) = start(&dir).await;
    let config = store
        .get("config")
        .await
        .expect("get")
        .expect("config kept");
    assert_eq!(&config.value[..], b"72.5");
    assert_eq!(config.version, v_config, "the version is kept");
    assert_eq!(store.get("deleted").await.expect("get"), None);
    assert_eq!(
        store.get("short").await.expect("get"),
        None,
        "expired while down"
    );
    assert!(store.get("long").await.expect("get").is_some());
    // The fencing token still protects the key.
    let err = store.set("locked", "intruder", SetOptions::default()).await;
    assert!(
        matches!(
            err,
            Err(StateStoreError::Store(StoreError::FencingTokenRequired))
        ),
        "{err:?}"
    );
    // New versions are newer than the recovered ones.
    let v_new = version(
        store
            .set("config", "73", SetOptions::default())
            .await
            .expect("set"),
    );
    assert!(v_new > v_config, "{v_new} after {v_config}");
}

/// `persistence.stateStore` `Custom`: keys matching the patterns, and keys written by a
/// request carrying `aio-persistence=true`, are kept; other keys are memory only.
#[tokio::test]
async fn a_custom_policy_keeps_matching_and_opted_in_keys() {
    use edgeplane_broker::LocalOptions;
    use edgeplane_codec::{Properties, Publish, QoS, SubOptions};
    use edgeplane_statestore::resp::encode_request;
    use edgeplane_statestore::{DurableKey, DurableKeys, REQUEST_TOPIC};

    let dir = TempDir::new("statestore-custom");
    let policy = DurableKeys::Matching {
        keys: vec![
            DurableKey::Glob(b"config/*".to_vec()),
            DurableKey::Exact(b"line[2]".to_vec()),
        ],
        dynamic: Some(("aio-persistence".into(), "true".into())),
    };
    let start = |policy: DurableKeys| {
        let dir = dir.to_path_buf();
        async move {
            let b = TestBroker::start().await;
            let settings = StateStoreSettings {
                data_dir: Some(dir),
                durable_keys: policy,
                ..StateStoreSettings::default()
            };
            let handle = StateStore::start(&b.broker, settings)
                .await
                .expect("starts");
            (b, handle)
        }
    };
    let (b, store) = start(policy.clone()).await;
    store
        .set("config/line1", "a", SetOptions::default())
        .await
        .expect("set");
    store
        .set("scratch", "b", SetOptions::default())
        .await
        .expect("set");
    // keyType String / Binary: that key exactly, brackets and all; no glob.
    for key in ["line[2]", "line2"] {
        store
            .set(key, "d", SetOptions::default())
            .await
            .expect("set");
    }
    // An MQTT client opts one key in with the user property.
    let mut client = b
        .broker
        .local_client(LocalOptions::new("app"))
        .await
        .expect("attach");
    client
        .subscribe("app/response", SubOptions::new(QoS::AtLeastOnce))
        .await
        .expect("subscribe");
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let properties = Properties {
        response_topic: Some("app/response".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"1")),
        user_properties: vec![
            ("aio-persistence".into(), "true".into()),
            ("__ts".into(), format!("{ms:015}:00000:app")),
        ],
        ..Properties::default()
    };
    client
        .publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: REQUEST_TOPIC.into(),
            packet_id: 0,
            properties,
            payload: encode_request(&["SET", "session/42", "c"]),
        })
        .await
        .expect("publish");
    let answer = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .expect("answered")
        .expect("delivery");
    assert_eq!(&answer.message.payload[..], b"+OK\r\n");
    client.ack(&answer).await;
    b.broker.shutdown(Duration::from_secs(1)).await;
    drop(store);

    let (_b, store) = start(policy).await;
    let kept = |k: &'static str| {
        let store = store.clone();
        async move { store.get(k).await.expect("get").is_some() }
    };
    assert!(kept("config/line1").await, "matches config/*");
    assert!(kept("session/42").await, "opted in by the request");
    assert!(!kept("scratch").await, "memory only");
    assert!(kept("line[2]").await, "an exact key");
    assert!(!kept("line2").await, "an exact key is not a glob");
}
