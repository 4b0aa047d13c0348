//! The operations portal in headless Chromium, against a real `edgeplane run` and the
//! OPC UA simulator: first-run set-up, a device, an asset made by CSV import of three data
//! points whose values change on the page, a dataflow made in the form, and its output in
//! the topic explorer; an asset with two datasets and an event group made with the form's
//! add/remove rows; a rejected server certificate trusted from the devices page; a restart
//! keeping it all; a viewer added on the users page who sees every page without its edit
//! controls. Screenshots of each page go to `docs/screenshots/`.
//!
//! Chromium is driven over WebDriver by Debian's `chromedriver` (packages `chromium` and
//! `chromium-driver`; `scripts/install-deps.sh` installs them). Without them the test fails
//! and says so: it never passes silently. The WebDriver client is in `portal_browser/`.

mod portal_browser;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use edgeplane_opcua::sim::{NodeRate, Sim, SimConfig, SimSecurity};
use edgeplane_tests::*;
use portal_browser::{Browser, SLOW};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_edgeplane");
const SIM_NS: &str = "nsu=http://edgeplane.io/opcua-sim;s=";

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
    // A second dataset and an event group, by adding rows (and removing one again).
    browser.click_button("Add dataset").await;
    browser
        .type_at(
            "input[aria-label='Name of data point 1 in dataset 2']",
            "random",
        )
        .await;
    browser
        .type_at(
            "input[aria-label='Node id of data point 1 in dataset 2']",
            &format!("{SIM_NS}Fast.Random.1"),
        )
        .await;
    browser
        .type_at(
            "[data-field='spec.datasets[1].destinations'] input",
            "strict/second",
        )
        .await;
    browser.click_button("Add dataset").await;
    browser.click_button("Remove dataset 3").await;
    browser.click_button("Add event group").await;
    browser
        .type_at(
            "input[aria-label='Name of event 1 in event group 1']",
            "tick",
        )
        .await;
    browser
        .type_at(
            "input[aria-label='Notifier of event 1 in event group 1']",
            &format!("{SIM_NS}Special.Events"),
        )
        .await;
    let legends = browser
        .js(
            "return [...document.querySelectorAll('fieldset.item > legend')].map(l => l.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        legends,
        json!(["Dataset 1", "Dataset 2", "Event group 1"]),
        "the third dataset was removed"
    );
    browser.screenshot("12-asset-datasets").await;
    browser.click_button("Create asset").await;
    browser
        .until(
            "the strict asset's page",
            "return location.hash === '#/assets/strict-asset' && document.body.innerText.includes('Dataset dataset-2');",
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
    let export = browser.text().await;
    for what in [
        "name: dataset-2",
        "strict/second",
        "name: tick",
        "Special.Events",
    ] {
        assert!(export.contains(what), "{what} in the export:\n{export}");
    }
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

    // A viewer, added on the users page, sees every page without its edit controls.
    browser.go(&format!("{base}#/users")).await;
    browser.type_into("New user name", "operator").await;
    browser.type_into("Their password", "look-only-123").await;
    browser.click_button("Add user").await;
    browser
        .until(
            "the viewer in the users list",
            "const t = document.querySelector('table'); return t && t.innerText.includes('operator') && t.innerText.includes('viewer');",
            json!([]),
        )
        .await;
    browser.screenshot("13-users").await;
    browser.click_button("Sign out").await;
    browser.type_into("User name", "operator").await;
    browser.type_into("Password", "look-only-123\u{E007}").await;
    browser
        .until(
            "the viewer signed in",
            "const h = document.querySelector('h1'); return h && h.textContent === 'Devices' && document.body.innerText.includes('operator (viewer)') && !!document.querySelector('[data-status=\"press\"]');",
            json!([]),
        )
        .await;
    let buttons = "return [...document.querySelectorAll('main button, main a.button')].map(b => b.textContent.trim())";
    let seen = browser.js(buttons, json!([])).await;
    assert_eq!(seen, json!([]), "no edit control on the devices page");
    assert!(browser.text().await.contains("read-only"));
    browser.screenshot("14-viewer-devices").await;
    for (route, ready) in [
        ("dataflows", "line-copy"),
        ("assets/line-1", "Dataset telemetry"),
        ("broker", "State store"),
    ] {
        browser.go(&format!("{base}#/{route}")).await;
        browser
            .until(
                &format!("the viewer's {route} page"),
                "return document.body.innerText.includes(arguments[0]);",
                json!([ready]),
            )
            .await;
        let seen = browser.js(buttons, json!([])).await;
        for edit in [
            "New dataflow",
            "Disable",
            "Delete",
            "Save asset",
            "Delete asset",
            "Set key",
            "Add dataset",
        ] {
            assert!(
                !seen.as_array().is_some_and(|b| b.iter().any(|t| t == edit)),
                "{edit} shown to a viewer on {route}: {seen}"
            );
        }
    }
    let _ = browser.cmd("DELETE", "", None).await;
    sim.shutdown().await;
}
