//! `remedy:` in medic.yaml: the global switches and limits, and the per-rule and per-target
//! overrides the planner applies before every action (mode, budgets, breakers, flapping).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::common::Duration;
use crate::rules::StepMode;

fn default_max_concurrent_actions() -> usize {
    4
}
fn default_action_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_actions_per_minute() -> u32 {
    30
}
fn default_revert_after() -> Duration {
    Duration::from_secs(300)
}
fn default_verify_within() -> Duration {
    Duration::from_secs(300)
}
fn default_approval_timeout() -> Duration {
    Duration::from_secs(900)
}
fn default_restore_grace() -> Duration {
    Duration::from_secs(600)
}
fn default_target_budget() -> Option<Budget> {
    Some(Budget {
        max: 6,
        per: Duration::from_secs(3600),
    })
}
fn default_rule_budget() -> Option<Budget> {
    Some(Budget {
        max: 10,
        per: Duration::from_secs(3600),
    })
}
fn default_one() -> usize {
    1
}

/// Global limits and switches for remediation.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemedyConfig {
    /// Log what every action would do and run none of them (actuators that declare
    /// `supports_dry_run` are called with `"dry_run": true` instead). Overrides every mode.
    #[serde(default)]
    pub dry_run: bool,
    /// The mode of steps that set none and whose rule sets none: `auto`, `approve`, `dry_run`.
    #[serde(default = "default_mode")]
    pub mode: StepMode,
    /// At most this many actions run at once; the others wait (an action that cannot start
    /// within its own timeout is dropped with outcome `busy`).
    #[serde(default = "default_max_concurrent_actions")]
    pub max_concurrent_actions: usize,
    /// Timeout of an action when neither the step nor its actuator sets one.
    #[serde(default = "default_action_timeout")]
    pub default_timeout: Duration,
    /// The global budget, as `N per 1m`, when `budgets.global` is not set; 0 disables it.
    #[serde(default = "default_max_actions_per_minute")]
    pub max_actions_per_minute: u32,
    /// Token buckets checked before every action.
    #[serde(default)]
    pub budgets: BudgetsConfig,
    /// Circuit breaker of every target (a target's own `breaker` overrides it).
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// When an alert instance counts as flapping (its ladder is then held).
    #[serde(default)]
    pub flapping: FlappingConfig,
    /// How long an action that succeeded waits for its alert to resolve when its step sets
    /// no `verify_within`; not resolved by then, it is `unverified`.
    #[serde(default = "default_verify_within")]
    pub verify_within: Duration,
    /// How long a resolved incident waits before reverting `revert_on_resolve` steps (a
    /// step's `revert_after` overrides it), so a flapping alert does not see-saw.
    #[serde(default = "default_revert_after")]
    pub revert_after: Duration,
    /// How long a step in `approve` mode waits for a person before the incident escalates.
    #[serde(default = "default_approval_timeout")]
    pub approval_timeout: Duration,
    /// After a restart, how long an incident left open waits for its alert to fire (or be
    /// pending) again before it is closed as resolved while medic was away.
    #[serde(default = "default_restore_grace")]
    pub restore_grace: Duration,
    /// Per alerting rule (by name): its mode and budget.
    #[serde(default)]
    pub rules: BTreeMap<String, RulePolicy>,
    /// Per target (actuator name): its budget, concurrency and breaker.
    #[serde(default)]
    pub targets: BTreeMap<String, TargetPolicy>,
}

fn default_mode() -> StepMode {
    StepMode::Auto
}

impl Default for RemedyConfig {
    fn default() -> Self {
        RemedyConfig {
            dry_run: false,
            mode: StepMode::Auto,
            max_concurrent_actions: default_max_concurrent_actions(),
            default_timeout: default_action_timeout(),
            max_actions_per_minute: default_max_actions_per_minute(),
            budgets: BudgetsConfig::default(),
            breaker: BreakerConfig::default(),
            flapping: FlappingConfig::default(),
            verify_within: default_verify_within(),
            revert_after: default_revert_after(),
            approval_timeout: default_approval_timeout(),
            restore_grace: default_restore_grace(),
            rules: BTreeMap::new(),
            targets: BTreeMap::new(),
        }
    }
}

impl RemedyConfig {
    /// The verification window of steps that set none.
    pub fn verify_within_default(&self) -> Duration {
        self.verify_within
    }

    /// The mode a step runs in: global dry-run over everything, then the step's, the
    /// rule's, the global mode.
    pub fn mode_of(&self, rule: &str, step: &crate::rules::RemediateStep) -> StepMode {
        if self.dry_run || step.dry_run {
            return StepMode::DryRun;
        }
        step.mode
            .or_else(|| self.rules.get(rule).and_then(|r| r.mode))
            .unwrap_or(self.mode)
    }

    /// The global bucket: `budgets.global`, else `max_actions_per_minute per 1m`.
    pub fn global_budget(&self) -> Option<Budget> {
        match self.budgets.global {
            Some(b) => Some(b),
            None if self.max_actions_per_minute == 0 => None,
            None => Some(Budget {
                max: self.max_actions_per_minute,
                per: Duration::from_secs(60),
            }),
        }
    }

    pub fn rule_budget(&self, rule: &str) -> Option<Budget> {
        match self.rules.get(rule).and_then(|r| r.budget) {
            Some(b) => Some(b),
            None => self.budgets.per_rule,
        }
    }

    pub fn target_budget(&self, target: &str) -> Option<Budget> {
        match self.targets.get(target).and_then(|t| t.budget) {
            Some(b) => Some(b),
            None => self.budgets.per_target,
        }
    }

    pub fn target_concurrency(&self, target: &str) -> usize {
        self.targets
            .get(target)
            .map(|t| t.max_concurrent)
            .unwrap_or(1)
            .max(1)
    }

    pub fn breaker_of(&self, target: &str) -> BreakerConfig {
        self.targets
            .get(target)
            .and_then(|t| t.breaker)
            .unwrap_or(self.breaker)
    }
}

/// Token buckets.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetsConfig {
    /// One bucket over all actions, e.g. `30 per 1m` (absent: `max_actions_per_minute`).
    #[serde(default)]
    pub global: Option<Budget>,
    /// One bucket per alerting rule (default `10 per 1h`); `remedy.rules.R.budget` overrides.
    #[serde(default = "default_rule_budget")]
    pub per_rule: Option<Budget>,
    /// One bucket per target (default `6 per 1h`); `remedy.targets.T.budget` overrides.
    #[serde(default = "default_target_budget")]
    pub per_target: Option<Budget>,
}

impl Default for BudgetsConfig {
    fn default() -> Self {
        BudgetsConfig {
            global: None,
            per_rule: default_rule_budget(),
            per_target: default_target_budget(),
        }
    }
}

/// `N per DURATION`: a bucket of N tokens that refills N tokens per DURATION, evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub max: u32,
    pub per: Duration,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} per {}", self.max, self.per)
    }
}

impl Budget {
    /// Parses `3 per 1h`.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let bad = || format!("invalid budget {s:?}: expected `N per DURATION`, e.g. `3 per 1h`");
        let mut parts = s.split_whitespace();
        let (Some(n), Some("per"), Some(d), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let max: u32 = n.parse().map_err(|_| bad())?;
        let per = Duration::parse(d).map_err(|_| bad())?;
        if per.std().is_zero() || max == 0 {
            return Err(format!(
                "invalid budget {s:?}: N and DURATION must be greater than 0"
            ));
        }
        Ok(Budget { max, per })
    }
}

impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Budget::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_breaker_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_breaker_max_backoff() -> Duration {
    Duration::from_secs(4 * 3600)
}

/// A target's circuit breaker.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// Open after this many failed, timed out, interrupted or unverified actions ...
    #[serde(default = "default_breaker_failures")]
    pub failures: u32,
    /// ... within this window.
    #[serde(default = "default_breaker_window")]
    pub window: Duration,
    /// Open this long before one trial action is let through (half-open); doubles each time
    /// the breaker re-opens.
    #[serde(default = "default_breaker_backoff")]
    pub backoff: Duration,
    /// The backoff never exceeds this.
    #[serde(default = "default_breaker_max_backoff")]
    pub max_backoff: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: default_breaker_failures(),
            window: default_breaker_window(),
            backoff: default_breaker_backoff(),
            max_backoff: default_breaker_max_backoff(),
        }
    }
}

fn default_flap_episodes() -> u32 {
    4
}
fn default_flap_within() -> Duration {
    Duration::from_secs(3600)
}

/// Monit's "X times within Y": an alert instance that starts firing this many times within
/// the window is flapping.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlappingConfig {
    /// Firing episodes (this one included) that make an instance flapping; 0 disables it.
    #[serde(default = "default_flap_episodes")]
    pub episodes: u32,
    /// The window the episodes are counted in.
    #[serde(default = "default_flap_within")]
    pub within: Duration,
}

impl Default for FlappingConfig {
    fn default() -> Self {
        FlappingConfig {
            episodes: default_flap_episodes(),
            within: default_flap_within(),
        }
    }
}

/// Overrides for one alerting rule.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RulePolicy {
    /// The mode of this rule's steps that set none.
    #[serde(default)]
    pub mode: Option<StepMode>,
    /// This rule's bucket instead of `budgets.per_rule`.
    #[serde(default)]
    pub budget: Option<Budget>,
}

/// Overrides for one target.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TargetPolicy {
    /// This target's bucket instead of `budgets.per_target`.
    #[serde(default)]
    pub budget: Option<Budget>,
    /// Actions that may run on it at once (default 1: one at a time; the next waits).
    #[serde(default = "default_one")]
    pub max_concurrent: usize,
    /// Its breaker instead of `remedy.breaker`.
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_budgets_and_defaults() {
        assert_eq!(
            Budget::parse("3 per 1h").unwrap(),
            Budget {
                max: 3,
                per: Duration::from_secs(3600)
            }
        );
        assert!(Budget::parse("3/1h").is_err());
        assert!(Budget::parse("0 per 1h").is_err());
        let c: RemedyConfig = serde_saphyr::from_str(
            "budgets: {global: 5 per 10m}\nrules: {A: {mode: approve, budget: 1 per 1d}}\ntargets: {t: {max_concurrent: 2}}",
        )
        .unwrap();
        assert_eq!(c.global_budget().unwrap().max, 5);
        assert_eq!(c.rule_budget("A").unwrap().max, 1);
        assert_eq!(c.rule_budget("B").unwrap().max, 10);
        assert_eq!(c.target_concurrency("t"), 2);
        assert_eq!(c.target_concurrency("u"), 1);
        let step = crate::rules::RemediateStep::default();
        assert_eq!(c.mode_of("A", &step), StepMode::Approve);
        assert_eq!(c.mode_of("B", &step), StepMode::Auto);
        assert!(serde_saphyr::from_str::<RemedyConfig>("budgets: {global: lots}").is_err());
        assert!(serde_saphyr::from_str::<RemedyConfig>("bogus: 1").is_err());
        assert_eq!(RemedyConfig::default().global_budget().unwrap().max, 30);
    }
}
