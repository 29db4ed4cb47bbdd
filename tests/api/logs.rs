//! `GET /v1/deployments/{name}/logs`, fast tier: the in-process daemon on
//! the sandbox tools, with `pct` wrapped by a stand-in that answers
//! `pct status` for the test's containers and `pct exec <vmid> -- journalctl
//! …` with recorded journald JSON (a string message, a byte-array message,
//! one holding a secret), and with `--follow` keeps running like
//! `journalctl -f` (its pids written down, to check the process group dies
//! when the client goes). The real journal of a deployed agent: the root
//! tier in `deployments/logs_root.rs`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client as HyperClient;
use hyperlocal::{UnixClientExt, Uri};
use oneld::api::{HealthStatus, HealthSummary, IntendedState, LogLine, Resources};
use oneld::paths::Paths;
use oneld::secrets::Secrets;
use oneld::store::{DeploymentRecord, Store, StoredSpec};
use serde_json::json;

use crate::daemon::{alive, wait_for, Daemon, Options, LIMIT};

/// The secret the stand-in journal leaks (the redactor must catch it).
pub(crate) const TOKEN: &str = "nbt_0123456789ab.deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

/// Deployments of [`logs_daemon`]: name → (vmid, what `pct` says).
pub(crate) const RUNNING: (&str, u32) = ("nb", 150);
/// Its container is stopped.
pub(crate) const STOPPED: (&str, u32) = ("nb-stopped", 152);
/// Its container does not exist.
pub(crate) const MISSING: (&str, u32) = ("nb-missing", 151);
/// Running, but `journalctl` is not in it.
pub(crate) const NO_JOURNAL: (&str, u32) = ("nb-nojournal", 153);

/// What the stand-in `journalctl` prints (journald's `-o json`).
const JOURNAL: &[&str] = &[
    r#"{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1764117605123456","__MONOTONIC_TIMESTAMP":"1","_BOOT_ID":"b","PRIORITY":"6","MESSAGE":"netbox-agent 0.1.0 starting"}"#,
    r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1764117606000000","__MONOTONIC_TIMESTAMP":"2","_BOOT_ID":"b","PRIORITY":"4","MESSAGE":[99,121,99,108,101,58,32,255]}"#,
];

/// The daemon and where the stand-in `pct` leaves its traces.
pub(crate) struct LogsDaemon {
    /// The daemon.
    pub daemon: Daemon,
    /// `argv` (the journalctl arguments), `pid` (pct's), `sleep.pid`.
    pub traces: PathBuf,
}

fn record(name: &str, vmid: u32) -> DeploymentRecord {
    let resources: Resources = serde_json::from_value(json!({
        "cores": 1, "memory": 512, "swap": 0, "disk": 2, "storage": "ctdata",
        "bridge": "vmbr1ldt", "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true
    }))
    .expect("resources");
    DeploymentRecord {
        name: name.into(),
        app: "netbox-agent".into(),
        app_version: "0.1.0".into(),
        vmid,
        node: "pve".into(),
        intended_state: IntendedState::Running,
        spec: StoredSpec {
            resources,
            tags: vec!["1ld".into()],
            settings: Default::default(),
            secret_keys: vec!["netbox_token".into()],
            supervise: Default::default(),
            backup: Default::default(),
        },
        config_hash: "fnv1a64:0".into(),
        ip: None,
        health: HealthSummary {
            status: HealthStatus::Unknown,
            checked_at: None,
            detail: None,
        },
        drift: Vec::new(),
        adopted: false,
        created_ms: 0,
        updated_ms: 0,
        last_backup_ms: None,
    }
}

/// Wraps the sandbox `pct` in `bin_dir` with the stand-in.
fn stand_in_pct(bin_dir: &Path, traces: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let pct = bin_dir.join("pct");
    let real = bin_dir.join("pct.sandbox");
    std::fs::rename(&pct, &real).expect("move the sandbox pct");
    let mut journal = String::new();
    for l in JOURNAL {
        journal.push_str(&format!("printf '%s\\n' '{l}'\n"));
    }
    journal.push_str(&format!(
        "printf '%s\\n' '{{\"__REALTIME_TIMESTAMP\":\"1764117607000000\",\"PRIORITY\":\"3\",\"MESSAGE\":\"auth failed with token {TOKEN}\"}}'\n"
    ));
    let script = format!(
        r#"#!/bin/sh
T='{t}'
case "$1 $2" in
"status {run}"|"status {nj}") echo "status: running"; exit 0;;
"status {stop}") echo "status: stopped"; exit 0;;
"exec {nj}") echo "lxc-attach: 153: attach.c: lxc_attach_run_command: Failed to exec \"journalctl\": No such file or directory" >&2; exit 127;;
"exec {run}")
  shift 5
  echo "$@" > "$T/argv"
  echo $$ > "$T/pid"
{journal}  case " $* " in
  *" --follow "*) sleep 300 & echo $! > "$T/sleep.pid"; wait; exit 0;;
  esac
  exit 0;;
esac
exec '{real}' "$@"
"#,
        t = traces.display(),
        run = RUNNING.1,
        nj = NO_JOURNAL.1,
        stop = STOPPED.1,
        real = real.display(),
    );
    std::fs::write(&pct, script).expect("stand-in pct");
    std::fs::set_permissions(&pct, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A daemon on the sandbox tools with the stand-in `pct` and the four
/// deployments above recorded (the secret `netbox_token` of `nb` stored).
pub(crate) fn logs_daemon() -> LogsDaemon {
    let traces = tempfile::tempdir().expect("tmp").keep();
    let t = traces.clone();
    let daemon = Daemon::with(Options {
        prepare: Box::new(move |cfg| {
            let bin = cfg.pve.bin_dir.clone().expect("bin_dir");
            stand_in_pct(&bin, &t);
            let paths = Paths::from_config(cfg);
            let store = Store::open(&paths).expect("store");
            for (name, vmid) in [RUNNING, STOPPED, MISSING, NO_JOURNAL] {
                store
                    .insert_deployment(&record(name, vmid))
                    .expect("record");
            }
            Secrets::open(&paths)
                .expect("secrets")
                .put(RUNNING.0, "netbox_token", TOKEN)
                .expect("secret");
        }),
        ..Options::default()
    })
    .expect("daemon");
    LogsDaemon { daemon, traces }
}

/// An open NDJSON response.
struct Lines {
    body: Incoming,
    buf: Vec<u8>,
}

impl Lines {
    async fn open(socket: &Path, path: &str) -> (u16, Lines) {
        let client: HyperClient<_, Full<Bytes>> = HyperClient::unix();
        let req = hyper::Request::get(Uri::new(socket, path))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = tokio::time::timeout(LIMIT, client.request(req))
            .await
            .expect("headers in time")
            .expect("response");
        let status = resp.status().as_u16();
        (
            status,
            Lines {
                body: resp.into_body(),
                buf: Vec::new(),
            },
        )
    }

    /// The next line; `None` at the end of the body.
    async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_string());
            }
            let frame = tokio::time::timeout(LIMIT, self.body.frame())
                .await
                .expect("a line in time");
            match frame {
                None => return None,
                Some(Err(e)) => panic!("stream broke: {e}"),
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        self.buf.extend_from_slice(&d);
                    }
                }
            }
        }
    }
}

fn pid_in(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("pid")
}

#[tokio::test]
async fn logs_are_the_journal_as_ndjson_redacted() {
    let l = logs_daemon();
    let (status, mut lines) =
        Lines::open(&l.daemon.socket, "/v1/deployments/nb/logs?lines=3").await;
    assert_eq!(status, 200);
    let mut got = Vec::new();
    while let Some(line) = lines.next().await {
        got.push(serde_json::from_str::<LogLine>(&line).expect("a LogLine"));
    }
    let text: Vec<(&str, &str, Option<u8>)> = got
        .iter()
        .map(|l| (l.time.as_str(), l.line.as_str(), l.priority))
        .collect();
    assert_eq!(
        text,
        [
            (
                "2025-11-26T00:40:05.123456Z",
                "netbox-agent 0.1.0 starting",
                Some(6)
            ),
            ("2025-11-26T00:40:06Z", "cycle: \u{fffd}", Some(4)),
            (
                "2025-11-26T00:40:07Z",
                "auth failed with token ***",
                Some(3)
            ),
        ]
    );
    let argv = std::fs::read_to_string(l.traces.join("argv")).expect("argv");
    assert_eq!(
        argv.trim(),
        "journalctl --unit=netbox-agent.service --lines=3 --output=json \
         --output-fields=MESSAGE,PRIORITY --all --no-pager --quiet"
    );
    // The default is 50 entries; `follow=false` is the default.
    let r = l
        .daemon
        .client()
        .get("/v1/deployments/nb/logs")
        .await
        .expect(200);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    assert_eq!(r.text().lines().count(), 3);
    assert!(!r.text().contains(TOKEN));
    let argv = std::fs::read_to_string(l.traces.join("argv")).expect("argv");
    assert!(
        argv.contains("--lines=50") && !argv.contains("--follow"),
        "{argv}"
    );
}

#[tokio::test]
async fn follow_streams_until_the_client_goes_then_the_command_dies() {
    let l = logs_daemon();
    let (status, mut lines) = Lines::open(
        &l.daemon.socket,
        "/v1/deployments/nb/logs?lines=2&follow=true",
    )
    .await;
    assert_eq!(status, 200);
    for _ in 0..3 {
        let line = lines.next().await.expect("a line");
        serde_json::from_str::<LogLine>(&line).expect("a LogLine");
    }
    let argv = std::fs::read_to_string(l.traces.join("argv")).expect("argv");
    assert!(
        argv.contains("--follow") && argv.contains("--lines=2"),
        "{argv}"
    );
    let sleep_pid = l.traces.join("sleep.pid");
    // The shell creates the file before it writes the pid: wait for a pid.
    let sleeper = wait_for("the follower to start", LIMIT, || {
        let pid = std::fs::read_to_string(&sleep_pid)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        async move { pid }
    })
    .await;
    let pct = pid_in(&l.traces.join("pid"));
    assert!(alive(pct) && alive(sleeper));
    // Still open: nothing more, no end.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), lines.next())
            .await
            .is_err(),
        "the follow stream ended by itself"
    );
    drop(lines);
    wait_for(
        "pct exec and its children to be killed",
        LIMIT,
        || async move { (!alive(pct) && !alive(sleeper)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn unknown_404_stopped_missing_and_no_journal_422_bad_lines_400() {
    let l = logs_daemon();
    let c = l.daemon.client();
    let (code, msg) = c.get("/v1/deployments/nope/logs").await.expect(404).error();
    assert_eq!(code, "not_found");
    assert!(msg.contains("nope"), "{msg}");
    let (code, msg) = c
        .get("/v1/deployments/nb-stopped/logs")
        .await
        .expect(422)
        .error();
    assert_eq!(code, "invalid_state");
    assert!(
        msg.contains("CT 152")
            && msg.contains("stopped")
            && msg.contains("1ldctl start nb-stopped"),
        "{msg}"
    );
    let (_, msg) = c
        .get("/v1/deployments/nb-missing/logs?follow=true")
        .await
        .expect(422)
        .error();
    assert!(msg.contains("missing"), "{msg}");
    let (_, msg) = c
        .get("/v1/deployments/nb-nojournal/logs?follow=true")
        .await
        .expect(422)
        .error();
    assert!(
        msg.contains("journalctl failed in CT 153 (exit status 127)")
            && msg.contains("No such file"),
        "{msg}"
    );
    let (_, msg) = c
        .get("/v1/deployments/nb/logs?lines=10001")
        .await
        .expect(400)
        .error();
    assert!(msg.contains("lines"), "{msg}");
    c.get("/v1/deployments/nb/logs?lines=x").await.expect(400);
    c.get("/v1/deployments/nb/logs?bogus=1").await.expect(400);
}

// ---------------------------------------------------------------- root tier

use crate::support;

/// A deployed netbox-agent on a private sandbox node (real LXC, journald
/// in the container): its journal through the API, `--follow` ended by the
/// client (no `journalctl` left in the container), 422 once it is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_logs_of_a_deployed_agent() {
    if !crate::daemon::root_tier("root_logs_of_a_deployed_agent", "containers need root") {
        return;
    }
    let agents = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release");
    assert!(
        agents.join("netbox-agent").is_file(),
        "no agent binaries in target/release: run `make agents-bin`"
    );
    let node = support::SandboxNode::up(8, "sbxlog0", "10.213.84.0/24");
    let bin_holder = tempfile::tempdir().expect("tmp");
    let bin = bin_holder.path().join("pvebin");
    std::fs::create_dir_all(&bin).expect("bin");
    for tool in ["pct", "pveam", "pvesm", "pvesh", "pveversion", "vzdump"] {
        use std::os::unix::fs::PermissionsExt;
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!(
                "#!/bin/sh\nPVE_SANDBOX_ROOT='{}' exec '{}' {tool} \"$@\"\n",
                node.path("").display(),
                support::bin_dir().join("pve-sandbox").display()
            ),
        )
        .expect("wrapper");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let b = bin.clone();
    let daemon = Daemon::with(Options {
        sandbox: false,
        config: Box::new(move |c| {
            c.pve.bin_dir = Some(b);
            c.pve.command_timeout_secs = 60;
            c.pve.long_command_timeout_secs = 300;
            c.apps.agents_dir = agents;
            c.apps.lease_timeout_secs = 20;
            c.apps.drift_interval_secs = 0;
        }),
        ..Options::default()
    })
    .expect("daemon");
    let c = daemon.client();
    let op: oneld::api::Operation = c
        .post(
            "/v1/deployments",
            &json!({"app": "netbox-agent", "name": "nb",
                    "settings": {"netbox_url": "http://10.254.254.254:8000"},
                    "secrets": {"netbox_token": TOKEN},
                    "overrides": {"bridge": "sbxlog0", "storage": "local-lvm", "memory": 512}}),
        )
        .await
        .expect(202)
        .json();
    let op = wait_for("the deploy", Duration::from_secs(240), || {
        let c = c.clone();
        let id = op.id.clone();
        async move {
            let op: oneld::api::Operation = c
                .get(&format!("/v1/operations/{id}/wait?timeout=15"))
                .await
                .expect(200)
                .json();
            op.status.is_final().then_some(op)
        }
    })
    .await;
    assert_eq!(op.status, oneld::api::OpStatus::Succeeded, "{op:?}");
    let dep: oneld::api::Deployment = c.get("/v1/deployments/nb").await.expect(200).json();
    let vmid = dep.vmid.to_string();

    // The last entries of the unit's journal: started by systemd, then the agent.
    let r = c.get("/v1/deployments/nb/logs?lines=5").await.expect(200);
    let lines: Vec<LogLine> = r
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("LogLine"))
        .collect();
    assert!(!lines.is_empty() && lines.len() <= 5, "{}", r.text());
    assert!(lines
        .iter()
        .all(|l| l.time.starts_with("20") && l.time.ends_with('Z')));
    assert!(!r.text().contains(TOKEN));

    // Follow: entries come; when the client goes, journalctl in the CT ends.
    let pgrep = || {
        let out = std::process::Command::new(bin.join("pct"))
            .args(["exec", &vmid, "--", "pgrep", "-x", "journalctl"])
            .output()
            .expect("pct exec pgrep");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (status, mut follow) = Lines::open(
        &daemon.socket,
        "/v1/deployments/nb/logs?lines=1&follow=true",
    )
    .await;
    assert_eq!(status, 200);
    let first = follow.next().await.expect("an entry");
    serde_json::from_str::<LogLine>(&first).expect("LogLine");
    wait_for("journalctl -f in the container", LIMIT, || {
        let found = !pgrep().is_empty();
        async move { found.then_some(()) }
    })
    .await;
    drop(follow);
    wait_for("journalctl in the container to exit", LIMIT, || {
        let gone = pgrep().is_empty();
        async move { gone.then_some(()) }
    })
    .await;

    // A stopped container: 422 naming what to do.
    let out = std::process::Command::new(bin.join("pct"))
        .args(["stop", &vmid])
        .output()
        .expect("pct stop");
    assert!(out.status.success(), "{out:?}");
    let (code, msg) = c.get("/v1/deployments/nb/logs").await.expect(422).error();
    assert_eq!(code, "invalid_state");
    assert!(msg.contains("1ldctl start nb"), "{msg}");
}
