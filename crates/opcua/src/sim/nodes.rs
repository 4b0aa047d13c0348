//! The simulator's node model: which nodes exist, what they are called and what value
//! each holds at a given tick. Pure; the node manager and the tick tasks apply it.
//!
//! Node ids are strings in the simulator's namespace [`NAMESPACE_URI`] (index 2 on the
//! simulator, after the OPC UA namespace 0 and the server's own namespace 1):
//!
//! | node id                        | type    | value                                    |
//! |--------------------------------|---------|------------------------------------------|
//! | `ns=2;s=Fast.Counter.<i>`      | UInt32  | tick count, +1 per fast tick             |
//! | `ns=2;s=Fast.Random.<i>`       | Int32   | pseudo-random in 0..=10000               |
//! | `ns=2;s=Fast.Sine.<i>`         | Double  | sine, amplitude 1, period 40 ticks       |
//! | `ns=2;s=Fast.Trend.<i>`        | Double  | rises 0.1 per tick                       |
//! | `ns=2;s=Fast.Toggle.<i>`       | Boolean | flips every tick                         |
//! | `ns=2;s=Slow.<Kind>.<i>`       |         | the same kinds, on the slow interval     |
//! | `ns=2;s=Special.Bad`           | UInt32  | counter on the fast tick, status BadSensorFailure |
//! | `ns=2;s=Special.Events`        | Object  | event notifier: a BaseEventType event per event interval |
//!
//! `<i>` runs from 0 to count − 1. Folders `ns=2;s=Fast`, `ns=2;s=Slow` and
//! `ns=2;s=Special` sit under the Objects folder.

use std::f64::consts::TAU;
use std::fmt;

use opcua_types::{DataTypeId, NodeId, StatusCode, Variant};

/// The simulator's namespace URI; its index on the simulator is [`NAMESPACE_INDEX`].
pub const NAMESPACE_URI: &str = "http://edgeplane.io/opcua-sim";
/// The simulator namespace's index on the simulator.
pub const NAMESPACE_INDEX: u16 = 2;
/// The node that emits the simulated events.
pub const EVENTS_NODE: &str = "Special.Events";
/// The node whose status is always bad.
pub const BAD_NODE: &str = "Special.Bad";
/// The status [`BAD_NODE`] reports.
pub const BAD_STATUS: StatusCode = StatusCode::BadSensorFailure;

/// Which timer drives a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeSet {
    /// Changes on the fast interval.
    Fast,
    /// Changes on the slow interval.
    Slow,
    /// Nodes outside the fast/slow sets (the bad-status node and the event source).
    Special,
}

impl NodeSet {
    /// The folder name, also the node id prefix.
    pub fn name(self) -> &'static str {
        match self {
            NodeSet::Fast => "Fast",
            NodeSet::Slow => "Slow",
            NodeSet::Special => "Special",
        }
    }
}

/// What a node simulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// UInt32 that counts ticks.
    Counter,
    /// Int32 pseudo-random number.
    Random,
    /// Double sine wave.
    Sine,
    /// Double rising steadily.
    Trend,
    /// Boolean flipping every tick.
    Toggle,
    /// UInt32 counter whose status is always [`BAD_STATUS`].
    BadStatus,
    /// Object emitting events.
    EventSource,
}

impl NodeKind {
    /// The kinds every fast and slow set has, in node id order.
    pub const VARIABLES: [NodeKind; 5] = [
        NodeKind::Counter,
        NodeKind::Random,
        NodeKind::Sine,
        NodeKind::Trend,
        NodeKind::Toggle,
    ];

    fn name(self) -> &'static str {
        match self {
            NodeKind::Counter => "Counter",
            NodeKind::Random => "Random",
            NodeKind::Sine => "Sine",
            NodeKind::Trend => "Trend",
            NodeKind::Toggle => "Toggle",
            NodeKind::BadStatus => "Bad",
            NodeKind::EventSource => "Events",
        }
    }

    pub(crate) fn data_type(self) -> DataTypeId {
        match self {
            NodeKind::Counter | NodeKind::BadStatus => DataTypeId::UInt32,
            NodeKind::Random => DataTypeId::Int32,
            NodeKind::Sine | NodeKind::Trend => DataTypeId::Double,
            NodeKind::Toggle => DataTypeId::Boolean,
            NodeKind::EventSource => DataTypeId::BaseDataType,
        }
    }
}

/// One simulated node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SimNode {
    /// The set whose timer drives it.
    pub set: NodeSet,
    /// What it simulates.
    pub kind: NodeKind,
    /// Its position within the set and kind.
    pub index: usize,
    /// The string identifier, e.g. `Fast.Sine.0`.
    pub name: String,
}

impl SimNode {
    fn new(set: NodeSet, kind: NodeKind, index: usize) -> Self {
        let name = match kind {
            NodeKind::BadStatus | NodeKind::EventSource => {
                format!("{}.{}", set.name(), kind.name())
            }
            _ => format!("{}.{}.{index}", set.name(), kind.name()),
        };
        SimNode {
            set,
            kind,
            index,
            name,
        }
    }

    /// The node id with the simulator's namespace index, e.g. `ns=2;s=Fast.Sine.0`.
    pub fn node_id(&self) -> String {
        format!("ns={NAMESPACE_INDEX};s={}", self.name)
    }

    /// The node id with the namespace URI, e.g.
    /// `nsu=http://edgeplane.io/opcua-sim;s=Fast.Sine.0`: stable on any server layout.
    pub fn expanded_node_id(&self) -> String {
        format!("nsu={NAMESPACE_URI};s={}", self.name)
    }

    pub(crate) fn opcua_node_id(&self) -> NodeId {
        NodeId::new(NAMESPACE_INDEX, self.name.as_str())
    }

    /// The value this node holds at `tick` (the number of ticks of its set so far).
    pub fn value_at(&self, tick: u64) -> Variant {
        let seed = self.index as u64;
        match self.kind {
            NodeKind::Counter | NodeKind::BadStatus => {
                Variant::UInt32((tick.wrapping_add(seed) % (u64::from(u32::MAX) + 1)) as u32)
            }
            NodeKind::Random => Variant::Int32((mix(tick, seed) % 10_001) as i32),
            NodeKind::Sine => {
                let phase = (tick % 40) as f64 / 40.0 + seed as f64 / 10.0;
                Variant::Double((TAU * phase).sin())
            }
            NodeKind::Trend => Variant::Double(seed as f64 + tick as f64 / 10.0),
            NodeKind::Toggle => Variant::Boolean((tick + seed) % 2 == 1),
            NodeKind::EventSource => Variant::Empty,
        }
    }

    /// The status this node reports.
    pub fn status(&self) -> StatusCode {
        match self.kind {
            NodeKind::BadStatus => BAD_STATUS,
            _ => StatusCode::Good,
        }
    }
}

impl fmt::Display for SimNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.node_id())
    }
}

/// Every node of a simulator with `fast` and `slow` instances of each kind.
pub fn all_nodes(fast: usize, slow: usize) -> Vec<SimNode> {
    let mut nodes = Vec::with_capacity((fast + slow) * NodeKind::VARIABLES.len() + 2);
    for (set, count) in [(NodeSet::Fast, fast), (NodeSet::Slow, slow)] {
        for kind in NodeKind::VARIABLES {
            nodes.extend((0..count).map(|i| SimNode::new(set, kind, i)));
        }
    }
    nodes.push(SimNode::new(NodeSet::Special, NodeKind::BadStatus, 0));
    nodes.push(SimNode::new(NodeSet::Special, NodeKind::EventSource, 0));
    nodes
}

/// A cheap, deterministic 64-bit mix (splitmix64), enough for simulated noise.
fn mix(tick: u64, seed: u64) -> u64 {
    let mut z = tick
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(seed.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_predictable() {
        let nodes = all_nodes(2, 1);
        let ids: Vec<String> = nodes.iter().map(SimNode::node_id).collect();
        assert_eq!(ids.len(), 2 * 5 + 5 + 2);
        for expected in [
            "ns=2;s=Fast.Counter.0",
            "ns=2;s=Fast.Sine.1",
            "ns=2;s=Slow.Toggle.0",
            "ns=2;s=Special.Bad",
            "ns=2;s=Special.Events",
        ] {
            assert!(ids.iter().any(|i| i == expected), "{expected} missing");
        }
        assert_eq!(
            nodes[0].expanded_node_id(),
            "nsu=http://edgeplane.io/opcua-sim;s=Fast.Counter.0"
        );
    }

    #[test]
    fn every_variable_changes_from_one_tick_to_the_next() {
        for node in all_nodes(3, 0) {
            if node.kind == NodeKind::EventSource {
                continue;
            }
            for tick in 0..50 {
                assert_ne!(
                    node.value_at(tick),
                    node.value_at(tick + 1),
                    "{node} @{tick}"
                );
            }
        }
    }

    #[test]
    fn sine_stays_in_range_and_bad_node_is_bad() {
        let sine = SimNode::new(NodeSet::Fast, NodeKind::Sine, 0);
        for tick in 0..100 {
            let Variant::Double(v) = sine.value_at(tick) else {
                panic!("sine is a double");
            };
            assert!((-1.0..=1.0).contains(&v));
        }
        let bad = SimNode::new(NodeSet::Special, NodeKind::BadStatus, 0);
        assert!(bad.status().is_bad());
    }
}
