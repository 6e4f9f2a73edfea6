//! CPU cost of one round of each collector on this host (goal: a full round of all of them
//! under 5 ms of CPU). Measured as user+system CPU time (getrusage), not wall time: this
//! process's (every thread, the blocking ones included) plus that of its children that ended
//! during the round (RUSAGE_CHILDREN: the `systemctl` the systemd_unit collector runs). What
//! the collectors talk to runs in separate, long-lived processes whose CPU is not counted:
//! redis-server, memcached, and the scrape target (python3's http.server serving a file).
//! Needs those on PATH (as the tests do); the collectors of a missing one are skipped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use medic::collect::{BuildContext, Collector, CollectorConfig};

fn cpu_now() -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let mut total = Duration::ZERO;
    // children: those ended and waited for (systemctl); the servers are reaped only at the end
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills the struct it is given.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        total += tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    total
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
    // two scrape targets, files served by another process: a typical service (500 series)
    // and a large one (10,000)
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("small.txt"), exposition(500)).unwrap();
    std::fs::write(dir.path().join("large.txt"), exposition(10_000)).unwrap();
    let sport = free_port();
    let scrape_target = start(
        "python3",
        &[
            "-m".into(),
            "http.server".into(),
            sport.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--directory".into(),
            dir.path().display().to_string(),
        ],
        sport,
    );
    if scrape_target.is_none() {
        eprintln!("python3 not found: the scrape collectors are not benched");
    }

    // systemd_unit: what it costs here is what this host's systemctl does
    if std::path::Path::new("/run/systemd/system").exists() {
        eprintln!("systemd_unit: systemd runs here; a real `systemctl show` of a unit");
    } else {
        eprintln!(
            "systemd_unit: systemd is NOT running here: the figure is medic's check for /run/systemd/system (medic_systemd_available 0) and the /proc read, not a unit query"
        );
    }
    let mut configs = vec![
        ("host", "type: host\n".to_string()),
        ("gpu", "type: gpu\n".to_string()),
        (
            "process_by_name",
            "type: process\nname: redis-server\n".to_string(),
        ),
        (
            "process_systemd_unit",
            "type: process\nsystemd_unit: ssh.service\n".to_string(),
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
    if scrape_target.is_some() {
        configs.push((
            "scrape_500_series",
            format!("type: scrape\nurl: http://127.0.0.1:{sport}/small.txt\n"),
        ));
    }
    let build = |name: &str, yaml: &str| -> Arc<dyn Collector> {
        let cfg: CollectorConfig = serde_saphyr::from_str(yaml).unwrap();
        cfg.build(&BuildContext::new(name)).unwrap()
    };
    let all: Vec<(&str, Arc<dyn Collector>)> =
        configs.iter().map(|(n, y)| (*n, build(n, y))).collect();
    let large_scrape = build(
        "scrape_10k_series",
        &format!("type: scrape\nurl: http://127.0.0.1:{sport}/large.txt\n"),
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
    if scrape_target.is_some() {
        round(&mut g, "scrape_10k_series", vec![large_scrape]);
    }
    round(
        &mut g,
        "all_of_the_above_but_10k",
        all.iter().map(|(_, c)| c.clone()).collect(),
    );
    g.finish();
    drop((redis, memcached, scrape_target));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
