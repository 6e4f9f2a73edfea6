//! Helpers for tests/detect.rs: where the NAB data is, seeded noise, the share of time raised.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use medic::detect::anomaly::{AnomalyConfig, SeriesDetector};

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
