//! The [`Worker`] trait and the loop that runs its cycles.
//!
//! A cycle starts right after startup, then every `interval` plus a random
//! jitter, and whenever someone pulls the [`TriggerHandle`] (a webhook, an API
//! call). Cycles never overlap: triggers arriving during a cycle coalesce into
//! one follow-up cycle. Each cycle runs in its own task, so a panic is recorded
//! as a failed cycle and the loop goes on; a cycle running past its timeout is
//! aborted and recorded as failed. On shutdown the cycle's [`CycleContext`] is
//! cancelled and it gets the grace period to reach a safe point before it is
//! aborted.
//!
//! The loop's state feeds the `work_loop` health probe ([`WorkLoopAlive`]) and
//! the status document ([`LoopShared::status`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::health::{rfc3339, Check, CheckOutcome, Health};

/// Why a cycle started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerReason {
    /// The first cycle after start.
    Startup,
    /// The interval timer.
    Timer,
    /// `--once`.
    Once,
    /// An on-demand request, with who asked (e.g. `webhook`).
    Request(String),
}

impl std::fmt::Display for TriggerReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TriggerReason::Startup => f.write_str("startup"),
            TriggerReason::Timer => f.write_str("timer"),
            TriggerReason::Once => f.write_str("once"),
            TriggerReason::Request(who) => write!(f, "request:{who}"),
        }
    }
}

/// Asks the work loop for a cycle as soon as possible. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TriggerHandle {
    tx: mpsc::Sender<TriggerReason>,
}

impl TriggerHandle {
    /// A handle and the receiver the loop reads.
    pub(crate) fn channel() -> (Self, mpsc::Receiver<TriggerReason>) {
        // Capacity 1: while one request waits, further ones coalesce into it.
        let (tx, rx) = mpsc::channel(1);
        (Self { tx }, rx)
    }

    /// Requests a cycle. Returns `false` only when the loop is gone
    /// (shutting down, or not running as in `--once`); a request made while
    /// another is pending is merged with it and still returns `true`.
    pub fn trigger(&self, who: impl Into<String>) -> bool {
        match self.tx.try_send(TriggerReason::Request(who.into())) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What one cycle is told.
#[derive(Debug, Clone)]
pub struct CycleContext {
    /// 1-based cycle number since start.
    pub number: u64,
    /// Why it runs.
    pub trigger: TriggerReason,
    /// Compute everything, write nothing upstream.
    pub dry_run: bool,
    cancel: CancellationToken,
}

impl CycleContext {
    /// A context for tests or for driving a worker by hand.
    pub fn new(number: u64, trigger: TriggerReason, dry_run: bool) -> Self {
        Self {
            number,
            trigger,
            dry_run,
            cancel: CancellationToken::new(),
        }
    }

    /// The same context, cancelled together with `cancel`.
    pub(crate) fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Whether shutdown was requested: stop at the next safe point.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves when shutdown is requested (for `select!` around long waits).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }
}

/// What a finished cycle did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CycleReport {
    /// Healthy: all done. Degraded: done in part (e.g. one source failed).
    /// Unhealthy is allowed but a failed cycle should return an error instead.
    pub status: Health,
    /// One line for logs and `/status`.
    pub summary: String,
    /// Counts worth watching (objects seen, written, …).
    pub counters: BTreeMap<String, u64>,
}

impl CycleReport {
    /// A fully successful cycle.
    pub fn ok(summary: impl Into<String>) -> Self {
        Self {
            status: Health::Healthy,
            summary: summary.into(),
            counters: BTreeMap::new(),
        }
    }

    /// A cycle that completed only in part.
    pub fn partial(summary: impl Into<String>) -> Self {
        Self {
            status: Health::Degraded,
            summary: summary.into(),
            counters: BTreeMap::new(),
        }
    }

    /// Adds a counter.
    pub fn counter(mut self, name: impl Into<String>, value: u64) -> Self {
        self.counters.insert(name.into(), value);
        self
    }
}

/// Why a cycle failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CycleError {
    /// The upstream could not be reached.
    #[error("{service} unreachable: {detail}")]
    Unreachable {
        /// Which upstream.
        service: String,
        /// What happened.
        detail: String,
    },
    /// The upstream refused our credentials.
    #[error("{service} refused the credentials: {detail}")]
    Auth {
        /// Which upstream.
        service: String,
        /// What it said (never the credential).
        detail: String,
    },
    /// The upstream answered, but not as expected.
    #[error("{service}: {detail}")]
    Upstream {
        /// Which upstream.
        service: String,
        /// What happened.
        detail: String,
    },
    /// Local state (database, files) failed.
    #[error("local state: {0}")]
    State(String),
    /// Aborted because the agent is shutting down.
    #[error("aborted: the agent is shutting down")]
    Cancelled,
    /// Ran past `service.cycle_timeout_s`.
    #[error("aborted after running for {0:?} (service.cycle_timeout_s)")]
    TimedOut(Duration),
    /// The cycle's task panicked.
    #[error("the cycle panicked: {0}")]
    Panicked(String),
}

/// An agent's work. One instance lives for the whole process; cycles get
/// `&self`, so keep mutable state behind locks.
pub trait Worker: Send + Sync + 'static {
    /// Refreshes the reported checks that depend on upstreams (reachability,
    /// credentials) without doing any work. Used by `--self-check`, and
    /// usually called at the start of [`Worker::cycle`].
    fn probe(&self) -> impl Future<Output = ()> + Send;

    /// One full work cycle. Check [`CycleContext::is_cancelled`] at safe
    /// points; honour [`CycleContext::dry_run`].
    fn cycle(
        &self,
        ctx: &CycleContext,
    ) -> impl Future<Output = Result<CycleReport, CycleError>> + Send;

    /// Agent-specific part of the status document (`"agent"` key). Never put
    /// secrets here.
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Whether the agent serves routes of its own ([`Worker::route`]); when
    /// false (the default) every other path is a 404 as before.
    fn has_routes() -> bool
    where
        Self: Sized,
    {
        false
    }

    /// The agent's own HTTP routes (webhooks, actions, metrics): any path
    /// other than `/health` and the status path. `None` is a 404.
    fn route(
        &self,
        _req: crate::server::AgentRequest,
    ) -> impl Future<Output = Option<crate::server::AgentResponse>> + Send {
        async { None }
    }

    /// Largest request body read for [`Worker::route`]; larger ones get 413
    /// before the agent sees them.
    fn max_request_body(&self) -> usize {
        64 * 1024
    }
}

/// Outcome of one cycle, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CycleRecord {
    /// Cycle number.
    pub number: u64,
    /// Why it ran.
    pub trigger: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// `ok`, `partial` or `failed`.
    pub result: &'static str,
    /// One line.
    pub summary: String,
    /// The report's counters (empty for failures).
    pub counters: BTreeMap<String, u64>,
    /// The error, for failed cycles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether it ran with `--dry-run`.
    pub dry_run: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
struct Counts {
    total: u64,
    ok: u64,
    partial: u64,
    failed: u64,
}

#[derive(Debug, Default)]
struct LoopState {
    counts: Counts,
    running: Option<(u64, String, Instant, OffsetDateTime)>,
    last: Option<(CycleRecord, Instant, Health)>,
    last_success: Option<OffsetDateTime>,
    next_due: Option<(Instant, OffsetDateTime)>,
    ended: bool,
}

/// State shared between the loop, the health probe and the status endpoint.
#[derive(Debug)]
pub struct LoopShared {
    state: Mutex<LoopState>,
    interval: Duration,
    jitter: Duration,
    cycle_timeout: Duration,
    dry_run: bool,
    shutting_down: CancellationToken,
}

impl LoopShared {
    pub(crate) fn new(
        interval: Duration,
        jitter: Duration,
        cycle_timeout: Duration,
        dry_run: bool,
        shutting_down: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::default(),
            interval,
            jitter,
            cycle_timeout,
            dry_run,
            shutting_down,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoopState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The loop part of the status document.
    pub fn status(&self) -> serde_json::Value {
        let st = self.lock();
        serde_json::json!({
            "interval_s": self.interval.as_secs(),
            "jitter_s": self.jitter.as_secs(),
            "dry_run": self.dry_run,
            "cycles": st.counts,
            "running": st.running.as_ref().map(|(n, trigger, since, at)| serde_json::json!({
                "number": n,
                "trigger": trigger,
                "started_at": rfc3339(*at),
                "running_s": since.elapsed().as_secs(),
            })),
            "last_cycle": st.last.as_ref().map(|(rec, _, _)| rec),
            "last_success_at": st.last_success.map(rfc3339),
            "next_cycle_at": st.next_due.map(|(_, at)| rfc3339(at)),
        })
    }
}

/// Health probe `work_loop`: the loop is alive (not ended, not stuck in a
/// cycle past its timeout, not late for its timer) and how its last cycle
/// went. Until the first cycle has finished it is *pending* (degraded, and
/// `/health` says `"starting": true`). A failed or partial last cycle is *degraded*: the agent itself is
/// fine, the cause is in the cycle's own message and in the upstream checks.
#[derive(Debug, Clone)]
pub struct WorkLoopAlive(pub(crate) Arc<LoopShared>);

/// Slack on top of the deadlines before the loop counts as stuck.
const STALL_SLACK: Duration = Duration::from_secs(60);

impl Check for WorkLoopAlive {
    fn name(&self) -> &str {
        "work_loop"
    }

    fn run(&self) -> CheckOutcome {
        let shared = &self.0;
        let st = shared.lock();
        if st.ended {
            return if shared.shutting_down.is_cancelled() {
                CheckOutcome::degraded("work loop stopped: shutting down")
            } else {
                CheckOutcome::unhealthy("work loop has stopped unexpectedly; restart the agent")
            };
        }
        if let Some((n, _, since, _)) = &st.running {
            let running = since.elapsed();
            if running > shared.cycle_timeout + STALL_SLACK {
                return CheckOutcome::unhealthy(format!(
                    "cycle #{n} has been running for {}s, past its {}s timeout: the loop is stuck",
                    running.as_secs(),
                    shared.cycle_timeout.as_secs()
                ));
            }
        } else if let Some((due, _)) = st.next_due {
            let now = Instant::now();
            if now > due + STALL_SLACK {
                return CheckOutcome::unhealthy(format!(
                    "next cycle is {}s overdue: the loop is stuck",
                    (now - due).as_secs()
                ));
            }
        }
        let Some((rec, finished, health)) = &st.last else {
            return match &st.running {
                Some((n, ..)) => CheckOutcome::pending(format!(
                    "first cycle (#{n}) still running; no result yet"
                )),
                None => CheckOutcome::pending("no cycle has run yet"),
            };
        };
        let ago = finished.elapsed().as_secs();
        let text = match &rec.error {
            Some(e) => format!("last cycle #{} failed {ago}s ago: {e}", rec.number),
            None => format!(
                "last cycle #{} {} {ago}s ago: {}",
                rec.number, rec.result, rec.summary
            ),
        };
        match health {
            Health::Healthy => CheckOutcome::healthy(text),
            _ => CheckOutcome::degraded(text),
        }
    }
}

/// Runs one cycle in its own task with the timeout and shutdown rules above.
pub(crate) async fn run_cycle<W: Worker>(
    worker: &Arc<W>,
    ctx: CycleContext,
    cycle_timeout: Duration,
    grace: Duration,
    shutdown: &CancellationToken,
) -> Result<CycleReport, CycleError> {
    let w = Arc::clone(worker);
    let cancel = ctx.cancel.clone();
    let mut task = tokio::spawn(async move { w.cycle(&ctx).await });
    let joined = |r: Result<Result<CycleReport, CycleError>, tokio::task::JoinError>| match r {
        Ok(result) => result,
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Err(CycleError::Panicked(msg))
        }
        Err(_) => Err(CycleError::Cancelled),
    };
    tokio::select! {
        r = &mut task => joined(r),
        () = tokio::time::sleep(cycle_timeout) => {
            cancel.cancel();
            task.abort();
            Err(CycleError::TimedOut(cycle_timeout))
        }
        () = shutdown.cancelled() => {
            // The cycle's token is a child of `shutdown`, so it is cancelled
            // too; give the cycle the grace period to stop cleanly.
            cancel.cancel();
            match tokio::time::timeout(grace, &mut task).await {
                Ok(r) => joined(r),
                Err(_) => {
                    task.abort();
                    Err(CycleError::Cancelled)
                }
            }
        }
    }
}

/// The loop's fixed parameters.
#[derive(Debug, Clone)]
pub(crate) struct LoopParams {
    pub(crate) interval: Duration,
    pub(crate) jitter: Duration,
    pub(crate) cycle_timeout: Duration,
    pub(crate) grace: Duration,
    pub(crate) dry_run: bool,
}

struct EndGuard(Arc<LoopShared>);
impl Drop for EndGuard {
    fn drop(&mut self) {
        self.0.lock().ended = true;
    }
}

/// The work loop; returns when `shutdown` is cancelled.
pub(crate) async fn run_loop<W: Worker>(
    worker: Arc<W>,
    shared: Arc<LoopShared>,
    mut triggers: mpsc::Receiver<TriggerReason>,
    params: LoopParams,
    shutdown: CancellationToken,
) {
    let _guard = EndGuard(Arc::clone(&shared));
    let mut number = 0u64;
    let mut reason = TriggerReason::Startup;
    loop {
        number += 1;
        let started = Instant::now();
        let started_at = OffsetDateTime::now_utc();
        {
            let mut st = shared.lock();
            st.running = Some((number, reason.to_string(), started, started_at));
            st.next_due = None;
        }
        let ctx = CycleContext {
            number,
            trigger: reason.clone(),
            dry_run: params.dry_run,
            cancel: shutdown.child_token(),
        };
        tracing::info!(
            cycle = number,
            dry_run = params.dry_run,
            "cycle #{number} starting ({reason})"
        );
        let result = run_cycle(&worker, ctx, params.cycle_timeout, params.grace, &shutdown).await;
        let record = record_of(
            number,
            &reason,
            started_at,
            started.elapsed(),
            &result,
            params.dry_run,
        );
        log_cycle(&record);
        crate::notify::status(&format!(
            "cycle #{number} {}: {}",
            record.result,
            record.error.as_deref().unwrap_or(&record.summary)
        ));
        let health = match &result {
            Ok(r) => r.status,
            Err(_) => Health::Unhealthy,
        };
        let wait = params.interval + random_jitter(params.jitter);
        {
            let mut st = shared.lock();
            st.running = None;
            st.counts.total += 1;
            match (&result, health) {
                (Ok(_), Health::Healthy) => {
                    st.counts.ok += 1;
                    st.last_success = Some(OffsetDateTime::now_utc());
                }
                (Ok(_), _) => st.counts.partial += 1,
                (Err(_), _) => st.counts.failed += 1,
            }
            st.last = Some((record, Instant::now(), health));
            st.next_due = Some((Instant::now() + wait, OffsetDateTime::now_utc() + wait));
        }
        if shutdown.is_cancelled() {
            return;
        }
        reason = tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => TriggerReason::Timer,
            r = triggers.recv() => match r {
                Some(r) => r,
                // Every handle dropped: only the timer is left.
                None => {
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => TriggerReason::Timer,
                    }
                }
            },
        };
    }
}

fn random_jitter(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

pub(crate) fn record_of(
    number: u64,
    reason: &TriggerReason,
    started_at: OffsetDateTime,
    took: Duration,
    result: &Result<CycleReport, CycleError>,
    dry_run: bool,
) -> CycleRecord {
    let (result_name, summary, counters, error) = match result {
        Ok(r) if r.status == Health::Healthy => ("ok", r.summary.clone(), r.counters.clone(), None),
        Ok(r) => ("partial", r.summary.clone(), r.counters.clone(), None),
        Err(e) => (
            "failed",
            String::new(),
            BTreeMap::new(),
            Some(e.to_string()),
        ),
    };
    CycleRecord {
        number,
        trigger: reason.to_string(),
        started_at: rfc3339(started_at),
        duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        result: result_name,
        summary,
        counters,
        error,
        dry_run,
    }
}

pub(crate) fn log_cycle(rec: &CycleRecord) {
    match &rec.error {
        Some(e) => tracing::warn!(
            cycle = rec.number,
            duration_ms = rec.duration_ms,
            error = %e,
            "cycle #{} failed: {e}",
            rec.number
        ),
        None => tracing::info!(
            cycle = rec.number,
            duration_ms = rec.duration_ms,
            result = rec.result,
            "cycle #{} {}: {}",
            rec.number,
            rec.result,
            rec.summary
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counting {
        calls: AtomicU64,
        fail_on: u64,
    }

    impl Worker for Counting {
        async fn probe(&self) {}
        async fn cycle(&self, ctx: &CycleContext) -> Result<CycleReport, CycleError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == self.fail_on {
                panic!("boom on {n}");
            }
            Ok(CycleReport::ok(format!("cycle {}", ctx.number)).counter("n", n))
        }
    }

    fn params() -> LoopParams {
        LoopParams {
            interval: Duration::from_secs(3600),
            jitter: Duration::ZERO,
            cycle_timeout: Duration::from_secs(5),
            grace: Duration::from_secs(1),
            dry_run: false,
        }
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn triggers_run_cycles_and_a_panic_does_not_kill_the_loop() {
        let worker = Arc::new(Counting {
            calls: AtomicU64::new(0),
            fail_on: 2,
        });
        let shutdown = CancellationToken::new();
        let shared = LoopShared::new(
            Duration::from_secs(3600),
            Duration::ZERO,
            Duration::from_secs(5),
            false,
            shutdown.clone(),
        );
        let (trigger, rx) = TriggerHandle::channel();
        let task = tokio::spawn(run_loop(
            Arc::clone(&worker),
            Arc::clone(&shared),
            rx,
            params(),
            shutdown.clone(),
        ));
        let probe = WorkLoopAlive(Arc::clone(&shared));
        wait_for("startup cycle", || shared.lock().counts.total == 1).await;
        assert_eq!(probe.run().status, Health::Healthy);

        assert!(trigger.trigger("test"));
        wait_for("panicking cycle", || shared.lock().counts.total == 2).await;
        assert_eq!(shared.lock().counts.failed, 1);
        let out = probe.run();
        assert_eq!(out.status, Health::Degraded);
        assert!(out.message.contains("panicked"), "{}", out.message);

        assert!(trigger.trigger("test"));
        wait_for("third cycle", || shared.lock().counts.total == 3).await;
        assert_eq!(probe.run().status, Health::Healthy);
        let status = shared.status();
        assert_eq!(status["cycles"]["ok"], 2);
        assert_eq!(status["last_cycle"]["trigger"], "request:test");

        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert!(!trigger.trigger("late"));
    }

    struct Slow;
    impl Worker for Slow {
        async fn probe(&self) {}
        async fn cycle(&self, ctx: &CycleContext) -> Result<CycleReport, CycleError> {
            tokio::select! {
                () = ctx.cancelled() => Err(CycleError::Cancelled),
                () = tokio::time::sleep(Duration::from_secs(60)) => Ok(CycleReport::ok("slept")),
            }
        }
    }

    #[tokio::test]
    async fn timeout_and_shutdown_abort_a_cycle() {
        let w = Arc::new(Slow);
        let shutdown = CancellationToken::new();
        let ctx = CycleContext::new(1, TriggerReason::Once, false);
        let r = run_cycle(
            &w,
            ctx,
            Duration::from_millis(100),
            Duration::from_secs(1),
            &shutdown,
        )
        .await;
        assert!(matches!(r, Err(CycleError::TimedOut(_))), "{r:?}");

        let ctx = CycleContext {
            cancel: shutdown.child_token(),
            ..CycleContext::new(2, TriggerReason::Once, false)
        };
        let s2 = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            s2.cancel();
        });
        let t = Instant::now();
        let r = run_cycle(
            &w,
            ctx,
            Duration::from_secs(60),
            Duration::from_secs(5),
            &shutdown,
        )
        .await;
        assert!(matches!(r, Err(CycleError::Cancelled)), "{r:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    }
}
