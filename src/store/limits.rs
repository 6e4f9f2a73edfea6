//! How many series the store takes: a store-wide cap (`global.max_series`) and, per writer
//! (a scrape target), a budget of new series, so one target that invents series (a request
//! ID in a label) can neither grow memory without bound nor take the whole cap.

use std::time::Instant;

/// A token bucket of new series for one writer: it starts full at `burst` (a target's
/// first scrape lands whole) and refills `per_minute`.
#[derive(Debug, Clone)]
pub struct SeriesBudget {
    per_minute: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl SeriesBudget {
    /// `per_minute` new series a minute, up to `burst` (at least `per_minute`) at once.
    pub fn new(per_minute: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(per_minute));
        SeriesBudget {
            per_minute: f64::from(per_minute),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes one new series from the budget; false when it is spent.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_minute / 60.0).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Samples of new series an append refused, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refused {
    /// The store held `max_series` series.
    pub max_series: u64,
    /// The writer's [`SeriesBudget`] was spent.
    pub new_series_limit: u64,
}

impl Refused {
    pub fn any(&self) -> bool {
        self.max_series + self.new_series_limit > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_bursts_then_refills_per_minute() {
        let t0 = Instant::now();
        let mut b = SeriesBudget::new(60, 100, t0);
        assert_eq!((0..150).filter(|_| b.take(t0)).count(), 100);
        // one a second
        assert!(!b.take(t0 + Duration::from_millis(500)));
        assert!(b.take(t0 + Duration::from_millis(1000)));
        assert!(!b.take(t0 + Duration::from_millis(1000)));
        // refills to the burst, not beyond
        let later = t0 + Duration::from_secs(3600);
        assert_eq!((0..150).filter(|_| b.take(later)).count(), 100);
    }
}
