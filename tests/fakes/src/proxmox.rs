//! Fake Proxmox VE API (`/api2/json/...`) for netbox-agent's Proxmox
//! source: a node `pve1`, a QEMU VM with the guest agent running, a QEMU VM
//! without it, a running LXC container and a template, in the payload shapes
//! the real API returns (`{"data": ...}`, fields as documented in
//! `../shared/netbox.md` section 5: `/cluster/status`, `/nodes`,
//! `/nodes/{node}/network`, `/cluster/resources?type=vm`, guest `config`
//! with `netN` lines, LXC `/interfaces`, QEMU
//! `/agent/network-get-interfaces` and its 500 when the agent is not
//! running). Guests can be removed (`destroy`) to test orphaning.
//!
//! Auth: `Authorization: PVEAPIToken=<user@realm!tokenid>=<secret>`; anything
//! else is 401 (`{"data":null}`), as PVE answers a bad token.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::server::{serve, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::Reply;
use crate::Error;

/// One guest.
#[derive(Debug, Clone)]
struct Guest {
    vmid: u64,
    kind: &'static str,
    name: &'static str,
    running: bool,
    template: bool,
    config: Value,
    runtime: Option<Value>,
}

/// The fake (shared with its server).
#[derive(Debug)]
pub struct ProxmoxFake {
    token: String,
    guests: Mutex<Vec<Guest>>,
}

/// A running fake Proxmox.
#[derive(Debug)]
pub struct RunningProxmox {
    /// HTTP side.
    pub handle: Handle,
    /// The guests (remove one with [`ProxmoxFake::destroy`]).
    pub fake: Arc<ProxmoxFake>,
}

impl ProxmoxFake {
    /// A fake accepting `PVEAPIToken=<token_id>=<secret>`.
    pub fn new(token_id: &str, secret: &str) -> Self {
        let guests = vec![
            Guest {
                vmid: 140,
                kind: "qemu",
                name: "web01",
                running: true,
                template: false,
                config: json!({"name": "web01", "memory": 2048, "cores": 2, "sockets": 1, "onboot": 1, "agent": "1", "ostype": "l26", "net0": "virtio=BC:24:11:00:01:40,bridge=vmbr0,firewall=1", "digest": "0f1e"}),
                runtime: Some(json!({"result": [
                    {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}], "statistics": {"rx-bytes": 1, "tx-bytes": 1}},
                    {"name": "ens18", "hardware-address": "bc:24:11:00:01:40", "ip-addresses": [
                        {"ip-address": "192.168.1.140", "ip-address-type": "ipv4", "prefix": 24},
                        {"ip-address": "fe80::be24:11ff:fe00:140", "ip-address-type": "ipv6", "prefix": 64}], "statistics": {"rx-bytes": 1, "tx-bytes": 1}}
                ]})),
            },
            Guest {
                vmid: 141,
                kind: "qemu",
                name: "db01",
                running: true,
                template: false,
                config: json!({"name": "db01", "memory": 4096, "cores": 4, "sockets": 1, "net0": "virtio=BC:24:11:00:01:41,bridge=vmbr0", "digest": "1a2b"}),
                runtime: None,
            },
            Guest {
                vmid: 150,
                kind: "lxc",
                name: "dns",
                running: true,
                template: false,
                config: json!({"hostname": "dns", "memory": 512, "cores": 1, "unprivileged": 1, "ostype": "debian", "net0": "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:01:50,ip=192.168.1.150/24,gw=192.168.1.1,type=veth", "digest": "3c4d"}),
                runtime: Some(json!([
                    {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"},
                    {"name": "eth0", "hwaddr": "bc:24:11:00:01:50", "inet": "192.168.1.150/24", "inet6": "fe80::be24:11ff:fe00:150/64"}
                ])),
            },
            Guest {
                vmid: 9000,
                kind: "qemu",
                name: "debian-template",
                running: false,
                template: true,
                config: json!({"name": "debian-template", "template": 1}),
                runtime: None,
            },
        ];
        Self {
            token: format!("PVEAPIToken={token_id}={secret}"),
            guests: Mutex::new(guests),
        }
    }

    /// Serves on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<RunningProxmox, Error> {
        let fake = Arc::new(self);
        let handle = serve(
            Arc::new(Shared(Arc::clone(&fake))) as Arc<dyn Upstream>,
            addr,
        )
        .await?;
        Ok(RunningProxmox { handle, fake })
    }

    /// Removes guest `vmid` (as `qm destroy`/`pct destroy` would).
    pub fn destroy(&self, vmid: u64) {
        self.guests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|g| g.vmid != vmid);
    }

    fn answer_path(&self, path: &str) -> (u16, Value) {
        let guests = self
            .guests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let data = |v: Value| (200, json!({ "data": v }));
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["cluster", "status"] => data(json!([
                {"type": "cluster", "id": "cluster", "name": "homelab", "nodes": 1, "quorate": 1, "version": 3},
                {"type": "node", "id": "node/pve1", "name": "pve1", "ip": "192.168.1.10", "local": 1, "nodeid": 1, "online": 1, "level": ""}
            ])),
            ["nodes"] => data(json!([
                {"node": "pve1", "status": "online", "cpu": 0.03, "maxcpu": 8, "mem": 4_294_967_296u64, "maxmem": 34_359_738_368u64, "uptime": 86400, "type": "node", "id": "node/pve1", "level": "", "ssl_fingerprint": "AA:BB"}
            ])),
            ["nodes", "pve1", "network"] => data(json!([
                {"iface": "vmbr0", "type": "bridge", "method": "static", "cidr": "192.168.1.10/24", "address": "192.168.1.10", "netmask": "24", "gateway": "192.168.1.1", "bridge_ports": "eno1", "bridge_stp": "off", "bridge_fd": "0", "active": 1, "autostart": 1, "families": ["inet"], "priority": 3},
                {"iface": "eno1", "type": "eth", "method": "manual", "active": 1, "exists": 1, "families": ["inet"], "priority": 2},
                {"iface": "lo", "type": "loopback", "method": "loopback", "active": 1, "autostart": 1, "families": ["inet"], "priority": 1}
            ])),
            ["cluster", "resources"] => data(Value::Array(
                guests
                    .iter()
                    .map(|g| {
                        json!({
                            "id": format!("{}/{}", g.kind, g.vmid), "type": g.kind, "vmid": g.vmid, "name": g.name,
                            "node": "pve1", "status": if g.running { "running" } else { "stopped" },
                            "template": u8::from(g.template), "maxcpu": g.config.get("cores").and_then(Value::as_u64).unwrap_or(1),
                            "maxmem": g.config.get("memory").and_then(Value::as_u64).unwrap_or(512) * 1_048_576,
                            "maxdisk": 8_589_934_592u64, "uptime": if g.running { 3600 } else { 0 },
                            "tags": "netbox;web", "hastate": null, "pool": null,
                        })
                    })
                    .collect(),
            )),
            ["nodes", "pve1", kind, vmid, rest @ ..] => {
                let Some(g) = guests.iter().find(|g| g.kind == *kind && vmid.parse() == Ok(g.vmid)) else {
                    return (500, json!({"data": null, "message": format!("Configuration file 'nodes/pve1/{kind}/{vmid}.conf' does not exist\n")}));
                };
                match rest {
                    ["config"] => data(g.config.clone()),
                    ["interfaces"] if g.kind == "lxc" => match &g.runtime {
                        Some(r) if g.running => data(r.clone()),
                        _ => (500, json!({"data": null, "message": "CT is not running\n"})),
                    },
                    ["agent", "network-get-interfaces"] if g.kind == "qemu" => match &g.runtime {
                        Some(r) if g.running => data(r.clone()),
                        _ => (500, json!({"data": null, "message": "QEMU guest agent is not running\n"})),
                    },
                    _ => (501, json!({"data": null, "message": "Method not implemented"})),
                }
            }
            _ => (501, json!({"data": null, "message": "Method not implemented"})),
        }
    }
}

#[derive(Debug)]
struct Shared(Arc<ProxmoxFake>);

impl Upstream for Shared {
    fn name(&self) -> &'static str {
        "proxmox"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        let (status, body) = if req.authorization() != Some(self.0.token.as_str()) {
            (401, json!({"data": null}))
        } else if let Some(path) = req.path().strip_prefix("/api2/json") {
            self.0.answer_path(path)
        } else {
            (
                501,
                json!({"data": null, "message": "Method not implemented"}),
            )
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
        Answer::Reply {
            reply: Reply {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            },
            from: "proxmox-fake".into(),
            note: None,
        }
    }
}
