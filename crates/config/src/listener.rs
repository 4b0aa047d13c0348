//! The `BrokerListener` kind: the field tables of its spec and the ports it declares.
//!
//! A listener document enters checked against [`DOCUMENT`]; [`read`] checks the rules
//! inside one port (TLS mode versus its settings, authorization needing authentication) and
//! turns each valid port into a [`ListenerPort`], keeping where each reference was written
//! so the cross-resource pass can report unresolved names at the right field and line.
//!
//! Our extensions to the AIO spec: `ports[].maxConnections` and
//! `ports[].maxConnectsPerSecondPerAddress` (abuse limits), and `ports[].bindAddress`, the IP
//! address to bind (default
//! `0.0.0.0`), and `port: 0` for an ephemeral port (tests).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Serialize;

use crate::error::Sink;
use crate::resource::crd_document;
use crate::schema::{index, join, opt, req, EnumDef, Field, Schema};
use crate::yaml::Node;

/// Wire protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Protocol {
    /// MQTT over TCP (or TLS).
    Mqtt,
    /// MQTT over WebSockets (or secure WebSockets).
    WebSockets,
}

/// Server certificate management of a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "mode", rename_all_fields = "camelCase")]
pub enum TlsSettings {
    /// The certificate is issued automatically (cert-manager on Kubernetes).
    Automatic,
    /// The certificate and key come from a `kubernetes.io/tls` Secret in the folder.
    Manual { secret_ref: String },
}

/// One port of one listener: where to bind and how to treat clients that connect there.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerPort {
    /// `metadata.name` of the BrokerListener that declares the port.
    pub listener: String,
    /// Address and port to bind; port 0 asks the OS for a free one.
    pub bind: SocketAddr,
    pub protocol: Protocol,
    /// BrokerAuthentication to apply; `None` means authentication is off.
    pub authentication_ref: Option<String>,
    /// BrokerAuthorization to apply; `None` means authorization is off.
    pub authorization_ref: Option<String>,
    /// `None` means plain TCP.
    pub tls: Option<TlsSettings>,
    /// Our extension `maxConnections`: connections the port holds at once.
    pub max_connections: Option<u32>,
    /// Our extension `maxConnectsPerSecondPerAddress`: new connections accepted per second
    /// from one source address.
    pub max_connects_per_second_per_address: Option<u32>,
}

/// A name written in a field, with where it was written.
#[derive(Debug, Clone)]
pub(crate) struct Ref {
    pub name: String,
    pub path: String,
    pub line: usize,
}

/// A listener document as read: its broker reference and its valid ports.
#[derive(Debug, Clone)]
pub(crate) struct ListenerDoc {
    pub broker_ref: Option<Ref>,
    pub ports: Vec<PortDoc>,
}

/// A valid port with the places its references and bind address were written.
#[derive(Debug, Clone)]
pub(crate) struct PortDoc {
    pub port: ListenerPort,
    /// `spec.ports[i]`.
    pub path: String,
    /// Line of the `port` value.
    pub line: usize,
    pub secret_ref: Option<Ref>,
    pub authentication_ref: Option<Ref>,
    pub authorization_ref: Option<Ref>,
}

pub(crate) static DOCUMENT: [Field; 5] = crd_document(true, Schema::Object(&SPEC));

static SPEC: [Field; 4] = [
    opt("brokerRef", Schema::Str),
    opt("serviceName", Schema::Str),
    opt(
        "serviceType",
        Schema::Enum(&EnumDef {
            values: &["ClusterIp", "LoadBalancer", "NodePort"],
            aliases: &[],
        }),
    ),
    req("ports", Schema::List(&Schema::Object(&PORT))),
];

static PORT: [Field; 9] = [
    req("port", Schema::Int(0, 65_535)),
    opt("nodePort", Schema::Int(0, 65_535)),
    opt("protocol", Schema::Enum(&PROTOCOL)),
    opt("authenticationRef", Schema::Str),
    opt("authorizationRef", Schema::Str),
    opt("tls", Schema::Object(&TLS)),
    opt("bindAddress", Schema::StrWith(check_ip)),
    opt("maxConnections", Schema::Int(1, 10_000_000)),
    opt("maxConnectsPerSecondPerAddress", Schema::Int(1, 1_000_000)),
];

static PROTOCOL: EnumDef = EnumDef {
    values: &["Mqtt", "WebSockets"],
    aliases: &[("Websockets", "WebSockets")],
};

static TLS: [Field; 3] = [
    req(
        "mode",
        Schema::Enum(&EnumDef {
            values: &["Automatic", "Manual"],
            aliases: &[],
        }),
    ),
    opt("certManagerCertificateSpec", Schema::FreeMap),
    opt("manual", Schema::Object(&[req("secretRef", Schema::Str)])),
];

/// Read a listener document already checked against [`DOCUMENT`].
pub(crate) fn read(doc: &Node, name: &str, sink: &mut Sink) -> ListenerDoc {
    let spec = doc.get("spec");
    let broker_ref = spec.and_then(|s| named_ref(s, "brokerRef", "spec"));
    let mut ports = Vec::new();
    if let Some(list) = spec.and_then(|s| s.get("ports")) {
        if list.as_seq().is_empty() && !list.is_null() {
            sink.error(
                "spec.ports",
                Some(list.line),
                "a listener needs at least one port; add one such as `- port: 1883`",
            );
        }
        for (i, item) in list.as_seq().iter().enumerate() {
            if let Some(port) = read_port(item, name, &index("spec.ports", i), sink) {
                ports.push(port);
            }
        }
    }
    ListenerDoc { broker_ref, ports }
}

fn read_port(item: &Node, listener: &str, path: &str, sink: &mut Sink) -> Option<PortDoc> {
    let tls = read_tls(item.get("tls"), &join(path, "tls"), sink);
    let authentication_ref = named_ref(item, "authenticationRef", path);
    let authorization_ref = named_ref(item, "authorizationRef", path);
    if let (Some(authz), None) = (&authorization_ref, &authentication_ref) {
        sink.error(
            &authz.path,
            Some(authz.line),
            "authorization needs an authenticated client; add authenticationRef to this port \
             or remove authorizationRef",
        );
    }

    let port_node = item.get("port")?;
    let port = port_node.as_i64().and_then(|p| u16::try_from(p).ok())?;
    let ip = match item.get("bindAddress") {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(node) => node.as_str()?.parse().ok()?,
    };
    let protocol = match item.get("protocol").and_then(Node::as_str) {
        None | Some("Mqtt") => Protocol::Mqtt,
        Some(text) => match PROTOCOL.canonical(text) {
            Some("WebSockets") => Protocol::WebSockets,
            _ => return None,
        },
    };
    let secret_ref = tls.as_ref().and_then(|(_, r)| r.clone());
    Some(PortDoc {
        port: ListenerPort {
            listener: listener.to_owned(),
            bind: SocketAddr::new(ip, port),
            protocol,
            authentication_ref: authentication_ref.as_ref().map(|r| r.name.clone()),
            authorization_ref: authorization_ref.as_ref().map(|r| r.name.clone()),
            tls: tls.map(|(settings, _)| settings),
            max_connections: item
                .get("maxConnections")
                .and_then(Node::as_i64)
                .and_then(|n| u32::try_from(n).ok()),
            max_connects_per_second_per_address: item
                .get("maxConnectsPerSecondPerAddress")
                .and_then(Node::as_i64)
                .and_then(|n| u32::try_from(n).ok()),
        },
        path: path.to_owned(),
        line: port_node.line,
        secret_ref,
        authentication_ref,
        authorization_ref,
    })
}

/// The TLS settings of a port and, for Manual, where the secret name was written.
fn read_tls(tls: Option<&Node>, path: &str, sink: &mut Sink) -> Option<(TlsSettings, Option<Ref>)> {
    let tls = tls?;
    let mode = tls.get("mode").and_then(Node::as_str)?;
    let manual = tls.entry("manual");
    let cert_manager = tls.entry("certManagerCertificateSpec");
    match mode {
        "Automatic" => {
            if let Some(entry) = manual {
                sink.error(
                    &join(path, "manual"),
                    Some(entry.key_line),
                    "`manual` applies only to mode Manual; remove it or set mode: Manual",
                );
            }
            Some((TlsSettings::Automatic, None))
        }
        "Manual" => {
            if let Some(entry) = cert_manager {
                sink.error(
                    &join(path, "certManagerCertificateSpec"),
                    Some(entry.key_line),
                    "`certManagerCertificateSpec` applies only to mode Automatic; remove it \
                     or set mode: Automatic",
                );
            }
            let Some(entry) = manual else {
                sink.error(
                    &join(&join(path, "manual"), "secretRef"),
                    Some(tls.line),
                    "mode Manual needs the server certificate secret; add \
                     `manual: {secretRef: NAME}` naming a kubernetes.io/tls Secret",
                );
                return None;
            };
            let secret_ref = named_ref(&entry.value, "secretRef", &join(path, "manual"))?;
            Some((
                TlsSettings::Manual {
                    secret_ref: secret_ref.name.clone(),
                },
                Some(secret_ref),
            ))
        }
        _ => None,
    }
}

/// The string at `parent.key`, with its path and line.
fn named_ref(parent: &Node, key: &str, parent_path: &str) -> Option<Ref> {
    let node = parent.get(key)?;
    Some(Ref {
        name: node.as_str()?.to_owned(),
        path: join(parent_path, key),
        line: node.line,
    })
}

fn check_ip(text: &str) -> Result<(), String> {
    text.parse::<IpAddr>().map(|_| ()).map_err(|_| {
        format!("invalid IP address `{text}`; use an address such as 0.0.0.0, 127.0.0.1 or ::")
    })
}

/// Whether two binds would fight over the same socket: same port (0 never conflicts) and
/// the same address, or either side on all addresses (`0.0.0.0` / `::`; on Linux `::`
/// also covers IPv4).
pub(crate) fn binds_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn conflicts() {
        assert!(binds_conflict(addr("0.0.0.0:1883"), addr("127.0.0.1:1883")));
        assert!(binds_conflict(addr("[::]:1883"), addr("127.0.0.1:1883")));
        assert!(!binds_conflict(
            addr("127.0.0.1:1883"),
            addr("127.0.0.2:1883")
        ));
        assert!(!binds_conflict(addr("0.0.0.0:1883"), addr("0.0.0.0:8883")));
        assert!(!binds_conflict(addr("0.0.0.0:0"), addr("0.0.0.0:0")));
    }
}
