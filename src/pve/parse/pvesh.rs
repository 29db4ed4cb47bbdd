//! `pvesh get ... --output-format json` results.
//!
//! `/cluster/nextid` may be a JSON string (`"100"`) or a number;
//! `/cluster/resources --type vm` mixes qemu and lxc (only lxc is kept, unknown
//! types are ignored); `/nodes/<n>/lxc/<vmid>/interfaces` is `null` for a
//! stopped CT and has `ip-addresses` only from PVE 8.4.

use std::net::IpAddr;

use serde_json::Value;

use super::pct_status::CtStatus;
use super::ParseError;
use crate::pve::types::{normalize_tags, CtState};

fn json(what: &'static str, text: &str) -> Result<Value, ParseError> {
    serde_json::from_str(text.trim()).map_err(|e| ParseError::new(what, e.line(), e.to_string()))
}

/// Parses `/cluster/nextid`.
pub fn parse_nextid(text: &str) -> Result<u32, ParseError> {
    let what = "/cluster/nextid";
    match json(what, text)? {
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| ParseError::new(what, 0, format!("not a vmid: '{s}'"))),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ParseError::new(what, 0, format!("not a vmid: {n}"))),
        other => Err(ParseError::new(what, 0, format!("not a vmid: {other}"))),
    }
}

/// A container as `/cluster/resources` reports it (metrics lag up to ~10 s).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterCt {
    /// Container id.
    pub vmid: u32,
    /// Node it lives on.
    pub node: String,
    /// Name.
    pub name: Option<String>,
    /// Run state (`unknown` until pvestatd reports).
    pub status: CtState,
    /// A template.
    pub template: bool,
    /// Tags, normalised.
    pub tags: Vec<String>,
    /// Config lock.
    pub lock: Option<String>,
    /// Pool.
    pub pool: Option<String>,
    /// HA state.
    pub hastate: Option<String>,
    /// Seconds since start.
    pub uptime: Option<u64>,
    /// Memory in use (bytes).
    pub mem: Option<u64>,
    /// Memory limit (bytes).
    pub maxmem: Option<u64>,
    /// Root disk size (bytes).
    pub maxdisk: Option<u64>,
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn u64_of(v: &Value, k: &str) -> Option<u64> {
    match v.get(k)? {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| *f >= 0.0 && f.is_finite())
                .map(|f| f as u64)
        }),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Parses `/cluster/resources [--type vm]`, keeping only LXC guests.
pub fn parse_cluster_resources(text: &str) -> Result<Vec<ClusterCt>, ParseError> {
    let what = "/cluster/resources";
    let v = json(what, text)?;
    let items = match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        _ => return Err(ParseError::new(what, 0, "not an array")),
    };
    let mut out = Vec::new();
    for item in &items {
        if item.get("type").and_then(Value::as_str) != Some("lxc") {
            continue;
        }
        let vmid = u64_of(item, "vmid")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| ParseError::new(what, 0, format!("lxc entry without vmid: {item}")))?;
        out.push(ClusterCt {
            vmid,
            node: str_of(item, "node").unwrap_or_default(),
            name: str_of(item, "name"),
            status: CtState::parse(&str_of(item, "status").unwrap_or_else(|| "unknown".into())),
            template: u64_of(item, "template") == Some(1),
            tags: str_of(item, "tags")
                .map(|t| normalize_tags(&t))
                .unwrap_or_default(),
            lock: str_of(item, "lock"),
            pool: str_of(item, "pool"),
            hastate: str_of(item, "hastate"),
            uptime: u64_of(item, "uptime"),
            mem: u64_of(item, "mem"),
            maxmem: u64_of(item, "maxmem"),
            maxdisk: u64_of(item, "maxdisk"),
        });
    }
    Ok(out)
}

/// Parses the ids of every guest (qemu and lxc, all nodes) of
/// `/cluster/resources --type vm`: VMs and containers share one id namespace.
pub fn parse_cluster_vmids(text: &str) -> Result<Vec<(u32, String)>, ParseError> {
    let what = "/cluster/resources";
    let items = match json(what, text)? {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        _ => return Err(ParseError::new(what, 0, "not an array")),
    };
    Ok(items
        .iter()
        .filter(|i| matches!(i.get("type").and_then(Value::as_str), Some("lxc" | "qemu")))
        .filter_map(|i| {
            let vmid = u64_of(i, "vmid").and_then(|n| u32::try_from(n).ok())?;
            Some((vmid, str_of(i, "node").unwrap_or_default()))
        })
        .collect())
}

/// One address of a container interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

/// A network interface inside a running container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtInterface {
    /// Interface name (`lo`, `eth0`).
    pub name: String,
    /// MAC address (lower-case as reported).
    pub hwaddr: Option<String>,
    /// All addresses: from `ip-addresses` when present (PVE ≥ 8.4), else the
    /// legacy `inet`/`inet6` (only the last address of each family).
    pub addresses: Vec<IfAddr>,
}

impl CtInterface {
    /// The first non-loopback, non-link-local address, preferring IPv4.
    pub fn primary_address(&self) -> Option<IpAddr> {
        let usable = |a: &&IfAddr| match a.addr {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        };
        let all: Vec<&IfAddr> = self.addresses.iter().filter(usable).collect();
        all.iter()
            .find(|a| a.addr.is_ipv4())
            .or_else(|| all.first())
            .map(|a| a.addr)
    }
}

fn cidr(s: &str) -> Option<IfAddr> {
    let (a, p) = s.split_once('/')?;
    Some(IfAddr {
        addr: a.parse().ok()?,
        prefix: p.parse().ok()?,
    })
}

/// Parses `/nodes/<node>/lxc/<vmid>/interfaces` (`null` → no interfaces).
pub fn parse_interfaces(text: &str) -> Result<Vec<CtInterface>, ParseError> {
    let what = "lxc interfaces";
    let items = match json(what, text)? {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(ParseError::new(what, 0, "not an array")),
    };
    let mut out = Vec::new();
    for item in &items {
        let name = str_of(item, "name")
            .ok_or_else(|| ParseError::new(what, 0, format!("interface without name: {item}")))?;
        let mut addresses = Vec::new();
        if let Some(list) = item.get("ip-addresses").and_then(Value::as_array) {
            for a in list {
                let addr = str_of(a, "ip-address").and_then(|s| s.parse().ok());
                let prefix = u64_of(a, "prefix").and_then(|p| u8::try_from(p).ok());
                if let (Some(addr), Some(prefix)) = (addr, prefix) {
                    addresses.push(IfAddr { addr, prefix });
                }
            }
        } else {
            for k in ["inet", "inet6"] {
                if let Some(a) = str_of(item, k).as_deref().and_then(cidr) {
                    addresses.push(a);
                }
            }
        }
        out.push(CtInterface {
            name,
            hwaddr: str_of(item, "hardware-address").or_else(|| str_of(item, "hwaddr")),
            addresses,
        });
    }
    Ok(out)
}

/// Parses `/nodes/<node>/lxc/<vmid>/status/current` (numbers or strings accepted).
pub fn parse_status_current(text: &str) -> Result<CtStatus, ParseError> {
    let what = "lxc status/current";
    let Value::Object(map) = json(what, text)? else {
        return Err(ParseError::new(what, 0, "not an object"));
    };
    let scalars: Vec<(String, String)> = map
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect();
    let s = CtStatus::from_pairs(scalars.iter().map(|(k, v)| (0, k.as_str(), v.as_str())))?;
    if s.status.is_none() {
        return Err(ParseError::new(what, 0, "no status field"));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn nextid_string_or_number() {
        assert_eq!(
            parse_nextid(fixture!("pvesh-nextid-string.json")).unwrap(),
            100
        );
        assert_eq!(
            parse_nextid(fixture!("pvesh-nextid-number.json")).unwrap(),
            105
        );
        assert!(parse_nextid("\"abc\"").is_err());
        assert!(parse_nextid("null").is_err());
        assert!(parse_nextid("-5").is_err());
    }

    #[test]
    fn resources_keep_lxc_only() {
        let r = parse_cluster_resources(fixture!("pvesh-resources-vm.json")).unwrap();
        let ids: Vec<u32> = r.iter().map(|c| c.vmid).collect();
        assert_eq!(ids, [101, 102, 103]);
        assert_eq!(r[0].tags, ["prod", "web"]);
        assert_eq!(r[0].status, CtState::Stopped);
        assert_eq!(r[1].lock.as_deref(), Some("backup"));
        assert_eq!(r[1].pool.as_deref(), Some("prod"));
        assert_eq!(r[1].hastate.as_deref(), Some("started"));
        assert_eq!(r[2].status, CtState::Unknown);
        assert_eq!(r[2].name, None);
        assert_eq!(parse_cluster_resources("[]").unwrap(), vec![]);
    }

    #[test]
    fn interfaces_legacy_pve8() {
        let i = parse_interfaces(fixture!("pvesh-interfaces-pve8-old.json")).unwrap();
        assert_eq!(i.len(), 2);
        assert_eq!(i[0].name, "lo");
        assert_eq!(i[0].primary_address(), None);
        assert_eq!(i[1].hwaddr.as_deref(), Some("bc:24:11:5e:7a:01"));
        assert_eq!(i[1].addresses.len(), 2);
        assert_eq!(
            i[1].primary_address(),
            Some("192.168.1.50".parse().unwrap())
        );
    }

    #[test]
    fn interfaces_with_ip_addresses() {
        let i = parse_interfaces(fixture!("pvesh-interfaces-pve9.json")).unwrap();
        assert_eq!(i[1].addresses.len(), 3);
        assert_eq!(
            i[1].addresses[1].addr,
            "fd00::50".parse::<IpAddr>().unwrap()
        );
        assert_eq!(i[1].addresses[1].prefix, 64);
        let v6only = CtInterface {
            name: "eth0".into(),
            hwaddr: None,
            addresses: vec![
                IfAddr {
                    addr: "fe80::1".parse().unwrap(),
                    prefix: 64,
                },
                IfAddr {
                    addr: "fd00::50".parse().unwrap(),
                    prefix: 64,
                },
            ],
        };
        assert_eq!(v6only.primary_address(), Some("fd00::50".parse().unwrap()));
    }

    #[test]
    fn interfaces_of_stopped_ct_is_null() {
        assert_eq!(
            parse_interfaces(fixture!("pvesh-interfaces-stopped.json")).unwrap(),
            vec![]
        );
        assert!(parse_interfaces("").is_err());
    }

    #[test]
    fn status_current_pve9() {
        let s = parse_status_current(fixture!("pvesh-status-current-pve9.json")).unwrap();
        assert_eq!(s.status, Some(CtState::Running));
        assert_eq!(s.vmid, Some(101));
        assert_eq!(s.cpu, Some(0.0042));
        assert_eq!(s.pressure.cpu_some, Some(0.12));
        assert_eq!(s.pressure.io_full, Some(0.0));
        assert_eq!(s.tags, ["prod", "web"]);
    }
}
