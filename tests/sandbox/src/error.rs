//! The sandbox's error type and how each kind ends the process.
//!
//! PVE's CLI tools have four ways to fail, and callers depend on telling them
//! apart (see `/work/shared/pve-cli.md` §0):
//!
//! * a plain `die` before any worker starts ([`PveError::Die`]): the message on
//!   stderr, exit 255;
//! * a 400 parameter error ([`PveError::Param`]): `400 <msg>`, one
//!   `key: message` line per bad parameter, then the command's usage line;
//! * a failed worker task ([`PveError::TaskFailed`]): the error text with its
//!   newlines turned into spaces on stderr, exit 255 (see [`crate::task`]);
//! * an explicit exit code with an optional message ([`PveError::Exit`]), used
//!   by fault injection and by tools whose codes differ (`pveversion`).
//!
//! Everything else (I/O, subprocesses) is wrapped with what was being done and
//! on what, and is reported like a `die`.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// Result alias used across the sandbox.
pub type Result<T> = std::result::Result<T, PveError>;

/// Every way a sandbox command can fail.
#[derive(Debug, thiserror::Error)]
pub enum PveError {
    /// A `die` outside a worker: printed as-is (plus a newline) to stderr, exit 255.
    #[error("{0}")]
    Die(String),
    /// A 400 parameter error.
    #[error("400 {msg}")]
    Param {
        /// The first line's message, usually `Parameter verification failed.`.
        msg: String,
        /// `key: message` lines, printed sorted by key.
        errors: BTreeMap<String, String>,
        /// The command's short usage line, filled in by the dispatcher.
        usage: Option<String>,
    },
    /// A worker task failed; the text is what Perl would put after `TASK ERROR: `.
    #[error("{0}")]
    TaskFailed(String),
    /// Print `msg` (if not empty) to stderr and exit with `code`.
    #[error("{msg}")]
    Exit {
        /// The exit status.
        code: i32,
        /// The message for stderr (may be empty).
        msg: String,
    },
    /// A file-system operation failed.
    #[error("{what} '{}' failed: {source}", path.display())]
    Io {
        /// What was being done, e.g. `write config`.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A subprocess could not be run or failed.
    #[error("command '{argv}' failed: {detail}")]
    Command {
        /// The command line, space-joined (for the message only).
        argv: String,
        /// `exit code N`, `got signal N` or the spawn error.
        detail: String,
    },
}

impl PveError {
    /// A plain `die` with this message.
    pub fn die(msg: impl Into<String>) -> Self {
        PveError::Die(msg.into())
    }

    /// A 400 `Parameter verification failed.` with one `key: message` entry.
    pub fn param(key: impl Into<String>, msg: impl Into<String>) -> Self {
        let mut errors = BTreeMap::new();
        errors.insert(key.into(), msg.into());
        Self::params(errors)
    }

    /// A 400 `Parameter verification failed.` with several entries.
    pub fn params(errors: BTreeMap<String, String>) -> Self {
        PveError::Param {
            msg: "Parameter verification failed.".into(),
            errors,
            usage: None,
        }
    }

    /// A 400 error with a message of its own and no entries (`400 not enough arguments`).
    pub fn bad_request(msg: impl Into<String>) -> Self {
        PveError::Param {
            msg: msg.into(),
            errors: BTreeMap::new(),
            usage: None,
        }
    }

    /// Wrap an I/O error with what was done on which path.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PveError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// The CLI handler's answer to a missing (`None`) or unknown subcommand of
    /// `tool`: the generic usage line (after `ERROR: unknown command ...`
    /// for an unknown one), exit 255.
    pub fn bad_subcommand(tool: &str, sub: Option<&str>) -> Self {
        let usage = format!("USAGE: {tool} <COMMAND> [ARGS] [OPTIONS]");
        PveError::Exit {
            code: 255,
            msg: match sub {
                None => usage,
                Some(s) => format!("ERROR: unknown command '{tool} {s}'\n{usage}"),
            },
        }
    }

    /// Attach a usage line to a parameter error (no-op for other kinds or if set).
    pub fn with_usage(self, line: &str) -> Self {
        match self {
            PveError::Param {
                msg,
                errors,
                usage: None,
            } => PveError::Param {
                msg,
                errors,
                usage: Some(line.to_string()),
            },
            other => other,
        }
    }

    /// The text that goes to stderr (without the final newline) and the exit status.
    pub fn render(&self) -> (String, i32) {
        match self {
            PveError::Param { msg, errors, usage } => {
                let mut out = format!("400 {msg}");
                for (k, v) in errors {
                    out.push('\n');
                    out.push_str(k);
                    out.push_str(": ");
                    out.push_str(v.trim_end_matches('\n'));
                }
                if let Some(u) = usage {
                    out.push('\n');
                    out.push_str(u);
                }
                (out, 255)
            }
            PveError::TaskFailed(msg) => {
                // The CLI prints the task's exit status line, whose newlines were
                // replaced by spaces when the worker logged it.
                let text = msg.trim_end_matches('\n').replace('\n', " ");
                (text, 255)
            }
            PveError::Exit { code, msg } => (msg.trim_end_matches('\n').to_string(), *code),
            other => (other.to_string().trim_end_matches('\n').to_string(), 255),
        }
    }
}
