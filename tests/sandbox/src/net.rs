//! Bringing the sandbox node up and down (`pve-sandbox up|down|status`).
//!
//! `up` is idempotent: it ensures `root:100000:65536` in `/etc/subuid` and
//! `/etc/subgid`, the state tree under `<root>`, the settings file and a
//! default `storage.cfg` (existing ones are kept), the bridge with
//! `<subnet>.1/24`, and a dnsmasq serving DHCP only on that bridge (no DNS,
//! no upstream resolvers, `--no-ping` for fast first leases; pid and lease
//! files under `<root>/run/`).
//!
//! `down` stops every CT, kills dnsmasq, deletes the bridge and the CTs'
//! cgroup dirs, and removes `<root>` entirely. Nothing outside `<root>` is
//! touched except those host objects; the appliance mirror stays.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

use crate::conf::write_atomic;
use crate::error::{PveError, Result};
use crate::lxc;
use crate::node::Node;
use crate::storage::StorageCfg;
use crate::util::{run_capture, run_ok};

fn ensure_subid(file: &str) -> Result<()> {
    let line = "root:100000:65536";
    let text = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(PveError::io("read", file, e)),
    };
    if text.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    let mut new = text;
    if !new.is_empty() && !new.ends_with('\n') {
        new.push('\n');
    }
    new.push_str(line);
    new.push('\n');
    write_atomic(Path::new(file), new.as_bytes(), 0o644)
}

fn bridge_exists(br: &str) -> bool {
    Path::new("/sys/class/net").join(br).join("bridge").exists()
}

fn dnsmasq_pid(node: &Node) -> Option<i32> {
    let pid: i32 = fs::read_to_string(node.dnsmasq_pid())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmd = String::from_utf8_lossy(&cmdline);
    let ours = node.dnsmasq_pid().display().to_string();
    (cmd.contains("dnsmasq") && cmd.contains(&ours)).then_some(pid)
}

/// `pve-sandbox up`.
pub fn up(node: &Node) -> Result<()> {
    let prefix = node.subnet_prefix()?;
    ensure_subid("/etc/subuid")?;
    ensure_subid("/etc/subgid")?;
    let vz = node.var_lib_vz();
    for d in [
        node.lxc_conf_dir(),
        node.run_dir().join("lock/lxc"),
        node.lxc_path(),
        vz.join("template/cache"),
        vz.join("template/iso"),
        vz.join("dump"),
        vz.join("images"),
        vz.join("private"),
        vz.join("snippets"),
        node.data_dir().join("local-lvm"),
        node.task_log_dir(),
    ] {
        fs::create_dir_all(&d).map_err(|e| PveError::io("create dir", &d, e))?;
    }
    // rootfs dirs live below <root>; unprivileged CT roots need o+x on the parents
    for d in [
        node.root().to_path_buf(),
        node.data_dir(),
        node.root().join("var"),
        node.root().join("var/lib"),
        vz.clone(),
        vz.join("images"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o755));
    }
    if !node.settings_file().exists() {
        let text = format!(
            "node: {}\npve-major: {}\nbridge: {}\nsubnet: {}\n",
            node.name(),
            node.pve_major(),
            node.bridge(),
            node.subnet()
        );
        write_atomic(&node.settings_file(), text.as_bytes(), 0o644)?;
    }
    if !node.storage_cfg().exists() {
        StorageCfg::default_for(node).store(node)?;
    }

    let br = node.bridge();
    if !bridge_exists(br) {
        run_capture(Command::new("ip").args(["link", "add", br, "type", "bridge"]))?;
    }
    let addr = format!("{prefix}.1/24");
    let have_addr = run_capture(Command::new("ip").args(["-4", "-o", "addr", "show", "dev", br]))
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {addr} ")))
        .unwrap_or(false);
    if !have_addr {
        run_capture(Command::new("ip").args(["addr", "add", &addr, "dev", br]))?;
    }
    run_capture(Command::new("ip").args(["link", "set", br, "up"]))?;

    if dnsmasq_pid(node).is_none() {
        let mut cmd = Command::new("dnsmasq");
        cmd.arg("--conf-file=/dev/null")
            .arg("--port=0")
            .arg("--strict-order")
            .arg("--bind-interfaces")
            .arg(format!("--interface={br}"))
            .arg("--except-interface=lo")
            .arg(format!("--listen-address={prefix}.1"))
            .arg(format!("--dhcp-range={prefix}.100,{prefix}.250,12h"))
            .arg(format!(
                "--dhcp-leasefile={}",
                node.dnsmasq_leases().display()
            ))
            .arg(format!("--pid-file={}", node.dnsmasq_pid().display()))
            .arg("--no-resolv")
            .arg("--no-ping")
            .arg("--dhcp-authoritative");
        run_capture(&mut cmd)?;
    }
    println!(
        "sandbox node '{}' up: root {}, bridge {br} ({prefix}.1/24), PVE {}",
        node.name(),
        node.root().display(),
        node.manager_version()
    );
    Ok(())
}

/// `pve-sandbox down`.
pub fn down(node: &Node) -> Result<()> {
    let root = node.root();
    if root == Path::new("/") || root.as_os_str().is_empty() {
        return Err(PveError::die("refusing to remove '/'"));
    }
    // every CT LXC knows about under <root>/lxc, plus every config
    let mut ids = node.local_vmids().unwrap_or_default();
    if let Ok(rd) = fs::read_dir(node.lxc_path()) {
        for e in rd.flatten() {
            if let Ok(id) = e.file_name().to_string_lossy().parse::<u32>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for id in &ids {
        if lxc::is_running(node, *id) {
            if let Err(e) = lxc::stop(node, *id) {
                eprintln!("stopping CT {id} failed: {}", e.render().0);
            }
        }
        lxc::cleanup_runtime(node, *id);
    }
    if let Some(pid) = dnsmasq_pid(node) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let br = node.bridge();
    if bridge_exists(br) {
        let _ = run_ok(Command::new("ip").args(["link", "del", br]));
    }
    // empty per-instance cgroup parents
    if let Some(tag) = node.instance_tag() {
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                let base = e.path().join(format!("sbx{tag}"));
                let _ = fs::remove_dir(base.join("lxc"));
                let _ = fs::remove_dir(base.join("lxc.monitor"));
                let _ = fs::remove_dir(&base);
            }
        }
    }
    match fs::remove_dir_all(root) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(PveError::io("remove", root, e)),
    }
    Ok(())
}

/// `pve-sandbox status`: `key: value` lines.
pub fn status(node: &Node) -> Result<()> {
    let ids = node.local_vmids()?;
    let running = ids.iter().filter(|id| lxc::is_running(node, **id)).count();
    println!("root: {}", node.root().display());
    println!("node: {}", node.name());
    println!("pve-version: {}", node.manager_version());
    println!(
        "bridge: {} ({})",
        node.bridge(),
        if bridge_exists(node.bridge()) {
            "up"
        } else {
            "missing"
        }
    );
    println!("subnet: {}", node.subnet());
    match dnsmasq_pid(node) {
        Some(p) => println!("dnsmasq: running (pid {p})"),
        None => println!("dnsmasq: not running"),
    }
    println!("containers: {} ({running} running)", ids.len());
    Ok(())
}
