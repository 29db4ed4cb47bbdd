//! Supervision, fast tier (no root, no containers): the in-process daemon
//! with `[supervise] host_state = "files"` over a container-config
//! directory and LXC command sockets this test binds itself (real abstract
//! Unix sockets, read back by the daemon from `/proc/net/unix`), probing a
//! real HTTP service on 127.0.0.1 that the test makes healthy or not.
//! Without Proxmox tools every remediation operation fails, so the ladder
//! climbs to the end: restart → reboot → give up. The ladder against real
//! containers: the root tier in `deployments/supervise_root.rs`.

use std::os::linux::net::SocketAddrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oneld::api::{DeploymentHealth, HealthState, HealthStatus, HealthSummary, IntendedState};
use oneld::config::HostStateSource;
use oneld::paths::Paths;
use oneld::store::{DeploymentRecord, Store, StoredSpec};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::{wait_for, Client, Daemon, Options};
use crate::notify::{receiver, Seen};

const VMID: u32 = 150;
const NAME: &str = "sv";

/// A keep-alive HTTP service on loopback answering `GET /health` with the
/// current (status, body).
#[derive(Clone)]
struct Agent {
    port: u16,
    answer: Arc<Mutex<(u16, &'static str)>>,
}

impl Agent {
    async fn start() -> Agent {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let answer = Arc::new(Mutex::new((200, r#"{"status":"healthy"}"#)));
        let a = answer.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let a = a.clone();
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
                            let (code, body) = *a.lock().expect("lock");
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
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
        Agent { port, answer }
    }

    fn say(&self, code: u16, body: &'static str) {
        *self.answer.lock().expect("lock") = (code, body);
    }
}

/// An app like the built-in agents, probed on the test's port.
fn manifest(port: u16) -> String {
    let builtin = include_str!("../../src/apps/builtin/netbox-agent.toml");
    builtin
        .replace("name = \"netbox-agent\"", "name = \"sv-app\"")
        .replace("port = 8080", &format!("port = {port}"))
        .replace("upstream_port = 8080", &format!("upstream_port = {port}"))
        .replace("timeout_s = 60", "timeout_s = 3")
}

fn record() -> DeploymentRecord {
    sample_record(NAME, VMID)
}

/// A deployment record of app `sv-app` at 127.0.0.1 (tests insert it directly).
pub(crate) fn sample_record(name: &str, vmid: u32) -> DeploymentRecord {
    DeploymentRecord {
        name: name.into(),
        app: "sv-app".into(),
        app_version: "0.1.0".into(),
        vmid,
        node: "pve".into(),
        intended_state: IntendedState::Running,
        spec: StoredSpec {
            resources: serde_json::from_value(json!({
                "cores": 1, "memory": 512, "swap": 0, "disk": 2, "storage": "local-lvm",
                "bridge": "vmbr0", "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true
            }))
            .expect("resources"),
            tags: vec!["1ld".into()],
            settings: Default::default(),
            secret_keys: vec![],
            supervise: Default::default(),
            backup: Default::default(),
        },
        config_hash: "fnv1a64:0".into(),
        ip: Some("127.0.0.1".into()),
        health: HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: None,
            detail: None,
        },
        drift: vec![],
        adopted: false,
        created_ms: 0,
        updated_ms: 0,
        last_backup_ms: None,
    }
}

/// LXC's command socket of a running container, as `lxc-start -P <lxc>` binds it.
fn running(lxc: &Path, vmid: u32) -> std::os::unix::net::UnixListener {
    let name = format!("{}/{vmid}/command", lxc.display());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    std::os::unix::net::UnixListener::bind_addr(&addr).expect("abstract socket")
}

async fn health(c: &Client) -> DeploymentHealth {
    c.get(&format!("/v1/deployments/{NAME}/health?since=1h"))
        .await
        .expect(200)
        .json()
}

async fn state_becomes(c: &Client, want: HealthState) -> DeploymentHealth {
    wait_for(
        &format!("state {want:?}"),
        Duration::from_secs(30),
        || async {
            let h = health(c).await;
            (h.state == want).then_some(h)
        },
    )
    .await
}

async fn op_of_kind(c: &Client, kind: &str) -> Value {
    wait_for(
        &format!("an operation {kind}"),
        Duration::from_secs(30),
        || async {
            let ops: Vec<Value> = c.get("/v1/operations?limit=100").await.expect(200).json();
            ops.into_iter().find(|o| o["kind"] == kind)
        },
    )
    .await
}

#[tokio::test]
async fn unhealthy_climbs_the_ladder_gives_up_and_recovers() {
    let agent = Agent::start().await;
    let base: PathBuf = tempfile::tempdir().expect("tmp").keep();
    let (conf, lxc, apps) = (base.join("conf"), base.join("lxc"), base.join("apps"));
    for d in [&conf, &lxc, &apps] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(
        conf.join(format!("{VMID}.conf")),
        "arch: amd64\nhostname: sv\n",
    )
    .expect("conf");
    std::fs::write(apps.join("sv-app.toml"), manifest(agent.port)).expect("manifest");
    let sock = running(&lxc, VMID);
    let (hook, seen, _rx) = receiver().await;
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (c2, l2, a2) = (conf.clone(), lxc.clone(), apps.clone());
    let daemon = Daemon::with(Options {
        sandbox: false,
        config: Box::new(move |cfg| {
            let s = &mut cfg.supervise;
            s.enabled = true;
            s.host_state = HostStateSource::Files;
            s.ct_config_dir = c2;
            s.lxc_path = l2;
            s.interval_secs = 1;
            s.jitter_secs = 0;
            s.probe_timeout_secs = 1;
            s.healthy_threshold = 1;
            s.unhealthy_threshold = 2;
            s.restart_grace_secs = 1;
            s.reboot_grace_secs = 1;
            s.backoff_initial_secs = 1;
            s.backoff_max_secs = 2;
            cfg.apps.dir = a2;
            cfg.api.metrics_listen = format!("127.0.0.1:{metrics_port}");
            cfg.notify.retry_initial_secs = 1;
            cfg.notify.targets.insert(
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
        }),
        prepare: Box::new(|cfg| {
            let store = Store::open(&Paths::from_config(cfg)).expect("store");
            store.insert_deployment(&record()).expect("insert");
        }),
        ..Options::default()
    })
    .expect("daemon");
    let c = daemon.client();

    // Starting → healthy on the first good probe.
    let h = state_becomes(&c, HealthState::Healthy).await;
    assert!(h.probe.contains("every 1s"), "{}", h.probe);
    let ls: Vec<Value> = c.get("/v1/deployments").await.expect(200).json();
    assert_eq!(ls[0]["supervision"]["state"], "healthy", "{ls:?}");

    // The service fails: two bad results → unhealthy, an incident opens and
    // the ladder climbs. Without Proxmox tools each remediation fails.
    agent.say(503, r#"{"status":"unhealthy"}"#);
    let h = wait_for("an incident", Duration::from_secs(30), || async {
        let h = health(&c).await;
        h.incident.is_some().then_some(h)
    })
    .await;
    assert!(
        h.incident
            .as_ref()
            .expect("incident")
            .reason
            .contains("HTTP 503"),
        "{h:?}"
    );
    let restart = op_of_kind(&c, "remediate.restart_service").await;
    assert_eq!(restart["target"], format!("ct/{VMID}"));
    assert_eq!(restart["requestor"]["user"], "1ldd-supervisor");
    op_of_kind(&c, "remediate.reboot").await;
    let h = state_becomes(&c, HealthState::Failed).await;
    let inc = h.incident.clone().expect("incident stays open");
    assert!(inc.gave_up, "{h:?}");
    let acts: Vec<&str> = inc.actions.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(acts, vec!["restart_service", "reboot"], "{h:?}");
    assert!(
        h.detail
            .starts_with("gave up: still unhealthy after restart_service, reboot"),
        "{}",
        h.detail
    );
    assert_eq!(h.ladder.last_hour, 2);
    // Failed is sticky: no third remediation while it stays bad.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ops: Vec<Value> = c.get("/v1/operations?limit=100").await.expect(200).json();
    let n = ops
        .iter()
        .filter(|o| {
            o["kind"]
                .as_str()
                .is_some_and(|k| k.starts_with("remediate."))
        })
        .count();
    assert_eq!(n, 2, "{ops:?}");

    // One alert per step of the incident, in order: unhealthy, the two
    // remediations, gave up.
    let got = alerts_until(&seen, 4).await;
    assert_eq!(
        got,
        vec!["unhealthy", "remediation", "remediation", "gave_up"],
        "{got:?}"
    );

    // It comes back by itself: recovered, the incident closes.
    agent.say(200, r#"{"status":"healthy"}"#);
    let h = state_becomes(&c, HealthState::Healthy).await;
    assert!(h.incident.is_none());
    let up = h.uptime_percent.expect("uptime");
    assert!(up > 0.0 && up < 100.0, "{up}");
    let results: Vec<&str> = h.results.iter().map(|r| r.result.as_str()).collect();
    assert!(
        results.contains(&"unhealthy") && results.last() == Some(&"healthy"),
        "{results:?}"
    );
    assert!(
        h.results.iter().any(|r| r.count > 1),
        "identical results are coalesced: {:?}",
        h.results
    );
    assert!(!h.hourly.is_empty());
    let got = alerts_until(&seen, 5).await;
    assert_eq!(got[4], "recovered", "{got:?}");
    let body = last_body(&seen);
    assert_eq!(body["deployment"], NAME);
    assert!(
        body["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("sv recovered after ")),
        "{body}"
    );
    assert!(
        body["data"]["downtime_secs"]
            .as_i64()
            .is_some_and(|s| s >= 2),
        "{body}"
    );

    // Degraded is a state of its own, and no incident.
    agent.say(200, r#"{"status":"degraded","checks":{"netbox_api":{"status":"degraded","message":"no answer"}}}"#);
    let h = state_becomes(&c, HealthState::Degraded).await;
    assert!(h.detail.contains("netbox_api: no answer"), "{}", h.detail);
    assert!(h.incident.is_none());
    agent.say(200, r#"{"status":"healthy"}"#);
    state_becomes(&c, HealthState::Healthy).await;

    // The container stops behind 1ld's back: unhealthy, and the ladder
    // starts it (a remediate.start operation).
    drop(sock);
    let h = state_becomes(&c, HealthState::Unhealthy).await;
    assert!(
        h.detail.contains("is stopped but should run"),
        "{}",
        h.detail
    );
    op_of_kind(&c, "remediate.start").await;

    // The container vanishes: failed.
    std::fs::remove_file(conf.join(format!("{VMID}.conf"))).expect("rm");
    let h = state_becomes(&c, HealthState::Failed).await;
    assert!(h.detail.contains("no longer exists"), "{}", h.detail);

    // /metrics: the families, and no host command for container states.
    let m = c.get("/metrics").await.expect(200).text();
    for needle in [
        "oneld_deployment_health_state{deployment=\"sv\",app=\"sv-app\",state=\"failed\"} 1",
        "oneld_deployment_health_state{deployment=\"sv\",app=\"sv-app\",state=\"healthy\"} 0",
        "oneld_remediations_total{deployment=\"sv\",action=\"restart_service\"} 1",
        "oneld_remediations_total{deployment=\"sv\",action=\"reboot\"} 1",
        "oneld_deployment_container_up{deployment=\"sv\",app=\"sv-app\"} 0",
        "oneld_probe_duration_seconds_bucket{deployment=\"sv\",le=\"+Inf\"}",
        "oneld_operations{kind=\"remediate.reboot\",status=\"failed\"} 1",
        "oneld_supervisor_rounds_total{source=\"files\"}",
        "oneld_build_info{version=",
        "process_resident_memory_bytes ",
    ] {
        assert!(m.contains(needle), "{needle} missing from\n{m}");
    }
    assert!(
        !m.contains("program=\"pct\""),
        "files mode runs no pct:\n{m}"
    );
    check_with_promtool(&m);
    // The same over TCP for Prometheus, and nothing else there.
    let tcp = tcp_get(metrics_port, "/metrics").await;
    assert!(tcp.starts_with("HTTP/1.1 200"), "{tcp}");
    assert!(
        tcp.contains("oneld_deployment_health_state{deployment=\"sv\""),
        "{tcp}"
    );
    let other = tcp_get(metrics_port, "/v1/deployments").await;
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(
        m.contains("oneld_notifications{status=\"delivered\"}"),
        "{m}"
    );
    // Nothing was sent twice.
    let all = alerts_until(&seen, 5).await;
    let keys: Vec<String> = seen
        .lock()
        .expect("seen")
        .iter()
        .filter_map(|(h, _)| {
            h.get("x-1ld-delivery")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "a delivery repeated: {all:?}");

    // 1ldctl health: readable, and --json is the API's JSON.
    let ctl = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_1ldctl"))
            .arg("--socket")
            .arg(&daemon.socket)
            .args(args)
            .output()
            .expect("1ldctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = ctl(&["health", NAME]);
    assert_eq!(code, Some(0), "{text}");
    for needle in [
        "state",
        "failed",
        "no longer exists",
        "uptime",
        "remediations",
        "RESULT",
    ] {
        assert!(text.contains(needle), "{needle} missing:\n{text}");
    }
    let (code, text) = ctl(&["--json", "health", NAME, "--since", "2h"]);
    assert_eq!(code, Some(0), "{text}");
    let j: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(j["state"], "failed");
    let (code, _) = ctl(&["health", "nope"]);
    assert_eq!(code, Some(3), "not found is exit 3");

    // Bad input names the field.
    let r = c
        .get(&format!("/v1/deployments/{NAME}/health?since=yesterday"))
        .await
        .expect(400);
    assert!(r.error().1.starts_with("since:"), "{:?}", r.error());
    c.get("/v1/deployments/nope/health").await.expect(404);
}

/// A plain HTTP/1.1 GET over TCP on loopback; the whole answer.
async fn tcp_get(port: u16, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The `event` of each webhook the receiver got, once it got at least `n`.
async fn alerts_until(seen: &Seen, n: usize) -> Vec<String> {
    wait_for(&format!("{n} alerts"), Duration::from_secs(30), || async {
        let v: Vec<String> = seen
            .lock()
            .expect("seen")
            .iter()
            .filter_map(|(_, b)| serde_json::from_slice::<Value>(b).ok())
            .filter_map(|j| j["event"].as_str().map(str::to_string))
            .collect();
        (v.len() >= n).then_some(v)
    })
    .await
}

fn last_body(seen: &Seen) -> Value {
    let s = seen.lock().expect("seen");
    serde_json::from_slice(&s.last().expect("a request").1).expect("json")
}

/// `promtool check metrics` on `text`, when promtool is installed (`make
/// deps` puts it in `target/tools`); required when `ONELD_REQUIRE_TOOLS=1`
/// (set by `make test`).
pub(crate) fn check_with_promtool(text: &str) {
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/promtool");
    let tool = if local.exists() {
        local
    } else {
        match which("promtool") {
            Some(p) => p,
            None => {
                assert!(
                    std::env::var("ONELD_REQUIRE_TOOLS").as_deref() != Ok("1"),
                    "promtool is missing: run `make deps`"
                );
                eprintln!("SKIPPED promtool check: promtool not installed (make deps installs it)");
                return;
            }
        }
    };
    use std::io::Write;
    let mut child = std::process::Command::new(&tool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(p: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(p))
            .find(|f| f.is_file())
    })
}
