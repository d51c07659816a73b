//! Fanfare's wire types, shared by the broadcaster, the client and the hub.
//!
//! Everything that crosses a ZeroMQ socket between Fanfare parts is defined
//! here and documented byte by byte in `PROTOCOL.md` at the repository root:
//!
//! * [`topic`]: what a valid topic is (dot-separated words, bounded length);
//! * [`pattern`]: subscription patterns with AMQP wildcards (`*`, `#`);
//! * [`stamp`]: the binary header every broadcast message carries;
//! * [`meta`]: the optional publisher metadata frame on ingress;
//! * [`replay`]: requests and replies of the history (replay) endpoint;
//! * [`heartbeat`]: the periodic liveness and progress message;
//! * [`ack`]: what a broadcaster tells a publisher it stamped (confirmed publish);
//! * [`position`]: a subscriber's place in the fabric (per origin epoch and seq).
//!
//! ```
//! use fanfare_protocol::pattern::Pattern;
//! let p = Pattern::parse("metrics.*.#").unwrap();
//! assert!(p.matches("metrics.cpu.worker-3"));
//! assert_eq!(p.literal_prefix(), "metrics.");
//! ```

pub mod ack;
#[doc(hidden)]
pub mod fuzzing;
pub mod heartbeat;
pub mod meta;
pub mod pattern;
pub mod position;
pub mod replay;
pub mod session;
pub mod stamp;
pub mod topic;

/// Every topic starting with this prefix is reserved for Fanfare itself;
/// publishers may not use it.
pub const RESERVED_PREFIX: &str = "_fanfare.";

/// Heartbeats are published on `_fanfare.hb.<origin>`.
pub const HEARTBEAT_PREFIX: &str = "_fanfare.hb.";

/// A subscriber that SUBSCRIBEs this exact prefix asks for *sessions*: the
/// broadcaster sends that connection alone a session marker (topic
/// `_fanfare.sess`, stamp flag [`stamp::FLAG_SESSION`], payload a
/// [`session::Marker`]: what the connection missed since its previous
/// marker, and how many subscription commands were applied for it) at
/// once, again after each later subscription change, and before the first
/// message after any message it could not queue to it. Between two markers the connection's stream is complete for
/// its prefixes: a seq jump is filtering, never loss (PROTOCOL.md, "Sessions").
pub const SESSION_TOPIC: &str = "_fanfare.sess";
