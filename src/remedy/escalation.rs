//! What the planner hands the notifiers when remediation did not fix an alert: the
//! incident's whole history as values. alert/ decides how a notifier shows it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// What happened: `fired`, `action_started`, `action_ended`, `verified`, `unverified`,
    /// `skipped`, `awaiting_approval`, `approved`, `rejected`, `escalated`, `resolved`,
    /// `revert_started`, `revert_ended`, `revert_cancelled`, `flapping`, `silenced`,
    /// `restored`, `interrupted`, `closed`.
    pub kind: String,
    /// The ladder rung it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<usize>,
    /// One line for people.
    pub detail: String,
    /// Structured detail: an action's outcome (`before`, `after`, `data`), a skip reason.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

/// An incident that medic could not (or may not) fix, for a person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub incident: i64,
    pub rule: String,
    pub group: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing (ms since the epoch).
    pub started_ms: i64,
    /// When the escalation was decided.
    pub at_ms: i64,
    /// Why remediation stopped: `ladder_exhausted`, `budget_exhausted`, `breaker_open`,
    /// `rejected`, `approval_timeout`, `flapping`, `unverified`, `failed`.
    pub reason: String,
    /// One line for people.
    pub summary: String,
    /// Everything that happened, oldest first: what fired, what ran, what each action
    /// changed, why it stopped.
    pub history: Vec<Event>,
}
