//! Field references as rules write them in `inputs` and `output`.
//!
//! A reference is a dot-separated path into the payload (`$source.` optional), into a
//! dataset record (`$context(alias).field`, or `$context.field` inside a dataset's own
//! rule) or into the message metadata (`$metadata.topic`,
//! `$metadata.user_property.NAME`, `$metadata.system_property.content_type`). Inputs
//! may end with `? $last` (use the last value seen when the field is missing) and
//! `?? default` (use a literal when it is missing), in that order.
//!
//! Segmentation follows the mapping page: a segment that starts with `"` runs to the
//! next `"` and may contain dots (`Payload."Tag.10".Value`); any other segment runs to
//! the next dot, quotes in its middle included. A segment that is exactly `*` is the
//! wildcard; one per path.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PathError {
    #[error("the path is empty")]
    Empty,
    #[error("segment {0} is empty (two dots in a row, or a dot at an end)")]
    EmptySegment(usize),
    #[error("segment {0} opens a quote that is never closed")]
    UnterminatedQuote(usize),
    #[error("segment {0}: expected `.` after the closing quote")]
    AfterQuote(usize),
    #[error("`*` must be a whole segment, not part of `{0}`; quote the segment if `*` is part of the name")]
    PartialWildcard(String),
    #[error("only one `*` is allowed in a path")]
    MultipleWildcards,
    #[error("unknown reference `{0}`: expected `$source.`, `$context`, `$metadata.` or a plain field path")]
    UnknownPrefix(String),
    #[error("expected `$context(alias).field` or `$context.field`")]
    BadContext,
    #[error("unknown metadata field `{0}`: expected `topic`, `user_property.<name>` or `system_property.content_type`")]
    UnknownMetadata(String),
    #[error("`$metadata.header` is for Kafka messages; MQTT messages carry `$metadata.user_property.<name>`")]
    KafkaHeader,
    #[error("a user property needs exactly one name after `user_property.`; quote names that contain dots")]
    UserPropertyName,
    #[error("invalid default after `??`: `{0}` is not an integer, float, boolean, string or null")]
    BadDefault(String),
    #[error("a wildcard path cannot have `? $last` or `??`")]
    WildcardFallback,
    #[error("metadata paths cannot contain `*`")]
    MetadataWildcard,
    #[error("an output cannot be a `$context` dataset, only a payload path or `$metadata.`")]
    OutputContext,
    #[error("an output cannot have `? $last` or `??`")]
    OutputFallback,
}

/// One segment of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Name(String),
    Wildcard,
}

/// A dot-separated path; at most one segment is the wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPath {
    segments: Vec<Segment>,
}

impl FieldPath {
    /// Parses a payload path. The empty string is an error; use [`FieldPath::root`]
    /// for the whole document.
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        if text.is_empty() {
            return Err(PathError::Empty);
        }
        let mut segments = Vec::new();
        let mut rest = text;
        loop {
            let position = segments.len() + 1;
            if let Some(quoted) = rest.strip_prefix('"') {
                let end = quoted
                    .find('"')
                    .ok_or(PathError::UnterminatedQuote(position))?;
                segments.push(Segment::Name(quoted[..end].to_owned()));
                rest = &quoted[end + 1..];
                if rest.is_empty() {
                    break;
                }
                rest = rest
                    .strip_prefix('.')
                    .ok_or(PathError::AfterQuote(position))?;
                continue;
            }
            let (segment, next) = match rest.find('.') {
                Some(dot) => (&rest[..dot], Some(&rest[dot + 1..])),
                None => (rest, None),
            };
            if segment.is_empty() {
                return Err(PathError::EmptySegment(position));
            }
            segments.push(match segment {
                "*" => Segment::Wildcard,
                s if s.contains('*') => return Err(PathError::PartialWildcard(s.to_owned())),
                s => Segment::Name(s.to_owned()),
            });
            match next {
                Some(next) => rest = next,
                None => break,
            }
        }
        let path = FieldPath { segments };
        if path
            .segments
            .iter()
            .filter(|s| **s == Segment::Wildcard)
            .count()
            > 1
        {
            return Err(PathError::MultipleWildcards);
        }
        Ok(path)
    }

    /// The whole document (`$context(alias)` with no field).
    pub fn root() -> FieldPath {
        FieldPath::default()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Index of the `*` segment, if any.
    pub fn wildcard(&self) -> Option<usize> {
        self.segments.iter().position(|s| *s == Segment::Wildcard)
    }

    /// Segments before and after the wildcard (all segments and none without one).
    pub fn split_at_wildcard(&self) -> (&[Segment], &[Segment]) {
        match self.wildcard() {
            Some(i) => (&self.segments[..i], &self.segments[i + 1..]),
            None => (&self.segments, &[]),
        }
    }
}

/// A metadata field of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataField {
    Topic,
    UserProperty(String),
    ContentType,
}

/// Where an input reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    Payload(FieldPath),
    /// `alias` is `None` for `$context.field`, which only a dataset's own rule may use.
    Context {
        alias: Option<String>,
        path: FieldPath,
    },
    Metadata(MetadataField),
}

impl Reference {
    fn parse(text: &str) -> Result<Reference, PathError> {
        if let Some(rest) = text.strip_prefix("$source.") {
            return Ok(Reference::Payload(FieldPath::parse(rest)?));
        }
        if let Some(rest) = text.strip_prefix("$metadata.") {
            return Ok(Reference::Metadata(metadata(rest)?));
        }
        if let Some(rest) = text.strip_prefix("$context") {
            return context(rest);
        }
        if text.starts_with('$') {
            let word: String = text.chars().take_while(|c| *c != '.').collect();
            return Err(PathError::UnknownPrefix(word));
        }
        Ok(Reference::Payload(FieldPath::parse(text)?))
    }

    /// The path inside the payload or the record; `None` for metadata.
    pub fn path(&self) -> Option<&FieldPath> {
        match self {
            Reference::Payload(path) | Reference::Context { path, .. } => Some(path),
            Reference::Metadata(_) => None,
        }
    }
}

fn context(rest: &str) -> Result<Reference, PathError> {
    let (alias, after) = if let Some(inner) = rest.strip_prefix('(') {
        let close = inner.find(')').ok_or(PathError::BadContext)?;
        let alias = inner[..close].trim();
        if alias.is_empty() {
            return Err(PathError::BadContext);
        }
        (Some(alias.to_owned()), &inner[close + 1..])
    } else {
        (None, rest)
    };
    let path = match after.strip_prefix('.') {
        Some(path) => FieldPath::parse(path)?,
        None if after.is_empty() && alias.is_some() => FieldPath::root(),
        None => return Err(PathError::BadContext),
    };
    Ok(Reference::Context { alias, path })
}

fn metadata(rest: &str) -> Result<MetadataField, PathError> {
    let path = FieldPath::parse(rest)?;
    if path.wildcard().is_some() {
        return Err(PathError::MetadataWildcard);
    }
    let names: Vec<&str> = path
        .segments()
        .iter()
        .map(|s| match s {
            Segment::Name(n) => n.as_str(),
            Segment::Wildcard => "*",
        })
        .collect();
    match names.as_slice() {
        ["topic"] => Ok(MetadataField::Topic),
        ["system_property", "content_type"] => Ok(MetadataField::ContentType),
        ["user_property", name] => Ok(MetadataField::UserProperty((*name).to_owned())),
        ["user_property", ..] => Err(PathError::UserPropertyName),
        ["header", ..] => Err(PathError::KafkaHeader),
        _ => Err(PathError::UnknownMetadata(format!("$metadata.{rest}"))),
    }
}

/// A parsed entry of a rule's `inputs`.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub reference: Reference,
    /// `? $last`: fall back to the last value this input had.
    pub last_known: bool,
    /// `?? literal`: fall back to this value (after the last known one).
    pub default: Option<Json>,
}

impl InputSpec {
    pub fn parse(text: &str) -> Result<InputSpec, PathError> {
        let (rest, default) = split_default(text.trim())?;
        let (rest, last_known) = split_last(rest);
        let reference = Reference::parse(rest)?;
        let wildcard = reference.path().and_then(FieldPath::wildcard).is_some();
        if wildcard && (last_known || default.is_some()) {
            return Err(PathError::WildcardFallback);
        }
        Ok(InputSpec {
            reference,
            last_known,
            default,
        })
    }
}

/// `text ?? literal` → (`text`, literal). The first `??` followed by nothing but a JSON
/// scalar is the separator, so a string default may itself contain `??`.
fn split_default(text: &str) -> Result<(&str, Option<Json>), PathError> {
    let mut last_attempt = None;
    for (at, _) in text.match_indices("??") {
        let literal = text[at + 2..].trim();
        match serde_json::from_str::<Json>(literal) {
            Ok(value @ (Json::Null | Json::Bool(_) | Json::Number(_) | Json::String(_))) => {
                return Ok((text[..at].trim_end(), Some(value)));
            }
            _ => last_attempt = Some(literal),
        }
    }
    match last_attempt {
        Some(literal) => Err(PathError::BadDefault(literal.to_owned())),
        None => Ok((text, None)),
    }
}

/// `text ? $last` (any case, any spacing) → (`text`, true).
fn split_last(text: &str) -> (&str, bool) {
    const LAST: &str = "$last";
    let trimmed = text.trim_end();
    let Some(split) = trimmed.len().checked_sub(LAST.len()) else {
        return (text, false);
    };
    if !trimmed.is_char_boundary(split) || !trimmed[split..].eq_ignore_ascii_case(LAST) {
        return (text, false);
    }
    match trimmed[..split].trim_end().strip_suffix('?') {
        Some(path) => (path.trim_end(), true),
        None => (text, false),
    }
}

/// A rule's `output`.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputSpec {
    /// An empty output: the inputs are left out of the result.
    Drop,
    Payload(FieldPath),
    Metadata(MetadataField),
}

impl OutputSpec {
    pub fn parse(text: &str) -> Result<OutputSpec, PathError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(OutputSpec::Drop);
        }
        let (rest, default) = split_default(text)?;
        let (_, last_known) = split_last(rest);
        if default.is_some() || last_known {
            return Err(PathError::OutputFallback);
        }
        match Reference::parse(text)? {
            Reference::Payload(path) => Ok(OutputSpec::Payload(path)),
            Reference::Metadata(field) => Ok(OutputSpec::Metadata(field)),
            Reference::Context { .. } => Err(PathError::OutputContext),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(text: &str) -> Vec<String> {
        FieldPath::parse(text)
            .expect("valid path")
            .segments()
            .iter()
            .map(|s| match s {
                Segment::Name(n) => n.clone(),
                Segment::Wildcard => "*".to_owned(),
            })
            .collect()
    }

    // concept-dataflow-mapping, "Escaping" and "Escaping rules in dot notation".
    #[test]
    fn documented_segmentation_examples() {
        assert_eq!(
            names(r#"Payload."Tag.10".Value"#),
            ["Payload", "Tag.10", "Value"]
        );
        assert_eq!(
            names(r#"Payload."Tag.10".Measurements."Vibration.$12".Value"#),
            [
                "Payload",
                "Tag.10",
                "Measurements",
                "Vibration.$12",
                "Value"
            ]
        );
        assert_eq!(
            names(r#"Payload.He said: "Hello", and waved"#),
            ["Payload", r#"He said: "Hello", and waved"#]
        );
        assert_eq!(
            names(r#"Payload.He said: "No. It is done""#),
            ["Payload", r#"He said: "No"#, r#" It is done""#]
        );
        assert_eq!(names("Person.Date of Birth"), ["Person", "Date of Birth"]);
        assert_eq!(names(":Person:.:name:"), [":Person:", ":name:"]);
        assert_eq!(
            names("nsu=http://opcfoundation.org/UA/Plc/Applications;s=RandomSignedInt32"),
            [
                "nsu=http://opcfoundation",
                "org/UA/Plc/Applications;s=RandomSignedInt32"
            ]
        );
        assert_eq!(
            names(r#""nsu=http://opcfoundation.org/UA/Plc/Applications;s=RandomSignedInt32""#),
            ["nsu=http://opcfoundation.org/UA/Plc/Applications;s=RandomSignedInt32"]
        );
    }

    #[test]
    fn wildcards_must_be_whole_and_single() {
        assert_eq!(names("Sensors.*.Reading"), ["Sensors", "*", "Reading"]);
        assert_eq!(
            FieldPath::parse("path1.partial*.path3"),
            Err(PathError::PartialWildcard("partial*".into()))
        );
        assert_eq!(FieldPath::parse("*.a.*"), Err(PathError::MultipleWildcards));
        assert_eq!(names(r#""*""#), ["*"].map(String::from));
        assert_eq!(FieldPath::parse(r#""*""#).expect("valid").wildcard(), None);
    }

    #[test]
    fn malformed_paths_are_rejected() {
        assert_eq!(FieldPath::parse("a..b"), Err(PathError::EmptySegment(2)));
        assert_eq!(FieldPath::parse("a."), Err(PathError::EmptySegment(2)));
        assert_eq!(
            FieldPath::parse(r#"a."b"#),
            Err(PathError::UnterminatedQuote(2))
        );
        assert_eq!(FieldPath::parse(r#""a"b"#), Err(PathError::AfterQuote(1)));
    }

    #[test]
    fn references_by_prefix() {
        let input = |t: &str| InputSpec::parse(t).expect("valid").reference;
        assert_eq!(
            input("$source.temperature"),
            Reference::Payload(FieldPath::parse("temperature").expect("valid"))
        );
        assert_eq!(
            input("$context(position).BaseSalary"),
            Reference::Context {
                alias: Some("position".into()),
                path: FieldPath::parse("BaseSalary").expect("valid")
            }
        );
        assert_eq!(
            input("$context.Position"),
            Reference::Context {
                alias: None,
                path: FieldPath::parse("Position").expect("valid")
            }
        );
        assert_eq!(
            input("$metadata.topic"),
            Reference::Metadata(MetadataField::Topic)
        );
        assert_eq!(
            input(r#"$metadata.user_property."weird key""#),
            Reference::Metadata(MetadataField::UserProperty("weird key".into()))
        );
        assert_eq!(
            input("$metadata.system_property.content_type"),
            Reference::Metadata(MetadataField::ContentType)
        );
        assert_eq!(
            InputSpec::parse("$metadata.header.x").map(|_| ()),
            Err(PathError::KafkaHeader)
        );
        assert_eq!(
            InputSpec::parse("$foo.bar").map(|_| ()),
            Err(PathError::UnknownPrefix("$foo".into()))
        );
    }

    #[test]
    fn last_known_and_default_suffixes() {
        let spec = InputSpec::parse("temperature ? $last").expect("valid");
        assert!(spec.last_known);
        assert_eq!(spec.default, None);
        assert!(
            InputSpec::parse("temperature?$LAST")
                .expect("valid")
                .last_known
        );
        let spec = InputSpec::parse("temperature ? $last ?? 0").expect("valid");
        assert!(spec.last_known);
        assert_eq!(spec.default, Some(json!(0)));
        let spec = InputSpec::parse(r#"status ?? "un??known""#).expect("valid");
        assert_eq!(spec.default, Some(json!("un??known")));
        assert_eq!(
            spec.reference,
            Reference::Payload(FieldPath::parse("status").expect("valid"))
        );
        assert_eq!(
            InputSpec::parse("x ?? [1]").map(|_| ()),
            Err(PathError::BadDefault("[1]".into()))
        );
        assert_eq!(
            InputSpec::parse("* ? $last").map(|_| ()),
            Err(PathError::WildcardFallback)
        );
    }

    #[test]
    fn outputs() {
        assert_eq!(OutputSpec::parse(""), Ok(OutputSpec::Drop));
        assert_eq!(
            OutputSpec::parse("$metadata.user_property.origin_topic"),
            Ok(OutputSpec::Metadata(MetadataField::UserProperty(
                "origin_topic".into()
            )))
        );
        assert_eq!(
            OutputSpec::parse("$context(a).b"),
            Err(PathError::OutputContext)
        );
        assert_eq!(
            OutputSpec::parse("a ? $last"),
            Err(PathError::OutputFallback)
        );
    }
}
