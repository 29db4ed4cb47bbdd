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
pub use runner::{Output, RunOptions, Runner};

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
