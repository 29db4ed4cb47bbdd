//! The daemon's lifecycle: startup order, readiness, signals, shutdown.
//!
//! [`run`] is the whole daemon; `src/bin/1ldd.rs` only parses the command
//! line, and tests call [`run`] in-process.
//!
//! Startup order (each step can refuse to start with a message naming the
//! cause and the fix):
//! 1. capabilities: log the effective set; without what pct/vzdump need,
//!    refuse; drop what nothing ever needs from the bounding set;
//! 2. an exclusive lock on the state directory, the state store (integrity
//!    check, migrations) and the secrets;
//! 3. logging with the secrets' redactor;
//! 4. the Proxmox tools (`pveversion`); missing tools do not stop the
//!    daemon: host endpoints answer 503 naming the tool and `[pve] bin_dir`;
//! 5. the socket (handed over by systemd, or bound here; a live daemon on
//!    it makes us refuse before we touch its operations);
//! 6. startup reconciliation: operations that were running become
//!    `interrupted` and are compensated;
//! 7. `READY=1`, then the main loops: API server, retention, notification
//!    delivery, watchdog, signals.
//!
//! Shutdown (SIGTERM/SIGINT, or [`RunOptions::shutdown`] in tests):
//! `STOPPING=1`, stop accepting operations, let running steps reach a safe
//! point within `[ops] shutdown_grace_secs`, stop the API server, exit 0.
//! SIGHUP reloads the configuration file; an invalid file is logged and the
//! old configuration stays.

pub mod caps;
pub mod cli;
pub mod harden;
pub mod logging;
pub mod notify;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::events::EventBus;
use crate::ops::Ops;
use crate::paths::Paths;
use crate::pve::Pve;
use crate::secrets::Secrets;
use crate::server::{self, AppState, SharedConfig};
use crate::store::Store;

/// How often finished operations and old lifecycle events are pruned.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// Why the daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Missing capabilities.
    #[error(transparent)]
    Caps(#[from] caps::CapsError),
    /// The state database cannot be used.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Secrets, operations recovery and other daemon-level failures.
    #[error("{0}")]
    Daemon(#[from] crate::error::Error),
    /// The socket cannot be bound or taken over.
    #[error(transparent)]
    Socket(#[from] server::SocketError),
    /// The API server failed.
    #[error("API server: {0}")]
    Serve(#[from] std::io::Error),
}

/// What the caller learns once the daemon is ready.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The socket it listens on.
    pub socket: PathBuf,
    /// From the start of [`run`] to ready.
    pub startup: Duration,
    /// Operations found running at startup and compensated.
    pub interrupted: usize,
}

/// How [`run`] behaves beyond the configuration.
#[derive(Debug)]
pub struct RunOptions {
    /// The configuration file, re-read on SIGHUP (`None`: no reload).
    pub config_path: Option<PathBuf>,
    /// Refuse to start without the capabilities pct/vzdump need. Off only for
    /// in-process tests of the API as an unprivileged user.
    pub require_caps: bool,
    /// Handle SIGTERM/SIGINT/SIGHUP (the process's signals: off in tests).
    pub handle_signals: bool,
    /// Cancel to stop the daemon as SIGTERM would.
    pub shutdown: CancellationToken,
    /// Told when the daemon is ready (after `READY=1`).
    pub ready: Option<tokio::sync::oneshot::Sender<Ready>>,
}

impl RunOptions {
    /// What `1ldd` uses: caps required, signals handled, reload from `config_path`.
    pub fn production(config_path: PathBuf) -> Self {
        Self {
            config_path: Some(config_path),
            require_caps: true,
            handle_signals: true,
            shutdown: CancellationToken::new(),
            ready: None,
        }
    }

    /// For in-process tests: no caps requirement, no signal handlers.
    pub fn in_process(shutdown: CancellationToken) -> Self {
        Self {
            config_path: None,
            require_caps: false,
            handle_signals: false,
            shutdown,
            ready: None,
        }
    }
}

/// Runs the daemon until shutdown. See the module docs for the order.
pub async fn run(config: Config, mut opts: RunOptions) -> Result<(), DaemonError> {
    let started = Instant::now();
    let paths = Paths::from_config(&config);

    // 1. Capabilities (logged once logging is up).
    let effective = caps::effective().unwrap_or_else(|e| e.to_string());
    let caps_note = match caps::check_required() {
        Ok(()) => {
            let dropped = caps::restrict_bounding_set()?;
            let names: Vec<String> = dropped.iter().map(ToString::to_string).collect();
            format!("dropped from the bounding set: {}", names.join(","))
        }
        Err(e) if opts.require_caps => return Err(e.into()),
        Err(e) => format!("{e} (continuing: capability check disabled for this run)"),
    };

    // 2. State and secrets, held exclusively: a second 1ldd on the same
    // state would take over operations the first one is running.
    notify::status("opening the state database");
    let _state_lock = lock_state_dir(&paths)?;
    let store = Store::open(&paths)?;
    let secrets = Secrets::open(&paths)?;
    let redactor = secrets.redactor().clone();

    // 3. Logging (redacting).
    logging::init(&redactor);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        effective_caps = %effective,
        state = %paths.state_dir.display(),
        "1ldd starting; {caps_note}"
    );

    // 4. The Proxmox tools.
    notify::status("detecting Proxmox VE");
    let pve = match Pve::from_config(&config.pve).await {
        Ok(p) => {
            tracing::info!(version = %p.version().version, node = p.node(), "Proxmox VE found");
            Some(p)
        }
        Err(e) => {
            tracing::warn!(
                "Proxmox VE tools unavailable: {e}; host operations will answer 503 \
                 until they are installed (or [pve] bin_dir points at them) and 1ldd restarts"
            );
            None
        }
    };

    // 5. The socket, before reconciliation: a live daemon on it refuses us
    // before we touch its operations.
    let (listener, bound_here) = match server::from_systemd()? {
        Some(l) => {
            tracing::info!("using the socket handed over by systemd");
            (l, false)
        }
        None => (
            server::bind(&paths.socket, &config.api.group, server::SOCKET_MODE)?,
            true,
        ),
    };

    // 6. Reconciliation.
    let events = EventBus::persistent(store.clone(), redactor.clone())?;
    let ops = Ops::new(
        store.clone(),
        events.clone(),
        redactor.clone(),
        pve.clone(),
        &config.ops,
    );
    notify::status("reconciling interrupted operations");
    let interrupted = ops.recover(crate::ops::kinds::rebuild).await?;
    for op in &interrupted {
        tracing::warn!(op = %op.id, kind = %op.kind, "operation interrupted by a restart; compensated");
    }
    // Deployments: no deploy runs now, so no vmid is held; report `1ld`
    // containers the store does not know (never touching them).
    store.clear_vmid_reservations()?;
    if let Some(p) = &pve {
        crate::deploy::reconcile::startup(p, &store, &events).await;
    }
    let drift_pve = pve.clone();
    let drift_every = Duration::from_secs(config.apps.drift_interval_secs);
    // Where supervision reads container configs directly, drift does too.
    let drift_files = (crate::supervise::hoststate::HostReader::new(&config.supervise).source()
        == crate::config::HostStateSource::Files)
        .then(|| config.supervise.ct_config_dir.clone());

    let shared: SharedConfig = Arc::new(RwLock::new(Arc::new(config)));
    let supervisor = crate::supervise::Supervisor::new(
        store.clone(),
        pve.clone(),
        ops.clone(),
        events.clone(),
        secrets.clone(),
        shared.clone(),
    );
    let notifier = crate::notify::Notifier::new(store.clone(), secrets.clone(), shared.clone());
    supervisor.set_alert_sink(Arc::new(notifier.clone()));
    let state_secrets = secrets.clone();
    let state = AppState {
        config: shared.clone(),
        pve,
        store: store.clone(),
        ops: ops.clone(),
        events: events.clone(),
        secrets: secrets.clone(),
        notifier: notifier.clone(),
        started,
        supervisor: supervisor.clone(),
    };

    // 7. Serve, then ready.
    let stop = opts.shutdown.clone();
    let server_stop = CancellationToken::new();
    let server = {
        let s = server_stop.clone();
        tokio::spawn(server::serve(listener, state, async move {
            s.cancelled().await
        }))
    };
    let heartbeats = notify::Heartbeats::default();
    let loops = CancellationToken::new();
    tokio::spawn(retention_loop(
        ops.clone(),
        store.clone(),
        shared.clone(),
        heartbeats.register("retention"),
        notify::StallSwitch::from_env(&paths.state_dir),
        loops.clone(),
    ));
    tokio::spawn(
        notifier
            .clone()
            .run(loops.clone(), heartbeats.register("notify")),
    );
    if let Some(p) = drift_pve {
        tokio::spawn(crate::deploy::reconcile::drift_loop(
            p,
            store.clone(),
            events.clone(),
            Some(Arc::new(notifier.clone())),
            drift_files.clone(),
            drift_every,
            loops.clone(),
        ));
    }
    tokio::spawn(supervisor.run(loops.clone(), heartbeats.register("supervisor")));
    {
        let (st, se, ev, sh, nt) = (
            store.clone(),
            state_secrets.clone(),
            events.clone(),
            shared.clone(),
            notifier.clone(),
        );
        let env_of: Arc<dyn Fn() -> crate::deploy::Env + Send + Sync> = Arc::new(move || {
            crate::deploy::Env::new(
                st.clone(),
                se.clone(),
                ev.clone(),
                &shared_config(&sh),
                Some(Arc::new(nt.clone())),
            )
        });
        tokio::spawn(crate::backup::schedule::run(
            crate::backup::schedule::Planner::new(store.clone(), crate::schedule::system_tz()),
            ops.clone(),
            shared.clone(),
            env_of,
            loops.clone(),
            heartbeats.register("backups"),
        ));
    }
    if let Some(interval) = notify::watchdog_interval() {
        tokio::spawn(notify::run_watchdog(
            interval,
            heartbeats.clone(),
            loops.clone(),
        ));
    }
    if opts.handle_signals {
        tokio::spawn(signal_loop(
            stop.clone(),
            opts.config_path.clone(),
            shared.clone(),
            heartbeats.register("signals"),
        ));
    }
    let startup = started.elapsed();
    events.publish(
        crate::api::EventType::Lifecycle,
        serde_json::json!({"action": "daemon_started", "version": env!("CARGO_PKG_VERSION"),
                           "interrupted_operations": interrupted.len(),
                           "interrupted": interrupted.iter().map(|o| o.id.as_str()).collect::<Vec<_>>()}),
    );
    notify::ready(&format!("ready; listening on {}", paths.socket.display()));
    tracing::info!(startup_ms = startup.as_millis() as u64, socket = %paths.socket.display(), "1ldd ready");
    if let Some(tx) = opts.ready.take() {
        let _ = tx.send(Ready {
            socket: paths.socket.clone(),
            startup,
            interrupted: interrupted.len(),
        });
    }

    // Until asked to stop (or the server dies).
    let mut server = server;
    let served = tokio::select! {
        () = stop.cancelled() => None,
        r = &mut server => Some(r),
    };
    notify::stopping("stopping: letting running operations reach a safe point");
    tracing::info!("1ldd stopping");
    let grace = Duration::from_secs(shared_config(&shared).ops.shutdown_grace_secs);
    ops.shutdown(grace).await;
    events.publish(
        crate::api::EventType::Lifecycle,
        serde_json::json!({"action": "daemon_stopping"}),
    );
    server_stop.cancel();
    loops.cancel();
    let result = match served {
        Some(r) => r,
        None => server.await,
    };
    if bound_here {
        if let Err(e) = std::fs::remove_file(&paths.socket) {
            tracing::debug!("socket not removed: {e}");
        }
    }
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Serve(e)),
        Err(join) => Err(DaemonError::Daemon(crate::error::Error::internal(format!(
            "API server task: {join}"
        )))),
    }
}

/// Takes an exclusive lock on `<state_dir>/1ldd.lock` for the daemon's life.
fn lock_state_dir(paths: &Paths) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    use std::os::unix::fs::DirBuilderExt;
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        DaemonError::Daemon(crate::error::Error::new(
            crate::error::ErrorKind::Internal,
            format!("{what} {}: {e}", paths.state_dir.display()),
        ))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&paths.state_dir)
        .map_err(|e| fail("cannot create the state directory", &e))?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.state_dir.join("1ldd.lock"))
        .map_err(|e| fail("cannot open the lock file in", &e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        fail(
            "another 1ldd is running on the state directory (stop it first: systemctl stop 1ld);",
            &e,
        )
    })
}

fn shared_config(shared: &SharedConfig) -> Arc<Config> {
    crate::server::config_snapshot(shared)
}

/// Prunes finished operations, old lifecycle events and finished
/// notifications every hour. `stall` is the test-only watchdog fault.
async fn retention_loop(
    ops: Ops,
    store: Store,
    config: SharedConfig,
    beat: notify::Beat,
    mut stall: Option<notify::StallSwitch>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(notify::beat_every());
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if stall.as_mut().is_some_and(notify::StallSwitch::stalled) {
            continue;
        }
        beat.alive();
        if last_prune.is_some_and(|t| t.elapsed() < RETENTION_EVERY) {
            continue;
        }
        last_prune = Some(Instant::now());
        let days = shared_config(&config).ops.retention_days;
        match ops.prune(days) {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "old operations pruned"),
            Ok(_) => {}
            Err(e) => tracing::error!("pruning operations failed: {e}"),
        }
        let cutoff = crate::store::now_ms() - i64::from(days) * 86_400_000;
        if let Err(e) = store.delete_events_before(cutoff) {
            tracing::error!("pruning lifecycle events failed: {e}");
        }
        let keep = shared_config(&config).notify.retention_days;
        let cutoff = crate::store::now_ms() - i64::from(keep) * 86_400_000;
        match store.prune_notifications(cutoff) {
            Ok(n) if n > 0 => tracing::info!(pruned = n, "old notifications pruned"),
            Ok(_) => {}
            Err(e) => tracing::error!("pruning notifications failed: {e}"),
        }
    }
}

/// SIGTERM/SIGINT stop the daemon; SIGHUP reloads the configuration.
async fn signal_loop(
    stop: CancellationToken,
    config_path: Option<PathBuf>,
    shared: SharedConfig,
    beat: notify::Beat,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop 1ldd with SIGKILL only");
        return;
    };
    let mut tick = tokio::time::interval(notify::beat_every());
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM"); stop.cancel(); return; }
            _ = int.recv() => { tracing::info!("SIGINT"); stop.cancel(); return; }
            _ = hup.recv() => reload(config_path.as_deref(), &shared),
            _ = tick.tick() => beat.alive(),
        }
    }
}

/// Re-reads the configuration; keeps the old one when the new is invalid.
fn reload(path: Option<&std::path::Path>, shared: &SharedConfig) {
    let Some(path) = path else {
        return;
    };
    notify::reloading();
    match Config::load(path) {
        Ok(new) => {
            let old = shared_config(shared);
            if old.api != new.api || old.state_dir != new.state_dir || old.pve != new.pve {
                tracing::warn!(
                    "configuration reloaded; changes to state_dir, [api] and [pve] take \
                     effect at the next restart"
                );
            } else {
                tracing::info!("configuration reloaded");
            }
            match shared.write() {
                Ok(mut c) => *c = Arc::new(new),
                Err(p) => *p.into_inner() = Arc::new(new),
            }
        }
        Err(e) => tracing::error!("configuration not reloaded, keeping the old one: {e}"),
    }
    // READY=1 ends the reload for systemd (Type=notify-reload semantics).
    notify::ready("ready");
}
