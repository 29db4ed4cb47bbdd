//! Backups through the API.
//!
//! Fast tier (no root): bad input on the sandbox tools — an unknown storage,
//! a storage without content `backup`, an all-zero retention, each a 400
//! naming the field and the fix; the list on an empty node.
//!
//! Root tier: a real netbox-agent on a private sandbox node — marker data in
//! its state, `1ldctl backup`, the archive (vzdump through 1ld: zstd, notes
//! naming the deployment and spec digest, the spec inside the archive), the
//! list reconciled with storage, retention pruning through vzdump, and the
//! record surviving the deployment's destruction, then a restore as a new
//! deployment from the archive alone (marker data back, spec recorded);
//! verification of that backup (verified, throwaway gone) and of a
//! deliberately truncated one (failed, `backup_failed` notification).
//!
//! Root tier, schedules: a `minutely` schedule fires; with the daemon down
//! across two scheduled times, exactly one catch-up run follows its start,
//! then the schedule goes on from now.

use std::time::Duration;

use oneld::api::{BackupInfo, OpStatus, Operation, Verified};
use oneld::paths::Paths;
use oneld::store::Store;
use serde_json::{json, Value};

use crate::daemon::root_tier;
use crate::deployments::{deploy, fast_daemon, finish, log_of, Node};

const MINUTE_MS: i64 = 60_000;

const CTL: &str = env!("CARGO_BIN_EXE_1ldctl");

#[tokio::test]
async fn bad_backup_input_names_the_field_and_the_fix() {
    let (d, _net) = fast_daemon(|_| {});
    let c = d.client();
    // A recorded deployment (no container is needed to refuse bad input).
    let store = Store::open(&Paths::from_config(&d.config)).expect("store");
    let mut rec = crate::supervise::sample_record("nb", 150);
    rec.app = "netbox-agent".into();
    store.insert_deployment(&rec).expect("insert");
    let post = |body: Value| {
        let c = d.client();
        async move {
            c.post("/v1/deployments/nb/backups", &body)
                .await
                .expect(400)
                .error()
                .1
        }
    };
    let msg = post(json!({"policy": {"storage": "nope"}})).await;
    assert!(
        msg.contains(
            "policy.storage: 'nope' does not exist or has no content 'backup'; candidates: local"
        ),
        "{msg}"
    );
    let msg = post(json!({"policy": {"storage": "ctdata"}})).await;
    assert!(
        msg.contains("'ctdata' does not exist or has no content 'backup'"),
        "{msg}"
    );
    let msg = post(
        json!({"policy": {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}}),
    )
    .await;
    assert!(
        msg.contains("every keep_* is 0") && msg.contains("keep_last = 3"),
        "{msg}"
    );
    let msg = post(json!({"policy": {"storage": "a/../b"}})).await;
    assert!(
        msg.contains("policy.storage: 'a/../b' is not a storage id"),
        "{msg}"
    );
    let (_, msg) = c
        .post(
            "/v1/deployments/nb/backups",
            &json!({"policy": {"keep": 1}}),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("unknown field `keep`"), "{msg}");
    c.post("/v1/deployments/nope/backups", &json!({}))
        .await
        .expect(404);
    // A deploy with an all-zero retention is refused the same way.
    let (_, msg) = c
        .post(
            "/v1/deployments",
            &json!({"app": "netbox-agent", "name": "nb2", "dry_run": true,
                    "settings": {"netbox_url": "http://n"}, "secrets": {"netbox_token": "x"},
                    "overrides": {"bridge": "vmbr1ldt"},
                    "backup": {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}}),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("backup: every keep_* is 0"), "{msg}");
    // The list on a node without backups.
    let list: Vec<BackupInfo> = c.get("/v1/backups").await.expect(200).json();
    assert!(list.is_empty(), "{list:?}");
}

fn pvesm_path(n: &Node, volid: &str) -> String {
    String::from_utf8_lossy(
        &std::process::Command::new(crate::support::bin_dir().join("pvesm"))
            .args(["path", volid])
            .env("PVE_SANDBOX_ROOT", n.node.path(""))
            .output()
            .expect("pvesm path")
            .stdout,
    )
    .trim()
    .to_string()
}

/// No container of `[backup] verify_vmid_range` is left on the node.
fn assert_no_throwaway(n: &Node) {
    let out = std::process::Command::new(crate::support::bin_dir().join("pct"))
        .arg("list")
        .env("PVE_SANDBOX_ROOT", n.node.path(""))
        .output()
        .expect("pct list");
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines().skip(1) {
        let vmid: u32 = line
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(!(9900..=9999).contains(&vmid), "throwaway left: {text}");
    }
}

/// `1ldctl --socket <socket> <args>`: exit code, stdout, stderr.
pub(crate) fn ctl(socket: &std::path::Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(CTL)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("1ldctl");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_backup_through_1ld_is_app_aware_and_recorded() {
    if !root_tier(
        "root_backup_through_1ld_is_app_aware_and_recorded",
        "containers need root",
    ) {
        return;
    }
    let (hook, seen, _task) = crate::notify::receiver().await;
    let n = Node::with_config("sbxbak0", "10.213.83.0/24", 0, move |c, _| {
        c.backup.notify_success = true;
        crate::notify::hook_target(c, hook);
    })
    .with_upstreams()
    .await;
    let c = n.client();
    let (op, log) = deploy(&c, &n.request("netbox-agent", "nb")).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    let vmid: u32 = c
        .get("/v1/deployments/nb")
        .await
        .expect(200)
        .json::<Value>()["vmid"]
        .as_u64()
        .expect("vmid") as u32;
    n.exec(
        vmid,
        &[
            "sh",
            "-c",
            "echo marker-7f3a > /var/lib/netbox-agent/marker",
        ],
    );

    // 1ldctl backup: an operation, the archive recorded.
    let (code, out, err) = ctl(&n.daemon.socket, &["backup", "nb"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    assert_eq!(list.len(), 1, "{list:?}");
    let b = &list[0];
    assert!(b.recorded && b.present, "{b:?}");
    assert!(
        b.volid
            .starts_with(&format!("local:backup/vzdump-lxc-{vmid}-"))
            && b.volid.ends_with(".tar.zst"),
        "{b:?}"
    );
    assert!(b.size.is_some_and(|s| s > 1000), "{b:?}");
    assert!(
        b.notes
            .starts_with("1ld deployment=nb app=netbox-agent version=0.1.0 spec=sha256:")
            && b.notes.ends_with("(nb)"),
        "{b:?}"
    );
    assert_eq!(b.app.as_deref(), Some("netbox-agent"));
    // [backup] notify_success: the success is a notification too.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !seen.lock().expect("seen").iter().any(|(_, body)| {
        serde_json::from_slice::<Value>(body)
            .is_ok_and(|v| v["event"] == "backup_succeeded" && v.to_string().contains(&b.volid))
    }) {
        assert!(
            std::time::Instant::now() < deadline,
            "no backup_succeeded notification"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let dep: Value = c.get("/v1/deployments/nb").await.expect(200).json();
    assert!(dep["last_backup"].is_string(), "{dep}");
    // The archive holds the marker and the spec (read with tar on the node).
    let path = pvesm_path(&n, &b.volid);
    let listing = std::process::Command::new("tar")
        .args(["--zstd", "-tf", &path])
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&listing.stdout);
    assert!(
        names.contains("./var/lib/netbox-agent/marker"),
        "marker not in the archive"
    );
    assert!(
        names.contains("./etc/1ld/deployment.json"),
        "spec not in the archive"
    );
    let spec = std::process::Command::new("tar")
        .args(["--zstd", "-xOf", &path, "./etc/1ld/deployment.json"])
        .output()
        .expect("tar");
    let spec: Value = serde_json::from_slice(&spec.stdout).expect("spec json");
    assert_eq!(spec["name"], "nb");
    assert_eq!(spec["format"], "1ld-deployment/1");
    assert!(
        b.notes
            .contains(spec["spec_digest"].as_str().expect("digest")),
        "{b:?} vs {spec}"
    );
    assert!(
        !String::from_utf8_lossy(&serde_json::to_vec(&spec).expect("json")).contains("nbt_"),
        "no secret in the spec"
    );

    // Retention through vzdump: keep_last=1 prunes the first archive; 1ld
    // shows it as gone.
    let (code, out, err) = ctl(&n.daemon.socket, &["backup", "nb"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let op: Operation = c
        .post("/v1/deployments/nb/backups", &json!({"policy": {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}}))
        .await
        .expect(202)
        .json();
    let op = finish(&c, &op.id, Duration::from_secs(180)).await;
    assert_eq!(
        op.status,
        OpStatus::Succeeded,
        "{}",
        log_of(&c, &op.id).await
    );
    let log = log_of(&c, &op.id).await;
    assert!(log.contains("--prune-backups keep-last=1"), "{log}");
    let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    let present: Vec<&BackupInfo> = list.iter().filter(|b| b.present).collect();
    assert_eq!(present.len(), 1, "{list:?}");
    assert_eq!(
        list.iter().filter(|b| !b.present).count(),
        2,
        "pruned ones stay listed as gone: {list:?}"
    );
    let (code, text, _) = ctl(&n.daemon.socket, &["backups", "nb"]);
    assert_eq!(code, Some(0));
    assert!(
        text.contains("gone from storage") && text.contains("VOLID"),
        "{text}"
    );

    // Destroying the deployment keeps its backups (and their record).
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
    let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    let keep = list
        .iter()
        .find(|b| b.present)
        .expect("the kept backup")
        .clone();
    assert_eq!(list.iter().filter(|b| b.present).count(), 1, "{list:?}");

    // Restore as a new deployment from the archive alone (its deployment is
    // gone): healthy, the marker back, recorded with the archive's spec.
    let (code, out, err) = ctl(
        &n.daemon.socket,
        &["restore", &keep.volid, "--name", "nb-back"],
    );
    assert_eq!(code, Some(0), "{out}\n{err}");
    let dep: Value = c.get("/v1/deployments/nb-back").await.expect(200).json();
    assert_eq!(dep["app"], "netbox-agent");
    assert_eq!(dep["state"], "running", "{dep}");
    assert!(
        matches!(
            dep["health"]["status"].as_str(),
            Some("healthy" | "degraded")
        ),
        "{dep}"
    );
    assert_eq!(
        dep["settings"]["netbox_token"], "***",
        "the spec came back: {dep}"
    );
    let new_vmid = dep["vmid"].as_u64().expect("vmid") as u32;
    assert_ne!(new_vmid, 0);
    assert_eq!(
        n.exec(new_vmid, &["cat", "/var/lib/netbox-agent/marker"]),
        "marker-7f3a\n"
    );
    let ops: Vec<Operation> = c
        .get("/v1/operations?kind=backup.restore")
        .await
        .expect(200)
        .json();
    let log = log_of(&c, &ops[0].id).await;
    assert!(
        log.contains("deployment spec taken from the archive") && log.contains("--unique 1"),
        "{log}"
    );
    // Bad input: an unknown backup, a taken name, in place without its deployment.
    let enc = |v: &str| v.replace('/', "%2F");
    c.post(
        &format!("/v1/backups/{}/restore", enc("local:backup/nope.tar.zst")),
        &json!({"mode": "new"}),
    )
    .await
    .expect(404);
    let (_, msg) = c
        .post(
            &format!("/v1/backups/{}/restore", enc(&keep.volid)),
            &json!({"mode": "new", "name": "nb-back"}),
        )
        .await
        .expect(400)
        .error();
    assert!(
        msg.contains("a deployment called 'nb-back' exists"),
        "{msg}"
    );
    let (_, msg) = c
        .post(
            &format!("/v1/backups/{}/restore", enc(&keep.volid)),
            &json!({"mode": "in_place"}),
        )
        .await
        .expect(400)
        .error();
    assert!(msg.contains("restore with mode new"), "{msg}");

    // Verify: the kept backup restores into a throwaway (link down), passes
    // its self-check, is recorded as verified; the throwaway is gone.
    let (code, out, err) = ctl(&n.daemon.socket, &["verify", &keep.volid]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("verified"), "{out}");
    let list: Vec<BackupInfo> = c.get("/v1/backups").await.expect(200).json();
    let b = list.iter().find(|b| b.volid == keep.volid).expect("listed");
    assert_eq!(b.verified, Verified::Verified, "{b:?}");
    assert!(
        b.verify_detail
            .as_deref()
            .is_some_and(|d| d.starts_with("self-check exit ")),
        "{b:?}"
    );
    assert_no_throwaway(&n);
    let ops: Vec<Operation> = c
        .get("/v1/operations?kind=backup.verify")
        .await
        .expect(200)
        .json();
    let log = log_of(&c, &ops[0].id).await;
    assert!(
        log.contains("--unique 1")
            && log.contains("net0: link_down=1")
            && log.contains("--self-check")
            && log.contains("self-check exit 1: degraded: config healthy"),
        "{log}"
    );

    // A corrupted archive (a fresh backup, truncated on storage) fails
    // verification: recorded failed, a backup_failed notification, the
    // throwaway destroyed, nothing left locked.
    let (code, out, err) = ctl(&n.daemon.socket, &["backup", "nb-back"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let list: Vec<BackupInfo> = c
        .get("/v1/backups?deployment=nb-back")
        .await
        .expect(200)
        .json();
    let bad = list.iter().find(|b| b.present).expect("new backup").clone();
    let path = pvesm_path(&n, &bad.volid);
    let len = std::fs::metadata(&path).expect("archive").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open archive");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let (code, out, err) = ctl(&n.daemon.socket, &["verify", &bad.volid]);
    assert_ne!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("pct restore"), "{err}");
    let list: Vec<BackupInfo> = c.get("/v1/backups").await.expect(200).json();
    let b = list.iter().find(|b| b.volid == bad.volid).expect("listed");
    assert_eq!(b.verified, Verified::Failed, "{b:?}");
    assert_no_throwaway(&n);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got: Vec<Value> = seen
            .lock()
            .expect("seen")
            .iter()
            .filter_map(|(_, body)| serde_json::from_slice(body).ok())
            .collect();
        if got.iter().any(|v| {
            v["event"] == "backup_failed"
                && v.to_string().contains(&bad.volid)
                && v.to_string().contains("verification")
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no backup_failed notification: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.post(
        &format!("/v1/backups/{}/verify", enc("local:backup/nope.tar.zst")),
        &json!({}),
    )
    .await
    .expect(404);

    let del: Operation = c
        .delete("/v1/deployments/nb-back?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}

/// Backup operations the scheduler started, oldest first, with their
/// creation time (ms).
async fn scheduled(c: &crate::daemon::Client) -> Vec<(i64, Operation)> {
    let ops: Vec<Operation> = c.get("/v1/operations?kind=backup").await.expect(200).json();
    let mut out: Vec<(i64, Operation)> = ops
        .into_iter()
        .filter(|o| o.requestor.user == "1ldd-scheduler")
        .map(|o| {
            let t: jiff::Timestamp = o.created_at.parse().expect("created_at");
            (t.as_millisecond(), o)
        })
        .collect();
    out.sort_by_key(|(t, _)| *t);
    out
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

async fn sleep_until(ms: i64) {
    let wait = ms - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
}

/// Waits (bounded) for at least `n` scheduled backups.
async fn wait_scheduled(c: &crate::daemon::Client, n: usize, secs: u64) -> Vec<(i64, Operation)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = scheduled(c).await;
        if got.len() >= n {
            return got;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} scheduled backups after {secs} s, expected {n}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_minutely_schedule_fires_and_catches_up_once() {
    if !root_tier(
        "root_minutely_schedule_fires_and_catches_up_once",
        "containers need root",
    ) {
        return;
    }
    let mut n = Node::with_config("sbxbak1", "10.213.86.0/24", 0, |c, _| {
        c.backup.catchup_jitter_secs = 0;
    })
    .with_upstreams()
    .await;
    let c = n.client();
    let mut req = n.request("netbox-agent", "nb");
    req["backup"] = json!({"schedule": "minutely", "keep_last": 20});
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");

    // The schedule fires at the next minute (within a tick of it).
    // A schedule is first seen at a tick (every 15 s, longer on a loaded
    // machine), then fires at the next minute: within 60 s + two ticks.
    let first = wait_scheduled(&c, 1, 150).await;
    let (t1, op1) = &first[0];
    let op1 = finish(&c, &op1.id, Duration::from_secs(120)).await;
    assert_eq!(
        op1.status,
        OpStatus::Succeeded,
        "{}",
        log_of(&c, &op1.id).await
    );
    let minute = t1 - t1.rem_euclid(MINUTE_MS);
    assert!(
        t1 - minute < 40_000,
        "a minutely run started {} ms after its minute",
        t1 - minute
    );

    // Down across the next two scheduled times (minute+1, minute+2).
    n.stop_daemon();
    sleep_until(minute + 2 * MINUTE_MS + 5_000).await;
    // Taken before the start: the catch-up may begin within milliseconds
    // of READY, before this test's first request.
    let started = now_ms();
    n.start_daemon();
    let c = n.client();
    let before = scheduled(&c)
        .await
        .into_iter()
        .filter(|(t, _)| *t < started)
        .count();
    assert_eq!(before, 1, "nothing runs while the daemon is down");

    // Exactly one catch-up run before the next regular one (minute+3).
    sleep_until(minute + 3 * MINUTE_MS - 1_000).await;
    let after: Vec<(i64, Operation)> = scheduled(&c)
        .await
        .into_iter()
        .filter(|(t, _)| *t >= started)
        .collect();
    assert_eq!(
        after.len(),
        1,
        "one catch-up run for two missed ones: {:?}",
        after.iter().map(|(t, o)| (t, &o.id)).collect::<Vec<_>>()
    );
    let catch_up = finish(&c, &after[0].1.id, Duration::from_secs(120)).await;
    assert_eq!(catch_up.status, OpStatus::Succeeded);

    // The schedule goes on from now: one regular run at minute+3, no burst.
    let all = wait_scheduled(&c, 3, 60).await;
    let regular: Vec<&(i64, Operation)> = all
        .iter()
        .filter(|(t, _)| *t >= minute + 3 * MINUTE_MS)
        .collect();
    assert_eq!(regular.len(), 1, "{regular:?}");
    assert!(regular[0].0 < minute + 3 * MINUTE_MS + 40_000);
    let op3 = finish(&c, &regular[0].1.id, Duration::from_secs(120)).await;
    assert_eq!(op3.status, OpStatus::Succeeded);
    let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    assert_eq!(list.iter().filter(|b| b.present).count(), 3, "{list:?}");
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}

/// Proxmox's documented prune algorithm (pve-cli.md §7, from
/// `prune_mark_backup_group`), written from the documentation for this
/// test: which of `times` (unix s, UTC = the node's local time here) a
/// group keeps under `keeps` (last, hourly, daily, weekly, monthly,
/// yearly); `protected` ones are kept and never counted.
fn documented_prune(
    times: &[i64],
    protected: &std::collections::BTreeSet<i64>,
    keeps: [u32; 6],
) -> std::collections::BTreeSet<i64> {
    use std::collections::{BTreeSet, HashSet};
    let mut newest_first: Vec<i64> = times
        .iter()
        .copied()
        .filter(|t| !protected.contains(t))
        .collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    let period = |kind: usize, t: i64| -> String {
        let z = jiff::Timestamp::from_second(t)
            .expect("time")
            .to_zoned(jiff::tz::TimeZone::UTC);
        match kind {
            0 => t.to_string(),
            1 => z.strftime("%Y-%m-%d %H").to_string(),
            2 => z.strftime("%Y-%m-%d").to_string(),
            3 => {
                let w = z.date().iso_week_date();
                format!("{}-W{}", w.year(), w.week())
            }
            4 => z.strftime("%Y-%m").to_string(),
            _ => z.strftime("%Y").to_string(),
        }
    };
    let mut keep: BTreeSet<i64> = BTreeSet::new();
    let mut removed: BTreeSet<i64> = BTreeSet::new();
    for (kind, n) in keeps.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        let covered: HashSet<String> = keep.iter().map(|t| period(kind, *t)).collect();
        let mut new_periods: HashSet<String> = HashSet::new();
        for t in &newest_first {
            if keep.contains(t) || removed.contains(t) {
                continue;
            }
            let p = period(kind, *t);
            if covered.contains(&p) {
                continue;
            }
            if new_periods.contains(&p) {
                removed.insert(*t);
                continue;
            }
            if new_periods.len() as u32 >= *n {
                break;
            }
            new_periods.insert(p);
            keep.insert(*t);
        }
    }
    if keeps.iter().all(|n| *n == 0) {
        return times.iter().copied().collect();
    }
    keep.extend(protected.iter().copied());
    keep
}

#[test]
fn the_documented_prune_model_matches_the_docs_example_shapes() {
    // keep-last=3 keeps the three newest; keep-daily=2 then reaches past
    // the days they cover.
    let day = 86_400;
    let t0 = 1_772_413_200; // 2026-03-02 01:00 UTC
    let times: Vec<i64> = (0..6).map(|i| t0 + i * day).collect();
    let kept = documented_prune(&times, &Default::default(), [3, 0, 2, 0, 0, 0]);
    assert_eq!(
        kept,
        [times[1], times[2], times[3], times[4], times[5]]
            .into_iter()
            .collect()
    );
    // Two on one day: daily keeps the newer; the older is removed.
    let times = vec![t0, t0 + 3600, t0 + day];
    let kept = documented_prune(&times, &Default::default(), [0, 0, 2, 0, 0, 0]);
    assert_eq!(kept, [t0 + 3600, t0 + day].into_iter().collect());
    // Protected: kept, not counted.
    let prot: std::collections::BTreeSet<i64> = [t0 + day].into_iter().collect();
    let kept = documented_prune(&times, &prot, [1, 0, 0, 0, 0, 0]);
    assert_eq!(kept, [t0 + 3600, t0 + day].into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_retention_across_simulated_weeks_keeps_the_documented_set() {
    if !root_tier(
        "root_retention_across_simulated_weeks_keeps_the_documented_set",
        "containers need root",
    ) {
        return;
    }
    let n = Node::with_config("sbxbak2", "10.213.87.0/24", 0, |_, _| {})
        .with_upstreams()
        .await;
    let c = n.client();
    let keeps = [2u32, 0, 3, 3, 2, 0];
    let mut req = n.request("netbox-agent", "nb");
    req["backup"] = json!({"keep_last": keeps[0], "keep_hourly": 0, "keep_daily": keeps[2],
                           "keep_weekly": keeps[3], "keep_monthly": keeps[4], "keep_yearly": 0});
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{op:?}\n{log}");
    let clock = n.node.path("etc/clock");
    // Nine simulated weeks from Monday 2026-03-02: a backup every other
    // day at 01:00, a second one at 13:00 every fifth day, and one
    // protected backup in week two.
    let t0: i64 = 1_772_413_200;
    let mut times: Vec<i64> = Vec::new();
    for d in (0..63).step_by(2) {
        times.push(t0 + d * 86_400);
        if d % 5 == 0 {
            times.push(t0 + d * 86_400 + 12 * 3600);
        }
    }
    let protected_at = t0 + 8 * 86_400;
    let mut kept_model: std::collections::BTreeSet<i64> = Default::default();
    let mut protected: std::collections::BTreeSet<i64> = Default::default();
    for (i, t) in times.iter().enumerate() {
        std::fs::write(&clock, t.to_string()).expect("clock");
        let prot = *t == protected_at;
        let op: Operation = c
            .post(
                "/v1/deployments/nb/backups",
                &json!({"policy": {"protected": prot}}),
            )
            .await
            .expect(202)
            .json();
        let op = finish(&c, &op.id, Duration::from_secs(120)).await;
        assert_eq!(
            op.status,
            OpStatus::Succeeded,
            "backup {i}: {}",
            log_of(&c, &op.id).await
        );
        if prot {
            protected.insert(*t);
        }
        // vzdump prunes the group after each backup: the model does too.
        let mut all: Vec<i64> = kept_model.iter().copied().collect();
        all.push(*t);
        kept_model = documented_prune(&all, &protected, keeps);
        let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
        let on_storage: std::collections::BTreeSet<i64> = list
            .iter()
            .filter(|b| b.present)
            .map(|b| {
                b.time
                    .parse::<jiff::Timestamp>()
                    .expect("backup time")
                    .as_second()
            })
            .collect();
        assert_eq!(
            on_storage, kept_model,
            "after backup {i} at {t}: storage keeps {:?}, the documented algorithm {:?}",
            on_storage, kept_model
        );
    }
    assert!(
        kept_model.contains(&protected_at),
        "the protected one stays"
    );
    assert!(
        kept_model.len() >= 8,
        "the walk reached months back: {kept_model:?}"
    );
    let _ = std::fs::remove_file(&clock);
    let list: Vec<BackupInfo> = c.get("/v1/backups?deployment=nb").await.expect(200).json();
    assert_eq!(
        list.iter().filter(|b| !b.present).count(),
        times.len() - kept_model.len(),
        "every pruned backup stays listed as gone"
    );
}
