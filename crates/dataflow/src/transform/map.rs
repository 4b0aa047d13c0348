//! The map stage: which rules apply to which fields (wildcards and specialization), and
//! building the output payload and metadata writes from them.
//!
//! A rule *resolves* to one set of concrete input fields, or, when an input has a `*`,
//! to one set per match of the first such input (the *captured segment*, one or more
//! path segments). Its *rank* is the number of captured segments (0 without wildcard).
//! Following the mapping page, a later rule whose resolution has a lower rank and reads
//! an overlapping field (the same field, or one inside the other) *specializes* an
//! earlier one: the earlier resolution is dropped. A later rule of equal or higher rank
//! is a *second rule* and both apply. So with `*` → `*` first, a later
//! `temperature` → `temperatureF` moves the field rather than copying it, and a later
//! `password` → (empty output) removes it.
//!
//! The output payload starts empty: only what the rules write appears in it. Writes
//! happen in rule order; writing `()` removes the target.

use std::ops::Range;

use serde_json::{Map, Value as Json};

use super::input::{concrete, lookup, CompiledInput, Ctx, Read, Source};
use super::{RuleRef, TransformError};
use crate::expr::Expr;
use crate::path::{FieldPath, MetadataField, Segment};
use crate::value::Value;

#[derive(Debug, Clone)]
pub(crate) enum Output {
    Drop,
    Payload(FieldPath),
    Metadata(MetadataField),
}

#[derive(Debug, Clone)]
pub(crate) struct MapRule {
    pub inputs: Vec<CompiledInput>,
    /// The first input with a `*`: its matches drive the rule.
    pub driver: Option<usize>,
    pub output: Output,
    pub expr: Option<Expr>,
}

/// A metadata field to set (`Some`) or remove (`None`) on the output message.
pub(crate) struct MetaWrite<'a> {
    pub field: &'a MetadataField,
    pub value: Option<String>,
}

struct Resolution {
    rule: usize,
    rank: usize,
    /// Range of the captured segments in the shared capture buffer.
    capture: Range<usize>,
    suppressed: bool,
}

/// Runs the map rules over one message.
pub(crate) fn run<'s: 'a, 'a>(
    rules: &'s [MapRule],
    ctx: &Ctx<'a>,
    meta: &mut Vec<MetaWrite<'s>>,
) -> Result<Json, TransformError> {
    let mut captures: Vec<&'a str> = Vec::new();
    let mut resolutions: Vec<Resolution> = Vec::with_capacity(rules.len());
    for (index, rule) in rules.iter().enumerate() {
        match rule.driver {
            Some(driver) => Enumerator {
                ctx,
                rule,
                index,
                driver,
                stack: Vec::new(),
                captures: &mut captures,
                out: &mut resolutions,
            }
            .run(),
            None => resolutions.push(Resolution {
                rule: index,
                rank: 0,
                capture: 0..0,
                suppressed: false,
            }),
        }
    }
    specialize(rules, &captures, &mut resolutions);

    let mut out = Json::Object(Map::new());
    let mut values: Vec<Value<'a>> = Vec::new();
    for resolution in resolutions.iter().filter(|r| !r.suppressed) {
        let rule = &rules[resolution.rule];
        if matches!(rule.output, Output::Drop) {
            continue;
        }
        let capture = &captures[resolution.capture.clone()];
        let result = match &rule.expr {
            Some(expr) => {
                values.clear();
                values.extend(
                    rule.inputs
                        .iter()
                        .map(|i| ctx.read(i, None, capture).value()),
                );
                let value = expr.eval(&values).map_err(|source| TransformError {
                    rule: RuleRef::Map(resolution.rule),
                    source,
                })?;
                Computed::Value(value)
            }
            None => Computed::Copy(
                rule.inputs
                    .first()
                    .map_or(Read::Missing, |i| ctx.read(i, None, capture)),
            ),
        };
        match &rule.output {
            Output::Payload(path) => {
                let target = concrete(path, capture);
                match result.into_json() {
                    Some(json) => set_path(&mut out, target, json),
                    None => remove_path(&mut out, target),
                }
            }
            Output::Metadata(field) => meta.push(MetaWrite {
                field,
                value: result.into_text(),
            }),
            Output::Drop => {}
        }
    }
    Ok(out)
}

enum Computed<'a> {
    Value(Value<'a>),
    Copy(Read<'a>),
}

impl Computed<'_> {
    fn into_json(self) -> Option<Json> {
        match self {
            Computed::Value(v) => v.to_json(),
            Computed::Copy(read) => read.to_json(),
        }
    }

    /// Metadata values are text: strings as they are, anything else as JSON text.
    fn into_text(self) -> Option<String> {
        match self {
            Computed::Value(Value::Empty)
            | Computed::Copy(Read::Missing | Read::Json(Json::Null)) => None,
            Computed::Value(v) => Some(v.to_text().into_owned()),
            Computed::Copy(Read::Text(s)) => Some(s.to_owned()),
            Computed::Copy(Read::Json(Json::String(s))) => Some(s.clone()),
            Computed::Copy(Read::Json(other)) => Some(other.to_string()),
        }
    }
}

/// Finds the matches of a wildcard rule's driving input.
struct Enumerator<'r, 'a> {
    ctx: &'r Ctx<'a>,
    rule: &'a MapRule,
    index: usize,
    driver: usize,
    stack: Vec<&'a str>,
    captures: &'r mut Vec<&'a str>,
    out: &'r mut Vec<Resolution>,
}

impl<'a> Enumerator<'_, 'a> {
    fn run(&mut self) {
        let Some(input) = self.rule.inputs.get(self.driver) else {
            return;
        };
        let (root, path) = match &input.source {
            Source::Payload(path) => (Some(self.ctx.payload), path),
            Source::Context(i, path) => (self.ctx.matched.get(*i).copied().flatten(), path),
            Source::Record(_) | Source::Metadata(_) => return,
        };
        let (prefix, suffix) = path.split_at_wildcard();
        let Some(node) = root.and_then(|root| lookup(root, names(prefix))) else {
            return;
        };
        if node.is_object() {
            self.walk(node, suffix);
        } else if prefix.is_empty() && suffix.is_empty() {
            // `*` over a payload that is not an object (a bare number, an array):
            // the whole document is the one field, captured as nothing.
            self.record();
        }
    }

    fn walk(&mut self, node: &'a Json, suffix: &'a [Segment]) {
        let Some(map) = node.as_object() else {
            return;
        };
        for (key, child) in map {
            self.stack.push(key);
            if suffix.is_empty() {
                match child.as_object() {
                    Some(inner) if !inner.is_empty() => self.walk(child, suffix),
                    _ => self.record(),
                }
            } else {
                if lookup(child, names(suffix)).is_some() {
                    self.record();
                }
                self.walk(child, suffix);
            }
            self.stack.pop();
        }
    }

    /// Records the current match unless another wildcard input has nothing there.
    fn record(&mut self) {
        let capture = self.stack.as_slice();
        let complete = self.rule.inputs.iter().enumerate().all(|(i, input)| {
            i == self.driver
                || input.source.path().and_then(FieldPath::wildcard).is_none()
                || !matches!(
                    self.ctx.read_current(&input.source, None, capture),
                    Read::Missing
                )
        });
        if !complete {
            return;
        }
        let start = self.captures.len();
        self.captures.extend_from_slice(capture);
        self.out.push(Resolution {
            rule: self.index,
            rank: capture.len(),
            capture: start..self.captures.len(),
            suppressed: false,
        });
    }
}

fn names(segments: &[Segment]) -> impl Iterator<Item = &str> {
    segments.iter().map(|s| match s {
        Segment::Name(n) => n.as_str(),
        Segment::Wildcard => "*",
    })
}

/// Marks the resolutions that a later, narrower rule takes over. Resolutions come in
/// rule order, each rule's together, so each group is checked against what follows it.
fn specialize(rules: &[MapRule], captures: &[&str], resolutions: &mut [Resolution]) {
    let mut start = 0;
    while let Some(first) = resolutions.get(start) {
        let rule = first.rule;
        let len = resolutions[start..]
            .iter()
            .take_while(|r| r.rule == rule)
            .count();
        let (group, later) = resolutions[start..].split_at_mut(len);
        for this in group.iter_mut().filter(|r| r.rank > 0) {
            let this_capture = &captures[this.capture.clone()];
            this.suppressed = later.iter().any(|other| {
                other.rank < this.rank
                    && overlaps(
                        &rules[rule],
                        this_capture,
                        &rules[other.rule],
                        &captures[other.capture.clone()],
                    )
            });
        }
        start += len;
    }
}

/// Whether two resolved rules read a common field (or one inside the other).
fn overlaps(a: &MapRule, a_capture: &[&str], b: &MapRule, b_capture: &[&str]) -> bool {
    a.inputs.iter().any(|x| {
        b.inputs.iter().any(|y| match (&x.source, &y.source) {
            (Source::Metadata(f), Source::Metadata(g)) => f == g,
            (Source::Payload(p), Source::Payload(q)) => nested(p, a_capture, q, b_capture),
            (Source::Context(i, p), Source::Context(j, q)) => {
                i == j && nested(p, a_capture, q, b_capture)
            }
            _ => false,
        })
    })
}

/// Whether one concrete path is a prefix of the other.
fn nested(p: &FieldPath, p_capture: &[&str], q: &FieldPath, q_capture: &[&str]) -> bool {
    concrete(p, p_capture)
        .zip(concrete(q, q_capture))
        .all(|(a, b)| a == b)
}

fn set_path<'s>(root: &mut Json, segments: impl Iterator<Item = &'s str>, value: Json) {
    let mut segments = segments.peekable();
    let mut node = root;
    while let Some(key) = segments.next() {
        if !node.is_object() {
            // A value in the way of a deeper write is replaced by an object.
            *node = Json::Object(Map::new());
        }
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if segments.peek().is_none() {
            match map.get_mut(key) {
                Some(slot) => *slot = value,
                None => {
                    map.insert(key.to_owned(), value);
                }
            }
            return;
        }
        if !map.contains_key(key) {
            map.insert(key.to_owned(), Json::Object(Map::new()));
        }
        let Some(next) = map.get_mut(key) else {
            return;
        };
        node = next;
    }
    // No segments: the write replaces the whole payload.
    *node = value;
}

fn remove_path<'s>(root: &mut Json, segments: impl Iterator<Item = &'s str>) {
    let mut segments = segments.peekable();
    let mut node = root;
    while let Some(key) = segments.next() {
        let Some(map) = node.as_object_mut() else {
            return;
        };
        if segments.peek().is_none() {
            map.remove(key);
            return;
        }
        let Some(next) = map.get_mut(key) else {
            return;
        };
        node = next;
    }
    *node = Json::Null;
}
