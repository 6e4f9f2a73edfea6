//! Helpers for tests/detect.rs: the NAB evaluation.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use medic::detect::anomaly::{AnomalyConfig, SeriesDetector, parse_timestamp_ms};

/// `$CARGO_MANIFEST_DIR/../shared/data/nab`, where CI keeps the NAB data (shared/ beside the
/// checkout); a git worktree one level further down finds it at `../../shared`.
pub fn nab_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/data/nab"),
        root.join("../../shared/data/nab"),
    ];
    candidates
        .iter()
        .find(|d| d.join("windows.json").is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "NAB data not found: expected windows.json in {} (shared/ beside the checkout)",
                candidates[0].display()
            )
        })
}

/// One NAB file: values and labelled windows (as index ranges, inclusive).
pub struct NabFile {
    pub name: String,
    pub times: Vec<i64>,
    pub values: Vec<f64>,
    pub windows: Vec<(usize, usize)>,
}

pub fn load_nab() -> Vec<NabFile> {
    let dir = nab_dir();
    let text = std::fs::read_to_string(dir.join("windows.json")).unwrap();
    let windows: std::collections::BTreeMap<String, Vec<[String; 2]>> =
        serde_json::from_str(&text).unwrap();
    windows
        .into_iter()
        .map(|(name, ws)| {
            let csv =
                std::fs::read_to_string(dir.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let (mut times, mut values) = (Vec::new(), Vec::new());
            for line in csv.lines().skip(1) {
                let (t, v) = line.split_once(',').unwrap();
                times.push(parse_timestamp_ms(t).unwrap_or_else(|| panic!("{name}: {t}")));
                values.push(v.trim().parse().unwrap());
            }
            let windows = ws
                .iter()
                .map(|[a, b]| {
                    let (a, b) = (
                        parse_timestamp_ms(a).unwrap(),
                        parse_timestamp_ms(b).unwrap(),
                    );
                    let s = times.partition_point(|t| *t < a);
                    let e = times.partition_point(|t| *t <= b).saturating_sub(1);
                    (s, e)
                })
                .collect();
            NabFile {
                name,
                times,
                values,
                windows,
            }
        })
        .collect()
}

/// Scores of one detector configuration over all files.
#[derive(Debug, Clone, Default)]
pub struct NabScore {
    pub windows: usize,
    pub detected: usize,
    /// Alarms raised (0 → 1) outside every window.
    pub false_positives: usize,
    pub points: usize,
    /// Sum over detected windows of (first onset − window start) / window length.
    pub delay_frac_sum: f64,
    /// Sum over detected windows of the delay in points.
    pub delay_points_sum: usize,
}

impl NabScore {
    pub fn recall(&self) -> f64 {
        self.detected as f64 / self.windows.max(1) as f64
    }
    pub fn fp_per_1000(&self) -> f64 {
        self.false_positives as f64 * 1000.0 / self.points.max(1) as f64
    }
    /// Detected windows over detected windows plus false alarms.
    pub fn precision(&self) -> f64 {
        let d = self.detected + self.false_positives;
        if d == 0 {
            0.0
        } else {
            self.detected as f64 / d as f64
        }
    }
    /// The combined criterion: F1 of window recall and alarm precision.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    pub fn mean_delay_frac(&self) -> f64 {
        self.delay_frac_sum / self.detected.max(1) as f64
    }
    pub fn mean_delay_points(&self) -> f64 {
        self.delay_points_sum as f64 / self.detected.max(1) as f64
    }
}

/// NAB's probationary period: the first 15 % of each file only trains the detector.
pub const PROBATION: f64 = 0.15;

/// Runs `config` over every file, counting alarm onsets after the probation.
pub fn evaluate(files: &[NabFile], config: &AnomalyConfig) -> NabScore {
    let p = config.validate("nab").unwrap();
    let mut score = NabScore::default();
    for f in files {
        let mut det = SeriesDetector::new(&p);
        let probation = (f.values.len() as f64 * PROBATION) as usize;
        let mut first_hit: Vec<Option<usize>> = vec![None; f.windows.len()];
        let mut was = false;
        for (i, (&t, &v)) in f.times.iter().zip(&f.values).enumerate() {
            let now = det.observe(&p, t, v).anomaly;
            let onset = now && !was;
            was = now;
            if !now || i < probation {
                continue;
            }
            // A window is detected when the signal is up anywhere in it; an alarm raised
            // outside every window is a false positive.
            match f.windows.iter().position(|(s, e)| (*s..=*e).contains(&i)) {
                Some(w) => {
                    first_hit[w].get_or_insert(i);
                }
                None if onset => score.false_positives += 1,
                None => {}
            }
        }
        score.points += f.values.len();
        score.windows += f.windows.len();
        for (w, hit) in f.windows.iter().zip(first_hit) {
            if let Some(i) = hit {
                score.detected += 1;
                score.delay_points_sum += i - w.0;
                score.delay_frac_sum += (i - w.0) as f64 / (w.1 - w.0 + 1) as f64;
            }
        }
    }
    score
}

pub fn table_row(name: &str, s: &NabScore) -> String {
    format!(
        "| {name:<28} | {:>2}/{:<2} | {:>6.2} | {:>9.2} | {:>5.3} | {:>10.1} | {:>9.1}% |",
        s.detected,
        s.windows,
        s.fp_per_1000(),
        s.precision(),
        s.f1(),
        s.mean_delay_points(),
        s.mean_delay_frac() * 100.0
    )
}

pub const TABLE_HEADER: &str = "| method                       | windows | FP/1000 | precision | F1    | delay (pts) | delay (%win) |";
