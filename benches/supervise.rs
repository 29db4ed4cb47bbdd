//! `make bench`: supervision at scale — the real `1ldd` binary (release
//! build) supervising N deployments at the default 10 s interval (issue 6).
//!
//! Every deployment has its own loopback address (`127.0.1.<i>`), where
//! this process answers `GET /health` with `{"status":"healthy"}` on a
//! keep-alive HTTP/1.1 listener that counts the TCP connections it accepts.
//! Container state is faked the two ways the daemon reads it:
//! - `files`: `<vmid>.conf` files and LXC command sockets bound here as
//!   real abstract Unix sockets (`@<lxc_path>/<vmid>/command`), as in
//!   `tests/api/supervise.rs`;
//! - `pct-list`: `[pve] bin_dir` holds benchmark stand-ins for the Proxmox
//!   tools of a node with N containers (`pct list`, `pveversion`, `pvesh`),
//!   shell scripts that print the real formats and count their calls.
//!
//! After the first round (every deployment healthy) it measures W ticks
//! (rounds), from the end of one round to the end of the W-th after it:
//! host subprocesses, probes and new TCP connections per tick; the
//! daemon's CPU (`/proc/<pid>/stat` utime + stime) as a percentage of one
//! core, over the whole window and between rounds only (the loop wakes
//! every second); its largest RSS (`VmRSS`, sampled every second); the last
//! round's duration. A first run with `[supervise] enabled = false` gives
//! the floor under those figures. Targets: ≤ 2 subprocesses per tick, ≤ 1 %
//! of one core, RSS ≤ 30 MB. `SUPERVISE_BENCH_SECS` sets the window
//! (default 60 s, W = 6; the baseline runs half as long).
//!
//! Needs root (1ldd refuses to start without the capabilities pct needs);
//! otherwise it says so and exits non-zero.

mod support;

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use oneld::api::{HealthStatus, HealthSummary, IntendedState};
use oneld::paths::Paths;
use oneld::store::{DeploymentRecord, Store, StoredSpec};
use serde_json::json;
use support::command_socket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// `[supervise] interval_secs`, the default.
const INTERVAL_SECS: u64 = 10;
/// `[supervise] jitter_secs`, the default.
const JITTER_SECS: u64 = 2;
/// The runs: deployments and host-state source.
const RUNS: &[(u32, Source)] = &[
    (200, Source::Off),
    (10, Source::Files),
    (100, Source::Files),
    (200, Source::Files),
    (1000, Source::Files),
    (200, Source::PctList),
];
/// Seconds of CPU sampling between two rounds (a round ends ≤ jitter + 1 s
/// after it starts; we start sampling 1 s after that).
const IDLE_SAMPLE_SECS: u64 = INTERVAL_SECS - JITTER_SECS - 3;
/// The app every deployment runs.
const APP: &str = "bench-app";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The baseline: `[supervise] enabled = false`, files prepared as for `Files`.
    Off,
    Files,
    PctList,
}

impl Source {
    fn config(self) -> &'static str {
        match self {
            Source::Off | Source::Files => "files",
            Source::PctList => "pct-list",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Source::Off => "none: supervision off (baseline)",
            Source::Files => "files (configs + /proc/net/unix)",
            Source::PctList => "pct-list (stand-in `pct`)",
        }
    }
}

/// 1ldd, stopped with SIGTERM (and reaped) on drop.
struct DaemonProc(Child);

impl Drop for DaemonProc {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

/// The deployments' health endpoints: one listener per address, on one port.
struct Services {
    port: u16,
    /// TCP connections accepted, all listeners.
    conns: Arc<AtomicU64>,
    /// HTTP requests answered, all listeners.
    requests: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Services {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The `i`th service's address (from 1): 127.0.1.1–127.0.1.250, then
/// 127.0.2.1…, so 1,000 fit.
fn ip_of(i: u32) -> Ipv4Addr {
    let k = i.saturating_sub(1);
    Ipv4Addr::new(127, 0, 1 + (k / 250) as u8, (k % 250 + 1) as u8)
}

/// Binds `ip_of(1..=n)` on one free port (a few tries: the port is picked
/// on the first address and may be taken on another).
async fn services(n: u32) -> Result<Services, String> {
    let mut last = String::new();
    'port: for _ in 0..10 {
        let first = tokio::net::TcpListener::bind((ip_of(1), 0))
            .await
            .map_err(|e| format!("bind {}: {e}", ip_of(1)))?;
        let port = first.local_addr().map_err(|e| e.to_string())?.port();
        let mut listeners = vec![first];
        for i in 2..=n {
            match tokio::net::TcpListener::bind((ip_of(i), port)).await {
                Ok(l) => listeners.push(l),
                Err(e) => {
                    last = format!("bind {}:{port}: {e}", ip_of(i));
                    continue 'port;
                }
            }
        }
        let conns = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let tasks = listeners
            .into_iter()
            .map(|l| tokio::spawn(serve(l, conns.clone(), requests.clone())))
            .collect();
        return Ok(Services {
            port,
            conns,
            requests,
            tasks,
        });
    }
    Err(format!("no port free on every address: {last}"))
}

/// A keep-alive HTTP/1.1 responder: every request gets `{"status":"healthy"}`.
async fn serve(l: tokio::net::TcpListener, conns: Arc<AtomicU64>, requests: Arc<AtomicU64>) {
    const BODY: &str = r#"{"status":"healthy"}"#;
    while let Ok((mut s, _)) = l.accept().await {
        conns.fetch_add(1, Ordering::Relaxed);
        let requests = requests.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut have = Vec::new();
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                have.extend_from_slice(&buf[..n]);
                while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                    have.drain(..end + 4);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{BODY}",
                        BODY.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// The built-in netbox-agent's manifest as the user app `bench-app`, probed on `port`.
fn manifest(port: u16) -> String {
    include_str!("../src/apps/builtin/netbox-agent.toml")
        .replace("name = \"netbox-agent\"", &format!("name = \"{APP}\""))
        .replace("port = 8080", &format!("port = {port}"))
        .replace("upstream_port = 8080", &format!("upstream_port = {port}"))
}

fn name_of(i: u32) -> String {
    format!("bench-{i:03}")
}

fn vmid_of(i: u32) -> u32 {
    1000 + i
}

fn record(i: u32) -> Result<DeploymentRecord, String> {
    Ok(DeploymentRecord {
        name: name_of(i),
        app: APP.into(),
        app_version: "0.1.0".into(),
        vmid: vmid_of(i),
        node: "pve".into(),
        intended_state: IntendedState::Running,
        spec: StoredSpec {
            resources: serde_json::from_value(json!({
                "cores": 1, "memory": 512, "swap": 0, "disk": 2, "storage": "local-lvm",
                "bridge": "vmbr0", "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true
            }))
            .map_err(|e| format!("resources: {e}"))?,
            tags: vec!["1ld".into(), format!("1ld-{APP}")],
            settings: Default::default(),
            secret_keys: vec![],
            supervise: Default::default(),
            backup: Default::default(),
        },
        config_hash: "fnv1a64:0".into(),
        ip: Some(ip_of(i).to_string()),
        health: HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: None,
            detail: None,
        },
        drift: vec![],
        adopted: false,
        created_ms: 0,
        updated_ms: 0,
        last_backup_ms: None,
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn script(path: &Path, text: &str) -> Result<(), String> {
    write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// Benchmark stand-ins for the Proxmox tools of a node with `n` running
/// containers (not Proxmox's tools): `pct list`, `pveversion`, `pvesh get
/// /cluster/resources`, printing the real formats. Each call appends a line
/// to `counter`; output comes from shell builtins, so a call is one process.
fn stand_ins(bin: &Path, counter: &Path, n: u32) -> Result<(), String> {
    std::fs::create_dir_all(bin).map_err(|e| format!("mkdir {}: {e}", bin.display()))?;
    let row = |a: &str, b: &str, c: &str, d: &str| format!("{a:<10} {b:<10} {c:<12} {d:<20}\n");
    let mut table = row("VMID", "Status", "Lock", "Name");
    let mut resources = Vec::new();
    for i in 1..=n {
        table.push_str(&row(&vmid_of(i).to_string(), "running", "", &name_of(i)));
        resources.push(json!({
            "id": format!("lxc/{}", vmid_of(i)), "type": "lxc", "vmid": vmid_of(i),
            "name": name_of(i), "node": "pve", "status": "running", "template": 0,
            "tags": format!("1ld;1ld-{APP}"), "maxcpu": 1, "maxmem": 536_870_912u64,
        }));
    }
    let resources = serde_json::Value::Array(resources).to_string();
    let head = |tool: &str| {
        format!(
            "#!/bin/sh\n# Benchmark stand-in for `{tool}` on a node with {n} containers (not Proxmox's).\n\
             echo \"{tool} $*\" >> '{}'\n",
            counter.display()
        )
    };
    script(
        &bin.join("pct"),
        &format!(
            "{}case \"$1\" in\nlist) printf '%s' '{table}' ;;\n\
             *) echo \"bench stand-in: pct $1 is not supported\" >&2; exit 2 ;;\nesac\n",
            head("pct")
        ),
    )?;
    script(
        &bin.join("pveversion"),
        &format!(
            "{}echo 'pve-manager/9.1.1/0123456789abcdef (running kernel: 6.17.2-1-pve)'\n",
            head("pveversion")
        ),
    )?;
    script(
        &bin.join("pvesh"),
        &format!(
            "{}case \"$2\" in\n/cluster/resources) printf '%s\\n' '{resources}' ;;\n\
             *) echo \"bench stand-in: pvesh $2 is not supported\" >&2; exit 2 ;;\nesac\n",
            head("pvesh")
        ),
    )
}

/// Lines in the stand-ins' counter file (0 when it does not exist yet).
fn stand_in_calls(counter: &Path) -> u64 {
    std::fs::read_to_string(counter).map_or(0, |t| t.lines().count() as u64)
}

/// One run's directory: state, socket, apps, stand-ins, fake container state.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn config(&self, source: Source) -> String {
        let mut cfg = format!(
            "state_dir = \"{}\"\n\
             [api]\nsocket = \"{}\"\ngroup = \"root\"\nadmin_group = \"root\"\n\
             [pve]\nbin_dir = \"{}\"\nnode = \"pve\"\n\
             [apps]\ndir = \"{}\"\ndrift_interval_secs = 0\n\
             [supervise]\nenabled = {}\ninterval_secs = {INTERVAL_SECS}\njitter_secs = {JITTER_SECS}\n\
             host_state = \"{}\"\n",
            self.path("state").display(),
            self.path("1ld.sock").display(),
            self.path("bin").display(),
            self.path("apps").display(),
            source != Source::Off,
            source.config(),
        );
        if source != Source::PctList {
            cfg.push_str(&format!(
                "ct_config_dir = \"{}\"\nlxc_path = \"{}\"\n",
                self.path("conf").display(),
                self.path("lxc").display()
            ));
        }
        cfg
    }
}

/// Prepares a run: store, manifest, stand-ins, container state (files
/// mode: the returned sockets must live as long as the run).
fn prepare(
    n: u32,
    source: Source,
    port: u16,
) -> Result<(Layout, Vec<std::os::unix::net::UnixListener>), String> {
    let dir = tempfile::Builder::new()
        .prefix("1ldd-supervise-bench")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?;
    let lay = Layout { dir };
    for d in ["apps", "conf", "lxc"] {
        std::fs::create_dir_all(lay.path(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    write(
        &lay.path("apps").join(format!("{APP}.toml")),
        &manifest(port),
    )?;
    stand_ins(&lay.path("bin"), &lay.path("stand-in-calls"), n)?;
    write(&lay.path("1ld.toml"), &lay.config(source))?;
    let store = Store::open(&Paths::with(&lay.path("state"), &lay.path("1ld.sock")))
        .map_err(|e| format!("open the store: {e}"))?;
    for i in 1..=n {
        store
            .insert_deployment(&record(i)?)
            .map_err(|e| format!("insert {}: {e}", name_of(i)))?;
    }
    drop(store);
    let mut sockets = Vec::new();
    if source != Source::PctList {
        for i in 1..=n {
            write(
                &lay.path("conf").join(format!("{}.conf", vmid_of(i))),
                "arch: amd64\n",
            )?;
            sockets.push(command_socket(&lay.path("lxc"), vmid_of(i))?);
        }
    }
    Ok((lay, sockets))
}

fn start(lay: &Layout) -> Result<DaemonProc, String> {
    let log = std::fs::File::create(lay.path("1ldd.log")).map_err(|e| format!("log: {e}"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_1ldd"))
        .arg("--config")
        .arg(lay.path("1ld.toml"))
        .env("RUST_LOG", "warn")
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", env!("CARGO_BIN_EXE_1ldd")))?;
    Ok(DaemonProc(child))
}

/// `GET /metrics` on the daemon's socket.
async fn metrics(client: &Client<UnixConnector, Empty<Bytes>>, socket: &Path) -> Option<String> {
    let uri: hyper::Uri = Uri::new(socket, "/metrics").into();
    let resp = client.get(uri).await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

/// The sum of every sample of `name` (any labels).
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn healthy(text: &str) -> usize {
    text.lines()
        .filter(|l| {
            l.starts_with("oneld_deployment_health_state{") && l.ends_with("state=\"healthy\"} 1")
        })
        .count()
}

/// The daemon's CPU time (utime + stime) in seconds.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / ticks)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One run's figures.
/// Per-tick figures are totals for the baseline (no ticks).
struct Figures {
    n: u32,
    source: Source,
    /// Rounds in the window.
    ticks: f64,
    wall_secs: f64,
    /// Host commands 1ldd started, per tick.
    subprocesses: f64,
    /// Stand-in calls, per tick.
    stand_in_calls: f64,
    cpu_percent: f64,
    /// Between rounds (the baseline: the whole window).
    idle_cpu_percent: f64,
    rss_mb: f64,
    round_ms: f64,
    /// Results 1ldd recorded, per tick.
    probes: f64,
    /// Requests the services answered in the window (total).
    served: f64,
    /// TCP connections the services accepted, per tick.
    new_conns: f64,
}

/// A point where no round runs: the counters that matter.
struct Mark {
    at: Instant,
    cpu: f64,
    metrics: String,
    served: u64,
    conns: u64,
    stand_in_calls: u64,
}

/// Waits until the services have answered `target` requests in all (the
/// last probe of a round), then one more second so the round records its
/// results; samples the daemon's RSS every second meanwhile.
async fn after_round(
    svc: &Services,
    target: u64,
    pid: u32,
    deadline: Duration,
    rss_max: &mut u64,
) -> Result<(), String> {
    let t0 = Instant::now();
    let mut last_rss = Instant::now() - Duration::from_secs(1);
    while svc.requests.load(Ordering::Relaxed) < target {
        if t0.elapsed() > deadline {
            return Err(format!(
                "only {} of {target} probes answered within {}s",
                svc.requests.load(Ordering::Relaxed),
                deadline.as_secs()
            ));
        }
        if last_rss.elapsed() >= Duration::from_secs(1) {
            last_rss = Instant::now();
            *rss_max = (*rss_max).max(rss_kib(pid));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    *rss_max = (*rss_max).max(rss_kib(pid));
    Ok(())
}

/// Marks a window's start (`start`) or end. Between rounds, so counters
/// and CPU agree; the scrape's own cost stays outside the window (scraped
/// before the CPU reading at the start, after it at the end).
async fn mark(
    client: &Client<UnixConnector, Empty<Bytes>>,
    socket: &Path,
    pid: u32,
    svc: &Services,
    counter: &Path,
    start: bool,
) -> Result<Mark, String> {
    let scrape = || async { metrics(client, socket).await.ok_or("GET /metrics failed") };
    let before = if start { Some(scrape().await?) } else { None };
    let cpu = cpu_secs(pid).ok_or("cannot read the daemon's /proc/<pid>/stat")?;
    let at = Instant::now();
    let served = svc.requests.load(Ordering::Relaxed);
    let conns = svc.conns.load(Ordering::Relaxed);
    let stand_in_calls = stand_in_calls(counter);
    let metrics = match before {
        Some(m) => m,
        None => scrape().await?,
    };
    Ok(Mark {
        at,
        cpu,
        metrics,
        served,
        conns,
        stand_in_calls,
    })
}

async fn run_one(n: u32, source: Source, svc: &Services, ticks: u64) -> Result<Figures, String> {
    let (lay, _sockets) = prepare(n, source, svc.port)?;
    let mut daemon = start(&lay)?;
    let pid = daemon.0.id();
    let socket = lay.path("1ld.sock");
    let counter = lay.path("stand-in-calls");
    let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
    let log_tail = || {
        let log = std::fs::read_to_string(lay.path("1ldd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };

    // The first round: every deployment healthy (one good probe from `starting`).
    let t0 = Instant::now();
    loop {
        if let Some(m) = metrics(&client, &socket).await {
            if healthy(&m) == n as usize {
                break;
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{n} deployments ({}): not all healthy within 60 s; 1ldd's log:\n{}",
                source.config(),
                log_tail()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = Duration::from_secs(INTERVAL_SECS * 3 + 30);
    let mut rss_max = 0;
    // Start at the end of the next round, so the window is whole ticks.
    let served = svc.requests.load(Ordering::Relaxed);
    after_round(svc, served + n as u64, pid, deadline, &mut rss_max)
        .await
        .map_err(|e| format!("{e}; 1ldd's log:\n{}", log_tail()))?;
    let a = mark(&client, &socket, pid, svc, &counter, true).await?;
    rss_max = rss_kib(pid);
    // Between two rounds the loop still wakes every second: its CPU there,
    // measured from 1 s after a round's end until before the next starts.
    let (mut idle_cpu, mut idle_wall) = (0.0, 0.0);
    let mut per_tick = Vec::new();
    let mut last_cpu = a.cpu;
    for k in 1..=ticks {
        if k > 1 {
            let c0 = cpu_secs(pid).unwrap_or(0.0);
            let t = Instant::now();
            for _ in 0..IDLE_SAMPLE_SECS {
                tokio::time::sleep(Duration::from_secs(1)).await;
                rss_max = rss_max.max(rss_kib(pid));
            }
            idle_cpu += cpu_secs(pid).unwrap_or(0.0) - c0;
            idle_wall += t.elapsed().as_secs_f64();
        }
        after_round(svc, a.served + k * n as u64, pid, deadline, &mut rss_max)
            .await
            .map_err(|e| format!("{e}; 1ldd's log:\n{}", log_tail()))?;
        let now = cpu_secs(pid).unwrap_or(last_cpu);
        per_tick.push(format!("{:.0}", (now - last_cpu) * 1000.0));
        last_cpu = now;
    }
    let b = mark(&client, &socket, pid, svc, &counter, false).await?;
    if let Ok(Some(status)) = daemon.0.try_wait() {
        return Err(format!(
            "1ldd exited during the window ({status}); its log:\n{}",
            log_tail()
        ));
    }
    drop(daemon);

    let delta = |name| sum(&b.metrics, name) - sum(&a.metrics, name);
    let rounds = delta("oneld_supervisor_rounds_total");
    if rounds < 1.0 {
        return Err(format!(
            "no supervision round in the window ({n}, {source:?})"
        ));
    }
    let wall = (b.at - a.at).as_secs_f64();
    eprintln!(
        "supervise bench: {n} deployments, {}: {rounds} rounds in {wall:.1} s; CPU ms per tick: {}",
        source.config(),
        per_tick.join(" ")
    );
    Ok(Figures {
        n,
        source,
        ticks: rounds,
        wall_secs: wall,
        subprocesses: delta("oneld_host_commands_total") / rounds,
        stand_in_calls: (b.stand_in_calls - a.stand_in_calls) as f64 / rounds,
        cpu_percent: (b.cpu - a.cpu) / wall * 100.0,
        idle_cpu_percent: if idle_wall > 0.0 {
            idle_cpu / idle_wall * 100.0
        } else {
            f64::NAN
        },
        rss_mb: rss_max as f64 / 1024.0,
        round_ms: sum(&b.metrics, "oneld_supervisor_round_seconds") * 1000.0,
        probes: delta("oneld_supervisor_probes_total") / rounds,
        served: (b.served - a.served) as f64,
        new_conns: (b.conns - a.conns) as f64 / rounds,
    })
}

/// The baseline: 1ldd with the same deployments and supervision off, over
/// `secs`: what the daemon costs without the supervisor's rounds.
async fn run_baseline(n: u32, svc: &Services, secs: u64) -> Result<Figures, String> {
    let (lay, _sockets) = prepare(n, Source::Off, svc.port)?;
    let mut daemon = start(&lay)?;
    let pid = daemon.0.id();
    let socket = lay.path("1ld.sock");
    let counter = lay.path("stand-in-calls");
    let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
    let t0 = Instant::now();
    while metrics(&client, &socket).await.is_none() {
        if t0.elapsed() > Duration::from_secs(30) {
            return Err("1ldd (supervision off) did not answer GET /metrics within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let a = mark(&client, &socket, pid, svc, &counter, true).await?;
    let mut rss_max = rss_kib(pid);
    for _ in 0..secs {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(rss_kib(pid));
    }
    let b = mark(&client, &socket, pid, svc, &counter, false).await?;
    if let Ok(Some(status)) = daemon.0.try_wait() {
        return Err(format!("1ldd (supervision off) exited ({status})"));
    }
    drop(daemon);
    let wall = (b.at - a.at).as_secs_f64();
    let cpu_percent = (b.cpu - a.cpu) / wall * 100.0;
    eprintln!(
        "supervise bench: {n} deployments, supervision off: {cpu_percent:.2} % over {wall:.1} s"
    );
    Ok(Figures {
        n,
        source: Source::Off,
        ticks: 0.0,
        wall_secs: wall,
        subprocesses: sum(&b.metrics, "oneld_host_commands_total")
            - sum(&a.metrics, "oneld_host_commands_total"),
        stand_in_calls: (b.stand_in_calls - a.stand_in_calls) as f64,
        cpu_percent,
        idle_cpu_percent: cpu_percent,
        rss_mb: rss_max as f64 / 1024.0,
        round_ms: 0.0,
        probes: 0.0,
        served: (b.served - a.served) as f64,
        new_conns: (b.conns - a.conns) as f64,
    })
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() {
        "–".to_string()
    } else if a <= 0.0 && b <= 0.0 {
        "0 → 0".to_string()
    } else if a <= 0.0 {
        format!("0 → {b:.2}")
    } else {
        format!("{:.1}×", b / a)
    }
}

fn row(f: &Figures) -> String {
    if f.source == Source::Off {
        return format!(
            "| {} | {} | {:.0} in {:.0} s | {:.2} | {:.2} | {:.1} | – | – | – |",
            f.n,
            f.source.label(),
            f.subprocesses,
            f.wall_secs,
            f.cpu_percent,
            f.idle_cpu_percent,
            f.rss_mb
        );
    }
    let sub = match f.source {
        Source::PctList => format!(
            "{:.2} (stand-in counted {:.2})",
            f.subprocesses, f.stand_in_calls
        ),
        _ => format!("{:.2}", f.subprocesses),
    };
    let idle = if f.idle_cpu_percent.is_nan() {
        "–".to_string()
    } else {
        format!("{:.2}", f.idle_cpu_percent)
    };
    format!(
        "| {} | {} | {sub} | {:.2} | {idle} | {:.1} | {:.0} | {:.0} | {:.2} |",
        f.n,
        f.source.label(),
        f.cpu_percent,
        f.rss_mb,
        f.round_ms,
        f.probes,
        f.new_conns
    )
}

async fn run() -> Result<(), String> {
    let secs: u64 = match std::env::var("SUPERVISE_BENCH_SECS") {
        Ok(s) => s
            .parse()
            .map_err(|_| format!("SUPERVISE_BENCH_SECS={s:?}: a number of seconds, please"))?,
        Err(_) => 60,
    };
    let ticks = (secs / INTERVAL_SECS).max(1);
    let max_n = RUNS.iter().map(|r| r.0).max().unwrap_or(1);
    let svc = services(max_n).await?;
    let mut all = Vec::new();
    for &(n, source) in RUNS {
        all.push(match source {
            Source::Off => run_baseline(n, &svc, (secs / 2).max(INTERVAL_SECS)).await?,
            _ => run_one(n, source, &svc, ticks).await?,
        });
    }

    println!(
        "1ldd (release) supervising N deployments of an HTTP-probed app, interval {INTERVAL_SECS} s, \
         jitter ≤ {JITTER_SECS} s; window: {ticks} ticks (supervision rounds) per run"
    );
    println!();
    println!("| deployments | host state source | host subprocesses/tick | CPU % of one core | … between rounds | RSS MB (max) | last round ms | probes/tick | new TCP connections/tick |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in &all {
        println!("{}", row(f));
    }
    println!();
    println!("targets (issue 6, 200 deployments at 10 s): ≤ 2 host subprocesses per tick, ≤ 1 % of one core, RSS ≤ 30 MB");
    let files: Vec<&Figures> = all.iter().filter(|f| f.source == Source::Files).collect();
    if let (Some(lo), Some(hi)) = (files.first(), files.last()) {
        println!(
            "growth from {} to {} deployments (files, {}×): subprocesses/tick {}, CPU {} (between rounds {}), RSS {}, round {}, probes/tick {}, new connections/tick {}",
            lo.n,
            hi.n,
            hi.n / lo.n.max(1),
            ratio(lo.subprocesses, hi.subprocesses),
            ratio(lo.cpu_percent, hi.cpu_percent),
            ratio(lo.idle_cpu_percent, hi.idle_cpu_percent),
            ratio(lo.rss_mb, hi.rss_mb),
            ratio(lo.round_ms, hi.round_ms),
            ratio(lo.probes, hi.probes),
            ratio(lo.new_conns, hi.new_conns),
        );
    }
    let per_tick: Vec<String> = all
        .iter()
        .map(|f| {
            let label = match f.source {
                Source::Off => "supervision off",
                s => s.config(),
            };
            format!(
                "{} {label}: {:.0} ms",
                f.n,
                f.cpu_percent / 100.0 * INTERVAL_SECS as f64 * 1000.0
            )
        })
        .collect();
    println!("daemon CPU per {INTERVAL_SECS} s: {}", per_tick.join(", "));
    let answered: Vec<String> = all
        .iter()
        .filter(|f| f.source != Source::Off)
        .map(|f| format!("{:.0}", f.served / f.ticks))
        .collect();
    println!(
        "notes: probes/tick counted by 1ldd (`oneld_supervisor_probes_total`); the services answered {} requests/tick. \
         Subprocesses: `oneld_host_commands_total` over all programs. \
         CPU: utime + stime over whole ticks (end of a round to end of a round); \
         \"between rounds\": from 1 s after a round to before the next, where the loop still wakes every second. \
         The baseline is the same daemon and deployments with `[supervise] enabled = false`: the floor under the other rows \
         (on a VM it moves with the host's load). \
         \"last round ms\" includes each probe's random delay (up to jitter, {JITTER_SECS} s). \
         The `pct`, `pveversion` and `pvesh` used are benchmark stand-ins (shell scripts) for a node with N containers, not Proxmox's tools: \
         a real `pct list` is a Perl program, and the stand-in's CPU is not part of 1ldd's figure. \
         The drift loop (`[apps] drift_interval_secs`, every 300 s by default) is a separate check, off here: with `files` it reads the same config files (no subprocess), with `pct-list` it runs one `pct config` per deployment.",
        answered.join(" / ")
    );
    Ok(())
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("supervise bench: needs root (1ldd requires the capabilities pct needs)");
        std::process::exit(1);
    }
    support::main_with("supervise", run);
}
