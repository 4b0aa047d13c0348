//! Dataflows: the Azure IoT Operations dataflow expression language and the
//! BuiltInTransformation engine (enrich → filter → map), as a pure library.
//!
//! - [`expr`] compiles and evaluates expressions (`cToF($1) > 100 && $2 == "on"`).
//! - [`path`] parses field references (`Payload."Tag.10".Value`, `$metadata.topic`,
//!   `$context(asset).location`, `temperature ? $last`).
//! - [`config`] mirrors the resource's `builtInTransformationSettings`.
//! - [`BuiltInTransformation`] compiles those settings and applies them to [`Message`]s,
//!   reading enrichment records from a [`DatasetSource`] that the caller keeps fresh.
//!
//! The engine above does no I/O. Beside it:
//! - [`resources`] turns the Dataflow, DataflowEndpoint and DataflowProfile resources of a
//!   loaded configuration into runnable [`resources::Plan`]s, compiling every transform
//!   and reporting every error with its file, resource, field and line;
//! - [`runtime`] runs the plans against the broker (in-process), remote MQTT brokers and
//!   folders of JSON-lines files, at least once and in order;
//! - [`dry_run`] applies one dataflow to sample messages (`edgeplane dataflow test`).
//!
//! ```
//! use edgeplane_dataflow::{BuiltInTransformation, Datasets, Message, Outcome};
//! use serde_json::json;
//!
//! let settings = serde_json::from_value(json!({
//!     "datasets": [{"key": "assets", "inputs": ["$source.deviceId", "$context.asset"],
//!                   "expression": "$1 == $2"}],
//!     "filter": [{"inputs": ["temperature"], "expression": "$1 > 100",
//!                 "description": "sensor glitch"}],
//!     "map": [
//!         {"inputs": ["*"], "output": "*"},
//!         {"inputs": ["temperature"], "output": "temperatureF", "expression": "cToF($1)"},
//!         {"inputs": ["$context(assets).location"], "output": "location"}
//!     ]
//! }))?;
//! let mut transform = BuiltInTransformation::compile(&settings)?;
//! let mut datasets = Datasets::new();
//! datasets.set_json_lines("assets", r#"{"asset": "t1", "location": "room1"}"#)?;
//!
//! let msg = Message::new("thermostats/t1", json!({"deviceId": "t1", "temperature": 25}));
//! let Outcome::Emit(out) = transform.apply(msg, &datasets)? else { unreachable!() };
//! assert_eq!(out.payload, json!({"deviceId": "t1", "temperatureF": 77.0, "location": "room1"}));
//!
//! let hot = Message::new("thermostats/t1", json!({"deviceId": "t1", "temperature": 900}));
//! let Outcome::Dropped(reason) = transform.apply(hot, &datasets)? else { unreachable!() };
//! assert_eq!(reason.to_string(), "filter[0] matched (sensor glitch)");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Where Microsoft's pages leave a behaviour open, this crate decides as follows:
//! - A missing input (or JSON `null`) reads as `()`; operators and functions given `()`
//!   return `()` (except `==`, `!=`, `typeof`, `contains`), a rule whose result is `()`
//!   writes nothing, and a filter or dataset condition that gives `()` counts as false.
//! - Map rules read the input message and write a new payload that starts empty; with
//!   no map rules the payload passes unchanged. A later rule with a lower wildcard rank
//!   that reads an overlapping field takes that field over from an earlier broader rule
//!   (specialization), so after `*` → `*` a rule `a` → `b` moves `a` to `b`.
//! - Writing a user property replaces every property of that name.
//! - Unary minus binds below `^` (`-2 ^ 2` is `-4`), as the conversions page says.
//! - `floor`, `round` and `ceil` keep the type of their argument (`floor(2.9)` is
//!   `2.0`); unit conversions, `scale` and the `math::` functions (except `abs` of an
//!   integer) return floats.

pub mod config;
pub mod dataset;
pub mod dry_run;
pub mod expr;
pub mod path;
pub mod resources;
pub mod runtime;
mod transform;
pub mod value;

pub use config::{BuiltInTransformationSettings, DatasetConfig, FilterConfig, MapConfig};
pub use dataset::{parse_json_lines, DatasetError, DatasetSource, Datasets};
pub use expr::{EvalError, Expr, ParseError};
pub use transform::{
    BuiltInTransformation, ConfigError, ConfigErrorKind, ConfigErrors, DropReason, Message,
    Outcome, RuleRef, TransformError,
};
pub use value::Value;
