//! The built-in actuator kinds, one file each, and the `actuators:` section of medic.yaml
//! that composes them.

pub mod exec;
pub mod http;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::actuator::{Actuator, Actuators, RemedyError};
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
            ..RemediateStep::default()
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
    }
}
