//! The crash campaign (issue 11): the real `1ldd` binary on a private
//! sandbox node is killed with SIGKILL (and the commands it had running,
//! as systemd's `KillMode=mixed` does) at a seeded random moment of each
//! operation kind — deploy, apply, destroy, backup, restore, verify,
//! upgrade — then restarted, and the invariants are checked:
//!
//! 1. no operation is left `queued` or `running` (reconciled before serving);
//! 2. every container tagged `1ld` is recorded as a deployment (or was
//!    compensated away); no vmid is recorded twice;
//! 3. no container is left locked (`lock:` in its config) by 1ld's work;
//! 4. the store opens (its integrity check passes: the daemon starts);
//! 5. every backup the store lists is on storage or flagged gone, and every
//!    archive of a 1ld container on storage is recorded or flagged;
//! 6. notifications queued before the kill are delivered after the restart.
//!
//! The kill moments are spread over each kind's steps: a clean run of each
//! kind first records when each of its steps began, then the trials take
//! the steps in turn (from a seeded start) and a random moment inside the
//! step's window, so short steps are hit as often as the long ones.
//!
//! `make crash` runs `ONELD_CRASH_TRIALS=20` per kind; `make test` a bounded
//! 2 per kind. The seed is printed (`ONELD_CRASH_SEED` replays a run); the
//! report lists trials, where the kills landed and every violation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::daemon::{root_tier, ChildDaemon, Client, SandboxTools};
use crate::deployments::{agents_dir, wrappers, TOKEN};
use crate::support::{self, SandboxNode};

const KINDS: [&str; 7] = [
    "deploy", "apply", "destroy", "backup", "restore", "verify", "upgrade",
];
const BUILTIN: &str = include_str!("../../src/apps/builtin/netbox-agent.toml");

/// One kill.
#[derive(Debug)]
struct Trial {
    kind: &'static str,
    delay_ms: u64,
    /// The operation's step when it was killed (`None`: it had ended).
    step: Option<u32>,
    violations: Vec<String>,
}

struct Campaign {
    dir: PathBuf,
    node: SandboxNode,
    tools: SandboxTools,
    daemon: Option<ChildDaemon>,
    netbox_url: String,
    bridge: String,
    version: u32,
    counter: u32,
}

fn pct(node: &SandboxNode, args: &[&str]) -> String {
    let out = std::process::Command::new(support::bin_dir().join("pct"))
        .args(args)
        .env("PVE_SANDBOX_ROOT", node.path(""))
        .output()
        .expect("pct");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_op(c: &Client, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v: Value = c
            .get(&format!("/v1/operations/{id}"))
            .await
            .expect(200)
            .json();
        if matches!(
            v["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled" | "interrupted")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "operation {id} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Campaign {
    fn client(&self) -> Client {
        self.daemon.as_ref().expect("daemon").client()
    }

    fn deploy_body(&self, name: &str) -> Value {
        json!({"app": "netbox-agent", "name": name,
               "settings": {"netbox_url": self.netbox_url},
               "secrets": {"netbox_token": TOKEN},
               "overrides": {"bridge": self.bridge, "storage": "local-lvm", "memory": 512}})
    }

    /// Submits; the operation id (`None` when refused, e.g. nothing to do).
    async fn submit(&self, method: &str, path: &str, body: Value) -> Option<String> {
        let c = self.client();
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = loop {
            let r = match method {
                "POST" => c.post(path, &body).await,
                "PUT" => c.put(path, &body).await,
                _ => c.delete(path).await,
            };
            // Another operation (e.g. the scheduler's snapshot release)
            // holds the container: wait for it, as a user would.
            if r.status.as_u16() == 409
                && r.text().contains("\"locked\"")
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            break r;
        };
        if r.status.as_u16() != 202 {
            eprintln!("crash: {method} {path} answered {}: {}", r.status, r.text());
            return None;
        }
        r.json::<Value>()["id"].as_str().map(str::to_string)
    }

    /// Runs an operation to its end, polling its progress every 20 ms:
    /// the final operation, when each step was first seen (ms after the
    /// submit, ascending) and the whole run's ms.
    async fn timed_run(&self, method: &str, path: &str, body: Value) -> (Value, Vec<u64>, u64) {
        let id = self
            .submit(method, path, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path} refused"));
        let t0 = Instant::now();
        let mut starts: BTreeMap<u64, u64> = BTreeMap::new();
        loop {
            let op: Value = self
                .client()
                .get(&format!("/v1/operations/{id}"))
                .await
                .expect(200)
                .json();
            let at = t0.elapsed().as_millis() as u64;
            if let Some(step) = op["progress"]["step"].as_u64() {
                starts.entry(step).or_insert(at);
            }
            let done = matches!(
                op["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled" | "interrupted")
            );
            if done || t0.elapsed() > Duration::from_secs(300) {
                return (op, starts.into_values().collect(), at);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs an operation to its end (setup and cleanup, never killed).
    async fn run(&self, method: &str, path: &str, body: Value) -> Value {
        let id = self
            .submit(method, path, body)
            .await
            .unwrap_or_else(|| panic!("{method} {path} refused"));
        wait_op(&self.client(), &id, 300).await
    }

    async fn deployments_now(&self) -> BTreeMap<String, Value> {
        let list: Vec<Value> = self
            .client()
            .get("/v1/deployments")
            .await
            .expect(200)
            .json();
        list.into_iter()
            .map(|d| (d["name"].as_str().unwrap_or_default().to_string(), d))
            .collect()
    }

    async fn newest_backup(&self) -> Option<String> {
        let list: Vec<Value> = self
            .client()
            .get("/v1/backups?deployment=base")
            .await
            .expect(200)
            .json();
        list.into_iter()
            .filter(|b| b["present"] == true && b["recorded"] == true)
            .max_by_key(|b| b["time"].as_str().unwrap_or_default().to_string())
            .and_then(|b| b["volid"].as_str().map(str::to_string))
    }

    /// What each kind needs before it can be killed: a healthy `base`, a
    /// backup of it, a victim to destroy.
    async fn prepare(&mut self, kind: &str) -> Option<(String, String, Value)> {
        let have = self.deployments_now().await;
        if !have.contains_key("base") {
            let v = self
                .run("POST", "/v1/deployments", self.deploy_body("base"))
                .await;
            assert_eq!(v["status"], "succeeded", "base deploy: {v}");
        }
        self.counter += 1;
        let n = self.counter;
        let enc = |v: &str| v.replace('/', "%2F");
        Some(match kind {
            "deploy" => (
                "POST".into(),
                "/v1/deployments".into(),
                self.deploy_body(&format!("t{n}")),
            ),
            "apply" => (
                "PUT".into(),
                "/v1/deployments/base".into(),
                json!({"app": "netbox-agent",
                       "settings": {"netbox_url": self.netbox_url, "interval": format!("{}s", 300 + n)},
                       "overrides": {"bridge": self.bridge, "memory": 512}}),
            ),
            "destroy" => {
                let name = format!("v{n}");
                let v = self
                    .run("POST", "/v1/deployments", self.deploy_body(&name))
                    .await;
                assert_eq!(v["status"], "succeeded", "victim deploy: {v}");
                (
                    "DELETE".into(),
                    format!("/v1/deployments/{name}?purge=true"),
                    json!({}),
                )
            }
            "backup" => (
                "POST".into(),
                "/v1/deployments/base/backups".into(),
                json!({}),
            ),
            "restore" | "verify" => {
                let volid = match self.newest_backup().await {
                    Some(v) => v,
                    None => {
                        let v = self
                            .run("POST", "/v1/deployments/base/backups", json!({}))
                            .await;
                        assert_eq!(v["status"], "succeeded", "backup: {v}");
                        self.newest_backup().await.expect("a backup")
                    }
                };
                if kind == "restore" {
                    (
                        "POST".into(),
                        format!("/v1/backups/{}/restore", enc(&volid)),
                        json!({"mode": "new", "name": format!("r{n}")}),
                    )
                } else {
                    (
                        "POST".into(),
                        format!("/v1/backups/{}/verify", enc(&volid)),
                        json!({}),
                    )
                }
            }
            _ => {
                self.version += 1;
                let apps = self.dir.join("apps.d");
                std::fs::create_dir_all(&apps).expect("apps.d");
                std::fs::write(
                    apps.join("netbox-agent.toml"),
                    BUILTIN.replace(
                        "version = \"0.1.0\"",
                        &format!("version = \"0.1.{}\"", self.version),
                    ),
                )
                .expect("manifest");
                (
                    "POST".into(),
                    "/v1/deployments/base/upgrade".into(),
                    json!({}),
                )
            }
        })
    }

    async fn restart(&mut self) {
        self.daemon = Some(ChildDaemon::start(&self.dir, &self.tools, &[]).await);
    }

    /// The invariants after a restart; each violation as a sentence.
    /// The lock on `vmid` once no operation the restarted daemon started
    /// on it runs: the scheduler may start one (a due snapshot release
    /// retried) after the wait for idle, and it holds the container's lock
    /// while it runs. A lock still there after the operations on the
    /// container ended (or after 60 s) is left behind.
    async fn lock_left(&self, vmid: &str, restarted: jiff::Timestamp) -> Option<String> {
        let target = format!("ct/{vmid}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut idle_seen = false;
        loop {
            let lock = pct(&self.node, &["config", vmid])
                .lines()
                .find_map(|l| l.strip_prefix("lock: "))
                .map(str::to_string)?;
            let busy: Vec<Value> = self
                .client()
                .get(&format!(
                    "/v1/operations?status=queued,running&target={target}"
                ))
                .await
                .expect(200)
                .json();
            let new_busy = busy.iter().any(|o| {
                o["created_at"]
                    .as_str()
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                    .is_some_and(|t| t >= restarted)
            });
            // Locked with nothing running on it, twice a second apart
            // (an operation may start or end between the two reads).
            if (!new_busy && idle_seen) || Instant::now() > deadline {
                return Some(lock);
            }
            idle_seen = !new_busy;
            tokio::time::sleep(Duration::from_millis(if new_busy { 200 } else { 1000 })).await;
        }
    }

    async fn check(&self, pending_before: &[i64], restarted: jiff::Timestamp) -> Vec<String> {
        let mut v = Vec::new();
        let c = self.client();
        let busy: Vec<Value> = c
            .get("/v1/operations?status=queued,running")
            .await
            .expect(200)
            .json();
        // Operations from before the kill must all be final; the scheduler
        // may start new ones at once (e.g. a due snapshot release).
        for o in &busy {
            let created: jiff::Timestamp = o["created_at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            if created < restarted {
                v.push(format!(
                    "operation {} ({}) is {} after the restart",
                    o["id"], o["kind"], o["status"]
                ));
            }
        }
        // Locks are checked once the new ones are done (they hold locks
        // while they run).
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let busy: Vec<Value> = c
                .get("/v1/operations?status=queued,running")
                .await
                .expect(200)
                .json();
            if busy.is_empty() || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deps = self.deployments_now().await;
        let mut by_vmid: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (name, d) in &deps {
            by_vmid
                .entry(d["vmid"].as_u64().unwrap_or(0))
                .or_default()
                .push(name.clone());
        }
        for (vmid, names) in &by_vmid {
            if names.len() > 1 {
                v.push(format!("vmid {vmid} recorded twice: {names:?}"));
            }
        }
        let list = pct(&self.node, &["list"]);
        for line in list.lines().skip(1) {
            let Some(vmid) = line.split_whitespace().next() else {
                continue;
            };
            let conf = pct(&self.node, &["config", vmid]);
            let tags = conf
                .lines()
                .find_map(|l| l.strip_prefix("tags: "))
                .unwrap_or_default();
            let is_1ld = tags.split([';', ',', ' ']).any(|t| t == "1ld");
            let recorded = vmid
                .parse::<u64>()
                .ok()
                .is_some_and(|n| by_vmid.contains_key(&n));
            if is_1ld && !recorded {
                v.push(format!(
                    "CT {vmid} is tagged 1ld but not recorded (hostname {})",
                    conf.lines()
                        .find_map(|l| l.strip_prefix("hostname: "))
                        .unwrap_or("?")
                ));
            }
            if conf.lines().any(|l| l.starts_with("lock: ")) {
                if let Some(lock) = self.lock_left(vmid, restarted).await {
                    v.push(format!("CT {vmid} is left locked ({lock})"));
                }
            }
        }
        let backups: Vec<Value> = c.get("/v1/backups").await.expect(200).json();
        for b in &backups {
            let (rec, present) = (b["recorded"] == true, b["present"] == true);
            if !rec && !present {
                v.push(format!(
                    "backup {} neither recorded nor present",
                    b["volid"]
                ));
            }
        }
        // Notifications queued before the kill go out after it.
        if !pending_before.is_empty() {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let view: Value = c
                    .get("/v1/notifications?status=pending")
                    .await
                    .expect(200)
                    .json();
                let still: Vec<i64> = view["notifications"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n["id"].as_i64()).collect())
                    .unwrap_or_default();
                if !pending_before.iter().any(|id| still.contains(id)) {
                    break;
                }
                if Instant::now() > deadline {
                    v.push(format!(
                        "notifications {pending_before:?} still pending 30 s after the restart"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        v
    }

    /// Keeps the node small: destroys what trials created.
    async fn tidy(&self) {
        for (name, _) in self.deployments_now().await {
            if name != "base" {
                let v = self
                    .run(
                        "DELETE",
                        &format!("/v1/deployments/{name}?purge=true"),
                        json!({}),
                    )
                    .await;
                if v["status"] != "succeeded" {
                    eprintln!("crash: tidy {name}: {v}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_crash_campaign_keeps_the_invariants() {
    if !root_tier(
        "root_crash_campaign_keeps_the_invariants",
        "1ldd and containers need root",
    ) {
        return;
    }
    let trials: usize = std::env::var("ONELD_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let seed: u64 = std::env::var("ONELD_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    eprintln!("crash campaign: {trials} trial(s) per kind, seed {seed} (ONELD_CRASH_SEED={seed} replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let bridge = "sbxcr0";
    let node = SandboxNode::up(8, bridge, "10.213.89.0/24");
    let dir = tempfile::Builder::new()
        .prefix("1ld-crash")
        .tempdir()
        .expect("temp dir");
    let bin = wrappers(dir.path(), &node.path(""));
    let host = std::net::SocketAddr::from(([10, 213, 89, 1], 0));
    let netbox = fake_upstreams::NetBox::new()
        .with_token(fake_upstreams::Secret::new(TOKEN))
        .serve(host)
        .await
        .expect("fake NetBox");
    // The notification target: it must stay up across the restarts.
    let (hook, _seen, _task) = crate::notify::receiver().await;
    let group = crate::daemon::group_name(nix::unistd::getegid().as_raw());
    let toml = format!(
        "state_dir = {state:?}\n\n[api]\nsocket = {socket:?}\ngroup = {group:?}\nadmin_group = {group:?}\n\n\
         [pve]\nbin_dir = {bin:?}\nnode = \"pve\"\ncommand_timeout_secs = 60\nlong_command_timeout_secs = 300\n\n\
         [ops]\nshutdown_grace_secs = 5\n\n\
         [apps]\nagents_dir = {agents:?}\ndir = {apps:?}\npackages_dir = {debs:?}\nlease_timeout_secs = 20\n\n\
         [supervise]\nenabled = false\n\n\
         [backup]\nnotify_success = true\nkeep_last = 3\nkeep_daily = 0\nkeep_weekly = 0\nkeep_monthly = 0\n\n\
         [upgrade]\nkeep_safety_secs = 5\n\n\
         [notify]\nretry_initial_secs = 1\nretry_max_secs = 2\n\n\
         [notify.targets.hook]\nkind = \"webhook\"\nurl = \"http://{hook}/1ld\"\n",
        state = dir.path().join("state").display().to_string(),
        socket = dir.path().join("run/1ld.sock").display().to_string(),
        bin = bin.display().to_string(),
        agents = agents_dir().display().to_string(),
        apps = dir.path().join("apps.d").display().to_string(),
        debs = dir.path().join("debs").display().to_string(),
    );
    std::fs::write(dir.path().join("1ld.toml"), toml).expect("1ld.toml");
    let tools = SandboxTools {
        root: node.path(""),
        mirror: PathBuf::new(),
        bin_dir: bin.clone(),
    };
    let mut cam = Campaign {
        dir: dir.path().to_path_buf(),
        node,
        tools,
        daemon: None,
        netbox_url: netbox.url(),
        bridge: bridge.into(),
        version: 0,
        counter: 0,
    };
    cam.restart().await;

    // How long each kind and each of its steps take here, for the kill
    // moments: one clean run.
    let mut took: BTreeMap<&str, u64> = BTreeMap::new();
    let mut windows: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    let offset: usize = rng.gen_range(0..64);
    let mut report: Vec<Trial> = Vec::new();
    for round in 0..=trials {
        for kind in KINDS {
            let Some((method, path, body)) = cam.prepare(kind).await else {
                continue;
            };
            if round == 0 {
                let (v, starts, total) = cam.timed_run(&method, &path, body).await;
                assert_eq!(v["status"], "succeeded", "the clean {kind}: {v}");
                took.insert(kind, total);
                windows.insert(kind, step_windows(&starts, total));
                continue;
            }
            let Some(id) = cam.submit(&method, &path, body).await else {
                report.push(Trial {
                    kind,
                    delay_ms: 0,
                    step: None,
                    violations: vec![format!("{method} {path} was refused before the kill")],
                });
                continue;
            };
            let delay = match windows.get(kind).filter(|w| !w.is_empty()) {
                Some(w) => {
                    let (lo, hi) = w[(offset + round) % w.len()];
                    rng.gen_range(lo..hi.max(lo + 1))
                }
                None => rng.gen_range(0..=took.get(kind).copied().unwrap_or(3000).max(200)),
            };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let op: Value = cam
                .client()
                .get(&format!("/v1/operations/{id}"))
                .await
                .expect(200)
                .json();
            let step = (!matches!(op["status"].as_str(), Some("succeeded" | "failed")))
                .then(|| op["progress"]["step"].as_u64().unwrap_or(0) as u32);
            let pending: Vec<i64> = cam
                .client()
                .get("/v1/notifications?status=pending")
                .await
                .expect(200)
                .json::<Value>()["notifications"]
                .as_array()
                .map(|a| a.iter().filter_map(|n| n["id"].as_i64()).collect())
                .unwrap_or_default();
            cam.daemon.as_mut().expect("daemon").crash();
            cam.daemon = None;
            let restarted = jiff::Timestamp::now();
            cam.restart().await;
            let violations = cam.check(&pending, restarted).await;
            if !violations.is_empty() {
                eprintln!("crash: {kind} killed after {delay} ms (step {step:?}): {violations:#?}");
            }
            report.push(Trial {
                kind,
                delay_ms: delay,
                step,
                violations,
            });
            cam.tidy().await;
        }
    }

    // The report.
    println!("crash campaign: seed {seed}, {trials} trial(s) per kind");
    println!("| kind | clean run ms | trials | killed mid-operation | steps hit | violations |");
    println!("|---|---:|---:|---:|---|---:|");
    let mut total = 0;
    for kind in KINDS {
        let ts: Vec<&Trial> = report.iter().filter(|t| t.kind == kind).collect();
        let mid = ts.iter().filter(|t| t.step.is_some()).count();
        let mut steps: Vec<u32> = ts.iter().filter_map(|t| t.step).collect();
        steps.sort_unstable();
        steps.dedup();
        let bad: usize = ts.iter().map(|t| t.violations.len()).sum();
        total += bad;
        println!(
            "| {kind} | {} | {} | {mid} | {steps:?} | {bad} |",
            took.get(kind).copied().unwrap_or(0),
            ts.len()
        );
    }
    let all: Vec<String> = report
        .iter()
        .flat_map(|t| {
            t.violations
                .iter()
                .map(move |v| format!("{} (+{} ms, step {:?}): {v}", t.kind, t.delay_ms, t.step))
        })
        .collect();
    assert!(all.is_empty(), "{total} violation(s):\n{}", all.join("\n"));
    if let Some(d) = cam.daemon.as_mut() {
        let status = d.terminate();
        assert!(status.success(), "1ldd exited {status}");
    }
    let store = oneld::store::Store::open(&oneld::paths::Paths::from_config(
        &oneld::config::Config::load(&dir.path().join("1ld.toml")).expect("config"),
    ));
    assert!(
        store.is_ok(),
        "the store fails its integrity check: {:?}",
        store.err()
    );
}

/// The `[begin, end)` ms window of each step from when each began (as
/// [`Campaign::timed_run`] saw them) and the run's end.
fn step_windows(starts: &[u64], total: u64) -> Vec<(u64, u64)> {
    starts
        .iter()
        .enumerate()
        .map(|(i, &b)| (b, starts.get(i + 1).copied().unwrap_or(total).max(b + 1)))
        .collect()
}

#[test]
fn every_step_gets_its_own_window() {
    assert_eq!(
        step_windows(&[0, 40, 2000, 2010], 3000),
        [(0, 40), (40, 2000), (2000, 2010), (2010, 3000)]
    );
    assert_eq!(step_windows(&[5], 5), [(5, 6)]);
    assert!(step_windows(&[], 100).is_empty());
}
