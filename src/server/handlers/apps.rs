//! `/v1/apps`: the app catalog (built-in and user manifests).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use crate::api::{AppCatalog, AppInfo};
use crate::apps::Catalog;
use crate::error::Error;
use crate::server::error::ApiPath;
use crate::server::Ctx;

fn catalog(ctx: &Ctx) -> Catalog {
    Catalog::load(&ctx.app.config().apps.dir)
}

/// Every app, and the manifest files that failed to load (file, line, key).
#[utoipa::path(
    get,
    path = "/v1/apps",
    tag = "apps",
    responses(
        (status = 200, description = "The catalog", body = AppCatalog),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn list_apps(State(ctx): State<Arc<Ctx>>) -> Json<AppCatalog> {
    let c = catalog(&ctx);
    Json(AppCatalog {
        apps: c.apps().map(|a| a.info()).collect(),
        errors: c.errors().to_vec(),
    })
}

/// One app: container defaults, settings schema, health probe.
#[utoipa::path(
    get,
    path = "/v1/apps/{name}",
    tag = "apps",
    params(("name" = String, Path, description = "App name")),
    responses(
        (status = 200, description = "The app", body = AppInfo),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such app", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_app(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<AppInfo>, Error> {
    let c = catalog(&ctx);
    c.get(&name).map(|a| Json(a.info())).ok_or_else(|| {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        Error::not_found(format!(
            "no app called '{shown}'; known apps: {}",
            c.names().join(", ")
        ))
    })
}
