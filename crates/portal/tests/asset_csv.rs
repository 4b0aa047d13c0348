//! The asset form's CSV in headless Chromium against the real portal: the CSV import and
//! export are the page's own (`ui/assets.js`; the REST API takes and gives manifests), so
//! they are tested where they run. A CSV with per-row errors, then a good one, exported
//! byte for byte as imported; the asset it makes read back through the REST API (the
//! form's default sampling, 500 ms sampling and 1,000 ms publishing, written into
//! `defaultDatasetsConfiguration`) and through the YAML export; the asset's page exporting
//! the same CSV from what the server stored, and that file imported again into a second
//! asset with the same data points; 1,000 rows imported, 1,001 refused past the 1,000th
//! with the documented error. Last, sessions as the page sees them: a session ended on
//! the server sends the page back to sign-in, and "Sign out" ends it and clears the cookie.
//!
//! Chromium is driven by the WebDriver client of the binary's browser test (Debian's
//! `chromium` and `chromium-driver`; without them the test fails and says so).

mod browser;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use browser::{browser_cookie, labelled_value, sign_in, sign_in_page, Browser, SLOW};
use common::{call, start_with_state, Http, DEVICE};
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::{json, Value};

/// Three data points as the page's CSV writer spells them: a quoted name with a comma, a
/// point without its own sampling interval, and an `nsu=` node id.
const CSV: &str = "name,dataSource,samplingInterval
temperature,ns=2;s=Fast.Sine.0,100
\"pressure, inlet\",ns=2;s=Fast.Sine.1,
counter,nsu=http://edgeplane.io/opcua-sim;s=Fast.Counter.0,250
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_points_round_trip_through_csv() {
    // On the heap: the whole walk-through is one large future.
    Box::pin(walk_through()).await;
}

async fn walk_through() {
    let dir = TempDir::new("portal-asset-csv");
    let registry = Registry::open(None).expect("registry");
    let (_b, portal) = start_with_state(registry, None, None).await;
    let addr = portal.http_addr();
    let admin = Http::set_up(addr).await;
    let (code, body) = call(&admin, "POST", "/api/v1/devices", DEVICE).await;
    assert_eq!(code, 201, "{body}");

    let browser = Browser::start(&dir.join("chromium-profile")).await;
    let base = format!("http://{addr}/");
    sign_in(&browser, &base).await;

    // The new-asset form offers the default sampling settings.
    new_asset_form(&browser, &base).await;
    assert_eq!(
        labelled_value(&browser, "Default sampling interval (ms)").await,
        "500"
    );
    assert_eq!(
        labelled_value(&browser, "Default publishing interval (ms)").await,
        "1000"
    );
    browser.type_into("Name", "line-1").await;
    // Errors are reported per row; the good rows are taken.
    let bad = "name,dataSource,samplingInterval\ntemperature,ns=2;s=A,100\ntemperature,ns=2;s=B,100\nflow,ns=2;s=C,fast\n";
    browser.type_into("Import data points from CSV", bad).await;
    browser.click_button("Import CSV").await;
    let report = import_report(&browser, "Imported 1 data point.").await;
    assert!(
        report.contains("row 2: name temperature is used by an earlier row")
            && report.contains("row 3: samplingInterval \"fast\" is not a whole number"),
        "{report}"
    );
    browser.type_into("Import data points from CSV", CSV).await;
    browser.click_button("Import CSV").await;
    let report = import_report(&browser, "Imported 3 data points.").await;
    assert!(!report.contains("row "), "no errors: {report}");
    let exported = export_csv(&browser, &dir.join("download-1")).await;
    assert_eq!(exported, CSV, "the form exports what it imported");
    browser.click_button("Create asset").await;
    asset_page(&browser, "line-1").await;

    // The REST API holds the points and the form's default sampling settings.
    let (code, asset) = call(&admin, "GET", "/api/v1/assets/line-1", "").await;
    assert_eq!(code, 200, "{asset}");
    let points = asset["spec"]["datasets"][0]["dataPoints"].clone();
    let rows: Vec<(String, String, Value)> = points
        .as_array()
        .expect("data points")
        .iter()
        .map(|p| {
            let cfg = p["dataPointConfiguration"]
                .as_str()
                .map(|t| serde_json::from_str(t).expect("dataPointConfiguration is JSON"))
                .unwrap_or(Value::Null);
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["dataSource"].as_str().unwrap_or_default().to_owned(),
                cfg,
            )
        })
        .collect();
    let row = |n: &str, s: &str, c: Value| (n.to_owned(), s.to_owned(), c);
    assert_eq!(
        rows,
        [
            row(
                "temperature",
                "ns=2;s=Fast.Sine.0",
                json!({"samplingInterval": 100})
            ),
            row("pressure, inlet", "ns=2;s=Fast.Sine.1", Value::Null),
            row(
                "counter",
                "nsu=http://edgeplane.io/opcua-sim;s=Fast.Counter.0",
                json!({"samplingInterval": 250})
            ),
        ]
    );
    let defaults: Value = asset["spec"]["defaultDatasetsConfiguration"]
        .as_str()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| panic!("defaultDatasetsConfiguration in {asset}"));
    assert_eq!(
        defaults,
        json!({"samplingInterval": 500, "publishingInterval": 1000})
    );
    // The YAML export loads as a folder and holds the same asset.
    let export = admin.send("GET", "/api/v1/export", "", &[]).await;
    assert_eq!(export.status, 200);
    let folder = edgeplane_config::load_str("export.yaml", &export.body)
        .unwrap_or_else(|e| panic!("the export loads ({e}):\n{}", export.body));
    assert_eq!(
        folder.assets["line-1"].spec, asset["spec"],
        "{}",
        export.body
    );

    // The asset's page exports the CSV from what the server stored.
    let stored = export_csv(&browser, &dir.join("download-2")).await;
    assert_eq!(stored, CSV);

    // That file, chosen in a new form, makes an asset with the same data points.
    let file = dir.join("line-1.csv");
    std::fs::write(&file, &stored).expect("write csv");
    new_asset_form(&browser, &base).await;
    browser.type_into("Name", "line-2").await;
    choose_file(&browser, &file, "Fast.Counter.0").await;
    browser.click_button("Import CSV").await;
    let report = import_report(&browser, "Imported 3 data points.").await;
    assert!(!report.contains("row "), "no errors: {report}");
    browser.click_button("Create asset").await;
    asset_page(&browser, "line-2").await;
    let (code, copy) = call(&admin, "GET", "/api/v1/assets/line-2", "").await;
    assert_eq!(code, 200, "{copy}");
    assert_eq!(copy["spec"]["datasets"][0]["dataPoints"], points);

    // Up to 1,000 rows; past them the rest is refused with the documented error.
    let big = |rows: usize| -> String {
        let mut text = String::from("name,dataSource,samplingInterval\n");
        for n in 1..=rows {
            let sampling = if n % 2 == 0 { "100" } else { "" };
            text.push_str(&format!("p{n:04},ns=2;s=P{n},{sampling}\n"));
        }
        text
    };
    new_asset_form(&browser, &base).await;
    browser.type_into("Name", "big").await;
    let thousand = dir.join("1000.csv");
    std::fs::write(&thousand, big(1000)).expect("write csv");
    choose_file(&browser, &thousand, "p1000").await;
    browser.click_button("Import CSV").await;
    let report = import_report(&browser, "Imported 1000 data points.").await;
    assert!(
        !report.contains("at most"),
        "1,000 rows are allowed: {report}"
    );
    let over = dir.join("1001.csv");
    std::fs::write(&over, big(1001)).expect("write csv");
    choose_file(&browser, &over, "p1001").await;
    browser.click_button("Import CSV").await;
    let report = import_report(&browser, "this file has 1001").await;
    assert!(
        report.contains("Imported 1000 data points.")
            && report.contains("at most 1000 rows can be imported; this file has 1001"),
        "{report}"
    );
    browser.click_button("Create asset").await;
    asset_page(&browser, "big").await;
    let (code, asset) = call(&admin, "GET", "/api/v1/assets/big", "").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = asset["spec"]["datasets"][0]["dataPoints"]
        .as_array()
        .expect("data points")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let want: Vec<String> = (1..=1000).map(|n| format!("p{n:04}")).collect();
    assert_eq!(names, want, "the first 1,000 rows, in order");

    sessions_in_the_page(&browser, &base, &admin).await;
}

/// A session ended on the server (as an expired one is) sends the page to sign-in at its
/// next call; "Sign out" ends the session and the browser drops the cookie.
async fn sessions_in_the_page(browser: &Browser, base: &str, admin: &Http) {
    let page_session = browser_cookie(browser)
        .await
        .expect("the page's session cookie");
    let page = Http {
        cookie: Some(page_session),
        csrf: None,
        ..admin.clone()
    };
    let (code, s) = call(&page, "GET", "/api/v1/session", "").await;
    assert_eq!(code, 200, "{s}");
    let page = Http {
        csrf: s["csrf"].as_str().map(str::to_owned),
        ..page
    };
    assert_eq!(
        page.send("POST", "/api/v1/logout", "", &[]).await.status,
        204
    );
    browser.go(&format!("{base}#/devices")).await;
    sign_in_page(browser).await;
    sign_in(browser, base).await;

    let cookie = browser_cookie(browser).await.expect("a new session cookie");
    assert_ne!(Some(&cookie), page.cookie.as_ref());
    let signed_in = Http {
        cookie: Some(cookie),
        csrf: None,
        ..admin.clone()
    };
    assert_eq!(
        signed_in
            .send("GET", "/api/v1/devices", "", &[])
            .await
            .status,
        200
    );
    browser.click_button("Sign out").await;
    sign_in_page(browser).await;
    assert_eq!(
        browser_cookie(browser).await,
        None,
        "the browser dropped the cookie"
    );
    assert_eq!(
        signed_in
            .send("GET", "/api/v1/devices", "", &[])
            .await
            .status,
        401,
        "the signed-out session is refused"
    );
}

async fn new_asset_form(browser: &Browser, base: &str) {
    browser.go(&format!("{base}#/assets")).await;
    browser
        .until(
            "the new-asset form",
            "const h = document.querySelector('h1'); return location.hash === '#/assets' && h && h.textContent === 'Assets' && !!document.querySelector('textarea[name=csv1]');",
            json!([]),
        )
        .await;
}

async fn asset_page(browser: &Browser, name: &str) {
    browser
        .until(
            &format!("the page of asset {name}"),
            "const h = document.querySelector('h1'); return location.hash === '#/assets/' + arguments[0] && h && h.textContent === 'Asset ' + arguments[0] && !!document.querySelector('textarea[name=csv1]');",
            json!([name]),
        )
        .await;
}

/// The import report once it contains `text`.
async fn import_report(browser: &Browser, text: &str) -> String {
    let v = browser
        .until(
            &format!("an import report with {text}"),
            "const r = document.querySelector('.csv-report'); return r && r.innerText.includes(arguments[0]) ? r.innerText : null;",
            json!([text]),
        )
        .await;
    v.as_str().unwrap_or_default().to_owned()
}

/// Choose `file` in the first dataset's file input, as a user does, and wait until its
/// text (recognised by `marker`) is in the CSV field.
async fn choose_file(browser: &Browser, file: &Path, marker: &str) {
    let input = browser.find("input[type=file]").await;
    browser
        .cmd(
            "POST",
            &format!("/element/{input}/value"),
            Some(json!({ "text": file.display().to_string() })),
        )
        .await;
    browser
        .until(
            "the chosen file in the CSV field",
            "const t = document.querySelector('textarea[name=csv1]'); return t && t.value.includes(arguments[0]);",
            json!([marker]),
        )
        .await;
}

/// Press the first dataset's "Export CSV" and return the file Chromium saved in `dir`.
async fn export_csv(browser: &Browser, dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("download folder");
    browser
        .cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": "Browser.setDownloadBehavior",
                "params": {"behavior": "allow", "downloadPath": dir.display().to_string()}})),
        )
        .await;
    browser.click_button("Export CSV").await;
    let file = dir.join("data-points.csv");
    let deadline = Instant::now() + SLOW;
    loop {
        let partial = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"))
            })
            .unwrap_or(false);
        if !partial {
            if let Ok(text) = std::fs::read_to_string(&file) {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no data-points.csv downloaded to {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
