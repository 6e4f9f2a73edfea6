//! Integration tests of the AI-workload collectors against real servers on loopback:
//! an HTTP metrics target (axum), redis-server, memcached, and this test's own child processes.

#[path = "support/collectors.rs"]
mod support;
// the openssl-made test CA of the core collectors' tests
#[path = "support/config_collect.rs"]
mod core_support;

use std::time::Duration;

use std::sync::Arc;

use medic::collect::scrape::{ScrapeCollector, ScrapeConfig};
use medic::collect::{BuildContext, Collector, CollectorConfig, Scheduler};
use medic::common::metrics::SelfMetrics;
use medic::store::{Sample, Store, is_stale};

/// Fails a test that would otherwise hang (a guard, not a timing assertion).
async fn guard<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test did not finish within 60 s")
}

fn find<'a>(out: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    out.iter().find(|s| {
        s.labels.name() == Some(name) && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
    })
}

fn value(out: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    find(out, name, labels)
        .unwrap_or_else(|| panic!("no sample {name}{labels:?} in {out:#?}"))
        .value
}

// ---------------------------------------------------------------- scrape

const EXPOSITION: &str = r#"# HELP inference_requests_total Requests served.
# TYPE inference_requests_total counter
inference_requests_total{model="llama",code="200"} 1027
inference_requests_total{model="llama",code="500"} 3 1395066363000
# TYPE inference_queue_depth gauge
inference_queue_depth 12
inference_batch_size{job="batcher"} 8
# TYPE inference_latency_seconds histogram
inference_latency_seconds_bucket{le="0.1"} 10
inference_latency_seconds_bucket{le="0.5"} 40
inference_latency_seconds_bucket{le="+Inf"} 42
inference_latency_seconds_sum 9.5
inference_latency_seconds_count 42
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} NaN
rpc_seconds_sum 17.25
rpc_seconds_count 80
weird{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} -Inf
"#;

struct Target {
    addr: std::net::SocketAddr,
    /// Body of `/changing`, switched by the test.
    changing: std::sync::Arc<std::sync::Mutex<String>>,
}

async fn start_target() -> Target {
    use axum::routing::get;
    let changing = std::sync::Arc::new(std::sync::Mutex::new("a 1\nb 2\n".to_string()));
    let ch = changing.clone();
    let app = axum::Router::new()
        .route("/metrics", get(|| async { EXPOSITION }))
        .route(
            "/openmetrics",
            get(|| async {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0",
                    )],
                    "# TYPE jobs counter\njobs_total 5 1700000000.5 # {trace=\"x\"} 1\n# EOF\n",
                )
            }),
        )
        .route("/malformed", get(|| async { "good 1\nbad{a=\"1\" 2\n" }))
        .route("/huge", get(|| async { "x 1\n".repeat(100_000) }))
        .route(
            "/many",
            get(|| async {
                (0..100)
                    .map(|i| format!("m{{i=\"{i}\"}} 1\n"))
                    .collect::<String>()
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "late 1\n"
            }),
        )
        .route(
            "/error",
            get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "busy") }),
        )
        .route(
            "/changing",
            get(move || {
                let ch = ch.clone();
                async move { ch.lock().unwrap().clone() }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Target { addr, changing }
}

/// An HTTP/1.1 server whose every response is `x 1` lines in chunks, without end and without
/// a Content-Length (until the client hangs up).
async fn endless_chunked_target() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let body = "x 1\n".repeat(1024);
                let chunk = format!("{:x}\r\n{body}\r\n", body.len());
                while sock.write_all(chunk.as_bytes()).await.is_ok() {}
            });
        }
    });
    addr
}

fn ctx(name: &str) -> BuildContext<'_> {
    BuildContext::new(name)
}

fn scrape(yaml: &str) -> ScrapeCollector {
    let cfg: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
    ScrapeCollector::new(&cfg, &ctx("inference")).unwrap()
}

#[tokio::test]
async fn scrape_reads_every_metric_type() {
    guard(async {
        let t = start_target().await;
        let c = scrape(&format!("url: http://{}/metrics\n", t.addr));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let inst = t.addr.to_string();
        let target = [("job", "inference"), ("instance", inst.as_str())];
        assert_eq!(value(&out, "up", &target), 1.0);
        assert_eq!(value(&out, "scrape_samples_scraped", &target), 14.0);
        let s = find(
            &out,
            "inference_requests_total",
            &[("code", "200"), ("model", "llama")],
        )
        .unwrap();
        assert_eq!((s.value, s.timestamp_ms), (1027.0, 1_000));
        assert_eq!(s.labels.get("job"), Some("inference"));
        assert_eq!(s.labels.get("instance"), Some(inst.as_str()));
        // the sample's own timestamp is honoured
        let s = find(&out, "inference_requests_total", &[("code", "500")]).unwrap();
        assert_eq!((s.value, s.timestamp_ms), (3.0, 1395066363000));
        assert_eq!(value(&out, "inference_queue_depth", &[]), 12.0);
        // the exposed job label conflicts with the target's and is renamed
        let s = find(&out, "inference_batch_size", &[]).unwrap();
        assert_eq!(s.labels.get("job"), Some("inference"));
        assert_eq!(s.labels.get("exported_job"), Some("batcher"));
        assert_eq!(
            value(&out, "inference_latency_seconds_bucket", &[("le", "0.5")]),
            40.0
        );
        assert_eq!(
            value(&out, "inference_latency_seconds_bucket", &[("le", "+Inf")]),
            42.0
        );
        assert_eq!(value(&out, "inference_latency_seconds_sum", &[]), 9.5);
        assert_eq!(value(&out, "inference_latency_seconds_count", &[]), 42.0);
        assert_eq!(value(&out, "rpc_seconds", &[("quantile", "0.5")]), 0.2);
        assert!(value(&out, "rpc_seconds", &[("quantile", "0.99")]).is_nan());
        assert_eq!(value(&out, "rpc_seconds_count", &[]), 80.0);
        let s = find(&out, "weird", &[]).unwrap();
        assert_eq!(s.labels.get("path"), Some("C:\\DIR\\FILE.TXT"));
        assert_eq!(
            s.labels.get("error"),
            Some("Cannot find file:\n\"FILE.TXT\"")
        );
        assert_eq!(s.value, f64::NEG_INFINITY);
        for r in [
            "timeout",
            "parse",
            "body_too_large",
            "connect",
            "http_status",
            "sample_limit",
        ] {
            assert_eq!(
                value(&out, "medic_scrape_errors_total", &[("reason", r)]),
                0.0
            );
        }

        // a second scrape gives the same series (served from the label cache)
        let mut again = Vec::new();
        c.collect(2_000, &mut again).await.unwrap();
        let labels = |v: &[Sample]| {
            let mut l: Vec<String> = v
                .iter()
                .filter(|s| s.labels.name() != Some("scrape_duration_seconds"))
                .map(|s| format!("{} {}", s.labels, s.value))
                .collect();
            l.sort();
            l
        };
        assert_eq!(labels(&out), labels(&again));
    })
    .await
}

#[tokio::test]
async fn scrape_openmetrics_and_honor_labels() {
    guard(async {
        let t = start_target().await;
        let c = scrape(&format!(
            "url: http://{}/openmetrics\njob: om\ninstance: gpu-box\n",
            t.addr
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let s = find(
            &out,
            "jobs_total",
            &[("job", "om"), ("instance", "gpu-box")],
        )
        .unwrap();
        assert_eq!((s.value, s.timestamp_ms), (5.0, 1_700_000_000_500));

        let c = scrape(&format!(
            "url: http://{}/metrics\nhonor_labels: true\nhonor_timestamps: false\n",
            t.addr
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let s = find(&out, "inference_batch_size", &[]).unwrap();
        assert_eq!(s.labels.get("job"), Some("batcher"));
        assert_eq!(s.labels.get("exported_job"), None);
        let s = find(&out, "inference_requests_total", &[("code", "500")]).unwrap();
        assert_eq!(s.timestamp_ms, 1_000);
    })
    .await
}

#[tokio::test]
async fn scrape_rejects_bad_targets_with_counted_errors() {
    guard(async {
        let t = start_target().await;
        let cases = [
            ("malformed", "parse", ""),
            ("huge", "body_too_large", "body_size_limit: 64KiB\n"),
            ("many", "sample_limit", "sample_limit: 50\n"),
            ("slow", "timeout", "timeout: 300ms\n"),
            ("error", "http_status", ""),
        ];
        for (path, reason, extra) in cases {
            let c = scrape(&format!("url: http://{}/{path}\n{extra}", t.addr));
            for round in 1..=2 {
                let mut out = Vec::new();
                c.collect(round * 1000, &mut out).await.unwrap();
                assert_eq!(value(&out, "up", &[]), 0.0, "{path}");
                assert_eq!(
                    value(&out, "medic_scrape_errors_total", &[("reason", reason)]),
                    round as f64,
                    "{path}: {:?}",
                    c.last_error()
                );
                assert_eq!(value(&out, "scrape_samples_scraped", &[]), 0.0, "{path}");
                // nothing of a rejected body is stored, not even its good first lines
                assert!(find(&out, "good", &[]).is_none() && find(&out, "m", &[]).is_none());
            }
            let err = c.last_error().unwrap();
            assert_eq!(err.reason.as_str(), reason);
            if path == "malformed" {
                assert!(err.message.contains("line 2, column 11"), "{err}");
            }
        }

        // an endless chunked body (no Content-Length): cut by the size while streaming,
        // else this would be a timeout
        let addr = endless_chunked_target().await;
        let c = scrape(&format!(
            "url: http://{addr}/metrics\nbody_size_limit: 64KiB\ntimeout: 30s\ninterval: 30s\n"
        ));
        let mut out = Vec::new();
        c.collect(1000, &mut out).await.unwrap();
        assert_eq!(value(&out, "up", &[]), 0.0);
        let err = c.last_error().unwrap();
        assert_eq!(err.reason.as_str(), "body_too_large", "{err}");
        assert!(find(&out, "x", &[]).is_none());

        // nothing listening: a connect error
        let port = support::free_port();
        let c = scrape(&format!("url: http://127.0.0.1:{port}/metrics\n"));
        let mut out = Vec::new();
        c.collect(1000, &mut out).await.unwrap();
        assert_eq!(value(&out, "up", &[]), 0.0);
        assert_eq!(
            value(&out, "medic_scrape_errors_total", &[("reason", "connect")]),
            1.0
        );
    })
    .await
}

#[tokio::test]
async fn scrape_keeps_the_first_of_duplicate_series_and_counts_the_rest() {
    guard(async {
        let t = start_target().await;
        *t.changing.lock().unwrap() = concat!(
            "x 1\nx 2\n",
            "y{a=\"1\",b=\"2\"} 3\ny{b=\"2\",a=\"1\"} 4\n",
            "z{a=\"\"} 5\nz 6\n",
            // other timestamps are other samples, not duplicates
            "w 7 1000\nw 8 2000\n",
        )
        .to_string();
        let c = scrape(&format!("url: http://{}/changing\n", t.addr));
        for round in 1..=2 {
            let mut out = Vec::new();
            c.collect(round * 10_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "up", &[]), 1.0);
            assert_eq!(value(&out, "scrape_samples_scraped", &[]), 8.0);
            assert_eq!(
                value(
                    &out,
                    "medic_scrape_errors_total",
                    &[("reason", "duplicate")]
                ),
                3.0 * round as f64
            );
            let vals = |name: &str| {
                out.iter()
                    .filter(|s| s.labels.name() == Some(name))
                    .map(|s| s.value)
                    .collect::<Vec<_>>()
            };
            assert_eq!(vals("x"), vec![1.0]);
            assert_eq!(vals("y"), vec![3.0]);
            assert_eq!(vals("z"), vec![5.0]);
            assert_eq!(vals("w"), vec![7.0, 8.0]);
        }
    })
    .await
}

/// Polls `cond` until it holds (the test's guard fails it if it never does).
async fn eventually(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The newest sample of the only series named `name` in `store`.
fn newest(store: &Store, name: &str) -> Option<(i64, f64)> {
    let r = store.reader();
    let id = *r.series_by_name(name).first()?;
    r.samples(id, i64::MIN, i64::MAX).last()
}

#[tokio::test]
async fn scrape_through_the_scheduler_ends_vanished_series() {
    guard(async {
        let t = start_target().await;
        let yaml = format!(
            "type: scrape\nurl: http://{}/changing\ninterval: 50ms\n",
            t.addr
        );
        let cfg: CollectorConfig = serde_saphyr::from_str(&yaml).unwrap();
        let c = cfg.build(&ctx("svc")).unwrap();
        let store = Arc::new(Store::default());
        let (tx, rx) = tokio::sync::watch::channel(false);
        let sched = Scheduler::start(vec![c], store.clone(), Arc::new(SelfMetrics::default()), rx);
        eventually(|| newest(&store, "b").is_some_and(|s| s.1 == 2.0)).await;
        *t.changing.lock().unwrap() = "a 3\n".to_string();
        eventually(|| newest(&store, "b").is_some_and(|s| is_stale(s.1))).await;
        eventually(|| newest(&store, "a").is_some_and(|s| s.1 == 3.0)).await;
        // a malformed body ends every series of the target; `up` says why
        *t.changing.lock().unwrap() = "a{ 1\n".to_string();
        eventually(|| newest(&store, "a").is_some_and(|s| is_stale(s.1))).await;
        assert_eq!(newest(&store, "up").unwrap().1, 0.0);
        let r = store.reader();
        let errs = r
            .series_by_name("medic_scrape_errors_total")
            .iter()
            .find(|id| r.labels(**id).unwrap().get("reason") == Some("parse"))
            .copied()
            .unwrap();
        assert!(r.samples(errs, i64::MIN, i64::MAX).last().unwrap().1 >= 1.0);
        drop(r);
        tx.send(true).unwrap();
        sched.join().await;
    })
    .await
}

// ---------------------------------------------------------------- redis

async fn redis_conn(port: u16, password: Option<&str>) -> redis::aio::MultiplexedConnection {
    let url = match password {
        Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
        None => format!("redis://127.0.0.1:{port}/"),
    };
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// INFO as a map, straight from the server.
async fn server_info(
    conn: &mut redis::aio::MultiplexedConnection,
) -> std::collections::HashMap<String, String> {
    let info: String = redis::cmd("INFO").query_async(conn).await.unwrap();
    info.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn build(yaml: &str) -> Arc<dyn Collector> {
    let cfg: CollectorConfig = serde_saphyr::from_str(yaml).unwrap();
    cfg.build(&ctx("cache")).unwrap()
}

#[tokio::test]
async fn redis_values_match_the_server() {
    guard(async {
        let server = support::redis(None);
        let mut conn = redis_conn(server.port, None).await;
        // load: keys, hits, misses, an expiry, then evictions under a small maxmemory
        for i in 0..100 {
            let _: () = redis::cmd("SET")
                .arg(format!("k{i}"))
                .arg(i)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        for i in 0..30 {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("k{i}"))
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        for i in 0..7 {
            let _: Option<String> = redis::cmd("GET")
                .arg(format!("missing{i}"))
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg("short")
            .arg("v")
            .arg("PX")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _: Option<String> = redis::cmd("GET")
            .arg("short")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(2)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("other")
            .arg("db")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("SELECT")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("100mb")
            .query_async(&mut conn)
            .await
            .unwrap();

        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{}\n",
            server.port
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let info = server_info(&mut conn).await;
        let num = |k: &str| info[k].parse::<f64>().unwrap();
        let inst = format!("127.0.0.1:{}", server.port);
        let i = [("instance", inst.as_str())];
        assert_eq!(value(&out, "redis_up", &i), 1.0);
        assert_eq!(value(&out, "medic_redis_errors_total", &i), 0.0);
        assert!(value(&out, "medic_redis_ping_duration_seconds", &i) > 0.0);
        assert_eq!(
            value(&out, "redis_keyspace_hits_total", &i),
            num("keyspace_hits")
        );
        assert_eq!(value(&out, "redis_keyspace_hits_total", &i), 30.0);
        assert_eq!(
            value(&out, "redis_keyspace_misses_total", &i),
            num("keyspace_misses")
        );
        assert_eq!(value(&out, "redis_keyspace_misses_total", &i), 8.0);
        assert_eq!(
            value(&out, "redis_expired_keys_total", &i),
            num("expired_keys")
        );
        assert_eq!(value(&out, "redis_expired_keys_total", &i), 1.0);
        assert_eq!(
            value(&out, "redis_memory_max_bytes", &i),
            100.0 * 1024.0 * 1024.0
        );
        assert_eq!(value(&out, "redis_db_keys", &[("db", "db0")]), 100.0);
        assert_eq!(value(&out, "redis_db_keys", &[("db", "db2")]), 1.0);
        assert_eq!(
            value(&out, "redis_connected_clients", &i),
            num("connected_clients")
        );
        assert_eq!(value(&out, "redis_blocked_clients", &i), 0.0);
        // the server counts commands up to and including our INFO
        let processed = value(&out, "redis_commands_processed_total", &i);
        assert!(
            processed >= 112.0 && processed <= num("total_commands_processed"),
            "{processed}"
        );
        let used = value(&out, "redis_memory_used_bytes", &i);
        assert!(
            used > 0.0 && (used - num("used_memory")).abs() / used < 0.2,
            "{used}"
        );
        assert!(
            find(
                &out,
                "redis_instance_info",
                &[
                    ("redis_version", info["redis_version"].as_str()),
                    ("role", "master")
                ]
            )
            .is_some()
        );

        // evictions under memory pressure
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-lru")
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("2mb")
            .query_async(&mut conn)
            .await
            .unwrap();
        let big = "x".repeat(4096);
        for i in 0..2000 {
            let _: () = redis::cmd("SET")
                .arg(format!("big{i}"))
                .arg(&big)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let mut out = Vec::new();
        c.collect(2_000, &mut out).await.unwrap();
        let info = server_info(&mut conn).await;
        let evicted = value(&out, "redis_evicted_keys_total", &i);
        assert!(evicted > 0.0);
        assert_eq!(evicted, info["evicted_keys"].parse::<f64>().unwrap());
    })
    .await
}

#[tokio::test]
async fn redis_password_from_a_file_and_a_wrong_one() {
    guard(async {
        let server = support::redis(Some("s3cret-pw"));
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("redis.pass");
        std::fs::write(&pw, "s3cret-pw\n").unwrap();
        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{}\npassword: {{file: {}}}\n",
            server.port,
            pw.display()
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "redis_up", &[]), 1.0);

        // a wrong password is a down target, not a crash
        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{}\npassword: {{value: wrong}}\n",
            server.port
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "redis_up", &[]), 0.0);
        assert_eq!(value(&out, "medic_redis_errors_total", &[]), 1.0);

        // the config's Debug never shows an inline password
        let cfg: CollectorConfig =
            serde_saphyr::from_str("type: redis\npassword: {value: hunter2}\n").unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
    })
    .await
}

#[tokio::test]
async fn redis_password_from_env_logs_in() {
    guard(async {
        // an env var this process already has, so the environment is not changed
        let pw = std::env::var("HOME").expect("HOME is set");
        let server = support::redis(Some(&pw));
        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{}\npassword: {{env: HOME}}\n",
            server.port
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "redis_up", &[]), 1.0);
    })
    .await
}

#[tokio::test]
async fn redis_url_password_is_never_printed_and_warned_about() {
    let (logs, _guard) = capture_logs();
    let yaml = "type: redis\nurl: redis://monitor:hunter2@127.0.0.1:6379/0\n";
    let cfg: CollectorConfig = serde_saphyr::from_str(yaml).unwrap();
    let debug = format!("{cfg:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(
        debug.contains("redis://monitor:***@127.0.0.1:6379/0"),
        "{debug}"
    );
    cfg.build(&ctx("cache")).unwrap();
    let text = logs.text();
    assert!(text.contains("carries a password"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // a URL without one: no warning
    let (logs, _guard) = capture_logs();
    build("type: redis\nurl: redis://127.0.0.1:6379\n");
    assert!(!logs.text().contains("carries a password"));
}

#[tokio::test]
async fn redis_tls_trusts_a_private_ca() {
    guard(async {
        let dir = tempfile::tempdir().unwrap();
        let cert = core_support::self_signed(dir.path(), 30);
        let server = support::redis_tls(&cert.cert_pem, &cert.key_pem, &cert.ca_pem);
        let collect = |tls: &str| {
            // ca_file relative to the config file's folder
            let text = format!(
                "collectors:\n  cache:\n    type: redis\n    url: rediss://127.0.0.1:{}\n{tls}",
                server.port
            );
            let cfg = medic::config::Config::parse_str(&dir.path().join("medic.yaml"), &text)
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let c = cfg.collectors["cache"].build(&ctx("cache")).unwrap();
            async move {
                let mut out = Vec::new();
                c.collect(1_000, &mut out).await.unwrap();
                value(&out, "redis_up", &[])
            }
        };
        // the private CA is not in the system's store
        assert_eq!(collect("").await, 0.0);
        assert_eq!(collect("    tls: {ca_file: ca.pem}\n").await, 1.0);
        assert_eq!(
            collect("    tls: {insecure_skip_verify: true}\n").await,
            1.0
        );
        // a missing CA file or TLS settings on a plain URL are build errors
        let bad = |yaml: &str| {
            let cfg: CollectorConfig = serde_saphyr::from_str(yaml).unwrap();
            cfg.build(&ctx("cache"))
                .err()
                .unwrap_or_else(|| panic!("built: {yaml}"))
                .to_string()
        };
        let e = bad("type: redis\nurl: rediss://h:1\ntls: {ca_file: /nonexistent/ca.pem}\n");
        assert!(e.contains("tls.ca_file"), "{e}");
        let e = bad("type: redis\nurl: redis://h:1\ntls: {insecure_skip_verify: true}\n");
        assert!(e.contains("rediss://"), "{e}");
    })
    .await
}

#[tokio::test]
async fn redis_down_or_stalled_is_up_0_with_counted_errors() {
    guard(async {
        let mut server = support::redis(None);
        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{}\ninterval: 1s\ntimeout: 500ms\n",
            server.port
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "redis_up", &[]), 1.0);
        server.kill();
        for round in 1..=2 {
            let mut out = Vec::new();
            c.collect(2_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "redis_up", &[]), 0.0);
            assert_eq!(value(&out, "medic_redis_errors_total", &[]), round as f64);
            assert!(find(&out, "redis_keyspace_hits_total", &[]).is_none());
        }

        // a server that accepts and never answers is cut at the round budget
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let c = build(&format!(
            "type: redis\nurl: redis://127.0.0.1:{port}\ninterval: 1s\ntimeout: 300ms\n"
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "redis_up", &[]), 0.0);
        assert_eq!(value(&out, "medic_redis_errors_total", &[]), 1.0);
    })
    .await
}

// ---------------------------------------------------------------- memcached

#[tokio::test]
async fn memcached_values_match_the_server() {
    guard(async {
        let server = support::memcached(2);
        let port = server.port;
        // load in a blocking thread: sets, hits, misses, deletes, then enough to evict
        let before = tokio::task::spawn_blocking(move || {
            let mut m = support::Memc::connect(port);
            for i in 0..50 {
                m.set(&format!("k{i}"), "value");
            }
            for i in 0..20 {
                assert!(m.get(&format!("k{i}")));
            }
            for i in 0..5 {
                assert!(!m.get(&format!("missing{i}")));
            }
            assert!(m.delete("k0"));
            assert!(!m.delete("k0"));
            // one cas of each outcome: memcached counts them in cmd_set too
            let u = m.gets("k1");
            assert_eq!(m.cas("k1", "v2", u), "STORED");
            assert_eq!(m.cas("k1", "v3", u), "EXISTS");
            assert_eq!(m.cas("missing", "v", 1), "NOT_FOUND");
            let big = "v".repeat(50_000);
            for i in 0..200 {
                m.set(&format!("big{i}"), &big);
            }
            m
        })
        .await
        .unwrap();
        let c = build(&format!("type: memcached\naddress: 127.0.0.1:{port}\n"));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let mut m = before;
        let stats = tokio::task::spawn_blocking(move || m.stats())
            .await
            .unwrap();
        let num = |k: &str| stats[k].parse::<f64>().unwrap();
        let inst = format!("127.0.0.1:{port}");
        let i = [("instance", inst.as_str())];
        assert_eq!(value(&out, "memcached_up", &i), 1.0);
        assert_eq!(value(&out, "medic_memcached_errors_total", &i), 0.0);
        let cmd = |c: &str, s: &str| {
            value(
                &out,
                "memcached_commands_total",
                &[("command", c), ("status", s)],
            )
        };
        // 20 gets and the one `gets` before the cas
        assert_eq!(cmd("get", "hit"), 21.0);
        assert_eq!(cmd("get", "miss"), 5.0);
        // memcached_exporter's set/hit: cmd_set less every cas
        assert_eq!(num("cmd_set"), 253.0);
        assert_eq!(cmd("set", "hit"), 250.0);
        assert_eq!(cmd("cas", "hit"), 1.0);
        assert_eq!(cmd("cas", "badval"), 1.0);
        assert_eq!(cmd("cas", "miss"), 1.0);
        assert_eq!(cmd("delete", "hit"), 1.0);
        assert_eq!(cmd("delete", "miss"), 1.0);
        // only memcached_exporter's statuses: sum by (command) counts each command once
        let statuses: std::collections::BTreeSet<(String, String)> = out
            .iter()
            .filter(|s| s.labels.name() == Some("memcached_commands_total"))
            .map(|s| {
                let g = |k| s.labels.get(k).unwrap().to_string();
                (g("command"), g("status"))
            })
            .collect();
        for (c, st) in &statuses {
            assert!(
                matches!(st.as_str(), "hit" | "miss") || (c == "cas" && st == "badval"),
                "{c}/{st}"
            );
        }
        assert_eq!(
            value(&out, "medic_memcached_get_expired_total", &i),
            num("get_expired")
        );
        assert_eq!(
            value(&out, "memcached_limit_bytes", &i),
            2.0 * 1024.0 * 1024.0
        );
        assert_eq!(
            value(&out, "memcached_limit_bytes", &i),
            num("limit_maxbytes")
        );
        assert_eq!(value(&out, "memcached_current_bytes", &i), num("bytes"));
        assert_eq!(
            value(&out, "memcached_current_items", &i),
            num("curr_items")
        );
        let evicted = value(&out, "memcached_items_evicted_total", &i);
        assert!(evicted > 0.0);
        assert_eq!(evicted, num("evictions"));
        // our stats connection plus the load connection at least
        assert!(value(&out, "memcached_current_connections", &i) >= 2.0);
        assert!(
            find(
                &out,
                "memcached_version",
                &[("version", stats["version"].as_str())]
            )
            .is_some()
        );
    })
    .await
}

#[tokio::test]
async fn memcached_down_or_stalled_is_up_0_with_counted_errors() {
    guard(async {
        let mut server = support::memcached(2);
        let c = build(&format!(
            "type: memcached\naddress: 127.0.0.1:{}\ninterval: 1s\ntimeout: 300ms\n",
            server.port
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "memcached_up", &[]), 1.0);
        server.kill();
        for round in 1..=2 {
            let mut out = Vec::new();
            c.collect(2_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "memcached_up", &[]), 0.0);
            assert_eq!(
                value(&out, "medic_memcached_errors_total", &[]),
                round as f64
            );
        }
        // accepts, never answers: cut at the round budget
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        let c = build(&format!(
            "type: memcached\naddress: 127.0.0.1:{port}\ninterval: 1s\ntimeout: 300ms\n"
        ));
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "memcached_up", &[]), 0.0);
        assert_eq!(value(&out, "medic_memcached_errors_total", &[]), 1.0);
    })
    .await
}

#[tokio::test]
async fn memcached_error_reply_fails_the_round_at_once() {
    guard(async {
        let (logs, _guard) = capture_logs();
        // answers an error line and keeps the connection open, as memcached does
        for reply in [
            "SERVER_ERROR out of memory",
            "ERROR",
            "CLIENT_ERROR bad command",
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut held = Vec::new();
                while let Ok((mut sock, _)) = listener.accept().await {
                    let _ = sock.write_all(format!("{reply}\r\n").as_bytes()).await;
                    held.push(sock);
                }
            });
            // a long timeout: reaching it would log "timed out", not the reply
            let c = build(&format!(
                "type: memcached\naddress: 127.0.0.1:{port}\ninterval: 40s\ntimeout: 40s\n"
            ));
            let mut out = Vec::new();
            c.collect(1_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "memcached_up", &[]), 0.0);
            assert_eq!(value(&out, "medic_memcached_errors_total", &[]), 1.0);
            let text = logs.text();
            assert!(
                text.contains(&format!("unexpected reply: {reply}")),
                "{text}"
            );
            assert!(!text.contains("timed out"), "{text}");
        }
    })
    .await
}

#[test]
fn memcached_address_must_be_host_port() {
    for bad in ["localhost", "h:0", "h:99999", "::1:11211", "h:port"] {
        let cfg: CollectorConfig =
            serde_saphyr::from_str(&format!("type: memcached\naddress: \"{bad}\"\n")).unwrap();
        let e = cfg
            .build(&ctx("m"))
            .err()
            .unwrap_or_else(|| panic!("built {bad}"));
        assert!(e.to_string().contains("expected HOST:PORT"), "{e}");
    }
    build("type: memcached\naddress: \"[::1]:11211\"\n");
}

// ---------------------------------------------------------------- processes and units

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &std::path::Path, args: &[&str]) -> Child {
    Child(
        std::process::Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `ps`'s view of a process: (resident KiB, threads).
fn ps(pid: u32) -> (f64, f64) {
    let out = std::process::Command::new("ps")
        .args(["-o", "rss=,nlwp=", "-p", &pid.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Vec<f64> = text
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (v[0], v[1])
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn process_by_pidfile_matches_ps_and_counts_restarts() {
    guard(async {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("svc.pid");
        let started = now_s();
        let child = spawn("sleep".as_ref(), &["600"]);
        let pid = child.0.id();
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        let c = build(&format!(
            "type: process\npidfile: {}\nlabel: svc\n",
            pidfile.display()
        ));
        // let the child exec sleep and settle in its nanosleep (state S) before reading it:
        // while the loader still maps libraries, its RSS moves between our read and ps's
        eventually(|| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "sleep")
                && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('S')))
        })
        .await;
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let p = [("process", "svc")];
        assert_eq!(value(&out, "medic_process_up", &p), 1.0);
        assert_eq!(value(&out, "medic_process_count", &p), 1.0);
        let (rss_kib, threads) = ps(pid);
        assert_eq!(
            value(&out, "medic_process_resident_memory_bytes", &p),
            rss_kib * 1024.0
        );
        assert_eq!(value(&out, "medic_process_threads", &p), threads);
        // stdin, stdout, stderr at least
        assert!(value(&out, "medic_process_open_fds", &p) >= 3.0);
        let start = value(&out, "medic_process_start_time_seconds", &p);
        assert!(
            start >= started - 2.0 && start <= now_s() + 2.0,
            "{start} vs {started}"
        );
        assert!(value(&out, "medic_process_cpu_seconds_total", &[("mode", "user")]) >= 0.0);
        assert_eq!(value(&out, "medic_process_restarts_total", &p), 0.0);

        // the service restarts: a new PID in the pidfile
        drop(child);
        let child = spawn("sleep".as_ref(), &["600"]);
        std::fs::write(&pidfile, format!("{}\n", child.0.id())).unwrap();
        let mut out = Vec::new();
        c.collect(2_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "medic_process_up", &p), 1.0);
        assert_eq!(value(&out, "medic_process_restarts_total", &p), 1.0);

        // and dies
        drop(child);
        let mut out = Vec::new();
        c.collect(3_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "medic_process_up", &p), 0.0);
        assert_eq!(value(&out, "medic_process_restarts_total", &p), 1.0);
        assert!(find(&out, "medic_process_threads", &[]).is_none());
    })
    .await
}

#[tokio::test]
async fn process_by_name_and_by_cmdline() {
    guard(async {
        // a copy of sleep under a name no other process has
        let dir = tempfile::tempdir().unwrap();
        let name = format!("msleep{}", std::process::id());
        let exe = dir.path().join(&name);
        std::fs::copy(which("sleep"), &exe).unwrap();
        let _a = spawn(&exe, &["600"]);
        let _b = spawn(&exe, &["601"]);
        let c = build(&format!("type: process\nname: {name}\n"));
        let mut out = Vec::new();
        let mut tries = 0;
        loop {
            out.clear();
            c.collect(1_000, &mut out).await.unwrap();
            if value(&out, "medic_process_count", &[]) == 2.0 || tries > 200 {
                break;
            }
            tries += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(value(&out, "medic_process_count", &[]), 2.0);
        assert_eq!(value(&out, "medic_process_threads", &[]), 2.0);
        assert_eq!(
            find(&out, "medic_process_up", &[])
                .unwrap()
                .labels
                .get("process"),
            Some("cache")
        );

        let marker = format!("{}.25", 600 + std::process::id() % 1000);
        let _c = spawn("sleep".as_ref(), &[&marker]);
        let c = build(&format!(
            "type: process\ncmdline: '^sleep {}$'\n",
            marker.replace('.', "\\.")
        ));
        let mut tries = 0;
        loop {
            out.clear();
            c.collect(1_000, &mut out).await.unwrap();
            if value(&out, "medic_process_count", &[]) == 1.0 || tries > 200 {
                break;
            }
            tries += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(value(&out, "medic_process_count", &[]), 1.0);

        // exactly one selector
        let cfg: CollectorConfig =
            serde_saphyr::from_str("type: process\nname: a\npidfile: /x\n").unwrap();
        let err = cfg.build(&ctx("p")).err().unwrap();
        assert!(err.message.contains("exactly one"), "{err}");
        let cfg: CollectorConfig =
            serde_saphyr::from_str("type: process\nsystemd_unit: '--help'\n").unwrap();
        assert!(cfg.build(&ctx("p")).is_err());
    })
    .await
}

fn which(program: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} not on PATH"))
}

#[tokio::test]
async fn systemd_unit_state_or_a_clear_not_available() {
    guard(async {
        // this host's real systemctl: systemd may or may not be running as PID 1
        let c = build("type: process\nsystemd_unit: medic-test-no-such.service\ntimeout: 5s\ninterval: 10s\n");
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let systemd_running = std::path::Path::new("/run/systemd/system").exists();
        assert_eq!(
            value(&out, "medic_systemd_available", &[]),
            if systemd_running { 1.0 } else { 0.0 }
        );
        assert_eq!(value(&out, "medic_process_up", &[]), 0.0);
        if systemd_running {
            assert_eq!(value(&out, "node_systemd_unit_state", &[("state", "inactive")]), 1.0);
        } else {
            assert!(find(&out, "node_systemd_unit_state", &[]).is_none());
        }

        // a systemctl that answers for a running unit whose MainPID is our child, named by a
        // path relative to the config file; it hangs while the file `hang` exists
        let dir = tempfile::tempdir().unwrap();
        let child = spawn("sleep".as_ref(), &["600"]);
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let fake = dir.path().join("bin/systemctl");
        let hang = dir.path().join("hang");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\n[ -e '{}' ] && exec sleep 600\n[ \"$1 $2 $3\" = 'show --property=LoadState,ActiveState,SubState,NRestarts,MainPID --' ] || exit 1\ncase \"$4\" in\n  inference.service) printf 'LoadState=loaded\\nActiveState=active\\nSubState=running\\nNRestarts=2\\nMainPID={}\\n' ;;\n  *) printf 'LoadState=not-found\\nActiveState=inactive\\nSubState=dead\\nNRestarts=0\\nMainPID=0\\n' ;;\nesac\n",
                hang.display(),
                child.0.id()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let unit_collector = |unit: &str| {
            let text = format!(
                "collectors:\n  u:\n    type: process\n    systemd_unit: {unit}\n    systemctl: bin/systemctl\n    timeout: 4s\n    interval: 4s\n"
            );
            let cfg = medic::config::Config::parse_str(&dir.path().join("medic.yaml"), &text).unwrap();
            cfg.collectors["u"].build(&ctx("u")).unwrap()
        };
        let c = unit_collector("inference.service");
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        let n = [("name", "inference.service")];
        assert_eq!(value(&out, "medic_systemd_available", &[]), 1.0);
        assert_eq!(value(&out, "node_systemd_unit_state", &[("name", "inference.service"), ("state", "active")]), 1.0);
        assert_eq!(value(&out, "node_systemd_unit_state", &[("name", "inference.service"), ("state", "failed")]), 0.0);
        assert_eq!(value(&out, "node_systemd_service_restart_total", &n), 2.0);
        assert!(find(&out, "medic_systemd_unit_info", &[("sub_state", "running"), ("load_state", "loaded")]).is_some());
        assert_eq!(value(&out, "medic_process_up", &[]), 1.0);
        assert_eq!(value(&out, "medic_process_threads", &[]), 1.0);
        assert_eq!(value(&out, "medic_systemd_errors_total", &[]), 0.0);

        // systemctl hangs: cut at the round budget, counted as an error; systemd is still
        // known to be there, and the last MainPID is still read
        let (logs, _guard) = capture_logs();
        std::fs::write(&hang, "").unwrap();
        for round in 1..=2 {
            let mut out = Vec::new();
            c.collect(2_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "medic_systemd_available", &[]), 1.0);
            assert_eq!(value(&out, "medic_systemd_errors_total", &[]), round as f64);
            assert!(find(&out, "node_systemd_unit_state", &[]).is_none());
            assert_eq!(value(&out, "medic_process_up", &[]), 1.0);
        }
        std::fs::remove_file(&hang).unwrap();
        let mut out = Vec::new();
        c.collect(3_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "node_systemd_unit_state", &[("name", "inference.service"), ("state", "active")]), 1.0);
        let text = logs.text();
        assert_eq!(text.matches("systemctl down: systemctl timed out").count(), 1, "{text}");
        assert_eq!(text.matches("systemctl is up again").count(), 1, "{text}");

        // a unit systemd does not know: said once, and shown in medic_systemd_unit_info
        let (logs, _guard) = capture_logs();
        let c = unit_collector("inferense.service");
        for _ in 0..2 {
            let mut out = Vec::new();
            c.collect(1_000, &mut out).await.unwrap();
            assert!(find(&out, "medic_systemd_unit_info", &[("name", "inferense.service"), ("load_state", "not-found")]).is_some());
            assert_eq!(value(&out, "medic_process_up", &[]), 0.0);
        }
        let text = logs.text();
        assert_eq!(text.matches("not found (LoadState=not-found)").count(), 1, "{text}");
    })
    .await
}

// ---------------------------------------------------------------- GPU

use medic::collect::Schedule;
use medic::collect::gpu::{GpuBackend, GpuCollector, GpuConfig, GpuDevice, GpuError, GpuIdentity};

/// A GPU that exists only here (this host has none); readings in NVML's units.
#[derive(Clone)]
struct FakeGpu {
    index: u32,
    ecc: bool,
}

impl GpuDevice for FakeGpu {
    fn identity(&self) -> Result<GpuIdentity, GpuError> {
        Ok(GpuIdentity {
            index: self.index,
            uuid: format!("GPU-fake-{}", self.index),
            model: "NVIDIA H100 80GB HBM3".to_string(),
            pci_bus_id: format!("00000000:0{}:00.0", self.index + 1),
        })
    }
    fn utilization(&self) -> Result<(u32, u32), GpuError> {
        Ok((87, 41))
    }
    fn memory(&self) -> Result<(u64, u64), GpuError> {
        Ok((
            30 * 1024 * 1024 * 1024 + 512 * 1024,
            50 * 1024 * 1024 * 1024,
        ))
    }
    fn temperature_c(&self) -> Result<u32, GpuError> {
        Ok(71)
    }
    fn power_mw(&self) -> Result<u32, GpuError> {
        Ok(312_500)
    }
    fn sm_clock_mhz(&self) -> Result<u32, GpuError> {
        Ok(1980)
    }
    fn mem_clock_mhz(&self) -> Result<u32, GpuError> {
        Ok(2619)
    }
    fn ecc_volatile(&self) -> Result<(u64, u64), GpuError> {
        if self.ecc {
            Ok((3, 1))
        } else {
            Err(GpuError::NotSupported)
        }
    }
    fn throttle_reasons(&self) -> Result<u64, GpuError> {
        Ok(0x4)
    }
    fn processes(&self) -> Result<Vec<(u32, u64)>, GpuError> {
        Ok(vec![(4242, 20 * 1024 * 1024 * 1024)])
    }
}

/// A host's GPUs, with the failures a real one can have: a GPU fallen off the bus, a GPU
/// that cannot report XIDs, and NVML hanging.
#[derive(Default)]
struct FakeBackend {
    gpus: Vec<FakeGpu>,
    /// `device(i)` fails for these.
    lost: std::sync::Mutex<std::collections::HashSet<u32>>,
    /// `watch_xids(i)` fails for these.
    no_xid: std::collections::HashSet<u32>,
    /// XID events waiting to be drained.
    events: std::sync::Mutex<Vec<(String, u64)>>,
    /// While set, the next `device_count` blocks until the sender is dropped.
    hang: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    /// `device_count` calls begun.
    calls: std::sync::atomic::AtomicUsize,
}

impl FakeBackend {
    fn new(n: u32) -> Self {
        FakeBackend {
            gpus: (0..n)
                .map(|index| FakeGpu {
                    index,
                    ecc: index == 0,
                })
                .collect(),
            ..Default::default()
        }
    }
}

impl GpuBackend for FakeBackend {
    fn device_count(&self) -> Result<u32, GpuError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let hang = self.hang.lock().unwrap().take();
        if let Some(rx) = hang {
            let _ = rx.recv();
        }
        Ok(self.gpus.len() as u32)
    }
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>, GpuError> {
        if self.lost.lock().unwrap().contains(&index) {
            return Err(GpuError::Failed("GPU is lost".into()));
        }
        Ok(Box::new(self.gpus[index as usize].clone()))
    }
    fn watch_xids(&self, index: u32) -> Result<(), GpuError> {
        if self.no_xid.contains(&index) {
            Err(GpuError::Failed("registration refused".into()))
        } else {
            Ok(())
        }
    }
    fn xid_events(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn fake_collector(backend: Arc<FakeBackend>, timeout: Duration) -> GpuCollector {
    GpuCollector::new(
        "gpu",
        Schedule {
            interval: timeout,
            timeout,
        },
        &gpu_cfg(),
        Box::new(move || Ok(backend.clone() as Arc<dyn GpuBackend>)),
    )
}

thread_local! {
    /// Where this thread's log lines go, while a test captures them.
    static CAPTURE: std::cell::RefCell<Option<LogBuf>> = const { std::cell::RefCell::new(None) };
}

/// Writes a log line to the capture of the thread that logs it, if any.
struct ThreadWriter;

impl std::io::Write for ThreadWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(l) = &*c.borrow() {
                l.0.lock().unwrap().extend_from_slice(b);
            }
        });
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends a capture when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| *c.borrow_mut() = None);
    }
}

/// Captures the log lines this thread writes (tokio tests run on their one thread). One
/// global subscriber routes each line to its thread's capture: per-test `set_default`
/// subscribers race in tracing's global level cache when tests run in parallel.
fn capture_logs() -> (LogBuf, CaptureGuard) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
    let logs = LogBuf::default();
    CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
    (logs, CaptureGuard)
}

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn gpu_cfg() -> GpuConfig {
    serde_saphyr::from_str("hostname: gpu-box\n").unwrap()
}

#[tokio::test]
async fn gpu_readings_map_to_dcgm_names_units_and_labels() {
    let backend = Arc::new(FakeBackend::new(2));
    backend
        .events
        .lock()
        .unwrap()
        .push(("GPU-fake-1".to_string(), 79));
    let c = fake_collector(backend, Duration::from_secs(1));
    let mut out = Vec::new();
    c.collect(1_000, &mut out).await.unwrap();
    assert_eq!(value(&out, "medic_gpu_up", &[("Hostname", "gpu-box")]), 1.0);
    assert_eq!(value(&out, "medic_gpu_count", &[]), 2.0);
    let g0 = [("gpu", "0"), ("UUID", "GPU-fake-0")];
    let s = find(&out, "DCGM_FI_DEV_GPU_UTIL", &g0).unwrap();
    assert_eq!(s.value, 87.0);
    assert_eq!(s.labels.get("modelName"), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(s.labels.get("pci_bus_id"), Some("00000000:01:00.0"));
    assert_eq!(s.labels.get("Hostname"), Some("gpu-box"));
    assert_eq!(s.labels.get("device"), Some("nvidia0"));
    assert_eq!(value(&out, "DCGM_FI_DEV_MEM_COPY_UTIL", &g0), 41.0);
    // framebuffer in MiB, power in W
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_USED", &g0), 30.0 * 1024.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_FB_FREE", &g0), 50.0 * 1024.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_POWER_USAGE", &g0), 312.5);
    assert_eq!(value(&out, "DCGM_FI_DEV_GPU_TEMP", &g0), 71.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_SM_CLOCK", &g0), 1980.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_MEM_CLOCK", &g0), 2619.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", &g0), 3.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", &g0), 1.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", &g0), 4.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", &g0), 0.0);
    assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "1")]), 79.0);
    assert_eq!(value(&out, "medic_gpu_xid_errors_total", &g0), 0.0);
    assert_eq!(
        value(&out, "medic_gpu_xid_errors_total", &[("gpu", "1")]),
        1.0
    );
    for gpu in ["0", "1"] {
        assert_eq!(value(&out, "medic_gpu_device_up", &[("gpu", gpu)]), 1.0);
    }
    // a reading the GPU does not support is left out, not zero
    assert!(find(&out, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", &[("gpu", "1")]).is_none());
    assert_eq!(
        value(
            &out,
            "medic_gpu_process_memory_used_bytes",
            &[("gpu", "1"), ("pid", "4242")]
        ),
        20.0 * 1024.0 * 1024.0 * 1024.0
    );
}

/// The log lines of one capture (see [`capture_logs`]).
#[derive(Clone, Default)]
struct LogBuf(Arc<std::sync::Mutex<Vec<u8>>>);

#[tokio::test]
async fn gpu_one_lost_gpu_or_xid_failure_spares_the_others() {
    let (logs, _guard) = capture_logs();
    let mut backend = FakeBackend::new(3);
    backend.no_xid.insert(1);
    backend.lost.lock().unwrap().insert(2);
    backend.events.lock().unwrap().extend([
        ("GPU-fake-0".to_string(), 13),
        ("GPU-fake-0".to_string(), 13),
    ]);
    let backend = Arc::new(backend);
    let c = fake_collector(backend.clone(), Duration::from_secs(10));
    for _ in 0..2 {
        let mut out = Vec::new();
        c.collect(1_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "medic_gpu_up", &[]), 1.0);
        assert_eq!(value(&out, "medic_gpu_count", &[]), 3.0);
        // GPU 0: everything, its repeated XID counted twice
        assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", &[("gpu", "0")]), 87.0);
        assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "0")]), 13.0);
        assert_eq!(
            value(&out, "medic_gpu_xid_errors_total", &[("gpu", "0")]),
            2.0
        );
        // GPU 1: read, but its XIDs cannot be watched: left out, not a false 0
        assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", &[("gpu", "1")]), 87.0);
        assert!(find(&out, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "1")]).is_none());
        assert!(find(&out, "medic_gpu_xid_errors_total", &[("gpu", "1")]).is_none());
        // GPU 2: lost; only its medic_gpu_device_up 0
        assert!(
            out.iter().all(|s| s.labels.get("gpu") != Some("2")
                || s.labels.name() == Some("medic_gpu_device_up"))
        );
        assert_eq!(value(&out, "medic_gpu_device_up", &[("gpu", "2")]), 0.0);
        assert_eq!(value(&out, "medic_gpu_device_up", &[("gpu", "1")]), 1.0);
    }
    backend.lost.lock().unwrap().clear();
    for _ in 0..2 {
        let mut out = Vec::new();
        c.collect(2_000, &mut out).await.unwrap();
        assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", &[("gpu", "2")]), 87.0);
        assert_eq!(value(&out, "DCGM_FI_DEV_XID_ERRORS", &[("gpu", "2")]), 0.0);
        assert_eq!(value(&out, "medic_gpu_device_up", &[("gpu", "2")]), 1.0);
    }
    let text = logs.text();
    // each said once, not every round
    assert_eq!(text.matches("GPU 2 cannot be read").count(), 1, "{text}");
    assert_eq!(text.matches("GPU 2 can be read again").count(), 1, "{text}");
    assert_eq!(
        text.matches("XID errors cannot be watched").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains("GPU 1 (GPU-fake-1): XID errors cannot be watched"),
        "{text}"
    );
}

#[tokio::test]
async fn gpu_hung_nvml_stacks_no_threads_and_says_so_once() {
    guard(async {
        let (logs, _guard) = capture_logs();
        let backend = Arc::new(FakeBackend::new(1));
        let (release, rx) = std::sync::mpsc::channel();
        *backend.hang.lock().unwrap() = Some(rx);
        let c = fake_collector(backend.clone(), Duration::from_millis(200));
        for _ in 0..3 {
            let mut out = Vec::new();
            c.collect(1_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "medic_gpu_up", &[]), 0.0);
            assert_eq!(out.len(), 1, "{out:#?}");
        }
        // the hung call is still the only one: later rounds started no new thread
        assert_eq!(backend.calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        drop(release);
        loop {
            let mut out = Vec::new();
            c.collect(2_000, &mut out).await.unwrap();
            if value(&out, "medic_gpu_up", &[]) == 1.0 {
                assert_eq!(value(&out, "DCGM_FI_DEV_GPU_UTIL", &[("gpu", "0")]), 87.0);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let text = logs.text();
        assert_eq!(text.matches("GPU reading down").count(), 1, "{text}");
        assert!(text.contains("timed out"), "{text}");
        assert_eq!(text.matches("GPU reading is up again").count(), 1, "{text}");
    })
    .await
}

#[tokio::test]
async fn gpu_hung_nvml_init_runs_off_the_runtime_once() {
    guard(async {
        let (release, rx) = std::sync::mpsc::channel::<()>();
        let rx = std::sync::Mutex::new(rx);
        let opens = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n = opens.clone();
        let c = GpuCollector::new(
            "gpu",
            Schedule {
                interval: Duration::from_millis(200),
                timeout: Duration::from_millis(200),
            },
            &gpu_cfg(),
            Box::new(move || {
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = rx.lock().unwrap().recv();
                Ok(Arc::new(FakeBackend::new(1)) as Arc<dyn GpuBackend>)
            }),
        );
        for _ in 0..3 {
            let mut out = Vec::new();
            // returns although NVML's init hangs: it is not on this thread
            c.collect(1_000, &mut out).await.unwrap();
            assert_eq!(value(&out, "medic_gpu_up", &[]), 0.0);
        }
        assert_eq!(opens.load(std::sync::atomic::Ordering::SeqCst), 1);
        drop(release);
        loop {
            let mut out = Vec::new();
            c.collect(2_000, &mut out).await.unwrap();
            if value(&out, "medic_gpu_up", &[]) == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(opens.load(std::sync::atomic::Ordering::SeqCst), 1);
    })
    .await
}

#[tokio::test]
async fn gpu_real_nvml_path_degrades_cleanly_and_says_so_once() {
    let (logs, _guard) = capture_logs();
    // the real backend, exactly as `type: gpu` builds it
    let cfg: CollectorConfig = serde_saphyr::from_str("type: gpu\n").unwrap();
    let c = cfg.build(&ctx("gpu")).unwrap();
    let mut off_rounds = 0;
    for round in 0..3 {
        let mut out = Vec::new();
        c.collect(1_000 + round, &mut out).await.unwrap();
        if value(&out, "medic_gpu_up", &[]) == 0.0 {
            // no driver (or NVML refuses us): nothing but medic_gpu_up 0
            assert_eq!(out.len(), 1, "{out:#?}");
            off_rounds += 1;
        } else {
            assert!(value(&out, "medic_gpu_count", &[]) >= 0.0);
        }
    }
    let text = logs.text();
    if off_rounds > 0 {
        // said once, not on every round
        assert_eq!(text.matches("GPU collection off").count(), 1, "{text}");
        if !std::path::Path::new("/proc/driver/nvidia").exists() {
            assert!(text.contains("NVIDIA driver"), "{text}");
        }
    } else {
        assert_eq!(text.matches("GPU collection off").count(), 0, "{text}");
    }
}

// ---------------------------------------------------------------- docs

/// Every YAML example in the README's collectors-ai section is a valid config.
#[test]
fn readme_examples_parse() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- section: collectors-ai -->").unwrap();
    let end = start
        + readme[start..]
            .find("\n### ")
            .unwrap_or(readme.len() - start);
    let section = &readme[start..end];
    let mut n = 0;
    for block in section.split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").unwrap()];
        let cfg: Result<medic::config::Config, _> = serde_saphyr::from_str(yaml);
        let cfg = cfg.unwrap_or_else(|e| panic!("README example does not parse: {e}\n{yaml}"));
        // and builds: every option it shows is accepted by its collector, except that the
        // secrets and the CA file the examples name are not on this machine
        if let Err(errs) = cfg.build_collectors(&[]) {
            let real: Vec<_> = errs
                .iter()
                .filter(|e| {
                    !["password: ", "bearer_token: ", "tls.ca_file "]
                        .iter()
                        .any(|f| e.message.starts_with(f))
                })
                .collect();
            assert!(
                real.is_empty(),
                "README example does not build: {real:?}\n{yaml}"
            );
        }
        n += 1;
    }
    assert_eq!(n, 5);
}

// ---------------------------------------------------------------- rule packs

/// Runs a command to its end (with a deadline, so a stuck child fails the test).
fn run_to_end(cmd: &mut std::process::Command) -> std::process::Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn said(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// `yaml` without its `remediate:` blocks (medic's addition, unknown to Prometheus).
fn without_remediate(yaml: &str) -> String {
    let mut out = String::new();
    let mut skip_deeper_than: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(d) = skip_deeper_than {
            if line.trim().is_empty() || indent > d {
                continue;
            }
            skip_deeper_than = None;
        }
        if line.trim_start().starts_with("remediate:") {
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[test]
fn shipped_rule_packs_pass_medic_check_and_promtool() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let mut packs: Vec<_> = std::fs::read_dir(&rules)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    packs.sort();
    assert!(packs.len() >= 4, "{packs:?}");
    let dir = tempfile::tempdir().unwrap();
    for pack in &packs {
        let o = run_to_end(
            std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
                .arg("check")
                .arg(pack),
        );
        assert!(
            o.status.success(),
            "medic check {}:\n{}",
            pack.display(),
            said(&o)
        );
        // Prometheus reads the same file once medic's `remediate:` entries are taken out
        let text = std::fs::read_to_string(pack).unwrap();
        let plain = dir.path().join(pack.file_name().unwrap());
        std::fs::write(&plain, without_remediate(&text)).unwrap();
        let o = run_to_end(
            std::process::Command::new("promtool")
                .args(["check", "rules"])
                .arg(&plain),
        );
        assert!(
            o.status.success(),
            "promtool check rules {}:\n{}",
            pack.display(),
            said(&o)
        );
    }
}

/// GpuXidError says which XID (not how many changes) and fires again on a repeat of the
/// same XID; medic and promtool agree.
#[test]
fn gpu_xid_rule_names_the_xid_and_fires_on_repeats() {
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/gpu.yaml");
    let labels =
        r#"gpu="0",UUID="GPU-a",device="nvidia0",modelName="H100",pci_bus_id="p",Hostname="h""#;
    let alert = |at: &str| {
        format!(
            "      - eval_time: {at}\n        alertname: GpuXidError\n        exp_alerts:\n          - exp_labels: {{severity: critical, gpu: \"0\", UUID: GPU-a, device: nvidia0, modelName: H100, pci_bus_id: p, Hostname: h}}\n            exp_annotations: {{summary: \"GPU 0 (GPU-a) on h reported XID 79\"}}\n"
        )
    };
    let test = format!(
        "rule_files: [{}]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'DCGM_FI_DEV_XID_ERRORS{{{labels}}}'\n        values: '0 0 79x40'\n      - series: 'medic_gpu_xid_errors_total{{{labels}}}'\n        values: '0 0 1x17 2x22'\n    alert_rule_test:\n{}      - eval_time: 19m\n        alertname: GpuXidError\n        exp_alerts: []\n{}",
        rules.display(),
        alert("5m"),
        // the same XID again at 20m
        alert("22m"),
    );
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("xid_test.yaml");
    std::fs::write(&f, &test).unwrap();
    let o = run_to_end(
        std::process::Command::new("promtool")
            .args(["test", "rules"])
            .arg(&f),
    );
    assert!(o.status.success(), "promtool:\n{}\n{test}", said(&o));
    let o = run_to_end(
        std::process::Command::new(env!("CARGO_BIN_EXE_medic"))
            .arg("test")
            .arg(&f),
    );
    assert!(o.status.success(), "medic test:\n{}\n{test}", said(&o));
}
