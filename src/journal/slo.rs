//! SLO minute buckets: event counts per SLO and minute, reloaded at start.

use rusqlite::params;

use super::{Journal, JournalError};

/// One SLO minute bucket: event counts for the minute starting at `minute_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloBucket {
    pub minute_ms: i64,
    pub errors: f64,
    pub total: f64,
}

impl Journal {
    /// Sets (not adds to) the counts of one SLO minute bucket. Called on every detector tick
    /// for the current minute, so a crash loses at most one tick of counts.
    pub fn slo_put_bucket(&self, slo: &str, bucket: SloBucket) -> Result<(), JournalError> {
        self.conn
            .prepare_cached(
                "INSERT INTO slo_buckets (slo, minute_ms, errors, total) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (slo, minute_ms) DO UPDATE SET errors = ?3, total = ?4",
            )
            .and_then(|mut s| {
                s.execute(params![slo, bucket.minute_ms, bucket.errors, bucket.total])
            })
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The buckets of `slo` with `minute_ms >= since_ms`, oldest first.
    pub fn slo_buckets(&self, slo: &str, since_ms: i64) -> Result<Vec<SloBucket>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT minute_ms, errors, total FROM slo_buckets
                 WHERE slo = ?1 AND minute_ms >= ?2 ORDER BY minute_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![slo, since_ms], |r| {
                Ok(SloBucket {
                    minute_ms: r.get(0)?,
                    errors: r.get(1)?,
                    total: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Deletes the buckets of `slo` older than `before_ms`.
    pub fn slo_prune(&self, slo: &str, before_ms: i64) -> Result<usize, JournalError> {
        self.conn
            .execute(
                "DELETE FROM slo_buckets WHERE slo = ?1 AND minute_ms < ?2",
                params![slo, before_ms],
            )
            .map_err(|e| self.err(e))
    }
}
