//! The real `wikijs-integration` binary serving on loopback against the
//! stateful fake Wiki.js and a local Git repository: signed webhooks from
//! every provider (GitHub, Gitea, Forgejo, GitLab) make a pushed change
//! visible; bad signatures, replays, oversized bodies and unknown events
//! are refused or ignored; `/metrics`, `/wiki-agent/status`, the manual
//! sync; a service killed in the middle of a sync converges after restart;
//! the pre-backup hook writes a consistent database copy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers

mod common;

use std::time::Duration;

use agent_runtime::http_client::{self, BaseUrl};
use agent_runtime::testing::{get_json, run_to_end, terminate, wait_for, AgentEnv, AgentProcess};
use common::{wiki, Repo, KEY};
use hmac::{Hmac, Mac};
use hyper::header::{HeaderName, CONTENT_TYPE};
use hyper::Method;
use serde_json::{json, Value};
use sha2::Sha256;

const BIN: &str = env!("CARGO_BIN_EXE_wikijs-integration");
const SECRET: &str = "hook-secret-0123";
const SYNC_TOKEN: &str = "sync-token-4567";

fn env(repo: &Repo, url: &str) -> AgentEnv {
    AgentEnv::new(
        tempfile::tempdir().unwrap(),
        &format!("wikijs_api_key = \"{KEY}\"\nwebhook_secret = \"{SECRET}\"\nsync_token = \"{SYNC_TOKEN}\"\ngit_token = \"\"\n"),
        0o600,
        &format!(
            "[source]\nrepository = \"{}\"\nbranch = \"main\"\nsubfolder = \"docs\"\n[webhook]\nmax_body = 4096\n",
            repo.path().display()
        ),
        "wikijs",
        url,
    )
}

async fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, Value) {
    let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let headers: Vec<(HeaderName, String)> = headers
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), v.clone()))
        .collect();
    let r = http_client::send(
        &base,
        Method::POST,
        path,
        &headers,
        Some(body.to_vec()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

fn hmac_hex(body: &[u8]) -> String {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// A push payload in GitHub's format (Gitea/Forgejo send the same shape).
fn push_payload(before: &str, after: &str, modified: &[&str]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": before,
        "after": after,
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": "https://git.example/team/project/compare/x...y",
        "commits": [{
            "id": after,
            "message": "docs: update",
            "timestamp": "2026-11-26T05:00:00Z",
            "added": [],
            "removed": [],
            "modified": modified,
        }],
        "head_commit": {"id": after, "message": "docs: update"},
        "repository": {
            "id": 1,
            "name": "project",
            "full_name": "team/project",
            "clone_url": "https://git.example/team/project.git",
            "ssh_url": "git@git.example:team/project.git",
            "html_url": "https://git.example/team/project",
            "default_branch": "main"
        },
        "pusher": {"name": "test", "email": "test@example.com"},
        "sender": {"login": "test"}
    }))
    .unwrap()
}

fn github(event: &str, delivery: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("user-agent", "GitHub-Hookshot/abc123".into()),
        ("x-github-event", event.into()),
        ("x-github-delivery", delivery.into()),
        ("x-github-hook-id", "42".into()),
        ("x-hub-signature-256", format!("sha256={}", hmac_hex(body))),
    ]
}

fn repo_with_docs() -> Repo {
    let r = Repo::new();
    r.write("docs/README.md", "# Home\n\nWelcome.\n");
    r.write("docs/guide.md", "# Guide\n\nVersion 1.\n");
    r.commit("docs");
    r
}

async fn page_content(model: &fake_upstreams::WikiModel, path: &str, needle: &str) -> bool {
    model
        .pages_at(path)
        .iter()
        .any(|p| p.content.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_from_every_provider() {
    let (model, fake) = wiki().await;
    let repo = repo_with_docs();
    let e = env(&repo, &fake.url());
    let (mut agent, port, health) = e.serve(BIN).await;
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(model.pages().len(), 2);

    // GitHub: a push makes the change visible.
    let before = repo.git(&["rev-parse", "HEAD"]);
    repo.write("docs/guide.md", "# Guide\n\nVersion 2 (github).\n");
    let after = repo.commit("v2");
    let body = push_payload(&before, &after, &["docs/guide.md"]);
    let (code, resp) = post(port, "/webhook", &github("push", "gh-1", &body), &body).await;
    assert_eq!(code, 202, "{resp}");
    assert_eq!(resp["accepted"], true);
    let m = model.clone();
    wait_for("github push visible", Duration::from_secs(10), || {
        let m = m.clone();
        async move {
            page_content(&m, "docs/guide", "Version 2 (github)")
                .await
                .then_some(())
        }
    })
    .await;
    // The same delivery again is a replay: dropped.
    let (code, resp) = post(port, "/webhook", &github("push", "gh-1", &body), &body).await;
    assert_eq!(
        (code, resp["duplicate"].clone()),
        (200, json!(true)),
        "{resp}"
    );
    // Tampered body, wrong secret.
    let mut tampered = body.clone();
    tampered[5] ^= 1;
    let (code, resp) = post(port, "/webhook", &github("push", "gh-2", &body), &tampered).await;
    assert_eq!(code, 401, "{resp}");
    assert_eq!(resp["error"]["code"], "bad_signature");
    // Ping and unknown events are answered, not acted on.
    let ping = br#"{"zen":"Keep it logically awesome.","hook_id":42,"hook":{"type":"Repository"}}"#;
    let (code, resp) = post(port, "/webhook", &github("ping", "gh-3", ping), ping).await;
    assert_eq!((code, resp["pong"].clone()), (200, json!(true)), "{resp}");
    let issue = br#"{"action":"opened","issue":{"number":1}}"#;
    let (code, resp) = post(port, "/webhook", &github("issues", "gh-4", issue), issue).await;
    assert_eq!(
        (code, resp["ignored"].clone()),
        (200, json!(true)),
        "{resp}"
    );
    // Oversized body: 413 before any verification.
    let big = vec![b' '; 8192];
    let (code, _) = post(port, "/webhook", &github("push", "gh-5", &big), &big).await;
    assert_eq!(code, 413);
    // No provider headers.
    let (code, resp) = post(
        port,
        "/webhook",
        &[("content-type", "application/json".into())],
        &body,
    )
    .await;
    assert_eq!(
        (code, resp["error"]["code"].clone()),
        (400, json!("unknown_provider")),
        "{resp}"
    );

    // Gitea sends GitHub's headers too, with a GitHub signature that is not
    // checked; the bare-hex X-Gitea-Signature is.
    let before = after;
    repo.write("docs/guide.md", "# Guide\n\nVersion 3 (gitea).\n");
    let after = repo.commit("v3");
    let body = push_payload(&before, &after, &["docs/guide.md"]);
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-gitea-event", "push".into()),
        ("x-gitea-event-type", "push".into()),
        ("x-gitea-delivery", "gt-1".into()),
        ("x-gitea-signature", hmac_hex(&body)),
        ("x-gogs-event", "push".into()),
        ("x-gogs-delivery", "gt-1".into()),
        ("x-github-event", "push".into()),
        ("x-github-delivery", "gt-1".into()),
        ("x-hub-signature-256", format!("sha256={}", "0".repeat(64))),
    ];
    let (code, resp) = post(port, "/webhook", &headers, &body).await;
    assert_eq!(code, 202, "{resp}");
    assert_eq!(resp["provider"], "gitea");
    let m = model.clone();
    wait_for("gitea push visible", Duration::from_secs(10), || {
        let m = m.clone();
        async move {
            page_content(&m, "docs/guide", "Version 3 (gitea)")
                .await
                .then_some(())
        }
    })
    .await;
    // A bad Gitea signature is refused even with GitHub-looking headers.
    let mut bad = headers.clone();
    bad[4].1 = "ab".repeat(32);
    bad[2].1 = "gt-2".into();
    assert_eq!(post(port, "/webhook", &bad, &body).await.0, 401);

    // Forgejo.
    let before = after;
    repo.write("docs/guide.md", "# Guide\n\nVersion 4 (forgejo).\n");
    let after = repo.commit("v4");
    let body = push_payload(&before, &after, &["docs/guide.md"]);
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-forgejo-event", "push".into()),
        ("x-forgejo-delivery", "fj-1".into()),
        ("x-forgejo-signature", hmac_hex(&body)),
        ("x-gitea-event", "push".into()),
        ("x-gitea-signature", hmac_hex(&body)),
    ];
    let (code, resp) = post(port, "/webhook", &headers, &body).await;
    assert_eq!(
        (code, resp["provider"].clone()),
        (202, json!("forgejo")),
        "{resp}"
    );
    let m = model.clone();
    wait_for("forgejo push visible", Duration::from_secs(10), || {
        let m = m.clone();
        async move {
            page_content(&m, "docs/guide", "Version 4 (forgejo)")
                .await
                .then_some(())
        }
    })
    .await;

    // GitLab: token header, GitLab's payload shape.
    let before = after;
    repo.write("docs/guide.md", "# Guide\n\nVersion 5 (gitlab).\n");
    let after = repo.commit("v5");
    let body = serde_json::to_vec(&json!({
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": "refs/heads/main",
        "checkout_sha": after,
        "project": {"path_with_namespace": "team/project", "default_branch": "main", "git_http_url": "https://gitlab.example/team/project.git"},
        "commits": [{"id": after, "message": "v5", "added": [], "modified": ["docs/guide.md"], "removed": []}],
        "total_commits_count": 1
    }))
    .unwrap();
    let headers = vec![
        ("content-type", "application/json".to_string()),
        ("x-gitlab-event", "Push Hook".into()),
        ("x-gitlab-token", SECRET.into()),
        ("x-gitlab-event-uuid", "gl-1".into()),
        ("idempotency-key", "gl-1".into()),
    ];
    let (code, resp) = post(port, "/webhook", &headers, &body).await;
    assert_eq!(
        (code, resp["provider"].clone()),
        (202, json!("gitlab")),
        "{resp}"
    );
    let m = model.clone();
    wait_for("gitlab push visible", Duration::from_secs(10), || {
        let m = m.clone();
        async move {
            page_content(&m, "docs/guide", "Version 5 (gitlab)")
                .await
                .then_some(())
        }
    })
    .await;
    let mut wrong = headers.clone();
    wrong[2].1 = "not-the-secret".into();
    wrong[3].1 = "gl-2".into();
    wrong[4].1 = "gl-2".into();
    assert_eq!(post(port, "/webhook", &wrong, &body).await.0, 401);
    // A push to another branch is ignored.
    let mut other = serde_json::from_slice::<Value>(&body).unwrap();
    other["ref"] = "refs/heads/feature".into();
    let other = serde_json::to_vec(&other).unwrap();
    let (code, resp) = post(port, "/webhook", &github("push", "gh-9", &other), &other).await;
    assert_eq!(
        (code, resp["ignored"].clone()),
        (200, json!(true)),
        "{resp}"
    );

    // Status, metrics, manual sync.
    let (code, status) = get_json(port, "/wiki-agent/status").await.unwrap();
    assert_eq!(code, 200);
    let state = &status["agent"]["state"];
    assert_eq!(state["documents_by_state"]["synced"], 2, "{status}");
    assert_eq!(state["last_commit_synced"], after.as_str(), "{status}");
    assert!(!status.to_string().contains(SECRET) && !status.to_string().contains(KEY));
    let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let metrics = http_client::send(
        &base,
        Method::GET,
        "/metrics",
        &[],
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("wikijs_integration_webhooks_total{outcome=\"accepted\"} 4"),
        "{text}"
    );
    assert!(
        text.contains("wikijs_integration_webhooks_total{outcome=\"duplicate\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("wikijs_integration_documents{state=\"synced\"} 2"),
        "{text}"
    );
    let (code, _) = post(port, "/wiki-agent/sync", &[], b"").await;
    assert_eq!(code, 401);
    let (code, resp) = post(
        port,
        "/wiki-agent/sync",
        &[("authorization", format!("Bearer {SYNC_TOKEN}"))],
        b"",
    )
    .await;
    assert_eq!(code, 202, "{resp}");
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
    let status = terminate(&mut agent, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(status.success());
    // Every page exists once.
    let mut paths: Vec<String> = model.pages().into_iter().map(|p| p.path).collect();
    paths.sort();
    assert_eq!(paths, vec!["docs", "docs/guide"]);
    let _ = CONTENT_TYPE;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_sync_converges_and_backup_hook() {
    let (model, fake) = wiki().await;
    let repo = Repo::new();
    for i in 0..40 {
        repo.write(&format!("docs/p/page-{i:02}.md"), format!("# Page {i}\n"));
    }
    repo.commit("forty pages");
    // Each create takes ~40 ms in the fake, so the first sync is slow
    // enough to be killed in the middle.
    model.set_create_race(Duration::from_millis(40));
    let e = env(&repo, &fake.url());
    let mut agent = AgentProcess::spawn(BIN, &["--config", &e.config_arg()]);
    let m = model.clone();
    wait_for("some pages written", Duration::from_secs(20), || {
        let m = m.clone();
        async move { (m.pages().len() >= 5).then_some(()) }
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent.pid().unwrap()).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = agent.child.wait().await;
    let partial = model.pages().len();
    assert!(
        partial < 40,
        "the kill came too late to test anything ({partial} pages)"
    );
    model.set_create_race(Duration::ZERO);
    let (mut agent, port, _) = e.serve(BIN).await;
    let (_, status) = get_json(port, "/wiki-agent/status").await.unwrap();
    assert_eq!(
        status["agent"]["state"]["documents_by_state"]["synced"], 40,
        "{status}"
    );
    let mut paths: Vec<String> = model.pages().into_iter().map(|p| p.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 40);
    assert_eq!(model.pages().len(), 40, "no duplicate pages");

    // The pre-backup hook, while the service runs.
    let dest = e.state.join("backup").join("wiki-agent.db");
    let (code, out, err) = run_to_end(
        BIN,
        &[
            "--backup-db",
            dest.to_str().unwrap(),
            "--config",
            &e.config_arg(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let copy = rusqlite::Connection::open(&dest).unwrap();
    let n: i64 = copy
        .query_row(
            "SELECT COUNT(*) FROM documents WHERE state = 'synced'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 40);
    let ok: String = copy
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    assert!(terminate(&mut agent, Duration::from_secs(15))
        .await
        .unwrap()
        .success());
}

/// A burst of pushes while creates are slow: syncs never overlap (the
/// runtime's trigger coalesces), so the racing-create gotcha of Wiki.js
/// never shows: every page exists exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_never_duplicates_pages() {
    let (model, fake) = wiki().await;
    let repo = repo_with_docs();
    let e = env(&repo, &fake.url());
    let (mut agent, port, _) = e.serve(BIN).await;
    model.set_create_race(Duration::from_millis(30));
    let before = repo.git(&["rev-parse", "HEAD"]);
    for i in 0..5 {
        repo.write(&format!("docs/burst/b{i}.md"), format!("# Burst {i}\n"));
    }
    let after = repo.commit("burst");
    let body = push_payload(&before, &after, &[]);
    let sends = (0..5).map(|i| {
        let body = body.clone();
        async move {
            let headers = github("push", &format!("burst-{i}"), &body);
            post(port, "/webhook", &headers, &body).await.0
        }
    });
    let codes = futures_util::future::join_all(sends).await;
    assert!(codes.iter().all(|c| *c == 202), "{codes:?}");
    let m = model.clone();
    wait_for("burst pages visible", Duration::from_secs(20), || {
        let m = m.clone();
        async move { (m.pages().len() >= 7).then_some(()) }
    })
    .await;
    // Let any coalesced follow-up cycle finish, then check.
    let (_, _) = wait_for("loop idle", Duration::from_secs(20), || async move {
        let (_, s) = get_json(port, "/wiki-agent/status").await?;
        (s["work"]["running"].is_null() && s["agent"]["queue"]["sync_requested"] == false)
            .then_some(((), ()))
    })
    .await;
    let pages = model.pages();
    let mut paths: Vec<&str> = pages.iter().map(|p| p.path.as_str()).collect();
    paths.sort_unstable();
    let n = paths.len();
    paths.dedup();
    assert_eq!(n, paths.len(), "duplicate pages: {paths:?}");
    assert_eq!(n, 7);
    assert!(terminate(&mut agent, Duration::from_secs(15))
        .await
        .unwrap()
        .success());
}
