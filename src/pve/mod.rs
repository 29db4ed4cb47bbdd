//! Typed layer over the Proxmox VE command-line tools (`pct`, `pveam`,
//! `vzdump`, `pvesm`, `pvesh`, `pveversion`).
//!
//! What this module owns:
//! - [`runner`]: the one async runner every external command goes through
//!   (argv only, `LC_ALL=C`, own process group, timeout killing the group);
//! - [`error`]: [`PveError`] and [`classify`](error::classify), which derives
//!   typed errors from the tools' real message texts (not their exit codes);
//! - [`parse`]: pure, panic-free parsers of each tool's output;
//! - [`types`]: typed values (network devices, features, tags, ...);
//! - the wrappers on [`Pve`]: [`pct`], [`pveam`], [`vzdump`], [`pvesm`],
//!   [`pvesh`], [`version`].
//!
//! Invariants:
//! - wrappers build argv themselves from typed specs; nothing goes through a shell;
//! - every call's outcome goes through [`classify`](error::classify);
//! - PVE 8 and 9 are both supported: the wrappers always pass the options whose
//!   defaults differ (`--unprivileged`, `--keep-env 0`, `--features nesting=1`
//!   for systemd guests), never send options PVE 9 removed (`--maxfiles`,
//!   `notification-policy`), and refuse PVE 9-only options on PVE 8;
//! - warnings (`WARN: ...`, `Task finished with N warning(s)!`) are not errors.
//!
//! A handle is built from the configuration:
//! ```no_run
//! # async fn demo() -> Result<(), oneld::pve::PveError> {
//! use oneld::config::PveConfig;
//! let pve = oneld::pve::Pve::from_config(&PveConfig::default()).await?;
//! let cts = pve.pct_list().await?;
//! # Ok(()) }
//! ```
//! or directly, e.g. in tests: `Pve::new(Runner::new(Some(bin_dir)), PveVersion::new(9, 1), "pve")`.

use std::time::Duration;

use crate::config::PveConfig;

pub mod error;
pub mod parse;
pub mod pct;
pub mod pveam;
pub mod pvesh;
pub mod pvesm;
pub mod runner;
pub mod types;
pub mod version;
pub mod vzdump;

pub use error::PveError;
pub use parse::pveversion::PveVersion;
pub use runner::{Line, LineStream, Output, RunOptions, Runner};

/// A handle on the local PVE node's tools: the runner, the node's PVE version
/// (what wrappers branch on) and its name (for `pvesh` paths).
#[derive(Debug, Clone)]
pub struct Pve {
    runner: Runner,
    version: PveVersion,
    node: String,
    timeout: Duration,
    long_timeout: Duration,
}

/// Whether a command is expected to run long (create, restore, backup, download).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    Short,
    Long,
}

impl Pve {
    /// A handle with a known version and node name. Short commands use the
    /// runner's default timeout, long ones one hour (see [`Pve::with_timeouts`]).
    pub fn new(runner: Runner, version: PveVersion, node: impl Into<String>) -> Self {
        let timeout = runner.default_timeout();
        Self {
            runner,
            version,
            node: node.into(),
            timeout,
            long_timeout: Duration::from_secs(3600),
        }
    }

    /// Runs `pveversion` through `runner` to learn the version, then builds the handle.
    pub async fn detect(runner: Runner, node: impl Into<String>) -> Result<Self, PveError> {
        let version = version::read_version(&runner).await?;
        Ok(Self::new(runner, version, node))
    }

    /// Builds the handle from `[pve]`: `bin_dir`, timeouts, node name (or the
    /// short hostname), and the version read from `pveversion`.
    pub async fn from_config(cfg: &PveConfig) -> Result<Self, PveError> {
        let runner = Runner::new(cfg.bin_dir.clone()).with_default_timeout(cfg.command_timeout());
        let node = match &cfg.node {
            Some(n) => n.clone(),
            None => local_node_name()?,
        };
        Ok(Self::detect(runner, node)
            .await?
            .with_timeouts(cfg.command_timeout(), cfg.long_command_timeout()))
    }

    /// Sets the timeouts for short and long commands.
    pub fn with_timeouts(mut self, short: Duration, long: Duration) -> Self {
        self.timeout = short;
        self.long_timeout = long;
        self
    }

    /// The node's PVE major version (8, 9, ...).
    pub fn major(&self) -> u32 {
        self.version.major
    }

    /// The node's PVE version.
    pub fn version(&self) -> &PveVersion {
        &self.version
    }

    /// The node name used in `pvesh` paths.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The runner (for commands this layer does not wrap).
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Runs `argv`, classifies the outcome, and returns the output on success.
    pub(crate) async fn call(
        &self,
        argv: Vec<String>,
        len: Span,
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, PveError> {
        let out = self.run_raw(argv, len, stdin).await?;
        error::classify(&out.argv, out.code, &out.stdout_text(), &out.stderr_text())?;
        Ok(out)
    }

    /// Runs `argv` without classifying.
    pub(crate) async fn run_raw(
        &self,
        argv: Vec<String>,
        len: Span,
        stdin: Option<Vec<u8>>,
    ) -> Result<Output, PveError> {
        let timeout = match len {
            Span::Short => self.timeout,
            Span::Long => self.long_timeout,
        };
        Ok(self
            .runner
            .run(
                &argv,
                RunOptions {
                    stdin,
                    timeout: Some(timeout),
                },
            )
            .await?)
    }

    /// Runs a short command and returns its stdout as text.
    pub(crate) async fn call_text(
        &self,
        argv: Vec<String>,
    ) -> Result<(Vec<String>, String), PveError> {
        let out = self.call(argv, Span::Short, None).await?;
        let text = out.stdout_text().into_owned();
        Ok((out.argv, text))
    }
}

/// Wraps a parse error with the command that produced the text.
pub(crate) fn parsed<T>(argv: &[String], r: Result<T, parse::ParseError>) -> Result<T, PveError> {
    r.map_err(|source| PveError::Parse {
        argv: argv.to_vec(),
        source,
    })
}

/// This node's name as PVE uses it: the hostname up to the first `.`.
pub fn local_node_name() -> Result<String, PveError> {
    let raw =
        std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| PveError::Invalid {
            what: "node name",
            message: format!("cannot read the hostname ({e}); set `[pve] node`"),
        })?;
    let short = raw.trim().split('.').next().unwrap_or("").to_string();
    if short.is_empty() {
        return Err(PveError::Invalid {
            what: "node name",
            message: "the hostname is empty; set `[pve] node`".to_string(),
        });
    }
    Ok(short)
}

/// Builds an argv vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Args(Vec<String>);

impl Args {
    pub(crate) fn new<S: AsRef<str>>(parts: &[S]) -> Self {
        Self(parts.iter().map(|s| s.as_ref().to_string()).collect())
    }

    pub(crate) fn arg(&mut self, a: impl ToString) -> &mut Self {
        self.0.push(a.to_string());
        self
    }

    /// `--name value`.
    pub(crate) fn opt(&mut self, name: &str, value: impl ToString) -> &mut Self {
        self.0.push(format!("--{name}"));
        self.0.push(value.to_string());
        self
    }

    /// `--name value` when `value` is set.
    pub(crate) fn opt_some<T: ToString>(&mut self, name: &str, value: Option<T>) -> &mut Self {
        if let Some(v) = value {
            self.opt(name, v);
        }
        self
    }

    /// `--name 0|1`, always explicit.
    pub(crate) fn bool(&mut self, name: &str, value: bool) -> &mut Self {
        self.opt(name, if value { 1 } else { 0 })
    }

    /// `--name 1` only when true.
    pub(crate) fn flag(&mut self, name: &str, value: bool) -> &mut Self {
        if value {
            self.opt(name, 1);
        }
        self
    }

    pub(crate) fn build(&mut self) -> Vec<String> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    //! The wrappers end to end against fake tools in a temporary `bin_dir`.
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::parse::fixture;
    use super::pct::{CreateSpec, RootfsSpec};
    use super::vzdump::VzdumpSpec;
    use super::*;

    /// Writes an executable `name` into `dir` running `body` under /bin/sh; it
    /// appends its argv to `dir/calls`.
    fn fake(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        let script = format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            dir.join("calls").display()
        );
        std::fs::write(&p, script).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn data(dir: &Path, name: &str, text: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn calls(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("calls")).unwrap_or_default()
    }

    fn pve(dir: &Path, major: u32) -> Pve {
        Pve::new(
            Runner::new(Some(dir.to_path_buf())),
            PveVersion::new(major, 1),
            "pve",
        )
    }

    #[tokio::test]
    async fn from_config_detects_version_via_bin_dir() {
        let d = tempfile::tempdir().unwrap();
        let f = data(d.path(), "v", fixture!("pveversion-pve9-beta.txt"));
        fake(d.path(), "pveversion", &format!("cat '{f}'"));
        let cfg = PveConfig {
            bin_dir: Some(d.path().to_path_buf()),
            node: Some("pve".into()),
            ..PveConfig::default()
        };
        let pve = Pve::from_config(&cfg).await.unwrap();
        assert_eq!(pve.major(), 9);
        assert_eq!(pve.version().version, "9.0.0~22");
        assert_eq!(pve.node(), "pve");
    }

    #[tokio::test]
    async fn list_and_status() {
        let d = tempfile::tempdir().unwrap();
        let list = data(d.path(), "l", fixture!("pct-list.txt"));
        let st = data(
            d.path(),
            "s",
            fixture!("pct-status-verbose-pve9-running.txt"),
        );
        fake(
            d.path(),
            "pct",
            &format!("case $1 in list) cat '{list}';; status) cat '{st}';; esac"),
        );
        let pve = pve(d.path(), 9);
        assert_eq!(pve.pct_list().await.unwrap().len(), 2);
        let s = pve.pct_status(101, true).await.unwrap();
        assert_eq!(s.pid, Some(12345));
        assert!(calls(d.path()).contains("pct status 101 --verbose 1"));
    }

    #[tokio::test]
    async fn create_with_nesting_warning_is_ok_and_argv_is_explicit() {
        let d = tempfile::tempdir().unwrap();
        fake(
            d.path(),
            "pct",
            "echo 'WARN: Systemd 257 detected. You may need to enable nesting.'\necho 'Task finished with 1 warning(s)!' >&2\nexit 0",
        );
        let spec = CreateSpec::new(
            120,
            "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst",
            RootfsSpec {
                storage: "local-lvm".into(),
                size_gib: 4,
            },
        );
        pve(d.path(), 9).pct_create(&spec).await.unwrap();
        let c = calls(d.path());
        assert!(c.contains("--unprivileged 1"), "{c}");
        assert!(c.contains("--features nesting=1"), "{c}");
    }

    #[tokio::test]
    async fn errors_are_typed() {
        let d = tempfile::tempdir().unwrap();
        fake(
            d.path(),
            "pct",
            "case $1 in start) echo 'CT is locked (backup)' >&2; exit 2;;\n create) echo \"CT $2 already exists on node 'pve'\" >&2; exit 255;;\n config) echo \"Configuration file 'nodes/pve/lxc/$2.conf' does not exist\" >&2; exit 2;; esac",
        );
        let pve = pve(d.path(), 8);
        match pve.pct_start(101).await {
            Err(PveError::Locked { lock, vmid, .. }) => {
                assert_eq!(lock, "backup");
                assert_eq!(vmid, Some(101));
            }
            other => panic!("{other:?}"),
        }
        let spec = CreateSpec::new(
            100,
            "local:vztmpl/x.tar.zst",
            RootfsSpec {
                storage: "local".into(),
                size_gib: 1,
            },
        );
        assert!(matches!(
            pve.pct_create(&spec).await,
            Err(PveError::AlreadyExists { vmid: Some(100), node: Some(ref n), .. }) if n == "pve"
        ));
        assert!(matches!(
            pve.pct_config(555, false).await,
            Err(PveError::NotFound {
                vmid: Some(555),
                ..
            })
        ));
    }

    #[tokio::test]
    async fn exec_passes_stdin_and_exit_code_and_keeps_env_off() {
        let d = tempfile::tempdir().unwrap();
        fake(
            d.path(),
            "pct",
            "[ \"$3 $4 $5\" = '--keep-env 0 --' ] || { echo bad argv >&2; exit 99; }\nshift 5\nexec \"$@\"",
        );
        let pve = pve(d.path(), 8);
        let out = pve
            .pct_exec(101, &["cat"], Some(b"payload".to_vec()), None)
            .await
            .unwrap();
        assert_eq!(out.stdout, b"payload");
        let out = pve
            .pct_exec(101, &["sh", "-c", "echo oops >&2; exit 3"], None, None)
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        let err = pve
            .pct_exec(
                101,
                &[
                    "sh",
                    "-c",
                    "echo \"container '101' not running!\" >&2; exit 255",
                ],
                None,
                None,
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            PveError::NotRunning {
                vmid: Some(101),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn vzdump_archive_or_silent_other_node() {
        let d = tempfile::tempdir().unwrap();
        let ok = data(d.path(), "ok", fixture!("vzdump-success.txt"));
        fake(
            d.path(),
            "vzdump",
            &format!("[ \"$1\" = 101 ] && cat '{ok}'; exit 0"),
        );
        let pve = pve(d.path(), 9);
        let b = pve.vzdump(&VzdumpSpec::new(101, "local")).await.unwrap();
        assert!(b
            .archive
            .ends_with("vzdump-lxc-101-2024_05_01-10_00_00.tar.zst"));
        let e = pve
            .vzdump(&VzdumpSpec::new(102, "local"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                PveError::NotFound {
                    vmid: Some(102),
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn pveam_download_exit_zero_failures() {
        let d = tempfile::tempdir().unwrap();
        let list = data(d.path(), "l", fixture!("pveam-list.txt"));
        fake(
            d.path(),
            "pveam",
            &format!(
                "case \"$1 $3\" in\n 'download bad.tar.zst') echo 'checksum mismatch: got a != expect b' >&2;;\n 'download silent.tar.zst') ;;\n 'download debian-12-standard_12.12-1_amd64.tar.zst') ;;\n 'list '*) cat '{list}';;\n esac\nexit 0"
            ),
        );
        let pve = pve(d.path(), 8);
        assert!(matches!(
            pve.pveam_download("local", "bad.tar.zst").await,
            Err(PveError::Failed { .. })
        ));
        assert!(matches!(
            pve.pveam_download("local", "silent.tar.zst").await,
            Err(PveError::Failed { .. })
        ));
        // No success text, but the file is on the storage: fine.
        assert_eq!(
            pve.pveam_download("local", "debian-12-standard_12.12-1_amd64.tar.zst")
                .await
                .unwrap(),
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"
        );
    }

    #[tokio::test]
    async fn pvesh_reads() {
        let d = tempfile::tempdir().unwrap();
        let n = data(d.path(), "n", fixture!("pvesh-nextid-string.json"));
        let r = data(d.path(), "r", fixture!("pvesh-resources-vm.json"));
        let i = data(d.path(), "i", fixture!("pvesh-interfaces-stopped.json"));
        fake(
            d.path(),
            "pvesh",
            &format!("case $2 in /cluster/nextid) cat '{n}';; /cluster/resources) cat '{r}';; */interfaces) cat '{i}';; esac"),
        );
        let pve = pve(d.path(), 9);
        assert_eq!(pve.next_vmid().await.unwrap(), 100);
        assert_eq!(pve.cluster_cts().await.unwrap().len(), 3);
        assert!(pve.ct_interfaces(101).await.unwrap().is_empty());
        let c = calls(d.path());
        assert!(
            c.contains("pvesh get /cluster/resources --type vm --output-format json"),
            "{c}"
        );
        assert!(
            c.contains("pvesh get /nodes/pve/lxc/101/interfaces --output-format json"),
            "{c}"
        );
    }

    #[tokio::test]
    async fn timeout_is_typed() {
        let d = tempfile::tempdir().unwrap();
        fake(d.path(), "pct", "sleep 30");
        let pve = pve(d.path(), 8).with_timeouts(
            std::time::Duration::from_millis(300),
            std::time::Duration::from_millis(300),
        );
        assert!(matches!(
            pve.pct_list().await,
            Err(PveError::Timeout { .. })
        ));
    }
}
