//! The daemon (`medic run`): loads the config, starts the tasks and wires the channels,
//! reloads on SIGHUP / file changes / `POST /-/reload`, talks to systemd, shuts down cleanly.
//!
//! A (re)load happens in two steps: [`prepare`] reads and builds everything from the config
//! without touching what runs, so a bad config is rejected whole and the old one keeps
//! running; only then is the running [`Generation`] stopped and the new one started. The
//! store, self-metrics and API outlive generations.

pub mod logging;
pub mod systemd;
pub mod watch;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;

use crate::api::metrics::SelfMetrics;
use crate::api::{ApiSettings, ApiState, ControlRequest};
use crate::config::Config;
use crate::store::Store;

/// How long shutdown (and the hand-over at a reload) waits for running work, in-flight
/// actions included, before leaving it behind.
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
}

/// What outlives a reload.
struct Shared {
    store: Arc<Store>,
    metrics: Arc<SelfMetrics>,
    api: Arc<ApiState>,
}

/// Everything built from one config, checked, not yet running.
struct Prepared {
    config: Arc<Config>,
    api: ApiSettings,
    watch: watch::WatchSet,
}

/// The running tasks of one config.
struct Generation {
    config: Arc<Config>,
    stop: tokio_watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Reads the config file and builds everything it describes; any error rejects it whole.
fn prepare(path: &Path) -> Result<Prepared, String> {
    let config = load_config(path)?;
    let token = read_token(&config)?;
    let api = ApiSettings::new(config.global.export_collected, token);
    let watch = watch_set(path, &config);
    Ok(Prepared {
        config: Arc::new(config),
        api,
        watch,
    })
}

fn load_config(path: &Path) -> Result<Config, String> {
    let (config, issues) = Config::load(path).map_err(|e| e.to_string())?;
    for issue in issues {
        tracing::warn!(config = %path.display(), "{issue}");
    }
    Ok(config)
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

/// The config file and the rule files (as globs, so new files are noticed).
fn watch_set(path: &Path, config: &Config) -> watch::WatchSet {
    let abs = |p: &Path| -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(p)
        }
    };
    let config_path = abs(path);
    let dir = config_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    watch::WatchSet {
        files: BTreeSet::from([config_path]),
        patterns: config
            .rule_files
            .iter()
            .map(|p| dir.join(p).to_string_lossy().into_owned())
            .collect(),
    }
}

impl Generation {
    fn start(p: &Prepared, shared: &Shared) -> Generation {
        let (stop, _) = tokio_watch::channel(false);
        shared.api.set_settings(p.api.clone());
        // Collectors, rule groups, the remedy planner and the notifiers start here as their
        // pieces land; detectors (anomaly, SLO) hook in the same way: each is a task that
        // ends when `stop` turns true.
        let tasks = vec![tokio::spawn(store_gc(
            shared.store.clone(),
            shared.metrics.clone(),
            stop.subscribe(),
        ))];
        Generation {
            config: p.config.clone(),
            stop,
            tasks,
        }
    }

    /// Signals every task to stop and waits for them, at most [`STOP_GRACE`].
    async fn stop(self) {
        let _ = self.stop.send(true);
        let all = futures_join(self.tasks);
        if tokio::time::timeout(STOP_GRACE, all).await.is_err() {
            tracing::warn!(
                grace = ?STOP_GRACE,
                "tasks still running after the grace period; leaving them"
            );
        }
    }
}

/// How often samples past retention are dropped.
const GC_INTERVAL: Duration = Duration::from_secs(30);

/// Drops samples past retention (appends trim their own series; this catches series that
/// stopped receiving samples) and keeps `medic_store_series` current.
async fn store_gc(
    store: Arc<Store>,
    metrics: Arc<SelfMetrics>,
    mut stop: tokio_watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(GC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.wait_for(|v| *v) => return,
            _ = tick.tick() => {}
        }
        store.gc(crate::api::prom::now_ms());
        metrics.store_series.set(store.series_count() as i64);
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        // JoinError: the task panicked (already reported by the panic hook) or was aborted.
        let _ = t.await;
    }
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
    let prepared = prepare(&opts.config_path).map_err(DaemonError::Config)?;

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
    let listen = prepared.config.global.listen_address.clone();
    let listener = crate::api::server::bind(&listen).await?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen.clone());
    let (api_stop, mut api_stop_rx) = tokio_watch::channel(false);
    let api_task = tokio::spawn(crate::api::server::serve(
        listener,
        api.clone(),
        async move {
            let _ = api_stop_rx.wait_for(|v| *v).await;
        },
    ));
    tracing::info!(address = %local, "API listening");

    let shared = Shared {
        store,
        metrics: metrics.clone(),
        api,
    };
    let mut watcher = watch::FileWatcher::new()?;
    for e in watcher.update(prepared.watch.clone()) {
        tracing::warn!(error = %e, "config changes in this folder will need a SIGHUP");
    }
    let mut current = Generation::start(&prepared, &shared);
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
        let result = reload(
            &opts.config_path,
            &reason,
            &shared,
            &mut watcher,
            &mut current,
        )
        .await;
        if let Some(tx) = reply {
            let _ = tx.send(result);
        }
    }

    systemd::stopping();
    current.stop().await;
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

/// One reload: prepare the new config; on success replace the running generation.
async fn reload(
    path: &Path,
    reason: &str,
    shared: &Shared,
    watcher: &mut watch::FileWatcher,
    current: &mut Generation,
) -> Result<(), String> {
    tracing::info!(%reason, "reloading configuration");
    systemd::reloading();
    let prepared = match prepare(path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "new configuration rejected; the old one keeps running");
            record_reload(&shared.metrics, false);
            systemd::ready(&format!(
                "reload failed, running the previous configuration: {}",
                e.lines().next().unwrap_or_default()
            ));
            return Err(e);
        }
    };
    if prepared.config.global.listen_address != current.config.global.listen_address {
        tracing::warn!(
            old = %current.config.global.listen_address,
            new = %prepared.config.global.listen_address,
            "listen_address changes take effect at the next restart"
        );
    }
    let old = std::mem::replace(current, Generation::start(&prepared, shared));
    old.stop().await;
    for e in watcher.update(prepared.watch.clone()) {
        tracing::warn!(error = %e, "config changes in this folder will need a SIGHUP");
    }
    record_reload(&shared.metrics, true);
    tracing::info!("configuration reloaded");
    systemd::ready(&status_line(&current.config));
    Ok(())
}
