//! A target's circuit breaker. Closed: actions run; `failures` failed, timed-out,
//! interrupted or unverified actions within `window` open it. Open: actions on the target
//! are skipped (`breaker_open`) until the backoff has passed, then it is half-open: one
//! trial action runs. A verified success closes it (and resets the backoff); a failure
//! re-opens it with the backoff doubled (up to `max_backoff`). An operator can reset it.
//! The state is journaled, so a restart neither forgets an open breaker nor its failures.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::policy::BreakerConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// The value of `medic_breaker_state`: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What the breaker says about one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go.
    Yes,
    /// Half-open: this is the one trial action.
    Trial,
    /// Open, or half-open with its trial already running.
    No,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    pub state: BreakerState,
    /// Times of failures counted toward opening (closed state; pruned to the window).
    pub failures: VecDeque<i64>,
    /// When it last opened.
    pub opened_ms: i64,
    /// The current backoff (ms); 0 until it first opens.
    pub backoff_ms: i64,
    /// A trial action is running (half-open).
    pub trial_running: bool,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: BreakerState::Closed,
            failures: VecDeque::new(),
            opened_ms: 0,
            backoff_ms: 0,
            trial_running: false,
        }
    }
}

impl Breaker {
    /// Brings the state up to `now` (open → half-open once the backoff has passed).
    pub fn tick(&mut self, now_ms: i64) {
        if self.state == BreakerState::Open
            && now_ms >= self.opened_ms.saturating_add(self.backoff_ms)
        {
            self.state = BreakerState::HalfOpen;
            self.trial_running = false;
        }
    }

    /// When an open breaker turns half-open.
    pub fn half_open_at(&self) -> Option<i64> {
        (self.state == BreakerState::Open).then(|| self.opened_ms.saturating_add(self.backoff_ms))
    }

    pub fn admit(&mut self, now_ms: i64) -> Admit {
        self.tick(now_ms);
        match self.state {
            BreakerState::Closed => Admit::Yes,
            BreakerState::HalfOpen if !self.trial_running => {
                self.trial_running = true;
                Admit::Trial
            }
            _ => Admit::No,
        }
    }

    /// A failed or unverified action. Returns true when this opened the breaker.
    pub fn failure(&mut self, cfg: &BreakerConfig, now_ms: i64) -> bool {
        match self.state {
            BreakerState::HalfOpen => {
                self.open(cfg, now_ms, true);
                true
            }
            BreakerState::Open => false,
            BreakerState::Closed => {
                self.failures.push_back(now_ms);
                let window = cfg.window.as_millis_i64();
                while self
                    .failures
                    .front()
                    .is_some_and(|t| now_ms.saturating_sub(*t) >= window)
                {
                    self.failures.pop_front();
                }
                if cfg.failures > 0 && self.failures.len() >= cfg.failures as usize {
                    self.open(cfg, now_ms, false);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// A verified success (or an ok action whose step verifies nothing). Returns true when
    /// this closed the breaker.
    pub fn success(&mut self) -> bool {
        if self.state == BreakerState::HalfOpen {
            *self = Breaker::default();
            return true;
        }
        false
    }

    /// The trial action ended without a verdict (cancelled, skipped): let another through.
    pub fn trial_abandoned(&mut self) {
        self.trial_running = false;
    }

    /// Manual reset: closed, failures and backoff forgotten.
    pub fn reset(&mut self) {
        *self = Breaker::default();
    }

    fn open(&mut self, cfg: &BreakerConfig, now_ms: i64, reopen: bool) {
        let base = cfg.backoff.as_millis_i64().max(1);
        self.backoff_ms = if reopen && self.backoff_ms > 0 {
            self.backoff_ms
                .saturating_mul(2)
                .min(cfg.max_backoff.as_millis_i64().max(base))
        } else {
            base
        };
        self.state = BreakerState::Open;
        self.opened_ms = now_ms;
        self.failures.clear();
        self.trial_running = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::Duration;

    #[test]
    fn opens_half_opens_doubles_and_closes() {
        let cfg = BreakerConfig {
            failures: 2,
            window: Duration::from_secs(60),
            backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(25),
        };
        let mut b = Breaker::default();
        assert!(!b.failure(&cfg, 0));
        // outside the window: the first failure no longer counts
        assert!(!b.failure(&cfg, 70_000));
        assert!(b.failure(&cfg, 71_000));
        assert_eq!(b.admit(75_000), Admit::No);
        assert_eq!(b.admit(81_000), Admit::Trial);
        assert_eq!(b.admit(81_000), Admit::No, "one trial at a time");
        assert!(b.failure(&cfg, 82_000));
        assert_eq!(b.backoff_ms, 20_000);
        assert_eq!(b.admit(101_000), Admit::No);
        assert_eq!(b.admit(102_000), Admit::Trial);
        assert!(b.failure(&cfg, 103_000));
        assert_eq!(b.backoff_ms, 25_000, "capped");
        assert_eq!(b.admit(128_000), Admit::Trial);
        assert!(b.success());
        assert_eq!(b, Breaker::default());
        b.failure(&cfg, 0);
        b.failure(&cfg, 1);
        b.reset();
        assert_eq!(b.admit(2), Admit::Yes);
    }
}
