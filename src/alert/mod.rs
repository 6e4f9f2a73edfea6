//! Notifications: every alert transition goes to each configured notifier.

use serde::Deserialize;

/// A configured notifier, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotifierConfig {}
