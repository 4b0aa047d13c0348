//! `edgeplane dataflow test` and the dataflow wiring of `edgeplane run` / `validate`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use edgeplane_config::{Config, ConfigErrors};
use edgeplane_dataflow::dry_run;
use edgeplane_dataflow::resources::{self, Plan};
use edgeplane_dataflow::runtime::{Applied, Dataflows};
use edgeplane_dataflow::Datasets;

#[derive(Subcommand)]
pub enum DataflowCommand {
    /// Run a dataflow on sample messages and print each output, or why it was dropped.
    Test {
        /// A manifest with the Dataflow (and any DataflowEndpoint, DataflowProfile, Secret
        /// it uses), or a configuration folder.
        file: PathBuf,
        /// Sample messages, one JSON per line: the payload itself, or
        /// {"topic": ..., "payload": ..., "userProperties": {...}}.
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Which Dataflow of the file to run (needed when it holds several).
        #[arg(long)]
        name: Option<String>,
        /// Topic of samples that do not name one.
        #[arg(long, default_value = "sample")]
        topic: String,
        /// An enrichment dataset: KEY=FILE, the JSON-lines records stored under state
        /// store key KEY (repeatable).
        #[arg(long = "dataset", value_name = "KEY=FILE")]
        datasets: Vec<String>,
    },
}

/// How often the configuration folder is read again for changed dataflows.
const RELOAD_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// Keep the running dataflows those of the configuration folder: it is read again every
/// few seconds, and dataflows added, changed (including their endpoints, profile and the
/// secrets those use) or removed are started, restarted or stopped. An invalid folder
/// changes nothing and is reported once per change.
pub fn keep_applied(dir: Option<PathBuf>, data_dir: Option<PathBuf>, mut flows: Dataflows) {
    tokio::spawn(async move {
        let Some(dir) = dir else {
            // No folder to follow: the dataflows run until shutdown.
            std::future::pending::<()>().await;
            drop(flows);
            return;
        };
        let mut tick = tokio::time::interval(RELOAD_PERIOD);
        tick.tick().await;
        let mut last_error = String::new();
        let folder = crate::folder::Folder::new(&dir);
        loop {
            tick.tick().await;
            let Some(loaded) = folder.changed().await else {
                continue;
            };
            let plans = loaded.and_then(|config| resources::plans(&config, data_dir.as_deref()));
            match plans {
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        tracing::warn!(dir = %dir.display(), errors = %text, "configuration changed but is invalid; dataflows unchanged");
                        last_error = text;
                    }
                }
                Ok(plans) => {
                    last_error.clear();
                    let applied = flows.apply(plans);
                    if applied != Applied::default() {
                        tracing::info!(started = ?applied.started, restarted = ?applied.restarted, stopped = ?applied.stopped, "dataflows reloaded");
                    }
                }
            }
        }
    });
}

/// The runnable dataflows of a loaded configuration, or every error in them.
pub fn plans(config: &Config, data_dir: Option<&Path>) -> Result<Vec<Plan>, ConfigErrors> {
    resources::plans(config, data_dir)
}

pub fn run(command: &DataflowCommand) -> ExitCode {
    let DataflowCommand::Test {
        file,
        input,
        name,
        topic,
        datasets,
    } = command;
    match test(file, input, name.as_deref(), topic, datasets) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn test(
    file: &Path,
    input: &Path,
    name: Option<&str>,
    topic: &str,
    dataset_args: &[String],
) -> anyhow::Result<()> {
    let config = if file.is_dir() {
        edgeplane_config::load_dir(file)
    } else {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        edgeplane_config::load_str(&file.display().to_string(), &text)
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let plans = resources::plans(&config, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plan = match (name, plans.as_slice()) {
        (Some(n), _) => plans.iter().find(|p| p.name == n).ok_or_else(|| {
            anyhow::anyhow!("no enabled Dataflow named {n} in {}", file.display())
        })?,
        (None, [one]) => one,
        (None, []) => anyhow::bail!("{} holds no enabled Dataflow", file.display()),
        (None, _) => anyhow::bail!(
            "{} holds several Dataflows ({}); choose one with --name",
            file.display(),
            plans
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut datasets = Datasets::new();
    for arg in dataset_args {
        let (key, path) = arg
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--dataset {arg}: write it as KEY=FILE"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read dataset {path}: {e}"))?;
        datasets
            .set_json_lines(key, &text)
            .map_err(|e| anyhow::anyhow!("dataset {path}: {e}"))?;
    }
    let samples = std::fs::read_to_string(input)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input.display()))?;
    for (i, result) in dry_run::run(plan, &samples, topic, &datasets)
        .iter()
        .enumerate()
    {
        println!("{}: {result}", i + 1);
    }
    Ok(())
}
