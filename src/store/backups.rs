//! Backups 1ld made (or found and recorded): what a backup is beyond its
//! archive — the deployment, app, version and spec digest at backup time,
//! and whether a restore of it was verified.

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::api::Verified;

/// One backups row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupRecord {
    /// Proxmox's volume id (the key).
    pub volid: String,
    /// Its storage.
    pub storage: String,
    /// The container backed up.
    pub vmid: u32,
    /// The deployment, when 1ld knows it.
    pub deployment: Option<String>,
    /// The app at backup time.
    pub app: Option<String>,
    /// Its version.
    pub app_version: Option<String>,
    /// Digest of the deployment's spec at backup time.
    pub spec_digest: Option<String>,
    /// From the archive name (ms).
    pub time_ms: i64,
    /// Bytes, when known.
    pub size: Option<u64>,
    /// vzdump's mode as it ran.
    pub mode: Option<String>,
    /// The archive's notes.
    pub notes: String,
    /// Protected from pruning.
    pub protected: bool,
    /// Restore verification.
    pub verified: Verified,
    /// When verified (ms).
    pub verified_ms: Option<i64>,
    /// What verification saw.
    pub verify_detail: Option<String>,
    /// The operation that made it.
    pub op_id: Option<String>,
    /// When recorded (ms).
    pub created_ms: i64,
    /// When it was first found missing from its storage (ms).
    pub missing_ms: Option<i64>,
}

const COLUMNS: &str = "volid, storage, vmid, deployment, app, app_version, spec_digest, time_ms, size, \
                       mode, notes, protected, verified, verified_ms, verify_detail, op_id, created_ms, missing_ms";

fn verified_str(v: Verified) -> &'static str {
    match v {
        Verified::Unverified => "unverified",
        Verified::Verified => "verified",
        Verified::Failed => "failed",
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BackupRecord> {
    let verified: String = r.get(12)?;
    Ok(BackupRecord {
        volid: r.get(0)?,
        storage: r.get(1)?,
        vmid: r.get(2)?,
        deployment: r.get(3)?,
        app: r.get(4)?,
        app_version: r.get(5)?,
        spec_digest: r.get(6)?,
        time_ms: r.get(7)?,
        size: r
            .get::<_, Option<i64>>(8)?
            .and_then(|n| u64::try_from(n).ok()),
        mode: r.get(9)?,
        notes: r.get(10)?,
        protected: r.get(11)?,
        verified: match verified.as_str() {
            "verified" => Verified::Verified,
            "failed" => Verified::Failed,
            _ => Verified::Unverified,
        },
        verified_ms: r.get(13)?,
        verify_detail: r.get(14)?,
        op_id: r.get(15)?,
        created_ms: r.get(16)?,
        missing_ms: r.get(17)?,
    })
}

impl Store {
    /// Records `b` (replacing a row with the same volid).
    pub fn record_backup(&self, b: &BackupRecord) -> Result<(), StoreError> {
        let size = b.size.and_then(|n| i64::try_from(n).ok());
        self.write(|c| {
            c.execute(
                &format!(
                    "INSERT OR REPLACE INTO backups ({COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ),
                params![
                    b.volid, b.storage, b.vmid, b.deployment, b.app, b.app_version, b.spec_digest,
                    b.time_ms, size, b.mode, b.notes, b.protected, verified_str(b.verified),
                    b.verified_ms, b.verify_detail, b.op_id, b.created_ms, b.missing_ms
                ],
            )
        })?;
        Ok(())
    }

    /// The backup `volid`.
    pub fn backup(&self, volid: &str) -> Result<Option<BackupRecord>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE volid = ?1"),
                [volid],
                row,
            )
            .optional()
        })
    }

    /// Recorded backups (of `deployment`, when given), newest first.
    pub fn backups(&self, deployment: Option<&str>) -> Result<Vec<BackupRecord>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM backups WHERE ?1 IS NULL OR deployment = ?1 \
                 ORDER BY time_ms DESC, volid LIMIT 100000"
            ))?;
            let rows = st.query_map([deployment], row)?;
            rows.collect()
        })
    }

    /// Marks `volid` missing from its storage since `now_ms` (kept once set),
    /// or present again (`now_ms = None`).
    pub fn set_backup_missing(&self, volid: &str, now_ms: Option<i64>) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE backups SET missing_ms = CASE WHEN ?2 IS NULL THEN NULL \
                 ELSE coalesce(missing_ms, ?2) END WHERE volid = ?1",
                params![volid, now_ms],
            )
        })?;
        Ok(())
    }
}

/// The snapshot an upgrade took, kept until it has been healthy a while.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetySnapshot {
    /// The deployment.
    pub deployment: String,
    /// Its container.
    pub vmid: u32,
    /// The snapshot's name.
    pub snapshot: String,
    /// The version before the upgrade.
    pub from_version: String,
    /// The version after.
    pub to_version: String,
    /// When taken (ms).
    pub created_ms: i64,
    /// When it may go (ms); pushed back while the deployment is not healthy.
    pub release_ms: i64,
    /// The upgrade (or the release in flight).
    pub op_id: Option<String>,
}

/// When a deployment's scheduled job (`backup`, `verify`) last ran and runs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    /// The deployment.
    pub deployment: String,
    /// `backup` or `verify`.
    pub kind: String,
    /// The last run (ms).
    pub last_run_ms: Option<i64>,
    /// How it went (`started`, `locked`, ...).
    pub last_status: Option<String>,
    /// Its operation.
    pub last_op: Option<String>,
    /// The next run (ms).
    pub next_run_ms: Option<i64>,
}

impl Store {
    /// The `kind` schedule row of `deployment`.
    pub fn schedule_run(
        &self,
        deployment: &str,
        kind: &str,
    ) -> Result<Option<ScheduleRun>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT deployment, kind, last_run_ms, last_status, last_op, next_run_ms \
                 FROM schedule_runs WHERE deployment = ?1 AND kind = ?2",
                [deployment, kind],
                |r| {
                    Ok(ScheduleRun {
                        deployment: r.get(0)?,
                        kind: r.get(1)?,
                        last_run_ms: r.get(2)?,
                        last_status: r.get(3)?,
                        last_op: r.get(4)?,
                        next_run_ms: r.get(5)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Forgets every schedule row of a deployment (it was destroyed).
    pub fn forget_schedules(&self, deployment: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM schedule_runs WHERE deployment = ?1",
                [deployment],
            )
        })?;
        Ok(())
    }

    /// Records an upgrade's safety snapshot (one per deployment: a newer
    /// upgrade's replaces it).
    pub fn put_safety(&self, r: &SafetySnapshot) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO upgrade_safety (deployment, vmid, snapshot, from_version, \
                 to_version, created_ms, release_ms, op_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.deployment,
                    r.vmid,
                    r.snapshot,
                    r.from_version,
                    r.to_version,
                    r.created_ms,
                    r.release_ms,
                    r.op_id
                ],
            )
        })?;
        Ok(())
    }

    /// Safety snapshots whose release time has come.
    pub fn safety_due(&self, now_ms: i64) -> Result<Vec<SafetySnapshot>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT deployment, vmid, snapshot, from_version, to_version, created_ms, release_ms, op_id \
                 FROM upgrade_safety WHERE release_ms <= ?1 ORDER BY release_ms",
            )?;
            let rows = st.query_map([now_ms], |r| {
                Ok(SafetySnapshot {
                    deployment: r.get(0)?,
                    vmid: r.get(1)?,
                    snapshot: r.get(2)?,
                    from_version: r.get(3)?,
                    to_version: r.get(4)?,
                    created_ms: r.get(5)?,
                    release_ms: r.get(6)?,
                    op_id: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets a deployment's safety snapshot (released, or destroyed).
    pub fn forget_safety(&self, deployment: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM upgrade_safety WHERE deployment = ?1",
                [deployment],
            )
        })?;
        Ok(())
    }

    /// Writes a schedule row.
    pub fn put_schedule_run(&self, r: &ScheduleRun) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT OR REPLACE INTO schedule_runs (deployment, kind, last_run_ms, last_status, last_op, next_run_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![r.deployment, r.kind, r.last_run_ms, r.last_status, r.last_op, r.next_run_ms],
            )
        })?;
        Ok(())
    }

    /// Forgets a schedule row (the schedule was removed).
    pub fn forget_schedule(&self, deployment: &str, kind: &str) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM schedule_runs WHERE deployment = ?1 AND kind = ?2",
                [deployment, kind],
            )
        })?;
        Ok(())
    }
}
