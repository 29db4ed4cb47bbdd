//! Wire types of supervision: `GET /v1/deployments/{name}/health`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// A supervised deployment's state (what the supervisor concluded from
/// consecutive probe results and the container's state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Just deployed, started or repaired; bad results do not count yet.
    Starting,
    /// Working.
    Healthy,
    /// Working with a problem (for the agents: an upstream is unreachable).
    Degraded,
    /// Not working (consecutive bad results, or stopped behind 1ld's back).
    Unhealthy,
    /// Stopped because the user asked for it.
    Stopped,
    /// The escalation ladder gave up (or the container vanished); a human is needed.
    Failed,
    /// Cannot tell (the host tools fail or time out).
    Unknown,
}

impl HealthState {
    /// Every state, in a fixed order (metrics export each one).
    pub const ALL: [HealthState; 7] = [
        Self::Starting,
        Self::Healthy,
        Self::Degraded,
        Self::Unhealthy,
        Self::Stopped,
        Self::Failed,
        Self::Unknown,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// The service is up (counts as uptime).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded)
    }
}

/// What one probe (or the container's state) said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProbeOutcome {
    /// The probe passed.
    Healthy,
    /// The probe passed with a problem.
    Degraded,
    /// The probe failed, or the container is stopped though it should run.
    Unhealthy,
    /// The container is stopped as intended (not probed).
    Stopped,
    /// Could not probe (host tools failed, no address).
    Unknown,
}

impl ProbeOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Stopped => "stopped",
            Self::Unknown => "unknown",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Healthy,
            Self::Degraded,
            Self::Unhealthy,
            Self::Stopped,
            Self::Unknown,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// `?since=` of `GET /v1/deployments/{name}/health`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams, ToSchema)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Start of the window: an RFC 3339 time or a duration back from now
    /// (`90m`, `24h`, `7d`); default `24h`, at most `30d`.
    pub since: Option<String>,
}

/// The open incident: from the first unhealthy state to recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Incident {
    /// Its id (unique per deployment).
    pub id: String,
    /// When it began.
    pub started_at: String,
    /// What was seen then.
    pub reason: String,
    /// The remediations taken so far, oldest first.
    pub actions: Vec<Remediation>,
    /// The ladder gave up.
    pub gave_up: bool,
}

/// One remediation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Remediation {
    /// `restart_service`, `reboot`, `start`.
    pub action: String,
    /// When it was taken.
    pub at: String,
    /// Its operation.
    pub operation: Option<String>,
}

/// The ladder's limits as they stand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LadderView {
    /// Remediations in the last hour.
    pub last_hour: u32,
    /// The limit per hour.
    pub max_per_hour: u32,
    /// No remediation before this time (backoff).
    pub next_allowed_at: Option<String>,
    /// What the supervisor waits for, if anything (`grace`, `lock: backup`, ...).
    pub waiting: Option<String>,
}

/// A run of identical consecutive probe results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthRun {
    /// First result of the run.
    pub from: String,
    /// Last result of the run.
    pub to: String,
    /// How many results.
    pub count: u64,
    /// What the probes said.
    pub result: ProbeOutcome,
    /// The state the supervisor was in.
    pub state: HealthState,
    /// Details (status code, reason).
    pub detail: String,
    /// Mean probe latency (ms).
    pub latency_ms_avg: f64,
    /// Slowest probe (ms).
    pub latency_ms_max: f64,
}

/// One hour of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthHour {
    /// The hour's start.
    pub hour: String,
    /// Results while up (healthy or degraded).
    pub up: u64,
    /// Results while down (unhealthy, or stopped though it should run).
    pub down: u64,
    /// Results that count neither way (stopped on purpose, unknown, starting).
    pub other: u64,
    /// `up / (up + down)` in percent; `null` when nothing counted.
    pub uptime_percent: Option<f64>,
    /// Mean probe latency (ms).
    pub latency_ms_avg: f64,
    /// Slowest probe (ms).
    pub latency_ms_max: f64,
}

/// `GET /v1/deployments/{name}/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeploymentHealth {
    /// The deployment.
    pub deployment: String,
    /// The supervised state.
    pub state: HealthState,
    /// Since when.
    pub since: String,
    /// The last result's details.
    pub detail: String,
    /// The probe in words (`http :8080/health expect 200`) and its timing.
    pub probe: String,
    /// The open incident, if any.
    pub incident: Option<Incident>,
    /// The remediation budget.
    pub ladder: LadderView,
    /// The window's start.
    pub window_since: String,
    /// Uptime over the window in percent (`null`: nothing counted yet).
    pub uptime_percent: Option<f64>,
    /// Raw results in the window (kept 24 h), consecutive identical ones as one run, oldest first.
    pub results: Vec<HealthRun>,
    /// Hourly rollups in the window (kept 30 days), oldest first.
    pub hourly: Vec<HealthHour>,
}

/// The supervised state as `GET /v1/deployments` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SupervisionSummary {
    /// The state.
    pub state: HealthState,
    /// Since when.
    pub since: String,
    /// The last result's details.
    pub detail: String,
}

/// Probe timing and thresholds for one app (`[supervise]` in its manifest)
/// or one deployment (`overrides.supervise`); unset fields fall back to the
/// app's, then to `[supervise]` in `1ld.toml`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuperviseOverrides {
    /// Seconds between probes (1..=3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_secs: Option<u64>,
    /// Seconds one probe may take (1..=300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Up to this many seconds of random delay per probe (0..=3600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_secs: Option<u64>,
    /// Consecutive good results that make it healthy (1..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_after: Option<u32>,
    /// Consecutive bad results that make it unhealthy (1..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_after: Option<u32>,
}

impl SuperviseOverrides {
    /// `self`'s fields where set, else `base`'s.
    pub fn or(self, base: SuperviseOverrides) -> SuperviseOverrides {
        SuperviseOverrides {
            interval_secs: self.interval_secs.or(base.interval_secs),
            timeout_secs: self.timeout_secs.or(base.timeout_secs),
            jitter_secs: self.jitter_secs.or(base.jitter_secs),
            healthy_after: self.healthy_after.or(base.healthy_after),
            unhealthy_after: self.unhealthy_after.or(base.unhealthy_after),
        }
    }

    /// Nothing set.
    pub fn is_empty(&self) -> bool {
        *self == SuperviseOverrides::default()
    }

    /// Every problem, each as (`<prefix>.<field>`, message).
    pub fn problems(&self, prefix: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut check = |field: &str, v: Option<u64>, lo: u64, hi: u64| {
            if let Some(v) = v {
                if v < lo || v > hi {
                    out.push((
                        format!("{prefix}.{field}"),
                        format!("{prefix}.{field}: {v} is out of range; use {lo}..={hi}"),
                    ));
                }
            }
        };
        check("interval_secs", self.interval_secs, 1, 3600);
        check("timeout_secs", self.timeout_secs, 1, 300);
        check("jitter_secs", self.jitter_secs, 0, 3600);
        check("healthy_after", self.healthy_after.map(u64::from), 1, 100);
        check(
            "unhealthy_after",
            self.unhealthy_after.map(u64::from),
            1,
            100,
        );
        out
    }
}
