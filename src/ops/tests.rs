//! Engine tests with a fake task (no Proxmox needed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use super::*;
use crate::api::{Event, EventType};
use crate::error::ErrorKind;
use crate::paths::Paths;

const CANARY: &str = "canary-5ecr3t-91c";
const LONG: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counters {
    started: AtomicUsize,
    running_now: AtomicUsize,
    max_running: AtomicUsize,
    compensated: AtomicUsize,
}

struct Fake {
    target: Option<String>,
    heavy: bool,
    fail: bool,
    lines: usize,
    /// When set, each step waits for one permit.
    gate: Option<Arc<Semaphore>>,
    counters: Arc<Counters>,
}

impl Fake {
    fn new(target: &str) -> Self {
        Fake {
            target: Some(target.to_string()),
            heavy: false,
            fail: false,
            lines: 1,
            gate: None,
            counters: Arc::new(Counters::default()),
        }
    }

    fn gated(mut self) -> (Self, Arc<Semaphore>) {
        let g = Arc::new(Semaphore::new(0));
        self.gate = Some(g.clone());
        (self, g)
    }
}

struct Running<'a>(&'a Counters);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running_now.fetch_sub(1, Ordering::SeqCst);
    }
}

impl OpTask for Fake {
    fn kind(&self) -> &'static str {
        "test.fake"
    }
    fn target(&self) -> Option<String> {
        self.target.clone()
    }
    fn heavy(&self) -> bool {
        self.heavy
    }
    fn payload(&self) -> serde_json::Value {
        serde_json::json!({"target": self.target})
    }
    fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let c = &self.counters;
            c.started.fetch_add(1, Ordering::SeqCst);
            let now = c.running_now.fetch_add(1, Ordering::SeqCst) + 1;
            c.max_running.fetch_max(now, Ordering::SeqCst);
            let _running = Running(c);
            for i in 1..=3 {
                ctx.step(i, 3, &format!("s{i}"));
                for n in 0..self.lines {
                    ctx.log(&format!("step {i} line {n} token={CANARY}"));
                }
                if let Some(g) = &self.gate {
                    g.acquire().await.expect("gate").forget();
                }
                if self.fail && i == 2 {
                    return Err(Error::dependency_down(format!(
                        "tool said: bad token {CANARY}"
                    )));
                }
                ctx.checkpoint()?;
            }
            Ok(())
        })
    }
    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            self.counters.compensated.fetch_add(1, Ordering::SeqCst);
            ctx.log("fake compensation ran");
            Ok(())
        })
    }
}

/// The [`OpTask`] methods of a light task of `kind` with no target and an
/// empty payload.
macro_rules! light_untargeted_task {
    ($kind:literal) => {
        fn kind(&self) -> &'static str {
            $kind
        }
        fn target(&self) -> Option<String> {
            None
        }
        fn heavy(&self) -> bool {
            false
        }
        fn payload(&self) -> serde_json::Value {
            serde_json::json!({})
        }
    };
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    events: EventBus,
    ops: Ops,
}

fn env_with(heavy: usize) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&Paths::under(dir.path())).expect("store");
    let redactor = Redactor::new();
    redactor.add(CANARY);
    let events = EventBus::persistent(store.clone(), redactor.clone()).expect("bus");
    let cfg = OpsConfig {
        heavy_concurrency: heavy,
        ..OpsConfig::default()
    };
    let ops = Ops::new(store.clone(), events.clone(), redactor, None, &cfg);
    Env {
        _dir: dir,
        store,
        events,
        ops,
    }
}

fn env() -> Env {
    env_with(1)
}

fn admin() -> Requestor {
    Requestor {
        uid: 0,
        user: "root".into(),
        pid: 42,
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn status(ops: &Ops, id: &str) -> OpStatus {
    ops.get(id).expect("get").status
}

async fn drain_until_final(sub: &mut crate::events::Subscription, id: &str) -> Vec<Event> {
    let mut got = Vec::new();
    loop {
        let ev = tokio::time::timeout(LONG, sub.next())
            .await
            .expect("event in time")
            .expect("stream open");
        let done = ev.payload["id"] == id
            && ev.payload["status"] != "queued"
            && ev.payload["status"] != "running";
        got.push(ev);
        if done {
            return got;
        }
    }
}

#[tokio::test]
async fn succeeds_with_progress_events_in_order() {
    let e = env();
    let mut sub = e.events.subscribe(&[EventType::Operation]);
    let op = e
        .ops
        .submit(Box::new(Fake::new("ct/1")), admin())
        .await
        .expect("submit");
    assert_eq!(op.status, OpStatus::Queued);
    assert_eq!(op.kind, "test.fake");
    let done = e.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(done.status, OpStatus::Succeeded);
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    assert!(done.error.is_none() && !done.cancellable);
    assert_eq!(done.progress.step, 3);

    let evs = drain_until_final(&mut sub, &op.id).await;
    assert!(evs.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    let statuses: Vec<String> = evs
        .iter()
        .map(|e| e.payload["status"].as_str().unwrap_or("").to_string())
        .collect();
    let first_running = statuses
        .iter()
        .position(|s| s == "running")
        .expect("running");
    assert_eq!(statuses[0], "queued");
    assert!(statuses[..first_running].iter().all(|s| s == "queued"));
    assert_eq!(statuses.last().map(String::as_str), Some("succeeded"));
    let steps: Vec<u64> = evs
        .iter()
        .filter_map(|e| e.payload["progress"]["step"].as_u64())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] <= w[1]), "{steps:?}");
    for n in 1..=3 {
        assert!(steps.contains(&n), "step {n} announced: {steps:?}");
    }
    // The lock is released once it ended.
    assert_eq!(e.ops.holder("ct/1"), None);
    e.ops
        .submit(Box::new(Fake::new("ct/1")), admin())
        .await
        .expect("target free again");
}

#[tokio::test]
async fn failure_runs_compensation_and_redacts_the_error() {
    let e = env();
    let mut f = Fake::new("ct/2");
    f.fail = true;
    let counters = f.counters.clone();
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    let done = e.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(done.status, OpStatus::Failed);
    let err = done.error.expect("error");
    assert_eq!(err.code, "dependency_down");
    assert_eq!(err.message, "tool said: bad token ***");
    assert_eq!(counters.compensated.load(Ordering::SeqCst), 1);
    let log = e.ops.log(&op.id, 0).expect("log");
    assert!(log.complete);
    assert!(
        log.lines.iter().any(|l| l == "fake compensation ran"),
        "{:?}",
        log.lines
    );
    assert!(
        log.lines.iter().any(|l| l.starts_with("failed: ")),
        "{:?}",
        log.lines
    );
}

#[tokio::test]
async fn cancel_stops_at_the_checkpoint_and_compensates() {
    let e = env();
    let (f, gate) = Fake::new("ct/3").gated();
    let counters = f.counters.clone();
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    wait_for("running", || status(&e.ops, &op.id) == OpStatus::Running).await;
    let alice = Requestor {
        uid: 1000,
        user: "alice".into(),
        pid: 7,
    };
    let now = e.ops.cancel(&op.id, alice.clone()).await.expect("cancel");
    assert_eq!(now.status, OpStatus::Running, "cancel is cooperative");
    // Idempotent while it is stopping.
    e.ops
        .cancel(&op.id, alice.clone())
        .await
        .expect("cancel again");
    gate.add_permits(1);
    let done = e.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(done.status, OpStatus::Cancelled);
    let err = done.error.expect("error");
    assert_eq!(err.code, "cancelled");
    assert!(err.message.contains("alice"), "{}", err.message);
    assert_eq!(counters.compensated.load(Ordering::SeqCst), 1);
    assert_eq!(done.progress.step, 1, "stopped at the first checkpoint");

    let e422 = e
        .ops
        .cancel(&op.id, alice.clone())
        .await
        .expect_err("finished");
    assert_eq!(e422.kind, ErrorKind::InvalidState);
    assert!(e422.message.contains("cancelled"), "{}", e422.message);
    let e404 = e.ops.cancel("nope", alice).await.expect_err("unknown");
    assert_eq!(e404.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn cancel_is_refused_during_a_non_cancellable_step() {
    struct Uninterruptible(Arc<Semaphore>);
    impl OpTask for Uninterruptible {
        light_untargeted_task!("test.uninterruptible");
        fn run<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(async move {
                ctx.set_cancellable(false);
                ctx.step(1, 1, "commit");
                self.0.acquire().await.expect("gate").forget();
                Ok(())
            })
        }
        fn compensate<'a>(&'a self, _: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
            Box::pin(async { Ok(()) })
        }
    }
    let e = env();
    let gate = Arc::new(Semaphore::new(0));
    let op = e
        .ops
        .submit(Box::new(Uninterruptible(gate.clone())), admin())
        .await
        .expect("submit");
    wait_for("step", || {
        e.ops.get(&op.id).expect("get").progress.step == 1
    })
    .await;
    assert!(!e.ops.get(&op.id).expect("get").cancellable);
    let err = e.ops.cancel(&op.id, admin()).await.expect_err("refused");
    assert_eq!(err.kind, ErrorKind::InvalidState);
    assert!(err.message.contains("commit"), "{}", err.message);
    gate.add_permits(1);
    assert_eq!(
        e.ops.wait(&op.id, LONG).await.expect("wait").status,
        OpStatus::Succeeded
    );
}

#[tokio::test]
async fn second_op_on_a_target_is_locked_naming_the_holder() {
    let e = env();
    let (f, gate) = Fake::new("ct/140").gated();
    let a = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    let err = e
        .ops
        .submit(Box::new(Fake::new("ct/140")), admin())
        .await
        .expect_err("locked");
    assert_eq!(
        err.kind,
        ErrorKind::Locked {
            holder_op: a.id.clone()
        }
    );
    assert!(
        err.message.contains(&a.id) && err.message.contains("test.fake"),
        "{}",
        err.message
    );
    // The refused submit left no record.
    assert_eq!(e.ops.list(&OpFilter::default()).expect("list").len(), 1);
    // Another target is independent.
    let b = e
        .ops
        .submit(Box::new(Fake::new("ct/141")), admin())
        .await
        .expect("other target");
    gate.add_permits(3);
    assert_eq!(
        e.ops.wait(&a.id, LONG).await.expect("wait").status,
        OpStatus::Succeeded
    );
    assert_eq!(
        e.ops.wait(&b.id, LONG).await.expect("wait").status,
        OpStatus::Succeeded
    );
    e.ops
        .submit(Box::new(Fake::new("ct/140")), admin())
        .await
        .expect("free again");
}

#[tokio::test]
async fn heavy_ops_are_serialised() {
    let e = env_with(1);
    let counters = Arc::new(Counters::default());
    let gate = Arc::new(Semaphore::new(0));
    let mut ids = Vec::new();
    for t in ["ct/1", "ct/2", "ct/3"] {
        let mut f = Fake::new(t);
        f.heavy = true;
        f.gate = Some(gate.clone());
        f.counters = counters.clone();
        ids.push(e.ops.submit(Box::new(f), admin()).await.expect("submit").id);
    }
    wait_for("one running", || {
        counters.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let queued = ids
        .iter()
        .filter(|id| status(&e.ops, id) == OpStatus::Queued)
        .count();
    assert_eq!(queued, 2, "the others wait for the slot");
    // A light op is not held back by the heavy slot.
    let light = e
        .ops
        .submit(Box::new(Fake::new("ct/9")), admin())
        .await
        .expect("light");
    assert_eq!(
        e.ops.wait(&light.id, LONG).await.expect("wait").status,
        OpStatus::Succeeded
    );
    gate.add_permits(9);
    for id in &ids {
        assert_eq!(
            e.ops.wait(id, LONG).await.expect("wait").status,
            OpStatus::Succeeded
        );
    }
    assert_eq!(counters.max_running.load(Ordering::SeqCst), 1);
    let log = e.ops.log(&ids[1], 0).expect("log");
    assert!(
        log.lines.iter().any(|l| l.contains("heavy-work slot")),
        "{:?}",
        log.lines
    );
}

#[tokio::test]
async fn wait_long_polls() {
    let e = env();
    let (f, gate) = Fake::new("ct/5").gated();
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    let t = Instant::now();
    let mid = e
        .ops
        .wait(&op.id, Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(!mid.status.is_final());
    assert!(t.elapsed() >= Duration::from_millis(100) && t.elapsed() < LONG);
    let ops = e.ops.clone();
    let id = op.id.clone();
    let waiter = tokio::spawn(async move { ops.wait(&id, LONG).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!waiter.is_finished());
    gate.add_permits(3);
    let done = waiter.await.expect("join").expect("wait");
    assert_eq!(done.status, OpStatus::Succeeded);
    assert_eq!(
        e.ops.wait("nope", LONG).await.expect_err("404").kind,
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn log_pages_and_redacts_everywhere() {
    let e = env();
    let mut sub = e.events.subscribe(&[]);
    let mut f = Fake::new("ct/6");
    f.lines = 400; // 3 steps × (1 step line + 400) + bookkeeping > LOG_PAGE
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    let done = e.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(done.status, OpStatus::Succeeded);

    let first = e.ops.log(&op.id, 0).expect("log");
    assert_eq!(first.lines.len(), LOG_PAGE as usize);
    assert!(!first.complete);
    assert_eq!(first.next_offset, u64::from(LOG_PAGE));
    let second = e.ops.log(&op.id, first.next_offset).expect("log");
    assert!(second.complete);
    let total = first.lines.len() + second.lines.len();
    assert!(total > 1203, "{total}");
    let end = e.ops.log(&op.id, second.next_offset).expect("log");
    assert!(end.lines.is_empty() && end.complete && end.next_offset == second.next_offset);
    let all: Vec<&String> = first.lines.iter().chain(&second.lines).collect();
    assert_eq!(all[0], "test.fake submitted by root (uid 0, pid 42)");
    assert!(all.iter().any(|l| l.as_str() == "step 1 line 0 token=***"));
    assert!(all.iter().all(|l| !l.contains(CANARY)));
    assert_eq!(
        e.ops.log("nope", 0).expect_err("404").kind,
        ErrorKind::NotFound
    );

    // Nothing that left the engine carries the canary.
    let evs = drain_until_final(&mut sub, &op.id).await;
    let text = serde_json::to_string(&evs).expect("json");
    assert!(!text.contains(CANARY));
    let raw: Vec<String> = e.store.read_op_log(&op.id, 0, 5000).expect("raw");
    assert!(raw.iter().all(|l| !l.contains(CANARY)), "stored redacted");
}

static RECOVERED: AtomicUsize = AtomicUsize::new(0);

struct Recovered;
impl OpTask for Recovered {
    light_untargeted_task!("test.fake");
    fn run<'a>(&'a self, _: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async { Err(Error::internal("never resumed")) })
    }
    fn compensate<'a>(&'a self, ctx: &'a OpCtx) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            RECOVERED.fetch_add(1, Ordering::SeqCst);
            ctx.log(&format!("undid {}", ctx.payload()["what"]));
            Ok(())
        })
    }
}

fn rebuild_fake(kind: &str, _: &serde_json::Value) -> Option<Box<dyn OpTask>> {
    (kind == "test.fake").then(|| Box::new(Recovered) as Box<dyn OpTask>)
}

#[tokio::test]
async fn recover_interrupts_and_compensates_what_had_started() {
    let e = env();
    let mk = |id: &str, kind: &str, status| OpRecord {
        id: id.into(),
        kind: kind.into(),
        target: Some(format!("ct/{id}")),
        requestor: admin(),
        status,
        error: None,
        created_ms: 1,
        started_ms: (status == OpStatus::Running).then_some(2),
        finished_ms: None,
        progress: Default::default(),
        cancellable: true,
        payload: serde_json::json!({"what": id}),
    };
    e.store
        .insert_op(&mk("r1", "test.fake", OpStatus::Running))
        .expect("insert");
    e.store
        .insert_op(&mk("q1", "test.fake", OpStatus::Queued))
        .expect("insert");
    e.store
        .insert_op(&mk("u1", "test.unknown", OpStatus::Running))
        .expect("insert");
    let mut done = mk("s1", "test.fake", OpStatus::Succeeded);
    done.finished_ms = Some(3);
    e.store.insert_op(&done).expect("insert");

    let out = e.ops.recover(rebuild_fake).await.expect("recover");
    assert_eq!(out.len(), 3);
    assert_eq!(
        RECOVERED.load(Ordering::SeqCst),
        1,
        "only the running known op"
    );
    for id in ["r1", "q1", "u1"] {
        let op = e.ops.get(id).expect("get");
        assert_eq!(op.status, OpStatus::Interrupted, "{id}");
        assert_eq!(
            op.error.as_ref().map(|e| e.code.as_str()),
            Some("interrupted")
        );
        assert!(op.finished_at.is_some());
    }
    assert_eq!(status(&e.ops, "s1"), OpStatus::Succeeded);
    let log = e.ops.log("r1", 0).expect("log").lines;
    assert!(log.iter().any(|l| l.contains("was running")), "{log:?}");
    assert!(log.iter().any(|l| l == "undid \"r1\""), "{log:?}");
    assert!(log.iter().any(|l| l == "compensation done"), "{log:?}");
    let u1 = e.ops.get("u1").expect("get").error.expect("error");
    assert!(u1.message.contains("by hand"), "{}", u1.message);
    assert!(e.ops.recover(rebuild_fake).await.expect("again").is_empty());
}

#[tokio::test]
async fn shutdown_refuses_new_ops_and_interrupts_running_ones_at_a_checkpoint() {
    let e = env();
    let (f, gate) = Fake::new("ct/7").gated();
    let counters = f.counters.clone();
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    wait_for("running", || status(&e.ops, &op.id) == OpStatus::Running).await;
    let ops = e.ops.clone();
    let stopping = tokio::spawn(async move { ops.shutdown(LONG).await });
    wait_for("shutdown began", || !e.ops.accepting()).await;
    let err = e
        .ops
        .submit(Box::new(Fake::new("ct/8")), admin())
        .await
        .expect_err("refused");
    assert_eq!(err.kind, ErrorKind::DependencyDown);
    assert!(err.message.contains("shutting down"), "{}", err.message);
    gate.add_permits(1); // the step ends; the checkpoint sees the request
    tokio::time::timeout(LONG, stopping)
        .await
        .expect("in time")
        .expect("join");
    let done = e.ops.get(&op.id).expect("get");
    assert_eq!(done.status, OpStatus::Interrupted);
    assert_eq!(counters.compensated.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_deadline_leaves_stuck_ops_running_for_the_next_start() {
    let e = env();
    let (f, _gate) = Fake::new("ct/9").gated(); // never opened
    let op = e.ops.submit(Box::new(f), admin()).await.expect("submit");
    wait_for("running", || status(&e.ops, &op.id) == OpStatus::Running).await;
    let t = Instant::now();
    e.ops.shutdown(Duration::from_millis(100)).await;
    assert!(t.elapsed() < LONG);
    assert_eq!(status(&e.ops, &op.id), OpStatus::Running);
    // The next start (a new engine on the same store) interrupts it.
    let next = Ops::new(
        e.store.clone(),
        EventBus::new(),
        Redactor::new(),
        None,
        &OpsConfig::default(),
    );
    let out = next
        .recover(crate::ops::kinds::rebuild)
        .await
        .expect("recover");
    assert_eq!(out.len(), 1);
    assert_eq!(status(&next, &op.id), OpStatus::Interrupted);
}

#[tokio::test]
async fn prune_deletes_only_old_finished_ops() {
    let e = env();
    let op = e
        .ops
        .submit(Box::new(Fake::new("ct/1")), admin())
        .await
        .expect("submit");
    e.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(e.ops.prune(1).expect("prune"), 0);
    let mut rec = e.store.get_op(&op.id).expect("get").expect("exists");
    rec.finished_ms = Some(now_ms() - 2 * 86_400_000);
    e.store.update_op(&rec).expect("age it");
    assert_eq!(e.ops.prune(1).expect("prune"), 1);
    assert_eq!(
        e.ops.get(&op.id).expect_err("gone").kind,
        ErrorKind::NotFound
    );
}
