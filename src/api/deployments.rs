//! Wire types of apps and deployments (`/v1/apps`, `/v1/deployments`).
//!
//! Invariants: plain data (serde + OpenAPI schemas), no I/O. Requests reject
//! unknown fields. Setting values travel as JSON values (string, bool,
//! integer, or a list of strings for `cidr_list`) and are typed by the app's
//! schema on the daemon side; secret values never leave the daemon (they are
//! shown as `"***"`). Memory and swap are MiB, disk is GiB, times are RFC 3339
//! UTC strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// What a secret value is shown as wherever a deployment is displayed.
pub const SECRET_MASK: &str = "***";

/// Names the API reserves under `/v1/deployments/` (not usable as deployment names).
pub const RESERVED_NAMES: &[&str] = &["adopt", "unmanaged"];

/// Per-deployment changes to the app's container defaults. Every field is
/// optional; an absent field means the app's default (deploy) or the
/// current value (apply).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// CPU cores.
    pub cores: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u32>,
    /// Swap in MiB.
    pub swap: Option<u32>,
    /// Root disk size in GiB.
    pub disk: Option<u32>,
    /// A fixed vmid instead of the lowest free one in the app's range; must
    /// be free cluster-wide.
    pub vmid: Option<u32>,
    /// Storage for the root disk (content type `rootdir`).
    pub storage: Option<String>,
    /// Linux bridge of `net0`.
    pub bridge: Option<String>,
    /// IPv4: `dhcp` or a static address in CIDR form (`192.168.1.50/24`).
    pub ip: Option<String>,
    /// IPv4 gateway for a static `ip`.
    pub gw: Option<String>,
    /// IPv6: `auto`, `dhcp`, `none` or a static address in CIDR form.
    pub ip6: Option<String>,
    /// Start the container when the node boots.
    pub onboot: Option<bool>,
    /// Serve the app through nginx inside the container, on port 80 in front
    /// of the service port (the app's `[proxy]`; the packages come from the
    /// host). Default: the app's `proxy.enabled` (off for the built-ins).
    /// Chosen at deploy; apply refuses a different value (400 naming
    /// `overrides.proxy`).
    pub proxy: Option<bool>,
    /// Probe timing and thresholds for this deployment (unset fields: the
    /// app's `[supervise]`, then `[supervise]` in `1ld.toml`). Apply changes
    /// only the fields given.
    pub supervise: Option<crate::api::SuperviseOverrides>,
}

/// `POST /v1/deployments`: deploy an app into a new container.
///
/// Answer: `202` + `Location` of the `deploy` operation, or `200` + [`Plan`]
/// when `dry_run` is set. Every validation problem is reported at once
/// (`400`, one line per field).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// The app's name (`GET /v1/apps`).
    pub app: String,
    /// The deployment's name: a DNS label (lower-case letters, digits and
    /// `-`, at most 63), unique among deployments; also the container's
    /// hostname. Default: the app's name.
    #[serde(default)]
    pub name: Option<String>,
    /// Non-secret settings, by key (see the app's settings schema).
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Value>)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Secret settings, by key (the schema marks them `secret`); stored in
    /// the daemon's secrets directory, never echoed back.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Changes to the app's container defaults.
    #[serde(default)]
    pub overrides: Overrides,
    /// The backup policy (unset fields: `[backup]` in `1ld.toml`).
    #[serde(default)]
    pub backup: Option<crate::api::BackupPolicy>,
    /// Validate and return the [`Plan`] without changing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// On failure, leave the container for inspection instead of destroying it.
    #[serde(default)]
    pub keep_on_failure: bool,
}

/// `PUT /v1/deployments/{name}`: create the deployment if it does not exist,
/// otherwise converge it to this spec.
///
/// `settings` is the complete desired set (absent keys go back to their
/// defaults); absent `secrets` keep their stored values; absent `overrides`
/// fields keep their current values. Answer: `202` + `Location` of the
/// operation (`deploy` or `apply`), `200` + [`ApplyPreview`] when `dry_run`
/// is set, or `200` + the deployment when nothing would change.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The app; must match the deployment's app when it exists.
    pub app: String,
    /// The complete desired non-secret settings.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, Value>)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// Secret settings to set or change; absent keys keep their values.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Resource changes; absent fields keep their current values.
    #[serde(default)]
    pub overrides: Overrides,
    /// Backup policy changes; absent fields keep their current values.
    #[serde(default)]
    pub backup: Option<crate::api::BackupPolicy>,
    /// Return what would change without changing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// When this creates the deployment: on failure, keep the container.
    #[serde(default)]
    pub keep_on_failure: bool,
}

/// `POST /v1/deployments/adopt`: record an existing container (for example
/// one made by the original 1-line-deploy scripts) as a deployment without
/// reinstalling anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// The container's id on this node.
    pub vmid: u32,
    /// The app it runs.
    pub app: String,
    /// The deployment's name; default: the container's hostname.
    #[serde(default)]
    pub name: Option<String>,
}

/// Query of `GET /v1/deployments/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeploymentQuery {
    /// Ask the host now (`pct status`, the container's address) and probe
    /// the app once, recording what changed; default false: the recorded
    /// deployment with the container state of the shared host snapshot (at
    /// most a second old), cheap enough to poll.
    #[serde(default)]
    pub live: bool,
}

/// Query of `DELETE /v1/deployments/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove the container from backup jobs, replication and HA
    /// (`pct destroy --purge`). Backups themselves are always kept.
    pub purge: Option<bool>,
}

/// Query of `GET /v1/deployments/{name}/logs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the newest journal entries to send first; default
    /// [`LOG_LINES_DEFAULT`], at most [`LOG_LINES_MAX`]; 0 with `follow`
    /// sends only new entries.
    pub lines: Option<u32>,
    /// Keep the stream open and send new entries as they are written
    /// (until the client disconnects, the container stops or the daemon
    /// shuts down). Default false.
    pub follow: Option<bool>,
}

/// Entries `GET /v1/deployments/{name}/logs` sends when `lines` is not given.
pub const LOG_LINES_DEFAULT: u32 = 50;
/// Most entries `lines` may ask for.
pub const LOG_LINES_MAX: u32 = 10_000;

/// One journal entry of the deployment's service, a line of
/// `GET /v1/deployments/{name}/logs` (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// When journald received it (RFC 3339 UTC, microseconds).
    pub time: String,
    /// The message, secrets replaced by `***`; invalid UTF-8 replaced.
    pub line: String,
    /// syslog priority (0 emerg … 7 debug), when the entry has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// What a deploy would do: the answer to a dry run, and what the `deploy`
/// operation follows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Plan {
    /// The app.
    pub app: String,
    /// The app's version.
    pub app_version: String,
    /// The deployment's name (and container hostname).
    pub name: String,
    /// The node it goes on.
    pub node: String,
    /// The vmid: the fixed one, or the lowest free one in the app's range
    /// right now (the operation allocates again, under a lock).
    pub vmid: u32,
    /// The template volume id (`local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`).
    pub template: String,
    /// Whether the template must be downloaded first.
    pub template_download: bool,
    /// The exact `pct create` argv, secrets redacted.
    pub pct_create: Vec<String>,
    /// Files installed into the container.
    pub files: Vec<PlanFile>,
    /// The steps, in order.
    pub steps: Vec<String>,
    /// The effective settings (secrets as `"***"`).
    #[schema(value_type = BTreeMap<String, Value>)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The hash of the rendered configuration.
    pub config_hash: String,
    /// Things worth knowing that do not stop the deploy.
    pub warnings: Vec<String>,
}

/// A file a deploy installs into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanFile {
    /// Absolute path inside the container.
    pub path: String,
    /// Where it comes from: `agent:<file>` (the host's agents directory),
    /// `template:<name>` (rendered from settings) or `unit`.
    pub source: String,
    /// Octal mode (`0600`).
    pub mode: String,
    /// Owner inside the container (`root`, the service user).
    pub owner: String,
    /// Holds secret values.
    pub secret: bool,
}

/// What the user asked the deployment's container to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntendedState {
    /// Should run (supervision may restart it).
    Running,
    /// Stopped on purpose; supervision leaves it alone.
    Stopped,
}

/// What the container is, as last seen on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContainerState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// The container no longer exists.
    Missing,
    /// Could not be read (tools down, container locked, ...).
    Unknown,
}

/// The service's health as its probe reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Working.
    Healthy,
    /// Working with a problem (for the agents: the upstream is unreachable).
    Degraded,
    /// Not working.
    Unhealthy,
    /// Not probed yet, or the probe could not run.
    Unknown,
}

/// The last health probe of a deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HealthSummary {
    /// The status.
    pub status: HealthStatus,
    /// When it was probed.
    pub checked_at: Option<String>,
    /// What the probe saw (status code, reason).
    pub detail: Option<String>,
}

/// The resources a deployment's container has (as recorded, i.e. intended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Resources {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// Swap in MiB.
    pub swap: u32,
    /// Root disk in GiB.
    pub disk: u32,
    /// Root disk storage.
    pub storage: String,
    /// Bridge of `net0`.
    pub bridge: String,
    /// IPv4 setting (`dhcp` or CIDR).
    pub ip: String,
    /// IPv4 gateway, for a static address.
    pub gw: Option<String>,
    /// IPv6 setting (`auto`, `dhcp`, `none`, CIDR).
    pub ip6: String,
    /// Start at boot.
    pub onboot: bool,
}

/// One difference between the recorded spec and the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drift {
    /// What differs: `cores`, `memory`, `swap`, `net0`, `tags`, `onboot`, `container`.
    pub field: String,
    /// The recorded value.
    pub expected: String,
    /// The container's value (`missing` when the container is gone).
    pub actual: String,
}

/// A deployment: an app running in its own container, recorded by 1ld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    /// Its name (the container's hostname).
    pub name: String,
    /// The app.
    pub app: String,
    /// The app version installed.
    pub app_version: String,
    /// The container id.
    pub vmid: u32,
    /// The node.
    pub node: String,
    /// What the user asked for.
    pub intended_state: IntendedState,
    /// What the container is now (live when read singly; as last seen in lists).
    pub state: ContainerState,
    /// The container's IPv4 address, when known.
    pub ip: Option<String>,
    /// The last health probe.
    pub health: HealthSummary,
    /// Settings (secrets as `"***"`).
    #[schema(value_type = BTreeMap<String, Value>)]
    pub settings: BTreeMap<String, serde_json::Value>,
    /// The recorded container resources.
    pub resources: Resources,
    /// Hash of the rendered configuration.
    pub config_hash: String,
    /// Recorded by adopting an existing container rather than deploying.
    pub adopted: bool,
    /// When it was created (or adopted).
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// When its last backup finished, if any.
    pub last_backup: Option<String>,
    /// Differences between the recorded spec and the container, from the
    /// last drift check (empty = none).
    pub drift: Vec<Drift>,
    /// What supervision concluded (`null`: not supervised yet).
    #[serde(default)]
    pub supervision: Option<crate::api::SupervisionSummary>,
    /// Probe timing and thresholds chosen for this deployment (unset: the app's, then `1ld.toml`'s).
    #[serde(default)]
    pub supervise: crate::api::SuperviseOverrides,
}

/// A change `apply` would make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    /// `cores`, `memory`, `swap`, `disk`, `onboot`, `net0`, `settings.<key>`, `secrets.<key>`.
    pub field: String,
    /// The current value (secrets as `"***"`).
    pub from: String,
    /// The new value (secrets as `"***"`).
    pub to: String,
}

/// The answer to `PUT /v1/deployments/{name}` with `dry_run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyPreview {
    /// The deployment.
    pub name: String,
    /// Set when the deployment does not exist yet: the deploy plan.
    pub create: Option<Plan>,
    /// The changes to an existing deployment (empty: already converged).
    pub changes: Vec<Change>,
    /// The steps apply would run.
    pub steps: Vec<String>,
}

/// A container tagged `1ld` that no deployment records (startup
/// reconciliation reports these; 1ld never destroys them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnmanagedContainer {
    /// Container id.
    pub vmid: u32,
    /// Its hostname (or name), where known.
    pub name: Option<String>,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its status (`running`, `stopped`).
    pub status: String,
    /// The app it looks like (from a `1ld-<app>` tag or the hostname), if any.
    pub app: Option<String>,
}

/// The kind of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// Any text (single line).
    String,
    /// An `http://` or `https://` URL.
    Url,
    /// A list of networks in CIDR form (`["10.0.0.0/24"]` or `"10.0.0.0/24,10.1.0.0/16"`).
    CidrList,
    /// A duration (`30s`, `5m`, `1h`, `1d`).
    Duration,
    /// `true` / `false`.
    Bool,
    /// An integer (with optional bounds).
    Int,
}

/// One key of an app's settings schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SettingInfo {
    /// The key.
    pub key: String,
    /// Its kind.
    pub kind: SettingKind,
    /// What it means.
    pub description: String,
    /// Must be given (no default).
    pub required: bool,
    /// The default, if any (never shown for secrets).
    #[schema(value_type = Option<Value>)]
    pub default: Option<serde_json::Value>,
    /// Given in `secrets`, stored apart, shown as `"***"`.
    pub secret: bool,
    /// Smallest allowed value (`int`).
    pub min: Option<i64>,
    /// Largest allowed value (`int`).
    pub max: Option<i64>,
}

/// The container an app gets by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppContainer {
    /// CPU cores.
    pub cores: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// Swap in MiB.
    pub swap: u32,
    /// Root disk in GiB.
    pub disk: u32,
    /// Lowest vmid it may get.
    pub vmid_min: u32,
    /// Highest vmid it may get.
    pub vmid_max: u32,
    /// Template family (`debian-12-standard`); the newest matching file is used.
    pub template: String,
    /// Unprivileged container.
    pub unprivileged: bool,
    /// `pct` features (`nesting=1`).
    pub features: Vec<String>,
    /// Tags (always includes `1ld` and `1ld-<app>`).
    pub tags: Vec<String>,
    /// Bridge.
    pub bridge: String,
    /// IPv4 (`dhcp` or CIDR).
    pub ip: String,
    /// IPv6 (`auto`, `dhcp`, `static`, `none`).
    pub ip6: String,
    /// Start at boot.
    pub onboot: bool,
}

/// An app of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppInfo {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its version.
    pub version: String,
    /// `builtin`, or the manifest file it came from.
    pub source: String,
    /// Container defaults.
    pub container: AppContainer,
    /// The settings schema.
    pub settings: Vec<SettingInfo>,
    /// The service user inside the container.
    pub user: String,
    /// TCP ports the service listens on.
    pub ports: Vec<u16>,
    /// The health probe, in words (`http :8080/health expect 200`).
    pub health: String,
    /// Health states the deploy gate accepts (`healthy`, and `degraded` if the manifest allows it).
    pub health_accept: Vec<HealthStatus>,
    /// The status endpoint, if the app has one (`:8080/status`).
    pub status_path: Option<String>,
}

/// A manifest file that could not be loaded; the other apps still load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AppLoadError {
    /// The file.
    pub file: String,
    /// The line (1-based), where known.
    pub line: Option<u32>,
    /// The key, where known (`container.cores`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// `GET /v1/apps`: the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppCatalog {
    /// Apps, sorted by name (a user manifest overrides a built-in of the same name).
    pub apps: Vec<AppInfo>,
    /// Manifest files that failed to load.
    pub errors: Vec<AppLoadError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deploy_request_minimal_and_unknown_field() {
        let r: DeployRequest = serde_json::from_str(r#"{"app":"netbox-agent"}"#).unwrap();
        assert_eq!(r.app, "netbox-agent");
        assert!(!r.dry_run);
        let e = serde_json::from_str::<DeployRequest>(r#"{"app":"x","bogus":1}"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = serde_json::from_str::<DeployRequest>(r#"{"app":"x","overrides":{"cpu":1}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("cpu"), "{e}");
    }

    #[test]
    fn enums_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&SettingKind::CidrList).unwrap(),
            "\"cidr_list\""
        );
        assert_eq!(
            serde_json::to_string(&IntendedState::Stopped).unwrap(),
            "\"stopped\""
        );
    }
}
