//! The sandbox node: where everything lives and what this node pretends to be.
//!
//! Every path the sandbox touches is computed here from the state root
//! (`$PVE_SANDBOX_ROOT`, default `/var/lib/pve-sandbox`), so a test can run a
//! private node in a temp dir by setting one variable. The settings file
//! `<root>/etc/sandbox.conf` holds `key: value` lines (`node`, `pve-major`,
//! `bridge`, `subnet`); a missing file or key means the default. See the
//! contract table in `docs/sandbox.md`.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{PveError, Result};

/// Default state root.
pub const DEFAULT_ROOT: &str = "/var/lib/pve-sandbox";
/// Default appliance mirror (survives `pve-sandbox down`).
pub const DEFAULT_MIRROR: &str = "/var/cache/pve-sandbox/mirror";
/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "vmbr0";
/// Default IPv4 subnet of the bridge (a /24; the bridge gets `.1`).
pub const DEFAULT_SUBNET: &str = "10.213.7.0/24";

/// The emulated pve-manager version per major, with its repoid.
pub fn manager_version(major: u8) -> (&'static str, &'static str) {
    if major >= 9 {
        ("9.1.1", "42db4a6cf33dac83")
    } else {
        ("8.4.14", "b502d23c55afcba1")
    }
}

/// A guest that lives on the fake other cluster node (`<root>/etc/pve/other-nodes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherGuest {
    /// The node it lives on.
    pub node: String,
    /// `qemu` or `lxc`.
    pub kind: String,
    /// Its id.
    pub vmid: u32,
    /// Its name.
    pub name: String,
}

/// The sandbox node and all its paths.
#[derive(Debug, Clone)]
pub struct Node {
    root: PathBuf,
    mirror: PathBuf,
    name: String,
    pve_major: u8,
    bridge: String,
    subnet: String,
}

impl Node {
    /// Load from the environment (`PVE_SANDBOX_ROOT`, `PVE_SANDBOX_MIRROR`,
    /// `PVE_SANDBOX_PVE_MAJOR`) and the settings file.
    pub fn from_env() -> Result<Node> {
        let root = std::env::var_os("PVE_SANDBOX_ROOT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        Self::load(&root)
    }

    /// Load the node rooted at `root`, honouring the environment overrides.
    pub fn load(root: &Path) -> Result<Node> {
        let mirror = std::env::var_os("PVE_SANDBOX_MIRROR")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MIRROR));
        let mut node = Node {
            root: root.to_path_buf(),
            mirror,
            name: short_hostname(),
            pve_major: 8,
            bridge: DEFAULT_BRIDGE.into(),
            subnet: DEFAULT_SUBNET.into(),
        };
        let settings = node.settings_file();
        match fs::read_to_string(&settings) {
            Ok(text) => {
                for (k, v) in parse_settings(&text) {
                    match k.as_str() {
                        "node" => node.name = v,
                        "pve-major" => {
                            node.pve_major = parse_major(&v).ok_or_else(|| {
                                PveError::die(format!(
                                    "{}: invalid pve-major '{v}' (expected 8 or 9)",
                                    settings.display()
                                ))
                            })?
                        }
                        "bridge" => node.bridge = v,
                        "subnet" => node.subnet = v,
                        _ => {}
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(PveError::io("read settings", settings, e)),
        }
        if let Ok(v) = std::env::var("PVE_SANDBOX_PVE_MAJOR") {
            if !v.is_empty() {
                node.pve_major = parse_major(&v).ok_or_else(|| {
                    PveError::die(format!(
                        "PVE_SANDBOX_PVE_MAJOR: invalid value '{v}' (expected 8 or 9)"
                    ))
                })?;
            }
        }
        Ok(node)
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The appliance mirror (`aplinfo-pve-N.dat`, `system/<template>`).
    pub fn mirror(&self) -> &Path {
        &self.mirror
    }
    /// This node's name (short hostname unless set in the settings).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The emulated PVE major version: 8 or 9.
    pub fn pve_major(&self) -> u8 {
        self.pve_major
    }
    /// The bridge CTs are attached to by default (also the one `up` creates).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
    /// The bridge's subnet, e.g. `10.213.7.0/24`.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }
    /// The first three octets of the subnet, e.g. `10.213.7`.
    pub fn subnet_prefix(&self) -> Result<String> {
        let net = self.subnet.split('/').next().unwrap_or_default();
        let octets: Vec<&str> = net.split('.').collect();
        if octets.len() != 4 || octets.iter().any(|o| o.parse::<u8>().is_err()) {
            return Err(PveError::die(format!(
                "invalid subnet '{}' in {} (expected a.b.c.0/24)",
                self.subnet,
                self.settings_file().display()
            )));
        }
        Ok(octets[..3].join("."))
    }
    /// A short tag identifying a non-default sandbox root (`None` for the
    /// default root). Used to keep host-global names (cgroup dirs, veth names)
    /// apart when two sandboxes run side by side.
    pub fn instance_tag(&self) -> Option<String> {
        if self.root == Path::new(DEFAULT_ROOT) {
            return None;
        }
        // FNV-1a over the root path: stable, no dependency needed.
        let mut h: u32 = 0x811c_9dc5;
        for b in self.root.as_os_str().as_encoded_bytes() {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Some(format!("{:03x}", h & 0xfff))
    }
    /// The cgroup dir (below each hierarchy) of a CT's payload: `lxc/<vmid>`
    /// (Proxmox's layout) or `sbx<tag>/lxc/<vmid>` for non-default roots.
    pub fn cgroup_dir(&self, vmid: u32) -> String {
        match self.instance_tag() {
            None => format!("lxc/{vmid}"),
            Some(t) => format!("sbx{t}/lxc/{vmid}"),
        }
    }
    /// The monitor's cgroup dir.
    pub fn cgroup_monitor_dir(&self, vmid: u32) -> String {
        match self.instance_tag() {
            None => format!("lxc.monitor/{vmid}"),
            Some(t) => format!("sbx{t}/lxc.monitor/{vmid}"),
        }
    }
    /// Host-side veth name of `net<n>`: `veth<vmid>i<n>` (Proxmox) or
    /// `v<tag><vmid>i<n>` for non-default roots (kept within 15 chars).
    pub fn veth_name(&self, vmid: u32, n: u32) -> String {
        let name = match self.instance_tag() {
            None => format!("veth{vmid}i{n}"),
            Some(t) => format!("v{t}{vmid}i{n}"),
        };
        name.chars().take(15).collect()
    }
    /// The pve-manager version string, e.g. `8.4.14`.
    pub fn manager_version(&self) -> &'static str {
        manager_version(self.pve_major).0
    }

    /// `<root>/etc/sandbox.conf`.
    pub fn settings_file(&self) -> PathBuf {
        self.root.join("etc/sandbox.conf")
    }
    /// `<root>/etc/pve` (the pmxcfs stand-in).
    pub fn etc_pve(&self) -> PathBuf {
        self.root.join("etc/pve")
    }
    /// `<root>/etc/pve/lxc`.
    pub fn lxc_conf_dir(&self) -> PathBuf {
        self.etc_pve().join("lxc")
    }
    /// `<root>/etc/pve/lxc/<vmid>.conf`.
    pub fn conf_path(&self, vmid: u32) -> PathBuf {
        self.lxc_conf_dir().join(format!("{vmid}.conf"))
    }
    /// The cfs-relative path used in messages: `nodes/<node>/lxc/<vmid>.conf`.
    pub fn cfs_conf_path(&self, vmid: u32) -> String {
        format!("nodes/{}/lxc/{vmid}.conf", self.name)
    }
    /// `<root>/etc/pve/storage.cfg`.
    pub fn storage_cfg(&self) -> PathBuf {
        self.etc_pve().join("storage.cfg")
    }
    /// `<root>/etc/pve/other-nodes`.
    pub fn other_nodes_file(&self) -> PathBuf {
        self.etc_pve().join("other-nodes")
    }
    /// `<root>/etc/pve/jobs.cfg`.
    pub fn jobs_cfg(&self) -> PathBuf {
        self.etc_pve().join("jobs.cfg")
    }
    /// `<root>/etc/vzdump.conf`.
    pub fn vzdump_conf(&self) -> PathBuf {
        self.root.join("etc/vzdump.conf")
    }
    /// `<root>/etc/faults`.
    pub fn faults_file(&self) -> PathBuf {
        self.root.join("etc/faults")
    }
    /// `<root>/etc/clock`.
    pub fn clock_file(&self) -> PathBuf {
        self.root.join("etc/clock")
    }
    /// `<root>/run`.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    /// `<root>/run/faults.used` (consumed `once` rules).
    pub fn faults_used(&self) -> PathBuf {
        self.run_dir().join("faults.used")
    }
    /// `<root>/run/lock/lxc/pve-config-<vmid>.lock`.
    pub fn config_lock_path(&self, vmid: u32) -> PathBuf {
        self.run_dir()
            .join(format!("lock/lxc/pve-config-{vmid}.lock"))
    }
    /// `<root>/run/vzdump.lock` (vzdump's global lock).
    pub fn vzdump_lock(&self) -> PathBuf {
        self.run_dir().join("vzdump.lock")
    }
    /// `<root>/run/dnsmasq.pid`.
    pub fn dnsmasq_pid(&self) -> PathBuf {
        self.run_dir().join("dnsmasq.pid")
    }
    /// `<root>/run/dnsmasq.leases`.
    pub fn dnsmasq_leases(&self) -> PathBuf {
        self.run_dir().join("dnsmasq.leases")
    }
    /// `<root>/lxc` (the `-P` lxcpath).
    pub fn lxc_path(&self) -> PathBuf {
        self.root.join("lxc")
    }
    /// `<root>/lxc/<vmid>`.
    pub fn lxc_dir(&self, vmid: u32) -> PathBuf {
        self.lxc_path().join(vmid.to_string())
    }
    /// `<root>/var/lib/vz` (storage `local`).
    pub fn var_lib_vz(&self) -> PathBuf {
        self.root.join("var/lib/vz")
    }
    /// `<root>/data` (backing dirs of lvmthin stand-ins: `<root>/data/<storeid>`).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }
    /// `<root>/var/log/pve/tasks`.
    pub fn task_log_dir(&self) -> PathBuf {
        self.root.join("var/log/pve/tasks")
    }
    /// `<root>/var/log/pveam.log`.
    pub fn pveam_log(&self) -> PathBuf {
        self.root.join("var/log/pveam.log")
    }
    /// `<root>/var/lib/pve-manager/apl-info` (pveam's index cache).
    pub fn aplinfo_cache_dir(&self) -> PathBuf {
        self.root.join("var/lib/pve-manager/apl-info")
    }

    /// Guests on the fake other node(s). A missing file means none; bad lines are skipped.
    pub fn other_guests(&self) -> Result<Vec<OtherGuest>> {
        let path = self.other_nodes_file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PveError::io("read", path, e)),
        };
        let mut out = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut it = line.split_whitespace();
            let (Some(node), Some(kind), Some(vmid)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(vmid) = vmid.parse::<u32>() else {
                continue;
            };
            if kind != "qemu" && kind != "lxc" {
                continue;
            }
            let name = it.collect::<Vec<_>>().join(" ");
            out.push(OtherGuest {
                node: node.into(),
                kind: kind.into(),
                vmid,
                name,
            });
        }
        Ok(out)
    }

    /// Ids of local CTs (from the config dir), sorted.
    pub fn local_vmids(&self) -> Result<Vec<u32>> {
        let dir = self.lxc_conf_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(PveError::io("read dir", dir, e)),
        };
        let mut ids = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| PveError::io("read dir", &dir, e))?;
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(id) = name.strip_suffix(".conf") {
                if let Ok(id) = id.parse::<u32>() {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Where a vmid is in use in the "cluster": `Some((node, "CT"|"VM"))`.
    pub fn vmid_owner(&self, vmid: u32) -> Result<Option<(String, &'static str)>> {
        if self.conf_path(vmid).exists() {
            return Ok(Some((self.name.clone(), "CT")));
        }
        for g in self.other_guests()? {
            if g.vmid == vmid {
                let kind = if g.kind == "lxc" { "CT" } else { "VM" };
                return Ok(Some((g.node, kind)));
            }
        }
        Ok(None)
    }
}

fn parse_major(v: &str) -> Option<u8> {
    match v.trim() {
        "8" => Some(8),
        "9" => Some(9),
        _ => None,
    }
}

/// Parse `key: value` lines; `#` comments and blank lines are skipped.
pub fn parse_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// The short hostname, as `PVE::INotify::nodename` computes it.
pub fn short_hostname() -> String {
    let full = fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    full.split('.').next().unwrap_or("localhost").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse() {
        let v = parse_settings("# c\nnode: pve\n\nbridge: vmbr7\nsubnet: 10.1.2.0/24\n");
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], ("node".into(), "pve".into()));
    }
}
