//! Field tables and the walk that checks a YAML tree against them.
//!
//! Every resource kind describes its document as static tables of [`Field`]s (name,
//! required or not, and a [`Schema`]: type, range, allowed values). [`check`] walks a
//! parsed [`Node`] against such a table and records *every* mismatch in a [`Sink`]:
//! unknown fields, missing required fields, wrong types, out-of-range numbers, values not
//! in an enum. It never stops early, which is why we do not lean on serde's
//! `deny_unknown_fields` (that stops at the first error).
//!
//! Rules that relate several fields (a TLS mode and its settings, references between
//! resources, port conflicts) are not expressible here; the kind modules check those after
//! the walk.

use crate::error::Sink;
use crate::yaml::{Node, Value};

/// The expected shape of one value.
#[derive(Debug)]
pub(crate) enum Schema {
    /// Any string.
    Str,
    /// A string that must pass a check; the check returns what is wrong and what to do.
    StrWith(fn(&str) -> Result<(), String>),
    /// One of a fixed set of strings.
    Enum(&'static EnumDef),
    /// An integer in `min..=max`.
    Int(i64, i64),
    Bool,
    /// A list whose items all match the schema.
    List(&'static Schema),
    /// A mapping from free string keys to values of the schema (labels, ConfigMap data).
    Map(&'static Schema),
    /// A mapping with known fields.
    Object(&'static [Field]),
    /// Any mapping, kept as data and not looked into (PVC specs, cert-manager specs).
    FreeMap,
    /// Anything at all (server-populated metadata we accept and ignore).
    Any,
}

/// The allowed spellings of an enum; `aliases` map an accepted spelling to its canonical one.
#[derive(Debug)]
pub(crate) struct EnumDef {
    pub values: &'static [&'static str],
    pub aliases: &'static [(&'static str, &'static str)],
}

impl EnumDef {
    /// The canonical spelling of `text`, if it is allowed.
    pub(crate) fn canonical(&self, text: &str) -> Option<&'static str> {
        self.values
            .iter()
            .copied()
            .find(|v| *v == text)
            .or_else(|| {
                self.aliases
                    .iter()
                    .find(|(a, _)| *a == text)
                    .map(|(_, v)| *v)
            })
    }
}

/// One field of an [`Schema::Object`].
#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub required: bool,
    pub schema: Schema,
}

/// A required field.
pub(crate) const fn req(name: &'static str, schema: Schema) -> Field {
    Field {
        name,
        required: true,
        schema,
    }
}

/// An optional field.
pub(crate) const fn opt(name: &'static str, schema: Schema) -> Field {
    Field {
        name,
        required: false,
        schema,
    }
}

/// `Enabled | Disabled`, AIO's `OperationalMode`.
pub(crate) static OPERATIONAL_MODE: EnumDef = EnumDef {
    values: &["Enabled", "Disabled"],
    aliases: &[],
};

/// The path of field `key` under `parent` (`spec` + `ports` = `spec.ports`).
///
/// Keys that are not identifier-like (ConfigMap keys such as `tls.crt`) are bracketed so
/// the path stays unambiguous: `data["tls.crt"]`.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{key:?}]"),
    }
}

/// The path of item `index` of the list at `parent` (`spec.ports[1]`).
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// Check `node` (found at `path`) against `schema`, recording every problem in `sink`.
pub(crate) fn check(node: &Node, schema: &Schema, path: &str, sink: &mut Sink) {
    if let Value::Invalid(message) = node.value {
        sink.error(path, Some(node.line), message);
        return;
    }
    match schema {
        Schema::Any => {}
        Schema::Str => {
            expect_str(node, path, sink);
        }
        Schema::StrWith(validate) => {
            if let Some(text) = expect_str(node, path, sink) {
                if let Err(message) = validate(text) {
                    sink.error(path, Some(node.line), message);
                }
            }
        }
        Schema::Enum(def) => check_enum(node, def, path, sink),
        Schema::Int(min, max) => check_int(node, *min, *max, path, sink),
        Schema::Bool => {
            if !matches!(node.value, Value::Bool(_)) {
                mismatch(node, "true or false", path, sink);
            }
        }
        Schema::List(item) => match &node.value {
            Value::Seq(items) => {
                for (i, child) in items.iter().enumerate() {
                    check(child, item, &index(path, i), sink);
                }
            }
            _ => mismatch(node, "a list", path, sink),
        },
        Schema::Map(value) => match &node.value {
            Value::Map(entries) => {
                for entry in entries {
                    check(&entry.value, value, &join(path, &entry.key), sink);
                }
            }
            _ => mismatch(node, "a mapping", path, sink),
        },
        Schema::Object(fields) => check_object(node, fields, path, sink),
        Schema::FreeMap => {
            if !matches!(node.value, Value::Map(_)) {
                mismatch(node, "a mapping", path, sink);
            }
        }
    }
}

/// Check a mapping against its field table: unknown fields, missing fields, then each value.
pub(crate) fn check_object(node: &Node, fields: &[Field], path: &str, sink: &mut Sink) {
    let Value::Map(entries) = &node.value else {
        mismatch(node, "a mapping", path, sink);
        return;
    };
    for entry in entries {
        let field_path = join(path, &entry.key);
        match fields.iter().find(|f| f.name == entry.key) {
            Some(field) => check(&entry.value, &field.schema, &field_path, sink),
            None => {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                sink.error(
                    &field_path,
                    Some(entry.key_line),
                    unknown_message("field", &entry.key, &names),
                );
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if !entries.iter().any(|e| e.key == field.name) {
            sink.error(
                &join(path, field.name),
                Some(node.line),
                format!("missing required field; add `{}`", field.name),
            );
        }
    }
}

fn expect_str<'a>(node: &'a Node, path: &str, sink: &mut Sink) -> Option<&'a str> {
    match &node.value {
        Value::Str(s) => Some(s),
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
            sink.error(
                path,
                Some(node.line),
                format!(
                    "expected a string, found {}; put the value in quotes",
                    node.value.type_name()
                ),
            );
            None
        }
        _ => {
            mismatch(node, "a string", path, sink);
            None
        }
    }
}

fn check_enum(node: &Node, def: &EnumDef, path: &str, sink: &mut Sink) {
    let Some(text) = expect_str(node, path, sink) else {
        return;
    };
    if def.canonical(text).is_none() {
        sink.error(
            path,
            Some(node.line),
            unknown_message("value", text, def.values),
        );
    }
}

fn check_int(node: &Node, min: i64, max: i64, path: &str, sink: &mut Sink) {
    match node.value {
        Value::Int(i) if (min..=max).contains(&i) => {}
        Value::Int(i) => sink.error(
            path,
            Some(node.line),
            format!("{i} is out of range; use a value from {min} to {max}"),
        ),
        _ => mismatch(node, "an integer", path, sink),
    }
}

fn mismatch(node: &Node, expected: &str, path: &str, sink: &mut Sink) {
    sink.error(
        path,
        Some(node.line),
        format!("expected {expected}, found {}", node.value.type_name()),
    );
}

/// "unknown field `x`; did you mean `y`?" and the like: always a way forward.
pub(crate) fn unknown_message(what: &str, got: &str, allowed: &[&str]) -> String {
    let list = allowed.join(", ");
    match (closest(got, allowed), what) {
        (Some(near), "field") => format!("unknown field `{got}`; did you mean `{near}`?"),
        (None, "field") => format!("unknown field `{got}`; remove it (known fields: {list})"),
        (Some(near), _) => {
            format!("unknown {what} `{got}`; did you mean `{near}`? (allowed: {list})")
        }
        (None, _) => format!("unknown {what} `{got}`; use one of: {list}"),
    }
}

/// The allowed name nearest to `got`: same letters in another case, or a few edits away
/// (one per three characters, at least one).
fn closest<'a>(got: &str, allowed: &[&'a str]) -> Option<&'a str> {
    if let Some(same) = allowed.iter().find(|a| a.eq_ignore_ascii_case(got)) {
        return Some(same);
    }
    let lower = got.to_ascii_lowercase();
    allowed
        .iter()
        .map(|a| (edit_distance(&lower, &a.to_ascii_lowercase()), *a))
        .filter(|(d, _)| *d <= (got.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of neighbours
/// (optimal string alignment); names are short, so the full table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in table[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (table[i - 1][j] + 1)
                .min(table[i][j - 1] + 1)
                .min(table[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(table[i - 2][j - 2] + 1);
            }
            table[i][j] = best;
        }
    }
    table[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;
    use std::path::PathBuf;

    static INNER: [Field; 2] = [req("port", Schema::Int(0, 65535)), opt("on", Schema::Bool)];
    static TOP: [Field; 2] = [
        req("name", Schema::Str),
        opt("ports", Schema::List(&Schema::Object(&INNER))),
    ];

    fn errors(text: &str) -> Vec<(String, String)> {
        let docs = parse_documents(text).unwrap_or_default();
        let mut sink = Sink::new(PathBuf::from("t.yaml"));
        if let Some(doc) = docs.first() {
            check_object(doc, &TOP, "", &mut sink);
        }
        sink.into_errors()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn collects_every_problem() {
        let found = errors("ports:\n- port: 70000\n- {on: 3, prot: 1}\nnam: x\n");
        let fields: Vec<&str> = found.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "ports[0].port",
                "ports[1].on",
                "ports[1].prot",
                "ports[1].port",
                "nam",
                "name"
            ]
        );
        assert!(found[2].1.contains("did you mean `port`"));
        assert!(found[4].1.contains("did you mean `name`"));
    }

    #[test]
    fn paths_bracket_dotted_keys() {
        assert_eq!(join("data", "tls.crt"), "data[\"tls.crt\"]");
        assert_eq!(join("", "spec"), "spec");
        assert_eq!(index("spec.ports", 2), "spec.ports[2]");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(closest("Huge", &["Tiny", "Low", "Medium", "High"]), None);
        assert_eq!(
            closest("Websocket", &["Mqtt", "WebSockets"]),
            Some("WebSockets")
        );
    }
}
