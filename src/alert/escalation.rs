//! How an [`Escalation`] (a remedy value) becomes a notification: the incident's alert with
//! `medic_escalation="true"` added to its labels (so receivers see it as its own alert and
//! page on it), its reason and history as annotations, and the whole value attached for
//! notifiers that carry structure (the webhook adds it as `medicEscalation`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::notifier::{Notification, NotificationStatus};
use crate::common::time::rfc3339_ms;
use crate::remedy::Escalation;
use crate::store::Labels;

/// The label that marks an escalation.
pub const ESCALATION_LABEL: &str = "medic_escalation";

/// The notification for an escalation.
pub fn notification(e: &Escalation, external_labels: &BTreeMap<String, String>) -> Notification {
    let mut labels = external_labels.clone();
    labels.extend(e.labels.clone());
    labels.insert(ESCALATION_LABEL.into(), "true".into());
    let mut annotations = e.annotations.clone();
    annotations.insert("medic_escalation_reason".into(), e.reason.clone());
    annotations.insert("medic_escalation_summary".into(), e.summary.clone());
    annotations.insert("medic_incident".into(), e.incident.to_string());
    annotations.insert("medic_history".into(), history_text(e));
    let fingerprint =
        Labels::new(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))).fingerprint();
    Notification {
        status: NotificationStatus::Firing,
        rule: e.rule.clone(),
        group: e.group.clone(),
        labels,
        annotations,
        starts_at_ms: e.started_ms,
        ends_at_ms: None,
        fingerprint,
        escalation: Some(Arc::new(e.clone())),
    }
}

/// The history as lines: `time kind [step N] detail`.
fn history_text(e: &Escalation) -> String {
    let mut out = String::new();
    for ev in &e.history {
        let step = ev.step.map(|s| format!(" [step {s}]")).unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {}{step} {}",
            rfc3339_ms(ev.at_ms),
            ev.kind,
            ev.detail
        );
    }
    out
}
