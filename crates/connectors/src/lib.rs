//! Connectors: they turn the registry's assets into MQTT messages on the local broker.
//!
//! The contract every connector keeps (OPC UA is the first):
//! - **Configuration in**: the [`Registry`]'s devices and assets, re-read whenever its change
//!   counter moves (an API call, a changed configuration folder); only what changed is
//!   restarted.
//! - **Data out**: messages published through one in-process broker session
//!   ([`LocalFactory::attach`]), so they are routed, queued and persisted like any client's.
//! - **Health out**: status per device endpoint and per asset, written to the registry in
//!   words a user can act on.
//!
//! [`OpcUaConnector`] runs one [`edgeplane_opcua::client::Connection`] per device endpoint
//! that enabled assets use (see [`plan`]), its datasets spread over one or more OPC UA
//! sessions (the endpoint's `sessionCount`, by default one per core up to 4) and reported
//! as one status; its datasets' notifications go
//! through [`edgeplane_opcua::payload::DatasetFrames`] (Azure IoT Operations' payload and
//! CloudEvents properties) to each dataset's destination topic, by default
//! `<namespace>/data/<asset>`.

pub mod plan;
mod session;
mod stages;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgeplane_broker::{LocalError, LocalFactory, LocalOptions};
use edgeplane_opcua::client::Backoff;
use edgeplane_registry::{ConnectionState, Registry};
use edgeplane_statestore::StateStoreHandle;
use tokio::task::JoinHandle;

use crate::plan::Plans;
use crate::session::{Running, Sinks};

/// The in-process client id of the OPC UA connector.
pub const CLIENT_ID: &str = "$edgeplane-opcua-connector";

/// Settings shared by every session.
#[derive(Debug, Clone)]
pub struct OpcUaSettings {
    /// PKI directory: the application instance certificate (created on first start), the
    /// trusted and the rejected server certificates.
    pub pki_dir: PathBuf,
    /// Backoff between connection attempts.
    pub reconnect: Backoff,
    /// How often a session checks the server is alive.
    pub keep_alive_interval: Duration,
    /// Timeout of each OPC UA request.
    pub request_timeout: Duration,
}

impl OpcUaSettings {
    /// Defaults: reconnect after 1 s doubling to 30 s, keep-alive every 5 s.
    pub fn new(pki_dir: PathBuf) -> Self {
        OpcUaSettings {
            pki_dir,
            reconnect: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
            },
            keep_alive_interval: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The OPC UA connector.
pub struct OpcUaConnector {
    task: JoinHandle<()>,
}

impl OpcUaConnector {
    /// Attach the connector's broker session and start serving the registry's assets.
    ///
    /// # Errors
    /// The broker refused the in-process session (it is shutting down).
    pub async fn start(
        registry: Registry,
        broker: &LocalFactory,
        settings: OpcUaSettings,
        state_store: Option<StateStoreHandle>,
    ) -> Result<OpcUaConnector, LocalError> {
        let client = Arc::new(broker.attach(LocalOptions::new(CLIENT_ID)).await?);
        let sinks = Sinks::new(client, state_store);
        let task = tokio::spawn(supervise(registry, sinks, settings));
        Ok(OpcUaConnector { task })
    }
}

impl Drop for OpcUaConnector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reconcile the running sessions with the registry after every change.
async fn supervise(registry: Registry, sinks: Sinks, settings: OpcUaSettings) {
    let mut changes = registry.changes();
    let mut running: BTreeMap<(String, String), Running> = BTreeMap::new();
    loop {
        changes.borrow_and_update();
        let Plans {
            endpoints,
            idle_assets,
            idle_endpoints,
        } = plan::plan(&registry.snapshot());
        let stale: Vec<(String, String)> = running
            .iter()
            .filter(|(key, r)| endpoints.get(*key) != Some(r.plan()))
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(r) = running.remove(&key) {
                tracing::info!(device = %key.0, endpoint = %key.1, "opc ua session reconfigured or removed");
                r.stop().await;
            }
            if !endpoints.contains_key(&key) && !idle_endpoints.contains_key(&key) {
                registry.set_endpoint_status(&key.0, &key.1, ConnectionState::Unused);
            }
        }
        for (key, p) in endpoints {
            if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(key) {
                tracing::info!(device = %p.device, endpoint = %p.endpoint, url = %p.url, assets = ?p.assets, "opc ua session starting");
                slot.insert(Running::start(
                    p,
                    &settings,
                    sinks.clone(),
                    registry.clone(),
                ));
            }
        }
        for (asset, why) in idle_assets {
            let state = why.map_or(ConnectionState::Disabled, ConnectionState::Error);
            registry.set_asset_status(&asset, state);
        }
        for ((device, endpoint), why) in idle_endpoints {
            let state = why.map_or(ConnectionState::Disabled, ConnectionState::Error);
            registry.set_endpoint_status(&device, &endpoint, state);
        }
        if changes.changed().await.is_err() {
            break;
        }
    }
    for (_, r) in running {
        r.stop().await;
    }
}
