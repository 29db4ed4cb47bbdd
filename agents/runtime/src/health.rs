//! Named health checks and the `/health` document.
//!
//! Two kinds of checks feed one registry ([`Checks`]):
//! - *probes* ([`Check`]) are cheap local tests run each time health is asked
//!   for (state dir writable, work loop alive, database readable);
//! - *reported* checks ([`Reporter`]) hold the last result of something done
//!   elsewhere, typically the upstream API test the work cycle runs, so that
//!   `/health` never hits an upstream itself.
//!
//! The overall status is the worst check's; HTTP is 200 for healthy and
//! degraded, 503 for unhealthy; `--self-check` exits 0/1/2 likewise. Each
//! check remembers when it was last healthy (`last_ok`).
//!
//! A check that has no real result yet (the first work cycle still running,
//! an upstream not checked yet) reports a *pending* outcome
//! ([`CheckOutcome::pending`]): degraded, and marked so. While any check is
//! pending the document says `"starting": true`, which tells a deployer's
//! health gate that the status is provisional and worth waiting for.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Health of one check or of the whole agent, in increasing severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Working as intended.
    Healthy,
    /// Working, but something it depends on is not (e.g. upstream unreachable).
    Degraded,
    /// Cannot do its job until someone fixes something here (config,
    /// credentials, local state).
    Unhealthy,
}

impl Health {
    /// HTTP status of `/health`: 200 unless unhealthy (503).
    pub fn http_status(self) -> u16 {
        match self {
            Health::Healthy | Health::Degraded => 200,
            Health::Unhealthy => 503,
        }
    }

    /// Exit code of `--self-check` and `--once`: 0, 1 or 2.
    pub fn exit_code(self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Degraded => 1,
            Health::Unhealthy => 2,
        }
    }

    /// Lower-case name as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Status.
    pub status: Health,
    /// Human-readable detail: what was found, and for failures what to do.
    pub message: String,
    /// No real result yet (first cycle running, not checked yet): the status
    /// is a placeholder that the next real result replaces.
    pub pending: bool,
}

impl CheckOutcome {
    /// A healthy outcome.
    pub fn healthy(message: impl Into<String>) -> Self {
        Self {
            status: Health::Healthy,
            message: message.into(),
            pending: false,
        }
    }

    /// A degraded outcome.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            status: Health::Degraded,
            message: message.into(),
            pending: false,
        }
    }

    /// An unhealthy outcome.
    pub fn unhealthy(message: impl Into<String>) -> Self {
        Self {
            status: Health::Unhealthy,
            message: message.into(),
            pending: false,
        }
    }

    /// No result yet (e.g. "not checked yet"): degraded until the first real
    /// outcome, and marked pending so `/health` says `"starting": true`.
    pub fn pending(message: impl Into<String>) -> Self {
        Self {
            status: Health::Degraded,
            message: message.into(),
            pending: true,
        }
    }
}

/// A local check run on every health request. Keep it cheap and
/// non-blocking-ish: it runs on a blocking thread, but `/health` waits for it.
pub trait Check: Send + Sync + 'static {
    /// Stable name, the key in `checks{}`.
    fn name(&self) -> &str;
    /// Runs the check.
    fn run(&self) -> CheckOutcome;
}

#[derive(Debug)]
struct Slot {
    outcome: CheckOutcome,
    last_ok: Option<OffsetDateTime>,
}

#[derive(Default)]
struct Inner {
    probes: Vec<Arc<dyn Check>>,
    slots: BTreeMap<String, Slot>,
}

/// The registry of checks. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Checks {
    inner: Arc<Mutex<Inner>>,
    service: &'static str,
    version: &'static str,
    started: Instant,
}

impl std::fmt::Debug for Checks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// Handle that sets the result of one reported check.
#[derive(Clone)]
pub struct Reporter {
    checks: Checks,
    name: String,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("name", &self.name)
            .finish()
    }
}

impl Reporter {
    /// Records the latest outcome.
    pub fn set(&self, outcome: CheckOutcome) {
        self.checks.record(&self.name, outcome);
    }

    /// The check's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// One check in the `/health` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// Status.
    pub status: Health,
    /// Detail.
    pub message: String,
    /// RFC 3339 time this check last passed, if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ok: Option<String>,
    /// No real result yet (see [`CheckOutcome::pending`]); left out when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// The `/health` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Worst status of all checks (healthy when there are none).
    pub status: Health,
    /// Agent name.
    pub service: &'static str,
    /// Agent version.
    pub version: &'static str,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Some check has no real result yet (the first work cycle has not
    /// finished): `status` is provisional. A deployer's health gate keeps
    /// probing while this is true.
    pub starting: bool,
    /// Every check by name.
    pub checks: BTreeMap<String, CheckReport>,
}

/// RFC 3339 form of `t` (UTC).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// An agent's last upstream check result and when it was taken (RFC 3339),
/// for its status document.
#[derive(Debug)]
pub struct LastCheck<T>(Mutex<Option<(T, String)>>);

impl<T> Default for LastCheck<T> {
    fn default() -> Self {
        Self(Mutex::new(None))
    }
}

impl<T: Clone> LastCheck<T> {
    /// Remembers `result`, taken now.
    pub fn record(&self, result: &T) {
        let at = rfc3339(OffsetDateTime::now_utc());
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some((result.clone(), at));
    }

    /// `(last_check, last_checked_at)`: `(null, None)` before the first
    /// check; else what `describe` makes of a good result, or
    /// `{"ok": false, "error": …}` with the error it gives for a bad one.
    pub fn status(
        &self,
        describe: impl FnOnce(&T) -> Result<serde_json::Value, Option<String>>,
    ) -> (serde_json::Value, Option<String>) {
        let last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match last.as_ref() {
            None => (serde_json::Value::Null, None),
            Some((result, at)) => (
                describe(result)
                    .unwrap_or_else(|error| serde_json::json!({"ok": false, "error": error})),
                Some(at.clone()),
            ),
        }
    }
}

impl Checks {
    /// An empty registry for agent `service` at `version`.
    pub fn new(service: &'static str, version: &'static str) -> Self {
        Self {
            inner: Arc::default(),
            service,
            version,
            started: Instant::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave Inner inconsistent
        // (every update is a single insert), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a probe run on every evaluation.
    pub fn register(&self, check: impl Check) {
        self.lock().probes.push(Arc::new(check));
    }

    /// Adds a reported check with an initial outcome and returns its handle.
    pub fn reporter(&self, name: impl Into<String>, initial: CheckOutcome) -> Reporter {
        let name = name.into();
        self.record(&name, initial);
        Reporter {
            checks: self.clone(),
            name,
        }
    }

    /// Sets the outcome of check `name` (creating it if needed).
    pub fn record(&self, name: &str, outcome: CheckOutcome) {
        let mut inner = self.lock();
        let now = OffsetDateTime::now_utc();
        let slot = inner.slots.entry(name.to_string()).or_insert(Slot {
            outcome: outcome.clone(),
            last_ok: None,
        });
        if outcome.status == Health::Healthy {
            slot.last_ok = Some(now);
        }
        slot.outcome = outcome;
    }

    /// Runs the probes (blocking) and returns the whole document.
    pub fn evaluate(&self) -> HealthReport {
        let probes = self.lock().probes.clone();
        // Probes run without the lock: they may take a moment (disk, SQLite).
        let results: Vec<(String, CheckOutcome)> = probes
            .iter()
            .map(|p| (p.name().to_string(), p.run()))
            .collect();
        for (name, outcome) in results {
            self.record(&name, outcome);
        }
        let inner = self.lock();
        let checks: BTreeMap<String, CheckReport> = inner
            .slots
            .iter()
            .map(|(name, slot)| {
                (
                    name.clone(),
                    CheckReport {
                        status: slot.outcome.status,
                        message: slot.outcome.message.clone(),
                        last_ok: slot.last_ok.map(rfc3339),
                        pending: slot.outcome.pending,
                    },
                )
            })
            .collect();
        HealthReport {
            status: checks
                .values()
                .map(|c| c.status)
                .max()
                .unwrap_or(Health::Healthy),
            service: self.service,
            version: self.version,
            uptime_s: self.started.elapsed().as_secs(),
            starting: checks.values().any(|c| c.pending),
            checks,
        }
    }

    /// Agent name.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Agent version.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Seconds since the registry (≈ the process) started.
    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Probe: the state directory exists and a file can be created, written,
/// synced and removed in it.
#[derive(Debug, Clone)]
pub struct StateDirWritable {
    dir: std::path::PathBuf,
}

impl StateDirWritable {
    /// Probe for `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl Check for StateDirWritable {
    fn name(&self) -> &str {
        "state_dir"
    }

    fn run(&self) -> CheckOutcome {
        use std::io::Write;
        let probe = self
            .dir
            .join(format!(".health-probe-{}", std::process::id()));
        let result = std::fs::File::create(&probe)
            .and_then(|mut f| {
                f.write_all(b"ok")?;
                f.sync_all()
            })
            .and_then(|()| std::fs::remove_file(&probe));
        match result {
            Ok(()) => CheckOutcome::healthy(format!("{} is writable", self.dir.display())),
            Err(e) => {
                let _ = std::fs::remove_file(&probe);
                CheckOutcome::unhealthy(format!(
                    "{} is not writable: {e} (it must exist and belong to the agent's user)",
                    self.dir.display()
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Health);
    impl Check for Fixed {
        fn name(&self) -> &str {
            self.0
        }
        fn run(&self) -> CheckOutcome {
            CheckOutcome {
                status: self.1,
                message: "fixed".into(),
                pending: false,
            }
        }
    }

    #[test]
    fn worst_check_wins_and_maps_to_http_and_exit() {
        let checks = Checks::new("t", "0");
        assert_eq!(checks.evaluate().status, Health::Healthy);
        checks.register(Fixed("a", Health::Healthy));
        let r = checks.reporter("up", CheckOutcome::degraded("not yet"));
        let rep = checks.evaluate();
        assert_eq!(rep.status, Health::Degraded);
        assert_eq!(rep.status.http_status(), 200);
        assert_eq!(rep.status.exit_code(), 1);
        assert!(rep.checks["up"].last_ok.is_none());
        assert!(rep.checks["a"].last_ok.is_some());
        r.set(CheckOutcome::unhealthy("bad token"));
        let rep = checks.evaluate();
        assert_eq!(rep.status, Health::Unhealthy);
        assert_eq!(rep.status.http_status(), 503);
        assert_eq!(rep.status.exit_code(), 2);
        r.set(CheckOutcome::healthy("ok"));
        let rep = checks.evaluate();
        assert_eq!(rep.status, Health::Healthy);
        assert!(rep.checks["up"].last_ok.is_some());
    }

    #[test]
    fn pending_checks_make_the_document_starting() {
        let checks = Checks::new("t", "0");
        let r = checks.reporter("up", CheckOutcome::pending("not checked yet"));
        let rep = checks.evaluate();
        assert_eq!(rep.status, Health::Degraded);
        assert!(rep.starting && rep.checks["up"].pending);
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["starting"], true);
        assert_eq!(json["checks"]["up"]["pending"], true);
        // A real result, even a bad one, ends the starting phase.
        r.set(CheckOutcome::degraded("no answer"));
        let rep = checks.evaluate();
        assert!(!rep.starting && !rep.checks["up"].pending);
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["starting"], false);
        assert!(json["checks"]["up"].get("pending").is_none());
    }

    #[test]
    fn last_ok_survives_a_failure() {
        let checks = Checks::new("t", "0");
        let r = checks.reporter("up", CheckOutcome::healthy("ok"));
        r.set(CheckOutcome::degraded("down"));
        let rep = checks.evaluate();
        assert_eq!(rep.checks["up"].status, Health::Degraded);
        assert!(rep.checks["up"].last_ok.is_some());
        let json = serde_json::to_value(&rep).unwrap();
        assert_eq!(json["checks"]["up"]["status"], "degraded");
        assert_eq!(json["service"], "t");
    }

    #[test]
    fn state_dir_probe() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            StateDirWritable::new(dir.path()).run().status,
            Health::Healthy
        );
        assert_eq!(
            StateDirWritable::new(dir.path().join("absent"))
                .run()
                .status,
            Health::Unhealthy
        );
    }
}
