//! Scrape parser throughput on a 10,000-series exposition (goal: >= 5 million samples/s),
//! and the full ingest path (parse + cached label sets) of the scrape collector.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medic::collect::BuildContext;
use medic::collect::exposition::{self, Format, ParseError};
use medic::collect::scrape::{ScrapeCollector, ScrapeConfig};

/// An inference server's exposition: 10,000 series of counters, gauges and histograms.
fn exposition_10k() -> (String, usize) {
    let mut s = String::new();
    let mut n = 0;
    s.push_str("# HELP requests_total Requests.\n# TYPE requests_total counter\n");
    for i in 0..4000 {
        s.push_str(&format!(
            "requests_total{{model=\"model-{}\",route=\"/v1/completions\",code=\"{}\"}} {}\n",
            i / 4,
            200 + (i % 4),
            i * 17
        ));
        n += 1;
    }
    s.push_str("# TYPE queue_depth gauge\n");
    for i in 0..2000 {
        s.push_str(&format!(
            "queue_depth{{worker=\"w{i}\",pool=\"gpu\"}} {}.5\n",
            i % 50
        ));
        n += 1;
    }
    s.push_str("# TYPE latency_seconds histogram\n");
    for m in 0..400 {
        for le in ["0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "+Inf"] {
            s.push_str(&format!(
                "latency_seconds_bucket{{model=\"model-{m}\",le=\"{le}\"}} {}\n",
                m * 3
            ));
            n += 1;
        }
        s.push_str(&format!(
            "latency_seconds_sum{{model=\"model-{m}\"}} 1234.5\n"
        ));
        s.push_str(&format!(
            "latency_seconds_count{{model=\"model-{m}\"}} 9876\n"
        ));
        n += 2;
    }
    (s, n)
}

fn bench(c: &mut Criterion) {
    let (body, n) = exposition_10k();
    assert_eq!(n, 10_000);
    let mut g = c.benchmark_group("scrape");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("parse_10k_series", |b| {
        b.iter(|| {
            let mut sum = 0.0;
            let stats = exposition::parse::<ParseError, _>(&body, Format::Prometheus, |s| {
                sum += s.value;
                Ok(())
            })
            .unwrap();
            assert_eq!(stats.samples, n);
            std::hint::black_box(sum)
        })
    });
    let cfg: ScrapeConfig = serde_saphyr::from_str("url: http://127.0.0.1:1/metrics\n").unwrap();
    let ctx = BuildContext::new("bench");
    let collector = ScrapeCollector::new(&cfg, &ctx).unwrap();
    let mut out = Vec::with_capacity(n);
    g.bench_function("ingest_10k_series_cached_labels", |b| {
        b.iter(|| {
            out.clear();
            let got = collector
                .ingest_body(&body, Format::Prometheus, 1, &mut out)
                .unwrap();
            assert_eq!(got, n);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
