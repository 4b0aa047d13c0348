//! From the registry's devices and assets to what the OPC UA connector runs: one
//! [`EndpointPlan`] per device endpoint that enabled assets use, holding the connection
//! settings and every dataset and event of those assets with its destination.
//!
//! Pure: a [`Snapshot`] in, plans and the problems that keep an asset from running out.
//! Plans compare equal when nothing that matters changed, which is how the connector knows
//! which sessions to restart after a change.

use std::collections::BTreeMap;
use std::time::Duration;

use edgeplane_config::{
    configuration_value, secret_key, secret_name, AssetSpec, Destination, InboundEndpoint,
    SecretData, DEFAULT_NAMESPACE, OPCUA_ENDPOINT_TYPE,
};
use edgeplane_opcua::client::{Auth, Security, SecurityMode, SecurityPolicy};
use edgeplane_registry::Snapshot;

/// Defaults when neither the item nor the asset's defaults say (AIO's: 1 s publishing,
/// 500 ms sampling, queue of 1, no key frames after the first message).
const DEFAULT_PUBLISHING_MS: i64 = 1000;
const DEFAULT_SAMPLING_MS: i64 = 500;
const DEFAULT_QUEUE_SIZE: i64 = 1;
const DEFAULT_KEY_FRAME_COUNT: i64 = 0;

/// The most OPC UA sessions an endpoint's `additionalConfiguration` may ask for with
/// `sessionCount` (an Edgeplane extension; see [`EndpointPlan::sessions`]).
pub const MAX_SESSION_COUNT: i64 = 16;

/// Where a dataset's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An MQTT topic of the local broker.
    Mqtt(MqttTarget),
    /// A state store key (`target: BrokerStateStore`): it holds the dataset's last known
    /// value of every data point, rewritten with each message (every message is a key
    /// frame), so a reader always finds the whole dataset under one key.
    StateStore { key: String },
}

/// An MQTT destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTarget {
    pub topic: String,
    /// 0 or 1.
    pub qos: u8,
    pub retain: bool,
    /// Message expiry in seconds.
    pub ttl: Option<u32>,
}

/// One data point to subscribe to.
#[derive(Debug, Clone, PartialEq)]
pub struct PointPlan {
    pub name: String,
    pub node_id: String,
    pub sampling_interval: Duration,
    pub queue_size: u32,
}

/// One dataset of one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetPlan {
    pub asset: String,
    pub name: String,
    pub publishing_interval: Duration,
    pub key_frame_count: i32,
    pub points: Vec<PointPlan>,
    pub target: Target,
    /// CloudEvents `subject`.
    pub subject: String,
    pub external_asset_id: Option<String>,
}

/// One event of one asset.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPlan {
    pub asset: String,
    /// `group/event`.
    pub name: String,
    pub node_id: String,
    pub publishing_interval: Duration,
    pub queue_size: u32,
    pub target: MqttTarget,
    pub subject: String,
}

/// A session to one device endpoint and what it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointPlan {
    pub device: String,
    pub endpoint: String,
    pub url: String,
    pub auth: Auth,
    pub security: Security,
    pub auto_accept: bool,
    /// How many OPC UA sessions to spread the datasets over, from the endpoint's
    /// `additionalConfiguration` `{"sessionCount": N}` (1 to [`MAX_SESSION_COUNT`]);
    /// `None`: the connector's default (see `session::session_count`).
    pub sessions: Option<usize>,
    pub assets: Vec<String>,
    pub datasets: Vec<DatasetPlan>,
    pub events: Vec<EventPlan>,
}

/// What the connector should run, and why the rest does not run.
#[derive(Debug, Default)]
pub struct Plans {
    /// By (device, endpoint).
    pub endpoints: BTreeMap<(String, String), EndpointPlan>,
    /// Assets that do not run: name to the reason (`None`: disabled).
    pub idle_assets: BTreeMap<String, Option<String>>,
    /// Device endpoints that cannot run: (device, endpoint) to the reason (`None`:
    /// disabled).
    pub idle_endpoints: BTreeMap<(String, String), Option<String>>,
}

/// Plan every enabled asset of `snapshot`.
pub fn plan(snapshot: &Snapshot) -> Plans {
    let mut plans = Plans::default();
    for (name, (asset, namespace)) in &snapshot.assets {
        if !asset.enabled {
            plans.idle_assets.insert(name.clone(), None);
            continue;
        }
        let device_name = &asset.device_ref.device_name;
        let endpoint_name = &asset.device_ref.endpoint_name;
        let key = (device_name.clone(), endpoint_name.clone());
        let Some((device, _)) = snapshot.devices.get(device_name) else {
            plans.idle_assets.insert(
                name.clone(),
                Some(format!("device `{device_name}` not found")),
            );
            continue;
        };
        if !device.enabled {
            plans.idle_assets.insert(
                name.clone(),
                Some(format!("device `{device_name}` is disabled")),
            );
            plans.idle_endpoints.insert(key, None);
            continue;
        }
        let Some(endpoint) = device.endpoints.inbound.get(endpoint_name) else {
            plans.idle_assets.insert(
                name.clone(),
                Some(format!(
                    "device `{device_name}` has no inbound endpoint `{endpoint_name}`"
                )),
            );
            continue;
        };
        if !plans.endpoints.contains_key(&key) {
            match endpoint_plan(device_name, endpoint_name, endpoint, &snapshot.secrets) {
                Ok(p) => {
                    plans.endpoints.insert(key.clone(), p);
                }
                Err(why) => {
                    plans.idle_assets.insert(name.clone(), Some(why.clone()));
                    plans.idle_endpoints.insert(key, Some(why));
                    continue;
                }
            }
        }
        match asset_plan(name, asset, namespace.as_deref()) {
            Ok((datasets, events)) => {
                if let Some(p) = plans.endpoints.get_mut(&key) {
                    p.assets.push(name.clone());
                    p.datasets.extend(datasets);
                    p.events.extend(events);
                }
            }
            Err(why) => {
                plans.idle_assets.insert(name.clone(), Some(why));
            }
        }
    }
    plans
}

fn endpoint_plan(
    device: &str,
    endpoint_name: &str,
    endpoint: &InboundEndpoint,
    secrets: &BTreeMap<String, SecretData>,
) -> Result<EndpointPlan, String> {
    if !endpoint
        .endpoint_type
        .eq_ignore_ascii_case(OPCUA_ENDPOINT_TYPE)
    {
        return Err(format!(
            "endpoint type {} is not supported; use {OPCUA_ENDPOINT_TYPE}",
            endpoint.endpoint_type
        ));
    }
    let auth = match &endpoint.authentication {
        None => Auth::Anonymous,
        Some(a) => match (a.method.as_str(), &a.username_password_credentials) {
            ("UsernamePassword", Some(c)) => Auth::UsernamePassword {
                username: secret_text(secrets, &c.username_secret_name, "username")?,
                password: secret_text(secrets, &c.password_secret_name, "password")?,
            },
            ("Certificate", _) => {
                return Err(
                    "user certificates are not supported by the connector yet; use \
                     UsernamePassword or Anonymous"
                        .into(),
                )
            }
            _ => Auth::Anonymous,
        },
    };
    let security = endpoint.security();
    let mode = match security.mode.as_deref() {
        None => None,
        Some("None") => Some(SecurityMode::None),
        Some("Sign") => Some(SecurityMode::Sign),
        Some(_) => Some(SecurityMode::SignAndEncrypt),
    };
    let policy = match security.policy.as_deref() {
        Some("None") => Some(SecurityPolicy::None),
        Some("Basic256Sha256") => Some(SecurityPolicy::Basic256Sha256),
        Some("Aes128_Sha256_RsaOaep") => Some(SecurityPolicy::Aes128Sha256RsaOaep),
        Some("Aes256_Sha256_RsaPss") => Some(SecurityPolicy::Aes256Sha256RsaPss),
        _ => None,
    };
    let security = match (mode, policy) {
        (None, None) => Security::MostSecure,
        (Some(SecurityMode::None), _) | (None, Some(SecurityPolicy::None)) => {
            Security::Require(SecurityMode::None, SecurityPolicy::None)
        }
        (Some(m), p) => Security::Require(m, p.unwrap_or(SecurityPolicy::Basic256Sha256)),
        (None, Some(p)) => Security::Require(SecurityMode::SignAndEncrypt, p),
    };
    Ok(EndpointPlan {
        device: device.to_owned(),
        endpoint: endpoint_name.to_owned(),
        url: endpoint.address.clone(),
        auth,
        security,
        auto_accept: security_auto_accept(endpoint),
        sessions: session_count(endpoint)?,
        assets: Vec::new(),
        datasets: Vec::new(),
        events: Vec::new(),
    })
}

/// The endpoint's `sessionCount`, if it sets one; an error in words if it is not a whole
/// number from 1 to [`MAX_SESSION_COUNT`].
fn session_count(endpoint: &InboundEndpoint) -> Result<Option<usize>, String> {
    let parsed: Option<serde_json::Value> = endpoint
        .additional_configuration
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok());
    let Some(value) = parsed.as_ref().and_then(|v| v.get("sessionCount")) else {
        return Ok(None);
    };
    value
        .as_i64()
        .filter(|n| (1..=MAX_SESSION_COUNT).contains(n))
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            format!(
                "additionalConfiguration sessionCount {value} is not a whole number from 1 to \
                 {MAX_SESSION_COUNT}; use e.g. {{\"sessionCount\": 2}} or leave it out"
            )
        })
}

fn security_auto_accept(endpoint: &InboundEndpoint) -> bool {
    endpoint
        .security()
        .auto_accept_untrusted_server_certificates
}

/// The text of `reference` (`secret` or `secret/key`); without a key, `default_key` or the
/// Secret's only key.
fn secret_text(
    secrets: &BTreeMap<String, SecretData>,
    reference: &str,
    default_key: &str,
) -> Result<String, String> {
    let name = secret_name(reference);
    let secret = secrets
        .get(name)
        .ok_or_else(|| format!("Secret `{name}` not found; add it to the configuration folder"))?;
    let value = match secret_key(reference) {
        Some(key) => secret.data.get(key),
        None => secret.data.get(default_key).or_else(|| {
            (secret.data.len() == 1)
                .then(|| secret.data.values().next())
                .flatten()
        }),
    };
    let value = value.ok_or_else(|| {
        format!(
            "Secret `{name}` has no key `{}`; add it or name the key as {name}/KEY",
            secret_key(reference).unwrap_or(default_key)
        )
    })?;
    String::from_utf8(value.clone()).map_err(|_| format!("Secret `{name}` holds no text"))
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

fn asset_plan(
    name: &str,
    asset: &AssetSpec,
    namespace: Option<&str>,
) -> Result<(Vec<DatasetPlan>, Vec<EventPlan>), String> {
    let default_topic = format!("{}/data/{name}", namespace.unwrap_or(DEFAULT_NAMESPACE));
    let defaults = asset.default_datasets_configuration.as_deref();
    let mut datasets = Vec::new();
    for ds in &asset.datasets {
        let own = ds.dataset_configuration.as_deref();
        let value = |key, default| configuration_value(own, defaults, key).unwrap_or(default);
        let destination = ds
            .destinations
            .first()
            .or(asset.default_datasets_destinations.first());
        let points = ds
            .data_points
            .iter()
            .map(|p| {
                let own = p.data_point_configuration.as_deref();
                let sampling = configuration_value(own, None, "samplingInterval")
                    .unwrap_or_else(|| value("samplingInterval", DEFAULT_SAMPLING_MS));
                let queue = configuration_value(own, None, "queueSize")
                    .unwrap_or_else(|| value("queueSize", DEFAULT_QUEUE_SIZE));
                PointPlan {
                    name: p.name.clone(),
                    node_id: p.data_source.clone(),
                    sampling_interval: ms(sampling),
                    queue_size: u32::try_from(queue).unwrap_or(1),
                }
            })
            .collect();
        datasets.push(DatasetPlan {
            asset: name.to_owned(),
            name: ds.name.clone(),
            publishing_interval: ms(value("publishingInterval", DEFAULT_PUBLISHING_MS)),
            key_frame_count: i32::try_from(value("keyFrameCount", DEFAULT_KEY_FRAME_COUNT))
                .unwrap_or(0),
            points,
            target: dataset_target(destination, &default_topic, &format!("dataset {}", ds.name))?,
            subject: name.to_owned(),
            external_asset_id: asset.external_asset_id.clone(),
        });
    }
    let event_defaults = asset.default_events_configuration.as_deref();
    let mut events = Vec::new();
    for group in &asset.event_groups {
        for ev in &group.events {
            let own = ev.event_configuration.as_deref();
            let value =
                |key, default| configuration_value(own, event_defaults, key).unwrap_or(default);
            let destination = ev
                .destinations
                .first()
                .or(group.default_destinations.first())
                .or(asset.default_events_destinations.first());
            let what = format!("event {}/{}", group.name, ev.name);
            events.push(EventPlan {
                asset: name.to_owned(),
                name: format!("{}/{}", group.name, ev.name),
                node_id: ev.data_source.clone(),
                publishing_interval: ms(value("publishingInterval", DEFAULT_PUBLISHING_MS)),
                queue_size: u32::try_from(value("queueSize", 100)).unwrap_or(100),
                target: target(destination, &default_topic, &what)?,
                subject: name.to_owned(),
            });
        }
    }
    Ok((datasets, events))
}

/// A dataset's destination: MQTT or a state store key.
fn dataset_target(
    destination: Option<&Destination>,
    default_topic: &str,
    what: &str,
) -> Result<Target, String> {
    match destination {
        Some(d) if d.target == "BrokerStateStore" => match d.configuration.key.as_deref() {
            Some(key) if !key.is_empty() => Ok(Target::StateStore {
                key: key.to_owned(),
            }),
            _ => Err(format!(
                "the BrokerStateStore destination of {what} needs `configuration: {{key: NAME}}`"
            )),
        },
        _ => target(destination, default_topic, what).map(Target::Mqtt),
    }
}

/// An MQTT destination (events always go to MQTT).
fn target(
    destination: Option<&Destination>,
    default_topic: &str,
    what: &str,
) -> Result<MqttTarget, String> {
    let Some(d) = destination else {
        return Ok(MqttTarget {
            topic: default_topic.to_owned(),
            qos: 1,
            retain: false,
            ttl: None,
        });
    };
    if d.target != "Mqtt" {
        return Err(format!(
            "the {} destination of {what} is not supported by the connector yet; use Mqtt or, for a dataset, BrokerStateStore",
            d.target
        ));
    }
    let c = &d.configuration;
    Ok(MqttTarget {
        topic: c.topic.clone().unwrap_or_else(|| default_topic.to_owned()),
        qos: u8::from(c.qos.as_deref() != Some("Qos0")),
        retain: c.retain.as_deref() == Some("Keep"),
        ttl: c.ttl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeplane_registry::{Registry, RegistryKind};

    const FOLDER: &str = r#"apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {username: op, pw: s3cret}
---
apiVersion: edgeplane.io/v1
kind: Device
metadata: {name: plc}
spec:
  endpoints:
    inbound:
      main:
        endpointType: Microsoft.OpcUa
        address: opc.tcp://plc:4840
        authentication:
          method: UsernamePassword
          usernamePasswordCredentials: {usernameSecretName: creds, passwordSecretName: creds/pw}
        additionalConfiguration: '{"security":{"securityMode":"Sign"}, "sessionCount": 3}'
---
apiVersion: edgeplane.io/v1
kind: Asset
metadata: {name: oven, namespace: plant}
spec:
  deviceRef: {deviceName: plc, endpointName: main}
  defaultDatasetsConfiguration: '{"publishingInterval": 250, "samplingInterval": 50}'
  datasets:
  - name: a
    dataPoints:
    - {name: t, dataSource: ns=2;s=T, dataPointConfiguration: '{"queueSize": 4}'}
  - name: b
    datasetConfiguration: '{"publishingInterval": 1000}'
    dataPoints: [{name: p, dataSource: ns=2;s=P}]
    destinations: [{target: Mqtt, configuration: {topic: custom/b, qos: Qos0, retain: Keep}}]
  - name: c
    dataPoints: [{name: q, dataSource: ns=2;s=Q}]
    destinations: [{target: BrokerStateStore, configuration: {key: oven/latest}}]
---
apiVersion: edgeplane.io/v1
kind: Asset
metadata: {name: idle}
spec:
  enabled: false
  deviceRef: {deviceName: plc, endpointName: main}
"#;

    fn plans() -> Plans {
        let config = edgeplane_config::load_str("t.yaml", FOLDER).expect("folder loads");
        let registry = Registry::open(None).expect("registry");
        registry.apply_config(&config);
        assert_eq!(registry.list(RegistryKind::Asset).len(), 2);
        plan(&registry.snapshot())
    }

    #[test]
    fn one_session_per_endpoint_with_settings_and_defaults() {
        let plans = plans();
        let p = &plans.endpoints[&("plc".to_owned(), "main".to_owned())];
        assert_eq!(p.url, "opc.tcp://plc:4840");
        assert_eq!(
            p.auth,
            Auth::UsernamePassword {
                username: "op".into(),
                password: "s3cret".into()
            }
        );
        assert_eq!(
            p.security,
            Security::Require(SecurityMode::Sign, SecurityPolicy::Basic256Sha256)
        );
        assert_eq!(p.assets, ["oven"]);
        assert_eq!(p.sessions, Some(3));
        let a = &p.datasets[0];
        let Target::Mqtt(t) = &a.target else {
            panic!("dataset a goes to MQTT: {:?}", a.target)
        };
        assert_eq!(t.topic, "plant/data/oven");
        assert_eq!((t.qos, t.retain), (1, false));
        assert_eq!(a.publishing_interval, Duration::from_millis(250));
        assert_eq!(a.points[0].sampling_interval, Duration::from_millis(50));
        assert_eq!(a.points[0].queue_size, 4);
        let b = &p.datasets[1];
        assert_eq!(b.publishing_interval, Duration::from_millis(1000));
        assert_eq!(
            b.target,
            Target::Mqtt(MqttTarget {
                topic: "custom/b".into(),
                qos: 0,
                retain: true,
                ttl: None
            })
        );
        assert_eq!(
            p.datasets[2].target,
            Target::StateStore {
                key: "oven/latest".into()
            }
        );
        assert_eq!(plans.idle_assets.get("idle"), Some(&None));
    }

    #[test]
    fn a_bad_session_count_keeps_the_endpoint_idle_with_the_reason() {
        for bad in ["0", "17", "1.5", "\"two\""] {
            let folder =
                FOLDER.replace(r#""sessionCount": 3"#, &format!(r#""sessionCount": {bad}"#));
            let config = edgeplane_config::load_str("t.yaml", &folder).expect("folder loads");
            let registry = Registry::open(None).expect("registry");
            registry.apply_config(&config);
            let plans = plan(&registry.snapshot());
            assert!(plans.endpoints.is_empty(), "sessionCount {bad} accepted");
            let why = plans.idle_endpoints[&("plc".to_owned(), "main".to_owned())]
                .clone()
                .unwrap_or_default();
            assert!(why.contains("sessionCount"), "{bad}: {why}");
            assert!(
                plans.idle_assets["oven"].is_some(),
                "{bad}: the asset says why"
            );
        }
    }

    #[test]
    fn unchanged_resources_give_an_equal_plan() {
        assert_eq!(plans().endpoints, plans().endpoints);
    }
}
