//! The few namespace-0 nodes a client needs, served without async-opcua's generated core
//! address space (a large compile we avoid).
//!
//! Owns `Root`, `Objects`, `Server`, `Server.NamespaceArray`, `Server.ServerArray`,
//! `Server.ServerStatus` and its `StartTime`, `CurrentTime` and `State`. Clients read
//! `ServerStatus.State` as their keep-alive and `NamespaceArray` to resolve `nsu=` node
//! ids; values are computed on read from the server's namespace table and the clock.
//! The builder also registers the server's application URI as namespace 1.

use async_trait::async_trait;
use opcua_core::sync::RwLock;
use opcua_server::{
    address_space::{AddressSpace, EventNotifier, ObjectBuilder, VariableBuilder},
    diagnostics::NamespaceMetadata,
    node_manager::{
        memory::{InMemoryNodeManagerImpl, InMemoryNodeManagerImplBuilder},
        ParsedReadValueId, RequestContext, ServerContext,
    },
};
use opcua_types::{
    DataTypeId, DataValue, DateTime, NodeId, ObjectId, ObjectTypeId, ServerState,
    TimestampsToReturn, UAString, VariableId, VariableTypeId, Variant,
};

const OPC_UA_NAMESPACE: &str = "http://opcfoundation.org/UA/";

/// Builds [`CoreLite`]; registers `application_uri` as namespace 1.
pub(crate) struct CoreLiteBuilder {
    pub(crate) application_uri: String,
}

impl InMemoryNodeManagerImplBuilder for CoreLiteBuilder {
    type Impl = CoreLite;

    fn build(self, context: ServerContext, address_space: &mut AddressSpace) -> CoreLite {
        context
            .type_tree
            .write()
            .namespaces_mut()
            .add_namespace(&self.application_uri);
        address_space.add_namespace(OPC_UA_NAMESPACE, 0);
        CoreLite {
            application_uri: self.application_uri,
            start_time: DateTime::now(),
        }
    }
}

/// The namespace-0 node manager; see the module docs.
pub(crate) struct CoreLite {
    application_uri: String,
    start_time: DateTime,
}

#[async_trait]
impl InMemoryNodeManagerImpl for CoreLite {
    async fn init(&self, address_space: &mut AddressSpace, _context: ServerContext) {
        let root: NodeId = ObjectId::RootFolder.into();
        let objects: NodeId = ObjectId::ObjectsFolder.into();
        let server: NodeId = ObjectId::Server.into();
        let status: NodeId = VariableId::Server_ServerStatus.into();
        ObjectBuilder::new(&root, "Root", "Root")
            .is_folder()
            .insert(address_space);
        ObjectBuilder::new(&objects, "Objects", "Objects")
            .is_folder()
            .organized_by(root)
            .insert(address_space);
        ObjectBuilder::new(&server, "Server", "Server")
            .has_type_definition(ObjectTypeId::ServerType)
            .event_notifier(EventNotifier::SUBSCRIBE_TO_EVENTS)
            .organized_by(objects)
            .insert(address_space);
        let variables = [
            (
                VariableId::Server_NamespaceArray,
                "NamespaceArray",
                DataTypeId::String,
                1,
            ),
            (
                VariableId::Server_ServerArray,
                "ServerArray",
                DataTypeId::String,
                1,
            ),
            (
                VariableId::Server_ServerStatus,
                "ServerStatus",
                DataTypeId::ServerStatusDataType,
                -1,
            ),
        ];
        for (id, name, data_type, rank) in variables {
            VariableBuilder::new(&id.into(), name, name)
                .data_type(data_type)
                .value_rank(rank)
                .has_type_definition(VariableTypeId::BaseDataVariableType)
                .component_of(server.clone())
                .insert(address_space);
        }
        let status_parts = [
            (
                VariableId::Server_ServerStatus_StartTime,
                "StartTime",
                DataTypeId::UtcTime,
            ),
            (
                VariableId::Server_ServerStatus_CurrentTime,
                "CurrentTime",
                DataTypeId::UtcTime,
            ),
            (
                VariableId::Server_ServerStatus_State,
                "State",
                DataTypeId::ServerState,
            ),
        ];
        for (id, name, data_type) in status_parts {
            VariableBuilder::new(&id.into(), name, name)
                .data_type(data_type)
                .has_type_definition(VariableTypeId::BaseDataVariableType)
                .component_of(status.clone())
                .insert(address_space);
        }
    }

    fn name(&self) -> &str {
        "edgeplane-sim-core"
    }

    fn namespaces(&self) -> Vec<NamespaceMetadata> {
        vec![NamespaceMetadata {
            namespace_uri: OPC_UA_NAMESPACE.to_owned(),
            namespace_index: 0,
            ..Default::default()
        }]
    }

    async fn read_values(
        &self,
        context: &RequestContext,
        address_space: &RwLock<AddressSpace>,
        nodes: &[&ParsedReadValueId],
        max_age: f64,
        timestamps_to_return: TimestampsToReturn,
    ) -> Vec<DataValue> {
        let namespaces = self.namespace_array(context);
        let address_space = address_space.read();
        nodes
            .iter()
            .map(|n| match self.computed_value(&n.node_id, &namespaces) {
                Some(v) => DataValue::new_now(v),
                None => address_space.read(context, n, max_age, timestamps_to_return),
            })
            .collect()
    }
}

impl CoreLite {
    fn namespace_array(&self, context: &RequestContext) -> Vec<String> {
        let type_tree = context.type_tree().read();
        let mut known: Vec<(u16, String)> = type_tree
            .namespaces()
            .known_namespaces()
            .iter()
            .map(|(uri, idx)| (*idx, uri.clone()))
            .collect();
        known.sort();
        known.into_iter().map(|(_, uri)| uri).collect()
    }

    fn computed_value(&self, id: &NodeId, namespaces: &[String]) -> Option<Variant> {
        let id = id.as_variable_id().ok()?;
        Some(match id {
            VariableId::Server_NamespaceArray => strings(namespaces),
            VariableId::Server_ServerArray => strings(std::slice::from_ref(&self.application_uri)),
            VariableId::Server_ServerStatus_StartTime => Variant::from(self.start_time),
            VariableId::Server_ServerStatus_CurrentTime => Variant::from(DateTime::now()),
            VariableId::Server_ServerStatus_State => Variant::Int32(ServerState::Running as i32),
            _ => return None,
        })
    }
}

fn strings(values: &[String]) -> Variant {
    let values: Vec<UAString> = values.iter().map(UAString::from).collect();
    Variant::from(values)
}
