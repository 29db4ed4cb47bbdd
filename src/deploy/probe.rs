//! Health probes: HTTP or TCP from the host to the container's address, or
//! a command inside the container.
//!
//! Invariants: every probe is bounded by a timeout; an HTTP body is read up
//! to [`MAX_BODY`]; nothing here retries (the gate in [`gate`] does), and a
//! probe never fails with an error: what it saw is a [`ProbeResult`].
//! HTTP and TCP probes connect through [`super::egress`]: bound to the
//! container's bridge, so a bridge that is gone is `unknown` with the
//! guard's detail, never a connection over another interface.
//!
//! A JSON health body with `"starting": true` (the 1ld agents say so until
//! their first work cycle has finished) is *provisional*: the gate does not
//! settle on it while time is left, so a deployment is recorded with the
//! status the service reaches once it has actually tried its upstream.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::egress::{self, Via};
use crate::api::HealthStatus;
use crate::apps::manifest::{HealthDef, ProbeKind};
use crate::pve::Pve;

/// Largest HTTP answer read (bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// The verdict.
    pub status: HealthStatus,
    /// Why (status code, reason, the JSON status).
    pub detail: String,
    /// The service said its status is not final yet (`"starting": true`).
    pub provisional: bool,
}

impl ProbeResult {
    fn new(status: HealthStatus, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            provisional: false,
        }
    }

    fn starting(mut self, starting: bool) -> Self {
        self.provisional = starting;
        if starting {
            self.detail.push_str(", starting");
        }
        self
    }
}

/// `GET path` over HTTP/1.0 to `addr` through `via`; returns the status
/// and body.
pub async fn http_get(
    addr: SocketAddr,
    via: &Via,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let work = async {
        let mut s = egress::connect(addr, via)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!(
            "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: 1ldd\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read from {addr}: {e}"))?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_BODY {
                break;
            }
        }
        parse_response(&buf).ok_or_else(|| format!("{addr}: not an HTTP answer"))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer from {addr} within {timeout:?}"))?
}

/// Splits an HTTP/1.x answer into status and body.
pub fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    Some((code, buf[head_end + 4..].to_vec()))
}

/// Classifies an HTTP answer by the manifest's rules.
pub fn classify_http(def: &HealthDef, code: u16, body: &[u8]) -> ProbeResult {
    if !def.expect_status.contains(&code) {
        return ProbeResult::new(
            HealthStatus::Unhealthy,
            format!("HTTP {code}{}", json_hint(def, body)),
        );
    }
    let Some(field) = &def.json_field else {
        return ProbeResult::new(HealthStatus::Healthy, format!("HTTP {code}"));
    };
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let v: Option<String> = json
        .as_ref()
        .and_then(|j| j.get(field).and_then(|s| s.as_str()).map(str::to_string));
    let starting = json
        .as_ref()
        .and_then(|j| j.get("starting"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let r = match v.as_deref() {
        Some("healthy") => ProbeResult::new(
            HealthStatus::Healthy,
            format!("HTTP {code}, {field}=healthy"),
        ),
        Some("degraded") => ProbeResult::new(
            HealthStatus::Degraded,
            format!("HTTP {code}, {field}=degraded{}", degraded_checks(body)),
        ),
        Some(other) => ProbeResult::new(
            HealthStatus::Unhealthy,
            format!("HTTP {code}, {field}={other}"),
        ),
        None => ProbeResult::new(
            HealthStatus::Unhealthy,
            format!("HTTP {code}, no '{field}' in the JSON body"),
        ),
    };
    r.starting(starting)
}

fn json_hint(def: &HealthDef, body: &[u8]) -> String {
    def.json_field
        .as_ref()
        .and_then(|f| {
            serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|j| {
                    j.get(f)
                        .and_then(|s| s.as_str())
                        .map(|s| format!(", {f}={s}{}", degraded_checks(body)))
                })
        })
        .unwrap_or_default()
}

/// The checks that are not healthy, from an agent's `/health` body.
fn degraded_checks(body: &[u8]) -> String {
    let Ok(j) = serde_json::from_slice::<serde_json::Value>(body) else {
        return String::new();
    };
    let Some(checks) = j.get("checks").and_then(|c| c.as_object()) else {
        return String::new();
    };
    let bad: Vec<String> = checks
        .iter()
        .filter(|(_, c)| c.get("status").and_then(|s| s.as_str()) != Some("healthy"))
        .map(|(k, c)| {
            let msg = c.get("message").and_then(|m| m.as_str()).unwrap_or("");
            let msg: String = msg.chars().take(160).collect();
            format!("{k}: {msg}")
        })
        .collect();
    if bad.is_empty() {
        String::new()
    } else {
        format!(" ({})", bad.join("; "))
    }
}

/// One probe of `def` against the container `vmid` at `ip`, on the bridge
/// `via` names.
pub async fn probe_once(
    def: &HealthDef,
    pve: &Pve,
    vmid: u32,
    ip: Option<Ipv4Addr>,
    via: &Via,
    timeout: Duration,
) -> ProbeResult {
    match def.kind {
        ProbeKind::Http | ProbeKind::Tcp => {
            let Some(ip) = ip else {
                return ProbeResult::new(
                    HealthStatus::Unknown,
                    "the container has no IPv4 address",
                );
            };
            let addr = SocketAddr::from((ip, def.port.unwrap_or_default()));
            if def.kind == ProbeKind::Tcp {
                return match tokio::time::timeout(timeout, egress::connect(addr, via)).await {
                    Ok(Ok(_)) => {
                        ProbeResult::new(HealthStatus::Healthy, format!("tcp {addr} open"))
                    }
                    Ok(Err(egress::ConnectError::Connect { source, .. })) => {
                        ProbeResult::new(HealthStatus::Unknown, format!("tcp {addr}: {source}"))
                    }
                    Ok(Err(e)) => ProbeResult::new(HealthStatus::Unknown, e.to_string()),
                    Err(_) => ProbeResult::new(
                        HealthStatus::Unknown,
                        format!("tcp {addr}: no answer within {timeout:?}"),
                    ),
                };
            }
            let path = def.path.as_deref().unwrap_or("/");
            match http_get(addr, via, path, timeout).await {
                Ok((code, body)) => classify_http(def, code, &body),
                Err(e) => ProbeResult::new(HealthStatus::Unknown, e),
            }
        }
        ProbeKind::Exec => match pve.pct_exec(vmid, &def.command, None, Some(timeout)).await {
            Ok(out) => match out.code {
                Some(0) => ProbeResult::new(HealthStatus::Healthy, "exit 0"),
                Some(1) => ProbeResult::new(HealthStatus::Degraded, "exit 1"),
                c => ProbeResult::new(
                    HealthStatus::Unhealthy,
                    format!(
                        "exit {}: {}",
                        c.map_or("signal".into(), |c| c.to_string()),
                        out.stderr_text().trim()
                    ),
                ),
            },
            Err(e) => ProbeResult::new(HealthStatus::Unknown, e.to_string()),
        },
    }
}

/// Probes until the result is one `def.accept` allows or `def.timeout_s`
/// passes; `log` gets every probe's result. Returns the accepted result,
/// or the last one seen. HTTP/TCP probes leave through `via` only.
///
/// A provisional result (`"starting": true`) is not settled on while time is
/// left: the gate keeps probing until the service reports a final status.
/// When the time runs out the last result is judged as it is.
pub async fn gate(
    def: &HealthDef,
    pve: &Pve,
    vmid: u32,
    ip: Option<Ipv4Addr>,
    via: &Via,
    mut log: impl FnMut(&str),
) -> Result<ProbeResult, ProbeResult> {
    let start = Instant::now();
    let limit = Duration::from_secs(def.timeout_s);
    let pause = Duration::from_millis(def.interval_ms);
    let mut n = 0u32;
    loop {
        n += 1;
        let left = limit.saturating_sub(start.elapsed());
        let r = probe_once(
            def,
            pve,
            vmid,
            ip,
            via,
            left.clamp(Duration::from_millis(200), Duration::from_secs(5)),
        )
        .await;
        log(&format!(
            "health probe {n} ({:.1}s): {:?}: {}",
            start.elapsed().as_secs_f32(),
            r.status,
            r.detail
        ));
        let accepted = def.accept.contains(&r.status);
        if accepted && !r.provisional {
            return Ok(r);
        }
        if start.elapsed() + pause >= limit {
            return if accepted { Ok(r) } else { Err(r) };
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> HealthDef {
        HealthDef {
            kind: ProbeKind::Http,
            port: Some(8080),
            path: Some("/health".into()),
            expect_status: vec![200],
            json_field: Some("status".into()),
            command: vec![],
            accept: vec![HealthStatus::Healthy, HealthStatus::Degraded],
            timeout_s: 5,
            interval_ms: 100,
            status_path: None,
        }
    }

    #[test]
    fn http_answers_are_classified() {
        let (code, body) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"degraded\",\"checks\":{\"netbox_api\":{\"status\":\"degraded\",\"message\":\"no answer\"}}}").unwrap();
        let r = classify_http(&def(), code, &body);
        assert_eq!(r.status, HealthStatus::Degraded);
        assert!(r.detail.contains("netbox_api: no answer"), "{}", r.detail);
        let r = classify_http(&def(), 503, b"{\"status\":\"unhealthy\"}");
        assert_eq!(r.status, HealthStatus::Unhealthy);
        assert!(r.detail.contains("HTTP 503, status=unhealthy"));
        assert_eq!(
            classify_http(&def(), 200, b"{}").status,
            HealthStatus::Unhealthy
        );
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn a_starting_body_is_provisional() {
        let r = classify_http(
            &def(),
            200,
            b"{\"status\":\"degraded\",\"starting\":true,\"checks\":{\"work_loop\":{\"status\":\"degraded\",\"message\":\"first cycle (#1) still running\",\"pending\":true}}}",
        );
        assert_eq!(r.status, HealthStatus::Degraded);
        assert!(r.provisional && r.detail.ends_with(", starting"), "{r:?}");
        let r = classify_http(&def(), 200, b"{\"status\":\"degraded\",\"starting\":false}");
        assert!(!r.provisional);
        assert!(!classify_http(&def(), 200, b"{\"status\":\"healthy\"}").provisional);
    }

    /// Serves the bodies in turn (the last one forever) on loopback.
    async fn serve_bodies(bodies: Vec<&'static str>) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut i = 0;
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 1024];
                let _ = s.read(&mut b).await;
                let body = bodies[i.min(bodies.len() - 1)];
                i += 1;
                let resp = format!("HTTP/1.1 200 OK\r\n\r\n{body}");
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_gate_waits_out_a_starting_service() {
        let addr = serve_bodies(vec![
            "{\"status\":\"degraded\",\"starting\":true}",
            "{\"status\":\"degraded\",\"starting\":true}",
            "{\"status\":\"healthy\",\"starting\":false}",
        ])
        .await;
        let pve = Pve::new(
            crate::pve::Runner::new(None),
            crate::pve::PveVersion::new(8, 4),
            "pve",
        );
        let mut d = def();
        d.port = Some(addr.port());
        d.interval_ms = 20;
        let ip = Ipv4Addr::LOCALHOST;
        let mut lines = Vec::new();
        let r = gate(&d, &pve, 100, Some(ip), &Via::Unrecorded, |l| {
            lines.push(l.to_string())
        })
        .await
        .expect("healthy");
        assert_eq!(r.status, HealthStatus::Healthy);
        assert_eq!(lines.len(), 3, "{lines:?}");
        // A service that stays starting: the last accepted result passes at the deadline.
        let addr = serve_bodies(vec!["{\"status\":\"degraded\",\"starting\":true}"]).await;
        d.port = Some(addr.port());
        d.timeout_s = 1;
        d.interval_ms = 100;
        let r = gate(&d, &pve, 100, Some(ip), &Via::Unrecorded, |_| {})
            .await
            .expect("accepted");
        assert_eq!(r.status, HealthStatus::Degraded);
        assert!(r.provisional);
    }

    #[tokio::test]
    async fn a_probe_over_a_missing_bridge_is_unknown_and_sends_nothing() {
        use crate::deploy::egress::tests::{assert_refused, Trap, NO_SUCH_BRIDGE};
        // 0.0.0.0 reaches the loopback trap if (and only if) the socket is
        // not bound: see `egress::tests`.
        let trap = Trap::on(Ipv4Addr::LOCALHOST.into()).await;
        let pve = Pve::new(
            crate::pve::Runner::new(None),
            crate::pve::PveVersion::new(8, 4),
            "pve",
        );
        let via = Via::recorded(NO_SUCH_BRIDGE);
        let ip = Ipv4Addr::UNSPECIFIED;
        for kind in [ProbeKind::Http, ProbeKind::Tcp] {
            let mut d = def();
            d.kind = kind;
            d.port = Some(trap.addr.port());
            let r = probe_once(&d, &pve, 100, Some(ip), &via, Duration::from_secs(2)).await;
            assert_eq!(r.status, HealthStatus::Unknown, "{kind:?}: {r:?}");
            assert_refused(&r.detail, NO_SUCH_BRIDGE, ip.into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(trap.accepted(), 0, "nothing reached the trap");
    }

    #[tokio::test]
    async fn http_get_reads_a_local_server() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 200 OK\r\n\r\n{\"status\":\"healthy\"}")
                .await
                .unwrap();
        });
        // Loopback is never bound, whatever the recorded bridge.
        let via = Via::recorded("vmbr0");
        let (code, body) = http_get(addr, &via, "/health", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(code, 200);
        assert_eq!(
            classify_http(&def(), code, &body).status,
            HealthStatus::Healthy
        );
        let closed = SocketAddr::from(([127, 0, 0, 1], 1));
        let e = http_get(closed, &via, "/", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.starts_with("connect 127.0.0.1:1: "), "{e}");
    }
}
