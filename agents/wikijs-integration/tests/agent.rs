//! wikijs-integration end to end on loopback: the real binary against a fake
//! Wiki.js that replays the recorded Wiki.js 2.5.314 transcript exactly
//! (`tests/fixtures/wikijs-01-auth.json`, copied from the shared fixtures).
//!
//! Proves: a valid key is healthy and a tampered key (silently Guest in
//! Wiki.js) is unhealthy; `--once` creates the SQLite database and records the
//! run; `--self-check` exit codes and that it creates nothing; a corrupt
//! database is an unhealthy check and a 503; `/wiki-agent/status`; SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

use std::path::Path;
use std::time::Duration;

use agent_runtime::testing::{
    closed_port_url, get_json, load_transcript, run_to_end, terminate, AgentEnv, AgentProcess,
    ReplayServer,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_wikijs-integration");

fn transcript() -> Vec<agent_runtime::testing::Exchange> {
    load_transcript(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wikijs-01-auth.json"),
    )
}

fn env(url: &str, key: &str) -> AgentEnv {
    AgentEnv::new(
        tempfile::tempdir().unwrap(),
        &format!("wikijs_api_key = \"{key}\"\n"),
        0o400,
        "",
        "wikijs",
        url,
    )
}

fn cfg(e: &AgentEnv) -> String {
    e.config_arg()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_then_self_check() {
    let fake = ReplayServer::start(transcript()).await;
    let e = env(&fake.url(), "<API_KEY>");

    // Before the first start there is no database: self-check says so
    // (degraded, exit 1) and does not create it.
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 1, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["checks"]["wikijs_api"]["status"], "healthy", "{out}");
    assert_eq!(health["checks"]["state_db"]["status"], "degraded", "{out}");
    assert!(!e.state.join("wiki-agent.db").exists());

    let (code, out, err) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["result"], "ok");
    assert_eq!(rec["counters"]["wiki_pages"], 2);
    assert!(e.state.join("wiki-agent.db").exists());

    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 0, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["status"], "healthy");
    assert!(health["checks"]["wikijs_api"]["message"]
        .as_str()
        .unwrap()
        .contains("2.5.314"));

    // A tampered key is silently Guest in Wiki.js: detected, unhealthy.
    let bad = env(&fake.url(), "<TAMPERED_API_KEY>");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&bad), "--once"]).await;
    assert_eq!(code, 2, "{out}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert!(rec["error"].as_str().unwrap().contains("Guest"), "{rec}");
    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&bad), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["checks"]["wikijs_api"]["status"], "unhealthy");
    assert!(!out.contains("TAMPERED"), "{out}");

    assert_eq!(
        fake.unmatched(),
        Vec::<String>::new(),
        "requests not in the transcript"
    );
}

async fn serve(e: &AgentEnv) -> (AgentProcess, u16, Value) {
    e.serve(BIN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_status_codes_and_status_endpoint() {
    let fake = ReplayServer::start(transcript()).await;

    let e = env(&fake.url(), "<API_KEY>");
    let (mut agent, port, health) = serve(&e).await;
    assert_eq!(health["http_status"], 200, "{health}");
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["checks"]["state_db"]["status"], "healthy");
    let (code, status) = get_json(port, "/wiki-agent/status").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(status["service"], "wikijs-integration");
    assert_eq!(status["agent"]["state"]["runs_total"], 1, "{status}");
    assert_eq!(status["agent"]["state"]["last_run"]["result"], "ok");
    assert_eq!(
        status["agent"]["wikijs"]["last_check"]["wikijs_version"],
        "2.5.314"
    );
    assert!(!status.to_string().contains("API_KEY"));
    let (code, _) = get_json(port, "/status").await.unwrap();
    assert_eq!(code, 404);

    let st = terminate(&mut agent, Duration::from_secs(10))
        .await
        .expect("no exit within 10 s of SIGTERM");
    assert_eq!(st.code(), Some(0));

    // Wiki.js down: degraded, 200.
    let e = env(&closed_port_url(), "<API_KEY>");
    let (_a, _, health) = serve(&e).await;
    assert_eq!(health["http_status"], 200, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");

    // Guest (the recorded tampered key): unhealthy, 503.
    let e = env(&fake.url(), "<TAMPERED_API_KEY>");
    let (_b, _, health) = serve(&e).await;
    assert_eq!(health["http_status"], 503, "{health}");
    assert_eq!(health["checks"]["wikijs_api"]["status"], "unhealthy");
    assert_eq!(fake.unmatched(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_database_is_unhealthy() {
    let fake = ReplayServer::start(transcript()).await;
    let e = env(&fake.url(), "<API_KEY>");
    std::fs::write(e.state.join("wiki-agent.db"), vec![0x5au8; 16384]).unwrap();

    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--self-check"]).await;
    assert_eq!(code, 2, "{out}");
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["checks"]["state_db"]["status"], "unhealthy", "{out}");

    let (code, out, _) = run_to_end(BIN, &["--config", &cfg(&e), "--once"]).await;
    assert_eq!(code, 2, "{out}");

    let (_a, _, health) = serve(&e).await;
    assert_eq!(health["http_status"], 503, "{health}");
    let msg = health["checks"]["state_db"]["message"].as_str().unwrap();
    assert!(msg.contains("not a database"), "{msg}");
    // The garbage is left alone for the operator to inspect.
    assert_eq!(
        std::fs::read(e.state.join("wiki-agent.db")).unwrap(),
        vec![0x5au8; 16384]
    );
}
