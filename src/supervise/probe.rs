//! The supervisor's probes: HTTP over a pooled keep-alive client, TCP
//! connect, or a command in the container. Classification is shared with
//! the deploy gate ([`crate::deploy::probe::classify_http`]).
//!
//! Unlike the gate, a running container whose service does not answer is
//! `unhealthy` here (refused, reset, timed out): the container is up, so
//! the service is down. `unknown` is kept for what cannot be told — no
//! address yet, or the host tools failing for an exec probe.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api::{HealthStatus, ProbeOutcome};
use crate::apps::manifest::{HealthDef, ProbeKind};
use crate::deploy::probe::{classify_http, MAX_BODY};
use crate::pve::Pve;

/// What one supervision probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    /// The outcome.
    pub outcome: ProbeOutcome,
    /// Details.
    pub detail: String,
    /// How long it took (ms).
    pub latency_ms: f64,
}

/// Probes with a shared connection pool. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Prober {
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober {
    /// A prober keeping one idle connection per service for a minute.
    pub fn new() -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .build(conn);
        Self { client }
    }

    /// Probes `def` on container `vmid` at `ip` within `timeout`.
    pub async fn probe(
        &self,
        def: &HealthDef,
        pve: Option<&Pve>,
        vmid: u32,
        ip: Option<Ipv4Addr>,
        timeout: Duration,
    ) -> Seen {
        let start = Instant::now();
        let (outcome, detail) = match def.kind {
            ProbeKind::Http | ProbeKind::Tcp => match ip {
                None => (
                    ProbeOutcome::Unknown,
                    "the container has no IPv4 address yet".to_string(),
                ),
                Some(ip) => {
                    let addr = SocketAddr::from((ip, def.port.unwrap_or_default()));
                    if def.kind == ProbeKind::Tcp {
                        tcp(addr, timeout).await
                    } else {
                        self.http(def, addr, timeout).await
                    }
                }
            },
            ProbeKind::Exec => match pve {
                None => (
                    ProbeOutcome::Unknown,
                    "the Proxmox tools are not available".to_string(),
                ),
                Some(pve) => exec(def, pve, vmid, timeout).await,
            },
        };
        Seen {
            outcome,
            detail,
            latency_ms: start.elapsed().as_secs_f64() * 1000.0,
        }
    }

    async fn http(
        &self,
        def: &HealthDef,
        addr: SocketAddr,
        timeout: Duration,
    ) -> (ProbeOutcome, String) {
        let path = def.path.as_deref().unwrap_or("/");
        let uri = match format!("http://{addr}{path}").parse::<hyper::Uri>() {
            Ok(u) => u,
            Err(e) => {
                return (
                    ProbeOutcome::Unknown,
                    format!("bad probe path {path:?}: {e}"),
                )
            }
        };
        let req = match hyper::Request::get(uri)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::USER_AGENT, "1ldd-supervisor")
            .body(Empty::<Bytes>::new())
        {
            Ok(r) => r,
            Err(e) => return (ProbeOutcome::Unknown, format!("probe request: {e}")),
        };
        let work = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("{addr}: {}", error_chain(&e)))?;
            let code = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("{addr}: reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((code, body))
        };
        match tokio::time::timeout(timeout, work).await {
            Err(_) => (
                ProbeOutcome::Unhealthy,
                format!("{addr}: no answer within {}s", timeout.as_secs_f32()),
            ),
            Ok(Err(e)) => (ProbeOutcome::Unhealthy, e),
            Ok(Ok((code, body))) => {
                let r = classify_http(def, code, &body);
                (outcome_of(r.status), r.detail)
            }
        }
    }
}

fn outcome_of(s: HealthStatus) -> ProbeOutcome {
    match s {
        HealthStatus::Healthy => ProbeOutcome::Healthy,
        HealthStatus::Degraded => ProbeOutcome::Degraded,
        HealthStatus::Unhealthy => ProbeOutcome::Unhealthy,
        HealthStatus::Unknown => ProbeOutcome::Unknown,
    }
}

/// The innermost causes of `e`, joined (`connection refused`, not just
/// `client error (Connect)`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(c) = cur {
        parts.push(c.to_string());
        cur = c.source();
    }
    parts.dedup();
    parts.join(": ")
}

async fn tcp(addr: SocketAddr, timeout: Duration) -> (ProbeOutcome, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (ProbeOutcome::Healthy, format!("tcp {addr} open")),
        Ok(Err(e)) => (ProbeOutcome::Unhealthy, format!("tcp {addr}: {e}")),
        Err(_) => (
            ProbeOutcome::Unhealthy,
            format!("tcp {addr}: no answer within {}s", timeout.as_secs_f32()),
        ),
    }
}

async fn exec(def: &HealthDef, pve: &Pve, vmid: u32, timeout: Duration) -> (ProbeOutcome, String) {
    match pve.pct_exec(vmid, &def.command, None, Some(timeout)).await {
        Ok(out) => match out.code {
            Some(0) => (ProbeOutcome::Healthy, "exit 0".into()),
            Some(1) => (ProbeOutcome::Degraded, "exit 1".into()),
            c => (
                ProbeOutcome::Unhealthy,
                format!(
                    "exit {}: {}",
                    c.map_or("signal".into(), |c| c.to_string()),
                    out.stderr_text()
                        .trim()
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
        },
        Err(e) => (ProbeOutcome::Unknown, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn def(port: u16) -> HealthDef {
        HealthDef {
            kind: ProbeKind::Http,
            port: Some(port),
            path: Some("/health".into()),
            expect_status: vec![200],
            json_field: Some("status".into()),
            command: vec![],
            accept: vec![HealthStatus::Healthy],
            timeout_s: 5,
            interval_ms: 100,
            status_path: None,
        }
    }

    /// A keep-alive HTTP/1.1 server on loopback answering `body` to every
    /// request; counts accepted connections.
    async fn server(body: &'static str) -> (u16, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let conns = Arc::new(AtomicUsize::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut have = Vec::new();
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        have.extend_from_slice(&buf[..n]);
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            have.drain(..end + 4);
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (port, conns)
    }

    #[tokio::test]
    async fn http_probes_reuse_one_connection() {
        let (port, conns) = server("{\"status\":\"healthy\"}").await;
        let p = Prober::new();
        for _ in 0..5 {
            let s = p
                .probe(
                    &def(port),
                    None,
                    100,
                    Some(Ipv4Addr::LOCALHOST),
                    Duration::from_secs(2),
                )
                .await;
            assert_eq!(s.outcome, ProbeOutcome::Healthy, "{s:?}");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1, "one kept-alive connection");
    }

    #[tokio::test]
    async fn a_service_that_does_not_answer_is_unhealthy() {
        // A port nothing listens on (bound then closed).
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let p = Prober::new();
        let s = p
            .probe(
                &def(port),
                None,
                100,
                Some(Ipv4Addr::LOCALHOST),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Unhealthy);
        assert!(s.detail.contains("refused"), "{}", s.detail);
        let s = p
            .probe(&def(port), None, 100, None, Duration::from_secs(1))
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Unknown);
        // Accepting but never answering: a timeout, unhealthy.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = l.accept().await.unwrap();
                held.push(s);
            }
        });
        let s = p
            .probe(
                &def(port),
                None,
                100,
                Some(Ipv4Addr::LOCALHOST),
                Duration::from_millis(300),
            )
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Unhealthy);
        assert!(s.detail.contains("no answer"), "{}", s.detail);
        let (port, _) = server("{\"status\":\"degraded\"}").await;
        let s = p
            .probe(
                &def(port),
                None,
                100,
                Some(Ipv4Addr::LOCALHOST),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Degraded);
    }
}
