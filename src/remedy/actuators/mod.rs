//! The built-in actuator kinds, one file each, and the `actuators:` section of medic.yaml
//! that composes them.

pub mod adjust;
pub mod bounded;
pub mod exec;
pub mod http;
pub mod knob;
pub mod memcached;
mod reaper;
pub mod redis;
pub mod rollback;
pub mod systemd;

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
    /// Clears or resizes a Redis cache (`clear_cache`, `set_capacity`).
    Redis(redis::RedisActuatorConfig),
    /// Clears or resizes a memcached (`clear_cache`, `set_capacity`).
    Memcached(memcached::MemcachedActuatorConfig),
    /// A numeric setting behind an HTTP admin API (`set_batch_size`, `scale_pool`, `set_value`).
    Knob(knob::KnobConfig),
    /// Restarts a unit, scales a pool of template instances, through `systemctl`.
    Systemd(systemd::SystemdConfig),
    /// Re-points a `current` symlink to the previous release and restarts.
    Rollback(rollback::RollbackConfig),
}

impl ActuatorConfig {
    /// The `type` name, as written in medic.yaml.
    pub fn kind(&self) -> &'static str {
        match self {
            ActuatorConfig::Exec(_) => "exec",
            ActuatorConfig::Http(_) => "http",
            ActuatorConfig::Redis(_) => "redis",
            ActuatorConfig::Memcached(_) => "memcached",
            ActuatorConfig::Knob(_) => "knob",
            ActuatorConfig::Systemd(_) => "systemd",
            ActuatorConfig::Rollback(_) => "rollback",
        }
    }

    /// Whether a `remediate:` step with this `action` may name this actuator as `target`.
    /// An exec plugin receives the action name in its input, so it can implement any action
    /// (`restart`, `rollback`, ...); an http actuator only performs `http`.
    pub fn accepts(&self, action: &str) -> bool {
        match self {
            ActuatorConfig::Exec(_) => true,
            ActuatorConfig::Http(_) => action == "http",
            ActuatorConfig::Redis(_) | ActuatorConfig::Memcached(_) => {
                matches!(action, "clear_cache" | "set_capacity")
            }
            ActuatorConfig::Knob(_) => knob::ACTIONS.contains(&action),
            ActuatorConfig::Systemd(_) => matches!(action, "restart" | "scale_pool"),
            ActuatorConfig::Rollback(_) => action == "rollback",
        }
    }

    /// Checks a step's `params` for this actuator at config load: bounds within the
    /// actuator's, one way to compute a value, names and paths that can work. Numbers given
    /// as templates are checked when the step runs.
    pub fn check_params(
        &self,
        name: &str,
        action: &str,
        params: &serde_json::Value,
    ) -> Result<(), String> {
        match self {
            ActuatorConfig::Exec(_) | ActuatorConfig::Http(_) => Ok(()),
            ActuatorConfig::Redis(c) => c.check_params(action, params),
            ActuatorConfig::Memcached(c) => c.check_params(action, params),
            ActuatorConfig::Knob(c) => c.check_params(params),
            ActuatorConfig::Systemd(c) => systemd::SystemdActuator::build(name, c)
                .map_err(|e| e.to_string())?
                .check_params(action, params),
            ActuatorConfig::Rollback(_) => match params.as_object() {
                Some(o) if !o.is_empty() => Err("rollback takes no params".into()),
                _ => Ok(()),
            },
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
            ActuatorConfig::Redis(c) => Arc::new(redis::RedisActuator::build(name, c)?),
            ActuatorConfig::Memcached(c) => Arc::new(memcached::MemcachedActuator::build(name, c)?),
            ActuatorConfig::Knob(c) => Arc::new(knob::KnobActuator::build(name, c)?),
            ActuatorConfig::Systemd(c) => Arc::new(systemd::SystemdActuator::build(name, c)?),
            // built below, once the actuators they restart through exist
            ActuatorConfig::Rollback(_) => continue,
        };
        out.insert(name.clone(), a);
    }
    for (name, cfg) in configs {
        if let ActuatorConfig::Rollback(c) = cfg {
            let a = rollback::RollbackActuator::build(name, c, &out)?;
            out.insert(name.clone(), Arc::new(a));
        }
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
    #[error("remediate step `{action}` on `{target}`: params: {reason}")]
    BadParams {
        action: String,
        target: String,
        reason: String,
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
    let params = serde_json::Value::Object(step.params.clone().into_iter().collect());
    cfg.check_params(target, &step.action, &params)
        .map_err(|reason| StepError::BadParams {
            action: step.action.clone(),
            target: target.clone(),
            reason,
        })?;
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
    fn checks_cache_and_knob_steps_params() {
        let c: BTreeMap<String, ActuatorConfig> = serde_saphyr::from_str(
            r#"
cache: {type: redis, capacity: {min: 1048576, max: 8388608}}
mc: {type: memcached}
batch: {type: knob, read: {url: "http://127.0.0.1:1/c", pointer: /b}, write: {body: {b: $value}}, min: 1, max: 64}
"#,
        )
        .unwrap();
        let with = |action: &str, target: &str, params: serde_json::Value| {
            let mut s = step(action, Some(target));
            s.params = params
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            validate_step(&c, &s)
        };
        use serde_json::json;
        assert!(with("clear_cache", "cache", json!({"pattern": "c:*"})).is_ok());
        assert!(with("set_capacity", "cache", json!({"factor": 2})).is_ok());
        assert!(with("set_batch_size", "batch", json!({"factor": 0.5, "min": 4})).is_ok());
        assert!(with("scale_pool", "batch", json!({"step": 1})).is_ok());
        assert!(matches!(
            with("restart", "cache", json!({})),
            Err(StepError::WrongKind { .. })
        ));
        for (action, target, params, want) in [
            (
                "clear_cache",
                "cache",
                json!({"pattern": "{{ $labels.x }}*"}),
                "not a template",
            ),
            ("clear_cache", "cache", json!({"all": true}), "allow_flush"),
            ("set_capacity", "mc", json!({"factor": 2}), "no `capacity"),
            (
                "set_batch_size",
                "batch",
                json!({"factor": 0.5, "max": 100}),
                "outside",
            ),
            ("scale_pool", "batch", json!({"delta": 1}), "unknown param"),
        ] {
            let e = with(action, target, params.clone()).unwrap_err();
            assert!(matches!(e, StepError::BadParams { .. }), "{e}");
            assert!(e.to_string().contains(want), "{params}: {e}");
        }
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
