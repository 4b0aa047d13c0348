//! The connector's per-value work on the frames, for instruction counts that do not depend
//! on the machine's load: one dataset of 1,000 data points (the benchmark's kinds: counter,
//! random, sine, trend, toggle), TICKS ticks of every point changing with one shared source
//! timestamp, each tick applied by position and turned into one message's payload bytes, as
//! the connector's dataset task does.
//!
//! ```sh
//! cargo build --release -p edgeplane-opcua --example frames_cost
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/frames_cost 100
//! ```
//! Instructions (valgrind's `refs`) / (TICKS × 1,000) is the cost per value.

use chrono::{Duration, TimeZone, Utc};
use edgeplane_opcua::payload::{DataPointValue, DatasetFrames, FrameSettings};
use edgeplane_opcua::value::Status;
use serde_json::json;

const POINTS: usize = 1000;

fn main() {
    let ticks: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    let kinds = ["Counter", "Random", "Sine", "Trend", "Toggle"];
    let names: Vec<String> = (0..POINTS)
        .map(|i| format!("{}{}", kinds[i % kinds.len()], i))
        .collect();
    let settings = FrameSettings {
        source: "opc.tcp://127.0.0.1:4840".into(),
        subject: "line".into(),
        key_frame_count: 10,
    };
    let mut frames = DatasetFrames::with_points(settings, names.iter().map(String::as_str));
    let start = Utc
        .timestamp_opt(1_800_000_000, 0)
        .single()
        .unwrap_or_default();
    let mut bytes = 0usize;
    for tick in 0..ticks {
        let at = start + Duration::milliseconds(100 * tick as i64);
        for i in 0..POINTS {
            let value = match i % kinds.len() {
                0 => json!(tick),
                1 | 2 => json!((tick as f64 * 0.37 + i as f64).sin() * 100.0),
                3 => json!(tick as f64 * 0.5),
                _ => json!(tick % 2 == 0),
            };
            let sample = DataPointValue {
                value,
                source_timestamp: Some(at),
                status: Status::GOOD,
            };
            if frames.update_at(i, sample).is_err() {
                return;
            }
        }
        if let Some(m) = frames.next_message() {
            bytes += m.payload.len();
        }
    }
    println!(
        "{ticks} ticks, {} values, {bytes} payload bytes",
        ticks * POINTS as u64
    );
}
