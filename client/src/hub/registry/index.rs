//! The registry's pattern indexes: distinct patterns with their
//! connections, and the dispatch index (leading literal words → patterns).

// The dispatch key of a pattern: its leading literal words.
use fanfare_protocol::pattern::{leading_literal_words as dispatch_key, Pattern};

use super::{Index, State};

pub(super) fn add_patterns(st: &mut State, id: u64, patterns: &[Pattern]) {
    let Some(e) = st.conns.get_mut(&id) else {
        return;
    };
    for p in patterns {
        if e.patterns.iter().any(|x| x == p.as_str()) {
            continue;
        }
        e.patterns.push(p.as_str().to_owned());
        let ix = st.index.entry(p.as_str().to_owned()).or_insert_with(|| {
            st.by_prefix
                .entry(dispatch_key(p.as_str()).to_owned())
                .or_default()
                .push(p.as_str().to_owned());
            Index {
                pattern: p.clone(),
                conns: super::IdSet::default(),
            }
        });
        ix.conns.insert(id);
    }
}

/// Takes connection `id` off `patterns`; a pattern nobody uses any more
/// leaves both indexes.
pub(super) fn drop_patterns(st: &mut State, id: u64, patterns: Vec<String>) {
    for p in patterns {
        let Some(ix) = st.index.get_mut(&p) else {
            continue;
        };
        ix.conns.remove(&id);
        if !ix.conns.is_empty() {
            continue;
        }
        st.index.remove(&p);
        let key = dispatch_key(&p);
        if let Some(list) = st.by_prefix.get_mut(key) {
            list.retain(|x| *x != p);
            if list.is_empty() {
                st.by_prefix.remove(key);
            }
        }
    }
}

/// Does the pattern start with a wildcard (dispatch key "")? Such patterns
/// are matched against every event.
pub(super) fn wildcard_led(pattern: &str) -> bool {
    dispatch_key(pattern).is_empty()
}

pub(super) fn remove_locked(st: &mut State, id: u64) {
    let Some(e) = st.conns.remove(&id) else {
        return;
    };
    drop_patterns(st, id, e.patterns);
}

#[cfg(test)]
mod tests {
    #[test]
    fn wildcard_led_patterns_have_the_empty_key() {
        assert!(super::wildcard_led("#.y") && !super::wildcard_led("a.#"));
    }
}
