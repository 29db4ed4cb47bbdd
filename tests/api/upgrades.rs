//! Upgrades through the API and `1ldctl upgrade`.
//!
//! Fast tier: bad input (unknown deployment, a version the node does not
//! ship, a downgrade, unknown fields) and the dry run of an up-to-date
//! deployment.
//!
//! Root tier: two real netbox-agent deployments on a private sandbox node,
//! one on lvmthin (safety point: `pct snapshot`), one on a dir storage
//! (safety point: a vzdump backup). A new version (an apps.d manifest
//! 0.2.0 whose config differs) upgrades both with marker data kept; the
//! safety snapshot is released after `[upgrade] keep_safety_secs`; a broken
//! version (0.3.0, a config the agent refuses) fails its gate and rolls
//! both back (`pct rollback`, in-place restore) to healthy 0.2.0, with an
//! `upgrade_failed` notification.

use std::time::Duration;

use oneld::api::{OpStatus, Operation};
use oneld::paths::Paths;
use oneld::store::Store;
use serde_json::{json, Value};

use crate::backups::ctl;
use crate::daemon::root_tier;
use crate::deployments::{deploy, fast_daemon, finish, log_of, Node};

const BUILTIN: &str = include_str!("../../src/apps/builtin/netbox-agent.toml");

/// The built-in netbox-agent manifest as version `v`, its rendered config
/// carrying `extra` (TOML lines).
fn manifest(v: &str, extra: &str) -> String {
    BUILTIN
        .replace("version = \"0.1.0\"", &format!("version = \"{v}\""))
        .replace(
            "[netbox]\nurl = {{ netbox_url }}",
            &format!("{extra}\n[netbox]\nurl = {{{{ netbox_url }}}}"),
        )
}

#[tokio::test]
async fn bad_upgrade_input_names_the_field_and_the_fix() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    let store = Store::open(&Paths::from_config(&d.config)).expect("store");
    let mut rec = crate::supervise::sample_record("nb", 150);
    rec.app = "netbox-agent".into();
    rec.app_version = "0.1.0".into();
    rec.spec.resources.storage = "ctdata".into();
    store.insert_deployment(&rec).expect("insert");
    c.post("/v1/deployments/nope/upgrade", &json!({}))
        .await
        .expect(404);
    let (_, msg) = c
        .post(
            "/v1/deployments/nb/upgrade",
            &json!({"to_version": "9.9.9"}),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("this node ships netbox-agent 0.1.0, not 9.9.9"),
        "{msg}"
    );
    let (_, msg) = c
        .post("/v1/deployments/nb/upgrade", &json!({"to": "0.2.0"}))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("unknown field `to`"), "{msg}");
    // Up to date: the dry run says so, the upgrade is a 409 naming `force`.
    let p: Value = c
        .post("/v1/deployments/nb/upgrade", &json!({"dry_run": true}))
        .await
        .expect(200)
        .json();
    assert_eq!(p["up_to_date"], true, "{p}");
    assert_eq!(p["from_version"], "0.1.0");
    let (_, msg) = c
        .post("/v1/deployments/nb/upgrade", &json!({}))
        .await
        .expect(409)
        .error();
    assert!(
        msg.contains("already runs netbox-agent 0.1.0") && msg.contains("force"),
        "{msg}"
    );
    // A deployment newer than what the node ships: no downgrade.
    rec.app_version = "0.5.0".into();
    store.update_deployment(&rec).expect("update");
    let (_, msg) = c
        .post("/v1/deployments/nb/upgrade", &json!({"dry_run": true}))
        .await
        .expect(400)
        .error();
    assert!(msg.contains("downgrades are not supported"), "{msg}");
}

/// Adds a dir storage for container volumes (no snapshots) to the node.
fn add_dir_storage(n: &Node, id: &str) {
    let dir = n.node.path(&format!("var/lib/{id}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg = n.node.path("etc/pve/storage.cfg");
    let mut text = std::fs::read_to_string(&cfg).expect("storage.cfg");
    text.push_str(&format!(
        "\ndir: {id}\n\tpath {}\n\tcontent rootdir,images\n",
        dir.display()
    ));
    std::fs::write(&cfg, text).expect("storage.cfg");
}

fn snapshots(n: &Node, vmid: u32) -> String {
    String::from_utf8_lossy(&n.pct(&["listsnapshot", &vmid.to_string()]).stdout).into_owned()
}

async fn deployment(c: &crate::daemon::Client, name: &str) -> Value {
    c.get(&format!("/v1/deployments/{name}"))
        .await
        .expect(200)
        .json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_upgrade_snapshots_or_backs_up_and_rolls_back() {
    if !root_tier(
        "root_upgrade_snapshots_or_backs_up_and_rolls_back",
        "containers need root",
    ) {
        return;
    }
    let (hook, seen, _task) = crate::notify::receiver().await;
    let n = Node::with_config("sbxupg0", "10.213.88.0/24", 0, move |c, _| {
        c.upgrade.keep_safety_secs = 1;
        crate::notify::hook_target(c, hook);
    })
    .with_upstreams()
    .await;
    add_dir_storage(&n, "ctdir");
    let c = n.client();
    let sock = n.daemon.socket.clone();
    let (op, log) = deploy(&c, &n.request("netbox-agent", "nb")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let mut req = n.request("netbox-agent", "nbdir");
    req["overrides"]["storage"] = json!("ctdir");
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let vmid = |d: &Value| d["vmid"].as_u64().expect("vmid") as u32;
    let (v1, v2) = (
        vmid(&deployment(&c, "nb").await),
        vmid(&deployment(&c, "nbdir").await),
    );
    for v in [v1, v2] {
        n.exec(
            v,
            &["sh", "-c", "echo marker-up > /var/lib/netbox-agent/marker"],
        );
    }

    // Nothing to do yet.
    let (code, out, err) = ctl(&sock, &["upgrade", "--all", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("nb: netbox-agent 0.1.0 (up to date)"), "{out}");

    // 0.2.0 ships: the dry run shows the versions and each safety point.
    let apps = n.daemon.config.apps.dir.clone();
    std::fs::create_dir_all(&apps).expect("apps.d");
    std::fs::write(
        apps.join("netbox-agent.toml"),
        manifest("0.2.0", "# upgraded-to 0.2.0"),
    )
    .expect("manifest");
    let (code, out, err) = ctl(&sock, &["upgrade", "--all", "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("nb: netbox-agent 0.1.0 → 0.2.0\n  safety point: snapshot (pct snapshot)"),
        "{out}"
    );
    assert!(
        out.contains("nbdir: netbox-agent 0.1.0 → 0.2.0\n  safety point: backup (vzdump)"),
        "{out}"
    );

    // Upgrade all: both at 0.2.0, healthy, marker kept, new config inside.
    let (code, out, err) = ctl(&sock, &["upgrade", "--all"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    for (name, v) in [("nb", v1), ("nbdir", v2)] {
        let d = deployment(&c, name).await;
        assert_eq!(d["app_version"], "0.2.0", "{d}");
        assert!(
            matches!(d["health"]["status"].as_str(), Some("healthy" | "degraded")),
            "{d}"
        );
        assert_eq!(
            n.exec(v, &["cat", "/var/lib/netbox-agent/marker"]),
            "marker-up\n"
        );
        assert!(
            n.exec(v, &["cat", "/etc/netbox-agent/config.toml"])
                .contains("# upgraded-to 0.2.0"),
            "{name}: the new config was pushed"
        );
    }
    let ops: Vec<Operation> = c
        .get("/v1/operations?kind=deployment.upgrade")
        .await
        .expect(200)
        .json();
    assert_eq!(ops.len(), 2);
    let logs = [log_of(&c, &ops[0].id).await, log_of(&c, &ops[1].id).await].join("\n");
    assert!(
        logs.contains(&format!("pct snapshot {v1} upgrade-1ld-")),
        "{logs}"
    );
    assert!(
        logs.contains("safety backup local:backup/vzdump-lxc-"),
        "{logs}"
    );
    // The safety snapshot goes after keep_safety_secs of health.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while snapshots(&n, v1).contains("upgrade-1ld-") {
        assert!(
            std::time::Instant::now() < deadline,
            "safety snapshot not released: {}",
            snapshots(&n, v1)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let rel: Vec<Operation> = c
        .get("/v1/operations?kind=upgrade.release")
        .await
        .expect(200)
        .json();
    let rel = finish(&c, &rel[0].id, Duration::from_secs(30)).await;
    assert_eq!(rel.status, OpStatus::Succeeded);

    // 0.3.0 is broken (its config has a key the agent refuses: exit 78):
    // each upgrade fails and rolls back to a healthy 0.2.0.
    std::fs::write(
        apps.join("netbox-agent.toml"),
        manifest("0.3.0", "[bogus]\nkey = 1").replace("timeout_s = 60", "timeout_s = 15"),
    )
    .expect("manifest");
    let (code, out, err) = ctl(&sock, &["upgrade", "--all"]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("nb: ") && err.contains("nbdir: "), "{err}");
    assert!(
        err.contains("rolled back (pct rollback to snapshot upgrade-1ld-"),
        "{err}"
    );
    assert!(
        err.contains("rolled back (in-place restore of local:backup/"),
        "{err}"
    );
    for (name, v) in [("nb", v1), ("nbdir", v2)] {
        let d = deployment(&c, name).await;
        assert_eq!(d["app_version"], "0.2.0", "{d}");
        let conf = n.exec(v, &["cat", "/etc/netbox-agent/config.toml"]);
        assert!(
            conf.contains("# upgraded-to 0.2.0") && !conf.contains("bogus"),
            "{name}: {conf}"
        );
        assert_eq!(
            n.exec(v, &["cat", "/var/lib/netbox-agent/marker"]),
            "marker-up\n"
        );
        assert_eq!(
            n.exec(v, &["systemctl", "is-active", "netbox-agent"])
                .trim(),
            "active",
            "{name}"
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Value> = seen
            .lock()
            .expect("seen")
            .iter()
            .filter_map(|(_, body)| serde_json::from_slice(body).ok())
            .filter(|v: &Value| v["event"] == "upgrade_failed")
            .collect();
        if got.len() >= 2 {
            assert!(got[0].to_string().contains("rolled back"), "{got:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for name in ["nb", "nbdir"] {
        let del: Operation = c
            .delete(&format!("/v1/deployments/{name}?purge=true"))
            .await
            .expect(202)
            .json();
        finish(&c, &del.id, Duration::from_secs(90)).await;
    }
}
