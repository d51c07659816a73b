//! [`HubOptions`]: a builder with documented defaults.

use std::sync::Arc;
use std::time::Duration;

use super::auth::{AllowAll, Authorizer, OriginPolicy};

/// How a [`Hub`](super::Hub) behaves. Every setter documents its default.
#[derive(Clone)]
pub struct HubOptions {
    pub(crate) worker_id: String,
    pub(crate) feed_pattern: String,
    pub(crate) follow_interest: bool,
    pub(crate) queue_capacity: usize,
    pub(crate) max_frame: usize,
    pub(crate) ws_read_buffer: usize,
    pub(crate) ws_write_buffer: usize,
    pub(crate) hard_frame_limit: usize,
    pub(crate) publish_rate: f64,
    pub(crate) publish_burst: u32,
    pub(crate) subscribe_rate: f64,
    pub(crate) subscribe_burst: u32,
    pub(crate) error_rate: f64,
    pub(crate) error_burst: u32,
    pub(crate) keepalive_interval: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) close_timeout: Duration,
    pub(crate) publish_timeout: Duration,
    pub(crate) ring_events: usize,
    pub(crate) ring_bytes: usize,
    pub(crate) recovery_budget: usize,
    pub(crate) resume_bytes: usize,
    pub(crate) resume_scan: usize,
    pub(crate) max_resumes: usize,
    pub(crate) slow_cut: Duration,
    pub(crate) max_connections: usize,
    pub(crate) max_patterns: usize,
    pub(crate) max_distinct_patterns: usize,
    pub(crate) max_wildcard_led_patterns: usize,
    pub(crate) origins: OriginPolicy,
    pub(crate) authorizer: Arc<dyn Authorizer>,
    pub(crate) auth_in_first_frame: bool,
    pub(crate) auth_timeout: Duration,
    pub(crate) trusted_publishers: Vec<String>,
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("worker_id", &self.worker_id)
            .field("queue_capacity", &self.queue_capacity)
            .field("max_frame", &self.max_frame)
            .field("origins", &self.origins)
            .finish_non_exhaustive()
    }
}

impl HubOptions {
    /// Options for a hub whose worker is called `worker_id` (sent to browsers
    /// in `welcome`, used in connection ids and metrics).
    pub fn new(worker_id: impl Into<String>) -> Self {
        let worker_id = worker_id.into();
        Self {
            trusted_publishers: vec![worker_id.clone()],
            worker_id,
            feed_pattern: "#".to_owned(),
            follow_interest: true,
            queue_capacity: 1024,
            max_frame: 64 * 1024,
            ws_read_buffer: 512,
            ws_write_buffer: 64 * 1024,
            hard_frame_limit: 256 * 1024,
            publish_rate: 20.0,
            publish_burst: 40,
            subscribe_rate: 5.0,
            subscribe_burst: 20,
            error_rate: 1.0,
            error_burst: 20,
            keepalive_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            publish_timeout: Duration::from_secs(2),
            ring_events: 10_000,
            ring_bytes: 16 * 1024 * 1024,
            recovery_budget: 10_000,
            resume_bytes: 4 * 1024 * 1024,
            resume_scan: 50_000,
            max_resumes: 4,
            slow_cut: Duration::from_secs(2),
            max_connections: 100_000,
            max_patterns: 64,
            max_distinct_patterns: 10_000,
            max_wildcard_led_patterns: 256,
            origins: OriginPolicy::SameOrigin,
            authorizer: Arc::new(AllowAll),
            auth_in_first_frame: false,
            auth_timeout: Duration::from_secs(10),
        }
    }

    /// The pattern the hub subscribes to on the fabric (default `#`: all).
    /// Browsers only receive what this pattern lets through.
    pub fn feed_pattern(mut self, pattern: impl Into<String>) -> Self {
        self.feed_pattern = pattern.into();
        self
    }

    /// Whether the feed follows the browsers' interest (default on): it
    /// carries only what this worker's browsers subscribe to (the union of
    /// their patterns, refcounted), so a worker takes in only its share of
    /// many rooms. Applies with the feed pattern `#` over a
    /// [`Client`](crate::Client) of one broadcaster that does not relay
    /// other origins: with several broadcasters, or once a message of
    /// another origin (federation) shows up, the feed carries everything,
    /// as with this off. A `subscribe` of a pattern new to the worker is
    /// answered once the broadcaster applied it (a few ms; refused with
    /// `unavailable` after 10 s).
    pub fn follow_interest(mut self, on: bool) -> Self {
        self.follow_interest = on;
        self
    }

    /// Frames queued per connection before it is closed with 4008 (default 1024).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Largest text frame answered normally (default 64 KiB): a larger one
    /// gets `too_large`; one over `hard` (default 256 KiB) closes with 1009.
    pub fn max_frame(mut self, max: usize, hard: usize) -> Self {
        self.max_frame = max;
        self.hard_frame_limit = hard.max(max);
        self
    }

    /// Websocket buffers per connection (default 512 bytes read, 64 KiB
    /// write). The read buffer is allocated (and zeroed) for every
    /// connection for its whole life and is also the most one read takes
    /// from the socket: browsers send small frames, and a larger frame grows
    /// it to fit. `write` is the most bytes of frames one write call is
    /// handed: the writer gathers up to 64 queued frames and writes them in
    /// one vectored write of the shared frame bytes (nothing is copied, so
    /// this costs no memory per connection; a smaller value means more
    /// write calls when a queue is deep).
    pub fn ws_buffers(mut self, read: usize, write: usize) -> Self {
        self.ws_read_buffer = read.max(64);
        self.ws_write_buffer = write.max(1);
        self
    }

    /// Browser publishes per second and burst per connection (default 20/s, 40).
    pub fn publish_rate(mut self, per_second: f64, burst: u32) -> Self {
        self.publish_rate = per_second;
        self.publish_burst = burst;
        self
    }

    /// `subscribe` requests per second and burst per connection (default
    /// 5/s, 20); past it a `subscribe` gets `rate_limited` (and costs an
    /// error token). A `subscribe` with `since` is the costly one (a resume).
    pub fn subscribe_rate(mut self, per_second: f64, burst: u32) -> Self {
        self.subscribe_rate = per_second;
        self.subscribe_burst = burst;
        self
    }

    /// Refused frames tolerated per second and burst before the connection
    /// is closed with 1008 (default 1/s, 20).
    pub fn error_rate(mut self, per_second: f64, burst: u32) -> Self {
        self.error_rate = per_second;
        self.error_burst = burst;
        self
    }

    /// Websocket ping interval and the silence after which a connection is
    /// closed with 4002 (default 20 s and 60 s).
    pub fn keepalive(mut self, interval: Duration, timeout: Duration) -> Self {
        self.keepalive_interval = interval;
        self.idle_timeout = timeout;
        self
    }

    /// Time given to deliver a close frame (default 5 s).
    pub fn close_timeout(mut self, d: Duration) -> Self {
        self.close_timeout = d;
        self
    }

    /// Size of the hub's own ring for resumes (default 10 000 events, 16 MiB).
    pub fn ring(mut self, events: usize, bytes: usize) -> Self {
        self.ring_events = events.max(1);
        self.ring_bytes = bytes;
        self
    }

    /// Most events a resume may take from the broadcaster's history
    /// (default 10 000); beyond, the browser gets a `too_far_behind` gap.
    pub fn recovery_budget(mut self, n: usize) -> Self {
        self.recovery_budget = n;
        self
    }

    /// Bounds of one resume beyond [`recovery_budget`](Self::recovery_budget):
    /// bytes of event frames it may send (default 4 MiB) and ring events it
    /// may scan against its patterns (default 50 000). Past either, the rest
    /// is a `too_far_behind` gap. (A resume is streamed: what it holds at a
    /// time is one history chunk and a 256 KiB window of queued frames.)
    pub fn resume_limits(mut self, bytes: usize, scanned: usize) -> Self {
        self.resume_bytes = bytes;
        self.resume_scan = scanned;
        self
    }

    /// Resumes run at once per hub (default 4); further `subscribe …
    /// since` requests wait for a turn. Bounds resume memory per hub to
    /// about `max_resumes × (256 KiB window + one history chunk)`.
    pub fn max_resumes(mut self, n: usize) -> Self {
        self.max_resumes = n.max(1);
        self
    }

    /// How long a frame of a resume may wait for room in a full connection
    /// queue before the connection is closed as a slow consumer (4008)
    /// (default 2 s). A slow consumer's close frame then waits at most 1 s.
    pub fn slow_cut(mut self, d: Duration) -> Self {
        self.slow_cut = d;
        self
    }

    /// Most open websockets; more are refused with HTTP 503 (default 100 000).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Patterns per connection (default 64; past it `forbidden`) and
    /// distinct patterns per hub, all connections together (default 10 000;
    /// past it a `subscribe` adding a new one gets `rate_limited`).
    pub fn max_patterns(mut self, per_connection: usize, distinct: usize) -> Self {
        self.max_patterns = per_connection;
        self.max_distinct_patterns = distinct;
        self
    }

    /// Distinct patterns per hub that start with a wildcard (`*.x`, `#.y`,
    /// `#`; default 256). The dispatch index finds a pattern by its leading
    /// literal words, so these are matched against every event: their cap
    /// is much smaller than the distinct-pattern cap. Past it a `subscribe`
    /// adding a new one gets `rate_limited`.
    pub fn max_wildcard_led_patterns(mut self, n: usize) -> Self {
        self.max_wildcard_led_patterns = n;
        self
    }

    /// Allowed page origins, exact (`https://app.example.com`). Default:
    /// same origin only ([`OriginPolicy::SameOrigin`]: the `Origin` must
    /// name the `Host` the request was sent to).
    pub fn allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.origins = OriginPolicy::AllowList(origins);
        self
    }

    /// Accept any page origin ([`OriginPolicy::Any`]). The `fanfare_token`
    /// cookie is then ignored (a cross-site page would carry it): tokens
    /// come only from the query, a bearer header or the first frame.
    pub fn any_origin(mut self) -> Self {
        self.origins = OriginPolicy::Any;
        self
    }

    /// Publisher ids the hub vouches for (default: its own worker id, which
    /// stamps the browser publishes of this worker). A message whose
    /// publisher is one of them shows it as `from`; any other publisher id
    /// is only a claim and is sent as `from_unverified`.
    pub fn trusted_publishers(mut self, ids: Vec<String>) -> Self {
        self.trusted_publishers = ids;
        self
    }

    /// Accept upgrades that carry no token and let the browser send it in
    /// its first frame, `{"op":"auth","token":"…"}` (default false: a request
    /// the authorizer refuses gets HTTP 401). Until then every other request
    /// gets `forbidden`, and a connection not authenticated within the auth
    /// timeout (default 10 s, [`auth_timeout`](Self::auth_timeout)) is
    /// closed with 4003.
    pub fn auth_in_first_frame(mut self, on: bool) -> Self {
        self.auth_in_first_frame = on;
        self
    }

    /// How long a connection opened without a token may take to send its
    /// `auth` frame before it is closed with 4003 (default 10 s).
    pub fn auth_timeout(mut self, d: Duration) -> Self {
        self.auth_timeout = d;
        self
    }

    /// The authorization hook (default [`AllowAll`]).
    pub fn authorizer(mut self, a: impl Authorizer) -> Self {
        self.authorizer = Arc::new(a);
        self
    }
}
