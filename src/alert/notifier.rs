//! The contract between the dispatcher and every notifier: the [`Notification`] it
//! delivers, the [`Notifier`] trait, retries and errors.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use async_trait::async_trait;

/// Whether a notification announces or clears an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationStatus {
    Firing,
    Resolved,
}

impl NotificationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Firing => "firing",
            NotificationStatus::Resolved => "resolved",
        }
    }
}

/// One alert as notifiers see it (external labels already added).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub status: NotificationStatus,
    pub rule: String,
    pub group: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing (ms since the epoch).
    pub starts_at_ms: i64,
    /// When it resolved; `None` while firing.
    pub ends_at_ms: Option<i64>,
    /// Hash of the labels (Alertmanager prints it as 16 hex digits).
    pub fingerprint: u64,
    /// Set when this notification is a remediation escalation: the incident's history.
    pub escalation: Option<Arc<crate::remedy::Escalation>>,
}

/// Retries of one notification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failure; doubles after each further one.
    pub initial_backoff: StdDuration,
    /// The wait never exceeds this.
    pub max_backoff: StdDuration,
}

/// Why one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Worth retrying (connection refused, 5xx, 429).
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help (4xx other than 408 and 429, a payload that cannot be encoded).
    #[error("{0}")]
    Permanent(String),
    /// No answer within the notifier's timeout (retried).
    #[error("no answer within {0:?}")]
    Timeout(StdDuration),
}

/// Something that delivers notifications. `send` makes one attempt and must return within
/// the notifier's timeout; the dispatcher retries.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Also notify when an alert resolves.
    fn send_resolved(&self) -> bool;
    /// Re-send a still-firing alert this often (`None`: only on transitions).
    fn repeat_interval(&self) -> Option<StdDuration>;
    fn retry_policy(&self) -> RetryPolicy;
    async fn send(&self, n: &Notification) -> Result<(), NotifyError>;
}

/// Notifier instances by name.
pub type Notifiers = BTreeMap<String, Arc<dyn Notifier>>;

/// A bad notifier configuration.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("notifier `{name}`: invalid URL {url:?}: {reason}")]
    InvalidUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error("notifier `{name}`: invalid header {header:?}: {reason}")]
    InvalidHeader {
        name: String,
        header: String,
        reason: String,
    },
    #[error("notifier `{name}`: bearer token: {reason}")]
    Secret { name: String, reason: String },
    #[error("notifier `{name}`: {reason}")]
    Invalid { name: String, reason: String },
    #[error("notifier `{name}`: cannot build the HTTP client: {source}")]
    HttpClient {
        name: String,
        source: reqwest::Error,
    },
}
