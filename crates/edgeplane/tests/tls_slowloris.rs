//! Slow-loris protection on TLS ports: a TCP connection that sends nothing, or half a
//! ClientHello, is closed when the CONNECT deadline (`Settings::connect_timeout`, which the
//! TLS handshake counts against) passes, and other clients connect and exchange messages
//! over TLS meanwhile. The deadline is not part of the configuration folder, so the first
//! test runs the broker library with a one-second deadline on a TLS listener built from
//! `edgeplane certs` output; the second checks the binary's default (10 s).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use edgeplane_broker::tls::ServerTls;
use edgeplane_broker::{Broker, ListenerSpec, Protocol, Settings};
use edgeplane_tests::codec::QoS;
use edgeplane_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod auth_support;
mod tls_support;
use auth_support::listener;
use tls_support::{certs, tls_relay, BIN, MANUAL_TLS};

/// The first 11 bytes of a TLS 1.2/1.3 ClientHello: a handshake record announcing 512
/// bytes, the ClientHello header announcing 508, the client version; the rest never comes.
const HALF_CLIENT_HELLO: [u8; 11] = [
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];

/// Ten connections that send nothing and one that sends [`HALF_CLIENT_HELLO`].
async fn stalled_connections(addr: SocketAddr) -> Vec<TcpStream> {
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(TcpStream::connect(addr).await.expect("tcp connect"));
    }
    let mut half = TcpStream::connect(addr).await.expect("tcp connect");
    half.write_all(&HALF_CLIENT_HELLO)
        .await
        .expect("send half a ClientHello");
    stalled.push(half);
    stalled
}

/// Every connection is closed by the broker (EOF or reset) within `limit`.
async fn assert_all_closed(stalled: Vec<TcpStream>, limit: Duration) {
    for (i, mut s) in stalled.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let closed = loop {
            match tokio::time::timeout(limit, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                // A TLS alert before the close.
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        assert!(closed, "stalled connection {i} still open after {limit:?}");
    }
}

/// A client over TLS (trusting `cafile`) subscribes and gets its own message back.
async fn tls_round_trip(port: u16, cafile: &Path, id: &str) {
    let relay = tls_relay(port, cafile, None).await;
    let mut c = Client::open(relay, V5).await;
    assert_eq!(c.connect(connect(id, V5)).await.code, 0, "CONNACK for {id}");
    c.sub("loris/t", QoS::AtLeastOnce).await;
    c.publish(publish("loris/t", id, QoS::AtLeastOnce, 1)).await;
    let p = c.receive_and_ack().await;
    assert_eq!(&p.payload[..], id.as_bytes());
    c.disconnect().await;
}

#[tokio::test]
async fn stalled_handshakes_are_closed_at_the_deadline_and_others_still_connect() {
    let dir = TempDir::new("tls-slowloris");
    certs(&dir, &[]).await;
    let config = edgeplane_config::load_dir(&dir).expect("load certs");
    let server = &config.secrets["edgeplane-server-tls"].data;
    let tls = ServerTls::from_pem(&server["tls.crt"], &server["tls.key"]).expect("server TLS");
    let settings = Settings {
        connect_timeout: Duration::from_secs(1),
        sys_interval: None,
        ..Settings::default()
    };
    let listener = ListenerSpec {
        name: "secure".into(),
        bind: loopback(),
        protocol: Protocol::Mqtt,
        tls: Some(tls),
        auth: Default::default(),
        limits: Default::default(),
    };
    let broker = Broker::start(settings, vec![listener])
        .await
        .expect("broker starts");
    let addr = broker.addr(Protocol::Mqtt).expect("tls listener");
    let ca = dir.join("ca.crt");

    let stalled = stalled_connections(addr).await;
    tls_round_trip(addr.port(), &ca, "meanwhile").await;
    assert_all_closed(stalled, WAIT).await;
    tls_round_trip(addr.port(), &ca, "afterwards").await;
}

/// The binary applies its default deadline (10 s) to TLS handshakes too.
#[tokio::test]
async fn the_binary_closes_stalled_handshakes() {
    let dir = TempDir::new("tls-slowloris-binary");
    certs(&dir, &[]).await;
    let tls = listener("secure", &[&[MANUAL_TLS]]);
    std::fs::write(dir.join("listener.yaml"), tls).expect("write listener");
    let (_child, addrs) = start_edgeplane(BIN, &dir, 1).await;
    let stalled = stalled_connections(addrs[0]).await;
    tls_round_trip(addrs[0].port(), &dir.join("ca.crt"), "meanwhile").await;
    assert_all_closed(stalled, Duration::from_secs(10) + WAIT * 2).await;
}
