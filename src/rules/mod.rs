//! The rule engine: Prometheus rule files (plus medic's `remediate:`), evaluated with
//! `promql` over medic's store; the alert state machine (`alerting.rs`), templates and
//! `medic test`. It emits alert transitions on a channel; it never performs actions.

pub mod alerting;
pub mod check;
pub mod file;
pub mod group;
mod jsondiff;
pub mod recording;
pub mod template;
pub mod unittest;

pub use alerting::SavedAlert;
pub use file::{RuleFileError, RuleFileErrors, check_files, load_files, retention_needed_ms};
pub use group::{GroupSnapshot, RestoreOptions, Rule, RuleGroup, RuleHealth, RuleSnapshot};

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::common::Duration;
use crate::store::Labels;

/// Settings shared by every group of a load.
#[derive(Debug, Clone)]
pub struct GroupOptions {
    /// Interval of groups that set none (Prometheus' `evaluation_interval`, default 1m).
    pub default_interval: Duration,
    /// `$externalLabels` in templates.
    pub external_labels: Labels,
    /// `$externalURL` in templates.
    pub external_url: String,
    /// Step of subqueries written without one (`x[10m:]`): Prometheus' global
    /// `evaluation_interval`.
    pub subquery_step: Duration,
    /// Minimum time between two announcements of the same alert (Prometheus'
    /// `--rules.alert.resend-delay`, default 1m).
    pub resend_delay: Duration,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            default_interval: Duration::from_secs(60),
            external_labels: Labels::default(),
            external_url: String::new(),
            subquery_step: Duration::from_secs(60),
            resend_delay: Duration::from_secs(60),
        }
    }
}

/// Where an alert instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

/// One alert instance as the engine knows it at a transition.
#[derive(Debug, Clone, Serialize)]
pub struct AlertInstance {
    /// The alerting rule's name (`alertname`).
    pub rule: String,
    /// The rule group's name.
    pub group: String,
    /// Final labels: the series' labels (without `__name__`), the rule's labels templated,
    /// and `alertname`.
    pub labels: Labels,
    /// Annotations, templated.
    pub annotations: BTreeMap<String, String>,
    /// The sample value that made the alert active, as of the last evaluation.
    pub value: f64,
    pub state: AlertState,
    /// When the expression first returned this series (Prometheus' `activeAt`).
    pub active_at_ms: i64,
    /// When the alert went from pending to firing.
    pub fired_at_ms: Option<i64>,
    /// When the alert resolved.
    pub resolved_at_ms: Option<i64>,
}

impl AlertInstance {
    /// Identity of the instance across evaluations (hash of its labels).
    pub fn fingerprint(&self) -> u64 {
        self.labels.fingerprint()
    }
}

/// What happened to an alert instance at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// Inactive → pending.
    Pending,
    /// Pending → firing (or straight to firing when `for` is 0).
    Firing,
    /// Still firing at a later evaluation (re-announcement, as Prometheus re-sends).
    StillFiring,
    /// Firing → resolved (also pending → inactive is reported as `Resolved`
    /// with `fired_at_ms: None`).
    Resolved,
}

/// An alert transition, as sent to the remedy planner and the notifiers.
#[derive(Debug, Clone)]
pub struct AlertTransition {
    pub kind: TransitionKind,
    pub at_ms: i64,
    pub alert: AlertInstance,
    /// The rule's `remediate:` ladder (empty when it has none).
    pub remediate: Arc<[RemediateStep]>,
}

/// One rung of a rule's `remediate:` ladder, as written in the rule file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemediateStep {
    /// Actuator kind: `exec`, `http`, `clear_cache`, `set_capacity`, `set_batch_size`,
    /// `scale_pool`, `set_value`, `restart`, `rollback`.
    pub action: String,
    /// The actuator instance (a key of `actuators:` in medic.yaml).
    #[serde(default)]
    pub target: Option<String>,
    /// Action parameters, passed to the actuator as JSON (string values are templated).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Minimum time between two runs of this step for the same alert instance.
    #[serde(default)]
    pub cooldown: Option<Duration>,
    /// Run this step only when the alert is still firing this long after it started firing
    /// (the next rung of the ladder).
    #[serde(default)]
    pub when_unresolved_after: Option<Duration>,
    /// Undo the action when the alert resolves (actuators that support it).
    #[serde(default)]
    pub revert_on_resolve: bool,
    /// How long the action may take; the actuator's own timeout when absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// The alert must clear within this long after the action, else the ladder escalates.
    #[serde(default)]
    pub verify_within: Option<Duration>,
    /// Log and journal what would be done, do nothing (the same as `mode: dry_run`).
    #[serde(default)]
    pub dry_run: bool,
    /// `auto` (run it), `approve` (propose it and wait for a person) or `dry_run`; absent:
    /// the rule's mode from `remedy.rules`, else `remedy.mode`.
    #[serde(default)]
    pub mode: Option<StepMode>,
    /// A PromQL expression that must hold (return a non-empty result) within
    /// `verify_within`, besides the alert resolving, for the action to count as verified.
    #[serde(default)]
    pub verify: Option<String>,
    /// With `revert_on_resolve`: revert once the alert has been resolved this long
    /// (`remedy.revert_after` when absent).
    #[serde(default)]
    pub revert_after: Option<Duration>,
}

/// How a remediation step is carried out.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepMode {
    /// Run it when due.
    Auto,
    /// Propose it; run it only once a person approves it (API or CLI).
    Approve,
    /// Log and journal what it would do; run nothing.
    DryRun,
}

impl StepMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StepMode::Auto => "auto",
            StepMode::Approve => "approve",
            StepMode::DryRun => "dry_run",
        }
    }
}
