//! `make bench`: `1ldctl` as scripts use it — the real client binary (bench
//! profile) against an in-process daemon on a temp socket.
//!
//! Prints:
//! - `1ldctl ls --json` wall time (p50/p95) with 100 recorded deployments
//!   (target ≤ 20 ms);
//! - `1ldctl ops --json` wall time with 100 stored operations (the same
//!   shape of work: one connection, one GET of a 100-item list, JSON out);
//! - `1ldctl version` wall time (process start + one request);
//! - the client binary's size.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneld::config::Config;
use oneld::paths::Paths;
use oneld::store::Store;
use support::{seed_deployments, seed_operations};

const STORED: usize = 100;
const RUNS: usize = 60;

fn seed(state: &Path, socket: &Path) {
    let store = Store::open(&Paths::with(state, socket)).expect("open the store");
    seed_deployments(&store, STORED);
    seed_operations(&store, STORED, 5, None);
}

/// Runs `1ldctl args` `RUNS` times; (p50, p95) wall time and the last
/// stdout, or the failure.
fn time(socket: &Path, args: &[&str]) -> Result<(Duration, Duration, String), String> {
    let mut times = Vec::with_capacity(RUNS);
    let mut stdout = String::new();
    for i in 0..RUNS + 3 {
        let t0 = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_1ldctl"))
            .arg("--socket")
            .arg(socket)
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The first runs warm the page cache.
        if i >= 3 {
            times.push(took);
        }
    }
    times.sort();
    Ok((
        times[times.len() / 2],
        times[times.len() * 95 / 100],
        stdout,
    ))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("1ld.sock");
    let state = dir.path().join("state");
    seed(&state, &socket);
    let mut config = Config {
        state_dir: state,
        ..Config::default()
    };
    config.api.socket = socket.clone();
    let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
        .ok()
        .flatten()
        .map(|g| g.name)
        .unwrap_or_else(|| "root".into());
    config.api.group = group.clone();
    config.api.admin_group = group;
    config.pve.bin_dir = Some(dir.path().join("no-pve-tools"));

    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let token = stop.clone();
    let daemon = std::thread::spawn(move || {
        let rt = support::runtime().expect("runtime");
        rt.block_on(async move {
            let (up_tx, up_rx) = tokio::sync::oneshot::channel();
            let mut opts = oneld::daemon::RunOptions::in_process(token);
            opts.ready = Some(up_tx);
            let run = oneld::daemon::run(config, opts);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => { let _ = ready_tx.send(format!("daemon ended: {r:?}")); return; }
                _ = up_rx => { let _ = ready_tx.send(String::new()); }
            }
            let _ = run.await;
        });
    });
    let up = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the daemon starts");
    assert!(up.is_empty(), "{up}");

    println!("| measure | p50 | p95 | target |");
    println!("|---|---|---|---|");
    match time(&socket, &["ls", "--json"]) {
        Ok((p50, p95, out)) => {
            let n = serde_json::from_str::<serde_json::Value>(&out)
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0);
            println!(
                "| `1ldctl ls --json`, {n} deployments | {} | {} | ≤ 20 ms with 100 |",
                ms(p50),
                ms(p95)
            )
        }
        Err(e) => println!("| `1ldctl ls --json` | n/a | n/a | not served yet: {e} |"),
    }
    match time(&socket, &["ops", "--json"]) {
        Ok((p50, p95, _)) => println!(
            "| `1ldctl ops --json`, {STORED} operations | {} | {} | ≤ 20 ms |",
            ms(p50),
            ms(p95)
        ),
        Err(e) => println!("| `1ldctl ops --json` | failed: {e} | | |"),
    }
    match time(&socket, &["version"]) {
        Ok((p50, p95, _)) => println!("| `1ldctl version` | {} | {} | |", ms(p50), ms(p95)),
        Err(e) => println!("| `1ldctl version` | failed: {e} | | |"),
    }
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_1ldctl"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!();
    println!(
        "- client binary: {:.1} MiB (`{}`)",
        size as f64 / 1048576.0,
        env!("CARGO_BIN_EXE_1ldctl")
    );
    stop.cancel();
    let _ = daemon.join();
}
