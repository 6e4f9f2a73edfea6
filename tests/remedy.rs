//! The planner's incident state machine against real actuators: exec plugins run as real
//! processes (their log is what the target received), a reversible actuator talks to a
//! loopback HTTP service, the journal is a real SQLite file reopened across restarts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use medic::common::metrics::SelfMetrics;
use medic::journal::{IncidentFilter, Journal};
use medic::remedy::{
    ActionOutcome, ActionRecord, ActionRequest, ActionStatus, Actuator, Actuators, Escalation,
    Planner, PlannerDeps, PlannerHandle, RemedyConfig,
};
use medic::rules::{AlertInstance, AlertState, AlertTransition, RemediateStep, TransitionKind};
use medic::silence::{Matcher, PostableSilence, SilenceStore};
use medic::store::Labels;
use tokio::sync::{broadcast, mpsc};

/// Only guards against a hung test.
const PATIENCE: Duration = Duration::from_secs(60);

fn now_ms() -> i64 {
    medic::common::time::now_ms()
}

/// An exec plugin that appends its request to `<name>.log` and answers what
/// `<name>.reply` holds (`ok` when absent).
fn plugin(dir: &Path, name: &str) -> (medic::remedy::ActuatorConfig, PathBuf, PathBuf) {
    let log = dir.join(format!("{name}.log"));
    let reply = dir.join(format!("{name}.reply"));
    let script = dir.join(format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/bash\nreq=$(cat)\necho \"$req\" >> {log}\nr=$(cat {reply} 2>/dev/null || echo ok)\necho \"{{\\\"status\\\":\\\"$r\\\",\\\"message\\\":\\\"$r\\\"}}\"\n",
            log = log.display(),
            reply = reply.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = serde_saphyr::from_str(&format!(
        "{{type: exec, command: [{:?}], timeout: 20s}}",
        script.display().to_string()
    ))
    .unwrap();
    (cfg, log, reply)
}

fn received(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ladder(yaml: &str) -> Arc<[RemediateStep]> {
    serde_saphyr::from_str::<Vec<RemediateStep>>(yaml)
        .unwrap()
        .into()
}

fn transition(
    kind: TransitionKind,
    rule: &str,
    fired_at_ms: i64,
    l: &Arc<[RemediateStep]>,
) -> AlertTransition {
    AlertTransition {
        kind,
        at_ms: now_ms(),
        alert: AlertInstance {
            rule: rule.into(),
            group: "g".into(),
            labels: Labels::new([("alertname", rule), ("instance", "svc1")]),
            annotations: BTreeMap::new(),
            value: 1.0,
            state: if kind == TransitionKind::Resolved {
                AlertState::Inactive
            } else {
                AlertState::Firing
            },
            active_at_ms: fired_at_ms,
            fired_at_ms: Some(fired_at_ms),
            resolved_at_ms: (kind == TransitionKind::Resolved).then(now_ms),
        },
        remediate: l.clone(),
    }
}

struct Rig {
    tx: mpsc::Sender<AlertTransition>,
    handle: PlannerHandle,
    records: broadcast::Receiver<ActionRecord>,
    escalations: broadcast::Receiver<Escalation>,
    metrics: Arc<SelfMetrics>,
}

fn start(
    actuators: Actuators,
    config: RemedyConfig,
    journal: &Path,
    silences: Option<Arc<SilenceStore>>,
) -> Rig {
    let metrics = Arc::new(SelfMetrics::default());
    let (tx, handle) = Planner::start_with(
        actuators,
        config,
        metrics.clone(),
        PlannerDeps {
            journal: Some(Journal::open(journal).unwrap()),
            store: None,
            silences,
        },
    );
    let records = handle.subscribe();
    let escalations = handle.escalations();
    Rig {
        tx,
        handle,
        records,
        escalations,
        metrics,
    }
}

impl Rig {
    async fn send(&self, kind: TransitionKind, rule: &str, fired: i64, l: &Arc<[RemediateStep]>) {
        self.tx
            .send(transition(kind, rule, fired, l))
            .await
            .unwrap();
    }

    async fn record(&mut self) -> ActionRecord {
        tokio::time::timeout(PATIENCE, self.records.recv())
            .await
            .expect("no action record in time")
            .unwrap()
    }

    async fn escalation(&mut self) -> Escalation {
        tokio::time::timeout(PATIENCE, self.escalations.recv())
            .await
            .expect("no escalation in time")
            .unwrap()
    }

    async fn stop(self) {
        drop(self.tx);
        self.handle.join().await;
    }
}

fn build(list: Vec<(&str, medic::remedy::ActuatorConfig)>) -> Actuators {
    medic::remedy::build(&list.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).unwrap()
}

async fn wait_until<F: FnMut() -> bool>(what: &str, mut f: F) {
    let give_up = std::time::Instant::now() + PATIENCE;
    while !f() {
        assert!(
            std::time::Instant::now() < give_up,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn incidents(journal: &Path) -> Vec<medic::journal::Incident> {
    Journal::open(journal)
        .unwrap()
        .incidents_query(&IncidentFilter::default())
        .unwrap()
}

/// Verified: the alert resolves within `verify_within` of an ok action. Unverified: the next
/// rung starts at once (not at its `when_unresolved_after` of an hour); after the last one,
/// one escalation carries the whole history.
#[tokio::test]
async fn verified_unverified_next_rung_at_once_and_one_escalation() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let mut rig = start(
        build(vec![("fix", fix)]),
        RemedyConfig::default(),
        &jpath,
        None,
    );

    // verified
    let l = ladder("[{action: restart, target: fix, verify_within: 30s}]");
    rig.send(TransitionKind::Firing, "Ok", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    rig.send(TransitionKind::Resolved, "Ok", 0, &l).await;
    wait_until("the verified incident to close", || {
        incidents(&jpath)
            .first()
            .is_some_and(|i| i.outcome.as_deref() == Some("verified"))
    })
    .await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &rig.metrics.registry).unwrap();
    assert!(
        text.contains("medic_incident_time_to_verified_seconds_count{rule=\"Ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("medic_incidents_total{rule=\"Ok\",outcome=\"verified\"} 1"),
        "{text}"
    );

    // unverified twice → escalation
    let l = ladder(
        "[{action: first, target: fix, verify_within: 1s}, {action: second, target: fix, when_unresolved_after: 1h, verify_within: 1s}]",
    );
    rig.send(TransitionKind::Firing, "Stuck", now_ms(), &l)
        .await;
    assert_eq!(rig.record().await.action, "first");
    let second = rig.record().await;
    assert_eq!((second.action.as_str(), second.outcome), ("second", "ok"));
    let e = rig.escalation().await;
    assert_eq!(e.rule, "Stuck");
    assert_eq!(e.reason, "ladder_exhausted");
    let kinds: Vec<&str> = e.history.iter().map(|h| h.kind.as_str()).collect();
    for k in [
        "fired",
        "action_started",
        "action_ended",
        "unverified",
        "escalated",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| **k == "unverified").count(), 2);
    rig.send(TransitionKind::Resolved, "Stuck", 0, &l).await;
    wait_until("the escalated incident to close", || {
        incidents(&jpath)
            .first()
            .is_some_and(|i| i.outcome.as_deref() == Some("escalated"))
    })
    .await;
    assert!(rig.escalations.try_recv().is_err(), "a second escalation");
    rig.stop().await;
    let got: Vec<String> = received(&log)
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ["restart", "first", "second"]);
}

/// A budget of one action per hour per target: the second incident's step is skipped
/// (`budget_exhausted`) and escalated; the budget's level survives a restart.
#[tokio::test]
async fn budget_exhausted_skips_and_escalates_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let config: RemedyConfig = serde_saphyr::from_str("budgets: {per_target: 1 per 1h}").unwrap();
    let mut rig = start(
        build(vec![("fix", fix.clone())]),
        config.clone(),
        &jpath,
        None,
    );
    let l = ladder("[{action: restart, target: fix, verify_within: 30s}]");
    rig.send(TransitionKind::Firing, "B", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    rig.send(TransitionKind::Resolved, "B", 0, &l).await;
    wait_until("the first incident to close", || {
        incidents(&jpath)
            .first()
            .is_some_and(|i| i.phase == "closed")
    })
    .await;
    rig.stop().await;

    let mut rig = start(build(vec![("fix", fix)]), config, &jpath, None);
    rig.send(TransitionKind::Firing, "B", now_ms(), &l).await;
    let r = rig.record().await;
    assert_eq!(r.outcome, "budget_exhausted", "{r:?}");
    let e = rig.escalation().await;
    assert_eq!(e.reason, "budget_exhausted");
    let b = rig.handle.control().status().budgets;
    let t = b
        .iter()
        .find(|b| b.scope == "target" && b.name == "fix")
        .unwrap();
    assert!(t.remaining < 1.0, "{b:?}");
    rig.stop().await;
    assert_eq!(received(&log).len(), 1);
}

/// The breaker opens after a failure (failures: 1), skips the next incident's action
/// (`breaker_open`, escalated), turns half-open after its backoff, and a verified trial
/// closes it.
#[tokio::test]
async fn breaker_opens_half_opens_and_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, reply) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let config: RemedyConfig =
        serde_saphyr::from_str("breaker: {failures: 1, window: 1h, backoff: 2s}").unwrap();
    let mut rig = start(build(vec![("fix", fix)]), config, &jpath, None);
    let l = ladder("[{action: restart, target: fix, verify_within: 30s}]");
    let state = |rig: &Rig| {
        rig.handle
            .control()
            .status()
            .breakers
            .iter()
            .find(|b| b.target == "fix")
            .map(|b| b.state)
    };

    std::fs::write(&reply, "failed").unwrap();
    rig.send(TransitionKind::Firing, "Br", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "failed");
    assert_eq!(rig.escalation().await.reason, "ladder_exhausted");
    wait_until("the breaker to open", || state(&rig) == Some("open")).await;
    rig.send(TransitionKind::Resolved, "Br", 0, &l).await;

    rig.send(TransitionKind::Firing, "Br", now_ms(), &l).await;
    let r = rig.record().await;
    assert_eq!(r.outcome, "breaker_open", "{r:?}");
    assert_eq!(rig.escalation().await.reason, "breaker_open");
    rig.send(TransitionKind::Resolved, "Br", 0, &l).await;

    wait_until("the breaker to turn half-open", || {
        state(&rig) == Some("half_open")
    })
    .await;
    std::fs::write(&reply, "ok").unwrap();
    rig.send(TransitionKind::Firing, "Br", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    rig.send(TransitionKind::Resolved, "Br", 0, &l).await;
    wait_until("the breaker to close", || state(&rig) == Some("closed")).await;
    rig.stop().await;
    assert_eq!(received(&log).len(), 2, "the breaker_open step ran");
}

/// An instance that fires again and again (2 episodes within an hour) is flapping: its
/// ladder is held and escalated instead of acted on.
#[tokio::test]
async fn flapping_is_held_and_escalated() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let config: RemedyConfig =
        serde_saphyr::from_str("flapping: {episodes: 2, within: 1h}").unwrap();
    let mut rig = start(build(vec![("fix", fix)]), config, &jpath, None);
    let l = ladder("[{action: restart, target: fix, verify_within: 30s}]");
    rig.send(TransitionKind::Firing, "F", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    rig.send(TransitionKind::Resolved, "F", 0, &l).await;
    rig.send(TransitionKind::Firing, "F", now_ms() + 1, &l)
        .await;
    let e = rig.escalation().await;
    assert_eq!(e.reason, "flapping");
    wait_until("a held incident", || {
        incidents(&jpath)
            .first()
            .is_some_and(|i| i.phase == "escalated")
    })
    .await;
    rig.send(TransitionKind::Resolved, "F", 0, &l).await;
    rig.stop().await;
    assert_eq!(received(&log).len(), 1, "a flapping episode was acted on");
}

/// `approve` mode: approved runs, rejected escalates, no decision escalates at the timeout.
#[tokio::test]
async fn approval_approved_rejected_and_timed_out() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let config: RemedyConfig =
        serde_saphyr::from_str("mode: approve\napproval_timeout: 1s\nflapping: {episodes: 0}")
            .unwrap();
    let mut rig = start(build(vec![("fix", fix)]), config, &jpath, None);
    let control = rig.handle.control();
    let l = ladder("[{action: restart, target: fix, verify_within: 30s}]");
    let waiting = |c: &medic::remedy::PlannerControl| {
        c.status().awaiting_approval.first().map(|a| a.incident)
    };

    // approved (within the timeout: 1 s is short, so approve as soon as it is proposed;
    // a late approval is refused and the incident escalates, which this test would show)
    let slow: RemedyConfig =
        serde_saphyr::from_str("mode: approve\napproval_timeout: 1h\nflapping: {episodes: 0}")
            .unwrap();
    rig.handle
        .reload(build(vec![("fix", plugin(dir.path(), "fix").0)]), slow);
    rig.send(TransitionKind::Firing, "Ap", now_ms(), &l).await;
    let mut id = None;
    wait_until("a proposal", || {
        id = waiting(&control);
        id.is_some()
    })
    .await;
    assert_eq!(rig.metrics.actions_awaiting_approval.get(), 1);
    assert!(received(&log).is_empty(), "ran before approval");
    control.decide(id.unwrap(), "alice", true).await.unwrap();
    assert_eq!(rig.record().await.outcome, "ok");
    assert_eq!(received(&log).len(), 1);
    rig.send(TransitionKind::Resolved, "Ap", 0, &l).await;

    // rejected
    rig.send(TransitionKind::Firing, "Re", now_ms(), &l).await;
    wait_until("a proposal", || {
        id = waiting(&control);
        id.is_some()
    })
    .await;
    control.decide(id.unwrap(), "bob", false).await.unwrap();
    assert_eq!(rig.record().await.outcome, "rejected");
    let e = rig.escalation().await;
    assert_eq!(e.reason, "rejected");
    assert!(e.summary.contains("bob"), "{}", e.summary);
    assert!(control.decide(id.unwrap(), "bob", true).await.is_err());

    // timed out
    let fast: RemedyConfig =
        serde_saphyr::from_str("mode: approve\napproval_timeout: 1s\nflapping: {episodes: 0}")
            .unwrap();
    rig.handle
        .reload(build(vec![("fix", plugin(dir.path(), "fix").0)]), fast);
    rig.send(TransitionKind::Firing, "To", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "approval_timeout");
    assert_eq!(rig.escalation().await.reason, "approval_timeout");
    rig.stop().await;
    assert_eq!(
        received(&log).len(),
        1,
        "a rejected or expired proposal ran"
    );
}

/// A silenced alert opens no incident and runs nothing; once the silence is expired, the
/// next announcement is remediated.
#[tokio::test]
async fn silenced_alert_is_not_remediated() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, log, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let silences = SilenceStore::load(Journal::open(&jpath).unwrap()).unwrap();
    let id = silences
        .upsert(PostableSilence {
            id: None,
            matchers: vec![Matcher::parse("alertname=S").unwrap()],
            starts_at: medic::common::time::rfc3339_ms(now_ms() - 1000),
            ends_at: medic::common::time::rfc3339_ms(now_ms() + 3_600_000),
            created_by: "ops".into(),
            comment: "maintenance".into(),
        })
        .unwrap();
    let mut rig = start(
        build(vec![("fix", fix)]),
        RemedyConfig::default(),
        &jpath,
        Some(silences.clone()),
    );
    let l = ladder("[{action: restart, target: fix}]");
    let fired = now_ms();
    rig.send(TransitionKind::Firing, "S", fired, &l).await;
    rig.send(TransitionKind::StillFiring, "S", fired, &l).await;
    // a second, unsilenced alert goes through after them: the silenced ones were handled
    rig.send(TransitionKind::Firing, "Other", fired, &l).await;
    assert_eq!(rig.record().await.rule, "Other");
    assert!(incidents(&jpath).iter().all(|i| i.alertname != "S"));
    silences.expire(&id).unwrap();
    rig.send(TransitionKind::StillFiring, "S", fired, &l).await;
    assert_eq!(rig.record().await.rule, "S");
    rig.stop().await;
    assert_eq!(received(&log).len(), 2);
}

// ---------------------------------------------------------------- revert

/// A loopback service with one setting (`/value`, GET and PUT), like a pool size.
async fn knob_service(initial: i64) -> (String, Arc<Mutex<i64>>) {
    use axum::{Router, extract::State, routing::get};
    let value = Arc::new(Mutex::new(initial));
    let app = Router::new()
        .route(
            "/value",
            get(|State(v): State<Arc<Mutex<i64>>>| async move { v.lock().unwrap().to_string() })
                .put(
                    |State(v): State<Arc<Mutex<i64>>>, body: String| async move {
                        *v.lock().unwrap() = body.trim().parse().unwrap_or(-1);
                        "ok"
                    },
                ),
        )
        .with_state(value.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/value"), value)
}

/// A reversible actuator over HTTP: sets the service's value to `params.value`, reports
/// before/after, and reverts only while the value is still what it set.
struct Knob {
    url: String,
    client: reqwest::Client,
}

impl Knob {
    async fn read(&self) -> Option<i64> {
        self.client
            .get(&self.url)
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?
            .parse()
            .ok()
    }
    async fn write(&self, v: i64) -> bool {
        self.client
            .put(&self.url)
            .body(v.to_string())
            .send()
            .await
            .is_ok()
    }
}

#[async_trait]
impl Actuator for Knob {
    fn kind(&self) -> &'static str {
        "knob"
    }
    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(5))
    }
    fn reversible(&self, _action: &str) -> bool {
        true
    }
    async fn act(&self, req: &ActionRequest) -> ActionOutcome {
        let Some(before) = self.read().await else {
            return ActionOutcome::new(ActionStatus::Failed, "cannot read");
        };
        let want = req.params["value"].as_i64().unwrap_or(0);
        if !self.write(want).await {
            return ActionOutcome::new(ActionStatus::Failed, "cannot write");
        }
        ActionOutcome::new(ActionStatus::Ok, format!("{before} -> {want}"))
            .changed(serde_json::json!(before), serde_json::json!(want))
    }
    async fn revert(&self, _req: &ActionRequest, done: &ActionOutcome) -> ActionOutcome {
        let now = self.read().await;
        if now != done.after.as_i64() {
            return ActionOutcome::new(ActionStatus::Noop, "changed by someone else");
        }
        let before = done.before.as_i64().unwrap_or(0);
        self.write(before).await;
        ActionOutcome::new(ActionStatus::Ok, format!("restored {before}"))
            .changed(done.after.clone(), done.before.clone())
    }
}

fn knob(url: &str) -> Actuators {
    medic::common::tls::init_tls();
    let a: Arc<dyn Actuator> = Arc::new(Knob {
        url: url.to_string(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    });
    BTreeMap::from([("pool".to_string(), a)])
}

/// `revert_on_resolve`: resolved for `revert_after`, the value is set back, once, journaled;
/// with a restart between the resolve and the revert, the restarted planner reverts it.
#[tokio::test]
async fn revert_after_resolve_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (url, value) = knob_service(2).await;
    let l = ladder(
        "[{action: scale, target: pool, params: {value: 8}, revert_on_resolve: true, revert_after: 1s}]",
    );
    let config: RemedyConfig = serde_saphyr::from_str("flapping: {episodes: 0}").unwrap();

    // plain
    let jpath = dir.path().join("a.db");
    let mut rig = start(knob(&url), config.clone(), &jpath, None);
    rig.send(TransitionKind::Firing, "K", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    assert_eq!(*value.lock().unwrap(), 8);
    rig.send(TransitionKind::Resolved, "K", 0, &l).await;
    let r = rig.record().await;
    assert_eq!((r.action.as_str(), r.outcome), ("revert:scale", "ok"));
    assert_eq!(*value.lock().unwrap(), 2);
    rig.stop().await;

    // restart between resolve and revert
    let jpath = dir.path().join("b.db");
    let l = ladder(
        "[{action: scale, target: pool, params: {value: 8}, revert_on_resolve: true, revert_after: 3s}]",
    );
    let mut rig = start(knob(&url), config.clone(), &jpath, None);
    rig.send(TransitionKind::Firing, "K", now_ms(), &l).await;
    assert_eq!(rig.record().await.outcome, "ok");
    rig.send(TransitionKind::Resolved, "K", 0, &l).await;
    wait_until("the revert to be scheduled", || {
        incidents(&jpath)
            .first()
            .is_some_and(|i| i.state.contains("revert_scheduled"))
    })
    .await;
    rig.stop().await;
    assert_eq!(*value.lock().unwrap(), 8, "reverted before revert_after");
    let mut rig = start(knob(&url), config, &jpath, None);
    let r = rig.record().await;
    assert_eq!((r.action.as_str(), r.outcome), ("revert:scale", "ok"));
    assert_eq!(*value.lock().unwrap(), 2);
    rig.stop().await;
    let j = Journal::open(&jpath).unwrap();
    let reverts = j
        .actions_recent(100)
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "revert:scale")
        .count();
    assert_eq!(reverts, 1);
    assert_eq!(incidents(&jpath)[0].phase, "closed");
}

/// The YAML examples of the README's operator section load: the medic.yaml one as a config
/// (its actuators build, its remedy settings are the ones documented), the rule file's
/// ladder validates against it.
#[test]
fn readme_operator_examples_load() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- section: remedy-operator -->").unwrap();
    let end = start + readme[start..].find("\n## ").unwrap();
    let section = &readme[start..end];
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    assert_eq!(blocks.len(), 2);
    // the example names the installed plugin path; the repository ships the same plugin
    let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/");
    let block = blocks[0].replace("/usr/lib/medic/plugins/", plugins);
    let config = medic::config::Config::parse_str(Path::new("README.md"), &block).unwrap();
    medic::remedy::build(&config.actuators).unwrap();
    let r = &config.remedy;
    assert_eq!(
        r.rules["InferenceDown"].mode,
        Some(medic::rules::StepMode::Approve)
    );
    assert_eq!(r.target_budget("restart-inference").unwrap().max, 3);
    assert_eq!(r.breaker_of("restart-inference").failures, 2);
    assert_eq!(r.breaker_of("other").failures, 3);
    assert_eq!(
        r,
        &{
            let mut d = RemedyConfig {
                rules: r.rules.clone(),
                targets: r.targets.clone(),
                ..RemedyConfig::default()
            };
            d.budgets.global = r.budgets.global;
            d
        },
        "the documented defaults are the defaults"
    );
    medic::rules::file::parse_rule_file(
        Path::new("README.md"),
        blocks[1],
        &medic::rules::GroupOptions::default(),
    )
    .unwrap();
    let v: serde_json::Value = serde_saphyr::from_str(blocks[1]).unwrap();
    let ladder: Vec<RemediateStep> =
        serde_json::from_value(v["groups"][0]["rules"][0]["remediate"].clone()).unwrap();
    assert_eq!(ladder.len(), 2);
    medic::remedy::validate_ladder(&config.actuators, &ladder).unwrap();
    assert_eq!(ladder[0].mode, Some(medic::rules::StepMode::Approve));
    assert!(ladder[0].verify.is_some());
}

/// A clean shutdown while a rung waits for a free slot: it is not lost (nor counted toward
/// its cooldown); after the restart, once its alert fires again, it runs once.
#[tokio::test]
async fn a_rung_queued_at_shutdown_runs_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let (hang, _, _) = plugin(dir.path(), "hang");
    // the hang plugin waits for the release file before it answers
    let script = dir.path().join("hang.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let (head, tail) = text.split_at(text.find("r=$(cat").unwrap());
    let body = format!(
        "{head}while [ ! -e {} ]; do sleep 0.05; done\n{tail}",
        release.display()
    );
    std::fs::write(&script, body).unwrap();
    let (queued, log, _) = plugin(dir.path(), "queued");
    let jpath = dir.path().join("journal.db");
    let config: RemedyConfig = serde_saphyr::from_str("max_concurrent_actions: 1").unwrap();
    let acts = || build(vec![("hang", hang.clone()), ("queued", queued.clone())]);
    let rig = start(acts(), config.clone(), &jpath, None);
    let hang_l = ladder("[{action: exec, target: hang}]");
    let queued_l = ladder("[{action: exec, target: queued, cooldown: 1h}]");
    rig.send(TransitionKind::Firing, "Hang", now_ms(), &hang_l)
        .await;
    wait_until("the hanging action to start", || {
        std::fs::read_to_string(dir.path().join("hang.log")).is_ok_and(|s| !s.is_empty())
    })
    .await;
    let fired = now_ms();
    rig.send(TransitionKind::Firing, "Queued", fired, &queued_l)
        .await;
    wait_until("the queued action to be journaled", || {
        incidents(&jpath)
            .iter()
            .any(|i| i.alertname == "Queued" && i.state.contains("running"))
    })
    .await;
    // shut down: the queued one is dropped, the running one finishes once released
    let Rig { tx, handle, .. } = rig;
    drop(tx);
    std::fs::write(&release, "").unwrap();
    handle.join().await;
    assert!(received(&log).is_empty());

    let mut rig = start(acts(), config, &jpath, None);
    rig.send(TransitionKind::Firing, "Queued", now_ms(), &queued_l)
        .await;
    let r = rig.record().await;
    assert_eq!((r.rule.as_str(), r.outcome), ("Queued", "ok"), "{r:?}");
    rig.stop().await;
    assert_eq!(received(&log).len(), 1);
}

/// A step's `verify:` expression must hold too: the alert resolving is not enough while the
/// expression returns nothing (unverified, escalated); once it holds, the action is verified.
#[tokio::test]
async fn verify_expression_must_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (fix, _, _) = plugin(dir.path(), "fix");
    let jpath = dir.path().join("journal.db");
    let store = Arc::new(medic::store::Store::default());
    let healthy = Labels::new([("__name__", "requests_ok_ratio")]);
    let metrics = Arc::new(SelfMetrics::default());
    let config: RemedyConfig = serde_saphyr::from_str("flapping: {episodes: 0}").unwrap();
    let (tx, handle) = Planner::start_with(
        build(vec![("fix", fix)]),
        config,
        metrics,
        PlannerDeps {
            journal: Some(Journal::open(&jpath).unwrap()),
            store: Some(store.clone()),
            silences: None,
        },
    );
    let mut records = handle.subscribe();
    let mut escalations = handle.escalations();
    let l = ladder(
        "[{action: restart, target: fix, verify_within: 2s, verify: 'requests_ok_ratio > 0.9'}]",
    );
    let send = |kind, rule: &str| {
        let t = transition(kind, rule, now_ms(), &l);
        let tx = tx.clone();
        async move { tx.send(t).await.unwrap() }
    };

    // the ratio stays low: resolved, but not verified
    store.append(&healthy, now_ms(), 0.5);
    send(TransitionKind::Firing, "V1").await;
    assert_eq!(records.recv().await.unwrap().outcome, "ok");
    send(TransitionKind::Resolved, "V1").await;
    let e = tokio::time::timeout(PATIENCE, escalations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((e.rule.as_str(), e.reason.as_str()), ("V1", "unverified"));
    assert!(e.history.iter().any(|h| h.kind == "unverified"));

    // the ratio recovers: verified
    store.append(&healthy, now_ms(), 0.99);
    send(TransitionKind::Firing, "V2").await;
    assert_eq!(records.recv().await.unwrap().outcome, "ok");
    send(TransitionKind::Resolved, "V2").await;
    wait_until("the verified incident", || {
        incidents(&jpath)
            .iter()
            .any(|i| i.alertname == "V2" && i.outcome.as_deref() == Some("verified"))
    })
    .await;
    drop(tx);
    handle.join().await;
}

/// One action per target at a time unless the target allows more: a second incident's step
/// on a busy target waits for the first to end (it is not skipped), while another target's
/// step runs meanwhile.
#[tokio::test]
async fn a_target_runs_one_action_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let (one, one_log, _) = plugin(dir.path(), "one");
    let script = dir.path().join("one.sh");
    let text = std::fs::read_to_string(&script).unwrap();
    let (head, tail) = text.split_at(text.find("r=$(cat").unwrap());
    std::fs::write(
        &script,
        format!(
            "{head}while [ ! -e {} ]; do sleep 0.05; done\n{tail}",
            release.display()
        ),
    )
    .unwrap();
    let (other, _, _) = plugin(dir.path(), "other");
    let jpath = dir.path().join("journal.db");
    let mut rig = start(
        build(vec![("one", one), ("other", other)]),
        RemedyConfig::default(),
        &jpath,
        None,
    );
    let on_one = ladder("[{action: exec, target: one}]");
    let on_other = ladder("[{action: exec, target: other}]");
    rig.send(TransitionKind::Firing, "A", now_ms(), &on_one)
        .await;
    wait_until("A's action to start", || received(&one_log).len() == 1).await;
    rig.send(TransitionKind::Firing, "B", now_ms(), &on_one)
        .await;
    // the planner handles transitions in order: once C's action ended, B was looked at
    rig.send(TransitionKind::Firing, "C", now_ms(), &on_other)
        .await;
    assert_eq!(rig.record().await.rule, "C");
    assert_eq!(
        received(&one_log).len(),
        1,
        "B ran beside A on the same target"
    );
    std::fs::write(&release, "").unwrap();
    let mut done: Vec<(String, &str)> = Vec::new();
    for _ in 0..2 {
        let r = rig.record().await;
        done.push((r.rule, r.outcome));
    }
    assert_eq!(done, [("A".to_string(), "ok"), ("B".to_string(), "ok")]);
    rig.stop().await;
}
