//! The AIO message shape for one dataset: JSON payload plus CloudEvents user properties.
//!
//! [`DatasetFrames`] owns the last known value of every data point of a dataset. Values
//! enter through [`DatasetFrames::update`]; [`DatasetFrames::next_message`] turns what
//! changed since the previous message into a [`DatasetMessage`]:
//!
//! - payload `{"<dataPoint>": {"SourceTimestamp": "<RFC 3339>", "Value": ...}}`, with a
//!   `"StatusCode": {"Code": <u32>, "Symbol": "<name>"}` member when the status is not Good;
//! - user properties following the CloudEvents OPC UA extension: `specversion` 1.0,
//!   `type` `ua-keyframe` | `ua-deltaframe`, `source`, `id`, `time`, `subject`, `sequence`,
//!   `datacontenttype` application/json.
//!
//! Key frames carry every last known value, delta frames only what changed. With
//! `key_frame_count` N > 0 the messages with sequence 0, N, 2N, … are key frames; with
//! N ≤ 0 every message is a delta frame. Nothing here does I/O: the caller decides when to
//! ask for a message (typically once per publishing interval) and where to send it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::value::{rfc3339, Status};

/// CloudEvents `type` of a message carrying every last known value.
pub const KEY_FRAME_TYPE: &str = "ua-keyframe";
/// CloudEvents `type` of a message carrying only the values that changed.
pub const DELTA_FRAME_TYPE: &str = "ua-deltaframe";

/// One sample of a data point.
#[derive(Clone, Debug, PartialEq)]
pub struct DataPointValue {
    /// The value, already converted to JSON.
    pub value: Value,
    /// When the source produced the value, if the server said.
    pub source_timestamp: Option<DateTime<Utc>>,
    /// The server's status for the value.
    pub status: Status,
}

/// Whether a message carries all values or only changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// All last known values.
    Key,
    /// Only the values that changed since the previous message.
    Delta,
}

impl FrameKind {
    /// The CloudEvents `type` for this kind.
    pub fn cloud_event_type(self) -> &'static str {
        match self {
            FrameKind::Key => KEY_FRAME_TYPE,
            FrameKind::Delta => DELTA_FRAME_TYPE,
        }
    }
}

/// Settings that stay the same for every message of a dataset.
#[derive(Clone, Debug)]
pub struct FrameSettings {
    /// CloudEvents `source`, e.g. the endpoint URL or the server's application URI.
    pub source: String,
    /// CloudEvents `subject`, e.g. the asset or dataset name.
    pub subject: String,
    /// Every `key_frame_count`-th message is a key frame; 0 or less: never.
    pub key_frame_count: i32,
}

/// A message ready to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetMessage {
    /// Key or delta frame.
    pub kind: FrameKind,
    /// Position of this message in the dataset's stream, from 0.
    pub sequence: u64,
    /// The JSON payload, serialized.
    pub payload: Vec<u8>,
    /// How many data points the payload carries.
    pub values: usize,
    /// CloudEvents user properties, in a stable order.
    pub properties: Vec<(String, String)>,
}

impl DatasetMessage {
    /// The payload parsed back into JSON (for tests and diagnostics; the connector
    /// publishes [`DatasetMessage::payload`] as it is).
    pub fn payload_json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or(Value::Null)
    }
}

/// One data point of a dataset: its name as a JSON object key (escaped and quoted once),
/// its last value and whether that changed since the previous message.
#[derive(Debug)]
struct Slot {
    key: String,
    value: Option<DataPointValue>,
    changed: bool,
}

/// Builds the message stream of one dataset; see the module docs.
///
/// Data points live in a vector, in the order they were declared
/// ([`DatasetFrames::with_points`]) or first seen, so a value given by position
/// ([`DatasetFrames::update_at`]) costs no name lookup; the payload is written straight
/// to bytes, and consecutive values with the same source timestamp (one server tick)
/// share one formatted timestamp.
#[derive(Debug)]
pub struct DatasetFrames {
    settings: FrameSettings,
    points: Vec<Slot>,
    by_name: HashMap<String, usize>,
    /// How many points are marked changed.
    changed: usize,
    sequence: u64,
    /// The last source timestamp formatted, as a quoted JSON string.
    stamp: Option<(DateTime<Utc>, String)>,
    /// Size of the previous payload, to allocate the next one once.
    last_len: usize,
}

impl DatasetFrames {
    /// A dataset with no values yet.
    pub fn new(settings: FrameSettings) -> Self {
        DatasetFrames {
            settings,
            points: Vec::new(),
            by_name: HashMap::new(),
            changed: 0,
            sequence: 0,
            stamp: None,
            last_len: 0,
        }
    }

    /// A dataset whose data points are `names`, at positions 0, 1, … for
    /// [`DatasetFrames::update_at`]. A repeated name keeps its first position.
    pub fn with_points<'a>(
        settings: FrameSettings,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut frames = DatasetFrames::new(settings);
        for name in names {
            frames.position(name);
        }
        frames
    }

    /// The position of `data_point`, added at the end when new.
    fn position(&mut self, data_point: &str) -> usize {
        if let Some(&i) = self.by_name.get(data_point) {
            return i;
        }
        let i = self.points.len();
        self.points.push(Slot {
            key: json_string(data_point),
            value: None,
            changed: false,
        });
        self.by_name.insert(data_point.to_owned(), i);
        i
    }

    /// Records a new value for `data_point`.
    pub fn update(&mut self, data_point: &str, value: DataPointValue) {
        let i = self.position(data_point);
        // `position` made the slot: this cannot give the value back.
        let _ = self.update_at(i, value);
    }

    /// Records a new value for the data point at `index` (see
    /// [`DatasetFrames::with_points`]); the value comes back when there is no such point.
    pub fn update_at(&mut self, index: usize, value: DataPointValue) -> Result<(), DataPointValue> {
        let Some(slot) = self.points.get_mut(index) else {
            return Err(value);
        };
        slot.value = Some(value);
        if !slot.changed {
            slot.changed = true;
            self.changed += 1;
        }
        Ok(())
    }

    /// The last known value of `data_point`.
    pub fn last_value(&self, data_point: &str) -> Option<&DataPointValue> {
        let i = *self.by_name.get(data_point)?;
        self.points.get(i)?.value.as_ref()
    }

    /// The next message, or `None` when nothing changed since the previous one.
    /// `now` and `id` become the CloudEvents `time` and `id`.
    pub fn next_message_with(&mut self, now: DateTime<Utc>, id: String) -> Option<DatasetMessage> {
        if self.changed == 0 {
            return None;
        }
        let sequence = self.sequence;
        let every = u64::try_from(self.settings.key_frame_count).unwrap_or(0);
        let kind = if sequence.checked_rem(every) == Some(0) {
            FrameKind::Key
        } else {
            FrameKind::Delta
        };
        let mut payload = Vec::with_capacity(self.last_len + 64);
        let mut values = 0;
        payload.push(b'{');
        for slot in &mut self.points {
            let include = kind == FrameKind::Key || slot.changed;
            slot.changed = false;
            let Some(value) = slot.value.as_ref().filter(|_| include) else {
                continue;
            };
            if values > 0 {
                payload.push(b',');
            }
            values += 1;
            payload.extend_from_slice(slot.key.as_bytes());
            payload.push(b':');
            write_point(&mut payload, value, &mut self.stamp);
        }
        payload.push(b'}');
        self.last_len = payload.len();
        self.changed = 0;
        self.sequence += 1;
        Some(DatasetMessage {
            kind,
            sequence,
            payload,
            values,
            properties: self.properties(kind, sequence, now, id),
        })
    }

    /// [`DatasetFrames::next_message_with`] with the current time and a random UUID as id.
    pub fn next_message(&mut self) -> Option<DatasetMessage> {
        self.next_message_with(Utc::now(), uuid::Uuid::new_v4().to_string())
    }

    fn properties(
        &self,
        kind: FrameKind,
        sequence: u64,
        now: DateTime<Utc>,
        id: String,
    ) -> Vec<(String, String)> {
        [
            ("specversion", "1.0".to_owned()),
            ("type", kind.cloud_event_type().to_owned()),
            ("source", self.settings.source.clone()),
            ("id", id),
            ("time", rfc3339(now)),
            ("subject", self.settings.subject.clone()),
            ("sequence", sequence.to_string()),
            ("datacontenttype", "application/json".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

/// `s` as a JSON string literal, quotes included.
fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Appends one data point's object, the same as [`data_point_json`] serialized; `stamp`
/// caches the last formatted source timestamp.
fn write_point(
    out: &mut Vec<u8>,
    value: &DataPointValue,
    stamp: &mut Option<(DateTime<Utc>, String)>,
) {
    out.push(b'{');
    if let Some(ts) = value.source_timestamp {
        if !matches!(stamp, Some((at, _)) if *at == ts) {
            *stamp = Some((ts, json_string(&rfc3339(ts))));
        }
        out.extend_from_slice(b"\"SourceTimestamp\":");
        if let Some((_, text)) = stamp {
            out.extend_from_slice(text.as_bytes());
        }
        out.push(b',');
    }
    out.extend_from_slice(b"\"Value\":");
    if serde_json::to_writer(&mut *out, &value.value).is_err() {
        out.extend_from_slice(b"null");
    }
    if !value.status.is_good() {
        out.extend_from_slice(b",\"StatusCode\":{\"Code\":");
        out.extend_from_slice(value.status.code().to_string().as_bytes());
        out.extend_from_slice(b",\"Symbol\":");
        out.extend_from_slice(json_string(&value.status.symbol()).as_bytes());
        out.push(b'}');
    }
    out.push(b'}');
}

/// The JSON object for one data point inside a dataset payload.
pub fn data_point_json(value: &DataPointValue) -> Value {
    let mut obj = Map::new();
    if let Some(ts) = value.source_timestamp {
        obj.insert("SourceTimestamp".into(), json!(rfc3339(ts)));
    }
    obj.insert("Value".into(), value.value.clone());
    if !value.status.is_good() {
        obj.insert(
            "StatusCode".into(),
            json!({"Code": value.status.code(), "Symbol": value.status.symbol()}),
        );
    }
    Value::Object(obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use opcua_types::StatusCode;
    use std::collections::BTreeSet;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 180_000_000)
            .single()
            .unwrap_or_default()
    }

    fn sample(v: Value, secs: i64) -> DataPointValue {
        DataPointValue {
            value: v,
            source_timestamp: Some(at(secs)),
            status: Status::GOOD,
        }
    }

    fn frames(key_frame_count: i32) -> DatasetFrames {
        DatasetFrames::new(FrameSettings {
            source: "urn:edgeplane:opcua-sim".into(),
            subject: "thermostat".into(),
            key_frame_count,
        })
    }

    fn prop<'a>(m: &'a DatasetMessage, key: &str) -> Option<&'a str> {
        m.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn payload_has_the_aio_shape() {
        let mut f = frames(0);
        f.update("temperature", sample(json!(4558), 0));
        let m = f.next_message_with(at(1), "id-1".into());
        let m = m.expect("a change gives a message");
        assert_eq!(
            m.payload_json(),
            json!({"temperature": {"SourceTimestamp": "2023-11-14T22:13:20.180Z", "Value": 4558}})
        );
        assert_eq!(m.values, 1);
    }

    #[test]
    fn properties_follow_cloudevents() {
        let mut f = frames(0);
        f.update("a", sample(json!(1), 0));
        let m = f.next_message_with(at(2), "id-7".into()).expect("message");
        assert_eq!(prop(&m, "specversion"), Some("1.0"));
        assert_eq!(prop(&m, "type"), Some("ua-deltaframe"));
        assert_eq!(prop(&m, "source"), Some("urn:edgeplane:opcua-sim"));
        assert_eq!(prop(&m, "id"), Some("id-7"));
        assert_eq!(prop(&m, "time"), Some("2023-11-14T22:13:22.180Z"));
        assert_eq!(prop(&m, "subject"), Some("thermostat"));
        assert_eq!(prop(&m, "sequence"), Some("0"));
        assert_eq!(prop(&m, "datacontenttype"), Some("application/json"));
    }

    #[test]
    fn nothing_changed_means_no_message() {
        let mut f = frames(2);
        assert!(f.next_message().is_none());
        f.update("a", sample(json!(1), 0));
        assert!(f.next_message().is_some());
        assert!(f.next_message().is_none());
    }

    #[test]
    fn key_frames_carry_all_values_deltas_only_changes() {
        let mut f = frames(3);
        f.update("a", sample(json!(1), 0));
        f.update("b", sample(json!(2), 0));
        let m0 = f.next_message().expect("m0");
        assert_eq!(m0.kind, FrameKind::Key);
        assert_eq!(m0.payload_json().as_object().map(Map::len), Some(2));

        f.update("a", sample(json!(10), 1));
        let m1 = f.next_message().expect("m1");
        assert_eq!(m1.kind, FrameKind::Delta);
        assert_eq!(prop(&m1, "type"), Some("ua-deltaframe"));
        assert_eq!(m1.payload_json()["a"]["Value"], json!(10));
        assert!(m1.payload_json().get("b").is_none());

        f.update("a", sample(json!(11), 2));
        assert_eq!(f.next_message().map(|m| m.kind), Some(FrameKind::Delta));

        f.update("a", sample(json!(12), 3));
        let m3 = f.next_message().expect("m3");
        assert_eq!(m3.kind, FrameKind::Key);
        assert_eq!(prop(&m3, "type"), Some("ua-keyframe"));
        assert_eq!(m3.sequence, 3);
        assert_eq!(m3.payload_json()["a"]["Value"], json!(12));
        assert_eq!(m3.payload_json()["b"]["Value"], json!(2));
    }

    #[test]
    fn key_frame_count_one_makes_every_message_a_key_frame() {
        let mut f = frames(1);
        for i in 0..3 {
            f.update("a", sample(json!(i), i));
            assert_eq!(f.next_message().map(|m| m.kind), Some(FrameKind::Key));
        }
    }

    #[test]
    fn bad_status_is_reported_and_missing_timestamp_omitted() {
        let mut f = frames(0);
        f.update(
            "bad",
            DataPointValue {
                value: Value::Null,
                source_timestamp: None,
                status: StatusCode::BadSensorFailure.into(),
            },
        );
        let m = f.next_message().expect("message");
        let code = StatusCode::BadSensorFailure.bits();
        assert_eq!(
            m.payload_json(),
            json!({"bad": {"Value": null, "StatusCode": {"Code": code, "Symbol": "BadSensorFailure"}}})
        );
    }

    #[test]
    fn ids_are_unique_uuids_and_sequence_counts_up() {
        let mut f = frames(0);
        let mut ids = BTreeSet::new();
        for i in 0..5u64 {
            f.update("a", sample(json!(i), 0));
            let m = f.next_message().expect("message");
            assert_eq!(m.sequence, i);
            let id = prop(&m, "id").unwrap_or_default().to_owned();
            assert!(uuid::Uuid::parse_str(&id).is_ok());
            ids.insert(id);
        }
        assert_eq!(ids.len(), 5);
    }

    #[test]
    fn written_payload_matches_the_json_of_each_point() {
        let mut f = DatasetFrames::with_points(
            FrameSettings {
                source: "s".into(),
                subject: "t".into(),
                key_frame_count: 0,
            },
            ["quote\"d", "b", "c"],
        );
        let points = [
            sample(json!("x\ny"), 0),
            sample(json!(2.5), 1),
            DataPointValue {
                value: json!([1, 2]),
                source_timestamp: None,
                status: StatusCode::UncertainLastUsableValue.into(),
            },
        ];
        for (i, p) in points.iter().enumerate() {
            assert!(f.update_at(i, p.clone()).is_ok());
        }
        assert!(f.update_at(3, sample(json!(0), 0)).is_err());
        let m = f.next_message().expect("message");
        assert_eq!(m.values, 3);
        assert_eq!(
            m.payload_json(),
            json!({
                "quote\"d": data_point_json(&points[0]),
                "b": data_point_json(&points[1]),
                "c": data_point_json(&points[2]),
            })
        );
        assert_eq!(f.last_value("b"), Some(&points[1]));
    }

    #[test]
    fn values_by_position_and_by_name_meet_in_one_frame() {
        let mut f = DatasetFrames::with_points(
            FrameSettings {
                source: "s".into(),
                subject: "t".into(),
                key_frame_count: 2,
            },
            ["a", "b"],
        );
        assert!(f.update_at(1, sample(json!(1), 0)).is_ok());
        f.update("a", sample(json!(2), 1));
        let m0 = f.next_message().expect("m0");
        assert_eq!(m0.payload_json()["a"]["Value"], json!(2));
        assert_eq!(m0.payload_json()["b"]["Value"], json!(1));
        assert!(f.update_at(0, sample(json!(3), 2)).is_ok());
        let m1 = f.next_message().expect("m1");
        assert_eq!(m1.kind, FrameKind::Delta);
        assert_eq!(m1.values, 1);
        assert_eq!(
            m1.payload_json(),
            json!({"a": {"SourceTimestamp": "2023-11-14T22:13:22.180Z", "Value": 3}})
        );
    }
}
