//! The node manager for the simulator's namespace: builds the address space from the node
//! model and keeps count of the monitored items clients hold on each node.
//!
//! Values enter through [`SimManager::set_values`] (called by the tick tasks), which also
//! notifies subscriptions; clients' CreateMonitoredItems and DeleteMonitoredItems calls
//! enter through the [`InMemoryNodeManagerImpl`] hooks and update [`MonitoredCounts`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use opcua_core::sync::{Mutex, RwLock};
use opcua_server::{
    address_space::{AccessLevel, AddressSpace, EventNotifier, ObjectBuilder, VariableBuilder},
    diagnostics::NamespaceMetadata,
    node_manager::{
        memory::{InMemoryNodeManager, InMemoryNodeManagerImpl, InMemoryNodeManagerImplBuilder},
        MonitoredItemRef, RequestContext, ServerContext,
    },
    CreateMonitoredItem,
};
use opcua_types::{
    DataValue, DateTime, NodeId, ObjectId, ObjectTypeId, StatusCode, TimestampsToReturn,
    VariableTypeId,
};

use super::nodes::{NodeKind, NodeSet, SimNode, NAMESPACE_INDEX, NAMESPACE_URI};

/// The simulator's node manager as the server holds it.
pub(crate) type SimManager = InMemoryNodeManager<SimManagerImpl>;

/// How many monitored items clients currently hold, per node.
#[derive(Default, Debug)]
pub(crate) struct MonitoredCounts {
    by_node: Mutex<HashMap<NodeId, usize>>,
}

impl MonitoredCounts {
    fn add(&self, node: &NodeId) {
        *self.by_node.lock().entry(node.clone()).or_default() += 1;
    }

    fn remove(&self, node: &NodeId) {
        let mut by_node = self.by_node.lock();
        if let Some(n) = by_node.get_mut(node) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_node.remove(node);
            }
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.by_node.lock().values().sum()
    }

    pub(crate) fn for_node(&self, node: &NodeId) -> usize {
        self.by_node.lock().get(node).copied().unwrap_or(0)
    }
}

/// Builds [`SimManagerImpl`]; registers [`NAMESPACE_URI`].
pub(crate) struct SimManagerBuilder {
    pub(crate) nodes: Vec<SimNode>,
    pub(crate) counts: Arc<MonitoredCounts>,
}

impl InMemoryNodeManagerImplBuilder for SimManagerBuilder {
    type Impl = SimManagerImpl;

    fn build(self, context: ServerContext, address_space: &mut AddressSpace) -> SimManagerImpl {
        let index = context
            .type_tree
            .write()
            .namespaces_mut()
            .add_namespace(NAMESPACE_URI);
        if index != NAMESPACE_INDEX {
            tracing::error!(
                index,
                "simulator namespace did not get index {NAMESPACE_INDEX}"
            );
        }
        address_space.add_namespace(NAMESPACE_URI, index);
        SimManagerImpl {
            nodes: self.nodes,
            counts: self.counts,
        }
    }
}

/// See the module docs.
pub(crate) struct SimManagerImpl {
    nodes: Vec<SimNode>,
    counts: Arc<MonitoredCounts>,
}

#[async_trait]
impl InMemoryNodeManagerImpl for SimManagerImpl {
    async fn init(&self, address_space: &mut AddressSpace, _context: ServerContext) {
        let objects: NodeId = ObjectId::ObjectsFolder.into();
        for set in [NodeSet::Fast, NodeSet::Slow, NodeSet::Special] {
            let folder = NodeId::new(NAMESPACE_INDEX, set.name());
            address_space.add_folder(&folder, set.name(), set.name(), &objects);
        }
        let now = DateTime::now();
        for node in &self.nodes {
            let id = node.opcua_node_id();
            let folder = NodeId::new(NAMESPACE_INDEX, node.set.name());
            if node.kind == NodeKind::EventSource {
                ObjectBuilder::new(&id, node.name.as_str(), node.name.as_str())
                    .has_type_definition(ObjectTypeId::BaseObjectType)
                    .event_notifier(EventNotifier::SUBSCRIBE_TO_EVENTS)
                    .organized_by(folder)
                    .insert(address_space);
                continue;
            }
            VariableBuilder::new(&id, node.name.as_str(), node.name.as_str())
                .data_type(node.kind.data_type())
                .has_type_definition(VariableTypeId::BaseDataVariableType)
                .access_level(AccessLevel::CURRENT_READ)
                .user_access_level(AccessLevel::CURRENT_READ)
                .value(node.value_at(0))
                .organized_by(folder)
                .insert(address_space);
            if let Some(opcua_server::address_space::NodeType::Variable(v)) =
                address_space.find_mut(&id)
            {
                v.set_data_value(DataValue {
                    value: Some(node.value_at(0)),
                    status: Some(node.status()),
                    source_timestamp: Some(now),
                    server_timestamp: Some(now),
                    ..Default::default()
                });
            }
        }
    }

    fn name(&self) -> &str {
        "edgeplane-sim"
    }

    fn namespaces(&self) -> Vec<NamespaceMetadata> {
        vec![NamespaceMetadata {
            namespace_uri: NAMESPACE_URI.to_owned(),
            namespace_index: NAMESPACE_INDEX,
            ..Default::default()
        }]
    }

    async fn create_value_monitored_items(
        &self,
        context: &RequestContext,
        address_space: &RwLock<AddressSpace>,
        items: &mut [&mut &mut CreateMonitoredItem],
    ) {
        let address_space = address_space.read();
        for item in items {
            let value = address_space.read(
                context,
                item.item_to_monitor(),
                0.0,
                TimestampsToReturn::Both,
            );
            let status = value.status();
            if status == StatusCode::BadNodeIdUnknown || status == StatusCode::BadUserAccessDenied {
                item.set_status(status);
                continue;
            }
            if status != StatusCode::BadAttributeIdInvalid {
                item.set_initial_value(value);
            }
            item.set_status(StatusCode::Good);
            self.counts.add(&item.item_to_monitor().node_id);
        }
    }

    async fn create_event_monitored_items(
        &self,
        _context: &RequestContext,
        _address_space: &RwLock<AddressSpace>,
        items: &mut [&mut &mut CreateMonitoredItem],
    ) {
        for item in items {
            if item.status_code().is_good() {
                self.counts.add(&item.item_to_monitor().node_id);
            }
        }
    }

    async fn delete_monitored_items(&self, _context: &RequestContext, items: &[&MonitoredItemRef]) {
        for item in items {
            self.counts.remove(item.node_id());
        }
    }
}
