// SPDX-License-Identifier: Apache-2.0
//! `btrace serve --by cgroup`: cgroup ids (as the kernel keys its breakdowns, see
//! hist.bpf.c and runq.bpf.c) turned into a bounded set of `cgroup` label values, and a
//! group's histograms split by them so that the series stay valid Prometheus counters.
//!
//! The rules, which keep every counter monotonic and the label values bounded:
//! - a cgroup's fate is decided once, the first time a scrape sees it: its path below the
//!   cgroup2 mount becomes a label value while fewer than `--max-cgroups` values are given
//!   (busiest cgroup of the scrape first), else it goes to `cgroup="other"` for good;
//!   a cgroup already removed when first seen goes to `other` too (it would be a series of
//!   one sample);
//! - `other` is, per key (syscall), everything counted minus the labelled cgroups, so the
//!   series of a family add up to the group's totals exactly (when the kernel is not
//!   adding while it is read; during a read `other` may lag, never go back);
//! - a labelled cgroup that is removed keeps its series until btrace ends (its figures are
//!   folded into user space and its kernel entries freed), so `increase()` stays right; a
//!   cgroup made again at the same path continues the same series.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::model::histogram::Log2Hist;
use crate::resolve::cgroups::CgroupNames;

/// The label value of what is not labelled by cgroup (no cgroup path starts with a letter).
pub const OTHER: &str = "other";

/// The default of `--max-cgroups`.
pub const DEFAULT_MAX: u32 = 100;

/// How often labelled cgroups are checked for removal.
const CHECK_GONE_EVERY: Duration = Duration::from_secs(10);

/// Ids sent to `other` are remembered so each is counted once; past this many, the ones
/// whose cgroup was removed are forgotten (cgroup ids are never reused).
const OTHERS_KEPT: usize = 4096;

/// The cgroup label values given so far, and the cgroups sent to `other`.
pub struct CgroupLabels {
    names: CgroupNames,
    cap: usize,
    /// Labelled cgroup ids and their label.
    ids: HashMap<u64, String>,
    values: HashSet<String>,
    /// Cgroup ids whose figures go to `other`.
    others: HashSet<u64>,
    /// Labelled ids whose cgroup was removed.
    gone: HashSet<u64>,
    checked: Instant,
    /// Cgroups sent to `other` because the cap was reached, since start.
    pub over_cap: u64,
    /// Cgroups sent to `other` because they were removed before a scrape saw them.
    pub removed_unseen: u64,
}

impl CgroupLabels {
    pub fn new(cap: u32) -> CgroupLabels {
        CgroupLabels {
            names: CgroupNames::new(),
            cap: cap as usize,
            ids: HashMap::new(),
            values: HashSet::new(),
            others: HashSet::new(),
            gone: HashSet::new(),
            checked: Instant::now(),
            over_cap: 0,
            removed_unseen: 0,
        }
    }

    /// Distinct label values given (at most the cap).
    pub fn values(&self) -> usize {
        self.values.len()
    }

    /// Decides the label of every cgroup not seen before (`seen`: id -> what it counted
    /// in this read; the busiest get the free label values first).
    pub fn admit(&mut self, seen: &HashMap<u64, u64>) {
        let mut new: Vec<(u64, u64)> = seen
            .iter()
            .filter(|(id, _)| !self.ids.contains_key(id) && !self.others.contains(id))
            .map(|(&id, &n)| (id, n))
            .collect();
        if new.is_empty() {
            return;
        }
        new.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        // A new id unknown to the last walk: walk once (a cgroup made since).
        if new.iter().any(|(id, _)| self.names.known(*id).is_none()) {
            self.names.rewalk();
        }
        for (id, _) in new {
            let Some(path) = self.names.known(id).map(str::to_string) else {
                self.others.insert(id);
                self.removed_unseen += 1;
                continue;
            };
            if self.values.contains(&path) || self.values.len() < self.cap {
                self.values.insert(path.clone());
                self.ids.insert(id, path);
            } else {
                self.others.insert(id);
                self.over_cap += 1;
            }
        }
        if self.others.len() > OTHERS_KEPT + self.cap {
            self.names.rewalk();
            let names = &self.names;
            self.others.retain(|id| names.known(*id).is_some());
        }
    }

    /// The label of a cgroup admitted before; None: its figures go to `other`.
    pub fn label(&self, id: u64) -> Option<&str> {
        self.ids.get(&id).map(String::as_str)
    }

    /// Marks labelled cgroups that were removed (at most every few seconds: a stat each).
    fn check_gone(&mut self) {
        if self.checked.elapsed() < CHECK_GONE_EVERY {
            return;
        }
        self.checked = Instant::now();
        let Some(root) = self.names.root().map(|r| r.to_path_buf()) else {
            return;
        };
        for (&id, path) in &self.ids {
            if self.gone.contains(&id) {
                continue;
            }
            let dir = root.join(path.trim_start_matches('/'));
            if std::fs::metadata(&dir).ok().map(|m| m.ino()) != Some(id) {
                self.gone.insert(id);
            }
        }
    }
}

/// What a group keeps per (cgroup, key) for the split: a histogram, or a tracer's own
/// set of counters. The split adds, subtracts and compares them, and admits the busiest
/// cgroups first by their weight.
pub trait Figures: Copy + Default + PartialEq + std::fmt::Debug {
    fn add(&mut self, other: &Self);
    /// `self - other` per field, never below 0.
    fn minus(&self, other: &Self) -> Self;
    /// The larger of each field.
    fn at_least(&mut self, other: &Self);
    /// How busy: what orders new cgroups for the free label values, and whether an
    /// `other` series has anything in it.
    fn weight(&self) -> u64;
}

impl Figures for Log2Hist {
    fn add(&mut self, other: &Self) {
        Log2Hist::add(self, other);
    }
    fn minus(&self, other: &Self) -> Self {
        self.field_by_field(other, u64::saturating_sub)
    }
    fn at_least(&mut self, other: &Self) {
        *self = self.field_by_field(other, u64::max);
    }
    fn weight(&self) -> u64 {
        self.count
    }
}

/// One group's figures (histograms by default) split by cgroup label, per key `K` (a
/// syscall; `()` for a group with one set). Holds what must outlive the kernel's
/// entries: the figures of removed cgroups, and the `other` series last served.
pub struct CgroupSplit<K, V = Log2Hist> {
    retired: HashMap<(String, K), V>,
    last_other: HashMap<K, V>,
}

impl<K, V> Default for CgroupSplit<K, V> {
    fn default() -> Self {
        CgroupSplit {
            retired: HashMap::new(),
            last_other: HashMap::new(),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord, V: Figures> CgroupSplit<K, V> {
    /// `totals`: per key, everything the group counted, read BEFORE `entries`, the
    /// kernel's per-(cgroup id, key) histograms (so a labelled entry never holds calls the
    /// totals lack: `other` can only lag). `forget(id, key)` deletes a kernel entry: those
    /// of cgroups that go to `other` (they are in the totals anyway; deleting them keeps
    /// the kernel's table for labelled cgroups) and of removed labelled cgroups (folded
    /// here first). Returns (label, key, histogram), sorted, `other` included.
    pub fn split(
        &mut self,
        labels: &mut CgroupLabels,
        totals: &[(K, V)],
        entries: Vec<(u64, K, V)>,
        mut forget: impl FnMut(u64, &K),
    ) -> Vec<(String, K, V)> {
        let mut seen: HashMap<u64, u64> = HashMap::new();
        for (id, _, h) in &entries {
            *seen.entry(*id).or_default() += h.weight();
        }
        labels.admit(&seen);
        labels.check_gone();
        let mut per: BTreeMap<(String, K), V> =
            self.retired.iter().map(|(k, h)| (k.clone(), *h)).collect();
        for (id, k, h) in entries {
            let Some(label) = labels.label(id) else {
                forget(id, &k);
                continue;
            };
            let key = (label.to_string(), k.clone());
            per.entry(key.clone()).or_default().add(&h);
            if labels.gone.contains(&id) {
                self.retired.entry(key).or_default().add(&h);
                forget(id, &k);
            }
        }
        let mut listed: HashMap<K, V> = HashMap::new();
        for ((_, k), h) in &per {
            listed.entry(k.clone()).or_default().add(h);
        }
        for (k, total) in totals {
            let mut other = total.minus(listed.get(k).unwrap_or(&V::default()));
            if let Some(prev) = self.last_other.get(k) {
                other.at_least(prev);
            }
            if other.weight() > 0 {
                self.last_other.insert(k.clone(), other);
                per.insert((OTHER.to_string(), k.clone()), other);
            }
        }
        per.into_iter().map(|((l, k), h)| (l, k, h)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(n: u64) -> Log2Hist {
        let mut h = Log2Hist {
            count: n,
            sum_ns: n * 1000,
            ..Default::default()
        };
        h.buckets[1] = n;
        h
    }

    /// Labels for fake ids: the root cgroup's real id names "/", other ids are unknown
    /// (removed); so the labelled ones here are made under the real root.
    fn labels_with(cap: u32, known: &[(u64, &str)]) -> CgroupLabels {
        let mut l = CgroupLabels::new(cap);
        for (id, path) in known {
            l.values.insert(path.to_string());
            l.ids.insert(*id, path.to_string());
        }
        l
    }

    #[test]
    fn cap_sends_the_rest_to_other_and_totals_add_up() {
        let mut l = labels_with(2, &[(11, "/a"), (12, "/b")]);
        let mut s = CgroupSplit::<u32>::default();
        let mut forgotten = Vec::new();
        let totals = [(39u32, hist(100))];
        let entries = vec![(11, 39, hist(10)), (12, 39, hist(20)), (13, 39, hist(30))];
        let out = s.split(&mut l, &totals, entries, |id, _| forgotten.push(id));
        let got: Vec<(String, u64)> = out.iter().map(|(l, _, h)| (l.clone(), h.count)).collect();
        assert_eq!(
            got,
            [("/a".into(), 10), ("/b".into(), 20), ("other".into(), 70)]
        );
        // Id 13 is unknown to the hierarchy: removed before it was named, not a cap case.
        assert_eq!(forgotten, [13]);
        assert_eq!(l.removed_unseen, 1);
        assert_eq!(l.values(), 2);
    }

    #[test]
    fn other_never_goes_back() {
        let mut l = labels_with(1, &[(11, "/a")]);
        let mut s = CgroupSplit::<()>::default();
        let out = s.split(
            &mut l,
            &[((), hist(50))],
            vec![(11, (), hist(10))],
            |_, _| {},
        );
        assert_eq!(out[1].2.count, 40);
        // Read while the kernel added 5 to /a after the totals were read: other lags.
        let out = s.split(
            &mut l,
            &[((), hist(55))],
            vec![(11, (), hist(20))],
            |_, _| {},
        );
        assert_eq!(out[1].2.count, 40);
        let out = s.split(
            &mut l,
            &[((), hist(70))],
            vec![(11, (), hist(20))],
            |_, _| {},
        );
        assert_eq!(out[1].2.count, 50);
    }

    #[test]
    fn removed_labelled_cgroups_keep_their_series() {
        let mut l = labels_with(4, &[(11, "/a")]);
        let mut s = CgroupSplit::<u32>::default();
        l.gone.insert(11);
        let mut forgotten = 0;
        let out = s.split(&mut l, &[(1, hist(10))], vec![(11, 1, hist(10))], |_, _| {
            forgotten += 1
        });
        assert_eq!(out, [("/a".to_string(), 1, hist(10))]);
        assert_eq!(forgotten, 1);
        // Its kernel entry is gone; the series is served from what was folded.
        let out = s.split(&mut l, &[(1, hist(10))], vec![], |_, _| {});
        assert_eq!(out, [("/a".to_string(), 1, hist(10))]);
    }
}
