//! `pct`: the container CLI.
//!
//! Subcommands: `list`, `status`, `config`, `pending`, `create`, `start`,
//! `stop`, `shutdown`, `reboot`, `destroy`, `set`, `exec`, `push`, `pull`,
//! `snapshot`, `listsnapshot`, `rollback`, `delsnapshot`, `unlock`
//! (`restore` is dispatched to [`crate::restore`]). Output, exit codes and
//! error texts follow `/work/shared/pve-cli.md`: pre-checks `die` (stderr,
//! exit 255), parameter errors are 400s with the usage line, and the
//! long-running ones run as worker tasks ([`crate::task`]).
//!
//! Some building blocks are public for the storage engineer's `vzdump` and
//! `pct restore`: [`ct_status`], [`snapshot_create`], [`snapshot_delete`],
//! [`destroy_volumes`], [`config_options`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::archive::{self, IdMap};
use crate::cli::{Args, CmdDef, OptDef, OptType};
use crate::conf::{self, CtConfig, PropString, Section};
use crate::error::{PveError, Result};
use crate::lock::{self, check_lock};
use crate::lxc::{self, State};
use crate::node::Node;
use crate::storage::{self, StorageCfg};
use crate::task::{run_worker, Worker};

const OSTYPES: &[&str] = &[
    "alpine",
    "archlinux",
    "centos",
    "debian",
    "devuan",
    "fedora",
    "gentoo",
    "nixos",
    "opensuse",
    "ubuntu",
    "unmanaged",
];
const ARCHS: &[&str] = &["amd64", "arm64", "armhf", "i386", "riscv32", "riscv64"];

/// Options shared by `create`, `set` and `restore` (the CT config schema).
pub fn config_options(node: &Node) -> Vec<OptDef> {
    let net = conf::net_schema(node);
    let mut v = vec![
        OptDef::new("arch", OptType::Enum(ARCHS)),
        OptDef::new("cmode", OptType::Enum(&["console", "shell", "tty"])),
        OptDef::new("console", OptType::Bool),
        OptDef::new("cores", OptType::Int(1, 8192)),
        OptDef::new("cpulimit", OptType::Number),
        OptDef::new("cpuunits", OptType::Int(0, 500_000)),
        OptDef::new("debug", OptType::Bool),
        OptDef::new("description", OptType::Str),
        OptDef::indexed("dev", OptType::Str, 255),
        OptDef::new("features", OptType::Prop(&conf::FEATURES_SCHEMA)),
        OptDef::new("hookscript", OptType::Str),
        OptDef::new("hostname", OptType::DnsName),
        OptDef::new("lock", OptType::Enum(lock::LOCK_NAMES)),
        OptDef::new("memory", OptType::Int(16, i64::MAX)),
        OptDef::indexed("mp", OptType::Prop(&conf::MP_SCHEMA), 255),
        OptDef::new("nameserver", OptType::Str),
        OptDef::indexed("net", OptType::Prop(net), 31),
        OptDef::new("onboot", OptType::Bool),
        OptDef::new("ostype", OptType::Enum(OSTYPES)),
        OptDef::new("protection", OptType::Bool),
        OptDef::new("rootfs", OptType::Prop(&conf::ROOTFS_SCHEMA)),
        OptDef::new("searchdomain", OptType::Str),
        OptDef::new("startup", OptType::Prop(&conf::STARTUP_SCHEMA)),
        OptDef::new("swap", OptType::Int(0, i64::MAX)),
        OptDef::new("tags", OptType::Tags),
        OptDef::new("template", OptType::Bool),
        OptDef::new("timezone", OptType::Str),
        OptDef::new("tty", OptType::Int(0, 6)),
        OptDef::new("unprivileged", OptType::Bool),
        OptDef::indexed("unused", OptType::Str, 255),
    ];
    if node.pve_major() >= 9 {
        v.push(OptDef::new("entrypoint", OptType::Str));
        v.push(OptDef::new("env", OptType::Str));
    }
    v
}

/// Keys that are not CT config properties (create/set-only parameters).
const NON_CONFIG: &[&str] = &[
    "storage",
    "password",
    "ssh-public-keys",
    "start",
    "restore",
    "force",
    "unique",
    "pool",
    "ignore-unpack-errors",
    "bwlimit",
    "ha-managed",
    "delete",
    "revert",
    "digest",
    "debug",
];

const fn def<'a>(usage: &'a str, args: &'a [(&'a str, OptType)], opts: &'a [OptDef]) -> CmdDef<'a> {
    CmdDef {
        usage,
        args,
        opts,
        extra_args: false,
    }
}

const VMID: (&str, OptType) = ("vmid", OptType::VmId);
const SNAPNAME: (&str, OptType) = ("snapname", OptType::SnapName);

/// A subcommand's handler, called with the parsed arguments.
type Handler = fn(&Node, &Args) -> Result<()>;

/// The subcommands whose parameters are fixed and whose errors carry no
/// usage line beyond the parser's: name, definition, handler.
const SIMPLE: &[(&str, CmdDef<'static>, Handler)] = &[
    (
        "status",
        def(
            "pct status <vmid> [OPTIONS]",
            &[VMID],
            &[OptDef::new("verbose", OptType::Bool)],
        ),
        cmd_status,
    ),
    (
        "pending",
        def("pct pending <vmid>", &[VMID], &[]),
        cmd_pending,
    ),
    (
        "start",
        def(
            "pct start <vmid> [OPTIONS]",
            &[VMID],
            &[
                OptDef::new("debug", OptType::Bool),
                OptDef::new("skiplock", OptType::Bool),
            ],
        ),
        cmd_start,
    ),
    (
        "stop",
        def(
            "pct stop <vmid> [OPTIONS]",
            &[VMID],
            &[
                OptDef::new("overrule-shutdown", OptType::Bool),
                OptDef::new("skiplock", OptType::Bool),
            ],
        ),
        cmd_stop,
    ),
    (
        "shutdown",
        def(
            "pct shutdown <vmid> [OPTIONS]",
            &[VMID],
            &[
                OptDef::new("forceStop", OptType::Bool),
                OptDef::new("timeout", OptType::Int(0, i64::MAX)),
            ],
        ),
        cmd_shutdown,
    ),
    (
        "reboot",
        def(
            "pct reboot <vmid> [OPTIONS]",
            &[VMID],
            &[OptDef::new("timeout", OptType::Int(0, i64::MAX))],
        ),
        cmd_reboot,
    ),
    (
        "destroy",
        def(
            "pct destroy <vmid> [OPTIONS]",
            &[VMID],
            &[
                OptDef::new("destroy-unreferenced-disks", OptType::Bool),
                OptDef::new("force", OptType::Bool),
                OptDef::new("purge", OptType::Bool),
            ],
        ),
        cmd_destroy,
    ),
    (
        "exec",
        CmdDef {
            usage: "pct exec <vmid> [<extra-args>] [OPTIONS]",
            args: &[VMID],
            opts: &[OptDef::new("keep-env", OptType::Bool)],
            extra_args: true,
        },
        cmd_exec,
    ),
    (
        "push",
        def(
            "pct push <vmid> <file> <destination> [OPTIONS]",
            &[VMID, ("file", OptType::Str), ("destination", OptType::Str)],
            TRANSFER_OPTS,
        ),
        cmd_push,
    ),
    (
        "pull",
        def(
            "pct pull <vmid> <path> <destination> [OPTIONS]",
            &[VMID, ("path", OptType::Str), ("destination", OptType::Str)],
            TRANSFER_OPTS,
        ),
        cmd_pull,
    ),
    (
        "snapshot",
        def(
            "pct snapshot <vmid> <snapname> [OPTIONS]",
            &[VMID, SNAPNAME],
            &[OptDef::new("description", OptType::Str)],
        ),
        cmd_snapshot,
    ),
    (
        "listsnapshot",
        def("pct listsnapshot <vmid>", &[VMID], &[]),
        cmd_listsnapshot,
    ),
    (
        "rollback",
        def(
            "pct rollback <vmid> <snapname> [OPTIONS]",
            &[VMID, SNAPNAME],
            &[OptDef::new("start", OptType::Bool)],
        ),
        cmd_rollback,
    ),
    (
        "delsnapshot",
        def(
            "pct delsnapshot <vmid> <snapname> [OPTIONS]",
            &[VMID, SNAPNAME],
            &[OptDef::new("force", OptType::Bool)],
        ),
        cmd_delsnapshot,
    ),
    (
        "unlock",
        def("pct unlock <vmid>", &[VMID], &[]),
        |node, a| lock::remove_lock(node, a.vmid(), None),
    ),
];

/// The options of `pct push` and `pct pull`.
const TRANSFER_OPTS: &[OptDef] = &[
    OptDef::new("group", OptType::Str),
    OptDef::new("perms", OptType::Str),
    OptDef::new("user", OptType::Str),
];

/// `pct <subcommand> ...`.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let Some(sub) = args.first() else {
        return Err(PveError::bad_subcommand("pct", None));
    };
    let rest = &args[1..];
    if let Some((_, d, run)) = SIMPLE.iter().find(|(name, ..)| name == sub) {
        let a = d.parse(rest)?;
        return run(node, &a);
    }
    match sub.as_str() {
        "list" => {
            def("pct list", &[], &[]).parse(rest)?;
            cmd_list(node)
        }
        "config" => {
            let usage = "pct config <vmid> [OPTIONS]";
            let a = def(
                usage,
                &[VMID],
                &[
                    OptDef::new("current", OptType::Bool),
                    OptDef::new("snapshot", OptType::SnapName),
                ],
            )
            .parse(rest)?;
            cmd_config(node, &a).map_err(|e| e.with_usage(usage))
        }
        "create" => {
            let mut opts = config_options(node);
            for (n, t) in [
                ("storage", OptType::Str),
                ("password", OptType::Str),
                ("ssh-public-keys", OptType::Str),
                ("start", OptType::Bool),
                ("restore", OptType::Bool),
                ("force", OptType::Bool),
                ("unique", OptType::Bool),
                ("pool", OptType::Str),
                ("ignore-unpack-errors", OptType::Bool),
                ("bwlimit", OptType::Number),
            ] {
                opts.push(OptDef::new(n, t));
            }
            if node.pve_major() >= 9 {
                opts.push(OptDef::new("ha-managed", OptType::Bool));
            }
            let usage = "pct create <vmid> <ostemplate> [OPTIONS]";
            let a = def(usage, &[VMID, ("ostemplate", OptType::Str)], &opts).parse(rest)?;
            cmd_create(node, &a).map_err(|e| e.with_usage(usage))
        }
        "set" => {
            let mut opts = config_options(node);
            opts.push(OptDef::new("delete", OptType::ConfigIdList));
            opts.push(OptDef::new("revert", OptType::ConfigIdList));
            opts.push(OptDef::new("digest", OptType::Str));
            let usage = "pct set <vmid> [OPTIONS]";
            let a = def(usage, &[VMID], &opts).parse(rest)?;
            cmd_set(node, &a).map_err(|e| e.with_usage(usage))
        }
        other => Err(PveError::bad_subcommand("pct", Some(other))),
    }
}

// ---------------------------------------------------------------------------
// list / status / config / pending

fn cmd_list(node: &Node) -> Result<()> {
    let ids = node.local_vmids()?;
    let mut out = String::new();
    let mut rows = Vec::new();
    for id in ids {
        let Ok(c) = conf::load(node, id) else {
            continue;
        };
        let status = lxc::state(node, id).pct_str();
        let lock = c.main.lock().unwrap_or("").to_string();
        rows.push((id, status, lock, c.main.hostname_or_default(id)));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:<12} {:<20}",
        "VMID", "Status", "Lock", "Name"
    );
    for (id, st, lock, name) in rows {
        let _ = writeln!(out, "{:<10} {:<10} {:<12} {:<20}", id, st, lock, name);
    }
    print!("{out}");
    Ok(())
}

/// The status hash of a CT (`vmstatus`), as `pct status --verbose` and
/// `/nodes/<node>/lxc/<vmid>/status/current` report it. Values are JSON
/// numbers or strings; `cpu` is included (callers drop it where PVE does).
pub fn ct_status(
    node: &Node,
    vmid: u32,
    c: &CtConfig,
) -> Result<BTreeMap<String, serde_json::Value>> {
    use serde_json::Value;
    let sec = &c.main;
    let state = lxc::state(node, vmid);
    let running = state != State::Stopped;
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    let ncpu = std::thread::available_parallelism()
        .map(|n| n.get() as i64)
        .unwrap_or(1);
    let cpus = sec.int("cores").unwrap_or(ncpu);
    let cpulimit: f64 = sec
        .get("cpulimit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let cpus = if cpulimit > 0.0 && cpulimit < cpus as f64 {
        Value::from(cpulimit)
    } else {
        Value::from(cpus)
    };
    m.insert("cpus".into(), cpus);
    m.insert("cpu".into(), Value::from(0));
    let maxdisk = sec
        .rootfs()
        .and_then(|r| r.get("size").and_then(conf::parse_size))
        .unwrap_or(4 << 30);
    m.insert("maxdisk".into(), Value::from(maxdisk));
    m.insert(
        "maxmem".into(),
        Value::from(sec.int("memory").unwrap_or(512) * 1024 * 1024),
    );
    m.insert(
        "maxswap".into(),
        Value::from(sec.int("swap").unwrap_or(512) * 1024 * 1024),
    );
    m.insert("name".into(), Value::from(sec.hostname_or_default(vmid)));
    m.insert("status".into(), Value::from(state.pct_str()));
    m.insert("type".into(), Value::from("lxc"));
    m.insert("vmid".into(), Value::from(vmid));
    for k in [
        "disk",
        "diskread",
        "diskwrite",
        "mem",
        "netin",
        "netout",
        "swap",
        "uptime",
    ] {
        m.insert(k.into(), Value::from(0));
    }
    if let Some(l) = sec.lock() {
        m.insert("lock".into(), Value::from(l));
    }
    if let Some(t) = sec.get("tags") {
        m.insert("tags".into(), Value::from(t));
    }
    if sec.flag("template") {
        m.insert("template".into(), Value::from(1));
    }
    if running {
        if let Some(pid) = lxc::init_pid(node, vmid) {
            m.insert("pid".into(), Value::from(pid));
            m.insert("uptime".into(), Value::from(uptime_of(pid)));
        }
        let cg = lxc::cgroup_paths(node, vmid);
        let read = |file: &str| -> Option<u64> {
            cg.iter().find_map(|p| {
                fs::read_to_string(p.join(file))
                    .ok()
                    .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            })
        };
        if let Some(mem) = read("memory.current").or_else(|| read("memory.usage_in_bytes")) {
            m.insert("mem".into(), Value::from(mem));
        }
        if let Some(sw) = read("memory.swap.current") {
            m.insert("swap".into(), Value::from(sw));
        }
        if let Ok(cfg) = StorageCfg::load(node) {
            if let Ok(p) = lxc::rootfs_path(node, &cfg, sec) {
                m.insert("disk".into(), Value::from(storage::du_bytes(&p)));
            }
        }
        let (mut netin, mut netout) = (0u64, 0u64);
        for (key, _) in sec.nets() {
            let n: u32 = key.trim_start_matches("net").parse().unwrap_or(0);
            let dev = node.veth_name(vmid, n);
            let stat = |f: &str| -> u64 {
                fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{f}"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0)
            };
            // host side of the veth: its rx is the CT's tx
            netout += stat("rx_bytes");
            netin += stat("tx_bytes");
        }
        m.insert("netin".into(), Value::from(netin));
        m.insert("netout".into(), Value::from(netout));
        if node.pve_major() >= 9 {
            for (res, file) in [
                ("cpu", "cpu.pressure"),
                ("io", "io.pressure"),
                ("memory", "memory.pressure"),
            ] {
                let text = cg
                    .iter()
                    .find_map(|p| fs::read_to_string(p.join(file)).ok())
                    .unwrap_or_default();
                for kind in ["some", "full"] {
                    let v = text
                        .lines()
                        .find(|l| l.starts_with(kind))
                        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("avg10=")))
                        .unwrap_or("0.00");
                    m.insert(format!("pressure{res}{kind}"), Value::from(v));
                }
            }
        }
    }
    Ok(m)
}

fn uptime_of(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let start_ticks: u64 = after
        .split_whitespace()
        .nth(19)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let up: f64 = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0);
    let hz = 100.0;
    let started = start_ticks as f64 / hz;
    if up > started {
        (up - started) as u64
    } else {
        0
    }
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cmd_status(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if !a.flag("verbose") {
        println!("status: {}", lxc::state(node, vmid).pct_str());
        return Ok(());
    }
    let st = ct_status(node, vmid, &c)?;
    let mut out = String::new();
    for (k, v) in &st {
        if k == "cpu" {
            continue;
        }
        let _ = writeln!(out, "{k}: {}", json_text(v));
    }
    print!("{out}");
    Ok(())
}

fn cmd_config(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    if a.opt("snapshot").is_some() && a.flag("current") {
        let mut e = BTreeMap::new();
        let msg = "cannot use 'snapshot' parameter with 'current'".to_string();
        e.insert("snapshot".into(), msg.clone());
        e.insert("current".into(), msg);
        return Err(PveError::params(e));
    }
    let c = conf::load(node, vmid)?;
    let sec = match a.opt("snapshot") {
        Some(s) => {
            let mut snap = c
                .snapshots
                .get(s)
                .cloned()
                .ok_or_else(|| PveError::die(format!("snapshot '{s}' does not exist")))?;
            snap.props.remove("snapstate");
            snap
        }
        None => c.current(a.flag("current")),
    };
    print!("{}", conf::format_for_pct_config(&sec));
    Ok(())
}

fn cmd_pending(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    let deleted: Vec<String> = c
        .pending
        .get("delete")
        .map(|d| {
            d.split(',')
                .map(|s| s.trim_start_matches('!').to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut keys: Vec<&String> = c.main.props.keys().chain(c.pending.props.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = String::new();
    let show = |k: &str, v: &str| {
        if k == "description" {
            conf::encode_text(v)
        } else {
            v.to_string()
        }
    };
    for k in keys {
        if k == "delete" || k == "digest" {
            continue;
        }
        let cur = c.main.get(k);
        let new = c.pending.get(k);
        match (cur, new) {
            (Some(cv), Some(nv)) if cv != nv => {
                let _ = writeln!(out, "cur {k}: {}", show(k, cv));
                let _ = writeln!(out, "new {k}: {}", show(k, nv));
            }
            (Some(cv), _) => {
                if deleted.iter().any(|d| d == k) {
                    let _ = writeln!(out, "del {k}: {}", show(k, cv));
                } else {
                    let _ = writeln!(out, "cur {k}: {}", show(k, cv));
                }
            }
            (None, Some(nv)) => {
                let _ = writeln!(out, "new {k}: {}", show(k, nv));
            }
            (None, None) => {}
        }
    }
    print!("{out}");
    Ok(())
}

// ---------------------------------------------------------------------------
// create

/// Resolve an ostemplate/archive argument to a path: a volid or an absolute path.
pub fn resolve_archive(node: &Node, cfg: &StorageCfg, spec: &str) -> Result<PathBuf> {
    if spec.starts_with('/') {
        return Ok(PathBuf::from(spec));
    }
    let (sid, _) = storage::parse_volid(spec)?;
    cfg.require(sid)?;
    storage::path(node, cfg, spec)
}

/// Fill in generated values for config options: hwaddr and `type=veth` for
/// nets. Works on already-validated, canonical option values.
fn finalize_net(node: &Node, key: &str, value: &str) -> Result<String> {
    let schema = conf::net_schema(node);
    let mut p: PropString =
        conf::parse_prop(schema, key, value).map_err(|e| PveError::param(key, e))?;
    if p.get("hwaddr").is_none() {
        p.set("hwaddr", crate::util::random_mac());
    }
    p.set("type", "veth");
    Ok(p.print(schema))
}

/// The CT config given as options (`create`, `restore`): every option but
/// those `skip` names, `netN` values finalized ([`finalize_net`]).
pub(crate) fn given_config(node: &Node, a: &Args, skip: impl Fn(&str) -> bool) -> Result<Section> {
    let mut sec = Section::default();
    for (k, v) in &a.opts {
        if skip(k) {
            continue;
        }
        let v = if k.starts_with("net") {
            finalize_net(node, k, v)?
        } else {
            v.clone()
        };
        sec.set(k, v);
    }
    Ok(sec)
}

/// A rootfs/mpN spec that asks for a new volume: `STORAGE:SIZE_GiB` or a bare size.
pub(crate) fn new_volume_request(spec: &str, default_storage: &str) -> Option<(String, f64)> {
    if let Ok(sz) = spec.parse::<f64>() {
        return Some((default_storage.to_string(), sz));
    }
    let (s, sz) = spec.split_once(':')?;
    let sz: f64 = sz.parse().ok()?;
    Some((s.to_string(), sz))
}

fn cmd_create(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let ostemplate = a.arg("ostemplate").to_string();
    let cfg = StorageCfg::load(node)?;

    if let Some((owner, kind)) = node.vmid_owner(vmid)? {
        return Err(PveError::die(format!(
            "{kind} {vmid} already exists on node '{owner}'"
        )));
    }
    let storage_id = a.opt("storage").unwrap_or("local").to_string();

    // rootfs: explicit, or `<storage>:4`
    let rootfs_opt = a
        .opt("rootfs")
        .map(String::from)
        .unwrap_or_else(|| format!("{storage_id}:4"));
    let mut rootfs = conf::parse_prop(&conf::ROOTFS_SCHEMA, "rootfs", &rootfs_opt)
        .map_err(|e| PveError::param("rootfs", e))?;
    let volspec = rootfs.get("volume").unwrap_or_default().to_string();
    let (alloc_storage, size_gib) = new_volume_request(&volspec, &storage_id).ok_or_else(|| {
        PveError::param(
            "rootfs",
            "the sandbox can only allocate new volumes (use STORAGE:SIZE_IN_GiB)",
        )
    })?;
    if a.opt("storage").is_some() || alloc_storage == storage_id {
        cfg.check_rootdir(node, &storage_id)?;
    }
    cfg.check_rootdir(node, &alloc_storage)?;
    if let Some(k) = a.opts.keys().find(|k| k.starts_with("mp")) {
        return Err(PveError::param(
            k.as_str(),
            "mount points are not emulated by the sandbox",
        ));
    }

    // ostemplate storage must exist (checked before the worker, like check_volume_access)
    let template_path = resolve_archive(node, &cfg, &ostemplate)?;

    // build the config from the options
    let mut sec = given_config(node, a, |k| NON_CONFIG.contains(&k) || k == "rootfs")?;
    if node.pve_major() >= 9 && a.opt("unprivileged").is_none() {
        sec.set("unprivileged", "1");
    }
    if sec.get("unprivileged") == Some("0") {
        sec.remove("unprivileged");
    }
    for k in ["onboot", "protection", "template", "console"] {
        if sec.get(k) == Some("0") && k != "console" {
            sec.remove(k);
        }
    }
    let ssh_keys = match a.opt("ssh-public-keys") {
        Some(p) => Some(
            fs::read_to_string(p)
                .map_err(|e| PveError::die(format!("unable to read '{p}' - {e}")))?,
        ),
        None => None,
    };

    // config with lock: create (5 s config-lock timeout)
    {
        let _l = lock::lock_file(&node.config_lock_path(vmid), lock::CREATE_LOCK_TIMEOUT)
            .map_err(|e| PveError::die(format!("unable to create CT {vmid} - {e}")))?;
        if node.conf_path(vmid).exists() {
            return Err(PveError::die(format!(
                "CT {vmid} already exists on node '{}'",
                node.name()
            )));
        }
        let mut c = CtConfig::default();
        c.main.set("lock", "create");
        conf::store(node, vmid, &c)?;
    }

    let start_after = a.flag("start");
    let res = run_worker(|w| {
        let mut volid: Option<String> = None;
        let r = (|| -> Result<()> {
            let v = storage::alloc_ct_volume(node, &cfg, &alloc_storage, vmid)?;
            volid = Some(v.clone());
            let (sid, volname) = storage::parse_volid(&v)?;
            if cfg.get(sid).map(|s| s.kind == "lvmthin").unwrap_or(false) {
                w.log(&format!("  Logical volume \"{volname}\" created."));
            }
            if !template_path.is_file() {
                return Err(PveError::die(format!("can't find file '{ostemplate}'")));
            }
            let root = storage::path(node, &cfg, &v)?;
            let map = IdMap::for_ct(sec.unprivileged());
            w.log(&format!("extracting archive '{}'", template_path.display()));
            let mut lines = Vec::new();
            archive::extract(
                archive::Source::Path(&template_path),
                &root,
                map,
                &mut |l| lines.push(l.to_string()),
            )?;
            for l in lines {
                w.log(&l);
            }
            let arch = lxc::detect_arch(&root);
            w.log(&format!("Detected container architecture: {arch}"));
            if sec.get("arch").is_none() {
                sec.set("arch", arch);
            }
            if sec.get("ostype").is_none() {
                sec.set("ostype", lxc::detect_ostype(&root));
            }
            if sec.get("hostname").is_none() {
                sec.set("hostname", format!("CT{vmid}"));
            }
            if sec.get("memory").is_none() {
                sec.set("memory", "512");
            }
            if sec.get("swap").is_none() {
                sec.set("swap", "512");
            }
            lxc::setup_rootfs(&root, vmid, &sec, map)?;
            if let Some(keys) = &ssh_keys {
                write_authorized_keys(&root, keys, map)?;
            }
            let size = (size_gib * (1u64 << 30) as f64) as u64;
            rootfs.set("volume", v.clone());
            rootfs.set("size", conf::format_size(size));
            sec.set("rootfs", rootfs.print(&conf::ROOTFS_SCHEMA));
            if node.pve_major() >= 9 {
                nesting_warning(w, &root, &sec);
            }
            let _l = lock::lock_config(node, vmid, lock::LOCK_TIMEOUT)?;
            let c = CtConfig {
                main: sec.clone(),
                ..Default::default()
            };
            conf::store(node, vmid, &c)
        })();
        if let Err(e) = r {
            if let Some(v) = &volid {
                let _ = storage::free_volume(node, &cfg, v);
            }
            let _ = fs::remove_file(node.conf_path(vmid));
            return Err(PveError::TaskFailed(format!(
                "unable to create CT {vmid} - {}",
                e.render().0
            )));
        }
        if start_after {
            let c = conf::load(node, vmid)?;
            lxc::start(node, vmid, &c.main, &cfg)?;
        }
        Ok(())
    });
    res
}

fn nesting_warning(w: &mut Worker, root: &Path, sec: &Section) {
    if sec.features().flag("nesting") {
        return;
    }
    if let Some(v) = lxc::systemd_version(root) {
        if v > 241 {
            w.warn(&format!(
                "Systemd {v} detected. You may need to enable nesting."
            ));
        }
    }
}

fn write_authorized_keys(root: &Path, keys: &str, map: Option<IdMap>) -> Result<()> {
    let dir = root.join("root/.ssh");
    fs::create_dir_all(&dir).map_err(|e| PveError::io("create dir", &dir, e))?;
    let f = dir.join("authorized_keys");
    fs::write(&f, keys).map_err(|e| PveError::io("write", &f, e))?;
    let (u, g) = map.map(|m| (m.host_uid, m.host_gid)).unwrap_or((0, 0));
    for p in [&dir, &f] {
        nix::unistd::chown(
            p.as_path(),
            Some(nix::unistd::Uid::from_raw(u)),
            Some(nix::unistd::Gid::from_raw(g)),
        )
        .map_err(|e| PveError::io("chown", p.as_path(), e.into()))?;
    }
    let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
    let _ = fs::set_permissions(&f, fs::Permissions::from_mode(0o600));
    Ok(())
}

// ---------------------------------------------------------------------------
// start / stop / shutdown / reboot

fn apply_pending(c: &mut CtConfig) {
    if c.pending.props.is_empty() {
        return;
    }
    let merged = c.current(false);
    c.main = merged;
    c.pending = Section::default();
}

fn do_start(node: &Node, vmid: u32, w: &mut Worker) -> Result<()> {
    let cfg = StorageCfg::load(node)?;
    let c = lock::update_config(node, vmid, |c| {
        apply_pending(c);
        Ok(c.clone())
    })?;
    if node.pve_major() >= 9 {
        if let Ok(root) = lxc::rootfs_path(node, &cfg, &c.main) {
            nesting_warning(w, &root, &c.main);
        }
    }
    if let Err(e) = lxc::start(node, vmid, &c.main, &cfg) {
        let text = e.render().0;
        let reason = text
            .trim_end_matches(&format!("startup for container '{vmid}' failed"))
            .trim_end();
        if !reason.is_empty() {
            w.log(reason);
        }
        return Err(PveError::TaskFailed(format!(
            "startup for container '{vmid}' failed"
        )));
    }
    Ok(())
}

fn cmd_start(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if lxc::is_running(node, vmid) {
        return Err(PveError::die(format!("CT {vmid} already running")));
    }
    if !a.flag("skiplock") && c.main.lock() != Some("mounted") {
        check_lock(&c.main)?;
    }
    if c.main.flag("template") {
        return Err(PveError::die("you can't start a CT if it's a template"));
    }
    run_worker(|w| do_start(node, vmid, w))
}

fn cmd_stop(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die(format!("CT {vmid} not running")));
    }
    if !a.flag("skiplock") {
        check_lock(&c.main)?;
    }
    run_worker(|_| lxc::stop(node, vmid))
}

fn cmd_shutdown(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die(format!("CT {vmid} not running")));
    }
    check_lock(&c.main)?;
    let timeout = a.int("timeout").unwrap_or(60).max(0) as u64;
    let force = a.flag("forceStop");
    run_worker(|_| {
        if lxc::shutdown(node, vmid, timeout)? {
            return Ok(());
        }
        if force {
            return lxc::stop(node, vmid);
        }
        Err(PveError::die("container did not stop"))
    })
}

fn cmd_reboot(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die(format!("VM {vmid} not running")));
    }
    check_lock(&c.main)?;
    let timeout = a.int("timeout").unwrap_or(60).max(0) as u64;
    run_worker(|w| {
        if !lxc::shutdown(node, vmid, timeout)? {
            return Err(PveError::die("container did not stop"));
        }
        do_start(node, vmid, w)
    })
}

// ---------------------------------------------------------------------------
// destroy

/// Free every volume a config references (rootfs, mpN, unusedN) plus the
/// snapshots' volumes; errors are logged and skipped like PVE does.
pub fn destroy_volumes(node: &Node, cfg: &StorageCfg, c: &CtConfig, w: &mut Worker) {
    let mut vols: Vec<String> = c.main.volumes().into_iter().map(|(_, v)| v).collect();
    for s in c.snapshots.values() {
        vols.extend(s.volumes().into_iter().map(|(_, v)| v));
    }
    vols.sort();
    vols.dedup();
    for v in vols {
        if v.starts_with('/') {
            continue;
        }
        if let Err(e) = storage::free_volume(node, cfg, &v) {
            w.log(&format!("unable to remove volume '{v}' - {}", e.render().0));
        } else if let Ok((sid, volname)) = storage::parse_volid(&v) {
            if cfg.get(sid).map(|s| s.kind == "lvmthin").unwrap_or(false) {
                w.log(&format!(
                    "  Logical volume \"{volname}\" successfully removed."
                ));
            }
        }
    }
}

fn cmd_destroy(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    if c.main.flag("protection") {
        return Err(PveError::die(format!(
            "can't remove CT {vmid} - protection mode enabled"
        )));
    }
    check_lock(&c.main)?;
    let running = lxc::is_running(node, vmid);
    if running && !a.flag("force") {
        return Err(PveError::die(format!(
            "unable to destroy CT {vmid} - container is running"
        )));
    }
    let cfg = StorageCfg::load(node)?;
    run_worker(|w| {
        if running {
            w.warn(&format!("forced to stop CT {vmid} before destroying!"));
            lxc::stop(node, vmid)?;
        }
        lock::set_lock(node, vmid, "destroyed")?;
        let c = conf::load(node, vmid)?;
        destroy_volumes(node, &cfg, &c, w);
        if a.flag("destroy-unreferenced-disks") {
            for s in &cfg.storages {
                if s.disabled() {
                    continue;
                }
                for (volid, _, _) in storage::list_guest_volumes(node, s, Some(vmid))? {
                    let _ = storage::free_volume(node, &cfg, &volid);
                }
            }
        }
        if a.flag("purge") {
            w.log(&format!("purging CT {vmid} from related configurations.."));
        }
        lxc::cleanup_runtime(node, vmid);
        let p = node.conf_path(vmid);
        fs::remove_file(&p).map_err(|e| PveError::io("remove config", &p, e))?;
        let _ = fs::remove_file(node.config_lock_path(vmid));
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// set

/// Keys applied at once on a running CT; everything else goes to pending.
const HOTPLUG: &[&str] = &[
    "description",
    "onboot",
    "startup",
    "protection",
    "hostname",
    "hookscript",
    "cores",
    "tags",
    "lock",
    "cpulimit",
    "cpuunits",
    "memory",
    "swap",
];

fn cmd_set(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let config_keys: Vec<(&String, &String)> = a
        .opts
        .iter()
        .filter(|(k, _)| !NON_CONFIG.contains(&k.as_str()))
        .collect();
    let key_list = |opt: &str| -> Vec<String> {
        a.opt(opt)
            .map(|d| {
                d.split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    };
    let deletes = key_list("delete");
    let reverts = key_list("revert");
    if config_keys.is_empty() && deletes.is_empty() && reverts.is_empty() {
        return Err(PveError::die("no options specified"));
    }
    for d in &deletes {
        if a.opts.contains_key(d) {
            return Err(PveError::param(
                "delete",
                format!("you can't use '-{d}' and -delete {d}' at the same time"),
            ));
        }
    }
    let _l = lock::lock_config(node, vmid, lock::LOCK_TIMEOUT)?;
    let mut c = conf::load(node, vmid)?;
    if let Some(d) = a.opt("digest") {
        let raw = fs::read(node.conf_path(vmid)).unwrap_or_default();
        if sha1_hex(&raw) != d {
            return Err(PveError::die(
                "detected modified configuration - file changed by other user? Try again.",
            ));
        }
    }
    // `pct set --lock` is allowed to set a lock on an unlocked CT only
    check_lock(&c.main)?;
    let running = lxc::is_running(node, vmid);

    for d in &deletes {
        if matches!(d.as_str(), "memory" | "rootfs" | "ostype") {
            return Err(PveError::die(format!(
                "unable to delete required option '{d}'"
            )));
        }
        if d == "unprivileged" {
            return Err(PveError::die(
                "unable to modify read-only option: 'unprivileged'",
            ));
        }
        if c.main.get(d).is_none() && c.pending.get(d).is_none() {
            eprintln!("cannot delete '{d}' - not set in current configuration!");
            continue;
        }
        if running && !HOTPLUG.contains(&d.as_str()) && !d.starts_with("net") {
            let mut list: Vec<String> = c
                .pending
                .get("delete")
                .map(|s| s.split(',').map(String::from).collect())
                .unwrap_or_default();
            if !list.contains(d) {
                list.push(d.clone());
            }
            c.pending.set("delete", list.join(","));
            c.pending.remove(d);
        } else {
            c.main.remove(d);
            c.pending.remove(d);
        }
    }
    for r in &reverts {
        c.pending.remove(r);
    }
    for (k, v) in config_keys {
        if k == "unprivileged" {
            return Err(PveError::die(
                "unable to modify read-only option: 'unprivileged'",
            ));
        }
        if k.starts_with("mp") {
            return Err(PveError::param(
                k.as_str(),
                "mount points are not emulated by the sandbox",
            ));
        }
        let mut v = v.clone();
        if k.starts_with("net") {
            v = finalize_net(node, k, &v)?;
        }
        if k == "rootfs" {
            return Err(PveError::die("unable to modify read-only option: 'rootfs'"));
        }
        let bool_default_off = matches!(k.as_str(), "onboot" | "protection" | "template");
        if running && !HOTPLUG.contains(&k.as_str()) && !k.starts_with("net") {
            c.pending.set(k, v);
        } else if bool_default_off && v == "0" {
            c.main.remove(k);
        } else {
            c.main.set(k, v);
            c.pending.remove(k);
        }
    }
    if c.pending.get("delete") == Some("") {
        c.pending.remove("delete");
    }
    conf::store(node, vmid, &c)
}

/// SHA-1 of a config file's bytes (for `--digest`), via `sha1sum`.
fn sha1_hex(data: &[u8]) -> String {
    use std::process::{Command, Stdio};
    let child = Command::new("sha1sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return String::new();
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(data);
    }
    child
        .wait_with_output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// exec / push / pull

fn cmd_exec(node: &Node, a: &Args) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let vmid = a.vmid();
    conf::load(node, vmid)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die(format!("container '{vmid}' not running!")));
    }
    if a.extra.is_empty() {
        return Err(PveError::die("missing command"));
    }
    let keep_env = a.opt("keep-env").map(|v| v == "1").unwrap_or(true);
    let argv = lxc::attach_argv(node, vmid, keep_env, &a.extra);
    let _ = std::io::stdout().flush();
    let err = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .exec();
    Err(PveError::die(format!("exec failed: {err}")))
}

/// Look a user/group name up in the CT's `/etc/passwd` / `/etc/group`.
fn ct_lookup(root: &Path, file: &str, name: &str) -> Option<u32> {
    let text = fs::read_to_string(root.join(file)).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let n = f.next()?;
        let _ = f.next();
        let id = f.next()?;
        (n == name).then(|| id.parse().ok()).flatten()
    })
}

fn parse_perms(p: &str) -> Result<u32> {
    // "assume octal as default": prefix 0 unless it already starts with 0
    let p2 = if p.starts_with('0') {
        p.to_string()
    } else {
        format!("0{p}")
    };
    let v = if let Some(h) = p2.strip_prefix("0x").or_else(|| p2.strip_prefix("0X")) {
        u32::from_str_radix(h, 16)
    } else {
        u32::from_str_radix(&p2, 8)
    };
    v.map_err(|_| PveError::die(format!("invalid mode: '{p2}'")))
}

/// `create_file` from pct.pm: O_EXCL create with explicit perms, else truncate.
fn create_file(
    path: &Path,
    shown: &str,
    perms: Option<u32>,
    owner: (Option<u32>, Option<u32>),
) -> Result<fs::File> {
    let f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
    {
        Ok(f) => {
            let mode = perms.unwrap_or(0o644);
            f.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| PveError::io("chmod", path, e))?;
            f
        }
        Err(_) => {
            let f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| {
                    PveError::die(format!(
                        "failed to create file: {shown}: {}",
                        errno_text(&e)
                    ))
                })?;
            if let Some(m) = perms {
                f.set_permissions(fs::Permissions::from_mode(m))
                    .map_err(|e| PveError::io("chmod", path, e))?;
            }
            f
        }
    };
    if owner.0.is_some() || owner.1.is_some() {
        let md = f.metadata().map_err(|e| PveError::io("stat", path, e))?;
        let uid = owner.0.unwrap_or(md.uid());
        let gid = owner.1.unwrap_or(md.gid());
        nix::unistd::fchown(
            std::os::fd::AsRawFd::as_raw_fd(&f),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(|e| PveError::die(format!("failed to change file owner: {}", e.desc())))?;
    }
    Ok(f)
}

/// Perl's `$!` text for an I/O error ("No such file or directory").
fn errno_text(e: &std::io::Error) -> String {
    e.raw_os_error()
        .map(|n| nix::errno::Errno::from_raw(n).desc().to_string())
        .unwrap_or_else(|| e.to_string())
}

/// `--user` / `--group` as ids: numbers as given, names looked up in the
/// `etc/passwd` / `etc/group` below `root`.
fn lookup_owner(root: &Path, a: &Args) -> Result<(Option<u32>, Option<u32>)> {
    let id = |opt: &str, file: &str, what: &str| -> Result<Option<u32>> {
        Ok(match a.opt(opt) {
            None => None,
            Some(n) if n.chars().all(|c| c.is_ascii_digit()) => n.parse().ok(),
            Some(n) => Some(
                ct_lookup(root, file, n)
                    .ok_or_else(|| PveError::die(format!("failed to get {what} for: {n}")))?,
            ),
        })
    };
    Ok((
        id("user", "etc/passwd", "uid")?,
        id("group", "etc/group", "gid")?,
    ))
}

/// [`lookup_owner`] in the CT's root, shifted to host ids for unprivileged CTs.
fn resolve_owner(root: &Path, a: &Args, map: Option<IdMap>) -> Result<(Option<u32>, Option<u32>)> {
    let (uid, gid) = lookup_owner(root, a)?;
    Ok(match map {
        Some(m) => (uid.map(|u| m.host_uid(u)), gid.map(|g| m.host_gid(g))),
        None => (uid, gid),
    })
}

fn ct_root(node: &Node, vmid: u32) -> Result<PathBuf> {
    let pid = lxc::init_pid(node, vmid)
        .ok_or_else(|| PveError::die(format!("unable to get PID for CT {vmid} (not running?)")))?;
    Ok(PathBuf::from(format!("/proc/{pid}/root")))
}

fn cmd_push(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let perms = a.opt("perms").map(parse_perms).transpose()?;
    let _l = lock::lock_config(node, vmid, lock::LOCK_TIMEOUT)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die("can only push files to a running CT"));
    }
    let c = conf::load(node, vmid)?;
    let map = IdMap::for_ct(c.main.unprivileged());
    let file = a.arg("file").to_string();
    let dest = a.arg("destination").to_string();
    run_worker(|_| {
        let mut src = fs::File::open(&file)
            .map_err(|_| PveError::die(format!("failed to open {file} for reading")))?;
        let root = ct_root(node, vmid)?;
        let owner = resolve_owner(&root, a, map)?;
        let target = root.join(dest.trim_start_matches('/'));
        // A new file is created by the CT's root (shifted for unprivileged CTs).
        let owner = match (map, target.exists()) {
            (Some(m), false) => (owner.0.or(Some(m.host_uid)), owner.1.or(Some(m.host_gid))),
            _ => owner,
        };
        let mut f = create_file(&target, &dest, perms, owner)?;
        std::io::copy(&mut src, &mut f).map_err(|e| PveError::io("copy", &target, e))?;
        Ok(())
    })
}

fn cmd_pull(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let perms = a.opt("perms").map(parse_perms).transpose()?;
    let _l = lock::lock_config(node, vmid, lock::LOCK_TIMEOUT)?;
    if !lxc::is_running(node, vmid) {
        return Err(PveError::die(
            "can only pull files from a running VM at /usr/share/perl5/PVE/CLI/pct.pm line 657.",
        ));
    }
    let path = a.arg("path").to_string();
    let dest = a.arg("destination").to_string();
    run_worker(|_| {
        let owner = lookup_owner(Path::new("/"), a)?;
        let mut out = create_file(Path::new(&dest), &dest, perms, owner)?;
        let root = ct_root(node, vmid)?;
        let src_path = root.join(path.trim_start_matches('/'));
        let mut src = fs::File::open(&src_path)
            .map_err(|e| PveError::die(format!("failed to open {path}: {}", errno_text(&e))))?;
        std::io::copy(&mut src, &mut out).map_err(|e| PveError::io("copy", &dest, e))?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// snapshots

/// The volumes a snapshot covers: all of a section's but the `unusedN` ones.
fn snapshot_volumes(sec: &Section) -> Vec<String> {
    sec.volumes()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("unused"))
        .map(|(_, v)| v)
        .collect()
}

/// Drop the config lock after a failed volume operation (best effort).
fn release_lock(node: &Node, vmid: u32) {
    let _ = lock::update_config(node, vmid, |c| {
        c.main.remove("lock");
        Ok(())
    });
}

/// Take snapshot `name` of a CT (config section + volume copies). Used by
/// `pct snapshot` and by vzdump's snapshot mode (name `vzdump`). Holds the
/// `snapshot` lock while copying.
pub fn snapshot_create(
    node: &Node,
    vmid: u32,
    name: &str,
    description: Option<&str>,
    w: &mut Worker,
) -> Result<()> {
    let cfg = StorageCfg::load(node)?;
    let now = crate::clock::now(node);
    lock::update_config(node, vmid, |c| {
        check_lock(&c.main)?;
        if c.snapshots.contains_key(name) {
            return Err(PveError::die(format!(
                "snapshot name '{name}' already used"
            )));
        }
        let vols = snapshot_volumes(&c.main);
        if !storage::all_support_snapshots(&cfg, &vols) {
            return Err(PveError::die("snapshot feature is not available"));
        }
        let mut snap = c.main.clone();
        for k in ["lock", "snapstate", "description", "parent"] {
            snap.remove(k);
        }
        if let Some(p) = c.main.get("parent") {
            snap.set("parent", p);
        }
        snap.set("snapstate", "prepare");
        snap.set("snaptime", now.to_string());
        if let Some(d) = description {
            if !d.is_empty() {
                snap.set("description", d);
            }
        }
        c.snapshots.insert(name.to_string(), snap);
        c.main.set("lock", "snapshot");
        Ok(())
    })?;
    let c = conf::load(node, vmid)?;
    let vols = snapshot_volumes(&c.main);
    let mut result = Ok(());
    for v in &vols {
        if let Err(e) = storage::volume_snapshot(node, &cfg, v, name) {
            result = Err(e);
            break;
        }
        if let Ok((_, volname)) = storage::parse_volid(v) {
            w.log(&format!(
                "  Logical volume \"snap_{volname}_{name}\" created."
            ));
        }
    }
    lock::update_config(node, vmid, |c| {
        c.main.remove("lock");
        if result.is_ok() {
            if let Some(s) = c.snapshots.get_mut(name) {
                s.remove("snapstate");
            }
            c.main.set("parent", name);
        } else {
            c.snapshots.remove(name);
        }
        Ok(())
    })?;
    if result.is_err() {
        for v in &vols {
            let _ = storage::volume_snapshot_delete(node, &cfg, v, name);
        }
    }
    result
}

/// Delete snapshot `name` (volumes and config section; parents re-linked).
pub fn snapshot_delete(
    node: &Node,
    vmid: u32,
    name: &str,
    force: bool,
    w: &mut Worker,
) -> Result<()> {
    let cfg = StorageCfg::load(node)?;
    let snap = lock::update_config(node, vmid, |c| {
        if !force {
            check_lock(&c.main)?;
        }
        let snap = c
            .snapshots
            .get_mut(name)
            .ok_or_else(|| PveError::die(format!("snapshot '{name}' does not exist")))?;
        snap.set("snapstate", "delete");
        let snap = snap.clone();
        c.main.set("lock", "snapshot-delete");
        Ok(snap)
    })?;
    let mut vols = snapshot_volumes(&snap);
    vols.dedup();
    for v in &vols {
        if let Err(e) = storage::volume_snapshot_delete(node, &cfg, v, name) {
            if !force {
                release_lock(node, vmid);
                return Err(e);
            }
            w.log(&e.render().0);
        } else if let Ok((_, volname)) = storage::parse_volid(v) {
            w.log(&format!(
                "  Logical volume \"snap_{volname}_{name}\" successfully removed."
            ));
        }
    }
    lock::update_config(node, vmid, |c| {
        let parent = c
            .snapshots
            .get(name)
            .and_then(|s| s.get("parent").map(String::from));
        c.snapshots.remove(name);
        for s in c.snapshots.values_mut() {
            if s.get("parent") == Some(name) {
                match &parent {
                    Some(p) => s.set("parent", p.clone()),
                    None => {
                        s.remove("parent");
                    }
                }
            }
        }
        if c.main.get("parent") == Some(name) {
            match &parent {
                Some(p) => c.main.set("parent", p.clone()),
                None => {
                    c.main.remove("parent");
                }
            }
        }
        c.main.remove("lock");
        Ok(())
    })
}

fn cmd_snapshot(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let name = a.arg("snapname").to_string();
    let c = conf::load(node, vmid)?;
    if name == "current" || name == "vzdump" {
        return Err(PveError::die(format!(
            "unable to use snapshot name '{name}' (reserved name)"
        )));
    }
    check_lock(&c.main)?;
    if c.snapshots.contains_key(&name) {
        return Err(PveError::die(format!(
            "snapshot name '{name}' already used"
        )));
    }
    run_worker(|w| snapshot_create(node, vmid, &name, a.opt("description"), w))
}

fn cmd_delsnapshot(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let name = a.arg("snapname").to_string();
    let c = conf::load(node, vmid)?;
    if !c.snapshots.contains_key(&name) {
        return Err(PveError::die(format!("snapshot '{name}' does not exist")));
    }
    run_worker(|w| snapshot_delete(node, vmid, &name, a.flag("force"), w))
}

fn cmd_rollback(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let name = a.arg("snapname").to_string();
    let c = conf::load(node, vmid)?;
    if !c.snapshots.contains_key(&name) {
        return Err(PveError::die(format!("snapshot '{name}' does not exist")));
    }
    check_lock(&c.main)?;
    let cfg = StorageCfg::load(node)?;
    run_worker(|w| {
        if lxc::is_running(node, vmid) {
            lxc::stop(node, vmid)?;
        }
        let snap = lock::update_config(node, vmid, |c| {
            check_lock(&c.main)?;
            let snap = c
                .snapshots
                .get(&name)
                .cloned()
                .ok_or_else(|| PveError::die(format!("snapshot '{name}' does not exist")))?;
            c.main.set("lock", "rollback");
            Ok(snap)
        })?;
        for v in &snapshot_volumes(&snap) {
            if let Err(e) = storage::volume_snapshot_rollback(node, &cfg, v, &name) {
                release_lock(node, vmid);
                return Err(e);
            }
            if let Ok((_, volname)) = storage::parse_volid(v) {
                w.log(&format!(
                    "  Logical volume \"{volname}\" successfully removed."
                ));
                w.log(&format!("  Logical volume \"{volname}\" created."));
            }
        }
        lock::update_config(node, vmid, |c| {
            let mut main = snap.clone();
            for k in ["snaptime", "snapstate", "parent"] {
                main.remove(k);
            }
            main.set("parent", name.clone());
            c.main = main;
            c.pending = Section::default();
            Ok(())
        })?;
        if a.flag("start") {
            do_start(node, vmid, w)?;
        }
        Ok(())
    })
}

fn cmd_listsnapshot(node: &Node, a: &Args) -> Result<()> {
    let vmid = a.vmid();
    let c = conf::load(node, vmid)?;
    print!("{}", snapshot_tree(&c));
    Ok(())
}

type SnapKey<'a> = &'a dyn Fn(&BTreeMap<String, SnapEntry>, &String) -> (u8, i64);

struct SnapEntry {
    snaptime: Option<i64>,
    description: String,
    parent: Option<String>,
    children: Vec<String>,
}

/// `PVE::GuestHelpers::print_snapshot_tree` for a config (with `current`).
pub fn snapshot_tree(c: &CtConfig) -> String {
    let mut entries: BTreeMap<String, SnapEntry> = BTreeMap::new();
    for (name, s) in &c.snapshots {
        entries.insert(
            name.clone(),
            SnapEntry {
                snaptime: s.int("snaptime"),
                description: s.get("description").unwrap_or("").to_string(),
                parent: s.get("parent").map(String::from),
                children: Vec::new(),
            },
        );
    }
    entries.insert(
        "current".into(),
        SnapEntry {
            snaptime: None,
            description: "You are here!".into(),
            parent: c.main.get("parent").map(String::from),
            children: Vec::new(),
        },
    );
    let names: Vec<String> = entries.keys().cloned().collect();
    let mut roots = Vec::new();
    for n in &names {
        let parent = entries.get(n).and_then(|e| e.parent.clone());
        match parent {
            Some(p) if entries.contains_key(&p) => {
                if let Some(pe) = entries.get_mut(&p) {
                    pe.children.push(n.clone());
                }
            }
            _ => roots.push(n.clone()),
        }
    }
    let key = |entries: &BTreeMap<String, SnapEntry>, n: &String| -> (u8, i64) {
        match entries.get(n).and_then(|e| e.snaptime) {
            Some(t) => (0, t),
            None => (1, 0),
        }
    };
    let mut out = String::new();
    fn rec(
        out: &mut String,
        entries: &BTreeMap<String, SnapEntry>,
        prefix: &str,
        name: &str,
        key: SnapKey<'_>,
    ) {
        let Some(e) = entries.get(name) else { return };
        let desc = if e.description.is_empty() {
            "no-description".to_string()
        } else {
            e.description.lines().next().unwrap_or("").to_string()
        };
        let time = e
            .snaptime
            .map(crate::clock::fmt_datetime)
            .unwrap_or_default();
        let len = 30usize.saturating_sub(prefix.len());
        let _ = writeln!(out, "{prefix} {name:<len$} {time:<23} {desc}");
        let mut kids = e.children.clone();
        kids.sort_by_key(|k| key(entries, k));
        let p = format!(" {prefix}");
        for k in kids {
            rec(out, entries, &p, &k, key);
        }
    }
    roots.sort_by_key(|k| key(&entries, k));
    for r in roots {
        rec(&mut out, &entries, "`->", &r, &key);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let (c, _) = CtConfig::parse(
            101,
            "arch: amd64\nparent: s2\n\n[s1]\nsnaptime: 1714557600\n#first\n\n[s2]\nparent: s1\nsnaptime: 1714557700\n",
        );
        let t = snapshot_tree(&c);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("`-> s1 "));
        assert!(lines[0].ends_with(" first"));
        assert!(lines[1].starts_with(" `-> s2 "));
        assert!(lines[1].ends_with("no-description"));
        assert!(lines[2].starts_with("  `-> current "));
        assert!(lines[2].ends_with("You are here!"));
    }

    #[test]
    fn perms() {
        assert_eq!(parse_perms("644").ok(), Some(0o644));
        assert_eq!(parse_perms("0x1a4").ok(), Some(0o644));
        assert!(parse_perms("9z").is_err());
    }
}
