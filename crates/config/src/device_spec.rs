//! Typed views of the `Device` and `Asset` specs for the OPC UA connector: the field
//! tables in `device.rs` have checked the documents; these structs read them with serde.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value as Json;

use crate::device::POLICY_PREFIX;

/// A Device's spec, as the connector uses it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub external_device_id: Option<String>,
    #[serde(default)]
    pub endpoints: DeviceEndpoints,
}

/// `spec.endpoints`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceEndpoints {
    #[serde(default)]
    pub inbound: BTreeMap<String, InboundEndpoint>,
}

/// One inbound endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundEndpoint {
    pub address: String,
    pub endpoint_type: String,
    #[serde(default)]
    pub authentication: Option<Authentication>,
    #[serde(default)]
    pub additional_configuration: Option<String>,
}

/// How the connector authenticates to the endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Authentication {
    pub method: String,
    #[serde(default)]
    pub username_password_credentials: Option<UsernamePasswordCredentials>,
    #[serde(default)]
    pub x509_credentials: Option<X509Credentials>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsernamePasswordCredentials {
    pub username_secret_name: String,
    pub password_secret_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct X509Credentials {
    pub certificate_secret_name: String,
    #[serde(default)]
    pub key_secret_name: Option<String>,
}

/// The security choice in `additionalConfiguration.security`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointSecurity {
    /// `None`, `Sign` or `SignAndEncrypt`; `None` (absent) means the most secure offered.
    pub mode: Option<String>,
    /// Short policy name (`Basic256Sha256`), without the URI prefix.
    pub policy: Option<String>,
    pub auto_accept_untrusted_server_certificates: bool,
}

impl InboundEndpoint {
    /// The security settings written in `additionalConfiguration` (defaults when absent).
    pub fn security(&self) -> EndpointSecurity {
        let parsed: Option<Json> = self
            .additional_configuration
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok());
        let security = parsed.as_ref().and_then(|v| v.get("security"));
        let text = |key: &str| {
            security
                .and_then(|s| s.get(key))
                .and_then(Json::as_str)
                .map(|s| s.trim_start_matches(POLICY_PREFIX).to_owned())
        };
        EndpointSecurity {
            mode: text("securityMode"),
            policy: text("securityPolicy"),
            auto_accept_untrusted_server_certificates: security
                .and_then(|s| s.get("autoAcceptUntrustedServerCertificates"))
                .and_then(Json::as_bool)
                .unwrap_or(false),
        }
    }
}

/// An Asset's spec, as the connector uses it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetSpec {
    pub device_ref: DeviceRef,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub external_asset_id: Option<String>,
    #[serde(default)]
    pub datasets: Vec<AssetDataset>,
    #[serde(default)]
    pub event_groups: Vec<AssetEventGroup>,
    #[serde(default)]
    pub default_datasets_configuration: Option<String>,
    #[serde(default)]
    pub default_datasets_destinations: Vec<Destination>,
    #[serde(default)]
    pub default_events_configuration: Option<String>,
    #[serde(default)]
    pub default_events_destinations: Vec<Destination>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRef {
    pub device_name: String,
    pub endpoint_name: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetDataset {
    pub name: String,
    #[serde(default)]
    pub dataset_configuration: Option<String>,
    #[serde(default)]
    pub data_points: Vec<AssetDataPoint>,
    #[serde(default)]
    pub destinations: Vec<Destination>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetDataPoint {
    pub name: String,
    pub data_source: String,
    #[serde(default)]
    pub data_point_configuration: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetEventGroup {
    pub name: String,
    #[serde(default)]
    pub events: Vec<AssetEvent>,
    #[serde(default)]
    pub default_destinations: Vec<Destination>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssetEvent {
    pub name: String,
    pub data_source: String,
    #[serde(default)]
    pub event_configuration: Option<String>,
    #[serde(default)]
    pub destinations: Vec<Destination>,
}

/// Where a dataset's or event's messages go.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// `Mqtt` or `BrokerStateStore`.
    pub target: String,
    #[serde(default)]
    pub configuration: DestinationConfiguration,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationConfiguration {
    #[serde(default)]
    pub topic: Option<String>,
    /// `Qos0` or `Qos1`.
    #[serde(default)]
    pub qos: Option<String>,
    /// `Keep` or `Never`.
    #[serde(default)]
    pub retain: Option<String>,
    /// Message expiry in seconds.
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub key: Option<String>,
}

/// An integer setting of a JSON configuration text (`datasetConfiguration` and the like),
/// falling back to `fallback`'s.
pub fn configuration_value(text: Option<&str>, fallback: Option<&str>, key: &str) -> Option<i64> {
    let read = |t: Option<&str>| {
        t.and_then(|t| serde_json::from_str::<Json>(t).ok())
            .and_then(|v| v.get(key).and_then(Json::as_i64))
    };
    read(text).or_else(|| read(fallback))
}

fn yes() -> bool {
    true
}
