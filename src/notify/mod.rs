//! Notifications: alerts about deployments, queued durably and delivered to
//! the targets configured in `[notify]`.
//!
//! - [`alert`]: what the supervisor (and later backups/upgrades) raise.
//!
//! Invariant: raising an alert is a store insert (one row per target, in one
//! transaction) and never waits for a network; a `dedupe_key` is queued at
//! most once per target, so an incident alerts once even across restarts.

pub mod alert;

pub use alert::{Alert, AlertKind, Severity};

/// Where the supervisor (and later backups/upgrades) hand their alerts.
pub trait AlertSink: Send + Sync {
    /// Queues `alert` for every matching target. Idempotent per
    /// `dedupe_key`; never waits on a network.
    fn raise(&self, alert: &Alert) -> Result<(), crate::error::Error>;
}
