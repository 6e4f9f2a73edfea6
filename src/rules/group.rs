//! A rule group: its rules evaluated in order at one timestamp, their health, and the
//! series they write (with stale markers for series that disappear).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use super::alerting::{AlertingRule, SavedAlert};
use super::recording::RecordingRule;
use super::template::RenderContext;
use super::{AlertInstance, AlertState, AlertTransition, GroupOptions};
use crate::common::Duration;
use crate::promql::{self, Expr, PromqlError, Value};
use crate::store::{Labels, Sample, Store};

/// A recording or alerting rule.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // a few hundred rules; boxing buys nothing
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(r) => r.name(),
            Rule::Alerting(a) => a.name(),
        }
    }

    pub fn expr(&self) -> &Expr {
        match self {
            Rule::Recording(r) => &r.expr,
            Rule::Alerting(a) => &a.expr,
        }
    }
}

/// Result of a rule's last evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleHealth {
    /// Not evaluated yet.
    Unknown,
    Ok,
    Err,
}

#[derive(Debug, Clone)]
struct Entry {
    rule: Rule,
    health: RuleHealth,
    last_error: Option<String>,
    last_eval_ms: Option<i64>,
    last_duration_s: f64,
    /// Series written at the previous evaluation (to mark the vanished ones stale).
    prev_series: HashSet<Labels>,
}

/// A group of rules evaluated together.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    name: String,
    file: PathBuf,
    interval: Duration,
    query_offset: Duration,
    limit: usize,
    entries: Vec<Entry>,
    last_eval_ms: Option<i64>,
    last_duration_s: f64,
    last_failures: usize,
    subquery_step_ms: i64,
}

/// How saved alert state is taken back (Prometheus' `--rules.alert.for-outage-tolerance`
/// and `--rules.alert.for-grace-period`).
#[derive(Debug, Clone, Copy)]
pub struct RestoreOptions {
    /// After a longer outage nothing is restored (firing alerts are resolved).
    pub outage_tolerance_ms: i64,
    /// A restored pending alert fires no sooner than this after the start.
    pub grace_ms: i64,
}

/// One rule as `/api/v1/rules` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleSnapshot {
    /// "alerting" or "recording".
    pub kind: &'static str,
    pub name: String,
    pub query: String,
    /// Alerting rules: `for`, seconds.
    pub duration_s: f64,
    /// Alerting rules: `keep_firing_for`, seconds.
    pub keep_firing_for_s: f64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Alerting rules: pending and firing alerts.
    pub alerts: Vec<AlertInstance>,
    /// Alerting rules: firing, pending or inactive.
    pub state: Option<AlertState>,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_time_s: f64,
}

/// One group as `/api/v1/rules` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupSnapshot {
    pub name: String,
    pub file: PathBuf,
    pub interval_s: f64,
    pub limit: usize,
    pub rules: Vec<RuleSnapshot>,
    pub last_evaluation_ms: Option<i64>,
    pub evaluation_time_s: f64,
}

impl RuleGroup {
    pub(crate) fn new(
        name: String,
        file: PathBuf,
        interval: Duration,
        query_offset: Duration,
        limit: usize,
        rules: Vec<Rule>,
        opts: &GroupOptions,
    ) -> Self {
        RuleGroup {
            name,
            file,
            interval,
            query_offset,
            limit,
            entries: rules
                .into_iter()
                .map(|rule| Entry {
                    rule,
                    health: RuleHealth::Unknown,
                    last_error: None,
                    last_eval_ms: None,
                    last_duration_s: 0.0,
                    prev_series: HashSet::new(),
                })
                .collect(),
            last_eval_ms: None,
            last_duration_s: 0.0,
            last_failures: 0,
            subquery_step_ms: opts.subquery_step.as_millis_i64(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval.as_millis_i64()
    }

    pub fn rule_count(&self) -> usize {
        self.entries.len()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.entries.iter().map(|e| &e.rule)
    }

    /// Rules that failed at the last evaluation (for `medic_rule_evaluation_failures_total`).
    pub fn last_failures(&self) -> usize {
        self.last_failures
    }

    /// Duration of the last evaluation, seconds (for `medic_rule_group_last_duration_seconds`).
    pub fn last_duration_s(&self) -> f64 {
        self.last_duration_s
    }

    /// How far back the group's expressions read, query offset included (0 for a group
    /// without rules).
    pub fn max_lookback_ms(&self) -> i64 {
        self.entries
            .iter()
            .map(|e| promql::max_lookback_ms(e.rule.expr()) + self.query_offset.as_millis_i64())
            .max()
            .unwrap_or(0)
    }

    /// Evaluates every rule at `at_ms` over `store`, writes recording results and `ALERTS`
    /// series into it and returns the alert transitions.
    ///
    /// Each rule's query takes its own read view of the store, released before the rule's
    /// results are written, so a recording rule's output is visible to the rules after it
    /// in the same round (as in Prometheus); templates' `query` runs at `at_ms` the same way.
    pub fn eval(&mut self, store: &Store, at_ms: i64) -> Vec<AlertTransition> {
        let opts = promql::EvalOptions {
            default_step_ms: self.subquery_step_ms,
            ..promql::EvalOptions::default()
        };
        let tmpl_query = |q: &str| template_query(store, q, at_ms, &opts);
        let ctx = RenderContext {
            query: Some(&tmpl_query),
            now_ms: Some(at_ms),
        };
        self.eval_in(
            store,
            at_ms,
            |expr, t| promql::eval_instant_with(store, expr, t, &opts),
            &ctx,
        )
    }

    /// [`RuleGroup::eval`] with the query supplied (tests feed vectors directly); templates
    /// cannot `query`.
    pub fn eval_with<Q>(&mut self, store: &Store, at_ms: i64, query: Q) -> Vec<AlertTransition>
    where
        Q: FnMut(&Expr, i64) -> Result<Value, PromqlError>,
    {
        self.eval_in(store, at_ms, query, &RenderContext::default())
    }

    fn eval_in<Q>(
        &mut self,
        store: &Store,
        at_ms: i64,
        mut query: Q,
        ctx: &RenderContext,
    ) -> Vec<AlertTransition>
    where
        Q: FnMut(&Expr, i64) -> Result<Value, PromqlError>,
    {
        let started = Instant::now();
        let query_ts = at_ms - self.query_offset.as_millis_i64();
        let mut transitions = Vec::new();
        self.last_failures = 0;
        for e in &mut self.entries {
            let rule_started = Instant::now();
            let result = query(e.rule.expr(), query_ts).and_then(to_vector);
            let written = match (result, &mut e.rule) {
                (Err(err), _) => Err(err.to_string()),
                (Ok(v), Rule::Recording(r)) => r.apply(&v, query_ts, self.limit),
                (Ok(v), Rule::Alerting(a)) => a
                    .eval_vector(&self.name, &v, at_ms, self.limit, ctx)
                    .map(|out| {
                        transitions.extend(out.transitions);
                        out.series
                            .into_iter()
                            .map(|s| Sample::new(s.labels, query_ts, s.value))
                            .collect()
                    }),
            };
            e.last_eval_ms = Some(at_ms);
            match written {
                Ok(samples) => {
                    e.health = RuleHealth::Ok;
                    e.last_error = None;
                    let now: HashSet<Labels> = samples.iter().map(|s| s.labels.clone()).collect();
                    store.append_batch(&samples);
                    for gone in e.prev_series.difference(&now) {
                        store.mark_stale(gone, query_ts);
                    }
                    e.prev_series = now;
                }
                Err(msg) => {
                    tracing::warn!(group = %self.name, rule = %e.rule.name(), error = %msg, "rule evaluation failed");
                    e.health = RuleHealth::Err;
                    e.last_error = Some(msg);
                    self.last_failures += 1;
                }
            }
            e.last_duration_s = rule_started.elapsed().as_secs_f64();
        }
        self.last_eval_ms = Some(at_ms);
        self.last_duration_s = started.elapsed().as_secs_f64();
        transitions
    }

    /// The group's key in saved state: file and name (Prometheus' `GroupKey`; names need
    /// not be unique across files).
    pub fn key(&self) -> String {
        format!("{};{}", self.file.display(), self.name)
    }

    fn alerting(&self) -> impl Iterator<Item = &AlertingRule> {
        self.entries.iter().filter_map(|e| match &e.rule {
            Rule::Alerting(a) => Some(a),
            Rule::Recording(_) => None,
        })
    }

    /// Changes to the saved state so far: when it differs from the value at the last
    /// save, save again.
    pub fn state_changes(&self) -> u64 {
        self.alerting().map(AlertingRule::changes).sum()
    }

    /// The pending and firing alerts of every alerting rule, to save.
    pub fn saved_alerts(&self) -> Vec<SavedAlert> {
        self.alerting().flat_map(AlertingRule::saved).collect()
    }

    /// Takes back `saved` (the group's state when it last evaluated, at `down_at_ms`;
    /// None: never) at `now_ms`. Returns the resolutions owed for firing alerts that
    /// cannot be restored: medic was down longer than the outage tolerance, or their rule
    /// is gone. The rest resolve at the first evaluation if their series are gone.
    pub fn restore(
        &mut self,
        saved: Vec<SavedAlert>,
        down_at_ms: Option<i64>,
        now_ms: i64,
        opts: RestoreOptions,
    ) -> Vec<AlertTransition> {
        let within = down_at_ms.filter(|d| now_ms - d <= opts.outage_tolerance_ms);
        let mut by_rule: BTreeMap<String, Vec<SavedAlert>> = BTreeMap::new();
        for s in saved {
            by_rule.entry(s.rule.clone()).or_default().push(s);
        }
        if let Some(down_at) = within {
            for e in &mut self.entries {
                if let Rule::Alerting(a) = &mut e.rule
                    && let Some(mine) = by_rule.remove(a.name())
                {
                    a.restore(mine, down_at, now_ms, opts.grace_ms);
                }
            }
        }
        by_rule
            .into_values()
            .flatten()
            .filter_map(|s| s.resolved(&self.name, now_ms))
            .collect()
    }

    /// `(rule name, error)` of the rules that failed at the last evaluation.
    pub fn last_errors(&self) -> Vec<(&str, &str)> {
        self.entries
            .iter()
            .filter_map(|e| Some((e.rule.name(), e.last_error.as_deref()?)))
            .collect()
    }

    /// Whether `other` was loaded from the same definition (name, file, interval, offset,
    /// limit and every rule as written), so that a reload can keep this group running, with
    /// its alert state, instead of starting `other` afresh.
    pub fn same_definition(&self, other: &RuleGroup) -> bool {
        self.name == other.name
            && self.file == other.file
            && self.interval == other.interval
            && self.query_offset == other.query_offset
            && self.limit == other.limit
            && self.subquery_step_ms == other.subquery_step_ms
            && self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|(a, b)| same_rule(&a.rule, &b.rule))
    }

    /// Pending and firing alerts of every alerting rule.
    pub fn active_alerts(&self) -> Vec<AlertInstance> {
        self.entries
            .iter()
            .filter_map(|e| match &e.rule {
                Rule::Alerting(a) => Some(a.active_alerts(&self.name)),
                Rule::Recording(_) => None,
            })
            .flatten()
            .collect()
    }

    /// The group, its rules, their health and alerts, for `/api/v1/rules`.
    pub fn rules_snapshot(&self) -> GroupSnapshot {
        let rules = self
            .entries
            .iter()
            .map(|e| {
                let common = |kind, name: &str, query: &str| RuleSnapshot {
                    kind,
                    name: name.to_string(),
                    query: query.to_string(),
                    duration_s: 0.0,
                    keep_firing_for_s: 0.0,
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                    alerts: Vec::new(),
                    state: None,
                    health: e.health,
                    last_error: e.last_error.clone(),
                    last_evaluation_ms: e.last_eval_ms,
                    evaluation_time_s: e.last_duration_s,
                };
                match &e.rule {
                    Rule::Recording(r) => RuleSnapshot {
                        labels: r
                            .labels
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        ..common("recording", &r.name, &r.expr_text)
                    },
                    Rule::Alerting(a) => RuleSnapshot {
                        duration_s: a.hold.std().as_secs_f64(),
                        keep_firing_for_s: a.keep_firing_for.std().as_secs_f64(),
                        labels: a.label_texts.clone(),
                        annotations: a.annotation_texts.clone(),
                        alerts: a.active_alerts(&self.name),
                        state: Some(a.state()),
                        ..common("alerting", &a.name, &a.expr_text)
                    },
                }
            })
            .collect();
        GroupSnapshot {
            name: self.name.clone(),
            file: self.file.clone(),
            interval_s: self.interval.std().as_secs_f64(),
            limit: self.limit,
            rules,
            last_evaluation_ms: self.last_eval_ms,
            evaluation_time_s: self.last_duration_s,
        }
    }
}

/// Templates' `query`: `q` evaluated at `at_ms`, as Prometheus' rule query function does
/// (a scalar becomes one sample without labels; other results are errors).
fn template_query(
    store: &Store,
    q: &str,
    at_ms: i64,
    opts: &promql::EvalOptions,
) -> Result<Vec<Sample>, String> {
    let expr = promql::parse(q).map_err(|e| e.to_string())?;
    promql::check_supported(&expr).map_err(|e| e.to_string())?;
    promql::eval_instant_with(store, &expr, at_ms, opts)
        .and_then(to_vector)
        .map_err(|e| e.to_string())
}

/// A rule's result as an instant vector: a scalar becomes one sample without labels, as in
/// Prometheus.
fn to_vector(v: Value) -> Result<Vec<Sample>, PromqlError> {
    match v {
        Value::Vector(v) => Ok(v),
        Value::Scalar {
            timestamp_ms,
            value,
        } => Ok(vec![Sample::new(Labels::default(), timestamp_ms, value)]),
        _ => Err(PromqlError::Eval(
            "rule result is not a vector or scalar".into(),
        )),
    }
}

/// Same rule as written (the caller compares what templates see beyond the rule: external
/// labels and URL).
fn same_rule(a: &Rule, b: &Rule) -> bool {
    match (a, b) {
        (Rule::Recording(x), Rule::Recording(y)) => {
            x.name == y.name && x.expr_text == y.expr_text && x.labels == y.labels
        }
        (Rule::Alerting(x), Rule::Alerting(y)) => {
            x.name == y.name
                && x.expr_text == y.expr_text
                && x.hold == y.hold
                && x.keep_firing_for == y.keep_firing_for
                && x.label_texts == y.label_texts
                && x.annotation_texts == y.annotation_texts
                && x.remediate == y.remediate
                && x.resend_delay_ms == y.resend_delay_ms
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::TransitionKind::{self, *};
    use crate::rules::file::parse_rule_file;

    const RULES: &str = r#"
groups:
- name: g
  interval: 10s
  rules:
  - alert: High
    expr: x > 1
    for: 30s
    keep_firing_for: 20s
    labels: {severity: "{{ if gt $value 5.0 }}page{{ else }}ticket{{ end }}"}
    annotations: {summary: "{{ $labels.instance }} at {{ humanize $value }}"}
  - record: x:doubled
    expr: x * 2
"#;

    fn group() -> RuleGroup {
        let mut g = parse_rule_file(Path::new("t.yaml"), RULES, &GroupOptions::default()).unwrap();
        g.remove(0)
    }

    /// Evaluates with the alert expression returning `value` for instance "a" (or nothing).
    fn step(g: &mut RuleGroup, store: &Store, t: i64, value: Option<f64>) -> Vec<TransitionKind> {
        let tr = g.eval_with(store, t * 1000, |expr, ts| {
            let labels = Labels::new([("instance", "a")]);
            let samples = match value {
                Some(v) if expr.to_string().contains('>') => vec![Sample::new(labels, ts, v)],
                Some(v) => vec![Sample::new(labels, ts, v * 2.0)],
                None => vec![],
            };
            Ok(Value::Vector(samples))
        });
        tr.iter().map(|t| t.kind).collect()
    }

    fn alerts_series(store: &Store, t: i64) -> Vec<String> {
        let r = store.reader();
        let mut out = Vec::new();
        for name in ["ALERTS", "ALERTS_FOR_STATE"] {
            for id in r.series_by_name(name) {
                if let Some((_, v)) = r.latest(*id, t * 1000, 1) {
                    out.push(format!("{:?} {v}", r.labels(*id).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn pending_then_firing_after_for_then_keep_firing_then_resolved() {
        let store = Store::default();
        let mut g = group();
        assert_eq!(step(&mut g, &store, 0, Some(2.0)), [Pending]);
        assert_eq!(g.active_alerts()[0].state, AlertState::Pending);
        assert_eq!(step(&mut g, &store, 10, Some(2.0)), []);
        assert_eq!(step(&mut g, &store, 20, Some(2.0)), []);
        // 30 s after it became active: fires
        assert_eq!(step(&mut g, &store, 30, Some(2.0)), [Firing]);
        let a = &g.active_alerts()[0];
        assert_eq!(a.state, AlertState::Firing);
        assert_eq!(a.fired_at_ms, Some(30_000));
        assert_eq!(a.active_at_ms, 0);
        // series gone: keep_firing_for 20s keeps it firing at 40 and 50
        assert_eq!(step(&mut g, &store, 40, None), []);
        assert_eq!(step(&mut g, &store, 50, None), []);
        assert_eq!(g.active_alerts()[0].state, AlertState::Firing);
        assert_eq!(step(&mut g, &store, 60, None), [Resolved]);
        assert!(g.active_alerts().is_empty());
        // resolved alerts are re-announced every resend delay during retention
        let mut resends = 0;
        for t in (70..=60 + 15 * 60 + 20).step_by(10) {
            resends += step(&mut g, &store, t, None).len();
        }
        // strictly more than 60 s between sends: at 10 s steps every 70 s, until deleted
        // 15 minutes after resolving (Prometheus' needsSending and resolvedRetention)
        assert_eq!(resends, 12);
        assert_eq!(step(&mut g, &store, 2000, None), []);
    }

    #[test]
    fn still_firing_re_announced_at_most_every_resend_delay() {
        let store = Store::default();
        let mut g = group();
        let mut kinds = Vec::new();
        for t in (0..=200).step_by(10) {
            kinds.extend(step(&mut g, &store, t, Some(3.0)));
        }
        // pending at 0, firing at 30, then strictly more than 60 s after the last send
        assert_eq!(kinds, [Pending, Firing, StillFiring, StillFiring]);
    }

    #[test]
    fn pending_that_goes_away_resets_and_re_fires_later() {
        let store = Store::default();
        let mut g = group();
        assert_eq!(step(&mut g, &store, 0, Some(2.0)), [Pending]);
        assert_eq!(step(&mut g, &store, 10, None), [Resolved]);
        assert!(g.active_alerts().is_empty());
        // comes back: pending again from scratch, fires 30 s later
        assert_eq!(step(&mut g, &store, 20, Some(2.0)), [Pending]);
        assert_eq!(step(&mut g, &store, 40, Some(2.0)), []);
        assert_eq!(step(&mut g, &store, 50, Some(2.0)), [Firing]);
        // resolves (after keep_firing_for), then re-fires as a new alert
        assert_eq!(step(&mut g, &store, 60, None), []);
        assert_eq!(step(&mut g, &store, 80, None), [Resolved]);
        assert_eq!(step(&mut g, &store, 90, Some(2.0)), [Pending]);
        assert_eq!(g.active_alerts()[0].active_at_ms, 90_000);
        assert_eq!(step(&mut g, &store, 120, Some(2.0)), [Firing]);
    }

    fn restored(
        g: &RuleGroup,
        down_at: i64,
        now: i64,
        tol_s: i64,
        grace_s: i64,
    ) -> (RuleGroup, Vec<AlertTransition>) {
        let mut fresh = group();
        let opts = RestoreOptions {
            outage_tolerance_ms: tol_s * 1000,
            grace_ms: grace_s * 1000,
        };
        let tr = fresh.restore(g.saved_alerts(), Some(down_at * 1000), now * 1000, opts);
        (fresh, tr)
    }

    #[test]
    fn restored_firing_alert_keeps_firing_with_its_start_and_resolves_when_gone() {
        let store = Store::default();
        let mut g = group();
        step(&mut g, &store, 0, Some(2.0));
        assert_eq!(step(&mut g, &store, 30, Some(2.0)), [Firing]);
        // down at 40 s, back at 100 s
        let (mut g2, tr) = restored(&g, 40, 100, 3600, 600);
        assert!(tr.is_empty());
        let kinds = step(&mut g2, &store, 100, Some(2.0));
        assert!(
            !kinds.contains(&Firing) && !kinds.contains(&Pending),
            "{kinds:?}"
        );
        let a = &g2.active_alerts()[0];
        assert_eq!(
            (a.state, a.active_at_ms, a.fired_at_ms),
            (AlertState::Firing, 0, Some(30_000))
        );
        // its series is gone: resolved (after keep_firing_for) with the original start
        assert_eq!(step(&mut g2, &store, 110, None), []);
        let tr = g2.eval_with(&store, 130_000, |_, _| Ok(Value::Vector(vec![])));
        assert_eq!(tr.len(), 1, "{tr:?}");
        assert_eq!(
            (tr[0].kind, tr[0].alert.fired_at_ms),
            (Resolved, Some(30_000))
        );
    }

    #[test]
    fn restored_pending_alert_keeps_the_time_it_spent_pending() {
        let store = Store::default();
        let mut g = group();
        assert_eq!(step(&mut g, &store, 0, Some(2.0)), [Pending]);
        // pending 10 s of its 30 s `for` when medic went down; back 90 s later: the
        // outage does not count, so it fires 20 s after the start (at 120 s), not at once
        let (mut g2, _) = restored(&g, 10, 100, 3600, 0);
        assert_eq!(g2.active_alerts()[0].active_at_ms, 90_000);
        assert_eq!(step(&mut g2, &store, 100, Some(2.0)), []);
        assert_eq!(step(&mut g2, &store, 110, Some(2.0)), []);
        assert_eq!(step(&mut g2, &store, 120, Some(2.0)), [Firing]);
        // with a 25 s grace period: 20 s left is less, so it fires 25 s after the start
        let (g3, _) = restored(&g, 10, 100, 3600, 25);
        assert_eq!(g3.active_alerts()[0].active_at_ms, 95_000);
        // a `for` shorter than the grace period is waited afresh: nothing restored
        let (g4, _) = restored(&g, 10, 100, 3600, 40);
        assert!(g4.active_alerts().is_empty());
    }

    #[test]
    fn nothing_restored_after_the_outage_tolerance_and_firing_alerts_are_resolved() {
        let store = Store::default();
        let mut g = group();
        step(&mut g, &store, 0, Some(2.0));
        step(&mut g, &store, 30, Some(2.0));
        let (mut g2, tr) = restored(&g, 40, 40 + 3601, 3600, 600);
        assert_eq!(tr.len(), 1, "{tr:?}");
        assert_eq!(
            (tr[0].kind, tr[0].alert.fired_at_ms),
            (Resolved, Some(30_000))
        );
        assert!(g2.active_alerts().is_empty());
        // and it starts afresh
        assert_eq!(step(&mut g2, &store, 3700, Some(2.0)), [Pending]);
    }

    #[test]
    fn labels_and_annotations_templated() {
        let store = Store::default();
        let mut g = group();
        step(&mut g, &store, 0, Some(2.0));
        let a = &g.active_alerts()[0];
        assert_eq!(a.labels.get("severity"), Some("ticket"));
        assert_eq!(a.labels.get("alertname"), Some("High"));
        assert_eq!(a.annotations["summary"], "a at 2");
        // annotations follow the value; labels identify the alert and are fixed by it
        step(&mut g, &store, 10, Some(2500.0));
        // severity changed: a different alert; the pending "ticket" one went away
        let alerts = g.active_alerts();
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].labels.get("severity"), Some("page"));
        assert_eq!(alerts[0].annotations["summary"], "a at 2.5k");
    }

    #[test]
    fn alerts_series_and_recording_results_written_and_staled() {
        let store = Store::default();
        let mut g = group();
        step(&mut g, &store, 0, Some(2.0));
        assert_eq!(
            alerts_series(&store, 0),
            [
                r#"ALERTS_FOR_STATE{alertname="High", instance="a", severity="ticket"} 0"#,
                r#"ALERTS{alertname="High", alertstate="pending", instance="a", severity="ticket"} 1"#,
            ]
        );
        step(&mut g, &store, 30, Some(2.0));
        assert_eq!(
            alerts_series(&store, 30)[1],
            r#"ALERTS{alertname="High", alertstate="firing", instance="a", severity="ticket"} 1"#
        );
        // the recording rule wrote x:doubled
        let r = store.reader();
        let id = r.lookup(&Labels::new([("__name__", "x:doubled"), ("instance", "a")]));
        assert_eq!(r.latest(id.unwrap(), 30_000, 1000), Some((30_000, 4.0)));
        drop(r);
        // pending series got a stale marker when the state changed to firing
        let r = store.reader();
        let pending = Labels::new([
            ("__name__", "ALERTS"),
            ("alertname", "High"),
            ("alertstate", "pending"),
            ("instance", "a"),
            ("severity", "ticket"),
        ]);
        assert_eq!(r.latest(r.lookup(&pending).unwrap(), 30_000, 300_000), None);
        drop(r);
        // when everything resolves, the recording series goes stale too
        step(&mut g, &store, 60, None);
        let r = store.reader();
        let id = r.lookup(&Labels::new([("__name__", "x:doubled"), ("instance", "a")]));
        assert_eq!(r.latest(id.unwrap(), 60_000, 300_000), None);
    }

    #[test]
    fn group_labels_apply_to_every_rule_and_rule_labels_win() {
        let text = "groups:\n- name: g\n  labels: {team: ml, severity: low}\n  rules:\n  - alert: A\n    expr: x > 1\n    labels: {severity: high}\n  - record: r\n    expr: x\n";
        let mut g = parse_rule_file(Path::new("t.yaml"), text, &GroupOptions::default())
            .unwrap()
            .remove(0);
        let store = Store::default();
        let tr = g.eval_with(&store, 0, |_, ts| {
            let l = Labels::new([("instance", "a")]);
            Ok(Value::Vector(vec![Sample::new(l, ts, 2.0)]))
        });
        // no `for`: straight to firing
        assert_eq!(tr.len(), 1);
        assert_eq!(tr[0].kind, Firing);
        let a = &g.active_alerts()[0];
        assert_eq!(a.labels.get("team"), Some("ml"));
        assert_eq!(a.labels.get("severity"), Some("high"));
        let rec = Labels::new([
            ("__name__", "r"),
            ("instance", "a"),
            ("team", "ml"),
            ("severity", "low"),
        ]);
        assert!(store.reader().lookup(&rec).is_some());
    }

    #[test]
    fn failures_recorded_in_health() {
        let store = Store::default();
        let mut g = group();
        g.eval_with(&store, 0, |_, _| Err(PromqlError::Eval("boom".into())));
        assert_eq!(g.last_failures(), 2);
        let snap = g.rules_snapshot();
        assert_eq!(snap.rules[0].health, RuleHealth::Err);
        assert_eq!(snap.rules[0].last_error.as_deref(), Some("boom"));
        step(&mut g, &store, 10, Some(1.5));
        let snap = g.rules_snapshot();
        assert_eq!(snap.rules[0].health, RuleHealth::Ok);
        assert_eq!(snap.rules[0].state, Some(AlertState::Pending));
        assert_eq!(snap.rules[0].alerts.len(), 1);
        assert_eq!(snap.rules[1].kind, "recording");
    }

    fn load(text: &str) -> RuleGroup {
        parse_rule_file(Path::new("t.yaml"), text, &GroupOptions::default())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn limit_fails_rules_producing_too_many_series_or_alerts() {
        let mut g = load(
            "groups:\n- name: g\n  limit: 2\n  rules:\n  - record: up:copy\n    expr: up\n  - alert: Down\n    expr: up == 0\n",
        );
        let store = Store::default();
        for i in ["a", "b"] {
            store.append(&Labels::new([("__name__", "up"), ("instance", i)]), 0, 0.0);
        }
        // two series: within the limit
        let tr = g.eval(&store, 1000);
        assert_eq!(g.last_failures(), 0, "{:?}", g.last_errors());
        assert_eq!(tr.len(), 2);
        assert_eq!(g.active_alerts().len(), 2);
        // three: both rules fail, the alerts are dropped, nothing is written
        store.append(
            &Labels::new([("__name__", "up"), ("instance", "c")]),
            2000,
            0.0,
        );
        let tr = g.eval(&store, 3000);
        assert!(tr.is_empty(), "{tr:?}");
        assert_eq!(
            g.last_errors(),
            [
                ("up:copy", "exceeded limit 2 with 3 series"),
                ("Down", "exceeded limit of 2 with 3 alerts"),
            ]
        );
        assert!(g.active_alerts().is_empty());
        let r = store.reader();
        let c = Labels::new([("__name__", "up:copy"), ("instance", "c")]);
        assert!(r.lookup(&c).is_none());
        drop(r);
        // a negative limit (Prometheus) is no limit
        let mut g =
            load("groups:\n- name: g\n  limit: -1\n  rules:\n  - alert: Down\n    expr: up == 0\n");
        g.eval(&store, 3000);
        assert_eq!(g.last_failures(), 0);
        assert_eq!(g.active_alerts().len(), 3);
    }

    #[test]
    fn query_offset_shifts_queries_and_written_samples_not_templates() {
        let mut g = load(
            r#"groups:
- name: g
  query_offset: 1m
  rules:
  - record: x:copy
    expr: x
  - alert: High
    expr: x > 5
    annotations:
      value: '{{ $value }}'
      now: '{{ query "x" | first | value }} at {{ query "time()" | first | value }}'
"#,
        );
        let store = Store::new(i64::MAX / 4);
        let x = Labels::from_name("x");
        // x is 1 up to 60 s, 10 up to 120 s, 20 after
        for t in (0..=180).step_by(10) {
            let v = match t {
                0..=60 => 1.0,
                61..=120 => 10.0,
                _ => 20.0,
            };
            store.append(&x, t * 1000, v);
        }
        // at 120 s the queries run at 60 s: x is 1, below the threshold
        assert!(g.eval(&store, 120_000).is_empty());
        let r = store.reader();
        let copy = r.lookup(&Labels::from_name("x:copy")).unwrap();
        // the recorded sample is stamped with the query time, as in Prometheus
        assert_eq!(r.window(copy, i64::MIN, i64::MAX), &[(60_000, 1.0)]);
        drop(r);
        // at 180 s they run at 120 s (x = 10): the alert fires with that value; templates'
        // `query` runs at the evaluation time itself (x = 20 at 180 s), as in Prometheus
        let tr = g.eval(&store, 180_000);
        assert_eq!(tr.len(), 1, "{tr:?}");
        let a = &tr[0].alert;
        assert_eq!(a.value, 10.0);
        assert_eq!(a.active_at_ms, 180_000);
        assert_eq!(a.annotations["value"], "10");
        assert_eq!(a.annotations["now"], "20 at 180");
        let r = store.reader();
        let alerts = r
            .lookup(&Labels::new([
                ("__name__", "ALERTS"),
                ("alertname", "High"),
                ("alertstate", "firing"),
            ]))
            .unwrap();
        assert_eq!(r.window(alerts, i64::MIN, i64::MAX), &[(120_000, 1.0)]);
        assert_eq!(
            r.window(copy, i64::MIN, i64::MAX),
            &[(60_000, 1.0), (120_000, 10.0)]
        );
        // and the group's lookback (for retention) includes the offset
        assert_eq!(g.max_lookback_ms(), 5 * 60_000 + 60_000);
    }

    #[test]
    fn template_query_failure_renders_in_the_annotation() {
        let mut g = load(
            "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n    annotations:\n      bad: '{{ query \"sum(\" }}'\n      empty: '{{ query \"nothing\" | first | value }}'\n",
        );
        let store = Store::default();
        let tr = g.eval(&store, 0);
        let ann = &tr[0].alert.annotations;
        assert!(
            ann["bad"].starts_with(
                "<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing \"__alert_A\" at <query \"sum(\">: error calling query: 1:5: parse error"
            ),
            "{ann:?}"
        );
        assert_eq!(
            ann["empty"],
            "<error expanding template: error executing template __alert_A: template: __alert_A:1:133: executing \"__alert_A\" at <first>: error calling first: first() called on vector with no elements>"
        );
    }
}
