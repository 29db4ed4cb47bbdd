//! Scheduled backups and verifications: each deployment's
//! `backup.schedule` (Proxmox's calendar-event syntax) fires a `backup`
//! operation, its `backup.verify_schedule` a `backup.verify` of its newest
//! backup. Each job has its own persisted row and follows the same rules.
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

/// A scheduled job of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Job {
    /// `backup.schedule`: back up.
    Backup,
    /// `backup.verify_schedule`: verify the newest backup.
    Verify,
}

impl Job {
    /// Every job.
    pub const ALL: [Job; 2] = [Job::Backup, Job::Verify];

    /// Its `schedule_runs.kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Job::Backup => "backup",
            Job::Verify => "verify",
        }
    }

    fn expr(self, p: &BackupPolicy) -> Option<&str> {
        match self {
            Job::Backup => p.schedule.as_deref(),
            Job::Verify => p.verify_schedule.as_deref(),
        }
        .filter(|s| !s.trim().is_empty())
    }
}

/// What a tick decided for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run the job now (`catch_up`: the run was missed by more than a tick).
    Run {
        /// The deployment.
        name: String,
        /// What to run.
        job: Job,
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
            for job in Job::ALL {
                if let Some(catch_up) = self.tick_one(&d.name, job, &policy, now_ms)? {
                    out.push(Decision::Run {
                        name: d.name.clone(),
                        job,
                        catch_up,
                    });
                }
            }
        }
        Ok(out)
    }

    /// One job of one deployment: `Some(catch_up)` when it is due now.
    fn tick_one(
        &self,
        name: &str,
        job: Job,
        policy: &BackupPolicy,
        now_ms: i64,
    ) -> Result<Option<bool>, Error> {
        let row = self.store.schedule_run(name, job.kind())?;
        let Some(expr) = job.expr(policy).and_then(|s| CalendarEvent::parse(s).ok()) else {
            if row.is_some() {
                self.store.forget_schedule(name, job.kind())?;
            }
            return Ok(None);
        };
        match row.as_ref().and_then(|r| r.next_run_ms) {
            None => {
                self.store.put_schedule_run(&ScheduleRun {
                    deployment: name.to_string(),
                    kind: job.kind().into(),
                    last_run_ms: row.as_ref().and_then(|r| r.last_run_ms),
                    last_status: row.as_ref().and_then(|r| r.last_status.clone()),
                    last_op: row.as_ref().and_then(|r| r.last_op.clone()),
                    next_run_ms: next_run(&expr, now_ms, &self.tz),
                })?;
                Ok(None)
            }
            Some(at) if at <= now_ms => {
                let catch_up =
                    now_ms - at > i64::try_from(TICK.as_millis()).unwrap_or(i64::MAX) * 2;
                // The next run counts from now: missed runs are one run.
                self.store.put_schedule_run(&ScheduleRun {
                    deployment: name.to_string(),
                    kind: job.kind().into(),
                    last_run_ms: Some(now_ms),
                    last_status: Some("started".into()),
                    last_op: None,
                    next_run_ms: next_run(&expr, now_ms, &self.tz),
                })?;
                Ok(Some(catch_up))
            }
            Some(_) => Ok(None),
        }
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
    // Woken every 5 s (or faster, for the heartbeat), so schedules are
    // looked at every TICK, not every next multiple of the beat.
    let mut tick =
        tokio::time::interval(Duration::from_secs(5).min(crate::daemon::notify::beat_every()));
    let mut last = std::time::Instant::now() - TICK;
    // (deployment, job) → (attempts so far, when to try next).
    let mut retries: std::collections::HashMap<(String, Job), (u32, i64)> = Default::default();
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
        let mut due: Vec<((String, Job), bool)> =
            match planner.tick(&deployments, &cfg.backup.policy(), now) {
                Ok(d) => d
                    .into_iter()
                    .map(
                        |Decision::Run {
                             name,
                             job,
                             catch_up,
                         }| ((name, job), catch_up),
                    )
                    .collect(),
                Err(e) => {
                    tracing::error!("backup schedules: {e}");
                    continue;
                }
            };
        release_safety_points(&planner.store, &ops, &deployments, &env_of, now).await;
        // Delayed catch-ups and locked containers whose retry is due.
        for (key, (_, at)) in &retries {
            if *at <= now && !due.iter().any(|(k, _)| k == key) {
                due.push((key.clone(), false));
            }
        }
        for (key, catch_up) in due {
            let (name, job) = (&key.0, key.1);
            let Some(d) = deployments.iter().find(|d| &d.name == name) else {
                retries.remove(&key);
                continue;
            };
            if catch_up && cfg.backup.catchup_jitter_secs > 0 {
                // Delayed, not slept: the loop keeps beating meanwhile.
                let ms = rand::thread_rng().gen_range(0..=cfg.backup.catchup_jitter_secs * 1000);
                let at = now + i64::try_from(ms).unwrap_or(0);
                tracing::info!(deployment = %name, job = job.kind(), delay_ms = ms, "a scheduled run was missed; running it once, after a random delay");
                retries.insert(key.clone(), (0, at));
                continue;
            }
            let env = env_of();
            let op = match job_op(&env, &cfg, d, job) {
                Ok(op) => op,
                Err(why) => {
                    retries.remove(&key);
                    set_status(&planner.store, name, job, &why, None);
                    report(&env, name, job, &why, now);
                    continue;
                }
            };
            let who = scheduler();
            match ops.submit(op, who).await {
                Ok(op) => {
                    retries.remove(&key);
                    set_status(&planner.store, name, job, "started", Some(&op.id));
                    tracing::info!(deployment = %name, job = job.kind(), op = %op.id, catch_up, "scheduled run started");
                }
                Err(e) if matches!(e.kind, crate::error::ErrorKind::Locked { .. }) => {
                    let (n, _) = retries.get(&key).copied().unwrap_or((0, now));
                    if n + 1 >= LOCKED_RETRIES {
                        retries.remove(&key);
                        report(
                            &env,
                            name,
                            job,
                            &format!(
                                "the container stayed locked through {LOCKED_RETRIES} attempts: {}",
                                e.message
                            ),
                            now,
                        );
                    } else {
                        let wait = LOCKED_BACKOFF_MS.saturating_mul(1 << n);
                        retries.insert(key.clone(), (n + 1, now + wait));
                        tracing::warn!(deployment = %name, job = job.kind(), retry_in_ms = wait, "scheduled run: {}", e.message);
                    }
                }
                Err(e) => {
                    retries.remove(&key);
                    report(&env, name, job, &e.message, now);
                }
            }
        }
    }
}

/// Upgrade safety snapshots whose keep period is over: released (a
/// `upgrade.release` operation) when the deployment is healthy now, looked
/// at again next tick otherwise.
async fn release_safety_points(
    store: &Store,
    ops: &crate::ops::Ops,
    deployments: &[DeploymentRecord],
    env_of: &std::sync::Arc<dyn Fn() -> crate::deploy::Env + Send + Sync>,
    now: i64,
) {
    use crate::ops::kinds::upgrade::ReleaseOp;
    let due = match store.safety_due(now) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!("upgrade safety points: {e}");
            return;
        }
    };
    for mut s in due {
        let Some(d) = deployments.iter().find(|d| d.name == s.deployment) else {
            let _ = store.forget_safety(&s.deployment);
            continue;
        };
        if !matches!(
            d.health.status,
            crate::api::HealthStatus::Healthy | crate::api::HealthStatus::Degraded
        ) {
            continue;
        }
        let who = scheduler();
        let op = ReleaseOp::new(env_of(), &d.name, s.vmid, &s.snapshot);
        match ops.submit(Box::new(op), who).await {
            Ok(op) => {
                tracing::info!(deployment = %d.name, snapshot = %s.snapshot, op = %op.id, "releasing the upgrade's safety snapshot");
                // Not again while it runs; the operation forgets the row.
                s.release_ms = now + 60_000;
                s.op_id = Some(op.id.clone());
                let _ = store.put_safety(&s);
            }
            Err(e) => {
                tracing::debug!(deployment = %d.name, "safety snapshot release later: {}", e.message)
            }
        }
    }
}

/// The operation a due `job` of `d` runs, or why there is none (a verify
/// with no backup on record).
fn job_op(
    env: &crate::deploy::Env,
    cfg: &crate::config::Config,
    d: &DeploymentRecord,
    job: Job,
) -> Result<Box<dyn crate::ops::OpTask>, String> {
    match job {
        Job::Backup => {
            let policy = crate::backup::policy_of(&d.spec, &env.backup);
            let pre = env
                .catalog()
                .get(&d.app)
                .map(|a| a.manifest.data.pre_backup.clone())
                .unwrap_or_default();
            Ok(Box::new(crate::ops::kinds::backup::BackupOp::new(
                env.clone(),
                &d.name,
                d.vmid,
                policy,
                pre,
            )))
        }
        Job::Verify => {
            let newest = env
                .store
                .backups(Some(&d.name))
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|b| b.missing_ms.is_none())
                .max_by_key(|b| b.time_ms)
                .ok_or_else(|| {
                    "no backup of it is on record to verify (back it up first: 1ldctl backup NAME)"
                        .to_string()
                })?;
            let plan = crate::backup::verify_plan(env, cfg.backup.verify_vmid_range, &newest)
                .map_err(|e| e.message)?;
            Ok(Box::new(crate::ops::kinds::verify::VerifyOp::new(
                env.clone(),
                plan,
            )))
        }
    }
}

fn set_status(store: &Store, name: &str, job: Job, status: &str, op: Option<&str>) {
    if let Ok(Some(mut r)) = store.schedule_run(name, job.kind()) {
        r.last_op = op.map(str::to_string);
        r.last_status = Some(status.chars().take(300).collect());
        let _ = store.put_schedule_run(&r);
    }
}

/// Who the scheduler's operations are submitted as.
fn scheduler() -> crate::api::Requestor {
    crate::api::Requestor {
        uid: 0,
        user: "1ldd-scheduler".into(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    }
}

fn report(env: &crate::deploy::Env, name: &str, job: Job, why: &str, now: i64) {
    tracing::error!(deployment = %name, job = job.kind(), "scheduled run not run: {why}");
    if let Some(sink) = &env.alerts {
        let alert = crate::notify::Alert {
            kind: crate::notify::AlertKind::BackupFailed,
            severity: crate::notify::Severity::Critical,
            deployment: Some(name.to_string()),
            app: None,
            title: format!("{name}: scheduled {} not run", job.kind()),
            message: why.to_string(),
            dedupe_key: Some(format!("{name}/schedule/{}/{now}", job.kind())),
            time_ms: now,
            data: serde_json::json!({"job": job.kind()}),
        };
        let _ = sink.raise(&alert);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Paths;

    fn rec(name: &str, schedule: Option<&str>) -> DeploymentRecord {
        rec_with(name, schedule, None)
    }

    fn rec_with(name: &str, schedule: Option<&str>, verify: Option<&str>) -> DeploymentRecord {
        let spec: crate::store::StoredSpec = serde_json::from_value(serde_json::json!({
            "resources": {"cores": 1, "memory": 512, "swap": 0, "disk": 2, "storage": "local-lvm",
                          "bridge": "vmbr0", "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true},
            "tags": ["1ld"], "settings": {},
            "backup": {"schedule": schedule, "verify_schedule": verify},
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
                job: Job::Backup,
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
                job: Job::Backup,
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

    #[test]
    fn backup_and_verify_are_planned_independently() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&Paths::with(
            &dir.path().join("s"),
            &dir.path().join("x.sock"),
        ))
        .unwrap();
        let p = Planner::new(store.clone(), jiff::tz::TimeZone::UTC);
        let base = BackupPolicy::default();
        let ds = vec![rec_with("nb", Some("hourly"), Some("*:0/10"))];
        // 2026-01-01T00:00:10Z
        let t0 = 1_767_225_610_000;
        assert_eq!(p.tick(&ds, &base, t0).unwrap(), vec![]);
        let v = store.schedule_run("nb", "verify").unwrap().unwrap();
        assert_eq!(v.next_run_ms, Some(t0 - 10_000 + 600_000));
        let b = store.schedule_run("nb", "backup").unwrap().unwrap();
        assert_eq!(b.next_run_ms, Some(t0 - 10_000 + 3_600_000));
        // 00:10:01: only the verification is due.
        assert_eq!(
            p.tick(&ds, &base, t0 + 591_000).unwrap(),
            vec![Decision::Run {
                name: "nb".into(),
                job: Job::Verify,
                catch_up: false
            }]
        );
        // Clearing the verify schedule forgets its row, keeps the backup's.
        let ds = vec![rec_with("nb", Some("hourly"), Some(""))];
        assert_eq!(p.tick(&ds, &base, t0 + 600_000).unwrap(), vec![]);
        assert!(store.schedule_run("nb", "verify").unwrap().is_none());
        assert!(store.schedule_run("nb", "backup").unwrap().is_some());
    }
}
