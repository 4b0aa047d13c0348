//! What the portal tests share: a test broker with a portal in front of it on ephemeral
//! loopback ports (its services chosen by the test), and a signed-in HTTP client (one
//! request per connection, the session cookie and CSRF token sent along).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use edgeplane_portal::{Listen, Portal, Readiness, Services};
use edgeplane_registry::Registry;
use edgeplane_tests::{loopback, TestBroker, WAIT};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A device manifest (JSON) with one OPC UA endpoint, `opc-ua`, named `plc`.
pub const DEVICE: &str = r#"{"apiVersion": "namespaces.deviceregistry.microsoft.com/v1", "kind": "Device",
 "metadata": {"name": "plc"},
 "spec": {"endpoints": {"inbound": {"opc-ua": {"endpointType": "Microsoft.OpcUa",
   "address": "opc.tcp://127.0.0.1:50000"}}}}}"#;

/// A portal for the broker `b` with `services`: HTTP and metrics on ephemeral loopback
/// ports, readiness with no checks.
pub async fn start_portal(b: &TestBroker, services: Services) -> Portal {
    let any = |origin: &str| Listen {
        addr: loopback(),
        origin: origin.into(),
    };
    Portal::start_with_services(
        &any("--http"),
        &any("--metrics"),
        b.broker.stats_handle(),
        Readiness::default(),
        Some(services),
    )
    .await
    .expect("portal")
}

/// A test broker and a portal with every service a signed-in page uses: `registry`,
/// in-process broker clients (topic explorer, retained messages), a state store, and the
/// configuration and data folders given (dataflow files; users and the activity log).
pub async fn start_with_state(
    registry: Registry,
    config_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> (TestBroker, Portal) {
    let b = TestBroker::start().await;
    let state = edgeplane_statestore::StateStore::start(&b.broker, Default::default())
        .await
        .expect("state store");
    let services = Services {
        broker: Some(b.broker.local_factory()),
        state: Some(state),
        config_dir,
        data_dir,
        ..Services::registry(registry)
    };
    let portal = start_portal(&b, services).await;
    (b, portal)
}

/// The portal at `addr`, with a session (or none).
#[derive(Clone)]
pub struct Http {
    pub addr: SocketAddr,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
}

/// One answer: status, headers (lowercase names) and body text.
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        if self.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&self.body)
                .unwrap_or_else(|e| panic!("json body ({e}): {}", self.body))
        }
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

impl Http {
    pub fn anonymous(addr: SocketAddr) -> Http {
        Http {
            addr,
            cookie: None,
            csrf: None,
        }
    }

    /// Send a request; `extra` headers as `Name: value` lines.
    pub async fn send(&self, method: &str, path: &str, body: &str, extra: &[&str]) -> Answer {
        let mut headers = String::new();
        if let Some(c) = &self.cookie {
            headers.push_str(&format!("Cookie: edgeplane_session={c}\r\n"));
        }
        if let Some(t) = &self.csrf {
            headers.push_str(&format!("X-CSRF-Token: {t}\r\n"));
        }
        for h in extra {
            headers.push_str(h);
            headers.push_str("\r\n");
        }
        let addr = self.addr;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let exchange = async {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(req.as_bytes()).await.expect("send");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            buf
        };
        let buf = tokio::time::timeout(WAIT, exchange).await.expect("answer");
        let text = String::from_utf8(buf).expect("utf-8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        // Chunked bodies (streams) are not decoded; the tests that read them check text.
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// The first user (`admin` / `correct horse`): set up and signed in.
    pub async fn set_up(addr: SocketAddr) -> Http {
        Self::sign(addr, "/api/v1/setup", "admin", "correct horse", 201).await
    }

    /// Sign in as `admin` / `correct horse`.
    pub async fn sign_in(addr: SocketAddr) -> Http {
        Self::sign_in_as(addr, "admin", "correct horse").await
    }

    /// Sign in as `user`.
    pub async fn sign_in_as(addr: SocketAddr, user: &str, password: &str) -> Http {
        Self::sign(addr, "/api/v1/login", user, password, 200).await
    }

    async fn sign(addr: SocketAddr, path: &str, user: &str, password: &str, expected: u16) -> Http {
        let body = json!({"user": user, "password": password}).to_string();
        let a = Http::anonymous(addr)
            .send("POST", path, &body, &["Content-Type: application/json"])
            .await;
        assert_eq!(a.status, expected, "{path}: {}", a.body);
        let cookie = a
            .header("set-cookie")
            .and_then(|c| {
                c.split(';')
                    .next()
                    .and_then(|kv| kv.split_once('='))
                    .map(|(_, v)| v.to_owned())
            })
            .expect("session cookie");
        let csrf = a.json()["csrf"].as_str().expect("csrf").to_owned();
        Http {
            addr,
            cookie: Some(cookie),
            csrf: Some(csrf),
        }
    }
}

/// One request with `http`'s session; the status and the body as JSON (null when empty).
pub async fn call(http: &Http, method: &str, path: &str, body: &str) -> (u16, Value) {
    let a = http
        .send(method, path, body, &["Content-Type: application/json"])
        .await;
    (a.status, a.json())
}
