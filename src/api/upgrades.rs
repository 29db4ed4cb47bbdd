//! Wire types of upgrades: `POST /v1/deployments/{name}/upgrade`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/deployments/{name}/upgrade`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    /// The version to reach; it must be the one this node ships (the app
    /// catalog's). Default: that version.
    #[serde(default)]
    pub to_version: Option<String>,
    /// Only show current → target and the safety point, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Upgrade even when the deployment already runs the target version
    /// (re-pushes the binary and configuration).
    #[serde(default)]
    pub force: bool,
}

/// How an upgrade can be undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SafetyPoint {
    /// `pct snapshot` (the container's storage supports snapshots); undone
    /// by `pct rollback`, removed after `[upgrade] keep_safety_secs` healthy.
    Snapshot,
    /// A vzdump backup (no snapshots on the storage); undone by an in-place
    /// restore; kept and pruned like any backup.
    Backup,
    /// None (the app's manifest says `backup_first = false` and the storage
    /// cannot snapshot): a failed upgrade cannot be rolled back.
    None,
}

/// What an upgrade does (the dry run's answer; also in the operation log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpgradePreview {
    /// The deployment.
    pub name: String,
    /// Its app.
    pub app: String,
    /// The version it runs.
    pub from_version: String,
    /// The version this node ships.
    pub to_version: String,
    /// Nothing to do (same version, no `force`).
    pub up_to_date: bool,
    /// How it would be undone.
    pub safety_point: SafetyPoint,
    /// Roll back when it fails (the app's `[upgrade] rollback_on_failure`).
    pub rollback_on_failure: bool,
    /// The steps, in order.
    pub steps: Vec<String>,
}
