//! Container archives: unpack templates/backups into a rootfs and pack a rootfs.
//!
//! Like PVE, tar runs inside a user namespace for unprivileged CTs
//! (`lxc-usernsexec -m b:0:100000:65536 -- tar ...`), so files land shifted
//! (container root = host uid 100000) on extract and are archived *unshifted*
//! (owner 0) on create. Privileged CTs run tar directly. Everything uses
//! external `tar`/`zstd`/`gzip` through argv vectors, never a shell.
//!
//! tar's `--totals` line (`Total bytes read: ...` / `Total bytes written: ...`)
//! and any warnings are handed to the caller's log sink line by line, so a
//! worker can print them as PVE does.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{PveError, Result};
use crate::util::cmdline;

/// A uid/gid shift for unprivileged containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// Host uid of container uid 0.
    pub host_uid: u32,
    /// Host gid of container gid 0.
    pub host_gid: u32,
    /// Number of ids mapped.
    pub count: u32,
}

/// PVE's default map for unprivileged CTs (`lxc.idmap = u 0 100000 65536`).
pub const UNPRIVILEGED: IdMap = IdMap {
    host_uid: 100_000,
    host_gid: 100_000,
    count: 65_536,
};

impl IdMap {
    /// The map for a CT: `Some(UNPRIVILEGED)` or `None` (privileged).
    pub fn for_ct(unprivileged: bool) -> Option<IdMap> {
        unprivileged.then_some(UNPRIVILEGED)
    }
    /// Host uid for a container uid (unchanged if outside the map).
    pub fn host_uid(&self, ct_uid: u32) -> u32 {
        if ct_uid < self.count {
            self.host_uid + ct_uid
        } else {
            ct_uid
        }
    }
    /// Host gid for a container gid.
    pub fn host_gid(&self, ct_gid: u32) -> u32 {
        if ct_gid < self.count {
            self.host_gid + ct_gid
        } else {
            ct_gid
        }
    }
    fn userns_prefix(&self) -> Vec<String> {
        vec![
            "lxc-usernsexec".into(),
            "-m".into(),
            format!("u:0:{}:{}", self.host_uid, self.count),
            "-m".into(),
            format!("g:0:{}:{}", self.host_gid, self.count),
            "--".into(),
        ]
    }
}

/// Compression of an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain `.tar`.
    None,
    /// `.tar.gz` / `.tgz`.
    Gzip,
    /// `.tar.lzo`.
    Lzo,
    /// `.tar.zst`.
    Zstd,
    /// `.tar.xz` (templates only).
    Xz,
}

impl Compression {
    /// Guess from the file name, or `None` if it is not a tar archive name.
    pub fn from_name(name: &str) -> Option<Compression> {
        let n = name.to_ascii_lowercase();
        if n.ends_with(".tar.zst") || n.ends_with(".tzst") {
            Some(Compression::Zstd)
        } else if n.ends_with(".tar.gz") || n.ends_with(".tgz") {
            Some(Compression::Gzip)
        } else if n.ends_with(".tar.lzo") {
            Some(Compression::Lzo)
        } else if n.ends_with(".tar.xz") || n.ends_with(".txz") {
            Some(Compression::Xz)
        } else if n.ends_with(".tar") {
            Some(Compression::None)
        } else {
            None
        }
    }
    /// The archive suffix (`.tar.zst`, ...).
    pub fn suffix(&self) -> &'static str {
        match self {
            Compression::None => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Lzo => ".tar.lzo",
            Compression::Zstd => ".tar.zst",
            Compression::Xz => ".tar.xz",
        }
    }
    fn tar_flag(&self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("-z"),
            Compression::Lzo => Some("--lzop"),
            Compression::Zstd => Some("--zstd"),
            Compression::Xz => Some("-J"),
        }
    }
    fn compressor(&self, threads: u32) -> Option<Vec<String>> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(vec!["gzip".into(), "-c".into()]),
            Compression::Lzo => Some(vec!["lzop".into(), "-c".into()]),
            Compression::Zstd => Some(vec![
                "zstd".into(),
                "-q".into(),
                format!("--threads={threads}"),
            ]),
            Compression::Xz => Some(vec!["xz".into(), "-c".into()]),
        }
    }
}

/// Options tar uses for CT archives in both directions (as PVE's `$tar_flags`).
const TAR_FLAGS: &[&str] = &[
    "--totals",
    "--one-file-system",
    "-p",
    "--sparse",
    "--numeric-owner",
    "--acls",
    "--xattrs",
    "--xattrs-include=user.*",
    "--xattrs-include=security.capability",
    "--warning=no-file-ignored",
    "--warning=no-xattr-write",
];

fn base_cmd(map: Option<IdMap>) -> Command {
    match map {
        Some(m) => {
            let p = m.userns_prefix();
            let mut c = Command::new(&p[0]);
            c.args(&p[1..]);
            c.arg("tar");
            c
        }
        None => Command::new("tar"),
    }
}

fn emit(log: &mut dyn FnMut(&str), bytes: &[u8]) {
    for line in String::from_utf8_lossy(bytes).lines() {
        if !line.trim().is_empty() {
            log(line);
        }
    }
}

/// Where the archive bytes come from.
#[derive(Debug)]
pub enum Source<'a> {
    /// A file; compression guessed from its name.
    Path(&'a Path),
    /// This process's stdin (`pct restore <vmid> -`), with a given compression.
    Stdin(Compression),
}

/// Extract an archive into `dest` (created if missing; for unprivileged CTs
/// it is chowned to the mapped root first). `./dev/*` is skipped as PVE does.
pub fn extract(
    src: Source<'_>,
    dest: &Path,
    map: Option<IdMap>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    std::fs::create_dir_all(dest).map_err(|e| PveError::io("create dir", dest, e))?;
    if let Some(m) = map {
        nix::unistd::chown(
            dest,
            Some(nix::unistd::Uid::from_raw(m.host_uid)),
            Some(nix::unistd::Gid::from_raw(m.host_gid)),
        )
        .map_err(|e| PveError::io("chown", dest, e.into()))?;
    }
    let (stdin, comp) = match src {
        Source::Path(p) => {
            let (f, comp) = open_archive(p)?;
            (Stdio::from(f), comp)
        }
        Source::Stdin(c) => (Stdio::inherit(), c),
    };
    let mut cmd = base_cmd(map);
    cmd.arg("xpf").arg("-");
    if let Some(f) = comp.tar_flag() {
        cmd.arg(f);
    }
    cmd.args(TAR_FLAGS)
        .arg("-C")
        .arg(dest)
        .arg("--skip-old-files")
        .arg("--anchored")
        .arg("--exclude")
        .arg("./dev/*");
    let argv = cmdline(&cmd);
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(stdin)
        .output()
        .map_err(|e| PveError::Command {
            argv: argv.clone(),
            detail: e.to_string(),
        })?;
    emit(log, &out.stdout);
    emit(log, &out.stderr);
    crate::util::check_status(&argv, out.status)
}

/// What to put into an archive.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    /// Extra entries added first: `(base dir, relative path)`, e.g.
    /// `(tmpdir, "./etc/vzdump/pct.conf")` as vzdump does.
    pub extra: Vec<(PathBuf, String)>,
    /// The rootfs (archived as `./`; mount points below it are included only
    /// if on the same file system).
    pub rootfs: PathBuf,
    /// `--exclude` patterns (anchored wildcards like `./tmp/?*`).
    pub excludes: Vec<String>,
    /// zstd threads (0 → 1).
    pub zstd_threads: u32,
}

/// Create `out` from `spec`. Returns after the file is complete; tar's totals
/// line (`Total bytes written: ...`) goes to `log`.
pub fn create(
    spec: &CreateSpec,
    out: &Path,
    comp: Compression,
    map: Option<IdMap>,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    let file = File::create(out).map_err(|e| PveError::io("create archive", out, e))?;
    let mut tar = base_cmd(map);
    tar.arg("cpf")
        .arg("-")
        .args(TAR_FLAGS)
        .arg("--wildcards")
        .arg("--anchored");
    for ex in &spec.excludes {
        tar.arg(format!("--exclude={ex}"));
    }
    for (dir, rel) in &spec.extra {
        tar.arg("-C").arg(dir).arg(rel);
    }
    // `./` (not `./.`) so members are named `./etc/...` as in PVE's archives.
    tar.arg("-C").arg(&spec.rootfs).arg("./");
    let argv = cmdline(&tar);
    tar.env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stderr(Stdio::piped());

    match comp.compressor(spec.zstd_threads.max(1)) {
        None => {
            tar.stdout(Stdio::from(file));
            let o = tar.output().map_err(|e| PveError::Command {
                argv: argv.clone(),
                detail: e.to_string(),
            })?;
            emit(log, &o.stderr);
            crate::util::check_status(&argv, o.status)
        }
        Some(cv) => {
            tar.stdout(Stdio::piped());
            let mut child = tar.spawn().map_err(|e| PveError::Command {
                argv: argv.clone(),
                detail: e.to_string(),
            })?;
            let pipe = child.stdout.take().ok_or_else(|| PveError::Command {
                argv: argv.clone(),
                detail: "no stdout pipe".into(),
            })?;
            let mut comp_cmd = Command::new(&cv[0]);
            comp_cmd
                .args(&cv[1..])
                .stdin(Stdio::from(pipe))
                .stdout(Stdio::from(file));
            let cargv = cmdline(&comp_cmd);
            let comp_status = comp_cmd.status();
            let mut err = Vec::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_end(&mut err);
            }
            let tstatus = child.wait().map_err(|e| PveError::Command {
                argv: argv.clone(),
                detail: e.to_string(),
            })?;
            emit(log, &err);
            crate::util::check_status(&argv, tstatus)?;
            let cs = comp_status.map_err(|e| PveError::Command {
                argv: cargv.clone(),
                detail: e.to_string(),
            })?;
            crate::util::check_status(&cargv, cs)
        }
    }
}

/// Open an archive file, its compression told by its name.
fn open_archive(archive: &Path) -> Result<(File, Compression)> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comp = Compression::from_name(&name).ok_or_else(|| {
        PveError::die(format!(
            "unable to detect archive format of '{}'",
            archive.display()
        ))
    })?;
    let f = File::open(archive).map_err(|e| PveError::io("open archive", archive, e))?;
    Ok((f, comp))
}

/// Read one member (e.g. `./etc/vzdump/pct.conf`) from an archive; `None` if absent.
pub fn read_member(archive: &Path, member: &str) -> Result<Option<Vec<u8>>> {
    let (f, comp) = open_archive(archive)?;
    let mut cmd = Command::new("tar");
    cmd.arg("xOf").arg("-");
    if let Some(fl) = comp.tar_flag() {
        cmd.arg(fl);
    }
    cmd.arg("--occurrence=1").arg(member);
    let out = cmd
        .env("LC_ALL", "C")
        .stdin(Stdio::from(f))
        .output()
        .map_err(|e| PveError::Command {
            argv: cmdline(&cmd),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(Some(out.stdout))
    } else if String::from_utf8_lossy(&out.stderr).contains("Not found in archive") {
        Ok(None)
    } else {
        Err(PveError::Command {
            argv: cmdline(&cmd),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Compression::from_name("a.tar.zst"), Some(Compression::Zstd));
        assert_eq!(Compression::from_name("a.tgz"), Some(Compression::Gzip));
        assert_eq!(Compression::from_name("a.zip"), None);
        assert_eq!(UNPRIVILEGED.host_uid(33), 100_033);
    }
}
