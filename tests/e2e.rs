//! End-to-end tests: `medic run` as a real process with a temp config and state dir, an
//! ephemeral API port, real HTTP targets and sinks on loopback, real signals.

#[path = "support/daemon.rs"]
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{
    DEADLINE, Medic, Target, WebhookSink, client, metric_value, process_exists, wait_for,
    write_script,
};

fn base_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 300ms\n  collect_interval: 300ms\n{extra}",
        dir.join("state").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_is_rejected_while_medic_keeps_running_and_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let token_path = dir.path().join("token");
    std::fs::write(&token_path, "s3cret-token\n").unwrap();
    let good = base_config(
        dir.path(),
        &format!("  api_token: {{file: {}}}\n", token_path.display()),
    );
    let mut medic = Medic::start(dir.path(), &good);
    assert_eq!(medic.get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(1.0)
    );

    // State-changing calls need the bearer token.
    let http = client();
    let reload = medic.url("/-/reload");
    let r = http.post(&reload).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&reload)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .post(&reload)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());

    // A broken config (unknown key) on SIGHUP: rejected, old config keeps running.
    std::fs::write(&medic.config_path, format!("{good}bogus_key: 1\n")).unwrap();
    medic.signal(libc::SIGHUP);
    wait_for("the reload to be rejected", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(0.0)).then_some(())
    })
    .await;
    assert!(medic.is_running());
    assert_eq!(medic.get("/healthz").await.0, 200);
    // The rejected config is also refused through the API, with the reason.
    let r = http
        .post(&reload)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert!(r.text().await.unwrap().contains("bogus_key"));

    // Fixing the file is noticed without a signal (inotify) and reloads.
    std::fs::write(&medic.config_path, &good).unwrap();
    wait_for("the fixed config to be reloaded", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(1.0)).then_some(())
    })
    .await;

    medic.signal(libc::SIGTERM);
    let status = medic.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", medic.logs());
}

/// A probe target starts failing → the alert fires → the exec plugin gets the protocol JSON
/// and the webhook the firing payload; a hanging plugin is killed at its timeout while
/// evaluation goes on; recovery sends the resolved payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_target_fires_alert_runs_plugin_and_hanging_plugin_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = Target::start().await;
    let hook = WebhookSink::start().await;

    let received = d.join("received.json");
    write_script(
        &d.join("fix.sh"),
        &format!(
            "#!/bin/sh\ncat > {tmp}\nmv {tmp} {out}\necho '{{\"status\":\"ok\",\"message\":\"fixed\"}}'\n",
            tmp = d.join("received.tmp").display(),
            out = received.display()
        ),
    );
    let hang_pid = d.join("hang.pid");
    write_script(
        &d.join("hang.sh"),
        &format!(
            "#!/bin/sh\necho $$ > {pid}\nexec sleep 600\n",
            pid = hang_pid.display()
        ),
    );
    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: probe
  interval: 300ms
  rules:
  - alert: TargetDown
    expr: probe_success{probe="target"} == 0
    labels: {severity: critical}
    annotations: {summary: "{{ $labels.instance }} is down"}
    remediate:
    - action: exec
      target: fix
      cooldown: 1h
  - alert: TargetDownHang
    expr: probe_success{probe="target"} == 0
    remediate:
    - action: exec
      target: hang
      cooldown: 1h
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            r#"collectors:
  target:
    type: http_probe
    url: {url}
    interval: 300ms
    timeout: 300ms
actuators:
  fix:
    type: exec
    command: [{fix}]
    timeout: 10s
  hang:
    type: exec
    command: [{hang}]
    timeout: 3s
notifiers:
  sink:
    type: webhook
    url: {hook}
    timeout: 5s
rule_files: [rules.yaml]
"#,
            url = target.url(),
            hook = hook.url(),
            fix = d.join("fix.sh").display(),
            hang = d.join("hang.sh").display(),
        ),
    );
    let medic = Medic::start(d, &config);

    // Healthy first: the probe succeeds and no alert is active.
    wait_for("probe_success 1", || async {
        let (_, body) = medic.get("/api/v1/rules").await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["data"]["groups"][0]["rules"][0]["health"] == "ok").then_some(())
    })
    .await;
    assert!(!received.exists());

    target.set_failing(true);
    let alert = wait_for("the alert to fire", || async {
        let (_, body) = medic.get("/api/v1/alerts").await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["alerts"]
            .as_array()?
            .iter()
            .find(|a| a["labels"]["alertname"] == "TargetDown" && a["state"] == "firing")
            .cloned()
    })
    .await;
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["value"], "0e+00");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{} is down", target.url())
    );

    // The plugin got exec protocol v1 on stdin.
    let req: serde_json::Value = wait_for("the plugin to be called", || async {
        let text = std::fs::read_to_string(&received).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await;
    assert_eq!(req["version"], 1);
    assert_eq!(req["action"], "exec");
    assert_eq!(req["target"], "fix");
    assert_eq!(req["alert"]["name"], "TargetDown");
    assert_eq!(req["alert"]["labels"]["probe"], "target");
    assert_eq!(req["alert"]["labels"]["instance"], target.url().as_str());
    assert_eq!(req["dry_run"], false);
    assert!(
        req["idempotency_key"]
            .as_str()
            .is_some_and(|k| !k.is_empty())
    );
    assert!(req["deadline"].is_string());
    wait_for("the ok outcome to be counted", || async {
        (medic
            .metric(r#"medic_actions_total{rule="TargetDown",action="exec",outcome="ok"}"#)
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;

    // The webhook got Alertmanager's payload for the firing alert.
    let firing = wait_for("the firing webhook", || async {
        hook.find("firing", "TargetDown")
    })
    .await;
    assert_eq!(firing["version"], "4");
    assert_eq!(firing["receiver"], "sink");
    let a = &firing["alerts"][0];
    assert_eq!(a["status"], "firing");
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["annotations"]["summary"],
        format!("{} is down", target.url())
    );
    assert!(a["fingerprint"].as_str().is_some_and(|f| f.len() == 16));

    // A reload with unchanged rules keeps the alert's state (same activeAt, still firing).
    medic.signal(libc::SIGHUP);
    wait_for("the reload", || async {
        medic
            .logs()
            .contains("configuration reloaded")
            .then_some(())
    })
    .await;
    let (_, body) = medic.get("/api/v1/alerts").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let kept = v["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "TargetDown")
        .cloned()
        .expect("alert lost across the reload");
    assert_eq!(kept["state"], "firing");
    assert_eq!(kept["activeAt"], alert["activeAt"]);

    // The hanging plugin: started, killed at its 3 s timeout, counted as a timeout.
    let pid: i32 = wait_for("the hanging plugin to start", || async {
        std::fs::read_to_string(&hang_pid).ok()?.trim().parse().ok()
    })
    .await;
    // Evaluation never waits on it: the group (300 ms) evaluates again and again while the
    // plugin is still running.
    let evals = r#"medic_rule_evaluations_total{rule_group="probe"}"#;
    let before = medic.metric(evals).await.unwrap();
    wait_for("evaluations while the plugin hangs", || async {
        (medic.metric(evals).await? >= before + 3.0).then_some(())
    })
    .await;
    assert!(
        process_exists(pid),
        "the plugin ended before three evaluations passed: the test proves nothing"
    );
    wait_for("the timeout outcome", || async {
        (medic
            .metric(r#"medic_actions_total{rule="TargetDownHang",action="exec",outcome="timeout"}"#)
            .await
            == Some(1.0))
        .then_some(())
    })
    .await;
    wait_for("the hanging plugin's process to be killed", || async {
        (!process_exists(pid)).then_some(())
    })
    .await;

    // Recovery resolves the alert.
    target.set_failing(false);
    wait_for("the alert to resolve", || async {
        let (_, body) = medic.get("/api/v1/alerts").await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["alerts"].as_array()?.is_empty().then_some(())
    })
    .await;
    let resolved = wait_for("the resolved webhook", || async {
        hook.find("resolved", "TargetDown")
    })
    .await;
    let a = &resolved["alerts"][0];
    assert_eq!(a["status"], "resolved");
    assert_eq!(a["fingerprint"], firing["alerts"][0]["fingerprint"]);
    assert_ne!(a["endsAt"], "0001-01-01T00:00:00Z");
}

/// SIGTERM while an action runs: the action finishes (its outcome is recorded), then medic
/// exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_in_flight_action_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (started, done) = (d.join("started"), d.join("done"));
    write_script(
        &d.join("slow.sh"),
        &format!(
            "#!/bin/sh
cat > /dev/null
touch {started}
sleep 2
touch {done}
echo '{{\"status\":\"ok\",\"message\":\"slow fix done\"}}'\n",
            started = started.display(),
            done = done.display()
        ),
    );
    std::fs::write(
        d.join("rules.yaml"),
        "groups:\n- name: always\n  interval: 300ms\n  rules:\n  - alert: Always\n    expr: vector(1)\n    remediate:\n    - {action: exec, target: slow, cooldown: 1h}\n",
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            "actuators:\n  slow:\n    type: exec\n    command: [{}]\n    timeout: 20s\nrule_files: [rules.yaml]\n",
            d.join("slow.sh").display()
        ),
    );
    let mut medic = Medic::start(d, &config);
    wait_for("the action to start", || async {
        started.exists().then_some(())
    })
    .await;
    assert!(!done.exists());
    medic.signal(libc::SIGTERM);
    let status = medic.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", medic.logs());
    assert!(done.exists(), "the action was cut short:\n{}", medic.logs());
    assert!(
        medic.logs().contains("slow fix done"),
        "outcome not logged:\n{}",
        medic.logs()
    );
}

/// `medic run -c medic.yaml` from the config's folder, with `rule_files: [./rules.yaml]`:
/// saving a broken rule file is noticed (no signal) and rejected; fixing it reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_file_edits_reload_with_relative_paths() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1) > 2\n";
    std::fs::write(d.join("rules.yaml"), good).unwrap();
    let config = base_config(d, "rule_files: [./rules.yaml]\n");
    let medic = Medic::start_relative(d, &config);
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(1.0)
    );
    // /api/v1/rules filters by type as Prometheus does, and refuses an unknown one
    let rules = |q: &'static str| {
        let m = &medic;
        async move {
            let (status, body) = m.get(&format!("/api/v1/rules{q}")).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            (status, v)
        }
    };
    let (status, v) = rules("?type=alert").await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["groups"][0]["rules"][0]["name"], "A");
    let (_, v) = rules("?type=record").await;
    assert_eq!(v["data"]["groups"][0]["rules"], serde_json::json!([]));
    let (status, v) = rules("?type=bogus").await;
    assert_eq!(
        (status, &v["errorType"]),
        (400, &serde_json::json!("bad_data"))
    );
    std::fs::write(d.join("rules.yaml"), good.replace("> 2", "> ")).unwrap();
    wait_for("the broken rule file to be rejected", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(0.0)).then_some(())
    })
    .await;
    std::fs::write(d.join("rules.yaml"), good).unwrap();
    wait_for("the fixed rule file to be reloaded", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(1.0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_endpoints_are_disabled_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let medic = Medic::start(dir.path(), &base_config(dir.path(), ""));
    let r = client()
        .post(medic.url("/-/reload"))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (status, body) = medic.get("/api/v1/alerts").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert!(v["data"]["alerts"].is_array());
    let (_, body) = medic.get("/api/v1/rules").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["data"]["groups"].is_array());
}

/// Receives notify datagrams until one satisfies `want`.
async fn recv_until(
    sock: &tokio::net::UnixDatagram,
    seen: &mut Vec<String>,
    want: &dyn Fn(&str) -> bool,
) -> String {
    let mut buf = vec![0u8; 4096];
    let found = tokio::time::timeout(DEADLINE, async {
        loop {
            let n = sock.recv(&mut buf).await.unwrap();
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            seen.push(msg.clone());
            if want(&msg) {
                return msg;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("notify message not received; got {seen:?}"))
}

/// Pipes a `/metrics` body through `promtool check metrics`: (exit code, findings).
/// 0: clean; 3: lint findings only; 1: the exposition does not parse.
fn promtool_check(body: &str) -> (i32, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (package prometheus) must be installed: see scripts/test.sh");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The families of an exposition whose names start with `prefix`.
fn families_with_prefix(body: &str, prefix: &str) -> String {
    body.lines()
        .filter(|l| {
            let name = l
                .strip_prefix("# HELP ")
                .or_else(|| l.strip_prefix("# TYPE "))
                .unwrap_or(l);
            name.starts_with(prefix)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let medic = Medic::start(
        dir.path(),
        &base_config(
            dir.path(),
            &format!(
                "  export_collected: true\ncollectors:\n  host:\n    type: host\n  target:\n    type: http_probe\n    url: {}\n",
                target.url()
            ),
        ),
    );
    // Wait for both collectors' series (host: counters named *_total among them).
    let body = wait_for("collected series on /metrics", || async {
        let (status, body) = medic.get("/metrics").await;
        (status == 200
            && body.contains("\nnode_load1 ")
            && body.contains("node_network_receive_bytes_total{")
            && body.contains("probe_success{instance="))
        .then_some(body)
    })
    .await;
    assert!(body.contains("medic_build_info{version="), "{body}");
    assert!(body.contains("# TYPE node_network_receive_bytes_total untyped\n"));
    assert!(body.contains("# TYPE probe_success gauge\n"));
    // The whole exposition parses. The only lint findings allowed are the camelCase names
    // that medic keeps from node_exporter (node_memory_MemAvailable_bytes, ...) so existing
    // dashboards work; node_exporter's own output gets the same findings.
    let (code, findings) = promtool_check(&body);
    assert!(
        code == 0 || code == 3,
        "promtool check metrics failed ({code}):\n{findings}\n---\n{body}"
    );
    for f in findings.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            f.starts_with("node_")
                && f.ends_with("should be written in 'snake_case' not 'camelCase'"),
            "unexpected promtool finding: {f}"
        );
    }
    // medic's own metrics pass without any finding.
    let own = families_with_prefix(&body, "medic_");
    assert!(own.contains("medic_collector_duration_seconds{collector=\"host\"}"));
    let (code, findings) = promtool_check(&own);
    assert_eq!(
        code, 0,
        "promtool on medic's own metrics:\n{findings}\n---\n{own}"
    );

    // Prometheus asks for OpenMetrics and gets it, terminated by # EOF.
    let r = client()
        .get(medic.url("/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_the_systemd_notify_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).unwrap();
    let medic = Medic::start_with_env(
        dir.path(),
        &base_config(dir.path(), ""),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // 400 ms: medic must ping every 200 ms
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen: Vec<String> = Vec::new();
    let ready = recv_until(&sock, &mut seen, &|m| m.contains("READY=1")).await;
    assert!(ready.contains("STATUS=running"), "{ready}");
    recv_until(&sock, &mut seen, &|m| m.contains("WATCHDOG=1")).await;

    medic.signal(libc::SIGHUP);
    let reloading = recv_until(&sock, &mut seen, &|m| m.contains("RELOADING=1")).await;
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    recv_until(&sock, &mut seen, &|m| m.contains("READY=1")).await;

    medic.signal(libc::SIGTERM);
    recv_until(&sock, &mut seen, &|m| m.contains("STOPPING=1")).await;
}

#[test]
fn systemd_unit_verifies_and_exposure_is_at_most_2() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("systemd/medic.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/medic run -c /etc/medic/medic.yaml"));
    // verify wants the binary to exist: check a copy that points at the one just built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("medic.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/medic", env!("CARGO_BIN_EXE_medic")),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) must be installed: see scripts/test.sh");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let exposure: f64 = text
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for medic.service:"))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    println!("systemd-analyze security exposure: {exposure}");
    assert!(exposure <= 2.0, "exposure {exposure} > 2.0:\n{text}");
    // Collectors need all of /proc, other services' processes included.
    assert!(
        !unit
            .lines()
            .any(|l| l.starts_with("ProcSubset=") || l.starts_with("ProtectProc=invisible")),
        "the unit hides /proc from the collectors"
    );
}

#[test]
fn metric_value_parser() {
    let body = "# TYPE a gauge\na 1\nb{x=\"y\"} 2.5\n";
    assert_eq!(metric_value(body, "a"), Some(1.0));
    assert_eq!(metric_value(body, "b{x=\"y\"}"), Some(2.5));
    assert_eq!(metric_value(body, "c"), None);
}
