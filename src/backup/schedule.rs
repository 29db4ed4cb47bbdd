//! Scheduled backups: each deployment's `backup.schedule` (Proxmox's
//! calendar-event syntax) fires a `backup` operation.
//!
//! Invariants:
//! - the next run is persisted (`schedule_runs`), so a restart neither
//!   forgets nor repeats a run;
//! - runs missed while the daemon (or the node) was down collapse into one
//!   catch-up run after startup, after a random delay of up to
//!   `[backup] catchup_jitter_secs` — never a burst;
//! - the next run after a run is computed from *now*, so a slow backup
//!   never queues a second one behind it;
//! - never two backups of one container (the operation's `ct/<vmid>`
//!   lock) and at most `[ops] heavy_concurrency` at once; a container
//!   that is locked (by an operation or by Proxmox) is retried with
//!   exponential backoff, then reported (`backup_failed`) and the schedule
//!   moves on to its next run.
//!
//! [`Planner::tick`] is the decision for one moment, given the clock, so
//! tests drive it with any time; [`run`] calls it every
//! [`TICK`] with the real clock.

use std::time::Duration;

use crate::api::BackupPolicy;
use crate::error::Error;
use crate::schedule::CalendarEvent;
use crate::store::{DeploymentRecord, ScheduleRun, Store};

/// How often schedules are looked at.
pub const TICK: Duration = Duration::from_secs(15);
/// Retries of a locked container before the run is reported as failed.
pub const LOCKED_RETRIES: u32 = 5;
/// First retry delay for a locked container (doubles each time).
pub const LOCKED_BACKOFF_MS: i64 = 60_000;

/// What a tick decided for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Back it up now (`catch_up`: the run was missed by more than a tick).
    Run {
        /// The deployment.
        name: String,
        /// A missed run, made up for once.
        catch_up: bool,
    },
}

/// Decides schedules against a store.
#[derive(Debug, Clone)]
pub struct Planner {
    store: Store,
    tz: jiff::tz::TimeZone,
}

fn zoned(ms: i64, tz: &jiff::tz::TimeZone) -> Option<jiff::Zoned> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_zoned(tz.clone()))
}

/// The first run of `expr` strictly after `after_ms` (ms), in `tz`.
pub fn next_run(expr: &CalendarEvent, after_ms: i64, tz: &jiff::tz::TimeZone) -> Option<i64> {
    let z = zoned(after_ms, tz)?;
    expr.next_after(&z).map(|n| n.timestamp().as_millisecond())
}

impl Planner {
    /// A planner over `store`, evaluating schedules in `tz`.
    pub fn new(store: Store, tz: jiff::tz::TimeZone) -> Self {
        Self { store, tz }
    }

    /// The decisions at `now_ms` for `deployments` under `base` (`[backup]`).
    /// Updates `schedule_runs`: a deployment seen for the first time gets
    /// its next run; a due one gets its next run after `now` (so missed runs
    /// collapse into this one).
    pub fn tick(
        &self,
        deployments: &[DeploymentRecord],
        base: &BackupPolicy,
        now_ms: i64,
    ) -> Result<Vec<Decision>, Error> {
        let mut out = Vec::new();
        for d in deployments {
            let policy = crate::backup::policy_of(&d.spec, base);
            let Some(expr) = policy
                .schedule
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .and_then(|s| CalendarEvent::parse(s).ok())
            else {
                self.store.forget_schedule(&d.name, "backup")?;
                continue;
            };
            let row = self.store.schedule_run(&d.name, "backup")?;
            let next = row.as_ref().and_then(|r| r.next_run_ms);
            match next {
                None => {
                    let n = next_run(&expr, now_ms, &self.tz);
                    self.store.put_schedule_run(&ScheduleRun {
                        deployment: d.name.clone(),
                        kind: "backup".into(),
                        last_run_ms: row.as_ref().and_then(|r| r.last_run_ms),
                        last_status: row.as_ref().and_then(|r| r.last_status.clone()),
                        last_op: row.as_ref().and_then(|r| r.last_op.clone()),
                        next_run_ms: n,
                    })?;
                }
                Some(at) if at <= now_ms => {
                    let catch_up =
                        now_ms - at > i64::try_from(TICK.as_millis()).unwrap_or(i64::MAX) * 2;
                    // The next run counts from now: missed runs are one run.
                    let n = next_run(&expr, now_ms, &self.tz);
                    self.store.put_schedule_run(&ScheduleRun {
                        deployment: d.name.clone(),
                        kind: "backup".into(),
                        last_run_ms: Some(now_ms),
                        last_status: Some("started".into()),
                        last_op: None,
                        next_run_ms: n,
                    })?;
                    out.push(Decision::Run {
                        name: d.name.clone(),
                        catch_up,
                    });
                }
                Some(_) => {}
            }
        }
        Ok(out)
    }
}

/// Runs schedules until `stop`: a tick every [`TICK`]; due deployments get
/// a `backup` operation (a catch-up one after a random delay), a locked
/// container is retried with backoff and reported after [`LOCKED_RETRIES`].
pub async fn run(
    planner: Planner,
    ops: crate::ops::Ops,
    config: crate::server::SharedConfig,
    env_of: std::sync::Arc<dyn Fn() -> crate::deploy::Env + Send + Sync>,
    stop: tokio_util::sync::CancellationToken,
    beat: crate::daemon::notify::Beat,
) {
    use rand::Rng;
    let mut tick = tokio::time::interval(TICK.min(crate::daemon::notify::beat_every()));
    let mut last = std::time::Instant::now() - TICK;
    let mut retries: std::collections::HashMap<String, (u32, i64)> = Default::default();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        beat.alive();
        if last.elapsed() < TICK {
            continue;
        }
        last = std::time::Instant::now();
        let cfg = crate::server::config_snapshot(&config);
        let now = crate::store::now_ms();
        let deployments = match planner.store.list_deployments() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("backup schedules: {e}");
                continue;
            }
        };
        let mut due: Vec<(String, bool)> =
            match planner.tick(&deployments, &cfg.backup.policy(), now) {
                Ok(d) => d
                    .into_iter()
                    .map(|Decision::Run { name, catch_up }| (name, catch_up))
                    .collect(),
                Err(e) => {
                    tracing::error!("backup schedules: {e}");
                    continue;
                }
            };
        // Locked containers whose retry is due.
        for (name, (_, at)) in &retries {
            if *at <= now && !due.iter().any(|(n, _)| n == name) {
                due.push((name.clone(), false));
            }
        }
        for (name, catch_up) in due {
            let Some(d) = deployments.iter().find(|d| d.name == name) else {
                retries.remove(&name);
                continue;
            };
            if catch_up && cfg.backup.catchup_jitter_secs > 0 {
                // Delayed, not slept: the loop keeps beating meanwhile.
                let ms = rand::thread_rng().gen_range(0..=cfg.backup.catchup_jitter_secs * 1000);
                let at = now + i64::try_from(ms).unwrap_or(0);
                tracing::info!(deployment = %name, delay_ms = ms, "a scheduled backup was missed; running it once, after a random delay");
                retries.insert(name.clone(), (0, at));
                continue;
            }
            let env = env_of();
            let policy = crate::backup::policy_of(&d.spec, &env.backup);
            let pre = env
                .catalog()
                .get(&d.app)
                .map(|a| a.manifest.data.pre_backup.clone())
                .unwrap_or_default();
            let op =
                crate::ops::kinds::backup::BackupOp::new(env.clone(), &d.name, d.vmid, policy, pre);
            let who = crate::api::Requestor {
                uid: 0,
                user: "1ldd-scheduler".into(),
                pid: i32::try_from(std::process::id()).unwrap_or(0),
            };
            match ops.submit(Box::new(op), who).await {
                Ok(op) => {
                    retries.remove(&name);
                    let mut r = planner.store.schedule_run(&name, "backup").ok().flatten();
                    if let Some(r) = r.as_mut() {
                        r.last_op = Some(op.id.clone());
                        r.last_status = Some("started".into());
                        let _ = planner.store.put_schedule_run(r);
                    }
                    tracing::info!(deployment = %name, op = %op.id, catch_up, "scheduled backup started");
                }
                Err(e) if matches!(e.kind, crate::error::ErrorKind::Locked { .. }) => {
                    let (n, _) = retries.get(&name).copied().unwrap_or((0, now));
                    if n + 1 >= LOCKED_RETRIES {
                        retries.remove(&name);
                        report(
                            &env,
                            &name,
                            &format!(
                                "the container stayed locked through {LOCKED_RETRIES} attempts: {}",
                                e.message
                            ),
                            now,
                        );
                    } else {
                        let wait = LOCKED_BACKOFF_MS.saturating_mul(1 << n);
                        retries.insert(name.clone(), (n + 1, now + wait));
                        tracing::warn!(deployment = %name, retry_in_ms = wait, "scheduled backup: {}", e.message);
                    }
                }
                Err(e) => {
                    retries.remove(&name);
                    report(&env, &name, &e.message, now);
                }
            }
        }
    }
}

fn report(env: &crate::deploy::Env, name: &str, why: &str, now: i64) {
    tracing::error!(deployment = %name, "scheduled backup not run: {why}");
    if let Some(sink) = &env.alerts {
        let alert = crate::notify::Alert {
            kind: crate::notify::AlertKind::BackupFailed,
            severity: crate::notify::Severity::Critical,
            deployment: Some(name.to_string()),
            app: None,
            title: format!("{name}: scheduled backup not run"),
            message: why.to_string(),
            dedupe_key: Some(format!("{name}/schedule/{now}")),
            time_ms: now,
            data: serde_json::json!({}),
        };
        let _ = sink.raise(&alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    fn rec(name: &str, schedule: Option<&str>) -> DeploymentRecord {
        let spec: crate::store::StoredSpec = serde_json::from_value(serde_json::json!({
            "resources": {"cores": 1, "memory": 512, "swap": 0, "disk": 2, "storage": "local-lvm",
                          "bridge": "vmbr0", "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true},
            "tags": ["1ld"], "settings": {},
            "backup": {"schedule": schedule},
        }))
        .unwrap();
        DeploymentRecord {
            name: name.into(),
            app: "netbox-agent".into(),
            app_version: "0.1.0".into(),
            vmid: 140,
            node: "pve".into(),
            intended_state: crate::api::IntendedState::Running,
            spec,
            config_hash: "x".into(),
            ip: None,
            health: crate::api::HealthSummary {
                status: crate::api::HealthStatus::Unknown,
                checked_at: None,
                detail: None,
            },
            drift: vec![],
            adopted: false,
            created_ms: 0,
            updated_ms: 0,
            last_backup_ms: None,
        }
    }

    #[test]
    fn a_bad_schedule_names_the_field_and_the_position() {
        let p = BackupPolicy {
            schedule: Some("mon..fry 02:30".into()),
            keep_last: Some(3),
            ..Default::default()
        };
        let e = p.problems("backup");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "backup.schedule");
        assert!(
            e[0].1.starts_with(
                "backup.schedule: calendar 'mon..fry 02:30': unknown weekday 'fry' at position 5"
            ),
            "{}",
            e[0].1
        );
        let ok = BackupPolicy {
            schedule: Some("sun 01:00".into()),
            keep_last: Some(3),
            ..Default::default()
        };
        assert!(ok.problems("backup").is_empty());
    }

    #[test]
    fn missed_runs_collapse_into_one_and_the_next_counts_from_now() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Paths::with(
            &dir.path().join("s"),
            &dir.path().join("x.sock"),
        ))
        .unwrap();
        let p = Planner::new(store.clone(), jiff::tz::TimeZone::UTC);
        let base = BackupPolicy::default();
        let ds = vec![rec("nb", Some("minutely")), rec("off", None)];
        // 2026-01-01T00:00:10Z: first sight plans 00:01:00, runs nothing.
        let t0 = 1_767_225_610_000;
        assert_eq!(p.tick(&ds, &base, t0).unwrap(), vec![]);
        let r = store.schedule_run("nb", "backup").unwrap().unwrap();
        assert_eq!(r.next_run_ms, Some(1_767_225_660_000));
        assert!(store.schedule_run("off", "backup").unwrap().is_none());
        // Due on time: one run, not a catch-up.
        assert_eq!(
            p.tick(&ds, &base, 1_767_225_661_000).unwrap(),
            vec![Decision::Run {
                name: "nb".into(),
                catch_up: false
            }]
        );
        // The daemon is down across two runs (00:02, 00:03): one catch-up
        // run at 00:03:30, then the next at 00:04:00 — no burst.
        let back = 1_767_225_810_000;
        assert_eq!(
            p.tick(&ds, &base, back).unwrap(),
            vec![Decision::Run {
                name: "nb".into(),
                catch_up: true
            }]
        );
        assert_eq!(p.tick(&ds, &base, back + 1_000).unwrap(), vec![]);
        assert_eq!(
            store
                .schedule_run("nb", "backup")
                .unwrap()
                .unwrap()
                .next_run_ms,
            Some(1_767_225_840_000)
        );
    }
}
