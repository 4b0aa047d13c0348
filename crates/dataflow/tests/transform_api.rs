//! What the runtime that embeds the transform relies on, beyond the documented examples:
//! per-instance state, the dataset keys to watch, refreshed datasets, error values.

use std::collections::HashMap;

use edgeplane_dataflow::{
    BuiltInTransformation, BuiltInTransformationSettings, ConfigErrorKind, Datasets, Message,
    Outcome, RuleRef,
};
use serde_json::{json, Value as Json};

fn compile(settings: Json) -> BuiltInTransformation {
    let settings: BuiltInTransformationSettings =
        serde_json::from_value(settings).expect("settings deserialize");
    BuiltInTransformation::compile(&settings).expect("settings compile")
}

fn payload(outcome: Outcome) -> Json {
    match outcome {
        Outcome::Emit(msg) => msg.payload,
        Outcome::Dropped(reason) => panic!("dropped: {reason}"),
    }
}

#[test]
fn each_instance_keeps_its_own_last_known_values() {
    let settings = json!({"map": [{"inputs": ["t ? $last"], "output": "t"}]});
    let mut first = compile(settings.clone());
    let mut second = compile(settings);
    let none = Datasets::new();
    first
        .apply(Message::new("a", json!({"t": 1})), &none)
        .expect("applies");
    let from_first = first
        .apply(Message::new("a", json!({})), &none)
        .expect("applies");
    let from_second = second
        .apply(Message::new("a", json!({})), &none)
        .expect("applies");
    assert_eq!(payload(from_first), json!({"t": 1}));
    assert_eq!(payload(from_second), json!({}));
}

#[test]
fn last_known_values_survive_a_dropped_message() {
    let mut transform = compile(json!({
        "filter": [{"inputs": ["t ? $last"], "expression": "$1 > 50"}],
        "map": [{"inputs": ["t ? $last"], "output": "t"}]
    }));
    let none = Datasets::new();
    let hot = transform.apply(Message::new("a", json!({"t": 60})), &none);
    assert!(matches!(hot, Ok(Outcome::Dropped(_))));
    // The filter still remembers 60, so a message without `t` is dropped too.
    let gap = transform.apply(Message::new("a", json!({})), &none);
    assert!(matches!(gap, Ok(Outcome::Dropped(_))));
}

#[test]
fn dataset_keys_are_the_state_store_keys_not_the_aliases() {
    let transform = compile(json!({"datasets": [
        {"key": "datasets.parag10.rule42 as position", "inputs": ["$source.p", "$context.p"], "expression": "$1 == $2"},
        {"key": "limits", "inputs": ["$source.d", "$context.d"], "expression": "$1 == $2"}
    ]}));
    let keys: Vec<&str> = transform.dataset_keys().collect();
    assert_eq!(keys, ["datasets.parag10.rule42", "limits"]);
}

#[test]
fn a_refreshed_dataset_is_used_by_the_next_message() {
    let mut transform = compile(json!({
        "datasets": [{"key": "assets", "inputs": ["$source.id", "$context.id"], "expression": "$1 == $2"}],
        "map": [{"inputs": ["$context(assets).location"], "output": "location"}]
    }));
    let mut datasets: HashMap<String, Vec<Json>> = HashMap::new();
    datasets.insert("assets".into(), vec![json!({"id": 1, "location": "old"})]);
    let before = transform.apply(Message::new("a", json!({"id": 1})), &datasets);
    datasets.insert("assets".into(), vec![json!({"id": 1, "location": "new"})]);
    let after = transform.apply(Message::new("a", json!({"id": 1})), &datasets);
    assert_eq!(
        payload(before.expect("applies")),
        json!({"location": "old"})
    );
    assert_eq!(payload(after.expect("applies")), json!({"location": "new"}));
}

#[test]
fn metadata_passes_through_when_not_written() {
    let mut transform = compile(json!({"map": [{"inputs": ["*"], "output": "*"}]}));
    let msg = Message {
        topic: "a/b".into(),
        payload: json!({"x": 1}),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        content_type: Some("application/json".into()),
    };
    let out = transform
        .apply(msg.clone(), &Datasets::new())
        .expect("applies");
    assert_eq!(out, Outcome::Emit(msg));
}

#[test]
fn errors_are_values_the_runtime_can_inspect() {
    let settings: BuiltInTransformationSettings = serde_json::from_value(json!({
        "map": [{"inputs": ["a"], "output": "b", "expression": "1 +"}]
    }))
    .expect("deserializes");
    let errors = BuiltInTransformation::compile(&settings)
        .err()
        .expect("does not compile");
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].location, "map[0].expression");
    assert!(matches!(&errors.0[0].kind, ConfigErrorKind::Expression(e) if e.column == 4));

    let mut transform =
        compile(json!({"map": [{"inputs": ["a"], "output": "b", "expression": "$1 / 0"}]}));
    let err = transform
        .apply(Message::new("t", json!({"a": 1})), &Datasets::new())
        .expect_err("division by zero");
    assert_eq!(err.rule, RuleRef::Map(0));
    assert_eq!(err.to_string(), "map[0].expression: division by zero");
}
