//! The guard's tests, and helpers the probe modules' tests share.
//!
//! Network rule for every test here: traffic only to 127.0.0.0/8, or to
//! interfaces created by the test inside a network namespace of its own.
//! The fast tests aim at `0.0.0.0`, which the kernel delivers to loopback
//! when a socket is not bound to a device: were the guard broken, the
//! connection would land on a loopback listener (and the test fail), never
//! leave the host.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A bridge name no host has.
pub(crate) const NO_SUCH_BRIDGE: &str = "1ldnosuchbr0";

/// An HTTP server answering `{"status":"healthy"}` on a listener, counting
/// the connections it accepts.
pub(crate) struct Trap {
    /// Its address.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Trap {
    /// Listens on `ip` (port chosen by the kernel).
    pub(crate) async fn on(ip: IpAddr) -> Self {
        let l = tokio::net::TcpListener::bind((ip, 0))
            .await
            .expect("listen");
        let addr = l.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let n = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                n.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let mut have = Vec::new();
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => have.extend_from_slice(&buf[..k]),
                        }
                        while let Some(end) = have.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = have.drain(..end + 4).collect();
                            // The gate's HTTP/1.0 reads until the server closes.
                            let close = String::from_utf8_lossy(&head)
                                .to_ascii_lowercase()
                                .contains("connection: close");
                            let body = "{\"status\":\"healthy\"}";
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self { addr, accepted }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Asserts `detail` is the guard's refusal to probe `ip` over `bridge`.
/// Root (and any process on Linux >= 5.7) gets ENODEV for a missing
/// device; a non-root process on an older kernel gets EPERM first.
pub(crate) fn assert_refused(detail: &str, bridge: &str, ip: IpAddr) {
    let gone = format!("bridge {bridge} is gone (ENODEV); not probing {ip} over another interface");
    if nix::unistd::geteuid().is_root() {
        assert_eq!(detail, gone);
    } else {
        let eperm = detail.contains(&format!("bridge {bridge} (EPERM"))
            && detail.ends_with(&format!("not probing {ip} over another interface"));
        assert!(detail == gone || eperm, "{detail}");
    }
}

#[test]
fn only_a_recorded_bridge_and_a_non_loopback_address_bind() {
    let ip: IpAddr = Ipv4Addr::new(10, 213, 7, 124).into();
    assert_eq!(Via::recorded(""), Via::Unrecorded);
    assert_eq!(Via::Unrecorded.device_for(ip), None);
    let via = Via::recorded("vmbr0");
    assert_eq!(via, Via::Bridge("vmbr0".into()));
    assert_eq!(via.device_for(ip), Some("vmbr0"));
    assert_eq!(via.device_for(Ipv4Addr::LOCALHOST.into()), None);
    assert_eq!(via.device_for(Ipv4Addr::new(127, 9, 9, 9).into()), None);
    assert_eq!(via.device_for(std::net::Ipv6Addr::LOCALHOST.into()), None);
    assert_eq!(via.device_for(Ipv4Addr::UNSPECIFIED.into()), Some("vmbr0"));
    assert_eq!(check(&Via::Unrecorded, ip).unwrap(), None);
    assert_eq!(check(&via, Ipv4Addr::LOCALHOST.into()).unwrap(), None);
}

#[test]
fn refusals_say_which_bridge_which_address_and_that_nothing_went_elsewhere() {
    let ip: IpAddr = Ipv4Addr::new(10, 213, 7, 124).into();
    let of = |errno| GuardError::of("vmbr0", ip, io::Error::from_raw_os_error(errno)).to_string();
    assert_eq!(
        of(libc::ENODEV),
        "bridge vmbr0 is gone (ENODEV); not probing 10.213.7.124 over another interface"
    );
    let eperm = of(libc::EPERM);
    assert!(
        eperm.starts_with(
            "may not bind the probe of 10.213.7.124 to bridge vmbr0 (EPERM: 1ldd needs CAP_NET_RAW"
        ) && eperm.ends_with("not probing 10.213.7.124 over another interface"),
        "{eperm}"
    );
    let other = of(libc::ENOBUFS);
    assert!(
        other.starts_with("cannot bind the probe of 10.213.7.124 to bridge vmbr0: ")
            && other.ends_with("; not probing 10.213.7.124 over another interface"),
        "{other}"
    );
    let bad = check(&Via::recorded("br;\nx"), ip).unwrap_err().to_string();
    assert_eq!(
        bad,
        "'br;x' is not a bridge name; not probing 10.213.7.124 over another interface (fix the deployment's bridge with `1ldctl apply`)"
    );
    let e = ConnectError::Connect {
        addr: SocketAddr::from((ip, 3001)),
        source: io::Error::from_raw_os_error(libc::ECONNREFUSED),
    };
    assert!(
        e.to_string()
            .starts_with("connect 10.213.7.124:3001: Connection refused"),
        "{e}"
    );
}

#[test]
fn a_missing_bridge_is_reported_by_the_check() {
    let ip: IpAddr = Ipv4Addr::new(10, 213, 7, 124).into();
    let e = check(&Via::recorded(NO_SUCH_BRIDGE), ip).unwrap_err();
    assert!(matches!(e, GuardError::BridgeGone { .. }), "{e:?}");
    assert!(check(&Via::recorded("lo"), ip).unwrap().is_some());
}

#[tokio::test]
async fn a_connection_bound_to_a_missing_bridge_fails_without_connecting() {
    let trap = Trap::on(Ipv4Addr::LOCALHOST.into()).await;
    let target = SocketAddr::from((Ipv4Addr::UNSPECIFIED, trap.addr.port()));
    // The trap works: unbound, 0.0.0.0 reaches it (on loopback).
    drop(
        tokio::net::TcpStream::connect(target)
            .await
            .expect("0.0.0.0 is delivered to loopback"),
    );
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let before = trap.accepted();
    assert_eq!(before, 1);
    let e = connect(target, &Via::recorded(NO_SUCH_BRIDGE))
        .await
        .expect_err("the guard refuses");
    assert!(matches!(e, ConnectError::Guard(_)), "{e:?}");
    assert_refused(&e.to_string(), NO_SUCH_BRIDGE, target.ip());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(trap.accepted(), before, "nothing reached the trap");
}

// ---- root tier -------------------------------------------------------------

/// `ip` with `args`, in the calling thread's network namespace.
fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes the links it names on drop, even when the test fails (the
/// namespace itself disappears with its thread as well).
struct Links(Vec<String>);

impl Links {
    fn bridge(&mut self, name: &str, cidr: &str) {
        self.0.push(name.to_string());
        ip(&["link", "add", name, "type", "bridge"]);
        ip(&["addr", "add", cidr, "dev", name]);
        ip(&["link", "set", name, "up"]);
    }

    fn delete(&mut self, name: &str) {
        ip(&["link", "del", name]);
        self.0.retain(|n| n != name);
    }
}

impl Drop for Links {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", n])
                .output();
        }
    }
}

/// Whether the root tier runs (`PVE_SANDBOX_E2E=1`); then it must be root.
fn root_tier(test: &str) -> bool {
    if std::env::var("PVE_SANDBOX_E2E").as_deref() != Ok("1") {
        eprintln!("{test}: root tier, runs with PVE_SANDBOX_E2E=1 (as root)");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "PVE_SANDBOX_E2E=1 but not root: the probe-guard test creates bridges in a new network namespace"
    );
    true
}

/// A bridge with a container-like subnet in a network namespace of its own:
/// probes bound to it reach a listener on its address; once it is deleted
/// they fail with the guard's detail, although another interface (a decoy
/// the test adds with the same subnet) would take the connection.
#[test]
fn root_probes_follow_their_bridge_and_stop_when_it_is_gone() {
    if !root_tier("root_probes_follow_their_bridge_and_stop_when_it_is_gone") {
        return;
    }
    // A thread of our own: the namespace is per thread, and its children
    // (`ip`) and every socket made on it live there; the host's interfaces
    // are never touched.
    let t = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(in_namespace());
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

async fn in_namespace() {
    use crate::api::{HealthStatus, ProbeOutcome};
    use crate::apps::manifest::{HealthDef, ProbeKind};
    use std::time::Duration;

    const BRIDGE: &str = "vmbr1ldpg";
    const DECOY: &str = "decoy1ldpg";
    let host: Ipv4Addr = Ipv4Addr::new(10, 213, 93, 1);
    let mut links = Links(Vec::new());
    ip(&["link", "set", "lo", "up"]);
    links.bridge(BRIDGE, "10.213.93.1/24");
    let trap = Trap::on(host.into()).await;
    let via = Via::recorded(BRIDGE);
    let def = |kind| HealthDef {
        kind,
        port: Some(trap.addr.port()),
        path: Some("/health".into()),
        expect_status: vec![200],
        json_field: Some("status".into()),
        command: vec![],
        accept: vec![HealthStatus::Healthy],
        timeout_s: 2,
        interval_ms: 100,
        status_path: None,
    };
    let pve = crate::pve::Pve::new(
        crate::pve::Runner::new(None),
        crate::pve::PveVersion::new(8, 4),
        "pve",
    );
    let prober = crate::supervise::probe::Prober::new();
    let t = Duration::from_secs(2);
    let deploy_probe = |kind| {
        let d = def(kind);
        let (pve, via) = (&pve, &via);
        async move { crate::deploy::probe::probe_once(&d, pve, 100, Some(host), via, t).await }
    };
    let supervise_probe = |kind| {
        let d = def(kind);
        let (prober, via) = (&prober, &via);
        async move { prober.probe(&d, None, 100, Some(host), via, t).await }
    };

    // The bridge is there: every kind of probe, bound, gets through.
    connect(trap.addr, &via).await.expect("bound connect");
    for kind in [ProbeKind::Http, ProbeKind::Tcp] {
        let r = deploy_probe(kind).await;
        assert_eq!(r.status, HealthStatus::Healthy, "{kind:?}: {r:?}");
        let s = supervise_probe(kind).await;
        assert_eq!(s.outcome, ProbeOutcome::Healthy, "{kind:?}: {s:?}");
    }

    // The bridge goes; a decoy takes its subnet. Unbound, the address is
    // now reached through the decoy — the incident's leak, kept inside the
    // namespace.
    links.delete(BRIDGE);
    links.bridge(DECOY, "10.213.93.1/24");
    drop(
        tokio::net::TcpStream::connect(trap.addr)
            .await
            .expect("unbound, the decoy takes it"),
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = trap.accepted();
    let e = connect(trap.addr, &via).await.expect_err("refused");
    assert_refused(&e.to_string(), BRIDGE, host.into());
    for kind in [ProbeKind::Http, ProbeKind::Tcp] {
        let r = deploy_probe(kind).await;
        assert_eq!(r.status, HealthStatus::Unknown, "{kind:?}: {r:?}");
        assert_refused(&r.detail, BRIDGE, host.into());
        // The supervisor holds a kept-alive connection from before: it is
        // not used either.
        let s = supervise_probe(kind).await;
        assert_eq!(s.outcome, ProbeOutcome::Unknown, "{kind:?}: {s:?}");
        assert_refused(&s.detail, BRIDGE, host.into());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(trap.accepted(), before, "no probe went through the decoy");

    // The bridge comes back (a new interface index): probes work again.
    links.delete(DECOY);
    links.bridge(BRIDGE, "10.213.93.1/24");
    let s = supervise_probe(ProbeKind::Http).await;
    assert_eq!(s.outcome, ProbeOutcome::Healthy, "{s:?}");
    assert_eq!(
        deploy_probe(ProbeKind::Http).await.status,
        HealthStatus::Healthy
    );
}
