//! Topic names and filters (§4.7) and shared subscriptions (§4.8.2): validation, parsing of
//! `$share/{group}/{filter}`, and matching a name against a filter.

use crate::error::ProtocolError;

/// Check a topic name a client publishes to: non-empty, no wildcards [MQTT-3.3.2-2].
pub fn validate_topic_name(topic: &str) -> Result<(), ProtocolError> {
    if topic.is_empty() {
        return Err(ProtocolError::EmptyTopic);
    }
    if topic.contains(['+', '#']) {
        return Err(ProtocolError::WildcardInTopicName);
    }
    Ok(())
}

/// Check a topic filter: `#` only as the whole last level, `+` only as a whole level.
pub fn validate_topic_filter(filter: &str) -> Result<(), ProtocolError> {
    if filter.is_empty() {
        return Err(ProtocolError::EmptyTopic);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(ProtocolError::InvalidTopicFilter(
                "'#' must be the whole last level",
            ));
        }
        if level.contains('+') && level != "+" {
            return Err(ProtocolError::InvalidTopicFilter(
                "'+' must be a whole level",
            ));
        }
    }
    Ok(())
}

/// A subscription filter split into its share group (if any) and the filter proper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec<'a> {
    pub share_group: Option<&'a str>,
    pub filter: &'a str,
}

/// Parse and validate a SUBSCRIBE/UNSUBSCRIBE filter, recognising `$share/{group}/{filter}`.
pub fn parse_filter(raw: &str) -> Result<FilterSpec<'_>, ProtocolError> {
    if let Some(rest) = raw.strip_prefix("$share/") {
        let (group, filter) =
            rest.split_once('/')
                .ok_or(ProtocolError::InvalidSharedSubscription(
                    "expected $share/{group}/{filter}",
                ))?;
        if group.is_empty() || group.contains(['+', '#']) {
            return Err(ProtocolError::InvalidSharedSubscription(
                "share name must be non-empty without '+' or '#'",
            ));
        }
        if filter.is_empty() {
            return Err(ProtocolError::InvalidSharedSubscription(
                "topic filter is empty",
            ));
        }
        validate_topic_filter(filter)?;
        return Ok(FilterSpec {
            share_group: Some(group),
            filter,
        });
    }
    if raw == "$share" {
        return Err(ProtocolError::InvalidSharedSubscription(
            "expected $share/{group}/{filter}",
        ));
    }
    validate_topic_filter(raw)?;
    Ok(FilterSpec {
        share_group: None,
        filter: raw,
    })
}

/// Does `topic` match `filter`? Names starting with `$` are not matched by filters starting
/// with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rules() {
        for ok in ["a", "#", "+", "a/+/b", "a/#", "+/+", "/", "a//b", "$SYS/#"] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a#", "a/#/b", "a+", "a/b+/c", "##"] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared() {
        assert_eq!(
            parse_filter("$share/g/a/+"),
            Ok(FilterSpec {
                share_group: Some("g"),
                filter: "a/+"
            })
        );
        for bad in [
            "$share/",
            "$share//a",
            "$share/g",
            "$share/g/",
            "$share/g+/a",
            "$share",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching() {
        let cases = [
            ("a/b", "a/b", true),
            ("a/+", "a/b", true),
            ("a/+", "a/b/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("#", "a/b", true),
            ("+/+", "/a", true),
            ("+", "/a", false),
            ("#", "$SYS/x", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/x", true),
            ("a/b", "a/c", false),
            ("a/+/c", "a//c", true),
        ];
        for (f, t, want) in cases {
            assert_eq!(matches(f, t), want, "{f} ~ {t}");
        }
    }
}
