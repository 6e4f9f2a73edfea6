//! The `systemd` and `rollback` actuators and the `release_drift` collector against real
//! processes: units are run by the stand-in `systemctl` (tests/support/systemctl; these
//! machines have no systemd as PID 1), which really starts and stops them, and the services
//! are real HTTP servers on loopback probed by a real `medic run`.
//!
//! Figures (fault → alert → action → resolved) are printed on stdout; run with
//! `cargo test --test act_ops -- --nocapture --test-threads 1` to read them.

#[path = "support/daemon.rs"]
mod support;
#[path = "support/units.rs"]
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use medic::collect::{BuildContext, CollectorConfig};
use medic::remedy::{ActionAlert, ActionRequest, ActionStatus, Actuator};
use serde_json::json;
use support::{Medic, wait_for};
use units::{SERVER_PY, Units, free_port, http_status, wait_http};

const PATIENCE: Duration = Duration::from_secs(60);

fn base_config(dir: &Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 300ms\n  collect_interval: 1s\n{extra}",
        dir.join("state").display()
    )
}

fn request(action: &str, params: serde_json::Value, dry_run: bool) -> ActionRequest {
    ActionRequest {
        version: 1,
        action: action.into(),
        target: "t".into(),
        params,
        alert: ActionAlert {
            name: "Test".into(),
            labels: BTreeMap::from([("alertname".into(), "Test".into())]),
            annotations: BTreeMap::new(),
            value: 1.0,
            starts_at: "2026-01-02T03:04:05Z".into(),
        },
        dry_run,
        idempotency_key: format!("k-{action}-{}", rand_key()),
        deadline: "2026-01-02T03:05:05Z".into(),
        timeout: PATIENCE,
    }
}

fn rand_key() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Actuators built from an `actuators:` YAML section, as medic.yaml has it.
fn actuators(yaml: &str) -> BTreeMap<String, Arc<dyn Actuator>> {
    let cfg: BTreeMap<String, medic::remedy::ActuatorConfig> =
        serde_saphyr::from_str(yaml).unwrap();
    medic::remedy::build(&cfg).unwrap()
}

/// The actions the journal of a medic in `dir` holds, oldest first.
fn journal_actions(dir: &Path) -> Vec<medic::journal::ActionRecord> {
    let j = medic::journal::Journal::open(&dir.join("state/journal.db")).unwrap();
    let mut a = j.actions_recent(100).unwrap();
    a.reverse();
    a
}

async fn firing(medic: &Medic, name: &str) -> Option<serde_json::Value> {
    let (_, body) = medic.get("/api/v1/alerts").await;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["labels"]["alertname"] == name && a["state"] == "firing")
        .cloned()
}

async fn no_alerts(medic: &Medic) -> Option<()> {
    let (_, body) = medic.get("/api/v1/alerts").await;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["alerts"].as_array()?.is_empty().then_some(())
}

/// A web service run as `web.service` dies; ServiceDown fires, the systemd actuator
/// restarts it and waits for it to be active, the probe succeeds again, the alert resolves,
/// and the journal holds what the restart found and left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_service_is_restarted_and_the_alert_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let units = Units::new(&d.join("sysd"));
    let port = free_port();
    std::fs::write(d.join("server.py"), SERVER_PY).unwrap();
    units.define(
        "web.service",
        &format!(
            "ExecStart=/usr/bin/python3 {} {port} 200\n",
            d.join("server.py").display()
        ),
    );
    assert_eq!(units.ctl(&["start", "--", "web.service"]).0, 0);
    let url = format!("http://127.0.0.1:{port}/health");
    wait_http(&url, 200);

    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: services
  interval: 300ms
  rules:
  - alert: ServiceDown
    expr: probe_success{probe="web"} == 0
    labels: {severity: critical}
    remediate:
    - {action: restart, target: web-service, cooldown: 1h}
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            "collectors:\n  web: {{type: http_probe, url: \"{url}\", interval: 1s, timeout: 1s}}\nactuators:\n  web-service: {{type: systemd, systemctl: {}, unit: web.service, active_within: 20s, timeout: 40s}}\nrule_files: [rules.yaml]\n",
            units.systemctl().display()
        ),
    );
    let medic = Medic::start(d, &config);
    wait_for("the first rule evaluation", || async {
        let (_, body) = medic.get("/api/v1/rules").await;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (v["data"]["groups"][0]["rules"][0]["health"] == "ok").then_some(())
    })
    .await;
    assert!(
        no_alerts(&medic).await.is_some(),
        "an alert before the fault"
    );

    let old_pid = units.main_pid("web.service");
    assert!(old_pid > 0);
    // the fault: the service dies
    let fault = Instant::now();
    // SAFETY: kill(2) on the pid of the test's own service.
    unsafe { libc::kill(old_pid, libc::SIGKILL) };
    wait_for("the service to be down", || async {
        (http_status(&url).is_none()).then_some(())
    })
    .await;
    assert_eq!(units.state("web.service"), "failed");

    let fired = wait_for("ServiceDown to fire (or to have acted)", || async {
        if firing(&medic, "ServiceDown").await.is_some()
            || medic
                .metric(r#"medic_actions_total{rule="ServiceDown",action="restart",outcome="ok"}"#)
                .await
                .is_some()
        {
            Some(fault.elapsed())
        } else {
            None
        }
    })
    .await;
    let acted = wait_for("the restart to succeed", || async {
        (medic
            .metric(r#"medic_actions_total{rule="ServiceDown",action="restart",outcome="ok"}"#)
            .await
            == Some(1.0))
        .then(|| fault.elapsed())
    })
    .await;
    let resolved = wait_for("ServiceDown to resolve", || async {
        no_alerts(&medic).await.map(|_| fault.elapsed())
    })
    .await;
    assert_eq!(http_status(&url), Some(200));
    assert_eq!(units.state("web.service"), "active");
    let new_pid = units.main_pid("web.service");
    assert!(new_pid > 0 && new_pid != old_pid, "{old_pid} → {new_pid}");
    units.track("web.service");

    let actions = journal_actions(d);
    let a = actions
        .iter()
        .find(|a| a.action == "restart")
        .expect("the restart in the journal");
    let msg = a.message.clone().unwrap_or_default();
    assert!(
        msg.contains(&format!(
            "restarted web.service: failed → active (MainPID 0 → {new_pid})"
        )),
        "{msg}"
    );
    assert_eq!(a.target.as_deref(), Some("web-service"));
    let out: serde_json::Value =
        serde_json::from_str(a.result.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(
        out["before"],
        json!({"unit": "web.service", "state": "failed", "main_pid": 0}),
        "{out}"
    );
    assert_eq!(
        out["after"],
        json!({"unit": "web.service", "state": "active", "main_pid": new_pid}),
        "{out}"
    );
    // the stand-in was asked with argv only, the unit after `--`
    assert!(units.calls().iter().any(|c| c
        == &[
            "--no-pager",
            "--no-ask-password",
            "restart",
            "--",
            "web.service"
        ]));
    println!(
        "figure restart: fault → firing seen {:.2}s, → restart ok counted {:.2}s, → resolved {:.2}s; journal: {msg}",
        fired.as_secs_f64(),
        acted.as_secs_f64(),
        resolved.as_secs_f64()
    );
}

/// rules/services.yaml's ServiceUnitFailed through a daemon: the process collector reads
/// the unit from (the stand-in) systemctl, the unit fails, the rule's templated
/// `unit: "{{ $labels.name }}"` passes `allowed_units`, the unit is restarted, the alert
/// resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_unit_is_restarted_by_its_label_through_allowed_units() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let units = Units::new(&d.join("sysd"));
    units.define("worker-a.service", "ExecStart=/bin/sleep 600\n");
    units.ctl(&["start", "--", "worker-a.service"]);
    units.track("worker-a.service");
    // the pack's rule, with a short `for:` for the test
    let pack = std::fs::read_to_string(repo().join("rules/services.yaml")).unwrap();
    assert!(pack.contains("params: {unit: \"{{ $labels.name }}\"}"));
    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: services
  interval: 300ms
  rules:
  - alert: ServiceUnitFailed
    expr: node_systemd_unit_state{state="failed"} == 1
    labels: {severity: critical}
    remediate:
    - action: restart
      target: services
      params: {unit: "{{ $labels.name }}"}
      cooldown: 1h
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            "collectors:\n  worker-a: {{type: process, systemd_unit: worker-a.service, systemctl: {ctl}, interval: 1s, timeout: 1s}}\nactuators:\n  services: {{type: systemd, systemctl: {ctl}, allowed_units: 'worker-[a-z]+\\.service', active_within: 20s, timeout: 40s}}\nrule_files: [rules.yaml]\n",
            ctl = units.systemctl().display()
        ),
    );
    let medic = Medic::start(d, &config);
    let pid = units.main_pid("worker-a.service");
    let fault = Instant::now();
    // SAFETY: kill(2) on the pid of the test's own unit.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let acted = wait_for("the restart to succeed", || async {
        (medic
            .metric(
                r#"medic_actions_total{rule="ServiceUnitFailed",action="restart",outcome="ok"}"#,
            )
            .await
            == Some(1.0))
        .then(|| fault.elapsed())
    })
    .await;
    let resolved = wait_for("ServiceUnitFailed to resolve", || async {
        no_alerts(&medic).await.map(|_| fault.elapsed())
    })
    .await;
    assert_eq!(units.state("worker-a.service"), "active");
    let a = journal_actions(d)
        .into_iter()
        .find(|a| a.action == "restart")
        .expect("the restart in the journal");
    assert!(a.params.contains("worker-a.service"), "{}", a.params);
    let out: serde_json::Value =
        serde_json::from_str(a.result.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(out["before"]["unit"], "worker-a.service", "{out}");
    assert_eq!(out["before"]["state"], "failed", "{out}");
    assert_eq!(out["after"]["state"], "active", "{out}");
    let msg = a.message.unwrap_or_default();
    assert!(
        msg.contains("restarted worker-a.service: failed → active"),
        "{msg}"
    );
    println!(
        "figure unit failed: fault → restart ok counted {:.2}s, → resolved {:.2}s; journal: {msg}",
        acted.as_secs_f64(),
        resolved.as_secs_f64()
    );
}

/// A release tree `app/releases/<v>/` with `app/current -> releases/<cur>`, each release
/// holding a server whose /health answers `status` and a MANIFEST.sha256 made by sha256sum.
fn releases(app: &Path, versions: &[(&str, u16)], cur: &str) {
    for (v, status) in versions {
        let r = app.join("releases").join(v);
        std::fs::create_dir_all(r.join("static")).unwrap();
        std::fs::write(
            r.join("server.py"),
            SERVER_PY.replace("int(sys.argv[2])", &status.to_string()),
        )
        .unwrap();
        std::fs::write(r.join("static/index.html"), format!("release {v}\n")).unwrap();
        // the documented way to record a manifest
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg("find . -type f ! -name MANIFEST.sha256 -print0 | sort -z | xargs -0 sha256sum > MANIFEST.sha256")
            .current_dir(&r)
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
    }
    std::os::unix::fs::symlink(format!("releases/{cur}"), app.join("current")).unwrap();
}

/// v2 is a bad deploy (its /health fails); BadDeploy fires within 15 minutes of the
/// deploy, the rollback actuator re-points `current` to v1 and restarts through the systemd
/// actuator, the service is healthy again, the alert resolves and the journal has from/to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploy_is_rolled_back_and_the_alert_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app = d.join("app");
    releases(&app, &[("v1", 200), ("v2", 500)], "v2");
    let units = Units::new(&d.join("sysd"));
    let port = free_port();
    units.define(
        "app.service",
        &format!(
            "ExecStart=/usr/bin/python3 {}/current/server.py {port}\n",
            app.display()
        ),
    );
    assert_eq!(units.ctl(&["start", "--", "app.service"]).0, 0);
    units.track("app.service");
    let url = format!("http://127.0.0.1:{port}/health");
    wait_http(&url, 500);

    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: deploy
  interval: 300ms
  rules:
  - alert: BadDeploy
    expr: |
      probe_success{probe="app"} == 0
        and on () (time() - medic_release_current_timestamp_seconds{deploy="app"}) < 900
    labels: {severity: critical}
    remediate:
    - {action: rollback, target: app-deploy, cooldown: 1h}
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            "collectors:\n  app: {{type: http_probe, url: \"{url}\", interval: 1s, timeout: 1s}}\n  app-release: {{type: release_drift, path: app/current, label: app, interval: 1s}}\nactuators:\n  app-service: {{type: systemd, systemctl: {}, unit: app.service, active_within: 20s}}\n  app-deploy: {{type: rollback, releases_dir: app/releases, current: app/current, restart: app-service, max_steps: 1, timeout: 40s}}\nrule_files: [rules.yaml]\n",
            units.systemctl().display()
        ),
    );
    let deployed = Instant::now();
    let medic = Medic::start(d, &config);
    let acted = wait_for("the rollback to succeed", || async {
        (medic
            .metric(r#"medic_actions_total{rule="BadDeploy",action="rollback",outcome="ok"}"#)
            .await
            == Some(1.0))
        .then(|| deployed.elapsed())
    })
    .await;
    let resolved = wait_for("BadDeploy to resolve", || async {
        no_alerts(&medic).await.map(|_| deployed.elapsed())
    })
    .await;
    assert_eq!(
        std::fs::read_link(app.join("current")).unwrap(),
        Path::new("releases/v1")
    );
    assert_eq!(http_status(&url), Some(200));
    let actions = journal_actions(d);
    let a = actions
        .iter()
        .find(|a| a.action == "rollback")
        .expect("the rollback in the journal");
    let out: serde_json::Value =
        serde_json::from_str(a.result.as_deref().unwrap_or("null")).unwrap();
    assert_eq!(out["status"], "ok", "{out}");
    assert_eq!(out["before"], json!({"release": "v2"}), "{out}");
    assert_eq!(out["after"], json!({"release": "v1"}), "{out}");
    assert_eq!(
        (&out["data"]["from"], &out["data"]["to"]),
        (&json!("v2"), &json!("v1")),
        "{out}"
    );
    assert_eq!(out["data"]["restart"]["status"], "ok", "{out}");
    let msg = a.message.clone().unwrap_or_default();
    assert!(
        msg.contains("rolled back from v2 to v1; restarted app.service"),
        "{msg}"
    );
    // one rollback only: v1 is healthy, and the cooldown holds the step
    assert_eq!(actions.iter().filter(|a| a.action == "rollback").count(), 1);
    println!(
        "figure rollback: medic start with v2 live → rollback ok counted {:.2}s, → resolved {:.2}s; journal: {msg}",
        acted.as_secs_f64(),
        resolved.as_secs_f64()
    );
}

/// The systemd and rollback actuators over `units`, a release tree in `app`.
fn deploy_actuators(
    units: &Units,
    app: &Path,
    max_steps: u32,
) -> BTreeMap<String, Arc<dyn Actuator>> {
    actuators(&format!(
        "svc: {{type: systemd, systemctl: {}, unit: app.service, active_within: 10s}}\ndeploy: {{type: rollback, releases_dir: {}, current: {}, restart: svc, max_steps: {max_steps}}}\n",
        units.systemctl().display(),
        app.join("releases").display(),
        app.join("current").display()
    ))
}

/// Rollback refuses when no earlier release exists and when it would go further below the
/// newest release than `max_steps`; a repeat of the same request is not a second rollback;
/// a dry run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_refuses_without_an_earlier_release_or_past_max_steps() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    releases(&app, &[("v1", 200), ("v2", 200), ("v10", 200)], "v10");
    let units = Units::new(&dir.path().join("sysd"));
    units.define("app.service", "ExecStart=/bin/sleep 300\n");
    units.track("app.service");
    let acts = deploy_actuators(&units, &app, 1);
    let rb = &acts["deploy"];
    let link = || std::fs::read_link(app.join("current")).unwrap();

    // dry run: reports v10 → v2 (natural order: v2 < v10), changes nothing
    let o = rb.act(&request("rollback", json!({}), true)).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(
        (o.before.clone(), o.after.clone()),
        (json!({"release": "v10"}), json!({"release": "v2"}))
    );
    assert!(
        o.message.starts_with("dry run: would re-point"),
        "{}",
        o.message
    );
    assert_eq!(link(), Path::new("releases/v10"));
    assert_eq!(units.state("app.service"), "inactive");

    let req = request("rollback", json!({}), false);
    let o = rb.act(&req).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.data["from"], "v10");
    assert_eq!(o.data["to"], "v2");
    assert_eq!(o.data["restart"]["after"]["state"], "active");
    assert_eq!(link(), Path::new("releases/v2"));
    assert_eq!(units.state("app.service"), "active");
    // the same request again (a retry): nothing more
    let again = rb.act(&req).await;
    assert_eq!(again.status, ActionStatus::Noop, "{again:?}");
    assert_eq!(link(), Path::new("releases/v2"));

    // a restart that fails: `current` moved, and a retry of the same request only tries
    // the restart again, it never rolls back one release further
    std::fs::rename(
        units.root.join("units/app.service"),
        units.root.join("units/app.service.off"),
    )
    .unwrap();
    let acts3 = deploy_actuators(&units, &app, 3);
    let req = request("rollback", json!({}), false);
    let o = acts3["deploy"].act(&req).await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(
        o.message
            .contains("from v2 to v1, but the restart did not succeed"),
        "{}",
        o.message
    );
    assert_eq!(link(), Path::new("releases/v1"));
    std::fs::rename(
        units.root.join("units/app.service.off"),
        units.root.join("units/app.service"),
    )
    .unwrap();
    let o = acts3["deploy"].act(&req).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(
        (o.data["from"].clone(), o.data["to"].clone()),
        (json!("v2"), json!("v1"))
    );
    assert_eq!(link(), Path::new("releases/v1"));
    let o = acts3["deploy"].act(&req).await;
    assert_eq!(o.status, ActionStatus::Noop, "{o:?}");
    repoint_by_hand(&app, "v2");

    // v1 would be 2 below the newest (v10): refused
    let o = rb.act(&request("rollback", json!({}), false)).await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(
        o.message.contains("refused: max_steps 1 reached"),
        "{}",
        o.message
    );
    assert_eq!(o.data["from"], "v2");
    assert_eq!(link(), Path::new("releases/v2"));

    // with room for two steps, v1 is allowed; below v1 there is nothing
    let acts = deploy_actuators(&units, &app, 2);
    let o = acts["deploy"]
        .act(&request("rollback", json!({}), false))
        .await;
    assert_eq!(
        (o.status, o.data["to"].clone()),
        (ActionStatus::Ok, json!("v1")),
        "{o:?}"
    );
    let o = acts["deploy"]
        .act(&request("rollback", json!({}), false))
        .await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(
        o.message.contains("refused: no release earlier than v1"),
        "{}",
        o.message
    );
    assert_eq!(link(), Path::new("releases/v1"));
    assert!(!rb.reversible("rollback"));
}

fn repoint_by_hand(app: &Path, to: &str) {
    let tmp = app.join("current.tmp");
    std::os::unix::fs::symlink(format!("releases/{to}"), &tmp).unwrap();
    std::fs::rename(&tmp, app.join("current")).unwrap();
}

/// scale_pool starts and stops template instances one step at a time, never past the
/// bounds (at the max and at the min, asking again changes nothing), and a revert restores
/// the earlier count only while the pool is still what medic left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_pool_stays_within_bounds_and_reverts() {
    let dir = tempfile::tempdir().unwrap();
    let units = Units::new(dir.path());
    units.define("worker@.service", "ExecStart=/bin/sleep 300\n");
    for i in 1..=4 {
        units.track(&format!("worker@{i}.service"));
    }
    let acts = actuators(&format!(
        "pool: {{type: systemd, systemctl: {}, pool: {{template: worker@.service, min: 1, max: 3}}}}\n",
        units.systemctl().display()
    ));
    let pool = &acts["pool"];
    assert!(pool.reversible("scale_pool") && !pool.reversible("restart"));
    let running = || {
        (1..=4)
            .map(|i| units.state(&format!("worker@{i}.service")) == "active")
            .collect::<Vec<bool>>()
    };
    let scale = |p: serde_json::Value| request("scale_pool", p, false);

    // below the min, even a step down brings it up to the min
    let o = pool.act(&scale(json!({"step": -1}))).await;
    assert_eq!(
        (o.status, o.before.clone(), o.after.clone()),
        (
            ActionStatus::Ok,
            json!({"instances": 0}),
            json!({"instances": 1})
        ),
        "{o:?}"
    );
    assert_eq!(running(), [true, false, false, false]);

    // dry run: reports, changes nothing
    let o = pool
        .act(&request("scale_pool", json!({"step": 2}), true))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.after, json!({"instances": 3}));
    assert!(
        o.message
            .contains("would start worker@2.service, worker@3.service"),
        "{}",
        o.message
    );
    assert_eq!(running(), [true, false, false, false]);

    let up = pool.act(&scale(json!({"step": 1}))).await;
    assert_eq!(up.after, json!({"instances": 2}), "{up:?}");
    let up2 = pool.act(&scale(json!({"step": 5}))).await;
    assert_eq!(up2.after, json!({"instances": 3}), "{up2:?}");
    // at the max: no change, and worker@4 is never touched
    let o = pool.act(&scale(json!({"step": 1}))).await;
    assert_eq!(
        (o.status, o.after.clone()),
        (ActionStatus::Noop, json!({"instances": 3})),
        "{o:?}"
    );
    assert_eq!(running(), [true, true, true, false]);

    // revert of the last step: 3 → 2, the highest instance stopped
    let r = pool.revert(&scale(json!({"step": 5})), &up2).await;
    assert_eq!(
        (r.status, r.after.clone()),
        (ActionStatus::Ok, json!({"instances": 2})),
        "{r:?}"
    );
    assert_eq!(running(), [true, true, false, false]);
    // someone else scaled the pool since: the revert leaves it and says why
    units.ctl(&["start", "--", "worker@3.service"]);
    let r = pool.revert(&scale(json!({"step": 1})), &up).await;
    assert_eq!(r.status, ActionStatus::Noop, "{r:?}");
    assert!(r.message.contains("not the 2 medic set"), "{}", r.message);
    assert_eq!(running(), [true, true, true, false]);

    // down to the min (a step's own min may only narrow the bounds), then no further
    let o = pool.act(&scale(json!({"value": 1}))).await;
    assert_eq!(o.after, json!({"instances": 1}), "{o:?}");
    assert_eq!(
        o.data["stopped"],
        json!(["worker@3.service", "worker@2.service"])
    );
    let o = pool.act(&scale(json!({"step": -1}))).await;
    assert_eq!(
        (o.status, o.after.clone()),
        (ActionStatus::Noop, json!({"instances": 1})),
        "{o:?}"
    );
    assert_eq!(running(), [true, false, false, false]);
    // params outside the configured bounds are refused, nothing runs
    let calls = units.calls().len();
    let o = pool.act(&scale(json!({"max": 10, "step": 1}))).await;
    assert_eq!(o.status, ActionStatus::Failed, "{o:?}");
    assert!(o.message.contains("refused"), "{}", o.message);
    assert_eq!(units.calls().len(), calls);
}

/// A restart dry run reads the unit and reports; the process is the same afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_dry_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let units = Units::new(dir.path());
    units.define("app.service", "ExecStart=/bin/sleep 300\n");
    units.ctl(&["start", "--", "app.service"]);
    units.track("app.service");
    let pid = units.main_pid("app.service");
    let acts = actuators(&format!(
        "svc: {{type: systemd, systemctl: {}, unit: app.service}}\n",
        units.systemctl().display()
    ));
    let o = acts["svc"].act(&request("restart", json!({}), true)).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(
        o.before,
        json!({"unit": "app.service", "state": "active", "main_pid": pid})
    );
    assert!(
        o.message.starts_with("dry run: would restart app.service"),
        "{}",
        o.message
    );
    assert_eq!(units.main_pid("app.service"), pid);
    assert!(
        units
            .calls()
            .iter()
            .all(|c| !c.iter().any(|a| a == "restart"))
    );
}

/// A wedged service (stopped with SIGSTOP: active, but it answers nothing) is restarted
/// and answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wedged_service_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let units = Units::new(dir.path());
    let port = free_port();
    std::fs::write(dir.path().join("server.py"), SERVER_PY).unwrap();
    units.define(
        "web.service",
        &format!(
            "ExecStart=/usr/bin/python3 {} {port} 200\n",
            dir.path().join("server.py").display()
        ),
    );
    units.ctl(&["start", "--", "web.service"]);
    units.track("web.service");
    let url = format!("http://127.0.0.1:{port}/health");
    wait_http(&url, 200);
    let pid = units.main_pid("web.service");
    // SAFETY: kill(2) on the pid of the test's own service.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    assert_eq!(http_status(&url), None);
    assert_eq!(units.state("web.service"), "active");
    let acts = actuators(&format!(
        "svc: {{type: systemd, systemctl: {}, unit: web.service, active_within: 20s}}\n",
        units.systemctl().display()
    ));
    let o = acts["svc"].act(&request("restart", json!({}), false)).await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert_eq!(o.before["state"], "active");
    assert_eq!(o.before["main_pid"], pid);
    assert_ne!(o.after["main_pid"], pid);
    wait_http(&url, 200);
    println!("figure wedged restart: {}", o.message);
}

/// A systemctl that does not answer is given up at the action's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_systemctl_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("systemctl");
    support::write_script(&ctl, "#!/bin/sh\nexec sleep 60\n");
    let acts = actuators(&format!(
        "svc: {{type: systemd, systemctl: {}, unit: web.service}}\n",
        ctl.display()
    ));
    let mut req = request("restart", json!({}), false);
    req.timeout = Duration::from_millis(500);
    let started = Instant::now();
    let o = acts["svc"].act(&req).await;
    assert_eq!(o.status, ActionStatus::Timeout, "{o:?}");
    assert!(started.elapsed() < PATIENCE);
}

/// Steps whose params break the actuator's bounds or names fail `medic check -c`, saying
/// which rule, which step and why.
#[test]
fn check_rejects_params_outside_the_bounds() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        r#"groups:
- name: g
  rules:
  - alert: Busy
    expr: vector(1)
    remediate:
    - {action: scale_pool, target: workers, params: {step: 1, max: 99}, cooldown: 5m}
    - {action: restart, target: workers, params: {unit: "{{ $labels.name }}"}, cooldown: 5m}
    - {action: rollback, target: deploy, params: {to: v1}, cooldown: 5m}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("medic.yaml"),
        "actuators:\n  workers: {type: systemd, pool: {template: worker@.service, min: 1, max: 4}}\n  svc: {type: systemd, unit: a.service}\n  deploy: {type: rollback, releases_dir: r, current: c, restart: svc}\nrule_files: [rules.yaml]\n",
    )
    .unwrap();
    let o = run(std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["check", "-c"])
        .arg(dir.path().join("medic.yaml")));
    let said = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{said}");
    for want in [
        "rule Busy: remediate[0] (scale_pool): remediate step `scale_pool` on `workers`: params: scale_pool: min 1 / max 99 must lie within the pool's bounds 1..4",
        "rule Busy: remediate[1] (restart): remediate step `restart` on `workers`: params: restart: a templated `unit` needs `allowed_units`",
        "rule Busy: remediate[2] (rollback): remediate step `rollback` on `deploy`: params: rollback takes no params",
    ] {
        assert!(said.contains(want), "missing {want:?} in:\n{said}");
    }
}

/// Label values rendered into `unit` (shell metacharacters, `../`, newlines, an option)
/// are refused before any systemctl runs; an allowed one goes as one argv element after `--`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_unit_names_never_reach_systemctl() {
    let dir = tempfile::tempdir().unwrap();
    let units = Units::new(dir.path());
    units.define("app-web.service", "ExecStart=/bin/sleep 300\n");
    units.track("app-web.service");
    let pwned = dir.path().join("pwned");
    let acts = actuators(&format!(
        "svc: {{type: systemd, systemctl: {}, unit: app.service, allowed_units: 'app-[a-z0-9.@-]+', active_within: 10s}}\n",
        units.systemctl().display()
    ));
    for hostile in [
        format!("app-web.service; touch {}", pwned.display()),
        format!("app-$(touch {}).service", pwned.display()),
        "app-`id`.service".to_string(),
        "../../../etc/app-x.service".to_string(),
        "app-a/../../b.service".to_string(),
        "app-web.service\nreboot".to_string(),
        "--root=/tmp app-web.service".to_string(),
        "-Happ-web.service".to_string(),
        "app-{{ $labels.x }}.service".to_string(),
    ] {
        let o = acts["svc"]
            .act(&request("restart", json!({"unit": hostile}), false))
            .await;
        assert_eq!(o.status, ActionStatus::Failed, "{hostile:?}: {o:?}");
        assert!(o.message.contains("refused"), "{hostile:?}: {}", o.message);
    }
    assert!(
        units.calls().is_empty(),
        "systemctl ran: {:?}",
        units.calls()
    );
    assert!(!pwned.exists());
    // a plain allowed name goes through, as one argument after `--`
    let o = acts["svc"]
        .act(&request(
            "restart",
            json!({"unit": "app-web.service"}),
            false,
        ))
        .await;
    assert_eq!(o.status, ActionStatus::Ok, "{o:?}");
    assert!(units.calls().iter().any(|c| c.ends_with(&[
        "restart".into(),
        "--".into(),
        "app-web.service".into()
    ])));
}

fn drift_samples(
    rt: &tokio::runtime::Runtime,
    c: &Arc<dyn medic::collect::Collector>,
) -> BTreeMap<String, f64> {
    let mut out = Vec::new();
    rt.block_on(c.collect(0, &mut out)).expect("drift round");
    out.into_iter()
        .map(|s| {
            let l: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (l.join(","), s.value)
        })
        .collect()
}

/// Hand changes to the live release show as drift (modified, missing, extra), go back to 0
/// when restored, and a rolled-back `current` is checked against its own manifest.
#[test]
fn drift_counts_hand_changes_to_the_live_release() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    releases(&app, &[("v1", 200), ("v2", 200)], "v2");
    let cfg: CollectorConfig = serde_saphyr::from_str(&format!(
        "{{type: release_drift, path: {}, label: app, max_files: 100}}",
        app.join("current").display()
    ))
    .unwrap();
    let c = cfg.build(&BuildContext::new("app-release")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = |release: &str, kind: &str| {
        format!("__name__=medic_release_drift_files,deploy=app,kind={kind},release={release}")
    };
    let s = drift_samples(&rt, &c);
    for k in ["modified", "missing", "extra"] {
        assert_eq!(s[&key("v2", k)], 0.0, "{k}: {s:?}");
    }
    assert_eq!(
        s["__name__=medic_release_manifest_files,deploy=app,release=v2"],
        2.0
    );
    let hashed = s["__name__=medic_release_drift_hashed_bytes,deploy=app,release=v2"];
    assert!(hashed > 0.0);

    let index = app.join("releases/v2/static/index.html");
    let original = std::fs::read(&index).unwrap();
    std::fs::write(&index, b"hand-edited\n").unwrap();
    assert_eq!(drift_samples(&rt, &c)[&key("v2", "modified")], 1.0);
    std::fs::write(&index, &original).unwrap();
    assert_eq!(drift_samples(&rt, &c)[&key("v2", "modified")], 0.0);

    std::fs::write(app.join("releases/v2/static/extra.js"), b"x").unwrap();
    std::fs::remove_file(app.join("releases/v2/server.py")).unwrap();
    let s = drift_samples(&rt, &c);
    assert_eq!(
        (
            s[&key("v2", "modified")],
            s[&key("v2", "missing")],
            s[&key("v2", "extra")]
        ),
        (0.0, 1.0, 1.0)
    );

    // after a rollback the collector follows `current` to v1, clean
    let tmp = app.join("current.tmp");
    std::os::unix::fs::symlink("releases/v1", &tmp).unwrap();
    std::fs::rename(&tmp, app.join("current")).unwrap();
    assert_eq!(drift_samples(&rt, &c)[&key("v1", "modified")], 0.0);

    // bounds: a release with more files than max_files fails the round
    for i in 0..101 {
        std::fs::write(app.join(format!("releases/v1/static/f{i}")), b"").unwrap();
    }
    let mut out = Vec::new();
    let e = rt.block_on(c.collect(0, &mut out)).unwrap_err();
    assert!(e.to_string().contains("max_files 100"), "{e}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

#[path = "support/packs.rs"]
mod packs;
use packs::{run, without_remediate};

/// The services and deploy packs: their unit tests pass under `medic test` (with the
/// `remediate:` ladders) and under promtool (without), and `medic check -c` accepts the
/// example config that loads them with its actuators.
#[test]
fn ops_rule_packs_pass_medic_test_promtool_and_check() {
    for pack in ["services", "deploy"] {
        let test = repo().join(format!("tests/packs/{pack}_test.yaml"));
        let text = std::fs::read_to_string(&test).unwrap();
        let (m, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let rules = std::fs::read_to_string(repo().join(format!("rules/{pack}.yaml"))).unwrap();
        std::fs::write(m.path().join(format!("{pack}.yaml")), &rules).unwrap();
        std::fs::write(
            p.path().join(format!("{pack}.yaml")),
            without_remediate(&rules),
        )
        .unwrap();
        for d in [&m, &p] {
            std::fs::write(d.path().join("test.yaml"), &text).unwrap();
        }
        let medic = run(std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
            .args(["test", "test.yaml"])
            .current_dir(m.path()));
        assert!(medic.status.success(), "medic test {pack}: {medic:?}");
        let prom = run(std::process::Command::new("promtool")
            .args(["test", "rules", "test.yaml"])
            .current_dir(p.path()));
        assert!(
            prom.status.success(),
            "promtool test rules {pack}: {prom:?}"
        );
    }
    let said = packs::example_config_checks("ops.yaml", &[]);
    assert!(!said.contains("error"), "{said}");
}

/// Every YAML example of the README's act-ops section is a config that builds: its
/// actuators (the rollback's restart included) and its collectors.
#[test]
fn readme_examples_build() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let start = readme.find("<!-- section: act-ops -->").unwrap();
    let end = start
        + readme[start..]
            .find("\n### ")
            .unwrap_or(readme.len() - start);
    let mut n = 0;
    for block in readme[start..end].split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").unwrap()];
        let cfg: medic::config::Config = serde_saphyr::from_str(yaml)
            .unwrap_or_else(|e| panic!("README example does not parse: {e}\n{yaml}"));
        medic::remedy::build(&cfg.actuators)
            .unwrap_or_else(|e| panic!("README example does not build: {e}\n{yaml}"));
        if let Err(e) = cfg.build_collectors(&[]) {
            panic!("README example's collectors do not build: {e:?}\n{yaml}");
        }
        n += 1;
    }
    assert_eq!(n, 2);
}
