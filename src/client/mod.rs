//! `1ldctl`, the client: the command line ([`cli`]), HTTP over the daemon's
//! Unix socket typed with [`crate::api`] ([`http`]), the error type and its
//! exit codes ([`error`]), human rendering ([`render`]), following
//! operations ([`progress`]) and the commands ([`commands`]; `1ldctl notify`
//! in [`notify`]).
//!
//! Invariants:
//! - the client never runs Proxmox tools and never keeps its own copies of
//!   wire types: everything goes through the socket as [`crate::api`] types;
//! - `--json` prints the API's JSON as the daemon sent it (stdout), errors
//!   as `{"error":{"code","message"}}` (stderr); human output goes through
//!   [`render`], with colour only on a terminal and never with `NO_COLOR`;
//! - every failure is a [`ClientError`] with a documented exit code.

pub mod cli;
pub mod commands;
pub mod error;
pub mod http;
pub mod notify;
pub mod progress;
pub mod render;
pub mod spec;

use std::io::{IsTerminal, Write};

pub use error::ClientError;
pub use http::Client;

/// How this invocation prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// `-v` count.
    pub verbose: u8,
    /// Colour on stdout (a terminal, no `--no-color`, no `NO_COLOR`).
    pub color: bool,
    /// stdout is a terminal.
    pub stdout_tty: bool,
    /// stderr is a terminal (progress bars go there).
    pub stderr_tty: bool,
    /// `--no-color` or `NO_COLOR`.
    pub no_color: bool,
}

impl Output {
    /// From the global options and the environment.
    pub fn from_global(g: &cli::Global) -> Self {
        let no_color_env = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let stdout_tty = std::io::stdout().is_terminal();
        let stderr_tty = std::io::stderr().is_terminal();
        let no_color = g.no_color || no_color_env;
        Output {
            json: g.json,
            quiet: g.quiet,
            verbose: g.verbose,
            color: stdout_tty && !no_color && !g.json,
            stdout_tty,
            stderr_tty,
            no_color,
        }
    }

    /// The render style for stdout.
    pub fn style(&self) -> render::Style {
        render::Style { color: self.color }
    }

    /// Colour on stderr (errors, progress).
    pub fn stderr_color(&self) -> bool {
        self.stderr_tty && !self.json && !self.no_color
    }

    /// Writes `text` to stdout as is. A closed pipe (`| head`) is not an error.
    pub fn print(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }

    /// Writes a line to stdout unless `-q`.
    pub fn say(&self, line: &str) {
        if !self.quiet {
            self.print(&format!("{line}\n"));
        }
    }

    /// Writes `v` as pretty JSON on stdout.
    pub fn json_value(&self, v: &serde_json::Value) {
        let text = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
        self.print(&format!("{text}\n"));
    }

    /// Prints `err` on stderr: the JSON error body with `--json`, otherwise
    /// `1ldctl: message` (one line per field for validation errors) and the hint.
    pub fn error(&self, err: &ClientError) {
        let mut stderr = std::io::stderr().lock();
        if self.json {
            let body =
                serde_json::json!({"error": {"code": err.code(), "message": err.to_string()}});
            let _ = writeln!(stderr, "{body}");
            return;
        }
        let style = render::Style {
            color: self.stderr_color(),
        };
        let label = render::paint("error:", Some(render::Tone::Bad), style);
        let lines = err.lines();
        if lines.len() == 1 {
            let _ = writeln!(stderr, "1ldctl: {label} {}", lines[0]);
        } else {
            let _ = writeln!(
                stderr,
                "1ldctl: {label} the request has {} problems:",
                lines.len()
            );
            for l in lines {
                let _ = writeln!(stderr, "  - {l}");
            }
        }
        if let Some(hint) = err.hint() {
            let _ = writeln!(stderr, "hint: {hint}");
        }
    }
}
