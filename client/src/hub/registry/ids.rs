//! A cheap hasher for connection ids in the registry's tables.
//!
//! Connection ids are assigned by the hub (a counter), never chosen by a
//! browser, so they need no flood-resistant hash: one multiply spreads
//! them over the table (dispatch looks one up per delivery, where SipHash
//! cost ~200 instructions).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one `u64`.
#[derive(Default)]
pub(super) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used for u64 keys; kept correct for any other input.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Map keyed by connection id.
pub(super) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;
/// Set of connection ids.
pub(super) type IdSet = HashSet<u64, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_ids_spread_over_buckets() {
        let mut m: IdMap<u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert(i, i);
        }
        assert!((0..10_000u64).all(|i| m.get(&i) == Some(&i)));
        // The low 7 bits of the hashes of sequential ids all differ.
        let low: HashSet<u64> = (0..128u64)
            .map(|i| {
                let mut h = IdHasher::default();
                h.write_u64(i);
                h.finish() & 127
            })
            .collect();
        assert_eq!(low.len(), 128);
    }
}
