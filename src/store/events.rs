//! The `events` table: persisted events (the `lifecycle` audit trail).
//!
//! Invariants: rows are append-only (until pruned by age); `seq` is the
//! event bus's sequence number, which continues after the highest stored
//! one at startup, so stored events stay in order across restarts.

use rusqlite::params;

use super::{Store, StoreError};

/// One persisted event.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The bus's sequence number.
    pub seq: u64,
    /// When (unix ms).
    pub time_ms: i64,
    /// The event type as on the wire (`lifecycle`, ...).
    pub kind: String,
    /// The (already redacted) payload.
    pub payload: serde_json::Value,
}

impl Store {
    /// Persists an event.
    pub fn insert_event(&self, ev: &StoredEvent) -> Result<(), StoreError> {
        self.write(|c| {
            c.execute(
                "INSERT INTO events (seq, time_ms, type, payload) VALUES (?1, ?2, ?3, ?4)",
                params![ev.seq, ev.time_ms, ev.kind, ev.payload.to_string()],
            )
        })?;
        Ok(())
    }

    /// The highest persisted sequence number (0 when none).
    pub fn last_event_seq(&self) -> Result<u64, StoreError> {
        self.read(|c| c.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0)))
    }

    /// Up to `limit` persisted events after `after_seq`, oldest first.
    pub fn events_after(&self, after_seq: u64, limit: u32) -> Result<Vec<StoredEvent>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT seq, time_ms, type, payload FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st.query_map(params![after_seq, limit], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|(seq, time_ms, kind, payload)| {
                Ok(StoredEvent {
                    seq,
                    time_ms,
                    kind,
                    payload: serde_json::from_str(&payload)
                        .map_err(|e| self.decode("events.payload", e))?,
                })
            })
            .collect()
    }

    /// Deletes persisted events older than `before_ms`; returns how many.
    pub fn delete_events_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.write(|c| c.execute("DELETE FROM events WHERE time_ms < ?1", [before_ms]))
    }
}
