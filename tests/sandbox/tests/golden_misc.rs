//! Golden-output tests for `pveversion`, dispatch and fault injection.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, Transcript, CT101};

#[test]
fn pveversion() {
    let sb = Sandbox::new();
    let mut t = Transcript::new("pveversion", &sb);
    t.step(&sb, &["pveversion"]);
    t.step(&sb, &["pveversion", "-v"]);
    t.step(&sb, &["pveversion", "--bogus"]);
    t.step_env(&sb, &["pveversion"], &[("PVE_SANDBOX_PVE_MAJOR", "9")]);
    t.step(&sb, &["nosuchtool"]);
    t.check();
}

#[test]
fn faults() {
    let sb = Sandbox::new();
    sb.write_conf(101, CT101);
    let mut t = Transcript::new("faults", &sb);
    t.step_env(
        &sb,
        &["pct", "list"],
        &[(
            "PVE_SANDBOX_FAULTS",
            "pct list fail 2 cluster not ready: quorum lost",
        )],
    );
    t.step_env(
        &sb,
        &["pct", "status", "101"],
        &[("PVE_SANDBOX_FAULTS", "pct list fail 2 x;pvesh * fail 3 y")],
    );
    t.step_env(
        &sb,
        &["pct", "status", "101"],
        &[("PVE_SANDBOX_FAULTS", "* * delay 10")],
    );
    std::fs::write(
        sb.root.join("etc/faults"),
        "# comment\npct stop fail 255 stop failed once\n",
    )
    .unwrap();
    t.step(&sb, &["pct", "stop", "101"]);
    t.step(&sb, &["pct", "stop", "101"]);
    t.step(&sb, &["pct", "stop", "101"]);
    t.step_env(
        &sb,
        &["pct", "list"],
        &[("PVE_SANDBOX_FAULTS", "pct list bogus")],
    );
    t.check();

    // garbage: exit 0 and non-format junk on stdout
    let out = sb
        .cmd(&["pvesh", "get", "/cluster/nextid"])
        .env("PVE_SANDBOX_FAULTS", "pvesh get garbage")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.len() > 50);
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_err());

    // hang: the caller's timeout must fire
    let mut child = sb
        .cmd(&["pct", "list"])
        .env("PVE_SANDBOX_FAULTS", "pct * hang")
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "hang rule returned");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn install_links() {
    let sb = Sandbox::new();
    let dir = tempfile::tempdir().unwrap();
    let out = sb.run(&["install-links", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    for t in ["pct", "pveam", "vzdump", "pvesm", "pvesh", "pveversion"] {
        assert!(dir.path().join(t).exists(), "{t}");
    }
    let out = std::process::Command::new(dir.path().join("pveversion"))
        .env("PVE_SANDBOX_ROOT", &sb.root)
        .env_remove("PVE_SANDBOX_PVE_MAJOR")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pve-manager/8.4.14/"));
}
