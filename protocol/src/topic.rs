//! Topics: dot-separated words such as `metrics.cpu.worker-3`.

/// Longest topic accepted anywhere, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;

/// Why a topic was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is empty.
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_TOPIC_LEN`].
    #[error("topic is longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
    /// The topic is not valid UTF-8.
    #[error("topic is not UTF-8")]
    NotUtf8,
    /// A word is empty (leading, trailing or double dot).
    #[error("topic has an empty word")]
    EmptyWord,
    /// The topic holds a wildcard, whitespace or a control character.
    #[error("topic holds a wildcard, whitespace or control character")]
    BadChar,
    /// The topic starts with the reserved `_fanfare.` prefix.
    #[error("topic prefix `_fanfare.` is reserved")]
    Reserved,
}

/// Checks a topic as a publisher sends it; returns it as `&str`.
///
/// Reserved topics (`_fanfare.…`) are refused: only broadcasters publish them.
pub fn validate(raw: &[u8]) -> Result<&str, TopicError> {
    let topic = validate_any(raw)?;
    if topic.starts_with(crate::RESERVED_PREFIX) {
        return Err(TopicError::Reserved);
    }
    Ok(topic)
}

/// Checks a topic's shape, accepting reserved topics (what a subscriber sees).
pub fn validate_any(raw: &[u8]) -> Result<&str, TopicError> {
    if raw.is_empty() {
        return Err(TopicError::Empty);
    }
    if raw.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let topic = std::str::from_utf8(raw).map_err(|_| TopicError::NotUtf8)?;
    for word in topic.split('.') {
        if word.is_empty() {
            return Err(TopicError::EmptyWord);
        }
        if word
            .chars()
            .any(|c| c == '*' || c == '#' || c.is_whitespace() || c.is_control())
        {
            return Err(TopicError::BadChar);
        }
    }
    Ok(topic)
}

/// The keys a topic is looked up under in an index of patterns keyed by
/// their [`leading_literal_words`](crate::pattern::leading_literal_words):
/// `""`, then every run of its leading words (`a`, `a.b`, …, the topic).
pub fn word_prefixes(topic: &str) -> impl Iterator<Item = &str> {
    std::iter::once("")
        .chain(topic.match_indices('.').map(|(i, _)| &topic[..i]))
        .chain(std::iter::once(topic))
}

/// The first word of a topic (its namespace), which selects its lane.
pub fn first_word(topic: &[u8]) -> &[u8] {
    match topic.iter().position(|&b| b == b'.') {
        Some(i) => &topic[..i],
        None => topic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_refuses() {
        assert_eq!(validate(b"chat.lobby"), Ok("chat.lobby"));
        assert_eq!(validate(b"a"), Ok("a"));
        assert_eq!(validate(b""), Err(TopicError::Empty));
        assert_eq!(validate(b"a..b"), Err(TopicError::EmptyWord));
        assert_eq!(validate(b".a"), Err(TopicError::EmptyWord));
        assert_eq!(validate(b"a."), Err(TopicError::EmptyWord));
        assert_eq!(validate(b"a.*"), Err(TopicError::BadChar));
        assert_eq!(validate(b"a b"), Err(TopicError::BadChar));
        assert_eq!(validate(&[0xff, 0xfe]), Err(TopicError::NotUtf8));
        assert_eq!(validate(&[b'a'; 257]), Err(TopicError::TooLong));
        assert_eq!(validate(b"_fanfare.hb.x"), Err(TopicError::Reserved));
        assert_eq!(validate_any(b"_fanfare.hb.x"), Ok("_fanfare.hb.x"));
    }

    #[test]
    fn first_word_is_namespace() {
        assert_eq!(first_word(b"chat.lobby"), b"chat");
        assert_eq!(first_word(b"chat"), b"chat");
    }

    #[test]
    fn word_prefixes_are_the_leading_runs_of_words() {
        let v: Vec<&str> = word_prefixes("a.b.c").collect();
        assert_eq!(v, ["", "a", "a.b", "a.b.c"]);
        assert_eq!(word_prefixes("x").collect::<Vec<_>>(), ["", "x"]);
    }
}
