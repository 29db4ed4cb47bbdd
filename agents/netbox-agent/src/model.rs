//! What the sources discovered, in source-neutral terms, and how the
//! sources' views are merged into one desired state.
//!
//! Merge rule: hosts from different sources are the same host when they share
//! a MAC address, else an IPv4/IPv6 address, else a name (case-insensitive,
//! domain stripped). Within a merged host the source with the highest
//! precedence wins every attribute it sets:
//! `inventory` (a human wrote it), then `proxmox`, `truenas`,
//! `home_assistant`, `network_scan`. Lower sources only fill what the winner leaves empty
//! (description, serial, DNS names) and add interfaces/addresses the winner
//! does not list. The winner's natural key becomes the object's key; the
//! other keys are kept so an object found first by the scan and later listed
//! in the inventory is the *same* NetBox object, not a delete plus create.

use std::collections::{BTreeMap, BTreeSet};

/// A discovery source. Order = precedence (first wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Inventory files (a human's word).
    Inventory,
    /// Proxmox VE API.
    Proxmox,
    /// TrueNAS API.
    Truenas,
    /// Home Assistant.
    HomeAssistant,
    /// Network scan.
    NetworkScan,
}

impl Source {
    /// Every source, by precedence.
    pub const ALL: [Source; 5] = [
        Source::Inventory,
        Source::Proxmox,
        Source::Truenas,
        Source::HomeAssistant,
        Source::NetworkScan,
    ];

    /// Config name (`network_scan`).
    pub fn name(self) -> &'static str {
        match self {
            Source::Inventory => "inventory",
            Source::Proxmox => "proxmox",
            Source::Truenas => "truenas",
            Source::HomeAssistant => "home_assistant",
            Source::NetworkScan => "network_scan",
        }
    }
}

/// A VM's placement and size.
#[derive(Debug, Clone, PartialEq)]
pub struct VmInfo {
    /// NetBox cluster name.
    pub cluster: String,
    /// vCPUs.
    pub vcpus: Option<f64>,
    /// Memory in MB.
    pub memory_mb: Option<u64>,
    /// Disk in MB.
    pub disk_mb: Option<u64>,
}

/// An IP address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpSpec {
    /// With mask, e.g. `192.168.1.10/24`.
    pub address: String,
    /// Free-text DNS name ("" when unknown).
    pub dns_name: String,
}

/// An interface.
#[derive(Debug, Clone, PartialEq)]
pub struct Iface {
    /// Name (`eth0`, `net0`).
    pub name: String,
    /// MAC, upper-case colon form.
    pub mac: Option<String>,
    /// NetBox interface type for devices (`1000base-t`, `virtual`, …).
    pub kind: String,
    /// Addresses.
    pub ips: Vec<IpSpec>,
}

/// A discovered host: a NetBox device, or a VM when `vm` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Host {
    /// Natural key, e.g. `proxmox:pve/140`, `scan:mac:BC:24:11:00:00:01`.
    pub key: String,
    /// Other sources' keys for the same host (filled by [`merge`]).
    pub alt_keys: Vec<String>,
    /// Who found it (the winner after a merge).
    pub source: Source,
    /// Every source that reported it.
    pub sources: BTreeSet<Source>,
    /// Name.
    pub name: String,
    /// VM placement, or `None` for a device.
    pub vm: Option<VmInfo>,
    /// Role name (`Server`, `Discovered host`, …).
    pub role: String,
    /// Manufacturer name (devices).
    pub manufacturer: String,
    /// Device type model (devices).
    pub model: String,
    /// `active`, `offline`, …
    pub status: String,
    /// Free text.
    pub description: String,
    /// Serial number ("" when unknown).
    pub serial: String,
    /// Interfaces.
    pub interfaces: Vec<Iface>,
    /// The address to make primary (one of the interfaces' addresses).
    pub primary_ip4: Option<String>,
    /// Extra custom fields (e.g. `agent_storage` from TrueNAS).
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Labels the source puts on the host (Proxmox tags), synced as agent
    /// tags `<tag>-label-<label>`.
    pub labels: BTreeSet<String>,
}

impl Host {
    /// A device with defaults for the rest.
    pub fn device(source: Source, key: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            alt_keys: Vec::new(),
            source,
            sources: BTreeSet::from([source]),
            name: name.into(),
            vm: None,
            role: "Discovered host".into(),
            manufacturer: "Generic".into(),
            model: "Generic device".into(),
            status: "active".into(),
            description: String::new(),
            serial: String::new(),
            interfaces: Vec::new(),
            primary_ip4: None,
            extra: BTreeMap::new(),
            labels: BTreeSet::new(),
        }
    }

    fn identities(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for i in &self.interfaces {
            if let Some(m) = &i.mac {
                ids.push(format!("mac:{}", m.to_ascii_uppercase()));
            }
            for ip in &i.ips {
                ids.push(format!("ip:{}", host_part(&ip.address)));
            }
        }
        // A name that is only an address (the scan's fallback) is no name.
        let short = self
            .name
            .split('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !short.is_empty() && self.name.parse::<std::net::IpAddr>().is_err() {
            ids.push(format!("name:{short}"));
        }
        ids
    }
}

/// `10.0.0.1/24` → `10.0.0.1`.
pub fn host_part(addr: &str) -> &str {
    addr.split('/').next().unwrap_or(addr)
}

/// Merges the sources' hosts (see the module docs). Deterministic: the
/// output is ordered by key.
pub fn merge(hosts: Vec<Host>) -> Vec<Host> {
    // Union-find over host indexes, joined through shared identities.
    let n = hosts.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut x: usize) -> usize {
        while p[x] != x {
            p[x] = p[p[x]];
            x = p[x];
        }
        x
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, h) in hosts.iter().enumerate() {
        for id in h.identities() {
            match seen.get(&id) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a] = b;
                    }
                }
                None => {
                    seen.insert(id, i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<Host> = groups
        .into_values()
        .map(|mut idx| {
            idx.sort_by_key(|&i| (hosts[i].source, hosts[i].key.clone()));
            let mut winner = hosts[idx[0]].clone();
            for &i in &idx[1..] {
                absorb(&mut winner, &hosts[i]);
            }
            winner
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

fn absorb(w: &mut Host, other: &Host) {
    w.sources.extend(other.sources.iter().copied());
    if !w.alt_keys.contains(&other.key) && other.key != w.key {
        w.alt_keys.push(other.key.clone());
    }
    for k in &other.alt_keys {
        if !w.alt_keys.contains(k) && *k != w.key {
            w.alt_keys.push(k.clone());
        }
    }
    if w.description.is_empty() {
        w.description.clone_from(&other.description);
    }
    if w.serial.is_empty() {
        w.serial.clone_from(&other.serial);
    }
    let mut have: BTreeSet<String> = w
        .interfaces
        .iter()
        .flat_map(|i| i.ips.iter().map(|ip| host_part(&ip.address).to_string()))
        .collect();
    for oi in &other.interfaces {
        let target = w
            .interfaces
            .iter_mut()
            .find(|i| (i.mac.is_some() && i.mac == oi.mac) || i.name == oi.name);
        match target {
            Some(t) => {
                if t.mac.is_none() {
                    t.mac.clone_from(&oi.mac);
                }
                for ip in &oi.ips {
                    let hp = host_part(&ip.address).to_string();
                    if let Some(existing) = t.ips.iter_mut().find(|x| host_part(&x.address) == hp) {
                        if existing.dns_name.is_empty() {
                            existing.dns_name.clone_from(&ip.dns_name);
                        }
                    } else if have.insert(hp) {
                        t.ips.push(ip.clone());
                    }
                }
            }
            None => {
                let ips: Vec<IpSpec> = oi
                    .ips
                    .iter()
                    .filter(|ip| have.insert(host_part(&ip.address).to_string()))
                    .cloned()
                    .collect();
                if !ips.is_empty() || oi.mac.is_some() {
                    let mut iface = oi.clone();
                    iface.ips = ips;
                    w.interfaces.push(iface);
                }
            }
        }
    }
    // DNS names the winner's addresses lack.
    for wi in &mut w.interfaces {
        for ip in &mut wi.ips {
            if ip.dns_name.is_empty() {
                if let Some(d) = other
                    .interfaces
                    .iter()
                    .flat_map(|i| &i.ips)
                    .find(|x| host_part(&x.address) == host_part(&ip.address))
                {
                    ip.dns_name.clone_from(&d.dns_name);
                }
            }
        }
    }
    w.labels.extend(other.labels.iter().cloned());
    for (k, v) in &other.extra {
        w.extra.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if w.primary_ip4.is_none() {
        w.primary_ip4.clone_from(&other.primary_ip4);
    }
}

/// Normalizes a MAC to `AA:BB:CC:DD:EE:FF`; `None` when it is not one.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    let other = s.chars().filter(|c| !c.is_ascii_hexdigit()).count();
    if hex.len() != 12 || !(other == 0 || other == 5) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    if up == "000000000000" {
        return None;
    }
    Some(
        (0..6)
            .map(|i| &up[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, mac: Option<&str>, ips: &[&str]) -> Iface {
        Iface {
            name: name.into(),
            mac: mac.map(str::to_string),
            kind: "other".into(),
            ips: ips
                .iter()
                .map(|a| IpSpec {
                    address: (*a).into(),
                    dns_name: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn merges_by_mac_then_ip_and_the_inventory_wins() {
        let mut scan = Host::device(
            Source::NetworkScan,
            "scan:mac:BC:24:11:00:00:01",
            "10.0.0.5",
        );
        scan.interfaces
            .push(iface("eth0", Some("BC:24:11:00:00:01"), &["10.0.0.5/24"]));
        scan.interfaces[0].ips[0].dns_name = "nas.lan".into();
        let mut inv = Host::device(Source::Inventory, "inventory:nas", "nas");
        inv.role = "Storage".into();
        inv.interfaces
            .push(iface("eno1", Some("bc:24:11:00:00:01"), &[]));
        inv.interfaces[0].mac = normalize_mac("bc:24:11:00:00:01");
        let mut other = Host::device(Source::NetworkScan, "scan:ip:10.0.0.9", "10.0.0.9");
        other.interfaces.push(iface("eth0", None, &["10.0.0.9/24"]));
        let merged = merge(vec![scan, other.clone(), inv]);
        assert_eq!(merged.len(), 2);
        let nas = merged.iter().find(|h| h.key == "inventory:nas").unwrap();
        assert_eq!(nas.role, "Storage");
        assert_eq!(nas.alt_keys, vec!["scan:mac:BC:24:11:00:00:01".to_string()]);
        assert_eq!(nas.sources.len(), 2);
        assert_eq!(nas.interfaces.len(), 1, "{:?}", nas.interfaces);
        assert_eq!(nas.interfaces[0].ips[0].address, "10.0.0.5/24");
        assert_eq!(nas.interfaces[0].ips[0].dns_name, "nas.lan");
        assert!(merged.contains(&other));
    }

    #[test]
    fn macs() {
        assert_eq!(
            normalize_mac("bc-24-11-00-00-0a").as_deref(),
            Some("BC:24:11:00:00:0A")
        );
        assert_eq!(
            normalize_mac("bc2411000001").as_deref(),
            Some("BC:24:11:00:00:01")
        );
        assert_eq!(normalize_mac("00:00:00:00:00:00"), None);
        assert_eq!(normalize_mac("zz"), None);
    }
}
