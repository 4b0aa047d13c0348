//! Sign-in for the portal and the REST API: local users, sessions, CSRF.
//!
//! - **Users** live in `<data-dir>/portal-users`, one `name:argon2id-PHC[:role]` line each
//!   (the broker's password-file format, hashed and verified by the same code, plus the
//!   [`Role`]; a line without one is an administrator, as every user was before roles), or
//!   in memory without a data folder. While there is none, `POST /api/v1/setup` creates
//!   the first user, an administrator; afterwards it refuses.
//! - **Roles**: an administrator may do everything; a viewer may read every page and
//!   stream, sign out, and use the two calls that change nothing (`/api/v1/parse`,
//!   `/api/v1/dataflows/dry-run`); every other state-changing request answers 403.
//! - **Sessions**: `POST /api/v1/login` checks the password on the blocking pool and sets
//!   the `edgeplane_session` cookie (`HttpOnly; SameSite=Strict; Path=/; Max-Age`), a
//!   256-bit random token kept in memory with its expiry. A session lasts its
//!   [`SessionLifetime`] (`edgeplane run --session-lifetime`, 8 hours by default) from
//!   sign-in, which is also the cookie's `Max-Age`; after it every request with that
//!   cookie answers 401. A restart signs everyone out. After [`MAX_FAILURES`] wrong
//!   passwords for a name within a minute, sign-in for that name answers 429 until the
//!   minute has passed.
//! - **The session table** only grows at sign-in, so that is where it is swept: every
//!   sign-in drops the expired sessions, and a user past [`MAX_SESSIONS_PER_USER`] live
//!   sessions loses the oldest. A lookup of an expired session drops it too. So the table
//!   holds at most that many sessions per user, none of them older than the lifetime
//!   after the last sign-in.
//! - **CSRF**: each session has its own random token, returned by login and by
//!   `GET /api/v1/session`; every request other than GET/HEAD must carry it in the
//!   `X-CSRF-Token` header. The sign-in and set-up calls (no session yet) must be
//!   `application/json`, which a cross-site form cannot send without a CORS preflight.
//!
//! [`require_session`] guards every `/api/` path except the three above; the static shell
//! of the single-page app (`/`, `/ui/...`) holds no data and is public, like `/healthz`,
//! `/readyz` and `/metrics`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use edgeplane_broker::auth::{hash_password, PasswordFile};
use parking_lot::Mutex;
use rand_core::{OsRng, RngCore};
use serde_json::{json, Value};

use crate::activity::Activity;
use crate::api::{json_response, message};
use crate::lifetime::SessionLifetime;

/// The session cookie's name.
pub const COOKIE: &str = "edgeplane_session";
/// The header carrying the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
const USERS_FILE: &str = "portal-users";
const MIN_PASSWORD: usize = 8;
/// Failed sign-ins for one user name within [`FAILURE_WINDOW`] before it is refused
/// until the window has passed (against password guessing).
const MAX_FAILURES: u32 = 5;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Live sessions one user may hold (browsers, tablets, scripts); signing in once more
/// ends that user's oldest, so repeated sign-ins cannot grow the table without bound.
pub const MAX_SESSIONS_PER_USER: usize = 64;

/// Who made a request; inserted by [`require_session`] for the handlers.
#[derive(Debug, Clone)]
pub struct Principal(pub String);

/// What a portal user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything: create, change and delete resources, manage users.
    Admin,
    /// Read-only: every page and stream, no change.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// POST calls a viewer may make: they change nothing on the site.
const VIEWER_POSTS: [&str; 3] = [
    "/api/v1/logout",
    "/api/v1/parse",
    "/api/v1/dataflows/dry-run",
];

#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires: Instant,
}

/// One line of the users file.
#[derive(Debug, Clone)]
struct User {
    name: String,
    /// The argon2id PHC string.
    hash: String,
    role: Role,
}

/// Users and sessions; cheap to clone.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Mutex<Inner>>,
    file: Option<PathBuf>,
    lifetime: SessionLifetime,
}

#[derive(Default)]
struct Inner {
    /// In file order.
    users: Vec<User>,
    sessions: HashMap<String, Session>,
    /// User name to (failed sign-ins, first failure of the window).
    failures: HashMap<String, (u32, Instant)>,
}

impl Auth {
    /// Users from `data_dir/portal-users` (when it exists), or none in memory; sessions
    /// lasting `lifetime`.
    pub fn open(data_dir: Option<&std::path::Path>, lifetime: SessionLifetime) -> Auth {
        let file = data_dir.map(|d| d.join(USERS_FILE));
        let mut inner = Inner::default();
        if let Some(f) = &file {
            match std::fs::read_to_string(f) {
                Ok(text) => inner.users = parse_users(&text, f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::error!(file = %f.display(), error = %e, "cannot read portal users; nobody can sign in until it is readable")
                }
            }
        }
        Auth {
            inner: Arc::new(Mutex::new(inner)),
            file,
            lifetime,
        }
    }

    /// Every user's name and role, in file order.
    fn user_names(&self) -> Vec<(String, Role)> {
        self.inner
            .lock()
            .users
            .iter()
            .map(|u| (u.name.clone(), u.role))
            .collect()
    }

    fn role_of(&self, name: &str) -> Option<Role> {
        let inner = self.inner.lock();
        inner.users.iter().find(|u| u.name == name).map(|u| u.role)
    }

    /// Add a user (the password hashed here); refuses a taken name.
    async fn add_user(
        &self,
        name: &str,
        password: &str,
        role: Role,
        only_first: bool,
    ) -> Result<(), Response> {
        check_user_name(name)?;
        if password.chars().count() < MIN_PASSWORD {
            return Err(message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "password",
                format!("use at least {MIN_PASSWORD} characters"),
            ));
        }
        let pw = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || hash_password(pw.as_bytes()))
            .await
            .map_err(|e| message(StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string()))?
            .map_err(|e| message(StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string()))?;
        let mut inner = self.inner.lock();
        if only_first && !inner.users.is_empty() {
            return Err(message(
                StatusCode::CONFLICT,
                "",
                "set-up is done already; sign in instead".into(),
            ));
        }
        if inner.users.iter().any(|u| u.name == name) {
            return Err(message(
                StatusCode::CONFLICT,
                "user",
                format!("user `{name}` exists already; choose another name"),
            ));
        }
        inner.users.push(User {
            name: name.to_owned(),
            hash,
            role,
        });
        if let Err(e) = self.save(&inner) {
            inner.users.pop();
            return Err(e);
        }
        Ok(())
    }

    fn remove_user(&self, name: &str) -> Result<(), Response> {
        let mut inner = self.inner.lock();
        let Some(at) = inner.users.iter().position(|u| u.name == name) else {
            return Err(message(
                StatusCode::NOT_FOUND,
                "",
                format!("user `{name}` not found"),
            ));
        };
        let admins = inner.users.iter().filter(|u| u.role == Role::Admin).count();
        if inner.users[at].role == Role::Admin && admins == 1 {
            return Err(message(
                StatusCode::CONFLICT,
                "",
                "the last administrator cannot be deleted; add another administrator first".into(),
            ));
        }
        let removed = inner.users.remove(at);
        if let Err(e) = self.save(&inner) {
            inner.users.insert(at, removed);
            return Err(e);
        }
        inner.sessions.retain(|_, s| s.user != name);
        Ok(())
    }

    fn save(&self, inner: &Inner) -> Result<(), Response> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let text: String = inner
            .users
            .iter()
            .map(|u| format!("{}:{}:{}\n", u.name, u.hash, u.role.as_str()))
            .collect();
        let tmp = file.with_extension("tmp");
        let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file));
        written.map_err(|e| {
            message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "",
                format!(
                    "cannot save users to {}: {e}; check the data folder",
                    file.display()
                ),
            )
        })
    }

    /// Check a password on the blocking pool (argon2 is deliberately slow).
    async fn verify(&self, name: &str, password: &str) -> bool {
        let text: String = self
            .inner
            .lock()
            .users
            .iter()
            .map(|u| format!("{}:{}\n", u.name, u.hash))
            .collect();
        let (name, password) = (name.to_owned(), password.to_owned());
        tokio::task::spawn_blocking(move || {
            PasswordFile::parse(&text).is_ok_and(|f| f.verify(&name, password.as_bytes()))
        })
        .await
        .unwrap_or(false)
    }

    /// Whether `user` has failed too often lately to try again now.
    fn locked_out(&self, user: &str) -> bool {
        let inner = self.inner.lock();
        inner
            .failures
            .get(user)
            .is_some_and(|(n, since)| *n >= MAX_FAILURES && since.elapsed() < FAILURE_WINDOW)
    }

    fn count_failure(&self, user: &str, failed: bool) {
        let mut inner = self.inner.lock();
        if !failed {
            inner.failures.remove(user);
            return;
        }
        inner
            .failures
            .retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        let entry = inner
            .failures
            .entry(user.to_owned())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    /// A new session for `user`: (cookie token, CSRF token).
    fn open_session(&self, user: &str, role: Role) -> (String, String) {
        let (token, csrf) = (random_token(), random_token());
        let mut inner = self.inner.lock();
        let now = Instant::now();
        inner.sessions.retain(|_, s| s.expires > now);
        // All sessions last the same, so the oldest is the one expiring first.
        let mut theirs: Vec<(Instant, String)> = inner
            .sessions
            .iter()
            .filter(|(_, s)| s.user == user)
            .map(|(t, s)| (s.expires, t.clone()))
            .collect();
        if theirs.len() >= MAX_SESSIONS_PER_USER {
            theirs.sort_unstable();
            for (_, t) in &theirs[..=theirs.len() - MAX_SESSIONS_PER_USER] {
                inner.sessions.remove(t);
            }
        }
        inner.sessions.insert(
            token.clone(),
            Session {
                user: user.to_owned(),
                role,
                csrf: csrf.clone(),
                expires: now + self.lifetime.as_duration(),
            },
        );
        (token, csrf)
    }

    fn session(&self, token: &str) -> Option<Session> {
        let mut inner = self.inner.lock();
        match inner.sessions.get(token) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                inner.sessions.remove(token);
                None
            }
            None => None,
        }
    }
}

/// The users file's lines; a line with an unknown role is left out (that user cannot sign
/// in) and logged with its line number, so a typo never grants more than intended.
fn parse_users(text: &str, file: &std::path::Path) -> Vec<User> {
    let mut users = Vec::new();
    for (at, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else {
            tracing::error!(file = %file.display(), line = at + 1, "portal user line without `name:hash`; that line is ignored");
            continue;
        };
        // The PHC hash has no ':'; a role, when given, follows the last one.
        let (hash, role) = match rest.trim().rsplit_once(':') {
            Some((hash, role)) => (hash, Role::parse(role.trim())),
            None => (rest.trim(), Some(Role::Admin)),
        };
        let Some(role) = role else {
            tracing::error!(file = %file.display(), line = at + 1, user = name, "unknown portal role; use `admin` or `viewer`; that user cannot sign in until it is fixed");
            continue;
        };
        users.push(User {
            name: name.to_owned(),
            hash: hash.to_owned(),
            role,
        });
    }
    users
}

fn check_user_name(name: &str) -> Result<(), Response> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user",
            "use 1 to 64 letters, digits, '.', '_', '-' or '@'".into(),
        ))
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn is_public(method: &Method, path: &str) -> bool {
    !path.starts_with("/api/")
        || (path == "/api/v1/session" && method == Method::GET)
        || path == "/api/v1/login"
        || path == "/api/v1/setup"
}

/// Middleware: a valid session for every `/api/` path but sign-in and set-up, and the
/// session's CSRF token on every state-changing request.
pub async fn require_session(State(auth): State<Auth>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if is_public(&method, req.uri().path()) {
        return next.run(req).await;
    }
    let session = cookie_token(req.headers()).and_then(|t| auth.session(&t));
    let Some(session) = session else {
        return message(
            StatusCode::UNAUTHORIZED,
            "",
            "sign in first: POST /api/v1/login with {\"user\", \"password\"} (or set up the first user with POST /api/v1/setup)".into(),
        );
    };
    let safe = method == Method::GET || method == Method::HEAD;
    let harmless = method == Method::POST && VIEWER_POSTS.contains(&req.uri().path());
    if !safe && !harmless && session.role == Role::Viewer {
        return message(
            StatusCode::FORBIDDEN,
            "",
            format!(
                "user `{}` has the viewer role, which can look but not change; ask an administrator",
                session.user
            ),
        );
    }
    if !safe {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same(sent, &session.csrf) {
            return message(
                StatusCode::FORBIDDEN,
                "",
                "missing or wrong X-CSRF-Token header; send the token GET /api/v1/session returns"
                    .into(),
            );
        }
    }
    req.extensions_mut().insert(Principal(session.user));
    next.run(req).await
}

#[derive(Clone)]
pub(crate) struct AuthState {
    pub auth: Auth,
    pub activity: Activity,
}

fn credentials(headers: &HeaderMap, body: &str) -> Result<(String, String), Response> {
    let json_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_type {
        return Err(message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "",
            "send the credentials as Content-Type: application/json".into(),
        ));
    }
    let v: Value = serde_json::from_str(body).map_err(|e| {
        message(
            StatusCode::BAD_REQUEST,
            "",
            format!("body is not JSON: {e}"),
        )
    })?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Ok((field("user"), field("password")))
}

fn signed_in(auth: &Auth, user: &str, role: Role, status: StatusCode) -> Response {
    let (token, csrf) = auth.open_session(user, role);
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        auth.lifetime.as_secs()
    );
    let body = json!({ "user": user, "role": role.as_str(), "csrf": csrf });
    let mut resp = json_response(status, &body);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /api/v1/session`: who is signed in (and the CSRF token), or 401 with
/// `setupRequired` when no user exists yet.
pub(crate) async fn session(State(s): State<AuthState>, headers: HeaderMap) -> Response {
    match cookie_token(&headers).and_then(|t| s.auth.session(&t)) {
        Some(sess) => json_response(
            StatusCode::OK,
            &json!({ "user": sess.user, "role": sess.role.as_str(), "csrf": sess.csrf }),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            &json!({ "setupRequired": s.auth.user_names().is_empty() }),
        ),
    }
}

/// `POST /api/v1/setup` `{"user","password"}`: the first user, only while there is none.
pub(crate) async fn setup(
    State(s): State<AuthState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (user, password) = match credentials(&headers, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = s.auth.add_user(&user, &password, Role::Admin, true).await {
        return r;
    }
    s.activity.record(&user, "set up", &format!("User/{user}"));
    signed_in(&s.auth, &user, Role::Admin, StatusCode::CREATED)
}

/// `POST /api/v1/login` `{"user","password"}`.
pub(crate) async fn login(
    State(s): State<AuthState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (user, password) = match credentials(&headers, &body) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if s.auth.locked_out(&user) {
        return message(
            StatusCode::TOO_MANY_REQUESTS,
            "",
            format!("too many failed sign-ins for `{user}`; wait a minute and try again"),
        );
    }
    let ok = s.auth.verify(&user, &password).await;
    s.auth.count_failure(&user, !ok);
    let role = s.auth.role_of(&user);
    let Some(role) = role.filter(|_| ok) else {
        return message(
            StatusCode::UNAUTHORIZED,
            "",
            "wrong user name or password".into(),
        );
    };
    s.activity.record(&user, "signed in", "");
    signed_in(&s.auth, &user, role, StatusCode::OK)
}

/// `POST /api/v1/logout`: ends the session and clears the cookie.
pub(crate) async fn logout(State(s): State<AuthState>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie_token(&headers) {
        s.auth.inner.lock().sessions.remove(&t);
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&clear) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `GET /api/v1/users`.
pub(crate) async fn list_users(State(s): State<AuthState>) -> Response {
    let items: Vec<Value> = s
        .auth
        .user_names()
        .into_iter()
        .map(|(n, role)| json!({ "name": n, "role": role.as_str() }))
        .collect();
    json_response(StatusCode::OK, &json!({ "items": items }))
}

/// `POST /api/v1/users` `{"user","password","role"}`: another user (administrators only,
/// as for every change); `role` is `admin` or `viewer`, `viewer` when left out.
pub(crate) async fn add_user(
    State(s): State<AuthState>,
    axum::Extension(who): axum::Extension<Principal>,
    body: String,
) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let user = field("user");
    let role = match field("role").as_str() {
        "" => Role::Viewer,
        r => match Role::parse(r) {
            Some(role) => role,
            None => {
                return message(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "role",
                    format!("unknown role `{r}`; use admin or viewer"),
                )
            }
        },
    };
    if let Err(r) = s
        .auth
        .add_user(&user, &field("password"), role, false)
        .await
    {
        return r;
    }
    s.activity
        .record(&who.0, "created", &format!("User/{user}"));
    json_response(
        StatusCode::CREATED,
        &json!({ "name": user, "role": role.as_str() }),
    )
}

/// `DELETE /api/v1/users/{name}`.
pub(crate) async fn delete_user(
    State(s): State<AuthState>,
    axum::Extension(who): axum::Extension<Principal>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    if let Err(r) = s.auth.remove_user(&name) {
        return r;
    }
    s.activity
        .record(&who.0, "deleted", &format!("User/{name}"));
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_sessions_are_refused_and_swept_at_the_next_sign_in() {
        let auth = Auth::open(None, SessionLifetime(Duration::from_millis(300)));
        let old: Vec<String> = (0..5)
            .map(|_| auth.open_session("a", Role::Admin).0)
            .chain((0..3).map(|_| auth.open_session("b", Role::Viewer).0))
            .collect();
        assert!(old.iter().all(|t| auth.session(t).is_some()));
        assert_eq!(auth.inner.lock().sessions.len(), 8);
        std::thread::sleep(Duration::from_millis(800));

        // Looking one up after its lifetime refuses and drops it; the rest are dropped by
        // the next sign-in, whoever it is: the table holds only the live session.
        assert!(auth.session(&old[0]).is_none());
        assert_eq!(auth.inner.lock().sessions.len(), 7);
        let (fresh, _) = auth.open_session("c", Role::Admin);
        assert_eq!(auth.inner.lock().sessions.len(), 1);
        assert!(auth.session(&fresh).is_some_and(|s| s.user == "c"));
        assert!(old.iter().all(|t| auth.session(t).is_none()));
    }

    #[test]
    fn signing_in_past_the_per_user_bound_ends_that_users_oldest_sessions() {
        let auth = Auth::open(None, SessionLifetime::DEFAULT);
        let other: Vec<String> = (0..2)
            .map(|_| auth.open_session("b", Role::Admin).0)
            .collect();
        let tokens: Vec<String> = (0..MAX_SESSIONS_PER_USER + 10)
            .map(|_| auth.open_session("a", Role::Admin).0)
            .collect();
        assert_eq!(auth.inner.lock().sessions.len(), MAX_SESSIONS_PER_USER + 2);
        let (ended, live) = tokens.split_at(10);
        assert!(ended.iter().all(|t| auth.session(t).is_none()));
        assert!(live.iter().all(|t| auth.session(t).is_some()));
        assert!(
            other.iter().all(|t| auth.session(t).is_some()),
            "another user's sessions stay"
        );
    }
}
