//! The planner inside a real `medic run`: a loopback service that the http probe watches,
//! exec plugins that log what they received (and one that fixes the service), a real
//! webhook receiver, the CLI against the running daemon, and `kill -9` at several points
//! of an incident followed by a restart.

#[path = "support/daemon.rs"]
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use support::{Medic, WebhookSink, wait_for, write_script};

/// A service on loopback whose `/health` fails while `<dir>/broken` exists.
async fn service(dir: &Path) -> String {
    use axum::{Router, http::StatusCode, routing::get};
    let broken = dir.join("broken");
    let app = Router::new().route(
        "/health",
        get(move || {
            let broken = broken.clone();
            async move {
                if broken.exists() {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (StatusCode::OK, "up")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/health")
}

/// Plugins: `slow` logs, sleeps `slow.sleep` seconds, answers ok (fixes nothing); `fix`
/// logs and repairs the service; `quiet` logs.
fn plugins(d: &Path) {
    write_script(
        &d.join("slow.sh"),
        &format!(
            "#!/bin/bash\nreq=$(cat)\necho \"$req\" >> {d}/slow.log\nsleep $(cat {d}/slow.sleep 2>/dev/null || echo 0)\necho '{{\"status\":\"ok\",\"message\":\"restarted\"}}'\n",
            d = d.display()
        ),
    );
    write_script(
        &d.join("fix.sh"),
        &format!(
            "#!/bin/bash\nreq=$(cat)\necho \"$req\" >> {d}/fix.log\nrm -f {d}/broken\necho '{{\"status\":\"ok\",\"message\":\"repaired\"}}'\n",
            d = d.display()
        ),
    );
    write_script(
        &d.join("quiet.sh"),
        &format!(
            "#!/bin/bash\nreq=$(cat)\necho \"$req\" >> {d}/quiet.log\necho '{{\"status\":\"ok\",\"message\":\"x\"}}'\n",
            d = d.display()
        ),
    );
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

fn config(d: &Path, url: &str, hook: &str, rules: &str, remedy: &str) -> String {
    std::fs::write(d.join("token"), "t0ken\n").unwrap();
    std::fs::write(d.join("rules.yaml"), rules).unwrap();
    format!(
        r#"global:
  listen_address: 127.0.0.1:0
  state_dir: {state}
  evaluation_interval: 300ms
  collect_interval: 300ms
  alert_resend_delay: 1s
  api_token: {{file: {d}/token}}
collectors:
  svc:
    type: http_probe
    url: {url}
    interval: 300ms
    timeout: 300ms
actuators:
  slow: {{type: exec, command: [{d}/slow.sh], timeout: 30s}}
  fix: {{type: exec, command: [{d}/fix.sh], timeout: 10s}}
  quiet: {{type: exec, command: [{d}/quiet.sh], timeout: 10s}}
notifiers:
  hook: {{type: webhook, url: "{hook}", repeat_interval: 0s, max_attempts: 2}}
remedy:
{remedy}
rule_files: [rules.yaml]
"#,
        state = d.join("state").display(),
        d = d.display(),
    )
}

async fn json(m: &Medic, path: &str) -> serde_json::Value {
    let (_, body) = m.get(path).await;
    serde_json::from_str(&body).unwrap_or_default()
}

/// The CLI against the running daemon.
fn cli(m: &Medic, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .args(["-c", m.config_path.to_str().unwrap(), "--address", &m.addr])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The ladder runs out → exactly one escalation reaches the real webhook receiver, with the
/// history; a silenced alert (silence made with the CLI) gets neither action nor
/// notification; the CLI shows status, incidents and the timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_reaches_the_webhook_and_silences_hold_everything() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugins(d);
    let url = service(d).await;
    let hook = WebhookSink::start().await;
    let rules = r#"groups:
- name: svc
  interval: 300ms
  rules:
  - alert: SvcDown
    expr: probe_success{probe="svc"} == 0
    remediate:
    - {action: restart, target: slow, verify_within: 1s}
  - alert: Quiet
    expr: probe_success{probe="svc"} == 0
    remediate:
    - {action: restart, target: quiet}
"#;
    let medic = Medic::start(
        d,
        &config(d, &url, &hook.url(), rules, "  flapping: {episodes: 0}"),
    );
    let (ok, out) = cli(
        &medic,
        &[
            "silence",
            "add",
            "alertname=Quiet",
            "--comment",
            "maintenance",
            "--duration",
            "1h",
        ],
    );
    assert!(ok, "{out}");
    let silence_id = out.trim().to_string();
    let (ok, out) = cli(&medic, &["silence", "list"]);
    assert!(
        ok && out.contains(&silence_id) && out.contains("active"),
        "{out}"
    );

    std::fs::write(d.join("broken"), "").unwrap();
    let esc = wait_for("the escalation", || async {
        hook.find("firing", "SvcDown").and_then(|_| {
            hook.all()
                .into_iter()
                .find(|p| p["alerts"][0]["labels"]["medic_escalation"] == "true")
        })
    })
    .await;
    let e = &esc["medicEscalation"];
    assert_eq!(e["reason"], "ladder_exhausted");
    let kinds: Vec<&str> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"action_ended") && kinds.contains(&"unverified"),
        "{kinds:?}"
    );
    assert!(
        esc["alerts"][0]["annotations"]["medic_history"]
            .as_str()
            .unwrap()
            .contains("unverified")
    );
    let id = e["incident"].as_i64().unwrap();
    let (ok, out) = cli(&medic, &["incident", &id.to_string()]);
    assert!(
        ok && out.contains("escalated") && out.contains("action_started"),
        "{out}"
    );
    let (ok, out) = cli(&medic, &["incidents", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["alertname"] == "SvcDown")
    );
    let (ok, out) = cli(&medic, &["status"]);
    assert!(
        ok && out.contains("SvcDown") && out.contains("BREAKERS"),
        "{out}"
    );

    // the silenced Quiet alert fires (the API shows it) but gets nothing
    let alerts = json(&medic, "/api/v1/alerts").await;
    assert!(
        alerts["data"]["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "Quiet")
    );
    assert_eq!(
        lines(&d.join("quiet.log")),
        0,
        "a silenced alert was remediated"
    );
    assert!(
        hook.find("firing", "Quiet").is_none(),
        "a silenced alert was notified"
    );

    // one escalation, however long it keeps firing: wait for more evaluations
    let evals = r#"medic_rule_evaluations_total{rule_group="svc"}"#;
    let before = medic.metric(evals).await.unwrap();
    wait_for("more evaluations", || async {
        (medic.metric(evals).await? >= before + 5.0).then_some(())
    })
    .await;
    let escalations = hook
        .all()
        .into_iter()
        .filter(|p| p["alerts"][0]["labels"]["medic_escalation"] == "true")
        .count();
    assert_eq!(escalations, 1);
    assert_eq!(lines(&d.join("slow.log")), 1);

    // expired: Quiet is remediated and notified
    let (ok, out) = cli(&medic, &["silence", "expire", &silence_id]);
    assert!(ok, "{out}");
    wait_for("Quiet to be remediated", || async {
        (lines(&d.join("quiet.log")) == 1).then_some(())
    })
    .await;
    wait_for("Quiet to be notified", || async {
        hook.find("firing", "Quiet")
    })
    .await;
}

/// Where a trial kills medic.
#[derive(Clone, Copy, Debug)]
enum Point {
    /// The incident is open, its first rung not due yet.
    BeforeAction,
    /// The first rung's plugin is running.
    DuringAction,
    /// The first rung ran and waits for verification.
    DuringVerification,
}

static TRIALS: AtomicUsize = AtomicUsize::new(0);

/// One trial: break the service, kill -9 at `point`, restart, let the incident finish.
/// Returns (duplicated, lost) actions, judged from what the plugins received and from the
/// journal.
async fn kill_trial(point: Point) -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugins(d);
    let url = service(d).await;
    let hook = WebhookSink::start().await;
    let rules = r#"groups:
- name: svc
  interval: 300ms
  rules:
  - alert: SvcDown
    expr: probe_success{probe="svc"} == 0
    remediate:
    - {action: restart, target: slow, when_unresolved_after: 2s, verify_within: 3s}
    - {action: exec, target: fix, when_unresolved_after: 1h, verify_within: 30s}
"#;
    let sleep = match point {
        Point::DuringAction => "20",
        _ => "0",
    };
    std::fs::write(d.join("slow.sleep"), sleep).unwrap();
    let cfg = config(
        d,
        &url,
        &hook.url(),
        rules,
        "  restore_grace: 5s\n  flapping: {episodes: 0}",
    );
    let mut medic = Medic::start(d, &cfg);
    std::fs::write(d.join("broken"), "").unwrap();
    let step0 = |m: &Medic| {
        let m = m.addr.clone();
        async move {
            let (_, body) =
                support::http_get(&format!("http://{m}/api/v1/incidents?state=open")).await;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            v["data"]["incidents"][0]["steps"][0]["state"]
                .as_str()
                .map(String::from)
        }
    };
    match point {
        Point::BeforeAction => {
            wait_for("an open incident", || async {
                (step0(&medic).await.as_deref() == Some("waiting")).then_some(())
            })
            .await;
        }
        Point::DuringAction => {
            wait_for("the plugin to start", || async {
                (lines(&d.join("slow.log")) == 1).then_some(())
            })
            .await;
        }
        Point::DuringVerification => {
            wait_for("the verification", || async {
                (step0(&medic).await.as_deref() == Some("verifying")).then_some(())
            })
            .await;
        }
    }
    let slow_before = lines(&d.join("slow.log"));
    medic.signal(libc::SIGKILL);
    medic.wait_exit(support::DEADLINE);
    TRIALS.fetch_add(1, Ordering::SeqCst);
    // the plugin killed mid-action must not run again; let the next run see it did not
    std::fs::write(d.join("slow.sleep"), "0").unwrap();
    let medic = Medic::start(d, &cfg);
    let incident = wait_for("the incident to close", || async {
        let v = json(&medic, "/api/v1/incidents?state=closed").await;
        v["data"]["incidents"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(
        incident["outcome"],
        "verified",
        "{point:?}: {incident}\n{}",
        medic.logs()
    );
    let slow = lines(&d.join("slow.log"));
    let fix = lines(&d.join("fix.log"));
    // what the journal says happened
    let journal = medic::journal::Journal::open(&d.join("state/journal.db")).unwrap();
    let actions = journal.actions_recent(100).unwrap();
    let mut keys: Vec<&str> = actions.iter().map(|a| a.idempotency_key.as_str()).collect();
    keys.sort();
    let journal_dups = keys.windows(2).filter(|w| w[0] == w[1]).count();
    let slow_status: Vec<&str> = actions
        .iter()
        .filter(|a| a.action == "restart")
        .map(|a| a.status.as_str())
        .collect();
    match point {
        Point::DuringAction => {
            assert_eq!(slow_before, 1);
            assert_eq!(slow_status, ["interrupted"], "{point:?}");
            // the interrupted action counted as a failure for its breaker
            let b = json(&medic, "/api/v1/breakers").await;
            let slow_b = b["data"]["breakers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["target"] == "slow")
                .cloned()
                .unwrap();
            assert_eq!(slow_b["failures"], 1, "{b}");
        }
        Point::BeforeAction => assert_eq!(slow_before, 0),
        Point::DuringVerification => assert_eq!(slow_status, ["ok"], "{point:?}"),
    }
    let duplicated = slow.saturating_sub(1) + fix.saturating_sub(1) + journal_dups;
    let lost = usize::from(slow == 0) + usize::from(fix == 0);
    eprintln!(
        "kill -9 {point:?}: slow received {slow}, fix received {fix}, journal {slow_status:?}"
    );
    (duplicated, lost)
}

/// kill -9 before the action, during it and during its verification, twice each; after the
/// restart every rung runs exactly once: none twice, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_any_point_loses_and_repeats_nothing() {
    let mut dup = 0;
    let mut lost = 0;
    for _ in 0..2 {
        for p in [
            Point::BeforeAction,
            Point::DuringAction,
            Point::DuringVerification,
        ] {
            let (d, l) = kill_trial(p).await;
            dup += d;
            lost += l;
        }
    }
    eprintln!(
        "kill -9 trials: {}, actions duplicated: {dup}, lost: {lost}",
        TRIALS.load(Ordering::SeqCst)
    );
    assert_eq!((dup, lost), (0, 0));
}

/// Clean restarts (SIGTERM) while an alert fires, and a new episode after it: an action with
/// `cooldown: 1h` runs once (issue 16.1: three restarts ran it three times).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_keep_cooldowns_and_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugins(d);
    let url = service(d).await;
    let hook = WebhookSink::start().await;
    let rules = r#"groups:
- name: svc
  interval: 300ms
  rules:
  - alert: SvcDown
    expr: probe_success{probe="svc"} == 0
    remediate:
    - {action: restart, target: slow, cooldown: 1h, verify_within: 1s}
"#;
    let cfg = config(d, &url, &hook.url(), rules, "  restore_grace: 30s");
    std::fs::write(d.join("broken"), "").unwrap();
    let evals = r#"medic_rule_evaluations_total{rule_group="svc"}"#;
    for round in 0..4 {
        let mut medic = Medic::start(d, &cfg);
        if round == 0 {
            wait_for("the first action", || async {
                (lines(&d.join("slow.log")) == 1).then_some(())
            })
            .await;
        }
        if round == 3 {
            // a new episode: healthy, then broken again
            std::fs::remove_file(d.join("broken")).unwrap();
            wait_for("the alert to resolve", || async {
                let v = json(&medic, "/api/v1/alerts").await;
                v["data"]["alerts"].as_array()?.is_empty().then_some(())
            })
            .await;
            std::fs::write(d.join("broken"), "").unwrap();
        }
        wait_for("the alert to fire", || async {
            let v = json(&medic, "/api/v1/alerts").await;
            (!v["data"]["alerts"].as_array()?.is_empty()).then_some(())
        })
        .await;
        let before = medic.metric(evals).await.unwrap_or(0.0);
        wait_for("evaluations while firing", || async {
            (medic.metric(evals).await? >= before + 5.0).then_some(())
        })
        .await;
        medic.signal(libc::SIGTERM);
        assert_eq!(medic.wait_exit(support::DEADLINE).code(), Some(0));
    }
    assert_eq!(
        lines(&d.join("slow.log")),
        1,
        "the 1h cooldown did not hold"
    );
}

/// An admin endpoint on loopback behind the http actuator, with faults injected: its first
/// `fail_first` requests answer 500, later ones repair the service.
async fn admin_service(dir: &Path, fail_first: usize) -> (String, Arc<AtomicUsize>) {
    use axum::{Router, http::StatusCode, routing::post};
    let calls = Arc::new(AtomicUsize::new(0));
    let (c, broken) = (calls.clone(), dir.join("broken"));
    let app = Router::new().route(
        "/admin/fix",
        post(move || {
            let (c, broken) = (c.clone(), broken.clone());
            async move {
                if c.fetch_add(1, Ordering::SeqCst) < fail_first {
                    (StatusCode::INTERNAL_SERVER_ERROR, "injected fault")
                } else {
                    let _ = std::fs::remove_file(&broken);
                    (StatusCode::OK, "repaired")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/admin/fix"), calls)
}

/// The http actuator meets an injected 500 (failed: a breaker failure, the next rung at
/// once); that rung is in `approve` mode and waits for `medic approve` (the API refuses
/// without the token); approved, it repairs the service and the incident is verified. The
/// breaker is reset with the CLI; the metrics tell the story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fault_then_approved_step_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugins(d);
    let url = service(d).await;
    let (admin, calls) = admin_service(d, 1).await;
    let hook = WebhookSink::start().await;
    let rules = r#"groups:
- name: svc
  interval: 300ms
  rules:
  - alert: AdminDown
    expr: probe_success{probe="svc"} == 0
    remediate:
    - {action: http, target: admin, verify_within: 30s}
    - {action: http, target: admin, when_unresolved_after: 1h, mode: approve, verify_within: 30s}
"#;
    let cfg = config(d, &url, &hook.url(), rules, "  flapping: {episodes: 0}").replace(
        "actuators:\n",
        &format!("actuators:\n  admin: {{type: http, url: \"{admin}\", timeout: 5s}}\n"),
    );
    let medic = Medic::start(d, &cfg);
    std::fs::write(d.join("broken"), "").unwrap();
    let id = wait_for("a step awaiting approval", || async {
        let v = json(&medic, "/api/v1/status").await;
        v["data"]["awaitingApproval"][0]["incident"].as_i64()
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the proposal ran before approval"
    );
    assert_eq!(
        medic.metric("medic_actions_awaiting_approval").await,
        Some(1.0)
    );
    let r = support::client()
        .post(medic.url(&format!("/api/v1/incidents/{id}/approve")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (ok, out) = cli(&medic, &["approve", &id.to_string(), "--by", "alice"]);
    assert!(ok, "{out}");
    let incident = wait_for("the verified incident", || async {
        let v = json(&medic, &format!("/api/v1/incidents/{id}")).await;
        (v["data"]["outcome"] == "verified").then_some(v)
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let timeline = incident["data"]["timeline"].to_string();
    assert!(timeline.contains("approved by alice"), "{timeline}");
    assert_eq!(incident["data"]["actions"].as_array().unwrap().len(), 2);
    let b = json(&medic, "/api/v1/breakers").await;
    assert_eq!(b["data"]["breakers"][0]["failures"], 1, "{b}");
    let (ok, out) = cli(&medic, &["reset-breaker", "admin"]);
    assert!(ok, "{out}");
    let b = json(&medic, "/api/v1/breakers").await;
    assert_eq!(b["data"]["breakers"][0]["failures"], 0, "{b}");
    assert_eq!(
        medic
            .metric(r#"medic_incidents_total{rule="AdminDown",outcome="verified"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(
        medic.metric(r#"medic_breaker_state{target="admin"}"#).await,
        Some(0.0)
    );
    assert_eq!(
        medic.metric("medic_actions_awaiting_approval").await,
        Some(0.0)
    );
    let left = medic
        .metric(r#"medic_budget_remaining{scope="target",name="admin"}"#)
        .await
        .unwrap();
    assert!(left < 5.0, "two actions taken from 6: {left}");
    let v = json(&medic, "/api/v1/budgets").await;
    assert!(
        v["data"]["budgets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["scope"] == "global")
    );
}

/// Alertmanager's own CLI manages medic's silences: `amtool silence add`, `query`,
/// `expire` against medic's `/api/v2/silences` (prometheus-alertmanager ships amtool).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_manages_silences() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    plugins(d);
    let hook = WebhookSink::start().await;
    let cfg = config(
        d,
        "http://127.0.0.1:9/health",
        &hook.url(),
        "groups: []\n",
        "  mode: auto",
    );
    let medic = Medic::start(d, &cfg);
    std::fs::write(
        d.join("http.yml"),
        "authorization:\n  type: Bearer\n  credentials: t0ken\n",
    )
    .unwrap();
    let amtool = |args: &[&str]| {
        let out = std::process::Command::new("amtool")
            .arg(format!("--alertmanager.url=http://{}", medic.addr))
            .arg(format!(
                "--http.config.file={}",
                d.join("http.yml").display()
            ))
            .args(args)
            .output()
            .expect("amtool (Debian package prometheus-alertmanager) is installed");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "amtool {args:?}: {text}");
        text
    };
    let id = amtool(&[
        "silence",
        "add",
        "alertname=Foo",
        "instance=~db.*",
        "--comment",
        "maint",
        "--author",
        "ops",
        "--duration",
        "1h",
    ]);
    let id = id.trim();
    let listed = amtool(&["silence", "query"]);
    assert!(
        listed.contains(id) && listed.contains(r#"instance=~"db.*""#),
        "{listed}"
    );
    let (ok, out) = cli(&medic, &["silence", "list"]);
    assert!(ok && out.contains(id) && out.contains("active"), "{out}");
    amtool(&["silence", "expire", id]);
    assert!(!amtool(&["silence", "query", "-q"]).contains(id));
    assert!(amtool(&["silence", "query", "--expired", "-q"]).contains(id));
}
