//! Turns datasets and event sources into subscriptions on a live session, and the
//! session's notification callbacks into [`Notification`]s on the connection's channel.
//!
//! A [`Plan`] is checked once when the connection starts (names, node id syntax) and
//! applied to every new session by [`create_all`]: `nsu=` node ids are resolved against the
//! server's namespace array, each dataset becomes one subscription per
//! [`MAX_ITEMS_PER_SUBSCRIPTION`] data points and each event source one subscription.
//! Items the server refuses are reported once as a [`DataChange`] with the refusal status.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use opcua_client::{
    EventCallback, MonitoredItem, MonitoredItemMap, OnSubscriptionNotificationCore, Session,
};
use opcua_types::{
    AttributeId, ContentFilter, DataChangeNotification, DataValue, EventFilter, ExtensionObject,
    Identifier, MonitoredItemCreateRequest, MonitoringMode, MonitoringParameters, NamespaceMap,
    NodeId, NotificationMessage, NumericRange, ObjectTypeId, QualifiedName, ReadValueId,
    SimpleAttributeOperand, StatusCode, TimestampsToReturn, Variant,
};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::{
    ClientError, Counters, DataChange, Dataset, Event, EventSource, Notification,
    MAX_ITEMS_PER_SUBSCRIPTION,
};
use crate::value::{variant_to_json, Status};

/// The BaseEventType fields requested for every event, in select-clause order.
const EVENT_FIELDS: [&str; 8] = [
    "EventId",
    "EventType",
    "SourceNode",
    "SourceName",
    "Time",
    "ReceiveTime",
    "Message",
    "Severity",
];

/// A node id as configured: with a namespace index, or with a namespace URI to resolve.
#[derive(Clone, Debug)]
enum NodeRef {
    Id(NodeId),
    Uri(String, Identifier),
}

impl NodeRef {
    fn parse(s: &str) -> Option<NodeRef> {
        if let Some(rest) = s.strip_prefix("nsu=") {
            let (uri, id) = rest.split_once(';')?;
            return Some(NodeRef::Uri(uri.to_owned(), Identifier::from_str(id).ok()?));
        }
        NodeId::from_str(s).ok().map(NodeRef::Id)
    }

    fn resolve(&self, namespaces: &NamespaceMap) -> Option<NodeId> {
        match self {
            NodeRef::Id(id) => Some(id.clone()),
            NodeRef::Uri(uri, id) => Some(NodeId::new(namespaces.get_index(uri)?, id.clone())),
        }
    }
}

#[derive(Debug)]
struct Point {
    name: Arc<str>,
    /// Position in the dataset's configured data points.
    index: u32,
    node: NodeRef,
    sampling_interval_ms: f64,
    queue_size: u32,
}

#[derive(Debug)]
struct PlannedDataset {
    name: Arc<str>,
    publishing_interval: Duration,
    points: Vec<Point>,
}

#[derive(Debug)]
struct PlannedEvents {
    name: Arc<str>,
    node: NodeRef,
    publishing_interval: Duration,
    queue_size: u32,
}

/// Validated datasets and event sources.
#[derive(Debug)]
pub(crate) struct Plan {
    datasets: Vec<PlannedDataset>,
    events: Vec<PlannedEvents>,
}

impl Plan {
    /// Checks names and node ids, reporting every problem at once.
    pub(crate) fn new(datasets: &[Dataset], events: &[EventSource]) -> Result<Plan, ClientError> {
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        let mut planned = Vec::new();
        for ds in datasets {
            check_name(&mut problems, &mut names, "dataset", &ds.name);
            check_interval(&mut problems, &ds.name, ds.publishing_interval);
            let mut point_names = HashSet::new();
            let mut points = Vec::new();
            for (index, dp) in (0u32..).zip(&ds.data_points) {
                let what = format!("data point in dataset {:?}", ds.name);
                check_name(&mut problems, &mut point_names, &what, &dp.name);
                let Some(node) = parse_node(&mut problems, &dp.name, &dp.node_id) else {
                    continue;
                };
                points.push(Point {
                    name: dp.name.as_str().into(),
                    index,
                    node,
                    sampling_interval_ms: dp.sampling_interval.as_secs_f64() * 1000.0,
                    queue_size: dp.queue_size.max(1),
                });
            }
            planned.push(PlannedDataset {
                name: ds.name.as_str().into(),
                publishing_interval: ds.publishing_interval,
                points,
            });
        }
        let mut planned_events = Vec::new();
        for ev in events {
            check_name(&mut problems, &mut names, "event source", &ev.name);
            check_interval(&mut problems, &ev.name, ev.publishing_interval);
            if let Some(node) = parse_node(&mut problems, &ev.name, &ev.node_id) {
                planned_events.push(PlannedEvents {
                    name: ev.name.as_str().into(),
                    node,
                    publishing_interval: ev.publishing_interval,
                    queue_size: ev.queue_size.max(1),
                });
            }
        }
        if problems.is_empty() {
            Ok(Plan {
                datasets: planned,
                events: planned_events,
            })
        } else {
            Err(ClientError::Config(problems.join("; ")))
        }
    }
}

impl Plan {
    /// Spreads the plan over `parts` sessions (at least one, at most one per dataset):
    /// datasets, largest first, each go whole to the part with the fewest data points so
    /// far, and the event sources to the lightest part after that. Every dataset and event
    /// source lands in exactly one part, so the server never holds one twice and each
    /// dataset's notifications keep their order on its session.
    pub(crate) fn split(self, parts: usize) -> Vec<Plan> {
        let parts = parts.clamp(1, self.datasets.len().max(1));
        let mut out: Vec<Plan> = (0..parts)
            .map(|_| Plan {
                datasets: Vec::new(),
                events: Vec::new(),
            })
            .collect();
        let mut datasets = self.datasets;
        datasets.sort_by_key(|d| std::cmp::Reverse(d.points.len()));
        for d in datasets {
            let i = lightest(&out);
            out[i].datasets.push(d);
        }
        let i = lightest(&out);
        out[i].events = self.events;
        out
    }

    fn points(&self) -> usize {
        self.datasets.iter().map(|d| d.points.len()).sum()
    }
}

/// The index of the part with the fewest data points (the first of equals).
fn lightest(parts: &[Plan]) -> usize {
    parts
        .iter()
        .enumerate()
        .min_by_key(|(_, p)| p.points())
        .map_or(0, |(i, _)| i)
}

fn check_name(problems: &mut Vec<String>, seen: &mut HashSet<String>, what: &str, name: &str) {
    if name.is_empty() {
        problems.push(format!("a {what} has no name; give it one"));
    } else if !seen.insert(name.to_owned()) {
        problems.push(format!(
            "{what} name {name:?} is used twice; make it unique"
        ));
    }
}

fn check_interval(problems: &mut Vec<String>, name: &str, interval: Duration) {
    if interval.is_zero() {
        problems.push(format!(
            "{name:?} has a zero publishing interval; use a positive one"
        ));
    }
}

fn parse_node(problems: &mut Vec<String>, name: &str, node_id: &str) -> Option<NodeRef> {
    let node = NodeRef::parse(node_id);
    if node.is_none() {
        problems.push(format!(
            "{name:?} has node id {node_id:?}, which is not of the form ns=2;s=Name or nsu=<uri>;s=Name"
        ));
    }
    node
}

/// Where a session's callbacks send notifications.
#[derive(Clone)]
pub(crate) struct Sink {
    pub(crate) tx: mpsc::Sender<Notification>,
    pub(crate) counters: Arc<Counters>,
}

impl Sink {
    fn send(&self, n: Notification) {
        if self.tx.try_send(n).is_err() {
            let dropped = self.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "opc ua notification channel full; dropping notifications"
                );
            }
        }
    }
}

/// Creates every subscription of the plan on a new session.
pub(crate) async fn create_all(
    session: &Session,
    plan: &Plan,
    sink: &Sink,
) -> Result<(), opcua_types::Error> {
    let needs_namespaces = plan
        .datasets
        .iter()
        .flat_map(|d| d.points.iter().map(|p| &p.node))
        .chain(plan.events.iter().map(|e| &e.node))
        .any(|n| matches!(n, NodeRef::Uri(..)));
    let namespaces = if needs_namespaces {
        session.read_namespace_array().await?
    } else {
        NamespaceMap::new()
    };
    let mut next_handle = 1u32;
    for ds in &plan.datasets {
        for chunk in ds.points.chunks(MAX_ITEMS_PER_SUBSCRIPTION) {
            create_dataset_chunk(session, ds, chunk, &namespaces, sink, &mut next_handle).await?;
        }
    }
    for ev in &plan.events {
        create_event_subscription(session, ev, &namespaces, sink, &mut next_handle).await?;
    }
    Ok(())
}

async fn create_dataset_chunk(
    session: &Session,
    ds: &PlannedDataset,
    chunk: &[Point],
    namespaces: &NamespaceMap,
    sink: &Sink,
    next_handle: &mut u32,
) -> Result<(), opcua_types::Error> {
    // Handles of one chunk are taken one after the other, so the callback finds a point by
    // subtraction instead of hashing every value's handle.
    let mut points = PointHandles {
        first: *next_handle,
        points: Vec::with_capacity(chunk.len()),
    };
    let mut requests = Vec::new();
    for point in chunk {
        let Some(node_id) = point.node.resolve(namespaces) else {
            refuse(sink, &ds.name, point, StatusCode::BadNodeIdUnknown);
            continue;
        };
        let handle = take_handle(next_handle);
        points.points.push((point.name.clone(), point.index));
        requests.push(item_request(
            node_id,
            AttributeId::Value,
            handle,
            point.sampling_interval_ms,
            point.queue_size,
            ExtensionObject::null(),
        ));
    }
    if requests.is_empty() {
        return Ok(());
    }
    let points = Arc::new(points);
    let callback = DatasetCallback {
        dataset: ds.name.clone(),
        points: points.clone(),
        sink: sink.clone(),
    };
    let sub = session
        .create_subscription(ds.publishing_interval, 60, 10, 0, 0, true, callback)
        .await?;
    // Only the source timestamp goes into the messages: asking for the server's too would
    // make the server encode, and the session task decode, a second timestamp per value.
    let results = session
        .create_monitored_items(sub, TimestampsToReturn::Source, requests)
        .await?;
    for r in results {
        let status = r.result.status_code;
        if !status.is_good() {
            if let Some((name, index)) = points.get(r.requested_parameters.client_handle) {
                refuse_item(sink, &ds.name, name, *index, status);
            }
        }
    }
    Ok(())
}

/// The data points of one subscription by client handle: `first` is the first point's
/// handle, the others follow without gaps (handles count up from 1 on every new session,
/// so they never wrap).
struct PointHandles {
    first: u32,
    points: Vec<(Arc<str>, u32)>,
}

impl PointHandles {
    fn get(&self, handle: u32) -> Option<&(Arc<str>, u32)> {
        let i = handle.checked_sub(self.first)?;
        self.points.get(usize::try_from(i).ok()?)
    }
}

/// A dataset subscription's callback: each notification message of the server becomes one
/// [`Notification::Data`], so the connector publishes what the server grouped together and
/// the channel carries one entry per publishing interval, not one per value. It runs on
/// the session's task, which decodes every response of the session one after the other,
/// so it does as little per value as it can: the heavier work (frames, payload) happens
/// on the dataset's own task.
struct DatasetCallback {
    dataset: Arc<str>,
    points: Arc<PointHandles>,
    sink: Sink,
}

impl OnSubscriptionNotificationCore for DatasetCallback {
    fn on_subscription_notification(
        &mut self,
        notification: NotificationMessage,
        _items: MonitoredItemMap<'_>,
    ) {
        let received = chrono::Utc::now();
        let published = Some(notification.publish_time)
            .filter(|t| !t.is_null())
            .map(|t| t.as_chrono());
        let Some(data) = notification.notification_data else {
            return;
        };
        let mut changes = Vec::new();
        for obj in data {
            let Some(v) = obj.into_inner_as::<DataChangeNotification>() else {
                continue;
            };
            let items = v.monitored_items.unwrap_or_default();
            changes.reserve(items.len());
            for item in items {
                if let Some((name, index)) = self.points.get(item.client_handle) {
                    changes.push(data_change(&self.dataset, name, *index, item.value));
                }
            }
        }
        if !changes.is_empty() {
            self.sink.send(Notification::Data {
                changes,
                published,
                received,
            });
        }
    }
}

async fn create_event_subscription(
    session: &Session,
    ev: &PlannedEvents,
    namespaces: &NamespaceMap,
    sink: &Sink,
    next_handle: &mut u32,
) -> Result<(), opcua_types::Error> {
    let Some(node_id) = ev.node.resolve(namespaces) else {
        tracing::warn!(source = %ev.name, "event source namespace not on the server");
        return Ok(());
    };
    let source = ev.name.clone();
    let cb_sink = sink.clone();
    let callback = EventCallback::new(move |fields: Option<Vec<Variant>>, _: &MonitoredItem| {
        cb_sink.send(Notification::Event(event(
            &source,
            fields.unwrap_or_default(),
        )));
    });
    let sub = session
        .create_subscription(ev.publishing_interval, 60, 10, 0, 0, true, callback)
        .await?;
    let request = item_request(
        node_id,
        AttributeId::EventNotifier,
        take_handle(next_handle),
        0.0,
        ev.queue_size,
        ExtensionObject::from_message(event_filter()),
    );
    let results = session
        .create_monitored_items(sub, TimestampsToReturn::Both, vec![request])
        .await?;
    for r in results {
        if !r.result.status_code.is_good() {
            tracing::warn!(source = %ev.name, status = %r.result.status_code, "server refused event monitoring");
        }
    }
    Ok(())
}

fn take_handle(next: &mut u32) -> u32 {
    let h = *next;
    *next = next.wrapping_add(1).max(1);
    h
}

fn item_request(
    node_id: NodeId,
    attribute: AttributeId,
    client_handle: u32,
    sampling_interval: f64,
    queue_size: u32,
    filter: ExtensionObject,
) -> MonitoredItemCreateRequest {
    MonitoredItemCreateRequest {
        item_to_monitor: ReadValueId {
            node_id,
            attribute_id: attribute as u32,
            index_range: NumericRange::None,
            data_encoding: QualifiedName::null(),
        },
        monitoring_mode: MonitoringMode::Reporting,
        requested_parameters: MonitoringParameters {
            client_handle,
            sampling_interval,
            filter,
            queue_size,
            discard_oldest: true,
        },
    }
}

fn event_filter() -> EventFilter {
    EventFilter {
        select_clauses: Some(
            EVENT_FIELDS
                .iter()
                .map(|f| SimpleAttributeOperand {
                    type_definition_id: ObjectTypeId::BaseEventType.into(),
                    browse_path: Some(vec![QualifiedName::new(0, *f)]),
                    attribute_id: AttributeId::Value as u32,
                    index_range: NumericRange::None,
                })
                .collect(),
        ),
        where_clause: ContentFilter { elements: None },
    }
}

fn refuse(sink: &Sink, dataset: &Arc<str>, point: &Point, status: StatusCode) {
    refuse_item(sink, dataset, &point.name, point.index, status);
}

fn refuse_item(sink: &Sink, dataset: &Arc<str>, name: &Arc<str>, index: u32, status: StatusCode) {
    tracing::warn!(%dataset, data_point = %name, %status, "server refused data point");
    sink.send(Notification::Data {
        changes: vec![DataChange {
            dataset: dataset.clone(),
            data_point: name.clone(),
            index,
            value: Value::Null,
            source_timestamp: None,
            status: status.into(),
        }],
        published: None,
        received: chrono::Utc::now(),
    });
}

fn data_change(dataset: &Arc<str>, point: &Arc<str>, index: u32, dv: DataValue) -> DataChange {
    DataChange {
        dataset: dataset.clone(),
        data_point: point.clone(),
        index,
        value: dv.value.as_ref().map_or(Value::Null, variant_to_json),
        source_timestamp: dv.source_timestamp.map(|t| t.as_chrono()),
        status: dv.status.map_or(Status::GOOD, Status::from),
    }
}

fn event(source: &Arc<str>, values: Vec<Variant>) -> Event {
    let mut fields = Map::new();
    let mut time = None;
    for (name, v) in EVENT_FIELDS.iter().zip(values) {
        if *name == "Time" {
            if let Variant::DateTime(t) = &v {
                time = Some(t.as_chrono());
            }
        }
        fields.insert((*name).to_owned(), variant_to_json(&v));
    }
    Event {
        source: source.clone(),
        time,
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::DataPoint;

    fn point(name: &str, node_id: &str) -> DataPoint {
        DataPoint {
            name: name.into(),
            node_id: node_id.into(),
            sampling_interval: Duration::from_millis(100),
            queue_size: 1,
        }
    }

    #[test]
    fn node_ids_parse_with_index_or_uri() {
        assert!(matches!(
            NodeRef::parse("ns=2;s=Fast.Sine.0"),
            Some(NodeRef::Id(_))
        ));
        assert!(matches!(NodeRef::parse("i=2258"), Some(NodeRef::Id(_))));
        let Some(NodeRef::Uri(uri, id)) = NodeRef::parse("nsu=http://x/y;s=A.B") else {
            panic!("nsu form parses");
        };
        assert_eq!(uri, "http://x/y");
        assert_eq!(id, Identifier::from("A.B"));
        assert!(NodeRef::parse("Fast.Sine.0").is_none());
    }

    fn named(name: &str, points: usize) -> Dataset {
        Dataset {
            name: name.into(),
            publishing_interval: Duration::from_millis(20),
            data_points: (0..points)
                .map(|i| point(&format!("p{i}"), &format!("ns=2;s=N{i}")))
                .collect(),
        }
    }

    fn names(plan: &Plan) -> Vec<String> {
        plan.datasets.iter().map(|d| d.name.to_string()).collect()
    }

    #[test]
    fn split_puts_each_dataset_in_one_session_balanced_by_points() -> Result<(), ClientError> {
        let datasets =
            [("a", 1000), ("b", 10), ("c", 1000), ("d", 500), ("e", 500)].map(|(n, p)| named(n, p));
        let ev = EventSource {
            name: "alarms".into(),
            node_id: "ns=2;s=Special.Events".into(),
            publishing_interval: Duration::from_millis(100),
            queue_size: 10,
        };
        let parts = Plan::new(&datasets, &[ev])?.split(2);
        assert_eq!(parts.len(), 2);
        let mut all: Vec<String> = parts.iter().flat_map(names).collect();
        all.sort();
        assert_eq!(all, ["a", "b", "c", "d", "e"], "every dataset exactly once");
        let points: Vec<usize> = parts.iter().map(Plan::points).collect();
        assert_eq!(points, [1510, 1500]);
        let events: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(events, 1, "the event source subscribed once");
        assert_eq!(parts[1].events.len(), 1, "events go to the lighter part");
        Ok(())
    }

    #[test]
    fn split_never_makes_more_sessions_than_datasets() -> Result<(), ClientError> {
        let parts = Plan::new(&[named("a", 3), named("b", 3)], &[])?.split(4);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.datasets.len() == 1));
        let parts = Plan::new(&[], &[])?.split(4);
        assert_eq!(parts.len(), 1, "an empty plan still gets its one session");
        let parts = Plan::new(&[named("a", 3)], &[])?.split(0);
        assert_eq!(parts.len(), 1, "zero sessions means one");
        Ok(())
    }

    #[test]
    fn plan_reports_every_problem() {
        let ds = Dataset {
            name: "d".into(),
            publishing_interval: Duration::ZERO,
            data_points: vec![
                point("a", "bogus"),
                point("a", "ns=2;s=X"),
                point("", "i=1"),
            ],
        };
        let Err(ClientError::Config(msg)) = Plan::new(&[ds], &[]) else {
            panic!("plan must be rejected");
        };
        assert!(msg.contains("zero publishing interval"), "{msg}");
        assert!(msg.contains("\"bogus\""), "{msg}");
        assert!(msg.contains("used twice"), "{msg}");
        assert!(msg.contains("no name"), "{msg}");
    }
}
