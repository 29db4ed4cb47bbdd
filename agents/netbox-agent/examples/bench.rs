//! netbox-agent bench (loopback only):
//!
//! 1. network scan of 127.0.0.0/24 with the default scan settings (rate,
//!    ports, ICMP, reverse DNS): time, packets sent, hosts up, ICMP mode;
//! 2. sync of 1,000 NetBox objects (250 devices, each with an interface, a
//!    MAC object and an IP) into an empty stateful NetBox fake: requests,
//!    time;
//! 3. the no-change resync: requests and writes (target: ≤ 15 requests, 0
//!    writes);
//! 4. the real `netbox-agent` binary doing that sync from an inventory file:
//!    peak RSS (VmHWM) once its first cycle is done.
//!
//! Run: `cargo build --release -p netbox-agent --bins --examples &&
//! target/release/examples/bench` (the binary is looked up next to the
//! examples directory, or in `NETBOX_AGENT_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // bench program

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agent_runtime::http_client::{self, BaseUrl};
use agent_runtime::Secret;
use fake_upstreams::NetBoxModel;
use netbox_agent::client::Client;
use netbox_agent::config::ScanConfig;
use netbox_agent::model::{merge, Host, Iface, IpSpec, Source};
use netbox_agent::sources::scan;
use netbox_agent::sync::{self, SyncRequest, SyncSettings};
use netbox_agent::transport::Endpoint;

const DEVICES: u32 = 250;

fn hosts() -> Vec<Host> {
    (0..DEVICES)
        .map(|i| {
            let name = format!("bench-{i:03}");
            let mut h = Host::device(Source::Inventory, format!("inventory:{name}"), &name);
            let ip = format!("10.77.{}.{}/16", i / 250, i % 250 + 1);
            h.interfaces.push(Iface {
                name: "eth0".into(),
                mac: Some(format!("02:00:00:00:{:02X}:{:02X}", i / 256, i % 256)),
                kind: "1000base-t".into(),
                ips: vec![IpSpec {
                    address: ip.clone(),
                    dns_name: String::new(),
                }],
            });
            h.primary_ip4 = Some(ip);
            h
        })
        .collect()
}

fn inventory_yaml() -> String {
    let mut s = String::from("devices:\n");
    for i in 0..DEVICES {
        let _ = write!(
            s,
            "  - name: bench-{i:03}\n    interfaces:\n      - name: eth0\n        type: 1000base-t\n        mac: \"02:00:00:00:{:02X}:{:02X}\"\n        ips: [\"10.77.{}.{}/16\"]\n",
            i / 256,
            i % 256,
            i / 250,
            i % 250 + 1
        );
    }
    s
}

fn settings() -> SyncSettings {
    SyncSettings {
        site: "Homelab".into(),
        tag: "netbox-agent".into(),
        batch_size: 200,
        prune: true,
        prune_after_days: 7,
        adopt_existing: false,
    }
}

fn request(hosts: Vec<Host>) -> SyncRequest {
    let now = time::OffsetDateTime::now_utc();
    SyncRequest {
        hosts: merge(hosts),
        authoritative: BTreeSet::from([Source::Inventory]),
        full: true,
        today: format!(
            "{:04}-{:02}-{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        ),
        now,
        dry_run: false,
    }
}

fn proc_kb(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn agent_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NETBOX_AGENT_BIN") {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("netbox-agent");
    p.exists().then_some(p)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!("netbox-agent bench (loopback only)");

    // 1. Scan.
    // Default settings except reverse DNS: a PTR lookup goes to the
    // system's resolver, which is not on loopback, and the bench talks to
    // loopback only.
    let cfg = ScanConfig {
        enabled: true,
        cidrs: vec!["127.0.0.0/24".into()],
        reverse_dns: false,
        ..ScanConfig::default()
    };
    let r = scan::scan(&cfg).await.expect("scan");
    println!(
        "scan 127.0.0.0/24 (default rate/ports/ICMP, reverse DNS off): {:.2} s ({:.2} s of it reverse DNS), {} packets sent ({} targets, ports {:?}, rate {} pkt/s), {} hosts up, {}",
        r.took.as_secs_f64(),
        r.rdns.as_secs_f64(),
        r.packets,
        r.targets,
        cfg.tcp_ports,
        cfg.rate_pps,
        r.found.len(),
        r.icmp
    );

    // 2. Sync 1,000 objects into an empty NetBox.
    let nb = NetBoxModel::new(None)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(
        Endpoint::parse(&nb.url(), None).unwrap(),
        Secret::new("<TOKEN>"),
        Duration::from_secs(30),
        4,
        Duration::from_millis(200),
    );
    let t = Instant::now();
    let s0 = nb.model.stats();
    let out = sync::run(&client, &settings(), &request(hosts()))
        .await
        .expect("sync");
    let took = t.elapsed();
    let s1 = nb.model.stats();
    let objects = nb.model.count("dcim/devices")
        + nb.model.count("dcim/interfaces")
        + nb.model.count("dcim/mac-addresses")
        + nb.model.count("ipam/ip-addresses");
    println!(
        "sync into empty NetBox: {objects} objects (250 devices + interfaces + MAC objects + IPs; {} object writes in all, with tags, custom fields, shared objects and the primary MAC/IP updates), {} requests ({} writes), {:.2} s, {} errors",
        out.writes,
        s1.requests - s0.requests,
        s1.write_requests - s0.write_requests,
        took.as_secs_f64(),
        out.errors.len()
    );

    // 3. No-change resync.
    let t = Instant::now();
    let again = sync::run(&client, &settings(), &request(hosts()))
        .await
        .expect("resync");
    let took = t.elapsed();
    let s2 = nb.model.stats();
    println!(
        "no-change resync: {} requests, {} writes, {} changes, {:.3} s (target <= 15 requests, 0 writes)",
        s2.requests - s1.requests + 1, // + the /api/status/ check the agent's cycle makes
        s2.write_requests - s1.write_requests,
        again.plan.len(),
        took.as_secs_f64()
    );
    nb.handle.shutdown().await;

    // 4. The real binary's RSS.
    let Some(bin) = agent_bin() else {
        println!("agent RSS: skipped (build it: cargo build --release -p netbox-agent --bins, or set NETBOX_AGENT_BIN)");
        return;
    };
    let nb = NetBoxModel::new(None)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    std::fs::write(&inv, inventory_yaml()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("config.toml");
    let secrets = dir.path().join("secrets.toml");
    std::fs::write(&secrets, "netbox_token = \"<TOKEN>\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(
        &cfg,
        format!(
            "[service]\nlisten = \"127.0.0.1:{port}\"\nstate_dir = \"{}\"\nsecrets_file = \"{}\"\ninterval_s = 3600\n[netbox]\nurl = \"{}\"\n[sources.inventory]\nenabled = true\nfiles = [\"{}\"]\n",
            dir.path().join("state").display(),
            secrets.display(),
            nb.url(),
            inv.display()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start netbox-agent");
    let pid = child.id();
    let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut done = false;
    while Instant::now() < deadline {
        if let Ok(resp) = http_client::send(
            &base,
            hyper::Method::GET,
            "/status",
            &[],
            None,
            Duration::from_secs(2),
        )
        .await
        {
            if resp
                .json()
                .is_some_and(|v| v["agent"]["syncs"].as_u64().unwrap_or(0) >= 1)
            {
                done = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let hwm = proc_kb(pid, "VmHWM:");
    let rss = proc_kb(pid, "VmRSS:");
    let created = nb.model.count("dcim/devices");
    let _ = nix_kill(pid);
    let _ = child.wait();
    println!(
        "agent RSS: peak {:.1} MB, now {:.1} MB after its first cycle ({} devices synced from a {DEVICES}-device inventory{}) (target <= 30 MB)",
        hwm.unwrap_or(0) as f64 / 1024.0,
        rss.unwrap_or(0) as f64 / 1024.0,
        created,
        if done { "" } else { "; cycle did not finish in 60 s" }
    );
}

fn nix_kill(pid: u32) -> std::io::Result<()> {
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()
        .map(|_| ())
}
