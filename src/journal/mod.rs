//! The SQLite journal: incidents, actions, notifications, SLO buckets, breaker state.
//!
//! One file in WAL mode. Each component opens its own [`Journal`] (its own connection) on the
//! same path: SQLite serialises writers, and `busy_timeout` bounds how long a writer waits
//! for another, so no in-process lock is needed. The schema is versioned with
//! `PRAGMA user_version`; [`Journal::open`] applies the missing migrations in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

/// How long a write waits for another connection's write before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry `i` moves the schema from version `i` to `i + 1`.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
    CREATE TABLE slo_buckets (
        slo       TEXT    NOT NULL,
        minute_ms INTEGER NOT NULL,
        errors    REAL    NOT NULL,
        total     REAL    NOT NULL,
        PRIMARY KEY (slo, minute_ms)
    ) WITHOUT ROWID;

    CREATE TABLE incidents (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT    NOT NULL,
        alertname   TEXT    NOT NULL,
        labels      TEXT    NOT NULL,
        started_ms  INTEGER NOT NULL,
        resolved_ms INTEGER
    );
    CREATE INDEX incidents_open ON incidents (fingerprint) WHERE resolved_ms IS NULL;

    CREATE TABLE actions (
        id              INTEGER PRIMARY KEY,
        incident_id     INTEGER REFERENCES incidents (id),
        action          TEXT    NOT NULL,
        target          TEXT,
        idempotency_key TEXT    NOT NULL,
        params          TEXT    NOT NULL,
        dry_run         INTEGER NOT NULL,
        started_ms      INTEGER NOT NULL,
        finished_ms     INTEGER,
        status          TEXT    NOT NULL,
        message         TEXT,
        stderr_tail     TEXT
    );
    CREATE INDEX actions_by_incident ON actions (incident_id);

    CREATE TABLE notifications (
        id              INTEGER PRIMARY KEY,
        notifier        TEXT    NOT NULL,
        payload         TEXT    NOT NULL,
        created_ms      INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_ms INTEGER NOT NULL,
        last_error      TEXT,
        delivered_ms    INTEGER
    );
    CREATE INDEX notifications_pending ON notifications (notifier, next_attempt_ms)
        WHERE delivered_ms IS NULL;

    CREATE TABLE kv (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "journal {path}: schema version {found} is newer than this medic understands ({SCHEMA_VERSION}); upgrade medic or move the file away"
    )]
    TooNew { path: String, found: i64 },
    #[error("journal {path}: cannot create its folder: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Status of a journaled action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    /// Started, not finished (yet). After a crash these become `Interrupted`.
    Running,
    Ok,
    Failed,
    Noop,
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
            ActionStatus::Interrupted => "interrupted",
        }
    }

    fn parse(s: &str) -> ActionStatus {
        match s {
            "running" => ActionStatus::Running,
            "ok" => ActionStatus::Ok,
            "noop" => ActionStatus::Noop,
            "interrupted" => ActionStatus::Interrupted,
            _ => ActionStatus::Failed,
        }
    }
}

/// One SLO minute bucket: event counts for the minute starting at `minute_ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloBucket {
    pub minute_ms: i64,
    pub errors: f64,
    pub total: f64,
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

/// A connection to the journal file.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating it and its folder when missing) the journal at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| JournalError::Folder {
                path: path.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|e| sqlite_err(path, e))?;
        Self::init(conn, path.to_path_buf())
    }

    /// A private in-memory journal (tests, `medic anomaly score`).
    pub fn open_in_memory() -> Result<Journal, JournalError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|e| sqlite_err(&path, e))?;
        Self::init(conn, path)
    }

    /// Another connection to the same file, for another component.
    pub fn reopen(&self) -> Result<Journal, JournalError> {
        if self.path == Path::new(":memory:") {
            return Self::open_in_memory();
        }
        Self::open(&self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(conn: Connection, path: PathBuf) -> Result<Journal, JournalError> {
        let e = |err| sqlite_err(&path, err);
        conn.busy_timeout(BUSY_TIMEOUT).map_err(e)?;
        // WAL: readers never block the writer; NORMAL sync is durable across a process
        // crash (kill -9), which is what the journal promises.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(e)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(e)?;
        let mut j = Journal { conn, path };
        j.migrate()?;
        Ok(j)
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<i64, JournalError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), JournalError> {
        let found = self.schema_version()?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::TooNew {
                path: self.path.display().to_string(),
                found,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let path = self.path.clone();
            let e = |err| sqlite_err(&path, err);
            let tx = self.conn.transaction().map_err(e)?;
            tx.execute_batch(sql).map_err(e)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(e)?;
            tx.commit().map_err(e)?;
        }
        Ok(())
    }

    fn err(&self, e: rusqlite::Error) -> JournalError {
        sqlite_err(&self.path, e)
    }

    // ---- SLO buckets ----

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

    // ---- incidents ----

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

    // ---- actions ----

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

    // ---- notifications ----

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

    // ---- small keyed state (breaker state, ...) ----

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

fn sqlite_err(path: &Path, source: rusqlite::Error) -> JournalError {
    JournalError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/journal.db");
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = j
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        j.slo_put_bucket(
            "a",
            SloBucket {
                minute_ms: 60_000,
                errors: 1.0,
                total: 10.0,
            },
        )
        .unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(j.slo_buckets("a", 0).unwrap().len(), 1);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let j = Journal::open(&path).unwrap();
        j.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(j);
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::TooNew { .. }), "{err}");
    }

    #[test]
    fn slo_buckets_upsert_and_prune() {
        let j = Journal::open_in_memory().unwrap();
        let b = |m: i64, e: f64, t: f64| SloBucket {
            minute_ms: m * 60_000,
            errors: e,
            total: t,
        };
        j.slo_put_bucket("s", b(1, 1.0, 5.0)).unwrap();
        j.slo_put_bucket("s", b(1, 2.0, 9.0)).unwrap();
        j.slo_put_bucket("s", b(2, 0.0, 3.0)).unwrap();
        j.slo_put_bucket("other", b(2, 7.0, 7.0)).unwrap();
        assert_eq!(
            j.slo_buckets("s", 0).unwrap(),
            vec![b(1, 2.0, 9.0), b(2, 0.0, 3.0)]
        );
        assert_eq!(j.slo_prune("s", 2 * 60_000).unwrap(), 1);
        assert_eq!(j.slo_buckets("s", 0).unwrap(), vec![b(2, 0.0, 3.0)]);
        assert_eq!(j.slo_buckets("other", 0).unwrap().len(), 1);
    }

    #[test]
    fn incidents_actions_notifications() {
        let j = Journal::open_in_memory().unwrap();
        let id = j.incident_open("abc", "HighLoad", "{}", 10).unwrap();
        assert_eq!(j.incident_open_for("abc").unwrap().unwrap().id, id);
        let a = j
            .action_begin(&NewAction {
                incident_id: Some(id),
                action: "restart",
                target: Some("svc"),
                idempotency_key: "k1",
                params: "{}",
                dry_run: false,
                started_ms: 11,
            })
            .unwrap();
        let b = j
            .action_begin(&NewAction {
                incident_id: Some(id),
                action: "exec",
                target: None,
                idempotency_key: "k2",
                params: "{}",
                dry_run: true,
                started_ms: 12,
            })
            .unwrap();
        j.action_finish(a, ActionStatus::Ok, Some("done"), None, 13)
            .unwrap();
        let interrupted = j.actions_interrupt_running(20).unwrap();
        assert_eq!(interrupted.len(), 1);
        assert_eq!(interrupted[0].id, b);
        let recent = j.actions_recent(10).unwrap();
        assert_eq!(recent[0].status, ActionStatus::Interrupted);
        assert_eq!(recent[1].status, ActionStatus::Ok);
        assert!(recent[0].dry_run);
        j.incident_resolve(id, 30).unwrap();
        assert!(j.incident_open_for("abc").unwrap().is_none());
        assert_eq!(j.incidents_recent(5).unwrap()[0].resolved_ms, Some(30));

        let n = j.notification_enqueue("hook", "{\"a\":1}", 100).unwrap();
        assert_eq!(j.notifications_due("hook", 100, 10).unwrap().len(), 1);
        j.notification_failed(n, "refused", 200).unwrap();
        assert!(j.notifications_due("hook", 150, 10).unwrap().is_empty());
        assert_eq!(j.notifications_due("hook", 200, 10).unwrap()[0].attempts, 1);
        j.notification_delivered(n, 210).unwrap();
        assert!(j.notifications_due("hook", 1000, 10).unwrap().is_empty());

        j.kv_put("breaker/x", "open").unwrap();
        j.kv_put("breaker/x", "closed").unwrap();
        assert_eq!(j.kv_get("breaker/x").unwrap().as_deref(), Some("closed"));
        assert_eq!(j.kv_get("nope").unwrap(), None);
    }
}
