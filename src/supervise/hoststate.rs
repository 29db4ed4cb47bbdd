//! The state of every container, read once per supervision round.
//!
//! Two sources (`[supervise] host_state`):
//! - `files`: no subprocess. A container exists when `<ct_config_dir>/<vmid>.conf`
//!   does; its lock is the `lock:` line of the config's main section; it runs
//!   when LXC's command socket `@<lxc_path>/<vmid>/command` is listed in
//!   `/proc/net/unix` — the same reads Proxmox's `pct list` makes itself,
//!   without starting a Perl interpreter per call;
//! - `pct-list`: one `pct list` (status and lock columns).
//!
//! Invariant: one [`HostReader::read`] costs at most one subprocess,
//! however many containers there are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{HostStateSource, SuperviseConfig};
use crate::pve::types::CtState;
use crate::pve::Pve;

/// One container as the host shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtInfo {
    /// It runs.
    pub running: bool,
    /// Proxmox's config lock (`backup`, `create`, ...), if any.
    pub lock: Option<String>,
}

/// Every container on this node at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostSnapshot {
    /// By vmid.
    pub cts: HashMap<u32, CtInfo>,
}

/// Reads [`HostSnapshot`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReader {
    source: HostStateSource,
    ct_config_dir: PathBuf,
    lxc_path: PathBuf,
    proc_net_unix: PathBuf,
}

impl HostReader {
    /// A reader configured by `[supervise]`; `auto` is resolved here.
    pub fn new(cfg: &SuperviseConfig) -> Self {
        let proc_net_unix = PathBuf::from("/proc/net/unix");
        let source = match cfg.host_state {
            HostStateSource::Auto => {
                if cfg.ct_config_dir.is_dir() && std::fs::metadata(&proc_net_unix).is_ok() {
                    HostStateSource::Files
                } else {
                    HostStateSource::PctList
                }
            }
            s => s,
        };
        Self {
            source,
            ct_config_dir: cfg.ct_config_dir.clone(),
            lxc_path: cfg.lxc_path.clone(),
            proc_net_unix,
        }
    }

    /// Reads `/proc/net/unix` from elsewhere (tests).
    pub fn with_proc_net_unix(mut self, path: PathBuf) -> Self {
        self.proc_net_unix = path;
        self
    }

    /// The source in use (`files` or `pct-list`).
    pub fn source(&self) -> HostStateSource {
        self.source
    }

    /// Reads every container's state. `pve` is used by `pct-list` only.
    pub async fn read(&self, pve: Option<&Pve>) -> Result<HostSnapshot, String> {
        match self.source {
            HostStateSource::PctList => {
                let pve = pve.ok_or("the Proxmox tools are not available")?;
                let list = pve.pct_list().await.map_err(|e| e.to_string())?;
                Ok(HostSnapshot {
                    cts: list
                        .into_iter()
                        .map(|e| {
                            (
                                e.vmid,
                                CtInfo {
                                    running: e.status == CtState::Running,
                                    lock: e.lock,
                                },
                            )
                        })
                        .collect(),
                })
            }
            _ => {
                let dir = self.ct_config_dir.clone();
                let lxc = self.lxc_path.clone();
                let unix = self.proc_net_unix.clone();
                tokio::task::spawn_blocking(move || read_files(&dir, &lxc, &unix))
                    .await
                    .map_err(|e| format!("host state reader: {e}"))?
            }
        }
    }
}

fn read_files(ct_config_dir: &Path, lxc_path: &Path, unix: &Path) -> Result<HostSnapshot, String> {
    let sockets = std::fs::read_to_string(unix)
        .map_err(|e| format!("cannot read {}: {e}", unix.display()))?;
    let running = running_from_proc_net_unix(&sockets, lxc_path);
    let entries = std::fs::read_dir(ct_config_dir)
        .map_err(|e| format!("cannot list {}: {e}", ct_config_dir.display()))?;
    let mut cts = HashMap::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(vmid) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".conf"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A config that vanished between the listing and the read is a
        // container being destroyed: absent.
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        cts.insert(
            vmid,
            CtInfo {
                running: running.contains(&vmid),
                lock: lock_of(&text),
            },
        );
    }
    Ok(HostSnapshot { cts })
}

/// The main section of an on-disk container config (`<vmid>.conf`) as
/// `pct config` prints it: the `key: value` lines before the first
/// `[section]` (snapshots, `[pve:pending]`), without the `#` description
/// comment lines.
pub fn main_section(config: &str) -> String {
    let mut out = String::new();
    for line in config.lines() {
        if line.starts_with('[') {
            break;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The `lock:` of a container config's main section (before any `[section]`).
pub fn lock_of(config: &str) -> Option<String> {
    for line in config.lines() {
        if line.starts_with('[') {
            break;
        }
        if let Some(v) = line.strip_prefix("lock:") {
            let v = v.trim();
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The vmids whose LXC command socket (`@<lxc_path>/<vmid>/command`) is
/// listed in `/proc/net/unix` text. The path is the 8th column; abstract
/// names start with `@`, and the kernel shows NUL padding as `@` too.
pub fn running_from_proc_net_unix(text: &str, lxc_path: &Path) -> std::collections::HashSet<u32> {
    let prefix = format!("@{}/", lxc_path.display().to_string().trim_end_matches('/'));
    let mut out = std::collections::HashSet::new();
    for line in text.lines().skip(1) {
        let Some(path) = line.split_whitespace().nth(7) else {
            continue;
        };
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        let rest = rest.trim_end_matches('@');
        if let Some(vmid) = rest
            .strip_suffix("/command")
            .and_then(|v| v.parse::<u32>().ok())
        {
            out.insert(vmid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_NET_UNIX: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 27613 @/var/lib/lxc/140/command
0000000000000000: 00000002 00000000 00010000 0001 01 27614 @/var/lib/lxc/131/command@@@@
0000000000000000: 00000003 00000000 00000000 0001 03 31337 @/var/lib/lxc/150/command
0000000000000000: 00000002 00000000 00010000 0001 01 27615 @/var/lib/lxc/141/monitor-fifo
0000000000000000: 00000002 00000000 00010000 0001 01 27616 /run/systemd/journal/stdout
0000000000000000: 00000002 00000000 00010000 0001 01 27617 @/var/lib/lxcx/142/command
0000000000000000: 00000003 00000000 00000000 0001 03 27618
0000000000000000: 00000002 00000000 00010000 0001 01 27619 @/var/lib/lxc/abc/command
";

    #[test]
    fn running_containers_from_their_command_sockets() {
        let mut got: Vec<u32> =
            running_from_proc_net_unix(PROC_NET_UNIX, Path::new("/var/lib/lxc"))
                .into_iter()
                .collect();
        got.sort();
        assert_eq!(got, vec![131, 140, 150]);
        assert!(running_from_proc_net_unix(PROC_NET_UNIX, Path::new("/srv/lxc")).is_empty());
        // A trailing slash in the configured path changes nothing.
        assert_eq!(
            running_from_proc_net_unix(PROC_NET_UNIX, Path::new("/var/lib/lxc/")).len(),
            3
        );
    }

    #[test]
    fn the_main_section_parses_like_pct_config() {
        let file = "#Managed by 1ld%0A\n#deployment nb\narch: amd64\ncores: 2\nmemory: 2048\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth\ntags: 1ld;netbox\n\n[pve:pending]\ncores: 4\n\n[snap1]\ncores: 1\n";
        let cfg =
            crate::pve::parse::pct_config::parse_pct_config(&main_section(file)).expect("parses");
        assert_eq!((cfg.cores, cfg.memory), (Some(2), Some(2048)));
        assert_eq!(cfg.tags, vec!["1ld", "netbox"]);
        assert!(cfg.net.contains_key(&0));
    }

    #[test]
    fn the_lock_comes_from_the_main_section_only() {
        assert_eq!(
            lock_of("arch: amd64\nlock: backup\nmemory: 512\n"),
            Some("backup".into())
        );
        assert_eq!(lock_of("arch: amd64\n\n[vzdump]\nlock: snapshot\n"), None);
        assert_eq!(lock_of("#lock: x\narch: amd64\n"), None);
    }

    #[tokio::test]
    async fn files_source_reads_configs_and_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("lxc");
        std::fs::create_dir(&conf).unwrap();
        std::fs::write(conf.join("140.conf"), "arch: amd64\n").unwrap();
        std::fs::write(conf.join("131.conf"), "arch: amd64\nlock: backup\n").unwrap();
        std::fs::write(conf.join("199.conf"), "arch: amd64\n").unwrap();
        std::fs::write(conf.join("notes.txt"), "x").unwrap();
        let unix = dir.path().join("unix");
        std::fs::write(&unix, PROC_NET_UNIX).unwrap();
        let cfg = SuperviseConfig {
            host_state: HostStateSource::Auto,
            ct_config_dir: conf.clone(),
            ..SuperviseConfig::default()
        };
        let r = HostReader::new(&cfg).with_proc_net_unix(unix);
        assert_eq!(r.source(), HostStateSource::Files);
        let s = r.read(None).await.unwrap();
        assert_eq!(s.cts.len(), 3);
        assert_eq!(
            s.cts[&131],
            CtInfo {
                running: true,
                lock: Some("backup".into())
            }
        );
        assert!(s.cts[&140].running);
        assert!(!s.cts[&199].running);
        // A missing config dir makes `auto` fall back to pct list.
        let cfg = SuperviseConfig {
            ct_config_dir: dir.path().join("nope"),
            ..SuperviseConfig::default()
        };
        assert_eq!(HostReader::new(&cfg).source(), HostStateSource::PctList);
        assert!(HostReader::new(&cfg).read(None).await.is_err());
    }
}
