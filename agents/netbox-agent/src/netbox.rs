//! The NetBox reachability and token check: `GET /api/status/`.
//!
//! `/api/status/` needs authentication on a default install, so it proves
//! both that NetBox answers and that the token works. The keyword follows the
//! token's kind (`nbt_` prefix → `Bearer`, else `Token`), as NetBox itself
//! decides by the prefix. NetBox answers every authentication failure with 403
//! `{"detail": ...}`, never 401.
//!
//! Health rules: 200 with `netbox-version` → healthy; 401/403 → unhealthy
//! (the token needs fixing); 5xx or no answer → degraded (NetBox or the
//! network is down; nothing to fix here); any other answer → unhealthy (the
//! URL does not point at a NetBox).

use std::time::Duration;

use agent_runtime::http_client::Response;
use agent_runtime::{CheckOutcome, CycleError, Secret};
use hyper::header::{ACCEPT, AUTHORIZATION};
use hyper::Method;

use crate::transport::{self, Endpoint, TransportError};

/// What NetBox's `/api/status/` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiCheck {
    /// Reachable and the token accepted.
    Ok {
        /// `netbox-version`.
        version: String,
        /// The `API-Version` header.
        api_version: Option<String>,
        /// `rq-workers-running`.
        workers: Option<u64>,
    },
    /// No HTTP answer (DNS, connect, timeout, protocol).
    Unreachable(String),
    /// 5xx.
    ServerError(String),
    /// 401/403: the token was refused.
    Rejected(String),
    /// An answer, but not NetBox's.
    NotNetbox(String),
}

/// The Authorization header value for `token`.
pub fn authorization(token: &Secret) -> String {
    let t = token.expose().trim();
    if t.starts_with("nbt_") {
        format!("Bearer {t}")
    } else {
        format!("Token {t}")
    }
}

/// Calls `/api/status/`.
pub async fn check(base: &Endpoint, token: &Secret, timeout: Duration) -> ApiCheck {
    let headers = [
        (ACCEPT, "application/json".to_string()),
        (AUTHORIZATION, authorization(token)),
    ];
    match transport::send(base, Method::GET, "/api/status/", &headers, None, timeout).await {
        Ok(resp) => classify(&resp),
        Err(e @ TransportError::BadHeader(_)) => ApiCheck::Rejected(format!(
            "{e} (the token contains characters not allowed in a header)"
        )),
        Err(e) => ApiCheck::Unreachable(e.to_string()),
    }
}

fn detail(resp: &Response) -> String {
    resp.json()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {}", resp.status))
}

/// Classifies an answer of `/api/status/`.
pub fn classify(resp: &Response) -> ApiCheck {
    match resp.status {
        200 => {
            let Some(body) = resp.json() else {
                return ApiCheck::NotNetbox("HTTP 200 but the body is not JSON".into());
            };
            let Some(version) = body.get("netbox-version").and_then(|v| v.as_str()) else {
                return ApiCheck::NotNetbox(
                    "HTTP 200 but no `netbox-version` in the answer".into(),
                );
            };
            ApiCheck::Ok {
                version: version.to_string(),
                api_version: resp
                    .headers
                    .get("API-Version")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                workers: body.get("rq-workers-running").and_then(|v| v.as_u64()),
            }
        }
        401 | 403 => ApiCheck::Rejected(detail(resp)),
        s if s >= 500 => ApiCheck::ServerError(format!("HTTP {s}: {}", detail(resp))),
        s => ApiCheck::NotNetbox(format!("HTTP {s} for /api/status/")),
    }
}

impl ApiCheck {
    /// The `netbox_api` health check for this result.
    pub fn outcome(&self, url: &str) -> CheckOutcome {
        match self {
            ApiCheck::Ok {
                version,
                api_version,
                workers,
            } => CheckOutcome::healthy(format!(
                "NetBox {version} at {url} (API {}), token accepted{}",
                api_version.as_deref().unwrap_or("?"),
                workers.map_or(String::new(), |w| format!(", {w} background workers"))
            )),
            ApiCheck::Unreachable(e) => {
                CheckOutcome::degraded(format!("NetBox at {url} is unreachable: {e}"))
            }
            ApiCheck::ServerError(e) => {
                CheckOutcome::degraded(format!("NetBox at {url} has a server error: {e}"))
            }
            ApiCheck::Rejected(d) => CheckOutcome::unhealthy(format!(
                "NetBox at {url} refused the token ({d}); put a valid token in netbox_token in the secrets file"
            )),
            ApiCheck::NotNetbox(d) => CheckOutcome::unhealthy(format!(
                "{url} does not look like NetBox ({d}); netbox.url must be NetBox's base URL, without /api"
            )),
        }
    }

    /// The cycle error for a failed check; `None` when it passed.
    pub fn error(&self) -> Option<CycleError> {
        let service = "NetBox".to_string();
        match self {
            ApiCheck::Ok { .. } => None,
            ApiCheck::Unreachable(detail) => Some(CycleError::Unreachable {
                service,
                detail: detail.clone(),
            }),
            ApiCheck::Rejected(detail) => Some(CycleError::Auth {
                service,
                detail: detail.clone(),
            }),
            ApiCheck::ServerError(detail) | ApiCheck::NotNetbox(detail) => {
                Some(CycleError::Upstream {
                    service,
                    detail: detail.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_follows_the_token_kind() {
        assert_eq!(
            authorization(&Secret::new("nbt_abc.def")),
            "Bearer nbt_abc.def"
        );
        assert_eq!(authorization(&Secret::new("0123abcd")), "Token 0123abcd");
    }

    fn resp(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: Default::default(),
            body: body.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify(&resp(
                200,
                r#"{"netbox-version":"4.6.8","rq-workers-running":0}"#
            )),
            ApiCheck::Ok { .. }
        ));
        assert_eq!(
            classify(&resp(403, r#"{"detail":"Invalid v2 token"}"#)),
            ApiCheck::Rejected("Invalid v2 token".into())
        );
        assert!(matches!(
            classify(&resp(502, "bad gateway")),
            ApiCheck::ServerError(_)
        ));
        assert!(matches!(
            classify(&resp(404, "<html>")),
            ApiCheck::NotNetbox(_)
        ));
        assert!(matches!(
            classify(&resp(200, "<html>")),
            ApiCheck::NotNetbox(_)
        ));
        assert!(matches!(classify(&resp(200, "{}")), ApiCheck::NotNetbox(_)));
    }
}
