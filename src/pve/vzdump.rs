//! `vzdump` of one container.
//!
//! Never sends `--maxfiles` or `notification-policy/target` (removed in PVE 9);
//! retention always goes as `--prune-backups`. vzdump exits 0 silently when
//! the guest lives on another node, so a run without a `creating vzdump
//! archive` line is an error.

use std::fmt;
use std::path::PathBuf;

use super::parse::vzdump::{parse_vzdump_log, VzdumpLog};
use super::{Args, Pve, PveError, Span};

/// `--mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupMode {
    /// Storage snapshot (default; falls back to suspend when impossible).
    Snapshot,
    /// Suspend the guest around a second rsync.
    Suspend,
    /// Stop the guest during the backup.
    Stop,
}

/// `--compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed `.tar` (vzdump's default).
    None,
    /// lzo.
    Lzo,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl fmt::Display for BackupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackupMode::Snapshot => "snapshot",
            BackupMode::Suspend => "suspend",
            BackupMode::Stop => "stop",
        })
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::None => "0",
            Compression::Lzo => "lzo",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        })
    }
}

/// Retention (`--prune-backups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneOptions {
    /// Keep everything (overrides the counts).
    pub keep_all: bool,
    /// Keep the N newest.
    pub keep_last: Option<u32>,
    /// Keep one per hour for N hours.
    pub keep_hourly: Option<u32>,
    /// Keep one per day for N days.
    pub keep_daily: Option<u32>,
    /// Keep one per ISO week for N weeks.
    pub keep_weekly: Option<u32>,
    /// Keep one per month for N months.
    pub keep_monthly: Option<u32>,
    /// Keep one per year for N years.
    pub keep_yearly: Option<u32>,
}

impl PruneOptions {
    /// The property string, or `None` when nothing is set (storage default applies).
    pub fn to_property_string(&self) -> Option<String> {
        if self.keep_all {
            return Some("keep-all=1".to_string());
        }
        let parts: Vec<String> = [
            ("keep-daily", self.keep_daily),
            ("keep-hourly", self.keep_hourly),
            ("keep-last", self.keep_last),
            ("keep-monthly", self.keep_monthly),
            ("keep-weekly", self.keep_weekly),
            ("keep-yearly", self.keep_yearly),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// What to back up and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VzdumpSpec {
    /// The container.
    pub vmid: u32,
    /// Mode; `None` = vzdump's default (snapshot).
    pub mode: Option<BackupMode>,
    /// Compression; `None` = vzdump's default (uncompressed).
    pub compress: Option<Compression>,
    /// Target storage; `None` = `local`.
    pub storage: Option<String>,
    /// `--notes-template` (`{{guestname}}` etc.; single line; needs `storage`).
    pub notes_template: Option<String>,
    /// `--prune-backups`.
    pub prune: Option<PruneOptions>,
    /// `--protected 1` (needs `storage`).
    pub protected: bool,
    /// `--remove 0|1`: prune after the backup.
    pub remove: Option<bool>,
}

impl VzdumpSpec {
    /// A zstd snapshot-mode backup of `vmid` to `storage`.
    pub fn new(vmid: u32, storage: impl Into<String>) -> Self {
        Self {
            vmid,
            mode: Some(BackupMode::Snapshot),
            compress: Some(Compression::Zstd),
            storage: Some(storage.into()),
            notes_template: None,
            prune: None,
            protected: false,
            remove: None,
        }
    }

    /// The argv (validated).
    pub fn to_argv(&self) -> Result<Vec<String>, PveError> {
        if self.storage.is_none() && (self.notes_template.is_some() || self.protected) {
            return Err(PveError::Invalid {
                what: "vzdump spec",
                message: "notes-template and protected need a target storage".to_string(),
            });
        }
        if self
            .notes_template
            .as_deref()
            .is_some_and(|n| n.contains('\n'))
        {
            return Err(PveError::Invalid {
                what: "notes template",
                message: "must be a single line (use the two characters \\n for a newline)"
                    .to_string(),
            });
        }
        let mut a = Args::new(&["vzdump"]);
        a.arg(self.vmid)
            .opt_some("mode", self.mode)
            .opt_some("compress", self.compress)
            .opt_some("storage", self.storage.as_deref())
            .opt_some("notes-template", self.notes_template.as_deref())
            .opt_some(
                "prune-backups",
                self.prune.and_then(|p| p.to_property_string()),
            )
            .flag("protected", self.protected);
        if let Some(r) = self.remove {
            a.bool("remove", r);
        }
        Ok(a.build())
    }
}

/// A finished backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The archive path on the node.
    pub archive: PathBuf,
    /// The parsed task log.
    pub log: VzdumpLog,
}

impl Pve {
    /// Backs up one container; returns the archive written.
    pub async fn vzdump(&self, spec: &VzdumpSpec) -> Result<Backup, PveError> {
        let out = self.call(spec.to_argv()?, Span::Long, None).await?;
        let log = parse_vzdump_log(&out.stdout_text());
        match log.archive.clone() {
            Some(archive) => Ok(Backup { archive, log }),
            None => Err(PveError::NotFound {
                argv: out.argv,
                vmid: Some(spec.vmid),
                message: format!(
                    "vzdump wrote no archive: CT {} is not on this node (or vzdump printed no log)",
                    spec.vmid
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_never_has_removed_options() {
        let spec = VzdumpSpec {
            notes_template: Some("{{guestname}} by 1ld".into()),
            prune: Some(PruneOptions {
                keep_last: Some(3),
                keep_daily: Some(7),
                ..Default::default()
            }),
            protected: true,
            remove: Some(true),
            ..VzdumpSpec::new(101, "local")
        };
        let argv = spec.to_argv().unwrap();
        assert_eq!(
            argv.join(" "),
            "vzdump 101 --mode snapshot --compress zstd --storage local --notes-template {{guestname}} by 1ld --prune-backups keep-daily=7,keep-last=3 --protected 1 --remove 1"
        );
        assert!(!argv
            .iter()
            .any(|a| a.contains("maxfiles") || a.contains("notification")));
    }

    #[test]
    fn prune_rendering() {
        assert_eq!(PruneOptions::default().to_property_string(), None);
        let all = PruneOptions {
            keep_all: true,
            keep_last: Some(1),
            ..Default::default()
        };
        assert_eq!(all.to_property_string().as_deref(), Some("keep-all=1"));
    }

    #[test]
    fn invalid_specs() {
        let mut s = VzdumpSpec::new(101, "local");
        s.storage = None;
        s.protected = true;
        assert!(matches!(s.to_argv(), Err(PveError::Invalid { .. })));
        let mut s = VzdumpSpec::new(101, "local");
        s.notes_template = Some("a\nb".into());
        assert!(s.to_argv().is_err());
    }
}
