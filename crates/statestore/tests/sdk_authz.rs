//! State store authorization as the official Azure IoT Operations SDK sees it: an SDK client
//! on a port whose policy grants Read on `sensor/*` and ReadWrite on its own
//! `clients/{principal.clientId}/*` gets values and `+OK` where granted and
//! `ServiceError::NotAuthorized` elsewhere, over a real MQTT v5 connection.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use azure_iot_operations_mqtt::aio::connection_settings::MqttConnectionSettingsBuilder;
use azure_iot_operations_mqtt::session::{Session, SessionOptionsBuilder};
use azure_iot_operations_protocol::application::ApplicationContextBuilder;
use azure_iot_operations_services::state_store::{self, ErrorKind, ServiceError, SetOptions};
use edgeplane_broker::auth::{Authorization, ListenerAuth};
use edgeplane_broker::{Broker, ListenerSpec, Protocol, Settings};
use edgeplane_statestore::{StateStore, StateStoreSettings};

const T: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(10);

fn policy() -> Result<Authorization> {
    let spec = serde_json::json!({"authorizationPolicies": {"rules": [
        {"principals": {"clientIds": ["sdk-app"]},
         "brokerResources": [
            {"method": "Connect"},
            {"method": "Publish", "topics": [edgeplane_statestore::REQUEST_TOPIC]},
            {"method": "Subscribe", "topics": [
                "clients/{principal.clientId}/#",
                "clients/statestore/v1/FA9AE35F-2F64-47CD-9BFF-08E2B32A0FE8/#"]}],
         "stateStoreResources": [
            {"method": "Read", "keyType": "Pattern", "keys": ["sensor/*"]},
            {"method": "ReadWrite", "keyType": "Pattern", "keys": ["clients/{principal.clientId}/*"]}]}]}});
    Authorization::from_spec(&spec).map_err(|e| anyhow::anyhow!("policy: {e:?}"))
}

fn not_authorized(r: Result<impl std::fmt::Debug, state_store::Error>) -> Result<()> {
    match r {
        Err(e) => match e.kind() {
            ErrorKind::ServiceError(ServiceError::NotAuthorized) => Ok(()),
            other => bail!("expected NotAuthorized, got {other:?}"),
        },
        Ok(v) => bail!("expected NotAuthorized, got {v:?}"),
    }
}

#[tokio::test]
async fn sdk_client_is_refused_where_no_rule_grants() -> Result<()> {
    let listener = ListenerSpec {
        name: "secured".into(),
        bind: "127.0.0.1:0".parse()?,
        protocol: Protocol::Mqtt,
        tls: None,
        auth: Arc::new(ListenerAuth::new(None, Some(policy()?))),
        limits: Default::default(),
    };
    let settings = Settings {
        sys_interval: None,
        ..Settings::default()
    };
    let broker = Broker::start(settings, vec![listener]).await?;
    let port = broker.addr(Protocol::Mqtt).map(|a| a.port());
    let Some(port) = port else {
        bail!("no MQTT listener");
    };
    let handle = StateStore::start(&broker, StateStoreSettings::default()).await?;
    handle
        .set(
            "sensor/t1",
            "21.5",
            edgeplane_statestore::SetOptions::default(),
        )
        .await?;
    handle
        .set(
            "clients/other/x",
            "theirs",
            edgeplane_statestore::SetOptions::default(),
        )
        .await?;

    let connection = MqttConnectionSettingsBuilder::default()
        .client_id("sdk-app")
        .hostname("127.0.0.1")
        .tcp_port(port)
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

    let got = store.get(b"sensor/t1".to_vec(), T).await?;
    assert_eq!(got.response, Some(b"21.5".to_vec()));
    not_authorized(
        store
            .set(
                b"sensor/t1".to_vec(),
                b"0".to_vec(),
                T,
                None,
                SetOptions::default(),
            )
            .await,
    )?;
    not_authorized(store.del(b"sensor/t1".to_vec(), None, T).await)?;
    not_authorized(store.get(b"clients/other/x".to_vec(), T).await)?;
    let own = b"clients/sdk-app/k".to_vec();
    let r = store
        .set(
            own.clone(),
            b"mine".to_vec(),
            T,
            None,
            SetOptions::default(),
        )
        .await?;
    assert!(r.response);
    assert_eq!(store.get(own, T).await?.response, Some(b"mine".to_vec()));
    // The refusals changed nothing.
    let kept = handle.get("sensor/t1").await?.map(|v| v.value);
    assert_eq!(kept.as_deref(), Some(&b"21.5"[..]));

    let _ = exit.try_exit();
    Ok(())
}
