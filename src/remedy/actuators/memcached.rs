//! The `memcached` actuator, over the text protocol: `clear_cache` (`flush_all`, with an
//! optional delay) and `set_capacity` (`cache_memlimit`, in megabytes within `capacity`
//! bounds; reversible). Before and after come from `stats` (`curr_items`, `bytes`,
//! `limit_maxbytes`).

use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::adjust::{Adjust, Bounds, Plan, Setting};
use super::bounded::{Failure, bounded};
use crate::common::Duration;
use crate::remedy::actuator::{ActionOutcome, ActionRequest, ActionStatus, Actuator, RemedyError};

fn default_address() -> String {
    "127.0.0.1:11211".to_string()
}

/// `stats` answers are a few KiB; anything bigger is not memcached talking.
const MAX_REPLY: usize = 256 * 1024;
/// The longest `flush_all` delay accepted (a day).
const MAX_DELAY_S: u64 = 86_400;
const MIB: u64 = 1024 * 1024;
/// `cache_memlimit`, in megabytes, as `set_capacity` reports it.
const LIMIT: Setting<'static> = Setting {
    key: "limit_mb",
    name: "cache_memlimit",
    unit: " MB",
    integer: true,
};

/// `type: memcached` under `actuators:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemcachedActuatorConfig {
    /// `HOST:PORT` of the server. Default `127.0.0.1:11211`.
    #[serde(default = "default_address")]
    pub address: String,
    /// Bounds for `set_capacity`, in megabytes (`cache_memlimit`'s unit): `{min: 64, max: 4096}`.
    /// Without them `set_capacity` is refused.
    #[serde(default)]
    pub capacity: Option<Bounds>,
    /// How long one action may take. A step's `timeout` overrides it.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

impl MemcachedActuatorConfig {
    /// Checks a step's params at config load.
    pub fn check_params(&self, action: &str, params: &serde_json::Value) -> Result<(), String> {
        match action {
            "clear_cache" => delay_param(params).map(|_| ()),
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

/// `clear_cache`'s only param: `delay` (whole seconds, 0 to a day).
fn delay_param(params: &serde_json::Value) -> Result<u64, String> {
    if let Some(o) = params.as_object()
        && let Some(k) = o.keys().find(|k| *k != "delay")
    {
        return Err(format!("unknown param `{k}`; expected delay"));
    }
    match params.get("delay") {
        None | Some(serde_json::Value::Null) => Ok(0),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .filter(|d| *d <= MAX_DELAY_S)
            .ok_or_else(|| {
                format!("`delay` must be whole seconds from 0 to {MAX_DELAY_S}, got {v}")
            }),
    }
}

/// A running `memcached` actuator.
pub struct MemcachedActuator {
    address: String,
    capacity: Option<Bounds>,
    timeout: Option<StdDuration>,
}

/// One connection for one action (the text protocol; requests are whole lines built from
/// numbers only, never from alert data).
struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(address: &str) -> Result<Conn, String> {
        let sock = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to {address}: {e}"))?;
        Ok(Conn {
            sock,
            buf: Vec::new(),
        })
    }

    /// Sends `line` and reads the reply up to a line for which `last` is true.
    async fn call(&mut self, line: &str, last: fn(&str) -> bool) -> Result<Vec<String>, String> {
        self.sock
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("{line}: {e}"))?;
        let mut lines = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(i) = memchr::memchr(b'\n', &self.buf) {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                let l = String::from_utf8_lossy(&l).trim_end().to_string();
                if l == "ERROR" || l.starts_with("CLIENT_ERROR") || l.starts_with("SERVER_ERROR") {
                    return Err(format!("{line}: memcached answered {l:?}"));
                }
                let done = last(&l);
                lines.push(l);
                if done {
                    return Ok(lines);
                }
            }
            let n = self
                .sock
                .read(&mut chunk)
                .await
                .map_err(|e| format!("{line}: {e}"))?;
            if n == 0 {
                return Err(format!("{line}: connection closed mid-reply"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if self.buf.len() + lines.len() * 64 > MAX_REPLY {
                return Err(format!("{line}: reply larger than {MAX_REPLY} bytes"));
            }
        }
    }

    /// `stats` as (name, value) pairs.
    async fn stats(&mut self) -> Result<Vec<(String, String)>, String> {
        let lines = self.call("stats", |l| l == "END").await?;
        Ok(lines
            .iter()
            .filter_map(|l| {
                let mut it = l.strip_prefix("STAT ")?.splitn(2, ' ');
                Some((it.next()?.to_string(), it.next()?.to_string()))
            })
            .collect())
    }

    async fn stat(&mut self, names: &[&str]) -> Result<Vec<u64>, String> {
        let s = self.stats().await?;
        names
            .iter()
            .map(|n| {
                s.iter()
                    .find(|(k, _)| k == n)
                    .and_then(|(_, v)| v.parse().ok())
                    .ok_or_else(|| format!("stats has no {n}"))
            })
            .collect()
    }

    async fn usage(&mut self) -> Result<serde_json::Value, String> {
        let v = self.stat(&["curr_items", "bytes"]).await?;
        Ok(serde_json::json!({"curr_items": v[0], "bytes": v[1]}))
    }

    /// The memory limit, megabytes.
    async fn limit_mb(&mut self) -> Result<u64, String> {
        Ok(self.stat(&["limit_maxbytes"]).await?[0] / MIB)
    }

    /// `cache_memlimit` and a read-back.
    async fn set_limit_mb(&mut self, mb: u64) -> Result<(), String> {
        self.call(&format!("cache_memlimit {mb}"), |l| l == "OK")
            .await?;
        let got = self.limit_mb().await?;
        if got != mb {
            return Err(format!("set cache_memlimit {mb} but read back {got} MB"));
        }
        Ok(())
    }
}

impl MemcachedActuator {
    pub fn build(name: &str, cfg: &MemcachedActuatorConfig) -> Result<Self, RemedyError> {
        let invalid = |reason: String| RemedyError::Config {
            name: name.into(),
            reason,
        };
        if cfg
            .address
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(invalid(format!(
                "address {:?}: expected HOST:PORT, e.g. 127.0.0.1:11211",
                cfg.address
            )));
        }
        if let Some(b) = cfg.capacity {
            b.validate()
                .map_err(|e| invalid(format!("capacity: {e}")))?;
            if b.min < 1.0 || b.min.fract() != 0.0 || b.max.fract() != 0.0 {
                return Err(invalid(
                    "capacity: min and max are whole megabytes, min at least 1".into(),
                ));
            }
        }
        Ok(MemcachedActuator {
            address: cfg.address.clone(),
            capacity: cfg.capacity,
            timeout: cfg.timeout.map(|d| d.std()),
        })
    }

    async fn clear(&self, req: &ActionRequest, c: &mut Conn) -> Result<ActionOutcome, String> {
        let delay = delay_param(&req.params)?;
        let before = c.usage().await?;
        let when = if delay == 0 {
            String::new()
        } else {
            format!(" in {delay} s")
        };
        if req.dry_run {
            return Ok(ActionOutcome::new(
                ActionStatus::Ok,
                format!(
                    "dry run: would flush all {} items{when} (flush_all)",
                    before["curr_items"]
                ),
            )
            .changed(before, serde_json::Value::Null));
        }
        let cmd = if delay == 0 {
            "flush_all".to_string()
        } else {
            format!("flush_all {delay}")
        };
        c.call(&cmd, |l| l == "OK").await?;
        let after = c.usage().await?;
        let mut o = ActionOutcome::new(
            ActionStatus::Ok,
            format!(
                "flushed all items{when} ({cmd}); {} items held {} bytes before",
                before["curr_items"], before["bytes"]
            ),
        )
        .changed(before.clone(), after);
        // memcached frees flushed items lazily: what was held is what the flush released
        o.data = serde_json::json!({
            "items_flushed": before["curr_items"],
            "bytes_released": before["bytes"],
            "delay_s": delay,
        });
        Ok(o)
    }

    async fn set_capacity(
        &self,
        req: &ActionRequest,
        c: &mut Conn,
    ) -> Result<ActionOutcome, String> {
        let outer = self
            .capacity
            .ok_or("the actuator has no `capacity: {min, max}` bounds")?;
        let adjust = Adjust::from_params(&req.params, &[])?;
        let bounds = adjust.bounds(outer)?;
        let current = c.limit_mb().await?;
        let plan = LIMIT.plan(current as f64, &adjust, bounds, req.dry_run);
        Ok(Self::carry_out(c, plan).await)
    }

    /// Sets `cache_memlimit` as `plan` says (if at all) and reports.
    async fn carry_out(c: &mut Conn, plan: Plan) -> ActionOutcome {
        match plan.to {
            Some(to) => {
                let written = c.set_limit_mb(to as u64).await.map_err(Failure::from);
                plan.finish(written)
            }
            None => plan.outcome,
        }
    }

    async fn act_inner(&self, req: &ActionRequest) -> ActionOutcome {
        let r = async {
            let mut c = Conn::open(&self.address).await?;
            match req.action.as_str() {
                "clear_cache" => self.clear(req, &mut c).await,
                "set_capacity" => self.set_capacity(req, &mut c).await,
                other => Err(format!(
                    "a memcached actuator performs clear_cache or set_capacity, not `{other}`"
                )),
            }
        }
        .await;
        r.unwrap_or_else(|e| ActionOutcome::new(ActionStatus::Failed, e))
    }

    async fn revert_inner(&self, req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        if req.action != "set_capacity" {
            return ActionOutcome::new(
                ActionStatus::Noop,
                format!("`{}` cannot be reverted", req.action),
            );
        }
        let values = match LIMIT.revert_of(done) {
            Ok(v) => v,
            Err(why) => return ActionOutcome::new(ActionStatus::Noop, why),
        };
        let r = async {
            let mut c = Conn::open(&self.address).await?;
            let current = c.limit_mb().await?;
            let plan = LIMIT.plan_revert(current as f64, values, req.dry_run);
            Ok::<_, String>(Self::carry_out(&mut c, plan).await)
        }
        .await;
        r.unwrap_or_else(|e| ActionOutcome::new(ActionStatus::Failed, e))
    }
}

#[async_trait]
impl Actuator for MemcachedActuator {
    fn kind(&self) -> &'static str {
        "memcached"
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
        bounded(req.timeout, &req.action, self.act_inner(req)).await
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
    fn params_and_bounds_are_checked() {
        assert_eq!(delay_param(&json!({})), Ok(0));
        assert_eq!(delay_param(&json!({"delay": 30})), Ok(30));
        assert!(delay_param(&json!({"delay": -1})).is_err());
        assert!(delay_param(&json!({"delay": 100000})).is_err());
        assert!(delay_param(&json!({"pattern": "x"})).is_err());
        let cfg = |y: &str| -> MemcachedActuatorConfig { serde_saphyr::from_str(y).unwrap() };
        assert!(MemcachedActuator::build("m", &cfg("capacity: {min: 64, max: 1024}")).is_ok());
        for (y, want) in [
            ("capacity: {min: 65, max: 64}", "greater than max"),
            ("capacity: {min: 0.5, max: 64}", "whole megabytes"),
            ("address: nowhere", "HOST:PORT"),
        ] {
            let e = MemcachedActuator::build("m", &cfg(y)).err().expect(y);
            assert!(e.to_string().contains(want), "{y}: {e}");
        }
        let c = cfg("capacity: {min: 64, max: 1024}");
        assert!(
            c.check_params("set_capacity", &json!({"factor": 2, "max": 512}))
                .is_ok()
        );
        assert!(
            c.check_params("set_capacity", &json!({"factor": 2, "max": 2048}))
                .is_err()
        );
    }
}
