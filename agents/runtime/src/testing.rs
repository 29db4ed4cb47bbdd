//! Test support (feature `test-support`): the agents' fake upstream and
//! process helpers.
//!
//! [`ReplayServer`] replays recorded HTTP transcripts exactly; it is a thin
//! wrapper over `fake_upstreams::Replay` (tests/fakes), which also has the
//! credential-aware NetBox / Wiki.js / Home Assistant fakes used by the
//! demo. A live request is answered with the first recorded exchange whose
//! method, path (with query), every recorded request header, the absence of
//! `Authorization` when none was recorded, and JSON body all match; the
//! body goes out as the server sent it (compact JSON, recorded key order).
//! Anything else gets a 599 and is remembered, so a test can assert that
//! the client sent exactly what the real server saw.

use std::path::Path;

pub use fake_upstreams::{Exchange, RecordedRequest, RecordedResponse};

/// Reads a transcript file.
///
/// # Panics
/// On an unreadable or malformed file (test support only).
pub fn load_transcript(path: &Path) -> Vec<Exchange> {
    fake_upstreams::Transcript::load(path)
        .unwrap_or_else(|e| panic!("{e}"))
        .exchanges
}

/// The running fake (stopped when dropped).
#[derive(Debug)]
pub struct ReplayServer {
    handle: fake_upstreams::Handle,
}

impl ReplayServer {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    ///
    /// # Panics
    /// When a recorded response cannot be replayed or no port can be bound
    /// (test support only).
    pub async fn start(exchanges: Vec<Exchange>) -> Self {
        let fake = fake_upstreams::Replay::new(exchanges).unwrap_or_else(|e| panic!("{e}"));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let handle = fake.serve(addr).await.unwrap_or_else(|e| panic!("{e}"));
        Self { handle }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        self.handle.url()
    }

    /// Requests that matched no exchange (`METHOD path: why`).
    pub fn unmatched(&self) -> Vec<String> {
        self.handle
            .unrecorded()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// Notes (or request lines) of the exchanges that were replayed.
    pub fn hits(&self) -> Vec<String> {
        self.handle
            .hits()
            .into_iter()
            .map(|h| h.note.unwrap_or(h.line))
            .collect()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
///
/// # Panics
/// When no port can be bound (test support only).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A port on 127.0.0.1 where nothing listens (for "upstream down" tests).
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Writes `text` to `path` with `mode`.
///
/// # Panics
/// On I/O errors (test support only).
#[allow(clippy::expect_used)]
pub fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `GET http://127.0.0.1:<port><path>`: status and JSON body (Null when the
/// body is not JSON); `None` when nothing answers.
pub async fn get_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let base = crate::http_client::BaseUrl::parse(&format!("http://127.0.0.1:{port}")).ok()?;
    let resp = crate::http_client::send(
        &base,
        hyper::Method::GET,
        path,
        &[],
        None,
        std::time::Duration::from_secs(5),
    )
    .await
    .ok()?;
    Some((resp.status, resp.json().unwrap_or(serde_json::Value::Null)))
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `within`.
///
/// # Panics
/// When the deadline passes (test support only).
pub async fn wait_for<T, F, Fut>(what: &str, within: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An agent process that is killed when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    /// The child (stdout/stderr piped).
    pub child: tokio::process::Child,
}

impl AgentProcess {
    /// Starts `binary` with `args`, stdout and stderr piped, `RUST_LOG=debug`.
    ///
    /// # Panics
    /// When the binary cannot be started (test support only).
    #[allow(clippy::expect_used)]
    pub fn spawn(binary: &str, args: &[&str]) -> Self {
        let child = tokio::process::Command::new(binary)
            .args(args)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        Self { child }
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Runs `binary` with `args` to completion: exit code, stdout, stderr.
///
/// # Panics
/// When the binary cannot be run or does not finish in 30 s.
#[allow(clippy::expect_used)]
pub async fn run_to_end(binary: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(binary)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("agent did not finish within 30 s")
    .expect("run agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An agent's config and secrets in a directory the env owns (a temp dir,
/// removed when the env is dropped), with a free port to listen on and an existing state dir (systemd's
/// `StateDirectory=` creates it in production).
#[derive(Debug)]
pub struct AgentEnv {
    _dir: Box<dyn std::fmt::Debug + Send + Sync>,
    /// The config file.
    pub config: std::path::PathBuf,
    /// The state dir.
    pub state: std::path::PathBuf,
    /// The port the agent listens on.
    pub port: u16,
}

impl AgentEnv {
    /// Writes, in `dir`, `secrets.toml` (`secrets`, mode `secrets_mode`) and
    /// `config.toml`: `[service]` on the free port with `interval_s = 3600`,
    /// then `extra_config` (line 6), then `[upstream]` with `url` and
    /// `timeout_s = 5`.
    ///
    /// # Panics
    /// On I/O errors (test support only).
    #[allow(clippy::unwrap_used)]
    pub fn new<D>(
        dir: D,
        secrets: &str,
        secrets_mode: u32,
        extra_config: &str,
        upstream: &str,
        url: &str,
    ) -> Self
    where
        D: AsRef<Path> + std::fmt::Debug + Send + Sync + 'static,
    {
        let port = free_port();
        let state = dir.as_ref().join("state");
        let secrets_file = dir.as_ref().join("secrets.toml");
        let config = dir.as_ref().join("config.toml");
        std::fs::create_dir(&state).unwrap();
        write_file(&secrets_file, secrets, secrets_mode);
        write_file(
            &config,
            &format!(
                "[service]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nsecrets_file = \"{}\"\ninterval_s = 3600\n{extra_config}\n[{upstream}]\nurl = \"{url}\"\ntimeout_s = 5\n",
                state.display(),
                secrets_file.display()
            ),
            0o644,
        );
        Self {
            _dir: Box::new(dir),
            config,
            state,
            port,
        }
    }

    /// The config path as a command-line argument.
    pub fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    /// Starts `binary --config <config>` and waits until its first cycle is
    /// recorded in `/health`: the process, its port and that `/health` body
    /// with the HTTP status added as `http_status`.
    pub async fn serve(&self, binary: &str) -> (AgentProcess, u16, serde_json::Value) {
        let agent = AgentProcess::spawn(binary, &["--config", &self.config_arg()]);
        let port = self.port;
        let health = wait_for(
            "first cycle in /health",
            std::time::Duration::from_secs(15),
            || async move {
                let (code, body) = get_json(port, "/health").await?;
                let msg = body["checks"]["work_loop"]["message"].as_str()?;
                msg.starts_with("last cycle").then(|| {
                    let mut b = body.clone();
                    b["http_status"] = code.into();
                    b
                })
            },
        )
        .await;
        (agent, port, health)
    }
}

/// Sends SIGTERM to `agent` and waits at most `within` for it to exit: its
/// exit status, `None` when it did not exit in time.
///
/// # Panics
/// When the signal cannot be sent or waiting fails (test support only).
#[allow(clippy::unwrap_used)]
pub async fn terminate(
    agent: &mut AgentProcess,
    within: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(agent.pid().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    tokio::time::timeout(within, agent.child.wait())
        .await
        .ok()
        .map(Result::unwrap)
}
