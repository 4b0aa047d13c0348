//! The periodic re-reads of the configuration folder, off the runtime's worker threads.
//!
//! Each reload loop (listeners, dataflows, devices and assets, log level) keeps a
//! [`Folder`]: the folder is parsed only when one of its manifests changed, and then on
//! the blocking pool, so a large folder never stalls the broker's connections (a 622 kB
//! Asset manifest parsed on a worker every 5 s held both workers for up to 180 ms).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use edgeplane_config::{Config, ConfigErrors, FolderWatch};

pub struct Folder(Arc<Mutex<FolderWatch>>);

impl Folder {
    pub fn new(dir: &Path) -> Self {
        Folder(Arc::new(Mutex::new(FolderWatch::new(dir))))
    }

    /// The folder loaded again if a manifest changed since the last time; `None` if none
    /// did.
    pub async fn changed(&self) -> Option<Result<Config, ConfigErrors>> {
        let watch = Arc::clone(&self.0);
        let load = move || {
            watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .load_if_changed()
        };
        match tokio::task::spawn_blocking(load).await {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, "reading the configuration folder failed");
                None
            }
        }
    }
}
