//! Which patterns the hub's feed must carry: the union of its browsers'
//! patterns, refcounted per connection, and how far the feed carries them.
//!
//! Every change of the set moves a *generation* on. A connection that
//! holds a pattern new to the set waits (bounded) until the feed has
//! applied a generation at least the one that added it, before it answers
//! `subscribed`: an event published after that answer is carried by the
//! feed. The feed task (`feed.rs`) takes the set, applies it through the
//! fabric and reports the generation applied. A hub that does not follow
//! interest (a fabric that cannot, or `HubOptions::follow_interest` off)
//! carries everything, and nothing waits.
//!
//! Bounded: the set holds the distinct patterns of the connections (each
//! connection's patterns are capped, and the registry caps the distinct
//! patterns of the worker); one change wakes the feed task once, whatever
//! the number of changes meanwhile (`Notify`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use fanfare_protocol::pattern::Pattern;
use tokio::sync::{watch, Notify};

struct Held {
    pattern: Pattern,
    count: usize,
    /// The generation that added it.
    since: u64,
}

struct State {
    held: foldhash::HashMap<String, Held>,
    generation: u64,
    /// False once the hub carries everything (`stop_following`).
    following: bool,
}

/// The feed's interest.
pub struct Interest {
    state: Mutex<State>,
    changed: Notify,
    applied: watch::Sender<u64>,
}

impl Interest {
    /// `following`: the feed follows interest (else it carries everything).
    pub fn new(following: bool) -> Self {
        Self {
            state: Mutex::new(State {
                held: Default::default(),
                generation: 0,
                following,
            }),
            changed: Notify::new(),
            applied: watch::Sender::new(if following { 0 } else { u64::MAX }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Does the feed follow interest?
    pub fn following(&self) -> bool {
        self.lock().following
    }

    /// A connection holds `patterns` (each once: the caller keeps which it
    /// holds). Returns the generation the feed must have applied to carry
    /// all of them.
    pub fn hold(&self, patterns: &[Pattern]) -> u64 {
        let mut st = self.lock();
        if !st.following {
            return 0;
        }
        let next = st.generation + 1;
        let mut need = 0;
        let mut added = false;
        for p in patterns {
            let h = st.held.entry(p.as_str().to_owned()).or_insert_with(|| {
                added = true;
                Held {
                    pattern: p.clone(),
                    count: 0,
                    since: next,
                }
            });
            h.count += 1;
            need = need.max(h.since);
        }
        if added {
            st.generation = next;
            drop(st);
            self.changed.notify_one();
        }
        need
    }

    /// A connection no longer holds `patterns` (those it held).
    pub fn release<'a>(&self, patterns: impl IntoIterator<Item = &'a str>) {
        let mut st = self.lock();
        let mut removed = false;
        for p in patterns {
            if let Some(h) = st.held.get_mut(p) {
                h.count = h.count.saturating_sub(1);
                if h.count == 0 {
                    st.held.remove(p);
                    removed = true;
                }
            }
        }
        if removed && st.following {
            st.generation += 1;
            drop(st);
            self.changed.notify_one();
        }
    }

    /// The set to apply and its generation (`None`: not following).
    pub fn wanted(&self) -> Option<(u64, Vec<Pattern>)> {
        let st = self.lock();
        st.following.then(|| {
            let patterns = st.held.values().map(|h| h.pattern.clone()).collect();
            (st.generation, patterns)
        })
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Waits until the set changed (one wake-up for any number of changes).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The feed carries generation `generation` (and every older one).
    pub fn applied(&self, generation: u64) {
        self.applied.send_if_modified(|a| {
            let moved = generation > *a;
            *a = (*a).max(generation);
            moved
        });
    }

    /// From now on the feed carries everything: nothing waits any more.
    pub fn stop_following(&self) {
        self.lock().following = false;
        self.applied.send_replace(u64::MAX);
    }

    /// Waits (at most `limit`) until the feed carries `generation`.
    pub async fn wait(&self, generation: u64, limit: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let reached = async { rx.wait_for(|a| *a >= generation).await.is_ok() };
        tokio::time::timeout(limit, reached).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pats(list: &[&str]) -> Vec<Pattern> {
        list.iter().map(|p| Pattern::parse(p).unwrap()).collect()
    }

    fn sorted(i: &Interest) -> (u64, Vec<String>) {
        let (g, p) = i.wanted().unwrap();
        let mut v: Vec<String> = p.iter().map(|p| p.as_str().to_owned()).collect();
        v.sort();
        (g, v)
    }

    #[tokio::test(start_paused = true)]
    async fn refcounts_patterns_and_tells_what_to_wait_for() {
        let i = Interest::new(true);
        assert_eq!(i.hold(&pats(&["a", "b"])), 1);
        assert_eq!(i.hold(&pats(&["b"])), 1, "already in generation 1");
        assert_eq!(sorted(&i), (1, vec!["a".into(), "b".into()]));
        assert!(
            !i.wait(1, Duration::from_millis(10)).await,
            "not applied yet"
        );
        i.applied(1);
        assert!(i.wait(1, Duration::from_millis(10)).await);
        assert_eq!(i.hold(&pats(&["c", "a"])), 2);
        i.release(["b"]);
        assert_eq!(sorted(&i).1, ["a", "b", "c"], "b still held once");
        i.release(["b", "c"]);
        assert_eq!(sorted(&i), (3, vec!["a".into()]));
        i.release(["x"]);
        assert_eq!(
            i.generation(),
            3,
            "releasing what is not held changes nothing"
        );
        i.applied(2); // older than what was applied before: no move back
        i.applied(1);
        assert!(i.wait(2, Duration::from_millis(10)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn not_following_waits_for_nothing() {
        let i = Interest::new(false);
        assert_eq!(i.hold(&pats(&["a"])), 0);
        assert!(i.wanted().is_none());
        assert!(i.wait(0, Duration::from_millis(1)).await);
        let f = Interest::new(true);
        let need = f.hold(&pats(&["a"]));
        f.stop_following();
        assert!(f.wait(need, Duration::from_millis(1)).await);
        assert!(f.wanted().is_none());
        assert_eq!(f.hold(&pats(&["b"])), 0);
    }
}
