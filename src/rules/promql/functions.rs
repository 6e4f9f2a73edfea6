//! PromQL functions over evaluated arguments. The evaluator (eval.rs) evaluates the
//! arguments and calls [`call`]; functions that need the unevaluated expression
//! (`absent`, `absent_over_time`, `timestamp`) are handled by the evaluator itself.

use super::{PromqlError, RangeSeries, Value};
use crate::store::Sample;

/// Evaluation context of one call.
#[derive(Debug, Clone, Copy)]
pub struct FnCtx {
    /// The evaluation timestamp.
    pub at_ms: i64,
}

/// An evaluated function argument.
#[derive(Debug, Clone)]
pub enum Arg {
    Scalar(f64),
    String(String),
    /// An instant vector; samples are stamped with the evaluation time.
    Vector(Vec<Sample>),
    /// A range vector with the window it was selected over: points satisfy
    /// `range_start_ms < t <= range_end_ms` (after `offset` and `@` are applied), which is
    /// what extrapolating functions (`rate`, `increase`, `delta`) need.
    Matrix {
        series: Vec<RangeSeries>,
        range_start_ms: i64,
        range_end_ms: i64,
    },
}

/// Calls function `name` with evaluated `args`.
pub fn call(name: &str, _args: Vec<Arg>, _ctx: &FnCtx) -> Result<Value, PromqlError> {
    Err(PromqlError::Unsupported(format!("function {name}")))
}
