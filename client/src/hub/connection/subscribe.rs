//! `subscribe`, with or without `since`: the checks, the rate limit, and
//! the bounded resume streamed into the connection's queue (`subscribed`,
//! the replay part, `resumed`).

use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::position::Position;
use serde_json::value::RawValue;

use super::super::feed::APPLY_TIMEOUT;
use super::super::protocol::{self, ErrorCode, Refusal};
use super::super::recovery;
use super::super::registry::PatternsFull;
use super::{Conn, Ending};

/// The refusal of a pattern past one of the hub's pattern caps.
fn patterns_full(full: PatternsFull) -> Refusal {
    let msg = match full {
        PatternsFull::Distinct(n) => format!(
            "this worker already serves its maximum of {n} distinct patterns; \
             use a pattern others use, or retry later"
        ),
        PatternsFull::WildcardLed(n) => format!(
            "this worker already serves its maximum of {n} distinct patterns that \
             start with a wildcard (`*` or `#`); start the pattern with a literal \
             word, use a pattern others use, or retry later"
        ),
    };
    Refusal::new(ErrorCode::RateLimited, msg)
}

impl Conn {
    pub(super) async fn subscribe(
        &mut self,
        topics: Vec<String>,
        since: Option<String>,
        reference: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        if !self.subscribes.try_take() {
            let wait = self.subscribes.wait_time().as_millis();
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                format!("too many subscribe requests; retry in {wait} ms"),
            ));
        }
        let patterns = self.check_patterns(&topics)?;
        self.hub
            .registry
            .room_for(&patterns)
            .map_err(patterns_full)?;
        // Every check before the interest is held: a refused request must
        // leave nothing held (nor a feed change behind it).
        let since = match since.as_deref() {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<Position>()
                    .ok()
                    .filter(|p| p.iter().count() <= 64)
                    .ok_or_else(|| {
                        Refusal::new(ErrorCode::BadSince, "expected origin:epoch:seq[,…]")
                    })?,
            ),
        };
        self.hold_interest(&patterns).await?;
        let Some(since) = since else {
            let reply = protocol::subscribed(&topics, true, 0, reference);
            let added = self.hub.registry.subscribe(self.id, &patterns, reply);
            return added.map_err(|full| {
                self.release_interest(&topics);
                patterns_full(full)
            });
        };
        // Boxed: the resume's state (≈ 2 KiB) is allocated only while a
        // resume runs, not inline in every connection's task.
        let resumed = Box::pin(self.resume(patterns, topics.clone(), since, reference)).await;
        if resumed.is_err() {
            self.release_interest(&topics);
        }
        resumed
    }

    /// Holds the patterns this connection does not hold yet in the feed's
    /// interest and waits (bounded) until the feed carries them, so that
    /// `subscribed` comes only once every event published after it will.
    async fn hold_interest(&mut self, patterns: &[Pattern]) -> Result<(), Refusal> {
        let mut new: Vec<Pattern> = patterns
            .iter()
            .filter(|p| !self.held.iter().any(|h| h == p.as_str()))
            .cloned()
            .collect();
        new.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        new.dedup();
        let need = self.hub.interest.hold(&new);
        self.held.extend(new.iter().map(|p| p.as_str().to_owned()));
        if need == 0 {
            return Ok(());
        }
        let carried = tokio::select! {
            _ = self.shared.cancelled() => true, // closing: nothing will be sent
            c = self.hub.interest.wait(need, APPLY_TIMEOUT) => c,
        };
        if carried {
            return Ok(());
        }
        let texts: Vec<String> = new.iter().map(|p| p.as_str().to_owned()).collect();
        self.release_interest(&texts);
        Err(Refusal::new(
            ErrorCode::Unavailable,
            "the fabric did not take the subscription in time; retry",
        ))
    }

    /// Releases, of `topics`, those this connection holds in the interest
    /// and no longer subscribes to.
    pub(super) fn release_interest(&mut self, topics: &[String]) {
        let kept = self.hub.registry.patterns(self.id);
        let mut gone = Vec::new();
        self.held.retain(|h| {
            let drop = topics.contains(h) && !kept.contains(h);
            if drop {
                gone.push(h.clone());
            }
            !drop
        });
        self.hub.interest.release(gone.iter().map(String::as_str));
    }

    /// A `subscribe` with `since`: the bounded resume.
    async fn resume(
        &mut self,
        patterns: Vec<Pattern>,
        topics: Vec<String>,
        since: Position,
        reference: Option<&RawValue>,
    ) -> Result<(), Refusal> {
        let marks: Vec<(String, u64, u64)> =
            since.iter().map(|(o, e, s)| (o.to_owned(), e, s)).collect();
        let hub = self.hub.clone();
        let o = &hub.options;
        // At most `max_resumes` resumes run at once per hub; the others wait
        // here (cancellable), holding nothing.
        let _permit = tokio::select! {
            _ = self.shared.cancelled() => return Ok(()),
            p = hub.resumes.acquire() => match p {
                Ok(p) => p,
                Err(_) => return Ok(()),
            },
        };
        let budget = recovery::Budget {
            events: o.recovery_budget,
            bytes: o.resume_bytes,
            scanned: o.resume_scan,
        };
        let start = hub
            .registry
            .begin_resume(self.id, &patterns, &marks, budget.scanned)
            .map_err(patterns_full)?;
        // `subscribed` first, then the replay part streamed through the
        // connection's resume window, then `resumed`; held live events follow.
        let out = recovery::Out::new(self.tx.clone(), o.slow_cut);
        let request = recovery::Request {
            patterns: &patterns,
            topics: &topics,
            trusted: &o.trusted_publishers,
            budget,
        };
        let streamed = async {
            out.send(protocol::resuming(&topics, reference)).await?;
            let rec = recovery::recover(&*hub.fabric, start, request, &out, &hub.metrics).await;
            let counter = if rec.recovered {
                &hub.metrics.recoveries_exact
            } else {
                &hub.metrics.recoveries_partial
            };
            counter.inc();
            hub.metrics.deliveries.inc_by(rec.events);
            if let Some(stopped) = rec.stopped {
                return Err(stopped);
            }
            let end = protocol::resumed(&topics, rec.recovered, rec.events, reference);
            out.send(end).await?;
            // Live again only once the replay part is written: the held
            // events then find the queue empty of it.
            out.drained().await?;
            Ok(rec.delivered)
        };
        let delivered = tokio::select! {
            _ = self.shared.cancelled() => return Ok(()),
            r = streamed => r,
        };
        match delivered {
            Ok(delivered) => hub.registry.finish_resume(self.id, &delivered),
            Err(recovery::Stopped::Slow) => self.end(Ending::QueueFull),
            Err(recovery::Stopped::Gone) => {}
        }
        Ok(())
    }
}
