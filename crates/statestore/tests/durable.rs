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
