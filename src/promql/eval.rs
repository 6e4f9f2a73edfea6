//! The instant evaluator: walks the parsed expression at one timestamp over a store
//! [`Reader`], following Prometheus' `promql/engine.go`.
//!
//! `__name__` removal is delayed as in Prometheus 3 (its test suite runs that way): an
//! operation that drops the metric name only flags the element, the name is removed when the
//! result leaves the evaluator, and only then must label sets be unique. Until then
//! `label_replace(rate(x[5m]), "n", "$1", "__name__", "(.*)")` can still read the name.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::Hasher;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::token::{self, TokenId};
use promql_parser::parser::{
    AggregateExpr, AtModifier, BinaryExpr, Call, Expr, LabelModifier, MatrixSelector, Offset,
    SubqueryExpr, VectorMatchCardinality, VectorSelector,
};

use super::functions::{self, Arg, FnCtx};
use super::kahan::kahan_sum_inc;
use super::{EvalOptions, PromqlError, RangeSeries, Value};
use crate::store::{
    FastHashMap, FastHasher, Labels, METRIC_NAME, Reader, Sample, SeriesId, is_stale,
};

/// An instant-vector element with its pending name drop.
#[derive(Debug, Clone)]
struct Elem {
    s: Sample,
    drop: bool,
}

/// A range-vector series with its pending name drop.
#[derive(Debug, Clone)]
struct Series {
    s: RangeSeries,
    drop: bool,
}

/// An intermediate value.
enum V {
    Scalar(f64),
    Str(String),
    Vector(Vec<Elem>),
    Matrix {
        series: Vec<Series>,
        start: i64,
        end: i64,
    },
}

impl V {
    fn type_name(&self) -> &'static str {
        match self {
            V::Scalar(_) => "scalar",
            V::Str(_) => "string",
            V::Vector(_) => "instant vector",
            V::Matrix { .. } => "range vector",
        }
    }
}

fn err(msg: impl Into<String>) -> PromqlError {
    PromqlError::Eval(msg.into())
}

/// Evaluates `expr` at `at_ms`.
pub(crate) fn evaluate(
    reader: &Reader<'_>,
    expr: &Expr,
    at_ms: i64,
    opts: &EvalOptions,
) -> Result<Value, PromqlError> {
    let ev = Evaluator {
        reader,
        lookback_ms: opts.lookback_ms,
        default_step_ms: opts.default_step_ms.max(1),
        query_start: opts.start_ms.unwrap_or(at_ms),
        query_end: opts.end_ms.unwrap_or(at_ms),
        query_step: opts.step_ms.unwrap_or(0),
        selected: RefCell::new(FastHashMap::default()),
    };
    let v = ev.eval(expr, at_ms)?;
    finish(v, at_ms)
}

/// Applies the pending name drops and checks label-set uniqueness, as Prometheus does once
/// at the end of a query.
fn finish(v: V, at_ms: i64) -> Result<Value, PromqlError> {
    const DUP: &str = "vector cannot contain metrics with the same labelset";
    Ok(match v {
        V::Scalar(value) => Value::Scalar {
            timestamp_ms: at_ms,
            value,
        },
        V::Str(s) => Value::String(s),
        V::Vector(elems) => {
            let any_drop = elems.iter().any(|e| e.drop);
            let out: Vec<Sample> = elems
                .into_iter()
                .map(|mut e| {
                    if e.drop && e.s.labels.name().is_some() {
                        e.s.labels = e.s.labels.without_name();
                    }
                    e.s
                })
                .collect();
            if (any_drop || out.len() > 1) && has_duplicates(out.iter().map(|s| &s.labels)) {
                return Err(err(DUP));
            }
            Value::Vector(out)
        }
        V::Matrix { series, .. } => {
            let out: Vec<RangeSeries> = series
                .into_iter()
                .map(|mut s| {
                    if s.drop && s.s.labels.name().is_some() {
                        s.s.labels = s.s.labels.without_name();
                    }
                    s.s
                })
                .collect();
            if has_duplicates(out.iter().map(|s| &s.labels)) {
                return Err(err(DUP));
            }
            Value::Matrix(out)
        }
    })
}

fn has_duplicates<'a>(labels: impl Iterator<Item = &'a Labels>) -> bool {
    let mut seen = HashSet::new();
    labels.into_iter().any(|l| !seen.insert(l))
}

struct Evaluator<'r, 's> {
    reader: &'r Reader<'s>,
    lookback_ms: i64,
    default_step_ms: i64,
    query_start: i64,
    query_end: i64,
    query_step: i64,
    /// Series matched by each selector node (keyed by its address in the expression tree,
    /// which outlives the evaluation), so subquery steps match once.
    selected: RefCell<FastHashMap<usize, Rc<[SeriesId]>>>,
}

fn dur_ms(d: &Duration) -> i64 {
    d.as_millis() as i64
}

fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => dur_ms(d),
        Some(Offset::Neg(d)) => -dur_ms(d),
    }
}

fn system_time_ms(t: &SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Strips parentheses.
pub(crate) fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

impl Evaluator<'_, '_> {
    fn eval(&self, e: &Expr, ts: i64) -> Result<V, PromqlError> {
        match e {
            Expr::NumberLiteral(n) => Ok(V::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(V::Str(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                V::Scalar(v) => Ok(V::Scalar(-v)),
                V::Vector(mut elems) => {
                    for e in &mut elems {
                        e.s.value = -e.s.value;
                        e.drop = true;
                    }
                    Ok(V::Vector(elems))
                }
                other => Err(err(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(vs) => Ok(V::Vector(self.vector_selector(vs, ts, false))),
            Expr::MatrixSelector(ms) => Ok(self.matrix_selector(ms, ts)),
            Expr::Subquery(sq) => self.subquery(sq, ts),
            Expr::Aggregate(a) => self.aggregate(a, ts),
            Expr::Binary(b) => self.binary(b, ts),
            Expr::Call(c) => self.call(c, ts),
            Expr::Extension(x) => Err(PromqlError::Unsupported(format!(
                "extension expression {}",
                x.expr.name()
            ))),
        }
    }

    /// The time a selector or subquery reads at: `@` replaces the evaluation time, then
    /// `offset` moves it back.
    fn read_time(&self, ts: i64, at: &Option<AtModifier>, offset: &Option<Offset>) -> i64 {
        let base = match at {
            None => ts,
            Some(AtModifier::Start) => self.query_start,
            Some(AtModifier::End) => self.query_end,
            Some(AtModifier::At(t)) => system_time_ms(t),
        };
        base - offset_ms(offset)
    }

    fn select_series(&self, vs: &VectorSelector) -> Rc<[SeriesId]> {
        let key = vs as *const VectorSelector as usize;
        if let Some(ids) = self.selected.borrow().get(&key) {
            return ids.clone();
        }
        let ids: Rc<[SeriesId]> = select(self.reader, vs).into();
        self.selected.borrow_mut().insert(key, ids.clone());
        ids
    }

    /// An instant selection. Samples are stamped with the evaluation time unless
    /// `keep_sample_time` (for `timestamp()`).
    fn vector_selector(&self, vs: &VectorSelector, ts: i64, keep_sample_time: bool) -> Vec<Elem> {
        let t = self.read_time(ts, &vs.at, &vs.offset);
        let ids = self.select_series(vs);
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids.iter() {
            let (Some((st, v)), Some(labels)) = (
                self.reader.latest(id, t, self.lookback_ms),
                self.reader.labels(id),
            ) else {
                continue;
            };
            out.push(Elem {
                s: Sample {
                    labels: labels.clone(),
                    timestamp_ms: if keep_sample_time { st } else { ts },
                    value: v,
                },
                drop: false,
            });
        }
        out
    }

    fn matrix_selector(&self, ms: &MatrixSelector, ts: i64) -> V {
        let end = self.read_time(ts, &ms.vs.at, &ms.vs.offset);
        let start = end - dur_ms(&ms.range);
        let ids = self.select_series(&ms.vs);
        let mut series = Vec::with_capacity(ids.len());
        for &id in ids.iter() {
            let Some(labels) = self.reader.labels(id) else {
                continue;
            };
            let window = self.reader.window(id, start, end);
            // stale markers are rare: copy the slice whole unless one is present
            let points = if window.iter().any(|(_, v)| is_stale(*v)) {
                window
                    .iter()
                    .filter(|(_, v)| !is_stale(*v))
                    .copied()
                    .collect()
            } else {
                window.to_vec()
            };
            if !points.is_empty() {
                series.push(Series {
                    s: RangeSeries {
                        labels: labels.clone(),
                        points,
                    },
                    drop: false,
                });
            }
        }
        V::Matrix { series, start, end }
    }

    /// Evaluates the inner expression at every step aligned to absolute multiples of the
    /// step inside `(end - range, end]`, as Prometheus does.
    fn subquery(&self, sq: &SubqueryExpr, ts: i64) -> Result<V, PromqlError> {
        let end = self.read_time(ts, &sq.at, &sq.offset);
        let range = dur_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(dur_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step_ms);
        let start = end - range;
        let mut t = start.div_euclid(step) * step + step;
        let mut index: FastHashMap<Labels, usize> = FastHashMap::default();
        let mut series: Vec<Series> = Vec::new();
        while t <= end {
            let elems = match self.eval(&sq.expr, t)? {
                V::Vector(v) => v,
                V::Scalar(x) => vec![Elem {
                    s: Sample::new(Labels::default(), t, x),
                    drop: false,
                }],
                other => {
                    return Err(err(format!(
                        "subquery is only allowed on instant vector, got {}",
                        other.type_name()
                    )));
                }
            };
            for e in elems {
                let i = *index.entry(e.s.labels.clone()).or_insert_with(|| {
                    series.push(Series {
                        s: RangeSeries {
                            labels: e.s.labels.clone(),
                            points: Vec::new(),
                        },
                        drop: false,
                    });
                    series.len() - 1
                });
                series[i].s.points.push((t, e.s.value));
                series[i].drop |= e.drop;
            }
            t += step;
        }
        Ok(V::Matrix { series, start, end })
    }

    fn eval_vector(&self, e: &Expr, ts: i64, what: &str) -> Result<Vec<Elem>, PromqlError> {
        match self.eval(e, ts)? {
            V::Vector(v) => Ok(v),
            other => Err(err(format!(
                "{what}: expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    fn eval_scalar(&self, e: &Expr, ts: i64, what: &str) -> Result<f64, PromqlError> {
        match self.eval(e, ts)? {
            V::Scalar(v) => Ok(v),
            other => Err(err(format!(
                "{what}: expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    // ----- aggregations -------------------------------------------------------------

    fn aggregate(&self, a: &AggregateExpr, ts: i64) -> Result<V, PromqlError> {
        let op = a.op.id();
        let (without, mut names): (bool, Vec<String>) = match &a.modifier {
            None => (false, Vec::new()),
            Some(LabelModifier::Include(l)) => (false, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (true, l.labels.clone()),
        };
        let opname_s = token::TokenType::new(op).to_string();
        let opname = opname_s.as_str();
        let mut k_param = 0usize;
        let mut q_param = 0.0;
        let mut value_label = String::new();
        if let Some(p) = &a.param {
            match op {
                token::T_TOPK | token::T_BOTTOMK | token::T_LIMITK => {
                    let f = self.eval_scalar(p, ts, opname)?;
                    if f.is_nan() {
                        return Err(err("Parameter value is NaN"));
                    }
                    if !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) {
                        return Err(err(format!("Scalar value {f} overflows int64")));
                    }
                    k_param = if f < 1.0 { 0 } else { f as usize };
                }
                token::T_QUANTILE => q_param = self.eval_scalar(p, ts, opname)?,
                token::T_LIMIT_RATIO => {
                    let r = self.eval_scalar(p, ts, opname)?;
                    if r.is_nan() {
                        return Err(err("Ratio value is NaN"));
                    }
                    q_param = r.clamp(-1.0, 1.0);
                }
                token::T_COUNT_VALUES => match self.eval(p, ts)? {
                    V::Str(s) => value_label = s,
                    other => {
                        return Err(err(format!(
                            "count_values: expected string parameter, got {}",
                            other.type_name()
                        )));
                    }
                },
                _ => {
                    return Err(PromqlError::Unsupported(format!(
                        "aggregation {opname} with a parameter"
                    )));
                }
            }
        }
        let mut input = self.eval_vector(&a.expr, ts, opname)?;
        if (matches!(op, token::T_TOPK | token::T_BOTTOMK | token::T_LIMITK) && k_param == 0)
            || (op == token::T_LIMIT_RATIO && q_param == 0.0)
        {
            return Ok(V::Vector(Vec::new()));
        }
        if op == token::T_COUNT_VALUES {
            if !super::gostr::is_utf8_name(&value_label) {
                return Err(err(format!(
                    "invalid label name {}",
                    super::gostr::go_quote(&value_label)
                )));
            }
            for e in &mut input {
                e.s.labels = e.s.labels.with(&value_label, &format_value(e.s.value));
            }
            if !without {
                names.push(value_label.clone());
            }
        }

        let mut groups: Vec<Group> = Vec::new();
        let mut index: FastHashMap<u64, usize> = FastHashMap::default();
        for e in input {
            let key = group_key(&e.s.labels, without, &names);
            let gi = match index.get(&key) {
                Some(i) => *i,
                None => {
                    index.insert(key, groups.len());
                    groups.push(Group::new(grouping_labels(&e.s.labels, without, &names)));
                    groups.len() - 1
                }
            };
            let g = &mut groups[gi];
            g.drop |= e.drop;
            g.add(op, e);
        }

        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            match op {
                token::T_TOPK | token::T_BOTTOMK | token::T_LIMITK => {
                    let mut elems = g.elems;
                    if op == token::T_TOPK {
                        elems.sort_by(|a, b| cmp_desc_nan_last(a.s.value, b.s.value));
                    } else if op == token::T_BOTTOMK {
                        elems.sort_by(|a, b| cmp_asc_nan_last(a.s.value, b.s.value));
                    }
                    elems.truncate(k_param);
                    for mut e in elems {
                        e.s.timestamp_ms = ts;
                        out.push(e);
                    }
                }
                token::T_LIMIT_RATIO => {
                    // Prometheus' ratio sampler: a series is in when its label hash,
                    // scaled to [0, 1], falls below the ratio (or above 1 + a negative one),
                    // so r and -(1 - r) select complementary sets.
                    for mut e in g.elems {
                        let offset = e.s.labels.prometheus_hash() as f64 / u64::MAX as f64;
                        let keep = (q_param >= 0.0 && offset < q_param)
                            || (q_param < 0.0 && offset >= 1.0 + q_param);
                        if keep {
                            e.s.timestamp_ms = ts;
                            out.push(e);
                        }
                    }
                }
                _ => {
                    let value = g.result(op, q_param);
                    let drop = g.drop;
                    out.push(Elem {
                        s: Sample::new(g.labels, ts, value),
                        drop,
                    });
                }
            }
        }
        Ok(V::Vector(out))
    }

    // ----- binary operators ---------------------------------------------------------

    fn binary(&self, b: &BinaryExpr, ts: i64) -> Result<V, PromqlError> {
        let op = b.op.id();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs, ts)?;
        // `and`/`unless` with nothing on the left cannot produce anything.
        if matches!(op, token::T_LAND | token::T_LUNLESS)
            && matches!(&lhs, V::Vector(v) if v.is_empty())
        {
            return Ok(V::Vector(Vec::new()));
        }
        let rhs = self.eval(&b.rhs, ts)?;
        match (lhs, rhs) {
            (V::Scalar(l), V::Scalar(r)) => {
                let (v, keep) = elem_binop(op, l, r)?;
                Ok(V::Scalar(if is_comparison(op) {
                    if keep { 1.0 } else { 0.0 }
                } else {
                    v
                }))
            }
            (V::Vector(l), V::Scalar(r)) => {
                Ok(V::Vector(vector_scalar(op, l, r, false, return_bool)?))
            }
            (V::Scalar(l), V::Vector(r)) => {
                Ok(V::Vector(vector_scalar(op, r, l, true, return_bool)?))
            }
            (V::Vector(l), V::Vector(r)) => {
                let m = Matching::from_expr(b);
                Ok(V::Vector(match op {
                    token::T_LAND => vector_and(l, r, &m),
                    token::T_LOR => vector_or(l, r, &m),
                    token::T_LUNLESS => vector_unless(l, r, &m),
                    _ => vector_binop(op, l, r, &m, return_bool)?,
                }))
            }
            (l, r) => Err(err(format!(
                "binary operator {} not defined between {} and {}",
                token::TokenType::new(op),
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    // ----- function calls -----------------------------------------------------------

    fn call(&self, c: &Call, ts: i64) -> Result<V, PromqlError> {
        let name = c.func.name;
        let args = &c.args.args;
        match name {
            "timestamp" => {
                let arg = args
                    .first()
                    .ok_or_else(|| err("timestamp: expected 1 argument"))?;
                // A plain selector reports its samples' own times; anything else was
                // computed at the evaluation time.
                let elems = match unwrap_parens(arg) {
                    Expr::VectorSelector(vs) => self.vector_selector(vs, ts, true),
                    other => self.eval_vector(other, ts, "timestamp")?,
                };
                Ok(V::Vector(
                    elems
                        .into_iter()
                        .map(|mut e| {
                            e.s.value = e.s.timestamp_ms as f64 / 1000.0;
                            e.s.timestamp_ms = ts;
                            e.drop = true;
                            e
                        })
                        .collect(),
                ))
            }
            "absent" | "absent_over_time" => {
                let arg = args
                    .first()
                    .ok_or_else(|| err(format!("{name}: expected 1 argument")))?;
                let present = match self.eval(arg, ts)? {
                    V::Vector(v) => !v.is_empty(),
                    V::Matrix { series, .. } => series.iter().any(|s| !s.s.points.is_empty()),
                    other => {
                        return Err(err(format!(
                            "{name}: unexpected argument of type {}",
                            other.type_name()
                        )));
                    }
                };
                if present {
                    return Ok(V::Vector(Vec::new()));
                }
                Ok(V::Vector(vec![Elem {
                    s: Sample::new(absent_labels(arg), ts, 1.0),
                    drop: false,
                }]))
            }
            // The query's own range, in seconds.
            "start" => Ok(V::Scalar(self.query_start as f64 / 1000.0)),
            "end" => Ok(V::Scalar(self.query_end as f64 / 1000.0)),
            "range" => Ok(V::Scalar(
                (self.query_end - self.query_start) as f64 / 1000.0,
            )),
            "step" => Ok(V::Scalar(self.query_step as f64 / 1000.0)),
            _ => self.generic_call(c, ts),
        }
    }

    fn generic_call(&self, c: &Call, ts: i64) -> Result<V, PromqlError> {
        let name = c.func.name;
        let mut fargs = Vec::with_capacity(c.args.args.len());
        // Name-drop flags of the (first) vector or matrix argument, by label set, to carry
        // them through functions that keep the metric name.
        let mut in_flags: Vec<(Labels, bool)> = Vec::new();
        let mut any_flag = false;
        let mut first_series = true;
        for a in &c.args.args {
            fargs.push(match self.eval(a, ts)? {
                V::Scalar(v) => Arg::Scalar(v),
                V::Str(s) => Arg::String(s),
                V::Vector(v) => {
                    let mut samples = Vec::with_capacity(v.len());
                    for e in v {
                        if first_series {
                            any_flag |= e.drop;
                            in_flags.push((e.s.labels.clone(), e.drop));
                        }
                        samples.push(e.s);
                    }
                    first_series = false;
                    Arg::Vector(samples)
                }
                V::Matrix { series, start, end } => {
                    let mut out = Vec::with_capacity(series.len());
                    for s in series {
                        if first_series {
                            any_flag |= s.drop;
                            in_flags.push((s.s.labels.clone(), s.drop));
                        }
                        out.push(s.s);
                    }
                    first_series = false;
                    Arg::Matrix {
                        series: out,
                        range_start_ms: start,
                        range_end_ms: end,
                    }
                }
            });
        }
        let dst_is_name = matches!(name, "label_replace" | "label_join")
            && matches!(fargs.get(1), Some(Arg::String(s)) if s == METRIC_NAME);
        let result = functions::call(name, fargs, &FnCtx { at_ms: ts })?;
        Ok(match result {
            Value::Scalar { value, .. } => V::Scalar(value),
            Value::String(s) => V::Str(s),
            Value::Vector(samples) => {
                let drops = functions::drops_metric_name(name);
                let mut elems: Vec<Elem> = samples
                    .into_iter()
                    .map(|mut s| {
                        s.timestamp_ms = ts;
                        Elem { s, drop: drops }
                    })
                    .collect();
                if drops {
                    restore_names(&mut elems, &in_flags);
                } else if any_flag && !dst_is_name {
                    carry_flags(name, &mut elems, &in_flags);
                }
                V::Vector(elems)
            }
            Value::Matrix(series) => V::Matrix {
                series: series
                    .into_iter()
                    .map(|s| Series { s, drop: false })
                    .collect(),
                start: ts,
                end: ts,
            },
        })
    }
}

/// The function library drops `__name__` at once; for delayed removal the evaluator puts
/// the input's label set back (flagged for dropping) where an output element is the
/// transform of an input element, i.e. the outputs are an in-order subsequence of the
/// inputs that differ only by the name.
fn restore_names(out: &mut [Elem], inputs: &[(Labels, bool)]) {
    let mut j = 0;
    for e in out.iter_mut() {
        if e.s.labels.name().is_some() {
            continue;
        }
        while j < inputs.len() && !eq_ignoring_name(&inputs[j].0, &e.s.labels) {
            j += 1;
        }
        match inputs.get(j) {
            Some((l, _)) => {
                e.s.labels = l.clone();
                j += 1;
            }
            None => return,
        }
    }
}

/// True when `with` minus its `__name__` equals `without`.
fn eq_ignoring_name(with: &Labels, without: &Labels) -> bool {
    let mut a = with.iter().filter(|(k, _)| *k != METRIC_NAME);
    let mut b = without.iter();
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Carries pending name drops through functions that keep the name (`sort`,
/// `last_over_time`, `label_replace`, ...): by position where the function maps one to
/// one, else by label set.
fn carry_flags(name: &str, out: &mut [Elem], inputs: &[(Labels, bool)]) {
    if matches!(name, "label_replace" | "label_join") && out.len() == inputs.len() {
        for (e, (_, f)) in out.iter_mut().zip(inputs) {
            e.drop = *f;
        }
        return;
    }
    let by_labels: FastHashMap<&Labels, bool> = inputs.iter().map(|(l, f)| (l, *f)).collect();
    for e in out.iter_mut() {
        e.drop = by_labels.get(&e.s.labels).copied().unwrap_or(false);
    }
}

/// Labels of `absent(x{a="b"})`: the equality matchers of a plain selector, except
/// `__name__` and names matched more than once.
fn absent_labels(arg: &Expr) -> Labels {
    let vs = match arg {
        Expr::VectorSelector(vs) => vs,
        Expr::MatrixSelector(ms) => &ms.vs,
        _ => return Labels::default(),
    };
    let all: Vec<&Matcher> = vs
        .matchers
        .matchers
        .iter()
        .chain(vs.matchers.or_matchers.iter().flatten())
        .collect();
    let mut pairs = Vec::new();
    for m in &all {
        if m.name == METRIC_NAME || !matches!(m.op, MatchOp::Equal) {
            continue;
        }
        if all.iter().filter(|o| o.name == m.name).count() > 1 {
            continue;
        }
        pairs.push((m.name.clone(), m.value.clone()));
    }
    Labels::new(pairs)
}

// ----- selection ------------------------------------------------------------------

fn matcher_ok(m: &Matcher, labels: &Labels) -> bool {
    m.is_match(labels.get(&m.name).unwrap_or(""))
}

fn group_ok(ms: &[Matcher], labels: &Labels) -> bool {
    ms.iter().all(|m| matcher_ok(m, labels))
}

fn matchers_ok(ms: &Matchers, labels: &Labels) -> bool {
    group_ok(&ms.matchers, labels)
        && (ms.or_matchers.is_empty() || ms.or_matchers.iter().any(|g| group_ok(g, labels)))
}

/// Series matching a selector, sorted by label set (Prometheus' storage order).
fn select(r: &Reader<'_>, vs: &VectorSelector) -> Vec<SeriesId> {
    let name_eq = vs.name.as_deref().or_else(|| {
        vs.matchers
            .matchers
            .iter()
            .find(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
            .map(|m| m.value.as_str())
    });
    let keep = |id: &SeriesId| {
        r.labels(*id).is_some_and(|l| {
            vs.name.as_deref().is_none_or(|n| l.name() == Some(n)) && matchers_ok(&vs.matchers, l)
        })
    };
    // Equality matchers name posting lists (sorted by label set): read the shortest one.
    // (`l=""` matches series without `l`, which no list holds.)
    let lists = name_eq.map(|n| r.series_by_name(n)).into_iter().chain(
        vs.matchers
            .matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
            .map(|m| r.series_with(&m.name, &m.value)),
    );
    if let Some(shortest) = lists.min_by_key(|l| l.len()) {
        return shortest.iter().copied().filter(keep).collect();
    }
    let name_matcher = vs
        .matchers
        .matchers
        .iter()
        .find(|m| m.name == METRIC_NAME && !m.is_match(""));
    let mut ids: Vec<SeriesId> = match name_matcher {
        Some(m) => r
            .names()
            .filter(|n| m.is_match(n))
            .flat_map(|n| r.series_by_name(n).iter().copied())
            .filter(keep)
            .collect(),
        None => r.all_series().filter(keep).collect(),
    };
    ids.sort_by(|a, b| r.labels(*a).cmp(&r.labels(*b)));
    ids
}

// ----- aggregation helpers --------------------------------------------------------

struct Group {
    labels: Labels,
    drop: bool,
    count: f64,
    value: f64,
    kahan_c: f64,
    mean: f64,
    incremental_mean: bool,
    values: Vec<f64>,
    elems: Vec<Elem>,
}

impl Group {
    fn new(labels: Labels) -> Self {
        Group {
            labels,
            drop: false,
            count: 0.0,
            value: 0.0,
            kahan_c: 0.0,
            mean: 0.0,
            incremental_mean: false,
            values: Vec::new(),
            elems: Vec::new(),
        }
    }

    fn add(&mut self, op: TokenId, e: Elem) {
        let f = e.s.value;
        let first = self.count == 0.0;
        match op {
            token::T_SUM => {
                if first {
                    self.value = f;
                } else {
                    (self.value, self.kahan_c) = kahan_sum_inc(f, self.value, self.kahan_c);
                }
            }
            token::T_AVG => {
                if first {
                    self.value = f;
                } else {
                    let n = self.count + 1.0;
                    if !self.incremental_mean {
                        let (v, c) = kahan_sum_inc(f, self.value, self.kahan_c);
                        if !v.is_infinite() {
                            (self.value, self.kahan_c) = (v, c);
                            self.count = n;
                            return;
                        }
                        // The sum would overflow: continue with an incremental mean.
                        self.incremental_mean = true;
                        self.mean = self.value / self.count;
                        self.kahan_c /= self.count;
                    }
                    let q = self.count / n;
                    (self.mean, self.kahan_c) =
                        kahan_sum_inc(f / n, q * self.mean, q * self.kahan_c);
                }
            }
            token::T_MIN if first || self.value > f || self.value.is_nan() => self.value = f,
            token::T_MAX if first || self.value < f || self.value.is_nan() => self.value = f,
            token::T_STDDEV | token::T_STDVAR => {
                if first {
                    self.mean = f;
                    self.value = if f.is_finite() { 0.0 } else { f64::NAN };
                } else {
                    let n = self.count + 1.0;
                    let delta = f - self.mean;
                    self.mean += delta / n;
                    self.value += delta * (f - self.mean);
                }
            }
            token::T_QUANTILE => self.values.push(f),
            token::T_TOPK | token::T_BOTTOMK | token::T_LIMITK | token::T_LIMIT_RATIO => {
                self.elems.push(e)
            }
            _ => {}
        }
        self.count += 1.0;
    }

    fn result(&self, op: TokenId, q: f64) -> f64 {
        match op {
            token::T_SUM => self.value + self.kahan_c,
            token::T_AVG => {
                if self.incremental_mean {
                    self.mean + self.kahan_c
                } else {
                    (self.value + self.kahan_c) / self.count
                }
            }
            token::T_COUNT | token::T_COUNT_VALUES => self.count,
            token::T_GROUP => 1.0,
            token::T_MIN | token::T_MAX => self.value,
            token::T_STDVAR => self.value / self.count,
            token::T_STDDEV => (self.value / self.count).sqrt(),
            token::T_QUANTILE => quantile(q, &mut self.values.clone()),
            _ => f64::NAN,
        }
    }
}

/// Prometheus' `quantile`: linear interpolation between closest ranks; NaN for no values
/// or a NaN `q`, ±Inf for `q` outside [0, 1].
pub fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus' vectorByValueHeap.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn cmp_desc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn cmp_asc_nan_last(a: f64, b: f64) -> std::cmp::Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
    }
}

fn hash_pair(h: &mut FastHasher, k: &str, v: &str) {
    h.write(k.as_bytes());
    h.write_u8(0xff);
    h.write(v.as_bytes());
    h.write_u8(0xfe);
}

/// The grouping key of an aggregation: `by` hashes the listed labels, `without` every
/// label except the listed ones and `__name__`.
fn group_key(labels: &Labels, without: bool, names: &[String]) -> u64 {
    let mut h = FastHasher::default();
    if without {
        for (k, v) in labels.iter() {
            if k != METRIC_NAME && !names.iter().any(|n| n == k) {
                hash_pair(&mut h, k, v);
            }
        }
    } else {
        for n in names {
            hash_pair(&mut h, n, labels.get(n).unwrap_or(""));
        }
    }
    h.finish()
}

fn grouping_labels(labels: &Labels, without: bool, names: &[String]) -> Labels {
    if without {
        let mut drop: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        drop.push(METRIC_NAME);
        labels.without(&drop)
    } else if names.is_empty() {
        Labels::default()
    } else {
        Labels::new(
            names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.to_string()))),
        )
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as `count_values` writes values.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

// ----- binary operator helpers ----------------------------------------------------

fn is_comparison(op: TokenId) -> bool {
    matches!(
        op,
        token::T_EQLC | token::T_NEQ | token::T_GTR | token::T_LSS | token::T_GTE | token::T_LTE
    )
}

/// Arithmetic drops the metric name; comparisons (without `bool`) keep it.
fn drops_name(op: TokenId) -> bool {
    matches!(
        op,
        token::T_ADD
            | token::T_SUB
            | token::T_MUL
            | token::T_DIV
            | token::T_MOD
            | token::T_POW
            | token::T_ATAN2
    )
}

/// Prometheus' `vectorElemBinop` for floats: the value and whether a comparison keeps it.
fn elem_binop(op: TokenId, l: f64, r: f64) -> Result<(f64, bool), PromqlError> {
    Ok(match op {
        token::T_ADD => (l + r, true),
        token::T_SUB => (l - r, true),
        token::T_MUL => (l * r, true),
        token::T_DIV => (l / r, true),
        token::T_POW => (l.powf(r), true),
        token::T_MOD => (l % r, true),
        token::T_ATAN2 => (l.atan2(r), true),
        token::T_EQLC => (l, l == r),
        token::T_NEQ => (l, l != r),
        token::T_GTR => (l, l > r),
        token::T_LSS => (l, l < r),
        token::T_GTE => (l, l >= r),
        token::T_LTE => (l, l <= r),
        _ => {
            return Err(err(format!(
                "operator {} not allowed here",
                token::TokenType::new(op)
            )));
        }
    })
}

fn vector_scalar(
    op: TokenId,
    v: Vec<Elem>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Vec<Elem>, PromqlError> {
    let mut out = Vec::with_capacity(v.len());
    for mut e in v {
        let (l, r) = if scalar_on_left {
            (scalar, e.s.value)
        } else {
            (e.s.value, scalar)
        };
        let (mut value, mut keep) = elem_binop(op, l, r)?;
        // A comparison keeps the vector's value even when the scalar is on the left.
        if is_comparison(op) && scalar_on_left {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        if keep {
            e.s.value = value;
            e.drop |= drops_name(op) || return_bool;
            out.push(e);
        }
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
    ManyToMany,
}

/// Vector matching of one binary expression (Prometheus' `VectorMatching`).
struct Matching {
    card: Card,
    on: bool,
    names: Vec<String>,
    include: Vec<String>,
}

impl Matching {
    fn from_expr(b: &BinaryExpr) -> Self {
        let Some(m) = &b.modifier else {
            return Matching {
                card: if b.op.is_set_operator() {
                    Card::ManyToMany
                } else {
                    Card::OneToOne
                },
                on: false,
                names: Vec::new(),
                include: Vec::new(),
            };
        };
        let (card, include) = match &m.card {
            VectorMatchCardinality::OneToOne => (Card::OneToOne, Vec::new()),
            VectorMatchCardinality::ManyToOne(l) => (Card::ManyToOne, l.labels.clone()),
            VectorMatchCardinality::OneToMany(l) => (Card::OneToMany, l.labels.clone()),
            VectorMatchCardinality::ManyToMany => (Card::ManyToMany, Vec::new()),
        };
        let card = if b.op.is_set_operator() {
            Card::ManyToMany
        } else {
            card
        };
        let (on, names) = match &m.matching {
            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
            None => (false, Vec::new()),
        };
        Matching {
            card,
            on,
            names,
            include,
        }
    }

    fn signature(&self, labels: &Labels) -> u64 {
        let mut h = FastHasher::default();
        for (k, v) in labels.iter() {
            let listed = self.names.iter().any(|n| n == k);
            if (self.on && listed) || (!self.on && !listed && k != METRIC_NAME) {
                hash_pair(&mut h, k, v);
            }
        }
        h.finish()
    }

    /// The labels the signature is made of, for error messages.
    fn match_labels(&self, labels: &Labels) -> Labels {
        Labels::new(labels.iter().filter(|(k, _)| {
            let listed = self.names.iter().any(|n| n == k);
            (self.on && listed) || (!self.on && !listed && *k != METRIC_NAME)
        }))
    }

    /// Labels of a result element: from the "many" (or left) side, reduced for one-to-one
    /// matching, plus `group_x` labels copied from the "one" side.
    fn result_labels(&self, l: &Labels, r: &Labels) -> Labels {
        if self.card == Card::OneToOne {
            if self.on {
                return self.with_included(
                    Labels::new(l.iter().filter(|(k, _)| self.names.iter().any(|n| n == k))),
                    r,
                );
            }
            if !self.names.is_empty() {
                let names: Vec<&str> = self.names.iter().map(|s| s.as_str()).collect();
                return self.with_included(l.without(&names), r);
            }
        }
        self.with_included(l.clone(), r)
    }

    fn with_included(&self, base: Labels, one_side: &Labels) -> Labels {
        if self.include.is_empty() {
            return base;
        }
        let mut pairs: Vec<(String, String)> = base
            .iter()
            .filter(|(k, _)| !self.include.iter().any(|n| n == k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for n in &self.include {
            if let Some(v) = one_side.get(n) {
                pairs.push((n.clone(), v.to_string()));
            }
        }
        Labels::new(pairs)
    }
}

/// Go's `labels.Labels.String()`: `{__name__="x", a="b"}`.
pub fn prometheus_label_string(l: &Labels) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in l.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(k);
        s.push('=');
        s.push_str(&format!("{v:?}"));
    }
    s.push('}');
    s
}

fn vector_binop(
    op: TokenId,
    lhs: Vec<Elem>,
    rhs: Vec<Elem>,
    m: &Matching,
    return_bool: bool,
) -> Result<Vec<Elem>, PromqlError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let swapped = m.card == Card::OneToMany;
    let (many, one) = if swapped { (rhs, lhs) } else { (lhs, rhs) };

    // The "one" side by signature; two elements with one signature are many-to-many.
    let mut one_sigs: FastHashMap<u64, usize> = FastHashMap::default();
    for (i, e) in one.iter().enumerate() {
        let sig = m.signature(&e.s.labels);
        if let Some(&j) = one_sigs.get(&sig) {
            let side = if swapped { "left" } else { "right" };
            let mut pair = [
                prometheus_label_string(&e.s.labels),
                prometheus_label_string(&one[j].s.labels),
            ];
            pair.sort();
            return Err(err(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                prometheus_label_string(&m.match_labels(&e.s.labels)),
                pair[0],
                pair[1]
            )));
        }
        one_sigs.insert(sig, i);
    }

    // For one-to-one: signatures already matched. For many-to-one: the result label sets
    // already produced per signature.
    let mut matched: FastHashMap<u64, Vec<u64>> = FastHashMap::default();
    let mut out = Vec::with_capacity(many.len());
    for e in many {
        let sig = m.signature(&e.s.labels);
        let Some(&ri) = one_sigs.get(&sig) else {
            continue;
        };
        let r = &one[ri];
        let labels = m.result_labels(&e.s.labels, &r.s.labels);
        if m.card == Card::OneToOne {
            if matched.insert(sig, Vec::new()).is_some() {
                return Err(err(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else {
            let lh = {
                let mut h = FastHasher::default();
                for (k, v) in labels.iter() {
                    hash_pair(&mut h, k, v);
                }
                h.finish()
            };
            let seen = matched.entry(sig).or_default();
            if seen.contains(&lh) {
                return Err(err(
                    "multiple matches for matching labels: grouping labels must ensure unique matches",
                ));
            }
            seen.push(lh);
        }
        let (fl, fr) = if swapped {
            (r.s.value, e.s.value)
        } else {
            (e.s.value, r.s.value)
        };
        let (mut value, keep) = elem_binop(op, fl, fr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let drop = drops_name(op) || return_bool || e.drop;
        out.push(Elem {
            s: Sample {
                labels,
                timestamp_ms: e.s.timestamp_ms,
                value,
            },
            drop,
        });
    }
    Ok(out)
}

fn vector_and(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return Vec::new();
    }
    let sigs: HashSet<u64> = rhs.iter().map(|e| m.signature(&e.s.labels)).collect();
    lhs.into_iter()
        .filter(|e| sigs.contains(&m.signature(&e.s.labels)))
        .collect()
}

fn vector_or(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() {
        return rhs;
    }
    if rhs.is_empty() {
        return lhs;
    }
    let sigs: HashSet<u64> = lhs.iter().map(|e| m.signature(&e.s.labels)).collect();
    let mut out = lhs;
    out.extend(
        rhs.into_iter()
            .filter(|e| !sigs.contains(&m.signature(&e.s.labels))),
    );
    out
}

fn vector_unless(lhs: Vec<Elem>, rhs: Vec<Elem>, m: &Matching) -> Vec<Elem> {
    if lhs.is_empty() || rhs.is_empty() {
        return lhs;
    }
    let sigs: HashSet<u64> = rhs.iter().map(|e| m.signature(&e.s.labels)).collect();
    lhs.into_iter()
        .filter(|e| !sigs.contains(&m.signature(&e.s.labels)))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::promql::{EvalOptions, Value, eval_instant, eval_instant_with, parse};
    use crate::store::{Labels, Store};

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied())
    }

    fn store() -> Store {
        let s = Store::new(i64::MAX / 4);
        for t in 0..=10 {
            let ms = t * 60_000;
            s.append(
                &l(&[("__name__", "req"), ("job", "a"), ("code", "200")]),
                ms,
                t as f64 * 10.0,
            );
            s.append(
                &l(&[("__name__", "req"), ("job", "a"), ("code", "500")]),
                ms,
                t as f64,
            );
            s.append(
                &l(&[("__name__", "req"), ("job", "b"), ("code", "200")]),
                ms,
                t as f64 * 2.0,
            );
            s.append(&l(&[("__name__", "limit"), ("job", "a")]), ms, 100.0);
            s.append(&l(&[("__name__", "limit"), ("job", "b")]), ms, 50.0);
        }
        s
    }

    fn eval(s: &Store, q: &str, at_ms: i64) -> Result<Vec<(String, f64)>, String> {
        match eval_instant(s, &parse(q).map_err(|e| e.to_string())?, at_ms) {
            Ok(Value::Vector(v)) => {
                let mut out: Vec<_> = v
                    .into_iter()
                    .map(|s| (s.labels.to_string(), s.value))
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(out)
            }
            Ok(Value::Scalar { value, .. }) => Ok(vec![("scalar".into(), value)]),
            Ok(other) => Err(format!("unexpected {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn selectors_matchers_lookback_and_staleness() {
        let s = store();
        assert_eq!(
            eval(&s, r#"req{code=~"5.."}"#, 600_000).unwrap(),
            vec![(r#"req{code="500", job="a"}"#.into(), 10.0)]
        );
        assert_eq!(
            eval(
                &s,
                r#"{__name__=~"req|limit", job!="a", code!~"2.*"}"#,
                600_000
            )
            .unwrap(),
            vec![(r#"limit{job="b"}"#.into(), 50.0)]
        );
        // the last sample is 10 m old: within 5 m lookback at 14 m, gone at 15 m (left-open)
        assert_eq!(eval(&s, "limit{job='a'}", 840_000).unwrap().len(), 1);
        assert_eq!(eval(&s, "limit{job='a'}", 900_000).unwrap().len(), 0);
        s.mark_stale(&l(&[("__name__", "limit"), ("job", "a")]), 660_000);
        assert_eq!(eval(&s, "limit{job='a'}", 670_000).unwrap().len(), 0);
        assert_eq!(
            eval(&s, "limit{job='a'} offset 1m", 670_000).unwrap().len(),
            1
        );
    }

    #[test]
    fn matching_group_left_and_errors() {
        let s = store();
        let r = eval(&s, "req / on(job) group_left limit", 600_000).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.contains(&(r#"{code="200", job="b"}"#.into(), 0.4)));
        let e = eval(&s, "req / on(job) limit", 600_000).unwrap_err();
        assert!(e.contains("many-to-one matching must be explicit"), "{e}");
        let e = eval(&s, "limit / on(job) group_left req", 600_000).unwrap_err();
        assert!(
            e.contains(
                "found duplicate series for the match group {job=\"a\"} on the right hand-side"
            ),
            "{e}"
        );
        // comparisons keep the name, `bool` drops it
        assert_eq!(
            eval(&s, "limit > 60", 600_000).unwrap(),
            vec![(r#"limit{job="a"}"#.into(), 100.0)]
        );
        assert_eq!(eval(&s, "limit > bool 60", 600_000).unwrap().len(), 2);
        assert_eq!(
            eval(&s, "req unless on(job) limit < 60", 600_000)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(eval(&s, "-limit", 600_000).unwrap()[0].0, r#"{job="a"}"#);
    }

    #[test]
    fn aggregations() {
        let s = store();
        assert_eq!(
            eval(&s, "sum by (job) (req)", 600_000).unwrap(),
            vec![
                (r#"{job="a"}"#.into(), 110.0),
                (r#"{job="b"}"#.into(), 20.0)
            ]
        );
        assert_eq!(
            eval(&s, "count without (code) (req)", 600_000).unwrap(),
            vec![(r#"{job="a"}"#.into(), 2.0), (r#"{job="b"}"#.into(), 1.0)]
        );
        assert_eq!(
            eval(&s, "topk(1, req)", 600_000).unwrap(),
            vec![(r#"req{code="200", job="a"}"#.into(), 100.0)]
        );
        assert_eq!(eval(&s, "quantile(0.5, req)", 600_000).unwrap()[0].1, 20.0);
        assert_eq!(eval(&s, "stddev(limit)", 600_000).unwrap()[0].1, 25.0);
        assert_eq!(
            eval(&s, r#"count_values("v", limit)"#, 600_000).unwrap(),
            vec![(r#"{v="100"}"#.into(), 1.0), (r#"{v="50"}"#.into(), 1.0)]
        );
    }

    #[test]
    fn subquery_steps_are_aligned_to_absolute_multiples() {
        let s = store();
        // (570 s, 630 s] holds one multiple of 60 s: 600 s
        assert_eq!(
            eval(&s, "count_over_time(limit{job='a'}[1m:1m])", 630_000).unwrap()[0].1,
            1.0
        );
        assert_eq!(
            eval(&s, "count_over_time(limit{job='a'}[5m:1m])", 630_000).unwrap()[0].1,
            5.0
        );
        assert_eq!(
            eval(&s, "count_over_time(limit{job='a'}[5m:])", 630_000).unwrap()[0].1,
            5.0
        );
    }

    #[test]
    fn at_start_end_and_timestamp() {
        let s = store();
        let e = parse("limit{job='a'} @ start() + 0 * timestamp(limit{job='a'} @ end())").unwrap();
        let opts = EvalOptions {
            start_ms: Some(60_000),
            end_ms: Some(120_000),
            ..EvalOptions::default()
        };
        let Value::Vector(v) = eval_instant_with(&s, &e, 90_000, &opts).unwrap() else {
            panic!()
        };
        assert_eq!(v[0].value, 100.0);
        assert_eq!(v[0].timestamp_ms, 90_000);
        assert_eq!(
            eval(&s, "timestamp(limit{job='a'})", 630_000).unwrap()[0].1,
            600.0
        );
        assert_eq!(
            eval(&s, "absent(nope{job='x', a=~'y'})", 0).unwrap(),
            vec![(r#"{job="x"}"#.into(), 1.0)]
        );
    }

    #[test]
    fn delayed_name_removal() {
        let s = store();
        let r = eval(
            &s,
            r#"label_replace(rate(limit[5m]), "was", "$1", "__name__", "(.*)")"#,
            600_000,
        )
        .unwrap();
        assert_eq!(r[0].0, r#"{job="a", was="limit"}"#);
        s.append(&l(&[("__name__", "quota"), ("job", "b")]), 600_000, 1.0);
        let e = eval(&s, "-{__name__=~'limit|quota', job='b'}", 600_000).unwrap_err();
        assert!(e.contains("same labelset"), "{e}");
    }
}
