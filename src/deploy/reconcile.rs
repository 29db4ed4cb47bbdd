//! Startup reconciliation (containers tagged `1ld` that no deployment
//! records) and the periodic drift check.
//!
//! Invariants: reconciliation only reports — it never destroys or changes
//! a container it does not own; the drift loop never dies (a tick's error
//! is logged and the loop goes on) and publishes an event only when a
//! deployment's drift changes.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::api::{EventType, UnmanagedContainer};
use crate::error::Error;
use crate::events::EventBus;
use crate::pve::{Pve, PveError};
use crate::store::{now_ms, Store};

/// The app a container looks like: its `1ld-<app>` tag.
pub fn app_of_tags(tags: &[String]) -> Option<String> {
    tags.iter().find_map(|t| {
        t.strip_prefix("1ld-")
            .filter(|a| !a.is_empty())
            .map(str::to_string)
    })
}

/// Containers on this node tagged `1ld` that no deployment records.
pub async fn unmanaged(pve: &Pve, store: &Store) -> Result<Vec<UnmanagedContainer>, Error> {
    let known: std::collections::BTreeSet<u32> = store
        .list_deployments()?
        .into_iter()
        .map(|d| d.vmid)
        .collect();
    let mut out: Vec<UnmanagedContainer> = pve
        .cluster_cts()
        .await?
        .into_iter()
        .filter(|c| c.node == pve.node() && !c.template)
        .filter(|c| c.tags.iter().any(|t| t == "1ld"))
        .filter(|c| !known.contains(&c.vmid))
        .map(|c| UnmanagedContainer {
            vmid: c.vmid,
            name: c.name.clone(),
            app: app_of_tags(&c.tags),
            tags: c.tags,
            status: format!("{:?}", c.status).to_lowercase(),
        })
        .collect();
    out.sort_by_key(|c| c.vmid);
    Ok(out)
}

/// At startup: reports unmanaged `1ld` containers (log + lifecycle event).
pub async fn startup(pve: &Pve, store: &Store, events: &EventBus) {
    match unmanaged(pve, store).await {
        Ok(list) if list.is_empty() => {}
        Ok(list) => {
            for c in &list {
                tracing::warn!(vmid = c.vmid, name = c.name.as_deref().unwrap_or(""), "container tagged 1ld is not a recorded deployment; adopt it (POST /v1/deployments/adopt) or remove its tag");
            }
            events.publish(
                EventType::Lifecycle,
                serde_json::json!({"action": "unmanaged_containers", "containers": list}),
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot list containers for reconciliation"),
    }
}

/// One drift check of every deployment; returns how many changed. A
/// deployment that drifted (or drifted differently) is also an alert.
///
/// With `ct_config_dir` (the node's container configs, when supervision
/// reads files) the configs are read there, with no subprocess; else with
/// one `pct config` per deployment.
pub async fn drift_tick(
    pve: &Pve,
    store: &Store,
    events: &EventBus,
    alerts: Option<&dyn crate::notify::AlertSink>,
    ct_config_dir: Option<&std::path::Path>,
) -> Result<usize, Error> {
    let mut changed = 0;
    for rec in store.list_deployments()? {
        let read = match ct_config_dir {
            Some(dir) => match std::fs::read_to_string(dir.join(format!("{}.conf", rec.vmid))) {
                Ok(text) => {
                    let main = crate::supervise::hoststate::main_section(&text);
                    crate::pve::parse::pct_config::parse_pct_config(&main)
                        .map(Some)
                        .map_err(|e| e.to_string())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.to_string()),
            },
            None => match pve.pct_config(rec.vmid, false).await {
                Ok(cfg) => Ok(Some(cfg)),
                Err(PveError::NotFound { .. }) => Ok(None),
                Err(e) => Err(e.to_string()),
            },
        };
        let drift = match read {
            Ok(Some(cfg)) => super::drift::compare(&rec.spec, &cfg),
            Ok(None) => vec![super::drift::gone()],
            Err(e) => {
                tracing::debug!(deployment = %rec.name, error = %e, "drift check skipped");
                continue;
            }
        };
        if drift == rec.drift {
            continue;
        }
        // Re-read to avoid overwriting a concurrent operation's change of
        // other fields; a deployment destroyed (or replaced) meanwhile gets
        // no record and no event.
        let Some(mut fresh) = store.get_deployment(&rec.name)? else {
            continue;
        };
        if fresh.vmid != rec.vmid || fresh.drift == drift {
            continue;
        }
        fresh.drift = drift;
        store.update_deployment(&fresh)?;
        changed += 1;
        let checked = now_ms();
        events.publish(
            EventType::Lifecycle,
            serde_json::json!({"action": "drift", "deployment": fresh.name, "vmid": fresh.vmid,
                               "drift": fresh.drift, "checked_ms": checked}),
        );
        if let (Some(sink), false) = (alerts, fresh.drift.is_empty()) {
            let what: Vec<String> = fresh
                .drift
                .iter()
                .map(|d| format!("{}: expected {}, found {}", d.field, d.expected, d.actual))
                .collect();
            let alert = crate::notify::Alert {
                kind: crate::notify::AlertKind::Drift,
                severity: crate::notify::Severity::Warning,
                deployment: Some(fresh.name.clone()),
                app: Some(fresh.app.clone()),
                title: format!(
                    "{}: CT {} drifted from its deployment",
                    fresh.name, fresh.vmid
                ),
                message: format!(
                    "{}; `1ldctl apply` converges it back, or record the change in the spec",
                    what.join("; ")
                ),
                dedupe_key: Some(format!("{}/drift/{checked}", fresh.name)),
                time_ms: checked,
                data: serde_json::json!({"vmid": fresh.vmid, "drift": fresh.drift}),
            };
            if let Err(e) = sink.raise(&alert) {
                tracing::error!(deployment = %fresh.name, "cannot queue the drift alert: {e}");
            }
        }
    }
    Ok(changed)
}

/// Runs [`drift_tick`] every `every` until `stop`.
pub async fn drift_loop(
    pve: Pve,
    store: Store,
    events: EventBus,
    alerts: Option<std::sync::Arc<dyn crate::notify::AlertSink>>,
    ct_config_dir: Option<std::path::PathBuf>,
    every: Duration,
    stop: CancellationToken,
) {
    if every.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if let Err(e) = drift_tick(
            &pve,
            &store,
            &events,
            alerts.as_deref(),
            ct_config_dir.as_deref(),
        )
        .await
        {
            tracing::warn!(error = %e, "drift check failed; trying again next time");
        }
    }
}
