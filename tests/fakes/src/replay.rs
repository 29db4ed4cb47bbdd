//! Exact replay of one transcript, for the agents' own tests (re-exported
//! by `agent_runtime::testing` as `ReplayServer`).
//!
//! A live request is answered with the first recorded exchange whose method,
//! path (with query), every recorded request header (a `Content-Type`'s
//! parameters aside), the absence of `Authorization` when none was
//! recorded, and JSON body all match. Credentials are compared literally,
//! so tests put the fixtures' placeholders (`<LEGACY_TOKEN>`, `<API_KEY>`)
//! in the agent's secrets file. Anything else gets a 599.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::lookup;
use crate::server::{describe_auth, serve, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::{prepare, Exchange, Recorded, Transcript};
use crate::Error;

/// An exact-replay fake over a list of exchanges.
#[derive(Debug)]
pub struct Replay {
    recorded: Vec<Recorded>,
}

impl Replay {
    /// Prepares `exchanges` for replay.
    pub fn new(exchanges: Vec<Exchange>) -> Result<Self, Error> {
        let t = Transcript {
            name: "replay".into(),
            exchanges,
        };
        Ok(Self {
            recorded: prepare(&[t])?,
        })
    }

    /// Starts it on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        serve(Arc::new(self), addr).await
    }
}

fn matches(r: &Recorded, req: &LiveRequest) -> bool {
    let recorded = &r.exchange.request;
    if !lookup::same_request(r, req) {
        return false;
    }
    let headers_match = recorded.headers.iter().all(|(name, value)| {
        let live = req.header(name);
        let live = if name.eq_ignore_ascii_case("content-type") {
            live.map(|v| v.split(';').next().unwrap_or(v).trim())
        } else {
            live
        };
        live == Some(value.as_str())
    });
    headers_match && (recorded.authorization().is_some() || req.authorization().is_none())
}

impl Upstream for Replay {
    fn name(&self) -> &'static str {
        "replay"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        match self.recorded.iter().find(|r| matches(r, req)) {
            Some(r) => lookup::replay(r),
            None => Answer::Unrecorded {
                reason: format!(
                    "{}, body {}",
                    describe_auth(req.authorization()),
                    String::from_utf8_lossy(&req.body)
                ),
            },
        }
    }
}
