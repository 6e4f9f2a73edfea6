//! Anomaly detectors: per input series, a baseline model says how surprising each point is.
//! `density` (the default, [`super::density`]) scores how rare the value is among the recent
//! ones; the 2σ family (rolling z-score, median/MAD, EWMA) gives a centre and a spread, and a
//! point is anomalous when it lies more than `sigma` spreads from the centre. Persistence and
//! hysteresis turn that into a steady 0/1 signal. The same [`SeriesDetector`] serves the
//! daemon and `medic anomaly score`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Write};

use serde::Deserialize;

use crate::common::Duration;
use crate::promql::{self, Expr, Value};
use crate::store::{Labels, METRIC_NAME, Sample, Store};

use super::DetectError;
use super::density::Density;

/// The baseline model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// How rare the value is among the recent ones (a decaying histogram, `half_life`
    /// samples): high at the start of something new, decaying as it becomes the new normal.
    #[default]
    Density,
    /// Rolling mean and standard deviation over the last `window` samples.
    Zscore,
    /// Rolling median and MAD (scaled to a standard deviation) over the last `window`
    /// samples: the modified z-score, insensitive to the outliers it is looking for.
    Robust,
    /// Exponentially weighted mean and variance (`alpha`, by default `2 / (window + 1)`).
    Ewma,
}

/// Which deviations count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Only values above the band.
    Up,
    /// Only values below the band.
    Down,
    /// Both.
    #[default]
    Both,
}

/// How many anomalous points it takes to raise `medic_anomaly`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persistence {
    /// Raise when at least this many of the last `of` points are outside the band
    /// (default: 1 for `density`, 5 for the 2σ family).
    pub count: u32,
    /// The number of recent points considered (at most 64); defaults to `count`, which
    /// means `count` consecutive points.
    #[serde(default)]
    pub of: Option<u32>,
}

impl Default for Persistence {
    fn default() -> Self {
        Persistence { count: 5, of: None }
    }
}

/// When a raised `medic_anomaly` goes back to 0 (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// A point counts as recovered when its z-score is within this many spreads (default
    /// 0.75 × `sigma`, i.e. 1.5; at most `sigma`). Below `sigma`, the signal stays up until
    /// the series is well inside.
    #[serde(default)]
    pub sigma: Option<f64>,
    /// Consecutive recovered points needed to clear (default 3; `density`: 5 points that are
    /// not rare). Keep it short: on plain noise a run of n points within 1.5σ has
    /// probability 0.87ⁿ, so a long run latches.
    #[serde(default)]
    pub count: Option<u32>,
}

/// An anomaly detector's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// PromQL expression giving the input series (a selector or any expression returning an
    /// instant vector); each of its series gets its own detector state. Required for
    /// detectors in `medic.yaml`; not used by `medic anomaly score`.
    #[serde(default)]
    pub query: Option<String>,
    /// How often the query is evaluated; a series is fed only when it has a newer input
    /// sample than the last one fed, so one scrape is one point. Defaults to
    /// `global.evaluation_interval`.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// Baseline model: `density` (default: it scores best on NAB's own scorer, see README),
    /// `zscore`, `robust` or `ewma`.
    #[serde(default)]
    pub method: Method,
    /// `density`: samples after which a sample's weight in the histogram has halved (its
    /// memory; default 2000).
    #[serde(default)]
    pub half_life: Option<u32>,
    /// `density`: a point is anomalous (outside) when at most this share of the recent
    /// samples fell in its bin, i.e. its tail probability (default 0.001).
    #[serde(default)]
    pub probability: Option<f64>,
    /// Number of samples in the baseline window (for `ewma`, it sets the default `alpha`).
    #[serde(default = "default_window")]
    pub window: u32,
    /// How many standard deviations from the centre make a point anomalous.
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Which side of the band counts: `up`, `down` or `both` (default).
    #[serde(default)]
    pub direction: Direction,
    /// Samples needed before the detector speaks (warm-up); default: half the window, at most
    /// 120 (`density`: 200).
    #[serde(default)]
    pub min_samples: Option<u32>,
    /// Smallest standard deviation used, in the series' unit, so a flat series does not
    /// alarm on tiny changes.
    #[serde(default)]
    pub std_floor: f64,
    /// Smallest standard deviation used, as a fraction of the absolute centre (0.01 = 1 %).
    #[serde(default = "default_std_floor_ratio")]
    pub std_floor_ratio: f64,
    /// Points outside the band needed to raise the signal (`{count: 3}` = 3 in a row,
    /// `{count: 3, of: 5}` = 3 of the last 5).
    #[serde(default)]
    pub persistence: Option<Persistence>,
    /// When the raised signal clears.
    #[serde(default)]
    pub recovery: Recovery,
    /// Smoothing factor of `ewma`, in (0, 1]; default `2 / (window + 1)`.
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Learn anomalous points clipped to the band edge instead of as they are, so a spike
    /// does not inflate the spread it is measured against; a lasting level shift still
    /// moves the band, more slowly.
    #[serde(default = "default_true")]
    pub clip_anomalies: bool,
    /// Seasonal baseline: model the difference from the value one period earlier (e.g.
    /// `1d` for "same time yesterday", `1w` for last week) instead of the value itself.
    /// Keeps one period of samples per series.
    #[serde(default)]
    pub seasonality: Option<Duration>,
}

fn default_window() -> u32 {
    1000
}
fn default_sigma() -> f64 {
    2.0
}
fn default_std_floor_ratio() -> f64 {
    0.01
}
fn default_true() -> bool {
    true
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            query: None,
            interval: None,
            method: Method::default(),
            half_life: None,
            probability: None,
            window: default_window(),
            sigma: default_sigma(),
            direction: Direction::default(),
            min_samples: None,
            std_floor: 0.0,
            std_floor_ratio: default_std_floor_ratio(),
            persistence: None,
            recovery: Recovery::default(),
            alpha: None,
            clip_anomalies: true,
            seasonality: None,
        }
    }
}

impl AnomalyConfig {
    /// Checks the numbers; `name` is used in the message.
    pub fn validate(&self, name: &str) -> Result<Params, DetectError> {
        let bad = |what: String| DetectError::Config {
            detector: name.to_string(),
            message: what,
        };
        if self.window < 2 {
            return Err(bad(format!(
                "window must be at least 2, got {}",
                self.window
            )));
        }
        if !(self.sigma.is_finite() && self.sigma > 0.0) {
            return Err(bad(format!("sigma must be > 0, got {}", self.sigma)));
        }
        if !(self.std_floor >= 0.0 && self.std_floor_ratio >= 0.0) {
            return Err(bad("std_floor and std_floor_ratio must be >= 0".into()));
        }
        let density = self.method == Method::Density;
        let persistence = self.persistence.unwrap_or(if density {
            Persistence { count: 1, of: None }
        } else {
            Persistence::default()
        });
        let of = persistence.of.unwrap_or(persistence.count);
        if persistence.count == 0 || of > 64 || persistence.count > of {
            return Err(bad(format!(
                "persistence needs 1 <= count <= of <= 64, got count {} of {of}",
                persistence.count
            )));
        }
        let half_life = self.half_life.unwrap_or(2000);
        if half_life == 0 {
            return Err(bad("half_life must be at least 1 sample".into()));
        }
        let probability = self.probability.unwrap_or(1e-3);
        if !(probability > 0.0 && probability < 1.0) {
            return Err(bad(format!(
                "probability must be in (0, 1), got {probability}"
            )));
        }
        if density && self.direction != Direction::Both {
            return Err(bad(
                "direction applies to zscore, robust and ewma; density scores both sides".into(),
            ));
        }
        let alpha = self.alpha.unwrap_or(2.0 / (self.window as f64 + 1.0));
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(bad(format!("alpha must be in (0, 1], got {alpha}")));
        }
        let recovery_sigma = self.recovery.sigma.unwrap_or(0.75 * self.sigma);
        if !(recovery_sigma.is_finite() && recovery_sigma >= 0.0 && recovery_sigma <= self.sigma) {
            return Err(bad(format!(
                "recovery.sigma must be between 0 and sigma ({}), got {recovery_sigma}",
                self.sigma
            )));
        }
        if self.seasonality.is_some_and(|s| s.as_millis_i64() <= 0) {
            return Err(bad("seasonality must be a positive duration".into()));
        }
        Ok(Params {
            method: self.method,
            window: self.window as usize,
            sigma: self.sigma,
            direction: self.direction,
            min_samples: self
                .min_samples
                .unwrap_or(if density {
                    200
                } else {
                    (self.window / 2).min(120)
                })
                .max(match self.method {
                    Method::Zscore | Method::Robust => 2,
                    Method::Ewma | Method::Density => 1,
                }) as u64,
            half_life: half_life as f64,
            surprise_limit: -probability.log10(),
            std_floor: self.std_floor,
            std_floor_ratio: self.std_floor_ratio,
            persist_count: persistence.count,
            persist_mask: if of == 64 { u64::MAX } else { (1u64 << of) - 1 },
            recovery_sigma,
            recovery_count: self
                .recovery
                .count
                .unwrap_or(if density { 5 } else { 3 })
                .max(1),
            alpha,
            clip: self.clip_anomalies,
            season_ms: self.seasonality.map(|s| s.as_millis_i64()),
        })
    }

    /// Parses `medic anomaly score --detector SPEC`: either a YAML file holding one
    /// detector's config, or `key=value` pairs separated by commas (`method=zscore,
    /// window=100,persistence.count=3`); dotted keys reach nested fields.
    pub fn from_spec(spec: &str) -> Result<AnomalyConfig, DetectError> {
        let path = std::path::Path::new(spec);
        if !spec.contains('=') && path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| DetectError::Spec {
                spec: spec.to_string(),
                message: e.to_string(),
            })?;
            return serde_saphyr::from_str(&text).map_err(|e| DetectError::Spec {
                spec: spec.to_string(),
                message: e.to_string(),
            });
        }
        let mut root = serde_json::Map::new();
        for (i, part) in spec.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let Some((key, raw)) = part.split_once('=') else {
                return Err(DetectError::Spec {
                    spec: spec.to_string(),
                    message: format!(
                        "item {} ({part:?}): expected key=value, e.g. method=zscore, or a YAML file",
                        i + 1
                    ),
                });
            };
            let value = serde_json::from_str::<serde_json::Value>(raw.trim())
                .ok()
                .filter(|v| v.is_number() || v.is_boolean())
                .unwrap_or_else(|| serde_json::Value::String(raw.trim().to_string()));
            let mut keys: Vec<&str> = key.trim().split('.').collect();
            let last = keys.pop().unwrap_or_default();
            let mut map = &mut root;
            for k in keys {
                let entry = map
                    .entry(k.to_string())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                map = match entry {
                    serde_json::Value::Object(m) => m,
                    _ => {
                        return Err(DetectError::Spec {
                            spec: spec.to_string(),
                            message: format!("{key}: {k} is not a section"),
                        });
                    }
                };
            }
            map.insert(last.to_string(), value);
        }
        serde_json::from_value(serde_json::Value::Object(root)).map_err(|e| DetectError::Spec {
            spec: spec.to_string(),
            message: e.to_string(),
        })
    }
}

/// A validated detector configuration, flattened for the hot path.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub method: Method,
    pub window: usize,
    pub sigma: f64,
    pub direction: Direction,
    pub min_samples: u64,
    /// `density`: the histogram's half-life in samples.
    pub half_life: f64,
    /// `density`: −log10 of `probability`; a point at or above this surprise is outside.
    pub surprise_limit: f64,
    pub std_floor: f64,
    pub std_floor_ratio: f64,
    pub persist_count: u32,
    pub persist_mask: u64,
    pub recovery_sigma: f64,
    pub recovery_count: u32,
    pub alpha: f64,
    pub clip: bool,
    pub season_ms: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Baseline models

/// Rolling mean and variance over a ring buffer, O(1) per update: Welford's update with
/// removal of the sample leaving the window. Rounding error of the sliding update grows with
/// the magnitude of its terms, not with the variance (after a jump from 1e9 to noise of
/// 1e-3 it dwarfs M2), so that magnitude is tracked and the window recomputed exactly (two
/// passes) once ε × magnitude is no longer small against M2; at most once per `window / 32`
/// updates, which keeps the cost O(1) amortised.
#[derive(Debug, Clone)]
pub struct RollingStats {
    buf: Box<[f64]>,
    head: usize,
    len: usize,
    mean: f64,
    m2: f64,
    since_exact: usize,
    /// Sum of the magnitudes of the sliding updates since the last exact pass: their
    /// rounding error is at most a few ε times this.
    err: f64,
}

/// Recompute once the rounding error bound reaches this share of M2.
const REL_ERROR_BOUND: f64 = 1e-4;

impl RollingStats {
    pub fn new(window: usize) -> Self {
        RollingStats {
            buf: vec![0.0; window.max(1)].into_boxed_slice(),
            head: 0,
            len: 0,
            mean: 0.0,
            m2: 0.0,
            since_exact: 0,
            err: 0.0,
        }
    }

    #[inline]
    pub fn push(&mut self, x: f64) {
        let cap = self.buf.len();
        if self.len < cap {
            let mut i = self.head + self.len;
            if i >= cap {
                i -= cap;
            }
            self.buf[i] = x;
            self.len += 1;
            let d = x - self.mean;
            self.mean += d / self.len as f64;
            self.m2 += d * (x - self.mean);
        } else {
            let old = std::mem::replace(&mut self.buf[self.head], x);
            self.head += 1;
            if self.head == cap {
                self.head = 0;
            }
            let old_mean = self.mean;
            let dx = x - old;
            self.mean += dx / cap as f64;
            let (a, b) = (x - self.mean, old - old_mean);
            self.m2 += dx * (a + b);
            // the terms' size (and the mean's, whose own rounding feeds every later term)
            self.err += dx.abs() * (a.abs() + b.abs() + self.mean.abs());
            if self.m2 < 0.0 {
                self.m2 = 0.0;
            }
            self.since_exact += 1;
            if self.err * f64::EPSILON > REL_ERROR_BOUND * self.m2
                && self.since_exact >= (cap / 32).max(1)
            {
                self.recompute();
            }
        }
    }

    fn recompute(&mut self) {
        self.since_exact = 0;
        self.err = 0.0;
        let n = self.len as f64;
        let vals = &self.buf[..self.len.min(self.buf.len())];
        let mean = vals.iter().sum::<f64>() / n;
        self.mean = mean;
        self.m2 = vals.iter().map(|v| (v - mean) * (v - mean)).sum();
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation of the window.
    pub fn std(&self) -> f64 {
        if self.len == 0 {
            0.0
        } else {
            (self.m2 / self.len as f64).sqrt()
        }
    }
}

/// Rolling median and MAD over a window: a sorted copy of the window (binary search, one
/// memmove per update) beside the ring buffer that remembers arrival order.
#[derive(Debug, Clone)]
pub struct RollingMedian {
    ring: RollingRing,
    sorted: Vec<f64>,
}

#[derive(Debug, Clone)]
struct RollingRing {
    buf: Box<[f64]>,
    head: usize,
    len: usize,
}

/// 1 / Φ⁻¹(3/4): scales a MAD to a standard deviation for normal data.
pub const MAD_TO_STD: f64 = 1.482_602_218_505_602;

impl RollingMedian {
    pub fn new(window: usize) -> Self {
        RollingMedian {
            ring: RollingRing {
                buf: vec![0.0; window.max(1)].into_boxed_slice(),
                head: 0,
                len: 0,
            },
            sorted: Vec::with_capacity(window.max(1)),
        }
    }

    pub fn push(&mut self, x: f64) {
        let r = &mut self.ring;
        let cap = r.buf.len();
        if r.len == cap {
            let old = std::mem::replace(&mut r.buf[r.head], x);
            r.head = (r.head + 1) % cap;
            let i = self.sorted.partition_point(|v| v.total_cmp(&old).is_lt());
            self.sorted.remove(i);
        } else {
            r.buf[(r.head + r.len) % cap] = x;
            r.len += 1;
        }
        let i = self.sorted.partition_point(|v| v.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    pub fn median(&self) -> f64 {
        median_sorted(&self.sorted)
    }

    /// Median absolute deviation from the median.
    pub fn mad(&self) -> f64 {
        let s = &self.sorted;
        let n = s.len();
        if n == 0 {
            return 0.0;
        }
        let med = median_sorted(s);
        // Deviations left of the median, read right to left, and right of it, read left to
        // right, are each sorted ascending: merge them up to the middle rank.
        let split = s.partition_point(|v| *v < med);
        let (mut l, mut r) = (split, split);
        let mut kth = |k: usize| -> f64 {
            let mut last = 0.0;
            for _ in 0..=k {
                let dl = if l > 0 { med - s[l - 1] } else { f64::INFINITY };
                let dr = if r < n { s[r] - med } else { f64::INFINITY };
                if dl <= dr {
                    l -= 1;
                    last = dl;
                } else {
                    r += 1;
                    last = dr;
                }
            }
            last
        };
        if n % 2 == 1 {
            kth(n / 2)
        } else {
            let a = kth(n / 2 - 1);
            let b = kth(0);
            (a + b) / 2.0
        }
    }
}

impl RollingMedian {
    /// The MAD scaled to a standard deviation; when more than half the window equals the
    /// median (a mostly-zero series) the MAD is 0, and the mean absolute deviation scaled
    /// the same way (× √(π/2)) is used instead, as in the usual modified z-score.
    pub fn spread(&self) -> f64 {
        let mad = self.mad();
        if mad > 0.0 || self.sorted.is_empty() {
            return mad * MAD_TO_STD;
        }
        let med = self.median();
        let mean_ad =
            self.sorted.iter().map(|v| (v - med).abs()).sum::<f64>() / self.sorted.len() as f64;
        mean_ad * MEAN_AD_TO_STD
    }
}

/// √(π/2): scales a mean absolute deviation to a standard deviation for normal data.
pub const MEAN_AD_TO_STD: f64 = 1.253_314_137_315_500_3;

fn median_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => s[n / 2],
        _ => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Exponentially weighted mean and variance (West's incremental form), bias-corrected:
/// the first sample starts with weight 1, so early on the weighted (population) variance is
/// far too small (with α = 2/1001, 0.39 of the true value after 120 samples); it is divided
/// by 1 − Σwᵢ² (the unbiased estimate for reliability weights; for equal weights, n − 1).
#[derive(Debug, Clone)]
pub struct Ewma {
    alpha: f64,
    mean: f64,
    var: f64,
    /// Σwᵢ² of the current weights (1 after the first sample, → α/(2−α) in steady state).
    w2: f64,
    n: u64,
}

impl Ewma {
    pub fn new(alpha: f64) -> Self {
        Ewma {
            alpha,
            mean: 0.0,
            var: 0.0,
            w2: 1.0,
            n: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, x: f64) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
            self.w2 = 1.0;
        } else {
            let d = x - self.mean;
            let inc = self.alpha * d;
            self.mean += inc;
            self.var = (1.0 - self.alpha) * (self.var + d * inc);
            let keep = 1.0 - self.alpha;
            self.w2 = keep * keep * self.w2 + self.alpha * self.alpha;
        }
        self.n += 1;
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    /// The bias-corrected standard deviation (0 from a single sample).
    pub fn std(&self) -> f64 {
        let denom = 1.0 - self.w2;
        if denom > 0.0 {
            (self.var / denom).sqrt()
        } else {
            0.0
        }
    }
}

// The default method's histogram stays inline: boxing it would add a pointer chase per
// sample to save ~300 bytes on series of the other methods.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Model {
    Density(Density),
    Zscore(RollingStats),
    Robust(RollingMedian),
    Ewma(Ewma),
}

impl Model {
    fn new(p: &Params) -> Model {
        match p.method {
            Method::Density => Model::Density(Density::new(p.half_life)),
            Method::Zscore => Model::Zscore(RollingStats::new(p.window)),
            Method::Robust => Model::Robust(RollingMedian::new(p.window)),
            Method::Ewma => Model::Ewma(Ewma::new(p.alpha)),
        }
    }

    /// Centre and spread (a standard deviation) of what was seen so far.
    #[inline]
    fn estimate(&self) -> (f64, f64) {
        match self {
            Model::Density(_) => (f64::NAN, f64::NAN),
            Model::Zscore(m) => (m.mean(), m.std()),
            Model::Robust(m) => (m.median(), m.spread()),
            Model::Ewma(m) => (m.mean(), m.std()),
        }
    }

    #[inline]
    fn push(&mut self, x: f64) {
        match self {
            Model::Density(m) => m.push(x),
            Model::Zscore(m) => m.push(x),
            Model::Robust(m) => m.push(x),
            Model::Ewma(m) => m.push(x),
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Model::Density(m) => m.heap_bytes(),
            Model::Zscore(m) => m.buf.len() * 8,
            Model::Robust(m) => m.ring.buf.len() * 8 + m.sorted.capacity() * 8,
            Model::Ewma(_) => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// One series

/// What the detector says about one point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// False during warm-up: then `z`, `upper` and `lower` are NaN and nothing is raised.
    pub warm: bool,
    /// Distance from the centre in (floored) standard deviations, signed.
    pub z: f64,
    /// The band: values above `upper` or below `lower` are outside.
    pub upper: f64,
    pub lower: f64,
    /// This point alone is outside the band (in the configured direction); for `density`:
    /// its tail probability is at most `probability`.
    pub outside: bool,
    /// The signal after persistence and hysteresis (`medic_anomaly`).
    pub anomaly: bool,
    /// How anomalous the point is, in 0..1 (`medic_anomaly_score`, NAB's `anomaly_score`); 0
    /// during warm-up. `density`: s / (s + s₀), s the surprise (−log10 of the point's tail
    /// probability), s₀ the alarm's (−log10 `probability`): never reaches 1, so the rarest
    /// points do not tie, and 0.5 is the alarm threshold. 2σ family: erf(|z|/√2) in the
    /// configured direction (2σ gives 0.954).
    pub score: f64,
}

/// A z-score mapped to 0..1 (the two-sided normal confidence of the deviation in the
/// configured direction; 2σ gives 0.954).
fn z_score_01(z: f64, direction: Direction) -> f64 {
    let d = directed(z, direction);
    if z.is_nan() || d <= 0.0 {
        0.0
    } else if d.is_infinite() {
        1.0
    } else {
        statrs::function::erf::erf(d / std::f64::consts::SQRT_2)
    }
}

#[inline]
fn directed(z: f64, dir: Direction) -> f64 {
    match dir {
        Direction::Up => z,
        Direction::Down => -z,
        Direction::Both => z.abs(),
    }
}

/// Detector state for one series.
#[derive(Debug, Clone)]
pub struct SeriesDetector {
    model: Model,
    seen: u64,
    /// Bit i: the point i steps ago was outside the band.
    recent: u64,
    raised: bool,
    calm: u32,
    /// `(timestamp, value)` of the last period, for the seasonal baseline; anomalous points
    /// are remembered as what was expected, so a spike does not echo one period later.
    history: VecDeque<(i64, f64)>,
    /// Typical spacing of the input (ms), for the seasonal baseline: a reference further
    /// than this from one period ago is stale (there was a gap).
    spacing_ms: f64,
}

impl SeriesDetector {
    pub fn new(p: &Params) -> Self {
        SeriesDetector {
            model: Model::new(p),
            seen: 0,
            recent: 0,
            raised: false,
            calm: 0,
            history: VecDeque::new(),
            spacing_ms: 0.0,
        }
    }

    /// Feeds one point and says what it is.
    #[inline]
    pub fn observe(&mut self, p: &Params, t_ms: i64, value: f64) -> Verdict {
        let mut cold = Verdict {
            warm: false,
            z: f64::NAN,
            upper: f64::NAN,
            lower: f64::NAN,
            outside: false,
            anomaly: false,
            score: 0.0,
        };
        if !value.is_finite() {
            // NaN/Inf (and stale markers) carry no information about the baseline.
            cold.anomaly = self.raised;
            return cold;
        }
        let (x, offset) = match p.season_ms {
            None => (value, 0.0),
            Some(period) => match self.seasonal_reference(t_ms, period) {
                Some(reference) => (value - reference, reference),
                None => {
                    self.history.push_back((t_ms, value));
                    return cold;
                }
            },
        };
        if self.seen < p.min_samples {
            self.model.push(x);
            self.seen += 1;
            if p.season_ms.is_some() {
                self.history.push_back((t_ms, value));
            }
            return cold;
        }
        let mut v = Verdict { warm: true, ..cold };
        // `calm`: the point counts towards clearing a raised signal.
        let (calm, learned, remembered) = match &self.model {
            Model::Density(m) => {
                let surprise = m.surprise(x);
                v.outside = surprise >= p.surprise_limit;
                v.score = surprise / (surprise + p.surprise_limit);
                // a rare point is remembered as the reference, so it does not echo
                let remembered = if v.outside && p.clip { offset } else { value };
                (!v.outside, x, remembered)
            }
            _ => {
                let (center, spread) = self.model.estimate();
                // The relative floor is relative to the level of the series itself (for the
                // seasonal baseline: the expected value, not the mean difference, which is ≈ 0).
                let spread = spread
                    .max(p.std_floor)
                    .max(p.std_floor_ratio * (offset + center).abs());
                let z = if spread > 0.0 {
                    (x - center) / spread
                } else if x == center {
                    0.0
                } else {
                    (x - center).signum() * f64::INFINITY
                };
                let dz = directed(z, p.direction);
                let band = p.sigma * spread;
                v.z = z;
                v.outside = dz > p.sigma;
                v.upper = offset + center + band;
                v.lower = offset + center - band;
                v.score = z_score_01(z, p.direction);
                let learned = if v.outside && p.clip && spread > 0.0 {
                    x.clamp(center - band, center + band)
                } else {
                    x
                };
                // An anomalous point is remembered as expected: kept raw (or at the band
                // edge), it would make the same time next period look anomalous in turn.
                let remembered = if v.outside && p.clip {
                    offset + center
                } else {
                    value
                };
                (dz <= p.recovery_sigma, learned, remembered)
            }
        };
        self.recent = (self.recent << 1) | v.outside as u64;
        if self.raised {
            if calm {
                self.calm += 1;
                if self.calm >= p.recovery_count {
                    self.raised = false;
                    self.calm = 0;
                }
            } else {
                self.calm = 0;
            }
        } else if (self.recent & p.persist_mask).count_ones() >= p.persist_count {
            self.raised = true;
            self.calm = 0;
        }
        self.model.push(learned);
        self.seen += 1;
        if p.season_ms.is_some() {
            self.history.push_back((t_ms, remembered));
        }
        v.anomaly = self.raised;
        v
    }

    /// The value one period before `t_ms` (the newest sample at or before `t_ms - period`),
    /// or None when there is none close enough to that time (not a period of data yet, or a
    /// gap in the data back then). The caller records the point afterwards.
    fn seasonal_reference(&mut self, t_ms: i64, period: i64) -> Option<f64> {
        if let Some(&(last, _)) = self.history.back() {
            // Typical spacing: an average that a single gap moves little (a step counts at
            // most twice the current estimate).
            let dt = (t_ms - last).max(0) as f64;
            self.spacing_ms = if self.spacing_ms == 0.0 {
                dt
            } else {
                self.spacing_ms + 0.1 * (dt.min(2.0 * self.spacing_ms) - self.spacing_ms)
            };
        }
        let target = t_ms - period;
        // Keep one sample at or before the target, drop older ones.
        while self.history.len() >= 2 && self.history[1].0 <= target {
            self.history.pop_front();
        }
        let &(t_ref, v) = self.history.front()?;
        // Jitter allowed up to 1.5 spacings; further back, the data had a gap there.
        (t_ref <= target && (target - t_ref) as f64 <= 1.5 * self.spacing_ms + 1.0).then_some(v)
    }

    /// Approximate memory held by this series' state, in bytes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.model.heap_bytes() + self.history.capacity() * 16
    }
}

// ---------------------------------------------------------------------------------------
// The daemon side: one configured detector over the store

/// Output series names.
pub const ZSCORE: &str = "medic_anomaly_zscore";
pub const UPPER: &str = "medic_anomaly_upper";
pub const LOWER: &str = "medic_anomaly_lower";
pub const ANOMALY: &str = "medic_anomaly";
pub const SCORE: &str = "medic_anomaly_score";

struct Tracked {
    state: SeriesDetector,
    /// Output label sets, built once: zscore, upper, lower, anomaly, score.
    out: [Labels; 5],
    last_seen_ms: i64,
    /// Timestamp of the newest input sample fed (per-series mode).
    last_input_ms: i64,
}

/// How the detector tells that new input data arrived, so each input point is fed once
/// however often the detector is evaluated (an instant query returns the last sample again
/// until a newer one comes, for the 5 m lookback).
enum Freshness {
    /// The query is a plain selector: each series is fed when its own newest sample is newer
    /// than the last one fed.
    PerSeries,
    /// Any other query: every series is fed when the newest sample among the series its
    /// selectors match (`max(timestamp(sel))` for each) has advanced.
    Newest(Vec<Expr>),
    /// No selector at all (`vector(1)`): the value is computed anew at each evaluation.
    Always,
}

impl Freshness {
    fn of(expr: &Expr) -> Result<Freshness, promql::PromqlError> {
        let mut sels = Vec::new();
        collect_selectors(expr, &mut sels);
        if sels.is_empty() {
            return Ok(Freshness::Always);
        }
        if let Expr::VectorSelector(vs) = unwrap_parens(expr)
            && vs.offset.is_none()
            && vs.at.is_none()
        {
            return Ok(Freshness::PerSeries);
        }
        let exprs = sels
            .into_iter()
            .map(|mut vs| {
                // the newest raw sample, wherever offset/@ make the query read
                vs.offset = None;
                vs.at = None;
                promql::parse(&format!("max(timestamp({vs}))"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Freshness::Newest(exprs))
    }
}

fn unwrap_parens(e: &Expr) -> &Expr {
    match e {
        Expr::Paren(p) => unwrap_parens(&p.expr),
        other => other,
    }
}

/// Every vector selector of `e` (those inside range selectors included).
fn collect_selectors(e: &Expr, out: &mut Vec<promql_parser::parser::VectorSelector>) {
    match e {
        Expr::VectorSelector(vs) => out.push(vs.clone()),
        Expr::MatrixSelector(ms) => out.push(ms.vs.clone()),
        Expr::Paren(p) => collect_selectors(&p.expr, out),
        Expr::Unary(u) => collect_selectors(&u.expr, out),
        Expr::Subquery(s) => collect_selectors(&s.expr, out),
        Expr::Binary(b) => {
            collect_selectors(&b.lhs, out);
            collect_selectors(&b.rhs, out);
        }
        Expr::Aggregate(a) => {
            if let Some(p) = &a.param {
                collect_selectors(p, out);
            }
            collect_selectors(&a.expr, out);
        }
        Expr::Call(c) => c.args.args.iter().for_each(|a| collect_selectors(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// One configured anomaly detector and the state of each series it follows.
pub struct AnomalyDetector {
    name: String,
    config: AnomalyConfig,
    params: Params,
    expr: Expr,
    freshness: Freshness,
    /// The newest input timestamp fed (`Freshness::Newest`).
    last_input_ms: i64,
    interval_ms: i64,
    series: HashMap<Labels, Tracked>,
}

impl AnomalyDetector {
    pub fn build(
        name: &str,
        config: &AnomalyConfig,
        default_interval: Duration,
    ) -> Result<Self, DetectError> {
        let params = config.validate(name)?;
        let query = config.query.as_deref().ok_or_else(|| DetectError::Config {
            detector: name.to_string(),
            message: "`query` is required: the PromQL giving the series to watch".into(),
        })?;
        let expr = promql::parse(query).map_err(|e| DetectError::Query {
            detector: name.to_string(),
            query: query.to_string(),
            message: e.to_string(),
        })?;
        let query_err = |e: promql::PromqlError| DetectError::Query {
            detector: name.to_string(),
            query: query.to_string(),
            message: e.to_string(),
        };
        promql::check_supported(&expr).map_err(query_err)?;
        let freshness = Freshness::of(&expr).map_err(query_err)?;
        let interval_ms = config
            .interval
            .unwrap_or(default_interval)
            .as_millis_i64()
            .max(1);
        Ok(AnomalyDetector {
            name: name.to_string(),
            config: config.clone(),
            params,
            expr,
            freshness,
            last_input_ms: i64::MIN,
            interval_ms,
            series: HashMap::new(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config(&self) -> &AnomalyConfig {
        &self.config
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// Number of series followed.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Takes over the per-series state of `old` (same name and config, before a reload).
    pub fn adopt(&mut self, old: AnomalyDetector) {
        self.series = old.series;
        self.last_input_ms = old.last_input_ms;
    }

    /// How far back the query reads (for the store's retention).
    pub fn lookback_needed_ms(&self) -> i64 {
        promql::max_lookback_ms(&self.expr)
    }

    /// Evaluates the query at `now_ms`, feeds each series that has a new input point and
    /// returns the output samples. Series absent for `window` evaluations are forgotten and
    /// their outputs marked stale.
    pub fn evaluate(&mut self, store: &Store, now_ms: i64) -> Result<Vec<Sample>, DetectError> {
        let reader = store.reader();
        let opts = promql::EvalOptions::default();
        let eval = |e: &Expr| {
            promql::eval_with_reader(&reader, e, now_ms, &opts).map_err(|e| DetectError::Eval {
                detector: self.name.clone(),
                message: e.to_string(),
            })
        };
        // For a computed query: the time of the newest input sample, or None when nothing
        // arrived since the last point fed.
        let batch_t = match &self.freshness {
            Freshness::PerSeries => None,
            Freshness::Always => Some(now_ms),
            Freshness::Newest(exprs) => {
                let mut newest = None::<f64>;
                for e in exprs {
                    if let Value::Vector(v) = eval(e)? {
                        for s in v.iter().filter(|s| s.value.is_finite()) {
                            newest = Some(newest.map_or(s.value, |n| n.max(s.value)));
                        }
                    }
                }
                newest
                    .map(|secs| (secs * 1000.0).round() as i64)
                    .filter(|t| *t > self.last_input_ms)
            }
        };
        if let Freshness::Newest(_) = self.freshness {
            match batch_t {
                // Nothing new: nothing to feed, and nothing learnt about which series are
                // still there.
                None => return Ok(Vec::new()),
                Some(t) => self.last_input_ms = t,
            }
        }
        let value = eval(&self.expr)?;
        let input = match value {
            Value::Vector(v) => v,
            Value::Scalar { value, .. } => vec![Sample::new(Labels::default(), now_ms, value)],
            other => {
                return Err(DetectError::Eval {
                    detector: self.name.clone(),
                    message: format!(
                        "query must return an instant vector or a scalar, got {}",
                        value_kind(&other)
                    ),
                });
            }
        };
        let mut out = Vec::with_capacity(input.len() * 5);
        for s in input {
            // The input point's own time: the sample's for a plain selector, the newest
            // input's otherwise.
            let input_t = match batch_t {
                Some(t) => t,
                None => match reader
                    .lookup(&s.labels)
                    .and_then(|id| reader.latest(id, now_ms, promql::LOOKBACK_DELTA_MS))
                {
                    Some((t, _)) => t,
                    None => continue,
                },
            };
            let tracked = match self.series.get_mut(&s.labels) {
                Some(t) => t,
                None => {
                    let base = s.labels.without_name().with("detector", &self.name);
                    let out_labels =
                        [ZSCORE, UPPER, LOWER, ANOMALY, SCORE].map(|n| base.with(METRIC_NAME, n));
                    self.series.entry(s.labels.clone()).or_insert(Tracked {
                        state: SeriesDetector::new(&self.params),
                        out: out_labels,
                        last_seen_ms: now_ms,
                        last_input_ms: i64::MIN,
                    })
                }
            };
            tracked.last_seen_ms = now_ms;
            if input_t <= tracked.last_input_ms {
                continue; // this point was fed already
            }
            tracked.last_input_ms = input_t;
            let v = tracked.state.observe(&self.params, input_t, s.value);
            if v.warm {
                // the band exists for the 2σ family only (`density` has no centre)
                for (labels, x) in tracked.out[..3].iter().zip([v.z, v.upper, v.lower]) {
                    if !x.is_nan() {
                        out.push(Sample::new(labels.clone(), now_ms, x));
                    }
                }
                out.push(Sample::new(tracked.out[4].clone(), now_ms, v.score));
            }
            out.push(Sample::new(
                tracked.out[3].clone(),
                now_ms,
                if v.anomaly { 1.0 } else { 0.0 },
            ));
        }
        let horizon = self.interval_ms.saturating_mul(self.params.window as i64);
        self.series.retain(|_, t| {
            let keep = now_ms - t.last_seen_ms <= horizon;
            if !keep {
                for l in &t.out {
                    out.push(Sample::new(l.clone(), now_ms, crate::store::stale_nan()));
                }
            }
            keep
        });
        Ok(out)
    }

    /// Approximate memory held by the per-series state, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.series
            .iter()
            .map(|(k, t)| {
                t.state.memory_bytes()
                    + std::mem::size_of::<Tracked>()
                    + k.iter().map(|(a, b)| a.len() + b.len() + 48).sum::<usize>() * 5
            })
            .sum()
    }
}

fn value_kind(v: &Value) -> &'static str {
    match v {
        Value::Scalar { .. } => "a scalar",
        Value::String(_) => "a string",
        Value::Vector(_) => "an instant vector",
        Value::Matrix(_) => "a range vector",
    }
}

// ---------------------------------------------------------------------------------------
// CSV scoring (`medic anomaly score`)

/// One scored CSV row.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub timestamp: String,
    pub value: f64,
    pub verdict: Verdict,
}

/// Rows of a CSV whose timestamp went backwards (scored as if at the newest time read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutOfOrder {
    /// Line number of the first one.
    pub first_line: Option<usize>,
    pub count: usize,
}

/// Reads a `timestamp,value` CSV (header optional; timestamps as RFC 3339, `YYYY-MM-DD
/// HH:MM:SS`, or Unix seconds) and runs one detector over it, the same [`SeriesDetector`]
/// the daemon uses. `source` names the input in errors. Every data row gives one output row
/// (NAB needs one per input row): a row older than the newest one read is fed as if it came
/// at the newest time (NAB's machine_temperature_system_failure.csv has 11); the caller
/// reports them ([`OutOfOrder`]).
pub fn score_csv<R: BufRead>(
    config: &AnomalyConfig,
    source: &str,
    input: R,
) -> Result<(Params, Vec<ScoredPoint>, OutOfOrder), DetectError> {
    let params = config.validate("command line")?;
    let mut det = SeriesDetector::new(&params);
    let mut out = Vec::new();
    let mut prev_ms = i64::MIN;
    let mut out_of_order = OutOfOrder::default();
    for (i, line) in input.lines().enumerate() {
        let lineno = i + 1;
        let csv_err = |column: usize, message: String| DetectError::Csv {
            source_name: source.to_string(),
            line: lineno,
            column,
            message,
        };
        let line = line.map_err(|e| csv_err(1, e.to_string()))?;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let Some((ts, val)) = line.split_once(',') else {
            return Err(csv_err(
                1,
                "expected two columns `timestamp,value`".to_string(),
            ));
        };
        let value_col = ts.len() + 2;
        let value: f64 = match val.trim().parse() {
            Ok(v) => v,
            Err(_) if i == 0 => continue, // the header
            Err(_) => {
                return Err(csv_err(
                    value_col,
                    format!("expected a number, got {:?}", val.trim()),
                ));
            }
        };
        let t_ms = parse_timestamp_ms(ts.trim()).ok_or_else(|| {
            csv_err(
                1,
                format!(
                    "expected a timestamp (RFC 3339, `YYYY-MM-DD HH:MM:SS` or Unix seconds), got {:?}",
                    ts.trim()
                ),
            )
        })?;
        if t_ms < prev_ms {
            out_of_order.first_line.get_or_insert(lineno);
            out_of_order.count += 1;
        }
        prev_ms = prev_ms.max(t_ms);
        let verdict = det.observe(&params, prev_ms, value);
        out.push(ScoredPoint {
            timestamp: ts.trim().to_string(),
            value,
            verdict,
        });
    }
    Ok((params, out, out_of_order))
}

/// What `write_scores` puts in the `anomaly_score` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScoreColumn {
    /// The detector's score in 0..1 (the `medic_anomaly_score` series).
    #[default]
    Score,
    /// 1 at each alarm onset (`medic_anomaly` going 0 → 1), else 0: the alarm as NAB scores
    /// a daemon's rule, with a fixed threshold of 0.5.
    Onsets,
}

/// Writes `timestamp,value,anomaly_score,label` (label: `medic_anomaly`, 0/1).
pub fn write_scores<W: Write>(
    points: &[ScoredPoint],
    column: ScoreColumn,
    mut out: W,
) -> std::io::Result<()> {
    writeln!(out, "timestamp,value,anomaly_score,label")?;
    let mut was_up = false;
    for p in points {
        let up = p.verdict.anomaly;
        let score = match column {
            ScoreColumn::Score => p.verdict.score,
            ScoreColumn::Onsets => (up && !was_up) as u8 as f64,
        };
        was_up = up;
        // 9 decimals: the score never reaches 1, and rows must not tie needlessly
        writeln!(out, "{},{},{score:.9},{}", p.timestamp, p.value, up as u8)?;
    }
    out.flush()
}

/// Milliseconds since the Unix epoch from RFC 3339 (a space instead of `T` and a missing
/// zone, read as UTC, are accepted) or from Unix seconds.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    if let Ok(secs) = s.parse::<f64>() {
        return secs.is_finite().then(|| (secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut AnomalyConfig)) -> Params {
        let mut c = AnomalyConfig {
            method: Method::Zscore,
            std_floor_ratio: 0.0,
            clip_anomalies: false,
            persistence: Some(Persistence { count: 1, of: None }),
            recovery: Recovery {
                sigma: Some(2.0),
                count: Some(1),
            },
            ..AnomalyConfig::default()
        };
        f(&mut c);
        c.validate("t").unwrap()
    }

    fn run(p: &Params, xs: &[f64]) -> Vec<Verdict> {
        let mut d = SeriesDetector::new(p);
        xs.iter()
            .enumerate()
            .map(|(i, x)| d.observe(p, i as i64 * 1000, *x))
            .collect()
    }

    #[test]
    fn rolling_stats_match_hand_computed() {
        let mut s = RollingStats::new(4);
        for x in [2.0, 4.0, 4.0, 4.0] {
            s.push(x);
        }
        // mean 3.5, population variance ((1.5² + 3·0.5²)/4) = 0.75
        assert!((s.mean() - 3.5).abs() < 1e-12);
        assert!((s.std() - 0.75f64.sqrt()).abs() < 1e-12);
        s.push(5.0); // window 4,4,4,5
        assert!((s.mean() - 4.25).abs() < 1e-12);
        assert!((s.std() - 0.1875f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn rolling_stats_stay_exact_with_a_large_offset() {
        let mut s = RollingStats::new(10);
        let base = 1e9;
        for i in 0..100_000 {
            s.push(base + (i % 10) as f64);
        }
        // the window always holds 0..9 + 1e9: mean 1e9 + 4.5, variance 8.25
        assert!((s.mean() - (base + 4.5)).abs() < 1e-6);
        assert!((s.std() - 8.25f64.sqrt()).abs() < 1e-6, "{}", s.std());
    }

    #[test]
    fn rolling_stats_recover_after_a_jump_from_a_large_level() {
        // 1e9 for two windows, then noise of σ = 1e-3 around 0: once the window holds only
        // noise, the std must be the window's exact std (not 0 or 15× too small).
        let window = 1000;
        let mut s = RollingStats::new(window);
        let mut state = 99u64;
        let mut noise = || {
            let mut u = || {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64
            };
            let (u1, u2) = (u(), u());
            1e-3 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let mut xs: Vec<f64> = (0..2 * window).map(|_| 1e9 + noise()).collect();
        xs.extend((0..10_000).map(|_| noise()));
        let mut worst: f64 = 0.0;
        for (i, x) in xs.iter().enumerate() {
            s.push(*x);
            // from one window + window/32 after the jump on, the window is all noise
            if i >= 3 * window + window / 32 {
                let w = &xs[i + 1 - window..=i];
                let mean = w.iter().sum::<f64>() / window as f64;
                let var = w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / window as f64;
                let rel = (s.std() - var.sqrt()).abs() / var.sqrt();
                worst = worst.max(rel);
                assert!((s.mean() - mean).abs() < 1e-2 * var.sqrt(), "mean at {i}");
            }
        }
        assert!(worst < 1e-3, "std off by {:.2e} (relative)", worst);
    }

    #[test]
    fn rolling_median_and_mad() {
        let mut m = RollingMedian::new(5);
        for x in [1.0, 2.0, 3.0, 4.0, 100.0] {
            m.push(x);
        }
        assert_eq!(m.median(), 3.0);
        // |x - 3| = 2,1,0,1,97 → median 1
        assert_eq!(m.mad(), 1.0);
        m.push(6.0); // window 2,3,4,100,6
        assert_eq!(m.median(), 4.0);
        // |x - 4| = 2,1,0,96,2 → median 2
        assert_eq!(m.mad(), 2.0);
        let mut e = RollingMedian::new(4);
        for x in [1.0, 2.0, 4.0, 8.0] {
            e.push(x);
        }
        assert_eq!(e.median(), 3.0);
        // |x - 3| = 2,1,1,5 → sorted 1,1,2,5 → (1+2)/2
        assert_eq!(e.mad(), 1.5);
    }

    #[test]
    fn ewma_matches_hand_computed() {
        let mut e = Ewma::new(0.5);
        e.push(10.0);
        assert_eq!((e.mean(), e.std()), (10.0, 0.0));
        // d=4 inc=2 mean=12 var=0.5*(0+8)=4; Σw² = 0.25·1 + 0.25 = 0.5 → 4 / 0.5 = 8, the
        // sample variance of {10, 14}
        e.push(14.0);
        assert_eq!(e.mean(), 12.0);
        assert!((e.std() - 8f64.sqrt()).abs() < 1e-12);
        // d=0 → var 0.5*4 = 2; Σw² = 0.25·0.5 + 0.25 = 0.375 → 2 / 0.625 = 3.2
        e.push(12.0);
        assert_eq!(e.mean(), 12.0);
        assert!((e.std() - 3.2f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn ewma_variance_is_unbiased_after_warm_up() {
        // α = 2/1001 after 120 samples of N(0, 1): the mean corrected variance over many
        // runs is ≈ 1 (uncorrected it would be ≈ 0.39).
        let mut state = 7u64;
        let mut u = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64
        };
        let runs = 2000;
        let mut sum = 0.0;
        for _ in 0..runs {
            let mut e = Ewma::new(2.0 / 1001.0);
            for _ in 0..120 {
                let (u1, u2) = (u(), u());
                e.push((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos());
            }
            sum += e.std() * e.std();
        }
        let mean_var = sum / runs as f64;
        assert!((mean_var - 1.0).abs() < 0.05, "{mean_var}");
    }

    #[test]
    fn ewma_and_robust_warm_up() {
        let p = params(|c| {
            c.method = Method::Ewma;
            c.alpha = Some(0.5);
            c.min_samples = Some(3);
        });
        let v = run(&p, &[10.0, 14.0, 12.0, 20.0]);
        assert!(v[..3].iter().all(|v| !v.warm && !v.anomaly));
        // against mean 12, std √3.2 (see ewma_matches_hand_computed)
        assert!((v[3].z - 8.0 / 3.2f64.sqrt()).abs() < 1e-12);
        let p = params(|c| {
            c.method = Method::Robust;
            c.window = 5;
            c.min_samples = Some(5);
        });
        let v = run(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 7.0]);
        assert!(v[..5].iter().all(|v| !v.warm));
        // against median 3, MAD 1
        assert!((v[5].z - 4.0 / MAD_TO_STD).abs() < 1e-12 && v[5].outside);
    }

    #[test]
    fn robust_with_mad_zero_uses_the_mean_absolute_deviation() {
        // mostly zeros: median 0, MAD 0; the mean absolute deviation is 2/10 = 0.2
        let p = params(|c| {
            c.method = Method::Robust;
            c.window = 10;
            c.min_samples = Some(10);
        });
        let xs = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 5.0];
        let v = run(&p, &xs);
        let spread = 0.2 * MEAN_AD_TO_STD;
        // a 1 is 4σ (it happens, but one in five points here)…
        assert!((v[10].z - 1.0 / spread).abs() < 1e-12, "{}", v[10].z);
        assert!(v[10].z.is_finite());
        // the window is now 0,1,0,0,0,1,0,0,0,1: still median 0, MAD 0, mean AD 0.3
        assert!((v[11].z - 5.0 / (0.3 * MEAN_AD_TO_STD)).abs() < 1e-9);
        // a flat window (all 0) still relies on the floors
        let v = run(&p, &[0.0; 12]);
        assert_eq!(v[11].z, 0.0);
    }

    #[test]
    fn zscore_warm_up_then_scores_against_previous_window() {
        let p = params(|c| {
            c.method = Method::Zscore;
            c.window = 4;
            c.min_samples = Some(4);
        });
        let v = run(&p, &[2.0, 4.0, 4.0, 4.0, 5.0, 20.0]);
        assert!(v[..4].iter().all(|v| !v.warm && !v.anomaly));
        // 5 against {2,4,4,4}: (5 - 3.5) / sqrt(0.75)
        assert!((v[4].z - 1.5 / 0.75f64.sqrt()).abs() < 1e-12);
        assert!(v[4].outside == (v[4].z > 2.0));
        assert!((v[4].upper - (3.5 + 2.0 * 0.75f64.sqrt())).abs() < 1e-12);
        // 20 against {4,4,4,5}: (20 - 4.25) / sqrt(0.1875)
        assert!((v[5].z - 15.75 / 0.1875f64.sqrt()).abs() < 1e-9);
        assert!(v[5].anomaly);
    }

    #[test]
    fn flat_series_uses_the_floors() {
        // Flat at 100: without a floor any change is infinitely anomalous.
        let p = params(|c| {
            c.method = Method::Zscore;
            c.window = 5;
        });
        let v = run(&p, &[100.0, 100.0, 100.0, 100.0, 100.0, 100.5]);
        assert_eq!(v[4].z, 0.0);
        assert!(v[5].z.is_infinite() && v[5].anomaly);
        // Relative floor 1 % of 100 = 1: 100.5 is 0.5σ.
        let p = params(|c| {
            c.method = Method::Zscore;
            c.window = 5;
            c.std_floor_ratio = 0.01;
        });
        let v = run(&p, &[100.0, 100.0, 100.0, 100.0, 100.0, 100.5, 103.0]);
        assert!((v[5].z - 0.5).abs() < 1e-12 && !v[5].anomaly);
        // the window is now 100×4, 100.5: mean 100.1, std 0.2 < floor 1.001
        assert!((v[6].z - (103.0 - 100.1) / 1.001).abs() < 1e-9);
        assert!(v[6].anomaly);
        // Absolute floor 5: 103 is well inside.
        let p = params(|c| {
            c.method = Method::Zscore;
            c.window = 5;
            c.std_floor = 5.0;
        });
        let v = run(&p, &[100.0, 100.0, 100.0, 100.0, 100.0, 103.0]);
        assert!((v[5].z - 0.6).abs() < 1e-12 && !v[5].anomaly);
    }

    #[test]
    fn persistence_consecutive_and_fraction() {
        // A long flat start keeps the EWMA centre at 10 and its spread under the floor (1).
        let base = vec![10.0; 1000];
        let p = params(|c| {
            c.method = Method::Ewma;
            c.alpha = Some(0.001);
            c.min_samples = Some(1000);
            c.std_floor = 1.0;
            c.persistence = Some(Persistence { count: 3, of: None });
        });
        let mut xs = base.clone();
        xs.extend([20.0, 20.0, 10.0, 20.0, 20.0, 20.0]);
        let v = run(&p, &xs);
        let raised: Vec<bool> = v[1000..].iter().map(|v| v.anomaly).collect();
        assert_eq!(raised, [false, false, false, false, false, true]);
        // 3 of 4: the gap no longer resets the count.
        let p = params(|c| {
            c.method = Method::Ewma;
            c.alpha = Some(0.001);
            c.min_samples = Some(1000);
            c.std_floor = 1.0;
            c.persistence = Some(Persistence {
                count: 3,
                of: Some(4),
            });
        });
        let v = run(&p, &xs);
        let raised: Vec<bool> = v[1000..].iter().map(|v| v.anomaly).collect();
        assert_eq!(raised, [false, false, false, true, true, true]);
    }

    #[test]
    fn hysteresis_on_recovery() {
        // EWMA with a small alpha after a long flat start keeps the centre near 10 and its
        // spread under the floor, which sets σ = 1.
        let p = params(|c| {
            c.method = Method::Ewma;
            c.alpha = Some(0.001);
            c.min_samples = Some(1000);
            c.std_floor = 1.0;
            c.recovery = Recovery {
                sigma: Some(1.0),
                count: Some(2),
            };
        });
        let mut xs = vec![10.0; 1000];
        xs.extend([13.0, 11.5, 10.5, 11.5, 10.5, 10.5, 13.0]);
        let v = run(&p, &xs);
        let raised: Vec<bool> = v[1000..].iter().map(|v| v.anomaly).collect();
        // 13 raises; 11.5 is inside 2σ but not within 1σ: stays raised; 10.5 then 11.5 is
        // one calm point then a reset; two calm points (10.5, 10.5) clear; 13 raises again.
        assert_eq!(raised, [true, true, true, true, true, false, true]);
    }

    #[test]
    fn direction_and_robust_scale() {
        let p = params(|c| {
            c.method = Method::Robust;
            c.window = 5;
            c.min_samples = Some(5);
            c.direction = Direction::Down;
        });
        let v = run(&p, &[1.0, 2.0, 3.0, 4.0, 5.0, 100.0, -100.0]);
        // 100 against median 3, MAD 1: z = 97 / 1.4826, but direction is down.
        assert!((v[5].z - 97.0 / MAD_TO_STD).abs() < 1e-9);
        assert!(!v[5].outside && !v[5].anomaly);
        assert!(v[6].outside && v[6].anomaly);
        assert_eq!(v[5].score, 0.0);
        assert!(v[6].score > 0.99);
    }

    #[test]
    fn clipping_keeps_the_band_tight_after_a_spike() {
        let xs = [10.0, 11.0, 9.0, 10.0, 11.0, 9.0, 1000.0, 10.0, 13.0];
        let raw = run(
            &params(|c| {
                c.method = Method::Zscore;
                c.window = 6;
                c.min_samples = Some(6);
            }),
            &xs,
        );
        let clipped = run(
            &params(|c| {
                c.method = Method::Zscore;
                c.window = 6;
                c.min_samples = Some(6);
                c.clip_anomalies = true;
            }),
            &xs,
        );
        assert!(raw[6].outside && clipped[6].outside);
        // with the spike learned raw, 13 looks normal; clipped, it stands out
        assert!(!raw[8].outside);
        assert!(clipped[8].outside);
    }

    #[test]
    fn seasonal_baseline_models_the_difference() {
        let p = params(|c| {
            c.method = Method::Zscore;
            c.window = 4;
            c.min_samples = Some(4);
            c.std_floor = 0.5;
            c.seasonality = Some(Duration::from_secs(4));
        });
        // period of 4 points (1 s apart): 0, 10, 20, 10, ...; a break at the end.
        let mut xs: Vec<f64> = (0..16).map(|i| [0.0, 10.0, 20.0, 10.0][i % 4]).collect();
        xs.push(50.0); // expected 0
        let v = run(&p, &xs);
        assert!(v[..4].iter().all(|v| !v.warm)); // no reference yet
        assert!(v[12..16].iter().all(|v| v.warm && !v.outside));
        assert!(v[16].outside && v[16].anomaly);
        assert!((v[16].upper - (0.0 + 0.0 + 2.0 * 0.5)).abs() < 1e-12);
    }

    /// A period of 4 points (1 s apart) plus a little deterministic noise.
    fn seasonal_series(n: usize, pattern: [f64; 4]) -> Vec<f64> {
        let mut state = 12345u32;
        (0..n)
            .map(|i| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                pattern[i % 4] + ((state >> 16) % 100) as f64 / 100.0 - 0.5
            })
            .collect()
    }

    fn seasonal_params(f: impl FnOnce(&mut AnomalyConfig)) -> Params {
        params(|c| {
            c.method = Method::Zscore;
            c.window = 8;
            c.min_samples = Some(8);
            c.seasonality = Some(Duration::from_secs(4));
            // wide enough that the ±0.5 noise is never outside
            c.sigma = 4.0;
            c.recovery.sigma = Some(4.0);
            f(c)
        })
    }

    #[test]
    fn seasonal_relative_floor_uses_the_level() {
        // Exactly periodic at ~1000: the differences are 0, their spread 0; the 1 % floor
        // must be 1 % of the level (≈ 10), not of the mean difference (0).
        let p = seasonal_params(|c| c.std_floor_ratio = 0.01);
        let mut xs: Vec<f64> = (0..16)
            .map(|i| [1000.0, 1010.0, 1020.0, 1010.0][i % 4])
            .collect();
        xs.push(1005.0); // expected 1000: 0.5σ
        xs.push(1070.0); // expected 1010: 6σ
        let v = run(&p, &xs);
        assert!(v[15].warm);
        assert!((v[16].z - 0.5).abs() < 1e-12, "{}", v[16].z);
        assert!(!v[16].outside);
        // the window of differences is now 0 ×7 and 5: centre 0.625, floor 1 % of 1010.625
        let z = (60.0 - 0.625) / (0.01 * 1010.625);
        assert!((v[17].z - z).abs() < 1e-9 && v[17].outside, "{}", v[17].z);
    }

    #[test]
    fn seasonal_spike_does_not_echo_a_period_later() {
        let mut xs = seasonal_series(40, [0.0, 10.0, 20.0, 10.0]);
        xs[24] += 100.0;
        let clipped = run(&seasonal_params(|c| c.clip_anomalies = true), &xs);
        assert!(clipped[24].outside);
        // one period later the spike is the reference: remembered as expected, not raw
        assert!(
            clipped[28].warm && !clipped[28].outside,
            "{:?}",
            clipped[28]
        );
        // (remembered raw, 28 would be ≈ 100 below its reference: z ≈ -250)
        assert!(clipped[25..].iter().all(|v| !v.outside));
    }

    #[test]
    fn seasonal_reference_is_not_used_across_a_gap() {
        let p = seasonal_params(|_| {});
        let xs = seasonal_series(40, [0.0, 10.0, 20.0, 10.0]);
        let mut d = SeriesDetector::new(&p);
        let mut v = Vec::new();
        // 20 points at 0..19 s, a 10 s gap, then 20 more at 30..49 s (same phase: 30 % 4 = 2)
        for (i, x) in xs[..20].iter().enumerate() {
            v.push(d.observe(&p, i as i64 * 1000, *x));
        }
        for (i, x) in xs[22..].iter().enumerate() {
            v.push(d.observe(&p, (30 + i as i64) * 1000, *x));
        }
        assert!(v[19].warm);
        // 30..33 s: one period back (26..29 s) is inside the gap: no fresh reference
        assert!(v[20..24].iter().all(|v| !v.warm), "{:?}", &v[20..24]);
        // from 34 s on, the references are the points after the gap
        assert!(
            v[24..].iter().all(|v| v.warm && !v.outside),
            "{:?}",
            &v[24..]
        );
    }

    #[test]
    fn spec_parsing_and_errors() {
        let c = AnomalyConfig::from_spec(
            "method=zscore, window=50,sigma=3,persistence.count=2,persistence.of=3,clip_anomalies=false",
        )
        .unwrap();
        assert_eq!(c.method, Method::Zscore);
        assert_eq!(c.window, 50);
        assert_eq!(c.sigma, 3.0);
        assert_eq!(
            c.persistence,
            Some(Persistence {
                count: 2,
                of: Some(3)
            })
        );
        assert!(!c.clip_anomalies);
        let e = AnomalyConfig::from_spec("method=median")
            .unwrap_err()
            .to_string();
        assert!(e.contains("median"), "{e}");
        let e = AnomalyConfig::from_spec("windw=5").unwrap_err().to_string();
        assert!(e.contains("windw"), "{e}");
        let e = AnomalyConfig::from_spec("persistence.count=0")
            .unwrap()
            .validate("x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("persistence"), "{e}");
    }

    #[test]
    fn csv_scoring_and_errors() {
        let csv = "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,1\n2024-01-01T00:02:00Z,1\n1704067380,9\n";
        let cfg = AnomalyConfig {
            method: Method::Zscore,
            window: 3,
            min_samples: Some(3),
            std_floor: 1.0,
            persistence: Some(Persistence { count: 1, of: None }),
            ..AnomalyConfig::default()
        };
        let (_, pts, skipped) = score_csv(&cfg, "in.csv", csv.as_bytes()).unwrap();
        assert_eq!(skipped, OutOfOrder::default());
        assert_eq!(pts.len(), 4);
        assert_eq!(pts[3].verdict.z, 8.0);
        let mut out = Vec::new();
        write_scores(&pts, ScoreColumn::Score, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("1704067380,9,1.000000000,1\n"), "{text}");
        let mut out = Vec::new();
        write_scores(&pts, ScoreColumn::Onsets, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(":02:00Z,1,0.000000000,0\n1704067380,9,1.000000000,1\n"),
            "{text}"
        );
        let bad = "timestamp,value\n2024-01-01 00:00:00,1\n2024-01-01 00:01:00,x\n";
        let e = score_csv(&cfg, "in.csv", bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("in.csv:3:21") && e.contains("number"), "{e}");
        // rows going back in time still give a row each, and are counted
        let back = "2024-01-01 00:02:00,1\n2024-01-01 00:01:00,2\n2024-01-01 00:03:00,3\n2024-01-01 00:00:00,4\n";
        let (_, pts, skipped) = score_csv(&cfg, "in.csv", back.as_bytes()).unwrap();
        assert_eq!(
            pts.iter().map(|p| p.value).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(pts[1].timestamp, "2024-01-01 00:01:00");
        assert_eq!(
            skipped,
            OutOfOrder {
                first_line: Some(2),
                count: 2
            }
        );
        let bad = "2024-01-01 00:00:00,1\nyesterday,2\n";
        let e = score_csv(&cfg, "in.csv", bad.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("in.csv:2:1") && e.contains("timestamp"), "{e}");
    }
}
