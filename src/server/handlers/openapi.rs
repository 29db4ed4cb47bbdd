//! `GET /v1/openapi.json`: the OpenAPI document, generated from the code.
//!
//! Every handler's `#[utoipa::path]` and every wire type is listed in
//! [`ApiDoc`]; `tests/api.rs` compares the served document with the golden
//! `tests/fixtures/openapi.json`, so a change of the API surface is a
//! deliberate, reviewed diff.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::api;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "1ld",
        version = "v1",
        description = "The 1ld daemon's API on its Unix socket (/run/1ld/1ld.sock). \
                       Roles come from the connection's peer credentials: admin (root or \
                       `[api] admin_group`), viewer (`[api] group`, GET only, no logs)."
    ),
    paths(
        super::root::get_root,
        super::host::get_host,
        super::operations::list_operations,
        super::operations::get_operation,
        super::operations::get_operation_log,
        super::operations::wait_operation,
        super::operations::cancel_operation,
        super::templates::post_templates,
        super::apps::list_apps,
        super::apps::get_app,
        super::deployments::post_deployments,
        super::deployments::list_deployments,
        super::deployments::get_deployment,
        super::deployments::put_deployment,
        super::deployments::delete_deployment,
        super::deployments::start_deployment,
        super::deployments::stop_deployment,
        super::deployments::restart_deployment,
        super::deployments::list_unmanaged,
        super::deployments::adopt_deployment,
        super::logs::get_deployment_logs,
        super::health::get_deployment_health,
        super::backups::post_backup,
        super::backups::list_backups,
        super::backups::restore_backup,
        super::backups::verify_backup,
        super::upgrades::upgrade,
        super::metrics::get_metrics,
        super::events::get_events,
        super::notifications::list_notifications,
        super::notifications::test_notifications,
        super::notifications::put_target_secret,
        super::notifications::delete_target_secret,
        get_openapi,
    ),
    components(schemas(
        api::ApiErrorBody,
        api::ApiErrorInner,
        api::RootInfo,
        api::Requestor,
        api::OpStatus,
        api::Progress,
        api::Operation,
        api::OpLogChunk,
        api::EventType,
        api::Event,
        api::HostInfo,
        api::PveInfo,
        api::StorageInfo,
        api::HostTemplates,
        api::AvailableTemplate,
        api::DownloadedTemplate,
        api::TemplateRequest,
        api::AppCatalog,
        api::AppInfo,
        api::AppContainer,
        api::AppLoadError,
        api::SettingInfo,
        api::SettingKind,
        api::DeployRequest,
        api::Overrides,
        api::Plan,
        api::PlanFile,
        api::Deployment,
        api::IntendedState,
        api::ContainerState,
        api::HealthStatus,
        api::HealthSummary,
        api::Resources,
        api::Drift,
        api::ApplyRequest,
        api::ApplyPreview,
        api::Change,
        api::AdoptRequest,
        api::UnmanagedContainer,
        api::LogLine,
        api::HealthState,
        api::ProbeOutcome,
        api::DeploymentHealth,
        api::Incident,
        api::Remediation,
        api::LadderView,
        api::HealthRun,
        api::HealthHour,
        api::SupervisionSummary,
        api::SuperviseOverrides,
        api::BackupPolicy,
        api::BackupModeName,
        api::BackupInfo,
        api::BackupRequest,
        api::Verified,
        api::RestoreMode,
        api::RestoreRequest,
        api::UpgradeRequest,
        api::UpgradePreview,
        api::SafetyPoint,
        api::NotificationsView,
        api::NotifyTarget,
        api::Notification,
        api::notifications::Severity,
        api::notifications::NotificationStatus,
        api::NotifyTestRequest,
        api::NotifyTestResult,
        api::SecretValue,
    )),
    tags(
        (name = "root", description = "Versions and extensions"),
        (name = "host", description = "The Proxmox node"),
        (name = "operations", description = "Long-running host changes"),
        (name = "templates", description = "Container templates"),
        (name = "apps", description = "The app catalog"),
        (name = "deployments", description = "Apps running in their containers"),
        (name = "events", description = "The event stream"),
        (name = "metrics", description = "Prometheus metrics"),
        (name = "backups", description = "vzdump backups of deployments"),
        (name = "notifications", description = "Alert targets and the delivery queue"),
        (name = "openapi", description = "This document"),
    )
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            "{}".to_string()
        })
    })
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "openapi",
    responses(
        (status = 200, description = "OpenAPI 3 document", content_type = "application/json", body = Object),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}
