//! Storages: `<root>/etc/pve/storage.cfg` and CT volumes.
//!
//! The file is PVE's section-config format:
//!
//! (properties are tab-indented in the file)
//!
//! ```text
//! dir: local
//!     path /var/lib/pve-sandbox/var/lib/vz
//!     content backup,iso,vztmpl
//!
//! lvmthin: local-lvm
//!     thinpool data
//!     vgname pve
//!     content images,rootdir
//! ```
//!
//! Only `dir` and `lvmthin` are backed by anything:
//! * `dir`: the `path` with PVE's layout (`template/cache`, `template/iso`,
//!   `dump`, `images/<vmid>`, `private`, `snippets`). CT volumes are
//!   `<id>:<vmid>/vm-<vmid>-disk-<n>.raw`, which here are *directories* under
//!   `images/<vmid>/`. No snapshots (`snapshot feature is not available`).
//! * `lvmthin`: a stand-in with no LVM. Volumes `<id>:vm-<vmid>-disk-<n>` are
//!   directories under `<root>/data/<id>/`; snapshots are copies
//!   (`cp -a --reflink=auto`) named `snap_<volname>_<snap>` next to them.
//!
//! A volume is the CT's rootfs directory itself: LXC uses it directly, nothing
//! is mounted. Sizes are recorded in the config only (not enforced).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{PveError, Result};
use crate::node::Node;

/// One storage section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storage {
    /// The storage id (`local`).
    pub id: String,
    /// The type (`dir`, `lvmthin`, others are kept but not backed).
    pub kind: String,
    /// Properties in file order (`disable` has an empty value).
    pub props: Vec<(String, String)>,
}

impl Storage {
    /// A property's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
    /// The content types (`rootdir`, `images`, `vztmpl`, `iso`, `backup`, `snippets`, `import`).
    pub fn content(&self) -> Vec<String> {
        self.get("content")
            .map(|c| {
                c.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Whether the storage allows this content type.
    pub fn has_content(&self, ct: &str) -> bool {
        self.content().iter().any(|c| c == ct)
    }
    /// `disable` is set.
    pub fn disabled(&self) -> bool {
        self.props.iter().any(|(k, v)| k == "disable" && v != "0")
    }
    /// The `nodes` restriction, if any.
    pub fn nodes(&self) -> Option<Vec<String>> {
        self.get("nodes")
            .map(|n| n.split(',').map(|s| s.trim().to_string()).collect())
    }
    /// The storage's `prune-backups` setting.
    pub fn prune_backups(&self) -> Option<&str> {
        self.get("prune-backups")
    }
    /// The directory that backs this storage (`path` for dir, `<root>/data/<id>` for lvmthin).
    pub fn base_path(&self, node: &Node) -> Option<PathBuf> {
        match self.kind.as_str() {
            "dir" => self.get("path").map(PathBuf::from),
            "lvmthin" => Some(node.data_dir().join(&self.id)),
            _ => None,
        }
    }
    /// Whether CT volumes on it support snapshots.
    pub fn supports_snapshots(&self) -> bool {
        self.kind == "lvmthin"
    }
    /// Whether it is file based (has vztmpl/backup/iso dirs).
    pub fn is_dir(&self) -> bool {
        self.kind == "dir"
    }
    /// The dump dir of a dir storage (`<path>/dump`).
    pub fn dump_dir(&self) -> Option<PathBuf> {
        self.is_dir()
            .then(|| self.get("path").map(|p| Path::new(p).join("dump")))
            .flatten()
    }
    /// The template cache dir of a dir storage (`<path>/template/cache`).
    pub fn template_dir(&self) -> Option<PathBuf> {
        self.is_dir()
            .then(|| {
                self.get("path")
                    .map(|p| Path::new(p).join("template/cache"))
            })
            .flatten()
    }
}

/// The whole storage.cfg.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageCfg {
    /// Sections in file order.
    pub storages: Vec<Storage>,
}

impl StorageCfg {
    /// Parse the section-config text. Unparsable lines are skipped.
    pub fn parse(text: &str) -> StorageCfg {
        let mut cfg = StorageCfg::default();
        let mut cur: Option<Storage> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                if let Some(s) = cur.take() {
                    cfg.storages.push(s);
                }
                continue;
            }
            if line.trim_start().starts_with('#') {
                continue;
            }
            if line.starts_with(char::is_whitespace) {
                if let Some(s) = cur.as_mut() {
                    let l = line.trim();
                    let (k, v) = match l.split_once(char::is_whitespace) {
                        Some((k, v)) => (k, v.trim()),
                        None => (l, ""),
                    };
                    s.props.push((k.to_string(), v.to_string()));
                }
                continue;
            }
            if let Some(s) = cur.take() {
                cfg.storages.push(s);
            }
            if let Some((kind, id)) = line.split_once(':') {
                cur = Some(Storage {
                    id: id.trim().to_string(),
                    kind: kind.trim().to_string(),
                    props: Vec::new(),
                });
            }
        }
        if let Some(s) = cur.take() {
            cfg.storages.push(s);
        }
        cfg
    }

    /// Serialise (sections separated by a blank line, tab-indented properties).
    pub fn write_string(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.storages.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!("{}: {}\n", s.kind, s.id));
            for (k, v) in &s.props {
                if v.is_empty() {
                    out.push_str(&format!("\t{k}\n"));
                } else {
                    out.push_str(&format!("\t{k} {v}\n"));
                }
            }
        }
        out
    }

    /// Load `<root>/etc/pve/storage.cfg` (missing file = no storages).
    pub fn load(node: &Node) -> Result<StorageCfg> {
        let p = node.storage_cfg();
        match fs::read_to_string(&p) {
            Ok(t) => Ok(Self::parse(&t)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(StorageCfg::default()),
            Err(e) => Err(PveError::io("read", p, e)),
        }
    }

    /// Write it back atomically.
    pub fn store(&self, node: &Node) -> Result<()> {
        crate::conf::write_atomic(&node.storage_cfg(), self.write_string().as_bytes(), 0o640)
    }

    /// The default config `pve-sandbox up` writes.
    pub fn default_for(node: &Node) -> StorageCfg {
        StorageCfg {
            storages: vec![
                Storage {
                    id: "local".into(),
                    kind: "dir".into(),
                    props: vec![
                        ("path".into(), node.var_lib_vz().display().to_string()),
                        ("content".into(), "backup,iso,vztmpl".into()),
                    ],
                },
                Storage {
                    id: "local-lvm".into(),
                    kind: "lvmthin".into(),
                    props: vec![
                        ("thinpool".into(), "data".into()),
                        ("vgname".into(), "pve".into()),
                        ("content".into(), "images,rootdir".into()),
                    ],
                },
            ],
        }
    }

    /// A storage by id.
    pub fn get(&self, id: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.id == id)
    }

    /// `storage 'x' does not exist`.
    pub fn require(&self, id: &str) -> Result<&Storage> {
        self.get(id)
            .ok_or_else(|| PveError::die(format!("storage '{id}' does not exist")))
    }

    /// Exists, is enabled and is available on this node (PVE's texts).
    pub fn check_enabled(&self, node: &Node, id: &str) -> Result<&Storage> {
        let s = self.require(id)?;
        if s.disabled() {
            return Err(PveError::die(format!("storage '{id}' is disabled")));
        }
        if let Some(nodes) = s.nodes() {
            if !nodes.iter().any(|n| n == node.name()) {
                return Err(PveError::die(format!(
                    "storage '{id}' is not available on node '{}'",
                    node.name()
                )));
            }
        }
        Ok(s)
    }

    /// For `pct create --storage/--rootfs`: enabled and with `rootdir` content,
    /// else the 400 `storage: storage 'X' does not support container directories`.
    pub fn check_rootdir(&self, node: &Node, id: &str) -> Result<&Storage> {
        let s = self.check_enabled(node, id)?;
        if !s.has_content("rootdir") {
            return Err(PveError::param(
                "storage",
                format!("storage '{id}' does not support container directories"),
            ));
        }
        Ok(s)
    }
}

/// Split `storage:volname`, or `unable to parse volume ID '<volid>'`.
pub fn parse_volid(volid: &str) -> Result<(&str, &str)> {
    let err = || PveError::die(format!("unable to parse volume ID '{volid}'"));
    let (s, v) = volid.split_once(':').ok_or_else(err)?;
    let ok_id = s.len() >= 2
        && s.chars()
            .next()
            .map(|c| c.is_ascii_alphabetic())
            .unwrap_or(false)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok_id || v.is_empty() {
        return Err(err());
    }
    Ok((s, v))
}

/// The owner vmid encoded in a CT/VM volume name (`vm-101-disk-0`, `101/vm-101-disk-0.raw`).
pub fn volname_vmid(volname: &str) -> Option<u32> {
    let base = volname.rsplit('/').next().unwrap_or(volname);
    let rest = base
        .strip_prefix("vm-")
        .or_else(|| base.strip_prefix("base-"))
        .or_else(|| base.strip_prefix("subvol-"))?;
    rest.split('-').next()?.parse().ok()
}

/// The absolute path of a volume (a directory for CT volumes, a file otherwise).
pub fn path(node: &Node, cfg: &StorageCfg, volid: &str) -> Result<PathBuf> {
    let (sid, volname) = parse_volid(volid)?;
    let s = cfg.require(sid)?;
    match s.kind.as_str() {
        "dir" => {
            let base = s
                .base_path(node)
                .ok_or_else(|| PveError::die(format!("storage '{sid}' has no path")))?;
            let bad =
                || PveError::die(format!("unable to parse directory volume name '{volname}'"));
            if volname.contains("..") {
                return Err(bad());
            }
            let (kind, rest) = volname.split_once('/').ok_or_else(bad)?;
            let p = match kind {
                "vztmpl" => base.join("template/cache").join(rest),
                "iso" => base.join("template/iso").join(rest),
                "backup" => base.join("dump").join(rest),
                "snippets" => base.join("snippets").join(rest),
                "import" => base.join("import").join(rest),
                n if n.parse::<u32>().is_ok() && volname_vmid(rest).is_some() => {
                    base.join("images").join(n).join(rest)
                }
                _ => return Err(bad()),
            };
            Ok(p)
        }
        "lvmthin" => {
            if volname.contains('/') || volname_vmid(volname).is_none() {
                return Err(PveError::die(format!(
                    "unable to parse lvm volume name '{volname}'"
                )));
            }
            Ok(node.data_dir().join(sid).join(volname))
        }
        other => Err(PveError::die(format!(
            "storage type '{other}' is not emulated by the sandbox"
        ))),
    }
}

/// Allocate a new CT volume (an empty directory) for `vmid` on `storeid` and
/// return its volid. `size` (bytes) is only recorded by the caller.
pub fn alloc_ct_volume(node: &Node, cfg: &StorageCfg, storeid: &str, vmid: u32) -> Result<String> {
    let s = cfg.check_enabled(node, storeid)?;
    for n in 0..1000u32 {
        let volid = match s.kind.as_str() {
            "dir" => format!("{storeid}:{vmid}/vm-{vmid}-disk-{n}.raw"),
            "lvmthin" => format!("{storeid}:vm-{vmid}-disk-{n}"),
            other => {
                return Err(PveError::die(format!(
                    "storage type '{other}' is not emulated by the sandbox"
                )))
            }
        };
        let p = path(node, cfg, &volid)?;
        if p.exists() {
            continue;
        }
        fs::create_dir_all(&p).map_err(|e| PveError::io("create volume", &p, e))?;
        return Ok(volid);
    }
    Err(PveError::die(format!(
        "unable to allocate an image name for VM {vmid} in storage '{storeid}'"
    )))
}

/// Delete a volume and (for lvmthin) its snapshots.
pub fn free_volume(node: &Node, cfg: &StorageCfg, volid: &str) -> Result<()> {
    let p = path(node, cfg, volid)?;
    remove_path(&p)?;
    let (sid, volname) = parse_volid(volid)?;
    if cfg.get(sid).map(|s| s.kind == "lvmthin").unwrap_or(false) {
        let dir = node.data_dir().join(sid);
        let prefix = format!("snap_{volname}_");
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_path(&e.path())?;
                }
            }
        }
    } else if let Some(parent) = p.parent() {
        // drop an empty images/<vmid> dir
        let _ = fs::remove_dir(parent);
    }
    Ok(())
}

fn remove_path(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(|e| PveError::io("remove", p, e)),
        Ok(_) => fs::remove_file(p).map_err(|e| PveError::io("remove", p, e)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PveError::io("stat", p, e)),
    }
}

/// CT/VM volumes on one storage, optionally only those of `vmid`: `(volid, vmid, path)`.
pub fn list_guest_volumes(
    node: &Node,
    s: &Storage,
    vmid: Option<u32>,
) -> Result<Vec<(String, u32, PathBuf)>> {
    let mut out = Vec::new();
    let push = |out: &mut Vec<(String, u32, PathBuf)>, volid: String, path: PathBuf, v: u32| {
        if vmid.map(|w| w == v).unwrap_or(true) {
            out.push((volid, v, path));
        }
    };
    match s.kind.as_str() {
        "lvmthin" => {
            let dir = node.data_dir().join(&s.id);
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with("snap_") {
                        continue;
                    }
                    if let Some(v) = volname_vmid(&name) {
                        push(&mut out, format!("{}:{name}", s.id), e.path(), v);
                    }
                }
            }
        }
        "dir" => {
            if let Some(base) = s.base_path(node) {
                if let Ok(rd) = fs::read_dir(base.join("images")) {
                    for d in rd.flatten() {
                        let dname = d.file_name().to_string_lossy().into_owned();
                        if dname.parse::<u32>().is_err() {
                            continue;
                        }
                        if let Ok(rd2) = fs::read_dir(d.path()) {
                            for e in rd2.flatten() {
                                let name = e.file_name().to_string_lossy().into_owned();
                                if let Some(v) = volname_vmid(&name) {
                                    push(&mut out, format!("{}:{dname}/{name}", s.id), e.path(), v);
                                }
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out.sort_by_key(|a| a.0.to_lowercase());
    Ok(out)
}

/// Usage of the file system backing `s`, in KiB: `(total, used, avail)`.
/// Uses the nearest existing ancestor of the backing path.
#[allow(clippy::unnecessary_cast)] // fsblkcnt_t/c_ulong differ per platform
pub fn status_kib(node: &Node, s: &Storage) -> Option<(u64, u64, u64)> {
    let mut p = s.base_path(node)?;
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let st = nix::sys::statvfs::statvfs(&p).ok()?;
    let frsize = st.fragment_size() as u64;
    let total = st.blocks() as u64 * frsize / 1024;
    let avail = st.blocks_available() as u64 * frsize / 1024;
    let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * frsize / 1024;
    Some((total, used, avail))
}

/// Bytes used under a path (`du -sb`; 0 on error).
pub fn du_bytes(p: &Path) -> u64 {
    Command::new("du")
        .arg("-sb")
        .arg(p)
        .env("LC_ALL", "C")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The directory holding snapshot `snap` of an lvmthin volume.
pub fn snap_path(node: &Node, volid: &str, snap: &str) -> Result<PathBuf> {
    let (sid, volname) = parse_volid(volid)?;
    Ok(node
        .data_dir()
        .join(sid)
        .join(format!("snap_{volname}_{snap}")))
}

fn require_snapshot_support(cfg: &StorageCfg, volid: &str) -> Result<()> {
    let (sid, _) = parse_volid(volid)?;
    if !cfg.require(sid)?.supports_snapshots() {
        return Err(PveError::die("snapshot feature is not available"));
    }
    Ok(())
}

/// Whether every given volume supports snapshots.
pub fn all_support_snapshots(cfg: &StorageCfg, volids: &[String]) -> bool {
    volids
        .iter()
        .all(|v| require_snapshot_support(cfg, v).is_ok())
}

fn cp_a(from: &Path, to: &Path) -> Result<()> {
    let mut cmd = Command::new("cp");
    cmd.arg("-a")
        .arg("--reflink=auto")
        .arg("-T")
        .arg(from)
        .arg(to);
    crate::util::run_capture(&mut cmd).map(|_| ())
}

/// Take a snapshot of a volume (copy of the directory).
pub fn volume_snapshot(node: &Node, cfg: &StorageCfg, volid: &str, snap: &str) -> Result<()> {
    require_snapshot_support(cfg, volid)?;
    let src = path(node, cfg, volid)?;
    let dst = snap_path(node, volid, snap)?;
    remove_path(&dst)?;
    cp_a(&src, &dst)
}

/// Roll a volume back to a snapshot (the snapshot is kept).
pub fn volume_snapshot_rollback(
    node: &Node,
    cfg: &StorageCfg,
    volid: &str,
    snap: &str,
) -> Result<()> {
    require_snapshot_support(cfg, volid)?;
    let vol = path(node, cfg, volid)?;
    let src = snap_path(node, volid, snap)?;
    if !src.exists() {
        return Err(PveError::die(format!(
            "snapshot '{snap}' of volume '{volid}' does not exist"
        )));
    }
    let tmp = vol.with_extension("rollback-old");
    remove_path(&tmp)?;
    fs::rename(&vol, &tmp).map_err(|e| PveError::io("rename", &vol, e))?;
    if let Err(e) = cp_a(&src, &vol) {
        let _ = remove_path(&vol);
        let _ = fs::rename(&tmp, &vol);
        return Err(e);
    }
    remove_path(&tmp)
}

/// Delete a volume snapshot (missing is fine).
pub fn volume_snapshot_delete(
    node: &Node,
    cfg: &StorageCfg,
    volid: &str,
    snap: &str,
) -> Result<()> {
    require_snapshot_support(cfg, volid)?;
    remove_path(&snap_path(node, volid, snap)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_write() {
        let t = "dir: local\n\tpath /x\n\tcontent iso,vztmpl,backup\n\nlvmthin: local-lvm\n\tthinpool data\n\tvgname pve\n\tcontent rootdir,images\n\tdisable\n";
        let c = StorageCfg::parse(t);
        assert_eq!(c.storages.len(), 2);
        assert!(c.get("local-lvm").map(|s| s.disabled()).unwrap_or(false));
        assert!(c
            .get("local")
            .map(|s| s.has_content("vztmpl"))
            .unwrap_or(false));
        assert_eq!(c.write_string(), t);
    }

    #[test]
    fn volids() {
        assert_eq!(volname_vmid("vm-101-disk-0"), Some(101));
        assert_eq!(volname_vmid("101/vm-101-disk-2.raw"), Some(101));
        assert!(parse_volid("nocolon").is_err());
    }
}
