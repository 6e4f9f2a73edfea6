//! Small keyed state (breaker state, ...).

use rusqlite::{OptionalExtension, params};

use super::{Journal, JournalError};

impl Journal {
    pub fn kv_get(&self, key: &str) -> Result<Option<String>, JournalError> {
        self.conn
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn kv_put(&self, key: &str, value: &str) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO kv (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
