//! Loading a folder: every YAML file in name order, other files and subfolders ignored,
//! errors from several files reported together, each with its own file.

use std::fs;
use std::io;
use std::path::Path;

use edgeplane_config::{load_dir, Config, Kind};

const BROKER_AND_LISTENER: &str = "\
apiVersion: edgeplane.io/v1
kind: Broker
metadata: {name: default}
spec:
  advanced: {clients: {maxKeepAliveSeconds: 120}}
---
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: tls}
spec:
  ports:
  - {port: 8883, bindAddress: 127.0.0.1, tls: {mode: Manual, manual: {secretRef: server-cert}}}
";

const SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata: {name: server-cert}
type: kubernetes.io/tls
stringData: {tls.crt: CERT, tls.key: KEY}
";

fn write(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    fs::write(dir.join(name), text)
}

#[test]
fn loads_every_yaml_file_of_a_folder() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    write(dir.path(), "b-secrets.yml", SECRET)?;
    write(dir.path(), "a-broker.yaml", BROKER_AND_LISTENER)?;
    write(dir.path(), "README.md", "not: [yaml")?;
    fs::create_dir(dir.path().join("nested.yaml"))?;
    write(
        &dir.path().join("nested.yaml"),
        "inner.yaml",
        "kind: Nope\n",
    )?;

    let config = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let loaded: Vec<(Kind, &str, &Path)> = config
        .resources
        .iter()
        .map(|r| (r.kind, r.name.as_str(), r.file.as_path()))
        .collect();
    let a = dir.path().join("a-broker.yaml");
    let b = dir.path().join("b-secrets.yml");
    assert_eq!(
        loaded,
        [
            (Kind::Broker, "default", a.as_path()),
            (Kind::BrokerListener, "tls", a.as_path()),
            (Kind::Secret, "server-cert", b.as_path()),
        ]
    );
    assert_eq!(config.broker.clients.max_keep_alive_secs, Some(120));
    assert_eq!(config.listeners[0].bind.to_string(), "127.0.0.1:8883");
    assert_eq!(config.secrets["server-cert"].data["tls.key"], b"KEY");
    Ok(())
}

#[test]
fn errors_from_several_files_come_together() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nextra: 1\n",
    )?;
    write(dir.path(), "b.yaml", "key: [unclosed\n")?;
    let errors = match load_dir(dir.path()) {
        Ok(config) => panic!("expected errors, loaded {config:?}"),
        Err(errors) => errors,
    };
    let files: Vec<String> = errors
        .iter()
        .map(|e| {
            e.file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(files, ["a.yaml", "b.yaml"], "{errors}");
    assert_eq!(errors.0[0].field, "extra");
    assert!(errors.0[1].message.starts_with("yaml syntax error"));
    Ok(())
}

#[test]
fn an_empty_folder_is_the_default_config() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    assert_eq!(load_dir(dir.path()), Ok(Config::default()));
    Ok(())
}

#[test]
fn a_missing_folder_is_an_error() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("absent");
    let errors = match load_dir(&missing) {
        Ok(_) => panic!("expected an error"),
        Err(errors) => errors,
    };
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.0[0].file, missing);
    assert!(errors.0[0].message.starts_with("cannot read config folder"));
    Ok(())
}

#[test]
fn a_file_that_is_not_utf8_is_an_error() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    fs::write(dir.path().join("bad.yaml"), [0xff, 0xfe, 0x00])?;
    let errors = match load_dir(dir.path()) {
        Ok(_) => panic!("expected an error"),
        Err(errors) => errors,
    };
    assert!(errors.0[0].message.contains("not utf-8"), "{errors}");
    Ok(())
}
