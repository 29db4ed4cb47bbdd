//! `remediate.*`: the supervisor's repairs, each an operation with its log
//! (`remediate.restart_service`, `.reboot`, `.start`, `.restore_backup`).
//! Lock key: `ct/<vmid>`, so a repair never runs beside a user's operation.
//!
//! Invariant: the deployment's intended state is read again when the
//! operation starts; if the user stopped it meanwhile nothing is done.
//! Nothing to compensate: each action is a single idempotent host call.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::IntendedState;
use crate::deploy::{install, step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::PveError;
use crate::supervise::ladder::Action;

/// The kinds' names.
pub const RESTART_SERVICE: &str = "remediate.restart_service";
/// See [`RESTART_SERVICE`].
pub const REBOOT: &str = "remediate.reboot";
/// See [`RESTART_SERVICE`].
pub const START: &str = "remediate.start";
/// See [`RESTART_SERVICE`].
pub const RESTORE_BACKUP: &str = "remediate.restore_backup";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    action: Action,
    name: String,
    vmid: u32,
    unit: String,
    reason: String,
}

/// One repair of deployment `name`.
pub struct RemediateOp {
    env: Option<Env>,
    p: Payload,
}

impl std::fmt::Debug for RemediateOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemediateOp")
            .field("p", &self.p)
            .finish_non_exhaustive()
    }
}

impl RemediateOp {
    /// `action` on `name` (container `vmid`, service `unit`) because of `reason`.
    pub fn new(env: Env, name: &str, vmid: u32, unit: &str, action: Action, reason: &str) -> Self {
        Self {
            env: Some(env),
            p: Payload {
                action,
                name: name.to_string(),
                vmid,
                unit: unit.to_string(),
                reason: reason.to_string(),
            },
        }
    }

    async fn act(&self, ctx: &OpCtx) -> Result<(), Error> {
        let env = self
            .env
            .as_ref()
            .ok_or_else(|| Error::internal("an operation rebuilt after a restart cannot run"))?;
        let p = &self.p;
        ctx.log(&format!(
            "deployment '{}' is unhealthy: {}",
            p.name, p.reason
        ));
        ctx.step(1, 2, "check intended state");
        let rec = env
            .store
            .get_deployment(&p.name)?
            .ok_or_else(|| Error::not_found(format!("no deployment called '{}'", p.name)))?;
        if rec.intended_state != IntendedState::Running || rec.vmid != p.vmid {
            ctx.log("the deployment is no longer meant to run here; nothing done");
            return Ok(());
        }
        let pve = ctx.pve()?;
        let v = p.vmid;
        match p.action {
            Action::RestartService => {
                ctx.step(2, 2, "restart service");
                ctx.log(&format!("pct exec {v} -- systemctl restart {}", p.unit));
                install::restart_unit(pve, v, &p.unit)
                    .await
                    .map_err(|e| step_error("restart service", e.into()))?;
                ctx.log(&format!("{} restarted in CT {v}", p.unit));
            }
            Action::Reboot => {
                ctx.step(2, 2, "reboot container");
                ctx.log(&format!("pct reboot {v} --timeout 60"));
                match pve.pct_reboot(v, Some(60)).await {
                    Ok(()) => ctx.log(&format!("CT {v} rebooted")),
                    Err(PveError::NotRunning { .. }) => {
                        pve.pct_start(v)
                            .await
                            .map_err(|e| step_error("reboot container", e.into()))?;
                        ctx.log(&format!("CT {v} was stopped; started it"));
                    }
                    Err(e) => return Err(step_error("reboot container", e.into())),
                }
            }
            Action::Start => {
                ctx.step(2, 2, "start container");
                ctx.log(&format!("pct start {v}"));
                match pve.pct_start(v).await {
                    Ok(()) => ctx.log(&format!("CT {v} started")),
                    Err(PveError::AlreadyRunning { .. }) => {
                        ctx.log(&format!("CT {v} is already running"))
                    }
                    Err(e) => return Err(step_error("start container", e.into())),
                }
            }
            Action::RestoreBackup => {
                ctx.step(2, 2, "restore backup");
                return Err(Error::invalid_state(format!(
                    "no verified backup of deployment '{}' to restore: 1ld records \
                     verified backups only once backups are set up for it",
                    p.name
                )));
            }
        }
        Ok(())
    }
}

impl OpTask for RemediateOp {
    fn kind(&self) -> &'static str {
        kind_of(self.p.action)
    }

    fn target(&self) -> Option<String> {
        Some(format!("ct/{}", self.p.vmid))
    }

    fn heavy(&self) -> bool {
        self.p.action == Action::RestoreBackup
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(&self.p).unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.act(ctx))
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            ctx.log("nothing to undo: the supervisor probes again and decides the next step");
            Ok(())
        })
    }
}

/// The kind of `action`.
pub fn kind_of(action: Action) -> &'static str {
    match action {
        Action::RestartService => RESTART_SERVICE,
        Action::Reboot => REBOOT,
        Action::Start => START,
        Action::RestoreBackup => RESTORE_BACKUP,
    }
}

/// Rebuilds after a crash (nothing to undo).
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(RemediateOp { env: None, p }))
}
