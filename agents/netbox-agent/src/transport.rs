//! HTTP(S) and WebSocket transport for NetBox and the sources.
//!
//! `http://` goes through the runtime's plain client
//! (`agent_runtime::http_client`); `https://` (and `wss://` for the
//! WebSocket APIs) is TLS with rustls and the *ring* provider, never
//! OpenSSL (the binary must run on a bare Debian template). Certificates are
//! always verified: against the system's roots (`/etc/ssl/certs` through
//! rustls-native-certs) plus, when configured, a PEM CA file (`ca_file`, for
//! a homelab's private CA or Proxmox's `pve-root-ca.pem`). There is no
//! switch to turn verification off.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use agent_runtime::http_client::{self, BaseUrl, HttpError, Response, MAX_BODY};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A transport failure (no HTTP answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// Resolve or connect failed: the request was not sent.
    #[error("cannot connect to {authority}: {detail}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// Why.
        detail: String,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch…).
    #[error("TLS with {authority} failed: {detail} (certificates are always verified; set the ca_file option to trust a private CA)")]
    Tls {
        /// `host:port`.
        authority: String,
        /// Why.
        detail: String,
    },
    /// No complete answer in time (the request may have been processed).
    #[error("no complete answer from {authority} within {after:?}")]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The deadline.
        after: Duration,
    },
    /// The exchange broke off or the answer was malformed or too large.
    #[error("HTTP exchange with {authority} failed: {detail}")]
    Protocol {
        /// `host:port`.
        authority: String,
        /// Why.
        detail: String,
    },
    /// A header we were asked to send is not valid (value never shown).
    #[error("invalid value for request header {0}")]
    BadHeader(String),
}

impl TransportError {
    /// Whether the request certainly did not reach the server.
    pub fn not_sent(&self) -> bool {
        matches!(self, Self::Connect { .. } | Self::Tls { .. })
    }
}

/// Where an upstream is: plain http (the runtime's client) or https.
#[derive(Debug, Clone)]
pub struct Endpoint {
    original: String,
    plain: BaseUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
}

fn native_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "a system CA certificate could not be loaded");
        }
        found.certs
    })
}

/// The rustls client config: system roots plus `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add_parsable_certificates(native_roots().iter().cloned());
    if let Some(path) = ca_file {
        let bad = |d: String| format!("CA file {}: {d}", path.display());
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".into()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

impl Endpoint {
    /// Parses `http(s)://host[:port][/prefix]`; `ca_file` adds a trusted CA
    /// for https.
    pub fn parse(url: &str, ca_file: Option<&Path>) -> Result<Self, String> {
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.strip_prefix("http://").unwrap_or("")),
        };
        if !https {
            let plain = BaseUrl::parse(url).map_err(|e| e.to_string().replace("https is not supported by this agent version (plain http only; TLS via rustls is planned); use the service's plain-http address on the LAN", "must start with http:// or https://"))?;
            let host = plain
                .authority()
                .rsplit_once(':')
                .map_or(plain.authority(), |(h, _)| h)
                .to_string();
            return Ok(Self {
                original: url.to_string(),
                plain,
                tls: None,
                host,
            });
        }
        // Reuse the plain parser for host, port and prefix; 443 by default.
        let authority = rest.split('/').next().unwrap_or("");
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']');
        let with_port = if has_port {
            rest.to_string()
        } else {
            rest.replacen(authority, &format!("{authority}:443"), 1)
        };
        let plain = BaseUrl::parse(&format!("http://{with_port}"))
            .map_err(|e| e.to_string().replace("http://", "https://"))?;
        let host = plain
            .authority()
            .rsplit_once(':')
            .map_or(plain.authority(), |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = tls_config(ca_file)?;
        Ok(Self {
            original: url.to_string(),
            plain,
            tls: Some(tls),
            host,
        })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        self.plain.authority()
    }

    /// Host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Request target for `path` under the prefix.
    pub fn target(&self, path: &str) -> String {
        self.plain.target(path)
    }

    /// Whether this is https.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `ws://` or `wss://` URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        format!(
            "{}://{}{}",
            if self.is_tls() { "wss" } else { "ws" },
            self.authority(),
            self.target(path)
        )
    }

    /// A connected stream (TLS when https), for WebSocket clients.
    pub async fn connect(&self, timeout: Duration) -> Result<Stream, TransportError> {
        let authority = self.authority().to_string();
        let work = async {
            let tcp = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|e| TransportError::Connect {
                    authority: authority.clone(),
                    detail: e.to_string(),
                })?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                None => Ok(Stream::Plain(tcp)),
                Some(cfg) => {
                    let name = ServerName::try_from(self.host.clone()).map_err(|e| {
                        TransportError::Tls {
                            authority: authority.clone(),
                            detail: e.to_string(),
                        }
                    })?;
                    let tls = tokio_rustls::TlsConnector::from(Arc::clone(cfg))
                        .connect(name, tcp)
                        .await
                        .map_err(|e| TransportError::Tls {
                            authority: authority.clone(),
                            detail: e.to_string(),
                        })?;
                    Ok(Stream::Tls(Box::new(tls)))
                }
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| TransportError::Timeout {
                authority: self.authority().to_string(),
                after: timeout,
            })?
    }
}

/// A plain or TLS TCP stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(tokio::net::TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn from_plain(e: HttpError) -> TransportError {
    match e {
        HttpError::Resolve { authority, source } | HttpError::Connect { authority, source } => {
            TransportError::Connect {
                authority,
                detail: source.to_string(),
            }
        }
        HttpError::Timeout { authority, after } => TransportError::Timeout { authority, after },
        HttpError::Protocol { authority, source } => TransportError::Protocol {
            authority,
            detail: source.to_string(),
        },
        HttpError::TooLarge { authority, limit } => TransportError::Protocol {
            authority,
            detail: format!("answer larger than {limit} bytes"),
        },
        HttpError::BadHeader { name } => TransportError::BadHeader(name),
    }
}

/// Sends one request and reads the whole answer within `timeout`. Header
/// values may be secrets: they are never logged.
pub async fn send(
    ep: &Endpoint,
    method: Method,
    path: &str,
    headers: &[(HeaderName, String)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, TransportError> {
    if !ep.is_tls() {
        return http_client::send(&ep.plain, method, path, headers, body, timeout)
            .await
            .map_err(from_plain);
    }
    let authority = ep.authority().to_string();
    let work = async {
        let stream = ep.connect(timeout).await?;
        let protocol = |detail: String| TransportError::Protocol {
            authority: authority.clone(),
            detail,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(method)
            .uri(ep.target(path))
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| TransportError::BadHeader("request line".into()))?;
        let host = authority.strip_suffix(":443").unwrap_or(&authority);
        req.headers_mut().insert(
            HOST,
            HeaderValue::from_str(host).map_err(|_| TransportError::BadHeader("host".into()))?,
        );
        for (name, value) in headers {
            let mut v = HeaderValue::from_str(value)
                .map_err(|_| TransportError::BadHeader(name.to_string()))?;
            if name == hyper::header::AUTHORIZATION {
                v.set_sensitive(true);
            }
            req.headers_mut().insert(name.clone(), v);
        }
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| protocol(e.to_string()))?;
        let status = resp.status().as_u16();
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| protocol(e.to_string()))?
            .to_bytes();
        driver.abort();
        Ok(Response {
            status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| TransportError::Timeout {
            authority: ep.authority().to_string(),
            after: timeout,
        })?
}
