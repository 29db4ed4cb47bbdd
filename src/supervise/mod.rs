//! Supervision: every deployment is probed, judged, recorded, repaired and
//! reported on.
//!
//! - [`hoststate`]: the state of every container, one read per round;
//! - [`probe`]: HTTP (pooled keep-alive), TCP, exec probes;
//! - [`machine`]: consecutive outcomes → [`HealthState`] (pure);
//! - [`ladder`]: what to do about an unhealthy deployment (pure);
//! - [`history`]: the API view of a deployment's health history;
//! - [`Supervisor::run`]: the loop.
//!
//! A round (at most one per second, only when some deployment is due):
//! list deployments → one host-state read → probes of the due deployments,
//! concurrently (bounded by `probe_concurrency`, each after a random jitter)
//! → for each: state machine, incident, ladder → one store transaction
//! (raw results, rollups, supervision rows with their alert outbox) →
//! events, alerts, remediation operations.
//!
//! Invariants:
//! - a round costs at most one host subprocess for container states
//!   (none with `host_state = files`), however many deployments there are;
//! - a deployment whose container an operation holds is not probed, and
//!   nothing is done to it;
//! - every remediation is an operation (`remediate.*`, lock `ct/<vmid>`),
//!   and it re-reads the intended state before acting;
//! - a round never overwrites a supervision row a user operation changed
//!   meanwhile (optimistic concurrency on `updated_ms`);
//! - an alert is persisted with the round that decided it and queued after
//!   (outbox), with a dedupe key, so it is sent once, even across restarts.

pub mod history;
pub mod hostcache;
pub mod hoststate;
pub mod ladder;
pub mod machine;
pub mod probe;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::api::{EventType, HealthState, ProbeOutcome, Requestor, SuperviseOverrides};
use crate::apps::manifest::HealthDef;
use crate::apps::Catalog;
use crate::config::{Config, SuperviseConfig};
use crate::deploy::egress::Via;
use crate::deploy::Env;
use crate::events::EventBus;
use crate::notify::{Alert, AlertKind, AlertSink, Severity};
use crate::ops::kinds::remediate::RemediateOp;
use crate::ops::Ops;
use crate::pve::Pve;
use crate::secrets::Secrets;
use crate::server::SharedConfig;
use crate::store::{now_ms, DeploymentRecord, HealthSample, Store, SupervisionRow};

use hoststate::{HostReader, HostSnapshot};
use ladder::{ActionRec, Decision, IncidentRec, LadderRec, Policy, Situation};
use machine::{Streak, Thresholds};

/// Probe latency histogram bucket bounds (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How the supervisor appears as the requestor of its operations.
pub fn requestor() -> Requestor {
    Requestor {
        uid: 0,
        user: "1ldd-supervisor".to_string(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    }
}

/// One deployment's probe timing and thresholds, all sources merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between probes.
    pub interval: Duration,
    /// One probe's limit.
    pub timeout: Duration,
    /// Random delay bound.
    pub jitter: Duration,
    /// The state machine's thresholds.
    pub thresholds: Thresholds,
}

impl Timing {
    /// Deployment overrides, then the app's, then `cfg`.
    pub fn of(
        cfg: &SuperviseConfig,
        app: Option<&crate::apps::manifest::Manifest>,
        dep: &SuperviseOverrides,
    ) -> Timing {
        let o = dep.or(app.map(|m| m.supervise).unwrap_or_default());
        Timing {
            interval: Duration::from_secs(o.interval_secs.unwrap_or(cfg.interval_secs).max(1)),
            timeout: Duration::from_secs(o.timeout_secs.unwrap_or(cfg.probe_timeout_secs).max(1)),
            jitter: Duration::from_secs(o.jitter_secs.unwrap_or(cfg.jitter_secs)),
            thresholds: Thresholds {
                healthy_after: o.healthy_after.unwrap_or(cfg.healthy_threshold).max(1),
                unhealthy_after: o.unhealthy_after.unwrap_or(cfg.unhealthy_threshold).max(1),
                start_grace_ms: app.map_or(60_000, |m| {
                    i64::try_from(m.health.timeout_s.saturating_mul(1000)).unwrap_or(i64::MAX)
                }),
            },
        }
    }

    /// In words (`every 10s, timeout 5s, jitter ≤2s, healthy after 2, unhealthy after 3`).
    pub fn text(&self) -> String {
        format!(
            "every {}s, timeout {}s, jitter <= {}s, healthy after {}, unhealthy after {}",
            self.interval.as_secs(),
            self.timeout.as_secs(),
            self.jitter.as_secs(),
            self.thresholds.healthy_after,
            self.thresholds.unhealthy_after
        )
    }
}

/// The ladder's limits from `[supervise]`.
pub fn policy(cfg: &SuperviseConfig) -> Policy {
    let ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
    Policy {
        remediate: cfg.remediate,
        restart_grace_ms: ms(cfg.restart_grace_secs),
        reboot_grace_ms: ms(cfg.reboot_grace_secs),
        restore_backup: cfg.restore_backup,
        max_per_hour: cfg.max_remediations_per_hour,
        backoff_initial_ms: ms(cfg.backoff_initial_secs),
        backoff_max_ms: ms(cfg.backoff_max_secs),
    }
}

/// A probe latency histogram (Prometheus-style cumulative buckets are
/// computed when exported).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Count per bucket of [`LATENCY_BUCKETS`] (not cumulative), plus +Inf.
    pub counts: Vec<u64>,
    /// Sum of observations (seconds).
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }
}

/// What the supervisor knows about one deployment in memory (for `/metrics`
/// and the health view).
#[derive(Debug, Clone, Default)]
pub struct LiveView {
    /// The supervised state (as last persisted).
    pub state: Option<HealthState>,
    /// The container runs (as last read).
    pub container_up: Option<bool>,
    /// Last time a probe passed (ms).
    pub last_up_ms: Option<i64>,
    /// Last time a probe ran (ms).
    pub last_probe_ms: Option<i64>,
    /// What the ladder waits for.
    pub waiting: Option<String>,
    /// Probe latencies.
    pub latency: Histogram,
    /// Remediations started, by action.
    pub remediations: BTreeMap<&'static str, u64>,
    /// The app (label).
    pub app: String,
    /// The probe timing in words.
    pub timing: String,
}

#[derive(Debug, Default)]
struct Live {
    streak: Option<Streak>,
    next_due: Option<Instant>,
    view: LiveView,
}

/// Round counters for `/metrics` and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoundStats {
    /// Rounds run.
    pub rounds: u64,
    /// Probes run.
    pub probes: u64,
    /// Host-state reads that failed.
    pub host_read_errors: u64,
    /// The last round's duration (seconds).
    pub last_round_secs: f64,
    /// The host-state source in use.
    pub source: String,
}

/// The supervisor. Cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    pve: Option<Pve>,
    ops: Ops,
    events: EventBus,
    secrets: Secrets,
    config: SharedConfig,
    prober: probe::Prober,
    alerts: Mutex<Option<Arc<dyn AlertSink>>>,
    live: Mutex<HashMap<String, Live>>,
    stats: Mutex<RoundStats>,
    catalog: Mutex<Option<CachedCatalog>>,
    /// When the next deployment is due, and when deployments were last listed.
    wake: Mutex<(Option<Instant>, Option<Instant>)>,
}

/// The catalog and the state of its directory when it was loaded.
struct CachedCatalog {
    checked: Instant,
    fingerprint: Vec<(std::ffi::OsString, Option<std::time::SystemTime>, u64)>,
    catalog: Catalog,
}

/// Deployments are listed at least this often, so new ones are picked up
/// even while every known one waits for its interval.
const LIST_EVERY: Duration = Duration::from_secs(10);
/// A round running longer than this is stuck: the supervisor stops
/// beating, and systemd's watchdog restarts the daemon.
const ROUND_STALL: Duration = Duration::from_secs(300);
/// How often the app directory is looked at for changed manifests.
const CATALOG_CHECK_EVERY: Duration = Duration::from_secs(30);

/// Names, modification times and sizes of the manifests in `dir` (plus the
/// directory itself): a change in any of them means the catalog is stale.
fn catalog_fingerprint(
    dir: &std::path::Path,
) -> Vec<(std::ffi::OsString, Option<std::time::SystemTime>, u64)> {
    let mut v = Vec::new();
    if let Ok(m) = std::fs::metadata(dir) {
        v.push((std::ffi::OsString::new(), m.modified().ok(), m.len()));
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                v.push((e.file_name(), m.modified().ok(), m.len()));
            }
        }
    }
    v.sort();
    v
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a due deployment showed this round.
#[derive(Debug, Clone)]
struct Observed {
    outcome: ProbeOutcome,
    detail: String,
    latency_ms: Option<f64>,
    vanished: bool,
    container_up: Option<bool>,
}

impl Supervisor {
    /// A supervisor over the daemon's parts (not running until [`Supervisor::run`]).
    pub fn new(
        store: Store,
        pve: Option<Pve>,
        ops: Ops,
        events: EventBus,
        secrets: Secrets,
        config: SharedConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pve,
                ops,
                events,
                secrets,
                config,
                prober: probe::Prober::new(),
                alerts: Mutex::new(None),
                live: Mutex::new(HashMap::new()),
                stats: Mutex::new(RoundStats::default()),
                catalog: Mutex::new(None),
                wake: Mutex::new((None, None)),
            }),
        }
    }

    /// Where alerts go (the notifier).
    pub fn set_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        *lock(&self.inner.alerts) = Some(sink);
    }

    fn config(&self) -> Arc<Config> {
        crate::server::config_snapshot(&self.inner.config)
    }

    /// The round counters.
    pub fn stats(&self) -> RoundStats {
        lock(&self.inner.stats).clone()
    }

    /// The in-memory view of every supervised deployment, by name.
    pub fn live(&self) -> BTreeMap<String, LiveView> {
        lock(&self.inner.live)
            .iter()
            .map(|(k, v)| (k.clone(), v.view.clone()))
            .collect()
    }

    /// The in-memory view of `name`.
    pub fn live_of(&self, name: &str) -> Option<LiveView> {
        lock(&self.inner.live).get(name).map(|l| l.view.clone())
    }

    /// The catalog: built-ins plus `[apps] dir`, reloaded when a file there
    /// changed (looked at every 30 s).
    pub fn catalog(&self) -> Catalog {
        let dir = self.config().apps.dir.clone();
        let mut c = lock(&self.inner.catalog);
        if let Some(cached) = c.as_mut() {
            if cached.checked.elapsed() < CATALOG_CHECK_EVERY {
                return cached.catalog.clone();
            }
            let fp = catalog_fingerprint(&dir);
            cached.checked = Instant::now();
            if fp == cached.fingerprint {
                return cached.catalog.clone();
            }
        }
        let fingerprint = catalog_fingerprint(&dir);
        let catalog = Catalog::load(&dir);
        *c = Some(CachedCatalog {
            checked: Instant::now(),
            fingerprint,
            catalog: catalog.clone(),
        });
        catalog
    }

    /// Supervises until `stop`: a round every second when something is due,
    /// retention of the history every hour.
    pub async fn run(self, stop: CancellationToken, beat: crate::daemon::notify::Beat) {
        let cfg = self.config();
        let reader = HostReader::new(&cfg.supervise);
        lock(&self.inner.stats).source = match reader.source() {
            crate::config::HostStateSource::PctList => "pct-list".into(),
            _ => "files".into(),
        };
        tracing::info!(
            source = %lock(&self.inner.stats).source,
            enabled = cfg.supervise.enabled,
            "supervisor started"
        );
        self.flush_outboxes();
        // Rounds run as a future polled beside the heartbeat, so a round
        // that waits on slow probes (jitter + timeout) never starves the
        // watchdog; a round stuck past ROUND_STALL stops the beats, so
        // systemd restarts a daemon whose supervision hangs.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = tokio::time::interval(crate::daemon::notify::beat_every());
        let mut round: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> =
            None;
        let mut round_started = Instant::now();
        let mut last_prune: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = beats.tick() => {
                    if round.is_none() || round_started.elapsed() < ROUND_STALL {
                        beat.alive();
                    }
                }
                _ = tick.tick(), if round.is_none() => {
                    let cfg = self.config();
                    if !cfg.supervise.enabled {
                        continue;
                    }
                    let this = self.clone();
                    let reader = reader.clone();
                    round_started = Instant::now();
                    round = Some(Box::pin(async move { this.round(&cfg, &reader).await }));
                }
                () = async { if let Some(r) = round.as_mut() { r.await } }, if round.is_some() => {
                    round = None;
                    if last_prune.is_none_or(|t| t.elapsed() > Duration::from_secs(3600)) {
                        last_prune = Some(Instant::now());
                        let cfg = self.config();
                        let now = now_ms();
                        let raw = now - i64::from(cfg.supervise.history_raw_hours) * 3_600_000;
                        let roll = now - i64::from(cfg.supervise.history_rollup_days) * 86_400_000;
                        match self.inner.store.prune_health(raw, roll) {
                            Ok(n) if n > 0 => tracing::info!(rows = n, "old health history pruned"),
                            Ok(_) => {}
                            Err(e) => tracing::error!("pruning health history failed: {e}"),
                        }
                    }
                }
            }
        }
    }

    /// Re-queues alerts left in outboxes (a crash between a round's write
    /// and the queueing); dedupe keys make this safe.
    fn flush_outboxes(&self) {
        let rows = match self.inner.store.supervision_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read supervision state: {e}");
                return;
            }
        };
        let pending: Vec<(SupervisionRow, Option<i64>)> = rows
            .into_values()
            .filter(|r| !r.ladder.outbox.is_empty())
            .map(|r| {
                let t = Some(r.updated_ms);
                (r, t)
            })
            .collect();
        self.deliver_outboxes(pending);
    }

    /// Queues each row's outbox, then persists the emptied outboxes.
    fn deliver_outboxes(&self, rows: Vec<(SupervisionRow, Option<i64>)>) {
        if rows.is_empty() {
            return;
        }
        let sink = lock(&self.inner.alerts).clone();
        let mut cleared = Vec::new();
        for (mut row, _) in rows {
            let mut ok = true;
            for a in &row.ladder.outbox {
                match &sink {
                    Some(s) => {
                        if let Err(e) = s.raise(a) {
                            tracing::error!(deployment = %row.deployment, "cannot queue an alert: {e}");
                            ok = false;
                        }
                    }
                    None => tracing::debug!(title = %a.title, "no notifier; alert not queued"),
                }
            }
            if ok {
                let token = row.updated_ms;
                row.ladder.outbox.clear();
                row.updated_ms = token + 1;
                cleared.push((row, Some(token)));
            }
        }
        if let Err(e) = self.inner.store.supervision_round(&[], &cleared) {
            tracing::error!("cannot clear alert outboxes: {e}");
        }
    }

    fn env(&self, cfg: &Config) -> Env {
        Env::new(
            self.inner.store.clone(),
            self.inner.secrets.clone(),
            self.inner.events.clone(),
            cfg,
            lock(&self.inner.alerts).clone(),
        )
    }

    /// One round (see the module doc).
    async fn round(&self, cfg: &Config, reader: &HostReader) {
        let started = Instant::now();
        {
            // Nothing due and the list is fresh: no work at all this tick.
            let w = lock(&self.inner.wake);
            if let (Some(next), Some(listed)) = *w {
                if started < next && listed.elapsed() < LIST_EVERY {
                    return;
                }
            }
        }
        let deployments = match self.inner.store.list_deployments() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!("supervisor cannot list deployments: {e}");
                return;
            }
        };
        let catalog = self.catalog();
        let due: Vec<(DeploymentRecord, Timing)> = {
            let mut live = lock(&self.inner.live);
            live.retain(|k, _| deployments.iter().any(|d| &d.name == k));
            let now = Instant::now();
            let due: Vec<(DeploymentRecord, Timing)> = deployments
                .into_iter()
                .filter_map(|d| {
                    let app = catalog.get(&d.app).map(|a| &a.manifest);
                    let t = Timing::of(&cfg.supervise, app, &d.spec.supervise);
                    let l = live.entry(d.name.clone()).or_default();
                    l.view.app = d.app.clone();
                    l.view.timing = t.text();
                    if l.next_due.is_some_and(|at| at > now) {
                        return None;
                    }
                    l.next_due = Some(now + t.interval);
                    Some((d, t))
                })
                .collect();
            let next = live
                .values()
                .filter_map(|l| l.next_due)
                .min()
                .unwrap_or(now + LIST_EVERY);
            *lock(&self.inner.wake) = (Some(next), Some(now));
            due
        };
        if due.is_empty() {
            return;
        }
        let snapshot = reader.read(self.inner.pve.as_ref()).await;
        if let Err(e) = &snapshot {
            lock(&self.inner.stats).host_read_errors += 1;
            tracing::warn!("cannot read the containers' state: {e}");
        }
        let sem = Arc::new(Semaphore::new(cfg.supervise.probe_concurrency.max(1)));
        let mut tasks = Vec::with_capacity(due.len());
        for (d, t) in due {
            let target = format!("ct/{}", d.vmid);
            if let Some(op) = self.inner.ops.holder(&target) {
                lock(&self.inner.live)
                    .entry(d.name.clone())
                    .or_default()
                    .view
                    .waiting = Some(format!("operation {op} holds the container; not probed"));
                continue;
            }
            let def = catalog
                .get(&d.app)
                .map(|a| crate::deploy::proxy::deployed_health(&a.manifest, &d.spec.tags));
            let ct = snapshot
                .as_ref()
                .map(|s| s.cts.get(&d.vmid).cloned())
                .map_err(String::clone);
            let this = self.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let obs = this.observe(&d, &t, def.as_ref(), ct, sem).await;
                (d, t, obs)
            }));
        }
        let mut results = Vec::with_capacity(tasks.len());
        for task in tasks {
            match task.await {
                Ok(r) => results.push(r),
                Err(e) => tracing::error!("a probe task failed: {e}"),
            }
        }
        let snap = snapshot.ok();
        self.judge(cfg, results, snap.as_ref()).await;
        let mut st = lock(&self.inner.stats);
        st.rounds += 1;
        st.last_round_secs = started.elapsed().as_secs_f64();
    }

    /// What deployment `d` shows: from the container's state, else a probe.
    async fn observe(
        &self,
        d: &DeploymentRecord,
        t: &Timing,
        def: Option<&HealthDef>,
        ct: Result<Option<hoststate::CtInfo>, String>,
        sem: Arc<Semaphore>,
    ) -> Observed {
        let intended_running = d.intended_state == crate::api::IntendedState::Running;
        let seen = |outcome, detail: String, up| Observed {
            outcome,
            detail,
            latency_ms: None,
            vanished: false,
            container_up: up,
        };
        let ct = match ct {
            Err(e) => {
                return seen(
                    ProbeOutcome::Unknown,
                    format!("cannot read the container's state: {e}"),
                    None,
                )
            }
            Ok(None) => {
                return Observed {
                    vanished: true,
                    ..seen(
                        ProbeOutcome::Unhealthy,
                        format!("CT {} no longer exists on this node", d.vmid),
                        Some(false),
                    )
                }
            }
            Ok(Some(ct)) => ct,
        };
        if !ct.running {
            return if intended_running {
                seen(
                    ProbeOutcome::Unhealthy,
                    format!(
                        "CT {} is stopped but should run{}",
                        d.vmid,
                        ct.lock
                            .as_deref()
                            .map(|l| format!(" (lock: {l})"))
                            .unwrap_or_default()
                    ),
                    Some(false),
                )
            } else {
                seen(
                    ProbeOutcome::Stopped,
                    format!("CT {} is stopped as asked", d.vmid),
                    Some(false),
                )
            };
        }
        let Some(def) = def else {
            return seen(
                ProbeOutcome::Unknown,
                format!("app '{}' is no longer in the catalog; cannot probe", d.app),
                Some(true),
            );
        };
        if !t.jitter.is_zero() {
            let ms = rand::thread_rng()
                .gen_range(0..=t.jitter.as_millis().min(u128::from(u64::MAX)) as u64);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        let _permit = sem.acquire_owned().await.ok();
        let ip = d.ip.as_deref().and_then(|s| s.parse().ok());
        // Only ever over the container's own bridge (`deploy::egress`).
        let via = Via::recorded(&d.spec.resources.bridge);
        let s = self
            .inner
            .prober
            .probe(def, self.inner.pve.as_ref(), d.vmid, ip, &via, t.timeout)
            .await;
        Observed {
            outcome: s.outcome,
            detail: s.detail,
            latency_ms: Some(s.latency_ms),
            vanished: false,
            container_up: Some(true),
        }
    }

    /// Judges the round's observations, persists them, then acts.
    async fn judge(
        &self,
        cfg: &Config,
        results: Vec<(DeploymentRecord, Timing, Observed)>,
        snap: Option<&HostSnapshot>,
    ) {
        let now = now_ms();
        let mut rows = match self.inner.store.supervision_all() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read supervision state: {e}");
                return;
            }
        };
        let pol = policy(&cfg.supervise);
        let stable_ms =
            i64::try_from(cfg.supervise.stable_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut samples = Vec::with_capacity(results.len());
        let mut writes: Vec<(SupervisionRow, Option<i64>)> = Vec::new();
        let mut events: Vec<serde_json::Value> = Vec::new();
        let mut pending_ops: Vec<(String, u32, ladder::Action, String, String)> = Vec::new();
        for (d, t, obs) in results {
            let existing = rows.remove(&d.name);
            let token = existing.as_ref().map(|r| r.updated_ms);
            let mut row = existing.unwrap_or_else(|| SupervisionRow {
                deployment: d.name.clone(),
                state: HealthState::Starting,
                since_ms: now,
                detail: String::new(),
                incident: None,
                ladder: LadderRec::default(),
                updated_ms: 0,
            });
            let before = row.clone();
            let streak = {
                let mut live = lock(&self.inner.live);
                let l = live.entry(d.name.clone()).or_default();
                let s = Streak::push(l.streak, obs.outcome);
                l.streak = Some(s);
                l.view.container_up = obs.container_up;
                if let Some(ms) = obs.latency_ms {
                    l.view.latency.observe(ms / 1000.0);
                    l.view.last_probe_ms = Some(now);
                }
                if matches!(obs.outcome, ProbeOutcome::Healthy | ProbeOutcome::Degraded) {
                    l.view.last_up_ms = Some(now);
                }
                s
            };
            let prev = row.state;
            if let Some(next) =
                machine::next_state(row.state, row.since_ms, streak, now, &t.thresholds)
            {
                row.state = next;
                row.since_ms = now;
            }
            if obs.vanished
                && streak.count >= t.thresholds.unhealthy_after
                && row.state != HealthState::Failed
            {
                row.state = HealthState::Failed;
                row.since_ms = now;
            }
            row.detail = obs.detail.clone();
            // Incidents.
            let down = matches!(row.state, HealthState::Unhealthy | HealthState::Failed);
            if down && row.incident.is_none() {
                let inc = IncidentRec {
                    id: now.to_string(),
                    started_ms: now,
                    reason: obs.detail.clone(),
                    actions: Vec::new(),
                    gave_up: false,
                };
                let (kind, title) = if obs.vanished {
                    (
                        AlertKind::Vanished,
                        format!("{}: its container CT {} vanished", d.name, d.vmid),
                    )
                } else {
                    (AlertKind::Unhealthy, format!("{} is unhealthy", d.name))
                };
                row.ladder.outbox.push(alert(
                    &d,
                    kind,
                    Severity::Critical,
                    &inc.id,
                    title,
                    obs.detail.clone(),
                    now,
                    serde_json::json!({"incident": inc.id, "vmid": d.vmid}),
                ));
                row.incident = Some(inc);
            } else if row.state.is_up() {
                if let Some(inc) = row.incident.take() {
                    let downtime = (now - inc.started_ms).max(0) / 1000;
                    row.ladder.outbox.push(alert(
                        &d,
                        AlertKind::Recovered,
                        Severity::Info,
                        &inc.id,
                        format!("{} recovered after {}", d.name, human_secs(downtime)),
                        format!(
                            "{}; down since {} ({}); remediations: {}",
                            obs.detail,
                            crate::store::rfc3339(inc.started_ms),
                            inc.reason,
                            if inc.actions.is_empty() {
                                "none".to_string()
                            } else {
                                inc.actions.iter().map(|a| a.action.as_str()).collect::<Vec<_>>().join(", ")
                            }
                        ),
                        now,
                        serde_json::json!({"incident": inc.id, "downtime_secs": downtime, "vmid": d.vmid}),
                    ));
                }
                if now - row.since_ms >= stable_ms {
                    row.ladder.recent_ms.clear();
                }
            } else if row.state == HealthState::Stopped {
                row.incident = None;
            }
            // The ladder.
            row.ladder.prune(now);
            let busy = self.inner.ops.holder(&format!("ct/{}", d.vmid));
            let ct = snap.and_then(|s| s.cts.get(&d.vmid));
            let decision = if snap.is_some() {
                ladder::decide(
                    &Situation {
                        state: row.state,
                        intended_running: d.intended_state == crate::api::IntendedState::Running,
                        ct,
                        busy: busy.as_deref(),
                        incident: row.incident.as_ref(),
                        recent_ms: &row.ladder.recent_ms,
                        now_ms: now,
                    },
                    &pol,
                )
            } else {
                Decision::Nothing
            };
            let mut waiting = None;
            let acting = matches!(decision, Decision::Act(_));
            match decision {
                Decision::Nothing => {}
                Decision::Wait(w) => waiting = Some(w),
                Decision::Act(a) => {
                    let unit = self
                        .catalog()
                        .get(&d.app)
                        .map(|a| a.manifest.service.unit.clone())
                        .unwrap_or_default();
                    pending_ops.push((d.name.clone(), d.vmid, a, unit, obs.detail.clone()));
                }
                Decision::GiveUp(why) => {
                    row.state = HealthState::Failed;
                    row.since_ms = now;
                    row.detail = format!("gave up: {why}");
                    if let Some(inc) = &mut row.incident {
                        inc.gave_up = true;
                        let id = inc.id.clone();
                        row.ladder.outbox.push(alert(
                            &d,
                            AlertKind::GaveUp,
                            Severity::Critical,
                            &id,
                            format!("{} failed: 1ld gave up repairing it", d.name),
                            format!("{why}; last probe: {}. Look at `1ldctl logs {}` and `1ldctl health {}`; `1ldctl restart {}` starts the ladder over.", obs.detail, d.name, d.name, d.name),
                            now,
                            serde_json::json!({"incident": id, "vmid": d.vmid}),
                        ));
                    }
                }
            }
            {
                let mut live = lock(&self.inner.live);
                let l = live.entry(d.name.clone()).or_default();
                l.view.waiting = waiting;
                l.view.state = Some(row.state);
            }
            if row.state != prev {
                events.push(serde_json::json!({
                    "deployment": d.name, "state": row.state, "previous": prev,
                    "detail": row.detail, "incident": row.incident.as_ref().map(|i| i.id.clone()),
                }));
            }
            samples.push(HealthSample {
                deployment: d.name.clone(),
                time_ms: now,
                result: obs.outcome,
                state: row.state,
                detail: obs.detail,
                latency_ms: obs.latency_ms,
            });
            // An action is recorded in the row, so an acting row is always written.
            if row != before || token.is_none() || acting {
                row.updated_ms = now.max(before.updated_ms + 1);
                writes.push((row, token));
            }
        }
        // Remediations: started before the write, so the row records their operation ids.
        let env = self.env(cfg);
        for (name, vmid, action, unit, reason) in pending_ops {
            let task = Box::new(RemediateOp::new(
                env.clone(),
                &name,
                vmid,
                &unit,
                action,
                &reason,
            ));
            let Some((row, _)) = writes.iter_mut().find(|(r, _)| r.deployment == name) else {
                continue;
            };
            match self.inner.ops.submit(task, requestor()).await {
                Ok(op) => {
                    tracing::warn!(deployment = %name, action = action.as_str(), op = %op.id, "remediation started: {reason}");
                    row.ladder.recent_ms.push(now);
                    if let Some(inc) = &mut row.incident {
                        inc.actions.push(ActionRec {
                            action,
                            at_ms: now,
                            op: Some(op.id.clone()),
                        });
                        let n = inc.actions.len();
                        let id = inc.id.clone();
                        row.ladder.outbox.push(Alert {
                            kind: AlertKind::Remediation,
                            severity: Severity::Warning,
                            deployment: Some(name.clone()),
                            app: None,
                            title: format!("{name}: {} (remediation {n})", words(action)),
                            message: format!("{reason}; operation {}", op.id),
                            dedupe_key: Some(format!("{name}/{id}/remediation/{n}")),
                            time_ms: now,
                            data: serde_json::json!({"incident": id, "action": action.as_str(), "operation": op.id, "vmid": vmid}),
                        });
                    }
                    self.inner.events.publish(
                        EventType::Lifecycle,
                        serde_json::json!({"action": "remediation", "deployment": name, "remediation": action.as_str(), "operation": op.id, "reason": reason}),
                    );
                    let mut live = lock(&self.inner.live);
                    let l = live.entry(name.clone()).or_default();
                    *l.view.remediations.entry(action.as_str()).or_default() += 1;
                }
                Err(e) => {
                    let mut live = lock(&self.inner.live);
                    live.entry(name.clone()).or_default().view.waiting =
                        Some(format!("{} not started: {}", action.as_str(), e.message));
                }
            }
        }
        let written = match self.inner.store.supervision_round(&samples, &writes) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("cannot record the supervision round: {e}");
                return;
            }
        };
        let mut outboxes = Vec::new();
        for ((row, _), ok) in writes.into_iter().zip(written) {
            if !ok {
                // A user operation changed the row meanwhile: start its streak over.
                if let Some(l) = lock(&self.inner.live).get_mut(&row.deployment) {
                    l.streak = None;
                }
                continue;
            }
            if !row.ladder.outbox.is_empty() {
                let t = Some(row.updated_ms);
                outboxes.push((row, t));
            }
        }
        for e in events {
            self.inner.events.publish(EventType::Health, e);
        }
        self.deliver_outboxes(outboxes);
        lock(&self.inner.stats).probes += samples.len() as u64;
    }
}

fn words(a: ladder::Action) -> &'static str {
    match a {
        ladder::Action::RestartService => "restarting its service",
        ladder::Action::Reboot => "rebooting its container",
        ladder::Action::Start => "starting its stopped container",
        ladder::Action::RestoreBackup => "restoring its last verified backup",
    }
}

#[allow(clippy::too_many_arguments)]
fn alert(
    d: &DeploymentRecord,
    kind: AlertKind,
    severity: Severity,
    incident: &str,
    title: String,
    message: String,
    now: i64,
    data: serde_json::Value,
) -> Alert {
    Alert {
        kind,
        severity,
        deployment: Some(d.name.clone()),
        app: Some(d.app.clone()),
        title,
        message,
        dedupe_key: Some(format!("{}/{incident}/{}", d.name, kind.as_str())),
        time_ms: now,
        data,
    }
}

/// `90` → `1m30s`.
pub fn human_secs(s: i64) -> String {
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m"),
    }
}
