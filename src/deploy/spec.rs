//! From a request to a complete, validated deploy spec and its [`Plan`].
//!
//! Invariants: [`build`] is pure (the host was read into [`HostFacts`]
//! beforehand) and reports every problem at once, each naming the field and
//! what would be valid. A [`DeploySpec`] it returns can be executed without
//! further decisions except the vmid (allocated under a lock by the
//! operation) and the template download.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::facts::{active, HostFacts};
use super::proxy::{self, ProxySpec};
use crate::api::{DeployRequest, Overrides, Plan, PlanFile, Resources, RESERVED_NAMES};
use crate::apps::manifest::{is_dns_label, parse_mode, DirDef, HealthDef};
use crate::apps::render::{fingerprint, Template};
use crate::apps::settings::{resolve, FieldError, Resolved, Setting};
use crate::apps::App;
use crate::config::AppsConfig;
use crate::pve::pct::{CreateSpec, RootfsSpec};
use crate::pve::types::{Features, Ipv4Cidr, Ipv4Config, Ipv6Config, NetSpec};

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// A binary on the host (the agents directory).
    Host(PathBuf),
    /// Rendered text.
    Text(String),
}

/// A file ready to be pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    /// Absolute path inside the container.
    pub path: String,
    /// Its bytes.
    pub content: Content,
    /// Mode bits.
    pub mode: u32,
    /// Owner inside the container.
    pub owner: String,
    /// Group inside the container.
    pub group: String,
    /// Holds secrets.
    pub secret: bool,
    /// `agent:<file>` or `template`, for the plan.
    pub source: String,
}

/// The template to create from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateChoice {
    /// Volume id (`local:vztmpl/<file>`).
    pub volid: String,
    /// Storage and file to download first, when not on a storage yet
    /// (`file` is the family when the index is not known yet).
    pub download: Option<(String, String)>,
}

/// Everything a deploy does, decided.
#[derive(Debug, Clone, PartialEq)]
pub struct DeploySpec {
    /// Deployment name and hostname.
    pub name: String,
    /// The app.
    pub app: String,
    /// Its version.
    pub app_version: String,
    /// The node.
    pub node: String,
    /// A fixed vmid (override), else allocated in `vmid_range`.
    pub fixed_vmid: Option<u32>,
    /// The app's range.
    pub vmid_range: (u32, u32),
    /// The lowest free id right now (for the plan).
    pub vmid_hint: u32,
    /// The template.
    pub template: TemplateChoice,
    /// Resources.
    pub resources: Resources,
    /// Unprivileged container.
    pub unprivileged: bool,
    /// pct features.
    pub features: Features,
    /// Tags.
    pub tags: Vec<String>,
    /// The service user.
    pub user: String,
    /// The unit.
    pub unit: String,
    /// Directories to create.
    pub dirs: Vec<DirDef>,
    /// Files to push.
    pub files: Vec<RenderedFile>,
    /// The health probe.
    pub health: HealthDef,
    /// The settings.
    pub settings: Resolved,
    /// Fingerprint of the rendered files.
    pub config_hash: String,
    /// Keep the container when the deploy fails.
    pub keep_on_failure: bool,
    /// The nginx proxy in front of the service, when on.
    pub proxy: Option<ProxySpec>,
    /// Probe timing and thresholds chosen for this deployment.
    pub supervise: crate::api::SuperviseOverrides,
    /// Backup policy chosen for this deployment.
    pub backup: crate::api::BackupPolicy,
}

/// The steps of a deploy, in order (also the operation's progress names).
pub const STEPS: &[&str] = &[
    "validate",
    "allocate vmid",
    "ensure template",
    "create container",
    "start container",
    "wait for IPv4 lease",
    "install service",
    "start service",
    "health gate",
    "record deployment",
];

/// The text `pct create` gets as `--description`; the marker line lets a
/// compensation recognise the container its operation created.
pub fn description(name: &str, app: &str, version: &str, op_id: &str) -> String {
    format!(
        "Managed by 1ld: deployment '{name}' (app {app} {version}).\n\
         Changes by hand are reported as drift; `1ldctl apply` converges, `1ldctl destroy` removes it.\n\
         1ld-op: {op_id}\n"
    )
}

/// The marker [`description`] writes for `op_id`.
pub fn op_marker(op_id: &str) -> String {
    format!("1ld-op: {op_id}")
}

/// Natural order of template file names (`12.12` after `12.7`).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, _) => return std::cmp::Ordering::Less,
            (_, None) => return std::cmp::Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let nx = x.iter().take_while(|b| b.is_ascii_digit()).count();
                let ny = y.iter().take_while(|b| b.is_ascii_digit()).count();
                let (dx, dy) = (&x[..nx], &y[..ny]);
                let tx = dx.iter().skip_while(|b| **b == b'0').count();
                let ty = dy.iter().skip_while(|b| **b == b'0').count();
                let o = tx.cmp(&ty).then_with(|| dx[nx - tx..].cmp(&dy[ny - ty..]));
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
                x = &x[nx..];
                y = &y[ny..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// Whether template file `file` belongs to `family` (`debian-12-standard_…`).
pub fn in_family(file: &str, family: &str) -> bool {
    file.strip_prefix(family)
        .is_some_and(|r| r.starts_with('_') && r.contains(".tar."))
}

/// The newest template of `family` among volume ids.
pub fn newest_volid<'a>(volids: &'a [String], family: &str) -> Option<&'a String> {
    volids
        .iter()
        .filter(|v| {
            v.split_once(":vztmpl/")
                .is_some_and(|(_, f)| in_family(f, family))
        })
        .max_by(|a, b| {
            let fa = a.split_once(":vztmpl/").map_or("", |x| x.1);
            let fb = b.split_once(":vztmpl/").map_or("", |x| x.1);
            natural_cmp(fa, fb)
        })
}

/// The newest template of `family` among file names.
pub fn newest_file<'a>(files: &'a [String], family: &str) -> Option<&'a String> {
    files
        .iter()
        .filter(|f| in_family(f, family))
        .max_by(|a, b| natural_cmp(a, b))
}

/// Renders the manifest's files for `name` with `settings`; also returns
/// the fingerprint over the rendered (non-binary) contents and the agent
/// file names.
pub fn render_files(
    app: &App,
    name: &str,
    settings: &Resolved,
    agents_dir: &Path,
) -> (Vec<RenderedFile>, String) {
    let m = &app.manifest;
    let mut vars: BTreeMap<String, Setting> = BTreeMap::new();
    vars.insert("name".into(), Setting::Text(name.to_string()));
    vars.insert("app".into(), Setting::Text(m.name.clone()));
    vars.insert("app_version".into(), Setting::Text(m.version.clone()));
    vars.insert("user".into(), Setting::Text(m.service.user.clone()));
    for k in m.settings.keys() {
        if let Some(v) = settings.get(k) {
            vars.insert(k.clone(), v);
        }
    }
    let mut files = Vec::new();
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    for f in &m.files {
        let (content, source) = match (&f.agent, &f.template) {
            (Some(a), _) => {
                parts.push((f.path.clone(), format!("agent:{a}").into_bytes()));
                (Content::Host(agents_dir.join(a)), format!("agent:{a}"))
            }
            (None, Some(t)) => {
                // The manifest was validated at load: the template parses.
                let text = Template::parse(t)
                    .map(|t| t.render(&vars))
                    .unwrap_or_default();
                parts.push((f.path.clone(), text.clone().into_bytes()));
                (Content::Text(text), "template".to_string())
            }
            (None, None) => continue,
        };
        files.push(RenderedFile {
            path: f.path.clone(),
            content,
            mode: parse_mode(&f.mode).unwrap_or(0o644),
            owner: f.owner.clone(),
            group: f.group.clone(),
            secret: f.secret,
            source,
        });
    }
    let refs: Vec<(&str, &[u8])> = parts
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    (files, fingerprint(&refs))
}

fn storage_problem(facts: &HostFacts, storage: &str, disk_gib: u32) -> Option<String> {
    let candidates: Vec<&str> = facts
        .rootdir_storages
        .iter()
        .filter(|s| active(s))
        .map(|s| s.name.as_str())
        .collect();
    let cands = if candidates.is_empty() {
        "no storage on this node has content 'rootdir'; enable it on one (Datacenter → Storage)"
            .to_string()
    } else {
        format!("candidates: {}", candidates.join(", "))
    };
    match facts.rootdir_storages.iter().find(|s| s.name == storage) {
        None => Some(format!(
            "storage '{storage}' does not exist or has no content 'rootdir'; {cands}"
        )),
        Some(s) if !active(s) => Some(format!("storage '{storage}' is not active; {cands}")),
        Some(s) => {
            let need_kib = u64::from(disk_gib) * 1024 * 1024;
            (s.avail_kib < need_kib).then(|| {
                format!(
                    "storage '{storage}' has {} MiB free, the disk needs {disk_gib} GiB; {cands}",
                    s.avail_kib / 1024
                )
            })
        }
    }
}

fn ranged(errs: &mut Vec<FieldError>, field: &str, v: u32, lo: u32, hi: u32, unit: &str) {
    if !(lo..=hi).contains(&v) {
        errs.push(FieldError::new(
            field,
            format!("{v}{unit} is outside {lo}..={hi}{unit}"),
        ));
    }
}

/// Checks a deployment name (also used by adopt and apply).
pub fn check_name(name: &str) -> Option<String> {
    if !is_dns_label(name) {
        let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
        return Some(format!(
            "'{shown}' is not a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
        ));
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!(
            "'{name}' is reserved by the API; pick another name"
        ));
    }
    None
}

/// The resources `o` asks for on top of `base`, checked.
pub fn resources(
    errs: &mut Vec<FieldError>,
    base: &Resources,
    o: &Overrides,
    facts: Option<&HostFacts>,
) -> Resources {
    let r = Resources {
        cores: o.cores.unwrap_or(base.cores),
        memory: o.memory.unwrap_or(base.memory),
        swap: o.swap.unwrap_or(base.swap),
        disk: o.disk.unwrap_or(base.disk),
        storage: o.storage.clone().unwrap_or_else(|| base.storage.clone()),
        bridge: o.bridge.clone().unwrap_or_else(|| base.bridge.clone()),
        ip: o.ip.clone().unwrap_or_else(|| base.ip.clone()),
        gw: o.gw.clone().or_else(|| base.gw.clone()),
        ip6: o.ip6.clone().unwrap_or_else(|| base.ip6.clone()),
        onboot: o.onboot.unwrap_or(base.onboot),
    };
    ranged(errs, "overrides.cores", r.cores, 1, 512, "");
    ranged(
        errs,
        "overrides.memory",
        r.memory,
        16,
        4 * 1024 * 1024,
        " MiB",
    );
    ranged(errs, "overrides.swap", r.swap, 0, 4 * 1024 * 1024, " MiB");
    ranged(errs, "overrides.disk", r.disk, 1, 128 * 1024, " GiB");
    if r.ip != "dhcp" && r.ip.parse::<Ipv4Cidr>().is_err() {
        errs.push(FieldError::new(
            "overrides.ip",
            format!(
                "'{}': use dhcp or an IPv4 address in CIDR form (192.168.1.50/24)",
                clip(&r.ip)
            ),
        ));
    }
    if let Some(gw) = &r.gw {
        if gw.parse::<Ipv4Addr>().is_err() {
            errs.push(FieldError::new(
                "overrides.gw",
                format!("'{}' is not an IPv4 address", clip(gw)),
            ));
        } else if r.ip == "dhcp" {
            errs.push(FieldError::new(
                "overrides.gw",
                "a gateway needs a static ip",
            ));
        }
    }
    match r.ip6.as_str() {
        "auto" | "dhcp" | "none" => {}
        "static" => errs.push(FieldError::new(
            "overrides.ip6",
            "the app wants a static IPv6 address: give it in CIDR form (fd00::50/64)",
        )),
        other if other.parse::<crate::pve::types::Ipv6Cidr>().is_err() => {
            errs.push(FieldError::new(
                "overrides.ip6",
                format!(
                    "'{}': use auto, dhcp, none or an IPv6 address in CIDR form",
                    clip(other)
                ),
            ))
        }
        _ => {}
    }
    if !super::net::is_bridge_name(&r.bridge) {
        errs.push(FieldError::new(
            "overrides.bridge",
            format!("'{}' is not a bridge name", clip(&r.bridge)),
        ));
    } else if let Some(f) = facts {
        if !f.bridges.contains(&r.bridge) {
            errs.push(FieldError::new(
                "overrides.bridge",
                format!(
                    "bridge '{}' does not exist on this node; candidates: {}",
                    r.bridge,
                    if f.bridges.is_empty() {
                        "none".to_string()
                    } else {
                        f.bridges.join(", ")
                    }
                ),
            ));
        }
    }
    if let Some(f) = facts {
        if let Some(p) = storage_problem(f, &r.storage, r.disk) {
            errs.push(FieldError::new("overrides.storage", p));
        }
    }
    r
}

fn clip(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Validates `req` for `app` against the host and returns the spec.
pub fn build(
    app: &App,
    req: &DeployRequest,
    facts: &HostFacts,
    cfg: &AppsConfig,
) -> Result<DeploySpec, Vec<FieldError>> {
    let m = &app.manifest;
    let mut errs = Vec::new();
    let name = req.name.clone().unwrap_or_else(|| m.name.clone());
    if let Some(p) = check_name(&name) {
        errs.push(FieldError::new("name", p));
    } else if facts.names.contains(&name) {
        errs.push(FieldError::new(
            "name",
            format!("a deployment called '{name}' exists; pick another name or apply changes to it (PUT /v1/deployments/{name})"),
        ));
    }
    let settings = match resolve(&m.settings, &req.settings, &req.secrets, None) {
        Ok(s) => s,
        Err(e) => {
            errs.extend(e);
            Resolved::default()
        }
    };
    let c = &m.container;
    let base = Resources {
        cores: c.cores,
        memory: c.memory,
        swap: c.swap,
        disk: c.disk,
        storage: cfg.storage.clone(),
        bridge: c.bridge.clone(),
        ip: c.ip.clone(),
        gw: None,
        ip6: c.ip6.clone(),
        onboot: c.onboot,
    };
    let res = resources(&mut errs, &base, &req.overrides, Some(facts));
    let (lo, hi) = (c.vmid_range[0], c.vmid_range[1]);
    let mut vmid_hint = 0;
    match req.overrides.vmid {
        Some(v) => {
            if !(crate::pve::pct::MIN_VMID..=crate::pve::pct::MAX_VMID).contains(&v) {
                errs.push(FieldError::new(
                    "overrides.vmid",
                    format!("{v} is outside 100..=999999999"),
                ));
            } else if facts.guests.contains(&v) || facts.held.contains(&v) {
                errs.push(FieldError::new(
                    "overrides.vmid",
                    format!("vmid {v} is taken in the cluster; leave it out to get the lowest free one in {lo}..={hi}"),
                ));
            }
            vmid_hint = v;
        }
        None => match (lo..=hi).find(|v| !facts.guests.contains(v) && !facts.held.contains(v)) {
            Some(v) => vmid_hint = v,
            None => errs.push(FieldError::new(
                "overrides.vmid",
                format!(
                    "no free vmid in the app's range {lo}..={hi}; give one with overrides.vmid"
                ),
            )),
        },
    }
    let template = match newest_volid(&facts.templates, &c.template) {
        Some(v) => TemplateChoice {
            volid: v.clone(),
            download: None,
        },
        None => {
            let storage = facts
                .vztmpl_storages
                .iter()
                .filter(|s| active(s))
                .map(|s| s.name.clone())
                .find(|n| *n == cfg.template_storage)
                .or_else(|| {
                    facts
                        .vztmpl_storages
                        .iter()
                        .find(|s| active(s))
                        .map(|s| s.name.clone())
                });
            match storage {
                None => {
                    errs.push(FieldError::new(
                        "app",
                        format!("template '{}' is on no storage and no active storage has content 'vztmpl' to download it to", c.template),
                    ));
                    TemplateChoice {
                        volid: String::new(),
                        download: None,
                    }
                }
                Some(s) => {
                    let file = newest_file(&facts.available, &c.template)
                        .cloned()
                        .unwrap_or_else(|| format!("{}_*", c.template));
                    TemplateChoice {
                        volid: format!("{s}:vztmpl/{file}"),
                        download: Some((s, file)),
                    }
                }
            }
        }
    };
    let proxy = if req.overrides.proxy.unwrap_or(m.proxy.enabled) {
        let px = ProxySpec::of(m, res.ip6 != "none").map(|mut p| {
            p.packages = cfg.proxy_packages.clone();
            p
        });
        if px.is_none() {
            errs.push(FieldError::new(
                "overrides.proxy",
                format!("app '{}' has no service port for the proxy to forward to; its manifest needs [proxy] upstream_port", m.name),
            ));
        }
        px
    } else {
        None
    };
    for f in &m.files {
        if let Some(a) = &f.agent {
            let p = cfg.agents_dir.join(a);
            if !p.is_file() {
                errs.push(FieldError::new(
                    "app",
                    format!("agent binary {} is missing; install the 1ld agents package, or set [apps] agents_dir (e.g. to target/release after `make agents-bin`)", p.display()),
                ));
            }
        }
    }
    let supervise = req.overrides.supervise.unwrap_or_default();
    for (field, msg) in supervise.problems("overrides.supervise") {
        errs.push(FieldError::new(field, msg));
    }
    // Checked against `[backup]` by the caller (`deploy::prepare`).
    let backup = req.backup.clone().unwrap_or_default();
    if !errs.is_empty() {
        return Err(errs);
    }
    let (files, config_hash) = render_files(app, &name, &settings, &cfg.agents_dir);
    let features = c
        .features
        .iter()
        .filter_map(|f| Features::parse(f).ok())
        .fold(Features::default(), merge_features);
    let mut tags = m.tags();
    let mut health = m.health.clone();
    if let Some(px) = &proxy {
        tags.push(proxy::TAG.to_string());
        health = px.health(&health);
    }
    Ok(DeploySpec {
        name,
        app: m.name.clone(),
        app_version: m.version.clone(),
        node: facts.node.clone(),
        fixed_vmid: req.overrides.vmid,
        vmid_range: (lo, hi),
        vmid_hint,
        template,
        resources: res,
        unprivileged: c.unprivileged,
        features,
        tags,
        user: m.service.user.clone(),
        unit: m.service.unit.clone(),
        dirs: m.dirs.clone(),
        files,
        health,
        settings,
        config_hash,
        keep_on_failure: req.keep_on_failure,
        proxy,
        supervise,
        backup,
    })
}

fn merge_features(mut a: Features, b: Features) -> Features {
    a.nesting |= b.nesting;
    a.keyctl |= b.keyctl;
    a.fuse |= b.fuse;
    a.mknod |= b.mknod;
    a.force_rw_sys |= b.force_rw_sys;
    a.mount.extend(b.mount);
    a
}

/// `net0` for `r`.
pub fn net0(r: &Resources) -> NetSpec {
    let mut n = NetSpec::new("eth0", r.bridge.clone());
    n.ip = Some(if r.ip == "dhcp" {
        Ipv4Config::Dhcp
    } else {
        r.ip.parse().unwrap_or(Ipv4Config::Dhcp)
    });
    n.gw = r.gw.as_deref().and_then(|g| g.parse().ok());
    n.ip6 = match r.ip6.as_str() {
        "none" => None,
        "auto" => Some(Ipv6Config::Auto),
        "dhcp" => Some(Ipv6Config::Dhcp),
        other => other.parse().ok(),
    };
    n
}

impl DeploySpec {
    /// The `pct create` spec for `vmid`, marked with `op_id`.
    pub fn create_spec(&self, vmid: u32, op_id: &str) -> CreateSpec {
        let r = &self.resources;
        let mut s = CreateSpec::new(
            vmid,
            self.template.volid.clone(),
            RootfsSpec {
                storage: r.storage.clone(),
                size_gib: r.disk,
            },
        );
        s.unprivileged = self.unprivileged;
        s.options.hostname = Some(self.name.clone());
        s.options.cores = Some(r.cores);
        s.options.memory = Some(r.memory);
        s.options.swap = Some(r.swap);
        s.options.onboot = Some(r.onboot);
        s.options.tags = Some(self.tags.clone());
        s.options.features = Some(self.features.clone());
        s.options.description = Some(description(&self.name, &self.app, &self.app_version, op_id));
        s.options.net.insert(0, net0(r));
        s
    }

    /// The plan (what a dry run shows) on a node running PVE `major`.
    pub fn plan(&self, major: u32) -> Plan {
        let vmid = self.fixed_vmid.unwrap_or(self.vmid_hint);
        let mut warnings = Vec::new();
        let pct_create = match self.create_spec(vmid, "<operation id>").to_argv(major) {
            Ok(a) => a,
            Err(e) => {
                warnings.push(format!("cannot render pct create: {e}"));
                Vec::new()
            }
        };
        if self.template.download.is_some() {
            warnings.push(format!(
                "template {} is not on a storage yet; the deploy downloads it first",
                self.template.volid
            ));
        }
        if self
            .health
            .accept
            .contains(&crate::api::HealthStatus::Degraded)
        {
            warnings.push("the app's health gate accepts 'degraded' (its upstream may be unreachable); the deployment then shows degraded".into());
        }
        let mut files: Vec<PlanFile> = self
            .files
            .iter()
            .map(|f| PlanFile {
                path: f.path.clone(),
                source: f.source.clone(),
                mode: format!("{:04o}", f.mode),
                owner: format!("{}:{}", f.owner, f.group),
                secret: f.secret,
            })
            .collect();
        if let Some(px) = &self.proxy {
            warnings.push(format!(
                "proxy: nginx on port {} in front of 127.0.0.1:{}, installed from .deb files in the host's [apps] packages_dir (fetched with apt-get download when missing); the health gate probes port {}",
                px.port, px.upstream_port, px.port
            ));
            for name in &px.packages {
                files.push(PlanFile {
                    path: format!("{}/{name}_<version>.deb", proxy::CT_DEB_DIR),
                    source: format!("package:{name}"),
                    mode: "0600".into(),
                    owner: "root:root".into(),
                    secret: false,
                });
            }
            files.push(PlanFile {
                path: proxy::CONF_PATH.to_string(),
                source: "proxy".into(),
                mode: "0644".into(),
                owner: "root:root".into(),
                secret: false,
            });
        }
        Plan {
            app: self.app.clone(),
            app_version: self.app_version.clone(),
            name: self.name.clone(),
            node: self.node.clone(),
            vmid,
            template: self.template.volid.clone(),
            template_download: self.template.download.is_some(),
            pct_create,
            files,
            steps: STEPS.iter().map(|s| s.to_string()).collect(),
            settings: self.settings.masked(),
            config_hash: self.config_hash.clone(),
            warnings,
        }
    }
}

#[cfg(test)]
mod tests;
