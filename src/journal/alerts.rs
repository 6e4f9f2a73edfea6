//! Alert state: each rule group's pending and firing alerts and when it last evaluated,
//! so a restart restores `activeAt` and firing alerts (Prometheus keeps the same in its
//! `ALERTS_FOR_STATE` series) and resolves what resolved while medic was down.

use rusqlite::{OptionalExtension, params};

use super::{Journal, JournalError};

/// One saved alert of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertStateRow {
    pub rule: String,
    /// The alert's labels as a JSON object.
    pub labels: String,
    /// `pending` or `firing`.
    pub state: String,
    pub active_at_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub last_sent_ms: Option<i64>,
    /// None for NaN (SQLite has no NaN).
    pub value: Option<f64>,
    /// The annotations as a JSON object.
    pub annotations: String,
}

impl Journal {
    /// Replaces the saved alerts of `group` and records `last_eval_ms`, in one transaction.
    pub fn alert_state_save(
        &self,
        group: &str,
        rows: &[AlertStateRow],
        last_eval_ms: i64,
    ) -> Result<(), JournalError> {
        let e = |err| self.err(err);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        tx.execute(
            "DELETE FROM alert_state WHERE group_key = ?1",
            params![group],
        )
        .map_err(e)?;
        {
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO alert_state (group_key, rule, labels, state, active_at_ms,
                         fired_at_ms, last_sent_ms, value, annotations)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .map_err(e)?;
            for r in rows {
                ins.execute(params![
                    group,
                    r.rule,
                    r.labels,
                    r.state,
                    r.active_at_ms,
                    r.fired_at_ms,
                    r.last_sent_ms,
                    r.value,
                    r.annotations
                ])
                .map_err(e)?;
            }
        }
        Self::heartbeat(&tx, group, last_eval_ms).map_err(e)?;
        tx.commit().map_err(e)
    }

    /// Records that `group` evaluated at `last_eval_ms` (its alerts unchanged).
    pub fn alert_state_heartbeat(
        &self,
        group: &str,
        last_eval_ms: i64,
    ) -> Result<(), JournalError> {
        Self::heartbeat(&self.conn, group, last_eval_ms).map_err(|e| self.err(e))
    }

    fn heartbeat(conn: &rusqlite::Connection, group: &str, at: i64) -> rusqlite::Result<()> {
        conn.prepare_cached(
            "INSERT INTO alert_groups (group_key, last_eval_ms) VALUES (?1, ?2)
             ON CONFLICT (group_key) DO UPDATE SET last_eval_ms = ?2",
        )?
        .execute(params![group, at])
        .map(|_| ())
    }

    /// When `group` last evaluated (None: never saved) and its saved alerts.
    pub fn alert_state_load(
        &self,
        group: &str,
    ) -> Result<(Option<i64>, Vec<AlertStateRow>), JournalError> {
        let e = |err| self.err(err);
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_eval_ms FROM alert_groups WHERE group_key = ?1",
                params![group],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rule, labels, state, active_at_ms, fired_at_ms, last_sent_ms, value,
                        annotations
                 FROM alert_state WHERE group_key = ?1 ORDER BY rule, labels",
            )
            .map_err(e)?;
        let rows = stmt
            .query_map(params![group], |r| {
                Ok(AlertStateRow {
                    rule: r.get(0)?,
                    labels: r.get(1)?,
                    state: r.get(2)?,
                    active_at_ms: r.get(3)?,
                    fired_at_ms: r.get(4)?,
                    last_sent_ms: r.get(5)?,
                    value: r.get(6)?,
                    annotations: r.get(7)?,
                })
            })
            .map_err(e)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        Ok((last, rows))
    }

    /// Every group with saved state.
    pub fn alert_state_groups(&self) -> Result<Vec<String>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT group_key FROM alert_groups
                 UNION SELECT group_key FROM alert_state ORDER BY 1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Drops the saved state of a group that no longer exists.
    pub fn alert_state_forget(&self, group: &str) -> Result<(), JournalError> {
        let e = |err| self.err(err);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        tx.execute(
            "DELETE FROM alert_state WHERE group_key = ?1",
            params![group],
        )
        .map_err(e)?;
        tx.execute(
            "DELETE FROM alert_groups WHERE group_key = ?1",
            params![group],
        )
        .map_err(e)?;
        tx.commit().map_err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_replaces_load_and_forget() {
        let j = Journal::open_in_memory().unwrap();
        let row = |rule: &str, state: &str| AlertStateRow {
            rule: rule.into(),
            labels: r#"{"alertname":"A"}"#.into(),
            state: state.into(),
            active_at_ms: 10,
            fired_at_ms: (state == "firing").then_some(20),
            last_sent_ms: None,
            value: None,
            annotations: "{}".into(),
        };
        assert_eq!(j.alert_state_load("f;g").unwrap(), (None, vec![]));
        j.alert_state_save("f;g", &[row("A", "pending"), row("B", "firing")], 100)
            .unwrap();
        j.alert_state_save("f;g", &[row("B", "firing")], 200)
            .unwrap();
        j.alert_state_heartbeat("f;g", 300).unwrap();
        j.alert_state_save("f;h", &[], 50).unwrap();
        assert_eq!(
            j.alert_state_load("f;g").unwrap(),
            (Some(300), vec![row("B", "firing")])
        );
        assert_eq!(j.alert_state_groups().unwrap(), ["f;g", "f;h"]);
        j.alert_state_forget("f;g").unwrap();
        assert_eq!(j.alert_state_groups().unwrap(), ["f;h"]);
    }
}
