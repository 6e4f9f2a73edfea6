//! The daemon (`medic run`): loads the config, starts the tasks and wires the channels,
//! reloads on SIGHUP / file changes / `POST /-/reload`, talks to systemd, shuts down cleanly.
//!
//! A (re)load happens in two steps: [`pipeline::prepare`] reads and builds everything from the config
//! without touching what runs, so a bad config is rejected whole and the old one keeps
//! running; only then is the running [`pipeline::Generation`] (collectors, rule groups) stopped and
//! the new one started. The store, self-metrics, API, remedy planner and notifiers outlive
//! generations; a reload hands them their new settings.

pub mod groups;
pub mod logging;
pub mod pipeline;
pub mod systemd;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch as tokio_watch};

use crate::alert::{Dispatcher, DispatcherHandle, SentMemory};
use crate::api::{ApiState, ControlRequest};
use crate::common::metrics::SelfMetrics;
use crate::config::Config;
use crate::journal::Journal;
use crate::remedy::planner::{Planner, PlannerHandle};
use crate::rules::AlertTransition;
use crate::store::Store;
use pipeline::{Carry, Generation, Prepared, Shared, prepare};

/// How long shutdown (and the hand-over at a reload) waits for queued notifications and
/// the API before leaving them behind. In-flight actions are not cut by it: each is bounded
/// by its own timeout, and shutdown waits for it.
pub const STOP_GRACE: Duration = Duration::from_secs(30);

/// Options of `medic run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config_path: PathBuf,
    /// systemd's watchdog period, read (and removed from the environment, so children do
    /// not inherit it) before the runtime started.
    pub watchdog: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Api(#[from] crate::api::server::ApiError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

/// Opens the journal in the state folder of the config at startup (a later change of
/// `state_dir` takes effect at the next restart). A config that does not load is reported
/// by `prepare` with all its problems, so this only looks at `state_dir`.
fn open_journal(config_path: &Path) -> Result<Option<Journal>, DaemonError> {
    // an invalid config (a file where `state_dir` should be included) is reported whole by
    // `prepare`, which then stops the start
    let Ok((config, _)) = Config::load(config_path) else {
        return Ok(None);
    };
    let path = config.global.state_dir.join("journal.db");
    Ok(Some(Journal::open(&path)?))
}

fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn status_line(config: &Config) -> String {
    format!(
        "running: {} collectors, {} rule files, {} actuators, {} notifiers",
        config.collectors.len(),
        config.rule_files.len(),
        config.actuators.len(),
        config.notifiers.len()
    )
}

fn record_reload(metrics: &SelfMetrics, ok: bool) {
    metrics.config_last_reload_successful.set(i64::from(ok));
    if ok {
        metrics
            .config_last_reload_success_timestamp
            .set(now_secs() as i64);
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(opts: RunOptions) -> Result<(), DaemonError> {
    systemd::status("loading configuration");
    let journal = open_journal(&opts.config_path)?;
    let prepared = prepare(&opts.config_path, journal.as_ref()).map_err(DaemonError::Config)?;

    let mut sigterm = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
    let mut sighup = signal(SignalKind::hangup()).map_err(DaemonError::Signals)?;

    let metrics = Arc::new(SelfMetrics::default());
    let store = Arc::new(Store::default());
    let (control_tx, mut control_rx) = mpsc::channel(4);
    let api = Arc::new(ApiState::new(
        metrics.clone(),
        store.clone(),
        prepared.api.clone(),
        control_tx,
    ));

    // The consumers of alert transitions: the planner lives across reloads (it keeps
    // cooldowns and in-flight actions) and gets new settings; the notifier dispatcher is
    // replaced, the old one finishing its queue.
    let mut prepared = prepared;
    let planner_journal = match journal.as_ref().map(Journal::reopen).transpose() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "journal: actions will not be recorded");
            None
        }
    };
    let silences = pipeline::open_silences(journal.as_ref());
    let (planner_tx, planner) = Planner::start_with(
        std::mem::take(&mut prepared.actuators),
        prepared.config.remedy.clone(),
        metrics.clone(),
        crate::remedy::PlannerDeps {
            journal: planner_journal,
            store: Some(store.clone()),
            silences: Some(silences.clone()),
        },
    );
    api.set_remedy(planner.control(), silences.clone());
    // listening once the planner has resumed what the journal holds
    let listen = prepared.config.global.listen_address.clone();
    let listener = crate::api::server::bind(&listen).await?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen.clone());
    let (api_stop, mut api_stop_rx) = tokio_watch::channel(false);
    let api_task = tokio::spawn(crate::api::server::serve_with(
        listener,
        api.clone(),
        prepared.config.global.http.clone(),
        async move {
            let _ = api_stop_rx.wait_for(|v| *v).await;
        },
    ));
    tracing::info!(address = %local, "API listening");
    let sent = SentMemory::default();
    let (notify_tx, dispatcher) =
        start_dispatcher(&mut prepared, &metrics, &planner, &silences, &sent);
    let alert_journal = match journal.as_ref().map(Journal::reopen).transpose() {
        Ok(j) => j.map(|j| Arc::new(std::sync::Mutex::new(j))),
        Err(e) => {
            tracing::error!(error = %e, "journal: alert state will not survive a restart");
            None
        }
    };
    let shared = Shared {
        store,
        metrics: metrics.clone(),
        api,
        alert_journal,
    };
    let mut sinks = Sinks {
        planner_tx,
        planner,
        notify_tx,
        dispatcher,
        silences,
        sent,
    };
    let mut watcher = watch::FileWatcher::new()?;
    watch_files(&mut watcher, &prepared);
    let mut current = Generation::start(prepared, &shared, sinks.senders(), Carry::default());
    record_reload(&metrics, true);
    let watchdog = opts.watchdog.map(|period| {
        tracing::info!(?period, "systemd watchdog enabled");
        tokio::spawn(systemd::watchdog(period))
    });
    tracing::info!(config = %opts.config_path.display(), "medic running");
    systemd::ready(&status_line(&current.config));

    loop {
        let (reason, reply) = tokio::select! {
            _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            _ = sighup.recv() => ("SIGHUP".to_string(), None),
            paths = watcher.changed() => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                (format!("changed: {}", names.join(", ")), None)
            }
            Some(req) = control_rx.recv() => match req {
                ControlRequest::Reload(tx) => ("POST /-/reload".to_string(), Some(tx)),
            },
        };
        let (next, result) = reload(
            &opts.config_path,
            journal.as_ref(),
            &reason,
            &shared,
            &mut sinks,
            &mut watcher,
            current,
        )
        .await;
        current = next;
        if let Some(tx) = reply {
            let _ = tx.send(result);
        }
    }

    systemd::stopping();
    // Collectors and rule groups first, so nothing new is produced; then the planner and
    // the notifiers, which stop once every sender is gone: queued actions are cancelled,
    // in-flight actions finish or time out, queued notifications are tried.
    drop(current.stop().await);
    let Sinks {
        planner_tx,
        planner,
        notify_tx,
        dispatcher,
        ..
    } = sinks;
    drop((planner_tx, notify_tx));
    let notifications = async {
        if tokio::time::timeout(STOP_GRACE, dispatcher.join())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?STOP_GRACE, "notifications still pending at shutdown; dropped");
        }
    };
    tokio::join!(planner.join(), notifications);
    if let Some(w) = watchdog {
        w.abort();
    }
    let _ = api_stop.send(true);
    match tokio::time::timeout(STOP_GRACE, api_task).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "API server ended with an error"),
        Err(_) => tracing::warn!("API server did not stop in time"),
        _ => {}
    }
    tracing::info!("stopped");
    Ok(())
}

/// The consumers of alert transitions.
struct Sinks {
    planner_tx: mpsc::Sender<AlertTransition>,
    planner: PlannerHandle,
    notify_tx: mpsc::Sender<AlertTransition>,
    dispatcher: DispatcherHandle,
    silences: Arc<crate::silence::SilenceStore>,
    /// What the notifiers were sent, handed from one dispatcher to the next.
    sent: SentMemory,
}

impl Sinks {
    fn senders(&self) -> Vec<mpsc::Sender<AlertTransition>> {
        vec![self.planner_tx.clone(), self.notify_tx.clone()]
    }
}

fn start_dispatcher(
    prepared: &mut Prepared,
    metrics: &Arc<SelfMetrics>,
    planner: &PlannerHandle,
    silences: &Arc<crate::silence::SilenceStore>,
    sent: &SentMemory,
) -> (mpsc::Sender<AlertTransition>, DispatcherHandle) {
    Dispatcher::start_with(
        std::mem::take(&mut prepared.notifiers),
        prepared.config.global.external_labels.clone(),
        metrics.clone(),
        crate::alert::DispatchDeps {
            silences: Some(silences.clone()),
            escalations: Some(planner.escalations()),
            memory: sent.clone(),
        },
    )
}

fn watch_files(watcher: &mut watch::FileWatcher, prepared: &Prepared) {
    for e in watcher.update(prepared.watch.clone()) {
        tracing::warn!(error = %e, "config changes in this folder will need a SIGHUP");
    }
}

/// A reload that would leave no collector or no rule where there were some stops all
/// monitoring: most likely a mistake (an emptied file, a glob that lost its files), so it
/// needs `allow_empty: true`.
fn refuse_emptying(current: &Generation, new: &Prepared) -> Result<(), String> {
    if new.config.allow_empty {
        return Ok(());
    }
    let new_rules: usize = new.groups.iter().map(|g| g.rule_count()).sum();
    let mut why = Vec::new();
    if !current.config.collectors.is_empty() && new.collectors.is_empty() {
        why.push(format!(
            "would remove every collector ({} running)",
            current.config.collectors.len()
        ));
    }
    if current.rule_count > 0 && new_rules == 0 {
        why.push(format!(
            "would remove every rule ({} loaded)",
            current.rule_count
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}: the new configuration {}; set `allow_empty: true` to allow that",
        new.config.path.display(),
        why.join(" and ")
    ))
}

/// One reload: prepare the new config; on success stop the running generation and start
/// the new one (unchanged rule groups carry over), else keep running `current`.
#[allow(clippy::too_many_arguments)] // the daemon's parts, passed explicitly
async fn reload(
    path: &Path,
    journal: Option<&Journal>,
    reason: &str,
    shared: &Shared,
    sinks: &mut Sinks,
    watcher: &mut watch::FileWatcher,
    current: Generation,
) -> (Generation, Result<(), String>) {
    tracing::info!(%reason, "reloading configuration");
    systemd::reloading();
    let mut prepared = match prepare(path, journal) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "new configuration rejected; the old one keeps running");
            record_reload(&shared.metrics, false);
            systemd::ready(&format!(
                "reload failed, running the previous configuration: {}",
                e.lines().next().unwrap_or_default()
            ));
            return (current, Err(e));
        }
    };
    if let Err(e) = refuse_emptying(&current, &prepared) {
        tracing::error!(error = %e, "new configuration refused; the old one keeps running");
        record_reload(&shared.metrics, false);
        systemd::ready(&format!(
            "reload refused, running the previous configuration: {e}"
        ));
        return (current, Err(e));
    }
    for (pattern, n) in &prepared.rule_globs {
        let before = current
            .rule_globs
            .iter()
            .find(|(p, _)| p == pattern)
            .map_or(0, |(_, n)| *n);
        if before > 0 && *n == 0 {
            tracing::warn!(
                %pattern,
                before,
                "rule_files glob matched files before and matches none now: its rules are gone"
            );
            shared.metrics.config_rule_patterns_emptied.inc();
        }
    }
    if prepared.config.global.listen_address != current.config.global.listen_address {
        tracing::warn!(
            old = %current.config.global.listen_address,
            new = %prepared.config.global.listen_address,
            "listen_address changes take effect at the next restart"
        );
    }
    let portable = pipeline::groups_portable(&current.config, &prepared.config);
    let mut carry = current.stop().await;
    if !portable {
        carry.groups.clear();
    }
    sinks.planner.reload(
        std::mem::take(&mut prepared.actuators),
        prepared.config.remedy.clone(),
    );
    let (notify_tx, dispatcher) = start_dispatcher(
        &mut prepared,
        &shared.metrics,
        &sinks.planner,
        &sinks.silences,
        &sinks.sent,
    );
    drop(std::mem::replace(&mut sinks.notify_tx, notify_tx));
    let old_dispatcher = std::mem::replace(&mut sinks.dispatcher, dispatcher);
    // Nothing sends to the old dispatcher any more: it works through its queue and ends.
    tokio::spawn(async move {
        if tokio::time::timeout(STOP_GRACE, old_dispatcher.join())
            .await
            .is_err()
        {
            tracing::warn!("notifications of the previous configuration still pending; dropped");
        }
    });
    watch_files(watcher, &prepared);
    let next = Generation::start(prepared, shared, sinks.senders(), carry);
    record_reload(&shared.metrics, true);
    tracing::info!("configuration reloaded");
    systemd::ready(&status_line(&next.config));
    (next, Ok(()))
}
