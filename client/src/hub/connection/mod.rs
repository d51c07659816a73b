//! One browser connection: a reader that answers requests and a writer that
//! drains the connection's bounded queue, generic over `Sink`/`Stream` so the
//! same code runs on an axum `WebSocket` and on channels in tests.
//!
//! Either side ending cancels the other; the writer (`writer.rs`) then sends
//! the close frame. Why a connection ends is an [`Ending`]; `close.rs` turns
//! it into the [`CloseCause`] (and close code) in one function.

mod both;
mod close;
mod queue;
mod subscribe;
mod writer;

pub use close::{CloseCause, ConnShared, Ending, SocketError};
#[cfg(test)]
pub use queue::queue;
pub use queue::{QueueRx, QueueTx, TrySendError};
pub use writer::Outgoing;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::ws::{Message, Utf8Bytes};
use bytes::Bytes;
use fanfare_protocol::pattern::Pattern;
use fanfare_protocol::topic::{self, TopicError};
use futures::{Sink, Stream, StreamExt};
use serde_json::value::RawValue;

use super::auth::Identity;
use super::limits::TokenBucket;
use super::protocol::{self, ErrorCode, Refusal, Request};
use super::HubInner;

/// How long a connection the hub closed keeps reading after its close
/// frame (so the browser reads the code instead of a reset).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// What a connection may do when it opens.
pub enum Access {
    /// Authorized at the upgrade.
    Granted(Identity),
    /// Must send `{"op":"auth","token":…}` first; the request headers are
    /// kept for the authorizer.
    Pending(axum::http::HeaderMap),
}

/// The headers `authenticate` shows for a connection authorized at the
/// upgrade (it keeps none, as before).
static EMPTY_HEADERS: std::sync::LazyLock<axum::http::HeaderMap> =
    std::sync::LazyLock::new(axum::http::HeaderMap::new);

struct Conn {
    hub: Arc<HubInner>,
    id: u64,
    /// The patterns this connection holds in the feed's interest.
    held: Vec<String>,
    identity: Option<Identity>,
    /// The upgrade's headers of a connection that authenticates in its
    /// first frame (boxed: not inline in every connection's task).
    headers: Option<Box<axum::http::HeaderMap>>,
    shared: Arc<ConnShared>,
    tx: QueueTx,
    publishes: TokenBucket,
    subscribes: TokenBucket,
    errors: TokenBucket,
}

/// Serves one websocket until it closes. Registers the connection, sends
/// `welcome`, runs reader and writer, and unregisters.
pub async fn serve<Si, St, E>(hub: Arc<HubInner>, access: Access, sink: Si, stream: St)
where
    Si: Sink<Message> + Unpin,
    St: Stream<Item = Result<Message, E>> + Unpin,
    E: Into<SocketError>,
{
    let o = &hub.options;
    let id = hub.next_conn.fetch_add(1, Relaxed) + 1;
    let (tx, rx) = queue::queue(o.queue_capacity);
    let shared = Arc::new(ConnShared::default());
    // The queue is empty: the welcome always fits.
    let welcome = protocol::welcome(&o.worker_id, &conn_name(&o.worker_id, id), o.max_frame);
    let _ = tx.try_send(welcome.into());
    hub.registry.add(id, tx.clone(), shared.clone());
    hub.metrics.connections_total.inc();
    hub.metrics.connections_open.inc();
    // Hub shutdown closes this connection too.
    let on_shutdown = {
        let (shared, hub) = (shared.clone(), hub.clone());
        async move {
            hub.shutdown.cancelled().await;
            shared.end(Ending::Shutdown, &hub.metrics);
        }
    };
    let (identity, headers) = match access {
        Access::Granted(i) => (Some(i), None),
        Access::Pending(h) => (None, Some(Box::new(h))),
    };
    let mut conn = Conn {
        headers,
        publishes: TokenBucket::new(o.publish_rate, o.publish_burst),
        subscribes: TokenBucket::new(o.subscribe_rate, o.subscribe_burst),
        errors: TokenBucket::new(o.error_rate, o.error_burst),
        hub: hub.clone(),
        id,
        held: Vec::new(),
        identity,
        shared: shared.clone(),
        tx,
    };
    let mut stream = stream;
    // Pinned in place (not moved into another future: that would store
    // each of them twice in this task's state).
    let closed = {
        let writer = std::pin::pin!(writer::write_loop(sink, rx, &hub, &shared));
        let reader = std::pin::pin!(async {
            tokio::select! {
                _ = conn.read_loop(&mut stream) => {}
                _ = on_shutdown => {}
            }
            shared.stop();
        });
        both::run_both(reader, writer).await
    };
    // After our close frame, read what the browser still sends (up to its
    // close frame, within the linger): closing a socket with unread input
    // makes the kernel send a reset, and the browser would see 1006 instead
    // of our close code. (A close frame that could not be written: no linger.)
    if closed && shared.cause().is_some() {
        let _ = tokio::time::timeout(LINGER, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    hub.registry.remove(id);
    hub.interest.release(conn.held.iter().map(String::as_str));
    hub.metrics.connections_open.dec();
    tracing::debug!(conn = %conn_name(&o.worker_id, id), cause = ?shared.cause(), "websocket closed");
}

/// A connection's name in `welcome` and logs: `<worker>-<id>` (made when
/// needed, not kept in every connection's task).
fn conn_name(worker: &str, id: u64) -> String {
    format!("{worker}-{id}")
}

impl Conn {
    async fn read_loop<St, E>(&mut self, stream: &mut St)
    where
        St: Stream<Item = Result<Message, E>> + Unpin,
        E: Into<SocketError>,
    {
        let idle = self.hub.options.idle_timeout;
        // Opened without a token: `auth` must come before this deadline.
        let auth_by = tokio::time::Instant::now() + self.hub.options.auth_timeout;
        loop {
            let wait = match self.identity {
                Some(_) => idle,
                None => auth_by.saturating_duration_since(tokio::time::Instant::now()),
            };
            let next = tokio::select! {
                biased;
                _ = self.shared.cancelled() => return,
                r = tokio::time::timeout(wait, stream.next()) => r,
            };
            let msg = match next {
                Err(_) if self.identity.is_none() => {
                    self.hub.metrics.refused_auth.inc();
                    let refusal = Refusal::new(ErrorCode::Forbidden, "authentication timed out");
                    self.queue(protocol::error(&refusal, None));
                    return self.end(Ending::Unauthorized);
                }
                Err(_) => return self.end(Ending::Idle),
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return self.end(Ending::PeerClosed),
                Ok(Some(Err(e))) => {
                    let e: SocketError = e.into();
                    tracing::debug!(error = %e, "websocket read error");
                    return self.end(Ending::Read(e));
                }
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                // Boxed: a request's state (≈ 340 bytes) lives only while
                // it is handled, not inline in every idle connection's task.
                Message::Text(t) => Box::pin(self.handle_text(&t)).await,
                Message::Binary(_) => self.refuse(
                    Refusal::new(
                        ErrorCode::BadJson,
                        "binary frames are not part of the protocol",
                    ),
                    None,
                ),
                // The writer answers; a pong is liveness only.
                Message::Ping(payload) => self.queue_outgoing(Outgoing::pong(payload)),
                _ => {}
            }
            if self.shared.is_ended() {
                return;
            }
        }
    }

    fn end(&self, ending: Ending) {
        self.shared.end(ending, &self.hub.metrics);
    }

    fn queue(&self, frame: Utf8Bytes) {
        self.queue_outgoing(frame.into());
    }

    fn queue_outgoing(&self, out: Outgoing) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(out) {
            self.end(Ending::QueueFull);
        }
    }

    fn refuse(&mut self, refusal: Refusal, reference: Option<&RawValue>) {
        self.hub.metrics.error(refusal.code);
        self.queue(protocol::error(&refusal, reference));
        if !self.errors.try_take() {
            self.end(Ending::TooManyErrors);
        }
    }

    async fn handle_text(&mut self, text: &str) {
        if text.len() > self.hub.options.max_frame {
            let msg = format!(
                "frame of {} bytes exceeds {}",
                text.len(),
                self.hub.options.max_frame
            );
            return self.refuse(Refusal::new(ErrorCode::TooLarge, msg), None);
        }
        let (reference, request) = protocol::parse(text);
        let reference = reference.as_deref();
        let request = match request {
            Ok(Request::Auth { token }) => return self.authenticate(&token, reference),
            Ok(_) if self.identity.is_none() => Err(Refusal::new(
                ErrorCode::Forbidden,
                "authenticate first: {\"op\":\"auth\",\"token\":…}",
            )),
            other => other,
        };
        let result = match request {
            Ok(Request::Ping) => {
                self.queue(protocol::pong(reference));
                Ok(())
            }
            Ok(Request::Subscribe { topics, since }) => {
                self.subscribe(topics, since, reference).await
            }
            Ok(Request::Unsubscribe { topics }) => {
                self.hub.registry.unsubscribe(self.id, &topics);
                self.release_interest(&topics);
                self.queue(protocol::unsubscribed(&topics, reference));
                Ok(())
            }
            // Boxed, like a resume: its state lives only while it runs.
            Ok(Request::Publish { topic, data }) => Box::pin(self.publish(topic, data)).await,
            Ok(Request::Auth { .. }) => Ok(()),
            Err(r) => Err(r),
        };
        if let Err(refusal) = result {
            self.refuse(refusal, reference);
        }
    }

    fn authenticate(&mut self, token: &str, reference: Option<&RawValue>) {
        let request = super::AuthRequest {
            headers: self.headers.as_deref().unwrap_or(&EMPTY_HEADERS),
            token: Some(token),
        };
        match self.hub.options.authorizer.authorize(&request) {
            Ok(identity) => {
                self.queue(protocol::authorized(&identity.name, reference));
                self.identity = Some(identity);
            }
            Err(denied) => {
                self.hub.metrics.refused_auth.inc();
                self.hub.metrics.error(ErrorCode::Forbidden);
                self.queue(protocol::error(
                    &Refusal::new(ErrorCode::Forbidden, denied.to_string()),
                    reference,
                ));
                self.end(Ending::Unauthorized);
            }
        }
    }

    fn check_patterns(&self, topics: &[String]) -> Result<Vec<Pattern>, Refusal> {
        let o = &self.hub.options;
        let have = self.hub.registry.patterns(self.id).len();
        if have + topics.len() > o.max_patterns {
            let msg = format!("at most {} patterns per connection", o.max_patterns);
            return Err(Refusal::new(ErrorCode::Forbidden, msg));
        }
        let mut out = Vec::with_capacity(topics.len());
        for t in topics {
            let p = Pattern::parse(t)
                .map_err(|e| Refusal::new(ErrorCode::BadTopic, format!("{t:?}: {e}")))?;
            let allowed = self.identity.as_ref().is_some_and(|i| i.may_subscribe(&p));
            if t.starts_with(fanfare_protocol::RESERVED_PREFIX) || !allowed {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    format!("{t:?}: not allowed"),
                ));
            }
            out.push(p);
        }
        Ok(out)
    }

    async fn publish(&mut self, topic: String, data: Box<RawValue>) -> Result<(), Refusal> {
        match topic::validate(topic.as_bytes()) {
            Ok(_) => {}
            Err(TopicError::Reserved) => {
                return Err(Refusal::new(
                    ErrorCode::Forbidden,
                    "topics starting _fanfare. are reserved",
                ))
            }
            Err(e) => return Err(Refusal::new(ErrorCode::BadTopic, format!("{topic:?}: {e}"))),
        }
        if !self
            .identity
            .as_ref()
            .is_some_and(|i| i.may_publish(&topic))
        {
            return Err(Refusal::new(
                ErrorCode::Forbidden,
                format!("{topic:?}: not allowed"),
            ));
        }
        if !self.publishes.try_take() {
            let wait = self.publishes.wait_time().as_millis();
            return Err(Refusal::new(
                ErrorCode::RateLimited,
                format!("retry in {wait} ms"),
            ));
        }
        let payload = Bytes::copy_from_slice(data.get().as_bytes());
        let hub = self.hub.clone();
        let sent = tokio::time::timeout(
            hub.options.publish_timeout,
            hub.fabric.publish(topic, payload),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                hub.metrics.publishes.inc();
                Ok(())
            }
            Ok(Err(e)) => Err(Refusal::new(ErrorCode::Unavailable, e.to_string())),
            Err(_) => Err(Refusal::new(ErrorCode::Unavailable, "publish timed out")),
        }
    }
}

#[cfg(test)]
mod tests {
    /// A queue slot's size is per-connection memory: the queue and the
    /// writer's batch each keep the slots they last used (up to 16).
    #[test]
    fn a_queue_slot_is_48_bytes() {
        assert!(std::mem::size_of::<super::Outgoing>() <= 48);
    }
}
