//! `make bench`: the daemon as systemd runs it — the real `1ldd` binary
//! (release build), its real socket, real HTTP.
//!
//! Prints:
//! - startup-to-READY: from `spawn` to `READY=1` on a `NOTIFY_SOCKET` we
//!   listen on (what systemd waits for), over several starts, with 1,000
//!   stored operations (target ≤ 100 ms);
//! - idle RSS after READY (target ≤ 15 MB);
//! - `GET /v1/operations` (the default page of 100 of 1,000 stored
//!   operations) and `GET /v1/operations/{id}`: p50/p99 latency and
//!   requests/s with 32 concurrent clients, each on its own keep-alive
//!   connection (target p99 ≤ 5 ms);
//! - at 10, 100 and 1,000 recorded deployments, with the host state read as
//!   on a Proxmox node (`[supervise] host_state = "files"`: one `<vmid>.conf`
//!   per container and LXC's command socket of each running one):
//!   `GET /v1/deployments` (list) and `GET /v1/deployments/{name}` (status),
//!   p50/p99 and requests/s with 32 clients, plus startup and RSS, and how
//!   each figure grows from 10 to 1,000 (target p99 ≤ 5 ms at 1,000).
//!
//! Needs root (1ldd refuses to start without the capabilities pct needs);
//! otherwise it says so and exits non-zero.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use oneld::paths::Paths;
use oneld::store::Store;
use support::sandbox::bin_dir;
use support::{bench_name, bench_vmid, command_socket, seed_deployments, seed_operations};

const STORED_OPS: usize = 1000;
const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 200;
const STARTS: usize = 5;

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

/// Writes `1ld.toml` in `dir`, with `extra` appended.
fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("1ld.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[api]\nsocket = \"{}\"\ngroup = \"root\"\nadmin_group = \"root\"\n\
             [pve]\nbin_dir = \"{}\"\nnode = \"pve\"\n{extra}",
            dir.join("state").display(),
            dir.join("1ld.sock").display(),
            bin_dir().display()
        ),
    )
    .expect("config");
    cfg
}

fn seed(dir: &Path) -> Vec<String> {
    let store = Store::open(&Paths::with(&dir.join("state"), &dir.join("1ld.sock")))
        .expect("open the store");
    seed_operations(&store, STORED_OPS, 4, Some(100.0))
}

/// Starts `1ldd`, returns it and the time to `READY=1`.
fn start(config: &Path, dir: &Path) -> (DaemonProc, Duration) {
    let notify_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&notify_path);
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let t0 = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_1ldd"))
        .arg("--config")
        .arg(config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn 1ldd");
    let proc = DaemonProc(child);
    let mut buf = [0u8; 4096];
    loop {
        let n = notify.recv(&mut buf).expect("no READY=1 within 10 s");
        let msg = String::from_utf8_lossy(&buf[..n]);
        if msg.lines().any(|l| l == "READY=1") {
            return (proc, t0.elapsed());
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

async fn load(
    socket: &Path,
    paths: Vec<String>,
    clients: usize,
    per_client: usize,
    if_none_match: Option<String>,
) -> (Vec<Duration>, Duration) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let socket = socket.to_path_buf();
        let paths = paths.clone();
        let tag = if_none_match.clone();
        tasks.push(tokio::spawn(async move {
            let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
            let mut lat = Vec::with_capacity(per_client);
            for r in 0..per_client {
                let path = &paths[(c * per_client + r) % paths.len()];
                let uri: hyper::Uri = Uri::new(&socket, path).into();
                let mut req = hyper::Request::get(uri);
                if let Some(tag) = &tag {
                    req = req.header(hyper::header::IF_NONE_MATCH, tag);
                }
                let req = req.body(Empty::new()).expect("request");
                let t = Instant::now();
                let resp = client.request(req).await.expect("request");
                let status = resp.status();
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                if tag.is_some() {
                    assert_eq!(status, hyper::StatusCode::NOT_MODIFIED, "{path}");
                } else {
                    assert!(status.is_success(), "{path}: {status}");
                    assert!(!body.is_empty());
                }
                lat.push(t.elapsed());
                if c == 0 && r == 0 {
                    let n = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.as_array().map(Vec::len));
                    eprintln!("  {path}: {} bytes, {n:?} items", body.len());
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(clients * per_client);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    (all, t0.elapsed())
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("daemon bench: needs root (1ldd requires the capabilities pct needs)");
        std::process::exit(1);
    }
    let dir = tempfile::Builder::new()
        .prefix("1ldd-bench")
        .tempdir()
        .expect("tmp");
    let config = write_config(dir.path(), "");
    let ids = seed(dir.path());

    let mut startups = Vec::new();
    for _ in 0..STARTS {
        let (proc, t) = start(&config, dir.path());
        startups.push(t);
        drop(proc);
    }
    startups.sort();
    let (proc, _) = start(&config, dir.path());
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(proc.0.id());

    let rt = support::runtime().expect("runtime");
    let socket = dir.path().join("1ld.sock");
    let list = vec!["/v1/operations".to_string()];
    let single: Vec<String> = ids
        .iter()
        .map(|id| format!("/v1/operations/{id}"))
        .collect();
    let _warm = rt.block_on(load(
        &socket,
        list.clone(),
        CLIENTS,
        REQUESTS_PER_CLIENT,
        None,
    ));
    let (mut l_serial, _) = rt.block_on(load(&socket, list.clone(), 1, REQUESTS_PER_CLIENT, None));
    let (mut l_list, w_list) = rt.block_on(load(&socket, list, CLIENTS, REQUESTS_PER_CLIENT, None));
    let (mut l_one, w_one) = rt.block_on(load(&socket, single, CLIENTS, REQUESTS_PER_CLIENT, None));
    let loaded_rss = rss_kib(proc.0.id());
    drop(proc);
    l_list.sort();
    l_one.sort();
    l_serial.sort();

    let n = (CLIENTS * REQUESTS_PER_CLIENT) as f64;
    println!("1ldd (release), {STORED_OPS} stored operations, {CLIENTS} concurrent clients × {REQUESTS_PER_CLIENT} requests");
    println!();
    println!("| figure | value | target |");
    println!("|---|---:|---:|");
    println!(
        "| startup → READY=1 (median of {STARTS}, min–max) | {:.1} ms ({:.1}–{:.1}) | ≤ 100 ms |",
        startups[STARTS / 2].as_secs_f64() * 1000.0,
        startups[0].as_secs_f64() * 1000.0,
        startups[STARTS - 1].as_secs_f64() * 1000.0
    );
    println!(
        "| idle RSS after READY | {:.1} MB | ≤ 15 MB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| RSS after the load | {:.1} MB | |",
        loaded_rss as f64 / 1024.0
    );
    println!(
        "| GET /v1/operations, one client: p50 / p99 | {:.2} / {:.2} ms | |",
        pct(&l_serial, 0.5),
        pct(&l_serial, 0.99)
    );
    for (name, lat, wall) in [
        ("GET /v1/operations (100 of 1,000)", &l_list, w_list),
        ("GET /v1/operations/{id}", &l_one, w_one),
    ] {
        println!(
            "| {name}: p50 / p99 | {:.2} / {:.2} ms | p99 ≤ 5 ms |",
            pct(lat, 0.5),
            pct(lat, 0.99)
        );
        println!(
            "| {name}: throughput | {:.0} req/s | |",
            n / wall.as_secs_f64()
        );
    }
    let runs: Vec<Scale> = SCALES.iter().map(|&n| scale_run(&rt, n)).collect();
    print_scales(&runs);
}

/// The deployment counts of the scale runs.
const SCALES: [usize; 3] = [10, 100, 1000];
/// Requests per client in the scale runs.
const SCALE_REQUESTS: usize = 100;

/// One scale run's figures.
struct Scale {
    n: usize,
    running: usize,
    startup: Duration,
    idle_rss: u64,
    loaded_rss: u64,
    list: (f64, f64, f64),
    conditional: (f64, f64, f64),
    status: (f64, f64, f64),
    list_bytes: usize,
}

/// p50, p99 (ms) and requests/s of one load.
fn figures(lat: &mut [Duration], wall: Duration) -> (f64, f64, f64) {
    lat.sort();
    (
        pct(lat, 0.5),
        pct(lat, 0.99),
        lat.len() as f64 / wall.as_secs_f64(),
    )
}

/// `n` recorded deployments, nine in ten running, the host state read from
/// files as on a Proxmox node; supervision off (nothing is probed).
fn scale_run(rt: &tokio::runtime::Runtime, n: usize) -> Scale {
    let dir = tempfile::Builder::new()
        .prefix("1ldd-bench-scale")
        .tempdir()
        .expect("tmp");
    let (conf, lxc) = (dir.path().join("conf"), dir.path().join("lxc"));
    std::fs::create_dir_all(&conf).expect("conf dir");
    std::fs::create_dir_all(&lxc).expect("lxc dir");
    let config = write_config(
        dir.path(),
        &format!(
            "[apps]\ndrift_interval_secs = 0\n\
             [supervise]\nenabled = false\nhost_state = \"files\"\nct_config_dir = \"{}\"\nlxc_path = \"{}\"\n",
            conf.display(),
            lxc.display()
        ),
    );
    {
        let store = Store::open(&Paths::with(
            &dir.path().join("state"),
            &dir.path().join("1ld.sock"),
        ))
        .expect("open the store");
        seed_deployments(&store, n);
    }
    let mut sockets = Vec::new();
    for i in 0..n {
        let vmid = bench_vmid(i);
        std::fs::write(
            conf.join(format!("{vmid}.conf")),
            format!(
                "arch: amd64\ncores: 2\nhostname: {}\nmemory: 2048\n\
                 net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:{:02X}:{:02X},ip=dhcp,type=veth\n\
                 ostype: debian\nrootfs: local-lvm:vm-{vmid}-disk-0,size=8G\ntags: 1ld;1ld-netbox-agent\n\
                 unprivileged: 1\n",
                bench_name(i),
                i / 256,
                i % 256
            ),
        )
        .expect("ct config");
        if i % 10 != 0 {
            sockets.push(command_socket(&lxc, vmid).expect("command socket"));
        }
    }
    let (proc, startup) = start(&config, dir.path());
    std::thread::sleep(Duration::from_secs(1));
    let idle_rss = rss_kib(proc.0.id());
    let socket = dir.path().join("1ld.sock");
    let list = vec!["/v1/deployments".to_string()];
    let names: Vec<String> = (0..n)
        .map(|i| format!("/v1/deployments/{}", bench_name(i)))
        .collect();
    let (list_bytes, etag) = rt.block_on(async {
        let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
        let uri: hyper::Uri = Uri::new(&socket, "/v1/deployments").into();
        let resp = client.get(uri).await.expect("list");
        let etag = resp.headers()[hyper::header::ETAG]
            .to_str()
            .expect("etag")
            .to_string();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json list");
        let items = v.as_array().expect("an array");
        assert_eq!(items.len(), n, "every deployment listed");
        let running = items.iter().filter(|d| d["state"] == "running").count();
        assert_eq!(running, sockets.len(), "states read from the host files");
        (body.len(), etag)
    });
    let _warm = rt.block_on(load(
        &socket,
        list.clone(),
        CLIENTS,
        SCALE_REQUESTS / 4,
        None,
    ));
    let (mut l_list, w_list) = rt.block_on(load(&socket, list, CLIENTS, SCALE_REQUESTS, None));
    let (mut l_cond, w_cond) = rt.block_on(load(
        &socket,
        vec!["/v1/deployments".to_string()],
        CLIENTS,
        SCALE_REQUESTS,
        Some(etag),
    ));
    let (mut l_status, w_status) = rt.block_on(load(&socket, names, CLIENTS, SCALE_REQUESTS, None));
    let loaded_rss = rss_kib(proc.0.id());
    drop(proc);
    Scale {
        n,
        running: sockets.len(),
        startup,
        idle_rss,
        loaded_rss,
        list: figures(&mut l_list, w_list),
        conditional: figures(&mut l_cond, w_cond),
        status: figures(&mut l_status, w_status),
        list_bytes,
    }
}

/// Growth from the first to the last run: `×` of `f`.
fn growth(runs: &[Scale], f: impl Fn(&Scale) -> f64) -> String {
    match (runs.first(), runs.last()) {
        (Some(a), Some(b)) if f(a) > 0.0 => format!("{:.1}×", f(b) / f(a)),
        _ => "–".into(),
    }
}

fn print_scales(runs: &[Scale]) {
    println!();
    println!("### Deployments at scale");
    println!();
    println!(
        "host state from files as on a Proxmox node (one `<vmid>.conf` each, LXC command sockets of the running nine in ten), supervision off; {CLIENTS} clients × {SCALE_REQUESTS} requests each; status = `GET /v1/deployments/{{name}}` round-robin over every name"
    );
    println!();
    println!("| deployments | running | list p50 / p99 ms | list req/s | list body | list, held (304) p50 / p99 ms | held req/s | status p50 / p99 ms | status req/s | startup → READY | idle RSS | RSS after load |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        println!(
            "| {} | {} | {:.2} / {:.2} | {:.0} | {:.0} KiB | {:.2} / {:.2} | {:.0} | {:.2} / {:.2} | {:.0} | {:.1} ms | {:.1} MB | {:.1} MB |",
            r.n,
            r.running,
            r.list.0,
            r.list.1,
            r.list.2,
            r.list_bytes as f64 / 1024.0,
            r.conditional.0,
            r.conditional.1,
            r.conditional.2,
            r.status.0,
            r.status.1,
            r.status.2,
            r.startup.as_secs_f64() * 1000.0,
            r.idle_rss as f64 / 1024.0,
            r.loaded_rss as f64 / 1024.0
        );
    }
    println!();
    if let Some(last) = runs.last() {
        println!(
            "target at {}: p99 ≤ 5 ms — list {:.2} ms ({:.0} KiB per answer: {:.1} GB/s through the socket), list held by the poller {:.2} ms, status {:.2} ms",
            last.n,
            last.list.1,
            last.list_bytes as f64 / 1024.0,
            last.list_bytes as f64 * last.list.2 / 1e9,
            last.conditional.1,
            last.status.1
        );
    }
    let span = match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => b.n as f64 / a.n as f64,
        _ => 0.0,
    };
    println!(
        "growth from {} to {} deployments ({span:.0}×): list p99 {}, list body {}, held list p99 {}, status p99 {}, startup {}, idle RSS {}, RSS after load {} (linear in n is ≤ {span:.0}×)",
        runs.first().map_or(0, |r| r.n),
        runs.last().map_or(0, |r| r.n),
        growth(runs, |r| r.list.1),
        growth(runs, |r| r.list_bytes as f64),
        growth(runs, |r| r.conditional.1),
        growth(runs, |r| r.status.1),
        growth(runs, |r| r.startup.as_secs_f64()),
        growth(runs, |r| r.idle_rss as f64),
        growth(runs, |r| r.loaded_rss as f64),
    );
}
