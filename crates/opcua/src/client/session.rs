//! The supervisor task that owns one OPC UA session of an endpoint.
//!
//! Each round: GetEndpoints on the configured URL, choose an endpoint, build a session and
//! drive its event loop on a helper task, create the plan's subscriptions, then wait until
//! the connection is lost, the server forces a new session, or the connection is stopped.
//! The library reconnects a lost channel once (reactivating the same session, whose
//! subscriptions survive); anything else ends the round and the next one starts after the
//! backoff with a brand-new session. Status changes go to the session's slot of the
//! endpoint's [`StatusBoard`]; failures are described in words by [`describe`].

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use opcua_client::{
    Client, ClientBuilder, IdentityToken, Password, Session, SessionConnectMode, SessionPollResult,
};
use opcua_core::comms::url::{hostname_from_url, url_with_replaced_hostname};
use opcua_crypto::{SecurityPolicy as UaPolicy, X509};
use opcua_types::{EndpointDescription, MessageSecurityMode, StatusCode, UserTokenType};
use tokio::sync::{mpsc, watch};

/// Held while a client is built: async-opcua creates the application instance certificate
/// when it is missing and refuses to overwrite one that appeared meanwhile, so two
/// connections starting at once (two endpoints, or the sessions of one) would otherwise
/// race and leave the loser without its certificate.
static PKI_CREATION: std::sync::Mutex<()> = std::sync::Mutex::new(());

use super::status::StatusBoard;
use super::subscribe::{create_all, Plan, Sink};
use super::{
    pki, Auth, ClientError, Counters, EndpointConfig, EndpointStatus, Notification, Security,
    SecurityMode, SecurityPolicy,
};

/// Builds the async-opcua client: creates the application instance certificate in the
/// PKI directory if it is not there yet.
pub(crate) fn build_client(cfg: &EndpointConfig) -> Result<Client, ClientError> {
    // Poisoned only if a build panicked; the files it may have written are checked below.
    let _creating = PKI_CREATION.lock().unwrap_or_else(|e| e.into_inner());
    let builder = ClientBuilder::new()
        .application_name(cfg.application_name.as_str())
        .application_uri(cfg.application_uri.as_str())
        .product_uri("urn:edgeplane:opcua-connector:product")
        .pki_dir(&cfg.pki_dir)
        .create_sample_keypair(true)
        .trust_server_certs(cfg.auto_accept_untrusted_server_certs)
        .verify_server_certs(true)
        .session_retry_limit(0)
        .recreate_subscriptions(false)
        .keep_alive_interval(cfg.keep_alive_interval)
        .max_failed_keep_alive_count(3)
        .request_timeout(cfg.request_timeout)
        // The library's 100 ms floor between publish requests would hold back datasets
        // with shorter publishing intervals (and add up to 100 ms of latency to each).
        .min_publish_interval(Duration::from_millis(10))
        .session_timeout(60_000);
    let client = builder
        .client()
        .map_err(|errors| ClientError::Config(errors.join("; ")))?;
    if !cfg.pki_dir.join("own/cert.der").exists() {
        return Err(ClientError::Config(format!(
            "no application instance certificate could be created in {}; check that the directory is writable",
            cfg.pki_dir.display()
        )));
    }
    Ok(client)
}

/// Everything the supervisor task owns.
pub(crate) struct Supervisor {
    pub(crate) config: EndpointConfig,
    pub(crate) client: Client,
    pub(crate) plan: Arc<Plan>,
    pub(crate) tx: mpsc::Sender<Notification>,
    pub(crate) status: Arc<StatusBoard>,
    /// This session's slot on the board.
    pub(crate) slot: usize,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) counters: Arc<Counters>,
}

/// How a round ended.
enum Round {
    /// Was connected, then lost the connection or the session: retry at once.
    Lost,
    /// Could not connect; the message says why.
    Failed(String),
    /// Asked to stop.
    Stopped,
}

/// What the event-loop task reports.
enum LoopEvent {
    Connected,
    NewSession,
    Lost,
    Ended(StatusCode),
}

impl Supervisor {
    pub(crate) async fn run(mut self) {
        let mut delay = self.config.reconnect.initial;
        loop {
            match self.round().await {
                Round::Stopped => return,
                Round::Lost => {
                    // Was connected: start over from the shortest wait (which also keeps a
                    // server that accepts and then drops us from causing a busy loop).
                    delay = self.config.reconnect.initial;
                    self.set_status(EndpointStatus::Connecting);
                }
                Round::Failed(why) => {
                    tracing::warn!(url = %self.config.url, session = self.slot, error = %why, "opc ua connection failed");
                    self.set_status(EndpointStatus::Error(why));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => return,
            }
            delay = (delay * 2).min(self.config.reconnect.max);
        }
    }

    fn set_status(&self, status: EndpointStatus) {
        self.status.set(self.slot, status);
    }

    async fn round(&mut self) -> Round {
        let url = self.config.url.clone();
        let endpoints = tokio::select! {
            r = self.client.get_server_endpoints_from_url(url.as_str()) => r,
            _ = self.stop.changed() => return Round::Stopped,
        };
        let endpoints = match endpoints {
            Ok(e) => e,
            Err(e) => {
                return Round::Failed(format!(
                    "cannot reach {url}: {}",
                    describe_status(e.status())
                ))
            }
        };
        let endpoint = match choose_endpoint(&self.config, &endpoints) {
            Ok(e) => e,
            Err(why) => return Round::Failed(why),
        };
        let token = match identity_token(&self.config.auth) {
            Ok(t) => t,
            Err(why) => return Round::Failed(why),
        };
        let (session, event_loop) = match self
            .client
            .connect_to_endpoint_directly(endpoint.clone(), token)
        {
            Ok(s) => s,
            Err(e) => {
                return Round::Failed(format!(
                    "cannot use endpoint {}: {e}",
                    endpoint.endpoint_url
                ))
            }
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        // Aborted on drop too, so an aborted supervisor does not leave the session running.
        let driver = AbortOnDrop(tokio::spawn(drive(event_loop, events_tx)));
        let round = self.serve(&session, &endpoint, &mut events).await;
        if matches!(round, Round::Stopped) {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.disconnect()).await;
        } else {
            session.disable_reconnects();
            let _ = tokio::time::timeout(Duration::from_secs(2), session.disconnect()).await;
        }
        drop(driver);
        round
    }

    async fn serve(
        &mut self,
        session: &Session,
        endpoint: &EndpointDescription,
        events: &mut mpsc::UnboundedReceiver<LoopEvent>,
    ) -> Round {
        let first = tokio::select! {
            e = events.recv() => e,
            _ = self.stop.changed() => return Round::Stopped,
        };
        match first {
            Some(LoopEvent::Connected | LoopEvent::NewSession) => {}
            Some(LoopEvent::Ended(code)) => {
                return Round::Failed(describe(code, &self.config, endpoint))
            }
            Some(LoopEvent::Lost) | None => {
                return Round::Failed("the connection closed while opening the session".into())
            }
        }
        self.counters.sessions.fetch_add(1, Ordering::Relaxed);
        let sink = Sink {
            tx: self.tx.clone(),
            counters: self.counters.clone(),
        };
        let created = tokio::select! {
            r = create_all(session, &self.plan, &sink) => r,
            _ = self.stop.changed() => return Round::Stopped,
        };
        if let Err(e) = created {
            return Round::Failed(format!("cannot create subscriptions: {e}"));
        }
        self.set_status(EndpointStatus::Connected);
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = self.stop.changed() => return Round::Stopped,
            };
            match event {
                Some(LoopEvent::Lost) => self.set_status(EndpointStatus::Connecting),
                Some(LoopEvent::Connected) => self.set_status(EndpointStatus::Connected),
                Some(LoopEvent::NewSession) | Some(LoopEvent::Ended(_)) | None => {
                    return Round::Lost
                }
            }
        }
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls the session event loop, reporting what matters to the supervisor.
async fn drive(
    event_loop: opcua_client::SessionEventLoop<opcua_client::transport::TcpConnector>,
    tx: mpsc::UnboundedSender<LoopEvent>,
) {
    let stream = event_loop.enter();
    tokio::pin!(stream);
    let mut connected_once = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(SessionPollResult::Reconnected(mode)) => {
                let fresh = matches!(mode, SessionConnectMode::NewSession(_));
                let event = if connected_once && fresh {
                    LoopEvent::NewSession
                } else {
                    LoopEvent::Connected
                };
                connected_once = true;
                event
            }
            Ok(SessionPollResult::ConnectionLost(_)) => LoopEvent::Lost,
            Ok(_) => continue,
            Err(code) => {
                let _ = tx.send(LoopEvent::Ended(code));
                return;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
    let _ = tx.send(LoopEvent::Ended(StatusCode::Good));
}

fn identity_token(auth: &Auth) -> Result<IdentityToken, String> {
    Ok(match auth {
        Auth::Anonymous => IdentityToken::Anonymous,
        Auth::UsernamePassword { username, password } => {
            IdentityToken::UserName(username.clone(), Password::new(password.clone()))
        }
        Auth::Certificate { cert, key } => IdentityToken::new_x509_path(cert, key)
            .map_err(|e| format!("cannot load the user certificate {}: {e}", cert.display()))?,
    })
}

fn token_type(auth: &Auth) -> UserTokenType {
    match auth {
        Auth::Anonymous => UserTokenType::Anonymous,
        Auth::UsernamePassword { .. } => UserTokenType::UserName,
        Auth::Certificate { .. } => UserTokenType::Certificate,
    }
}

fn ua_mode(mode: SecurityMode) -> MessageSecurityMode {
    match mode {
        SecurityMode::None => MessageSecurityMode::None,
        SecurityMode::Sign => MessageSecurityMode::Sign,
        SecurityMode::SignAndEncrypt => MessageSecurityMode::SignAndEncrypt,
    }
}

fn ua_policy(policy: SecurityPolicy) -> UaPolicy {
    match policy {
        SecurityPolicy::None => UaPolicy::None,
        SecurityPolicy::Basic256Sha256 => UaPolicy::Basic256Sha256,
        SecurityPolicy::Aes128Sha256RsaOaep => UaPolicy::Aes128Sha256RsaOaep,
        SecurityPolicy::Aes256Sha256RsaPss => UaPolicy::Aes256Sha256RsaPss,
    }
}

/// Picks the endpoint to use and points its URL at the configured host.
fn choose_endpoint(
    cfg: &EndpointConfig,
    endpoints: &[EndpointDescription],
) -> Result<EndpointDescription, String> {
    let wanted = token_type(&cfg.auth);
    let accepts = |e: &&EndpointDescription| {
        e.user_identity_tokens
            .as_ref()
            .is_some_and(|t| t.iter().any(|p| p.token_type == wanted))
            || (wanted == UserTokenType::Anonymous && e.user_identity_tokens.is_none())
    };
    let chosen = match cfg.security {
        Security::MostSecure => endpoints
            .iter()
            .filter(accepts)
            .max_by_key(|e| e.security_level),
        Security::Require(mode, policy) => endpoints.iter().filter(accepts).find(|e| {
            e.security_mode == ua_mode(mode)
                && e.security_policy_uri.as_ref() == ua_policy(policy).to_uri()
        }),
    };
    let Some(endpoint) = chosen else {
        return Err(no_endpoint_message(
            wanted,
            endpoints,
            endpoints.iter().any(|e| accepts(&e)),
        ));
    };
    let mut endpoint = endpoint.clone();
    if let Ok(host) = hostname_from_url(&cfg.url) {
        if let Ok(url) = url_with_replaced_hostname(endpoint.endpoint_url.as_ref(), &host) {
            endpoint.endpoint_url = url.into();
        }
    }
    Ok(endpoint)
}

fn no_endpoint_message(
    wanted: UserTokenType,
    endpoints: &[EndpointDescription],
    token_accepted: bool,
) -> String {
    if !token_accepted {
        let mut accepted: Vec<String> = endpoints
            .iter()
            .flat_map(|e| e.user_identity_tokens.iter().flatten())
            .map(|p| token_name(p.token_type).to_owned())
            .collect();
        accepted.sort();
        accepted.dedup();
        return format!(
            "the server does not accept {}; it accepts {}",
            token_name(wanted),
            accepted.join(", ")
        );
    }
    let offered: Vec<String> = endpoints
        .iter()
        .map(|e| format!("{}/{}", e.security_mode, e.security_policy_uri))
        .collect();
    format!(
        "the server offers no endpoint with the requested security for {}; it offers {}",
        token_name(wanted),
        offered.join(", ")
    )
}

fn token_name(t: UserTokenType) -> &'static str {
    match t {
        UserTokenType::Anonymous => "anonymous sessions",
        UserTokenType::UserName => "user name and password",
        UserTokenType::Certificate => "user certificates",
        UserTokenType::IssuedToken => "issued tokens",
    }
}

/// Says in words why a session could not be opened.
fn describe(code: StatusCode, cfg: &EndpointConfig, endpoint: &EndpointDescription) -> String {
    let rejected = X509::from_byte_string(&endpoint.server_certificate)
        .ok()
        .map(|cert| pki::rejected_path(&cfg.pki_dir, &cert));
    match base(code) {
        c if c == StatusCode::BadIdentityTokenRejected
            || c == StatusCode::BadUserAccessDenied
            || c == StatusCode::BadIdentityTokenInvalid =>
        {
            match cfg.auth {
                Auth::Anonymous => format!("the server does not accept anonymous sessions ({code}); configure a user"),
                Auth::UsernamePassword { .. } => format!("bad user or password: the server rejected the credentials ({code})"),
                Auth::Certificate { .. } => format!("the server rejected the user certificate ({code})"),
            }
        }
        c if (c == StatusCode::BadCertificateUntrusted
            || c == StatusCode::BadSecurityChecksFailed)
            && rejected.as_deref().is_some_and(Path::exists) =>
        {
            let path = rejected.unwrap_or_default();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!(
                "server certificate not trusted: saved to {}; trust it with `edgeplane opcua trust {name:?}` or enable autoAcceptUntrustedServerCertificates",
                path.display()
            )
        }
        c if c == StatusCode::BadSecurityChecksFailed || c == StatusCode::BadCertificateUntrusted => format!(
            "the server refused the secure channel ({code}): make sure it trusts this connector's certificate {}",
            cfg.pki_dir.join("own/cert.der").display()
        ),
        c if c == StatusCode::BadCertificateHostNameInvalid => format!(
            "the server certificate does not name the host in {} ({code}); connect with a host name it lists",
            cfg.url
        ),
        c if c == StatusCode::BadCertificateTimeInvalid => {
            format!("the server certificate has expired or is not valid yet ({code})")
        }
        c if c == StatusCode::BadCertificateUriInvalid => {
            format!("the server certificate does not match its application uri ({code})")
        }
        _ => format!("cannot open a session on {}: {}", endpoint.endpoint_url, describe_status(code)),
    }
}

fn describe_status(code: StatusCode) -> String {
    match base(code) {
        c if c == StatusCode::BadCommunicationError
            || c == StatusCode::BadNotConnected
            || c == StatusCode::BadConnectionClosed =>
        {
            format!("no connection ({code}); check the server is running and the address is right")
        }
        c if c == StatusCode::BadTimeout => format!("no answer in time ({code})"),
        _ => code.to_string(),
    }
}

/// The code without its info bits, for comparing against named codes.
fn base(code: StatusCode) -> StatusCode {
    StatusCode::from(code.bits() & 0xFFFF_0000)
}
