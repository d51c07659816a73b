//! The subscriber: a handle ([`SubscriberHandle`], and one [`Subscription`]
//! per pattern) and one task that owns the SUB socket.
//!
//! Like the publisher, the subscriber is a handle over a bounded command
//! queue and a task that owns the socket; unlike it, the task is large
//! enough to be a folder. Each file owns one concern:
//!
//! * `handle` — what `Client` and every `Subscription` hold: the command
//!   queue (`Command`) and the "broadcaster heard" flag.
//! * `queue` — one subscription's bounded queue: the task's end (`Queue`)
//!   and the `Parts` a new [`Subscription`] is made of.
//! * `subscription` — the public [`Subscription`] stream over those parts.
//! * `task/` — `State`, the `select!` loop, commands and the tick
//!   (`mod.rs`); `sub_socket.rs`: connecting the SUB socket (in a connect
//!   task), reconnecting with backoff, keeping its prefixes in step with the
//!   registry; `live.rs`: what the SUB socket brings, fed to the gap tracker
//!   (`crate::gaps`), and its actions carried out; `repair_rounds.rs`:
//!   fetching what a gap lacks from the replay task, round by round.
//! * `zmtp_sub/` — the data SUB itself: one ZMTP 3 connection to one
//!   broadcaster's PUB (handshake, subscriptions, whole messages cut out of
//!   a 64 KiB read buffer as zero-copy slices, every frame header checked
//!   against a limit); `frames.rs` holds the bytes, without I/O.
//! * `publisher_seqs` — per publisher session, the window of publisher seqs
//!   already delivered: re-sent copies (a new stamp) are dropped there.
//! * `catch_up/` — `subscribe_from`: `State`'s catch-up steps, the ranges to
//!   fetch (`plan.rs`) and the catch-up task (`task.rs`).
//! * `registry/` — the subscriptions: patterns, prefixes, queues
//!   (`mod.rs`), delivery and the slow-consumer rule (`delivery.rs`), a
//!   catching-up subscription's held deliveries and going live
//!   (`catch_up.rs`). Touches no socket.
//!
//! Dependencies between these siblings run one way (no import cycles):
//! `queue`, `publisher_seqs` and `zmtp_sub` are leaves; `handle` knows `queue`; `subscription` knows `handle`
//! and `queue`; `registry` knows `queue`; `task` knows all of those; and
//! `catch_up` (which adds `State` methods) knows `task`, `registry`,
//! `handle`, `queue` and `publisher_seqs`. Only `catch_up` and `mod.rs` know `task`; nothing
//! knows `catch_up`.

mod catch_up;
pub(crate) mod handle;
mod publisher_seqs;
mod queue;
mod registry;
mod subscription;
mod task;
pub(crate) mod zmtp_sub;

pub(crate) use handle::SubscriberHandle;
pub use subscription::Subscription;
pub(crate) use task::{spawn, SubscriberTask};
