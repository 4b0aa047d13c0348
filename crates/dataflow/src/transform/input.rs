//! Reading a rule's inputs from one message: the payload, the matched dataset records
//! and the metadata, with the `? $last` and `??` fallbacks.
//!
//! Everything read is borrowed from the message, the datasets or the transform's
//! last-known-value slots for the duration of one [`super::BuiltInTransformation::apply`].

use serde_json::Value as Json;

use crate::path::{FieldPath, MetadataField, Segment};
use crate::value::Value;

/// Where a compiled input reads from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Payload(FieldPath),
    /// The record being tested, in a dataset's own condition.
    Record(FieldPath),
    /// The record matched by dataset number `.0`.
    Context(usize, FieldPath),
    Metadata(MetadataField),
}

impl Source {
    pub(crate) fn path(&self) -> Option<&FieldPath> {
        match self {
            Source::Payload(p) | Source::Record(p) | Source::Context(_, p) => Some(p),
            Source::Metadata(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct CompiledInput {
    pub source: Source,
    /// Slot of the transform's last-known-value state, for `? $last`.
    pub last_slot: Option<usize>,
    pub default: Option<Json>,
}

/// One message as the rules see it.
pub(crate) struct Ctx<'a> {
    pub payload: &'a Json,
    pub topic: &'a str,
    pub user_properties: &'a [(String, String)],
    pub content_type: Option<&'a str>,
    /// The record each dataset matched, by dataset index.
    pub matched: Vec<Option<&'a Json>>,
    pub last: &'a [Option<Json>],
}

/// What an input read.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Read<'a> {
    Missing,
    Json(&'a Json),
    Text(&'a str),
}

impl<'a> Read<'a> {
    pub(crate) fn value(self) -> Value<'a> {
        match self {
            Read::Missing => Value::Empty,
            Read::Json(j) => Value::from_json(j),
            Read::Text(s) => Value::from(s),
        }
    }

    /// The JSON to copy; `None` when missing. A `null` is copied as `null`.
    pub(crate) fn to_json(self) -> Option<Json> {
        match self {
            Read::Missing => None,
            Read::Json(j) => Some(j.clone()),
            Read::Text(s) => Some(Json::String(s.to_owned())),
        }
    }

    /// Missing, or `null`: what `? $last` and `??` stand in for.
    pub(crate) fn is_missing(self) -> bool {
        matches!(self, Read::Missing | Read::Json(Json::Null))
    }
}

/// The segments of `path` with the wildcard replaced by `capture`.
pub(crate) fn concrete<'s>(path: &'s FieldPath, capture: &'s [&'s str]) -> Concrete<'s> {
    Concrete {
        segments: path.segments().iter(),
        capture,
        in_capture: None,
    }
}

/// Iterator returned by [`concrete`].
pub(crate) struct Concrete<'s> {
    segments: std::slice::Iter<'s, Segment>,
    capture: &'s [&'s str],
    in_capture: Option<std::slice::Iter<'s, &'s str>>,
}

impl<'s> Iterator for Concrete<'s> {
    type Item = &'s str;

    fn next(&mut self) -> Option<&'s str> {
        loop {
            if let Some(captured) = &mut self.in_capture {
                if let Some(name) = captured.next() {
                    return Some(name);
                }
                self.in_capture = None;
            }
            match self.segments.next()? {
                Segment::Name(name) => return Some(name),
                Segment::Wildcard => self.in_capture = Some(self.capture.iter()),
            }
        }
    }
}

/// Follows object keys from `root`; `None` if a key is absent or a value on the way is
/// not an object.
pub(crate) fn lookup<'a, 's>(
    root: &'a Json,
    segments: impl IntoIterator<Item = &'s str>,
) -> Option<&'a Json> {
    segments
        .into_iter()
        .try_fold(root, |node, key| node.as_object()?.get(key))
}

/// Like [`lookup`] for a path without wildcard (no iterator boxing on the hot path).
pub(crate) fn lookup_plain<'a>(root: &'a Json, path: &FieldPath) -> Option<&'a Json> {
    path.segments()
        .iter()
        .try_fold(root, |node, segment| match segment {
            Segment::Name(key) => node.as_object()?.get(key.as_str()),
            Segment::Wildcard => None,
        })
}

impl<'a> Ctx<'a> {
    /// Reads `input`; `record` is the candidate record in a dataset condition and
    /// `capture` what the rule's wildcard matched.
    pub(crate) fn read(
        &self,
        input: &'a CompiledInput,
        record: Option<&'a Json>,
        capture: &[&'a str],
    ) -> Read<'a> {
        let current = self.read_current(&input.source, record, capture);
        if !current.is_missing() {
            return current;
        }
        if let Some(last) = input
            .last_slot
            .and_then(|slot| self.last.get(slot)?.as_ref())
        {
            return Read::Json(last);
        }
        match &input.default {
            Some(default) => Read::Json(default),
            None => current,
        }
    }

    /// Reads `source` from this message only, without fallbacks.
    pub(crate) fn read_current(
        &self,
        source: &'a Source,
        record: Option<&'a Json>,
        capture: &[&'a str],
    ) -> Read<'a> {
        let (root, path) = match source {
            Source::Payload(path) => (Some(self.payload), path),
            Source::Record(path) => (record, path),
            Source::Context(i, path) => (self.matched.get(*i).copied().flatten(), path),
            Source::Metadata(field) => return self.metadata(field),
        };
        let Some(root) = root else {
            return Read::Missing;
        };
        let found = if path.wildcard().is_some() {
            lookup(root, concrete(path, capture))
        } else {
            lookup_plain(root, path)
        };
        found.map_or(Read::Missing, Read::Json)
    }

    fn metadata(&self, field: &MetadataField) -> Read<'a> {
        match field {
            MetadataField::Topic => Read::Text(self.topic),
            MetadataField::ContentType => self.content_type.map_or(Read::Missing, Read::Text),
            MetadataField::UserProperty(name) => self
                .user_properties
                .iter()
                .find(|(k, _)| k == name)
                .map_or(Read::Missing, |(_, v)| Read::Text(v)),
        }
    }
}
