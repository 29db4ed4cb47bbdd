//! Root-only end-to-end test of the backup path with real LXC:
//! pveam update/download → pct create → start → DHCP lease → HTTP from the
//! host to a server inside the CT → vzdump (snapshot mode on local-lvm, and
//! suspend mode) → destroy → pct restore → start → the same file served
//! again → destroy.
//!
//! Runs only with `PVE_SANDBOX_E2E=1` (set by `make test-sandbox`); then it
//! FAILS (does not skip) when not root or when the template is missing. It
//! uses a private root in a temp dir with its own bridge (`sbxe2e1`) and
//! subnet (`10.213.78.0/24`), so it can run next to a live sandbox; a guard
//! runs `pve-sandbox down` even when the test fails. HTTP traffic only goes
//! to the CT's address on that private bridge, bounded in tries and time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{wait_for, LiveNode, E2E_TEMPLATE as TEMPLATE};

const BRIDGE: &str = "sbxe2e1";
const SUBNET: &str = "10.213.78.0/24";
const VMID: &str = "9201";

/// `pct exec` with stdin.
fn exec_stdin(n: &LiveNode, script: &str, input: &str) {
    let o = n.exec_stdin(VMID, &["sh", "-c", script], input.as_bytes());
    assert!(
        o.status.success(),
        "exec {script:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Wait for dnsmasq's lease of `mac` and return the address.
fn leased_ip(root: &Path, mac: &str) -> String {
    let leases = root.join("run/dnsmasq.leases");
    wait_for("DHCP lease", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&leases).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[1].eq_ignore_ascii_case(mac)).then(|| f[2].to_string())
        })
    })
}

/// One bounded HTTP/1.0 GET; the body on success.
fn http_get(ip: &str, path: &str) -> Option<String> {
    let addr: SocketAddr = format!("{ip}:80").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

const SERVER: &str = r#"#!/bin/bash
# Serve /srv/www/index.html for any request (one connection per instance).
read -r method path proto
while IFS= read -r h; do h=${h%$'\r'}; [ -z "$h" ] && break; done
f=/srv/www/index.html
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n' "$(stat -c %s "$f")"
cat "$f"
"#;
const SOCKET: &str = "[Socket]\nListenStream=80\nAccept=yes\n[Install]\nWantedBy=sockets.target\n";
const SERVICE: &str =
    "[Service]\nExecStart=/usr/local/bin/http-file\nStandardInput=socket\nStandardOutput=socket\nStandardError=journal\n";

#[test]
fn backup_and_restore_round_trip() {
    if !common::e2e_requested("e2e") {
        return;
    }
    let mirror = common::e2e_mirror();
    assert!(
        Path::new(&mirror).join("system").join(TEMPLATE).is_file(),
        "template missing in {mirror}: run tests/sandbox/template/build-template.sh"
    );
    for tool in ["lxc-start", "dnsmasq", "rsync", "zstd"] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false),
            "PVE_SANDBOX_E2E=1 but {tool} is missing (scripts/install-deps.sh)"
        );
    }

    let n = LiveNode::up("sbx-e2e-backup", BRIDGE, SUBNET);

    // The template through pveam, as `make sandbox` does.
    assert_eq!(n.ok(&["pveam", "update"]), "update successful\n");
    let avail = n.ok(&["pveam", "available", "--section", "system"]);
    assert!(avail.contains(TEMPLATE), "{avail}");
    let out = n.ok(&["pveam", "download", "local", TEMPLATE]);
    assert!(
        out.contains("calculating checksum...OK, checksum verified"),
        "{out}"
    );
    assert!(n.ok(&["pveam", "list", "local"]).contains(TEMPLATE));

    let vztmpl = format!("local:vztmpl/{TEMPLATE}");
    n.ok(&[
        "pct",
        "create",
        VMID,
        &vztmpl,
        "--hostname",
        "e2eweb",
        "--net0",
        &format!("name=eth0,bridge={BRIDGE},ip=dhcp"),
        "--unprivileged",
        "1",
        "--features",
        "nesting=1",
        "--rootfs",
        "local-lvm:2",
    ]);
    n.ok(&["pct", "start", VMID]);
    let mac = n.mac_of(VMID);
    let ip = leased_ip(&n.root, &mac);
    assert!(ip.starts_with("10.213.78."), "{ip}");

    // An HTTP server from template tools only: a systemd socket unit with
    // Accept=yes running a bash responder that `cat`s a file.
    let token = format!(
        "backup e2e token {}\n",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    exec_stdin(
        &n,
        "mkdir -p /srv/www && cat > /usr/local/bin/http-file && chmod 755 /usr/local/bin/http-file",
        SERVER,
    );
    exec_stdin(&n, "cat > /etc/systemd/system/http-file.socket", SOCKET);
    exec_stdin(&n, "cat > /etc/systemd/system/http-file@.service", SERVICE);
    exec_stdin(&n, "cat > /srv/www/index.html", &token);
    n.ok(&["pct", "exec", VMID, "--", "systemctl", "daemon-reload"]);
    n.ok(&[
        "pct",
        "exec",
        VMID,
        "--",
        "systemctl",
        "enable",
        "--now",
        "-q",
        "http-file.socket",
    ]);
    let body = wait_for("HTTP from the CT", Duration::from_secs(30), || {
        http_get(&ip, "/")
    });
    assert_eq!(body, token);

    // vzdump, snapshot mode: local-lvm can snapshot, the CT keeps running.
    let t = Instant::now();
    let out = n.ok(&[
        "vzdump",
        VMID,
        "--storage",
        "local",
        "--compress",
        "zstd",
        "--mode",
        "snapshot",
        "--notes-template",
        "{{guestname}}",
    ]);
    let vzdump_time = t.elapsed();
    eprintln!("{out}TIME vzdump (snapshot, zstd): {vzdump_time:?}");
    for want in [
        "INFO: status = running",
        "INFO: backup mode: snapshot",
        "INFO: create storage snapshot 'vzdump'",
        "INFO: Total bytes written: ",
        "INFO: cleanup temporary 'vzdump' snapshot",
        "INFO: Backup job finished successfully",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(n.ok(&["pct", "status", VMID]), "status: running\n");
    let conf = n.read_conf(VMID);
    assert!(
        !conf.contains("lock:") && !conf.contains("[vzdump]"),
        "{conf}"
    );
    let archive = out
        .lines()
        .find_map(|l| l.strip_prefix("INFO: creating vzdump archive '"))
        .and_then(|l| l.strip_suffix('\''))
        .map(PathBuf::from)
        .expect("archive path in the log");
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(archive.is_file());
    let volid = format!("local:backup/{name}");
    let listed = n.ok(&["pvesm", "list", "local", "--content", "backup"]);
    assert!(listed.contains(&volid), "{listed}");
    let cfg = n.ok(&["pvesm", "extractconfig", &volid]);
    assert!(
        cfg.contains("hostname: e2eweb") && cfg.contains("unprivileged: 1"),
        "{cfg}"
    );

    // vzdump, suspend mode (rsync, freeze, final sync, resume) into a dumpdir.
    let dumpdir = n.root.join("suspend-dump");
    std::fs::create_dir_all(&dumpdir).unwrap();
    let t = Instant::now();
    let out = n.ok(&[
        "vzdump",
        VMID,
        "--mode",
        "suspend",
        "--dumpdir",
        dumpdir.to_str().unwrap(),
    ]);
    eprintln!(
        "{out}TIME vzdump (suspend, uncompressed): {:?}",
        t.elapsed()
    );
    for want in [
        "INFO: backup mode: suspend",
        "INFO: starting first sync /proc/",
        "INFO: suspending guest",
        "INFO: starting final sync /proc/",
        "INFO: resuming guest",
        "INFO: guest is online again after ",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert_eq!(n.ok(&["pct", "status", VMID]), "status: running\n");

    // destroy, restore, same content
    n.ok(&["pct", "stop", VMID]);
    n.ok(&["pct", "destroy", VMID]);
    assert_eq!(n.ok(&["pct", "list"]), "");
    let t = Instant::now();
    let out = n.ok(&["pct", "restore", VMID, &volid, "--storage", "local-lvm"]);
    let restore_time = t.elapsed();
    eprintln!("{out}TIME restore: {restore_time:?}");
    assert!(
        out.starts_with(&format!(
            "recovering backed-up configuration from '{volid}'\n"
        )),
        "{out}"
    );
    assert!(
        out.contains("merging backed-up and given configuration.."),
        "{out}"
    );
    let conf = n.read_conf(VMID);
    assert!(conf.contains("hostname: e2eweb"), "{conf}");
    assert!(conf.contains("unprivileged: 1"), "{conf}");
    assert!(!conf.contains("lock:"), "{conf}");
    assert_eq!(n.mac_of(VMID), mac);

    n.ok(&["pct", "start", VMID]);
    let ip2 = leased_ip(&n.root, &mac);
    let body = wait_for("HTTP after restore", Duration::from_secs(30), || {
        http_get(&ip2, "/")
    });
    assert_eq!(body, token, "restored CT serves different content");

    n.ok(&["pct", "stop", VMID]);
    n.ok(&["pct", "destroy", VMID]);
    eprintln!("e2e backup round trip ok (vzdump {vzdump_time:?}, restore {restore_time:?})");
}
