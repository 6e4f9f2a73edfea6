//! Remediation: the planner decides whether and when a `remediate:` step runs (cooldown,
//! rate limits, timeouts, dry-run); actuators carry it out.
//!
//! Actuators never read the store: the planner hands them an [`ActionRequest`] carrying
//! everything they need (the exec plugin protocol v1 object, see `exec.rs`).

pub mod exec;
pub mod http;
pub mod planner;

pub use planner::{ActionRecord, Planner, PlannerHandle};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration as StdDuration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::Duration;
use crate::rules::RemediateStep;

/// A configured actuator instance, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActuatorConfig {
    /// Runs an executable plugin (exec plugin protocol v1: JSON on stdin, JSON on stdout).
    Exec(exec::ExecConfig),
    /// Sends one HTTP request.
    Http(http::HttpConfig),
}

impl ActuatorConfig {
    /// The `type` name, as written in medic.yaml.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorConfig::Exec(_) => "exec",
            ActuatorConfig::Http(_) => "http",
        }
    }

    /// Whether a `remediate:` step with this `action` may name this actuator as `target`.
    /// An exec plugin receives the action name in its input, so it can implement any action
    /// (`restart`, `rollback`, ...); an http actuator only performs `http`.
    pub fn accepts(&self, action: &str) -> bool {
        match self {
            ActuatorConfig::Exec(_) => true,
            ActuatorConfig::Http(_) => action == "http",
        }
    }
}

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

/// The result of one action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionOutcome {
    pub status: ActionStatus,
    /// Human-readable summary (the plugin's `message`, or what went wrong).
    pub message: String,
    /// Structured detail from the actuator (the plugin's `data`), null when none.
    pub data: serde_json::Value,
    /// The last bytes of the plugin's stderr (exec only; empty otherwise).
    pub stderr_tail: String,
}

impl ActionOutcome {
    pub fn new(status: ActionStatus, message: impl Into<String>) -> Self {
        ActionOutcome {
            status,
            message: message.into(),
            data: serde_json::Value::Null,
            stderr_tail: String::new(),
        }
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
    #[error("actuator `{name}`: cannot build the HTTP client: {source}")]
    HttpClient {
        name: String,
        source: reqwest::Error,
    },
}

/// Builds the actuator registry from `actuators:` in medic.yaml.
pub fn build(configs: &BTreeMap<String, ActuatorConfig>) -> Result<Actuators, RemedyError> {
    let mut out: Actuators = BTreeMap::new();
    for (name, cfg) in configs {
        let a: Arc<dyn Actuator> = match cfg {
            ActuatorConfig::Exec(c) => Arc::new(exec::ExecActuator::build(name, c)?),
            ActuatorConfig::Http(c) => Arc::new(http::HttpActuator::build(name, c)?),
        };
        out.insert(name.clone(), a);
    }
    Ok(out)
}

/// A `remediate:` step that names no usable actuator.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum StepError {
    #[error("remediate step `{action}` has no `target`; name an actuator from `actuators:`")]
    NoTarget { action: String },
    #[error(
        "remediate step `{action}`: target `{target}` is not an actuator in `actuators:` (configured: {known})"
    )]
    UnknownTarget {
        action: String,
        target: String,
        known: String,
    },
    #[error(
        "remediate step `{action}`: target `{target}` is an `{kind}` actuator, which cannot perform `{action}`"
    )]
    WrongKind {
        action: String,
        target: String,
        kind: String,
    },
}

/// Checks that a step's `target` names a configured actuator able to perform its `action`.
/// `medic check` and config loading call this for every step of every rule.
pub fn validate_step(
    actuators: &BTreeMap<String, ActuatorConfig>,
    step: &RemediateStep,
) -> Result<(), StepError> {
    let Some(target) = &step.target else {
        return Err(StepError::NoTarget {
            action: step.action.clone(),
        });
    };
    let Some(cfg) = actuators.get(target) else {
        let known: Vec<&str> = actuators.keys().map(String::as_str).collect();
        return Err(StepError::UnknownTarget {
            action: step.action.clone(),
            target: target.clone(),
            known: if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            },
        });
    };
    if !cfg.accepts(&step.action) {
        return Err(StepError::WrongKind {
            action: step.action.clone(),
            target: target.clone(),
            kind: cfg.kind().to_string(),
        });
    }
    Ok(())
}

/// [`validate_step`] over a whole ladder.
pub fn validate_ladder(
    actuators: &BTreeMap<String, ActuatorConfig>,
    steps: &[RemediateStep],
) -> Result<(), StepError> {
    steps.iter().try_for_each(|s| validate_step(actuators, s))
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(i64::MAX as u128) as i64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, UTC (`2026-01-02T03:04:05.678Z`).
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + StdDuration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(action: &str, target: Option<&str>) -> RemediateStep {
        RemediateStep {
            action: action.into(),
            target: target.map(Into::into),
            params: BTreeMap::new(),
            cooldown: None,
            when_unresolved_after: None,
            revert_on_resolve: false,
            timeout: None,
            verify_within: None,
            dry_run: false,
        }
    }

    fn configs() -> BTreeMap<String, ActuatorConfig> {
        let yaml = r#"
restart: {type: exec, command: ["/bin/true"], timeout: 5s}
hook: {type: http, url: "http://127.0.0.1:1/x"}
"#;
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn validates_targets() {
        let c = configs();
        assert!(validate_step(&c, &step("exec", Some("restart"))).is_ok());
        assert!(validate_step(&c, &step("rollback", Some("restart"))).is_ok());
        assert!(validate_step(&c, &step("http", Some("hook"))).is_ok());
        assert_eq!(
            validate_step(&c, &step("exec", None)),
            Err(StepError::NoTarget {
                action: "exec".into()
            })
        );
        let e = validate_step(&c, &step("exec", Some("nope"))).unwrap_err();
        assert!(e.to_string().contains("configured: hook, restart"), "{e}");
        let e = validate_step(&c, &step("exec", Some("hook"))).unwrap_err();
        assert!(matches!(e, StepError::WrongKind { .. }), "{e}");
    }

    #[test]
    fn rejects_unknown_fields_and_types() {
        let bad: Result<BTreeMap<String, ActuatorConfig>, _> =
            serde_saphyr::from_str("a: {type: exec, command: [x], bogus: 1}");
        assert!(bad.is_err());
        let bad: Result<BTreeMap<String, ActuatorConfig>, _> =
            serde_saphyr::from_str("a: {type: teleport}");
        assert!(bad.is_err());
        let r: RemedyConfig = serde_saphyr::from_str("dry_run: true").unwrap();
        assert!(r.dry_run);
        assert_eq!(r.max_concurrent_actions, 4);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
    }
}
