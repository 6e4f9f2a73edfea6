//! Silences, one JSON body per row (silence/ owns their meaning).

use rusqlite::params;

use super::{Journal, JournalError};

impl Journal {
    pub fn silence_put(&self, id: &str, body: &str, ends_ms: i64) -> Result<(), JournalError> {
        self.conn
            .execute(
                "INSERT INTO silences (id, body, ends_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET body = ?2, ends_ms = ?3",
                params![id, body, ends_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    pub fn silences_all(&self) -> Result<Vec<String>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body FROM silences ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Deletes silences that ended before `before_ms`.
    pub fn silences_prune(&self, before_ms: i64) -> Result<usize, JournalError> {
        self.conn
            .execute(
                "DELETE FROM silences WHERE ends_ms < ?1",
                params![before_ms],
            )
            .map_err(|e| self.err(e))
    }
}
