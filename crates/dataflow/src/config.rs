//! The `builtInTransformationSettings` of a Dataflow operation, as plain structs with
//! the resource's field names (camelCase), ready for `serde_json::from_value`.
//!
//! These structs only carry text; [`crate::BuiltInTransformation::compile`] turns them
//! into something that runs, reporting every problem it finds at once. Unknown fields
//! are rejected so that a misspelt `expresion` does not silently do nothing.

use serde::Deserialize;

/// `builtInTransformationSettings`. Stages run enrich → filter → map whatever the
/// order of the fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltInTransformationSettings {
    /// Enrichment datasets, looked up before filtering.
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    /// Filter rules, OR-ed: a rule that evaluates to `true` drops the message.
    #[serde(default)]
    pub filter: Vec<FilterConfig>,
    /// Map rules, applied in order; with none, the payload passes unchanged.
    #[serde(default)]
    pub map: Vec<MapConfig>,
    /// `Json`, `Delta` or `Parquet`: for the destination's serializer, not used here.
    #[serde(default)]
    pub serialization_format: Option<String>,
    /// Output schema (`aio-sr://…`): for the destination's serializer, not used here.
    #[serde(default)]
    pub schema_ref: Option<String>,
}

/// One `datasets[]` entry: which state store key holds the records, and the condition
/// that picks the record matching a message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetConfig {
    /// The state store key, optionally with an alias: `"datasets.parag10.rule42 as
    /// position"`. Rules refer to the dataset as `$context(alias)`.
    pub key: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Record schema; informational.
    #[serde(default)]
    pub schema_ref: Option<String>,
    /// `$source.field` reads the message, `$context.field` (or `$context(alias).field`)
    /// the candidate record.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The condition, e.g. `$1 == $2`; the first record for which it is true is used.
    pub expression: String,
}

/// One `filter[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilterConfig {
    /// Always `Filter` when present.
    #[serde(default, rename = "type")]
    pub kind: Option<FilterType>,
    /// Shown in the drop reason.
    #[serde(default)]
    pub description: Option<String>,
    pub inputs: Vec<String>,
    /// A boolean expression; `true` drops the message.
    pub expression: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FilterType {
    Filter,
}

/// One `map[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapConfig {
    /// The portal's label for the rule; it does not change what the rule does.
    #[serde(default, rename = "type")]
    pub kind: Option<MapType>,
    #[serde(default)]
    pub description: Option<String>,
    pub inputs: Vec<String>,
    /// Where the result goes; empty (or absent) leaves the inputs out of the result.
    #[serde(default)]
    pub output: Option<String>,
    /// How to compute the result; without one, the first input is copied.
    #[serde(default)]
    pub expression: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MapType {
    NewProperties,
    Rename,
    Compute,
    PassThrough,
    BuiltInFunction,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_resource_field_names() {
        let settings: BuiltInTransformationSettings = serde_json::from_value(json!({
            "serializationFormat": "Json",
            "datasets": [{"key": "a as b", "inputs": ["$source.x", "$context.x"], "expression": "$1 == $2"}],
            "filter": [{"type": "Filter", "inputs": ["t"], "expression": "$1 > 3", "description": "hot"}],
            "map": [{"type": "PassThrough", "inputs": ["*"], "output": "*"}, {"inputs": ["p"], "output": null}]
        }))
        .expect("valid settings");
        assert_eq!(settings.datasets[0].key, "a as b");
        assert_eq!(settings.filter[0].description.as_deref(), Some("hot"));
        assert_eq!(settings.map[0].kind, Some(MapType::PassThrough));
        assert_eq!(settings.map[1].output, None);
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = serde_json::from_value::<MapConfig>(json!({"inputs": [], "expresion": "1"}))
            .expect_err("misspelt field");
        assert!(
            err.to_string().contains("unknown field `expresion`"),
            "{err}"
        );
    }
}
