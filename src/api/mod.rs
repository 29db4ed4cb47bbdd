//! Wire types of the REST API, shared by the daemon and the client.
//!
//! Invariants: plain data only (serde + OpenAPI schemas); no tokio, hyper or
//! I/O here, so the client can depend on it cheaply. Request types reject
//! unknown fields; times are RFC 3339 UTC strings; enums are snake_case.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub mod backups;
pub mod deployments;
pub mod health;
pub mod notifications;
pub mod upgrades;

pub use backups::{
    BackupInfo, BackupModeName, BackupPolicy, BackupRequest, BackupsQuery, RestoreMode,
    RestoreRequest, Verified,
};
pub use deployments::{
    AdoptRequest, AppCatalog, AppContainer, AppInfo, AppLoadError, ApplyPreview, ApplyRequest,
    Change, ContainerState, DeleteQuery, DeployRequest, Deployment, DeploymentQuery, Drift,
    HealthStatus, HealthSummary, IntendedState, LogLine, LogsQuery, Overrides, Plan, PlanFile,
    Resources, SettingInfo, SettingKind, UnmanagedContainer, LOG_LINES_DEFAULT, LOG_LINES_MAX,
    RESERVED_NAMES, SECRET_MASK,
};
pub use health::{
    DeploymentHealth, HealthHour, HealthQuery, HealthRun, HealthState, Incident, LadderView,
    ProbeOutcome, Remediation, SuperviseOverrides, SupervisionSummary,
};

pub use upgrades::{SafetyPoint, UpgradePreview, UpgradeRequest};

pub use notifications::{
    Notification, NotificationsQuery, NotificationsView, NotifyTarget, NotifyTestRequest,
    NotifyTestResult, SecretValue, NOTIFICATIONS_LIMIT_DEFAULT, NOTIFICATIONS_LIMIT_MAX,
};

/// The API versions this daemon serves.
pub const API_VERSIONS: &[&str] = &["v1"];

/// The error body every failed request carries:
/// `{"error":{"code":"snake_case","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiErrorInner,
}

/// A machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiErrorInner {
    /// Stable snake_case code (`bad_request`, `not_found`, `locked`, ...).
    pub code: String,
    /// What failed, why, and what to do.
    pub message: String,
}

/// `GET /`: what this daemon speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RootInfo {
    /// Served API versions (`["v1"]`).
    pub api_versions: Vec<String>,
    /// Optional features, so clients can check before use (`operations`, `events`, ...).
    pub api_extensions: Vec<String>,
    /// The daemon's version.
    pub daemon_version: String,
}

/// Who asked for something (from the connection's peer credentials).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Requestor {
    /// User id.
    pub uid: u32,
    /// User name (or the uid as text when it has none).
    pub user: String,
    /// Process id of the client.
    pub pid: i32,
}

/// Where an operation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpStatus {
    /// Waiting for a lock or a slot.
    Queued,
    /// Running a step.
    Running,
    /// Done.
    Succeeded,
    /// Failed; `error` says why. Compensation ran.
    Failed,
    /// Cancelled on request; compensation ran.
    Cancelled,
    /// The daemon stopped or crashed while it ran; compensation ran at startup.
    Interrupted,
}

impl OpStatus {
    /// Whether the operation has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, OpStatus::Queued | OpStatus::Running)
    }
}

/// How far an operation got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct Progress {
    /// Current step, 1-based (0 before the first).
    pub step: u32,
    /// Number of steps.
    pub steps: u32,
    /// Name of the current step.
    pub name: String,
    /// Percent of the current step, where known.
    pub percent: Option<f32>,
}

/// A long-running, host-mutating action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Operation {
    /// Opaque id.
    pub id: String,
    /// What it does (`template.download`, `deploy`, ...).
    pub kind: String,
    /// What it acts on (`ct/140`, `template/local/<file>`), the lock key.
    pub target: Option<String>,
    /// Who asked.
    pub requestor: Requestor,
    /// Where it is.
    pub status: OpStatus,
    /// Why it failed (final states other than `succeeded`).
    pub error: Option<ApiErrorInner>,
    /// When it was submitted.
    pub created_at: String,
    /// When it started running.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
    /// Progress.
    pub progress: Progress,
    /// Whether `DELETE /v1/operations/{id}` can cancel it now.
    pub cancellable: bool,
}

/// A slice of an operation's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpLogChunk {
    /// Lines from `offset` on.
    pub lines: Vec<String>,
    /// Pass as `offset` to read on.
    pub next_offset: u64,
    /// The operation has ended and this is the end of its log.
    pub complete: bool,
}

/// Event families a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    /// Operation state and progress changes.
    Operation,
    /// Mutating requests (the audit trail) and daemon start/stop.
    Lifecycle,
    /// Health state changes.
    Health,
    /// Backups.
    Backup,
    /// The subscriber fell behind and was dropped; the stream ends after it.
    Lagged,
}

impl EventType {
    /// Parses one name of the `type=` query list.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operation" => Some(Self::Operation),
            "lifecycle" => Some(Self::Lifecycle),
            "health" => Some(Self::Health),
            "backup" => Some(Self::Backup),
            _ => None,
        }
    }
}

/// One event of `GET /v1/events` (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Strictly increasing per daemon run.
    pub seq: u64,
    /// When it happened.
    pub time: String,
    /// Its family.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Family-specific data.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// The API extensions this daemon announces in [`RootInfo::api_extensions`].
pub const API_EXTENSIONS: &[&str] = &[
    "operations",
    "events",
    "templates",
    "host",
    "apps",
    "deployments",
    "logs",
    "event_history",
    "notifications",
];

/// `GET /v1/host`: the facts a client needs to validate a deploy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostInfo {
    /// The Proxmox VE node.
    pub pve: PveInfo,
    /// Storages with their content types and space.
    pub storages: Vec<StorageInfo>,
    /// Linux bridges guests can attach to (`vmbr0`, ...), sorted.
    pub bridges: Vec<String>,
    /// Container templates.
    pub templates: HostTemplates,
    /// Facts that could not be read; the rest of the answer is still valid
    /// (e.g. "template index unavailable ...; run `pveam update`").
    pub warnings: Vec<String>,
}

/// The Proxmox VE version and node name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PveInfo {
    /// The full `pve-manager` version (`8.2.4`, `9.0.0~22`).
    pub version: String,
    /// Its major version (8, 9, ...).
    pub major: u32,
    /// The running kernel, when `pveversion` prints it.
    pub kernel: Option<String>,
    /// The node name.
    pub node: String,
}

/// One storage of the node (`pvesm status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StorageInfo {
    /// Storage id (`local`, `local-lvm`).
    pub name: String,
    /// Storage type (`dir`, `lvmthin`, `zfspool`, `nfs`, ...).
    #[serde(rename = "type")]
    pub storage_type: String,
    /// `active`, `inactive`, `disabled` or what the tool printed.
    pub state: String,
    /// Content types it accepts (`rootdir`, `images`, `vztmpl`, `backup`, `iso`, `snippets`).
    pub content: Vec<String>,
    /// Total space in bytes.
    pub total_bytes: u64,
    /// Used space in bytes.
    pub used_bytes: u64,
    /// Free space in bytes.
    pub avail_bytes: u64,
}

/// Templates offered by the appliance index and templates already on storages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HostTemplates {
    /// From the appliance index (`pveam available`).
    pub available: Vec<AvailableTemplate>,
    /// On the node's template storages (`pveam list <storage>`).
    pub downloaded: Vec<DownloadedTemplate>,
}

/// A template the appliance index offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AvailableTemplate {
    /// `system`, `mail`, `turnkeylinux`, ...
    pub section: String,
    /// The file name to pass as `template` to `POST /v1/templates`.
    pub name: String,
    /// Architecture, where the index says (PVE ≥ 9.2.7).
    pub arch: Option<String>,
}

/// A template stored on a storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DownloadedTemplate {
    /// The storage holding it.
    pub storage: String,
    /// Its volume id (`local:vztmpl/<file>`), what a deploy's `ostemplate` names.
    pub volid: String,
    /// Size in bytes, where known.
    pub size_bytes: Option<u64>,
}

/// `POST /v1/templates`: download a template from the appliance index onto a storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateRequest {
    /// A storage with content type `vztmpl` (see `GET /v1/host`).
    pub storage: String,
    /// A file name from the appliance index (`GET /v1/host` → `templates.available[].name`).
    pub template: String,
}

/// Query of `GET /v1/operations`: every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OperationsQuery {
    /// Only operations in these states, comma-separated (`queued,running`).
    pub status: Option<String>,
    /// Only operations of this kind (`template.download`, ...).
    pub kind: Option<String>,
    /// Only operations on this target (`ct/140`, `template/local/<file>`).
    pub target: Option<String>,
    /// At most this many (newest first); default 100, at most 1000.
    pub limit: Option<u32>,
}

/// Query of `GET /v1/operations/{id}/log`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Where to start reading: `next_offset` of the previous chunk; default 0.
    pub offset: Option<u64>,
}

/// Query of `GET /v1/operations/{id}/wait`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the operation to end; default 30, at most 300.
    /// The current state is returned when it passes.
    pub timeout: Option<u64>,
}

/// Query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event types: `operation`, `lifecycle`, `health`,
    /// `backup`. Default: all of them.
    #[serde(rename = "type")]
    pub types: Option<String>,
    /// Only events with a `seq` greater than this: the events the daemon
    /// still holds in memory (the last 1024) are sent first, oldest first,
    /// then (with `follow`) live ones, without gaps or duplicates. Without
    /// `after` and with `follow`, only live events are sent; without
    /// `follow`, `after` defaults to 0 (all held events).
    pub after: Option<u64>,
    /// Keep the stream open for live events (default true); false sends the
    /// held events and ends.
    pub follow: Option<bool>,
}
