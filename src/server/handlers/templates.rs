//! `/v1/templates`: downloading container templates (an operation).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{Operation, TemplateRequest};
use crate::error::Error;
use crate::ops::kinds::template_download::TemplateDownload;
use crate::server::auth::Caller;
use crate::server::error::{with_location, ApiJson};
use crate::server::Ctx;

/// Starts downloading `template` from the appliance index onto `storage`:
/// `202 Accepted`, `Location: /v1/operations/{id}`, the operation.
#[utoipa::path(
    post,
    path = "/v1/templates",
    tag = "templates",
    request_body = TemplateRequest,
    responses(
        (status = 202, description = "Download started", body = Operation,
         headers(("Location" = String, description = "/v1/operations/{id}"))),
        (status = 400, description = "Bad or unknown field", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 409, description = "The template is already being downloaded (names the operation)", body = crate::api::ApiErrorBody),
        (status = 413, description = "Body too large", body = crate::api::ApiErrorBody),
    )
)]
pub async fn post_templates(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiJson(req): ApiJson<TemplateRequest>,
) -> Result<Response, Error> {
    // Validates both names (400 naming the field).
    let task = TemplateDownload::new(&req.storage, &req.template)?;
    let op = ctx.app.ops.submit(Box::new(task), caller.requestor).await?;
    let location = format!("/v1/operations/{}", op.id);
    Ok(with_location(
        (StatusCode::ACCEPTED, Json(op)).into_response(),
        &location,
    ))
}
