//! Runs the documented examples kept as table files in `tests/vectors/`.
//!
//! Each file has `expressions` (an expression, its inputs, and the value or error it
//! gives) and `transforms` (settings, datasets, and a sequence of messages with the
//! message, drop or error each one produces). Every case names the Microsoft Learn page
//! it comes from in `doc`. Numbers compare with a relative tolerance of 1e-9, but an
//! integer must stay an integer and a float a float (`3` and `3.0` differ).

use std::collections::HashMap;
use std::fmt::Write as _;

use edgeplane_dataflow::{
    BuiltInTransformation, BuiltInTransformationSettings, Expr, Message, Outcome, Value,
};
use serde::Deserialize;
use serde_json::Value as Json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    expressions: Vec<ExprCase>,
    #[serde(default)]
    transforms: Vec<TransformCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprCase {
    doc: String,
    expr: String,
    #[serde(default)]
    inputs: Vec<Json>,
    /// Expected value (`null` for `()`); absent when `error` is given.
    #[serde(default)]
    result: Option<Json>,
    /// A substring of the compile or evaluation error.
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformCase {
    name: String,
    doc: String,
    settings: Json,
    #[serde(default)]
    datasets: HashMap<String, Vec<Json>>,
    #[serde(default, rename = "compileError")]
    compile_error: Option<String>,
    #[serde(default)]
    messages: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(rename = "in")]
    input: MessageSpec,
    #[serde(default)]
    out: Option<MessageSpec>,
    /// A substring of the drop reason.
    #[serde(default)]
    dropped: Option<String>,
    /// A substring of the runtime error.
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct MessageSpec {
    #[serde(default)]
    topic: Option<String>,
    payload: Json,
    #[serde(default)]
    user_properties: Option<Vec<(String, String)>>,
    /// `Some(None)` (explicit `null`) expects no content type.
    #[serde(default, with = "double_option")]
    content_type: Option<Option<String>>,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

const DEFAULT_TOPIC: &str = "test/topic";

fn run_file(name: &str) {
    let path = format!("{}/tests/vectors/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: File = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut failures = String::new();
    for case in &file.expressions {
        if let Err(why) = check_expression(case) {
            let _ = writeln!(failures, "expression `{}` ({}): {why}", case.expr, case.doc);
        }
    }
    for case in &file.transforms {
        if let Err(why) = check_transform(case) {
            let _ = writeln!(failures, "transform `{}` ({}): {why}", case.name, case.doc);
        }
    }
    assert!(
        file.expressions.len() + file.transforms.len() > 0,
        "{name} has no cases"
    );
    assert!(failures.is_empty(), "{name}:\n{failures}");
}

fn check_expression(case: &ExprCase) -> Result<(), String> {
    let outcome = Expr::compile(&case.expr, case.inputs.len())
        .map_err(|e| e.to_string())
        .and_then(|expr| {
            let inputs: Vec<Value<'_>> = case.inputs.iter().map(Value::from_json).collect();
            let value = expr.eval(&inputs).map_err(|e| e.to_string())?;
            Ok(value.to_json().unwrap_or(Json::Null))
        });
    match (&case.error, outcome) {
        (Some(want), Err(got)) if got.contains(want.as_str()) => Ok(()),
        (Some(want), Err(got)) => Err(format!("error `{got}` does not mention `{want}`")),
        (Some(want), Ok(got)) => Err(format!("expected error `{want}`, got {got}")),
        (None, Err(got)) => Err(format!("unexpected error: {got}")),
        (None, Ok(got)) => {
            let want = case.result.clone().unwrap_or(Json::Null);
            same(&want, &got)
                .then_some(())
                .ok_or_else(|| format!("expected {want}, got {got}"))
        }
    }
}

fn check_transform(case: &TransformCase) -> Result<(), String> {
    let settings: BuiltInTransformationSettings =
        serde_json::from_value(case.settings.clone()).map_err(|e| format!("settings: {e}"))?;
    let mut transform = match (
        BuiltInTransformation::compile(&settings),
        &case.compile_error,
    ) {
        (Ok(t), None) => t,
        (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => return Ok(()),
        (Err(e), Some(want)) => {
            return Err(format!("compile error `{e}` does not mention `{want}`"))
        }
        (Ok(_), Some(want)) => return Err(format!("expected compile error `{want}`")),
        (Err(e), None) => return Err(format!("does not compile: {e}")),
    };
    for (i, step) in case.messages.iter().enumerate() {
        let msg = Message {
            topic: step
                .input
                .topic
                .clone()
                .unwrap_or_else(|| DEFAULT_TOPIC.to_owned()),
            payload: step.input.payload.clone(),
            user_properties: step.input.user_properties.clone().unwrap_or_default(),
            content_type: step.input.content_type.clone().flatten(),
        };
        check_step(step, transform.apply(msg, &case.datasets))
            .map_err(|why| format!("message {i}: {why}"))?;
    }
    Ok(())
}

fn check_step(
    step: &Step,
    got: Result<Outcome, edgeplane_dataflow::TransformError>,
) -> Result<(), String> {
    match (got, &step.out, &step.dropped, &step.error) {
        (Ok(Outcome::Emit(msg)), Some(want), None, None) => compare_message(want, &msg),
        (Ok(Outcome::Dropped(reason)), None, Some(want), None)
            if reason.to_string().contains(want.as_str()) =>
        {
            Ok(())
        }
        (Err(e), None, None, Some(want)) if e.to_string().contains(want.as_str()) => Ok(()),
        (got, ..) => Err(format!("unexpected result {got:?}")),
    }
}

fn compare_message(want: &MessageSpec, got: &Message) -> Result<(), String> {
    if !same(&want.payload, &got.payload) {
        return Err(format!(
            "payload: expected {}, got {}",
            want.payload, got.payload
        ));
    }
    if let Some(topic) = &want.topic {
        if *topic != got.topic {
            return Err(format!("topic: expected {topic}, got {}", got.topic));
        }
    }
    if let Some(props) = &want.user_properties {
        if *props != got.user_properties {
            return Err(format!(
                "user properties: expected {props:?}, got {:?}",
                got.user_properties
            ));
        }
    }
    if let Some(content_type) = &want.content_type {
        if *content_type != got.content_type {
            return Err(format!(
                "content type: expected {content_type:?}, got {:?}",
                got.content_type
            ));
        }
    }
    Ok(())
}

/// Structural equality with a tolerance on floats; ints and floats do not mix.
fn same(want: &Json, got: &Json) -> bool {
    match (want, got) {
        (Json::Number(a), Json::Number(b)) => {
            match (a.as_i64(), b.as_i64(), a.as_f64(), b.as_f64()) {
                (Some(x), Some(y), ..) => x == y,
                (None, None, Some(x), Some(y)) => {
                    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1.0)
                }
                _ => false,
            }
        }
        (Json::Array(a), Json::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Json::Object(a), Json::Object(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| same(v, w)))
        }
        (a, b) => a == b,
    }
}

#[test]
fn expressions_reference() {
    run_file("expressions.json");
}

#[test]
fn conversions() {
    run_file("conversions.json");
}

#[test]
fn mapping() {
    run_file("mapping.json");
}

#[test]
fn wildcards() {
    run_file("wildcards.json");
}

#[test]
fn metadata() {
    run_file("metadata.json");
}

#[test]
fn enrich() {
    run_file("enrich.json");
}

#[test]
fn filter() {
    run_file("filter.json");
}

#[test]
fn last_known_and_defaults() {
    run_file("last-known.json");
}

#[test]
fn graphs_map() {
    run_file("graphs-map.json");
}

#[test]
fn end_to_end() {
    run_file("end-to-end.json");
}
