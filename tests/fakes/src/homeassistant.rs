//! Fake Home Assistant Core 2025.4.4 REST API (no WebSocket yet).
//!
//! Replays the `homeassistant/rest_*.json` recordings: `GET /api/`,
//! `/api/config`, `/api/states`, `/api/states/<entity>` (one missing: 404)
//! and `POST /api/template`. Matched on method, path, JSON body and the
//! token's class: `<TOKEN>` or the configured token → the recorded
//! `Bearer <TOKEN>` exchange; any other bearer token → `Bearer
//! not-a-valid-token`; no header → no header. A refused or missing token on
//! a recorded route gets the recorded `401: Unauthorized` (HA's auth
//! middleware runs before the view). Anything else is unrecorded (599).
//! No agent talks to Home Assistant yet (netbox-agent's `home_assistant`
//! source, issue 9, will).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::lookup;
use crate::secret::Secret;
use crate::server::{serve_with_ws, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::{Recorded, Transcript};
use crate::{fixtures, Error};

const VALID: &str = "Bearer <TOKEN>";
const INVALID: &str = "Bearer not-a-valid-token";

/// Builder for a fake Home Assistant.
#[derive(Debug, Clone, Default)]
pub struct HomeAssistant {
    token: Option<Secret>,
    extra: Vec<Transcript>,
}

impl HomeAssistant {
    /// A fake that accepts the fixtures' placeholder token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts `token` (a long-lived access token).
    #[must_use]
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// Replays these exchanges too (after the built-in ones).
    #[must_use]
    pub fn with_transcript(mut self, transcript: Transcript) -> Self {
        self.extra.push(transcript);
        self
    }

    /// The fake, ready to serve.
    pub fn build(self) -> Result<HomeAssistantFake, Error> {
        Ok(HomeAssistantFake {
            recorded: fixtures::recorded(fixtures::HOME_ASSISTANT, self.extra)?,
            token: self.token,
        })
    }

    /// Starts the fake on `addr`, REST and the WebSocket API
    /// (`/api/websocket`) on the same port.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        let token = self.token.clone();
        let hook: crate::server::WsHook = Arc::new(move |stream| {
            let token = token.clone();
            Box::pin(async move { websocket(stream, token).await })
        });
        serve_with_ws(
            Arc::new(self.build()?),
            addr,
            Some(("/api/websocket", hook)),
        )
        .await
    }

    /// Starts a fake that accepts the fixtures' token on `addr`.
    pub async fn spawn(addr: SocketAddr) -> Result<Handle, Error> {
        Self::new().serve(addr).await
    }
}

/// A fake Home Assistant (see the module docs).
#[derive(Debug)]
pub struct HomeAssistantFake {
    recorded: Vec<Recorded>,
    token: Option<Secret>,
}

impl HomeAssistantFake {
    /// The recorded `Authorization` value of the header's class.
    fn class(&self, header: Option<&str>) -> Option<&'static str> {
        let header = header?;
        let valid = header == VALID
            || self
                .token
                .as_ref()
                .is_some_and(|t| header.strip_prefix("Bearer ") == Some(t.expose()));
        Some(if valid { VALID } else { INVALID })
    }
}

impl Upstream for HomeAssistantFake {
    fn name(&self) -> &'static str {
        "ha"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        let class = self.class(req.authorization());
        let candidates = [class.map(str::to_string)];
        lookup::answer_after_auth(
            &self.recorded,
            req,
            &candidates,
            class != Some(VALID),
            401,
            "",
            "token",
        )
    }
}

/// The recorded WebSocket sessions (`ws_*.json`): the `result` of each
/// registry command, sent back for that command type.
const WS_RECORDINGS: &[&str] = &[
    include_str!("../fixtures/homeassistant/ws_device_registry_list.json"),
    include_str!("../fixtures/homeassistant/ws_entity_registry_list.json"),
    include_str!("../fixtures/homeassistant/ws_area_registry_list.json"),
];
const WS_AUTH_INVALID: &str = include_str!("../fixtures/homeassistant/ws_auth_invalid.json");

/// The recorded message of `direction` number `n` (0-based) in `text`.
fn recorded(text: &str, n: usize) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.as_array()?.get(n)?.get("message").cloned()
}

/// One WebSocket session as HA 2025.4.4 runs it: `auth_required`, then
/// `auth` → `auth_ok` (the fixtures' token or the configured one) or
/// `auth_invalid` and close; then each command answered with the recorded
/// result of that command type (its `id` replaced), or an `unknown_command`
/// error as HA sends.
async fn websocket(stream: tokio::net::TcpStream, token: Option<Secret>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let version = "2025.4.4";
    let send = |v: serde_json::Value| Message::text(v.to_string());
    if ws
        .send(send(
            serde_json::json!({"type": "auth_required", "ha_version": version}),
        ))
        .await
        .is_err()
    {
        return;
    }
    let Some(Ok(Message::Text(first))) = ws.next().await else {
        return;
    };
    let auth: serde_json::Value = serde_json::from_str(first.as_str()).unwrap_or_default();
    let given = auth
        .get("access_token")
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let ok = auth.get("type").and_then(|t| t.as_str()) == Some("auth")
        && (given == "<TOKEN>" || token.as_ref().is_some_and(|t| t.expose() == given));
    if !ok {
        if let Some(m) = recorded(WS_AUTH_INVALID, 2) {
            let _ = ws.send(send(m)).await;
        }
        let _ = ws.close(None).await;
        return;
    }
    if ws
        .send(send(
            serde_json::json!({"type": "auth_ok", "ha_version": version}),
        ))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let cmd: serde_json::Value = serde_json::from_str(text.as_str()).unwrap_or_default();
        let id = cmd.get("id").cloned().unwrap_or(serde_json::Value::Null);
        let ty = cmd.get("type").and_then(|t| t.as_str()).unwrap_or("");
        let reply = WS_RECORDINGS
            .iter()
            .find(|t| recorded(t, 3).and_then(|c| c.get("type").cloned()) == Some(serde_json::json!(ty)))
            .and_then(|t| recorded(t, 4))
            .map(|mut r| {
                r["id"] = id.clone();
                r
            })
            .unwrap_or_else(|| serde_json::json!({"id": id, "type": "result", "success": false, "error": {"code": "unknown_command", "message": "Unknown command."}}));
        if ws.send(send(reply)).await.is_err() {
            return;
        }
    }
}
