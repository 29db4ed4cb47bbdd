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
use crate::server::{serve, Answer, Handle, LiveRequest, Upstream};
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

    /// Starts the fake on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        serve(Arc::new(self.build()?), addr).await
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
