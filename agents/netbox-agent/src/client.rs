//! The NetBox REST client the sync uses.
//!
//! - Auth keyword from the token's prefix (`nbt_` → `Bearer`, else `Token`),
//!   as NetBox decides by the prefix too (`netbox::authorization`).
//! - Lists always follow `next` until it is null: `MAX_PAGE_SIZE` silently
//!   clamps `limit`, so one page is never assumed complete. The next request
//!   is built from *our* base URL and the offset (a `next` behind a TLS proxy
//!   can come back with the wrong scheme), with a page cap against loops.
//! - Retries with exponential backoff on 429/502/503/504 and on connection
//!   failures; never on 4xx answers. A POST is retried after a timeout only
//!   if it is not a create (a create that timed out may have happened).
//! - Every request has the configured timeout. Requests and writes are
//!   counted for `/status` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agent_runtime::Secret;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::Method;
use serde_json::Value;

use crate::netbox::authorization;
use crate::transport::{self, Endpoint, TransportError};

/// A NetBox call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NbError {
    /// No answer (after retries).
    #[error("NetBox unreachable for {what}: {detail}")]
    Unreachable {
        /// The request.
        what: String,
        /// The last error.
        detail: String,
    },
    /// 401/403.
    #[error("NetBox refused the token for {what}: {detail}")]
    Auth {
        /// The request.
        what: String,
        /// NetBox's `detail`.
        detail: String,
    },
    /// Any other non-2xx answer.
    #[error("NetBox answered {status} to {what}: {body}")]
    Status {
        /// The request.
        what: String,
        /// HTTP status.
        status: u16,
        /// The body (validation errors name the field).
        body: String,
    },
    /// 2xx but not the JSON expected.
    #[error("NetBox's answer to {what} is not what the API documents: {detail}")]
    Unexpected {
        /// The request.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// The client.
#[derive(Debug)]
pub struct Client {
    base: Endpoint,
    token: Secret,
    timeout: Duration,
    max_attempts: u32,
    backoff: Duration,
    requests: AtomicU64,
    writes: AtomicU64,
}

/// Most pages one list may take (1,000 rows each): a loop guard.
const MAX_PAGES: usize = 1000;

impl Client {
    /// A client for `base`.
    pub fn new(
        base: Endpoint,
        token: Secret,
        timeout: Duration,
        max_attempts: u32,
        backoff: Duration,
    ) -> Self {
        Self {
            base,
            token,
            timeout,
            max_attempts: max_attempts.max(1),
            backoff,
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Requests sent so far (retries included).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Write requests sent so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, NbError> {
        let what = format!("{method} {path}");
        let write = method != Method::GET;
        let is_create = method == Method::POST;
        let mut headers = vec![
            (ACCEPT, "application/json".to_string()),
            (AUTHORIZATION, authorization(&self.token)),
        ];
        let bytes = match body {
            Some(b) => {
                headers.push((CONTENT_TYPE, "application/json".to_string()));
                Some(serde_json::to_vec(b).map_err(|e| NbError::Unexpected {
                    what: what.clone(),
                    detail: e.to_string(),
                })?)
            }
            None => None,
        };
        let mut delay = self.backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.requests.fetch_add(1, Ordering::Relaxed);
            if write {
                self.writes.fetch_add(1, Ordering::Relaxed);
            }
            let result = transport::send(
                &self.base,
                method.clone(),
                path,
                &headers,
                bytes.clone(),
                self.timeout,
            )
            .await;
            let retry_after = |resp: &agent_runtime::http_client::Response| {
                resp.headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(60)))
            };
            let (retryable, wait, err) = match result {
                Ok(resp) if (200..300).contains(&resp.status) => {
                    if resp.status == 204 || resp.body.is_empty() {
                        return Ok(Value::Null);
                    }
                    return serde_json::from_slice(&resp.body).map_err(|e| NbError::Unexpected {
                        what,
                        detail: format!("not JSON: {e}"),
                    });
                }
                Ok(resp) if matches!(resp.status, 429 | 502 | 503 | 504) => {
                    let wait = retry_after(&resp);
                    (
                        true,
                        wait,
                        NbError::Status {
                            what: what.clone(),
                            status: resp.status,
                            body: body_text(&resp.body),
                        },
                    )
                }
                Ok(resp) if matches!(resp.status, 401 | 403) => {
                    let detail = resp
                        .json()
                        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_string))
                        .unwrap_or_else(|| format!("HTTP {}", resp.status));
                    return Err(NbError::Auth { what, detail });
                }
                Ok(resp) => {
                    return Err(NbError::Status {
                        what,
                        status: resp.status,
                        body: body_text(&resp.body),
                    })
                }
                Err(e) => {
                    // A create that timed out may have been carried out: do
                    // not send it twice. Connect/TLS failures are safe.
                    let retry =
                        !matches!(e, TransportError::BadHeader(_)) && (e.not_sent() || !is_create);
                    (
                        retry,
                        None,
                        NbError::Unreachable {
                            what: what.clone(),
                            detail: e.to_string(),
                        },
                    )
                }
            };
            if !retryable || attempt >= self.max_attempts {
                return Err(err);
            }
            let sleep = wait.unwrap_or(delay);
            tracing::info!(request = %what, attempt, wait_ms = sleep.as_millis() as u64, "NetBox request failed ({err}); retrying");
            tokio::time::sleep(sleep).await;
            delay = delay.saturating_mul(2).min(Duration::from_secs(30));
        }
    }

    /// Every object at `endpoint` (e.g. `dcim/devices`) matching `query`
    /// (`tag=x&…`, without limit/offset), following pagination to the end.
    pub async fn list(&self, endpoint: &str, query: &str) -> Result<Vec<Value>, NbError> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        for _ in 0..MAX_PAGES {
            let sep = if query.is_empty() { "" } else { "&" };
            let path = format!("/api/{endpoint}/?{query}{sep}limit=1000&offset={offset}");
            let page = self.send(Method::GET, &path, None).await?;
            let results = page
                .get("results")
                .and_then(Value::as_array)
                .ok_or_else(|| NbError::Unexpected {
                    what: format!("GET {path}"),
                    detail: "no `results` list".into(),
                })?;
            let n = results.len();
            out.extend(results.iter().cloned());
            if page.get("next").is_none_or(Value::is_null) || n == 0 {
                return Ok(out);
            }
            offset += n;
        }
        Err(NbError::Unexpected {
            what: format!("GET /api/{endpoint}/"),
            detail: format!("more than {MAX_PAGES} pages; giving up"),
        })
    }

    /// Bulk create; returns the created objects in input order.
    pub async fn create(&self, endpoint: &str, items: &[Value]) -> Result<Vec<Value>, NbError> {
        let path = format!("/api/{endpoint}/");
        let v = self
            .send(Method::POST, &path, Some(&Value::Array(items.to_vec())))
            .await?;
        into_list(v, &path, items.len())
    }

    /// Bulk update (each item has `id`); returns the updated objects.
    pub async fn update(&self, endpoint: &str, items: &[Value]) -> Result<Vec<Value>, NbError> {
        let path = format!("/api/{endpoint}/");
        let v = self
            .send(Method::PATCH, &path, Some(&Value::Array(items.to_vec())))
            .await?;
        into_list(v, &path, items.len())
    }

    /// Bulk delete by id.
    pub async fn delete(&self, endpoint: &str, ids: &[u64], message: &str) -> Result<(), NbError> {
        let path = format!("/api/{endpoint}/");
        let body: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({"id": id, "changelog_message": message}))
            .collect();
        self.send(Method::DELETE, &path, Some(&Value::Array(body)))
            .await
            .map(|_| ())
    }
}

fn into_list(v: Value, path: &str, n: usize) -> Result<Vec<Value>, NbError> {
    match v {
        Value::Array(a) if a.len() == n => Ok(a),
        Value::Array(a) => Err(NbError::Unexpected {
            what: path.to_string(),
            detail: format!("sent {n} objects, got {} back", a.len()),
        }),
        other => Err(NbError::Unexpected {
            what: path.to_string(),
            detail: format!("expected a list, got {}", truncate(&other.to_string())),
        }),
    }
}

fn body_text(b: &[u8]) -> String {
    truncate(&String::from_utf8_lossy(b))
}

fn truncate(s: &str) -> String {
    if s.len() > 600 {
        let mut end = 600;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}
