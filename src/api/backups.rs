//! Wire types of backups: `/v1/backups`, `/v1/deployments/{name}/backups`,
//! and a deployment's backup policy.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// vzdump's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupModeName {
    /// Storage snapshot (falls back to suspend where the storage cannot snapshot).
    Snapshot,
    /// Suspend the container around a final sync.
    Suspend,
    /// Stop the container during the backup.
    Stop,
}

/// A deployment's backup policy (`backup` of a deploy or apply request).
/// Unset fields come from `[backup]` in `1ld.toml`. Retention is passed to
/// `vzdump --prune-backups`, so Proxmox prunes by its documented algorithm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupPolicy {
    /// Storage with content `backup`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// vzdump mode (default snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BackupModeName>,
    /// Keep the N newest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// Keep one per ISO week for N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// Keep one per year for N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Mark new backups protected (never pruned, not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected: Option<bool>,
    /// When to back up, in Proxmox's calendar-event syntax (`daily`,
    /// `sun 01:00`, `mon..fri 02:30`, `*/15`); `""`: never (only on request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// When to verify the newest backup (restore it into a throwaway
    /// container and run the app's self-check), same syntax; `""`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_schedule: Option<String>,
}

impl BackupPolicy {
    /// `self`'s fields where set, else `base`'s.
    pub fn or(&self, base: &BackupPolicy) -> BackupPolicy {
        BackupPolicy {
            storage: self.storage.clone().or_else(|| base.storage.clone()),
            mode: self.mode.or(base.mode),
            keep_last: self.keep_last.or(base.keep_last),
            keep_hourly: self.keep_hourly.or(base.keep_hourly),
            keep_daily: self.keep_daily.or(base.keep_daily),
            keep_weekly: self.keep_weekly.or(base.keep_weekly),
            keep_monthly: self.keep_monthly.or(base.keep_monthly),
            keep_yearly: self.keep_yearly.or(base.keep_yearly),
            protected: self.protected.or(base.protected),
            schedule: self.schedule.clone().or_else(|| base.schedule.clone()),
            verify_schedule: self
                .verify_schedule
                .clone()
                .or_else(|| base.verify_schedule.clone()),
        }
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == BackupPolicy::default()
    }

    /// The keep counts in Proxmox's fixed order (last, hourly, daily,
    /// weekly, monthly, yearly).
    pub fn keeps(&self) -> [(&'static str, Option<u32>); 6] {
        [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ]
    }

    /// Problems with the (effective) policy, each as (field, message).
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (k, v) in self.keeps() {
            if v.is_some_and(|n| n > 10_000) {
                out.push((
                    format!("{prefix}.{k}"),
                    format!("{prefix}.{k}: {} is more than 10000", v.unwrap_or_default()),
                ));
            }
        }
        if self.keeps().iter().all(|(_, v)| v.unwrap_or(0) == 0) {
            out.push((
                format!("{prefix}.keep_last"),
                format!(
                    "{prefix}: every keep_* is 0, which Proxmox reads as \"keep everything\" \
                     and never prunes; set at least one, e.g. keep_last = 3 or keep_daily = 7"
                ),
            ));
        }
        for (key, expr) in [
            ("schedule", &self.schedule),
            ("verify_schedule", &self.verify_schedule),
        ] {
            if let Some(expr) = expr.as_deref().filter(|s| !s.trim().is_empty()) {
                if let Err(e) = crate::schedule::CalendarEvent::parse(expr) {
                    out.push((format!("{prefix}.{key}"), format!("{prefix}.{key}: {e}")));
                }
            }
        }
        if let Some(s) = &self.storage {
            if s.is_empty()
                || s.len() > 64
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                out.push((
                    format!("{prefix}.storage"),
                    format!(
                        "{prefix}.storage: '{}' is not a storage id",
                        s.chars().take(64).collect::<String>()
                    ),
                ));
            }
        }
        out
    }
}

/// Whether a restore of the backup was proven to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verified {
    /// Not verified yet.
    Unverified,
    /// Restored into a throwaway container that came up healthy.
    Verified,
    /// The verification failed (see `verify_detail`).
    Failed,
}

/// One backup archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BackupInfo {
    /// Proxmox's volume id (`local:backup/vzdump-lxc-141-2026_01_02-03_04_05.tar.zst`); the backup's id.
    pub volid: String,
    /// The storage.
    pub storage: String,
    /// The container it was made of.
    pub vmid: u32,
    /// The deployment, when 1ld knows it.
    pub deployment: Option<String>,
    /// The app and its version at backup time.
    pub app: Option<String>,
    /// See `app`.
    pub app_version: Option<String>,
    /// When it was made (from the archive name).
    pub time: String,
    /// Archive size in bytes, when known.
    pub size: Option<u64>,
    /// vzdump's mode, when known.
    pub mode: Option<String>,
    /// The archive's notes.
    pub notes: String,
    /// Protected from pruning.
    pub protected: bool,
    /// Restore verification.
    pub verified: Verified,
    /// When verified.
    pub verified_at: Option<String>,
    /// What the verification saw.
    pub verify_detail: Option<String>,
    /// On storage now (`false`: recorded by 1ld but gone, e.g. pruned).
    pub present: bool,
    /// 1ld recorded it (`false`: found on storage only).
    pub recorded: bool,
}

/// `?deployment=` of `GET /v1/backups`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BackupsQuery {
    /// Only this deployment's backups.
    pub deployment: Option<String>,
}

/// `POST /v1/deployments/{name}/backups`: back up now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// Changes to the deployment's policy for this backup only.
    #[serde(default)]
    pub policy: BackupPolicy,
}

/// How to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMode {
    /// Over the deployment's own container (stop, `pct restore --force`, start).
    InPlace,
    /// Into a new container in the app's vmid range, as a new deployment
    /// (`--unique`, so its MACs differ from the original's).
    New,
}

/// `POST /v1/backups/{volid}/restore` (the volid percent-encoded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// In place or as a new deployment.
    pub mode: RestoreMode,
    /// `new`: the new deployment's name (default `<deployment>-restored`).
    #[serde(default)]
    pub name: Option<String>,
}
