//! YAML text in, a small owned tree with line numbers out.
//!
//! The parser is `saphyr` (see the crate doc for why). Its marked nodes borrow the input and
//! carry a rich API; this module turns each document into a [`Node`], an owned tree that
//! keeps exactly what validation needs: the value, the 1-based line it starts on, and
//! mapping keys in document order with their own lines. Nothing here judges a manifest;
//! values configuration cannot use (non-string keys, scalars that contradict their tag)
//! become [`Value::Invalid`] so the schema walk reports them with a field path. Anchors and
//! aliases are expanded by the parser, within its node budget.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

/// One YAML node and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub line: usize,
    pub value: Value,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order; keys are unique (the parser rejects duplicates).
    Map(Vec<Entry>),
    /// Something the YAML parser accepted but configuration cannot use; the text says what.
    Invalid(&'static str),
}

/// One `key: value` entry of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// A syntax error: the file cannot be parsed at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parse every document of a YAML stream (`---` separated).
///
/// Empty documents (e.g. a trailing `---`) come back as [`Value::Null`] nodes; the caller
/// skips them.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_owned(),
    })?;
    Ok(docs.iter().map(convert).collect())
}

fn convert(node: &MarkedYaml<'_>) -> Node {
    let line = node.span.start.line();
    let value = match &node.data {
        YamlData::Value(scalar) => scalar_value(scalar),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Sequence(items) => Value::Seq(items.iter().map(convert).collect()),
        YamlData::Mapping(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, value) in map.iter() {
                match key_text(key) {
                    Some(text) => entries.push(Entry {
                        key: text,
                        key_line: key.span.start.line(),
                        value: convert(value),
                    }),
                    None => entries.push(Entry {
                        key: format!("<key on line {}>", key.span.start.line()),
                        key_line: key.span.start.line(),
                        value: Node {
                            line: key.span.start.line(),
                            value: Value::Invalid(
                                "mapping keys must be plain strings; quote the key",
                            ),
                        },
                    }),
                }
            }
            Value::Map(entries)
        }
        // Custom tags (`!foo bar`) carry no meaning for configuration: use the tagged value.
        YamlData::Tagged(_, inner) => convert(inner).value,
        YamlData::Alias(_) => {
            Value::Invalid("yaml aliases are not supported here; repeat the value")
        }
        YamlData::BadValue => {
            Value::Invalid("value does not match its yaml tag; remove the tag or fix the value")
        }
    };
    Node { line, value }
}

fn scalar_value(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

/// Mapping keys must be strings, as in Kubernetes (JSON objects have string keys).
fn key_text(key: &MarkedYaml<'_>) -> Option<String> {
    match &key.data {
        YamlData::Value(Scalar::String(s)) => Some(s.to_string()),
        YamlData::Representation(text, _, _) => Some(text.to_string()),
        YamlData::Tagged(_, inner) => key_text(inner),
        _ => None,
    }
}

impl Value {
    /// How the value is called in messages ("expected a string, found a list").
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number with a fraction",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
            Value::Invalid(_) => "an invalid value",
        }
    }
}

impl Node {
    /// The entry `key` of a mapping node.
    pub(crate) fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }

    /// The value under `key` of a mapping node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.value)
    }

    /// Follow a chain of mapping keys.
    pub(crate) fn at(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |node, key| node.get(key))
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub(crate) fn as_seq(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub(crate) fn as_map(&self) -> &[Entry] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// The node as JSON, for free-form sections kept as data (`raw_spec`, opaque specs).
    ///
    /// Non-finite floats (`.nan`, `.inf`) have no JSON form and become their YAML spelling
    /// as a string; invalid values become null (they were already reported).
    pub(crate) fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null | Value::Invalid(_) => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(J::Number)
                .unwrap_or_else(|| J::String(f.to_string())),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_lines_across_documents() -> Result<(), String> {
        let text = "a: 1\nb:\n  c: \"x\"\n---\n- 2.5\n- true\n";
        let docs = parse_documents(text).map_err(|e| e.message)?;
        assert_eq!(docs.len(), 2);
        let c = docs[0].at(&["b", "c"]).ok_or("missing b.c")?;
        assert_eq!((c.line, c.as_str()), (3, Some("x")));
        assert_eq!(docs[0].entry("b").map(|e| e.key_line), Some(2));
        assert_eq!(docs[1].line, 5);
        assert_eq!(docs[1].as_seq()[1].value, Value::Bool(true));
        Ok(())
    }

    #[test]
    fn quoted_numbers_stay_strings_and_keys_must_be_strings() -> Result<(), String> {
        let docs = parse_documents("p: \"1883\"\n1: x\n").map_err(|e| e.message)?;
        assert_eq!(docs[0].get("p").and_then(Node::as_str), Some("1883"));
        assert!(matches!(docs[0].as_map()[1].value.value, Value::Invalid(_)));
        Ok(())
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let err = parse_documents("a: 1\nb: [1, 2\n").err();
        assert!(err.is_some_and(|e| e.line >= 2));
    }

    #[test]
    fn aliases_are_expanded() -> Result<(), String> {
        let docs = parse_documents("a: &x {p: 1}\nb: *x\n").map_err(|e| e.message)?;
        assert_eq!(docs[0].at(&["b", "p"]).and_then(Node::as_i64), Some(1));
        Ok(())
    }

    #[test]
    fn duplicate_keys_are_syntax_errors() {
        assert!(parse_documents("a: 1\na: 2\n").is_err());
    }
}
