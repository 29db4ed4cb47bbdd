//! The one async runner every external command goes through.
//!
//! Invariants, for every call:
//! - the program gets an argv vector, never a shell line;
//! - `LC_ALL=C` is set so messages are the English texts the classifier knows;
//! - the child leads its own process group (`process_group(0)`), and a timeout,
//!   or dropping the future, kills the **whole group** with `SIGKILL`, so helpers
//!   the child forked (lxc-attach, tar, wget, ...) die with it;
//! - stdout and stderr are captured (up to [`MAX_CAPTURE`] bytes each);
//! - the argv is logged at debug level.
//!
//! Program names without a `/` are resolved in the runner's `bin_dir` when one
//! is configured (and only there, so tests pointed at a sandbox never run a real
//! tool by accident), else in `PATH`.

use std::borrow::Cow;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// Timeout used when neither the runner nor the call sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Most bytes kept per stream; the rest is read and dropped (see [`Output::truncated`]).
pub const MAX_CAPTURE: usize = 32 << 20;

/// How long to keep reading pipes after the direct child exited. A helper that
/// daemonized and kept our pipes open must not hold the caller until the timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Runs external commands; cheap to clone.
#[derive(Debug, Clone)]
pub struct Runner {
    bin_dir: Option<PathBuf>,
    default_timeout: Duration,
    /// Extra environment for every child (on top of the inherited one and
    /// `LC_ALL=C`), e.g. the sandbox node's root in tests.
    env: Vec<(String, String)>,
    /// Commands started by this runner and its clones, by program name.
    spawned: Arc<Mutex<Vec<(String, u64)>>>,
}

impl Default for Runner {
    fn default() -> Self {
        Self::new(None)
    }
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Bytes written to the child's stdin, which is then closed. `None` gives
    /// the child `/dev/null` as stdin.
    pub stdin: Option<Vec<u8>>,
    /// Overrides the runner's default timeout for this call.
    pub timeout: Option<Duration>,
}

impl RunOptions {
    /// Options with only a timeout set.
    pub fn with_timeout(timeout: Duration) -> Self {
        Self {
            stdin: None,
            timeout: Some(timeout),
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The argv as given (program name unresolved).
    pub argv: Vec<String>,
    /// Exit code; `None` when the child was killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed the child, if any.
    pub signal: Option<i32>,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
    /// Wall time from spawn until the output was collected.
    pub duration: Duration,
    /// True when a stream exceeded [`MAX_CAPTURE`] and was cut.
    pub truncated: bool,
}

impl Output {
    /// True when the command exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Stdout as text (invalid UTF-8 replaced).
    pub fn stdout_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// Stderr as text (invalid UTF-8 replaced).
    pub fn stderr_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Why a command could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The argv vector was empty.
    #[error("empty argv: nothing to run")]
    EmptyArgv,
    /// The program was not found where the runner looks for it.
    #[error("program '{program}' not found in {searched}; install it or fix `[pve] bin_dir`")]
    ProgramNotFound {
        /// The program name as given.
        program: String,
        /// Where the runner looked.
        searched: String,
    },
    /// Spawning failed for another reason (permissions, exec format, ...).
    #[error("failed to spawn `{}`: {source}", argv.join(" "))]
    Spawn {
        /// The argv.
        argv: Vec<String>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the child failed.
    #[error("i/o error while running `{}`: {source}", argv.join(" "))]
    Io {
        /// The argv.
        argv: Vec<String>,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The timeout expired; the whole process group was killed.
    #[error("`{}` timed out after {after:?}; its process group was killed", argv.join(" "))]
    Timeout {
        /// The argv.
        argv: Vec<String>,
        /// The timeout that expired.
        after: Duration,
        /// Stdout captured before the kill.
        stdout: Vec<u8>,
        /// Stderr captured before the kill.
        stderr: Vec<u8>,
    },
}

#[derive(Default)]
struct CaptureBuf {
    data: Vec<u8>,
    truncated: bool,
}

type Capture = Arc<Mutex<CaptureBuf>>;

fn lock(c: &Capture) -> MutexGuard<'_, CaptureBuf> {
    // A reader task cannot panic while holding the lock, but never propagate poison.
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kills the child's process group on drop unless disarmed: covers the timeout
/// path and a caller dropping the future mid-run.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH just means the group is already gone.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `reader` to its end into `buf`, keeping at most `max` bytes (the
/// rest is read and dropped, and `buf` marked truncated).
async fn pump<R: AsyncRead + Unpin>(mut reader: R, buf: Capture, max: usize) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut b = lock(&buf);
                let room = max.saturating_sub(b.data.len());
                let take = n.min(room);
                b.data
                    .extend_from_slice(chunk.get(..take).unwrap_or_default());
                if take < n {
                    b.truncated = true;
                }
            }
        }
    }
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Spawns `cmd`, retrying briefly on `ETXTBSY`: a binary that was just
/// written (an upgrade, a test's fake tool) stays "busy" while any other
/// thread's fork still holds the writer's descriptor.
async fn spawn_retrying_busy(
    cmd: &mut tokio::process::Command,
) -> std::io::Result<tokio::process::Child> {
    let mut delay = Duration::from_millis(5);
    for _ in 0..5 {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    cmd.spawn()
}

impl Runner {
    /// A runner resolving program names in `bin_dir` (if given) or else `PATH`,
    /// with [`DEFAULT_TIMEOUT`].
    pub fn new(bin_dir: Option<PathBuf>) -> Self {
        Self {
            bin_dir,
            default_timeout: DEFAULT_TIMEOUT,
            env: Vec::new(),
            spawned: Arc::default(),
        }
    }

    /// Adds `key=value` to the environment of every command this runner starts.
    /// `LC_ALL` cannot be overridden: the classifier relies on English texts.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        if key != "LC_ALL" {
            self.env.push((key, value.into()));
        }
        self
    }

    /// Sets the timeout used by calls that do not give their own.
    pub fn with_default_timeout(mut self, timeout: Duration) -> Self {
        self.default_timeout = timeout;
        self
    }

    /// The directory program names are resolved in, if any.
    pub fn bin_dir(&self) -> Option<&Path> {
        self.bin_dir.as_deref()
    }

    /// The timeout used when a call does not set one.
    pub fn default_timeout(&self) -> Duration {
        self.default_timeout
    }

    /// How many commands this runner (and its clones) started, by program
    /// name (`pct`, `vzdump`, ...), sorted: what `/metrics` reports as
    /// `oneld_host_commands_total` and what the supervision benchmark counts.
    pub fn spawned_total(&self) -> Vec<(String, u64)> {
        let mut v = self
            .spawned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort();
        v
    }

    fn count_spawn(&self, program: &str) {
        let name = program.rsplit('/').next().unwrap_or(program);
        let mut m = self.spawned.lock().unwrap_or_else(|p| p.into_inner());
        match m.iter_mut().find(|(n, _)| n == name) {
            Some((_, c)) => *c += 1,
            None => m.push((name.to_string(), 1)),
        }
    }

    /// Finds the executable for `program`.
    pub fn resolve(&self, program: &str) -> Result<PathBuf, RunError> {
        if program.contains('/') {
            return Ok(PathBuf::from(program));
        }
        if let Some(dir) = &self.bin_dir {
            let p = dir.join(program);
            if is_executable(&p) {
                return Ok(p);
            }
            return Err(RunError::ProgramNotFound {
                program: program.to_string(),
                searched: format!("bin_dir '{}'", dir.display()),
            });
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        for dir in std::env::split_paths(&path) {
            if dir.as_os_str().is_empty() {
                continue;
            }
            let p = dir.join(program);
            if is_executable(&p) {
                return Ok(p);
            }
        }
        Err(RunError::ProgramNotFound {
            program: program.to_string(),
            searched: "PATH".to_string(),
        })
    }

    /// Runs `argv` to completion (or timeout) and returns what it produced.
    ///
    /// A non-zero exit is not an error here; interpreting it is the caller's job
    /// (see [`crate::pve::error::classify`]).
    pub async fn run(&self, argv: &[String], opts: RunOptions) -> Result<Output, RunError> {
        let (program, args) = argv.split_first().ok_or(RunError::EmptyArgv)?;
        let path = self.resolve(program)?;
        let timeout = opts.timeout.unwrap_or(self.default_timeout);
        tracing::debug!(?argv, ?timeout, path = %path.display(), "running command");

        let start = Instant::now();
        let (mut child, mut guard) = self
            .spawn(program, args, &path, argv, opts.stdin.is_some())
            .await?;

        let out: Capture = Capture::default();
        let err: Capture = Capture::default();
        let mut readers = Vec::with_capacity(2);
        if let Some(s) = child.stdout.take() {
            readers.push(tokio::spawn(pump(s, out.clone(), MAX_CAPTURE)));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(tokio::spawn(pump(s, err.clone(), MAX_CAPTURE)));
        }
        // Written from its own task so a child that never reads stdin cannot
        // block us from reading its output.
        if let (Some(mut sink), Some(data)) = (child.stdin.take(), opts.stdin) {
            tokio::spawn(async move {
                // A child that exits without reading everything gives EPIPE: not our error.
                let _ = sink.write_all(&data).await;
                let _ = sink.shutdown().await;
            });
        }

        let Some(status) = wait_or_kill(&mut child, &mut guard, timeout, argv).await? else {
            drain(readers).await;
            tracing::debug!(?argv, ?timeout, "command timed out; process group killed");
            return Err(RunError::Timeout {
                argv: argv.to_vec(),
                after: timeout,
                stdout: std::mem::take(&mut lock(&out).data),
                stderr: std::mem::take(&mut lock(&err).data),
            });
        };
        drain(readers).await;

        use std::os::unix::process::ExitStatusExt;
        let (mut o, mut e) = (lock(&out), lock(&err));
        let output = Output {
            argv: argv.to_vec(),
            code: status.code(),
            signal: status.signal(),
            stdout: std::mem::take(&mut o.data),
            stderr: std::mem::take(&mut e.data),
            duration: start.elapsed(),
            truncated: o.truncated || e.truncated,
        };
        tracing::debug!(argv = ?output.argv, code = ?output.code, duration = ?output.duration, "command finished");
        Ok(output)
    }
}

/// Longest line [`LineStream::next_line`] returns; the rest of a longer line
/// is read and dropped (the line is then marked cut).
pub const MAX_LINE: usize = 64 << 10;

/// Stderr kept from a streaming command (for its error message).
const STREAM_STDERR: usize = 64 << 10;

/// One line of a streaming command's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The bytes, without the newline (at most [`MAX_LINE`]).
    pub bytes: Vec<u8>,
    /// True when the line was longer than [`MAX_LINE`] and was cut.
    pub cut: bool,
}

/// A running command whose stdout is read line by line (`journalctl -f`).
///
/// There is no timeout: the caller decides how long to read. Dropping the
/// stream kills the command's whole process group with `SIGKILL` (unless it
/// was already reaped by [`LineStream::finish`]) and closes the pipe, so
/// nothing it started outlives the reader.
#[derive(Debug)]
pub struct LineStream {
    argv: Vec<String>,
    child: tokio::process::Child,
    stdout: Option<tokio::process::ChildStdout>,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Dropping the rest of an over-long line.
    skipping: bool,
    eof: bool,
    stderr: Capture,
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
    guard: GroupGuard,
}

impl std::fmt::Debug for GroupGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupGuard")
            .field("pgid", &self.pgid)
            .finish()
    }
}

impl std::fmt::Debug for CaptureBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureBuf")
            .field("len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl LineStream {
    /// The argv as given.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The child's pid (its process group id), while it was not reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The next line of stdout; `None` at the end of stdout. Cancel-safe:
    /// a partly read line is kept for the next call.
    pub async fn next_line(&mut self) -> Result<Option<Line>, RunError> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(pos) = self
                .buf
                .get(self.scanned..)
                .and_then(|rest| rest.iter().position(|b| *b == b'\n'))
            {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                self.scanned = 0;
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                let cut = line.len() > MAX_LINE;
                line.truncate(MAX_LINE);
                return Ok(Some(Line { bytes: line, cut }));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > MAX_LINE {
                // Hand out the first MAX_LINE bytes now; drop the rest of the line.
                let mut line = std::mem::take(&mut self.buf);
                line.truncate(MAX_LINE);
                self.scanned = 0;
                let was_skipping = std::mem::replace(&mut self.skipping, true);
                if !was_skipping {
                    return Ok(Some(Line {
                        bytes: line,
                        cut: true,
                    }));
                }
            }
            if self.eof {
                if self.buf.is_empty() || self.skipping {
                    self.buf.clear();
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                self.scanned = 0;
                return Ok(Some(Line {
                    bytes: line,
                    cut: false,
                }));
            }
            let Some(out) = self.stdout.as_mut() else {
                self.eof = true;
                continue;
            };
            match out.read(&mut chunk).await {
                Ok(0) => {
                    self.eof = true;
                    self.stdout = None;
                }
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
                Err(source) => {
                    return Err(RunError::Io {
                        argv: self.argv.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// Waits for the command to exit (at most `timeout`, then its group is
    /// killed) and returns its exit status and stderr; stdout not read yet
    /// is dropped.
    pub async fn finish(mut self, timeout: Duration) -> Result<Output, RunError> {
        self.stdout = None;
        let start = Instant::now();
        let Some(status) =
            wait_or_kill(&mut self.child, &mut self.guard, timeout, &self.argv).await?
        else {
            return Err(RunError::Timeout {
                argv: self.argv.clone(),
                after: timeout,
                stdout: Vec::new(),
                stderr: std::mem::take(&mut lock(&self.stderr).data),
            });
        };
        if let Some(r) = self.stderr_reader.take() {
            drain(vec![r]).await;
        }
        use std::os::unix::process::ExitStatusExt;
        let e = std::mem::take(&mut *lock(&self.stderr));
        Ok(Output {
            argv: self.argv.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout: Vec::new(),
            stderr: e.data,
            duration: start.elapsed(),
            truncated: e.truncated,
        })
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        // The guard kills the group; stop the stderr reader too.
        if let Some(r) = self.stderr_reader.take() {
            r.abort();
        }
    }
}

impl Runner {
    /// Starts `argv` with stdout read line by line ([`LineStream`]); stdin
    /// is `/dev/null`, stderr is kept (bounded) for [`LineStream::finish`].
    /// Same rules as [`Runner::run`]: argv only, `LC_ALL=C`, own process
    /// group; no timeout (dropping the stream kills the group).
    pub async fn stream(&self, argv: &[String]) -> Result<LineStream, RunError> {
        let (program, args) = argv.split_first().ok_or(RunError::EmptyArgv)?;
        let path = self.resolve(program)?;
        tracing::debug!(?argv, path = %path.display(), "streaming command");
        let (mut child, guard) = self.spawn(program, args, &path, argv, false).await?;
        let stderr = Capture::default();
        let stderr_reader = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, stderr.clone(), STREAM_STDERR)));
        Ok(LineStream {
            argv: argv.to_vec(),
            stdout: child.stdout.take(),
            child,
            buf: Vec::new(),
            scanned: 0,
            skipping: false,
            eof: false,
            stderr,
            stderr_reader,
            guard,
        })
    }
}

impl Runner {
    /// Starts `program` (resolved to `path`) with `args` the way
    /// [`Runner::run`] and [`Runner::stream`] both do: the runner's env,
    /// `LC_ALL=C`, its own process group (killed when the guard or child is
    /// dropped), stdout and stderr piped, stdin piped or `/dev/null`.
    async fn spawn(
        &self,
        program: &str,
        args: &[String],
        path: &std::path::Path,
        argv: &[String],
        piped_stdin: bool,
    ) -> Result<(tokio::process::Child, GroupGuard), RunError> {
        let mut cmd = tokio::process::Command::new(path);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("LC_ALL", "C")
            .process_group(0)
            .kill_on_drop(true)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.count_spawn(program);
        let child = spawn_retrying_busy(&mut cmd).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                RunError::ProgramNotFound {
                    program: program.to_string(),
                    searched: path.display().to_string(),
                }
            } else {
                RunError::Spawn {
                    argv: argv.to_vec(),
                    source,
                }
            }
        })?;
        let guard = GroupGuard {
            pgid: child
                .id()
                .and_then(|p| i32::try_from(p).ok())
                .map(Pid::from_raw),
        };
        Ok((child, guard))
    }
}

/// Waits at most `timeout` for `child` to exit. `None`: it did not, so its
/// process group was killed and the child reaped. Once it has exited the
/// guard is disarmed: the leader is reaped and its pgid may be reused, so
/// it is never signalled again.
async fn wait_or_kill(
    child: &mut tokio::process::Child,
    guard: &mut GroupGuard,
    timeout: Duration,
    argv: &[String],
) -> Result<Option<std::process::ExitStatus>, RunError> {
    match tokio::time::timeout(timeout, child.wait()).await {
        Err(_elapsed) => {
            guard.kill();
            let _ = child.wait().await;
            Ok(None)
        }
        Ok(Err(source)) => Err(RunError::Io {
            argv: argv.to_vec(),
            source,
        }),
        Ok(Ok(status)) => {
            guard.disarm();
            Ok(Some(status))
        }
    }
}

async fn drain(readers: Vec<tokio::task::JoinHandle<()>>) {
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN_GRACE, r).await.is_err() {
            abort.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn pid_alive(pid: i32) -> bool {
        // Signal 0 probes existence; a zombie still counts, so check /proc state too.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(s) => !s
                .rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// The pids a test script wrote to `pidfile`, one a line.
    fn read_pids(pidfile: &Path) -> Vec<i32> {
        std::fs::read_to_string(pidfile)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect()
    }

    /// Waits (at most 5 s) until none of `pids` is alive.
    async fn wait_until_gone(pids: &[i32]) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pids.iter().any(|p| pid_alive(*p)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn captures_stdout_stderr_and_exit_code() {
        let r = Runner::default();
        let out = r
            .run(
                &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert!(!out.success());
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(out.stderr_text(), "err\n");
        assert_eq!(out.signal, None);
    }

    #[tokio::test]
    async fn sets_lc_all_c() {
        let out = Runner::default()
            .run(&argv(&["sh", "-c", "echo $LC_ALL"]), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "C\n");
    }

    #[tokio::test]
    async fn extra_env_reaches_the_child_but_lc_all_stays_c() {
        let out = Runner::default()
            .with_env("PVE_SANDBOX_ROOT", "/tmp/sbx")
            .with_env("LC_ALL", "de_DE.UTF-8")
            .run(
                &argv(&["sh", "-c", "echo $PVE_SANDBOX_ROOT $LC_ALL"]),
                RunOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "/tmp/sbx C\n");
    }

    #[tokio::test]
    async fn own_process_group() {
        let out = Runner::default()
            .run(
                &argv(&["sh", "-c", "ps -o pgid= -p $$; echo $$"]),
                RunOptions::default(),
            )
            .await
            .unwrap();
        let text = out.stdout_text();
        let mut it = text.split_whitespace();
        let (pgid, pid) = (it.next().unwrap(), it.next().unwrap());
        assert_eq!(pgid, pid);
    }

    #[tokio::test]
    async fn stdin_passes_through() {
        let out = Runner::default()
            .run(
                &argv(&["cat"]),
                RunOptions {
                    stdin: Some(b"hello\0world".to_vec()),
                    timeout: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(out.stdout, b"hello\0world");
    }

    #[tokio::test]
    async fn stdin_is_dev_null_by_default() {
        let out = Runner::default()
            .run(&argv(&["cat"]), RunOptions::default())
            .await
            .unwrap();
        assert!(out.success());
        assert!(out.stdout.is_empty());
    }

    #[tokio::test]
    async fn large_stdin_to_child_that_ignores_it_does_not_hang() {
        let out = Runner::default()
            .run(
                &argv(&["true"]),
                RunOptions {
                    stdin: Some(vec![b'x'; 4 << 20]),
                    timeout: Some(Duration::from_secs(10)),
                },
            )
            .await
            .unwrap();
        assert!(out.success());
    }

    #[tokio::test]
    async fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let script = format!(
            "sleep 100 & echo $! > {p}; sleep 100 & echo $! >> {p}; wait",
            p = pidfile.display()
        );
        let t0 = Instant::now();
        let res = Runner::default()
            .run(
                &argv(&["sh", "-c", &script]),
                RunOptions::with_timeout(Duration::from_millis(500)),
            )
            .await;
        assert!(t0.elapsed() < Duration::from_secs(5));
        match res {
            Err(RunError::Timeout { after, .. }) => assert_eq!(after, Duration::from_millis(500)),
            other => panic!("expected timeout, got {other:?}"),
        }
        let pids = read_pids(&pidfile);
        assert_eq!(pids.len(), 2);
        // The grandchildren are reparented to init, which reaps them shortly.
        wait_until_gone(&pids).await;
        for p in pids {
            assert!(!pid_alive(p), "grandchild {p} survived the timeout");
        }
    }

    #[tokio::test]
    async fn daemonized_helper_holding_pipes_does_not_block_until_timeout() {
        let t0 = Instant::now();
        let out = Runner::default()
            .run(
                &argv(&["sh", "-c", "echo hi; sleep 30 & exit 0"]),
                RunOptions::with_timeout(Duration::from_secs(60)),
            )
            .await
            .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(out.stdout_text(), "hi\n");
    }

    #[tokio::test]
    async fn missing_program_is_a_clear_error() {
        let err = Runner::default()
            .run(&argv(&["no-such-program-1ld"]), RunOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, RunError::ProgramNotFound { ref program, .. } if program == "no-such-program-1ld")
        );
        assert!(err.to_string().contains("not found in PATH"));

        let err = Runner::default()
            .run(&argv(&["/nonexistent/pct"]), RunOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::ProgramNotFound { .. }));

        let dir = tempfile::tempdir().unwrap();
        let err = Runner::new(Some(dir.path().to_path_buf()))
            .run(&argv(&["sh", "-c", "true"]), RunOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("bin_dir"), "{err}");
    }

    #[tokio::test]
    async fn empty_argv_is_an_error() {
        let err = Runner::default()
            .run(&[], RunOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, RunError::EmptyArgv));
    }

    #[tokio::test]
    async fn bin_dir_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pct");
        std::fs::write(&p, "#!/bin/sh\necho fake pct \"$@\"\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let r = Runner::new(Some(dir.path().to_path_buf()));
        let out = r
            .run(&argv(&["pct", "list"]), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(out.stdout_text(), "fake pct list\n");
    }

    #[tokio::test]
    async fn stream_reads_lines_keeps_stderr_and_exit_status() {
        let mut s = Runner::default()
            .stream(&argv(&[
                "sh",
                "-c",
                "printf 'one\\ntwo\\n'; printf 'no newline'; echo oops >&2; exit 4",
            ]))
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(l) = s.next_line().await.unwrap() {
            assert!(!l.cut);
            got.push(String::from_utf8(l.bytes).unwrap());
        }
        assert_eq!(got, ["one", "two", "no newline"]);
        let out = s.finish(Duration::from_secs(5)).await.unwrap();
        assert_eq!(out.code, Some(4));
        assert_eq!(out.stderr_text(), "oops\n");
    }

    #[tokio::test]
    async fn stream_cuts_long_lines_and_goes_on() {
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' a; echo; echo after",
            MAX_LINE * 3 + 5
        );
        let mut s = Runner::default()
            .stream(&argv(&["sh", "-c", &script]))
            .await
            .unwrap();
        let first = s.next_line().await.unwrap().unwrap();
        assert!(first.cut);
        assert_eq!(first.bytes.len(), MAX_LINE);
        let second = s.next_line().await.unwrap().unwrap();
        assert_eq!(
            (second.bytes.as_slice(), second.cut),
            (&b"after"[..], false)
        );
        assert!(s.next_line().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn dropping_a_stream_kills_its_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pids");
        let script = format!(
            "sleep 100 & echo $! > {p}; echo $$ >> {p}; echo started; wait",
            p = pidfile.display()
        );
        let mut s = Runner::default()
            .stream(&argv(&["sh", "-c", &script]))
            .await
            .unwrap();
        let l = s.next_line().await.unwrap().unwrap();
        assert_eq!(l.bytes, b"started");
        let pids = read_pids(&pidfile);
        assert_eq!(pids.len(), 2);
        assert!(pids.iter().all(|p| pid_alive(*p)));
        drop(s);
        wait_until_gone(&pids).await;
        for p in pids {
            assert!(!pid_alive(p), "{p} survived the dropped stream");
        }
    }

    #[tokio::test]
    async fn signal_is_reported() {
        let out = Runner::default()
            .run(&argv(&["sh", "-c", "kill -9 $$"]), RunOptions::default())
            .await
            .unwrap();
        assert_eq!(out.code, None);
        assert_eq!(out.signal, Some(9));
    }
}
