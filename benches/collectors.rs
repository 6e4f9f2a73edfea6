//! CPU cost of one round of each collector on this host (goal: a full round of all of them
//! under 5 ms of CPU). Measured as this process's user+system CPU time (getrusage), not wall
//! time, so the servers' own work and network waits are not counted. Needs redis-server and
//! memcached on PATH (as the tests do); the collectors of a missing one are skipped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use medic::collect::{BuildContext, Collector, CollectorConfig};
use medic::config::GlobalConfig;

fn cpu_now() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[String], port: u16) -> Option<Server> {
    let child = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let s = Server(child);
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn exposition(series: usize) -> String {
    let mut s = String::from("# TYPE requests_total counter\n");
    for i in 0..series {
        s.push_str(&format!(
            "requests_total{{model=\"m{}\",code=\"{}\"}} {}\n",
            i / 4,
            200 + i % 4,
            i
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rport = free_port();
    let redis = start(
        "redis-server",
        &[
            "--port".into(),
            rport.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
        ],
        rport,
    );
    let mport = free_port();
    let memcached = start(
        "memcached",
        &[
            "-p".into(),
            mport.to_string(),
            "-l".into(),
            "127.0.0.1".into(),
            "-U".into(),
            "0".into(),
            "-u".into(),
            "root".into(),
        ],
        mport,
    );
    // two scrape targets: a typical service (500 series) and a large one (10,000)
    let small = exposition(500);
    let large = exposition(10_000);
    let sport = rt.block_on(async {
        let app = axum::Router::new()
            .route("/small", axum::routing::get(move || async move { small }))
            .route("/large", axum::routing::get(move || async move { large }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        port
    });

    let mut configs = vec![
        ("host", "type: host\n".to_string()),
        ("gpu", "type: gpu\n".to_string()),
        (
            "process_by_name",
            "type: process\nname: redis-server\n".to_string(),
        ),
        (
            "scrape_500_series",
            format!("type: scrape\nurl: http://127.0.0.1:{sport}/small\n"),
        ),
    ];
    if redis.is_some() {
        configs.push((
            "redis",
            format!("type: redis\nurl: redis://127.0.0.1:{rport}\n"),
        ));
    }
    if memcached.is_some() {
        configs.push((
            "memcached",
            format!("type: memcached\naddress: 127.0.0.1:{mport}\n"),
        ));
    }
    let global = GlobalConfig::default();
    let build = |name: &str, yaml: &str| -> Arc<dyn Collector> {
        let cfg: CollectorConfig = serde_saphyr::from_str(yaml).unwrap();
        cfg.build(&BuildContext {
            name,
            global: &global,
        })
        .unwrap()
    };
    let all: Vec<(&str, Arc<dyn Collector>)> =
        configs.iter().map(|(n, y)| (*n, build(n, y))).collect();
    let large_scrape = build(
        "scrape_10k_series",
        &format!("type: scrape\nurl: http://127.0.0.1:{sport}/large\n"),
    );

    let mut g = c.benchmark_group("collector_round_cpu");
    let round = |g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
                 name: &str,
                 cs: Vec<Arc<dyn Collector>>| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = cpu_now();
                for i in 0..iters {
                    rt.block_on(async {
                        for c in &cs {
                            let mut out = Vec::new();
                            c.collect(i as i64, &mut out).await.unwrap();
                            std::hint::black_box(out);
                        }
                    });
                }
                cpu_now() - start
            })
        });
    };
    for (name, c) in &all {
        round(&mut g, name, vec![c.clone()]);
    }
    round(&mut g, "scrape_10k_series", vec![large_scrape]);
    round(
        &mut g,
        "all_of_the_above_but_10k",
        all.iter().map(|(_, c)| c.clone()).collect(),
    );
    g.finish();
    drop((redis, memcached));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
