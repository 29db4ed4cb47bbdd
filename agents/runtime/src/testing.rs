//! Test support (feature `test-support`): a fake upstream that replays
//! recorded HTTP transcripts exactly.
//!
//! A transcript is a JSON array of `{request: {method, path, headers, body},
//! response: {status, headers, body}}` (the format of the NetBox and Wiki.js
//! recordings). A live request is answered with the first recorded exchange
//! whose method, path (with query), every recorded request header, the
//! absence of `Authorization` when none was recorded, and JSON body all
//! match. Anything else gets a 599 and is remembered, so a test can assert
//! that the client sent exactly what the real server saw.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// One recorded request/response pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Exchange {
    /// The request as sent.
    pub request: RecordedRequest,
    /// The answer as received.
    pub response: RecordedResponse,
    /// The recorder's note.
    #[serde(default)]
    pub note: Option<String>,
}

/// A recorded request.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedRequest {
    /// Method.
    pub method: String,
    /// Path with query.
    pub path: String,
    /// Headers that were sent.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body, or null.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// A recorded response.
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedResponse {
    /// Status.
    pub status: u16,
    /// Headers kept by the recorder.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body, a string for non-JSON bodies, or null.
    #[serde(default)]
    pub body: serde_json::Value,
}

/// Reads a transcript file.
///
/// # Panics
/// On an unreadable or malformed file (test support only).
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub fn load_transcript(path: &Path) -> Vec<Exchange> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad transcript {}: {e}", path.display()))
}

/// The running fake.
#[derive(Debug)]
pub struct ReplayServer {
    addr: SocketAddr,
    unmatched: Arc<Mutex<Vec<String>>>,
    hits: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn matches(
    ex: &Exchange,
    method: &str,
    path: &str,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> bool {
    if !ex.request.method.eq_ignore_ascii_case(method) || ex.request.path != path {
        return false;
    }
    for (name, value) in &ex.request.headers {
        let live = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        // Content-Type parameters (charset) are not part of what we compare.
        let live = live.map(|v| {
            if name.eq_ignore_ascii_case("content-type") {
                v.split(';').next().unwrap_or(v).trim()
            } else {
                v
            }
        });
        if live != Some(value.as_str()) {
            return false;
        }
    }
    let recorded_auth = ex
        .request
        .headers
        .keys()
        .any(|k| k.eq_ignore_ascii_case("authorization"));
    if !recorded_auth && headers.contains_key(hyper::header::AUTHORIZATION) {
        return false;
    }
    match &ex.request.body {
        serde_json::Value::Null => body.is_empty(),
        expected => {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .as_ref()
                == Some(expected)
        }
    }
}

fn respond(ex: &Exchange) -> Response<Full<Bytes>> {
    let body = match &ex.response.body {
        serde_json::Value::Null => Bytes::new(),
        serde_json::Value::String(s) => Bytes::from(s.clone()),
        v => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
    };
    let mut builder = Response::builder().status(ex.response.status);
    for (k, v) in &ex.response.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::from_static(b"bad recorded response"))))
}

impl ReplayServer {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound (test support only).
    #[allow(clippy::expect_used)]
    pub async fn start(exchanges: Vec<Exchange>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let exchanges = Arc::new(exchanges);
        let unmatched = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (u2, h2) = (Arc::clone(&unmatched), Arc::clone(&hits));
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (exchanges, unmatched, hits) =
                    (Arc::clone(&exchanges), Arc::clone(&u2), Arc::clone(&h2));
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let (exchanges, unmatched, hits) = (
                            Arc::clone(&exchanges),
                            Arc::clone(&unmatched),
                            Arc::clone(&hits),
                        );
                        async move {
                            let method = req.method().to_string();
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("/".to_string(), |p| p.as_str().to_string());
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let found = exchanges
                                .iter()
                                .find(|ex| matches(ex, &method, &path, &headers, &body));
                            let line = format!("{method} {path}");
                            Ok::<_, Infallible>(match found {
                                Some(ex) => {
                                    hits.lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push(ex.note.clone().unwrap_or(line));
                                    respond(ex)
                                }
                                None => {
                                    let auth = headers
                                        .get(hyper::header::AUTHORIZATION)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or("<none>");
                                    let what = format!(
                                        "{line} auth={auth} body={}",
                                        String::from_utf8_lossy(&body)
                                    );
                                    unmatched
                                        .lock()
                                        .unwrap_or_else(PoisonError::into_inner)
                                        .push(what.clone());
                                    let mut r = Response::new(Full::new(Bytes::from(format!(
                                        "replay: no recorded exchange matches {what}"
                                    ))));
                                    *r.status_mut() =
                                        hyper::StatusCode::from_u16(599).unwrap_or_default();
                                    r
                                }
                            })
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            unmatched,
            hits,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that matched no exchange.
    pub fn unmatched(&self) -> Vec<String> {
        self.unmatched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Notes (or request lines) of the exchanges that were replayed.
    pub fn hits(&self) -> Vec<String> {
        self.hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A free TCP port on 127.0.0.1 (bound, then released).
///
/// # Panics
/// When no port can be bound (test support only).
#[allow(clippy::expect_used)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// A port on 127.0.0.1 where nothing listens (for "upstream down" tests).
pub fn closed_port_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// Writes `text` to `path` with `mode`.
///
/// # Panics
/// On I/O errors (test support only).
#[allow(clippy::expect_used)]
pub fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `GET http://127.0.0.1:<port><path>`: status and JSON body (Null when the
/// body is not JSON); `None` when nothing answers.
pub async fn get_json(port: u16, path: &str) -> Option<(u16, serde_json::Value)> {
    let base = crate::http_client::BaseUrl::parse(&format!("http://127.0.0.1:{port}")).ok()?;
    let resp = crate::http_client::send(
        &base,
        hyper::Method::GET,
        path,
        &[],
        None,
        std::time::Duration::from_secs(5),
    )
    .await
    .ok()?;
    Some((resp.status, resp.json().unwrap_or(serde_json::Value::Null)))
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `within`.
///
/// # Panics
/// When the deadline passes (test support only).
pub async fn wait_for<T, F, Fut>(what: &str, within: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An agent process that is killed when dropped.
#[derive(Debug)]
pub struct AgentProcess {
    /// The child (stdout/stderr piped).
    pub child: tokio::process::Child,
}

impl AgentProcess {
    /// Starts `binary` with `args`, stdout and stderr piped, `RUST_LOG=debug`.
    ///
    /// # Panics
    /// When the binary cannot be started (test support only).
    #[allow(clippy::expect_used)]
    pub fn spawn(binary: &str, args: &[&str]) -> Self {
        let child = tokio::process::Command::new(binary)
            .args(args)
            .env("RUST_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn agent");
        Self { child }
    }

    /// Process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Runs `binary` with `args` to completion: exit code, stdout, stderr.
///
/// # Panics
/// When the binary cannot be run or does not finish in 30 s.
#[allow(clippy::expect_used)]
pub async fn run_to_end(binary: &str, args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::process::Command::new(binary)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("agent did not finish within 30 s")
    .expect("run agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
