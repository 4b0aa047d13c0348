//! The `edgeplane` binary: parse arguments, set up logging, load configuration, and hand
//! over to the libraries. Wiring only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edgeplane_broker::{Broker, ListenerSpec, Protocol, Settings};
use edgeplane_portal::{Listen, Portal, Readiness};

#[derive(Parser)]
#[command(
    name = "edgeplane",
    version,
    about = "The open industrial edge data plane"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. Without --config it serves MQTT on 127.0.0.1:1883 only.
    Run {
        /// Folder of YAML resource manifests (Broker, BrokerListener, ConfigMap, Secret).
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        /// Address of the HTTP server: /healthz, /readyz and /metrics.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
        http: SocketAddr,
        /// Address serving /metrics alone, for Prometheus. The Broker resource's
        /// diagnostics.metrics.prometheusPort, when set, replaces its port.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS)]
        metrics: SocketAddr,
    },
    /// Check a configuration folder and report every error at once.
    Validate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Mosquitto 2's safe default: anonymous MQTT on loopback only.
const DEFAULT_LISTEN: &str = "127.0.0.1:1883";
/// Loopback too: health and metrics are opened wider only on purpose.
const DEFAULT_HTTP: &str = "127.0.0.1:8080";
/// Azure IoT Operations' default `prometheusPort`.
const DEFAULT_METRICS: &str = "127.0.0.1:9600";

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { dir } => validate(&dir),
        Command::Run {
            config,
            http,
            metrics,
        } => {
            init_logging(None);
            match run(config.as_deref(), http, metrics) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgeplane: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(level: Option<&str>) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

fn validate(dir: &Path) -> ExitCode {
    match edgeplane_config::load_dir(dir) {
        Ok(config) => {
            println!(
                "{}: {} resources, no errors",
                dir.display(),
                config.resources.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s) in {}", errors.0.len(), dir.display());
            ExitCode::FAILURE
        }
    }
}

fn run(config_dir: Option<&Path>, http: SocketAddr, metrics: SocketAddr) -> anyhow::Result<()> {
    let (settings, listeners, prometheus_port) = match config_dir {
        None => {
            let bind: SocketAddr = DEFAULT_LISTEN.parse()?;
            let spec = ListenerSpec {
                name: "default".into(),
                bind,
                protocol: Protocol::Mqtt,
            };
            (Settings::default(), vec![spec], None)
        }
        Some(dir) => {
            let config = edgeplane_config::load_dir(dir)
                .map_err(|e| anyhow::anyhow!("invalid configuration in {}:\n{e}", dir.display()))?;
            let listeners: Vec<ListenerSpec> = config
                .listeners
                .iter()
                .map(|p| ListenerSpec {
                    name: p.listener.clone(),
                    bind: p.bind,
                    protocol: p.protocol,
                })
                .collect();
            if listeners.is_empty() {
                anyhow::bail!(
                    "{} declares no BrokerListener port; add one to serve MQTT",
                    dir.display()
                );
            }
            let settings = Settings {
                clients: config.broker.clients,
                ..Settings::default()
            };
            (settings, listeners, config.broker.prometheus_port)
        }
    };
    let http = Listen {
        addr: http,
        origin: "--http".into(),
    };
    let metrics = match prometheus_port {
        None => Listen {
            addr: metrics,
            origin: "--metrics".into(),
        },
        Some(port) => Listen {
            addr: SocketAddr::new(metrics.ip(), port),
            origin: "the --metrics host and Broker diagnostics.metrics.prometheusPort".into(),
        },
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Run woken tasks in wake-up order: with the LIFO slot, of two sockets that became
    // readable together the later one's task runs first, so a PUBLISH that arrived just after
    // another client's SUBSCRIBE would overtake it.
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let readiness = Readiness::default();
        let serving = readiness.register("broker", "starting");
        let broker = Broker::start(settings, listeners).await?;
        let _portal = Portal::start(&http, &metrics, broker.stats_handle(), readiness).await?;
        serving.ready();
        wait_for_signal().await;
        tracing::info!("shutting down");
        serving.not_ready("shutting down");
        broker.shutdown(Duration::from_secs(5)).await;
        Ok(())
    })
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
