//! systemd notifications: readiness, status, stopping and the watchdog.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op. The
//! watchdog is only fed while every registered main loop has reported in
//! within the interval: a stalled loop stops the pings and systemd restarts
//! the daemon.
//!
//! [`StallSwitch`] is a test-only fault: it makes one loop stop beating so
//! the packaging test can watch systemd's watchdog restart the daemon.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// `READY=1` plus a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=...`: what the daemon is doing.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with the monotonic timestamp systemd requires).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => tracing::debug!(error = %e, "no monotonic clock for RELOADING"),
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// How often a main loop must beat: every 5 s, or more often when systemd's
/// watchdog interval is short (a quarter of it), so a healthy loop always
/// beats within the interval [`run_watchdog`] checks.
pub fn beat_every() -> Duration {
    const DEFAULT: Duration = Duration::from_secs(5);
    watchdog_interval().map_or(DEFAULT, |i| {
        (i / 4).clamp(Duration::from_millis(1), DEFAULT)
    })
}

/// Heartbeats of the main loops. Each loop holds a [`Beat`] and calls
/// [`Beat::alive`] every iteration; [`Heartbeats::stalled`] names the loops
/// that did not do so within a given interval.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats {
    loops: Arc<std::sync::Mutex<Vec<LoopBeat>>>,
    origin: Arc<OnceInstant>,
}

/// A registered loop: its name and when it last beat (ms since `origin`).
type LoopBeat = (&'static str, Arc<AtomicU64>);

#[derive(Debug)]
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

/// One loop's heartbeat.
#[derive(Debug, Clone)]
pub struct Beat {
    last: Arc<AtomicU64>,
    origin: Arc<OnceInstant>,
}

impl Beat {
    /// Records that the loop is alive now.
    pub fn alive(&self) {
        let ms = u64::try_from(self.origin.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl Heartbeats {
    /// Registers a loop named `name` (alive as of now).
    pub fn register(&self, name: &'static str) -> Beat {
        let beat = Beat {
            last: Arc::new(AtomicU64::new(0)),
            origin: self.origin.clone(),
        };
        beat.alive();
        if let Ok(mut loops) = self.loops.lock() {
            loops.push((name, beat.last.clone()));
        }
        beat
    }

    /// The loops that have not reported within `within` (empty = all alive).
    pub fn stalled(&self, within: Duration) -> Vec<&'static str> {
        let now = u64::try_from(self.origin.0.elapsed().as_millis()).unwrap_or(u64::MAX);
        let limit = u64::try_from(within.as_millis()).unwrap_or(u64::MAX);
        match self.loops.lock() {
            Ok(loops) => loops
                .iter()
                .filter(|(_, last)| now.saturating_sub(last.load(Ordering::Relaxed)) > limit)
                .map(|(name, _)| *name)
                .collect(),
            Err(_) => vec!["heartbeat registry (poisoned)"],
        }
    }
}

/// Feeds systemd's watchdog every `interval / 2` while all loops are alive
/// (each must beat within `interval`). Returns when `stop` fires.
pub async fn run_watchdog(
    interval: Duration,
    beats: Heartbeats,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(interval / 2);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let stalled = beats.stalled(interval);
        if stalled.is_empty() {
            send(&[NotifyState::Watchdog]);
        } else {
            tracing::error!(?stalled, "main loop stalled; not feeding the watchdog");
        }
    }
}

/// The environment variable that arms test faults; never set by the package.
pub const TEST_FAULTS_ENV: &str = "ONELD_TEST_FAULTS";

/// The file in the state directory that trips [`StallSwitch`].
pub const STALL_FILE: &str = "stall-watchdog-for-tests";

/// Test-only fault: when 1ldd runs with `ONELD_TEST_FAULTS=1` and
/// `<state_dir>/stall-watchdog-for-tests` appears, the retention loop stops
/// beating for the rest of this process's life, so the watchdog is no longer
/// fed and systemd kills and restarts the daemon (`tests/deb.rs`). The file
/// is consumed when it trips, so the restarted daemon runs normally. Both
/// conditions are needed: a stray file alone does nothing.
#[derive(Debug)]
pub struct StallSwitch {
    file: PathBuf,
    tripped: bool,
}

impl StallSwitch {
    /// Armed only when [`TEST_FAULTS_ENV`] is exactly `1`.
    pub fn from_env(state_dir: &Path) -> Option<Self> {
        if std::env::var(TEST_FAULTS_ENV).as_deref() != Ok("1") {
            return None;
        }
        let file = state_dir.join(STALL_FILE);
        tracing::warn!(
            file = %file.display(),
            "{TEST_FAULTS_ENV}=1: test faults armed; this file stalls a main loop"
        );
        Some(Self {
            file,
            tripped: false,
        })
    }

    /// Whether the loop must skip its beat: true from the first call that
    /// finds (and removes) the file on.
    pub fn stalled(&mut self) -> bool {
        if !self.tripped && std::fs::remove_file(&self.file).is_ok() {
            tracing::error!("test fault: the retention loop stops beating (watchdog test)");
            self.tripped = true;
        }
        self.tripped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_beating_is_stalled() {
        let hb = Heartbeats::default();
        let a = hb.register("api");
        let _b = hb.register("ops");
        assert!(hb.stalled(Duration::from_millis(50)).is_empty());
        std::thread::sleep(Duration::from_millis(80));
        a.alive();
        assert_eq!(hb.stalled(Duration::from_millis(50)), vec!["ops"]);
    }

    #[test]
    fn the_stall_switch_trips_once_on_its_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut s = StallSwitch {
            file: dir.path().join(STALL_FILE),
            tripped: false,
        };
        assert!(!s.stalled());
        std::fs::write(dir.path().join(STALL_FILE), "").expect("touch");
        assert!(s.stalled());
        assert!(!dir.path().join(STALL_FILE).exists(), "consumed");
        assert!(s.stalled(), "stays stalled");
    }
}
