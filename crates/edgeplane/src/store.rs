//! `edgeplane store check|repair`: read a stopped broker's durable store and report what it
//! holds, or cut off damage so the broker can start again (keeping everything before it).

use std::path::PathBuf;
use std::process::ExitCode;

use edgeplane_broker::store::{self, Recovered};

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Read the store without changing it: sessions, queued and retained messages, and any
    /// damage (exit status 1 when damaged).
    Check {
        /// The broker's --data-dir.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Keep what precedes any damage and rewrite the store; reports what was cut off.
    Repair {
        /// The broker's --data-dir.
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

pub fn run(command: &StoreCommand) -> ExitCode {
    let (dir, result) = match command {
        StoreCommand::Check { data_dir } => (data_dir, store::check(data_dir)),
        StoreCommand::Repair { data_dir } => (data_dir, store::repair(data_dir)),
    };
    match result {
        Ok(r) => {
            report(dir, &r);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edgeplane: {e}");
            ExitCode::from(1)
        }
    }
}

fn report(dir: &std::path::Path, r: &Recovered) {
    let queued: usize = r.state.sessions.values().map(|s| s.queue.len()).sum();
    println!(
        "{}: {} records; {} sessions, {} queued messages, {} retained messages",
        dir.display(),
        r.records,
        r.state.sessions.len(),
        queued,
        r.state.retained.len()
    );
    for cut in &r.truncated {
        println!("cut off: {cut}");
    }
}
