//! Cost of one host collector round (reading /proc, statvfs on each filesystem, building the
//! samples), as the scheduler runs it: on a blocking thread of a tokio runtime.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use medic::collect::{BuildContext, CollectorConfig};

fn host_round(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cfg: CollectorConfig =
        medic::common::yaml::parse_yaml(Path::new("bench.yaml"), "type: host\n")
            .expect("host config");
    let collector = cfg
        .build(&BuildContext::new("host"))
        .expect("host collector");
    let mut out = Vec::with_capacity(512);
    rt.block_on(collector.collect(0, &mut out)).expect("round");
    println!("host round: {} samples", out.len());
    c.bench_function("host_round", |b| {
        b.iter(|| {
            out.clear();
            rt.block_on(collector.collect(black_box(0), &mut out))
                .expect("round");
            black_box(out.len())
        })
    });
}

criterion_group!(benches, host_round);
criterion_main!(benches);
