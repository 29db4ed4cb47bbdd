//! The two kinds of CT locking PVE has.
//!
//! 1. The **config flock** (`<root>/run/lock/lxc/pve-config-<vmid>.lock`),
//!    held briefly around a read-modify-write of the config. Timeouts:
//!    [`LOCK_TIMEOUT`] (10 s) normally, [`CREATE_LOCK_TIMEOUT`] (5 s) when
//!    creating. While waiting `trying to acquire lock...` goes to stderr; on
//!    timeout the error is `can't lock file '<path>' - got timeout`.
//! 2. The **`lock:` property** in the config, which blocks long operations:
//!    [`check_lock`] gives `CT is locked (<lock>)`. Checked by start (except
//!    `mounted`), stop, shutdown, reboot, set, destroy, snapshot, rollback,
//!    delsnapshot, vzdump; not by exec, enter, push, pull, status, config, list.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use crate::conf::{self, CtConfig, Section};
use crate::error::{PveError, Result};
use crate::node::Node;

/// `lock_config`'s timeout.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// `create_and_lock_config`'s timeout.
pub const CREATE_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The valid `lock:` values.
pub const LOCK_NAMES: &[&str] = &[
    "backup",
    "create",
    "destroyed",
    "disk",
    "fstrim",
    "migrate",
    "mounted",
    "rollback",
    "snapshot",
    "snapshot-delete",
];

/// A held flock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl FileLock {
    /// The locked file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take an exclusive flock on `path`, waiting up to `timeout`. Returns
/// `Ok(None)` on timeout so callers can phrase their own error. `on_wait` is
/// called once when the lock is contended.
pub fn try_lock_file(
    path: &Path,
    timeout: Duration,
    mut on_wait: impl FnMut(),
) -> Result<Option<FileLock>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| PveError::io("create dir", dir, e))?;
    }
    let start = Instant::now();
    let mut waited = false;
    loop {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| PveError::io("open lock file", path, e))?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => {
                return Ok(Some(FileLock {
                    _lock: l,
                    path: path.to_path_buf(),
                }))
            }
            Err((_f, nix::errno::Errno::EWOULDBLOCK)) | Err((_f, nix::errno::Errno::EINTR)) => {
                if !waited {
                    waited = true;
                    on_wait();
                }
                if start.elapsed() >= timeout {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_f, e)) => {
                return Err(PveError::io(
                    "flock",
                    path,
                    std::io::Error::from_raw_os_error(e as i32),
                ))
            }
        }
    }
}

/// `PVE::Tools::lock_file` semantics: messages on stderr, `can't lock file` on timeout.
pub fn lock_file(path: &Path, timeout: Duration) -> Result<FileLock> {
    let mut waited = false;
    let lock = try_lock_file(path, timeout, || {
        waited = true;
        eprint!("trying to acquire lock...");
        let _ = std::io::stderr().flush();
    })?;
    match lock {
        Some(l) => {
            if waited {
                eprintln!(" OK");
            }
            Ok(l)
        }
        None => {
            if waited {
                eprintln!();
            }
            Err(PveError::die(format!(
                "can't lock file '{}' - got timeout",
                path.display()
            )))
        }
    }
}

/// Take the config flock of a CT.
pub fn lock_config(node: &Node, vmid: u32, timeout: Duration) -> Result<FileLock> {
    lock_file(&node.config_lock_path(vmid), timeout)
}

/// Run `f` on the loaded config under the config flock and write the result back.
pub fn update_config<T>(
    node: &Node,
    vmid: u32,
    f: impl FnOnce(&mut CtConfig) -> Result<T>,
) -> Result<T> {
    let _l = lock_config(node, vmid, LOCK_TIMEOUT)?;
    let mut c = conf::load(node, vmid)?;
    let res = f(&mut c)?;
    conf::store(node, vmid, &c)?;
    Ok(res)
}

/// `CT is locked (<lock>)` if the section carries a lock.
pub fn check_lock(sec: &Section) -> Result<()> {
    match sec.lock() {
        Some(l) => Err(PveError::die(format!("CT is locked ({l})"))),
        None => Ok(()),
    }
}

/// Set the `lock:` property (fails if already locked).
pub fn set_lock(node: &Node, vmid: u32, lock: &str) -> Result<()> {
    update_config(node, vmid, |c| {
        check_lock(&c.main)?;
        c.main.set("lock", lock);
        Ok(())
    })
}

/// Remove the `lock:` property; with `expected`, only that lock.
/// Texts as `AbstractConfig::remove_lock`.
pub fn remove_lock(node: &Node, vmid: u32, expected: Option<&str>) -> Result<()> {
    update_config(node, vmid, |c| {
        match (c.main.lock(), expected) {
            (None, None) => return Err(PveError::die("no lock found trying to remove any lock")),
            (None, Some(l)) => {
                return Err(PveError::die(format!(
                    "no lock found trying to remove '{l}'  lock"
                )))
            }
            (Some(have), Some(want)) if have != want => {
                return Err(PveError::die(format!(
                    "found lock '{have}' trying to remove '{want}' lock"
                )))
            }
            _ => {}
        }
        c.main.remove("lock");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contended_lock_times_out() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let p = dir.path().join("x.lock");
        let held = try_lock_file(&p, Duration::from_millis(10), || {})
            .ok()
            .flatten();
        assert!(held.is_some());
        let mut waited = false;
        let second = try_lock_file(&p, Duration::from_millis(100), || waited = true)
            .ok()
            .flatten();
        assert!(second.is_none());
        assert!(waited);
    }
}
