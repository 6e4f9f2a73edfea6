//! PromQL over medic's store: parsing (promql-parser) and instant evaluation with
//! Prometheus' semantics.

mod check;
mod eval;
pub mod functions;
pub(crate) mod gostr;
pub mod kahan;
pub mod notation;

pub use check::{check_supported, max_lookback_ms};
pub use promql_parser::parser::Expr;

use crate::store::{Labels, Reader, Sample, Store};

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

/// Parses an expression. String literals are Go strings: byte escapes (`"\xc5"`) decode to
/// bytes as in Prometheus (see [`gostr`]).
pub fn parse(input: &str) -> Result<Expr, PromqlError> {
    promql_parser::parser::parse(&gostr::decode_literals(input)).map_err(PromqlError::Parse)
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

/// Evaluates `expr` at `at_ms` over `store`.
pub fn eval_instant(store: &Store, expr: &Expr, at_ms: i64) -> Result<Value, PromqlError> {
    eval_instant_with(store, expr, at_ms, &EvalOptions::default())
}

/// Evaluates `expr` at `at_ms` over `store` with explicit options.
pub fn eval_instant_with(
    store: &Store,
    expr: &Expr,
    at_ms: i64,
    opts: &EvalOptions,
) -> Result<Value, PromqlError> {
    eval_with_reader(&store.reader(), expr, at_ms, opts)
}

/// Evaluates over an already held read view (the read lock stays held until the reader is
/// dropped, so several queries can share one consistent state). Rule groups do not hold
/// one across a round: each rule's query takes its own, so that recording results written
/// between rules are visible to the rules after them.
pub fn eval_with_reader(
    reader: &Reader<'_>,
    expr: &Expr,
    at_ms: i64,
    opts: &EvalOptions,
) -> Result<Value, PromqlError> {
    eval::evaluate(reader, expr, at_ms, opts)
}
