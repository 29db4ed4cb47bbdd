//! Operations: every mutating action on the host runs as one.
//!
//! What it owns: submitting (persist `queued`, per-target lock, heavy-work
//! slot), running a task on its own tokio task with progress, log and
//! events, cancel, wait, compensation, crash recovery, shutdown and
//! retention. Operation kinds live in [`kinds`].
//!
//! Invariants:
//! - an operation is persisted `queued` before `submit` returns and
//!   `running` before its task touches the host; every later change is
//!   persisted before it is announced (event, `wait`);
//! - one operation per target at a time (a second submit gets
//!   [`ErrorKind::Locked`](crate::error::ErrorKind::Locked) naming the holder); at most `[ops]
//!   heavy_concurrency` heavy operations run at once, the others stay
//!   `queued`;
//! - a failed or cancelled operation runs its task's `compensate` before it
//!   reaches its final state; the target stays locked until then;
//! - cancel is cooperative: it triggers the operation's token; the task stops
//!   at its next [`OpCtx::checkpoint`], or at once inside
//!   [`OpCtx::until_cancelled`] (dropping a `pve` future kills its process
//!   group). A step may declare itself not cancellable;
//! - nothing is resumed after a restart: [`Ops::recover`] turns every
//!   `queued`/`running` operation into `interrupted`, running the
//!   compensation of those that had started (rebuilt by [`Rebuild`] from the
//!   persisted kind and payload);
//! - shutdown stops accepting operations (503), asks running ones to stop at
//!   their next checkpoint (they end `interrupted`, compensated) and waits up
//!   to the grace period. Operations still running at the deadline are left
//!   `running` in the store; the process exit kills their commands, and the
//!   next start marks them `interrupted` and compensates them;
//! - text that leaves an operation (log lines, error messages, events) goes
//!   through the [`Redactor`].

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use crate::api::{ApiErrorInner, OpLogChunk, OpStatus, Operation, Requestor};
use crate::config::OpsConfig;
use crate::error::Error;
use crate::events::EventBus;
use crate::pve::Pve;
use crate::secrets::Redactor;
use crate::store::{now_ms, OpRecord, Store};

pub mod kinds;
pub mod locks;
mod task;

pub use crate::store::OpFilter;
pub use futures_util::future::BoxFuture;
use task::{lock, CancelReason, Live};
pub use task::{OpCtx, OpTask};

/// Rebuilds a task from its kind and persisted payload after a restart, so
/// its compensation can run; `None` for an unknown kind or a bad payload.
/// The daemon passes [`kinds::rebuild`].
pub type Rebuild = fn(kind: &str, payload: &serde_json::Value) -> Option<Box<dyn OpTask>>;

/// Log lines returned per [`Ops::log`] call.
pub const LOG_PAGE: u32 = 1000;

/// The operations engine. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) events: EventBus,
    pub(crate) redactor: Redactor,
    pub(crate) pve: Option<Pve>,
    heavy: Arc<Semaphore>,
    locks: locks::Locks,
    live: Mutex<LiveTable>,
    tracker: TaskTracker,
}

struct LiveTable {
    accepting: bool,
    ops: HashMap<String, Arc<Live>>,
}

fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn who(r: &Requestor) -> String {
    format!("{} (uid {}, pid {})", r.user, r.uid, r.pid)
}

impl Ops {
    /// The engine over `store`, announcing on `events`, redacting with
    /// `redactor`; tasks get `pve` (`None`: their `ctx.pve()` is a 503).
    pub fn new(
        store: Store,
        events: EventBus,
        redactor: Redactor,
        pve: Option<Pve>,
        config: &OpsConfig,
    ) -> Ops {
        Ops {
            inner: Arc::new(Inner {
                store,
                events,
                redactor,
                pve,
                heavy: Arc::new(Semaphore::new(config.heavy_concurrency.max(1))),
                locks: locks::Locks::default(),
                live: Mutex::new(LiveTable {
                    accepting: true,
                    ops: HashMap::new(),
                }),
                tracker: TaskTracker::new(),
            }),
        }
    }

    fn ctx(&self, live: Arc<Live>) -> OpCtx {
        OpCtx {
            live,
            engine: self.inner.clone(),
        }
    }

    fn shutting_down() -> Error {
        Error::dependency_down(
            "daemon is shutting down; submit the operation again once it is back",
        )
    }

    /// Persists a new operation (`queued`), takes its target's lock and
    /// starts it. 409 ([`ErrorKind::Locked`](crate::error::ErrorKind::Locked)) when another operation holds
    /// the target; 503 during shutdown.
    pub async fn submit(&self, task: Box<dyn OpTask>, who_: Requestor) -> Result<Operation, Error> {
        let id = new_id();
        let kind = task.kind();
        let rec = OpRecord {
            id: id.clone(),
            kind: kind.to_string(),
            target: task.target(),
            requestor: who_.clone(),
            status: OpStatus::Queued,
            error: None,
            created_ms: now_ms(),
            started_ms: None,
            finished_ms: None,
            progress: Default::default(),
            cancellable: true,
            payload: task.payload(),
        };
        let live = Live::new(rec.clone());
        let guard = {
            // Under the table's lock: shutdown cannot slip between the check
            // and the registration, so it cancels every op it lets in.
            let mut table = lock(&self.inner.live);
            if !table.accepting {
                return Err(Self::shutting_down());
            }
            let guard = match &rec.target {
                Some(t) => Some(self.inner.locks.acquire(t, &id, kind)?),
                None => None,
            };
            self.inner.store.insert_op(&rec)?;
            table.ops.insert(id.clone(), live.clone());
            guard
        };
        let ctx = self.ctx(live);
        ctx.log(&format!("{kind} submitted by {}", who(&who_)));
        ctx.commit(|_| {});
        let heavy = task.heavy().then(|| self.inner.heavy.clone());
        let ops = self.clone();
        self.inner.tracker.spawn(async move {
            ops.drive(task, ctx, heavy).await;
            drop(guard);
        });
        Ok(rec.to_api())
    }

    /// Runs one operation to its final state.
    async fn drive(&self, task: Box<dyn OpTask>, ctx: OpCtx, heavy: Option<Arc<Semaphore>>) {
        let id = ctx.id();
        let _permit = match heavy {
            None => None,
            Some(sem) => {
                if sem.available_permits() == 0 {
                    ctx.log("waiting for a heavy-work slot ([ops] heavy_concurrency)");
                }
                tokio::select! {
                    p = sem.acquire_owned() => p.ok(),
                    _ = ctx.live.cancel.cancelled() => None,
                }
            }
        };
        if ctx.cancelled() {
            // Never started: nothing to undo.
            let (status, error) = self.stop_outcome(&ctx);
            ctx.log("stopped before it started; nothing to undo");
            ctx.finish(status, Some(error));
            self.forget(&id);
            return;
        }
        ctx.commit(|r| {
            r.status = OpStatus::Running;
            r.started_ms = Some(now_ms());
        });
        tracing::info!(op = %id, kind = task.kind(), "operation started");
        let result = AssertUnwindSafe(task.run(&ctx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Error::internal("the operation's task panicked")));
        match result {
            Ok(()) => {
                ctx.log("succeeded");
                ctx.finish(OpStatus::Succeeded, None);
                tracing::info!(op = %id, "operation succeeded");
            }
            Err(e) => {
                let (status, error) = if ctx.cancelled() {
                    self.stop_outcome(&ctx)
                } else {
                    let e = self.inner.redactor.redact_error(e);
                    if let Some(detail) = &e.detail {
                        ctx.log(&format!("error detail: {detail}"));
                    }
                    ctx.log(&format!("failed: {}", e.message));
                    tracing::warn!(op = %id, error = %e.message, detail = e.detail.as_deref().unwrap_or(""), "operation failed");
                    (
                        OpStatus::Failed,
                        ApiErrorInner {
                            code: e.kind.code().to_string(),
                            message: e.message,
                        },
                    )
                };
                let error = self.compensate(task.as_ref(), &ctx, error).await;
                ctx.finish(status, Some(error));
            }
        }
        self.forget(&id);
    }

    /// The final state and error of an operation stopped by its token.
    fn stop_outcome(&self, ctx: &OpCtx) -> (OpStatus, ApiErrorInner) {
        match lock(&ctx.live.reason).clone() {
            Some(CancelReason::User(r)) => (
                OpStatus::Cancelled,
                ApiErrorInner {
                    code: "cancelled".into(),
                    message: format!("cancelled by {}", who(&r)),
                },
            ),
            Some(CancelReason::Shutdown) | None => (
                OpStatus::Interrupted,
                ApiErrorInner {
                    code: "interrupted".into(),
                    message: "the daemon stopped while this operation ran".into(),
                },
            ),
        }
    }

    /// Runs `task`'s compensation; returns `error` with its outcome appended
    /// when it failed.
    async fn compensate(
        &self,
        task: &dyn OpTask,
        ctx: &OpCtx,
        mut error: ApiErrorInner,
    ) -> ApiErrorInner {
        ctx.set_cancellable(false);
        ctx.log("compensating (undoing what was done)");
        let r = AssertUnwindSafe(task.compensate(ctx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(Error::internal("the compensation panicked")));
        match r {
            Ok(()) => ctx.log("compensation done"),
            Err(e) => {
                let e = self.inner.redactor.redact_error(e);
                let why = e.detail.as_deref().unwrap_or(&e.message);
                ctx.log(&format!("compensation failed: {why}"));
                tracing::error!(op = %ctx.id(), error = %why, "compensation failed");
                error.message = format!(
                    "{}; compensation also failed ({}), check the target by hand",
                    error.message, e.message
                );
            }
        }
        error
    }

    fn forget(&self, id: &str) {
        lock(&self.inner.live).ops.remove(id);
    }

    fn live(&self, id: &str) -> Option<Arc<Live>> {
        lock(&self.inner.live).ops.get(id).cloned()
    }

    fn record(&self, id: &str) -> Result<OpRecord, Error> {
        self.inner.store.get_op(id)?.ok_or_else(|| {
            Error::not_found(format!(
                "no operation '{id}' (finished ones are kept [ops] retention_days)"
            ))
        })
    }

    /// One operation; 404 if unknown.
    pub fn get(&self, id: &str) -> Result<Operation, Error> {
        Ok(self.record(id)?.to_api())
    }

    /// Operations matching `filter`, newest first.
    pub fn list(&self, filter: &OpFilter) -> Result<Vec<Operation>, Error> {
        Ok(self
            .inner
            .store
            .list_ops(filter)?
            .iter()
            .map(OpRecord::to_api)
            .collect())
    }

    /// Up to [`LOG_PAGE`] log lines from line `offset` on (redacted).
    pub fn log(&self, id: &str, offset: u64) -> Result<OpLogChunk, Error> {
        // State first: if it is final, every line was written before it.
        let rec = self.record(id)?;
        let lines: Vec<String> = self
            .inner
            .store
            .read_op_log(id, offset, LOG_PAGE)?
            .iter()
            .map(|l| self.inner.redactor.redact_string(l))
            .collect();
        let n = lines.len();
        Ok(OpLogChunk {
            next_offset: offset.saturating_add(n as u64),
            complete: rec.status.is_final() && n < LOG_PAGE as usize,
            lines,
        })
    }

    /// Waits until the operation ends or `timeout` passes; returns its state
    /// then (404 if unknown).
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Operation, Error> {
        if let Some(live) = self.live(id) {
            let mut rx = live.status.subscribe();
            let _ = tokio::time::timeout(timeout, rx.wait_for(|s| s.is_final())).await;
        }
        self.get(id)
    }

    /// Requests a cancel: the operation stops at its next safe point, runs
    /// its compensation and ends `cancelled`. Returns its current state.
    /// 404 if unknown, 422 if it has ended or its current step cannot be
    /// cancelled.
    pub async fn cancel(&self, id: &str, who_: Requestor) -> Result<Operation, Error> {
        let Some(live) = self.live(id) else {
            let rec = self.record(id)?;
            return Err(Error::invalid_state(format!(
                "operation {id} has already ended ({}); there is nothing to cancel",
                crate::store::operations::status_str(rec.status)
            )));
        };
        {
            let rec = lock(&live.rec);
            if rec.status.is_final() {
                return Err(Error::invalid_state(format!(
                    "operation {id} has already ended ({}); there is nothing to cancel",
                    crate::store::operations::status_str(rec.status)
                )));
            }
            if !rec.cancellable {
                return Err(Error::invalid_state(format!(
                    "operation {id} is in step '{}', which cannot be interrupted safely; wait for it (GET /v1/operations/{id}/wait)",
                    rec.progress.name
                )));
            }
        }
        let ctx = self.ctx(live.clone());
        if live.request_cancel(CancelReason::User(who_.clone())) {
            ctx.log(&format!("cancel requested by {}", who(&who_)));
            ctx.commit(|_| {});
        }
        let op = lock(&live.rec).to_api();
        Ok(op)
    }

    /// At startup, before serving: every operation left `queued` or
    /// `running` by the previous run becomes `interrupted`; those that had
    /// started get their compensation (via `rebuild`). Returns them.
    pub async fn recover(&self, rebuild: Rebuild) -> Result<Vec<Operation>, Error> {
        let stale = self.inner.store.unfinished_ops()?;
        let mut out = Vec::with_capacity(stale.len());
        for rec in stale {
            let was = rec.status;
            let kind = rec.kind.clone();
            let target = rec.target.clone();
            let payload = rec.payload.clone();
            let _guard = target
                .as_deref()
                .and_then(|t| self.inner.locks.acquire(t, &rec.id, &kind).ok());
            let ctx = self.ctx(Live::new(rec));
            let id = ctx.id();
            let state = crate::store::operations::status_str(was);
            ctx.log(&format!(
                "the daemon stopped while this operation was {state}; it is not resumed"
            ));
            tracing::warn!(op = %id, kind = %kind, "marking an operation left {state} by the previous run as interrupted");
            let mut error = ApiErrorInner {
                code: "interrupted".into(),
                message: format!("the daemon stopped while this operation was {state}"),
            };
            if was == OpStatus::Running {
                match rebuild(&kind, &payload) {
                    Some(task) => error = self.compensate(task.as_ref(), &ctx, error).await,
                    None => {
                        ctx.log(&format!(
                            "no compensation is known for kind '{kind}'; check its target by hand"
                        ));
                        error.message = format!(
                            "{}; no compensation is known for kind '{kind}', check {} by hand",
                            error.message,
                            target.as_deref().unwrap_or("the host")
                        );
                    }
                }
            } else {
                ctx.log("it had not started; nothing to undo");
            }
            ctx.finish(OpStatus::Interrupted, Some(error));
            let op = lock(&ctx.live.rec).to_api();
            out.push(op);
        }
        Ok(out)
    }

    /// Stops accepting operations (503), asks running ones to stop at their
    /// next safe point, and waits up to `grace` for them to end.
    pub async fn shutdown(&self, grace: Duration) {
        let running: Vec<Arc<Live>> = {
            let mut table = lock(&self.inner.live);
            table.accepting = false;
            table.ops.values().cloned().collect()
        };
        for live in &running {
            if live.request_cancel(CancelReason::Shutdown) {
                self.ctx(live.clone())
                    .log("the daemon is stopping; stopping at the next safe point");
            }
        }
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            let left: Vec<String> = lock(&self.inner.live).ops.keys().cloned().collect();
            tracing::warn!(
                ops = ?left,
                "operations still running at the shutdown deadline stay `running` and become `interrupted` (compensated) at next start"
            );
        }
    }

    /// Whether new operations are accepted (false once shutdown began).
    pub fn accepting(&self) -> bool {
        lock(&self.inner.live).accepting
    }

    /// Deletes finished operations (and their logs) that ended more than
    /// `retention_days` ago; returns how many. The daemon calls it
    /// periodically.
    pub fn prune(&self, retention_days: u32) -> Result<usize, Error> {
        let cut = now_ms().saturating_sub(i64::from(retention_days) * 86_400_000);
        let n = self.inner.store.delete_finished_ops_before(cut)?;
        if n > 0 {
            tracing::info!(deleted = n, retention_days, "pruned finished operations");
        }
        Ok(n)
    }

    /// The operation holding `target`, if any.
    pub fn holder(&self, target: &str) -> Option<String> {
        self.inner.locks.holder(target)
    }
}

#[cfg(test)]
mod tests;
