//! `template.download` against fake `pvesm`/`pveam` scripts (fakes, not
//! mocks: the real runner, real parsing, real process groups). The
//! end-to-end test against the sandbox node lives in the daemon's test binary.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;
use crate::api::{OpStatus, Requestor};
use crate::config::OpsConfig;
use crate::error::ErrorKind;
use crate::events::EventBus;
use crate::ops::Ops;
use crate::paths::Paths;
use crate::pve::{Pve, PveVersion, Runner};
use crate::secrets::Redactor;
use crate::store::Store;

const T: &str = "debian-12-standard_12.12-1_amd64.tar.zst";
const LONG: Duration = Duration::from_secs(20);

/// A fake node: `state/` holds the storage's files, the index and a call log.
struct Node {
    _dir: tempfile::TempDir,
    state: PathBuf,
    ops: Ops,
}

const PVESM: &str = r#"#!/bin/sh
echo "pvesm $*" >> "$STATE/calls"
echo "Name              Type     Status     Total (KiB)      Used (KiB) Available (KiB)        %"
echo "local              dir     active        98497780        13567264        79881132   13.77%"
case "$*" in *vztmpl*) exit 0;; esac
echo "local-lvm      lvmthin     active        98497780        13567264        79881132   13.77%"
"#;

const PVEAM: &str = r#"#!/bin/sh
echo "pveam $*" >> "$STATE/calls"
case "$1" in
list)
    echo "NAME                                                         SIZE  "
    for f in "$STATE/local"/*; do
        [ -f "$f" ] && echo "local:vztmpl/$(basename "$f")        1.00MB"
    done
    exit 0;;
available)
    [ -f "$STATE/index" ] && cat "$STATE/index"
    exit 0;;
update)
    [ -f "$STATE/index.remote" ] && cp "$STATE/index.remote" "$STATE/index"
    echo "update successful"
    exit 0;;
download)
    if [ -f "$STATE/block" ]; then
        echo partial > "$STATE/local/$3"
        echo $$ > "$STATE/download.pid"
        exec sleep 60
    fi
    echo data > "$STATE/local/$3"
    echo "download of 'http://download.proxmox.com/images/system/$3' to '/var/lib/vz/template/cache/$3' finished"
    exit 0;;
remove)
    rm -f "$STATE/local/${2#local:vztmpl/}"
    exit 0;;
esac
echo "unknown command" >&2
exit 2
"#;

fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    let state = dir.path().join("node");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::create_dir_all(state.join("local")).expect("mkdir");
    for (name, text) in [("pvesm", PVESM), ("pveam", PVEAM)] {
        let p = bin.join(name);
        let text = text.replacen(
            "#!/bin/sh\n",
            &format!("#!/bin/sh\nSTATE='{}'\n", state.display()),
            1,
        );
        std::fs::write(&p, text).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let pve = Pve::new(Runner::new(Some(bin)), PveVersion::new(9, 1), "pve");
    let store = Store::open(&Paths::under(&dir.path().join("1ld"))).expect("store");
    let ops = Ops::new(
        store,
        EventBus::new(),
        Redactor::new(),
        Some(pve),
        &OpsConfig::default(),
    );
    Node {
        _dir: dir,
        state,
        ops,
    }
}

impl Node {
    fn index(&self, file: &str, names: &[&str]) {
        let text: String = names
            .iter()
            .map(|n| format!("system          {n}                     amd64\n"))
            .collect();
        std::fs::write(self.state.join(file), text).expect("index");
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.state.join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.state.join("local").join(name).exists()
    }

    async fn run(&self, storage: &str, template: &str) -> crate::api::Operation {
        let task = TemplateDownload::new(storage, template).expect("valid");
        let op = self
            .ops
            .submit(Box::new(task), root())
            .await
            .expect("submit");
        self.ops.wait(&op.id, LONG).await.expect("wait")
    }
}

fn root() -> Requestor {
    Requestor {
        uid: 0,
        user: "root".into(),
        pid: 1,
    }
}

#[test]
fn validation_names_the_field() {
    for (s, t, field) in [
        ("", T, "storage"),
        ("1local", T, "storage"),
        ("lo cal", T, "storage"),
        ("local", "", "template"),
        ("local", "../etc/passwd", "template"),
        ("local", ".hidden", "template"),
        ("local", "a b", "template"),
    ] {
        let e = TemplateDownload::new(s, t).expect_err(t);
        assert_eq!(
            e.kind,
            ErrorKind::BadRequest {
                field: Some(field.into())
            },
            "{s} {t}"
        );
    }
    let t = TemplateDownload::new("local", T).expect("valid");
    assert_eq!(t.volid(), format!("local:vztmpl/{T}"));
    assert_eq!(t.target(), Some(format!("template/local/{T}")));
    assert!(!t.heavy());
    let rebuilt = crate::ops::kinds::rebuild(KIND, &t.payload()).expect("rebuild");
    assert_eq!(rebuilt.target(), t.target());
    assert!(crate::ops::kinds::rebuild(KIND, &serde_json::json!({"storage": 1})).is_none());
    assert!(crate::ops::kinds::rebuild("nope", &t.payload()).is_none());
}

#[test]
fn storage_check_decisions() {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/pve/pvesm-status-pve9.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture");
    let list = crate::pve::parse::pvesm::parse_status(&text).expect("parse");
    check_storage(&list, "local").expect("active dir storage");
    let e = check_storage(&list, "nfs-backup").expect_err("disabled");
    assert_eq!(e.kind, ErrorKind::DependencyDown);
    let e = check_storage(&list, "local-lvm").expect_err("no vztmpl");
    assert!(e.message.contains("pick one of: local"), "{}", e.message);
    let e = check_storage(&[], "local").expect_err("none");
    assert!(e.message.contains("no storage"), "{}", e.message);
}

#[tokio::test]
async fn downloads_after_updating_the_index() {
    let n = node();
    n.index("index.remote", &[T]);
    let op = n.run("local", T).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{:?}", op.error);
    assert!(n.has(T));
    assert_eq!(
        n.calls(),
        [
            "pvesm status --content vztmpl".to_string(),
            "pveam list local".into(),
            "pveam available".into(),
            "pveam update".into(),
            "pveam available".into(),
            format!("pveam download local {T}"),
            "pveam list local".into(),
        ]
    );
    assert_eq!(op.progress.step, 5);
}

#[tokio::test]
async fn present_template_is_left_alone() {
    let n = node();
    std::fs::write(n.state.join("local").join(T), "x").expect("seed");
    let op = n.run("local", T).await;
    assert_eq!(op.status, OpStatus::Succeeded);
    assert!(!n.calls().iter().any(|c| c.contains("download")));
    assert_eq!(op.progress.step, 2);
}

#[tokio::test]
async fn unknown_template_fails_with_the_field_and_removes_nothing() {
    let n = node();
    n.index("index", &["other.tar.zst"]);
    let op = n.run("local", T).await;
    assert_eq!(op.status, OpStatus::Failed);
    let err = op.error.expect("error");
    assert_eq!(err.code, "bad_request");
    assert!(err.message.contains("pveam available"), "{}", err.message);
    assert!(!n.calls().iter().any(|c| c.contains("remove")));
}

#[tokio::test]
async fn unsuitable_storage_fails_before_touching_anything() {
    let n = node();
    let op = n.run("local-lvm", T).await;
    assert_eq!(op.status, OpStatus::Failed);
    assert!(op
        .error
        .expect("error")
        .message
        .contains("pick one of: local"));
    assert_eq!(n.calls(), ["pvesm status --content vztmpl"]);
}

#[tokio::test]
async fn cancel_kills_the_download_and_removes_the_partial_volume() {
    let n = node();
    n.index("index", &[T]);
    std::fs::write(n.state.join("block"), "").expect("block");
    let task = TemplateDownload::new("local", T).expect("valid");
    let op = n.ops.submit(Box::new(task), root()).await.expect("submit");
    let pid_file = n.state.join("download.pid");
    let deadline = Instant::now() + LONG;
    while !pid_file.exists() {
        assert!(Instant::now() < deadline, "download never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("pid number");
    assert!(n.ops.get(&op.id).expect("get").cancellable);
    n.ops.cancel(&op.id, root()).await.expect("cancel");
    let done = n.ops.wait(&op.id, LONG).await.expect("wait");
    assert_eq!(done.status, OpStatus::Cancelled);
    assert!(!n.has(T), "partial volume removed");
    assert!(n
        .calls()
        .iter()
        .any(|c| c == &format!("pveam remove local:vztmpl/{T}")));
    assert!(
        !process_alive(pid),
        "the download's process group was killed"
    );
    let log = n.ops.log(&op.id, 0).expect("log").lines;
    assert!(
        log.iter().any(|l| l.contains("removed local:vztmpl/")),
        "{log:?}"
    );
}

fn process_alive(pid: i32) -> bool {
    // A zombie still answers kill(0); /proc tells the state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn crash_recovery_removes_only_what_this_op_started() {
    // Simulates a crash during the download: the op is `running` with
    // present_before=false and a (partial) volume exists.
    let n = node();
    std::fs::write(n.state.join("local").join(T), "partial").expect("seed");
    let store = n.ops.inner.store.clone();
    let rec = |id: &str, present_before: Option<bool>| crate::store::OpRecord {
        id: id.into(),
        kind: KIND.into(),
        target: Some(format!("template/local/{T}")),
        requestor: root(),
        status: OpStatus::Running,
        error: None,
        created_ms: 1,
        started_ms: Some(2),
        finished_ms: None,
        progress: Default::default(),
        cancellable: true,
        payload: match present_before {
            Some(p) => serde_json::json!({"storage": "local", "template": T, "present_before": p}),
            None => serde_json::json!({"storage": "local", "template": T}),
        },
    };
    store.insert_op(&rec("unknown", None)).expect("insert");
    store.insert_op(&rec("mine", Some(false))).expect("insert");
    let out = n
        .ops
        .recover(crate::ops::kinds::rebuild)
        .await
        .expect("recover");
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|o| o.status == OpStatus::Interrupted));
    let first = n.ops.log("unknown", 0).expect("log").lines;
    assert!(
        first.iter().any(|l| l.contains("unknown whether")),
        "{first:?}"
    );
    assert!(!n.has(T), "removed by the op that recorded it was absent");
}
