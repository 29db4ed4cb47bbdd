//! The health state machine: from consecutive probe outcomes to a
//! [`HealthState`]. Pure: no clock, no I/O (times are passed in).
//!
//! Rules (thresholds from `[supervise]`, the app, the deployment):
//! - `stopped` (the container is stopped and the user wants it so) is taken
//!   at once;
//! - a good outcome (`healthy`, `degraded`) moves to its state after
//!   `healthy_after` consecutive ones — after one when `starting`;
//! - `unhealthy` needs `unhealthy_after` consecutive bad outcomes, and bad
//!   outcomes do not count while `starting` within the start grace;
//! - `unknown` needs `unhealthy_after` consecutive unknowns and never
//!   replaces `unhealthy` or `failed` (not knowing is not a recovery);
//! - `failed` is sticky against bad outcomes; only good ones leave it.

use serde::{Deserialize, Serialize};

use crate::api::{HealthState, ProbeOutcome};

/// The thresholds in force for one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive good outcomes to become healthy/degraded.
    pub healthy_after: u32,
    /// Consecutive bad (or unknown) outcomes to become unhealthy (unknown).
    pub unhealthy_after: u32,
    /// Bad outcomes are ignored this long after entering `starting` (ms).
    pub start_grace_ms: i64,
}

/// The run of identical outcomes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Streak {
    /// The outcome.
    pub outcome: ProbeOutcome,
    /// How many in a row.
    pub count: u32,
}

impl Streak {
    /// Adds `o` to the streak (a different outcome starts a new one).
    pub fn push(streak: Option<Streak>, o: ProbeOutcome) -> Streak {
        match streak {
            Some(s) if s.outcome == o => Streak {
                outcome: o,
                count: s.count.saturating_add(1),
            },
            _ => Streak {
                outcome: o,
                count: 1,
            },
        }
    }
}

/// The state after an outcome: `Some(new)` when it changes.
pub fn next_state(
    state: HealthState,
    since_ms: i64,
    streak: Streak,
    now_ms: i64,
    t: &Thresholds,
) -> Option<HealthState> {
    use HealthState as S;
    let in_grace = state == S::Starting && now_ms - since_ms < t.start_grace_ms;
    let target = match streak.outcome {
        ProbeOutcome::Stopped => S::Stopped,
        ProbeOutcome::Healthy | ProbeOutcome::Degraded => {
            let to = if streak.outcome == ProbeOutcome::Healthy {
                S::Healthy
            } else {
                S::Degraded
            };
            let need = if state == S::Starting {
                1
            } else {
                t.healthy_after
            };
            if streak.count < need {
                return None;
            }
            to
        }
        ProbeOutcome::Unhealthy => {
            if in_grace || state == S::Failed || streak.count < t.unhealthy_after {
                return None;
            }
            S::Unhealthy
        }
        ProbeOutcome::Unknown => {
            if in_grace
                || matches!(state, S::Failed | S::Unhealthy)
                || streak.count < t.unhealthy_after
            {
                return None;
            }
            S::Unknown
        }
    };
    (target != state).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState as S;
    use ProbeOutcome as O;

    const T: Thresholds = Thresholds {
        healthy_after: 2,
        unhealthy_after: 3,
        start_grace_ms: 60_000,
    };

    /// Feeds outcomes one per second from `state` at t=0; returns the states.
    fn run(mut state: HealthState, outcomes: &[ProbeOutcome]) -> Vec<HealthState> {
        let mut since = 0;
        let mut streak = None;
        let mut out = Vec::new();
        for (i, o) in outcomes.iter().enumerate() {
            let now = (i as i64 + 1) * 1000;
            let s = Streak::push(streak, *o);
            streak = Some(s);
            if let Some(n) = next_state(state, since, s, now, &T) {
                state = n;
                since = now;
            }
            out.push(state);
        }
        out
    }

    #[test]
    fn thresholds_stop_flapping() {
        // One bad probe among good ones changes nothing.
        assert_eq!(
            run(
                S::Healthy,
                &[O::Unhealthy, O::Healthy, O::Unhealthy, O::Unhealthy]
            ),
            vec![S::Healthy; 4]
        );
        assert_eq!(
            run(S::Healthy, &[O::Unhealthy, O::Unhealthy, O::Unhealthy]),
            vec![S::Healthy, S::Healthy, S::Unhealthy]
        );
        // Recovery needs two good ones in a row.
        assert_eq!(
            run(
                S::Unhealthy,
                &[O::Healthy, O::Unhealthy, O::Healthy, O::Healthy]
            ),
            vec![S::Unhealthy, S::Unhealthy, S::Unhealthy, S::Healthy]
        );
        assert_eq!(
            run(S::Healthy, &[O::Degraded, O::Degraded, O::Healthy]),
            vec![S::Healthy, S::Degraded, S::Degraded]
        );
    }

    #[test]
    fn starting_takes_the_first_good_and_ignores_bad_in_grace() {
        assert_eq!(run(S::Starting, &[O::Degraded]), vec![S::Degraded]);
        assert_eq!(
            run(S::Starting, &[O::Unhealthy; 5]),
            vec![S::Starting; 5],
            "within the 60 s grace"
        );
        let s = Streak {
            outcome: O::Unhealthy,
            count: 3,
        };
        assert_eq!(
            next_state(S::Starting, 0, s, 61_000, &T),
            Some(S::Unhealthy)
        );
    }

    #[test]
    fn unknown_is_no_recovery_and_failed_is_sticky() {
        assert_eq!(run(S::Unhealthy, &[O::Unknown; 4]), vec![S::Unhealthy; 4]);
        assert_eq!(
            run(S::Healthy, &[O::Unknown; 3]),
            vec![S::Healthy, S::Healthy, S::Unknown]
        );
        assert_eq!(run(S::Failed, &[O::Unhealthy; 5]), vec![S::Failed; 5]);
        assert_eq!(
            run(S::Failed, &[O::Healthy, O::Healthy]),
            vec![S::Failed, S::Healthy]
        );
        assert_eq!(run(S::Healthy, &[O::Stopped]), vec![S::Stopped]);
        assert_eq!(run(S::Stopped, &[O::Stopped]), vec![S::Stopped]);
    }
}
