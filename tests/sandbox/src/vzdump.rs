//! `vzdump`: container backups as PVE 8/9 make them (pve-cli.md §5, §6).
//!
//! The flow follows `PVE::API2::VZDump::vzdump`, `PVE::VZDump` and
//! `PVE::VZDump::LXC`:
//!
//! 1. parameter checks (400 errors) and `/etc/vzdump.conf` defaults
//!    (`<root>/etc/vzdump.conf`); `--node` other than this one, or guests that
//!    all live on the fake other node, end silently with exit 0;
//! 2. a worker: storage checks (all errors joined, the job fails before any
//!    guest), the global lock `<root>/run/vzdump.lock` (`--lockwait`
//!    minutes), then one task per guest in vmid order;
//! 3. per guest: `lock: backup` in the CT config for the whole run (removed
//!    afterwards, also on failure), mode `stop` for stopped CTs, `snapshot`
//!    falling back to `suspend` with PVE's "mode failure" lines on storages
//!    without snapshots, the archive `vzdump-lxc-<vmid>-<stamp>.tar[.ext]`
//!    written as `.dat` and renamed, `./etc/vzdump/pct.conf` (config without
//!    lock/snapshots/parent/pending) and `./etc/vzdump/pct.fw` first, the
//!    rootfs in the container's own uid view (tar under `lxc-usernsexec` for
//!    unprivileged CTs), notes, protection, pruning with [`crate::prune`],
//!    and a `.log` beside the archive with timestamped lines;
//! 4. `ERROR: Backup of VM <id> failed - <reason>` for a failed guest, and
//!    `job errors` (exit 255) at the end if any failed.
//!
//! Times come from [`crate::clock`] (so tests can pick the backup time);
//! durations add the real elapsed time to the clock's start value.

pub mod naming;

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::archive::{self, Compression, CreateSpec, IdMap};
use crate::cli::{CmdDef, OptDef, OptType};
use crate::clock;
use crate::conf::{self, CtConfig};
use crate::error::{PveError, Result};
use crate::lock;
use crate::lxc;
use crate::node::Node;
use crate::prune::{self, KeepOptions, Mark, PruneEntry};
use crate::storage::{self, StorageCfg};
use crate::task::{self, Worker};

const COMPRESS: &[&str] = &["0", "1", "gzip", "lzo", "zstd"];
const MODES: &[&str] = &["snapshot", "suspend", "stop"];
const U: i64 = i64::MAX;

macro_rules! vzdump_opts {
    ($($extra:expr),* $(,)?) => {
        &[
            OptDef::new("all", OptType::Bool),
            OptDef::new("bwlimit", OptType::Int(0, U)),
            OptDef::new("compress", OptType::Enum(COMPRESS)),
            OptDef::new("dumpdir", OptType::Str),
            OptDef::new("exclude", OptType::Str),
            OptDef::new("exclude-path", OptType::Str),
            OptDef::new("fleecing", OptType::Str),
            OptDef::new("ionice", OptType::Int(0, 8)),
            OptDef::new("job-id", OptType::Str),
            OptDef::new("lockwait", OptType::Int(0, U)),
            OptDef::new("mailnotification", OptType::Enum(&["always", "failure"])),
            OptDef::new("mailto", OptType::Str),
            OptDef::new("mode", OptType::Enum(MODES)),
            OptDef::new("node", OptType::Str),
            OptDef::new("notes-template", OptType::Str),
            OptDef::new(
                "notification-mode",
                OptType::Enum(&["auto", "legacy-sendmail", "notification-system"]),
            ),
            OptDef::new(
                "pbs-change-detection-mode",
                OptType::Enum(&["legacy", "data", "metadata"]),
            ),
            OptDef::new("performance", OptType::Str),
            OptDef::new("pigz", OptType::Int(0, U)),
            OptDef::new("pool", OptType::Str),
            OptDef::new("protected", OptType::Bool),
            OptDef::new("prune-backups", OptType::Str),
            OptDef::new("quiet", OptType::Bool),
            OptDef::new("remove", OptType::Bool),
            OptDef::new("script", OptType::Str),
            OptDef::new("stdexcludes", OptType::Bool),
            OptDef::new("stdout", OptType::Bool),
            OptDef::new("stop", OptType::Bool),
            OptDef::new("stopwait", OptType::Int(0, U)),
            OptDef::new("storage", OptType::Str),
            OptDef::new("tmpdir", OptType::Str),
            OptDef::new("zstd", OptType::Int(0, U)),
            $($extra),*
        ]
    };
}

const OPTS_8: &[OptDef] = vzdump_opts!(
    OptDef::new("maxfiles", OptType::Int(1, U)),
    OptDef::new(
        "notification-policy",
        OptType::Enum(&["always", "failure", "never"])
    ),
    OptDef::new("notification-target", OptType::Str),
);
const OPTS_9: &[OptDef] = vzdump_opts!();

const USAGE: &str = "vzdump {<vmid>} [OPTIONS]";

static CMD_8: CmdDef<'static> = CmdDef {
    usage: USAGE,
    args: &[],
    opts: OPTS_8,
    extra_args: true,
};
static CMD_9: CmdDef<'static> = CmdDef {
    usage: USAGE,
    args: &[],
    opts: OPTS_9,
    extra_args: true,
};

/// The effective job options (command line over `vzdump.conf` over defaults).
#[derive(Debug, Clone)]
struct Opts {
    vmids: Vec<u32>,
    all: bool,
    exclude: Vec<u32>,
    mode: String,
    compress: String,
    zstd: u32,
    storage: Option<String>,
    dumpdir: Option<String>,
    tmpdir: Option<String>,
    prune: Option<KeepOptions>,
    remove: bool,
    notes_template: Option<String>,
    protected: bool,
    quiet: bool,
    stdout: bool,
    lockwait: u64,
    stopwait: u64,
    ionice: u32,
    bwlimit: u64,
    stdexcludes: bool,
    exclude_path: Vec<String>,
    node: Option<String>,
    stop: bool,
    pool: Option<String>,
    cmdline: String,
}

fn param_err(errors: BTreeMap<String, String>) -> PveError {
    PveError::params(errors).with_usage(USAGE)
}

/// `pve-vmid-list`: comma/semicolon/space separated ids.
fn parse_vmid_list(text: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for id in text
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|s| !s.is_empty())
    {
        match id.parse::<u32>() {
            Ok(n) if (100..=999_999_999).contains(&n) => out.push(n),
            _ => return Err("invalid format - value does not look like a valid VM ID".into()),
        }
    }
    Ok(out)
}

/// `String::ShellQuote`'s rule as `PVE::Tools::shellquote` uses it.
fn shellquote(v: &str) -> String {
    let safe = !v.is_empty()
        && v.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    '_' | '!' | '%' | '+' | ',' | '-' | '.' | '/' | ':' | '=' | '@' | '^'
                )
        });
    if safe {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "'\\''"))
    }
}

/// `<root>/etc/vzdump.conf` as `key: value` lines.
fn read_defaults(node: &Node) -> Result<BTreeMap<String, String>> {
    let p = node.vzdump_conf();
    match fs::read_to_string(&p) {
        Ok(t) => Ok(crate::node::parse_settings(&t).into_iter().collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(PveError::io("read", p, e)),
    }
}

impl Opts {
    fn from_args(node: &Node, args: &crate::cli::Args) -> Result<Opts> {
        let mut errors = BTreeMap::new();
        let mut vmids = Vec::new();
        for a in &args.extra {
            match parse_vmid_list(a) {
                Ok(v) => vmids.extend(v),
                Err(e) => {
                    errors.insert("vmid".to_string(), e);
                }
            }
        }
        let o = |k: &str| args.opt(k).map(str::to_string);
        let all = args.flag("all");
        let exclude = match args.opt("exclude").map(parse_vmid_list) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                errors.insert("exclude".into(), e);
                Vec::new()
            }
            None => Vec::new(),
        };
        if all && !vmids.is_empty() {
            errors.insert("all".into(), "option conflicts with option 'vmid'".into());
        }
        if args.opt("exclude").is_some() && !vmids.is_empty() {
            errors.insert(
                "exclude".into(),
                "option conflicts with option 'vmid'".into(),
            );
        }
        if args.opt("pool").is_some() && !vmids.is_empty() {
            errors.insert("pool".into(), "option conflicts with option 'vmid'".into());
        }
        if args.opt("prune-backups").is_some() && args.opt("maxfiles").is_some() {
            errors.insert(
                "prune-backups".into(),
                "option conflicts with option 'maxfiles'".into(),
            );
        }
        let mut prune = None;
        if let Some(p) = args.opt("prune-backups") {
            match KeepOptions::parse(p) {
                Ok(k) => prune = Some(k),
                Err(e) => {
                    errors.insert("prune-backups".into(), e.to_string());
                }
            }
        } else if let Some(n) = args.int("maxfiles") {
            prune = Some(if n > 0 {
                let mut k = KeepOptions::default();
                k.counts[0] = Some(n as u64);
                k
            } else {
                KeepOptions::keep_all()
            });
        }
        if let Some(t) = args.opt("notes-template") {
            if let Err(e) = naming::verify_notes_template(t) {
                errors.insert("notes-template".into(), e.to_string());
            }
        }
        for k in ["notes-template", "protected"] {
            if args.opt(k).is_some() && args.opt("storage").is_none() {
                errors.insert(
                    "storage".into(),
                    format!("missing property - '{k}' requires this property"),
                );
            }
        }
        let all = all || (args.opt("exclude").is_some() && args.opt("pool").is_none());
        if vmids.is_empty() && !all && !args.flag("stop") && args.opt("pool").is_none() {
            errors
                .entry("vmid".into())
                .or_insert_with(|| "property is missing".into());
        }
        if !errors.is_empty() {
            return Err(param_err(errors));
        }

        // Rebuild the command line for the job's first log line (PVE prints
        // the options in hash order; sorted is one such order).
        let mut cmdline = String::from("vzdump");
        for v in &args.extra {
            cmdline.push(' ');
            cmdline.push_str(v);
        }
        for (k, v) in &args.opts {
            if k == "stdout" {
                continue;
            }
            let v = if k == "prune-backups" {
                prune.as_ref().map(ToString::to_string).unwrap_or_default()
            } else {
                v.clone()
            };
            if !v.is_empty() {
                cmdline.push_str(&format!(" --{k} {}", shellquote(&v)));
            }
        }

        // vzdump.conf defaults, then the built-in ones.
        let defaults = read_defaults(node)?;
        let d = |k: &str| defaults.get(k).cloned();
        let (storage, dumpdir) = if o("storage").is_some() || o("dumpdir").is_some() {
            (o("storage"), o("dumpdir"))
        } else if d("storage").is_some() {
            (d("storage"), None)
        } else {
            (None, d("dumpdir"))
        };
        let pick = |k: &str, dflt: &str| o(k).or_else(|| d(k)).unwrap_or_else(|| dflt.into());
        let num = |k: &str, dflt: u64| pick(k, &dflt.to_string()).parse::<u64>().unwrap_or(dflt);
        let boolean = |k: &str, dflt: bool| {
            prune::parse_bool(&pick(k, if dflt { "1" } else { "0" })).unwrap_or(dflt)
        };
        if prune.is_none() {
            if let Some(p) = d("prune-backups") {
                prune = KeepOptions::parse(&p).ok();
            }
        }
        let mut exclude_path: Vec<String> = d("exclude-path")
            .map(|v| v.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        exclude_path.extend(o("exclude-path"));
        Ok(Opts {
            vmids,
            all,
            exclude,
            mode: pick("mode", "snapshot"),
            compress: pick("compress", "0"),
            zstd: num("zstd", 1) as u32,
            storage,
            dumpdir,
            tmpdir: o("tmpdir").or_else(|| d("tmpdir")),
            prune,
            remove: boolean("remove", true),
            notes_template: o("notes-template"),
            protected: args.flag("protected"),
            quiet: args.flag("quiet"),
            stdout: args.flag("stdout"),
            lockwait: num("lockwait", 180),
            stopwait: num("stopwait", 10),
            ionice: num("ionice", 7) as u32,
            bwlimit: num("bwlimit", 0),
            stdexcludes: boolean("stdexcludes", true),
            exclude_path,
            node: o("node"),
            stop: args.flag("stop"),
            pool: o("pool"),
            cmdline,
        })
    }
}

/// `vzdump` entry point.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let def = if node.pve_major() >= 9 {
        &CMD_9
    } else {
        &CMD_8
    };
    let parsed = def.parse(args)?;
    let opts = Opts::from_args(node, &parsed)?;

    // Silent exit when asked to run on another node.
    if opts.node.as_deref().is_some_and(|n| n != node.name()) {
        return Ok(());
    }
    if let Some(pool) = &opts.pool {
        return Err(PveError::die(format!(
            "pool '{pool}' does not exist (pools are not emulated by the sandbox)"
        )));
    }
    let (local, skip) = included_guests(node, &opts)?;
    if opts.stop && local.is_empty() {
        return Ok(());
    }
    // Guests that all live on other nodes: silent exit.
    if local.is_empty() && !opts.all {
        return Ok(());
    }
    if opts.stdout && local.len() != 1 {
        return Err(PveError::die(
            "you can only backup a single VM with option --stdout",
        ));
    }

    // Where the archive goes with --stdout, and where the log goes.
    let archive_out = if opts.stdout {
        let saved = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| PveError::io("dup stdout", "/dev/stdout", e))?;
        let _ = std::io::stdout().flush();
        nix::unistd::dup2(std::io::stderr().as_raw_fd(), std::io::stdout().as_raw_fd())
            .map_err(|e| PveError::io("redirect stdout", "/dev/stdout", e.into()))?;
        Some(saved)
    } else {
        None
    };
    if opts.quiet {
        let null = fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(|e| PveError::io("open", "/dev/null", e))?;
        if !opts.stdout {
            let _ = nix::unistd::dup2(null.as_raw_fd(), std::io::stdout().as_raw_fd());
        }
        let _ = nix::unistd::dup2(null.as_raw_fd(), std::io::stderr().as_raw_fd());
    }

    task::run_worker(|w| {
        let mut job = Job::new(node, opts, w, archive_out)?;
        let _global = job.getlock()?;
        job.exec_backup(&local, &skip)
    })
}

/// `get_included_guests`: (local vmids incl. unknown ones, other nodes' vmids).
fn included_guests(node: &Node, opts: &Opts) -> Result<(Vec<u32>, Vec<u32>)> {
    let others = node.other_guests()?;
    let local_ids = node.local_vmids()?;
    let candidates: Vec<u32> = if opts.all {
        let mut ids: Vec<u32> = local_ids.clone();
        ids.extend(others.iter().map(|g| g.vmid));
        ids.retain(|v| !opts.exclude.contains(v));
        ids
    } else {
        opts.vmids.clone()
    };
    let mut local = Vec::new();
    let mut skip = Vec::new();
    for v in candidates {
        if local_ids.contains(&v) {
            local.push(v);
        } else if others.iter().any(|g| g.vmid == v) {
            skip.push(v);
        } else {
            // Unknown ids fail visibly later.
            local.push(v);
        }
    }
    local.sort_unstable();
    local.dedup();
    skip.sort_unstable();
    skip.dedup();
    Ok((local, skip))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Info,
    Warn,
    Err,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Info => "INFO:",
            Level::Warn => "WARN:",
            Level::Err => "ERROR:",
        }
    }
}

/// Where the backup goes.
#[derive(Debug, Clone)]
struct Target {
    storage: Option<String>,
    dumpdir: PathBuf,
    prune: KeepOptions,
    max_protected: i64,
}

/// One running job (`PVE::VZDump` object).
struct Job<'a> {
    node: &'a Node,
    opts: Opts,
    w: &'a mut Worker,
    archive_out: Option<OwnedFd>,
    target: Target,
    cfg: StorageCfg,
    t0_clock: i64,
    t0: Instant,
    /// The per-guest log being written (lines with timestamps), if any.
    guest_log: Option<String>,
}

/// Per-guest state the cleanup needs.
#[derive(Debug, Default)]
struct Cleanup {
    unlock: bool,
    restart: bool,
    resume: bool,
    remove_snapshot: bool,
    stop_time: Option<i64>,
}

impl<'a> Job<'a> {
    /// `PVE::VZDump::new`: storage checks, every problem collected.
    fn new(
        node: &'a Node,
        mut opts: Opts,
        w: &'a mut Worker,
        archive_out: Option<OwnedFd>,
    ) -> Result<Job<'a>> {
        if opts.storage.is_some() && opts.stdout {
            return Err(PveError::die(
                "cannot use options 'storage' and 'stdout' at the same time",
            ));
        }
        if opts.storage.is_some() && opts.dumpdir.is_some() {
            return Err(PveError::die(
                "cannot use options 'storage' and 'dumpdir' at the same time",
            ));
        }
        if opts.storage.is_none() && opts.dumpdir.is_none() {
            opts.storage = Some("local".into());
        }
        let cfg = StorageCfg::load(node)?;
        let mut errors: Vec<String> = Vec::new();
        let mut dumpdir = None;
        let mut storage_prune = None;
        let mut max_protected = -1;
        if let Some(sid) = opts.storage.clone() {
            if let Err(e) = cfg.check_enabled(node, &sid) {
                errors.push(format!(
                    "could not activate storage '{sid}': {}",
                    e.render().0
                ));
            }
            match cfg.require(&sid) {
                Err(e) => errors.push(format!(
                    "could not get storage information for '{sid}': {}",
                    e.render().0
                )),
                Ok(s) if !s.has_content("backup") => errors.push(format!(
                    "could not get storage information for '{sid}': can't use storage '{sid}' for backups - wrong content type"
                )),
                Ok(s) => match s.dump_dir() {
                    Some(d) => {
                        dumpdir = Some(d);
                        storage_prune = s.prune_backups().and_then(|p| KeepOptions::parse(p).ok());
                        max_protected = s
                            .get("max-protected-backups")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(-1);
                    }
                    None => errors.push(format!(
                        "could not get storage information for '{sid}': storage type '{}' is not emulated by the sandbox",
                        s.kind
                    )),
                },
            }
        } else if let Some(d) = &opts.dumpdir {
            let d = d.trim_end_matches('/').to_string();
            if !Path::new(&d).is_dir() {
                errors.push(format!("dumpdir '{d}' does not exist"));
            }
            dumpdir = Some(PathBuf::from(d));
        }
        if let Some(t) = &opts.tmpdir {
            if !Path::new(t).is_dir() {
                errors.push(format!("tmpdir '{t}' does not exist"));
            }
        }
        if !errors.is_empty() {
            return Err(PveError::die(errors.join("\n")));
        }
        let dumpdir = dumpdir.unwrap_or_default();
        fs::create_dir_all(&dumpdir).map_err(|e| PveError::io("create dir", &dumpdir, e))?;
        let prune = opts
            .prune
            .clone()
            .or(storage_prune)
            .unwrap_or_else(KeepOptions::keep_all);
        if prune.keep_all == Some(true) {
            opts.remove = false;
        }
        let t0_clock = clock::now(node);
        Ok(Job {
            node,
            target: Target {
                storage: opts.storage.clone(),
                dumpdir,
                prune,
                max_protected,
            },
            opts,
            w,
            archive_out,
            cfg,
            t0_clock,
            t0: Instant::now(),
            guest_log: None,
        })
    }

    /// The job's clock: the override (or real time) at start plus real elapsed time.
    fn now(&self) -> i64 {
        self.t0_clock + self.t0.elapsed().as_secs() as i64
    }

    /// `debugmsg`: every line to the task output, and with `to_file` to the guest log.
    fn msg(&mut self, level: Level, text: &str, to_file: bool) {
        let text = text.trim_end_matches('\n');
        if text.is_empty() {
            return;
        }
        let stamp = clock::fmt_datetime(self.now());
        for line in text.split('\n') {
            let l = format!("{} {line}", level.prefix());
            if level == Level::Warn {
                self.w.warn(line);
            } else {
                self.w.log(&l);
            }
            if to_file {
                if let Some(log) = self.guest_log.as_mut() {
                    log.push_str(&format!("{stamp} {l}\n"));
                }
            }
        }
    }
    fn info(&mut self, text: &str) {
        self.msg(Level::Info, text, true);
    }

    /// The global lock (`getlock`).
    fn getlock(&mut self) -> Result<lock::FileLock> {
        let path = self.node.vzdump_lock();
        let shown = path.display().to_string();
        if let Some(l) = lock::try_lock_file(&path, Duration::ZERO, || {})? {
            return Ok(l);
        }
        if self.opts.lockwait == 0 {
            let m = format!("can't acquire lock '{shown}' (wait = 0)");
            self.msg(Level::Err, &m, false);
            return Err(PveError::die(m));
        }
        self.msg(Level::Info, "trying to get global lock - waiting...", false);
        let wait = Duration::from_secs(self.opts.lockwait.saturating_mul(60));
        match lock::try_lock_file(&path, wait, || {})? {
            Some(l) => {
                self.msg(Level::Info, "got global lock", false);
                Ok(l)
            }
            None => {
                let m = format!("can't acquire lock '{shown}' - got timeout");
                self.msg(Level::Err, &m, false);
                Err(PveError::die(m))
            }
        }
    }

    /// `exec_backup`: every guest, then the job summary.
    fn exec_backup(&mut self, local: &[u32], skip: &[u32]) -> Result<()> {
        let line = format!("starting new backup job: {}", self.opts.cmdline);
        self.msg(Level::Info, &line, false);
        if !skip.is_empty() {
            let s: Vec<String> = skip.iter().map(u32::to_string).collect();
            self.msg(
                Level::Info,
                &format!("skip external VMs: {}", s.join(", ")),
                false,
            );
        }
        let mut errcount = 0;
        for &vmid in local {
            if !self.exec_backup_task(vmid) {
                errcount += 1;
            }
        }
        if errcount > 0 {
            self.msg(Level::Info, "Backup job finished with errors", false);
            Err(PveError::TaskFailed("job errors".into()))
        } else {
            self.msg(Level::Info, "Backup job finished successfully", false);
            Ok(())
        }
    }

    /// One guest; returns true on success.
    fn exec_backup_task(&mut self, vmid: u32) -> bool {
        let start = self.now();
        let mut cleanup = Cleanup::default();
        let mut paths = TaskPaths::default();
        let res = self.backup_guest(vmid, &mut cleanup, &mut paths);

        // clean-up, as PVE: unlock, snapshot removal, resume/restart.
        if cleanup.unlock {
            if let Err(e) = lock::remove_lock(self.node, vmid, Some("backup")) {
                self.msg(Level::Warn, &e.render().0, false);
            }
        }
        if cleanup.remove_snapshot {
            self.info("cleanup temporary 'vzdump' snapshot");
            if let Err(e) = self.delete_vzdump_snapshot(vmid) {
                self.msg(
                    Level::Warn,
                    &format!(
                        "snapshot 'vzdump' was not (fully) removed - {}",
                        e.render().0
                    ),
                    false,
                );
            }
        }
        if cleanup.resume || cleanup.restart {
            let r = if cleanup.resume {
                self.info("resume vm");
                lxc::unfreeze(self.node, vmid)
            } else if !lxc::is_running(self.node, vmid) {
                self.info("restarting vm");
                self.start_ct(vmid)
            } else {
                Ok(())
            };
            match r {
                Err(e) => self.msg(Level::Warn, &e.render().0, false),
                Ok(()) => self.log_online_again(&mut cleanup),
            }
        }
        if let Some(t) = &paths.tmptar {
            let _ = fs::remove_file(t);
        }
        if let Some(t) = &paths.tmpdir {
            let _ = fs::remove_dir_all(t);
        }

        let ok = match res {
            Err(e) => {
                let text = match e {
                    PveError::TaskFailed(m) => m,
                    other => other.render().0,
                };
                self.msg(
                    Level::Err,
                    &format!("Backup of VM {vmid} failed - {text}"),
                    true,
                );
                let at = clock::fmt_datetime(self.now());
                self.msg(Level::Info, &format!("Failed at {at}"), false);
                false
            }
            Ok(()) => {
                let took = naming::format_duration(self.now() - start);
                self.info(&format!("Finished Backup of VM {vmid} ({took})"));
                let at = clock::fmt_datetime(self.now());
                self.msg(Level::Info, &format!("Backup finished at {at}"), false);
                true
            }
        };
        if let Some(log) = self.guest_log.take() {
            let tmplog = self
                .node
                .root()
                .join(format!("var/log/vzdump/lxc-{vmid}.log"));
            if let Some(d) = tmplog.parent() {
                let _ = fs::create_dir_all(d);
            }
            let _ = fs::write(&tmplog, &log);
            if let Some(lf) = &paths.logfile {
                if let Err(e) = fs::write(lf, &log) {
                    self.msg(
                        Level::Warn,
                        &format!("unable to write '{}': {e}", lf.display()),
                        false,
                    );
                }
            }
        }
        ok
    }

    fn log_online_again(&mut self, cleanup: &mut Cleanup) {
        if let Some(stop) = cleanup.stop_time.take() {
            let delay = self.now() - stop;
            let d = if delay < 1 {
                "<1".to_string()
            } else {
                delay.to_string()
            };
            self.info(&format!("guest is online again after {d} seconds"));
        }
    }

    fn start_ct(&mut self, vmid: u32) -> Result<()> {
        let c = conf::load(self.node, vmid)?;
        lxc::start(self.node, vmid, &c.main, &self.cfg)
    }

    /// The body of `exec_backup_task`'s eval.
    fn backup_guest(
        &mut self,
        vmid: u32,
        cleanup: &mut Cleanup,
        paths: &mut TaskPaths,
    ) -> Result<()> {
        if !self.node.conf_path(vmid).exists() {
            return Err(PveError::die(format!("unable to find VM '{vmid}'")));
        }
        let backup_time = self.now();
        let basename = naming::basename("lxc", vmid, backup_time);
        let dumpdir = self.target.dumpdir.clone();

        self.check_backup_limit(vmid)?;

        paths.logfile = Some(dumpdir.join(format!("{basename}.log")));
        let comp = naming::compressor(&self.opts.compress, self.opts.zstd, 0, num_cpus());
        let ext = match &comp {
            Some(c) => format!(".tar.{}", c.ext),
            None => ".tar".to_string(),
        };
        let target = dumpdir.join(format!("{basename}{ext}"));
        let tmptar = PathBuf::from(naming::tmp_name(&target.display().to_string()));
        if !self.opts.stdout {
            let _ = fs::remove_file(&tmptar);
            paths.tmptar = Some(tmptar.clone());
        }
        let tmpdir = match &self.opts.tmpdir {
            Some(t) => PathBuf::from(format!(
                "{}/vzdumptmp{}_{vmid}",
                t.trim_end_matches('/'),
                std::process::id()
            )),
            None => dumpdir.join(format!("{basename}.tmp")),
        };
        let _ = fs::remove_dir_all(&tmpdir);
        fs::create_dir_all(&tmpdir).map_err(|_| {
            PveError::die(format!(
                "unable to create temporary directory '{}'",
                tmpdir.display()
            ))
        })?;
        paths.tmpdir = Some(tmpdir.clone());
        if let Some(lf) = &paths.logfile {
            let _ = fs::remove_file(lf);
        }
        self.guest_log = Some(String::new());

        self.info(&format!("Starting Backup of VM {vmid} (lxc)"));
        let at = clock::fmt_datetime(self.now());
        self.msg(Level::Info, &format!("Backup started at {at}"), false);

        let running = lxc::is_running(self.node, vmid);
        self.info(&format!(
            "status = {}",
            if running { "running" } else { "stopped" }
        ));

        lock::set_lock(self.node, vmid, "backup")?;
        cleanup.unlock = true;

        let mut mode = if running {
            self.opts.mode.clone()
        } else {
            "stop".to_string()
        };

        let mut prepared = None;
        if mode == "snapshot" {
            match self.prepare(vmid, &mode) {
                Ok(p) => prepared = Some(p),
                Err(PveError::Die(m)) if m.starts_with("mode failure") => {
                    self.info(&m);
                    self.info("trying 'suspend' mode instead");
                    mode = "suspend".into();
                }
                Err(e) => return Err(e),
            }
        }
        self.info(&format!("backup mode: {mode}"));
        if self.opts.bwlimit > 0 {
            let bw = self.opts.bwlimit;
            self.info(&format!("bandwidth limit: {bw} KiB/s"));
        }
        let ionice = self.opts.ionice;
        self.info(&format!("ionice priority: {ionice}"));

        let source: PathBuf;
        match mode.as_str() {
            "stop" => {
                let p = self.prepare(vmid, &mode)?;
                source = p.rootfs.clone();
                if running {
                    self.info("stopping virtual guest");
                    cleanup.stop_time = Some(self.now());
                    let timeout = self.opts.stopwait.saturating_mul(60);
                    if !lxc::shutdown(self.node, vmid, timeout)? {
                        lxc::stop(self.node, vmid)?;
                    }
                    cleanup.restart = true;
                }
                prepared = Some(p);
            }
            "suspend" => {
                let p = self.prepare(vmid, &mode)?;
                let pid = lxc::init_pid(self.node, vmid).ok_or_else(|| {
                    PveError::die(format!("unable to get PID for CT {vmid} (not running?)"))
                })?;
                let from = format!("/proc/{pid}/root/");
                self.rsync(&from, &tmpdir, "first")?;
                self.info("suspending guest");
                cleanup.stop_time = Some(self.now());
                lxc::freeze(self.node, vmid)?;
                cleanup.resume = true;
                self.rsync(&from, &tmpdir, "final")?;
                self.info("resuming guest");
                cleanup.resume = false;
                lxc::unfreeze(self.node, vmid)?;
                self.log_online_again(cleanup);
                source = tmpdir.clone();
                prepared = Some(p);
            }
            _ => {
                // snapshot mode, prepared above
                let p = prepared
                    .clone()
                    .ok_or_else(|| PveError::die("internal error - snapshot mode not prepared"))?;
                self.info("create storage snapshot 'vzdump'");
                self.create_vzdump_snapshot(vmid, &p.volid)?;
                cleanup.remove_snapshot = true;
                source = storage::snap_path(self.node, &p.volid, "vzdump")?;
            }
        }
        let prepared =
            prepared.ok_or_else(|| PveError::die("internal error - guest not prepared"))?;

        // assemble: the config and firewall file for ./etc/vzdump/
        self.assemble(vmid, &tmpdir)?;

        let mut excludes = Vec::new();
        let mut patterns: Vec<String> = self.opts.exclude_path.clone();
        if self.opts.stdexcludes {
            patterns.extend(["/tmp/?*", "/var/tmp/?*", "/var/run/?*.pid"].map(String::from));
        }
        for p in patterns {
            if p.ends_with('/') && mode != "suspend" {
                self.msg(
                    Level::Warn,
                    &format!("tar does not match exclusion with a trailing slash '{p}'"),
                    true,
                );
            }
            excludes.push(if p.starts_with('/') {
                format!(".{p}")
            } else {
                p
            });
        }
        let spec = CreateSpec {
            extra: vec![
                (tmpdir.clone(), "./etc/vzdump/pct.conf".into()),
                (tmpdir.clone(), "./etc/vzdump/pct.fw".into()),
            ],
            rootfs: source,
            excludes,
            zstd_threads: comp
                .as_ref()
                .and_then(|c| {
                    c.argv
                        .iter()
                        .find_map(|a| a.strip_prefix("--threads=").and_then(|n| n.parse().ok()))
                })
                .unwrap_or(1),
        };
        let compression = match comp.as_ref().map(|c| c.ext) {
            Some("zst") => Compression::Zstd,
            Some("gz") => Compression::Gzip,
            Some("lzo") => Compression::Lzo,
            _ => Compression::None,
        };
        // In suspend mode the rsync copy already has host (shifted) owners;
        // tar runs in the CT's user namespace in every mode so the archive
        // holds the container's own ids.
        let map = prepared.map;

        if let Some(fd) = self.archive_out.take() {
            self.info("sending archive to stdout");
            let out = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            let mut lines = Vec::new();
            let r = archive::create(&spec, &out, compression, map, &mut |l| {
                lines.push(l.to_string())
            });
            drop(fd);
            for l in lines {
                self.info(&l);
            }
            return r;
        }

        self.info(&format!("creating vzdump archive '{}'", target.display()));
        let mut lines = Vec::new();
        let r = archive::create(&spec, &tmptar, compression, map, &mut |l| {
            lines.push(l.to_string())
        });
        for l in lines {
            self.info(&l);
        }
        r?;
        fs::rename(&tmptar, &target).map_err(|_| {
            PveError::die(format!(
                "unable to rename '{}' to '{}'",
                tmptar.display(),
                target.display()
            ))
        })?;
        paths.tmptar = None;
        let size = fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
        self.info(&format!("archive file size: {}", naming::format_size(size)));

        if self.target.storage.is_some() {
            if let Some(t) = self.opts.notes_template.clone().filter(|t| !t.is_empty()) {
                self.info("adding notes to backup");
                let vars = naming::NotesVars {
                    cluster: "standalone node".into(),
                    guestname: prepared.hostname.clone(),
                    node: self.node.name().to_string(),
                    vmid,
                };
                match naming::render_notes(&t, &vars) {
                    Err(e) => self.msg(Level::Warn, &format!("unable to add notes - {e}"), true),
                    Ok(n) => {
                        let p = format!("{}.notes", target.display());
                        if let Err(e) = fs::write(&p, n) {
                            self.msg(Level::Warn, &format!("unable to add notes - {e}"), true);
                        }
                    }
                }
            }
            if self.opts.protected {
                self.info("marking backup as protected");
                let p = naming::protection_file(&target.display().to_string());
                fs::write(&p, "")
                    .map_err(|e| PveError::die(format!("unable to set protected flag - {e}")))?;
            }
        }

        if self.opts.remove {
            self.prune_after_backup(vmid)?;
        }
        Ok(())
    }

    /// The max-backup guard (prune limits with `--remove 0`, or `--protected`).
    fn check_backup_limit(&mut self, vmid: u32) -> Result<()> {
        let limit = self.target.prune.backup_limit();
        if !((limit > 0 && !self.opts.remove) || self.opts.protected) {
            return Ok(());
        }
        let group = backup_group(&self.target.dumpdir, vmid);
        let protected = group.iter().filter(|b| b.protected).count() as i64;
        let count = group.len() as u64 - protected as u64;
        if self.opts.protected {
            let max = self.target.max_protected;
            if max > -1 && protected >= max {
                return Err(PveError::die(format!(
                    "The number of protected backups per guest is limited to {max} on storage '{}'",
                    self.target.storage.clone().unwrap_or_default()
                )));
            }
        } else if count >= limit {
            return Err(PveError::die(format!(
                "There is a max backup limit of {limit} enforced by the target storage or the vzdump parameters. Either increase the limit or delete old backups."
            )));
        }
        Ok(())
    }

    /// Prune the group just written, as `exec_backup_task` does.
    fn prune_after_backup(&mut self, vmid: u32) -> Result<()> {
        let keep = self.target.prune.clone();
        self.info(&format!(
            "prune older backups with retention: {}",
            keep.log_string()
        ));
        let group = backup_group(&self.target.dumpdir, vmid);
        let entries: Vec<PruneEntry> = group
            .iter()
            .map(|b| PruneEntry {
                id: b.path.display().to_string(),
                ctime: b.ctime,
                backup_type: "lxc".into(),
                vmid: Some(vmid),
                mark: b.protected.then_some(Mark::Protected),
            })
            .collect();
        let marked = prune::mark_all(entries, &keep, &local_offset);
        let mut pruned = 0;
        let mut failed = false;
        for e in marked.iter().filter(|e| e.mark == Some(Mark::Remove)) {
            pruned += 1;
            let name = e.id.rsplit('/').next().unwrap_or(&e.id).to_string();
            match &self.target.storage {
                None => self.info(&format!("delete old backup '{}'", e.id)),
                Some(sid) => self.info(&format!("removing backup '{sid}:backup/{name}'")),
            }
            if let Err(err) = archive_remove(Path::new(&e.id)) {
                match &self.target.storage {
                    None => return Err(err),
                    Some(sid) => {
                        self.msg(
                            Level::Err,
                            &format!(
                                "error when removing backup '{sid}:backup/{name}' - {}",
                                err.render().0
                            ),
                            true,
                        );
                        failed = true;
                    }
                }
            }
        }
        if failed {
            return Err(PveError::die("error pruning backups - check log"));
        }
        let extra = if pruned > 0 {
            " not covered by keep-retention policy"
        } else {
            ""
        };
        self.info(&format!("pruned {pruned} backup(s){extra}"));
        Ok(())
    }

    /// `PVE::VZDump::LXC::prepare` for one mode.
    fn prepare(&mut self, vmid: u32, mode: &str) -> Result<Prepared> {
        let c = conf::load(self.node, vmid)?;
        let sec = &c.main;
        if let Some(h) = sec.get("hostname") {
            self.info(&format!("CT Name: {h}"));
        }
        let hostname = sec.hostname_or_default(vmid);
        let map = IdMap::for_ct(sec.unprivileged());
        let mut volid = None;
        for (key, vol) in sec.volumes() {
            if key == "rootfs" {
                self.info("including mount point rootfs ('/') in backup");
                volid = Some(vol);
                continue;
            }
            if !key.starts_with("mp") {
                continue;
            }
            let prop = sec
                .get(&key)
                .and_then(|v| conf::parse_prop(&conf::MP_SCHEMA, &key, v).ok());
            let mp = prop
                .as_ref()
                .and_then(|p| p.get("mp").map(String::from))
                .unwrap_or_default();
            let is_bind = vol.starts_with('/');
            let backup = prop.as_ref().and_then(|p| p.get("backup")) == Some("1");
            if !is_bind && backup {
                return Err(PveError::die(format!(
                    "backup of mount point '{key}' is not emulated by the sandbox"
                )));
            }
            let (kind, reason) = if is_bind {
                ("bind", "not a volume")
            } else {
                ("volume", "disabled")
            };
            self.info(&format!(
                "excluding {kind} mount point {key} ('{mp}') from backup ({reason})"
            ));
        }
        let volid = volid.ok_or_else(|| PveError::die("missing 'rootfs' - internal error"))?;
        if mode == "snapshot" {
            if !storage::all_support_snapshots(&self.cfg, std::slice::from_ref(&volid)) {
                return Err(PveError::die(
                    "mode failure - some volumes do not support snapshots",
                ));
            }
            if c.snapshots.contains_key("vzdump") {
                self.info("found old vzdump snapshot (force removal)");
                self.delete_vzdump_snapshot(vmid)?;
            }
        }
        let rootfs = lxc::rootfs_path(self.node, &self.cfg, sec)?;
        Ok(Prepared {
            volid,
            rootfs,
            map,
            hostname,
        })
    }

    /// `pct.conf` and `pct.fw` into `<tmpdir>/etc/vzdump/`.
    fn assemble(&mut self, vmid: u32, tmpdir: &Path) -> Result<()> {
        let mut c = conf::load(self.node, vmid)?;
        c.main.remove("lock");
        c.main.remove("parent");
        c.snapshots.clear();
        c.pending = Default::default();
        let dir = tmpdir.join("etc/vzdump");
        fs::create_dir_all(&dir).map_err(|e| PveError::io("create dir", &dir, e))?;
        let p = dir.join("pct.conf");
        fs::write(&p, c.write_string()?).map_err(|e| PveError::io("write", &p, e))?;
        let fw_src = self.node.etc_pve().join(format!("firewall/{vmid}.fw"));
        let fw = fs::read(&fw_src).unwrap_or_default();
        let p = dir.join("pct.fw");
        fs::write(&p, fw).map_err(|e| PveError::io("write", &p, e))
    }

    /// The suspend-mode copy (`$rsync_vm`).
    fn rsync(&mut self, from: &str, to: &Path, text: &str) -> Result<()> {
        self.info(&format!("starting {text} sync {from} to {}", to.display()));
        let mut cmd = Command::new("rsync");
        cmd.args([
            "--stats",
            "-h",
            "-X",
            "-A",
            "--numeric-ids",
            "-aH",
            "--delete",
            "--no-whole-file",
            "--sparse",
            "--one-file-system",
            "--relative",
        ]);
        if self.opts.bwlimit > 0 {
            cmd.arg(format!("--bwlimit={}", self.opts.bwlimit));
        }
        // The relative-path trick PVE uses: `<from>/./` keeps names relative.
        cmd.arg(format!("{}/./", from.trim_end_matches('/')));
        cmd.arg(to);
        let started = Instant::now();
        let (argv, out) = crate::util::run_output(&mut cmd)?;
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            if !l.trim().is_empty() {
                self.msg(Level::Err, l, true);
            }
        }
        crate::util::check_status(&argv, out.status)?;
        let transferred = String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("Total transferred file size: ")
                    .map(String::from)
            })
            .unwrap_or_default();
        let delay = started.elapsed().as_secs();
        self.info(&format!(
            "{text} sync finished - transferred {transferred} in {delay}s"
        ));
        Ok(())
    }

    /// `snapshot_create($vmid, 'vzdump', 0, "vzdump backup snapshot")`.
    fn create_vzdump_snapshot(&mut self, vmid: u32, volid: &str) -> Result<()> {
        let now = self.now();
        lock::update_config(self.node, vmid, |c: &mut CtConfig| {
            let mut snap = c.main.clone();
            snap.remove("lock");
            snap.set("snaptime", now.to_string());
            snap.set("description", "vzdump backup snapshot\n");
            c.snapshots.insert("vzdump".into(), snap);
            c.main.set("parent", "vzdump");
            Ok(())
        })?;
        storage::volume_snapshot(self.node, &self.cfg, volid, "vzdump")
    }

    /// `snapshot_delete($vmid, 'vzdump', 1)`: volume copy and config section.
    fn delete_vzdump_snapshot(&mut self, vmid: u32) -> Result<()> {
        let c = conf::load(self.node, vmid)?;
        if let Some((_, vol)) = c.main.volumes().into_iter().find(|(k, _)| k == "rootfs") {
            storage::volume_snapshot_delete(self.node, &self.cfg, &vol, "vzdump")?;
        }
        lock::update_config(self.node, vmid, |c: &mut CtConfig| {
            if let Some(snap) = c.snapshots.remove("vzdump") {
                if c.main.get("parent") == Some("vzdump") {
                    match snap.get("parent") {
                        Some(p) => c.main.set("parent", p.to_string()),
                        None => {
                            c.main.remove("parent");
                        }
                    }
                }
                for s in c.snapshots.values_mut() {
                    if s.get("parent") == Some("vzdump") {
                        match snap.get("parent") {
                            Some(p) => s.set("parent", p.to_string()),
                            None => {
                                s.remove("parent");
                            }
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Temporary files of one guest's backup.
#[derive(Debug, Default)]
struct TaskPaths {
    logfile: Option<PathBuf>,
    tmptar: Option<PathBuf>,
    tmpdir: Option<PathBuf>,
}

/// What `prepare` found out.
#[derive(Debug, Clone)]
struct Prepared {
    volid: String,
    rootfs: PathBuf,
    map: Option<IdMap>,
    hostname: String,
}

/// One existing backup of the guest (standard names only).
#[derive(Debug, Clone)]
struct ExistingBackup {
    path: PathBuf,
    ctime: i64,
    protected: bool,
}

/// `get_backup_file_list`: standard-named `vzdump-lxc-<vmid>-*` archives.
fn backup_group(dir: &Path, vmid: u32) -> Vec<ExistingBackup> {
    let prefix = format!("vzdump-lxc-{vmid}-");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(&prefix) {
            continue;
        }
        let Some(info) = naming::archive_info(&name) else {
            continue;
        };
        let Some(std) = &info.std else { continue };
        if std.vmid != vmid {
            continue;
        }
        let path = dir.join(&name);
        let protected = Path::new(&naming::protection_file(&path.display().to_string())).exists();
        out.push(ExistingBackup {
            path,
            ctime: std.ctime,
            protected,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// `PVE::Storage::archive_remove`: refuse protected ones, drop log and notes too.
pub fn archive_remove(path: &Path) -> Result<()> {
    let shown = path.display().to_string();
    if Path::new(&naming::protection_file(&shown)).exists() {
        return Err(PveError::die(format!(
            "cannot remove protected archive '{shown}'"
        )));
    }
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(PveError::die(format!(
                "removing archive {shown} failed: {e}"
            )))
        }
    }
    if let Some(info) = naming::archive_info(&shown) {
        let dir = path.parent().unwrap_or(Path::new("/"));
        for f in [info.log_filename(), info.notes_filename()]
            .into_iter()
            .flatten()
        {
            let _ = fs::remove_file(dir.join(f));
        }
    }
    Ok(())
}

/// The local UTC offset at a time (UTC if unknown), for prune period ids.
pub fn local_offset(ts: i64) -> time::UtcOffset {
    clock::local(ts).offset()
}

fn num_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_lists() {
        assert_eq!(parse_vmid_list("100,101 102").unwrap(), [100, 101, 102]);
        assert!(parse_vmid_list("99").is_err());
        assert!(parse_vmid_list("abc").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shellquote("local"), "local");
        assert_eq!(
            shellquote("keep-last=3,keep-daily=7"),
            "keep-last=3,keep-daily=7"
        );
        assert_eq!(shellquote("{{guestname}} x"), "'{{guestname}} x'");
        assert_eq!(shellquote("it's"), "'it'\\''s'");
    }

    #[test]
    fn group_listing_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for n in [
            "vzdump-lxc-101-2024_05_01-10_00_00.tar.zst",
            "vzdump-lxc-101-2024_05_01-10_00_00.log",
            "vzdump-lxc-101-2024_05_02-10_00_00.tar",
            "vzdump-lxc-101-2024_05_02-10_00_00.tar.protected",
            "vzdump-lxc-1010-2024_05_02-10_00_00.tar",
            "vzdump-lxc-101-renamed.tar",
        ] {
            fs::write(d.join(n), "x").unwrap();
        }
        let g = backup_group(d, 101);
        assert_eq!(g.len(), 2);
        assert!(!g[0].protected && g[1].protected);
        archive_remove(&g[0].path).unwrap();
        assert!(!d.join("vzdump-lxc-101-2024_05_01-10_00_00.log").exists());
        let e = archive_remove(&g[1].path).unwrap_err();
        assert!(e
            .render()
            .0
            .starts_with("cannot remove protected archive '"));
    }
}
