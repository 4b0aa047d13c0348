//! Portal sessions over real sockets: how long the cookie says a session lasts (8 hours
//! by default), that a session ends when its lifetime is over (a portal started with a
//! 2-second [`SessionLifetime`]: the cookie's `Max-Age` is 2, reads, changes and
//! `/session` work before and answer 401 after, and signing in again works), that
//! signing out ends that one session (its cookie and CSRF token are refused with 401 and
//! the user signs in again) and no other, that a restart and the deletion of a user end
//! sessions, and that a cookie the server never issued gets 401.
//!
//! That expired sessions also leave the server's table (swept at each sign-in, at most
//! [`edgeplane_portal::MAX_SESSIONS_PER_USER`] per user) is checked by the unit tests in
//! `src/auth.rs`, which can see the table.

mod common;

use std::time::{Duration, Instant};

use common::{call, start_portal, start_with_state, Http};
use edgeplane_portal::{Portal, Services, SessionLifetime, COOKIE};
use edgeplane_registry::Registry;
use edgeplane_tests::*;
use serde_json::json;

async fn start(data_dir: Option<&std::path::Path>) -> (TestBroker, Portal) {
    let registry = Registry::open(None).expect("registry");
    start_with_state(registry, None, data_dir.map(Into::into)).await
}

/// Status of `GET /api/v1/devices` with `http`'s session.
async fn devices(http: &Http) -> u16 {
    http.send("GET", "/api/v1/devices", "", &[]).await.status
}

#[tokio::test]
async fn signing_out_ends_that_session_only() {
    let (_b, portal) = start(None).await;
    let addr = portal.http_addr();
    let first = Http::set_up(addr).await;

    // The cookie lasts as long as the session: 8 hours unless chosen otherwise, as
    // docs/PORTAL.md says.
    assert_eq!(SessionLifetime::DEFAULT.as_secs(), 8 * 3600);
    let login = Http::anonymous(addr)
        .send(
            "POST",
            "/api/v1/login",
            &json!({"user": "admin", "password": "correct horse"}).to_string(),
            &["Content-Type: application/json"],
        )
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").expect("session cookie");
    assert!(
        cookie.starts_with(&format!("{COOKIE}=")) && cookie.contains("Max-Age=28800"),
        "{cookie}"
    );

    // Two sessions of one user: each its own cookie and CSRF token.
    let second = Http::sign_in(addr).await;
    assert_ne!(first.cookie, second.cookie);
    assert_ne!(first.csrf, second.csrf);
    assert_eq!((devices(&first).await, devices(&second).await), (200, 200));
    let crossed = Http {
        csrf: first.csrf.clone(),
        ..second.clone()
    };
    let a = crossed.send("PUT", "/api/v1/state/k", "v", &[]).await;
    assert_eq!(a.status, 403, "another session's token: {}", a.body);

    // Signing out clears the cookie in the browser and ends the session on the server.
    let out = first.send("POST", "/api/v1/logout", "", &[]).await;
    assert_eq!(out.status, 204, "{}", out.body);
    let cleared = out.header("set-cookie").expect("a clearing cookie");
    assert!(
        cleared.starts_with(&format!("{COOKIE}=;")) && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // A client that kept the old cookie is refused everywhere, reads and changes alike.
    assert_eq!(devices(&first).await, 401);
    let (code, body) = call(&first, "GET", "/api/v1/session", "").await;
    assert_eq!(
        (code, body["setupRequired"].as_bool()),
        (401, Some(false)),
        "{body}"
    );
    let (code, body) = call(&first, "PUT", "/api/v1/state/k", "v").await;
    assert_eq!(code, 401, "a change with the ended session: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign in first")),
        "{body}"
    );
    let again = first.send("POST", "/api/v1/logout", "", &[]).await;
    assert_eq!(again.status, 401, "an ended session cannot sign out twice");

    // The other session goes on; signing in again gives a new, working session.
    assert_eq!(devices(&second).await, 200);
    let (code, body) = call(&second, "PUT", "/api/v1/state/k", "v").await;
    assert_eq!(code, 200, "{body}");
    let third = Http::sign_in(addr).await;
    assert_ne!(third.cookie, first.cookie);
    assert_eq!(devices(&third).await, 200);
    let (code, body) = call(&third, "GET", "/api/v1/session", "").await;
    assert_eq!(
        (code, body["user"].as_str()),
        (200, Some("admin")),
        "{body}"
    );
    assert_eq!(body["csrf"].as_str(), third.csrf.as_deref());
}

#[tokio::test]
async fn cookies_the_server_did_not_issue_are_refused() {
    let (_b, portal) = start(None).await;
    let addr = portal.http_addr();
    let real = Http::set_up(addr).await;
    let token = real.cookie.clone().expect("cookie");
    let mut flipped = token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).expect("hex");
    for cookie in ["0".repeat(64), flipped, String::new(), format!("{token}0")] {
        let forged = Http {
            cookie: Some(cookie.clone()),
            ..real.clone()
        };
        assert_eq!(devices(&forged).await, 401, "cookie {cookie:?}");
    }
    // The right token under another cookie name is no session either.
    let other_name = Http::anonymous(addr)
        .send(
            "GET",
            "/api/v1/devices",
            "",
            &[&format!("Cookie: session={token}")],
        )
        .await;
    assert_eq!(other_name.status, 401);
    assert_eq!(devices(&real).await, 200);
}

#[tokio::test]
async fn a_restart_ends_every_session() {
    let dir = TempDir::new("portal-sessions-restart");
    let (_b, portal) = start(Some(&dir)).await;
    let before = Http::set_up(portal.http_addr()).await;
    assert_eq!(devices(&before).await, 200);
    drop(portal);

    // Sessions are kept in memory: the old cookie means nothing to the new process, and
    // the user (kept in the data folder) signs in again.
    let (_b2, portal) = start(Some(&dir)).await;
    let stale = Http {
        addr: portal.http_addr(),
        ..before
    };
    assert_eq!(devices(&stale).await, 401);
    let (code, body) = call(&stale, "GET", "/api/v1/session", "").await;
    assert_eq!(
        (code, body["setupRequired"].as_bool()),
        (401, Some(false)),
        "{body}"
    );
    let after = Http::sign_in(portal.http_addr()).await;
    assert_eq!(devices(&after).await, 200);
}

#[tokio::test]
async fn deleting_a_user_ends_their_sessions() {
    let (_b, portal) = start(None).await;
    let addr = portal.http_addr();
    let admin = Http::set_up(addr).await;
    let user = json!({"user": "night-shift", "password": "long enough 1", "role": "admin"});
    let (code, body) = call(&admin, "POST", "/api/v1/users", &user.to_string()).await;
    assert_eq!(code, 201, "{body}");
    let night = Http::sign_in_as(addr, "night-shift", "long enough 1").await;
    assert_eq!(devices(&night).await, 200);

    let (code, body) = call(&admin, "DELETE", "/api/v1/users/night-shift", "").await;
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        devices(&night).await,
        401,
        "the deleted user's session ended"
    );
    let refused = Http::anonymous(addr)
        .send(
            "POST",
            "/api/v1/login",
            &json!({"user": "night-shift", "password": "long enough 1"}).to_string(),
            &["Content-Type: application/json"],
        )
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(devices(&admin).await, 200, "other users stay signed in");
}

/// Sign in as the first user; the session and the moment its answer arrived (the session
/// was opened before that, so it expires no later than `lifetime` after it).
async fn sign_in_timed(addr: std::net::SocketAddr) -> (Http, String, Instant) {
    let login = Http::anonymous(addr)
        .send(
            "POST",
            "/api/v1/login",
            &json!({"user": "admin", "password": "correct horse"}).to_string(),
            &["Content-Type: application/json"],
        )
        .await;
    let answered = Instant::now();
    assert_eq!(login.status, 200, "{}", login.body);
    let cookie = login.header("set-cookie").expect("session cookie");
    let token = cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_owned())
        .expect("cookie value");
    let http = Http {
        addr,
        cookie: Some(token),
        csrf: login.json()["csrf"].as_str().map(str::to_owned),
    };
    (http, cookie, answered)
}

#[tokio::test]
async fn a_session_ends_when_its_lifetime_is_over() {
    let b = TestBroker::start().await;
    let state = edgeplane_statestore::StateStore::start(&b.broker, Default::default())
        .await
        .expect("state store");
    let lifetime = SessionLifetime::from_secs(2).expect("2 s is a lifetime");
    let services = Services {
        state: Some(state),
        session_lifetime: lifetime,
        ..Services::registry(Registry::open(None).expect("registry"))
    };
    let portal = start_portal(&b, services).await;
    let addr = portal.http_addr();
    Http::set_up(addr).await;

    // Within its lifetime the session reads, changes and knows who it is; the cookie
    // tells the browser the same lifetime.
    let (http, cookie, answered) = sign_in_timed(addr).await;
    assert!(
        cookie.split(';').any(|attr| attr.trim() == "Max-Age=2"),
        "{cookie}"
    );
    assert_eq!(devices(&http).await, 200);
    let (code, body) = call(&http, "PUT", "/api/v1/state/shift", "early").await;
    assert_eq!(code, 200, "a change within the lifetime: {body}");
    let (code, body) = call(&http, "GET", "/api/v1/session", "").await;
    assert_eq!(
        (code, body["user"].as_str()),
        (200, Some("admin")),
        "{body}"
    );

    // Past it (waited for generously), the same cookie and token get 401 everywhere,
    // and nothing was changed by the refused request.
    tokio::time::sleep_until((answered + lifetime.as_duration() + Duration::from_secs(1)).into())
        .await;
    assert_eq!(devices(&http).await, 401, "a read after the lifetime");
    let (code, body) = call(&http, "PUT", "/api/v1/state/shift", "late").await;
    assert_eq!(code, 401, "a change after the lifetime: {body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign in first")),
        "{body}"
    );
    let (code, body) = call(&http, "GET", "/api/v1/session", "").await;
    assert_eq!(
        (code, body["setupRequired"].as_bool()),
        (401, Some(false)),
        "{body}"
    );
    assert_eq!(
        http.send("POST", "/api/v1/logout", "", &[]).await.status,
        401,
        "an expired session cannot sign out"
    );

    // Signing in again gives a new session that works, and sees the value the expired
    // session could not overwrite.
    let (again, _, _) = sign_in_timed(addr).await;
    assert_ne!(again.cookie, http.cookie);
    assert_eq!(devices(&again).await, 200);
    let (code, body) = call(&again, "GET", "/api/v1/state/shift", "").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["value"].as_str(), Some("early"), "{body}");
    let (code, body) = call(&again, "PUT", "/api/v1/state/shift", "next").await;
    assert_eq!(code, 200, "{body}");
}
