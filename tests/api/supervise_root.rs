//! Supervision, root tier: a real netbox-agent in a real LXC container on a
//! private sandbox node, watched with `host_state = "files"` (the node's
//! container configs and LXC's command sockets in `/proc/net/unix`), alerts
//! to a real HTTP receiver on 127.0.0.1. What the issue asks:
//! - the agent killed inside the container → repaired and healthy again,
//!   one `unhealthy` and one `recovered` alert for the incident;
//! - `pct stop` behind the daemon's back → started again;
//! - the service broken for good (an invalid config) → the ladder restarts
//!   it, reboots the container, gives up: `failed` and a `gave_up` alert,
//!   within the rate limits — with the daemon restarted mid-incident while
//!   the receiver is down: no alert twice, the queue delivered after;
//! - `1ldctl stop` → left stopped;
//! - drift (a `pct set` on the node) → a `drift` alert.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::Method;
use hyper_util::rt::TokioIo;
use oneld::api::{DeploymentHealth, HealthState, OpStatus, Operation};
use serde_json::{json, Value};

use crate::daemon::{root_tier, wait_for, Client};
use crate::deployments::{deploy, finish, op_ok, Node};

/// Alert bodies received, and whether the receiver answers 503 (down).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    refused: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> (SocketAddr, Receiver) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let r = Receiver::default();
        let rr = r.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let r = rr.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let r = r.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            if r.down.load(Ordering::SeqCst) {
                                *r.refused.lock().expect("lock") += 1;
                                *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                            } else if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                                r.got.lock().expect("lock").push(v);
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        (addr, r)
    }

    /// `event`s received for `incident`.
    fn events_of(&self, incident: &str) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .filter(|v| v["data"]["incident"] == incident)
            .filter_map(|v| v["event"].as_str().map(str::to_string))
            .collect()
    }

    fn all(&self) -> Vec<Value> {
        self.got.lock().expect("lock").clone()
    }
}

async fn health(c: &Client) -> DeploymentHealth {
    c.get("/v1/deployments/nb/health?since=1h")
        .await
        .expect(200)
        .json()
}

async fn until_state(
    c: &Client,
    what: &str,
    secs: u64,
    f: impl Fn(&DeploymentHealth) -> bool,
) -> DeploymentHealth {
    wait_for(what, Duration::from_secs(secs), || async {
        let h = health(c).await;
        f(&h).then_some(h)
    })
    .await
}

async fn remediations(c: &Client) -> Vec<Operation> {
    let mut ops: Vec<Operation> = c.get("/v1/operations?limit=100").await.expect(200).json();
    ops.retain(|o| o.kind.starts_with("remediate."));
    ops.reverse();
    ops
}

async fn wait_alerts(r: &Receiver, incident: &str, want: &[&str], secs: u64) -> Vec<String> {
    wait_for(
        &format!("alerts {want:?} for incident {incident}"),
        Duration::from_secs(secs),
        || async {
            let got = r.events_of(incident);
            want.iter()
                .all(|w| got.iter().any(|g| g == w))
                .then_some(got)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_supervision_repairs_alerts_and_gives_up() {
    if !root_tier(
        "root_supervision_repairs_alerts_and_gives_up",
        "containers need root",
    ) {
        return;
    }
    let (hook, rx) = Receiver::start().await;
    let mut n = Node::with_config("sbxsup0", "10.213.82.0/24", 1, move |c, root| {
        let s = &mut c.supervise;
        s.enabled = true;
        s.host_state = oneld::config::HostStateSource::Files;
        s.ct_config_dir = root.join("etc/pve/lxc");
        s.lxc_path = root.join("lxc");
        s.interval_secs = 1;
        s.jitter_secs = 0;
        s.probe_timeout_secs = 2;
        s.healthy_threshold = 1;
        s.unhealthy_threshold = 2;
        s.restart_grace_secs = 8;
        s.reboot_grace_secs = 20;
        s.backoff_initial_secs = 1;
        s.backoff_max_secs = 4;
        s.max_remediations_per_hour = 6;
        c.notify.retry_initial_secs = 1;
        c.notify.retry_max_secs = 2;
        c.notify.targets.insert(
            "hook".into(),
            oneld::notify::TargetConfig {
                kind: oneld::notify::TargetKind::Webhook,
                url: format!("http://{hook}/1ld"),
                headers: Default::default(),
                events: vec![],
                min_severity: oneld::notify::Severity::Info,
                ca_file: None,
            },
        );
    })
    .with_upstreams()
    .await;
    let c = n.client();
    let (op, log) = deploy(&c, &n.request("netbox-agent", "nb")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    let vmid: u32 = c
        .get("/v1/deployments/nb")
        .await
        .expect(200)
        .json::<Value>()["vmid"]
        .as_u64()
        .expect("vmid") as u32;
    // Supervision reads the running state from LXC's socket: healthy, not "stopped".
    let h = until_state(&c, "healthy", 60, |h| h.state == HealthState::Healthy).await;
    assert!(h.incident.is_none(), "{h:?}");

    // 0. Drift behind 1ld's back (read from the node's config file, no
    // `pct config`): one `drift` alert naming the field.
    let set = |cores: &str| {
        let out = n.pct(&["set", &vmid.to_string(), "--cores", cores]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    set("1");
    let drift = wait_for("the drift alert", Duration::from_secs(30), || async {
        rx.all().into_iter().find(|v| v["event"] == "drift")
    })
    .await;
    assert!(
        drift["message"]
            .as_str()
            .is_some_and(|m| m.contains("cores: expected 2, found 1")),
        "{drift}"
    );
    set("2");

    // 1. The agent is killed inside the container.
    let t = Instant::now();
    n.exec(
        vmid,
        &[
            "systemctl",
            "kill",
            "--signal=SIGKILL",
            "netbox-agent.service",
        ],
    );
    let h = until_state(&c, "the incident", 30, |h| h.incident.is_some()).await;
    let inc1 = h.incident.clone().expect("incident").id;
    let h = until_state(&c, "healthy again", 90, |h| {
        h.incident.is_none() && h.state.is_up()
    })
    .await;
    eprintln!(
        "killed agent: healthy again after {:.1}s ({})",
        t.elapsed().as_secs_f32(),
        h.detail
    );
    let got = wait_alerts(&rx, &inc1, &["unhealthy", "recovered"], 30).await;
    assert_eq!(
        got.iter().filter(|e| *e == "unhealthy").count(),
        1,
        "{got:?}"
    );
    assert_eq!(
        got.iter().filter(|e| *e == "recovered").count(),
        1,
        "{got:?}"
    );
    let mut ev = c.events("/v1/events?type=health&follow=false").await;
    let seen = ev
        .until(Duration::from_secs(5), |e| {
            e.payload["deployment"] == "nb" && e.payload["state"] == "unhealthy"
        })
        .await;
    assert!(!seen.is_empty());
    drop(ev);

    // 2. `pct stop` behind the daemon's back: started again.
    let out = n.pct(&["stop", &vmid.to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = until_state(&c, "the stop noticed", 30, |h| h.incident.is_some()).await;
    let inc2 = h.incident.clone().expect("incident").id;
    let h = until_state(&c, "started and healthy again", 120, |h| {
        h.incident.is_none() && h.state.is_up()
    })
    .await;
    assert!(
        h.results
            .iter()
            .any(|r| r.detail.contains("is stopped but should run")),
        "{h:?}"
    );
    let ops = remediations(&c).await;
    assert!(
        ops.iter()
            .any(|o| o.kind == "remediate.start" && o.status == OpStatus::Succeeded),
        "{ops:?}"
    );
    wait_alerts(&rx, &inc2, &["unhealthy", "remediation", "recovered"], 30).await;

    // 3. Broken for good, with the receiver down and the daemon restarted
    // mid-incident.
    rx.down.store(true, Ordering::SeqCst);
    n.exec(
        vmid,
        &[
            "sh",
            "-c",
            "echo 'this is = not [valid' > /etc/netbox-agent/config.toml",
        ],
    );
    n.exec(vmid, &["systemctl", "restart", "netbox-agent.service"]);
    let h = until_state(&c, "the third incident", 30, |h| h.incident.is_some()).await;
    let inc3 = h.incident.clone().expect("incident").id;
    wait_for(
        "the unhealthy alert refused once",
        Duration::from_secs(30),
        || async { (*rx.refused.lock().expect("lock") > 0).then_some(()) },
    )
    .await;
    let before: Value = c.get("/v1/notifications").await.expect(200).json();
    assert!(before.to_string().contains("pending"), "{before}");
    n.restart_daemon();
    let c = n.client();
    rx.down.store(false, Ordering::SeqCst);
    let h = until_state(&c, "failed", 240, |h| h.state == HealthState::Failed).await;
    let inc = h.incident.clone().expect("incident");
    assert_eq!(inc.id, inc3, "the incident survived the restart");
    assert!(inc.gave_up, "{h:?}");
    let acts: Vec<&str> = inc.actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(acts, vec!["restart_service", "reboot"], "{h:?}");
    let got = wait_alerts(&rx, &inc3, &["unhealthy", "gave_up"], 60).await;
    assert_eq!(
        got.iter().filter(|e| *e == "unhealthy").count(),
        1,
        "no duplicate after the restart: {got:?}"
    );
    assert_eq!(
        got.iter().filter(|e| *e == "remediation").count(),
        2,
        "{got:?}"
    );
    assert!(h.ladder.last_hour <= 6, "{h:?}");
    // Failed is sticky: nothing more is tried.
    let n_ops = remediations(&c).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(remediations(&c).await.len(), n_ops);

    // 4. The user stops it: left stopped.
    op_ok(
        &c,
        Method::POST,
        "/v1/deployments/nb/stop",
        Some(&json!({})),
        90,
    )
    .await;
    let h = until_state(&c, "stopped", 30, |h| h.state == HealthState::Stopped).await;
    assert!(h.incident.is_none(), "a stop closes the incident: {h:?}");
    let n_ops = remediations(&c).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        remediations(&c).await.len(),
        n_ops,
        "nothing restarts what the user stopped"
    );
    let out = n.pct(&["status", &vmid.to_string()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped"));
    let all = rx.all();
    let mut ids: Vec<i64> = all.iter().filter_map(|v| v["id"].as_i64()).collect();
    let len = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), len, "an alert was delivered twice: {all:?}");

    // Clean up.
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}
