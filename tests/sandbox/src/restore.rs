//! `pct restore <vmid> <archive> [OPTIONS]`: `create` with `restore=1`
//! (pve-container `PVE::API2::LXC::create_vm`, `PVE::LXC::Create`).
//!
//! Before the worker: the vmid must be unused in the cluster unless
//! `--force` is given for an existing, stopped, unprotected CT; the target
//! storage must take container directories; the config is written with
//! `lock: create`. In the worker (`vzrestore`): `recovering backed-up
//! configuration from '<archive>'`, a new volume per recovered (or given)
//! rootfs on `--storage` (default `local`), the old CT's volumes are freed on
//! `--force`, `restoring '<archive>' now..`, the archive is extracted into the
//! volume (shifted for unprivileged CTs), then `merging backed-up and given
//! configuration..` merges the archive's `./etc/vzdump/pct.conf` under the
//! given options (`--unique` gives every `netN` a new MAC), and the final
//! config is written without the lock. Failures clean up the new volumes and
//! end with `unable to restore CT <vmid> - <reason>`.

use std::fs;
use std::path::PathBuf;

use crate::archive::{self, Compression, IdMap};
use crate::cli::{CmdDef, OptDef, OptType};
use crate::conf::{self, CtConfig, PropString, Section};
use crate::error::{PveError, Result};
use crate::lock;
use crate::lxc;
use crate::node::Node;
use crate::pct::{self, new_volume_request};
use crate::pvesm;
use crate::storage::{self, StorageCfg};
use crate::task::{self, Worker};
use crate::util::parse_size;

/// Parameters that are not CT config keys.
const NON_CONFIG: &[&str] = &[
    "storage",
    "force",
    "unique",
    "ignore-unpack-errors",
    "bwlimit",
    "pool",
    "password",
    "ssh-public-keys",
    "start",
    "debug",
    "rootfs",
    "unprivileged",
    "ha-managed",
];

/// `pct restore` entry point (`args` without the `restore` word).
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let mut opts = pct::config_options(node);
    opts.extend([
        OptDef::new("storage", OptType::Str),
        OptDef::new("force", OptType::Bool),
        OptDef::new("unique", OptType::Bool),
        OptDef::new("ignore-unpack-errors", OptType::Bool),
        OptDef::new("bwlimit", OptType::Number),
        OptDef::new("pool", OptType::Str),
        OptDef::new("password", OptType::Str),
        OptDef::new("ssh-public-keys", OptType::Str),
        OptDef::new("start", OptType::Bool),
    ]);
    if node.pve_major() >= 9 {
        opts.push(OptDef::new("ha-managed", OptType::Bool));
    }
    let def = CmdDef {
        usage: "pct restore <vmid> <ostemplate> [OPTIONS]",
        args: &[("vmid", OptType::VmId), ("ostemplate", OptType::Str)],
        opts: &opts,
        extra_args: false,
    };
    let a = def.parse(args)?;
    let vmid = a.vmid();
    let archive_spec = a.arg("ostemplate").to_string();
    let force = a.flag("force");
    let unique = a.flag("unique");
    let cfg = StorageCfg::load(node)?;
    let same_exists = node.conf_path(vmid).exists();

    if !(same_exists && force) {
        if let Some((owner, kind)) = node.vmid_owner(vmid)? {
            return Err(PveError::die(format!(
                "{kind} {vmid} already exists on node '{owner}'"
            )));
        }
    } else {
        if lxc::is_running(node, vmid) {
            return Err(PveError::die("can't overwrite running container"));
        }
        let old = conf::load(node, vmid)?;
        if old.main.flag("protection") {
            return Err(PveError::die(format!(
                "unable to restore CT {vmid} - protection mode enabled"
            )));
        }
    }
    if let Some(pool) = a.opt("pool") {
        return Err(PveError::die(format!("pool '{pool}' does not exist")));
    }
    let storage_id = a.opt("storage").unwrap_or("local").to_string();

    // The archive: `-` (stdin, needs --rootfs) or a volid/path.
    let archive_path: Option<PathBuf> = if archive_spec == "-" {
        if a.opt("rootfs").is_none() {
            return Err(PveError::die("restore from pipe requires rootfs parameter"));
        }
        None
    } else {
        Some(pct::resolve_archive(node, &cfg, &archive_spec)?)
    };

    // Storages for new volumes must exist and take container directories.
    let given_rootfs = match a.opt("rootfs") {
        Some(r) => Some(
            conf::parse_prop(&conf::ROOTFS_SCHEMA, "rootfs", r)
                .map_err(|e| PveError::param("rootfs", e).with_usage(def.usage))?,
        ),
        None => None,
    };
    match &given_rootfs {
        Some(r) => {
            let vol = r.get("volume").unwrap_or_default();
            let sid = new_volume_request(vol, &storage_id)
                .map(|(s, _)| s)
                .or_else(|| storage::parse_volid(vol).ok().map(|(s, _)| s.to_string()))
                .unwrap_or_else(|| storage_id.clone());
            cfg.check_rootdir(node, &sid)
                .map_err(|e| e.with_usage(def.usage))?;
        }
        None => {
            cfg.check_rootdir(node, &storage_id)
                .map_err(|e| e.with_usage(def.usage))?;
        }
    }
    if let Some(k) = a.opts.keys().find(|k| k.starts_with("mp")) {
        return Err(
            PveError::param(k.as_str(), "mount points are not emulated by the sandbox")
                .with_usage(def.usage),
        );
    }

    // The given (non-disk) configuration.
    let given = pct::given_config(node, &a, |k| NON_CONFIG.contains(&k))?;
    let unprivileged_opt = a.opt("unprivileged").map(|v| v == "1");

    // create_and_lock_config (5 s timeout)
    {
        let _l = lock::lock_file(&node.config_lock_path(vmid), lock::CREATE_LOCK_TIMEOUT).map_err(
            |e| PveError::die(format!("unable to restore CT {vmid} - {}", e.render().0)),
        )?;
        let mut c = if same_exists {
            conf::load(node, vmid)?
        } else {
            CtConfig::default()
        };
        lock::check_lock(&c.main).map_err(|e| {
            PveError::die(format!("unable to restore CT {vmid} - {}", e.render().0))
        })?;
        c.main.set("lock", "create");
        conf::store(node, vmid, &c)?;
    }

    let start_after = a.flag("start");
    let ignore_unpack = a.flag("ignore-unpack-errors");
    task::run_worker(|w| {
        let mut job = Restore {
            node,
            cfg: &cfg,
            vmid,
            archive_spec: &archive_spec,
            archive_path: archive_path.clone(),
            storage_id: &storage_id,
            given: given.clone(),
            given_rootfs: given_rootfs.clone(),
            unprivileged_opt,
            unique,
            ignore_unpack,
            new_volumes: Vec::new(),
            destroy_config_on_error: !same_exists,
        };
        match job.run(w) {
            Ok(()) => {}
            Err(e) => {
                for v in &job.new_volumes {
                    let _ = storage::free_volume(node, &cfg, v);
                }
                if job.destroy_config_on_error {
                    let _ = fs::remove_file(node.conf_path(vmid));
                } else {
                    let _ = lock::remove_lock(node, vmid, Some("create"));
                }
                let text = match e {
                    PveError::TaskFailed(m) => m,
                    other => other.render().0,
                };
                return Err(PveError::TaskFailed(format!(
                    "unable to restore CT {vmid} - {text}"
                )));
            }
        }
        if start_after {
            let c = conf::load(node, vmid)?;
            lxc::start(node, vmid, &c.main, &cfg)?;
        }
        Ok(())
    })
}

/// The state of one restore worker.
struct Restore<'a> {
    node: &'a Node,
    cfg: &'a StorageCfg,
    vmid: u32,
    archive_spec: &'a str,
    archive_path: Option<PathBuf>,
    storage_id: &'a str,
    given: Section,
    given_rootfs: Option<PropString>,
    unprivileged_opt: Option<bool>,
    unique: bool,
    ignore_unpack: bool,
    new_volumes: Vec<String>,
    destroy_config_on_error: bool,
}

impl Restore<'_> {
    fn run(&mut self, w: &mut Worker) -> Result<()> {
        let node = self.node;
        let vmid = self.vmid;
        if lxc::is_running(node, vmid) {
            return Err(PveError::die("can't overwrite running container"));
        }
        let old_conf = conf::load(node, vmid)?;
        let mut conf = self.given.clone();
        if self.unprivileged_opt == Some(true) {
            conf.set("unprivileged", "1");
        }

        // recover_config
        let mut orig_rootfs: Option<PropString> = None;
        if let Some(path) = &self.archive_path {
            w.log(&format!(
                "recovering backed-up configuration from '{}'",
                self.archive_spec
            ));
            let raw = pvesm::extract_backup_config(node, &path.display().to_string())?;
            let (orig, _) = CtConfig::parse(vmid, &raw);
            let orig = orig.main;
            conf.lxc = orig.lxc.clone();
            if self.unprivileged_opt.is_none() && orig.unprivileged() {
                conf.set("unprivileged", "1");
            }
            orig_rootfs = orig.rootfs();
        }

        // The rootfs volume to create: given, or the backed-up one on --storage.
        let (alloc_storage, size_bytes, mut rootfs) = match &self.given_rootfs {
            Some(r) => {
                let vol = r.get("volume").unwrap_or_default().to_string();
                let (sid, gib) = new_volume_request(&vol, self.storage_id).ok_or_else(|| {
                    PveError::die(
                        "the sandbox can only restore into new volumes (use STORAGE:SIZE_IN_GiB)",
                    )
                })?;
                (sid, (gib * (1u64 << 30) as f64) as u64, r.clone())
            }
            None => {
                let r = orig_rootfs.ok_or_else(|| {
                    PveError::die(
                        "rootfs configuration could not be recovered, please check and specify manually!",
                    )
                })?;
                let vol = r.get("volume").unwrap_or_default();
                if vol.starts_with('/') {
                    return Err(PveError::die(
                        "restoring rootfs to bind mount is only possible by specifying -rootfs manually!",
                    ));
                }
                let size = r.get("size").and_then(parse_size).ok_or_else(|| {
                    PveError::die("unable to detect disk size - please specify rootfs (size)")
                })?;
                (self.storage_id.to_string(), size, r)
            }
        };

        // from here on a failure removes the config
        self.destroy_config_on_error = true;
        let volid = storage::alloc_ct_volume(node, self.cfg, &alloc_storage, vmid)?;
        self.new_volumes.push(volid.clone());
        if let Ok((sid, volname)) = storage::parse_volid(&volid) {
            if self.cfg.get(sid).is_some_and(|s| s.kind == "lvmthin") {
                w.log(&format!("  Logical volume \"{volname}\" created."));
            }
        }
        rootfs.set("volume", volid.clone());
        rootfs.set("size", conf::format_size(size_bytes));
        conf.set("rootfs", rootfs.print(&conf::ROOTFS_SCHEMA));

        // the old CT's volumes go (we always hold the 'create' lock)
        if old_conf.main.props.len() > 1 {
            pct::destroy_volumes(node, self.cfg, &old_conf, w);
        }

        let root = storage::path(node, self.cfg, &volid)?;
        let map = IdMap::for_ct(conf.unprivileged());
        let mut lines = Vec::new();
        let res = match &self.archive_path {
            Some(p) => {
                w.log(&format!("restoring '{}' now..", self.archive_spec));
                w.log(&format!("extracting archive '{}'", p.display()));
                archive::extract(archive::Source::Path(p), &root, map, &mut |l| {
                    lines.push(l.to_string())
                })
            }
            None => {
                w.log("extracting archive from STDIN");
                archive::extract(
                    archive::Source::Stdin(Compression::None),
                    &root,
                    map,
                    &mut |l| lines.push(l.to_string()),
                )
            }
        };
        for l in lines {
            w.log(&l);
        }
        if let Err(e) = res {
            if !self.ignore_unpack {
                return Err(e);
            }
        }

        w.log("merging backed-up and given configuration..");
        self.restore_configuration(w, &root, &mut conf)?;

        if conf.get("hostname").is_none() {
            conf.set("hostname", format!("CT{vmid}"));
        }
        if conf.get("memory").is_none() {
            conf.set("memory", "512");
        }
        if conf.get("swap").is_none() {
            conf.set("swap", "512");
        }
        conf.remove("lock");
        let _l = lock::lock_config(node, vmid, lock::LOCK_TIMEOUT)?;
        let c = CtConfig {
            main: conf,
            ..Default::default()
        };
        conf::store(node, vmid, &c)
    }

    /// `restore_configuration_from_etc_vzdump` + `sanitize_and_merge_config`.
    fn restore_configuration(
        &self,
        w: &mut Worker,
        root: &std::path::Path,
        conf: &mut Section,
    ) -> Result<()> {
        let cfg_fn = root.join("etc/vzdump/pct.conf");
        let fw_fn = root.join("etc/vzdump/pct.fw");
        if !cfg_fn.is_file() {
            w.log("###########################################################");
            w.log("Backup archive does not contain any configuration");
            w.log("###########################################################");
            return Ok(());
        }
        let raw = fs::read_to_string(&cfg_fn).map_err(|e| PveError::io("read", &cfg_fn, e))?;
        let (old, _) = CtConfig::parse(self.vmid, &raw);
        let old = old.main;
        for (key, value) in &old.props {
            let skip = matches!(
                key.as_str(),
                "digest" | "rootfs" | "snapshots" | "unprivileged" | "parent" | "template" | "lock"
            ) || key.starts_with("mp") && key[2..].parse::<u32>().is_ok()
                || key.starts_with("unused");
            if skip {
                continue;
            }
            if self.unique && key.starts_with("net") && key[3..].parse::<u32>().is_ok() {
                let schema = conf::net_schema(self.node);
                if let Ok(mut p) = conf::parse_prop(schema, key, value) {
                    p.set("hwaddr", crate::util::random_mac());
                    conf.set(key, p.print(schema));
                    continue;
                }
            }
            if conf.get(key).is_none() {
                conf.set(key, value.clone());
            }
        }
        if conf.lxc.is_empty() {
            conf.lxc = old.lxc.clone();
        }
        let _ = fs::remove_file(&cfg_fn);
        if let Ok(meta) = fs::symlink_metadata(&fw_fn) {
            if meta.is_file() && meta.len() > 0 {
                let dir = self.node.etc_pve().join("firewall");
                let _ = fs::create_dir_all(&dir);
                let _ = fs::copy(&fw_fn, dir.join(format!("{}.fw", self.vmid)));
            }
            let _ = fs::remove_file(&fw_fn);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_requests() {
        assert_eq!(
            new_volume_request("local-lvm:8", "local"),
            Some(("local-lvm".into(), 8.0))
        );
        assert_eq!(
            new_volume_request("4", "local"),
            Some(("local".into(), 4.0))
        );
        assert_eq!(new_volume_request("local-lvm:vm-1-disk-0", "local"), None);
        assert_eq!(parse_size("8G"), Some(8 << 30));
    }
}
