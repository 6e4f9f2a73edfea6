//! memcached collector: the text protocol's `stats` command over TCP, mapped to
//! memcached_exporter's names. A memcached that is down or slow yields `memcached_up 0` and a
//! counted error within the round budget.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::target::{OutageLog, TargetLabels, round_budget};
use super::{BuildContext, BuildError, CollectError, Collector, Schedule};
use crate::common::Duration;
use crate::store::Sample;

fn default_address() -> String {
    "127.0.0.1:11211".to_string()
}

/// `stats` answers are a few KiB; anything bigger is not memcached talking.
const MAX_REPLY: usize = 256 * 1024;

/// `type: memcached`: one memcached server, read with `stats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemcachedConfig {
    /// `HOST:PORT` of the server. Default `127.0.0.1:11211`.
    #[serde(default = "default_address")]
    pub address: String,
    /// The `instance` label. Default: `address`.
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

impl MemcachedConfig {
    /// Makes the collector; connects to nothing.
    pub fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Collector>, BuildError> {
        let schedule = ctx.schedule(self.interval, self.timeout)?;
        check_host_port(&self.address).map_err(|why| {
            ctx.invalid(format!(
                "address {:?}: {why}; expected HOST:PORT, e.g. 127.0.0.1:11211 or [::1]:11211",
                self.address
            ))
        })?;
        let instance = self
            .instance
            .clone()
            .unwrap_or_else(|| self.address.clone());
        Ok(Arc::new(MemcachedCollector {
            name: ctx.name.to_string(),
            schedule,
            address: self.address.clone(),
            target: TargetLabels::new(&instance, &self.labels),
            errors: AtomicU64::new(0),
            outage: OutageLog::default(),
        }))
    }
}

/// Checks `HOST:PORT`: a port 1-65535 and a host name, IPv4 address or bracketed IPv6 one.
pub fn check_host_port(address: &str) -> Result<(), &'static str> {
    let (host, port) = address.rsplit_once(':').ok_or("no port")?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err("the port is not a number from 1 to 65535"),
    }
    if let Some(v6) = host.strip_prefix('[') {
        let v6 = v6
            .strip_suffix(']')
            .ok_or("unclosed '[' around the IPv6 address")?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "not an IPv6 address inside '[...]'")?;
        return Ok(());
    }
    if host.is_empty() {
        return Err("no host");
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets");
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err("the host is not a host name or IP address");
    }
    Ok(())
}

/// The running memcached collector.
pub struct MemcachedCollector {
    name: String,
    schedule: Schedule,
    address: String,
    target: TargetLabels,
    errors: AtomicU64,
    outage: OutageLog,
}

#[derive(Debug, thiserror::Error)]
enum StatsError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(StdDuration),
    #[error("unexpected reply: {0}")]
    Protocol(String),
}

/// Sends `stats` and reads the reply up to `END`. An error reply fails at once.
async fn stats(address: &str) -> Result<String, StatsError> {
    let mut sock = tokio::net::TcpStream::connect(address).await?;
    sock.write_all(b"stats\r\n").await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    // where the first line not yet looked at starts
    let mut line_start = 0;
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(StatsError::Protocol(
                "connection closed before END".to_string(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = memchr::memchr(b'\n', &buf[line_start..]) {
            let line = &buf[line_start..line_start + i];
            line_start += i + 1;
            if line == b"END\r" || line == b"END" {
                // Politeness only: the reply is complete either way.
                let _ = sock.write_all(b"quit\r\n").await;
                buf.truncate(line_start);
                return String::from_utf8(buf)
                    .map_err(|_| StatsError::Protocol("reply is not UTF-8".to_string()));
            }
            // ERROR, CLIENT_ERROR ..., SERVER_ERROR ...: no END follows
            if !line.starts_with(b"STAT ") {
                let text = String::from_utf8_lossy(&line[..line.len().min(200)]);
                return Err(StatsError::Protocol(text.trim_end().to_string()));
            }
        }
        if buf.len() > MAX_REPLY {
            return Err(StatsError::Protocol(format!(
                "reply longer than {MAX_REPLY} bytes"
            )));
        }
    }
}

/// memcached_exporter's plain series: `stats` field → metric name.
fn metric_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "uptime" => "memcached_uptime_seconds",
        "time" => "memcached_time_seconds",
        "rusage_user" => "memcached_process_user_cpu_seconds_total",
        "rusage_system" => "memcached_process_system_cpu_seconds_total",
        "bytes" => "memcached_current_bytes",
        "limit_maxbytes" => "memcached_limit_bytes",
        "curr_items" => "memcached_current_items",
        "total_items" => "memcached_items_total",
        "evictions" => "memcached_items_evicted_total",
        "reclaimed" => "memcached_items_reclaimed_total",
        "curr_connections" => "memcached_current_connections",
        "max_connections" => "memcached_max_connections",
        "total_connections" => "memcached_connections_total",
        "rejected_connections" => "memcached_connections_rejected_total",
        "listen_disabled_num" => "memcached_connections_listener_disabled_total",
        "bytes_read" => "memcached_read_bytes_total",
        "bytes_written" => "memcached_written_bytes_total",
        "threads" => "memcached_threads",
        "conn_yields" => "memcached_connections_yielded_total",
        _ => return None,
    })
}

/// `memcached_commands_total{command,status}` exactly as memcached_exporter writes it:
/// `stats` field → (command, status). `set`/`hit` is derived (see [`stats_samples`]).
fn command_for(key: &str) -> Option<(&'static str, &'static str)> {
    Some(match key {
        "get_hits" => ("get", "hit"),
        "get_misses" => ("get", "miss"),
        "cmd_flush" => ("flush", "hit"),
        "touch_hits" => ("touch", "hit"),
        "touch_misses" => ("touch", "miss"),
        "delete_hits" => ("delete", "hit"),
        "delete_misses" => ("delete", "miss"),
        "incr_hits" => ("incr", "hit"),
        "incr_misses" => ("incr", "miss"),
        "decr_hits" => ("decr", "hit"),
        "decr_misses" => ("decr", "miss"),
        "cas_hits" => ("cas", "hit"),
        "cas_misses" => ("cas", "miss"),
        "cas_badval" => ("cas", "badval"),
        _ => return None,
    })
}

/// medic's own series for `stats` fields memcached_exporter leaves out. They are not statuses
/// of `memcached_commands_total`: an expired or flushed get is also a `get` miss, so
/// `sum by (command)` would count it twice.
fn extra_for(key: &str) -> Option<&'static str> {
    Some(match key {
        "get_expired" => "medic_memcached_get_expired_total",
        "get_flushed" => "medic_memcached_get_flushed_total",
        _ => return None,
    })
}

/// Maps a `stats` reply to samples (memcached_exporter's names).
pub fn stats_samples(reply: &str, target: &TargetLabels, now_ms: i64, out: &mut Vec<Sample>) {
    let command = |c: &str, s: &str| {
        target.series("memcached_commands_total", &[("command", c), ("status", s)])
    };
    let (mut cmd_set, mut cas) = (None, [None; 3]);
    for line in reply.lines() {
        let mut parts = line.trim_end_matches('\r').split(' ');
        let (Some("STAT"), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if key == "version" {
            out.push(Sample::new(
                target.series("memcached_version", &[("version", value)]),
                now_ms,
                1.0,
            ));
            continue;
        }
        let Ok(v) = value.parse::<f64>() else {
            continue;
        };
        match key {
            "cmd_set" => cmd_set = Some(v),
            "cas_hits" => cas[0] = Some(v),
            "cas_misses" => cas[1] = Some(v),
            "cas_badval" => cas[2] = Some(v),
            _ => {}
        }
        if let Some(name) = metric_for(key).or_else(|| extra_for(key)) {
            out.push(Sample::new(target.series(name, &[]), now_ms, v));
        } else if let Some((c, s)) = command_for(key) {
            out.push(Sample::new(command(c, s), now_ms, v));
        }
    }
    // memcached counts every cas in cmd_set too; memcached_exporter takes them out
    if let (Some(set), [Some(h), Some(m), Some(b)]) = (cmd_set, cas) {
        out.push(Sample::new(
            command("set", "hit"),
            now_ms,
            set - (h + m + b),
        ));
    }
}

#[async_trait]
impl Collector for MemcachedCollector {
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
        let result = match tokio::time::timeout(budget, stats(&self.address)).await {
            Ok(r) => r,
            Err(_) => Err(StatsError::Timeout(budget)),
        };
        let up = match result {
            Ok(reply) => {
                self.outage.ok(&self.name);
                stats_samples(&reply, &self.target, now_ms, out);
                1.0
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.outage
                    .failed(&self.name, &format_args!("memcached {}: {e}", self.address));
                0.0
            }
        };
        out.push(Sample::new(
            self.target.series("memcached_up", &[]),
            now_ms,
            up,
        ));
        out.push(Sample::new(
            self.target.series("medic_memcached_errors_total", &[]),
            now_ms,
            self.errors.load(Ordering::Relaxed) as f64,
        ));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_mapping() {
        let reply = "STAT pid 1\r\nSTAT version 1.6.21\r\nSTAT bytes 1234\r\nSTAT limit_maxbytes 67108864\r\nSTAT get_hits 5\r\nSTAT get_misses 2\r\nSTAT evictions 3\r\nSTAT curr_connections 4\r\nSTAT rusage_user 0.5\r\nEND\r\n";
        let t = TargetLabels::new("m:11211", &BTreeMap::new());
        let mut out = Vec::new();
        stats_samples(reply, &t, 1, &mut out);
        let get = |s: &str| {
            out.iter()
                .find(|x| x.labels.to_string() == s)
                .unwrap_or_else(|| panic!("{s} not in {out:#?}"))
                .value
        };
        assert_eq!(get("memcached_current_bytes{instance=\"m:11211\"}"), 1234.0);
        assert_eq!(
            get("memcached_limit_bytes{instance=\"m:11211\"}"),
            67108864.0
        );
        assert_eq!(
            get("memcached_commands_total{command=\"get\", instance=\"m:11211\", status=\"hit\"}"),
            5.0
        );
        assert_eq!(
            get("memcached_commands_total{command=\"get\", instance=\"m:11211\", status=\"miss\"}"),
            2.0
        );
        assert_eq!(
            get("memcached_items_evicted_total{instance=\"m:11211\"}"),
            3.0
        );
        assert_eq!(
            get("memcached_current_connections{instance=\"m:11211\"}"),
            4.0
        );
        assert_eq!(
            get("memcached_version{instance=\"m:11211\", version=\"1.6.21\"}"),
            1.0
        );
        assert_eq!(out.len(), 9 - 1);
    }

    #[test]
    fn commands_match_memcached_exporter() {
        let reply = "STAT cmd_set 10\r\nSTAT cas_hits 2\r\nSTAT cas_misses 1\r\nSTAT cas_badval 3\r\nSTAT get_misses 5\r\nSTAT get_expired 2\r\nSTAT get_flushed 1\r\nSTAT cmd_touch 4\r\nSTAT touch_hits 3\r\nSTAT touch_misses 1\r\nEND\r\n";
        let t = TargetLabels::new("m", &BTreeMap::new());
        let mut out = Vec::new();
        stats_samples(reply, &t, 1, &mut out);
        let text: Vec<String> = out
            .iter()
            .map(|s| format!("{} {}", s.labels, s.value))
            .collect();
        let has = |s: &str| text.iter().any(|x| x == s);
        assert!(
            has("memcached_commands_total{command=\"set\", instance=\"m\", status=\"hit\"} 4"),
            "{text:#?}"
        );
        assert!(has(
            "memcached_commands_total{command=\"cas\", instance=\"m\", status=\"badval\"} 3"
        ));
        assert!(has("medic_memcached_get_expired_total{instance=\"m\"} 2"));
        assert!(has("medic_memcached_get_flushed_total{instance=\"m\"} 1"));
        // no status memcached_exporter lacks (they would double-count under sum by (command))
        for s in &text {
            for bad in ["expired\"", "flushed\"", "total\""] {
                assert!(
                    !(s.starts_with("memcached_commands_total") && s.contains(bad)),
                    "{s}"
                );
            }
        }
    }

    #[test]
    fn addresses() {
        for ok in [
            "127.0.0.1:11211",
            "cache-1.internal:1",
            "[::1]:11211",
            "h_x:65535",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "localhost",
            ":11211",
            "h:",
            "h:0",
            "h:65536",
            "h:port",
            "::1:11211",
            "[::1:11211",
            "[nope]:1",
            "h st:1",
            "http://h:1",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
