//! `pveversion [--verbose]`.
//!
//! Plain: `pve-manager/<ver>/<repoid> (running kernel: <uname -r>)`.
//! Verbose: `proxmox-ve`, `pve-manager`, then a fixed package list. Any other
//! argument prints `USAGE: pveversion [--verbose]` to stderr, exit 255.

use crate::error::{PveError, Result};
use crate::node::{manager_version, Node};

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Entry point.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let is_verbose = |a: &str| {
        a.strip_prefix("--")
            .or_else(|| a.strip_prefix('-'))
            .map(|b| !b.is_empty() && "verbose".starts_with(b))
            .unwrap_or(false)
    };
    let verbose = match args {
        [] => false,
        [a] if is_verbose(a) => true,
        _ => {
            return Err(PveError::Exit {
                code: 255,
                msg: "USAGE: pveversion [--verbose]".into(),
            })
        }
    };
    let (ver, repoid) = manager_version(node.pve_major());
    let k = kernel();
    if !verbose {
        println!("pve-manager/{ver}/{repoid} (running kernel: {k})");
        return Ok(());
    }
    let pkgs: &[(&str, &str)] = if node.pve_major() >= 9 {
        &[
            ("proxmox-kernel-helper", "9.0.4"),
            ("ceph-fuse", "19.2.3-pve1"),
            ("corosync", "3.1.9-pve2"),
            ("criu", "4.1.1-1"),
            ("ifupdown2", "3.3.0-1+pmx10"),
            ("libjs-extjs", "7.0.0-5"),
            ("libpve-common-perl", "9.0.13"),
            ("libpve-guest-common-perl", "6.0.2"),
            ("libpve-storage-perl", "9.0.18"),
            ("lxc-pve", "6.0.5-3"),
            ("lxcfs", "6.0.4-pve1"),
            ("pve-cluster", "9.0.7"),
            ("pve-container", "6.0.18"),
            ("pve-docs", "9.1.1"),
            ("pve-manager", ver),
            ("qemu-server", "9.1.1"),
            ("zfsutils-linux", "2.3.4-pve1"),
        ]
    } else {
        &[
            ("proxmox-kernel-helper", "8.1.4"),
            ("ceph-fuse", "17.2.8-pve2"),
            ("corosync", "3.1.9-pve1"),
            ("criu", "3.17.1-2+deb12u2"),
            ("glusterfs-client", "10.3-5"),
            ("ifupdown2", "3.2.0-1+pmx11"),
            ("libjs-extjs", "7.0.0-5"),
            ("libpve-common-perl", "8.3.4"),
            ("libpve-guest-common-perl", "5.2.2"),
            ("libpve-storage-perl", "8.3.7"),
            ("lxc-pve", "6.0.0-2"),
            ("lxcfs", "6.0.0-pve2"),
            ("pve-cluster", "8.1.2"),
            ("pve-container", "5.3.3"),
            ("pve-docs", "8.4.1"),
            ("qemu-server", "8.4.5"),
            ("zfsutils-linux", "2.2.8-pve1"),
        ]
    };
    let ve = if node.pve_major() >= 9 {
        "9.1.0"
    } else {
        "8.4.0"
    };
    println!("proxmox-ve: {ve} (running kernel: {k})");
    println!("pve-manager: {ver} (running version: {ver}/{repoid})");
    for (p, v) in pkgs {
        if *p == "pve-manager" {
            continue;
        }
        println!("{p}: {v}");
    }
    Ok(())
}
