//! Supervision state and health history.
//!
//! - `supervision`: one row per deployment (state, since, incident, ladder).
//!   Writers use optimistic concurrency on `updated_ms`: the supervisor's
//!   round never overwrites a change a user operation made meanwhile;
//! - `health_results`: raw results, consecutive identical ones (same
//!   outcome, state and detail) coalesced into one run with a count, so
//!   a steady deployment costs one row however often it is probed; kept
//!   `[supervise] history_raw_hours`;
//! - `health_rollups`: per deployment and hour, results counted as up
//!   (healthy, degraded), down (unhealthy) or other (stopped on purpose,
//!   unknown), with latency; kept `history_rollup_days`.

use std::collections::HashMap;

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::api::{HealthState, ProbeOutcome};
use crate::supervise::ladder::{IncidentRec, LadderRec};

/// A deployment's supervision row.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisionRow {
    /// The deployment.
    pub deployment: String,
    /// Its state.
    pub state: HealthState,
    /// Since when (ms).
    pub since_ms: i64,
    /// The last result's details.
    pub detail: String,
    /// The open incident.
    pub incident: Option<IncidentRec>,
    /// The ladder's memory.
    pub ladder: LadderRec,
    /// Last write (ms); the optimistic-concurrency token.
    pub updated_ms: i64,
}

/// One probe result to record.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSample {
    /// The deployment.
    pub deployment: String,
    /// When (ms).
    pub time_ms: i64,
    /// What the probe said.
    pub result: ProbeOutcome,
    /// The state after it.
    pub state: HealthState,
    /// Details.
    pub detail: String,
    /// How long the probe took (ms), when one ran.
    pub latency_ms: Option<f64>,
}

/// A run of identical results, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// First result (ms).
    pub first_ms: i64,
    /// Last result (ms).
    pub last_ms: i64,
    /// Results in the run.
    pub count: u64,
    /// The outcome.
    pub result: ProbeOutcome,
    /// The state.
    pub state: HealthState,
    /// Details.
    pub detail: String,
    /// Sum of latencies (ms).
    pub latency_ms_sum: f64,
    /// Slowest (ms).
    pub latency_ms_max: f64,
}

/// One hour, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredHour {
    /// The hour's start (ms).
    pub hour_ms: i64,
    /// Up results.
    pub up: u64,
    /// Down results.
    pub down: u64,
    /// Others.
    pub other: u64,
    /// Sum of latencies (ms).
    pub latency_ms_sum: f64,
    /// Slowest (ms).
    pub latency_ms_max: f64,
}

/// Milliseconds in an hour.
pub const HOUR_MS: i64 = 3_600_000;

type RawRow = (String, String, i64, String, Option<String>, String, i64);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

const COLUMNS: &str = "deployment, state, since_ms, detail, incident, ladder, updated_ms";

impl Store {
    fn decode_supervision(&self, r: RawRow) -> Result<SupervisionRow, StoreError> {
        let state =
            HealthState::parse(&r.1).ok_or_else(|| self.decode("supervision.state", &r.1))?;
        let incident =
            r.4.as_deref()
                .map(serde_json::from_str::<IncidentRec>)
                .transpose()
                .map_err(|e| self.decode("supervision.incident", e))?;
        let ladder: LadderRec =
            serde_json::from_str(&r.5).map_err(|e| self.decode("supervision.ladder", e))?;
        Ok(SupervisionRow {
            deployment: r.0,
            state,
            since_ms: r.2,
            detail: r.3,
            incident,
            ladder,
            updated_ms: r.6,
        })
    }

    /// The supervision row of `name`.
    pub fn supervision(&self, name: &str) -> Result<Option<SupervisionRow>, StoreError> {
        let row = self.read(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM supervision WHERE deployment = ?1"),
                [name],
                raw,
            )
            .optional()
        })?;
        row.map(|r| self.decode_supervision(r)).transpose()
    }

    /// Every supervision row, by deployment.
    pub fn supervision_all(&self) -> Result<HashMap<String, SupervisionRow>, StoreError> {
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM supervision"))?;
            let rows = st.query_map([], raw)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        rows.into_iter()
            .map(|r| {
                self.decode_supervision(r)
                    .map(|s| (s.deployment.clone(), s))
            })
            .collect()
    }

    /// Records a user's lifecycle action on `name`: the state becomes
    /// `state` (`starting` after start/restart/apply, `stopped` after
    /// stop) and the ladder starts over (a stop also closes the incident).
    pub fn supervision_user_action(
        &self,
        name: &str,
        state: HealthState,
        detail: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let mut row = self.supervision(name)?.unwrap_or(SupervisionRow {
            deployment: name.to_string(),
            state,
            since_ms: now_ms,
            detail: String::new(),
            incident: None,
            ladder: LadderRec::default(),
            updated_ms: 0,
        });
        row.state = state;
        row.since_ms = now_ms;
        row.detail = detail.to_string();
        if state == HealthState::Stopped {
            row.incident = None;
        } else if let Some(i) = &mut row.incident {
            i.actions.clear();
            i.gave_up = false;
        }
        row.ladder = LadderRec::default();
        let json = self.supervision_json(&row)?;
        // Bumped past the old token so a round that read the old row cannot write over this.
        let updated = now_ms.max(row.updated_ms + 1);
        self.write(|c| {
            c.execute(
                &format!(
                    "INSERT INTO supervision ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                     ON CONFLICT (deployment) DO UPDATE SET state = ?2, since_ms = ?3, detail = ?4, \
                     incident = ?5, ladder = ?6, updated_ms = ?7"
                ),
                params![
                    row.deployment,
                    row.state.as_str(),
                    row.since_ms,
                    row.detail,
                    json.0,
                    json.1,
                    updated
                ],
            )
        })?;
        Ok(())
    }

    fn supervision_json(
        &self,
        row: &SupervisionRow,
    ) -> Result<(Option<String>, String), StoreError> {
        let incident = row
            .incident
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| self.decode("supervision.incident", e))?;
        let ladder =
            serde_json::to_string(&row.ladder).map_err(|e| self.decode("supervision.ladder", e))?;
        Ok((incident, ladder))
    }

    /// Forgets `name`'s supervision and history (its deployment is gone).
    pub fn supervision_forget(&self, name: &str) -> Result<(), StoreError> {
        self.write(|c| {
            let tx = c.transaction()?;
            tx.execute("DELETE FROM supervision WHERE deployment = ?1", [name])?;
            tx.execute("DELETE FROM health_results WHERE deployment = ?1", [name])?;
            tx.execute("DELETE FROM health_rollups WHERE deployment = ?1", [name])?;
            tx.commit()
        })
    }

    /// One supervision round in one transaction: records `samples` (raw
    /// runs and rollups) and writes `rows`, each only if its row's
    /// `updated_ms` still equals the token given with it (`None`: the row
    /// must not exist yet). Returns, per row, whether it was written; a
    /// row's new token is its `updated_ms`.
    pub fn supervision_round(
        &self,
        samples: &[HealthSample],
        rows: &[(SupervisionRow, Option<i64>)],
    ) -> Result<Vec<bool>, StoreError> {
        let jsons = rows
            .iter()
            .map(|(r, _)| self.supervision_json(r))
            .collect::<Result<Vec<_>, _>>()?;
        self.write(|c| {
            let tx = c.transaction()?;
            for s in samples {
                record_sample(&tx, s)?;
            }
            let mut written = Vec::with_capacity(rows.len());
            for ((row, token), (incident, ladder)) in rows.iter().zip(jsons) {
                let n = match token {
                    Some(t) => tx.execute(
                        "UPDATE supervision SET state = ?2, since_ms = ?3, detail = ?4, incident = ?5, \
                         ladder = ?6, updated_ms = ?7 WHERE deployment = ?1 AND updated_ms = ?8",
                        params![
                            row.deployment, row.state.as_str(), row.since_ms, row.detail,
                            incident, ladder, row.updated_ms, t
                        ],
                    )?,
                    None => tx.execute(
                        &format!(
                            "INSERT OR IGNORE INTO supervision ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                        ),
                        params![
                            row.deployment, row.state.as_str(), row.since_ms, row.detail,
                            incident, ladder, row.updated_ms
                        ],
                    )?,
                };
                written.push(n == 1);
            }
            tx.commit()?;
            Ok(written)
        })
    }

    /// Raw runs of `name` that end at or after `since_ms`, oldest first (at most `limit`, the newest).
    pub fn health_runs(
        &self,
        name: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<StoredRun>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT first_ms, last_ms, count, result, state, detail, latency_ms_sum, latency_ms_max \
                 FROM health_results WHERE deployment = ?1 AND last_ms >= ?2 \
                 ORDER BY last_ms DESC, id DESC LIMIT ?3",
            )?;
            let rows = st.query_map(params![name, since_ms, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, f64>(6)?,
                    r.get::<_, f64>(7)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        let mut out = rows
            .into_iter()
            .map(|r| {
                Ok(StoredRun {
                    first_ms: r.0,
                    last_ms: r.1,
                    count: u64::try_from(r.2).unwrap_or(0),
                    result: ProbeOutcome::parse(&r.3)
                        .ok_or_else(|| self.decode("health_results.result", &r.3))?,
                    state: HealthState::parse(&r.4)
                        .ok_or_else(|| self.decode("health_results.state", &r.4))?,
                    detail: r.5,
                    latency_ms_sum: r.6,
                    latency_ms_max: r.7,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.reverse();
        Ok(out)
    }

    /// Hourly rollups of `name` from the hour holding `since_ms`, oldest first.
    pub fn health_hours(&self, name: &str, since_ms: i64) -> Result<Vec<StoredHour>, StoreError> {
        let from = since_ms - since_ms.rem_euclid(HOUR_MS);
        let rows = self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT hour_ms, up, down, other, latency_ms_sum, latency_ms_max FROM health_rollups \
                 WHERE deployment = ?1 AND hour_ms >= ?2 ORDER BY hour_ms",
            )?;
            let rows = st.query_map(params![name, from], |r| {
                Ok(StoredHour {
                    hour_ms: r.get(0)?,
                    up: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    down: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    other: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                    latency_ms_sum: r.get(4)?,
                    latency_ms_max: r.get(5)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        Ok(rows)
    }

    /// Deletes raw runs that ended before `raw_before_ms` and rollups of
    /// hours before `rollup_before_ms`; returns how many rows went.
    pub fn prune_health(
        &self,
        raw_before_ms: i64,
        rollup_before_ms: i64,
    ) -> Result<usize, StoreError> {
        self.write(|c| {
            let tx = c.transaction()?;
            let a = tx.execute(
                "DELETE FROM health_results WHERE last_ms < ?1",
                [raw_before_ms],
            )?;
            let b = tx.execute(
                "DELETE FROM health_rollups WHERE hour_ms < ?1",
                [rollup_before_ms],
            )?;
            tx.commit()?;
            Ok(a + b)
        })
    }
}

fn record_sample(tx: &rusqlite::Transaction<'_>, s: &HealthSample) -> rusqlite::Result<()> {
    let lat = s.latency_ms.unwrap_or(0.0);
    let last: Option<(i64, String, String, String)> = tx
        .prepare_cached(
            "SELECT id, result, state, detail FROM health_results WHERE deployment = ?1 \
             ORDER BY last_ms DESC, id DESC LIMIT 1",
        )?
        .query_row([&s.deployment], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    match last {
        Some((id, result, state, detail))
            if result == s.result.as_str() && state == s.state.as_str() && detail == s.detail =>
        {
            tx.prepare_cached(
                "UPDATE health_results SET last_ms = max(last_ms, ?2), count = count + 1, \
                 latency_ms_sum = latency_ms_sum + ?3, latency_ms_max = max(latency_ms_max, ?3) \
                 WHERE id = ?1",
            )?
            .execute(params![id, s.time_ms, lat])?;
        }
        _ => {
            tx.prepare_cached(
                "INSERT INTO health_results (deployment, first_ms, last_ms, count, result, state, \
                 detail, latency_ms_sum, latency_ms_max) VALUES (?1, ?2, ?2, 1, ?3, ?4, ?5, ?6, ?6)",
            )?
            .execute(params![
                s.deployment,
                s.time_ms,
                s.result.as_str(),
                s.state.as_str(),
                s.detail,
                lat
            ])?;
        }
    }
    let (up, down, other) = match s.result {
        ProbeOutcome::Healthy | ProbeOutcome::Degraded => (1, 0, 0),
        ProbeOutcome::Unhealthy => (0, 1, 0),
        ProbeOutcome::Stopped | ProbeOutcome::Unknown => (0, 0, 1),
    };
    let (healthy, degraded) = match s.result {
        ProbeOutcome::Healthy => (1, 0),
        ProbeOutcome::Degraded => (0, 1),
        _ => (0, 0),
    };
    let hour = s.time_ms - s.time_ms.rem_euclid(HOUR_MS);
    tx.prepare_cached(
        "INSERT INTO health_rollups (deployment, hour_ms, up, down, other, healthy, degraded, \
         latency_ms_sum, latency_ms_max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
         ON CONFLICT (deployment, hour_ms) DO UPDATE SET up = up + ?3, down = down + ?4, \
         other = other + ?5, healthy = healthy + ?6, degraded = degraded + ?7, \
         latency_ms_sum = latency_ms_sum + ?8, latency_ms_max = max(latency_ms_max, ?8)",
    )?
    .execute(params![
        s.deployment,
        hour,
        up,
        down,
        other,
        healthy,
        degraded,
        lat
    ])?;
    Ok(())
}
