//! What an operation kind implements ([`OpTask`]) and what it gets while it
//! runs ([`OpCtx`]).
//!
//! Invariants: every change an [`OpCtx`] makes (progress, log line,
//! cancellable flag, payload, state) is persisted before it is announced
//! (event, waiters), and all of an operation's changes are serialised by
//! one lock, so the store, the events and `wait` never disagree about order.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Inner;
use crate::api::{ApiErrorInner, EventType, OpStatus, Progress, Requestor};
use crate::error::{Error, ErrorKind};
use crate::pve::Pve;
use crate::store::{now_ms, OpRecord};

/// One kind of operation. Implementations are plain structs built from the
/// request (or, after a restart, from the persisted payload, see
/// [`super::Rebuild`]).
pub trait OpTask: Send + Sync {
    /// The kind, e.g. `template.download`.
    fn kind(&self) -> &'static str;
    /// The lock key (`ct/140`, `template/<storage>/<file>`), if any.
    fn target(&self) -> Option<String>;
    /// Whether it counts against `[ops] heavy_concurrency` (vzdump, restore).
    fn heavy(&self) -> bool;
    /// Persisted at submit: enough to rebuild the task and compensate after
    /// a crash. A task may extend it while running ([`OpCtx::set_payload`]).
    fn payload(&self) -> serde_json::Value;
    /// Does the work. Calls [`OpCtx::checkpoint`] at safe points so a cancel
    /// or shutdown can stop it there.
    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>>;
    /// Undoes what `run` may have done, after a failure, a cancel or a crash.
    /// Must be idempotent and must decide from [`OpCtx::payload`] and the
    /// host's actual state, not from memory of `run` (after a crash there is
    /// none).
    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>>;
}

/// Why an operation's cancel token was triggered.
#[derive(Debug, Clone)]
pub(crate) enum CancelReason {
    /// `DELETE /v1/operations/{id}`.
    User(Requestor),
    /// The daemon is stopping.
    Shutdown,
}

/// The in-memory side of one live operation, shared by its task, the engine
/// and API calls (cancel, wait).
#[derive(Debug)]
pub(crate) struct Live {
    pub(crate) rec: Mutex<OpRecord>,
    pub(crate) status: watch::Sender<OpStatus>,
    pub(crate) cancel: CancellationToken,
    pub(crate) reason: Mutex<Option<CancelReason>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Live {
    pub(crate) fn new(rec: OpRecord) -> Arc<Self> {
        let (status, _) = watch::channel(rec.status);
        Arc::new(Live {
            rec: Mutex::new(rec),
            status,
            cancel: CancellationToken::new(),
            reason: Mutex::new(None),
        })
    }

    /// Triggers the cancel token; the first reason wins.
    pub(crate) fn request_cancel(&self, reason: CancelReason) -> bool {
        let mut r = lock(&self.reason);
        if r.is_some() {
            return false;
        }
        *r = Some(reason);
        self.cancel.cancel();
        true
    }
}

/// What a running operation sees: its id, progress and log, cancellation,
/// its payload, and the `pve` handle.
pub struct OpCtx {
    pub(crate) live: Arc<Live>,
    pub(crate) engine: Arc<Inner>,
}

impl std::fmt::Debug for OpCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpCtx").field("id", &self.id()).finish()
    }
}

impl OpCtx {
    /// The operation's id.
    pub fn id(&self) -> String {
        lock(&self.live.rec).id.clone()
    }

    /// Enters step `n` of `of`, named `name`: progress, log line and event.
    pub fn step(&self, n: u32, of: u32, name: &str) {
        self.commit(|r| {
            r.progress = Progress {
                step: n,
                steps: of,
                name: name.to_string(),
                percent: None,
            }
        });
        self.log(&format!("step {n}/{of}: {name}"));
    }

    /// Sets the current step's percentage (clamped to 0..=100).
    pub fn percent(&self, percent: f32) {
        let p = if percent.is_finite() {
            percent.clamp(0.0, 100.0)
        } else {
            0.0
        };
        self.commit(|r| r.progress.percent = Some(p));
    }

    /// Appends `line` (redacted) to the operation's log. A store failure is
    /// reported in the daemon's log; it does not fail the operation.
    pub fn log(&self, line: &str) {
        let line = self.engine.redactor.redact(line);
        let id = self.id();
        if let Err(e) = self.engine.store.append_op_log(&id, now_ms(), &line) {
            tracing::error!(op = %id, error = %e, "could not persist an operation log line");
        }
    }

    /// Whether a cancel (or the daemon's shutdown) was requested.
    pub fn cancelled(&self) -> bool {
        self.live.cancel.is_cancelled()
    }

    /// A safe point: `Err` if a cancel was requested, so `run` returns and
    /// compensation runs.
    pub fn checkpoint(&self) -> Result<(), Error> {
        if self.cancelled() {
            Err(self.cancelled_error())
        } else {
            Ok(())
        }
    }

    fn cancelled_error(&self) -> Error {
        Error::new(
            ErrorKind::InvalidState,
            format!("operation {} was cancelled", self.id()),
        )
    }

    /// Runs `fut` (a cancellable step) until it ends or a cancel is
    /// requested; in the latter case `fut` is dropped, which kills a running
    /// `pve` command's process group, and the cancel error is returned. Use
    /// it only while [`OpCtx::set_cancellable`] is `true` (the default).
    pub async fn until_cancelled<T>(
        &self,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::select! {
            biased;
            _ = self.live.cancel.cancelled() => Err(self.cancelled_error()),
            r = fut => r,
        }
    }

    /// The cancel token, for steps that select on it themselves.
    pub fn cancel_token(&self) -> CancellationToken {
        self.live.cancel.clone()
    }

    /// Whether `DELETE` may cancel the operation now (default `true`). A
    /// step that must not be interrupted sets it to `false` for its duration;
    /// a cancel request is then refused with 422.
    pub fn set_cancellable(&self, cancellable: bool) {
        self.commit(|r| r.cancellable = cancellable);
    }

    /// The persisted payload (what compensation decides from).
    pub fn payload(&self) -> serde_json::Value {
        lock(&self.live.rec).payload.clone()
    }

    /// Replaces the persisted payload, e.g. to record what compensation must
    /// know (`"present_before": false`) before the host is touched.
    pub fn set_payload(&self, payload: serde_json::Value) {
        self.commit(|r| r.payload = payload);
    }

    /// The state database (for compensation of an operation rebuilt after
    /// a crash, which has nothing else).
    pub fn store(&self) -> &crate::store::Store {
        &self.engine.store
    }

    /// The Proxmox tools; 503 when the daemon runs without them.
    pub fn pve(&self) -> Result<&Pve, Error> {
        self.engine.pve.as_ref().ok_or_else(|| {
            Error::dependency_down(
                "the Proxmox tools are not available on this host (see the daemon's log); \
                 check `[pve] bin_dir` and that this is a Proxmox VE node",
            )
        })
    }

    /// Applies `f` to the record, persists it, then publishes it, under the
    /// record's lock so changes are stored and announced in order.
    pub(crate) fn commit(&self, f: impl FnOnce(&mut OpRecord)) {
        let mut rec = lock(&self.live.rec);
        f(&mut rec);
        if let Err(e) = self.engine.store.update_op(&rec) {
            tracing::error!(op = %rec.id, error = %e, "could not persist an operation's state");
        }
        let op = rec.to_api();
        match serde_json::to_value(&op) {
            Ok(v) => {
                self.engine.events.publish(EventType::Operation, v);
            }
            Err(e) => {
                tracing::error!(op = %rec.id, error = %e, "could not encode an operation event")
            }
        }
        self.live.status.send_replace(rec.status);
    }

    /// Enters a final state.
    pub(crate) fn finish(&self, status: OpStatus, error: Option<ApiErrorInner>) {
        let redactor = &self.engine.redactor;
        let error = error.map(|e| ApiErrorInner {
            code: e.code,
            message: redactor.redact_string(&e.message),
        });
        self.commit(|r| {
            r.status = status;
            r.error = error;
            r.finished_ms = Some(now_ms());
            r.cancellable = false;
        });
    }
}
