//! The one mechanism behind every numeric remediation (a batch size, a pool size, a cache's
//! capacity): from the current value and a step's `factor`, `step` or `value`, the new
//! value, clamped to the actuator's bounds (narrowed by the step's `min`/`max`) and never
//! moved against the direction asked for.

use serde::Deserialize;

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
}
