//! The API view of a deployment: the recorded row, plus (for a single
//! deployment) the live container state, address and a health probe.
//!
//! Invariant: secret values never appear — secret keys show `"***"`.

use std::time::Duration;

use crate::api::{ContainerState, Deployment, HealthStatus, HealthSummary, SECRET_MASK};
use crate::apps::Catalog;
use crate::pve::types::CtState;
use crate::pve::{Pve, PveError};
use crate::store::{now_ms, rfc3339, DeploymentRecord, Store};

/// How long the live probe of `GET /v1/deployments/{name}` may take.
pub const LIVE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The recorded view (`state` as given).
pub fn to_api(rec: &DeploymentRecord, state: ContainerState) -> Deployment {
    let mut settings = rec.spec.settings.clone();
    for k in &rec.spec.secret_keys {
        settings.insert(k.clone(), serde_json::Value::String(SECRET_MASK.into()));
    }
    Deployment {
        name: rec.name.clone(),
        app: rec.app.clone(),
        app_version: rec.app_version.clone(),
        vmid: rec.vmid,
        node: rec.node.clone(),
        intended_state: rec.intended_state,
        state,
        ip: rec.ip.clone(),
        health: rec.health.clone(),
        settings,
        resources: rec.spec.resources.clone(),
        config_hash: rec.config_hash.clone(),
        adopted: rec.adopted,
        created_at: rfc3339(rec.created_ms),
        updated_at: rfc3339(rec.updated_ms),
        last_backup: rec.last_backup_ms.map(rfc3339),
        drift: rec.drift.clone(),
        supervision: None,
        supervise: rec.spec.supervise,
    }
}

/// The supervision summary of a supervision row.
pub fn supervision(row: &crate::store::SupervisionRow) -> crate::api::SupervisionSummary {
    crate::api::SupervisionSummary {
        state: row.state,
        since: rfc3339(row.since_ms),
        detail: row.detail.clone(),
    }
}

/// The container's state as `pct status` says.
pub async fn container_state(pve: &Pve, vmid: u32) -> ContainerState {
    match pve.pct_status(vmid, false).await {
        Ok(s) => match s.status {
            Some(CtState::Running) => ContainerState::Running,
            Some(CtState::Stopped) => ContainerState::Stopped,
            _ => ContainerState::Unknown,
        },
        Err(PveError::NotFound { .. }) => ContainerState::Missing,
        Err(_) => ContainerState::Unknown,
    }
}

/// The live view: state, address and one health probe; the row's ip and
/// health are updated when they changed.
pub async fn live(
    pve: &Pve,
    store: &Store,
    catalog: &Catalog,
    mut rec: DeploymentRecord,
) -> Deployment {
    let state = container_state(pve, rec.vmid).await;
    let mut changed = false;
    if state == ContainerState::Running {
        if let Ok(ifs) = pve.ct_interfaces(rec.vmid).await {
            let ip = super::net::ipv4_of(&ifs).map(|a| a.to_string());
            if ip.is_some() && ip != rec.ip {
                rec.ip = ip;
                changed = true;
            }
        }
    }
    let health = match (state, catalog.get(&rec.app)) {
        (ContainerState::Running, Some(app)) => {
            let ip = rec.ip.as_deref().and_then(|s| s.parse().ok());
            // A deployment with the proxy is probed through it.
            let def = super::proxy::deployed_health(&app.manifest, &rec.spec.tags);
            let via = super::egress::Via::recorded(&rec.spec.resources.bridge);
            let r =
                super::probe::probe_once(&def, pve, rec.vmid, ip, &via, LIVE_PROBE_TIMEOUT).await;
            HealthSummary {
                status: r.status,
                checked_at: Some(rfc3339(now_ms())),
                detail: Some(r.detail),
            }
        }
        (ContainerState::Running, None) => HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: Some(rfc3339(now_ms())),
            detail: Some(format!(
                "app '{}' is no longer in the catalog; cannot probe",
                rec.app
            )),
        },
        (s, _) => HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: Some(rfc3339(now_ms())),
            detail: Some(format!("container is {s:?}").to_lowercase()),
        },
    };
    if health.status != rec.health.status {
        changed = true;
    }
    rec.health = health;
    if changed {
        if let Err(e) = store.update_deployment(&rec) {
            tracing::warn!(deployment = %rec.name, error = %e, "cannot record the live state");
        }
    }
    to_api(&rec, state)
}
