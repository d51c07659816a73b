//! Subscription patterns with AMQP wildcards.
//!
//! A pattern is dot-separated words where `*` stands for exactly one word and
//! `#` for zero or more words: `chat.#` matches `chat` and `chat.a.b`,
//! `metrics.*.cpu` matches `metrics.w1.cpu` only.

use crate::topic::MAX_TOPIC_LEN;

/// Most words in one pattern. Matching costs at most O(pattern words ×
/// topic bytes), so this (with [`MAX_TOPIC_LEN`]) bounds the work one pattern
/// can cause per message.
pub const MAX_PATTERN_WORDS: usize = 32;

/// Most `#` words in one pattern (after runs such as `#.#` are collapsed).
pub const MAX_PATTERN_MANY: usize = 4;

/// Why a pattern was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is empty.
    #[error("pattern is empty")]
    Empty,
    /// The pattern is longer than the longest topic.
    #[error("pattern is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    /// A word is empty.
    #[error("pattern has an empty word")]
    EmptyWord,
    /// A word mixes a wildcard with other characters, or holds whitespace.
    #[error("a wildcard must be a whole word; no whitespace or control characters")]
    BadWord,
    /// More than [`MAX_PATTERN_WORDS`] words.
    #[error("pattern has more than {MAX_PATTERN_WORDS} words")]
    TooManyWords,
    /// More than [`MAX_PATTERN_MANY`] `#` words.
    #[error("pattern has more than {MAX_PATTERN_MANY} `#` words")]
    TooManyMany,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Literal(String),
    One,
    Many,
}

/// A parsed subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    words: Vec<Word>,
    prefix: String,
    literal: bool,
    /// Literal words then one `#` (`#`, `chat.#`): matched by comparing
    /// the prefix alone.
    tail_many: bool,
}

impl Pattern {
    /// Parses a pattern such as `chat.#` or `metrics.*.cpu`.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        if text.len() > MAX_TOPIC_LEN {
            return Err(PatternError::TooLong);
        }
        let mut words = Vec::new();
        for w in text.split('.') {
            let word = match w {
                "" => return Err(PatternError::EmptyWord),
                "*" => Word::One,
                "#" => Word::Many,
                _ if w
                    .chars()
                    .any(|c| c == '*' || c == '#' || c.is_whitespace() || c.is_control()) =>
                {
                    return Err(PatternError::BadWord)
                }
                _ => Word::Literal(w.to_owned()),
            };
            // `#.#` is the same as `#`: collapse runs.
            if word == Word::Many && words.last() == Some(&Word::Many) {
                continue;
            }
            if word == Word::Many
                && words.iter().filter(|w| **w == Word::Many).count() >= MAX_PATTERN_MANY
            {
                return Err(PatternError::TooManyMany);
            }
            if words.len() >= MAX_PATTERN_WORDS {
                return Err(PatternError::TooManyWords);
            }
            words.push(word);
        }
        let literal = words.iter().all(|w| matches!(w, Word::Literal(_)));
        let prefix = literal_prefix_of(&words, literal, text);
        let tail_many = words.split_last().is_some_and(|(last, rest)| {
            *last == Word::Many && rest.iter().all(|w| matches!(w, Word::Literal(_)))
        });
        Ok(Self {
            text: text.to_owned(),
            words,
            prefix,
            literal,
            tail_many,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The longest literal prefix: what is sent as the ZeroMQ SUB prefix.
    ///
    /// `chat.#` gives `chat` (it must also match the topic `chat` itself),
    /// `chat.*` gives `chat.`, `a.b` gives `a.b`, `*.x` gives the empty prefix.
    pub fn literal_prefix(&self) -> &str {
        &self.prefix
    }

    /// True when the pattern has no wildcard.
    pub fn is_literal(&self) -> bool {
        self.literal
    }

    /// Does `topic` match this pattern?
    ///
    /// Allocation-free; at most O(pattern words × topic bytes).
    pub fn matches(&self, topic: &str) -> bool {
        if self.literal {
            return topic == self.text;
        }
        if self.tail_many {
            // `a.b.#` is `a.b` itself or anything under `a.b.`; `#` is all.
            let p = self.prefix.as_str();
            return p.is_empty()
                || topic
                    .strip_prefix(p)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        }
        match_words(&self.words, topic)
    }
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn literal_prefix_of(words: &[Word], literal: bool, text: &str) -> String {
    if literal {
        return text.to_owned();
    }
    let mut prefix = String::new();
    for (i, w) in words.iter().enumerate() {
        match w {
            Word::Literal(l) => {
                prefix.push_str(l);
                prefix.push('.');
            }
            Word::One => return prefix,
            Word::Many => {
                // `#` may match zero words: `a.#` must match `a`, so the dot
                // after the last literal word cannot be part of the prefix.
                if i > 0 {
                    prefix.pop();
                }
                return prefix;
            }
        }
    }
    prefix
}

/// The word of `topic` starting at byte `at`, and where the next word starts
/// (`None` after the last word).
fn word_at(topic: &str, at: usize) -> (&str, Option<usize>) {
    let rest = topic.get(at..).unwrap_or_default();
    match rest.find('.') {
        Some(dot) => (&rest[..dot], Some(at + dot + 1)),
        None => (rest, None),
    }
}

fn match_words(pattern: &[Word], topic: &str) -> bool {
    // Iterative glob-style matcher: on a mismatch, backtrack to the last `#`
    // and let it swallow one more word. Each backtrack advances the `#`'s
    // start, so the work is at most O(pattern words × topic bytes); topic
    // words are walked by byte offset, with no allocation.
    let mut p = 0usize;
    let mut t: Option<usize> = Some(0);
    // The last `#` seen: its index in `pattern` and the topic word it starts at.
    let mut star: Option<(usize, usize)> = None;
    while let Some(at) = t {
        let (word, next) = word_at(topic, at);
        match pattern.get(p) {
            Some(Word::Literal(l)) if l == word => {
                p += 1;
                t = next;
            }
            Some(Word::One) => {
                p += 1;
                t = next;
            }
            Some(Word::Many) => {
                star = Some((p, at));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = word_at(topic, st).1;
                    if let Some(after) = t {
                        star = Some((sp, after));
                    }
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .unwrap_or_default()
        .iter()
        .all(|w| *w == Word::Many)
}

/// A pattern's leading literal words (the whole pattern when it has no
/// wildcard; `""` when it starts with one): the key under which an index
/// of patterns files it, so that a topic is matched only against the
/// patterns whose key is one of its [`word_prefixes`](crate::topic::word_prefixes).
pub fn leading_literal_words(pattern: &str) -> &str {
    let mut end: usize = 0;
    for (i, word) in pattern.split('.').enumerate() {
        if word == "*" || word == "#" {
            return &pattern[..end.saturating_sub(usize::from(i > 0))];
        }
        end += word.len() + 1;
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).map(|p| p.matches(t)).unwrap_or(false)
    }

    #[test]
    fn wildcards() {
        assert!(m("chat.#", "chat"));
        assert!(m("chat.#", "chat.a.b"));
        assert!(!m("chat.#", "chatter"));
        assert!(m("chat.*", "chat.a"));
        assert!(!m("chat.*", "chat"));
        assert!(!m("chat.*", "chat.a.b"));
        assert!(m("#", "a.b.c"));
        assert!(m("*.cpu", "w1.cpu"));
        assert!(m("a.#.z", "a.z"));
        assert!(m("a.#.z", "a.b.c.z"));
        assert!(!m("a.#.z", "a.b.c"));
        assert!(m("#.z", "z"));
        assert!(m("a.*.#", "a.b"));
        assert!(!m("a.*.#", "a"));
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "a.b.c"));
    }

    #[test]
    fn prefixes() {
        let p = |s: &str| Pattern::parse(s).map(|p| p.literal_prefix().to_owned());
        assert_eq!(p("chat.#"), Ok("chat".into()));
        assert_eq!(p("chat.*"), Ok("chat.".into()));
        assert_eq!(p("a.b.*.c"), Ok("a.b.".into()));
        assert_eq!(p("a.b"), Ok("a.b".into()));
        assert_eq!(p("#"), Ok("".into()));
        assert_eq!(p("*.x"), Ok("".into()));
    }

    #[test]
    fn bad_patterns() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("a..b"), Err(PatternError::EmptyWord));
        assert_eq!(Pattern::parse("a.b*"), Err(PatternError::BadWord));
        assert_eq!(Pattern::parse("a b"), Err(PatternError::BadWord));
    }

    #[test]
    fn size_bounds() {
        let words = |n: usize| vec!["a"; n].join(".");
        assert!(Pattern::parse(&format!("{}.*", words(MAX_PATTERN_WORDS - 1))).is_ok());
        assert_eq!(
            Pattern::parse(&format!("{}.*", words(MAX_PATTERN_WORDS))),
            Err(PatternError::TooManyWords)
        );
        let many = |n: usize| vec!["#"; n].join(".a.");
        assert!(Pattern::parse(&many(MAX_PATTERN_MANY)).is_ok());
        assert_eq!(
            Pattern::parse(&many(MAX_PATTERN_MANY + 1)),
            Err(PatternError::TooManyMany)
        );
        // Runs collapse before counting: `#.#.#.#.#` is one `#`.
        assert!(Pattern::parse("#.#.#.#.#.#").is_ok());
    }

    #[test]
    fn a_worst_case_match_is_cheap() {
        // Alternating `#` and literals against the longest topic of one
        // letter words: the matcher backtracks, but stays bounded.
        let pattern = Pattern::parse("#.a.#.b.#.c.#.d").unwrap();
        let topic = vec!["a"; MAX_TOPIC_LEN / 2].join(".");
        assert!(!pattern.matches(&topic));
        let topic = format!("{}.b.c.d", vec!["a"; MAX_TOPIC_LEN / 2 - 3].join("."));
        assert!(pattern.matches(&topic));
    }

    /// Reference matcher: plain recursion over the definition.
    fn reference(p: &[&str], t: &[&str]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (None, Some(_)) => false,
            (Some(&"#"), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some(_), None) => false,
            (Some(&"*"), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(w), Some(x)) => w == x && reference(&p[1..], &t[1..]),
        }
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("c".to_owned())
        ]
    }
    fn pword() -> impl Strategy<Value = String> {
        prop_oneof![word(), Just("*".to_owned()), Just("#".to_owned())]
    }

    proptest! {
        #[test]
        fn matcher_agrees_with_reference(
            pw in proptest::collection::vec(pword(), 1..6),
            tw in proptest::collection::vec(word(), 1..7),
        ) {
            let pattern = pw.join(".");
            let topic = tw.join(".");
            let p = Pattern::parse(&pattern).unwrap();
            let pr: Vec<&str> = pw.iter().map(String::as_str).collect();
            let tr: Vec<&str> = tw.iter().map(String::as_str).collect();
            prop_assert_eq!(p.matches(&topic), reference(&pr, &tr), "{} vs {}", pattern, topic);
        }

        #[test]
        fn literal_words_then_many_agree_with_reference(
            pw in proptest::collection::vec(word(), 0..4),
            tw in proptest::collection::vec(prop_oneof![word(), Just("ab".to_owned())], 1..7),
        ) {
            // `a.b.#` and `#` take the prefix-only path; "ab" tests that a
            // word merely starting with the prefix's last word is no match.
            let mut pr: Vec<&str> = pw.iter().map(String::as_str).collect();
            pr.push("#");
            let pattern = pr.join(".");
            let topic = tw.join(".");
            let p = Pattern::parse(&pattern).unwrap();
            let tr: Vec<&str> = tw.iter().map(String::as_str).collect();
            prop_assert_eq!(p.matches(&topic), reference(&pr, &tr), "{} vs {}", pattern, topic);
        }

        #[test]
        fn every_match_starts_with_the_literal_prefix(
            pw in proptest::collection::vec(pword(), 1..6),
            tw in proptest::collection::vec(word(), 1..7),
        ) {
            let pattern = pw.join(".");
            let topic = tw.join(".");
            let p = Pattern::parse(&pattern).unwrap();
            if p.matches(&topic) {
                prop_assert!(topic.starts_with(p.literal_prefix()));
            }
        }
    }

    #[test]
    fn leading_literal_words_key_a_pattern() {
        assert_eq!(leading_literal_words("chat.room"), "chat.room");
        assert_eq!(leading_literal_words("chat.#"), "chat");
        assert_eq!(leading_literal_words("chat.room.*.x"), "chat.room");
        assert_eq!(leading_literal_words("#"), "");
        assert_eq!(leading_literal_words("*.x"), "");
    }
}
