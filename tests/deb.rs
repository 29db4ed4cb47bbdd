//! The Debian package (issue 8): `make deb` builds
//! `target/debian/1ld_<version>_amd64.deb`; this installs it where it runs.
//!
//! * the package version is the crate version (any tier);
//! * root tier (`PVE_SANDBOX_E2E=1`, fails when not root): in a container
//!   of a private sandbox node (bridge `sbxdeb0`, 10.213.90.0/24) running
//!   real systemd and no Proxmox tools: offline install, socket activation,
//!   STATUS=, `systemd-analyze verify`, host work refused with 503, restart
//!   after `kill -9`, watchdog restart through the test-only stall switch,
//!   upgrade from a lower version keeping config and state, remove, purge,
//!   reinstall; and `dpkg -i` in a chroot of the Debian 12 template, where
//!   systemd is not PID 1: postinst succeeds and starts nothing.
//!
//! `make test` builds both packages first (`make deb deb-old`).

#[path = "support/mod.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oneld::pve::pct::FileAttrs;
use oneld::pve::Pve;
use support::{enabled, spec, wait_for, SandboxNode, NODE, TEMPLATE};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const VMID: u32 = 190;
const BRIDGE: &str = "sbxdeb0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The version `make deb-old` gives the previous build.
fn old_version() -> String {
    format!("{VERSION}~test1")
}

fn deb(version: &str) -> PathBuf {
    let p = repo().join(format!("target/debian/1ld_{version}_amd64.deb"));
    assert!(
        p.exists(),
        "{} missing: run `make deb deb-old` (make test does)",
        p.display()
    );
    p
}

fn deb_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("-f")
        .arg(deb)
        .arg(field)
        .output()
        .expect("dpkg-deb");
    assert!(out.status.success(), "dpkg-deb -f {}", deb.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn package_version_is_the_crate_version() {
    let out = Command::new("bash")
        .arg(repo().join("scripts/deb.sh"))
        .arg("--print-version")
        .output()
        .expect("scripts/deb.sh");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), VERSION);
    let built = repo().join(format!("target/debian/1ld_{VERSION}_amd64.deb"));
    if enabled() || built.exists() {
        let deb = deb(VERSION);
        assert_eq!(deb_field(&deb, "Version"), VERSION);
        assert_eq!(deb_field(&deb, "Package"), "1ld");
        let depends = deb_field(&deb, "Depends");
        assert!(
            !depends.contains("pve") && !depends.contains("libssl"),
            "Proxmox packages are Recommends, OpenSSL is not linked: {depends}"
        );
    }
}

/// Runs `script` with `sh -c` in the container; (exit code, stdout+stderr).
async fn sh(pve: &Pve, script: &str) -> (i32, String) {
    let out = pve
        .pct_exec(
            VMID,
            &["sh", "-c", script],
            None,
            Some(Duration::from_secs(180)),
        )
        .await
        .expect("pct exec");
    let text = format!("{}{}", out.stdout_text(), out.stderr_text());
    (out.code.unwrap_or(-1), text)
}

async fn ok(pve: &Pve, script: &str) -> String {
    let (code, text) = sh(pve, script).await;
    assert_eq!(code, 0, "`{script}` failed:\n{text}");
    text.trim().to_string()
}

async fn prop(pve: &Pve, unit: &str, p: &str) -> String {
    ok(pve, &format!("systemctl show -p {p} --value {unit}")).await
}

async fn active(pve: &Pve, unit: &str) -> String {
    sh(pve, &format!("systemctl is-active {unit}"))
        .await
        .1
        .trim()
        .to_string()
}

/// Waits until 1ld.service runs under a MainPID other than `old`.
async fn restarted(pve: &Pve, old: &str, limit: Duration, why: &str) -> String {
    wait_for(why, limit, || async {
        let pid = prop(pve, "1ld", "MainPID").await;
        (pid != old && pid != "0" && active(pve, "1ld").await == "active").then_some(pid)
    })
    .await
}

fn step(t0: Instant, what: &str) {
    eprintln!("[deb e2e {:>6.1}s] {what}", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_in_a_systemd_container() {
    if !enabled() {
        return;
    }
    let t0 = Instant::now();
    let (new, old) = (deb(VERSION), deb(&old_version()));
    let node = SandboxNode::up(8, BRIDGE, "10.213.90.0/24");
    let pve = Pve::detect(node.runner(), NODE).await.expect("pveversion");
    pve.pveam_update().await.expect("pveam update");
    pve.pveam_download("local", TEMPLATE)
        .await
        .expect("template");
    pve.pct_create(&spec(VMID, BRIDGE)).await.expect("create");
    pve.pct_start(VMID).await.expect("start");
    wait_for(
        "systemd in the container",
        Duration::from_secs(60),
        || async {
            let out = pve
                .pct_exec(VMID, &["systemctl", "is-system-running"], None, None)
                .await
                .ok()?;
            let s = out.stdout_text().trim().to_string();
            (s == "running" || s == "degraded").then_some(())
        },
    )
    .await;
    step(t0, "container up with systemd");
    let attrs = FileAttrs {
        perms: Some(0o644),
        ..FileAttrs::default()
    };
    for d in [&new, &old] {
        let name = d.file_name().expect("name").to_string_lossy();
        pve.pct_push(VMID, d, &format!("/tmp/{name}"), &attrs)
            .await
            .expect("push the .deb");
    }
    let new_in = format!("/tmp/1ld_{VERSION}_amd64.deb");
    let old_in = format!("/tmp/1ld_{}_amd64.deb", old_version());
    assert_eq!(
        ok(&pve, "test -e /usr/sbin/pct || echo no-pct").await,
        "no-pct"
    );

    // Install the previous build: everything it needs is in the template, so
    // apt fetches nothing (the container reaches only the sandbox bridge).
    // (`--no-download` trips apt 2.6 on local files: "Pathname to install is
    // not absolute".)
    let apt = "DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Use-Pty=0";
    let text = ok(&pve, &format!("{apt} install {old_in}")).await;
    eprintln!("{text}");
    ok(&pve, "apt-get check && test -z \"$(dpkg --audit)\"").await;
    step(t0, "previous build installed with apt, offline");
    assert_eq!(active(&pve, "1ld.socket").await, "active");
    assert_eq!(
        active(&pve, "1ld.service").await,
        "inactive",
        "only the socket starts at install"
    );
    assert_eq!(
        ok(&pve, "systemctl is-enabled 1ld.service 1ld.socket").await,
        "enabled\nenabled"
    );
    assert_eq!(
        ok(&pve, "stat -c '%a %U' /var/lib/1ld").await,
        "700 root",
        "state directory"
    );
    assert_eq!(
        ok(&pve, "stat -c '%A %U %G' /run/1ld/1ld.sock").await,
        "srw-rw---- root 1ld"
    );
    ok(&pve, "getent group 1ld && getent group 1ld-admin").await;

    // Socket activation: the first client starts the daemon.
    ok(&pve, "1ldctl ls").await;
    assert_eq!(active(&pve, "1ld.service").await, "active");
    let status = prop(&pve, "1ld", "StatusText").await;
    assert!(status.starts_with("ready"), "STATUS=: {status}");
    let shown = ok(&pve, "systemctl status 1ld --no-pager --lines=0").await;
    assert!(
        shown.contains("active (running)") && shown.contains("Status: \"ready"),
        "{shown}"
    );
    // The previous build repackages the same binaries: the package version differs.
    assert_eq!(
        ok(&pve, "dpkg-query -W -f='${Version}' 1ld").await,
        old_version()
    );
    step(t0, "socket activation, STATUS= line");

    // No Proxmox tools here: host work is refused, naming what is missing.
    let (code, text) = sh(&pve, "1ldctl host").await;
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("pveversion") || text.contains("Proxmox"),
        "a clear refusal: {text}"
    );
    eprintln!("1ldctl host without Proxmox tools: {}", text.trim());
    let (code, text) = sh(&pve, "1ldctl doctor").await;
    assert_ne!(code, 0, "doctor fails without Proxmox tools: {text}");
    assert!(text.contains("pveversion"), "{text}");

    // Upgrade: config edits and state stay, the new daemon takes over.
    ok(&pve, "echo '# kept across upgrades' >> /etc/1ld/1ld.toml").await;
    let db_inode = ok(&pve, "stat -c %i /var/lib/1ld/state.db").await;
    let pid = prop(&pve, "1ld", "MainPID").await;
    let text = ok(&pve, &format!("{apt} install {new_in}")).await;
    assert!(text.contains("Unpacking 1ld"), "{text}");
    let new_pid = restarted(&pve, &pid, Duration::from_secs(60), "restart on upgrade").await;
    assert_ne!(new_pid, pid);
    assert_eq!(ok(&pve, "dpkg-query -W -f='${Version}' 1ld").await, VERSION);
    let v = ok(&pve, "1ldctl version").await;
    assert!(v.contains(VERSION), "{v}");
    ok(&pve, "grep -q '^# kept across upgrades' /etc/1ld/1ld.toml").await;
    assert_eq!(
        ok(&pve, "stat -c %i /var/lib/1ld/state.db").await,
        db_inode,
        "the state database survives the upgrade"
    );
    step(t0, "upgrade: daemon restarted, config and state kept");

    // Both units verify in the system they were installed into. The
    // template has no man-db, so the Documentation= pages are checked as
    // files (lintian checks that they render).
    let text = ok(
        &pve,
        "systemd-analyze verify --man=no /lib/systemd/system/1ld.socket \
         /lib/systemd/system/1ld.service 2>&1 && test -f /usr/share/man/man8/1ldd.8.gz \
         && test -f /usr/share/man/man1/1ldctl.1.gz",
    )
    .await;
    eprintln!("systemd-analyze verify: {text}");

    // kill -9: systemd restarts it.
    let pid = prop(&pve, "1ld", "MainPID").await;
    let restarts: u32 = prop(&pve, "1ld", "NRestarts").await.parse().expect("n");
    ok(&pve, &format!("kill -9 {pid}")).await;
    restarted(&pve, &pid, Duration::from_secs(30), "restart after kill -9").await;
    let after: u32 = prop(&pve, "1ld", "NRestarts").await.parse().expect("n");
    assert_eq!(after, restarts + 1);
    step(t0, "kill -9: restarted by systemd");

    // A stalled main loop: the watchdog kills it, systemd restarts it.
    ok(
        &pve,
        "mkdir -p /etc/systemd/system/1ld.service.d && printf '[Service]\\n\
         Environment=ONELD_TEST_FAULTS=1\\nWatchdogSec=4\\n' \
         > /etc/systemd/system/1ld.service.d/test-faults.conf && systemctl daemon-reload \
         && systemctl restart 1ld",
    )
    .await;
    let pid = prop(&pve, "1ld", "MainPID").await;
    let restarts: u32 = prop(&pve, "1ld", "NRestarts").await.parse().expect("n");
    ok(&pve, "touch /var/lib/1ld/stall-watchdog-for-tests").await;
    restarted(&pve, &pid, Duration::from_secs(45), "watchdog restart").await;
    let after: u32 = prop(&pve, "1ld", "NRestarts").await.parse().expect("n");
    assert_eq!(after, restarts + 1);
    let journal = ok(&pve, "journalctl -u 1ld --no-pager -o cat").await;
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    assert!(
        journal.contains("stops beating"),
        "the daemon logged the fault"
    );
    ok(
        &pve,
        "rm -r /etc/systemd/system/1ld.service.d && systemctl daemon-reload",
    )
    .await;
    step(t0, "stalled loop: watchdog restart");

    // remove keeps config and state; purge removes them.
    ok(&pve, &format!("{apt} remove 1ld")).await;
    assert_eq!(
        ok(&pve, "dpkg-query -W -f='${db:Status-Abbrev}' 1ld").await,
        "rc"
    );
    ok(
        &pve,
        "test -f /etc/1ld/1ld.toml && test -f /var/lib/1ld/state.db && ! test -e /usr/sbin/1ldd",
    )
    .await;
    assert_eq!(active(&pve, "1ld.socket").await, "inactive");
    assert_eq!(active(&pve, "1ld.service").await, "inactive");
    ok(&pve, &format!("{apt} purge 1ld")).await;
    ok(
        &pve,
        "! test -e /etc/1ld && ! test -e /var/lib/1ld && ! test -e /var/cache/1ld \
         && ! dpkg-query -W 1ld 2>/dev/null",
    )
    .await;
    // The groups stay (packaging/README.md: a reused gid would inherit files).
    ok(&pve, "getent group 1ld && getent group 1ld-admin").await;
    step(t0, "remove kept config and state; purge removed them");

    // Reinstall with plain dpkg: nothing left for `apt-get install -f`.
    ok(&pve, &format!("dpkg -i {new_in}")).await;
    ok(&pve, "apt-get check && test -z \"$(dpkg --audit)\"").await;
    assert_eq!(active(&pve, "1ld.socket").await, "active");
    ok(&pve, "1ldctl ls").await;
    assert_eq!(active(&pve, "1ld.service").await, "active");
    step(t0, "reinstall with dpkg -i");
    drop(node);
    step(t0, "sandbox node down");
}

/// A Debian 12 root without systemd as PID 1 (an image build): the template
/// extracted into a directory, the package installed with `dpkg -i` in a chroot.
#[test]
fn the_package_in_a_chroot_without_systemd() {
    if !enabled() {
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "PVE_SANDBOX_E2E=1 but not root: the chroot test needs root"
    );
    let t0 = Instant::now();
    let mirror = std::env::var_os("PVE_SANDBOX_MIRROR").map_or_else(
        || PathBuf::from("/var/cache/pve-sandbox/mirror"),
        PathBuf::from,
    );
    let template = mirror.join("system").join(TEMPLATE);
    assert!(
        template.exists(),
        "{} missing: run `make template`",
        template.display()
    );
    let new = deb(VERSION);
    let root = tempfile::Builder::new()
        .prefix("1ld-chroot")
        .tempdir_in("/var/tmp")
        .expect("tmp");
    let r = root.path();
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("spawn");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{cmd:?}: {text}");
        text
    };
    run(Command::new("tar")
        .arg("--zstd")
        .arg("-xpf")
        .arg(&template)
        .arg("--numeric-owner")
        .arg("-C")
        .arg(r));
    if !r.join("dev/null").exists() {
        run(Command::new("mknod")
            .args(["-m", "666"])
            .arg(r.join("dev/null"))
            .args(["c", "1", "3"]));
    }
    assert!(!r.join("run/systemd/system").exists(), "not a systemd boot");
    std::fs::copy(&new, r.join("tmp/1ld.deb")).expect("copy the .deb");
    let text = run(Command::new("chroot")
        .arg(r)
        .args(["dpkg", "-i", "/tmp/1ld.deb"]));
    eprintln!("{text}");
    run(Command::new("chroot").arg(r).args([
        "sh",
        "-c",
        "apt-get check && test -z \"$(dpkg --audit)\"",
    ]));
    // Enabled for the first boot, started nowhere.
    assert!(r
        .join("etc/systemd/system/sockets.target.wants/1ld.socket")
        .is_symlink());
    assert!(r
        .join("etc/systemd/system/multi-user.target.wants/1ld.service")
        .is_symlink());
    assert!(!r.join("run/1ld").exists(), "nothing was started");
    let group = std::fs::read_to_string(r.join("etc/group")).expect("group");
    assert!(group.lines().any(|l| l.starts_with("1ld:")), "{group}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.join("var/lib/1ld"))
        .expect("state dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            assert!(
                !exe.starts_with(r),
                "a process runs from the chroot: {}",
                exe.display()
            );
        }
    }
    run(Command::new("chroot")
        .arg(r)
        .args(["dpkg", "--purge", "1ld"]));
    assert!(!r.join("etc/1ld").exists() && !r.join("var/lib/1ld").exists());
    eprintln!(
        "[deb chroot {:.1}s] dpkg -i and --purge without systemd",
        t0.elapsed().as_secs_f64()
    );
}
