//! The planner: turns alert transitions into actions, off the evaluation loop.
//!
//! It owns one task that receives [`AlertTransition`]s and keeps, per firing alert instance
//! (an *episode*), which rungs of its `remediate:` ladder have run. A rung runs once per
//! episode, when `when_unresolved_after` has passed since the alert started firing and the
//! rung's `cooldown` (per alert instance, across episodes) has passed since it last ran.
//! Actions run in spawned tasks behind a semaphore (`max_concurrent_actions`), each bounded
//! by its timeout, so the planner never waits on an actuator and never blocks the sender.
//! A resolved alert cancels its rungs that have not started; running ones finish or time
//! out. Every action that runs is written to the journal before it runs and when it ends.
//! `revert_on_resolve` and `verify_within` are not acted on yet (a later issue).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration as StdDuration, Instant};

use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use serde::Deserialize;

use super::actuator::{ActionAlert, ActionOutcome, ActionRequest, ActionStatus, Actuators};
use crate::common::Duration;
use crate::common::metrics::{SelfMetrics, labels};
use crate::common::time::{now_ms, rfc3339_ms};
use crate::journal::{ActionStatus as JournalStatus, Journal, NewAction};
use crate::rules::template::{TemplateData, TemplateError, render};
use crate::rules::{AlertInstance, AlertTransition, RemediateStep, TransitionKind};
use crate::store::Labels;

/// How many transitions may wait for the planner before senders wait.
const QUEUE_CAPACITY: usize = 1024;
/// Extra time beyond an action's timeout before the planner gives up on the actuator
/// itself (actuators enforce their own timeout; this is the backstop).
const BACKSTOP_GRACE: StdDuration = StdDuration::from_secs(5);

fn default_max_concurrent_actions() -> usize {
    4
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_actions_per_minute() -> u32 {
    30
}

/// Global limits and switches for remediation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemedyConfig {
    /// Log what every action would do and run none of them (actuators that declare
    /// `supports_dry_run` are called with `"dry_run": true` instead).
    #[serde(default)]
    pub dry_run: bool,
    /// At most this many actions run at once; the others wait (an action that cannot start
    /// within its own timeout is dropped with outcome `busy`).
    #[serde(default = "default_max_concurrent_actions")]
    pub max_concurrent_actions: usize,
    /// Timeout of an action when neither the step nor its actuator sets one.
    #[serde(default = "default_action_timeout")]
    pub default_timeout: Duration,
    /// At most this many actions start in any 60 s window, over all rules; a step over the
    /// limit is skipped with outcome `rate_limited`. 0 disables the limit.
    #[serde(default = "default_max_actions_per_minute")]
    pub max_actions_per_minute: u32,
}

impl Default for RemedyConfig {
    fn default() -> Self {
        RemedyConfig {
            dry_run: false,
            max_concurrent_actions: default_max_concurrent_actions(),
            default_timeout: default_action_timeout(),
            max_actions_per_minute: default_max_actions_per_minute(),
        }
    }
}

/// One action as it ended, for the log, the journal and tests.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub rule: String,
    pub group: String,
    pub fingerprint: u64,
    /// Index of the rung in the rule's ladder.
    pub step: usize,
    pub action: String,
    pub target: String,
    pub idempotency_key: String,
    /// `ok`, `failed`, `noop`, `timeout`, `dry_run`, `rate_limited`, `cancelled`, `busy`.
    pub outcome: &'static str,
    pub message: String,
    pub stderr_tail: String,
    pub data: serde_json::Value,
    /// How long the actuator ran (zero when it was not called).
    pub duration: StdDuration,
}

struct Settings {
    actuators: Arc<Actuators>,
    config: RemedyConfig,
    semaphore: Arc<Semaphore>,
}

struct Shared {
    settings: RwLock<Settings>,
    metrics: Arc<SelfMetrics>,
    records: broadcast::Sender<ActionRecord>,
    /// Where every action is written before it runs and again when it ends.
    journal: Option<Arc<Mutex<Journal>>>,
}

/// Handle to a running planner.
pub struct PlannerHandle {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl PlannerHandle {
    /// Swaps in new actuators and settings (config reload). Cooldowns and running episodes
    /// are kept; actions already running finish with the old actuators.
    pub fn reload(&self, actuators: Actuators, config: RemedyConfig) {
        let mut settings = self
            .shared
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner());
        // The same limit keeps the same semaphore, so running actions still count against
        // it; a new limit starts a new one (actions running then are not counted in it).
        if config.max_concurrent_actions != settings.config.max_concurrent_actions {
            settings.semaphore = Arc::new(Semaphore::new(config.max_concurrent_actions.max(1)));
        }
        settings.actuators = Arc::new(actuators);
        settings.config = config;
    }

    /// Every action's record as it ends (the journal and tests listen here).
    pub fn subscribe(&self) -> broadcast::Receiver<ActionRecord> {
        self.shared.records.subscribe()
    }

    /// Waits for the planner to stop. It stops once every sender is dropped; rungs that
    /// have not started are cancelled, running actions finish or time out first.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// The remediation planner.
pub struct Planner;

impl Planner {
    /// Starts the planner task. Send it every alert transition; drop the sender and
    /// `join()` the handle to shut it down.
    pub fn start(
        actuators: Actuators,
        config: RemedyConfig,
        metrics: Arc<SelfMetrics>,
    ) -> (mpsc::Sender<AlertTransition>, PlannerHandle) {
        Self::start_journaled(actuators, config, metrics, None)
    }

    /// [`Planner::start`] writing every action to `journal` (before it runs, and when it
    /// ends). Actions a previous run left `running` are marked `interrupted` first and
    /// reported, never retried.
    pub fn start_journaled(
        actuators: Actuators,
        config: RemedyConfig,
        metrics: Arc<SelfMetrics>,
        journal: Option<Journal>,
    ) -> (mpsc::Sender<AlertTransition>, PlannerHandle) {
        if let Some(j) = &journal {
            match j.actions_interrupt_running(now_ms()) {
                Ok(gone) => {
                    for a in gone {
                        tracing::warn!(
                            action = %a.action,
                            target = a.target.as_deref().unwrap_or(""),
                            key = %a.idempotency_key,
                            "medic stopped while this action was running; recorded as interrupted, not retried"
                        );
                    }
                }
                Err(e) => tracing::error!(error = %e, "journal: cannot mark interrupted actions"),
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (records, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            settings: RwLock::new(Settings {
                actuators: Arc::new(actuators),
                semaphore: Arc::new(Semaphore::new(config.max_concurrent_actions.max(1))),
                config,
            }),
            metrics,
            records,
            journal: journal.map(|j| Arc::new(Mutex::new(j))),
        });
        let task = tokio::spawn(run(rx, shared.clone()));
        (tx, PlannerHandle { shared, task })
    }
}

/// Identity of an alert instance: group, rule, label fingerprint.
type Key = (String, String, u64);

struct Episode {
    alert: AlertInstance,
    ladder: Arc<[RemediateStep]>,
    /// When the alert started firing (ms since the epoch).
    started_ms: i64,
    ran: Vec<bool>,
    cancelled: Arc<AtomicBool>,
}

struct State {
    shared: Arc<Shared>,
    episodes: HashMap<Key, Episode>,
    /// When each rung last ran per instance, for cooldowns across episodes.
    last_run: HashMap<(Key, usize), i64>,
    /// Start times of recent actions, for the global per-minute limit.
    recent: VecDeque<Instant>,
    tasks: JoinSet<()>,
}

async fn run(mut rx: mpsc::Receiver<AlertTransition>, shared: Arc<Shared>) {
    let mut st = State {
        shared,
        episodes: HashMap::new(),
        last_run: HashMap::new(),
        recent: VecDeque::new(),
        tasks: JoinSet::new(),
    };
    let mut next_due: Option<i64> = None;
    loop {
        let sleep_for = next_due.map(|due| {
            StdDuration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0))
        });
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(t) => st.on_transition(t),
                None => break,
            },
            _ = tokio::time::sleep(sleep_for.unwrap_or_default()), if sleep_for.is_some() => {}
            // reap finished actions so the set does not grow
            Some(_) = st.tasks.join_next(), if !st.tasks.is_empty() => {}
        }
        next_due = st.advance();
    }
    // Shutting down: nothing new starts (actions waiting for a slot are cancelled);
    // running actions finish or time out.
    for ep in st.episodes.values() {
        ep.cancelled.store(true, Ordering::SeqCst);
    }
    st.shared
        .settings
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .semaphore
        .close();
    while st.tasks.join_next().await.is_some() {}
}

impl State {
    fn on_transition(&mut self, t: AlertTransition) {
        let key: Key = (
            t.alert.group.clone(),
            t.alert.rule.clone(),
            t.alert.fingerprint(),
        );
        match t.kind {
            TransitionKind::Pending => {}
            TransitionKind::Firing | TransitionKind::StillFiring => {
                if t.remediate.is_empty() {
                    return;
                }
                let started_ms = t.alert.fired_at_ms.unwrap_or(t.at_ms);
                // firing again from a new start without a Resolved seen in between (a lost
                // transition, a restarted engine): that is a new episode
                if let Some(old) = self.episodes.get(&key)
                    && t.kind == TransitionKind::Firing
                    && old.started_ms != started_ms
                    && let Some(old) = self.episodes.remove(&key)
                {
                    old.cancelled.store(true, Ordering::SeqCst);
                }
                let ep = self.episodes.entry(key).or_insert_with(|| Episode {
                    alert: t.alert.clone(),
                    ladder: t.remediate.clone(),
                    started_ms,
                    ran: vec![false; t.remediate.len()],
                    cancelled: Arc::new(AtomicBool::new(false)),
                });
                // a reloaded rule may have a different ladder: start its rungs afresh
                if !Arc::ptr_eq(&ep.ladder, &t.remediate) && *ep.ladder != *t.remediate {
                    ep.ladder = t.remediate.clone();
                    ep.ran = vec![false; t.remediate.len()];
                }
                ep.alert = t.alert;
            }
            TransitionKind::Resolved => {
                if let Some(ep) = self.episodes.remove(&key) {
                    ep.cancelled.store(true, Ordering::SeqCst);
                    tracing::info!(
                        rule = %ep.alert.rule,
                        alert = %ep.alert.labels,
                        "alert resolved; remaining remediation rungs cancelled"
                    );
                }
            }
        }
    }

    /// Starts every rung that is due; returns when the next one will be (ms since epoch).
    fn advance(&mut self) -> Option<i64> {
        let now = now_ms();
        let mut next: Option<i64> = None;
        let mut due: Vec<(Key, usize)> = Vec::new();
        for (key, ep) in &self.episodes {
            for (i, step) in ep.ladder.iter().enumerate() {
                if ep.ran[i] {
                    continue;
                }
                let mut at = ep.started_ms.saturating_add(
                    step.when_unresolved_after
                        .map(|d| d.as_millis_i64())
                        .unwrap_or(0),
                );
                if let (Some(cd), Some(last)) =
                    (step.cooldown, self.last_run.get(&(key.clone(), i)))
                {
                    at = at.max(last.saturating_add(cd.as_millis_i64()));
                }
                if at <= now {
                    due.push((key.clone(), i));
                } else {
                    next = Some(next.map_or(at, |n: i64| n.min(at)));
                }
            }
        }
        for (key, i) in due {
            self.launch(&key, i, now);
        }
        self.prune(now);
        next
    }

    /// Forgets cooldown records that can no longer matter.
    fn prune(&mut self, now: i64) {
        if self.last_run.len() < 1024 {
            return;
        }
        let episodes = &self.episodes;
        self.last_run.retain(|(key, i), last| {
            let cd = episodes
                .get(key)
                .and_then(|ep| ep.ladder.get(*i))
                .and_then(|s| s.cooldown);
            // without a live episode we no longer know the cooldown: keep a day's worth
            let keep_ms = cd.map(|d| d.as_millis_i64()).unwrap_or(86_400_000);
            now.saturating_sub(*last) < keep_ms
        });
    }

    fn launch(&mut self, key: &Key, i: usize, now: i64) {
        let Some(ep) = self.episodes.get_mut(key) else {
            return;
        };
        ep.ran[i] = true;
        let step = ep.ladder[i].clone();
        let alert = ep.alert.clone();
        let started_ms = ep.started_ms;
        let cancelled = ep.cancelled.clone();
        self.last_run.insert((key.clone(), i), now);

        let (actuators, config, semaphore) = {
            let s = self
                .shared
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner());
            (s.actuators.clone(), s.config.clone(), s.semaphore.clone())
        };
        let target = step.target.clone().unwrap_or_default();
        let actuator = actuators.get(&target).cloned();
        let timeout = step
            .timeout
            .map(|d| d.std())
            .or_else(|| actuator.as_ref().and_then(|a| a.timeout()))
            .unwrap_or(config.default_timeout.std());
        let dry_run = config.dry_run || step.dry_run;
        // string params are templates over the alert ({{ $labels.x }}, {{ $value }})
        let data = TemplateData {
            labels: &alert.labels,
            external_labels: &Labels::default(),
            external_url: "",
            value: alert.value,
        };
        let params = step
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_json(v, &data)?)))
            .collect::<Result<serde_json::Map<_, _>, TemplateError>>();
        let mut req = ActionRequest {
            version: 1,
            action: step.action.clone(),
            target: target.clone(),
            params: serde_json::Value::Object(params.clone().unwrap_or_default()),
            alert: ActionAlert {
                name: alert.rule.clone(),
                labels: alert
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                annotations: alert.annotations.clone(),
                value: alert.value,
                starts_at: rfc3339_ms(started_ms),
            },
            dry_run,
            idempotency_key: format!("{}/{}/{:016x}/{}/{}", key.0, key.1, key.2, started_ms, i),
            deadline: rfc3339_ms(now.saturating_add(timeout.as_millis() as i64)),
            timeout,
        };
        let mut record = ActionRecord {
            rule: alert.rule.clone(),
            group: alert.group.clone(),
            fingerprint: key.2,
            step: i,
            action: step.action.clone(),
            target,
            idempotency_key: req.idempotency_key.clone(),
            outcome: "",
            message: String::new(),
            stderr_tail: String::new(),
            data: serde_json::Value::Null,
            duration: StdDuration::ZERO,
        };
        let shared = self.shared.clone();

        if let Err(e) = params {
            record.outcome = "failed";
            record.message = format!("cannot render params: {e}");
            finish(&shared, record);
            return;
        }
        let Some(actuator) = actuator else {
            record.outcome = "failed";
            record.message = format!("target `{}` is not a configured actuator", record.target);
            finish(&shared, record);
            return;
        };
        if dry_run && !actuator.supports_dry_run() {
            record.outcome = "dry_run";
            record.message = format!(
                "dry run: would run `{}` on `{}` with params {}",
                req.action, req.target, req.params
            );
            finish(&shared, record);
            return;
        }
        if config.max_actions_per_minute > 0 {
            let window = StdDuration::from_secs(60);
            let t = Instant::now();
            while self
                .recent
                .front()
                .is_some_and(|s| t.duration_since(*s) >= window)
            {
                self.recent.pop_front();
            }
            if self.recent.len() >= config.max_actions_per_minute as usize {
                record.outcome = "rate_limited";
                record.message = format!(
                    "skipped: {} actions already started in the last minute",
                    self.recent.len()
                );
                finish(&shared, record);
                return;
            }
            self.recent.push_back(t);
        }

        self.tasks.spawn(async move {
            // waiting for a slot is bounded by the action's own timeout
            let permit = match tokio::time::timeout(timeout, semaphore.acquire_owned()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_closed)) => {
                    record.outcome = "cancelled";
                    record.message = "medic is shutting down: not started".into();
                    finish(&shared, record);
                    return;
                }
                Err(_) => {
                    record.outcome = "busy";
                    record.message = format!(
                        "not started: {} actions were running for {timeout:?}",
                        config.max_concurrent_actions
                    );
                    finish(&shared, record);
                    return;
                }
            };
            if cancelled.load(Ordering::SeqCst) {
                record.outcome = "cancelled";
                record.message = "alert resolved before the action started".into();
                finish(&shared, record);
                return;
            }
            tracing::info!(
                rule = %record.rule,
                action = %record.action,
                target = %record.target,
                key = %record.idempotency_key,
                dry_run = req.dry_run,
                "remediation action starting"
            );
            // the deadline the plugin is told is the one the actuator enforces from now
            let begun_ms = now_ms();
            req.deadline = rfc3339_ms(begun_ms.saturating_add(timeout.as_millis() as i64));
            let journal_id = journal_begin(&shared, &req, begun_ms).await;
            let t0 = Instant::now();
            let out = match tokio::time::timeout(timeout + BACKSTOP_GRACE, actuator.act(&req)).await
            {
                Ok(o) => o,
                Err(_) => ActionOutcome::new(
                    ActionStatus::Timeout,
                    format!("actuator did not return within {timeout:?}"),
                ),
            };
            drop(permit);
            record.duration = t0.elapsed();
            record.outcome = out.status.as_str();
            record.message = out.message;
            record.stderr_tail = out.stderr_tail;
            record.data = out.data;
            if let Some(id) = journal_id {
                journal_finish(&shared, id, &record).await;
            }
            shared
                .metrics
                .action_duration
                .get_or_create(&labels(&[
                    ("rule", &record.rule),
                    ("action", &record.action),
                ]))
                .observe(record.duration.as_secs_f64());
            finish(&shared, record);
        });
    }
}

/// Runs `f` on the journal on the blocking pool (SQLite waits for other writers); `None`
/// without a journal or when the write failed (logged: the action still runs, a fix matters
/// more than its record).
async fn with_journal<T: Send + 'static>(
    shared: &Shared,
    what: &'static str,
    f: impl FnOnce(&Journal) -> Result<T, crate::journal::JournalError> + Send + 'static,
) -> Option<T> {
    let journal = shared.journal.clone()?;
    let res = tokio::task::spawn_blocking(move || {
        let j = journal.lock().unwrap_or_else(|e| e.into_inner());
        f(&j)
    })
    .await;
    match res {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "journal: cannot record {what}");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "journal: cannot record {what}");
            None
        }
    }
}

async fn journal_begin(shared: &Shared, req: &ActionRequest, started_ms: i64) -> Option<i64> {
    let (action, target, key) = (
        req.action.clone(),
        req.target.clone(),
        req.idempotency_key.clone(),
    );
    let (params, dry_run) = (req.params.to_string(), req.dry_run);
    with_journal(shared, "the action's start", move |j| {
        j.action_begin(&NewAction {
            incident_id: None,
            action: &action,
            target: Some(&target),
            idempotency_key: &key,
            params: &params,
            dry_run,
            started_ms,
        })
    })
    .await
}

async fn journal_finish(shared: &Shared, id: i64, record: &ActionRecord) {
    let status = match record.outcome {
        "ok" => JournalStatus::Ok,
        "noop" | "dry_run" => JournalStatus::Noop,
        "timeout" => JournalStatus::Timeout,
        _ => JournalStatus::Failed,
    };
    // the journal's status is coarser than the outcome: keep the outcome in the message
    let message = format!("{}: {}", record.outcome, record.message);
    let tail = record.stderr_tail.clone();
    with_journal(shared, "the action's end", move |j| {
        j.action_finish(
            id,
            status,
            Some(&message),
            (!tail.is_empty()).then_some(tail.as_str()),
            now_ms(),
        )
    })
    .await;
}

/// Renders every string inside `v` as a template.
fn render_json(
    v: &serde_json::Value,
    data: &TemplateData,
) -> Result<serde_json::Value, TemplateError> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => Value::String(render(s, data)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| render_json(x, data))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, data)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Logs, counts and publishes one finished (or skipped) action.
fn finish(shared: &Shared, record: ActionRecord) {
    shared
        .metrics
        .actions_total
        .get_or_create(&labels(&[
            ("rule", &record.rule),
            ("action", &record.action),
            ("outcome", record.outcome),
        ]))
        .inc();
    match record.outcome {
        "ok" | "noop" | "dry_run" => tracing::info!(
            rule = %record.rule,
            action = %record.action,
            target = %record.target,
            key = %record.idempotency_key,
            outcome = record.outcome,
            duration_s = record.duration.as_secs_f64(),
            "{}",
            record.message
        ),
        _ => tracing::warn!(
            rule = %record.rule,
            action = %record.action,
            target = %record.target,
            key = %record.idempotency_key,
            outcome = record.outcome,
            duration_s = record.duration.as_secs_f64(),
            stderr_tail = %record.stderr_tail,
            "{}",
            record.message
        ),
    }
    // no subscriber is fine
    let _ = shared.records.send(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedy_config_defaults() {
        let r: RemedyConfig = serde_saphyr::from_str("dry_run: true").unwrap();
        assert!(r.dry_run);
        assert_eq!(r.max_concurrent_actions, 4);
        assert_eq!(r.max_actions_per_minute, 30);
        assert!(serde_saphyr::from_str::<RemedyConfig>("bogus: 1").is_err());
    }
}
