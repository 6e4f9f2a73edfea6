//! Time bounds shared by the built-in cache and knob actuators: the whole action inside its
//! timeout, and a failure that remembers whether it was one (a server that stopped answering
//! is reported as `timeout`, not as any other failure).

use std::time::Duration as StdDuration;

use crate::remedy::actuator::{ActionOutcome, ActionStatus};

/// Why an action could not finish: `status` is `failed` or `timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: ActionStatus,
    pub message: String,
}

impl Failure {
    pub fn timeout(message: impl Into<String>) -> Self {
        Failure {
            status: ActionStatus::Timeout,
            message: message.into(),
        }
    }

    /// The same failure with `what` in front of its message.
    pub fn context(self, what: &str) -> Self {
        Failure {
            status: self.status,
            message: format!("{what}: {}", self.message),
        }
    }

    pub fn outcome(self) -> ActionOutcome {
        ActionOutcome::new(self.status, self.message)
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure {
            status: ActionStatus::Failed,
            message,
        }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// Runs `f` within `timeout`, a `timeout` outcome otherwise.
pub async fn bounded(
    timeout: StdDuration,
    what: &str,
    f: impl std::future::Future<Output = ActionOutcome>,
) -> ActionOutcome {
    match tokio::time::timeout(timeout, f).await {
        Ok(o) => o,
        Err(_) => ActionOutcome::new(
            ActionStatus::Timeout,
            format!("{what} did not finish within {timeout:?}"),
        ),
    }
}
