//! The Wiki.js reachability and API-key check.
//!
//! Wiki.js 2.5 treats a missing, garbage or wrongly signed key as the Guest
//! user with HTTP 200, and Guests can read pages, so a read query proves
//! nothing. The check runs a privileged query instead,
//! `authentication.apiState` (needs `manage:system` or `manage:api`), plus
//! `system.info` for the version; as Guest it answers `Forbidden`. A revoked
//! or expired key is different: HTTP 500 "API Key is invalid or was revoked.".
//!
//! Health rules: `apiState: true` → healthy; `Forbidden` (Guest), revoked
//! key, API disabled, schema validation failure or a non-GraphQL answer →
//! unhealthy (something to fix in the key or the URL); no answer or another
//! 5xx → degraded (Wiki.js or the network is down).

use std::time::Duration;

use agent_runtime::http_client::{self, BaseUrl, HttpError, Response};
use agent_runtime::{CheckOutcome, CycleError, Secret};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde_json::Value;

/// The privileged health query (as in the recorded transcripts).
pub const HEALTH_QUERY: &str =
    "{ authentication { apiState } system { info { currentVersion dbType pagesTotal usersTotal } } }";

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCheck {
    /// Key accepted with admin rights.
    Ok {
        /// `system.info.currentVersion`.
        version: Option<String>,
        /// `system.info.pagesTotal`.
        pages: Option<u64>,
    },
    /// No HTTP answer.
    Unreachable(String),
    /// 5xx other than a key problem.
    ServerError(String),
    /// Treated as Guest: the key is invalid or lacks the permission.
    Guest,
    /// Revoked or expired key, or the API switched off.
    KeyRefused(String),
    /// Not a Wiki.js 2.x GraphQL endpoint.
    NotWikijs(String),
}

fn first_error(body: &Value) -> Option<String> {
    body.get("errors")?
        .as_array()?
        .first()?
        .get("message")?
        .as_str()
        .map(str::to_string)
}

/// Classifies an answer to [`HEALTH_QUERY`].
pub fn classify(resp: &Response) -> ApiCheck {
    let body = resp.json();
    let error = body.as_ref().and_then(first_error);
    match resp.status {
        200 => {
            let Some(body) = body else {
                return ApiCheck::NotWikijs("HTTP 200 but the body is not JSON".into());
            };
            let api_state = body
                .pointer("/data/authentication/apiState")
                .and_then(Value::as_bool);
            match (api_state, error.as_deref()) {
                (Some(true), _) => ApiCheck::Ok {
                    version: body
                        .pointer("/data/system/info/currentVersion")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    pages: body
                        .pointer("/data/system/info/pagesTotal")
                        .and_then(Value::as_u64),
                },
                (Some(false), _) => {
                    ApiCheck::KeyRefused("the API is switched off in Wiki.js".into())
                }
                (None, Some("Forbidden")) => ApiCheck::Guest,
                (None, Some(other)) => ApiCheck::NotWikijs(format!("GraphQL error: {other}")),
                (None, None) => ApiCheck::NotWikijs(
                    "HTTP 200 without authentication.apiState: not a Wiki.js 2.x GraphQL endpoint"
                        .into(),
                ),
            }
        }
        400 => ApiCheck::NotWikijs(format!(
            "GraphQL validation failed ({}): not a Wiki.js 2.x GraphQL endpoint",
            error.unwrap_or_else(|| "HTTP 400".into())
        )),
        s if s >= 500 => match error {
            Some(m) if m.contains("API Key is invalid") || m.contains("API is disabled") => {
                ApiCheck::KeyRefused(m)
            }
            Some(m) => ApiCheck::ServerError(format!("HTTP {s}: {m}")),
            None => ApiCheck::ServerError(format!("HTTP {s}")),
        },
        s => ApiCheck::NotWikijs(format!("HTTP {s} for /graphql")),
    }
}

/// Runs the check against `base`.
pub async fn check(base: &BaseUrl, key: &Secret, timeout: Duration) -> ApiCheck {
    let body = serde_json::json!({"query": HEALTH_QUERY, "variables": {}});
    let headers = [
        (CONTENT_TYPE, "application/json".to_string()),
        (AUTHORIZATION, format!("Bearer {}", key.expose().trim())),
    ];
    let body = match serde_json::to_vec(&body) {
        Ok(b) => b,
        Err(e) => return ApiCheck::NotWikijs(format!("cannot encode the query: {e}")),
    };
    match http_client::send(
        base,
        Method::POST,
        "/graphql",
        &headers,
        Some(body),
        timeout,
    )
    .await
    {
        Ok(resp) => classify(&resp),
        Err(e @ HttpError::BadHeader { .. }) => ApiCheck::KeyRefused(format!(
            "{e} (the key contains characters not allowed in a header)"
        )),
        Err(e) => ApiCheck::Unreachable(e.to_string()),
    }
}

impl ApiCheck {
    /// The `wikijs_api` health check for this result.
    pub fn outcome(&self, url: &str) -> CheckOutcome {
        match self {
            ApiCheck::Ok { version, pages } => CheckOutcome::healthy(format!(
                "Wiki.js {} at {url}, API key accepted with admin rights{}",
                version.as_deref().unwrap_or("?"),
                pages.map_or(String::new(), |p| format!(", {p} pages"))
            )),
            ApiCheck::Unreachable(e) => {
                CheckOutcome::degraded(format!("Wiki.js at {url} is unreachable: {e}"))
            }
            ApiCheck::ServerError(e) => {
                CheckOutcome::degraded(format!("Wiki.js at {url} has a server error: {e}"))
            }
            ApiCheck::Guest => CheckOutcome::unhealthy(format!(
                "Wiki.js at {url} treated the request as Guest (Forbidden on an admin query): the API key is invalid, tampered with, or lacks manage:api; create a full-access key and put it in wikijs_api_key"
            )),
            ApiCheck::KeyRefused(m) => CheckOutcome::unhealthy(format!(
                "Wiki.js at {url} refused the API key: {m}"
            )),
            ApiCheck::NotWikijs(m) => CheckOutcome::unhealthy(format!(
                "{url} does not look like Wiki.js 2.x ({m}); wikijs.url must be the wiki's base URL"
            )),
        }
    }

    /// The cycle error for a failed check; `None` when it passed.
    pub fn error(&self) -> Option<CycleError> {
        let service = "Wiki.js".to_string();
        match self {
            ApiCheck::Ok { .. } => None,
            ApiCheck::Unreachable(d) => Some(CycleError::Unreachable {
                service,
                detail: d.clone(),
            }),
            ApiCheck::Guest => Some(CycleError::Auth {
                service,
                detail: "request treated as Guest (key invalid or not privileged)".into(),
            }),
            ApiCheck::KeyRefused(d) => Some(CycleError::Auth {
                service,
                detail: d.clone(),
            }),
            ApiCheck::ServerError(d) | ApiCheck::NotWikijs(d) => Some(CycleError::Upstream {
                service,
                detail: d.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded responses, replayed through the classifier.
    fn recorded(file: &str, pick: impl Fn(&Value) -> bool) -> Response {
        let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let all: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let ex = all.iter().find(|e| pick(e)).expect("exchange");
        Response {
            status: u16::try_from(ex["response"]["status"].as_u64().unwrap()).unwrap(),
            headers: Default::default(),
            body: serde_json::to_vec(&ex["response"]["body"]).unwrap().into(),
        }
    }

    fn health_query_with(auth: &str) -> impl Fn(&Value) -> bool + '_ {
        move |e| {
            e["request"]["body"]["query"] == HEALTH_QUERY
                && e["request"]["headers"]["Authorization"] == auth
        }
    }

    #[test]
    fn recorded_answers_classify() {
        let ok = recorded("wikijs-01-auth.json", health_query_with("Bearer <API_KEY>"));
        assert_eq!(
            classify(&ok),
            ApiCheck::Ok {
                version: Some("2.5.314".into()),
                pages: Some(2)
            }
        );
        let guest = recorded(
            "wikijs-01-auth.json",
            health_query_with("Bearer <TAMPERED_API_KEY>"),
        );
        assert_eq!(classify(&guest), ApiCheck::Guest);
        assert_eq!(
            classify(&guest).outcome("u").status,
            agent_runtime::Health::Unhealthy
        );
        // A revoked key: HTTP 500 with data:{} (recorded on another query;
        // the server answers it the same way for any query).
        let revoked = recorded("wikijs-01b-auth-revoked-key.json", |e| {
            e["response"]["status"] == 500
        });
        assert!(
            matches!(classify(&revoked), ApiCheck::KeyRefused(ref m) if m.contains("revoked")),
            "{:?}",
            classify(&revoked)
        );
    }

    #[test]
    fn other_answers_classify() {
        let r = |status, body: &str| Response {
            status,
            headers: Default::default(),
            body: body.as_bytes().to_vec().into(),
        };
        assert!(matches!(classify(&r(502, "")), ApiCheck::ServerError(_)));
        assert!(matches!(classify(&r(404, "nope")), ApiCheck::NotWikijs(_)));
        assert!(matches!(
            classify(&r(200, "<html>")),
            ApiCheck::NotWikijs(_)
        ));
        assert!(matches!(
            classify(&r(400, r#"{"errors":[{"message":"Cannot query field"}]}"#)),
            ApiCheck::NotWikijs(_)
        ));
        assert!(matches!(
            classify(&r(200, r#"{"data":{"authentication":{"apiState":false}}}"#)),
            ApiCheck::KeyRefused(_)
        ));
    }
}
