//! `POST /v1/deployments/{name}/backups` (back up now, an operation) and
//! `GET /v1/backups?deployment=` (storage reconciled with the store).

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Json;

use super::deployments::{env, pve, record, submit};
use crate::api::{BackupInfo, BackupRequest, BackupsQuery};
use crate::apps::settings::FieldError;
use crate::deploy::field_errors;
use crate::error::Error;
use crate::ops::kinds::backup::BackupOp;
use crate::server::error::{ApiJson, ApiPath, ApiQuery};
use crate::server::{Caller, Ctx};

/// Backs a deployment up now: `202` + the `backup` operation.
#[utoipa::path(
    post,
    path = "/v1/deployments/{name}/backups",
    tag = "backups",
    params(("name" = String, Path, description = "Deployment name")),
    request_body = BackupRequest,
    responses(
        (status = 202, description = "Backup started", body = crate::api::Operation),
        (status = 400, description = "A policy problem (storage, retention), naming the field", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
        (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn post_backup(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<BackupRequest>,
) -> Result<Response, Error> {
    let pve_h = pve(&ctx)?;
    let rec = record(&ctx, &name)?;
    let env = env(&ctx);
    let policy = req.policy.or(&rec.spec.backup).or(&env.backup);
    let mut errs: Vec<FieldError> = policy
        .problems("policy")
        .into_iter()
        .map(|(f, m)| FieldError::new(f, m))
        .collect();
    let storage = policy.storage.clone().unwrap_or_default();
    let candidates: Vec<String> = pve_h
        .pvesm_status(None, Some("backup"))
        .await
        .map_err(Error::from)?
        .into_iter()
        .map(|s| s.name)
        .collect();
    if !candidates.contains(&storage) {
        errs.push(FieldError::new(
            "policy.storage",
            format!(
                "policy.storage: '{storage}' does not exist or has no content 'backup'; candidates: {}",
                if candidates.is_empty() {
                    "none (add `backup` to a storage's content: pvesm set <storage> --content ...,backup)".to_string()
                } else {
                    candidates.join(", ")
                }
            ),
        ));
    }
    if !errs.is_empty() {
        return Err(field_errors(errs));
    }
    let pre_backup = env
        .catalog()
        .get(&rec.app)
        .map(|a| a.manifest.data.pre_backup.clone())
        .unwrap_or_default();
    submit(
        &ctx,
        Box::new(BackupOp::new(env, &rec.name, rec.vmid, policy, pre_backup)),
        caller,
    )
    .await
}

/// Backups on the storages 1ld uses, reconciled with what it recorded, newest first.
#[utoipa::path(
    get,
    path = "/v1/backups",
    tag = "backups",
    params(BackupsQuery),
    responses(
        (status = 200, description = "Backups (recorded, found on storage, or recorded but gone)", body = Vec<BackupInfo>),
        (status = 503, description = "The Proxmox tools are missing", body = crate::api::ApiErrorBody)))]
pub async fn list_backups(
    State(ctx): State<Arc<Ctx>>,
    ApiQuery(q): ApiQuery<BackupsQuery>,
) -> Result<Json<Vec<BackupInfo>>, Error> {
    let pve_h = pve(&ctx)?;
    let base = ctx.app.config().backup.policy();
    Ok(Json(
        crate::backup::list(pve_h, &ctx.app.store, &base, q.deployment.as_deref()).await?,
    ))
}
