//! A dry run of one dataflow on sample messages, for authoring (`edgeplane dataflow
//! test FILE --input samples.jsonl`): each sample goes through the same transform and
//! destination-topic rules as at run time, and what would be sent, or why the message
//! would be dropped, comes back in words.
//!
//! A sample line is either an envelope `{"topic": "...", "payload": ..., "userProperties":
//! {"k": "v"}}` or, when it has no `payload` field, the payload itself (its topic is then
//! the default given by the caller).

use serde_json::Value as Json;

use crate::dataset::Datasets;
use crate::resources::Plan;
use crate::runtime::topic;
use crate::{BuiltInTransformation, Message, Outcome};

/// What happened to one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum DryRunResult {
    Sent {
        topic: String,
        payload: Json,
        user_properties: Vec<(String, String)>,
    },
    Dropped(String),
    /// The sample line itself is not usable.
    Invalid(String),
}

impl std::fmt::Display for DryRunResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DryRunResult::Sent {
                topic,
                payload,
                user_properties,
            } => {
                write!(f, "-> {topic} {payload}")?;
                for (k, v) in user_properties {
                    write!(f, " [{k}={v}]")?;
                }
                Ok(())
            }
            DryRunResult::Dropped(why) => write!(f, "dropped: {why}"),
            DryRunResult::Invalid(why) => write!(f, "invalid sample: {why}"),
        }
    }
}

/// Run `plan` over sample lines (JSON lines), with `datasets` for enrichment.
pub fn run(
    plan: &Plan,
    samples: &str,
    default_topic: &str,
    datasets: &Datasets,
) -> Vec<DryRunResult> {
    let mut transform = plan
        .transform
        .as_ref()
        .and_then(|t| BuiltInTransformation::compile(t).ok());
    samples
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let sample: Json = match serde_json::from_str(line) {
                Ok(v) => v,
                Err(e) => return DryRunResult::Invalid(format!("not JSON: {e}")),
            };
            let message = match sample.get("payload") {
                Some(payload) => Message {
                    topic: sample
                        .get("topic")
                        .and_then(Json::as_str)
                        .unwrap_or(default_topic)
                        .to_owned(),
                    payload: payload.clone(),
                    user_properties: sample
                        .get("userProperties")
                        .and_then(Json::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (
                                        k.clone(),
                                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    content_type: None,
                },
                None => Message::new(default_topic, sample),
            };
            one(plan, transform.as_mut(), message, datasets)
        })
        .collect()
}

fn one(
    plan: &Plan,
    transform: Option<&mut BuiltInTransformation>,
    message: Message,
    datasets: &Datasets,
) -> DryRunResult {
    let input_topic = message.topic.clone();
    let out = match transform {
        None => message,
        Some(t) => match t.apply(message, datasets) {
            Ok(Outcome::Emit(out)) => out,
            Ok(Outcome::Dropped(reason)) => return DryRunResult::Dropped(reason.to_string()),
            Err(e) => return DryRunResult::Dropped(format!("transform failed: {e}")),
        },
    };
    let template = plan
        .destination
        .data_destination
        .replace("${outputTopic}", &out.topic);
    let Some(topic) = topic::resolve(&template, &input_topic) else {
        return DryRunResult::Dropped(format!(
            "destination `{}` cannot be resolved for topic `{input_topic}`",
            plan.destination.data_destination
        ));
    };
    let mut user_properties = out.user_properties;
    topic::apply_headers(&plan.destination.headers, &mut user_properties);
    DryRunResult::Sent {
        topic,
        payload: out.payload,
        user_properties,
    }
}
