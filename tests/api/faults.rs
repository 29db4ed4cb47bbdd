//! The fault campaign (issue 11) beyond deploy (whose every step is covered
//! by `deployments::root_failures_at_each_step_leave_nothing`): with the
//! sandbox's fault injection, the host commands of backup, restore, verify
//! and upgrade fail with Proxmox's texts, hang past their timeout or print
//! garbage, and the backup storage really fills up (a 24 MiB tmpfs). Each
//! case must end in a clear operation error naming the step, with
//! compensation done: no operation left running, no container locked or
//! left over, and the daemon keeps serving. `make faults` runs this file.

use std::time::Duration;

use oneld::api::{OpStatus, Operation};
use serde_json::{json, Value};

use crate::daemon::{root_tier, Client};
use crate::deployments::{deploy, finish, log_of, Node};

/// The invariants after a case; violations as sentences.
async fn leftovers(n: &Node, c: &Client, known: &[u32]) -> Vec<String> {
    let mut v = Vec::new();
    let busy: Vec<Operation> = c
        .get("/v1/operations?status=queued,running")
        .await
        .expect(200)
        .json();
    for o in busy {
        v.push(format!(
            "operation {} ({}) still {:?}",
            o.id, o.kind, o.status
        ));
    }
    let list = String::from_utf8_lossy(&n.pct(&["list"]).stdout).into_owned();
    for line in list.lines().skip(1) {
        let Some(vmid) = line
            .split_whitespace()
            .next()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let conf =
            String::from_utf8_lossy(&n.pct(&["config", &vmid.to_string()]).stdout).into_owned();
        if let Some(lock) = conf.lines().find_map(|l| l.strip_prefix("lock: ")) {
            v.push(format!("CT {vmid} left locked ({lock})"));
        }
        if !known.contains(&vmid) {
            v.push(format!("CT {vmid} left over"));
        }
    }
    if !c.get("/v1/deployments").await.status.is_success() {
        v.push("the daemon stopped serving".into());
    }
    v
}

/// Runs `method path body` (a 202 + operation) to its end.
async fn op(c: &Client, method: &str, path: &str, body: Value) -> (Operation, String) {
    let r = match method {
        "PUT" => c.put(path, &body).await,
        _ => c.post(path, &body).await,
    };
    let o: Operation = r.expect(202).json();
    let o = finish(c, &o.id, Duration::from_secs(180)).await;
    let log = log_of(c, &o.id).await;
    (o, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_fault_campaign_fails_clearly_and_leaves_nothing() {
    if !root_tier(
        "root_fault_campaign_fails_clearly_and_leaves_nothing",
        "containers need root",
    ) {
        return;
    }
    let n = Node::with_config("sbxflt0", "10.213.90.0/24", 0, |c, _| {
        // Hangs must end in the runner's timeouts, not the test's.
        c.pve.command_timeout_secs = 5;
        c.pve.long_command_timeout_secs = 40;
    })
    .with_upstreams()
    .await;
    let c = n.client();
    let (o, log) = deploy(&c, &n.request("netbox-agent", "nb")).await;
    assert_eq!(o.status, OpStatus::Succeeded, "{log}");
    let dep: Value = c.get("/v1/deployments/nb").await.expect(200).json();
    let vmid = dep["vmid"].as_u64().expect("vmid") as u32;
    // One good backup to restore and verify from.
    let (o, log) = op(&c, "POST", "/v1/deployments/nb/backups", json!({})).await;
    assert_eq!(o.status, OpStatus::Succeeded, "{log}");
    let backups: Vec<Value> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    let volid = backups[0]["volid"]
        .as_str()
        .expect("volid")
        .replace('/', "%2F");

    // A real full disk: a 24 MiB tmpfs as a backup storage.
    let tiny = n.node.path("var/lib/tiny");
    std::fs::create_dir_all(&tiny).expect("mkdir");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=24m", "tmpfs"])
        .arg(&tiny)
        .status()
        .expect("mount")
        .success();
    assert!(mounted, "cannot mount a tmpfs at {}", tiny.display());
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(tiny.clone());
    let cfg = n.node.path("etc/pve/storage.cfg");
    let mut text = std::fs::read_to_string(&cfg).expect("storage.cfg");
    text.push_str(&format!(
        "\ndir: tiny\n\tpath {}\n\tcontent backup\n",
        tiny.display()
    ));
    std::fs::write(&cfg, text).expect("storage.cfg");

    // A newer app version for the upgrade cases.
    let apps = n.daemon.config.apps.dir.clone();
    std::fs::create_dir_all(&apps).expect("apps.d");
    std::fs::write(
        apps.join("netbox-agent.toml"),
        include_str!("../../src/apps/builtin/netbox-agent.toml")
            .replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .expect("manifest");

    let v = vmid.to_string();
    let backup = "/v1/deployments/nb/backups".to_string();
    let restore = format!("/v1/backups/{volid}/restore");
    let verify = format!("/v1/backups/{volid}/verify");
    let upgrade = "/v1/deployments/nb/upgrade".to_string();
    // (what, fault rules, method, path, body, expected in the error)
    type Case<'a> = (&'a str, Vec<String>, &'a str, String, Value, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "vzdump fails (locked)",
            vec![format!(
                "vzdump {v} fail 255 ERROR: Backup of VM {v} failed - CT is locked (snapshot) once"
            )],
            "POST",
            backup.clone(),
            json!({}),
            "CT is locked (snapshot)",
        ),
        (
            "vzdump hangs",
            vec![format!("vzdump {v} hang once")],
            "POST",
            backup.clone(),
            json!({}),
            "step 'vzdump' failed",
        ),
        (
            "vzdump prints garbage",
            vec![format!("vzdump {v} garbage once")],
            "POST",
            backup.clone(),
            json!({}),
            "step 'vzdump' failed",
        ),
        (
            "backup storage full",
            vec![],
            "POST",
            backup.clone(),
            json!({"policy": {"storage": "tiny"}}),
            "step 'vzdump' failed",
        ),
        (
            "pct restore fails",
            vec!["pct restore fail 255 unable to restore CT - no space left on device once".into()],
            "POST",
            restore.clone(),
            json!({"mode": "new", "name": "nb-r1"}),
            "no space left on device",
        ),
        (
            "pct start of the restored CT fails",
            vec!["pct start fail 255 startup for container failed once".into()],
            "POST",
            restore.clone(),
            json!({"mode": "new", "name": "nb-r2"}),
            "step 'start container' failed",
        ),
        (
            "verify: pct restore hangs",
            vec!["pct restore hang once".into()],
            "POST",
            verify.clone(),
            json!({}),
            "pct restore",
        ),
        (
            "verify: self-check cannot run",
            vec!["pct exec fail 255 lxc-attach: failed to get init pid".into()],
            "POST",
            verify.clone(),
            json!({}),
            "self-check",
        ),
        (
            "upgrade: snapshot fails",
            vec!["pct snapshot fail 255 snapshot feature is not available once".into()],
            "POST",
            upgrade.clone(),
            json!({}),
            "snapshot feature is not available",
        ),
        (
            "upgrade: pushing the new version fails",
            vec!["pct push fail 255 failed to open file once".into()],
            "POST",
            upgrade.clone(),
            json!({}),
            "rolled back (pct rollback to snapshot",
        ),
    ];
    let mut report = Vec::new();
    for (what, rules, method, path, body, expect) in cases {
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        n.faults(&rules);
        let (o, log) = op(&c, method, &path, body).await;
        n.faults(&[]);
        let msg = o
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let mut bad = Vec::new();
        if o.status != OpStatus::Failed {
            bad.push(format!("ended {:?}, not failed", o.status));
        }
        if !msg.contains(expect) {
            bad.push(format!("error {msg:?} does not say {expect:?}"));
        }
        bad.extend(leftovers(&n, &c, &[vmid]).await);
        println!(
            "| {what} | {} | {} |",
            msg.chars().take(140).collect::<String>(),
            bad.len()
        );
        if !bad.is_empty() {
            report.push(format!("{what}: {bad:?}\n{log}"));
        }
    }
    // After all of it: still the same healthy deployment at its version.
    let dep: Value = c.get("/v1/deployments/nb").await.expect(200).json();
    assert_eq!(dep["app_version"], "0.1.0", "{dep}");
    assert_eq!(
        n.exec(vmid, &["systemctl", "is-active", "netbox-agent"])
            .trim(),
        "active"
    );
    assert!(report.is_empty(), "{}", report.join("\n\n"));
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}
