//! A subscription's pattern *set* (see `Subscription::set_patterns`): what
//! it matches, and the SUB prefixes it holds, within a budget.
//!
//! Literal patterns (the usual `room.5`) are looked up in a hash set; the
//! others are keyed by their leading literal words (`""` for a wildcard-led
//! one), so a topic is matched only against the patterns whose literal
//! words are a word prefix of it (as the hub's dispatch index does).
//!
//! The prefixes are those of the patterns (`sub_prefix`) while they fit the
//! budget; past it, the same cut to the longest length that fits
//! (`room.1234` → `room.12`: a few more rooms taken in), then each
//! pattern's first word, and past that again the empty prefix
//! (everything): the broadcaster
//! caps what one connection may hold, and a refused prefix would cost the
//! connection its session.

use std::collections::{HashMap, HashSet};

use fanfare_protocol::pattern::{leading_literal_words, Pattern};
use fanfare_protocol::topic::word_prefixes;

use super::sub_prefix;

/// Most SUB prefixes one set holds (the broadcaster takes 8192 per
/// connection, PROTOCOL.md; the rest is left to other subscriptions).
pub(crate) const MAX_SET_PREFIXES: usize = 6144;
/// Most bytes of SUB prefixes one set holds (of the broadcaster's 64 KiB).
pub(crate) const MAX_SET_PREFIX_BYTES: usize = 48 * 1024;

#[derive(Debug, Default)]
pub(crate) struct PatternSet {
    literal: HashSet<String>,
    /// Leading literal words → the wildcard patterns with them.
    wild: HashMap<String, Vec<Pattern>>,
    wild_count: usize,
    /// The SUB prefixes this set holds in the registry.
    pub(super) prefixes: Vec<String>,
}

impl PatternSet {
    pub(crate) fn new(patterns: &[Pattern]) -> Self {
        let mut set = PatternSet::default();
        let mut seen = HashSet::new();
        for p in patterns {
            if p.is_literal() {
                set.literal.insert(p.as_str().to_owned());
            } else if seen.insert(p.as_str()) {
                set.wild
                    .entry(leading_literal_words(p.as_str()).to_owned())
                    .or_default()
                    .push(p.clone());
                set.wild_count += 1;
            }
        }
        set.prefixes = prefixes_within(patterns, MAX_SET_PREFIXES, MAX_SET_PREFIX_BYTES);
        set
    }

    /// Does a pattern of the set match `topic`?
    pub(crate) fn matches(&self, topic: &str) -> bool {
        if self.literal.contains(topic) {
            return true;
        }
        if self.wild.is_empty() {
            return false;
        }
        word_prefixes(topic)
            .filter_map(|k| self.wild.get(k))
            .flatten()
            .any(|p| p.matches(topic))
    }

    /// Its patterns, for a replay filter.
    pub(crate) fn patterns(&self) -> impl Iterator<Item = Pattern> + '_ {
        self.literal
            .iter()
            .filter_map(|t| Pattern::parse(t).ok())
            .chain(self.wild.values().flatten().cloned())
    }

    /// Number of distinct patterns.
    pub(crate) fn len(&self) -> usize {
        self.literal.len() + self.wild_count
    }
}

/// The distinct SUB prefixes of `patterns`, coarser when they do not fit
/// `max` prefixes of `max_bytes` in all.
fn prefixes_within(patterns: &[Pattern], max: usize, max_bytes: usize) -> Vec<String> {
    let fits =
        |v: &[String]| v.len() <= max && v.iter().map(String::len).sum::<usize>() <= max_bytes;
    let exact = distinct(patterns.iter().map(sub_prefix));
    if fits(&exact) {
        return exact;
    }
    // Cut to `len` bytes (at a char boundary): a cut prefix is a plain one.
    let cut = |p: &String, len: usize| -> String {
        let body = p.strip_suffix('\0').unwrap_or(p);
        if body.len() <= len {
            return p.clone();
        }
        let mut end = len;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body[..end].to_owned()
    };
    let longest = exact.iter().map(String::len).max().unwrap_or(0);
    for len in (1..longest).rev() {
        let v = distinct(exact.iter().map(|p| cut(p, len)));
        if v.iter().any(String::is_empty) {
            break;
        }
        if fits(&v) {
            tracing::info!(
                patterns = patterns.len(),
                prefixes = v.len(),
                len,
                "pattern set over the prefix budget: prefixes cut"
            );
            return v;
        }
        if v.len() * 2 < exact.len() {
            break; // cutting more would take in much more than asked
        }
    }
    // Each pattern's first word, as a word (a wildcard first word: all).
    let words = distinct(patterns.iter().map(|p| {
        let first = p.as_str().split('.').next().unwrap_or_default();
        if first == "*" || first == "#" {
            String::new()
        } else {
            format!("{first}\0")
        }
    }));
    if fits(&words) {
        tracing::info!(
            patterns = patterns.len(),
            prefixes = words.len(),
            "pattern set over the prefix budget: subscribing by first word"
        );
        return words;
    }
    tracing::info!(
        patterns = patterns.len(),
        "pattern set over the prefix budget: subscribing to everything"
    );
    vec![String::new()]
}

/// Sorted, deduplicated; the empty prefix (everything) alone if present.
fn distinct(prefixes: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = prefixes.collect();
    if v.iter().any(String::is_empty) {
        return vec![String::new()];
    }
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    #[test]
    fn matches_literal_and_wildcard_patterns() {
        let s = PatternSet::new(&pats(&["room.5", "room.7", "news.#", "room.5"]));
        assert!(s.matches("room.5") && s.matches("room.7") && s.matches("news.a.b"));
        assert!(!s.matches("room.50") && !s.matches("room.6"));
        assert_eq!(s.len(), 3);
        assert_eq!(s.prefixes, ["news\0", "room.5\0", "room.7\0"]);
        assert_eq!(s.patterns().count(), 3);
        let w = PatternSet::new(&pats(&["a.*.c", "a.b.#", "*.x", "a.*.c"]));
        assert_eq!(w.len(), 3);
        assert!(w.matches("a.z.c") && w.matches("a.b") && w.matches("a.b.q.r") && w.matches("q.x"));
        assert!(!w.matches("a.z.d") && !w.matches("ab.x.y") && !w.matches("b.y"));
        let all = PatternSet::new(&pats(&["room.5", "#"]));
        assert_eq!(all.prefixes, [""], "everything alone");
    }

    /// Does one of `prefixes` bring `topic` (the broadcaster's rule)?
    fn brought(prefixes: &[String], topic: &str) -> bool {
        prefixes.iter().any(|p| match p.strip_suffix('\0') {
            Some(word) => topic == word || topic.starts_with(&format!("{word}.")),
            None => topic.starts_with(p.as_str()),
        })
    }

    #[test]
    fn coarser_prefixes_past_the_budget() {
        let many: Vec<String> = (0..20).map(|i| format!("room.{i}")).collect();
        let mut list: Vec<&str> = many.iter().map(String::as_str).collect();
        list.push("chat.x");
        let p = pats(&list);
        assert_eq!(prefixes_within(&p, 30, 1000).len(), 21);
        // Cut: room.10 … room.19 become room.1, the rest stay.
        let cut = prefixes_within(&p, 12, 1000);
        assert_eq!(cut.len(), 12, "{cut:?}");
        assert!(cut.contains(&"room.1".to_owned()) && cut.contains(&"room.9\0".to_owned()));
        assert_eq!(prefixes_within(&p, 10, 1000), ["chat.", "room."]);
        assert_eq!(prefixes_within(&p, 1, 1000), [""]);
        for (max, bytes) in [(30, 100), (12, 1000), (10, 1000), (5, 60)] {
            let v = prefixes_within(&p, max, bytes);
            let total: usize = v.iter().map(String::len).sum();
            assert!(
                v.len() <= max && total <= bytes,
                "{v:?} over ({max}, {bytes})"
            );
            for t in many.iter().map(String::as_str).chain(["chat.x"]) {
                assert!(brought(&v, t), "{t} not brought by {v:?}");
            }
            assert!(!brought(&v, "news.x"), "{v:?}");
        }
    }
}
