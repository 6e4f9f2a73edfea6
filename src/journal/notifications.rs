//! The notification spool: notifications waiting for delivery, retried until delivered.

use rusqlite::params;

use super::{Journal, JournalError};

/// A notification waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingNotification {
    pub id: i64,
    pub notifier: String,
    pub payload: String,
    pub created_ms: i64,
    pub attempts: i64,
    pub next_attempt_ms: i64,
}

impl Journal {
    /// Queues a notification before it is sent; returns its id.
    pub fn notification_enqueue(
        &self,
        notifier: &str,
        payload: &str,
        now_ms: i64,
    ) -> Result<i64, JournalError> {
        self.conn
            .execute(
                "INSERT INTO notifications (notifier, payload, created_ms, next_attempt_ms)
                 VALUES (?1, ?2, ?3, ?3)",
                params![notifier, payload, now_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Undelivered notifications of `notifier` due at `now_ms`, oldest first.
    pub fn notifications_due(
        &self,
        notifier: &str,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<PendingNotification>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, notifier, payload, created_ms, attempts, next_attempt_ms
                 FROM notifications
                 WHERE notifier = ?1 AND delivered_ms IS NULL AND next_attempt_ms <= ?2
                 ORDER BY id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![notifier, now_ms, limit as i64], |r| {
                Ok(PendingNotification {
                    id: r.get(0)?,
                    notifier: r.get(1)?,
                    payload: r.get(2)?,
                    created_ms: r.get(3)?,
                    attempts: r.get(4)?,
                    next_attempt_ms: r.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn notification_delivered(&self, id: i64, at_ms: i64) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE notifications SET delivered_ms = ?2, attempts = attempts + 1 WHERE id = ?1",
                params![id, at_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Records a failed attempt and when to try again.
    pub fn notification_failed(
        &self,
        id: i64,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE notifications SET attempts = attempts + 1, last_error = ?2,
                        next_attempt_ms = ?3 WHERE id = ?1",
                params![id, error, next_attempt_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
