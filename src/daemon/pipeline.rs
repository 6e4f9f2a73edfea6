//! What one config makes: [`prepare`] reads and builds every part (nothing starts, so a bad
//! config is rejected whole), [`Generation::start`] runs the per-config tasks (collectors,
//! rule groups, store upkeep), [`Generation::stop`] ends them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::groups::{self, AlertJournal, GroupContext, Settle, SharedGroup};
use super::watch::WatchSet;
use crate::api::prom::RuleGroupView;
use crate::api::{ApiSettings, ApiState};
use crate::collect::scheduler::LastSeries;
use crate::collect::{Collector, Scheduler};
use crate::common::metrics::SelfMetrics;
use crate::config::{Config, Severity};
use crate::detect::Detectors;
use crate::journal::Journal;
use crate::rules::GroupOptions;
use crate::rules::group::{RestoreOptions, Rule, RuleGroup};
use crate::rules::{AlertTransition, file as rule_file};
use crate::store::{Labels, Store};

/// How long stopping a generation waits for its tasks.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The longest a restored group waits for the collectors' first samples.
const SETTLE_MAX: Duration = Duration::from_secs(60);

/// How often samples past retention are dropped.
const GC_INTERVAL: Duration = Duration::from_secs(30);

/// What outlives a reload.
pub struct Shared {
    pub store: Arc<Store>,
    pub metrics: Arc<SelfMetrics>,
    pub api: Arc<ApiState>,
    /// Where rule groups save their alert state (None: no journal).
    pub alert_journal: Option<AlertJournal>,
}

/// Everything built from one config, checked, not yet running.
pub struct Prepared {
    pub config: Arc<Config>,
    pub api: ApiSettings,
    pub watch: WatchSet,
    pub collectors: Vec<Arc<dyn Collector>>,
    pub groups: Vec<RuleGroup>,
    pub actuators: crate::remedy::Actuators,
    pub notifiers: crate::alert::Notifiers,
    pub detectors: Detectors,
    pub retention_ms: i64,
    /// Files each `rule_files` glob matched.
    pub rule_globs: Vec<(String, usize)>,
}

/// What a stopped generation hands to the next one.
#[derive(Default)]
pub struct Carry {
    /// Rule groups, for those whose definition did not change.
    pub groups: Vec<SharedGroup>,
    /// Detectors, for their baselines.
    pub detectors: Option<Detectors>,
    /// Series each collector returned last, so a removed collector's series go stale.
    pub last_series: LastSeries,
    /// Whether a generation ran before (a reload), rather than medic starting.
    pub reloaded: bool,
}

/// Reads the config file and the rule files and builds everything they describe; every
/// problem found is reported, any error rejects the config. Warnings are logged. SLOs keep
/// their buckets in `journal`.
pub fn prepare(path: &Path, journal: Option<&Journal>) -> Result<Prepared, String> {
    let (config, issues) = Config::load(path).map_err(|e| e.to_string())?;
    for issue in &issues {
        tracing::warn!(config = %path.display(), "{issue}");
    }
    let mut errors: Vec<String> = Vec::new();

    let token = read_token(&config).unwrap_or_else(|e| {
        errors.push(e);
        None
    });
    let collectors = config.build_collectors(&[]).unwrap_or_else(|errs| {
        errors.extend(errs.iter().map(|e| e.to_string()));
        Vec::new()
    });
    let actuators = crate::remedy::build(&config.actuators).unwrap_or_else(|e| {
        errors.push(e.to_string());
        Default::default()
    });
    let notifiers = crate::alert::build(&config.notifiers).unwrap_or_else(|e| {
        errors.push(e.to_string());
        Default::default()
    });
    let detectors = config
        .build_detectors(journal)
        .map_err(|e| errors.extend(e.0.iter().map(|e| e.to_string())))
        .ok();
    let opts = group_options(&config);
    let mut groups = match config.rule_file_paths() {
        Err(issues) => {
            errors.extend(issues.iter().map(|i| i.to_string()));
            Vec::new()
        }
        Ok(paths) => match rule_file::load_files(&paths, &opts) {
            Ok(groups) => groups,
            Err(e) => {
                errors.push(e.to_string());
                Vec::new()
            }
        },
    };
    // SLOs come with generated burn-rate alerting rules.
    if let Some(yaml) = detectors.as_ref().and_then(Detectors::slo_rule_file) {
        match rule_file::parse_rule_file(Path::new("<slos>"), &yaml, &opts) {
            Ok(g) => groups.extend(g),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for g in &groups {
        for rule in g.rules() {
            let Rule::Alerting(a) = rule else { continue };
            let at = format!(
                "{}: group {}: rule {}",
                g.file().display(),
                g.name(),
                a.name()
            );
            // the same checks as `medic check`: what it rejects, run rejects
            for issue in config.check_remediation(a.name(), &a.remediate) {
                if issue.severity == Severity::Warning {
                    tracing::warn!("{}: {issue}", g.file().display());
                } else {
                    errors.push(format!("{at}: {issue}"));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(format!(
            "{}: invalid configuration:\n  {}",
            path.display(),
            errors.join("\n  ")
        ));
    }
    // Present whenever no error was recorded.
    let detectors = detectors.ok_or("detectors could not be built")?;
    // The store must also keep what detector and SLO queries read.
    let retention_ms = rule_file::retention_needed_ms(&groups).max(detectors.lookback_needed_ms());
    Ok(Prepared {
        api: ApiSettings::new(config.global.export_collected, token),
        watch: watch_set(path, &config),
        collectors,
        groups,
        actuators,
        notifiers,
        detectors,
        retention_ms,
        rule_globs: config.rule_glob_matches(),
        config: Arc::new(config),
    })
}

fn group_options(config: &Config) -> GroupOptions {
    GroupOptions {
        default_interval: config.global.evaluation_interval,
        external_labels: Labels::new(config.global.external_labels.clone()),
        external_url: format!("http://{}", config.global.listen_address),
        subquery_step: config.global.evaluation_interval,
        resend_delay: config.global.alert_resend_delay,
    }
}

fn read_token(config: &Config) -> Result<Option<String>, String> {
    let Some(secret) = &config.global.api_token else {
        return Ok(None);
    };
    let token = secret
        .read()
        .map_err(|e| format!("global.api_token: {e}"))?;
    let t = token.expose().trim();
    if t.is_empty() {
        return Err("global.api_token: the token is empty".to_string());
    }
    Ok(Some(t.to_string()))
}

/// The silences, from the journal (an empty in-memory store without one, or when it cannot
/// be read: logged, medic still runs).
pub fn open_silences(journal: Option<&Journal>) -> Arc<crate::silence::SilenceStore> {
    let Some(j) = journal else {
        return crate::silence::SilenceStore::in_memory();
    };
    match j
        .reopen()
        .map_err(crate::silence::SilenceError::from)
        .and_then(crate::silence::SilenceStore::load)
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "journal: cannot load silences; they will not persist");
            crate::silence::SilenceStore::in_memory()
        }
    }
}

/// The config file and the rule files (as globs, so new files are noticed).
fn watch_set(path: &Path, config: &Config) -> WatchSet {
    // Absolute, and without `.` components: inotify reports `dir/name` of the watched
    // folder, which `Path::components` has already cleaned, and globs compare literally.
    let abs = |p: &Path| -> PathBuf {
        let p = if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        };
        p.components().collect()
    };
    let config_path = abs(path);
    let dir = abs(&config.dir());
    WatchSet {
        files: BTreeSet::from([config_path]),
        patterns: config
            .rule_files
            .iter()
            .map(|p| abs(&dir.join(p)).to_string_lossy().into_owned())
            .collect(),
    }
}

/// Whether rule groups of `old` may carry over into `new`: templates also see the external
/// labels and URL, which live in the config rather than in the rules.
pub fn groups_portable(old: &Config, new: &Config) -> bool {
    old.global.external_labels == new.global.external_labels
        && old.global.listen_address == new.global.listen_address
}

/// The running per-config tasks.
pub struct Generation {
    pub config: Arc<Config>,
    /// Files each `rule_files` glob matched.
    pub rule_globs: Vec<(String, usize)>,
    /// Rules of every group (SLO burn-rate rules included).
    pub rule_count: usize,
    stop: watch::Sender<bool>,
    scheduler: Scheduler,
    detectors: JoinHandle<Detectors>,
    groups: Vec<SharedGroup>,
    tasks: Vec<JoinHandle<()>>,
}

impl Generation {
    /// Starts the collectors and rule groups of `p`; the groups send their transitions to
    /// `sinks`. A group whose definition did not change is taken over from `previous` with
    /// its alert state (pending timers, firing alerts).
    pub fn start(
        mut p: Prepared,
        shared: &Shared,
        sinks: Vec<mpsc::Sender<AlertTransition>>,
        carry: Carry,
    ) -> Generation {
        let (stop, _) = watch::channel(false);
        let (landed_tx, landed_rx) = watch::channel(0u64);
        shared.store.set_retention_ms(p.retention_ms);
        shared.store.set_max_series(p.config.global.max_series);
        shared
            .metrics
            .store_series_limit
            .set(p.config.global.max_series as i64);
        shared.api.set_settings(p.api.clone());
        let matched = &shared.metrics.config_rule_files_matched;
        matched.clear();
        for (pattern, n) in &p.rule_globs {
            matched
                .get_or_create(&crate::common::metrics::labels(&[("pattern", pattern)]))
                .set(*n as i64);
        }
        let rule_count = p.groups.iter().map(RuleGroup::rule_count).sum();

        // before the collectors are handed to the scheduler
        let settle = (!carry.reloaded && !p.collectors.is_empty()).then(|| Settle {
            rounds: p.collectors.len() as u64,
            until: tokio::time::Instant::now()
                + p.collectors
                    .iter()
                    .map(|c| c.interval() + c.timeout())
                    .max()
                    .unwrap_or_default()
                    .min(SETTLE_MAX),
        });
        let scheduler = Scheduler::start_after(
            p.collectors,
            shared.store.clone(),
            shared.metrics.clone(),
            stop.subscribe(),
            Some(landed_tx),
            carry.last_series,
        );
        if let Some(old) = carry.detectors {
            p.detectors.carry_state_from(old);
        }
        let detectors = tokio::spawn(p.detectors.run(shared.store.clone(), stop.subscribe()));

        let mut previous: Vec<Option<SharedGroup>> = carry.groups.into_iter().map(Some).collect();
        let mut kept = 0;
        let global = &p.config.global;
        // At a reload a changed group takes over its predecessor's alerts (Prometheus'
        // CopyState), without a grace period; at the start the saved ones, with it.
        let restore_opts = RestoreOptions {
            outage_tolerance_ms: global.alert_for_outage_tolerance.as_millis_i64(),
            grace_ms: if carry.reloaded {
                0
            } else {
                global.alert_for_grace_period.as_millis_i64()
            },
        };
        let mut owed: Vec<crate::rules::AlertTransition> = Vec::new();
        let mut settles: Vec<Option<Settle>> = Vec::new();
        let groups: Vec<SharedGroup> = p
            .groups
            .into_iter()
            .map(|mut g| {
                let reuse = previous.iter_mut().find_map(|slot| {
                    let same = slot
                        .as_ref()
                        .is_some_and(|old| old.lock().same_definition(&g));
                    if same { slot.take() } else { None }
                });
                match reuse {
                    Some(old) => {
                        kept += 1;
                        settles.push(None);
                        old
                    }
                    None => {
                        let mut had = false;
                        if let Some(j) = &shared.alert_journal {
                            let (o, h) = groups::restore(&mut g, j, restore_opts);
                            owed.extend(o);
                            had = h;
                        }
                        settles.push(settle.filter(|_| had));
                        SharedGroup::new(g)
                    }
                }
            })
            .collect();
        if let Some(j) = &shared.alert_journal {
            let keys: Vec<String> = groups.iter().map(|g| g.lock().key()).collect();
            owed.extend(groups::forget_others(j, &keys));
        }
        for t in owed {
            let group = t.alert.group.clone();
            groups::dispatch(&group, &sinks, t);
        }
        if kept > 0 {
            tracing::info!(kept, "unchanged rule groups keep their alert state");
        }

        let ctx = GroupContext {
            store: shared.store.clone(),
            metrics: shared.metrics.clone(),
            sinks,
            alert_journal: shared.alert_journal.clone(),
        };
        let mut tasks: Vec<JoinHandle<()>> = groups
            .iter()
            .zip(settles)
            .map(|(g, settle)| {
                tokio::spawn(groups::run(
                    g.clone(),
                    ctx.clone(),
                    Some(landed_rx.clone()),
                    stop.subscribe(),
                    settle,
                ))
            })
            .collect();
        tasks.push(tokio::spawn(store_gc(
            shared.store.clone(),
            shared.metrics.clone(),
            stop.subscribe(),
        )));
        shared.api.set_groups(
            groups
                .iter()
                .map(|g| Arc::new(g.clone()) as Arc<dyn RuleGroupView>)
                .collect(),
        );
        Generation {
            config: p.config,
            rule_globs: p.rule_globs,
            rule_count,
            stop,
            scheduler,
            detectors,
            groups,
            tasks,
        }
    }

    /// Stops the collectors, detectors and rule groups and returns what the next
    /// generation takes over.
    pub async fn stop(self) -> Carry {
        let _ = self.stop.send(true);
        let all = async {
            let last_series = self.scheduler.join().await;
            // JoinError: the task panicked (already reported) or was aborted.
            let detectors = self.detectors.await.ok();
            for t in self.tasks {
                let _ = t.await;
            }
            (last_series, detectors)
        };
        match tokio::time::timeout(STOP_WAIT, all).await {
            Ok((last_series, detectors)) => Carry {
                groups: self.groups,
                detectors,
                last_series,
                reloaded: true,
            },
            Err(_) => {
                tracing::warn!(
                    "collector, detector or rule tasks did not stop in time; leaving them"
                );
                Carry {
                    groups: self.groups,
                    reloaded: true,
                    ..Carry::default()
                }
            }
        }
    }
}

/// Drops samples past retention (appends trim their own series; this catches series that
/// stopped receiving samples) and keeps `medic_store_series` current.
async fn store_gc(store: Arc<Store>, metrics: Arc<SelfMetrics>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tick.tick() => {}
        }
        store.gc(crate::common::time::now_ms());
        metrics.store_series.set(store.series_count() as i64);
        metrics.store_series_dropped.inc_by(store.take_dropped());
    }
}
