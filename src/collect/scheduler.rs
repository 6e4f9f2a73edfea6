//! Runs each collector in its own task on its own interval, each round under its own timeout,
//! and writes the round's samples to the store in one batch. Series a collector returned last
//! round but not this one get a stale marker (Prometheus' scrape staleness), so queries stop
//! seeing them at once instead of after the 5 minute lookback.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use super::{CollectError, Collector};
use crate::common::metrics::{SelfMetrics, labels};
use crate::common::throttle::LogThrottle;
use crate::common::time::now_ms;
use crate::store::{Labels, Sample, SeriesBudget, Store, stale_nan};

/// Name of the series the scheduler writes for each collector after every round: 1 when the
/// round succeeded, 0 when it failed or timed out (like Prometheus' `up`).
pub const COLLECTOR_UP: &str = "medic_collector_up";

/// The series each collector wrote in its last round (its `medic_collector_up` included), by
/// collector name. [`Scheduler::join`] returns it and [`Scheduler::start_after`] takes it, so a
/// reload keeps staleness exact: a collector that stays carries on, and the series of one
/// that was removed are marked stale at once instead of lingering for the 5 minute lookback.
pub type LastSeries = HashMap<String, HashSet<Labels>>;

/// The running collectors. Stop them by sending `true` on the shutdown channel (or dropping
/// its sender), then [`Scheduler::join`].
pub struct Scheduler {
    tasks: Vec<JoinHandle<(String, HashSet<Labels>)>>,
}

impl Scheduler {
    /// Starts one task per collector. Must be called inside a tokio runtime.
    pub fn start(
        collectors: Vec<Arc<dyn Collector>>,
        store: Arc<Store>,
        metrics: Arc<SelfMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Scheduler {
        Self::start_notifying(collectors, store, metrics, shutdown, None)
    }

    /// [`Scheduler::start`], also bumping `landed` after every round's samples are in the
    /// store, so rule groups can evaluate fresh samples at once instead of at their next tick.
    pub fn start_notifying(
        collectors: Vec<Arc<dyn Collector>>,
        store: Arc<Store>,
        metrics: Arc<SelfMetrics>,
        shutdown: watch::Receiver<bool>,
        landed: Option<watch::Sender<u64>>,
    ) -> Scheduler {
        Self::start_after(
            collectors,
            store,
            metrics,
            shutdown,
            landed,
            LastSeries::new(),
        )
    }

    /// [`Scheduler::start_notifying`] taking over from a stopped scheduler (a reload):
    /// `previous` is what its [`Scheduler::join`] returned. Series of collectors that are no
    /// longer configured are marked stale now.
    pub fn start_after(
        collectors: Vec<Arc<dyn Collector>>,
        store: Arc<Store>,
        metrics: Arc<SelfMetrics>,
        shutdown: watch::Receiver<bool>,
        landed: Option<watch::Sender<u64>>,
        mut previous: LastSeries,
    ) -> Scheduler {
        let tasks = collectors
            .into_iter()
            .map(|c| {
                let seed = previous.remove(c.name()).unwrap_or_default();
                tokio::spawn(run_collector(
                    c,
                    store.clone(),
                    metrics.clone(),
                    shutdown.clone(),
                    landed.clone(),
                    seed,
                ))
            })
            .collect();
        let now = now_ms();
        let gone: Vec<Sample> = previous
            .into_values()
            .flatten()
            .map(|l| Sample::new(l, now, stale_nan()))
            .collect();
        if !gone.is_empty() {
            store.append_batch(&gone);
        }
        Scheduler { tasks }
    }

    /// Waits for every collector task to end (after shutdown was signalled); what each
    /// wrote last, for [`Scheduler::start_after`].
    pub async fn join(self) -> LastSeries {
        let mut last = LastSeries::new();
        for t in self.tasks {
            // A task only ends by returning; a JoinError would mean it panicked, which the
            // panic hook has already reported.
            if let Ok((name, series)) = t.await {
                last.insert(name, series);
            }
        }
        last
    }

    /// Number of collector tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Err: the sender is gone, which also means stop.
    let _ = rx.wait_for(|v| *v).await;
}

async fn run_collector(
    c: Arc<dyn Collector>,
    store: Arc<Store>,
    metrics: Arc<SelfMetrics>,
    mut shutdown: watch::Receiver<bool>,
    landed: Option<watch::Sender<u64>>,
    mut previous: HashSet<Labels>,
) -> (String, HashSet<Labels>) {
    let name = c.name().to_string();
    let metric_labels = labels(&[("collector", &name)]);
    let up = Labels::new([("__name__", COLLECTOR_UP), ("collector", name.as_str())]);
    let timeout = c.timeout();
    // exported at 0 from the start, so rate() and increase() see the first error
    drop(metrics.collector_errors.get_or_create(&metric_labels));
    let mut ticker = tokio::time::interval(c.interval());
    // A round that overran its slot delays the next tick rather than firing a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // The up series is written every round; it is only handed over, not stale-checked.
    previous.remove(&up);
    let mut out: Vec<Sample> = Vec::new();
    let mut budget = c
        .new_series_limit()
        .map(|(per_minute, burst)| SeriesBudget::new(per_minute, burst, Instant::now()));
    let mut over_budget_log = LogThrottle::new(std::time::Duration::from_secs(60));
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            _ = ticker.tick() => {}
        }
        let now = now_ms();
        let started = Instant::now();
        out.clear();
        let result = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            r = tokio::time::timeout(timeout, c.collect(now, &mut out)) => {
                r.unwrap_or(Err(CollectError::Timeout(timeout)))
            }
        };
        metrics
            .collector_duration
            .get_or_create(&metric_labels)
            .set(started.elapsed().as_secs_f64());
        let ok = match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(collector = %name, error = %e, "collector round failed");
                metrics.collector_errors.get_or_create(&metric_labels).inc();
                // A failed round's partial output is dropped, as Prometheus drops a failed
                // scrape; its series go stale below.
                out.clear();
                false
            }
        };
        let current: HashSet<Labels> = out.iter().map(|s| s.labels.clone()).collect();
        for gone in previous.difference(&current) {
            out.push(Sample::new(gone.clone(), now, stale_nan()));
        }
        out.push(Sample::new(up.clone(), now, if ok { 1.0 } else { 0.0 }));
        let refused = store.append_batch_limited(&out, budget.as_mut());
        if refused.any() {
            for (reason, n) in [
                ("max_series", refused.max_series),
                ("new_series_limit", refused.new_series_limit),
            ] {
                let l = labels(&[("collector", &name), ("reason", reason)]);
                metrics.collector_series_dropped.get_or_create(&l).inc_by(n);
            }
            if let Some(n) = over_budget_log.record(refused.new_series_limit, Instant::now()) {
                tracing::warn!(
                    collector = %name,
                    dropped = n,
                    "collector over its new_series_limit: samples of new series dropped"
                );
            }
        }
        if let Some(l) = &landed {
            l.send_modify(|n| *n = n.wrapping_add(1));
        }
        previous = current;
    }
    previous.insert(up);
    (name, previous)
}
