//! Every page of the portal in headless Chromium against the real portal: each one loads
//! (one `h1`, no error), every control has a name a screen reader announces (its
//! `<label>`, `aria-label` or text), every table a caption, every link text; nothing the
//! pages load comes from another origin (no CDN), they ask nothing but `/ui/` and
//! `/api/v1/`, and they keep nothing in the browser but the HttpOnly session cookie. The
//! keyboard: Tab from the top reaches every control of the asset form, the dataflow form
//! and the broker page. A tablet in portrait (768 px): no page scrolls sideways, and the
//! dataflow form stacks above its YAML view. The dataflow form and its YAML view follow
//! each other both ways, a broken YAML text is reported beside it, and the dataflow is
//! saved from what was typed.

mod browser;
mod common;

use browser::{labelled_value, sign_in, Browser};
use common::{call, start_with_state, Http, DEVICE};
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::json;

const ASSET: &str = r#"{"apiVersion": "edgeplane.io/v1", "kind": "Asset", "metadata": {"name": "oven"},
 "spec": {"deviceRef": {"deviceName": "plc", "endpointName": "opc-ua"},
   "datasets": [{"name": "zones", "dataPoints": [{"name": "zone-1", "dataSource": "ns=2;s=Zone1"}]}],
   "eventGroups": [{"name": "alarms", "events": [{"name": "overheat", "dataSource": "ns=2;s=Alarms"}]}]}}"#;

const FLOW: &str = "apiVersion: connectivity.iotoperations.azure.com/v1
kind: Dataflow
metadata: {name: from-yaml}
spec:
  operations:
  - operationType: Source
    sourceSettings: {endpointRef: default, dataSources: [plant/+/temp]}
  - operationType: BuiltInTransformation
    builtInTransformationSettings:
      map: [{inputs: [c], output: f, expression: \"$1 * 9 / 5 + 32\"}]
  - operationType: Destination
    destinationSettings: {endpointRef: default, dataDestination: \"f/${inputTopic.2}\"}
";

/// What a screen reader user would miss on the page: controls without an accessible name,
/// tables without a caption, links without text, and the number of `h1`s.
const UNNAMED: &str = "
const name = (e) => (e.labels && [...e.labels].map((l) => l.textContent.trim()).join(' '))
  || e.getAttribute('aria-label')
  || (e.getAttribute('aria-labelledby') && document.getElementById(e.getAttribute('aria-labelledby'))?.textContent.trim())
  || (e.tagName === 'BUTTON' ? e.textContent.trim() : '') || e.title;
const visible = (e) => !e.closest('[hidden]');
return {
  controls: [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
    .filter(visible).filter((e) => !name(e)).map((e) => e.outerHTML.slice(0, 160)),
  tables: [...document.querySelectorAll('table')].filter((t) => !t.caption || !t.caption.textContent.trim())
    .map((t) => t.outerHTML.slice(0, 160)),
  links: [...document.querySelectorAll('a')].filter(visible)
    .filter((a) => !a.textContent.trim() && !a.getAttribute('aria-label')).map((a) => a.outerHTML.slice(0, 160)),
  h1: document.querySelectorAll('h1').length,
};";

/// Every page: route and title.
const PAGES: [(&str, &str); 9] = [
    ("#/devices", "Devices"),
    ("#/assets", "Assets"),
    ("#/assets/oven", "Asset oven"),
    ("#/dataflows", "Dataflows"),
    ("#/dataflows/new", "New dataflow"),
    ("#/broker", "Broker"),
    ("#/activity", "Activity"),
    ("#/export", "Export"),
    ("#/users", "Users"),
];

/// Go to `route` and wait for its title.
async fn open(browser: &Browser, base: &str, route: &str, title: &str) {
    browser.go(&format!("{base}{route}")).await;
    browser
        .until(
            &format!("the page {route}"),
            "const h = document.querySelector('h1'); return location.hash === arguments[0] && h && h.textContent === arguments[1];",
            json!([route, title]),
        )
        .await;
}

/// Pressing Tab from the top of the page reaches every visible control and link, so
/// nothing needs the mouse.
async fn tab_reaches_every_control(browser: &Browser, route: &str) {
    let count = browser
        .js(
            "const els = [...document.querySelectorAll('a[href], button, input, select, textarea')].filter((e) => !e.disabled && e.getClientRects().length > 0);
             els.forEach((e, i) => { e.dataset.tab = String(i); });
             window.tabbed = new Set();
             document.addEventListener('focusin', (ev) => { if (ev.target.dataset && ev.target.dataset.tab) window.tabbed.add(ev.target.dataset.tab); });
             document.activeElement && document.activeElement.blur();
             return els.length;",
            json!([]),
        )
        .await
        .as_u64()
        .unwrap_or(0);
    assert!(count > 5, "{route}: {count} controls");
    let press: Vec<_> = (0..count + 5)
        .flat_map(|_| {
            [
                json!({"type": "keyDown", "value": "\u{E004}"}),
                json!({"type": "keyUp", "value": "\u{E004}"}),
            ]
        })
        .collect();
    browser
        .cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": press}]})),
        )
        .await;
    let missed = browser
        .js(
            "return [...document.querySelectorAll('[data-tab]')].filter((e) => !window.tabbed.has(e.dataset.tab)).map((e) => e.outerHTML.slice(0, 160));",
            json!([]),
        )
        .await;
    assert_eq!(missed, json!([]), "{route}: not reached with Tab");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_local_and_the_yaml_follows_the_form() {
    // On the heap: the whole walk-through is one large future.
    Box::pin(walk_through()).await;
}

async fn walk_through() {
    let dir = TempDir::new("portal-pages");
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config folder");
    let registry = Registry::open(None).expect("registry");
    let (_b, portal) = start_with_state(registry, Some(config), None).await;
    let addr = portal.http_addr();
    let admin = Http::set_up(addr).await;
    for (path, body) in [("/api/v1/devices", DEVICE), ("/api/v1/assets", ASSET)] {
        let (code, body) = call(&admin, "POST", path, body).await;
        assert_eq!(code, 201, "{path}: {body}");
    }
    let browser = Browser::start(&dir.join("chromium-profile")).await;
    let base = format!("http://{addr}/");
    sign_in(&browser, &base).await;

    for (route, title) in PAGES {
        open(&browser, &base, route, title).await;
        if route == "#/assets" {
            // The form's repeated parts too: a second dataset and an event group.
            browser.click_button("Add dataset").await;
            browser.click_button("Add event group").await;
        }
        let found = browser.js(UNNAMED, json!([])).await;
        assert_eq!(
            found,
            json!({"controls": [], "tables": [], "links": [], "h1": 1}),
            "{route}"
        );
        if matches!(route, "#/assets" | "#/dataflows/new" | "#/broker") {
            tab_reaches_every_control(&browser, route).await;
        }
    }

    // On a tablet in portrait (768 px): no page scrolls sideways, and the dataflow form
    // and its YAML view stack in one column.
    browser
        .cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 768, "height": 1000})),
        )
        .await;
    for (route, title) in PAGES {
        open(&browser, &base, route, title).await;
        let sizes = browser
            .js(
                "const d = document.documentElement; return [d.scrollWidth, d.clientWidth];",
                json!([]),
            )
            .await;
        assert!(
            sizes[0].as_u64() <= sizes[1].as_u64() && sizes[1].as_u64() <= Some(768),
            "{route} scrolls sideways on a tablet: {sizes}"
        );
    }
    open(&browser, &base, "#/dataflows/new", "New dataflow").await;
    let stacked = browser
        .js(
            "const [form, yaml] = document.querySelectorAll('.split > fieldset'); return yaml.getBoundingClientRect().top >= form.getBoundingClientRect().bottom;",
            json!([]),
        )
        .await;
    assert_eq!(stacked, json!(true), "the YAML view below the form");
    browser
        .cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": 1280, "height": 1000})),
        )
        .await;
    let foreign = browser
        .js(
            "return performance.getEntriesByType('resource').map((r) => r.name).filter((n) => !n.startsWith(location.origin + '/') && !n.startsWith('data:'));",
            json!([]),
        )
        .await;
    assert_eq!(foreign, json!([]), "loaded from another origin");
    // No hidden state: the pages read the shell, its files and the REST API, and keep
    // nothing in the browser but the session cookie (which scripts cannot read).
    let other = browser
        .js(
            "return performance.getEntriesByType('resource').map((r) => new URL(r.name, location.href)).filter((u) => u.protocol !== 'data:' && !u.pathname.startsWith('/ui/') && !u.pathname.startsWith('/api/v1/')).map((u) => u.href);",
            json!([]),
        )
        .await;
    assert_eq!(other, json!([]), "requests beside the shell and the API");
    let kept = browser
        .js(
            "return {local: localStorage.length, session: sessionStorage.length, cookie: document.cookie};",
            json!([]),
        )
        .await;
    assert_eq!(kept, json!({"local": 0, "session": 0, "cookie": ""}));

    // The YAML view fills the form ...
    browser.go(&format!("{base}#/dataflows/new")).await;
    browser
        .until(
            "the dataflow form",
            "return location.hash === '#/dataflows/new' && !!document.querySelector('textarea[name=yaml]');",
            json!([]),
        )
        .await;
    browser.type_into("YAML", "kind: [").await;
    let problem = browser
        .until(
            "the YAML problem",
            "const p = document.querySelector('textarea[name=yaml]').closest('fieldset').querySelector('p.field-error:not([id])'); return p && p.textContent;",
            json!([]),
        )
        .await;
    assert!(problem.as_str().is_some_and(|p| !p.is_empty()), "{problem}");
    browser.type_into("YAML", FLOW).await;
    browser
        .until(
            "the form to follow the YAML",
            "const v = (l) => { const x = [...document.querySelectorAll('label')].find((e) => e.textContent.trim() === l); return x && document.getElementById(x.htmlFor).value; }; return v('Name') === 'from-yaml' && v('Source topics') === 'plant/+/temp';",
            json!([]),
        )
        .await;
    assert_eq!(
        labelled_value(&browser, "Destination topic").await,
        "f/${inputTopic.2}"
    );
    assert_eq!(
        labelled_value(&browser, "Map rules").await,
        "f = $1 * 9 / 5 + 32 ; c"
    );
    // ... and the form writes the YAML.
    browser
        .type_into("Destination topic", "fahrenheit/${inputTopic.2}")
        .await;
    browser
        .until(
            "the YAML to follow the form",
            "return document.querySelector('textarea[name=yaml]').value.includes('fahrenheit/${inputTopic.2}');",
            json!([]),
        )
        .await;
    browser.click_button("Create dataflow").await;
    browser
        .until(
            "the dataflow in the list",
            "return location.hash === '#/dataflows' && document.body.innerText.includes('from-yaml');",
            json!([]),
        )
        .await;
    let (code, flow) = call(&admin, "GET", "/api/v1/dataflows/from-yaml", "").await;
    assert_eq!(code, 200, "{flow}");
    let ops = flow["spec"]["operations"].as_array().expect("operations");
    assert_eq!(
        ops[0]["sourceSettings"]["dataSources"],
        json!(["plant/+/temp"])
    );
    assert_eq!(
        ops[1]["builtInTransformationSettings"]["map"][0]["expression"],
        "$1 * 9 / 5 + 32"
    );
    assert_eq!(
        ops[2]["destinationSettings"]["dataDestination"],
        "fahrenheit/${inputTopic.2}"
    );
}
