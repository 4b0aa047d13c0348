//! What the portal's browser tests share: the WebDriver client of the binary's browser
//! test (`crates/edgeplane/tests/portal_browser/`, Chromium driven by Debian's
//! `chromedriver`), signing in on the page, and reading the page as a user sees it.

// Each test crate uses its own part of these helpers and of the WebDriver client.
#![allow(dead_code, unused_imports)]

#[path = "../../../edgeplane/tests/portal_browser/mod.rs"]
mod portal_browser;

pub use portal_browser::{Browser, SLOW};
use serde_json::json;

/// Wait for the sign-in page.
pub async fn sign_in_page(browser: &Browser) {
    browser
        .until(
            "the sign-in page",
            "const h = document.querySelector('h1'); return h && h.textContent === 'Sign in';",
            json!([]),
        )
        .await;
}

/// Open `base` and sign in as `admin` / `correct horse` (the user `Http::set_up` makes),
/// submitting with Enter; the devices page follows.
pub async fn sign_in(browser: &Browser, base: &str) {
    browser.go(base).await;
    sign_in_page(browser).await;
    browser.type_into("User name", "admin").await;
    browser.type_into("Password", "correct horse\u{E007}").await;
    browser
        .until(
            "the devices page",
            "const h = document.querySelector('h1'); return location.hash === '#/devices' && h && h.textContent === 'Devices';",
            json!([]),
        )
        .await;
}

/// The browser's `edgeplane_session` cookie, if it has one.
pub async fn browser_cookie(browser: &Browser) -> Option<String> {
    let all = browser.cmd("GET", "/cookie", None).await;
    all.as_array()?
        .iter()
        .find(|c| c["name"] == edgeplane_portal::COOKIE)
        .and_then(|c| c["value"].as_str().map(str::to_owned))
}

/// The value of the control labelled `label`.
pub async fn labelled_value(browser: &Browser, label: &str) -> String {
    let v = browser
        .until(
            &format!("a field labelled {label}"),
            "const l = [...document.querySelectorAll('label')].find(l => l.textContent.trim() === arguments[0]); return l ? document.getElementById(l.htmlFor).value : null;",
            json!([label]),
        )
        .await;
    v.as_str().unwrap_or_default().to_owned()
}
