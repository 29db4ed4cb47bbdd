//! The supervisor's probes: HTTP over a pooled keep-alive client, TCP
//! connect, or a command in the container. Classification is shared with
//! the deploy gate ([`crate::deploy::probe::classify_http`]).
//!
//! Unlike the gate, a running container whose service does not answer is
//! `unhealthy` here (refused, reset, timed out): the container is up, so
//! the service is down. `unknown` is kept for what cannot be told — no
//! address yet, the host tools failing for an exec probe, or the probe
//! guard refusing because the container's bridge is gone (the host's
//! network is broken, not the service: no repair inside the container can
//! help, and not knowing never ends an incident).
//!
//! Every connection goes through [`crate::deploy::egress`]: bound to the
//! container's bridge. The pool is one client per bridge (the pool keys on
//! the address only); a bridge that is gone is refused before the pool is
//! asked, and one that came back (a new interface index) gets a fresh
//! client, so a kept-alive connection on a dead device is never reused.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::api::{HealthStatus, ProbeOutcome};
use crate::apps::manifest::{HealthDef, ProbeKind};
use crate::deploy::egress::{self, ConnectError, Via};
use crate::deploy::probe::{classify_http, MAX_BODY};
use crate::pve::Pve;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

type HttpClient = Client<BridgeConnector, Empty<Bytes>>;

/// Bound device (`None`: unbound) → (its interface index when the client
/// was made, the client).
type Pools = HashMap<Option<String>, (Option<u32>, HttpClient)>;

/// Probes with shared connection pools, one per bridge. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Prober {
    /// As many entries as bridges in use (a handful).
    clients: Arc<Mutex<Pools>>,
}

impl Default for Prober {
    fn default() -> Self {
        Self::new()
    }
}

impl Prober {
    /// A prober keeping one idle connection per service for a minute.
    pub fn new() -> Self {
        Self {
            clients: Arc::default(),
        }
    }

    /// The client for connections bound to `device`, whose interface index
    /// is now `ifindex`.
    fn client(&self, device: Option<&str>, ifindex: Option<u32>) -> HttpClient {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let key = device.map(str::to_string);
        if let Some((idx, c)) = clients.get(&key) {
            if *idx == ifindex {
                return c.clone();
            }
        }
        let via = key.clone().map_or(Via::Unrecorded, Via::Bridge);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .build(BridgeConnector { via });
        clients.insert(key, (ifindex, client.clone()));
        client
    }

    /// Probes `def` on container `vmid` at `ip`, on the bridge `via` names,
    /// within `timeout`.
    pub async fn probe(
        &self,
        def: &HealthDef,
        pve: Option<&Pve>,
        vmid: u32,
        ip: Option<Ipv4Addr>,
        via: &Via,
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
                        tcp(addr, via, timeout).await
                    } else {
                        self.http(def, addr, via, timeout).await
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
        via: &Via,
        timeout: Duration,
    ) -> (ProbeOutcome, String) {
        let ifindex = match egress::check(via, addr.ip()) {
            Ok(i) => i,
            Err(g) => return (ProbeOutcome::Unknown, g.to_string()),
        };
        let client = self.client(via.device_for(addr.ip()), ifindex);
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
            let resp = client
                .request(req)
                .await
                .map_err(|e| match guard_refusal(&e) {
                    Some(g) => Refused::Guard(g),
                    None => Refused::Other(format!("{addr}: {}", error_chain(&e))),
                })?;
            let code = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| Refused::Other(format!("{addr}: reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, Refused>((code, body))
        };
        let res = tokio::time::timeout(timeout, work).await;
        if res.as_ref().map_or(true, Result::is_err) {
            // The bridge may have gone while a kept-alive connection waited.
            if let Err(g) = egress::check(via, addr.ip()) {
                return (ProbeOutcome::Unknown, g.to_string());
            }
        }
        match res {
            Err(_) => (
                ProbeOutcome::Unhealthy,
                format!("{addr}: no answer within {}s", timeout.as_secs_f32()),
            ),
            Ok(Err(Refused::Guard(g))) => (ProbeOutcome::Unknown, g),
            Ok(Err(Refused::Other(e))) => (ProbeOutcome::Unhealthy, e),
            Ok(Ok((code, body))) => {
                let r = classify_http(def, code, &body);
                (outcome_of(r.status), r.detail)
            }
        }
    }
}

/// Why an HTTP probe got no answer.
enum Refused {
    /// The probe guard refused (its message).
    Guard(String),
    /// Anything else.
    Other(String),
}

/// The guard's refusal inside a client error, if that is what it was.
fn guard_refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if let Some(ConnectError::Guard(g)) = c.downcast_ref::<ConnectError>() {
            return Some(g.to_string());
        }
        cur = c.source();
    }
    None
}

/// Opens the pool's connections through [`egress::connect`]: bound to
/// the bridge, to IP literals only (probes never resolve names).
#[derive(Clone, Debug)]
struct BridgeConnector {
    via: Via,
}

impl tower::Service<hyper::Uri> for BridgeConnector {
    type Response = TokioIo<tokio::net::TcpStream>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let via = self.via.clone();
        Box::pin(async move {
            let ip = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<IpAddr>().ok());
            let (Some(ip), Some(port)) = (ip, uri.port_u16()) else {
                return Err(ConnectError::Target(uri.to_string()));
            };
            let addr = SocketAddr::new(ip, port);
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, egress::connect(addr, &via))
                .await
                .map_err(|_| ConnectError::Connect {
                    addr,
                    source: std::io::ErrorKind::TimedOut.into(),
                })??;
            stream
                .set_nodelay(true)
                .map_err(|source| ConnectError::Socket { addr, source })?;
            Ok(TokioIo::new(stream))
        })
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

async fn tcp(addr: SocketAddr, via: &Via, timeout: Duration) -> (ProbeOutcome, String) {
    match tokio::time::timeout(timeout, egress::connect(addr, via)).await {
        Ok(Ok(_)) => (ProbeOutcome::Healthy, format!("tcp {addr} open")),
        Ok(Err(ConnectError::Connect { source, .. })) => {
            (ProbeOutcome::Unhealthy, format!("tcp {addr}: {source}"))
        }
        // The guard refused, or no socket: nothing was tried.
        Ok(Err(e)) => (ProbeOutcome::Unknown, e.to_string()),
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
                    &Via::recorded("vmbr0"),
                    Duration::from_secs(2),
                )
                .await;
            assert_eq!(s.outcome, ProbeOutcome::Healthy, "{s:?}");
        }
        assert_eq!(conns.load(Ordering::SeqCst), 1, "one kept-alive connection");
    }

    #[tokio::test]
    async fn a_probe_over_a_missing_bridge_is_unknown_and_sends_nothing() {
        use crate::deploy::egress::tests::{assert_refused, Trap, NO_SUCH_BRIDGE};
        // 0.0.0.0 reaches the loopback trap if (and only if) the socket is
        // not bound: see `deploy::egress::tests`.
        let trap = Trap::on(Ipv4Addr::LOCALHOST.into()).await;
        let p = Prober::new();
        let via = Via::recorded(NO_SUCH_BRIDGE);
        let ip = Ipv4Addr::UNSPECIFIED;
        for kind in [ProbeKind::Http, ProbeKind::Tcp] {
            let mut d = def(trap.addr.port());
            d.kind = kind;
            let s = p
                .probe(&d, None, 100, Some(ip), &via, Duration::from_secs(2))
                .await;
            assert_eq!(s.outcome, ProbeOutcome::Unknown, "{kind:?}: {s:?}");
            assert_refused(&s.detail, NO_SUCH_BRIDGE, ip.into());
        }
        // Past the up-front check (a bridge that vanishes just after it),
        // the connector's own refusal is recognised in the client's error.
        let client = p.client(Some(NO_SUCH_BRIDGE), Some(1));
        let uri: hyper::Uri = format!("http://{}/health", SocketAddr::from((ip, trap.addr.port())))
            .parse()
            .unwrap();
        let req = hyper::Request::get(uri)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let e = client.request(req).await.expect_err("refused");
        let detail = guard_refusal(&e).expect("the guard's refusal in the chain");
        assert_refused(&detail, NO_SUCH_BRIDGE, ip.into());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(trap.accepted(), 0, "nothing reached the trap");
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
                &Via::recorded("vmbr0"),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Unhealthy);
        assert!(s.detail.contains("refused"), "{}", s.detail);
        let s = p
            .probe(
                &def(port),
                None,
                100,
                None,
                &Via::Unrecorded,
                Duration::from_secs(1),
            )
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
                &Via::recorded("vmbr0"),
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
                &Via::recorded("vmbr0"),
                Duration::from_secs(2),
            )
            .await;
        assert_eq!(s.outcome, ProbeOutcome::Degraded);
    }
}
