//! Running CTs with real LXC.
//!
//! The recipe is the verified one from `tests/sandbox/template/LXC-NOTES.md`:
//! `<root>/lxc/<vmid>/config` is generated from the pct config at every start
//! (like `PVE::LXC::update_lxc_config`), the rootfs directory is used in place
//! (`lxc.rootfs.path = dir:<volume path>`), veths are plugged straight into the
//! bridge (`lxc.net.N.link`), and cgroup limits use v1 keys on a hybrid host
//! and `lxc.cgroup2.*` on a pure cgroup2 host. State and init PID come from
//! `lxc-info`; a CT without `<root>/lxc/<vmid>/config` is stopped without
//! asking LXC (so tests without root or LXC work).
//!
//! At create time [`setup_rootfs`] writes what `PVE::LXC::Setup::Debian`
//! writes: `/etc/hostname`, `/etc/hosts`, `/etc/network/interfaces` and
//! `/etc/resolv.conf`, owned by the container's root.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::archive::IdMap;
use crate::conf::Section;
use crate::error::{PveError, Result};
use crate::node::Node;
use crate::storage::{self, StorageCfg};
use crate::util::run_capture;

/// A CT's run state as LXC reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not running.
    Stopped,
    /// Running.
    Running,
    /// Frozen (vzdump suspend mode).
    Frozen,
}

impl State {
    /// `running` / `stopped` as pct prints it (frozen counts as running).
    pub fn pct_str(&self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::Running | State::Frozen => "running",
        }
    }
}

fn lxc_cmd(node: &Node, tool: &str, vmid: u32) -> Command {
    let mut c = Command::new(tool);
    c.arg("-P")
        .arg(node.lxc_path())
        .arg("-n")
        .arg(vmid.to_string());
    c
}

/// The CT's state (Stopped if LXC has no config for it).
pub fn state(node: &Node, vmid: u32) -> State {
    if !node.lxc_dir(vmid).join("config").exists() {
        return State::Stopped;
    }
    let out = lxc_cmd(node, "lxc-info", vmid)
        .arg("-s")
        .arg("-H")
        .env("LC_ALL", "C")
        .output();
    match out {
        Ok(o) if o.status.success() => match String::from_utf8_lossy(&o.stdout).trim() {
            "RUNNING" | "STARTING" | "STOPPING" | "ABORTING" => State::Running,
            "FROZEN" | "FREEZING" | "THAWED" => State::Frozen,
            _ => State::Stopped,
        },
        _ => State::Stopped,
    }
}

/// Whether the CT is running (or frozen).
pub fn is_running(node: &Node, vmid: u32) -> bool {
    state(node, vmid) != State::Stopped
}

/// The host PID of the CT's init, if running.
pub fn init_pid(node: &Node, vmid: u32) -> Option<i32> {
    if !node.lxc_dir(vmid).join("config").exists() {
        return None;
    }
    let o = lxc_cmd(node, "lxc-info", vmid)
        .arg("-p")
        .arg("-H")
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// Whether the host uses a pure cgroup2 hierarchy.
pub fn cgroup2_only() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

/// Absolute cgroup dirs of a CT (payload), for metrics and cleanup.
pub fn cgroup_paths(node: &Node, vmid: u32) -> Vec<PathBuf> {
    let rel = node.cgroup_dir(vmid);
    if cgroup2_only() {
        return vec![Path::new("/sys/fs/cgroup").join(rel)];
    }
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            out.push(e.path().join(&rel));
        }
    }
    out
}

/// The rootfs directory of a CT (path of its `rootfs` volume).
pub fn rootfs_path(node: &Node, cfg: &StorageCfg, sec: &Section) -> Result<PathBuf> {
    let rootfs = sec
        .rootfs()
        .and_then(|r| r.get("volume").map(String::from))
        .ok_or_else(|| PveError::die("missing 'rootfs' - internal error"))?;
    if rootfs.starts_with('/') {
        return Ok(PathBuf::from(rootfs));
    }
    storage::path(node, cfg, &rootfs)
}

/// Check that every `netN` bridge exists (`bridge 'vmbr9' does not exist`).
pub fn check_bridges(sec: &Section) -> Result<()> {
    for (_, net) in sec.nets() {
        if let Some(br) = net.get("bridge") {
            if !Path::new("/sys/class/net").join(br).join("bridge").exists() {
                return Err(PveError::die(format!("bridge '{br}' does not exist")));
            }
        }
    }
    Ok(())
}

/// Generate the LXC config text for a CT.
pub fn config_text(node: &Node, vmid: u32, sec: &Section, rootfs: &Path) -> String {
    let mut raw = String::new();
    let mut line = |s: String| {
        raw.push_str(&s);
        raw.push('\n');
    };
    let unpriv = sec.unprivileged();
    let ostype = sec.get("ostype").unwrap_or("debian");
    let cfgpath = Path::new("/usr/share/lxc/config");
    let inc = |name: &str, fallback: &str| {
        let p = cfgpath.join(name);
        if p.exists() {
            p
        } else {
            cfgpath.join(fallback)
        }
    };
    line("lxc.cgroup.relative = 0".into());
    line(format!(
        "lxc.cgroup.dir.monitor = {}",
        node.cgroup_monitor_dir(vmid)
    ));
    line(format!(
        "lxc.cgroup.dir.container = {}",
        node.cgroup_dir(vmid)
    ));
    line("lxc.cgroup.dir.container.inner = ns".into());
    line(format!("lxc.arch = {}", sec.get("arch").unwrap_or("amd64")));
    line(format!(
        "lxc.include = {}",
        inc(&format!("{ostype}.common.conf"), "common.conf").display()
    ));
    if unpriv {
        line(format!(
            "lxc.include = {}",
            inc(&format!("{ostype}.userns.conf"), "userns.conf").display()
        ));
    }
    let features = sec.features();
    if features.flag("nesting") {
        line(format!(
            "lxc.include = {}",
            cfgpath.join("nesting.conf").display()
        ));
    }
    line("lxc.apparmor.profile = unconfined".into());
    if unpriv {
        // userns.conf empties lxc.cap.drop; without this sys-kernel-debug.mount fails.
        line("lxc.cap.drop = sys_rawio".into());
        if features.flag("force_rw_sys") {
            line("lxc.mount.auto = proc:mixed sys:rw cgroup:mixed".into());
        } else {
            line("lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed".into());
        }
        line("lxc.idmap = u 0 100000 65536".into());
        line("lxc.idmap = g 0 100000 65536".into());
    }
    if features.flag("fuse") {
        line("lxc.mount.entry = /dev/fuse dev/fuse none bind,create=file 0 0".into());
    }
    line("lxc.monitor.unshare = 1".into());
    let tty = sec.int("tty").unwrap_or(2);
    line(format!("lxc.tty.max = {tty}"));
    line("lxc.environment = TERM=linux".into());
    line(format!("lxc.uts.name = {}", sec.hostname_or_default(vmid)));

    let memory = sec.int("memory").unwrap_or(512).max(16);
    let swap = sec.int("swap").unwrap_or(512).max(0);
    let cores = sec.int("cores");
    let cpulimit: Option<f64> = sec.get("cpulimit").and_then(|v| v.parse().ok());
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let v2 = cgroup2_only();
    let quota = cpulimit.filter(|l| *l > 0.0).map(|l| (l * 100000.0) as i64);
    if v2 {
        line(format!("lxc.cgroup2.memory.max = {}", memory * 1024 * 1024));
        line(format!(
            "lxc.cgroup2.memory.swap.max = {}",
            swap * 1024 * 1024
        ));
        if let Some(q) = quota {
            line(format!("lxc.cgroup2.cpu.max = {q} 100000"));
        }
    } else {
        line(format!(
            "lxc.cgroup.memory.limit_in_bytes = {}",
            memory * 1024 * 1024
        ));
        if let Some(q) = quota {
            line("lxc.cgroup.cpu.cfs_period_us = 100000".into());
            line(format!("lxc.cgroup.cpu.cfs_quota_us = {q}"));
        }
    }
    if let Some(c) = cores {
        let cg = if v2 { "cgroup2" } else { "cgroup" };
        line(format!(
            "lxc.{cg}.cpuset.cpus = 0-{}",
            c.min(ncpu).max(1) - 1
        ));
    }
    line(format!("lxc.rootfs.path = dir:{}", rootfs.display()));

    for (idx, (key, net)) in sec.nets().into_iter().enumerate() {
        let n: u32 = key.trim_start_matches("net").parse().unwrap_or(idx as u32);
        let i = idx;
        line(format!("lxc.net.{i}.type = veth"));
        if let Some(br) = net.get("bridge") {
            line(format!("lxc.net.{i}.link = {br}"));
        }
        line(format!(
            "lxc.net.{i}.veth.pair = {}",
            node.veth_name(vmid, n)
        ));
        if let Some(name) = net.get("name") {
            line(format!("lxc.net.{i}.name = {name}"));
        }
        if let Some(mac) = net.get("hwaddr") {
            line(format!("lxc.net.{i}.hwaddr = {mac}"));
        }
        if !net.flag("link_down") {
            line(format!("lxc.net.{i}.flags = up"));
        }
        line(format!(
            "lxc.net.{i}.mtu = {}",
            net.get("mtu").unwrap_or("1500")
        ));
    }
    line(format!(
        "lxc.console.logfile = {}",
        node.lxc_dir(vmid).join("console.log").display()
    ));
    for (k, v) in &sec.lxc {
        line(format!("{k} = {v}"));
    }
    raw
}

/// Write `<root>/lxc/<vmid>/config`.
pub fn write_config(node: &Node, vmid: u32, sec: &Section, rootfs: &Path) -> Result<()> {
    let text = config_text(node, vmid, sec, rootfs);
    crate::conf::write_atomic(&node.lxc_dir(vmid).join("config"), text.as_bytes(), 0o644)
}

/// Start a CT: bridges checked, config generated, `lxc-start` run (daemonized).
/// Failure: `startup for container '<vmid>' failed` (with the reason before it).
pub fn start(node: &Node, vmid: u32, sec: &Section, cfg: &StorageCfg) -> Result<()> {
    check_bridges(sec)?;
    let rootfs = rootfs_path(node, cfg, sec)?;
    if !rootfs.is_dir() {
        return Err(PveError::die(format!(
            "rootfs '{}' is missing\nstartup for container '{vmid}' failed",
            rootfs.display()
        )));
    }
    write_config(node, vmid, sec, &rootfs)?;
    let log = node.lxc_dir(vmid).join("lxc.log");
    let _ = fs::remove_file(&log);
    let mut cmd = lxc_cmd(node, "lxc-start", vmid);
    cmd.arg("-l").arg("WARN").arg("-o").arg(&log);
    if let Err(e) = run_capture(&mut cmd) {
        let detail = fs::read_to_string(&log)
            .ok()
            .map(|t| {
                t.lines()
                    .filter(|l| l.contains("ERROR"))
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        let mut msg = String::new();
        if !detail.is_empty() {
            let _ = writeln!(msg, "{detail}");
        }
        let _ = write!(msg, "{e}\nstartup for container '{vmid}' failed");
        return Err(PveError::die(msg));
    }
    // lxc-start daemonizes; wait until init exists (or it died).
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        match state(node, vmid) {
            State::Running | State::Frozen => return Ok(()),
            State::Stopped => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Err(PveError::die(format!(
        "startup for container '{vmid}' failed"
    )))
}

/// Hard stop (`lxc-stop --kill`).
pub fn stop(node: &Node, vmid: u32) -> Result<()> {
    let mut cmd = lxc_cmd(node, "lxc-stop", vmid);
    cmd.arg("--kill");
    run_capture(&mut cmd).map(|_| ())?;
    wait_stopped(node, vmid, Duration::from_secs(10));
    Ok(())
}

/// Clean shutdown with a timeout; `Ok(false)` if it did not stop in time.
pub fn shutdown(node: &Node, vmid: u32, timeout: u64) -> Result<bool> {
    let mut cmd = lxc_cmd(node, "lxc-stop", vmid);
    cmd.arg("-t").arg(timeout.max(1).to_string());
    let _ = cmd
        .env("LC_ALL", "C")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    Ok(wait_stopped(node, vmid, Duration::from_secs(2)))
}

fn wait_stopped(node: &Node, vmid: u32, max: Duration) -> bool {
    let t = Instant::now();
    loop {
        if state(node, vmid) == State::Stopped {
            return true;
        }
        if t.elapsed() > max {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Freeze (vzdump suspend mode).
pub fn freeze(node: &Node, vmid: u32) -> Result<()> {
    run_capture(&mut lxc_cmd(node, "lxc-freeze", vmid)).map(|_| ())
}

/// Unfreeze.
pub fn unfreeze(node: &Node, vmid: u32) -> Result<()> {
    run_capture(&mut lxc_cmd(node, "lxc-unfreeze", vmid)).map(|_| ())
}

/// Remove LXC's runtime dir and the CT's empty cgroup dirs (CT must be stopped).
pub fn cleanup_runtime(node: &Node, vmid: u32) {
    let _ = fs::remove_dir_all(node.lxc_dir(vmid));
    for p in cgroup_paths(node, vmid) {
        let _ = fs::remove_dir(p.join("ns"));
        let _ = fs::remove_dir(&p);
    }
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for e in rd.flatten() {
            let _ = fs::remove_dir(e.path().join(node.cgroup_monitor_dir(vmid)));
        }
    }
}

/// Run a host command inside the CT's network namespace (via its init PID).
pub fn nsenter_net(pid: i32, args: &[&str]) -> Result<Vec<u8>> {
    let mut cmd = Command::new("nsenter");
    cmd.arg("-t")
        .arg(pid.to_string())
        .arg("-n")
        .arg("--")
        .args(args);
    run_capture(&mut cmd).map(|o| o.stdout)
}

/// The `lxc-attach` argv for `pct exec`.
pub fn attach_argv(node: &Node, vmid: u32, keep_env: bool, cmd: &[String]) -> Vec<String> {
    let mut v = vec![
        "lxc-attach".to_string(),
        "-P".into(),
        node.lxc_path().display().to_string(),
        "-n".into(),
        vmid.to_string(),
        if keep_env {
            "--keep-env"
        } else {
            "--clear-env"
        }
        .into(),
        "--".into(),
    ];
    v.extend(cmd.iter().cloned());
    v
}

// ---------------------------------------------------------------------------
// rootfs setup at create time

/// Resolve a path inside the rootfs without following symlinks out of it.
pub fn ct_path(rootfs: &Path, inner: &str) -> PathBuf {
    rootfs.join(inner.trim_start_matches('/'))
}

fn write_ct_file(rootfs: &Path, inner: &str, data: &str, map: Option<IdMap>) -> Result<()> {
    let p = ct_path(rootfs, inner);
    if let Ok(m) = fs::symlink_metadata(&p) {
        if m.file_type().is_symlink() {
            fs::remove_file(&p).map_err(|e| PveError::io("remove", &p, e))?;
        }
    }
    if let Some(dir) = p.parent() {
        if !dir.exists() {
            return Ok(());
        }
    }
    fs::write(&p, data).map_err(|e| PveError::io("write", &p, e))?;
    let (uid, gid) = map.map(|m| (m.host_uid, m.host_gid)).unwrap_or((0, 0));
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .map_err(|e| PveError::io("chown", &p, e.into()))?;
    Ok(())
}

/// Write hostname, hosts, network interfaces and resolv.conf into a fresh rootfs.
pub fn setup_rootfs(rootfs: &Path, vmid: u32, sec: &Section, map: Option<IdMap>) -> Result<()> {
    let hostname = sec.hostname_or_default(vmid);
    let short = hostname.split('.').next().unwrap_or(&hostname).to_string();
    write_ct_file(rootfs, "/etc/hostname", &format!("{short}\n"), map)?;

    let mut hosts = String::from(
        "127.0.0.1\tlocalhost.localdomain localhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n",
    );
    let static_ip = sec.nets().into_iter().find_map(|(_, n)| {
        n.get("ip")
            .filter(|ip| ip.contains('/'))
            .map(|ip| ip.split('/').next().unwrap_or("").to_string())
    });
    let fqdn = if hostname.contains('.') {
        format!("{hostname} {short}")
    } else {
        match sec.get("searchdomain") {
            Some(d) => format!(
                "{short}.{} {short}",
                d.split_whitespace().next().unwrap_or(d)
            ),
            None => short.clone(),
        }
    };
    let _ = writeln!(
        hosts,
        "{}\t{fqdn}",
        static_ip.unwrap_or_else(|| "127.0.1.1".into())
    );
    write_ct_file(rootfs, "/etc/hosts", &hosts, map)?;

    let mut ifaces = String::from("auto lo\niface lo inet loopback\n");
    for (_, n) in sec.nets() {
        let Some(name) = n.get("name") else { continue };
        if let Some(ip) = n.get("ip") {
            let _ = write!(ifaces, "\nauto {name}\n");
            match ip {
                "dhcp" => {
                    let _ = writeln!(ifaces, "iface {name} inet dhcp");
                }
                "manual" => {
                    let _ = writeln!(ifaces, "iface {name} inet manual");
                }
                cidr => {
                    let _ = writeln!(ifaces, "iface {name} inet static\n\taddress {cidr}");
                    if let Some(gw) = n.get("gw") {
                        let _ = writeln!(ifaces, "\tgateway {gw}");
                    }
                }
            }
        }
        if let Some(ip6) = n.get("ip6") {
            let method = match ip6 {
                "dhcp" => "dhcp".to_string(),
                "auto" => "auto".to_string(),
                "manual" => "manual".to_string(),
                _ => "static".to_string(),
            };
            let _ = write!(ifaces, "\niface {name} inet6 {method}\n");
            if method == "static" {
                let _ = writeln!(ifaces, "\taddress {ip6}");
                if let Some(gw) = n.get("gw6") {
                    let _ = writeln!(ifaces, "\tgateway {gw}");
                }
            }
        }
    }
    write_ct_file(rootfs, "/etc/network/interfaces", &ifaces, map)?;

    let (ns, sd) = (sec.get("nameserver"), sec.get("searchdomain"));
    let resolv = if ns.is_some() || sd.is_some() {
        let mut r = String::new();
        if let Some(sd) = sd {
            let _ = writeln!(r, "search {}", sd.replace(',', " "));
        }
        for n in ns
            .unwrap_or("")
            .split([' ', ',', ';'])
            .filter(|s| !s.is_empty())
        {
            let _ = writeln!(r, "nameserver {n}");
        }
        r
    } else {
        // PVE copies the host's settings.
        let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        host.lines()
            .filter(|l| l.starts_with("nameserver") || l.starts_with("search"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    write_ct_file(rootfs, "/etc/resolv.conf", &resolv, map)?;
    Ok(())
}

/// Detect the architecture from the ELF header of the CT's shell.
pub fn detect_arch(rootfs: &Path) -> String {
    for cand in [
        "usr/bin/dash",
        "bin/dash",
        "usr/bin/bash",
        "bin/bash",
        "bin/busybox",
    ] {
        let p = rootfs.join(cand);
        if let Ok(data) = fs::read(&p).map(|d| d.into_iter().take(20).collect::<Vec<u8>>()) {
            if data.len() >= 20 && &data[..4] == b"\x7fELF" {
                let machine = u16::from_le_bytes([data[18], data[19]]);
                return match machine {
                    0x3e => "amd64",
                    0xb7 => "arm64",
                    0x28 => "armhf",
                    0x03 => "i386",
                    0xf3 => "riscv64",
                    _ => "amd64",
                }
                .into();
            }
        }
    }
    "amd64".into()
}

/// Detect the ostype (`debian`, `ubuntu`, `alpine`, ...) from the rootfs.
pub fn detect_ostype(rootfs: &Path) -> String {
    let osr = fs::read_to_string(rootfs.join("etc/os-release"))
        .or_else(|_| fs::read_to_string(rootfs.join("usr/lib/os-release")))
        .unwrap_or_default();
    for l in osr.lines() {
        if let Some(id) = l.strip_prefix("ID=") {
            let id = id.trim_matches('"');
            if matches!(
                id,
                "debian"
                    | "ubuntu"
                    | "alpine"
                    | "archlinux"
                    | "centos"
                    | "fedora"
                    | "devuan"
                    | "gentoo"
                    | "nixos"
            ) {
                return id.into();
            }
            if id.starts_with("opensuse") {
                return "opensuse".into();
            }
        }
    }
    if rootfs.join("etc/debian_version").exists() {
        return "debian".into();
    }
    "unmanaged".into()
}

/// The systemd major version of the CT's init, if it is systemd
/// (from the `libsystemd-shared-<N>.so` file name).
pub fn systemd_version(rootfs: &Path) -> Option<u32> {
    let mut dirs = vec![rootfs.join("usr/lib/systemd"), rootfs.join("lib/systemd")];
    if let Ok(rd) = fs::read_dir(rootfs.join("usr/lib")) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.ends_with("-linux-gnu") {
                dirs.push(e.path().join("systemd"));
            }
        }
    }
    for dir in dirs {
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(v) = n
                    .strip_prefix("libsystemd-shared-")
                    .and_then(|r| r.strip_suffix(".so"))
                {
                    if let Ok(v) = v.split(['.', '-']).next().unwrap_or("").parse() {
                        return Some(v);
                    }
                }
            }
        }
    }
    None
}
