//! The HTTP(S) client of deliveries: one POST on its own connection.
//!
//! Invariants: hyper 1 HTTP/1.1 on a fresh connection per request (alerts
//! are rare; no pool to go stale); TLS through rustls with the `ring`
//! provider, trusting the system's roots (`/etc/ssl/certs`, via
//! `rustls-native-certs`) plus the target's `ca_file`; redirects are never
//! followed (a 3xx is a failed attempt); the whole attempt (connect, TLS,
//! request, response head and a bounded read of the body) is bounded by
//! one timeout. Errors never contain the URL (it may hold a secret).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

use super::format::OutRequest;

/// How much of an error response's body is kept.
pub const SNIPPET_BYTES: usize = 512;

/// What the target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The start of the body (at most [`SNIPPET_BYTES`], lossy UTF-8).
    pub snippet: String,
}

impl Answer {
    /// A 2xx status.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The URL or a header cannot be used.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The `ca_file` cannot be read or holds no certificate.
    #[error("ca_file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {host}: {detail}")]
    Connect {
        /// host:port.
        host: String,
        /// The OS error.
        detail: String,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, ...).
    #[error("TLS handshake with {host} failed: {detail}")]
    Tls {
        /// host:port.
        host: String,
        /// rustls's reason.
        detail: String,
    },
    /// HTTP-level failure (connection closed, malformed response).
    #[error("HTTP exchange failed: {0}")]
    Http(String),
    /// The attempt took longer than the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// The system's trusted roots, read once.
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

fn tls_config(ca_file: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    let (_added, _ignored) = roots.add_parsable_certificates(native_roots().iter().cloned());
    if let Some(path) = ca_file {
        let bad = |detail: String| SendError::CaFile {
            path: path.display().to_string(),
            detail,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad("no PEM certificate in it".to_string()));
        }
        for c in certs {
            roots.add(c).map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// POSTs `req`, bounded by `timeout`. `Ok` is any HTTP answer (2xx or not).
pub async fn post(
    req: &OutRequest,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<Answer, SendError> {
    match tokio::time::timeout(timeout, exchange(req, ca_file)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::Timeout(timeout)),
    }
}

async fn exchange(req: &OutRequest, ca_file: Option<&Path>) -> Result<Answer, SendError> {
    let uri: hyper::Uri = req
        .url
        .parse()
        .map_err(|_| SendError::Invalid("the URL does not parse".to_string()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(SendError::Invalid("the URL is not http(s)".to_string())),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| SendError::Invalid("the URL has no host".to_string()))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host_port = format!("{}:{port}", authority.host());
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());

    let mut builder = hyper::Request::post(path).header(hyper::header::HOST, authority.as_str());
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| SendError::Invalid(format!("header name '{k}'")))?;
        let value = HeaderValue::from_bytes(v.as_bytes())
            .map_err(|_| SendError::Invalid(format!("the value of header '{k}'")))?;
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(Bytes::from(req.body.clone())))
        .map_err(|e| SendError::Invalid(e.to_string()))?;

    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| SendError::Connect {
            host: host_port.clone(),
            detail: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    if https {
        let connector = tokio_rustls::TlsConnector::from(tls_config(ca_file)?);
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| SendError::Invalid(format!("TLS server name: {e}")))?;
        let tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Tls {
                host: host_port.clone(),
                detail: e.to_string(),
            })?;
        send_on(TokioIo::new(tls), request).await
    } else {
        send_on(TokioIo::new(tcp), request).await
    }
}

async fn send_on<I>(io: I, request: hyper::Request<Full<Bytes>>) -> Result<Answer, SendError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| SendError::Http(e.to_string()))?;
    // Aborted on drop, also when the timeout drops this future mid-exchange.
    let _driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "notification connection ended");
        }
    }));
    let result = async {
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| SendError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        // Read at most a snippet: a target's error page can be large.
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while buf.len() < SNIPPET_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        buf.extend_from_slice(d);
                    }
                }
                Some(Err(_)) | None => break,
            }
        }
        buf.truncate(SNIPPET_BYTES);
        Ok(Answer {
            status,
            snippet: String::from_utf8_lossy(&buf).trim().to_string(),
        })
    }
    .await;
    result
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
