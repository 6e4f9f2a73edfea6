//! Actions and notifications against real things: exec plugins run as real processes,
//! the http actuator and the webhook notifier talk to real axum servers on loopback.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use medic::common::metrics::{SelfMetrics, labels};
use medic::remedy::actuators::exec::{ExecActuator, ExecConfig};
use medic::remedy::{
    ActionAlert, ActionRecord, ActionRequest, ActionStatus, Actuator, ActuatorConfig, Planner,
    RemedyConfig,
};
use medic::rules::{AlertInstance, AlertState, AlertTransition, RemediateStep, TransitionKind};
use medic::store::Labels;
use tokio::sync::broadcast;

/// Generous bound for things that should happen soon; only guards against a hung test.
const PATIENCE: Duration = Duration::from_secs(60);

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A plugin that saves its stdin to argv[1] and answers as `params.mode` says.
const PROTOCOL_PLUGIN: &str = r#"#!/usr/bin/python3
import json, os, sys
raw = sys.stdin.read()
with open(sys.argv[1], "w") as f:
    f.write(raw)
with open(sys.argv[1] + ".env", "w") as f:
    json.dump(dict(os.environ), f)
req = json.loads(raw)
mode = req["params"].get("mode", "ok")
if mode in ("ok", "failed", "noop"):
    print("some log line first")
    print(json.dumps({"status": mode, "message": "did " + mode, "data": {"n": 7}}))
elif mode == "silent":
    pass
elif mode == "exit3":
    sys.stderr.write("boom\n")
    sys.exit(3)
elif mode == "spam":
    for i in range(20000):
        sys.stderr.write("noise line %d ............................................\n" % i)
    sys.stderr.write("THE-END\n")
    sys.stdout.write("x" * 300000)
    sys.stdout.write("\n")
"#;

fn exec_cfg(command: Vec<String>, timeout: Option<&str>) -> ExecConfig {
    let mut yaml = format!("command: {}\n", serde_json::to_string(&command).unwrap());
    if let Some(t) = timeout {
        yaml.push_str(&format!("timeout: {t}\n"));
    }
    serde_saphyr::from_str(&yaml).unwrap()
}

fn request(params: serde_json::Value, timeout: Duration) -> ActionRequest {
    ActionRequest {
        version: 1,
        action: "restart".into(),
        target: "plug".into(),
        params,
        alert: ActionAlert {
            name: "HighLoad".into(),
            labels: BTreeMap::from([
                ("alertname".into(), "HighLoad".into()),
                // shell metacharacters must arrive verbatim and never be interpreted
                ("instance".into(), "$(touch /tmp/medic-pwned); `id`".into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), "load is 9".into())]),
            value: 9.5,
            starts_at: "2026-01-02T03:04:05.678Z".into(),
        },
        dry_run: false,
        idempotency_key: "g/HighLoad/00000000000000ff/1/0".into(),
        deadline: "2026-01-02T03:04:35.678Z".into(),
        timeout,
    }
}

#[tokio::test]
async fn exec_plugin_receives_protocol_json_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = write_script(dir.path(), "plugin.py", PROTOCOL_PLUGIN);
    let seen = dir.path().join("seen.json");
    let mut cfg = exec_cfg(
        vec![plugin.display().to_string(), seen.display().to_string()],
        Some("20s"),
    );
    cfg.env.insert("PLUGIN_MODE".into(), "test".into());
    // SAFETY: set before any thread reads this variable; the name is unique to this test
    unsafe { std::env::set_var("MEDIC_TEST_SECRET_FOR_PLUGINS", "hunter2") };
    let act = ExecActuator::build("plug", &cfg).unwrap();
    assert_eq!(act.timeout(), Some(Duration::from_secs(20)));

    let req = request(serde_json::json!({"mode": "ok", "factor": 0.5}), PATIENCE);
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    assert_eq!(out.message, "did ok");
    assert_eq!(out.data, serde_json::json!({"n": 7}));

    let got: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    let want = serde_json::json!({
        "version": 1,
        "action": "restart",
        "target": "plug",
        "params": {"mode": "ok", "factor": 0.5},
        "alert": {
            "name": "HighLoad",
            "labels": {"alertname": "HighLoad", "instance": "$(touch /tmp/medic-pwned); `id`"},
            "annotations": {"summary": "load is 9"},
            "value": 9.5,
            "starts_at": "2026-01-02T03:04:05.678Z"
        },
        "dry_run": false,
        "idempotency_key": "g/HighLoad/00000000000000ff/1/0",
        "deadline": "2026-01-02T03:04:35.678Z"
    });
    assert_eq!(got, want);
    let env: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("seen.json.env")).unwrap())
            .unwrap();
    assert_eq!(env.get("PLUGIN_MODE").map(String::as_str), Some("test"));
    assert!(env.contains_key("PATH"));
    assert!(
        !env.contains_key("MEDIC_TEST_SECRET_FOR_PLUGINS"),
        "medic's environment leaked to the plugin"
    );

    for (mode, status) in [
        ("failed", ActionStatus::Failed),
        ("noop", ActionStatus::Noop),
    ] {
        let out = act
            .act(&request(serde_json::json!({ "mode": mode }), PATIENCE))
            .await;
        assert_eq!(out.status, status, "{mode}: {out:?}");
        assert_eq!(out.message, format!("did {mode}"));
    }

    let out = act
        .act(&request(serde_json::json!({"mode": "silent"}), PATIENCE))
        .await;
    assert_eq!(out.status, ActionStatus::Ok, "exit 0 without JSON: {out:?}");

    let out = act
        .act(&request(serde_json::json!({"mode": "exit3"}), PATIENCE))
        .await;
    assert_eq!(out.status, ActionStatus::Failed, "{out:?}");
    assert!(out.message.contains("status 3"), "{}", out.message);
    assert_eq!(out.stderr_tail, "boom\n");
}

#[tokio::test]
async fn exec_plugin_output_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = write_script(dir.path(), "plugin.py", PROTOCOL_PLUGIN);
    let seen = dir.path().join("seen.json");
    let mut cfg = exec_cfg(
        vec![plugin.display().to_string(), seen.display().to_string()],
        None,
    );
    cfg.stderr_tail_bytes = 1000;
    let act = ExecActuator::build("plug", &cfg).unwrap();
    let out = act
        .act(&request(serde_json::json!({"mode": "spam"}), PATIENCE))
        .await;
    // stdout was 300 kB of non-JSON: read up to the bound, exit 0 counts as ok
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    assert_eq!(out.stderr_tail.len(), 1000);
    assert!(out.stderr_tail.ends_with("THE-END\n"));
}

fn pid_alive(pid: i32) -> bool {
    // a killed child reparented to a PID 1 that does not reap stays a zombie: that is dead
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
    }
}

#[tokio::test]
async fn hanging_plugin_is_killed_with_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let plugin = write_script(
        dir.path(),
        "hang.sh",
        "#!/bin/bash\nsleep 1000 &\necho $! > \"$1\"\necho 'about to hang' >&2\nwait\n",
    );
    let act = ExecActuator::build(
        "hang",
        &exec_cfg(
            vec![plugin.display().to_string(), pidfile.display().to_string()],
            None,
        ),
    )
    .unwrap();
    let out = act
        .act(&request(serde_json::json!({}), Duration::from_secs(5)))
        .await;
    assert_eq!(out.status, ActionStatus::Timeout, "{out:?}");
    assert!(out.stderr_tail.contains("about to hang"), "{out:?}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let give_up = std::time::Instant::now() + PATIENCE;
    while pid_alive(pid) && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!pid_alive(pid), "the plugin's child {pid} survived");
}

#[tokio::test]
async fn missing_executable_fails_cleanly() {
    // found when the config is loaded, not when an incident needs the plugin
    let err = ExecActuator::build(
        "nope",
        &exec_cfg(vec!["/nonexistent/medic-plugin".into()], None),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("/nonexistent/medic-plugin"), "{err}");
    // removed after the start: the action fails cleanly
    let dir = tempfile::tempdir().unwrap();
    let plugin = write_script(dir.path(), "gone.sh", "#!/bin/sh\n");
    let act =
        ExecActuator::build("gone", &exec_cfg(vec![plugin.display().to_string()], None)).unwrap();
    std::fs::remove_file(&plugin).unwrap();
    let out = act.act(&request(serde_json::json!({}), PATIENCE)).await;
    assert_eq!(out.status, ActionStatus::Failed);
    assert!(out.message.contains("cannot start"), "{}", out.message);
}

#[tokio::test]
async fn example_restart_plugin_follows_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("systemctl.log");
    let fake_systemctl = write_script(
        dir.path(),
        "systemctl",
        &format!("#!/bin/bash\necho \"$@\" >> {}\n", log.display()),
    );
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/restart-unit.py");
    let act = ExecActuator::build(
        "restart",
        &exec_cfg(
            vec![
                "/usr/bin/python3".into(),
                plugin.display().to_string(),
                "--allow".into(),
                "inference.service".into(),
                "--systemctl".into(),
                fake_systemctl.display().to_string(),
            ],
            None,
        ),
    )
    .unwrap();
    let mut req = request(serde_json::json!({"unit": "inference.service"}), PATIENCE);
    req.dry_run = true;
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Noop, "{out:?}");
    assert!(!log.exists(), "dry run must not call systemctl");
    req.dry_run = false;
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "restart -- inference.service\n"
    );
    let req = request(serde_json::json!({"unit": "sshd.service"}), PATIENCE);
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Failed, "{out:?}");
}

// ---------------------------------------------------------------- planner

fn step(yaml: &str) -> RemediateStep {
    serde_saphyr::from_str(yaml).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn transition(
    kind: TransitionKind,
    rule: &str,
    instance: &str,
    fired_at_ms: i64,
    ladder: &Arc<[RemediateStep]>,
) -> AlertTransition {
    AlertTransition {
        kind,
        at_ms: now_ms(),
        alert: AlertInstance {
            rule: rule.into(),
            group: "test".into(),
            labels: Labels::new([("alertname", rule), ("instance", instance)]),
            annotations: BTreeMap::new(),
            value: 1.0,
            state: if kind == TransitionKind::Resolved {
                AlertState::Inactive
            } else {
                AlertState::Firing
            },
            active_at_ms: fired_at_ms,
            fired_at_ms: Some(fired_at_ms),
            resolved_at_ms: None,
        },
        remediate: ladder.clone(),
    }
}

/// An exec actuator config running a bash script that appends `<action> <instance>` to a log.
fn logging_actuator(dir: &Path, name: &str, extra: &str) -> (ActuatorConfig, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let script = write_script(
        dir,
        &format!("{name}.sh"),
        &format!(
            "#!/bin/bash\nreq=$(cat)\n{extra}\necho \"$req\" >> {}\n",
            log.display()
        ),
    );
    let cfg: ActuatorConfig = serde_saphyr::from_str(&format!(
        "{{type: exec, command: [{}], timeout: 60s}}",
        serde_json::to_string(&script.display().to_string()).unwrap()
    ))
    .unwrap();
    (cfg, log)
}

fn log_lines(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn next_record(rx: &mut broadcast::Receiver<ActionRecord>) -> ActionRecord {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no action record in time")
        .unwrap()
}

#[tokio::test]
async fn planner_runs_the_ladder_by_when_unresolved_after() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = logging_actuator(dir.path(), "fix", "");
    let actuators = medic::remedy::build(&BTreeMap::from([("fix".to_string(), cfg)])).unwrap();
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Planner::start(actuators, RemedyConfig::default(), metrics.clone());
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> = vec![
        step(r#"{action: first, target: fix, params: {unit: "svc-{{ $labels.instance }}", n: 3, deep: ["v={{ $value }}"]}}"#),
        step("{action: second, target: fix, when_unresolved_after: 1s}"),
        step("{action: third, target: fix, when_unresolved_after: 1h}"),
    ]
    .into();

    // A fresh alert: rung 1 at once, rung 2 a second later, rung 3 not within the test.
    let t0 = now_ms();
    tx.send(transition(TransitionKind::Firing, "A", "x", t0, &ladder))
        .await
        .unwrap();
    let mut got: Vec<String> = Vec::new();
    for _ in 0..2 {
        let r = next_record(&mut rx).await;
        assert_eq!(r.outcome, "ok", "{r:?}");
        if r.action == "second" {
            // a lower bound only: the rung must not start before its delay
            assert!(now_ms() - t0 >= 1000, "rung 2 ran before its delay");
        }
        got.push(r.action);
    }
    got.sort();
    assert_eq!(got, ["first", "second"]);

    // An alert firing for two hours already: every rung is due at once.
    tx.send(transition(
        TransitionKind::Firing,
        "B",
        "y",
        now_ms() - 2 * 3_600_000,
        &ladder,
    ))
    .await
    .unwrap();
    let mut got: Vec<String> = Vec::new();
    for _ in 0..3 {
        let r = next_record(&mut rx).await;
        assert_eq!(r.rule, "B");
        assert_eq!(r.outcome, "ok");
        got.push(r.action);
    }
    got.sort();
    assert_eq!(got, ["first", "second", "third"]);

    drop(tx);
    handle.join().await;
    let lines = log_lines(&log);
    let a_actions: Vec<&str> = lines
        .iter()
        .filter(|l| l["alert"]["name"] == "A")
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(a_actions, ["first", "second"], "the 1h rung of A ran");
    assert_eq!(
        metrics
            .actions_total
            .get_or_create(&labels(&[
                ("rule", "B"),
                ("action", "third"),
                ("outcome", "ok")
            ]))
            .get(),
        1
    );
    // the idempotency key names the rung and the firing episode
    let a1 = lines
        .iter()
        .find(|l| l["alert"]["name"] == "A" && l["action"] == "first")
        .unwrap();
    assert_eq!(a1["alert"]["labels"]["instance"], "x");
    assert_eq!(
        a1["params"],
        serde_json::json!({"unit": "svc-x", "n": 3, "deep": ["v=1"]})
    );
    assert!(
        a1["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("test/A/"),
        "{a1}"
    );
}

/// Every action is in the journal: `running` before the actuator is called, its outcome
/// after; one a previous run left `running` is marked `interrupted` at start, not retried.
#[tokio::test]
async fn planner_journals_actions_and_marks_interrupted_ones() {
    use medic::journal::{ActionStatus as JStatus, Journal, NewAction};
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let left = journal
        .action_begin(&NewAction {
            incident_id: None,
            action: "restart",
            target: Some("fix"),
            idempotency_key: "old/run/1",
            params: "{}",
            dry_run: false,
            started_ms: now_ms() - 60_000,
        })
        .unwrap();
    let (cfg, log) = logging_actuator(
        dir.path(),
        "fix",
        r#"echo '{"status":"noop","message":"nothing to do"}'"#,
    );
    let actuators = medic::remedy::build(&BTreeMap::from([("fix".to_string(), cfg)])).unwrap();
    let (tx, handle) = Planner::start_journaled(
        actuators,
        RemedyConfig::default(),
        Arc::new(SelfMetrics::default()),
        Some(journal.reopen().unwrap()),
    );
    let old = journal
        .actions_recent(10)
        .unwrap()
        .into_iter()
        .find(|a| a.id == left)
        .unwrap();
    assert_eq!(old.status, JStatus::Interrupted);
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> = vec![step(
        r#"{action: check, target: fix, params: {unit: "u-{{ $labels.instance }}"}}"#,
    )]
    .into();
    tx.send(transition(
        TransitionKind::Firing,
        "J",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    let r = next_record(&mut rx).await;
    assert_eq!(r.outcome, "noop", "{r:?}");
    drop(tx);
    handle.join().await;
    assert_eq!(log_lines(&log).len(), 1);
    let rows = journal.actions_recent(10).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let a = rows.iter().find(|a| a.id != left).unwrap();
    assert_eq!(a.action, "check");
    assert_eq!(a.target.as_deref(), Some("fix"));
    assert_eq!(a.idempotency_key, r.idempotency_key);
    assert_eq!(a.params, r#"{"unit":"u-x"}"#);
    assert_eq!(a.status, JStatus::Noop);
    assert_eq!(a.message.as_deref(), Some("noop: nothing to do"));
    assert!(a.finished_ms.is_some_and(|f| f >= a.started_ms));
}

#[tokio::test]
async fn planner_respects_cooldown_across_episodes() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = logging_actuator(dir.path(), "fix", "");
    let actuators = medic::remedy::build(&BTreeMap::from([("fix".to_string(), cfg)])).unwrap();
    let (tx, handle) = Planner::start(
        actuators,
        RemedyConfig::default(),
        Arc::new(SelfMetrics::default()),
    );
    let mut rx = handle.subscribe();
    let long: Arc<[RemediateStep]> = vec![step("{action: exec, target: fix, cooldown: 1h}")].into();
    let short: Arc<[RemediateStep]> =
        vec![step("{action: exec, target: fix, cooldown: 1s}")].into();

    // 1h cooldown: fires, resolves, fires again, still firing: one run only.
    tx.send(transition(
        TransitionKind::Firing,
        "Long",
        "x",
        now_ms(),
        &long,
    ))
    .await
    .unwrap();
    assert_eq!(next_record(&mut rx).await.outcome, "ok");
    tx.send(transition(
        TransitionKind::Resolved,
        "Long",
        "x",
        now_ms(),
        &long,
    ))
    .await
    .unwrap();
    let again = now_ms();
    tx.send(transition(
        TransitionKind::Firing,
        "Long",
        "x",
        again,
        &long,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::StillFiring,
        "Long",
        "x",
        again,
        &long,
    ))
    .await
    .unwrap();
    // another instance of the same rule has its own cooldown
    tx.send(transition(
        TransitionKind::Firing,
        "Long",
        "other",
        again,
        &long,
    ))
    .await
    .unwrap();
    let r = next_record(&mut rx).await;
    assert_eq!(r.outcome, "ok");
    assert_ne!(r.fingerprint, 0);

    // 1s cooldown: the re-fired alert runs again once the cooldown has passed.
    tx.send(transition(
        TransitionKind::Firing,
        "Short",
        "x",
        now_ms(),
        &short,
    ))
    .await
    .unwrap();
    let first = next_record(&mut rx).await;
    let t_first = now_ms();
    tx.send(transition(
        TransitionKind::Resolved,
        "Short",
        "x",
        now_ms(),
        &short,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::Firing,
        "Short",
        "x",
        now_ms(),
        &short,
    ))
    .await
    .unwrap();
    let second = next_record(&mut rx).await;
    assert_eq!(
        (first.rule.as_str(), second.rule.as_str()),
        ("Short", "Short")
    );
    assert_ne!(first.idempotency_key, second.idempotency_key);
    assert!(now_ms() - t_first >= 900, "ran again inside its cooldown");

    drop(tx);
    handle.join().await;
    let lines = log_lines(&log);
    let long_x = lines
        .iter()
        .filter(|l| l["alert"]["name"] == "Long" && l["alert"]["labels"]["instance"] == "x")
        .count();
    assert_eq!(long_x, 1, "the 1h cooldown was not respected");
    assert_eq!(lines.len(), 4);
}

#[tokio::test]
async fn firing_from_a_new_start_is_a_new_episode() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, log) = logging_actuator(dir.path(), "fix", "");
    let actuators = medic::remedy::build(&BTreeMap::from([("fix".to_string(), cfg)])).unwrap();
    let (tx, handle) = Planner::start(
        actuators,
        RemedyConfig::default(),
        Arc::new(SelfMetrics::default()),
    );
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> = vec![step("{action: exec, target: fix}")].into();
    let t1 = now_ms() - 60_000;
    tx.send(transition(TransitionKind::Firing, "A", "x", t1, &ladder))
        .await
        .unwrap();
    // the same episode announced again: nothing new
    tx.send(transition(
        TransitionKind::StillFiring,
        "A",
        "x",
        t1,
        &ladder,
    ))
    .await
    .unwrap();
    let r1 = next_record(&mut rx).await;
    // no Resolved seen, but the alert fired anew: its rungs run again
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        t1 + 1000,
        &ladder,
    ))
    .await
    .unwrap();
    let r2 = next_record(&mut rx).await;
    assert_ne!(r1.idempotency_key, r2.idempotency_key);
    drop(tx);
    handle.join().await;
    assert_eq!(log_lines(&log).len(), 2);
}

#[tokio::test]
async fn a_hanging_action_does_not_hold_up_the_next_transition() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let (hang, _) = logging_actuator(
        dir.path(),
        "hang",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", release.display()),
    );
    let (quick, _) = logging_actuator(dir.path(), "quick", "");
    let (slow, _) = logging_actuator(dir.path(), "slow", "sleep 1000");
    let actuators = medic::remedy::build(&BTreeMap::from([
        ("hang".to_string(), hang),
        ("quick".to_string(), quick),
        ("slow".to_string(), slow),
    ]))
    .unwrap();
    let (tx, handle) = Planner::start(
        actuators,
        RemedyConfig::default(),
        Arc::new(SelfMetrics::default()),
    );
    let mut rx = handle.subscribe();
    let hang_l: Arc<[RemediateStep]> = vec![step("{action: exec, target: hang}")].into();
    let quick_l: Arc<[RemediateStep]> = vec![step("{action: exec, target: quick}")].into();
    let slow_l: Arc<[RemediateStep]> =
        vec![step("{action: exec, target: slow, timeout: 1s}")].into();

    tx.send(transition(
        TransitionKind::Firing,
        "Hang",
        "x",
        now_ms(),
        &hang_l,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::Firing,
        "Quick",
        "x",
        now_ms(),
        &quick_l,
    ))
    .await
    .unwrap();
    // the hanging action can only finish after this, so Quick cannot have waited for it
    let r = next_record(&mut rx).await;
    assert_eq!((r.rule.as_str(), r.outcome), ("Quick", "ok"));
    std::fs::write(&release, "").unwrap();
    let r = next_record(&mut rx).await;
    assert_eq!((r.rule.as_str(), r.outcome), ("Hang", "ok"));

    // the step's timeout overrides the actuator's 60 s
    tx.send(transition(
        TransitionKind::Firing,
        "Slow",
        "x",
        now_ms(),
        &slow_l,
    ))
    .await
    .unwrap();
    let r = next_record(&mut rx).await;
    assert_eq!((r.rule.as_str(), r.outcome), ("Slow", "timeout"), "{r:?}");
    drop(tx);
    handle.join().await;
}

#[tokio::test]
async fn resolved_alert_cancels_rungs_that_have_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let started = dir.path().join("started");
    let (hang, log) = logging_actuator(
        dir.path(),
        "hang",
        &format!(
            "touch {}\nwhile [ ! -e {} ]; do sleep 0.05; done",
            started.display(),
            release.display()
        ),
    );
    let actuators = medic::remedy::build(&BTreeMap::from([("hang".to_string(), hang)])).unwrap();
    let config = RemedyConfig {
        max_concurrent_actions: 1,
        ..RemedyConfig::default()
    };
    let (tx, handle) = Planner::start(actuators, config, Arc::new(SelfMetrics::default()));
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> = vec![step("{action: exec, target: hang}")].into();
    let later: Arc<[RemediateStep]> = vec![step(
        "{action: exec, target: hang, when_unresolved_after: 1h}",
    )]
    .into();
    let send = |kind, rule: &str, ladder: &Arc<[RemediateStep]>| {
        let t = transition(kind, rule, "x", now_ms(), ladder);
        let tx = tx.clone();
        async move { tx.send(t).await.unwrap() }
    };

    // A takes the only slot and holds it until released
    send(TransitionKind::Firing, "A", &ladder).await;
    let give_up = std::time::Instant::now() + PATIENCE;
    while !started.exists() && std::time::Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.exists(), "A never started");
    // B queues behind A and resolves before it gets the slot
    send(TransitionKind::Firing, "B", &ladder).await;
    send(TransitionKind::Resolved, "B", &ladder).await;
    // C's only rung is an hour away; resolving it leaves nothing pending
    send(TransitionKind::Firing, "C", &later).await;
    send(TransitionKind::Resolved, "C", &later).await;
    std::fs::write(&release, "").unwrap();
    let mut outcomes: Vec<(String, &str)> = Vec::new();
    for _ in 0..2 {
        let r = next_record(&mut rx).await;
        outcomes.push((r.rule, r.outcome));
    }
    outcomes.sort();
    assert_eq!(
        outcomes,
        [("A".to_string(), "ok"), ("B".to_string(), "cancelled")]
    );
    drop(tx);
    handle.join().await;
    assert_eq!(log_lines(&log).len(), 1);
}

#[tokio::test]
async fn dry_run_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log) = logging_actuator(dir.path(), "fix", "");
    let actuators = medic::remedy::build(&BTreeMap::from([("fix".to_string(), fix)])).unwrap();
    let metrics = Arc::new(SelfMetrics::default());
    let config = RemedyConfig {
        dry_run: true,
        ..RemedyConfig::default()
    };
    let (tx, handle) = Planner::start(actuators, config, metrics.clone());
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> =
        vec![step("{action: exec, target: fix, params: {unit: x}}")].into();
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    let r = next_record(&mut rx).await;
    assert_eq!(r.outcome, "dry_run");
    assert!(r.message.contains("would run"), "{}", r.message);
    drop(tx);
    handle.join().await;
    assert!(!log.exists(), "the plugin ran in dry-run mode");
    assert_eq!(
        metrics
            .actions_total
            .get_or_create(&labels(&[
                ("rule", "A"),
                ("action", "exec"),
                ("outcome", "dry_run")
            ]))
            .get(),
        1
    );

    // a step-level dry_run with a plugin that supports it: called with "dry_run": true
    let (fix, log) = logging_actuator(dir.path(), "fix2", "");
    let ActuatorConfig::Exec(mut ec) = fix else {
        unreachable!()
    };
    ec.supports_dry_run = true;
    let actuators = medic::remedy::build(&BTreeMap::from([(
        "fix2".to_string(),
        ActuatorConfig::Exec(ec),
    )]))
    .unwrap();
    let (tx, handle) = Planner::start(
        actuators,
        RemedyConfig::default(),
        Arc::new(SelfMetrics::default()),
    );
    let mut rx = handle.subscribe();
    let ladder: Arc<[RemediateStep]> =
        vec![step("{action: exec, target: fix2, dry_run: true}")].into();
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    assert_eq!(next_record(&mut rx).await.outcome, "ok");
    drop(tx);
    handle.join().await;
    let lines = log_lines(&log);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["dry_run"], true);
}

// ---------------------------------------------------------------- http sinks

/// What a sink answers to one request.
#[derive(Clone)]
enum Reply {
    Status(u16, &'static str),
    /// Never answers.
    Hang,
}

#[derive(Debug, Clone)]
struct Captured {
    method: String,
    path: String,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Captured {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A real HTTP server on 127.0.0.1:0 that records requests and answers from a script
/// (then 200 once the script is used up).
#[derive(Clone, Default)]
struct Sink {
    got: Arc<std::sync::Mutex<Vec<Captured>>>,
    script: Arc<std::sync::Mutex<std::collections::VecDeque<Reply>>>,
}

impl Sink {
    async fn start(script: Vec<Reply>) -> (String, Sink) {
        use axum::response::IntoResponse;
        let sink = Sink::default();
        sink.script.lock().unwrap().extend(script);
        async fn handle(
            axum::extract::State(s): axum::extract::State<Sink>,
            method: axum::http::Method,
            uri: axum::http::Uri,
            headers: axum::http::HeaderMap,
            body: axum::body::Bytes,
        ) -> axum::response::Response {
            s.got.lock().unwrap().push(Captured {
                method: method.to_string(),
                path: uri.path().to_string(),
                headers,
                body: body.to_vec(),
            });
            let next = s.script.lock().unwrap().pop_front();
            match next {
                Some(Reply::Hang) => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    axum::http::StatusCode::OK.into_response()
                }
                Some(Reply::Status(code, body)) => (
                    axum::http::StatusCode::from_u16(code).unwrap(),
                    [("content-type", "application/json")],
                    body,
                )
                    .into_response(),
                None => axum::http::StatusCode::OK.into_response(),
            }
        }
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}"), sink)
    }

    fn got(&self) -> Vec<Captured> {
        self.got.lock().unwrap().clone()
    }
}

fn http_actuator(yaml: &str) -> Arc<dyn Actuator> {
    let cfg: ActuatorConfig = serde_saphyr::from_str(yaml).unwrap();
    medic::remedy::build(&BTreeMap::from([("hook".to_string(), cfg)]))
        .unwrap()
        .remove("hook")
        .unwrap()
}

#[tokio::test]
async fn http_actuator_sends_the_request_and_judges_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    // SAFETY: set before any thread reads this variable; the name is unique to this test
    unsafe { std::env::set_var("MEDIC_TEST_HTTP_KEY", "key-9") };
    let (url, sink) = Sink::start(vec![
        Reply::Status(200, r#"{"drained": 3}"#),
        Reply::Status(202, ""),
        Reply::Status(200, ""),
        Reply::Status(200, r#"{"status": "noop", "message": "already drained"}"#),
        Reply::Status(500, "oops"),
    ])
    .await;

    // default body: the protocol request object
    let act = http_actuator(&format!(
        "{{type: http, url: \"{url}/admin/drain\", bearer_token: {{file: {}}}, secret_headers: {{X-Api-Key: {{env: MEDIC_TEST_HTTP_KEY}}}}}}",
        token.display()
    ));
    let req = request(serde_json::json!({"mode": "x"}), PATIENCE);
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    assert_eq!(out.data, serde_json::json!({"drained": 3}));
    let c = &sink.got()[0];
    assert_eq!(
        (c.method.as_str(), c.path.as_str()),
        ("POST", "/admin/drain")
    );
    assert_eq!(c.headers["authorization"], "Bearer s3cret");
    assert_eq!(c.headers["x-api-key"], "key-9");
    assert_eq!(c.headers["content-type"], "application/json");
    assert_eq!(c.json(), serde_json::to_value(&req).unwrap());

    // a fixed body, method, headers and expected status
    let act = http_actuator(&format!(
        "{{type: http, url: \"{url}/scale\", method: put, headers: {{X-Requested-By: medic}}, body: 'workers=4 for {{{{ $labels.alertname }}}}', expected_status: [202]}}"
    ));
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    let c = &sink.got()[1];
    assert_eq!(c.method, "PUT");
    assert_eq!(c.headers["x-requested-by"], "medic");
    assert_eq!(c.body, b"workers=4 for HighLoad");
    assert!(c.headers.get("authorization").is_none());
    // 200 is not the expected 202
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Failed, "{out:?}");
    assert_eq!(out.message, "HTTP 200");

    let act = http_actuator(&format!("{{type: http, url: \"{url}/x\"}}"));
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Noop, "{out:?}");
    assert_eq!(out.message, "HTTP 200: already drained");
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Failed, "{out:?}");
    assert_eq!(out.message, "HTTP 500");
}

#[tokio::test]
async fn http_actuator_times_out_on_a_hanging_server() {
    let (url, sink) = Sink::start(vec![Reply::Hang]).await;
    let act = http_actuator(&format!(
        "{{type: http, url: \"{url}/slow\", timeout: 10s}}"
    ));
    assert_eq!(act.timeout(), Some(Duration::from_secs(10)));
    let out = act
        .act(&request(serde_json::json!({}), Duration::from_millis(500)))
        .await;
    assert_eq!(out.status, ActionStatus::Timeout, "{out:?}");
    assert_eq!(sink.got().len(), 1);
}

/// A JSON body is written as a structure: templated values are JSON-encoded where they
/// land, so a hostile label value stays one string and the body is always valid JSON.
#[tokio::test]
async fn http_actuator_json_body_encodes_templated_values() {
    let (url, sink) = Sink::start(vec![]).await;
    let act = http_actuator(&format!(
        r#"{{type: http, url: "{url}/admin", body: {{drain: false, batch_size: 8, instance: "{{{{ $labels.instance }}}}", note: "at {{{{ $value }}}}", tags: ["{{{{ $labels.alertname }}}}", 1]}}}}"#
    ));
    let hostile = r#"x", "batch_size": 1, "drain": true, "y": ""#.to_string() + "\n\"quote";
    let mut req = request(serde_json::json!({}), PATIENCE);
    req.alert.labels.insert("instance".into(), hostile.clone());
    let out = act.act(&req).await;
    assert_eq!(out.status, ActionStatus::Ok, "{out:?}");
    let c = &sink.got()[0];
    assert_eq!(c.headers["content-type"], "application/json");
    assert_eq!(
        c.json(),
        serde_json::json!({
            "drain": false,
            "batch_size": 8,
            "instance": hostile,
            "note": "at 9.5",
            "tags": ["HighLoad", 1],
        })
    );
    // a text body says what it is
    let act = http_actuator(&format!(
        "{{type: http, url: \"{url}/t\", body: 'workers=4'}}"
    ));
    act.act(&req).await;
    assert_eq!(
        sink.got()[1].headers["content-type"],
        "text/plain; charset=utf-8"
    );
    // JSON written as a text template is refused: it would splice values in raw
    let cfg: ActuatorConfig = serde_saphyr::from_str(
        r#"{type: http, url: "http://x/", body: '{"instance": "{{ $labels.instance }}"}'}"#,
    )
    .unwrap();
    let err = medic::remedy::build(&BTreeMap::from([("hook".to_string(), cfg)]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("write a JSON body as a YAML mapping"),
        "{err:?}"
    );
}

#[test]
fn http_actuator_rejects_bad_config() {
    for yaml in [
        "{type: http, url: 'ftp://x/'}",
        "{type: http, url: 'not a url'}",
        "{type: http, url: 'http://x/', method: 'BAD METHOD'}",
        "{type: http, url: 'http://x/', headers: {'bad header': v}}",
        "{type: http, url: 'http://x/', bearer_token: {file: /nonexistent/token}}",
        "{type: http, url: 'http://x/', secret_headers: {X-Key: {env: MEDIC_TEST_SURELY_UNSET}}}",
    ] {
        let cfg: ActuatorConfig = serde_saphyr::from_str(yaml).unwrap();
        let err = medic::remedy::build(&BTreeMap::from([("hook".to_string(), cfg)]));
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("actuator `hook`"), "{yaml}: {msg:?}");
    }
}

// ---------------------------------------------------------------- webhook notifier

use medic::alert::{DeliveryRecord, Dispatcher, NotifierConfig};

fn webhook(name: &str, yaml: &str) -> medic::alert::Notifiers {
    let cfg: NotifierConfig = serde_saphyr::from_str(yaml).unwrap();
    medic::alert::build(&BTreeMap::from([(name.to_string(), cfg)])).unwrap()
}

async fn next_delivery(rx: &mut broadcast::Receiver<DeliveryRecord>) -> DeliveryRecord {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no delivery record in time")
        .unwrap()
}

fn is_rfc3339(s: &str) -> bool {
    humantime::parse_rfc3339(s).is_ok()
}

#[tokio::test]
async fn webhook_sends_firing_then_resolved_in_alertmanager_format() {
    let (url, sink) = Sink::start(vec![]).await;
    // SAFETY: set before any thread reads this variable; the name is unique to this test
    unsafe { std::env::set_var("MEDIC_TEST_WEBHOOK_TOKEN", "tok-123") };
    let notifiers = webhook(
        "ops",
        &format!(
            "{{type: webhook, url: \"{url}/hook\", bearer_token: {{env: MEDIC_TEST_WEBHOOK_TOKEN}}, external_url: \"http://medic.example:9464/\"}}"
        ),
    );
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Dispatcher::start(
        notifiers,
        BTreeMap::from([("cluster".to_string(), "eu-1".to_string())]),
        metrics.clone(),
    );
    let mut rx = handle.subscribe();
    let none: Arc<[RemediateStep]> = Vec::new().into();
    let fired = now_ms() - 5000;
    let mut t = transition(TransitionKind::Pending, "DiskFull", "db1", fired, &none);
    t.alert.annotations = BTreeMap::from([("summary".into(), "disk on db1 is full".into())]);
    tx.send(t.clone()).await.unwrap();
    // a pending alert that went away never fired: nothing to tell
    let mut gone = t.clone();
    gone.kind = TransitionKind::Resolved;
    gone.alert.fired_at_ms = None;
    gone.alert.labels = Labels::new([("alertname", "DiskFull"), ("instance", "other")]);
    tx.send(gone).await.unwrap();
    t.kind = TransitionKind::Firing;
    tx.send(t.clone()).await.unwrap();
    // re-announced right away: within repeat_interval (4h), so not re-sent
    t.kind = TransitionKind::StillFiring;
    tx.send(t.clone()).await.unwrap();
    t.kind = TransitionKind::Resolved;
    let resolved_at = now_ms();
    t.alert.resolved_at_ms = Some(resolved_at);
    tx.send(t.clone()).await.unwrap();
    // the engine re-announces a resolved alert for 15 minutes: the receiver hears it once
    tx.send(t.clone()).await.unwrap();

    let d1 = next_delivery(&mut rx).await;
    let d2 = next_delivery(&mut rx).await;
    assert_eq!((d1.outcome, d1.attempts), ("sent", 1), "{d1:?}");
    assert_eq!((d2.outcome, d2.attempts), ("sent", 1), "{d2:?}");
    drop(tx);
    handle.join().await;

    let got = sink.got();
    assert_eq!(got.len(), 2, "expected exactly firing + resolved");
    for c in &got {
        assert_eq!((c.method.as_str(), c.path.as_str()), ("POST", "/hook"));
        assert_eq!(c.headers["authorization"], "Bearer tok-123");
        assert_eq!(c.headers["content-type"], "application/json");
    }
    let firing = got[0].json();
    let resolved = got[1].json();
    let labels = serde_json::json!({"alertname": "DiskFull", "instance": "db1", "cluster": "eu-1"});
    let annotations = serde_json::json!({"summary": "disk on db1 is full"});
    for (msg, status) in [(&firing, "firing"), (&resolved, "resolved")] {
        let keys: Vec<&String> = msg.as_object().unwrap().keys().collect();
        let mut want = vec![
            "alerts",
            "commonAnnotations",
            "commonLabels",
            "externalURL",
            "groupKey",
            "groupLabels",
            "receiver",
            "status",
            "truncatedAlerts",
            "version",
        ];
        want.sort();
        let mut keys: Vec<&str> = keys.iter().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(keys, want);
        assert_eq!(msg["version"], "4");
        assert_eq!(msg["status"], status);
        assert_eq!(msg["receiver"], "ops");
        assert_eq!(msg["truncatedAlerts"], 0);
        assert_eq!(msg["externalURL"], "http://medic.example:9464");
        assert_eq!(msg["commonLabels"], labels);
        assert_eq!(msg["groupLabels"], labels);
        assert_eq!(msg["commonAnnotations"], annotations);
        assert_eq!(
            msg["groupKey"],
            r#"{}:{alertname="DiskFull", cluster="eu-1", instance="db1"}"#
        );
        let alerts = msg["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a["status"], status);
        assert_eq!(a["labels"], labels);
        assert_eq!(a["annotations"], annotations);
        assert_eq!(a["generatorURL"], "http://medic.example:9464/api/v1/alerts");
        let fp = a["fingerprint"].as_str().unwrap();
        assert!(
            fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()),
            "{fp}"
        );
        let starts = a["startsAt"].as_str().unwrap();
        assert!(is_rfc3339(starts), "{starts}");
        let since_epoch = humantime::parse_rfc3339(starts)
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(since_epoch.as_millis() as i64, fired);
    }
    assert_eq!(
        firing["alerts"][0]["fingerprint"],
        resolved["alerts"][0]["fingerprint"]
    );
    assert_eq!(firing["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let ends = resolved["alerts"][0]["endsAt"].as_str().unwrap();
    let ends_ms = humantime::parse_rfc3339(ends)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(ends_ms, resolved_at);
    assert_eq!(
        metrics
            .notifications_total
            .get_or_create(&labels_of("ops", "sent"))
            .get(),
        2
    );
}

fn labels_of(notifier: &str, outcome: &str) -> medic::common::metrics::LabelPairs {
    labels(&[("notifier", notifier), ("outcome", outcome)])
}

#[tokio::test]
async fn webhook_retries_with_backoff_until_delivered() {
    let (url, sink) = Sink::start(vec![Reply::Status(500, ""), Reply::Status(503, "")]).await;
    let notifiers = webhook(
        "ops",
        &format!("{{type: webhook, url: \"{url}/\", initial_backoff: 50ms, max_attempts: 5}}"),
    );
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Dispatcher::start(notifiers, BTreeMap::new(), metrics.clone());
    let mut rx = handle.subscribe();
    let none: Arc<[RemediateStep]> = Vec::new().into();
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        now_ms(),
        &none,
    ))
    .await
    .unwrap();
    let d = next_delivery(&mut rx).await;
    assert_eq!((d.outcome, d.attempts), ("sent", 3), "{d:?}");
    let got = sink.got();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].body, got[2].body, "retries resend the same payload");

    // a 4xx other than 408/429 is not retried
    sink.script
        .lock()
        .unwrap()
        .push_back(Reply::Status(400, "bad"));
    tx.send(transition(
        TransitionKind::Firing,
        "B",
        "x",
        now_ms(),
        &none,
    ))
    .await
    .unwrap();
    let d = next_delivery(&mut rx).await;
    assert_eq!((d.outcome, d.attempts), ("failed", 1), "{d:?}");
    assert!(d.error.contains("HTTP 400"), "{}", d.error);
    drop(tx);
    handle.join().await;
    assert_eq!(
        metrics
            .notifications_total
            .get_or_create(&labels_of("ops", "failed"))
            .get(),
        1
    );
}

#[tokio::test]
async fn webhook_gives_up_on_a_hanging_sink_after_bounded_attempts() {
    let (url, sink) = Sink::start(vec![Reply::Hang, Reply::Hang]).await;
    let (ok_url, ok_sink) = Sink::start(vec![]).await;
    let (stuck_url, _stuck_sink) = Sink::start(vec![Reply::Hang]).await;
    let mut notifiers = webhook(
        "slow",
        &format!(
            "{{type: webhook, url: \"{url}/\", timeout: 300ms, max_attempts: 2, initial_backoff: 10ms}}"
        ),
    );
    notifiers.extend(webhook(
        "fast",
        &format!("{{type: webhook, url: \"{ok_url}/\"}}"),
    ));
    // hangs far longer than this test: the others must finish while it still waits
    notifiers.extend(webhook(
        "stuck",
        &format!("{{type: webhook, url: \"{stuck_url}/\", timeout: 1h, max_attempts: 1}}"),
    ));
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Dispatcher::start(notifiers, BTreeMap::new(), metrics.clone());
    let mut rx = handle.subscribe();
    let none: Arc<[RemediateStep]> = Vec::new().into();
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        now_ms(),
        &none,
    ))
    .await
    .unwrap();
    let mut by_name = BTreeMap::new();
    for _ in 0..2 {
        let d = next_delivery(&mut rx).await;
        by_name.insert(d.notifier.clone(), d);
    }
    let fast = &by_name["fast"];
    assert_eq!((fast.outcome, fast.attempts), ("sent", 1), "{fast:?}");
    let slow = &by_name["slow"];
    assert_eq!((slow.outcome, slow.attempts), ("failed", 2), "{slow:?}");
    assert!(slow.error.contains("no answer"), "{}", slow.error);
    assert_eq!(sink.got().len(), 2);
    assert_eq!(ok_sink.got().len(), 1);
    assert_eq!(
        metrics
            .notifications_total
            .get_or_create(&labels_of("slow", "failed"))
            .get(),
        1
    );
    // not joined: "stuck" would hold the join for its hour-long timeout
    drop(tx);
    drop(handle);
}
