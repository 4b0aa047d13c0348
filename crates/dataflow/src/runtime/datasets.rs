//! Enrichment datasets for a running dataflow: read from the state store at start and again
//! on each KEYNOTIFY notification of their keys, published to the instances as a
//! `watch` of [`Datasets`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use edgeplane_broker::{LocalError, LocalFactory, LocalOptions};
use edgeplane_codec::{QoS, SubOptions};
use edgeplane_statestore::StateStoreHandle;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dataset::{parse_json_lines, Datasets};
use crate::resources::Plan;
use crate::BuiltInTransformation;

/// Keep the datasets a plan's transform reads fresh: read each key from the state store
/// at start, then again whenever a KEYNOTIFY notification says it changed. The watcher is
/// an in-process client, so its registrations end with it, as a network client's would.
pub(super) fn start_datasets(
    plan: &Plan,
    broker: &LocalFactory,
    store: Option<StateStoreHandle>,
) -> (watch::Receiver<Arc<Datasets>>, Option<JoinHandle<()>>) {
    let (tx, rx) = watch::channel(Arc::new(Datasets::new()));
    let keys: Vec<String> = plan
        .transform
        .as_ref()
        .and_then(|t| BuiltInTransformation::compile(t).ok())
        .map(|t| t.dataset_keys().map(str::to_owned).collect())
        .unwrap_or_default();
    let (Some(store), false) = (store, keys.is_empty()) else {
        return (rx, None);
    };
    let name = plan.name.clone();
    let broker = broker.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match watch_datasets(&name, &broker, &store, &keys, &tx).await {
                Ok(()) => return, // shutting down
                Err(e) => {
                    tracing::warn!(dataflow = %name, error = %e, "enrichment datasets cannot be watched; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
    (rx, Some(task))
}

async fn watch_datasets(
    name: &str,
    broker: &LocalFactory,
    store: &StateStoreHandle,
    keys: &[String],
    tx: &watch::Sender<Arc<Datasets>>,
) -> Result<(), String> {
    let client_id = format!("edgeplane-dataflow-{name}-datasets");
    let mut client = match broker.attach(LocalOptions::new(client_id.clone())).await {
        Ok(c) => c,
        Err(LocalError::Closed) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    for key in keys {
        let topic = edgeplane_statestore::notification_topic(&client_id, key.as_bytes());
        client
            .subscribe(&topic, SubOptions::new(QoS::AtLeastOnce))
            .await
            .map_err(|e| e.to_string())?;
        store
            .keynotify(&client_id, key.clone().into_bytes())
            .await
            .map_err(|e| e.to_string())?;
    }
    // Registered before reading: a change from here on is either read or notified.
    for key in keys {
        refresh(name, store, key, tx).await?;
    }
    while let Some(r) = client.recv().await {
        client.ack(&r).await;
        let changed = keys.iter().find(|k| {
            r.message.topic == edgeplane_statestore::notification_topic(&client_id, k.as_bytes())
        });
        if let Some(key) = changed {
            refresh(name, store, key, tx).await?;
        }
    }
    Ok(())
}

async fn refresh(
    name: &str,
    store: &StateStoreHandle,
    key: &str,
    tx: &watch::Sender<Arc<Datasets>>,
) -> Result<(), String> {
    let found = store
        .get(Bytes::copy_from_slice(key.as_bytes()))
        .await
        .map_err(|e| e.to_string())?;
    let mut next = (**tx.borrow()).clone();
    match found {
        None => {
            next.remove(key);
        }
        Some(v) => match parse_json_lines(&String::from_utf8_lossy(&v.value)) {
            Ok(records) => next.set(key.to_owned(), records),
            Err(e) => {
                tracing::warn!(dataflow = %name, key = %key, error = %e, "enrichment dataset is not JSON lines; keeping the previous records");
                return Ok(());
            }
        },
    }
    tracing::debug!(dataflow = %name, key = %key, "enrichment dataset refreshed");
    let _ = tx.send(Arc::new(next));
    Ok(())
}
