//! Which broadcaster's replay endpoint answers a request, when the client
//! has several.
//!
//! [`ReplayHandle`] holds one replay task per broadcaster (a *source*) and,
//! per origin, the source whose SUB delivered that origin first. A request
//! for an origin goes to the live sources (heard lately) before the silent
//! ones, and among each to that source first; the first `ok` answer wins.
//! Any broadcaster that stored an origin's messages (its own, or a
//! federation peer's) can answer for it. When none answers `ok`, the first
//! answer received (an `unknown_epoch`, `unknown_origin`, `busy`) or else
//! the first error is returned, so a single broadcaster behaves as before.
//!
//! Bounds: at most [`MAX_ORIGINS`] origins remembered (further ones use the
//! list order); the map is behind a `std` mutex held only to read or write
//! one entry, never across an await.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fanfare_protocol::replay::{ReplayRequest, Status};

use crate::error::ReplayError;
use crate::replay_task::{RawReply, SourceHandle};

/// Most origins whose preferred source is remembered.
pub(crate) const MAX_ORIGINS: usize = 4096;

#[derive(Debug)]
struct Source {
    handle: SourceHandle,
    /// Set by the subscriber task while this broadcaster's SUB is heard.
    alive: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    sources: Vec<Source>,
    preferred: Mutex<HashMap<Arc<str>, usize>>,
}

/// Cloneable handle to every replay source.
#[derive(Debug, Clone)]
pub(crate) struct ReplayHandle {
    shared: Arc<Shared>,
}

impl ReplayHandle {
    /// Sources in broadcaster order (at least one).
    pub(crate) fn new(sources: Vec<SourceHandle>) -> Self {
        let sources = sources
            .into_iter()
            .map(|handle| Source {
                handle,
                alive: AtomicBool::new(true),
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                sources,
                preferred: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Broadcaster `i`'s SUB is heard (or not).
    pub(crate) fn set_alive(&self, i: usize, alive: bool) {
        if let Some(s) = self.shared.sources.get(i) {
            s.alive.store(alive, Ordering::Relaxed);
        }
    }

    /// Broadcaster `i` delivered `origin`; remembered if it is the first.
    pub(crate) fn saw(&self, origin: &Arc<str>, i: usize) {
        if self.shared.sources.len() < 2 {
            return;
        }
        let Ok(mut map) = self.shared.preferred.lock() else {
            return;
        };
        if map.len() < MAX_ORIGINS || map.contains_key(origin) {
            map.entry(origin.clone()).or_insert(i);
        }
    }

    /// The order in which sources are asked for `origin`.
    fn order(&self, origin: &str) -> Vec<usize> {
        let n = self.shared.sources.len();
        let first = self
            .shared
            .preferred
            .lock()
            .ok()
            .and_then(|m| m.get(origin).copied())
            .unwrap_or(0);
        let mut order: Vec<usize> = (0..n).collect();
        // Live before silent; among each, the first deliverer first.
        order.sort_by_key(|&i| {
            let alive = self.shared.sources[i].alive.load(Ordering::Relaxed);
            (!alive, i != first)
        });
        order
    }

    /// Sends a request (its `req_id` is replaced) to the sources in turn
    /// (see the module docs) and returns the first `ok` answer.
    pub(crate) async fn request(&self, request: ReplayRequest) -> Result<RawReply, ReplayError> {
        let sources = &self.shared.sources;
        if sources.len() == 1 || request.origin.is_empty() {
            // An empty origin means each broadcaster's own: only the first.
            return sources[0].handle.request(request).await;
        }
        let mut fallback: Option<Result<RawReply, ReplayError>> = None;
        for i in self.order(&request.origin) {
            let r = sources[i].handle.request(request.clone()).await;
            match &r {
                Ok(raw) if raw.header.status == Status::Ok => return r,
                Ok(_) if !matches!(fallback, Some(Ok(_))) => fallback = Some(r),
                Ok(_) => {}
                Err(_) if fallback.is_none() => fallback = Some(r),
                Err(_) => {}
            }
        }
        fallback.unwrap_or(Err(ReplayError::Closed))
    }
}
