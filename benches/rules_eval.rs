//! One full rule-evaluation round: 1,000 alerting rules (ratios of rates, `avg by`,
//! `histogram_quantile`, `*_over_time`, comparisons) in 10 groups over 10,000 series holding
//! 10 minutes of 1 s samples, alert state machine and `ALERTS` writes included.
//! Goal: under 20 ms per round.
//!
//! Setup prints the store's ingest throughput (samples/s, one `append_batch` of 10,000
//! samples per second of data, as a collection round writes them) and its memory per
//! series (measured by a counting allocator; the store's own estimate beside it), with
//! the retention the rules need.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use medic::rules::file::{parse_rule_file, retention_needed_ms};
use medic::rules::{GroupOptions, RuleGroup};
use medic::store::{Labels, Sample, Store};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

const JOBS: usize = 20;
const RACKS: usize = 20;
const SECONDS: i64 = 600;

/// A series' value at second `t`.
type ValueAt = Box<dyn Fn(i64) -> f64>;

/// 10,000 series: 1,000 request counters, 5,000 histogram buckets, 2,000 GPU gauges,
/// 500 queue depths, 500 load averages, 1,000 cache counters.
fn series() -> Vec<(Labels, ValueAt)> {
    let mut out: Vec<(Labels, ValueAt)> = Vec::new();
    for j in 0..JOBS {
        for i in 0..25 {
            let inst = format!("j{j}-{i}");
            for (code, per_s) in [("200", 50.0), ("500", 1.0 + (i % 7) as f64)] {
                let l = Labels::new([
                    ("__name__", "http_requests_total"),
                    ("job", &format!("job{j}")),
                    ("instance", &inst),
                    ("code", code),
                ]);
                out.push((l, Box::new(move |t| per_s * t as f64)));
            }
            let les = [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
            ];
            for (k, le) in les.iter().enumerate() {
                let l = Labels::new([
                    ("__name__", "http_request_duration_seconds_bucket"),
                    ("job", &format!("job{j}")),
                    ("instance", &inst),
                    ("le", le),
                ]);
                let frac = (k as f64 + 1.0) / les.len() as f64;
                out.push((l, Box::new(move |t| (10.0 * frac * t as f64).floor())));
            }
            let l = Labels::new([
                ("__name__", "queue_depth"),
                ("job", &format!("job{j}")),
                ("instance", &inst),
            ]);
            out.push((l, Box::new(move |t| ((t * 7 + i as i64 * 13) % 150) as f64)));
        }
    }
    for h in 0..250i64 {
        let rack = format!("r{}", h % RACKS as i64);
        let inst = format!("h{h}");
        for g in 0..8i64 {
            let l = Labels::new([
                ("__name__", "gpu_utilization"),
                ("instance", inst.as_str()),
                ("rack", rack.as_str()),
                ("gpu", &g.to_string()),
            ]);
            out.push((l, Box::new(move |t| 60.0 + ((t + h * 3 + g) % 40) as f64)));
        }
    }
    for h in 0..500 {
        let rack = format!("r{}", h % RACKS);
        let inst = format!("n{h}");
        for (name, f) in [
            ("node_load1", 0.0),
            ("cache_hits_total", 100.0),
            ("cache_misses_total", 10.0 + (h % 30) as f64),
        ] {
            let l = Labels::new([
                ("__name__", name),
                ("instance", inst.as_str()),
                ("rack", rack.as_str()),
            ]);
            let h = h as f64;
            out.push((
                l,
                Box::new(move |t| {
                    if f == 0.0 {
                        (h % 8.0) + (t % 60) as f64 / 60.0
                    } else {
                        f * t as f64
                    }
                }),
            ));
        }
    }
    assert_eq!(out.len(), 10_000);
    out
}

/// 1,000 alerting rules in 10 groups of 100, five kinds in equal parts.
fn rules_yaml() -> String {
    let mut y = String::from("groups:\n");
    for g in 0..10 {
        let _ = writeln!(y, "- name: g{g}\n  interval: 15s\n  rules:");
        for r in 0..100 {
            let n = g * 100 + r;
            let j = n % JOBS;
            let k = n % RACKS;
            let th = (n / 20) as f64; // varies so that a minority of the rules fire
            let expr = match n % 5 {
                0 => format!(
                    "sum by (instance) (rate(http_requests_total{{job=\"job{j}\",code=\"500\"}}[5m])) / sum by (instance) (rate(http_requests_total{{job=\"job{j}\"}}[5m])) > {}",
                    0.1 + th / 500.0
                ),
                1 => format!(
                    "histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{job=\"job{j}\"}}[5m]))) > {}",
                    2.0 + th / 50.0
                ),
                2 => format!(
                    "avg by (instance) (gpu_utilization{{rack=\"r{k}\"}}) > {}",
                    90.0 + th / 5.0
                ),
                3 => format!(
                    "max_over_time(queue_depth{{job=\"job{j}\"}}[5m]) > {} or avg_over_time(node_load1{{rack=\"r{k}\"}}[10m]) > {}",
                    140.0 + th,
                    7.0 + th / 10.0
                ),
                _ => format!(
                    "rate(cache_misses_total{{rack=\"r{k}\"}}[5m]) / (rate(cache_hits_total{{rack=\"r{k}\"}}[5m]) + rate(cache_misses_total{{rack=\"r{k}\"}}[5m])) > {}",
                    0.25 + th / 100.0
                ),
            };
            let _ = writeln!(
                y,
                "  - alert: A{n}\n    expr: '{expr}'\n    for: 1m\n    labels: {{severity: warning}}\n    annotations: {{summary: '{{{{ $labels.instance }}}} at {{{{ humanize $value }}}}'}}"
            );
        }
    }
    y
}

fn setup() -> (Store, Vec<RuleGroup>, i64) {
    let groups = parse_rule_file(
        Path::new("bench.yaml"),
        &rules_yaml(),
        &GroupOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // What the rules read: the longest range (10m) + the 5m lookback.
    let retention_ms = retention_needed_ms(&groups);
    let before = counting_alloc::live();
    let store = Store::new(retention_ms);
    let series = series();
    let mut ingest = Duration::ZERO;
    for t in 0..=SECONDS {
        let batch: Vec<Sample> = series
            .iter()
            .map(|(l, f)| Sample::new(l.clone(), t * 1000, f(t)))
            .collect();
        let started = Instant::now();
        store.append_batch(&batch);
        ingest += started.elapsed();
    }
    // The bench's own copies go; the store keeps the label sets.
    drop(series);
    let after = counting_alloc::live();
    let n = store.series_count();
    let samples = store.sample_count();
    eprintln!(
        "store ingest: {samples} samples in {:.3} s: {:.2e} samples/s (append_batch of {n} samples per second of data)",
        ingest.as_secs_f64(),
        samples as f64 / ingest.as_secs_f64(),
    );
    eprintln!(
        "store memory: {:.0} bytes/series measured ({:.0} estimated), {:.0} samples/series, \
         {:.1} MiB for {n} series, retention {} min (from the rules)",
        (after - before) as f64 / n as f64,
        store.approx_bytes() as f64 / n as f64,
        samples as f64 / n as f64,
        (after - before) as f64 / (1024.0 * 1024.0),
        retention_ms / 60_000,
    );
    (store, groups, SECONDS * 1000)
}

fn bench(c: &mut Criterion) {
    let (store, mut groups, end) = setup();
    // Warm the state machine (alerts pending → firing) before timing.
    for t in [end - 120_000, end - 60_000, end] {
        for g in &mut groups {
            g.eval(&store, t);
        }
    }
    let firing: usize = groups.iter().map(|g| g.active_alerts().len()).sum();
    let failures: usize = groups.iter().map(|g| g.last_failures()).sum();
    eprintln!("active alerts: {firing}, failed rules: {failures}");
    // Where the time goes, by kind of rule (rule n is of kind n % 5), at the last round.
    let mut by_kind = [0.0f64; 5];
    for (i, r) in groups
        .iter()
        .flat_map(|g| g.rules_snapshot().rules)
        .enumerate()
    {
        by_kind[i % 5] += r.evaluation_time_s;
    }
    let kinds = [
        "ratio of rates",
        "histogram_quantile",
        "avg by",
        "*_over_time",
        "cache ratio",
    ];
    for (k, t) in kinds.iter().zip(by_kind) {
        eprintln!("  {k:>20}: {:.1} ms for 200 rules", t * 1000.0);
    }
    assert_eq!(failures, 0);
    c.bench_function("rules_eval/1000_rules_10000_series_round", |b| {
        b.iter(|| {
            let mut n = 0;
            for g in &mut groups {
                n += g.eval(&store, black_box(end)).len();
            }
            n
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
