//! `deployment.upgrade`: a deployment to the app version this node ships,
//! transactionally.
//!
//! 1. Safety point: `pct snapshot <vmid> upgrade-1ld-<unix>` when the
//!    container's storage can snapshot, else a vzdump backup (the backup
//!    operation's own code, pre-backup hook included), else none (only when
//!    the manifest says `backup_first = false`).
//! 2. Stop the unit (the binary is replaced, not written over while it runs).
//! 3. Push the new version's directories and files (binary, re-rendered
//!    configuration, unit).
//! 4. `systemctl daemon-reload` + restart; 5. health gate.
//! 6. Record the new version; a safety snapshot is released (deleted) by
//!    the scheduler after `[upgrade] keep_safety_secs` of health.
//!
//! Any failure in 2–5 rolls back (when the manifest allows it): `pct
//! rollback --start` to the snapshot, or stop + `pct restore --force` of the
//! backup + start; then the health gate again. The operation fails either
//! way, saying what failed and where the deployment stands; an
//! `upgrade_failed` alert is raised.
//!
//! Compensation after a crash: when the payload says files had been changed
//! and the safety point is a snapshot, the container is rolled back to it.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{EventType, HealthSummary, SafetyPoint};
use crate::apps::manifest::{DirDef, HealthDef};
use crate::deploy::egress::Via;
use crate::deploy::spec::RenderedFile;
use crate::deploy::{install, net, probe, step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::PveError;
use crate::store::{now_ms, rfc3339, SafetySnapshot};

/// The kind's name.
pub const KIND: &str = "deployment.upgrade";

/// Everything an upgrade needs (built and checked by the handler).
#[derive(Debug, Clone)]
pub struct UpgradePlan {
    /// The deployment.
    pub name: String,
    /// Its container.
    pub vmid: u32,
    /// Its app.
    pub app: String,
    /// The version it runs.
    pub from_version: String,
    /// The version to reach.
    pub to_version: String,
    /// How it can be undone.
    pub safety: SafetyPoint,
    /// Roll back on failure.
    pub rollback: bool,
    /// The new version's directories.
    pub dirs: Vec<DirDef>,
    /// The new version's files, all of them.
    pub files: Vec<RenderedFile>,
    /// Their fingerprint.
    pub config_hash: String,
    /// The service user.
    pub user: String,
    /// The unit.
    pub unit: String,
    /// The health probe.
    pub health: HealthDef,
    /// The container's bridge, the only way its probes may take (empty:
    /// not recorded, unbound).
    pub bridge: String,
    /// The backup policy (a backup safety point).
    pub policy: crate::api::BackupPolicy,
    /// The app's pre-backup hook.
    pub pre_backup: Vec<String>,
    /// How long a safety snapshot is kept once healthy.
    pub keep_safety_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    name: String,
    vmid: u32,
    from: String,
    to: String,
    /// Being taken (set before `pct snapshot` runs).
    #[serde(default)]
    pending_snapshot: Option<String>,
    #[serde(default)]
    snapshot: Option<String>,
    #[serde(default)]
    backup: Option<String>,
    #[serde(default)]
    changed: bool,
}

/// An upgrade of one deployment.
pub struct UpgradeOp {
    env: Option<Env>,
    plan: Option<UpgradePlan>,
    payload: Payload,
}

impl std::fmt::Debug for UpgradeOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpgradeOp")
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// The steps of `plan`, for the dry run and the log.
pub fn steps(plan: &UpgradePlan) -> Vec<String> {
    let mut s = vec![match plan.safety {
        SafetyPoint::Snapshot => format!("pct snapshot {} upgrade-1ld-<time>", plan.vmid),
        SafetyPoint::Backup => format!("vzdump {} (safety backup)", plan.vmid),
        SafetyPoint::None => "no safety point (backup_first = false, no snapshots)".into(),
    }];
    s.push(format!("systemctl stop {}", plan.unit));
    s.push(format!(
        "push {} files of {} {} ({} directories)",
        plan.files.len(),
        plan.app,
        plan.to_version,
        plan.dirs.len()
    ));
    s.push(format!(
        "systemctl daemon-reload; systemctl restart {}",
        plan.unit
    ));
    s.push("health gate".into());
    if plan.rollback && plan.safety != SafetyPoint::None {
        s.push(match plan.safety {
            SafetyPoint::Snapshot => "on failure: pct rollback --start, health gate".into(),
            _ => "on failure: pct restore --force of the safety backup, start, health gate".into(),
        });
    }
    s
}

impl UpgradeOp {
    /// Runs `plan`.
    pub fn new(env: Env, plan: UpgradePlan) -> Self {
        Self {
            env: Some(env),
            payload: Payload {
                name: plan.name.clone(),
                vmid: plan.vmid,
                from: plan.from_version.clone(),
                to: plan.to_version.clone(),
                ..Payload::default()
            },
            plan: Some(plan),
        }
    }

    fn save(&self, ctx: &OpCtx, p: &Payload) {
        if let Ok(v) = serde_json::to_value(p) {
            ctx.set_payload(v);
        }
    }

    async fn work(&self, ctx: &OpCtx) -> Result<(), Error> {
        let (Some(env), Some(plan)) = (&self.env, &self.plan) else {
            return Err(Error::internal(
                "an operation rebuilt after a restart cannot run",
            ));
        };
        let pve = ctx.pve()?;
        let mut p = self.payload.clone();
        let n = 6;
        ctx.log(&format!(
            "{} {}: {} → {}",
            plan.name, plan.app, plan.from_version, plan.to_version
        ));
        ctx.step(1, n, "safety point");
        match plan.safety {
            SafetyPoint::Snapshot => {
                let snap = format!("upgrade-1ld-{}", now_ms() / 1000);
                p.pending_snapshot = Some(snap.clone());
                self.save(ctx, &p);
                pve.pct_snapshot(
                    plan.vmid,
                    &snap,
                    Some(&format!(
                        "1ld: before upgrading {} from {} to {}",
                        plan.app, plan.from_version, plan.to_version
                    )),
                )
                .await
                .map_err(|e| step_error("safety snapshot", e.into()))?;
                ctx.log(&format!("pct snapshot {} {snap}", plan.vmid));
                p.snapshot = Some(snap);
            }
            SafetyPoint::Backup => {
                let op = super::backup::BackupOp::new(
                    env.clone(),
                    &plan.name,
                    plan.vmid,
                    plan.policy.clone(),
                    plan.pre_backup.clone(),
                );
                let volid = op
                    .work(ctx)
                    .await
                    .map_err(|e| step_error("safety backup", e))?;
                ctx.log(&format!("safety backup {volid}"));
                p.backup = Some(volid);
            }
            SafetyPoint::None => ctx.log("no safety point: a failure cannot be rolled back"),
        }
        self.save(ctx, &p);
        ctx.checkpoint()?;
        ctx.set_cancellable(false);
        p.changed = true;
        self.save(ctx, &p);
        let changed = self.change(ctx, env, plan).await;
        let health = match changed {
            Ok(h) => h,
            Err(e) => return Err(self.fail(ctx, env, plan, &p, e).await),
        };
        ctx.step(6, n, "record");
        let now = now_ms();
        let mut rec = env
            .store
            .get_deployment(&plan.name)?
            .ok_or_else(|| Error::not_found(format!("no deployment called '{}'", plan.name)))?;
        rec.app_version = plan.to_version.clone();
        rec.config_hash = plan.config_hash.clone();
        rec.health = HealthSummary {
            status: health.status,
            checked_at: Some(rfc3339(now)),
            detail: Some(health.detail),
        };
        rec.updated_ms = now;
        env.store.update_deployment(&rec)?;
        if let Some(snap) = &p.snapshot {
            let due = now + i64::try_from(plan.keep_safety_secs.saturating_mul(1000)).unwrap_or(0);
            env.store.put_safety(&SafetySnapshot {
                deployment: plan.name.clone(),
                vmid: plan.vmid,
                snapshot: snap.clone(),
                from_version: plan.from_version.clone(),
                to_version: plan.to_version.clone(),
                created_ms: now,
                release_ms: due,
                op_id: Some(ctx.id()),
            })?;
            ctx.log(&format!(
                "safety snapshot {snap} is removed after {} s of health",
                plan.keep_safety_secs
            ));
        }
        let _ = env.store.supervision_user_action(
            &plan.name,
            crate::api::HealthState::Starting,
            "upgraded",
            now,
        );
        env.events.publish(
            EventType::Lifecycle,
            serde_json::json!({"action": "deployment_upgraded", "deployment": plan.name,
                               "from": plan.from_version, "to": plan.to_version, "operation": ctx.id()}),
        );
        ctx.log(&format!(
            "'{}' upgraded to {} {}",
            plan.name, plan.app, plan.to_version
        ));
        Ok(())
    }

    /// Steps 2–5; the gate's result.
    async fn change(
        &self,
        ctx: &OpCtx,
        env: &Env,
        plan: &UpgradePlan,
    ) -> Result<probe::ProbeResult, Error> {
        let pve = ctx.pve()?;
        let n = 6;
        ctx.step(2, n, "stop service");
        if let Err(e) = install::exec(pve, plan.vmid, &["systemctl", "stop", &plan.unit], &[]).await
        {
            ctx.log(&format!("systemctl stop {}: {e} (going on)", plan.unit));
        }
        ctx.step(3, n, "push the new version");
        install::ensure_user(pve, plan.vmid, &plan.user)
            .await
            .map_err(|e| step_error("push the new version", e.into()))?;
        let staging = install::Staging::new(&env.staging_dir, &ctx.id())
            .map_err(|e| step_error("push the new version", e.into()))?;
        let log = |l: &str| ctx.log(l);
        install::push_files(pve, plan.vmid, &plan.dirs, &plan.files, &staging, &log)
            .await
            .map_err(|e| step_error("push the new version", e.into()))?;
        drop(staging);
        ctx.step(4, n, "restart service");
        install::restart_unit(pve, plan.vmid, &plan.unit)
            .await
            .map_err(|e| step_error("restart service", e.into()))?;
        ctx.step(5, n, "health gate");
        self.gate(ctx, plan).await
    }

    async fn gate(&self, ctx: &OpCtx, plan: &UpgradePlan) -> Result<probe::ProbeResult, Error> {
        let pve = ctx.pve()?;
        let ip = pve
            .ct_interfaces(plan.vmid)
            .await
            .ok()
            .and_then(|i| net::ipv4_of(&i));
        let ip = match ip {
            Some(ip) => Some(ip),
            None => {
                let limit = std::time::Duration::from_secs(
                    self.env.as_ref().map_or(60, |e| e.apps.lease_timeout_secs),
                );
                super::deploy::poll_lease(ctx, pve, plan.vmid, limit).await?
            }
        };
        let via = Via::recorded(&plan.bridge);
        probe::gate(&plan.health, pve, plan.vmid, ip, &via, |l| ctx.log(l))
            .await
            .map_err(|r| {
                step_error(
                    "health gate",
                    Error::dependency_down(format!(
                        "not healthy within {}s: {:?}: {}",
                        plan.health.timeout_s, r.status, r.detail
                    )),
                )
            })
    }

    /// After a failed change: roll back when possible, alert, and the
    /// error that says where the deployment stands.
    async fn fail(
        &self,
        ctx: &OpCtx,
        env: &Env,
        plan: &UpgradePlan,
        p: &Payload,
        e: Error,
    ) -> Error {
        ctx.log(&format!("upgrade failed: {}", e.message));
        let what = format!(
            "upgrading '{}' from {} to {} failed: {}",
            plan.name, plan.from_version, plan.to_version, e.message
        );
        let outcome = if !plan.rollback {
            Err(format!(
                "the app's manifest says rollback_on_failure = false: CT {} is left as the failed upgrade left it",
                plan.vmid
            ))
        } else {
            self.roll_back(ctx, plan, p).await
        };
        let (message, rolled_back) = match &outcome {
            Ok((how, _)) => (
                format!(
                    "{what}; rolled back ({how}), healthy again on {}",
                    plan.from_version
                ),
                true,
            ),
            Err(why) => (format!("{what}; {why}"), false),
        };
        ctx.log(&message);
        if let Ok((_, status)) = &outcome {
            // Back at the safety point: the operation's compensation must
            // not roll back a second time (the snapshot is gone by now).
            let mut back = p.clone();
            back.changed = false;
            self.save(ctx, &back);
            if let Ok(Some(mut rec)) = env.store.get_deployment(&plan.name) {
                let now = now_ms();
                rec.health = HealthSummary {
                    status: *status,
                    checked_at: Some(rfc3339(now)),
                    detail: Some("rolled back after a failed upgrade".into()),
                };
                rec.updated_ms = now;
                let _ = env.store.update_deployment(&rec);
            }
            let _ = env.store.supervision_user_action(
                &plan.name,
                crate::api::HealthState::Starting,
                "upgrade rolled back",
                now_ms(),
            );
        }
        env.events.publish(
            EventType::Lifecycle,
            serde_json::json!({"action": if rolled_back { "upgrade_rolled_back" } else { "upgrade_failed" },
                               "deployment": plan.name, "from": plan.from_version, "to": plan.to_version,
                               "detail": message, "operation": ctx.id()}),
        );
        if let Some(sink) = &env.alerts {
            let now = now_ms();
            let _ = sink.raise(&crate::notify::Alert {
                kind: crate::notify::AlertKind::UpgradeFailed,
                severity: if rolled_back {
                    crate::notify::Severity::Warning
                } else {
                    crate::notify::Severity::Critical
                },
                deployment: Some(plan.name.clone()),
                app: Some(plan.app.clone()),
                title: format!(
                    "{}: upgrade to {} failed{}",
                    plan.name,
                    plan.to_version,
                    if rolled_back { ", rolled back" } else { "" }
                ),
                message: message.clone(),
                dedupe_key: Some(format!("{}/upgrade/{}", plan.name, ctx.id())),
                time_ms: now,
                data: serde_json::json!({"operation": ctx.id(), "rolled_back": rolled_back}),
            });
        }
        Error::new(e.kind, message)
    }

    /// Back to the safety point, then the health gate; how and the health,
    /// or why not.
    async fn roll_back(
        &self,
        ctx: &OpCtx,
        plan: &UpgradePlan,
        p: &Payload,
    ) -> Result<(String, crate::api::HealthStatus), String> {
        let pve = ctx.pve().map_err(|e| e.message)?;
        let vmid = plan.vmid;
        let how = if let Some(snap) = &p.snapshot {
            ctx.log(&format!("pct rollback {vmid} {snap} --start 1"));
            pve.pct_rollback(vmid, snap, true).await.map_err(|e| {
                format!(
                    "the rollback failed too ({e}): run `pct rollback {vmid} {snap} --start 1` on the node, then check `1ldctl health {}`",
                    plan.name
                )
            })?;
            format!("pct rollback to snapshot {snap}")
        } else if let Some(volid) = &p.backup {
            let retry = format!(
                "restore it by hand: `1ldctl restore {volid} --in-place` (or `pct restore {vmid} {volid} --force 1` on the node)"
            );
            ctx.log(&format!("pct restore {vmid} {volid} --force 1"));
            match pve.pct_stop(vmid).await {
                Ok(()) | Err(PveError::NotRunning { .. }) => {}
                Err(e) => {
                    return Err(format!(
                        "the rollback could not stop CT {vmid} ({e}); {retry}"
                    ))
                }
            }
            let mut spec = crate::pve::pct::RestoreSpec::new(vmid, volid.clone());
            spec.force = true;
            if let Some(env) = &self.env {
                if let Ok(Some(rec)) = env.store.get_deployment(&plan.name) {
                    spec.storage = Some(rec.spec.resources.storage);
                }
            }
            pve.pct_restore(&spec)
                .await
                .map_err(|e| format!("the rollback's restore failed ({e}); {retry}"))?;
            pve.pct_start(vmid)
                .await
                .map_err(|e| format!("the restored CT {vmid} does not start ({e})"))?;
            format!("in-place restore of {volid}")
        } else {
            return Err(format!(
                "there is no safety point: CT {vmid} is left as the failed upgrade left it; restore a backup (1ldctl backups {})",
                plan.name
            ));
        };
        match self.gate(ctx, plan).await {
            Ok(r) => {
                if let Some(snap) = &p.snapshot {
                    drop_snapshot(ctx, vmid, snap).await;
                }
                Ok((how, r.status))
            }
            Err(e) => Err(format!(
                "rolled back ({how}) but the service is not healthy: {}",
                e.message
            )),
        }
    }
}

impl OpTask for UpgradeOp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(format!("ct/{}", self.payload.vmid))
    }

    fn heavy(&self) -> bool {
        true
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(&self.payload).unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.work(ctx))
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let p: Payload = serde_json::from_value(ctx.payload()).unwrap_or_default();
            // A `pct snapshot`/`rollback` or vzdump killed with the daemon
            // leaves its lock.
            super::clear_lock(ctx, p.vmid, &["snapshot", "rollback", "backup"]).await?;
            if !p.changed {
                if let (Some(snap), None) = (&p.pending_snapshot, &p.snapshot) {
                    // Killed while the snapshot was being taken.
                    drop_snapshot(ctx, p.vmid, snap).await;
                }
                ctx.log("nothing in the container was changed");
                return Ok(());
            }
            match (&p.snapshot, &p.backup) {
                (Some(snap), _) => {
                    let pve = ctx.pve()?;
                    pve.pct_rollback(p.vmid, snap, true).await?;
                    ctx.log(&format!(
                        "interrupted upgrade of '{}': CT {} rolled back to {snap} ({})",
                        p.name, p.vmid, p.from
                    ));
                    drop_snapshot(ctx, p.vmid, snap).await;
                }
                (None, Some(volid)) => ctx.log(&format!(
                    "interrupted upgrade of '{}': CT {} may be half upgraded; restore {volid} in place (1ldctl restore {volid} --in-place)",
                    p.name, p.vmid
                )),
                (None, None) => ctx.log(&format!(
                    "interrupted upgrade of '{}' without a safety point: CT {} may be half upgraded",
                    p.name, p.vmid
                )),
            }
            Ok(())
        })
    }
}

/// Rebuilds after a crash: compensation from the payload.
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(UpgradeOp {
        env: None,
        plan: None,
        payload: p,
    }))
}

/// Deletes `snap` of CT `vmid` (`--force`: also a half-taken one); a
/// snapshot already gone is fine, anything else is logged.
async fn drop_snapshot(ctx: &OpCtx, vmid: u32, snap: &str) {
    let Ok(pve) = ctx.pve() else { return };
    match pve.pct_delsnapshot(vmid, snap, true).await {
        Ok(()) => ctx.log(&format!("safety snapshot {snap} deleted")),
        Err(e) if e.to_string().contains("does not exist") => {}
        Err(e) => ctx.log(&format!(
            "could not delete snapshot {snap} ({e}); remove it with `pct delsnapshot {vmid} {snap}`"
        )),
    }
}

/// The kind that removes a safety snapshot.
pub const RELEASE: &str = "upgrade.release";

/// Deletes an upgrade's safety snapshot (submitted by the scheduler once the
/// deployment has been healthy for `[upgrade] keep_safety_secs`).
#[derive(Debug)]
pub struct ReleaseOp {
    env: Option<Env>,
    name: String,
    vmid: u32,
    snapshot: String,
}

impl ReleaseOp {
    /// Releases `snapshot` of deployment `name` (CT `vmid`).
    pub fn new(env: Env, name: &str, vmid: u32, snapshot: &str) -> Self {
        Self {
            env: Some(env),
            name: name.into(),
            vmid,
            snapshot: snapshot.into(),
        }
    }
}

impl OpTask for ReleaseOp {
    fn kind(&self) -> &'static str {
        RELEASE
    }

    fn heavy(&self) -> bool {
        false
    }

    fn target(&self) -> Option<String> {
        Some(format!("ct/{}", self.vmid))
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "vmid": self.vmid, "snapshot": self.snapshot})
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            ctx.step(1, 1, "delete the safety snapshot");
            let pve = ctx.pve()?;
            match pve.pct_delsnapshot(self.vmid, &self.snapshot, false).await {
                Ok(()) => ctx.log(&format!(
                    "pct delsnapshot {} {}: the upgrade is final",
                    self.vmid, self.snapshot
                )),
                Err(PveError::NotFound { .. }) => {
                    ctx.log(&format!("CT {} is gone", self.vmid));
                }
                Err(e) if e.to_string().contains("does not exist") => {
                    ctx.log(&format!("snapshot {} was already removed", self.snapshot));
                }
                Err(e) => return Err(step_error("delete the safety snapshot", e.into())),
            }
            if let Some(env) = &self.env {
                env.store.forget_safety(&self.name)?;
            }
            Ok(())
        })
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            super::clear_lock(ctx, self.vmid, &["snapshot-delete"]).await?;
            ctx.log("the snapshot is deleted on the next attempt");
            Ok(())
        })
    }
}

/// Rebuilds a release after a crash (nothing to undo; the scheduler retries).
pub fn rebuild_release(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    Some(Box::new(ReleaseOp {
        env: None,
        name: payload["name"].as_str()?.to_string(),
        vmid: u32::try_from(payload["vmid"].as_u64()?).ok()?,
        snapshot: payload["snapshot"].as_str()?.to_string(),
    }))
}
