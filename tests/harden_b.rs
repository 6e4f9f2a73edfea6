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
