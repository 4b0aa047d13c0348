//! Runtime status of devices and assets as the connector reports it: a state, the last
//! error in words, and when it last changed. Kept in memory (it describes this process's
//! connections), served by the API.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use serde::Serialize;

/// The state of a connection, or of an asset's data flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "camelCase")]
pub enum ConnectionState {
    /// Trying to connect (first attempt or after losing the connection).
    Connecting,
    /// Connected; data flows.
    Connected,
    /// The last attempt failed or the configuration cannot run; the text says why and what
    /// to do.
    Error(String),
    /// Disabled in its spec (`enabled: false`, or its device is disabled).
    Disabled,
    /// A device endpoint no enabled asset uses: no session is open.
    Unused,
}

impl ConnectionState {
    fn name(&self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Error(_) => "error",
            ConnectionState::Disabled => "disabled",
            ConnectionState::Unused => "unused",
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            ConnectionState::Error(e) => Some(e.clone()),
            _ => None,
        }
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The status of one device endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStatus {
    /// `connecting`, `connected`, `error`, `disabled` or `unused`.
    pub state: String,
    /// The last error in words, kept after a recovery until the next one.
    pub last_error: Option<String>,
    /// The current error, if the state is `error`.
    pub error: Option<String>,
    /// When the state last changed (RFC 3339).
    pub last_update: String,
}

impl EndpointStatus {
    pub(crate) fn now(state: ConnectionState) -> Self {
        EndpointStatus {
            state: state.name().to_owned(),
            last_error: state.error(),
            error: state.error(),
            last_update: now(),
        }
    }

    fn update(&mut self, state: ConnectionState) {
        if self.state == state.name() && self.error == state.error() {
            return;
        }
        self.state = state.name().to_owned();
        self.error = state.error();
        if let Some(e) = state.error() {
            self.last_error = Some(e);
        }
        self.last_update = now();
    }
}

/// The status of a device: one entry per inbound endpoint the connector serves.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStatus {
    pub endpoints: BTreeMap<String, EndpointStatus>,
}

impl DeviceStatus {
    pub(crate) fn update(&mut self, endpoint: &str, state: ConnectionState) {
        match self.endpoints.get_mut(endpoint) {
            Some(s) => s.update(state),
            None => {
                self.endpoints
                    .insert(endpoint.to_owned(), EndpointStatus::now(state));
            }
        }
    }
}

/// The status of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetStatus {
    #[serde(flatten)]
    pub connection: EndpointStatus,
    /// Messages published to its destinations since this process started.
    pub messages_published: u64,
}

impl Default for AssetStatus {
    fn default() -> Self {
        AssetStatus {
            connection: EndpointStatus {
                state: "unknown".into(),
                last_error: None,
                error: None,
                last_update: now(),
            },
            messages_published: 0,
        }
    }
}

impl AssetStatus {
    pub(crate) fn update(&mut self, state: ConnectionState) {
        self.connection.update(state);
    }
}
