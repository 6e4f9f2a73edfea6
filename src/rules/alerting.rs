//! The alert state machine of one alerting rule, modelled on Prometheus' rules/alerting.go.
//!
//! Each evaluation takes the expression's result (an instant vector) and, per series:
//!
//! ```text
//!   inactive ──(series returned)──▶ pending ──(returned for `for`)──▶ firing
//!       ▲                              │                               │
//!       └──────(series gone)───────────┘         (series gone for `keep_firing_for`)
//!                                                                      ▼
//!                                                 resolved (kept and re-sent for 15 m)
//! ```
//!
//! It writes `ALERTS{alertname,alertstate}` and `ALERTS_FOR_STATE` samples for the store and
//! returns [`AlertTransition`]s. It never acts on them.
//!
//! Across restarts, pending and firing alerts are saved ([`AlertingRule::saved`]) and
//! restored ([`AlertingRule::restore`]) as Prometheus restores them from
//! `ALERTS_FOR_STATE`: a pending alert keeps the time it already spent pending (its
//! `activeAt` moves forward by the outage, and it fires no sooner than the grace period
//! after the start); a firing alert goes on firing with its `activeAt` and start, so it is
//! not announced as new; one whose series is gone at the first evaluation resolves.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::template::{RenderContext, Template, TemplateData};
use super::{AlertInstance, AlertState, AlertTransition, RemediateStep, TransitionKind};
use crate::common::Duration;
use crate::store::{Labels, METRIC_NAME, Sample};

use super::GroupOptions;
use crate::promql::Expr;

/// How long a resolved alert is kept and re-announced (Prometheus' `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;
/// Minimum time between two announcements of the same alert (Prometheus' `resendDelay`),
/// unless [`super::GroupOptions::resend_delay`] says otherwise.
pub const RESEND_DELAY_MS: i64 = 60 * 1000;

/// One alert instance's state (the engine's own bookkeeping around [`AlertInstance`]).
#[derive(Debug, Clone)]
struct Alert {
    labels: Labels,
    annotations: BTreeMap<String, String>,
    value: f64,
    state: AlertState,
    active_at_ms: i64,
    fired_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    /// Set while the alert is kept firing by `keep_firing_for` after its series went away.
    keep_firing_since_ms: Option<i64>,
    /// When the alert was last announced; None if never.
    last_sent_ms: Option<i64>,
    /// Whether the firing state has been announced once (Firing vs StillFiring).
    announced_firing: bool,
}

/// A pending or firing alert as saved across a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedAlert {
    /// The alerting rule's name.
    pub rule: String,
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub value: f64,
    /// Pending or firing.
    pub state: AlertState,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub last_sent_ms: Option<i64>,
}

impl SavedAlert {
    /// The resolution of a saved firing alert that cannot be restored (its rule is gone, or
    /// medic was down longer than the outage tolerance): its receivers were told it fires.
    pub fn resolved(&self, group: &str, at_ms: i64) -> Option<AlertTransition> {
        self.fired_at_ms?;
        Some(AlertTransition {
            kind: TransitionKind::Resolved,
            at_ms,
            alert: AlertInstance {
                rule: self.rule.clone(),
                group: group.to_string(),
                labels: self.labels.clone(),
                annotations: self.annotations.clone(),
                value: self.value,
                state: AlertState::Inactive,
                active_at_ms: self.active_at_ms,
                fired_at_ms: self.fired_at_ms,
                resolved_at_ms: Some(at_ms),
            },
            remediate: Arc::from(Vec::new()),
        })
    }
}

/// An alerting rule and its active alerts.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    pub(crate) name: String,
    pub(crate) expr_text: String,
    pub(crate) expr: Expr,
    pub(crate) hold: Duration,
    pub(crate) keep_firing_for: Duration,
    labels: Vec<(String, Template)>,
    annotations: Vec<(String, Template)>,
    /// The raw label and annotation texts (for `/api/v1/rules`).
    pub(crate) label_texts: BTreeMap<String, String>,
    pub(crate) annotation_texts: BTreeMap<String, String>,
    pub(crate) remediate: Arc<[RemediateStep]>,
    external_labels: Labels,
    external_url: String,
    pub(crate) resend_delay_ms: i64,
    active: HashMap<Labels, Alert>,
    /// Bumped whenever what [`AlertingRule::saved`] returns changes in more than value and
    /// annotations, so the state is saved only then.
    changes: u64,
}

/// What one evaluation of an alerting rule produced.
#[derive(Debug, Default)]
pub struct AlertEval {
    /// `ALERTS` and `ALERTS_FOR_STATE` samples to write.
    pub series: Vec<Sample>,
    pub transitions: Vec<AlertTransition>,
}

impl AlertingRule {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: String,
        expr_text: String,
        expr: Expr,
        hold: Duration,
        keep_firing_for: Duration,
        labels: Vec<(String, Template)>,
        annotations: Vec<(String, Template)>,
        remediate: Arc<[RemediateStep]>,
        opts: &GroupOptions,
        label_texts: BTreeMap<String, String>,
        annotation_texts: BTreeMap<String, String>,
    ) -> Self {
        AlertingRule {
            name,
            expr_text,
            expr,
            hold,
            keep_firing_for,
            labels,
            annotations,
            label_texts,
            annotation_texts,
            remediate,
            external_labels: opts.external_labels.clone(),
            external_url: opts.external_url.clone(),
            resend_delay_ms: opts.resend_delay.as_millis_i64(),
            active: HashMap::new(),
            changes: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Advances the state machine with the expression's result at `ts`.
    ///
    /// `limit` > 0 caps the number of pending + firing alerts: above it every alert is
    /// dropped and the evaluation fails, as in Prometheus. `ctx` is what templates reach
    /// (the store, for `query`).
    pub fn eval_vector(
        &mut self,
        group: &str,
        result: &[Sample],
        ts: i64,
        limit: usize,
        ctx: &RenderContext,
    ) -> Result<AlertEval, String> {
        // 1. Turn every returned series into a candidate alert: its labels (without
        //    `__name__`) plus the rule's templated labels and `alertname`, its annotations
        //    templated.
        let mut candidates: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        for sample in result {
            let data = TemplateData {
                labels: &sample.labels,
                external_labels: &self.external_labels,
                external_url: &self.external_url,
                value: sample.value,
            };
            let mut pairs: Vec<(String, String)> = sample
                .labels
                .iter()
                .filter(|(k, _)| *k != METRIC_NAME)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            for (k, t) in &self.labels {
                pairs.push((k.clone(), expand(&self.name, t, &data, ctx)));
            }
            pairs.push(("alertname".into(), self.name.clone()));
            let labels = Labels::new(pairs);
            let annotations = self
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), expand(&self.name, t, &data, ctx)))
                .collect();
            if candidates.contains_key(&labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
            candidates.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    value: sample.value,
                    state: AlertState::Pending,
                    active_at_ms: ts,
                    fired_at_ms: None,
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                    last_sent_ms: None,
                    announced_firing: false,
                },
            );
        }

        // 2. Known alerts that are still active take the new value and annotations; new
        //    ones (and ones that had resolved) start pending now.
        let mut new_pending = Vec::new();
        for (key, cand) in &candidates {
            match self.active.get_mut(key) {
                Some(a) if a.state != AlertState::Inactive => {
                    a.value = cand.value;
                    a.annotations = cand.annotations.clone();
                }
                _ => {
                    self.active.insert(key.clone(), cand.clone());
                    new_pending.push(key.clone());
                    self.changes += 1;
                }
            }
        }

        // 3. Walk every alert: those whose series went away resolve (after
        //    `keep_firing_for` if firing); pending ones that have been active for `for` fire.
        let mut out = AlertEval::default();
        let resend_ms = self.resend_delay_ms;
        let mut keys: Vec<Labels> = self.active.keys().cloned().collect();
        keys.sort();
        let mut num_active = 0;
        let hold_ms = self.hold.as_millis_i64();
        let keep_ms = self.keep_firing_for.as_millis_i64();
        for key in &keys {
            let Some(a) = self.active.get_mut(key) else {
                continue;
            };
            if !candidates.contains_key(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && keep_ms > 0 {
                    let since = *a.keep_firing_since_ms.get_or_insert(ts);
                    keep_firing = ts - since < keep_ms;
                }
                if a.state == AlertState::Pending {
                    // A pending alert that goes away is forgotten; announce it once.
                    let mut gone = a.clone();
                    gone.state = AlertState::Inactive;
                    gone.resolved_at_ms = Some(ts);
                    out.transitions.push(self.transition(
                        TransitionKind::Resolved,
                        ts,
                        group,
                        &gone,
                    ));
                    self.active.remove(key);
                    self.changes += 1;
                    continue;
                }
                if a.resolved_at_ms
                    .is_some_and(|r| ts - r > RESOLVED_RETENTION_MS)
                {
                    self.active.remove(key);
                    continue;
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = Some(ts);
                    self.changes += 1;
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = None;
            }
            num_active += 1;
            if a.state == AlertState::Pending && ts - a.active_at_ms >= hold_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(ts);
                self.changes += 1;
            }
            let state = if a.state == AlertState::Firing {
                "firing"
            } else {
                "pending"
            };
            out.series.push(Sample::new(
                a.labels
                    .with(METRIC_NAME, "ALERTS")
                    .with("alertstate", state),
                ts,
                1.0,
            ));
            out.series.push(Sample::new(
                a.labels.with(METRIC_NAME, "ALERTS_FOR_STATE"),
                ts,
                (a.active_at_ms.div_euclid(1000)) as f64,
            ));
        }
        if limit > 0 && num_active > limit {
            self.active.clear();
            self.changes += 1;
            return Err(format!(
                "exceeded limit of {limit} with {num_active} alerts"
            ));
        }

        // 4. Announce: new pending alerts once; firing and resolved ones when their state
        //    changed or at most every resend delay (Prometheus' `needsSending`).
        for key in &keys {
            let Some(a) = self.active.get(key) else {
                continue;
            };
            let kind = match a.state {
                AlertState::Pending => {
                    if new_pending.contains(key) {
                        Some(TransitionKind::Pending)
                    } else {
                        None
                    }
                }
                AlertState::Firing => {
                    if !a.announced_firing {
                        Some(TransitionKind::Firing)
                    } else if a.last_sent_ms.is_none_or(|l| l + resend_ms < ts) {
                        Some(TransitionKind::StillFiring)
                    } else {
                        None
                    }
                }
                AlertState::Inactive => {
                    let resolved_unsent = a
                        .resolved_at_ms
                        .is_some_and(|r| a.last_sent_ms.is_none_or(|l| r > l));
                    if resolved_unsent || a.last_sent_ms.is_none_or(|l| l + resend_ms < ts) {
                        Some(TransitionKind::Resolved)
                    } else {
                        None
                    }
                }
            };
            if let Some(kind) = kind {
                let t = self.transition(kind, ts, group, a);
                out.transitions.push(t);
                if let Some(a) = self.active.get_mut(key)
                    && kind != TransitionKind::Pending
                {
                    a.last_sent_ms = Some(ts);
                    a.announced_firing |= kind == TransitionKind::Firing;
                }
            }
        }
        Ok(out)
    }

    fn transition(&self, kind: TransitionKind, ts: i64, group: &str, a: &Alert) -> AlertTransition {
        AlertTransition {
            kind,
            at_ms: ts,
            alert: self.instance(group, a),
            remediate: self.remediate.clone(),
        }
    }

    fn instance(&self, group: &str, a: &Alert) -> AlertInstance {
        AlertInstance {
            rule: self.name.clone(),
            group: group.to_string(),
            labels: a.labels.clone(),
            annotations: a.annotations.clone(),
            value: a.value,
            state: a.state,
            active_at_ms: a.active_at_ms,
            fired_at_ms: a.fired_at_ms,
            resolved_at_ms: a.resolved_at_ms,
        }
    }

    /// Pending and firing alerts (resolved ones kept for re-announcement are left out),
    /// sorted by labels.
    pub fn active_alerts(&self, group: &str) -> Vec<AlertInstance> {
        let mut v: Vec<AlertInstance> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .map(|a| self.instance(group, a))
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// How often the saved state changed (compare two values to see whether to save).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The pending and firing alerts, to save across a restart, sorted by labels.
    pub fn saved(&self) -> Vec<SavedAlert> {
        let mut v: Vec<SavedAlert> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .map(|a| SavedAlert {
                rule: self.name.clone(),
                labels: a.labels.clone(),
                annotations: a.annotations.clone(),
                value: a.value,
                state: a.state,
                active_at_ms: a.active_at_ms,
                fired_at_ms: a.fired_at_ms,
                last_sent_ms: a.last_sent_ms,
            })
            .collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }

    /// Takes back alerts saved before medic went down at `down_at_ms` (its last
    /// evaluation), now being `now_ms`, as Prometheus' `RestoreForState` does: a pending
    /// alert's `activeAt` moves forward by the outage, so the time it spent pending before
    /// counts and the outage does not; it fires no sooner than `grace_ms` after the start
    /// (and a rule whose `for` is shorter than the grace waits its `for` afresh); an alert
    /// that had fired keeps firing with its start (not announced as new).
    pub fn restore(&mut self, saved: Vec<SavedAlert>, down_at_ms: i64, now_ms: i64, grace_ms: i64) {
        let hold_ms = self.hold.as_millis_i64();
        let outage_ms = (now_ms - down_at_ms).max(0);
        for s in saved {
            let firing = s.state == AlertState::Firing;
            let mut active_at_ms = s.active_at_ms;
            if !firing {
                if hold_ms < grace_ms {
                    continue;
                }
                let remaining = hold_ms - (down_at_ms - s.active_at_ms);
                if remaining <= 0 {
                    // due to fire: it does at the first evaluation
                } else if remaining < grace_ms {
                    active_at_ms = now_ms + grace_ms - hold_ms;
                } else {
                    active_at_ms += outage_ms;
                }
            }
            self.active.insert(
                s.labels.clone(),
                Alert {
                    labels: s.labels,
                    annotations: s.annotations,
                    value: s.value,
                    state: s.state,
                    active_at_ms,
                    fired_at_ms: s.fired_at_ms.filter(|_| firing),
                    resolved_at_ms: None,
                    keep_firing_since_ms: None,
                    last_sent_ms: s.last_sent_ms,
                    announced_firing: firing,
                },
            );
            self.changes += 1;
        }
    }

    /// The rule's overall state: firing if any alert fires, else pending if any is pending.
    pub fn state(&self) -> AlertState {
        let mut s = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => s = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        s
    }
}

/// Renders a template; a failure becomes the text, as Prometheus does, so an alert is never
/// lost to a bad annotation.
fn expand(alert: &str, t: &Template, data: &TemplateData, ctx: &RenderContext) -> String {
    match t.render_in(data, ctx) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "expanding alert template failed");
            // Prometheus' words: the template is named `__alert_NAME`
            let e = e.for_alert_template(&format!("__alert_{alert}"));
            format!("<error expanding template: {e}>")
        }
    }
}
