//! The subscription trie of one router partition: topic filters split into levels, with `+`
//! and `#` as their own branches, so matching a topic walks only the branches that can match.
//! Entries point at sessions (by slab index) or shared-subscription groups owned here.

use std::collections::HashMap;

use edgeplane_codec::SubOptions;

/// What a subscription delivers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Session(u32),
    Shared(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub target: Target,
    pub opts: SubOptions,
    pub sub_id: Option<u32>,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    plus: Option<Box<Node>>,
    /// Entries of filters ending in `#` at this level.
    hash: Vec<Entry>,
    /// Entries of filters ending exactly here.
    entries: Vec<Entry>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.entries.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Trie {
    root: Node,
}

impl Trie {
    /// Add or replace the entry for `target` under `filter`. Returns true if it was new.
    pub fn insert(&mut self, filter: &str, entry: Entry) -> bool {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return upsert(&mut node.hash, entry);
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        upsert(&mut node.entries, entry)
    }

    /// Remove `target`'s entry under `filter`, pruning empty branches. True if it existed.
    pub fn remove(&mut self, filter: &str, target: Target) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        remove_at(&mut self.root, &levels, target)
    }

    /// Call `f` for every entry whose filter matches `topic` ([MQTT-4.7.2-1] applied).
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&Entry)) {
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, !dollar, &mut f);
    }
}

fn upsert(list: &mut Vec<Entry>, entry: Entry) -> bool {
    match list.iter_mut().find(|e| e.target == entry.target) {
        Some(e) => {
            *e = entry;
            false
        }
        None => {
            list.push(entry);
            true
        }
    }
}

fn remove_at(node: &mut Node, levels: &[&str], target: Target) -> bool {
    let Some((&level, rest)) = levels.split_first() else {
        let before = node.entries.len();
        node.entries.retain(|e| e.target != target);
        return node.entries.len() != before;
    };
    if level == "#" && rest.is_empty() {
        let before = node.hash.len();
        node.hash.retain(|e| e.target != target);
        return node.hash.len() != before;
    }
    if level == "+" {
        let Some(child) = node.plus.as_deref_mut() else {
            return false;
        };
        let removed = remove_at(child, rest, target);
        if child.is_empty() {
            node.plus = None;
        }
        removed
    } else {
        let Some(child) = node.children.get_mut(level) else {
            return false;
        };
        let removed = remove_at(child, rest, target);
        if child.is_empty() {
            node.children.remove(level);
        }
        removed
    }
}

fn walk(node: &Node, levels: &[&str], wildcards: bool, f: &mut impl FnMut(&Entry)) {
    if wildcards {
        node.hash.iter().for_each(&mut *f);
    }
    let Some((&level, rest)) = levels.split_first() else {
        node.entries.iter().for_each(f);
        return;
    };
    if let Some(child) = node.children.get(level) {
        walk(child, rest, true, f);
    }
    if wildcards {
        if let Some(plus) = node.plus.as_deref() {
            walk(plus, rest, true, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeplane_codec::QoS;

    fn entry(i: u32) -> Entry {
        Entry {
            target: Target::Session(i),
            opts: SubOptions::new(QoS::AtMostOnce),
            sub_id: None,
        }
    }

    fn matched(t: &Trie, topic: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_match(topic, |e| {
            if let Target::Session(i) = e.target {
                v.push(i)
            }
        });
        v.sort();
        v
    }

    #[test]
    fn matches_like_the_spec() {
        let mut t = Trie::default();
        for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "$SYS/#", "+", "a/b/c"]
            .iter()
            .enumerate()
        {
            t.insert(f, entry(i as u32));
        }
        assert_eq!(matched(&t, "a/b"), vec![0, 1, 2, 3, 4]);
        assert_eq!(matched(&t, "a"), vec![2, 3, 6]);
        assert_eq!(matched(&t, "$SYS/x"), vec![5]);
        assert_eq!(matched(&t, "a/b/c"), vec![2, 3, 7]);
        assert!(t.remove("a/+", Target::Session(1)));
        assert!(!t.remove("a/+", Target::Session(1)));
        assert_eq!(matched(&t, "a/b"), vec![0, 2, 3, 4]);
        for (i, f) in ["a/b", "a/#", "#", "+/b", "$SYS/#", "+", "a/b/c"]
            .iter()
            .enumerate()
        {
            let idx = if i == 0 { 0 } else { i as u32 + 1 };
            assert!(t.remove(f, Target::Session(idx)), "{f}");
        }
        assert!(t.root.is_empty());
    }
}
