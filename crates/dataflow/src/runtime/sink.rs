//! Destinations of a dataflow. Each takes a message and answers with an [`Accepted`]
//! that resolves once the destination has it for good: the local broker has routed it
//! (and stored it, with a data folder), the remote broker has sent PUBACK, or the batch
//! file holding it is written and synced. Only then is the source message acknowledged.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edgeplane_broker::LocalClient;
use edgeplane_codec::Publish;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use super::mqtt::MqttLink;
use crate::resources::{FileFormat, FilesPlan};

/// Resolves when the destination holds the message; `Err` only if the destination task
/// is gone (shutdown), in which case the source message stays unacknowledged.
pub enum Accepted {
    Now,
    Later(oneshot::Receiver<()>),
}

impl Accepted {
    pub async fn wait(self) -> Result<(), ()> {
        match self {
            Accepted::Now => Ok(()),
            Accepted::Later(rx) => rx.await.map_err(|_| ()),
        }
    }
}

pub enum Sink {
    Local(LocalClient),
    Remote(MqttLink),
    Files(mpsc::Sender<(Vec<u8>, oneshot::Sender<()>)>),
}

impl Sink {
    /// Hand over one message; waits while the destination is full or unreachable.
    pub async fn send(&mut self, publish: Publish) -> Option<Accepted> {
        match self {
            Sink::Local(client) => {
                client.publish(publish).await.ok()?;
                Some(Accepted::Now)
            }
            Sink::Remote(link) => link.publish(publish).await.map(Accepted::Later),
            Sink::Files(tx) => {
                let line = json_line(&publish.payload);
                let (done, rx) = oneshot::channel();
                tx.send((line, done)).await.ok()?;
                Some(Accepted::Later(rx))
            }
        }
    }
}

/// The payload as one line of JSON: itself if it is JSON, else as a JSON string.
fn json_line(payload: &[u8]) -> Vec<u8> {
    let mut line = match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => serde_json::to_vec(&v).unwrap_or_default(),
        Err(_) => serde_json::to_vec(&String::from_utf8_lossy(payload)).unwrap_or_default(),
    };
    line.push(b'\n');
    line
}

/// Start the writer of a LocalStorage destination: batches become files
/// `<folder>/<unix ms>-<n>.jsonl` (or `.parquet`), written under a temporary name, synced,
/// then renamed, so a reader never sees half a batch.
pub fn start_files(plan: &FilesPlan, folder: PathBuf) -> Sink {
    let (tx, rx) = mpsc::channel(plan.max_messages.clamp(1, 65_536));
    tokio::spawn(write_files(
        rx,
        folder,
        plan.latency,
        plan.max_messages.max(1),
        plan.format,
    ));
    Sink::Files(tx)
}

async fn write_files(
    mut rx: mpsc::Receiver<(Vec<u8>, oneshot::Sender<()>)>,
    folder: PathBuf,
    latency: Duration,
    max_messages: usize,
    format: FileFormat,
) {
    let mut sequence = 0u64;
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + latency;
        while batch.len() < max_messages {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => batch.push(item),
                Ok(None) | Err(_) => break,
            }
        }
        sequence += 1;
        let mut backoff = Duration::from_millis(100);
        let data: Arc<Vec<u8>> = Arc::new(match format {
            FileFormat::JsonLines => batch.iter().flat_map(|(l, _)| l.iter().copied()).collect(),
            FileFormat::Parquet => {
                let records: Vec<serde_json::Value> = batch
                    .iter()
                    .filter_map(|(l, _)| serde_json::from_slice(l).ok())
                    .collect();
                match super::parquet::encode(&records) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        // Not an I/O problem: retrying cannot help, and holding the batch
                        // would stop the dataflow. Report it and keep the batch as JSON lines.
                        tracing::error!(folder = %folder.display(), error = %e, "cannot encode a Parquet batch; writing it as JSON lines");
                        batch.iter().flat_map(|(l, _)| l.iter().copied()).collect()
                    }
                }
            }
        });
        let extension = match format {
            FileFormat::Parquet if data.starts_with(b"PAR1") => "parquet",
            _ => "jsonl",
        };
        // A failed write (full disk, missing permission) is retried: the source messages
        // stay unacknowledged meanwhile, so nothing is lost.
        loop {
            let (dir, bytes) = (folder.clone(), Arc::clone(&data));
            let result =
                tokio::task::spawn_blocking(move || write_batch(&dir, sequence, extension, &bytes))
                    .await
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            let Err(e) = result else { break };
            tracing::warn!(folder = %folder.display(), error = %e, "cannot write dataflow output file; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        for (_, done) in batch {
            let _ = done.send(());
        }
    }
}

fn write_batch(
    folder: &std::path::Path,
    sequence: u64,
    extension: &str,
    data: &[u8],
) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(folder)?;
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let name = format!("{ms:013}-{sequence:06}.{extension}");
    let tmp = folder.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(data)?;
    file.sync_data()?;
    drop(file);
    std::fs::rename(&tmp, folder.join(&name))?;
    // The rename is durable once the folder is synced.
    std::fs::File::open(folder)?.sync_all()
}
