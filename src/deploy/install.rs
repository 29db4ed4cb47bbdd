//! Installing a service into a running container without network inside:
//! the service user, directories, files (`pct push`), the unit.
//!
//! Invariants: every command is an argv run with `pct exec` (no shell, no
//! string concatenation of values); file contents travel through host files
//! in a 0700 staging directory (0600 files, removed when the [`Staging`] is
//! dropped); secret files are pushed with their final owner and mode in the
//! same `pct push`, never readable by anyone else inside the container.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::spec::{Content, RenderedFile};
use crate::apps::manifest::{parse_mode, DirDef};
use crate::error::Error;
use crate::pve::pct::FileAttrs;
use crate::pve::{Pve, PveError};

/// A failure inside the container.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A command ran and failed.
    #[error("`{}` in CT {vmid} exited {}: {}", argv.join(" "), code.map_or("by signal".to_string(), |c| c.to_string()), stderr.trim())]
    Exec {
        /// The container.
        vmid: u32,
        /// The command.
        argv: Vec<String>,
        /// Its exit code.
        code: Option<i32>,
        /// What it printed on stderr (and stdout when stderr is empty).
        stderr: String,
    },
    /// `pct` itself refused.
    #[error("{0}")]
    Pve(#[from] PveError),
    /// A host-side staging file could not be written.
    #[error("staging file {}: {source}", path.display())]
    Staging {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl From<InstallError> for Error {
    fn from(e: InstallError) -> Self {
        match e {
            InstallError::Pve(p) => Error::from(p),
            InstallError::Staging { .. } => Error::internal(e),
            // The command's own failure: its text is what the user needs.
            InstallError::Exec { .. } => Error::dependency_down(e.to_string()),
        }
    }
}

/// A private host directory for the files of one operation; removed on drop.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    n: std::sync::atomic::AtomicU32,
}

impl Staging {
    /// Creates `<staging_root>/<op_id>` (0700, the root too).
    pub fn new(staging_root: &Path, op_id: &str) -> Result<Self, InstallError> {
        let dir = staging_root.join(op_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| InstallError::Staging {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            n: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// Writes `bytes` into a new 0600 file and returns its path.
    pub fn file(&self, bytes: &[u8]) -> Result<PathBuf, InstallError> {
        let n = self.n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.join(format!("f{n}"));
        let io = |source| InstallError::Staging {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(path)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a staging directory");
            }
        }
    }
}

/// Runs `argv` in the container; a non-zero exit is an [`InstallError::Exec`]
/// unless its code is in `ok_codes`. Returns stdout.
pub async fn exec(
    pve: &Pve,
    vmid: u32,
    argv: &[&str],
    ok_codes: &[i32],
) -> Result<String, InstallError> {
    let out = pve.pct_exec(vmid, argv, None, None).await?;
    match out.code {
        Some(c) if c == 0 || ok_codes.contains(&c) => Ok(out.stdout_text().into_owned()),
        code => {
            let mut stderr = out.stderr_text().trim().to_string();
            if stderr.is_empty() {
                stderr = out.stdout_text().trim().to_string();
            }
            Err(InstallError::Exec {
                vmid,
                argv: argv.iter().map(|s| s.to_string()).collect(),
                code,
                stderr: tail(&stderr, 20),
            })
        }
    }
}

/// The last `n` lines of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Creates the service user (a system user without home or shell; an
/// existing one is fine).
pub async fn ensure_user(pve: &Pve, vmid: u32, user: &str) -> Result<(), InstallError> {
    // useradd exits 9 when the user exists.
    exec(
        pve,
        vmid,
        &[
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ],
        &[9],
    )
    .await
    .map(drop)
}

/// Creates the directories, then pushes every file with its owner and mode.
pub async fn push_files(
    pve: &Pve,
    vmid: u32,
    dirs: &[DirDef],
    files: &[RenderedFile],
    staging: &Staging,
    log: &(dyn Fn(&str) + Sync),
) -> Result<(), InstallError> {
    for d in dirs {
        let mode = format!("{:o}", parse_mode(&d.mode).unwrap_or(0o755));
        exec(
            pve,
            vmid,
            &[
                "install", "-d", "-m", &mode, "-o", &d.owner, "-g", &d.group, "--", &d.path,
            ],
            &[],
        )
        .await?;
        log(&format!(
            "created directory {} ({} {}:{})",
            d.path, d.mode, d.owner, d.group
        ));
    }
    let mut parents: Vec<&str> = files
        .iter()
        .filter_map(|f| f.path.rsplit_once('/').map(|(p, _)| p))
        .filter(|p| !p.is_empty() && !dirs.iter().any(|d| d.path == *p))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    if !parents.is_empty() {
        let mut argv = vec!["mkdir", "-p", "--"];
        argv.extend(parents.iter().copied());
        exec(pve, vmid, &argv, &[]).await?;
    }
    for f in files {
        let src = match &f.content {
            Content::Host(p) => p.clone(),
            Content::Text(t) => staging.file(t.as_bytes())?,
        };
        let attrs = FileAttrs {
            perms: Some(f.mode),
            user: Some(f.owner.clone()),
            group: Some(f.group.clone()),
        };
        pve.pct_push(vmid, &src, &f.path, &attrs).await?;
        log(&format!(
            "pushed {} ({:04o} {}:{}{})",
            f.path,
            f.mode,
            f.owner,
            f.group,
            if f.secret { ", secret" } else { "" }
        ));
    }
    Ok(())
}

/// `systemctl enable --now <unit>` (enable reloads the manager's
/// configuration itself, so a new unit needs no separate daemon-reload); on
/// failure the error carries the unit's last journal lines.
pub async fn start_unit(pve: &Pve, vmid: u32, unit: &str) -> Result<(), InstallError> {
    unit_action(pve, vmid, unit, &["systemctl", "enable", "--now", unit]).await
}

/// `systemctl restart <unit>` (after a re-render).
pub async fn restart_unit(pve: &Pve, vmid: u32, unit: &str) -> Result<(), InstallError> {
    exec(pve, vmid, &["systemctl", "daemon-reload"], &[]).await?;
    unit_action(pve, vmid, unit, &["systemctl", "restart", unit]).await
}

/// Runs a `systemctl` action on `unit`; a failure carries the unit's status
/// and last journal lines (where the cause is).
async fn unit_action(pve: &Pve, vmid: u32, unit: &str, argv: &[&str]) -> Result<(), InstallError> {
    match exec(pve, vmid, argv, &[]).await {
        Ok(_) => Ok(()),
        Err(InstallError::Exec {
            vmid,
            argv,
            code,
            stderr,
        }) => {
            let why = unit_status(pve, vmid, unit).await;
            Err(InstallError::Exec {
                vmid,
                argv,
                code,
                stderr: format!("{stderr}\n{why}"),
            })
        }
        Err(e) => Err(e),
    }
}

async fn unit_status(pve: &Pve, vmid: u32, unit: &str) -> String {
    let journal = pve
        .pct_exec(
            vmid,
            &[
                "journalctl",
                "--no-pager",
                "-o",
                "cat",
                "-n",
                "15",
                "-u",
                unit,
            ],
            None,
            None,
        )
        .await
        .map(|o| tail(o.stdout_text().trim(), 15))
        .unwrap_or_default();
    format!("last log lines of {unit}:\n{journal}")
}
