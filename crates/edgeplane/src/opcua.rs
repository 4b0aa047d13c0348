//! The OPC UA wiring of the binary: the registry and connector inside `edgeplane run`,
//! `edgeplane opcua-sim`, and `edgeplane opcua trust|rejected` for the connector's trust
//! list.
//!
//! The registry is persisted in the data folder (`registry.json`) and the connector's PKI
//! lives in `<data-dir>/opcua/pki` (application instance certificate, `trusted/`,
//! `rejected/`). Without `--data-dir` both live elsewhere: the registry in memory, the PKI in
//! the system's temporary folder.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use edgeplane_broker::Broker;
use edgeplane_connectors::{OpcUaConnector, OpcUaSettings};
use edgeplane_opcua::client::{rejected_certificates, trust};
use edgeplane_opcua::sim::{NodeRate, Sim, SimConfig, SimSecurity, SimUser};
use edgeplane_registry::Registry;

#[derive(Subcommand)]
pub enum OpcuaCommand {
    /// Trust a server certificate the connector rejected (or any certificate file): the
    /// next connection attempt accepts that server.
    Trust {
        /// A thumbprint (or its unique beginning), a file name in the rejected folder, or a
        /// path to a DER or PEM certificate.
        what: String,
        /// The data folder of `edgeplane run`.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// List the server certificates the connector rejected.
    Rejected {
        /// The data folder of `edgeplane run`.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

/// `edgeplane opcua-sim` options.
#[derive(Args)]
pub struct SimArgs {
    /// Address to listen on (OPC PLC's port is 50000; port 0 picks a free one).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50000")]
    listen: SocketAddr,
    /// Host name in the endpoint URL (default: the listen IP).
    #[arg(long)]
    host_name: Option<String>,
    /// PKI folder: the simulator's certificate (created on first start), trusted and
    /// rejected client certificates.
    #[arg(long, value_name = "DIR", default_value = "opcua-sim-pki")]
    pki_dir: PathBuf,
    /// Fast nodes of each kind (Fast.Counter.<i>, Fast.Random.<i>, Fast.Sine.<i>, ...).
    #[arg(long, default_value_t = 1)]
    fast_nodes: usize,
    /// How often fast nodes change, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    fast_interval_ms: u64,
    /// Slow nodes of each kind.
    #[arg(long, default_value_t = 1)]
    slow_nodes: usize,
    /// How often slow nodes change, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    slow_interval_ms: u64,
    /// How often Special.Events emits an event, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    event_interval_ms: u64,
    /// A user the server accepts, as NAME:PASSWORD (repeatable).
    #[arg(long = "user", value_name = "NAME:PASSWORD")]
    users: Vec<String>,
    /// Refuse anonymous sessions.
    #[arg(long)]
    no_anonymous: bool,
    /// Endpoints to offer (repeatable; default: all three).
    #[arg(long, value_enum)]
    security: Vec<SimSecurityArg>,
    /// Reject client certificates that are not in the PKI folder's trusted list (default:
    /// accept any, like OPC PLC's --aa).
    #[arg(long)]
    reject_untrusted_clients: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimSecurityArg {
    None,
    Sign,
    SignAndEncrypt,
}

pub fn command(command: &OpcuaCommand) -> ExitCode {
    let result = match command {
        OpcuaCommand::Trust { what, data_dir } => {
            trust(&pki_dir(Some(data_dir)), what).map(|path| {
                println!("trusted: {}", path.display());
            })
        }
        OpcuaCommand::Rejected { data_dir } => {
            rejected_certificates(&pki_dir(Some(data_dir))).map(|list| {
                if list.is_empty() {
                    eprintln!("no rejected server certificates");
                }
                for c in list {
                    println!(
                        "{}  {}  {}",
                        c.thumbprint,
                        c.common_name.as_deref().unwrap_or("-"),
                        c.path.display()
                    );
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeplane: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Run the simulator until interrupted.
pub fn sim(args: &SimArgs) -> ExitCode {
    match run_sim(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgeplane: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_sim(args: &SimArgs) -> anyhow::Result<()> {
    let mut users = Vec::new();
    for u in &args.users {
        let (username, password) = u
            .split_once(':')
            .with_context(|| format!("--user {u:?}: write it as NAME:PASSWORD"))?;
        users.push(SimUser {
            username: username.into(),
            password: password.into(),
        });
    }
    let security = if args.security.is_empty() {
        SimConfig::default().security
    } else {
        args.security
            .iter()
            .map(|s| match s {
                SimSecurityArg::None => SimSecurity::None,
                SimSecurityArg::Sign => SimSecurity::Basic256Sha256Sign,
                SimSecurityArg::SignAndEncrypt => SimSecurity::Basic256Sha256SignAndEncrypt,
            })
            .collect()
    };
    let config = SimConfig {
        bind: args.listen,
        host_name: args.host_name.clone(),
        pki_dir: args.pki_dir.clone(),
        fast: NodeRate {
            count: args.fast_nodes,
            interval: Duration::from_millis(args.fast_interval_ms),
        },
        slow: NodeRate {
            count: args.slow_nodes,
            interval: Duration::from_millis(args.slow_interval_ms),
        },
        event_interval: Duration::from_millis(args.event_interval_ms),
        users,
        allow_anonymous: !args.no_anonymous,
        security,
        trust_client_certs: !args.reject_untrusted_clients,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let sim = Sim::start(config).await?;
        tracing::info!(
            endpoint_url = sim.endpoint_url(),
            addr = %sim.local_addr(),
            nodes = sim.nodes().len(),
            "opc ua simulator ready"
        );
        crate::wait_for_signal().await;
        sim.shutdown().await;
        Ok(())
    })
}

/// The connector's rejected certificates and trusting one, for the portal's devices page.
pub fn portal_pki(data_dir: Option<&Path>) -> edgeplane_portal::Pki {
    let dir = pki_dir(data_dir);
    let list_dir = dir.clone();
    edgeplane_portal::Pki {
        list: std::sync::Arc::new(move || {
            rejected_certificates(&list_dir)
                .map(|certs| {
                    certs
                        .into_iter()
                        .map(|c| edgeplane_portal::RejectedCertificate {
                            thumbprint: c.thumbprint,
                            common_name: c.common_name,
                            file: c.path.display().to_string(),
                        })
                        .collect()
                })
                .map_err(|e| e.to_string())
        }),
        trust: std::sync::Arc::new(move |what: &str| {
            trust(&dir, what)
                .map(|p| p.display().to_string())
                .map_err(|e| e.to_string())
        }),
    }
}

/// The connector's PKI folder.
pub fn pki_dir(data_dir: Option<&Path>) -> PathBuf {
    match data_dir {
        Some(d) => d.join("opcua").join("pki"),
        None => std::env::temp_dir().join("edgeplane-opcua-pki"),
    }
}

/// Open the registry (persisted in `data_dir`), load the folder's devices and assets into
/// it and keep them current, and start the OPC UA connector over it.
pub async fn start(
    broker: &Broker,
    state_store: &edgeplane_statestore::StateStoreHandle,
    config_dir: Option<&Path>,
    data_dir: Option<&Path>,
) -> anyhow::Result<(Registry, OpcUaConnector)> {
    let registry = Registry::open(data_dir)?;
    if data_dir.is_none() {
        tracing::info!(
            "no --data-dir: devices and assets created through the API live in memory only"
        );
    }
    if let Some(dir) = config_dir {
        let config = edgeplane_config::load_dir(dir)
            .map_err(|e| anyhow::anyhow!("invalid configuration in {}:\n{e}", dir.display()))?;
        registry.apply_config(&config);
        tokio::spawn(reload(dir.to_path_buf(), registry.clone(), config));
    }
    let settings = OpcUaSettings {
        reconnect: edgeplane_opcua::client::Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        },
        ..OpcUaSettings::new(pki_dir(data_dir))
    };
    let connector = OpcUaConnector::start(
        registry.clone(),
        &broker.local_factory(),
        settings,
        Some(state_store.clone()),
    )
    .await
    .context("starting the opc ua connector")?;
    Ok((registry, connector))
}

/// Re-read the folder every 5 s; apply changed devices, assets or Secrets. A folder that
/// no longer loads keeps the last good resources (the error is logged once).
async fn reload(dir: PathBuf, registry: Registry, mut last: edgeplane_config::Config) {
    let mut last_error = None;
    let folder = crate::folder::Folder::new(&dir);
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let Some(loaded) = folder.changed().await else {
            continue;
        };
        match loaded {
            Ok(config) => {
                last_error = None;
                let same = config.devices == last.devices
                    && config.assets == last.assets
                    && config.secrets == last.secrets;
                if !same {
                    tracing::info!(folder = %dir.display(), "devices or assets changed; applying");
                    registry.apply_config(&config);
                    last = config;
                }
            }
            Err(e) => {
                let text = e.to_string();
                if last_error.as_ref() != Some(&text) {
                    tracing::warn!(folder = %dir.display(), error = %text, "configuration not applied; keeping the last good devices and assets");
                    last_error = Some(text);
                }
            }
        }
    }
}
