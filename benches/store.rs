//! Store benchmarks: ingest throughput (samples/s) at steady state, memory per series
//! with 10 minutes of 1 s samples (ring buffer, labels and indexes included), and memory
//! under a writer that invents 10,000 series a round, with and without `max_series`:
//! measured by a counting global allocator and printed.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medic::promql::{EvalOptions, eval_with_reader, parse};
use medic::store::{Labels, Sample, Store};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

const SERIES: usize = 10_000;
const RETENTION_MS: i64 = 10 * 60 * 1000;

/// Realistic label sets: node_exporter-like names with instance/job/device labels.
fn series_labels() -> Vec<Labels> {
    (0..SERIES)
        .map(|i| {
            Labels::new([
                ("__name__", format!("node_metric_{}_total", i % 100)),
                ("instance", format!("host-{:03}:9100", i / 100)),
                ("job", "node".to_string()),
                ("device", format!("dev{}", i % 7)),
            ])
        })
        .collect()
}

/// One scrape round: every series gets a sample at `t`.
fn round(labels: &[Labels], t: i64) -> Vec<Sample> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| Sample::new(l.clone(), t, (t / 1000) as f64 + i as f64))
        .collect()
}

fn memory_per_series(labels: &[Labels]) {
    let before = counting_alloc::live();
    let store = Store::new(RETENTION_MS);
    // 15 minutes at 1 s: past retention, so the buffers are at steady state
    for s in 0..900 {
        let t = s * 1000;
        for (i, l) in labels.iter().enumerate() {
            store.append(l, t, i as f64 + s as f64);
        }
    }
    let after = counting_alloc::live();
    let measured = (after - before) as f64 / SERIES as f64;
    let samples = store.sample_count() as f64 / SERIES as f64;
    println!(
        "store memory: {measured:.0} bytes/series measured ({:.0} estimated), \
         {samples:.0} samples/series, {:.1} bytes/sample, {:.1} MiB for {SERIES} series",
        store.approx_bytes() as f64 / SERIES as f64,
        measured / samples,
        (after - before) as f64 / (1024.0 * 1024.0),
    );
    drop(store);
}

/// A scrape-like writer at 15 s that, besides 1,000 steady series, invents 10,000 new
/// series every round (a request ID in a label), with gc each round as the daemon runs it.
/// Returns (series held, live bytes) after each round.
fn churn(rounds: i64, max_series: usize) -> Vec<(usize, isize)> {
    let before = counting_alloc::live();
    let store = Store::new(RETENTION_MS);
    store.set_max_series(max_series);
    let steady: Vec<Labels> = (0..1_000)
        .map(|i| {
            Labels::new([
                ("__name__", "vllm_requests_running".to_string()),
                ("instance", "127.0.0.1:8000".to_string()),
                ("job", "inference".to_string()),
                ("model", format!("m{i}")),
            ])
        })
        .collect();
    let mut out = Vec::new();
    for r in 0..rounds {
        let t = r * 15_000;
        let mut batch = round(&steady, t);
        batch.extend((0..10_000).map(|i| {
            Sample::new(
                Labels::new([
                    ("__name__", "http_request_duration_seconds".to_string()),
                    ("instance", "127.0.0.1:8000".to_string()),
                    ("job", "inference".to_string()),
                    ("request_id", format!("{r:06}-{i:05}-3f9a2c71")),
                ]),
                t,
                0.25,
            )
        }));
        store.append_batch(&batch);
        store.gc(t);
        out.push((store.series_count(), counting_alloc::live() - before));
    }
    out
}

fn memory_bounded_under_churn() {
    const CAP: usize = 20_000;
    let mib = |b: isize| b as f64 / (1024.0 * 1024.0);
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --benches` runs this once in a debug build: a short check only
        let capped = churn(4, 2_000);
        assert!(capped.iter().all(|(series, _)| *series <= 2_000));
        return;
    }
    // two hours of 15 s rounds: 4.8 million series offered
    let capped = churn(480, CAP);
    let peak = capped.iter().map(|x| x.1).max().unwrap_or(0);
    let (series, last) = *capped.last().expect("rounds ran");
    println!(
        "store under churn, max_series {CAP}: {series} series, {:.1} MiB after 2 h \
         (peak {:.1} MiB, {:.0} bytes/series at the cap)",
        mib(last),
        mib(peak),
        last as f64 / series as f64
    );
    // without the cap: growth until retention (10 minutes, 40 rounds) catches up
    let open = churn(20, 0);
    let (series, last) = *open.last().expect("rounds ran");
    println!(
        "store under churn, no cap: {series} series, {:.1} MiB after 5 minutes, still growing",
        mib(last)
    );
}

fn bench(c: &mut Criterion) {
    let labels = series_labels();
    memory_per_series(&labels);
    memory_bounded_under_churn();

    // steady-state store: 10 minutes of history already present
    let store = Store::new(RETENTION_MS);
    let mut t = 0i64;
    while t < RETENTION_MS {
        store.append_batch(&round(&labels, t));
        t += 1000;
    }
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("append_batch_10k_series", |b| {
        b.iter_batched(
            || {
                t += 1000;
                round(&labels, t)
            },
            |batch| store.append_batch(black_box(&batch)),
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("append_single_10k_series", |b| {
        b.iter(|| {
            t += 1000;
            for (i, l) in labels.iter().enumerate() {
                store.append(l, t, i as f64);
            }
        })
    });
    g.bench_function("read_5m_window_10k_series", |b| {
        let r = store.reader();
        let ids: Vec<_> = r.all_series().collect();
        b.iter(|| {
            let mut n = 0usize;
            for id in &ids {
                n += r.window(*id, t - 300_000, t).len();
            }
            black_box(n)
        })
    });
    g.finish();

    // Evaluation of typical rule expressions over the same store (100 series per metric
    // name, 10 minutes of 1 s samples): the per-rule cost behind a rule round.
    let mut g = c.benchmark_group("eval");
    let now = t;
    let opts = EvalOptions::default();
    for (name, q) in [
        ("rate_5m_100_series", "rate(node_metric_1_total[5m])"),
        (
            "sum_by_rate_1m_100_series",
            "sum by (instance) (rate(node_metric_2_total[1m]))",
        ),
        (
            "ratio_compare_100_series",
            "node_metric_3_total / on(instance, device, job) node_metric_4_total > 0.5",
        ),
        (
            "avg_over_time_1_series",
            r#"avg_over_time(node_metric_5_total{instance="host-007:9100"}[5m]) > 10"#,
        ),
        ("instant_compare_100_series", "node_metric_6_total > 100"),
    ] {
        let e = parse(q).expect("benchmark expression parses");
        let r = store.reader();
        g.bench_function(name, |b| {
            b.iter(|| black_box(eval_with_reader(&r, &e, now, &opts).expect("evaluates")))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(std::time::Duration::from_secs(3))
        .warm_up_time(std::time::Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
