//! Delivery against real HTTP(S) receivers on 127.0.0.1: request shapes,
//! signatures checked independently, retries, ordering, durability, TLS with
//! a private CA, and secrets kept out of everything shown.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::json;

use super::*;
use crate::paths::Paths;
use crate::store::NotificationStatus;

const LIMIT: Duration = Duration::from_secs(20);

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Got {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A small HTTP(S) server capturing every request; it answers the scripted
/// statuses first (with the body `oops <path>`), then 200.
struct Receiver {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        Self::on(SocketAddr::from(([127, 0, 0, 1], 0)), script, None).await
    }

    async fn on(
        addr: SocketAddr,
        script: &[u16],
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Receiver {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let (g, s) = (got.clone(), script);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (g, s, tls) = (g.clone(), s.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                        let (g, s) = (g.clone(), s.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let path = parts.uri.path().to_string();
                            g.lock().unwrap().push(Got {
                                method: parts.method.to_string(),
                                path: path.clone(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                                body: body.to_vec(),
                            });
                            let status = s.lock().unwrap().pop_front().unwrap_or(200);
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(format!(
                                "oops {path}"
                            ))));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(cfg) => {
                            if let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                            {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, got, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn target(kind: TargetKind, url: &str) -> TargetConfig {
    TargetConfig {
        kind,
        url: url.to_string(),
        headers: BTreeMap::new(),
        events: vec![],
        min_severity: Severity::Info,
        ca_file: None,
    }
}

/// A notifier over a fresh state dir (or `dir`'s), with fast retries.
struct Env {
    dir: std::path::PathBuf,
    notifier: Notifier,
    store: Store,
    stop: CancellationToken,
    _tmp: Option<tempfile::TempDir>,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn config(dir: &std::path::Path, targets: Vec<(&str, TargetConfig)>) -> Config {
    let mut c = Config {
        state_dir: dir.join("state"),
        ..Config::default()
    };
    c.pve.node = Some("testnode".into());
    c.notify.retry_initial_secs = 1;
    c.notify.retry_max_secs = 1;
    c.notify.timeout_secs = 5;
    c.notify.targets = targets
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    c
}

impl Env {
    fn new(targets: Vec<(&str, TargetConfig)>) -> Env {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut e = Env::at(tmp.path(), config(tmp.path(), targets));
        e._tmp = Some(tmp);
        e
    }

    fn at(dir: &std::path::Path, cfg: Config) -> Env {
        let paths = Paths::from_config(&cfg);
        let store = Store::open(&paths).expect("store");
        let secrets = Secrets::open(&paths).expect("secrets");
        let shared: SharedConfig = Arc::new(RwLock::new(Arc::new(cfg)));
        let notifier = Notifier::new(store.clone(), secrets, shared);
        Env {
            dir: dir.to_path_buf(),
            notifier,
            store,
            stop: CancellationToken::new(),
            _tmp: None,
        }
    }

    fn run(&self) {
        let beat = crate::daemon::notify::Heartbeats::default().register("notify");
        tokio::spawn(self.notifier.clone().run(self.stop.clone(), beat));
    }

    fn set_config(&self, f: impl FnOnce(&mut Config)) {
        let mut c = (*self.notifier.config()).clone();
        f(&mut c);
        *self.notifier.inner.config.write().unwrap() = Arc::new(c);
    }

    async fn wait_row(
        &self,
        id: i64,
        what: &str,
        f: impl Fn(&NotificationRow) -> bool,
    ) -> NotificationRow {
        let start = Instant::now();
        loop {
            let row = self.store.get_notification(id).unwrap().expect("row");
            if f(&row) {
                return row;
            }
            assert!(
                start.elapsed() < LIMIT,
                "timed out waiting for {what}: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn delivered(&self, id: i64) -> NotificationRow {
        self.wait_row(id, "delivery", |r| {
            r.status == NotificationStatus::Delivered
        })
        .await
    }
}

fn alert(kind: AlertKind, key: Option<&str>) -> Alert {
    Alert {
        kind,
        severity: if kind == AlertKind::Recovered {
            Severity::Info
        } else {
            Severity::Critical
        },
        deployment: Some("wiki".into()),
        app: Some("wikijs".into()),
        title: format!("wiki: {}", kind.as_str()),
        message: "3 probes failed".into(),
        dedupe_key: key.map(str::to_string),
        time_ms: now_ms(),
        data: json!({"incident": 7}),
    }
}

/// HMAC-SHA256 computed here, not with `format::signature`.
fn independent_hmac(key: &[u8], body: &[u8]) -> String {
    use hmac::Mac;
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    m.update(body);
    let bytes = m.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[test]
fn the_secret_namespace_is_no_deployment_name() {
    assert!(!crate::apps::manifest::is_dns_label(
        crate::secrets::NOTIFY_NAMESPACE
    ));
}

#[tokio::test]
async fn webhook_is_signed_and_shaped() {
    let rx = Receiver::start(&[]).await;
    let mut t = target(TargetKind::Webhook, &rx.url("/hook?x=1"));
    t.headers.insert("X-Team".into(), "ops".into());
    let env = Env::new(vec![("ops-hook", t)]);
    env.notifier
        .set_secret("ops-hook", "hmac-key-0123456789\n")
        .unwrap();
    env.run();
    let a = alert(AlertKind::Unhealthy, Some("wiki/7/unhealthy"));
    assert_eq!(env.notifier.enqueue(&a).unwrap(), 1);
    assert_eq!(
        env.notifier.enqueue(&a).unwrap(),
        0,
        "one alert per incident"
    );
    let row = env.delivered(1).await;
    assert_eq!(row.attempts, 1);
    let got = rx.got();
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!((g.method.as_str(), g.path.as_str()), ("POST", "/hook"));
    assert_eq!(g.header("content-type"), Some("application/json"));
    assert_eq!(
        g.header("user-agent"),
        Some(concat!("1ldd/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(g.header("x-1ld-event"), Some("unhealthy"));
    assert_eq!(g.header("x-1ld-delivery"), Some("1"));
    assert_eq!(g.header("x-team"), Some("ops"));
    assert_eq!(
        g.header("x-1ld-signature-256"),
        Some(independent_hmac(b"hmac-key-0123456789", &g.body).as_str()),
        "the trailing newline of the stored value is not part of the key"
    );
    let v = g.json();
    assert_eq!(v["id"], 1);
    assert_eq!(v["event"], "unhealthy");
    assert_eq!(v["severity"], "critical");
    assert_eq!(v["deployment"], "wiki");
    assert_eq!(v["node"], "testnode");
    assert_eq!(v["data"], json!({"incident": 7}));
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        env.notifier.stats().unwrap(),
        QueueStats {
            pending: 0,
            delivered: 1,
            failed: 0
        }
    );
}

#[tokio::test]
async fn ntfy_gotify_and_home_assistant_requests() {
    let rx = Receiver::start(&[]).await;
    let env = Env::new(vec![
        ("phone", target(TargetKind::Ntfy, &rx.url("/alerts-topic"))),
        ("gotify", target(TargetKind::Gotify, &rx.url("/gotify/"))),
        ("ha", target(TargetKind::HomeAssistant, &rx.url("/ha"))),
    ]);
    env.notifier.set_secret("phone", "tk_ntfytoken1").unwrap();
    env.notifier
        .set_secret("gotify", "GotifyAppToken1")
        .unwrap();
    env.notifier.set_secret("ha", "ha-webhook-id-1").unwrap();
    env.run();
    assert_eq!(
        env.notifier
            .enqueue(&alert(AlertKind::GaveUp, None))
            .unwrap(),
        3
    );
    for id in 1..=3 {
        env.delivered(id).await;
    }
    let got = rx.got();
    let by_path = |p: &str| {
        got.iter()
            .find(|g| g.path == p)
            .unwrap_or_else(|| panic!("{p}: {got:?}"))
            .clone()
    };
    let n = by_path("/alerts-topic");
    assert_eq!(n.method, "POST");
    assert_eq!(n.body, b"3 probes failed");
    assert_eq!(n.header("title"), Some("wiki: gave_up"));
    assert_eq!(n.header("priority"), Some("5"));
    assert_eq!(n.header("tags"), Some("rotating_light,gave_up,wiki"));
    assert_eq!(n.header("authorization"), Some("Bearer tk_ntfytoken1"));
    let g = by_path("/gotify/message");
    assert_eq!(g.header("x-gotify-key"), Some("GotifyAppToken1"));
    assert_eq!(g.header("content-type"), Some("application/json"));
    let v = g.json();
    assert_eq!(
        (
            v["title"].as_str(),
            v["message"].as_str(),
            v["priority"].as_u64()
        ),
        (Some("wiki: gave_up"), Some("3 probes failed"), Some(8))
    );
    assert!(v["extras"].is_object());
    let h = by_path("/ha/api/webhook/ha-webhook-id-1");
    assert_eq!(h.json()["event"], "gave_up");
    assert_eq!(h.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn two_errors_then_success_is_delivered_on_the_third_attempt() {
    let rx = Receiver::start(&[500, 500]).await;
    let env = Env::new(vec![("hook", target(TargetKind::Webhook, &rx.url("/h")))]);
    env.run();
    env.notifier
        .enqueue(&alert(AlertKind::Unhealthy, None))
        .unwrap();
    let failed_once = env
        .wait_row(1, "a failed attempt", |r| r.attempts >= 1)
        .await;
    assert_eq!(failed_once.status, NotificationStatus::Pending);
    assert_eq!(failed_once.last_error.as_deref(), Some("HTTP 500: oops /h"));
    let row = env.delivered(1).await;
    assert_eq!(row.attempts, 3);
    assert_eq!(rx.got().len(), 3);
    let view = env.notifier.targets().unwrap();
    assert_eq!((view[0].pending, view[0].failed), (0, 0));
    assert!(view[0].last_delivered_at.is_some());
}

#[tokio::test]
async fn a_target_that_is_down_gets_it_when_it_comes_up() {
    // A free port with nobody listening.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let env = Env::new(vec![(
        "hook",
        target(TargetKind::Webhook, &format!("http://{addr}/h")),
    )]);
    env.run();
    env.notifier
        .enqueue(&alert(AlertKind::Vanished, None))
        .unwrap();
    let row = env
        .wait_row(1, "a refused attempt", |r| r.attempts >= 1)
        .await;
    let err = row.last_error.unwrap();
    assert!(err.contains("cannot connect to 127.0.0.1"), "{err}");
    let listed = env.notifier.targets().unwrap();
    assert_eq!(listed[0].pending, 1);
    assert!(listed[0]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("cannot connect"));
    let rx = Receiver::on(addr, &[], None).await;
    let row = env.delivered(1).await;
    assert!(row.attempts >= 2);
    assert_eq!(rx.got().len(), 1);
}

#[tokio::test]
async fn per_target_order_holds_across_retries() {
    let slow = Receiver::start(&[503]).await;
    let fast = Receiver::start(&[]).await;
    let env = Env::new(vec![
        ("slow", target(TargetKind::Webhook, &slow.url("/s"))),
        ("fast", target(TargetKind::Webhook, &fast.url("/f"))),
    ]);
    env.run();
    env.notifier
        .enqueue(&alert(AlertKind::Unhealthy, Some("wiki/1/unhealthy")))
        .unwrap();
    env.notifier
        .enqueue(&alert(AlertKind::Recovered, Some("wiki/1/recovered")))
        .unwrap();
    // ids: slow 1, fast 2 (unhealthy); slow 3, fast 4 (recovered). BTreeMap order: fast, slow.
    let rows = env
        .store
        .list_notifications(&crate::store::NotificationFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in &rows {
        env.delivered(r.id).await;
    }
    let events = |rx: &Receiver| -> Vec<String> {
        rx.got()
            .iter()
            .map(|g| g.header("x-1ld-event").unwrap().to_string())
            .collect()
    };
    assert_eq!(
        events(&slow),
        ["unhealthy", "unhealthy", "recovered"],
        "the retry came before the next one"
    );
    assert_eq!(events(&fast), ["unhealthy", "recovered"]);
}

#[tokio::test]
async fn the_queue_survives_a_restart() {
    let rx = Receiver::start(&[]).await;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        vec![("hook", target(TargetKind::Webhook, &rx.url("/h")))],
    );
    {
        // Raised, never delivered: the daemon stops before its loop runs.
        let env = Env::at(tmp.path(), cfg.clone());
        assert_eq!(
            env.notifier
                .enqueue(&alert(AlertKind::Drift, Some("wiki/drift/1")))
                .unwrap(),
            1
        );
    }
    let env = Env::at(tmp.path(), cfg);
    assert_eq!(env.dir, tmp.path());
    assert_eq!(
        env.store.get_notification(1).unwrap().unwrap().status,
        NotificationStatus::Pending
    );
    assert_eq!(
        env.notifier
            .enqueue(&alert(AlertKind::Drift, Some("wiki/drift/1")))
            .unwrap(),
        0,
        "the incident's key is remembered across the restart"
    );
    env.run();
    env.delivered(1).await;
    assert_eq!(rx.got().len(), 1);
}

#[tokio::test]
async fn removed_targets_and_old_rows_fail_with_a_reason() {
    let rx = Receiver::start(&[]).await;
    let broken = Receiver::start(&[500; 8]).await;
    let env = Env::new(vec![
        ("hook", target(TargetKind::Webhook, &rx.url("/h"))),
        ("gone", target(TargetKind::Webhook, &rx.url("/g"))),
        ("broken", target(TargetKind::Webhook, &broken.url("/b"))),
    ]);
    let mut a = alert(AlertKind::Unhealthy, None);
    a.severity = Severity::Warning;
    // "broken" 1, "gone" 2, "hook" 3 (targets in name order).
    assert_eq!(env.notifier.enqueue(&a).unwrap(), 3);
    // Make the broken target's row 25 h old (the daemon was down that long):
    // it gets one more attempt, then it is failed.
    env.store
        .write(|c| {
            c.execute(
                "UPDATE notifications SET created_ms = created_ms - 90000000 WHERE id = 1",
                [],
            )
        })
        .unwrap();
    env.set_config(|c| {
        c.notify.targets.remove("gone");
    });
    env.run();
    let gone = env
        .wait_row(2, "failure", |r| r.status == NotificationStatus::Failed)
        .await;
    assert_eq!(gone.attempts, 0);
    assert!(gone.last_error.unwrap().contains("no longer configured"));
    env.delivered(3).await;
    let old = env
        .wait_row(1, "give-up", |r| r.status == NotificationStatus::Failed)
        .await;
    let e = old.last_error.unwrap();
    assert!(
        e.starts_with("gave up after 1 attempt(s) over 24 h; last error: HTTP 500: oops /b"),
        "{e}"
    );
    assert_eq!(old.attempts, 1);
    assert_eq!(
        env.notifier.stats().unwrap(),
        QueueStats {
            pending: 0,
            delivered: 1,
            failed: 2
        }
    );
    assert!(rx.got().iter().all(|g| g.path == "/h"));
}

#[tokio::test]
async fn filters_pick_the_targets() {
    let mut picky = target(TargetKind::Webhook, "http://127.0.0.1:9/p");
    picky.events = vec![AlertKind::GaveUp];
    let mut loud = target(TargetKind::Webhook, "http://127.0.0.1:9/l");
    loud.min_severity = Severity::Critical;
    let env = Env::new(vec![("picky", picky), ("loud", loud)]);
    assert_eq!(
        env.notifier
            .enqueue(&alert(AlertKind::Recovered, None))
            .unwrap(),
        0
    );
    assert_eq!(
        env.notifier
            .enqueue(&alert(AlertKind::Unhealthy, None))
            .unwrap(),
        1
    );
    assert_eq!(
        env.notifier
            .enqueue(&alert(AlertKind::GaveUp, None))
            .unwrap(),
        2
    );
}

fn tls_material(dir: &std::path::Path) -> (Arc<rustls::ServerConfig>, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, cert.cert.pem()).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    (Arc::new(cfg), ca)
}

#[tokio::test]
async fn https_with_a_private_ca_and_refused_without() {
    let tmp = tempfile::tempdir().unwrap();
    let (server, ca) = tls_material(tmp.path());
    let rx = Receiver::on(SocketAddr::from(([127, 0, 0, 1], 0)), &[], Some(server)).await;
    let url = format!("https://{}/tls", rx.addr);
    let mut trusted = target(TargetKind::Webhook, &url);
    trusted.ca_file = Some(ca);
    let env = Env::new(vec![
        ("trusted", trusted),
        ("untrusted", target(TargetKind::Webhook, &url)),
    ]);
    let results = env.notifier.send_test(None).await;
    let by = |n: &str| results.iter().find(|r| r.target == n).unwrap().clone();
    let ok = by("trusted");
    assert!(ok.delivered, "{ok:?}");
    assert_eq!(ok.http_status, Some(200));
    let refused = by("untrusted");
    assert!(!refused.delivered);
    assert_eq!(refused.http_status, None);
    let e = refused.error.unwrap();
    assert!(
        e.contains("TLS handshake") && e.to_lowercase().contains("certificate"),
        "{e}"
    );
    let got = rx.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("x-1ld-event"), Some("test"));
    assert_eq!(got[0].header("x-1ld-delivery"), Some("0"));
}

/// A log sink for the test's thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, d: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(d);
        Ok(d.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_stay_out_of_errors_logs_and_the_api() {
    let sink = Captured::default();
    let s2 = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || s2.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    const HA_ID: &str = "ha-secret-webhook-id-42";
    const TOKEN: &str = "gotify-secret-token-42";
    // The receiver's error page echoes the path, which holds the webhook id.
    let rx = Receiver::start(&[500, 500, 500, 500]).await;
    let env = Env::new(vec![
        ("ha", target(TargetKind::HomeAssistant, &rx.url("/ha"))),
        ("gotify", target(TargetKind::Gotify, &rx.url("/g"))),
    ]);
    env.notifier.set_secret("ha", HA_ID).unwrap();
    env.notifier.set_secret("gotify", TOKEN).unwrap();
    env.run();
    // An alert whose text quotes a secret (a careless producer).
    let mut a = alert(AlertKind::Unhealthy, None);
    a.message = format!("token {TOKEN} was rejected");
    env.notifier.enqueue(&a).unwrap();
    for id in 1..=2 {
        env.wait_row(id, "a failed attempt", |r| r.attempts >= 1)
            .await;
    }
    let test = env.notifier.send_test(Some("ha")).await;

    let mut shown = serde_json::to_string(&env.notifier.targets().unwrap()).unwrap();
    let rows = env
        .store
        .list_notifications(&crate::store::NotificationFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    for r in &rows {
        shown.push_str(&serde_json::to_string(&env.notifier.to_api(r)).unwrap());
        shown.push_str(&r.payload.to_string());
        shown.push_str(r.last_error.as_deref().unwrap_or(""));
    }
    shown.push_str(&serde_json::to_string(&test).unwrap());
    env.stop.cancel();
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    for secret in [HA_ID, TOKEN] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
        assert!(!logs.contains(secret), "{secret} logged: {logs}");
    }
    assert!(
        shown.contains("HTTP 500: oops /ha/api/webhook/***"),
        "{shown}"
    );
    assert!(
        shown.contains("/ha/api/webhook/***\""),
        "the URL is masked: {shown}"
    );
    assert!(
        logs.contains("notification delivery failed") && logs.contains("notify_target=ha"),
        "{logs}"
    );
    // The receiver did get the real values.
    assert!(rx.got().iter().any(|g| g.path.ends_with(HA_ID)));
    assert!(rx
        .got()
        .iter()
        .any(|g| g.header("x-gotify-key") == Some(TOKEN)));
}

#[tokio::test]
async fn secrets_need_a_known_target() {
    let env = Env::new(vec![(
        "hook",
        target(TargetKind::Webhook, "http://127.0.0.1:9/"),
    )]);
    let e = env.notifier.set_secret("nope", "v").unwrap_err();
    assert_eq!(e.kind, crate::error::ErrorKind::NotFound);
    assert!(e.message.contains("configured: hook"), "{}", e.message);
    assert!(env.notifier.set_secret("hook", "\n").is_err());
    env.notifier.set_secret("hook", "k").unwrap();
    assert!(env.notifier.targets().unwrap()[0].has_secret);
    assert!(env.notifier.remove_secret("hook").unwrap());
    assert!(!env.notifier.targets().unwrap()[0].has_secret);
    assert_eq!(
        env.notifier.check_target(Some("x")).unwrap_err().kind,
        crate::error::ErrorKind::NotFound
    );
    let none = Env::new(vec![]);
    let e = none.notifier.check_target(None).unwrap_err();
    assert!(e.message.contains("[notify.targets.NAME]"), "{}", e.message);
}
