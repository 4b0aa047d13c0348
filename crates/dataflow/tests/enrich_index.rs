//! The equality index over dataset records gives exactly what the linear scan gives: the
//! first matching record, a fresh answer after the dataset changes, and the full
//! comparison rules when record values are not all strings.

use edgeplane_dataflow::{BuiltInTransformation, Datasets, Message, Outcome};
use serde_json::{json, Value};

fn transform() -> BuiltInTransformation {
    let settings = serde_json::from_value(json!({
        "datasets": [{"key": "assets", "inputs": ["$source.id", "$context.asset"], "expression": "$1 == $2"}],
        "map": [{"inputs": ["$context(assets).location"], "output": "location"}]
    }))
    .expect("settings");
    BuiltInTransformation::compile(&settings).expect("compiles")
}

fn location(t: &mut BuiltInTransformation, datasets: &Datasets, id: Value) -> Value {
    match t.apply(Message::new("a", json!({ "id": id })), datasets) {
        Ok(Outcome::Emit(m)) => m.payload.get("location").cloned().unwrap_or(Value::Null),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn first_match_and_refresh_after_a_change() {
    let mut t = transform();
    let mut d = Datasets::new();
    d.set(
        "assets",
        vec![
            json!({"asset": "t1", "location": "hall"}),
            json!({"asset": "t2", "location": "roof"}),
            json!({"asset": "t1", "location": "second t1"}),
            json!({"location": "no asset"}),
        ],
    );
    assert_eq!(location(&mut t, &d, json!("t1")), json!("hall"));
    assert_eq!(location(&mut t, &d, json!("t2")), json!("roof"));
    assert_eq!(location(&mut t, &d, json!("t9")), Value::Null);
    d.set("assets", vec![json!({"asset": "t1", "location": "moved"})]);
    assert_eq!(location(&mut t, &d, json!("t1")), json!("moved"));
    assert_eq!(location(&mut t, &d, json!("t2")), Value::Null);
    d.remove("assets");
    assert_eq!(location(&mut t, &d, json!("t1")), Value::Null);
}

#[test]
fn numbers_keep_the_comparison_rules() {
    let mut t = transform();
    let mut d = Datasets::new();
    d.set(
        "assets",
        vec![
            json!({"asset": 7, "location": "seven"}),
            json!({"asset": "7", "location": "text seven"}),
        ],
    );
    // Not indexed (a number among the values): the scan compares as expressions do.
    assert_eq!(location(&mut t, &d, json!(7)), json!("seven"));
    assert_eq!(location(&mut t, &d, json!(7.0)), json!("seven"));
    assert_eq!(location(&mut t, &d, json!("7")), json!("text seven"));
}
