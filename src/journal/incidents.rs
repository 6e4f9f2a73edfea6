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

/// An incident (one firing episode of one alert instance), as journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: i64,
    pub fingerprint: String,
    pub alertname: String,
    /// The alert's labels as a JSON object.
    pub labels: String,
    pub started_ms: i64,
    pub resolved_ms: Option<i64>,
    /// The rule group.
    pub group: String,
    /// Where the planner's state machine stands (`closed` when done).
    pub phase: String,
    /// How it ended (`verified`, `escalated`, `resolved`, ...), once known.
    pub outcome: Option<String>,
    /// The planner's whole state of the incident, JSON (remedy/ owns its meaning).
    pub state: String,
    pub updated_ms: i64,
}

/// What opening an incident records.
#[derive(Debug, Clone)]
pub struct NewIncident<'a> {
    pub fingerprint: &'a str,
    pub alertname: &'a str,
    pub group: &'a str,
    pub labels_json: &'a str,
    pub started_ms: i64,
    pub phase: &'a str,
    pub state: &'a str,
}

/// An incident's new state, written with at most one action change in one transaction, so
/// that a crash never leaves the two disagreeing.
#[derive(Debug, Clone)]
pub struct IncidentSave<'a> {
    pub id: i64,
    pub phase: &'a str,
    pub outcome: Option<&'a str>,
    pub resolved_ms: Option<i64>,
    pub state: &'a str,
    pub updated_ms: i64,
}

/// How an action ended.
#[derive(Debug, Clone)]
pub struct ActionFinish<'a> {
    pub id: i64,
    pub status: ActionStatus,
    pub message: Option<&'a str>,
    pub stderr_tail: Option<&'a str>,
    /// The actuator's whole outcome (before/after/data), JSON.
    pub result: Option<&'a str>,
    pub finished_ms: i64,
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// Only those not closed (`Some(true)`), only closed ones (`Some(false)`).
    pub open: Option<bool>,
    pub alertname: Option<String>,
    pub outcome: Option<String>,
    pub limit: usize,
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
    /// The actuator's outcome as JSON, when journaled with one.
    pub result: Option<String>,
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
                &format!(
                    "SELECT {INCIDENT_COLUMNS} FROM incidents
                 WHERE fingerprint = ?1 AND resolved_ms IS NULL ORDER BY id DESC LIMIT 1"
                ),
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
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents ORDER BY id DESC LIMIT ?1"
            ))
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
                    finished_ms, status, message, stderr_tail, result
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
                    result: r.get(12)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

const INCIDENT_COLUMNS: &str = "id, fingerprint, alertname, labels, started_ms, resolved_ms, \
     group_name, phase, outcome, state, updated_ms";

fn incident_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Incident> {
    Ok(Incident {
        id: r.get(0)?,
        fingerprint: r.get(1)?,
        alertname: r.get(2)?,
        labels: r.get(3)?,
        started_ms: r.get(4)?,
        resolved_ms: r.get(5)?,
        group: r.get(6)?,
        phase: r.get(7)?,
        outcome: r.get(8)?,
        state: r.get(9)?,
        updated_ms: r.get(10)?,
    })
}

impl Journal {
    /// Opens an incident with the planner's first state; returns its id.
    pub fn incident_create(&self, n: &NewIncident<'_>) -> Result<i64, JournalError> {
        self.conn
            .execute(
                "INSERT INTO incidents (fingerprint, alertname, rule, group_name, labels,
                                        started_ms, phase, state, updated_ms)
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?5)",
                params![
                    n.fingerprint,
                    n.alertname,
                    n.group,
                    n.labels_json,
                    n.started_ms,
                    n.phase,
                    n.state
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Writes an incident's state and, in the same transaction, starts or finishes one of
    /// its actions; returns the id of a started action.
    pub fn incident_save(
        &self,
        s: &IncidentSave<'_>,
        begin: Option<&NewAction<'_>>,
        finish: Option<&ActionFinish<'_>>,
        kv: &[(String, String)],
    ) -> Result<Option<i64>, JournalError> {
        let e = |err| self.err(err);
        let tx = self.conn.unchecked_transaction().map_err(e)?;
        let mut started = None;
        if let Some(a) = begin {
            started = Some(self.action_begin(a)?);
        }
        if let Some(f) = finish {
            tx.execute(
                "UPDATE actions SET status = ?2, message = ?3, stderr_tail = ?4, result = ?5,
                        finished_ms = ?6 WHERE id = ?1",
                params![
                    f.id,
                    f.status.as_str(),
                    f.message,
                    f.stderr_tail,
                    f.result,
                    f.finished_ms
                ],
            )
            .map_err(e)?;
        }
        tx.execute(
            "UPDATE incidents SET phase = ?2, outcome = ?3, resolved_ms = ?4, state = ?5,
                    updated_ms = ?6 WHERE id = ?1",
            params![
                s.id,
                s.phase,
                s.outcome,
                s.resolved_ms,
                s.state,
                s.updated_ms
            ],
        )
        .map_err(e)?;
        for (k, v) in kv {
            self.kv_put(k, v)?;
        }
        tx.commit().map_err(e)?;
        Ok(started)
    }

    /// Every incident not closed, oldest first (the planner resumes them at start).
    pub fn incidents_unclosed(&self) -> Result<Vec<Incident>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE phase != 'closed' ORDER BY id"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt.query_map([], incident_row).map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Incidents matching `f`, newest first.
    pub fn incidents_query(&self, f: &IncidentFilter) -> Result<Vec<Incident>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents
                 WHERE (?1 IS NULL OR (?1 = 1 AND phase != 'closed') OR (?1 = 0 AND phase = 'closed'))
                   AND (?2 IS NULL OR alertname = ?2)
                   AND (?3 IS NULL OR outcome = ?3)
                 ORDER BY id DESC LIMIT ?4"
            ))
            .map_err(|e| self.err(e))?;
        let limit = if f.limit == 0 { 100 } else { f.limit } as i64;
        let rows = stmt
            .query_map(params![f.open, f.alertname, f.outcome, limit], incident_row)
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    pub fn incident_get(&self, id: i64) -> Result<Option<Incident>, JournalError> {
        self.conn
            .query_row(
                &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"),
                params![id],
                incident_row,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Start times of an alert instance's incidents since `since_ms` (flapping).
    pub fn incident_starts_since(
        &self,
        alertname: &str,
        fingerprint: &str,
        since_ms: i64,
    ) -> Result<Vec<i64>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT started_ms FROM incidents WHERE rule = ?1 AND fingerprint = ?2
                   AND started_ms >= ?3 ORDER BY started_ms",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![alertname, fingerprint, since_ms], |r| r.get(0))
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// The actions of one incident, oldest first.
    pub fn actions_of_incident(&self, incident: i64) -> Result<Vec<ActionRecord>, JournalError> {
        let mut v = self.actions_where_incident(incident)?;
        v.reverse();
        Ok(v)
    }

    fn actions_where_incident(&self, incident: i64) -> Result<Vec<ActionRecord>, JournalError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, incident_id, action, target, idempotency_key, params, dry_run,
                        started_ms, finished_ms, status, message, stderr_tail, result
                 FROM actions WHERE incident_id = ?1 ORDER BY id DESC LIMIT 10000",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![incident], |r| {
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
                    result: r.get(12)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
