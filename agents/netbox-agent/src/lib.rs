//! netbox-agent as a library: the binary (`src/main.rs`) is
//! `agent_runtime::run::main::<agent::NetboxAgent>()`; the modules are
//! public so the tests and the bench (`examples/bench.rs`) drive the sync and
//! the scanner directly.
//!
//! - [`config`]: config and secrets files;
//! - [`model`]: hosts as the sources report them, and the merge rule;
//! - [`sources`]: inventory files, Proxmox VE, network scan;
//! - [`sync`]: the reconciliation into NetBox;
//! - [`client`]: NetBox REST (pagination, bulk, retries);
//! - [`netbox`]: the `/api/status/` health check;
//! - [`transport`]: http via the runtime, https/wss via rustls (verified);
//! - [`agent`]: the worker that ties them together.

pub mod agent;
pub mod client;
pub mod config;
pub mod model;
pub mod netbox;
pub mod sources;
pub mod sync;
pub mod transport;
