//! Interest-only forwarding: what a broadcaster's links subscribe to.
//!
//! Each broadcaster announces only its *local* interest — the prefixes of
//! its subscribers that are not links — tagged (its origin id, version).
//! A new version goes out whenever the local interest changes and every
//! [`REFRESH`] (the lease); announcements travel upstream over the link
//! connections as ZMTP subscribe messages under [`INTEREST_PREFIX`] (the
//! PUB side intercepts them before the prefix trie), and every broadcaster
//! floods a *newer* version it hears to its own peers, once per link.
//! An announcer not heard in a newer version for [`EXPIRY`] is dropped.
//! A link's data subscription is the union of the local interest and every
//! live announcement, plus the heartbeat prefix (heartbeats always flow).
//! Since nobody re-announces interest as its own, interest cannot keep
//! itself alive around a ring: retraction is a newer version, and expiry
//! ends dead announcers.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes};
use tokio::sync::watch;

/// Marker of interest announcements among subscriptions.
pub(crate) const INTEREST_PREFIX: &[u8] = b"_fanfare.int.";
/// An announcer issues a new version at least this often.
pub(crate) const REFRESH: Duration = Duration::from_secs(2);
/// An announcer not heard in a newer version for this long is dropped.
pub(crate) const EXPIRY: Duration = Duration::from_secs(6);
/// Most announcers remembered.
const MAX_ANNOUNCERS: usize = 1024;
/// Most prefixes in a link's data subscription; past it, everything.
const MAX_DATA_PREFIXES: usize = 512;
/// Longest prefix announced (a longer one is cut: a shorter prefix only
/// matches more).
const MAX_ANNOUNCED_PREFIX: usize = 200;
/// Largest announcement body: the peer reads subscription frames of at
/// most 1 KiB, marker and `\x01` included.
const MAX_BODY: usize = 1024 - 1 - INTEREST_PREFIX.len();

/// One announcement: `announcer`'s local interest at `version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// Origin id of the announcing broadcaster.
    pub(crate) announcer: String,
    /// Increases with every announcement of that announcer.
    pub(crate) version: u64,
    /// Its local prefixes (empty: nobody there subscribes).
    pub(crate) prefixes: Vec<Bytes>,
}

impl Announcement {
    /// The subscription message body after `\x01`: marker, `u8 N`, announcer,
    /// `u64` version, `u16` count, count × (`u8 len`, prefix). Prefixes that
    /// do not fit are replaced by the empty prefix (everything).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.put_slice(INTEREST_PREFIX);
        let a = &self.announcer.as_bytes()[..self.announcer.len().min(64)];
        out.put_u8(a.len() as u8);
        out.put_slice(a);
        out.put_u64(self.version);
        let room = MAX_BODY - 1 - a.len() - 8 - 2;
        let cut = |p: &Bytes| p.slice(..p.len().min(MAX_ANNOUNCED_PREFIX));
        let need: usize = self.prefixes.iter().map(|p| 1 + cut(p).len()).sum();
        if need <= room {
            out.put_u16(self.prefixes.len() as u16);
            for p in &self.prefixes {
                let p = cut(p);
                out.put_u8(p.len() as u8);
                out.put_slice(&p);
            }
        } else {
            out.put_u16(1);
            out.put_u8(0);
        }
        out
    }

    /// Reads a body (after the marker); `None` if malformed.
    pub(crate) fn decode(b: &[u8]) -> Option<Self> {
        let (&n, rest) = b.split_first()?;
        let (a, rest) = rest.split_at_checked(usize::from(n))?;
        let announcer = std::str::from_utf8(a).ok()?;
        fanfare_protocol::stamp::validate_origin(announcer).ok()?;
        let (v, rest) = rest.split_at_checked(8)?;
        let version = u64::from_be_bytes(v.try_into().ok()?);
        let (c, mut rest) = rest.split_at_checked(2)?;
        let count = u16::from_be_bytes([c[0], c[1]]);
        let mut prefixes = Vec::new();
        for _ in 0..count {
            let (&len, r) = rest.split_first()?;
            let (p, r) = r.split_at_checked(usize::from(len))?;
            prefixes.push(Bytes::copy_from_slice(p));
            rest = r;
        }
        rest.is_empty().then(|| Self {
            announcer: announcer.to_owned(),
            version,
            prefixes,
        })
    }
}

/// What every link applies: its data subscription and the announcements
/// to send upstream (each link sends each version once).
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Prefixes to subscribe to at the peer.
    pub(crate) data: Arc<BTreeSet<Bytes>>,
    /// Encoded announcements: (announcer, version, subscription body).
    pub(crate) announcements: Arc<Vec<(String, u64, Bytes)>>,
}

#[derive(Debug)]
struct Heard {
    version: u64,
    prefixes: Vec<Bytes>,
    fresh_at: Instant,
    encoded: Bytes,
}

/// The interest table of one broadcaster (owned by the relay).
pub(crate) struct Interest {
    own: String,
    version: u64,
    local: Vec<Bytes>,
    announced_at: Option<Instant>,
    heard: HashMap<String, Heard>,
    plan: watch::Sender<Plan>,
}

impl Interest {
    /// A table for origin `own`; links watch the returned receiver.
    pub(crate) fn new(own: &str) -> (Self, watch::Receiver<Plan>) {
        let (plan, rx) = watch::channel(Plan::default());
        // Versions start at the wall clock, so a restarted broadcaster's
        // announcements are newer than the ones it made before.
        let version = fanfare_protocol::stamp::now_us();
        let mut s = Self {
            own: own.to_owned(),
            version,
            local: Vec::new(),
            announced_at: None,
            heard: HashMap::new(),
            plan,
        };
        s.publish();
        (s, rx)
    }

    /// One relay tick: takes announcements heard, the local interest when
    /// it changed, refreshes our lease, expires silent announcers; sends a
    /// new plan to the links if anything changed.
    pub(crate) fn tick<'a>(
        &mut self,
        now: Instant,
        heard: Vec<Bytes>,
        local: Option<impl Iterator<Item = &'a Bytes>>,
    ) {
        let mut changed = false;
        for body in heard {
            let Some(a) = Announcement::decode(&body) else {
                continue;
            };
            if a.announcer == self.own {
                continue;
            }
            let newer = self
                .heard
                .get(&a.announcer)
                .is_none_or(|h| a.version > h.version);
            if !newer
                || (!self.heard.contains_key(&a.announcer) && self.heard.len() >= MAX_ANNOUNCERS)
            {
                continue;
            }
            let encoded = Bytes::from(a.encode());
            self.heard.insert(
                a.announcer,
                Heard {
                    version: a.version,
                    prefixes: a.prefixes,
                    fresh_at: now,
                    encoded,
                },
            );
            changed = true;
        }
        if let Some(local) = local {
            let mut l: Vec<Bytes> = local.cloned().collect();
            l.sort();
            if l != self.local {
                self.local = l;
                changed = true;
            }
        }
        let before = self.heard.len();
        self.heard
            .retain(|_, h| now.saturating_duration_since(h.fresh_at) < EXPIRY);
        changed |= self.heard.len() != before;
        let due = self
            .announced_at
            .is_none_or(|at| now.saturating_duration_since(at) >= REFRESH);
        if changed || due {
            self.announced_at = Some(now);
            self.version = self.version.saturating_add(1);
            self.publish();
        }
    }

    /// The data subscription of every link now.
    fn data(&self) -> BTreeSet<Bytes> {
        let mut d: BTreeSet<Bytes> = self.local.iter().cloned().collect();
        for h in self.heard.values() {
            d.extend(h.prefixes.iter().cloned());
        }
        if d.len() > MAX_DATA_PREFIXES {
            d = BTreeSet::from([Bytes::new()]);
        }
        d.insert(Bytes::from_static(
            fanfare_protocol::HEARTBEAT_PREFIX.as_bytes(),
        ));
        d
    }

    fn publish(&mut self) {
        let own = Announcement {
            announcer: self.own.clone(),
            version: self.version,
            prefixes: self.local.clone(),
        };
        let mut ann = vec![(self.own.clone(), self.version, Bytes::from(own.encode()))];
        ann.extend(
            self.heard
                .iter()
                .map(|(k, h)| (k.clone(), h.version, h.encoded.clone())),
        );
        let plan = Plan {
            data: Arc::new(self.data()),
            announcements: Arc::new(ann),
        };
        self.plan.send_replace(plan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn announcements_round_trip_and_fit() {
        let a = Announcement {
            announcer: "b1".into(),
            version: 7,
            prefixes: vec![b("chat."), b("")],
        };
        let e = a.encode();
        assert_eq!(Announcement::decode(&e[INTEREST_PREFIX.len()..]), Some(a));
        let big = Announcement {
            announcer: "b1".into(),
            version: 1,
            prefixes: (0..500).map(|i| b(&format!("topic.{i}."))).collect(),
        };
        let e = big.encode();
        assert!(e.len() < 1024);
        let d = Announcement::decode(&e[INTEREST_PREFIX.len()..]).unwrap();
        assert_eq!(d.prefixes, vec![Bytes::new()]);
        assert_eq!(Announcement::decode(b"\x05ab"), None);
    }

    #[test]
    fn ring_retracts_and_expires() {
        let t = Instant::now();
        let (mut i, rx) = Interest::new("b0");
        let hb = || Bytes::from_static(fanfare_protocol::HEARTBEAT_PREFIX.as_bytes());
        assert_eq!(*rx.borrow().data, BTreeSet::from([hb()]));
        let ann = |v: u64, p: &[&str]| {
            let a = Announcement {
                announcer: "b1".into(),
                version: v,
                prefixes: p.iter().map(|s| b(s)).collect(),
            };
            Bytes::from(a.encode()).slice(INTEREST_PREFIX.len()..)
        };
        i.tick(
            t,
            vec![ann(5, &["chat."])],
            None::<std::iter::Empty<&Bytes>>,
        );
        assert!(rx.borrow().data.contains(&b("chat.")));
        // An older version (flooded back around a ring) changes nothing.
        i.tick(t, vec![ann(4, &[])], None::<std::iter::Empty<&Bytes>>);
        assert!(rx.borrow().data.contains(&b("chat.")));
        // Retraction is a newer version.
        i.tick(t, vec![ann(6, &[])], None::<std::iter::Empty<&Bytes>>);
        assert!(!rx.borrow().data.contains(&b("chat.")));
        i.tick(
            t,
            vec![ann(7, &["news."])],
            None::<std::iter::Empty<&Bytes>>,
        );
        // The same version again does not renew the lease: it expires.
        i.tick(
            t + EXPIRY,
            vec![ann(7, &["news."])],
            None::<std::iter::Empty<&Bytes>>,
        );
        assert!(!rx.borrow().data.contains(&b("news.")));
        // Local interest is announced as our own, at a new version.
        let v0 = rx.borrow().announcements[0].1;
        let local = [b("mine.")];
        i.tick(t + EXPIRY, vec![], Some(local.iter()));
        let p = rx.borrow().clone();
        assert!(p.data.contains(&b("mine.")));
        assert!(p.announcements[0].1 > v0);
    }
}
