//! netbox-agent's config and secrets files.
//!
//! Config (`/etc/netbox-agent/config.toml`): `[service]` (runtime; its
//! `interval_s` is the incremental sync interval), `[netbox]` (where NetBox
//! is, batch size, retries), `[sync]` (site, ownership, full-sync interval,
//! orphan/prune rules) and `[sources.*]` (discovery sources, all disabled by
//! default, so the default config scans and contacts nothing). Secrets
//! (`/etc/netbox-agent/secrets.toml`, mode 0600): `netbox_token` and the
//! sources' credentials.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use agent_runtime::config::Invalid;
use agent_runtime::{Secret, ServiceConfig};
use serde::Deserialize;

use crate::transport::Endpoint;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Runtime settings.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The NetBox to keep in step.
    pub netbox: NetboxConfig,
    /// Reconciliation rules.
    #[serde(default)]
    pub sync: SyncConfig,
    /// Discovery sources.
    #[serde(default)]
    pub sources: Sources,
}

/// `[netbox]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetboxConfig {
    /// Base URL, e.g. `http://netbox.lan:8000` (the API is under `/api/`).
    pub url: String,
    /// Per-request timeout in seconds; default 10.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// PEM CA file trusted for an `https://` URL besides the system roots
    /// (certificates are always verified).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Objects per bulk request; default 200.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Attempts per request on 429/502/503/504 or a connection error;
    /// default 4.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// First retry delay in milliseconds (doubles each time); default 500.
    #[serde(default = "default_backoff")]
    pub retry_backoff_ms: u64,
}

fn default_timeout() -> u64 {
    10
}
fn default_batch() -> usize {
    200
}
fn default_attempts() -> u32 {
    4
}
fn default_backoff() -> u64 {
    500
}

/// `[sync]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Site every discovered device and cluster goes into.
    #[serde(default = "default_site")]
    pub site: String,
    /// The ownership tag's slug.
    #[serde(default = "default_tag")]
    pub tag: String,
    /// Seconds between full syncs (which also orphan and prune); the
    /// incremental interval is `service.interval_s`. Default 3600.
    #[serde(default = "default_full")]
    pub full_sync_interval_s: u64,
    /// Delete orphaned objects this many days after they were last seen
    /// (and not before the sync after the one that orphaned them). Default 7.
    #[serde(default = "default_prune_days")]
    pub prune_after_days: u32,
    /// Whether orphaned objects are deleted at all; default true.
    #[serde(default = "yes")]
    pub prune: bool,
    /// Take over objects the agent did not create when their natural key
    /// matches (device/VM name in the site, IP address): default false, so
    /// such objects are reported as conflicts and left alone.
    #[serde(default)]
    pub adopt_existing: bool,
}

fn default_site() -> String {
    "Homelab".into()
}
fn default_tag() -> String {
    "netbox-agent".into()
}
fn default_full() -> u64 {
    3600
}
fn default_prune_days() -> u32 {
    7
}
fn yes() -> bool {
    true
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            site: default_site(),
            tag: default_tag(),
            full_sync_interval_s: default_full(),
            prune_after_days: default_prune_days(),
            prune: true,
            adopt_existing: false,
        }
    }
}

/// `[sources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// ICMP/TCP scan of configured CIDRs.
    #[serde(default)]
    pub network_scan: ScanConfig,
    /// Home Assistant REST + WebSocket registries.
    #[serde(default)]
    pub home_assistant: HomeAssistantConfig,
    /// Proxmox VE API.
    #[serde(default)]
    pub proxmox: ProxmoxConfig,
    /// TrueNAS API.
    #[serde(default)]
    pub truenas: TruenasConfig,
    /// Inventory files.
    #[serde(default)]
    pub inventory: InventoryConfig,
}

/// `[sources.network_scan]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between runs (0: every cycle). Default 0.
    #[serde(default)]
    pub interval_s: u64,
    /// IPv4 networks to scan, e.g. `["192.168.1.0/24"]`. Nothing else is
    /// ever probed.
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Addresses or networks never probed.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// TCP ports probed with a connect (an answer, even a refusal, means the
    /// host is up). Default 22, 80, 443.
    #[serde(default = "default_ports")]
    pub tcp_ports: Vec<u16>,
    /// ICMP echo as well (unprivileged ICMP socket, else raw with
    /// `CAP_NET_RAW`, else skipped and said so in `/health`). Default true.
    #[serde(default = "yes")]
    pub icmp: bool,
    /// Probes (packets) per second, all kinds together. Default 200.
    #[serde(default = "default_rate")]
    pub rate_pps: u32,
    /// Probes in flight at once. Default 64.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Per-probe timeout in milliseconds. Default 1000.
    #[serde(default = "default_probe_timeout")]
    pub timeout_ms: u64,
    /// Reverse-DNS names for hosts found. Default true.
    #[serde(default = "yes")]
    pub reverse_dns: bool,
    /// Largest network accepted per entry (prefix length). Default 22 (1,024
    /// addresses): a bigger network is refused at startup.
    #[serde(default = "default_min_prefix")]
    pub min_prefix: u8,
}

fn default_ports() -> Vec<u16> {
    vec![22, 80, 443]
}
fn default_rate() -> u32 {
    200
}
fn default_concurrency() -> usize {
    64
}
fn default_probe_timeout() -> u64 {
    1000
}
fn default_min_prefix() -> u8 {
    22
}

impl Default for ScanConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_s: 0,
            cidrs: Vec::new(),
            exclude: Vec::new(),
            tcp_ports: default_ports(),
            icmp: true,
            rate_pps: default_rate(),
            concurrency: default_concurrency(),
            timeout_ms: default_probe_timeout(),
            reverse_dns: true,
            min_prefix: default_min_prefix(),
        }
    }
}

/// `[sources.inventory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between re-reads when nothing changed (0: every cycle); a
    /// change of a file's mtime or size triggers a sync within
    /// `watch_interval_s`.
    #[serde(default)]
    pub interval_s: u64,
    /// Files: `.yaml`/`.yml` or `.csv` (format in the README).
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Seconds between checks of the files for changes; default 5.
    #[serde(default = "default_watch")]
    pub watch_interval_s: u64,
}

fn default_watch() -> u64 {
    5
}

/// `[sources.proxmox]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxmoxConfig {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between runs (0: every cycle).
    #[serde(default)]
    pub interval_s: u64,
    /// `http://host:8006` (plain http only in this version, see README).
    #[serde(default)]
    pub url: String,
    /// Token id `user@realm!tokenid`; its secret is `proxmox_token_secret`
    /// in the secrets file.
    #[serde(default)]
    pub token_id: String,
    /// NetBox cluster name; default: the PVE cluster's name, else `pve`.
    #[serde(default)]
    pub cluster: Option<String>,
    /// PEM CA file trusted for `https://` besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[sources.home_assistant]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between runs (0: every cycle).
    #[serde(default)]
    pub interval_s: u64,
    /// `http://homeassistant.lan:8123` (REST under `/api/`, WebSocket at
    /// `/api/websocket`); plain http only in this version. The long-lived
    /// token is `home_assistant_token` in the secrets file.
    #[serde(default)]
    pub url: String,
    /// Prefix length given to the addresses Home Assistant reports (it
    /// reports bare addresses). Default 24.
    #[serde(default = "default_ha_prefix")]
    pub prefix_length: u8,
    /// PEM CA file trusted for `https://` besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_ha_prefix() -> u8 {
    24
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_s: 0,
            url: String::new(),
            prefix_length: default_ha_prefix(),
            ca_file: None,
        }
    }
}

/// `[sources.truenas]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TruenasConfig {
    /// Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Seconds between runs (0: every cycle).
    #[serde(default)]
    pub interval_s: u64,
    /// `http://host[:port]`: the JSON-RPC WebSocket is `ws://…/api/current`,
    /// the REST fallback `http://…/api/v2.0/`. Plain http/ws only in this
    /// version, and TrueNAS revokes API keys used over plain transport to a
    /// non-local address, so only a local TrueNAS (loopback) is accepted.
    #[serde(default)]
    pub url: String,
    /// `auto` (WebSocket, then REST), `websocket` or `rest`.
    #[serde(default)]
    pub api: TruenasApi,
    /// PEM CA file trusted for `https://` besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Which TrueNAS API to use.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruenasApi {
    /// JSON-RPC over WebSocket (25.04+), REST v2.0 when that fails.
    #[default]
    Auto,
    /// JSON-RPC over WebSocket only.
    Websocket,
    /// REST v2.0 only (≤ 24.10).
    Rest,
}

/// The secrets file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// NetBox API token: a v2 token `nbt_<key>.<secret>` or a legacy 40-char
    /// v1 token.
    pub netbox_token: Secret,
    /// Home Assistant long-lived access token (same 0/1-list rule).
    #[serde(default, deserialize_with = "zero_or_one")]
    pub home_assistant_token: Option<Secret>,
    /// TrueNAS API key (same 0/1-list rule).
    #[serde(default, deserialize_with = "zero_or_one")]
    pub truenas_api_key: Option<Secret>,
    /// The Proxmox API token's secret (UUID). A string, or a list of zero or
    /// one string (what 1ld's manifest renders for an unset optional secret).
    #[serde(default, deserialize_with = "zero_or_one")]
    pub proxmox_token_secret: Option<Secret>,
}

fn zero_or_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrList {
        One(Secret),
        List(Vec<Secret>),
    }
    match OneOrList::deserialize(d)? {
        OneOrList::One(s) => Ok(Some(s)),
        OneOrList::List(mut v) if v.len() <= 1 => Ok(v.pop().filter(|s| !s.is_blank())),
        OneOrList::List(_) => Err(serde::de::Error::custom(
            "expected one secret (a string), not a list of several",
        )),
    }
}

/// An IPv4 network `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net4 {
    /// Network address (host bits cleared).
    pub addr: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
}

impl Net4 {
    /// Parses `a.b.c.d/len` or a bare address (`/32`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IPv4 network like 192.168.1.0/24"))?;
        let len: u8 = l
            .trim()
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("`{s}`: the prefix length must be 0..=32"))?;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            len,
        })
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        };
        u32::from(ip) & mask == u32::from(self.addr)
    }

    /// Host addresses (network and broadcast left out for /0../30).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.addr);
        let size: u64 = 1u64 << (32 - u32::from(self.len));
        let (first, last) = if self.len >= 31 {
            (0, size - 1)
        } else {
            (1, size - 2)
        };
        (first..=last).map(move |i| Ipv4Addr::from(base.wrapping_add(i as u32)))
    }
}

impl Config {
    /// Checks beyond typing.
    pub fn validate(&self) -> Result<(), Invalid> {
        Endpoint::parse(&self.netbox.url, self.netbox.ca_file.as_deref())
            .map_err(|e| Invalid::new("netbox.url", e))?;
        if self.netbox.timeout_s == 0 {
            return Err(Invalid::new("netbox.timeout_s", "must be at least 1"));
        }
        if !(1..=1000).contains(&self.netbox.batch_size) {
            return Err(Invalid::new(
                "netbox.batch_size",
                "must be 1..=1000 (NetBox's MAX_PAGE_SIZE); 100-200 is a good size",
            ));
        }
        if self.netbox.max_attempts == 0 {
            return Err(Invalid::new("netbox.max_attempts", "must be at least 1"));
        }
        if self.sync.site.trim().is_empty() {
            return Err(Invalid::new("sync.site", "must not be empty"));
        }
        if crate::sync::slugify(&self.sync.tag) != self.sync.tag {
            return Err(Invalid::new(
                "sync.tag",
                format!(
                    "`{}` is not a NetBox slug (lower-case letters, digits, '-', '_'); use `{}`",
                    self.sync.tag,
                    crate::sync::slugify(&self.sync.tag)
                ),
            ));
        }
        let s = &self.sources;
        let ha = &s.home_assistant;
        if ha.enabled {
            Endpoint::parse(&ha.url, ha.ca_file.as_deref())
                .map_err(|e| Invalid::new("sources.home_assistant.url", e))?;
            if !(8..=32).contains(&ha.prefix_length) {
                return Err(Invalid::new(
                    "sources.home_assistant.prefix_length",
                    "must be 8..=32",
                ));
            }
        }
        let tn = &s.truenas;
        if tn.enabled {
            let base = Endpoint::parse(&tn.url, tn.ca_file.as_deref())
                .map_err(|e| Invalid::new("sources.truenas.url", e))?;
            let host = base
                .authority()
                .rsplit_once(':')
                .map_or(base.authority(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let local = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local && !base.is_tls() {
                return Err(Invalid::new(
                    "sources.truenas.url",
                    format!(
                        "`{}` is plain http/ws to a non-local host: TrueNAS (25.04+) revokes an API key used that way; use https://",
                        tn.url
                    ),
                ));
            }
        }
        let scan = &s.network_scan;
        if scan.enabled {
            if scan.cidrs.is_empty() {
                return Err(Invalid::new(
                    "sources.network_scan.cidrs",
                    "the scan is enabled but no network is configured; list the networks to scan, e.g. [\"192.168.1.0/24\"]",
                ));
            }
            for (i, c) in scan.cidrs.iter().enumerate() {
                let net = Net4::parse(c)
                    .map_err(|e| Invalid::new(format!("sources.network_scan.cidrs[{i}]"), e))?;
                if net.len < scan.min_prefix {
                    return Err(Invalid::new(
                        format!("sources.network_scan.cidrs[{i}]"),
                        format!(
                            "`{c}` is larger than /{}; split it or lower sources.network_scan.min_prefix deliberately",
                            scan.min_prefix
                        ),
                    ));
                }
            }
            for (i, c) in scan.exclude.iter().enumerate() {
                Net4::parse(c)
                    .map_err(|e| Invalid::new(format!("sources.network_scan.exclude[{i}]"), e))?;
            }
            if scan.tcp_ports.is_empty() && !scan.icmp {
                return Err(Invalid::new(
                    "sources.network_scan.tcp_ports",
                    "with icmp = false at least one TCP port is needed to find hosts",
                ));
            }
            if scan.tcp_ports.contains(&0) {
                return Err(Invalid::new(
                    "sources.network_scan.tcp_ports",
                    "port 0 is not a port",
                ));
            }
            if !(1..=10_000).contains(&scan.rate_pps) {
                return Err(Invalid::new(
                    "sources.network_scan.rate_pps",
                    "must be 1..=10000",
                ));
            }
            if !(1..=1024).contains(&scan.concurrency) {
                return Err(Invalid::new(
                    "sources.network_scan.concurrency",
                    "must be 1..=1024",
                ));
            }
            if scan.timeout_ms == 0 {
                return Err(Invalid::new(
                    "sources.network_scan.timeout_ms",
                    "must be at least 1",
                ));
            }
        }
        let inv = &s.inventory;
        if inv.enabled {
            if inv.files.is_empty() {
                return Err(Invalid::new(
                    "sources.inventory.files",
                    "the inventory is enabled but lists no file; add e.g. [\"/etc/netbox-agent/inventory.yaml\"]",
                ));
            }
            for (i, f) in inv.files.iter().enumerate() {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !matches!(ext, "yaml" | "yml" | "csv") {
                    return Err(Invalid::new(
                        format!("sources.inventory.files[{i}]"),
                        format!(
                            "`{}`: the file name must end in .yaml, .yml or .csv",
                            f.display()
                        ),
                    ));
                }
            }
            if inv.watch_interval_s == 0 {
                return Err(Invalid::new(
                    "sources.inventory.watch_interval_s",
                    "must be at least 1",
                ));
            }
        }
        let px = &s.proxmox;
        if px.enabled {
            Endpoint::parse(&px.url, px.ca_file.as_deref())
                .map_err(|e| Invalid::new("sources.proxmox.url", e))?;
            let ok = px
                .token_id
                .split_once('!')
                .is_some_and(|(u, t)| u.contains('@') && !t.is_empty());
            if !ok {
                return Err(Invalid::new(
                    "sources.proxmox.token_id",
                    "must look like user@realm!tokenid (e.g. netbox@pve!agent); the secret goes into proxmox_token_secret in the secrets file",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn example_config_parses_and_scans_nothing() {
        let text = include_str!("../config.example.toml");
        let cfg = parse(text);
        cfg.validate().unwrap();
        assert!(!cfg.sources.network_scan.enabled);
        assert!(!cfg.sources.inventory.enabled);
        assert!(!cfg.sources.proxmox.enabled);
    }

    #[test]
    fn truenas_over_plain_http_is_refused_for_remote_hosts() {
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.truenas]\nenabled = true\nurl = \"http://truenas.lan\"\n");
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "sources.truenas.url");
        assert!(e.message.contains("revokes"), "{e}");
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.truenas]\nenabled = true\nurl = \"http://127.0.0.1:8444\"\n");
        cfg.validate().unwrap();
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.truenas]\nenabled = true\nurl = \"https://truenas.lan\"\n");
        cfg.validate().unwrap();
    }

    #[test]
    fn scan_settings_are_checked_by_key() {
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.network_scan]\nenabled = true\n");
        assert_eq!(
            cfg.validate().unwrap_err().key,
            "sources.network_scan.cidrs"
        );
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.network_scan]\nenabled = true\ncidrs = [\"127.0.0.0/24\", \"10.0.0.0/8\"]\n");
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "sources.network_scan.cidrs[1]");
        assert!(e.message.contains("larger than /22"), "{e}");
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.network_scan]\nenabled = true\ncidrs = [\"127.0.0.300/24\"]\n");
        assert_eq!(
            cfg.validate().unwrap_err().key,
            "sources.network_scan.cidrs[0]"
        );
    }

    #[test]
    fn https_is_accepted_and_a_bad_ca_file_is_named() {
        parse("[netbox]\nurl = \"https://nb\"\n")
            .validate()
            .unwrap();
        let cfg = parse("[netbox]\nurl = \"https://nb\"\nca_file = \"/nonexistent/ca.pem\"\n");
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "netbox.url");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let e = parse("[netbox]\nurl = \"ftp://nb\"\n")
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "netbox.url");
    }

    #[test]
    fn optional_secret_as_string_or_short_list() {
        let s: Secrets =
            toml::from_str("netbox_token = \"t\"\nproxmox_token_secret = []\n").unwrap();
        assert!(s.proxmox_token_secret.is_none());
        let s: Secrets =
            toml::from_str("netbox_token = \"t\"\nproxmox_token_secret = [\"u\"]\n").unwrap();
        assert_eq!(s.proxmox_token_secret.unwrap().expose(), "u");
        let s: Secrets =
            toml::from_str("netbox_token = \"t\"\nproxmox_token_secret = \"u\"\n").unwrap();
        assert_eq!(s.proxmox_token_secret.unwrap().expose(), "u");
        // (The runtime's secrets loader redacts parse messages.)
        assert!(toml::from_str::<Secrets>(
            "netbox_token = \"t\"\nproxmox_token_secret = [\"a\", \"b\"]\n"
        )
        .is_err());
    }

    #[test]
    fn networks() {
        let n = Net4::parse("127.0.0.7/24").unwrap();
        assert_eq!(n.addr, Ipv4Addr::new(127, 0, 0, 0));
        assert_eq!(n.hosts().count(), 254);
        assert!(n.contains(Ipv4Addr::new(127, 0, 0, 255)));
        assert!(!n.contains(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(Net4::parse("127.0.0.1").unwrap().hosts().count(), 1);
        assert!(Net4::parse("127.0.0.1/33").is_err());
    }
}
