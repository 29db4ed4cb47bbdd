//! `POST /v1/deployments/{name}/upgrade`: to the app version this node
//! ships, with a safety point and rollback (the `deployment.upgrade`
//! operation), or a dry run that shows current → target and the method.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::deployments::{env, pve, record, secrets_of, submit};
use crate::api::{SafetyPoint, UpgradePreview, UpgradeRequest};
use crate::apps::settings::resolve;
use crate::deploy::spec::render_files;
use crate::deploy::{field_errors, find_app};
use crate::error::Error;
use crate::ops::kinds::upgrade::{steps, UpgradeOp, UpgradePlan};
use crate::server::error::{ApiJson, ApiPath};
use crate::server::{Caller, Ctx};

/// Storage types whose container volumes `pct snapshot` can snapshot.
pub const SNAPSHOT_TYPES: &[&str] = &["lvmthin", "zfspool", "rbd", "btrfs"];

/// `a` newer than `b`, comparing dot-separated numbers (text otherwise).
pub fn newer(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Option<Vec<u64>> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|p| p.parse().ok())
            .collect()
    };
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => x > y,
        _ => a > b,
    }
}

/// Upgrades a deployment: `202` + the operation, or `200` + the plan for a
/// dry run.
#[utoipa::path(
    post,
    path = "/v1/deployments/{name}/upgrade",
    tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    request_body = UpgradeRequest,
    responses(
        (status = 200, description = "Dry run: current → target, safety point, steps", body = UpgradePreview),
        (status = 202, description = "Upgrade started", body = crate::api::Operation),
        (status = 400, description = "A version this node does not ship, a downgrade, or a setting the new version needs", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
        (status = 409, description = "Already at that version, or another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn upgrade(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<UpgradeRequest>,
) -> Result<Response, Error> {
    let pve_h = pve(&ctx)?;
    let rec = record(&ctx, &name)?;
    let env = env(&ctx);
    let app = find_app(&env.catalog(), &rec.app)?;
    let m = &app.manifest;
    let target = m.version.clone();
    if let Some(want) = req.to_version.as_deref().filter(|w| *w != target) {
        let shown: String = want.chars().filter(|c| !c.is_control()).take(64).collect();
        return Err(Error::bad_request(
            "to_version",
            format!(
                "to_version: this node ships {} {target}, not {shown}; install the 1ld package that carries it (or drop to_version)",
                rec.app
            ),
        ));
    }
    if newer(&rec.app_version, &target) {
        return Err(Error::bad_request(
            "to_version",
            format!(
                "'{name}' runs {} {}, newer than the {target} this node ships; downgrades are not supported (restore a backup made before the upgrade instead)",
                rec.app, rec.app_version
            ),
        ));
    }
    let up_to_date = rec.app_version == target && !req.force;
    if up_to_date && !req.dry_run {
        return Err(Error::conflict(format!(
            "'{name}' already runs {} {target}; nothing to upgrade (force re-pushes it)",
            rec.app
        )));
    }
    let secrets = secrets_of(&env, &rec)?;
    let resolved = if up_to_date {
        // Nothing will be rendered.
        Default::default()
    } else {
        resolve(
            &m.settings,
            &rec.spec.settings,
            &BTreeMap::new(),
            Some(&secrets),
        )
        .map_err(|errs| {
            field_errors(
                errs.into_iter()
                    .map(|mut e| {
                        e.message = format!(
                            "{} (the new version needs it: set it with 1ldctl apply first)",
                            e.message
                        );
                        e
                    })
                    .collect(),
            )
        })?
    };
    let (files, config_hash) = render_files(&app, &name, &resolved, &env.apps.agents_dir);
    let storage = &rec.spec.resources.storage;
    let can_snapshot = pve_h
        .pvesm_status(Some(storage), None)
        .await
        .map_err(Error::from)?
        .iter()
        .any(|s| &s.name == storage && SNAPSHOT_TYPES.contains(&s.storage_type.as_str()));
    let safety = if can_snapshot {
        SafetyPoint::Snapshot
    } else if m.upgrade.backup_first {
        SafetyPoint::Backup
    } else {
        SafetyPoint::None
    };
    let plan = UpgradePlan {
        name: name.clone(),
        vmid: rec.vmid,
        app: rec.app.clone(),
        from_version: rec.app_version.clone(),
        to_version: target.clone(),
        safety,
        rollback: m.upgrade.rollback_on_failure,
        dirs: m.dirs.clone(),
        files,
        config_hash,
        user: m.service.user.clone(),
        unit: m.service.unit.clone(),
        health: crate::deploy::proxy::deployed_health(m, &rec.spec.tags),
        bridge: rec.spec.resources.bridge.clone(),
        policy: crate::backup::policy_of(&rec.spec, &env.backup),
        pre_backup: m.data.pre_backup.clone(),
        keep_safety_secs: ctx.app.config().upgrade.keep_safety_secs,
    };
    if req.dry_run {
        return Ok(Json(UpgradePreview {
            name,
            app: rec.app.clone(),
            from_version: rec.app_version.clone(),
            to_version: target,
            up_to_date,
            safety_point: safety,
            rollback_on_failure: plan.rollback,
            steps: if up_to_date { Vec::new() } else { steps(&plan) },
        })
        .into_response());
    }
    submit(&ctx, Box::new(UpgradeOp::new(env, plan)), caller).await
}

#[cfg(test)]
mod tests {
    use super::newer;

    #[test]
    fn versions_compare_by_number() {
        assert!(newer("0.10.0", "0.9.1"));
        assert!(newer("1.0.0", "0.99.99"));
        assert!(!newer("0.1.0", "0.1.0"));
        assert!(!newer("0.1.0", "0.2.0"));
    }
}
