//! Collectors: each polls one thing on its own interval and returns samples for the store.
//! The scheduler runs each one in its own task with its own timeout, so a hung collector
//! never delays another or the rule engine.

pub mod exposition;
pub mod scrape;

use async_trait::async_trait;
use serde::Deserialize;

use crate::store::Sample;

/// A configured collector, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CollectorConfig {}

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
