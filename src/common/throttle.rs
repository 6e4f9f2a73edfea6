//! Rate-limited logging: a condition that can recur on every sample (a full store, a
//! target over its limit) is logged at most once a period, with a count of what happened
//! since, instead of flooding the journal.

use std::time::{Duration, Instant};

/// Says when a recurring event may be logged again.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    last: Option<Instant>,
    /// Events since the last log line (the next line reports them).
    pending: u64,
}

impl LogThrottle {
    pub const fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            last: None,
            pending: 0,
        }
    }

    /// Records `n` events at `now`; returns how many happened since the last line when a
    /// line is due now (the first event logs at once), else `None`.
    pub fn record(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.pending += n;
        let due = self
            .last
            .is_none_or(|t| now.saturating_duration_since(t) >= self.period);
        if due && self.pending > 0 {
            self.last = Some(now);
            Some(std::mem::take(&mut self.pending))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_once_a_period_with_the_count_since() {
        let mut t = LogThrottle::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(t.record(3, t0), Some(3));
        assert_eq!(t.record(5, t0 + Duration::from_secs(1)), None);
        assert_eq!(t.record(2, t0 + Duration::from_secs(59)), None);
        assert_eq!(t.record(1, t0 + Duration::from_secs(60)), Some(8));
        assert_eq!(t.record(0, t0 + Duration::from_secs(200)), None);
    }
}
