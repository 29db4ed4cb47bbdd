//! End to end: the real `netbox-agent --self-check` and
//! `wikijs-integration --once` / `--self-check`, built from this workspace,
//! report their upstream healthy against the fakes on 127.0.0.1 with the
//! fakes' configurable credentials, and unhealthy with refused ones.
//!
//! The agents' binaries are not built by this package: they are looked up
//! (newest first) in this test's own target directory, `target/debug` and
//! `target/release`, or in `$FAKES_AGENT_BIN_DIR`. `cargo test --workspace`
//! builds them; alone, run `cargo build -p netbox-agent -p
//! wikijs-integration` first. A missing binary fails the test, never skips it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_upstreams::{NetBox, Secret, WikiJs};
use serde_json::Value;

fn agent_bin(name: &str) -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("FAKES_AGENT_BIN_DIR") {
        dirs.push(d.into());
    }
    // <target>/<profile>/deps/<this test> → <target>/<profile>
    if let Some(d) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        dirs.push(d);
    }
    dirs.push(workspace.join("target/debug"));
    dirs.push(workspace.join("target/release"));
    let found = dirs
        .iter()
        .map(|d| d.join(name))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max();
    match found {
        Some((_, p)) => p,
        None => panic!(
            "`{name}` is not built: looked in {dirs:?}. Build the agents first \
             (`cargo build -p netbox-agent -p wikijs-integration`, same CARGO_TARGET_DIR) \
             or set FAKES_AGENT_BIN_DIR"
        ),
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Config + secrets for an agent in `dir`; returns the config path.
fn agent_config(dir: &Path, section: &str, url: &str, secret_key: &str, secret: &str) -> String {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let secrets = dir.join("secrets.toml");
    write(&secrets, &format!("{secret_key} = \"{secret}\"\n"), 0o600);
    let config = dir.join("config.toml");
    write(
        &config,
        &format!(
            "[service]\nlisten = \"127.0.0.1:{}\"\nstate_dir = \"{}\"\nsecrets_file = \"{}\"\n\n[{section}]\nurl = \"{url}\"\ntimeout_s = 5\n",
            free_port(),
            state.display(),
            secrets.display()
        ),
        0o644,
    );
    config.display().to_string()
}

async fn run(bin: &Path, args: &[&str]) -> (i32, Value, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(bin)
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("agent finished within 30 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    let all = format!(
        "{}\nstdout: {stdout}\nstderr: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), json, all)
}

const TOKEN: &str = "nbt_e2ee2ee2ee2e.E2Esecretsecretsecretsecretsecretsecret0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netbox_agent_self_check_is_healthy_against_the_fake() {
    let bin = agent_bin("netbox-agent");
    let fake = NetBox::new()
        .with_token(Secret::new(TOKEN))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = agent_config(dir.path(), "netbox", &fake.url(), "netbox_token", TOKEN);
    let (code, health, all) = run(&bin, &["--config", &cfg, "--self-check"]).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(health["status"], "healthy", "{all}");
    let api = &health["checks"]["netbox_api"];
    assert_eq!(api["status"], "healthy", "{all}");
    assert!(
        api["message"].as_str().unwrap().contains("NetBox 4.6.8"),
        "{all}"
    );

    // The same key with a wrong secret: NetBox's 403, the agent unhealthy.
    let dir = tempfile::tempdir().unwrap();
    let wrong = TOKEN.replace("secret0", "secret1");
    let cfg = agent_config(dir.path(), "netbox", &fake.url(), "netbox_token", &wrong);
    let (code, health, all) = run(&bin, &["--config", &cfg, "--self-check"]).await;
    assert_eq!(code, 2, "{all}");
    let msg = health["checks"]["netbox_api"]["message"].as_str().unwrap();
    assert!(msg.contains("Invalid v2 token"), "{all}");

    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
    assert_eq!(fake.hits().len(), 2);
}

const KEY: &str = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJhcGkiOjEsImdycCI6MX0.ZTJlLXNpZ25hdHVyZQ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wikijs_integration_is_healthy_against_the_fake() {
    let bin = agent_bin("wikijs-integration");
    let fake = WikiJs::new()
        .with_key(Secret::new(KEY))
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = agent_config(dir.path(), "wikijs", &fake.url(), "wikijs_api_key", KEY);
    // --once creates the state database; then every check is healthy.
    let (code, record, all) = run(&bin, &["--config", &cfg, "--once"]).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(record["result"], "ok", "{all}");
    let (code, health, all) = run(&bin, &["--config", &cfg, "--self-check"]).await;
    assert_eq!(code, 0, "{all}");
    assert_eq!(health["status"], "healthy", "{all}");
    let api = &health["checks"]["wikijs_api"];
    assert_eq!(api["status"], "healthy", "{all}");
    assert!(
        api["message"].as_str().unwrap().contains("Wiki.js 2.5.314"),
        "{all}"
    );

    // Another key is silently Guest in Wiki.js: the agent says unhealthy.
    let dir = tempfile::tempdir().unwrap();
    let cfg = agent_config(
        dir.path(),
        "wikijs",
        &fake.url(),
        "wikijs_api_key",
        &format!("{KEY}x"),
    );
    let (code, health, all) = run(&bin, &["--config", &cfg, "--self-check"]).await;
    assert_eq!(code, 2, "{all}");
    assert_eq!(
        health["checks"]["wikijs_api"]["status"], "unhealthy",
        "{all}"
    );
    assert!(
        health["checks"]["wikijs_api"]["message"]
            .as_str()
            .unwrap()
            .contains("Guest"),
        "{all}"
    );

    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
}
