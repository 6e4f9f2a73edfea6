//! One task per rule group: evaluates it against the shared store and hands the alert
//! transitions to the remedy planner and the notifiers without ever waiting on them.
//!
//! When a group evaluates: every `interval`, and also soon after a collector round lands
//! new samples (at most once per [`min_gap`]), so a fault seen by a 1 s probe reaches the
//! rules within milliseconds rather than up to a whole evaluation interval later. The extra
//! evaluations are cheap (a group is a handful of PromQL queries over memory) and change
//! no semantics: `for:` counts time, not evaluations.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::api::prom::{
    AlertJson, AlertingRuleJson, GroupJson, Health, RecordingRuleJson, RuleGroupView, RuleJson,
};
use crate::common::metrics::{SelfMetrics, labels};
use crate::common::time::{now_ms, rfc3339_ms};
use crate::journal::{AlertStateRow, Journal};
use crate::rules::group::{GroupSnapshot, RestoreOptions, RuleGroup, RuleHealth};
use crate::rules::{AlertState, AlertTransition, SavedAlert};
use crate::store::{Labels, Store};

/// A rule group shared between its task (which evaluates it) and the API (which reads it).
#[derive(Clone)]
pub struct SharedGroup(pub Arc<Mutex<RuleGroup>>);

impl SharedGroup {
    pub fn new(g: RuleGroup) -> Self {
        SharedGroup(Arc::new(Mutex::new(g)))
    }

    /// The group. A panic during an evaluation leaves at worst a half-updated alert state,
    /// which the next evaluation rewrites, so a poisoned lock is used as is.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, RuleGroup> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RuleGroupView for SharedGroup {
    fn snapshot(&self) -> GroupJson {
        let snap = self.lock().rules_snapshot();
        group_json(snap)
    }
}

fn health(h: RuleHealth) -> Health {
    match h {
        RuleHealth::Unknown => Health::Unknown,
        RuleHealth::Ok => Health::Ok,
        RuleHealth::Err => Health::Err,
    }
}

fn group_json(g: GroupSnapshot) -> GroupJson {
    let rules = g
        .rules
        .into_iter()
        .map(|r| {
            let last_evaluation = rfc3339_ms(r.last_evaluation_ms.unwrap_or(0));
            if r.kind == "recording" {
                RuleJson::Recording(RecordingRuleJson {
                    name: r.name,
                    query: r.query,
                    labels: r.labels,
                    health: health(r.health),
                    last_error: r.last_error.unwrap_or_default(),
                    evaluation_time: r.evaluation_time_s,
                    last_evaluation,
                })
            } else {
                RuleJson::Alerting(AlertingRuleJson {
                    state: r.state.unwrap_or(AlertState::Inactive),
                    name: r.name,
                    query: r.query,
                    duration: r.duration_s,
                    keep_firing_for: r.keep_firing_for_s,
                    labels: r.labels,
                    annotations: r.annotations,
                    alerts: r.alerts.iter().map(AlertJson::from_instance).collect(),
                    health: health(r.health),
                    last_error: r.last_error.unwrap_or_default(),
                    evaluation_time: r.evaluation_time_s,
                    last_evaluation,
                })
            }
        })
        .collect();
    GroupJson {
        name: g.name,
        file: g.file.display().to_string(),
        rules,
        interval: g.interval_s,
        limit: g.limit as u64,
        evaluation_time: g.evaluation_time_s,
        last_evaluation: rfc3339_ms(g.last_evaluation_ms.unwrap_or(0)),
    }
}

/// The shortest time between two evaluations of a group: a tenth of its interval, between
/// 10 ms and 100 ms.
pub fn min_gap(interval: Duration) -> Duration {
    (interval / 10).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// What a group task needs besides its group.
#[derive(Clone)]
pub struct GroupContext {
    pub store: Arc<Store>,
    pub metrics: Arc<SelfMetrics>,
    /// The remedy planner and the notifiers.
    pub sinks: Vec<mpsc::Sender<AlertTransition>>,
    /// Where the groups' alert state is saved (None: not saved).
    pub alert_journal: Option<AlertJournal>,
}

/// The journal connection the group tasks save alert state with (one write at a time).
pub type AlertJournal = Arc<Mutex<Journal>>;

/// After a restart the store is empty: a group with restored alerts waits for the
/// collectors' first samples before its first evaluation, so that it does not resolve them
/// for want of data.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// Collector rounds to wait for (one per collector).
    pub rounds: u64,
    /// But no longer than this.
    pub until: Instant,
}

fn to_row(s: &SavedAlert) -> AlertStateRow {
    let labels: std::collections::BTreeMap<&str, &str> = s.labels.iter().collect();
    AlertStateRow {
        rule: s.rule.clone(),
        labels: serde_json::to_string(&labels).unwrap_or_default(),
        state: match s.state {
            AlertState::Firing => "firing",
            _ => "pending",
        }
        .to_string(),
        active_at_ms: s.active_at_ms,
        fired_at_ms: s.fired_at_ms,
        last_sent_ms: s.last_sent_ms,
        value: Some(s.value).filter(|v| !v.is_nan()),
        annotations: serde_json::to_string(&s.annotations).unwrap_or_default(),
    }
}

fn from_row(r: AlertStateRow) -> Option<SavedAlert> {
    let labels: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&r.labels).ok()?;
    Some(SavedAlert {
        rule: r.rule,
        labels: Labels::new(labels),
        annotations: serde_json::from_str(&r.annotations).ok()?,
        value: r.value.unwrap_or(f64::NAN),
        state: match r.state.as_str() {
            "firing" => AlertState::Firing,
            _ => AlertState::Pending,
        },
        active_at_ms: r.active_at_ms,
        fired_at_ms: r.fired_at_ms,
        last_sent_ms: r.last_sent_ms,
    })
}

fn journal_lock(j: &AlertJournal) -> std::sync::MutexGuard<'_, Journal> {
    // a connection: usable after a panic elsewhere
    j.lock().unwrap_or_else(|e| e.into_inner())
}

/// Restores `group`'s saved alert state (see [`RuleGroup::restore`]); returns the
/// resolutions owed and whether anything was saved.
pub fn restore(
    group: &mut RuleGroup,
    journal: &AlertJournal,
    opts: RestoreOptions,
) -> (Vec<AlertTransition>, bool) {
    let key = group.key();
    let loaded = journal_lock(journal).alert_state_load(&key);
    match loaded {
        Err(e) => {
            tracing::warn!(group = %group.name(), error = %e, "journal: alert state not restored");
            (Vec::new(), false)
        }
        Ok((down_at, rows)) => {
            let had = !rows.is_empty();
            let saved: Vec<SavedAlert> = rows.into_iter().filter_map(from_row).collect();
            let n = saved.len();
            let owed = group.restore(saved, down_at, now_ms(), opts);
            if had {
                tracing::info!(group = %group.name(), alerts = n, resolved = owed.len(), "alert state restored");
            }
            (owed, had)
        }
    }
}

/// Resolutions owed for groups saved in the journal that no longer exist (a rule file or
/// group removed); their state is dropped.
pub fn forget_others(journal: &AlertJournal, keep: &[String]) -> Vec<AlertTransition> {
    let j = journal_lock(journal);
    let mut owed = Vec::new();
    let groups = j.alert_state_groups().unwrap_or_default();
    for key in groups.iter().filter(|k| !keep.contains(k)) {
        if let Ok((_, rows)) = j.alert_state_load(key) {
            let name = key.rsplit_once(';').map_or(key.as_str(), |(_, n)| n);
            let now = now_ms();
            owed.extend(
                rows.into_iter()
                    .filter_map(from_row)
                    .filter_map(|s| s.resolved(name, now)),
            );
        }
        if let Err(e) = j.alert_state_forget(key) {
            tracing::warn!(group = %key, error = %e, "journal: stale alert state not dropped");
        }
    }
    owed
}

/// Evaluates `group` until `stop` turns true, the first time after `settle` when given.
pub async fn run(
    group: SharedGroup,
    ctx: GroupContext,
    mut landed: Option<watch::Receiver<u64>>,
    mut stop: watch::Receiver<bool>,
    settle: Option<Settle>,
) {
    let (name, interval) = {
        let g = group.lock();
        (g.name().to_string(), g.interval().std())
    };
    let interval = interval.max(Duration::from_millis(1));
    let gap = min_gap(interval);
    let metric_labels = labels(&[("rule_group", &name)]);
    // exported at 0 from the start, so rate() and increase() see the first failure
    drop(ctx.metrics.rule_eval_failures.get_or_create(&metric_labels));
    if let Some(s) = settle {
        let mut seen = 0;
        while seen < s.rounds {
            tokio::select! {
                biased;
                _ = stop.wait_for(|v| *v) => return,
                _ = tokio::time::sleep_until(s.until) => break,
                alive = changed(&mut landed) => {
                    if !alive {
                        landed = None;
                    }
                    seen += 1;
                }
            }
        }
    }
    let (key, interval_ms) = {
        let g = group.lock();
        (g.key(), g.interval_ms())
    };
    // what was saved last: the group's change count and when
    let mut saved_changes = None;
    let mut saved_at = i64::MIN;
    let mut journal_ok = true;
    // The first evaluation comes at once (after a reload a kept group goes on promptly).
    let mut next = Instant::now();
    let mut earliest = next;
    loop {
        // Wait for the tick; samples landing meanwhile pull it forward to `earliest`.
        loop {
            tokio::select! {
                biased;
                _ = stop.wait_for(|v| *v) => return,
                _ = tokio::time::sleep_until(next) => break,
                alive = changed(&mut landed) => {
                    if alive {
                        next = next.min(earliest);
                    } else {
                        // The scheduler is gone (it stops with us); go on by the clock.
                        landed = None;
                    }
                }
            }
        }
        let started = Instant::now();
        // Samples landing during the evaluation are seen by it or count for the next one.
        if let Some(rx) = landed.as_mut() {
            rx.mark_unchanged();
        }
        let at_ms = now_ms();
        let (transitions, duration_s, failures, changes, to_save) = {
            let mut g = group.lock();
            let t = g.eval(&ctx.store, at_ms);
            let changes = g.state_changes();
            let to_save = (ctx.alert_journal.is_some() && saved_changes != Some(changes))
                .then(|| g.saved_alerts());
            (t, g.last_duration_s(), g.last_failures(), changes, to_save)
        };
        // Saved when it changed, else the time of evaluation at most once an interval
        // (the restart measures the outage from it), outside the group's lock.
        if let Some(j) = &ctx.alert_journal
            && (to_save.is_some() || at_ms - saved_at >= interval_ms)
        {
            let j = journal_lock(j);
            let r = match &to_save {
                Some(alerts) => {
                    let rows: Vec<AlertStateRow> = alerts.iter().map(to_row).collect();
                    j.alert_state_save(&key, &rows, at_ms)
                }
                None => j.alert_state_heartbeat(&key, at_ms),
            };
            match r {
                Ok(()) => {
                    saved_changes = Some(changes);
                    saved_at = at_ms;
                    journal_ok = true;
                }
                Err(e) => {
                    if journal_ok {
                        tracing::warn!(group = %name, error = %e, "journal: alert state not saved");
                    }
                    journal_ok = false;
                }
            }
        }
        let m = &ctx.metrics;
        m.rule_evaluations.get_or_create(&metric_labels).inc();
        m.rule_group_duration
            .get_or_create(&metric_labels)
            .set(duration_s);
        m.rule_group_last_evaluation
            .get_or_create(&metric_labels)
            .set(at_ms as f64 / 1000.0);
        if failures > 0 {
            m.rule_eval_failures
                .get_or_create(&metric_labels)
                .inc_by(failures as u64);
        }
        for t in transitions {
            dispatch(&name, &ctx.sinks, t);
        }
        next = started + interval;
        earliest = started + gap;
    }
}

/// Waits for new samples; false when no more notifications can come (never resolves when
/// there is no notifier).
async fn changed(landed: &mut Option<watch::Receiver<u64>>) -> bool {
    match landed {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// Hands a transition to every sink without waiting: evaluation must never block on
/// actions or notifications. A full queue drops the transition, loudly.
pub fn dispatch(group: &str, sinks: &[mpsc::Sender<AlertTransition>], t: AlertTransition) {
    let Some((last, rest)) = sinks.split_last() else {
        return;
    };
    for sink in rest {
        if let Err(e) = sink.try_send(t.clone()) {
            report_drop(group, &e);
        }
    }
    if let Err(e) = last.try_send(t) {
        report_drop(group, &e);
    }
}

fn report_drop(group: &str, e: &mpsc::error::TrySendError<AlertTransition>) {
    let (why, t) = match e {
        mpsc::error::TrySendError::Full(t) => ("queue full", t),
        mpsc::error::TrySendError::Closed(t) => ("receiver stopped", t),
    };
    tracing::error!(
        group,
        alert = %t.alert.rule,
        kind = ?t.kind,
        why,
        "alert transition dropped"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_gap_bounds() {
        assert_eq!(min_gap(Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(min_gap(Duration::from_secs(15)), Duration::from_millis(100));
        assert_eq!(
            min_gap(Duration::from_millis(300)),
            Duration::from_millis(30)
        );
        assert_eq!(
            min_gap(Duration::from_millis(50)),
            Duration::from_millis(10)
        );
    }
}
