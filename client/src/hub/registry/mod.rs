//! The connections of one hub, their patterns, and dispatch.
//!
//! One mutex guards the connection table, the pattern index and the ring, so
//! that "snapshot the ring, then go live" is atomic with respect to dispatch.
//! The lock is held only for in-memory work: matching a topic against the
//! distinct patterns whose leading literal words are a word prefix of the
//! topic (the dispatch index; at most `max_distinct` distinct patterns per
//! worker) and `try_send`ing a shared frame to each queue. Nothing awaits
//! under it.
//!
//! Full policy of a connection queue: the connection is closed with 4008
//! ("slow consumer") and removed; nobody else waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use fanfare_protocol::pattern::Pattern;

use super::connection::{ConnShared, Ending, Outgoing, QueueTx, TrySendError};
use super::metrics::HubMetrics;
use super::protocol::{self, GapNotice};
use super::ring::{Coverage, Event, Ring};

mod ids;
mod index;
use ids::{IdMap, IdSet};
use index::{add_patterns, drop_patterns, remove_locked};

struct Entry {
    patterns: Vec<String>,
    tx: QueueTx,
    shared: Arc<ConnShared>,
    /// While resuming: live events wait here (bounded by the queue capacity).
    hold: Option<VecDeque<Arc<Event>>>,
    mark: u64,
}

struct Index {
    pattern: Pattern,
    conns: IdSet,
}

struct State {
    conns: IdMap<Entry>,
    /// Distinct pattern text → the pattern and its connections.
    index: foldhash::HashMap<String, Index>,
    /// Dispatch index: the literal words a pattern starts with (all of a
    /// literal pattern, "" for one that starts with a wildcard) → the
    /// distinct patterns with that key. An event looks up only the keys that
    /// are word prefixes of its topic.
    by_prefix: foldhash::HashMap<String, Vec<String>>,
    ring: Ring,
    generation: u64,
}

/// What a resuming connection gets when it goes on hold.
pub struct ResumeStart {
    /// Ring coverage of each origin of the position (None: not held).
    pub coverage: Vec<(String, u64, u64, Option<Coverage>)>,
    /// Ring events after the position (not yet matched against the patterns).
    pub ring_events: Vec<Arc<Event>>,
}

/// The connection table.
pub struct Registry {
    state: Mutex<State>,
    metrics: Arc<HubMetrics>,
    hold_capacity: usize,
    max_distinct: usize,
    max_wildcard_led: usize,
}

/// The worker already holds its maximum of patterns of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternsFull {
    /// Distinct patterns, all kinds (the cap).
    Distinct(usize),
    /// Distinct patterns that start with a wildcard (`*.x`, `#.y`, `#`):
    /// the dispatch index cannot skip them, so each is matched against
    /// every event (the cap).
    WildcardLed(usize),
}

impl Registry {
    /// An empty registry with a ring of `ring_events`/`ring_bytes`.
    pub fn new(
        metrics: Arc<HubMetrics>,
        ring_events: usize,
        ring_bytes: usize,
        hold_capacity: usize,
        (max_distinct, max_wildcard_led): (usize, usize),
    ) -> Self {
        Self {
            state: Mutex::new(State {
                conns: IdMap::default(),
                index: Default::default(),
                by_prefix: Default::default(),
                ring: Ring::new(ring_events, ring_bytes),
                generation: 0,
            }),
            metrics,
            hold_capacity,
            max_distinct,
            max_wildcard_led,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (no
        // invariant spans an await or a user callback): keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection with no patterns.
    pub fn add(&self, id: u64, tx: QueueTx, shared: Arc<ConnShared>) {
        self.lock().conns.insert(
            id,
            Entry {
                patterns: Vec::new(),
                tx,
                shared,
                hold: None,
                mark: 0,
            },
        );
    }

    /// Removes a connection and its patterns.
    pub fn remove(&self, id: u64) {
        let mut st = self.lock();
        remove_locked(&mut st, id);
    }

    /// Number of connections.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Ends every connection (shutdown).
    pub fn shutdown_all(&self) {
        for e in self.lock().conns.values() {
            e.shared.end(Ending::Shutdown, &self.metrics);
        }
    }

    /// Patterns of a connection.
    pub fn patterns(&self, id: u64) -> Vec<String> {
        self.lock()
            .conns
            .get(&id)
            .map(|e| e.patterns.clone())
            .unwrap_or_default()
    }

    /// Queues `reply` then adds `patterns`, atomically with respect to
    /// dispatch: no event of the new patterns is queued before the reply.
    pub fn subscribe(
        &self,
        id: u64,
        patterns: &[Pattern],
        reply: Utf8Bytes,
    ) -> Result<(), PatternsFull> {
        let mut st = self.lock();
        self.check_room(&st, patterns)?;
        let Some(e) = st.conns.get(&id) else {
            return Ok(());
        };
        if !try_queue(&e.tx, &e.shared, reply.into(), &self.metrics) {
            return Ok(());
        }
        add_patterns(&mut st, id, patterns);
        Ok(())
    }

    /// Would `patterns` fit the worker's pattern caps now? (The check of
    /// [`Self::subscribe`] made ahead, so a refused subscription does not
    /// first change the feed's interest.)
    pub fn room_for(&self, patterns: &[Pattern]) -> Result<(), PatternsFull> {
        let st = self.lock();
        self.check_room(&st, patterns)
    }

    /// Refuses patterns that would take the worker past its distinct-pattern
    /// cap or its (smaller) cap of distinct wildcard-led patterns; counted.
    fn check_room(&self, st: &State, patterns: &[Pattern]) -> Result<(), PatternsFull> {
        let mut new: Vec<&str> = patterns
            .iter()
            .map(Pattern::as_str)
            .filter(|p| !st.index.contains_key(*p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if st.index.len().saturating_add(new.len()) > self.max_distinct {
            self.metrics.patterns_refused_distinct.inc();
            return Err(PatternsFull::Distinct(self.max_distinct));
        }
        let wild_new = new.iter().filter(|p| index::wildcard_led(p)).count();
        let wild_have = st.by_prefix.get("").map_or(0, Vec::len);
        if wild_new > 0 && wild_have.saturating_add(wild_new) > self.max_wildcard_led {
            self.metrics.patterns_refused_wildcard.inc();
            return Err(PatternsFull::WildcardLed(self.max_wildcard_led));
        }
        Ok(())
    }

    /// Drops patterns of a connection.
    pub fn unsubscribe(&self, id: u64, patterns: &[String]) {
        let mut st = self.lock();
        let Some(e) = st.conns.get_mut(&id) else {
            return;
        };
        let (gone, kept) = e.patterns.drain(..).partition(|x| patterns.contains(x));
        e.patterns = kept;
        drop_patterns(&mut st, id, gone);
    }

    /// Adds `patterns` with live events held back, and snapshots the ring for
    /// the origins of `since`: `since` lists `(origin, epoch, seq)`.
    ///
    /// Under the lock only refcount clones of the ring events after each
    /// position are taken (at most `max_events` in all); matching them
    /// against the patterns is the resuming connection's work, outside it.
    pub fn begin_resume(
        &self,
        id: u64,
        patterns: &[Pattern],
        since: &[(String, u64, u64)],
        max_events: usize,
    ) -> Result<ResumeStart, PatternsFull> {
        let mut st = self.lock();
        self.check_room(&st, patterns)?;
        if let Some(e) = st.conns.get_mut(&id) {
            e.hold.get_or_insert_with(VecDeque::new);
        }
        add_patterns(&mut st, id, patterns);
        let mut coverage = Vec::new();
        let mut ring_events = Vec::new();
        for (origin, epoch, seq) in since {
            let cov = st.ring.coverage(origin);
            // A seq beyond the newest this hub saw is "up to date" at the newest.
            let seq = match cov {
                Some(c) if c.epoch == *epoch => (*seq).min(c.last),
                _ => *seq,
            };
            coverage.push((origin.clone(), *epoch, seq, cov));
            if let Some(c) = cov {
                let (ep, after) = if c.epoch == *epoch {
                    (*epoch, seq)
                } else {
                    (c.epoch, 0)
                };
                let room = max_events.saturating_sub(ring_events.len());
                ring_events.extend(st.ring.since(origin, ep, after, room));
            }
        }
        Ok(ResumeStart {
            coverage,
            ring_events,
        })
    }

    /// Ends a resume: queues the held live events that are newer than
    /// `delivered` (per origin: epoch, last seq sent) and goes live.
    pub fn finish_resume(
        &self,
        id: u64,
        delivered: &std::collections::HashMap<Arc<str>, (u64, u64)>,
    ) {
        let mut st = self.lock();
        let Some(e) = st.conns.get_mut(&id) else {
            return;
        };
        let held = e.hold.take().unwrap_or_default();
        for ev in held {
            if let Some(&(ep, seq)) = delivered.get(&ev.origin) {
                if ep == ev.epoch && ev.seq <= seq {
                    continue;
                }
            }
            if !try_queue(&e.tx, &e.shared, ev.live(), &self.metrics) {
                break;
            }
            self.metrics.deliveries.inc();
        }
        if e.shared.is_ended() {
            remove_locked(&mut st, id);
        }
    }

    /// Records `event` in the ring and queues its frame to every connection
    /// with a matching pattern. Returns the number of deliveries.
    pub fn dispatch(&self, event: Arc<Event>) -> usize {
        let mut st = self.lock();
        if !st.ring.push(event.clone()) {
            return 0;
        }
        self.metrics.ring_entries.set(st.ring.len() as i64);
        st.generation += 1;
        let generation = st.generation;
        let State {
            conns,
            index,
            by_prefix,
            ..
        } = &mut *st;
        let mut delivered = 0;
        let mut dead = Vec::new();
        // Only the patterns whose leading literal words are a word prefix of
        // the topic are matched (not every pattern of the worker).
        let topic = &*event.topic;
        let candidates = fanfare_protocol::topic::word_prefixes(topic)
            .filter_map(|k| by_prefix.get(k))
            .flatten()
            .filter_map(|text| index.get(text));
        for ix in candidates {
            if !ix.pattern.matches(topic) {
                continue;
            }
            for id in &ix.conns {
                let Some(e) = conns.get_mut(id) else { continue };
                if e.mark == generation {
                    continue;
                }
                e.mark = generation;
                if let Some(hold) = &mut e.hold {
                    if hold.len() >= self.hold_capacity {
                        e.shared.end(Ending::HoldFull, &self.metrics);
                        dead.push(*id);
                    } else {
                        hold.push_back(event.clone());
                    }
                    continue;
                }
                if try_queue(&e.tx, &e.shared, event.live(), &self.metrics) {
                    delivered += 1;
                } else {
                    dead.push(*id);
                }
            }
        }
        for id in dead {
            remove_locked(&mut st, id);
        }
        self.metrics.deliveries.inc_by(delivered as u64);
        delivered
    }

    /// The feed carries more patterns after `seq` of `origin`/`epoch`
    /// ([`Ring::raise`]).
    pub fn raise_ring(&self, origin: &Arc<str>, epoch: u64, seq: u64) {
        self.lock().ring.raise(origin, epoch, seq);
    }

    /// The ring's run of `origin` covers nothing any more ([`Ring::forget`]).
    pub fn forget_ring(&self, origin: &str) {
        self.lock().ring.forget(origin);
    }

    /// Tells every connection that part of an origin is lost for good.
    pub fn gap(&self, notice: &GapNotice) {
        let mut st = self.lock();
        let origin: Arc<str> = notice.origin.as_str().into();
        st.ring.note_gap(&origin, notice.epoch, notice.last);
        let mut dead = Vec::new();
        for (id, e) in &st.conns {
            if e.patterns.is_empty() {
                continue;
            }
            let frame = protocol::gap(&e.patterns, notice);
            if try_queue(&e.tx, &e.shared, frame.into(), &self.metrics) {
                self.metrics.gaps_sent.inc();
            } else {
                dead.push(*id);
            }
        }
        for id in dead {
            remove_locked(&mut st, id);
        }
    }
}

/// `try_send` with the slow-consumer policy; false when the connection is gone.
fn try_queue(tx: &QueueTx, shared: &ConnShared, frame: Outgoing, m: &HubMetrics) -> bool {
    match tx.try_send(frame) {
        Ok(()) => true,
        Err(TrySendError::Full(_)) => {
            shared.end(Ending::QueueFull, m);
            false
        }
        Err(TrySendError::Closed(_)) => false,
    }
}
