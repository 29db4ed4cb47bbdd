//! `backup`: an app-aware vzdump of a deployment. Lock `ct/<vmid>`, heavy
//! (one slot of `[ops] heavy_concurrency`, so never two backups of one
//! container and at most N at once).
//!
//! Steps: check the storage (content `backup`) → when the container runs,
//! write the spec into it (`/etc/1ld/deployment.json`) and run the app's
//! `[data] pre_backup` hook → `vzdump` (mode, zstd, notes naming the
//! deployment, app, version and spec digest, `--prune-backups` from the
//! policy, protected) → record it (size from `pvesm list`), set the
//! deployment's last backup, event. A failure raises a `backup_failed`
//! alert.
//!
//! Nothing to compensate: vzdump removes its temporary files and the
//! `backup` lock itself; an archive written before a later step failed is
//! found by `GET /v1/backups` (listed as not recorded).

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::api::{BackupPolicy, EventType, Verified};
use crate::backup;
use crate::deploy::spec::{Content, RenderedFile};
use crate::deploy::{install, step_error, Env};
use crate::error::Error;
use crate::notify::{Alert, AlertKind, Severity};
use crate::ops::{OpCtx, OpTask};
use crate::pve::types::CtState;
use crate::pve::vzdump::{Compression, VzdumpSpec};
use crate::store::{now_ms, BackupRecord};

/// The kind's name.
pub const KIND: &str = "backup";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    name: String,
    vmid: u32,
    storage: String,
}

/// A backup of deployment `name`.
pub struct BackupOp {
    env: Option<Env>,
    name: String,
    vmid: u32,
    policy: BackupPolicy,
    pre_backup: Vec<String>,
}

impl std::fmt::Debug for BackupOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupOp")
            .field("name", &self.name)
            .field("vmid", &self.vmid)
            .finish_non_exhaustive()
    }
}

impl BackupOp {
    /// A backup of `name` (container `vmid`) under the effective `policy`;
    /// `pre_backup` is the app's hook (argv, may be empty).
    pub fn new(
        env: Env,
        name: &str,
        vmid: u32,
        policy: BackupPolicy,
        pre_backup: Vec<String>,
    ) -> Self {
        Self {
            env: Some(env),
            name: name.to_string(),
            vmid,
            policy,
            pre_backup,
        }
    }

    fn storage(&self) -> String {
        self.policy
            .storage
            .clone()
            .unwrap_or_else(|| "local".into())
    }

    /// Backs up and records the archive; its volid. Also an upgrade's
    /// safety point, inside the upgrade operation (which holds the lock).
    pub(crate) async fn work(&self, ctx: &OpCtx) -> Result<String, Error> {
        let env = self
            .env
            .as_ref()
            .ok_or_else(|| Error::internal("an operation rebuilt after a restart cannot run"))?;
        let pve = ctx.pve()?;
        let storage = self.storage();
        let n = 5;
        ctx.step(1, n, "check storage");
        let with_backup = pve
            .pvesm_status(Some(&storage), Some("backup"))
            .await
            .map_err(|e| step_error("check storage", e.into()))?;
        if !with_backup.iter().any(|s| s.name == storage) {
            return Err(Error::bad_request(
                "storage",
                format!("storage '{storage}' does not exist or has no content 'backup' (pvesm status --content backup lists those that do)"),
            ));
        }
        let rec = env
            .store
            .get_deployment(&self.name)?
            .ok_or_else(|| Error::not_found(format!("no deployment called '{}'", self.name)))?;
        let running = matches!(
            pve.pct_status(self.vmid, false).await.map(|s| s.status),
            Ok(Some(CtState::Running))
        );
        ctx.step(2, n, "record the spec in the container");
        if running {
            let doc = serde_json::to_string_pretty(&backup::spec_document(&rec))
                .map_err(|e| Error::internal(format!("spec document: {e}")))?;
            let staging = install::Staging::new(&env.staging_dir, &ctx.id())
                .map_err(|e| step_error("record the spec", e.into()))?;
            let file = RenderedFile {
                path: backup::SPEC_IN_CONTAINER.to_string(),
                content: Content::Text(doc + "\n"),
                mode: 0o600,
                owner: "root".into(),
                group: "root".into(),
                secret: false,
                source: "1ld".into(),
            };
            let dirs = [crate::apps::manifest::DirDef {
                path: "/etc/1ld".into(),
                mode: "0700".into(),
                owner: "root".into(),
                group: "root".into(),
            }];
            let log = |l: &str| ctx.log(l);
            install::push_files(pve, self.vmid, &dirs, &[file], &staging, &log)
                .await
                .map_err(|e| step_error("record the spec", e.into()))?;
            ctx.log(&format!("spec written to {}", backup::SPEC_IN_CONTAINER));
        } else {
            ctx.log("the container is stopped: the spec travels in the archive's notes only");
        }
        ctx.checkpoint()?;
        ctx.step(3, n, "pre-backup hook");
        if self.pre_backup.is_empty() {
            ctx.log("the app has no pre-backup hook");
        } else if running {
            ctx.log(&format!(
                "pct exec {} -- {}",
                self.vmid,
                self.pre_backup.join(" ")
            ));
            let out = pve
                .pct_exec(self.vmid, &self.pre_backup, None, None)
                .await
                .map_err(|e| step_error("pre-backup hook", e.into()))?;
            if out.code != Some(0) {
                return Err(step_error(
                    "pre-backup hook",
                    Error::dependency_down(format!(
                        "{} exited {:?}: {}",
                        self.pre_backup.join(" "),
                        out.code,
                        out.stderr_text().trim()
                    )),
                ));
            }
        } else {
            ctx.log("the container is stopped: nothing writes, no hook needed");
        }
        ctx.checkpoint()?;
        ctx.step(4, n, "vzdump");
        let spec = VzdumpSpec {
            mode: Some(backup::mode(self.policy.mode)),
            compress: Some(Compression::Zstd),
            notes_template: Some(backup::notes_template(&rec)),
            prune: Some(backup::prune(&self.policy)),
            protected: self.policy.protected.unwrap_or(false),
            remove: Some(true),
            ..VzdumpSpec::new(self.vmid, storage.clone())
        };
        if let Ok(argv) = spec.to_argv() {
            ctx.log(&argv.join(" "));
        }
        let done = ctx
            .until_cancelled(async {
                pve.vzdump(&spec)
                    .await
                    .map_err(|e| step_error("vzdump", e.into()))
            })
            .await?;
        for w in &done.log.warnings {
            ctx.log(&format!("vzdump warning: {w}"));
        }
        if done.log.mode_fallback {
            ctx.log(&format!(
                "storage snapshots are not available for this container's volumes; vzdump used {} mode",
                done.log.mode.as_deref().unwrap_or("suspend")
            ));
        }
        ctx.set_cancellable(false);
        ctx.step(5, n, "record");
        let file = done
            .archive
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let volid = format!("{storage}:backup/{file}");
        let size = pve
            .pvesm_list(&storage, Some("backup"), Some(self.vmid))
            .await
            .ok()
            .and_then(|v| v.into_iter().find(|v| v.volid == volid))
            .and_then(|v| v.size.bytes());
        let now = now_ms();
        let notes = backup::notes_template(&rec).replace("{{guestname}}", &rec.name);
        let b = BackupRecord {
            volid: volid.clone(),
            storage: storage.clone(),
            vmid: self.vmid,
            deployment: Some(rec.name.clone()),
            app: Some(rec.app.clone()),
            app_version: Some(rec.app_version.clone()),
            spec_digest: Some(backup::spec_digest(&rec.spec)),
            time_ms: backup::archive_time(&file).unwrap_or(now),
            size,
            mode: done.log.mode.clone(),
            notes,
            protected: self.policy.protected.unwrap_or(false),
            verified: Verified::Unverified,
            verified_ms: None,
            verify_detail: None,
            op_id: Some(ctx.id()),
            created_ms: now,
            missing_ms: None,
        };
        env.store.record_backup(&b)?;
        if let Some(mut fresh) = env.store.get_deployment(&self.name)? {
            fresh.last_backup_ms = Some(now);
            env.store.update_deployment(&fresh)?;
        }
        ctx.log(&format!(
            "backup {volid} recorded ({})",
            size.map_or("size unknown".into(), |s| format!("{s} bytes"))
        ));
        env.events.publish(
            EventType::Backup,
            serde_json::json!({"action": "backup_created", "deployment": self.name, "vmid": self.vmid,
                               "volid": volid, "size": size, "operation": ctx.id()}),
        );
        Ok(volid)
    }
}

impl OpTask for BackupOp {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(format!("ct/{}", self.vmid))
    }

    fn heavy(&self) -> bool {
        true
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::to_value(Payload {
            name: self.name.clone(),
            vmid: self.vmid,
            storage: self.storage(),
        })
        .unwrap_or_default()
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let r = self.work(ctx).await;
            if let (Ok(volid), Some(env)) = (&r, &self.env) {
                if let (true, Some(sink)) = (env.notify_backup_success, &env.alerts) {
                    let now = now_ms();
                    let _ = sink.raise(&Alert {
                        kind: AlertKind::BackupSucceeded,
                        severity: Severity::Info,
                        deployment: Some(self.name.clone()),
                        app: None,
                        title: format!("{}: backed up", self.name),
                        message: format!("{volid}; operation {}", ctx.id()),
                        dedupe_key: Some(format!("{}/backup/{}", self.name, ctx.id())),
                        time_ms: now,
                        data: serde_json::json!({"vmid": self.vmid, "operation": ctx.id(), "volid": volid}),
                    });
                }
            }
            let r = r.map(drop);
            if let (Err(e), Some(env)) = (&r, &self.env) {
                if let Some(sink) = &env.alerts {
                    let now = now_ms();
                    let alert = Alert {
                        kind: AlertKind::BackupFailed,
                        severity: Severity::Critical,
                        deployment: Some(self.name.clone()),
                        app: None,
                        title: format!("{}: backup failed", self.name),
                        message: format!("{}; operation {}", e.message, ctx.id()),
                        dedupe_key: Some(format!("{}/backup/{}", self.name, ctx.id())),
                        time_ms: now,
                        data: serde_json::json!({"vmid": self.vmid, "operation": ctx.id(), "storage": self.storage()}),
                    };
                    if let Err(e) = sink.raise(&alert) {
                        tracing::error!(deployment = %self.name, "cannot queue the backup alert: {e}");
                    }
                }
            }
            r
        })
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            // A vzdump killed with the daemon leaves its `backup` lock (and
            // maybe a `vzdump` snapshot, which the next vzdump removes).
            if super::clear_lock(ctx, self.vmid, &["backup"])
                .await?
                .is_none()
            {
                ctx.log("nothing to undo: vzdump removes its temporary files and the backup lock");
            }
            Ok(())
        })
    }
}

/// Rebuilds after a crash (nothing to undo).
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    Some(Box::new(BackupOp {
        env: None,
        name: p.name,
        vmid: p.vmid,
        policy: BackupPolicy {
            storage: Some(p.storage),
            ..Default::default()
        },
        pre_backup: Vec::new(),
    }))
}
