//! `cargo bench -p wikijs-integration --bench sync`: the real (release)
//! binary against the stateful fake Wiki.js on loopback and a local Git
//! repository of 500 documents (made with the `git` CLI). Prints:
//!
//! - the full initial sync of 500 documents (+ 20 images): wall time until
//!   every page is visible, the cycle's own duration, writes;
//! - the no-change resyncs (webhook-triggered incremental and a forced full
//!   reconcile): writes (must be 0);
//! - webhook-to-page-visible latency for a one-file change (signed GitHub
//!   push, 10 runs; the fake writes in memory, so a real Wiki.js adds its
//!   own write time, tens of ms per page);
//! - the agent's RSS (current and peak).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)] // bench harness

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use agent_runtime::http_client::{self, BaseUrl};
use agent_runtime::testing::{get_json, wait_for, AgentEnv};
use common::{png, wiki, Repo, KEY};
use hmac::{Hmac, Mac};
use hyper::header::HeaderName;
use hyper::Method;
use sha2::Sha256;

const BIN: &str = env!("CARGO_BIN_EXE_wikijs-integration");
const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-sync";
const DOCS: usize = 500;

async fn post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let base = BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let headers: Vec<(HeaderName, String)> = headers
        .iter()
        .map(|(k, v)| (HeaderName::from_bytes(k.as_bytes()).unwrap(), v.clone()))
        .collect();
    http_client::send(
        &base,
        Method::POST,
        path,
        &headers,
        Some(body.to_vec()),
        Duration::from_secs(10),
    )
    .await
    .unwrap()
    .status
}

fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

async fn cycles(port: u16) -> u64 {
    let (_, s) = get_json(port, "/wiki-agent/status").await.unwrap();
    s["work"]["cycles"]["total"].as_u64().unwrap_or(0)
}

async fn wait_cycles(port: u16, n: u64) -> serde_json::Value {
    wait_for("cycle finished", Duration::from_secs(120), || async move {
        let (_, s) = get_json(port, "/wiki-agent/status").await?;
        (s["work"]["cycles"]["total"].as_u64()? >= n && s["work"]["running"].is_null()).then_some(s)
    })
    .await
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench());
}

async fn bench() {
    let (model, fake) = wiki().await;
    let repo = Repo::new();
    let t = Instant::now();
    for i in 0..DOCS {
        let section = i % 20;
        let next = (i + 1) % DOCS;
        let img = if i % 25 == 0 {
            format!("\n![diagram](../img/diagram-{}.png)\n", i / 25)
        } else {
            String::new()
        };
        repo.write(
            &format!("docs/section-{section:02}/page-{i:03}.md"),
            format!(
                "---\ntitle: Page {i}\ntags: [bench, section-{section}]\ndescription: Benchmark page {i}\n---\n# Page {i}\n\nSee [the next page](../section-{:02}/page-{next:03}.md).\n{img}\n{}\n",
                next % 20,
                "Lorem ipsum dolor sit amet. ".repeat(40)
            ),
        );
    }
    for k in 0..DOCS / 25 {
        let mut data = png();
        data.extend_from_slice(format!("image-{k}").as_bytes());
        repo.write(&format!("docs/img/diagram-{k}.png"), data);
    }
    repo.write("docs/README.md", "# Bench docs\n");
    repo.commit("500 docs");
    println!(
        "repository: {} documents + {} images, made in {:.1} s",
        DOCS + 1,
        DOCS / 25,
        t.elapsed().as_secs_f64()
    );

    let e = AgentEnv::new(
        tempfile::tempdir().unwrap(),
        &format!(
            "wikijs_api_key = \"{KEY}\"\nwebhook_secret = \"{SECRET}\"\nsync_token = \"{TOKEN}\"\n"
        ),
        0o600,
        &format!(
            "[source]\nrepository = \"{}\"\nbranch = \"main\"\nsubfolder = \"docs\"\n",
            repo.path().display()
        ),
        "wikijs",
        &fake.url(),
    );

    // 1. Full initial sync.
    let t = Instant::now();
    // Logs go to a file at info level (a pipe nobody reads would block the
    // agent once full).
    let log = std::fs::File::create(e.state.join("agent.log")).unwrap();
    let mut agent = tokio::process::Command::new(BIN)
        .args(["--config", &e.config_arg()])
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let port = e.port;
    let m = model.clone();
    wait_for("all pages visible", Duration::from_secs(300), || {
        let m = m.clone();
        async move { (m.pages().len() > DOCS).then_some(()) }
    })
    .await;
    let visible = t.elapsed();
    let s = wait_cycles(port, 1).await;
    let c = model.counts();
    println!(
        "initial sync: {} pages + {} uploads visible after {:.2} s (cycle {} ms); writes: {} creates, {} updates, {} uploads, {} folders; {} GraphQL requests",
        model.pages().len(),
        c.uploads,
        visible.as_secs_f64(),
        s["work"]["last_cycle"]["duration_ms"],
        c.creates,
        c.updates,
        c.uploads,
        c.folders,
        c.graphql
    );
    let pid = agent.id().unwrap();

    // 2. No-change resyncs.
    let before = model.counts();
    let n = cycles(port).await;
    let t = Instant::now();
    assert_eq!(
        post(
            port,
            "/wiki-agent/sync",
            &[("authorization", format!("Bearer {TOKEN}"))],
            b""
        )
        .await,
        202
    );
    let s = wait_cycles(port, n + 1).await;
    let after = model.counts();
    println!(
        "no-change full reconcile: {:.2} s (cycle {} ms), writes = {}, GraphQL requests = {}",
        t.elapsed().as_secs_f64(),
        s["work"]["last_cycle"]["duration_ms"],
        after.page_writes + after.uploads - before.page_writes - before.uploads,
        after.graphql - before.graphql
    );
    assert_eq!(
        after.page_writes, before.page_writes,
        "a no-change resync must not write"
    );

    // 3. Webhook → page visible, one-file change.
    let mut lat = Vec::new();
    let mut head = repo.git(&["rev-parse", "HEAD"]);
    for run in 0..10 {
        let path = "docs/section-07/page-007.md";
        let marker = format!("edit {run}");
        repo.write(path, format!("# Page 7\n\n{marker}\n"));
        let after = repo.commit(&marker);
        let body = serde_json::to_vec(&serde_json::json!({
            "ref": "refs/heads/main", "before": head, "after": after,
            "commits": [{"id": after, "modified": [path]}],
            "repository": {"full_name": "bench/docs", "default_branch": "main"}
        }))
        .unwrap();
        head = after;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&body);
        let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let t = Instant::now();
        let code = post(
            port,
            "/webhook",
            &[
                ("content-type", "application/json".into()),
                ("x-github-event", "push".into()),
                ("x-github-delivery", format!("bench-{run}")),
                ("x-hub-signature-256", sig),
            ],
            &body,
        )
        .await;
        assert_eq!(code, 202);
        let m = model.clone();
        let mk = marker.clone();
        wait_for("edit visible", Duration::from_secs(30), || {
            let (m, mk) = (m.clone(), mk.clone());
            async move {
                m.pages_at("docs/section-07/page-007")
                    .iter()
                    .any(|p| p.content.contains(&mk))
                    .then_some(())
            }
        })
        .await;
        lat.push(t.elapsed());
        // Let the cycle finish before the next push.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lat.sort();
    println!(
        "webhook → page visible (one-file change, 10 runs): median {:.0} ms, max {:.0} ms (plus the wiki's own write time)",
        lat[lat.len() / 2].as_secs_f64() * 1000.0,
        lat[lat.len() - 1].as_secs_f64() * 1000.0
    );
    let before = model.counts();
    let n = cycles(port).await;
    // A webhook for an already-synced head: no writes.
    let body = serde_json::to_vec(
        &serde_json::json!({"ref": "refs/heads/main", "before": head, "after": head}),
    )
    .unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    post(
        port,
        "/webhook",
        &[
            ("x-github-event", "push".into()),
            ("x-github-delivery", "bench-noop".into()),
            ("x-hub-signature-256", sig),
        ],
        &body,
    )
    .await;
    wait_cycles(port, n + 1).await;
    let after = model.counts();
    println!(
        "no-change incremental sync (webhook, same head): writes = {}, GraphQL requests = {}",
        after.page_writes - before.page_writes,
        after.graphql - before.graphql
    );

    let (now, peak) = rss(pid);
    println!(
        "agent RSS: {:.1} MiB now, {:.1} MiB peak",
        now as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
    assert!(fake.unrecorded().is_empty());
}
