//! Token buckets: `N per D` holds at most N tokens and refills N per D, evenly. Every action
//! takes one token from the global bucket, its rule's and its target's; if any is empty the
//! action is skipped (`budget_exhausted`). Bucket levels are journaled, so a restart does
//! not hand out fresh budgets.

use serde::{Deserialize, Serialize};

use super::policy::Budget;

/// One bucket's level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Tokens left (fractional while refilling).
    pub tokens: f64,
    /// When `tokens` was computed (ms since the epoch).
    pub at_ms: i64,
}

impl Bucket {
    /// A full bucket.
    pub fn full(b: Budget, now_ms: i64) -> Bucket {
        Bucket {
            tokens: f64::from(b.max),
            at_ms: now_ms,
        }
    }

    /// The level at `now_ms` under budget `b` (a changed budget caps it at the new max).
    pub fn level(&self, b: Budget, now_ms: i64) -> f64 {
        let per_ms = b.per.as_millis_i64().max(1) as f64;
        let elapsed = now_ms.saturating_sub(self.at_ms).max(0) as f64;
        (self.tokens + elapsed * f64::from(b.max) / per_ms).min(f64::from(b.max))
    }

    /// Whether a token is there at `now_ms`.
    pub fn has_token(&self, b: Budget, now_ms: i64) -> bool {
        self.level(b, now_ms) >= 1.0
    }

    /// Takes one token (the caller checked [`Bucket::has_token`]).
    pub fn take(&mut self, b: Budget, now_ms: i64) {
        self.tokens = (self.level(b, now_ms) - 1.0).max(0.0);
        self.at_ms = now_ms;
    }

    /// When the next token will be there.
    pub fn next_token_ms(&self, b: Budget, now_ms: i64) -> i64 {
        let level = self.level(b, now_ms);
        if level >= 1.0 {
            return now_ms;
        }
        let per_token_ms = b.per.as_millis_i64() as f64 / f64::from(b.max);
        now_ms + ((1.0 - level) * per_token_ms).ceil() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_evenly_and_caps() {
        let b = Budget::parse("3 per 1h").unwrap();
        let mut k = Bucket::full(b, 0);
        for _ in 0..3 {
            assert!(k.has_token(b, 0));
            k.take(b, 0);
        }
        assert!(!k.has_token(b, 0));
        assert_eq!(k.next_token_ms(b, 0), 1_200_000);
        assert!(!k.has_token(b, 1_199_999));
        assert!(k.has_token(b, 1_200_000));
        assert_eq!(k.level(b, 100 * 3_600_000), 3.0);
    }
}
