//! The API server: axum over the Unix socket, HTTP/1.1 + JSON.
//!
//! What this module owns:
//! - [`AppState`]: what the daemon hands the server (config, `pve`, store,
//!   operations, events, secrets, notifier);
//! - [`router`] / [`serve`]: the routes (handler files mirror URLs, see
//!   [`handlers`]), the role layer ([`auth`]), graceful shutdown;
//! - [`socket`]: binding the socket or taking it from systemd;
//! - [`error`]: the one mapping of errors to HTTP responses.
//!
//! Invariants:
//! - every request passes [`auth::authorize`] first (the fallbacks too), so
//!   a caller without a role gets 403 before anything else is looked at;
//! - every non-2xx response has the body `{"error":{"code","message"}}`;
//! - no handler spawns a process for host changes: those are operations
//!   ([`crate::ops`]); handlers only read (`GET /v1/host` reads through
//!   [`crate::pve`]);
//! - on shutdown, streams (`/v1/events`) and long polls (`wait`) end at once,
//!   and the server stops within [`DRAIN`] even if a client hangs.
//!
//! Adding a resource: a handler file under `handlers/` mirroring its URL,
//! its routes in [`router`], its paths and schemas in
//! [`handlers::openapi::ApiDoc`], and the golden `tests/fixtures/openapi.json`
//! updated (`UPDATE_GOLDEN=1 cargo test --test api`).

pub mod auth;
pub mod error;
pub mod handlers;
pub mod socket;

use std::future::{Future, IntoFuture};
use std::io;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventBus;
use crate::ops::Ops;
use crate::pve::Pve;
use crate::secrets::Secrets;
use crate::store::Store;

pub use auth::{Caller, Peer, PeerInfo, Role};
pub use socket::{bind, from_systemd, SocketError, SOCKET_MODE};

/// After the shutdown signal, how long open connections get to finish.
pub const DRAIN: Duration = Duration::from_secs(5);

/// The configuration as the daemon shares it: replaced as a whole on reload
/// (SIGHUP), read as a cheap snapshot by each request.
pub type SharedConfig = Arc<RwLock<Arc<Config>>>;

/// Everything a request may need, built by the daemon at startup.
#[derive(Clone)]
pub struct AppState {
    /// The current configuration (SIGHUP swaps the inner `Arc`).
    pub config: SharedConfig,
    /// The Proxmox tools, when they were found at startup; `None` makes
    /// `GET /v1/host` retry detection and answer 503 naming what is missing.
    pub pve: Option<Pve>,
    /// The state database.
    pub store: Store,
    /// Operations.
    pub ops: Ops,
    /// The event bus.
    pub events: EventBus,
    /// Secrets and the redactor.
    pub secrets: Secrets,
    /// Notifications: the queue and its targets.
    pub notifier: crate::notify::Notifier,
    /// When the daemon started.
    pub started: Instant,
    /// The supervisor (health states, history, live probe data).
    pub supervisor: crate::supervise::Supervisor,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pve", &self.pve)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

/// A snapshot of the shared configuration (cheap: an `Arc` clone).
pub fn config_snapshot(shared: &SharedConfig) -> Arc<Config> {
    match shared.read() {
        Ok(c) => Arc::clone(&c),
        // A writer only swaps an Arc; a poisoned lock still holds a valid one.
        Err(poisoned) => Arc::clone(&poisoned.into_inner()),
    }
}

impl AppState {
    /// A snapshot of the current configuration.
    pub fn config(&self) -> Arc<Config> {
        config_snapshot(&self.config)
    }
}

/// The server's own shared state: the daemon's plus the role cache and the
/// shutdown token streams and long polls watch.
#[derive(Debug)]
pub struct Ctx {
    /// The daemon's state.
    pub app: AppState,
    /// Role lookups.
    pub roles: auth::Roles,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// The last rendered `GET /v1/operations` page (see its handler).
    pub op_list_cache: handlers::operations::ListCache,
    /// The host snapshot the deployment views share.
    pub host_cache: crate::supervise::hostcache::HostCache,
    /// The last rendered `GET /v1/deployments` (see its handler).
    pub deployment_list_cache: handlers::deployments::ListCache,
}

/// The whole API as a router (shutdown token never cancelled; [`serve`]
/// uses its own). Requests need a [`PeerInfo`] connect info to get a role.
pub fn router(state: AppState) -> Router {
    router_with(state, CancellationToken::new())
}

fn router_with(state: AppState, shutdown: CancellationToken) -> Router {
    use axum::routing::post;
    use handlers::{
        apps, backups, deployments, events, health, host, logs, metrics, notifications, openapi,
        operations, root, templates, upgrades,
    };
    let ctx = Arc::new(Ctx {
        app: state,
        roles: auth::Roles::new(),
        shutdown,
        op_list_cache: handlers::operations::ListCache::default(),
        host_cache: Default::default(),
        deployment_list_cache: Default::default(),
    });
    let v1 = Router::new()
        .route("/host", get(host::get_host))
        .route("/operations", get(operations::list_operations))
        .route(
            "/operations/{id}",
            get(operations::get_operation).delete(operations::cancel_operation),
        )
        .route("/operations/{id}/log", get(operations::get_operation_log))
        .route("/operations/{id}/wait", get(operations::wait_operation))
        .route("/templates", axum::routing::post(templates::post_templates))
        .route("/apps", get(apps::list_apps))
        .route("/apps/{name}", get(apps::get_app))
        .route(
            "/deployments",
            get(deployments::list_deployments).post(deployments::post_deployments),
        )
        .route("/deployments/unmanaged", get(deployments::list_unmanaged))
        .route("/deployments/adopt", post(deployments::adopt_deployment))
        .route(
            "/deployments/{name}",
            get(deployments::get_deployment)
                .put(deployments::put_deployment)
                .delete(deployments::delete_deployment),
        )
        .route(
            "/deployments/{name}/start",
            post(deployments::start_deployment),
        )
        .route(
            "/deployments/{name}/stop",
            post(deployments::stop_deployment),
        )
        .route(
            "/deployments/{name}/restart",
            post(deployments::restart_deployment),
        )
        .route("/deployments/{name}/logs", get(logs::get_deployment_logs))
        .route(
            "/deployments/{name}/health",
            get(health::get_deployment_health),
        )
        .route("/deployments/{name}/backups", post(backups::post_backup))
        .route("/deployments/{name}/upgrade", post(upgrades::upgrade))
        .route("/backups", get(backups::list_backups))
        .route("/backups/{volid}/restore", post(backups::restore_backup))
        .route("/backups/{volid}/verify", post(backups::verify_backup))
        .route("/events", get(events::get_events))
        .route("/notifications", get(notifications::list_notifications))
        .route(
            "/notifications/test",
            post(notifications::test_notifications),
        )
        .route(
            "/notifications/targets/{name}/secret",
            axum::routing::put(notifications::put_target_secret)
                .delete(notifications::delete_target_secret),
        )
        .route("/openapi.json", get(openapi::get_openapi));
    Router::new()
        .route("/", get(root::get_root))
        .route("/metrics", get(metrics::get_metrics))
        .nest("/v1", v1)
        .fallback(error::unknown_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&ctx),
            auth::authorize,
        ))
        .with_state(ctx)
}

/// Serves `GET /metrics` alone over TCP at `addr` (for Prometheus) until
/// `stop`. Peers there have no Unix credentials, so this router has no
/// role layer and nothing but the read-only metrics.
async fn serve_metrics(addr: &str, state: AppState, stop: CancellationToken) -> io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("[api] metrics_listen {addr}: {e}")))?;
    tracing::info!(addr, "serving GET /metrics over TCP");
    let ctx = Arc::new(Ctx {
        app: state,
        roles: auth::Roles::new(),
        shutdown: stop.clone(),
        op_list_cache: handlers::operations::ListCache::default(),
        host_cache: Default::default(),
        deployment_list_cache: Default::default(),
    });
    let app = Router::new()
        .route("/metrics", get(handlers::metrics::get_metrics))
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "only GET /metrics is served here; the API is on the Unix socket\n",
            )
        })
        .with_state(ctx);
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!("metrics listener: {e}");
        }
    });
    Ok(())
}

/// Serves the API on `listener` until `shutdown` completes, then stops
/// accepting, ends event streams and long polls, and lets open requests
/// finish for at most [`DRAIN`].
pub async fn serve(
    listener: UnixListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let token = CancellationToken::new();
    let metrics_at = state.config().api.metrics_listen.clone();
    if !metrics_at.is_empty() {
        serve_metrics(&metrics_at, state.clone(), token.clone()).await?;
    }
    let app = router_with(state, token.clone());
    let signal = {
        let token = token.clone();
        async move {
            shutdown.await;
            tracing::info!("API server shutting down");
            token.cancel();
        }
    };
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<PeerInfo>(),
    )
    .with_graceful_shutdown(signal)
    .into_future();
    tokio::select! {
        r = server => r,
        () = async {
            token.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        } => {
            tracing::warn!(drain = ?DRAIN, "connections still open after the drain; closing them");
            Ok(())
        }
    }
}
