//! Shared parts of the tests of TLS and X509 ports (`tls.rs`, `tls_x509.rs`,
//! `tls_slowloris.rs`, `auth_x509_reload.rs`, `auth_inject.rs`): certificates from
//! `edgeplane certs` and from its local CA (expired, intermediate, any CN), `mosquitto_pub` /
//! `mosquitto_sub` over TLS, and a loopback relay that carries the raw MQTT client of
//! `edgeplane_tests` over a real TLS connection with a client certificate, so a test sees
//! the broker's reason codes on an mTLS port.
//!
//! Each test target compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use edgeplane_broker::tls::{issue_leaf, Issued};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");

/// A port's TLS with the server certificate Secret that [`certs`] writes.
pub const MANUAL_TLS: &str = "tls: {mode: Manual, manual: {secretRef: edgeplane-server-tls}}";

/// `BrokerAuthentication/devices`: X509 client certificates chaining to the ConfigMap
/// `client-ca` that [`certs`] writes, with `attributes` (lines of
/// `authorizationAttributes` entries, each indented by eight spaces; none if empty).
pub fn x509_authentication(attributes: &str) -> String {
    let mut out = "apiVersion: mqttbroker.iotoperations.azure.com/v1\nkind: BrokerAuthentication\nmetadata: {name: devices}\nspec:\n  authenticationMethods:\n  - method: X509\n    x509Settings:\n      trustedClientCaCert: client-ca\n".to_owned();
    if !attributes.is_empty() {
        out.push_str("      authorizationAttributes:\n");
        out.push_str(attributes.trim_start_matches('\n'));
    }
    out
}

/// `edgeplane certs` into `dir`: a new local CA (`ca.crt`, Secret `edgeplane-ca`, ConfigMap
/// `client-ca`), the server certificate Secret `edgeplane-server-tls`, and a client
/// certificate `client-CN.crt` / `client-CN.key` for each of `clients`.
pub async fn certs(dir: &Path, clients: &[&str]) {
    let mut command = Command::new(BIN);
    command.arg("certs");
    for cn in clients {
        command.args(["--client", cn]);
    }
    let status = command
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .await
        .expect("run edgeplane certs");
    assert!(status.success(), "edgeplane certs failed");
}

/// The certificate and key files of client `cn` written by [`certs`] into `dir`.
pub fn client_files(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("client-{cn}.crt")),
        dir.join(format!("client-{cn}.key")),
    )
}

/// Run `tool` (`mosquitto_pub` or `mosquitto_sub`) against `localhost:port` over TLS,
/// trusting `cafile` for the server and presenting `identity` (certificate, key) if given;
/// returns (exit status success, stdout and stderr).
pub async fn mosquitto(
    tool: &str,
    port: u16,
    cafile: &Path,
    identity: Option<(&Path, &Path)>,
    extra: &[&str],
) -> (bool, String) {
    let mut command = Command::new(tool);
    command
        .args(["-h", "localhost", "-p", &port.to_string(), "--cafile"])
        .arg(cafile);
    if let Some((crt, key)) = identity {
        command.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        command
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("mosquitto client finished within 60 s")
    .expect("run mosquitto client");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The local CA that [`certs`] wrote into `dir` (Secret `edgeplane-ca`), to issue more
/// certificates from.
pub fn local_ca(dir: &Path) -> Issued {
    let config = edgeplane_config::load_dir(dir).expect("load the certs folder");
    let data = &config.secrets["edgeplane-ca"].data;
    let pem = |k: &str| String::from_utf8_lossy(&data[k]).into_owned();
    Issued {
        cert_pem: pem("tls.crt"),
        key_pem: pem("tls.key"),
    }
}

/// A client certificate for `cn` (subject `CN = cn, O = Edgeplane`) signed by `ca`.
pub fn client_cert(ca: &Issued, cn: &str) -> Issued {
    issue_leaf(ca, cn, &[], true).expect("client certificate")
}

/// A client certificate for `cn` signed by `ca` that expired in 2021.
pub fn expired_client_cert(ca: &Issued, cn: &str) -> Issued {
    let mut params = client_params(cn);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    sign(ca, params)
}

/// An intermediate CA named `cn` (subject `CN = cn, O = Edgeplane`) signed by `ca`.
pub fn intermediate_ca(ca: &Issued, cn: &str) -> Issued {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = name(cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    valid_now(&mut params);
    sign(ca, params)
}

fn client_params(cn: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name = name(cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn name(cn: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, cn);
    dn.push(rcgen::DnType::OrganizationName, "Edgeplane");
    dn
}

fn valid_now(params: &mut rcgen::CertificateParams) {
    let now = std::time::SystemTime::now();
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + Duration::from_secs(86_400)).into();
}

fn sign(ca: &Issued, params: rcgen::CertificateParams) -> Issued {
    let ca_key = rcgen::KeyPair::from_pem(&ca.key_pem).expect("CA key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).expect("issuer");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &issuer).expect("sign");
    Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Write `leaf`'s key and its certificate followed by `chain` (intermediates, leaf first
/// as TLS presents them) to `dir/NAME.crt` and `dir/NAME.key`.
pub fn write_identity(
    dir: &Path,
    name: &str,
    leaf: &Issued,
    chain: &[&Issued],
) -> (PathBuf, PathBuf) {
    let mut pem = leaf.cert_pem.clone();
    for c in chain {
        pem.push_str(&c.cert_pem);
    }
    let (crt, key) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, pem).expect("write certificate");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    (crt, key)
}

/// A plain loopback port that relays its first connection over TLS to the broker's
/// `port` (server name `localhost`, trusting the PEM CA file `cafile`), presenting the
/// identity (certificate chain file, key file) if given. A refused handshake, or the broker
/// closing the TLS connection, closes the plain one, which the client sees as the close.
pub async fn tls_relay(port: u16, cafile: &Path, identity: Option<(&Path, &Path)>) -> SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_file_iter(cafile).expect("read CA file") {
        roots.add(der.expect("CA PEM")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some((crt, key)) => {
            let chain = CertificateDer::pem_file_iter(crt)
                .expect("read certificate file")
                .collect::<Result<Vec<_>, _>>()
                .expect("certificate PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("key PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind relay");
    let addr = listener.local_addr().expect("relay address");
    tokio::spawn(async move {
        let Ok((mut plain, _)) = listener.accept().await else {
            return;
        };
        let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
            return;
        };
        let server = ServerName::try_from("localhost").expect("server name");
        let Ok(mut tls) = connector.connect(server, tcp).await else {
            return;
        };
        let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
    });
    addr
}
