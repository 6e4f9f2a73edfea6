//! Detectors end to end: the default detector separating a spike from noise, `medic anomaly
//! score` (one row per input row, NAB's files included), detectors over the store (as the
//! daemon runs them), reload carry-over, SLO series, the generated burn-rate rules, and the
//! SLO journal surviving a SIGKILL.

#[path = "support/daemon.rs"]
mod daemon_support;
#[path = "support/detect.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use medic::common::Duration;
use medic::config::Config;
use medic::detect::Detectors;
use medic::detect::anomaly::{AnomalyConfig, Method, Persistence, Recovery, SeriesDetector};
use medic::journal::Journal;
use medic::store::{Labels, Store};
use support::*;

/// The defaults before the NAB scoring counted onsets only: zscore with persistence 3 and
/// recovery after 60 points within 1σ, which latches on noise (0.68⁶⁰ ≈ 1e-10).
fn latching_old_default() -> AnomalyConfig {
    AnomalyConfig {
        method: Method::Zscore,
        persistence: Some(Persistence { count: 3, of: None }),
        recovery: Recovery {
            sigma: Some(1.0),
            count: Some(60),
        },
        ..AnomalyConfig::default()
    }
}

/// The cheap CI check of detection quality (NAB's scorer needs pandas and minutes; README
/// has its figures and the commands): on noise with an injected spike and a later level
/// shift, the default detector's score ranks the spike and the shift's start above every
/// noise point, decays once the shift is the new normal, and its alarm fires on both and
/// rarely on noise.
#[test]
fn default_detector_separates_an_injected_spike_from_noise() {
    let mut xs = white_noise(11, 6000, 100.0, 1.0);
    let (spike, shift) = (3000, 4500);
    xs[spike] += 8.0;
    for x in &mut xs[shift..] {
        *x += 10.0;
    }
    let p = AnomalyConfig::default().validate("ci").unwrap();
    let mut det = SeriesDetector::new(&p);
    let v: Vec<_> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| det.observe(&p, i as i64 * 1000, *x))
        .collect();
    let noise = |r: std::ops::Range<usize>| {
        r.filter(|i| *i != spike)
            .map(|i| v[i].score)
            .fold(0.0, f64::max)
    };
    let top_noise = noise(1000..shift);
    assert!(
        v[spike].score > top_noise,
        "spike {} vs noise up to {top_noise}",
        v[spike].score
    );
    assert!(v[shift].score > top_noise, "shift {}", v[shift].score);
    assert!(v[spike].anomaly && v[shift].anomaly);
    // the new level becomes normal: the score decays to what noise scores
    assert!(noise(shift + 1000..6000) < v[shift].score);
    // onsets on the 2,000 noise points before the spike: of the order of `probability`
    // (0.001) per point; Gaussian noise has several tail bins under 0.1 % each, so about 1
    // per 600 points is expected (README), 3 per 1,000 would be too many
    let onsets = (1001..spike)
        .filter(|&i| v[i].anomaly && !v[i - 1].anomaly)
        .count();
    assert!(onsets <= 6, "{onsets} false alarms on 2,000 noise points");
    // scores never tie at 1
    assert!(v.iter().all(|v| v.score < 1.0));
}

/// On white noise the default detector does not latch: it is rarely up, and never for long.
#[test]
fn default_detector_does_not_latch_on_white_noise() {
    let noise = white_noise(7, 50_000, 100.0, 1.0);
    let f = raised_fraction(&AnomalyConfig::default(), &noise);
    // p = 0.001 points, each raise held for 5 calm points: about 1 % of the time
    assert!(f < 0.02, "raised {:.2} % of the time", f * 100.0);
    // The old defaults do latch on the same data (what the test is about).
    let old = raised_fraction(&latching_old_default(), &noise);
    assert!(old > 0.5, "old defaults raised {:.2} %", old * 100.0);
}

fn config_yaml(text: &str) -> Config {
    Config::parse_str(std::path::Path::new("medic.yaml"), text).expect("config parses")
}

fn latest(store: &Store, labels: &Labels, at: i64) -> Option<f64> {
    let r = store.reader();
    let id = r.lookup(labels)?;
    r.latest(id, at, 300_000).map(|(_, v)| v)
}

#[test]
fn anomaly_detector_over_the_store() {
    let cfg = config_yaml(
        r#"
anomaly_detectors:
  latency:
    query: 'request_latency_seconds{job="api"}'
    interval: 1s
    method: zscore
    window: 20
    min_samples: 10
    persistence: {count: 2}
    recovery: {count: 1}
"#,
    );
    let store = Store::default();
    let mut det = cfg.build_detectors(None).unwrap();
    let input = |_i: i64| {
        Labels::new([
            ("__name__", "request_latency_seconds"),
            ("job", "api"),
            ("instance", "a"),
        ])
    };
    let t0 = 1_700_000_000_000i64;
    let out = |name: &str| {
        Labels::new([
            ("__name__", name),
            ("job", "api"),
            ("instance", "a"),
            ("detector", "latency"),
        ])
    };
    for i in 0..40 {
        let t = t0 + i * 1000;
        let v = if i >= 38 {
            5.0
        } else {
            0.1 + 0.01 * (i % 3) as f64
        };
        store.append(&input(i), t, v);
        assert!(det.tick(&store, t).is_empty());
        let anomaly = latest(&store, &out("medic_anomaly"), t).unwrap();
        if i < 10 {
            // warm-up: the signal is 0 and there is no band yet
            assert_eq!(anomaly, 0.0);
            assert!(latest(&store, &out("medic_anomaly_zscore"), t).is_none());
        } else if i < 38 {
            assert_eq!(anomaly, 0.0, "at {i}");
            let up = latest(&store, &out("medic_anomaly_upper"), t).unwrap();
            let lo = latest(&store, &out("medic_anomaly_lower"), t).unwrap();
            assert!(lo < 0.11 && up > 0.11, "band {lo}..{up} at {i}");
        } else if i == 38 {
            // outside, but persistence wants two in a row
            assert!(latest(&store, &out("medic_anomaly_zscore"), t).unwrap() > 2.0);
            assert_eq!(anomaly, 0.0);
        } else {
            assert_eq!(anomaly, 1.0);
        }
    }

    // A reload with the detector unchanged keeps its state (no new warm-up); a changed
    // detector starts over.
    let t = t0 + 40_000;
    store.append(&input(40), t, 5.0);
    let mut kept = cfg.build_detectors(None).unwrap();
    kept.carry_state_from(det);
    assert!(kept.tick(&store, t).is_empty());
    assert_eq!(latest(&store, &out("medic_anomaly"), t), Some(1.0));
    let changed = config_yaml(
        r#"
anomaly_detectors:
  latency:
    query: 'request_latency_seconds{job="api"}'
    interval: 1s
    method: zscore
    window: 21
    min_samples: 10
"#,
    );
    let mut fresh = changed.build_detectors(None).unwrap();
    fresh.carry_state_from(kept);
    let t = t + 1000;
    store.append(&input(41), t, 5.0);
    assert!(fresh.tick(&store, t).is_empty());
    assert_eq!(latest(&store, &out("medic_anomaly"), t), Some(0.0));
    // warming up again: no z-score at this evaluation
    let r = store.reader();
    let id = r.lookup(&out("medic_anomaly_zscore")).unwrap();
    assert!(r.latest(id, t, 300_000).unwrap().0 < t);
}

/// The default detector as the daemon runs it: it publishes its score and alarm (no band: it
/// has no centre), the alarm rises on the first rare point and clears after 5 normal ones.
#[test]
fn density_detector_over_the_store() {
    let cfg = config_yaml(
        "anomaly_detectors:\n  latency:\n    query: 'request_latency_seconds'\n    interval: 1s\n    min_samples: 50\n",
    );
    let store = Store::default();
    let mut det = cfg.build_detectors(None).unwrap();
    let input = Labels::new([("__name__", "request_latency_seconds"), ("instance", "a")]);
    let out = |name: &str| {
        Labels::new([
            ("__name__", name),
            ("instance", "a"),
            ("detector", "latency"),
        ])
    };
    let t0 = 1_700_000_000_000i64;
    let values: Vec<f64> = white_noise(3, 400, 0.1, 0.01)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i == 300 { 0.5 } else { v })
        .collect();
    let mut alarm = Vec::new();
    let mut score = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let t = t0 + i as i64 * 1000;
        store.append(&input, t, *v);
        assert!(det.tick(&store, t).is_empty());
        alarm.push(latest(&store, &out("medic_anomaly"), t).unwrap());
        score.push(latest(&store, &out("medic_anomaly_score"), t));
    }
    // warm-up: no score yet, the alarm is 0
    assert!(score[..50].iter().all(Option::is_none));
    assert!(alarm[..50].iter().all(|a| *a == 0.0));
    let score: Vec<f64> = score[50..].iter().map(|s| s.unwrap()).collect();
    // the spike is the top score, above the alarm's 0.5; it raises the alarm, which clears
    // at the 5th normal point after it
    let top_noise = score
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 250)
        .map(|(_, s)| *s)
        .fold(0.0, f64::max);
    assert!(
        score[250] > 0.5 && score[250] > top_noise,
        "{} vs {top_noise}",
        score[250]
    );
    assert_eq!(alarm[299], 0.0);
    assert!(
        alarm[300..305].iter().all(|a| *a == 1.0),
        "{:?}",
        &alarm[300..306]
    );
    assert_eq!(alarm[305], 0.0, "cleared at the 5th normal point");
    for name in [
        "medic_anomaly_zscore",
        "medic_anomaly_upper",
        "medic_anomaly_lower",
    ] {
        assert!(store.reader().lookup(&out(name)).is_none(), "{name}");
    }
}

/// Samples of `labels` in the store (every one ever written within retention).
fn sample_count(store: &Store, labels: &Labels) -> usize {
    let r = store.reader();
    r.lookup(labels).map_or(0, |id| {
        r.samples(id, i64::MIN, i64::MAX)
            .filter(|(_, v)| !medic::store::is_stale(*v))
            .count()
    })
}

/// A 60 s collector and a 15 s detector: each scrape is one point, however often the
/// detector looks (an instant query returns the same sample for 5 minutes); a series that
/// vanishes stops being fed. Both for a plain selector and for a computed query.
#[test]
fn detector_feeds_each_input_point_once() {
    for query in ["cpu_temp", "max by (instance) (cpu_temp) * 1"] {
        let cfg = config_yaml(&format!(
            "anomaly_detectors:\n  temp:\n    query: '{query}'\n    interval: 15s\n    method: zscore\n    window: 30\n    min_samples: 10\n    std_floor: 0.5\n    persistence: {{count: 3}}\n"
        ));
        let store = Store::new(24 * 3_600_000);
        let mut det = cfg.build_detectors(None).unwrap();
        let input = Labels::new([("__name__", "cpu_temp"), ("instance", "a")]);
        let out =
            |name: &str| Labels::new([("__name__", name), ("instance", "a"), ("detector", "temp")]);
        let t0 = 1_700_000_000_000i64;
        let scrapes = 40;
        for tick in 0..scrapes * 4 {
            let t = t0 + tick * 15_000;
            if tick % 4 == 0 {
                let i = tick / 4;
                // one anomalous scrape (at 30): persistence 3 must not fire on it
                let v = if i == 30 { 90.0 } else { 50.0 + (i % 2) as f64 };
                store.append(&input, t, v);
            }
            assert!(det.tick(&store, t).is_empty());
        }
        assert_eq!(
            sample_count(&store, &out("medic_anomaly")),
            scrapes as usize,
            "{query}: one point per scrape"
        );
        let r = store.reader();
        let id = r.lookup(&out("medic_anomaly")).unwrap();
        assert!(
            r.samples(id, i64::MIN, i64::MAX).all(|(_, v)| v == 0.0),
            "{query}: a single anomalous scrape raised the signal"
        );
        let z = r.lookup(&out("medic_anomaly_zscore")).unwrap();
        assert_eq!(
            r.samples(z, i64::MIN, i64::MAX)
                .filter(|(_, v)| *v > 2.0)
                .count(),
            1,
            "{query}"
        );
        drop(r);
        // The series vanishes: 10 more minutes of ticks feed nothing.
        let t_end = t0 + scrapes * 4 * 15_000;
        for tick in 0..40 {
            assert!(det.tick(&store, t_end + tick * 15_000).is_empty());
        }
        assert_eq!(
            sample_count(&store, &out("medic_anomaly")),
            scrapes as usize,
            "{query}: a vanished series was fed"
        );
    }
}

#[test]
fn bad_detector_config_is_reported() {
    let cfg = config_yaml("anomaly_detectors:\n  x: {query: 'rate(foo[5m]', window: 10}\n");
    let e = cfg.build_detectors(None).err().unwrap().to_string();
    assert!(
        e.contains("detector x") && e.contains("rate(foo[5m]"),
        "{e}"
    );
    let cfg = config_yaml("anomaly_detectors:\n  y: {window: 10}\n");
    let e = cfg.build_detectors(None).err().unwrap().to_string();
    assert!(e.contains("detector y") && e.contains("query"), "{e}");
}

/// `medic check -c` rejects what `medic run` rejects: every bad detector and SLO is named,
/// unsupported PromQL included; `Detectors::build` reports all of them, not the first.
#[test]
fn check_validates_detectors_and_slos() {
    let text = r#"
anomaly_detectors:
  tiny: {query: 'node_load1', window: 1}
  native: {query: 'histogram_count(rate(x[5m]))'}
  fine: {query: 'node_load1'}
slos:
  perfect:
    objective: 100
    sli: {probe: {name: api}}
  native:
    objective: 99
    sli:
      events:
        error_query: 'histogram_sum(rate(e[5m]))'
        total_query: 'sum(rate(t[5m]))'
"#;
    let cfg = config_yaml(text);
    let e = cfg.build_detectors(None).err().unwrap();
    assert_eq!(e.0.len(), 4, "{e}");
    let msg = e.to_string();
    for want in [
        "detector tiny",
        "window must be at least 2",
        "detector native",
        "histogram_count",
        "slo perfect",
        "objective",
        "slo native",
        "histogram_sum",
    ] {
        assert!(msg.contains(want), "{want:?} missing in {msg}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("medic.yaml");
    std::fs::write(&path, text).unwrap();
    let mut out = Vec::new();
    let ok = medic::config::check::check_config(&path, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(!ok, "{out}");
    for want in [
        "anomaly_detectors.tiny",
        "anomaly_detectors.native",
        "slos.perfect",
        "slos.native",
    ] {
        assert!(out.contains(want), "{want:?} missing in {out}");
    }
    // A good config still passes.
    std::fs::write(&path, "anomaly_detectors:\n  fine: {query: 'node_load1'}\n").unwrap();
    let mut out = Vec::new();
    assert!(medic::config::check::check_config(&path, &mut out).unwrap());
}

/// The store keeps what detector and SLO queries read.
#[test]
fn detectors_report_the_lookback_they_need() {
    let cfg = config_yaml(
        r#"
anomaly_detectors:
  a: {query: 'avg_over_time(x[2h])'}
slos:
  s:
    objective: 99
    sli:
      events:
        error_query: 'sum(rate(e[{{.window}}] offset 1h))'
        total_query: 'sum(rate(t[{{.window}}]))'
        rate_window: 10m
"#,
    );
    let det = cfg.build_detectors(None).unwrap();
    assert!(det.lookback_needed_ms() >= 2 * 3_600_000);
    let cfg = config_yaml(
        "slos:\n  s:\n    objective: 99\n    sli: {events: {error_query: 'sum(rate(e[5m] offset 3h))', total_query: 'sum(rate(t[5m]))'}}\n",
    );
    let det = cfg.build_detectors(None).unwrap();
    assert!(det.lookback_needed_ms() >= 3 * 3_600_000 + 300_000);
}

const SLO_CONFIG: &str = r#"
slos:
  api:
    objective: 99.9
    window: 30d
    interval: 1m
    sli:
      probe: {name: api}
"#;

#[test]
fn slo_series_from_a_probe() {
    let cfg = config_yaml(SLO_CONFIG);
    let store = Store::new(3_600_000);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let mut det = cfg.build_detectors(Some(&journal)).unwrap();
    let probe = Labels::new([("__name__", "probe_success"), ("probe", "api")]);
    // One evaluation a minute for an hour: the last 5 minutes fail.
    let t0 = (medic::common::time::now_ms() / 60_000) * 60_000 - 3_600_000;
    for m in 0..60 {
        let t = t0 + m * 60_000;
        store.append(&probe, t, if m >= 55 { 0.0 } else { 1.0 });
        assert!(det.tick(&store, t).is_empty());
    }
    let now = t0 + 59 * 60_000;
    let get = |name: &str, window: Option<&str>| {
        let mut l = Labels::new([("__name__", name), ("slo", "api")]);
        if let Some(w) = window {
            l = l.with("window", w);
        }
        latest(&store, &l, now).unwrap_or_else(|| panic!("{name} {window:?} missing"))
    };
    // 5m: 5 of 5 failed → ratio 1, burn 1000; 1h: 5 of 60 → burn 83.33
    assert!((get("medic_slo_sli_error_ratio", Some("5m")) - 1.0).abs() < 1e-12);
    assert!((get("medic_slo_burn_rate", Some("5m")) - 1000.0).abs() < 1e-6);
    assert!((get("medic_slo_burn_rate", Some("1h")) - 5.0 / 60.0 / 0.001).abs() < 1e-6);
    assert!((get("medic_slo_burn_rate", Some("30m")) - 5.0 / 30.0 / 0.001).abs() < 1e-6);
    assert!((get("medic_slo_objective_ratio", None) - 0.999).abs() < 1e-12);
    assert!((get("medic_slo_compliance_ratio", None) - (1.0 - 5.0 / 60.0)).abs() < 1e-12);
    let remaining = get("medic_slo_error_budget_remaining_ratio", None);
    assert!((remaining - (1.0 - 5.0 / 60.0 / 0.001)).abs() < 1e-6);

    // A new process (another build over the same journal) starts with the same budget.
    drop(det);
    let again = cfg.build_detectors(Some(&journal)).unwrap();
    let store2 = Store::new(3_600_000);
    let mut again = again;
    // no probe sample now: the tick records nothing new but publishes the reloaded figures
    assert!(again.tick(&store2, now).is_empty());
    let l = Labels::new([
        ("__name__", "medic_slo_error_budget_remaining_ratio"),
        ("slo", "api"),
    ]);
    assert!((latest(&store2, &l, now).unwrap() - remaining).abs() < 1e-9);
}

/// Builds one SLO from YAML and feeds it minute by minute over `store`, where `scrape(t)`
/// appends the collected series every 15 s; returns the tracker after `minutes` minutes.
fn run_slo(
    yaml: &str,
    minutes: i64,
    mut scrape: impl FnMut(&Store, i64),
) -> (medic::detect::SloTracker, Store, i64) {
    let cfg: medic::detect::SloConfig = serde_saphyr::from_str(yaml).unwrap();
    let mut slo =
        medic::detect::SloTracker::build("s", &cfg, Duration::from_secs(60), None).unwrap();
    let store = Store::new(24 * 3_600_000);
    let t0 = 1_700_000_000_000i64 / 60_000 * 60_000;
    let mut t = t0;
    for step in 0..minutes * 4 {
        t = t0 + step * 15_000;
        scrape(&store, t);
        // the SLI is sampled each minute, once the rate windows have data
        if step % 4 == 3 && step >= 8 {
            slo.evaluate(&store, t).unwrap();
        }
    }
    (slo, store, t)
}

/// The events SLI over real counters: rate × interval events per evaluation, the ratio of
/// the bad and all rates.
#[test]
fn slo_events_sli_over_counters() {
    let yaml = r#"
objective: 99
interval: 1m
sli:
  events:
    error_query: 'sum(rate(req_total{code=~"5.."}[{{.window}}]))'
    total_query: 'sum(rate(req_total[{{.window}}]))'
    rate_window: 2m
"#;
    let ok = Labels::new([("__name__", "req_total"), ("code", "200")]);
    let bad = Labels::new([("__name__", "req_total"), ("code", "500")]);
    // 9.8 good and 0.2 bad requests a second
    let (slo, _, now) = run_slo(yaml, 60, |store, t| {
        let secs = (t - 1_700_000_000_000i64 / 60_000 * 60_000) as f64 / 1000.0;
        store.append(&ok, t, 9.8 * secs);
        store.append(&bad, t, 0.2 * secs);
    });
    let b = slo.budget();
    // 58 evaluations (minutes 2..59), each 60 s of 10 requests/s, 2 % of them bad
    let (errors, total) = b.totals();
    assert!((total - 58.0 * 600.0).abs() < 1e-6, "{total}");
    assert!((errors - 58.0 * 12.0).abs() < 1e-6, "{errors}");
    assert!((b.error_ratio(now, 30) - 0.02).abs() < 1e-9);
    // burn 0.02 / 0.01 = 2; remaining 1 - 2 = -1 over the (1 h of data in the) window
    assert!((b.burn_rate(now, 60) - 2.0).abs() < 1e-9);
    assert!((b.remaining(now) + 1.0).abs() < 1e-9);
}

/// The latency SLI over a classic histogram whose `le` is spelled `1.0`: `threshold: 1`
/// finds the bucket; a threshold that is no bucket bound is warned about.
#[test]
fn slo_latency_sli_over_a_histogram() {
    let bucket = |le: &str| Labels::new([("__name__", "lat_bucket"), ("job", "api"), ("le", le)]);
    let count = Labels::new([("__name__", "lat_count"), ("job", "api")]);
    // 10 requests/s: 6 within 0.5 s, 9 within 1 s
    let scrape = |store: &Store, t: i64| {
        let secs = (t - 1_700_000_000_000i64 / 60_000 * 60_000) as f64 / 1000.0;
        store.append(&bucket("0.5"), t, 6.0 * secs);
        store.append(&bucket("1.0"), t, 9.0 * secs);
        store.append(&bucket("+Inf"), t, 10.0 * secs);
        store.append(&count, t, 10.0 * secs);
    };
    let yaml = |threshold: &str| {
        format!(
            "objective: 99.5\nsli:\n  latency: {{metric: lat, matchers: 'job=\"api\"', threshold: {threshold}, rate_window: 2m}}\n"
        )
    };
    for (threshold, ratio) in [("1", 0.1), ("1.0", 0.1), ("0.5", 0.4), ("+.inf", 0.0)] {
        let (slo, _, now) = run_slo(&yaml(threshold), 30, scrape);
        let b = slo.budget();
        assert!(
            (b.error_ratio(now, 30) - ratio).abs() < 1e-9,
            "threshold {threshold}: {}",
            b.error_ratio(now, 30)
        );
        assert!((b.totals().1 - 28.0 * 600.0).abs() < 1e-6);
        assert!(!slo.latency_bucket_missing(), "{threshold}");
    }
    // 0.75 s is no bucket bound: no request would ever count as slow; it says so.
    let (slo, _, now) = run_slo(&yaml("0.75"), 30, scrape);
    assert!(slo.latency_bucket_missing());
    assert_eq!(slo.budget().error_ratio(now, 30), 0.0);
}

/// A reload that changes an SLO: the new tracker is built (loading the journal) while the
/// old one still records; once the old one has stopped and is handed over, no event of
/// either is lost from the journal or from the new tracker's budget.
#[test]
fn slo_reload_with_a_changed_config_loses_no_events() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("journal.db")).unwrap();
    let v1 =
        "slos:\n  api:\n    objective: 99.9\n    interval: 1s\n    sli: {probe: {name: api}}\n";
    let v2 = v1.replace("99.9", "99.5");
    let (v1, v2) = (config_yaml(v1), config_yaml(&v2));
    let store = Store::new(3_600_000);
    let probe = Labels::new([("__name__", "probe_success"), ("probe", "api")]);
    let minute = medic::common::time::now_ms() / 60_000 * 60_000;
    let tick = |det: &mut Detectors, s: i64, value: f64| {
        let t = minute + s * 1000;
        store.append(&probe, t, value);
        assert!(det.tick(&store, t).is_empty());
    };
    let journal_totals = || {
        journal
            .slo_buckets("api", 0)
            .unwrap()
            .iter()
            .fold((0.0, 0.0), |(e, t), b| (e + b.errors, t + b.total))
    };
    let mut old = v1.build_detectors(Some(&journal)).unwrap();
    tick(&mut old, 1, 0.0); // one bad event
    let mut new = v2.build_detectors(Some(&journal)).unwrap(); // loads it
    tick(&mut old, 2, 1.0); // the old generation records until it is stopped
    assert_eq!(journal_totals(), (1.0, 2.0));
    new.carry_state_from(old);
    tick(&mut new, 3, 1.0);
    assert_eq!(journal_totals(), (1.0, 3.0));
    let ratio = Labels::new([
        ("__name__", "medic_slo_sli_error_ratio"),
        ("slo", "api"),
        ("window", "5m"),
    ]);
    let got = latest(&store, &ratio, minute + 3000).unwrap();
    assert!((got - 1.0 / 3.0).abs() < 1e-12, "{got}");
}

#[test]
fn generated_burn_rate_rules_load_and_match_the_committed_file() {
    let cfg = config_yaml(&std::fs::read_to_string(slo_dir().join("medic.yaml")).unwrap());
    let det = cfg.build_detectors(None).unwrap();
    let yaml = det.slo_rule_file().unwrap();
    // The generated file goes through the ordinary rule loader, remediate: included.
    let groups = medic::rules::file::parse_rule_file(
        std::path::Path::new("<slos>"),
        &yaml,
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(groups.len(), 2);
    // The committed copy (used by the promtool/medic test files) is what medic generates.
    let committed = std::fs::read_to_string(slo_dir().join("rules.yaml")).unwrap();
    assert_eq!(
        yaml, committed,
        "tests/slo/rules.yaml is stale; regenerate it from tests/slo/medic.yaml"
    );
}

fn slo_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slo")
}

#[test]
fn medic_test_and_promtool_pass_the_burn_rate_alert_tests() {
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["test", "burn_rate_test.yaml"])
        .current_dir(slo_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "medic test: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The generated rules are plain Prometheus rules: promtool runs the same test file.
    let out = Command::new("promtool")
        .args(["test", "rules", "burn_rate_test.yaml"])
        .current_dir(slo_dir())
        .output()
        .expect("promtool (Debian package prometheus) must be installed");
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn slo_alerts_carry_remediate_through_the_rule_loader() {
    let cfg = config_yaml(
        r#"
slos:
  inference:
    objective: 99
    sli: {probe: {query: 'probe_success{job="inference"}'}}
    alerts:
      page:
        remediate:
        - action: restart
          target: inference-unit
          cooldown: 10m
      ticket: {enabled: false}
"#,
    );
    let det = cfg.build_detectors(None).unwrap();
    let yaml = det.slo_rule_file().unwrap();
    let groups = medic::rules::file::parse_rule_file(
        std::path::Path::new("<slos>"),
        &yaml,
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].rule_count(), 1);
    assert!(
        yaml.contains("remediate:") && yaml.contains("target: inference-unit"),
        "{yaml}"
    );
}

/// The SLO journal survives SIGKILL: a child process records one probe event per tick and
/// reports each tick; it is killed mid-run; a new tracker over the journal sees every
/// reported tick (at most the one in flight can be missing or present).
#[test]
fn slo_budget_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "slo_journal_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MEDIC_SLO_CHILD_DB", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last_tick = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("tick ") {
            let n: i64 = rest.trim().parse().unwrap();
            last_tick = Some(n);
            if n >= 300 {
                break;
            }
        }
    }
    // SIGKILL mid-run: no destructor, no flush, no clean close of the SQLite file.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // What it reported before dying is still in the pipe.
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(n) = line
            .strip_prefix("tick ")
            .and_then(|r| r.trim().parse().ok())
        {
            last_tick = Some(n);
        }
    }
    let reported = last_tick.expect("child reported ticks");

    let journal = Journal::open(&db).unwrap();
    let cfg = config_yaml(SLO_CONFIG);
    let slo = medic::detect::SloTracker::build(
        "api",
        &cfg.slos["api"],
        Duration::from_secs(60),
        Some(journal),
    )
    .unwrap();
    let (errors, total) = slo.budget().totals();
    let ticks = total as i64;
    assert!(
        ticks == reported || ticks == reported + 1,
        "journal has {ticks} events, child reported {reported}"
    );
    // Every 10th event failed: the budget is exactly what those ticks spent.
    assert_eq!(errors as i64, (ticks + 9) / 10);
}

/// The child side of `slo_budget_survives_sigkill` (does nothing unless started by it).
#[test]
#[ignore]
fn slo_journal_child() {
    let Some(db) = std::env::var_os("MEDIC_SLO_CHILD_DB") else {
        return;
    };
    let cfg = config_yaml(SLO_CONFIG);
    let journal = Journal::open(std::path::Path::new(&db)).unwrap();
    let mut det = cfg.build_detectors(Some(&journal)).unwrap();
    let store = Store::new(3_600_000);
    let probe = Labels::new([("__name__", "probe_success"), ("probe", "api")]);
    // One tick per simulated minute, starting two days ago.
    let t0 = medic::common::time::now_ms() - 2 * 86_400_000;
    for i in 0..1_000_000i64 {
        let t = t0 + i * 60_000;
        store.append(&probe, t, if i % 10 == 0 { 0.0 } else { 1.0 });
        let errs = det.tick(&store, t);
        assert!(errs.is_empty(), "{errs:?}");
        println!("tick {}", i + 1);
    }
}

/// The YAML examples of the README's detect section are valid configs.
#[test]
fn readme_examples_build() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let start = readme.find("<!-- section: detect -->").unwrap();
    let section = &readme[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let mut n = 0;
    for block in section.split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").unwrap()];
        let cfg = config_yaml(yaml);
        let det = cfg
            .build_detectors(None)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        if let Some(rules) = det.slo_rule_file() {
            medic::rules::file::parse_rule_file(
                std::path::Path::new("<slos>"),
                &rules,
                &Default::default(),
            )
            .unwrap_or_else(|e| panic!("{e}\n{rules}"));
        }
        n += 1;
    }
    // density, the 2σ family, SLOs
    assert_eq!(n, 3);
}

/// `medic anomaly score` reads a CSV and writes scores with the daemon's detector.
#[test]
fn anomaly_score_command() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("in.csv");
    let mut text = String::from("timestamp,value\n");
    for i in 0..60 {
        let v = if i == 55 { 50.0 } else { 10.0 + (i % 3) as f64 };
        text.push_str(&format!("2024-05-01 00:{i:02}:00,{v}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args([
            "anomaly",
            "score",
            "--detector",
            "method=zscore,window=20,min_samples=10,persistence.count=1",
        ])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows[0], "timestamp,value,anomaly_score,label");
    assert_eq!(rows.len(), 61);
    assert!(
        rows[56].starts_with("2024-05-01 00:55:00,50,1.000000000,1"),
        "{}",
        rows[56]
    );
    assert!(rows[1].ends_with(",0.000000000,0"), "{}", rows[1]);
    // bad input names the file, line and column
    std::fs::write(&csv, "timestamp,value\n2024-05-01 00:00:00,ten\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["anomaly", "score"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in.csv:2:21") && err.contains("expected a number"),
        "{err}"
    );
}

/// One output row per input row, in the input's order, for every NAB file (NAB's scorer
/// refuses anything else), both output columns. machine_temperature_system_failure.csv goes
/// back in time at line 10151 (11 rows): they are scored too, with one warning naming the
/// line and the count.
#[test]
fn anomaly_score_gives_one_row_per_input_row() {
    let dir = nab_dir();
    let text = std::fs::read_to_string(dir.join("windows.json")).unwrap();
    let files: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(files.len(), 18);
    for name in files.keys() {
        let csv = dir.join(name);
        let input: Vec<String> = std::fs::read_to_string(&csv)
            .unwrap()
            .lines()
            .skip(1)
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect();
        for onsets in [false, true] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_medic"));
            cmd.args(["anomaly", "score"]);
            if onsets {
                cmd.arg("--onsets");
            }
            let out = cmd.arg(&csv).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{name}: {err}");
            let stdout = String::from_utf8(out.stdout).unwrap();
            let output: Vec<&str> = stdout
                .lines()
                .skip(1)
                .map(|l| l.split(',').next().unwrap())
                .collect();
            assert_eq!(output, input, "{name}: one row per input row, in order");
            if name.ends_with("machine_temperature_system_failure.csv") {
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(
                    err.contains("machine_temperature_system_failure.csv:10151:")
                        && err.contains(" 11 out-of-order row(s) scored"),
                    "{err}"
                );
            } else {
                assert!(err.is_empty(), "{name}: {err}");
            }
        }
    }
    // a small file going back and forth in time: still one row each
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("back.csv");
    std::fs::write(
        &csv,
        "timestamp,value\n2024-01-01 00:02:00,1\n2024-01-01 00:01:00,2\n2024-01-01 00:03:00,3\n2024-01-01 00:00:00,4\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(["anomaly", "score"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let values: Vec<&str> = stdout
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap())
        .collect();
    assert_eq!(values, ["1", "2", "3", "4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("back.csv:3:") && err.contains(" 2 out-of-order"),
        "{err}"
    );
}

/// `Detectors::run`, as the daemon spawns it: publishes series until told to stop, then
/// hands itself back for a reload.
#[tokio::test]
async fn run_until_shutdown() {
    let cfg = config_yaml(
        "anomaly_detectors:\n  load:\n    query: node_load1\n    interval: 10ms\n    min_samples: 2\n",
    );
    let store = std::sync::Arc::new(Store::default());
    let input = Labels::from_name("node_load1");
    let now = medic::common::time::now_ms();
    store.append(&input, now, 1.0);
    let det = cfg.build_detectors(None).unwrap();
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(det.run(store.clone(), rx));
    // the default (density) detector publishes its score and alarm
    let out = Labels::new([("__name__", "medic_anomaly_score"), ("detector", "load")]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.reader().lookup(&out).is_none() {
        assert!(std::time::Instant::now() < deadline, "no score published");
        store.append(&input, medic::common::time::now_ms(), 1.0);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    tx.send(true).unwrap();
    let back = tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .expect("run stops on shutdown")
        .unwrap();
    assert!(!back.is_empty());
}

/// `medic run` with an SLO, killed with SIGKILL and started again: the SLO's event counts in
/// the journal are all still there and the new process carries on from them (it does not
/// overwrite the current minute with a fresh count).
#[test]
fn medic_run_slo_budget_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  listen_address: 127.0.0.1:0\n  state_dir: {}\n  evaluation_interval: 100ms\nslos:\n  api:\n    objective: 99\n    interval: 100ms\n    sli: {{probe: {{query: 'vector(0)'}}}}\n",
        dir.path().display()
    );
    let db = dir.path().join("journal.db");
    let totals = || -> (f64, f64) {
        let Ok(j) = Journal::open(&db) else {
            return (0.0, 0.0);
        };
        j.slo_buckets("api", 0)
            .unwrap_or_default()
            .iter()
            .fold((0.0, 0.0), |(e, t), b| (e + b.errors, t + b.total))
    };
    let wait_for = |min_total: f64, floor: f64| -> (f64, f64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let (e, t) = totals();
            assert!(t >= floor, "journal total went down from {floor} to {t}");
            if t >= min_total {
                return (e, t);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {t} SLO events journaled"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let medic = daemon_support::Medic::start(dir.path(), &config);
    let (_, before) = wait_for(20.0, 0.0);
    medic.signal(libc::SIGKILL);
    drop(medic);
    let (errors, after_kill) = totals();
    assert!(after_kill >= before, "{after_kill} < {before}");
    // every event of this SLI failed
    assert_eq!(errors, after_kill);

    let medic = daemon_support::Medic::start(dir.path(), &config);
    let (errors, total) = wait_for(after_kill + 20.0, after_kill);
    assert_eq!(errors, total);
    drop(medic);
}
