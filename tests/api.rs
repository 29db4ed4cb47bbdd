//! The daemon's API, end to end: the daemon in-process on a temp socket
//! (see `daemon/mod.rs`), real Proxmox tools from the sandbox node (no
//! containers), real HTTP over the Unix socket. No mocks of our own code.
//!
//! Root tier (`PVE_SANDBOX_E2E=1`, set by `make test`; fails when not root):
//! roles with real users and groups created for the test.

mod daemon;

/// The private sandbox node of the root-tier tests (shared with the
/// sandbox bench and `tests/pve_sandbox.rs`).
#[path = "support/mod.rs"]
mod support;

#[path = "api/abuse.rs"]
mod abuse;

#[path = "api/agents_e2e.rs"]
mod agents_e2e;

#[path = "api/backups.rs"]
mod backups;

#[path = "api/cli.rs"]
mod cli;

#[path = "api/crash.rs"]
mod crash;

#[path = "api/deployments.rs"]
mod deployments;

#[path = "api/events.rs"]
mod events;

#[path = "api/faults.rs"]
mod faults;

#[path = "api/logs.rs"]
mod logs;

#[path = "api/notify.rs"]
mod notify;
#[path = "api/supervise.rs"]
mod supervise;

#[path = "api/supervise_root.rs"]
mod supervise_root;

#[path = "api/upgrades.rs"]
mod upgrades;

use std::time::Duration;

use daemon::{Client, Daemon, Options, LIMIT, TINY};
use hyper::Method;
use oneld::api::{EventType, HostInfo, OpLogChunk, OpStatus, Operation, RootInfo, API_EXTENSIONS};
use serde_json::{json, Value};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openapi.json");

fn download(template: &str) -> Value {
    json!({"storage": "local", "template": template})
}

async fn post_download(c: &Client) -> Operation {
    let r = c.post("/v1/templates", &download(TINY)).await.expect(202);
    let op: Operation = r.json();
    let loc = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(loc, format!("/v1/operations/{}", op.id));
    op
}

async fn wait_final(c: &Client, id: &str) -> Operation {
    let op: Operation = c
        .get(&format!("/v1/operations/{id}/wait?timeout=15"))
        .await
        .expect(200)
        .json();
    assert!(op.status.is_final(), "not final after wait: {op:?}");
    op
}

#[tokio::test]
async fn root_announces_versions_and_extensions() {
    let d = Daemon::start();
    let info: RootInfo = d.client().get("/").await.expect(200).json();
    assert_eq!(info.api_versions, ["v1"]);
    assert_eq!(info.api_extensions, API_EXTENSIONS);
    assert_eq!(info.daemon_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn openapi_matches_the_golden_file() {
    let d = Daemon::with(Options {
        sandbox: false,
        ..Options::default()
    })
    .expect("daemon");
    let r = d.client().get("/v1/openapi.json").await.expect(200);
    assert_eq!(r.headers["content-type"], "application/json");
    let served: Value = r.json();
    let pretty = serde_json::to_string_pretty(&served).expect("json") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &pretty).expect("write golden");
        return;
    }
    let golden = std::fs::read_to_string(GOLDEN).unwrap_or_default();
    let golden_value: Value = serde_json::from_str(&golden).unwrap_or(Value::Null);
    if golden_value != served {
        let diff = diff_lines(&golden, &pretty);
        panic!(
            "the API surface changed: GET /v1/openapi.json differs from {GOLDEN}.\n\
             If the change is intended, run with UPDATE_GOLDEN=1 \
             (`UPDATE_GOLDEN=1 cargo test -p oneld --test api openapi`) and commit the file.\n\
             First differences (- golden, + served):\n{diff}"
        );
    }
    // Every route is documented.
    let paths = served["paths"].as_object().expect("paths");
    for p in [
        "/",
        "/v1/host",
        "/v1/operations",
        "/v1/operations/{id}",
        "/v1/operations/{id}/log",
        "/v1/operations/{id}/wait",
        "/v1/templates",
        "/v1/events",
        "/v1/deployments/{name}/logs",
        "/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
}

/// The first differing lines, for the golden failure message.
fn diff_lines(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut out = String::new();
    let (mut i, mut shown) = (0, 0);
    while (i < a.len() || i < b.len()) && shown < 20 {
        let (x, y) = (a.get(i), b.get(i));
        if x != y {
            if let Some(x) = x {
                out += &format!("{:>5} - {x}\n", i + 1);
            }
            if let Some(y) = y {
                out += &format!("{:>5} + {y}\n", i + 1);
            }
            shown += 1;
        }
        i += 1;
    }
    out
}

#[tokio::test]
async fn unknown_routes_and_methods_have_the_error_body() {
    let d = Daemon::with(Options {
        sandbox: false,
        ..Options::default()
    })
    .expect("daemon");
    let c = d.client();
    let (code, msg) = c.get("/v1/nope").await.expect(404).error();
    assert_eq!(code, "not_found");
    assert!(msg.contains("/v1/nope"), "{msg}");
    c.get("/v2/host").await.expect(404);

    let r = c
        .raw(Method::PUT, "/v1/host", &[], Vec::new())
        .await
        .expect(405);
    assert_eq!(r.error().0, "method_not_allowed");
    let allow = r
        .headers
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(allow.contains("GET"), "Allow: {allow:?}");
    c.raw(Method::POST, "/v1/operations", &[], Vec::new())
        .await
        .expect(405);
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let d = Daemon::start();
    let c = d.client();
    let (code, msg) = c
        .post(
            "/v1/templates",
            &json!({"storage": "local", "template": TINY, "foo": 1}),
        )
        .await
        .expect(400)
        .error();
    assert_eq!(code, "bad_request");
    assert!(
        msg.contains("unknown field `foo`") && msg.contains("`storage`"),
        "{msg}"
    );

    let (_, msg) = c
        .post("/v1/templates", &json!({"template": TINY}))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("missing field `storage`"), "{msg}");

    let (_, msg) = c
        .post("/v1/templates", &json!({"storage": 7, "template": TINY}))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("storage"), "{msg}");

    let (_, msg) = c
        .post(
            "/v1/templates",
            &json!({"storage": "local", "template": "../etc/passwd"}),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("template"), "{msg}");

    let (_, msg) = c
        .raw(
            Method::POST,
            "/v1/templates",
            &[("content-type", "application/json")],
            b"{\"storage\": ".to_vec(),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("not valid JSON"), "{msg}");

    let (_, msg) = c
        .raw(
            Method::POST,
            "/v1/templates",
            &[],
            serde_json::to_vec(&download(TINY)).expect("json"),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("Content-Type"), "{msg}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let d = Daemon::with(Options {
        config: Box::new(|c| c.api.max_body_bytes = 1024),
        ..Options::default()
    })
    .expect("daemon");
    let c = d.client();
    let big = format!(
        "{{\"storage\":\"local\",\"template\":\"{}\"}}",
        "x".repeat(2048)
    );
    let (code, msg) = c
        .raw(
            Method::POST,
            "/v1/templates",
            &[("content-type", "application/json")],
            big.into_bytes(),
        )
        .await
        .expect(413)
        .error();
    assert_eq!(code, "payload_too_large");
    assert!(
        msg.contains("1024") && msg.contains("max_body_bytes"),
        "{msg}"
    );
    // Just under the limit is read, and judged on its content.
    let ok = format!(
        "{{\"storage\":\"local\",\"template\":\"{}\"}}",
        "x".repeat(900)
    );
    let (code, msg) = c
        .raw(
            Method::POST,
            "/v1/templates",
            &[("content-type", "application/json")],
            ok.into_bytes(),
        )
        .await
        .expect(400)
        .error();
    assert_eq!(code, "bad_request");
    assert!(msg.contains("template"), "{msg}");
}

#[tokio::test]
async fn bad_queries_are_400_naming_the_parameter() {
    let d = Daemon::start();
    let c = d.client();
    let (_, msg) = c
        .get("/v1/operations?status=bogus")
        .await
        .expect(400)
        .error();
    assert!(msg.contains("`status`") && msg.contains("bogus"), "{msg}");
    let (_, msg) = c.get("/v1/operations?colour=red").await.expect(400).error();
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    let (_, msg) = c.get("/v1/operations?limit=lots").await.expect(400).error();
    assert!(msg.contains("limit"), "{msg}");
    let (_, msg) = c
        .get("/v1/events?type=operation,gossip")
        .await
        .expect(400)
        .error();
    assert!(msg.contains("`type`") && msg.contains("gossip"), "{msg}");
    let op = post_download(&c).await;
    let (_, msg) = c
        .get(&format!("/v1/operations/{}/log?offset=-1", op.id))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("offset"), "{msg}");
}

#[tokio::test]
async fn unknown_operations_are_404() {
    let d = Daemon::start();
    let c = d.client();
    for path in [
        "/v1/operations/0000000000000000",
        "/v1/operations/0000000000000000/log",
        "/v1/operations/0000000000000000/wait?timeout=1",
    ] {
        let (code, _) = c.get(path).await.expect(404).error();
        assert_eq!(code, "not_found", "{path}");
    }
    c.delete("/v1/operations/0000000000000000")
        .await
        .expect(404);
}

#[tokio::test]
async fn host_lists_storages_bridges_and_templates() {
    let d = Daemon::start();
    let host: HostInfo = d.client().get("/v1/host").await.expect(200).json();
    assert_eq!(host.pve.major, 9);
    assert_eq!(host.pve.node, "pve");
    let local = host
        .storages
        .iter()
        .find(|s| s.name == "local")
        .expect("local");
    assert_eq!(local.storage_type, "dir");
    assert_eq!(local.state, "active");
    assert_eq!(local.content, ["vztmpl", "backup", "iso"]);
    assert!(local.total_bytes > 0 && local.avail_bytes > 0);
    let ctdata = host
        .storages
        .iter()
        .find(|s| s.name == "ctdata")
        .expect("ctdata");
    assert_eq!(ctdata.content, ["rootdir", "images"]);
    assert!(
        host.templates.available.iter().any(|t| t.name == TINY),
        "{:?}",
        host.templates.available
    );
    assert!(host.templates.downloaded.is_empty());
    assert!(host.warnings.is_empty(), "{:?}", host.warnings);
    // Bridges are the host's own (whatever it has); each is a bridge.
    for b in &host.bridges {
        assert!(std::path::Path::new("/sys/class/net")
            .join(b)
            .join("bridge")
            .is_dir());
    }

    // After a download the template shows up as downloaded.
    let c = d.client();
    let op = post_download(&c).await;
    assert_eq!(wait_final(&c, &op.id).await.status, OpStatus::Succeeded);
    let host: HostInfo = c.get("/v1/host").await.expect(200).json();
    assert_eq!(host.templates.downloaded.len(), 1);
    assert_eq!(
        host.templates.downloaded[0].volid,
        format!("local:vztmpl/{TINY}")
    );
}

#[tokio::test]
async fn host_is_503_naming_the_missing_tool() {
    let d = Daemon::with(Options {
        sandbox: false,
        ..Options::default()
    })
    .expect("daemon starts without the Proxmox tools");
    let (code, msg) = d.client().get("/v1/host").await.expect(503).error();
    assert_eq!(code, "dependency_down");
    assert!(
        msg.contains("pveversion") && msg.contains("[pve] bin_dir"),
        "{msg}"
    );
    // Operations needing the tools are refused, not crashed.
    let c = d.client();
    let op = post_download(&c).await;
    let op = wait_final(&c, &op.id).await;
    assert_eq!(op.status, OpStatus::Failed, "{op:?}");
}

#[tokio::test]
async fn internal_errors_do_not_leak_detail() {
    let d = Daemon::start();
    // `pvesm status` prints junk: a parse error, which is a bug-class 500.
    d.tools().faults(&["pvesm status garbage"]);
    let r = d.client().get("/v1/host").await.expect(500);
    let (code, msg) = r.error();
    assert_eq!(code, "internal");
    assert!(msg.contains("journalctl"), "{msg}");
    let body = r.text();
    for leak in ["pvesm", "parse", "status", "line"] {
        assert!(!body.contains(leak), "500 body leaks `{leak}`: {body}");
    }
}

#[tokio::test]
async fn template_download_is_an_operation_with_ordered_events_and_an_audit_trail() {
    let d = Daemon::start();
    let c = d.client();
    let mut events = c.events("/v1/events?type=operation,lifecycle").await;

    let op = post_download(&c).await;
    assert_eq!(op.kind, "template.download");
    assert_eq!(
        op.target.as_deref(),
        Some(&*format!("template/local/{TINY}"))
    );
    assert_eq!(op.requestor.uid, nix::unistd::geteuid().as_raw());
    assert_eq!(op.requestor.pid, std::process::id() as i32);

    let seen = events
        .until(LIMIT, |e| {
            e.kind == EventType::Operation
                && e.payload["id"] == op.id.as_str()
                && e.payload["status"] == "succeeded"
        })
        .await;
    // Strictly increasing sequence numbers, in publication order.
    for w in seen.windows(2) {
        assert!(w[0].seq < w[1].seq, "{seen:#?}");
    }
    // The operation's states only move forward: queued → running → succeeded.
    let rank = |s: &str| match s {
        "queued" => 0,
        "running" => 1,
        _ => 2,
    };
    let states: Vec<&str> = seen
        .iter()
        .filter(|e| e.kind == EventType::Operation && e.payload["id"] == op.id.as_str())
        .filter_map(|e| e.payload["status"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"queued"), "{states:?}");
    assert!(states.contains(&"running"), "{states:?}");
    assert!(
        states.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
        "{states:?}"
    );
    // Progress reached the last step.
    let last = seen.last().expect("events");
    assert_eq!(
        last.payload["progress"]["step"],
        last.payload["progress"]["steps"]
    );

    // The audit event of the POST: after the operation was queued (the
    // handler submitted it), with who asked and the answer.
    let audit_at = |evs: &[oneld::api::Event]| {
        evs.iter().position(|e| {
            e.kind == EventType::Lifecycle
                && e.payload["path"] == "/v1/templates"
                && e.payload["method"] == "POST"
        })
    };
    let seen = match audit_at(&seen) {
        Some(_) => seen,
        None => {
            let mut more = seen;
            more.extend(
                events
                    .until(LIMIT, |e| {
                        e.kind == EventType::Lifecycle && e.payload["path"] == "/v1/templates"
                    })
                    .await,
            );
            more
        }
    };
    let i = audit_at(&seen).expect("audit event");
    let queued = seen
        .iter()
        .position(|e| e.payload["status"] == "queued")
        .expect("queued event");
    assert!(
        queued < i,
        "audit before the operation was queued: {seen:#?}"
    );
    let audit = &seen[i].payload;
    assert_eq!(audit["status"], 202);
    assert_eq!(audit["role"], "admin");
    assert_eq!(audit["requestor"]["uid"], nix::unistd::geteuid().as_raw());
    assert_eq!(audit["requestor"]["pid"], std::process::id());
    assert!(audit["requestor"]["user"]
        .as_str()
        .is_some_and(|u| !u.is_empty()));

    // The operation as stored: listed, filtered, with its log.
    let list: Vec<Operation> = c
        .get("/v1/operations?status=succeeded&kind=template.download")
        .await
        .expect(200)
        .json();
    assert!(list.iter().any(|o| o.id == op.id));
    let none: Vec<Operation> = c
        .get("/v1/operations?status=failed,cancelled")
        .await
        .expect(200)
        .json();
    assert!(none.iter().all(|o| o.id != op.id));
    let log: OpLogChunk = c
        .get(&format!("/v1/operations/{}/log", op.id))
        .await
        .expect(200)
        .json();
    assert!(log.complete && !log.lines.is_empty(), "{log:?}");
    let rest: OpLogChunk = c
        .get(&format!(
            "/v1/operations/{}/log?offset={}",
            op.id, log.next_offset
        ))
        .await
        .expect(200)
        .json();
    assert!(rest.lines.is_empty() && rest.complete);
}

#[tokio::test]
async fn newest_operations_first_and_limit() {
    let d = Daemon::start();
    let c = d.client();
    let first = post_download(&c).await;
    // The list page is cached between writes: it must follow every change.
    let listed: Vec<Operation> = c.get("/v1/operations").await.expect(200).json();
    assert_eq!(listed[0].id, first.id);
    let done = wait_final(&c, &first.id).await;
    let listed: Vec<Operation> = c.get("/v1/operations").await.expect(200).json();
    assert_eq!(
        listed[0].status, done.status,
        "the list shows the final state"
    );
    let second = post_download(&c).await;
    wait_final(&c, &second.id).await;
    let list: Vec<Operation> = c.get("/v1/operations").await.expect(200).json();
    let ids: Vec<&str> = list.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, [second.id.as_str(), first.id.as_str()]);
    let one: Vec<Operation> = c.get("/v1/operations?limit=1").await.expect(200).json();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].id, second.id);
    let by_target: Vec<Operation> = c
        .get(&format!("/v1/operations?target=template/local/{TINY}"))
        .await
        .expect(200)
        .json();
    assert_eq!(by_target.len(), 2);
}

#[tokio::test]
async fn a_held_target_is_409_naming_the_holder() {
    let d = Daemon::start();
    d.tools().faults(&["pveam download delay 3000"]);
    let c = d.client();
    let first = post_download(&c).await;
    let (code, msg) = c
        .post("/v1/templates", &download(TINY))
        .await
        .expect(409)
        .error();
    assert_eq!(code, "locked");
    assert!(msg.contains(&first.id), "{msg}");
    assert_eq!(wait_final(&c, &first.id).await.status, OpStatus::Succeeded);
    // Released: the next one is accepted.
    post_download(&c).await;
}

#[tokio::test]
async fn cancel_stops_a_running_operation_and_a_finished_one_is_422() {
    let d = Daemon::start();
    d.tools().faults(&["pveam download hang"]);
    let c = d.client();
    let op = post_download(&c).await;
    daemon::wait_for("the download to run", LIMIT, || async {
        let o: Operation = c.get(&format!("/v1/operations/{}", op.id)).await.json();
        (o.status == OpStatus::Running && o.cancellable && o.progress.step >= 4).then_some(())
    })
    .await;
    c.delete(&format!("/v1/operations/{}", op.id))
        .await
        .expect(200);
    let done = wait_final(&c, &op.id).await;
    assert_eq!(done.status, OpStatus::Cancelled, "{done:?}");

    let (code, msg) = c
        .delete(&format!("/v1/operations/{}", op.id))
        .await
        .expect(422)
        .error();
    assert_eq!(code, "invalid_state");
    assert!(msg.contains(&op.id) || msg.contains("cancelled"), "{msg}");
}

#[tokio::test]
async fn wait_returns_the_current_state_at_the_timeout() {
    let d = Daemon::start();
    d.tools().faults(&["pveam download delay 4000"]);
    let c = d.client();
    let op = post_download(&c).await;
    let start = std::time::Instant::now();
    let now: Operation = c
        .get(&format!("/v1/operations/{}/wait?timeout=1", op.id))
        .await
        .expect(200)
        .json();
    assert!(!now.status.is_final(), "{now:?}");
    assert!(start.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn requests_without_peer_credentials_are_403() {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().expect("tmp");
    let mut cfg = oneld::config::Config {
        state_dir: dir.path().join("state"),
        ..oneld::config::Config::default()
    };
    cfg.pve.bin_dir = Some(dir.path().join("none"));
    cfg.pve.node = Some("pve".into());
    let (state, _ops) = daemon::build_state(cfg).await.expect("state");
    let app = oneld::server::router(state);
    for (method, path) in [("GET", "/"), ("GET", "/v1/nope"), ("POST", "/v1/templates")] {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 403, "{method} {path}");
    }
}

#[tokio::test]
async fn a_live_socket_is_never_taken_over_and_a_stale_one_is() {
    let mut first = Daemon::with(Options {
        sandbox: false,
        ..Options::default()
    })
    .expect("first daemon");
    let socket = first.socket.clone();
    let e = Daemon::with(Options {
        sandbox: false,
        socket: Some(socket.clone()),
        ..Options::default()
    })
    .err()
    .expect("second daemon refused");
    assert!(
        e.contains("another 1ldd is listening") && e.contains("systemctl stop 1ld"),
        "{e}"
    );
    // The first is unharmed.
    first.client().get("/").await.expect(200);
    first.stop();
    // Its socket file is stale now; a new daemon replaces it.
    let second = Daemon::with(Options {
        sandbox: false,
        socket: Some(socket),
        ..Options::default()
    })
    .expect("daemon on a stale socket");
    second.client().get("/").await.expect(200);
}

// ---- Roles with real users (root tier) -------------------------------------

/// Set in the environment of a client child: its requests, as JSON.
const CLIENT_ENV: &str = "ONELD_API_TEST_CLIENT";

/// Not a test of its own: the body of the client child processes that
/// `roles_with_real_users` runs as other users (this test binary, filtered to
/// this function). Without the variable it does nothing.
#[test]
fn role_client() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).expect("client spec");
    let socket = std::path::PathBuf::from(spec["socket"].as_str().expect("socket"));
    if let Err(e) = std::os::unix::net::UnixStream::connect(&socket) {
        println!(
            "CLIENT-RESULT {}",
            json!({"connect_error": format!("{:?}", e.kind())})
        );
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let responses = rt.block_on(async {
        let c = Client::new(&socket);
        let mut out = Vec::new();
        for r in spec["requests"].as_array().expect("requests") {
            let method: Method = r["method"]
                .as_str()
                .expect("method")
                .parse()
                .expect("method");
            let path = r["path"].as_str().expect("path");
            let resp = match r.get("body") {
                Some(b) => {
                    c.raw(
                        method,
                        path,
                        &[("content-type", "application/json")],
                        serde_json::to_vec(b).expect("json"),
                    )
                    .await
                }
                None => c.raw(method, path, &[], Vec::new()).await,
            };
            out.push(json!({"status": resp.status.as_u16(), "body": resp.text()}));
        }
        out
    });
    println!("CLIENT-RESULT {}", json!({ "responses": responses }));
}

/// Test users and groups; removed on drop.
struct TestUsers;

const GROUP: &str = "1ldt-api";
const ADMIN_GROUP: &str = "1ldt-api-admin";
const USERS: [&str; 3] = ["1ldt-admin", "1ldt-viewer", "1ldt-none"];

fn run(argv: &[&str]) -> bool {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn must(argv: &[&str]) {
    assert!(run(argv), "{argv:?} failed");
}

impl TestUsers {
    fn create() -> Self {
        TestUsers::remove();
        let users = TestUsers;
        must(&["groupadd", "--system", GROUP]);
        must(&["groupadd", "--system", ADMIN_GROUP]);
        for u in USERS {
            must(&[
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                u,
            ]);
        }
        must(&["usermod", "-aG", GROUP, "1ldt-viewer"]);
        must(&[
            "usermod",
            "-aG",
            &format!("{GROUP},{ADMIN_GROUP}"),
            "1ldt-admin",
        ]);
        users
    }

    fn remove() {
        for u in USERS {
            run(&["userdel", u]);
            run(&["groupdel", u]);
        }
        run(&["groupdel", GROUP]);
        run(&["groupdel", ADMIN_GROUP]);
    }

    fn ids(name: &str) -> (u32, u32) {
        let u = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("user {name}"));
        (u.uid.as_raw(), u.gid.as_raw())
    }

    fn gid(group: &str) -> u32 {
        nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("group {group}"))
            .gid
            .as_raw()
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        TestUsers::remove();
    }
}

/// Runs this test binary's `role_client` as `uid`/`gid` (no supplementary
/// groups) against `socket`; returns its result object.
fn client_as(uid: u32, gid: u32, socket: &std::path::Path, requests: Value) -> Value {
    use std::os::unix::process::CommandExt;
    let spec = json!({"socket": socket, "requests": requests});
    let out = std::process::Command::new(std::env::current_exe().expect("test exe"))
        .args(["role_client", "--exact", "--nocapture", "--test-threads=1"])
        .env(CLIENT_ENV, spec.to_string())
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run client child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("CLIENT-RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| {
            panic!(
                "client child printed no result: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("client result")
}

fn statuses(result: &Value) -> Vec<u64> {
    result["responses"]
        .as_array()
        .unwrap_or_else(|| panic!("no responses: {result}"))
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_with_real_users() {
    if std::env::var("PVE_SANDBOX_E2E").as_deref() != Ok("1") {
        eprintln!("roles_with_real_users: root tier, runs with PVE_SANDBOX_E2E=1 (make test)");
        return;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "PVE_SANDBOX_E2E=1 but not root: the roles test creates users (run `make test` as root)"
    );
    let _users = TestUsers::create();
    let d = Daemon::with(Options {
        config: Box::new(|c| {
            c.api.group = GROUP.into();
            c.api.admin_group = ADMIN_GROUP.into();
        }),
        ..Options::default()
    })
    .expect("daemon");
    let socket = d.socket.clone();
    let api_gid = TestUsers::gid(GROUP);
    let meta = std::fs::metadata(&socket).expect("socket");
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), api_gid);
    }

    // Root (admin) makes an operation whose log the viewer will ask for,
    // and watches the audit trail.
    let c = d.client();
    let mut audit = c.events("/v1/events?type=lifecycle").await;
    let op = post_download(&c).await;
    wait_final(&c, &op.id).await;
    let log_path = format!("/v1/operations/{}/log", op.id);

    let socket2 = socket.clone();
    let blocking = move |uid, gid, reqs| {
        let s = socket2.clone();
        tokio::task::spawn_blocking(move || client_as(uid, gid, &s, reqs))
    };
    let (none_uid, none_gid) = TestUsers::ids("1ldt-none");
    let (viewer_uid, _) = TestUsers::ids("1ldt-viewer");
    let (admin_uid, _) = TestUsers::ids("1ldt-admin");

    // A non-member cannot even connect: the socket is 0660 root:1ldt-api.
    let r = blocking(none_uid, none_gid, json!([{"method": "GET", "path": "/"}]))
        .await
        .expect("child");
    assert_eq!(r["connect_error"], "PermissionDenied", "{r}");

    // With the socket loosened, the peer check still refuses everything.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    }
    let r = blocking(
        none_uid,
        none_gid,
        json!([
            {"method": "GET", "path": "/"},
            {"method": "GET", "path": "/v1/operations"},
            {"method": "POST", "path": "/v1/templates", "body": download(TINY)},
        ]),
    )
    .await
    .expect("child");
    assert_eq!(statuses(&r), [403, 403, 403], "{r}");
    let body = r["responses"][0]["body"].as_str().unwrap_or_default();
    assert!(body.contains("1ldt-none") && body.contains(GROUP), "{body}");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660)).expect("chmod");
    }

    // A viewer (member of the group; connects with it as its gid) reads,
    // but neither changes anything nor reads logs.
    let r = blocking(
        viewer_uid,
        api_gid,
        json!([
            {"method": "GET", "path": "/"},
            {"method": "GET", "path": "/v1/operations"},
            {"method": "GET", "path": format!("/v1/operations/{}", op.id)},
            {"method": "GET", "path": "/v1/host"},
            {"method": "POST", "path": "/v1/templates", "body": download(TINY)},
            {"method": "GET", "path": log_path},
            {"method": "DELETE", "path": format!("/v1/operations/{}", op.id)},
            {"method": "GET", "path": "/v1/deployments/any/logs"},
        ]),
    )
    .await
    .expect("child");
    assert_eq!(
        statuses(&r),
        [200, 200, 200, 200, 403, 403, 403, 403],
        "{r}"
    );

    // An admin (member of the admin group) changes things and reads logs.
    let r = blocking(
        admin_uid,
        api_gid,
        json!([
            {"method": "POST", "path": "/v1/templates", "body": download(TINY)},
            {"method": "GET", "path": log_path},
        ]),
    )
    .await
    .expect("child");
    assert_eq!(statuses(&r), [202, 200], "{r}");
    let admin_op: Operation =
        serde_json::from_str(r["responses"][0]["body"].as_str().unwrap_or_default())
            .expect("operation");
    assert_eq!(admin_op.requestor.uid, admin_uid);
    assert_eq!(admin_op.requestor.user, "1ldt-admin");

    // The audit trail names every mutating request, refused ones included.
    let want = [
        (none_uid, "1ldt-none", 403),
        (viewer_uid, "1ldt-viewer", 403),
        (admin_uid, "1ldt-admin", 202),
    ];
    let events = audit
        .until(LIMIT, |e| e.payload["requestor"]["uid"] == admin_uid)
        .await;
    for (uid, user, status) in want {
        assert!(
            events.iter().any(|e| e.payload["requestor"]["uid"] == uid
                && e.payload["requestor"]["user"] == user
                && e.payload["requestor"]["pid"]
                    .as_u64()
                    .is_some_and(|p| p > 0)
                && e.payload["method"] == "POST"
                && e.payload["status"] == status),
            "no audit event for {user}: {events:#?}"
        );
    }
}

// ---- Crash-interrupted operations (root tier: the real 1ldd) ---------------

/// Where the sandbox's `local` storage keeps templates.
fn template_file(tools: &daemon::SandboxTools) -> std::path::PathBuf {
    tools.root.join("var/lib/vz/template/cache").join(TINY)
}

/// `pveam list local` as the sandbox prints it.
fn pveam_list(tools: &daemon::SandboxTools) -> String {
    let out = std::process::Command::new("timeout")
        .arg("10")
        .arg(tools.bin_dir.join("pveam"))
        .args(["list", "local"])
        .output()
        .expect("pveam list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The issue's "kill the daemon process mid-operation, restart, see
/// `interrupted` + compensation", with the real binary and SIGKILL: the
/// download gets past recording `present_before: false` and the template
/// volume appears; the daemon dies in the verify step (its `pveam list`
/// hangs); the restarted daemon marks the operation `interrupted`, removes
/// the volume the operation created, and the target is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_interrupts_and_compensates_its_operations_at_restart() {
    if !daemon::root_tier(
        "a_killed_daemon_interrupts_and_compensates_its_operations_at_restart",
        "1ldd refuses to start without root capabilities",
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("1ld-api-crash")
        .tempdir()
        .expect("temp dir");
    let tools = daemon::SandboxTools::new(dir.path());
    // Step 2's `pveam list` (template absent) is quick; step 5's hangs.
    tools.faults(&["pveam list delay 1 once", "pveam list hang"]);
    let mut first = daemon::ChildDaemon::start(dir.path(), &tools, &[]).await;
    let daemon_pid = first.pid;
    let c = first.client();
    let op = post_download(&c).await;
    let file = template_file(&tools);
    daemon::wait_for("the download to reach its verify step", LIMIT, || async {
        let o: Operation = c
            .get(&format!("/v1/operations/{}", op.id))
            .await
            .expect(200)
            .json();
        assert!(!o.status.is_final(), "ended before the kill: {o:?}");
        // Step 5 is announced just before its `pveam list` is spawned: wait
        // for the process too, or the kill can land between the two.
        (o.progress.step == 5 && file.is_file() && !daemon::descendants(daemon_pid).is_empty())
            .then_some(())
    })
    .await;

    // The crash: SIGKILL, and (as systemd's KillMode=mixed does before a
    // restart) the commands it left running with it.
    let orphans = first.crash();
    assert!(
        !orphans.is_empty(),
        "the daemon had no command running (its `pveam list` hangs)"
    );
    assert!(
        file.is_file(),
        "the kill alone removed the template: nothing left to compensate"
    );
    tools.faults(&[]);
    assert!(pveam_list(&tools).contains(TINY));

    let second = daemon::ChildDaemon::start(dir.path(), &tools, &[]).await;
    let c = second.client();
    let got: Operation = c
        .get(&format!("/v1/operations/{}", op.id))
        .await
        .expect(200)
        .json();
    assert_eq!(got.status, OpStatus::Interrupted, "{got:?}");
    let err = got.error.as_ref().expect("an interrupted op has an error");
    assert_eq!(err.code, "interrupted");
    assert!(err.message.contains("running"), "{}", err.message);
    assert!(
        got.started_at.is_some() && got.finished_at.is_some(),
        "{got:?}"
    );
    assert!(got.started_at <= got.finished_at, "{got:?}");
    assert!(!got.cancellable, "{got:?}");
    // Reconciled before serving: exactly this operation is interrupted.
    let interrupted: Vec<Operation> = c
        .get("/v1/operations?status=interrupted")
        .await
        .expect(200)
        .json();
    let ids: Vec<&str> = interrupted.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, [op.id.as_str()]);
    let running: Vec<Operation> = c
        .get("/v1/operations?status=queued,running")
        .await
        .expect(200)
        .json();
    assert!(running.is_empty(), "{running:?}");

    // Its log shows the compensation, and the volume it created is gone.
    let log: OpLogChunk = c
        .get(&format!("/v1/operations/{}/log", op.id))
        .await
        .expect(200)
        .json();
    assert!(log.complete, "{log:?}");
    let text = log.lines.join("\n");
    assert!(
        text.contains("not resumed") && text.contains(&format!("removed local:vztmpl/{TINY}")),
        "{text}"
    );
    assert!(!file.exists(), "compensation left {}", file.display());
    assert!(!pveam_list(&tools).contains(TINY), "{}", pveam_list(&tools));
    let logged = second.log_text();
    assert!(
        logged.contains(&op.id) && logged.contains("interrupted"),
        "the restarted daemon did not log the reconciliation:\n{logged}"
    );

    // No stale lock: the same target downloads again.
    let again = post_download(&c).await;
    assert_eq!(wait_final(&c, &again.id).await.status, OpStatus::Succeeded);
    assert!(file.is_file());

    // A clean stop; the store is intact and its audit trail has the restart
    // that interrupted the operation.
    let mut second = second;
    let status = second.terminate();
    assert!(
        status.success(),
        "1ldd exited {status}:\n{}",
        second.log_text()
    );
    let store = oneld::store::Store::open(&oneld::paths::Paths::from_config(&second.config))
        .expect("the store opens (integrity check) after the crash and restart");
    let events = store.events_after(0, 1000).expect("stored events");
    let started: Vec<&Value> = events
        .iter()
        .filter(|e| e.kind == "lifecycle" && e.payload["action"] == "daemon_started")
        .map(|e| &e.payload)
        .collect();
    assert_eq!(started.len(), 2, "{events:#?}");
    assert_eq!(started[0]["interrupted_operations"], 0);
    assert_eq!(started[1]["interrupted_operations"], 1);
    assert_eq!(started[1]["interrupted"], json!([op.id]));
}

// ---- The canary secret -----------------------------------------------------

/// A secret value that must never leave the secrets file.
const CANARY: &str = "CANARY-5f0e9c1d-not-for-logs";

/// Stores [`CANARY`] in the state dir's secrets, as a deploy would, before
/// the daemon starts (which loads it into its redactor).
fn put_canary(state_dir: &std::path::Path) {
    let cfg = oneld::config::Config {
        state_dir: state_dir.to_path_buf(),
        ..oneld::config::Config::default()
    };
    oneld::secrets::Secrets::open(&oneld::paths::Paths::from_config(&cfg))
        .expect("secrets")
        .put("canary-deploy", "token", CANARY)
        .expect("store the canary");
}

/// Watches every process's argv (and the environment of `root`'s
/// descendants) while the run goes on: the daemon never puts a secret on a
/// command line or in a child's environment.
struct ArgvWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl ArgvWatch {
    fn start(root: i32) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut tools_seen, mut hits) = (0, Vec::new());
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for pid in daemon::all_pids() {
                    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if contains(&argv, CANARY) {
                        hits.push(format!("argv of {pid}: {}", String::from_utf8_lossy(&argv)));
                    }
                }
                for pid in daemon::descendants(root) {
                    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    if contains(&argv, "pve-sandbox") {
                        tools_seen += 1;
                    }
                    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    if contains(&env, CANARY) {
                        hits.push(format!("environment of {pid}"));
                    }
                }
                // A sampling period, not a synchronization.
                std::thread::sleep(Duration::from_millis(5));
            }
            (tools_seen, hits)
        });
        Self { stop, thread }
    }

    /// How many tool processes it saw, and where it found the canary.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().expect("argv watch")
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Drives the canary through every way out the daemon has: a tool's error
/// output failing an operation (its error, log, events, list, wait), tool
/// failures behind `GET /v1/host` (error bodies, the 500's logged detail),
/// a client sending it in a URL (error body, audit event), plus a clean
/// operation. Returns every response body and every streamed event.
async fn canary_run(c: &Client, tools: &daemon::SandboxTools) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keep = |name: String, r: daemon::Resp| -> daemon::Resp {
        out.push((name, r.body.to_vec()));
        r
    };
    let mut events = c.events("/v1/events").await;
    keep("GET /".into(), c.get("/").await.expect(200));
    keep("GET /v1/host".into(), c.get("/v1/host").await.expect(200));

    // A download failing with the canary in the tool's stderr.
    tools.faults(&[&format!(
        "pveam download fail 0 checksum mismatch: got '{CANARY}' != expected 'x'"
    )]);
    let failed = post_download(c).await;
    let r = c
        .get(&format!("/v1/operations/{}/wait?timeout=15", failed.id))
        .await
        .expect(200);
    let op: Operation = keep("wait".into(), r).json();
    assert_eq!(op.status, OpStatus::Failed, "{op:?}");
    // (Classified internal: the message points at the daemon's log, where
    // the detail with the tool's text goes.)
    keep(
        "op log".into(),
        c.get(&format!("/v1/operations/{}/log", failed.id))
            .await
            .expect(200),
    );
    keep(
        "op".into(),
        c.get(&format!("/v1/operations/{}", failed.id))
            .await
            .expect(200),
    );
    keep("op list".into(), c.get("/v1/operations").await.expect(200));
    keep(
        "failed list".into(),
        c.get("/v1/operations?status=failed").await.expect(200),
    );
    keep(
        "cancel a failed op".into(),
        c.delete(&format!("/v1/operations/{}", failed.id))
            .await
            .expect(422),
    );

    // Host facts whose tools fail with the canary in their output.
    for rule in [
        format!("pvesm status fail 2 storage 'local' - token {CANARY} rejected"),
        format!("pveam available fail 255 cannot read index: {CANARY}"),
        format!("pveam list fail 255 storage 'local' - {CANARY}"),
    ] {
        tools.faults(&[&rule]);
        // An error, or facts with a warning quoting the tool (best effort).
        let r = keep(format!("host with `{rule}`"), c.get("/v1/host").await);
        assert!(
            r.text().contains("***") || r.status == 500,
            "{rule}: {}",
            r.text()
        );
    }
    tools.faults(&[]);

    // The client itself sends it (a URL): error bodies and the audit trail.
    for path in [
        format!("/v1/operations/{CANARY}"),
        format!("/v1/operations/{CANARY}/log?offset=0"),
        format!("/v1/nope/{CANARY}"),
    ] {
        let r = c.get(&path).await;
        assert!(r.status.is_client_error(), "{path}: {}", r.text());
        keep(format!("GET {path}"), r);
    }
    let r = c.delete(&format!("/v1/operations/{CANARY}")).await;
    assert!(r.status.is_client_error(), "{}", r.text());
    keep("DELETE with the canary".into(), r);

    // A clean operation, slow enough for the argv watch to see its tools.
    tools.faults(&["pveam download delay 500"]);
    let ok = post_download(c).await;
    assert_eq!(wait_final(c, &ok.id).await.status, OpStatus::Succeeded);
    tools.faults(&[]);
    keep(
        "clean op log".into(),
        c.get(&format!("/v1/operations/{}/log", ok.id))
            .await
            .expect(200),
    );
    keep("host".into(), c.get("/v1/host").await.expect(200));

    // Every event up to the clean operation's end.
    let seen = events
        .until(LIMIT, |e| {
            e.kind == EventType::Operation
                && e.payload["id"] == ok.id.as_str()
                && e.payload["status"] == "succeeded"
        })
        .await;
    assert!(
        seen.iter().any(|e| e.kind == EventType::Lifecycle
            && e.payload["method"] == "DELETE"
            && e.payload["path"]
                .as_str()
                .is_some_and(|p| p.contains("***"))),
        "no redacted audit event of the DELETE: {seen:#?}"
    );
    for e in seen {
        out.push((
            format!("event {}", e.seq),
            serde_json::to_vec(&e).expect("event json"),
        ));
    }
    out
}

/// Asserts the canary is in none of `outputs`, and that redaction happened.
fn assert_no_canary(outputs: &[(String, Vec<u8>)]) {
    let leaks: Vec<String> = outputs
        .iter()
        .filter(|(_, b)| contains(b, CANARY))
        .map(|(n, b)| format!("{n}: {}", String::from_utf8_lossy(b)))
        .collect();
    assert!(leaks.is_empty(), "the canary leaked:\n{}", leaks.join("\n"));
    assert!(
        outputs.iter().any(|(_, b)| contains(b, "***")),
        "nothing was redacted: the run never carried the canary"
    );
}

/// Every file under `state_dir` but the secrets, by path (the store, its
/// WAL, the lock).
fn state_files(state_dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![state_dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("state dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                if p != state_dir.join("secrets") {
                    dirs.push(p);
                }
            } else {
                out.push((
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                ));
            }
        }
    }
    out
}

/// Asserts the canary sits in its secrets file and in no other state file.
fn assert_state_clean(state_dir: &std::path::Path) {
    let secret = state_dir.join("secrets/canary-deploy/token");
    assert!(
        contains(&std::fs::read(&secret).expect("secret file"), CANARY),
        "the canary is not in {}",
        secret.display()
    );
    let files = state_files(state_dir);
    assert!(
        files.iter().any(|(n, _)| n.ends_with("state.db")),
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &files {
        assert!(!contains(bytes, CANARY), "the canary is stored in {name}");
    }
}

/// Fast tier: the in-process daemon; every HTTP answer, every event, the
/// store files and the tools' argv (its own log goes to this process's
/// global subscriber and is checked in the root tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_secret_leaves_no_trace_in_process() {
    let mut d = Daemon::with(Options {
        prepare: Box::new(|cfg| put_canary(&cfg.state_dir)),
        ..Options::default()
    })
    .expect("daemon");
    let watch = ArgvWatch::start(std::process::id() as i32);
    let outputs = canary_run(&d.client(), d.tools()).await;
    let (tools_seen, hits) = watch.finish();
    assert_no_canary(&outputs);
    assert!(hits.is_empty(), "{hits:#?}");
    assert!(tools_seen > 0, "the argv watch never saw a tool run");
    let state_dir = d.config.state_dir.clone();
    d.stop();
    assert_state_clean(&state_dir);
}

/// Root tier: a full run of the real `1ldd` (debug logging), as the issue
/// demands: HTTP answers, events, store files, its whole log (stderr) and
/// the argv and environment of every process it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_secret_leaves_no_trace_in_a_full_run() {
    if !daemon::root_tier(
        "the_canary_secret_leaves_no_trace_in_a_full_run",
        "1ldd refuses to start without root capabilities",
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("1ld-api-canary")
        .tempdir()
        .expect("temp dir");
    let tools = daemon::SandboxTools::new(dir.path());
    put_canary(&dir.path().join("state"));
    let mut d = daemon::ChildDaemon::start(dir.path(), &tools, &[("RUST_LOG", "debug")]).await;
    // No core file can carry the secret, whoever started 1ldd (here: not
    // systemd, so not its LimitCORE=0): core limit 0/0 (the process is also
    // non-dumpable; see daemon::harden's test).
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", d.pid)).expect("limits");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("core limit line");
    assert_eq!(
        core.split_whitespace().collect::<Vec<_>>()[4..6],
        ["0", "0"],
        "{core}"
    );
    let watch = ArgvWatch::start(d.pid);
    let mut outputs = canary_run(&d.client(), &tools).await;
    let (tools_seen, hits) = watch.finish();
    let status = d.terminate();
    assert!(status.success(), "1ldd exited {status}:\n{}", d.log_text());
    let log = std::fs::read(&d.log).expect("daemon log");
    assert!(
        contains(&log, "***"),
        "the daemon's log shows no redaction:\n{}",
        String::from_utf8_lossy(&log)
    );
    assert!(
        contains(&log, "1ldd ready"),
        "{}",
        String::from_utf8_lossy(&log)
    );
    outputs.push(("the daemon's log (stderr)".into(), log));
    assert_no_canary(&outputs);
    assert!(hits.is_empty(), "{hits:#?}");
    assert!(tools_seen > 0, "the argv watch never saw a tool run");
    assert_state_clean(&d.config.state_dir);
}

/// What `1ldd` sends to its `NOTIFY_SOCKET` (a datagram socket we bind).
struct NotifySocket(std::os::unix::net::UnixDatagram);

impl NotifySocket {
    /// Reads datagrams until one has every line of `lines` (each a full
    /// `KEY=value` line or, ending in `=`, a key prefix), within `LIMIT`;
    /// panics with what arrived otherwise. Returns the matching datagram.
    fn until(&self, lines: &[&str]) -> String {
        let deadline = std::time::Instant::now() + LIMIT;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no datagram with {lines:?} within {LIMIT:?}; got {seen:?}"
            );
            self.0.set_read_timeout(Some(left)).expect("read timeout");
            let Ok(n) = self.0.recv(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let has = |want: &str| {
                msg.lines().any(|l| {
                    if want.ends_with('=') {
                        l.starts_with(want)
                    } else {
                        l == want
                    }
                })
            };
            if lines.iter().all(|w| has(w)) {
                return msg;
            }
            seen.push(msg);
        }
    }
}

/// `1ldd` under a systemd-like supervisor: `READY=1` with a status line
/// once it serves; `WATCHDOG=1` every `WATCHDOG_USEC/2` for as long as it
/// runs (its loops beat often enough even for a short interval); SIGHUP
/// with an invalid file: `RELOADING=1` then `READY=1`, the bad key logged,
/// the old configuration kept, still serving; SIGHUP with a valid changed
/// file: reloaded; SIGTERM: `STOPPING=1` and exit status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_notifies_systemd_feeds_its_watchdog_and_reloads_on_sighup() {
    use nix::sys::signal::{kill, Signal};
    if !daemon::root_tier(
        "the_daemon_notifies_systemd_feeds_its_watchdog_and_reloads_on_sighup",
        "1ldd refuses to start without root capabilities",
    ) {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("1ld-api-notify")
        .tempdir()
        .expect("temp dir");
    let tools = daemon::SandboxTools::new(dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notify = NotifySocket(
        std::os::unix::net::UnixDatagram::bind(&notify_path).expect("bind the notify socket"),
    );
    let notify_env = notify_path.display().to_string();
    let d = daemon::ChildDaemon::start(
        dir.path(),
        &tools,
        &[
            ("NOTIFY_SOCKET", &notify_env),
            ("WATCHDOG_USEC", "400000"),
            ("WATCHDOG_PID", "$$"),
        ],
    )
    .await;
    let pid = nix::unistd::Pid::from_raw(d.pid);
    let ready = notify.until(&["READY=1", "STATUS="]);
    assert!(ready.contains("listening on"), "{ready:?}");
    for _ in 0..2 {
        notify.until(&["WATCHDOG=1"]);
    }
    let config_path = dir.path().join("1ld.toml");
    let good = std::fs::read_to_string(&config_path).expect("read 1ld.toml");
    assert!(good.contains("[ops]\n"), "{good}");
    let log_has = |what: &'static str, n: usize| {
        let log = d.log.clone();
        daemon::wait_for(what, LIMIT, move || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            async move { (text.matches(what).count() >= n).then_some(()) }
        })
    };

    // An invalid file (unknown key): logged, the old configuration kept.
    std::fs::write(
        &config_path,
        good.replace("[ops]\n", "[ops]\nno_such_key = 1\n"),
    )
    .expect("write the invalid config");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    notify.until(&["RELOADING=1", "MONOTONIC_USEC="]);
    notify.until(&["READY=1"]);
    log_has("no_such_key", 1).await;
    log_has("configuration not reloaded, keeping the old one", 1).await;
    d.client().get("/").await.expect(200);

    // A valid changed file: reloaded.
    std::fs::write(
        &config_path,
        good.replace("[ops]\n", "[ops]\nretention_days = 7\n"),
    )
    .expect("write the changed config");
    kill(pid, Signal::SIGHUP).expect("SIGHUP");
    notify.until(&["RELOADING=1", "MONOTONIC_USEC="]);
    notify.until(&["READY=1"]);
    log_has("configuration reloaded", 1).await;
    d.client().get("/").await.expect(200);

    // The watchdog is still fed (the loops keep beating within 400 ms).
    for _ in 0..3 {
        notify.until(&["WATCHDOG=1"]);
    }
    let log = d.log_text();
    assert!(!log.contains("stalled"), "{log}");

    let mut d = d;
    let status = d.terminate();
    assert!(
        status.success(),
        "1ldd exited with {status}:\n{}",
        d.log_text()
    );
    notify.until(&["STOPPING=1"]);
}
