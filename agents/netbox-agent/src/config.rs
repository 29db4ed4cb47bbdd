//! netbox-agent's config and secrets files.
//!
//! Config (`/etc/netbox-agent/config.toml`): `[service]` (runtime), `[netbox]`
//! (where NetBox is), `[sources.*]` (discovery sources, all disabled by
//! default). Secrets (`/etc/netbox-agent/secrets.toml`, mode 0600):
//! `netbox_token`.

use agent_runtime::config::Invalid;
use agent_runtime::http_client::BaseUrl;
use agent_runtime::{Secret, ServiceConfig};
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Runtime settings.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The NetBox to keep in step.
    pub netbox: NetboxConfig,
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
}

fn default_timeout() -> u64 {
    10
}

/// `[sources.<name>]`: only the switch exists so far.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceToggle {
    /// Whether the source runs; default false.
    #[serde(default)]
    pub enabled: bool,
}

/// `[sources]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// ICMP/TCP scan of configured CIDRs.
    #[serde(default)]
    pub network_scan: SourceToggle,
    /// Home Assistant REST + WebSocket registries.
    #[serde(default)]
    pub home_assistant: SourceToggle,
    /// Proxmox VE API.
    #[serde(default)]
    pub proxmox: SourceToggle,
    /// TrueNAS API.
    #[serde(default)]
    pub truenas: SourceToggle,
    /// Inventory files.
    #[serde(default)]
    pub inventory: SourceToggle,
}

impl Sources {
    /// Every source with its name, in a fixed order.
    pub fn all(&self) -> [(&'static str, &SourceToggle); 5] {
        [
            ("network_scan", &self.network_scan),
            ("home_assistant", &self.home_assistant),
            ("proxmox", &self.proxmox),
            ("truenas", &self.truenas),
            ("inventory", &self.inventory),
        ]
    }
}

/// The secrets file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// NetBox API token: a v2 token `nbt_<key>.<secret>` or a legacy 40-char
    /// v1 token.
    pub netbox_token: Secret,
}

impl Config {
    /// Checks beyond typing: the URL, the timeout, no unimplemented source
    /// switched on.
    pub fn validate(&self) -> Result<(), Invalid> {
        BaseUrl::parse(&self.netbox.url).map_err(|e| Invalid::new("netbox.url", e.to_string()))?;
        if self.netbox.timeout_s == 0 {
            return Err(Invalid::new("netbox.timeout_s", "must be at least 1"));
        }
        if let Some((name, _)) = self.sources.all().into_iter().find(|(_, s)| s.enabled) {
            return Err(Invalid::new(
                format!("sources.{name}.enabled"),
                format!(
                    "the {name} source is not implemented in netbox-agent {}; set it to false",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
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
        assert!(cfg.sources.all().iter().all(|(_, s)| !s.enabled));
    }

    #[test]
    fn enabling_a_source_is_refused_by_key() {
        let cfg = parse("[netbox]\nurl = \"http://nb\"\n[sources.proxmox]\nenabled = true\n");
        assert_eq!(cfg.validate().unwrap_err().key, "sources.proxmox.enabled");
    }

    #[test]
    fn https_is_refused_with_a_reason() {
        let cfg = parse("[netbox]\nurl = \"https://nb\"\n");
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "netbox.url");
        assert!(e.message.contains("https"), "{e}");
    }
}
