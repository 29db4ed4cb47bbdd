//! A small HTTP/1.1 client for the agents' upstream APIs.
//!
//! One connection per request (the agents make a handful of calls per cycle),
//! one deadline over resolve + connect + exchange + body, and a cap on the
//! body size. Plain `http://` only: TLS would add rustls (never OpenSSL, which
//! the bare container template may not have in the version we link against),
//! and no upstream in scope needs it yet; an `https://` URL is refused when the
//! config is loaded, with that explanation, rather than failing at run time.
//!
//! Requests are never logged with their headers: they carry tokens.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;

/// Largest response body accepted (bytes).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// A base URL that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL at all.
    #[error("`{url}` is not a valid URL: {reason}")]
    Malformed {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// `https://`: not supported by this build.
    #[error("`{url}`: https is not supported by this agent version (plain http only; TLS via rustls is planned); use the service's plain-http address on the LAN")]
    Https {
        /// The URL.
        url: String,
    },
    /// Another scheme, or none.
    #[error("`{url}`: the URL must start with http://")]
    Scheme {
        /// The URL.
        url: String,
    },
    /// Query or fragment in a base URL.
    #[error("`{url}`: a base URL cannot have a query or fragment")]
    QueryOrFragment {
        /// The URL.
        url: String,
    },
}

/// The base URL of an upstream: host, port and path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    authority: String,
    /// Without the trailing slash ("" for the root).
    prefix: String,
    original: String,
}

impl BaseUrl {
    /// Parses `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let uri: Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| UrlError::Malformed {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(UrlError::Https {
                    url: url.to_string(),
                })
            }
            _ => {
                return Err(UrlError::Scheme {
                    url: url.to_string(),
                })
            }
        }
        if uri.query().is_some() || url.contains('#') {
            return Err(UrlError::QueryOrFragment {
                url: url.to_string(),
            });
        }
        let Some(authority) = uri.authority() else {
            return Err(UrlError::Malformed {
                url: url.to_string(),
                reason: "no host".into(),
            });
        };
        if authority.as_str().contains('@') {
            return Err(UrlError::Malformed {
                url: url.to_string(),
                reason: "credentials in the URL are not allowed; put them in the secrets file"
                    .into(),
            });
        }
        let authority = match authority.port_u16() {
            Some(_) => authority.as_str().to_string(),
            None => format!("{}:80", authority.host()),
        };
        Ok(Self {
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
            original: url.to_string(),
        })
    }

    /// `host:port` to connect to.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// Request target for `path` (which starts with `/`) under the prefix.
    pub fn target(&self, path: &str) -> String {
        format!("{}{}", self.prefix, path)
    }
}

/// A request failure below HTTP semantics: the upstream was not reached or
/// did not answer properly. Any HTTP status, even 500, is *not* an error here.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Name resolution failed.
    #[error("cannot resolve {authority}: {source}")]
    Resolve {
        /// `host:port`.
        authority: String,
        /// Why.
        source: std::io::Error,
    },
    /// No address accepted the connection.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The last address's error.
        source: std::io::Error,
    },
    /// The deadline passed.
    #[error("no complete answer from {authority} within {after:?}")]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The deadline.
        after: Duration,
    },
    /// HTTP protocol failure (connection closed early, garbage).
    #[error("HTTP exchange with {authority} failed: {source}")]
    Protocol {
        /// `host:port`.
        authority: String,
        /// Why.
        source: hyper::Error,
    },
    /// The body exceeded [`MAX_BODY`].
    #[error("answer from {authority} is larger than {limit} bytes")]
    TooLarge {
        /// `host:port`.
        authority: String,
        /// The limit.
        limit: usize,
    },
    /// A header value we were asked to send is not valid.
    #[error("invalid value for request header {name}")]
    BadHeader {
        /// The header name (the value is not shown: it may be a token).
        name: String,
    },
}

/// An upstream's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends one request to `base` + `path` and reads the whole answer within
/// `timeout`. `headers` values may be secrets; they are never logged.
pub async fn send(
    base: &BaseUrl,
    method: Method,
    path: &str,
    headers: &[(HeaderName, String)],
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Response, HttpError> {
    let authority = base.authority().to_string();
    tracing::debug!(%method, url = %base.as_str(), path, "upstream request");
    match tokio::time::timeout(timeout, exchange(base, method, path, headers, body)).await {
        Ok(result) => result,
        Err(_) => Err(HttpError::Timeout {
            authority,
            after: timeout,
        }),
    }
}

async fn exchange(
    base: &BaseUrl,
    method: Method,
    path: &str,
    headers: &[(HeaderName, String)],
    body: Option<Vec<u8>>,
) -> Result<Response, HttpError> {
    let authority = base.authority().to_string();
    let addrs: Vec<_> = tokio::net::lookup_host(&authority)
        .await
        .map_err(|source| HttpError::Resolve {
            authority: authority.clone(),
            source,
        })?
        .collect();
    let mut last_err = std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses");
    let mut stream = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let Some(stream) = stream else {
        return Err(HttpError::Connect {
            authority,
            source: last_err,
        });
    };
    let _ = stream.set_nodelay(true);
    let protocol = |source| HttpError::Protocol {
        authority: authority.clone(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(protocol)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });

    let mut req = Request::builder()
        .method(method)
        .uri(base.target(path))
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|_| HttpError::BadHeader {
            name: "request line".into(),
        })?;
    let host = base
        .authority()
        .strip_suffix(":80")
        .unwrap_or(base.authority());
    req.headers_mut().insert(
        HOST,
        HeaderValue::from_str(host).map_err(|_| HttpError::BadHeader {
            name: "host".into(),
        })?,
    );
    for (name, value) in headers {
        let mut value = HeaderValue::from_str(value).map_err(|_| HttpError::BadHeader {
            name: name.to_string(),
        })?;
        if name == hyper::header::AUTHORIZATION {
            value.set_sensitive(true);
        }
        req.headers_mut().insert(name.clone(), value);
    }

    let resp = sender.send_request(req).await.map_err(protocol)?;
    let status = resp.status().as_u16();
    let (parts, body) = resp.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(source) => HttpError::Protocol {
                authority: authority.clone(),
                source: *source,
            },
            Err(_) => HttpError::TooLarge {
                authority: authority.clone(),
                limit: MAX_BODY,
            },
        })?
        .to_bytes();
    driver.abort();
    Ok(Response {
        status,
        headers: parts.headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_urls() {
        let b = BaseUrl::parse("http://netbox.lan:8000/").unwrap();
        assert_eq!(b.authority(), "netbox.lan:8000");
        assert_eq!(b.target("/api/status/"), "/api/status/");
        let b = BaseUrl::parse("http://10.0.0.5/netbox").unwrap();
        assert_eq!(b.authority(), "10.0.0.5:80");
        assert_eq!(b.target("/api/status/"), "/netbox/api/status/");
        assert!(matches!(
            BaseUrl::parse("https://x"),
            Err(UrlError::Https { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("ftp://x"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            BaseUrl::parse("netbox.lan"),
            Err(UrlError::Scheme { .. })
        ));
        assert!(BaseUrl::parse("http://u:p@x/").is_err());
        assert!(BaseUrl::parse("http://x/?a=b").is_err());
    }

    #[tokio::test]
    async fn closed_port_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let b = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = send(&b, Method::GET, "/", &[], None, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let hold = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let b = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = send(&b, Method::GET, "/", &[], None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
        hold.abort();
    }
}
