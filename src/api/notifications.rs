//! Wire types of `/v1/notifications`: the targets, the delivery queue, test
//! sends and target secrets.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use crate::notify::alert::Severity;
pub use crate::store::notifications::NotificationStatus;

/// Default `limit` of `GET /v1/notifications`.
pub const NOTIFICATIONS_LIMIT_DEFAULT: u32 = 50;
/// Largest `limit` of `GET /v1/notifications`.
pub const NOTIFICATIONS_LIMIT_MAX: u32 = 1000;

/// `GET /v1/notifications` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only this status: `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Only notifications with an id below this one (the next page).
    pub before: Option<i64>,
}

/// `GET /v1/notifications`: the configured targets and the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationsView {
    /// Every configured target, by name.
    pub targets: Vec<NotifyTarget>,
    /// Notifications matching the filters, newest first.
    pub notifications: Vec<Notification>,
}

/// One configured target and how its deliveries go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotifyTarget {
    /// Its name (`[notify.targets.<name>]`).
    pub name: String,
    /// `webhook`, `ntfy`, `gotify` or `homeassistant`.
    pub kind: String,
    /// Where it posts to, with secrets masked (`***`).
    pub url: String,
    /// Whether its secret (HMAC key, token, webhook id) is set.
    pub has_secret: bool,
    /// Notifications waiting for delivery.
    pub pending: u64,
    /// Notifications given up.
    pub failed: u64,
    /// When a delivery last succeeded (RFC 3339).
    pub last_delivered_at: Option<String>,
    /// The last delivery error (redacted).
    pub last_error: Option<String>,
}

/// One queued notification (an alert for one target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Its id; per target, delivered in id order.
    pub id: i64,
    /// The target's name.
    pub target: String,
    /// What happened (`unhealthy`, `recovered`, `remediation`, `gave_up`,
    /// `vanished`, `drift`, `test`).
    pub event: String,
    /// How urgent.
    pub severity: Severity,
    /// The deployment it is about.
    pub deployment: Option<String>,
    /// The alert's title.
    pub title: String,
    /// Where it is.
    pub status: NotificationStatus,
    /// Delivery attempts so far.
    pub attempts: u32,
    /// When the next attempt is due (pending only; RFC 3339).
    pub next_attempt_at: Option<String>,
    /// Why the last attempt failed (redacted).
    pub last_error: Option<String>,
    /// When it was queued (RFC 3339).
    pub created_at: String,
    /// When it was delivered (RFC 3339).
    pub delivered_at: Option<String>,
}

/// `POST /v1/notifications/test`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTestRequest {
    /// Only this target (default: every target).
    #[serde(default)]
    pub target: Option<String>,
}

/// The outcome of one test send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotifyTestResult {
    /// The target.
    pub target: String,
    /// It answered 2xx.
    pub delivered: bool,
    /// The HTTP status it answered, if it answered.
    pub http_status: Option<u16>,
    /// What went wrong (redacted).
    pub error: Option<String>,
    /// How long the attempt took.
    pub duration_ms: u64,
}

/// `PUT /v1/notifications/targets/{name}/secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretValue {
    /// The secret (HMAC key, access token, app token or webhook id).
    pub value: String,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}
