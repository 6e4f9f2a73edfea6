//! The collector scheduler, the host collector and the HTTP probe, against real things:
//! real tasks and timers, this machine's /proc, HTTP(S) servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use medic::api::metrics::{SelfMetrics, labels};
use medic::collect::{CollectError, Collector, Scheduler};
use medic::store::{Labels, Sample, Store};
use tokio::sync::watch;

/// A test collector: healthy (one series per round, plus one that alternates), failing, or
/// hanging for ever.
struct TestCollector {
    name: &'static str,
    kind: Kind,
    interval: Duration,
    rounds: Arc<AtomicUsize>,
}

#[derive(Clone, Copy)]
enum Kind {
    Healthy,
    Failing,
    Hanging,
}

#[async_trait]
impl Collector for TestCollector {
    fn name(&self) -> &str {
        self.name
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(100)
    }
    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        let n = self.rounds.fetch_add(1, Ordering::SeqCst);
        match self.kind {
            Kind::Healthy => {
                out.push(Sample::new(
                    Labels::new([("__name__", "test_rounds"), ("c", self.name)]),
                    now_ms,
                    n as f64,
                ));
                if n % 2 == 0 {
                    out.push(Sample::new(Labels::from_name("test_flapping"), now_ms, 1.0));
                }
                Ok(())
            }
            Kind::Failing => {
                out.push(Sample::new(Labels::from_name("test_partial"), now_ms, 1.0));
                Err(CollectError::Failed("boom".into()))
            }
            Kind::Hanging => {
                std::future::pending::<()>().await;
                Ok(())
            }
        }
    }
}

fn counter(metrics: &SelfMetrics, name: &str) -> u64 {
    metrics
        .collector_errors
        .get_or_create(&labels(&[("collector", name)]))
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_and_failing_collectors_do_not_delay_a_healthy_one() {
    let store = Arc::new(Store::default());
    let metrics = Arc::new(SelfMetrics::default());
    let counts: Vec<Arc<AtomicUsize>> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let make = |name, kind, interval_ms, i: usize| -> Arc<dyn Collector> {
        Arc::new(TestCollector {
            name,
            kind,
            interval: Duration::from_millis(interval_ms),
            rounds: counts[i].clone(),
        })
    };
    let collectors = vec![
        make("healthy", Kind::Healthy, 20, 0),
        make("failing", Kind::Failing, 200, 1),
        make("hanging", Kind::Hanging, 200, 2),
    ];
    let (tx, rx) = watch::channel(false);
    let sched = Scheduler::start(collectors, store.clone(), metrics.clone(), rx);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tx.send(true).unwrap();
    // Shutdown does not wait for the hanging collector's timeout.
    tokio::time::timeout(Duration::from_secs(5), sched.join())
        .await
        .expect("scheduler stops promptly");

    let healthy = counts[0].load(Ordering::SeqCst);
    let failing = counts[1].load(Ordering::SeqCst);
    let hanging = counts[2].load(Ordering::SeqCst);
    // 1.5 s at 20 ms would be 75 rounds; a hanging neighbour that blocked it would allow at
    // most a handful. Bounds are generous for a loaded machine.
    assert!(healthy >= 15, "healthy ran {healthy} rounds");
    assert!(healthy <= 80, "healthy ran {healthy} rounds");
    assert!(failing >= 2, "failing ran {failing} rounds");
    assert!(hanging >= 2, "hanging ran {hanging} rounds");
    assert_eq!(counter(&metrics, "healthy"), 0);
    assert_eq!(counter(&metrics, "failing"), failing as u64);
    // The last hanging round may have been cut by shutdown rather than its timeout.
    let hung_errors = counter(&metrics, "hanging");
    assert!(
        hung_errors + 1 >= hanging as u64 && hung_errors >= 1,
        "{hung_errors} errors for {hanging} rounds"
    );

    let r = store.reader();
    let far = i64::MAX / 2;
    let series = |l: &Labels| {
        r.lookup(l)
            .map(|id| r.samples(id, 0, far).collect::<Vec<_>>())
    };
    let rounds = series(&Labels::new([
        ("__name__", "test_rounds"),
        ("c", "healthy"),
    ]))
    .unwrap();
    assert_eq!(rounds.len(), healthy, "one sample per healthy round");
    // The failing collector's partial output never reaches the store.
    assert!(series(&Labels::from_name("test_partial")).is_none());
    // medic_collector_up: 1 for the healthy one, 0 for the others.
    let up = |c: &str| {
        series(&Labels::new([
            ("__name__", "medic_collector_up"),
            ("collector", c),
        ]))
        .unwrap()
        .last()
        .unwrap()
        .1
    };
    assert_eq!(up("healthy"), 1.0);
    assert_eq!(up("failing"), 0.0);
    assert_eq!(up("hanging"), 0.0);
    // The flapping series is present on even rounds and stale-marked on odd ones.
    let flap = series(&Labels::from_name("test_flapping")).unwrap();
    let stale = flap
        .iter()
        .filter(|(_, v)| medic::store::is_stale(*v))
        .count();
    let live = flap.len() - stale;
    assert!(stale >= 5 && live >= 5, "{live} live, {stale} stale");
    assert!(live.abs_diff(stale) <= 1, "{live} live, {stale} stale");
}

/// Runs `medic check ARGS`; (exit code, stdout).
fn medic_check(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
        .arg("check")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn check_validates_config_rules_and_remediation_targets() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (code, text) = medic_check(&["-c".as_ref(), repo.join("config/medic.yaml").as_os_str()]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS: 8 rules found"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("rules.d")).unwrap();
    std::fs::write(
        dir.path().join("rules.d/app.yaml"),
        r#"groups:
  - name: app
    rules:
      - alert: Down
        expr: probe_success == 0
        remediate:
          - action: exec
            target: restart-app
          - action: exec
            target: no-such-actuator
            cooldown: 5m
          - action: restart
            target: web-hook
            cooldown: 5m
"#,
    )
    .unwrap();
    let config = dir.path().join("medic.yaml");
    std::fs::write(
        &config,
        r#"global:
  listen_address: "127.0.0.1:99999"
collectors:
  web: {type: http_probe, url: "http://127.0.0.1:1/", interval: 1s, timeout: 5s}
actuators:
  restart-app: {type: exec, command: [/bin/true]}
  web-hook: {type: http, url: "http://127.0.0.1:1/hook"}
rule_files: ["rules.d/*.yaml"]
"#,
    )
    .unwrap();
    let (code, text) = medic_check(&["-c".as_ref(), config.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    for want in [
        "error: global.listen_address",
        "timeout 5s is longer than the interval 1s",
        "\"no-such-actuator\" is not an actuator",
        "\"web-hook\" is a http actuator, which cannot perform \"restart\"",
        "warning: ",
        "remediate[0] (exec): risky: no cooldown",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    // A schema error names file, line and column.
    std::fs::write(&config, "global:\n  listen_adress: x\n").unwrap();
    let (code, text) = medic_check(&["-c".as_ref(), config.as_os_str()]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains(&format!("{}:2:3", config.display())),
        "{text}"
    );
}
