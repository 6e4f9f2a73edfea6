//! The contract between the planner and every actuator: what an action gets
//! ([`ActionRequest`], which serialized is the exec plugin protocol v1 input), what it
//! reports ([`ActionOutcome`]), and the [`Actuator`] trait.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The alert an action responds to, as the actuator sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActionAlert {
    /// The alerting rule's name (`alertname`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// The sample value that made the alert fire (null when not a number).
    pub value: f64,
    /// When the alert started firing, RFC 3339.
    pub starts_at: String,
}

/// Everything an actuator needs to act. Serialized, it is the exec plugin protocol v1
/// input object.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRequest {
    /// Protocol version (1).
    pub version: u32,
    /// The step's `action`.
    pub action: String,
    /// The step's `target` (the actuator instance's name).
    pub target: String,
    /// The step's `params`, a JSON object.
    pub params: serde_json::Value,
    pub alert: ActionAlert,
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// The same for every attempt of one rung in one firing episode of one alert instance,
    /// so an actuator can tell a repeat from a new request.
    pub idempotency_key: String,
    /// When medic gives up on the action (RFC 3339).
    pub deadline: String,
    /// How long the action may take (the deadline, as a duration from the start).
    #[serde(skip)]
    pub timeout: StdDuration,
}

/// What an actuator reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// The action was carried out.
    Ok,
    /// The action failed.
    Failed,
    /// Nothing needed doing.
    Noop,
    /// The action did not finish in time and was stopped.
    Timeout,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Ok => "ok",
            ActionStatus::Failed => "failed",
            ActionStatus::Noop => "noop",
            ActionStatus::Timeout => "timeout",
        }
    }
}

/// The result of one action (or of its revert): what the actuator observed and changed.
/// It goes as it is into the journal, the log, the metrics and the alert's notifications,
/// and a revert gets it back to know what to restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionOutcome {
    pub status: ActionStatus,
    /// Human-readable summary (the plugin's `message`, or what went wrong).
    pub message: String,
    /// The state the action found, e.g. `{"batch_size": 32}`, `{"maxmemory": 1073741824}`,
    /// `{"release": "v41"}`; null when the actuator cannot observe it. A dry run fills it too.
    #[serde(default)]
    pub before: serde_json::Value,
    /// The state it left (a dry run: the state it would have left); null when unknown.
    #[serde(default)]
    pub after: serde_json::Value,
    /// Other structured detail: keys removed, bytes freed, versions; the plugin's `data`.
    #[serde(default)]
    pub data: serde_json::Value,
    /// The last bytes of the plugin's stderr (exec only; empty otherwise).
    #[serde(default)]
    pub stderr_tail: String,
}

impl ActionOutcome {
    pub fn new(status: ActionStatus, message: impl Into<String>) -> Self {
        ActionOutcome {
            status,
            message: message.into(),
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
            data: serde_json::Value::Null,
            stderr_tail: String::new(),
        }
    }

    /// Records what was found and what was left.
    pub fn changed(mut self, before: serde_json::Value, after: serde_json::Value) -> Self {
        self.before = before;
        self.after = after;
        self
    }
}

/// Something that carries out an action. Implementations must finish (or give up) within
/// `req.timeout` and must not panic on any input.
#[async_trait]
pub trait Actuator: Send + Sync {
    /// The `type` name (`exec`, `http`, ...).
    fn kind(&self) -> &'static str;
    /// The actuator's own timeout, used when the step sets none.
    fn timeout(&self) -> Option<StdDuration>;
    /// Whether it honours `dry_run: true` (then the planner calls it in dry-run mode instead
    /// of only logging).
    fn supports_dry_run(&self) -> bool {
        false
    }
    async fn act(&self, req: &ActionRequest) -> ActionOutcome;
    /// Whether `action` done by this actuator can be undone with [`Actuator::revert`]
    /// (batch size, pool size, cache capacity: a value medic set and can set back).
    fn reversible(&self, _action: &str) -> bool {
        false
    }
    /// Undoes `done`, the outcome of an earlier `act` for the same step: restores
    /// `done.before`, but only while the current state is still `done.after` (what medic
    /// set); otherwise it changes nothing and says why (status `noop`). `req` is the original
    /// request with a fresh deadline. Bounded by `req.timeout` like `act`.
    async fn revert(&self, _req: &ActionRequest, _done: &ActionOutcome) -> ActionOutcome {
        ActionOutcome::new(
            ActionStatus::Noop,
            format!("a `{}` actuator cannot revert", self.kind()),
        )
    }
}

/// Actuator instances by name.
pub type Actuators = BTreeMap<String, Arc<dyn Actuator>>;

/// A bad actuator configuration.
#[derive(Debug, thiserror::Error)]
pub enum RemedyError {
    #[error("actuator `{name}`: `command` is empty; give the program and its arguments")]
    EmptyCommand { name: String },
    #[error("actuator `{name}`: invalid URL {url:?}: {reason}")]
    InvalidUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error("actuator `{name}`: invalid HTTP method {method:?}")]
    InvalidMethod { name: String, method: String },
    #[error("actuator `{name}`: invalid header {header:?}: {reason}")]
    InvalidHeader {
        name: String,
        header: String,
        reason: String,
    },
    #[error("actuator `{name}`: invalid `body` template: {reason}")]
    InvalidBody { name: String, reason: String },
    #[error("actuator `{name}`: {reason}")]
    Secret { name: String, reason: String },
    /// A bound, limit or setting that cannot work (min above max, a URL with nowhere to
    /// put the value, ...).
    #[error("actuator `{name}`: {reason}")]
    Config { name: String, reason: String },
    #[error("actuator `{name}`: cannot build the HTTP client: {source}")]
    HttpClient {
        name: String,
        source: reqwest::Error,
    },
}
