//! Shared pieces of the collectors that watch one remote target (scrape, Redis, memcached):
//! per-target label sets, a round budget inside the scheduler's timeout, and outage logging
//! that says once that a target is down rather than on every round.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::store::{Labels, METRIC_NAME};

/// The time a round may spend talking to its target: 90% of the collector's timeout, so a
/// slow target is cut by the collector itself, which still reports `*_up 0` and its error
/// counter, before the scheduler's own timeout would drop the round's output.
pub fn round_budget(timeout: Duration) -> Duration {
    timeout.mul_f64(0.9)
}

/// The labels every series of one target carries (`instance` plus configured extras).
#[derive(Debug, Clone)]
pub struct TargetLabels(Vec<(String, String)>);

impl TargetLabels {
    pub fn new(instance: &str, extra: &BTreeMap<String, String>) -> Self {
        let mut v = vec![("instance".to_string(), instance.to_string())];
        for (k, val) in extra {
            v.retain(|(x, _)| x != k);
            v.push((k.clone(), val.clone()));
        }
        TargetLabels(v)
    }

    /// The label set of series `name` of this target, with `extra` labels.
    pub fn series(&self, name: &str, extra: &[(&str, &str)]) -> Labels {
        Labels::new(
            std::iter::once((METRIC_NAME, name))
                .chain(self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .chain(extra.iter().copied()),
        )
    }
}

/// Remembers whether a target is down so an outage is logged once (at warn) and its end once
/// (at info); the rounds in between log at debug.
#[derive(Debug, Default)]
pub struct OutageLog {
    down: AtomicBool,
}

impl OutageLog {
    pub fn failed(&self, collector: &str, error: &dyn std::fmt::Display) {
        self.failed_as(collector, "target", error)
    }

    pub fn ok(&self, collector: &str) {
        self.ok_as(collector, "target")
    }

    /// As [`failed`](Self::failed), for a `what` that is not a remote target (e.g. "GPU reading").
    pub fn failed_as(&self, collector: &str, what: &str, error: &dyn std::fmt::Display) {
        if self.down.swap(true, Ordering::Relaxed) {
            tracing::debug!(collector, "{what} still down: {error}");
        } else {
            tracing::warn!(collector, "{what} down: {error}");
        }
    }

    pub fn ok_as(&self, collector: &str, what: &str) {
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(collector, "{what} is up again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_labels() {
        let mut extra = BTreeMap::new();
        extra.insert("env".to_string(), "prod".to_string());
        let t = TargetLabels::new("h:1", &extra);
        let l = t.series("redis_up", &[("db", "db0")]);
        assert_eq!(
            l.to_string(),
            "redis_up{db=\"db0\", env=\"prod\", instance=\"h:1\"}"
        );
        assert_eq!(
            round_budget(Duration::from_secs(10)),
            Duration::from_secs(9)
        );
    }
}
