//! `edgeplane state get|set|del|list|watch`: the state store of a running broker, from the
//! command line, through its MQTT protocol like any other client.

use std::io::Write;
use std::net::SocketAddr;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use edgeplane_statestore::remote::{RemoteReply, RemoteStateStore};

#[derive(Subcommand)]
pub enum StateCommand {
    /// Print a key's value (exit status 1 if it does not exist).
    Get { key: String },
    /// Set a key.
    Set {
        key: String,
        value: String,
        /// Expire the key after this many milliseconds.
        #[arg(long, value_name = "MS")]
        px: Option<u64>,
        /// Only if the key does not exist.
        #[arg(long, conflicts_with = "nex")]
        nx: bool,
        /// Only if the key does not exist or already holds this value.
        #[arg(long)]
        nex: bool,
    },
    /// Delete a key (exit status 1 if it did not exist).
    Del { key: String },
    /// List keys matching a pattern (`*`, `?`, `[a-z]`), page by page.
    List {
        #[arg(default_value = "*")]
        pattern: String,
    },
    /// Print every change of a key until interrupted.
    Watch { key: String },
}

/// Run one command; `Ok(false)` means "not found" (exit status 1).
pub async fn run(broker: SocketAddr, cmd: StateCommand) -> anyhow::Result<bool> {
    let id = format!("edgeplane-cli-{}", std::process::id());
    let mut c = RemoteStateStore::connect(broker, &id).await?;
    let out = &mut std::io::stdout();
    match cmd {
        StateCommand::Get { key } => match c.request(&["GET", &key]).await? {
            RemoteReply::Bulk(v) => {
                out.write_all(&v)?;
                writeln!(out)?;
            }
            RemoteReply::Nil => return Ok(false),
            other => return unexpected(other),
        },
        StateCommand::Set {
            key,
            value,
            px,
            nx,
            nex,
        } => {
            let mut args = vec!["SET".to_owned(), key, value];
            if nx {
                args.push("NX".into());
            }
            if nex {
                args.push("NEX".into());
            }
            if let Some(ms) = px {
                args.extend(["PX".into(), ms.to_string()]);
            }
            match c.request(&args).await? {
                RemoteReply::Ok => writeln!(out, "OK")?,
                RemoteReply::Int(-1) => bail!("not set: the NX/NEX condition was not met"),
                other => return unexpected(other),
            }
        }
        StateCommand::Del { key } => match c.request(&["DEL", &key]).await? {
            RemoteReply::Int(0) => return Ok(false),
            RemoteReply::Int(_) => writeln!(out, "deleted")?,
            other => return unexpected(other),
        },
        StateCommand::List { pattern } => {
            let mut cursor: Option<String> = None;
            loop {
                let mut args = vec!["SCAN".to_owned(), pattern.clone()];
                args.extend(cursor.take());
                match c.request(&args).await? {
                    RemoteReply::Keys { keys, cursor: next } => {
                        for k in keys {
                            out.write_all(&k)?;
                            writeln!(out)?;
                        }
                        match next {
                            Some(n) => cursor = Some(String::from_utf8_lossy(&n).into_owned()),
                            None => break,
                        }
                    }
                    other => return unexpected(other),
                }
            }
        }
        StateCommand::Watch { key } => {
            match c.request(&["KEYNOTIFY", &key]).await? {
                RemoteReply::Ok => {}
                other => return unexpected(other),
            }
            eprintln!("watching {key}; Ctrl-C to stop");
            loop {
                let n = c.notification().await?;
                match n.value {
                    Some(v) => writeln!(out, "SET {}", String::from_utf8_lossy(&v))?,
                    None => writeln!(out, "DELETE")?,
                }
                out.flush()?;
            }
        }
    }
    Ok(true)
}

fn unexpected(reply: RemoteReply) -> anyhow::Result<bool> {
    match reply {
        RemoteReply::Error(text) => Err(anyhow!("the state store refused the request: {text}")),
        other => Err(anyhow!("unexpected answer from the state store: {other:?}")),
    }
}
