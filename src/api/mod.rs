//! Wire types of the REST API, shared by the daemon and the client.
//!
//! Invariants: plain data only (serde + OpenAPI schemas); no tokio, hyper or
//! I/O here, so the client can depend on it cheaply. Request types reject
//! unknown fields; times are RFC 3339 UTC strings; enums are snake_case.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
