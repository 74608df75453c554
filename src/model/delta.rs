// SPDX-License-Identifier: Apache-2.0
//! Interval figures from cumulative counters: the kernel only ever adds, so what happened
//! in an interval is "now minus what was read last time", per key. Used by every command
//! that prints per interval and by the dashboard.

use std::collections::HashMap;
use std::hash::Hash;

/// A value that accumulates and can be differenced.
pub trait Cumulative: Clone + Default {
    /// self - earlier. `None` when `self` is smaller (the slot was freed and reused).
    fn since(&self, earlier: &Self) -> Option<Self>;
}

impl Cumulative for u64 {
    fn since(&self, earlier: &Self) -> Option<Self> {
        self.checked_sub(*earlier)
    }
}

/// The last cumulative value seen per key.
#[derive(Debug)]
pub struct Deltas<K, V> {
    last: HashMap<K, V>,
}

impl<K, V> Default for Deltas<K, V> {
    fn default() -> Self {
        Deltas {
            last: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Cumulative> Deltas<K, V> {
    /// What accumulated at `key` since the last call for it. A key seen for the first
    /// time counts from zero; a value that went down (slot reused) counts from zero too.
    pub fn step(&mut self, key: &K, now: &V) -> V {
        let prev = self.last.insert(key.clone(), now.clone());
        match prev {
            Some(p) => now.since(&p).unwrap_or_else(|| now.clone()),
            None => now.clone(),
        }
    }

    /// What accumulated since the last call, without remembering `now`.
    pub fn peek(&self, key: &K, now: &V) -> V {
        match self.last.get(key) {
            Some(p) => now.since(p).unwrap_or_else(|| now.clone()),
            None => now.clone(),
        }
    }

    /// Forgets a key (its slot was freed).
    pub fn forget(&mut self, key: &K) {
        self.last.remove(key);
    }

    /// The last value seen for a key.
    pub fn last(&self, key: &K) -> Option<&V> {
        self.last.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_interval_and_survives_reuse() {
        let mut d: Deltas<u32, u64> = Deltas::default();
        assert_eq!(d.step(&1, &10), 10);
        assert_eq!(d.step(&1, &15), 5);
        assert_eq!(d.peek(&1, &20), 5);
        assert_eq!(d.step(&1, &15), 0);
        // The slot was freed and the key reused: counts start again.
        assert_eq!(d.step(&1, &3), 3);
        d.forget(&1);
        assert_eq!(d.step(&1, &4), 4);
        assert_eq!(d.last(&1), Some(&4));
    }
}
