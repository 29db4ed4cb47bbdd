//! Inventory files: devices a human wants in NetBox, in YAML or CSV.
//!
//! YAML (`.yaml`/`.yml`):
//!
//! ```yaml
//! devices:
//!   - name: nas01                 # required, unique across the files
//!     role: Storage               # default "Server"
//!     manufacturer: Synology      # default "Generic"
//!     model: DS920+               # default "Generic device"
//!     serial: "2040ABC"           # optional
//!     status: active              # active|offline|planned|staged|failed|inventory|decommissioning
//!     description: "attic"        # optional
//!     interfaces:                 # optional
//!       - name: eth0              # required
//!         type: 1000base-t        # default "other"
//!         mac: "90:09:d0:00:00:01"
//!         ips: ["192.168.1.20/24"]
//!     primary_ip: 192.168.1.20/24 # default: the first IPv4 listed
//!   - name: printer               # shorthand: one interface "eth0"
//!     ip: 192.168.1.30/24
//!     mac: "00:11:22:33:44:55"
//! ```
//!
//! CSV (`.csv`): a header line naming any of `name,ip,mac,interface,type,
//! role,manufacturer,model,serial,status,description`; one row per address
//! (rows with the same name are one device; `interface` defaults to `eth0`).
//!
//! Errors name the file and the line: YAML syntax/type errors carry the
//! parser's line and column; a bad value (IP, MAC, status, a duplicate name)
//! is reported at the line where that value is written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;

use crate::model::{normalize_mac, Host, Iface, IpSpec, Source};

/// An inventory file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct InventoryError {
    /// The file.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlFile {
    #[serde(default)]
    devices: Vec<YamlDevice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlDevice {
    name: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    manufacturer: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    serial: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    interfaces: Vec<YamlIface>,
    #[serde(default)]
    ip: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    primary_ip: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlIface {
    name: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
}

const STATUSES: &[&str] = &[
    "active",
    "offline",
    "planned",
    "staged",
    "failed",
    "inventory",
    "decommissioning",
];

/// Line (1-based) of the first occurrence of `needle` at or after `from`.
fn line_of(text: &str, needle: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map_or(from.max(1), |(i, _)| i + 1)
}

fn check_ip(s: &str) -> Result<String, String> {
    let (ip, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` needs a prefix length, e.g. {s}/24"))?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|_| format!("`{s}` is not an IP address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("`{s}`: the prefix length is not a number"))?;
    if len > if ip.is_ipv4() { 32 } else { 128 } {
        return Err(format!("`{s}`: prefix length {len} is too long"));
    }
    Ok(format!("{ip}/{len}"))
}

/// Parses one YAML inventory.
pub fn parse_yaml(file: &str, text: &str) -> Result<Vec<Host>, InventoryError> {
    let err = |line: usize, message: String| InventoryError {
        file: file.to_string(),
        line,
        message,
    };
    let parsed: YamlFile = serde_yaml::from_str(text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        err(line, format!("{e}"))
    })?;
    let mut hosts = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for d in parsed.devices {
        let at = line_of(text, &format!("name: {}", d.name), 1);
        let at = if at == 1 && !text.lines().next().unwrap_or("").contains(&d.name) {
            line_of(text, &d.name, 1)
        } else {
            at
        };
        if d.name.trim().is_empty() {
            return Err(err(at, "a device has an empty name".into()));
        }
        if let Some(prev) = names.insert(d.name.to_lowercase(), at) {
            return Err(err(
                at,
                format!(
                    "device `{}` is already listed at line {prev}; names must be unique",
                    d.name
                ),
            ));
        }
        let mut h = Host::device(
            Source::Inventory,
            format!("inventory:{}", d.name.to_lowercase()),
            d.name.clone(),
        );
        h.role = d.role.unwrap_or_else(|| "Server".into());
        if let Some(m) = d.manufacturer {
            h.manufacturer = m;
        }
        if let Some(m) = d.model {
            h.model = m;
        }
        h.serial = d.serial.unwrap_or_default();
        h.description = d.description.unwrap_or_default();
        if let Some(s) = d.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(err(
                    line_of(text, &format!("status: {s}"), at),
                    format!("status `{s}` is not one of {}", STATUSES.join(", ")),
                ));
            }
            h.status = s;
        }
        let mut ifaces = d.interfaces;
        if d.ip.is_some() || d.mac.is_some() {
            ifaces.insert(
                0,
                YamlIface {
                    name: "eth0".into(),
                    kind: None,
                    mac: d.mac,
                    ips: d.ip.into_iter().collect(),
                },
            );
        }
        for i in ifaces {
            let mac = match &i.mac {
                Some(m) => Some(normalize_mac(m).ok_or_else(|| {
                    err(
                        line_of(text, m, at),
                        format!("`{m}` is not a MAC address (write it like 90:09:d0:00:00:01)"),
                    )
                })?),
                None => None,
            };
            let mut ips = Vec::new();
            for a in &i.ips {
                let address = check_ip(a).map_err(|m| err(line_of(text, a, at), m))?;
                ips.push(IpSpec {
                    address,
                    dns_name: String::new(),
                });
            }
            h.interfaces.push(Iface {
                name: i.name,
                mac,
                kind: i.kind.unwrap_or_else(|| "other".into()),
                ips,
            });
        }
        h.primary_ip4 = match d.primary_ip {
            Some(p) => {
                let p = check_ip(&p).map_err(|m| err(line_of(text, &p, at), m))?;
                if !h
                    .interfaces
                    .iter()
                    .any(|i| i.ips.iter().any(|x| x.address == p))
                {
                    return Err(err(
                        line_of(text, "primary_ip", at),
                        format!("primary_ip {p} is not one of the device's addresses"),
                    ));
                }
                Some(p)
            }
            None => first_v4(&h),
        };
        hosts.push(h);
    }
    Ok(hosts)
}

fn first_v4(h: &Host) -> Option<String> {
    h.interfaces
        .iter()
        .flat_map(|i| &i.ips)
        .find(|ip| !ip.address.contains(':'))
        .map(|ip| ip.address.clone())
}

/// Parses one CSV inventory.
pub fn parse_csv(file: &str, text: &str) -> Result<Vec<Host>, InventoryError> {
    let err = |line: usize, message: String| InventoryError {
        file: file.to_string(),
        line,
        message,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let headers = rdr.headers().map_err(|e| err(1, e.to_string()))?.clone();
    const KNOWN: &[&str] = &[
        "name",
        "ip",
        "mac",
        "interface",
        "type",
        "role",
        "manufacturer",
        "model",
        "serial",
        "status",
        "description",
    ];
    for h in &headers {
        if !KNOWN.contains(&h) {
            return Err(err(
                1,
                format!("unknown column `{h}`; columns are {}", KNOWN.join(",")),
            ));
        }
    }
    if !headers.iter().any(|h| h == "name") {
        return Err(err(1, "the header has no `name` column".into()));
    }
    let mut order: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| err(e.position().map_or(0, |p| p.line() as usize), e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let get = |k: &str| {
            headers
                .iter()
                .position(|h| h == k)
                .and_then(|i| rec.get(i))
                .unwrap_or("")
                .to_string()
        };
        let name = get("name");
        if name.is_empty() {
            return Err(err(line, "empty `name`".into()));
        }
        let key = name.to_lowercase();
        let h = hosts.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            let mut h = Host::device(Source::Inventory, format!("inventory:{key}"), name.clone());
            h.role = "Server".into();
            h
        });
        for (col, slot) in [
            ("role", &mut h.role),
            ("manufacturer", &mut h.manufacturer),
            ("model", &mut h.model),
            ("serial", &mut h.serial),
            ("description", &mut h.description),
        ] {
            let v = get(col);
            if !v.is_empty() {
                *slot = v;
            }
        }
        let status = get("status");
        if !status.is_empty() {
            if !STATUSES.contains(&status.as_str()) {
                return Err(err(
                    line,
                    format!("status `{status}` is not one of {}", STATUSES.join(", ")),
                ));
            }
            h.status = status;
        }
        let iname = match get("interface") {
            s if s.is_empty() => "eth0".to_string(),
            s => s,
        };
        let mac = match get("mac") {
            m if m.is_empty() => None,
            m => Some(
                normalize_mac(&m)
                    .ok_or_else(|| err(line, format!("`{m}` is not a MAC address")))?,
            ),
        };
        let ip = match get("ip") {
            a if a.is_empty() => None,
            a => Some(check_ip(&a).map_err(|m| err(line, m))?),
        };
        let kind = match get("type") {
            t if t.is_empty() => "other".to_string(),
            t => t,
        };
        let iface = match h.interfaces.iter_mut().position(|i| i.name == iname) {
            Some(p) => &mut h.interfaces[p],
            None => {
                h.interfaces.push(Iface {
                    name: iname,
                    mac: None,
                    kind,
                    ips: Vec::new(),
                });
                let n = h.interfaces.len() - 1;
                &mut h.interfaces[n]
            }
        };
        if mac.is_some() {
            iface.mac = mac;
        }
        if let Some(address) = ip {
            iface.ips.push(IpSpec {
                address,
                dns_name: String::new(),
            });
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|k| hosts.remove(&k))
        .map(|mut h| {
            h.primary_ip4 = first_v4(&h);
            h
        })
        .collect())
}

/// Reads every file; duplicate names across files are an error.
pub fn load(files: &[PathBuf]) -> Result<Vec<Host>, InventoryError> {
    let mut all: Vec<Host> = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let text = std::fs::read_to_string(f).map_err(|e| InventoryError {
            file: name.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        let hosts = match f.extension().and_then(|e| e.to_str()) {
            Some("csv") => parse_csv(&name, &text)?,
            _ => parse_yaml(&name, &text)?,
        };
        for h in hosts {
            if all.iter().any(|x| x.key == h.key) {
                return Err(InventoryError {
                    file: name,
                    line: 0,
                    message: format!(
                        "device `{}` is also listed in another inventory file",
                        h.name
                    ),
                });
            }
            all.push(h);
        }
    }
    Ok(all)
}

/// What the files look like now (mtime and size), to notice changes.
pub fn fingerprint(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files
        .iter()
        .map(|f| {
            std::fs::metadata(f)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "devices:\n  - name: nas01\n    role: Storage\n    interfaces:\n      - name: eth0\n        mac: \"90:09:d0:00:00:01\"\n        ips: [\"192.168.1.20/24\"]\n  - name: printer\n    ip: 192.168.1.30/24\n";

    #[test]
    fn yaml_devices() {
        let hosts = parse_yaml("inv.yaml", YAML).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].key, "inventory:nas01");
        assert_eq!(hosts[0].role, "Storage");
        assert_eq!(
            hosts[0].interfaces[0].mac.as_deref(),
            Some("90:09:D0:00:00:01")
        );
        assert_eq!(hosts[0].primary_ip4.as_deref(), Some("192.168.1.20/24"));
        assert_eq!(hosts[1].interfaces[0].name, "eth0");
        assert_eq!(hosts[1].role, "Server");
    }

    #[test]
    fn yaml_errors_name_the_line() {
        let bad = YAML.replace("192.168.1.30/24", "192.168.1.300/24");
        let e = parse_yaml("inv.yaml", &bad).unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(e.message.contains("192.168.1.300/24"), "{e}");
        let bad = YAML.replace("90:09:d0:00:00:01", "90:09:zz");
        let e = parse_yaml("inv.yaml", &bad).unwrap_err();
        assert_eq!(e.line, 6, "{e}");
        let bad = YAML.replace("role: Storage", "rol: Storage");
        let e = parse_yaml("inv.yaml", &bad).unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert!(e.message.contains("rol"), "{e}");
        let dup = format!("{YAML}  - name: nas01\n");
        let e = parse_yaml("inv.yaml", &dup).unwrap_err();
        assert!(e.message.contains("already listed at line 2"), "{e}");
    }

    #[test]
    fn csv_rows_merge_by_name_and_errors_name_the_line() {
        let text = "name,ip,mac,role\nnas01,192.168.1.20/24,90:09:d0:00:00:01,Storage\nnas01,192.168.1.21/24,,\nap,192.168.1.40/24,,\n";
        let hosts = parse_csv("inv.csv", text).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].interfaces[0].ips.len(), 2);
        let bad = text.replace("192.168.1.40/24", "nope");
        let e = parse_csv("inv.csv", &bad).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse_csv("inv.csv", "name,colour\nx,red\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("colour"), "{e}");
    }
}
