//! The fuzz driver: feeds mutated inputs to every parser of medic that reads untrusted
//! bytes, on stable Rust (cargo-fuzz's libFuzzer needs nightly's sanitizer flags).
//!
//! It is a mutation fuzzer without coverage instrumentation: each target starts from its
//! seed corpus (`fuzz/corpus/<target>/`), mutates (bit flips, interesting bytes and tokens,
//! deletions, duplications that grow inputs, splices of two inputs) and keeps as new seeds
//! the inputs whose outcome it has not seen yet (accepted, or the error message with its
//! numbers blanked): a cheap stand-in for coverage that walks the parsers' error paths.
//!
//! A finding is a panic, an input that takes longer than `SLOW` (a quadratic blowup), or
//! one that does not return within `HANG` (the watchdog aborts the run). Each is written to
//! `target/fuzz/<target>/` and counted; the exit status is 1 when there was any.
//!
//! ```text
//! cargo run --example fuzz -- TARGET|all [--seconds N] [--seed N]
//! cargo run --example fuzz -- TARGET --replay FILE
//! ```
//! `benches/fuzz.sh TARGET MINUTES` wraps it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// An input slower than this is a finding (debug builds are ~20x slower than release).
const SLOW: Duration = Duration::from_secs(2);
/// An input still running after this aborts the run as a hang.
const HANG: Duration = Duration::from_secs(20);
/// Inputs are kept below this size (mutations that grow them are clipped).
const MAX_LEN: usize = 64 * 1024;
/// The input size limit of a target with a `slow:` line in `fuzz/known.txt`.
const SLOW_KNOWN_MAX_LEN: usize = 8 * 1024;
/// Seeds kept in memory per target.
const MAX_POOL: usize = 2_000;

/// A fuzz target: a name, the parser call (Ok or an error message), and tokens its
/// mutations splice in.
struct Target {
    name: &'static str,
    run: fn(&str) -> Result<(), String>,
    tokens: &'static [&'static [&'static str]],
}

fn config(s: &str) -> Result<(), String> {
    medic::config::Config::parse_str(Path::new("medic.yaml"), s)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn rules(s: &str) -> Result<(), String> {
    let opts = medic::rules::GroupOptions::default();
    medic::rules::file::parse_rule_file(Path::new("rules.yaml"), s, &opts)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn promql(s: &str) -> Result<(), String> {
    medic::promql::parse(s)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn template(s: &str) -> Result<(), String> {
    use medic::rules::template::{Template, TemplateData};
    use medic::store::Labels;
    let t = Template::parse(s).map_err(|e| e.to_string())?;
    let labels = Labels::new([("instance", "gpu-7:8000"), ("job", "inference")]);
    let data = TemplateData {
        labels: &labels,
        external_labels: &Labels::default(),
        external_url: "http://medic:9464",
        value: 1.5,
    };
    t.render(&data).map(|_| ()).map_err(|e| e.to_string())
}

fn exposition(s: &str, format: medic::collect::exposition::Format) -> Result<(), String> {
    medic::collect::exposition::parse_to_vec(s, format)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn exposition_text(s: &str) -> Result<(), String> {
    exposition(s, medic::collect::exposition::Format::Prometheus)
}

fn exposition_openmetrics(s: &str) -> Result<(), String> {
    exposition(s, medic::collect::exposition::Format::OpenMetrics)
}

fn exec_reply(s: &str) -> Result<(), String> {
    if medic::remedy::actuators::exec::reply_is_valid(s) {
        Ok(())
    } else {
        Err("no reply".into())
    }
}

const YAML_TOKENS: &[&str] = &[
    ": ",
    "\n",
    "- ",
    "  ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "|\n",
    ">\n",
    "'",
    "\"",
    "#",
    "---\n",
    "...\n",
    "~",
    "null",
    "true",
    "off",
    "1e9",
    "0x1F",
    "\t",
    "? ",
    "\\u00e9",
    "%YAML 1.2\n",
];
const CONFIG_TOKENS: &[&str] = &[
    "global:\n",
    "collectors:\n",
    "  type: scrape\n",
    "  url: http://127.0.0.1:1/m\n",
    "interval: 1s",
    "timeout: 0s",
    "{file: /x}",
    "{env: X}",
    "{value: ''}",
    "rule_files: [a]",
    "actuators:\n",
    "notifiers:\n",
    "max_series: 0",
    "http: {header_timeout: 1ms}",
    "body_size_limit: 0B",
    "1h30m",
    "-1s",
    "99999999999999999999d",
];
const RULE_TOKENS: &[&str] = &[
    "groups:\n",
    "- name: g\n",
    "  rules:\n",
    "  - alert: A\n",
    "    expr: up == 0\n",
    "    for: 5m\n",
    "    labels: {a: b}\n",
    "    annotations: {s: '{{ $value }}'}\n",
    "  - record: r:x\n",
    "    remediate:\n",
    "    - {action: exec, target: t}\n",
    "limit: 1",
    "interval: 0s",
    "{{ range $labels }}",
    "{{ end }}",
    "rate(x[5m])",
];
const PROMQL_TOKENS: &[&str] = &[
    "(",
    ")",
    "[5m]",
    "[1h:1m]",
    "{",
    "}",
    "=~",
    "!~",
    "!=",
    "\"",
    "'",
    "`",
    "sum by (a) ",
    "rate(",
    "histogram_quantile(0.9, ",
    " offset 1m",
    " @ 100",
    " or ",
    " and ",
    " unless ",
    " + ",
    "^",
    "%",
    " bool ",
    "on(a) group_left(b) ",
    "1e308",
    "Inf",
    "NaN",
    "0x1f",
    "-",
    "label_replace(",
    "absent(",
    "topk(2, ",
    "__name__",
    "#",
    "\\",
    "ignoring()",
    ",",
];
const TEMPLATE_TOKENS: &[&str] = &[
    "{{",
    "}}",
    "{{-",
    "-}}",
    "$labels",
    "$value",
    ".Labels.instance",
    " | ",
    "humanize ",
    "printf \"%s\" ",
    "{{ range $k, $v := $labels }}",
    "{{ end }}",
    "{{ if ",
    "{{ else }}",
    "{{ with ",
    "{{ define \"x\" }}",
    "{{ template \"x\" }}",
    "{{ block \"b\" . }}",
    "(",
    ")",
    "\"",
    "`",
    "$x := ",
    "humanizeDuration ",
    "reReplaceAll ",
    "title ",
    "toUpper ",
    "query \"up\"",
    "first",
    "1e308",
    "/*",
    "*/",
];
const EXPOSITION_TOKENS: &[&str] = &[
    "\n",
    " ",
    "\t",
    "{",
    "}",
    "=",
    "\"",
    ",",
    "\\",
    "\\n",
    "\\\"",
    "# TYPE x ",
    "# HELP x ",
    "# UNIT x ",
    "# EOF\n",
    "counter",
    "gauge",
    "histogram",
    "summary",
    "untyped",
    "unknown",
    "info",
    "stateset",
    "gaugehistogram",
    "_bucket",
    "_sum",
    "_count",
    "_total",
    "_created",
    "le=\"+Inf\"",
    "quantile=\"0.5\"",
    "NaN",
    "+Inf",
    "-Inf",
    "1e400",
    "0x1p-2",
    " 1 ",
    " 1520879607.789",
    " # {trace_id=\"a\"} 1",
    "__name__",
    "é",
    "\r",
];
const REPLY_TOKENS: &[&str] = &[
    "{\"status\":\"ok\"}",
    "{\"status\":\"failed\",\"message\":\"x\"}",
    "\"status\"",
    "\"noop\"",
    "\"data\":",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\n",
    "\\u0000",
    "\\ud800",
    "1e999",
    "null",
    "\"message\":",
    " ",
];

const TARGETS: &[Target] = &[
    Target {
        name: "config",
        run: config,
        tokens: &[CONFIG_TOKENS, YAML_TOKENS],
    },
    Target {
        name: "rules",
        run: rules,
        tokens: &[RULE_TOKENS, YAML_TOKENS, PROMQL_TOKENS, TEMPLATE_TOKENS],
    },
    Target {
        name: "promql",
        run: promql,
        tokens: &[PROMQL_TOKENS],
    },
    Target {
        name: "template",
        run: template,
        tokens: &[TEMPLATE_TOKENS],
    },
    Target {
        name: "exposition_text",
        run: exposition_text,
        tokens: &[EXPOSITION_TOKENS],
    },
    Target {
        name: "exposition_openmetrics",
        run: exposition_openmetrics,
        tokens: &[EXPOSITION_TOKENS],
    },
    Target {
        name: "exec_reply",
        run: exec_reply,
        tokens: &[REPLY_TOKENS],
    },
];

/// xorshift64*: deterministic for a given seed, so a run can be repeated.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = b"\0\t\n\r \"#$'(),-.0123456789:;=[\\]_`{|}~\x7f\xc3\xa9";

/// One mutation of `input` (bytes; the target gets them as UTF-8, lossily).
fn mutate(
    rng: &mut Rng,
    input: &[u8],
    pool: &[Vec<u8>],
    tokens: &[&[&str]],
    max_len: usize,
) -> Vec<u8> {
    let mut v = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = v.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 | 3 => {
                let list = tokens[rng.below(tokens.len())];
                let t = list[rng.below(list.len())].as_bytes();
                let i = rng.below(len + 1);
                v.splice(i..i, t.iter().copied());
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                v.drain(a..b);
            }
            5 if len > 0 => {
                // duplicate a range many times: finds work that grows faster than the input
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                let chunk = v[a..b].to_vec();
                let most = if rng.below(8) == 0 { 2_000 } else { 8 };
                let times = 1 + rng.below(most);
                let at = rng.below(len + 1);
                let grown: Vec<u8> = chunk
                    .iter()
                    .copied()
                    .cycle()
                    .take(chunk.len() * times)
                    .collect();
                v.splice(at..at, grown);
            }
            6 if !pool.is_empty() => {
                // splice: a prefix of this input, a suffix of another
                let other = &pool[rng.below(pool.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            7 if len > 1 => {
                let a = rng.below(len);
                let b = rng.below(len);
                v.swap(a, b);
            }
            _ => {
                let i = rng.below(len + 1);
                v.insert(i, rng.next() as u8);
            }
        }
    }
    v.truncate(max_len);
    v
}

/// An outcome's shape: accepted, or the error message with its numbers blanked (so the
/// same error at another line or column counts once).
fn signature(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => {
            // numbers and quoted text blanked: the same error elsewhere counts once
            let mut out = String::new();
            let mut quoted = false;
            for c in e.chars() {
                match c {
                    '"' | '\'' | '`' => quoted = !quoted,
                    c if quoted || c.is_ascii_digit() => {}
                    c => out.push(c),
                }
                if out.len() >= 100 {
                    break;
                }
            }
            out
        }
    }
}

fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[derive(Default, Debug)]
struct Report {
    execs: u64,
    panics: u64,
    /// Panics matching `fuzz/known.txt` (filed, not yet fixed): reported, not failing.
    known: u64,
    slow: u64,
    seeds: usize,
    outcomes: usize,
    slowest: Duration,
}

fn save(dir: &Path, kind: &str, input: &[u8]) -> PathBuf {
    let _ = std::fs::create_dir_all(dir);
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let p = dir.join(format!("{kind}-{hash:016x}"));
    let _ = std::fs::write(&p, input);
    p
}

/// The message and place of the last panic (set by the panic hook).
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

/// What the watchdog sees: when the current input started (ms since the run began; 0 when
/// idle) and the input itself.
struct Current {
    started_ms: AtomicU64,
    input: Mutex<(String, Vec<u8>)>,
}

/// Known findings: `fuzz/known.txt`, one a line, ` # ` and a note: a panic message
/// substring, or `slow:TARGET` for the slow inputs of a target.
fn known_findings(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("fuzz/known.txt"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(" # ").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn fuzz(
    t: &Target,
    root: &Path,
    budget: Duration,
    seed: u64,
    cur: &Current,
    t0: Instant,
) -> Report {
    let known = known_findings(root);
    // a target known to be slow on large inputs gets small ones, so that a run still
    // explores it (and the known blowup cannot turn into a hang)
    let slow_known = known
        .iter()
        .any(|k| k.strip_prefix("slow:") == Some(t.name));
    let max_len = if slow_known {
        SLOW_KNOWN_MAX_LEN
    } else {
        MAX_LEN
    };
    let corpus = read_corpus(&root.join("fuzz/corpus").join(t.name));
    let out = root.join("target/fuzz").join(t.name);
    let mut pool: Vec<Vec<u8>> = if corpus.is_empty() {
        vec![Vec::new()]
    } else {
        corpus
    };
    let mut seen: HashSet<String> = HashSet::new();
    let mut rep = Report::default();
    let mut rng = Rng(seed ^ 0x9e37_79b9_7f4a_7c15 ^ t.name.len() as u64);
    let started = Instant::now();
    let seeds = pool.len();
    let mut i = 0usize;
    while started.elapsed() < budget {
        // the seeds themselves first, then mutations
        let input = if i < seeds {
            pool[i].clone()
        } else {
            let base = &pool[rng.below(pool.len())];
            mutate(&mut rng, base, &pool, t.tokens, max_len)
        };
        i += 1;
        let text = String::from_utf8_lossy(&input).into_owned();
        *cur.input.lock().unwrap_or_else(|e| e.into_inner()) = (t.name.to_string(), input.clone());
        cur.started_ms
            .store(t0.elapsed().as_millis() as u64 + 1, Ordering::SeqCst);
        let at = Instant::now();
        let r = std::panic::catch_unwind(|| (t.run)(&text));
        let took = at.elapsed();
        cur.started_ms.store(0, Ordering::SeqCst);
        rep.execs += 1;
        rep.slowest = rep.slowest.max(took);
        match r {
            Err(_) => {
                let msg = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).clone();
                if known.iter().any(|k| msg.contains(k.as_str())) {
                    if rep.known == 0 {
                        let p = save(&out, "known", &input);
                        eprintln!("{}: known finding on {}: {msg}", t.name, p.display());
                    }
                    rep.known += 1;
                    continue;
                }
                rep.panics += 1;
                let p = save(&out, "panic", &input);
                eprintln!(
                    "{}: PANIC on {} ({} bytes): {msg}",
                    t.name,
                    p.display(),
                    input.len()
                );
            }
            Ok(outcome) => {
                if took > SLOW && slow_known {
                    if rep.known == 0 {
                        let p = save(&out, "known-slow", &input);
                        eprintln!("{}: known slow input ({took:?}) on {}", t.name, p.display());
                    }
                    rep.known += 1;
                } else if took > SLOW {
                    rep.slow += 1;
                    let p = save(&out, "slow", &input);
                    eprintln!(
                        "{}: SLOW {:?} on {} ({} bytes)",
                        t.name,
                        took,
                        p.display(),
                        input.len()
                    );
                }
                if seen.insert(signature(&outcome)) && pool.len() < MAX_POOL {
                    pool.push(input);
                }
            }
        }
    }
    rep.seeds = pool.len();
    rep.outcomes = seen.len();
    rep
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "usage: fuzz TARGET|all [--seconds N] [--seed N]\ntargets: {}",
            names.join(", ")
        );
        std::process::exit(2)
    };
    let Some(which) = args.first() else { usage() };
    // `fuzz TARGET --replay FILE`: run one input (a finding) and say what it does
    if args.get(1).map(String::as_str) == Some("--replay") {
        let t = TARGETS
            .iter()
            .find(|t| t.name == which)
            .unwrap_or_else(|| usage());
        let file = args.get(2).unwrap_or_else(|| usage());
        let input = std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let at = Instant::now();
        let r = (t.run)(&String::from_utf8_lossy(&input));
        println!("{}: {r:?} in {:?}", t.name, at.elapsed());
        return;
    }
    let mut seconds = 60u64;
    let mut seed = 1u64;
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        match a.as_str() {
            "--seconds" => seconds = v,
            "--seed" => seed = v,
            _ => usage(),
        }
    }
    let chosen: Vec<&Target> = if which == "all" {
        TARGETS.iter().collect()
    } else {
        TARGETS.iter().filter(|t| t.name == which).collect()
    };
    if chosen.is_empty() {
        usage();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // panics are findings, reported by the loop with the message kept here
    std::panic::set_hook(Box::new(|info| {
        *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = info.to_string();
    }));
    let t0 = Instant::now();
    let cur = Arc::new(Current {
        started_ms: AtomicU64::new(0),
        input: Mutex::new((String::new(), Vec::new())),
    });
    let watch = cur.clone();
    let hang_dir = root.join("target/fuzz");
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let s = watch.started_ms.load(Ordering::SeqCst);
            if s > 0 && t0.elapsed().as_millis() as u64 > s - 1 + HANG.as_millis() as u64 {
                let (name, input) = watch
                    .input
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                let p = save(&hang_dir.join(&name), "hang", &input);
                eprintln!("{name}: HANG (over {HANG:?}) on {}", p.display());
                std::process::exit(1);
            }
        }
    });
    let per = Duration::from_secs(seconds) / chosen.len() as u32;
    let mut findings = 0;
    for t in chosen {
        let r = fuzz(t, &root, per, seed, &cur, t0);
        findings += r.panics + r.slow;
        println!(
            "{:<24} {:>6.1} min {:>10} execs {:>4} panics {:>6} known {:>4} slow {:>5} seeds {:>6} outcomes  slowest {:?}",
            t.name,
            per.as_secs_f64() / 60.0,
            r.execs,
            r.panics,
            r.known,
            r.slow,
            r.seeds,
            r.outcomes,
            r.slowest
        );
    }
    if findings > 0 {
        println!("{findings} findings: inputs in target/fuzz/<target>/");
        std::process::exit(1);
    }
}
