//! Logging set-up for the binary: a tracing subscriber writing human-readable or JSON lines
//! to standard error, behind a filter that can be replaced while the process runs.
//!
//! The filter comes from `RUST_LOG` when it is set, else from the Broker resource's
//! `diagnostics.logs.level` (a tracing filter such as `info` or
//! `warn,edgeplane_broker=debug`), else `info`. Without `RUST_LOG`, [`follow_config`]
//! re-reads that field from the configuration folder and swaps the filter through a
//! `tracing_subscriber::reload` layer when it changes: no restart, connected clients stay.
//!
//! The filter applies to the log lines only: when traces are exported, the
//! [`crate::traces`] layer sees the Edgeplane crates' spans whatever the log level.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// How often the configuration folder is re-read for a changed log level.
const RELOAD_PERIOD: Duration = Duration::from_secs(2);

/// The level applied when neither `RUST_LOG` nor the Broker resource sets one.
const DEFAULT_LEVEL: &str = "info";

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Replaces the running filter; `None` when `RUST_LOG` decides (it is never overridden).
pub struct LevelControl {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// The filter text in force, as configured.
    current: String,
}

/// Install the global subscriber with `level` (from the Broker resource) unless `RUST_LOG`
/// is set; with `spans`, closed spans are queued there for the OTLP trace export.
pub fn init(
    level: Option<&str>,
    format: LogFormat,
    spans: Option<&Arc<crate::traces::Spans>>,
) -> LevelControl {
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_decides = from_env.is_some();
    let current = level.unwrap_or(DEFAULT_LEVEL).to_owned();
    let filter = from_env.unwrap_or_else(|| {
        EnvFilter::try_new(&current).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL))
    });
    let (filter, handle) = reload::Layer::new(filter);
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    match format {
        LogFormat::Text => registry
            .with(lines.with_filter(filter))
            .with(spans.map(|s| s.layer()))
            .init(),
        LogFormat::Json => registry
            .with(lines.json().with_filter(filter))
            .with(spans.map(|s| s.layer()))
            .init(),
    }
    LevelControl {
        handle: (!env_decides).then_some(handle),
        current,
    }
}

impl LevelControl {
    /// Apply `level` (absent: the default) if it differs from the filter in force. An
    /// invalid filter is refused with a warning and the current one kept.
    pub fn set(&mut self, level: Option<&str>) {
        let Some(handle) = &self.handle else {
            return;
        };
        let wanted = level.unwrap_or(DEFAULT_LEVEL);
        if wanted == self.current {
            return;
        }
        match EnvFilter::try_new(wanted) {
            Ok(filter) => match handle.reload(filter) {
                Ok(()) => {
                    tracing::info!(from = %self.current, to = %wanted, "log level changed (Broker diagnostics.logs.level)");
                    self.current = wanted.to_owned();
                }
                Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
            },
            Err(e) => {
                tracing::warn!(level = %wanted, error = %e, "Broker diagnostics.logs.level is not a valid filter; the log level stays {}", self.current);
                // Warn once per new value, not at every re-read.
                self.current = wanted.to_owned();
            }
        }
    }

    /// Keep following `diagnostics.logs.level` in `dir`, re-read every 2 s (nothing to do
    /// when `RUST_LOG` decides). An invalid folder changes nothing; the listeners' reload
    /// reports it.
    pub fn follow_config(mut self, dir: PathBuf) {
        if self.handle.is_none() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_PERIOD);
            tick.tick().await;
            let folder = crate::folder::Folder::new(&dir);
            loop {
                tick.tick().await;
                if let Some(Ok(config)) = folder.changed().await {
                    self.set(config.broker.log_level.as_deref());
                }
            }
        });
    }
}
