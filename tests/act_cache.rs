//! The `redis` and `memcached` actuators against real redis-server and memcached on
//! loopback: what each action changes (read back from the server), dry runs that change
//! nothing, bounds, pattern clears that stay inside the pattern, reverts; and, end to end
//! through a real `medic run`, a cache cleared on memory pressure and grown on evictions
//! (Redis and memcached), the growth set back after the alert resolved (`revert_on_resolve`),
//! with the journal's structured outcome checked. Figures are printed:
//! `cargo test --test act_cache e2e -- --nocapture`.

#[path = "support/collectors.rs"]
mod collectors;
#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/sim.rs"]
mod sim;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use medic::remedy::actuators::memcached::{MemcachedActuator, MemcachedActuatorConfig};
use medic::remedy::actuators::redis::{RedisActuator, RedisActuatorConfig};
use medic::remedy::{ActionAlert, ActionRequest, ActionStatus, Actuator};
use serde_json::json;

fn request(action: &str, params: serde_json::Value, dry_run: bool) -> ActionRequest {
    ActionRequest {
        version: 1,
        action: action.into(),
        target: "cache".into(),
        params,
        alert: ActionAlert {
            name: "CacheTrouble".into(),
            labels: BTreeMap::from([("alertname".into(), "CacheTrouble".into())]),
            annotations: BTreeMap::new(),
            value: 1.0,
            starts_at: "2026-01-02T03:04:05.678Z".into(),
        },
        dry_run,
        idempotency_key: "k".into(),
        deadline: "2026-01-02T03:05:05.678Z".into(),
        timeout: Duration::from_secs(20),
    }
}

fn redis_actuator(port: u16, extra: &str) -> RedisActuator {
    let cfg: RedisActuatorConfig =
        serde_saphyr::from_str(&format!("url: redis://127.0.0.1:{port}/0\n{extra}")).unwrap();
    RedisActuator::build("cache", &cfg).unwrap()
}

fn redis_conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/0"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(10))
        .unwrap()
}

fn set_keys(c: &mut redis::Connection, prefix: &str, n: usize) {
    let mut p = redis::pipe();
    for i in 0..n {
        p.cmd("SET").arg(format!("{prefix}{i}")).arg("v").ignore();
    }
    p.query::<()>(c).unwrap();
}

fn count(c: &mut redis::Connection, pattern: &str) -> usize {
    // test-side check on a tiny database; the actuator itself never uses KEYS
    let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query(c).unwrap();
    keys.len()
}

fn maxmemory(c: &mut redis::Connection) -> u64 {
    let kv: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query(c)
        .unwrap();
    kv[1].parse().unwrap()
}

#[tokio::test]
async fn redis_clear_cache_stays_inside_the_pattern_and_its_bounds() {
    let server = collectors::redis(None);
    let mut c = redis_conn(server.port);
    set_keys(&mut c, "sess:a:", 500);
    set_keys(&mut c, "keep:", 50);
    // keys whose names hold glob and shell metacharacters, as a label value might
    set_keys(&mut c, "t:*$(touch /tmp/medic-pwned):", 3);
    set_keys(&mut c, "t:x$(touch /tmp/medic-pwned):", 4);
    let a = redis_actuator(server.port, "max_keys: 1000\nbatch: 64\n");

    // dry run: counts, removes nothing
    let o = a
        .act(&request("clear_cache", json!({"pattern": "sess:*"}), true))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert!(o.message.contains("would remove 500 keys"), "{}", o.message);
    assert_eq!(o.data["keys_matched"], 500);
    assert_eq!(count(&mut c, "*"), 557);

    // bounded in keys: max_keys 100 removes 100 and says it stopped there
    let o = a
        .act(&request(
            "clear_cache",
            json!({"pattern": "sess:*", "max_keys": 100}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.data["keys_removed"], 100, "{o:?}");
    assert_eq!(o.data["complete"], false);
    assert!(
        o.message.contains("stopped at max_keys 100"),
        "{}",
        o.message
    );
    assert_eq!(count(&mut c, "sess:*"), 400);
    assert_eq!(o.before["keys"], 557);
    assert_eq!(o.after["keys"], 457);

    // the rest, in batches; nothing outside the pattern is touched
    let o = a
        .act(&request("clear_cache", json!({"pattern": "sess:*"}), false))
        .await;
    assert_eq!(o.data["keys_removed"], 400, "{o:?}");
    assert_eq!(o.data["complete"], true);
    assert_eq!(count(&mut c, "sess:*"), 0);
    assert_eq!(count(&mut c, "keep:*"), 50);

    // a prefix is literal: its `*` matches only a `*`
    let o = a
        .act(&request(
            "clear_cache",
            json!({"prefix": "t:*$(touch /tmp/medic-pwned):"}),
            false,
        ))
        .await;
    assert_eq!(o.data["keys_removed"], 3, "{o:?}");
    assert_eq!(count(&mut c, "t:x*"), 4);
    assert_eq!(count(&mut c, "keep:*"), 50);

    // nothing left to match: noop
    let o = a
        .act(&request("clear_cache", json!({"pattern": "sess:*"}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Noop, "{o:?}");

    // the whole database only with allow_flush
    let o = a
        .act(&request("clear_cache", json!({"all": true}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(o.message.contains("allow_flush"), "{}", o.message);
    assert_eq!(count(&mut c, "keep:*"), 50);
    let flusher = redis_actuator(server.port, "allow_flush: true\n");
    let o = flusher
        .act(&request("clear_cache", json!({"all": true}), true))
        .await;
    assert!(
        o.message.contains("would empty the database (54 keys)"),
        "{o:?}"
    );
    assert_eq!(count(&mut c, "*"), 54);
    let o = flusher
        .act(&request("clear_cache", json!({"all": true}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.data["keys_removed"], 54);
    let dbsize: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(dbsize, 0);
}

#[tokio::test]
async fn redis_set_capacity_is_bounded_dry_runnable_and_reversible() {
    let server = collectors::redis(None);
    let mut c = redis_conn(server.port);
    let mib = 1024 * 1024;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(8 * mib)
        .query(&mut c)
        .unwrap();
    let a = redis_actuator(
        server.port,
        &format!("capacity: {{min: {}, max: {}}}\n", 4 * mib, 20 * mib),
    );
    assert!(a.reversible("set_capacity"));
    assert!(!a.reversible("clear_cache"));

    let o = a
        .act(&request("set_capacity", json!({"factor": 2}), true))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.before, json!({"maxmemory": 8 * mib}));
    assert_eq!(o.after, json!({"maxmemory": 16 * mib}));
    assert!(o.message.starts_with("dry run: would set"), "{}", o.message);
    assert_eq!(maxmemory(&mut c), 8 * mib, "a dry run changed maxmemory");

    let first = a
        .act(&request("set_capacity", json!({"factor": 2}), false))
        .await;
    assert_eq!(first.status, ActionStatus::Ok, "{first:?}");
    assert_eq!(maxmemory(&mut c), 16 * mib);
    // clamped to max, then at the bound: noop, nothing written
    let second = a
        .act(&request("set_capacity", json!({"factor": 2}), false))
        .await;
    assert_eq!(second.after, json!({"maxmemory": 20 * mib}), "{second:?}");
    assert_eq!(maxmemory(&mut c), 20 * mib);
    let third = a
        .act(&request("set_capacity", json!({"factor": 2}), false))
        .await;
    assert_eq!(third.status, ActionStatus::Noop, "{third:?}");
    assert_eq!(maxmemory(&mut c), 20 * mib);

    // revert restores the value before, only while it is still the one medic set
    let r = a
        .revert(&request("set_capacity", json!({}), false), &second)
        .await;
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
    assert_eq!(maxmemory(&mut c), 16 * mib);
    let r = a
        .revert(&request("set_capacity", json!({}), false), &second)
        .await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
    // someone else moves it: the revert of `first` leaves it and says why
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(12 * mib)
        .query(&mut c)
        .unwrap();
    let r = a
        .revert(&request("set_capacity", json!({}), false), &first)
        .await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
    assert!(
        r.message.contains("someone else changed it"),
        "{}",
        r.message
    );
    assert_eq!(maxmemory(&mut c), 12 * mib);

    // a step's own bounds may not reach outside the actuator's
    let o = a
        .act(&request(
            "set_capacity",
            json!({"factor": 2, "max": 40 * mib}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert_eq!(maxmemory(&mut c), 12 * mib);
}

#[tokio::test]
async fn redis_that_never_answers_times_out() {
    // accepts connections and says nothing
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let a = redis_actuator(port, "");
    let mut req = request("clear_cache", json!({"pattern": "x*"}), false);
    req.timeout = Duration::from_millis(500);
    let t = Instant::now();
    let o = a.act(&req).await;
    assert_eq!(o.status, ActionStatus::Timeout, "{o:?}");
    eprintln!(
        "FIGURE silent redis: outcome {:?} after {:?}",
        o.status,
        t.elapsed()
    );
}

#[tokio::test]
async fn memcached_that_never_answers_times_out() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let a = memcached_actuator(port);
    let mut req = request("clear_cache", json!({}), false);
    req.timeout = Duration::from_millis(500);
    let o = a.act(&req).await;
    assert_eq!(o.status, ActionStatus::Timeout, "{o:?}");
}

fn memcached_actuator(port: u16) -> MemcachedActuator {
    let cfg: MemcachedActuatorConfig = serde_saphyr::from_str(&format!(
        "address: 127.0.0.1:{port}\ncapacity: {{min: 16, max: 96}}\n"
    ))
    .unwrap();
    MemcachedActuator::build("mc", &cfg).unwrap()
}

#[tokio::test]
async fn memcached_clear_and_capacity() {
    let server = collectors::memcached(32);
    let mut m = collectors::Memc::connect(server.port);
    for i in 0..20 {
        m.set(&format!("k{i}"), "value");
    }
    let a = memcached_actuator(server.port);
    let limit = |m: &mut collectors::Memc| -> u64 {
        m.stats()["limit_maxbytes"].parse::<u64>().unwrap() / (1024 * 1024)
    };

    let o = a.act(&request("clear_cache", json!({}), true)).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert!(
        o.message.contains("would flush all 20 items"),
        "{}",
        o.message
    );
    assert!(m.get("k3"), "a dry run flushed");

    let o = a.act(&request("clear_cache", json!({}), false)).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.before["curr_items"], 20);
    assert_eq!(o.data["items_flushed"], 20);
    assert!(!m.get("k3"), "still there after flush_all");
    assert!(!m.get("k19"));

    // capacity: 32 → 64 → 96 (clamped) → noop; dry run writes nothing
    let o = a
        .act(&request("set_capacity", json!({"factor": 2}), true))
        .await;
    assert_eq!(o.after, json!({"limit_mb": 64}), "{o:?}");
    assert_eq!(limit(&mut m), 32);
    let first = a
        .act(&request("set_capacity", json!({"factor": 2}), false))
        .await;
    assert_eq!(first.status, ActionStatus::Ok, "{first:?}");
    assert_eq!(limit(&mut m), 64);
    let second = a
        .act(&request("set_capacity", json!({"factor": 2}), false))
        .await;
    assert_eq!(second.after, json!({"limit_mb": 96}), "{second:?}");
    assert_eq!(limit(&mut m), 96);
    let third = a
        .act(&request("set_capacity", json!({"step": 16}), false))
        .await;
    assert_eq!(third.status, ActionStatus::Noop, "{third:?}");
    assert_eq!(limit(&mut m), 96);

    let r = a
        .revert(&request("set_capacity", json!({}), false), &second)
        .await;
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
    assert_eq!(limit(&mut m), 64);
    let r = a
        .revert(&request("set_capacity", json!({}), false), &second)
        .await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
    assert_eq!(limit(&mut m), 64);
    // not reversible: clear_cache
    let r = a
        .revert(&request("clear_cache", json!({}), false), &o)
        .await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
}

// ---- end to end: a real medic daemon collecting from a real Redis ----

use sim::{journal_actions, wait_action, wait_alert, wait_journaled};

fn base(dir: &std::path::Path) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 500ms\n  collect_interval: 500ms\n",
        dir.join("state").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_redis_memory_pressure_clears_the_cache_by_pattern() {
    let server = collectors::redis(None);
    let mut c = redis_conn(server.port);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(16 * 1024 * 1024)
        .query(&mut c)
        .unwrap();
    set_keys(&mut c, "keep:", 100);
    // a literal `*`-prefixed key: the label-driven step below must remove it and nothing else
    set_keys(&mut c, "*$(touch /tmp/medic-pwned)", 2);
    let redis_url = format!("redis://127.0.0.1:{}/0", server.port);
    let sim = sim::Sim::start(&["--redis", &redis_url]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: cache
  interval: 500ms
  rules:
  - alert: RedisMemoryNearLimit
    expr: redis_memory_used_bytes / (redis_memory_max_bytes > 0) > 0.9
    labels:
      severity: warning
      # a label value full of glob and shell metacharacters
      tenant: "*$(touch /tmp/medic-pwned)"
    remediate:
    - action: clear_cache
      target: cache
      params: {prefix: "{{ $labels.tenant }}"}
      cooldown: 1h
    - action: clear_cache
      target: cache
      params: {pattern: "sim:junk:*"}
      cooldown: 1h
"#,
    )
    .unwrap();
    let config = format!(
        "{}collectors:\n  cache:\n    type: redis\n    url: {redis_url}\nactuators:\n  cache:\n    type: redis\n    url: {redis_url}\n    max_keys: 100000\n    timeout: 20s\nrule_files: [rules.yaml]\n",
        base(dir.path())
    );
    let medic = daemon::Medic::start(dir.path(), &config);
    // the fault: the simulated service fills Redis to its limit (noeviction refuses more)
    let t0 = Instant::now();
    let filled = sim
        .send(
            "POST",
            "/fault/redis_fill",
            json!({"prefix": "sim:junk:", "keys": 20000, "value_bytes": 1000}),
        )
        .await;
    eprintln!("fill: {filled}");
    wait_alert(&medic, "RedisMemoryNearLimit", true).await;
    let fired = t0.elapsed();
    wait_action(&medic, "RedisMemoryNearLimit", "clear_cache").await;
    let acted = t0.elapsed();
    wait_alert(&medic, "RedisMemoryNearLimit", false).await;
    let resolved = t0.elapsed();

    assert_eq!(count(&mut c, "sim:junk:*"), 0);
    assert_eq!(
        count(&mut c, "keep:*"),
        100,
        "keys outside the pattern were touched"
    );
    assert_eq!(
        count(&mut c, "*$(touch*"),
        0,
        "the literal prefix was not cleared"
    );
    assert!(!std::path::Path::new("/tmp/medic-pwned").exists());

    let rows = daemon::wait_for("both actions journaled", || async {
        let rows = journal_actions(dir.path());
        (rows.iter().filter(|r| r.finished_ms.is_some()).count() >= 2).then_some(rows)
    })
    .await;
    // the structured outcome: what each clear found, removed and left
    let junk_row = rows
        .iter()
        .find(|r| sim::result(r)["data"]["pattern"] == "sim:junk:*")
        .unwrap_or_else(|| panic!("{rows:?}"));
    let out = sim::result(junk_row);
    assert_eq!(out["status"], "ok", "{out}");
    assert!(out["data"]["keys_removed"].as_u64().unwrap() > 0, "{out}");
    assert_eq!(out["data"]["complete"], true, "{out}");
    assert!(
        out["before"]["used_memory"].as_u64().unwrap()
            > out["after"]["used_memory"].as_u64().unwrap(),
        "{out}"
    );
    assert_eq!(
        out["before"]["keys"].as_u64().unwrap() - out["after"]["keys"].as_u64().unwrap(),
        out["data"]["keys_removed"].as_u64().unwrap(),
        "{out}"
    );
    let lit = rows
        .iter()
        .map(sim::result)
        .find(|o| o["data"]["pattern"] == r"\*$(touch /tmp/medic-pwned)*")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(lit["data"]["keys_removed"], 2, "{lit}");
    let msgs: Vec<String> = rows.iter().filter_map(|r| r.message.clone()).collect();
    let junk = msgs
        .iter()
        .find(|m| m.contains("`sim:junk:*`"))
        .unwrap_or_else(|| panic!("{msgs:?}"));
    assert!(junk.contains("used_memory"), "{junk}");
    let literal = msgs
        .iter()
        .find(|m| m.contains(r"`\*$(touch /tmp/medic-pwned)*`"))
        .unwrap_or_else(|| panic!("the escaped prefix pattern is not in {msgs:?}"));
    assert!(literal.contains("removed 2 keys"), "{literal}");
    eprintln!(
        "FIGURE redis memory pressure: fill→firing {fired:?}, →clear_cache ok {acted:?}, →resolved {resolved:?}; {junk}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_redis_evictions_grow_the_capacity() {
    let server = collectors::redis(None);
    let mut c = redis_conn(server.port);
    let mib: u64 = 1024 * 1024;
    for (k, v) in [
        ("maxmemory", (4 * mib).to_string()),
        ("maxmemory-policy", "allkeys-lru".into()),
    ] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut c)
            .unwrap();
    }
    let redis_url = format!("redis://127.0.0.1:{}/0", server.port);
    let sim = sim::Sim::start(&["--redis", &redis_url]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: cache
  interval: 500ms
  rules:
  - alert: RedisEvictingKeys
    expr: rate(redis_evicted_keys_total[5s]) > 1
    labels: {severity: warning}
    remediate:
    - action: set_capacity
      target: cache
      params: {factor: 4}
      revert_on_resolve: true
      revert_after: 2s
      cooldown: 1h
"#,
    )
    .unwrap();
    let config = format!(
        "{}collectors:\n  cache:\n    type: redis\n    url: {redis_url}\nactuators:\n  cache:\n    type: redis\n    url: {redis_url}\n    capacity: {{min: {}, max: {}}}\n    timeout: 10s\nrule_files: [rules.yaml]\n",
        base(dir.path()),
        mib,
        64 * mib
    );
    let medic = daemon::Medic::start(dir.path(), &config);

    // the fault: a working set (~7 MB) bigger than the cache (4 MB)
    let t0 = Instant::now();
    sim.send(
        "PUT",
        "/fault/redis_load",
        json!({"prefix": "ws:", "keys": 6000, "value_bytes": 1000, "ops_per_sec": 2000}),
    )
    .await;
    wait_alert(&medic, "RedisEvictingKeys", true).await;
    let fired = t0.elapsed();
    wait_action(&medic, "RedisEvictingKeys", "set_capacity").await;
    let acted = t0.elapsed();
    assert_eq!(maxmemory(&mut c), 16 * mib);
    let evicted_at_action = evicted(&mut c);
    wait_alert(&medic, "RedisEvictingKeys", false).await;
    let resolved = t0.elapsed();
    let evicted_after = evicted(&mut c);
    // the working set (~7 MB) fits the grown cache (16 MB): no eviction since the action
    assert_eq!(evicted_after, evicted_at_action);
    let hits = sim_metric(&sim, "inference_cache_hits_total").await;
    let misses = sim_metric(&sim, "inference_cache_misses_total").await;

    // the burst is over and its keys are gone (as if they expired): shrinking back to
    // 4 MB evicts nothing then, so the revert does not bring the alert back
    sim.send("PUT", "/fault/redis_load", json!({"ops_per_sec": 0}))
        .await;
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();

    let (row, done) = wait_journaled(dir.path(), "set_capacity").await;
    assert_eq!(done["before"], json!({"maxmemory": 4 * mib}), "{done}");
    assert_eq!(done["after"], json!({"maxmemory": 16 * mib}), "{done}");
    let msg = row.message.clone().unwrap_or_default();
    assert!(
        msg.contains(&format!("maxmemory {} → {}", 4 * mib, 16 * mib)),
        "{msg}"
    );
    let (rrow, reverted) = wait_journaled(dir.path(), "revert:set_capacity").await;
    let restored = t0.elapsed();
    assert_eq!(rrow.status, medic::journal::ActionStatus::Ok, "{rrow:?}");
    assert_eq!(
        reverted["before"],
        json!({"maxmemory": 16 * mib}),
        "{reverted}"
    );
    assert_eq!(
        reverted["after"],
        json!({"maxmemory": 4 * mib}),
        "{reverted}"
    );
    assert_eq!(
        maxmemory(&mut c),
        4 * mib,
        "the revert did not restore maxmemory"
    );
    eprintln!(
        "FIGURE redis evictions: load→firing {fired:?}, →set_capacity ok {acted:?}, →resolved {resolved:?}, →reverted {restored:?}; {msg}; revert: {}; evicted_keys {evicted_at_action} at the action, {evicted_after} at resolve; sim cache hits {hits} misses {misses}",
        rrow.message.unwrap_or_default()
    );
}

fn evicted(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(c).unwrap();
    info.lines()
        .find_map(|l| l.trim_end().strip_prefix("evicted_keys:"))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn sim_metric(sim: &sim::Sim, name: &str) -> f64 {
    let body = sim::client()
        .get(sim.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    daemon::metric_value(&body, name).unwrap_or(f64::NAN)
}

// ---- the rule pack and the example config ----

#[path = "support/packs.rs"]
mod packs;

#[test]
fn cache_pack_unit_tests_pass_in_medic_and_promtool() {
    packs::unit_tests_pass("cache_test.yaml", "cache.yaml");
}

/// The example config loads every shipped pack with the actuators their steps name; a step
/// naming a missing actuator, an action its actuator cannot do, or params outside its
/// bounds would fail this.
#[test]
fn the_example_config_with_every_pack_checks() {
    let said = packs::example_config_checks("remediation.yaml", &[]);
    let packs: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/rules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert!(packs.len() >= 6, "{packs:?}");
    for pack in &packs {
        assert!(said.contains(pack), "{pack} not checked:\n{said}");
    }
    assert!(!said.contains("error"), "{said}");
}

/// Every medic.yaml example in the README's cache-and-knob subsections parses and its
/// actuators build (but for the secrets and CA files they name, which this machine lacks).
#[test]
fn readme_actuator_examples_build() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- remedy: caches and knobs -->").unwrap();
    let end = readme.find("<!-- /remedy: caches and knobs -->").unwrap();
    let mut n = 0;
    let mut all = BTreeMap::new();
    let mut rule_blocks = Vec::new();
    for block in readme[start..end].split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").unwrap()];
        if yaml.starts_with("# in a rule file") {
            rule_blocks.push(yaml);
            continue;
        }
        if !yaml.starts_with("actuators:") {
            continue;
        }
        let cfg: medic::config::Config = serde_saphyr::from_str(yaml)
            .unwrap_or_else(|e| panic!("README example does not parse: {e}\n{yaml}"));
        for (name, a) in &cfg.actuators {
            let one = BTreeMap::from([(name.clone(), a.clone())]);
            if let Err(e) = medic::remedy::build(&one) {
                let e = e.to_string();
                assert!(
                    ["password: ", "tls.ca_file", "ADMIN_TOKEN"]
                        .iter()
                        .any(|f| e.contains(f)),
                    "README example does not build: {e}\n{yaml}"
                );
            }
        }
        all.extend(cfg.actuators.clone());
        n += 1;
    }
    assert_eq!(n, 3);
    // the rule examples' ladders name those actuators with valid params; the knob's is
    // reverted after resolve
    assert_eq!(rule_blocks.len(), 2);
    let mut reverted = 0;
    for yaml in rule_blocks {
        let rules: Vec<serde_json::Value> = serde_saphyr::from_str(yaml)
            .unwrap_or_else(|e| panic!("README rule example does not parse: {e}\n{yaml}"));
        for r in rules {
            let steps: Vec<medic::rules::RemediateStep> =
                serde_json::from_value(r["remediate"].clone())
                    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
            medic::remedy::validate_ladder(&all, &steps)
                .unwrap_or_else(|e| panic!("README rule example: {e}\n{yaml}"));
            reverted += steps
                .iter()
                .filter(|s| s.revert_on_resolve && s.revert_after.is_some())
                .count();
        }
    }
    assert_eq!(reverted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_memcached_evictions_grow_the_memory_limit() {
    let server = collectors::memcached(8);
    let port = server.port;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: cache
  interval: 500ms
  rules:
  - alert: MemcachedEvictingItems
    expr: rate(memcached_items_evicted_total[5s]) > 1
    remediate:
    - {action: set_capacity, target: memcache, params: {factor: 4}, cooldown: 1h, revert_on_resolve: true, revert_after: 1s}
"#,
    )
    .unwrap();
    let config = format!(
        "{}collectors:\n  sessions:\n    type: memcached\n    address: 127.0.0.1:{port}\nactuators:\n  memcache:\n    type: memcached\n    address: 127.0.0.1:{port}\n    capacity: {{min: 8, max: 64}}\n    timeout: 5s\nrule_files: [rules.yaml]\n",
        base(dir.path())
    );
    let medic = daemon::Medic::start(dir.path(), &config);
    // the fault: a working set of ~13 MB cycled through an 8 MB cache
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut m = collectors::Memc::connect(port);
        let value = "v".repeat(1000);
        let mut i = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            m.set(&format!("ws:{}", i % 12_000), &value);
            i += 1;
        }
    });
    let t0 = Instant::now();
    wait_alert(&medic, "MemcachedEvictingItems", true).await;
    let fired = t0.elapsed();
    wait_action(&medic, "MemcachedEvictingItems", "set_capacity").await;
    let acted = t0.elapsed();
    let mut m = collectors::Memc::connect(port);
    assert_eq!(
        m.stats()["limit_maxbytes"],
        (32u64 * 1024 * 1024).to_string()
    );
    wait_alert(&medic, "MemcachedEvictingItems", false).await;
    let resolved = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let evictions = m.stats()["evictions"].clone();
    let (row, done) = wait_journaled(dir.path(), "set_capacity").await;
    assert_eq!(done["before"], json!({"limit_mb": 8}), "{done}");
    assert_eq!(done["after"], json!({"limit_mb": 32}), "{done}");
    let msg = row.message.clone().unwrap_or_default();
    assert!(msg.contains("cache_memlimit 8 → 32 MB"), "{msg}");
    // the writer stopped: memcached shrinks lazily (it evicts on later writes), so the
    // revert brings no eviction and no alert back
    let (rrow, reverted) = wait_journaled(dir.path(), "revert:set_capacity").await;
    let restored = t0.elapsed();
    assert_eq!(rrow.status, medic::journal::ActionStatus::Ok, "{rrow:?}");
    assert_eq!(reverted["after"], json!({"limit_mb": 8}), "{reverted}");
    assert_eq!(
        m.stats()["limit_maxbytes"],
        (8u64 * 1024 * 1024).to_string(),
        "the revert did not restore cache_memlimit"
    );
    eprintln!(
        "FIGURE memcached evictions: load→firing {fired:?}, →set_capacity ok {acted:?}, →resolved {resolved:?}, →reverted {restored:?}; {msg}; revert: {}; evictions {evictions} in all",
        rrow.message.unwrap_or_default()
    );
}
