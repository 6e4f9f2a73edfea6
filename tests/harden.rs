//! Hardening (issue 16): what restarts, reloads, broken configs and misbehaving plugins
//! must not break. Real processes throughout: exec plugins are real scripts, `medic run`
//! is the real binary (tests/support/daemon.rs), the webhook sink a real server.

#[path = "support/daemon.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use medic::common::metrics::{SelfMetrics, labels};
use medic::remedy::actuators::exec::{ExecActuator, ExecConfig};
use medic::remedy::{
    ActionAlert, ActionRequest, ActionStatus, Actuator, ActuatorConfig, Planner, RemedyConfig,
};
use medic::rules::{AlertInstance, AlertState, AlertTransition, RemediateStep, TransitionKind};
use medic::store::Labels;
use support::{DEADLINE, Medic, Target, WebhookSink, process_exists, wait_for, write_script};

fn exec_cfg(yaml: &str) -> ExecConfig {
    serde_saphyr::from_str(yaml).unwrap()
}

fn request(timeout: Duration) -> ActionRequest {
    ActionRequest {
        version: 1,
        action: "exec".into(),
        target: "plug".into(),
        params: serde_json::json!({}),
        alert: ActionAlert {
            name: "A".into(),
            labels: BTreeMap::from([("alertname".into(), "A".into())]),
            annotations: BTreeMap::new(),
            value: 1.0,
            starts_at: "2026-01-02T03:04:05.678Z".into(),
        },
        dry_run: false,
        idempotency_key: "k".into(),
        deadline: "2026-01-02T03:04:35.678Z".into(),
        timeout,
    }
}

fn now_ms() -> i64 {
    medic::common::time::now_ms()
}

fn firing(rule: &str, ladder: &Arc<[RemediateStep]>) -> AlertTransition {
    let now = now_ms();
    AlertTransition {
        kind: TransitionKind::Firing,
        at_ms: now,
        alert: AlertInstance {
            rule: rule.into(),
            group: "g".into(),
            labels: Labels::new([("alertname", rule)]),
            annotations: BTreeMap::new(),
            value: 1.0,
            state: AlertState::Firing,
            active_at_ms: now,
            fired_at_ms: Some(now),
            resolved_at_ms: None,
        },
        remediate: ladder.clone(),
    }
}

// ---- point 8: plugin replies, timeouts, SIGTERM grace ----

/// A plugin that logs more than 64 KiB on stdout (and on stderr) before its answer: the
/// answer is its last line and is read, not cut off.
#[tokio::test]
async fn plugin_logging_more_than_64k_then_failing_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("chatty.py");
    write_script(
        &plugin,
        "#!/usr/bin/python3\nimport sys, json\nsys.stdin.read()\nfor i in range(4000):\n    print('log line %05d ..........................................' % i)\n    sys.stderr.write('err line %05d ..........................................\\n' % i)\nprint(json.dumps({'status': 'failed', 'message': 'could not fix'}))\n",
    );
    let act = ExecActuator::build(
        "chatty",
        &exec_cfg(&format!("command: [{}]\n", plugin.display())),
    )
    .unwrap();
    let out = act.act(&request(DEADLINE)).await;
    assert_eq!(out.status, ActionStatus::Failed, "{out:?}");
    assert_eq!(out.message, "could not fix");
    assert!(
        out.stderr_tail
            .ends_with("err line 03999 ..........................................\n")
    );
}

/// At the timeout the plugin gets SIGTERM first and `kill_grace` to clean up; one that
/// exits on it is a timeout all the same.
#[tokio::test]
async fn plugin_gets_sigterm_and_a_grace_period_before_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("got-term");
    let plugin = dir.path().join("polite.sh");
    write_script(
        &plugin,
        &format!(
            "#!/bin/bash\ntrap 'echo cleaned > {}; exit 0' TERM\nsleep 600 &\nwait\n",
            marker.display()
        ),
    );
    let act = ExecActuator::build(
        "polite",
        &exec_cfg(&format!(
            "command: [{}]\nkill_grace: 1s\n",
            plugin.display()
        )),
    )
    .unwrap();
    let out = act.act(&request(Duration::from_secs(3))).await;
    assert_eq!(out.status, ActionStatus::Timeout, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap_or_default(),
        "cleaned\n",
        "the plugin never saw SIGTERM: {out:?}"
    );
}

/// A plugin that ignores SIGTERM is killed at its deadline; the planner's metric and the
/// journal both say `timeout`.
#[tokio::test]
async fn sigterm_ignoring_plugin_is_timeout_in_journal_and_metric() {
    use medic::journal::{ActionStatus as JStatus, Journal};
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("stubborn.pid");
    let plugin = dir.path().join("stubborn.sh");
    write_script(
        &plugin,
        &format!(
            "#!/bin/bash\ntrap '' TERM\necho $$ > {}\nwhile true; do sleep 0.2; done\n",
            pidfile.display()
        ),
    );
    let cfg: ActuatorConfig = serde_saphyr::from_str(&format!(
        "{{type: exec, command: [{}], timeout: 2s, kill_grace: 1s}}",
        plugin.display()
    ))
    .unwrap();
    let actuators = medic::remedy::build(&BTreeMap::from([("stubborn".to_string(), cfg)])).unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Planner::start_journaled(
        actuators,
        RemedyConfig::default(),
        metrics.clone(),
        Some(journal.reopen().unwrap()),
    );
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> =
        vec![serde_saphyr::from_str("{action: exec, target: stubborn, cooldown: 1h}").unwrap()]
            .into();
    tx.send(firing("Stubborn", &ladder)).await.unwrap();
    let r = tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no action record")
        .unwrap();
    assert_eq!(r.outcome, "timeout", "{r:?}");
    drop(tx);
    handle.join().await;
    let c = metrics
        .actions_total
        .get_or_create(&labels(&[
            ("rule", "Stubborn"),
            ("action", "exec"),
            ("outcome", "timeout"),
        ]))
        .get();
    assert_eq!(c, 1);
    let rows = journal.actions_recent(10).unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].status, JStatus::Timeout, "{rows:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for("the stubborn plugin to be killed", || async {
        (!alive(pid)).then_some(())
    })
    .await;
}

/// A killed process reparented to a PID 1 that does not reap stays a zombie: that is dead.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X') && process_exists(pid)
        }
    }
}

fn base_config(dir: &Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 200ms\n  collect_interval: 200ms\n{extra}",
        dir.join("state").display()
    )
}

// ---- point 1: no plugin outlives medic ----

/// kill -9 of medic while a plugin (and a child it started) runs: both are gone soon
/// after, though nothing signalled them and their deadline is far away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_medic_kills_the_running_plugin_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pids = d.join("pids");
    write_script(
        &d.join("slow.sh"),
        &format!(
            "#!/bin/bash\ncat > /dev/null\nsleep 600 &\necho \"$$ $!\" > {tmp}\nmv {tmp} {out}\nwait\n",
            tmp = d.join("pids.tmp").display(),
            out = pids.display()
        ),
    );
    std::fs::write(
        d.join("rules.yaml"),
        "groups:\n- name: g\n  interval: 200ms\n  rules:\n  - alert: Always\n    expr: vector(1)\n    remediate:\n    - {action: exec, target: slow, cooldown: 1h}\n",
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            "actuators:\n  slow: {{type: exec, command: [{}], timeout: 300s}}\nrule_files: [rules.yaml]\n",
            d.join("slow.sh").display()
        ),
    );
    let mut medic = Medic::start(d, &config);
    let (leader, child): (i32, i32) = wait_for("the plugin to start", || async {
        let text = std::fs::read_to_string(&pids).ok()?;
        let mut it = text.split_whitespace().map(|p| p.parse().ok());
        Some((it.next()??, it.next()??))
    })
    .await;
    assert!(alive(leader) && alive(child));
    medic.signal(libc::SIGKILL);
    medic.wait_exit(DEADLINE);
    wait_for("the plugin and its child to be gone", || async {
        (!alive(leader) && !alive(child)).then_some(())
    })
    .await;
}

/// The remedy section's medic.yaml example in the README parses, with the http actuator's
/// JSON body as a structure (point 7).
#[test]
fn readme_remedy_example_parses_with_a_structured_json_body() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("<!-- section: remedy -->")
        .nth(1)
        .expect("remedy section");
    let yaml = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    let c = medic::config::Config::parse_str(Path::new("/etc/medic/medic.yaml"), yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    match &c.actuators["drain-hook"] {
        ActuatorConfig::Http(h) => assert_eq!(
            h.body,
            Some(serde_json::json!({"drain": true, "instance": "{{ $labels.instance }}"}))
        ),
        other => panic!("{other:?}"),
    }
}

/// A config with an http probe of `target`, the alert `Down` on it and a webhook.
fn probe_config(dir: &Path, target: &Target, hook: &WebhookSink, extra_global: &str) -> String {
    std::fs::write(
        dir.join("rules.yaml"),
        "groups:\n- name: g\n  interval: 200ms\n  rules:\n  - alert: Down\n    expr: probe_success{probe=\"t\"} == 0\n",
    )
    .unwrap();
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {state}\n  evaluation_interval: 200ms\n  collect_interval: 200ms\n  alert_resend_delay: 300ms\n{extra_global}collectors:\n  t: {{type: http_probe, url: '{url}', interval: 200ms, timeout: 200ms}}\nnotifiers:\n  hook: {{type: webhook, url: '{hook}', timeout: 5s}}\nrule_files: [rules.yaml]\n",
        state = dir.join("state").display(),
        url = target.url(),
        hook = hook.url(),
    )
}

async fn wait_reloaded(medic: &Medic, n: usize) {
    wait_for("the reload", || async {
        (medic.logs().matches("configuration reloaded").count() >= n).then_some(())
    })
    .await;
}

// ---- point 3: a resolved alert is announced once, reloads or not ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_notification_is_not_sent_again_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = Target::start().await;
    let hook = WebhookSink::start().await;
    let medic = Medic::start(d, &probe_config(d, &target, &hook, ""));
    target.set_failing(true);
    wait_for("firing", || async { hook.find("firing", "Down") }).await;
    target.set_failing(false);
    wait_for("resolved", || async { hook.find("resolved", "Down") }).await;
    for n in 1..=2 {
        medic.signal(libc::SIGHUP);
        wait_reloaded(&medic, n).await;
        // the engine re-announces the resolved alert every 300 ms: give it many chances
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(hook.count("resolved", "Down"), 1, "{:#?}", hook.all());
    assert_eq!(hook.count("firing", "Down"), 1, "{:#?}", hook.all());
}

// ---- point 1: alert state survives restarts ----

fn alert_json(body: &str, name: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name)
        .cloned()
}

fn starts_at(p: &serde_json::Value) -> String {
    p["alerts"][0]["startsAt"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A clean restart and a kill -9 while an alert fires: after the restart the alert is still
/// firing with its activeAt, the webhook gets no second "firing" with a new startsAt, and an
/// alert that resolved while medic was down gets its "resolved" with the original startsAt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_state_survives_clean_restarts_and_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = Target::start().await;
    let hook = WebhookSink::start().await;
    let config = probe_config(d, &target, &hook, "");
    target.set_failing(true);
    let mut medic = Medic::start(d, &config);
    let first = wait_for("firing", || async { hook.find("firing", "Down") }).await;
    let (_, body) = medic.get("/api/v1/alerts").await;
    let active_at = alert_json(&body, "Down").unwrap()["activeAt"].clone();

    // two clean restarts while it fires
    for _ in 0..2 {
        medic.signal(libc::SIGTERM);
        assert_eq!(medic.wait_exit(DEADLINE).code(), Some(0));
        medic = Medic::start(d, &config);
        let a = wait_for("the alert after the restart", || async {
            let (_, body) = medic.get("/api/v1/alerts").await;
            alert_json(&body, "Down").filter(|a| a["state"] == "firing")
        })
        .await;
        assert_eq!(a["activeAt"], active_at, "{a}");
        // the engine re-announces every 300 ms: a second "firing" would show by now
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(hook.count("firing", "Down"), 1, "{:#?}", hook.all());

    // resolved while medic is down (kill -9): announced after the restart
    medic.signal(libc::SIGKILL);
    medic.wait_exit(DEADLINE);
    target.set_failing(false);
    let medic = Medic::start(d, &config);
    let resolved = wait_for("the resolved notification", || async {
        hook.find("resolved", "Down")
    })
    .await;
    assert_eq!(starts_at(&resolved), starts_at(&first));
    let (_, body) = medic.get("/api/v1/alerts").await;
    assert!(alert_json(&body, "Down").is_none(), "{body}");
    assert_eq!(hook.count("firing", "Down"), 1, "{:#?}", hook.all());
}

// ---- point 2: an empty config, or one that drops everything, is refused ----

fn good_config(dir: &Path, extra: &str) -> String {
    std::fs::create_dir_all(dir.join("rules.d")).unwrap();
    std::fs::write(
        dir.join("main.yaml"),
        "groups:\n- name: main\n  rules:\n  - alert: A\n    expr: vector(1) == 0\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.d/extra.yaml"),
        "groups:\n- name: extra\n  rules:\n  - record: r\n    expr: vector(1)\n",
    )
    .unwrap();
    base_config(
        dir,
        &format!(
            "collectors:\n  host: {{type: host}}\nrule_files: [main.yaml, 'rules.d/*.yaml']\n{extra}"
        ),
    )
}

/// Reloads that ended so far (accepted, rejected or refused).
fn reloads_done(medic: &Medic) -> usize {
    let logs = medic.logs();
    logs.matches("configuration reloaded").count()
        + logs.matches("the old one keeps running").count()
}

/// Writes the config, waits for the reload it causes (the file watcher) and checks its
/// outcome in `medic_config_last_reload_successful`.
async fn write_and_reload(medic: &Medic, text: &str, want: f64) {
    // the file watcher starts after the API does
    wait_for("medic to run", || async {
        medic.logs().contains("medic running").then_some(())
    })
    .await;
    let before = reloads_done(medic);
    std::fs::write(&medic.config_path, text).unwrap();
    let started = std::time::Instant::now();
    while reloads_done(medic) <= before {
        assert!(
            started.elapsed() < DEADLINE,
            "no reload of\n{text}\n{}",
            medic.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // one save can be seen as two changes: wait for the last one to settle
    wait_for("the reload's outcome", || async {
        (medic.metric("medic_config_last_reload_successful").await == Some(want)).then_some(())
    })
    .await;
}

async fn group_count(medic: &Medic) -> usize {
    let (_, body) = medic.get("/api/v1/rules").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["groups"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_comment_only_config_is_an_error_at_start_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for text in ["", "# all commented out\n#collectors:\n\n", "\n  \n"] {
        std::fs::write(d.join("medic.yaml"), text).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
            .args(["run", "-c"])
            .arg(d.join("medic.yaml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if started.elapsed() > DEADLINE {
                child.kill().unwrap();
                panic!("{text:?} was accepted: medic kept running");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success(), "{text:?} was accepted");
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert!(err.contains("the file is empty"), "{text:?}: {err}");
    }
    let good = good_config(d, "");
    let medic = Medic::start(d, &good);
    assert_eq!(group_count(&medic).await, 2);
    // the file watcher reloads the comment-only file: refused, the old config keeps running
    write_and_reload(&medic, "# emptied by mistake\n", 0.0).await;
    assert!(
        medic.logs().contains("the file is empty"),
        "{}",
        medic.logs()
    );
    assert_eq!(group_count(&medic).await, 2);
    write_and_reload(&medic, &good, 1.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removing_every_collector_or_rule_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = good_config(d, "");
    let medic = Medic::start(d, &good);
    // no collectors left
    let no_collectors = base_config(d, "rule_files: [main.yaml, 'rules.d/*.yaml']\n");
    write_and_reload(&medic, &no_collectors, 0.0).await;
    assert!(
        medic.logs().contains("would remove every collector"),
        "{}",
        medic.logs()
    );
    write_and_reload(&medic, &good, 1.0).await;
    // no rules left
    let no_rules = base_config(d, "collectors:\n  host: {type: host}\n");
    write_and_reload(&medic, &no_rules, 0.0).await;
    assert!(
        medic.logs().contains("would remove every rule"),
        "{}",
        medic.logs()
    );
    assert_eq!(group_count(&medic).await, 2);
    // asked for explicitly: accepted
    let allowed = base_config(d, "allow_empty: true\ncollectors:\n  host: {type: host}\n");
    write_and_reload(&medic, &allowed, 1.0).await;
    assert_eq!(group_count(&medic).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_glob_that_matched_and_now_matches_nothing_is_a_warning_and_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let medic = Medic::start(d, &good_config(d, ""));
    let matched = r#"medic_config_rule_files_matched{pattern="rules.d/*.yaml"}"#;
    assert_eq!(medic.metric(matched).await, Some(1.0));
    wait_for("medic to run", || async {
        medic.logs().contains("medic running").then_some(())
    })
    .await;
    std::fs::remove_file(d.join("rules.d/extra.yaml")).unwrap();
    wait_for("the reload", || async {
        (medic.metric(matched).await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(
        medic
            .metric("medic_config_rule_patterns_emptied_total")
            .await,
        Some(1.0)
    );
    assert!(
        medic
            .logs()
            .contains("matched files before and matches none now"),
        "{}",
        medic.logs()
    );
    assert_eq!(group_count(&medic).await, 1);
}

// ---- `medic check` catches what `medic run` rejects, every error at once ----

fn run_medic(args: &[&str], config: &Path) -> (i32, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > DEADLINE {
            child.kill().unwrap();
            panic!("medic {args:?} kept running: it accepted the config");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_reports_every_problem_run_would_reject_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("a-file"), "not a folder").unwrap();
    std::fs::write(d.join("noexec.sh"), "#!/bin/sh\n").unwrap();
    let config = d.join("medic.yaml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  listen_address: 127.0.0.1:0
  state_dir: {afile}
  api_token: {{value: ''}}
  external_labels: {{alertname: x}}
collectors:
  s: {{type: scrape, url: 'http://127.0.0.1:1/metrics', body_size_limit: 0B}}
actuators:
  missing: {{type: exec, command: [{dir}/nope.sh]}}
  noexec: {{type: exec, command: [{dir}/noexec.sh]}}
  quick: {{type: exec, command: [/bin/true], timeout: 0s}}
notifiers:
  hook: {{type: webhook, url: 'http://127.0.0.1:1/', initial_backoff: 10s, max_backoff: 1s}}
"#,
            afile = d.join("a-file").display(),
            dir = d.display()
        ),
    )
    .unwrap();
    let want = [
        "global.api_token",
        "global.state_dir",
        "global.external_labels.alertname",
        "collectors.s",
        "body_size_limit",
        "nope.sh",
        "noexec.sh",
        "actuators.quick",
        "notifiers.hook",
        "max_backoff",
    ];
    let (code, out) = run_medic(&["check", "-c"], &config);
    assert_eq!(code, 1, "{out}");
    for w in want {
        assert!(out.contains(w), "check did not report {w}:\n{out}");
    }
    let (code, out) = run_medic(&["run", "-c"], &config);
    assert_ne!(code, 0, "{out}");
    for w in want {
        assert!(out.contains(w), "run did not report {w}:\n{out}");
    }
}

#[test]
fn check_reports_schema_errors_of_every_section() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medic.yaml");
    std::fs::write(
        &config,
        "global:\n  colect_interval: 1s\ncollectors:\n  h: {type: host}\n  p:\n    type: http_probe\n    url: 'http://x/'\n    tiemout: 1s\nnotifiers:\n  n: {type: webhook, url: 'http://x/', nope: 2}\n",
    )
    .unwrap();
    let (code, out) = run_medic(&["check", "-c"], &config);
    assert_eq!(code, 1, "{out}");
    for w in [
        "medic.yaml:2:3",
        "colect_interval",
        "medic.yaml:8:5",
        "tiemout",
        "nope",
    ] {
        assert!(out.contains(w), "check did not report {w}:\n{out}");
    }
}
