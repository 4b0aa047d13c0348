//! Enrichment data as the transform sees it: records (JSON objects) per state store key.
//!
//! The state store holds a dataset as JSON lines under one key; whoever owns the state
//! store connection parses them ([`parse_json_lines`]), keeps them in something that
//! implements [`DatasetSource`] (a [`Datasets`] or a plain `HashMap`) and refreshes it on
//! key notifications. The transform only reads, once per message.

use std::collections::HashMap;

use serde_json::Value as Json;

/// Read access to the cached datasets, by state store key.
pub trait DatasetSource {
    /// The records stored under `key`, in order; `None` if the key is not (yet) known.
    fn records(&self, key: &str) -> Option<&[Json]>;

    /// A number that changes whenever the records under `key` change, so a transform may
    /// keep an index of them; `None` (the default) means "unknown", and nothing is cached.
    fn generation(&self, _key: &str) -> Option<u64> {
        None
    }
}

impl DatasetSource for HashMap<String, Vec<Json>> {
    fn records(&self, key: &str) -> Option<&[Json]> {
        self.get(key).map(Vec::as_slice)
    }
}

/// A JSON-lines dataset that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("dataset line {line}: {source}")]
pub struct DatasetError {
    /// 1-based line number.
    pub line: usize,
    #[source]
    pub source: serde_json::Error,
}

/// Parses JSON lines (one record per line; blank lines are skipped).
pub fn parse_json_lines(text: &str) -> Result<Vec<Json>, DatasetError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|source| DatasetError {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// A simple owned cache of datasets.
#[derive(Debug, Clone, Default)]
pub struct Datasets {
    by_key: HashMap<String, Vec<Json>>,
    /// Per key, the generation of its records (see [`DatasetSource::generation`]); the
    /// counter only grows, also across clones, so a replaced dataset never repeats one.
    generations: HashMap<String, u64>,
    next_generation: u64,
}

impl Datasets {
    pub fn new() -> Datasets {
        Datasets::default()
    }

    /// Replaces the records under `key`.
    pub fn set(&mut self, key: impl Into<String>, records: Vec<Json>) {
        let key = key.into();
        self.next_generation += 1;
        self.generations.insert(key.clone(), self.next_generation);
        self.by_key.insert(key, records);
    }

    /// Parses `text` as JSON lines and replaces the records under `key`; returns how
    /// many records it holds now. On a parse error the old records stay.
    pub fn set_json_lines(
        &mut self,
        key: impl Into<String>,
        text: &str,
    ) -> Result<usize, DatasetError> {
        let records = parse_json_lines(text)?;
        let count = records.len();
        self.set(key, records);
        Ok(count)
    }

    /// Forgets `key` (the state store deleted it); returns whether it was known.
    pub fn remove(&mut self, key: &str) -> bool {
        self.generations.remove(key);
        self.by_key.remove(key).is_some()
    }
}

impl DatasetSource for Datasets {
    fn records(&self, key: &str) -> Option<&[Json]> {
        self.by_key.get(key).map(Vec::as_slice)
    }

    fn generation(&self, key: &str) -> Option<u64> {
        self.generations.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // The two-record dataset of concept-dataflow-enrich, in JSON lines.
    #[test]
    fn parses_the_documented_json_lines() {
        let mut datasets = Datasets::new();
        let text = r#"{ "Position": "Analyst", "BaseSalary": 70000, "WorkingHours": "Regular" }
{ "Position": "Receptionist", "BaseSalary": 43000, "WorkingHours": "Regular" }
"#;
        assert_eq!(datasets.set_json_lines("position", text).expect("valid"), 2);
        let records = datasets.records("position").expect("stored");
        assert_eq!(records[1]["BaseSalary"], json!(43000));
    }

    #[test]
    fn a_bad_line_is_reported_and_keeps_the_old_records() {
        let mut datasets = Datasets::new();
        datasets.set("k", vec![json!({"a": 1})]);
        let err = datasets
            .set_json_lines("k", "{\"a\": 2}\n\n{oops}\n")
            .expect_err("invalid");
        assert_eq!(err.line, 3);
        assert_eq!(datasets.records("k"), Some(&[json!({"a": 1})][..]));
    }
}
