//! Typed errors of the `pve` layer and the classifier that derives them from
//! the tools' real message texts.
//!
//! Exit codes say little (pre-worker `die`s exit with an unpredictable code,
//! worker failures with 255, `pveam download` with 0 even on failure), so
//! [`classify`] looks at the texts: stderr lines, plus the `ERROR:` lines that
//! worker tasks (vzdump) print on stdout.

use std::time::Duration;

use crate::pve::parse::ParseError;
use crate::pve::runner::RunError;

/// Everything that can go wrong when driving a PVE tool.
#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// The guest, snapshot, template, volume or API path does not exist (on this node).
    #[error("`{}` failed: {message} (not found{})", shown(argv), on_ct(*vmid))]
    NotFound {
        /// The command.
        argv: Vec<String>,
        /// The guest concerned, if known.
        vmid: Option<u32>,
        /// The tool's message.
        message: String,
    },
    /// The id (or snapshot name, or file) is already taken.
    #[error("`{}` failed: {message}; pick another id (see `pvesh get /cluster/nextid`) or remove the existing one", shown(argv))]
    AlreadyExists {
        /// The command.
        argv: Vec<String>,
        /// The id that is taken, if known.
        vmid: Option<u32>,
        /// The node that holds it, when the tool says.
        node: Option<String>,
        /// The tool's message.
        message: String,
    },
    /// The guest is already running.
    #[error("`{}` failed: {message}", shown(argv))]
    AlreadyRunning {
        /// The command.
        argv: Vec<String>,
        /// The guest.
        vmid: Option<u32>,
        /// The tool's message.
        message: String,
    },
    /// The guest's config carries a `lock:` (backup, snapshot, ...).
    #[error("`{}` failed: {message}; wait for the '{lock}' operation to finish, or clear a stale lock with `pct unlock`", shown(argv))]
    Locked {
        /// The command.
        argv: Vec<String>,
        /// The guest.
        vmid: Option<u32>,
        /// The lock name (`backup`, `snapshot`, `mounted`, ...).
        lock: String,
        /// The tool's message.
        message: String,
    },
    /// The operation needs a running guest.
    #[error("`{}` failed: {message}; start the container first", shown(argv))]
    NotRunning {
        /// The command.
        argv: Vec<String>,
        /// The guest.
        vmid: Option<u32>,
        /// The tool's message.
        message: String,
    },
    /// The storage is unknown, disabled, or lacks the needed content type.
    #[error(
        "`{}` failed: {message}; check `pvesm status` and the storage's content types",
        shown(argv)
    )]
    StorageUnsuitable {
        /// The command.
        argv: Vec<String>,
        /// The storage id, when the message names it.
        storage: Option<String>,
        /// The tool's message.
        message: String,
    },
    /// The OS template volume does not exist.
    #[error(
        "`{}` failed: template '{volid}' is missing; download it with `pveam download`",
        shown(argv)
    )]
    TemplateMissing {
        /// The command.
        argv: Vec<String>,
        /// The template volume id.
        volid: String,
        /// The tool's message.
        message: String,
    },
    /// The command ran past its timeout; its process group was killed.
    #[error("`{}` timed out after {duration:?} and was killed", shown(argv))]
    Timeout {
        /// The command.
        argv: Vec<String>,
        /// The timeout that expired.
        duration: Duration,
    },
    /// The command failed in a way not classified above.
    #[error("`{}` failed (exit {}): {stderr}{}", shown(argv), code.map_or_else(|| "by signal".to_string(), |c| c.to_string()), context(output_tail))]
    Failed {
        /// The command.
        argv: Vec<String>,
        /// Exit code, `None` if killed by a signal.
        code: Option<i32>,
        /// Trimmed error text (stderr, or the `ERROR:` lines of the task log).
        stderr: String,
        /// The last lines of the task output on stdout when stderr only holds
        /// the summary (`startup for container '101' failed`): where the cause is.
        output_tail: String,
    },
    /// The command could not be started.
    #[error(transparent)]
    Run(RunError),
    /// The output was not in a format this layer understands.
    #[error("`{}`: unexpected output: {source}", shown(argv))]
    Parse {
        /// The command.
        argv: Vec<String>,
        /// What did not parse.
        #[source]
        source: ParseError,
    },
    /// The caller asked for something invalid; nothing was run.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The argument or field concerned.
        what: &'static str,
        /// Why it is invalid and what to do.
        message: String,
    },
    /// The feature does not exist on this PVE major version; nothing was run.
    #[error("{what} needs PVE 9 or later; this node runs PVE {major}")]
    Unsupported {
        /// The feature.
        what: &'static str,
        /// The node's PVE major version.
        major: u32,
    },
}

impl PveError {
    /// The guest the error is about, when known.
    pub fn vmid(&self) -> Option<u32> {
        match self {
            PveError::NotFound { vmid, .. }
            | PveError::AlreadyExists { vmid, .. }
            | PveError::AlreadyRunning { vmid, .. }
            | PveError::Locked { vmid, .. }
            | PveError::NotRunning { vmid, .. } => *vmid,
            _ => None,
        }
    }

    /// The command the error is about, when one was run.
    pub fn argv(&self) -> Option<&[String]> {
        match self {
            PveError::NotFound { argv, .. }
            | PveError::AlreadyExists { argv, .. }
            | PveError::AlreadyRunning { argv, .. }
            | PveError::Locked { argv, .. }
            | PveError::NotRunning { argv, .. }
            | PveError::StorageUnsuitable { argv, .. }
            | PveError::TemplateMissing { argv, .. }
            | PveError::Timeout { argv, .. }
            | PveError::Failed { argv, .. }
            | PveError::Parse { argv, .. } => Some(argv),
            _ => None,
        }
    }
}

/// Maps a runner error, turning its timeout into [`PveError::Timeout`].
impl From<RunError> for PveError {
    fn from(e: RunError) -> Self {
        match e {
            RunError::Timeout { argv, after, .. } => PveError::Timeout {
                argv,
                duration: after,
            },
            other => PveError::Run(other),
        }
    }
}

fn shown(argv: &[String]) -> String {
    argv.join(" ")
}

fn on_ct(vmid: Option<u32>) -> String {
    vmid.map(|v| format!(", CT {v}")).unwrap_or_default()
}

/// Lines that tools print on stderr without the call having failed.
fn is_noise(line: &str) -> bool {
    let l = line.trim();
    l.is_empty()
        || l.starts_with("WARN:")
        || l.starts_with("WARNING:")
        || (l.starts_with("Task finished with ") && l.ends_with("warning(s)!"))
        || l.starts_with("trying to acquire lock")
        || (l.contains("lxc.cgroup.") && l.contains("is deprecated"))
}

fn context(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!(" (task output: {})", tail.replace('\n', " | "))
    }
}

/// The last `n` meaningful lines of a worker's stdout, oldest first.
fn stdout_tail(stdout: &str, n: usize) -> String {
    let tail: Vec<&str> = stdout
        .lines()
        .map(str::trim)
        .filter(|l| !is_noise(l))
        .rev()
        .take(n)
        .collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// Commands that can exit 0 although they failed (`pveam update/download`).
fn exits_zero_on_failure(argv: &[String]) -> bool {
    let prog = argv.first().map(|p| p.rsplit('/').next().unwrap_or(p));
    prog == Some("pveam") && matches!(argv.get(1).map(String::as_str), Some("update" | "download"))
}

/// Decides from a finished command's texts whether it failed, and how.
///
/// `exit` is the exit code (`None` when killed by a signal). Returns `Ok(())`
/// when the command succeeded; warnings (`WARN: ...`, `Task finished with N
/// warning(s)!`) are not failures. Pure: no I/O.
pub fn classify(
    argv: &[String],
    exit: Option<i32>,
    stdout: &str,
    stderr: &str,
) -> Result<(), PveError> {
    let err_lines: Vec<&str> = stderr.lines().filter(|l| !is_noise(l)).collect();
    if exit == Some(0) {
        if !exits_zero_on_failure(argv) || err_lines.is_empty() {
            return Ok(());
        }
        // pveam: any real stderr text means the task failed.
        return Err(err_lines
            .iter()
            .find_map(|l| match_line(argv, l))
            .unwrap_or_else(|| PveError::Failed {
                argv: argv.to_vec(),
                code: exit,
                stderr: err_lines.join("\n").trim().to_string(),
                output_tail: String::new(),
            }));
    }
    // Task-log errors (vzdump prints them on stdout, stderr only says `job errors`).
    let log_errors: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("ERROR:"))
        .map(str::trim)
        .collect();
    if let Some(e) = err_lines
        .iter()
        .chain(log_errors.iter())
        .find_map(|l| match_line(argv, l))
    {
        return Err(e);
    }
    let mut text = err_lines.join("\n").trim().to_string();
    if !log_errors.is_empty() {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&log_errors.join("; "));
    }
    let mut output_tail = String::new();
    if text.is_empty() {
        // Nothing on stderr: the last lines of stdout are the best clue.
        text = stdout_tail(stdout, 5);
    } else if log_errors.is_empty() {
        // A worker's stderr holds only the summary; the cause is in its output.
        output_tail = stdout_tail(stdout, 3);
    }
    Err(PveError::Failed {
        argv: argv.to_vec(),
        code: exit,
        stderr: text,
        output_tail,
    })
}

/// The text between `prefix` and the next `close` after it.
fn quoted_after<'a>(s: &'a str, prefix: &str, close: char) -> Option<&'a str> {
    let start = s.find(prefix)? + prefix.len();
    let rest = s.get(start..)?;
    let end = rest.find(close)?;
    rest.get(..end)
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The vmid a message names (`CT 101`, `VM 101`, `container '101'`, `lxc/101.conf`).
fn vmid_in_text(s: &str) -> Option<u32> {
    for marker in ["CT ", "VM ", "container '", "lxc/", "VM '"] {
        let mut from = 0;
        while let Some(pos) = s.get(from..).and_then(|r| r.find(marker)) {
            let at = from + pos + marker.len();
            if let Some(n) = s.get(at..).and_then(leading_number) {
                return Some(n);
            }
            from = at;
        }
    }
    None
}

/// The vmid a command line is about: the first bare number that is not an
/// option's value, or the `/lxc/<vmid>` segment of an API path.
pub fn vmid_in_argv(argv: &[String]) -> Option<u32> {
    let mut prev_is_opt = false;
    for a in argv.iter().skip(1) {
        if a == "--" {
            break;
        }
        if let Some(n) = a
            .split("/lxc/")
            .nth(1)
            .and_then(leading_number)
            .filter(|_| a.starts_with('/'))
        {
            return Some(n);
        }
        if !prev_is_opt && !a.is_empty() && a.chars().all(|c| c.is_ascii_digit()) {
            if let Ok(n) = a.parse() {
                return Some(n);
            }
        }
        prev_is_opt = a.starts_with('-') && a.len() > 1;
    }
    None
}

/// Classifies one message line, or `None` if it is not a known text.
fn match_line(argv: &[String], line: &str) -> Option<PveError> {
    let argv_v = || argv.to_vec();
    let vmid = || vmid_in_text(line).or_else(|| vmid_in_argv(argv));
    let message = line.trim().to_string();

    if let Some(lock) = quoted_after(line, "is locked (", ')') {
        return Some(PveError::Locked {
            argv: argv_v(),
            vmid: vmid(),
            lock: lock.to_string(),
            message,
        });
    }
    if let Some(node) = quoted_after(line, " already exists on node '", '\'') {
        return Some(PveError::AlreadyExists {
            argv: argv_v(),
            vmid: vmid(),
            node: Some(node.to_string()),
            message,
        });
    }
    if line.contains(" already exists")
        || (line.contains("snapshot name '") && line.contains("' already used"))
        || line.contains("refusing to override existing file")
    {
        return Some(PveError::AlreadyExists {
            argv: argv_v(),
            vmid: vmid(),
            node: None,
            message,
        });
    }
    if line.contains(" already running") {
        return Some(PveError::AlreadyRunning {
            argv: argv_v(),
            vmid: vmid(),
            message,
        });
    }
    if let Some(volid) = quoted_after(line, "can't find file '", '\'') {
        return Some(PveError::TemplateMissing {
            argv: argv_v(),
            volid: volid.to_string(),
            message,
        });
    }
    if line.contains(" not running")
        || line.contains("can only push files to a running CT")
        || line.contains("can only pull files from a running VM")
    {
        return Some(PveError::NotRunning {
            argv: argv_v(),
            vmid: vmid(),
            message,
        });
    }
    let storage_texts = [
        "does not support container directories",
        "does not support templates",
        "could not activate storage",
        "could not get storage information",
    ];
    let storage_named = quoted_after(line, "storage '", '\'');
    let storage_state = storage_named.is_some()
        && (line.contains("' does not exist")
            || line.contains("' is disabled")
            || line.contains("' is not available on node"));
    if storage_state || storage_texts.iter().any(|t| line.contains(t)) {
        return Some(PveError::StorageUnsuitable {
            argv: argv_v(),
            storage: storage_named.map(str::to_string),
            message,
        });
    }
    let not_found = (line.contains("Configuration file '") && line.contains("' does not exist"))
        || line.contains("unable to find VM")
        || (line.contains("snapshot '") && line.contains("' does not exist"))
        || (line.contains("volume '") && line.contains("' does not exist"))
        || line.contains("no such template")
        || line.contains("no 'get' handler for")
        || line.contains("no lock found");
    if not_found {
        return Some(PveError::NotFound {
            argv: argv_v(),
            vmid: vmid(),
            message,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn err(argv: &str, stderr: &str) -> PveError {
        classify(&a(argv), Some(255), "", stderr).unwrap_err()
    }

    #[test]
    fn success_and_warnings_are_ok() {
        assert!(classify(&a("pct start 101"), Some(0), "", "").is_ok());
        assert!(classify(
            &a("pct create 101 local:vztmpl/x.tar.zst"),
            Some(0),
            "WARN: Systemd 257 detected. You may need to enable nesting.\n",
            "Task finished with 1 warning(s)!\n"
        )
        .is_ok());
        assert!(classify(
            &a("pveam download local x"),
            Some(0),
            "",
            "Task finished with 1 warning(s)!\n"
        )
        .is_ok());
    }

    #[test]
    fn config_missing_is_not_found() {
        let e = err(
            "pct status 101",
            "Configuration file 'nodes/pve/lxc/101.conf' does not exist\n",
        );
        assert!(
            matches!(
                e,
                PveError::NotFound {
                    vmid: Some(101),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn unable_to_find_vm_in_vzdump_log() {
        let e = classify(
            &a("vzdump 999 --storage local"),
            Some(255),
            "INFO: starting new backup job: vzdump 999\nERROR: Backup of VM 999 failed - unable to find VM '999'\nINFO: Backup job finished with errors\n",
            "job errors\n",
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                PveError::NotFound {
                    vmid: Some(999),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn snapshot_and_template_not_found() {
        assert!(matches!(
            err("pct rollback 101 x", "snapshot 'x' does not exist\n"),
            PveError::NotFound {
                vmid: Some(101),
                ..
            }
        ));
        assert!(matches!(
            err(
                "pveam download local nope.tar.zst",
                "400 Parameter verification failed.\ntemplate: no such template\npveam download <storage> <template>\n"
            ),
            PveError::NotFound { .. }
        ));
        assert!(matches!(
            err(
                "pvesh get /nope --output-format json",
                "no 'get' handler for '/nope'\n"
            ),
            PveError::NotFound { .. }
        ));
        assert!(matches!(
            err(
                "pct unlock 101",
                "no lock found trying to remove any lock\n"
            ),
            PveError::NotFound {
                vmid: Some(101),
                ..
            }
        ));
    }

    #[test]
    fn already_exists_carries_vmid_and_node() {
        match err(
            "pct create 100 local:vztmpl/x.tar.zst",
            "CT 100 already exists on node 'pve'\n",
        ) {
            PveError::AlreadyExists { vmid, node, .. } => {
                assert_eq!(vmid, Some(100));
                assert_eq!(node.as_deref(), Some("pve"));
            }
            e => panic!("{e:?}"),
        }
        match err(
            "pct create 100 local:vztmpl/x.tar.zst",
            "VM 100 already exists on node 'pve2'\n",
        ) {
            PveError::AlreadyExists { vmid, node, .. } => {
                assert_eq!(vmid, Some(100));
                assert_eq!(node.as_deref(), Some("pve2"));
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            err(
                "pvesh get /cluster/nextid --vmid 100",
                "400 Parameter verification failed.\nvmid: VM 100 already exists\n"
            ),
            PveError::AlreadyExists {
                vmid: Some(100),
                node: None,
                ..
            }
        ));
        assert!(matches!(
            err("pct snapshot 101 s1", "snapshot name 's1' already used\n"),
            PveError::AlreadyExists {
                vmid: Some(101),
                ..
            }
        ));
    }

    #[test]
    fn locked_carries_lock_name() {
        match err("pct start 101", "CT is locked (backup)\n") {
            PveError::Locked { lock, vmid, .. } => {
                assert_eq!(lock, "backup");
                assert_eq!(vmid, Some(101));
            }
            e => panic!("{e:?}"),
        }
        let e = classify(
            &a("vzdump 101"),
            Some(255),
            "ERROR: Backup of VM 101 failed - CT is locked (snapshot)\n",
            "job errors\n",
        )
        .unwrap_err();
        assert!(
            matches!(e, PveError::Locked { ref lock, vmid: Some(101), .. } if lock == "snapshot")
        );
    }

    #[test]
    fn not_running_texts() {
        for (cmd, text) in [
            ("pct stop 101", "CT 101 not running\n"),
            ("pct exec 101 --keep-env 0 -- ls", "container '101' not running!\n"),
            ("pct reboot 101", "VM 101 not running\n"),
            ("pct push 101 /a /b", "can only push files to a running CT\n"),
            (
                "pct pull 101 /a /b",
                "can only pull files from a running VM at /usr/share/perl5/PVE/CLI/pct.pm line 500.\n",
            ),
        ] {
            assert!(
                matches!(err(cmd, text), PveError::NotRunning { vmid: Some(101), .. }),
                "{text}"
            );
        }
    }

    #[test]
    fn already_running() {
        assert!(matches!(
            err("pct start 101", "CT 101 already running\n"),
            PveError::AlreadyRunning {
                vmid: Some(101),
                ..
            }
        ));
    }

    #[test]
    fn storage_unsuitable_texts() {
        for (text, storage) in [
            (
                "400 Parameter verification failed.\nstorage: storage 'backup' does not support container directories\npct create <vmid> <ostemplate> [OPTIONS]\n",
                Some("backup"),
            ),
            ("storage 'foo' does not exist\n", Some("foo")),
            ("storage 'foo' is disabled\n", Some("foo")),
            ("storage 'foo' is not available on node 'pve'\n", Some("foo")),
            ("Storage does not support templates!\n", None),
            ("storage 'nfs' does not support templates\n", Some("nfs")),
            ("could not activate storage 'nfs': timeout\n", Some("nfs")),
        ] {
            match err("pct create 101 local:vztmpl/x.tar.zst", text) {
                PveError::StorageUnsuitable { storage: s, .. } => {
                    assert_eq!(s.as_deref(), storage, "{text}")
                }
                e => panic!("{text}: {e:?}"),
            }
        }
    }

    #[test]
    fn template_missing() {
        match err(
            "pct create 101 local:vztmpl/x.tar.zst",
            "unable to create CT 101 - can't find file 'local:vztmpl/x.tar.zst'\n",
        ) {
            PveError::TemplateMissing { volid, .. } => assert_eq!(volid, "local:vztmpl/x.tar.zst"),
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn unknown_text_is_failed_with_trimmed_stderr() {
        match err("pct start 101", "  startup for container '101' failed  \n") {
            PveError::Failed {
                code,
                stderr,
                argv,
                output_tail,
            } => {
                assert_eq!(output_tail, "");
                assert_eq!(code, Some(255));
                assert_eq!(stderr, "startup for container '101' failed");
                assert_eq!(argv, a("pct start 101"));
            }
            e => panic!("{e:?}"),
        }
        // Bridges are not storage and not a missing guest.
        assert!(matches!(
            err("pct start 101", "bridge 'vmbr9' does not exist\n"),
            PveError::Failed { .. }
        ));
        // The worker's summary on stderr; the cause in its output.
        let e = classify(
            &a("pct start 101"),
            Some(255),
            "bridge 'vmbr9' does not exist\nlxc-start: 101: failed to start\n",
            "startup for container '101' failed\n",
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("startup for container '101' failed (task output: bridge 'vmbr9' does not exist | lxc-start: 101: failed to start)"),
            "{e}"
        );
        // Killed by a signal, nothing printed.
        let e = classify(&a("pct list"), None, "partial\n", "").unwrap_err();
        assert!(
            matches!(e, PveError::Failed { code: None, ref stderr, .. } if stderr == "partial")
        );
    }

    #[test]
    fn pveam_can_fail_with_exit_zero() {
        let e = classify(
            &a("pveam update"),
            Some(0),
            "",
            "update failed - see /var/log/pveam.log for details\n",
        )
        .unwrap_err();
        assert!(matches!(e, PveError::Failed { code: Some(0), .. }));
        let e = classify(
            &a("pveam download local x.tar.zst"),
            Some(0),
            "downloading ...\n",
            "checksum mismatch: got 'a' != expect 'b'\n",
        )
        .unwrap_err();
        assert!(matches!(e, PveError::Failed { .. }));
        let e = classify(
            &a("pveam download nfs x.tar.zst"),
            Some(0),
            "",
            "storage 'nfs' does not support templates\n",
        )
        .unwrap_err();
        assert!(matches!(e, PveError::StorageUnsuitable { .. }));
    }

    #[test]
    fn vmid_from_argv() {
        assert_eq!(vmid_in_argv(&a("pct set 105 --memory 512")), Some(105));
        assert_eq!(vmid_in_argv(&a("pct list")), None);
        assert_eq!(
            vmid_in_argv(&a("pvesh get /nodes/pve/lxc/107/status/current")),
            Some(107)
        );
        assert_eq!(vmid_in_argv(&a("vzdump 110 --storage local")), Some(110));
    }

    #[test]
    fn messages_are_actionable() {
        let e = err("pct start 101", "CT is locked (backup)\n");
        let s = e.to_string();
        assert!(
            s.contains("pct start 101") && s.contains("pct unlock"),
            "{s}"
        );
    }
}
