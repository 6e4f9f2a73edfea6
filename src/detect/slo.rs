//! SLO tracking: event counts in per-minute buckets (kept in the journal so a 30-day window
//! outlives the process), error ratios and burn rates over the SRE workbook's windows, the
//! remaining error budget, and the multi-window multi-burn-rate alerts generated as an
//! ordinary Prometheus rule file.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::common::Duration;
use crate::journal::{Journal, SloBucket};
use crate::promql::{self, Expr, Value};
use crate::rules::RemediateStep;
use crate::store::{Labels, METRIC_NAME, Sample, Store};

use super::DetectError;

/// An SLO's configuration (close to Sloth's spec; the name is the key in `slos:`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    /// The target, as a percentage of good events (e.g. `99.9`).
    pub objective: f64,
    /// The compliance window the error budget is spent over.
    #[serde(default = "default_window")]
    pub window: Duration,
    /// What is being measured (one of `events`, `probe`, `latency`).
    pub sli: SliConfig,
    /// How often the SLI is sampled. Defaults to `global.evaluation_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Free text, copied into the generated alerts' `description` annotation.
    #[serde(default)]
    pub description: Option<String>,
    /// The generated burn-rate alerts and what they carry.
    #[serde(default)]
    pub alerts: SloAlerts,
}

fn default_window() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// How the SLI is measured: set exactly one.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SliConfig {
    /// Request-based: rates of bad and of all events.
    #[serde(default)]
    pub events: Option<EventsSli>,
    /// Probe-based: each evaluation of each probe series is one event, failed when 0.
    #[serde(default)]
    pub probe: Option<ProbeSli>,
    /// Latency: events slower than a threshold (a bucket bound of a classic histogram) are bad.
    #[serde(default)]
    pub latency: Option<LatencySli>,
}

/// A request-based SLI.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSli {
    /// PromQL for bad events per second, e.g.
    /// `sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))`. `{{.window}}` (Sloth's
    /// placeholder) is replaced by `rate_window`. Several series are summed.
    pub error_query: String,
    /// PromQL for all events per second, e.g. `sum(rate(http_requests_total[{{.window}}]))`.
    pub total_query: String,
    /// The range put in place of `{{.window}}`; at least twice the scrape interval.
    #[serde(default = "default_rate_window")]
    pub rate_window: Duration,
}

/// A probe-based SLI.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSli {
    /// The probe collector's name: the query is `probe_success{probe="<name>"}`.
    #[serde(default)]
    pub name: Option<String>,
    /// Or any PromQL whose series are 1 (success) or 0 (failure).
    #[serde(default)]
    pub query: Option<String>,
}

/// A latency SLI from a classic (bucketed) histogram.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySli {
    /// The histogram's base name (without `_bucket`, `_count`).
    pub metric: String,
    /// Label matchers selecting the histogram's series, e.g. `job="inference"`.
    #[serde(default)]
    pub matchers: Option<String>,
    /// Requests at or under this many seconds are good; must be one of the histogram's `le`
    /// bounds, matched as a number (`1` matches `le="1"`, `le="1.0"`, `le="1e+00"`).
    pub threshold: f64,
    /// The range of the generated `rate()`s.
    #[serde(default = "default_rate_window")]
    pub rate_window: Duration,
}

fn default_rate_window() -> Duration {
    Duration::from_secs(60)
}

/// The generated alerts of one SLO.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SloAlerts {
    /// The alert name (default `SLOErrorBudgetBurn`); page and ticket differ by `severity`.
    #[serde(default)]
    pub name: Option<String>,
    /// The fast burn (1h and 5m above 14.4, or 6h and 30m above 6).
    #[serde(default)]
    pub page: BurnAlert,
    /// The slow burn (1d and 2h above 3, or 3d and 6h above 1).
    #[serde(default)]
    pub ticket: BurnAlert,
}

/// Options of one generated alert.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BurnAlert {
    /// Generate this alert.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// How long the condition must hold before firing (the rule's `for`).
    #[serde(default, rename = "for")]
    pub for_: Option<Duration>,
    /// Extra labels (`severity` is `page` or `ticket` unless set here).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations (templated like any rule's).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// A remediation ladder, exactly as in a rule file's `remediate:`.
    #[serde(default)]
    pub remediate: Vec<RemediateStep>,
}

impl Default for BurnAlert {
    fn default() -> Self {
        BurnAlert {
            enabled: true,
            for_: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            remediate: Vec::new(),
        }
    }
}

fn default_true() -> bool {
    true
}

/// The windows of `medic_slo_sli_error_ratio` and `medic_slo_burn_rate`, in minutes.
pub const WINDOWS: [(&str, i64); 7] = [
    ("5m", 5),
    ("30m", 30),
    ("1h", 60),
    ("2h", 120),
    ("6h", 360),
    ("1d", 1440),
    ("3d", 4320),
];

/// The SRE workbook's alert pairs: severity, long window, short window, burn-rate factor.
pub const BURN_ALERTS: [(&str, &str, &str, f64); 4] = [
    ("page", "1h", "5m", 14.4),
    ("page", "6h", "30m", 6.0),
    ("ticket", "1d", "2h", 3.0),
    ("ticket", "3d", "6h", 1.0),
];

pub const SLI_ERROR_RATIO: &str = "medic_slo_sli_error_ratio";
pub const BURN_RATE: &str = "medic_slo_burn_rate";
pub const BUDGET_REMAINING: &str = "medic_slo_error_budget_remaining_ratio";
pub const COMPLIANCE: &str = "medic_slo_compliance_ratio";
pub const OBJECTIVE: &str = "medic_slo_objective_ratio";

const MINUTE_MS: i64 = 60_000;

enum Source {
    /// Rates of bad and all events per second, integrated over time.
    Rates { errors: Expr, total: Expr },
    /// Each series of each evaluation is one event.
    Probe(Expr),
}

/// Per-minute event counts over the compliance window, and the arithmetic on them.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    objective: f64,
    window_minutes: i64,
    buckets: VecDeque<SloBucket>,
}

impl Budget {
    /// `objective` as a ratio (0.999).
    pub fn new(objective: f64, window: Duration) -> Budget {
        Budget {
            objective,
            window_minutes: (window.as_millis_i64() / MINUTE_MS).max(1),
            buckets: VecDeque::new(),
        }
    }

    /// Adds events to the minute of `at_ms`; returns that minute's bucket (to journal it).
    /// Events older than the newest bucket's minute go to the newest bucket.
    pub fn add(&mut self, at_ms: i64, errors: f64, total: f64) -> SloBucket {
        let minute = at_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        match self.buckets.back_mut() {
            Some(b) if b.minute_ms >= minute => {
                b.errors += errors;
                b.total += total;
            }
            _ => self.buckets.push_back(SloBucket {
                minute_ms: minute,
                errors,
                total,
            }),
        }
        let oldest = minute - (self.window_minutes - 1) * MINUTE_MS;
        while self.buckets.front().is_some_and(|b| b.minute_ms < oldest) {
            self.buckets.pop_front();
        }
        // Invariant: a bucket was just pushed or updated.
        *self.buckets.back().expect("bucket just written")
    }

    /// Replaces the buckets (loading from the journal), oldest first.
    pub fn load(&mut self, buckets: Vec<SloBucket>) {
        self.buckets = buckets.into();
    }

    pub fn buckets(&self) -> impl Iterator<Item = &SloBucket> {
        self.buckets.iter()
    }

    /// Sum of (errors, total) over every bucket held.
    pub fn totals(&self) -> (f64, f64) {
        self.buckets
            .iter()
            .fold((0.0, 0.0), |(e, t), b| (e + b.errors, t + b.total))
    }

    /// Sum of (errors, total) over the `minutes` minutes ending with the minute of `now_ms`
    /// (the current, partial minute included).
    pub fn sums(&self, now_ms: i64, minutes: i64) -> (f64, f64) {
        let minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
        let oldest = minute - (minutes - 1) * MINUTE_MS;
        self.buckets
            .iter()
            .rev()
            .skip_while(|b| b.minute_ms > minute)
            .take_while(|b| b.minute_ms >= oldest)
            .fold((0.0, 0.0), |(e, t), b| (e + b.errors, t + b.total))
    }

    /// Error ratio over the last `minutes` (0 without events).
    pub fn error_ratio(&self, now_ms: i64, minutes: i64) -> f64 {
        let (e, t) = self.sums(now_ms, minutes);
        if t > 0.0 {
            (e / t).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// How fast the budget burns over the last `minutes`: 1 spends it exactly over the window.
    pub fn burn_rate(&self, now_ms: i64, minutes: i64) -> f64 {
        self.error_ratio(now_ms, minutes) / (1.0 - self.objective)
    }

    /// Good events over the whole window (1 without events).
    pub fn compliance(&self, now_ms: i64) -> f64 {
        1.0 - self.error_ratio(now_ms, self.window_minutes)
    }

    /// Share of the window's error budget left (negative when overspent).
    pub fn remaining(&self, now_ms: i64) -> f64 {
        1.0 - self.error_ratio(now_ms, self.window_minutes) / (1.0 - self.objective)
    }
}

/// A latency SLI's check that the threshold names an existing bucket: until a bucket
/// matches, the SLI would count no slow requests at all, so that is warned about once.
struct BucketCheck {
    /// `sum(rate(<bucket at the threshold>))`, and the `_count` rate.
    good: Expr,
    total: Expr,
    metric: String,
    threshold: f64,
    /// The bucket was seen (no more checks), or the warning was given.
    done: bool,
    warned: bool,
}

/// One configured SLO, following its SLI into the store and the journal.
pub struct SloTracker {
    name: String,
    config: SloConfig,
    source: Source,
    interval_ms: i64,
    budget: Budget,
    journal: Option<Journal>,
    last_eval_ms: Option<i64>,
    last_pruned_minute: i64,
    labels: SloLabels,
    bucket_check: Option<BucketCheck>,
}

struct SloLabels {
    error_ratio: Vec<Labels>,
    burn_rate: Vec<Labels>,
    remaining: Labels,
    compliance: Labels,
    objective: Labels,
}

impl SloTracker {
    pub fn build(
        name: &str,
        config: &SloConfig,
        default_interval: Duration,
        journal: Option<Journal>,
    ) -> Result<SloTracker, DetectError> {
        let bad = |message: String| DetectError::Config {
            detector: format!("slo {name}"),
            message,
        };
        if !(config.objective > 0.0 && config.objective < 100.0) {
            return Err(bad(format!(
                "objective must be a percentage between 0 and 100 (exclusive), e.g. 99.9; got {}",
                config.objective
            )));
        }
        if config.window.as_millis_i64() < MINUTE_MS {
            return Err(bad("window must be at least 1m".into()));
        }
        let parse = |q: &str| {
            promql::parse(q)
                .and_then(|e| promql::check_supported(&e).map(|()| e))
                .map_err(|e| DetectError::Query {
                    detector: format!("slo {name}"),
                    query: q.to_string(),
                    message: e.to_string(),
                })
        };
        let s = &config.sli;
        let mut bucket_check = None;
        let source = match (&s.events, &s.probe, &s.latency) {
            (Some(ev), None, None) => {
                let w = ev.rate_window.to_string();
                Source::Rates {
                    errors: parse(&ev.error_query.replace("{{.window}}", &w))?,
                    total: parse(&ev.total_query.replace("{{.window}}", &w))?,
                }
            }
            (None, Some(p), None) => {
                let q = match (&p.name, &p.query) {
                    (Some(n), None) => format!("probe_success{{probe={}}}", promql_string(n)),
                    (None, Some(q)) => q.clone(),
                    _ => {
                        return Err(bad(
                            "sli.probe needs exactly one of `name` or `query`".into()
                        ));
                    }
                };
                Source::Probe(parse(&q)?)
            }
            (None, None, Some(l)) => {
                let (errors, total, good) = latency_queries(l);
                bucket_check = Some(BucketCheck {
                    good: parse(&good)?,
                    total: parse(&total)?,
                    metric: l.metric.clone(),
                    threshold: l.threshold,
                    done: false,
                    warned: false,
                });
                Source::Rates {
                    errors: parse(&errors)?,
                    total: parse(&total)?,
                }
            }
            _ => {
                return Err(bad(
                    "sli needs exactly one of `events`, `probe` or `latency`".into(),
                ));
            }
        };
        let mut budget = Budget::new(config.objective / 100.0, config.window);
        if let Some(j) = &journal {
            let since = now_floor_minute() - config.window.as_millis_i64();
            budget.load(j.slo_buckets(name, since)?);
        }
        let base = Labels::new([("slo", name)]);
        let per_window = |metric: &str| -> Vec<Labels> {
            WINDOWS
                .iter()
                .map(|(w, _)| base.with("window", w).with(METRIC_NAME, metric))
                .collect()
        };
        let labels = SloLabels {
            error_ratio: per_window(SLI_ERROR_RATIO),
            burn_rate: per_window(BURN_RATE),
            remaining: base.with(METRIC_NAME, BUDGET_REMAINING),
            compliance: base.with(METRIC_NAME, COMPLIANCE),
            objective: base.with(METRIC_NAME, OBJECTIVE),
        };
        Ok(SloTracker {
            name: name.to_string(),
            config: config.clone(),
            source,
            interval_ms: config
                .interval
                .unwrap_or(default_interval)
                .as_millis_i64()
                .max(1),
            budget,
            journal,
            last_eval_ms: None,
            last_pruned_minute: i64::MIN,
            labels,
            bucket_check,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &SloConfig {
        &self.config
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// For a latency SLI: whether it warned that no bucket of the histogram has the
    /// threshold as its bound (so no request counted as slow).
    pub fn latency_bucket_missing(&self) -> bool {
        self.bucket_check.as_ref().is_some_and(|c| c.warned)
    }

    /// How far back the SLI queries read (for the store's retention).
    pub fn lookback_needed_ms(&self) -> i64 {
        match &self.source {
            Source::Rates { errors, total } => {
                promql::max_lookback_ms(errors).max(promql::max_lookback_ms(total))
            }
            Source::Probe(e) => promql::max_lookback_ms(e),
        }
    }

    /// Replaces the in-memory buckets with the journal's (no-op without a journal).
    pub fn reload_from_journal(&mut self) -> Result<(), DetectError> {
        if let Some(j) = &self.journal {
            let since = now_floor_minute() - self.config.window.as_millis_i64();
            self.budget.load(j.slo_buckets(&self.name, since)?);
        }
        Ok(())
    }

    /// Takes over the in-memory counts of `old` (same name and config, before a reload).
    pub fn adopt(&mut self, old: SloTracker) {
        self.budget = old.budget;
        self.last_eval_ms = old.last_eval_ms;
    }

    /// Adds events at `now_ms` and journals the minute's bucket.
    pub fn record(&mut self, now_ms: i64, errors: f64, total: f64) -> Result<(), DetectError> {
        let bucket = self.budget.add(now_ms, errors.max(0.0), total.max(0.0));
        if let Some(j) = &self.journal {
            j.slo_put_bucket(&self.name, bucket)?;
            if bucket.minute_ms != self.last_pruned_minute {
                self.last_pruned_minute = bucket.minute_ms;
                j.slo_prune(
                    &self.name,
                    bucket.minute_ms - self.config.window.as_millis_i64(),
                )?;
            }
        }
        Ok(())
    }

    /// Samples the SLI at `now_ms`, records the events and returns the output series.
    pub fn evaluate(&mut self, store: &Store, now_ms: i64) -> Result<Vec<Sample>, DetectError> {
        let eval = |expr: &Expr| {
            promql::eval_instant(store, expr, now_ms).map_err(|e| DetectError::Eval {
                detector: format!("slo {}", self.name),
                message: e.to_string(),
            })
        };
        if let Some(c) = self.bucket_check.as_mut().filter(|c| !c.done) {
            let has = |v: Value| match v {
                Value::Vector(v) => !v.is_empty(),
                Value::Scalar { .. } => true,
                _ => false,
            };
            let opts = promql::EvalOptions::default();
            let reader = store.reader();
            let run = |e: &Expr| promql::eval_with_reader(&reader, e, now_ms, &opts).map(has);
            match (run(&c.good), run(&c.total)) {
                (Ok(true), _) => c.done = true,
                (Ok(false), Ok(true)) => {
                    tracing::warn!(
                        slo = %self.name,
                        metric = %c.metric,
                        threshold = c.threshold,
                        "latency SLI: no {}_bucket series has le equal to the threshold; no request counts as slow until one does",
                        c.metric
                    );
                    c.warned = true;
                    c.done = true;
                }
                _ => {} // no data yet: check again next time
            }
        }
        let (errors, total) = match &self.source {
            Source::Rates { errors, total } => {
                // Integrate the rates over the time since the last sample; after a gap (a
                // restart) count at most two intervals rather than invent a long stretch.
                let dt_ms = self.last_eval_ms.map_or(self.interval_ms, |t| {
                    (now_ms - t).clamp(0, 2 * self.interval_ms)
                });
                let dt = dt_ms as f64 / 1000.0;
                let e = sum_value(eval(errors)?);
                let t = sum_value(eval(total)?);
                (e.min(t).max(0.0) * dt, t.max(0.0) * dt)
            }
            Source::Probe(expr) => match eval(expr)? {
                Value::Vector(v) => v
                    .iter()
                    .filter(|s| s.value.is_finite())
                    .fold((0.0, 0.0), |(e, t), s| {
                        (e + (1.0 - s.value.clamp(0.0, 1.0)), t + 1.0)
                    }),
                Value::Scalar { value, .. } if value.is_finite() => {
                    (1.0 - value.clamp(0.0, 1.0), 1.0)
                }
                _ => (0.0, 0.0),
            },
        };
        self.last_eval_ms = Some(now_ms);
        self.record(now_ms, errors, total)?;
        Ok(self.outputs(now_ms))
    }

    /// The output series at `now_ms`.
    pub fn outputs(&self, now_ms: i64) -> Vec<Sample> {
        let b = &self.budget;
        let mut out = Vec::with_capacity(2 * WINDOWS.len() + 3);
        for (i, (_, minutes)) in WINDOWS.iter().enumerate() {
            out.push(Sample::new(
                self.labels.error_ratio[i].clone(),
                now_ms,
                b.error_ratio(now_ms, *minutes),
            ));
            out.push(Sample::new(
                self.labels.burn_rate[i].clone(),
                now_ms,
                b.burn_rate(now_ms, *minutes),
            ));
        }
        out.push(Sample::new(
            self.labels.remaining.clone(),
            now_ms,
            b.remaining(now_ms),
        ));
        out.push(Sample::new(
            self.labels.compliance.clone(),
            now_ms,
            b.compliance(now_ms),
        ));
        out.push(Sample::new(
            self.labels.objective.clone(),
            now_ms,
            b.objective,
        ));
        out
    }
}

/// The (bad, all, good) rate queries of a latency SLI.
fn latency_queries(l: &LatencySli) -> (String, String, String) {
    let m = l.matchers.as_deref().unwrap_or("").trim();
    let sep = if m.is_empty() { "" } else { "," };
    let w = l.rate_window;
    let total = format!("sum(rate({}_count{{{m}}}[{w}]))", l.metric);
    let good = format!(
        "sum(rate({}_bucket{{{m}{sep}le=~{}}}[{w}]))",
        l.metric,
        promql_string(&le_regex(l.threshold))
    );
    (format!("({total}) - ({good})"), total, good)
}

/// A regex (anchored, as PromQL's are) matching the usual spellings of `v` as an `le` label:
/// Go's `1`, `0.5`, `1e-05`, `1e+06`; Python's and OpenMetrics' `1.0`; trailing zeros.
fn le_regex(v: f64) -> String {
    if v.is_infinite() {
        return if v > 0.0 { r"\+?[Ii]nf" } else { r"-[Ii]nf" }.to_string();
    }
    // digits with optional trailing zeros after the point
    let digits = |s: &str| {
        let s = s.replace('.', r"\.");
        if s.contains('.') {
            format!("{s}0*")
        } else {
            format!(r"{s}(\.0*)?")
        }
    };
    let plain = digits(&format!("{v}"));
    let sci = format!("{v:e}"); // "1e0", "2.5e-1"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let exp = if exp < 0 {
        format!("-0*{}", -exp)
    } else {
        format!(r"\+?0*{exp}")
    };
    format!("{plain}|{}[eE]{exp}", digits(mantissa))
}

/// A window as people say it: `30d` rather than the canonical `4w2d`.
fn human_window(d: Duration) -> String {
    let ms = d.as_millis_i64();
    if ms % 86_400_000 == 0 {
        format!("{}d", ms / 86_400_000)
    } else {
        d.to_string()
    }
}

fn promql_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn sum_value(v: Value) -> f64 {
    match v {
        Value::Scalar { value, .. } if value.is_finite() => value,
        Value::Vector(v) => v.iter().map(|s| s.value).filter(|x| x.is_finite()).sum(),
        _ => 0.0,
    }
}

fn now_floor_minute() -> i64 {
    crate::common::time::now_ms().div_euclid(MINUTE_MS) * MINUTE_MS
}

// ---------------------------------------------------------------------------------------
// Generated alerting rules

#[derive(Serialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Serialize)]
struct RuleGroup {
    name: String,
    interval: Duration,
    rules: Vec<AlertRule>,
}

#[derive(Serialize)]
struct AlertRule {
    alert: String,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<Duration>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    remediate: Vec<RemediateStep>,
}

/// The multi-window multi-burn-rate alerts of one SLO as PromQL, by severity: the condition
/// holds when both windows of a pair burn faster than the pair's factor.
pub fn burn_rate_expr(slo: &str, severity: &str) -> String {
    let sel = |w: &str| {
        format!(
            "max without (window) ({BURN_RATE}{{slo={}, window=\"{w}\"}})",
            promql_string(slo)
        )
    };
    BURN_ALERTS
        .iter()
        .filter(|(s, ..)| *s == severity)
        .map(|(_, long, short, f)| format!("({} > {f} and {} > {f})", sel(long), sel(short)))
        .collect::<Vec<_>>()
        .join("\nor\n")
}

/// The rule file (YAML) with one group per SLO holding its page and ticket alerts.
pub fn rule_file_yaml<'a>(slos: impl IntoIterator<Item = &'a SloTracker>) -> String {
    let groups = slos
        .into_iter()
        .map(|s| RuleGroup {
            name: format!("slo:{}", s.name),
            interval: Duration::from_millis(s.interval_ms as u64),
            rules: alert_rules(&s.name, &s.config),
        })
        .collect();
    // Serialising plain strings and maps cannot fail; an empty file is the safe fallback.
    let mut opts = serde_saphyr::SerializerOptions::default();
    opts.folded_wrap_chars = 400;
    serde_saphyr::to_string_with_options(&RuleFile { groups }, opts).unwrap_or_default()
}

fn alert_rules(name: &str, c: &SloConfig) -> Vec<AlertRule> {
    let alertname = c
        .alerts
        .name
        .clone()
        .unwrap_or_else(|| "SLOErrorBudgetBurn".to_string());
    [("page", &c.alerts.page), ("ticket", &c.alerts.ticket)]
        .into_iter()
        .filter(|(_, a)| a.enabled)
        .map(|(severity, a)| {
            let mut labels = BTreeMap::from([
                ("severity".to_string(), severity.to_string()),
                ("slo".to_string(), name.to_string()),
            ]);
            labels.extend(a.labels.clone());
            let mut annotations = BTreeMap::from([(
                "summary".to_string(),
                format!(
                    "SLO {name} ({}% over {}) is burning its error budget {{{{ printf \"%.1f\" $value }}}}x too fast",
                    c.objective,
                    human_window(c.window)
                ),
            )]);
            if let Some(d) = &c.description {
                annotations.insert("description".to_string(), d.clone());
            }
            annotations.extend(a.annotations.clone());
            AlertRule {
                alert: alertname.clone(),
                expr: burn_rate_expr(name, severity),
                for_: a.for_,
                labels,
                annotations,
                remediate: a.remediate.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = MINUTE_MS;

    #[test]
    fn burn_rates_match_hand_computed() {
        // 99.9 % over 30 days: the budget is 0.1 % of events.
        let mut b = Budget::new(0.999, Duration::from_secs(30 * 86_400));
        let now = 10_000 * M;
        // 55 quiet minutes (1000 events, none bad), then 5 minutes at 2 % errors.
        for m in 0..55 {
            b.add(now - (59 - m) * M, 0.0, 1000.0);
        }
        for m in 55..60 {
            b.add(now - (59 - m) * M + 30_000, 20.0, 1000.0);
        }
        // 5m: 100 / 5000 = 2 % → burn 20; 1h: 100 / 60000 → burn 1.6667
        assert!((b.error_ratio(now, 5) - 0.02).abs() < 1e-12);
        assert!((b.burn_rate(now, 5) - 20.0).abs() < 1e-9);
        assert!((b.burn_rate(now, 60) - 100.0 / 60_000.0 / 0.001).abs() < 1e-9);
        // 30m: 100 / 30000
        assert!((b.error_ratio(now, 30) - 100.0 / 30_000.0).abs() < 1e-12);
        // whole window = the same 60 minutes: remaining 1 - 1.6667 = -0.6667 (overspent)
        assert!((b.remaining(now) - (1.0 - 100.0 / 60.0)).abs() < 1e-9);
        assert!((b.compliance(now) - (1.0 - 100.0 / 60_000.0)).abs() < 1e-12);
    }

    #[test]
    fn buckets_roll_out_of_the_window() {
        let mut b = Budget::new(0.99, Duration::from_secs(10 * 60));
        for m in 0..30 {
            b.add(m * M, 1.0, 10.0);
        }
        assert_eq!(b.buckets().count(), 10);
        assert_eq!(b.sums(29 * M, 10), (10.0, 100.0));
        // 1 - 0.1 / 0.01 = -9
        assert!((b.remaining(29 * M) + 9.0).abs() < 1e-9);
        // no events: nothing burnt
        let e = Budget::new(0.99, Duration::from_secs(600));
        assert_eq!(
            (e.burn_rate(0, 5), e.remaining(0), e.compliance(0)),
            (0.0, 1.0, 1.0)
        );
        // several adds in one minute land in one bucket
        let mut b = Budget::new(0.99, Duration::from_secs(600));
        b.add(M, 1.0, 2.0);
        let last = b.add(M + 59_999, 1.0, 2.0);
        assert_eq!(last.errors, 2.0);
        assert_eq!(b.buckets().count(), 1);
    }

    #[test]
    fn generated_rules_have_the_workbook_pairs() {
        let e = burn_rate_expr("api", "page");
        assert_eq!(
            e,
            "(max without (window) (medic_slo_burn_rate{slo=\"api\", window=\"1h\"}) > 14.4 and max without (window) (medic_slo_burn_rate{slo=\"api\", window=\"5m\"}) > 14.4)\nor\n(max without (window) (medic_slo_burn_rate{slo=\"api\", window=\"6h\"}) > 6 and max without (window) (medic_slo_burn_rate{slo=\"api\", window=\"30m\"}) > 6)"
        );
        assert!(promql::parse(&e).is_ok());
        assert!(promql::parse(&burn_rate_expr("api", "ticket")).is_ok());
    }

    #[test]
    fn latency_queries_select_the_threshold_bucket() {
        let (bad, total, _) = latency_queries(&LatencySli {
            metric: "http_request_duration_seconds".into(),
            matchers: Some("job=\"api\"".into()),
            threshold: 0.5,
            rate_window: Duration::from_secs(120),
        });
        assert_eq!(
            total,
            "sum(rate(http_request_duration_seconds_count{job=\"api\"}[2m]))"
        );
        assert!(bad.contains("http_request_duration_seconds_bucket{job=\"api\",le=~"));
        assert!(promql::parse(&bad).is_ok());
    }

    #[test]
    fn le_regex_matches_the_usual_spellings_only() {
        let m = |v: f64, s: &str| {
            regex::Regex::new(&format!("^(?:{})$", le_regex(v)))
                .unwrap()
                .is_match(s)
        };
        for s in ["1", "1.0", "1.00", "1e+00", "1e0", "1.0e+00", "1E0"] {
            assert!(m(1.0, s), "{s}");
        }
        for s in ["10", "0.1", "1.5", "11", "1e+01", "0"] {
            assert!(!m(1.0, s), "{s}");
        }
        for s in ["0.5", "0.50", "5e-01", "5.0e-1"] {
            assert!(m(0.5, s), "{s}");
        }
        for s in ["0.05", "5", "0.55", "5e-02"] {
            assert!(!m(0.5, s), "{s}");
        }
        assert!(m(0.00001, "1e-05") && m(0.00001, "0.00001"));
        assert!(m(1e6, "1e+06") && m(1e6, "1000000") && !m(1e6, "100000"));
        assert!(m(f64::INFINITY, "+Inf") && !m(f64::INFINITY, "1"));
    }

    #[test]
    fn config_errors_name_the_slo() {
        let cfg: SloConfig =
            serde_saphyr::from_str("objective: 100\nsli: {probe: {name: x}}\n").unwrap();
        let e = SloTracker::build("api", &cfg, Duration::from_secs(15), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("slo api") && e.contains("objective"), "{e}");
        let cfg: SloConfig = serde_saphyr::from_str("objective: 99\nsli: {}\n").unwrap();
        let e = SloTracker::build("api", &cfg, Duration::from_secs(15), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
        let r = serde_saphyr::from_str::<SloConfig>("objective: 99\nsli: {probe: {}}\nwindw: 1d\n");
        assert!(r.is_err());
    }
}
