//! The daemon's configuration: a typed TOML file.
//!
//! Invariants: unknown keys are rejected (`deny_unknown_fields`), a missing
//! file means all defaults, and an invalid file is an error that names the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole daemon configuration (`/etc/1ld/1ld.toml`; every option is
/// listed, commented, with its default in the shipped file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the daemon keeps its state (`state.db`, `secrets/`). Mode 0700.
    pub state_dir: PathBuf,
    /// `[api]`: the Unix socket and who may use it.
    pub api: ApiConfig,
    /// `[pve]`: how the Proxmox tools are run.
    pub pve: PveConfig,
    /// `[ops]`: operations.
    pub ops: OpsConfig,
    /// `[apps]`: app manifests, agent binaries, deploy timeouts.
    pub apps: AppsConfig,
    /// `[supervise]`: health probes, the escalation ladder, health history.
    pub supervise: SuperviseConfig,
    /// `[backup]`: the default backup policy of every deployment.
    pub backup: BackupConfig,
    /// `[upgrade]`: safety points of upgrades.
    pub upgrade: UpgradeConfig,
    /// `[notify]`: notification targets and delivery.
    pub notify: crate::notify::NotifyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from(crate::paths::DEFAULT_STATE_DIR),
            api: ApiConfig::default(),
            pve: PveConfig::default(),
            ops: OpsConfig::default(),
            apps: AppsConfig::default(),
            supervise: SuperviseConfig::default(),
            backup: BackupConfig::default(),
            upgrade: UpgradeConfig::default(),
            notify: crate::notify::NotifyConfig::default(),
        }
    }
}

/// `[api]`: the Unix socket and who may use it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The socket path (ignored under systemd socket activation).
    pub socket: PathBuf,
    /// Members may read (GET); the socket file's group.
    pub group: String,
    /// Members (and root) may change things.
    pub admin_group: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Also serve `GET /metrics` (only that) over TCP at this address for
    /// Prometheus, e.g. `127.0.0.1:9733`. Empty: only on the socket.
    pub metrics_listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(crate::paths::DEFAULT_SOCKET),
            group: "1ld".to_string(),
            admin_group: "1ld-admin".to_string(),
            max_body_bytes: 1 << 20,
            metrics_listen: String::new(),
        }
    }
}

/// `[ops]`: how operations run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// How many heavy operations (vzdump, restore) run at once.
    pub heavy_concurrency: usize,
    /// On SIGTERM, how long running steps get to reach a safe point.
    pub shutdown_grace_secs: u64,
    /// Finished operations (and their logs) are kept this many days.
    pub retention_days: u32,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self {
            heavy_concurrency: 1,
            shutdown_grace_secs: 30,
            retention_days: 30,
        }
    }
}

/// `[pve]`: how the Proxmox command-line tools are run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PveConfig {
    /// Directory holding `pct`, `pveam`, `vzdump`, `pvesm`, `pvesh`,
    /// `pveversion`. Unset: search `PATH`. Tests point it at the sandbox.
    pub bin_dir: Option<PathBuf>,
    /// Timeout in seconds for short commands (list, status, config, set, ...).
    pub command_timeout_secs: u64,
    /// Timeout in seconds for long commands (create, restore, vzdump, download).
    pub long_command_timeout_secs: u64,
    /// This node's name; unset: the short hostname.
    pub node: Option<String>,
}

impl Default for PveConfig {
    fn default() -> Self {
        Self {
            bin_dir: None,
            command_timeout_secs: 120,
            long_command_timeout_secs: 3600,
            node: None,
        }
    }
}

impl PveConfig {
    /// Timeout for short commands.
    pub fn command_timeout(&self) -> Duration {
        Duration::from_secs(self.command_timeout_secs)
    }

    /// Timeout for long commands.
    pub fn long_command_timeout(&self) -> Duration {
        Duration::from_secs(self.long_command_timeout_secs)
    }
}

/// `[apps]`: where manifests and agent binaries are, and deploy bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppsConfig {
    /// User app manifests (`*.toml`), added to the built-ins.
    pub dir: PathBuf,
    /// Agent binaries pushed into containers (`agent = "<file>"` in manifests).
    pub agents_dir: PathBuf,
    /// Root disk storage when a deploy names none.
    pub storage: String,
    /// Storage templates are downloaded to when none holds the app's template.
    pub template_storage: String,
    /// Seconds a new container gets to obtain an IPv4 lease.
    pub lease_timeout_secs: u64,
    /// Seconds between drift checks of every deployment (0: never).
    pub drift_interval_secs: u64,
    /// Where network devices are listed (bridges have a `bridge/` dir); only tests change it.
    pub sys_class_net: PathBuf,
    /// Host cache of the `.deb` files pushed into containers for the optional
    /// nginx proxy (`apt-get download` fills it when a package is missing;
    /// `SHA256SUMS` in it records every file's digest).
    pub packages_dir: PathBuf,
    /// The packages the proxy installs: nginx plus exactly what the Debian 12
    /// standard template lacks for it.
    pub proxy_packages: Vec<String>,
}

impl Default for AppsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(crate::paths::DEFAULT_APPS_DIR),
            agents_dir: PathBuf::from(crate::paths::DEFAULT_AGENTS_DIR),
            storage: "local-lvm".to_string(),
            template_storage: "local".to_string(),
            lease_timeout_secs: 60,
            drift_interval_secs: 300,
            sys_class_net: PathBuf::from("/sys/class/net"),
            packages_dir: PathBuf::from(crate::paths::DEFAULT_PACKAGES_DIR),
            proxy_packages: crate::deploy::proxy::DEFAULT_PACKAGES
                .iter()
                .map(|p| (*p).to_string())
                .collect(),
        }
    }
}

/// Where the supervisor reads the state of every container from, once per tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStateSource {
    /// `files` when `ct_config_dir` exists and `/proc/net/unix` is readable, else `pct-list`.
    Auto,
    /// No subprocess: the container configs in `ct_config_dir` (existence and
    /// `lock:`) and LXC's command sockets in `/proc/net/unix` (running), as
    /// Proxmox's own `pct list` reads them.
    Files,
    /// One `pct list` per tick.
    PctList,
}

/// `[supervise]`: how deployments are watched and repaired. Probe timing and
/// thresholds here are the defaults; an app's `[supervise]` and a
/// deployment's `overrides.supervise` take precedence, field by field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuperviseConfig {
    /// Supervise at all (probes, history, remediation).
    pub enabled: bool,
    /// Seconds between probes of one deployment.
    pub interval_secs: u64,
    /// Seconds one probe may take.
    pub probe_timeout_secs: u64,
    /// Up to this many seconds of random delay per probe, so probes spread out.
    pub jitter_secs: u64,
    /// Consecutive good results that make a deployment healthy again.
    pub healthy_threshold: u32,
    /// Consecutive bad results that make a deployment unhealthy.
    pub unhealthy_threshold: u32,
    /// How many probes run at once.
    pub probe_concurrency: usize,
    /// Where container states come from.
    pub host_state: HostStateSource,
    /// Proxmox's container configs (`<vmid>.conf`) for this node.
    pub ct_config_dir: PathBuf,
    /// LXC's path; a running container has the abstract socket
    /// `@<lxc_path>/<vmid>/command`.
    pub lxc_path: PathBuf,
    /// Act on unhealthy deployments (restart, reboot, start). Off: observe and notify only.
    pub remediate: bool,
    /// Seconds after a service restart before the container is rebooted.
    pub restart_grace_secs: u64,
    /// Seconds after a reboot (or start) before giving up.
    pub reboot_grace_secs: u64,
    /// Restore the last verified backup before giving up (needs backups).
    pub restore_backup: bool,
    /// At most this many remediations per deployment per hour.
    pub max_remediations_per_hour: u32,
    /// First pause between two remediations of one deployment (seconds);
    /// doubles after each one, up to `backoff_max_secs`.
    pub backoff_initial_secs: u64,
    /// Longest pause between two remediations (seconds).
    pub backoff_max_secs: u64,
    /// Healthy this many seconds after an incident resets the ladder.
    pub stable_secs: u64,
    /// Raw probe results are kept this many hours.
    pub history_raw_hours: u32,
    /// Hourly rollups are kept this many days.
    pub history_rollup_days: u32,
}

impl Default for SuperviseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 10,
            probe_timeout_secs: 5,
            jitter_secs: 2,
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            probe_concurrency: 32,
            host_state: HostStateSource::Auto,
            ct_config_dir: PathBuf::from("/etc/pve/lxc"),
            lxc_path: PathBuf::from("/var/lib/lxc"),
            remediate: true,
            restart_grace_secs: 60,
            reboot_grace_secs: 120,
            restore_backup: false,
            max_remediations_per_hour: 5,
            backoff_initial_secs: 30,
            backoff_max_secs: 900,
            stable_secs: 600,
            history_raw_hours: 24,
            history_rollup_days: 30,
        }
    }
}

/// `[backup]`: what a deployment's backup policy is when its spec does not
/// say. Retention goes to `vzdump --prune-backups`, so Proxmox prunes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Storage with content `backup`.
    pub storage: String,
    /// vzdump mode: `snapshot`, `suspend` or `stop`.
    pub mode: crate::api::BackupModeName,
    /// Keep the N newest.
    pub keep_last: u32,
    /// Keep one per hour for N hours.
    pub keep_hourly: u32,
    /// Keep one per day for N days.
    pub keep_daily: u32,
    /// Keep one per ISO week for N weeks.
    pub keep_weekly: u32,
    /// Keep one per month for N months.
    pub keep_monthly: u32,
    /// Keep one per year for N years.
    pub keep_yearly: u32,
    /// Mark new backups protected.
    pub protected: bool,
    /// When every deployment is backed up unless its policy says otherwise,
    /// in Proxmox's calendar-event syntax; empty: only on request.
    pub schedule: String,
    /// A run missed while the daemon or the node was down runs once after
    /// startup, after a random delay of up to this many seconds.
    pub catchup_jitter_secs: u64,
    /// When every deployment's newest backup is verified (restored into a
    /// throwaway container, self-checked, destroyed); empty: only on request.
    pub verify_schedule: String,
    /// Vmids reserved for verification's throwaway containers (inclusive).
    pub verify_vmid_range: [u32; 2],
    /// Also notify successful backups (`backup_succeeded`, severity info);
    /// failures are always notified.
    pub notify_success: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            storage: "local".to_string(),
            mode: crate::api::BackupModeName::Snapshot,
            keep_last: 3,
            keep_hourly: 0,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 3,
            keep_yearly: 0,
            protected: false,
            schedule: String::new(),
            catchup_jitter_secs: 60,
            verify_schedule: String::new(),
            verify_vmid_range: [9900, 9999],
            notify_success: false,
        }
    }
}

/// `[upgrade]`: what happens to an upgrade's safety point.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpgradeConfig {
    /// A safety snapshot is removed once the upgraded deployment has been
    /// healthy this long (seconds); until then `pct rollback` can undo it.
    pub keep_safety_secs: u64,
}

impl Default for UpgradeConfig {
    fn default() -> Self {
        Self {
            keep_safety_secs: 86_400,
        }
    }
}

impl BackupConfig {
    /// As a complete policy (the base of every deployment's).
    pub fn policy(&self) -> crate::api::BackupPolicy {
        crate::api::BackupPolicy {
            storage: Some(self.storage.clone()),
            mode: Some(self.mode),
            keep_last: Some(self.keep_last),
            keep_hourly: Some(self.keep_hourly),
            keep_daily: Some(self.keep_daily),
            keep_weekly: Some(self.keep_weekly),
            keep_monthly: Some(self.keep_monthly),
            keep_yearly: Some(self.keep_yearly),
            protected: Some(self.protected),
            schedule: (!self.schedule.trim().is_empty()).then(|| self.schedule.clone()),
            verify_schedule: (!self.verify_schedule.trim().is_empty())
                .then(|| self.verify_schedule.clone()),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid (the message names the offending key).
    #[error("invalid config file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The TOML error, naming the key and position.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config file {path}: `{key}` {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `pve.command_timeout_secs`.
        key: &'static str,
        /// What is wrong.
        message: &'static str,
    },
}

impl Config {
    /// Parses configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |key, message| ConfigError::Value {
            path: path.to_path_buf(),
            key,
            message,
        };
        if cfg.pve.command_timeout_secs == 0 {
            return Err(bad("pve.command_timeout_secs", "must be at least 1"));
        }
        if cfg.pve.long_command_timeout_secs == 0 {
            return Err(bad("pve.long_command_timeout_secs", "must be at least 1"));
        }
        if cfg.ops.heavy_concurrency == 0 {
            return Err(bad("ops.heavy_concurrency", "must be at least 1"));
        }
        if !cfg.api.metrics_listen.is_empty()
            && cfg
                .api
                .metrics_listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(bad(
                "api.metrics_listen",
                "must be an IP address and port, e.g. \"127.0.0.1:9733\" (or empty: off)",
            ));
        }
        if cfg.api.max_body_bytes < 1024 {
            return Err(bad("api.max_body_bytes", "must be at least 1024"));
        }
        if !cfg.state_dir.is_absolute() {
            return Err(bad("state_dir", "must be an absolute path"));
        }
        if cfg.apps.lease_timeout_secs == 0 {
            return Err(bad("apps.lease_timeout_secs", "must be at least 1"));
        }
        if !cfg.apps.dir.is_absolute() {
            return Err(bad("apps.dir", "must be an absolute path"));
        }
        if !cfg.apps.agents_dir.is_absolute() {
            return Err(bad("apps.agents_dir", "must be an absolute path"));
        }
        if !cfg.apps.packages_dir.is_absolute() {
            return Err(bad("apps.packages_dir", "must be an absolute path"));
        }
        if cfg.apps.proxy_packages.is_empty()
            || !cfg
                .apps
                .proxy_packages
                .iter()
                .all(|p| crate::deploy::proxy::is_package_name(p))
        {
            return Err(bad(
                "apps.proxy_packages",
                "must list Debian package names ([a-z0-9][a-z0-9+.-]+)",
            ));
        }
        if !cfg.api.socket.is_absolute() {
            return Err(bad("api.socket", "must be an absolute path"));
        }
        if let Some((_, msg)) = cfg.backup.policy().problems("backup").into_iter().next() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: msg,
            });
        }
        let [lo, hi] = cfg.backup.verify_vmid_range;
        if lo < 100 || hi < lo || hi > 999_999_999 {
            return Err(bad(
                "backup.verify_vmid_range",
                "must be [first, last] with 100 <= first <= last <= 999999999, e.g. [9900, 9999]",
            ));
        }
        let sv = &cfg.supervise;
        if sv.interval_secs == 0 {
            return Err(bad("supervise.interval_secs", "must be at least 1"));
        }
        if sv.probe_timeout_secs == 0 || sv.probe_timeout_secs > sv.interval_secs.max(1) * 10 {
            return Err(bad(
                "supervise.probe_timeout_secs",
                "must be at least 1 and at most ten intervals",
            ));
        }
        if sv.healthy_threshold == 0 || sv.unhealthy_threshold == 0 {
            return Err(bad(
                "supervise.healthy_threshold",
                "thresholds must be at least 1 (healthy_threshold, unhealthy_threshold)",
            ));
        }
        if sv.probe_concurrency == 0 {
            return Err(bad("supervise.probe_concurrency", "must be at least 1"));
        }
        if !sv.ct_config_dir.is_absolute() || !sv.lxc_path.is_absolute() {
            return Err(bad(
                "supervise.ct_config_dir",
                "ct_config_dir and lxc_path must be absolute paths",
            ));
        }
        if sv.backoff_initial_secs == 0 || sv.backoff_max_secs < sv.backoff_initial_secs {
            return Err(bad(
                "supervise.backoff_initial_secs",
                "must be at least 1 and at most backoff_max_secs",
            ));
        }
        if sv.history_raw_hours == 0 || sv.history_rollup_days == 0 {
            return Err(bad(
                "supervise.history_raw_hours",
                "history_raw_hours and history_rollup_days must be at least 1",
            ));
        }
        cfg.notify.validate().map_err(|e| ConfigError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(cfg)
    }

    /// Loads `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped `packaging/1ld.toml` lists every option with its default:
    /// uncommenting every line must parse and give exactly the defaults.
    #[test]
    fn shipped_file_lists_every_option_with_its_default() {
        let shipped = include_str!("../packaging/1ld.toml");
        assert_eq!(
            Config::parse(shipped, Path::new("1ld.toml")).unwrap(),
            Config::default(),
            "the shipped file, as shipped (all commented), is the defaults"
        );
        let uncommented: String = shipped
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.contains(" = ") && !rest.starts_with(' ') => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut parsed = Config::parse(&uncommented, Path::new("1ld.toml")).unwrap();
        // The two options whose default is "unset" are shown with an example.
        assert_eq!(parsed.pve.bin_dir.take(), Some(PathBuf::from("/usr/sbin")));
        assert_eq!(parsed.pve.node.take(), Some("pve".to_string()));
        assert_eq!(parsed, Config::default());
        // Every key of the struct appears: serialise a config with every
        // option set and look each key up in the file.
        let mut full = Config::default();
        full.pve.bin_dir = Some(PathBuf::from("/usr/sbin"));
        full.pve.node = Some("pve".to_string());
        let table = toml::Value::try_from(&full).unwrap();
        let mut keys = Vec::new();
        for (k, v) in table.as_table().unwrap() {
            match v.as_table() {
                Some(section) => keys.extend(section.keys().cloned()),
                None => keys.push(k.clone()),
            }
        }
        assert!(keys.len() >= 12, "{keys:?}");
        for key in keys {
            assert!(shipped.contains(&format!("#{key} = ")), "{key} missing");
        }
    }

    #[test]
    fn missing_file_is_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&dir.path().join("nope.toml")).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.pve.bin_dir, None);
        assert_eq!(c.pve.command_timeout(), Duration::from_secs(120));
    }

    #[test]
    fn empty_and_full_files() {
        let p = Path::new("1ld.toml");
        assert_eq!(Config::parse("", p).unwrap(), Config::default());
        let c = Config::parse(
            "[pve]\nbin_dir = \"/opt/sandbox/bin\"\ncommand_timeout_secs = 5\nlong_command_timeout_secs = 60\nnode = \"pve\"\n",
            p,
        )
        .unwrap();
        assert_eq!(
            c.pve.bin_dir.as_deref(),
            Some(Path::new("/opt/sandbox/bin"))
        );
        assert_eq!(c.pve.command_timeout_secs, 5);
        assert_eq!(c.pve.node.as_deref(), Some("pve"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::parse("[pve]\nbindir = \"/x\"\n", Path::new("1ld.toml")).unwrap_err();
        assert!(e.to_string().contains("bindir"), "{e}");
        let e = Config::parse("[pvee]\n", Path::new("1ld.toml")).unwrap_err();
        assert!(e.to_string().contains("pvee"), "{e}");
    }

    #[test]
    fn wrong_type_and_range_are_named() {
        let e = Config::parse("[pve]\ncommand_timeout_secs = \"x\"\n", Path::new("c.toml"))
            .unwrap_err();
        assert!(e.to_string().contains("command_timeout_secs"), "{e}");
        let e =
            Config::parse("[pve]\ncommand_timeout_secs = 0\n", Path::new("c.toml")).unwrap_err();
        assert!(e.to_string().contains("pve.command_timeout_secs"), "{e}");
    }
}
