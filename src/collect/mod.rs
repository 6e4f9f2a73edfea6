//! Collectors: each polls one thing on its own interval and returns samples for the store.
//! The scheduler runs each one in its own task with its own timeout, so a hung collector
//! never delays another or the rule engine.
//!
//! A collector is a config struct (a variant of [`CollectorConfig`]) plus a `build()` that
//! makes the running [`Collector`]. `build()` must not connect anywhere or touch hardware
//! (`medic check` calls it to validate); do that lazily in `collect`.

pub mod blocking;
pub mod collector;
pub mod drift;
pub mod exposition;
pub mod gpu;
pub mod host;
pub mod memcached;
pub mod once;
pub mod probe;
pub mod process;
pub mod redis;
pub mod scheduler;
pub mod scrape;
pub mod target;

use std::sync::Arc;

use serde::Deserialize;

pub use collector::{BuildContext, BuildError, CollectError, Collector, Schedule};
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
    /// A deployed release folder, hashed against the manifest deployed with it.
    ReleaseDrift(drift::DriftConfig),
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
            CollectorConfig::ReleaseDrift(c) => c.build(ctx),
        }
    }
}
