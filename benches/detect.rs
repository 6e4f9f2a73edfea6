//! Detector update throughput (goal: ≥ 20 M sample updates/s/core for zscore and ewma) and
//! memory per followed series. Run: `cargo bench --bench detect`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use medic::detect::anomaly::{AnomalyConfig, Method, SeriesDetector};
use medic::detect::slo::Budget;
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

/// The default detector (window 1000) with the given method.
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
    for method in [Method::Zscore, Method::Ewma, Method::Robust] {
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
            "{method:?} window {}: {:.1} M updates/s per core (thread CPU time), state {} bytes per series",
            p.window,
            (passes * N) as f64 / cpu / 1e6,
            det.memory_bytes()
        );
    }
}

fn updates(c: &mut Criterion) {
    cpu_time_report();
    let xs = series();
    let mut g = c.benchmark_group("detector_update");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N as u64));
    for method in [Method::Zscore, Method::Ewma, Method::Robust] {
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
    let mut b = Budget::new(0.999, medic::config::Duration::from_secs(30 * 86_400));
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
