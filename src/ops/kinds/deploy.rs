//! `deploy`: an app into a new container, up to a passed health gate and a
//! recorded deployment. Exposed as `POST /v1/deployments` (and `PUT` of a
//! name that does not exist yet).
//!
//! Steps: [`crate::deploy::spec::STEPS`]. The request was validated before
//! submit; step 1 re-checks what may have changed since (the name).
//!
//! Crash safety: the vmid is reserved in the store and written to the
//! payload **before** `pct create` runs, and the container's description
//! carries `1ld-op: <operation id>`. Compensation (after a failure, a
//! cancel, or at the next start after a crash) destroys the container only
//! when its description carries this operation's id, unless
//! `keep_on_failure`; it releases the vmid reservation. Secret values are
//! stored only when the deployment is recorded, so a failed deploy leaves
//! none behind. Lock key: `deployment/<name>`.
//!
//! With the optional proxy ([`crate::deploy::proxy`]): step 3 also makes
//! sure the host's package cache holds nginx, step 7 installs it and its
//! site, step 8 enables and starts it, and the gate probes through it. It
//! lives only in the container, so the compensation's destroy removes it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{EventType, HealthSummary, IntendedState};
use crate::deploy::egress::Via;
use crate::deploy::spec::{op_marker, DeploySpec, STEPS};
use crate::deploy::{install, net, probe, proxy, step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::pct::DestroyOptions;
use crate::pve::{Pve, PveError};
use crate::store::{now_ms, rfc3339, DeploymentRecord, StoredSpec};

/// The kind's name.
pub const KIND: &str = "deploy";

/// How often `pct create` is retried when the id turns out to be taken.
const CREATE_ATTEMPTS: u32 = 5;

/// Serialises template downloads made by deploys (one at a time).
static DOWNLOADS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The persisted payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    name: String,
    app: String,
    /// Set before `pct create` runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vmid: Option<u32>,
    #[serde(default)]
    keep_on_failure: bool,
}

/// A deploy: the validated spec plus what it needs to run.
pub struct Deploy {
    /// `None` when rebuilt after a crash (compensation only).
    run: Option<(Env, DeploySpec)>,
    payload: Payload,
}

impl std::fmt::Debug for Deploy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deploy")
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

impl Deploy {
    /// A deploy of `spec` (validated by [`crate::deploy::prepare`]).
    pub fn new(env: Env, spec: DeploySpec) -> Self {
        let payload = Payload {
            name: spec.name.clone(),
            app: spec.app.clone(),
            vmid: None,
            keep_on_failure: spec.keep_on_failure,
        };
        Self {
            run: Some((env, spec)),
            payload,
        }
    }

    fn current(ctx: &OpCtx) -> Option<Payload> {
        serde_json::from_value(ctx.payload()).ok()
    }

    fn record_vmid(&self, ctx: &OpCtx, vmid: Option<u32>) {
        let mut p = self.payload.clone();
        p.vmid = vmid;
        match serde_json::to_value(p) {
            Ok(v) => ctx.set_payload(v),
            Err(e) => tracing::error!(error = %e, "cannot encode a deploy payload"),
        }
    }

    async fn allocate(
        &self,
        ctx: &OpCtx,
        env: &Env,
        spec: &DeploySpec,
        taken: &BTreeSet<u32>,
    ) -> Result<u32, Error> {
        let id = ctx.id();
        let vmid = match spec.fixed_vmid {
            Some(v) => {
                if taken.contains(&v) || !env.store.reserve_exact_vmid(v, &id, now_ms())? {
                    return Err(Error::conflict(format!(
                        "vmid {v} is taken (by a guest in the cluster, a deployment, or a deploy in progress); leave overrides.vmid out to get a free one"
                    )));
                }
                v
            }
            None => {
                let (lo, hi) = spec.vmid_range;
                env.store
                    .reserve_vmid(lo, hi, taken, &id, now_ms())?
                    .ok_or_else(|| Error::conflict(format!("no free vmid in the app's range {lo}..={hi}; give one with overrides.vmid")))?
            }
        };
        // Persisted before `pct create` runs: a crash from here on is compensated.
        self.record_vmid(ctx, Some(vmid));
        ctx.log(&format!("vmid {vmid} reserved"));
        Ok(vmid)
    }

    async fn ensure_template(
        &self,
        ctx: &OpCtx,
        pve: &Pve,
        spec: &DeploySpec,
    ) -> Result<String, Error> {
        let Some((storage, file)) = &spec.template.download else {
            ctx.log(&format!("template {} is present", spec.template.volid));
            return Ok(spec.template.volid.clone());
        };
        let _one = DOWNLOADS.lock().await;
        let family = &spec_family(file);
        // Another deploy may have fetched it while we waited.
        let list = pve.pveam_list(storage).await?;
        let volids: Vec<String> = list.into_iter().map(|t| t.volid).collect();
        if let Some(v) = crate::deploy::spec::newest_volid(&volids, family) {
            ctx.log(&format!("template {v} is present"));
            return Ok(v.clone());
        }
        ctx.log("running `pveam update`");
        ctx.until_cancelled(async { Ok(pve.pveam_update().await?) })
            .await?;
        let names: Vec<String> = pve
            .pveam_available(Some("system"))
            .await?
            .into_iter()
            .map(|t| t.name)
            .collect();
        let file = crate::deploy::spec::newest_file(&names, family).cloned().ok_or_else(|| {
            Error::not_found(format!("no template of family '{family}' in the appliance index (pveam available --section system)"))
        })?;
        ctx.log(&format!("downloading {file} to {storage}"));
        let volid = ctx
            .until_cancelled(async { Ok(pve.pveam_download(storage, &file).await?) })
            .await?;
        // `pveam download` can exit 0 on failure: check the file is listed.
        if !pve
            .pveam_list(storage)
            .await?
            .iter()
            .any(|t| t.volid == volid)
        {
            return Err(Error::dependency_down(format!("`pveam download {storage} {file}` reported success but {volid} is not listed by `pveam list {storage}`")));
        }
        ctx.log(&format!("downloaded {volid}"));
        Ok(volid)
    }

    async fn wait_lease(
        &self,
        ctx: &OpCtx,
        pve: &Pve,
        env: &Env,
        spec: &DeploySpec,
        vmid: u32,
    ) -> Result<std::net::Ipv4Addr, Error> {
        if let Ok(cidr) = spec.resources.ip.parse::<crate::pve::types::Ipv4Cidr>() {
            ctx.log(&format!("static address {cidr}"));
            return Ok(cidr.addr);
        }
        let limit = Duration::from_secs(env.apps.lease_timeout_secs);
        poll_lease(ctx, pve, vmid, limit).await?.ok_or_else(|| {
            Error::dependency_down(format!(
                "CT {vmid} got no IPv4 lease on bridge '{}' within {}s; check the DHCP server on that bridge, or give a static address (overrides.ip, overrides.gw)",
                spec.resources.bridge, limit.as_secs()
            ))
        })
    }

    async fn run_steps(&self, ctx: &OpCtx) -> Result<(), Error> {
        let Some((env, spec)) = &self.run else {
            return Err(Error::internal(
                "a deploy rebuilt after a restart cannot run",
            ));
        };
        let pve = ctx.pve()?;
        let n = u32::try_from(STEPS.len()).unwrap_or(10);
        let step = |i: u32| STEPS.get(i as usize - 1).copied().unwrap_or("step");
        let wrap = |i: u32| move |e: Error| step_error(step(i), e);

        ctx.step(1, n, step(1));
        for v in spec.settings.secrets.values() {
            env.secrets.redactor().add(v);
        }
        if env.store.get_deployment(&spec.name)?.is_some() {
            return Err(Error::conflict(format!(
                "a deployment called '{}' exists now",
                spec.name
            )));
        }
        ctx.log(&format!(
            "app {} {}, deployment '{}', config {}",
            spec.app, spec.app_version, spec.name, spec.config_hash
        ));
        ctx.checkpoint()?;

        ctx.step(2, n, step(2));
        let mut taken: BTreeSet<u32> = pve
            .cluster_vmids()
            .await
            .map_err(|e| wrap(2)(e.into()))?
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        let mut vmid = self
            .allocate(ctx, env, spec, &taken)
            .await
            .map_err(wrap(2))?;
        ctx.checkpoint()?;

        ctx.step(3, n, step(3));
        let volid = self
            .ensure_template(ctx, pve, spec)
            .await
            .map_err(wrap(3))?;
        let packages = match &spec.proxy {
            Some(px) => {
                proxy::ensure_packages(&env.apps.packages_dir, &px.packages, &|l| ctx.log(l))
                    .await
                    .map_err(|e| wrap(3)(e.into()))?
            }
            None => Vec::new(),
        };
        ctx.checkpoint()?;

        ctx.step(4, n, step(4));
        let mut attempt = 1;
        loop {
            let mut create = spec.create_spec(vmid, &ctx.id());
            create.ostemplate = volid.clone();
            if let Ok(argv) = create.to_argv(pve.major()) {
                ctx.log(&argv.join(" "));
            }
            match ctx
                .until_cancelled(async { Ok(pve.pct_create(&create).await?) })
                .await
            {
                Ok(()) => break,
                Err(e)
                    if attempt < CREATE_ATTEMPTS
                        && spec.fixed_vmid.is_none()
                        && e.kind == crate::error::ErrorKind::Conflict
                        && e.message.contains("already exists") =>
                {
                    ctx.log(&format!(
                        "vmid {vmid} was taken meanwhile ({}); allocating another",
                        e.message
                    ));
                    env.store.release_vmid(vmid, &ctx.id())?;
                    taken.insert(vmid);
                    self.record_vmid(ctx, None);
                    vmid = self
                        .allocate(ctx, env, spec, &taken)
                        .await
                        .map_err(wrap(4))?;
                    attempt += 1;
                }
                Err(e) => return Err(wrap(4)(e)),
            }
        }
        ctx.log(&format!("created CT {vmid}"));
        ctx.checkpoint()?;

        ctx.step(5, n, step(5));
        ctx.until_cancelled(async { Ok(pve.pct_start(vmid).await?) })
            .await
            .map_err(wrap(5))?;
        ctx.checkpoint()?;

        ctx.step(6, n, step(6));
        let ip = self
            .wait_lease(ctx, pve, env, spec, vmid)
            .await
            .map_err(wrap(6))?;

        ctx.step(7, n, step(7));
        let staging =
            install::Staging::new(&env.staging_dir, &ctx.id()).map_err(|e| wrap(7)(e.into()))?;
        let log = |l: &str| ctx.log(l);
        install::ensure_user(pve, vmid, &spec.user)
            .await
            .map_err(|e| wrap(7)(e.into()))?;
        ctx.log(&format!("service user {}", spec.user));
        install::push_files(pve, vmid, &spec.dirs, &spec.files, &staging, &log)
            .await
            .map_err(|e| wrap(7)(e.into()))?;
        if let Some(px) = &spec.proxy {
            let conf = staging
                .file(px.render(&spec.name).as_bytes())
                .map_err(|e| wrap(7)(e.into()))?;
            proxy::install(pve, vmid, &packages, &conf, &log)
                .await
                .map_err(|e| wrap(7)(e.into()))?;
        }
        drop(staging);
        ctx.checkpoint()?;

        ctx.step(8, n, step(8));
        install::start_unit(pve, vmid, &spec.unit)
            .await
            .map_err(|e| wrap(8)(e.into()))?;
        ctx.log(&format!("{} enabled and started", spec.unit));
        if let Some(px) = &spec.proxy {
            proxy::start(pve, vmid)
                .await
                .map_err(|e| wrap(8)(e.into()))?;
            ctx.log(&format!(
                "nginx.service enabled and started: port {} → 127.0.0.1:{}",
                px.port, px.upstream_port
            ));
        }
        ctx.checkpoint()?;

        ctx.step(9, n, step(9));
        let via = Via::recorded(&spec.resources.bridge);
        let gated = probe::gate(&spec.health, pve, vmid, Some(ip), &via, |l| ctx.log(l)).await;
        let health = match gated {
            Ok(r) => {
                if r.status == crate::api::HealthStatus::Degraded {
                    ctx.log(&format!(
                        "warning: the service is degraded ({}); the app's manifest accepts that",
                        r.detail
                    ));
                }
                r
            }
            Err(r) => {
                return Err(step_error(
                    step(9),
                    Error::dependency_down(format!(
                        "not {} within {}s; last probe: {:?}: {}",
                        spec.health
                            .accept
                            .iter()
                            .map(|a| format!("{a:?}").to_lowercase())
                            .collect::<Vec<_>>()
                            .join(" or "),
                        spec.health.timeout_s,
                        r.status,
                        r.detail
                    )),
                ))
            }
        };

        ctx.set_cancellable(false);
        ctx.step(10, n, step(10));
        for (k, v) in &spec.settings.secrets {
            env.secrets.put(&spec.name, k, v)?;
        }
        let now = now_ms();
        let rec = DeploymentRecord {
            name: spec.name.clone(),
            app: spec.app.clone(),
            app_version: spec.app_version.clone(),
            vmid,
            node: spec.node.clone(),
            intended_state: IntendedState::Running,
            spec: StoredSpec {
                resources: spec.resources.clone(),
                tags: spec.tags.clone(),
                settings: spec.settings.public_json(),
                secret_keys: spec.settings.secrets.keys().cloned().collect(),
                supervise: spec.supervise,
                backup: spec.backup.clone(),
            },
            config_hash: spec.config_hash.clone(),
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
        env.store.release_vmids(&ctx.id())?;
        ctx.log(&format!(
            "deployment '{}' recorded: CT {vmid} at {ip}, {:?}",
            spec.name, health.status
        ));
        env.events.publish(
            EventType::Lifecycle,
            serde_json::json!({"action": "deployed", "deployment": spec.name, "app": spec.app,
                               "app_version": spec.app_version, "vmid": vmid, "ip": ip.to_string(), "operation": ctx.id()}),
        );
        env.events.publish(
            EventType::Health,
            serde_json::json!({"deployment": spec.name, "vmid": vmid, "status": health.status, "detail": health.detail}),
        );
        Ok(())
    }

    async fn undo(&self, ctx: &OpCtx) -> Result<(), Error> {
        let p = Self::current(ctx).unwrap_or_else(|| self.payload.clone());
        if let Some((env, _)) = &self.run {
            let n = env.store.release_vmids(&ctx.id())?;
            if n > 0 {
                ctx.log(&format!("released {n} vmid reservation(s)"));
            }
        }
        let Some(vmid) = p.vmid else {
            ctx.log("no container was created");
            return Ok(());
        };
        let pve = ctx.pve()?;
        let cfg = match pve.pct_config(vmid, false).await {
            Ok(c) => c,
            Err(PveError::NotFound { .. }) => {
                ctx.log(&format!("CT {vmid} does not exist; nothing to remove"));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        // Ours: it carries this operation's marker, or `pct create` was
        // killed before writing it (the vmid was reserved for this very
        // operation, and the container is still locked `create`).
        let ours = cfg
            .description
            .as_deref()
            .is_some_and(|d| d.contains(&op_marker(&ctx.id())))
            || cfg.lock.as_deref() == Some("create");
        if !ours {
            ctx.log(&format!(
                "CT {vmid} was not created by this operation; leaving it alone"
            ));
            return Ok(());
        }
        if p.keep_on_failure {
            ctx.log(&format!("keep_on_failure: CT {vmid} is kept for inspection (destroy it with `pct destroy {vmid}` when done)"));
            return Ok(());
        }
        super::clear_lock(ctx, vmid, &["create"]).await?;
        match pve.pct_stop(vmid).await {
            Ok(()) => ctx.log(&format!("stopped CT {vmid}")),
            Err(PveError::NotRunning { .. }) => {}
            Err(e) => ctx.log(&format!("stopping CT {vmid}: {e}")),
        }
        let opts = DestroyOptions::FULL;
        match pve.pct_destroy(vmid, opts).await {
            Ok(()) | Err(PveError::NotFound { .. }) => {
                ctx.log(&format!("destroyed CT {vmid}"));
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The family of a template file (`debian-12-standard` of
/// `debian-12-standard_12.7-1_amd64.tar.zst`, or of `debian-12-standard_*`).
fn spec_family(file: &str) -> String {
    file.split('_').next().unwrap_or(file).to_string()
}

impl OpTask for Deploy {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(format!("deployment/{}", self.payload.name))
    }

    fn heavy(&self) -> bool {
        false
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(&self.payload).unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.run_steps(ctx))
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.undo(ctx))
    }
}

/// Rebuilds the task from its persisted payload (compensation only).
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let payload: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(Deploy { run: None, payload }))
}

/// Polls `vmid`'s interfaces until it has an IPv4 address (logged with the
/// time it took) or `limit` passes (`None`); a cancel stops it at once.
pub(crate) async fn poll_lease(
    ctx: &OpCtx,
    pve: &Pve,
    vmid: u32,
    limit: Duration,
) -> Result<Option<std::net::Ipv4Addr>, Error> {
    let start = Instant::now();
    loop {
        ctx.checkpoint()?;
        if let Ok(ifs) = pve.ct_interfaces(vmid).await {
            if let Some(ip) = net::ipv4_of(&ifs) {
                ctx.log(&format!(
                    "IPv4 lease {ip} after {:.1}s",
                    start.elapsed().as_secs_f32()
                ));
                return Ok(Some(ip));
            }
        }
        if start.elapsed() >= limit {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
