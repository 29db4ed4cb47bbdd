//! The schema, as an append-only list of migrations.
//!
//! Invariants:
//! - [`MIGRATIONS`]`[i]` takes the schema from version `i` to `i + 1`; the
//!   version is SQLite's `PRAGMA user_version`;
//! - a migration that has been released is never edited, reordered or
//!   removed: a change is a new migration appended at the end. The test
//!   `fixture_schemas_match_the_migrations` compares each released version's
//!   committed fixture (`tests/fixtures/store/schema-vN.sql`) with what the
//!   migrations build, so editing a released one fails the build;
//! - each migration runs in one transaction together with the `user_version`
//!   bump, so a crash mid-migration leaves the previous version intact.

use rusqlite::Connection;

/// Schema migrations in order; the schema version is their count.
pub const MIGRATIONS: &[&str] = &[
    // v1 (issue 3): operations, their logs, persisted (lifecycle) events.
    r#"
CREATE TABLE operations (
    id               TEXT PRIMARY KEY NOT NULL,
    kind             TEXT NOT NULL,
    target           TEXT,
    requestor_uid    INTEGER NOT NULL,
    requestor_user   TEXT NOT NULL,
    requestor_pid    INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                       ('queued','running','succeeded','failed','cancelled','interrupted')),
    error_code       TEXT,
    error_message    TEXT,
    created_ms       INTEGER NOT NULL,
    started_ms       INTEGER,
    finished_ms      INTEGER,
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_steps   INTEGER NOT NULL DEFAULT 0,
    progress_name    TEXT NOT NULL DEFAULT '',
    progress_percent REAL,
    cancellable      INTEGER NOT NULL DEFAULT 1 CHECK (cancellable IN (0, 1)),
    payload          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload))
) STRICT;
CREATE INDEX operations_by_created ON operations (created_ms DESC, id);
CREATE INDEX operations_by_status ON operations (status);
CREATE INDEX operations_by_target ON operations (target) WHERE target IS NOT NULL;

CREATE TABLE op_log (
    op_id   TEXT NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (op_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE events (
    seq     INTEGER PRIMARY KEY NOT NULL,
    time_ms INTEGER NOT NULL,
    type    TEXT NOT NULL,
    payload TEXT NOT NULL CHECK (json_valid(payload))
) STRICT;
CREATE INDEX events_by_time ON events (time_ms);
"#,
    // v2 (issue 4): deployments and the vmids held by running deploys.
    r#"
CREATE TABLE deployments (
    name            TEXT PRIMARY KEY NOT NULL,
    app             TEXT NOT NULL,
    app_version     TEXT NOT NULL,
    vmid            INTEGER NOT NULL UNIQUE,
    node            TEXT NOT NULL,
    intended_state  TEXT NOT NULL CHECK (intended_state IN ('running','stopped')),
    spec            TEXT NOT NULL CHECK (json_valid(spec)),
    config_hash     TEXT NOT NULL,
    ip              TEXT,
    health          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(health)),
    drift           TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(drift)),
    adopted         INTEGER NOT NULL DEFAULT 0 CHECK (adopted IN (0, 1)),
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    last_backup_ms  INTEGER
) STRICT;

CREATE TABLE vmid_reservations (
    vmid        INTEGER PRIMARY KEY NOT NULL,
    op_id       TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
) STRICT;
CREATE INDEX vmid_reservations_by_op ON vmid_reservations (op_id);
"#,
    // v3 (issue 6): supervision state, health history, the notification queue.
    r#"
CREATE TABLE supervision (
    deployment    TEXT PRIMARY KEY NOT NULL,
    state         TEXT NOT NULL CHECK (state IN
                    ('starting','healthy','degraded','unhealthy','stopped','failed','unknown')),
    since_ms      INTEGER NOT NULL,
    detail        TEXT NOT NULL DEFAULT '',
    incident      TEXT CHECK (incident IS NULL OR json_valid(incident)),
    ladder        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(ladder)),
    updated_ms    INTEGER NOT NULL
) STRICT;

CREATE TABLE health_results (
    id              INTEGER PRIMARY KEY NOT NULL,
    deployment      TEXT NOT NULL,
    first_ms        INTEGER NOT NULL,
    last_ms         INTEGER NOT NULL,
    count           INTEGER NOT NULL CHECK (count >= 1),
    result          TEXT NOT NULL,
    state           TEXT NOT NULL,
    detail          TEXT NOT NULL,
    latency_ms_sum  REAL NOT NULL DEFAULT 0,
    latency_ms_max  REAL NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX health_results_by_deployment ON health_results (deployment, last_ms);
CREATE INDEX health_results_by_time ON health_results (last_ms);

CREATE TABLE health_rollups (
    deployment      TEXT NOT NULL,
    hour_ms         INTEGER NOT NULL,
    up              INTEGER NOT NULL DEFAULT 0,
    down            INTEGER NOT NULL DEFAULT 0,
    other           INTEGER NOT NULL DEFAULT 0,
    healthy         INTEGER NOT NULL DEFAULT 0,
    degraded        INTEGER NOT NULL DEFAULT 0,
    latency_ms_sum  REAL NOT NULL DEFAULT 0,
    latency_ms_max  REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (deployment, hour_ms)
) STRICT, WITHOUT ROWID;

CREATE TABLE notifications (
    id               INTEGER PRIMARY KEY NOT NULL,
    target           TEXT NOT NULL,
    event            TEXT NOT NULL,
    deployment       TEXT,
    dedupe_key       TEXT,
    payload          TEXT NOT NULL CHECK (json_valid(payload)),
    status           TEXT NOT NULL CHECK (status IN ('pending','delivered','failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms  INTEGER NOT NULL,
    last_error       TEXT,
    created_ms       INTEGER NOT NULL,
    delivered_ms     INTEGER
) STRICT;
CREATE UNIQUE INDEX notifications_dedupe ON notifications (target, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
CREATE INDEX notifications_due ON notifications (status, next_attempt_ms);
CREATE INDEX notifications_by_created ON notifications (created_ms DESC);
"#,
    // v4 (issue 7): backups 1ld made or found, and when scheduled jobs ran.
    r#"
CREATE TABLE backups (
    volid          TEXT PRIMARY KEY NOT NULL,
    storage        TEXT NOT NULL,
    vmid           INTEGER NOT NULL,
    deployment     TEXT,
    app            TEXT,
    app_version    TEXT,
    spec_digest    TEXT,
    time_ms        INTEGER NOT NULL,
    size           INTEGER,
    mode           TEXT,
    notes          TEXT NOT NULL DEFAULT '',
    protected      INTEGER NOT NULL DEFAULT 0 CHECK (protected IN (0, 1)),
    verified       TEXT NOT NULL DEFAULT 'unverified'
                     CHECK (verified IN ('unverified','verified','failed')),
    verified_ms    INTEGER,
    verify_detail  TEXT,
    op_id          TEXT,
    created_ms     INTEGER NOT NULL,
    missing_ms     INTEGER
) STRICT;
CREATE INDEX backups_by_deployment ON backups (deployment, time_ms DESC);
CREATE INDEX backups_by_vmid ON backups (vmid, time_ms DESC);

CREATE TABLE schedule_runs (
    deployment   TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('backup','verify')),
    last_run_ms  INTEGER,
    last_status  TEXT,
    last_op      TEXT,
    next_run_ms  INTEGER,
    PRIMARY KEY (deployment, kind)
) STRICT, WITHOUT ROWID;
"#,
    // v5 (issue 7): the safety snapshot an upgrade keeps until it has been
    // healthy for `[upgrade] keep_safety_secs`.
    r#"
CREATE TABLE upgrade_safety (
    deployment    TEXT PRIMARY KEY NOT NULL,
    vmid          INTEGER NOT NULL,
    snapshot      TEXT NOT NULL,
    from_version  TEXT NOT NULL,
    to_version    TEXT NOT NULL,
    created_ms    INTEGER NOT NULL,
    release_ms    INTEGER NOT NULL,
    op_id         TEXT
) STRICT, WITHOUT ROWID;
"#,
];

/// The schema version this binary writes.
pub fn latest() -> u32 {
    // The list is a handful of entries; it cannot overflow a u32.
    u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX)
}

/// Reads `PRAGMA user_version`.
pub fn version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))
}

/// Applies the migrations after `from`, each in its own transaction with its
/// version bump. The caller has checked that `from <= latest()`.
pub fn apply(conn: &mut Connection, from: u32) -> rusqlite::Result<()> {
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        // PRAGMA does not take bound parameters; `i + 1` is our own integer.
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}
