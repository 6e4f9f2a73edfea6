//! The collector scheduler, the host collector and the HTTP probe, against real things:
//! real tasks and timers, this machine's /proc, HTTP(S) servers on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use medic::collect::{CollectError, Collector, Scheduler};
use medic::common::metrics::{SelfMetrics, labels};
use medic::store::{Labels, Sample, Store};
use tokio::sync::watch;

#[path = "support/config_collect.rs"]
mod support;

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
        "target `no-such-actuator` is not an actuator",
        "target `web-hook` is an `http` actuator, which cannot perform `restart`",
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

/// Builds a collector from its YAML, as if written under `collectors:` in /tmp/x/medic.yaml
/// (or in `dir` when given, for relative paths).
fn build(name: &str, yaml: &str, dir: Option<&std::path::Path>) -> Arc<dyn Collector> {
    let base = dir.map_or_else(|| std::path::PathBuf::from("/tmp/x"), |d| d.to_path_buf());
    let cfg: medic::collect::CollectorConfig =
        medic::common::yaml::parse_yaml(&base.join("medic.yaml"), yaml).unwrap();
    cfg.build(&medic::collect::BuildContext::new(name))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One round: samples by their text form (`name{a="b"}`).
async fn round(c: &dyn Collector) -> std::collections::BTreeMap<String, f64> {
    let mut out = Vec::new();
    c.collect(medic::common::time::now_ms(), &mut out)
        .await
        .unwrap_or_else(|e| panic!("collector {} failed: {e}", c.name()));
    out.into_iter()
        .map(|s| (s.labels.to_string(), s.value))
        .collect()
}

fn proc_field(file: &str, key: &str) -> f64 {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next()? == key).then(|| it.next()?.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("{key} not in {file}"))
}

#[tokio::test]
async fn host_collector_matches_proc() {
    // Read /proc before the round: counters can only have grown since.
    let mem_total = proc_field("/proc/meminfo", "MemTotal:") * 1024.0;
    let btime = proc_field("/proc/stat", "btime");
    let ctxt_before = proc_field("/proc/stat", "ctxt");
    let lo_rx_before = proc_field("/proc/net/dev", "lo:");
    let cpu_lines = std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count();
    let root_size = {
        let out = std::process::Command::new("stat")
            .args(["-f", "-c", "%b %S", "/"])
            .output()
            .unwrap();
        let t = String::from_utf8(out.stdout).unwrap();
        let v: Vec<f64> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
        v[0] * v[1]
    };

    let c = build("host", "type: host\n", None);
    let s = round(c.as_ref()).await;
    assert_eq!(s["node_memory_MemTotal_bytes{}"], mem_total);
    assert!(s["node_memory_MemAvailable_bytes{}"] <= mem_total);
    assert!(s["node_memory_MemAvailable_bytes{}"] > 0.0);
    assert_eq!(s["node_boot_time_seconds{}"], btime);
    assert!(s["node_context_switches_total{}"] >= ctxt_before);
    for l in ["node_load1{}", "node_load5{}", "node_load15{}"] {
        assert!(s[l] >= 0.0, "{l}");
    }
    let cpu_series = s
        .keys()
        .filter(|k| k.starts_with("node_cpu_seconds_total{"))
        .count();
    assert_eq!(cpu_series, cpu_lines * 8);
    assert!(s["node_cpu_seconds_total{cpu=\"0\", mode=\"idle\"}"] > 0.0);
    assert!(s["node_network_receive_bytes_total{device=\"lo\"}"] >= lo_rx_before);
    // The root filesystem, with node_exporter's labels; pseudo filesystems left out.
    let root_key = s
        .keys()
        .find(|k| k.starts_with("node_filesystem_size_bytes{") && k.contains("mountpoint=\"/\"}"))
        .unwrap_or_else(|| panic!("no root filesystem in {:?}", s.keys().collect::<Vec<_>>()));
    assert_eq!(s[root_key], root_size);
    let avail = s[&root_key.replace("size_bytes", "avail_bytes")];
    let free = s[&root_key.replace("size_bytes", "free_bytes")];
    assert!(
        avail <= free && free <= root_size,
        "{avail} {free} {root_size}"
    );
    assert!(
        !s.keys().any(|k| k.contains("mountpoint=\"/proc")
            || k.contains("mountpoint=\"/sys")
            || k.contains("fstype=\"cgroup")),
        "pseudo filesystems must be excluded"
    );
}

#[tokio::test]
async fn http_probe_reports_like_blackbox() {
    let addr = support::http_target().await;
    let probe = |name: &str, extra: &str| {
        build(
            name,
            &format!("type: http_probe\ninterval: 5s\ntimeout: 2s\n{extra}"),
            None,
        )
    };
    let key = |metric: &str, name: &str, url: &str| {
        format!("{metric}{{instance=\"{url}\", probe=\"{name}\"}}")
    };
    // (name, config, expected success, expected status code)
    let ok_url = format!("http://{addr}/ok");
    let cases: Vec<(&str, String, f64, f64)> = vec![
        (
            "ok",
            format!("url: {ok_url}\nbody_contains: good\n"),
            1.0,
            200.0,
        ),
        (
            "wrong_status",
            format!("url: http://{addr}/status/503\n"),
            0.0,
            503.0,
        ),
        (
            "listed_status",
            format!("url: http://{addr}/status/503\nvalid_status_codes: [503]\n"),
            1.0,
            503.0,
        ),
        (
            "body_mismatch",
            format!("url: {ok_url}\nbody_contains: bad\n"),
            0.0,
            200.0,
        ),
        (
            "json_ok",
            format!(
                "url: http://{addr}/json\njson_checks:\n  - {{path: status.ready, equals: true}}\n  - {{path: version, equals: \"1.2\"}}\n"
            ),
            1.0,
            200.0,
        ),
        (
            "json_mismatch",
            format!(
                "url: http://{addr}/json\njson_checks:\n  - {{path: version, equals: \"1.3\"}}\n"
            ),
            0.0,
            200.0,
        ),
        (
            "refused",
            format!("url: http://127.0.0.1:{}/\n", support::closed_port()),
            0.0,
            0.0,
        ),
    ];
    for (name, cfg, success, status) in cases {
        let c = probe(name, &cfg);
        let url = cfg
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("url: ")
            .to_string();
        let s = round(c.as_ref()).await;
        assert_eq!(
            s[&key("probe_success", name, &url)],
            success,
            "{name}: {s:?}"
        );
        assert_eq!(
            s[&key("probe_http_status_code", name, &url)],
            status,
            "{name}: {s:?}"
        );
        assert!(
            s[&key("probe_duration_seconds", name, &url)] > 0.0,
            "{name}"
        );
        assert!(
            !s.contains_key(&key("probe_ssl_earliest_cert_expiry", name, &url)),
            "{name}"
        );
    }

    // Timeout: the target answers after 30 s; the probe reports failure when its own deadline
    // (timeout less a tenth) passes, as a successful round, not a collector error.
    let url = format!("http://{addr}/sleep");
    let c = probe("slow", &format!("url: {url}\n"));
    let s = round(c.as_ref()).await;
    assert_eq!(s[&key("probe_success", "slow", &url)], 0.0);
    assert_eq!(s[&key("probe_http_status_code", "slow", &url)], 0.0);
    assert!(s[&key("probe_duration_seconds", "slow", &url)] >= 1.8);

    // A header from a secret file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "Bearer t0ken\n").unwrap();
    let url = format!("http://{addr}/auth");
    let cfg = format!(
        "type: http_probe\nurl: {url}\nheaders:\n  Authorization: {{file: token}}\n  Accept: text/plain\n"
    );
    let s = round(build("auth", &cfg, Some(dir.path())).as_ref()).await;
    assert_eq!(s[&key("probe_success", "auth", &url)], 1.0);
    let s = round(probe("noauth", &format!("url: {url}\n")).as_ref()).await;
    assert_eq!(s[&key("probe_http_status_code", "noauth", &url)], 401.0);
}

#[tokio::test]
async fn https_probe_reports_certificate_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let cert = support::self_signed(dir.path(), 42);
    let addr = support::https_target(&cert).await;
    let url = format!("https://{addr}/");
    let key =
        |metric: &str, name: &str| format!("{metric}{{instance=\"{url}\", probe=\"{name}\"}}");

    let trusted = format!("type: http_probe\nurl: {url}\ntimeout: 5s\ntls: {{ca_file: ca.pem}}\n");
    let s = round(build("tls", &trusted, Some(dir.path())).as_ref()).await;
    assert_eq!(s[&key("probe_success", "tls")], 1.0, "{s:?}");
    assert_eq!(s[&key("probe_http_status_code", "tls")], 200.0);
    assert_eq!(
        s[&key("probe_ssl_earliest_cert_expiry", "tls")],
        cert.not_after as f64
    );

    // Not trusted: the handshake fails, so no status and no certificate.
    let untrusted = format!("type: http_probe\nurl: {url}\ntimeout: 5s\n");
    let s = round(build("untrusted", &untrusted, None).as_ref()).await;
    assert_eq!(s[&key("probe_success", "untrusted")], 0.0);
    assert_eq!(s[&key("probe_http_status_code", "untrusted")], 0.0);

    // insecure_skip_verify accepts it and still reports the expiry.
    let insecure =
        format!("type: http_probe\nurl: {url}\ntimeout: 5s\ntls: {{insecure_skip_verify: true}}\n");
    let s = round(build("insecure", &insecure, None).as_ref()).await;
    assert_eq!(s[&key("probe_success", "insecure")], 1.0);
    assert_eq!(
        s[&key("probe_ssl_earliest_cert_expiry", "insecure")],
        cert.not_after as f64
    );
}

/// Emits one series, `metric`, every 20 ms.
struct Fixed {
    name: &'static str,
    metric: &'static str,
}

#[async_trait]
impl Collector for Fixed {
    fn name(&self) -> &str {
        self.name
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(20)
    }
    fn timeout(&self) -> Duration {
        Duration::from_millis(20)
    }
    async fn collect(&self, now_ms: i64, out: &mut Vec<Sample>) -> Result<(), CollectError> {
        out.push(Sample::new(Labels::from_name(self.metric), now_ms, 1.0));
        Ok(())
    }
}

#[tokio::test]
async fn reload_hands_over_staleness() {
    let store = Arc::new(Store::default());
    let metrics = Arc::new(SelfMetrics::default());
    let fixed = |name, metric| -> Arc<dyn Collector> { Arc::new(Fixed { name, metric }) };
    let live = |l: &Labels| {
        let r = store.reader();
        r.lookup(l)
            .and_then(|id| r.latest(id, medic::common::time::now_ms() + 1000, 300_000))
            .is_some()
    };
    let up = |c: &str| Labels::new([("__name__", "medic_collector_up"), ("collector", c)]);

    let (tx, rx) = watch::channel(false);
    let first = Scheduler::start(
        vec![fixed("keep", "old_series"), fixed("drop", "dropped_series")],
        store.clone(),
        metrics.clone(),
        rx,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(true).unwrap();
    let last = first.join().await;
    assert!(last["keep"].contains(&Labels::from_name("old_series")));
    assert!(last["drop"].contains(&up("drop")));
    assert!(live(&Labels::from_name("dropped_series")) && live(&up("drop")));

    // The new config keeps "keep" (now returning another series) and removes "drop".
    let (tx, rx) = watch::channel(false);
    let second = Scheduler::start_after(
        vec![fixed("keep", "new_series")],
        store.clone(),
        metrics.clone(),
        rx,
        None,
        last,
    );
    // The removed collector's series are stale at once.
    assert!(!live(&Labels::from_name("dropped_series")));
    assert!(!live(&up("drop")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.send(true).unwrap();
    second.join().await;
    // The kept collector's old series went stale at its first new round.
    assert!(!live(&Labels::from_name("old_series")));
    assert!(live(&Labels::from_name("new_series")));
    assert!(live(&up("keep")));
}
