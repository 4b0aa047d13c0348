//! The operations portal in headless Chromium, against a real `edgeplane run` and the
//! OPC UA simulator: first-run set-up, a device, an asset made by CSV import of three data
//! points whose values change on the page, a dataflow made in the form, and its output in
//! the topic explorer; a rejected server certificate trusted from the devices page; a
//! restart keeping it all. Screenshots of each page go to `docs/screenshots/`.
//!
//! Chromium is driven over WebDriver by Debian's `chromedriver` (packages `chromium` and
//! `chromium-driver`; `scripts/install-deps.sh` installs them). Without them the test fails
//! and says so: it never passes silently. The WebDriver client is the few calls below over
//! plain HTTP/1.1, so the suite needs no browser-automation crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use edgeplane_opcua::sim::{NodeRate, Sim, SimConfig, SimSecurity};
use edgeplane_tests::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Bound of each wait for the page (the connector's first session, dataflow reload: 5 s).
const SLOW: Duration = Duration::from_secs(60);
const SIM_NS: &str = "nsu=http://edgeplane.io/opcua-sim;s=";
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

struct Browser {
    _driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    async fn start(profile: &Path) -> Browser {
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

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (code, v) = http(self.addr, method, &path, body.as_ref()).await;
        assert_eq!(code, 200, "{method} {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// Run `script` (a function body; `arguments` as usual) and return its value.
    async fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// Wait until `script` returns a truthy value; return it.
    async fn until(&self, what: &str, script: &str, args: Value) -> Value {
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
    async fn find(&self, css: &str) -> String {
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

    async fn type_into(&self, label: &str, text: &str) {
        let el = self.by_label(label).await;
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
    async fn choose(&self, label: &str, option: &str) {
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

    async fn click_button(&self, text: &str) {
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
    async fn screenshot(&self, name: &str) {
        self.screenshot_at(name, 1280).await;
    }

    /// A screenshot of the whole page `width` pixels wide (the window grown to the page's
    /// height, then put back to the desktop size).
    async fn screenshot_at(&self, name: &str, width: u64) {
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

    async fn text(&self) -> String {
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

// ---------------------------------------------------------------------------------------
// Edgeplane and the simulator.

async fn start_edgeplane(dir: &Path) -> (Child, SocketAddr) {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config folder");
    std::fs::write(
        config.join("listener.yaml"),
        "apiVersion: edgeplane.io/v1\nkind: BrokerListener\nmetadata: {name: local}\nspec:\n  ports:\n  - {port: 0, bindAddress: 127.0.0.1}\n",
    )
    .expect("listener");
    let mut child = Command::new(BIN)
        .args(["run", "--http", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start edgeplane");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let http = tokio::time::timeout(SLOW, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read log")
                .expect("edgeplane exited early");
            if line.contains("http listening") {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next());
                if let Some(a) = addr.and_then(|a| a.parse().ok()) {
                    return a;
                }
            }
        }
    })
    .await
    .expect("edgeplane starts");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, http)
}

#[tokio::test]
async fn operator_sets_up_a_site_in_the_browser() {
    // On the heap: the whole walk-through is one large future, too large for a test
    // thread's stack in debug builds.
    Box::pin(walk_through()).await;
}

async fn walk_through() {
    let dir = TempDir::new("portal-ui");
    let sim = Sim::start(SimConfig {
        bind: "127.0.0.1:0".parse().expect("address"),
        pki_dir: dir.join("sim-pki"),
        fast: NodeRate {
            count: 3,
            interval: Duration::from_millis(200),
        },
        security: vec![SimSecurity::None, SimSecurity::Basic256Sha256SignAndEncrypt],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let (mut edgeplane, addr) = start_edgeplane(&dir).await;
    let browser = Browser::start(&dir.join("chromium-profile")).await;
    let base = format!("http://{addr}/");

    // First run: the set-up page.
    browser.go(&base).await;
    browser
        .until(
            "the set-up page",
            "return document.body.innerText.includes('Set up Edgeplane')",
            json!([]),
        )
        .await;
    // What the first load transferred: the page and every file it loaded (headers included).
    let bytes = browser
        .js("const n = performance.getEntriesByType('navigation')[0]; return n.transferSize + performance.getEntriesByType('resource').reduce((s, r) => s + r.transferSize, 0);", json!([]))
        .await;
    let bytes = bytes.as_u64().unwrap_or(u64::MAX);
    eprintln!("portal first load: {bytes} bytes transferred");
    assert!(
        bytes < 300_000,
        "the first load transferred {bytes} bytes; the budget is 300 KB"
    );
    browser.type_into("Password", "plant-floor-42").await;
    browser.screenshot("01-setup").await;
    browser.click_button("Create administrator").await;

    // A device on the simulator.
    browser
        .until("the devices page", "return location.hash === '#/devices' && !!document.querySelector('h1') && document.querySelector('h1').textContent === 'Devices'", json!([]))
        .await;
    browser.type_into("Name", "press").await;
    browser
        .type_into("Server address", sim.endpoint_url())
        .await;
    browser.click_button("Create device").await;
    browser
        .until(
            "the device in the list",
            "return !!document.querySelector('[data-status=\"press\"]');",
            json!([]),
        )
        .await;

    // An asset from a CSV of three data points, one of them bad first.
    browser.go(&format!("{base}#/assets")).await;
    browser.type_into("Name", "line-1").await;
    let csv = format!(
        "name,dataSource,samplingInterval\nsine,{SIM_NS}Fast.Sine.0,100\ncounter,{SIM_NS}Fast.Counter.0,100\nrandom,Temperature,100\n"
    );
    browser.type_into("Import data points from CSV", &csv).await;
    browser.click_button("Import CSV").await;
    let report = browser
        .until(
            "the import report",
            "const r = document.querySelector('.csv-report'); return r && r.innerText;",
            json!([]),
        )
        .await;
    let report = report.as_str().unwrap_or_default();
    assert!(
        report.contains("Imported 2 data points") && report.contains("row 3"),
        "{report}"
    );
    let csv = csv.replace(",Temperature,", &format!(",{SIM_NS}Fast.Random.0,"));
    browser.type_into("Import data points from CSV", &csv).await;
    browser.click_button("Import CSV").await;
    browser
        .until("three imported points", "const r = document.querySelector('.csv-report'); return r && r.innerText.includes('Imported 3 data points');", json!([]))
        .await;
    browser.screenshot("03-asset-form").await;
    browser.click_button("Create asset").await;

    // Live values: each of the three cells shows a value, then a different one.
    let first = browser
        .until(
            "values of the three data points",
            "const c = [...document.querySelectorAll('[data-point-value]')]; return c.length === 3 && c.every(x => x.textContent !== '—') ? c.map(x => x.textContent) : null;",
            json!([]),
        )
        .await;
    browser
        .until(
            "the values to change",
            "const c = [...document.querySelectorAll('[data-point-value]')]; return c.length === 3 && c.map(x => x.textContent).join('|') !== arguments[0].join('|');",
            json!([first]),
        )
        .await;
    let stamps = browser
        .js(
            "return [...document.querySelectorAll('[data-point-time]')].map(x => x.textContent)",
            json!([]),
        )
        .await;
    assert!(
        stamps
            .as_array()
            .is_some_and(|s| s.iter().all(|t| t != "—")),
        "{stamps}"
    );
    browser.screenshot("04-asset-live").await;
    browser.go(&format!("{base}#/devices")).await;
    browser
        .until("the device's live status", "const s = document.querySelector('[data-status=\"press\"]'); return s && s.textContent.includes('connected');", json!([]))
        .await;
    browser.screenshot("02-devices").await;

    // A dataflow made in the form: the asset's messages, renamed, to another topic.
    browser.go(&format!("{base}#/dataflows/new")).await;
    browser.type_into("Name", "line-copy").await;
    browser
        .type_into("Source topics", "azure-iot-operations/data/line-1")
        .await;
    browser.type_into("Map rules", "* = *").await;
    browser
        .type_into("Destination topic", "curated/line-1")
        .await;
    let yaml = browser
        .until("the YAML view to follow the form", "const t = [...document.querySelectorAll('textarea')].find(t => t.value.includes('curated/line-1')); return t && t.value;", json!([]))
        .await;
    assert!(
        yaml.as_str()
            .unwrap_or_default()
            .contains("name: line-copy"),
        "{yaml}"
    );
    browser.click_button("Run dry run").await;
    browser
        .until("a dry-run result", "const r = document.querySelector('.results li'); return r && r.innerText.includes('curated/line-1');", json!([]))
        .await;
    browser.screenshot("05-dataflow-form").await;
    browser.click_button("Create dataflow").await;
    browser
        .until("the dataflow in the list", "return location.hash === '#/dataflows' && document.body.innerText.includes('line-copy');", json!([]))
        .await;

    // Its output in the topic explorer (the folder reload starts it within 5 s).
    browser.go(&format!("{base}#/broker")).await;
    browser.type_into("Topic filter", "curated/#").await;
    browser.click_button("Subscribe").await;
    browser
        .until("the dataflow's output in the explorer", "const m = document.querySelector('.messages li'); return m && m.innerText.includes('curated/line-1');", json!([]))
        .await;
    browser.screenshot("06-broker").await;
    browser.go(&format!("{base}#/dataflows")).await;
    browser
        .until(
            "the dataflow's counts",
            "return /[1-9]\\d* in \\/ [1-9]\\d* out/.test(document.body.innerText);",
            json!([]),
        )
        .await;
    browser.screenshot("07-dataflows").await;

    // A device that requires encryption and does not auto-accept: the simulator's
    // certificate is rejected, listed on the devices page, and trusted with its button.
    browser.go(&format!("{base}#/devices")).await;
    browser.type_into("Name", "strict").await;
    browser
        .type_into("Server address", sim.endpoint_url())
        .await;
    browser.choose("Security mode", "SignAndEncrypt").await;
    browser.choose("Security policy", "Basic256Sha256").await;
    browser.click_button("Create device").await;
    browser
        .until(
            "the strict device",
            "return !!document.querySelector('[data-status=\"strict\"]');",
            json!([]),
        )
        .await;
    browser.go(&format!("{base}#/assets")).await;
    browser.type_into("Name", "strict-asset").await;
    browser.choose("Device", "strict").await;
    browser
        .type_into(
            "Import data points from CSV",
            &format!("name,dataSource\ncounter,{SIM_NS}Fast.Counter.1\n"),
        )
        .await;
    browser.click_button("Import CSV").await;
    browser.click_button("Create asset").await;
    browser
        .until(
            "the strict asset's page",
            "return location.hash === '#/assets/strict-asset';",
            json!([]),
        )
        .await;
    browser.go(&format!("{base}#/devices")).await;
    browser
        .until(
            "the rejected certificate",
            "return [...document.querySelectorAll('button')].some(b => b.textContent === 'Trust');",
            json!([]),
        )
        .await;
    browser.screenshot("11-rejected-certificate").await;
    browser.click_button("Trust").await;
    browser
        .until("the strict device connected", "const s = document.querySelector('[data-status=\"strict\"]'); return s && s.textContent.includes('connected');", json!([]))
        .await;

    // Every change is in the activity log and in the export.
    browser.go(&format!("{base}#/activity")).await;
    browser
        .until(
            "the activity log",
            "return document.body.innerText.includes('Dataflow/line-copy');",
            json!([]),
        )
        .await;
    let log = browser.text().await;
    for what in [
        "Device/press",
        "Asset/line-1",
        "Dataflow/line-copy",
        "trusted",
    ] {
        assert!(log.contains(what), "{what} in:\n{log}");
    }
    browser.screenshot("08-activity").await;
    browser.go(&format!("{base}#/export")).await;
    browser
        .until("the export", "const p = document.querySelector('pre.export'); return p && p.innerText.includes('name: line-copy') && p.innerText.includes('name: line-1');", json!([]))
        .await;
    browser.screenshot("09-export").await;

    // What the portal made survives a restart on the same folders; set-up is not offered.
    edgeplane.kill().await.expect("stop edgeplane");
    let (_edgeplane, addr) = start_edgeplane(&dir).await;
    let base = format!("http://{addr}/");
    browser.go(&base).await;
    browser
        .until(
            "the sign-in page",
            "const h = document.querySelector('h1'); return h && h.textContent === 'Sign in';",
            json!([]),
        )
        .await;
    browser.type_into("User name", "admin").await;
    // Submitted from the keyboard: Enter in the password field.
    browser
        .type_into("Password", "plant-floor-42\u{E007}")
        .await;
    browser
        .until(
            "signed in",
            "const h = document.querySelector('h1'); return h && h.textContent === 'Devices';",
            json!([]),
        )
        .await;
    for (route, name) in [
        ("devices", "press"),
        ("assets", "line-1"),
        ("dataflows", "line-copy"),
    ] {
        browser.go(&format!("{base}#/{route}")).await;
        browser
            .until(&format!("{name} after the restart"), "return document.querySelector('table') && document.querySelector('table').innerText.includes(arguments[0]);", json!([name]))
            .await;
    }

    // On a tablet in portrait: one column, the live values still there.
    browser.go(&format!("{base}#/assets/line-1")).await;
    browser
        .until(
            "live values after the restart",
            "const c = [...document.querySelectorAll('[data-point-value]')]; return c.length === 3 && c.every(x => x.textContent !== '—');",
            json!([]),
        )
        .await;
    browser.screenshot_at("10-tablet-asset", 768).await;
    let _ = browser.cmd("DELETE", "", None).await;
    sim.shutdown().await;
}
