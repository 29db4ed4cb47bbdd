//! `POST /v1/deployments/{name}/backups` (back up now, an operation) and
//! `GET /v1/backups?deployment=` (storage reconciled with the store),
//! `POST /v1/backups/{volid}/restore` and `POST /v1/backups/{volid}/verify`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::Json;

use super::deployments::{env, pve, record, submit};
use crate::api::{BackupInfo, BackupRequest, BackupsQuery, RestoreMode, RestoreRequest};
use crate::apps::settings::FieldError;
use crate::deploy::field_errors;
use crate::error::Error;
use crate::ops::kinds::backup::BackupOp;
use crate::ops::kinds::restore::{RestoreOp, RestorePlan, Target};
use crate::ops::kinds::verify::VerifyOp;
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
        (status = 400, description = "Bad or unknown query parameter", body = crate::api::ApiErrorBody),
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

/// The backup 1ld recorded as `volid`, or a 404 that says where to look.
fn recorded(ctx: &Ctx, volid: &str) -> Result<crate::store::BackupRecord, Error> {
    let shown: String = volid
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    ctx.app.store.backup(volid)?.ok_or_else(|| {
        Error::not_found(format!(
            "no backup '{shown}' recorded by 1ld (GET /v1/backups lists them; archives not made by 1ld can be restored with pct restore)"
        ))
    })
}

/// Proves a backup restores and runs: `202` + the `backup.verify`
/// operation (a throwaway container from `[backup] verify_vmid_range`,
/// link down, the app's self-check, the result recorded on the backup).
#[utoipa::path(
    post,
    path = "/v1/backups/{volid}/verify",
    tag = "backups",
    params(("volid" = String, Path, description = "The backup's volume id, percent-encoded")),
    responses(
        (status = 202, description = "Verification started", body = crate::api::Operation),
        (status = 400, description = "The backup's app is not in the catalog", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such backup recorded", body = crate::api::ApiErrorBody),
        (status = 409, description = "This backup is being verified already", body = crate::api::ApiErrorBody)))]
pub async fn verify_backup(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(volid): ApiPath<String>,
) -> Result<Response, Error> {
    pve(&ctx)?;
    let b = recorded(&ctx, &volid)?;
    let env = env(&ctx);
    let plan = crate::backup::verify_plan(&env, ctx.app.config().backup.verify_vmid_range, &b)?;
    submit(&ctx, Box::new(VerifyOp::new(env, plan)), caller).await
}

/// Restores a backup 1ld recorded, in place or as a new deployment:
/// `202` + the `backup.restore` operation.
#[utoipa::path(
    post,
    path = "/v1/backups/{volid}/restore",
    tag = "backups",
    params(("volid" = String, Path, description = "The backup's volume id, percent-encoded")),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "Restore started", body = crate::api::Operation),
        (status = 400, description = "A bad name, or in place without its deployment", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such backup recorded", body = crate::api::ApiErrorBody),
        (status = 409, description = "Another operation holds the container or name", body = crate::api::ApiErrorBody)))]
pub async fn restore_backup(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(volid): ApiPath<String>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<Response, Error> {
    pve(&ctx)?;
    let b = recorded(&ctx, &volid)?;
    let env = env(&ctx);
    let app_name = b.app.clone().unwrap_or_default();
    let app = crate::deploy::find_app(&env.catalog(), &app_name)?;
    let base = match &b.deployment {
        Some(d) => ctx.app.store.get_deployment(d)?,
        None => None,
    };
    let target = match req.mode {
        RestoreMode::InPlace => {
            let Some(rec) = &base else {
                return Err(Error::bad_request(
                    "mode",
                    format!(
                        "mode: in_place needs the backup's deployment '{}', which no longer exists; restore with mode new",
                        b.deployment.as_deref().unwrap_or("?")
                    ),
                ));
            };
            Target::InPlace {
                name: rec.name.clone(),
                vmid: rec.vmid,
            }
        }
        RestoreMode::New => {
            let name = req.name.clone().unwrap_or_else(|| {
                format!("{}-restored", b.deployment.as_deref().unwrap_or(&app_name))
            });
            if !crate::apps::manifest::is_dns_label(&name)
                || crate::api::RESERVED_NAMES.contains(&name.as_str())
            {
                return Err(Error::bad_request(
                    "name",
                    format!(
                        "name: '{}' is not a DNS label (a-z, 0-9, '-', at most 63) or is reserved",
                        name.chars()
                            .filter(|c| !c.is_control())
                            .take(64)
                            .collect::<String>()
                    ),
                ));
            }
            if ctx.app.store.get_deployment(&name)?.is_some() {
                return Err(Error::bad_request(
                    "name",
                    format!("name: a deployment called '{name}' exists; give another name"),
                ));
            }
            Target::New { name }
        }
    };
    let storage = base
        .as_ref()
        .map(|r| r.spec.resources.storage.clone())
        .unwrap_or_else(|| env.apps.storage.clone());
    let m = &app.manifest;
    let plan = RestorePlan {
        volid: b.volid.clone(),
        app: app_name,
        storage,
        vmid_range: (m.container.vmid_range[0], m.container.vmid_range[1]),
        health: base
            .as_ref()
            .map(|r| crate::deploy::proxy::deployed_health(m, &r.spec.tags))
            .unwrap_or_else(|| m.health.clone()),
        base,
        target,
    };
    submit(&ctx, Box::new(RestoreOp::new(env, plan)), caller).await
}
