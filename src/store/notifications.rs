//! The `notifications` table: the durable delivery queue of alerts, one row
//! per (alert, target).
//!
//! Invariants:
//! - an alert is fanned out to its targets in ONE transaction, with
//!   `INSERT OR IGNORE` on the unique (target, dedupe_key): an incident
//!   queues at most one notification per target, even across restarts;
//! - a row is `pending` until it is `delivered` or `failed`, and never goes
//!   back; only finished rows are pruned;
//! - the delivery order of a target is its rows' `id` order: [`Store::notification_heads`]
//!   returns only the oldest pending row of each target (head of line).

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

/// Where a notification is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// The target answered 2xx.
    Delivered,
    /// Given up (too old, or its target was removed); `last_error` says why.
    Failed,
}

impl NotificationStatus {
    /// The name in the database and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Delivered, Self::Failed]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// One stored notification.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationRow {
    /// Its id (delivery order within a target).
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// The alert's kind (`unhealthy`, ...).
    pub event: String,
    /// The deployment it is about.
    pub deployment: Option<String>,
    /// The alert's dedupe key.
    pub dedupe_key: Option<String>,
    /// The alert as JSON ([`crate::notify::Alert`]).
    pub payload: serde_json::Value,
    /// Where it is.
    pub status: NotificationStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (unix ms).
    pub next_attempt_ms: i64,
    /// Why the last attempt failed (redacted).
    pub last_error: Option<String>,
    /// When it was queued (unix ms).
    pub created_ms: i64,
    /// When it was delivered (unix ms).
    pub delivered_ms: Option<i64>,
}

/// An alert to queue, already serialised.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification<'a> {
    /// The alert's kind.
    pub event: &'a str,
    /// The deployment it is about.
    pub deployment: Option<&'a str>,
    /// At most one row per target carries it.
    pub dedupe_key: Option<&'a str>,
    /// The alert as JSON.
    pub payload: &'a serde_json::Value,
}

/// Filters of [`Store::list_notifications`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    /// Only this status.
    pub status: Option<NotificationStatus>,
    /// Only this target.
    pub target: Option<String>,
    /// Only ids below this one (paging, newest first).
    pub before: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// How many rows are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueStats {
    /// Waiting for delivery (the queue depth).
    pub pending: u64,
    /// Delivered and not yet pruned.
    pub delivered: u64,
    /// Given up and not yet pruned.
    pub failed: u64,
}

/// One target's queue, for `GET /v1/notifications`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetQueue {
    /// Pending rows.
    pub pending: u64,
    /// Failed rows.
    pub failed: u64,
    /// When its last delivery succeeded (unix ms).
    pub last_delivered_ms: Option<i64>,
    /// The last error of its newest row that has one.
    pub last_error: Option<String>,
}

const COLUMNS: &str = "id, target, event, deployment, dedupe_key, payload, status, attempts, \
                       next_attempt_ms, last_error, created_ms, delivered_ms";

type RawRow = (
    NotificationRow,
    String, // payload text
    String, // status text
);

fn raw(r: &Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        NotificationRow {
            id: r.get(0)?,
            target: r.get(1)?,
            event: r.get(2)?,
            deployment: r.get(3)?,
            dedupe_key: r.get(4)?,
            payload: serde_json::Value::Null,
            status: NotificationStatus::Pending,
            attempts: r.get(7)?,
            next_attempt_ms: r.get(8)?,
            last_error: r.get(9)?,
            created_ms: r.get(10)?,
            delivered_ms: r.get(11)?,
        },
        r.get(5)?,
        r.get(6)?,
    ))
}

impl Store {
    fn decode_rows(&self, rows: Vec<RawRow>) -> Result<Vec<NotificationRow>, StoreError> {
        rows.into_iter()
            .map(|(mut row, payload, status)| {
                row.payload = serde_json::from_str(&payload)
                    .map_err(|e| self.decode("notifications.payload", e))?;
                row.status = NotificationStatus::parse(&status)
                    .ok_or_else(|| self.decode("notifications.status", &status))?;
                Ok(row)
            })
            .collect()
    }

    /// Queues `n` for each of `targets` in one transaction; a target that
    /// already has a row with the same dedupe key is skipped. Returns how
    /// many rows were inserted.
    pub fn enqueue_notifications(
        &self,
        targets: &[&str],
        n: &NewNotification<'_>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        if targets.is_empty() {
            return Ok(0);
        }
        let payload = n.payload.to_string();
        self.write(|c| {
            let tx = c.transaction()?;
            let mut inserted = 0;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO notifications (target, event, deployment, dedupe_key, \
                     payload, status, attempts, next_attempt_ms, created_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                )?;
                for t in targets {
                    inserted += st.execute(params![
                        t,
                        n.event,
                        n.deployment,
                        n.dedupe_key,
                        payload,
                        now_ms
                    ])?;
                }
            }
            tx.commit()?;
            Ok(inserted)
        })
    }

    /// The oldest pending row of every target (due or not), by id.
    pub fn notification_heads(&self) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications WHERE id IN \
                 (SELECT MIN(id) FROM notifications WHERE status = 'pending' GROUP BY target) \
                 ORDER BY id LIMIT 1000"
            ))?;
            let rows = st.query_map([], raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        self.decode_rows(rows)
    }

    /// One row.
    pub fn get_notification(&self, id: i64) -> Result<Option<NotificationRow>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM notifications WHERE id = ?1"),
                [id],
                raw,
            )
            .optional()
        })?;
        Ok(self.decode_rows(row.into_iter().collect())?.pop())
    }

    /// Marks a pending row delivered (counting the attempt).
    pub fn notification_delivered(&self, id: i64, now_ms: i64) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE notifications SET status = 'delivered', attempts = attempts + 1, \
                 delivered_ms = ?2, last_error = NULL WHERE id = ?1 AND status = 'pending'",
                params![id, now_ms],
            )
        })?;
        Ok(())
    }

    /// Records a failed attempt of a pending row; the next one is due at
    /// `next_attempt_ms`.
    pub fn notification_retry(
        &self,
        id: i64,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE notifications SET attempts = attempts + 1, next_attempt_ms = ?2, \
                 last_error = ?3 WHERE id = ?1 AND status = 'pending'",
                params![id, next_attempt_ms, error],
            )
        })?;
        Ok(())
    }

    /// Gives a pending row up; `attempted` counts one more attempt.
    pub fn notification_failed(
        &self,
        id: i64,
        attempted: bool,
        error: &str,
    ) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "UPDATE notifications SET status = 'failed', attempts = attempts + ?2, \
                 last_error = ?3 WHERE id = ?1 AND status = 'pending'",
                params![id, i64::from(attempted), error],
            )
        })?;
        Ok(())
    }

    /// Rows matching `f`, newest first.
    pub fn list_notifications(
        &self,
        f: &NotificationFilter,
    ) -> Result<Vec<NotificationRow>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM notifications \
                 WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR target = ?2) \
                 AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = st.query_map(
                params![
                    f.status.map(NotificationStatus::as_str),
                    f.target,
                    f.before,
                    f.limit
                ],
                raw,
            )?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        self.decode_rows(rows)
    }

    /// How many rows are in each status.
    pub fn notification_counts(&self) -> Result<QueueStats, StoreError> {
        self.read(|c| {
            let mut st =
                c.prepare_cached("SELECT status, COUNT(*) FROM notifications GROUP BY status")?;
            let mut stats = QueueStats::default();
            let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (status, n) = row?;
                match NotificationStatus::parse(&status) {
                    Some(NotificationStatus::Pending) => stats.pending = n,
                    Some(NotificationStatus::Delivered) => stats.delivered = n,
                    Some(NotificationStatus::Failed) => stats.failed = n,
                    None => {}
                }
            }
            Ok(stats)
        })
    }

    /// One target's queue summary.
    pub fn notification_target_queue(&self, target: &str) -> Result<TargetQueue, StoreError> {
        self.read(|c| {
            let (pending, failed, last_delivered_ms) = c.query_row(
                "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'failed'), 0), \
                 MAX(delivered_ms) FROM notifications WHERE target = ?1",
                [target],
                |r| Ok((r.get::<_, u64>(0)?, r.get::<_, u64>(1)?, r.get(2)?)),
            )?;
            let last_error = c
                .query_row(
                    "SELECT last_error FROM notifications WHERE target = ?1 \
                     AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                    [target],
                    |r| r.get::<_, String>(0),
                )
                .optional()?;
            Ok(TargetQueue {
                pending,
                failed,
                last_delivered_ms,
                last_error,
            })
        })
    }

    /// Deletes delivered and failed rows queued before `before_ms`; pending
    /// rows are never pruned. Returns how many.
    pub fn prune_notifications(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|c| {
            c.execute(
                "DELETE FROM notifications WHERE status != 'pending' AND created_ms < ?1",
                [before_ms],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    fn open(dir: &std::path::Path) -> Store {
        Store::open(&Paths::under(dir)).expect("store")
    }

    fn new<'a>(key: Option<&'a str>, payload: &'a serde_json::Value) -> NewNotification<'a> {
        NewNotification {
            event: "unhealthy",
            deployment: Some("wiki"),
            dedupe_key: key,
            payload,
        }
    }

    #[test]
    fn fan_out_dedupes_per_target_and_heads_keep_order() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = open(t.path());
        let p = serde_json::json!({"title": "wiki is unhealthy"});
        assert_eq!(
            s.enqueue_notifications(&["a", "b"], &new(Some("wiki/1/unhealthy"), &p), 1000)
                .unwrap(),
            2
        );
        // The same incident again (a restart re-raising it): nothing new.
        assert_eq!(
            s.enqueue_notifications(&["a", "b"], &new(Some("wiki/1/unhealthy"), &p), 2000)
                .unwrap(),
            0
        );
        // A new target still gets it once.
        assert_eq!(
            s.enqueue_notifications(&["a", "c"], &new(Some("wiki/1/unhealthy"), &p), 2000)
                .unwrap(),
            1
        );
        // No key: never deduplicated.
        assert_eq!(
            s.enqueue_notifications(&["a"], &new(None, &p), 3000)
                .unwrap(),
            1
        );
        assert_eq!(
            s.enqueue_notifications(&["a"], &new(None, &p), 3000)
                .unwrap(),
            1
        );
        assert_eq!(s.notification_counts().unwrap().pending, 5);

        let heads = s.notification_heads().unwrap();
        let names: Vec<(&str, i64)> = heads.iter().map(|h| (h.target.as_str(), h.id)).collect();
        assert_eq!(names, [("a", 1), ("b", 2), ("c", 3)]);
        assert_eq!(heads[0].payload, p);
        // Target a's next row only becomes the head once the first is done.
        s.notification_retry(1, 5000, "HTTP 500").unwrap();
        assert_eq!(
            s.notification_heads().unwrap()[0].id,
            1,
            "a retry keeps its place"
        );
        s.notification_delivered(1, 6000).unwrap();
        let heads = s.notification_heads().unwrap();
        assert_eq!(heads.iter().find(|h| h.target == "a").unwrap().id, 4);
        let one = s.get_notification(1).unwrap().unwrap();
        assert_eq!(one.status, NotificationStatus::Delivered);
        assert_eq!(one.attempts, 2);
        assert_eq!(one.delivered_ms, Some(6000));
        assert_eq!(one.last_error, None);
    }

    #[test]
    fn retry_fail_list_counts_and_prune() {
        let t = tempfile::tempdir().expect("tempdir");
        let s = open(t.path());
        let p = serde_json::json!({});
        for i in 0..4 {
            s.enqueue_notifications(&["x"], &new(None, &p), 1000 + i)
                .unwrap();
        }
        s.enqueue_notifications(&["y"], &new(None, &p), 1000)
            .unwrap();
        s.notification_retry(1, 9000, "connect refused").unwrap();
        let r = s.get_notification(1).unwrap().unwrap();
        assert_eq!(
            (r.attempts, r.next_attempt_ms, r.last_error.as_deref()),
            (1, 9000, Some("connect refused"))
        );
        s.notification_failed(1, true, "gave up after 24 h: connect refused")
            .unwrap();
        s.notification_failed(2, false, "target no longer configured")
            .unwrap();
        s.notification_delivered(3, 5000).unwrap();
        // Finished rows do not change any more.
        s.notification_retry(1, 1, "late").unwrap();
        s.notification_delivered(2, 1).unwrap();
        let r1 = s.get_notification(1).unwrap().unwrap();
        assert_eq!((r1.status, r1.attempts), (NotificationStatus::Failed, 2));
        assert_eq!(
            s.get_notification(2).unwrap().unwrap().status,
            NotificationStatus::Failed
        );
        assert_eq!(
            s.notification_counts().unwrap(),
            QueueStats {
                pending: 2,
                delivered: 1,
                failed: 2
            }
        );

        let all = s
            .list_notifications(&NotificationFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            all.iter().map(|r| r.id).collect::<Vec<_>>(),
            [5, 4, 3, 2, 1],
            "newest first"
        );
        let page = s
            .list_notifications(&NotificationFilter {
                target: Some("x".into()),
                before: Some(4),
                limit: 2,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [3, 2]);
        let failed = s
            .list_notifications(&NotificationFilter {
                status: Some(NotificationStatus::Failed),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(failed.len(), 2);

        let q = s.notification_target_queue("x").unwrap();
        assert_eq!(
            (q.pending, q.failed, q.last_delivered_ms),
            (1, 2, Some(5000))
        );
        assert_eq!(q.last_error.as_deref(), Some("target no longer configured"));
        assert_eq!(
            s.notification_target_queue("nope").unwrap(),
            TargetQueue::default()
        );

        // Only finished rows older than the cutoff go; pending ones stay.
        assert_eq!(s.prune_notifications(1002).unwrap(), 2);
        assert_eq!(s.prune_notifications(i64::MAX).unwrap(), 1);
        assert_eq!(
            s.notification_counts().unwrap(),
            QueueStats {
                pending: 2,
                delivered: 0,
                failed: 0
            }
        );
    }

    #[test]
    fn the_queue_survives_reopening() {
        let t = tempfile::tempdir().expect("tempdir");
        let p = serde_json::json!({"title": "t"});
        {
            let s = open(t.path());
            s.enqueue_notifications(&["a"], &new(Some("k"), &p), 1)
                .unwrap();
        }
        let s = open(t.path());
        let heads = s.notification_heads().unwrap();
        assert_eq!(heads.len(), 1);
        assert_eq!(heads[0].status, NotificationStatus::Pending);
        assert_eq!(
            s.enqueue_notifications(&["a"], &new(Some("k"), &p), 2)
                .unwrap(),
            0,
            "dedupe across restarts"
        );
    }
}
