//! Notifications through the daemon: a webhook target pointing at a real
//! HTTP receiver on 127.0.0.1, test sends through the API and `1ldctl`, the
//! target secret set from stdin, and `GET /v1/notifications` never showing it.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use oneld::api::{NotificationsView, NotifyTestResult};
use oneld::notify::{TargetConfig, TargetKind};
use serde_json::{json, Value};

use super::daemon::{Daemon, Options};

const CTL: &str = env!("CARGO_BIN_EXE_1ldctl");
const KEY: &str = "integration-hmac-key-7f3a9c";

/// Headers and body of each request a receiver got.
pub(crate) type Seen = Arc<Mutex<Vec<(hyper::HeaderMap, Vec<u8>)>>>;

/// A webhook target named `hook` posting to `http://<addr>/1ld`, every
/// event from severity info, into `cfg` (and quick retries).
pub(crate) fn hook_target(cfg: &mut oneld::config::Config, addr: SocketAddr) {
    cfg.notify.retry_initial_secs = 1;
    cfg.notify.targets.insert(
        "hook".into(),
        TargetConfig {
            kind: TargetKind::Webhook,
            url: format!("http://{addr}/1ld"),
            headers: Default::default(),
            events: vec![],
            min_severity: oneld::notify::Severity::Info,
            ca_file: None,
        },
    );
}

/// A receiver answering 204 to everything.
pub(crate) async fn receiver() -> (SocketAddr, Seen, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let s = s.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        s.lock().expect("seen").push((parts.headers, body.to_vec()));
                        let mut r = hyper::Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, seen, task)
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("key");
    m.update(body);
    m.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `1ldctl --socket S args...` with `stdin` piped in.
async fn ctl(d: &Daemon, args: &[&str], stdin: &str) -> (i32, String, String) {
    let socket = d.socket.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let stdin = stdin.to_string();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(CTL)
            .arg("--socket")
            .arg(&socket)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("ONELD_SOCKET")
            .spawn()
            .expect("1ldctl");
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin.as_bytes()).expect("stdin");
        }
        let out = child.wait_with_output().expect("1ldctl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("1ldctl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_sends_through_the_api_and_the_client() {
    let (addr, seen, _task) = receiver().await;
    let url = format!("http://{addr}/hook");
    let d = Daemon::with(Options {
        sandbox: false,
        config: Box::new(move |c| {
            c.notify.targets.insert(
                "hook".into(),
                TargetConfig {
                    kind: TargetKind::Webhook,
                    url,
                    headers: Default::default(),
                    events: vec![],
                    min_severity: oneld::notify::Severity::Info,
                    ca_file: None,
                },
            );
        }),
        ..Options::default()
    })
    .expect("daemon");
    let c = d.client();

    // Through the API: delivered, unsigned (no secret yet).
    let r: Vec<NotifyTestResult> = c
        .post("/v1/notifications/test", &json!({}))
        .await
        .expect(200)
        .json();
    assert_eq!(r.len(), 1);
    assert!(r[0].delivered && r[0].http_status == Some(204), "{r:?}");
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 1);
        let (h, body) = &seen[0];
        assert_eq!(h["x-1ld-event"], "test");
        assert!(h.get("x-1ld-signature-256").is_none());
        let v: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(v["node"], "pve");
    }
    let e = c
        .post("/v1/notifications/test", &json!({"target": "nope"}))
        .await
        .expect(404);
    assert!(e.error().1.contains("configured: hook"), "{:?}", e.error());

    // The secret, from stdin through the client; then signed test sends.
    let (code, _, err) = ctl(&d, &["notify", "set-secret", "hook"], &format!("{KEY}\n")).await;
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = ctl(&d, &["notify", "test", "hook"], "").await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("hook") && out.contains("delivered"), "{out}");
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 2);
        let (h, body) = &seen[1];
        assert_eq!(
            h["x-1ld-signature-256"].to_str().expect("ascii"),
            format!("sha256={}", hmac_hex(KEY.as_bytes(), body))
        );
    }
    let (code, _, err) = ctl(&d, &["notify", "test", "nope"], "").await;
    assert_eq!(code, 3, "not found: {err}");

    // The listing: the target with its secret set, never the value.
    let r = c.get("/v1/notifications").await.expect(200);
    assert!(!r.text().contains(KEY));
    let view: NotificationsView = r.json();
    assert_eq!(view.targets.len(), 1);
    assert_eq!(view.targets[0].name, "hook");
    assert_eq!(view.targets[0].kind, "webhook");
    assert!(view.targets[0].has_secret);
    let (code, out, _) = ctl(&d, &["--json", "notify", "ls"], "").await;
    assert_eq!(code, 0);
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed["targets"][0]["has_secret"], true);
    assert!(!out.contains(KEY));
    let (code, out, _) = ctl(&d, &["notify", "ls"], "").await;
    assert_eq!(code, 0);
    assert!(
        out.contains("TARGET") && out.contains("hook") && out.contains("no notifications"),
        "{out}"
    );

    // Deleting it: unsigned again; the admin-only verbs answer 404 for unknown targets.
    c.delete("/v1/notifications/targets/hook/secret")
        .await
        .expect(204);
    c.delete("/v1/notifications/targets/nope/secret")
        .await
        .expect(404);
    let view: NotificationsView = c.get("/v1/notifications").await.expect(200).json();
    assert!(!view.targets[0].has_secret);
    c.get("/v1/notifications?status=nope").await.expect(400);
}

#[tokio::test]
async fn no_targets_is_a_400_with_the_fix() {
    let d = Daemon::with(Options {
        sandbox: false,
        ..Options::default()
    })
    .expect("daemon");
    let r = d
        .client()
        .post("/v1/notifications/test", &json!({}))
        .await
        .expect(400);
    assert!(
        r.error().1.contains("[notify.targets.NAME]"),
        "{:?}",
        r.error()
    );
}
