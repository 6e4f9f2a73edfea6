//! The contract every collector meets: the [`Collector`] trait, what `build()` gets
//! ([`BuildContext`]) and the errors. Collector files use this; `mod.rs` composes them.

use std::time::Duration as StdDuration;

use async_trait::async_trait;

use crate::common::Duration;
use crate::store::Sample;

/// What `build()` gets besides its own config.
pub struct BuildContext<'a> {
    /// The collector's name (the key under `collectors:`).
    pub name: &'a str,
    /// `global.collect_interval`: the interval of a collector that sets none.
    pub default_interval: Duration,
    /// `global.collect_timeout`: the timeout of a collector that sets none.
    pub default_timeout: Duration,
}

/// When and how long a collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: StdDuration,
    pub timeout: StdDuration,
}

impl<'a> BuildContext<'a> {
    /// A context with medic's default interval (15s) and timeout (10s), as an empty
    /// `global:` gives.
    pub fn new(name: &'a str) -> Self {
        BuildContext {
            name,
            default_interval: Duration::from_secs(15),
            default_timeout: Duration::from_secs(10),
        }
    }

    /// The schedule from a collector's own `interval`/`timeout`, falling back to `global`.
    /// An unset timeout is capped at the interval (as Prometheus caps scrape_timeout); a set
    /// one longer than the interval is an error, since rounds would pile up.
    pub fn schedule(
        &self,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<Schedule, BuildError> {
        let interval = interval.unwrap_or(self.default_interval).0;
        if interval.is_zero() {
            return Err(self.invalid("interval must be greater than 0"));
        }
        let timeout = match timeout {
            Some(t) if t.0.is_zero() => return Err(self.invalid("timeout must be greater than 0")),
            Some(t) if t.0 > interval => {
                return Err(self.invalid(format!(
                    "timeout {t} is longer than the interval {}",
                    Duration(interval)
                )));
            }
            Some(t) => t.0,
            None => self.default_timeout.0.min(interval),
        };
        Ok(Schedule { interval, timeout })
    }

    /// A build error for this collector.
    pub fn invalid(&self, message: impl Into<String>) -> BuildError {
        BuildError {
            collector: self.name.to_string(),
            message: message.into(),
        }
    }
}

/// A collector config that cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
#[error("collector {collector:?}: {message}")]
pub struct BuildError {
    pub collector: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Failed(String),
}

/// One collector. `collect` appends the samples of one round to `out`, stamped `now_ms`
/// unless the source carries its own timestamps.
#[async_trait]
pub trait Collector: Send + Sync {
    /// The configured name (the `collector` label of self-metrics).
    fn name(&self) -> &str;
    fn interval(&self) -> std::time::Duration;
    fn timeout(&self) -> std::time::Duration;
    /// New series this collector may add: `(per_minute, burst)`, or `None` for no limit
    /// beyond the store's. A scrape target sets it (`new_series_limit`).
    fn new_series_limit(&self) -> Option<(u32, u32)> {
        None
    }
    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError>;
}
