//! Home Assistant source: REST (`/api/config`, `/api/states`) plus the
//! WebSocket registries (`config/device_registry/list`,
//! `config/entity_registry/list`, `config/area_registry/list`).
//!
//! Hosts: every entity whose attributes carry an `ip` or a `mac`
//! (`device_tracker` entities of router integrations, `source_type` router),
//! enriched through the entity registry → device registry (manufacturer,
//! model, name, area), plus registry devices with a `mac` connection that no
//! tracker reports (MAC only). Names: the tracker's `host_name`, else the
//! device's `name_by_user`/`name`, else `friendly_name`. Keys: `ha:mac:<MAC>`,
//! else `ha:entity:<entity_id>`. Auth: `Authorization: Bearer <token>` on
//! REST (401 on a bad token), `{"type":"auth","access_token":…}` on the
//! WebSocket (`auth_invalid` on a bad one).

use std::collections::BTreeMap;
use std::time::Duration;

use agent_runtime::Secret;
use futures_util::{SinkExt, StreamExt};
use hyper::header::{ACCEPT, AUTHORIZATION};
use hyper::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::model::{normalize_mac, Host, Iface, IpSpec, Source};
use crate::transport::{self, Endpoint};

/// A Home Assistant client for one cycle.
pub struct HomeAssistant<'a> {
    /// Base URL (`http://ha.lan:8123`).
    pub base: &'a Endpoint,
    /// Long-lived access token.
    pub token: &'a Secret,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Prefix length for the bare addresses HA reports.
    pub prefix_length: u8,
}

/// The three registries.
#[derive(Debug, Default)]
pub struct Registries {
    /// `config/device_registry/list`.
    pub devices: Vec<Value>,
    /// `config/entity_registry/list`.
    pub entities: Vec<Value>,
    /// `config/area_registry/list`.
    pub areas: Vec<Value>,
}

impl HomeAssistant<'_> {
    async fn rest(&self, path: &str) -> Result<Value, String> {
        let headers = [
            (ACCEPT, "application/json".to_string()),
            (AUTHORIZATION, format!("Bearer {}", self.token.expose())),
        ];
        let resp = transport::send(self.base, Method::GET, path, &headers, None, self.timeout)
            .await
            .map_err(|e| format!("Home Assistant {path}: {e}"))?;
        match resp.status {
            200 => resp.json().ok_or_else(|| format!("Home Assistant {path}: the answer is not JSON")),
            401 => Err("Home Assistant refused the token (401); put a valid long-lived access token in home_assistant_token".into()),
            s => Err(format!("Home Assistant {path}: HTTP {s}")),
        }
    }

    /// Reads the registries over the WebSocket API.
    pub async fn registries(&self) -> Result<Registries, String> {
        let url = self.base.ws_url("/api/websocket");
        let work = async {
            let stream = self
                .base
                .connect(self.timeout)
                .await
                .map_err(|e| format!("Home Assistant WebSocket {url}: {e}"))?;
            let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
                .await
                .map_err(|e| format!("Home Assistant WebSocket {url}: {e}"))?;
            let hello = next_json(&mut ws).await?;
            if hello["type"] != "auth_required" {
                return Err(format!(
                    "Home Assistant WebSocket: expected auth_required, got {}",
                    hello["type"]
                ));
            }
            ws.send(Message::text(
                json!({"type": "auth", "access_token": self.token.expose()}).to_string(),
            ))
            .await
            .map_err(|e| format!("Home Assistant WebSocket: {e}"))?;
            let auth = next_json(&mut ws).await?;
            match auth["type"].as_str() {
                Some("auth_ok") => {}
                Some("auth_invalid") => {
                    return Err(format!(
                        "Home Assistant refused the token on the WebSocket ({}); put a valid long-lived access token in home_assistant_token",
                        auth["message"].as_str().unwrap_or("auth_invalid")
                    ))
                }
                other => return Err(format!("Home Assistant WebSocket: unexpected {other:?} after auth")),
            }
            let commands = [
                "config/device_registry/list",
                "config/entity_registry/list",
                "config/area_registry/list",
            ];
            for (i, c) in commands.iter().enumerate() {
                ws.send(Message::text(json!({"id": i + 1, "type": c}).to_string()))
                    .await
                    .map_err(|e| format!("Home Assistant WebSocket: {e}"))?;
            }
            let mut results: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
            while results.len() < commands.len() {
                let msg = next_json(&mut ws).await?;
                let Some(id) = msg["id"].as_u64() else {
                    continue;
                };
                if msg["success"] != true {
                    return Err(format!(
                        "Home Assistant {}: {}",
                        commands.get(id as usize - 1).unwrap_or(&"command"),
                        msg["error"]["message"].as_str().unwrap_or("failed")
                    ));
                }
                results.insert(id, msg["result"].as_array().cloned().unwrap_or_default());
            }
            let _ = ws.close(None).await;
            Ok(Registries {
                devices: results.remove(&1).unwrap_or_default(),
                entities: results.remove(&2).unwrap_or_default(),
                areas: results.remove(&3).unwrap_or_default(),
            })
        };
        tokio::time::timeout(self.timeout * 3, work)
            .await
            .map_err(|_| {
                format!(
                    "Home Assistant WebSocket {url}: no complete answer within {:?}",
                    self.timeout * 3
                )
            })?
    }

    /// Reads everything and maps it to hosts.
    pub async fn discover(&self) -> Result<Vec<Host>, String> {
        let config = self.rest("/api/config").await?;
        let states = self.rest("/api/states").await?;
        let reg = self.registries().await?;
        Ok(hosts(&config, &states, &reg, self.prefix_length))
    }
}

/// The next text message as JSON (other frames skipped).
async fn next_json<S>(ws: &mut S) -> Result<Value, String>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                return serde_json::from_str::<Value>(t.as_str())
                    .map_err(|e| format!("Home Assistant WebSocket: not JSON: {e}"))
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err("Home Assistant closed the WebSocket".to_string())
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("Home Assistant WebSocket: {e}")),
        }
    }
}

/// Maps REST states and registries to hosts (pure; see the module docs).
pub fn hosts(config: &Value, states: &Value, reg: &Registries, prefix: u8) -> Vec<Host> {
    let location = config["location_name"].as_str().unwrap_or("Home Assistant");
    let device_of: BTreeMap<&str, &str> = reg
        .entities
        .iter()
        .filter_map(|e| Some((e["entity_id"].as_str()?, e["device_id"].as_str()?)))
        .collect();
    let devices: BTreeMap<&str, &Value> = reg
        .devices
        .iter()
        .filter_map(|d| Some((d["id"].as_str()?, d)))
        .collect();
    let areas: BTreeMap<&str, &str> = reg
        .areas
        .iter()
        .filter_map(|a| Some((a["area_id"].as_str()?, a["name"].as_str()?)))
        .collect();
    let device_mac = |d: &Value| -> Option<String> {
        d["connections"].as_array()?.iter().find_map(|c| {
            let c = c.as_array()?;
            (c.first()?.as_str()? == "mac")
                .then(|| normalize_mac(c.get(1)?.as_str()?))
                .flatten()
        })
    };
    let mut out: Vec<Host> = Vec::new();
    let mut used_devices: Vec<&str> = Vec::new();
    for s in states.as_array().into_iter().flatten() {
        let Some(entity) = s["entity_id"].as_str() else {
            continue;
        };
        let attrs = &s["attributes"];
        let ip = attrs["ip"]
            .as_str()
            .and_then(|a| a.parse::<std::net::IpAddr>().ok());
        let device = device_of.get(entity).and_then(|d| devices.get(d)).copied();
        let mac = attrs["mac"]
            .as_str()
            .and_then(normalize_mac)
            .or_else(|| device.and_then(device_mac));
        if ip.is_none() && mac.is_none() {
            continue;
        }
        if let Some(d) = device.and_then(|d| d["id"].as_str()) {
            used_devices.push(d);
        }
        let name = attrs["host_name"]
            .as_str()
            .or_else(|| device.and_then(|d| d["name_by_user"].as_str().or(d["name"].as_str())))
            .or(attrs["friendly_name"].as_str())
            .unwrap_or(entity);
        let key = match &mac {
            Some(m) => format!("ha:mac:{m}"),
            None => format!("ha:entity:{entity}"),
        };
        let mut h = Host::device(Source::HomeAssistant, key, name);
        h.role = "Home device".into();
        if let Some(d) = device {
            if let Some(m) = d["manufacturer"].as_str() {
                h.manufacturer = m.into();
            }
            if let Some(m) = d["model"].as_str() {
                h.model = m.into();
            }
        }
        let area = device
            .and_then(|d| d["area_id"].as_str())
            .and_then(|a| areas.get(a).copied());
        h.description = match area {
            Some(a) => format!("{location}: {entity}, area {a}"),
            None => format!("{location}: {entity}"),
        };
        let address = ip.map(|ip| format!("{ip}/{}", if ip.is_ipv4() { prefix } else { 64 }));
        h.interfaces.push(Iface {
            name: "eth0".into(),
            mac,
            kind: "other".into(),
            ips: address
                .iter()
                .map(|a| IpSpec {
                    address: a.clone(),
                    dns_name: String::new(),
                })
                .collect(),
        });
        h.primary_ip4 = address.filter(|a| !a.contains(':'));
        out.push(h);
    }
    for d in &reg.devices {
        let Some(id) = d["id"].as_str() else { continue };
        if used_devices.contains(&id) {
            continue;
        }
        let Some(mac) = device_mac(d) else { continue };
        let name = d["name_by_user"]
            .as_str()
            .or(d["name"].as_str())
            .unwrap_or(id);
        let mut h = Host::device(Source::HomeAssistant, format!("ha:mac:{mac}"), name);
        h.role = "Home device".into();
        if let Some(m) = d["manufacturer"].as_str() {
            h.manufacturer = m.into();
        }
        if let Some(m) = d["model"].as_str() {
            h.model = m.into();
        }
        h.description = format!("{location}: device {name}");
        h.interfaces.push(Iface {
            name: "eth0".into(),
            mac: Some(mac),
            kind: "other".into(),
            ips: Vec::new(),
        });
        out.push(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trackers_and_registry_devices() {
        // Shapes as in the recorded HA 2025.4.4 payloads (rest_states.json,
        // ws_*_registry_list.json), with a tracker linked to a device.
        let states = json!([
            {"entity_id": "device_tracker.nas", "state": "home", "attributes": {"source_type": "router", "ip": "198.51.100.23", "mac": "02:42:C6:33:64:17", "host_name": "nas", "friendly_name": "nas"}},
            {"entity_id": "device_tracker.tv", "state": "home", "attributes": {"source_type": "router", "ip": "198.51.100.50", "friendly_name": "TV"}},
            {"entity_id": "device_tracker.demo_paulus", "state": "not_home", "attributes": {"source_type": "gps", "latitude": 52.3, "friendly_name": "Paulus"}},
            {"entity_id": "light.kitchen", "state": "on", "attributes": {"friendly_name": "Kitchen"}}
        ]);
        let reg = Registries {
            devices: vec![
                json!({"id": "d1", "name": "Living TV", "name_by_user": null, "manufacturer": "LG", "model": "OLED55", "area_id": "living_room", "connections": [["mac", "aa:bb:cc:00:00:01"]]}),
                json!({"id": "d2", "name": "Hue bridge", "name_by_user": null, "manufacturer": "Signify", "model": "BSB002", "area_id": null, "connections": [["mac", "00:17:88:00:00:02"]]}),
                json!({"id": "d3", "name": "Sun", "manufacturer": null, "model": null, "area_id": null, "connections": []}),
            ],
            entities: vec![json!({"entity_id": "device_tracker.tv", "device_id": "d1"})],
            areas: vec![json!({"area_id": "living_room", "name": "Living Room"})],
        };
        let h = hosts(&json!({"location_name": "Home"}), &states, &reg, 24);
        assert_eq!(h.len(), 3, "{h:#?}");
        assert_eq!(h[0].key, "ha:mac:02:42:C6:33:64:17");
        assert_eq!(h[0].primary_ip4.as_deref(), Some("198.51.100.23/24"));
        let tv = &h[1];
        assert_eq!(
            (
                tv.name.as_str(),
                tv.manufacturer.as_str(),
                tv.model.as_str()
            ),
            ("Living TV", "LG", "OLED55")
        );
        assert_eq!(tv.interfaces[0].mac.as_deref(), Some("AA:BB:CC:00:00:01"));
        assert!(tv.description.contains("Living Room"));
        assert_eq!(h[2].key, "ha:mac:00:17:88:00:00:02");
        assert!(h[2].interfaces[0].ips.is_empty());
    }
}
