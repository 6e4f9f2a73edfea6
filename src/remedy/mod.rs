//! Remediation: the planner decides whether and when a `remediate:` step runs (cooldown,
//! rate limits, breaker, verification, escalation, dry-run); actuators carry it out.

use serde::Deserialize;

/// A configured actuator instance, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ActuatorConfig {}

/// Global limits and switches for remediation.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RemedyConfig {}
