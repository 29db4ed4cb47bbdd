//! Operations on an existing deployment: `deployment.start`, `.stop`,
//! `.restart`, `.destroy`, `.apply`, and `.adopt` (recording an existing
//! container). Lock key: `ct/<vmid>`.
//!
//! - start/restart record the intended state `running`, stop records
//!   `stopped` **before** stopping, so supervision never fights the user;
//! - destroy stops and destroys the container (`--purge` on request), then
//!   forgets the deployment and its secrets; backups are never touched;
//! - apply converges resources with `pct set`, and when the rendered
//!   configuration changed, pushes it, restarts the unit and runs the health
//!   gate; its compensation pushes the previous files back and restarts;
//! - adopt checks the container looks like the app (hostname or `1ld-<app>`
//!   tag) and records it as it is, without installing anything.
//!
//! Compensation after a crash: these kinds carry nothing to undo on the
//! host except apply, whose rebuilt task only logs (the deployment keeps
//! its previously recorded spec; run apply again).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{EventType, HealthSummary, IntendedState, Resources};
use crate::deploy::egress::Via;
use crate::deploy::spec::RenderedFile;
use crate::deploy::{install, net, probe, step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::pct::{CtOptions, DestroyOptions, SetSpec};
use crate::pve::PveError;
use crate::store::{now_ms, rfc3339, DeploymentRecord, StoredSpec};

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start the container.
    Start,
    /// Stop it (intended state `stopped`).
    Stop,
    /// Reboot it (or start it when stopped).
    Restart,
    /// Destroy it and forget the deployment.
    Destroy {
        /// `pct destroy --purge`.
        purge: bool,
    },
    /// Converge to a new spec.
    Apply(Box<ApplyPlan>),
    /// Record an existing container.
    Adopt(Box<DeploymentRecord>),
}

/// What apply changes (computed and validated by the handler).
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyPlan {
    /// The new resources.
    pub resources: Resources,
    /// `pct set` changes (empty: none).
    pub set: Option<SetSpec>,
    /// The new files and fingerprint, when the configuration changed.
    pub files: Option<(Vec<RenderedFile>, String)>,
    /// The files as they are now (for compensation).
    pub old_files: Vec<RenderedFile>,
    /// The new non-secret settings.
    pub settings: std::collections::BTreeMap<String, serde_json::Value>,
    /// The new secret values (all of them).
    pub secrets: std::collections::BTreeMap<String, String>,
    /// The unit to restart.
    pub unit: String,
    /// The health probe.
    pub health: crate::apps::manifest::HealthDef,
    /// The deployment's supervision overrides after the change.
    pub supervise: crate::api::SuperviseOverrides,
    /// The deployment's backup policy after the change.
    pub backup: crate::api::BackupPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    action: String,
    name: String,
    vmid: u32,
    #[serde(default)]
    pushed: bool,
}

/// An operation on deployment `name` (container `vmid`).
pub struct DeploymentOp {
    env: Option<Env>,
    name: String,
    vmid: u32,
    action: Action,
}

impl std::fmt::Debug for DeploymentOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentOp")
            .field("name", &self.name)
            .field("vmid", &self.vmid)
            .finish_non_exhaustive()
    }
}

/// The kinds' names.
pub const START: &str = "deployment.start";
/// See [`START`].
pub const STOP: &str = "deployment.stop";
/// See [`START`].
pub const RESTART: &str = "deployment.restart";
/// See [`START`].
pub const DESTROY: &str = "deployment.destroy";
/// See [`START`].
pub const APPLY: &str = "deployment.apply";
/// See [`START`].
pub const ADOPT: &str = "deployment.adopt";

impl DeploymentOp {
    /// `action` on `name` / `vmid`.
    pub fn new(env: Env, name: &str, vmid: u32, action: Action) -> Self {
        Self {
            env: Some(env),
            name: name.to_string(),
            vmid,
            action,
        }
    }

    fn env(&self) -> Result<&Env, Error> {
        self.env
            .as_ref()
            .ok_or_else(|| Error::internal("an operation rebuilt after a restart cannot run"))
    }

    fn record(&self) -> Result<DeploymentRecord, Error> {
        self.env()?
            .store
            .get_deployment(&self.name)?
            .ok_or_else(|| Error::not_found(format!("no deployment called '{}'", self.name)))
    }

    fn set_intended(&self, s: IntendedState) -> Result<(), Error> {
        let mut rec = self.record()?;
        if rec.intended_state != s {
            rec.intended_state = s;
            rec.updated_ms = now_ms();
            self.env()?.store.update_deployment(&rec)?;
        }
        Ok(())
    }

    /// Tells supervision the user acted: the state becomes `state` and
    /// the escalation ladder starts over.
    fn supervised(&self, state: crate::api::HealthState, why: &str) {
        if let Ok(env) = self.env() {
            if let Err(e) = env
                .store
                .supervision_user_action(&self.name, state, why, now_ms())
            {
                tracing::warn!(deployment = %self.name, "cannot reset supervision: {e}");
            }
        }
    }

    fn event(&self, action: &str) {
        if let Ok(env) = self.env() {
            env.events.publish(
                EventType::Lifecycle,
                serde_json::json!({"action": action, "deployment": self.name, "vmid": self.vmid}),
            );
        }
    }

    async fn start(&self, ctx: &OpCtx) -> Result<(), Error> {
        ctx.step(1, 2, "record intended state");
        self.set_intended(IntendedState::Running)?;
        ctx.step(2, 2, "start container");
        match ctx.pve()?.pct_start(self.vmid).await {
            Ok(()) => ctx.log(&format!("started CT {}", self.vmid)),
            Err(PveError::AlreadyRunning { .. }) => {
                ctx.log(&format!("CT {} is already running", self.vmid))
            }
            Err(e) => return Err(step_error("start container", e.into())),
        }
        self.supervised(crate::api::HealthState::Starting, "started by the user");
        self.event("deployment_started");
        Ok(())
    }

    async fn stop(&self, ctx: &OpCtx) -> Result<(), Error> {
        ctx.step(1, 2, "record intended state");
        // Recorded first: supervision must not restart what the user stops.
        self.set_intended(IntendedState::Stopped)?;
        ctx.step(2, 2, "stop container");
        match ctx.pve()?.pct_shutdown(self.vmid, Some(30), true).await {
            Ok(()) => ctx.log(&format!("stopped CT {}", self.vmid)),
            Err(PveError::NotRunning { .. }) => {
                ctx.log(&format!("CT {} is not running", self.vmid))
            }
            Err(e) => return Err(step_error("stop container", e.into())),
        }
        self.supervised(crate::api::HealthState::Stopped, "stopped by the user");
        self.event("deployment_stopped");
        Ok(())
    }

    async fn restart(&self, ctx: &OpCtx) -> Result<(), Error> {
        ctx.step(1, 2, "record intended state");
        self.set_intended(IntendedState::Running)?;
        ctx.step(2, 2, "restart container");
        let pve = ctx.pve()?;
        match pve.pct_reboot(self.vmid, Some(60)).await {
            Ok(()) => ctx.log(&format!("rebooted CT {}", self.vmid)),
            Err(PveError::NotRunning { .. }) => {
                pve.pct_start(self.vmid)
                    .await
                    .map_err(|e| step_error("restart container", e.into()))?;
                ctx.log(&format!("CT {} was stopped; started it", self.vmid));
            }
            Err(e) => return Err(step_error("restart container", e.into())),
        }
        self.supervised(crate::api::HealthState::Starting, "restarted by the user");
        self.event("deployment_restarted");
        Ok(())
    }

    async fn destroy(&self, ctx: &OpCtx, purge: bool) -> Result<(), Error> {
        let pve = ctx.pve()?;
        let env = self.env()?;
        ctx.step(1, 3, "stop container");
        match pve.pct_stop(self.vmid).await {
            Ok(()) => ctx.log(&format!("stopped CT {}", self.vmid)),
            Err(PveError::NotRunning { .. }) | Err(PveError::NotFound { .. }) => {}
            Err(e) => return Err(step_error("stop container", e.into())),
        }
        ctx.set_cancellable(false);
        ctx.step(2, 3, "destroy container");
        let opts = DestroyOptions {
            purge,
            force: true,
            destroy_unreferenced_disks: true,
        };
        match pve.pct_destroy(self.vmid, opts).await {
            Ok(()) => ctx.log(&format!(
                "destroyed CT {}{}",
                self.vmid,
                if purge { " (purged from jobs)" } else { "" }
            )),
            Err(PveError::NotFound { .. }) => {
                ctx.log(&format!("CT {} was already gone", self.vmid))
            }
            Err(e) => return Err(step_error("destroy container", e.into())),
        }
        ctx.step(3, 3, "forget deployment");
        env.store.delete_deployment(&self.name)?;
        env.secrets.remove_deployment(&self.name)?;
        env.store.supervision_forget(&self.name)?;
        env.store.forget_schedules(&self.name)?;
        env.store.forget_safety(&self.name)?;
        ctx.log(&format!(
            "deployment '{}' and its secrets removed; backups are kept",
            self.name
        ));
        self.event("deployment_destroyed");
        Ok(())
    }

    async fn adopt(&self, ctx: &OpCtx, rec: &DeploymentRecord) -> Result<(), Error> {
        let env = self.env()?;
        ctx.step(1, 1, "record deployment");
        if env.store.get_deployment(&rec.name)?.is_some() {
            return Err(Error::conflict(format!(
                "a deployment called '{}' exists now",
                rec.name
            )));
        }
        if env.store.deployment_by_vmid(rec.vmid)?.is_some() {
            return Err(Error::conflict(format!(
                "CT {} is already a deployment",
                rec.vmid
            )));
        }
        env.store.insert_deployment(rec)?;
        ctx.log(&format!(
            "CT {} recorded as deployment '{}' of {} (nothing installed)",
            rec.vmid, rec.name, rec.app
        ));
        self.event("deployment_adopted");
        Ok(())
    }

    fn mark_pushed(&self, ctx: &OpCtx, action: &str) {
        let p = Payload {
            action: action.into(),
            name: self.name.clone(),
            vmid: self.vmid,
            pushed: true,
        };
        if let Ok(v) = serde_json::to_value(p) {
            ctx.set_payload(v);
        }
    }

    async fn apply(&self, ctx: &OpCtx, plan: &ApplyPlan) -> Result<(), Error> {
        let pve = ctx.pve()?;
        let env = self.env()?;
        let mut rec = self.record()?;
        ctx.step(1, 4, "set resources");
        if let Some(set) = &plan.set {
            if let Ok(argv) = set.to_argv(self.vmid, pve.major()) {
                ctx.log(&argv.join(" "));
            }
            pve.pct_set(self.vmid, set)
                .await
                .map_err(|e| step_error("set resources", e.into()))?;
        } else {
            ctx.log("resources unchanged");
        }
        let mut health = None;
        if let Some((files, _)) = &plan.files {
            for v in plan.secrets.values() {
                env.secrets.redactor().add(v);
            }
            ctx.step(2, 4, "push configuration");
            let staging = install::Staging::new(&env.staging_dir, &ctx.id())
                .map_err(|e| step_error("push configuration", e.into()))?;
            self.mark_pushed(ctx, APPLY);
            let log = |l: &str| ctx.log(l);
            let changed: Vec<RenderedFile> = files
                .iter()
                .filter(|f| !plan.old_files.contains(f))
                .cloned()
                .collect();
            install::push_files(pve, self.vmid, &[], &changed, &staging, &log)
                .await
                .map_err(|e| step_error("push configuration", e.into()))?;
            drop(staging);
            ctx.step(3, 4, "restart service");
            install::restart_unit(pve, self.vmid, &plan.unit)
                .await
                .map_err(|e| step_error("restart service", e.into()))?;
            ctx.step(4, 4, "health gate");
            let ip = match pve
                .ct_interfaces(self.vmid)
                .await
                .ok()
                .and_then(|i| net::ipv4_of(&i))
            {
                Some(ip) => Some(ip),
                None => rec.ip.as_deref().and_then(|s| s.parse().ok()),
            };
            // `pct set` above moved net0 to the plan's bridge, if it changed.
            let via = Via::recorded(&plan.resources.bridge);
            match probe::gate(&plan.health, pve, self.vmid, ip, &via, |l| ctx.log(l)).await {
                Ok(r) => health = Some(r),
                Err(r) => {
                    return Err(step_error(
                        "health gate",
                        Error::dependency_down(format!(
                            "not healthy within {}s after the change; last probe: {:?}: {}",
                            plan.health.timeout_s, r.status, r.detail
                        )),
                    ))
                }
            }
        } else {
            ctx.log("configuration unchanged; the service keeps running");
        }
        ctx.set_cancellable(false);
        for (k, v) in &plan.secrets {
            env.secrets.put(&self.name, k, v)?;
        }
        let now = now_ms();
        rec.spec = StoredSpec {
            resources: plan.resources.clone(),
            tags: rec.spec.tags.clone(),
            settings: plan.settings.clone(),
            secret_keys: plan.secrets.keys().cloned().collect(),
            supervise: plan.supervise,
            backup: plan.backup.clone(),
        };
        if let Some((_, hash)) = &plan.files {
            rec.config_hash = hash.clone();
        }
        if let Some(h) = health {
            rec.health = HealthSummary {
                status: h.status,
                checked_at: Some(rfc3339(now)),
                detail: Some(h.detail),
            };
        }
        rec.updated_ms = now;
        env.store.update_deployment(&rec)?;
        ctx.log(&format!(
            "deployment '{}' converged (config {})",
            self.name, rec.config_hash
        ));
        if plan.files.is_some() {
            self.supervised(
                crate::api::HealthState::Starting,
                "reconfigured by the user",
            );
        }
        self.event("deployment_applied");
        Ok(())
    }

    /// A destroy interrupted by a crash is finished: `pct destroy` killed
    /// midway leaves the container locked `destroyed` and half removed.
    async fn finish_destroy(&self, ctx: &OpCtx) -> Result<(), Error> {
        let pve = ctx.pve()?;
        super::clear_lock(ctx, self.vmid, &["destroyed"]).await?;
        let _ = pve.pct_stop(self.vmid).await;
        let opts = DestroyOptions::FULL;
        match pve.pct_destroy(self.vmid, opts).await {
            Ok(()) => ctx.log(&format!(
                "interrupted destroy finished: CT {} destroyed",
                self.vmid
            )),
            Err(PveError::NotFound { .. }) => ctx.log(&format!("CT {} is gone", self.vmid)),
            Err(e) => return Err(e.into()),
        }
        let store = ctx.store();
        store.delete_deployment(&self.name)?;
        store.supervision_forget(&self.name)?;
        store.forget_schedules(&self.name)?;
        store.forget_safety(&self.name)?;
        if let Some(env) = &self.env {
            env.secrets.remove_deployment(&self.name)?;
        }
        ctx.log(&format!(
            "deployment '{}' forgotten; backups are kept",
            self.name
        ));
        Ok(())
    }

    async fn undo(&self, ctx: &OpCtx) -> Result<(), Error> {
        if matches!(self.action, Action::Destroy { .. }) && self.env.is_none() {
            return self.finish_destroy(ctx).await;
        }
        let Action::Apply(plan) = &self.action else {
            ctx.log("nothing to undo");
            return Ok(());
        };
        let pushed = serde_json::from_value::<Payload>(ctx.payload())
            .map(|p| p.pushed)
            .unwrap_or(false);
        if !pushed {
            ctx.log("no file was changed in the container");
            return Ok(());
        }
        let env = self.env()?;
        let pve = ctx.pve()?;
        let staging = install::Staging::new(&env.staging_dir, &format!("{}-undo", ctx.id()))?;
        let log = |l: &str| ctx.log(l);
        install::push_files(pve, self.vmid, &[], &plan.old_files, &staging, &log).await?;
        install::restart_unit(pve, self.vmid, &plan.unit).await?;
        ctx.log("previous configuration restored and the service restarted");
        Ok(())
    }
}

/// The `CtOptions` of `pct set` that turn `from` into `to` (None: no change).
pub fn set_spec(from: &Resources, to: &Resources) -> Option<SetSpec> {
    let mut o = CtOptions::default();
    let mut any = false;
    if from.cores != to.cores {
        o.cores = Some(to.cores);
        any = true;
    }
    if from.memory != to.memory {
        o.memory = Some(to.memory);
        any = true;
    }
    if from.swap != to.swap {
        o.swap = Some(to.swap);
        any = true;
    }
    if from.onboot != to.onboot {
        o.onboot = Some(to.onboot);
        any = true;
    }
    if (&from.bridge, &from.ip, &from.gw, &from.ip6) != (&to.bridge, &to.ip, &to.gw, &to.ip6) {
        o.net.insert(0, crate::deploy::spec::net0(to));
        any = true;
    }
    any.then(|| SetSpec {
        options: o,
        delete: Vec::new(),
    })
}

impl OpTask for DeploymentOp {
    fn kind(&self) -> &'static str {
        match self.action {
            Action::Start => START,
            Action::Stop => STOP,
            Action::Restart => RESTART,
            Action::Destroy { .. } => DESTROY,
            Action::Apply(_) => APPLY,
            Action::Adopt(_) => ADOPT,
        }
    }

    fn target(&self) -> Option<String> {
        Some(format!("ct/{}", self.vmid))
    }

    fn heavy(&self) -> bool {
        false
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(Payload {
            action: self.kind().to_string(),
            name: self.name.clone(),
            vmid: self.vmid,
            pushed: false,
        })
        .unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            match &self.action {
                Action::Start => self.start(ctx).await,
                Action::Stop => self.stop(ctx).await,
                Action::Restart => self.restart(ctx).await,
                Action::Destroy { purge } => self.destroy(ctx, *purge).await,
                Action::Apply(p) => self.apply(ctx, p).await,
                Action::Adopt(r) => self.adopt(ctx, r).await,
            }
        })
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.undo(ctx))
    }
}

/// Rebuilds after a crash: nothing on the host to undo (see the module doc).
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(DeploymentOp {
        env: None,
        name: p.name,
        vmid: p.vmid,
        // A destroy is finished at restart (the user asked for it); the
        // other kinds have nothing on the host to undo.
        action: if p.action == DESTROY {
            Action::Destroy { purge: true }
        } else {
            Action::Start
        },
    }))
}
