//! What an evaluation takes and returns: its options, its values, its errors.

use crate::store::{Labels, Sample};

/// Prometheus' default lookback delta.
pub const LOOKBACK_DELTA_MS: i64 = 5 * 60 * 1000;

/// A series of a range vector.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The result of an instant evaluation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar {
        timestamp_ms: i64,
        value: f64,
    },
    String(String),
    /// An instant vector: each sample stamped with the evaluation time.
    Vector(Vec<Sample>),
    Matrix(Vec<RangeSeries>),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum PromqlError {
    /// `line:col: parse error: what` (the place when known), as Prometheus words it.
    #[error("{0}")]
    Parse(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Eval(String),
}

/// Default step of subqueries without an explicit resolution (Prometheus uses the global
/// evaluation interval, 1 m by default).
pub const DEFAULT_SUBQUERY_STEP_MS: i64 = 60 * 1000;

/// Settings of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    /// What `@ start()` means; the evaluation time when `None`. Set it (and `end_ms`) when a
    /// range query is run as instant evaluations at each step.
    pub start_ms: Option<i64>,
    /// What `@ end()` means; the evaluation time when `None`.
    pub end_ms: Option<i64>,
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_ms: i64,
    /// The step of the range query this instant evaluation is part of (what `step()`
    /// returns); 0 when `None`.
    pub step_ms: Option<i64>,
    /// Step of subqueries written without one, e.g. `x[10m:]` (the rule group's interval).
    pub default_step_ms: i64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            start_ms: None,
            end_ms: None,
            step_ms: None,
            lookback_ms: LOOKBACK_DELTA_MS,
            default_step_ms: DEFAULT_SUBQUERY_STEP_MS,
        }
    }
}
