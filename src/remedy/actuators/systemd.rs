//! The `systemd` actuator: `restart` a unit and wait until it is active again, and
//! `scale_pool` over the instances of a template unit (`worker@1.service` ..
//! `worker@<max>.service`), both through `systemctl` (no D-Bus).
//!
//! `systemctl` is started directly with an argv (never a shell), and unit names go after
//! `--` only once they are plain unit names (systemd's own character set) that the config
//! allows, so a label value can neither inject an option nor a command.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use regex::Regex;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{Instant, timeout_at};

use crate::common::Duration;
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};

/// Most instances a pool may have (`pool.max`): one `is-active` call asks for all of them.
pub const MAX_POOL: u32 = 256;
/// How often `restart` asks whether the unit is active again.
const POLL: StdDuration = StdDuration::from_millis(200);
/// Most bytes of systemctl's stderr quoted in a message.
const QUOTE_BYTES: usize = 400;
/// The unit types systemctl knows (the suffix after the last dot).
const UNIT_TYPES: &[&str] = &[
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "path",
    "slice",
    "scope",
    "swap",
    "device",
];

fn default_active_within() -> Duration {
    Duration::from_secs(30)
}

fn default_pool_step() -> i64 {
    1
}

/// Units managed through `systemctl`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdConfig {
    /// The `systemctl` to run (never through a shell). Default: `systemctl` on `PATH`. A path
    /// with a `/` is relative to the config file's folder.
    #[serde(
        default,
        deserialize_with = "crate::common::yaml::deserialize_opt_path"
    )]
    pub systemctl: Option<PathBuf>,
    /// Talk to the user's service manager (`systemctl --user`) instead of the system's.
    #[serde(default)]
    pub user: bool,
    /// The unit `restart` acts on when the step's params name none, e.g. `inference.service`.
    #[serde(default)]
    pub unit: Option<String>,
    /// The units a step's `unit` param may name (templated from labels, e.g.
    /// `{{ $labels.name }}`): a regex matched against the whole name, e.g.
    /// `app-[a-z0-9-]+\.service`. Absent: the param may only repeat `unit`.
    #[serde(default)]
    pub allowed_units: Option<String>,
    /// How long `restart` waits for the unit to be `active` again (never longer than the
    /// action's timeout).
    #[serde(default = "default_active_within")]
    pub active_within: Duration,
    /// The template unit `scale_pool` starts and stops instances of.
    #[serde(default)]
    pub pool: Option<PoolConfig>,
    /// How long one action may take. A step's `timeout` overrides it;
    /// `remedy.default_timeout` applies when both are absent.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

/// A pool of template instances: `worker@.service` with instances `worker@1.service` ..
/// `worker@<max>.service`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// The template unit, e.g. `worker@.service`.
    pub template: String,
    /// Fewest instances `scale_pool` leaves running (at least 0).
    pub min: u32,
    /// Most instances `scale_pool` leaves running (at most 256); also the highest instance
    /// number it touches.
    pub max: u32,
    /// Instances added (positive) or removed (negative) by a step that gives neither `step`
    /// nor `value`.
    #[serde(default = "default_pool_step")]
    pub step: i64,
}

/// What a step asks for, checked against the config (at load and again when rendered).
#[derive(Debug, Clone, PartialEq)]
enum Plan {
    Restart { unit: String },
    Scale { change: Change, lo: u32, hi: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Step(i64),
    Value(u32),
}

/// A running `systemd` actuator.
pub struct SystemdActuator {
    name: String,
    systemctl: PathBuf,
    user: bool,
    unit: Option<String>,
    allowed: Option<Regex>,
    active_within: StdDuration,
    pool: Option<Pool>,
    timeout: Option<StdDuration>,
}

#[derive(Debug, Clone)]
struct Pool {
    /// `worker@` and `.service` of `worker@.service`.
    prefix: String,
    suffix: String,
    min: u32,
    max: u32,
    step: i64,
}

impl Pool {
    fn instance(&self, i: u32) -> String {
        format!("{}{i}{}", self.prefix, self.suffix)
    }
}

/// Whether `s` is a plain unit name: systemd's characters (ASCII letters, digits, `:`, `-`,
/// `_`, `.`, `\`, `@`), not starting with `-`, ending in a known unit type.
pub fn is_unit_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '\\' | '@'))
        && s.rsplit_once('.')
            .is_some_and(|(stem, ty)| !stem.is_empty() && UNIT_TYPES.contains(&ty))
}

fn invalid(name: &str, reason: impl Into<String>) -> RemedyError {
    RemedyError::Config {
        name: name.to_string(),
        reason: reason.into(),
    }
}

impl SystemdActuator {
    pub fn build(name: &str, cfg: &SystemdConfig) -> Result<Self, RemedyError> {
        if let Some(u) = &cfg.unit
            && !is_unit_name(u)
        {
            return Err(invalid(
                name,
                format!("unit {u:?}: expected a unit name such as inference.service"),
            ));
        }
        let allowed = cfg
            .allowed_units
            .as_deref()
            .map(|re| {
                Regex::new(&format!("^(?:{re})$"))
                    .map_err(|e| invalid(name, format!("allowed_units: bad regex {re:?}: {e}")))
            })
            .transpose()?;
        if cfg.active_within.0.is_zero() {
            return Err(invalid(name, "active_within must be greater than 0"));
        }
        if cfg.timeout.is_some_and(|t| t.0.is_zero()) {
            return Err(invalid(name, "timeout must be greater than 0"));
        }
        let pool = cfg.pool.as_ref().map(|p| build_pool(name, p)).transpose()?;
        if cfg.unit.is_none() && allowed.is_none() && pool.is_none() {
            return Err(invalid(
                name,
                "give `unit` or `allowed_units` (for restart), `pool` (for scale_pool), or both",
            ));
        }
        if let Some(p) = &cfg.systemctl
            && p.as_os_str().is_empty()
        {
            return Err(invalid(name, "systemctl: empty path"));
        }
        Ok(SystemdActuator {
            name: name.to_string(),
            systemctl: cfg
                .systemctl
                .clone()
                .unwrap_or_else(|| PathBuf::from("systemctl")),
            user: cfg.user,
            unit: cfg.unit.clone(),
            allowed,
            active_within: cfg.active_within.0,
            pool,
            timeout: cfg.timeout.map(|d| d.std()),
        })
    }

    /// Checks a step's params as written in a rule file (templated strings are checked when
    /// rendered, at action time). `medic check -c` and loading call this.
    pub fn check_params(&self, action: &str, params: &Value) -> Result<(), String> {
        self.plan(action, params, true).map(|_| ())
    }

    /// The plan for `action` with `params`; `at_load` skips values still to be templated.
    fn plan(&self, action: &str, params: &Value, at_load: bool) -> Result<Plan, String> {
        let empty = serde_json::Map::new();
        let params = match params {
            Value::Object(o) => o,
            Value::Null => &empty,
            _ => return Err("params must be a mapping".into()),
        };
        let templated = |v: &Value| at_load && v.as_str().is_some_and(|s| s.contains("{{"));
        match action {
            "restart" => {
                if let Some(k) = params.keys().find(|k| k.as_str() != "unit") {
                    return Err(format!("restart: unknown param `{k}` (expected `unit`)"));
                }
                let unit = match params.get("unit") {
                    None => self.unit.clone().ok_or(
                        "restart: no `unit` param and the actuator has no `unit`".to_string(),
                    )?,
                    Some(v) if templated(v) => {
                        if self.allowed.is_none() {
                            return Err(
                                "restart: a templated `unit` needs `allowed_units` in the actuator"
                                    .into(),
                            );
                        }
                        return Ok(Plan::Restart {
                            unit: String::new(),
                        });
                    }
                    Some(Value::String(u)) => u.clone(),
                    Some(v) => return Err(format!("restart: `unit` must be a string, not {v}")),
                };
                self.check_unit(&unit)?;
                Ok(Plan::Restart { unit })
            }
            "scale_pool" => {
                let pool = self
                    .pool
                    .as_ref()
                    .ok_or("scale_pool: the actuator has no `pool`")?;
                if let Some(k) = params
                    .keys()
                    .find(|k| !matches!(k.as_str(), "step" | "delta" | "value" | "min" | "max"))
                {
                    return Err(format!(
                        "scale_pool: unknown param `{k}` (expected step, value, min, max)"
                    ));
                }
                let int = |k: &str| -> Result<Option<i64>, String> {
                    match params.get(k) {
                        None => Ok(None),
                        Some(v) if templated(v) => Ok(None),
                        Some(v) => as_int(v).map(Some).ok_or_else(|| {
                            format!("scale_pool: `{k}` must be an integer, not {v}")
                        }),
                    }
                };
                let lo = int("min")?.unwrap_or(pool.min as i64);
                let hi = int("max")?.unwrap_or(pool.max as i64);
                if lo < pool.min as i64 || hi > pool.max as i64 || lo > hi {
                    return Err(format!(
                        "scale_pool: min {lo} / max {hi} must lie within the pool's bounds {}..{} (min ≤ max)",
                        pool.min, pool.max
                    ));
                }
                let (lo, hi) = (lo as u32, hi as u32);
                let steps = [int("step")?, int("delta")?];
                let change = match (steps[0].or(steps[1]), int("value")?) {
                    _ if params.contains_key("step") && params.contains_key("delta") => {
                        return Err("scale_pool: give `step` or `delta`, not both".into());
                    }
                    (Some(_), Some(_)) => {
                        return Err("scale_pool: give `step` or `value`, not both".into());
                    }
                    (Some(0), None) => return Err("scale_pool: `step` must not be 0".into()),
                    (Some(s), None) => Change::Step(s),
                    (None, Some(v)) if v < lo as i64 || v > hi as i64 => {
                        return Err(format!(
                            "scale_pool: value {v} lies outside the bounds {lo}..{hi}"
                        ));
                    }
                    (None, Some(v)) => Change::Value(v as u32),
                    (None, None) => Change::Step(pool.step),
                };
                Ok(Plan::Scale { change, lo, hi })
            }
            other => Err(format!(
                "a systemd actuator performs `restart` and `scale_pool`, not `{other}`"
            )),
        }
    }

    /// A unit a step may act on: a plain unit name, and `unit` or one `allowed_units` matches.
    fn check_unit(&self, unit: &str) -> Result<(), String> {
        if !is_unit_name(unit) {
            return Err(format!(
                "unit {unit:?} is not a plain unit name (letters, digits, `:-_.\\@`, ending in .service, .socket, ...)"
            ));
        }
        let listed = self.unit.as_deref() == Some(unit)
            || self.allowed.as_ref().is_some_and(|re| re.is_match(unit));
        if !listed {
            return Err(format!(
                "unit {unit:?} is neither the actuator's `unit` nor matched by `allowed_units`"
            ));
        }
        Ok(())
    }

    /// Runs `systemctl [--user] --no-pager --no-ask-password ARGS`, bounded by `deadline`.
    async fn systemctl(&self, args: &[&str], deadline: Instant) -> Result<Ran, Fail> {
        let mut cmd = tokio::process::Command::new(&self.systemctl);
        if self.user {
            cmd.arg("--user");
        }
        cmd.args(["--no-pager", "--no-ask-password"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = || format!("systemctl {}", args.join(" "));
        let child = cmd.spawn().map_err(|e| {
            Fail::Failed(format!(
                "actuator `{}`: cannot start {}: {e}",
                self.name,
                self.systemctl.display()
            ))
        })?;
        match timeout_at(deadline, child.wait_with_output()).await {
            Err(_) => Err(Fail::Timeout(format!("{} did not finish in time", what()))),
            Ok(Err(e)) => Err(Fail::Failed(format!("{}: {e}", what()))),
            Ok(Ok(out)) => Ok(Ran {
                ok: out.status.success(),
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: quote(&String::from_utf8_lossy(&out.stderr)),
            }),
        }
    }

    /// A command that must succeed (start, stop, restart).
    async fn run_ok(&self, args: &[&str], deadline: Instant) -> Result<(), Fail> {
        let r = self.systemctl(args, deadline).await?;
        if r.ok {
            Ok(())
        } else {
            Err(Fail::Failed(format!(
                "systemctl {} failed ({}): {}",
                args.join(" "),
                r.code
                    .map_or("killed by a signal".to_string(), |c| format!("status {c}")),
                r.stderr
            )))
        }
    }

    /// `is-active` of each unit, in order (`active`, `inactive`, `failed`, `activating`, ...).
    async fn states(&self, units: &[String], deadline: Instant) -> Result<Vec<String>, Fail> {
        let mut args = vec!["is-active", "--"];
        args.extend(units.iter().map(String::as_str));
        // is-active exits non-zero when a unit is not active; its stdout still says how each is
        let r = self.systemctl(&args, deadline).await?;
        let states: Vec<String> = r.stdout.lines().map(|l| l.trim().to_string()).collect();
        if states.len() != units.len() {
            return Err(Fail::Failed(format!(
                "systemctl is-active answered {} lines for {} units: {}",
                states.len(),
                units.len(),
                if r.stderr.is_empty() {
                    quote(&r.stdout)
                } else {
                    r.stderr
                }
            )));
        }
        Ok(states)
    }

    async fn state(&self, unit: &str, deadline: Instant) -> Result<String, Fail> {
        let mut s = self.states(&[unit.to_string()], deadline).await?;
        Ok(s.remove(0))
    }

    /// The unit's main process (0: none), from `systemctl show -p MainPID --value`.
    async fn main_pid(&self, unit: &str, deadline: Instant) -> Result<u64, Fail> {
        let r = self
            .systemctl(&["show", "-p", "MainPID", "--value", "--", unit], deadline)
            .await?;
        Ok(r.stdout.trim().parse().unwrap_or(0))
    }

    async fn restart(
        &self,
        req: &ActionRequest,
        unit: &str,
        deadline: Instant,
    ) -> Result<ActionOutcome, Fail> {
        let started = Instant::now();
        let state = self.state(unit, deadline).await?;
        let pid = self.main_pid(unit, deadline).await?;
        let before = json!({"unit": unit, "state": state, "main_pid": pid});
        if req.dry_run {
            return Ok(ActionOutcome::new(
                ActionStatus::Ok,
                format!(
                    "dry run: would restart {unit} (now {state}, MainPID {pid}) and wait up to {} for it to be active",
                    Duration(self.active_within)
                ),
            )
            .changed(before, json!({"unit": unit, "state": "active"})));
        }
        self.run_ok(&["restart", "--", unit], deadline).await?;
        // systemctl restart returns once the job is queued or done; wait (bounded) for active
        let wait_until = deadline.min(Instant::now() + self.active_within);
        let mut now_state;
        loop {
            now_state = self.state(unit, deadline).await?;
            if now_state == "active" || Instant::now() + POLL > wait_until {
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        let new_pid = self.main_pid(unit, deadline).await?;
        let after = json!({"unit": unit, "state": now_state, "main_pid": new_pid});
        let took = started.elapsed().as_secs_f64();
        let mut o = if now_state == "active" {
            ActionOutcome::new(
                ActionStatus::Ok,
                format!(
                    "restarted {unit}: {state} → active (MainPID {pid} → {new_pid}) in {took:.1}s"
                ),
            )
        } else {
            ActionOutcome::new(
                ActionStatus::Failed,
                format!(
                    "restarted {unit}, but it is {now_state}, not active, after {}",
                    Duration(self.active_within.min(wait_until - started))
                ),
            )
        };
        o.data = json!({"seconds": took});
        Ok(o.changed(before, after))
    }

    /// Scales the pool by `change`, clamped to `lo..=hi`.
    async fn scale(
        &self,
        req: &ActionRequest,
        pool: &Pool,
        change: Change,
        lo: u32,
        hi: u32,
        deadline: Instant,
    ) -> Result<ActionOutcome, Fail> {
        let units: Vec<String> = (1..=pool.max).map(|i| pool.instance(i)).collect();
        let states = self.states(&units, deadline).await?;
        let up: Vec<bool> = states.iter().map(|s| is_up(s)).collect();
        let current = up.iter().filter(|u| **u).count() as u32;
        let target = match change {
            Change::Step(s) => (current as i64)
                .saturating_add(s)
                .clamp(lo as i64, hi as i64) as u32,
            Change::Value(v) => v.clamp(lo, hi),
        };
        // up: the lowest-numbered instances that are down; down: the highest that are up
        let (verb, picked): (&str, Vec<String>) = if target > current {
            let n = (target - current) as usize;
            let p = (0..units.len()).filter(|i| !up[*i]).take(n);
            ("start", p.map(|i| units[i].clone()).collect())
        } else {
            let n = (current - target) as usize;
            let p = (0..units.len()).rev().filter(|i| up[*i]).take(n);
            ("stop", p.map(|i| units[i].clone()).collect())
        };
        let before = json!({"instances": current});
        let data = |done: &[String]| {
            json!({
                "template": format!("{}{}", pool.prefix, pool.suffix),
                "min": lo, "max": hi,
                if verb == "start" { "started" } else { "stopped" }: done,
            })
        };
        if picked.is_empty() {
            let mut o = ActionOutcome::new(
                ActionStatus::Noop,
                format!(
                    "{}{}: {current} instances, already at the bound (allowed {lo}..{hi})",
                    pool.prefix, pool.suffix
                ),
            )
            .changed(before.clone(), before);
            o.data = data(&[]);
            return Ok(o);
        }
        if req.dry_run {
            let mut o = ActionOutcome::new(
                ActionStatus::Ok,
                format!(
                    "dry run: would {verb} {} ({current} → {target} instances)",
                    picked.join(", ")
                ),
            )
            .changed(before, json!({"instances": target}));
            o.data = data(&picked);
            return Ok(o);
        }
        let mut args = vec![verb, "--"];
        args.extend(picked.iter().map(String::as_str));
        self.run_ok(&args, deadline).await?;
        let now = self.states(&units, deadline).await?;
        let after = now.iter().filter(|s| is_up(s)).count() as u32;
        let status = if after == target {
            ActionStatus::Ok
        } else {
            ActionStatus::Failed
        };
        let mut o = ActionOutcome::new(
            status,
            format!(
                "{} {}: {current} → {after} instances{}",
                if verb == "start" {
                    "started"
                } else {
                    "stopped"
                },
                picked.join(", "),
                if after == target {
                    String::new()
                } else {
                    format!(" (wanted {target})")
                }
            ),
        )
        .changed(before, json!({"instances": after}));
        o.data = data(&picked);
        Ok(o)
    }

    fn deadline(req: &ActionRequest) -> Instant {
        Instant::now() + req.timeout
    }
}

/// A unit counted as a running pool instance.
fn is_up(state: &str) -> bool {
    matches!(state, "active" | "activating" | "reloading")
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The end of a text, on one line, for a message.
fn quote(s: &str) -> String {
    let s = s.trim();
    let start = s.len().saturating_sub(QUOTE_BYTES);
    let start = (start..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[start..].replace('\n', " | ")
}

fn build_pool(name: &str, p: &PoolConfig) -> Result<Pool, RemedyError> {
    let shape = p
        .template
        .split_once("@.")
        .filter(|(stem, _)| !stem.contains('@'));
    let Some((stem, ty)) = shape.filter(|_| is_unit_name(&p.template)) else {
        return Err(invalid(
            name,
            format!(
                "pool.template {:?}: expected a template unit such as worker@.service",
                p.template
            ),
        ));
    };
    if p.max == 0 || p.max > MAX_POOL || p.min > p.max {
        return Err(invalid(
            name,
            format!(
                "pool: min {} / max {}: expected 0 ≤ min ≤ max, 1 ≤ max ≤ {MAX_POOL}",
                p.min, p.max
            ),
        ));
    }
    if p.step == 0 || p.step.unsigned_abs() > p.max as u64 {
        return Err(invalid(
            name,
            format!("pool.step {}: expected non-zero, at most max", p.step),
        ));
    }
    Ok(Pool {
        prefix: format!("{stem}@"),
        suffix: format!(".{ty}"),
        min: p.min,
        max: p.max,
        step: p.step,
    })
}

struct Ran {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

enum Fail {
    Failed(String),
    Timeout(String),
}

impl Fail {
    fn outcome(self) -> ActionOutcome {
        match self {
            Fail::Failed(m) => ActionOutcome::new(ActionStatus::Failed, m),
            Fail::Timeout(m) => ActionOutcome::new(ActionStatus::Timeout, m),
        }
    }
}

#[async_trait]
impl Actuator for SystemdActuator {
    fn kind(&self) -> &'static str {
        "systemd"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.timeout
    }

    fn supports_dry_run(&self) -> bool {
        true
    }

    fn reversible(&self, action: &str) -> bool {
        action == "scale_pool"
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let deadline = Self::deadline(req);
        let plan = match self.plan(&req.action, &req.params, false) {
            Ok(p) => p,
            Err(e) => {
                return ActionOutcome::new(
                    ActionStatus::Failed,
                    format!("actuator `{}`: refused: {e}", self.name),
                );
            }
        };
        let res = match plan {
            Plan::Restart { unit } => self.restart(req, &unit, deadline).await,
            Plan::Scale { change, lo, hi } => match &self.pool {
                Some(pool) => self.scale(req, pool, change, lo, hi, deadline).await,
                None => Err(Fail::Failed("no pool".into())),
            },
        };
        res.unwrap_or_else(Fail::outcome)
    }

    async fn revert(&self, req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        let deadline = Self::deadline(req);
        let (Some(pool), "scale_pool") = (&self.pool, req.action.as_str()) else {
            return ActionOutcome::new(
                ActionStatus::Noop,
                format!("`{}` on a systemd actuator cannot be reverted", req.action),
            );
        };
        let count = |v: &Value| v["instances"].as_u64().map(|n| n as u32);
        let (Some(was), Some(set)) = (count(&done.before), count(&done.after)) else {
            return ActionOutcome::new(
                ActionStatus::Noop,
                "the earlier outcome records no instance counts; nothing to revert",
            );
        };
        let units: Vec<String> = (1..=pool.max).map(|i| pool.instance(i)).collect();
        let now = match self.states(&units, deadline).await {
            Ok(s) => s.iter().filter(|s| is_up(s)).count() as u32,
            Err(f) => return f.outcome(),
        };
        if now != set {
            return ActionOutcome::new(
                ActionStatus::Noop,
                format!(
                    "left as it is: the pool has {now} instances, not the {set} medic set (someone else changed it)"
                ),
            )
            .changed(json!({"instances": now}), json!({"instances": now}));
        }
        self.scale(req, pool, Change::Value(was), pool.min, pool.max, deadline)
            .await
            .unwrap_or_else(Fail::outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actuator(yaml: &str) -> Result<SystemdActuator, RemedyError> {
        let cfg: SystemdConfig = serde_saphyr::from_str(yaml).unwrap();
        SystemdActuator::build("svc", &cfg)
    }

    #[test]
    fn unit_names() {
        for ok in [
            "app.service",
            "worker@3.service",
            "a-b_c:d.socket",
            "x\\x2dy.mount",
        ] {
            assert!(is_unit_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-app.service",
            "app",
            "app.exe",
            "../app.service",
            "a/b.service",
            "app.service; reboot",
            "$(id).service",
            "a\n.service",
            "a b.service",
            ".service",
        ] {
            assert!(!is_unit_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn build_validates_bounds_and_names() {
        assert!(actuator("unit: app.service").is_ok());
        for (yaml, want) in [
            ("unit: 'app; reboot'", "expected a unit name"),
            ("{}", "give `unit`"),
            (
                "pool: {template: worker.service, min: 1, max: 3}",
                "template unit",
            ),
            (
                "pool: {template: worker@.service, min: 4, max: 3}",
                "min ≤ max",
            ),
            (
                "pool: {template: worker@.service, min: 0, max: 999}",
                "max ≤ 256",
            ),
            (
                "pool: {template: worker@.service, min: 0, max: 3, step: 0}",
                "pool.step",
            ),
            ("{unit: a.service, allowed_units: '('}", "bad regex"),
            ("{unit: a.service, active_within: 0s}", "active_within"),
        ] {
            let e = actuator(yaml)
                .err()
                .unwrap_or_else(|| panic!("{yaml} built"));
            assert!(e.to_string().contains(want), "{yaml}: {e}");
        }
        assert!(serde_saphyr::from_str::<SystemdConfig>("unit: a.service\nbogus: 1").is_err());
    }

    #[test]
    fn params_are_checked_against_the_bounds() {
        let a = actuator(
            "{unit: app.service, allowed_units: 'app-[a-z]+\\.service', pool: {template: worker@.service, min: 1, max: 4}}",
        )
        .unwrap();
        let ok = |action: &str, p: Value| a.check_params(action, &p);
        assert!(ok("restart", json!({})).is_ok());
        assert!(ok("restart", json!({"unit": "app-web.service"})).is_ok());
        assert!(ok("restart", json!({"unit": "{{ $labels.name }}"})).is_ok());
        assert!(ok("restart", json!({"unit": "other.service"})).is_err());
        assert!(ok("restart", json!({"unit": "app-web.service x"})).is_err());
        assert!(ok("restart", json!({"bogus": 1})).is_err());
        assert!(ok("scale_pool", json!({"step": 1})).is_ok());
        assert!(ok("scale_pool", json!({"delta": -1, "min": 2})).is_ok());
        assert!(ok("scale_pool", json!({"value": 3})).is_ok());
        let e = ok("scale_pool", json!({"max": 8})).unwrap_err();
        assert!(e.contains("within the pool's bounds 1..4"), "{e}");
        assert!(ok("scale_pool", json!({"value": 9})).is_err());
        assert!(ok("scale_pool", json!({"step": 0})).is_err());
        assert!(ok("scale_pool", json!({"step": 1, "value": 2})).is_err());
        assert!(ok("scale_pool", json!({"step": "x"})).is_err());
        assert!(ok("rollback", json!({})).is_err());
        // at action time a rendered hostile unit is refused, never run
        let plan = a.plan("restart", &json!({"unit": "app-x.service; reboot"}), false);
        assert!(plan.is_err());
        let only_unit = actuator("unit: app.service").unwrap();
        assert!(
            only_unit
                .check_params("restart", &json!({"unit": "{{ $labels.name }}"}))
                .is_err()
        );
        assert!(only_unit.check_params("scale_pool", &json!({})).is_err());
    }
}
