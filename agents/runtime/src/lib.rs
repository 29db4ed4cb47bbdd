//! The runtime every 1ld in-container agent shares.
//!
//! An agent is a binary pushed into a Debian LXC container together with a
//! rendered config, a secrets file and a systemd unit; nothing is installed
//! inside the container. This crate gives such a binary everything except its
//! own work:
//!
//! - [`config`]: the agent's TOML config (`deny_unknown_fields`, errors that
//!   name file, line and key) and the runtime's own `[service]` section;
//! - [`secrets`]: the separate secrets file (mode 0600/0400, owned by the
//!   running user) and the [`Secret`] type that never prints its value;
//! - [`health`]: named checks, the `/health` document and its status rules;
//! - [`worker`]: the [`Worker`] trait and the work loop (timer with jitter,
//!   on-demand triggers, per-cycle timeout, cancellation at safe points);
//! - [`server`]: the HTTP endpoints (`/health` and the agent's status path);
//! - [`http_client`]: a small plain-HTTP client for upstream APIs;
//! - [`cli`], [`logging`], [`notify`]: command line, journald/stderr logging,
//!   `sd_notify` readiness and watchdog;
//! - [`run`]: ties it together ([`run::main`] is an agent binary's `main`).
//!
//! Invariant: secret values never reach a log line, an error message, `/health`
//! or the status document; the only way to read one is [`Secret::expose`].

pub mod cli;
pub mod config;
pub mod health;
pub mod http_client;
pub mod logging;
pub mod notify;
pub mod run;
pub mod secrets;
pub mod server;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod worker;

pub use config::{ServiceConfig, ServiceSettings};
pub use health::{Check, CheckOutcome, Checks, Health, HealthReport, Reporter};
pub use run::{Agent, AgentInfo, BuildError, Setup};
pub use secrets::Secret;
pub use worker::{CycleContext, CycleError, CycleReport, TriggerHandle, TriggerReason, Worker};
