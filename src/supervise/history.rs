//! The health view of one deployment (`GET /v1/deployments/{name}/health`):
//! state, incident, ladder, uptime and history over a window.

use crate::api::{
    DeploymentHealth, HealthHour, HealthRun, HealthState, Incident, LadderView, Remediation,
};
use crate::error::Error;
use crate::store::{rfc3339, Store, SupervisionRow};

/// The longest window (30 days, the rollups' retention by default).
pub const MAX_WINDOW_MS: i64 = 30 * 86_400_000;
/// The default window.
pub const DEFAULT_WINDOW_MS: i64 = 86_400_000;
/// Most raw runs returned.
pub const MAX_RUNS: usize = 2000;

/// Parses `since`: RFC 3339, or a duration back from `now` (`90m`, `24h`,
/// `7d`, `3600s`). 400 naming `since` with the accepted forms.
pub fn parse_since(since: Option<&str>, now_ms: i64) -> Result<i64, Error> {
    let Some(s) = since.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(now_ms - DEFAULT_WINDOW_MS);
    };
    let bad = || {
        Error::bad_request(
            "since",
            format!(
                "since: '{}' is neither an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration (90m, 24h, 7d)",
                s.chars().filter(|c| !c.is_control()).take(64).collect::<String>()
            ),
        )
    };
    let unit_ms = match s.chars().last() {
        Some('s') => Some(1_000i64),
        Some('m') => Some(60_000),
        Some('h') => Some(3_600_000),
        Some('d') => Some(86_400_000),
        _ => None,
    };
    // The unit is one ASCII byte, so this slice is on a char boundary.
    let num = if unit_ms.is_some() {
        &s[..s.len() - 1]
    } else {
        ""
    };
    let from = match unit_ms {
        Some(mult) if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) => {
            let n: i64 = num.parse().map_err(|_| bad())?;
            now_ms - n.checked_mul(mult).ok_or_else(bad)?
        }
        _ => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?;
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| bad())?
        }
    };
    Ok(from.max(now_ms - MAX_WINDOW_MS).min(now_ms))
}

/// Builds the view of `name` from its row, the live data and the store.
#[allow(clippy::too_many_arguments)] // each is one independent input of the view
pub fn view(
    store: &Store,
    name: &str,
    row: Option<&SupervisionRow>,
    live: Option<&super::LiveView>,
    probe: String,
    policy_max_per_hour: u32,
    next_allowed_ms: Option<i64>,
    since_ms: i64,
    now_ms: i64,
) -> Result<DeploymentHealth, Error> {
    let runs = store.health_runs(name, since_ms, MAX_RUNS)?;
    let hours = store.health_hours(name, since_ms)?;
    // Exact uptime from the raw runs when the window is within their
    // retention; else from the hourly rollups.
    let (mut up, mut down) = (0u64, 0u64);
    let raw_covers = runs.first().is_some_and(|r| r.first_ms <= since_ms)
        || now_ms - since_ms <= DEFAULT_WINDOW_MS;
    if raw_covers {
        for r in &runs {
            match r.result {
                crate::api::ProbeOutcome::Healthy | crate::api::ProbeOutcome::Degraded => {
                    up += r.count
                }
                crate::api::ProbeOutcome::Unhealthy => down += r.count,
                _ => {}
            }
        }
    } else {
        for h in &hours {
            up += h.up;
            down += h.down;
        }
    }
    let pct = |up: u64, down: u64| {
        (up + down > 0).then(|| ((up as f64) * 10000.0 / ((up + down) as f64)).round() / 100.0)
    };
    let incident = row.and_then(|r| r.incident.as_ref()).map(|i| Incident {
        id: i.id.clone(),
        started_at: rfc3339(i.started_ms),
        reason: i.reason.clone(),
        actions: i
            .actions
            .iter()
            .map(|a| Remediation {
                action: a.action.as_str().to_string(),
                at: rfc3339(a.at_ms),
                operation: a.op.clone(),
            })
            .collect(),
        gave_up: i.gave_up,
    });
    Ok(DeploymentHealth {
        deployment: name.to_string(),
        state: row.map_or(HealthState::Starting, |r| r.state),
        since: rfc3339(row.map_or(now_ms, |r| r.since_ms)),
        detail: row
            .map(|r| r.detail.clone())
            .unwrap_or_else(|| "not probed yet".into()),
        probe,
        incident,
        ladder: LadderView {
            last_hour: row.map_or(0, |r| {
                u32::try_from(
                    r.ladder
                        .recent_ms
                        .iter()
                        .filter(|t| now_ms - **t < 3_600_000)
                        .count(),
                )
                .unwrap_or(u32::MAX)
            }),
            max_per_hour: policy_max_per_hour,
            next_allowed_at: next_allowed_ms.filter(|t| *t > now_ms).map(rfc3339),
            waiting: live.and_then(|l| l.waiting.clone()),
        },
        window_since: rfc3339(since_ms),
        uptime_percent: pct(up, down),
        results: runs
            .iter()
            .map(|r| HealthRun {
                from: rfc3339(r.first_ms),
                to: rfc3339(r.last_ms),
                count: r.count,
                result: r.result,
                state: r.state,
                detail: r.detail.clone(),
                latency_ms_avg: if r.count > 0 {
                    ((r.latency_ms_sum / r.count as f64) * 100.0).round() / 100.0
                } else {
                    0.0
                },
                latency_ms_max: (r.latency_ms_max * 100.0).round() / 100.0,
            })
            .collect(),
        hourly: hours
            .iter()
            .map(|h| {
                let n = h.up + h.down + h.other;
                HealthHour {
                    hour: rfc3339(h.hour_ms),
                    up: h.up,
                    down: h.down,
                    other: h.other,
                    uptime_percent: pct(h.up, h.down),
                    latency_ms_avg: if n > 0 {
                        ((h.latency_ms_sum / n as f64) * 100.0).round() / 100.0
                    } else {
                        0.0
                    },
                    latency_ms_max: (h.latency_ms_max * 100.0).round() / 100.0,
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_durations_and_times_and_names_itself() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since(None, now).unwrap(), now - 86_400_000);
        assert_eq!(parse_since(Some("90m"), now).unwrap(), now - 90 * 60_000);
        assert_eq!(parse_since(Some("7d"), now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(
            parse_since(Some("400d"), now).unwrap(),
            now - MAX_WINDOW_MS,
            "clamped"
        );
        // 1_800_000_000 s is 2027-01-15T08:00:00Z.
        assert_eq!(
            parse_since(Some("2027-01-15T07:00:00Z"), now).unwrap(),
            now - 3_600_000
        );
        assert_eq!(
            parse_since(Some("2030-01-01T00:00:00Z"), now).unwrap(),
            now,
            "future: now"
        );
        for bad in [
            "yesterday",
            "5y",
            "m",
            "-3h",
            "99999999999999999999d",
            "5é",
            "é",
        ] {
            let e = parse_since(Some(bad), now).unwrap_err();
            assert!(e.message.starts_with("since:"), "{bad}: {}", e.message);
        }
    }
}
