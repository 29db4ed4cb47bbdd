//! HTTP/1.1 over the daemon's Unix socket (hyperlocal), typed with
//! [`crate::api`].
//!
//! Invariants: every non-2xx answer becomes [`ClientError::Api`] with the
//! daemon's code and message (the one error body); a failure to connect
//! becomes [`ClientError::Unavailable`] or [`ClientError::SocketDenied`],
//! never a raw hyper error.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyperlocal::{UnixClientExt, UnixConnector, Uri};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ClientError;
use crate::api::{ApiErrorBody, Event, HostInfo, OpLogChunk, Operation, RootInfo, TemplateRequest};

/// A client of one daemon socket. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
    http: HyperClient<UnixConnector, Full<Bytes>>,
    trace: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Percent-encodes `s` for a query value or a path segment.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`?a=1&b=x`) of the pairs whose value is set.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl Client {
    /// A client of the daemon listening on `socket`.
    pub fn new(socket: &Path) -> Self {
        Self {
            socket: socket.to_path_buf(),
            http: HyperClient::unix(),
            trace: false,
        }
    }

    /// Prints each request and its status on stderr (`-vv`).
    pub fn with_trace(mut self, trace: bool) -> Self {
        self.trace = trace;
        self
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect_error(&self, err: &(dyn std::error::Error + 'static)) -> ClientError {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cur {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::PermissionDenied {
                    return ClientError::SocketDenied {
                        socket: self.socket.clone(),
                        group: socket_group(&self.socket),
                    };
                }
                return ClientError::Unavailable {
                    socket: self.socket.clone(),
                    reason: io_reason(io),
                };
            }
            cur = e.source();
        }
        ClientError::Unavailable {
            socket: self.socket.clone(),
            reason: err.to_string(),
        }
    }

    /// Sends a request; the response with its body unread. Errors: the
    /// connection, or a non-2xx status (body decoded).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(Uri::new(&self.socket, path))
            .header("accept", "application/json")
            .header("user-agent", concat!("1ldctl/", env!("CARGO_PKG_VERSION")));
        if json.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| ClientError::Usage(format!("bad request {method} {path}: {e}")))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| self.connect_error(&e))?;
        if self.trace {
            eprintln!("> {method} {path} -> {}", resp.status().as_u16());
        }
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Err(api_error(status, &body))
    }

    /// A request whose answer is JSON of type `T`.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let resp = self.send(method, path, json).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Protocol {
                what: what.clone(),
                detail: format!("reading the body: {e}"),
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol {
            what,
            detail: e.to_string(),
        })
    }

    /// `GET path` as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON; the answer as `T`.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let json = serde_json::to_vec(body).map_err(|e| ClientError::Protocol {
            what: format!("POST {path}"),
            detail: format!("encoding the request: {e}"),
        })?;
        self.call(Method::POST, path, Some(json)).await
    }

    /// `DELETE path`; the answer as `T`.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// `GET /`.
    pub async fn root(&self) -> Result<RootInfo, ClientError> {
        self.get("/").await
    }

    /// `GET /v1/host`.
    pub async fn host(&self) -> Result<HostInfo, ClientError> {
        self.get("/v1/host").await
    }

    /// `GET /v1/operations/{id}`.
    pub async fn operation(&self, id: &str) -> Result<Operation, ClientError> {
        self.get(&format!("/v1/operations/{}", encode(id))).await
    }

    /// `GET /v1/operations/{id}/log?offset=`.
    pub async fn op_log(&self, id: &str, offset: u64) -> Result<OpLogChunk, ClientError> {
        self.get(&format!(
            "/v1/operations/{}/log?offset={offset}",
            encode(id)
        ))
        .await
    }

    /// `GET /v1/operations/{id}/wait?timeout=`.
    pub async fn wait(&self, id: &str, timeout_secs: u64) -> Result<Operation, ClientError> {
        self.get(&format!(
            "/v1/operations/{}/wait?timeout={timeout_secs}",
            encode(id)
        ))
        .await
    }

    /// `DELETE /v1/operations/{id}`: request cancellation.
    pub async fn cancel(&self, id: &str) -> Result<Operation, ClientError> {
        self.delete(&format!("/v1/operations/{}", encode(id))).await
    }

    /// `POST /v1/templates`.
    pub async fn download_template(&self, req: &TemplateRequest) -> Result<Operation, ClientError> {
        self.post("/v1/templates", req).await
    }

    /// `GET path` as a stream of lines (NDJSON or text); returns once the
    /// headers arrived.
    pub async fn lines(&self, path: &str) -> Result<LineStream, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        Ok(LineStream {
            what: format!("GET {path}"),
            body: resp.into_body(),
            buf: Vec::new(),
            done: false,
        })
    }

    /// `GET /v1/events?type=...`: returns once the daemon has subscribed
    /// (the headers arrived), so nothing published afterwards is missed.
    pub async fn events(&self, types: &[&str]) -> Result<EventStream, ClientError> {
        let q = if types.is_empty() {
            String::new()
        } else {
            format!("?type={}", types.join(","))
        };
        Ok(EventStream(self.lines(&format!("/v1/events{q}")).await?))
    }
}

/// The daemon's error body as a [`ClientError::Api`] (a body that is not
/// one keeps the status and the text).
pub fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ApiErrorBody>(body) {
        Ok(b) => ClientError::Api {
            status: status.as_u16(),
            code: b.error.code,
            message: b.error.message,
        },
        Err(_) => ClientError::Api {
            status: status.as_u16(),
            code: status
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace(' ', "_"),
            message: format!(
                "1ldd answered {status}: {}",
                String::from_utf8_lossy(body).trim()
            ),
        },
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such socket".to_string(),
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        _ => {
            let s = e.to_string();
            // "Connection reset (os error 104)" -> "connection reset"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// The name of the group owning `socket`, if readable.
fn socket_group(socket: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(socket).ok()?.gid();
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
        .ok()
        .flatten()
        .map(|g| g.name)
}

/// A streamed response, line by line.
#[derive(Debug)]
pub struct LineStream {
    what: String,
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl LineStream {
    /// The next line (without its newline); `None` when the stream ended.
    pub async fn next_line(&mut self) -> Result<Option<String>, ClientError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                return Ok(Some(text));
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let rest = std::mem::take(&mut self.buf);
                return Ok(Some(String::from_utf8_lossy(&rest).into_owned()));
            }
            match self.body.frame().await {
                None => self.done = true,
                Some(Err(e)) => {
                    return Err(ClientError::Protocol {
                        what: self.what.clone(),
                        detail: format!("the stream broke: {e}"),
                    })
                }
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

/// `GET /v1/events`, decoded.
#[derive(Debug)]
pub struct EventStream(LineStream);

impl EventStream {
    /// The next event; `None` when the stream ended (daemon shutdown, or
    /// after a `lagged` event).
    pub async fn next(&mut self) -> Result<Option<Event>, ClientError> {
        loop {
            let Some(line) = self.0.next_line().await? else {
                return Ok(None);
            };
            if line.trim().is_empty() {
                continue;
            }
            return serde_json::from_str(&line)
                .map(Some)
                .map_err(|e| ClientError::Protocol {
                    what: self.0.what.clone(),
                    detail: format!("bad event line ({e}): {line}"),
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_values_and_skip_unset_ones() {
        assert_eq!(
            query(&[
                ("status", Some("queued,running".into())),
                ("kind", None),
                ("target", Some("template/local/a b".into()))
            ]),
            "?status=queued%2Crunning&target=template%2Flocal%2Fa%20b"
        );
        assert_eq!(query(&[("kind", None)]), "");
    }

    #[test]
    fn a_non_json_error_keeps_status_and_text() {
        let e = api_error(StatusCode::BAD_GATEWAY, b"oops");
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("oops"));
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"not_found","message":"no operation x"}}"#,
        );
        assert_eq!((e.exit_code(), e.code()), (3, "not_found"));
    }
}
