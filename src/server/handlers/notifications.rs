//! `/v1/notifications`: the targets and the delivery queue, test sends, and
//! the targets' secrets.
//!
//! Invariants: secrets are write-only (never read back; `has_secret` says
//! whether one is set) and every text shown passes the redactor; a test
//! send is a real delivery attempt now, not queued.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::api::{
    NotificationsQuery, NotificationsView, NotifyTestRequest, NotifyTestResult, SecretValue,
    NOTIFICATIONS_LIMIT_DEFAULT, NOTIFICATIONS_LIMIT_MAX,
};
use crate::error::Error;
use crate::server::error::{ApiJson, ApiPath, ApiQuery};
use crate::server::Ctx;
use crate::store::{NotificationFilter, NotificationStatus};

/// The targets (URLs masked) and the notifications matching the filters,
/// newest first.
#[utoipa::path(
    get,
    path = "/v1/notifications",
    tag = "notifications",
    params(NotificationsQuery),
    responses(
        (status = 200, description = "Targets and notifications", body = NotificationsView),
        (status = 400, description = "A bad filter", body = crate::api::ApiErrorBody),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn list_notifications(
    State(ctx): State<Arc<Ctx>>,
    ApiQuery(q): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationsView>, Error> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(NotificationStatus::parse(s).ok_or_else(|| {
            Error::bad_request(
                "status",
                format!("unknown notification status '{s}'; use pending, delivered or failed"),
            )
        })?),
    };
    let limit = q.limit.unwrap_or(NOTIFICATIONS_LIMIT_DEFAULT);
    if limit == 0 || limit > NOTIFICATIONS_LIMIT_MAX {
        return Err(Error::bad_request(
            "limit",
            format!("`limit` must be from 1 to {NOTIFICATIONS_LIMIT_MAX}"),
        ));
    }
    let n = &ctx.app.notifier;
    let rows = ctx.app.store.list_notifications(&NotificationFilter {
        status,
        target: q.target.filter(|t| !t.is_empty()),
        before: q.before,
        limit,
    })?;
    Ok(Json(NotificationsView {
        targets: n.targets()?,
        notifications: rows.iter().map(|r| n.to_api(r)).collect(),
    }))
}

/// Sends a test message to one target or to all, now (not queued), and
/// reports each attempt.
#[utoipa::path(
    post,
    path = "/v1/notifications/test",
    tag = "notifications",
    request_body = NotifyTestRequest,
    responses(
        (status = 200, description = "One result per target (delivered or not)", body = Vec<NotifyTestResult>),
        (status = 400, description = "No target is configured", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such target", body = crate::api::ApiErrorBody),
    )
)]
pub async fn test_notifications(
    State(ctx): State<Arc<Ctx>>,
    ApiJson(req): ApiJson<NotifyTestRequest>,
) -> Result<Json<Vec<NotifyTestResult>>, Error> {
    let target = req.target.as_deref().filter(|t| !t.is_empty());
    ctx.app.notifier.check_target(target)?;
    Ok(Json(ctx.app.notifier.send_test(target).await))
}

/// Sets a target's secret (webhook HMAC key, ntfy access token, Gotify app
/// token, Home Assistant webhook id). It is never shown again.
#[utoipa::path(
    put,
    path = "/v1/notifications/targets/{name}/secret",
    tag = "notifications",
    params(("name" = String, Path, description = "Target name")),
    request_body = SecretValue,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Empty or too long", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such target", body = crate::api::ApiErrorBody),
    )
)]
pub async fn put_target_secret(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<SecretValue>,
) -> Result<StatusCode, Error> {
    ctx.app.notifier.set_secret(&name, &body.value)?;
    tracing::info!(notify_target = %name, "notification target secret set");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a target's secret.
#[utoipa::path(
    delete,
    path = "/v1/notifications/targets/{name}/secret",
    tag = "notifications",
    params(("name" = String, Path, description = "Target name")),
    responses(
        (status = 204, description = "Deleted (or there was none)"),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such target", body = crate::api::ApiErrorBody),
    )
)]
pub async fn delete_target_secret(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, Error> {
    if ctx.app.notifier.remove_secret(&name)? {
        tracing::info!(notify_target = %name, "notification target secret deleted");
    }
    Ok(StatusCode::NO_CONTENT)
}
