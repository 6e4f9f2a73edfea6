//! PromQL functions over evaluated arguments. The evaluator (eval.rs) evaluates the
//! arguments and calls [`call`]; functions that need the unevaluated expression
//! (`absent`, `absent_over_time`, `timestamp`) or the query's range (`start`, `end`,
//! `range`, `step`) are handled by the evaluator itself.
//!
//! The algorithms follow Prometheus' `promql/functions.go` and `promql/quantile.go`
//! (floats and classic `le` histograms; native histograms are out of scope), including
//! their numerics (Kahan summation, repeated-addition order), so that results agree with
//! Prometheus to its test tolerance.
//!
//! Results keep `__name__`: the evaluator removes it afterwards where
//! [`drops_metric_name`] says so, as Prometheus' delayed name removal does, so that
//! `label_replace(rate(x[5m]), "n", "$1", "__name__", "(.*)")` can still read the name.

use std::collections::HashMap;

use super::gostr::go_display;
use super::{PromqlError, RangeSeries, Value};
use crate::common::time::{civil_from_days, days_from_civil};
use crate::store::{Labels, Sample, is_stale};

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

/// Whether the result of function `name` loses `__name__` (once the evaluator applies its
/// pending name drops). Prometheus keeps it only for these.
pub fn drops_metric_name(name: &str) -> bool {
    !matches!(
        name,
        "last_over_time"
            | "first_over_time"
            | "sort"
            | "sort_desc"
            | "sort_by_label"
            | "sort_by_label_desc"
            | "label_replace"
            | "label_join"
            | "vector"
            | "scalar"
            | "time"
            | "pi"
    )
}

/// Calls function `name` with evaluated `args`. Vector results keep the input's labels
/// (minus `le` for the histogram functions); see [`drops_metric_name`].
pub fn call(name: &str, args: Vec<Arg>, ctx: &FnCtx) -> Result<Value, PromqlError> {
    let mut a = Args {
        name,
        args,
        ctx: *ctx,
    };
    match name {
        // --- range-vector functions ---
        "rate" => a.over_range(|r| extrapolated_rate(r, true, true)),
        "increase" => a.over_range(|r| extrapolated_rate(r, true, false)),
        "delta" => a.over_range(|r| extrapolated_rate(r, false, false)),
        "irate" => a.over_range(|r| instant_value(r.points, true)),
        "idelta" => a.over_range(|r| instant_value(r.points, false)),
        "deriv" => a.over_range(|r| {
            (r.points.len() >= 2).then(|| linear_regression(r.points, r.points[0].0).0)
        }),
        "predict_linear" => {
            let at = ctx.at_ms;
            let secs = a.scalar(1)?;
            a.over_range(|r| {
                (r.points.len() >= 2).then(|| {
                    let (slope, intercept) = linear_regression(r.points, at);
                    slope * secs + intercept
                })
            })
        }
        "avg_over_time" => a.over_range(|r| nonempty(r.points).map(avg)),
        "sum_over_time" => a.over_range(|r| nonempty(r.points).map(sum)),
        "count_over_time" => a.over_range(|r| nonempty(r.points).map(|p| p.len() as f64)),
        "min_over_time" => a.over_range(|r| {
            nonempty(r.points).map(|p| compare_over_time(p, |cur, m| cur < m || m.is_nan()).1)
        }),
        "max_over_time" => a.over_range(|r| {
            nonempty(r.points).map(|p| compare_over_time(p, |cur, m| cur > m || m.is_nan()).1)
        }),
        "ts_of_min_over_time" => a.over_range(|r| {
            nonempty(r.points).map(|p| secs(compare_over_time(p, |c, m| c <= m || m.is_nan()).0))
        }),
        "ts_of_max_over_time" => a.over_range(|r| {
            nonempty(r.points).map(|p| secs(compare_over_time(p, |c, m| c >= m || m.is_nan()).0))
        }),
        "last_over_time" => a.over_range(|r| r.points.last().map(|p| p.1)),
        "first_over_time" => a.over_range(|r| r.points.first().map(|p| p.1)),
        "ts_of_last_over_time" => a.over_range(|r| r.points.last().map(|p| secs(p.0))),
        "ts_of_first_over_time" => a.over_range(|r| r.points.first().map(|p| secs(p.0))),
        "present_over_time" => a.over_range(|r| nonempty(r.points).map(|_| 1.0)),
        "stddev_over_time" => a.over_range(|r| nonempty(r.points).map(|p| variance(p).sqrt())),
        "stdvar_over_time" => a.over_range(|r| nonempty(r.points).map(variance)),
        "mad_over_time" => a.over_range(|r| nonempty(r.points).map(mad)),
        "quantile_over_time" => {
            let q = a.scalar(0)?;
            a.over_range(|r| {
                nonempty(r.points).map(|p| quantile(q, p.iter().map(|x| x.1).collect()))
            })
        }
        "changes" => a.over_range(|r| {
            nonempty(r.points).map(|p| {
                p.windows(2)
                    .filter(|w| w[0].1 != w[1].1 && !(w[0].1.is_nan() && w[1].1.is_nan()))
                    .count() as f64
            })
        }),
        "resets" => a.over_range(|r| {
            nonempty(r.points).map(|p| p.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64)
        }),
        "double_exponential_smoothing" | "holt_winters" => {
            let sf = a.scalar(1)?;
            let tf = a.scalar(2)?;
            if sf <= 0.0 || sf >= 1.0 {
                return Err(eval_err(format!(
                    "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                )));
            }
            if tf <= 0.0 || tf >= 1.0 {
                return Err(eval_err(format!(
                    "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                )));
            }
            a.over_range(|r| double_exponential_smoothing(r.points, sf, tf))
        }

        // --- instant-vector math ---
        "abs" => a.map_values(f64::abs),
        "ceil" => a.map_values(f64::ceil),
        "floor" => a.map_values(f64::floor),
        "exp" => a.map_values(f64::exp),
        "sqrt" => a.map_values(f64::sqrt),
        "ln" => a.map_values(f64::ln),
        "log2" => a.map_values(f64::log2),
        "log10" => a.map_values(f64::log10),
        "sin" => a.map_values(f64::sin),
        "cos" => a.map_values(f64::cos),
        "tan" => a.map_values(f64::tan),
        "asin" => a.map_values(f64::asin),
        "acos" => a.map_values(f64::acos),
        "atan" => a.map_values(f64::atan),
        "sinh" => a.map_values(f64::sinh),
        "cosh" => a.map_values(f64::cosh),
        "tanh" => a.map_values(f64::tanh),
        "asinh" => a.map_values(f64::asinh),
        "acosh" => a.map_values(f64::acosh),
        "atanh" => a.map_values(f64::atanh),
        "rad" => a.map_values(|v| v * std::f64::consts::PI / 180.0),
        "deg" => a.map_values(|v| v * 180.0 / std::f64::consts::PI),
        "sgn" => a.map_values(|v| {
            if v < 0.0 {
                -1.0
            } else if v > 0.0 {
                1.0
            } else {
                v
            }
        }),
        "round" => {
            let to_nearest = if a.args.len() >= 2 { a.scalar(1)? } else { 1.0 };
            // Inverting first mirrors Prometheus (fewer floating point surprises).
            let inv = 1.0 / to_nearest;
            a.map_values(|v| (v * inv + 0.5).floor() / inv)
        }
        "clamp" => {
            let (lo, hi) = (a.scalar(1)?, a.scalar(2)?);
            a.clamp(lo, hi)
        }
        "clamp_min" => {
            let lo = a.scalar(1)?;
            a.clamp(lo, f64::INFINITY)
        }
        "clamp_max" => {
            let hi = a.scalar(1)?;
            a.clamp(f64::NEG_INFINITY, hi)
        }
        "min_of" => Ok(scalar(ctx, go_min(a.scalar(0)?, a.scalar(1)?))),
        "max_of" => Ok(scalar(ctx, go_max(a.scalar(0)?, a.scalar(1)?))),
        "pi" => Ok(scalar(ctx, std::f64::consts::PI)),
        "time" => Ok(scalar(ctx, ctx.at_ms as f64 / 1000.0)),
        "scalar" => {
            let v = a.vector(0)?;
            let value = if v.len() == 1 { v[0].value } else { f64::NAN };
            Ok(scalar(ctx, value))
        }
        "vector" => {
            let v = a.scalar(0)?;
            Ok(Value::Vector(vec![Sample::new(
                Labels::default(),
                ctx.at_ms,
                v,
            )]))
        }

        // --- dates ---
        "minute" => a.date(|d| d.minute as f64),
        "hour" => a.date(|d| d.hour as f64),
        "day_of_week" => a.date(|d| d.weekday as f64),
        "day_of_month" => a.date(|d| d.day as f64),
        "day_of_year" => a.date(|d| d.day_of_year as f64),
        "days_in_month" => a.date(|d| days_in_month(d.year, d.month) as f64),
        "month" => a.date(|d| d.month as f64),
        "year" => a.date(|d| d.year as f64),

        // --- ordering ---
        "sort" => {
            let mut v = a.vector(0)?;
            // Ascending with NaN last, as Prometheus orders it.
            v.sort_by(|x, y| cmp_nan_last(x.value, y.value, false));
            Ok(Value::Vector(v))
        }
        "sort_desc" => {
            let mut v = a.vector(0)?;
            v.sort_by(|x, y| cmp_nan_last(x.value, y.value, true));
            Ok(Value::Vector(v))
        }
        "sort_by_label" | "sort_by_label_desc" => {
            let mut v = a.vector(0)?;
            let names = (1..a.args.len())
                .map(|i| a.string(i))
                .collect::<Result<Vec<_>, _>>()?;
            let desc = name == "sort_by_label_desc";
            v.sort_by(|x, y| {
                let ord = names
                    .iter()
                    .map(|n| {
                        natural_cmp(x.labels.get(n).unwrap_or(""), y.labels.get(n).unwrap_or(""))
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or_else(|| x.labels.cmp(&y.labels));
                if desc { ord.reverse() } else { ord }
            });
            Ok(Value::Vector(v))
        }

        // --- labels ---
        "label_replace" => a.label_replace(),
        "label_join" => a.label_join(),

        // --- classic histograms ---
        "histogram_quantile" => {
            let q = a.scalar(0)?;
            let v = a.vector(1)?;
            Ok(Value::Vector(
                classic_histograms(v)
                    .into_iter()
                    .map(|(labels, buckets)| {
                        Sample::new(labels, ctx.at_ms, bucket_quantile(q, buckets))
                    })
                    .collect(),
            ))
        }
        "histogram_quantiles" => {
            let v = a.vector(0)?;
            let label = a.string(1)?;
            let qs = (2..a.args.len())
                .map(|i| a.scalar(i))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            for q in qs {
                for (labels, buckets) in classic_histograms(v.clone()) {
                    let labels = labels.with(&label, &format_float(q));
                    out.push(Sample::new(labels, ctx.at_ms, bucket_quantile(q, buckets)));
                }
            }
            Ok(Value::Vector(out))
        }
        "histogram_fraction" => {
            let (lo, hi) = (a.scalar(0)?, a.scalar(1)?);
            let v = a.vector(2)?;
            Ok(Value::Vector(
                classic_histograms(v)
                    .into_iter()
                    .map(|(labels, buckets)| {
                        Sample::new(labels, ctx.at_ms, bucket_fraction(lo, hi, buckets))
                    })
                    .collect(),
            ))
        }
        // These read native histograms only; float samples are ignored, as in Prometheus.
        "histogram_count" | "histogram_sum" | "histogram_avg" | "histogram_stddev"
        | "histogram_stdvar" => {
            a.vector(0)?;
            Ok(Value::Vector(Vec::new()))
        }
        _ => Err(PromqlError::Unsupported(format!("function {name}()"))),
    }
}

fn eval_err(msg: String) -> PromqlError {
    PromqlError::Eval(msg)
}

fn scalar(ctx: &FnCtx, value: f64) -> Value {
    Value::Scalar {
        timestamp_ms: ctx.at_ms,
        value,
    }
}

fn secs(t_ms: i64) -> f64 {
    t_ms as f64 / 1000.0
}

fn nonempty(p: &[(i64, f64)]) -> Option<&[(i64, f64)]> {
    (!p.is_empty()).then_some(p)
}

/// One series of a range argument with its window.
struct Range<'a> {
    points: &'a [(i64, f64)],
    start_ms: i64,
    end_ms: i64,
}

struct Args<'n> {
    name: &'n str,
    args: Vec<Arg>,
    ctx: FnCtx,
}

impl Args<'_> {
    fn missing(&self, i: usize, what: &str) -> PromqlError {
        eval_err(format!(
            "{}(): expected {what} as argument {}",
            self.name,
            i + 1
        ))
    }

    fn scalar(&self, i: usize) -> Result<f64, PromqlError> {
        match self.args.get(i) {
            Some(Arg::Scalar(v)) => Ok(*v),
            // A scalar-typed argument evaluated as a one-element vector.
            Some(Arg::Vector(v)) if v.len() == 1 => Ok(v[0].value),
            _ => Err(self.missing(i, "a scalar")),
        }
    }

    fn string(&self, i: usize) -> Result<String, PromqlError> {
        match self.args.get(i) {
            Some(Arg::String(s)) => Ok(s.clone()),
            _ => Err(self.missing(i, "a string")),
        }
    }

    fn vector(&mut self, i: usize) -> Result<Vec<Sample>, PromqlError> {
        match self.args.get_mut(i) {
            Some(Arg::Vector(v)) => Ok(std::mem::take(v)),
            _ => Err(self.missing(i, "an instant vector")),
        }
    }

    /// Applies `f` to each series of the range argument; `None` drops the series.
    fn over_range(
        &mut self,
        mut f: impl FnMut(&Range<'_>) -> Option<f64>,
    ) -> Result<Value, PromqlError> {
        let idx = self
            .args
            .iter()
            .position(|a| matches!(a, Arg::Matrix { .. }))
            .ok_or_else(|| self.missing(0, "a range vector"))?;
        let Arg::Matrix {
            series,
            range_start_ms,
            range_end_ms,
        } = std::mem::replace(&mut self.args[idx], Arg::Scalar(0.0))
        else {
            return Err(self.missing(idx, "a range vector"));
        };
        let mut out = Vec::with_capacity(series.len());
        let mut buf = Vec::new();
        for s in series {
            // Stale markers are not samples; the evaluator normally removes them already.
            let points: &[(i64, f64)] = if s.points.iter().any(|p| is_stale(p.1)) {
                buf.clear();
                buf.extend(s.points.iter().copied().filter(|p| !is_stale(p.1)));
                &buf
            } else {
                &s.points
            };
            let r = Range {
                points,
                start_ms: range_start_ms,
                end_ms: range_end_ms,
            };
            if let Some(v) = f(&r) {
                out.push(Sample::new(s.labels, self.ctx.at_ms, v));
            }
        }
        Ok(Value::Vector(out))
    }

    fn map_values(&mut self, f: impl Fn(f64) -> f64) -> Result<Value, PromqlError> {
        let v = self.vector(0)?;
        Ok(Value::Vector(
            v.into_iter()
                .map(|s| Sample::new(s.labels, s.timestamp_ms, f(s.value)))
                .collect(),
        ))
    }

    fn clamp(&mut self, lo: f64, hi: f64) -> Result<Value, PromqlError> {
        if hi < lo {
            self.vector(0)?;
            return Ok(Value::Vector(Vec::new()));
        }
        self.map_values(|v| go_max(lo, go_min(hi, v)))
    }

    fn date(&mut self, f: impl Fn(&Civil) -> f64) -> Result<Value, PromqlError> {
        if self.args.is_empty() {
            let d = Civil::from_unix(self.ctx.at_ms.div_euclid(1000));
            return Ok(Value::Vector(vec![Sample::new(
                Labels::default(),
                self.ctx.at_ms,
                f(&d),
            )]));
        }
        // Go's int64(f) truncates toward zero; NaN and infinities have no date.
        self.map_values(|v| {
            if v.is_finite() {
                f(&Civil::from_unix(v.trunc() as i64))
            } else {
                f64::NAN
            }
        })
    }

    fn label_replace(&mut self) -> Result<Value, PromqlError> {
        let v = self.vector(0)?;
        let dst = self.string(1)?;
        let repl = self.string(2)?;
        let src = self.string(3)?;
        let re_src = self.string(4)?;
        let re = regex::Regex::new(&format!("^(?s:{re_src})$")).map_err(|_| {
            eval_err(format!(
                "invalid regular expression in label_replace(): {re_src}"
            ))
        })?;
        if !super::gostr::is_utf8_name(&dst) {
            return Err(eval_err(format!(
                "invalid destination label name in label_replace(): {}",
                go_display(&dst)
            )));
        }
        let out = v
            .into_iter()
            .map(|mut s| {
                let src_val = s.labels.get(&src).unwrap_or("");
                if let Some(caps) = re.captures(src_val) {
                    let mut res = String::new();
                    caps.expand(&repl, &mut res);
                    s.labels = s.labels.with(&dst, &res);
                }
                s
            })
            .collect();
        unique(out)
    }

    fn label_join(&mut self) -> Result<Value, PromqlError> {
        let v = self.vector(0)?;
        let dst = self.string(1)?;
        let sep = self.string(2)?;
        let srcs = (3..self.args.len())
            .map(|i| self.string(i))
            .collect::<Result<Vec<_>, _>>()?;
        // Prometheus 3 accepts any non-empty UTF-8 label name.
        if let Some(bad) = srcs.iter().find(|s| !super::gostr::is_utf8_name(s)) {
            return Err(eval_err(format!(
                "invalid source label name in label_join(): {}",
                go_display(bad)
            )));
        }
        if !super::gostr::is_utf8_name(&dst) {
            return Err(eval_err(format!(
                "invalid destination label name in label_join(): {}",
                go_display(&dst)
            )));
        }
        let out = v
            .into_iter()
            .map(|mut s| {
                let joined = srcs
                    .iter()
                    .map(|l| s.labels.get(l).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&sep);
                s.labels = s.labels.with(&dst, &joined);
                s
            })
            .collect();
        unique(out)
    }
}

/// Rejects a vector in which two samples have the same labels (Prometheus' rule).
fn unique(v: Vec<Sample>) -> Result<Value, PromqlError> {
    let mut seen = std::collections::HashSet::with_capacity(v.len());
    for s in &v {
        if !seen.insert(&s.labels) {
            return Err(eval_err(
                "vector cannot contain metrics with the same labelset".into(),
            ));
        }
    }
    Ok(Value::Vector(v))
}

/// Go's `math.Min`: -Inf beats NaN, NaN beats numbers (Rust's `f64::min` ignores NaN).
fn go_min(x: f64, y: f64) -> f64 {
    if x == f64::NEG_INFINITY || y == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.min(y)
    }
}

/// Go's `math.Max`: +Inf beats NaN, NaN beats numbers.
fn go_max(x: f64, y: f64) -> f64 {
    if x == f64::INFINITY || y == f64::INFINITY {
        f64::INFINITY
    } else if x.is_nan() || y.is_nan() {
        f64::NAN
    } else {
        x.max(y)
    }
}

fn cmp_nan_last(a: f64, b: f64, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            let o = a.partial_cmp(&b).unwrap_or(Equal);
            if desc { o.reverse() } else { o }
        }
    }
}

/// Natural order: runs of digits compare by numeric value, the rest byte-wise.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    if a.is_empty() || b.is_empty() {
        return a.cmp(b);
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x.0, y.0) {
            (true, true) => {
                let (tx, ty) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
                tx.len()
                    .cmp(&ty.len())
                    .then_with(|| tx.cmp(ty))
                    .then_with(|| x.1.len().cmp(&y.1.len()))
            }
            _ => x.1.cmp(y.1),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// Neumaier's improved Kahan summation step, as Prometheus' `kahansum.Inc`.
fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

fn sum(p: &[(i64, f64)]) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for &(_, v) in p {
        (s, c) = kahan_inc(v, s, c);
    }
    if s.is_infinite() { s } else { s + c }
}

/// Direct Kahan mean while the sum stays finite, incremental mean after (Prometheus'
/// `avg_over_time`).
fn avg(p: &[(i64, f64)]) -> f64 {
    let (mut sum, mut count) = (p[0].1, 1.0);
    let (mut mean, mut c) = (0.0, 0.0);
    let mut incremental = false;
    for (i, &(_, v)) in p[1..].iter().enumerate() {
        count = (i + 2) as f64;
        if !incremental {
            let (ns, nc) = kahan_inc(v, sum, c);
            if !ns.is_infinite() {
                (sum, c) = (ns, nc);
                continue;
            }
            incremental = true;
            mean = sum / (count - 1.0);
            c /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (mean, c) = kahan_inc(v / count, q * mean, q * c);
    }
    if incremental {
        mean + c
    } else {
        sum / count + c / count
    }
}

fn variance(p: &[(i64, f64)]) -> f64 {
    let mut count = 0.0;
    let (mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

fn mad(p: &[(i64, f64)]) -> f64 {
    // A NaN sample makes the result NaN rather than vanishing into the sort order.
    if p.iter().any(|x| x.1.is_nan()) {
        return f64::NAN;
    }
    let median = quantile(0.5, p.iter().map(|x| x.1).collect());
    quantile(0.5, p.iter().map(|x| (x.1 - median).abs()).collect())
}

/// Returns (timestamp, value) of the sample `better` picks, starting from the first.
fn compare_over_time(p: &[(i64, f64)], better: impl Fn(f64, f64) -> bool) -> (i64, f64) {
    let mut best = p[0];
    for &x in p {
        if better(x.1, best.1) {
            best = x;
        }
    }
    best
}

/// Prometheus' `quantile`: linear interpolation between closest ranks; NaN sorts first.
fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

/// `rate`, `increase` and `delta`: the change over the window, corrected for counter
/// resets, extrapolated to the window's edges unless the series starts or ends more than
/// 1.1 average sample intervals inside it (then by half an interval), and never below
/// zero for counters.
fn extrapolated_rate(r: &Range<'_>, is_counter: bool, is_rate: bool) -> Option<f64> {
    let p = r.points;
    if p.len() < 2 {
        return None;
    }
    let (first, last) = (p[0], p[p.len() - 1]);
    let mut result = last.1 - first.1;
    if is_counter {
        for w in p.windows(2) {
            if w[1].1 < w[0].1 {
                result += w[0].1;
            }
        }
    }
    let mut to_start = (first.0 - r.start_ms) as f64 / 1000.0;
    let mut to_end = (r.end_ms - last.0) as f64 / 1000.0;
    let sampled = (last.0 - first.0) as f64 / 1000.0;
    let avg_interval = sampled / (p.len() - 1) as f64;
    let threshold = avg_interval * 1.1;
    if to_start >= threshold {
        to_start = avg_interval / 2.0;
    }
    if is_counter {
        // Counters cannot go negative: stop extrapolating at the counter's zero point.
        let mut to_zero = to_start;
        if result > 0.0 && first.1 >= 0.0 {
            to_zero = sampled * (first.1 / result);
        }
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_interval / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if is_rate {
        factor /= (r.end_ms - r.start_ms) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` / `idelta`: from the last two samples.
fn instant_value(p: &[(i64, f64)], is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (prev, last) = (p[p.len() - 2], p[p.len() - 1]);
    let interval = last.0 - prev.0;
    if interval == 0 {
        return None;
    }
    let mut v = last.1;
    if !is_rate || last.1 >= prev.1 || last.1.is_nan() || prev.1.is_nan() {
        // Gauge, or counter without reset (a reset leaves the last value as the change).
        v = last.1 - prev.1;
    }
    if is_rate {
        v /= interval as f64 / 1000.0;
    }
    Some(v)
}

/// Least-squares fit with Kahan sums; returns (slope, intercept at `intercept_ms`).
fn linear_regression(p: &[(i64, f64)], intercept_ms: i64) -> (f64, f64) {
    let init_y = p[0].1;
    let mut const_y = true;
    let mut n = 0.0;
    let (mut sx, mut cx, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0);
    let (mut sxy, mut cxy, mut sx2, mut cx2) = (0.0, 0.0, 0.0, 0.0);
    for (i, &(t, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = (t - intercept_ms) as f64 / 1e3;
        (sx, cx) = kahan_inc(x, sx, cx);
        (sy, cy) = kahan_inc(v, sy, cy);
        (sxy, cxy) = kahan_inc(x * v, sxy, cxy);
        (sx2, cx2) = kahan_inc(x * x, sx2, cx2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let (sx, sy, sxy, sx2) = (sx + cx, sy + cy, sxy + cxy, sx2 + cx2);
    let cov_xy = sxy - sx * sy / n;
    let var_x = sx2 - sx * sx / n;
    let slope = cov_xy / var_x;
    (slope, sy / n - slope * sx / n)
}

fn double_exponential_smoothing(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (mut s0, mut s1) = (0.0, p[0].1);
    let mut b = p[1].1 - p[0].1;
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

// ---------------------------------------------------------------------------------------
// Classic histograms

/// Groups `_bucket` samples by their labels without `le`; samples without a parseable
/// `le` are ignored (Prometheus warns about them). The metric name stays in the key: two
/// histograms differing only by name collide once the evaluator drops it, an error in
/// Prometheus too.
fn classic_histograms(v: Vec<Sample>) -> Vec<(Labels, Vec<(f64, f64)>)> {
    let mut order: Vec<Labels> = Vec::new();
    let mut groups: HashMap<Labels, Vec<(f64, f64)>> = HashMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(parse_go_float) else {
            continue;
        };
        let key = s.labels.without(&["le"]);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push((le, s.value));
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k).map(|b| (k, b)))
        .collect()
}

/// Go's `strconv.ParseFloat` accepts what Rust does plus a leading '+' on `Inf`.
fn parse_go_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().or_else(|| {
        let t = s.strip_prefix('+')?;
        t.parse::<f64>().ok()
    })
}

/// Sorts by upper bound and merges equal bounds.
fn prepare_buckets(mut b: Vec<(f64, f64)>) -> Option<Vec<(f64, f64)>> {
    b.sort_by(|x, y| x.0.partial_cmp(&y.0).unwrap_or(std::cmp::Ordering::Equal));
    if b.last().is_none_or(|l| l.0 != f64::INFINITY) {
        return None;
    }
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(b.len());
    for (ub, c) in b {
        match out.last_mut() {
            Some(last) if last.0 == ub => last.1 += c,
            _ => out.push((ub, c)),
        }
    }
    Some(out)
}

/// Prometheus' `almost.Equal`.
fn almost_equal(a: f64, b: f64, eps: f64) -> bool {
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < eps * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < eps
}

/// The quantile `q` of classic buckets `(upper bound, cumulative count)`: linear
/// interpolation inside the bucket holding the rank, with 0 as the lower bound of a
/// positive first bucket; the second-highest bound when the rank falls into +Inf; NaN
/// without a +Inf bucket or observations. Non-monotonic counts are flattened first.
pub fn bucket_quantile(q: f64, buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    let Some(mut b) = prepare_buckets(buckets) else {
        return f64::NAN;
    };
    // Ignore floating point noise and remove decreases (the "envelope").
    let mut prev = b[0].1;
    for x in b.iter_mut().skip(1) {
        if x.1 == prev {
            continue;
        }
        if almost_equal(prev, x.1, 1e-12) || x.1 < prev {
            x.1 = prev;
            continue;
        }
        prev = x.1;
    }
    if b.len() < 2 {
        return f64::NAN;
    }
    let observations = b[b.len() - 1].1;
    if observations == 0.0 || observations.is_nan() {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let i = b[..b.len() - 1].partition_point(|x| x.1 < rank);
    if i == b.len() - 1 {
        return b[b.len() - 2].0;
    }
    if i == 0 && b[0].0 <= 0.0 {
        return b[0].0;
    }
    let (mut start, end, mut count) = (0.0, b[i].0, b[i].1);
    if i > 0 {
        start = b[i - 1].0;
        count -= b[i - 1].1;
        rank -= b[i - 1].1;
    }
    start + (end - start) * (rank / count)
}

/// The fraction of observations between `lower` and `upper` in classic buckets, with the
/// interpolation rules of `histogram_fraction`: linear inside finite buckets (0 is the
/// lower bound of a positive first bucket), none inside the open-ended first and +Inf
/// buckets.
pub fn bucket_fraction(lower: f64, upper: f64, buckets: Vec<(f64, f64)>) -> f64 {
    let Some(b) = prepare_buckets(buckets) else {
        return f64::NAN;
    };
    let total = b[b.len() - 1].1;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let rank_at = |v: f64| -> f64 {
        if v == f64::NEG_INFINITY {
            return 0.0;
        }
        if v == f64::INFINITY {
            return total;
        }
        let mut prev = 0.0;
        for (i, &(ub, count)) in b.iter().enumerate() {
            let lb = if i > 0 {
                b[i - 1].0
            } else if ub > 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            };
            if v <= lb {
                return prev;
            }
            if v <= ub {
                if lb == f64::NEG_INFINITY {
                    return count;
                }
                if ub == f64::INFINITY {
                    return prev;
                }
                return prev + (count - prev) * (v - lb) / (ub - lb);
            }
            prev = count;
        }
        total
    };
    (rank_at(upper).min(total) - rank_at(lower).min(total)) / total
}

/// Prometheus' label formatting of a float (`FormatOpenMetricsFloat`): Go's shortest
/// `%g` (exponent form below 1e-4 and from 1e6 on), with ".0" added to plain integers.
fn format_float(v: f64) -> String {
    if v == f64::INFINITY {
        return "+Inf".into();
    } else if v == f64::NEG_INFINITY {
        return "-Inf".into();
    } else if v.is_nan() {
        return "NaN".into();
    }
    // Rust's `{:e}` gives the same shortest digits as Go: "1.5e-5", "1e0".
    let e = format!("{v:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let plain = format!("{v}");
    if plain.contains('.') {
        plain
    } else {
        plain + ".0"
    }
}

// ---------------------------------------------------------------------------------------
// Civil dates (UTC), without a date crate.

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    weekday: u32,
    day_of_year: u32,
}

impl Civil {
    fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            hour: (sod / 3600) as u32,
            minute: (sod % 3600 / 60) as u32,
            weekday: (days + 4).rem_euclid(7) as u32,
            day_of_year: (days - days_from_civil(year, 1, 1) + 1) as u32,
        }
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::METRIC_NAME;

    fn series(name: &str, points: &[(i64, f64)]) -> RangeSeries {
        RangeSeries {
            labels: Labels::new([(METRIC_NAME, name), ("job", "a")]),
            points: points.to_vec(),
        }
    }

    fn matrix(points: &[(i64, f64)], start: i64, end: i64) -> Arg {
        Arg::Matrix {
            series: vec![series("x_total", points)],
            range_start_ms: start,
            range_end_ms: end,
        }
    }

    fn one(name: &str, args: Vec<Arg>, at: i64) -> Option<f64> {
        match call(name, args, &FnCtx { at_ms: at }).unwrap() {
            Value::Vector(v) => {
                assert!(v.len() <= 1);
                v.first().map(|s| s.value)
            }
            Value::Scalar { value, .. } => Some(value),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // Samples every 10 s at 5..55 s, window (0, 60]: 5 s to each edge is under
        // 1.1 × 10 s, so extrapolate fully. Increase 50 over 50 s → 60 over 60 s.
        let pts: Vec<(i64, f64)> = (0..6)
            .map(|i| (5_000 + i * 10_000, i as f64 * 10.0 + 100.0))
            .collect();
        let inc = one("increase", vec![matrix(&pts, 0, 60_000)], 60_000).unwrap();
        // Zero point: 100 / (50/50 s) = 100 s before the first sample > 5 s, no clamp.
        assert!(close(inc, 60.0), "{inc}");
        let rate = one("rate", vec![matrix(&pts, 0, 60_000)], 60_000).unwrap();
        assert!(close(rate, 1.0), "{rate}");
    }

    #[test]
    fn rate_extrapolates_half_interval_when_series_starts_inside() {
        // Samples at 30..60 s every 10 s in window (0, 60]: the start is 30 s away, over
        // 1.1 × 10 s, so extrapolate only 5 s; the end is 0 s away.
        let pts = [
            (30_000, 0.0),
            (40_000, 10.0),
            (50_000, 20.0),
            (60_000, 30.0),
        ];
        // delta (no zero clamp): 30 × (30 + 5 + 0) / 30 = 35.
        let d = one("delta", vec![matrix(&pts, 0, 60_000)], 60_000).unwrap();
        assert!(close(d, 35.0), "{d}");
        // increase: the counter starts at 0 at 30 s, so the zero point (0 s) wins: 30.
        let i = one("increase", vec![matrix(&pts, 0, 60_000)], 60_000).unwrap();
        assert!(close(i, 30.0), "{i}");
    }

    #[test]
    fn rate_handles_counter_resets() {
        // 10 → 20 → 5 (reset) → 15: increase = (15 - 10) + 20 = 25 over the samples.
        let pts = [(0, 10.0), (10_000, 20.0), (20_000, 5.0), (30_000, 15.0)];
        let i = one("increase", vec![matrix(&pts, 0, 30_000)], 30_000).unwrap();
        // to_start = 0, to_end = 0 → factor 1.
        assert!(close(i, 25.0), "{i}");
        assert_eq!(one("resets", vec![matrix(&pts, 0, 30_000)], 0), Some(1.0));
        assert_eq!(one("changes", vec![matrix(&pts, 0, 30_000)], 0), Some(3.0));
        // irate after a reset uses the last value.
        let ir = one("irate", vec![matrix(&pts[..3], 0, 30_000)], 0).unwrap();
        assert!(close(ir, 0.5), "{ir}");
        assert_eq!(one("rate", vec![matrix(&pts[..1], 0, 30_000)], 0), None);
    }

    #[test]
    fn histogram_quantile_classic() {
        let b = vec![
            (0.0, 0.0),
            (2.0, 1.0),
            (4.0, 2.0),
            (6.0, 3.0),
            (f64::INFINITY, 3.0),
        ];
        // q(1/6), q(1/2), q(5/6) sit in the middle of buckets: 1, 3, 5.
        assert!(close(bucket_quantile(1.0 / 6.0, b.clone()), 1.0));
        assert!(close(bucket_quantile(0.5, b.clone()), 3.0));
        assert!(close(bucket_quantile(5.0 / 6.0, b.clone()), 5.0));
        // Rank in the +Inf bucket → the highest finite bound.
        let inf = vec![(1.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.9, inf), 1.0);
        // No +Inf bucket, no observations → NaN; q out of range → ±Inf.
        assert!(bucket_quantile(0.5, vec![(1.0, 1.0)]).is_nan());
        assert!(bucket_quantile(0.5, vec![(1.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, b.clone()), f64::NEG_INFINITY);
        assert_eq!(bucket_quantile(2.0, b), f64::INFINITY);
        // A non-monotonic bucket (2 → 1) is flattened: counts 2, 2, 4 → q(0.5) = rank 2
        // found in the first bucket: 0 + 1 × 2/2 = 1.
        let bad = vec![(1.0, 2.0), (2.0, 1.0), (f64::INFINITY, 4.0)];
        assert!(close(bucket_quantile(0.5, bad), 1.0));
    }

    #[test]
    fn histogram_quantile_groups_buckets_by_labels_without_le() {
        let mk = |le: &str, inst: &str, v: f64| {
            Sample::new(
                Labels::new([(METRIC_NAME, "d_bucket"), ("le", le), ("instance", inst)]),
                0,
                v,
            )
        };
        let v = vec![
            mk("0.1", "a", 1.0),
            mk("0.2", "a", 3.0),
            mk("+Inf", "a", 4.0),
            mk("0.1", "b", 0.0),
            mk("+Inf", "b", 0.0),
        ];
        let Value::Vector(out) = call(
            "histogram_quantile",
            vec![Arg::Scalar(0.5), Arg::Vector(v)],
            &FnCtx { at_ms: 0 },
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(out.len(), 2);
        let a = out
            .iter()
            .find(|s| s.labels.get("instance") == Some("a"))
            .unwrap();
        // `le` is gone; the name stays for the evaluator to drop (delayed name removal).
        assert_eq!(
            a.labels,
            Labels::new([(METRIC_NAME, "d_bucket"), ("instance", "a")])
        );
        // rank 2 in bucket (0.1, 0.2] holding 2: 0.1 + 0.1 × 1/2.
        assert!(close(a.value, 0.15), "{}", a.value);
        let b = out
            .iter()
            .find(|s| s.labels.get("instance") == Some("b"))
            .unwrap();
        assert!(b.value.is_nan());
    }

    #[test]
    fn histogram_fraction_classic() {
        let b = vec![(1.0, 1.0), (2.0, 3.0), (3.0, 6.0), (f64::INFINITY, 100.0)];
        assert!(close(bucket_fraction(0.0, 1.5, b.clone()), 0.02));
        assert!(close(bucket_fraction(0.5, 2.0, b.clone()), 0.025));
        assert!(close(
            bucket_fraction(400.0, f64::INFINITY, b.clone()),
            0.94
        ));
        assert_eq!(bucket_fraction(4.0, 5.0, b.clone()), 0.0);
        let neg = vec![
            (-3.0, 10.0),
            (-2.0, 12.0),
            (-1.0, 15.0),
            (f64::INFINITY, 100.0),
        ];
        assert!(close(bucket_fraction(-4.0, -2.0, neg.clone()), 0.02));
        assert!(close(bucket_fraction(f64::NEG_INFINITY, -1.5, neg), 0.135));
    }

    #[test]
    fn over_time_and_regression() {
        let pts = [(0, 1.0), (10_000, 2.0), (20_000, 3.0), (30_000, 10.0)];
        let m = || matrix(&pts, -1, 30_000);
        assert_eq!(one("sum_over_time", vec![m()], 0), Some(16.0));
        assert_eq!(one("avg_over_time", vec![m()], 0), Some(4.0));
        assert_eq!(one("min_over_time", vec![m()], 0), Some(1.0));
        assert_eq!(one("max_over_time", vec![m()], 0), Some(10.0));
        assert_eq!(one("count_over_time", vec![m()], 0), Some(4.0));
        assert_eq!(one("last_over_time", vec![m()], 0), Some(10.0));
        assert_eq!(
            one("quantile_over_time", vec![Arg::Scalar(0.5), m()], 0),
            Some(2.5)
        );
        assert!(close(one("stdvar_over_time", vec![m()], 0).unwrap(), 12.5));
        // median 2.5, deviations 1.5 0.5 0.5 7.5 → MAD 1; a NaN sample makes it NaN.
        assert_eq!(one("mad_over_time", vec![m()], 0), Some(1.0));
        let nan = [(0, 1.0), (1, f64::NAN)];
        assert!(
            one("mad_over_time", vec![matrix(&nan, -1, 1)], 0)
                .unwrap()
                .is_nan()
        );
        // y = 2 + 0.1 x exactly: slope 0.1/s, prediction 60 s after t=30 s is 11.
        let line: Vec<(i64, f64)> = (0..4).map(|i| (i * 10_000, 2.0 + i as f64)).collect();
        let lm = || matrix(&line, -1, 30_000);
        assert!(close(one("deriv", vec![lm()], 30_000).unwrap(), 0.1));
        let p = one("predict_linear", vec![lm(), Arg::Scalar(60.0)], 30_000).unwrap();
        assert!(close(p, 11.0), "{p}");
    }

    #[test]
    fn results_keep_the_name_for_the_evaluator_to_drop() {
        let ctx = FnCtx { at_ms: 0 };
        let m = || matrix(&[(0, 1.0), (1000, 2.0)], 0, 1000);
        let Value::Vector(v) = call("rate", vec![m()], &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(v[0].labels.name(), Some("x_total"));
        let abs = call("abs", vec![Arg::Vector(v)], &ctx).unwrap();
        let Value::Vector(v) = abs else { panic!() };
        assert_eq!(v[0].labels.name(), Some("x_total"));
    }

    #[test]
    fn dates() {
        // 2024-02-29 13:45:00 UTC is a Thursday, day 60 of a leap year.
        let t = 1_709_214_300.0;
        let v = |f: &str| {
            let s = Sample::new(Labels::default(), 0, t);
            one(f, vec![Arg::Vector(vec![s])], 0).unwrap()
        };
        assert_eq!(v("year"), 2024.0);
        assert_eq!(v("month"), 2.0);
        assert_eq!(v("day_of_month"), 29.0);
        assert_eq!(v("day_of_year"), 60.0);
        assert_eq!(v("days_in_month"), 29.0);
        assert_eq!(v("day_of_week"), 4.0);
        assert_eq!(v("hour"), 13.0);
        assert_eq!(v("minute"), 45.0);
        assert_eq!(one("year", vec![], 0), Some(1970.0));
    }

    #[test]
    fn label_functions() {
        let ctx = FnCtx { at_ms: 0 };
        let s = Sample::new(Labels::new([(METRIC_NAME, "m"), ("src", "a-1")]), 0, 1.0);
        let args = |re: &str, repl: &str| {
            vec![
                Arg::Vector(vec![s.clone()]),
                Arg::String("dst".into()),
                Arg::String(repl.into()),
                Arg::String("src".into()),
                Arg::String(re.into()),
            ]
        };
        let Value::Vector(v) = call("label_replace", args("(.*)-(.*)", "$2$1"), &ctx).unwrap()
        else {
            panic!()
        };
        assert_eq!(v[0].labels.get("dst"), Some("1a"));
        assert_eq!(v[0].labels.name(), Some("m"));
        // No match (anchored): unchanged.
        let Value::Vector(v) = call("label_replace", args("a", "x"), &ctx).unwrap() else {
            panic!()
        };
        assert_eq!(v[0].labels.get("dst"), None);
        assert!(call("label_replace", args("(", "x"), &ctx).is_err());
        assert!(natural_cmp("a2", "a10").is_lt());
        for (v, want) in [
            (0.99, "0.99"),
            (1.0, "1.0"),
            (0.00001, "1e-05"),
            (1234567.0, "1.234567e+06"),
            (100000.0, "100000.0"),
            (-0.5, "-0.5"),
        ] {
            assert_eq!(format_float(v), want);
        }
        // clamp propagates NaN values and NaN bounds, as Go's math.Min/Max do.
        let v = |x: f64| Arg::Vector(vec![Sample::new(Labels::default(), 0, x)]);
        let c = |x, lo, hi| one("clamp", vec![v(x), Arg::Scalar(lo), Arg::Scalar(hi)], 0);
        assert!(c(f64::NAN, 0.0, 1.0).unwrap().is_nan());
        assert!(c(-5.0, 0.0, f64::NAN).unwrap().is_nan());
        assert_eq!(c(-5.0, 0.0, 1.0), Some(0.0));
        assert_eq!(c(5.0, 2.0, 1.0), None);
        assert!(natural_cmp("b", "a10").is_gt());
    }
}
