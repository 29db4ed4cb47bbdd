//! The `fake-upstreams` binary: prints its URLs once bound, accepts a token
//! from a file, refuses a world-readable token file and a wildcard address,
//! and exits 0 on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_fake-upstreams");

fn secret_file(dir: &std::path::Path, name: &str, value: &str, mode: u32) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("{value}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let token = "nbt_abcdefghijkl.0123456789abcdef0123456789abcdef01234567";
    let key = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln";
    let tf = secret_file(dir.path(), "netbox-token", token, 0o600);
    let kf = secret_file(dir.path(), "wikijs-key", key, 0o400);
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "--netbox",
            "127.0.0.1:0",
            "--wikijs",
            "127.0.0.1:0",
            "--ha",
            "127.0.0.1:0",
        ])
        .args(["--netbox-token-file", &tf, "--wikijs-key-file", &kf])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut urls = std::collections::BTreeMap::new();
    while urls.len() < 3 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("URLs printed within 10 s")
            .unwrap()
            .expect("stdout open");
        let (name, url) = line.split_once(' ').unwrap();
        urls.insert(name.to_string(), url.to_string());
    }
    assert_eq!(urls.keys().collect::<Vec<_>>(), ["ha", "netbox", "wikijs"]);
    let addr = |n: &str| -> std::net::SocketAddr {
        urls[n].strip_prefix("http://").unwrap().parse().unwrap()
    };

    let auth = format!("Bearer {token}");
    let r = common::http(
        addr("netbox"),
        "GET",
        "/api/status/",
        &[("Authorization", &auth)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let body = serde_json::json!({"query": "{ authentication { apiState } system { info { currentVersion dbType pagesTotal usersTotal } } }", "variables": {}}).to_string();
    let auth = format!("Bearer {key}");
    let r = common::http(
        addr("wikijs"),
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(
        r.json()["data"]["authentication"]["apiState"],
        true,
        "{}",
        r.text()
    );
    let r = common::http(
        addr("ha"),
        "GET",
        "/api/",
        &[("Authorization", "Bearer <TOKEN>")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = common::http(addr("netbox"), "GET", "/api/nope/", &[], None).await;
    assert_eq!(r.status, 599);

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exit within 10 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    assert!(err.contains("UNRECORDED request answered 599"), "{err}");
    assert!(err.contains("GET /api/nope/"), "{err}");
    assert!(
        !err.contains("0123456789abcdef") && !err.contains("c2ln"),
        "secret in log: {err}"
    );
}

async fn run(args: &[&str]) -> (i32, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(BIN).args(args).output(),
    )
    .await
    .expect("exits")
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn refuses_bad_setups() {
    let dir = tempfile::tempdir().unwrap();
    let open = secret_file(dir.path(), "t", "nbt_a.b", 0o644);
    let (code, err) = run(&["--netbox", "127.0.0.1:0", "--netbox-token-file", &open]).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("mode 0644") && !err.contains("nbt_a.b"),
        "{err}"
    );
    let (code, err) = run(&["--netbox", "0.0.0.0:8000"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to listen on 0.0.0.0:8000"), "{err}");
    let (code, err) = run(&[]).await;
    assert_eq!(code, 2, "{err}");
    let (code, err) = run(&["--wikijs", "127.0.0.1:0", "--netbox-token-file", &open]).await;
    assert_eq!(code, 2, "token file without its fake: {err}");
}
