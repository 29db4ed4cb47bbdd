//! Worker-task semantics of PVE's CLI (`fork_worker` in sync mode).
//!
//! * Worker output (including merged stderr of subprocesses) goes to **stdout**.
//! * `warn`ings are logged as `WARN: <msg>` and counted; if any, the CLI prints
//!   `Task finished with N warning(s)!` to **stderr** and still exits 0.
//! * A failure becomes [`PveError::TaskFailed`]: `main` prints the text with
//!   newlines replaced by spaces to stderr and exits 255.
//! * Errors raised *before* [`run_worker`] keep their own kind (a `die` or a
//!   400), which is how PVE distinguishes pre-checks from task failures.

use std::io::Write;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

use crate::error::{PveError, Result};

/// The running worker: a log sink with a warning counter.
#[derive(Debug, Default)]
pub struct Worker {
    warnings: u32,
}

impl Worker {
    /// Log one line to the task output (stdout), flushed at once.
    pub fn log(&mut self, line: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }

    /// Log `WARN: <msg>` and count it.
    pub fn warn(&mut self, msg: &str) {
        self.warnings += 1;
        self.log(&format!("WARN: {msg}"));
    }

    /// Number of warnings so far.
    pub fn warnings(&self) -> u32 {
        self.warnings
    }

    /// Run a subprocess whose stdout and stderr both go to the task output.
    /// Fails with PVE's `command '<argv>' failed: exit code N`.
    pub fn run(&mut self, cmd: &mut Command) -> Result<()> {
        let _ = std::io::stdout().flush();
        let argv = crate::util::cmdline(cmd);
        let out = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| PveError::io("dup stdout", "/dev/stdout", e))?;
        let err = out
            .try_clone()
            .map_err(|e| PveError::io("dup stdout", "/dev/stdout", e))?;
        let status = cmd
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .status()
            .map_err(|e| PveError::Command {
                argv: argv.clone(),
                detail: e.to_string(),
            })?;
        crate::util::check_status(&argv, status)
    }
}

/// Run `f` as a worker task in the foreground. See the module docs.
pub fn run_worker<F>(f: F) -> Result<()>
where
    F: FnOnce(&mut Worker) -> Result<()>,
{
    let mut w = Worker::default();
    let res = f(&mut w);
    let _ = std::io::stdout().flush();
    match res {
        Ok(()) => {
            if w.warnings > 0 {
                eprintln!("Task finished with {} warning(s)!", w.warnings);
            }
            Ok(())
        }
        Err(PveError::TaskFailed(m)) => Err(PveError::TaskFailed(m)),
        Err(e @ PveError::Param { .. }) => Err(PveError::TaskFailed(e.render().0)),
        Err(e) => Err(PveError::TaskFailed(e.render().0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_text() {
        let r = run_worker(|_| Err(PveError::die("a\nb\n")));
        let (t, c) = r.err().map(|e| e.render()).unwrap_or_default();
        assert_eq!((t.as_str(), c), ("a b", 255));
    }
}
