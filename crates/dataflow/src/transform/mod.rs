//! The BuiltInTransformation operation of a dataflow: enrich → filter → map over one
//! message at a time.
//!
//! [`BuiltInTransformation::compile`] takes the settings as they appear in the Dataflow
//! resource and checks every rule up front. [`BuiltInTransformation::apply`] takes a
//! [`Message`] and the current datasets and returns [`Outcome::Emit`] with the
//! transformed message, or [`Outcome::Dropped`] when a filter rule matched. The
//! transform keeps the last-known values (`? $last`) of its inputs, so give each
//! dataflow replica its own instance; datasets belong to the caller, who refreshes them
//! from the state store.

mod compile;
mod input;
mod map;

use std::fmt;

use serde_json::Value as Json;

pub use compile::{ConfigError, ConfigErrorKind, ConfigErrors};

use crate::config::BuiltInTransformationSettings;
use crate::dataset::DatasetSource;
use crate::expr::{values_equal, EvalError};
use crate::path::MetadataField;
use crate::value::Value;
use compile::{Dataset, Filter};
use input::{CompiledInput, Ctx, Source};
use map::{MapRule, MetaWrite};

/// A message entering or leaving the transform: the MQTT topic, the JSON payload and
/// the metadata that rules can read and write.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Json,
    /// In order; a key may repeat.
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
}

impl Message {
    /// A message with no user properties and no content type.
    pub fn new(topic: impl Into<String>, payload: Json) -> Message {
        Message {
            topic: topic.into(),
            payload,
            user_properties: Vec::new(),
            content_type: None,
        }
    }
}

/// What the transform did with a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Emit(Message),
    Dropped(DropReason),
}

/// Why a message was dropped: a filter rule evaluated to `true`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropReason {
    /// Index of the rule in `filter`.
    pub filter: usize,
    /// The rule's `description`, if it has one.
    pub description: Option<String>,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "filter[{}] matched", self.filter)?;
        if let Some(description) = &self.description {
            write!(f, " ({description})")?;
        }
        Ok(())
    }
}

/// Which rule a runtime error comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    Dataset(usize),
    Filter(usize),
    Map(usize),
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleRef::Dataset(i) => write!(f, "datasets[{i}]"),
            RuleRef::Filter(i) => write!(f, "filter[{i}]"),
            RuleRef::Map(i) => write!(f, "map[{i}]"),
        }
    }
}

/// An expression failed on this message (a type mismatch, an overflow, …). The message
/// cannot be transformed; the caller drops it and reports the error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{rule}.expression: {source}")]
pub struct TransformError {
    pub rule: RuleRef,
    #[source]
    pub source: EvalError,
}

/// A compiled BuiltInTransformation with its last-known-value state.
pub struct BuiltInTransformation {
    datasets: Vec<Dataset>,
    filters: Vec<Filter>,
    maps: Vec<MapRule>,
    /// `? $last` values, one slot per input that asks for it.
    last: Vec<Option<Json>>,
    /// Inputs with a `? $last` slot, to refresh after each message.
    remembered: Vec<(RuleRef, usize)>,
    /// Per dataset, an index of its records for the usual `$source.x == $context.y`
    /// condition, valid for one generation of the records.
    indexes: Vec<Option<EqualityIndex>>,
}

/// The records of one dataset generation by the string value of the record side of an
/// equality condition: the first record for each value, as a linear scan would find it.
struct EqualityIndex {
    generation: u64,
    /// Which input of the condition is the message's.
    message_input: usize,
    first: std::collections::HashMap<String, usize>,
}

/// What the map stage decided, before the output message is assembled.
struct Plan<'a> {
    /// `None`: no map rules, the payload passes unchanged.
    payload: Option<Json>,
    meta: Vec<MetaWrite<'a>>,
}

/// What the stages decided for a message.
enum Decision<'a> {
    Emit(Plan<'a>),
    Drop(DropReason),
}

/// New `? $last` values: (slot, value).
type Updates = Vec<(usize, Json)>;

impl BuiltInTransformation {
    /// Compiles the settings; on failure returns every problem found.
    pub fn compile(settings: &BuiltInTransformationSettings) -> Result<Self, ConfigErrors> {
        let compiled = compile::compile(settings)?;
        let mut remembered = Vec::new();
        let rules = (compiled.filters.iter().enumerate())
            .map(|(i, f)| (RuleRef::Filter(i), &f.inputs))
            .chain((compiled.maps.iter().enumerate()).map(|(i, m)| (RuleRef::Map(i), &m.inputs)));
        for (rule, inputs) in rules {
            for (i, input) in inputs.iter().enumerate() {
                if input.last_slot.is_some() {
                    remembered.push((rule, i));
                }
            }
        }
        Ok(BuiltInTransformation {
            datasets: compiled.datasets,
            filters: compiled.filters,
            maps: compiled.maps,
            last: vec![None; compiled.last_slots],
            remembered,
            indexes: Vec::new(),
        })
    }

    /// The state store keys this transform reads datasets from, in `datasets` order.
    pub fn dataset_keys(&self) -> impl Iterator<Item = &str> {
        self.datasets.iter().map(|d| d.key.as_str())
    }

    /// Runs enrich → filter → map on one message.
    pub fn apply(
        &mut self,
        msg: Message,
        datasets: &dyn DatasetSource,
    ) -> Result<Outcome, TransformError> {
        self.refresh_indexes(datasets);
        let (result, updates) = self.run(&msg, datasets);
        let outcome = result.map(|decision| match decision {
            Decision::Emit(plan) => Outcome::Emit(assemble(msg, plan)),
            Decision::Drop(reason) => Outcome::Dropped(reason),
        });
        for (slot, value) in updates {
            if let Some(place) = self.last.get_mut(slot) {
                *place = Some(value);
            }
        }
        outcome
    }

    /// Build (or keep) each dataset's equality index for the records' current generation.
    /// A dataset is indexed only when its condition is `$a == $b` with one side read from
    /// the record and every record's value there a string (or missing); otherwise the
    /// linear scan decides, with the full comparison rules.
    fn refresh_indexes(&mut self, datasets: &dyn DatasetSource) {
        if self.indexes.len() != self.datasets.len() {
            self.indexes = self.datasets.iter().map(|_| None).collect();
        }
        let empty = Json::Null;
        let probe = Ctx {
            payload: &empty,
            topic: "",
            user_properties: &[],
            content_type: None,
            matched: Vec::new(),
            last: &[],
        };
        for (dataset, slot) in self.datasets.iter().zip(self.indexes.iter_mut()) {
            let Some(generation) = datasets.generation(&dataset.key) else {
                *slot = None;
                continue;
            };
            if slot.as_ref().is_some_and(|ix| ix.generation == generation) {
                continue;
            }
            *slot = None;
            let Some((a, b)) = dataset.expr.input_equality() else {
                continue;
            };
            let is_record = |i: usize| {
                dataset
                    .inputs
                    .get(i)
                    .is_some_and(|input| matches!(input.source, Source::Record(_)))
            };
            let (record_input, message_input) = match (is_record(a), is_record(b)) {
                (false, true) => (b, a),
                (true, false) => (a, b),
                _ => continue,
            };
            let Some(input) = dataset.inputs.get(record_input) else {
                continue;
            };
            let mut first = std::collections::HashMap::new();
            let mut indexable = true;
            for (i, record) in datasets
                .records(&dataset.key)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                match probe.read(input, Some(record), &[]).value() {
                    Value::String(s) => {
                        first.entry(s.into_owned()).or_insert(i);
                    }
                    Value::Empty => {}
                    _ => {
                        indexable = false;
                        break;
                    }
                }
            }
            if indexable {
                *slot = Some(EqualityIndex {
                    generation,
                    message_input,
                    first,
                });
            }
        }
    }

    /// Everything that only reads: the stages and the new last-known values.
    fn run<'s>(
        &'s self,
        msg: &Message,
        datasets: &dyn DatasetSource,
    ) -> (Result<Decision<'s>, TransformError>, Updates) {
        let mut ctx = Ctx {
            payload: &msg.payload,
            topic: &msg.topic,
            user_properties: &msg.user_properties,
            content_type: msg.content_type.as_deref(),
            matched: Vec::new(),
            last: &self.last,
        };
        let result = self.stages(&mut ctx, datasets);
        (result, self.updates(&ctx))
    }

    fn stages<'s: 'a, 'a>(
        &'s self,
        ctx: &mut Ctx<'a>,
        datasets: &'a dyn DatasetSource,
    ) -> Result<Decision<'s>, TransformError> {
        ctx.matched = self.enrich(ctx, datasets)?;
        if let Some(reason) = self.filter(ctx)? {
            return Ok(Decision::Drop(reason));
        }
        let mut meta = Vec::new();
        let payload = if self.maps.is_empty() {
            None
        } else {
            Some(map::run(&self.maps, ctx, &mut meta)?)
        };
        Ok(Decision::Emit(Plan { payload, meta }))
    }

    /// For every dataset, the first record whose condition holds. The message's side of
    /// the condition is read once; only the record's side is read per record.
    fn enrich<'a>(
        &'a self,
        ctx: &Ctx<'a>,
        datasets: &'a dyn DatasetSource,
    ) -> Result<Vec<Option<&'a Json>>, TransformError> {
        let mut matched = Vec::with_capacity(self.datasets.len());
        let mut values: Vec<Value<'a>> = Vec::new();
        for (index, dataset) in self.datasets.iter().enumerate() {
            values.clear();
            values.extend(dataset.inputs.iter().map(|input| match input.source {
                Source::Record(_) => Value::Empty,
                _ => ctx.read(input, None, &[]).value(),
            }));
            let records = datasets.records(&dataset.key).unwrap_or_default();
            let equality_index = self
                .indexes
                .get(index)
                .and_then(Option::as_ref)
                .filter(|ix| Some(ix.generation) == datasets.generation(&dataset.key));
            if let Some(ix) = equality_index {
                if let Some(Value::String(s)) = values.get(ix.message_input) {
                    matched.push(ix.first.get(s.as_ref()).and_then(|&i| records.get(i)));
                    continue;
                }
            }
            let mut found = None;
            for record in records {
                for (slot, input) in values.iter_mut().zip(&dataset.inputs) {
                    if let Source::Record(_) = input.source {
                        *slot = ctx.read(input, Some(record), &[]).value();
                    }
                }
                let hit =
                    match dataset.expr.input_equality() {
                        Some((a, b)) => (values.get(a).zip(values.get(b)))
                            .is_some_and(|(x, y)| values_equal(x, y)),
                        None => dataset.expr.eval_condition(&values).map_err(|source| {
                            TransformError {
                                rule: RuleRef::Dataset(index),
                                source,
                            }
                        })?,
                    };
                if hit {
                    found = Some(record);
                    break;
                }
            }
            matched.push(found);
        }
        Ok(matched)
    }

    /// The first filter rule that holds, if any.
    fn filter<'a>(&'a self, ctx: &Ctx<'a>) -> Result<Option<DropReason>, TransformError> {
        let mut values = Vec::new();
        for (index, filter) in self.filters.iter().enumerate() {
            values.clear();
            values.extend(filter.inputs.iter().map(|i| ctx.read(i, None, &[]).value()));
            let hit = filter
                .expr
                .eval_condition(&values)
                .map_err(|source| TransformError {
                    rule: RuleRef::Filter(index),
                    source,
                })?;
            if hit {
                return Ok(Some(DropReason {
                    filter: index,
                    description: filter.description.clone(),
                }));
            }
        }
        Ok(None)
    }

    /// The `? $last` inputs present in this message, to remember.
    fn updates<'a>(&'a self, ctx: &Ctx<'a>) -> Updates {
        let mut updates = Vec::new();
        for (rule, index) in &self.remembered {
            let input: Option<&CompiledInput> = match rule {
                RuleRef::Filter(i) => self.filters.get(*i).and_then(|f| f.inputs.get(*index)),
                RuleRef::Map(i) => self.maps.get(*i).and_then(|m| m.inputs.get(*index)),
                RuleRef::Dataset(_) => None,
            };
            let Some(input) = input else { continue };
            let Some(slot) = input.last_slot else {
                continue;
            };
            let current = ctx.read_current(&input.source, None, &[]);
            if let (false, Some(json)) = (current.is_missing(), current.to_json()) {
                updates.push((slot, json));
            }
        }
        updates
    }
}

/// Builds the output message from the input's metadata and the map stage's writes.
fn assemble(msg: Message, plan: Plan<'_>) -> Message {
    let mut out = Message {
        payload: plan.payload.unwrap_or(msg.payload),
        ..msg
    };
    for write in plan.meta {
        match (write.field, write.value) {
            (MetadataField::Topic, value) => out.topic = value.unwrap_or_default(),
            (MetadataField::ContentType, value) => out.content_type = value,
            (MetadataField::UserProperty(name), value) => {
                // Setting a property replaces every earlier value under that name.
                out.user_properties.retain(|(k, _)| k != name);
                if let Some(value) = value {
                    out.user_properties.push((name.clone(), value));
                }
            }
        }
    }
    out
}
