//! The `redis` actuator: `clear_cache` (the keys matching a glob or a literal prefix, by
//! SCAN + UNLINK in batches, bounded in keys and time, never `KEYS`; or the whole database
//! with `FLUSHDB ASYNC` when `allow_flush` is set) and `set_capacity` (`CONFIG SET
//! maxmemory`, by factor, step or value within `capacity` bounds; reversible). It reaches
//! Redis with the collector's connection settings (`url`, `username`, `password`, `tls`).

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;
use tokio::time::Instant;

use super::adjust::{Adjust, Bounds, Plan, Setting};
use super::bounded::{Failure, bounded};
use crate::common::redis::{RedisClient, RedisTarget};
use crate::common::tls::TlsConfig;
use crate::common::{Duration, Secret};
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};

fn default_url() -> String {
    "redis://127.0.0.1:6379".to_string()
}

fn default_max_keys() -> u64 {
    100_000
}

fn default_batch() -> u64 {
    1000
}

/// `maxmemory`, in bytes, as `set_capacity` reports it.
const MAXMEMORY: Setting<'static> = Setting {
    key: "maxmemory",
    name: "maxmemory",
    unit: "",
    integer: true,
};

/// Most keys one `clear_cache` may be configured to remove.
const MAX_KEYS_LIMIT: u64 = 100_000_000;
/// Most keys per SCAN/UNLINK batch.
const MAX_BATCH: u64 = 100_000;

/// `type: redis` under `actuators:`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisActuatorConfig {
    /// `redis://HOST:PORT/DB` or `rediss://...` for TLS, as for the `redis` collector.
    /// Default `redis://127.0.0.1:6379`.
    #[serde(default = "default_url")]
    pub url: String,
    /// ACL user name (Redis 6+).
    #[serde(default)]
    pub username: Option<String>,
    /// The password, as a secret (`{file: ...}`, `{env: ...}`). Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS settings for a `rediss://` URL (`ca_file`, `insecure_skip_verify`).
    #[serde(default)]
    pub tls: TlsConfig,
    /// Let `clear_cache` with `all: true` empty the whole database (`FLUSHDB ASYNC`), and a
    /// `pattern` of only `*`. Default false.
    #[serde(default)]
    pub allow_flush: bool,
    /// Most keys one `clear_cache` removes (a step's `max_keys` may lower it). Default 100000.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// Keys per SCAN `COUNT` and per UNLINK. Default 1000.
    #[serde(default = "default_batch")]
    pub batch: u64,
    /// Bounds for `set_capacity`, in bytes of `maxmemory`: `{min: 67108864, max: 4294967296}`.
    /// Without them `set_capacity` is refused.
    #[serde(default)]
    pub capacity: Option<Bounds>,
    /// How long one action may take. A step's `timeout` overrides it.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

// by hand, not derived: the URL may carry a password
impl std::fmt::Debug for RedisActuatorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RedisActuatorConfig");
        self.target().debug_fields(&mut d);
        d.field("allow_flush", &self.allow_flush)
            .field("max_keys", &self.max_keys)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// What `clear_cache` removes.
#[derive(Debug, Clone, PartialEq)]
enum Selection {
    /// Keys matching this Redis glob.
    Pattern(String),
    /// The whole database.
    All,
}

/// `clear_cache`'s params: one of `pattern` (a glob, written in the rule: never a
/// template, since a label value in it could widen it), `prefix` (a literal key prefix that
/// may come from labels: its glob characters are escaped) or `all: true`; and `max_keys`.
fn clear_params(
    params: &serde_json::Value,
    allow_flush: bool,
    max_keys: u64,
) -> Result<(Selection, u64), String> {
    if let Some(o) = params.as_object() {
        for k in o.keys() {
            if !["pattern", "prefix", "all", "max_keys"].contains(&k.as_str()) {
                return Err(format!(
                    "unknown param `{k}`; expected pattern, prefix, all or max_keys"
                ));
            }
        }
    }
    let str_param = |k: &str| -> Result<Option<&str>, String> {
        match params.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{k}` must be a string, got {other}")),
        }
    };
    let all = match params.get("all") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(other) => return Err(format!("`all` must be true or false, got {other}")),
    };
    let sel = match (str_param("pattern")?, str_param("prefix")?, all) {
        (Some(p), None, false) => {
            if p.is_empty() {
                return Err("`pattern` is empty".into());
            }
            if p.contains("{{") {
                return Err(
                    "`pattern` is a glob taken as written, not a template (a label value in it could match more keys); put label values in `prefix`, whose glob characters are escaped"
                        .into(),
                );
            }
            if p.chars().all(|c| c == '*') && !allow_flush {
                return Err(format!(
                    "`pattern: {p:?}` matches every key; that needs `allow_flush: true` on the actuator"
                ));
            }
            Selection::Pattern(p.to_string())
        }
        (None, Some(p), false) => {
            if p.is_empty() && !allow_flush {
                return Err(
                    "`prefix` is empty, which matches every key; that needs `allow_flush: true`"
                        .into(),
                );
            }
            Selection::Pattern(format!("{}*", glob_escape(p)))
        }
        (None, None, true) => {
            if !allow_flush {
                return Err(
                    "`all: true` empties the whole database; that needs `allow_flush: true` on the actuator"
                        .into(),
                );
            }
            Selection::All
        }
        _ => return Err("give exactly one of `pattern`, `prefix` or `all: true`".into()),
    };
    let limit = match params.get("max_keys") {
        None | Some(serde_json::Value::Null) => max_keys,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= max_keys => n,
            _ => {
                return Err(format!(
                    "`max_keys` must be a whole number from 1 to the actuator's {max_keys}, got {v}"
                ));
            }
        },
    };
    Ok((sel, limit))
}

/// `s` with Redis glob's special characters escaped, so it matches only itself.
pub fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        // outside a `[...]` class (and `[` is escaped) these are the only special ones
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisActuatorConfig {
    /// The connection settings, as the `redis` collector's.
    pub fn target(&self) -> RedisTarget<'_> {
        RedisTarget {
            url: &self.url,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            tls: &self.tls,
        }
    }

    /// Checks a step's params at config load.
    pub fn check_params(&self, action: &str, params: &serde_json::Value) -> Result<(), String> {
        match action {
            "clear_cache" => clear_params(params, self.allow_flush, self.max_keys).map(|_| ()),
            "set_capacity" => {
                let Some(b) = self.capacity else {
                    return Err("the actuator has no `capacity: {min, max}` bounds".into());
                };
                Adjust::from_params(params, &[])?.bounds(b).map(|_| ())
            }
            _ => Ok(()),
        }
    }
}

/// A running `redis` actuator.
pub struct RedisActuator {
    client: RedisClient,
    allow_flush: bool,
    max_keys: u64,
    batch: u64,
    capacity: Option<Bounds>,
    timeout: Option<StdDuration>,
}

type RResult<T> = Result<T, Failure>;

/// A failed command: `timeout` when Redis did not answer in time.
fn rerr(what: &str) -> impl Fn(redis::RedisError) -> Failure + '_ {
    move |e| {
        if e.is_timeout() {
            Failure::timeout(format!("{what}: no answer in time"))
        } else {
            format!("{what}: {e}").into()
        }
    }
}

impl RedisActuator {
    pub fn build(name: &str, cfg: &RedisActuatorConfig) -> Result<Self, RemedyError> {
        let invalid = |reason: String| RemedyError::Config {
            name: name.into(),
            reason,
        };
        if cfg.max_keys == 0 || cfg.max_keys > MAX_KEYS_LIMIT {
            return Err(invalid(format!(
                "max_keys must be from 1 to {MAX_KEYS_LIMIT}, got {}",
                cfg.max_keys
            )));
        }
        if cfg.batch == 0 || cfg.batch > MAX_BATCH {
            return Err(invalid(format!(
                "batch must be from 1 to {MAX_BATCH}, got {}",
                cfg.batch
            )));
        }
        if let Some(b) = cfg.capacity {
            b.validate()
                .map_err(|e| invalid(format!("capacity: {e}")))?;
            // maxmemory 0 means "no limit": never a value medic may set by accident
            if b.min < 1.0 || b.min.fract() != 0.0 || b.max.fract() != 0.0 {
                return Err(invalid(
                    "capacity: min and max are whole numbers of bytes, min at least 1".into(),
                ));
            }
        }
        let client = cfg
            .target()
            .client("actuator", name)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(RedisActuator {
            client,
            allow_flush: cfg.allow_flush,
            max_keys: cfg.max_keys,
            batch: cfg.batch,
            capacity: cfg.capacity,
            timeout: cfg.timeout.map(|d| d.std()),
        })
    }

    async fn memory(conn: &mut MultiplexedConnection) -> RResult<serde_json::Value> {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(conn)
            .await
            .map_err(rerr("INFO memory"))?;
        let used = info
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("used_memory:"))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(Failure::from("INFO memory has no used_memory"))?;
        let keys: u64 = redis::cmd("DBSIZE")
            .query_async(conn)
            .await
            .map_err(rerr("DBSIZE"))?;
        Ok(serde_json::json!({"used_memory": used, "keys": keys}))
    }

    async fn clear(
        &self,
        req: &ActionRequest,
        conn: &mut MultiplexedConnection,
        started: Instant,
    ) -> RResult<ActionOutcome> {
        let (sel, limit) = clear_params(&req.params, self.allow_flush, self.max_keys)?;
        let before = Self::memory(conn).await?;
        let before_keys = before["keys"].as_u64().unwrap_or(0);
        let pattern = match sel {
            Selection::All => {
                if req.dry_run {
                    return Ok(ActionOutcome::new(
                        ActionStatus::Ok,
                        format!("dry run: would empty the database ({before_keys} keys) with FLUSHDB ASYNC"),
                    )
                    .changed(before.clone(), serde_json::json!({"keys": 0})));
                }
                let _: () = redis::cmd("FLUSHDB")
                    .arg("ASYNC")
                    .query_async(conn)
                    .await
                    .map_err(rerr("FLUSHDB ASYNC"))?;
                let after = Self::memory(conn).await?;
                let mut o = ActionOutcome::new(
                    ActionStatus::Ok,
                    format!("emptied the database: {before_keys} keys (FLUSHDB ASYNC)"),
                )
                .changed(before.clone(), after.clone());
                o.data = serde_json::json!({
                    "keys_removed": before_keys,
                    "bytes_freed": freed(&before, &after),
                    "flush": true,
                });
                return Ok(o);
            }
            Selection::Pattern(p) => p,
        };
        // a quarter of the time is left for the reads around the scan
        let timeout = req.timeout;
        let stop_at = started + timeout.mul_f64(0.75);
        let mut cursor: u64 = 0;
        let mut removed: u64 = 0;
        let mut complete = false;
        while Instant::now() < stop_at && removed < limit {
            let (next, mut keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(self.batch)
                .query_async(conn)
                .await
                .map_err(rerr("SCAN"))?;
            keys.truncate((limit - removed) as usize);
            if !keys.is_empty() {
                removed += if req.dry_run {
                    keys.len() as u64
                } else {
                    redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<u64>(conn)
                        .await
                        .map_err(rerr("UNLINK"))?
                };
            }
            cursor = next;
            if cursor == 0 {
                complete = true;
                break;
            }
        }
        let why_stopped = if complete {
            String::new()
        } else if removed >= limit {
            format!(" (stopped at max_keys {limit})")
        } else {
            format!(" (stopped at the time bound, {:?})", timeout.mul_f64(0.75))
        };
        if req.dry_run {
            let mut o = ActionOutcome::new(
                ActionStatus::Ok,
                format!("dry run: would remove {removed} keys matching `{pattern}`{why_stopped}"),
            )
            .changed(before.clone(), serde_json::Value::Null);
            o.data = serde_json::json!({"keys_matched": removed, "pattern": pattern, "complete": complete});
            return Ok(o);
        }
        let after = Self::memory(conn).await?;
        let status = if removed == 0 {
            ActionStatus::Noop
        } else {
            ActionStatus::Ok
        };
        let mut o = ActionOutcome::new(
            status,
            format!(
                "removed {removed} keys matching `{pattern}`{why_stopped}; used_memory {} → {}",
                before["used_memory"], after["used_memory"]
            ),
        )
        .changed(before.clone(), after.clone());
        o.data = serde_json::json!({
            "keys_removed": removed,
            "bytes_freed": freed(&before, &after),
            "pattern": pattern,
            "complete": complete,
        });
        Ok(o)
    }

    async fn maxmemory(conn: &mut MultiplexedConnection) -> RResult<u64> {
        let kv: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(conn)
            .await
            .map_err(rerr("CONFIG GET maxmemory"))?;
        kv.get(1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("CONFIG GET maxmemory answered {kv:?}").into())
    }

    /// Sets maxmemory and reads it back.
    async fn set_maxmemory(conn: &mut MultiplexedConnection, to: u64) -> RResult<()> {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(to)
            .query_async(conn)
            .await
            .map_err(rerr("CONFIG SET maxmemory"))?;
        let got = Self::maxmemory(conn).await?;
        if got != to {
            return Err(format!("set maxmemory {to} but read back {got}").into());
        }
        Ok(())
    }

    async fn set_capacity(
        &self,
        req: &ActionRequest,
        conn: &mut MultiplexedConnection,
    ) -> RResult<ActionOutcome> {
        let outer = self.capacity.ok_or(Failure::from(
            "the actuator has no `capacity: {min, max}` bounds",
        ))?;
        let adjust = Adjust::from_params(&req.params, &[])?;
        let bounds = adjust.bounds(outer)?;
        let current = Self::maxmemory(conn).await?;
        if current == 0 && !matches!(adjust.how, super::adjust::How::Value(_)) {
            return Err(Failure::from(
                "maxmemory is 0 (no limit): a factor or step has nothing to scale; give `value`",
            ));
        }
        let plan = MAXMEMORY.plan(current as f64, &adjust, bounds, req.dry_run);
        Ok(Self::carry_out(conn, plan).await)
    }

    /// Sets maxmemory as `plan` says (if at all) and reports.
    async fn carry_out(conn: &mut MultiplexedConnection, plan: Plan) -> ActionOutcome {
        match plan.to {
            Some(to) => {
                let written = Self::set_maxmemory(conn, to as u64).await;
                plan.finish(written)
            }
            None => plan.outcome,
        }
    }

    async fn act_inner(&self, req: &ActionRequest, started: Instant) -> ActionOutcome {
        let mut conn = match self.client.connect(req.timeout).await {
            Ok(c) => c,
            Err(e) => {
                return rerr(&format!("cannot connect to {}", self.client.addr))(e).outcome();
            }
        };
        let r = match req.action.as_str() {
            "clear_cache" => self.clear(req, &mut conn, started).await,
            "set_capacity" => self.set_capacity(req, &mut conn).await,
            other => Err(Failure::from(format!(
                "a redis actuator performs clear_cache or set_capacity, not `{other}`"
            ))),
        };
        r.unwrap_or_else(Failure::outcome)
    }

    async fn revert_inner(&self, req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        if req.action != "set_capacity" {
            return ActionOutcome::new(
                ActionStatus::Noop,
                format!("`{}` cannot be reverted", req.action),
            );
        }
        let values = match MAXMEMORY.revert_of(done) {
            Ok(v) => v,
            Err(why) => return ActionOutcome::new(ActionStatus::Noop, why),
        };
        let mut conn = match self.client.connect(req.timeout).await {
            Ok(c) => c,
            Err(e) => {
                return rerr(&format!("cannot connect to {}", self.client.addr))(e).outcome();
            }
        };
        let current = match Self::maxmemory(&mut conn).await {
            Ok(v) => v,
            Err(e) => return e.outcome(),
        };
        let plan = MAXMEMORY.plan_revert(current as f64, values, req.dry_run);
        Self::carry_out(&mut conn, plan).await
    }
}

fn freed(before: &serde_json::Value, after: &serde_json::Value) -> u64 {
    let b = before["used_memory"].as_u64().unwrap_or(0);
    let a = after["used_memory"].as_u64().unwrap_or(0);
    b.saturating_sub(a)
}

#[async_trait]
impl Actuator for RedisActuator {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn timeout(&self) -> Option<StdDuration> {
        self.timeout
    }

    fn supports_dry_run(&self) -> bool {
        true
    }

    fn reversible(&self, action: &str) -> bool {
        action == "set_capacity"
    }

    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let started = Instant::now();
        bounded(req.timeout, &req.action, self.act_inner(req, started)).await
    }

    async fn revert(&self, req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        bounded(req.timeout, "the revert", self.revert_inner(req, done)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefixes_are_escaped_and_patterns_are_not_templates() {
        assert_eq!(glob_escape(r"a*b?[c]\d"), r"a\*b\?\[c\]\\d");
        let (sel, n) = clear_params(&json!({"prefix": "t:*:"}), false, 10).unwrap();
        assert_eq!(sel, Selection::Pattern(r"t:\*:*".into()));
        assert_eq!(n, 10);
        for (p, want) in [
            (json!({"pattern": "s:{{ $labels.x }}*"}), "not a template"),
            (json!({"pattern": "**"}), "allow_flush"),
            (json!({"prefix": ""}), "allow_flush"),
            (json!({"all": true}), "allow_flush"),
            (json!({"pattern": "a*", "prefix": "b"}), "exactly one"),
            (json!({}), "exactly one"),
            (json!({"pattern": "a*", "max_keys": 11}), "max_keys"),
            (json!({"pattern": "a*", "max_keys": 0}), "max_keys"),
            (json!({"pattern": "a*", "bogus": 1}), "unknown param"),
            (json!({"pattern": 3}), "must be a string"),
        ] {
            let e = clear_params(&p, false, 10).unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
        assert_eq!(
            clear_params(&json!({"all": true}), true, 10).unwrap().0,
            Selection::All
        );
    }

    #[test]
    fn bounds_are_checked_at_build() {
        let cfg = |y: &str| -> RedisActuatorConfig { serde_saphyr::from_str(y).unwrap() };
        assert!(RedisActuator::build("c", &cfg("capacity: {min: 1048576, max: 8388608}")).is_ok());
        for (y, want) in [
            ("capacity: {min: 9, max: 8}", "greater than max"),
            ("capacity: {min: 0, max: 8}", "at least 1"),
            ("max_keys: 0", "max_keys"),
            ("batch: 0", "batch"),
            (
                "url: 'redis://h:1'\ntls: {insecure_skip_verify: true}",
                "rediss://",
            ),
        ] {
            let e = RedisActuator::build("c", &cfg(y)).err().expect(y);
            assert!(e.to_string().contains(want), "{y}: {e}");
        }
        let c = cfg("capacity: {min: 1048576, max: 8388608}");
        assert!(
            c.check_params("set_capacity", &json!({"factor": 2}))
                .is_ok()
        );
        assert!(
            c.check_params("set_capacity", &json!({"value": 1}))
                .is_err()
        );
        let c = cfg("{}");
        assert!(
            c.check_params("set_capacity", &json!({"factor": 2}))
                .unwrap_err()
                .contains("no `capacity")
        );
    }
}
