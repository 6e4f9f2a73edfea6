//! Actions and notifications against real things: exec plugins run as real processes,
//! the http actuator and the webhook notifier talk to real axum servers on loopback.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use medic::api::metrics::{SelfMetrics, labels};
use medic::remedy::exec::{ExecActuator, ExecConfig};
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
import json, sys
raw = sys.stdin.read()
with open(sys.argv[1], "w") as f:
    f.write(raw)
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
    let act = ExecActuator::build(
        "plug",
        &exec_cfg(
            vec![plugin.display().to_string(), seen.display().to_string()],
            Some("20s"),
        ),
    )
    .unwrap();
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
        .act(&request(serde_json::json!({}), Duration::from_secs(2)))
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
    let act = ExecActuator::build(
        "nope",
        &exec_cfg(vec!["/nonexistent/medic-plugin".into()], None),
    )
    .unwrap();
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
        step("{action: first, target: fix}"),
        step("{action: second, target: fix, when_unresolved_after: 1s}"),
        step("{action: third, target: fix, when_unresolved_after: 1h}"),
    ]
    .into();

    // A fresh alert: rung 1 at once, rung 2 a second later, rung 3 not within the test.
    let t0 = now_ms();
    tx.send(transition(TransitionKind::Firing, "A", "x", t0, &ladder))
        .await
        .unwrap();
    let r1 = next_record(&mut rx).await;
    assert_eq!((r1.action.as_str(), r1.outcome), ("first", "ok"), "{r1:?}");
    let r2 = next_record(&mut rx).await;
    assert_eq!((r2.action.as_str(), r2.outcome), ("second", "ok"), "{r2:?}");
    assert!(now_ms() - t0 >= 1000, "rung 2 ran before its delay");

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
    let a1 = &lines[0];
    assert_eq!(a1["alert"]["labels"]["instance"], "x");
    assert!(
        a1["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("test/A/"),
        "{a1}"
    );
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
    let (hang, log) = logging_actuator(
        dir.path(),
        "hang",
        &format!("while [ ! -e {} ]; do sleep 0.05; done", release.display()),
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

    // A holds the only slot; B queues behind it; B resolves before it gets the slot.
    tx.send(transition(
        TransitionKind::Firing,
        "A",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::Firing,
        "B",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::Resolved,
        "B",
        "x",
        now_ms(),
        &ladder,
    ))
    .await
    .unwrap();
    // C's only rung is an hour away; resolving it leaves nothing pending
    tx.send(transition(
        TransitionKind::Firing,
        "C",
        "x",
        now_ms(),
        &later,
    ))
    .await
    .unwrap();
    tx.send(transition(
        TransitionKind::Resolved,
        "C",
        "x",
        now_ms(),
        &later,
    ))
    .await
    .unwrap();
    // wait until A runs (its log line would appear only after release, so poll its process)
    let give_up = std::time::Instant::now() + PATIENCE;
    while std::time::Instant::now() < give_up
        && !std::process::Command::new("pgrep")
            .args(["-f", &dir.path().join("hang.sh").display().to_string()])
            .stdout(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
