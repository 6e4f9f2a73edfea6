//! The SQLite journal: incidents, actions, notifications, SLO buckets, breaker state.
//!
//! One file in WAL mode. Each component opens its own [`Journal`] (its own connection) on the
//! same path: SQLite serialises writers, and `busy_timeout` bounds how long a writer waits
//! for another, so no in-process lock is needed. The schema is versioned with
//! `PRAGMA user_version`; [`Journal::open`] applies the missing migrations in order. Each
//! table's queries live in a file of their own (`slo.rs`, `incidents.rs`, ...); the
//! migrations stay here, in one list, so their order is plain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;

pub mod alerts;
pub mod incidents;
pub mod kv;
pub mod notifications;
pub mod silences;
pub mod slo;

pub use alerts::AlertStateRow;
pub use incidents::{
    ActionFinish, ActionRecord, ActionStatus, Incident, IncidentFilter, IncidentSave, NewAction,
    NewIncident,
};
pub use notifications::PendingNotification;
pub use slo::SloBucket;

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
    // 2: the planner's incidents (rule, phase, outcome, the whole state as JSON), what each
    // action changed, silences.
    r#"
    ALTER TABLE incidents ADD COLUMN rule TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN group_name TEXT NOT NULL DEFAULT '';
    ALTER TABLE incidents ADD COLUMN phase TEXT NOT NULL DEFAULT 'open';
    ALTER TABLE incidents ADD COLUMN outcome TEXT;
    ALTER TABLE incidents ADD COLUMN state TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE incidents ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX incidents_unclosed ON incidents (id) WHERE phase != 'closed';
    CREATE INDEX incidents_by_rule ON incidents (rule, fingerprint, started_ms);
    ALTER TABLE actions ADD COLUMN result TEXT;

    CREATE TABLE silences (
        id      TEXT PRIMARY KEY,
        body    TEXT NOT NULL,
        ends_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 3: alert state across restarts (alerts.rs).
    r#"
    CREATE TABLE alert_state (
        group_key    TEXT    NOT NULL,
        rule         TEXT    NOT NULL,
        labels       TEXT    NOT NULL,
        state        TEXT    NOT NULL,
        active_at_ms INTEGER NOT NULL,
        fired_at_ms  INTEGER,
        last_sent_ms INTEGER,
        value        REAL,
        annotations  TEXT    NOT NULL,
        PRIMARY KEY (group_key, rule, labels)
    ) WITHOUT ROWID;

    CREATE TABLE alert_groups (
        group_key    TEXT    PRIMARY KEY,
        last_eval_ms INTEGER NOT NULL
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
