//! Throughput of a realistic BuiltInTransformation on one core.
//!
//! The flow: enrich from a 50-record asset dataset, drop readings above 42 °C (on the
//! last known temperature), copy everything, rename `deviceId` to `device.id`, add
//! `temperatureF` = cToF(temperature) in place of `temperature`, add the asset's
//! location, and copy the topic into a user property.
//!
//! It runs 1,000,000 messages twice: once from already-decoded messages (the transform
//! alone, cloning each input message as a decoder would produce it) and once from JSON
//! bytes (parse, transform, serialize). Run with
//! `cargo run --release -p edgeplane-dataflow --example throughput`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use edgeplane_dataflow::{
    BuiltInTransformation, BuiltInTransformationSettings, Datasets, Message, Outcome,
};
use serde_json::json;

const MESSAGES: usize = 1_000_000;
const DISTINCT: usize = 1024;
const ASSETS: usize = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings: BuiltInTransformationSettings = serde_json::from_value(json!({
        "datasets": [{
            "key": "assets",
            "inputs": ["$source.deviceId", "$context(assets).asset"],
            "expression": "$1 == $2"
        }],
        "filter": [{
            "inputs": ["temperature ? $last"],
            "expression": "$1 > 42",
            "description": "drop overheating readings"
        }],
        "map": [
            {"inputs": ["*"], "output": "*"},
            {"inputs": ["deviceId"], "output": "device.id"},
            {"inputs": ["temperature"], "output": "temperatureF", "expression": "cToF($1)"},
            {"inputs": ["$context(assets).location"], "output": "location"},
            {"inputs": ["$metadata.topic"], "output": "$metadata.user_property.origin_topic"}
        ]
    }))?;
    let mut datasets = Datasets::new();
    datasets.set(
        "assets",
        (0..ASSETS)
            .map(|i| json!({"asset": format!("dev-{i}"), "location": format!("room-{}", i % 7), "site": "Kent"}))
            .collect(),
    );
    let inputs: Vec<Message> = (0..DISTINCT)
        .map(|i| {
            let mut msg = Message::new(
                format!("factory/line{}/dev-{}/telemetry", i % 4, i % ASSETS),
                json!({
                    "deviceId": format!("dev-{}", i % ASSETS),
                    "temperature": 15.0 + (i % 31) as f64,
                    "humidity": 40 + (i % 20),
                    "status": "ok",
                    "seq": i,
                }),
            );
            msg.user_properties
                .push(("source".to_owned(), "sim".to_owned()));
            msg
        })
        .collect();
    let encoded: Vec<Vec<u8>> = inputs
        .iter()
        .map(|m| serde_json::to_vec(&m.payload))
        .collect::<Result<_, _>>()?;

    let mut transform = BuiltInTransformation::compile(&settings)?;
    let start = Instant::now();
    let mut emitted = 0usize;
    for i in 0..MESSAGES {
        let msg = inputs[i % DISTINCT].clone();
        if let Outcome::Emit(out) = transform.apply(msg, &datasets)? {
            emitted += 1;
            black_box(out);
        }
    }
    report("transform only", start.elapsed(), emitted);

    let mut transform = BuiltInTransformation::compile(&settings)?;
    let start = Instant::now();
    let mut emitted = 0usize;
    let mut bytes_out = 0usize;
    for i in 0..MESSAGES {
        let template = &inputs[i % DISTINCT];
        let msg = Message {
            topic: template.topic.clone(),
            payload: serde_json::from_slice(&encoded[i % DISTINCT])?,
            user_properties: template.user_properties.clone(),
            content_type: None,
        };
        if let Outcome::Emit(out) = transform.apply(msg, &datasets)? {
            emitted += 1;
            bytes_out += black_box(serde_json::to_vec(&out.payload)?).len();
        }
    }
    report("parse + transform + serialize", start.elapsed(), emitted);
    println!(
        "(sample output: {} bytes on average)",
        bytes_out / emitted.max(1)
    );
    Ok(())
}

fn report(what: &str, elapsed: Duration, emitted: usize) {
    let rate = MESSAGES as f64 / elapsed.as_secs_f64();
    println!(
        "{what}: {MESSAGES} messages in {:.3} s = {rate:.0} msg/s ({emitted} emitted, {} dropped)",
        elapsed.as_secs_f64(),
        MESSAGES - emitted
    );
}
