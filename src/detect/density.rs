//! The `density` baseline: how rare the current value is among the recent ones. A histogram
//! of [`BINS`] equal bins over the range the series has recently covered, with exponentially
//! decaying counts (half-life in samples), gives each point its *surprise*: −log10 of the share
//! of the recent mass in its bin (with a pseudo-count, so an empty bin is finite), plus
//! log10(1 + bins beyond the range) for a point outside it, so nothing ties at the top.
//!
//! A point in a region the series has not visited lately is surprising; as the series stays
//! there the bin fills and the surprise decays: a level shift scores high at its start and
//! becomes the new normal without a separate re-baselining rule. A two-level or spiky series
//! (a square wave, a mostly-zero counter) is normal at both levels, which a mean and a
//! standard deviation cannot express. There is no spread learnt from clipped values, so a
//! heavy tail simply shows as mass in the outer bins.
//!
//! The range grows by doubling (pairs of bins merge) when a point falls outside it, and
//! shrinks by halving (bins split) when half of it holds no more than a lone old outlier,
//! reviewed every [`BINS`] samples; both are O(BINS) and rare, so an update is O(1)
//! amortised. The range never shrinks below four mean absolute deviations, so a series that
//! is mostly one value (zeros) keeps a resolution at the scale of what else it does.

/// Bins in the histogram.
pub const BINS: usize = 32;

/// Weight of the pseudo-count added to every bin's mass when computing a share.
const PRIOR: f64 = 0.5;

/// Shrink when the half of the range to drop holds less than this much decayed weight: a
/// sample seen just now weighs 1, so this drops only lone outliers older than 0.15
/// half-lives (one spike does not cost the resolution for long), never a region the series
/// visits, and never the point that just grew the range (weight 1: a threshold of 1 would
/// undo every growth at the next review).
const STALE_MASS: f64 = 0.9;

/// The range covers at least this many mean absolute deviations.
const MIN_RANGE_DEVS: f64 = 4.0;

/// Rescale the lazily-decayed counts when the weight of a new sample exceeds this.
const RESCALE_AT: f64 = 1e150;

/// Recent-value histogram of one series.
#[derive(Debug, Clone)]
pub struct Density {
    /// Bin masses, in units of `unit` (lazy decay: a new sample weighs `unit`, which grows
    /// by `growth` per sample, instead of every count shrinking).
    counts: [f64; BINS],
    total: f64,
    unit: f64,
    growth: f64,
    /// Left edge and bin width; `width == 0` until two distinct values were seen.
    lo: f64,
    width: f64,
    /// Before the range exists: the one value seen so far.
    first: f64,
    /// Exponentially weighted mean and mean absolute deviation (the shrink floor).
    mean: f64,
    dev: f64,
    keep: f64,
    seen: u64,
    since_review: u32,
}

impl Density {
    /// `half_life`: samples after which a sample weighs half (at least 1).
    pub fn new(half_life: f64) -> Self {
        let keep = 0.5f64.powf(1.0 / half_life.max(1.0));
        Density {
            counts: [0.0; BINS],
            total: 0.0,
            unit: 1.0,
            growth: 1.0 / keep,
            lo: 0.0,
            width: 0.0,
            first: 0.0,
            mean: 0.0,
            dev: 0.0,
            keep,
            seen: 0,
            since_review: 0,
        }
    }

    /// Surprise of `x` before learning it: −log10 of the (smoothed) share of the recent mass
    /// in its bin, plus log10(1 + bins beyond the range) outside it. 0 before any sample.
    #[inline]
    pub fn surprise(&self, x: f64) -> f64 {
        if self.seen == 0 {
            return 0.0;
        }
        let total = self.total / self.unit;
        let (mass, beyond) = if self.width == 0.0 {
            // one value so far: all the mass is on it
            (if x == self.first { total } else { 0.0 }, 0.0)
        } else {
            let pos = ((x - self.lo) / self.width).floor();
            if pos >= 0.0 && pos < BINS as f64 {
                (self.counts[pos as usize] / self.unit, 0.0)
            } else if pos < 0.0 {
                (0.0, -pos)
            } else {
                (0.0, pos - BINS as f64 + 1.0)
            }
        };
        -((mass + PRIOR) / (total + PRIOR)).log10() + beyond.ln_1p() * std::f64::consts::LOG10_E
    }

    /// Learns `x` (finite).
    #[inline]
    pub fn push(&mut self, x: f64) {
        self.seen += 1;
        if self.seen == 1 {
            self.mean = x;
        } else {
            let a = 1.0 - self.keep;
            self.mean += a * (x - self.mean);
            self.dev += a * ((x - self.mean).abs() - self.dev);
        }
        self.unit *= self.growth;
        self.total += self.unit;
        if self.width == 0.0 {
            if self.seen == 1 {
                self.first = x;
                return;
            }
            if x == self.first || !self.init_range(x) {
                return; // still one value: its mass is `total`
            }
        }
        let Some(i) = self.cover(x) else {
            return; // started over around `x`
        };
        self.counts[i] += self.unit;
        if self.unit > RESCALE_AT {
            let s = 1.0 / self.unit;
            self.counts.iter_mut().for_each(|c| *c *= s);
            self.total *= s;
            self.unit = 1.0;
        }
        self.since_review += 1;
        if self.since_review as usize >= BINS {
            self.since_review = 0;
            self.maybe_shrink();
        }
    }

    /// The second distinct value: the two values sit at a quarter of the range from each
    /// other, in its middle; the mass so far (all on `first`, `x`'s own weight excluded)
    /// goes to `first`'s bin. False when the values are too close or far for a float range.
    fn init_range(&mut self, x: f64) -> bool {
        let (a, b) = (x.min(self.first), x.max(self.first));
        let width = (b - a) / (BINS as f64 / 4.0);
        let lo = a - width * (BINS as f64 * 3.0 / 8.0);
        if !(width > 0.0 && width.is_finite() && lo.is_finite()) {
            return false;
        }
        (self.width, self.lo) = (width, lo);
        let i = self.index(self.first);
        self.counts[i] = self.total - self.unit;
        true
    }

    /// Bin of `x`, which is in range.
    #[inline]
    fn index(&self, x: f64) -> usize {
        (((x - self.lo) / self.width) as usize).min(BINS - 1)
    }

    /// Doubles the range (anchored at the end away from `x`) until `x` is in it; returns its
    /// bin. After log2(BINS) doublings all old mass is in one end bin, so the work is
    /// O(BINS) however far `x` is. None when no float range holds both: the histogram then
    /// starts over with `x` as its one value.
    fn cover(&mut self, x: f64) -> Option<usize> {
        let span = |w: f64| w * BINS as f64;
        if x >= self.lo && x < self.lo + span(self.width) {
            return Some(self.index(x));
        }
        let up = x >= self.lo;
        let mut doublings = 0u32;
        let mut width = self.width;
        loop {
            width *= 2.0;
            doublings += 1;
            let lo = if up {
                self.lo
            } else {
                self.lo + span(self.width) - span(width)
            };
            if !(width.is_finite() && lo.is_finite()) {
                // beyond what a float range can hold: start over around the new value
                self.counts = [0.0; BINS];
                self.total = self.unit;
                self.width = 0.0;
                self.first = x;
                return None;
            }
            if x >= lo && x < lo + span(width) {
                break;
            }
        }
        for _ in 0..doublings.min(BINS.trailing_zeros()) {
            let old = self.counts;
            self.counts = [0.0; BINS];
            for (j, c) in old.iter().enumerate() {
                let k = if up { j / 2 } else { BINS / 2 + j / 2 };
                self.counts[k] += c;
            }
        }
        if !up {
            self.lo = self.lo + span(self.width) - span(width);
        }
        self.width = width;
        Some(self.index(x))
    }

    /// Halves the range to its lower, upper or middle half when the rest holds less than
    /// [`STALE_MASS`] (not below [`MIN_RANGE_DEVS`] mean deviations).
    fn maybe_shrink(&mut self) {
        if self.width == 0.0 || self.width * (BINS / 2) as f64 <= MIN_RANGE_DEVS * self.dev {
            return;
        }
        let half = BINS / 2;
        for start in [0, half, BINS / 4] {
            let inside: f64 = self.counts[start..start + half].iter().sum();
            if (self.total - inside) / self.unit >= STALE_MASS {
                continue;
            }
            let old = self.counts;
            for (k, c) in self.counts.iter_mut().enumerate() {
                *c = old[start + k / 2] / 2.0;
            }
            self.total = inside;
            self.lo += start as f64 * self.width;
            self.width /= 2.0;
            return;
        }
    }

    /// Heap bytes held (none: the histogram is inline).
    pub fn heap_bytes(&self) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_values_surprise_common_ones_do_not() {
        let mut d = Density::new(1000.0);
        for i in 0..2000 {
            d.push([20.0, 21.0, 19.0, 78.0, 80.0][i % 5]);
        }
        // both levels of a two-level series are normal
        assert!(d.surprise(20.0) < 1.0, "{}", d.surprise(20.0));
        assert!(d.surprise(79.0) < 1.0, "{}", d.surprise(79.0));
        // between them nothing was seen: an empty bin, log10((total + ½) / ½) ≈ 3.4
        let mid = d.surprise(50.0);
        assert!(mid > 3.0 && mid < 4.0, "{mid}");
        // beyond the range it grows with the distance: no tie at the top
        assert!(d.surprise(200.0) > mid);
        assert!(d.surprise(2000.0) > d.surprise(200.0));
    }

    #[test]
    fn a_level_shift_becomes_normal() {
        let mut d = Density::new(500.0);
        for i in 0..1000 {
            d.push(10.0 + (i % 3) as f64);
        }
        let mut s = Vec::new();
        for i in 0..300 {
            let x = 50.0 + (i % 3) as f64;
            s.push(d.surprise(x));
            d.push(x);
        }
        assert!(s[0] > 3.0, "{}", s[0]);
        assert!(s[299] < 1.0, "{}", s[299]);
        // it decays: each bin's mass only grows while the series stays there
        assert!(s[50] < s[0] && s[150] < s[50]);
    }

    #[test]
    fn range_shrinks_after_a_spike_is_forgotten() {
        let mut d = Density::new(50.0);
        for i in 0..200 {
            d.push((i % 4) as f64);
        }
        let w = d.width;
        d.push(1e6);
        assert!(d.width > 1000.0 * w);
        for i in 0..2000 {
            d.push((i % 4) as f64);
        }
        // back to a resolution at the scale of the data
        assert!(d.width < 1.0, "{}", d.width);
        assert!(d.surprise(1.0) < 1.0 && d.surprise(40.0) > 2.0);
    }

    #[test]
    fn constant_then_change_and_extremes() {
        let mut d = Density::new(100.0);
        for _ in 0..300 {
            d.push(5.0);
        }
        assert_eq!(d.width, 0.0);
        assert!(d.surprise(5.0) < 0.01);
        assert!(d.surprise(6.0) > 2.0);
        d.push(6.0);
        assert!(d.width > 0.0);
        // the constant's mass survived the range's creation
        assert!(d.surprise(5.0) < 0.01, "{}", d.surprise(5.0));
        for x in [f64::MAX, -f64::MAX, 1e-300, 0.0, 5.0] {
            d.push(x);
            assert!(d.surprise(x).is_finite());
        }
        // the lazy decay rescales instead of overflowing
        let mut d = Density::new(1.0);
        for i in 0..5000 {
            d.push((i % 7) as f64);
        }
        assert!(d.unit.is_finite() && d.total.is_finite());
        assert!(d.surprise(3.0).is_finite());
    }
}
