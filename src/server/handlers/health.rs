//! `GET /v1/deployments/{name}/health`: the supervised state, the open
//! incident, the ladder's budget, uptime and the history over a window.
//! A read of the store and the supervisor's memory; no host call.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::deployments::record;
use crate::api::{DeploymentHealth, HealthQuery};
use crate::error::Error;
use crate::server::error::{ApiPath, ApiQuery};
use crate::server::Ctx;
use crate::store::now_ms;
use crate::supervise::{self, history, ladder, Timing};

/// The deployment's health.
#[utoipa::path(
    get,
    path = "/v1/deployments/{name}/health",
    tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), HealthQuery),
    responses(
        (status = 200, description = "State, incident, remediation budget, uptime and history", body = DeploymentHealth),
        (status = 400, description = "`since` is not a time or duration", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody)))]
pub async fn get_deployment_health(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> Result<Json<DeploymentHealth>, Error> {
    let rec = record(&ctx, &name)?;
    let now = now_ms();
    let since = history::parse_since(q.since.as_deref(), now)?;
    let cfg = ctx.app.config();
    let sup = &ctx.app.supervisor;
    let catalog = sup.catalog();
    let app = catalog.get(&rec.app).map(|a| &a.manifest);
    let timing = Timing::of(&cfg.supervise, app, &rec.spec.supervise);
    let probe = match app {
        Some(m) => format!("{}; {}", m.probe_text(), timing.text()),
        None => format!("app '{}' is not in the catalog; {}", rec.app, timing.text()),
    };
    let row = ctx.app.store.supervision(&name)?;
    let live = sup.live_of(&name);
    let policy = supervise::policy(&cfg.supervise);
    let policy_next = row
        .as_ref()
        .and_then(|r| ladder::next_allowed(&r.ladder.recent_ms, &policy));
    Ok(Json(history::view(
        &ctx.app.store,
        &name,
        row.as_ref(),
        live.as_ref(),
        probe,
        cfg.supervise.max_remediations_per_hour,
        policy_next,
        since,
        now,
    )?))
}
