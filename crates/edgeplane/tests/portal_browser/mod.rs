//! A WebDriver client for the portal's browser test: Chromium driven by Debian's
//! `chromedriver` over plain HTTP/1.1 (the few calls the test needs, so the suite needs no
//! browser-automation crate), with helpers that find controls by their label as a screen
//! reader does, and full-page screenshots saved under `docs/screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Bound of each wait for the page (the connector's first session, dataflow reload: 5 s).
pub const SLOW: Duration = Duration::from_secs(60);
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

// ---------------------------------------------------------------------------------------
// HTTP/1.1, one request per connection.

async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Read the head, then Content-Length bytes (chromedriver may keep the connection
    // open whatever `Connection: close` says), or to the end without one.
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 16384];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                });
                if length.is_some_and(|len| body.len() >= len) {
                    break;
                }
            }
        }
        Ok::<_, std::io::Error>(buf)
    };
    let buf = tokio::time::timeout(SLOW, Box::pin(exchange))
        .await
        .expect("webdriver answers")
        .expect("webdriver connection");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// WebDriver.

pub struct Browser {
    _driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    pub async fn start(profile: &Path) -> Browser {
        for (bin, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the portal's browser tests need Debian's `{package}` package; run scripts/install-deps.sh (or apt-get install chromium chromium-driver)"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("port").port()
        };
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + SLOW;
        while TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {addr}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1280,1000",
                         format!("--user-data-dir={}", profile.display())],
            },
        }}});
        let (code, body) = http(addr, "POST", "/session", Some(&caps)).await;
        assert_eq!(code, 200, "new WebDriver session: {body}");
        let session = body["value"]["sessionId"]
            .as_str()
            .expect("session id")
            .to_owned();
        Browser {
            _driver: driver,
            addr,
            session,
        }
    }

    pub async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (code, v) = http(self.addr, method, &path, body.as_ref()).await;
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    pub async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Run `script` (a function body; `arguments` as usual) and return its value.
    pub async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Wait until `script` returns a truthy value; return it.
    pub async fn until(&self, what: &str, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + SLOW;
        loop {
            let v = self.js(script, args.clone()).await;
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body.innerText", json!([])).await;
                panic!("timed out waiting for {what}; the page says:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The element a CSS selector finds once it exists.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + SLOW;
        loop {
            let path = format!("/session/{}/element", self.session);
            let q = json!({"using": "css selector", "value": css});
            let (code, v) = http(self.addr, "POST", &path, Some(&q)).await;
            if code == 200 {
                return v["value"][ELEMENT].as_str().expect("element id").to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The DOM id of the control whose label reads `label` (as a screen reader finds it).
    async fn control_id(&self, label: &str) -> String {
        let id = self
            .until(
                &format!("a field labelled {label}"),
                "const l = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === arguments[0]); return l ? l.htmlFor : null;",
                json!([label]),
            )
            .await;
        id.as_str().unwrap_or_default().to_owned()
    }

    /// The labelled control's WebDriver element.
    async fn by_label(&self, label: &str) -> String {
        let id = self.control_id(label).await;
        self.find(&format!("#{id}")).await
    }

    pub async fn type_into(&self, label: &str, text: &str) {
        let el = self.by_label(label).await;
        self.type_into_element(&el, text).await;
    }

    /// Type into the control a CSS selector finds (rows of the form's tables are labelled
    /// with `aria-label`, not a `<label>`).
    pub async fn type_at(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.type_into_element(&el, text).await;
    }

    async fn type_into_element(&self, el: &str, text: &str) {
        self.cmd("POST", &format!("/element/{el}/clear"), Some(json!({})))
            .await;
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Choose `option` in the select labelled `label`, by typing it as a keyboard user does.
    pub async fn choose(&self, label: &str, option: &str) {
        let id = self.control_id(label).await;
        let el = self.find(&format!("#{id}")).await;
        self.cmd(
            "POST",
            &format!("/element/{el}/value"),
            Some(json!({ "text": option })),
        )
        .await;
        let chosen = self
            .js(
                "return document.getElementById(arguments[0]).value",
                json!([id]),
            )
            .await;
        assert_eq!(chosen, json!(option), "{label}");
    }

    pub async fn click_button(&self, text: &str) {
        let id = self
            .until(
                &format!("a button {text}"),
                "const b = [...document.querySelectorAll('button')].find(b => b.textContent.trim() === arguments[0]); if (!b) return null; b.id = b.id || ('b' + Math.random().toString(36).slice(2)); return b.id;",
                json!([text]),
            )
            .await;
        let el = self
            .find(&format!("#{}", id.as_str().unwrap_or_default()))
            .await;
        self.cmd("POST", &format!("/element/{el}/click"), Some(json!({})))
            .await;
    }

    /// A screenshot of the whole page at the desktop width.
    pub async fn screenshot(&self, name: &str) {
        self.screenshot_at(name, 1280).await;
    }

    /// A screenshot of the whole page `width` pixels wide (the window grown to the page's
    /// height, then put back to the desktop size).
    pub async fn screenshot_at(&self, name: &str, width: u64) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": 1000})),
        )
        .await;
        let height = self
            .js(
                "window.scrollTo(0, 0); return document.documentElement.scrollHeight",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(1000)
            // The window is taller than the page area it shows (headless keeps room for
            // its frame).
            .saturating_add(200)
            .clamp(1000, 4000);
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
        let b64 = self.cmd("GET", "/screenshot", None).await;
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1280, "height": 1000})),
        )
        .await;
        let png = base64_decode(b64.as_str().expect("screenshot"));
        let dir = screenshots();
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    pub async fn text(&self) -> String {
        self.js("return document.body.innerText", json!([]))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
}
