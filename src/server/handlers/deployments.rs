//! `/v1/deployments`: deploy, list, inspect, start/stop/restart, apply,
//! destroy, adopt, and the unmanaged `1ld` containers.
//!
//! Every mutating verb validates here (400 listing every problem) and then
//! submits an operation (`202` + `Location`); nothing here changes the host.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{
    AdoptRequest, ApplyPreview, ApplyRequest, Change, ContainerState, DeleteQuery, DeployRequest,
    Deployment, DeploymentQuery, HealthStatus, HealthSummary, IntendedState, Operation, Plan,
    Resources, UnmanagedContainer, SECRET_MASK,
};
use crate::apps::settings::{resolve, FieldError};
use crate::deploy::spec::{check_name, render_files, resources};
use crate::deploy::{field_errors, find_app, prepare, view, Env};
use crate::error::Error;
use crate::ops::kinds::deploy::Deploy;
use crate::ops::kinds::deployment::{set_spec, Action, ApplyPlan, DeploymentOp};
use crate::ops::OpTask;
use crate::pve::Pve;
use crate::server::auth::Caller;
use crate::server::error::{with_location, ApiJson, ApiPath, ApiQuery};
use crate::server::Ctx;
use crate::store::{now_ms, DeploymentRecord, StoredSpec};
use crate::supervise::hostcache::Versioned;
use crate::supervise::hoststate::HostReader;
use hyper::body::Bytes;

pub(super) fn env(ctx: &Ctx) -> Env {
    Env::new(
        ctx.app.store.clone(),
        ctx.app.secrets.clone(),
        ctx.app.events.clone(),
        &ctx.app.config(),
        Some(std::sync::Arc::new(ctx.app.notifier.clone())),
    )
}

pub(super) fn pve(ctx: &Ctx) -> Result<&Pve, Error> {
    ctx.app.pve.as_ref().ok_or_else(|| {
        Error::dependency_down(
            "the Proxmox tools were not found at startup; check `[pve] bin_dir` and restart 1ldd",
        )
    })
}

pub(super) async fn submit(
    ctx: &Ctx,
    task: Box<dyn OpTask>,
    caller: Caller,
) -> Result<Response, Error> {
    let op = ctx.app.ops.submit(task, caller.requestor).await?;
    let location = format!("/v1/operations/{}", op.id);
    Ok(with_location(
        (StatusCode::ACCEPTED, Json(op)).into_response(),
        &location,
    ))
}

/// The secret values a deployment has now.
pub(super) fn secrets_of(
    env: &Env,
    rec: &DeploymentRecord,
) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for k in &rec.spec.secret_keys {
        if let Some(v) = env.secrets.get(&rec.name, k)? {
            out.insert(k.clone(), v);
        }
    }
    Ok(out)
}

pub(super) fn record(ctx: &Ctx, name: &str) -> Result<DeploymentRecord, Error> {
    ctx.app.store.get_deployment(name)?.ok_or_else(|| {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        Error::not_found(format!(
            "no deployment called '{shown}' (GET /v1/deployments lists them)"
        ))
    })
}

/// Deploys an app into a new container: `202` + the `deploy` operation, or
/// `200` + the plan with `dry_run`.
#[utoipa::path(
    post,
    path = "/v1/deployments",
    tag = "deployments",
    request_body = DeployRequest,
    responses(
        (status = 200, description = "dry_run: the plan; nothing was changed", body = Plan),
        (status = 202, description = "Deploy started", body = Operation,
         headers(("Location" = String, description = "/v1/operations/{id}"))),
        (status = 400, description = "Every validation problem, each naming its field", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 409, description = "A deploy of this name is running", body = crate::api::ApiErrorBody),
        (status = 503, description = "The Proxmox tools are missing or failing", body = crate::api::ApiErrorBody),
    )
)]
pub async fn post_deployments(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiJson(req): ApiJson<DeployRequest>,
) -> Result<Response, Error> {
    deploy(&ctx, caller, &req).await
}

async fn deploy(ctx: &Ctx, caller: Caller, req: &DeployRequest) -> Result<Response, Error> {
    let pve = pve(ctx)?;
    let env = env(ctx);
    let (_, spec) = prepare(&env, pve, req).await?;
    if req.dry_run {
        return Ok(Json(spec.plan(pve.major())).into_response());
    }
    submit(ctx, Box::new(Deploy::new(env, spec)), caller).await
}

/// The last rendered `GET /v1/deployments` and its entity tag, keyed by
/// the store's write generation and the host snapshot's version (`None`: no
/// state could be read). Polling clients get the same bytes again while
/// neither changed, or a `304` when they send the tag back.
#[derive(Debug, Default)]
pub struct ListCache(std::sync::Mutex<Option<(ListKey, Rendered)>>);

type ListKey = (u64, Option<u64>);

/// A rendered list: body and its `ETag` (a content hash, so it survives a
/// restart of the daemon and never names different bytes).
#[derive(Debug, Clone)]
struct Rendered {
    body: Bytes,
    etag: String,
}

impl Rendered {
    fn new(body: Vec<u8>) -> Self {
        let etag = format!(
            "\"{}\"",
            crate::apps::render::fingerprint(&[("deployments", &body)])
        );
        Self {
            body: Bytes::from(body),
            etag,
        }
    }

    /// `304` when `if_none_match` names this tag (or is `*`), else `200`.
    fn respond(self, if_none_match: Option<&axum::http::HeaderValue>) -> Response {
        use axum::http::header::{CONTENT_TYPE, ETAG};
        let matches = if_none_match
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == "*" || t == self.etag)
            });
        if matches {
            return (StatusCode::NOT_MODIFIED, [(ETAG, self.etag)]).into_response();
        }
        (
            [
                (CONTENT_TYPE, "application/json".to_string()),
                (ETAG, self.etag),
            ],
            self.body,
        )
            .into_response()
    }
}

impl ListCache {
    fn get(&self, key: ListKey) -> Option<Rendered> {
        let slot = self.0.lock().ok()?;
        slot.as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, r)| r.clone())
    }

    fn put(&self, key: ListKey, r: Rendered) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((key, r));
        }
    }
}

/// The host snapshot the views use (shared, see `supervise::hostcache`),
/// read after `store_generation`; `None` when it cannot be read: every
/// state is then unknown (not "missing": that would claim the containers
/// are gone).
async fn host_states(ctx: &Ctx, store_generation: u64) -> Option<Versioned> {
    let p = ctx.app.pve.as_ref()?;
    // The host state as supervision reads it: on a Proxmox node the
    // container configs and LXC's command sockets (no subprocess), else
    // one `pct list`.
    let reader = HostReader::new(&ctx.app.config().supervise);
    match ctx.host_cache.get(&reader, Some(p), store_generation).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("container states for the deployment views: {e}");
            None
        }
    }
}

/// The state of `vmid` in `host` (see [`host_states`]).
fn state_in(host: Option<&Versioned>, vmid: u32) -> ContainerState {
    match host {
        Some((_, snap)) => match snap.cts.get(&vmid) {
            Some(ct) if ct.running => ContainerState::Running,
            Some(_) => ContainerState::Stopped,
            None => ContainerState::Missing,
        },
        None => ContainerState::Unknown,
    }
}

/// Every deployment as recorded, with each container's current state.
#[utoipa::path(
    get,
    path = "/v1/deployments",
    tag = "deployments",
    params(("If-None-Match" = Option<String>, Header, description = "The `ETag` of a list already held: `304` while it is current")),
    responses(
        (status = 200, description = "Deployments, by name", body = Vec<Deployment>,
         headers(("ETag" = String, description = "Names this list; send it back in `If-None-Match`"))),
        (status = 304, description = "The list named by `If-None-Match` is current"),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn list_deployments(
    State(ctx): State<Arc<Ctx>>,
    headers: axum::http::HeaderMap,
) -> Result<Response, Error> {
    let inm = headers.get(axum::http::header::IF_NONE_MATCH);
    // The generation is read before anything else (see `Store::generation`).
    let generation = ctx.app.store.generation();
    let host = host_states(&ctx, generation).await;
    let key = (generation, host.as_ref().map(|(v, _)| *v));
    if let Some(r) = ctx.deployment_list_cache.get(key) {
        return Ok(r.respond(inm));
    }
    let recs = ctx.app.store.list_deployments()?;
    let sup = ctx.app.store.supervision_all()?;
    let list: Vec<Deployment> = recs
        .iter()
        .map(|r| {
            let mut d = view::to_api(r, state_in(host.as_ref(), r.vmid));
            d.supervision = sup.get(&r.name).map(view::supervision);
            d
        })
        .collect();
    let r = Rendered::new(serde_json::to_vec(&list).map_err(Error::internal)?);
    ctx.deployment_list_cache.put(key, r.clone());
    Ok(r.respond(inm))
}

/// One deployment: as recorded, with the container's state from the shared
/// host snapshot; `live=true` asks the host and probes the app now.
#[utoipa::path(
    get,
    path = "/v1/deployments/{name}",
    tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), DeploymentQuery),
    responses(
        (status = 200, description = "The deployment", body = Deployment),
        (status = 400, description = "Bad query", body = crate::api::ApiErrorBody),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_deployment(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeploymentQuery>,
) -> Result<Json<Deployment>, Error> {
    let generation = ctx.app.store.generation();
    let rec = record(&ctx, &name)?;
    let mut d = match (&ctx.app.pve, q.live) {
        (Some(p), true) => view::live(p, &ctx.app.store, &env(&ctx).catalog(), rec).await,
        _ => {
            let host = host_states(&ctx, generation).await;
            view::to_api(&rec, state_in(host.as_ref(), rec.vmid))
        }
    };
    d.supervision = ctx
        .app
        .store
        .supervision(&name)?
        .as_ref()
        .map(view::supervision);
    Ok(Json(d))
}

async fn lifecycle(
    ctx: &Ctx,
    caller: Caller,
    name: &str,
    action: Action,
) -> Result<Response, Error> {
    pve(ctx)?;
    let rec = record(ctx, name)?;
    submit(
        ctx,
        Box::new(DeploymentOp::new(env(ctx), &rec.name, rec.vmid, action)),
        caller,
    )
    .await
}

/// Starts the container; records the intended state `running`.
#[utoipa::path(post, path = "/v1/deployments/{name}/start", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    responses((status = 202, description = "Started", body = Operation), (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
              (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn start_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, Error> {
    lifecycle(&ctx, caller, &name, Action::Start).await
}

/// Stops the container; records the intended state `stopped` first, so
/// supervision leaves it stopped.
#[utoipa::path(post, path = "/v1/deployments/{name}/stop", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    responses((status = 202, description = "Stopping", body = Operation), (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
              (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn stop_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, Error> {
    lifecycle(&ctx, caller, &name, Action::Stop).await
}

/// Reboots the container (starts it when stopped).
#[utoipa::path(post, path = "/v1/deployments/{name}/restart", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    responses((status = 202, description = "Restarting", body = Operation), (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
              (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn restart_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, Error> {
    lifecycle(&ctx, caller, &name, Action::Restart).await
}

/// Stops and destroys the container and forgets the deployment; backups are kept.
#[utoipa::path(delete, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), DeleteQuery),
    responses((status = 202, description = "Destroying", body = Operation),
              (status = 400, description = "Bad or unknown query parameter", body = crate::api::ApiErrorBody),
              (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
              (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn delete_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, Error> {
    lifecycle(
        &ctx,
        caller,
        &name,
        Action::Destroy {
            purge: q.purge.unwrap_or(false),
        },
    )
    .await
}

/// Containers tagged `1ld` that no deployment records (adopt them or remove the tag).
#[utoipa::path(get, path = "/v1/deployments/unmanaged", tag = "deployments",
    responses((status = 200, description = "Unmanaged 1ld containers", body = Vec<UnmanagedContainer>),
              (status = 503, description = "The Proxmox tools are missing or failing", body = crate::api::ApiErrorBody)))]
pub async fn list_unmanaged(
    State(ctx): State<Arc<Ctx>>,
) -> Result<Json<Vec<UnmanagedContainer>>, Error> {
    Ok(Json(
        crate::deploy::reconcile::unmanaged(pve(&ctx)?, &ctx.app.store).await?,
    ))
}

/// Records an existing container as a deployment, without reinstalling.
#[utoipa::path(post, path = "/v1/deployments/adopt", tag = "deployments", request_body = AdoptRequest,
    responses((status = 202, description = "Adopting", body = Operation),
              (status = 400, description = "Not adoptable (each reason named)", body = crate::api::ApiErrorBody),
              (status = 404, description = "No such container", body = crate::api::ApiErrorBody)))]
pub async fn adopt_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiJson(req): ApiJson<AdoptRequest>,
) -> Result<Response, Error> {
    let pve = pve(&ctx)?;
    let env = env(&ctx);
    let catalog = env.catalog();
    let app = find_app(&catalog, &req.app)?;
    let cfg = pve.pct_config(req.vmid, false).await?;
    let hostname = cfg.hostname.clone().unwrap_or_default();
    let name = req.name.clone().unwrap_or_else(|| hostname.clone());
    let mut errs = Vec::new();
    if let Some(p) = check_name(&name) {
        errs.push(FieldError::new("name", p));
    } else if env.store.get_deployment(&name)?.is_some() {
        errs.push(FieldError::new(
            "name",
            format!("a deployment called '{name}' exists; give another name"),
        ));
    }
    if let Some(d) = env.store.deployment_by_vmid(req.vmid)? {
        errs.push(FieldError::new(
            "vmid",
            format!("CT {} is already deployment '{}'", req.vmid, d.name),
        ));
    }
    let a = &app.manifest.name;
    let tagged = cfg.tags.iter().any(|t| *t == format!("1ld-{a}") || t == a);
    let named = hostname == *a || hostname.starts_with(&format!("{a}-"));
    if !tagged && !named {
        errs.push(FieldError::new(
            "app",
            format!("CT {} (hostname '{hostname}', tags '{}') does not look like {a}: expected hostname {a} or a tag 1ld-{a}", req.vmid, cfg.tags.join(";")),
        ));
    }
    if !errs.is_empty() {
        return Err(field_errors(errs));
    }
    let net0 = cfg.net.get(&0);
    let resources = Resources {
        cores: cfg.cores.unwrap_or(1),
        memory: u32::try_from(cfg.memory.unwrap_or(512)).unwrap_or(u32::MAX),
        swap: u32::try_from(cfg.swap.unwrap_or(512)).unwrap_or(u32::MAX),
        disk: cfg
            .rootfs
            .as_ref()
            .and_then(|r| r.size_bytes())
            .map_or(0, |b| u32::try_from(b >> 30).unwrap_or(u32::MAX)),
        storage: cfg
            .rootfs
            .as_ref()
            .and_then(|r| r.storage())
            .unwrap_or("")
            .to_string(),
        bridge: net0.and_then(|n| n.bridge.clone()).unwrap_or_default(),
        ip: net0
            .and_then(|n| n.ip)
            .map_or("dhcp".into(), |i| i.to_string()),
        gw: net0.and_then(|n| n.gw).map(|g| g.to_string()),
        ip6: net0
            .and_then(|n| n.ip6)
            .map_or("none".into(), |i| i.to_string()),
        onboot: cfg.onboot,
    };
    let now = now_ms();
    let rec = DeploymentRecord {
        name: name.clone(),
        app: a.clone(),
        app_version: app.manifest.version.clone(),
        vmid: req.vmid,
        node: pve.node().to_string(),
        intended_state: IntendedState::Running,
        spec: StoredSpec {
            resources,
            tags: cfg.tags.clone(),
            settings: BTreeMap::new(),
            secret_keys: Vec::new(),
            supervise: Default::default(),
            backup: Default::default(),
        },
        config_hash: "adopted".into(),
        ip: None,
        health: HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: None,
            detail: Some("adopted; not probed yet".into()),
        },
        drift: Vec::new(),
        adopted: true,
        created_ms: now,
        updated_ms: now,
        last_backup_ms: None,
    };
    submit(
        &ctx,
        Box::new(DeploymentOp::new(
            env,
            &name,
            req.vmid,
            Action::Adopt(Box::new(rec)),
        )),
        caller,
    )
    .await
}

/// Creates the deployment if it does not exist, else converges it to this
/// spec (resources via `pct set`; changed settings → re-render, restart,
/// health gate). `dry_run` returns what would change.
#[utoipa::path(put, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "Deployment name")),
    request_body = ApplyRequest,
    responses((status = 200, description = "dry_run: the preview; or nothing to change: the deployment", body = ApplyPreview),
              (status = 202, description = "Deploying or converging", body = Operation),
              (status = 400, description = "Every validation problem, each naming its field", body = crate::api::ApiErrorBody),
              (status = 409, description = "Another operation holds the container", body = crate::api::ApiErrorBody)))]
pub async fn put_deployment(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> Result<Response, Error> {
    let pve_h = pve(&ctx)?;
    let Some(rec) = ctx.app.store.get_deployment(&name)? else {
        let d = DeployRequest {
            app: req.app.clone(),
            name: Some(name.clone()),
            settings: req.settings.clone(),
            secrets: req.secrets.clone(),
            overrides: req.overrides.clone(),
            backup: req.backup.clone(),
            dry_run: req.dry_run,
            keep_on_failure: req.keep_on_failure,
        };
        if req.dry_run {
            let (_, spec) = prepare(&env(&ctx), pve_h, &d).await?;
            let plan = spec.plan(pve_h.major());
            return Ok(Json(ApplyPreview {
                name,
                steps: plan.steps.clone(),
                create: Some(plan),
                changes: Vec::new(),
            })
            .into_response());
        }
        return deploy(&ctx, caller, &d).await;
    };
    let env = env(&ctx);
    let catalog = env.catalog();
    let mut errs = Vec::new();
    if req.app != rec.app {
        errs.push(FieldError::new("app", format!("deployment '{name}' runs {}; an app cannot be changed by apply (destroy and deploy instead)", rec.app)));
    }
    let app = find_app(&catalog, &rec.app)?;
    let o = &req.overrides;
    if o.vmid.is_some_and(|v| v != rec.vmid) {
        errs.push(FieldError::new(
            "overrides.vmid",
            format!("the vmid ({}) cannot change", rec.vmid),
        ));
    }
    if o.storage
        .as_ref()
        .is_some_and(|s| *s != rec.spec.resources.storage)
    {
        errs.push(FieldError::new(
            "overrides.storage",
            format!(
                "the storage ({}) cannot change by apply",
                rec.spec.resources.storage
            ),
        ));
    }
    let has_proxy = rec.spec.tags.iter().any(|t| t == crate::deploy::proxy::TAG);
    if o.proxy.is_some_and(|p| p != has_proxy) {
        errs.push(FieldError::new(
            "overrides.proxy",
            format!(
                "the proxy is chosen at deploy (this deployment has it {}); \
                 destroy and deploy again to change it",
                if has_proxy { "on" } else { "off" }
            ),
        ));
    }
    if o.disk.is_some_and(|d| d != rec.spec.resources.disk) {
        errs.push(FieldError::new(
            "overrides.disk",
            format!(
                "the disk size ({} GiB) cannot change by apply in this version",
                rec.spec.resources.disk
            ),
        ));
    }
    if let Some(sv) = &o.supervise {
        for (field, msg) in sv.problems("overrides.supervise") {
            errs.push(FieldError::new(field, msg));
        }
    }
    if let Some(b) = &req.backup {
        let base = ctx.app.config().backup.policy();
        for (field, msg) in b.or(&rec.spec.backup).or(&base).problems("backup") {
            errs.push(FieldError::new(field, msg));
        }
    }
    let new_res = resources(&mut errs, &rec.spec.resources, o, None);
    if new_res.bridge != rec.spec.resources.bridge
        && !crate::deploy::net::bridges(&env.apps.sys_class_net).contains(&new_res.bridge)
    {
        errs.push(FieldError::new(
            "overrides.bridge",
            format!("bridge '{}' does not exist on this node", new_res.bridge),
        ));
    }
    let current_secrets = secrets_of(&env, &rec)?;
    let new = match resolve(
        &app.manifest.settings,
        &req.settings,
        &req.secrets,
        Some(&current_secrets),
    ) {
        Ok(r) => Some(r),
        Err(e) => {
            errs.extend(e);
            None
        }
    };
    let (Some(new), true) = (new, errs.is_empty()) else {
        return Err(field_errors(errs));
    };
    let old = resolve(
        &app.manifest.settings,
        &rec.spec.settings,
        &BTreeMap::new(),
        Some(&current_secrets),
    )
    .unwrap_or_default();
    let (files, hash) = render_files(&app, &name, &new, &env.apps.agents_dir);
    let (old_files, _) = render_files(&app, &name, &old, &env.apps.agents_dir);
    let mut changes = Vec::new();
    let r0 = &rec.spec.resources;
    for (field, from, to) in [
        ("cores", r0.cores.to_string(), new_res.cores.to_string()),
        ("memory", r0.memory.to_string(), new_res.memory.to_string()),
        ("swap", r0.swap.to_string(), new_res.swap.to_string()),
        ("onboot", r0.onboot.to_string(), new_res.onboot.to_string()),
        ("bridge", r0.bridge.clone(), new_res.bridge.clone()),
        ("ip", r0.ip.clone(), new_res.ip.clone()),
        (
            "gw",
            r0.gw.clone().unwrap_or_default(),
            new_res.gw.clone().unwrap_or_default(),
        ),
        ("ip6", r0.ip6.clone(), new_res.ip6.clone()),
    ] {
        if from != to {
            changes.push(Change {
                field: field.into(),
                from,
                to,
            });
        }
    }
    let new_public = new.public_json();
    let keys: std::collections::BTreeSet<&String> =
        rec.spec.settings.keys().chain(new_public.keys()).collect();
    for k in keys {
        let (a, b) = (rec.spec.settings.get(k), new_public.get(k));
        if a != b {
            let show =
                |v: Option<&serde_json::Value>| v.map_or("unset".to_string(), |v| v.to_string());
            changes.push(Change {
                field: format!("settings.{k}"),
                from: show(a),
                to: show(b),
            });
        }
    }
    for (k, v) in &new.secrets {
        if current_secrets.get(k) != Some(v) {
            changes.push(Change {
                field: format!("secrets.{k}"),
                from: SECRET_MASK.into(),
                to: SECRET_MASK.into(),
            });
        }
    }
    let supervise = o.supervise.unwrap_or_default().or(rec.spec.supervise);
    for (field, from, to) in [
        (
            "interval_secs",
            rec.spec.supervise.interval_secs,
            supervise.interval_secs,
        ),
        (
            "timeout_secs",
            rec.spec.supervise.timeout_secs,
            supervise.timeout_secs,
        ),
        (
            "jitter_secs",
            rec.spec.supervise.jitter_secs,
            supervise.jitter_secs,
        ),
        (
            "healthy_after",
            rec.spec.supervise.healthy_after.map(u64::from),
            supervise.healthy_after.map(u64::from),
        ),
        (
            "unhealthy_after",
            rec.spec.supervise.unhealthy_after.map(u64::from),
            supervise.unhealthy_after.map(u64::from),
        ),
    ] {
        if from != to {
            let show = |v: Option<u64>| v.map_or("default".to_string(), |v| v.to_string());
            changes.push(Change {
                field: format!("supervise.{field}"),
                from: show(from),
                to: show(to),
            });
        }
    }
    let backup = req.backup.clone().unwrap_or_default().or(&rec.spec.backup);
    let old_b = serde_json::to_value(&rec.spec.backup).unwrap_or_default();
    let new_b = serde_json::to_value(&backup).unwrap_or_default();
    if old_b != new_b {
        let keys: std::collections::BTreeSet<String> = [&old_b, &new_b]
            .iter()
            .filter_map(|v| v.as_object())
            .flat_map(|o| o.keys().cloned())
            .collect();
        for k in keys {
            let (a, b) = (old_b.get(&k), new_b.get(&k));
            if a != b {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or("default".to_string(), |v| v.to_string())
                };
                changes.push(Change {
                    field: format!("backup.{k}"),
                    from: show(a),
                    to: show(b),
                });
            }
        }
    }
    let set = set_spec(r0, &new_res);
    let config_changed = hash != rec.config_hash;
    let mut steps = Vec::new();
    if let Some(s) = &set {
        if let Ok(argv) = s.to_argv(rec.vmid, pve_h.major()) {
            steps.push(argv.join(" "));
        }
    }
    if config_changed {
        steps.push("push the re-rendered configuration".into());
        steps.push(format!("systemctl restart {}", app.manifest.service.unit));
        steps.push(format!("health gate ({})", app.manifest.probe_text()));
    }
    if req.dry_run {
        return Ok(Json(ApplyPreview {
            name,
            create: None,
            changes,
            steps,
        })
        .into_response());
    }
    if set.is_none() && !config_changed && changes.is_empty() {
        return Ok(Json(view::to_api(&rec, ContainerState::Unknown)).into_response());
    }
    let plan = ApplyPlan {
        resources: new_res,
        set,
        files: config_changed.then_some((files, hash)),
        old_files,
        settings: new_public,
        secrets: new.secrets.clone(),
        unit: app.manifest.service.unit.clone(),
        // Through the proxy when the deployment has one.
        health: crate::deploy::proxy::deployed_health(&app.manifest, &rec.spec.tags),
        supervise,
        backup,
    };
    submit(
        &ctx,
        Box::new(DeploymentOp::new(
            env,
            &name,
            rec.vmid,
            Action::Apply(Box::new(plan)),
        )),
        caller,
    )
    .await
}
