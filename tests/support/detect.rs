//! Helpers for tests/detect.rs: the NAB evaluation.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use medic::detect::anomaly::{AnomalyConfig, SeriesDetector, parse_timestamp_ms};

/// `$CARGO_MANIFEST_DIR/../shared/data/nab`, where CI keeps the NAB data (shared/ beside the
/// checkout); a git worktree further down (`.worktrees/NAME`) finds it higher up.
pub fn nab_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        root.join("../shared/data/nab"),
        root.join("../../shared/data/nab"),
        root.join("../../../shared/data/nab"),
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
    /// Windows with an alarm onset (0 → 1) inside them. An alarm already up when a window
    /// begins does not detect it: a detector stuck at 1 must not score.
    pub detected: usize,
    /// Alarm onsets outside every window.
    pub false_positives: usize,
    pub points: usize,
    /// Points after the probation that lie outside every window.
    pub outside_points: usize,
    /// Of those, the points where the signal was up.
    pub raised_outside: usize,
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
    /// Fraction of the points outside windows (after probation) spent raised.
    pub fn raised_outside_frac(&self) -> f64 {
        self.raised_outside as f64 / self.outside_points.max(1) as f64
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

/// Runs `config` over every file and scores its `medic_anomaly` signal.
pub fn evaluate(files: &[NabFile], config: &AnomalyConfig) -> NabScore {
    let p = config.validate("nab").unwrap();
    evaluate_signals(files, |f| {
        let mut det = SeriesDetector::new(&p);
        f.times
            .iter()
            .zip(&f.values)
            .map(|(&t, &v)| det.observe(&p, t, v).anomaly)
            .collect()
    })
}

/// Scores the 0/1 signal `signal(file)` gives for each file (one entry per point).
pub fn evaluate_signals(
    files: &[NabFile],
    mut signal: impl FnMut(&NabFile) -> Vec<bool>,
) -> NabScore {
    let mut score = NabScore::default();
    for f in files {
        score_file(f, &signal(f), &mut score);
    }
    score
}

/// NAB-style scoring of one file: the first onset inside a window detects it (later ones
/// are ignored); every onset outside all windows is a false positive; points in the
/// probation only train.
pub fn score_file(f: &NabFile, signal: &[bool], score: &mut NabScore) {
    assert_eq!(signal.len(), f.values.len(), "{}", f.name);
    let probation = (f.values.len() as f64 * PROBATION) as usize;
    let mut first_hit: Vec<Option<usize>> = vec![None; f.windows.len()];
    let mut was = false;
    for (i, &now) in signal.iter().enumerate() {
        let onset = now && !was;
        was = now;
        if i < probation {
            continue;
        }
        match f.windows.iter().position(|(s, e)| (*s..=*e).contains(&i)) {
            Some(w) => {
                if onset {
                    first_hit[w].get_or_insert(i);
                }
            }
            None => {
                score.outside_points += 1;
                score.raised_outside += now as usize;
                score.false_positives += onset as usize;
            }
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

pub fn table_row(name: &str, s: &NabScore) -> String {
    format!(
        "| {name:<28} | {:>7} | {:>7.2} | {:>13.2}% | {:>9.2} | {:>5.3} | {:>11.1} | {:>11.1}% |",
        format!("{}/{}", s.detected, s.windows),
        s.fp_per_1000(),
        s.raised_outside_frac() * 100.0,
        s.precision(),
        s.f1(),
        s.mean_delay_points(),
        s.mean_delay_frac() * 100.0
    )
}

pub const TABLE_HEADER: &str = "| method                       | windows | FP/1000 | raised outside | precision | F1    | delay (pts) | delay (%win) |\n|------------------------------|---------|---------|----------------|-----------|-------|-------------|--------------|";

/// Seeded N(mean, sd) noise (splitmix64 + Box–Muller): reproducible without a dependency.
pub fn white_noise(seed: u64, n: usize, mean: f64, sd: f64) -> Vec<f64> {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits in (0, 1]
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next(), next());
            mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

/// Fraction of `values` (one a second) for which `config`'s signal is up.
pub fn raised_fraction(config: &AnomalyConfig, values: &[f64]) -> f64 {
    let p = config.validate("noise").unwrap();
    let mut det = SeriesDetector::new(&p);
    let up = values
        .iter()
        .enumerate()
        .filter(|(i, v)| det.observe(&p, *i as i64 * 1000, **v).anomaly)
        .count();
    up as f64 / values.len().max(1) as f64
}
