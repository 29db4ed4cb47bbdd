//! Fake Wiki.js 2.5.314 (GraphQL at `/graphql`, plus `/healthz`).
//!
//! Replays `wikijs/00-health.json`, `01-auth.json` and
//! `01b-auth-revoked-key.json`, which include the admin health query
//! wikijs-integration sends today (`{ authentication { apiState } system {
//! info { … } } }`). A GraphQL request matches a recorded one when the
//! query text is the same up to whitespace runs, `variables` are equal
//! (missing = `{}`), `operationName` is equal, the `Content-Type` is JSON,
//! and the key falls into the recorded key's class:
//!
//! | sent key | class | replays the exchange recorded with |
//! |---|---|---|
//! | `<API_KEY>`, or the configured key | admin | `Bearer <API_KEY>` |
//! | `<NEW_API_KEY>` (the key revoked in 01b) | revoked | HTTP 500 `API Key is invalid or was revoked.` for any query, as Wiki.js's middleware answers before GraphQL runs |
//! | anything else, or no header | Guest (Wiki.js silently downgrades) | the same header if it was recorded, else no header, `Bearer <TAMPERED_API_KEY>`, `Bearer not-a-jwt` |
//!
//! Other paths (`GET /healthz`) match on method and path; a route recorded
//! without credentials ignores them. Anything else is unrecorded (599).
//!
//! Stateful mode ([`WikiJs::with_model`], issue 10's docs sync): the page
//! and asset API (GraphQL, `POST /u`, asset GETs) is answered by a
//! [`WikiModel`] ahead of the replay lookup; see [`crate::wikijs_model`].

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::Method;
use serde_json::Value;

use crate::lookup;
use crate::secret::Secret;
use crate::server::{describe_auth, serve, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::{Recorded, Transcript};
use crate::wikijs_model::WikiModel;
use crate::{fixtures, Error};

const ADMIN: &str = "Bearer <API_KEY>";
const REVOKED: &str = "Bearer <NEW_API_KEY>";
const GUESTS: [&str; 2] = ["Bearer <TAMPERED_API_KEY>", "Bearer not-a-jwt"];

/// Builder for a fake Wiki.js.
#[derive(Debug, Clone, Default)]
pub struct WikiJs {
    key: Option<Secret>,
    extra: Vec<Transcript>,
    model: Option<Arc<WikiModel>>,
}

impl WikiJs {
    /// A fake that accepts the fixtures' placeholder key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts `key` as the full-access admin key.
    #[must_use]
    pub fn with_key(mut self, key: Secret) -> Self {
        self.key = Some(key);
        self
    }

    /// Replays these exchanges too (after the built-in ones).
    #[must_use]
    pub fn with_transcript(mut self, transcript: Transcript) -> Self {
        self.extra.push(transcript);
        self
    }

    /// Answers the page and asset API from `model` (stateful, see
    /// [`crate::wikijs_model`]) instead of the transcripts; `/healthz` and
    /// revoked keys are still replayed.
    #[must_use]
    pub fn with_model(mut self, model: Arc<WikiModel>) -> Self {
        self.model = Some(model);
        self
    }

    /// The fake, ready to serve.
    pub fn build(self) -> Result<WikiJsFake, Error> {
        Ok(WikiJsFake {
            recorded: fixtures::recorded(fixtures::WIKIJS, self.extra)?,
            key: self.key,
            model: self.model,
        })
    }

    /// Starts the fake on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        serve(Arc::new(self.build()?), addr).await
    }

    /// Starts a fake that accepts the fixtures' key on `addr`.
    pub async fn spawn(addr: SocketAddr) -> Result<Handle, Error> {
        Self::new().serve(addr).await
    }
}

/// The key classes Wiki.js distinguishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClass {
    /// The full-access admin key.
    Admin,
    /// A revoked (or expired) key: HTTP 500 for everything.
    Revoked,
    /// Treated as Guest; the recorded header when it is one of the
    /// recorded Guest headers.
    Guest(Option<&'static str>),
}

/// A fake Wiki.js (see the module docs).
#[derive(Debug)]
pub struct WikiJsFake {
    recorded: Vec<Recorded>,
    key: Option<Secret>,
    model: Option<Arc<WikiModel>>,
}

/// A GraphQL request body, normalized for comparison.
#[derive(Debug, PartialEq)]
struct Operation {
    query: String,
    variables: Value,
    operation_name: Option<String>,
}

fn operation(body: &Value) -> Option<Operation> {
    let query = body.get("query")?.as_str()?;
    let variables = match body.get("variables") {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        Some(v) => v.clone(),
    };
    Some(Operation {
        query: query.split_whitespace().collect::<Vec<_>>().join(" "),
        variables,
        operation_name: body
            .get("operationName")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

impl WikiJsFake {
    /// Classifies an `Authorization` header value.
    pub fn classify(&self, header: Option<&str>) -> KeyClass {
        let Some(header) = header else {
            return KeyClass::Guest(None);
        };
        if header == ADMIN
            || self
                .key
                .as_ref()
                .is_some_and(|k| header.strip_prefix("Bearer ") == Some(k.expose()))
        {
            return KeyClass::Admin;
        }
        if header == REVOKED {
            return KeyClass::Revoked;
        }
        KeyClass::Guest(GUESTS.into_iter().find(|g| *g == header))
    }

    fn graphql(&self, req: &LiveRequest, class: &KeyClass) -> Answer {
        let live = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .as_ref()
            .and_then(operation);
        let Some(live) = live else {
            return Answer::Unrecorded {
                reason: "the body is not a GraphQL request (JSON with a `query` string)".into(),
            };
        };
        if req.content_type() != Some("application/json") {
            return Answer::Unrecorded {
                reason:
                    "every recorded GraphQL request was sent with Content-Type: application/json"
                        .into(),
            };
        }
        let same = |r: &Recorded| {
            r.exchange.request.method == "POST"
                && r.exchange.request.path == "/graphql"
                && operation(&r.exchange.request.body).as_ref() == Some(&live)
        };
        let candidates: Vec<Option<String>> = match class {
            KeyClass::Admin => vec![Some(ADMIN.into())],
            KeyClass::Revoked => {
                // The middleware refuses the key before GraphQL runs.
                let revoked = lookup::by_auth(&self.recorded, &[Some(REVOKED.into())], |r| {
                    r.exchange.response.status == 500
                });
                if let Some(r) = revoked {
                    return lookup::replay_auth_failure(r);
                }
                vec![]
            }
            KeyClass::Guest(recorded) => recorded
                .map(str::to_string)
                .into_iter()
                .map(Some)
                .chain(std::iter::once(None))
                .chain(GUESTS.iter().map(|g| Some((*g).to_string())))
                .collect(),
        };
        if let Some(r) = lookup::by_auth(&self.recorded, &candidates, same) {
            return lookup::replay(r);
        }
        Answer::Unrecorded {
            reason: format!(
                "no GraphQL exchange recorded for query `{}` with variables {} as {class:?} ({})",
                live.query,
                live.variables,
                describe_auth(req.authorization())
            ),
        }
    }
}

impl Upstream for WikiJsFake {
    fn name(&self) -> &'static str {
        "wikijs"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        let class = self.classify(req.authorization());
        if let Some(model) = &self.model {
            if class != KeyClass::Revoked {
                if let Some(answer) = model.answer(req, class == KeyClass::Admin) {
                    return answer;
                }
            }
        }
        if req.method == Method::POST && req.path_and_query == "/graphql" {
            return self.graphql(req, &class);
        }
        // Public routes (recorded without credentials) ignore them.
        let public = self
            .recorded
            .iter()
            .find(|r| r.exchange.request.authorization().is_none() && lookup::same_request(r, req));
        if let Some(r) = public {
            return lookup::replay(r);
        }
        let candidates: Vec<Option<String>> = match &class {
            KeyClass::Admin => vec![Some(ADMIN.into())],
            KeyClass::Revoked => vec![Some(REVOKED.into())],
            KeyClass::Guest(g) => vec![g.map(str::to_string)],
        };
        if let Some(r) = lookup::by_auth(&self.recorded, &candidates, |r| {
            lookup::same_request(r, req)
        }) {
            return lookup::replay(r);
        }
        Answer::Unrecorded {
            reason: format!(
                "no exchange recorded for this request as {class:?} ({})",
                describe_auth(req.authorization())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_classes() {
        let w = WikiJs::new()
            .with_key(Secret::new("eyJ.a.b"))
            .build()
            .unwrap();
        assert_eq!(w.classify(Some("Bearer eyJ.a.b")), KeyClass::Admin);
        assert_eq!(w.classify(Some("Bearer <API_KEY>")), KeyClass::Admin);
        assert_eq!(w.classify(Some("Bearer <NEW_API_KEY>")), KeyClass::Revoked);
        assert_eq!(
            w.classify(Some("Bearer not-a-jwt")),
            KeyClass::Guest(Some("Bearer not-a-jwt"))
        );
        assert_eq!(w.classify(Some("Bearer eyJ.a.c")), KeyClass::Guest(None));
        assert_eq!(w.classify(None), KeyClass::Guest(None));
    }

    #[test]
    fn queries_compare_up_to_whitespace() {
        let a = operation(&serde_json::json!({"query": "{ a  {\n b } }"})).unwrap();
        let b = operation(&serde_json::json!({"query": "{ a { b } }", "variables": {}})).unwrap();
        assert_eq!(a, b);
    }
}
