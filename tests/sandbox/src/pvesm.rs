//! `pvesm`: storage listing, status, paths, freeing, config extraction and
//! backup pruning (pve-cli.md §7, §8; pve-storage `PVE/CLI/pvesm.pm`).
//!
//! Emulated: `list`, `status`, `path`, `free`, `extractconfig`,
//! `prune-backups`. Everything else (`add`, `set`, `remove`, `alloc`,
//! `scan`, `export`, `import`, ...) answers with a plain error. Volumes come
//! from the sandbox storages ([`crate::storage`]): file content of `dir`
//! storages (`template/cache`, `template/iso`, `dump`, `snippets`) and CT
//! volumes of `dir` and `lvmthin` stand-ins.

pub mod table;

use std::fs;
use std::path::Path;

use crate::archive;
use crate::cli::{CmdDef, OptDef, OptType};
use crate::conf;
use crate::error::{PveError, Result};
use crate::node::Node;
use crate::prune::{self, KeepOptions, Mark, PruneEntry, KEEP_ORDER};
use crate::storage::{self, Storage, StorageCfg};
use crate::task;
use crate::util::parse_size;
use crate::vzdump::{self, naming};

use table::{ContentRow, PruneRow, StatusRow};

const CONTENT_TYPES: &[&str] = &[
    "images", "rootdir", "vztmpl", "iso", "backup", "snippets", "import",
];
const U: i64 = i64::MAX;

static LIST: CmdDef<'static> = CmdDef {
    usage: "pvesm list <storage> [OPTIONS]",
    args: &[("storage", OptType::Str)],
    opts: &[
        OptDef::new("content", OptType::Enum(CONTENT_TYPES)),
        OptDef::new("vmid", OptType::VmId),
    ],
    extra_args: false,
};
static STATUS: CmdDef<'static> = CmdDef {
    usage: "pvesm status  [OPTIONS]",
    args: &[],
    opts: &[
        OptDef::new("content", OptType::Enum(CONTENT_TYPES)),
        OptDef::new("enabled", OptType::Bool),
        OptDef::new("format", OptType::Bool),
        OptDef::new("storage", OptType::Str),
        OptDef::new("target", OptType::Str),
    ],
    extra_args: false,
};
static PATH: CmdDef<'static> = CmdDef {
    usage: "pvesm path <volume>",
    args: &[("volume", OptType::Str)],
    opts: &[],
    extra_args: false,
};
static FREE: CmdDef<'static> = CmdDef {
    usage: "pvesm free <volume> [OPTIONS]",
    args: &[("volume", OptType::Str)],
    opts: &[
        OptDef::new("delay", OptType::Int(1, 30)),
        OptDef::new("storage", OptType::Str),
    ],
    extra_args: false,
};
static EXTRACTCONFIG: CmdDef<'static> = CmdDef {
    usage: "pvesm extractconfig <volume>",
    args: &[("volume", OptType::Str)],
    opts: &[],
    extra_args: false,
};
static PRUNE: CmdDef<'static> = CmdDef {
    usage: "pvesm prune-backups <storage> [OPTIONS]",
    args: &[("storage", OptType::Str)],
    opts: &[
        OptDef::new("dry-run", OptType::Bool),
        OptDef::new("keep-all", OptType::Bool),
        OptDef::new("keep-daily", OptType::Int(0, U)),
        OptDef::new("keep-hourly", OptType::Int(0, U)),
        OptDef::new("keep-last", OptType::Int(0, U)),
        OptDef::new("keep-monthly", OptType::Int(0, U)),
        OptDef::new("keep-weekly", OptType::Int(0, U)),
        OptDef::new("keep-yearly", OptType::Int(0, U)),
        OptDef::new("type", OptType::Enum(&["qemu", "lxc"])),
        OptDef::new("vmid", OptType::VmId),
    ],
    extra_args: false,
};

const SUBCOMMANDS: &[&str] = &[
    "add",
    "alloc",
    "apiinfo",
    "cifsscan",
    "export",
    "extractconfig",
    "free",
    "help",
    "import",
    "iscsiscan",
    "list",
    "lvmscan",
    "lvmthinscan",
    "nfsscan",
    "path",
    "prune-backups",
    "remove",
    "scan",
    "set",
    "status",
    "zfsscan",
];

/// `pvesm` entry point.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let Some(sub) = args.first() else {
        return Err(PveError::bad_request("no command specified"));
    };
    let rest = &args[1..];
    match sub.as_str() {
        "list" => list(node, rest),
        "status" => status(node, rest),
        "path" => path(node, rest),
        "free" => free(node, rest),
        "extractconfig" => extractconfig(node, rest),
        "prune-backups" => prune_backups(node, rest),
        s if SUBCOMMANDS.contains(&s) => Err(PveError::die(format!(
            "pvesm {s}: not emulated by the sandbox"
        ))),
        s => Err(PveError::bad_request(format!(
            "unknown command 'pvesm {s}'"
        ))),
    }
}

/// One backup file on a storage, as `list_volumes` reports it.
#[derive(Debug, Clone)]
struct BackupFile {
    volid: String,
    path: std::path::PathBuf,
    format: String,
    size: u64,
    ctime: i64,
    vmid: Option<u32>,
    subtype: String,
    std: bool,
    protected: bool,
}

fn file_ctime(p: &Path) -> i64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).map(|m| m.ctime()).unwrap_or(0)
}

/// Backups in a dir storage's `dump` dir (`$BACKUP_EXT_RE_2` names).
fn list_backups(s: &Storage, vmid: Option<u32>) -> Vec<BackupFile> {
    let mut out = Vec::new();
    let Some(dir) = s.dump_dir() else {
        return out;
    };
    let Ok(rd) = fs::read_dir(&dir) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ext) = backup_ext(&name) else {
            continue;
        };
        if let Some(v) = vmid {
            if !name.contains(&format!("-{v}-")) {
                continue;
            }
        }
        let info = naming::archive_info(&name);
        let std = info.as_ref().and_then(|i| i.std.clone());
        let path = dir.join(&name);
        let protected = Path::new(&naming::protection_file(&path.display().to_string())).exists();
        out.push(BackupFile {
            volid: format!("{}:backup/{name}", s.id),
            format: ext.to_string(),
            size: meta.len(),
            ctime: std
                .as_ref()
                .map(|s| s.ctime)
                .unwrap_or_else(|| file_ctime(&path)),
            vmid: vmid.or_else(|| naming::listing_vmid(&name, ext)),
            subtype: info
                .as_ref()
                .map(|i| i.guest_type.clone())
                .unwrap_or_else(|| "unknown".into()),
            std: std.is_some(),
            protected,
            path,
        });
    }
    // the API's order: by volid, case-insensitive
    out.sort_by_key(|b| b.volid.to_lowercase());
    out
}

/// The `$BACKUP_EXT_RE_2` extension of any file name (not only vzdump ones).
fn backup_ext(name: &str) -> Option<&'static str> {
    const EXTS: [&str; 11] = [
        "tgz", "tar", "vma", "tar.gz", "vma.gz", "tar.lzo", "tar.zst", "tar.bz2", "vma.lzo",
        "vma.zst", "vma.bz2",
    ];
    EXTS.into_iter().find(|e| {
        name.strip_suffix(e)
            .and_then(|s| s.strip_suffix('.'))
            .is_some_and(|s| !s.is_empty())
    })
}

/// Files of a dir storage subdirectory matching `filter`, as (name, size).
fn dir_files(dir: &Path, filter: impl Fn(&str) -> bool) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if filter(&name) {
                out.push((name, meta.len()));
            }
        }
    }
    out
}

/// `.tar.{gz,xz,zst,bz2}` (PVE 9 also plain `.tar`): the `t<comp>` format.
pub fn template_format(name: &str, pve_major: u8) -> Option<String> {
    for c in ["gz", "xz", "zst", "bz2"] {
        if name.to_ascii_lowercase().ends_with(&format!(".tar.{c}")) {
            return Some(format!("t{c}"));
        }
    }
    if pve_major >= 9 && name.ends_with(".tar") {
        return Some("tar".into());
    }
    None
}

/// `PVE::Storage::volume_list` for one storage.
fn volume_list(
    node: &Node,
    s: &Storage,
    vmid: Option<u32>,
    content: Option<&str>,
) -> Result<Vec<ContentRow>> {
    let wanted: Vec<&str> = CONTENT_TYPES
        .iter()
        .copied()
        .filter(|c| content.is_none_or(|w| w == *c) && s.has_content(c))
        .collect();
    let mut rows = Vec::new();
    if wanted.contains(&"images") || wanted.contains(&"rootdir") {
        for (volid, owner, path) in storage::list_guest_volumes(node, s, vmid)? {
            let is_ct = node.conf_path(owner).exists();
            let ctype = if is_ct { "rootdir" } else { "images" };
            if !wanted.contains(&ctype) {
                continue;
            }
            let size =
                configured_size(node, owner, &volid).unwrap_or_else(|| storage::du_bytes(&path));
            rows.push(ContentRow {
                volid,
                format: "raw".into(),
                content: ctype.into(),
                size: Some(size),
                vmid: Some(owner),
            });
        }
    }
    if let Some(base) = s.base_path(node).filter(|_| s.is_dir()) {
        if wanted.contains(&"vztmpl") && vmid.is_none() {
            for (name, size) in dir_files(&base.join("template/cache"), |n| {
                template_format(n, node.pve_major()).is_some()
            }) {
                rows.push(ContentRow {
                    volid: format!("{}:vztmpl/{name}", s.id),
                    format: template_format(&name, node.pve_major()).unwrap_or_default(),
                    content: "vztmpl".into(),
                    size: Some(size),
                    vmid: None,
                });
            }
        }
        if wanted.contains(&"iso") && vmid.is_none() {
            for (name, size) in dir_files(&base.join("template/iso"), |n| {
                let l = n.to_ascii_lowercase();
                l.ends_with(".iso") || l.ends_with(".img")
            }) {
                rows.push(ContentRow {
                    volid: format!("{}:iso/{name}", s.id),
                    format: "iso".into(),
                    content: "iso".into(),
                    size: Some(size),
                    vmid: None,
                });
            }
        }
        if wanted.contains(&"snippets") && vmid.is_none() {
            for (name, size) in dir_files(&base.join("snippets"), |_| true) {
                rows.push(ContentRow {
                    volid: format!("{}:snippets/{name}", s.id),
                    format: "snippet".into(),
                    content: "snippets".into(),
                    size: Some(size),
                    vmid: None,
                });
            }
        }
        if wanted.contains(&"backup") {
            for b in list_backups(s, vmid) {
                rows.push(ContentRow {
                    volid: b.volid,
                    format: b.format,
                    content: "backup".into(),
                    size: Some(b.size),
                    vmid: b.vmid,
                });
            }
        }
    }
    rows.sort_by_key(|r| r.volid.to_lowercase());
    Ok(rows)
}

/// The `size=` a CT config records for a volume (bytes).
fn configured_size(node: &Node, vmid: u32, volid: &str) -> Option<u64> {
    let c = conf::load(node, vmid).ok()?;
    for (key, v) in c.main.props.iter() {
        if !(key == "rootfs" || key.starts_with("mp") || key.starts_with("unused")) {
            continue;
        }
        let mut parts = v.split(',');
        if parts.next()? != volid {
            continue;
        }
        for p in parts {
            if let Some(sz) = p.strip_prefix("size=") {
                return parse_size(sz);
            }
        }
    }
    None
}

fn list(node: &Node, args: &[String]) -> Result<()> {
    let a = LIST.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    let s = cfg.check_enabled(node, a.arg("storage"))?;
    let vmid = a.opt("vmid").and_then(|v| v.parse().ok());
    let rows = volume_list(node, s, vmid, a.opt("content"))?;
    print!("{}", table::format_list(&rows));
    Ok(())
}

fn status(node: &Node, args: &[String]) -> Result<()> {
    let a = STATUS.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    if let Some(id) = a.opt("storage") {
        cfg.require(id)?;
    }
    let mut rows = Vec::new();
    for s in &cfg.storages {
        if a.opt("storage").is_some_and(|id| id != s.id) {
            continue;
        }
        if a.opt("content").is_some_and(|c| !s.has_content(c)) {
            continue;
        }
        let enabled = !s.disabled() && s.nodes().is_none_or(|n| n.iter().any(|x| x == node.name()));
        if a.flag("enabled") && !enabled {
            continue;
        }
        let usage = if enabled {
            storage::status_kib(node, s)
        } else {
            None
        };
        let (total, used, avail) = usage.unwrap_or((0, 0, 0));
        rows.push(StatusRow {
            storage: s.id.clone(),
            kind: s.kind.clone(),
            active: usage.is_some(),
            enabled,
            total: total * 1024,
            used: used * 1024,
            avail: avail * 1024,
        });
    }
    print!("{}", table::format_status(&rows, node.pve_major()));
    Ok(())
}

fn path(node: &Node, args: &[String]) -> Result<()> {
    let a = PATH.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    let p = storage::path(node, &cfg, a.arg("volume"))?;
    println!("{}", p.display());
    Ok(())
}

fn free(node: &Node, args: &[String]) -> Result<()> {
    let a = FREE.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    let volid = a.arg("volume");
    let (sid, volname) = storage::parse_volid(volid)?;
    cfg.check_enabled(node, sid)?;
    let p = storage::path(node, &cfg, volid)?;
    if volname.starts_with("backup/") {
        return vzdump::archive_remove(&p);
    }
    if volname.starts_with("vztmpl/")
        || volname.starts_with("iso/")
        || volname.starts_with("snippets/")
    {
        return match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) => Err(PveError::die(format!(
                "unable to delete '{}' - {e}",
                p.display()
            ))),
        };
    }
    if let Some(owner) = storage::volname_vmid(volname) {
        if let Ok(c) = conf::load(node, owner) {
            if c.main.volumes().iter().any(|(_, v)| v == volid) {
                return Err(PveError::die(format!(
                    "unable to delete '{volid}' - volume is still in use (referenced by CT {owner})"
                )));
            }
        }
    }
    task::run_worker(|_w| storage::free_volume(node, &cfg, volid))
}

/// The raw config inside a backup archive (`extract_vzdump_config_tar`).
pub fn extract_backup_config(node: &Node, volid_or_path: &str) -> Result<String> {
    let archive = if volid_or_path.starts_with('/') || !volid_or_path.contains(':') {
        std::path::PathBuf::from(volid_or_path)
    } else {
        let cfg = StorageCfg::load(node)?;
        storage::path(node, &cfg, volid_or_path)?
    };
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = naming::archive_info(&name).ok_or_else(|| {
        PveError::die(format!(
            "ERROR: couldn't determine archive info from '{volid_or_path}'"
        ))
    })?;
    if info.guest_type == "qemu" {
        return Err(PveError::die(
            "cannot extract the configuration of a VM backup (not emulated by the sandbox)",
        ));
    }
    if !archive.is_file() {
        return Err(PveError::die(format!(
            "ERROR: file '{}' does not exist",
            archive.display()
        )));
    }
    for member in ["./etc/vzdump/pct.conf", "./etc/vzdump/vps.conf"] {
        if let Some(bytes) = archive::read_member(&archive, member)? {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            // run_command's outfunc appends "\n" to every line.
            let mut raw = String::new();
            for line in text.lines() {
                raw.push_str(line);
                raw.push('\n');
            }
            return Ok(raw);
        }
    }
    Err(PveError::die(
        "ERROR: archive contains no configuration file",
    ))
}

fn extractconfig(node: &Node, args: &[String]) -> Result<()> {
    let a = EXTRACTCONFIG.parse(args)?;
    let raw = extract_backup_config(node, a.arg("volume"))?;
    println!("{raw}");
    Ok(())
}

fn prune_backups(node: &Node, args: &[String]) -> Result<()> {
    let a = PRUNE.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    let sid = a.arg("storage");
    let s = cfg.require(sid)?;
    let mut keep = KeepOptions::default();
    let mut any = false;
    for k in KEEP_ORDER.iter().chain(["keep-all"].iter()) {
        if let Some(v) = a.opt(k) {
            any = true;
            keep.set(k, v)
                .map_err(|e| PveError::param(*k, e.to_string()))?;
        }
    }
    if !s.has_content("backup") {
        return Err(PveError::die(format!(
            "storage '{sid}' does not support backups"
        )));
    }
    if !any {
        let p = s.prune_backups().ok_or_else(|| {
            PveError::die(format!(
                "no prune-backups options configured for storage '{sid}'"
            ))
        })?;
        keep = KeepOptions::parse(p).map_err(|e| PveError::die(e.to_string()))?;
    }
    cfg.check_enabled(node, sid)?;
    let vmid: Option<u32> = a.opt("vmid").and_then(|v| v.parse().ok());
    let want_type = a.opt("type");
    let files: Vec<BackupFile> = list_backups(s, vmid)
        .into_iter()
        .filter(|b| want_type.is_none_or(|t| t == b.subtype))
        .collect();
    let entries: Vec<PruneEntry> = files
        .iter()
        .map(|b| {
            let mark = if b.protected {
                Some(Mark::Protected)
            } else if !b.std {
                Some(Mark::Renamed)
            } else {
                None
            };
            PruneEntry {
                id: b.volid.clone(),
                ctime: b.ctime,
                backup_type: b.subtype.clone(),
                vmid: b.vmid,
                mark,
            }
        })
        .collect();
    // Protected standard names still belong to their group (they just don't count).
    let marked = prune::mark_all(entries, &keep, &vzdump::local_offset);

    if a.flag("dry-run") {
        let rows: Vec<PruneRow> = marked
            .iter()
            .map(|e| PruneRow {
                volid: e.id.clone(),
                backup_type: e.backup_type.clone(),
                vmid: e.vmid,
                ctime: e.ctime,
                mark: e.mark.unwrap_or(Mark::Keep),
            })
            .collect();
        print!("{}", table::format_prune_dry_run(&rows));
        return Ok(());
    }
    task::run_worker(|w| {
        let mut failed = false;
        for (e, b) in marked.iter().zip(files.iter()) {
            if e.mark != Some(Mark::Remove) {
                continue;
            }
            w.log(&format!("removing backup '{}'", e.id));
            if let Err(err) = vzdump::archive_remove(&b.path) {
                w.log(&format!(
                    "error when removing backup '{}' - {}",
                    e.id,
                    err.render().0
                ));
                failed = true;
            }
        }
        if failed {
            return Err(PveError::die("error pruning backups - check log"));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
    }

    #[test]
    fn formats() {
        assert_eq!(template_format("a.tar.zst", 8).as_deref(), Some("tzst"));
        assert_eq!(template_format("a.tar", 8), None);
        assert_eq!(template_format("a.tar", 9).as_deref(), Some("tar"));
        assert_eq!(backup_ext("vzdump-lxc-1-x.tar.zst"), Some("tar.zst"));
        assert_eq!(backup_ext("foo.tar"), Some("tar"));
        assert_eq!(backup_ext("foo.log"), None);
    }
}
