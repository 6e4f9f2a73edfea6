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

    /// Every key starting with `prefix`, with its value, in key order.
    pub fn kv_prefix(&self, prefix: &str) -> Result<Vec<(String, String)>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT key, value FROM kv WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![prefix], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Writes several keys in one transaction.
    pub fn kv_put_many(&self, kv: &[(String, String)]) -> Result<(), JournalError> {
        let tx = self.conn.unchecked_transaction().map_err(|e| self.err(e))?;
        for (k, v) in kv {
            self.kv_put(k, v)?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn kv_delete(&self, key: &str) -> Result<(), JournalError> {
        self.conn
            .execute("DELETE FROM kv WHERE key = ?1", params![key])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}
