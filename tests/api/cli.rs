//! `1ldctl`, end to end: the real binary (`CARGO_BIN_EXE_1ldctl`) against
//! the in-process daemon of `daemon/mod.rs` on its temp socket, with the
//! sandbox node's tools. Every command, `--json` for each, every exit code,
//! Ctrl-C during a long operation, no escape codes off a terminal, and the
//! golden human output (`tests/fixtures/cli/`, `UPDATE_GOLDEN=1` rewrites).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oneld::api::{AppCatalog, AppInfo, HostInfo, OpLogChunk, OpStatus, Operation, Plan, RootInfo};
use serde_json::Value;

use super::daemon::{Daemon, Options, LIMIT, TINY};

const CTL: &str = env!("CARGO_BIN_EXE_1ldctl");
const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/cli");

/// What a run of `1ldctl` left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn code(self, code: i32) -> Self {
        assert_eq!(self.code, code, "exit status of 1ldctl: {self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    #[track_caller]
    fn no_escapes(self) -> Self {
        assert!(
            !self.stdout.contains('\u{1b}') && !self.stderr.contains('\u{1b}'),
            "escape codes off a terminal: {self:#?}"
        );
        self
    }
}

fn command(socket: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(CTL);
    cmd.arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .env_remove("NO_COLOR")
        .env_remove("ONELD_SOCKET");
    cmd
}

/// Runs `1ldctl --socket <socket> args...` (stdin closed, not a terminal).
fn ctl_at(socket: &Path, args: &[&str]) -> Run {
    let out = command(socket, args).output().expect("run 1ldctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ctl(d: &Daemon, args: &[&str]) -> Run {
    ctl_at(&d.socket, args).no_escapes()
}

/// Polls `f` (blocking) until it yields, at most [`LIMIT`].
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn ops_json(d: &Daemon, status: &str) -> Vec<Operation> {
    serde_json::from_value(
        ctl(d, &["--json", "ops", "--status", status])
            .code(0)
            .json(),
    )
    .expect("operations")
}

#[test]
fn version_host_and_completions() {
    let d = Daemon::start();
    let r = ctl(&d, &["version"]).code(0);
    assert!(r.stdout.contains("client:") && r.stdout.contains(env!("CARGO_PKG_VERSION")));
    assert!(r.stdout.contains("daemon:"), "{r:#?}");
    let v = ctl(&d, &["version", "--json"]).code(0).json();
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    let root: RootInfo = serde_json::from_value(v["daemon"].clone()).expect("RootInfo");
    assert_eq!(root.api_versions, ["v1"]);

    let r = ctl(&d, &["host"]).code(0);
    for want in [
        "node:", "pve", "STORAGE", "ctdata", "rootdir", "TEMPLATE", TINY,
    ] {
        assert!(r.stdout.contains(want), "{want} missing: {}", r.stdout);
    }
    let h: HostInfo =
        serde_json::from_value(ctl(&d, &["--json", "host"]).code(0).json()).expect("HostInfo");
    assert!(h.storages.iter().any(|s| s.name == "local"));

    for shell in ["bash", "zsh", "fish"] {
        let r = ctl(&d, &["completions", shell]).code(0);
        assert!(
            r.stdout.contains("1ldctl") && r.stdout.len() > 1000,
            "{shell}"
        );
    }
    ctl(&d, &["completions", "tcsh"]).code(2);
}

#[test]
fn a_template_download_through_the_client() {
    let d = Daemon::start();
    // Non-TTY progress: plain timestamped lines on stderr, the step names.
    let r = ctl(&d, &["template", "download", TINY, "--storage", "local"]).code(0);
    assert!(r.stderr.contains("[1/5] check storage"), "{r:#?}");
    assert!(r.stderr.contains("succeeded"), "{r:#?}");
    let ops = ops_json(&d, "succeeded");
    let op = &ops[0];
    assert_eq!(op.kind, "template.download");

    // ops / op / op --log, human and JSON.
    let r = ctl(&d, &["ops"]).code(0);
    assert!(r.stdout.starts_with("ID "), "{r:#?}");
    assert!(r.stdout.contains(&op.id) && r.stdout.contains("succeeded"));
    let r = ctl(&d, &["op", &op.id]).code(0);
    assert!(r.stdout.contains("status:") && r.stdout.contains("template.download"));
    let one: Operation =
        serde_json::from_value(ctl(&d, &["--json", "op", &op.id]).code(0).json()).expect("op");
    assert_eq!(one.id, op.id);
    let r = ctl(&d, &["op", &op.id, "--log"]).code(0);
    assert!(r.stdout.contains("downloaded"), "{r:#?}");
    let log: OpLogChunk =
        serde_json::from_value(ctl(&d, &["--json", "op", &op.id, "--log"]).code(0).json())
            .expect("log");
    assert!(log.complete && !log.lines.is_empty());
    let r = ctl(&d, &["op", &op.id, "--wait"]).code(0);
    assert!(r.stdout.contains("succeeded"));
    let v = ctl(&d, &["--json", "op", &op.id, "--wait", "--log"])
        .code(0)
        .json();
    assert_eq!(v["operation"]["status"], "succeeded");
    assert!(v["log"]["lines"].as_array().is_some_and(|l| !l.is_empty()));

    // --json of a submitted operation is the final operation; -q prints nothing.
    let v = ctl(&d, &["--json", "template", "download", TINY])
        .code(0)
        .json();
    assert_eq!(v["status"], "succeeded");
    let r = ctl(&d, &["-q", "template", "download", TINY]).code(0);
    assert!(r.stdout.is_empty() && r.stderr.is_empty(), "{r:#?}");
    // --no-wait returns the accepted operation and says how to follow it.
    let r = ctl(&d, &["template", "download", TINY, "--no-wait"]).code(0);
    assert!(r.stdout.contains("--wait"), "{r:#?}");
    let ops = ops_json(&d, "queued,running,succeeded");
    ctl(&d, &["op", &ops[0].id, "--wait"]).code(0);
}

#[test]
fn exit_codes_0_1_2_3_5_69() {
    let d = Daemon::start();
    // 2: usage (clap), a secret on argv, destroy without --yes off a terminal,
    // a bad filter the daemon rejects (400).
    ctl(&d, &["op"]).code(2);
    ctl(&d, &["frobnicate"]).code(2);
    let r = ctl(&d, &["deploy", "x", "--secret", "token=hunter2"]).code(2);
    assert!(!r.stderr.contains("hunter2"), "{r:#?}");
    let r = ctl(&d, &["destroy", "x"]).code(2);
    assert!(r.stderr.contains("--yes"), "{r:#?}");
    let r = ctl(&d, &["ops", "--status", "bogus"]).code(2);
    assert!(r.stderr.contains("status"), "{r:#?}");
    let r = ctl(&d, &["--json", "ops", "--status", "bogus"]).code(2);
    let err: Value = serde_json::from_str(r.stderr.trim()).expect("JSON error body");
    assert_eq!(err["error"]["code"], "bad_request");
    ctl(&d, &["events", "--after", "x"]).code(2);
    ctl(&d, &["logs", "x", "-n", "many"]).code(2);

    // 3: not found.
    let r = ctl(&d, &["op", "no-such-op"]).code(3);
    assert!(r.stderr.contains("no-such-op"), "{r:#?}");
    ctl(&d, &["cancel", "no-such-op"]).code(3);

    // 1: the operation failed (pveam fails), with the hint to read its log.
    d.tools().faults(&["pveam download fail 1 mirror on fire"]);
    let r = ctl(&d, &["template", "download", TINY]).code(1);
    assert!(
        r.stderr.contains("failed") && r.stderr.contains("--log"),
        "{r:#?}"
    );
    let v = ctl(&d, &["--json", "template", "download", TINY])
        .code(1)
        .json();
    assert_eq!(v["status"], "failed");

    // 5: a second download of the same template while the first hangs (409),
    // and cancelling a finished operation (422).
    d.tools().faults(&["pveam download hang"]);
    let r = ctl(&d, &["template", "download", TINY, "--no-wait"]).code(0);
    let first = ops_json(&d, "queued,running");
    assert_eq!(first.len(), 1, "{r:#?}");
    let r = ctl(&d, &["template", "download", TINY]).code(5);
    assert!(r.stderr.contains(&first[0].id), "names the holder: {r:#?}");
    let r = ctl(&d, &["cancel", &first[0].id]).code(0);
    assert!(r.stdout.contains("cancel requested"), "{r:#?}");
    let r = ctl(&d, &["op", &first[0].id, "--wait"]).code(1);
    assert!(r.stdout.contains("cancelled"), "{r:#?}");
    ctl(&d, &["cancel", &first[0].id]).code(5);
    d.tools().faults(&[]);

    // 69: no daemon on the socket.
    let gone = d.dir.path().join("nobody-here.sock");
    let r = ctl_at(&gone, &["ops"]).code(69);
    assert!(
        r.stderr.contains(&gone.display().to_string()) && r.stderr.contains("systemctl status 1ld"),
        "{r:#?}"
    );
    let r = ctl_at(&gone, &["--json", "version"]).code(69);
    assert!(r.stderr.contains("daemon_unavailable"), "{r:#?}");
    assert_eq!(r.json()["daemon"], Value::Null);
}

/// Runs `1ldctl` as `nobody` (root) — the way a user without the admin role meets it.
fn ctl_as_nobody(socket: &Path, args: &[&str]) -> Run {
    use std::os::unix::process::CommandExt;
    let out = command(socket, args)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run 1ldctl as nobody");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn exit_code_4_permission_denied() {
    let root = nix::unistd::geteuid().is_root();
    let d = Daemon::with(Options {
        config: Box::new(move |c| {
            if root {
                // nobody (gid nogroup) is a viewer; admins are group root.
                c.api.group = "nogroup".into();
                c.api.admin_group = "root".into();
            } else {
                // We are a viewer: admins are a group we are not in.
                c.api.admin_group = "root".into();
            }
        }),
        ..Options::default()
    })
    .expect("daemon");
    let run = |args: &[&str]| {
        if root {
            ctl_as_nobody(&d.socket, args)
        } else {
            ctl_at(&d.socket, args)
        }
    };
    // A viewer reads...
    run(&["ops"]).code(0);
    // ...but changes nothing: 403 -> 4, with the usermod hint.
    let r = run(&["template", "download", TINY]).code(4);
    assert!(
        r.stderr.contains("usermod -aG") && r.stderr.contains("root"),
        "{r:#?}"
    );
    let r = run(&["--json", "cancel", "x"]).code(4);
    assert!(r.stderr.contains("forbidden"), "{r:#?}");

    if root {
        // A user outside the socket's group cannot even connect.
        let d2 = Daemon::start();
        let r = ctl_as_nobody(&d2.socket, &["ops"]).code(4);
        assert!(r.stderr.contains("usermod -aG"), "{r:#?}");
    }
}

/// Exit 130: the first Ctrl-C requests the cancel; while the operation is
/// still compensating (its `pveam list` hangs), a second one detaches and
/// says how to re-attach.
#[test]
fn a_second_ctrl_c_detaches_with_exit_130() {
    use nix::sys::signal::{kill, Signal};
    let d = Daemon::start();
    // Step 2's `pveam list` answers (template absent); the download hangs;
    // the compensation's `pveam list` hangs too, so the cancel takes long.
    d.tools().faults(&[
        "pveam list delay 1 once",
        "pveam download hang",
        "pveam list hang",
    ]);
    let mut child = command(&d.socket, &["template", "download", TINY])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn 1ldctl");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let op = poll("the download to run", || {
        ops_json(&d, "running")
            .into_iter()
            .find(|o| o.progress.step >= 4)
    });
    kill(pid, Signal::SIGINT).expect("first SIGINT");
    // The cancel was requested: the daemon has it (the op stops being
    // cancellable once it compensates), and the client is still attached.
    poll("the cancel to reach the daemon", || {
        let o: Operation =
            serde_json::from_value(ctl(&d, &["--json", "op", &op.id]).code(0).json()).ok()?;
        (!o.cancellable || o.status.is_final()).then_some(())
    });
    assert!(child.try_wait().expect("wait").is_none(), "still attached");
    kill(pid, Signal::SIGINT).expect("second SIGINT");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "1ldctl did not detach");
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains(&format!("1ldctl op {} --wait", op.id)),
        "{stderr}"
    );
    // Detaching does not stop the operation.
    let o: Operation =
        serde_json::from_value(ctl(&d, &["--json", "op", &op.id]).code(0).json()).expect("op");
    assert!(!o.status.is_final(), "{o:?}");
}

#[test]
fn ctrl_c_during_a_long_operation_requests_cancel() {
    use nix::sys::signal::{kill, Signal};
    let d = Daemon::start();
    d.tools().faults(&["pveam download hang"]);
    let mut child = command(&d.socket, &["template", "download", TINY])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn 1ldctl");
    let op = poll("the download to run", || {
        ops_json(&d, "running")
            .into_iter()
            .find(|o| o.progress.step >= 4)
    });
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )
    .expect("SIGINT");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "1ldctl did not end after Ctrl-C");
        std::thread::sleep(Duration::from_millis(25));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cancel requested for operation {}", op.id)),
        "{stderr}"
    );
    assert_eq!(
        status.code(),
        Some(1),
        "cancelled = the operation did not succeed: {stderr}"
    );
    let done: Operation =
        serde_json::from_value(ctl(&d, &["--json", "op", &op.id]).code(0).json()).expect("op");
    assert_eq!(done.status, OpStatus::Cancelled);
    let who = done.error.expect("why").message;
    assert!(who.contains("cancelled by"), "{who}");
}

/// The lines of a child's `stdout` as they come, read on their own thread.
fn line_channel(stdout: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[test]
fn events_follow_prints_the_live_stream() {
    let d = Daemon::start();
    for json in [false, true] {
        let mut args = vec!["events", "-f", "--type", "operation"];
        if json {
            args.insert(0, "--json");
        }
        let mut child = command(&d.socket, &args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn events -f");
        // The stream is subscribed once the child's request is answered;
        // submit until an event shows (bounded).
        let stdout = child.stdout.take().expect("stdout");
        let rx = line_channel(stdout);
        let line = poll("an operation event from events -f", || {
            ctl(&d, &["-q", "template", "download", TINY]).code(0);
            rx.recv_timeout(Duration::from_millis(500)).ok()
        });
        if json {
            let e: Value = serde_json::from_str(&line).expect("NDJSON event");
            assert_eq!(e["type"], "operation");
        } else {
            assert!(
                line.contains("operation") && line.contains("template.download"),
                "{line}"
            );
            assert!(!line.contains('\u{1b}'));
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .expect("SIGINT");
        let status = child.wait().expect("wait");
        assert_eq!(status.code(), Some(0), "events -f ends cleanly on Ctrl-C");
    }
}

#[test]
fn doctor_reports_checks() {
    let d = Daemon::start();
    let r = ctl(&d, &["doctor"]);
    assert!(r.code == 0 || r.code == 1, "{r:#?}");
    assert!(r.stdout.starts_with("CHECK"), "{r:#?}");
    let v = ctl(&d, &["--json", "doctor"]).json();
    let checks = v["checks"].as_array().expect("checks");
    let by = |n: &str| {
        checks
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no check {n}: {v}"))
            .clone()
    };
    assert_eq!(by("daemon")["status"], "ok");
    assert_eq!(by("versions")["status"], "ok");
    assert_eq!(by("role")["status"], "ok");
    assert_eq!(by("container storage")["detail"], "ctdata");
    assert_eq!(by("template storage")["detail"], "local");
    // Without a daemon: one failing check, exit 1.
    let r = ctl_at(&d.dir.path().join("none.sock"), &["doctor"]).code(1);
    assert!(r.stdout.contains("systemctl status 1ld"), "{r:#?}");
}

const TOKEN: &str = "nbt_0123456789ab.deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

/// A daemon on the sandbox tools (no containers) with a fake sysfs bridge
/// `vmbr1ldt`, stand-in agent binaries and `ctdata` as the default storage.
fn deploy_daemon() -> (Daemon, tempfile::TempDir) {
    let aux = tempfile::tempdir().expect("tmp");
    let net = aux.path().join("net");
    let agents = aux.path().join("agents");
    std::fs::create_dir_all(net.join("vmbr1ldt/bridge")).expect("fake bridge");
    std::fs::create_dir_all(&agents).expect("agents");
    for a in ["netbox-agent", "wikijs-integration"] {
        std::fs::write(agents.join(a), b"#!/bin/false\n").expect("agent");
    }
    let d = Daemon::with(Options {
        config: Box::new(move |c| {
            c.apps.sys_class_net = net;
            c.apps.agents_dir = agents;
            c.apps.storage = "ctdata".into();
            c.apps.dir = c.state_dir.join("apps.d");
        }),
        ..Options::default()
    })
    .expect("daemon");
    (d, aux)
}

#[test]
fn apps_deploy_dry_run_validation_and_apply() {
    let (d, aux) = deploy_daemon();
    // apps / apps show, human and JSON.
    let r = ctl(&d, &["apps"]).code(0);
    assert!(
        r.stdout.starts_with("APP") && r.stdout.contains("netbox-agent"),
        "{r:#?}"
    );
    let c: AppCatalog =
        serde_json::from_value(ctl(&d, &["--json", "apps"]).code(0).json()).expect("AppCatalog");
    assert!(c.apps.iter().any(|a| a.name == "wikijs-integration"));
    let r = ctl(&d, &["apps", "show", "netbox-agent"]).code(0);
    assert!(
        r.stdout.contains("netbox_url") && r.stdout.contains("(required)"),
        "{r:#?}"
    );
    let a: AppInfo = serde_json::from_value(
        ctl(&d, &["--json", "apps", "show", "netbox-agent"])
            .code(0)
            .json(),
    )
    .expect("AppInfo");
    assert_eq!(a.name, "netbox-agent");
    ctl(&d, &["apps", "show", "no-such-app"]).code(3);

    // ls: empty, human and JSON.
    let r = ctl(&d, &["ls"]).code(0);
    assert!(r.stdout.contains("no deployments"), "{r:#?}");
    assert_eq!(
        ctl(&d, &["--json", "ls"]).code(0).json(),
        Value::Array(vec![])
    );

    // deploy --dry-run: the plan with the exact pct create; the secret from a file.
    let token = aux.path().join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).expect("token file");
    let secret = format!("netbox_token=@{}", token.display());
    let base = [
        "deploy",
        "netbox-agent",
        "--set",
        "netbox_url=http://netbox.lan:8000",
        "--secret",
        &secret,
        "--bridge",
        "vmbr1ldt",
    ];
    let dry = |extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        args.extend_from_slice(extra);
        ctl(&d, &args)
    };
    let r = dry(&["--dry-run"]).code(0);
    assert!(
        r.stdout.contains("pct create:") && r.stdout.contains("pct create 14"),
        "{r:#?}"
    );
    assert!(r.stdout.contains("dry run: nothing was changed"), "{r:#?}");
    assert!(
        !r.stdout.contains(TOKEN),
        "the secret is never printed: {r:#?}"
    );
    let plan: Plan =
        serde_json::from_value(dry(&["--dry-run", "--json"]).code(0).json()).expect("Plan");
    assert_eq!(&plan.pct_create[..2], &["pct", "create"]);
    // The secret from stdin works the same.
    let mut child = command(
        &d.socket,
        &[
            "deploy",
            "netbox-agent",
            "--set",
            "netbox_url=http://netbox.lan:8000",
            "--secret",
            "netbox_token=-",
            "--bridge",
            "vmbr1ldt",
            "--dry-run",
            "--json",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(TOKEN.as_bytes()).expect("write token");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong storage: one clear sentence naming it (exit 2).
    let r = dry(&["--storage", "nope", "--dry-run"]).code(2);
    assert!(
        r.stderr.contains("nope") && r.stderr.contains("storage"),
        "{r:#?}"
    );
    // Required settings missing: each listed on its own line (exit 2).
    let r = ctl(
        &d,
        &[
            "deploy",
            "netbox-agent",
            "--bridge",
            "vmbr1ldt",
            "--dry-run",
        ],
    )
    .code(2);
    let listed: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with("  - ")).collect();
    assert!(
        listed.iter().any(|l| l.contains("netbox_url"))
            && listed.iter().any(|l| l.contains("netbox_token")),
        "{r:#?}"
    );
    // A secret given with --set is refused before any request.
    let r = ctl(&d, &["deploy", "netbox-agent", "--set", "netbox_token=x"]).code(2);
    assert!(r.stderr.contains("--secret"), "{r:#?}");

    // apply -f spec --dry-run: the diff (a new deployment), human and JSON.
    let spec = aux.path().join("spec.toml");
    std::fs::write(
        &spec,
        "name = \"nb\"\napp = \"netbox-agent\"\n[settings]\nnetbox_url = \"http://netbox.lan:8000\"\n\
         [secrets]\nnetbox_token = \"@token\"\n[overrides]\nbridge = \"vmbr1ldt\"\n",
    )
    .expect("spec");
    let spec = spec.display().to_string();
    let r = ctl(&d, &["apply", "-f", &spec, "--dry-run"]).code(0);
    assert!(r.stdout.contains("+ nb (new deployment)"), "{r:#?}");
    let v = ctl(&d, &["--json", "apply", "-f", &spec, "--dry-run"])
        .code(0)
        .json();
    assert_eq!(v[0]["name"], "nb", "{v}");
    // deploy -f takes the same spec.
    ctl(&d, &["deploy", "-f", &spec, "--dry-run"]).code(0);
    let bad = aux.path().join("bad.toml");
    std::fs::write(&bad, "app = \"netbox-agent\"\n[overrides]\ncpu = 2\n").expect("bad");
    let r = ctl(&d, &["apply", "-f", &bad.display().to_string()]).code(2);
    assert!(r.stderr.contains("cpu"), "{r:#?}");

    // Unknown deployments: 3, nothing on stdout. `logs` has no route yet:
    // the daemon's 404 says so.
    for args in [
        &["status", "nope"][..],
        &["start", "nope"],
        &["stop", "nope"],
        &["restart", "nope"],
        &["destroy", "nope", "--yes"],
        &["logs", "nope"],
        &["--json", "status", "nope"],
    ] {
        let r = ctl(&d, args).code(3);
        assert!(r.stdout.is_empty(), "{args:?}: {r:#?}");
    }
    // adopt: a container that does not exist.
    let r = ctl(&d, &["adopt", "999", "--app", "netbox-agent"]);
    assert!(r.code == 3 || r.code == 2, "{r:#?}");
}

// ---- golden human output ---------------------------------------------------

#[track_caller]
fn golden(name: &str, text: &str) {
    let path = Path::new(GOLDEN_DIR).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(GOLDEN_DIR).expect("golden dir");
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        want == text,
        "human output of {name} changed; if intended, run with UPDATE_GOLDEN=1 \
         (`UPDATE_GOLDEN=1 cargo test -p oneld --test api cli::golden`).\n--- golden\n{want}\n+++ now\n{text}"
    );
}

fn fixture<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("fixture")
}

fn sample_op(id: &str, status: &str, step: u32, name: &str) -> Operation {
    fixture(serde_json::json!({
        "id": id, "kind": "template.download",
        "target": format!("template/local/{TINY}"),
        "requestor": {"uid": 0, "user": "root", "pid": 4242},
        "status": status,
        "error": if status == "failed" {
            serde_json::json!({"code": "dependency_down", "message": "pveam download failed: mirror on fire"})
        } else { Value::Null },
        "created_at": "2026-01-02T03:04:05.678Z",
        "started_at": "2026-01-02T03:04:06Z",
        "finished_at": if status == "running" { Value::Null } else { Value::from("2026-01-02T03:04:09Z") },
        "progress": {"step": step, "steps": 5, "name": name, "percent": if status == "running" { Value::from(42.0) } else { Value::Null }},
        "cancellable": status == "running",
    }))
}

#[test]
fn golden_human_output() {
    use oneld::client::render::{self, deployments as rd, Style};
    let s = Style::PLAIN;
    let ops = vec![
        sample_op("op-3", "running", 4, "download"),
        sample_op("op-2", "failed", 4, "download"),
        sample_op("op-1", "succeeded", 5, "verify"),
    ];
    golden("ops.txt", &render::ops_table(&ops, s));
    golden("op.txt", &render::op_detail(&ops[1], s));
    let host: HostInfo = fixture(serde_json::json!({
        "pve": {"version": "9.0.3", "major": 9, "kernel": "6.14.8-2-pve", "node": "pve"},
        "storages": [
            {"name": "local", "type": "dir", "state": "active", "content": ["vztmpl", "backup", "iso"],
             "total_bytes": 107374182400u64, "used_bytes": 10737418240u64, "avail_bytes": 96636764160u64},
            {"name": "local-lvm", "type": "lvmthin", "state": "active", "content": ["rootdir", "images"],
             "total_bytes": 429496729600u64, "used_bytes": 0, "avail_bytes": 429496729600u64},
        ],
        "bridges": ["vmbr0"],
        "templates": {
            "available": [{"section": "system", "name": "debian-12-standard_12.12-1_amd64.tar.zst", "arch": "amd64"},
                          {"section": "system", "name": "alpine-3.22-default_20250617_amd64.tar.xz", "arch": null}],
            "downloaded": [{"storage": "local", "volid": "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst", "size_bytes": 126877696u64}]
        },
        "warnings": ["template index unavailable on storage 'nfs'"]
    }));
    golden("host.txt", &render::host(&host, s));
    let deployment = |name: &str, vmid: u32, state: &str, health: &str, drift: Value| {
        serde_json::json!({
            "name": name, "app": "netbox-agent", "app_version": "0.1.0", "vmid": vmid, "node": "pve",
            "intended_state": "running", "state": state, "ip": if state == "running" { Value::from("10.0.0.41") } else { Value::Null },
            "health": {"status": health, "checked_at": "2026-01-02T03:05:00Z", "detail": if health == "degraded" { Value::from("netbox unreachable") } else { Value::Null }},
            "settings": {"netbox_url": "https://netbox.example", "netbox_token": "***", "sync_interval": "5m"},
            "resources": {"cores": 1, "memory": 256, "swap": 0, "disk": 2, "storage": "local-lvm", "bridge": "vmbr0",
                          "ip": "dhcp", "gw": null, "ip6": "auto", "onboot": true},
            "config_hash": "3f2a9c", "adopted": false,
            "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z",
            "last_backup": null, "drift": drift,
        })
    };
    let ds: Vec<oneld::api::Deployment> = fixture(Value::Array(vec![
        deployment("netbox", 140, "running", "healthy", serde_json::json!([])),
        deployment(
            "wiki",
            141,
            "running",
            "degraded",
            serde_json::json!([{"field": "memory", "expected": "256", "actual": "512"}]),
        ),
        deployment("old", 142, "stopped", "unknown", serde_json::json!([])),
    ]));
    golden("ls.txt", &rd::list(&ds, s));
    golden("status.txt", &rd::status(&ds[1], &ops[2..], s));
    golden("ls-empty.txt", &rd::list(&[], s));
}

/// `1ldctl logs` (human, `--json`, `-f` until Ctrl-C, every error's exit
/// status) against the stand-in journal of `logs.rs`, and `1ldctl events`
/// listing the recent history.
#[test]
fn logs_and_event_history_through_the_client() {
    let l = crate::logs::logs_daemon();
    let d = &l.daemon;
    let r = ctl(d, &["logs", "nb", "-n", "3"]).code(0);
    golden("logs.txt", &r.stdout);
    assert!(!r.stdout.contains(crate::logs::TOKEN), "{r:#?}");
    let r = ctl(d, &["--json", "logs", "nb"]).code(0);
    let lines: Vec<oneld::api::LogLine> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON LogLine"))
        .collect();
    assert_eq!(lines.len(), 3, "{r:#?}");
    assert_eq!(lines[0].line, "netbox-agent 0.1.0 starting");
    // Exit codes: unknown 3, not running 5, out of range 2.
    let r = ctl(d, &["logs", "nope"]).code(3);
    assert!(r.stderr.contains("nope"), "{r:#?}");
    let r = ctl(d, &["logs", "nb-stopped", "-f"]).code(5);
    assert!(r.stderr.contains("1ldctl start nb-stopped"), "{r:#?}");
    let r = ctl(d, &["--json", "logs", "nb-missing"]).code(5);
    assert!(r.stderr.contains("invalid_state"), "{r:#?}");
    ctl(d, &["logs", "nb", "-n", "10001"]).code(2);

    // -f prints what comes and ends cleanly on Ctrl-C.
    let mut child = command(&d.socket, &["logs", "nb", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn logs -f");
    let stdout = child.stdout.take().expect("stdout");
    let rx = line_channel(stdout);
    let first = rx.recv_timeout(LIMIT).expect("a line from logs -f");
    assert!(first.contains("netbox-agent 0.1.0 starting"), "{first}");
    let sleeper = poll("the stand-in follower", || {
        std::fs::read_to_string(l.traces.join("sleep.pid"))
            .ok()?
            .trim()
            .parse::<i32>()
            .ok()
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    assert_eq!(child.wait().expect("wait").code(), Some(0));
    poll("the journal follower to die with the client", || {
        (!crate::daemon::alive(sleeper)).then_some(())
    });

    // events: the recent history (no -f), --json as NDJSON, --after. A
    // refused start is audited: there is at least one lifecycle event.
    ctl(d, &["start", "nope"]).code(3);
    let r = ctl(d, &["events"]).code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(!lines.is_empty(), "{r:#?}");
    let r = ctl(d, &["--json", "events"]).code(0);
    let events: Vec<oneld::api::Event> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON Event"))
        .collect();
    assert_eq!(events.len(), lines.len());
    let last = events.last().map(|e| e.seq).unwrap_or(0);
    let r = ctl(d, &["events", "--after", &last.to_string()]).code(0);
    assert!(r.stdout.contains("no recent events"), "{r:#?}");
    let r = ctl(d, &["--json", "events", "--after", &last.to_string()]).code(0);
    assert!(r.stdout.is_empty(), "{r:#?}");
    let r = ctl(d, &["events", "--type", "lifecycle"]).code(0);
    assert!(r.stdout.lines().all(|l| l.contains("lifecycle")), "{r:#?}");
}
