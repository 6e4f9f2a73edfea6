//! The `knob` actuator against the simulated inference service (`medic-sim`, a real process
//! on loopback): read, compute within bounds, write, read back; dry runs; bounds held at
//! the minimum; reverts; and, end to end through a real `medic run`, a batch size cut on
//! high p95 latency and a pool scaled on errors, each set back after the alert resolved
//! (`revert_on_resolve`, `revert_after: 1s`), a revert that leaves a value a person changed,
//! and an escalation that carries what the action changed. Figures (fault → firing →
//! action → resolved → reverted) are printed: `cargo test --test act_knob e2e -- --nocapture`.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/sim.rs"]
mod sim;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use medic::remedy::actuators::knob::{KnobActuator, KnobConfig};
use medic::remedy::{ActionAlert, ActionRequest, ActionStatus, Actuator};
use serde_json::json;

fn request(action: &str, params: serde_json::Value, dry_run: bool) -> ActionRequest {
    ActionRequest {
        version: 1,
        action: action.into(),
        target: "batch".into(),
        params,
        alert: ActionAlert {
            name: "Slow".into(),
            labels: BTreeMap::from([
                ("alertname".into(), "Slow".into()),
                ("instance".into(), "\"}, \"workers\": 0, \"x\": {\"".into()),
            ]),
            annotations: BTreeMap::new(),
            value: 2.0,
            starts_at: "2026-01-02T03:04:05.678Z".into(),
        },
        dry_run,
        idempotency_key: "k".into(),
        deadline: "2026-01-02T03:05:05.678Z".into(),
        timeout: Duration::from_secs(10),
    }
}

fn knob(yaml: &str) -> KnobActuator {
    let cfg: KnobConfig = serde_saphyr::from_str(yaml).unwrap();
    KnobActuator::build("batch", &cfg).unwrap()
}

fn batch_knob(sim: &sim::Sim, min: u32, max: u32) -> KnobActuator {
    knob(&format!(
        "read: {{url: '{u}', pointer: /batch_size}}\nwrite: {{method: PUT, body: {{batch_size: $value}}}}\nmin: {min}\nmax: {max}\ntimeout: 5s\n",
        u = sim.url("/admin/config")
    ))
}

#[tokio::test]
async fn knob_sets_within_bounds_and_holds_at_the_minimum() {
    let sim = sim::Sim::start(&["--batch-size", "32", "--workers", "2"]);
    let k = batch_knob(&sim, 4, 64);
    assert!(k.reversible("set_batch_size") && k.reversible("scale_pool"));

    // dry run: reads, reports, writes nothing
    let o = k
        .act(&request("set_batch_size", json!({"factor": 0.5}), true))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.before, json!({"batch_size": 32}));
    assert_eq!(o.after, json!({"batch_size": 16}));
    assert!(
        o.message.contains("would set batch_size 32 → 16"),
        "{}",
        o.message
    );
    assert_eq!(sim.knobs().await["batch_size"], 32);

    // halve down to the minimum, then ask again: nothing crosses the bound
    let mut seen = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let o = k
            .act(&request("set_batch_size", json!({"factor": 0.5}), false))
            .await;
        seen.push(sim.knobs().await["batch_size"].as_u64().unwrap());
        outcomes.push(o);
    }
    assert_eq!(seen, [16, 8, 4, 4, 4]);
    assert_eq!(outcomes[2].status, ActionStatus::Ok);
    assert_eq!(outcomes[3].status, ActionStatus::Noop, "{:?}", outcomes[3]);
    assert!(
        outcomes[3]
            .message
            .contains("as far as the bounds 4..64 allow")
    );
    // a step's `min` narrows the actuator's
    let o = k
        .act(&request(
            "set_batch_size",
            json!({"value": 8, "min": 8}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    let o = k
        .act(&request(
            "set_batch_size",
            json!({"step": -4, "min": 8}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Noop, "{o:?}");
    assert_eq!(sim.knobs().await["batch_size"], 8);
    // ...but may not widen it
    let o = k
        .act(&request(
            "set_batch_size",
            json!({"factor": 0.5, "min": 1}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert_eq!(sim.knobs().await["batch_size"], 8);

    // workers through the same mechanism; the alert's labels (JSON metacharacters in
    // `instance`) never reach the body, which holds only the number
    let w = knob(&format!(
        "read: {{url: '{u}', pointer: /workers}}\nwrite: {{body: {{workers: $value}}}}\nmin: 1\nmax: 8\n",
        u = sim.url("/admin/config")
    ));
    let o = w
        .act(&request("scale_pool", json!({"step": 3}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(sim.knobs().await, json!({"batch_size": 8, "workers": 5}));
}

#[tokio::test]
async fn knob_reverts_only_its_own_value() {
    let sim = sim::Sim::start(&["--batch-size", "32"]);
    let k = batch_knob(&sim, 1, 64);
    let done = k
        .act(&request("set_batch_size", json!({"factor": 0.25}), false))
        .await;
    assert_eq!(done.after, json!({"batch_size": 8}), "{done:?}");
    // dry-run revert: says, does not write
    let r = k
        .revert(&request("set_batch_size", json!({}), true), &done)
        .await;
    assert!(r.message.contains("would set batch_size 8 → 32"), "{r:?}");
    assert_eq!(sim.knobs().await["batch_size"], 8);
    let r = k
        .revert(&request("set_batch_size", json!({}), false), &done)
        .await;
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
    assert_eq!(sim.knobs().await["batch_size"], 32);

    // someone else changes it after medic: the revert leaves it and says why
    let done = k
        .act(&request("set_batch_size", json!({"factor": 0.5}), false))
        .await;
    sim.send("PUT", "/admin/config", json!({"batch_size": 12}))
        .await;
    let r = k
        .revert(&request("set_batch_size", json!({}), false), &done)
        .await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
    assert!(r.message.contains("not the 16 medic set"), "{}", r.message);
    assert_eq!(sim.knobs().await["batch_size"], 12);
}

/// One request as received: method, URI, content type, authorization, body.
type Seen = Arc<Mutex<Vec<(String, String, String, String, String)>>>;

/// An admin API that records what it is sent, answers GETs with `state`, and ignores
/// writes (so a read-back cannot confirm) or hangs, as told.
async fn recorder(
    state: serde_json::Value,
    hang: bool,
) -> (
    String,
    Arc<Mutex<Vec<(String, String, String, String, String)>>>,
) {
    use axum::extract::Request;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let seen = s2.clone();
        let state = state.clone();
        async move {
            if hang {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let h = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            seen.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.to_string(),
                h("content-type"),
                h("authorization"),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            axum::Json(state)
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn knob_fails_when_the_value_does_not_stick_and_times_out_on_a_silent_api() {
    let (base, seen) = recorder(json!({"spec": {"replicas": 3}}), false).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t0ken\n").unwrap();
    let k = knob(&format!(
        "read: {{url: '{base}/scale', pointer: /spec/replicas}}\nwrite: {{method: PATCH, content_type: application/merge-patch+json, body: {{spec: {{replicas: $value}}}}}}\nbearer_token: {{file: {}}}\nmin: 1\nmax: 10\n",
        dir.path().join("token").display()
    ));
    let o = k
        .act(&request("scale_pool", json!({"step": 2}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(
        o.message.contains("wrote 5 but read back 3"),
        "{}",
        o.message
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}"); // GET, PATCH, GET
    let (m, uri, ct, auth, body) = &seen[1];
    assert_eq!((m.as_str(), uri.as_str()), ("PATCH", "/scale"));
    assert_eq!(ct, "application/merge-patch+json");
    assert_eq!(auth, "Bearer t0ken");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        json!({"spec": {"replicas": 5}})
    );

    let (base, _) = recorder(json!({}), true).await;
    let k = knob(&format!(
        "read: {{url: '{base}/x', pointer: /v}}\nwrite: {{body: {{v: $value}}}}\nmin: 1\nmax: 10\n"
    ));
    let mut req = request("set_value", json!({"value": 2}), false);
    req.timeout = Duration::from_millis(500);
    let t = Instant::now();
    let o = k.act(&req).await;
    assert_eq!(o.status, ActionStatus::Timeout, "{o:?}");
    eprintln!(
        "FIGURE silent admin API: {:?} after {:?}",
        o.status,
        t.elapsed()
    );
}

// ---- end to end: a real medic daemon scraping medic-sim ----

fn journal_messages(dir: &std::path::Path) -> Vec<String> {
    sim::journal_actions(dir)
        .into_iter()
        .filter_map(|r| r.message)
        .collect()
}

use sim::{wait_action, wait_alert, wait_journaled};

fn config(dir: &std::path::Path, sim: &sim::Sim) -> String {
    format!(
        r#"global:
  listen_address: 127.0.0.1:0
  state_dir: {state}
  evaluation_interval: 500ms
  collect_interval: 500ms
collectors:
  inference:
    type: scrape
    url: {metrics}
actuators:
  inference-batch:
    type: knob
    read: {{url: "{admin}", pointer: /batch_size}}
    write: {{method: PUT, body: {{batch_size: $value}}}}
    min: 1
    max: 64
    timeout: 5s
  inference-pool:
    type: knob
    read: {{url: "{admin}", pointer: /workers}}
    write: {{method: PUT, body: {{workers: $value}}}}
    min: 1
    max: 8
    timeout: 5s
rule_files: [rules.yaml]
"#,
        state = dir.join("state").display(),
        metrics = sim.url("/metrics"),
        admin = sim.url("/admin/config"),
    )
}

const LATENCY_RULE: &str = r#"groups:
- name: inference
  interval: 500ms
  rules:
  - alert: InferenceLatencyHigh
    expr: histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[5s]))) > 1
    labels: {severity: warning}
    remediate:
    - action: set_batch_size
      target: inference-batch
      params: {factor: 0.25, min: 2}
      revert_on_resolve: true
      revert_after: 1s
      cooldown: 1h
"#;

/// The load under which each batch item costs 50 ms (batch 32 → 1.61 s per request).
fn slow_batches() -> serde_json::Value {
    json!({"load_rps": 50, "latency_per_item_s": 0.05, "per_worker_rps": 50})
}

/// High p95 → batch size 32 → 8 → resolved → the load ends → after `revert_after` the
/// revert restores 32 (read back from the service) and the journal holds both outcomes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_p95_latency_cuts_the_batch_size_and_restores_it_after_resolve() {
    let sim = sim::Sim::start(&["--batch-size", "32", "--workers", "4"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), LATENCY_RULE).unwrap();
    let medic = daemon::Medic::start(dir.path(), &config(dir.path(), &sim));
    let t0 = Instant::now();
    sim.send("PUT", "/fault", slow_batches()).await;
    wait_alert(&medic, "InferenceLatencyHigh", true).await;
    let fired = t0.elapsed();
    wait_action(&medic, "InferenceLatencyHigh", "set_batch_size").await;
    let acted = t0.elapsed();
    assert_eq!(sim.knobs().await["batch_size"], 8);
    wait_alert(&medic, "InferenceLatencyHigh", false).await;
    let resolved = t0.elapsed();
    // the burst is over: no load, so the restored batch size does not bring the alert back
    sim.send("PUT", "/fault", json!({"load_rps": 0})).await;

    let (row, done) = wait_journaled(dir.path(), "set_batch_size").await;
    assert_eq!(row.status, medic::journal::ActionStatus::Ok);
    assert_eq!(done["status"], "ok", "{done}");
    assert_eq!(done["before"], json!({"batch_size": 32}), "{done}");
    assert_eq!(done["after"], json!({"batch_size": 8}), "{done}");
    assert!(
        row.message
            .as_deref()
            .unwrap_or("")
            .contains("batch_size 32 → 8"),
        "{row:?}"
    );
    // the log line carries what changed
    let logged = sim::log_lines(&medic, "batch_size 32 → 8");
    assert!(!logged.is_empty(), "{}", medic.logs());
    assert_eq!(logged[0]["fields"]["action"], "set_batch_size");

    let (rrow, reverted) = wait_journaled(dir.path(), "revert:set_batch_size").await;
    let restored = t0.elapsed();
    assert_eq!(rrow.status, medic::journal::ActionStatus::Ok, "{rrow:?}");
    assert_eq!(reverted["before"], json!({"batch_size": 8}), "{reverted}");
    assert_eq!(reverted["after"], json!({"batch_size": 32}), "{reverted}");
    assert_eq!(rrow.incident_id, row.incident_id);
    assert_eq!(
        sim.knobs().await["batch_size"],
        32,
        "the revert did not restore it"
    );
    eprintln!(
        "FIGURE p95 latency: fault→firing {fired:?}, →set_batch_size ok {acted:?}, →resolved {resolved:?}, →reverted {restored:?}; {}; revert: {}",
        row.message.unwrap_or_default(),
        rrow.message.unwrap_or_default()
    );
}

/// Someone sets the batch size by hand after medic did: the revert after resolve leaves
/// their value and the journal says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_revert_leaves_a_value_someone_else_changed() {
    let sim = sim::Sim::start(&["--batch-size", "32", "--workers", "4"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), LATENCY_RULE).unwrap();
    let medic = daemon::Medic::start(dir.path(), &config(dir.path(), &sim));
    let t0 = Instant::now();
    sim.send("PUT", "/fault", slow_batches()).await;
    wait_action(&medic, "InferenceLatencyHigh", "set_batch_size").await;
    let acted = t0.elapsed();
    assert_eq!(sim.knobs().await["batch_size"], 8);
    // an operator picks 12 (0.65 s per request: fast enough to resolve)
    sim.send("PUT", "/admin/config", json!({"batch_size": 12}))
        .await;
    wait_alert(&medic, "InferenceLatencyHigh", false).await;
    let resolved = t0.elapsed();
    sim.send("PUT", "/fault", json!({"load_rps": 0})).await;
    let (rrow, refused) = wait_journaled(dir.path(), "revert:set_batch_size").await;
    let refused_at = t0.elapsed();
    assert_eq!(rrow.status, medic::journal::ActionStatus::Noop, "{rrow:?}");
    assert_eq!(refused["status"], "noop", "{refused}");
    assert_eq!(refused["before"], json!({"batch_size": 12}), "{refused}");
    assert_eq!(refused["after"], json!({"batch_size": 12}), "{refused}");
    let why = rrow.message.clone().unwrap_or_default();
    assert!(
        why.contains("batch_size is now 12, not the 8 medic set"),
        "{why}"
    );
    assert_eq!(
        sim.knobs().await["batch_size"],
        12,
        "the revert overwrote a person's value"
    );
    eprintln!(
        "FIGURE revert refused: fault→set_batch_size ok {acted:?}, →resolved {resolved:?}, →revert refused {refused_at:?}; {why}"
    );
}

/// Errors → workers 2 → 5 → resolved → the load ends → the revert sets 2 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_errors_scale_the_pool_and_restore_it_after_resolve() {
    let sim = sim::Sim::start(&["--batch-size", "8", "--workers", "2"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: inference
  interval: 500ms
  rules:
  - alert: InferenceErrorRateHigh
    expr: |
      sum(rate(inference_requests_total{status="error"}[5s]))
        / sum(rate(inference_requests_total[5s])) > 0.05
    labels: {severity: critical}
    remediate:
    - action: scale_pool
      target: inference-pool
      params: {step: 3}
      revert_on_resolve: true
      revert_after: 1s
      cooldown: 1h
"#,
    )
    .unwrap();
    let medic = daemon::Medic::start(dir.path(), &config(dir.path(), &sim));
    // the fault: 100 req/s for 2 workers of 30 req/s; a queue of 10, the rest fail
    let t0 = Instant::now();
    sim.send(
        "PUT",
        "/fault",
        json!({"load_rps": 100, "per_worker_rps": 30, "max_queue": 10}),
    )
    .await;
    wait_alert(&medic, "InferenceErrorRateHigh", true).await;
    let fired = t0.elapsed();
    wait_action(&medic, "InferenceErrorRateHigh", "scale_pool").await;
    let acted = t0.elapsed();
    assert_eq!(sim.knobs().await["workers"], 5);
    wait_alert(&medic, "InferenceErrorRateHigh", false).await;
    let resolved = t0.elapsed();
    sim.send("PUT", "/fault", json!({"load_rps": 0})).await;
    let (row, done) = wait_journaled(dir.path(), "scale_pool").await;
    assert_eq!(done["before"], json!({"workers": 2}), "{done}");
    assert_eq!(done["after"], json!({"workers": 5}), "{done}");
    let (rrow, reverted) = wait_journaled(dir.path(), "revert:scale_pool").await;
    let restored = t0.elapsed();
    assert_eq!(rrow.status, medic::journal::ActionStatus::Ok, "{rrow:?}");
    assert_eq!(reverted["before"], json!({"workers": 5}), "{reverted}");
    assert_eq!(reverted["after"], json!({"workers": 2}), "{reverted}");
    assert_eq!(
        sim.knobs().await["workers"],
        2,
        "the revert did not restore it"
    );
    eprintln!(
        "FIGURE error rate: fault→firing {fired:?}, →scale_pool ok {acted:?}, →resolved {resolved:?}, →reverted {restored:?}; {}; revert: {}",
        row.message.unwrap_or_default(),
        rrow.message.unwrap_or_default()
    );
}

/// An action that does not fix the alert: the escalation that reaches the webhook carries
/// what it changed, structured (`medicEscalation.history[].data`) and in words
/// (`medic_history`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_escalation_carries_what_the_action_changed() {
    let sim = sim::Sim::start(&["--batch-size", "32", "--workers", "4"]);
    let hook = daemon::WebhookSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: inference
  interval: 500ms
  rules:
  - alert: InferenceLatencyHigh
    expr: histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[5s]))) > 1
    remediate:
    - {action: set_batch_size, target: inference-batch, params: {step: -2}, verify_within: 2s, cooldown: 1h}
"#,
    )
    .unwrap();
    let config = config(dir.path(), &sim).replace(
        "actuators:\n",
        &format!(
            "notifiers:\n  hook: {{type: webhook, url: \"{}\", repeat_interval: 0s, max_attempts: 2}}\nactuators:\n",
            hook.url()
        ),
    );
    let medic = daemon::Medic::start(dir.path(), &config);
    sim.send("PUT", "/fault", slow_batches()).await;
    let esc = daemon::wait_for("the escalation", || async {
        hook.all()
            .into_iter()
            .find(|p| p["alerts"][0]["labels"]["medic_escalation"] == "true")
    })
    .await;
    let history = esc["medicEscalation"]["history"]
        .as_array()
        .unwrap()
        .clone();
    let ended = history
        .iter()
        .find(|h| h["kind"] == "action_ended")
        .unwrap_or_else(|| panic!("{history:?}"));
    assert_eq!(
        ended["data"]["before"],
        json!({"batch_size": 32}),
        "{ended}"
    );
    assert_eq!(ended["data"]["after"], json!({"batch_size": 30}), "{ended}");
    let text = esc["alerts"][0]["annotations"]["medic_history"]
        .as_str()
        .unwrap();
    assert!(text.contains("batch_size 32 → 30"), "{text}");
    drop(medic);
}

// ---- the rule pack ----

#[path = "support/packs.rs"]
mod packs;

#[test]
fn inference_pack_unit_tests_pass_in_medic_and_promtool() {
    packs::unit_tests_pass("inference_test.yaml", "inference.yaml");
}

// ---- the recipes for real servers (config/examples/knob-recipes.yaml) ----

/// Answers as TorchServe's management API and Kubernetes' scale subresource document it,
/// keeping the worker and replica counts, and records what it was sent.
#[derive(Clone, Default)]
struct Documented {
    workers: Arc<Mutex<u64>>,
    replicas: Arc<Mutex<u64>>,
    seen: Seen,
}

async fn documented_apis() -> (String, Documented) {
    use axum::extract::Request;
    use axum::response::IntoResponse;
    let d = Documented::default();
    *d.workers.lock().unwrap() = 2;
    *d.replicas.lock().unwrap() = 3;
    let state = d.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let d = state.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let h = |n: &str| {
                parts
                    .headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            d.seen.lock().unwrap().push((
                parts.method.to_string(),
                parts.uri.to_string(),
                h("content-type"),
                h("authorization"),
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let path = parts.uri.path();
            let query = parts.uri.query().unwrap_or("");
            match (parts.method.as_str(), path) {
                ("GET", "/models/resnet") => {
                    let n = *d.workers.lock().unwrap();
                    axum::Json(json!([{"modelName": "resnet", "modelVersion": "1.0",
                        "minWorkers": n, "maxWorkers": n, "batchSize": 1}]))
                    .into_response()
                }
                ("PUT", "/models/resnet") => {
                    let q: BTreeMap<&str, &str> = query
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .collect();
                    let Some(n) = q.get("min_worker").and_then(|v| v.parse().ok()) else {
                        return (axum::http::StatusCode::BAD_REQUEST, "min_worker").into_response();
                    };
                    *d.workers.lock().unwrap() = n;
                    axum::Json(
                        json!({"status": format!("Workers scaled to {n} for model: resnet")}),
                    )
                    .into_response()
                }
                (m, "/apis/apps/v1/namespaces/inference/deployments/vllm/scale") => {
                    if m == "PATCH" {
                        if parts
                            .headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            != Some("application/merge-patch+json")
                        {
                            return (axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "")
                                .into_response();
                        }
                        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        *d.replicas.lock().unwrap() = v["spec"]["replicas"].as_u64().unwrap();
                    }
                    let r = *d.replicas.lock().unwrap();
                    axum::Json(json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                        "metadata": {"name": "vllm", "namespace": "inference"},
                        "spec": {"replicas": r}, "status": {"replicas": r}}))
                    .into_response()
                }
                _ => (axum::http::StatusCode::NOT_FOUND, "").into_response(),
            }
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}"), d)
}

#[derive(serde::Deserialize)]
struct Recipes {
    actuators: BTreeMap<String, medic::remedy::ActuatorConfig>,
}

#[tokio::test]
async fn the_documented_recipes_speak_each_servers_api() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/knob-recipes.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let (base, d) = documented_apis().await;
    // the same recipes, pointed at loopback, with a token file of our own
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let text = text
        .replace("http://127.0.0.1:8081", &base)
        .replace("https://kubernetes.default.svc", &base)
        .replace(
            "/etc/medic/torchserve-management.key",
            token.to_str().unwrap(),
        )
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            token.to_str().unwrap(),
        )
        .replace(
            "tls: {ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt}",
            "",
        );
    let recipes: Recipes = serde_saphyr::from_str(&text).unwrap();
    let built = medic::remedy::build(&recipes.actuators).unwrap();
    assert_eq!(built.len(), 2);

    let o = built["torchserve-workers"]
        .act(&request("scale_pool", json!({"step": 2}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.before, json!({"minWorkers": 2}));
    assert_eq!(o.after, json!({"minWorkers": 4}));
    assert_eq!(*d.workers.lock().unwrap(), 4);

    let o = built["k8s-replicas"]
        .act(&request("scale_pool", json!({"factor": 2}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.after, json!({"replicas": 6}));
    assert_eq!(*d.replicas.lock().unwrap(), 6);
    let r = built["k8s-replicas"]
        .revert(&request("scale_pool", json!({}), false), &o)
        .await;
    assert_eq!(r.status, ActionStatus::Ok, "{r:?}");
    assert_eq!(*d.replicas.lock().unwrap(), 3);

    let seen = d.seen.lock().unwrap().clone();
    let put = seen.iter().find(|s| s.0 == "PUT").unwrap();
    assert_eq!(put.1, "/models/resnet?min_worker=4&synchronous=true");
    let patch = seen.iter().find(|s| s.0 == "PATCH").unwrap();
    assert_eq!(patch.4, r#"{"spec":{"replicas":6}}"#);
    assert!(seen.iter().all(|s| s.3 == "Bearer s3cret"), "{seen:?}");
}

/// `remedy.dry_run: true` through the daemon: the knob is asked in dry-run mode, reads the
/// live value, says what it would set, and the service keeps its batch size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_dry_run_reports_and_changes_nothing() {
    let sim = sim::Sim::start(&["--batch-size", "32", "--workers", "4"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: inference
  interval: 500ms
  rules:
  - alert: InferenceLatencyHigh
    expr: histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket[5s]))) > 1
    remediate:
    - {action: set_batch_size, target: inference-batch, params: {factor: 0.25}, cooldown: 1h}
"#,
    )
    .unwrap();
    let config =
        config(dir.path(), &sim).replace("actuators:\n", "remedy:\n  dry_run: true\nactuators:\n");
    let medic = daemon::Medic::start(dir.path(), &config);
    sim.send(
        "PUT",
        "/fault",
        json!({"load_rps": 50, "latency_per_item_s": 0.05, "per_worker_rps": 50}),
    )
    .await;
    wait_alert(&medic, "InferenceLatencyHigh", true).await;
    let msg = daemon::wait_for("the dry run journaled", || async {
        journal_messages(dir.path())
            .into_iter()
            .find(|m| m.contains("dry run: would set batch_size 32 → 8"))
    })
    .await;
    assert_eq!(
        sim.knobs().await["batch_size"],
        32,
        "a dry run changed the service"
    );
    eprintln!("dry run: {msg}");
}
