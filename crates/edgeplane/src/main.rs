//! The `edgeplane` binary: parse arguments, set up logging, load configuration, and hand
//! over to the libraries. Wiring only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edgeplane_broker::selfcheck::SelfCheckSettings;
use edgeplane_broker::{Broker, ListenerSpec, Protocol, Settings};
use edgeplane_portal::{Listen, Portal, Readiness, Services, SessionLifetime};
use logging::LogFormat;

mod certs;
mod dataflow;
mod folder;
mod listeners;
mod logging;
mod opcua;
mod otlp;
mod passwd;
mod state;
mod status;
mod store;
mod traces;

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
    /// Run the broker. Without --config it serves MQTT on 127.0.0.1:1883 only, beside
    /// health and metrics on loopback.
    Run {
        /// Folder of YAML resource manifests (Broker, BrokerListener, ConfigMap, Secret).
        #[arg(long, value_name = "DIR")]
        config: Option<PathBuf>,
        /// Folder of the durable store: sessions, queued messages and retained messages
        /// survive a crash or restart (what is kept follows the Broker's `persistence`;
        /// everything by default). Without it, state lives in memory only.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address of the HTTP server: /healthz, /readyz and /metrics.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
        http: SocketAddr,
        /// Address serving /metrics alone, for Prometheus. The Broker resource's
        /// diagnostics.metrics.prometheusPort, when set, replaces its port.
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_METRICS)]
        metrics: SocketAddr,
        /// Log lines as text for people or JSON for collectors. The level comes from
        /// RUST_LOG, else the Broker resource's diagnostics.logs.level, else info.
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
        /// How long a portal session lasts after sign-in, in seconds (1 to 2592000).
        #[arg(long, value_name = "SECONDS", default_value = "28800")]
        session_lifetime: SessionLifetime,
    },
    /// Check or repair the durable store of a stopped broker.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Try dataflows on sample messages.
    Dataflow {
        #[command(subcommand)]
        command: dataflow::DataflowCommand,
    },
    /// Run an OPC UA server simulator (like Microsoft's OPC PLC) for demos and tests.
    OpcuaSim(opcua::SimArgs),
    /// The OPC UA connector's trust list: rejected server certificates, trusting them.
    Opcua {
        #[command(subcommand)]
        command: opcua::OpcuaCommand,
    },
    /// Check a configuration folder and report every error at once.
    Validate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// One screen of health for a running instance, from its HTTP API.
    Status {
        /// HTTP address of the instance (its --http).
        #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP)]
        http: SocketAddr,
    },
    /// Read and change the state store of a running broker.
    State {
        /// MQTT address of the broker.
        #[arg(long, default_value = DEFAULT_LISTEN, global = true)]
        broker: SocketAddr,
        #[command(subcommand)]
        command: state::StateCommand,
    },
    /// Add or change a user of a password Secret manifest (the password is read from
    /// standard input and stored only as an argon2id hash).
    Passwd {
        /// The Secret manifest to create or update (inside the configuration folder).
        file: PathBuf,
        /// User name.
        user: String,
        /// Name of the Secret, for `usernamePasswordSettings.passwordFileSecretRef`.
        #[arg(long, default_value = "edgeplane-passwords")]
        secret: String,
    },
    /// Create a local CA, a server certificate and client certificates as manifests
    /// (Secrets, ConfigMap) and PEM files, ready for TLS listeners.
    Certs {
        /// Folder to write to (usually the configuration folder).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Name of the server certificate's Secret, for `tls.manual.secretRef`.
        #[arg(long, default_value = "edgeplane-server-tls")]
        secret: String,
        /// DNS names and IP addresses the server is reached at.
        #[arg(long = "name", value_name = "DNS|IP", default_values = ["localhost", "127.0.0.1"])]
        names: Vec<String>,
        /// Issue a client certificate with this common name (repeatable).
        #[arg(long = "client", value_name = "CN")]
        clients: Vec<String>,
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
        Command::Dataflow { command } => dataflow::run(&command),
        Command::OpcuaSim(args) => {
            logging::init(None, LogFormat::Text, None);
            opcua::sim(&args)
        }
        Command::Opcua { command } => opcua::command(&command),
        Command::Store { command } => store::run(&command),
        Command::Status { http } => client_command(status::run(http)),
        Command::State { broker, command } => client_command(state::run(broker, command)),
        Command::Passwd { file, user, secret } => match passwd::run(&file, &secret, &user) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgeplane: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Certs {
            out,
            secret,
            names,
            clients,
        } => {
            let request = certs::Request {
                out: &out,
                server_secret: &secret,
                names: &names,
                clients: &clients,
            };
            match certs::write(&request) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgeplane: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            data_dir,
            http,
            metrics,
            log_format,
            session_lifetime,
        } => {
            // The level may come from the Broker resource; configuration errors themselves
            // are reported by `run` below.
            let loaded = config
                .as_deref()
                .and_then(|d| edgeplane_config::load_dir(d).ok());
            let level = loaded.as_ref().and_then(|c| c.broker.log_level.clone());
            // Spans are queued from the first one; the exporter starts with the runtime.
            let trace_export =
                match otlp::trace_settings(loaded.as_ref().map(|c| &c.broker), config.as_deref()) {
                    Ok(t) => t.map(|t| (traces::Spans::new(t.capacity), t)),
                    Err(e) => {
                        eprintln!("edgeplane: {e:#}");
                        return ExitCode::FAILURE;
                    }
                };
            let log_level = logging::init(
                level.as_deref(),
                log_format,
                trace_export.as_ref().map(|t| &t.0),
            );
            match run(
                config.as_deref(),
                data_dir,
                http,
                metrics,
                log_level,
                trace_export,
                session_lifetime,
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("edgeplane: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Run a command that talks to a running instance: exit status 0 on success, 1 for "not
/// found" or "not ready", 2 for an error.
fn client_command(fut: impl std::future::Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("edgeplane: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(fut) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("edgeplane: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn validate(dir: &Path) -> ExitCode {
    match edgeplane_config::load_dir(dir)
        .and_then(|config| dataflow::plans(&config, None).map(|_| config))
    {
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

fn run(
    config_dir: Option<&Path>,
    data_dir: Option<PathBuf>,
    http: SocketAddr,
    metrics: SocketAddr,
    log_level: logging::LevelControl,
    trace_export: Option<(Arc<traces::Spans>, otlp::TraceSettings)>,
    session_lifetime: SessionLifetime,
) -> anyhow::Result<()> {
    let (settings, listeners, prometheus_port, watched, self_check, flows, otlp) = match config_dir
    {
        None => {
            let bind: SocketAddr = DEFAULT_LISTEN.parse()?;
            let spec = ListenerSpec {
                name: "default".into(),
                bind,
                protocol: Protocol::Mqtt,
                tls: None,
                auth: Default::default(),
                limits: Default::default(),
            };
            (
                Settings::default(),
                vec![spec],
                None,
                listeners::Watched::default(),
                Some(SelfCheckSettings::default()),
                Vec::new(),
                otlp::settings(None, None)?,
            )
        }
        Some(dir) => {
            let config = edgeplane_config::load_dir(dir)
                .map_err(|e| anyhow::anyhow!("invalid configuration in {}:\n{e}", dir.display()))?;
            let (listeners, watched) = listeners::from_config(&config, dir)?;
            if listeners.is_empty() {
                anyhow::bail!(
                    "{} declares no BrokerListener port; add one to serve MQTT",
                    dir.display()
                );
            }
            let settings = Settings {
                clients: config.broker.clients,
                persistence: config.broker.persistence.clone().unwrap_or_default(),
                disk_buffer: config.broker.disk_buffer,
                ..Settings::default()
            };
            let self_check = self_check_settings(&config.broker.raw_spec);
            let flows = dataflow::plans(&config, data_dir.as_deref())
                .map_err(|e| anyhow::anyhow!("invalid configuration in {}:\n{e}", dir.display()))?;
            if data_dir.is_none() {
                for flow in flows.iter().filter(|f| f.disk_persistence) {
                    tracing::warn!(dataflow = %flow.name, "requestDiskPersistence is Enabled but there is no --data-dir: what the dataflow has not delivered lives in memory only");
                }
            }
            (
                settings,
                listeners,
                config.broker.prometheus_port,
                watched,
                self_check,
                flows,
                otlp::settings(config.broker.otlp.as_ref(), Some(dir))?,
            )
        }
    };
    let mut settings = settings;
    if data_dir.is_none() {
        tracing::info!("no --data-dir: sessions and retained messages live in memory only");
    }
    let registry_dir = data_dir.clone();
    let state_data_dir = data_dir.clone();
    let state_persistence = settings.persistence.clone();
    settings.data_dir = data_dir;
    let http = Listen {
        addr: http,
        origin: "--http".into(),
    };
    let metrics = metrics_listen(metrics, prometheus_port);
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
        watch_store(&broker, &readiness);
        let state_store = edgeplane_statestore::StateStoreSettings {
            data_dir: state_data_dir.clone(),
            durable_keys: durable_keys(&state_persistence),
            ..Default::default()
        };
        let state = edgeplane_statestore::StateStore::start(&broker, state_store).await?;
        let dataflows = edgeplane_dataflow::runtime::Dataflows::start(
            broker.local_factory(),
            Some(state.clone()),
            flows,
        )
        .await;
        let dataflow_board = dataflows.board();
        dataflow::keep_applied(
            config_dir.map(Path::to_path_buf),
            state_data_dir.clone(),
            dataflows,
        );
        let (registry, _connector) =
            opcua::start(&broker, &state, config_dir, registry_dir.as_deref()).await?;
        if let Some(dir) = config_dir {
            listeners::spawn_reload(dir.to_path_buf(), watched);
            log_level.follow_config(dir.to_path_buf());
        }
        // Listeners are bound. Ready before the portal logs its addresses, so whoever
        // waits for them finds /readyz passing.
        serving.ready();
        if let Some(settings) = self_check {
            // The first probe runs at once; readiness waits for it.
            readiness
                .follow_self_check(broker.start_self_check(settings), settings.timeout)
                .await;
        }
        let services = Services {
            registry,
            broker: Some(broker.local_factory()),
            state: Some(state.clone()),
            dataflows: Some(dataflow_board.clone()),
            config_dir: config_dir.map(Path::to_path_buf),
            data_dir: state_data_dir.clone(),
            pki: Some(opcua::portal_pki(state_data_dir.as_deref())),
            session_lifetime,
        };
        let mut portal = Portal::start_with_services(
            &http,
            &metrics,
            broker.stats_handle(),
            readiness,
            Some(services),
        )
        .await?;
        portal.add_metrics(Arc::new(move |out: &mut String| {
            dataflow_board.render_metrics(out)
        }));
        if let Some(otlp) = otlp {
            portal.export_otlp(otlp);
        }
        if let Some((spans, settings)) = trace_export {
            tracing::info!(url = %settings.collector.url(), interval = ?settings.interval, "exporting traces over otlp");
            let counters = Arc::clone(&spans);
            portal.add_metrics(Arc::new(move |out: &mut String| counters.render_metrics(out)));
            tokio::spawn(traces::export(spans, settings));
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        serving.not_ready("shutting down");
        broker.shutdown(Duration::from_secs(5)).await;
        Ok(())
    })
}

/// The Broker's `persistence.stateStore` policy as the state store applies it.
fn durable_keys(p: &edgeplane_config::Persistence) -> edgeplane_statestore::DurableKeys {
    use edgeplane_config::{PersistMode, StateStoreKey};
    use edgeplane_statestore::{DurableKey, DurableKeys};
    match p.state_store.mode {
        PersistMode::All => DurableKeys::All,
        PersistMode::None => DurableKeys::None,
        PersistMode::Custom => DurableKeys::Matching {
            keys: p
                .state_store
                .keys
                .iter()
                .map(|k| match k {
                    StateStoreKey::Pattern(p) => DurableKey::Glob(p.clone().into_bytes()),
                    StateStoreKey::String(s) => DurableKey::Exact(s.clone().into_bytes()),
                    StateStoreKey::Binary(raw) => DurableKey::Exact(raw.clone()),
                })
                .collect(),
            dynamic: p
                .state_store
                .dynamic
                .then(|| (p.dynamic_key.clone(), p.dynamic_value.clone())),
        },
    }
}

/// Readiness follows the durable store: not ready while it cannot write (disk full, I/O
/// error), since acknowledgements wait until it can.
fn watch_store(broker: &Broker, readiness: &Readiness) {
    let Some(probe) = broker.store_probe() else {
        return;
    };
    let check = readiness.register("store", "starting");
    check.ready();
    tokio::spawn(async move {
        let mut was = None;
        loop {
            let now = probe();
            if now != was {
                match &now {
                    None => check.ready(),
                    Some(why) => check.not_ready(why.clone()),
                }
                was = now;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// `Broker.spec.diagnostics.selfCheck`: `mode` (Enabled by default), `intervalSeconds` (30)
/// and `timeoutSeconds` (15), ranges checked by the configuration loader.
fn self_check_settings(spec: &serde_json::Value) -> Option<SelfCheckSettings> {
    let sc = spec.pointer("/diagnostics/selfCheck");
    if sc
        .and_then(|s| s.get("mode"))
        .and_then(serde_json::Value::as_str)
        == Some("Disabled")
    {
        return None;
    }
    let secs = |field: &str, default: u64| {
        sc.and_then(|s| s.get(field))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(default)
    };
    Some(SelfCheckSettings {
        interval: Duration::from_secs(secs("intervalSeconds", 30)),
        timeout: Duration::from_secs(secs("timeoutSeconds", 15)),
    })
}

/// The metrics address: `--metrics`, with the port replaced by the Broker resource's
/// `diagnostics.metrics.prometheusPort` when it sets one (the host stays the flag's, so a
/// manifest alone never opens metrics beyond loopback).
fn metrics_listen(flag: SocketAddr, prometheus_port: Option<u16>) -> Listen {
    match prometheus_port {
        None => Listen {
            addr: flag,
            origin: "--metrics".into(),
        },
        Some(port) => Listen {
            addr: SocketAddr::new(flag.ip(), port),
            origin: "the --metrics host and Broker diagnostics.metrics.prometheusPort".into(),
        },
    }
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
