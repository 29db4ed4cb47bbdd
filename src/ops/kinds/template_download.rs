//! `template.download`: puts an OS template from the appliance index on a
//! storage (`pveam download`). Exposed as `POST /v1/templates`.
//!
//! Steps: (1) the storage exists, is active and holds `vztmpl` content
//! (`pvesm status --content vztmpl`); (2) the template is already there
//! (`pveam list`) → done; (3) it is in the appliance index, running
//! `pveam update` if not; (4) `pveam download` (cancellable: a cancel kills
//! the download's process group); (5) verify it is listed.
//!
//! Compensation removes the template volume only if this operation recorded
//! (in its payload, before downloading) that it was **not** present before;
//! when that is unknown (a crash before step 2 ended) nothing is removed.
//! `pveam download` writes to a temp file (`<name>.tmp_dwnl.<pid>`) and
//! renames it at the end, so a killed download leaves no volume; such a
//! temp file is Proxmox's, not a volume, and is left alone.
//! Lock key: `template/<storage>/<template>`.

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ops::{OpCtx, OpTask};
use crate::pve::parse::pvesm::{StorageState, StorageStatus};

/// The kind's name.
pub const KIND: &str = "template.download";
const STEPS: u32 = 5;

/// A validated request: which template on which storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateDownload {
    storage: String,
    template: String,
}

/// The persisted payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    storage: String,
    template: String,
    /// Learnt in step 2; decides whether compensation may remove the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    present_before: Option<bool>,
}

/// Whether `id` is a valid PVE storage id (`[a-z][a-z0-9._-]*`, any case).
fn valid_storage(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id.len() <= 64
}

/// Whether `name` can be a template file name from `pveam available`.
fn valid_template(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'))
}

impl TemplateDownload {
    /// Validates the request; 400 naming `storage` or `template`.
    pub fn new(storage: &str, template: &str) -> Result<Self, Error> {
        if !valid_storage(storage) {
            return Err(Error::bad_request(
                "storage",
                format!("'{storage}' is not a storage id (see `pvesm status`)"),
            ));
        }
        if !valid_template(template) {
            return Err(Error::bad_request(
                "template",
                format!("'{template}' is not a template file name (see `pveam available`, e.g. debian-12-standard_12.7-1_amd64.tar.zst)"),
            ));
        }
        Ok(Self {
            storage: storage.to_string(),
            template: template.to_string(),
        })
    }

    /// The template's volume id: `<storage>:vztmpl/<template>`.
    pub fn volid(&self) -> String {
        format!("{}:vztmpl/{}", self.storage, self.template)
    }

    fn present_before(ctx: &OpCtx) -> Option<bool> {
        serde_json::from_value::<Payload>(ctx.payload())
            .ok()
            .and_then(|p| p.present_before)
    }

    fn record_present_before(&self, ctx: &OpCtx, present: bool) {
        let p = Payload {
            storage: self.storage.clone(),
            template: self.template.clone(),
            present_before: Some(present),
        };
        match serde_json::to_value(p) {
            Ok(v) => ctx.set_payload(v),
            Err(e) => tracing::error!(error = %e, "cannot encode a template.download payload"),
        }
    }

    async fn is_present(&self, ctx: &OpCtx) -> Result<bool, Error> {
        let volid = self.volid();
        Ok(ctx
            .pve()?
            .pveam_list(&self.storage)
            .await?
            .iter()
            .any(|t| t.volid == volid))
    }

    async fn in_index(&self, ctx: &OpCtx) -> Result<bool, Error> {
        Ok(ctx
            .pve()?
            .pveam_available(None)
            .await?
            .iter()
            .any(|t| t.name == self.template))
    }

    async fn run_steps(&self, ctx: &OpCtx) -> Result<(), Error> {
        let pve = ctx.pve()?;
        ctx.step(1, STEPS, "check storage");
        let storages = pve.pvesm_status(None, Some("vztmpl")).await?;
        check_storage(&storages, &self.storage)?;
        ctx.checkpoint()?;

        ctx.step(2, STEPS, "check whether the template is present");
        let present = self.is_present(ctx).await?;
        self.record_present_before(ctx, present);
        if present {
            ctx.log(&format!(
                "{} is already on storage '{}'; nothing to do",
                self.volid(),
                self.storage
            ));
            return Ok(());
        }
        ctx.checkpoint()?;

        ctx.step(3, STEPS, "check the appliance index");
        if !self.in_index(ctx).await? {
            ctx.log(&format!(
                "'{}' is not in the local appliance index; running `pveam update`",
                self.template
            ));
            ctx.until_cancelled(async { Ok(pve.pveam_update().await?) })
                .await?;
            if !self.in_index(ctx).await? {
                return Err(Error::bad_request(
                    "template",
                    format!("'{}' is not in the appliance index, even after `pveam update`; pick a name from `pveam available`", self.template),
                ));
            }
        }
        ctx.checkpoint()?;

        ctx.step(4, STEPS, "download");
        let volid = ctx
            .until_cancelled(async { Ok(pve.pveam_download(&self.storage, &self.template).await?) })
            .await?;
        ctx.log(&format!("downloaded {volid}"));

        ctx.set_cancellable(false);
        ctx.step(5, STEPS, "verify");
        if !self.is_present(ctx).await? {
            return Err(Error::internal(format!(
                "`pveam download` succeeded but {} is not listed by `pveam list {}`",
                self.volid(),
                self.storage
            )));
        }
        Ok(())
    }

    async fn undo(&self, ctx: &OpCtx) -> Result<(), Error> {
        match Self::present_before(ctx) {
            Some(true) => {
                ctx.log("the template was there before this operation; keeping it");
                return Ok(());
            }
            None => {
                ctx.log("unknown whether the template was there before; keeping whatever is on the storage");
                return Ok(());
            }
            Some(false) => {}
        }
        if self.is_present(ctx).await? {
            let volid = self.volid();
            ctx.pve()?.pveam_remove(&volid).await?;
            ctx.log(&format!("removed {volid}"));
        } else {
            ctx.log("no template volume to remove");
        }
        Ok(())
    }
}

/// Step 1's decision: `storage` must be among the storages that hold
/// `vztmpl` content, and active.
pub fn check_storage(vztmpl_storages: &[StorageStatus], storage: &str) -> Result<(), Error> {
    let Some(s) = vztmpl_storages.iter().find(|s| s.name == storage) else {
        let names: Vec<&str> = vztmpl_storages.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::bad_request(
            "storage",
            if names.is_empty() {
                format!("storage '{storage}' does not hold container templates, and no storage on this node has content type 'vztmpl'; enable it on one (Datacenter → Storage)")
            } else {
                format!("storage '{storage}' does not hold container templates (content type 'vztmpl'); pick one of: {}", names.join(", "))
            },
        ));
    };
    if s.state != StorageState::Active {
        return Err(Error::dependency_down(format!(
            "storage '{storage}' is not active ({:?}); check `pvesm status`",
            s.state
        )));
    }
    Ok(())
}

impl OpTask for TemplateDownload {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn target(&self) -> Option<String> {
        Some(format!("template/{}/{}", self.storage, self.template))
    }

    fn heavy(&self) -> bool {
        false
    }

    fn payload(&self) -> serde_json::Value {
        serde_json::json!({ "storage": self.storage, "template": self.template })
    }

    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.run_steps(ctx))
    }

    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.undo(ctx))
    }
}

/// Rebuilds the task from its persisted payload.
pub fn rebuild(payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    let p: Payload = serde_json::from_value(payload.clone()).ok()?;
    let t = TemplateDownload::new(&p.storage, &p.template).ok()?;
    Some(Box::new(t))
}

#[cfg(test)]
mod tests;
