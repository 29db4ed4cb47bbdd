//! `backup.restore`: a backup restored as a new deployment, or in place.
//!
//! - **new**: a vmid in the app's range is reserved (persisted before the
//!   host is touched) → `pct restore <vmid> <volid> --storage S --unique 1`
//!   (fresh MACs, so it can run beside the original) → hostname set to the
//!   new name → start → IPv4 lease → health gate → recorded as a new
//!   deployment from the spec the archive carries (`/etc/1ld/deployment.json`,
//!   else the store's record of the backup). Compensation destroys the new
//!   container only when the payload says this operation restored into a
//!   vmid it had reserved and the container's hostname is the new name.
//! - **in place** (lock `ct/<vmid>`): stop → `pct restore --force 1` →
//!   start → lease → health gate; the deployment keeps its name and spec
//!   (the supervisor starts over). A failure leaves the container as
//!   Proxmox left it and the error says what to do.
//!
//! Secret values are not in backups' records: a new deployment gets the
//! original deployment's secrets when it still exists; otherwise the
//! restored container keeps working with its own files, and a later
//! `apply` must be given the secrets again.

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{EventType, HealthSummary, IntendedState};
use crate::deploy::egress::Via;
use crate::deploy::{probe, step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::pct::RestoreSpec;
use crate::pve::PveError;
use crate::store::{now_ms, rfc3339, DeploymentRecord, StoredSpec};

/// The kind's name.
pub const KIND: &str = "backup.restore";

/// Where the restore goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// A new deployment of this name.
    New {
        /// Its name.
        name: String,
    },
    /// Over the deployment's own container.
    InPlace {
        /// The deployment.
        name: String,
        /// Its container.
        vmid: u32,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    volid: String,
    name: String,
    #[serde(default)]
    in_place: bool,
    /// The vmid reserved for a new deployment, once reserved.
    #[serde(default)]
    vmid: Option<u32>,
    /// `pct restore` into `vmid` was started.
    #[serde(default)]
    restoring: bool,
}

/// What the restore starts from (validated by the handler).
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The archive.
    pub volid: String,
    /// The backup's deployment as the store knows it, if it still exists
    /// (the spec the archive carries is preferred).
    pub base: Option<DeploymentRecord>,
    /// The app (recorded with the backup).
    pub app: String,
    /// Storage for the root disk (content `rootdir`).
    pub storage: String,
    /// The app's vmid range.
    pub vmid_range: (u32, u32),
    /// The health probe.
    pub health: crate::apps::manifest::HealthDef,
    /// Where.
    pub target: Target,
}

/// A restore of a backup.
pub struct RestoreOp {
    env: Option<Env>,
    plan: Option<RestorePlan>,
    payload: Payload,
}

impl std::fmt::Debug for RestoreOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOp")
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl RestoreOp {
    /// The restore `plan` describes.
    pub fn new(env: Env, plan: RestorePlan) -> Self {
        let (name, in_place, vmid) = match &plan.target {
            Target::New { name } => (name.clone(), false, None),
            Target::InPlace { name, vmid } => (name.clone(), true, Some(*vmid)),
        };
        Self {
            env: Some(env),
            payload: Payload {
                volid: plan.volid.clone(),
                name,
                in_place,
                vmid,
                restoring: false,
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
        let vmid = match &plan.target {
            Target::InPlace { vmid, .. } => {
                ctx.step(1, n, "stop container");
                match pve.pct_shutdown(*vmid, Some(60), true).await {
                    Ok(()) => ctx.log(&format!("CT {vmid} stopped")),
                    Err(PveError::NotRunning { .. }) => ctx.log(&format!("CT {vmid} was stopped")),
                    Err(e) => return Err(step_error("stop container", e.into())),
                }
                *vmid
            }
            Target::New { name } => {
                ctx.step(1, n, "reserve vmid");
                let v = super::reserve_vmid(ctx, &env.store, plan.vmid_range, "the app's range")
                    .await?;
                p.vmid = Some(v);
                self.save(ctx, &p);
                ctx.log(&format!("vmid {v} reserved for '{name}'"));
                v
            }
        };
        ctx.checkpoint()?;
        ctx.step(2, n, "pct restore");
        let mut spec = RestoreSpec::new(vmid, plan.volid.clone());
        spec.storage = Some(plan.storage.clone());
        spec.force = p.in_place;
        spec.unique = !p.in_place;
        if !p.in_place {
            // Named at restore, not after: a restore killed right after
            // `pct restore` is still recognisable as this one's.
            spec.overrides.hostname = Some(p.name.clone());
        }
        if let Ok(argv) = spec.to_argv(pve.major()) {
            ctx.log(&argv.join(" "));
        }
        p.restoring = true;
        self.save(ctx, &p);
        ctx.set_cancellable(false);
        pve.pct_restore(&spec).await.map_err(|e| {
            let e = step_error("pct restore", e.into());
            if p.in_place {
                Error::new(
                    e.kind,
                    format!(
                        "{}; CT {vmid} is as `pct restore` left it: check `pct config {vmid}`, then restore again (1ldctl restore --in-place) or restore as a new deployment",
                        e.message
                    ),
                )
            } else {
                e
            }
        })?;
        let name = p.name.clone();
        ctx.step(3, n, "start container");
        pve.pct_start(vmid)
            .await
            .map_err(|e| step_error("start container", e.into()))?;
        ctx.step(4, n, "IPv4 lease");
        let limit = Duration::from_secs(env.apps.lease_timeout_secs);
        let ip = super::deploy::poll_lease(ctx, pve, vmid, limit)
            .await?
            .ok_or_else(|| {
                Error::dependency_down(format!(
                    "CT {vmid} got no IPv4 lease within {}s",
                    limit.as_secs()
                ))
            })?;
        ctx.step(5, n, "health gate");
        let via = Via::recorded(&restored_bridge(ctx, pve, vmid, plan).await);
        let health = probe::gate(&plan.health, pve, vmid, Some(ip), &via, |l| ctx.log(l))
            .await
            .map_err(|r| {
                step_error(
                    "health gate",
                    Error::dependency_down(format!(
                        "the restored service is not healthy: {:?}: {}",
                        r.status, r.detail
                    )),
                )
            })?;
        ctx.step(6, n, "record");
        let now = now_ms();
        if p.in_place {
            if let Some(mut rec) = env.store.get_deployment(&name)? {
                rec.ip = Some(ip.to_string());
                rec.intended_state = IntendedState::Running;
                rec.health = HealthSummary {
                    status: health.status,
                    checked_at: Some(rfc3339(now)),
                    detail: Some(health.detail.clone()),
                };
                rec.updated_ms = now;
                env.store.update_deployment(&rec)?;
            }
            env.store.supervision_user_action(
                &name,
                crate::api::HealthState::Starting,
                "restored from a backup",
                now,
            )?;
        } else {
            let doc = read_spec(pve, vmid).await;
            let (spec, app_version, config_hash, node, from) = match (&doc, &plan.base) {
                (Some(d), base) => (
                    d.spec.clone(),
                    d.app_version.clone(),
                    d.config_hash.clone(),
                    base.as_ref().map_or_else(|| pve.node().to_string(), |b| b.node.clone()),
                    "the archive",
                ),
                (None, Some(b)) => (
                    b.spec.clone(),
                    b.app_version.clone(),
                    b.config_hash.clone(),
                    b.node.clone(),
                    "the original deployment",
                ),
                (None, None) => {
                    return Err(Error::invalid_state(format!(
                        "the archive carries no deployment spec ({} is missing: the container was stopped during the backup) and its deployment no longer exists; record the restored CT {vmid} with `1ldctl adopt {vmid} --app {} --name {name}`",
                        crate::backup::SPEC_IN_CONTAINER,
                        plan.app
                    )))
                }
            };
            ctx.log(&format!("deployment spec taken from {from}"));
            let rec = DeploymentRecord {
                name: name.clone(),
                app: plan.app.clone(),
                app_version,
                vmid,
                node,
                intended_state: IntendedState::Running,
                spec,
                config_hash,
                ip: Some(ip.to_string()),
                health: HealthSummary {
                    status: health.status,
                    checked_at: Some(rfc3339(now)),
                    detail: Some(health.detail.clone()),
                },
                drift: vec![],
                adopted: false,
                created_ms: now,
                updated_ms: now,
                last_backup_ms: None,
            };
            env.store.insert_deployment(&rec)?;
            // The original's secrets, when it still exists.
            if let Some(base) = &plan.base {
                for k in &rec.spec.secret_keys {
                    if let Some(v) = env.secrets.get(&base.name, k)? {
                        env.secrets.put(&name, k, &v)?;
                    }
                }
            }
            env.store.release_vmids(&ctx.id())?;
        }
        ctx.log(&format!(
            "'{name}' restored from {} into CT {vmid} at {ip}: {:?}",
            plan.volid, health.status
        ));
        env.events.publish(
            EventType::Backup,
            serde_json::json!({"action": "backup_restored", "volid": plan.volid, "deployment": name,
                               "vmid": vmid, "in_place": p.in_place, "operation": ctx.id()}),
        );
        Ok(())
    }

    async fn undo(&self, ctx: &OpCtx) -> Result<(), Error> {
        let p: Payload = serde_json::from_value(ctx.payload()).unwrap_or_default();
        if p.in_place {
            ctx.log("in place: the container is left as Proxmox left it (see the error)");
            return Ok(());
        }
        let Some(vmid) = p.vmid else {
            ctx.log("no vmid was reserved; nothing to undo");
            return Ok(());
        };
        let pve = ctx.pve()?;
        if p.restoring {
            match pve.pct_config(vmid, false).await {
                Ok(cfg)
                    if cfg.hostname.as_deref() == Some(p.name.as_str())
                        || cfg.lock.as_deref() == Some("create") =>
                {
                    let _ = pve.pct_stop(vmid).await;
                    let _ = pve.pct_unlock(vmid).await;
                    pve.pct_destroy(vmid, crate::pve::pct::DestroyOptions::FULL)
                        .await?;
                    ctx.log(&format!("destroyed the half-restored CT {vmid}"));
                }
                Ok(_) => ctx.log(&format!("CT {vmid} is not this restore's; left alone")),
                Err(PveError::NotFound { .. }) => ctx.log(&format!("CT {vmid} does not exist")),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(env) = &self.env {
            env.store.release_vmids(&ctx.id())?;
        }
        Ok(())
    }
}

impl OpTask for RestoreOp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(match (&self.payload.in_place, self.payload.vmid) {
            (true, Some(v)) => format!("ct/{v}"),
            _ => format!("deployment/{}", self.payload.name),
        })
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
        Box::pin(self.undo(ctx))
    }
}

/// The bridge the restored container's `net0` is on (the archive's config),
/// else the recorded deployment's; empty when neither says.
async fn restored_bridge(
    ctx: &OpCtx,
    pve: &crate::pve::Pve,
    vmid: u32,
    plan: &RestorePlan,
) -> String {
    let from_config = match pve.pct_config(vmid, false).await {
        Ok(cfg) => cfg.net.get(&0).and_then(|n| n.bridge.clone()),
        Err(e) => {
            ctx.log(&format!(
                "cannot read CT {vmid}'s config ({e}); probing over the recorded bridge"
            ));
            None
        }
    };
    from_config
        .or_else(|| plan.base.as_ref().map(|b| b.spec.resources.bridge.clone()))
        .unwrap_or_default()
}

/// The spec document a backup wrote into the container, if it is there.
async fn read_spec(pve: &crate::pve::Pve, vmid: u32) -> Option<SpecDoc> {
    let out = pve
        .pct_exec(vmid, &["cat", crate::backup::SPEC_IN_CONTAINER], None, None)
        .await
        .ok()?;
    if out.code != Some(0) {
        return None;
    }
    let d: SpecDoc = serde_json::from_slice(&out.stdout).ok()?;
    (d.format == "1ld-deployment/1").then_some(d)
}

/// `/etc/1ld/deployment.json` (see [`crate::backup::spec_document`]).
#[derive(Debug, Deserialize)]
struct SpecDoc {
    format: String,
    app_version: String,
    config_hash: String,
    spec: StoredSpec,
}

/// Rebuilds after a crash: compensation from the payload.
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(RestoreOp {
        env: None,
        plan: None,
        payload: p,
    }))
}
