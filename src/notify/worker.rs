//! The delivery loop: takes the head of each target's queue when it is due,
//! delivers it in a task of its own (targets in parallel, one attempt per
//! target at a time), and records the outcome.
//!
//! Invariants: the loop never dies (a store error is logged and retried at
//! the next tick); it beats at least every `beat_every()`; it wakes at once
//! on [`super::Notifier::enqueue`] and when an attempt ends, and otherwise at
//! the earliest `next_attempt_ms`. On stop, attempts in flight are dropped
//! and their rows stay `pending` (retried after the restart).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Alert, Notifier, NotifyConfig, TargetConfig};
use crate::store::{now_ms, NotificationRow};

/// The pause before attempt `attempts + 1` after `attempts` failures:
/// `initial * 2^(attempts-1)`, capped at `max`, then a random point in its
/// upper half (so targets that failed together do not retry together).
pub fn backoff(attempts: u32, initial: Duration, max: Duration, unit_random: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exp).min(max);
    let jitter = unit_random.clamp(0.0, 1.0);
    base.mul_f64(0.5 + jitter / 2.0)
}

struct Flight {
    in_flight: HashSet<String>,
    ids: HashMap<tokio::task::Id, String>,
    tasks: JoinSet<()>,
}

pub(super) async fn run(n: Notifier, stop: CancellationToken, beat: crate::daemon::notify::Beat) {
    let every = crate::daemon::notify::beat_every();
    let mut f = Flight {
        in_flight: HashSet::new(),
        ids: HashMap::new(),
        tasks: JoinSet::new(),
    };
    // The queue is read only when something may have changed (an enqueue,
    // a finished delivery, a due retry) or once a minute as a safety net;
    // in between the loop only beats, so an idle daemon does no queries.
    let mut dirty = true;
    let mut next_due: Option<i64> = None;
    let mut last_scan = std::time::Instant::now();
    loop {
        beat.alive();
        let now = now_ms();
        if next_due.is_some_and(|t| t <= now) || last_scan.elapsed() >= SCAN_EVERY {
            dirty = true;
        }
        if dirty {
            dirty = false;
            last_scan = std::time::Instant::now();
            next_due = match dispatch(&n, &mut f, now) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!("notification queue: {e}; retrying");
                    Some(now + 1000)
                }
            };
        }
        let wait = next_due
            .map(|t| Duration::from_millis(u64::try_from(t.saturating_sub(now)).unwrap_or(0)))
            .unwrap_or(every)
            .min(every);
        tokio::select! {
            () = stop.cancelled() => {
                f.tasks.abort_all();
                return;
            }
            () = n.woken() => dirty = true,
            Some(done) = f.tasks.join_next_with_id() => {
                dirty = true;
                let id = match &done {
                    Ok((id, ())) => *id,
                    Err(e) => {
                        tracing::error!("a notification delivery task ended abnormally: {e}");
                        e.id()
                    }
                };
                if let Some(target) = f.ids.remove(&id) {
                    f.in_flight.remove(&target);
                }
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// The queue is read at least this often even when nothing signalled a change.
const SCAN_EVERY: Duration = Duration::from_secs(60);

/// Starts every due head whose target is idle; the earliest future due time.
fn dispatch(n: &Notifier, f: &mut Flight, now: i64) -> Result<Option<i64>, crate::error::Error> {
    let cfg = n.config();
    let mut next: Option<i64> = None;
    for row in n.store().notification_heads()? {
        if f.in_flight.contains(&row.target) {
            continue;
        }
        let Some(target) = cfg.notify.targets.get(&row.target) else {
            tracing::warn!(notify_target = %row.target, notification = row.id,
                "notification dropped: its target is no longer configured");
            n.store().notification_failed(
                row.id,
                false,
                "target no longer configured (it was removed from [notify.targets])",
            )?;
            // The target's next row is now its head.
            n.wake();
            continue;
        };
        if row.next_attempt_ms > now {
            next = Some(next.map_or(row.next_attempt_ms, |t: i64| t.min(row.next_attempt_ms)));
            continue;
        }
        let name = row.target.clone();
        let handle = f
            .tasks
            .spawn(deliver(n.clone(), row, target.clone(), cfg.notify.clone()));
        f.ids.insert(handle.id(), name.clone());
        f.in_flight.insert(name);
    }
    Ok(next)
}

/// One attempt of `row`, and its outcome recorded.
async fn deliver(n: Notifier, row: NotificationRow, target: TargetConfig, settings: NotifyConfig) {
    let alert: Alert = match serde_json::from_value(row.payload.clone()) {
        Ok(a) => a,
        Err(e) => {
            record(
                &n,
                n.store().notification_failed(
                    row.id,
                    false,
                    &format!("the stored alert cannot be read: {e}"),
                ),
            );
            return;
        }
    };
    let a = n
        .attempt(row.id, &row.target, &target, &alert, settings.timeout())
        .await;
    let now = now_ms();
    let Some(error) = a.error else {
        tracing::debug!(notify_target = %row.target, notification = row.id, "notification delivered");
        record(&n, n.store().notification_delivered(row.id, now));
        return;
    };
    let attempts = row.attempts.saturating_add(1);
    let give_up_ms = i64::try_from(settings.give_up_hours)
        .unwrap_or(i64::MAX / 4)
        .saturating_mul(3_600_000);
    if now.saturating_sub(row.created_ms) >= give_up_ms {
        tracing::warn!(notify_target = %row.target, notification = row.id, attempt = attempts,
            "notification delivery failed, giving up after {} h: {error}", settings.give_up_hours);
        let why = format!(
            "gave up after {attempts} attempt(s) over {} h; last error: {error}",
            settings.give_up_hours
        );
        record(&n, n.store().notification_failed(row.id, true, &why));
        return;
    }
    let pause = backoff(
        attempts,
        Duration::from_secs(settings.retry_initial_secs),
        Duration::from_secs(settings.retry_max_secs),
        rand::thread_rng().gen::<f64>(),
    );
    tracing::warn!(notify_target = %row.target, notification = row.id, attempt = attempts,
        retry_in_ms = pause.as_millis() as u64, "notification delivery failed: {error}");
    let next = now.saturating_add(i64::try_from(pause.as_millis()).unwrap_or(i64::MAX / 4));
    record(&n, n.store().notification_retry(row.id, next, &error));
}

fn record(n: &Notifier, r: Result<(), crate::store::StoreError>) {
    if let Err(e) = r {
        tracing::error!("cannot record a notification's delivery: {e}");
    }
    n.wake();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters_in_the_upper_half() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(10), s(1800), 1.0), s(10));
        assert_eq!(backoff(1, s(10), s(1800), 0.0), s(5));
        assert_eq!(backoff(2, s(10), s(1800), 1.0), s(20));
        assert_eq!(backoff(4, s(10), s(1800), 1.0), s(80));
        assert_eq!(backoff(20, s(10), s(1800), 1.0), s(1800));
        assert_eq!(backoff(u32::MAX, s(10), s(1800), 0.0), s(900));
        let mid = backoff(3, s(10), s(1800), 0.5);
        assert!(mid > s(20) && mid < s(40), "{mid:?}");
    }
}
