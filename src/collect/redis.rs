//! Redis collector: `PING` (timed) and `INFO` each round, mapped to redis_exporter's names so
//! its dashboards and alert rules work unchanged. A Redis that is down or slow yields
//! `redis_up 0` and a counted error within the round budget, never a stalled scheduler.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;

use super::target::{OutageLog, TargetLabels, round_budget};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::redis::{RedisClient, RedisTarget};
use crate::common::tls::TlsConfig;
use crate::common::{Duration, Secret};
use crate::store::Sample;

fn default_url() -> String {
    "redis://127.0.0.1:6379".to_string()
}

/// `type: redis`: one Redis server, read with `INFO`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://HOST:PORT` or, for TLS, `rediss://HOST:PORT`. Default `redis://127.0.0.1:6379`.
    /// Prefer `password` over a password written in the URL (that is redacted from every
    /// print of this config, and warned about).
    #[serde(default = "default_url")]
    pub url: String,
    /// ACL user name (Redis 6+). Default: the URL's, else `default`.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, as a secret: `{file: /etc/medic/redis.pass}`, `{env: REDIS_PASSWORD}` or
    /// (discouraged) `{value: ...}`. Never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// TLS settings for a `rediss://` URL: `ca_file` (PEM; the CAs to trust instead of the
    /// system's, relative to the config file's folder) and `insecure_skip_verify`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The `instance` label. Default: `HOST:PORT` from the URL.
    #[serde(default)]
    pub instance: Option<String>,
    /// Extra labels added to every series of this server.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How often to collect. Default: `global.collect_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long one round may take. Default: `global.collect_timeout`, at most the interval.
    #[serde(default)]
    pub timeout: Option<Duration>,
}

// by hand, not derived: the URL may carry a password
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RedisConfig");
        self.target().debug_fields(&mut d);
        d.field("instance", &self.instance)
            .field("labels", &self.labels)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisConfig {
    /// The connection settings, shared with the `redis` actuator.
    pub fn target(&self) -> RedisTarget<'_> {
        RedisTarget {
            url: &self.url,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            tls: &self.tls,
        }
    }

    /// Makes the collector. Reads the password; connects to nothing.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        Ok(Arc::new(RedisCollector::new(self, ctx)?))
    }
}

/// The running Redis collector.
pub struct RedisCollector {
    name: String,
    schedule: Schedule,
    client: RedisClient,
    /// A connection kept between rounds; dropped after an error so the next round reconnects.
    /// The lock is only held to clone or replace it, never across an await.
    conn: Mutex<Option<MultiplexedConnection>>,
    target: TargetLabels,
    errors: Mutex<u64>,
    outage: OutageLog,
}

#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("timed out after {0:?}")]
    Timeout(StdDuration),
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
}

impl RedisCollector {
    pub fn new(cfg: &RedisConfig, ctx: &BuildContext<'_>) -> Result<Self, BuildError> {
        let schedule = ctx.schedule(cfg.interval, cfg.timeout)?;
        let built = cfg
            .target()
            .client("collector", ctx.name)
            .map_err(|e| ctx.invalid(e.to_string()))?;
        let instance = cfg.instance.clone().unwrap_or_else(|| built.addr.clone());
        Ok(RedisCollector {
            name: ctx.name.to_string(),
            schedule,
            client: built,
            conn: Mutex::new(None),
            target: TargetLabels::new(&instance, &cfg.labels),
            errors: Mutex::new(0),
            outage: OutageLog::default(),
        })
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_cached(&self, c: Option<MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = c;
    }

    /// PING and INFO: the ping's duration and INFO's text.
    async fn round(&self, budget: StdDuration) -> Result<(f64, String), RoundError> {
        let mut conn = match self.cached() {
            Some(c) => c,
            None => {
                let c = self.client.connect(budget).await?;
                self.set_cached(Some(c.clone()));
                c
            }
        };
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        let ping = started.elapsed().as_secs_f64();
        let info: String = redis::cmd("INFO").query_async(&mut conn).await?;
        Ok((ping, info))
    }
}

/// The redis_exporter name of an `INFO` field, and whether it is a counter.
fn metric_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "uptime_in_seconds" => "redis_uptime_in_seconds",
        "connected_clients" => "redis_connected_clients",
        "blocked_clients" => "redis_blocked_clients",
        "maxclients" => "redis_max_clients",
        "used_memory" => "redis_memory_used_bytes",
        "used_memory_rss" => "redis_memory_used_rss_bytes",
        "used_memory_peak" => "redis_memory_used_peak_bytes",
        "used_memory_lua" => "redis_memory_used_lua_bytes",
        "maxmemory" => "redis_memory_max_bytes",
        "mem_fragmentation_ratio" => "redis_mem_fragmentation_ratio",
        "total_connections_received" => "redis_connections_received_total",
        "rejected_connections" => "redis_rejected_connections_total",
        "total_commands_processed" => "redis_commands_processed_total",
        "instantaneous_ops_per_sec" => "redis_instantaneous_ops_per_sec",
        "total_net_input_bytes" => "redis_net_input_bytes_total",
        "total_net_output_bytes" => "redis_net_output_bytes_total",
        "expired_keys" => "redis_expired_keys_total",
        "evicted_keys" => "redis_evicted_keys_total",
        "keyspace_hits" => "redis_keyspace_hits_total",
        "keyspace_misses" => "redis_keyspace_misses_total",
        "pubsub_channels" => "redis_pubsub_channels",
        "connected_slaves" => "redis_connected_slaves",
        "used_cpu_sys" => "redis_cpu_sys_seconds_total",
        "used_cpu_user" => "redis_cpu_user_seconds_total",
        "rdb_changes_since_last_save" => "redis_rdb_changes_since_last_save",
        "loading" => "redis_loading_dump_file",
        _ => return None,
    })
}

/// Maps `INFO` text to samples (redis_exporter's names).
pub fn info_samples(info: &str, target: &TargetLabels, now_ms: i64, out: &mut Vec<Sample>) {
    let mut version = "";
    let mut role = "";
    let mut mode = "";
    for line in info.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            "redis_version" => version = value,
            "role" => role = value,
            "redis_mode" => mode = value,
            _ => {}
        }
        if let Some(name) = metric_for(key) {
            if let Ok(v) = value.parse::<f64>() {
                out.push(Sample::new(target.series(name, &[]), now_ms, v));
            }
        } else if let Some(db) = key.strip_prefix("db") {
            // "db0:keys=1,expires=0,avg_ttl=0"
            if db.is_empty() || !db.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            for field in value.split(',') {
                let Some((k, v)) = field.split_once('=') else {
                    continue;
                };
                let Ok(v) = v.parse::<f64>() else { continue };
                let (name, v) = match k {
                    "keys" => ("redis_db_keys", v),
                    "expires" => ("redis_db_keys_expiring", v),
                    "avg_ttl" => ("redis_db_avg_ttl_seconds", v / 1000.0),
                    _ => continue,
                };
                out.push(Sample::new(target.series(name, &[("db", key)]), now_ms, v));
            }
        }
    }
    out.push(Sample::new(
        target.series(
            "redis_instance_info",
            &[
                ("redis_version", version),
                ("role", role),
                ("redis_mode", mode),
            ],
        ),
        now_ms,
        1.0,
    ));
}

#[async_trait]
impl Collector for RedisCollector {
    fn name(&self) -> &str {
        &self.name
    }

    fn interval(&self) -> StdDuration {
        self.schedule.interval
    }

    fn timeout(&self) -> StdDuration {
        self.schedule.timeout
    }

    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let budget = round_budget(self.schedule.timeout);
        let result = match tokio::time::timeout(budget, self.round(budget)).await {
            Ok(r) => r,
            Err(_) => Err(RoundError::Timeout(budget)),
        };
        let up = match result {
            Ok((ping, info)) => {
                self.outage.ok(&self.name);
                out.push(Sample::new(
                    self.target.series("medic_redis_ping_duration_seconds", &[]),
                    now_ms,
                    ping,
                ));
                info_samples(&info, &self.target, now_ms, out);
                1.0
            }
            Err(e) => {
                // a broken or stuck connection is not reused
                self.set_cached(None);
                *self.errors.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                self.outage.failed(&self.name, &e);
                0.0
            }
        };
        out.push(Sample::new(self.target.series("redis_up", &[]), now_ms, up));
        let errors = *self.errors.lock().unwrap_or_else(|e| e.into_inner());
        out.push(Sample::new(
            self.target.series("medic_redis_errors_total", &[]),
            now_ms,
            errors as f64,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:42\r\n\r\n# Clients\r\nconnected_clients:3\r\nblocked_clients:1\r\n# Memory\r\nused_memory:1048576\r\nmaxmemory:0\r\n# Stats\r\nkeyspace_hits:10\r\nkeyspace_misses:4\r\nevicted_keys:2\r\nexpired_keys:5\r\ntotal_commands_processed:99\r\ninstantaneous_ops_per_sec:7\r\n# Replication\r\nrole:master\r\n# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=1500\r\ndb3:keys=1,expires=0,avg_ttl=0,subexpiry=0\r\n";

    #[test]
    fn info_mapping() {
        let t = TargetLabels::new("r:6379", &BTreeMap::new());
        let mut out = Vec::new();
        info_samples(INFO, &t, 5, &mut out);
        let get = |s: &str| {
            out.iter()
                .find(|x| x.labels.to_string() == s)
                .unwrap_or_else(|| panic!("{s} not in {out:#?}"))
                .value
        };
        assert_eq!(get("redis_keyspace_hits_total{instance=\"r:6379\"}"), 10.0);
        assert_eq!(get("redis_keyspace_misses_total{instance=\"r:6379\"}"), 4.0);
        assert_eq!(
            get("redis_memory_used_bytes{instance=\"r:6379\"}"),
            1048576.0
        );
        assert_eq!(get("redis_memory_max_bytes{instance=\"r:6379\"}"), 0.0);
        assert_eq!(get("redis_evicted_keys_total{instance=\"r:6379\"}"), 2.0);
        assert_eq!(get("redis_expired_keys_total{instance=\"r:6379\"}"), 5.0);
        assert_eq!(get("redis_connected_clients{instance=\"r:6379\"}"), 3.0);
        assert_eq!(get("redis_blocked_clients{instance=\"r:6379\"}"), 1.0);
        assert_eq!(
            get("redis_commands_processed_total{instance=\"r:6379\"}"),
            99.0
        );
        assert_eq!(
            get("redis_instantaneous_ops_per_sec{instance=\"r:6379\"}"),
            7.0
        );
        assert_eq!(get("redis_db_keys{db=\"db0\", instance=\"r:6379\"}"), 12.0);
        assert_eq!(
            get("redis_db_keys_expiring{db=\"db0\", instance=\"r:6379\"}"),
            3.0
        );
        assert_eq!(
            get("redis_db_avg_ttl_seconds{db=\"db0\", instance=\"r:6379\"}"),
            1.5
        );
        assert_eq!(get("redis_db_keys{db=\"db3\", instance=\"r:6379\"}"), 1.0);
        assert_eq!(
            get(
                "redis_instance_info{instance=\"r:6379\", redis_mode=\"standalone\", redis_version=\"7.0.15\", role=\"master\"}"
            ),
            1.0
        );
    }
}
