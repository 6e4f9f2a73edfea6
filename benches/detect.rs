//! Detector update throughput (goal: ≥ 20 M sample updates/s/core for the default `density`,
//! zscore and ewma) and memory per followed series (goal ≤ 10 KB): the detector's state with
//! its label sets, and what its output series cost in the store; seasonal mode too. Run:
//! `cargo bench --bench detect -- --measurement-time 2`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medic::common::Duration;
use medic::detect::anomaly::{AnomalyConfig, AnomalyDetector, Method, SeriesDetector};
use medic::detect::slo::Budget;
use medic::store::{Labels, Store};
use std::hint::black_box;

const N: usize = 1 << 16;

/// A noisy daily-ish wave with rare spikes, deterministic (xorshift).
fn series() -> Vec<f64> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..N)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s % 1000) as f64 / 1000.0 - 0.5;
            let spike = if s % 997 == 0 { 25.0 } else { 0.0 };
            100.0 + 10.0 * (i as f64 / 500.0).sin() + 3.0 * noise + spike
        })
        .collect()
}

/// The default detector (density; window 1000 for the others) with the given method.
fn config(method: Method) -> AnomalyConfig {
    AnomalyConfig {
        method,
        ..AnomalyConfig::default()
    }
}

/// CPU time of the calling thread, in seconds: a per-core figure that holds even when the
/// machine is shared (wall-clock throughput then understates what one core does).
fn thread_cpu_s() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn cpu_time_report() {
    let xs = series();
    for method in [
        Method::Density,
        Method::Zscore,
        Method::Ewma,
        Method::Robust,
    ] {
        let p = config(method).validate("bench").expect("valid config");
        let mut det = SeriesDetector::new(&p);
        let passes = if method == Method::Robust { 4 } else { 40 };
        let start = thread_cpu_s();
        let mut raised = 0u32;
        for pass in 0..passes {
            for (i, &x) in xs.iter().enumerate() {
                let t = ((pass * N + i) as i64) * 15_000;
                raised += det.observe(&p, t, black_box(x)).anomaly as u32;
            }
        }
        let cpu = thread_cpu_s() - start;
        black_box(raised);
        eprintln!(
            "{method:?} (window {}, half-life {}): {:.1} M updates/s per core (thread CPU time), state {} bytes per series",
            p.window,
            p.half_life,
            (passes * N) as f64 / cpu / 1e6,
            det.memory_bytes()
        );
    }
}

/// Memory per followed series, through the daemon's path (`AnomalyDetector::evaluate` over a
/// store, one scrape every 15 s): the detector's state (model, persistence, label sets) and
/// the store bytes of its four output series at the store's default retention (the input
/// series alone subtracted).
fn memory_report() {
    const SERIES: usize = 100;
    const STEP_MS: i64 = 15_000;
    let inputs: Vec<Labels> = (0..SERIES)
        .map(|i| {
            Labels::new([
                ("__name__", "request_latency_seconds".to_string()),
                ("job", "inference-api".to_string()),
                ("instance", format!("host-{i:03}.example.net:9100")),
            ])
        })
        .collect();
    let xs = series();
    let day = Duration::from_secs(86_400);
    let cases: [(&str, Method, Option<Duration>); 5] = [
        ("density (default)", Method::Density, None),
        ("zscore", Method::Zscore, None),
        ("ewma", Method::Ewma, None),
        ("robust", Method::Robust, None),
        ("zscore, seasonality 1d", Method::Zscore, Some(day)),
    ];
    for (name, method, seasonality) in cases {
        let cfg = AnomalyConfig {
            query: Some("request_latency_seconds".into()),
            seasonality,
            ..config(method)
        };
        let mut det = AnomalyDetector::build("latency", &cfg, Duration::from_secs(15))
            .expect("valid detector");
        // past the window and, for the seasonal one, past a full day of history
        let points =
            cfg.window as i64 + 10 + seasonality.map_or(0, |d| d.as_millis_i64() / STEP_MS);
        let (with_outputs, inputs_only) = (Store::default(), Store::default());
        let t0 = 1_700_000_000_000i64;
        for k in 0..points {
            let t = t0 + k * STEP_MS;
            for (i, l) in inputs.iter().enumerate() {
                let v = xs[(k as usize * 7 + i) % xs.len()];
                with_outputs.append(l, t, v);
                inputs_only.append(l, t, v);
            }
            let out = det.evaluate(&with_outputs, t).expect("evaluates");
            with_outputs.append_batch(&out);
        }
        let outputs = with_outputs.approx_bytes() - inputs_only.approx_bytes();
        eprintln!(
            "{name} window {}: {} bytes of detector state per series (labels included), {} bytes per series for its output series in the store (10 min retention)",
            cfg.window,
            det.memory_bytes() / SERIES,
            outputs / SERIES
        );
    }
}

fn updates(c: &mut Criterion) {
    cpu_time_report();
    memory_report();
    let xs = series();
    let mut g = c.benchmark_group("detector_update");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N as u64));
    for method in [
        Method::Density,
        Method::Zscore,
        Method::Ewma,
        Method::Robust,
    ] {
        let p = config(method).validate("bench").expect("valid config");
        let name = format!("{method:?}").to_lowercase();
        let mut det = SeriesDetector::new(&p);
        let mut t = 0i64;
        g.bench_function(format!("{name}_window{}", p.window), |b| {
            b.iter(|| {
                let mut raised = 0u32;
                for &x in &xs {
                    t += 15_000;
                    raised += det.observe(&p, t, black_box(x)).anomaly as u32;
                }
                raised
            })
        });
    }
    g.finish();
}

fn slo(c: &mut Criterion) {
    // A full 30-day window of minute buckets, all outputs computed as one tick does.
    let mut b = Budget::new(0.999, medic::common::Duration::from_secs(30 * 86_400));
    let start = 1_700_000_000_000i64;
    for m in 0..43_200 {
        b.add(start + m * 60_000, (m % 7) as f64, 1000.0);
    }
    let now = start + 43_199 * 60_000;
    c.bench_function("slo_tick_30d", |bench| {
        bench.iter(|| {
            let mut acc = 0.0;
            for (_, minutes) in medic::detect::slo::WINDOWS {
                acc += b.burn_rate(black_box(now), minutes);
            }
            acc + b.remaining(now) + b.compliance(now)
        })
    });
}

criterion_group!(benches, updates, slo);
criterion_main!(benches);
