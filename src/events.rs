//! The event bus: every state change clients may follow
//! (`GET /v1/events?type=...`).
//!
//! Invariants:
//! - `seq` increases strictly in publication order, and every subscriber
//!   receives its events in that order (sequence numbers are assigned and
//!   queued under one lock). With a store, numbering continues after the
//!   highest persisted event, so persisted events stay ordered across
//!   restarts;
//! - memory is bounded: each subscriber has a queue of [`QUEUE`] events and
//!   the bus keeps the last [`RING`] events; a subscriber whose queue is full
//!   is dropped on the spot, then receives what was queued, a final
//!   [`EventType::Lagged`] event naming the first missed `seq`, and `None`;
//! - [`EventBus::publish`] never waits for a consumer;
//! - payloads pass through the [`Redactor`] before anyone sees them;
//! - `lifecycle` events (the audit trail) are also written to the store;
//!   a failed write is logged, never lost silently, and does not stop the
//!   event from being delivered.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::api::{Event, EventType};
use crate::secrets::Redactor;
use crate::store::{now_ms, rfc3339, Store, StoredEvent};

/// Events queued per subscriber before it is dropped as lagging.
pub const QUEUE: usize = 1024;
/// Recent events kept in memory for [`EventBus::recent`].
pub const RING: usize = 1024;

/// The bus. Cheap to clone.
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("last_seq", &self.last_seq())
            .finish_non_exhaustive()
    }
}

struct Inner {
    state: Mutex<State>,
    last_seq: AtomicU64,
    store: Option<Store>,
    redactor: Redactor,
    queue: usize,
}

struct State {
    next_seq: u64,
    subs: Vec<Sub>,
    ring: VecDeque<Event>,
}

struct Sub {
    kinds: Vec<EventType>,
    tx: mpsc::Sender<Event>,
    lagged: Arc<Mutex<Option<u64>>>,
}

/// One subscriber's stream of events.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Event>,
    lagged: Arc<Mutex<Option<u64>>>,
    done: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    /// An in-memory bus (nothing persisted, nothing redacted); for tests and
    /// tools.
    pub fn new() -> Self {
        Self::build(None, Redactor::new(), 1, QUEUE)
    }

    /// The daemon's bus: `lifecycle` events are persisted in `store`,
    /// numbering continues after the highest stored event, and payloads go
    /// through `redactor`.
    pub fn persistent(store: Store, redactor: Redactor) -> Result<Self, crate::error::Error> {
        let first = store.last_event_seq()?.saturating_add(1);
        Ok(Self::build(Some(store), redactor, first, QUEUE))
    }

    fn build(store: Option<Store>, redactor: Redactor, first: u64, queue: usize) -> Self {
        EventBus {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_seq: first,
                    subs: Vec::new(),
                    ring: VecDeque::with_capacity(RING),
                }),
                last_seq: AtomicU64::new(first.saturating_sub(1)),
                store,
                redactor,
                queue,
            }),
        }
    }

    /// A bus with per-subscriber queues of `queue` events (tests).
    #[cfg(test)]
    fn with_queue(queue: usize) -> Self {
        Self::build(None, Redactor::new(), 1, queue)
    }

    /// The last assigned sequence number (0 before the first event).
    pub fn last_seq(&self) -> u64 {
        self.inner.last_seq.load(Ordering::Acquire)
    }

    /// Publishes an event to every subscriber of `kind`; returns its `seq`.
    /// Never blocks on a consumer: a subscriber with a full queue is dropped
    /// (it gets a final `lagged` event).
    pub fn publish(&self, kind: EventType, payload: serde_json::Value) -> u64 {
        let payload = self.inner.redactor.redact_json(&payload);
        let time_ms = now_ms();
        let event = {
            let mut st = lock(&self.inner.state);
            let seq = st.next_seq;
            st.next_seq += 1;
            let event = Event {
                seq,
                time: rfc3339(time_ms),
                kind,
                payload,
            };
            st.subs.retain(|sub| {
                if !sub.kinds.is_empty() && !sub.kinds.contains(&kind) {
                    return !sub.tx.is_closed();
                }
                match sub.tx.try_send(event.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        *lock(&sub.lagged) = Some(seq);
                        false // dropping the sender ends the stream after the queue
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            });
            if st.ring.len() == RING {
                st.ring.pop_front();
            }
            st.ring.push_back(event.clone());
            self.inner.last_seq.store(seq, Ordering::Release);
            event
        };
        if kind == EventType::Lifecycle {
            if let Some(store) = &self.inner.store {
                let row = StoredEvent {
                    seq: event.seq,
                    time_ms,
                    kind: "lifecycle".to_string(),
                    payload: event.payload.clone(),
                };
                if let Err(e) = store.insert_event(&row) {
                    tracing::error!(seq = event.seq, error = %e, payload = %event.payload, "could not persist a lifecycle event");
                }
            }
        }
        event.seq
    }

    /// Subscribes to `kinds` (empty: every type). The subscription sees
    /// events published after this call.
    pub fn subscribe(&self, kinds: &[EventType]) -> Subscription {
        let (tx, rx) = mpsc::channel(self.inner.queue.max(1));
        let lagged = Arc::new(Mutex::new(None));
        lock(&self.inner.state).subs.push(Sub {
            kinds: kinds.to_vec(),
            tx,
            lagged: lagged.clone(),
        });
        Subscription {
            rx,
            lagged,
            done: false,
        }
    }

    /// Kept events of `kinds` (empty: all) with `seq > after`, oldest first
    /// (at most [`RING`]); lets a reconnecting client catch up.
    pub fn recent(&self, kinds: &[EventType], after: u64) -> Vec<Event> {
        lock(&self.inner.state)
            .ring
            .iter()
            .filter(|e| e.seq > after && (kinds.is_empty() || kinds.contains(&e.kind)))
            .cloned()
            .collect()
    }

    /// Number of live subscribers.
    pub fn subscribers(&self) -> usize {
        let mut st = lock(&self.inner.state);
        st.subs.retain(|s| !s.tx.is_closed());
        st.subs.len()
    }
}

impl Subscription {
    /// The next event; after a `lagged` event (or when the bus is gone), `None`.
    pub async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if let Some(ev) = self.rx.recv().await {
            return Some(ev);
        }
        self.done = true;
        let missed = lock(&self.lagged).take()?;
        Some(Event {
            seq: missed,
            time: rfc3339(now_ms()),
            kind: EventType::Lagged,
            payload: serde_json::json!({
                "missed_from_seq": missed,
                "message": "this subscriber fell behind and was dropped; resubscribe and re-read current state",
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn ordered_and_filtered() {
        let bus = EventBus::new();
        let mut all = bus.subscribe(&[]);
        let mut ops = bus.subscribe(&[EventType::Operation]);
        let a = bus.publish(EventType::Operation, serde_json::json!({"n": 1}));
        let b = bus.publish(EventType::Lifecycle, serde_json::json!({"n": 2}));
        let c = bus.publish(EventType::Operation, serde_json::json!({"n": 3}));
        assert!(a < b && b < c);
        let seqs = |v: Vec<Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(all.next().await.expect("event"));
        }
        assert_eq!(seqs(got), [a, b, c]);
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(ops.next().await.expect("event"));
        }
        assert_eq!(got[1].payload, serde_json::json!({"n": 3}));
        assert_eq!(seqs(got), [a, c]);
        assert_eq!(seqs(bus.recent(&[EventType::Lifecycle], 0)), [b]);
        assert_eq!(bus.last_seq(), c);
    }

    #[tokio::test]
    async fn slow_consumer_gets_lagged_then_none_and_publish_never_blocks() {
        let bus = EventBus::with_queue(8);
        let mut slow = bus.subscribe(&[EventType::Operation]);
        let mut fast = bus.subscribe(&[EventType::Operation]);
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while fast.next().await.is_some() {
                n += 1;
                if n == 20 {
                    break;
                }
            }
            n
        });
        let started = Instant::now();
        for i in 0..20 {
            bus.publish(EventType::Operation, serde_json::json!({ "i": i }));
            tokio::task::yield_now().await;
        }
        // 20 publishes to a subscriber that never reads: no waiting at all.
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(reader.await.expect("join"), 20);
        assert_eq!(bus.subscribers(), 0, "slow dropped, fast ended");
        let mut got = Vec::new();
        while let Some(e) = slow.next().await {
            got.push(e);
        }
        assert_eq!(got.len(), 9, "8 queued, then lagged");
        assert!(got[..8].iter().all(|e| e.kind == EventType::Operation));
        let lag = &got[8];
        assert_eq!(lag.kind, EventType::Lagged);
        assert_eq!(lag.seq, 9, "names the first missed seq");
        assert!(slow.next().await.is_none());
    }

    #[tokio::test]
    async fn publish_with_no_reader_at_all_stays_bounded() {
        let bus = EventBus::with_queue(4);
        let _never_read = bus.subscribe(&[]);
        for i in 0..(RING as u64 + 100) {
            assert_eq!(bus.publish(EventType::Health, serde_json::json!(i)), i + 1);
        }
        assert_eq!(bus.subscribers(), 0);
        assert_eq!(bus.recent(&[], 0).len(), RING);
    }

    #[tokio::test]
    async fn payloads_are_redacted_and_lifecycle_persisted() {
        let t = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&crate::paths::Paths::under(t.path())).expect("store");
        let r = Redactor::new();
        r.add("canary-7f3a");
        let bus = EventBus::persistent(store.clone(), r).expect("bus");
        let mut sub = bus.subscribe(&[]);
        bus.publish(
            EventType::Operation,
            serde_json::json!({"line": "x canary-7f3a"}),
        );
        let s = bus.publish(
            EventType::Lifecycle,
            serde_json::json!({"who": "canary-7f3a"}),
        );
        assert_eq!(sub.next().await.expect("e").payload["line"], "x ***");
        let stored = store.events_after(0, 10).expect("events");
        assert_eq!(stored.len(), 1, "only lifecycle is persisted");
        assert_eq!(stored[0].seq, s);
        assert_eq!(stored[0].payload["who"], "***");
        // A new bus continues after the stored numbering.
        let bus2 = EventBus::persistent(store, Redactor::new()).expect("bus");
        assert_eq!(
            bus2.publish(EventType::Health, serde_json::json!({})),
            s + 1
        );
    }
}
