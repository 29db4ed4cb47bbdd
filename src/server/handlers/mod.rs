//! Request handlers; each file mirrors a URL (`/v1/host` → [`host`],
//! `/v1/operations/...` → [`operations`], ...; `/v1/deployments/{name}/logs`
//! → [`logs`]).
//!
//! Invariants: handlers return `Result<_, crate::error::Error>` and never
//! map errors to statuses themselves ([`super::error`] does); each carries
//! a `#[utoipa::path]` listed in [`openapi::ApiDoc`].

pub mod apps;
pub mod backups;
pub mod deployments;
pub mod events;
pub mod health;
pub mod host;
pub mod logs;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod operations;
pub mod root;
pub mod templates;
pub mod upgrades;
