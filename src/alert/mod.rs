//! Notifications: every alert transition goes to each configured notifier.
//!
//! The [`Dispatcher`] receives transitions on a channel and hands each notifier its own
//! bounded queue, worked by its own task with retries and backoff, so a slow or dead
//! receiver delays neither the rule engine nor the other notifiers. Each notification is one
//! alert (Alertmanager's `group_by: ['...']`); grouping and a persistent retry spool come later.
//! Silenced alerts are not notified; the planner's escalations are delivered like alerts
//! (`escalation.rs` says how).

pub mod dispatch;
pub mod escalation;
pub mod notifier;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

pub use dispatch::{DeliveryRecord, DispatchDeps, Dispatcher, DispatcherHandle, SentMemory};
pub use notifier::{
    AlertError, Notification, NotificationStatus, Notifier, Notifiers, NotifyError, RetryPolicy,
};

/// A configured notifier, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotifierConfig {
    /// POSTs Alertmanager's webhook JSON (version 4) to a URL.
    Webhook(webhook::WebhookConfig),
}

/// Builds the notifiers from `notifiers:` in medic.yaml.
pub fn build(configs: &BTreeMap<String, NotifierConfig>) -> Result<Notifiers, AlertError> {
    let mut out: Notifiers = BTreeMap::new();
    for (name, cfg) in configs {
        let n: Arc<dyn Notifier> = match cfg {
            NotifierConfig::Webhook(c) => Arc::new(webhook::WebhookNotifier::build(name, c)?),
        };
        out.insert(name.clone(), n);
    }
    Ok(out)
}
