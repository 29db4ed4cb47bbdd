//! The agent's HTTP endpoints: `GET /health` and `GET <status path>`.
//!
//! hyper 1 over a tokio `TcpListener`, HTTP/1.1 only. `/health` runs the local
//! probes on a blocking thread and answers 200 (healthy, degraded) or 503
//! (unhealthy). Errors use the project's one error body,
//! `{"error":{"code":"snake_case","message":"..."}}`. On shutdown the listener
//! is dropped first (no new connections), open connections are asked to close
//! after their current request, and stragglers are cut after the grace period.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::Checks;

/// Produces the status document on each request.
pub type StatusFn = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// A request for an agent's own routes ([`crate::Worker::route`]), with the
/// body already read (at most [`crate::Worker::max_request_body`] bytes).
#[derive(Debug, Clone)]
pub struct AgentRequest {
    /// Method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// Headers as received.
    pub headers: hyper::HeaderMap,
    /// The raw body bytes (webhook signatures are computed over these).
    pub body: Bytes,
}

/// An agent's reply to one of its own routes.
pub type AgentResponse = Response<Full<Bytes>>;

/// Future returned by a [`RouteFn`].
pub type RouteFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<AgentResponse>> + Send>>;

/// The agent's own routes: `None` means "not mine" (404).
pub type RouteFn = Arc<dyn Fn(AgentRequest) -> RouteFuture + Send + Sync>;

/// What the endpoints serve.
#[derive(Clone)]
pub struct Endpoints {
    /// The check registry behind `/health`.
    pub checks: Checks,
    /// Path of the status endpoint (e.g. `/status`).
    pub status_path: &'static str,
    /// The status document.
    pub status: StatusFn,
    /// The agent's own routes, tried for any other path.
    pub routes: Option<RouteFn>,
    /// Largest body read for the agent's routes (413 beyond).
    pub max_body: usize,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("status_path", &self.status_path)
            .finish_non_exhaustive()
    }
}

fn json(status: StatusCode, value: &impl serde::Serialize, head: bool) -> Response<Full<Bytes>> {
    let body = match serde_json::to_vec_pretty(value) {
        Ok(mut b) => {
            b.push(b'\n');
            b
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize a response");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            );
        }
    };
    let mut resp = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
        false,
    )
}

/// A JSON error response in the project's one error body.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Full<Bytes>> {
    error(status, code, message)
}

/// A JSON response (pretty, `no-store`).
pub fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    json(status, value, false)
}

/// Reads the body (bounded) and passes the request to the agent's routes.
async fn route(
    endpoints: &Endpoints,
    routes: &RouteFn,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("the body is larger than {} bytes", endpoints.max_body),
        )
    };
    if declared.is_some_and(|n| n > endpoints.max_body) {
        return too_large();
    }
    let body = match http_body_util::Limited::new(body, endpoints.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return too_large(),
    };
    let request = AgentRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    match routes(request).await {
        Some(resp) => resp,
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no such endpoint; try /health or {}", endpoints.status_path),
        ),
    }
}

/// Answers one request, including the agent's own routes.
pub async fn handle_any(endpoints: &Endpoints, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = path == "/health" || path == endpoints.status_path;
    match (&endpoints.routes, known) {
        (Some(routes), false) => route(endpoints, routes, req).await,
        _ => handle(endpoints, &req).await,
    }
}

/// Answers one request.
pub async fn handle(endpoints: &Endpoints, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = path == "/health" || path == endpoints.status_path;
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no such endpoint; try /health or {}", endpoints.status_path),
        );
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut resp = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET and HEAD are allowed here",
        );
        resp.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    if path == "/health" {
        let checks = endpoints.checks.clone();
        match tokio::task::spawn_blocking(move || checks.evaluate()).await {
            Ok(report) => {
                let code = StatusCode::from_u16(report.status.http_status())
                    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                json(code, &report, head)
            }
            Err(e) => {
                tracing::error!(error = %e, "health evaluation failed");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "health_check_failed",
                    "health evaluation failed; see the agent's log",
                )
            }
        }
    } else {
        json(StatusCode::OK, &(endpoints.status)(), head)
    }
}

/// Serves until `shutdown` is cancelled, then drains connections for up to
/// `grace`.
pub async fn serve(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let endpoints = Arc::new(endpoints);
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Reap finished connection tasks so the set does not grow.
        while conns.try_join_next().is_some() {}
        let endpoints = Arc::clone(&endpoints);
        let shutdown = shutdown.clone();
        conns.spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let endpoints = Arc::clone(&endpoints);
                async move { Ok::<_, Infallible>(handle_any(&endpoints, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("closing connections still open after the grace period");
        conns.abort_all();
    }
}
