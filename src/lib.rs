//! 1ld: run homelab services on Proxmox VE.
//!
//! The library holds everything the daemon (`1ldd`) and the client (`1ldctl`)
//! share. Module map (see `docs/architecture.md`):
//! - [`pve`]: typed wrappers over the Proxmox command-line tools and pure
//!   parsers of their output; every external command goes through
//!   [`pve::runner`].
//! - [`config`]: the daemon's typed TOML configuration.
//! - [`api`]: wire types shared by daemon and client.
//! - [`error`]: the daemon's one error type.
//! - [`paths`]: every filesystem path, overridable for tests.
//! - [`store`]: the SQLite state database (migrations, integrity, typed queries).
//! - [`secrets`]: root-only secret files and the [`secrets::Redactor`].
//! - [`events`]: the bounded event bus (`GET /v1/events`).
//! - [`ops`]: operations (submit, progress, log, cancel, compensation, locks, recovery) and their kinds.
//! - [`apps`]: the app catalog (manifests, settings schema, rendering).
//! - [`deploy`]: deployments (validation, plan, install, health gate, drift).
//! - [`notify`]: alerts, the durable notification queue and its targets.
//! - [`supervise`]: probes, health states, the escalation ladder, health history.
//! - [`schedule`]: Proxmox calendar-event schedules (parse, normalize, next run).
//! - [`server`]: the API server on the Unix socket (roles, errors, handlers, OpenAPI).
//! - [`client`]: `1ldctl`, the client of that socket (commands, rendering, exit codes).

pub mod api;
pub mod apps;
pub mod backup;
pub mod client;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod error;
pub mod events;
pub mod metrics;
pub mod notify;
pub mod ops;
pub mod paths;
pub mod pve;
pub mod schedule;
pub mod secrets;
pub mod server;
pub mod store;
pub mod supervise;
