//! netbox-agent end to end on loopback: the real binary against a fake NetBox
//! that replays the recorded NetBox 4.6.8 `/api/status/` transcript exactly
//! (`tests/fixtures/netbox-01-auth.json`, copied from the shared fixtures).
//!
//! Proves: `--self-check` and `--once` exit codes for a valid token, refused
//! tokens and a closed port; `/health` 200/200/503 from real checks; config
//! and secrets errors naming the key or the mode; `/status`; no secret in any
//! output; graceful exit 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::Path;
use std::time::Duration;

use agent_runtime::testing::{
    closed_port_url, get_json, load_transcript, run_to_end, terminate, write_file, AgentEnv,
    AgentProcess, ReplayServer,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netbox-agent");

fn transcript() -> Vec<agent_runtime::testing::Exchange> {
    load_transcript(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/netbox-01-auth.json"),
    )
}

/// A config + secrets pair in a temp dir; `token` goes into the secrets file.
fn env(url: &str, token: &str, extra_config: &str) -> AgentEnv {
    AgentEnv::new(
        tempfile::tempdir().unwrap(),
        &format!("netbox_token = \"{token}\"\n"),
        0o600,
        extra_config,
        "netbox",
        url,
    )
}

fn cfg(e: &AgentEnv) -> String {
    e.config_arg()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_check_exit_codes_follow_health() {
    let fake = ReplayServer::start(transcript()).await;

    // Legacy token with the Token keyword: recorded 200 → healthy.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let (code, out, err) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["status"], "healthy");
    assert_eq!(health["service"], "netbox-agent");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert!(health["uptime_s"].is_u64());
    let api = &health["checks"]["netbox_api"];
    assert_eq!(api["status"], "healthy");
    assert!(api["message"].as_str().unwrap().contains("4.6.8"), "{api}");
    assert!(api["last_ok"].is_string());
    for check in ["config", "secrets", "state_dir"] {
        assert_eq!(
            health["checks"][check]["status"], "healthy",
            "{check}: {out}"
        );
    }
    // Self-check has no work loop, so it does not pretend to report one.
    assert!(health["checks"].get("work_loop").is_none());

    // v2 token with a wrong secret: sent as Bearer, recorded 403 → unhealthy.
    let e = env(&fake.url(), "nbt_<KEY>.<WRONG_SECRET>", "");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["status"], "unhealthy");
    let msg = health["checks"]["netbox_api"]["message"].as_str().unwrap();
    assert!(msg.contains("Invalid v2 token"), "{msg}");
    assert!(!out.contains("WRONG_SECRET"), "secret leaked: {out}");

    // Unknown legacy token: recorded 403 "Invalid v1 token".
    let e = env(&fake.url(), "<WRONG_LEGACY_TOKEN>", "");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("Invalid v1 token"), "{out}");

    // Nothing listening: degraded, exit 1.
    let e = env(&closed_port_url(), "<LEGACY_TOKEN>", "");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 1, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(health["checks"]["netbox_api"]["message"]
        .as_str()
        .unwrap()
        .contains("unreachable"));

    assert_eq!(
        fake.unmatched(),
        Vec::<String>::new(),
        "requests not in the transcript"
    );
    assert_eq!(fake.hits().len(), 3, "{:?}", fake.hits());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_and_secrets_errors_are_precise() {
    let fake = ReplayServer::start(transcript()).await;

    // Unknown key: self-check reports it under `config`, naming line and key.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "intervall = 5");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    let msg = health["checks"]["config"]["message"].as_str().unwrap();
    assert!(msg.contains("unknown field `intervall`"), "{msg}");
    assert!(msg.contains(&format!("{}:6", e.config.display())), "{msg}");

    // Wrong type, serve mode: exit 78 (EX_CONFIG) with the key in the log.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let text = std::fs::read_to_string(&e.config)
        .unwrap()
        .replace("timeout_s = 5", "timeout_s = \"5s\"");
    std::fs::write(&e.config, text).unwrap();
    let (code, _, err) = run_to_end(BIN, &["--config", &cfg(&e)]).await;
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("key `netbox.timeout_s`"), "{err}");

    // An enabled source without its URL is refused by key.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let text = std::fs::read_to_string(&e.config).unwrap() + "[sources.truenas]\nenabled = true\n";
    std::fs::write(&e.config, text).unwrap();
    let (code, _, err) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sources.truenas.url"), "{err}");

    // The scan enabled without a network: refused by key, nothing scanned.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let text =
        std::fs::read_to_string(&e.config).unwrap() + "[sources.network_scan]\nenabled = true\n";
    std::fs::write(&e.config, text).unwrap();
    let (code, _, err) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sources.network_scan.cidrs"), "{err}");

    // Secrets readable by others: refused, mode named, value not shown.
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let secrets = e.config.with_file_name("secrets.toml");
    write_file(&secrets, "netbox_token = \"<LEGACY_TOKEN>\"\n", 0o644);
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    let msg = health["checks"]["secrets"]["message"].as_str().unwrap();
    assert!(
        msg.contains("mode 0644") && msg.contains("0600 or 0400"),
        "{msg}"
    );
    assert!(!out.contains("LEGACY_TOKEN"), "{out}");
    let (code, _, err) = run_to_end(BIN, &["--config", &cfg(&e)]).await;
    assert_eq!(code, 78, "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    assert!(
        fake.hits().is_empty(),
        "no request before the config is valid"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_exits_with_the_cycle_status() {
    let fake = ReplayServer::start(transcript()).await;
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let (code, out, err) = run_to_end(BIN, &["--config", &cfg(&e), "--once", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["result"], "ok");
    assert_eq!(rec["dry_run"], true);
    assert_eq!(rec["counters"]["sources_enabled"], 0);
    assert_eq!(rec["counters"]["netbox_writes"], 0);

    let e = env(&fake.url(), "nbt_<UNKNOWN_KEY>.<SECRET>", "");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 2, "{out}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["result"], "failed");
    assert!(rec["error"]
        .as_str()
        .unwrap()
        .contains("refused the credentials"));

    let e = env(&closed_port_url(), "<LEGACY_TOKEN>", "");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unreachable"), "{out}");
    assert_eq!(fake.unmatched(), Vec::<String>::new());
}

/// Starts the agent and waits until its first cycle has been recorded.
async fn serve(e: &AgentEnv) -> (AgentProcess, u16, Value) {
    e.serve(BIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoint_maps_real_checks_to_200_200_503() {
    let fake = ReplayServer::start(transcript()).await;

    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let (_agent, port, health) = serve(&e).await;
    assert_eq!(health["http_status"], 200, "{health}");
    assert_eq!(health["status"], "healthy", "{health}");
    // The first cycle is done: the status is no longer provisional.
    assert_eq!(health["starting"], false, "{health}");
    let names: Vec<&str> = health["checks"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        ["config", "netbox_api", "secrets", "state_dir", "work_loop"]
    );
    let (code, status) = get_json(port, "/status").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(status["service"], "netbox-agent");
    assert_eq!(status["work"]["cycles"]["ok"], 1, "{status}");
    assert_eq!(status["work"]["last_cycle"]["trigger"], "startup");
    assert_eq!(
        status["agent"]["netbox"]["last_check"]["netbox_version"],
        "4.6.8"
    );
    assert_eq!(status["agent"]["sources"]["proxmox"]["state"], "disabled");
    assert!(!status.to_string().contains("LEGACY_TOKEN"));
    let (code, body) = get_json(port, "/nope").await.unwrap();
    assert_eq!(code, 404);
    assert_eq!(body["error"]["code"], "not_found");

    // Upstream down: degraded, still 200.
    let e = env(&closed_port_url(), "<LEGACY_TOKEN>", "");
    let (_agent2, _, health) = serve(&e).await;
    assert_eq!(health["http_status"], 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["checks"]["netbox_api"]["status"], "degraded");

    // Token refused: unhealthy, 503.
    let e = env(&fake.url(), "<WRONG_LEGACY_TOKEN>", "");
    let (_agent3, _, health) = serve(&e).await;
    assert_eq!(health["http_status"], 503, "{health}");
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert_eq!(health["checks"]["netbox_api"]["status"], "unhealthy");
    assert!(!health.to_string().contains("WRONG_LEGACY_TOKEN"));

    assert_eq!(fake.unmatched(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_and_stops_listening() {
    let fake = ReplayServer::start(transcript()).await;
    let e = env(&fake.url(), "<LEGACY_TOKEN>", "");
    let (mut agent, port, _) = serve(&e).await;
    let status = terminate(&mut agent, Duration::from_secs(10))
        .await
        .expect("agent did not exit within 10 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(get_json(port, "/health").await.is_none(), "still serving");
}
