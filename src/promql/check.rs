//! Load-time checks on a parsed expression: what medic cannot evaluate, and how far back in
//! time it reads (so the store keeps just enough history for the loaded rules).

use promql_parser::parser::{Expr, Offset};

use super::{LOOKBACK_DELTA_MS, PromqlError};

/// Functions that only make sense on native histograms (out of scope).
const NATIVE_HISTOGRAM_FUNCTIONS: &[&str] = &[
    "histogram_avg",
    "histogram_count",
    "histogram_sum",
    "histogram_stddev",
    "histogram_stdvar",
];

/// Experimental functions (behind a feature flag in Prometheus) that medic implements.
const SUPPORTED_EXPERIMENTAL: &[&str] = &[
    "sort_by_label",
    "sort_by_label_desc",
    "mad_over_time",
    "double_exponential_smoothing",
    "histogram_quantiles",
    "max_of",
    "min_of",
    "ts_of_first_over_time",
    "ts_of_last_over_time",
    "ts_of_max_over_time",
    "ts_of_min_over_time",
    "start",
    "end",
    "range",
    "step",
];

/// Rejects what the evaluator does not support, naming the construct.
pub fn check_supported(expr: &Expr) -> Result<(), PromqlError> {
    let unsupported = |what: String| Err(PromqlError::Unsupported(what));
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::VectorSelector(_) => Ok(()),
        Expr::MatrixSelector(_) => Ok(()),
        Expr::Paren(p) => check_supported(&p.expr),
        Expr::Unary(u) => check_supported(&u.expr),
        Expr::Subquery(s) => check_supported(&s.expr),
        Expr::Binary(b) => {
            if let Some(m) = &b.modifier
                && (m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some())
            {
                return unsupported(format!(
                    "the experimental fill modifier in `{}`",
                    short(expr)
                ));
            }
            check_supported(&b.lhs)?;
            check_supported(&b.rhs)
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                check_supported(p)?;
            }
            check_supported(&a.expr)
        }
        Expr::Call(c) => {
            let name = c.func.name;
            if NATIVE_HISTOGRAM_FUNCTIONS.contains(&name) {
                return unsupported(format!(
                    "function {name}() works on native histograms, which medic does not store"
                ));
            }
            if name == "info" {
                return unsupported("function info() (needs target-info metadata)".into());
            }
            if c.func.experimental && !SUPPORTED_EXPERIMENTAL.contains(&name) {
                return unsupported(format!("the experimental function {name}()"));
            }
            c.args.args.iter().try_for_each(|a| check_supported(a))
        }
        Expr::Extension(x) => unsupported(format!("extension expression {}", x.expr.name())),
    }
}

fn short(e: &Expr) -> String {
    let s = e.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        Some(Offset::Pos(d)) => d.as_millis() as i64,
        // reading the future reaches less far back
        Some(Offset::Neg(d)) => -(d.as_millis() as i64),
        None => 0,
    }
}

/// How far before the evaluation time `expr` reads samples, so the store keeps just what
/// the loaded expressions read. Every selector counts its range (0 for an instant
/// selector) + its offset + the 5 m lookback; a subquery adds its range + offset to what
/// its inner expression reads (its first step lies inside its range, so the step adds
/// nothing). The longest chain wins. A negative offset shortens the chain (never below
/// 0). `@` pins a selector to a fixed time, which retention cannot serve in general; it
/// counts as if absent.
///
/// Public: besides the rule engine, the anomaly detectors size their own queries' history
/// with it.
pub fn max_lookback_ms(expr: &Expr) -> i64 {
    match expr {
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => 0,
        Expr::VectorSelector(vs) => (offset_ms(&vs.offset) + LOOKBACK_DELTA_MS).max(0),
        Expr::MatrixSelector(ms) => {
            (ms.range.as_millis() as i64 + offset_ms(&ms.vs.offset) + LOOKBACK_DELTA_MS).max(0)
        }
        Expr::Paren(p) => max_lookback_ms(&p.expr),
        Expr::Unary(u) => max_lookback_ms(&u.expr),
        Expr::Subquery(s) => {
            (s.range.as_millis() as i64 + offset_ms(&s.offset) + max_lookback_ms(&s.expr)).max(0)
        }
        Expr::Binary(b) => max_lookback_ms(&b.lhs).max(max_lookback_ms(&b.rhs)),
        Expr::Aggregate(a) => {
            let p = a.param.as_deref().map_or(0, max_lookback_ms);
            p.max(max_lookback_ms(&a.expr))
        }
        Expr::Call(c) => c
            .args
            .args
            .iter()
            .map(|a| max_lookback_ms(a))
            .max()
            .unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::parse;

    #[test]
    fn lookback_follows_ranges_offsets_and_subqueries() {
        const M: i64 = 60_000;
        let m = |s: &str| max_lookback_ms(&parse(s).unwrap());
        // range (0 for an instant selector) + offset + 5 m lookback, for every selector
        assert_eq!(m("up"), 5 * M);
        assert_eq!(m("rate(x[10m])"), (10 + 5) * M);
        assert_eq!(m("rate(x[10m] offset 1h)"), (10 + 60 + 5) * M);
        assert_eq!(m("x offset 2m"), (2 + 5) * M);
        assert_eq!(m("x offset -3m"), (5 - 3) * M);
        assert_eq!(m("x offset -10m"), 0);
        // a subquery adds its range and offset to what its inner expression reads
        assert_eq!(m("max_over_time(rate(x[1m])[30m:1m])"), (30 + 1 + 5) * M);
        assert_eq!(
            m("max_over_time(rate(x[1m])[30m:1m] offset 10m)"),
            (30 + 10 + 1 + 5) * M
        );
        assert_eq!(m("min_over_time(up[1h:])"), (60 + 5) * M);
        // the longest chain wins
        assert_eq!(m("a / on(x) (b + max_over_time(c[2h]) * 0)"), (120 + 5) * M);
        assert_eq!(m("topk(3, x) + vector(1)"), 5 * M);
        assert_eq!(m("vector(1)"), 0);
    }

    #[test]
    fn rejects_native_histogram_and_experimental_constructs() {
        let c = |s: &str| check_supported(&parse(s).unwrap());
        assert!(c("sum by (job) (rate(x[5m])) > 1").is_ok());
        let e = c("histogram_count(rate(x[5m]))").unwrap_err();
        assert!(e.to_string().contains("histogram_count"), "{e}");
        let e = c("x + fill(0) y").unwrap_err();
        assert!(e.to_string().contains("fill"), "{e}");
        let e = c("integral(x[5m])").unwrap_err();
        assert!(e.to_string().contains("integral"), "{e}");
    }
}
