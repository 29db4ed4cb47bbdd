//! Deployments: turning an app manifest plus settings into a running,
//! healthy, recorded service in its own container — and keeping it so.
//!
//! What it owns (the operations that use it live in
//! [`crate::ops::kinds`]: `deploy`, `deployment.apply`, `.start`, `.stop`,
//! `.restart`, `.destroy`, `.adopt`):
//! - [`facts`]: reading the host before planning;
//! - [`spec`]: validation (every problem at once) and the [`crate::api::Plan`];
//! - [`install`]: the service user, files and unit inside the container;
//! - [`probe`]: health probes and the deploy gate;
//! - [`proxy`]: the optional nginx in front of the service (packages from
//!   the host cache, the rendered site);
//! - [`drift`]: comparing a container with its recorded spec;
//! - [`view`]: the API view of a deployment (live state, ip, health);
//! - [`logs`]: the service's journal (`GET /v1/deployments/{name}/logs`);
//! - [`reconcile`]: startup reconciliation and the periodic drift check;
//! - [`net`]: bridges and leases;
//! - [`egress`]: the probe guard (connections to a container leave through
//!   its bridge or not at all).
//!
//! Invariants:
//! - nothing touches the host before the whole request validated;
//! - a deploy's container carries its operation's id in its description
//!   (`1ld-op: <id>`), and compensation destroys only a container carrying
//!   its own id, so it never destroys what it did not create;
//! - secret values live only in the secrets directory and in the 0600
//!   files inside the container; the store keeps their keys;
//! - no shell anywhere: values reach the container as file contents or as
//!   single argv elements.

pub mod drift;
pub mod egress;
pub mod facts;
pub mod install;
pub mod logs;
pub mod net;
pub mod probe;
pub mod proxy;
pub mod reconcile;
pub mod spec;
pub mod view;

use std::path::PathBuf;

use crate::api::DeployRequest;
use crate::apps::{App, Catalog};
use crate::config::AppsConfig;
use crate::error::{Error, ErrorKind};
use crate::events::EventBus;
use crate::pve::Pve;
use crate::secrets::Secrets;
use crate::store::Store;

/// What deployment operations need besides their [`crate::ops::OpCtx`].
#[derive(Clone)]
pub struct Env {
    /// The state database.
    pub store: Store,
    /// Secret values.
    pub secrets: Secrets,
    /// The event bus.
    pub events: EventBus,
    /// `[apps]`.
    pub apps: AppsConfig,
    /// Where rendered files wait to be pushed.
    pub staging_dir: PathBuf,
    /// `[backup]` as a policy: the base of every deployment's.
    pub backup: crate::api::BackupPolicy,
    /// Where alerts go (backup failures), when there is a notifier.
    pub alerts: Option<std::sync::Arc<dyn crate::notify::AlertSink>>,
    /// `[backup] notify_success`.
    pub notify_backup_success: bool,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("apps", &self.apps)
            .finish_non_exhaustive()
    }
}

impl Env {
    /// The environment under configuration `cfg`.
    pub fn new(
        store: Store,
        secrets: Secrets,
        events: EventBus,
        cfg: &crate::config::Config,
        alerts: Option<std::sync::Arc<dyn crate::notify::AlertSink>>,
    ) -> Self {
        Self {
            store,
            secrets,
            events,
            apps: cfg.apps.clone(),
            staging_dir: crate::paths::Paths::from_config(cfg).staging_dir,
            backup: cfg.backup.policy(),
            alerts,
            notify_backup_success: cfg.backup.notify_success,
        }
    }

    /// The catalog as it is now (built-ins + `[apps] dir`).
    pub fn catalog(&self) -> Catalog {
        Catalog::load(&self.apps.dir)
    }
}

/// Turns field errors into one 400 naming the first field and listing all.
pub fn field_errors(errs: Vec<crate::apps::settings::FieldError>) -> Error {
    let first = errs.first().map(|e| e.field.clone()).unwrap_or_default();
    let msg = if errs.len() == 1 {
        errs[0].to_string()
    } else {
        format!(
            "{} problems: {}",
            errs.len(),
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Error::bad_request(first, msg)
}

/// The app `name`, or 400 naming `app` with the known apps.
pub fn find_app(catalog: &Catalog, name: &str) -> Result<App, Error> {
    catalog.get(name).cloned().ok_or_else(|| {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        Error::bad_request(
            "app",
            format!(
                "app: no app called '{shown}'; known apps: {}",
                catalog.names().join(", ")
            ),
        )
    })
}

/// Validates `req` against the catalog and the host and builds the spec;
/// 400 listing every problem.
pub async fn prepare(
    env: &Env,
    pve: &Pve,
    req: &DeployRequest,
) -> Result<(App, spec::DeploySpec), Error> {
    let catalog = env.catalog();
    let app = find_app(&catalog, &req.app)?;
    let facts = facts::HostFacts::gather(pve, &env.store, &env.apps.sys_class_net).await?;
    let mut errs = Vec::new();
    if let Some(b) = &req.backup {
        for (field, msg) in b.or(&env.backup).problems("backup") {
            errs.push(crate::apps::settings::FieldError::new(field, msg));
        }
    }
    let spec = match spec::build(&app, req, &facts, &env.apps) {
        Ok(s) if errs.is_empty() => s,
        Ok(_) => return Err(field_errors(errs)),
        Err(mut e) => {
            e.extend(errs);
            return Err(field_errors(e));
        }
    };
    Ok((app, spec))
}

/// Names the failing `step` in `e`'s message. An unclassified failure
/// (a command's own error) keeps its text — it holds the command's stderr —
/// instead of the generic "internal error".
pub fn step_error(step: &str, e: Error) -> Error {
    let message = match (&e.kind, &e.detail) {
        (ErrorKind::Internal, Some(d)) => d.clone(),
        _ => e.message.clone(),
    };
    let kind = match e.kind {
        ErrorKind::Internal => ErrorKind::DependencyDown,
        k => k,
    };
    Error::new(kind, format!("step '{step}' failed: {message}"))
}
