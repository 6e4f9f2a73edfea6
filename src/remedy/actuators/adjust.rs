//! The one mechanism behind every numeric remediation (a batch size, a pool size, a cache's
//! capacity): from the current value and a step's `factor`, `step` or `value`, the new
//! value, clamped to the actuator's bounds (narrowed by the step's `min`/`max`) and never
//! moved against the direction asked for.

use serde::Deserialize;

use super::bounded::Failure;
use crate::remedy::actuator::{ActionOutcome, ActionStatus};

/// The bounds an actuator may move its value within (`min` ≤ `max`, both finite).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    /// The least value medic will set.
    pub min: f64,
    /// The greatest value medic will set.
    pub max: f64,
}

impl Bounds {
    /// Checks the bounds themselves (at config load).
    pub fn validate(&self) -> Result<(), String> {
        if !self.min.is_finite() || !self.max.is_finite() {
            return Err(format!(
                "bounds must be finite numbers, got min {} max {}",
                self.min, self.max
            ));
        }
        if self.min > self.max {
            return Err(format!(
                "min ({}) is greater than max ({})",
                self.min, self.max
            ));
        }
        if self.min < 0.0 {
            return Err(format!("min ({}) must not be negative", self.min));
        }
        Ok(())
    }
}

/// A step's numeric params: exactly one of `factor`, `step`, `value`; optional `min`/`max`
/// that narrow (never widen) the actuator's bounds. A number may arrive as a string (a
/// rendered template such as `"{{ $value }}"`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adjust {
    pub how: How,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// How the new value is computed from the current one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum How {
    /// current × factor (factor > 0).
    Factor(f64),
    /// current + step (may be negative).
    Step(f64),
    /// exactly this value.
    Value(f64),
}

/// The new value, or why there is none to set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Computed {
    /// Set this (differs from the current value).
    Set(f64),
    /// Nothing to do: the value is already where the bounds let it go.
    AtBound(f64),
}

fn number(params: &serde_json::Value, key: &str) -> Result<Option<f64>, String> {
    match params.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not a number")),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("`{key}` must be a number, got {s:?}")),
        Some(other) => Err(format!("`{key}` must be a number, got {other}")),
    }
}

impl Adjust {
    /// Reads the params (a JSON object). `others` are the other keys the action accepts.
    pub fn from_params(params: &serde_json::Value, others: &[&str]) -> Result<Adjust, String> {
        if let Some(o) = params.as_object() {
            for k in o.keys() {
                if !["factor", "step", "value", "min", "max"].contains(&k.as_str())
                    && !others.contains(&k.as_str())
                {
                    return Err(format!(
                        "unknown param `{k}`; expected one of factor, step, value, and min, max"
                    ));
                }
            }
        }
        let (f, s, v) = (
            number(params, "factor")?,
            number(params, "step")?,
            number(params, "value")?,
        );
        let how = match (f, s, v) {
            (Some(f), None, None) => How::Factor(f),
            (None, Some(s), None) => How::Step(s),
            (None, None, Some(v)) => How::Value(v),
            _ => return Err("give exactly one of `factor`, `step` or `value`".into()),
        };
        let a = Adjust {
            how,
            min: number(params, "min")?,
            max: number(params, "max")?,
        };
        for x in [f, s, v, a.min, a.max].into_iter().flatten() {
            if !x.is_finite() {
                return Err(format!("params must be finite numbers, got {x}"));
            }
        }
        match how {
            How::Factor(f) if f <= 0.0 || f == 1.0 => {
                return Err(format!(
                    "`factor` must be greater than 0 and not 1, got {f}"
                ));
            }
            How::Step(0.0) => return Err("`step` must not be 0".into()),
            _ => {}
        }
        Ok(a)
    }

    /// The actuator's bounds narrowed by the step's `min`/`max`; an error when the step's
    /// lie outside the actuator's (a step may not widen them) or cross.
    pub fn bounds(&self, outer: Bounds) -> Result<Bounds, String> {
        let lo = self.min.unwrap_or(outer.min);
        let hi = self.max.unwrap_or(outer.max);
        if lo < outer.min || hi > outer.max {
            return Err(format!(
                "the step's bounds {lo}..{hi} reach outside the actuator's {}..{}",
                outer.min, outer.max
            ));
        }
        if lo > hi {
            return Err(format!(
                "the step's min ({lo}) is greater than its max ({hi})"
            ));
        }
        if let How::Value(v) = self.how
            && !(lo..=hi).contains(&v)
        {
            return Err(format!("`value` {v} lies outside the bounds {lo}..{hi}"));
        }
        Ok(Bounds { min: lo, max: hi })
    }

    /// The new value from `current` within `bounds` (already narrowed). `integer` rounds
    /// away from the current value so a step always moves (0.5 × 5 → 2, 1.5 × 3 → 5).
    pub fn compute(&self, current: f64, bounds: Bounds, integer: bool) -> Computed {
        let raw = match self.how {
            How::Factor(f) => current * f,
            How::Step(s) => current + s,
            How::Value(v) => v,
        };
        let rounded = if !integer {
            raw
        } else if raw < current {
            raw.floor()
        } else {
            raw.ceil()
        };
        let mut new = rounded.clamp(bounds.min, bounds.max);
        // a value already outside the bounds is not pulled back against the direction asked
        // for (shrinking a value below `min` must not raise it)
        let down = match self.how {
            How::Factor(f) => f < 1.0,
            How::Step(s) => s < 0.0,
            How::Value(v) => v < current,
        };
        if (down && new > current) || (!down && new < current) {
            new = current;
        }
        if new == current {
            Computed::AtBound(current)
        } else {
            Computed::Set(new)
        }
    }
}

/// Formats a value for messages: integers without a fraction.
pub fn show(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// One numeric setting as the cache and knob actuators report it: `key` names it in
/// `before`/`after` (`{"limit_mb": 32}`), `name` in messages (`cache_memlimit`), `unit`
/// follows its values there (` MB`). The wording of every outcome is built here, once.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub unit: &'a str,
    /// Whole numbers (`before`/`after` hold integers).
    pub integer: bool,
}

/// What an action or a revert does next: report `outcome` as it is, or write `to` first
/// and report `outcome` once the write succeeded.
#[derive(Debug, Clone)]
pub struct Plan {
    pub to: Option<f64>,
    pub outcome: ActionOutcome,
    /// Names the write in a failure (`setting maxmemory 1 → 2`).
    what: String,
}

impl Plan {
    fn report(outcome: ActionOutcome) -> Plan {
        Plan {
            to: None,
            outcome,
            what: String::new(),
        }
    }

    /// The outcome once the write of `to` ended with `written`: a failed write keeps the
    /// value found in `before`, and `after` unknown (it may or may not have changed).
    pub fn finish(self, written: Result<(), Failure>) -> ActionOutcome {
        match written {
            Ok(()) => self.outcome,
            Err(e) => {
                let before = self.outcome.before.clone();
                e.context(&self.what)
                    .outcome()
                    .changed(before, serde_json::Value::Null)
            }
        }
    }
}

impl Setting<'_> {
    /// `v` as a JSON number (an integer when `integer`).
    pub fn number(&self, v: f64) -> serde_json::Value {
        if self.integer {
            serde_json::Value::from(v as i64)
        } else {
            serde_json::Number::from_f64(v)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)
        }
    }

    /// `{key: v}`.
    pub fn state(&self, v: f64) -> serde_json::Value {
        serde_json::json!({ self.key: self.number(v) })
    }

    fn change(&self, from: f64, to: f64) -> String {
        format!("{} {} → {}{}", self.name, show(from), show(to), self.unit)
    }

    fn write(&self, from: f64, to: f64, what: String, doing: &str, dry_run: bool) -> Plan {
        let (before, after) = (self.state(from), self.state(to));
        if dry_run {
            return Plan::report(
                ActionOutcome::new(ActionStatus::Ok, format!("dry run: would set {what}"))
                    .changed(before, after),
            );
        }
        Plan {
            to: Some(to),
            what: format!("{doing} {what}"),
            outcome: ActionOutcome::new(ActionStatus::Ok, what).changed(before, after),
        }
    }

    /// An action from the `current` value: a `noop` at the bound, the dry run's report, or
    /// the write of the new value.
    pub fn plan(&self, current: f64, adjust: &Adjust, bounds: Bounds, dry_run: bool) -> Plan {
        match adjust.compute(current, bounds, self.integer) {
            Computed::AtBound(v) => Plan::report(
                ActionOutcome::new(
                    ActionStatus::Noop,
                    format!(
                        "{} is {}{}, as far as the bounds {}..{} allow",
                        self.name,
                        show(v),
                        self.unit,
                        show(bounds.min),
                        show(bounds.max)
                    ),
                )
                .changed(self.state(v), self.state(v)),
            ),
            Computed::Set(new) => {
                self.write(current, new, self.change(current, new), "setting", dry_run)
            }
        }
    }

    /// What the revert of `done` must restore and may replace: (`before`, the value medic
    /// set), or why there is nothing to revert (the revert is then a `noop`).
    pub fn revert_of(&self, done: &ActionOutcome) -> Result<(f64, f64), String> {
        let (Some(before), Some(set)) = (
            done.before.get(self.key).and_then(|v| v.as_f64()),
            done.after.get(self.key).and_then(|v| v.as_f64()),
        ) else {
            return Err(format!(
                "nothing to revert: the action recorded no {} it set",
                self.name
            ));
        };
        if done.status != ActionStatus::Ok || before == set {
            return Err(format!(
                "nothing to revert: the action did not change {}",
                self.name
            ));
        }
        Ok((before, set))
    }

    /// The revert from the `current` value: `before` written back only while `current` is
    /// still the value medic `set`; otherwise a `noop` that says why.
    pub fn plan_revert(&self, current: f64, (before, set): (f64, f64), dry_run: bool) -> Plan {
        if current != set {
            return Plan::report(
                ActionOutcome::new(
                    ActionStatus::Noop,
                    format!(
                        "{} is now {}{u}, not the {}{u} medic set: someone else changed it, left as it is",
                        self.name,
                        show(current),
                        show(set),
                        u = self.unit
                    ),
                )
                .changed(self.state(current), self.state(current)),
            );
        }
        let what = format!("{} (restored)", self.change(current, before));
        self.write(current, before, what, "restoring", dry_run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const B: Bounds = Bounds {
        min: 1.0,
        max: 64.0,
    };

    fn adj(p: serde_json::Value) -> Adjust {
        Adjust::from_params(&p, &[]).unwrap()
    }

    #[test]
    fn computes_and_clamps() {
        let b = B;
        assert_eq!(
            adj(json!({"factor": 0.5})).compute(32.0, b, true),
            Computed::Set(16.0)
        );
        assert_eq!(
            adj(json!({"factor": 0.5})).compute(5.0, b, true),
            Computed::Set(2.0)
        );
        assert_eq!(
            adj(json!({"factor": 1.5})).compute(3.0, b, true),
            Computed::Set(5.0)
        );
        assert_eq!(
            adj(json!({"factor": 0.5})).compute(1.0, b, true),
            Computed::AtBound(1.0)
        );
        assert_eq!(
            adj(json!({"factor": 4})).compute(32.0, b, true),
            Computed::Set(64.0)
        );
        assert_eq!(
            adj(json!({"step": 2})).compute(63.0, b, true),
            Computed::Set(64.0)
        );
        assert_eq!(
            adj(json!({"step": 2})).compute(64.0, b, true),
            Computed::AtBound(64.0)
        );
        assert_eq!(
            adj(json!({"step": "-3"})).compute(10.0, b, true),
            Computed::Set(7.0)
        );
        assert_eq!(
            adj(json!({"value": 8})).compute(32.0, b, true),
            Computed::Set(8.0)
        );
        // shrinking something already below min does not raise it
        assert_eq!(
            adj(json!({"factor": 0.5})).compute(0.0, b, true),
            Computed::AtBound(0.0)
        );
        // growing something above max does not lower it
        assert_eq!(
            adj(json!({"step": 1})).compute(100.0, b, true),
            Computed::AtBound(100.0)
        );
    }

    #[test]
    fn rejects_bad_params() {
        for (p, want) in [
            (json!({}), "exactly one"),
            (json!({"factor": 0.5, "step": 1}), "exactly one"),
            (json!({"factor": 0}), "greater than 0"),
            (json!({"factor": -2}), "greater than 0"),
            (json!({"factor": 1}), "not 1"),
            (json!({"step": 0}), "not be 0"),
            (json!({"factor": "x"}), "must be a number"),
            (json!({"factor": [1]}), "must be a number"),
            (json!({"delta": 1}), "unknown param `delta`"),
        ] {
            let e = Adjust::from_params(&p, &[]).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
        let a = adj(json!({"factor": 0.5, "min": 0}));
        assert!(a.bounds(B).unwrap_err().contains("outside the actuator's"));
        let a = adj(json!({"factor": 0.5, "min": 8, "max": 4}));
        assert!(a.bounds(B).unwrap_err().contains("greater than its max"));
        let a = adj(json!({"value": 100}));
        assert!(a.bounds(B).unwrap_err().contains("outside the bounds"));
        let a = adj(json!({"factor": 0.5, "min": 4}));
        assert_eq!(
            a.bounds(B).unwrap(),
            Bounds {
                min: 4.0,
                max: 64.0
            }
        );
        assert!(Bounds { min: 5.0, max: 1.0 }.validate().is_err());
        assert!(
            Bounds {
                min: -1.0,
                max: 1.0
            }
            .validate()
            .is_err()
        );
        assert!(
            Bounds {
                min: 1.0,
                max: f64::INFINITY
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn a_setting_words_every_outcome_once() {
        let mb = Setting {
            key: "limit_mb",
            name: "cache_memlimit",
            unit: " MB",
            integer: true,
        };
        let b = Bounds {
            min: 8.0,
            max: 64.0,
        };
        let grow = Adjust::from_params(&json!({"factor": 4}), &[]).unwrap();
        let p = mb.plan(8.0, &grow, b, false);
        assert_eq!(p.to, Some(32.0));
        assert_eq!(p.outcome.message, "cache_memlimit 8 → 32 MB");
        assert_eq!(p.outcome.before, json!({"limit_mb": 8}));
        assert_eq!(p.outcome.after, json!({"limit_mb": 32}));
        let failed = p.finish(Err(Failure::from("connection reset")));
        assert_eq!(failed.status, ActionStatus::Failed);
        assert_eq!(
            failed.message,
            "setting cache_memlimit 8 → 32 MB: connection reset"
        );
        assert_eq!(failed.after, serde_json::Value::Null);
        let dry = mb.plan(8.0, &grow, b, true);
        assert_eq!(
            (dry.to, dry.outcome.message.as_str()),
            (None, "dry run: would set cache_memlimit 8 → 32 MB")
        );
        let at = mb.plan(64.0, &grow, b, false);
        assert_eq!(at.to, None);
        assert_eq!(at.outcome.status, ActionStatus::Noop);

        let done = ActionOutcome::new(ActionStatus::Ok, "")
            .changed(json!({"limit_mb": 8}), json!({"limit_mb": 32}));
        let v = mb.revert_of(&done).unwrap();
        assert_eq!(v, (8.0, 32.0));
        let r = mb.plan_revert(32.0, v, false);
        assert_eq!(
            (r.to, r.outcome.message.as_str()),
            (Some(8.0), "cache_memlimit 32 → 8 MB (restored)")
        );
        let r = mb.plan_revert(48.0, v, false);
        assert_eq!(r.to, None);
        assert_eq!(
            r.outcome.message,
            "cache_memlimit is now 48 MB, not the 32 MB medic set: someone else changed it, left as it is"
        );
        let nothing = ActionOutcome::new(ActionStatus::Noop, "");
        assert!(mb.revert_of(&nothing).is_err());
    }
}
