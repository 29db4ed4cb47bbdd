//! The HTTP side shared by every fake: listener, connection handling, the
//! record of what was replayed and what was not, and the [`Handle`] a caller
//! keeps.
//!
//! A fake is an [`Upstream`]: given a [`LiveRequest`] it returns an
//! [`Answer`], either a reply (replayed from a transcript, or, once the sync
//! issues land, computed from the fake's own state) or "unrecorded", which
//! the server turns into a loud `599` and an `ERROR` log line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::transcript::Reply;
use crate::Error;

/// Largest request body read (bytes); larger requests are unrecorded.
pub const MAX_REQUEST_BODY: usize = 8 * 1024 * 1024;

/// The status of the "nothing recorded matches" answer: outside every real
/// server's vocabulary, so no client can mistake it for a real answer.
pub const UNRECORDED_STATUS: u16 = 599;

/// A request as received.
#[derive(Debug, Clone)]
pub struct LiveRequest {
    /// Method.
    pub method: Method,
    /// Path with query, as sent.
    pub path_and_query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl LiveRequest {
    /// The path without its query.
    pub fn path(&self) -> &str {
        self.path_and_query
            .split('?')
            .next()
            .unwrap_or(&self.path_and_query)
    }

    /// A header as text (`None` when absent or not visible ASCII).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Authorization` header as text.
    pub fn authorization(&self) -> Option<&str> {
        self.headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
    }

    /// The `Content-Type` without parameters.
    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE.as_str())
            .map(|ct| ct.split(';').next().unwrap_or(ct).trim())
    }

    /// Whether the recorded JSON body (`Null` = no body) equals this body.
    pub fn body_matches(&self, recorded: &serde_json::Value) -> bool {
        match recorded {
            serde_json::Value::Null => self.body.is_empty(),
            expected => {
                serde_json::from_slice::<serde_json::Value>(&self.body)
                    .ok()
                    .as_ref()
                    == Some(expected)
            }
        }
    }

    /// `METHOD /path?query`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path_and_query)
    }
}

/// What a fake answers.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Send this reply.
    Reply {
        /// The reply.
        reply: Reply,
        /// Where it came from (`netbox/01-auth.json#1`, …).
        from: String,
        /// The recorder's note, if any.
        note: Option<String>,
    },
    /// Nothing recorded matches: answered with a 599.
    Unrecorded {
        /// Why, for the log and the 599 body (never a credential).
        reason: String,
    },
}

/// A fake upstream.
///
/// Implementations answer from recorded transcripts today; the sync issues
/// (9: NetBox object creation, 10: Wiki.js page mutations) extend them with
/// state behind interior mutability, consulted before the replay lookup.
pub trait Upstream: Send + Sync + 'static {
    /// Short name for logs and messages (`netbox`, `wikijs`, `ha`, `replay`).
    fn name(&self) -> &'static str;
    /// The answer to `req`.
    fn answer(&self, req: &LiveRequest) -> Answer;
}

/// A request that was answered from a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// `METHOD /path?query`.
    pub line: String,
    /// Where the reply came from.
    pub from: String,
    /// The recorder's note.
    pub note: Option<String>,
}

/// A request nothing recorded matched (answered 599).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    /// `METHOD /path?query`.
    pub line: String,
    /// Why nothing matched.
    pub reason: String,
}

impl std::fmt::Display for Unrecorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.line, self.reason)
    }
}

#[derive(Debug, Default)]
struct Log {
    hits: Vec<Hit>,
    unrecorded: Vec<Unrecorded>,
}

/// A running fake. Dropping it stops the listener and every connection.
#[derive(Debug)]
pub struct Handle {
    name: &'static str,
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The fake's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Requests answered from recordings, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hits
            .clone()
    }

    /// Requests answered with 599, in arrival order.
    pub fn unrecorded(&self) -> Vec<Unrecorded> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unrecorded
            .clone()
    }

    /// Stops accepting, closes every connection and waits for the listener
    /// task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `upstream` on `addr` (checked against [`crate::addr::check_listen`]).
pub async fn serve(upstream: Arc<dyn Upstream>, addr: SocketAddr) -> Result<Handle, Error> {
    serve_with_ws(upstream, addr, None).await
}

/// Handles a WebSocket connection (the HTTP upgrade request not yet read).
pub type WsHook = Arc<
    dyn Fn(tokio::net::TcpStream) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// Whether the connection's first request line is `GET <path>`, without
/// consuming anything (peek; bounded wait for the line to arrive).
async fn first_request_is(stream: &tokio::net::TcpStream, path: &str) -> bool {
    let mut buf = [0u8; 256];
    for _ in 0..100 {
        let Ok(n) = stream.peek(&mut buf).await else {
            return false;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        if let Some(line) = text
            .split("\r\n")
            .next()
            .filter(|_| text.contains("\r\n") || n == buf.len())
        {
            let target = line.split(' ').nth(1).unwrap_or("");
            return line.starts_with("GET ") && target.split('?').next() == Some(path);
        }
        if n == 0 {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    false
}

/// [`serve`], plus connections whose first request is `GET <path>` handed
/// to `ws` (a WebSocket endpoint on the same port, as Home Assistant has).
pub async fn serve_with_ws(
    upstream: Arc<dyn Upstream>,
    addr: SocketAddr,
    ws: Option<(&'static str, WsHook)>,
) -> Result<Handle, Error> {
    crate::addr::check_listen(addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let log = Arc::new(Mutex::new(Log::default()));
    let (stop, mut stopped) = oneshot::channel();
    let name = upstream.name();
    let task_log = Arc::clone(&log);
    let task = tokio::spawn(async move {
        // Dropping the set (when this task ends or is aborted) aborts every
        // connection task.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let (upstream, log) = (Arc::clone(&upstream), Arc::clone(&task_log));
                    let ws = ws.clone();
                    conns.spawn(async move {
                        if let Some((path, hook)) = ws {
                            if first_request_is(&stream, path).await {
                                hook(stream).await;
                                return;
                            }
                        }
                        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                            let (upstream, log) = (Arc::clone(&upstream), Arc::clone(&log));
                            async move { Ok::<_, Infallible>(handle(&*upstream, &log, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    tracing::info!(upstream = name, url = %format!("http://{bound}"), "fake listening");
    Ok(Handle {
        name,
        addr: bound,
        log,
        stop: Some(stop),
        task,
    })
}

async fn handle(
    upstream: &dyn Upstream,
    log: &Mutex<Log>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let (body, body_error) = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(b) => (b.to_bytes(), None),
        Err(e) => (
            Bytes::new(),
            Some(format!(
                "request body unreadable or larger than {MAX_REQUEST_BODY} bytes: {e}"
            )),
        ),
    };
    let live = LiveRequest {
        method: parts.method,
        path_and_query,
        headers: parts.headers,
        body,
    };
    let answer = match body_error {
        Some(reason) => Answer::Unrecorded { reason },
        None => upstream.answer(&live),
    };
    let name = upstream.name();
    match answer {
        Answer::Reply { reply, from, note } => {
            tracing::info!(upstream = name, request = %live.line(), status = reply.status.as_u16(), from = %from, "replayed");
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .hits
                .push(Hit {
                    line: live.line(),
                    from,
                    note,
                });
            to_response(reply)
        }
        Answer::Unrecorded { reason } => {
            tracing::error!(upstream = name, request = %live.line(), reason = %reason, "UNRECORDED request answered 599");
            let body = format!(
                "fake-upstreams/{name}: UNRECORDED REQUEST {}\n{reason}\nThe fake only answers requests recorded on a real server (status {UNRECORDED_STATUS} is not a real answer).\n",
                live.line()
            );
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .unrecorded
                .push(Unrecorded {
                    line: live.line(),
                    reason,
                });
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            headers.insert(
                "x-fake-upstream",
                HeaderValue::from_static("unrecorded-request"),
            );
            to_response(Reply {
                status: StatusCode::from_u16(UNRECORDED_STATUS)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                body: Bytes::from(body),
            })
        }
    }
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(reply.body));
    *resp.status_mut() = reply.status;
    *resp.headers_mut() = reply.headers;
    resp
}

/// A short description of a credential for messages: the recorded
/// placeholder when it is one, else only its shape (never the value).
pub fn describe_auth(value: Option<&str>) -> String {
    match value {
        None => "no Authorization header".into(),
        Some(v) if v.contains('<') || v == "Bearer" || v == "Bearer not-a-jwt" => {
            format!("Authorization `{v}`")
        }
        Some(v) => {
            let scheme = v.split(' ').next().unwrap_or_default();
            format!(
                "Authorization `{scheme} …` ({} chars, not shown)",
                v.chars().count()
            )
        }
    }
}
