//! TrueNAS source: JSON-RPC 2.0 over WebSocket (`/api/current`, TrueNAS
//! 25.04+) first, REST v2.0 (`/api/v2.0/`, ≤ 24.10, removed in 26) as the
//! fallback.
//!
//! The system becomes one device (role "Storage"; manufacturer, model and
//! serial from `system.info`), its interfaces with MACs (`state.link_address`)
//! and configured addresses (`aliases`, falling back to `state.aliases`).
//! Pools, datasets and shares are **custom-field data**, not NetBox objects:
//! the device's JSON custom field `agent_storage` holds
//! `{"pools": [...], "datasets": [...], "shares": {"nfs": [...], "smb": [...]}}`
//! (NetBox has no model for them; one field keeps them with the device and
//! out of unrelated object types). Datasets are flattened from `children`
//! and de-duplicated by id. Key: `truenas:<hostname>`.
//!
//! Transport rule: an API key used over plain http/ws to a non-local address
//! is revoked by TrueNAS, so the config refuses such URLs (see
//! `config::Config::validate`).

use std::collections::BTreeMap;
use std::time::Duration;

use agent_runtime::Secret;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{ACCEPT, AUTHORIZATION};
use hyper::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::config::TruenasApi;
use crate::model::{normalize_mac, Host, Iface, IpSpec, Source};
use crate::sync::CF_STORAGE;
use crate::transport::{self, Endpoint};

const METHODS: [&str; 6] = [
    "system.info",
    "interface.query",
    "pool.query",
    "pool.dataset.query",
    "sharing.nfs.query",
    "sharing.smb.query",
];

/// A TrueNAS client for one cycle.
pub struct Truenas<'a> {
    /// Base URL.
    pub base: &'a Endpoint,
    /// API key.
    pub key: &'a Secret,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Which API.
    pub api: TruenasApi,
}

impl Truenas<'_> {
    async fn websocket(&self) -> Result<BTreeMap<&'static str, Value>, String> {
        let url = self.base.ws_url("/api/current");
        let work = async {
            let stream = self
                .base
                .connect(self.timeout)
                .await
                .map_err(|e| format!("TrueNAS WebSocket {url}: {e}"))?;
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(|e| format!("TrueNAS WebSocket {url}: {e}"))?;
            let call = |id: u64, method: &str, params: Value| {
                Message::text(
                    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
                        .to_string(),
                )
            };
            ws.send(call(
                1,
                "auth.login_with_api_key",
                json!([self.key.expose()]),
            ))
            .await
            .map_err(|e| format!("TrueNAS WebSocket: {e}"))?;
            let auth = next_json(&mut ws).await?;
            if auth["result"] != true {
                return Err("TrueNAS refused the API key (auth.login_with_api_key); put a valid key in truenas_api_key".to_string());
            }
            for (i, m) in METHODS.iter().enumerate() {
                ws.send(call(i as u64 + 2, m, json!([])))
                    .await
                    .map_err(|e| format!("TrueNAS WebSocket: {e}"))?;
            }
            let mut out = BTreeMap::new();
            while out.len() < METHODS.len() {
                let msg = next_json(&mut ws).await?;
                let Some(id) = msg["id"].as_u64() else {
                    continue;
                };
                let Some(m) = METHODS.get((id as usize).wrapping_sub(2)) else {
                    continue;
                };
                if let Some(e) = msg.get("error") {
                    return Err(format!(
                        "TrueNAS {m}: {}",
                        e["message"].as_str().unwrap_or("error")
                    ));
                }
                out.insert(*m, msg["result"].clone());
            }
            let _ = ws.close(None).await;
            Ok(out)
        };
        tokio::time::timeout(self.timeout * 3, work)
            .await
            .map_err(|_| {
                format!(
                    "TrueNAS WebSocket {url}: no complete answer within {:?}",
                    self.timeout * 3
                )
            })?
    }

    async fn rest(&self) -> Result<BTreeMap<&'static str, Value>, String> {
        let headers = [
            (ACCEPT, "application/json".to_string()),
            (AUTHORIZATION, format!("Bearer {}", self.key.expose())),
        ];
        let mut out = BTreeMap::new();
        for (m, path) in METHODS.iter().zip([
            "/api/v2.0/system/info",
            "/api/v2.0/interface",
            "/api/v2.0/pool",
            "/api/v2.0/pool/dataset",
            "/api/v2.0/sharing/nfs",
            "/api/v2.0/sharing/smb",
        ]) {
            let resp = transport::send(self.base, Method::GET, path, &headers, None, self.timeout)
                .await
                .map_err(|e| format!("TrueNAS {path}: {e}"))?;
            match resp.status {
                200 => {
                    out.insert(
                        *m,
                        resp.json()
                            .ok_or_else(|| format!("TrueNAS {path}: not JSON"))?,
                    );
                }
                401 | 403 => return Err(
                    "TrueNAS refused the API key (REST 401); put a valid key in truenas_api_key"
                        .into(),
                ),
                s => return Err(format!("TrueNAS {path}: HTTP {s}")),
            }
        }
        Ok(out)
    }

    /// Reads the system and maps it to a host.
    pub async fn discover(&self) -> Result<(Vec<Host>, &'static str), String> {
        let (data, api) = match self.api {
            TruenasApi::Websocket => (self.websocket().await?, "websocket"),
            TruenasApi::Rest => (self.rest().await?, "rest"),
            TruenasApi::Auto => match self.websocket().await {
                Ok(d) => (d, "websocket"),
                // A refused key is final; anything else may be an older
                // TrueNAS without the JSON-RPC API.
                Err(e) if e.contains("refused the API key") => return Err(e),
                Err(e) => {
                    tracing::info!("TrueNAS WebSocket API unavailable ({e}); trying REST v2.0");
                    (self.rest().await?, "rest")
                }
            },
        };
        Ok((vec![host(&data)], api))
    }
}

async fn next_json<S>(ws: &mut S) -> Result<Value, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str(t.as_str())
                    .map_err(|e| format!("TrueNAS WebSocket: not JSON: {e}"))
            }
            Some(Ok(Message::Close(_))) | None => return Err("TrueNAS closed the WebSocket".into()),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("TrueNAS WebSocket: {e}")),
        }
    }
}

fn flatten<'a>(items: &'a [Value], out: &mut Vec<&'a Value>) {
    for d in items {
        out.push(d);
        if let Some(c) = d["children"].as_array() {
            flatten(c, out);
        }
    }
}

/// The method results → one host (pure).
pub fn host(data: &BTreeMap<&'static str, Value>) -> Host {
    let info = data.get("system.info").cloned().unwrap_or(Value::Null);
    let name = info["hostname"].as_str().unwrap_or("truenas").to_string();
    let mut h = Host::device(
        Source::Truenas,
        format!("truenas:{}", name.to_lowercase()),
        &name,
    );
    h.role = "Storage".into();
    h.manufacturer = info["system_manufacturer"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("iXsystems")
        .into();
    h.model = info["system_product"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("TrueNAS")
        .into();
    h.serial = info["system_serial"].as_str().unwrap_or("").into();
    h.description = info["version"].as_str().unwrap_or("TrueNAS").into();
    for i in data
        .get("interface.query")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(iname) = i["name"].as_str() else {
            continue;
        };
        let aliases = match i["aliases"].as_array() {
            Some(a) if !a.is_empty() => a.clone(),
            _ => i["state"]["aliases"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        };
        let ips = aliases
            .iter()
            .filter(|a| matches!(a["type"].as_str(), Some("INET" | "INET6")))
            .filter_map(|a| {
                Some(format!(
                    "{}/{}",
                    a["address"].as_str()?,
                    a["netmask"].as_u64()?
                ))
            })
            .filter(|a| !a.starts_with("fe80:") && !a.starts_with("127."))
            .map(|address| IpSpec {
                address,
                dns_name: String::new(),
            })
            .collect();
        let kind = match i["type"].as_str() {
            Some("BRIDGE") => "bridge",
            Some("LINK_AGGREGATION") => "lag",
            Some("VLAN") => "virtual",
            _ => "other",
        };
        h.interfaces.push(Iface {
            name: iname.into(),
            mac: i["state"]["link_address"].as_str().and_then(normalize_mac),
            kind: kind.into(),
            ips,
        });
    }
    h.primary_ip4 = h
        .interfaces
        .iter()
        .flat_map(|i| &i.ips)
        .find(|ip| !ip.address.contains(':'))
        .map(|ip| ip.address.clone());
    let pools: Vec<Value> = data
        .get("pool.query")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|p| json!({"name": p["name"], "guid": p["guid"], "status": p["status"], "healthy": p["healthy"], "size": p["size"], "allocated": p["allocated"], "free": p["free"]}))
        .collect();
    let mut flat = Vec::new();
    let top = data
        .get("pool.dataset.query")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    flatten(&top, &mut flat);
    let mut datasets: BTreeMap<String, Value> = BTreeMap::new();
    for d in flat {
        let Some(id) = d["id"].as_str() else { continue };
        // `name`, not `id`: the sync reads an object with an `id` as a reference.
        datasets.entry(id.to_string()).or_insert_with(|| {
            json!({"name": id, "pool": d["pool"], "type": d["type"], "mountpoint": d["mountpoint"], "used": d["used"]["parsed"], "available": d["available"]["parsed"]})
        });
    }
    let nfs: Vec<Value> = data
        .get("sharing.nfs.query")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| json!({"path": s.get("path").or(s.get("paths")).cloned().unwrap_or(Value::Null), "enabled": s["enabled"]}))
        .collect();
    let smb: Vec<Value> = data
        .get("sharing.smb.query")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| json!({"name": s["name"], "path": s["path"], "enabled": s["enabled"]}))
        .collect();
    h.extra.insert(
        CF_STORAGE.into(),
        json!({"pools": pools, "datasets": datasets.into_values().collect::<Vec<_>>(), "shares": {"nfs": nfs, "smb": smb}}),
    );
    h
}
