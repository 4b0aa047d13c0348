//! Destination topics and headers: `${inputTopic}` / `${inputTopic.N}` resolved against
//! the source message's topic, and `headers[]` actions applied to user properties.

use crate::resources::Header;

/// The destination for a message that came on `input`; `None` when a variable cannot be
/// resolved (`${inputTopic.4}` of a two-level topic), which drops the message.
pub fn resolve(template: &str, input: &str) -> Option<String> {
    if !template.contains("${") {
        return Some(template.to_owned());
    }
    let mut out = String::with_capacity(template.len() + input.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let var = &after[..end];
        match var.strip_prefix("inputTopic") {
            Some("") => out.push_str(input),
            Some(n) => {
                let index: usize = n.strip_prefix('.')?.parse().ok()?;
                let level = input.split('/').nth(index.checked_sub(1)?)?;
                if level.is_empty() {
                    return None;
                }
                out.push_str(level);
            }
            None => return None,
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Apply `headers[]` to a message's user properties, in order.
pub fn apply_headers(headers: &[Header], props: &mut Vec<(String, String)>) {
    for h in headers {
        match h {
            Header::AddIfNotPresent(k, v) => {
                if !props.iter().any(|(key, _)| key == k) {
                    props.push((k.clone(), v.clone()));
                }
            }
            Header::AddOrReplace(k, v) => {
                props.retain(|(key, _)| key != k);
                props.push((k.clone(), v.clone()));
            }
            Header::Remove(k) => props.retain(|(key, _)| key != k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_topic_variables() {
        assert_eq!(resolve("out", "a/b").as_deref(), Some("out"));
        assert_eq!(resolve("x/${inputTopic}", "a/b").as_deref(), Some("x/a/b"));
        assert_eq!(
            resolve("${inputTopic.2}/${inputTopic.1}", "a/b").as_deref(),
            Some("b/a")
        );
        assert_eq!(resolve("${inputTopic.3}", "a/b"), None);
        assert_eq!(resolve("${inputTopic.0}", "a/b"), None);
        assert_eq!(resolve("${other}", "a/b"), None);
        assert_eq!(resolve("${inputTopic", "a/b"), None);
    }

    #[test]
    fn header_actions() {
        let mut p = vec![("a".to_owned(), "1".to_owned()), ("b".into(), "2".into())];
        apply_headers(
            &[
                Header::AddIfNotPresent("a".into(), "x".into()),
                Header::AddOrReplace("b".into(), "3".into()),
                Header::AddIfNotPresent("c".into(), "4".into()),
                Header::Remove("a".into()),
            ],
            &mut p,
        );
        assert_eq!(
            p,
            vec![("b".to_owned(), "3".to_owned()), ("c".into(), "4".into())]
        );
    }
}
