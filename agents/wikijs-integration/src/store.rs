//! The SQLite state database, `wiki-agent.db` in the state directory.
//!
//! WAL mode, append-only migrations keyed by `PRAGMA user_version`, and a
//! `PRAGMA integrity_check` when the agent starts: a database that fails it is
//! reported unhealthy and never written to. The schema already holds the
//! tables issue 10's sync needs (documents, assets, webhook deliveries); this
//! version writes only `runs`, one row per cycle.
//!
//! In `--self-check` the database is opened read-only and nothing is created,
//! so running the check as root (e.g. via `pct exec`) cannot leave root-owned
//! files behind.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

/// File name inside the state directory.
pub const DB_FILE: &str = "wiki-agent.db";

/// Migrations, in order; entry `i` brings `user_version` from `i` to `i + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &["
CREATE TABLE documents (
    source_path  TEXT PRIMARY KEY,
    wiki_path    TEXT NOT NULL UNIQUE,
    page_id      INTEGER,
    content_hash TEXT,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'synced', 'error', 'deleted')),
    last_error   TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL
);
CREATE TABLE assets (
    source_path  TEXT PRIMARY KEY,
    wiki_path    TEXT NOT NULL,
    asset_id     INTEGER,
    content_hash TEXT,
    updated_at   TEXT NOT NULL
);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at  TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    dry_run     INTEGER NOT NULL,
    result      TEXT NOT NULL CHECK (result IN ('ok', 'failed')),
    summary     TEXT NOT NULL,
    error       TEXT
);
CREATE TABLE webhook_deliveries (
    delivery_id TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    received_at TEXT NOT NULL
);
", "
CREATE TABLE documents_v2 (
    source_path  TEXT PRIMARY KEY,
    wiki_path    TEXT NOT NULL,
    page_id      INTEGER,
    content_hash TEXT,
    blob_id      TEXT,
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'creating', 'synced', 'error', 'conflict', 'deleted', 'unpublished')),
    last_error   TEXT,
    attempts     INTEGER NOT NULL DEFAULT 0,
    updated_at   TEXT NOT NULL
);
INSERT INTO documents_v2 (source_path, wiki_path, page_id, content_hash, state, last_error, attempts, updated_at)
    SELECT source_path, wiki_path, page_id, content_hash, state, last_error, attempts, updated_at FROM documents;
DROP TABLE documents;
ALTER TABLE documents_v2 RENAME TO documents;
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"];

/// One row of `documents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRow {
    /// Path relative to the docs folder.
    pub source_path: String,
    /// Wiki path it was last written to (or is planned for).
    pub wiki_path: String,
    /// The page the integration created (only these are ever touched).
    pub page_id: Option<i64>,
    /// Hash of the last written page ([`crate::convert::Page::hash`]).
    pub content_hash: Option<String>,
    /// Git blob id of the source at the last write.
    pub blob_id: Option<String>,
    /// `pending`, `creating` (a create was sent; adopt the page if it exists),
    /// `synced`, `error`, `conflict`, `unpublished`.
    pub state: String,
    /// The last error.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub attempts: i64,
}

/// A database problem.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct StoreError {
    /// What was being done.
    pub what: &'static str,
    /// The database file.
    pub path: PathBuf,
    /// SQLite's error.
    pub source: rusqlite::Error,
}

/// One cycle as recorded in `runs`.
#[derive(Debug, Clone)]
pub struct RunRow<'a> {
    /// RFC 3339.
    pub started_at: &'a str,
    /// RFC 3339.
    pub finished_at: &'a str,
    /// Why the cycle ran.
    pub trigger: &'a str,
    /// `--dry-run`.
    pub dry_run: bool,
    /// Whether the cycle succeeded.
    pub ok: bool,
    /// One line.
    pub summary: &'a str,
    /// The error, if it failed.
    pub error: Option<&'a str>,
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Store {
    fn err(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError {
            what,
            path: self.path.clone(),
            source,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens (creating if needed) and migrates the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        let e = |what| {
            let path = path.clone();
            move |source| StoreError { what, path, source }
        };
        let conn = Connection::open(&path).map_err(e("cannot open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e("cannot configure"))?;
        // The first statement that reads the file: a non-database fails here.
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(e("cannot read"))?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Opens an existing database read-only, or `None` if there is none.
    pub fn open_read_only(dir: &Path) -> Result<Option<Self>, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError {
            what: "cannot open read-only",
            path: path.clone(),
            source,
        })?;
        Ok(Some(Self {
            conn: Mutex::new(conn),
            path,
        }))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `PRAGMA integrity_check`: `Ok(())` or the problems it lists.
    pub fn integrity_check(&self) -> Result<Result<(), String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("PRAGMA integrity_check(20)")
            .map_err(self.err("cannot check"))?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot check"))?;
        if lines.len() == 1 && lines[0] == "ok" {
            Ok(Ok(()))
        } else {
            Ok(Err(lines.join("; ")))
        }
    }

    /// Applies the pending migrations; returns the schema version.
    pub fn migrate(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let version: usize = conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
            .map_err(self.err("cannot read the schema version of"))?;
        if version > MIGRATIONS.len() {
            return Err(StoreError {
                what: "schema is newer than this agent understands in",
                path: self.path.clone(),
                source: rusqlite::Error::InvalidQuery,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction().map_err(self.err("cannot migrate"))?;
            tx.execute_batch(sql).map_err(self.err("cannot migrate"))?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(self.err("cannot migrate"))?;
            tx.commit().map_err(self.err("cannot migrate"))?;
        }
        Ok(MIGRATIONS.len())
    }

    /// Every document row.
    pub fn docs(&self) -> Result<Vec<DocRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT source_path, wiki_path, page_id, content_hash, blob_id, state, last_error, attempts FROM documents ORDER BY source_path")
            .map_err(self.err("cannot read"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(DocRow {
                    source_path: r.get(0)?,
                    wiki_path: r.get(1)?,
                    page_id: r.get(2)?,
                    content_hash: r.get(3)?,
                    blob_id: r.get(4)?,
                    state: r.get(5)?,
                    last_error: r.get(6)?,
                    attempts: r.get(7)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot read"))?;
        Ok(rows)
    }

    /// Inserts or replaces a document row.
    pub fn put_doc(&self, d: &DocRow) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO documents (source_path, wiki_path, page_id, content_hash, blob_id, state, last_error, attempts, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                params![d.source_path, d.wiki_path, d.page_id, d.content_hash, d.blob_id, d.state, d.last_error, d.attempts],
            )
            .map(|_| ())
            .map_err(self.err("cannot write a document to"))
    }

    /// Removes a document row.
    pub fn remove_doc(&self, source_path: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM documents WHERE source_path = ?1",
                params![source_path],
            )
            .map(|_| ())
            .map_err(self.err("cannot write to"))
    }

    /// A key of the `kv` table.
    pub fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row("SELECT value FROM kv WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("cannot read"))
    }

    /// Sets a key of the `kv` table.
    pub fn set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.err("cannot write to"))
    }

    /// The blob id an asset was last uploaded with.
    pub fn asset_hash(&self, source_path: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT content_hash FROM assets WHERE source_path = ?1",
                params![source_path],
                |r| r.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(self.err("cannot read"))
    }

    /// Records an uploaded asset.
    pub fn put_asset(
        &self,
        source_path: &str,
        wiki_path: &str,
        hash: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO assets (source_path, wiki_path, content_hash, updated_at) VALUES (?1, ?2, ?3, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                params![source_path, wiki_path, hash],
            )
            .map(|_| ())
            .map_err(self.err("cannot write to"))
    }

    /// Asset rows: source path → wiki path.
    pub fn assets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT source_path, wiki_path FROM assets")
            .map_err(self.err("cannot read"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot read"))?;
        Ok(rows)
    }

    /// Forgets an asset.
    pub fn remove_asset(&self, source_path: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "DELETE FROM assets WHERE source_path = ?1",
                params![source_path],
            )
            .map(|_| ())
            .map_err(self.err("cannot write to"))
    }

    /// Records a webhook delivery id; `false` when it was seen before (a
    /// replay). Keeps the newest 10 000.
    pub fn record_delivery(&self, id: &str, provider: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "INSERT OR IGNORE INTO webhook_deliveries (delivery_id, provider, received_at) VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                params![id, provider],
            )
            .map_err(self.err("cannot write to"))?;
        conn.execute(
            "DELETE FROM webhook_deliveries WHERE rowid <= (SELECT MAX(rowid) - 10000 FROM webhook_deliveries)",
            [],
        )
        .map_err(self.err("cannot write to"))?;
        Ok(n == 1)
    }

    /// Writes a consistent copy of the database to `dest` (`VACUUM INTO`
    /// runs in one read transaction, so concurrent writers are fine).
    pub fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let target = dest.to_string_lossy().to_string();
        self.conn()
            .execute("VACUUM INTO ?1", params![target])
            .map(|_| ())
            .map_err(self.err("cannot back up"))
    }

    /// Appends a run.
    pub fn record_run(&self, run: &RunRow<'_>) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO runs (started_at, finished_at, trigger, dry_run, result, summary, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    run.started_at,
                    run.finished_at,
                    run.trigger,
                    run.dry_run,
                    if run.ok { "ok" } else { "failed" },
                    run.summary,
                    run.error
                ],
            )
            .map(|_| ())
            .map_err(self.err("cannot record a run in"))
    }

    /// Counts for the status document.
    pub fn summary(&self) -> Result<serde_json::Value, StoreError> {
        let conn = self.conn();
        let mut by_state = serde_json::Map::new();
        let mut stmt = conn
            .prepare("SELECT state, COUNT(*) FROM documents GROUP BY state ORDER BY state")
            .map_err(self.err("cannot read"))?;
        let rows: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot read"))?;
        for (state, n) in rows {
            by_state.insert(state, n.into());
        }
        let runs: i64 = conn
            .query_row("SELECT COUNT(*) FROM runs", [], |r| r.get(0))
            .map_err(self.err("cannot read"))?;
        let last = conn
            .query_row(
                "SELECT started_at, finished_at, trigger, dry_run, result, summary, error
                 FROM runs ORDER BY id DESC LIMIT 1",
                [],
                |r| {
                    Ok(serde_json::json!({
                        "started_at": r.get::<_, String>(0)?,
                        "finished_at": r.get::<_, String>(1)?,
                        "trigger": r.get::<_, String>(2)?,
                        "dry_run": r.get::<_, bool>(3)?,
                        "result": r.get::<_, String>(4)?,
                        "summary": r.get::<_, String>(5)?,
                        "error": r.get::<_, Option<String>>(6)?,
                    }))
                },
            )
            .optional()
            .map_err(self.err("cannot read"))?;
        let mut errors = Vec::new();
        let mut stmt = conn
            .prepare("SELECT source_path, wiki_path, state, last_error, attempts, updated_at FROM documents WHERE state IN ('error', 'conflict') ORDER BY updated_at DESC LIMIT 20")
            .map_err(self.err("cannot read"))?;
        let rows: Vec<serde_json::Value> = stmt
            .query_map([], |r| {
                Ok(serde_json::json!({
                    "source_path": r.get::<_, String>(0)?,
                    "wiki_path": r.get::<_, String>(1)?,
                    "state": r.get::<_, String>(2)?,
                    "error": r.get::<_, Option<String>>(3)?,
                    "attempts": r.get::<_, i64>(4)?,
                    "at": r.get::<_, String>(5)?,
                }))
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("cannot read"))?;
        errors.extend(rows);
        let last_commit: Option<String> = conn
            .query_row("SELECT value FROM kv WHERE key = 'last_commit'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err("cannot read"))?;
        let assets: i64 = conn
            .query_row("SELECT COUNT(*) FROM assets", [], |r| r.get(0))
            .map_err(self.err("cannot read"))?;
        Ok(serde_json::json!({
            "documents_by_state": by_state,
            "assets_total": assets,
            "last_commit_synced": last_commit,
            "recent_errors": errors,
            "runs_total": runs,
            "last_run": last,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_migrates_records_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.migrate().unwrap(), MIGRATIONS.len());
        // Idempotent.
        assert_eq!(store.migrate().unwrap(), MIGRATIONS.len());
        assert_eq!(store.integrity_check().unwrap(), Ok(()));
        store
            .record_run(&RunRow {
                started_at: "2026-01-01T00:00:00Z",
                finished_at: "2026-01-01T00:00:01Z",
                trigger: "timer",
                dry_run: false,
                ok: true,
                summary: "fine",
                error: None,
            })
            .unwrap();
        let s = store.summary().unwrap();
        assert_eq!(s["runs_total"], 1);
        assert_eq!(s["last_run"]["summary"], "fine");
        drop(store);
        let ro = Store::open_read_only(dir.path()).unwrap().unwrap();
        assert_eq!(ro.integrity_check().unwrap(), Ok(()));
        assert_eq!(ro.summary().unwrap()["runs_total"], 1);
    }

    #[test]
    fn garbage_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DB_FILE), vec![0x5a; 8192]).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not a database"), "{err}");
    }

    #[test]
    fn damaged_page_fails_the_integrity_check() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.migrate().unwrap();
            let conn = store.conn();
            conn.execute_batch("PRAGMA journal_mode = DELETE;").unwrap();
            conn.execute_batch(
                "CREATE TABLE filler (x TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 2000) INSERT INTO filler SELECT printf('%0100d', i) FROM n;",
            )
            .unwrap();
        }
        let path = dir.path().join(DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let page = 4096;
        // Scribble over the middle of the file, past the schema page.
        let start = bytes.len() / 2 / page * page + 8;
        for b in &mut bytes[start..start + 64] {
            *b = 0xff;
        }
        std::fs::write(&path, bytes).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let res = store.integrity_check().unwrap();
        assert!(res.is_err(), "integrity_check passed on a damaged file");
    }
}
