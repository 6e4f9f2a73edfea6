//! The planner: turns alert transitions into incidents and incidents into actions, off the
//! evaluation loop. This file is the whole state machine, top to bottom.
//!
//! **Incident.** One firing episode of one alert instance (group, rule, labels) whose rule
//! has a `remediate:` ladder. Everything the planner does for it (actions, verifications,
//! approvals, reverts, the escalation) is an [`Event`] on its timeline. The incident's whole
//! state is journaled (one JSON row) at every change, *before* anything it implies is done:
//! an action's row and the incident's "running" state are written in one transaction before
//! the actuator is called, so after `kill -9` at any point a restarted planner resumes each
//! open incident where it stood. A rung that was running is `interrupted` (a failure for its
//! target's breaker; never re-run); one that had not started runs once.
//!
//! **Phases.** `active` (the ladder runs) → `resolved` (the alert cleared; waiting for
//! running actions, verifications and `revert_on_resolve` reverts) → `closed`. Besides:
//! `held` (flapping: nothing runs) and `escalated` (remediation stopped; a person was told).
//!
//! **The ladder.** Rungs run in order, one at a time per incident. Rung `i` is due
//! `when_unresolved_after` after the alert started firing, at once if rung `i-1` failed or
//! was not verified, never inside its `cooldown` (per alert instance, across episodes).
//! When due, its mode decides: `dry_run` logs and journals it, `approve` waits for a person
//! (`approval_timeout`, then escalate), `auto` runs it, if the instance is not silenced, its
//! target has a free slot (one action per target at a time by default), the target's
//! breaker admits it and every budget (global, rule, target) has a token; a closed breaker
//! or an empty budget skips the rung and escalates.
//!
//! **Verification.** An action that succeeded waits `verify_within` (default
//! `remedy.verify_within`) for the alert to resolve and for the step's `verify:` expression
//! to hold. Verified: a success for the breaker (closes a half-open one). Not: a failure for
//! the breaker and the next rung at once; after the last rung, the incident escalates once.
//!
//! **Restarts.** Open incidents, cooldowns, budgets and breakers come back from the journal.
//! A restored incident acts again only once its alert fires again (the rule engine starts
//! afresh); if it neither fires nor is pending within `restore_grace` it is resolved.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration as StdDuration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::actuator::{ActionAlert, ActionOutcome, ActionRequest, ActionStatus, Actuators};
use super::breaker::{Admit, Breaker, BreakerState};
use super::budget::Bucket;
use super::escalation::{Escalation, Event};
use super::policy::Budget;
pub use super::policy::RemedyConfig;
use crate::common::metrics::{SelfMetrics, labels};
use crate::common::time::{now_ms, rfc3339_ms};
use crate::journal::{
    ActionFinish, ActionStatus as JournalStatus, IncidentSave, Journal, JournalError, NewAction,
    NewIncident,
};
use crate::rules::template::{TemplateData, TemplateError, render};
use crate::rules::{AlertTransition, RemediateStep, StepMode, TransitionKind};
use crate::silence::SilenceStore;
use crate::store::{Labels, Store};

/// How many transitions may wait for the planner before senders wait.
const QUEUE_CAPACITY: usize = 1024;
/// Extra time beyond an action's timeout before the planner gives up on the actuator
/// itself (actuators enforce their own timeout; this is the backstop).
const BACKSTOP_GRACE: StdDuration = StdDuration::from_secs(5);
/// How often the planner looks again at what waits on something it is not told about
/// (a silence ending, a `verify:` expression coming true).
const POLL: i64 = 1000;
/// Cooldown records kept before old ones are pruned.
const COOLDOWN_MEMORY: usize = 4096;
/// A timeline keeps its first and its newest events up to this many in all.
const MAX_TIMELINE: usize = 400;

/// One action as it ended, for the log, the journal and tests.
#[derive(Debug, Clone)]
pub struct ActionRecord {
    pub rule: String,
    pub group: String,
    pub fingerprint: u64,
    /// The incident it belongs to.
    pub incident: i64,
    /// Index of the rung in the rule's ladder.
    pub step: usize,
    pub action: String,
    pub target: String,
    pub idempotency_key: String,
    /// `ok`, `failed`, `noop`, `timeout`, `dry_run`, `cancelled`, `busy`, and for steps that
    /// did not run: `budget_exhausted`, `breaker_open`, `rejected`, `approval_timeout`.
    pub outcome: &'static str,
    pub message: String,
    pub stderr_tail: String,
    /// What the action found and what it left (the outcome's `before`/`after`).
    pub before: serde_json::Value,
    pub after: serde_json::Value,
    pub data: serde_json::Value,
    /// How long the actuator ran (zero when it was not called).
    pub duration: StdDuration,
}

impl ActionRecord {
    /// Takes what the actuator reported.
    fn take_outcome(&mut self, out: &ActionOutcome) {
        self.outcome = out.status.as_str();
        self.message = out.message.clone();
        self.stderr_tail = out.stderr_tail.clone();
        self.before = out.before.clone();
        self.after = out.after.clone();
        self.data = out.data.clone();
    }
}

// ------------------------------------------------------------------ incident state

/// Where an incident stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Active,
    Held,
    Escalated,
    Resolved,
    Closed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Active => "active",
            Phase::Held => "held",
            Phase::Escalated => "escalated",
            Phase::Resolved => "resolved",
            Phase::Closed => "closed",
        }
    }
}

/// Where one rung stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum StepState {
    Waiting,
    AwaitingApproval {
        since_ms: i64,
        expires_ms: i64,
    },
    Approved {
        by: String,
    },
    Running {
        action_id: i64,
        key: String,
        since_ms: i64,
    },
    Verifying {
        since_ms: i64,
        deadline_ms: i64,
    },
    /// `verified`, `unverified`, `superseded` (the next rung started first), `failed`,
    /// `timeout`, `interrupted`, `busy`, `cancelled`, `dry_run`.
    Done {
        result: String,
        at_ms: i64,
    },
    /// `budget_exhausted`, `breaker_open`, `rejected`, `approval_timeout`, `cancelled`,
    /// `escalated`, `held`.
    Skipped {
        reason: String,
        at_ms: i64,
    },
}

/// One rung of an incident's ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    #[serde(flatten)]
    pub state: StepState,
    /// What the action reported (what it found and what it left), for a revert.
    #[serde(default)]
    pub outcome: Option<ActionOutcome>,
    /// The revert: `running`, then its status.
    #[serde(default)]
    pub revert: Option<String>,
    /// The request that ran (for the revert's request).
    #[serde(default)]
    pub request: Option<serde_json::Value>,
}

/// One incident, as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    pub id: i64,
    pub group: String,
    pub rule: String,
    /// The labels' fingerprint, 16 hex digits.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The alert's value (null when not a number).
    pub value: Option<f64>,
    pub started_ms: i64,
    pub phase: Phase,
    pub outcome: Option<String>,
    pub resolved_ms: Option<i64>,
    pub firing: bool,
    pub ladder: Vec<RemediateStep>,
    pub steps: Vec<Step>,
    /// The next rung is due now rather than at its `when_unresolved_after` (set when a rung
    /// failed or was not verified).
    pub hurry_ms: Option<i64>,
    pub escalated: bool,
    pub revert_due_ms: Option<i64>,
    pub timeline: Vec<Event>,
    /// Restored from the journal and not seen firing since.
    #[serde(default)]
    pub unconfirmed_since_ms: Option<i64>,
    /// Whether "silenced" is already on the timeline (so it is noted once per silence).
    #[serde(default)]
    pub silenced: Option<String>,
}

type Key = (String, String, u64);

impl Incident {
    fn key(&self) -> Key {
        (
            self.group.clone(),
            self.rule.clone(),
            u64::from_str_radix(&self.fingerprint, 16).unwrap_or(0),
        )
    }

    fn event(&mut self, at_ms: i64, kind: &str, step: Option<usize>, detail: impl Into<String>) {
        self.event_with(at_ms, kind, step, detail, serde_json::Value::Null);
    }

    fn event_with(
        &mut self,
        at_ms: i64,
        kind: &str,
        step: Option<usize>,
        detail: impl Into<String>,
        data: serde_json::Value,
    ) {
        if self.timeline.len() >= MAX_TIMELINE {
            // keep how it began; drop the oldest of the rest
            self.timeline.remove(MAX_TIMELINE / 4);
        }
        self.timeline.push(Event {
            at_ms,
            kind: kind.into(),
            step,
            detail: detail.into(),
            data,
        });
    }

    fn labels(&self) -> Labels {
        Labels::new(self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// Rungs that have not run yet and might.
    fn open_step(&self) -> Option<usize> {
        self.steps.iter().position(|s| {
            matches!(
                s.state,
                StepState::Waiting
                    | StepState::AwaitingApproval { .. }
                    | StepState::Approved { .. }
            )
        })
    }

    fn any(&self, f: impl Fn(&StepState) -> bool) -> bool {
        self.steps.iter().any(|s| f(&s.state))
    }
}

fn is_running(s: &StepState) -> bool {
    matches!(s, StepState::Running { .. })
}
fn is_verifying(s: &StepState) -> bool {
    matches!(s, StepState::Verifying { .. })
}

// ------------------------------------------------------------------ handle and control

struct Settings {
    actuators: Arc<Actuators>,
    config: RemedyConfig,
    semaphore: Arc<Semaphore>,
}

/// Breakers and budget levels as last computed, for the API and `medic status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlannerStatus {
    pub breakers: Vec<BreakerView>,
    pub budgets: Vec<BudgetView>,
    pub awaiting_approval: Vec<ApprovalView>,
    pub open_incidents: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BreakerView {
    pub target: String,
    pub state: &'static str,
    /// Failures counted in the window (closed state).
    pub failures: usize,
    pub opened_at: Option<String>,
    pub half_open_at: Option<String>,
    pub backoff_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetView {
    /// `global`, `rule`, `target`.
    pub scope: &'static str,
    /// The rule or target; empty for the global budget.
    pub name: String,
    pub budget: String,
    pub remaining: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApprovalView {
    pub incident: i64,
    pub step: usize,
    pub rule: String,
    pub action: String,
    pub target: String,
    pub expires_at: String,
}

enum Command {
    Approve {
        incident: i64,
        by: String,
        approve: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
    ResetBreaker {
        target: String,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What an action task reports back to the loop.
struct Ended {
    incident: i64,
    step: usize,
    action_id: Option<i64>,
    revert: bool,
    record: ActionRecord,
    outcome: Option<ActionOutcome>,
}

struct Shared {
    settings: RwLock<Settings>,
    metrics: Arc<SelfMetrics>,
    records: broadcast::Sender<ActionRecord>,
    escalations: broadcast::Sender<Escalation>,
    /// The planner's journal connection; the API reads through it too.
    journal: Arc<Mutex<Journal>>,
    status: Mutex<PlannerStatus>,
    commands: mpsc::Sender<Command>,
    store: Option<Arc<Store>>,
    silences: Option<Arc<SilenceStore>>,
}

/// Handle to a running planner.
pub struct PlannerHandle {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// What the API uses: queries and commands, cloneable.
#[derive(Clone)]
pub struct PlannerControl {
    shared: Arc<Shared>,
}

impl PlannerHandle {
    /// Swaps in new actuators and settings (config reload). Incidents, cooldowns, budgets
    /// and breakers are kept; actions already running finish with the old actuators.
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

    /// Every action's record as it ends (tests listen here).
    pub fn subscribe(&self) -> broadcast::Receiver<ActionRecord> {
        self.shared.records.subscribe()
    }

    /// Every escalation (the notifiers deliver them).
    pub fn escalations(&self) -> broadcast::Receiver<Escalation> {
        self.shared.escalations.subscribe()
    }

    pub fn control(&self) -> PlannerControl {
        PlannerControl {
            shared: self.shared.clone(),
        }
    }

    /// Waits for the planner to stop. It stops once every sender is dropped; rungs that
    /// have not started stay as they are in the journal, running actions finish or time
    /// out first (and are journaled).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// A planner error answered to the API.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Refused(String),
    #[error("the planner is not running")]
    Gone,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl PlannerControl {
    /// Runs `f` on the journal on the blocking pool.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Journal) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, ControlError> {
        let j = self.shared.journal.clone();
        tokio::task::spawn_blocking(move || f(&j.lock().unwrap_or_else(|e| e.into_inner())))
            .await
            .map_err(|_| ControlError::Gone)?
            .map_err(ControlError::from)
    }

    /// Breakers, budgets and approvals as the planner last saw them.
    pub fn status(&self) -> PlannerStatus {
        self.shared
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Approves (or rejects) the rung an incident waits on.
    pub async fn decide(&self, incident: i64, by: &str, approve: bool) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Approve {
                incident,
                by: by.to_string(),
                approve,
                reply,
            })
            .await
            .map_err(|_| ControlError::Gone)?;
        rx.await
            .map_err(|_| ControlError::Gone)?
            .map_err(ControlError::Refused)
    }

    /// Closes a target's breaker by hand.
    pub async fn reset_breaker(&self, target: &str) -> Result<(), ControlError> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .commands
            .send(Command::ResetBreaker {
                target: target.to_string(),
                reply,
            })
            .await
            .map_err(|_| ControlError::Gone)?;
        rx.await
            .map_err(|_| ControlError::Gone)?
            .map_err(ControlError::Refused)
    }
}

/// What the planner reads besides transitions.
#[derive(Default)]
pub struct PlannerDeps {
    /// Where incidents, actions, breakers, budgets and cooldowns are kept; a private
    /// in-memory journal when `None` (nothing then survives a restart).
    pub journal: Option<Journal>,
    /// For `verify:` expressions.
    pub store: Option<Arc<Store>>,
    /// A silenced alert is not remediated.
    pub silences: Option<Arc<SilenceStore>>,
}

/// The remediation planner.
pub struct Planner;

impl Planner {
    /// Starts the planner with a private in-memory journal.
    pub fn start(
        actuators: Actuators,
        config: RemedyConfig,
        metrics: Arc<SelfMetrics>,
    ) -> (mpsc::Sender<AlertTransition>, PlannerHandle) {
        Self::start_with(actuators, config, metrics, PlannerDeps::default())
    }

    /// [`Planner::start`] journaling to `journal`.
    pub fn start_journaled(
        actuators: Actuators,
        config: RemedyConfig,
        metrics: Arc<SelfMetrics>,
        journal: Option<Journal>,
    ) -> (mpsc::Sender<AlertTransition>, PlannerHandle) {
        Self::start_with(
            actuators,
            config,
            metrics,
            PlannerDeps {
                journal,
                ..PlannerDeps::default()
            },
        )
    }

    /// Starts the planner task: restores what the journal holds (actions left `running`
    /// become `interrupted`), then takes transitions. Drop the sender and `join()` the
    /// handle to shut it down.
    pub fn start_with(
        actuators: Actuators,
        config: RemedyConfig,
        metrics: Arc<SelfMetrics>,
        deps: PlannerDeps,
    ) -> (mpsc::Sender<AlertTransition>, PlannerHandle) {
        let journal = deps.journal.unwrap_or_else(|| {
            Journal::open_in_memory().unwrap_or_else(|e| {
                // an in-memory SQLite cannot fail short of running out of memory
                panic!("cannot open an in-memory journal: {e}")
            })
        });
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (records, _) = broadcast::channel(256);
        let (escalations, _) = broadcast::channel(256);
        let shared = Arc::new(Shared {
            settings: RwLock::new(Settings {
                actuators: Arc::new(actuators),
                semaphore: Arc::new(Semaphore::new(config.max_concurrent_actions.max(1))),
                config,
            }),
            metrics,
            records,
            escalations,
            journal: Arc::new(Mutex::new(journal)),
            status: Mutex::new(PlannerStatus::default()),
            commands: cmd_tx,
            store: deps.store,
            silences: deps.silences,
        });
        let mut st = State::new(shared.clone());
        st.restore();
        let task = tokio::spawn(run(st, rx, cmd_rx));
        (tx, PlannerHandle { shared, task })
    }
}

// ------------------------------------------------------------------ the loop

struct State {
    shared: Arc<Shared>,
    /// Every incident not closed, by id.
    incidents: BTreeMap<i64, Incident>,
    /// The incident of each alert instance that is not resolved yet.
    open: HashMap<Key, i64>,
    /// When each rung last started, per instance (`cooldown/...` keys), across episodes.
    last_run: HashMap<String, i64>,
    breakers: BTreeMap<String, Breaker>,
    buckets: BTreeMap<String, Bucket>,
    running_per_target: HashMap<String, usize>,
    /// Per instance: until when a flapping escalation covers it.
    flap_escalated: HashMap<Key, i64>,
    /// Incidents changed since they were last journaled.
    dirty: Vec<i64>,
    /// Journal keys changed with them (cooldowns, buckets, breakers).
    dirty_kv: BTreeMap<String, String>,
    escalate_queue: Vec<Escalation>,
    /// Actions that ended, journaled with their incident at the next flush.
    pending_finish: Vec<Finish>,
    ended_tx: mpsc::Sender<Ended>,
    ended_rx: Option<mpsc::Receiver<Ended>>,
    tasks: JoinSet<()>,
    /// Set at shutdown: nothing new starts.
    stopping: Arc<AtomicBool>,
    /// Per running action: set when its alert resolved (it is dropped if not started yet).
    cancel: HashMap<i64, Arc<AtomicBool>>,
    /// Per running rung (incident, step): when it had last started before this attempt.
    previous_run: HashMap<(i64, usize), Option<i64>>,
    /// Journal keys to delete at the next flush (pruned cooldowns).
    forget_kv: Vec<String>,
}

async fn run(
    mut st: State,
    mut rx: mpsc::Receiver<AlertTransition>,
    mut commands: mpsc::Receiver<Command>,
) {
    let mut ended_rx = st.ended_rx.take().expect("taken once, here");
    let mut open_input = true;
    loop {
        let next = st.advance(now_ms());
        st.flush().await;
        st.publish_status();
        if !open_input && st.tasks.is_empty() {
            break;
        }
        let sleep_for =
            next.map(|due| StdDuration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0)));
        tokio::select! {
            msg = rx.recv(), if open_input => match msg {
                Some(t) => st.on_transition(t),
                None => {
                    // Shutting down: nothing new starts; running actions finish.
                    open_input = false;
                    st.stopping.store(true, Ordering::SeqCst);
                    st.shared.settings.read().unwrap_or_else(|e| e.into_inner()).semaphore.close();
                }
            },
            Some(c) = commands.recv() => st.on_command(c),
            Some(e) = ended_rx.recv() => st.on_ended(e),
            _ = tokio::time::sleep(sleep_for.unwrap_or_default()), if sleep_for.is_some() => {}
            Some(_) = st.tasks.join_next(), if !st.tasks.is_empty() => {}
        }
    }
    while let Ok(e) = ended_rx.try_recv() {
        st.on_ended(e);
    }
    st.flush().await;
}

impl State {
    fn new(shared: Arc<Shared>) -> State {
        let (ended_tx, ended_rx) = mpsc::channel(QUEUE_CAPACITY);
        State {
            shared,
            incidents: BTreeMap::new(),
            open: HashMap::new(),
            last_run: HashMap::new(),
            breakers: BTreeMap::new(),
            buckets: BTreeMap::new(),
            running_per_target: HashMap::new(),
            flap_escalated: HashMap::new(),
            dirty: Vec::new(),
            dirty_kv: BTreeMap::new(),
            escalate_queue: Vec::new(),
            pending_finish: Vec::new(),
            ended_tx,
            ended_rx: Some(ended_rx),
            tasks: JoinSet::new(),
            stopping: Arc::new(AtomicBool::new(false)),
            cancel: HashMap::new(),
            previous_run: HashMap::new(),
            forget_kv: Vec::new(),
        }
    }

    fn config(&self) -> RemedyConfig {
        self.shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .config
            .clone()
    }

    fn mark(&mut self, id: i64) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }

    // ---------------------------------------------------------- restore (start-up)

    /// Brings back what the journal holds: interrupted actions, open incidents, cooldowns,
    /// budgets, breakers.
    fn restore(&mut self) {
        let now = now_ms();
        let journal = self.shared.journal.clone();
        let j = journal.lock().unwrap_or_else(|e| e.into_inner());
        match j.actions_interrupt_running(now) {
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
        let kv = |prefix: &str| {
            j.kv_prefix(prefix).unwrap_or_else(|e| {
                tracing::error!(error = %e, "journal: cannot read {prefix}");
                Vec::new()
            })
        };
        for (k, v) in kv("cooldown/") {
            if let Ok(ms) = v.parse() {
                self.last_run.insert(k, ms);
            }
        }
        for (k, v) in kv("budget/") {
            if let Ok(b) = serde_json::from_str(&v) {
                self.buckets.insert(k["budget/".len()..].to_string(), b);
            }
        }
        for (k, v) in kv("breaker/") {
            if let Ok(b) = serde_json::from_str(&v) {
                self.breakers.insert(k["breaker/".len()..].to_string(), b);
            }
        }
        let rows = j.incidents_unclosed().unwrap_or_else(|e| {
            tracing::error!(error = %e, "journal: cannot read open incidents");
            Vec::new()
        });
        drop(j);
        let config = self.config();
        for row in rows {
            let Ok(mut inc) = serde_json::from_str::<Incident>(&row.state) else {
                tracing::warn!(
                    incident = row.id,
                    "journal: incident state unreadable; left as it is"
                );
                continue;
            };
            inc.id = row.id;
            inc.event(now, "restored", None, "medic restarted; incident resumed");
            for i in 0..inc.steps.len() {
                if let StepState::Running { .. } = inc.steps[i].state {
                    inc.steps[i].state = StepState::Done {
                        result: "interrupted".into(),
                        at_ms: now,
                    };
                    inc.hurry_ms = Some(now);
                    inc.event(
                        now,
                        "interrupted",
                        Some(i),
                        "medic stopped while the action was running; not run again",
                    );
                    if let Some(t) = inc.ladder[i].target.clone() {
                        self.breaker_failure(&config, &t, now);
                    }
                }
                if inc.steps[i].revert.as_deref() == Some("running") {
                    inc.steps[i].revert = Some("interrupted".into());
                    inc.event(
                        now,
                        "interrupted",
                        Some(i),
                        "medic stopped during the revert",
                    );
                }
            }
            if matches!(inc.phase, Phase::Active | Phase::Held | Phase::Escalated) {
                inc.unconfirmed_since_ms = Some(now);
                self.open.insert(inc.key(), inc.id);
            }
            self.mark(inc.id);
            self.incidents.insert(inc.id, inc);
        }
        if !self.incidents.is_empty() {
            tracing::info!(
                incidents = self.incidents.len(),
                "resumed open incidents from the journal"
            );
        }
    }

    // ---------------------------------------------------------- transitions

    fn on_transition(&mut self, t: AlertTransition) {
        if t.remediate.is_empty() {
            return;
        }
        let key: Key = (
            t.alert.group.clone(),
            t.alert.rule.clone(),
            t.alert.fingerprint(),
        );
        let now = now_ms();
        match t.kind {
            TransitionKind::Pending => {
                // a restored incident whose alert is pending again (its `for:` restarted)
                if let Some(inc) = self
                    .open
                    .get(&key)
                    .and_then(|id| self.incidents.get_mut(id))
                    && inc.unconfirmed_since_ms.is_some()
                {
                    inc.unconfirmed_since_ms = Some(now);
                }
            }
            TransitionKind::Firing | TransitionKind::StillFiring => {
                let started_ms = t.alert.fired_at_ms.unwrap_or(t.at_ms);
                if let Some(id) = self.open.get(&key).copied() {
                    let inc = self.incidents.get_mut(&id).expect("open ids are incidents");
                    if inc.unconfirmed_since_ms.take().is_some() {
                        inc.firing = true;
                        inc.event(now, "fired", None, "firing again after the restart");
                        self.mark(id);
                    } else if t.kind == TransitionKind::Firing && inc.started_ms != started_ms {
                        // firing from a new start without a Resolved in between (a lost
                        // transition, a restarted engine): that is a new episode
                        self.resolve(id, now, "a new firing episode began");
                    }
                    if let Some(inc) = self.incidents.get_mut(&id) {
                        inc.value = Some(t.alert.value).filter(|v| v.is_finite());
                        inc.annotations = t.alert.annotations.clone();
                        // a reloaded rule may have a different ladder: the rungs not run
                        // yet follow it
                        if *inc.ladder != *t.remediate {
                            let done = inc.steps.len().min(t.remediate.len());
                            inc.ladder = t.remediate.to_vec();
                            inc.steps.truncate(done);
                            while inc.steps.len() < inc.ladder.len() {
                                inc.steps.push(new_step());
                            }
                            self.mark(id);
                        }
                    }
                    if self.open.contains_key(&key) {
                        return;
                    }
                }
                if let Some(sil) = &self.shared.silences
                    && sil.silenced_by(|n| t.alert.labels.get(n), now).is_some()
                {
                    // a silenced alert opens no incident (it will once the silence ends)
                    return;
                }
                self.open_incident(key, &t, started_ms, now);
            }
            TransitionKind::Resolved => {
                if let Some(id) = self.open.get(&key).copied() {
                    self.resolve(id, t.alert.resolved_at_ms.unwrap_or(now), "alert resolved");
                }
            }
        }
    }

    fn open_incident(&mut self, key: Key, t: &AlertTransition, started_ms: i64, now: i64) {
        // a resolved incident of this instance still waiting to revert: the alert is back,
        // so what medic changed is still needed
        let waiting: Vec<i64> = self
            .incidents
            .values()
            .filter(|i| i.key() == key && i.phase == Phase::Resolved)
            .map(|i| i.id)
            .collect();
        for id in waiting {
            if let Some(inc) = self.incidents.get_mut(&id)
                && inc.revert_due_ms.take().is_some()
            {
                inc.event(
                    now,
                    "revert_cancelled",
                    None,
                    "the alert fired again before the revert was due",
                );
                self.mark(id);
            }
            self.maybe_close(id, now);
        }
        let config = self.config();
        let mut inc = Incident {
            id: 0,
            group: key.0.clone(),
            rule: key.1.clone(),
            fingerprint: format!("{:016x}", key.2),
            labels: t
                .alert
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: t.alert.annotations.clone(),
            value: Some(t.alert.value).filter(|v| v.is_finite()),
            started_ms,
            phase: Phase::Active,
            outcome: None,
            resolved_ms: None,
            firing: true,
            ladder: t.remediate.to_vec(),
            steps: t.remediate.iter().map(|_| new_step()).collect(),
            hurry_ms: None,
            escalated: false,
            revert_due_ms: None,
            timeline: Vec::new(),
            unconfirmed_since_ms: None,
            silenced: None,
        };
        inc.event(
            started_ms,
            "fired",
            None,
            format!(
                "{} fired: {}",
                inc.rule,
                Labels::new(inc.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            ),
        );
        // flapping: this instance started firing too often lately
        let flap = config.flapping;
        let mut flapping = false;
        if flap.episodes > 0 {
            let since = now - flap.within.as_millis_i64();
            let fp = inc.fingerprint.clone();
            let earlier = {
                let j = self
                    .shared
                    .journal
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                j.incident_starts_since(&inc.rule, &fp, since)
                    .map(|v| v.len())
                    .unwrap_or(0)
            };
            if earlier + 1 >= flap.episodes as usize {
                flapping = true;
                inc.phase = Phase::Held;
                inc.event(
                    now,
                    "flapping",
                    None,
                    format!(
                        "fired {} times within {}: flapping, the ladder is held",
                        earlier + 1,
                        flap.within
                    ),
                );
                for s in &mut inc.steps {
                    s.state = StepState::Skipped {
                        reason: "held".into(),
                        at_ms: now,
                    };
                }
            }
        }
        let state = serde_json::to_string(&inc).unwrap_or_default();
        let labels_json = serde_json::to_string(&inc.labels).unwrap_or_default();
        let created = {
            let j = self
                .shared
                .journal
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            j.incident_create(&NewIncident {
                fingerprint: &inc.fingerprint,
                alertname: &inc.rule,
                group: &inc.group,
                labels_json: &labels_json,
                started_ms,
                phase: inc.phase.as_str(),
                state: &state,
            })
        };
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                // without its row nothing could be resumed: do not act on it
                tracing::error!(error = %e, rule = %inc.rule, "journal: cannot open the incident; not remediating it");
                return;
            }
        };
        inc.id = id;
        tracing::info!(incident = id, rule = %inc.rule, alert = %inc.labels(), "incident opened");
        self.open.insert(key.clone(), id);
        self.incidents.insert(id, inc);
        self.mark(id);
        if flapping {
            let covered = self
                .flap_escalated
                .get(&key)
                .is_some_and(|until| *until > now);
            if !covered {
                self.flap_escalated
                    .insert(key, now + flap.within.as_millis_i64());
                self.escalate(
                    id,
                    now,
                    "flapping",
                    "the alert is flapping; medic holds its ladder",
                );
            }
        }
    }

    /// The alert cleared (or a new episode began): cancel what has not started, judge what
    /// is being verified, then revert or close.
    fn resolve(&mut self, id: i64, at_ms: i64, why: &str) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        self.open.remove(&inc.key());
        inc.firing = false;
        inc.resolved_ms = Some(at_ms);
        inc.unconfirmed_since_ms = None;
        inc.event(at_ms, "resolved", None, why);
        // a rung that was due (waiting for its target, a silence, a person) is reported
        // cancelled; later rungs simply never come
        let now = now_ms();
        if let Some(i) = inc.open_step() {
            let step = &inc.ladder[i];
            let due = inc
                .started_ms
                .saturating_add(step.when_unresolved_after.map_or(0, |d| d.as_millis_i64()));
            if due.min(inc.hurry_ms.unwrap_or(i64::MAX)) <= now {
                let record = ActionRecord {
                    rule: inc.rule.clone(),
                    group: inc.group.clone(),
                    fingerprint: inc.key().2,
                    incident: id,
                    step: i,
                    action: step.action.clone(),
                    target: step.target.clone().unwrap_or_default(),
                    idempotency_key: idempotency_key(inc, i),
                    outcome: "cancelled",
                    message: "alert resolved before the action started".into(),
                    stderr_tail: String::new(),
                    before: serde_json::Value::Null,
                    after: serde_json::Value::Null,
                    data: serde_json::Value::Null,
                    duration: StdDuration::ZERO,
                };
                finish(&self.shared, record);
            }
        }
        for s in &inc.steps {
            if let StepState::Running { action_id, .. } = s.state
                && let Some(flag) = self.cancel.get(&action_id)
            {
                // only one still waiting for a slot notices
                flag.store(true, Ordering::SeqCst);
            }
        }
        for (i, s) in inc.steps.iter_mut().enumerate() {
            if matches!(
                s.state,
                StepState::Waiting
                    | StepState::AwaitingApproval { .. }
                    | StepState::Approved { .. }
            ) {
                s.state = StepState::Skipped {
                    reason: "cancelled".into(),
                    at_ms,
                };
                inc.timeline.push(Event {
                    at_ms,
                    kind: "skipped".into(),
                    step: Some(i),
                    detail: "cancelled: the alert resolved first".into(),
                    data: serde_json::Value::Null,
                });
            }
        }
        if inc.phase != Phase::Closed {
            inc.phase = Phase::Resolved;
        }
        self.mark(id);
        self.check_verifications(id, now);
        self.maybe_close(id, now);
    }

    // ---------------------------------------------------------- time passing

    /// Moves every incident on as far as it can now; returns when to look again.
    fn advance(&mut self, now: i64) -> Option<i64> {
        let config = self.config();
        self.prune_cooldowns(now);
        let mut next: Option<i64> = None;
        let mut wake = |at: i64| next = Some(next.map_or(at, |n: i64| n.min(at)));
        for b in self.breakers.values_mut() {
            b.tick(now);
            if let Some(at) = b.half_open_at() {
                wake(at);
            }
        }
        let ids: Vec<i64> = self.incidents.keys().copied().collect();
        for id in ids {
            // a restored incident waits for its alert to show it still fires
            if let Some(since) = self.incidents.get(&id).and_then(|i| i.unconfirmed_since_ms) {
                let until = since + config.restore_grace.as_millis_i64();
                if now >= until {
                    self.resolve(id, now, "not firing since medic restarted");
                } else {
                    wake(until);
                    continue;
                }
            }
            if let Some(at) = self.check_verifications(id, now) {
                wake(at);
            }
            if let Some(at) = self.step_ladder(id, now, &config) {
                wake(at);
            }
            if let Some(at) = self.run_reverts(id, now) {
                wake(at);
            }
            self.maybe_close(id, now);
        }
        next
    }

    /// Forgets cooldown records that can no longer matter (bounded memory and journal): past
    /// [`COOLDOWN_MEMORY`] entries, those older than the longest cooldown of any open
    /// incident's ladder, and at least a day old.
    fn prune_cooldowns(&mut self, now: i64) {
        if self.last_run.len() < COOLDOWN_MEMORY {
            return;
        }
        let longest = self
            .incidents
            .values()
            .flat_map(|i| i.ladder.iter().filter_map(|s| s.cooldown))
            .map(|d| d.as_millis_i64())
            .max()
            .unwrap_or(0)
            .max(86_400_000);
        let old: Vec<String> = self
            .last_run
            .iter()
            .filter(|(_, at)| now.saturating_sub(**at) >= longest)
            .map(|(k, _)| k.clone())
            .collect();
        for k in old {
            self.last_run.remove(&k);
            self.dirty_kv.remove(&k);
            self.forget_kv.push(k);
        }
    }

    /// Judges the rungs waiting for verification; returns when to look again.
    fn check_verifications(&mut self, id: i64, now: i64) -> Option<i64> {
        let config = self.config();
        let inc = self.incidents.get(&id)?;
        if inc.unconfirmed_since_ms.is_some() {
            return None;
        }
        let mut next = None;
        let mut verdicts: Vec<(usize, bool)> = Vec::new();
        for (i, s) in inc.steps.iter().enumerate() {
            let StepState::Verifying { deadline_ms, .. } = s.state else {
                continue;
            };
            let holds = !inc.firing
                && inc.ladder[i]
                    .verify
                    .as_deref()
                    .is_none_or(|e| self.expression_holds(e, now));
            if holds {
                verdicts.push((i, true));
            } else if now >= deadline_ms {
                verdicts.push((i, false));
            } else {
                let poll = if inc.firing { deadline_ms } else { now + POLL };
                next = Some(poll.min(deadline_ms));
            }
        }
        for (i, verified) in verdicts {
            let inc = self.incidents.get_mut(&id)?;
            let target = inc.ladder[i].target.clone().unwrap_or_default();
            let dry = matches!(
                inc.steps[i].request.as_ref().and_then(|r| r.get("dry_run")),
                Some(serde_json::Value::Bool(true))
            );
            let started = inc.started_ms;
            let rule = inc.rule.clone();
            if verified {
                inc.steps[i].state = StepState::Done {
                    result: "verified".into(),
                    at_ms: now,
                };
                inc.event(
                    now,
                    "verified",
                    Some(i),
                    "the alert resolved after the action",
                );
                self.shared
                    .metrics
                    .incident_time_to_verified
                    .get_or_create(&labels(&[("rule", &rule)]))
                    .observe((now - started).max(0) as f64 / 1000.0);
                if !dry && self.breakers.get_mut(&target).is_some_and(Breaker::success) {
                    tracing::info!(target = %target, "breaker closed by a verified action");
                    self.save_breaker(&target);
                }
            } else {
                let within = inc.ladder[i]
                    .verify_within
                    .unwrap_or(config.verify_within_default());
                inc.steps[i].state = StepState::Done {
                    result: "unverified".into(),
                    at_ms: now,
                };
                inc.hurry_ms = Some(now);
                inc.event(
                    now,
                    "unverified",
                    Some(i),
                    format!("the alert did not resolve within {within} of the action"),
                );
                let resolved = !inc.firing;
                if !dry {
                    self.breaker_failure(&config, &target, now);
                }
                // the alert cleared but the step's condition never held: nothing will
                // retry (no alert), so a person must look
                if resolved {
                    self.escalate(
                        id,
                        now,
                        "unverified",
                        &format!("the alert resolved but `verify` did not hold within {within}"),
                    );
                }
            }
            self.mark(id);
        }
        next
    }

    fn expression_holds(&self, expr: &str, now: i64) -> bool {
        let Some(store) = &self.shared.store else {
            return false;
        };
        let Ok(e) = crate::promql::parse(expr) else {
            return false;
        };
        match crate::promql::eval_instant(store, &e, now) {
            Ok(crate::promql::Value::Vector(v)) => !v.is_empty(),
            Ok(crate::promql::Value::Scalar { value, .. }) => value != 0.0,
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(expr, error = %e, "verify expression failed");
                false
            }
        }
    }

    /// Starts the next rung when it is due and allowed; returns when to look again.
    fn step_ladder(&mut self, id: i64, now: i64, config: &RemedyConfig) -> Option<i64> {
        let inc = self.incidents.get(&id)?;
        if inc.phase != Phase::Active || inc.unconfirmed_since_ms.is_some() {
            return None;
        }
        let Some(i) = inc.open_step() else {
            // nothing left to try: when the last rung did not fix it, a person must
            if inc.firing && !inc.any(|s| is_running(s) || is_verifying(s)) {
                let last = inc.steps.iter().rev().find_map(|s| match &s.state {
                    StepState::Done { result, .. } => Some(result.clone()),
                    _ => None,
                });
                if last.as_deref() != Some("verified") {
                    self.escalate(
                        id,
                        now,
                        "ladder_exhausted",
                        &format!(
                            "every remediation step ran and the alert still fires (last: {})",
                            last.as_deref().unwrap_or("none")
                        ),
                    );
                }
            }
            return None;
        };
        if i > 0 && matches!(inc.steps[i - 1].state, StepState::Running { .. }) {
            return None;
        }
        let step = &inc.ladder[i];
        let mut due = inc
            .started_ms
            .saturating_add(step.when_unresolved_after.map_or(0, |d| d.as_millis_i64()));
        if let Some(h) = inc.hurry_ms {
            due = due.min(h);
        }
        let ckey = cooldown_key(inc, i);
        if let (Some(cd), Some(last)) = (step.cooldown, self.last_run.get(&ckey)) {
            due = due.max(last.saturating_add(cd.as_millis_i64()));
        }
        if due > now {
            return Some(due);
        }
        match inc.steps[i].state.clone() {
            StepState::Waiting => match config.mode_of(&inc.rule, step) {
                StepMode::Approve => {
                    let expires = now + config.approval_timeout.as_millis_i64();
                    let inc = self.incidents.get_mut(&id)?;
                    inc.steps[i].state = StepState::AwaitingApproval {
                        since_ms: now,
                        expires_ms: expires,
                    };
                    let what = describe(&inc.ladder[i]);
                    inc.event(
                        now,
                        "awaiting_approval",
                        Some(i),
                        format!("{what} waits for approval until {}", rfc3339_ms(expires)),
                    );
                    tracing::info!(incident = id, step = i, "{what} waits for approval");
                    self.mark(id);
                    Some(expires)
                }
                StepMode::DryRun => self.try_launch(id, i, now, config, true),
                StepMode::Auto => self.try_launch(id, i, now, config, false),
            },
            StepState::AwaitingApproval { expires_ms, .. } => {
                if now < expires_ms {
                    return Some(expires_ms);
                }
                self.skip(id, i, now, "approval_timeout", "nobody approved it in time");
                None
            }
            StepState::Approved { .. } => self.try_launch(id, i, now, config, false),
            _ => None,
        }
    }

    /// Runs rung `i` if the silence, the target's slot, its breaker and the budgets allow.
    fn try_launch(
        &mut self,
        id: i64,
        i: usize,
        now: i64,
        config: &RemedyConfig,
        dry_run: bool,
    ) -> Option<i64> {
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let inc = self.incidents.get(&id)?;
        let step = inc.ladder[i].clone();
        let target = step.target.clone().unwrap_or_default();
        let rule = inc.rule.clone();
        // silenced: wait, noting it once
        if let Some(sil) = &self.shared.silences
            && let Some(by) = sil.silenced_by(|n| inc.labels.get(n).map(String::as_str), now)
        {
            let inc = self.incidents.get_mut(&id)?;
            if inc.silenced.as_deref() != Some(by.as_str()) {
                inc.event(now, "silenced", Some(i), format!("held by silence {by}"));
                inc.silenced = Some(by);
                self.mark(id);
            }
            return Some(now + POLL);
        }
        if self.running_per_target.get(&target).copied().unwrap_or(0)
            >= config.target_concurrency(&target)
        {
            // woken again when the running action ends
            return None;
        }
        if !dry_run {
            // budgets first (no side effect), then the breaker (admitting a trial is one)
            let checks = [
                ("global".to_string(), config.global_budget()),
                (format!("rule/{rule}"), config.rule_budget(&rule)),
                (format!("target/{target}"), config.target_budget(&target)),
            ];
            for (name, budget) in &checks {
                let Some(b) = budget else { continue };
                let bucket = self
                    .buckets
                    .get(name)
                    .copied()
                    .unwrap_or(Bucket::full(*b, now));
                if !bucket.has_token(*b, now) {
                    self.skip(
                        id,
                        i,
                        now,
                        "budget_exhausted",
                        &format!(
                            "budget {name} ({b}) is used up; next token at {}",
                            rfc3339_ms(bucket.next_token_ms(*b, now))
                        ),
                    );
                    return None;
                }
            }
            let admit = self.breakers.entry(target.clone()).or_default().admit(now);
            if admit == Admit::No {
                let b = &self.breakers[&target];
                let detail = format!(
                    "the breaker of {target} is {}{}",
                    b.state.as_str(),
                    b.half_open_at()
                        .map(|t| format!(" until {}", rfc3339_ms(t)))
                        .unwrap_or_default()
                );
                self.skip(id, i, now, "breaker_open", &detail);
                return None;
            }
            if admit == Admit::Trial {
                self.save_breaker(&target);
            }
            for (name, budget) in &checks {
                let Some(b) = budget else { continue };
                let bucket = self
                    .buckets
                    .entry(name.clone())
                    .or_insert(Bucket::full(*b, now));
                bucket.take(*b, now);
                let v = serde_json::to_string(bucket).unwrap_or_default();
                self.dirty_kv.insert(format!("budget/{name}"), v);
            }
        }
        self.launch(id, i, now, config, dry_run);
        None
    }

    /// Skips rung `i` and escalates: a budget, a breaker or a person stopped it.
    fn skip(&mut self, id: i64, i: usize, now: i64, reason: &'static str, detail: &str) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        inc.steps[i].state = StepState::Skipped {
            reason: reason.into(),
            at_ms: now,
        };
        inc.event(now, "skipped", Some(i), format!("{reason}: {detail}"));
        let record = ActionRecord {
            rule: inc.rule.clone(),
            group: inc.group.clone(),
            fingerprint: inc.key().2,
            incident: id,
            step: i,
            action: inc.ladder[i].action.clone(),
            target: inc.ladder[i].target.clone().unwrap_or_default(),
            idempotency_key: idempotency_key(inc, i),
            outcome: reason,
            message: detail.to_string(),
            stderr_tail: String::new(),
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
            data: serde_json::Value::Null,
            duration: StdDuration::ZERO,
        };
        self.mark(id);
        finish(&self.shared, record);
        self.escalate(id, now, reason, detail);
    }

    /// Starts rung `i`: journals it as running (with the incident, one transaction), then
    /// hands it to a task.
    fn launch(&mut self, id: i64, i: usize, now: i64, config: &RemedyConfig, dry_run: bool) {
        let (actuators, semaphore) = {
            let s = self
                .shared
                .settings
                .read()
                .unwrap_or_else(|e| e.into_inner());
            (s.actuators.clone(), s.semaphore.clone())
        };
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        let step = inc.ladder[i].clone();
        let target = step.target.clone().unwrap_or_default();
        let actuator = actuators.get(&target).cloned();
        let timeout = step
            .timeout
            .map(|d| d.std())
            .or_else(|| actuator.as_ref().and_then(|a| a.timeout()))
            .unwrap_or(config.default_timeout.std());
        let labels_ = inc.labels();
        // string params are templates over the alert ({{ $labels.x }}, {{ $value }})
        let data = TemplateData {
            labels: &labels_,
            external_labels: &Labels::default(),
            external_url: "",
            value: inc.value.unwrap_or(f64::NAN),
        };
        let params = step
            .params
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_json(v, &data)?)))
            .collect::<Result<serde_json::Map<_, _>, TemplateError>>();
        let key = idempotency_key(inc, i);
        let mut req = ActionRequest {
            version: 1,
            action: step.action.clone(),
            target: target.clone(),
            params: serde_json::Value::Object(params.clone().unwrap_or_default()),
            alert: ActionAlert {
                name: inc.rule.clone(),
                labels: inc.labels.clone(),
                annotations: inc.annotations.clone(),
                value: inc.value.unwrap_or(f64::NAN),
                starts_at: rfc3339_ms(inc.started_ms),
            },
            dry_run,
            idempotency_key: key.clone(),
            deadline: rfc3339_ms(now.saturating_add(timeout.as_millis() as i64)),
            timeout,
        };
        let mut record = ActionRecord {
            rule: inc.rule.clone(),
            group: inc.group.clone(),
            fingerprint: inc.key().2,
            incident: id,
            step: i,
            action: step.action.clone(),
            target: target.clone(),
            idempotency_key: key.clone(),
            outcome: "",
            message: String::new(),
            stderr_tail: String::new(),
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
            data: serde_json::Value::Null,
            duration: StdDuration::ZERO,
        };
        // the rung that ran before is judged no further: this one supersedes it
        for j in 0..i {
            if is_verifying(&inc.steps[j].state) {
                inc.steps[j].state = StepState::Done {
                    result: "superseded".into(),
                    at_ms: now,
                };
            }
        }
        let ckey = cooldown_key(inc, i);
        let before = self.last_run.insert(ckey.clone(), now);
        self.previous_run.insert((id, i), before);
        self.dirty_kv.insert(ckey, now.to_string());
        inc.hurry_ms = None;

        // refusals that need no actuator call end the rung at once
        let refusal = match (&params, &actuator) {
            (Err(e), _) => Some(format!("cannot render params: {e}")),
            (_, None) => Some(format!("target `{target}` is not a configured actuator")),
            _ => None,
        };
        if let Some(msg) = refusal {
            record.outcome = "failed";
            record.message = msg.clone();
            inc.steps[i].state = StepState::Done {
                result: "failed".into(),
                at_ms: now,
            };
            inc.hurry_ms = Some(now);
            inc.event(now, "action_ended", Some(i), format!("failed: {msg}"));
            self.mark(id);
            self.breaker_failure(config, &target, now);
            finish(&self.shared, record);
            return;
        }
        let Some(actuator) = actuator else { return };
        if dry_run && !actuator.supports_dry_run() {
            record.outcome = "dry_run";
            record.message = format!(
                "dry run: would run `{}` on `{}` with params {}",
                req.action, req.target, req.params
            );
            inc.steps[i].state = StepState::Verifying {
                since_ms: now,
                deadline_ms: now
                    + step
                        .verify_within
                        .unwrap_or(config.verify_within_default())
                        .as_millis_i64(),
            };
            inc.steps[i].request = Some(serde_json::json!({"dry_run": true}));
            inc.event(now, "action_ended", Some(i), record.message.clone());
            self.mark(id);
            finish(&self.shared, record);
            return;
        }
        inc.steps[i].state = StepState::Running {
            action_id: 0,
            key: key.clone(),
            since_ms: now,
        };
        inc.steps[i].request = serde_json::to_value(&req).ok();
        inc.event(
            now,
            "action_started",
            Some(i),
            format!(
                "{}{}",
                if dry_run { "dry run of " } else { "" },
                describe(&step)
            ),
        );
        // journal before acting: a crash from here on leaves `running`, read back as
        // `interrupted`, never as "not started". Written inline (not on the blocking pool):
        // the write must precede the action, and a WAL commit takes about a millisecond.
        let kv: Vec<(String, String)> = std::mem::take(&mut self.dirty_kv).into_iter().collect();
        let action_id = match journal_start(
            &self.shared,
            inc,
            id,
            now,
            (&req.action, &target, &key, &req.params, dry_run),
            &kv,
        ) {
            Ok(id) => id,
            Err(e) => {
                // no record, no action: acting unjournaled could repeat after a crash
                tracing::error!(error = %e, "journal: cannot record the action's start; not running it");
                None
            }
        };
        let Some(action_id) = action_id else {
            inc.steps[i].state = StepState::Done {
                result: "failed".into(),
                at_ms: now,
            };
            inc.event(
                now,
                "action_ended",
                Some(i),
                "failed: the journal refused the write",
            );
            self.mark(id);
            return;
        };
        inc.steps[i].state = StepState::Running {
            action_id,
            key,
            since_ms: now,
        };
        *self.running_per_target.entry(target.clone()).or_default() += 1;
        let ended = self.ended_tx.clone();
        let stopping = self.stopping.clone();
        let cancelled = Arc::new(AtomicBool::new(false));
        self.cancel.insert(action_id, cancelled.clone());
        let max = config.max_concurrent_actions;
        let metrics = self.shared.metrics.clone();
        self.tasks.spawn(async move {
            let wait = tokio::time::timeout(timeout, semaphore.acquire_owned()).await;
            let (outcome, started) = match wait {
                Ok(Ok(_)) if cancelled.load(Ordering::SeqCst) => {
                    record.outcome = "cancelled";
                    record.message = "alert resolved before the action started".into();
                    (None, false)
                }
                Ok(Ok(permit)) if !stopping.load(Ordering::SeqCst) => {
                    tracing::info!(
                        rule = %record.rule,
                        action = %record.action,
                        target = %record.target,
                        key = %record.idempotency_key,
                        dry_run = req.dry_run,
                        "remediation action starting"
                    );
                    // the deadline the plugin is told is the one the actuator enforces
                    req.deadline = rfc3339_ms(now_ms().saturating_add(timeout.as_millis() as i64));
                    let t0 = Instant::now();
                    let out =
                        match tokio::time::timeout(timeout + BACKSTOP_GRACE, actuator.act(&req))
                            .await
                        {
                            Ok(o) => o,
                            Err(_) => ActionOutcome::new(
                                ActionStatus::Timeout,
                                format!("actuator did not return within {timeout:?}"),
                            ),
                        };
                    drop(permit);
                    record.duration = t0.elapsed();
                    metrics
                        .action_duration
                        .get_or_create(&labels(&[
                            ("rule", &record.rule),
                            ("action", &record.action),
                        ]))
                        .observe(record.duration.as_secs_f64());
                    (Some(out), true)
                }
                Ok(_) => {
                    record.outcome = "cancelled";
                    record.message = "medic is shutting down: not started".into();
                    (None, false)
                }
                Err(_) => {
                    record.outcome = "busy";
                    record.message =
                        format!("not started: {max} actions were running for {timeout:?}");
                    (None, false)
                }
            };
            if let Some(out) = &outcome {
                record.take_outcome(out);
            }
            let _ = started;
            let _ = ended
                .send(Ended {
                    incident: id,
                    step: i,
                    action_id: Some(action_id),
                    revert: false,
                    record,
                    outcome,
                })
                .await;
        });
        self.mark(id);
    }

    /// An action (or a revert) ended: journal it with the incident's new state.
    fn on_ended(&mut self, e: Ended) {
        let now = now_ms();
        let config = self.config();
        let target = e.record.target.clone();
        if let Some(n) = self.running_per_target.get_mut(&target) {
            *n = n.saturating_sub(1);
        }
        if let Some(a) = e.action_id {
            self.cancel.remove(&a);
        }
        // when the rung had last started before this attempt (a revert has no entry)
        let prev_run = if e.revert {
            None
        } else {
            self.previous_run.remove(&(e.incident, e.step))
        };
        let status = match e.record.outcome {
            "ok" => JournalStatus::Ok,
            "noop" | "dry_run" | "cancelled" => JournalStatus::Noop,
            "timeout" => JournalStatus::Timeout,
            _ => JournalStatus::Failed,
        };
        let message = format!("{}: {}", e.record.outcome, e.record.message);
        let result = e
            .outcome
            .as_ref()
            .and_then(|o| serde_json::to_string(o).ok());
        let data = e
            .outcome
            .as_ref()
            .map(|o| serde_json::json!({"status": o.status, "before": o.before, "after": o.after, "data": o.data}))
            .unwrap_or(serde_json::Value::Null);
        if let Some(inc) = self.incidents.get_mut(&e.incident) {
            let i = e.step;
            if e.revert {
                inc.steps[i].revert = Some(e.record.outcome.to_string());
                inc.event_with(
                    now,
                    "revert_ended",
                    Some(i),
                    format!("revert {}: {}", e.record.outcome, e.record.message),
                    data,
                );
            } else {
                let dry = inc.steps[i].request.as_ref().and_then(|r| r.get("dry_run"))
                    == Some(&serde_json::Value::Bool(true));
                inc.steps[i].outcome = e.outcome.clone();
                inc.event_with(
                    now,
                    "action_ended",
                    Some(i),
                    format!("{}: {}", e.record.outcome, e.record.message),
                    data,
                );
                match e.record.outcome {
                    "ok" | "noop" => {
                        let within = inc.ladder[i]
                            .verify_within
                            .unwrap_or(config.verify_within_default());
                        inc.steps[i].state = StepState::Verifying {
                            since_ms: now,
                            deadline_ms: now + within.as_millis_i64(),
                        };
                    }
                    "cancelled" if self.stopping.load(Ordering::SeqCst) && inc.firing => {
                        // never started because medic is stopping: the rung runs after the
                        // restart, and this attempt does not count toward its cooldown
                        inc.steps[i].state = StepState::Waiting;
                        let ckey = cooldown_key(inc, i);
                        let prev = prev_run.flatten();
                        match prev {
                            Some(p) => self.last_run.insert(ckey.clone(), p),
                            None => self.last_run.remove(&ckey),
                        };
                        self.dirty_kv.insert(ckey, prev.unwrap_or(0).to_string());
                        if let Some(b) = self.breakers.get_mut(&target) {
                            b.trial_abandoned();
                        }
                    }
                    "cancelled" | "busy" => {
                        inc.steps[i].state = StepState::Done {
                            result: e.record.outcome.into(),
                            at_ms: now,
                        };
                        if let Some(b) = self.breakers.get_mut(&target) {
                            b.trial_abandoned();
                        }
                    }
                    other => {
                        inc.steps[i].state = StepState::Done {
                            result: other.into(),
                            at_ms: now,
                        };
                        inc.hurry_ms = Some(now);
                        if !dry {
                            self.breaker_failure(&config, &target, now);
                        }
                    }
                }
            }
            self.mark(e.incident);
        }
        // journaled with the incident at the next flush (one transaction)
        if let Some(action_id) = e.action_id {
            self.pending_finish.push((
                e.incident,
                action_id,
                status,
                message,
                (!e.record.stderr_tail.is_empty()).then(|| e.record.stderr_tail.clone()),
                result,
                now,
            ));
        }
        finish(&self.shared, e.record);
    }

    /// Reverts the `revert_on_resolve` rungs of a resolved incident once it has been
    /// resolved for `revert_after`; returns when to look again.
    fn run_reverts(&mut self, id: i64, now: i64) -> Option<i64> {
        let inc = self.incidents.get(&id)?;
        let due = inc.revert_due_ms?;
        if inc.phase != Phase::Resolved || inc.any(|s| is_running(s) || is_verifying(s)) {
            return None;
        }
        if now < due {
            return Some(due);
        }
        if self.stopping.load(Ordering::SeqCst) {
            return None;
        }
        let actuators = self
            .shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .actuators
            .clone();
        let todo: Vec<usize> = revertible(inc, &actuators)
            .into_iter()
            .filter(|i| inc.steps[*i].revert.is_none())
            .collect();
        let default_timeout = self.config().default_timeout.std();
        for i in todo {
            let inc = self.incidents.get_mut(&id)?;
            let step = inc.ladder[i].clone();
            let target = step.target.clone().unwrap_or_default();
            let Some(actuator) = actuators.get(&target).cloned() else {
                inc.steps[i].revert = Some("failed".into());
                continue;
            };
            let Some(done) = inc.steps[i].outcome.clone() else {
                continue;
            };
            let timeout = step
                .timeout
                .map(|d| d.std())
                .or_else(|| actuator.timeout())
                .unwrap_or(default_timeout);
            let Some(mut req) = inc.steps[i].request.clone().and_then(request_from_json) else {
                inc.steps[i].revert = Some("failed".into());
                continue;
            };
            req.timeout = timeout;
            req.deadline = rfc3339_ms(now + timeout.as_millis() as i64);
            req.idempotency_key = format!("{}/revert", req.idempotency_key);
            inc.steps[i].revert = Some("running".into());
            inc.event_with(
                now,
                "revert_started",
                Some(i),
                format!("reverting {}", describe(&step)),
                serde_json::json!({"restore": done.before, "from": done.after}),
            );
            let action_name = format!("revert:{}", req.action);
            let action_id = journal_start(
                &self.shared,
                inc,
                id,
                now,
                (
                    &action_name,
                    &target,
                    &req.idempotency_key,
                    &req.params,
                    false,
                ),
                &[],
            );
            let action_id = match action_id {
                Ok(Some(a)) => a,
                _ => {
                    tracing::error!("journal: cannot record the revert's start; not reverting");
                    inc.steps[i].revert = Some("failed".into());
                    continue;
                }
            };
            *self.running_per_target.entry(target.clone()).or_default() += 1;
            let record = ActionRecord {
                rule: inc.rule.clone(),
                group: inc.group.clone(),
                fingerprint: inc.key().2,
                incident: id,
                step: i,
                action: action_name,
                target,
                idempotency_key: req.idempotency_key.clone(),
                outcome: "",
                message: String::new(),
                stderr_tail: String::new(),
                before: serde_json::Value::Null,
                after: serde_json::Value::Null,
                data: serde_json::Value::Null,
                duration: StdDuration::ZERO,
            };
            let ended = self.ended_tx.clone();
            self.tasks.spawn(async move {
                let mut record = record;
                let t0 = Instant::now();
                let out = match tokio::time::timeout(
                    timeout + BACKSTOP_GRACE,
                    actuator.revert(&req, &done),
                )
                .await
                {
                    Ok(o) => o,
                    Err(_) => {
                        ActionOutcome::new(ActionStatus::Timeout, "revert did not return in time")
                    }
                };
                record.duration = t0.elapsed();
                record.take_outcome(&out);
                let _ = ended
                    .send(Ended {
                        incident: id,
                        step: i,
                        action_id: Some(action_id),
                        revert: true,
                        record,
                        outcome: Some(out),
                    })
                    .await;
            });
            self.mark(id);
        }
        None
    }

    /// Closes a resolved incident once nothing runs, nothing waits to be verified and its
    /// reverts are done (or scheduled ones were cancelled).
    fn maybe_close(&mut self, id: i64, now: i64) {
        let actuators = self
            .shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .actuators
            .clone();
        let config = self.config();
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        if inc.phase != Phase::Resolved
            || inc.any(|s| is_running(s) || is_verifying(s))
            || inc
                .steps
                .iter()
                .any(|s| s.revert.as_deref() == Some("running"))
        {
            return;
        }
        let pending_reverts: Vec<usize> = revertible(inc, &actuators)
            .into_iter()
            .filter(|i| inc.steps[*i].revert.is_none())
            .collect();
        if !pending_reverts.is_empty()
            && inc.revert_due_ms.is_none()
            && !inc.timeline.iter().any(|e| e.kind == "revert_cancelled")
        {
            let after = pending_reverts
                .iter()
                .map(|i| inc.ladder[*i].revert_after.unwrap_or(config.revert_after))
                .max()
                .unwrap_or(config.revert_after);
            let due = inc.resolved_ms.unwrap_or(now) + after.as_millis_i64();
            inc.revert_due_ms = Some(due);
            inc.event(
                now,
                "revert_scheduled",
                None,
                format!("revert at {}", rfc3339_ms(due)),
            );
            self.mark(id);
            return;
        }
        if !pending_reverts.is_empty() && inc.revert_due_ms.is_some() {
            return;
        }
        inc.revert_due_ms = None;
        let outcome = if inc.escalated {
            "escalated"
        } else if inc.any(|s| matches!(s, StepState::Done { result, .. } if result == "verified")) {
            "verified"
        } else if inc.any(|s| matches!(s, StepState::Skipped { reason, .. } if reason == "held")) {
            "held"
        } else {
            "resolved"
        };
        inc.phase = Phase::Closed;
        inc.outcome = Some(outcome.into());
        inc.event(now, "closed", None, format!("closed: {outcome}"));
        self.shared
            .metrics
            .incidents_total
            .get_or_create(&labels(&[("rule", &inc.rule), ("outcome", outcome)]))
            .inc();
        tracing::info!(incident = id, rule = %inc.rule, outcome, "incident closed");
        self.mark(id);
    }

    /// Tells a person, once per incident, with its whole history; nothing more runs for it.
    fn escalate(&mut self, id: i64, now: i64, reason: &str, summary: &str) {
        let Some(inc) = self.incidents.get_mut(&id) else {
            return;
        };
        if inc.escalated {
            return;
        }
        inc.escalated = true;
        if matches!(inc.phase, Phase::Active | Phase::Held) {
            inc.phase = Phase::Escalated;
        }
        for s in &mut inc.steps {
            if matches!(
                s.state,
                StepState::Waiting
                    | StepState::AwaitingApproval { .. }
                    | StepState::Approved { .. }
            ) {
                s.state = StepState::Skipped {
                    reason: "escalated".into(),
                    at_ms: now,
                };
            }
        }
        inc.event(now, "escalated", None, format!("{reason}: {summary}"));
        tracing::warn!(incident = id, rule = %inc.rule, reason, "{summary}; escalating");
        self.escalate_queue.push(Escalation {
            incident: id,
            rule: inc.rule.clone(),
            group: inc.group.clone(),
            labels: inc.labels.clone(),
            annotations: inc.annotations.clone(),
            started_ms: inc.started_ms,
            at_ms: now,
            reason: reason.to_string(),
            summary: summary.to_string(),
            history: inc.timeline.clone(),
        });
        self.shared
            .metrics
            .escalations_total
            .get_or_create(&labels(&[("rule", &inc.rule), ("reason", reason)]))
            .inc();
        self.mark(id);
    }

    fn breaker_failure(&mut self, config: &RemedyConfig, target: &str, now: i64) {
        if target.is_empty() {
            return;
        }
        let cfg = config.breaker_of(target);
        let b = self.breakers.entry(target.to_string()).or_default();
        if b.failure(&cfg, now) {
            tracing::warn!(
                target,
                backoff_s = b.backoff_ms / 1000,
                "breaker opened: actions on this target are skipped"
            );
        }
        self.save_breaker(target);
    }

    fn save_breaker(&mut self, target: &str) {
        if let Some(b) = self.breakers.get(target) {
            self.dirty_kv.insert(
                format!("breaker/{target}"),
                serde_json::to_string(b).unwrap_or_default(),
            );
        }
    }

    // ---------------------------------------------------------- commands

    fn on_command(&mut self, c: Command) {
        let now = now_ms();
        match c {
            Command::Approve {
                incident,
                by,
                approve,
                reply,
            } => {
                let r = self.decide(incident, &by, approve, now);
                let _ = reply.send(r);
            }
            Command::ResetBreaker { target, reply } => {
                let b = self.breakers.entry(target.clone()).or_default();
                b.reset();
                tracing::info!(target = %target, "breaker reset by hand");
                self.save_breaker(&target);
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn decide(&mut self, id: i64, by: &str, approve: bool, now: i64) -> Result<(), String> {
        let inc = self
            .incidents
            .get_mut(&id)
            .ok_or_else(|| format!("incident {id} is not open"))?;
        let i = inc
            .steps
            .iter()
            .position(|s| matches!(s.state, StepState::AwaitingApproval { .. }))
            .ok_or_else(|| format!("incident {id} has no step waiting for approval"))?;
        let what = describe(&inc.ladder[i]);
        if approve {
            inc.steps[i].state = StepState::Approved { by: by.to_string() };
            inc.event(now, "approved", Some(i), format!("{what} approved by {by}"));
            self.mark(id);
        } else {
            inc.event(now, "rejected", Some(i), format!("{what} rejected by {by}"));
            self.skip(id, i, now, "rejected", &format!("{what} rejected by {by}"));
        }
        Ok(())
    }

    // ---------------------------------------------------------- journal and status

    /// Journals every changed incident (with the actions that ended for it) and the
    /// changed keys, then hands out the escalations decided meanwhile.
    async fn flush(&mut self) {
        if self.dirty.is_empty()
            && self.dirty_kv.is_empty()
            && self.pending_finish.is_empty()
            && self.forget_kv.is_empty()
        {
            self.send_escalations();
            return;
        }
        let mut writes: Vec<Write> = Vec::new();
        for id in std::mem::take(&mut self.dirty) {
            if let Some(inc) = self.incidents.get(&id) {
                writes.push((
                    id,
                    inc.phase.as_str().to_string(),
                    inc.outcome.clone(),
                    inc.resolved_ms,
                    serde_json::to_string(inc).unwrap_or_default(),
                ));
            }
        }
        let finishes = std::mem::take(&mut self.pending_finish);
        let kv: Vec<(String, String)> = std::mem::take(&mut self.dirty_kv).into_iter().collect();
        let forget = std::mem::take(&mut self.forget_kv);
        let journal = self.shared.journal.clone();
        let now = now_ms();
        let res = tokio::task::spawn_blocking(move || {
            let j = journal.lock().unwrap_or_else(|e| e.into_inner());
            let mut kv = Some(kv);
            for (id, phase, outcome, resolved, state) in &writes {
                let mine: Vec<&Finish> = finishes.iter().filter(|f| f.0 == *id).collect();
                let save = IncidentSave {
                    id: *id,
                    phase,
                    outcome: outcome.as_deref(),
                    resolved_ms: *resolved,
                    state,
                    updated_ms: now,
                };
                let kv_now = kv.take().unwrap_or_default();
                if mine.is_empty() {
                    j.incident_save(&save, None, None, &kv_now)?;
                }
                for (n, f) in mine.iter().enumerate() {
                    let af = ActionFinish {
                        id: f.1,
                        status: f.2,
                        message: Some(&f.3),
                        stderr_tail: f.4.as_deref(),
                        result: f.5.as_deref(),
                        finished_ms: f.6,
                    };
                    j.incident_save(&save, None, Some(&af), if n == 0 { &kv_now } else { &[] })?;
                }
            }
            // actions whose incident was not written (it is gone): finish them alone
            for f in finishes
                .iter()
                .filter(|f| !writes.iter().any(|w| w.0 == f.0))
            {
                j.action_finish(f.1, f.2, Some(&f.3), f.4.as_deref(), f.6)?;
            }
            if let Some(kv) = kv {
                j.kv_put_many(&kv)?;
            }
            for k in &forget {
                j.kv_delete(k)?;
            }
            Ok::<(), JournalError>(())
        })
        .await;
        match res {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "journal: cannot record the planner's state"),
            Err(e) => tracing::error!(error = %e, "journal: cannot record the planner's state"),
        }
        // closed incidents leave memory once journaled
        let closed: Vec<i64> = self
            .incidents
            .values()
            .filter(|i| i.phase == Phase::Closed)
            .map(|i| i.id)
            .collect();
        for id in closed {
            if let Some(inc) = self.incidents.remove(&id)
                && self.open.get(&inc.key()) == Some(&id)
            {
                self.open.remove(&inc.key());
            }
        }
        self.send_escalations();
    }

    fn send_escalations(&mut self) {
        for e in std::mem::take(&mut self.escalate_queue) {
            // no notifier listening is logged above; the journal has it either way
            let _ = self.shared.escalations.send(e);
        }
    }

    fn publish_status(&self) {
        let config = self.config();
        let now = now_ms();
        let m = &self.shared.metrics;
        let mut status = PlannerStatus {
            open_incidents: self.incidents.len(),
            ..PlannerStatus::default()
        };
        // every configured target has a breaker to show, closed until first used
        let mut breakers = self.breakers.clone();
        for t in self
            .shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .actuators
            .keys()
        {
            breakers.entry(t.clone()).or_default();
        }
        for (target, b) in &breakers {
            m.breaker_state
                .get_or_create(&labels(&[("target", target)]))
                .set(b.state.gauge());
            status.breakers.push(BreakerView {
                target: target.clone(),
                state: b.state.as_str(),
                failures: b.failures.len(),
                opened_at: (b.state != BreakerState::Closed).then(|| rfc3339_ms(b.opened_ms)),
                half_open_at: b.half_open_at().map(rfc3339_ms),
                backoff_seconds: b.backoff_ms as f64 / 1000.0,
            });
        }
        let mut budgets: Vec<(&'static str, String, String, Budget)> = Vec::new();
        if let Some(b) = config.global_budget() {
            budgets.push(("global", String::new(), "global".into(), b));
        }
        let mut rules: Vec<String> = config.rules.keys().cloned().collect();
        let mut targets: Vec<String> = self
            .shared
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .actuators
            .keys()
            .cloned()
            .collect();
        for k in self.buckets.keys() {
            if let Some(r) = k.strip_prefix("rule/") {
                rules.push(r.to_string());
            } else if let Some(t) = k.strip_prefix("target/") {
                targets.push(t.to_string());
            }
        }
        rules.sort();
        rules.dedup();
        targets.sort();
        targets.dedup();
        for r in rules {
            if let Some(b) = config.rule_budget(&r) {
                budgets.push(("rule", r.clone(), format!("rule/{r}"), b));
            }
        }
        for t in targets {
            if let Some(b) = config.target_budget(&t) {
                budgets.push(("target", t.clone(), format!("target/{t}"), b));
            }
        }
        for (scope, name, key, b) in budgets {
            let remaining = self
                .buckets
                .get(&key)
                .map_or(f64::from(b.max), |k| k.level(b, now));
            m.budget_remaining
                .get_or_create(&labels(&[("scope", scope), ("name", &name)]))
                .set(remaining);
            status.budgets.push(BudgetView {
                scope,
                name,
                budget: b.to_string(),
                remaining,
            });
        }
        for inc in self.incidents.values() {
            for (i, s) in inc.steps.iter().enumerate() {
                if let StepState::AwaitingApproval { expires_ms, .. } = s.state {
                    status.awaiting_approval.push(ApprovalView {
                        incident: inc.id,
                        step: i,
                        rule: inc.rule.clone(),
                        action: inc.ladder[i].action.clone(),
                        target: inc.ladder[i].target.clone().unwrap_or_default(),
                        expires_at: rfc3339_ms(expires_ms),
                    });
                }
            }
        }
        m.actions_awaiting_approval
            .set(status.awaiting_approval.len() as i64);
        m.incidents_open.set(status.open_incidents as i64);
        *self.shared.status.lock().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// An incident's row to write: (id, phase, outcome, resolved at, state JSON).
type Write = (i64, String, Option<String>, Option<i64>, String);

/// An action that ended, waiting to be journaled with its incident: (incident, action id,
/// status, message, stderr tail, outcome JSON, when).
type Finish = (
    i64,
    i64,
    JournalStatus,
    String,
    Option<String>,
    Option<String>,
    i64,
);

fn new_step() -> Step {
    Step {
        state: StepState::Waiting,
        outcome: None,
        revert: None,
        request: None,
    }
}

/// The same for every attempt of one rung in one incident.
fn idempotency_key(inc: &Incident, i: usize) -> String {
    format!(
        "{}/{}/{}/{}/{}",
        inc.group, inc.rule, inc.fingerprint, inc.started_ms, i
    )
}

fn cooldown_key(inc: &Incident, i: usize) -> String {
    format!(
        "cooldown/{}/{}/{}/{}",
        inc.group, inc.rule, inc.fingerprint, i
    )
}

fn describe(step: &RemediateStep) -> String {
    format!(
        "`{}` on `{}`",
        step.action,
        step.target.as_deref().unwrap_or("")
    )
}

/// Rungs of `inc` to revert: `revert_on_resolve`, ran ok with a reversible actuator.
fn revertible(inc: &Incident, actuators: &Actuators) -> Vec<usize> {
    (0..inc.steps.len())
        .filter(|i| {
            let step = &inc.ladder[*i];
            step.revert_on_resolve
                && inc.steps[*i]
                    .outcome
                    .as_ref()
                    .is_some_and(|o| o.status == ActionStatus::Ok)
                && step
                    .target
                    .as_ref()
                    .and_then(|t| actuators.get(t))
                    .is_some_and(|a| a.reversible(&step.action))
        })
        .collect()
}

/// Rebuilds a journaled request (what a revert is sent).
fn request_from_json(v: serde_json::Value) -> Option<ActionRequest> {
    let alert: ActionAlert = serde_json::from_value(v.get("alert")?.clone()).ok()?;
    Some(ActionRequest {
        version: 1,
        action: v.get("action")?.as_str()?.to_string(),
        target: v.get("target")?.as_str()?.to_string(),
        params: v.get("params").cloned().unwrap_or(serde_json::Value::Null),
        alert,
        dry_run: false,
        idempotency_key: v.get("idempotency_key")?.as_str()?.to_string(),
        deadline: String::new(),
        timeout: StdDuration::ZERO,
    })
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
/// Journals an action's start (`action, target, idempotency key, params, dry_run`) together
/// with the incident's state, in one transaction, before the actuator is called; returns the
/// action's row id. `kv` rides along (cooldowns, budgets, breakers changed by this step).
fn journal_start(
    shared: &Shared,
    inc: &Incident,
    id: i64,
    now: i64,
    (action, target, key, params, dry_run): (&str, &str, &str, &serde_json::Value, bool),
    kv: &[(String, String)],
) -> Result<Option<i64>, JournalError> {
    let state = serde_json::to_string(inc).unwrap_or_default();
    let params = params.to_string();
    let j = shared.journal.lock().unwrap_or_else(|e| e.into_inner());
    j.incident_save(
        &IncidentSave {
            id,
            phase: inc.phase.as_str(),
            outcome: None,
            resolved_ms: inc.resolved_ms,
            state: &state,
            updated_ms: now,
        },
        Some(&NewAction {
            incident_id: Some(id),
            action,
            target: Some(target),
            idempotency_key: key,
            params: &params,
            dry_run,
            started_ms: now,
        }),
        None,
        kv,
    )
}

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
            incident = record.incident,
            outcome = record.outcome,
            duration_s = record.duration.as_secs_f64(),
            before = %record.before,
            after = %record.after,
            "{}",
            record.message
        ),
        _ => tracing::warn!(
            rule = %record.rule,
            action = %record.action,
            target = %record.target,
            key = %record.idempotency_key,
            incident = record.incident,
            outcome = record.outcome,
            duration_s = record.duration.as_secs_f64(),
            before = %record.before,
            after = %record.after,
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

    #[test]
    fn incident_state_round_trips() {
        let mut inc = Incident {
            id: 7,
            group: "g".into(),
            rule: "R".into(),
            fingerprint: format!("{:016x}", 42u64),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            annotations: BTreeMap::new(),
            value: None,
            started_ms: 1,
            phase: Phase::Active,
            outcome: None,
            resolved_ms: None,
            firing: true,
            ladder: vec![RemediateStep::default()],
            steps: vec![new_step()],
            hurry_ms: None,
            escalated: false,
            revert_due_ms: None,
            timeline: Vec::new(),
            unconfirmed_since_ms: None,
            silenced: None,
        };
        inc.steps[0].state = StepState::Verifying {
            since_ms: 2,
            deadline_ms: 3,
        };
        for n in 0..(MAX_TIMELINE + 10) {
            inc.event(n as i64, "x", None, "y");
        }
        assert_eq!(inc.timeline.len(), MAX_TIMELINE);
        assert_eq!(inc.timeline[0].at_ms, 0, "the beginning is kept");
        let json = serde_json::to_string(&inc).unwrap();
        let back: Incident = serde_json::from_str(&json).unwrap();
        assert_eq!(back.steps, inc.steps);
        assert_eq!(back.key(), ("g".into(), "R".into(), 42));
    }
}
