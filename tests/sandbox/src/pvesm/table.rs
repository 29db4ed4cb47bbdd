//! pvesm's text tables (`pve-storage` `PVE/CLI/pvesm.pm`).
//!
//! * `list`: `%-<W>s %-7s %-9s %<S>s %s` with W the longest volid and S the
//!   digits of the largest size; rows with a vmid first (in the given order,
//!   which is the API's: by volid, case-insensitive), then rows without one,
//!   stable-sorted by format and without the VMID column; the header is
//!   printed even for an empty list.
//! * `status`: `%-<N>s %10s %10s %15s %15s %15s %8s` with N the longest id
//!   plus one; KiB integers (truncated); `% 7.2f%%`, or `N/A` in `% 8s` for a
//!   disabled storage; PVE 9 headers carry `(KiB)`.
//! * `prune-backups --dry-run`: a NOTE, then `%-<N>s %15s %10s` rows sorted
//!   by vmid (none first) and backup time.

use crate::prune::Mark;

/// One row of `pvesm list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRow {
    /// `local:backup/...`.
    pub volid: String,
    /// `tar.zst`, `tzst`, `raw`, `subvol`, `iso`, ...
    pub format: String,
    /// `backup`, `vztmpl`, `rootdir`, `images`, `iso`, `snippets`.
    pub content: String,
    /// Bytes; `None` shows `-` (PVE 9 only has unknown sizes).
    pub size: Option<u64>,
    /// The owning guest.
    pub vmid: Option<u32>,
}

/// `pvesm list` output.
pub fn format_list(rows: &[ContentRow]) -> String {
    let name_w = rows.iter().map(|r| r.volid.len()).max().unwrap_or(0);
    let max_size = rows.iter().filter_map(|r| r.size).max().unwrap_or(0);
    let size_w = max_size.to_string().len();
    let size_str = |r: &ContentRow| r.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let base = |volid: &str, format: &str, content: &str, size: &str| {
        format!("{volid:<name_w$} {format:<7} {content:<9} {size:>size_w$}")
    };
    let mut out = base("Volid", "Format", "Type", "Size");
    out.push_str(" VMID\n");
    for r in rows.iter().filter(|r| r.vmid.is_some_and(|v| v != 0)) {
        out.push_str(&base(&r.volid, &r.format, &r.content, &size_str(r)));
        out.push_str(&format!(" {}\n", r.vmid.unwrap_or(0)));
    }
    let mut rest: Vec<&ContentRow> = rows
        .iter()
        .filter(|r| r.vmid.is_none_or(|v| v == 0))
        .collect();
    rest.sort_by(|a, b| a.format.cmp(&b.format));
    for r in rest {
        out.push_str(&base(&r.volid, &r.format, &r.content, &size_str(r)));
        out.push('\n');
    }
    out
}

/// One row of `pvesm status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Storage id.
    pub storage: String,
    /// Plugin type (`dir`, `lvmthin`, ...).
    pub kind: String,
    /// Activated.
    pub active: bool,
    /// Not `disable`d in storage.cfg.
    pub enabled: bool,
    /// Bytes.
    pub total: u64,
    /// Bytes.
    pub used: u64,
    /// Bytes.
    pub avail: u64,
}

/// `pvesm status` output; `pve_major >= 9` adds the `(KiB)` header units.
pub fn format_status(rows: &[StatusRow], pve_major: u8) -> String {
    let w = rows.iter().map(|r| r.storage.len()).max().unwrap_or(0) + 1;
    let (t, u, a) = if pve_major >= 9 {
        ("Total (KiB)", "Used (KiB)", "Available (KiB)")
    } else {
        ("Total", "Used", "Available")
    };
    let mut out = format!(
        "{:<w$} {:>10} {:>10} {:>15} {:>15} {:>15} {:>8}\n",
        "Name", "Type", "Status", t, u, a, "%"
    );
    let mut sorted: Vec<&StatusRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.storage.cmp(&b.storage));
    for r in sorted {
        let (status, per) = if !r.enabled {
            ("disabled", format!("{:>8}", "N/A"))
        } else {
            let p = if r.total > 0 {
                r.used as f64 * 100.0 / r.total as f64
            } else {
                0.0
            };
            (
                if r.active { "active" } else { "inactive" },
                format!("{p:>7.2}%"),
            )
        };
        out.push_str(&format!(
            "{:<w$} {:>10} {:>10} {:>15} {:>15} {:>15} {per}\n",
            r.storage,
            r.kind,
            status,
            r.total / 1024,
            r.used / 1024,
            r.avail / 1024,
        ));
    }
    out
}

/// One row of the prune dry-run table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRow {
    /// The volume id.
    pub volid: String,
    /// `lxc`, `qemu`, `openvz`, `unknown`.
    pub backup_type: String,
    /// The guest, when known.
    pub vmid: Option<u32>,
    /// Backup time.
    pub ctime: i64,
    /// The decision.
    pub mark: Mark,
}

/// `pvesm prune-backups --dry-run` output.
pub fn format_prune_dry_run(rows: &[PruneRow]) -> String {
    if rows.is_empty() {
        return "No backups found\n".to_string();
    }
    let mut out = String::from(
        "NOTE: this is only a preview and might not be what a subsequent\n\
         prune call does if backups are removed/added in the meantime.\n\n",
    );
    let mut sorted: Vec<&PruneRow> = rows.iter().collect();
    sorted.sort_by(|a, b| a.vmid.cmp(&b.vmid).then(a.ctime.cmp(&b.ctime)));
    let w = sorted.iter().map(|r| r.volid.len()).max().unwrap_or(0) + 1;
    out.push_str(&format!(
        "{:<w$} {:>15} {:>10}\n",
        "Backup", "Backup-ID", "Prune-Mark"
    ));
    for r in sorted {
        let id = match r.vmid {
            Some(v) => format!("{}/{v}", r.backup_type),
            None => r.backup_type.clone(),
        };
        out.push_str(&format!(
            "{:<w$} {:>15} {:>10}\n",
            r.volid,
            id,
            r.mark.as_str()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_matches_reference_sample() {
        let rows = vec![
            ContentRow {
                volid: "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst".into(),
                format: "tar.zst".into(),
                content: "backup".into(),
                size: Some(421527101),
                vmid: Some(101),
            },
            ContentRow {
                volid: "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst".into(),
                format: "tzst".into(),
                content: "vztmpl".into(),
                size: Some(126649744),
                vmid: None,
            },
        ];
        let expected = "\
Volid                                                   Format  Type           Size VMID
local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst tar.zst backup    421527101 101
local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst   tzst    vztmpl    126649744
";
        assert_eq!(format_list(&rows), expected);
    }

    #[test]
    fn empty_list_has_header() {
        assert_eq!(format_list(&[]), "Volid Format  Type      Size VMID\n");
    }

    #[test]
    fn status_matches_reference_sample() {
        let rows = vec![
            StatusRow {
                storage: "local-lvm".into(),
                kind: "lvmthin".into(),
                active: true,
                enabled: true,
                total: 832888832 * 1024,
                used: 41644441 * 1024 + 100,
                avail: 791244390 * 1024,
            },
            StatusRow {
                storage: "local".into(),
                kind: "dir".into(),
                active: true,
                enabled: true,
                total: 98497780 * 1024,
                used: 13567264 * 1024,
                avail: 79881132 * 1024,
            },
        ];
        let expected = "\
Name             Type     Status           Total            Used       Available        %
local             dir     active        98497780        13567264        79881132   13.77%
local-lvm     lvmthin     active       832888832        41644441       791244390    5.00%
";
        assert_eq!(format_status(&rows, 8), expected);
        let v9 = format_status(&rows, 9);
        assert_eq!(
            v9.lines().next().unwrap(),
            "Name             Type     Status     Total (KiB)      Used (KiB) Available (KiB)        %"
        );
    }

    #[test]
    fn disabled_storage_shows_na() {
        let rows = vec![StatusRow {
            storage: "backup".into(),
            kind: "dir".into(),
            active: false,
            enabled: false,
            total: 0,
            used: 0,
            avail: 0,
        }];
        assert!(format_status(&rows, 8)
            .lines()
            .nth(1)
            .unwrap()
            .ends_with("disabled               0               0               0      N/A"));
    }

    #[test]
    fn prune_table() {
        assert_eq!(format_prune_dry_run(&[]), "No backups found\n");
        let rows = vec![
            PruneRow {
                volid: "local:backup/vzdump-lxc-101-2024_05_02-10_00_00.tar".into(),
                backup_type: "lxc".into(),
                vmid: Some(101),
                ctime: 2,
                mark: Mark::Keep,
            },
            PruneRow {
                volid: "local:backup/vzdump-lxc-101-2024_05_01-10_00_00.tar".into(),
                backup_type: "lxc".into(),
                vmid: Some(101),
                ctime: 1,
                mark: Mark::Remove,
            },
        ];
        let out = format_prune_dry_run(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[3],
            format!("{:<52} {:>15} {:>10}", "Backup", "Backup-ID", "Prune-Mark")
        );
        assert!(lines[4].contains("2024_05_01") && lines[4].ends_with("lxc/101     remove"));
        assert!(lines[5].ends_with("lxc/101       keep"));
    }
}
