//! Collectors: each polls one thing on its own interval and returns samples for the store.
//! The scheduler runs each one in its own task with its own timeout, so a hung collector
//! never delays another or the rule engine.
//!
//! A collector is a config struct (a variant of [`CollectorConfig`]) plus a `build()` that
//! makes the running [`Collector`]. `build()` must not connect anywhere or touch hardware
//! (`medic check` calls it to validate); do that lazily in `collect`.

pub mod host;
pub mod probe;
pub mod scheduler;

use std::sync::Arc;
use std::time::Duration as StdDuration;

pub mod blocking;
pub mod exposition;
pub mod gpu;
pub mod memcached;
pub mod once;
pub mod process;
pub mod redis;
pub mod scrape;
pub mod target;

use async_trait::async_trait;
use serde::Deserialize;

use crate::config::{Config, Duration, GlobalConfig};
use crate::store::Sample;

pub use scheduler::Scheduler;

/// A configured collector, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CollectorConfig {
    /// The local host: load, memory, filesystems, network, CPU, with node_exporter's names.
    Host(host::HostConfig),
    /// One HTTP(S) endpoint, probed like blackbox_exporter's `http` module.
    HttpProbe(probe::ProbeConfig),
    /// A Prometheus/OpenMetrics text endpoint (a service's own `/metrics`), scraped.
    Scrape(scrape::ScrapeConfig),
    /// A Redis server, read with `INFO`, with redis_exporter's names.
    Redis(redis::RedisConfig),
    /// A memcached server, read with `stats`, with memcached_exporter's names.
    Memcached(memcached::MemcachedConfig),
    /// A service process (by name, command line, pidfile or systemd unit), read from /proc.
    Process(process::ProcessConfig),
    /// Every NVIDIA GPU of the host, through NVML, with dcgm-exporter's names.
    Gpu(gpu::GpuConfig),
}

impl CollectorConfig {
    /// Makes the running collector. Validates, reads secrets; connects to nothing.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        match self {
            CollectorConfig::Host(c) => c.build(ctx),
            CollectorConfig::HttpProbe(c) => c.build(ctx),
            CollectorConfig::Scrape(c) => c.build(ctx),
            CollectorConfig::Redis(c) => c.build(ctx),
            CollectorConfig::Memcached(c) => c.build(ctx),
            CollectorConfig::Process(c) => c.build(ctx),
            CollectorConfig::Gpu(c) => c.build(ctx),
        }
    }
}

/// What `build()` gets besides its own config.
pub struct BuildContext<'a> {
    /// The collector's name (the key under `collectors:`).
    pub name: &'a str,
    pub global: &'a GlobalConfig,
}

/// When and how long a collector runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: StdDuration,
    pub timeout: StdDuration,
}

impl BuildContext<'_> {
    /// The schedule from a collector's own `interval`/`timeout`, falling back to `global`.
    /// An unset timeout is capped at the interval (as Prometheus caps scrape_timeout); a set
    /// one longer than the interval is an error, since rounds would pile up.
    pub fn schedule(
        &self,
        interval: Option<Duration>,
        timeout: Option<Duration>,
    ) -> Result<Schedule, BuildError> {
        let interval = interval.unwrap_or(self.global.collect_interval).0;
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
            None => self.global.collect_timeout.0.min(interval),
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

/// Builds every collector in `config`; all errors, not just the first.
pub fn build_all(config: &Config) -> Result<Vec<Arc<dyn Collector>>, Vec<BuildError>> {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for (name, c) in &config.collectors {
        let ctx = BuildContext {
            name,
            global: &config.global,
        };
        match c.build(&ctx) {
            Ok(c) => ok.push(c),
            Err(e) => errs.push(e),
        }
    }
    if errs.is_empty() { Ok(ok) } else { Err(errs) }
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
    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError>;
}
