//! The escalation ladder: what to do about an unhealthy deployment. Pure:
//! [`decide`] sees the situation and the policy and returns a [`Decision`].
//!
//! The ladder, per incident: restart the service → (after
//! `restart_grace`) reboot the container → (after `reboot_grace`, when
//! `restore_backup` is on) restore the last verified backup → give up. A
//! container stopped behind 1ld's back is started instead (twice at most).
//! Never acts when the user wants the deployment stopped, while an
//! operation holds the container, or while Proxmox holds its lock (it waits
//! for the lock to clear). At most `max_per_hour` actions per deployment per
//! hour — reaching the limit gives up — and after the k-th action in the
//! last hour the next waits `backoff_initial · 2^(k-1)` (capped).

use serde::{Deserialize, Serialize};

use super::hoststate::CtInfo;
use crate::api::HealthState;

/// One remediation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `systemctl restart <unit>` inside the container.
    RestartService,
    /// `pct reboot`.
    Reboot,
    /// `pct start` (the container was stopped behind 1ld's back).
    Start,
    /// Restore the last verified backup.
    RestoreBackup,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RestartService => "restart_service",
            Self::Reboot => "reboot",
            Self::Start => "start",
            Self::RestoreBackup => "restore_backup",
        }
    }
}

/// A remediation taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRec {
    /// What.
    pub action: Action,
    /// When (ms).
    pub at_ms: i64,
    /// Its operation, when one was started.
    pub op: Option<String>,
}

/// An incident: from entering `unhealthy` (or `failed`) to recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentRec {
    /// Unique per deployment (the start time in ms, as text).
    pub id: String,
    /// When it began (ms).
    pub started_ms: i64,
    /// What was seen then.
    pub reason: String,
    /// Remediations so far.
    pub actions: Vec<ActionRec>,
    /// The ladder gave up.
    pub gave_up: bool,
}

/// The ladder's memory across incidents, and the alerts not yet queued.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LadderRec {
    /// When actions were taken in the last hour (ms, oldest first).
    #[serde(default)]
    pub recent_ms: Vec<i64>,
    /// Alerts decided in a round, persisted with it and queued right after
    /// (a transactional outbox: after a crash they are queued again, and
    /// their dedupe keys keep that from alerting twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<crate::notify::Alert>,
}

impl LadderRec {
    /// Drops actions older than an hour.
    pub fn prune(&mut self, now_ms: i64) {
        self.recent_ms.retain(|t| now_ms - t < HOUR_MS);
    }
}

const HOUR_MS: i64 = 3_600_000;

/// The limits (from `[supervise]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Act at all.
    pub remediate: bool,
    /// Wait after a service restart (ms).
    pub restart_grace_ms: i64,
    /// Wait after a reboot, start or restore (ms).
    pub reboot_grace_ms: i64,
    /// Try a restore before giving up.
    pub restore_backup: bool,
    /// Actions per deployment per hour.
    pub max_per_hour: u32,
    /// First backoff (ms).
    pub backoff_initial_ms: i64,
    /// Longest backoff (ms).
    pub backoff_max_ms: i64,
}

/// What the supervisor sees.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// The supervised state.
    pub state: HealthState,
    /// The user wants it running.
    pub intended_running: bool,
    /// The container (`None`: it does not exist).
    pub ct: Option<&'a CtInfo>,
    /// An operation holding the container, if any.
    pub busy: Option<&'a str>,
    /// The open incident.
    pub incident: Option<&'a IncidentRec>,
    /// Actions of the last hour (ms).
    pub recent_ms: &'a [i64],
    /// Now (ms).
    pub now_ms: i64,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to do.
    Nothing,
    /// Something must happen first (grace, lock, backoff, another operation).
    Wait(String),
    /// Take this action.
    Act(Action),
    /// Give up: the deployment becomes `failed`.
    GiveUp(String),
}

/// When the next action is allowed after `recent` (ms), if limited.
pub fn next_allowed(recent: &[i64], p: &Policy) -> Option<i64> {
    let last = *recent.last()?;
    let k = u32::try_from(recent.len()).unwrap_or(u32::MAX).max(1);
    let factor = 1i64.checked_shl(k - 1).unwrap_or(i64::MAX);
    let wait = p
        .backoff_initial_ms
        .saturating_mul(factor)
        .min(p.backoff_max_ms);
    Some(last.saturating_add(wait))
}

fn grace(a: Action, p: &Policy) -> i64 {
    match a {
        Action::RestartService => p.restart_grace_ms,
        Action::Reboot | Action::Start | Action::RestoreBackup => p.reboot_grace_ms,
    }
}

fn secs(ms: i64) -> i64 {
    (ms + 999) / 1000
}

/// Decides the next step for `s` under `p`.
pub fn decide(s: &Situation<'_>, p: &Policy) -> Decision {
    if !p.remediate || !s.intended_running || s.state != HealthState::Unhealthy {
        return Decision::Nothing;
    }
    let Some(incident) = s.incident else {
        return Decision::Nothing;
    };
    if incident.gave_up {
        return Decision::Nothing;
    }
    let Some(ct) = s.ct else {
        return Decision::Nothing;
    };
    if let Some(op) = s.busy {
        return Decision::Wait(format!("operation {op} holds the container"));
    }
    if let Some(lock) = &ct.lock {
        return Decision::Wait(format!(
            "Proxmox holds the container's lock '{lock}'; waiting for it to clear"
        ));
    }
    let last = incident.actions.last();
    if let Some(l) = last {
        let until = l.at_ms + grace(l.action, p);
        if s.now_ms < until {
            return Decision::Wait(format!(
                "grace after {}: {}s left",
                l.action.as_str(),
                secs(until - s.now_ms)
            ));
        }
    }
    let next = if !ct.running {
        let starts = incident
            .actions
            .iter()
            .filter(|a| a.action == Action::Start)
            .count();
        if starts >= 2 {
            return Decision::GiveUp(format!("the container stopped again after {starts} starts"));
        }
        Action::Start
    } else {
        let mut ladder = vec![Action::RestartService, Action::Reboot];
        if p.restore_backup {
            ladder.push(Action::RestoreBackup);
        }
        match ladder
            .into_iter()
            .find(|a| !incident.actions.iter().any(|t| t.action == *a))
        {
            Some(a) => a,
            None => {
                let tried: Vec<&str> = incident.actions.iter().map(|a| a.action.as_str()).collect();
                return Decision::GiveUp(format!("still unhealthy after {}", tried.join(", ")));
            }
        }
    };
    let n = u32::try_from(s.recent_ms.len()).unwrap_or(u32::MAX);
    if n >= p.max_per_hour {
        return Decision::GiveUp(format!(
            "{n} remediations in the last hour (the limit is {}; [supervise] max_remediations_per_hour)",
            p.max_per_hour
        ));
    }
    if let Some(at) = next_allowed(s.recent_ms, p) {
        if s.now_ms < at {
            return Decision::Wait(format!(
                "backoff: next remediation in {}s",
                secs(at - s.now_ms)
            ));
        }
    }
    Decision::Act(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        remediate: true,
        restart_grace_ms: 60_000,
        reboot_grace_ms: 120_000,
        restore_backup: false,
        max_per_hour: 5,
        backoff_initial_ms: 30_000,
        backoff_max_ms: 900_000,
    };

    fn incident(actions: &[(Action, i64)]) -> IncidentRec {
        IncidentRec {
            id: "1".into(),
            started_ms: 0,
            reason: "HTTP 503".into(),
            actions: actions
                .iter()
                .map(|(a, t)| ActionRec {
                    action: *a,
                    at_ms: *t,
                    op: None,
                })
                .collect(),
            gave_up: false,
        }
    }

    fn up() -> CtInfo {
        CtInfo {
            running: true,
            lock: None,
        }
    }

    fn sit<'a>(
        ct: Option<&'a CtInfo>,
        inc: &'a IncidentRec,
        recent: &'a [i64],
        now: i64,
    ) -> Situation<'a> {
        Situation {
            state: HealthState::Unhealthy,
            intended_running: true,
            ct,
            busy: None,
            incident: Some(inc),
            recent_ms: recent,
            now_ms: now,
        }
    }

    #[test]
    fn the_ladder_climbs_restart_reboot_give_up() {
        let ct = up();
        let i0 = incident(&[]);
        assert_eq!(
            decide(&sit(Some(&ct), &i0, &[], 0), &P),
            Decision::Act(Action::RestartService)
        );
        let i1 = incident(&[(Action::RestartService, 0)]);
        assert!(
            matches!(decide(&sit(Some(&ct), &i1, &[0], 59_000), &P), Decision::Wait(w) if w.contains("grace after restart_service"))
        );
        assert_eq!(
            decide(&sit(Some(&ct), &i1, &[0], 60_000), &P),
            Decision::Act(Action::Reboot)
        );
        let i2 = incident(&[(Action::RestartService, 0), (Action::Reboot, 60_000)]);
        assert!(matches!(
            decide(&sit(Some(&ct), &i2, &[0, 60_000], 100_000), &P),
            Decision::Wait(_)
        ));
        assert!(
            matches!(decide(&sit(Some(&ct), &i2, &[0, 60_000], 180_000), &P), Decision::GiveUp(w) if w.contains("restart_service, reboot"))
        );
        // With restore on, a restore comes before giving up.
        let p = Policy {
            restore_backup: true,
            ..P
        };
        assert_eq!(
            decide(&sit(Some(&ct), &i2, &[0, 60_000], 180_000), &p),
            Decision::Act(Action::RestoreBackup)
        );
    }

    #[test]
    fn a_stopped_container_is_started_twice_at_most() {
        let down = CtInfo {
            running: false,
            lock: None,
        };
        let i0 = incident(&[]);
        assert_eq!(
            decide(&sit(Some(&down), &i0, &[], 0), &P),
            Decision::Act(Action::Start)
        );
        let i2 = incident(&[(Action::Start, 0), (Action::Start, 200_000)]);
        assert!(matches!(
            decide(&sit(Some(&down), &i2, &[], 400_000), &P),
            Decision::GiveUp(_)
        ));
    }

    #[test]
    fn never_against_the_user_a_lock_or_an_operation() {
        let ct = up();
        let i0 = incident(&[]);
        let mut s = sit(Some(&ct), &i0, &[], 0);
        s.intended_running = false;
        assert_eq!(decide(&s, &P), Decision::Nothing);
        let locked = CtInfo {
            running: false,
            lock: Some("backup".into()),
        };
        assert!(
            matches!(decide(&sit(Some(&locked), &i0, &[], 0), &P), Decision::Wait(w) if w.contains("'backup'"))
        );
        let mut s = sit(Some(&ct), &i0, &[], 0);
        s.busy = Some("abc");
        assert!(matches!(decide(&s, &P), Decision::Wait(w) if w.contains("operation abc")));
        assert_eq!(
            decide(&sit(None, &i0, &[], 0), &P),
            Decision::Nothing,
            "vanished: nothing to act on"
        );
        let off = Policy {
            remediate: false,
            ..P
        };
        assert_eq!(
            decide(&sit(Some(&ct), &i0, &[], 0), &off),
            Decision::Nothing
        );
        let mut s = sit(Some(&ct), &i0, &[], 0);
        s.state = HealthState::Degraded;
        assert_eq!(decide(&s, &P), Decision::Nothing);
    }

    #[test]
    fn rate_limit_and_exponential_backoff() {
        let ct = up();
        let i0 = incident(&[]);
        // Three actions in the last hour: the next waits 30 s · 2² = 120 s.
        let recent = [0, 1_000, 2_000];
        assert_eq!(next_allowed(&recent, &P), Some(122_000));
        assert!(
            matches!(decide(&sit(Some(&ct), &i0, &recent, 100_000), &P), Decision::Wait(w) if w.contains("backoff"))
        );
        assert_eq!(
            decide(&sit(Some(&ct), &i0, &recent, 122_000), &P),
            Decision::Act(Action::RestartService)
        );
        let full = [0, 1, 2, 3, 4];
        assert!(
            matches!(decide(&sit(Some(&ct), &i0, &full, 3_000_000), &P), Decision::GiveUp(w) if w.contains("max_remediations_per_hour"))
        );
        // The cap.
        let many: Vec<i64> = (0..20).collect();
        assert_eq!(next_allowed(&many, &P), Some(19 + 900_000));
        let mut l = LadderRec {
            recent_ms: vec![0, 3_600_000, 3_700_000],
            ..Default::default()
        };
        l.prune(3_700_000);
        assert_eq!(l.recent_ms, vec![3_600_000, 3_700_000]);
    }
}
