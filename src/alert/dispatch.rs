//! The dispatcher: receives alert transitions and hands each notifier its own bounded
//! queue, worked by its own task with retries and backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

use super::notifier::{Notification, NotificationStatus, Notifier, Notifiers, NotifyError};
use crate::common::metrics::{SelfMetrics, labels};
use crate::common::time::now_ms;
use crate::remedy::Escalation;
use crate::rules::{AlertTransition, TransitionKind};
use crate::silence::SilenceStore;
use crate::store::Labels;

/// How one notification ended, for tests and the journal.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub notifier: String,
    pub fingerprint: u64,
    pub status: NotificationStatus,
    /// `sent`, `failed` or `dropped` (the notifier's queue was full).
    pub outcome: &'static str,
    pub attempts: u32,
    /// The last error, empty when sent.
    pub error: String,
}

/// How many notifications may wait per notifier before new ones are dropped.
const QUEUE_CAPACITY: usize = 1024;

/// Handle to a running dispatcher.
pub struct DispatcherHandle {
    task: JoinHandle<()>,
    records: broadcast::Sender<DeliveryRecord>,
}

impl DispatcherHandle {
    /// Every notification's end (sent, failed after retries, dropped).
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryRecord> {
        self.records.subscribe()
    }

    /// Waits for the dispatcher to stop. It stops once every sender is dropped and each
    /// notifier has worked through its queue (every attempt is bounded by a timeout and the
    /// retries by `max_attempts`); bound the wait with a timeout at shutdown if needed.
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// What the dispatcher reads besides transitions.
#[derive(Default)]
pub struct DispatchDeps {
    /// A silenced alert is not notified.
    pub silences: Option<Arc<SilenceStore>>,
    /// The planner's escalations, delivered to every notifier.
    pub escalations: Option<broadcast::Receiver<Escalation>>,
    /// What the previous config's dispatcher sent (see [`SentMemory`]).
    pub memory: SentMemory,
}

/// Fans alert transitions out to the notifiers.
pub struct Dispatcher;

impl Dispatcher {
    /// [`Dispatcher::start`] with silences and escalations.
    pub fn start_with(
        notifiers: Notifiers,
        external_labels: BTreeMap<String, String>,
        metrics: Arc<SelfMetrics>,
        deps: DispatchDeps,
    ) -> (mpsc::Sender<AlertTransition>, DispatcherHandle) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let (records, _) = broadcast::channel(256);
        let task = tokio::spawn(dispatch(
            rx,
            notifiers,
            external_labels,
            metrics,
            records.clone(),
            deps,
        ));
        (tx, DispatcherHandle { task, records })
    }

    /// [`Dispatcher::start`] remembering what was sent in `memory`, which the dispatcher of
    /// the previous config used: a reload must not send a resolution (or a repeat) again.
    pub fn start_with_memory(
        notifiers: Notifiers,
        external_labels: BTreeMap<String, String>,
        metrics: Arc<SelfMetrics>,
        memory: SentMemory,
    ) -> (mpsc::Sender<AlertTransition>, DispatcherHandle) {
        Self::start_with(
            notifiers,
            external_labels,
            metrics,
            DispatchDeps {
                memory,
                ..DispatchDeps::default()
            },
        )
    }

    /// Starts the dispatcher. `external_labels` are added to every alert's labels (the
    /// alert's own value wins). Send it every alert transition; drop the sender and `join()`
    /// the handle to shut it down.
    pub fn start(
        notifiers: Notifiers,
        external_labels: BTreeMap<String, String>,
        metrics: Arc<SelfMetrics>,
    ) -> (mpsc::Sender<AlertTransition>, DispatcherHandle) {
        Self::start_with(notifiers, external_labels, metrics, DispatchDeps::default())
    }
}

struct Worker {
    name: String,
    notifier: Arc<dyn Notifier>,
    queue: mpsc::Sender<Notification>,
}

/// What one notifier was sent.
#[derive(Default)]
struct Sent {
    /// Last time each firing alert was sent, for `repeat_interval`.
    last_sent: HashMap<u64, i64>,
    /// Episodes (fingerprint, fired-at ms) whose resolution was sent, and when: the rule
    /// engine re-announces a resolved alert for 15 minutes (as Prometheus does for
    /// Alertmanager, which deduplicates), and a receiver wants it once.
    resolved_sent: HashMap<(u64, i64), i64>,
}

/// What was sent, by notifier name. It outlives a dispatcher: the daemon hands it from one
/// config's dispatcher to the next (bounded: resolutions are forgotten after
/// [`RESOLVED_MEMORY_MS`], firing entries when their alert resolves).
#[derive(Clone, Default)]
pub struct SentMemory(Arc<Mutex<HashMap<String, Sent>>>);

/// How long a sent resolution is remembered: past the engine's 15 minutes of re-announcing.
const RESOLVED_MEMORY_MS: i64 = 20 * 60 * 1000;

async fn dispatch(
    mut rx: mpsc::Receiver<AlertTransition>,
    notifiers: Notifiers,
    external_labels: BTreeMap<String, String>,
    metrics: Arc<SelfMetrics>,
    records: broadcast::Sender<DeliveryRecord>,
    deps: DispatchDeps,
) {
    let DispatchDeps {
        silences,
        mut escalations,
        memory,
    } = deps;
    let mut tasks = JoinSet::new();
    let mut workers: Vec<Worker> = Vec::new();
    // alerts that fired while silenced (bounded: a silence over a huge fleet stays cheap)
    let mut held: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for (name, notifier) in notifiers {
        // every outcome exported at 0 from the start, so rate() sees the first failure
        for outcome in ["sent", "failed", "dropped"] {
            drop(
                metrics
                    .notifications_total
                    .get_or_create(&labels(&[("notifier", &name), ("outcome", outcome)])),
            );
        }
        let (qtx, qrx) = mpsc::channel(QUEUE_CAPACITY);
        tasks.spawn(deliver(
            name.clone(),
            notifier.clone(),
            qrx,
            metrics.clone(),
            records.clone(),
        ));
        workers.push(Worker {
            name,
            notifier,
            queue: qtx,
        });
    }
    loop {
        let t = tokio::select! {
            t = rx.recv() => match t {
                Some(t) => t,
                None => break,
            },
            e = recv_escalation(&mut escalations) => {
                match e {
                    Ok(e) => {
                        let n = super::escalation::notification(&e, &external_labels);
                        for w in &workers {
                            enqueue(w, &n, &metrics, &records);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        tracing::error!(lost = k, "escalations lost: the dispatcher fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => escalations = None,
                }
                continue;
            }
        };
        let Some(n) = notification(&t, &external_labels) else {
            continue;
        };
        let now = now_ms();
        if let Some(s) = &silences
            && let Some(id) = s.silenced_by(|k| n.labels.get(k).map(String::as_str), now)
        {
            tracing::debug!(silence = %id, rule = %n.rule, "silenced: not notified");
            if n.status == NotificationStatus::Firing && held.len() < QUEUE_CAPACITY * 16 {
                held.insert(n.fingerprint);
            }
            continue;
        }
        // firing while silenced and still firing once the silence ended: announce it now
        let unheld = t.kind == TransitionKind::StillFiring && held.remove(&n.fingerprint);
        if t.kind == TransitionKind::Resolved {
            held.remove(&n.fingerprint);
        }
        // a plain map behind the lock: nothing awaits while it is held
        let mut sent = memory.0.lock().unwrap_or_else(|e| e.into_inner());
        for w in &mut workers {
            let w_sent = sent.entry(w.name.clone()).or_default();
            let send = match t.kind {
                TransitionKind::Firing => true,
                TransitionKind::StillFiring if unheld => true,
                TransitionKind::StillFiring => match w.notifier.repeat_interval() {
                    // with no memory of a send (medic restarted, the alert state was
                    // restored) it counts as sent when it started firing: a restart does
                    // not repeat it early
                    Some(every) => {
                        let last = w_sent
                            .last_sent
                            .get(&n.fingerprint)
                            .copied()
                            .unwrap_or(n.starts_at_ms);
                        now.saturating_sub(last) >= every.as_millis() as i64
                    }
                    None => false,
                },
                TransitionKind::Resolved => {
                    w_sent.last_sent.remove(&n.fingerprint);
                    w_sent
                        .resolved_sent
                        .retain(|_, at| now.saturating_sub(*at) < RESOLVED_MEMORY_MS);
                    let episode = (n.fingerprint, t.alert.fired_at_ms.unwrap_or_default());
                    w.notifier.send_resolved()
                        && w_sent.resolved_sent.insert(episode, now).is_none()
                }
                TransitionKind::Pending => false,
            };
            if !send {
                continue;
            }
            if n.status == NotificationStatus::Firing {
                w_sent.last_sent.insert(n.fingerprint, now);
            }
            enqueue(w, &n, &metrics, &records);
        }
    }
    // closing the queues lets each worker finish what it holds, then stop
    drop(workers);
    while tasks.join_next().await.is_some() {}
}

/// The next escalation; never ready without a receiver.
async fn recv_escalation(
    rx: &mut Option<broadcast::Receiver<Escalation>>,
) -> Result<Escalation, broadcast::error::RecvError> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Hands `n` to a worker; never waits on it (a full queue means it is far behind).
fn enqueue(
    w: &Worker,
    n: &Notification,
    metrics: &SelfMetrics,
    records: &broadcast::Sender<DeliveryRecord>,
) {
    if w.queue.try_send(n.clone()).is_err() {
        finish(
            metrics,
            records,
            DeliveryRecord {
                notifier: w.name.clone(),
                fingerprint: n.fingerprint,
                status: n.status,
                outcome: "dropped",
                attempts: 0,
                error: "queue full".into(),
            },
        );
    }
}

/// The notification for a transition; `None` when there is nothing to tell (pending, or a
/// pending alert that went away without firing).
fn notification(
    t: &AlertTransition,
    external_labels: &BTreeMap<String, String>,
) -> Option<Notification> {
    let status = match t.kind {
        TransitionKind::Pending => return None,
        TransitionKind::Firing | TransitionKind::StillFiring => NotificationStatus::Firing,
        TransitionKind::Resolved => {
            t.alert.fired_at_ms?;
            NotificationStatus::Resolved
        }
    };
    let mut map: BTreeMap<String, String> = external_labels.clone();
    for (k, v) in t.alert.labels.iter() {
        map.insert(k.to_string(), v.to_string());
    }
    let fingerprint = Labels::new(map.iter().map(|(k, v)| (k.as_str(), v.as_str()))).fingerprint();
    Some(Notification {
        status,
        rule: t.alert.rule.clone(),
        group: t.alert.group.clone(),
        labels: map,
        annotations: t.alert.annotations.clone(),
        escalation: None,
        starts_at_ms: t.alert.fired_at_ms.unwrap_or(t.alert.active_at_ms),
        ends_at_ms: match status {
            NotificationStatus::Firing => None,
            NotificationStatus::Resolved => Some(t.alert.resolved_at_ms.unwrap_or(t.at_ms)),
        },
        fingerprint,
    })
}

/// One notifier's worker: sends its queue in order, retrying with exponential backoff.
async fn deliver(
    name: String,
    notifier: Arc<dyn Notifier>,
    mut queue: mpsc::Receiver<Notification>,
    metrics: Arc<SelfMetrics>,
    records: broadcast::Sender<DeliveryRecord>,
) {
    while let Some(n) = queue.recv().await {
        let policy = notifier.retry_policy();
        let mut backoff = policy.initial_backoff;
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            match notifier.send(&n).await {
                Ok(()) => break Ok(()),
                Err(e @ NotifyError::Permanent(_)) => break Err(e),
                Err(e) if attempts >= policy.max_attempts.max(1) => break Err(e),
                Err(e) => {
                    tracing::debug!(notifier = %name, attempt = attempts, error = %e, "notification failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
            }
        };
        let (outcome, error) = match result {
            Ok(()) => ("sent", String::new()),
            Err(e) => ("failed", e.to_string()),
        };
        finish(
            &metrics,
            &records,
            DeliveryRecord {
                notifier: name.clone(),
                fingerprint: n.fingerprint,
                status: n.status,
                outcome,
                attempts,
                error,
            },
        );
    }
}

fn finish(metrics: &SelfMetrics, records: &broadcast::Sender<DeliveryRecord>, r: DeliveryRecord) {
    metrics
        .notifications_total
        .get_or_create(&labels(&[
            ("notifier", &r.notifier),
            ("outcome", r.outcome),
        ]))
        .inc();
    if r.outcome == "sent" {
        tracing::info!(notifier = %r.notifier, status = r.status.as_str(), fingerprint = %format!("{:016x}", r.fingerprint), attempts = r.attempts, "notification sent");
    } else {
        tracing::warn!(notifier = %r.notifier, status = r.status.as_str(), fingerprint = %format!("{:016x}", r.fingerprint), attempts = r.attempts, outcome = r.outcome, error = %r.error, "notification not delivered");
    }
    // no subscriber is fine
    let _ = records.send(r);
}
