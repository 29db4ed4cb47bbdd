//! Test harness of `tests/api.rs`: the daemon in-process on a temp socket,
//! a client, a private sandbox PVE node's tools, bounded waits.
//!
//! - [`Daemon`]: boots the daemon (`oneld::daemon::run`, in-process
//!   options) on its own runtime thread, with state, socket and sandbox
//!   under one temp dir; dropping it really stops it (graceful shutdown,
//!   bounded, then the socket must refuse connections);
//! - [`Client`]: HTTP/1.1 over the Unix socket (hyperlocal), with the error
//!   body decoded and an NDJSON [`EventStream`];
//! - [`SandboxTools`]: a bin dir of wrappers running the sandbox node's
//!   `pvesm`/`pveam`/`pveversion`/... against a private state root and a
//!   private appliance mirror holding one tiny template — real tools, real
//!   files, no root needed, faults injectable through `<root>/etc/faults`;
//! - [`wait_for`]: polling with a deadline, never a bare sleep.
#![allow(dead_code)]

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use oneld::api::{ApiErrorBody, Event};
use oneld::config::Config;
use oneld::daemon::RunOptions;
use oneld::events::EventBus;
use oneld::ops::Ops;
use oneld::paths::Paths;
use oneld::pve::Pve;
use oneld::secrets::Secrets;
use oneld::server::AppState;
use oneld::store::Store;

/// The tiny template of the private mirror.
pub const TINY: &str = "tiny-1ldt_1.0-1_amd64.tar.zst";
/// Upper bound of any single wait in these tests.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Polls `f` every 25 ms until it yields a value or `limit` passes.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The name of the group with `gid`.
pub fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| panic!("gid {gid} has no name"))
}

/// The sandbox node's multi-call binary.
pub fn sandbox_binary() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("PVE_SANDBOX_BIN_DIR") {
        candidates.push(PathBuf::from(d).join("pve-sandbox"));
    }
    candidates.extend([
        root.join("target/sandbox/bin/pve-sandbox"),
        root.join("target/release/pve-sandbox"),
        root.join("target/debug/pve-sandbox"),
    ]);
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no pve-sandbox binary (looked at {candidates:?}): run `make sandbox-bin` \
                 or `cargo build -p pve-sandbox`"
            )
        })
}

/// The Proxmox tools of a private sandbox node (no containers: storages,
/// templates, versions), as a `[pve] bin_dir`.
pub struct SandboxTools {
    /// The sandbox state root (`PVE_SANDBOX_ROOT`).
    pub root: PathBuf,
    /// The appliance mirror (`PVE_SANDBOX_MIRROR`).
    pub mirror: PathBuf,
    /// Wrapper scripts named like the tools.
    pub bin_dir: PathBuf,
}

impl SandboxTools {
    /// Sets the node up under `dir`: storages `local` (dir: vztmpl, backup,
    /// iso) and `ctdata` (dir: rootdir, images), a mirror with [`TINY`], and
    /// the appliance index already fetched (`pveam update`).
    pub fn new(dir: &Path) -> Self {
        let root = dir.join("sbx");
        let mirror = dir.join("mirror");
        let bin_dir = dir.join("pvebin");
        for d in [
            root.join("etc/pve"),
            root.join("var/lib/vz"),
            root.join("ctdata"),
            mirror.join("system"),
            bin_dir.clone(),
        ] {
            std::fs::create_dir_all(&d).expect("sandbox dirs");
        }
        std::fs::write(
            root.join("etc/sandbox.conf"),
            "node: pve\npve-major: 9\nbridge: vmbr1ldt\nsubnet: 10.231.0.0/24\n",
        )
        .expect("sandbox.conf");
        std::fs::write(
            root.join("etc/pve/storage.cfg"),
            format!(
                "dir: local\n\tpath {}\n\tcontent backup,iso,vztmpl\n\n\
                 dir: ctdata\n\tpath {}\n\tcontent rootdir,images\n",
                root.join("var/lib/vz").display(),
                root.join("ctdata").display()
            ),
        )
        .expect("storage.cfg");
        let tpl = mirror.join("system").join(TINY);
        std::fs::write(&tpl, b"not really a template\n").expect("template");
        let sha = std::process::Command::new("sha512sum")
            .arg(&tpl)
            .output()
            .expect("sha512sum");
        let sha = String::from_utf8_lossy(&sha.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string();
        std::fs::write(
            mirror.join("aplinfo-pve-8.dat"),
            format!(
                "Package: tiny-1ldt\nVersion: 1.0-1\nType: lxc\nOS: debian-12\n\
                 Section: system\nMaintainer: 1ld tests\nArchitecture: amd64\n\
                 Location: system/{TINY}\nsha512sum: {sha}\n\
                 Infopage: https://example.invalid/\nDescription: tiny test template\n\n"
            ),
        )
        .expect("aplinfo");
        let exe = sandbox_binary();
        for tool in ["pct", "pveam", "pvesm", "pvesh", "pveversion", "vzdump"] {
            let script = bin_dir.join(tool);
            std::fs::write(
                &script,
                format!(
                    "#!/bin/sh\nPVE_SANDBOX_ROOT='{}' PVE_SANDBOX_MIRROR='{}' exec '{}' {tool} \"$@\"\n",
                    root.display(),
                    mirror.display(),
                    exe.display()
                ),
            )
            .expect("wrapper");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod wrapper");
        }
        let tools = SandboxTools {
            root,
            mirror,
            bin_dir,
        };
        let out = std::process::Command::new(tools.bin_dir.join("pveam"))
            .arg("update")
            .output()
            .expect("pveam update");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("update successful"),
            "pveam update: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        tools
    }

    /// Replaces the sandbox's fault rules (`<root>/etc/faults`, one a line;
    /// e.g. `pveam download delay 2000`).
    pub fn faults(&self, rules: &[&str]) {
        std::fs::write(self.root.join("etc/faults"), rules.join("\n") + "\n").expect("faults");
    }
}

/// A daemon running in-process on its own runtime thread.
pub struct Daemon {
    /// Holds state dir, socket and sandbox; removed last.
    pub dir: tempfile::TempDir,
    /// The API socket.
    pub socket: PathBuf,
    /// The configuration it runs with.
    pub config: Config,
    /// The sandbox tools, when configured.
    pub tools: Option<SandboxTools>,
    stop: Option<tokio_util::sync::CancellationToken>,
    done: Option<std::sync::mpsc::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// It started, so its socket is its own to check after stop.
    serving: bool,
}

/// How a test wants its daemon.
pub struct Options {
    /// Set up [`SandboxTools`] and point `[pve] bin_dir` at them.
    pub sandbox: bool,
    /// Adjusts the config (paths are already under the temp dir).
    pub config: Box<dyn FnOnce(&mut Config) + Send>,
    /// Use this socket path instead of one in the temp dir.
    pub socket: Option<PathBuf>,
    /// Runs on the final config before the daemon boots (e.g. to store a
    /// secret in its state dir).
    pub prepare: Box<dyn FnOnce(&Config) + Send>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sandbox: true,
            config: Box::new(|_| {}),
            socket: None,
            prepare: Box::new(|_| {}),
        }
    }
}

/// The daemon's state from its parts, as `daemon::run` builds it (store,
/// secrets, events, pve, operations + recovery), without a socket: for
/// driving [`server::router`] directly.
pub async fn build_state(cfg: Config) -> Result<(AppState, Ops), String> {
    let paths = Paths::from_config(&cfg);
    let store = Store::open(&paths).map_err(|e| e.to_string())?;
    let secrets = Secrets::open(&paths).map_err(|e| e.to_string())?;
    let events = EventBus::persistent(store.clone(), secrets.redactor().clone())
        .map_err(|e| e.to_string())?;
    let pve = Pve::from_config(&cfg.pve).await.ok();
    let ops = Ops::new(
        store.clone(),
        events.clone(),
        secrets.redactor().clone(),
        pve.clone(),
        &cfg.ops,
    );
    ops.recover(oneld::ops::kinds::rebuild)
        .await
        .map_err(|e| e.to_string())?;
    let config = Arc::new(RwLock::new(Arc::new(cfg)));
    let notifier = oneld::notify::Notifier::new(store.clone(), secrets.clone(), config.clone());
    let supervisor = oneld::supervise::Supervisor::new(
        store.clone(),
        pve.clone(),
        ops.clone(),
        events.clone(),
        secrets.clone(),
        config.clone(),
    );
    supervisor.set_alert_sink(Arc::new(notifier.clone()));
    let state = AppState {
        config,
        pve,
        store,
        ops: ops.clone(),
        events,
        secrets,
        notifier,
        started: Instant::now(),
        supervisor,
    };
    Ok((state, ops))
}

impl Daemon {
    /// A daemon with the sandbox tools and default options.
    pub fn start() -> Daemon {
        Self::with(Options::default()).expect("daemon starts")
    }

    /// A daemon as `opts` says; `Err` is the startup error's message.
    pub fn with(opts: Options) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("1ld-api-test")
            .tempdir()
            .expect("temp dir");
        // Unprivileged test clients must reach the socket inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod temp dir");
        let tools = opts.sandbox.then(|| SandboxTools::new(dir.path()));
        let own_group = group_name(nix::unistd::getegid().as_raw());
        let mut config = Config {
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        config.api.socket = opts
            .socket
            .clone()
            .unwrap_or_else(|| dir.path().join("run/1ld.sock"));
        config.api.group = own_group.clone();
        config.api.admin_group = own_group;
        config.pve.bin_dir = Some(
            tools
                .as_ref()
                .map(|t| t.bin_dir.clone())
                .unwrap_or_else(|| dir.path().join("no-pve-tools")),
        );
        config.pve.node = Some("pve".into());
        config.pve.command_timeout_secs = 10;
        config.pve.long_command_timeout_secs = 20;
        config.ops.shutdown_grace_secs = 5;
        // Supervision acts on deployments; only the tests about it turn it on.
        config.supervise.enabled = false;
        (opts.config)(&mut config);
        (opts.prepare)(&config);
        let socket = config.api.socket.clone();

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let stop = tokio_util::sync::CancellationToken::new();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let cfg = config.clone();
        let token = stop.clone();
        let thread = std::thread::Builder::new()
            .name("1ldd-under-test".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("daemon runtime");
                rt.block_on(async move {
                    let (up_tx, up_rx) = tokio::sync::oneshot::channel();
                    let mut opts = RunOptions::in_process(token);
                    opts.ready = Some(up_tx);
                    let run = oneld::daemon::run(cfg, opts);
                    tokio::pin!(run);
                    tokio::select! {
                        r = &mut run => {
                            let why = match r {
                                Err(e) => e.to_string(),
                                Ok(()) => "the daemon returned before it was ready".into(),
                            };
                            let _ = ready_tx.send(Err(why));
                            return;
                        }
                        up = up_rx => {
                            let _ = ready_tx.send(up.map(|_| ()).map_err(|e| e.to_string()));
                        }
                    }
                    if let Err(e) = run.await {
                        eprintln!("1ldd under test ended with an error: {e}");
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(2));
                let _ = done_tx.send(());
            })
            .expect("daemon thread");
        let started = ready_rx
            .recv_timeout(LIMIT)
            .map_err(|e| format!("daemon did not report startup within {LIMIT:?}: {e}"));
        let mut daemon = Daemon {
            dir,
            socket,
            config,
            tools,
            stop: Some(stop),
            done: Some(done_rx),
            thread: Some(thread),
            serving: false,
        };
        match started {
            Ok(Ok(())) => {
                daemon.serving = true;
                Ok(daemon)
            }
            // Dropping `daemon` joins its thread.
            Ok(Err(e)) | Err(e) => Err(e),
        }
    }

    /// A client on this daemon's socket.
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    /// The sandbox tools (panics when the daemon runs without them).
    pub fn tools(&self) -> &SandboxTools {
        self.tools
            .as_ref()
            .expect("daemon started with sandbox tools")
    }

    /// Stops the daemon: graceful shutdown, bounded; afterwards the socket
    /// refuses connections.
    pub fn stop(&mut self) {
        let Some(stop) = self.stop.take() else {
            return;
        };
        stop.cancel();
        let stopped = self
            .done
            .take()
            .map(|d| d.recv_timeout(Duration::from_secs(15)).is_ok())
            .unwrap_or(true);
        if let Some(t) = self.thread.take() {
            if stopped {
                let _ = t.join();
            }
        }
        if !std::thread::panicking() {
            assert!(stopped, "the daemon did not stop within 15 s");
            // Another test's fork may hold a copy of the listening fd until
            // its exec closes it (close-on-exec): allow that brief window.
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.serving && std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                assert!(
                    Instant::now() < deadline,
                    "the daemon's socket still accepts connections 2 s after stop"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A response, body read.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON of type `T` (panics with the body on mismatch).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not the expected JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The error body's `(code, message)` (panics if it is not one).
    pub fn error(&self) -> (String, String) {
        let b: ApiErrorBody = self.json();
        (b.error.code, b.error.message)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status, showing the body otherwise.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        self
    }
}

/// HTTP/1.1 over the daemon's Unix socket.
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    http: HyperClient<UnixConnector, Full<Bytes>>,
}

impl Client {
    /// A client of the socket at `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            http: HyperClient::unix(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> hyper::Response<Incoming> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(Uri::new(&self.socket, path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body))).expect("request");
        tokio::time::timeout(LIMIT, self.http.request(req))
            .await
            .unwrap_or_else(|_| panic!("no response to {path} within {LIMIT:?}"))
            .unwrap_or_else(|e| panic!("request {path}: {e:?}"))
    }

    /// A request with raw headers and body; the whole response.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Resp {
        let resp = self.send(method, path, headers, body).await;
        let (parts, body) = resp.into_parts();
        let body = tokio::time::timeout(LIMIT, body.collect())
            .await
            .unwrap_or_else(|_| panic!("body of {path} not complete within {LIMIT:?}"))
            .expect("read body")
            .to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Resp {
        self.raw(Method::GET, path, &[], Vec::new()).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Resp {
        self.raw(Method::DELETE, path, &[], Vec::new()).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, json: &serde_json::Value) -> Resp {
        self.raw(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(json).expect("json"),
        )
        .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, json: &serde_json::Value) -> Resp {
        self.raw(
            Method::PUT,
            path,
            &[("content-type", "application/json")],
            serde_json::to_vec(json).expect("json"),
        )
        .await
    }

    /// `GET path` as a stream of newline-delimited JSON events; returns once
    /// the headers arrived (the daemon has subscribed by then).
    pub async fn events(&self, path: &str) -> EventStream {
        let resp = self.send(Method::GET, path, &[], Vec::new()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        EventStream {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

/// An open `GET /v1/events` response.
pub struct EventStream {
    body: Incoming,
    buf: Vec<u8>,
}

impl EventStream {
    /// The next event, `None` when the stream ended; panics after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("bad event line ({e}): {}", String::from_utf8_lossy(&line))
                }));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no event within {limit:?}"));
            match frame {
                None => return None,
                Some(Err(e)) => panic!("event stream broke: {e}"),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Events until `done` says stop (inclusive); panics after `limit`.
    pub async fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Event) -> bool,
    ) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self
                .next(left)
                .await
                .unwrap_or_else(|| panic!("event stream ended; got {out:#?}"));
            let stop = done(&e);
            out.push(e);
            if stop {
                return out;
            }
        }
    }
}

/// Whether the root tier runs (`PVE_SANDBOX_E2E=1`, set by `make test`);
/// then it must be root, and a test that is not fails instead of skipping.
pub fn root_tier(test: &str, why_root: &str) -> bool {
    if std::env::var("PVE_SANDBOX_E2E").as_deref() != Ok("1") {
        eprintln!("{test}: root tier, runs with PVE_SANDBOX_E2E=1 (make test)");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "PVE_SANDBOX_E2E=1 but not root: {why_root} (run `make test` as root)"
    );
    true
}

/// The parent pid of `pid` (from `/proc/<pid>/stat`), `None` once it is gone.
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` still runs (a zombie does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].to_string();
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Every pid on the system.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The live descendants of `root` (children, grandchildren, ...).
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            if !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out.retain(|p| alive(*p));
    out
}

/// The real `1ldd` binary as a child process on a config under `dir`
/// (`<dir>/1ld.toml`: state `<dir>/state`, socket `<dir>/run/1ld.sock`,
/// group = our primary group, the sandbox tools). Needs root (1ldd refuses
/// to start without the capabilities pct/vzdump need). Its stderr goes to
/// `<dir>/1ldd-<n>.log`. Dropping it kills it (and what it started).
pub struct ChildDaemon {
    child: Option<std::process::Child>,
    /// Its pid.
    pub pid: i32,
    /// The API socket.
    pub socket: PathBuf,
    /// The configuration it runs with.
    pub config: Config,
    /// Where its stderr (the daemon's log) goes.
    pub log: PathBuf,
}

impl ChildDaemon {
    /// Writes `<dir>/1ld.toml` (kept if there) and starts `1ldd --config`
    /// on it with `env` added; returns once the API answers `GET /`.
    /// `("WATCHDOG_PID", "$$")` sets it to the daemon's own pid, as systemd
    /// does (via `sh -c 'WATCHDOG_PID=$$ exec 1ldd ...'`).
    pub async fn start(dir: &Path, tools: &SandboxTools, env: &[(&str, &str)]) -> ChildDaemon {
        let config_path = dir.join("1ld.toml");
        if !config_path.exists() {
            let group = group_name(nix::unistd::getegid().as_raw());
            let toml = format!(
                "state_dir = {state:?}\n\n[api]\nsocket = {socket:?}\ngroup = {group:?}\n\
                 admin_group = {group:?}\n\n[pve]\nbin_dir = {bin:?}\nnode = \"pve\"\n\
                 command_timeout_secs = 10\nlong_command_timeout_secs = 20\n\n\
                 [ops]\nshutdown_grace_secs = 5\n",
                state = dir.join("state").display().to_string(),
                socket = dir.join("run/1ld.sock").display().to_string(),
                bin = tools.bin_dir.display().to_string(),
            );
            std::fs::write(&config_path, toml).expect("write 1ld.toml");
        }
        let config = Config::load(&config_path).expect("the test config loads");
        let n = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("1ldd-"))
                    .count()
            })
            .unwrap_or(0);
        let log = dir.join(format!("1ldd-{n}.log"));
        let stderr = std::fs::File::create(&log).expect("daemon log file");
        let own_watchdog_pid = env.contains(&("WATCHDOG_PID", "$$"));
        let mut cmd = if own_watchdog_pid {
            let mut sh = std::process::Command::new("/bin/sh");
            sh.args([
                "-c",
                r#"WATCHDOG_PID=$$ exec "$0" "$@""#,
                env!("CARGO_BIN_EXE_1ldd"),
            ]);
            sh
        } else {
            std::process::Command::new(env!("CARGO_BIN_EXE_1ldd"))
        };
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(std::process::Stdio::null())
            .stdout(stderr.try_clone().expect("dup log"))
            .stderr(stderr);
        // Not under systemd: no notify socket, no socket activation, no journal.
        for var in [
            "NOTIFY_SOCKET",
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
            "JOURNAL_STREAM",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(
            env.iter()
                .copied()
                .filter(|&(k, v)| (k, v) != ("WATCHDOG_PID", "$$")),
        );
        let child = cmd.spawn().expect("spawn 1ldd");
        let mut d = ChildDaemon {
            pid: child.id() as i32,
            child: Some(child),
            socket: config.api.socket.clone(),
            config,
            log,
        };
        d.wait_ready().await;
        d
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client on its socket.
    pub fn client(&self) -> Client {
        Client::new(&self.socket)
    }

    async fn wait_ready(&mut self) {
        let socket = self.socket.clone();
        let child = self.child.as_mut().expect("running");
        let log = self.log.clone();
        wait_for("1ldd to answer on its socket", LIMIT, || {
            let exited = child.try_wait().ok().flatten();
            let socket = socket.clone();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "1ldd exited ({status}) before it was ready:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                // A dead socket file of a killed predecessor refuses connections.
                std::os::unix::net::UnixStream::connect(&socket).ok()?;
                let r = Client::new(&socket).get("/").await;
                r.status.is_success().then_some(())
            }
        })
        .await;
    }

    /// Kills it as a crash would, and what it started as systemd
    /// (`KillMode=mixed`) would before a restart: stops it (so it cannot
    /// start anything more), kills its descendants' process groups and it
    /// with SIGKILL, reaps it. Returns the descendants it had; all are gone.
    pub fn crash(&mut self) -> Vec<i32> {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        let Some(mut child) = self.child.take() else {
            return Vec::new();
        };
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGSTOP);
        let family = descendants(self.pid);
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        for p in &family {
            let _ = killpg(Pid::from_raw(*p), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
        }
        let _ = child.wait();
        let deadline = Instant::now() + LIMIT;
        while family.iter().any(|p| alive(*p)) {
            assert!(
                Instant::now() < deadline,
                "the killed daemon's children {family:?} still run"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        family
    }

    /// SIGTERM, then waits (bounded) for it to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        use nix::sys::signal::{kill, Signal};
        let mut child = self.child.take().expect("running");
        let _ = kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGTERM);
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = child.try_wait().expect("wait 1ldd") {
                return status;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                self.crash();
                panic!("1ldd did not exit within {LIMIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ChildDaemon {
    fn drop(&mut self) {
        self.crash();
    }
}
