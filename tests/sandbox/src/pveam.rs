//! `pveam`: the appliance (template) manager (pve-cli.md §9, PVE 9 §9.7).
//!
//! The sandbox's "download server" is the appliance mirror
//! (`$PVE_SANDBOX_MIRROR`): `pveam update` copies its index
//! `aplinfo-pve-<major>.dat` (falling back to `aplinfo-pve-8.dat`) into the
//! cache `<root>/var/lib/pve-manager/apl-info/download.proxmox.com`, and
//! `pveam download` copies `<mirror>/<Location>` into the storage's
//! `template/cache` through `<dest>.tmp_dwnl.<pid>`, verifying the index's
//! checksum (sha512, else md5) like `PVE::Tools::download_file_from_url`.
//! The mirror path stands in for the URL in every message. Like the real
//! tool, `update` and `download` exit 0 even when they fail (the error text
//! is on stderr).

pub mod aplinfo;

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cli::{CmdDef, OptDef, OptType};
use crate::clock;
use crate::error::{PveError, Result};
use crate::node::Node;
use crate::pvesm;
use crate::storage::{self, StorageCfg};
use crate::task::{self, Worker};

use aplinfo::AplIndex;

/// The cache file names, one per index source (as the real hosts).
const SOURCES: [&str; 2] = ["download.proxmox.com", "releases.turnkeylinux.org"];

static UPDATE: CmdDef<'static> = CmdDef {
    usage: "pveam update",
    args: &[],
    opts: &[],
    extra_args: false,
};
static AVAILABLE: CmdDef<'static> = CmdDef {
    usage: "pveam available  [OPTIONS]",
    args: &[],
    opts: &[OptDef::new(
        "section",
        OptType::Enum(&["system", "mail", "turnkeylinux"]),
    )],
    extra_args: false,
};
static LIST: CmdDef<'static> = CmdDef {
    usage: "pveam list <storage>",
    args: &[("storage", OptType::Str)],
    opts: &[],
    extra_args: false,
};
static DOWNLOAD: CmdDef<'static> = CmdDef {
    usage: "pveam download <storage> <template>",
    args: &[("storage", OptType::Str), ("template", OptType::Str)],
    opts: &[],
    extra_args: false,
};
static REMOVE: CmdDef<'static> = CmdDef {
    usage: "pveam remove <template_path>",
    args: &[("template_path", OptType::Str)],
    opts: &[],
    extra_args: false,
};

/// `pveam` entry point.
pub fn main(node: &Node, args: &[String]) -> Result<()> {
    let Some(sub) = args.first() else {
        return Err(PveError::bad_request("no command specified"));
    };
    let rest = &args[1..];
    match sub.as_str() {
        "update" => update(node, rest),
        "available" => available(node, rest),
        "list" => list(node, rest),
        "download" => download(node, rest),
        "remove" => remove(node, rest),
        s => Err(PveError::bad_request(format!(
            "unknown command 'pveam {s}'"
        ))),
    }
}

/// Append timestamped lines to `<root>/var/log/pveam.log` (best effort).
fn logmsg(node: &Node, msg: &str) {
    let p = node.pveam_log();
    if let Some(d) = p.parent() {
        let _ = fs::create_dir_all(d);
    }
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&p) {
        let t = clock::fmt_datetime(clock::now(node));
        for line in msg.trim_end().lines() {
            let _ = writeln!(f, "{t} {line}");
        }
    }
}

/// The mirror's index file for this node's PVE major.
fn mirror_index(node: &Node) -> PathBuf {
    let own = node
        .mirror()
        .join(format!("aplinfo-pve-{}.dat", node.pve_major()));
    if own.exists() {
        own
    } else {
        node.mirror().join("aplinfo-pve-8.dat")
    }
}

fn update_inner(node: &Node) -> std::result::Result<(), String> {
    let src = mirror_index(node);
    let shown = src.display().to_string();
    logmsg(node, &format!("start download {shown}"));
    let text = fs::read_to_string(&src)
        .map_err(|e| format!("update failed - no data file '{shown}': {e}"))?;
    let idx = aplinfo::parse(&text, &node.mirror().display().to_string());
    if let Some(w) = idx.warnings.first() {
        return Err(format!("update failed: {w}"));
    }
    let dir = node.aplinfo_cache_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("update failed: unable to store data: {e}"))?;
    let tmp = dir.join(format!("pveam-{}.tmp.{}", SOURCES[0], std::process::id()));
    fs::write(&tmp, &text).map_err(|e| format!("update failed: unable to store data: {e}"))?;
    fs::rename(&tmp, dir.join(SOURCES[0])).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("update failed: unable to store data: {e}")
    })?;
    // The TurnKey index has no stand-in: keep an empty one so `available`
    // reads two sources like a real node, without warnings.
    let tk = dir.join(SOURCES[1]);
    if !tk.exists() {
        fs::write(&tk, "").map_err(|e| format!("update failed: unable to store data: {e}"))?;
    }
    logmsg(node, "update successful");
    Ok(())
}

fn update(node: &Node, args: &[String]) -> Result<()> {
    UPDATE.parse(args)?;
    logmsg(node, "starting update");
    match update_inner(node) {
        Ok(()) => println!("update successful"),
        Err(e) => {
            logmsg(node, &e);
            eprintln!(
                "update failed - see {} for details",
                node.pveam_log().display()
            );
        }
    }
    Ok(())
}

/// `PVE::APLInfo::load_data`: every cached index; read errors are warnings.
pub fn load_index(node: &Node) -> AplIndex {
    let mut idx = AplIndex::default();
    let dir = node.aplinfo_cache_dir();
    for host in SOURCES {
        let p = dir.join(host);
        match fs::read_to_string(&p) {
            Ok(text) => {
                let part = aplinfo::parse(&text, &node.mirror().display().to_string());
                for w in &part.warnings {
                    eprintln!("{w}");
                }
                idx.merge(part);
            }
            Err(e) => {
                let reason = if e.kind() == ErrorKind::NotFound {
                    "No such file or directory".to_string()
                } else {
                    e.to_string()
                };
                eprintln!("unable to open file '{}' - {reason}", p.display());
            }
        }
    }
    idx
}

fn available(node: &Node, args: &[String]) -> Result<()> {
    let a = AVAILABLE.parse(args)?;
    let idx = load_index(node);
    print!(
        "{}",
        aplinfo::format_available(&idx, a.opt("section"), node.pve_major())
    );
    Ok(())
}

fn list(node: &Node, args: &[String]) -> Result<()> {
    let a = LIST.parse(args)?;
    let cfg = StorageCfg::load(node)?;
    let sid = a.arg("storage");
    let s = cfg.check_enabled(node, sid)?;
    if !s.has_content("vztmpl") {
        return Err(PveError::die("Storage does not support templates!"));
    }
    let mut rows = Vec::new();
    if let Some(dir) = s.template_dir() {
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_file() && pvesm::template_format(&name, node.pve_major()).is_some() {
                    rows.push((format!("{sid}:vztmpl/{name}"), meta.len()));
                }
            }
        }
    }
    rows.sort_by_key(|r| r.0.to_lowercase());
    print!("{}", aplinfo::format_list(&rows));
    Ok(())
}

/// `get_file_hash`: the hex digest via coreutils.
fn file_hash(algo: &str, path: &Path) -> Result<String> {
    let tool = if algo == "sha512" {
        "sha512sum"
    } else {
        "md5sum"
    };
    let out = crate::util::run_capture(Command::new(tool).arg(path))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// IEC size as wget prints it (`120M`).
fn wget_size(n: u64) -> String {
    let units = ["", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}")
    } else {
        format!("{}{}", v.round() as u64, units[u])
    }
}

/// `download_file_from_url` with the mirror file as the "URL".
fn fetch(
    node: &Node,
    w: &mut Worker,
    dest: &Path,
    url: &str,
    checksum: (&str, &str),
) -> Result<()> {
    let (algo, expected) = checksum;
    w.log(&format!("downloading {url} to {}", dest.display()));
    if dest.is_file() {
        print!("calculating checksum of existing file...");
        let got = file_hash(algo, dest)?;
        if got.eq_ignore_ascii_case(expected) {
            w.log("OK, got correct file already, no need to download");
            return Ok(());
        }
        w.log("");
        return Err(PveError::die(format!(
            "checksum mismatch: got '{got}' != expect '{expected}', aborting"
        )));
    }
    let tmp = PathBuf::from(format!(
        "{}.tmp_dwnl.{}",
        dest.display(),
        std::process::id()
    ));
    let res = (|| -> Result<()> {
        let t = clock::fmt_datetime(clock::now(node));
        w.log(&format!("--{t}--  {url}"));
        let src = Path::new(url);
        let meta = match fs::metadata(src) {
            Ok(m) if m.is_file() => m,
            _ => {
                w.log("ERROR 404: Not Found.");
                return Err(PveError::die(format!(
                    "download failed: command 'wget --progress=dot:giga -O {} {url}' failed: exit code 8",
                    tmp.display()
                )));
            }
        };
        w.log(&format!(
            "Length: {} ({}) [application/octet-stream]",
            meta.len(),
            wget_size(meta.len())
        ));
        w.log(&format!("Saving to: '{}'", tmp.display()));
        let started = Instant::now();
        fs::copy(src, &tmp)
            .map_err(|e| PveError::die(format!("download failed: unable to copy '{url}': {e}")))?;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let rate = meta.len() as f64 / secs / (1024.0 * 1024.0);
        let t = clock::fmt_datetime(clock::now(node));
        w.log(&format!(
            "{t} ({rate:.1} MB/s) - '{}' saved [{}/{}]",
            tmp.display(),
            meta.len(),
            meta.len()
        ));
        print!("calculating checksum...");
        let _ = std::io::stdout().flush();
        let got = file_hash(algo, &tmp)?;
        if !got.eq_ignore_ascii_case(expected) {
            w.log("");
            return Err(PveError::die(format!(
                "checksum mismatch: got '{got}' != expect '{expected}'"
            )));
        }
        w.log("OK, checksum verified");
        fs::rename(&tmp, dest)
            .map_err(|e| PveError::die(format!("unable to rename temporary file: {e}")))
    })();
    if let Err(e) = res {
        if tmp.exists() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(e);
    }
    w.log(&format!(
        "download of '{url}' to '{}' finished",
        dest.display()
    ));
    Ok(())
}

fn download(node: &Node, args: &[String]) -> Result<()> {
    let a = DOWNLOAD.parse(args)?;
    let template = a.arg("template").to_string();
    let sid = a.arg("storage").to_string();
    let idx = load_index(node);
    let app = idx.find(&template).cloned().ok_or_else(|| {
        PveError::param("template", "no such template").with_usage(DOWNLOAD.usage)
    })?;
    let cfg = StorageCfg::load(node)?;
    let s = cfg.check_enabled(node, &sid)?;
    let kind = app.get("type").unwrap_or_default();
    if kind != "lxc" && kind != "openvz" {
        return Err(PveError::die(format!("unknown template type '{kind}'")));
    }
    if !s.has_content("vztmpl") {
        return Err(PveError::die(format!(
            "storage '{sid}' does not support templates"
        )));
    }
    let dir = s
        .template_dir()
        .ok_or_else(|| PveError::die(format!("storage '{sid}' does not support templates")))?;
    let res = task::run_worker(|w| {
        let (algo, sum) = app
            .checksum()
            .ok_or_else(|| PveError::die("checksum required but not specified"))?;
        fs::create_dir_all(&dir).map_err(|e| PveError::io("create dir", &dir, e))?;
        fetch(node, w, &dir.join(&template), &app.location, (algo, sum))
    });
    match res {
        // `pveam download` has no exit hook: a failed task still exits 0.
        Err(PveError::TaskFailed(m)) => {
            eprintln!("{}", m.trim_end().replace('\n', " "));
            Ok(())
        }
        other => other,
    }
}

fn remove(node: &Node, args: &[String]) -> Result<()> {
    let a = REMOVE.parse(args)?;
    let volid = a.arg("template_path");
    let cfg = StorageCfg::load(node)?;
    let (sid, volname) = storage::parse_volid(volid)?;
    cfg.check_enabled(node, sid)?;
    if !volname.starts_with("vztmpl/") {
        return Err(PveError::die(format!(
            "unable to parse directory volume name '{volname}'"
        )));
    }
    let p = storage::path(node, &cfg, volid)?;
    let _ = fs::remove_file(p);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wget_sizes() {
        assert_eq!(wget_size(500), "500");
        assert_eq!(wget_size(126_649_744), "121M");
    }
}
