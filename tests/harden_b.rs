//! Hostile input and overload, against a real `medic run`: credentials in URLs never shown,
//! series limits against a target that invents series, slow and idle HTTP clients.

#[path = "support/daemon.rs"]
mod support;

use std::time::Duration;

use support::{DEADLINE, Medic, Target, WebhookSink, metric_value, wait_for};

fn base_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 300ms\n  collect_interval: 300ms\n{extra}",
        dir.join("state").display()
    )
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

const SECRET: &str = "hunter2-in-url";

/// `user:pass@` in the URLs of a probe, a scrape target and an http actuator: medic still
/// uses them, but the password shows nowhere: not in the log, not in the journal's action
/// message, not in the probe's `instance` label on `/metrics`, not in the webhook payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_urls_are_redacted_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let target = Target::start().await;
    target.set_failing(true);
    let hook = WebhookSink::start().await;
    let closed = closed_port();
    std::fs::write(
        d.join("rules.yaml"),
        r#"groups:
- name: site
  interval: 300ms
  rules:
  - alert: SiteDown
    expr: probe_success{probe="site"} == 0
    annotations: {summary: "{{ $labels.instance }} is down"}
    remediate:
    - {action: http, target: admin, cooldown: 1h}
"#,
    )
    .unwrap();
    let config = base_config(
        d,
        &format!(
            r#"  export_collected: true
collectors:
  site:
    type: http_probe
    url: "http://admin:{SECRET}@{addr}/health"
    timeout: 300ms
  app:
    type: scrape
    url: "http://admin:{SECRET}@127.0.0.1:{closed}/metrics"
    timeout: 300ms
actuators:
  admin:
    type: http
    url: "http://admin:{SECRET}@127.0.0.1:{closed}/drain"
    timeout: 2s
notifiers:
  sink:
    type: webhook
    url: {hook}
    timeout: 5s
rule_files: [rules.yaml]
"#,
            addr = target.addr,
            hook = hook.url(),
        ),
    );
    let medic = Medic::start(d, &config);
    let shown = format!("http://admin:***@{}/health", target.addr);

    let payload = wait_for("the firing webhook", || async {
        hook.find("firing", "SiteDown")
    })
    .await;
    let journal = d.join("state/journal.db");
    let message: String = wait_for("the action's outcome in the journal", || async {
        let db = rusqlite::Connection::open_with_flags(
            &journal,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .ok()?;
        db.query_row(
            "SELECT message FROM actions WHERE status != 'running' ORDER BY id LIMIT 1",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .ok()
        .flatten()
    })
    .await;
    let (_, metrics) = medic.get("/metrics").await;
    // the scrape target's outage is logged once it has failed
    wait_for("the scrape outage in the log", || async {
        medic.logs().contains("target down").then_some(())
    })
    .await;

    let alert = &payload["alerts"][0];
    assert_eq!(alert["labels"]["instance"], shown.as_str(), "{payload}");
    assert!(
        metric_value(
            &metrics,
            &format!("probe_success{{instance=\"{shown}\",probe=\"site\"}}")
        )
        .is_some(),
        "{metrics}"
    );
    assert!(
        message.contains(&format!("http://admin:***@127.0.0.1:{closed}/drain")),
        "{message}"
    );
    for (what, text) in [
        ("log", medic.logs()),
        ("journal message", message),
        ("/metrics", metrics),
        ("webhook", payload.to_string()),
    ] {
        assert!(
            !text.contains(SECRET),
            "the password shows in the {what}:\n{text}"
        );
    }
    let _ = DEADLINE;
    let _ = Duration::ZERO;
}

/// A scrape target that invents `per_scrape` new series on every scrape (`hostile{id=...}`),
/// as a misbehaving exporter with a request ID in a label would. Counts its scrapes.
struct Hostile {
    addr: std::net::SocketAddr,
    scrapes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Hostile {
    async fn start(per_scrape: usize) -> Hostile {
        use axum::{Router, routing::get};
        use std::sync::atomic::Ordering;
        let scrapes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = scrapes.clone();
        let app = Router::new().route(
            "/metrics",
            get(move || {
                let round = n.fetch_add(1, Ordering::SeqCst);
                async move {
                    let mut body = String::with_capacity(per_scrape * 40);
                    body.push_str("# TYPE hostile gauge\n");
                    for i in 0..per_scrape {
                        body.push_str(&format!("hostile{{id=\"{round}-{i}\"}} 1\n"));
                    }
                    body
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hostile { addr, scrapes }
    }

    fn scrapes(&self) -> usize {
        self.scrapes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Scrapes of 10,000 new series each, many times over: the store stays at
/// `global.max_series`, the overflow is counted and logged, and medic's own series still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_inventing_series_fills_the_store_only_to_its_cap() {
    const CAP: f64 = 3_000.0;
    let dir = tempfile::tempdir().unwrap();
    let hostile = Hostile::start(10_000).await;
    let config = base_config(
        dir.path(),
        &format!(
            "  max_series: {CAP}\ncollectors:\n  hostile:\n    type: scrape\n    url: http://{}/metrics\n    sample_limit: 20000\n    new_series_limit: 0\n    interval: 300ms\n",
            hostile.addr
        ),
    );
    let medic = Medic::start(dir.path(), &config);
    // ten scrapes: 100,000 distinct series offered
    wait_for("ten scrapes of the hostile target", || async {
        (hostile.scrapes() >= 10).then_some(())
    })
    .await;
    let dropped = wait_for("dropped series to be counted", || async {
        let (_, m) = medic.get("/metrics").await;
        metric_value(&m, "medic_store_series_dropped_total").filter(|v| *v >= 50_000.0)
    })
    .await;
    let (_, m) = medic.get("/metrics").await;
    let series = metric_value(&m, "medic_store_series").unwrap();
    assert!(series <= CAP, "{series} series held, cap {CAP}");
    assert!(
        series >= CAP - 100.0,
        "the store filled up to the cap: {series}"
    );
    assert_eq!(metric_value(&m, "medic_store_series_limit"), Some(CAP));
    assert!(
        metric_value(
            &m,
            "medic_collector_new_series_dropped_total{collector=\"hostile\",reason=\"max_series\"}"
        )
        .is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(dropped >= 50_000.0);
    // said on the log, but not once per sample
    let logs = medic.logs();
    let warnings = logs.matches("global.max_series").count();
    assert!((1..=5).contains(&warnings), "{warnings} warnings:\n{logs}");
    assert_eq!(medic.get("/healthz").await.0, 200);
}

/// The per-target rate: a target may add its first scrape at once, then `new_series_limit`
/// new series a minute, so one churning target cannot take the whole store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churning_target_is_held_to_its_new_series_rate() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = Hostile::start(1_000).await;
    let config = base_config(
        dir.path(),
        &format!(
            "collectors:\n  hostile:\n    type: scrape\n    url: http://{}/metrics\n    sample_limit: 1000\n    new_series_limit: 100\n    interval: 300ms\n",
            hostile.addr
        ),
    );
    let medic = Medic::start(dir.path(), &config);
    wait_for("ten scrapes of the hostile target", || async {
        (hostile.scrapes() >= 10).then_some(())
    })
    .await;
    let sample = "medic_collector_new_series_dropped_total{collector=\"hostile\",reason=\"new_series_limit\"}";
    wait_for("rate-limited series to be counted", || async {
        let (_, m) = medic.get("/metrics").await;
        metric_value(&m, sample).filter(|v| *v >= 5_000.0)
    })
    .await;
    let (_, m) = medic.get("/metrics").await;
    let series = metric_value(&m, "medic_store_series").unwrap();
    // the first scrape (1,000, the burst) plus 100 a minute (and medic's own few dozen)
    // whatever the time the scrapes took
    let minutes = 1.0 + DEADLINE.as_secs_f64() / 60.0;
    assert!(
        series <= 1_000.0 + 100.0 * minutes + 100.0,
        "{series} series held"
    );
    assert!(
        medic.logs().contains("new_series_limit"),
        "{}",
        medic.logs()
    );
}

/// Reads from `s` until the server closes it (EOF or reset); `false` if it is still open
/// at `until` (the test's own bound, far above the configured timeout).
fn closed_by_server(mut s: &std::net::TcpStream, until: std::time::Instant) -> bool {
    use std::io::Read;
    let left = until.saturating_duration_since(std::time::Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a response (e.g. 408) before the close
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true, // reset
        }
    }
}

/// Slow clients: idle connections, half-sent requests and idle keep-alive connections are
/// closed after `global.http.header_timeout`; with more of them than
/// `global.http.max_connections`, the API still answers /healthz (connections wait for a
/// slot, in the kernel's queue, instead of taking descriptors), and medic's collectors go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_and_healthz_still_answers() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(
        dir.path(),
        "  http:\n    header_timeout: 1s\n    idle_timeout: 5s\n    max_connections: 20\ncollectors:\n  host: {type: host}\n",
    );
    let medic = Medic::start(dir.path(), &config);
    let addr: std::net::SocketAddr = medic.addr.parse().unwrap();
    let connect = || std::net::TcpStream::connect(addr).unwrap();
    // 40 idle connections (twice the limit), 40 half-sent requests
    let idle: Vec<_> = (0..40).map(|_| connect()).collect();
    let half: Vec<_> = (0..40)
        .map(|_| {
            let mut s = connect();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: medic\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    // a keep-alive connection after a full exchange
    let mut kept = connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: medic\r\n\r\n")
        .unwrap();
    // /healthz answers meanwhile (once a slot frees)
    let (status, body) = support::http_get(&medic.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let bound = std::time::Instant::now() + Duration::from_secs(30);
    let (idle_closed, half_closed, kept_closed) = tokio::task::spawn_blocking(move || {
        let a = idle.iter().filter(|s| closed_by_server(s, bound)).count();
        let b = half.iter().filter(|s| closed_by_server(s, bound)).count();
        let c = closed_by_server(&kept, bound);
        (a, b, c)
    })
    .await
    .unwrap();
    assert_eq!(idle_closed, 40, "idle connections left open");
    assert_eq!(half_closed, 40, "half-sent requests left open");
    assert!(kept_closed, "an idle keep-alive connection left open");
    assert_eq!(medic.get("/healthz").await.0, 200);
    let (_, m) = medic.get("/metrics").await;
    assert!(
        metric_value(&m, "medic_collector_errors_total{collector=\"host\"}") == Some(0.0),
        "{m}"
    );
}

/// The shipped unit raises the open-file limit, and at that limit the API's default
/// connection cap is a quarter of it at most, leaving the rest to collectors and actions.
#[test]
fn the_unit_sets_an_open_file_limit_that_leaves_room_beside_the_api() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/medic.service"
    ))
    .unwrap();
    let files: usize = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("the unit sets LimitNOFILE=")
        .trim()
        .parse()
        .expect("a number");
    let api = medic::api::server::HttpConfig::default();
    assert!(api.max_connections * 4 <= files, "{files} open files");
    // and the cap follows the limit the process really has
    assert!(api.connection_limit() <= api.max_connections);
}

/// The README's examples for these limits (the config reference, the scrape limits and the
/// API's connection limits) are configs medic loads.
#[test]
fn readme_examples_of_the_limits_load() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut n = 0;
    for section in ["<!-- section: config -->", "<!-- section: api -->"] {
        let start = readme.find(section).unwrap();
        let end = start
            + readme[start..]
                .find("\n## ")
                .unwrap_or(readme.len() - start);
        for block in readme[start..end].split("```yaml\n").skip(1) {
            let yaml = &block[..block.find("```").unwrap()];
            if !yaml.contains("max_series") && !yaml.contains("\n  http:\n") {
                continue;
            }
            let cfg: medic::config::Config = serde_saphyr::from_str(yaml)
                .unwrap_or_else(|e| panic!("README example does not parse: {e}\n{yaml}"));
            if yaml.contains("max_series") {
                assert_eq!(cfg.global.max_series, 100_000);
            }
            if yaml.contains("\n  http:\n") {
                assert_eq!(cfg.global.http.max_connections, 256);
                assert_eq!(
                    cfg.global.http.header_timeout.std(),
                    Duration::from_secs(10)
                );
            }
            n += 1;
        }
    }
    assert_eq!(n, 2);
}

/// Scrape bodies whose verdict (accepted or rejected whole) medic must share with
/// Prometheus 2.42's text parser. Kept to parser verdicts: no body here fails only in
/// Prometheus' storage (a duplicate label name, `__name__` as a label, samples too old).
pub const AGREEMENT_BODIES: &[&str] = &[
    // the issue's four
    "# TYPE s summary\ns 1\n",
    "# TYPE h histogram\nh_bucket 1\n",
    "x a+Inf\n",
    "# TYPE x histogram\t\nx_bucket{le=\"+Inf\"} 1\n",
    // TYPE and HELP lines
    "# TYPE x histogram \nx_bucket{le=\"+Inf\"} 1\n",
    "# TYPE x gauge\t\nx 1\n",
    "# TYPE h histogram\nh 1\n",
    "# TYPE h histogram\nh_bucket{le=\"x\"} 1\n",
    "# TYPE s summary\ns{quantile=\"x\"} 1\n",
    "x 1\n# TYPE x gauge\n",
    "# TYPE x counter\n# TYPE x gauge\nx 1\n",
    "# TYPE x whatever\n",
    "# TYPE x\nx 1\n",
    "# TYPE  x  gauge\nx 1\n",
    "#  TYPE x gauge\nx 1\n",
    "# TYPE  x gauge\nx 1\n",
    "# TYPE x  gauge\nx 1\n",
    "# TYPE x gauge extra\nx 1\n",
    "# TYPE x untyped\nx 1\n",
    "# TYPE x unknown\nx 1\n",
    "# TYPE x info\nx 1\n",
    "# TYPE x Counter\nx 1\n",
    "# TYPE x\tgauge\nx 1\n",
    "#\tTYPE x gauge\nx 1\n",
    "# TYPE\tx gauge\nx 1\n",
    "#TYPE x gauge\nx 1\n",
    "# HELP x a\\tb\nx 1\n",
    "# HELP x \\q\nx 1\n",
    "# HELP x\nx 1\n",
    "# HELP\nx 1\n",
    "#\nx 1\n",
    "# \nx 1\n",
    "# EOF\nx 1\n",
    "# TYPE x counter\nx_total 1\n",
    "# TYPE x summary\nx_sum 1\nx_count 1\n",
    "# TYPE x histogram\nx_bucket{le=\"1\"} 1\nx_bucket{le=\"+Inf\"} 1\nx_sum 1\nx_count 1\n",
    "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\n",
    "# TYPE c counter\nc -1\n",
    // values
    "x 1e400\n",
    "x 1e+400\n",
    "x -1e400\n",
    "x 1e-400\n",
    "x 0x1p-2\n",
    "x +Inf\n",
    "x Inf\n",
    "x +inf\n",
    "x iNf\n",
    "x infinity\n",
    "x Infinity\n",
    "x +infinity\n",
    "x -Infinity\n",
    "x infinit\n",
    "x +NaN\n",
    "x -nan\n",
    "x nan\n",
    "x NaN\n",
    "x 1_000\n",
    "x .5\n",
    "x 5.\n",
    "x +1\n",
    "x 1E3\n",
    "x 1.0e+3\n",
    "x\n",
    "x \n",
    // timestamps
    "x 1 +1\n",
    "x 1 1e3\n",
    "x 1 99999999999999999999\n",
    "x{a=\"b\"} 1 -0\n",
    "x{a=\"b\"} 1 2 3\n",
    "x 1 #\n",
    "x 1 2 #\n",
    // blanks and line ends
    " x 1\n",
    "x\t1\n",
    "x  1\n",
    "x 1\t2\n",
    "x 1\r\n",
    "\n\nx 1\n",
    "x 1",
    "",
    "x {a=\"b\"} 1\n",
    "x\t{a=\"b\"} 1\n",
    "x{a=\"b\"}1\n",
    "x{a=\"b\"}  1\n",
    // names and label sets
    "9x 1\n",
    ":x 1\n",
    "x:y 1\n",
    "x{} 1\n",
    "x{a=\"b\",} 1\n",
    "x{,} 1\n",
    "x{,a=\"b\"} 1\n",
    "x{a=\"b\",,} 1\n",
    "x{a=\"b\" b=\"c\"} 1\n",
    "x{a=\"b\"\t} 1\n",
    "x{ a=\"b\"} 1\n",
    "x{a = \"b\"} 1\n",
    "x{9a=\"b\"} 1\n",
    "x{a-b=\"c\"} 1\n",
    "x{a=b} 1\n",
    "x{a=\"b} 1\n",
    "x{\"a\"=\"b\"} 1\n",
    "x{a=\"\"} 1\n",
    "x{a=\"\\q\"} 1\n",
    "x{a=\"\\\\\"} 1\n",
    "x{a=\"\\\"\"} 1\n",
    "x{a=\"line\\nbreak\"} 1\n",
    "x_bucket{le=\"+Inf\"} 1\n",
    "x 1\nx 2\n",
    "  # HELP x help\nx 1\n",
    "   \nx 1\n",
    "\t y{a=\"b\"} 2\n",
    "# HELP x a\n# HELP x b\nx 1\n",
    "x{a=\"é\" b=\"2\"} 1\n",
    "w{problem=\"division by zero\"} +Inf -3982045\n",
    "x{a=\"\\t\"} 1\n",
    "# TYPE x gauge\n# HELP x a\n# TYPE x counter\nx 1\n",
    "x{a=\"\\\"} 1\n",
    "x{a=\"b\"}} 1\n",
    "x{a=\"b\"}x 1\n",
    "x 1 2x\n",
];

/// medic's verdict on a body: the samples it takes, or the error.
fn medic_verdict(body: &str) -> Result<usize, String> {
    use medic::collect::exposition::{Format, parse};
    let mut n = 0;
    parse::<medic::collect::exposition::ParseError, _>(body, Format::Prometheus, |_| {
        n += 1;
        Ok(())
    })
    .map(|_| n)
    .map_err(|e| e.to_string())
}

/// Runs a real Prometheus (the Debian `prometheus` 2.42 that scripts/test.sh installs) on
/// loopback, scraping one target per body, and compares its verdicts (`up`,
/// `scrape_samples_scraped`) with medic's parser's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_verdicts_agree_with_a_real_prometheus() {
    use axum::{Router, extract::Path, http::header, routing::get};
    if std::process::Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "SKIPPED: no `prometheus` binary (apt-get install prometheus; scripts/test.sh does)"
        );
        return;
    }
    let app = Router::new().route(
        "/b/{i}",
        get(|Path(i): Path<usize>| async move {
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                AGREEMENT_BODIES[i],
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg =
        String::from("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n");
    for i in 0..AGREEMENT_BODIES.len() {
        cfg.push_str(&format!(
            "- job_name: b{i}\n  metrics_path: /b/{i}\n  static_configs: [{{targets: ['{target}']}}]\n"
        ));
    }
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let port = closed_port();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(std::mem::replace(
        &mut prom,
        std::process::Command::new("true").spawn().unwrap(),
    ));
    let http = support::client();
    let query = |q: &'static str| {
        let http = http.clone();
        async move {
            let q = q
                .replace('(', "%28")
                .replace(')', "%29")
                .replace('[', "%5B")
                .replace(']', "%5D");
            let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
            let r = http.get(url).send().await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            let mut by_job = std::collections::BTreeMap::new();
            for s in v["data"]["result"].as_array()? {
                let job = s["metric"]["job"].as_str()?.to_string();
                let value: f64 = s["value"][1].as_str()?.parse().ok()?;
                by_job.insert(job, value);
            }
            Some(by_job)
        }
    };
    // every target scraped twice: its series are there and current
    let (up, scraped) = wait_for("Prometheus to scrape every body twice", || async {
        let count = query("count_over_time(up[1m])").await?;
        if count.len() < AGREEMENT_BODIES.len() || count.values().any(|c| *c < 2.0) {
            return None;
        }
        Some((query("up").await?, query("scrape_samples_scraped").await?))
    })
    .await;
    let mut disagree = Vec::new();
    for (i, body) in AGREEMENT_BODIES.iter().enumerate() {
        let job = format!("b{i}");
        let prom_ok = up[&job] == 1.0;
        let medic = medic_verdict(body);
        match (&medic, prom_ok) {
            (Ok(n), true) if *n as f64 == scraped[&job] => {}
            (Err(_), false) => {}
            _ => disagree.push(format!(
                "{body:?}: Prometheus {} ({} samples), medic {medic:?}",
                if prom_ok { "accepts" } else { "rejects" },
                scraped[&job]
            )),
        }
    }
    assert!(
        disagree.is_empty(),
        "{} of {} bodies get another verdict from medic than from Prometheus 2.42:\n{}",
        disagree.len(),
        AGREEMENT_BODIES.len(),
        disagree.join("\n")
    );
}
