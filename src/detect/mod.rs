//! Detectors turn collected series into signals and publish them as series:
//! `anomaly` (the 2σ family) and `slo` (error budgets and burn rates).
//!
//! The daemon builds a [`Detectors`] from the config, calls [`Detectors::tick`] on an
//! interval (or spawns [`Detectors::run`]), and on reload builds a new one and hands it the
//! old one with [`Detectors::carry_state_from`], which keeps the state of every detector whose
//! config did not change.

pub mod anomaly;
pub mod density;
pub mod error;
pub mod slo;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use anomaly::{AnomalyConfig, AnomalyDetector};
pub use error::{DetectError, DetectErrors};
pub use slo::{SloConfig, SloTracker};

use crate::common::Duration;
use crate::common::time::now_ms;
use crate::journal::Journal;
use crate::store::Store;

/// Every configured detector, ready to run.
pub struct Detectors {
    anomaly: Vec<Sched<AnomalyDetector>>,
    slos: Vec<Sched<SloTracker>>,
}

struct Sched<T> {
    det: T,
    interval_ms: i64,
    next_ms: i64,
}

impl Detectors {
    /// Builds the detectors of `cfg`, reporting every error (not just the first). SLOs keep
    /// their minute buckets in `journal` (and reload them from it); without a journal they
    /// live in memory only.
    /// `default_interval` is `global.evaluation_interval`, for detectors that set none.
    pub fn build(
        anomaly_detectors: &BTreeMap<String, AnomalyConfig>,
        slo_configs: &BTreeMap<String, SloConfig>,
        default_interval: Duration,
        journal: Option<&Journal>,
    ) -> Result<Detectors, DetectErrors> {
        let mut errors = Vec::new();
        let mut anomaly = Vec::new();
        for (name, c) in anomaly_detectors {
            match AnomalyDetector::build(name, c, default_interval) {
                Ok(det) => anomaly.push(Sched {
                    interval_ms: det.interval_ms(),
                    det,
                    next_ms: i64::MIN,
                }),
                Err(e) => errors.push(e),
            }
        }
        let mut slos = Vec::new();
        for (name, c) in slo_configs {
            let built = journal
                .map(|j| j.reopen())
                .transpose()
                .map_err(DetectError::from)
                .and_then(|journal| SloTracker::build(name, c, default_interval, journal));
            match built {
                Ok(det) => slos.push(Sched {
                    interval_ms: det.interval_ms(),
                    det,
                    next_ms: i64::MIN,
                }),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(DetectErrors(errors));
        }
        Ok(Detectors { anomaly, slos })
    }

    /// How far back the detectors' queries read, for the store's retention (the daemon takes
    /// the max of this and the rules' need).
    pub fn lookback_needed_ms(&self) -> i64 {
        self.anomaly
            .iter()
            .map(|s| s.det.lookback_needed_ms())
            .chain(self.slos.iter().map(|s| s.det.lookback_needed_ms()))
            .max()
            .unwrap_or(0)
    }

    /// After a reload: takes over the state of each detector of `old` whose name and config
    /// are unchanged (anomaly baselines; SLO counts are reloaded from the journal anyway,
    /// but the in-memory ones are kept too so the current minute is not lost). An SLO whose
    /// config changed reloads its buckets from the journal now: `old` has stopped, and what
    /// it recorded after this set was built is in the journal (the bucket writes set the
    /// counts, so without this the new tracker would overwrite them).
    pub fn carry_state_from(&mut self, old: Detectors) {
        for o in old.anomaly {
            if let Some(n) = self
                .anomaly
                .iter_mut()
                .find(|n| n.det.name() == o.det.name() && n.det.config() == o.det.config())
            {
                n.next_ms = o.next_ms;
                n.det.adopt(o.det);
            }
        }
        let mut adopted = vec![false; self.slos.len()];
        for o in old.slos {
            if let Some(i) = self
                .slos
                .iter()
                .position(|n| n.det.name() == o.det.name() && n.det.config() == o.det.config())
            {
                let n = &mut self.slos[i];
                n.next_ms = o.next_ms;
                n.det.adopt(o.det);
                adopted[i] = true;
            }
        }
        for (s, _) in self.slos.iter_mut().zip(adopted).filter(|(_, a)| !a) {
            if let Err(e) = s.det.reload_from_journal() {
                tracing::warn!(slo = s.det.name(), error = %e, "reloading SLO buckets failed");
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.anomaly.is_empty() && self.slos.is_empty()
    }

    /// The alerting rules generated for the SLOs (multi-window multi-burn-rate), as a
    /// Prometheus rule file (YAML) for the rule loader; `None` without SLOs.
    pub fn slo_rule_file(&self) -> Option<String> {
        if self.slos.is_empty() {
            return None;
        }
        Some(slo::rule_file_yaml(self.slos.iter().map(|s| &s.det)))
    }

    /// Runs every detector that is due at `now_ms` and appends its outputs to `store`.
    /// Errors of one detector do not stop the others; they are returned.
    pub fn tick(&mut self, store: &Store, now_ms: i64) -> Vec<DetectError> {
        let mut errors = Vec::new();
        let mut out = Vec::new();
        for s in self.anomaly.iter_mut().filter(|s| s.next_ms <= now_ms) {
            s.next_ms = next_due(s.next_ms, s.interval_ms, now_ms);
            match s.det.evaluate(store, now_ms) {
                Ok(samples) => out.extend(samples),
                Err(e) => errors.push(e),
            }
        }
        for s in self.slos.iter_mut().filter(|s| s.next_ms <= now_ms) {
            s.next_ms = next_due(s.next_ms, s.interval_ms, now_ms);
            match s.det.evaluate(store, now_ms) {
                Ok(samples) => out.extend(samples),
                Err(e) => errors.push(e),
            }
        }
        store.append_batch(&out);
        errors
    }

    /// When the next detector is due (`i64::MAX` with none).
    pub fn next_due_ms(&self) -> i64 {
        self.anomaly
            .iter()
            .map(|s| s.next_ms)
            .chain(self.slos.iter().map(|s| s.next_ms))
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Runs [`tick`](Self::tick) whenever a detector is due until `shutdown` turns true (or its
    /// sender is dropped); returns itself so a reload can carry the state over.
    pub async fn run(
        mut self,
        store: Arc<Store>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Detectors {
        if self.is_empty() {
            let _ = shutdown.wait_for(|s| *s).await;
            return self;
        }
        loop {
            if *shutdown.borrow() {
                return self;
            }
            let now = now_ms();
            // A tick writes the SLO journal (SQLite, waits up to 5 s for a lock) and a robust
            // detector's update is O(window): off the async worker threads.
            let st = store.clone();
            let (back, errors) = match tokio::task::spawn_blocking(move || {
                let errors = self.tick(&st, now);
                (self, errors)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => match e.try_into_panic() {
                    // a panic in a detector is a bug: propagate it as if it happened here
                    Ok(panic) => std::panic::resume_unwind(panic),
                    // cancelled: the runtime is shutting down, nothing is left to carry
                    Err(_) => {
                        return Detectors {
                            anomaly: Vec::new(),
                            slos: Vec::new(),
                        };
                    }
                },
            };
            self = back;
            for e in errors {
                tracing::warn!(error = %e, "detector failed");
            }
            let wait = (self.next_due_ms() - now_ms()).clamp(1, 60_000) as u64;
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait)) => {}
                r = shutdown.changed() => if r.is_err() { return self; },
            }
        }
    }
}

/// The next due time: one interval on, or now when that fell behind (a stall).
fn next_due(prev: i64, interval: i64, now: i64) -> i64 {
    if prev == i64::MIN || prev + interval <= now {
        now + interval
    } else {
        prev + interval
    }
}
