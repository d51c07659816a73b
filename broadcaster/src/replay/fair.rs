//! Shares of the replay endpoint per peer address: all connections from one
//! IP address together may run at most `workers - 1` of the scans at once
//! (at least 1) and hold at most half of the in-flight reply bytes, so one
//! peer — however many connections it opens — always leaves a scan worker
//! and half the byte budget to the others. Past its share a request waits
//! like any other (at most `WORKER_WAIT`) or is answered `busy`, counted
//! with the same reasons (`workers`, `inflight_bytes`).
//!
//! The table holds one entry per address with an open replay connection
//! (so it is bounded by the connection cap); an entry leaves with the
//! address's last connection. Only replay admission touches it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use super::reply::InFlight;
use crate::metrics::CountGauge;

/// One address's share.
pub(crate) struct Share {
    /// Scans this address may run at once.
    pub(crate) scans: Arc<Semaphore>,
    /// Reply bytes this address may hold.
    pub(crate) bytes: Arc<InFlight>,
}

/// Every address's share.
pub(crate) struct PeerShares {
    scans_per_peer: usize,
    bytes_per_peer: usize,
    peers: Mutex<HashMap<IpAddr, Arc<Share>>>,
}

impl PeerShares {
    /// Shares of `workers` scan workers and `inflight_bytes` reply bytes.
    pub(crate) fn new(workers: usize, inflight_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            scans_per_peer: workers.saturating_sub(1).max(1),
            bytes_per_peer: (inflight_bytes / 2).max(1),
            peers: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Share>>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The share of `ip`, held by one connection for its lifetime.
    pub(crate) fn join(self: &Arc<Self>, ip: IpAddr) -> Member {
        let share = self
            .lock()
            .entry(ip)
            .or_insert_with(|| {
                Arc::new(Share {
                    scans: Arc::new(Semaphore::new(self.scans_per_peer)),
                    bytes: InFlight::new(self.bytes_per_peer, CountGauge::default()),
                })
            })
            .clone();
        Member {
            shares: self.clone(),
            ip,
            share: Some(share),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A connection's hold on its address's share.
pub(crate) struct Member {
    shares: Arc<PeerShares>,
    ip: IpAddr,
    share: Option<Arc<Share>>,
}

impl Member {
    /// The share.
    pub(crate) fn share(&self) -> Option<&Share> {
        self.share.as_deref()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        // Clones are made and dropped only under the lock: the map's entry
        // is the last one exactly when no connection of the address is left.
        let mut peers = self.shares.lock();
        self.share = None;
        if peers
            .get(&self.ip)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            peers.remove(&self.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_takes_at_most_its_share() {
        let shares = PeerShares::new(2, 100);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let (a1, a2, b1) = (shares.join(a), shares.join(a), shares.join(b));
        assert_eq!(shares.len(), 2);
        // One scan at a time for all of a's connections.
        let s = a1
            .share()
            .unwrap()
            .scans
            .clone()
            .try_acquire_owned()
            .unwrap();
        assert!(a2
            .share()
            .unwrap()
            .scans
            .clone()
            .try_acquire_owned()
            .is_err());
        assert!(b1
            .share()
            .unwrap()
            .scans
            .clone()
            .try_acquire_owned()
            .is_ok());
        drop(s);
        // Half the bytes.
        let r = a1.share().unwrap().bytes.try_reserve(40).unwrap();
        assert!(a2.share().unwrap().bytes.try_reserve(20).is_none());
        assert!(b1.share().unwrap().bytes.try_reserve(50).is_some());
        drop(r);
        // The entry leaves with the address's last connection.
        drop((a1, b1));
        assert_eq!(shares.len(), 1);
        drop(a2);
        assert_eq!(shares.len(), 0);
        // One worker in all: the share is that one.
        assert_eq!(PeerShares::new(1, 10).scans_per_peer, 1);
    }
}
