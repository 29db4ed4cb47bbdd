//! `GET /`: which API versions and extensions this daemon speaks.

use axum::Json;

use crate::api::{RootInfo, API_EXTENSIONS, API_VERSIONS};

/// The API versions, extensions and the daemon's version.
#[utoipa::path(
    get,
    path = "/",
    tag = "root",
    responses(
        (status = 200, description = "What this daemon speaks", body = RootInfo),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_root() -> Json<RootInfo> {
    Json(RootInfo {
        api_versions: API_VERSIONS.iter().map(|s| s.to_string()).collect(),
        api_extensions: API_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
    })
}
