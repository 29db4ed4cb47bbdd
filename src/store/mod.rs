//! The daemon's durable state: one SQLite database at `<state_dir>/state.db`.
//!
//! What it owns: opening (state dir, pragmas, integrity check, migrations)
//! and every typed query; no other module writes SQL.
//!
//! Invariants and choices:
//! - **State dir** `<state_dir>` is created mode 0700. If it exists with
//!   group/other permission bits, they are removed (0700) and a warning is
//!   logged: packaging or an admin may have created it loosely, and refusing
//!   to start would not make it safer than fixing it. If it is owned by
//!   another user than the daemon's, opening is refused: someone else
//!   controls the daemon's state. The database file is created 0600.
//! - **Never recreated silently.** `PRAGMA integrity_check` runs at every
//!   open; a file that is not a database or fails the check is an error
//!   naming the path and how to recover. A database written by a newer 1ld
//!   (a higher `user_version` than [`migrations::latest`]) is refused, never
//!   downgraded.
//! - **Journal** is WAL (readers never block the writer) with
//!   `synchronous=FULL`: every committed transaction is fsynced before the
//!   commit returns. Crash recovery relies on it: an operation is recorded
//!   `running` before it touches the host, and after a power loss that row
//!   must still be there so its compensation runs (`NORMAL` in WAL mode may
//!   lose the last commits on power loss). The cost is one WAL fsync per
//!   write transaction, a few per operation step; reads pay nothing.
//! - `foreign_keys=ON` (op logs cascade with their operation) and a
//!   `busy_timeout`, in case an admin opens the file with `sqlite3`.
//! - **Concurrency.** Calls are synchronous and short (indexed lookups,
//!   single-row writes), so async code calls them directly instead of paying
//!   `spawn_blocking` for each: one writer connection behind a
//!   `std::sync::Mutex` (SQLite allows one writer anyway), and a small pool
//!   of reader connections, so reads never queue behind a write's fsync.
//!   No lock is held across an `.await`. Queries are bounded (`LIMIT`); a
//!   long scan (an export, a large prune) must run in `spawn_blocking`, in
//!   batches, never while holding the writer for long.
//! - Times are unix milliseconds in the database, RFC 3339 UTC on the wire.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::paths::Paths;

pub mod backups;
pub mod deployments;
pub mod events;
pub mod health;
pub mod migrations;
pub mod notifications;
pub mod operations;

pub use backups::{BackupRecord, SafetySnapshot, ScheduleRun};
pub use deployments::{DeploymentRecord, StoredSpec};
pub use events::StoredEvent;
pub use health::{HealthSample, StoredHour, StoredRun, SupervisionRow};
pub use notifications::{
    NewNotification, NotificationFilter, NotificationRow, NotificationStatus, QueueStats,
    TargetQueue,
};
pub use operations::{OpFilter, OpRecord};

/// How long a connection waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Reader connections kept open for reuse.
const READER_POOL: usize = 4;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created or inspected.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The state directory belongs to someone else.
    #[error("state directory {path} is owned by uid {owner}, not by the daemon's uid {me}; fix its owner (chown) or point `state_dir` elsewhere")]
    ForeignOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The daemon's effective uid.
        me: u32,
    },
    /// The file is not a database or fails `PRAGMA integrity_check`.
    #[error("state database {path} is corrupt ({detail}); restore it from a backup copy, or move it aside to start with an empty state (1ldd never recreates it by itself)")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        detail: String,
    },
    /// The database was written by a newer 1ld.
    #[error("state database {path} has schema version {found}, but this 1ldd knows versions up to {known}; run the newer 1ld that wrote it, or restore a backup made by this version")]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// The newest version this binary knows.
        known: u32,
    },
    /// A SQLite error.
    #[error("state database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded (a bug or a hand-edited row).
    #[error("state database {path}: bad value in {what}: {detail}")]
    Decode {
        /// The database file.
        path: PathBuf,
        /// Which column.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        crate::error::Error::internal(e)
    }
}

/// The state database. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Bumped by every write to `operations` (see [`Store::ops_generation`]).
    ops_generation: std::sync::atomic::AtomicU64,
    /// Bumped by every write (see [`Store::generation`]).
    generation: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `paths.db` inside `paths.state_dir`:
    /// prepares the directory, sets the pragmas, checks integrity and brings
    /// the schema up to date.
    pub fn open(paths: &Paths) -> Result<Store, StoreError> {
        prepare_state_dir(&paths.state_dir)?;
        let path = paths.db.clone();
        let sql = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            // SQLite would create it with the umask; create it 0600 first.
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(|source| StoreError::StateDir {
                    path: path.clone(),
                    source,
                })?;
        }
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        // The first statements that read the file: a non-database fails here.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| classify(&path, e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Decode {
                path: path.clone(),
                what: "journal_mode",
                detail: format!("SQLite kept journal mode '{mode}'; 1ldd needs WAL (is the file on a filesystem without shared-memory support?)"),
            });
        }
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(|e| classify(&path, e))?;
        integrity_check(&conn, &path)?;
        let found = migrations::version(&conn).map_err(|e| classify(&path, e))?;
        let known = migrations::latest();
        if found > known {
            return Err(StoreError::NewerSchema { path, found, known });
        }
        if found < known {
            tracing::info!(db = %path.display(), from = found, to = known, "migrating the state database");
            migrations::apply(&mut conn, found).map_err(sql)?;
        }
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                ops_generation: std::sync::atomic::AtomicU64::new(0),
                generation: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.read(migrations::version)
    }

    /// Runs `f` on the writer connection. Keep `f` short: every writer waits.
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.inner.writer);
        let out = f(&mut conn).map_err(|e| self.err(e));
        // After the write, so a reader that read the old generation first
        // may hold older data but is never served it again.
        self.inner
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        out
    }

    /// A counter bumped by every write to any table (a failed one too).
    /// Read it BEFORE reading: what was read stays current as long as the
    /// counter is unchanged. Caches of whole views (the deployment list)
    /// are keyed by it.
    pub fn generation(&self) -> u64 {
        self.inner
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// [`Store::write`] for the `operations` table: also bumps
    /// [`Store::ops_generation`], after the write, so a reader that read the
    /// old generation first may hold older data but is never served again.
    pub(crate) fn write_ops<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let out = self.write(f);
        self.inner
            .ops_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        out
    }

    /// A counter bumped by every write to the `operations` table. Read it
    /// BEFORE reading operations: what was read stays current as long as the
    /// counter is unchanged (log lines and events do not count).
    pub fn ops_generation(&self) -> u64 {
        self.inner
            .ops_generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `f` on a reader connection (from the pool, or a new one).
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let pooled = lock(&self.inner.readers).pop();
        let conn = match pooled {
            Some(c) => c,
            None => self.open_reader().map_err(|e| self.err(e))?,
        };
        let out = f(&conn).map_err(|e| self.err(e));
        let mut pool = lock(&self.inner.readers);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        out
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.inner.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.inner.path.clone(),
            source,
        }
    }

    pub(crate) fn decode(&self, what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Decode {
            path: self.inner.path.clone(),
            what,
            detail: detail.to_string(),
        }
    }
}

/// Locks `m`, recovering from poisoning: a panic in another holder cannot
/// leave a SQLite connection half-written (each statement is atomic and an
/// unfinished transaction rolls back when dropped).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Maps errors that mean "this file is not a sound database" to [`StoreError::Corrupt`].
fn classify(path: &Path, e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseCorrupt, NotADatabase};
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, NotADatabase | DatabaseCorrupt) =>
        {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }
        }
        _ => StoreError::Sqlite {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

fn integrity_check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let rows: Vec<String> = (|| {
        let mut st = conn.prepare("PRAGMA integrity_check")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        rows.take(10).collect::<rusqlite::Result<Vec<_>>>()
    })()
    .map_err(|e| classify(path, e))?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("integrity_check: {}", rows.join("; ")),
        })
    }
}

/// Creates `dir` 0700, or tightens an existing one (see the module doc).
fn prepare_state_dir(dir: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => return Err(io(e)),
    }
    let meta = fs::metadata(dir).map_err(io)?;
    if !meta.is_dir() {
        return Err(io(std::io::Error::other("exists but is not a directory")));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StoreError::ForeignOwner {
            path: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:o}"),
            "state directory was accessible to group/others; setting it to 0700"
        );
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Unix milliseconds as an RFC 3339 UTC string (`2026-01-02T03:04:05.678Z`).
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("@{ms}ms"))
}

#[cfg(test)]
mod tests;
