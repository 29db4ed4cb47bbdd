//! `vzdump` task log (printed on stdout by the CLI).
//!
//! The archive path comes from `creating vzdump archive '<path>'`. No such line
//! on a successful exit means nothing was backed up (the guest is on another
//! node: vzdump then exits 0 silently).

use std::path::PathBuf;

/// What a vzdump run reported.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VzdumpLog {
    /// The archive written, if any.
    pub archive: Option<PathBuf>,
    /// `ERROR:` lines, without the prefix.
    pub errors: Vec<String>,
    /// `WARN:` lines, without the prefix.
    pub warnings: Vec<String>,
    /// `archive file size: 402MB`, verbatim.
    pub archive_size: Option<String>,
    /// The mode the backup really ran in (`backup mode: suspend`): snapshot
    /// mode falls back to suspend on storages that cannot snapshot.
    pub mode: Option<String>,
    /// vzdump fell back from snapshot mode (`mode failure - ...`).
    pub mode_fallback: bool,
}

/// Parses a vzdump log. Never fails: unknown lines are ignored.
pub fn parse_vzdump_log(text: &str) -> VzdumpLog {
    let mut log = VzdumpLog::default();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("ERROR:") {
            log.errors.push(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("WARN:") {
            log.warnings.push(rest.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("INFO:") {
            let rest = rest.trim();
            if let Some(p) = rest
                .strip_prefix("creating vzdump archive '")
                .or_else(|| rest.strip_prefix("creating archive '"))
                .and_then(|p| p.strip_suffix('\''))
            {
                log.archive = Some(PathBuf::from(p));
            } else if let Some(s) = rest.strip_prefix("archive file size: ") {
                log.archive_size = Some(s.to_string());
            } else if let Some(m) = rest.strip_prefix("backup mode: ") {
                log.mode = Some(m.trim().to_string());
            } else if rest.starts_with("mode failure - ") {
                log.mode_fallback = true;
            }
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn success_log() {
        let l = parse_vzdump_log(fixture!("vzdump-success.txt"));
        assert_eq!(
            l.archive.as_deref(),
            Some(std::path::Path::new(
                "/var/lib/vz/dump/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst"
            ))
        );
        assert_eq!(l.archive_size.as_deref(), Some("402MB"));
        assert!(l.errors.is_empty());
        assert_eq!(l.mode.as_deref(), Some("snapshot"));
        assert!(!l.mode_fallback);
    }

    #[test]
    fn snapshot_falls_back_to_suspend_on_dir_storage() {
        let l = parse_vzdump_log(fixture!("vzdump-snapshot-fallback.txt"));
        assert_eq!(l.mode.as_deref(), Some("suspend"));
        assert!(l.mode_fallback);
        assert!(l.archive.is_some());
    }

    #[test]
    fn locked_log_has_error_and_no_archive() {
        let l = parse_vzdump_log(fixture!("vzdump-locked.txt"));
        assert_eq!(l.archive, None);
        assert_eq!(
            l.errors,
            ["Backup of VM 101 failed - CT is locked (snapshot)"]
        );
    }

    #[test]
    fn uncompressed_default_and_stopped_ct() {
        let l = parse_vzdump_log(
            "INFO: status = stopped\nINFO: backup mode: stop\nINFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-102-2024_05_01-10_00_00.tar'\nWARN: something odd\n",
        );
        assert_eq!(l.mode.as_deref(), Some("stop"));
        assert!(l.archive.unwrap().to_string_lossy().ends_with(".tar"));
        assert_eq!(l.warnings, ["something odd"]);
    }

    #[test]
    fn other_node_is_silent() {
        assert_eq!(
            parse_vzdump_log(fixture!("vzdump-other-node.txt")),
            VzdumpLog::default()
        );
    }
}
