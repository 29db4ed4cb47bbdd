//! The app manifest: its TOML format, parsing and validation.
//!
//! Invariants: a [`Manifest`] that [`parse`] returns is internally
//! consistent — names are DNS labels, the vmid range is valid, every file
//! has an absolute, traversal-free path, every template placeholder names a
//! declared setting or a built-in variable, secret settings only appear in
//! files marked `secret`, and the health probe is complete. Errors carry
//! the file's line and the dotted key where known. The format is documented
//! in `docs/apps.md`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::render::{self, Template};
use super::settings::SettingDef;
use crate::api::{HealthStatus, SettingKind};

/// Variables every template may use besides the app's settings.
pub const BUILTIN_VARS: &[&str] = &["name", "app", "app_version", "user"];

/// Largest manifest file accepted (bytes).
pub const MAX_MANIFEST_BYTES: usize = 256 * 1024;

/// A parsed, validated manifest.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The app's name: a DNS label, unique in the catalog.
    pub name: String,
    /// One line saying what it is.
    pub description: String,
    /// The app's version (recorded on each deployment).
    pub version: String,
    /// Container defaults.
    pub container: ContainerDef,
    /// The service inside the container.
    pub service: ServiceDef,
    /// The settings schema, by key.
    #[serde(default)]
    pub settings: BTreeMap<String, SettingDef>,
    /// Directories to create before the files.
    #[serde(default)]
    pub dirs: Vec<DirDef>,
    /// Files to install.
    #[serde(default)]
    pub files: Vec<FileDef>,
    /// The health probe.
    pub health: HealthDef,
    /// Data paths and the pre-backup hook (used by backups).
    #[serde(default)]
    pub data: DataDef,
    /// How to upgrade in place.
    #[serde(default)]
    pub upgrade: UpgradeDef,
    /// The optional nginx reverse proxy in the container.
    #[serde(default)]
    pub proxy: ProxyDef,
    /// Supervision timing and thresholds for this app (unset: `1ld.toml`'s).
    #[serde(default)]
    pub supervise: crate::api::SuperviseOverrides,
}

/// `[proxy]`: nginx in the container, serving `port` in front of the
/// service port (health and status passed through). Off unless `enabled`
/// or a deploy's `overrides.proxy` turns it on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyDef {
    /// On by default for this app (default false: many homelabs run one
    /// central proxy).
    #[serde(default)]
    pub enabled: bool,
    /// The port nginx listens on (default 80).
    #[serde(default = "default_proxy_port")]
    pub port: u16,
    /// The service port it forwards to on 127.0.0.1 (default: the health
    /// probe's port, else the first of `service.ports`).
    #[serde(default)]
    pub upstream_port: Option<u16>,
}

impl Default for ProxyDef {
    fn default() -> Self {
        Self {
            enabled: false,
            port: default_proxy_port(),
            upstream_port: None,
        }
    }
}

/// `[container]`: what the app's container gets by default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerDef {
    /// CPU cores (1–512).
    pub cores: u32,
    /// Memory in MiB (at least 16).
    pub memory: u32,
    /// Swap in MiB.
    #[serde(default)]
    pub swap: u32,
    /// Root disk in GiB (at least 1).
    pub disk: u32,
    /// `[min, max]` vmids the app may get.
    pub vmid_range: [u32; 2],
    /// Template family: the newest `<family>_*.tar.*` is used (`debian-12-standard`).
    pub template: String,
    /// Unprivileged (default true).
    #[serde(default = "yes")]
    pub unprivileged: bool,
    /// `pct` features, `key=value` (`nesting=1`); nesting is needed by systemd.
    #[serde(default = "default_features")]
    pub features: Vec<String>,
    /// Extra tags (`1ld` and `1ld-<app>` are always added).
    #[serde(default)]
    pub tags: Vec<String>,
    /// Bridge of `net0` (default `vmbr0`).
    #[serde(default = "default_bridge")]
    pub bridge: String,
    /// IPv4: `dhcp` or a static CIDR (default `dhcp`).
    #[serde(default = "default_ip")]
    pub ip: String,
    /// IPv6: `auto`, `dhcp`, `static` (address given per deployment) or `none`.
    #[serde(default = "default_ip6")]
    pub ip6: String,
    /// Start at boot (default true).
    #[serde(default = "yes")]
    pub onboot: bool,
}

/// `[service]`: the service inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// The system user it runs as (created with `useradd --system`).
    pub user: String,
    /// The systemd unit name (`netbox-agent.service`).
    pub unit: String,
    /// TCP ports it listens on.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// `[[dirs]]`: a directory created with `install -d`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirDef {
    /// Absolute path inside the container.
    pub path: String,
    /// Octal mode (`"0750"`).
    #[serde(default = "default_dir_mode")]
    pub mode: String,
    /// Owner (`root` or the service user).
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Group.
    #[serde(default = "default_owner")]
    pub group: String,
}

/// `[[files]]`: a file pushed into the container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// Absolute path inside the container.
    pub path: String,
    /// A binary from the host's agents directory (`[apps] agents_dir`), by file name.
    #[serde(default)]
    pub agent: Option<String>,
    /// Text rendered from settings (`{{ key }}`, see `docs/apps.md`).
    #[serde(default)]
    pub template: Option<String>,
    /// Octal mode (`"0644"`).
    #[serde(default = "default_file_mode")]
    pub mode: String,
    /// Owner inside the container.
    #[serde(default = "default_owner")]
    pub owner: String,
    /// Group inside the container.
    #[serde(default = "default_owner")]
    pub group: String,
    /// Holds secret values: must be mode 0600/0400 and owned by the service user.
    #[serde(default)]
    pub secret: bool,
}

/// How the health probe reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// HTTP GET from the host to `<ip>:<port><path>`.
    Http,
    /// A TCP connect from the host to `<ip>:<port>`.
    Tcp,
    /// A command run inside the container (`pct exec`): exit 0 healthy,
    /// 1 degraded, anything else unhealthy.
    Exec,
}

/// `[health]`: the probe and what the deploy gate accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDef {
    /// The probe kind.
    pub kind: ProbeKind,
    /// Port (`http`, `tcp`).
    #[serde(default)]
    pub port: Option<u16>,
    /// Path (`http`), starting with `/`.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP statuses that count as an answer (default `[200]`).
    #[serde(default = "default_expect")]
    pub expect_status: Vec<u16>,
    /// For `http`: a JSON field of the body holding `healthy|degraded|unhealthy`.
    #[serde(default)]
    pub json_field: Option<String>,
    /// For `exec`: the command (argv, no shell).
    #[serde(default)]
    pub command: Vec<String>,
    /// States the deploy gate accepts (default `["healthy"]`). Accepting
    /// `degraded` logs a warning and records the deployment as degraded.
    #[serde(default = "default_accept")]
    pub accept: Vec<HealthStatus>,
    /// How long the gate probes before giving up (seconds, default 60).
    #[serde(default = "default_health_timeout")]
    pub timeout_s: u64,
    /// Pause between probes (milliseconds, default 500).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// The status endpoint shown to users (`/status`), if any.
    #[serde(default)]
    pub status_path: Option<String>,
}

/// `[data]`: what backups must capture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataDef {
    /// Paths inside the container holding state.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Command run inside the container before a backup (argv), if any.
    #[serde(default)]
    pub pre_backup: Vec<String>,
}

/// `[upgrade]`: the upgrade recipe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeDef {
    /// Take a backup before upgrading (default true).
    #[serde(default = "yes")]
    pub backup_first: bool,
    /// Re-push the files, restart the unit, run the health gate; roll back
    /// to the backup when the gate fails (default true).
    #[serde(default = "yes")]
    pub rollback_on_failure: bool,
}

impl Default for UpgradeDef {
    fn default() -> Self {
        Self {
            backup_first: true,
            rollback_on_failure: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_features() -> Vec<String> {
    vec!["nesting=1".to_string()]
}
fn default_bridge() -> String {
    "vmbr0".to_string()
}
fn default_ip() -> String {
    "dhcp".to_string()
}
fn default_ip6() -> String {
    "auto".to_string()
}
fn default_dir_mode() -> String {
    "0755".to_string()
}
fn default_file_mode() -> String {
    "0644".to_string()
}
fn default_owner() -> String {
    "root".to_string()
}
fn default_expect() -> Vec<u16> {
    vec![200]
}
fn default_accept() -> Vec<HealthStatus> {
    vec![HealthStatus::Healthy]
}
fn default_health_timeout() -> u64 {
    60
}
fn default_interval_ms() -> u64 {
    500
}
fn default_proxy_port() -> u16 {
    80
}

/// One problem in a manifest file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default(), key.as_ref().map(|k| format!("key `{k}`: ")).unwrap_or_default())]
pub struct ManifestError {
    /// 1-based line, where known.
    pub line: Option<u32>,
    /// Dotted key, where known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Whether `s` is a DNS label: `[a-z0-9]([a-z0-9-]*[a-z0-9])?`, at most 63.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a safe Linux user name: `[a-z_][a-z0-9_-]*`, at most 32.
pub fn is_user_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase() || c == b'_')
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// Whether `p` is an absolute path inside a container without `..`, `.`,
/// empty components, or characters outside `[A-Za-z0-9._+@-]`.
pub fn is_safe_abs_path(p: &str) -> bool {
    p.len() <= 4096
        && p.starts_with('/')
        && p.len() > 1
        && p[1..].split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'@')
                })
        })
}

/// Parses an octal mode string (`"0640"`), at most `0o7777`.
pub fn parse_mode(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 {
        return None;
    }
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

/// The 1-based line of `key`'s last segment in `text` (best effort: the
/// first line defining it, or its table header).
pub fn line_of(text: &str, key: &str) -> Option<u32> {
    let last = key.rsplit('.').next().unwrap_or(key);
    let last = last.split('[').next().unwrap_or(last);
    let header = format!("[{}]", key.split('[').next().unwrap_or(key));
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(&header)
                || t.strip_prefix(last)
                    .is_some_and(|r| r.trim_start().starts_with('='))
        })
        .and_then(|i| u32::try_from(i + 1).ok())
}

fn line_of_offset(text: &str, offset: usize) -> Option<u32> {
    let upto = text.get(..offset.min(text.len()))?;
    u32::try_from(upto.bytes().filter(|b| *b == b'\n').count() + 1).ok()
}

/// Parses and validates a manifest; every problem found is returned.
pub fn parse(text: &str) -> Result<Manifest, Vec<ManifestError>> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(vec![ManifestError {
            line: None,
            key: None,
            message: format!(
                "{} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}",
                text.len()
            ),
        }]);
    }
    let m: Manifest = toml::from_str(text).map_err(|e| {
        let line = e.span().and_then(|s| line_of_offset(text, s.start));
        let key = e
            .span()
            .and_then(|s| text.get(s.clone()))
            .map(|k| k.trim().trim_matches(['[', ']', '"']).to_string())
            .filter(|k| !k.is_empty() && k.len() < 80 && !k.contains('\n'));
        vec![ManifestError {
            line,
            key,
            message: e.message().to_string(),
        }]
    })?;
    let errors = validate(&m, text);
    if errors.is_empty() {
        Ok(m)
    } else {
        Err(errors)
    }
}

/// Checks what TOML typing cannot; returns every problem.
fn validate(m: &Manifest, text: &str) -> Vec<ManifestError> {
    let mut errs = Vec::new();
    let mut bad = |key: &str, message: String| {
        errs.push(ManifestError {
            line: line_of(text, key),
            key: Some(key.to_string()),
            message,
        })
    };
    if !is_dns_label(&m.name) {
        bad(
            "name",
            format!(
                "'{}' is not a DNS label (a-z, 0-9, '-', at most 63)",
                m.name
            ),
        );
    }
    if m.version.is_empty() || m.version.len() > 64 || m.version.chars().any(char::is_whitespace) {
        bad("version", "must be 1-64 characters without spaces".into());
    }
    let c = &m.container;
    if !(1..=512).contains(&c.cores) {
        bad("container.cores", format!("{} is outside 1..=512", c.cores));
    }
    if c.memory < 16 {
        bad("container.memory", format!("{} MiB; at least 16", c.memory));
    }
    if c.disk == 0 {
        bad("container.disk", "at least 1 GiB".into());
    }
    let [lo, hi] = c.vmid_range;
    if lo < crate::pve::pct::MIN_VMID || hi < lo || hi > crate::pve::pct::MAX_VMID {
        bad(
            "container.vmid_range",
            format!("[{lo}, {hi}]: need 100 <= min <= max <= 999999999"),
        );
    }
    if c.template.is_empty()
        || !c
            .template
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        bad(
            "container.template",
            format!(
                "'{}' is not a template family (e.g. debian-12-standard)",
                c.template
            ),
        );
    }
    for f in &c.features {
        if crate::pve::types::Features::parse(f).is_err() || !f.contains('=') {
            bad(
                "container.features",
                format!("'{f}' is not a pct feature (nesting=1, keyctl=1, fuse=1, ...)"),
            );
        }
    }
    for t in &c.tags {
        if !crate::pve::types::is_valid_tag(t) {
            bad(
                "container.tags",
                format!("'{t}': tags are [a-z0-9_][a-z0-9_+.-]*"),
            );
        }
    }
    if !super::super::deploy::net::is_bridge_name(&c.bridge) {
        bad(
            "container.bridge",
            format!("'{}' is not a bridge name", c.bridge),
        );
    }
    if c.ip != "dhcp" && c.ip.parse::<crate::pve::types::Ipv4Cidr>().is_err() {
        bad(
            "container.ip",
            format!("'{}': use dhcp or a CIDR address", c.ip),
        );
    }
    if !matches!(c.ip6.as_str(), "auto" | "dhcp" | "static" | "none") {
        bad(
            "container.ip6",
            format!("'{}': use auto, dhcp, static or none", c.ip6),
        );
    }
    let s = &m.service;
    if !is_user_name(&s.user) {
        bad(
            "service.user",
            format!("'{}' is not a user name ([a-z_][a-z0-9_-]*)", s.user),
        );
    }
    if !s.unit.ends_with(".service")
        || !s
            .unit
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        bad(
            "service.unit",
            format!("'{}' is not a unit name (<name>.service)", s.unit),
        );
    }
    for (key, def) in &m.settings {
        if !is_setting_key(key) || BUILTIN_VARS.contains(&key.as_str()) {
            bad(
                &format!("settings.{key}"),
                "setting keys are [a-z][a-z0-9_]* and not one of name, app, app_version, user"
                    .into(),
            );
        }
        if let Err(msg) = def.check() {
            bad(&format!("settings.{key}"), msg);
        }
    }
    let owners_ok = |o: &str| o == "root" || o == s.user;
    for (i, d) in m.dirs.iter().enumerate() {
        let k = format!("dirs[{i}]");
        if !is_safe_abs_path(&d.path) {
            bad(
                &format!("{k}.path"),
                format!("'{}' must be an absolute path without '..'", d.path),
            );
        }
        if parse_mode(&d.mode).is_none() {
            bad(
                &format!("{k}.mode"),
                format!("'{}' is not an octal mode", d.mode),
            );
        }
        if !owners_ok(&d.owner) || !owners_ok(&d.group) {
            bad(
                &format!("{k}.owner"),
                format!("owner and group must be root or {}", s.user),
            );
        }
    }
    let mut unit_installed = false;
    for (i, f) in m.files.iter().enumerate() {
        let k = format!("files[{i}]");
        if !is_safe_abs_path(&f.path) {
            bad(
                &format!("{k}.path"),
                format!("'{}' must be an absolute path without '..'", f.path),
            );
        }
        if f.path == format!("/etc/systemd/system/{}", s.unit) {
            unit_installed = true;
        }
        let mode = parse_mode(&f.mode);
        if mode.is_none() {
            bad(
                &format!("{k}.mode"),
                format!("'{}' is not an octal mode", f.mode),
            );
        }
        if !owners_ok(&f.owner) || !owners_ok(&f.group) {
            bad(
                &format!("{k}.owner"),
                format!("owner and group must be root or {}", s.user),
            );
        }
        match (&f.agent, &f.template) {
            (Some(a), None) => {
                if a.is_empty()
                    || a.starts_with('.')
                    || !a
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                {
                    bad(
                        &format!("{k}.agent"),
                        format!("'{a}' must be a plain file name in the agents directory"),
                    );
                }
            }
            (None, Some(t)) => match Template::parse(t) {
                Ok(tpl) => {
                    for var in tpl.vars() {
                        let def = m.settings.get(var);
                        if def.is_none() && !BUILTIN_VARS.contains(&var) {
                            bad(&format!("{k}.template"), format!("unknown variable '{var}' (declare it under [settings] or use one of {BUILTIN_VARS:?})"));
                        }
                        if def.is_some_and(|d| d.secret) && !f.secret {
                            bad(&format!("{k}.template"), format!("secret setting '{var}' may only be rendered into a file with secret = true"));
                        }
                    }
                    for (var, filter) in tpl.uses() {
                        let kind = m.settings.get(var).map(|d| d.kind);
                        if filter == render::Filter::Secs && kind != Some(SettingKind::Duration) {
                            bad(
                                &format!("{k}.template"),
                                format!("'| secs' needs a duration setting; '{var}' is not one"),
                            );
                        }
                    }
                }
                Err(e) => bad(&format!("{k}.template"), e.to_string()),
            },
            _ => bad(&k, "give exactly one of `agent` or `template`".into()),
        }
        if f.secret && (f.owner != s.user || !matches!(mode, Some(0o600 | 0o400))) {
            bad(
                &format!("{k}.secret"),
                format!(
                    "a secret file must be owned by {} with mode 0600 or 0400",
                    s.user
                ),
            );
        }
    }
    if !unit_installed {
        bad(
            "files",
            format!(
                "no file installs the unit at /etc/systemd/system/{}",
                s.unit
            ),
        );
    }
    for (key, msg) in m.supervise.problems("supervise") {
        bad(&key, msg);
    }
    let h = &m.health;
    match h.kind {
        ProbeKind::Http => {
            if h.port.is_none() {
                bad("health.port", "an http probe needs a port".into());
            }
            if !h.path.as_deref().is_some_and(|p| {
                p.starts_with('/') && p.len() < 1024 && p.bytes().all(|b| b.is_ascii_graphic())
            }) {
                bad(
                    "health.path",
                    "an http probe needs a path starting with '/'".into(),
                );
            }
        }
        ProbeKind::Tcp => {
            if h.port.is_none() {
                bad("health.port", "a tcp probe needs a port".into());
            }
        }
        ProbeKind::Exec => {
            if h.command.is_empty() {
                bad(
                    "health.command",
                    "an exec probe needs a command (argv)".into(),
                );
            }
        }
    }
    if h.accept.is_empty()
        || h.accept
            .iter()
            .any(|a| !matches!(a, HealthStatus::Healthy | HealthStatus::Degraded))
    {
        bad(
            "health.accept",
            "list healthy, and degraded if a degraded service may pass the gate".into(),
        );
    }
    if !(1..=3600).contains(&h.timeout_s) {
        bad(
            "health.timeout_s",
            format!("{} is outside 1..=3600", h.timeout_s),
        );
    }
    if !(50..=60_000).contains(&h.interval_ms) {
        bad(
            "health.interval_ms",
            format!("{} is outside 50..=60000", h.interval_ms),
        );
    }
    let px = &m.proxy;
    if px.port == 0 {
        bad("proxy.port", "must be 1-65535".into());
    }
    match m.proxy_upstream() {
        Some(0) => bad("proxy.upstream_port", "must be 1-65535".into()),
        Some(u) if u == px.port => bad(
            "proxy.upstream_port",
            format!("{u} is the proxy's own port; give the service port"),
        ),
        None if px.enabled => bad(
            "proxy.upstream_port",
            "the proxy needs the service port (no health port and no service.ports)".into(),
        ),
        _ => {}
    }
    if s.ports.contains(&px.port) && px.enabled {
        bad("proxy.port", format!("{} is also a service port", px.port));
    }
    for (i, p) in m.data.paths.iter().enumerate() {
        if !is_safe_abs_path(p) {
            bad(
                &format!("data.paths[{i}]"),
                format!("'{p}' must be an absolute path without '..'"),
            );
        }
    }
    errs
}

/// Whether `k` is a setting key: `[a-z][a-z0-9_]*`, at most 64.
pub fn is_setting_key(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && k.len() <= 64
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

impl Manifest {
    /// The service port the proxy forwards to: `[proxy] upstream_port`, else
    /// the HTTP/TCP health port, else the first service port.
    pub fn proxy_upstream(&self) -> Option<u16> {
        self.proxy.upstream_port.or_else(|| {
            matches!(self.health.kind, ProbeKind::Http | ProbeKind::Tcp)
                .then_some(self.health.port)
                .flatten()
                .or_else(|| self.service.ports.first().copied())
        })
    }

    /// The tags every container of this app gets: `1ld`, `1ld-<app>`, then
    /// the manifest's, without duplicates.
    pub fn tags(&self) -> Vec<String> {
        let mut tags = vec!["1ld".to_string(), format!("1ld-{}", self.name)];
        for t in &self.container.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        tags
    }

    /// The probe in words (`http :8080/health expect 200`).
    pub fn probe_text(&self) -> String {
        let h = &self.health;
        match h.kind {
            ProbeKind::Http => format!(
                "http :{}{} expect {}",
                h.port.unwrap_or_default(),
                h.path.as_deref().unwrap_or("/"),
                h.expect_status
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join("|")
            ),
            ProbeKind::Tcp => format!("tcp :{}", h.port.unwrap_or_default()),
            ProbeKind::Exec => format!("exec {}", h.command.join(" ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_paths_modes() {
        assert!(is_dns_label("netbox-agent"));
        assert!(!is_dns_label("-x") && !is_dns_label("X") && !is_dns_label("a_b"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_safe_abs_path("/etc/netbox-agent/config.toml"));
        for p in [
            "etc/x",
            "/etc/../x",
            "/etc//x",
            "/etc/./x",
            "/",
            "/a b",
            "/a;b",
            "/$(x)",
        ] {
            assert!(!is_safe_abs_path(p), "{p}");
        }
        assert_eq!(parse_mode("0640"), Some(0o640));
        assert_eq!(parse_mode("9"), None);
        assert_eq!(parse_mode("17777"), None);
    }

    #[test]
    fn proxy_section_defaults_and_checks() {
        let nb = include_str!("builtin/netbox-agent.toml");
        let m = parse(nb).expect("built-in");
        assert!(!m.proxy.enabled);
        assert_eq!((m.proxy.port, m.proxy_upstream()), (80, Some(8080)));
        let bad = nb.replace(
            "[proxy]\nenabled = false\nport = 80\nupstream_port = 8080",
            "[proxy]\nenabled = true\nport = 8080\nupstream_port = 8080",
        );
        assert_ne!(bad, nb, "the built-in has a [proxy] section");
        let e = parse(&bad).unwrap_err();
        let keys: Vec<_> = e.iter().filter_map(|e| e.key.as_deref()).collect();
        assert!(
            keys.contains(&"proxy.upstream_port") && keys.contains(&"proxy.port"),
            "{e:?}"
        );
        let e = parse(&nb.replace("upstream_port = 8080", "upstream = 1")).unwrap_err();
        assert!(e[0].message.contains("unknown field `upstream`"), "{e:?}");
    }

    #[test]
    fn supervise_section_is_optional_and_checked() {
        let nb = include_str!("builtin/netbox-agent.toml");
        assert!(parse(nb).expect("built-in").supervise.is_empty());
        let m = parse(&format!(
            "{nb}\n[supervise]\ninterval_secs = 30\nunhealthy_after = 5\n"
        ))
        .expect("valid");
        assert_eq!(
            (
                m.supervise.interval_secs,
                m.supervise.unhealthy_after,
                m.supervise.timeout_secs
            ),
            (Some(30), Some(5), None)
        );
        let e = parse(&format!(
            "{nb}\n[supervise]\ninterval_secs = 0\njitter_secs = 99999\n"
        ))
        .unwrap_err();
        let keys: Vec<_> = e.iter().filter_map(|e| e.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec!["supervise.interval_secs", "supervise.jitter_secs"],
            "{e:?}"
        );
        assert!(e[0].line.is_some(), "{e:?}");
        let e = parse(&format!("{nb}\n[supervise]\nevery = 3\n")).unwrap_err();
        assert!(e[0].message.contains("unknown field `every`"), "{e:?}");
    }

    #[test]
    fn syntax_and_unknown_keys_name_the_line() {
        let e = parse("name = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, Some(2), "{e:?}");
        assert!(e[0].message.contains("bogus"), "{e:?}");
    }
}
