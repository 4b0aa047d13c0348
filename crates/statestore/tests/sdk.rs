//! Acceptance: the official Azure IoT Operations SDK crates (state store client, leased
//! lock) against a live Edgeplane broker on 127.0.0.1:0 with the state store attached, over
//! real MQTT v5 connections.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _, Result};
use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::session::{Session, SessionExitHandle, SessionOptionsBuilder};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_protocol::common::hybrid_logical_clock::HybridLogicalClock;
use azure_iot_operations_services::leased_lock::lock;
use azure_iot_operations_services::state_store::{
    self, ErrorKind, Operation, SetCondition, SetOptions,
};
use edgeplane_statestore::{StateStore, StateStoreSettings};
use edgeplane_tests::TestBroker;

const T: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(10);

/// An application: an SDK session connected to the broker and a state store client on it.
struct App {
    store: Arc<state_store::Client>,
    exit: SessionExitHandle,
}

impl App {
    async fn connect(b: &TestBroker, id: &str) -> Result<App> {
        let connection = MqttConnectionSettingsBuilder::default()
            .client_id(id)
            .hostname("127.0.0.1")
            .tcp_port(b.addr.port())
            .use_tls(false)
            .clean_start(true)
            .build()?;
        let options = SessionOptionsBuilder::default()
            .connection_settings(connection)
            .build()?;
        let session = Session::new(options).map_err(|e| anyhow::anyhow!("session: {e}"))?;
        let store = state_store::Client::new(
            ApplicationContextBuilder::default().build()?,
            session.create_managed_client(),
            session.create_session_monitor(),
            state_store::ClientOptionsBuilder::default().build()?,
        )?;
        let monitor = session.create_session_monitor();
        let exit = session.create_exit_handle();
        tokio::spawn(session.run());
        tokio::time::timeout(WAIT, monitor.connected()).await?;
        Ok(App {
            store: Arc::new(store),
            exit,
        })
    }
}

async fn broker() -> Result<TestBroker> {
    let b = TestBroker::start().await;
    StateStore::start(&b.broker, StateStoreSettings::default()).await?;
    Ok(b)
}

/// The name of the service error a call failed with (`ServiceError` is not `PartialEq`).
fn service_error(r: Result<impl std::fmt::Debug, state_store::Error>) -> Result<String> {
    match r {
        Err(e) => match e.kind() {
            ErrorKind::ServiceError(s) => Ok(format!("{s:?}")),
            other => bail!("expected a service error, got {other:?}"),
        },
        Ok(v) => bail!("expected a service error, got {v:?}"),
    }
}

fn set(condition: SetCondition, expires: Option<Duration>) -> SetOptions {
    SetOptions {
        set_condition: condition,
        expires,
        ..SetOptions::default()
    }
}

#[tokio::test]
async fn set_get_del_vdel() -> Result<()> {
    let b = broker().await?;
    let app = App::connect(&b, "app").await?;
    let s = &app.store;
    let r = s
        .set(
            b"k".to_vec(),
            b"v1".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await?;
    assert!(r.response);
    let version = r.version.context("SET version")?;
    let got = s.get(b"k".to_vec(), T).await?;
    assert_eq!(got.response, Some(b"v1".to_vec()));
    assert_eq!(got.version, Some(version));
    assert_eq!(s.get(b"missing".to_vec(), T).await?.response, None);
    assert_eq!(
        s.vdel(b"k".to_vec(), b"other".to_vec(), None, T)
            .await?
            .response,
        -1
    );
    assert_eq!(
        s.vdel(b"k".to_vec(), b"v1".to_vec(), None, T)
            .await?
            .response,
        1
    );
    assert_eq!(
        s.vdel(b"k".to_vec(), b"v1".to_vec(), None, T)
            .await?
            .response,
        0
    );
    s.set(
        b"k".to_vec(),
        b"v2".to_vec(),
        T,
        None,
        SetOptions::default(),
    )
    .await?;
    assert_eq!(s.del(b"k".to_vec(), None, T).await?.response, 1);
    assert_eq!(s.del(b"k".to_vec(), None, T).await?.response, 0);
    assert_eq!(s.get(b"k".to_vec(), T).await?.response, None);
    Ok(())
}

#[tokio::test]
async fn nx_and_nex_conditions() -> Result<()> {
    let b = broker().await?;
    let app = App::connect(&b, "app").await?;
    let s = &app.store;
    let nx = || set(SetCondition::OnlyIfDoesNotExist, None);
    let nex = || set(SetCondition::OnlyIfEqualOrDoesNotExist, None);
    assert!(
        s.set(b"k".to_vec(), b"a".to_vec(), T, None, nx())
            .await?
            .response
    );
    assert!(
        !s.set(b"k".to_vec(), b"b".to_vec(), T, None, nx())
            .await?
            .response
    );
    assert!(
        s.set(b"k".to_vec(), b"a".to_vec(), T, None, nex())
            .await?
            .response
    );
    assert!(
        !s.set(b"k".to_vec(), b"b".to_vec(), T, None, nex())
            .await?
            .response
    );
    assert!(
        s.set(b"new".to_vec(), b"b".to_vec(), T, None, nex())
            .await?
            .response
    );
    assert_eq!(s.get(b"k".to_vec(), T).await?.response, Some(b"a".to_vec()));
    Ok(())
}

#[tokio::test]
async fn px_expiry_removes_the_key() -> Result<()> {
    let b = broker().await?;
    let app = App::connect(&b, "app").await?;
    let s = &app.store;
    let px = set(
        SetCondition::Unconditional,
        Some(Duration::from_millis(300)),
    );
    assert!(
        s.set(b"k".to_vec(), b"v".to_vec(), T, None, px)
            .await?
            .response
    );
    assert_eq!(s.get(b"k".to_vec(), T).await?.response, Some(b"v".to_vec()));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(s.get(b"k".to_vec(), T).await?.response, None);
    Ok(())
}

#[tokio::test]
async fn every_fencing_token_rule() -> Result<()> {
    let b = broker().await?;
    let app = App::connect(&b, "app").await?;
    let s = &app.store;
    let d = SetOptions::default;
    // Two versions of a lock key: `old` < `new`.
    let old = s
        .set(b"lock".to_vec(), b"me".to_vec(), T, None, d())
        .await?
        .version
        .context("v")?;
    let new = s
        .set(b"lock".to_vec(), b"me".to_vec(), T, None, d())
        .await?
        .version
        .context("v")?;
    let key = || b"protected".to_vec();

    // A key without a token accepts a write carrying one, and keeps it.
    assert!(
        s.set(key(), b"1".to_vec(), T, Some(old.clone()), d())
            .await?
            .response
    );
    // Once protected, writes without a token are refused…
    let e = service_error(s.set(key(), b"2".to_vec(), T, None, d()).await)?;
    assert_eq!(e, "MissingFencingToken");
    let e = service_error(s.del(key(), None, T).await)?;
    assert_eq!(e, "MissingFencingToken");
    let e = service_error(s.vdel(key(), b"1".to_vec(), None, T).await)?;
    assert_eq!(e, "MissingFencingToken");
    // …an equal token is accepted, a newer one is accepted and replaces it…
    assert!(
        s.set(key(), b"2".to_vec(), T, Some(old.clone()), d())
            .await?
            .response
    );
    assert!(
        s.set(key(), b"3".to_vec(), T, Some(new.clone()), d())
            .await?
            .response
    );
    // …and an older one is refused, for SET, DEL and VDEL.
    let e = service_error(s.set(key(), b"4".to_vec(), T, Some(old.clone()), d()).await)?;
    assert_eq!(e, "FencingTokenLowerVersion");
    let e = service_error(s.del(key(), Some(old.clone()), T).await)?;
    assert_eq!(e, "FencingTokenLowerVersion");
    let e = service_error(s.vdel(key(), b"3".to_vec(), Some(old.clone()), T).await)?;
    assert_eq!(e, "FencingTokenLowerVersion");
    // A token more than a minute ahead of the broker's clock is refused.
    let ahead = SystemTime::now() + Duration::from_secs(120);
    let ahead_ms = ahead.duration_since(SystemTime::UNIX_EPOCH)?.as_millis();
    let future = HybridLogicalClock::from_str(&format!("{ahead_ms:0>15}:00000:app"))?;
    let e = service_error(s.del(key(), Some(future), T).await)?;
    assert_eq!(e, "FencingTokenSkew");
    assert_eq!(s.get(key(), T).await?.response, Some(b"3".to_vec()));
    // The current token deletes; the key (and its token) are gone.
    assert_eq!(
        s.vdel(key(), b"3".to_vec(), Some(new.clone()), T)
            .await?
            .response,
        1
    );
    assert!(s.set(key(), b"free".to_vec(), T, None, d()).await?.response);
    Ok(())
}

#[tokio::test]
async fn keynotify_reports_set_delete_and_expiry_in_order() -> Result<()> {
    let b = broker().await?;
    let watcher = App::connect(&b, "watcher").await?;
    let writer = App::connect(&b, "writer").await?;
    let mut obs = watcher.store.observe(b"k".to_vec(), T).await?.response;
    let w = &writer.store;
    let d = SetOptions::default;
    w.set(b"k".to_vec(), b"v1".to_vec(), T, None, d()).await?;
    w.set(b"k".to_vec(), b"v2".to_vec(), T, None, d()).await?;
    w.del(b"k".to_vec(), None, T).await?;
    let px = set(
        SetCondition::Unconditional,
        Some(Duration::from_millis(200)),
    );
    w.set(b"k".to_vec(), b"v3".to_vec(), T, None, px).await?;
    let want = [
        Operation::Set(b"v1".to_vec()),
        Operation::Set(b"v2".to_vec()),
        Operation::Del,
        Operation::Set(b"v3".to_vec()),
        Operation::Del,
    ];
    let mut last: Option<HybridLogicalClock> = None;
    for op in want {
        let (n, _) = tokio::time::timeout(WAIT, obs.recv_notification())
            .await?
            .context("observation closed")?;
        assert_eq!(n.key, b"k".to_vec());
        assert_eq!(n.operation, op);
        if let Some(prev) = &last {
            let order = (n.version.timestamp, n.version.counter) > (prev.timestamp, prev.counter);
            assert!(order, "versions increase: {prev} then {}", n.version);
        }
        last = Some(n.version);
    }
    assert!(watcher.store.unobserve(b"k".to_vec(), T).await?.response);
    Ok(())
}

#[tokio::test]
async fn two_clients_contend_for_a_lock_and_leadership_moves_on_disconnect() -> Result<()> {
    let b = broker().await?;
    let a = App::connect(&b, "node-a").await?;
    let c = App::connect(&b, "node-b").await?;
    let lock_a = lock::Client::new(Arc::clone(&a.store), b"leader".to_vec(), b"node-a".to_vec())?;
    let lock_b = lock::Client::new(Arc::clone(&c.store), b"leader".to_vec(), b"node-b".to_vec())?;
    let expiry = Duration::from_secs(2);
    let renew = Some(Duration::from_millis(500));

    let token_a = lock_a.lock(expiry, T, renew).await?;
    let b_waits = tokio::spawn(async move {
        let token = lock_b.lock(expiry, T, renew).await;
        (lock_b, token)
    });
    // Held and renewed by A for longer than its expiry: B keeps waiting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!b_waits.is_finished(), "B acquired a lock A holds");
    let holder = a.store.get(b"leader".to_vec(), T).await?.response;
    assert_eq!(holder, Some(b"node-a".to_vec()));

    // A releases: B gets it, with a newer fencing token.
    lock_a.unlock(T).await?;
    let (lock_b, token_b) = tokio::time::timeout(WAIT, b_waits).await??;
    let token_b = token_b?;
    assert!((token_b.timestamp, token_b.counter) > (token_a.timestamp, token_a.counter));

    // A waits again; B, the leader, disconnects without releasing: the lease expires and A
    // takes over.
    let a_waits = tokio::spawn(async move { lock_a.lock(expiry, T, renew).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!a_waits.is_finished());
    drop(lock_b);
    c.exit.force_exit();
    let token = tokio::time::timeout(WAIT, a_waits).await???;
    assert!((token.timestamp, token.counter) > (token_b.timestamp, token_b.counter));
    let holder = a.store.get(b"leader".to_vec(), T).await?.response;
    assert_eq!(holder, Some(b"node-a".to_vec()));
    let _ = a.exit.try_exit();
    Ok(())
}
