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

/// Reserves the lowest vmid of `range` free in the cluster for this
/// operation (released by its compensation); `what` names the range in
/// the error (`the app's range`, `[backup] verify_vmid_range`).
pub(crate) async fn reserve_vmid(
    ctx: &crate::ops::OpCtx,
    store: &crate::store::Store,
    (lo, hi): (u32, u32),
    what: &str,
) -> Result<u32, crate::error::Error> {
    let taken: std::collections::BTreeSet<u32> = ctx
        .pve()?
        .cluster_vmids()
        .await
        .map_err(|e| crate::deploy::step_error("reserve vmid", e.into()))?
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    store
        .reserve_vmid(lo, hi, &taken, &ctx.id(), crate::store::now_ms())?
        .ok_or_else(|| crate::error::Error::conflict(format!("no free vmid in {what} {lo}..={hi}")))
}

/// After a crash: removes a lock an interrupted operation's own Proxmox
/// command left on CT `vmid` (vzdump's `backup`, `snapshot`, ...), when the
/// lock is one of `ours` and no process of that command still runs for the
/// container (a Proxmox job of the node's own would still be running).
/// Returns the lock removed.
pub(crate) async fn clear_lock(
    ctx: &crate::ops::OpCtx,
    vmid: u32,
    ours: &[&str],
) -> Result<Option<String>, crate::error::Error> {
    let pve = ctx.pve()?;
    let lock = match pve.pct_config(vmid, false).await {
        Ok(c) => c.lock,
        Err(crate::pve::PveError::NotFound { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let Some(lock) = lock.filter(|l| ours.contains(&l.as_str())) else {
        return Ok(None);
    };
    if tool_running_for(vmid) {
        ctx.log(&format!(
            "CT {vmid} is locked ({lock}) by a command still running; left alone"
        ));
        return Ok(None);
    }
    pve.pct_unlock(vmid).await?;
    ctx.log(&format!(
        "CT {vmid}: removed the '{lock}' lock the interrupted operation left"
    ));
    Ok(Some(lock))
}

/// Whether a `vzdump`/`pct` process naming `vmid` runs on the host (read
/// from `/proc/*/cmdline`).
fn tool_running_for(vmid: u32) -> bool {
    let want = vmid.to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|raw| {
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
            let tool = args.iter().take(3).any(|a| {
                let name = a.rsplit(|b| *b == b'/').next().unwrap_or(a);
                name == b"vzdump" || name == b"pct"
            });
            tool && args.contains(&want.as_bytes())
        })
}

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
