//! A prefix trie over bytes: which subscribers hold a prefix of a topic.
//!
//! ZeroMQ semantics: a subscriber wants a topic when any of its prefixes is
//! a prefix of it (the empty prefix: everything). Matching walks the topic
//! once, O(topic length + holders met); adding or removing a prefix walks
//! the prefix once, O(prefix length) (+ the holders of that one node when
//! removing). The index holds each (prefix, subscriber) once; refcounts of
//! repeated SUBSCRIBEs are kept by the subscriber. Empty nodes are pruned,
//! and the number of nodes is capped.

/// The last byte of a *word-boundary* prefix (a Fanfare extension of
/// ZeroMQ's prefix matching; no topic holds it): `room.5` + `WORD_END` is
/// wanted by `room.5` and `room.5.x`, not by `room.50`.
pub(crate) const WORD_END: u8 = 0;

/// One trie node: the byte that leads to it, its children sorted by byte,
/// and the subscriber slots holding exactly the prefix it spells.
#[derive(Debug, Default)]
struct Node {
    parent: u32,
    byte: u8,
    children: Vec<(u8, u32)>,
    holders: Vec<u32>,
}

/// The trie. Node 0 is the root (the empty prefix).
#[derive(Debug)]
pub(crate) struct PrefixIndex {
    nodes: Vec<Node>,
    free: Vec<u32>,
    max_nodes: usize,
}

impl PrefixIndex {
    /// An empty index of at most `max_nodes` nodes (bytes of distinct prefixes).
    pub(crate) fn new(max_nodes: usize) -> Self {
        Self {
            nodes: vec![Node::default()],
            free: Vec::new(),
            max_nodes: max_nodes.max(1),
        }
    }

    /// Nodes in use (the root included).
    pub(crate) fn len(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        let c = &self.nodes[node as usize].children;
        c.binary_search_by_key(&byte, |&(b, _)| b)
            .ok()
            .map(|i| c[i].1)
    }

    /// Adds `slot` as a holder of `prefix` (the caller adds each pair once).
    /// False, and nothing changed, if the index would exceed its node cap.
    pub(crate) fn insert(&mut self, prefix: &[u8], slot: u32) -> bool {
        let (mut node, mut depth) = (0u32, 0usize);
        while depth < prefix.len() {
            match self.child(node, prefix[depth]) {
                Some(c) => (node, depth) = (c, depth + 1),
                None => break,
            }
        }
        if self.len() + (prefix.len() - depth) > self.max_nodes {
            return false;
        }
        for &byte in &prefix[depth..] {
            let new = Node {
                parent: node,
                byte,
                ..Node::default()
            };
            let id = match self.free.pop() {
                Some(id) => {
                    self.nodes[id as usize] = new;
                    id
                }
                None => {
                    self.nodes.push(new);
                    (self.nodes.len() - 1) as u32
                }
            };
            let c = &mut self.nodes[node as usize].children;
            let at = c.partition_point(|&(b, _)| b < byte);
            c.insert(at, (byte, id));
            node = id;
        }
        self.nodes[node as usize].holders.push(slot);
        true
    }

    /// Removes `slot` from the holders of `prefix`; prunes emptied nodes.
    pub(crate) fn remove(&mut self, prefix: &[u8], slot: u32) {
        let mut node = 0u32;
        for &b in prefix {
            match self.child(node, b) {
                Some(c) => node = c,
                None => return,
            }
        }
        let holders = &mut self.nodes[node as usize].holders;
        if let Some(i) = holders.iter().position(|&s| s == slot) {
            holders.swap_remove(i);
        }
        while node != 0 {
            let n = &self.nodes[node as usize];
            if !n.holders.is_empty() || !n.children.is_empty() {
                break;
            }
            let (parent, byte) = (n.parent, n.byte);
            let c = &mut self.nodes[parent as usize].children;
            if let Ok(i) = c.binary_search_by_key(&byte, |&(b, _)| b) {
                c.remove(i);
            }
            self.nodes[node as usize] = Node::default();
            self.free.push(node);
            node = parent;
        }
    }

    /// Calls `f` for every holder of every prefix of `topic` (a slot holding
    /// several such prefixes is reported once per prefix), and of every
    /// word-boundary prefix `p` + [`WORD_END`] where the topic is `p` or
    /// goes on after `p` with a `.`.
    pub(crate) fn for_each_match(&self, topic: &[u8], mut f: impl FnMut(u32)) {
        let mut node = 0u32;
        let mut i = 0;
        loop {
            let n = &self.nodes[node as usize];
            for &s in &n.holders {
                f(s);
            }
            let next = topic.get(i).copied();
            if matches!(next, None | Some(b'.')) {
                // Children are sorted by byte: a word end is the first.
                if let Some(&(WORD_END, end)) = n.children.first() {
                    for &s in &self.nodes[end as usize].holders {
                        f(s);
                    }
                }
            }
            let Some(b) = next else { return };
            match self.child(node, b) {
                Some(c) => node = c,
                None => return,
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(ix: &PrefixIndex, topic: &[u8]) -> Vec<u32> {
        let mut v = Vec::new();
        ix.for_each_match(topic, |s| v.push(s));
        v.sort_unstable();
        v
    }

    #[test]
    fn prefixes_match_and_prune() {
        let mut ix = PrefixIndex::new(100);
        assert!(ix.insert(b"chat.", 1));
        assert!(ix.insert(b"chat.room", 2));
        assert!(ix.insert(b"", 3));
        assert_eq!(matches(&ix, b"chat.room.1"), vec![1, 2, 3]);
        assert_eq!(matches(&ix, b"chat.x"), vec![1, 3]);
        assert_eq!(matches(&ix, b"cha"), vec![3]);
        ix.remove(b"chat.room", 2);
        assert_eq!(ix.len(), 1 + 5, "room's nodes pruned");
        ix.remove(b"chat.", 1);
        ix.remove(b"", 3);
        assert_eq!(ix.len(), 1);
        assert!(matches(&ix, b"chat.room").is_empty());
    }

    #[test]
    fn a_word_boundary_prefix_matches_the_word_and_what_follows_its_dot() {
        let mut ix = PrefixIndex::new(100);
        assert!(ix.insert(b"room.5\0", 1));
        assert!(ix.insert(b"room.5", 2));
        assert!(ix.insert(b"room\0", 3));
        assert_eq!(matches(&ix, b"room.5"), vec![1, 2, 3]);
        assert_eq!(matches(&ix, b"room.5.chat"), vec![1, 2, 3]);
        assert_eq!(matches(&ix, b"room.50"), vec![2, 3], "not the word room.5");
        assert_eq!(matches(&ix, b"room"), vec![3]);
        assert!(matches(&ix, b"rooms").is_empty());
        ix.remove(b"room.5\0", 1);
        assert_eq!(matches(&ix, b"room.5"), vec![2, 3]);
    }

    #[test]
    fn node_cap_refuses_without_change() {
        let mut ix = PrefixIndex::new(4);
        assert!(ix.insert(b"abc", 1));
        assert!(!ix.insert(b"xy", 1));
        assert!(ix.insert(b"ab", 2), "shares existing nodes");
        assert_eq!(ix.len(), 4);
        assert_eq!(matches(&ix, b"abcd"), vec![1, 2]);
    }
}
