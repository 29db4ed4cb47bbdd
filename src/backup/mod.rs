//! Backups of deployments: what 1ld adds to Proxmox's vzdump.
//!
//! - the policy: a deployment's `backup` over `[backup]` ([`policy_of`]);
//! - the archive's notes, which carry the deployment, app, version and the
//!   digest of the spec ([`notes_template`]), and the spec itself written
//!   into the container before the backup (`/etc/1ld/deployment.json`), so
//!   a node that knows nothing about the deployment can rebuild its record
//!   from the archive alone;
//! - the list ([`list`]): `pvesm list --content backup` of the storages in
//!   use, reconciled with what the store recorded (found on storage only,
//!   recorded but gone).
//!
//! The operation is [`crate::ops::kinds::backup`].

pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};

use sha2::Digest;

use crate::api::{BackupInfo, BackupModeName, BackupPolicy};
use crate::error::Error;
use crate::pve::vzdump::{BackupMode, PruneOptions};
use crate::pve::Pve;
use crate::store::{rfc3339, BackupRecord, DeploymentRecord, Store, StoredSpec};

/// Where the deployment's spec is written inside the container before a backup.
pub const SPEC_IN_CONTAINER: &str = "/etc/1ld/deployment.json";

/// The command that proves the app works inside a (restored) container:
/// the agent's own `--self-check` run as its user when the manifest ships
/// an agent binary (exit 0 healthy, 1 degraded, 2 unhealthy), else
/// `systemctl is-active` of its unit.
pub fn self_check_argv(m: &crate::apps::manifest::Manifest) -> Vec<String> {
    match m.files.iter().find(|f| f.agent.is_some()) {
        Some(f) => vec![
            "runuser".into(),
            "-u".into(),
            m.service.user.clone(),
            "--".into(),
            f.path.clone(),
            "--self-check".into(),
        ],
        None => vec![
            "systemctl".into(),
            "is-active".into(),
            m.service.unit.clone(),
        ],
    }
}

/// What verifying `b` needs: its app's self-check, a throwaway vmid range
/// and the storage to restore onto (the deployment's, else `[apps] storage`).
pub fn verify_plan(
    env: &crate::deploy::Env,
    range: [u32; 2],
    b: &BackupRecord,
) -> Result<crate::ops::kinds::verify::VerifyPlan, Error> {
    let app_name = b.app.clone().unwrap_or_default();
    let app = crate::deploy::find_app(&env.catalog(), &app_name)?;
    let storage = match &b.deployment {
        Some(d) => env
            .store
            .get_deployment(d)?
            .map(|r| r.spec.resources.storage),
        None => None,
    }
    .unwrap_or_else(|| env.apps.storage.clone());
    Ok(crate::ops::kinds::verify::VerifyPlan {
        volid: b.volid.clone(),
        vmid_range: (range[0], range[1]),
        storage,
        self_check: self_check_argv(&app.manifest),
    })
}

/// The deployment's effective policy: its own fields over `base` (`[backup]`).
pub fn policy_of(spec: &StoredSpec, base: &BackupPolicy) -> BackupPolicy {
    spec.backup.or(base)
}

/// vzdump's mode for `m`.
pub fn mode(m: Option<BackupModeName>) -> BackupMode {
    match m {
        Some(BackupModeName::Suspend) => BackupMode::Suspend,
        Some(BackupModeName::Stop) => BackupMode::Stop,
        _ => BackupMode::Snapshot,
    }
}

/// `--prune-backups` for `p` (a 0 is off).
pub fn prune(p: &BackupPolicy) -> PruneOptions {
    let n = |v: Option<u32>| v.filter(|n| *n > 0);
    PruneOptions {
        keep_all: false,
        keep_last: n(p.keep_last),
        keep_hourly: n(p.keep_hourly),
        keep_daily: n(p.keep_daily),
        keep_weekly: n(p.keep_weekly),
        keep_monthly: n(p.keep_monthly),
        keep_yearly: n(p.keep_yearly),
    }
}

/// `sha256:<hex>` of the spec's JSON (no secret values are in it).
pub fn spec_digest(spec: &StoredSpec) -> String {
    let json = serde_json::to_vec(spec).unwrap_or_default();
    let d = sha2::Sha256::digest(&json);
    format!(
        "sha256:{}",
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// The document written to [`SPEC_IN_CONTAINER`].
pub fn spec_document(rec: &DeploymentRecord) -> serde_json::Value {
    serde_json::json!({
        "format": "1ld-deployment/1",
        "name": rec.name,
        "app": rec.app,
        "app_version": rec.app_version,
        "vmid": rec.vmid,
        "config_hash": rec.config_hash,
        "spec": rec.spec,
        "spec_digest": spec_digest(&rec.spec),
    })
}

/// The single-line `--notes-template`: what 1ld needs to know the archive
/// later, then the guest name vzdump fills in.
pub fn notes_template(rec: &DeploymentRecord) -> String {
    format!(
        "1ld deployment={} app={} version={} spec={} ({{{{guestname}}}})",
        rec.name,
        rec.app,
        rec.app_version,
        spec_digest(&rec.spec)
    )
}

/// Reads `key=value` words of notes written by [`notes_template`].
pub fn parse_notes(notes: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(rest) = notes.strip_prefix("1ld ") else {
        return out;
    };
    for word in rest.split_whitespace() {
        if let Some((k, v)) = word.split_once('=') {
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// The time in a vzdump archive name (`vzdump-lxc-141-2026_01_02-03_04_05.tar.zst`),
/// read as UTC ms (vzdump writes the node's local time; 1ld shows it as written).
pub fn archive_time(name: &str) -> Option<i64> {
    let base = name.rsplit('/').next()?;
    let rest = base.strip_prefix("vzdump-")?;
    let mut parts = rest.splitn(4, '-');
    let _kind = parts.next()?;
    let _vmid = parts.next()?;
    let date = parts.next()?;
    let time = parts.next()?.get(..8)?;
    let d: Vec<i32> = date.split('_').filter_map(|x| x.parse().ok()).collect();
    let t: Vec<i32> = time.split('_').filter_map(|x| x.parse().ok()).collect();
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let dt = jiff::civil::DateTime::new(
        i16::try_from(d[0]).ok()?,
        i8::try_from(d[1]).ok()?,
        i8::try_from(d[2]).ok()?,
        i8::try_from(t[0]).ok()?,
        i8::try_from(t[1]).ok()?,
        i8::try_from(t[2]).ok()?,
        0,
    )
    .ok()?;
    let ts = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(ts.as_millisecond())
}

/// The API view of a record.
pub fn to_api(b: &BackupRecord, present: bool) -> BackupInfo {
    BackupInfo {
        volid: b.volid.clone(),
        storage: b.storage.clone(),
        vmid: b.vmid,
        deployment: b.deployment.clone(),
        app: b.app.clone(),
        app_version: b.app_version.clone(),
        time: rfc3339(b.time_ms),
        size: b.size,
        mode: b.mode.clone(),
        notes: b.notes.clone(),
        protected: b.protected,
        verified: b.verified,
        verified_at: b.verified_ms.map(rfc3339),
        verify_detail: b.verify_detail.clone(),
        present,
        recorded: true,
    }
}

/// Backups on the storages 1ld uses (each deployment's and `[backup]`'s),
/// reconciled with the store: recorded ones with `present` from storage,
/// archives only on storage as `recorded: false` (their deployment is the
/// one on that vmid now, if any). Newest first. One `pvesm list` per storage.
pub async fn list(
    pve: &Pve,
    store: &Store,
    base: &BackupPolicy,
    deployment: Option<&str>,
) -> Result<Vec<BackupInfo>, Error> {
    let deployments = store.list_deployments()?;
    let mut storages: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = &base.storage {
        storages.insert(s.clone());
    }
    for d in &deployments {
        if let Some(s) = policy_of(&d.spec, base).storage {
            storages.insert(s);
        }
    }
    let recorded = store.backups(None)?;
    for r in &recorded {
        storages.insert(r.storage.clone());
    }
    let by_vmid: BTreeMap<u32, &DeploymentRecord> =
        deployments.iter().map(|d| (d.vmid, d)).collect();
    let mut on_storage: BTreeMap<String, (String, u32, Option<u64>)> = BTreeMap::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    for s in &storages {
        match pve.pvesm_list(s, Some("backup"), None).await {
            Ok(vols) => {
                listed.insert(s.clone());
                for v in vols {
                    if let Some(vmid) = v.vmid {
                        let size = v.size.bytes();
                        on_storage.insert(v.volid, (s.clone(), vmid, size));
                    }
                }
            }
            Err(e) => tracing::warn!(storage = %s, "cannot list backups: {e}"),
        }
    }
    let now = crate::store::now_ms();
    let mut out = Vec::new();
    let known: BTreeSet<&str> = recorded.iter().map(|r| r.volid.as_str()).collect();
    for r in &recorded {
        // A storage that could not be listed says nothing about presence.
        let present = !listed.contains(&r.storage) || on_storage.contains_key(&r.volid);
        if listed.contains(&r.storage) {
            let missing = if present { None } else { Some(now) };
            if missing.is_some() != r.missing_ms.is_some() {
                store.set_backup_missing(&r.volid, missing)?;
            }
        }
        out.push(to_api(r, present));
    }
    for (volid, (storage, vmid, size)) in &on_storage {
        if known.contains(volid.as_str()) {
            continue;
        }
        let dep = by_vmid.get(vmid);
        out.push(BackupInfo {
            volid: volid.clone(),
            storage: storage.clone(),
            vmid: *vmid,
            deployment: dep.map(|d| d.name.clone()),
            app: dep.map(|d| d.app.clone()),
            app_version: None,
            time: archive_time(volid).map(rfc3339).unwrap_or_default(),
            size: *size,
            mode: None,
            notes: String::new(),
            protected: false,
            verified: crate::api::Verified::Unverified,
            verified_at: None,
            verify_detail: None,
            present: true,
            recorded: false,
        });
    }
    if let Some(name) = deployment {
        out.retain(|b| b.deployment.as_deref() == Some(name));
    }
    out.sort_by(|a, b| b.time.cmp(&a.time).then(a.volid.cmp(&b.volid)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_give_their_time() {
        let t = archive_time("local:backup/vzdump-lxc-141-2026_01_02-03_04_05.tar.zst").unwrap();
        assert_eq!(rfc3339(t), "2026-01-02T03:04:05Z");
        assert!(archive_time("local:backup/mine.tar.zst").is_none());
        assert!(archive_time("vzdump-lxc-141-2026_13_02-03_04_05.tar").is_none());
        assert!(archive_time("vzdump-lxc-141-2026_01_02-03").is_none());
    }

    #[test]
    fn notes_round_trip_and_prune_skips_zeros() {
        let n = "1ld deployment=nb app=netbox-agent version=0.1.0 spec=sha256:ab (nb)";
        let m = parse_notes(n);
        assert_eq!(m["deployment"], "nb");
        assert_eq!(m["spec"], "sha256:ab");
        assert!(parse_notes("made by hand").is_empty());
        let p = BackupPolicy {
            keep_last: Some(3),
            keep_daily: Some(0),
            ..Default::default()
        };
        assert_eq!(
            prune(&p).to_property_string().as_deref(),
            Some("keep-last=3")
        );
    }
}
