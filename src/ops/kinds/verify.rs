//! `backup.verify`: proof that a backup restores and runs. The archive is
//! restored into a throwaway container (a vmid from `[backup]
//! verify_vmid_range`, `--unique 1`, its network link down so it can never
//! collide with the original), started, and the app's self-check is run
//! inside it (`pct exec <vmid> -- runuser -u <user> -- <binary>
//! --self-check`: exit 0 healthy, 1 degraded — expected with the link
//! down, the upstream is unreachable — both count as verified; anything
//! else fails). The result is recorded on the backup; the throwaway is
//! always destroyed. A failure raises a `backup_failed` alert.
//!
//! Compensation destroys the throwaway only when the payload says this
//! operation restored into a vmid it reserved and the container's hostname
//! is the throwaway's (`verify-<vmid>`).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{EventType, Verified};
use crate::deploy::{step_error, Env};
use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::pct::{DestroyOptions, RestoreSpec};
use crate::pve::PveError;
use crate::store::now_ms;

/// The kind's name.
pub const KIND: &str = "backup.verify";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    volid: String,
    #[serde(default)]
    vmid: Option<u32>,
    #[serde(default)]
    restoring: bool,
}

/// What verification needs (checked by the handler).
#[derive(Debug, Clone)]
pub struct VerifyPlan {
    /// The archive.
    pub volid: String,
    /// The throwaway's vmid range.
    pub vmid_range: (u32, u32),
    /// Storage for its root disk.
    pub storage: String,
    /// The self-check, argv (run inside).
    pub self_check: Vec<String>,
}

/// A verification of one backup.
pub struct VerifyOp {
    env: Option<Env>,
    plan: Option<VerifyPlan>,
    payload: Payload,
}

impl std::fmt::Debug for VerifyOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyOp")
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

fn hostname(vmid: u32) -> String {
    format!("verify-{vmid}")
}

/// The agent runtime's self-check JSON as one line (`degraded: config
/// healthy, netbox_api unhealthy`), anything else as its first 300 chars.
fn summarize(stdout: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(stdout) else {
        return stdout
            .chars()
            .take(300)
            .collect::<String>()
            .trim()
            .to_string();
    };
    let status = v["status"].as_str().unwrap_or("?");
    let checks: Vec<String> = v["checks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, c)| format!("{k} {}", c["status"].as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    format!("{status}: {}", checks.join(", "))
}

impl VerifyOp {
    /// Verifies `plan.volid`.
    pub fn new(env: Env, plan: VerifyPlan) -> Self {
        Self {
            env: Some(env),
            payload: Payload {
                volid: plan.volid.clone(),
                vmid: None,
                restoring: false,
            },
            plan: Some(plan),
        }
    }

    async fn work(&self, ctx: &OpCtx) -> Result<String, Error> {
        let (Some(env), Some(plan)) = (&self.env, &self.plan) else {
            return Err(Error::internal(
                "an operation rebuilt after a restart cannot run",
            ));
        };
        let pve = ctx.pve()?;
        let mut p = self.payload.clone();
        let n = 5;
        ctx.step(1, n, "reserve a throwaway vmid");
        let vmid = super::reserve_vmid(
            ctx,
            &env.store,
            plan.vmid_range,
            "[backup] verify_vmid_range",
        )
        .await?;
        p.vmid = Some(vmid);
        self.save(ctx, &p);
        ctx.step(2, n, "restore into the throwaway");
        let mut spec = RestoreSpec::new(vmid, plan.volid.clone());
        spec.storage = Some(plan.storage.clone());
        spec.unique = true;
        spec.overrides.hostname = Some(hostname(vmid));
        p.restoring = true;
        self.save(ctx, &p);
        ctx.log(&format!(
            "pct restore {vmid} {} --storage {} --unique 1 --hostname {} (new MAC addresses)",
            plan.volid,
            plan.storage,
            hostname(vmid)
        ));
        pve.pct_restore(&spec)
            .await
            .map_err(|e| step_error("pct restore", e.into()))?;
        // The link goes down before the first start: the copy never meets
        // the original on the network.
        let cfg = pve
            .pct_config(vmid, false)
            .await
            .map_err(|e| step_error("read the restored config", e.into()))?;
        let mut set = crate::pve::pct::CtOptions::default();
        for (i, net) in &cfg.net {
            let mut down = net.clone();
            down.link_down = Some(true);
            set.net.insert(*i, down);
            ctx.log(&format!(
                "net{i}: link_down=1 (the copy never meets the original on the network)"
            ));
        }
        pve.pct_set(
            vmid,
            &crate::pve::pct::SetSpec {
                options: set,
                delete: Vec::new(),
            },
        )
        .await
        .map_err(|e| step_error("take the network link down", e.into()))?;
        ctx.step(3, n, "start the throwaway");
        pve.pct_start(vmid)
            .await
            .map_err(|e| step_error("start the throwaway", e.into()))?;
        ctx.step(4, n, "self-check");
        ctx.log(&format!("pct exec {vmid} -- {}", plan.self_check.join(" ")));
        let mut tries = 0;
        let out = loop {
            // systemd in the container needs a moment before runuser works.
            tries += 1;
            let out = pve
                .pct_exec(
                    vmid,
                    &plan.self_check,
                    None,
                    Some(std::time::Duration::from_secs(60)),
                )
                .await
                .map_err(|e| step_error("self-check", e.into()))?;
            if out.code.is_some_and(|c| c <= 1) || tries >= 10 {
                break out;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        };
        let detail = format!(
            "self-check exit {}: {}",
            out.code.map_or("signal".into(), |c| c.to_string()),
            summarize(&out.stdout_text())
        );
        ctx.log(&detail);
        if out.code.is_none_or(|c| c > 1) {
            return Err(Error::dependency_down(format!(
                "the restored app does not pass its self-check ({detail})"
            )));
        }
        Ok(detail)
    }

    fn save(&self, ctx: &OpCtx, p: &Payload) {
        if let Ok(v) = serde_json::to_value(p) {
            ctx.set_payload(v);
        }
    }

    async fn cleanup(&self, ctx: &OpCtx) -> Result<(), Error> {
        let p: Payload = serde_json::from_value(ctx.payload()).unwrap_or_default();
        let Some(vmid) = p.vmid else {
            return Ok(());
        };
        let pve = ctx.pve()?;
        if p.restoring {
            match pve.pct_config(vmid, false).await {
                Ok(cfg)
                    if cfg.hostname.as_deref() == Some(hostname(vmid).as_str())
                        || cfg.lock.as_deref() == Some("create") =>
                {
                    let _ = pve.pct_stop(vmid).await;
                    let _ = pve.pct_unlock(vmid).await;
                    pve.pct_destroy(vmid, DestroyOptions::FULL).await?;
                    ctx.log(&format!("throwaway CT {vmid} destroyed"));
                }
                Ok(_) => ctx.log(&format!("CT {vmid} is not this verification's; left alone")),
                Err(PveError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(env) = &self.env {
            env.store.release_vmids(&ctx.id())?;
        }
        Ok(())
    }

    fn record(&self, ctx: &OpCtx, ok: bool, detail: &str) {
        let Some(env) = &self.env else { return };
        if let Ok(Some(mut b)) = env.store.backup(&self.payload.volid) {
            b.verified = if ok {
                Verified::Verified
            } else {
                Verified::Failed
            };
            b.verified_ms = Some(now_ms());
            b.verify_detail = Some(detail.chars().take(500).collect());
            if let Err(e) = env.store.record_backup(&b) {
                ctx.log(&format!("could not record the verification: {e}"));
            }
        }
        env.events.publish(
            EventType::Backup,
            serde_json::json!({"action": if ok { "backup_verified" } else { "backup_verify_failed" },
                               "volid": self.payload.volid, "detail": detail, "operation": ctx.id()}),
        );
        if !ok {
            if let Some(sink) = &env.alerts {
                let now = now_ms();
                let _ = sink.raise(&crate::notify::Alert {
                    kind: crate::notify::AlertKind::BackupFailed,
                    severity: crate::notify::Severity::Critical,
                    deployment: None,
                    app: None,
                    title: format!("backup {} failed verification", self.payload.volid),
                    message: detail.to_string(),
                    dedupe_key: Some(format!("verify/{}/{}", self.payload.volid, ctx.id())),
                    time_ms: now,
                    data: serde_json::json!({"volid": self.payload.volid, "operation": ctx.id()}),
                });
            }
        }
    }
}

impl OpTask for VerifyOp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(format!("verify/{}", self.payload.volid))
    }

    fn heavy(&self) -> bool {
        true
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(&self.payload).unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let r = self.work(ctx).await;
            match &r {
                Ok(detail) => self.record(ctx, true, detail),
                Err(e) => self.record(ctx, false, &e.message),
            }
            // The throwaway goes whatever happened.
            ctx.set_cancellable(false);
            ctx.step(5, 5, "destroy the throwaway");
            self.cleanup(ctx).await?;
            r.map(|_| ())
        })
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.cleanup(ctx))
    }
}

/// Rebuilds after a crash: compensation from the payload.
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(VerifyOp {
        env: None,
        plan: None,
        payload: p,
    }))
}
