//! An alert: one thing worth telling a human about.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What happened (the `event` of a notification).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A deployment became unhealthy (an incident began).
    Unhealthy,
    /// It is healthy again (the incident ended; carries the downtime).
    Recovered,
    /// The supervisor acted (restarted the service, rebooted, started).
    Remediation,
    /// The ladder is exhausted: the deployment is `failed`.
    GaveUp,
    /// The container of a deployment no longer exists.
    Vanished,
    /// The container's configuration no longer matches the deployment.
    Drift,
    /// A backup failed.
    BackupFailed,
    /// A backup succeeded (only with `[backup] notify_success`).
    BackupSucceeded,
    /// An upgrade failed (and was rolled back, or could not be).
    UpgradeFailed,
    /// `1ldctl notify test`.
    Test,
}

impl AlertKind {
    /// The wire name (`gave_up`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unhealthy => "unhealthy",
            Self::Recovered => "recovered",
            Self::Remediation => "remediation",
            Self::GaveUp => "gave_up",
            Self::Vanished => "vanished",
            Self::Drift => "drift",
            Self::BackupFailed => "backup_failed",
            Self::BackupSucceeded => "backup_succeeded",
            Self::UpgradeFailed => "upgrade_failed",
            Self::Test => "test",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Unhealthy,
            Self::Recovered,
            Self::Remediation,
            Self::GaveUp,
            Self::Vanished,
            Self::Drift,
            Self::BackupFailed,
            Self::BackupSucceeded,
            Self::UpgradeFailed,
            Self::Test,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// How urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Good news or a record (recovered, test).
    Info,
    /// Something was done or is off (remediation, drift).
    Warning,
    /// Needs a human (unhealthy, gave up, vanished).
    Critical,
}

/// One alert, before it is fanned out to the targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// How urgent.
    pub severity: Severity,
    /// The deployment, when it is about one.
    pub deployment: Option<String>,
    /// Its app.
    pub app: Option<String>,
    /// One line (`netbox-agent is unhealthy`).
    pub title: String,
    /// The details in words.
    pub message: String,
    /// At most one notification per target carries this key
    /// (`<deployment>/<incident>/unhealthy`); `None`: never deduplicated.
    pub dedupe_key: Option<String>,
    /// When it happened (ms since the epoch).
    pub time_ms: i64,
    /// Machine-readable extras (incident id, downtime_secs, action, ...).
    pub data: serde_json::Value,
}
