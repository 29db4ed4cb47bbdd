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
//!   connection (target p99 ≤ 5 ms).
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
use support::seed_operations;

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

fn write_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("1ld.toml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir = \"{}\"\n[api]\nsocket = \"{}\"\ngroup = \"root\"\nadmin_group = \"root\"\n\
             [pve]\nbin_dir = \"{}\"\nnode = \"pve\"\n",
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

async fn load(socket: &Path, paths: Vec<String>, clients: usize) -> (Vec<Duration>, Duration) {
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let socket = socket.to_path_buf();
        let paths = paths.clone();
        tasks.push(tokio::spawn(async move {
            let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
            let mut lat = Vec::with_capacity(REQUESTS_PER_CLIENT);
            for r in 0..REQUESTS_PER_CLIENT {
                let path = &paths[(c * REQUESTS_PER_CLIENT + r) % paths.len()];
                let uri: hyper::Uri = Uri::new(&socket, path).into();
                let t = Instant::now();
                let resp = client.get(uri).await.expect("request");
                assert!(resp.status().is_success(), "{path}: {}", resp.status());
                let body = resp.into_body().collect().await.expect("body").to_bytes();
                assert!(!body.is_empty());
                lat.push(t.elapsed());
                if c == 0 && r == 0 {
                    let n = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.as_array().map(Vec::len));
                    eprintln!("  {path}: {} bytes, {n:?} operations", body.len());
                }
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(clients * REQUESTS_PER_CLIENT);
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
    let config = write_config(dir.path());
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
    let _warm = rt.block_on(load(&socket, list.clone(), CLIENTS));
    let (mut l_serial, _) = rt.block_on(load(&socket, list.clone(), 1));
    let (mut l_list, w_list) = rt.block_on(load(&socket, list, CLIENTS));
    let (mut l_one, w_one) = rt.block_on(load(&socket, single, CLIENTS));
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
}
