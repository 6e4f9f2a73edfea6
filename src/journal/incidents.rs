//! Incidents (one alert instance from firing to resolved) and the actions taken in them.

use rusqlite::{OptionalExtension, params};

use super::{Journal, JournalError};

/// Status of a journaled action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Started, not finished (yet). After a crash these become `Interrupted`.
    Running,
    Ok,
    Failed,
    Noop,
    /// Did not finish within its timeout (and was stopped).
    Timeout,
    /// Was running when medic stopped; never silently retried.
    Interrupted,
}

impl ActionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Running => "running",
            ActionStatus::Ok => "ok",
            ActionStatus::Failed => "failed",
            ActionStatus::Noop => "noop",
            ActionStatus::Timeout => "timeout",
            ActionStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> ActionStatus {
        match s {
            "running" => ActionStatus::Running,
            "ok" => ActionStatus::Ok,
            "noop" => ActionStatus::Noop,
            "timeout" => ActionStatus::Timeout,
            "interrupted" => ActionStatus::Interrupted,
            _ => ActionStatus::Failed,
        }
    }
}

/// An incident (one alert instance from firing to resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: i64,
    pub fingerprint: String,
    pub alertname: String,
    /// The alert's labels as a JSON object.
    pub labels: String,
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
}

/// A journaled action.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionRecord {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub action: String,
    pub target: Option<String>,
    pub idempotency_key: String,
    /// Parameters as JSON.
    pub params: String,
    pub dry_run: bool,
    pub started_ms: i64,
    pub finished_ms: Option<i64>,
    pub status: ActionStatus,
    pub message: Option<String>,
    pub stderr_tail: Option<String>,
}

/// What starting an action records.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    pub incident_id: Option<i64>,
    pub action: &'a str,
    pub target: Option<&'a str>,
    pub idempotency_key: &'a str,
    pub params: &'a str,
    pub dry_run: bool,
    pub started_ms: i64,
}

impl Journal {
    /// Records a new incident and returns its id.
    pub fn incident_open(
        &self,
        fingerprint: &str,
        alertname: &str,
        labels_json: &str,
        started_ms: i64,
    ) -> Result<i64, JournalError> {
        self.conn
            .execute(
                "INSERT INTO incidents (fingerprint, alertname, labels, started_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![fingerprint, alertname, labels_json, started_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Marks an incident resolved.
    pub fn incident_resolve(&self, id: i64, resolved_ms: i64) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE incidents SET resolved_ms = ?2 WHERE id = ?1",
                params![id, resolved_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// The open incident of an alert instance, if any.
    pub fn incident_open_for(&self, fingerprint: &str) -> Result<Option<Incident>, JournalError> {
        self.conn
            .query_row(
                "SELECT id, fingerprint, alertname, labels, started_ms, resolved_ms FROM incidents
                 WHERE fingerprint = ?1 AND resolved_ms IS NULL ORDER BY id DESC LIMIT 1",
                params![fingerprint],
                incident_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The newest `limit` incidents, newest first.
    pub fn incidents_recent(&self, limit: usize) -> Result<Vec<Incident>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, fingerprint, alertname, labels, started_ms, resolved_ms FROM incidents
                 ORDER BY id DESC LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], incident_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Records an action as running, before it is performed; returns its id.
    pub fn action_begin(&self, a: &NewAction<'_>) -> Result<i64, JournalError> {
        self.conn
            .execute(
                "INSERT INTO actions (incident_id, action, target, idempotency_key, params,
                                      dry_run, started_ms, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')",
                params![
                    a.incident_id,
                    a.action,
                    a.target,
                    a.idempotency_key,
                    a.params,
                    a.dry_run,
                    a.started_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records how an action ended.
    pub fn action_finish(
        &self,
        id: i64,
        status: ActionStatus,
        message: Option<&str>,
        stderr_tail: Option<&str>,
        finished_ms: i64,
    ) -> Result<(), JournalError> {
        self.conn
            .execute(
                "UPDATE actions SET status = ?2, message = ?3, stderr_tail = ?4, finished_ms = ?5
                 WHERE id = ?1",
                params![id, status.as_str(), message, stderr_tail, finished_ms],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// At start-up: marks every action still `running` (medic died during it) as
    /// `interrupted`; returns them so the planner can report them.
    pub fn actions_interrupt_running(&self, at_ms: i64) -> Result<Vec<ActionRecord>, JournalError> {
        let running = self.actions_where("status = 'running'", 1_000_000)?;
        self.conn
            .execute(
                "UPDATE actions SET status = 'interrupted', finished_ms = ?1,
                        message = 'medic stopped while the action was running'
                 WHERE status = 'running'",
                params![at_ms],
            )
            .map_err(|e| self.err(e))?;
        Ok(running
            .into_iter()
            .map(|mut a| {
                a.status = ActionStatus::Interrupted;
                a.finished_ms = Some(at_ms);
                a
            })
            .collect())
    }

    /// The newest `limit` actions, newest first.
    pub fn actions_recent(&self, limit: usize) -> Result<Vec<ActionRecord>, JournalError> {
        self.actions_where("1", limit)
    }

    fn actions_where(&self, cond: &str, limit: usize) -> Result<Vec<ActionRecord>, JournalError> {
        // `cond` is always a constant from this module, never user input.
        let sql = format!(
            "SELECT id, incident_id, action, target, idempotency_key, params, dry_run, started_ms,
                    finished_ms, status, message, stderr_tail
             FROM actions WHERE {cond} ORDER BY id DESC LIMIT ?1"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(ActionRecord {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    action: r.get(2)?,
                    target: r.get(3)?,
                    idempotency_key: r.get(4)?,
                    params: r.get(5)?,
                    dry_run: r.get(6)?,
                    started_ms: r.get(7)?,
                    finished_ms: r.get(8)?,
                    status: ActionStatus::parse(&r.get::<_, String>(9)?),
                    message: r.get(10)?,
                    stderr_tail: r.get(11)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        fingerprint: r.get(1)?,
        alertname: r.get(2)?,
        labels: r.get(3)?,
        started_ms: r.get(4)?,
        resolved_ms: r.get(5)?,
    })
}
