//! Detectors turn collected series into signals and publish them as series:
//! `anomaly` (the 2σ family) and `slo` (error budgets and burn rates).

use serde::Deserialize;

/// An anomaly detector's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {}

/// An SLO's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {}
