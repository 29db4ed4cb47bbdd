//! The `operations` and `op_log` tables.
//!
//! Invariants: an operation row is inserted before its task runs and updated
//! at every state or progress change; log lines of one operation have dense
//! sequence numbers from 0 (the `offset` of `GET .../log`); deleting an
//! operation deletes its log (foreign key cascade).

use rusqlite::{params, OptionalExtension, Row};

use super::{Store, StoreError};
use crate::api::{ApiErrorInner, OpStatus, Operation, Progress, Requestor};

/// Most rows [`Store::list_ops`] returns.
pub const MAX_LIST: u32 = 1000;
/// Rows [`Store::list_ops`] returns when the filter sets no limit.
pub const DEFAULT_LIST: u32 = 100;

/// One operation as stored: the wire fields plus the compensation payload.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRecord {
    /// Opaque id.
    pub id: String,
    /// `template.download`, ...
    pub kind: String,
    /// The lock key, if any.
    pub target: Option<String>,
    /// Who asked.
    pub requestor: Requestor,
    /// Where it is.
    pub status: OpStatus,
    /// Why it did not succeed.
    pub error: Option<ApiErrorInner>,
    /// Submitted (unix ms).
    pub created_ms: i64,
    /// Started running (unix ms).
    pub started_ms: Option<i64>,
    /// Ended (unix ms).
    pub finished_ms: Option<i64>,
    /// Progress.
    pub progress: Progress,
    /// Whether the current step may be cancelled.
    pub cancellable: bool,
    /// What compensation needs after a crash (kind-specific JSON).
    pub payload: serde_json::Value,
}

impl OpRecord {
    /// The wire form.
    pub fn to_api(&self) -> Operation {
        Operation {
            id: self.id.clone(),
            kind: self.kind.clone(),
            target: self.target.clone(),
            requestor: self.requestor.clone(),
            status: self.status,
            error: self.error.clone(),
            created_at: super::rfc3339(self.created_ms),
            started_at: self.started_ms.map(super::rfc3339),
            finished_at: self.finished_ms.map(super::rfc3339),
            progress: self.progress.clone(),
            cancellable: self.cancellable && !self.status.is_final(),
        }
    }
}

/// Which operations [`Store::list_ops`] returns (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpFilter {
    /// Only these states (empty: all).
    pub status: Vec<OpStatus>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// At most this many ([`DEFAULT_LIST`] when unset, capped at [`MAX_LIST`]).
    pub limit: Option<u32>,
}

/// The status as stored (and on the wire).
pub fn status_str(s: OpStatus) -> &'static str {
    match s {
        OpStatus::Queued => "queued",
        OpStatus::Running => "running",
        OpStatus::Succeeded => "succeeded",
        OpStatus::Failed => "failed",
        OpStatus::Cancelled => "cancelled",
        OpStatus::Interrupted => "interrupted",
    }
}

fn parse_status(s: &str) -> Option<OpStatus> {
    Some(match s {
        "queued" => OpStatus::Queued,
        "running" => OpStatus::Running,
        "succeeded" => OpStatus::Succeeded,
        "failed" => OpStatus::Failed,
        "cancelled" => OpStatus::Cancelled,
        "interrupted" => OpStatus::Interrupted,
        _ => return None,
    })
}

const COLUMNS: &str = "id, kind, target, requestor_uid, requestor_user, requestor_pid, status, \
     error_code, error_message, created_ms, started_ms, finished_ms, progress_step, \
     progress_steps, progress_name, progress_percent, cancellable, payload";

/// A row before its text columns are decoded (decoding errors are ours, not SQLite's).
struct RawRow {
    rec: OpRecord,
    status: String,
    payload: String,
}

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    let code: Option<String> = r.get(7)?;
    let message: Option<String> = r.get(8)?;
    let percent: Option<f64> = r.get(15)?;
    Ok(RawRow {
        rec: OpRecord {
            id: r.get(0)?,
            kind: r.get(1)?,
            target: r.get(2)?,
            requestor: Requestor {
                uid: r.get(3)?,
                user: r.get(4)?,
                pid: r.get(5)?,
            },
            status: OpStatus::Queued,
            error: code.map(|code| ApiErrorInner {
                code,
                message: message.unwrap_or_default(),
            }),
            created_ms: r.get(9)?,
            started_ms: r.get(10)?,
            finished_ms: r.get(11)?,
            progress: Progress {
                step: r.get(12)?,
                steps: r.get(13)?,
                name: r.get(14)?,
                #[allow(clippy::cast_possible_truncation)]
                percent: percent.map(|p| p as f32),
            },
            cancellable: r.get(16)?,
            payload: serde_json::Value::Null,
        },
        status: r.get(6)?,
        payload: r.get(17)?,
    })
}

impl Store {
    fn decode_row(&self, raw: RawRow) -> Result<OpRecord, StoreError> {
        let mut rec = raw.rec;
        rec.status = parse_status(&raw.status)
            .ok_or_else(|| self.decode("operations.status", &raw.status))?;
        rec.payload =
            serde_json::from_str(&raw.payload).map_err(|e| self.decode("operations.payload", e))?;
        Ok(rec)
    }

    /// Inserts a new operation.
    pub fn insert_op(&self, rec: &OpRecord) -> Result<(), StoreError> {
        self.write_ops(|c| {
            c.execute(
                &format!("INSERT INTO operations ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"),
                params![
                    rec.id,
                    rec.kind,
                    rec.target,
                    rec.requestor.uid,
                    rec.requestor.user,
                    rec.requestor.pid,
                    status_str(rec.status),
                    rec.error.as_ref().map(|e| e.code.as_str()),
                    rec.error.as_ref().map(|e| e.message.as_str()),
                    rec.created_ms,
                    rec.started_ms,
                    rec.finished_ms,
                    rec.progress.step,
                    rec.progress.steps,
                    rec.progress.name,
                    rec.progress.percent.map(f64::from),
                    rec.cancellable,
                    rec.payload.to_string(),
                ],
            )
        })?;
        Ok(())
    }

    /// Writes every mutable field of `rec` (status, error, times, progress,
    /// cancellable, payload). Not-found is an error: rows are never recreated.
    pub fn update_op(&self, rec: &OpRecord) -> Result<(), StoreError> {
        let n = self.write_ops(|c| {
            c.execute(
                "UPDATE operations SET status = ?2, error_code = ?3, error_message = ?4, \
                 started_ms = ?5, finished_ms = ?6, progress_step = ?7, progress_steps = ?8, \
                 progress_name = ?9, progress_percent = ?10, cancellable = ?11, payload = ?12 \
                 WHERE id = ?1",
                params![
                    rec.id,
                    status_str(rec.status),
                    rec.error.as_ref().map(|e| e.code.as_str()),
                    rec.error.as_ref().map(|e| e.message.as_str()),
                    rec.started_ms,
                    rec.finished_ms,
                    rec.progress.step,
                    rec.progress.steps,
                    rec.progress.name,
                    rec.progress.percent.map(f64::from),
                    rec.cancellable,
                    rec.payload.to_string(),
                ],
            )
        })?;
        if n == 0 {
            return Err(self.err(rusqlite::Error::QueryReturnedNoRows));
        }
        Ok(())
    }

    /// One operation, if it exists.
    pub fn get_op(&self, id: &str) -> Result<Option<OpRecord>, StoreError> {
        let raw = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM operations WHERE id = ?1"),
                [id],
                raw,
            )
            .optional()
        })?;
        raw.map(|r| self.decode_row(r)).transpose()
    }

    /// How many operations the store holds, by kind and status (for `/metrics`).
    pub fn op_counts(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT kind, status, count(*) FROM operations GROUP BY kind, status ORDER BY kind, status",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
            })?;
            rows.map(|r| r.map(|(k, s, n)| (k, s, u64::try_from(n).unwrap_or(0))))
                .collect()
        })
    }

    /// Operations matching `filter`, newest first.
    pub fn list_ops(&self, filter: &OpFilter) -> Result<Vec<OpRecord>, StoreError> {
        let limit = filter.limit.unwrap_or(DEFAULT_LIST).min(MAX_LIST);
        let statuses: Vec<&str> = filter.status.iter().map(|s| status_str(*s)).collect();
        let status_json = serde_json::to_string(&statuses).unwrap_or_else(|_| "[]".into());
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM operations \
                 WHERE (?1 = '[]' OR status IN (SELECT value FROM json_each(?1))) \
                 AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR target = ?3) \
                 ORDER BY created_ms DESC, id LIMIT ?4"
            ))?;
            let rows =
                st.query_map(params![status_json, filter.kind, filter.target, limit], raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(|r| self.decode_row(r)).collect()
    }

    /// Every operation still `queued` or `running` (crash recovery).
    pub fn unfinished_ops(&self) -> Result<Vec<OpRecord>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM operations WHERE status IN ('queued', 'running') \
                 ORDER BY created_ms, id"
            ))?;
            let rows = st.query_map([], raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter().map(|r| self.decode_row(r)).collect()
    }

    /// Appends a line to an operation's log; returns its sequence number.
    pub fn append_op_log(&self, op_id: &str, time_ms: i64, line: &str) -> Result<u64, StoreError> {
        self.write(|c| {
            let tx = c.transaction()?;
            let seq: u64 = tx.query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM op_log WHERE op_id = ?1",
                [op_id],
                |r| r.get(0),
            )?;
            tx.execute(
                "INSERT INTO op_log (op_id, seq, time_ms, line) VALUES (?1, ?2, ?3, ?4)",
                params![op_id, seq, time_ms, line],
            )?;
            tx.commit()?;
            Ok(seq)
        })
    }

    /// Up to `limit` log lines of an operation from sequence number `offset` on.
    pub fn read_op_log(
        &self,
        op_id: &str,
        offset: u64,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT line FROM op_log WHERE op_id = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = st.query_map(params![op_id, offset, limit], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    /// Deletes operations (and their logs) that ended before `before_ms`;
    /// returns how many.
    pub fn delete_finished_ops_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write_ops(|c| {
            c.execute(
                "DELETE FROM operations WHERE status NOT IN ('queued', 'running') \
                 AND finished_ms IS NOT NULL AND finished_ms < ?1",
                [before_ms],
            )
        })
    }
}
