//! Integration tests of the AI-workload collectors against real servers on loopback:
//! an HTTP metrics target (axum), redis-server, memcached, and this test's own child processes.

#[path = "support/collectors.rs"]
mod support;

use std::time::Duration;

use medic::collect::Collector;
use medic::collect::scrape::ScrapeConfig;
use medic::config::GlobalConfig;
use medic::store::{Sample, is_stale};

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

fn scrape(yaml: &str) -> medic::collect::scrape::ScrapeCollector {
    let cfg: ScrapeConfig = serde_saphyr::from_str(yaml).unwrap();
    cfg.build("inference", &GlobalConfig::default()).unwrap()
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
async fn scrape_marks_vanished_series_stale() {
    guard(async {
        let t = start_target().await;
        let c = scrape(&format!("url: http://{}/changing\n", t.addr));
        let mut out = Vec::new();
        c.collect(1000, &mut out).await.unwrap();
        assert_eq!(value(&out, "a", &[]), 1.0);
        *t.changing.lock().unwrap() = "a 3\n".to_string();
        let mut out = Vec::new();
        c.collect(2000, &mut out).await.unwrap();
        assert_eq!(value(&out, "a", &[]), 3.0);
        let b = find(&out, "b", &[]).unwrap();
        assert!(is_stale(b.value) && b.timestamp_ms == 2000);
        // a failed scrape ends every series
        *t.changing.lock().unwrap() = "a{ 1\n".to_string();
        let mut out = Vec::new();
        c.collect(3000, &mut out).await.unwrap();
        assert!(is_stale(value(&out, "a", &[])));
        assert!(find(&out, "b", &[]).is_none());
        // samples go into a real store and read back
        let store = medic::store::Store::default();
        store.append_batch(&out);
        assert!(store.series_count() >= 4);
    })
    .await
}
