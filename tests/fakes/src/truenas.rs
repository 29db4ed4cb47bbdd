//! Fake TrueNAS API for netbox-agent's TrueNAS source: the JSON-RPC 2.0
//! WebSocket API (`/api/current`, TrueNAS 25.04+: `auth.login_with_api_key`,
//! then `system.info`, `interface.query`, `pool.query`, `pool.dataset.query`,
//! `sharing.nfs.query`, `sharing.smb.query`) and, when built with
//! `rest_only`, only the REST v2.0 API of older versions (`/api/v2.0/...`
//! with `Authorization: Bearer <key>`; the WebSocket path answers 404 as a
//! pre-25.04 server does). Payload shapes follow `../shared/netbox.md`
//! section 6 (both APIs front the same middleware methods, so the shapes are
//! the same).

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::StatusCode;
use serde_json::{json, Value};

use crate::server::{serve_with_ws, Answer, Handle, LiveRequest, Upstream, WsHook};
use crate::transcript::Reply;
use crate::Error;

fn method(name: &str) -> Option<Value> {
    Some(match name {
        "system.info" => json!({
            "version": "TrueNAS-SCALE-25.04.2", "hostname": "truenas", "physmem": 34_359_738_368u64,
            "model": "Intel(R) Xeon(R) E-2224", "cores": 4, "uptime_seconds": 86400.5,
            "system_serial": "A1B2C3", "system_product": "TRUENAS-MINI-3.0-X+", "system_manufacturer": "iXsystems",
            "timezone": "UTC", "ecc_memory": true
        }),
        "interface.query" => json!([
            {"id": "enp1s0", "name": "enp1s0", "type": "PHYSICAL", "ipv4_dhcp": false, "ipv6_auto": false,
             "aliases": [{"type": "INET", "address": "192.168.1.30", "netmask": 24}],
             "state": {"name": "enp1s0", "link_state": "LINK_STATE_UP", "link_address": "3c:ec:ef:00:00:30",
                       "aliases": [{"type": "INET", "address": "192.168.1.30", "netmask": 24},
                                   {"type": "INET6", "address": "fe80::3eec:efff:fe00:30", "netmask": 64},
                                   {"type": "LINK", "address": "3c:ec:ef:00:00:30"}]}}
        ]),
        "pool.query" => json!([
            {"id": 1, "name": "tank", "guid": "12345678901234567890", "status": "ONLINE", "healthy": true,
             "size": 7_999_999_999_999u64, "allocated": 2_000_000_000_000u64, "free": 5_999_999_999_999u64, "topology": {"data": []}}
        ]),
        "pool.dataset.query" => json!([
            {"id": "tank", "pool": "tank", "type": "FILESYSTEM", "mountpoint": "/mnt/tank",
             "used": {"parsed": 2_000_000_000_000u64, "rawvalue": "2000000000000"}, "available": {"parsed": 5_999_999_999_999u64, "rawvalue": "5999999999999"},
             "children": [
                {"id": "tank/media", "pool": "tank", "type": "FILESYSTEM", "mountpoint": "/mnt/tank/media",
                 "used": {"parsed": 1_500_000_000_000u64, "rawvalue": "1500000000000"}, "available": {"parsed": 5_999_999_999_999u64, "rawvalue": "5999999999999"}, "children": []}
             ]},
            {"id": "tank/media", "pool": "tank", "type": "FILESYSTEM", "mountpoint": "/mnt/tank/media",
             "used": {"parsed": 1_500_000_000_000u64, "rawvalue": "1500000000000"}, "available": {"parsed": 5_999_999_999_999u64, "rawvalue": "5999999999999"}, "children": []}
        ]),
        "sharing.nfs.query" => {
            json!([{"id": 1, "path": "/mnt/tank/media", "enabled": true, "networks": ["192.168.1.0/24"], "hosts": []}])
        }
        "sharing.smb.query" => {
            json!([{"id": 1, "name": "media", "path": "/mnt/tank/media", "enabled": true}])
        }
        _ => return None,
    })
}

/// Builder for the fake.
#[derive(Debug, Clone)]
pub struct TruenasFake {
    key: String,
    rest_only: bool,
}

impl TruenasFake {
    /// A fake TrueNAS 25.04 accepting API key `key`.
    pub fn new(key: &str) -> Self {
        Self {
            key: key.to_string(),
            rest_only: false,
        }
    }

    /// An older TrueNAS (≤ 24.10): REST v2.0 only.
    #[must_use]
    pub fn rest_only(mut self) -> Self {
        self.rest_only = true;
        self
    }

    /// Serves on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        let hook = (!self.rest_only).then(|| {
            let key = self.key.clone();
            let hook: WsHook = Arc::new(move |stream| {
                let key = key.clone();
                Box::pin(async move { jsonrpc(stream, key).await })
            });
            ("/api/current", hook)
        });
        serve_with_ws(Arc::new(Rest(self)), addr, hook).await
    }
}

async fn jsonrpc(stream: tokio::net::TcpStream, key: String) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let mut authed = false;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let req: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let name = req["method"].as_str().unwrap_or("");
        let reply = if name == "auth.login_with_api_key" {
            authed = req["params"][0].as_str() == Some(key.as_str());
            json!({"jsonrpc": "2.0", "id": id, "result": authed})
        } else if !authed {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32001, "message": "Not authenticated", "data": {"error": 13, "errname": "EACCES", "reason": "Not authenticated"}}})
        } else {
            match method(name) {
                Some(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
                None => {
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})
                }
            }
        };
        if ws.send(Message::text(reply.to_string())).await.is_err() {
            return;
        }
    }
}

#[derive(Debug)]
struct Rest(TruenasFake);

impl Upstream for Rest {
    fn name(&self) -> &'static str {
        "truenas"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        let rest_method = |p: &str| match p {
            "/api/v2.0/system/info" => Some("system.info"),
            "/api/v2.0/interface" => Some("interface.query"),
            "/api/v2.0/pool" => Some("pool.query"),
            "/api/v2.0/pool/dataset" => Some("pool.dataset.query"),
            "/api/v2.0/sharing/nfs" => Some("sharing.nfs.query"),
            "/api/v2.0/sharing/smb" => Some("sharing.smb.query"),
            _ => None,
        };
        let (status, body) = match rest_method(req.path().trim_end_matches('/')) {
            Some(_) if req.authorization() != Some(format!("Bearer {}", self.0.key).as_str()) => {
                (401, json!({"message": "Unauthorized"}))
            }
            Some(m) => (200, method(m).unwrap_or(Value::Null)),
            None => (404, json!({"message": "Not found"})),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Answer::Reply {
            reply: Reply {
                status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
            },
            from: "truenas-fake".into(),
            note: None,
        }
    }
}
