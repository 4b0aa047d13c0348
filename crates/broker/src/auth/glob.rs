//! Glob patterns over state store keys, for the state store's `SCAN` and persistence
//! patterns and for `keyType: Pattern` grants (the semantics of Redis `KEYS`/`SCAN MATCH`,
//! which the SDK's `list_keys` documents): `*` any run of bytes, `?` one byte, `[abc]`,
//! `[a-z]`, `[^a]` or `[!a]` one byte of a set, `\x` the byte `x` itself. Keys are bytes, so
//! is the pattern. [`escape`] makes a value match only itself.

/// Whether `key` matches `pattern`. Linear backtracking on the last `*`: O(|p|·|k|) worst case.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let (mut p, mut k) = (0, 0);
    // Where to resume after the most recent `*`: (pattern index after it, key index).
    let mut star: Option<(usize, usize)> = None;
    while k < key.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, k));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => class(pattern, p, key[k]),
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == key[k]).then_some(p + 2),
            Some(&c) => (c == key[k]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                k += 1;
            }
            (None, Some((sp, sk))) => {
                star = Some((sp, sk + 1));
                p = sp;
                k = sk + 1;
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// Append `value` to a pattern so that it matches exactly itself: every byte the matcher
/// gives a meaning (`* ? [ ] \`, and `- ^ !` which mean something inside a class) is
/// preceded by a backslash, so the value stays literal even inside a policy's `[...]`.
pub fn escape(value: &[u8], out: &mut Vec<u8>) {
    for &b in value {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\' | b'-' | b'^' | b'!') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// Match `byte` against the class opening at `pattern[open] == b'['`; the index after the
/// class if it matches. An unterminated class matches a literal `[`.
fn class(pattern: &[u8], open: usize, byte: u8) -> Option<usize> {
    let mut i = open + 1;
    let negate = matches!(pattern.get(i), Some(b'^' | b'!'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let c = match pattern.get(i) {
            None => return (byte == b'[').then_some(open + 1),
            Some(b']') if !first => break,
            Some(b'\\') if i + 1 < pattern.len() => {
                i += 1;
                pattern[i]
            }
            Some(&c) => c,
        };
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let end = pattern[i + 2];
            hit |= (c.min(end)..=c.max(end)).contains(&byte);
            i += 3;
        } else {
            hit |= c == byte;
            i += 1;
        }
    }
    (hit != negate).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::{escape, matches};

    #[test]
    fn glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("key*", "key", true),
            ("key*", "key42", true),
            ("key*", "ke", false),
            ("*42", "key42", true),
            ("k*y*2", "key42", true),
            ("k?y", "key", true),
            ("k?y", "ky", false),
            ("k[ae]y", "key", true),
            ("k[^e]y", "key", false),
            ("k[!a]y", "key", true),
            ("k[a-f]y", "key", true),
            ("k[f-a]y", "key", true),
            ("k[x-z]y", "key", false),
            ("k\\*y", "k*y", true),
            ("k\\*y", "key", false),
            ("k[y", "k[y", true),
            ("a*b*c", "aXbXbXc", true),
            ("a*b*c", "aXbXbX", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for &(p, k, want) in cases {
            assert_eq!(matches(p.as_bytes(), k.as_bytes()), want, "{p:?} vs {k:?}");
        }
    }

    #[test]
    fn escaped_values_match_only_themselves() {
        for value in ["a*", "?", "[a-z]", "x\\", "\\*", "]", "a-z", "^a", "plain"] {
            let mut pat = b"clients/".to_vec();
            escape(value.as_bytes(), &mut pat);
            pat.extend_from_slice(b"/*");
            let own = format!("clients/{value}/k");
            assert!(matches(&pat, own.as_bytes()), "{value:?}");
            for other in ["clients/ab/k", "clients/a/k", "clients/b/k", "clients/x/k"] {
                if other != own {
                    assert!(!matches(&pat, other.as_bytes()), "{value:?} vs {other}");
                }
            }
            // Inside a class of the policy's own, the value's bytes are members, not syntax.
            let mut class = b"k[".to_vec();
            escape(value.as_bytes(), &mut class);
            class.push(b']');
            for probe in ["kb", "kx"] {
                let member = value.as_bytes().contains(&probe.as_bytes()[1]);
                assert_eq!(
                    matches(&class, probe.as_bytes()),
                    member,
                    "{value:?} {probe}"
                );
            }
        }
    }
}
