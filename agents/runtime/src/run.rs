//! Startup, the three modes (serve, `--self-check`, `--once`) and shutdown.
//!
//! Startup order: config (→ `config` check), `[service]` defaults, the agent's
//! own validation, state dir, secrets (→ `secrets` check), then the agent's
//! [`Agent::build`]. In serve mode a failure there exits 78 (`EX_CONFIG`, so
//! the unit's `RestartPreventExitStatus=78` stops a restart loop on a bad
//! config) or 1; in `--self-check` it becomes an unhealthy check in the
//! printed document (exit 2), so the deployer sees *why*.
//!
//! Serve mode: bind, start the HTTP server, the work loop and the watchdog,
//! send `READY=1`, then wait for SIGTERM/SIGINT; on one, stop accepting,
//! cancel the running cycle (grace period, then abort), drain connections and
//! exit 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::config::{self, ConfigError, Invalid, ServiceConfig, ServiceSettings};
use crate::health::{CheckOutcome, Checks, Health, Reporter, StateDirWritable};
use crate::http_client::BaseUrl;
use crate::secrets::{self, SecretsError};
use crate::server::{self, Endpoints};
use crate::worker::{
    self, CycleContext, LoopParams, LoopShared, TriggerHandle, TriggerReason, WorkLoopAlive, Worker,
};

/// `EX_CONFIG` from sysexits.h: configuration error.
pub const EXIT_CONFIG: u8 = 78;

/// Static facts about an agent binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentInfo {
    /// Name: binary, unit, user, `/etc/<name>`, `/var/lib/<name>`.
    pub name: &'static str,
    /// Version (`env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Port of the HTTP endpoints unless `service.listen` says otherwise.
    pub default_port: u16,
    /// Path of the status endpoint (`/status`, `/wiki-agent/status`).
    pub status_path: &'static str,
}

/// Everything an agent gets to build itself.
#[derive(Debug)]
pub struct Setup<C, S> {
    /// The parsed config.
    pub config: C,
    /// The parsed secrets.
    pub secrets: S,
    /// The `[service]` settings with defaults applied.
    pub settings: ServiceSettings,
    /// The check registry: register probes, create reporters.
    pub checks: Checks,
    /// Requests an immediate cycle (keep it for webhooks).
    pub trigger: TriggerHandle,
    /// `--dry-run`.
    pub dry_run: bool,
    /// `--self-check`: the agent must not create or change local state.
    pub self_check: bool,
}

impl<C, S> Setup<C, S> {
    /// The upstream API an agent checks: `url` parsed (an error names
    /// `url_key`), `credential` refused when blank (named `credential_key`,
    /// with the secrets file), and the `check` reporter, pending until
    /// `service` is first checked.
    ///
    /// # Errors
    /// A bad URL or a blank credential.
    pub fn upstream(
        &self,
        url_key: &str,
        url: &str,
        credential_key: &str,
        credential: &crate::Secret,
        check: &str,
        service: &str,
    ) -> Result<(BaseUrl, Reporter), BuildError> {
        let base = BaseUrl::parse(url).map_err(|e| Invalid::new(url_key, e.to_string()))?;
        if credential.is_blank() {
            return Err(BuildError::Failed(format!(
                "{credential_key} in {} is empty",
                self.settings.secrets_file.display()
            )));
        }
        let api = self.checks.reporter(
            check,
            CheckOutcome::pending(format!("{service} at {} not checked yet", base.as_str())),
        );
        Ok((base, api))
    }
}

/// An agent could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A config value is not acceptable (reported with the config's path).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Anything else, with what was being done.
    #[error("{0}")]
    Failed(String),
}

/// An agent binary: static facts, config and secrets types, construction.
/// Its work is the [`Worker`] implementation.
pub trait Agent: Worker + Sized {
    /// Static facts.
    const INFO: AgentInfo;
    /// The whole config file (must contain a `service: ServiceConfig` table
    /// and use `deny_unknown_fields`).
    type Config: DeserializeOwned + Send + Sync + 'static;
    /// The secrets file (`deny_unknown_fields`; values as [`crate::Secret`]).
    type Secrets: DeserializeOwned + Send + Sync + 'static;

    /// The config's `[service]` table.
    fn service(config: &Self::Config) -> &ServiceConfig;

    /// Checks that TOML typing cannot express; runs before secrets are read.
    fn validate(_config: &Self::Config) -> Result<(), Invalid> {
        Ok(())
    }

    /// Builds the agent: registers its checks, opens its state.
    fn build(setup: Setup<Self::Config, Self::Secrets>) -> Result<Self, BuildError>;
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Secrets file.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The agent's own construction.
    #[error("cannot start: {0}")]
    Build(String),
    /// The listening socket.
    #[error("cannot listen on {addr}: {source} (set service.listen to a free address)")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl StartupError {
    /// Process exit code in serve mode.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartupError::Config(_) | StartupError::Secrets(_) => EXIT_CONFIG,
            StartupError::Build(_) | StartupError::Bind { .. } => 1,
        }
    }

    /// The health check this failure is reported under in `--self-check`.
    fn check_name(&self) -> &'static str {
        match self {
            StartupError::Config(_) => "config",
            StartupError::Secrets(_) => "secrets",
            StartupError::Build(_) | StartupError::Bind { .. } => "agent",
        }
    }
}

fn config_path<A: Agent>(cli: &Cli) -> PathBuf {
    cli.config
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/etc/{}/config.toml", A::INFO.name)))
}

/// Loads everything and builds the agent.
fn prepare<A: Agent>(
    cli: &Cli,
    checks: &Checks,
    trigger: TriggerHandle,
) -> Result<(A, ServiceSettings), StartupError> {
    let path = config_path::<A>(cli);
    let invalid = |invalid| ConfigError::Invalid {
        path: path.clone(),
        invalid,
    };
    let config: A::Config = config::load(&path)?;
    let settings = A::service(&config)
        .resolve(A::INFO.name, A::INFO.default_port)
        .map_err(invalid)?;
    A::validate(&config).map_err(invalid)?;
    checks.record(
        "config",
        CheckOutcome::healthy(format!("loaded {}", path.display())),
    );

    if !cli.self_check && !settings.state_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.state_dir)
        {
            // Not fatal here: the state_dir check reports it.
            tracing::warn!(dir = %settings.state_dir.display(), error = %e, "cannot create the state directory");
        }
    }
    checks.register(StateDirWritable::new(&settings.state_dir));

    let secrets: A::Secrets = secrets::load(&settings.secrets_file)?;
    checks.record(
        "secrets",
        CheckOutcome::healthy(format!("loaded {}", settings.secrets_file.display())),
    );

    let agent = A::build(Setup {
        config,
        secrets,
        settings: settings.clone(),
        checks: checks.clone(),
        trigger,
        dry_run: cli.dry_run,
        self_check: cli.self_check,
    })
    .map_err(|e| match e {
        BuildError::Invalid(i) => StartupError::Config(invalid(i)),
        BuildError::Failed(m) => StartupError::Build(m),
    })?;
    Ok((agent, settings))
}

/// An agent binary's whole `main`: parses the command line, sets up logging
/// and the tokio runtime, runs, and returns the exit code.
pub fn main<A: Agent>() -> ExitCode {
    let cli = Cli::parse_for(A::INFO.name, A::INFO.version, A::INFO.about);
    crate::logging::init(A::INFO.name);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", A::INFO.name);
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        match spawn_signal_watch(shutdown.clone()) {
            Ok(()) => run::<A>(&cli, shutdown).await,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                1
            }
        }
    });
    // Do not wait for stray blocking tasks (a probe stuck on a dead disk).
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::from(code)
}

/// Cancels `shutdown` on the first SIGTERM or SIGINT.
fn spawn_signal_watch(shutdown: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
        shutdown.cancel();
    });
    Ok(())
}

/// Runs the mode `cli` selects until done or until `shutdown` is cancelled;
/// returns the exit code.
pub async fn run<A: Agent>(cli: &Cli, shutdown: CancellationToken) -> u8 {
    if cli.self_check {
        self_check::<A>(cli).await
    } else if cli.once {
        once::<A>(cli, shutdown).await
    } else {
        match serve::<A>(cli, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!("{e}");
                e.exit_code()
            }
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("cannot serialize: {e}"),
    }
}

async fn self_check<A: Agent>(cli: &Cli) -> u8 {
    let checks = Checks::new(A::INFO.name, A::INFO.version);
    let (trigger, _rx) = TriggerHandle::channel();
    match prepare::<A>(cli, &checks, trigger) {
        Ok((agent, _)) => agent.probe().await,
        Err(e) => checks.record(e.check_name(), CheckOutcome::unhealthy(e.to_string())),
    }
    let report = match tokio::task::spawn_blocking(move || checks.evaluate()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("health evaluation failed: {e}");
            return Health::Unhealthy.exit_code();
        }
    };
    print_json(&report);
    report.status.exit_code()
}

async fn once<A: Agent>(cli: &Cli, shutdown: CancellationToken) -> u8 {
    let checks = Checks::new(A::INFO.name, A::INFO.version);
    let (trigger, _rx) = TriggerHandle::channel();
    let (agent, settings) = match prepare::<A>(cli, &checks, trigger) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("{e}");
            return Health::Unhealthy.exit_code();
        }
    };
    let agent = Arc::new(agent);
    let started = std::time::Instant::now();
    let started_at = time::OffsetDateTime::now_utc();
    let mut ctx = CycleContext::new(1, TriggerReason::Once, cli.dry_run);
    ctx = ctx.with_cancel(shutdown.child_token());
    let result = worker::run_cycle(
        &agent,
        ctx,
        settings.cycle_timeout,
        settings.shutdown_grace,
        &shutdown,
    )
    .await;
    let record = worker::record_of(
        1,
        &TriggerReason::Once,
        started_at,
        started.elapsed(),
        &result,
        cli.dry_run,
    );
    worker::log_cycle(&record);
    print_json(&record);
    match result {
        Ok(r) => r.status.exit_code(),
        Err(_) => Health::Unhealthy.exit_code(),
    }
}

async fn serve<A: Agent>(cli: &Cli, shutdown: CancellationToken) -> Result<(), StartupError> {
    let checks = Checks::new(A::INFO.name, A::INFO.version);
    let (trigger, triggers) = TriggerHandle::channel();
    let (agent, settings) = prepare::<A>(cli, &checks, trigger)?;
    let agent = Arc::new(agent);
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartupError::Bind {
            addr: settings.listen,
            source,
        })?;
    let local = listener.local_addr().unwrap_or(settings.listen);

    let shared = LoopShared::new(
        settings.interval,
        settings.jitter,
        settings.cycle_timeout,
        cli.dry_run,
        shutdown.clone(),
    );
    let alive = WorkLoopAlive(Arc::clone(&shared));
    checks.register(alive.clone());

    let status = {
        let agent = Arc::clone(&agent);
        let shared = Arc::clone(&shared);
        let checks = checks.clone();
        let started_at = crate::health::rfc3339(time::OffsetDateTime::now_utc());
        Arc::new(move || {
            serde_json::json!({
                "service": A::INFO.name,
                "version": A::INFO.version,
                "started_at": started_at,
                "uptime_s": checks.uptime_s(),
                "work": shared.status(),
                "agent": agent.status(),
            })
        })
    };
    let server_stop = CancellationToken::new();
    let mut server = tokio::spawn(server::serve(
        listener,
        Endpoints {
            checks: checks.clone(),
            status_path: A::INFO.status_path,
            status,
            routes: A::has_routes().then(|| {
                let agent = Arc::clone(&agent);
                let f: server::RouteFn = Arc::new(move |req| {
                    let agent = Arc::clone(&agent);
                    Box::pin(async move { agent.route(req).await })
                });
                f
            }),
            max_body: agent.max_request_body(),
        },
        server_stop.clone(),
        Duration::from_secs(5),
    ));
    let mut work = tokio::spawn(worker::run_loop(
        Arc::clone(&agent),
        Arc::clone(&shared),
        triggers,
        LoopParams {
            interval: settings.interval,
            jitter: settings.jitter,
            cycle_timeout: settings.cycle_timeout,
            grace: settings.shutdown_grace,
            dry_run: cli.dry_run,
        },
        shutdown.clone(),
    ));
    if let Some(every) = crate::notify::watchdog_interval() {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every / 2);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let loop_ok = {
                    use crate::health::Check;
                    alive.run().status != Health::Unhealthy
                };
                if loop_ok {
                    crate::notify::watchdog();
                } else {
                    tracing::error!("work loop stuck: withholding the watchdog ping");
                }
            }
        });
    }
    tracing::info!(
        dry_run = cli.dry_run,
        "{} {} serving on {local}{}",
        A::INFO.name,
        A::INFO.version,
        if cli.dry_run { " (dry run)" } else { "" }
    );
    crate::notify::ready(&format!("serving on {local}"));

    let mut server_done = false;
    let mut work_done = false;
    tokio::select! {
        () = shutdown.cancelled() => {}
        r = &mut server => {
            server_done = true;
            tracing::error!(result = ?r, "HTTP server stopped unexpectedly; shutting down");
            shutdown.cancel();
        }
        r = &mut work => {
            work_done = true;
            tracing::error!(result = ?r, "work loop stopped unexpectedly; shutting down");
            shutdown.cancel();
        }
    }
    crate::notify::stopping("shutting down");
    // Stop accepting at once; the loop gets the grace period to finish or
    // abort its cycle at a safe point.
    server_stop.cancel();
    if !work_done {
        let limit = settings.shutdown_grace + Duration::from_secs(2);
        if tokio::time::timeout(limit, &mut work).await.is_err() {
            work.abort();
        }
    }
    if !server_done {
        let _ = tokio::time::timeout(Duration::from_secs(7), &mut server).await;
    }
    tracing::info!("stopped");
    Ok(())
}
