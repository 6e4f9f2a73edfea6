//! PromQL over medic's store: parsing (promql-parser) and instant evaluation with
//! Prometheus' semantics.

mod check;
mod eval;
pub mod functions;
pub(crate) mod gostr;
pub mod kahan;
pub mod notation;
pub mod syntax;
mod value;

pub use check::{check_supported, max_lookback_ms};
pub use promql_parser::parser::Expr;
pub use value::{
    DEFAULT_SUBQUERY_STEP_MS, EvalOptions, LOOKBACK_DELTA_MS, PromqlError, RangeSeries, Value,
};

use crate::store::{Reader, Store};

/// Parses an expression. String literals are Go strings: byte escapes (`"\xc5"`) decode to
/// bytes as in Prometheus (see [`gostr`]). Expressions over the size and depth limits of
/// [`syntax`] are refused before any other work; errors say where and what was expected
/// (`1:7: parse error: unclosed left parenthesis`).
pub fn parse(input: &str) -> Result<Expr, PromqlError> {
    let scout = syntax::check(input);
    if let Err(e) = &scout
        && e.limit
    {
        return Err(PromqlError::Parse(e.render(input)));
    }
    promql_parser::parser::parse(&gostr::decode_literals(input)).map_err(|m| {
        PromqlError::Parse(match scout {
            // the recognizer's place and words where it saw the error too
            Err(e) => e.render(input),
            // well-formed: a type error or an unknown name, placed by what it names
            Ok(shape) => syntax::explain(input, &shape, &m),
        })
    })
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
