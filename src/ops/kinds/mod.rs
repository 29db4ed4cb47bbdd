//! Operation kinds: one module per kind, each an [`OpTask`] plus the
//! function that rebuilds it from its persisted payload.
//!
//! Invariant: every kind the daemon can submit is listed in [`rebuild`], so
//! an operation interrupted by a crash can always be compensated.

use super::OpTask;

pub mod backup;
pub mod deploy;
pub mod deployment;
pub mod remediate;
pub mod restore;
pub mod template_download;
pub mod upgrade;
pub mod verify;

/// Rebuilds any known kind from its persisted payload (for
/// [`Ops::recover`](super::Ops::recover)).
pub fn rebuild(kind: &str, payload: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    match kind {
        template_download::KIND => template_download::rebuild(payload),
        deploy::KIND => deploy::rebuild(payload),
        backup::KIND => backup::rebuild(payload),
        restore::KIND => restore::rebuild(payload),
        verify::KIND => verify::rebuild(payload),
        upgrade::KIND => upgrade::rebuild(payload),
        upgrade::RELEASE => upgrade::rebuild_release(payload),
        deployment::START
        | deployment::STOP
        | deployment::RESTART
        | deployment::DESTROY
        | deployment::APPLY
        | deployment::ADOPT => deployment::rebuild(payload),
        remediate::RESTART_SERVICE
        | remediate::REBOOT
        | remediate::START
        | remediate::RESTORE_BACKUP => remediate::rebuild(payload),
        _ => None,
    }
}
