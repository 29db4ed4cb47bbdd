//! Proxmox VE API source: nodes as devices (with their network interfaces
//! and addresses), guests (QEMU and LXC) as VMs in one cluster.
//!
//! Auth: `Authorization: PVEAPIToken=<user@realm!tokenid>=<secret>` (no
//! ticket, no CSRF token); the token needs `PVEAuditor` on `/` (plus
//! `VM.GuestAgent.Audit` on PVE 9 / `VM.Monitor` on PVE 8 for guest-agent
//! addresses). Calls: `/cluster/status` (cluster name), `/nodes`,
//! `/nodes/{n}/network`, `/cluster/resources?type=vm`,
//! `/nodes/{n}/{qemu|lxc}/{vmid}/config` (`netN` → interfaces and MACs,
//! LXC static `ip=`), and for running guests
//! `/nodes/{n}/lxc/{vmid}/interfaces` or
//! `/nodes/{n}/qemu/{vmid}/agent/network-get-interfaces` (an error there,
//! e.g. "QEMU guest agent is not running", only means no runtime
//! addresses). Templates are skipped. Loopback and link-local addresses are
//! dropped. Natural keys: `proxmox:node/<node>`, `proxmox:<cluster>/<vmid>`.

use std::time::Duration;

use agent_runtime::Secret;
use hyper::header::{ACCEPT, AUTHORIZATION};
use hyper::Method;
use serde_json::Value;

use crate::model::{normalize_mac, Host, Iface, IpSpec, Source, VmInfo};
use crate::transport::{self, Endpoint};

/// A Proxmox API client for one cycle.
pub struct Proxmox<'a> {
    /// Base URL.
    pub base: &'a Endpoint,
    /// `user@realm!tokenid`.
    pub token_id: &'a str,
    /// The token's secret.
    pub secret: &'a Secret,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Cluster name override.
    pub cluster: Option<&'a str>,
}

impl Proxmox<'_> {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let headers = [
            (ACCEPT, "application/json".to_string()),
            (
                AUTHORIZATION,
                format!("PVEAPIToken={}={}", self.token_id, self.secret.expose()),
            ),
        ];
        let full = format!("/api2/json{path}");
        let resp = transport::send(self.base, Method::GET, &full, &headers, None, self.timeout)
            .await
            .map_err(|e| format!("Proxmox {full}: {e}"))?;
        match resp.status {
            200 => resp
                .json()
                .and_then(|v| v.get("data").cloned())
                .ok_or_else(|| format!("Proxmox {full}: answer has no `data`")),
            401 => Err(format!("Proxmox refused the API token ({full}: 401); check sources.proxmox.token_id and proxmox_token_secret")),
            403 => Err(format!("Proxmox {full}: 403, the token lacks a privilege; give it the PVEAuditor role on /")),
            s => Err(format!("Proxmox {full}: HTTP {s}: {}", String::from_utf8_lossy(&resp.body).chars().take(200).collect::<String>())),
        }
    }

    /// Reads nodes and guests.
    pub async fn discover(&self) -> Result<Vec<Host>, String> {
        let status = self.get("/cluster/status").await?;
        let cluster = self
            .cluster
            .map(str::to_string)
            .or_else(|| {
                status
                    .as_array()?
                    .iter()
                    .find(|e| e["type"] == "cluster")
                    .and_then(|e| e["name"].as_str().map(str::to_string))
            })
            .unwrap_or_else(|| "pve".into());
        let mut hosts = Vec::new();
        let nodes = self.get("/nodes").await?;
        for n in nodes.as_array().into_iter().flatten() {
            let Some(node) = n["node"].as_str() else {
                continue;
            };
            let mut h = Host::device(Source::Proxmox, format!("proxmox:node/{node}"), node);
            h.role = "Hypervisor".into();
            h.manufacturer = "Proxmox".into();
            h.model = "Proxmox VE node".into();
            h.status = if n["status"] == "online" {
                "active".into()
            } else {
                "offline".into()
            };
            if let Ok(net) = self.get(&format!("/nodes/{node}/network")).await {
                h.interfaces = node_interfaces(&net);
            }
            h.primary_ip4 = first_v4(&h.interfaces);
            hosts.push(h);
        }
        let guests = self.get("/cluster/resources?type=vm").await?;
        for g in guests.as_array().into_iter().flatten() {
            if g["template"].as_u64() == Some(1) {
                continue;
            }
            let (Some(node), Some(vmid), Some(kind)) =
                (g["node"].as_str(), g["vmid"].as_u64(), g["type"].as_str())
            else {
                continue;
            };
            let name = g["name"]
                .as_str()
                .map_or_else(|| format!("{kind}-{vmid}"), str::to_string);
            let mut h = Host::device(Source::Proxmox, format!("proxmox:{cluster}/{vmid}"), name);
            h.labels = g["tags"]
                .as_str()
                .unwrap_or("")
                .split([';', ',', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            h.role = if kind == "lxc" {
                "Container".into()
            } else {
                "Virtual machine".into()
            };
            let running = g["status"] == "running";
            h.status = if running {
                "active".into()
            } else {
                "offline".into()
            };
            h.vm = Some(VmInfo {
                cluster: cluster.clone(),
                vcpus: g["maxcpu"].as_f64(),
                memory_mb: g["maxmem"].as_u64().map(|b| b / 1_048_576),
                disk_mb: g["maxdisk"].as_u64().map(|b| b / 1_048_576),
            });
            let config = self
                .get(&format!("/nodes/{node}/{kind}/{vmid}/config"))
                .await
                .unwrap_or(Value::Null);
            h.description = format!(
                "Proxmox {} {vmid} on {node}",
                if kind == "lxc" { "container" } else { "VM" }
            );
            h.interfaces = guest_interfaces(kind, &config);
            if running {
                let runtime = if kind == "lxc" {
                    self.get(&format!("/nodes/{node}/lxc/{vmid}/interfaces"))
                        .await
                        .ok()
                } else {
                    self.get(&format!(
                        "/nodes/{node}/qemu/{vmid}/agent/network-get-interfaces"
                    ))
                    .await
                    .ok()
                };
                if let Some(r) = runtime {
                    add_runtime_ips(&mut h.interfaces, &r);
                }
            }
            h.primary_ip4 = first_v4(&h.interfaces);
            hosts.push(h);
        }
        Ok(hosts)
    }
}

fn usable(addr: &str) -> bool {
    let ip = addr.split('/').next().unwrap_or("");
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v)) => {
            !v.is_loopback() && !v.is_link_local() && !v.is_unspecified()
        }
        Ok(std::net::IpAddr::V6(v)) => {
            !v.is_loopback() && (v.segments()[0] & 0xffc0) != 0xfe80 && !v.is_unspecified()
        }
        Err(_) => false,
    }
}

fn first_v4(ifs: &[Iface]) -> Option<String> {
    ifs.iter()
        .flat_map(|i| &i.ips)
        .find(|ip| !ip.address.contains(':'))
        .map(|ip| ip.address.clone())
}

/// `/nodes/{node}/network` → interfaces.
pub fn node_interfaces(net: &Value) -> Vec<Iface> {
    let mut out: Vec<Iface> = net
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let name = i["iface"].as_str()?.to_string();
            let kind = match i["type"].as_str().unwrap_or("") {
                "bridge" | "OVSBridge" => "bridge",
                "bond" | "OVSBond" => "lag",
                "vlan" | "OVSIntPort" => "virtual",
                "eth" => "other",
                _ => return None,
            };
            let mut ips = Vec::new();
            if let Some(c) = i["cidr"].as_str().filter(|c| usable(c)) {
                ips.push(IpSpec {
                    address: c.to_string(),
                    dns_name: String::new(),
                });
            }
            if let Some(c) = i["cidr6"].as_str().filter(|c| usable(c)) {
                ips.push(IpSpec {
                    address: c.to_string(),
                    dns_name: String::new(),
                });
            }
            Some(Iface {
                name,
                mac: None,
                kind: kind.into(),
                ips,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// `netN` lines of a guest config → interfaces (QEMU: `virtio=MAC,...`,
/// LXC: `name=eth0,hwaddr=MAC,ip=CIDR|dhcp,...`).
pub fn guest_interfaces(kind: &str, config: &Value) -> Vec<Iface> {
    let mut out = Vec::new();
    let Some(map) = config.as_object() else {
        return out;
    };
    let mut keys: Vec<&String> = map
        .keys()
        .filter(|k| k.starts_with("net") && k[3..].parse::<u32>().is_ok())
        .collect();
    keys.sort_by_key(|k| k[3..].parse::<u32>().unwrap_or(0));
    for k in keys {
        let Some(line) = map[k].as_str() else {
            continue;
        };
        let mut name = k.clone();
        let mut mac = None;
        let mut ips = Vec::new();
        for part in line.split(',') {
            let (key, val) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "name" if kind == "lxc" => name = val.to_string(),
                "hwaddr" => mac = normalize_mac(val),
                "ip" | "ip6" if kind == "lxc" && val.contains('/') && usable(val) => {
                    ips.push(IpSpec {
                        address: val.to_string(),
                        dns_name: String::new(),
                    });
                }
                // QEMU: the model key's value is the MAC.
                "virtio" | "e1000" | "e1000e" | "rtl8139" | "vmxnet3" if kind == "qemu" => {
                    mac = normalize_mac(val)
                }
                _ => {}
            }
        }
        out.push(Iface {
            name,
            mac,
            kind: "virtual".into(),
            ips,
        });
    }
    out
}

/// Runtime addresses (LXC `/interfaces` or the QEMU guest agent), matched to
/// the configured interfaces by MAC, else by name.
pub fn add_runtime_ips(ifs: &mut [Iface], runtime: &Value) {
    let list = runtime.get("result").unwrap_or(runtime);
    for r in list.as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("");
        if name == "lo" {
            continue;
        }
        let mac = r["hwaddr"]
            .as_str()
            .or(r["hardware-address"].as_str())
            .and_then(normalize_mac);
        let mut addrs: Vec<String> = Vec::new();
        for k in ["inet", "inet6"] {
            if let Some(a) = r[k].as_str() {
                addrs.push(a.to_string());
            }
        }
        for a in r["ip-addresses"].as_array().into_iter().flatten() {
            if let (Some(ip), Some(p)) = (a["ip-address"].as_str(), a["prefix"].as_u64()) {
                addrs.push(format!("{ip}/{p}"));
            }
        }
        let idx = ifs
            .iter()
            .position(|i| mac.is_some() && i.mac == mac)
            .or_else(|| ifs.iter().position(|i| i.name == name));
        let Some(idx) = idx else { continue };
        for a in addrs.into_iter().filter(|a| usable(a)) {
            let host = a.split('/').next().unwrap_or("").to_string();
            if !ifs[idx]
                .ips
                .iter()
                .any(|x| x.address.split('/').next() == Some(host.as_str()))
            {
                ifs[idx].ips.push(IpSpec {
                    address: a,
                    dns_name: String::new(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qemu_and_lxc_net_lines() {
        let q = guest_interfaces(
            "qemu",
            &json!({"net0": "virtio=BC:24:11:00:01:40,bridge=vmbr0,tag=10,firewall=1", "name": "web01"}),
        );
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].name.as_str(), q[0].mac.as_deref()),
            ("net0", Some("BC:24:11:00:01:40"))
        );
        let l = guest_interfaces(
            "lxc",
            &json!({"net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:01:41,ip=192.168.1.141/24,gw=192.168.1.1,type=veth", "net1": "name=eth1,bridge=vmbr1,hwaddr=BC:24:11:00:01:42,ip=dhcp"}),
        );
        assert_eq!(l[0].name, "eth0");
        assert_eq!(l[0].ips[0].address, "192.168.1.141/24");
        assert!(l[1].ips.is_empty());
    }

    #[test]
    fn runtime_addresses_join_by_mac_and_skip_loopback() {
        let mut q = guest_interfaces(
            "qemu",
            &json!({"net0": "virtio=BC:24:11:00:01:40,bridge=vmbr0"}),
        );
        add_runtime_ips(
            &mut q,
            &json!({"result": [
                {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}]},
                {"name": "ens18", "hardware-address": "bc:24:11:00:01:40", "ip-addresses": [
                    {"ip-address": "192.168.1.140", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "fe80::be24:11ff:fe00:140", "ip-address-type": "ipv6", "prefix": 64}]}
            ]}),
        );
        assert_eq!(q[0].ips.len(), 1);
        assert_eq!(q[0].ips[0].address, "192.168.1.140/24");
    }

    #[test]
    fn node_network() {
        let n = node_interfaces(&json!([
            {"iface": "vmbr0", "type": "bridge", "cidr": "192.168.1.10/24", "address": "192.168.1.10", "netmask": "24", "bridge_ports": "eno1", "active": 1},
            {"iface": "eno1", "type": "eth", "active": 1},
            {"iface": "lo", "type": "loopback"}
        ]));
        assert_eq!(n.len(), 2);
        assert_eq!(n[1].name, "vmbr0");
        assert_eq!(n[1].ips[0].address, "192.168.1.10/24");
    }
}
