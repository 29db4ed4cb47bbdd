//! `pct config <vmid>`.
//!
//! `key: value` lines with keys sorted, then raw `lxc.*` keys in file order.
//! `description` is percent-escaped on one line (trailing `%0A`); property
//! strings (`netN`, `rootfs`, `mpN`, `features`) are parsed into typed values.

use std::collections::BTreeMap;

use super::pct_status::key_values;
use super::ParseError;
use crate::pve::types::{decode_description, normalize_tags, Features, MountVolume, NetSpec};

/// A container's configuration as `pct config` shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CtConfig {
    /// Hostname.
    pub hostname: Option<String>,
    /// CPU cores limit.
    pub cores: Option<u32>,
    /// Memory in MiB.
    pub memory: Option<u64>,
    /// Swap in MiB.
    pub swap: Option<u64>,
    /// OS type (`debian`, ...).
    pub ostype: Option<String>,
    /// Architecture.
    pub arch: Option<String>,
    /// Unprivileged container.
    pub unprivileged: bool,
    /// Start on boot.
    pub onboot: bool,
    /// Protection against removal.
    pub protection: bool,
    /// A template.
    pub template: bool,
    /// Features.
    pub features: Features,
    /// Network devices by index (`net0` → 0).
    pub net: BTreeMap<u32, NetSpec>,
    /// Root filesystem.
    pub rootfs: Option<MountVolume>,
    /// Mount points by index (`mp0` → 0).
    pub mp: BTreeMap<u32, MountVolume>,
    /// Tags, normalised.
    pub tags: Vec<String>,
    /// Decoded description (may end in `\n`).
    pub description: Option<String>,
    /// Config lock.
    pub lock: Option<String>,
    /// Latest snapshot.
    pub parent: Option<String>,
    /// Every `key: value` line, verbatim (including `lxc.*` keys and unknown ones).
    pub raw: Vec<(String, String)>,
}

impl CtConfig {
    /// The verbatim value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.raw
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn indexed(key: &str, prefix: &str) -> Option<u32> {
    key.strip_prefix(prefix)
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// Parses `pct config` output.
pub fn parse_pct_config(text: &str) -> Result<CtConfig, ParseError> {
    let mut c = CtConfig::default();
    let at = |line: usize, e: ParseError| ParseError::new("pct config", line, e.to_string());
    for (line, k, v) in key_values("pct config", text)? {
        let num_err = |_| ParseError::new("pct config", line, format!("bad number for {k}: '{v}'"));
        match k {
            "hostname" => c.hostname = Some(v.to_string()),
            "cores" => c.cores = Some(v.trim().parse().map_err(num_err)?),
            "memory" => c.memory = Some(v.trim().parse().map_err(num_err)?),
            "swap" => c.swap = Some(v.trim().parse().map_err(num_err)?),
            "ostype" => c.ostype = Some(v.to_string()),
            "arch" => c.arch = Some(v.to_string()),
            "unprivileged" => c.unprivileged = v.trim() == "1",
            "onboot" => c.onboot = v.trim() == "1",
            "protection" => c.protection = v.trim() == "1",
            "template" => c.template = v.trim() == "1",
            "features" => c.features = Features::parse(v).map_err(|e| at(line, e))?,
            "rootfs" => c.rootfs = Some(MountVolume::parse(v).map_err(|e| at(line, e))?),
            "tags" => c.tags = normalize_tags(v),
            "description" => c.description = Some(decode_description(v)),
            "lock" => c.lock = Some(v.to_string()),
            "parent" => c.parent = Some(v.to_string()),
            _ => {
                if let Some(i) = indexed(k, "net") {
                    c.net.insert(i, NetSpec::parse(v).map_err(|e| at(line, e))?);
                } else if let Some(i) = indexed(k, "mp") {
                    c.mp.insert(i, MountVolume::parse(v).map_err(|e| at(line, e))?);
                }
            }
        }
        c.raw.push((k.to_string(), v.to_string()));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;
    use crate::pve::types::{Ipv4Config, Ipv6Config};

    #[test]
    fn typical_config() {
        let c = parse_pct_config(fixture!("pct-config.txt")).unwrap();
        assert_eq!(c.hostname.as_deref(), Some("web01"));
        assert_eq!(c.cores, Some(2));
        assert_eq!(c.memory, Some(1024));
        assert_eq!(c.swap, Some(512));
        assert!(c.unprivileged && c.onboot && !c.template);
        assert!(c.features.nesting && c.features.keyctl);
        assert_eq!(c.description.as_deref(), Some("managed by foo\n"));
        assert_eq!(c.tags, vec!["prod", "web"]);
        let rootfs = c.rootfs.as_ref().unwrap();
        assert_eq!(rootfs.storage(), Some("local-lvm"));
        assert_eq!(rootfs.size_bytes(), Some(8 << 30));
        // Compare typed values, never strings.
        let want = NetSpec {
            ip: Some("192.168.1.50/24".parse().unwrap()),
            gw: Some("192.168.1.1".parse().unwrap()),
            firewall: Some(true),
            ..NetSpec::new("eth0", "vmbr0")
        };
        assert!(want.is_satisfied_by(&c.net[&0]));
        assert_eq!(c.get("startup"), Some("order=2,up=30"));
    }

    #[test]
    fn escaped_description_lock_and_raw_lxc_keys() {
        let c = parse_pct_config(fixture!("pct-config-escaped.txt")).unwrap();
        assert_eq!(
            c.description.as_deref(),
            Some("café line: one\nsecond 100% done\n")
        );
        assert_eq!(c.lock.as_deref(), Some("backup"));
        assert_eq!(c.parent.as_deref(), Some("before-upgrade"));
        assert_eq!(c.net[&0].ip, Some(Ipv4Config::Dhcp));
        assert_eq!(c.net[&0].ip6, Some(Ipv6Config::Auto));
        assert_eq!(c.get("lxc.apparmor.profile"), Some("unconfined"));
        assert_eq!(c.get("lxc.cgroup2.devices.allow"), Some("a"));
        assert!(!c.unprivileged);
        assert!(c.tags.is_empty());
    }

    #[test]
    fn bad_property_string_is_an_error() {
        assert!(parse_pct_config("net0: bridge=vmbr0\n").is_err());
        assert!(parse_pct_config("memory: lots\n").is_err());
    }
}
