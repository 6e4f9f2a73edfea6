//! `medic-sim`: a simulated inference service for medic to heal (tests, benches, demos).
//! Not part of the `medic` daemon binary.
//!
//! It models a model server under synthetic load, stepped every `--tick`:
//! - requests arrive at `load_rps`; `workers × per_worker_rps` are served per second; the rest
//!   wait in a queue of at most `max_queue`, and what overflows it fails (too few workers
//!   → errors);
//! - every served request takes `base_latency_s + latency_per_item_s × batch_size` (a big
//!   batch under load is slow);
//! - optionally a Redis workload: GETs over a working set of keys, a SET on each miss (so a
//!   Redis too small for the working set evicts and misses), and a one-shot fill with junk
//!   keys (memory pressure).
//!
//! Endpoints: `GET /health`, `GET /metrics` (Prometheus text: vLLM's latency histogram and
//! queue gauge names, plus `inference_*`), `GET|PUT /admin/config` (`batch_size`,
//! `workers`, JSON), `GET|PUT /fault` (the load model), `PUT /fault/redis_load`,
//! `POST /fault/redis_fill`. The first line on stdout is `{"listening":"HOST:PORT"}`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(name = "medic-sim", about = "A simulated inference service to heal")]
struct Args {
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Redis URL for the cache workload and the fill fault.
    #[arg(long)]
    redis: Option<String>,
    /// Initial batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: u32,
    /// Initial worker count.
    #[arg(long, default_value_t = 2)]
    workers: u32,
    /// Model step, in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
}

/// Largest batch size or worker count the admin API accepts.
const MAX_KNOB: u32 = 4096;
/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Keys written per Redis pipeline.
const PIPELINE: u64 = 500;
/// Most keys one fill writes.
const MAX_FILL_KEYS: u64 = 10_000_000;

/// The load model (`/fault`); every field optional in a PUT.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Fault {
    /// Requests arriving per second.
    load_rps: f64,
    /// Latency of a request at batch size 0, seconds.
    base_latency_s: f64,
    /// Latency added per unit of batch size, seconds.
    latency_per_item_s: f64,
    /// Requests one worker serves per second.
    per_worker_rps: f64,
    /// Requests that may wait; more fail.
    max_queue: f64,
}

impl Default for Fault {
    fn default() -> Self {
        Fault {
            load_rps: 0.0,
            base_latency_s: 0.01,
            latency_per_item_s: 0.0,
            per_worker_rps: 50.0,
            max_queue: 100.0,
        }
    }
}

/// The knobs (`/admin/config`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Knobs {
    batch_size: u32,
    workers: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnobsUpdate {
    batch_size: Option<u32>,
    workers: Option<u32>,
}

/// The Redis workload (`/fault/redis_load`): reads over a working set, SET on a miss.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RedisLoad {
    prefix: String,
    keys: u64,
    value_bytes: usize,
    ops_per_sec: f64,
}

impl Default for RedisLoad {
    fn default() -> Self {
        RedisLoad {
            prefix: "sim:ws:".into(),
            keys: 0,
            value_bytes: 1000,
            ops_per_sec: 0.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RedisFill {
    prefix: String,
    keys: u64,
    #[serde(default = "default_value_bytes")]
    value_bytes: usize,
}

fn default_value_bytes() -> usize {
    1000
}

#[derive(Default)]
struct Counters {
    ok: u64,
    errors: u64,
    /// Per bucket of [`BUCKETS`], then +Inf (not cumulative).
    buckets: [u64; BUCKETS.len() + 1],
    sum: f64,
    cache_hits: u64,
    cache_misses: u64,
    redis_errors: u64,
}

struct Sim {
    knobs: Knobs,
    fault: Fault,
    redis_load: RedisLoad,
    queue: f64,
    /// Fractional arrivals carried to the next tick.
    arrivals: f64,
    /// Fractional Redis ops carried to the next tick.
    redis_ops: f64,
    c: Counters,
    rng: u64,
}

type Shared = Arc<Mutex<Sim>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Sim> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// One model step of `dt` seconds.
    fn step(&mut self, dt: f64) {
        let f = &self.fault;
        self.arrivals += f.load_rps.max(0.0) * dt;
        let n = self.arrivals.floor();
        self.arrivals -= n;
        self.queue += n;
        let capacity = f64::from(self.knobs.workers) * f.per_worker_rps.max(0.0) * dt;
        let served = self.queue.min(capacity).floor();
        self.queue -= served;
        if self.queue > f.max_queue {
            self.c.errors += (self.queue - f.max_queue).ceil() as u64;
            self.queue = f.max_queue.max(0.0);
        }
        if served > 0.0 {
            let latency =
                f.base_latency_s + f.latency_per_item_s * f64::from(self.knobs.batch_size);
            let i = BUCKETS
                .iter()
                .position(|b| latency <= *b)
                .unwrap_or(BUCKETS.len());
            self.c.buckets[i] += served as u64;
            self.c.sum += latency * served;
            self.c.ok += served as u64;
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64: good enough to pick keys
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn metrics(&self) -> String {
        let mut o = String::new();
        let c = &self.c;
        o.push_str("# HELP vllm:e2e_request_latency_seconds Request latency.\n# TYPE vllm:e2e_request_latency_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += c.buckets[i];
            let _ = writeln!(
                o,
                "vllm:e2e_request_latency_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        cum += c.buckets[BUCKETS.len()];
        let _ = writeln!(
            o,
            "vllm:e2e_request_latency_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let _ = writeln!(o, "vllm:e2e_request_latency_seconds_sum {}", c.sum);
        let _ = writeln!(o, "vllm:e2e_request_latency_seconds_count {cum}");
        let gauges = [
            ("vllm:num_requests_waiting", self.queue.floor()),
            ("inference_queue_depth", self.queue.floor()),
            ("inference_batch_size", f64::from(self.knobs.batch_size)),
            ("inference_workers", f64::from(self.knobs.workers)),
        ];
        for (name, v) in gauges {
            let _ = writeln!(o, "# TYPE {name} gauge\n{name} {v}");
        }
        o.push_str("# TYPE inference_requests_total counter\n");
        let _ = writeln!(o, "inference_requests_total{{status=\"ok\"}} {}", c.ok);
        let _ = writeln!(
            o,
            "inference_requests_total{{status=\"error\"}} {}",
            c.errors
        );
        for (name, v) in [
            ("inference_cache_hits_total", c.cache_hits),
            ("inference_cache_misses_total", c.cache_misses),
            ("inference_cache_errors_total", c.redis_errors),
        ] {
            let _ = writeln!(o, "# TYPE {name} counter\n{name} {v}");
        }
        o
    }
}

fn bad(msg: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": msg.into()})),
    )
        .into_response()
}

async fn health(State(app): State<App>) -> Response {
    if lock(&app.sim).knobs.workers == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, "no workers\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [("content-type", "text/plain; version=0.0.4")],
        lock(&app.sim).metrics(),
    )
        .into_response()
}

async fn get_config(State(app): State<App>) -> Json<Knobs> {
    Json(lock(&app.sim).knobs)
}

async fn put_config(State(app): State<App>, Json(u): Json<KnobsUpdate>) -> Response {
    for v in [u.batch_size, u.workers].into_iter().flatten() {
        if !(1..=MAX_KNOB).contains(&v) {
            return bad(format!("values must be 1..={MAX_KNOB}, got {v}"));
        }
    }
    let mut s = lock(&app.sim);
    if let Some(b) = u.batch_size {
        s.knobs.batch_size = b;
    }
    if let Some(w) = u.workers {
        s.knobs.workers = w;
    }
    Json(s.knobs).into_response()
}

async fn get_fault(State(app): State<App>) -> Json<Fault> {
    Json(lock(&app.sim).fault.clone())
}

async fn put_fault(State(app): State<App>, Json(patch): Json<serde_json::Value>) -> Response {
    let mut s = lock(&app.sim);
    // merge the given fields over the current model
    let mut cur = serde_json::to_value(&s.fault).unwrap_or_default();
    let (Some(c), Some(p)) = (cur.as_object_mut(), patch.as_object()) else {
        return bad("expected a JSON object");
    };
    for (k, v) in p {
        c.insert(k.clone(), v.clone());
    }
    match serde_json::from_value::<Fault>(cur) {
        Ok(f) => {
            s.fault = f;
            Json(s.fault.clone()).into_response()
        }
        Err(e) => bad(e.to_string()),
    }
}

async fn put_redis_load(State(app): State<App>, Json(l): Json<RedisLoad>) -> Response {
    if app.redis.is_none() {
        return bad("started without --redis");
    }
    lock(&app.sim).redis_load = l.clone();
    Json(l).into_response()
}

async fn redis_fill(State(app): State<App>, Json(f): Json<RedisFill>) -> Response {
    let Some(client) = app.redis.clone() else {
        return bad("started without --redis");
    };
    if f.keys > MAX_FILL_KEYS {
        return bad(format!("at most {MAX_FILL_KEYS} keys"));
    }
    let mut conn = match connect(&client).await {
        Ok(c) => c,
        Err(e) => return bad(format!("redis: {e}")),
    };
    let value = vec![b'x'; f.value_bytes];
    let (mut written, mut errors) = (0u64, 0u64);
    let mut i = 0;
    while i < f.keys {
        let end = (i + PIPELINE).min(f.keys);
        let mut p = redis::pipe();
        for k in i..end {
            p.cmd("SET").arg(format!("{}{k}", f.prefix)).arg(&value);
        }
        // a pipeline fails on its first error: OOM under `noeviction` is the fault itself
        if p.query_async::<Vec<redis::Value>>(&mut conn).await.is_err() {
            errors += 1;
            break;
        }
        written += end - i;
        i = end;
    }
    Json(serde_json::json!({"written": written, "errors": errors})).into_response()
}

async fn connect(client: &redis::Client) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// The Redis workload: each tick, `ops_per_sec × dt` GETs over the working set, a SET for
/// every miss.
async fn redis_tick(app: &App, dt: f64, conn: &mut Option<redis::aio::MultiplexedConnection>) {
    let Some(client) = &app.redis else { return };
    let (keys, load) = {
        let mut s = lock(&app.sim);
        let l = s.redis_load.clone();
        if l.ops_per_sec <= 0.0 || l.keys == 0 {
            return;
        }
        s.redis_ops += l.ops_per_sec * dt;
        let n = s.redis_ops.floor();
        s.redis_ops -= n;
        let keys: Vec<String> = (0..n as u64)
            .map(|_| format!("{}{}", l.prefix, s.next_rand() % l.keys))
            .collect();
        (keys, l)
    };
    if keys.is_empty() {
        return;
    }
    if conn.is_none() {
        *conn = connect(client).await.ok();
    }
    let Some(c) = conn.as_mut() else {
        lock(&app.sim).c.redis_errors += 1;
        return;
    };
    let mut p = redis::pipe();
    for k in &keys {
        p.cmd("GET").arg(k);
    }
    let got: Vec<Option<Vec<u8>>> = match p.query_async(c).await {
        Ok(v) => v,
        Err(_) => {
            *conn = None;
            lock(&app.sim).c.redis_errors += 1;
            return;
        }
    };
    let misses: Vec<&String> = keys
        .iter()
        .zip(&got)
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k)
        .collect();
    {
        let mut s = lock(&app.sim);
        s.c.cache_hits += (keys.len() - misses.len()) as u64;
        s.c.cache_misses += misses.len() as u64;
    }
    if !misses.is_empty() {
        let value = vec![b'v'; load.value_bytes];
        let mut p = redis::pipe();
        for k in misses {
            p.cmd("SET").arg(k).arg(&value).ignore();
        }
        if p.query_async::<()>(c).await.is_err() {
            lock(&app.sim).c.redis_errors += 1;
        }
    }
}

#[derive(Clone)]
struct App {
    sim: Shared,
    redis: Option<redis::Client>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let redis = match args.redis.as_deref().map(redis::Client::open).transpose() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("medic-sim: --redis: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let app = App {
        sim: Arc::new(Mutex::new(Sim {
            knobs: Knobs {
                batch_size: args.batch_size.clamp(1, MAX_KNOB),
                workers: args.workers.min(MAX_KNOB),
            },
            fault: Fault::default(),
            redis_load: RedisLoad::default(),
            queue: 0.0,
            arrivals: 0.0,
            redis_ops: 0.0,
            c: Counters::default(),
            rng: 0x9E37_79B9_7F4A_7C15,
        })),
        redis,
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("medic-sim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::from(1);
        }
    };
    match listener.local_addr() {
        Ok(a) => println!("{}", serde_json::json!({"listening": a.to_string()})),
        Err(e) => {
            eprintln!("medic-sim: {e}");
            return std::process::ExitCode::from(1);
        }
    }
    let ticker = app.clone();
    let tick = Duration::from_millis(args.tick_ms.max(1));
    tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = None;
        loop {
            iv.tick().await;
            lock(&ticker.sim).step(tick.as_secs_f64());
            // bounded: a stuck Redis delays the workload, never the model
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                redis_tick(&ticker, tick.as_secs_f64(), &mut conn),
            )
            .await;
        }
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/admin/config", get(get_config).put(put_config))
        .route("/fault", get(get_fault).put(put_fault))
        .route("/fault/redis_load", put(put_redis_load))
        .route("/fault/redis_fill", post(redis_fill))
        .with_state(app);
    if let Err(e) = axum::serve(listener, router).await {
        eprintln!("medic-sim: {e}");
        return std::process::ExitCode::from(1);
    }
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(batch: u32, workers: u32, fault: Fault) -> Sim {
        Sim {
            knobs: Knobs {
                batch_size: batch,
                workers,
            },
            fault,
            redis_load: RedisLoad::default(),
            queue: 0.0,
            arrivals: 0.0,
            redis_ops: 0.0,
            c: Counters::default(),
            rng: 1,
        }
    }

    #[test]
    fn too_few_workers_fail_requests_and_more_workers_stop_it() {
        let f = Fault {
            load_rps: 100.0,
            per_worker_rps: 30.0,
            max_queue: 10.0,
            ..Fault::default()
        };
        let mut s = sim(8, 2, f);
        for _ in 0..100 {
            s.step(0.1);
        }
        assert!(s.c.errors > 0, "{}", s.c.errors);
        let before = s.c.errors;
        s.knobs.workers = 4;
        for _ in 0..100 {
            s.step(0.1);
        }
        assert_eq!(s.c.errors, before);
    }

    #[test]
    fn latency_grows_with_batch_size() {
        let f = Fault {
            load_rps: 10.0,
            latency_per_item_s: 0.05,
            ..Fault::default()
        };
        let mut s = sim(32, 2, f);
        s.step(1.0);
        // 0.01 + 32 × 0.05 = 1.61 s: the (1, 2.5] bucket
        assert_eq!(s.c.buckets[7], 10);
        s.knobs.batch_size = 4;
        s.step(1.0);
        // 0.21 s: the (0.1, 0.25] bucket
        assert_eq!(s.c.buckets[4], 10);
        assert!(s.metrics().contains("inference_batch_size 4\n"));
    }
}
