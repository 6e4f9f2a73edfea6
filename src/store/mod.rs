//! The in-memory time-series store: series identified by their label set, samples in
//! per-series ring buffers, retention derived from what the loaded rules read.
//!
//! Writers (collectors, detectors, recording rules) append; queries read through a
//! [`Reader`], which holds the read lock while it lives, so one query (one rule's
//! expression) sees one consistent state. A rule group takes a reader per rule, not one per
//! round: the lock is released between rules so that a recording rule's results can be
//! written and seen by the rules after it, as in Prometheus.

mod hash;
mod labels;
mod limits;

pub use hash::{FastHashMap, FastHasher, xxhash64};
pub use labels::{Labels, METRIC_NAME};
pub use limits::{Refused, SeriesBudget};

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::common::throttle::LogThrottle;

/// Prometheus' stale marker: a NaN with this exact bit pattern ends a series.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The stale marker as an f64.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True for the stale marker (and only for it: other NaNs are ordinary values).
pub fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Default retention when no rule says otherwise: Prometheus' 5 minute lookback plus a margin.
pub const DEFAULT_RETENTION_MS: i64 = 10 * 60 * 1000;

/// How often a full store says so on the log.
const FULL_LOG_PERIOD: Duration = Duration::from_secs(60);

/// One sample of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    pub timestamp_ms: i64,
    pub value: f64,
}

impl Sample {
    pub fn new(labels: Labels, timestamp_ms: i64, value: f64) -> Self {
        Sample {
            labels,
            timestamp_ms,
            value,
        }
    }
}

/// The samples of a window as two contiguous parts (the second is empty with the current
/// buffer layout; kept so callers need not care).
pub type SampleSlices<'a> = (&'a [(i64, f64)], &'a [(i64, f64)]);

/// Index of a series inside the store; stable for the life of the series.
pub type SeriesId = u32;

struct Series {
    labels: Labels,
    samples: Window,
}

/// A series' samples, oldest first, in one contiguous buffer: appends push at the back,
/// expiry advances `head`, and the expired prefix is compacted away once it is an eighth
/// of the live part. Compared with a `VecDeque` this keeps every window one slice (range
/// functions read it without copying) and keeps capacity within ~1/8 of the live samples
/// instead of rounding up to a power of two.
#[derive(Default)]
struct Window {
    buf: Vec<(i64, f64)>,
    head: usize,
}

impl Window {
    #[inline]
    fn live(&self) -> &[(i64, f64)] {
        &self.buf[self.head..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.head
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn back(&self) -> Option<&(i64, f64)> {
        self.live().last()
    }

    fn pop_back(&mut self) {
        if !self.is_empty() {
            self.buf.pop();
        }
    }

    fn push_back(&mut self, sample: (i64, f64)) {
        if self.buf.len() == self.buf.capacity() {
            self.compact();
            if self.buf.len() == self.buf.capacity() {
                // grow by a quarter: geometric (amortised O(1)) without doubling the slack
                let extra = (self.buf.len() / 4).max(4);
                self.buf.reserve_exact(extra);
            }
        }
        self.buf.push(sample);
    }

    /// Drops samples older than `cutoff`.
    fn expire(&mut self, cutoff: i64) {
        let live = &self.buf[self.head..];
        if live.first().is_some_and(|(t, _)| *t < cutoff) {
            self.head += live.partition_point(|(t, _)| *t < cutoff);
            if self.head >= 16 && self.head * 8 >= self.len() {
                self.compact();
            }
        }
    }

    fn compact(&mut self) {
        if self.head > 0 {
            self.buf.drain(..self.head);
            self.head = 0;
        }
    }

    fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Gives back memory after a retention cut.
    fn shrink(&mut self) {
        self.compact();
        let len = self.buf.len();
        if self.buf.capacity() > 2 * len + 8 {
            self.buf.shrink_to(len + len / 8);
        }
    }

    /// Index of the first sample with `t > bound`. Samples usually arrive at a steady
    /// interval, so the position is guessed by interpolation and corrected with a short
    /// scan; reads then touch a few cache lines instead of a full binary search's worth.
    #[inline]
    fn upper_bound(live: &[(i64, f64)], bound: i64) -> usize {
        let n = live.len();
        if n == 0 || live[0].0 > bound {
            return 0;
        }
        let last = live[n - 1].0;
        if last <= bound {
            return n;
        }
        let first = live[0].0;
        // first <= bound < last, so last > first and the guess lies in [0, n - 1)
        let guess = (((bound - first) as f64 / (last - first) as f64) * (n - 1) as f64) as usize;
        let mut i = guess.min(n - 1);
        for _ in 0..8 {
            if live[i].0 <= bound {
                if live[i + 1].0 > bound {
                    return i + 1;
                }
                i += 1;
            } else {
                if i == 0 || live[i - 1].0 <= bound {
                    return i;
                }
                i -= 1;
            }
        }
        live.partition_point(|(t, _)| *t <= bound)
    }

    /// Samples with `from < t <= to`.
    #[inline]
    fn range(&self, from: i64, to: i64) -> &[(i64, f64)] {
        let live = self.live();
        let b = Self::upper_bound(live, to);
        let a = Self::upper_bound(&live[..b], from);
        &live[a..b]
    }

    /// The newest sample with `at - lookback < t <= at`.
    #[inline]
    fn latest(&self, at: i64, lookback: i64) -> Option<(i64, f64)> {
        let live = self.live();
        let b = Self::upper_bound(live, at);
        let s = *live[..b].last()?;
        (s.0 > at - lookback).then_some(s)
    }
}

#[derive(Default)]
struct Inner {
    series: Vec<Option<Series>>,
    by_labels: FastHashMap<Labels, SeriesId>,
    /// Postings: label name → value → the series with that label pair (`__name__` is one
    /// of the labels), each list sorted by label set, so a selection reads only the
    /// shortest list its equality matchers name and comes out in Prometheus' order.
    postings: FastHashMap<String, FastHashMap<String, Vec<SeriesId>>>,
    free: Vec<SeriesId>,
    retention_ms: i64,
    /// Most series held (0: no cap); samples of further new series are dropped.
    max_series: usize,
    /// Samples of new series dropped because the store was full, ever.
    dropped: u64,
    /// Of `dropped`, those not yet handed to [`Store::take_dropped`].
    dropped_untaken: u64,
    full_log: Option<LogThrottle>,
}

/// The store. Share it as `Arc<Store>`.
pub struct Store {
    inner: RwLock<Inner>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new(DEFAULT_RETENTION_MS)
    }
}

impl Store {
    pub fn new(retention_ms: i64) -> Self {
        Store {
            inner: RwLock::new(Inner {
                retention_ms,
                ..Inner::default()
            }),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that
        // matters more than losing all data, so recover from poisoning.
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Read access for one evaluation.
    pub fn reader(&self) -> Reader<'_> {
        Reader(self.inner.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn retention_ms(&self) -> i64 {
        self.reader().0.retention_ms
    }

    /// Changes how far back samples are kept (applied as series receive samples and at `gc`).
    pub fn set_retention_ms(&self, ms: i64) {
        self.write().retention_ms = ms;
    }

    /// Caps the number of series (0: no cap). Series already held stay; while the store is
    /// at the cap, samples of new series are dropped, counted and logged.
    pub fn set_max_series(&self, n: usize) {
        self.write().max_series = n;
    }

    pub fn max_series(&self) -> usize {
        self.reader().0.max_series
    }

    /// Samples of new series dropped because the store was full, since it was made.
    pub fn dropped_total(&self) -> u64 {
        self.reader().0.dropped
    }

    /// Samples of new series dropped because the store was full since the last call (to
    /// feed a counter).
    pub fn take_dropped(&self) -> u64 {
        std::mem::take(&mut self.write().dropped_untaken)
    }

    pub fn append(&self, labels: &Labels, timestamp_ms: i64, value: f64) {
        let mut w = self.write();
        if let Err(Full::Store) = w.append(labels, timestamp_ms, value, None) {
            w.log_full(1);
        }
    }

    pub fn append_batch(&self, samples: &[Sample]) {
        self.append_batch_limited(samples, None);
    }

    /// Appends `samples`; a new series also takes one from `budget` (a writer's own limit
    /// of new series), and is dropped when that is spent or the store is full. Returns what
    /// was dropped.
    pub fn append_batch_limited(
        &self,
        samples: &[Sample],
        mut budget: Option<&mut SeriesBudget>,
    ) -> Refused {
        let mut w = self.write();
        let mut refused = Refused::default();
        for s in samples {
            match w.append(&s.labels, s.timestamp_ms, s.value, budget.as_deref_mut()) {
                Ok(()) => {}
                Err(Full::Store) => refused.max_series += 1,
                Err(Full::Budget) => refused.new_series_limit += 1,
            }
        }
        if refused.max_series > 0 {
            w.log_full(refused.max_series);
        }
        refused
    }

    /// Writes a stale marker, so queries after `timestamp_ms` no longer see the series.
    pub fn mark_stale(&self, labels: &Labels, timestamp_ms: i64) {
        let _ = self.write().append(labels, timestamp_ms, stale_nan(), None);
    }

    /// Drops samples older than retention before `now_ms` and series left empty.
    pub fn gc(&self, now_ms: i64) {
        let mut w = self.write();
        let cutoff = now_ms - w.retention_ms;
        let mut dead = Vec::new();
        for (id, slot) in w.series.iter_mut().enumerate() {
            if let Some(s) = slot {
                s.samples.expire(cutoff);
                s.samples.shrink();
                if s.samples.is_empty() {
                    dead.push(id as SeriesId);
                }
            }
        }
        for id in dead {
            w.remove(id);
        }
    }

    /// Removes every series and sample (used by `clear` in test files).
    pub fn clear(&self) {
        let mut w = self.write();
        let (r, max) = (w.retention_ms, w.max_series);
        *w = Inner {
            retention_ms: r,
            max_series: max,
            ..Inner::default()
        };
    }

    pub fn series_count(&self) -> usize {
        self.reader().0.by_labels.len()
    }

    /// Total samples held (stale markers included).
    pub fn sample_count(&self) -> usize {
        let r = self.reader();
        r.0.series.iter().flatten().map(|s| s.samples.len()).sum()
    }

    /// An estimate of the heap bytes the store holds: ring buffers by capacity, label
    /// strings, and the index entries. Used for the memory-per-series figure.
    pub fn approx_bytes(&self) -> usize {
        let r = self.reader();
        let inner = &r.0;
        let pair = std::mem::size_of::<(String, String)>();
        let mut bytes = inner.series.capacity() * std::mem::size_of::<Option<Series>>();
        for s in inner.series.iter().flatten() {
            bytes += s.samples.capacity() * std::mem::size_of::<(i64, f64)>();
            // the label Arc is shared between the series and the by_labels key
            bytes += 16 + s.labels.len() * pair;
            bytes += s
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        }
        // hash map slots: key + value + control byte, at the map's capacity
        bytes += inner.by_labels.capacity() * (std::mem::size_of::<(Labels, SeriesId)>() + 1);
        for (label, values) in &inner.postings {
            bytes += label.len()
                + values.capacity() * (std::mem::size_of::<(String, Vec<SeriesId>)>() + 1);
            for (value, ids) in values {
                bytes += value.len() + ids.capacity() * std::mem::size_of::<SeriesId>();
            }
        }
        bytes += inner.postings.capacity()
            * (std::mem::size_of::<(String, FastHashMap<String, Vec<SeriesId>>)>() + 1);
        bytes
    }
}

/// Why a new series was not taken.
enum Full {
    Store,
    Budget,
}

impl Inner {
    fn append(
        &mut self,
        labels: &Labels,
        t: i64,
        v: f64,
        budget: Option<&mut SeriesBudget>,
    ) -> Result<(), Full> {
        let id = match self.by_labels.get(labels) {
            Some(id) => *id,
            // a stale marker ends a series; for one not held there is nothing to end
            None if is_stale(v) => return Ok(()),
            None => {
                if self.max_series > 0 && self.by_labels.len() >= self.max_series {
                    self.dropped += 1;
                    self.dropped_untaken += 1;
                    return Err(Full::Store);
                }
                if let Some(b) = budget
                    && !b.take(Instant::now())
                {
                    return Err(Full::Budget);
                }
                self.insert(labels.clone())
            }
        };
        let cutoff = t - self.retention_ms;
        if let Some(s) = self.series[id as usize].as_mut() {
            match s.samples.back() {
                // Out-of-order samples are dropped, as Prometheus' TSDB does; an equal
                // timestamp replaces (a re-scrape of the same instant).
                Some((last, _)) if *last > t => return Ok(()),
                Some((last, _)) if *last == t => {
                    s.samples.pop_back();
                }
                _ => {}
            }
            s.samples.push_back((t, v));
            s.samples.expire(cutoff);
        }
        Ok(())
    }

    fn log_full(&mut self, n: u64) {
        let max = self.max_series;
        let throttle = self
            .full_log
            .get_or_insert_with(|| LogThrottle::new(FULL_LOG_PERIOD));
        if let Some(n) = throttle.record(n, Instant::now()) {
            tracing::warn!(
                dropped = n,
                max_series = max,
                "the store holds global.max_series series: samples of new series dropped \
                 (medic_store_series_dropped_total counts them)"
            );
        }
    }

    fn insert(&mut self, labels: Labels) -> SeriesId {
        let series = Series {
            labels: labels.clone(),
            samples: Window::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.series[id as usize] = Some(series);
                id
            }
            None => {
                self.series.push(Some(series));
                (self.series.len() - 1) as SeriesId
            }
        };
        let series = &self.series;
        for (k, v) in labels.iter() {
            let ids = self
                .postings
                .entry(k.to_string())
                .or_default()
                .entry(v.to_string())
                .or_default();
            let pos = position(series, ids, &labels);
            ids.insert(pos, id);
        }
        self.by_labels.insert(labels, id);
        id
    }

    fn remove(&mut self, id: SeriesId) {
        let Some(labels) = self.series[id as usize].as_ref().map(|s| s.labels.clone()) else {
            return;
        };
        self.by_labels.remove(&labels);
        for (k, v) in labels.iter() {
            let Some(values) = self.postings.get_mut(k) else {
                continue;
            };
            if let Some(ids) = values.get_mut(v) {
                // the series is still in place: binary search finds its own entry
                let pos = position(&self.series, ids, &labels);
                if ids.get(pos) == Some(&id) {
                    ids.remove(pos);
                } else {
                    ids.retain(|x| *x != id);
                }
                if ids.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.postings.remove(k);
            }
        }
        self.series[id as usize] = None;
        self.free.push(id);
    }
}

/// Where `labels` goes in the sorted posting list `ids`: the first entry not below it.
fn position(series: &[Option<Series>], ids: &[SeriesId], labels: &Labels) -> usize {
    ids.partition_point(|other| {
        series[*other as usize]
            .as_ref()
            .is_none_or(|s| s.labels < *labels)
    })
}

impl Inner {
    fn list(&self, label: &str, value: &str) -> &[SeriesId] {
        self.postings
            .get(label)
            .and_then(|values| values.get(value))
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }
}

/// A consistent read view of the store.
pub struct Reader<'a>(RwLockReadGuard<'a, Inner>);

impl Reader<'_> {
    /// Series whose `__name__` equals `name`, sorted by label set.
    pub fn series_by_name(&self, name: &str) -> &[SeriesId] {
        self.0.list(METRIC_NAME, name)
    }

    /// Series that have the label `label` with the value `value` (not empty), sorted by
    /// label set.
    pub fn series_with(&self, label: &str, value: &str) -> &[SeriesId] {
        self.0.list(label, value)
    }

    /// Every live series.
    pub fn all_series(&self) -> impl Iterator<Item = SeriesId> + '_ {
        self.0
            .series
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| i as SeriesId)
    }

    /// Every metric name with at least one series.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0
            .postings
            .get(METRIC_NAME)
            .into_iter()
            .flat_map(|values| values.keys().map(|s| s.as_str()))
    }

    pub fn labels(&self, id: SeriesId) -> Option<&Labels> {
        self.0.series.get(id as usize)?.as_ref().map(|s| &s.labels)
    }

    pub fn lookup(&self, labels: &Labels) -> Option<SeriesId> {
        self.0.by_labels.get(labels).copied()
    }

    /// Samples with `from_ms < t <= to_ms` (Prometheus' left-open range), oldest first,
    /// stale markers included.
    pub fn samples(
        &self,
        id: SeriesId,
        from_ms: i64,
        to_ms: i64,
    ) -> impl Iterator<Item = (i64, f64)> + '_ {
        self.window(id, from_ms, to_ms).iter().copied()
    }

    /// The samples with `from_ms < t <= to_ms` as one slice, oldest first, stale markers
    /// included.
    #[inline]
    pub fn window(&self, id: SeriesId, from_ms: i64, to_ms: i64) -> &[(i64, f64)] {
        match self.0.series.get(id as usize).and_then(|s| s.as_ref()) {
            Some(s) => s.samples.range(from_ms, to_ms),
            None => &[],
        }
    }

    /// Like [`Reader::window`], as two parts (the second one empty).
    pub fn sample_slices(&self, id: SeriesId, from_ms: i64, to_ms: i64) -> SampleSlices<'_> {
        (self.window(id, from_ms, to_ms), &[])
    }

    /// The newest sample at or before `at_ms`, not older than `lookback_ms`, unless it is a
    /// stale marker (then the series has no value at `at_ms`).
    pub fn latest(&self, id: SeriesId, at_ms: i64, lookback_ms: i64) -> Option<(i64, f64)> {
        let s = self.0.series.get(id as usize)?.as_ref()?;
        let last = s.samples.latest(at_ms, lookback_ms)?;
        (!is_stale(last.1)).then_some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_read_and_retention() {
        let store = Store::new(1000);
        let l = Labels::from_name("x");
        for t in 0..50 {
            store.append(&l, t * 100, t as f64);
        }
        let r = store.reader();
        let id = r.lookup(&l).unwrap();
        let got: Vec<_> = r.samples(id, 4000, 4300).collect();
        assert_eq!(got, vec![(4100, 41.0), (4200, 42.0), (4300, 43.0)]);
        // retention of 1 s keeps samples within 1 s of the newest
        assert_eq!(r.samples(id, i64::MIN, i64::MAX).count(), 11);
        assert_eq!(r.latest(id, 4900, 300_000), Some((4900, 49.0)));
    }

    #[test]
    fn max_series_caps_new_series_and_counts_the_rest() {
        let store = Store::new(1000);
        store.set_max_series(3);
        let l = |i: usize| Labels::new([("__name__", "x".to_string()), ("i", i.to_string())]);
        let batch: Vec<Sample> = (0..10).map(|i| Sample::new(l(i), 0, 1.0)).collect();
        let refused = store.append_batch_limited(&batch, None);
        assert_eq!(refused.max_series, 7);
        assert_eq!(store.series_count(), 3);
        // held series still take samples; a stale marker for a series not held adds none
        store.append(&l(0), 100, 2.0);
        store.mark_stale(&l(9), 100);
        assert_eq!(store.series_count(), 3);
        assert_eq!(store.sample_count(), 4);
        assert_eq!(store.dropped_total(), 7);
        assert_eq!(store.take_dropped(), 7);
        assert_eq!(store.take_dropped(), 0);
        // once series go, new ones fit again
        store.gc(5_000);
        store.append(&l(5), 5_000, 1.0);
        assert_eq!(store.series_count(), 1);
    }

    #[test]
    fn a_writers_budget_limits_its_new_series() {
        let store = Store::new(1000);
        let now = std::time::Instant::now();
        let mut budget = SeriesBudget::new(1, 4, now);
        let l = |i: usize| Labels::new([("__name__", "y".to_string()), ("i", i.to_string())]);
        let batch: Vec<Sample> = (0..10).map(|i| Sample::new(l(i), 0, 1.0)).collect();
        let refused = store.append_batch_limited(&batch, Some(&mut budget));
        assert_eq!(refused.new_series_limit, 6);
        assert_eq!(refused.max_series, 0);
        // series already held cost nothing
        let again: Vec<Sample> = (0..4).map(|i| Sample::new(l(i), 10, 1.0)).collect();
        assert!(!store.append_batch_limited(&again, Some(&mut budget)).any());
        assert_eq!(store.series_count(), 4);
    }

    #[test]
    fn stale_marker_hides_series() {
        let store = Store::default();
        let l = Labels::from_name("x");
        store.append(&l, 1000, 1.0);
        store.mark_stale(&l, 2000);
        let r = store.reader();
        let id = r.lookup(&l).unwrap();
        assert_eq!(r.latest(id, 1500, 300_000), Some((1000, 1.0)));
        assert_eq!(r.latest(id, 2500, 300_000), None);
    }

    #[test]
    fn out_of_order_dropped_and_gc_removes_empty() {
        let store = Store::new(1000);
        let l = Labels::from_name("x");
        store.append(&l, 2000, 2.0);
        store.append(&l, 1000, 1.0);
        {
            let r = store.reader();
            let id = r.lookup(&l).unwrap();
            assert_eq!(
                r.samples(id, 0, 5000).collect::<Vec<_>>(),
                vec![(2000, 2.0)]
            );
        }
        store.gc(10_000);
        assert_eq!(store.series_count(), 0);
    }

    #[test]
    fn name_index_sorted_and_slices_cover_wraparound() {
        let store = Store::new(1000);
        for job in ["c", "a", "b"] {
            store.append(&Labels::new([("__name__", "x"), ("job", job)]), 0, 1.0);
        }
        let r = store.reader();
        let jobs: Vec<_> = r
            .series_by_name("x")
            .iter()
            .map(|id| r.labels(*id).unwrap().get("job").unwrap().to_string())
            .collect();
        assert_eq!(jobs, ["a", "b", "c"]);
        drop(r);
        // push past retention so the ring buffer wraps, then read across the seam
        let l = Labels::from_name("y");
        for t in 0..40 {
            store.append(&l, t * 100, t as f64);
        }
        let r = store.reader();
        let id = r.lookup(&l).unwrap();
        let (a, b) = r.sample_slices(id, 3000, 3500);
        let got: Vec<_> = a.iter().chain(b).map(|p| p.0).collect();
        assert_eq!(got, vec![3100, 3200, 3300, 3400, 3500]);
        assert_eq!(r.latest(id, 3550, 300_000), Some((3500, 35.0)));
    }

    #[test]
    fn postings_stay_sorted_and_follow_series_removal() {
        let store = Store::new(1000);
        for (job, inst) in [("b", "2"), ("a", "9"), ("b", "1"), ("a", "1"), ("c", "1")] {
            let l = Labels::new([("__name__", "x"), ("job", job), ("instance", inst)]);
            // the b series get newer samples, so gc keeps them
            let t = if job == "b" { 5_000 } else { 0 };
            store.append(&l, t, 1.0);
        }
        store.append(&Labels::new([("__name__", "y"), ("job", "b")]), 5_000, 1.0);
        let ids = |label: &str, value: &str| -> Vec<String> {
            let r = store.reader();
            r.series_with(label, value)
                .iter()
                .map(|id| r.labels(*id).unwrap().to_string())
                .collect()
        };
        assert_eq!(
            ids("instance", "1"),
            [
                r#"x{instance="1", job="a"}"#,
                r#"x{instance="1", job="b"}"#,
                r#"x{instance="1", job="c"}"#
            ]
        );
        assert_eq!(
            ids("job", "b"),
            [
                r#"x{instance="1", job="b"}"#,
                r#"x{instance="2", job="b"}"#,
                r#"y{job="b"}"#
            ]
        );
        assert_eq!(ids("job", "nope"), Vec::<String>::new());
        // gc drops the series that only had old samples, from every list they were in
        store.gc(5_500);
        assert_eq!(ids("instance", "1"), [r#"x{instance="1", job="b"}"#]);
        assert_eq!(ids("job", "a"), Vec::<String>::new());
        assert_eq!(store.reader().series_by_name("x").len(), 2);
        let mut names: Vec<String> = store.reader().names().map(String::from).collect();
        names.sort();
        assert_eq!(names, ["x", "y"]);
        // a new series reuses a freed slot and still lands in order
        store.append(
            &Labels::new([("__name__", "x"), ("job", "b"), ("instance", "0")]),
            6_000,
            1.0,
        );
        assert_eq!(
            ids("job", "b"),
            [
                r#"x{instance="0", job="b"}"#,
                r#"x{instance="1", job="b"}"#,
                r#"x{instance="2", job="b"}"#,
                r#"y{job="b"}"#
            ]
        );
    }

    #[test]
    fn approx_bytes_is_what_the_layout_implies() {
        use std::mem::size_of;
        const N: usize = 100;
        const K: usize = 1000;
        let store = Store::new(i64::MAX / 4);
        let labels: Vec<Labels> = (0..N)
            .map(|i| {
                Labels::new([
                    ("__name__", "m".to_string()),
                    ("instance", format!("h{i:03}")),
                ])
            })
            .collect();
        for t in 0..K as i64 {
            for l in &labels {
                store.append(l, t * 1000, 1.0);
            }
        }
        assert_eq!(store.sample_count(), N * K);
        // Each sample is a (timestamp, value) pair of 16 bytes in its series' buffer, which
        // grows by a quarter (at least 4) when full; each label set is one Arc (16 bytes of
        // counts) of String pairs plus the strings' bytes; the indexes hold one entry per
        // series (tables up to twice their entries).
        assert_eq!(size_of::<(i64, f64)>(), 16);
        let label_bytes: usize = labels
            .iter()
            .map(|l| {
                16 + l.len() * size_of::<(String, String)>()
                    + l.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
            })
            .sum();
        let per_series_index = size_of::<Option<Series>>()
            + size_of::<(Labels, SeriesId)>()
            + 1
            + size_of::<SeriesId>();
        let name_index = "m".len() + size_of::<(String, Vec<SeriesId>)>() + 1;
        let samples = N * K * 16;
        let lower = samples + label_bytes + N * per_series_index + name_index;
        let upper =
            samples * 5 / 4 + N * 4 * 16 + label_bytes + 2 * N * per_series_index + 4 * name_index;
        let got = store.approx_bytes();
        assert!(
            (lower..=upper).contains(&got),
            "{got} bytes, expected {lower}..={upper}"
        );
        // After a retention cut, buffers are trimmed to the live samples plus an eighth.
        store.set_retention_ms(100_000);
        store.gc((K as i64 - 1) * 1000);
        let live = store.sample_count();
        assert_eq!(live, N * 101);
        let after = store.approx_bytes();
        let lower = live * 16 + label_bytes + N * per_series_index + name_index;
        let upper =
            live * 16 * 9 / 8 + N * 16 + label_bytes + 2 * N * per_series_index + 4 * name_index;
        assert!(
            (lower..=upper).contains(&after),
            "{after} bytes after the cut, expected {lower}..={upper}"
        );
    }

    #[test]
    fn window_reads_match_a_plain_filter() {
        // irregular timestamps, including gaps and duplicates-by-replacement
        let store = Store::new(i64::MAX / 4);
        let l = Labels::from_name("z");
        let mut ts = Vec::new();
        let mut t = 0i64;
        for i in 0..500i64 {
            t += 1 + (i * 7919) % 13 + if i % 97 == 0 { 400 } else { 0 };
            ts.push(t);
            store.append(&l, t, i as f64);
        }
        let r = store.reader();
        let id = r.lookup(&l).unwrap();
        let all: Vec<(i64, f64)> = r.samples(id, i64::MIN, i64::MAX).collect();
        assert_eq!(all.len(), 500);
        for (k, from) in (-10..t + 10).step_by(37).enumerate() {
            let to = from + (k as i64 * 53) % 900;
            let want: Vec<_> = all
                .iter()
                .copied()
                .filter(|(x, _)| *x > from && *x <= to)
                .collect();
            assert_eq!(r.window(id, from, to), &want[..], "({from}, {to}]");
            let latest = all.iter().copied().rfind(|(x, _)| *x <= to && *x > to - 50);
            assert_eq!(r.latest(id, to, 50), latest, "latest at {to}");
        }
    }
}
