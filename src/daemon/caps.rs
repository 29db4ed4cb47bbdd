//! Capabilities: what the daemon needs, what it reports, and what it gives up.
//!
//! `pct`, `vzdump`, `lxc-start` and friends run as root and need most of
//! root's powers (namespaces, cgroups, mounts, ownership of shifted
//! rootfs files, network devices). The daemon therefore refuses to start
//! without them, instead of failing obscurely in the middle of a deploy.
//!
//! What no Proxmox tool, LXC, nor anything inside an LXC container (whose
//! capabilities are bounded by ours) ever needs is dropped from the
//! bounding set at startup, so neither the daemon nor any child can regain
//! it. The list is conservative: everything a real node's storage stack
//! (LVM, ZFS, device-mapper) might use stays. The sandbox end-to-end suite
//! runs under exactly this reduced set (`tests/pve_sandbox.rs`).
//!
//! The daemon itself needs `CAP_NET_RAW`: the probe guard
//! (`deploy::egress`) binds every probe socket to the container's bridge
//! with `SO_BINDTODEVICE`, which kernels before 5.7 allow only with it.
//! It is required, never dropped, and `systemd/1ld.service` keeps it (its
//! bounding set removes exactly [`NEVER_NEEDED`]; tested below).

use caps::{CapSet, Capability, CapsHashSet};

/// Capabilities the Proxmox tools, LXC and the probe guard need; startup
/// fails without them.
pub const REQUIRED: &[Capability] = &[
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_CHOWN,
    Capability::CAP_FOWNER,
    Capability::CAP_SETUID,
    Capability::CAP_SETGID,
    Capability::CAP_KILL,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_MKNOD,
    // SO_BINDTODEVICE for the probe guard (deploy::egress).
    Capability::CAP_NET_RAW,
];

/// Capabilities nothing on the host side nor inside a container needs:
/// kernel modules, the clock, MAC policy, kernel log, BSD accounting, TTY
/// configuration, perf, checkpoint/restore, the audit configuration, file
/// leases, suspend blocking and alarm wake-ups. LXC's own `common.conf`
/// drops several of them for every container too.
pub const NEVER_NEEDED: &[Capability] = &[
    Capability::CAP_SYS_MODULE,
    Capability::CAP_SYS_TIME,
    Capability::CAP_WAKE_ALARM,
    Capability::CAP_MAC_ADMIN,
    Capability::CAP_MAC_OVERRIDE,
    Capability::CAP_SYSLOG,
    Capability::CAP_SYS_PACCT,
    Capability::CAP_SYS_TTY_CONFIG,
    Capability::CAP_BLOCK_SUSPEND,
    Capability::CAP_LEASE,
    Capability::CAP_AUDIT_CONTROL,
    Capability::CAP_AUDIT_READ,
    Capability::CAP_PERFMON,
    Capability::CAP_CHECKPOINT_RESTORE,
];

/// Why the capability check failed.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// Not root, or root without the powers the tools need.
    #[error(
        "1ldd lacks capabilities that pct/vzdump/lxc and its probes need: {missing}; run it \
         as root (the packaged 1ld.service does), not as an unprivileged user"
    )]
    Missing {
        /// Comma-separated names.
        missing: String,
    },
    /// The kernel interface failed.
    #[error("cannot read or change capabilities: {0}")]
    Os(#[from] caps::errors::CapsError),
}

fn names(set: impl IntoIterator<Item = Capability>) -> String {
    let mut v: Vec<String> = set.into_iter().map(|c| c.to_string()).collect();
    v.sort();
    v.join(",")
}

/// The effective set, sorted and comma-separated (for the startup log).
pub fn effective() -> Result<String, CapsError> {
    Ok(names(caps::read(None, CapSet::Effective)?))
}

/// Fails when the effective set lacks anything in [`REQUIRED`].
pub fn check_required() -> Result<(), CapsError> {
    let eff: CapsHashSet = caps::read(None, CapSet::Effective)?;
    let missing: Vec<Capability> = REQUIRED
        .iter()
        .copied()
        .filter(|c| !eff.contains(c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CapsError::Missing {
            missing: names(missing),
        })
    }
}

/// Drops [`NEVER_NEEDED`] from the bounding set (irreversible for this
/// process and every child). Returns what was dropped (already-absent
/// capabilities are skipped).
pub fn restrict_bounding_set() -> Result<Vec<Capability>, CapsError> {
    let bounding = caps::read(None, CapSet::Bounding)?;
    let mut dropped = Vec::new();
    for cap in NEVER_NEEDED {
        if bounding.contains(cap) {
            caps::drop(None, CapSet::Bounding, *cap)?;
            dropped.push(*cap);
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_and_never_needed_do_not_overlap() {
        for c in REQUIRED {
            assert!(
                !NEVER_NEEDED.contains(c),
                "{c} is both required and dropped"
            );
        }
    }

    #[test]
    fn check_matches_the_effective_set() {
        let eff = caps::read(None, CapSet::Effective).unwrap();
        let all_present = REQUIRED.iter().all(|c| eff.contains(c));
        match check_required() {
            Ok(()) => assert!(all_present),
            Err(e @ CapsError::Missing { .. }) => {
                assert!(!all_present);
                let text = e.to_string();
                assert!(
                    text.contains("CAP_") && text.contains("run it as root"),
                    "{text}"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_refusal_names_what_is_missing_and_the_fix() {
        let e = CapsError::Missing {
            missing: names([Capability::CAP_SYS_ADMIN, Capability::CAP_NET_ADMIN]),
        };
        assert_eq!(
            e.to_string(),
            "1ldd lacks capabilities that pct/vzdump/lxc and its probes need: \
             CAP_NET_ADMIN,CAP_SYS_ADMIN; run it as root (the packaged 1ld.service does), \
             not as an unprivileged user"
        );
    }

    #[test]
    fn the_unit_drops_exactly_what_is_never_needed() {
        let unit = include_str!("../../systemd/1ld.service");
        let line = unit
            .lines()
            .find_map(|l| l.strip_prefix("CapabilityBoundingSet=~"))
            .expect("the unit removes capabilities from its bounding set");
        let mut dropped: Vec<&str> = line.split_whitespace().collect();
        dropped.sort_unstable();
        let mut never: Vec<String> = NEVER_NEEDED.iter().map(ToString::to_string).collect();
        never.sort();
        assert_eq!(dropped, never);
        for c in REQUIRED {
            assert!(
                !dropped.contains(&c.to_string().as_str()),
                "the unit drops {c}"
            );
        }
        assert!(
            REQUIRED.contains(&Capability::CAP_NET_RAW),
            "the probe guard needs it"
        );
        assert_eq!(
            unit.lines().find(|l| l.starts_with("User=")),
            Some("User=root")
        );
    }
}
