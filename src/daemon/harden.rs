//! Process hardening the daemon applies to itself at startup, whoever
//! starts it (systemd's `LimitCORE=0` covers only its own unit).
//!
//! What this module owns: [`no_core_dumps`]. The daemon holds secrets in
//! memory; a core file (or a core handed to `systemd-coredump` through a
//! `|` pattern, which ignores `RLIMIT_CORE`) would write them to disk.
//!
//! Invariant: after [`no_core_dumps`] returns `Ok`, the process is not
//! dumpable and its core limit is 0 (soft and hard), so neither a crash nor
//! a non-root `ptrace`/`/proc/<pid>/mem` reader can copy its memory. The
//! programs it starts are unaffected: `execve` resets dumpability.

/// Why the process could not be hardened.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    /// `setrlimit(RLIMIT_CORE)` failed.
    #[error("cannot set the core file limit to 0: {0}")]
    CoreLimit(#[source] nix::Error),
    /// `prctl(PR_SET_DUMPABLE)` failed.
    #[error("cannot make the process non-dumpable: {0}")]
    Dumpable(#[source] nix::Error),
}

/// Turns core dumps off for this process (see the module docs).
pub fn no_core_dumps() -> Result<(), HardenError> {
    use nix::sys::resource::{setrlimit, Resource};
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(HardenError::CoreLimit)?;
    nix::sys::prctl::set_dumpable(false).map_err(HardenError::Dumpable)
}

#[cfg(test)]
mod tests {
    /// In a forked child (the test process itself must stay dumpable):
    /// after the call, not dumpable and a core limit of 0/0.
    #[test]
    #[allow(unsafe_code)]
    fn a_hardened_process_dumps_no_core() {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        // SAFETY: the child calls only raw syscalls (setrlimit, prctl,
        // getrlimit) and `_exit`; it allocates nothing and takes no lock.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = match super::no_core_dumps() {
                    Err(_) => 2,
                    Ok(()) => {
                        let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
                        let limit = nix::sys::resource::getrlimit(
                            nix::sys::resource::Resource::RLIMIT_CORE,
                        )
                        .unwrap_or((1, 1));
                        if !dumpable && limit == (0, 0) {
                            0
                        } else {
                            3
                        }
                    }
                };
                // SAFETY: `_exit` ends the child without running the
                // parent's destructors or atexit handlers.
                unsafe { nix::libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                assert_eq!(
                    waitpid(child, None).expect("wait"),
                    WaitStatus::Exited(child, 0),
                    "2: the call failed, 3: still dumpable or a core limit"
                );
                assert!(
                    nix::sys::prctl::get_dumpable().expect("get"),
                    "the test process itself was left alone"
                );
            }
        }
    }
}
