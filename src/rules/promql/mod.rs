//! PromQL over medic's store: parsing (promql-parser) and instant evaluation with
//! Prometheus' semantics.

pub mod functions;
pub mod notation;

pub use promql_parser::parser::Expr;

use crate::store::{Labels, Sample, Store};

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
    #[error("parse error: {0}")]
    Parse(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Eval(String),
}

/// Parses an expression.
pub fn parse(input: &str) -> Result<Expr, PromqlError> {
    promql_parser::parser::parse(input).map_err(PromqlError::Parse)
}

/// Evaluates `expr` at `at_ms` over `store`.
pub fn eval_instant(_store: &Store, _expr: &Expr, _at_ms: i64) -> Result<Value, PromqlError> {
    Err(PromqlError::Unsupported("evaluator not built yet".into()))
}
