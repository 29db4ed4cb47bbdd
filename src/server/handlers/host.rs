//! `GET /v1/host`: the facts a client needs to validate a deploy.
//!
//! Read through [`crate::pve`] (`pveversion`, `pvesm status`, `pveam`) and
//! `/sys/class/net`. The version and storages are required (a missing tool
//! is 503 naming it and `[pve] bin_dir`); the template index and the
//! template lists are best effort and report failures in `warnings`.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use futures_util::future::join_all;

use crate::api::{
    AvailableTemplate, DownloadedTemplate, HostInfo, HostTemplates, PveInfo, StorageInfo,
};
use crate::error::{Error, ErrorKind};
use crate::pve::parse::pvesm::StorageState;
use crate::pve::{Pve, PveError};
use crate::server::Ctx;

/// PVE's content types, each asked of `pvesm status --content`.
const CONTENT_TYPES: &[&str] = &["rootdir", "images", "vztmpl", "backup", "iso", "snippets"];

/// Where the kernel lists network devices; a bridge has a `bridge/` dir.
const SYS_CLASS_NET: &str = "/sys/class/net";

/// The node's Proxmox version, storages, bridges and templates.
#[utoipa::path(
    get,
    path = "/v1/host",
    tag = "host",
    responses(
        (status = 200, description = "The host's facts", body = HostInfo),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
        (status = 503, description = "The Proxmox tools are missing or failing", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_host(State(ctx): State<Arc<Ctx>>) -> Result<Json<HostInfo>, Error> {
    let pve = match &ctx.app.pve {
        Some(p) => p.clone(),
        // Not found at startup: maybe installed since, or bin_dir fixed.
        None => Pve::from_config(&ctx.app.config().pve)
            .await
            .map_err(unusable)?,
    };
    let mut info = host_info(&pve).await?;
    // Warnings quote the tools' output: free text, which may carry a secret.
    let redactor = ctx.app.secrets.redactor();
    for w in &mut info.warnings {
        *w = redactor.redact_string(w);
    }
    Ok(Json(info))
}

/// A detection failure is always "dependency down", with its reason.
fn unusable(e: PveError) -> Error {
    let err = Error::from(e);
    match err.kind {
        ErrorKind::DependencyDown => err,
        _ => Error::dependency_down(format!(
            "the Proxmox tools are not usable: {}; check `[pve] bin_dir`",
            err.detail.as_deref().unwrap_or(&err.message)
        )),
    }
}

/// Warns about a best-effort read, unless a tool is missing (that is a 503).
fn best_effort(what: &str, e: PveError, warnings: &mut Vec<String>) -> Result<(), Error> {
    let err = Error::from(e);
    if err.kind == ErrorKind::DependencyDown {
        return Err(err);
    }
    let why = err.detail.as_deref().unwrap_or(&err.message);
    tracing::warn!(what, error = why, "host facts incomplete");
    warnings.push(format!("{what}: {why}"));
    Ok(())
}

async fn host_info(pve: &Pve) -> Result<HostInfo, Error> {
    let mut warnings = Vec::new();
    let version = pve.version();
    let info = PveInfo {
        version: version.version.clone(),
        major: version.major,
        kernel: version.kernel.clone(),
        node: pve.node().to_string(),
    };

    let (status, by_content) = tokio::join!(
        pve.pvesm_status(None, None),
        join_all(
            CONTENT_TYPES
                .iter()
                .map(|c| pve.pvesm_status(None, Some(c)))
        )
    );
    let status = status?;
    let mut storages: Vec<StorageInfo> = status
        .into_iter()
        .map(|s| StorageInfo {
            name: s.name,
            storage_type: s.storage_type,
            state: match s.state {
                StorageState::Active => "active".to_string(),
                StorageState::Inactive => "inactive".to_string(),
                StorageState::Disabled => "disabled".to_string(),
                StorageState::Other(o) => o,
            },
            content: Vec::new(),
            total_bytes: s.total_kib.saturating_mul(1024),
            used_bytes: s.used_kib.saturating_mul(1024),
            avail_bytes: s.avail_kib.saturating_mul(1024),
        })
        .collect();
    for (content, rows) in CONTENT_TYPES.iter().zip(by_content) {
        for row in rows? {
            if let Some(s) = storages.iter_mut().find(|s| s.name == row.name) {
                s.content.push((*content).to_string());
            }
        }
    }

    let template_storages: Vec<&str> = storages
        .iter()
        .filter(|s| s.content.iter().any(|c| c == "vztmpl"))
        .map(|s| s.name.as_str())
        .collect();
    let (available, lists) = tokio::join!(
        pve.pveam_available(None),
        join_all(template_storages.iter().map(|s| pve.pveam_list(s)))
    );
    let available = match available {
        Ok(list) => list
            .into_iter()
            .map(|t| AvailableTemplate {
                section: t.section,
                name: t.name,
                arch: t.arch,
            })
            .collect(),
        Err(e) => {
            best_effort(
                "template index unavailable (run `pveam update`)",
                e,
                &mut warnings,
            )?;
            Vec::new()
        }
    };
    let mut downloaded = Vec::new();
    for (storage, list) in template_storages.iter().zip(lists) {
        match list {
            Ok(list) => downloaded.extend(list.into_iter().map(|t| DownloadedTemplate {
                storage: (*storage).to_string(),
                volid: t.volid,
                size_bytes: t.size,
            })),
            Err(e) => best_effort(
                &format!("templates on storage '{storage}' unreadable"),
                e,
                &mut warnings,
            )?,
        }
    }

    let bridges = bridges(Path::new(SYS_CLASS_NET));
    Ok(HostInfo {
        pve: info,
        storages,
        bridges,
        templates: HostTemplates {
            available,
            downloaded,
        },
        warnings,
    })
}

/// The Linux bridges under `sys_class_net`, sorted.
fn bridges(sys_class_net: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(sys_class_net) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("bridge").is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridge_is_a_device_with_a_bridge_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vmbr1/bridge")).unwrap();
        std::fs::create_dir_all(dir.path().join("vmbr0/bridge")).unwrap();
        std::fs::create_dir_all(dir.path().join("eth0")).unwrap();
        assert_eq!(bridges(dir.path()), vec!["vmbr0", "vmbr1"]);
        assert!(bridges(&dir.path().join("missing")).is_empty());
    }
}
