use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::api::{ApiErrorInner, OpStatus, Progress, Requestor};

fn paths() -> (tempfile::TempDir, Paths) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Paths::under(dir.path());
    (dir, p)
}

fn fixture(version: u32) -> String {
    let path = format!(
        "{}/tests/fixtures/store/schema-v{version}.sql",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn load_fixture(p: &Paths, version: u32) {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(&p.state_dir)
        .expect("mkdir");
    let c = Connection::open(&p.db).expect("open");
    c.execute_batch(&fixture(version)).expect("load fixture");
}

fn schema_of(c: &Connection) -> Vec<String> {
    let mut st = c
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .expect("prepare");
    let rows = st.query_map([], |r| r.get::<_, String>(0)).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

fn rec(id: &str, created_ms: i64) -> OpRecord {
    OpRecord {
        id: id.into(),
        kind: "test.kind".into(),
        target: Some(format!("ct/{id}")),
        requestor: Requestor {
            uid: 0,
            user: "root".into(),
            pid: 1,
        },
        status: OpStatus::Queued,
        error: None,
        created_ms,
        started_ms: None,
        finished_ms: None,
        progress: Progress::default(),
        cancellable: true,
        payload: serde_json::json!({"k": id}),
    }
}

#[test]
fn fresh_open_sets_modes_pragmas_and_schema() {
    let (_t, p) = paths();
    let s = Store::open(&p).expect("open");
    assert_eq!(s.schema_version().expect("version"), migrations::latest());
    let mode = |path: &Path| std::fs::metadata(path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&p.state_dir), 0o700);
    assert_eq!(mode(&p.db), 0o600);
    let (jm, sync, fk): (String, i64, i64) = s
        .write(|c| {
            Ok((
                c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                c.query_row("PRAGMA synchronous", [], |r| r.get(0))?,
                c.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?,
            ))
        })
        .expect("pragmas");
    assert_eq!((jm.as_str(), sync, fk), ("wal", 2, 1));
    drop(s);
    // Reopening an up-to-date database changes nothing.
    let s = Store::open(&p).expect("reopen");
    assert_eq!(s.schema_version().expect("version"), migrations::latest());
}

#[test]
fn loose_state_dir_is_tightened() {
    let (_t, p) = paths();
    std::fs::create_dir_all(&p.state_dir).expect("mkdir");
    std::fs::set_permissions(&p.state_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Store::open(&p).expect("open");
    let mode = std::fs::metadata(&p.state_dir)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn garbage_file_is_corrupt_with_path_and_hint_and_is_kept() {
    let (_t, p) = paths();
    std::fs::create_dir_all(&p.state_dir).expect("mkdir");
    let junk = vec![0x5au8; 8192];
    std::fs::write(&p.db, &junk).expect("write");
    let e = Store::open(&p).expect_err("must refuse");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&p.db.display().to_string()), "{msg}");
    assert!(
        msg.contains("move it aside") && msg.contains("never recreates"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read(&p.db).expect("read"),
        junk,
        "file must be untouched"
    );
}

#[test]
fn damaged_pages_fail_the_integrity_check() {
    let (_t, p) = paths();
    {
        let s = Store::open(&p).expect("open");
        for i in 0..200 {
            s.insert_op(&rec(&format!("op{i:04}"), i)).expect("insert");
            s.append_op_log(&format!("op{i:04}"), i, &"x".repeat(200))
                .expect("log");
        }
    } // last connection closed: WAL checkpointed into the main file
    let mut bytes = std::fs::read(&p.db).expect("read");
    assert!(bytes.len() > 6 * 4096, "db too small: {}", bytes.len());
    // Scribble over the middle of pages 3..6 (b-tree pages), keep the header sound.
    for page in 3..6 {
        for b in &mut bytes[page * 4096 + 8..page * 4096 + 1000] {
            *b = 0xff;
        }
    }
    std::fs::write(&p.db, &bytes).expect("write");
    let e = Store::open(&p).expect_err("must refuse");
    assert!(matches!(e, StoreError::Corrupt { .. }), "{e:?}");
    assert!(e.to_string().contains("state.db"), "{e}");
}

#[test]
fn newer_schema_is_refused() {
    let (_t, p) = paths();
    drop(Store::open(&p).expect("open"));
    let c = Connection::open(&p.db).expect("open raw");
    c.execute_batch("PRAGMA user_version = 99").expect("bump");
    drop(c);
    let e = Store::open(&p).expect_err("must refuse");
    match &e {
        StoreError::NewerSchema { found, known, .. } => {
            assert_eq!((*found, *known), (99, migrations::latest()));
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn every_released_fixture_migrates_and_keeps_its_rows() {
    for v in 1..=migrations::latest() {
        let (_t, p) = paths();
        load_fixture(&p, v);
        let s = Store::open(&p).unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert_eq!(s.schema_version().expect("version"), migrations::latest());
        let all = s
            .list_ops(&OpFilter::default())
            .unwrap_or_else(|e| panic!("v{v}: {e}"));
        assert_eq!(all.len(), 3, "v{v}");
        let failed = s.get_op("5a6b7c8d9e0f1a2b").expect("get").expect("exists");
        assert_eq!(failed.status, OpStatus::Failed);
        assert_eq!(failed.requestor.user, "alice");
        assert_eq!(failed.progress.percent, Some(42.5));
        assert_eq!(
            failed.error,
            Some(ApiErrorInner {
                code: "dependency_down".into(),
                message: "pveam download timed out".into()
            })
        );
        assert_eq!(s.unfinished_ops().expect("unfinished").len(), 1);
        assert_eq!(
            s.read_op_log("0f3c2a9b7d1e4f60", 0, 10).expect("log"),
            vec!["step 1/5: check storage", "template is on local"]
        );
        assert_eq!(s.last_event_seq().expect("seq"), 2);
        assert_eq!(s.events_after(0, 10).expect("events").len(), 2);
        if v >= 2 {
            let d = s.get_deployment("nb").expect("get").expect("v2 row");
            assert_eq!((d.vmid, d.app.as_str()), (140, "netbox-agent"));
            assert_eq!(d.spec.secret_keys, vec!["netbox_token"]);
            assert_eq!(d.health.status, crate::api::HealthStatus::Degraded);
            assert_eq!(s.vmid_reservations().expect("res").len(), 1);
        }
    }
}

#[test]
fn fixture_schemas_match_the_migrations() {
    // Editing a released migration changes what it builds; this catches it.
    for v in 1..=migrations::latest() {
        let from_fixture = Connection::open_in_memory().expect("mem");
        from_fixture.execute_batch(&fixture(v)).expect("fixture");
        let mut built = Connection::open_in_memory().expect("mem");
        for sql in &migrations::MIGRATIONS[..v as usize] {
            let tx = built.transaction().expect("tx");
            tx.execute_batch(sql).expect("migration");
            tx.commit().expect("commit");
        }
        assert_eq!(schema_of(&from_fixture), schema_of(&built), "schema v{v}");
        assert_eq!(migrations::version(&from_fixture).expect("v"), v);
    }
}

#[test]
fn operations_round_trip_filter_log_and_prune() {
    let (_t, p) = paths();
    let s = Store::open(&p).expect("open");
    let mut a = rec("a", 1000);
    s.insert_op(&a).expect("insert");
    s.insert_op(&rec("b", 2000)).expect("insert");
    assert!(s.insert_op(&rec("b", 2000)).is_err(), "ids are unique");
    a.status = OpStatus::Failed;
    a.started_ms = Some(1001);
    a.finished_ms = Some(1500);
    a.error = Some(ApiErrorInner {
        code: "internal".into(),
        message: "boom".into(),
    });
    a.progress = Progress {
        step: 2,
        steps: 3,
        name: "two".into(),
        percent: Some(50.0),
    };
    a.payload = serde_json::json!({"present_before": false});
    s.update_op(&a).expect("update");
    assert_eq!(s.get_op("a").expect("get"), Some(a.clone()));
    assert_eq!(s.get_op("zzz").expect("get"), None);
    assert!(s.update_op(&rec("zzz", 1)).is_err(), "update never inserts");

    let ids = |f: OpFilter| -> Vec<String> {
        s.list_ops(&f)
            .expect("list")
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    assert_eq!(ids(OpFilter::default()), ["b", "a"]);
    assert_eq!(
        ids(OpFilter {
            status: vec![OpStatus::Failed, OpStatus::Running],
            ..Default::default()
        }),
        ["a"]
    );
    assert_eq!(
        ids(OpFilter {
            target: Some("ct/b".into()),
            ..Default::default()
        }),
        ["b"]
    );
    assert_eq!(
        ids(OpFilter {
            limit: Some(1),
            ..Default::default()
        }),
        ["b"]
    );

    for i in 0..5 {
        assert_eq!(
            s.append_op_log("a", 1, &format!("line {i}")).expect("log"),
            i
        );
    }
    assert_eq!(
        s.read_op_log("a", 3, 10).expect("read"),
        ["line 3", "line 4"]
    );
    assert_eq!(
        s.read_op_log("a", 0, 2).expect("read"),
        ["line 0", "line 1"]
    );
    assert!(s.append_op_log("nope", 1, "x").is_err(), "foreign key");

    // Only finished operations older than the cut are pruned, logs with them.
    assert_eq!(s.delete_finished_ops_before(1400).expect("prune"), 0);
    assert_eq!(s.delete_finished_ops_before(1600).expect("prune"), 1);
    assert_eq!(s.get_op("a").expect("get"), None);
    assert!(s.read_op_log("a", 0, 10).expect("read").is_empty());
    assert!(s.get_op("b").expect("get").is_some());
}

#[test]
fn events_persist_in_order() {
    let (_t, p) = paths();
    let s = Store::open(&p).expect("open");
    assert_eq!(s.last_event_seq().expect("seq"), 0);
    for seq in [3u64, 7] {
        s.insert_event(&StoredEvent {
            seq,
            time_ms: i64::try_from(seq).expect("small"),
            kind: "lifecycle".into(),
            payload: serde_json::json!({"n": seq}),
        })
        .expect("insert");
    }
    assert_eq!(s.last_event_seq().expect("seq"), 7);
    let got: Vec<u64> = s
        .events_after(3, 10)
        .expect("after")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(got, [7]);
    assert_eq!(s.delete_events_before(5).expect("prune"), 1);
}

#[test]
fn rfc3339_is_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
}

#[test]
fn ops_generation_moves_with_operation_writes_only() {
    let (_t, p) = paths();
    let s = Store::open(&p).expect("open");
    let g0 = s.ops_generation();
    let mut a = rec("a", 1000);
    s.insert_op(&a).expect("insert");
    let g1 = s.ops_generation();
    assert!(g1 > g0, "insert bumps");
    s.append_op_log("a", 1001, "a line").expect("log");
    assert_eq!(s.ops_generation(), g1, "log lines do not change the list");
    a.status = OpStatus::Succeeded;
    s.update_op(&a).expect("update");
    let g2 = s.ops_generation();
    assert!(g2 > g1, "update bumps");
    s.delete_finished_ops_before(i64::MAX).expect("prune");
    assert!(s.ops_generation() > g2, "prune bumps");
}

#[test]
fn the_generation_moves_with_every_write() {
    let (_t, p) = paths();
    let s = Store::open(&p).expect("open");
    let g0 = s.generation();
    s.insert_op(&rec("a", 1000)).expect("insert");
    let g1 = s.generation();
    assert!(g1 > g0, "an operation write bumps");
    s.append_op_log("a", 1001, "a line").expect("log");
    let g2 = s.generation();
    assert!(g2 > g1, "a log line bumps too (any write)");
    let _ = s.list_ops(&OpFilter::default());
    let _ = s.get_op("a");
    assert_eq!(s.generation(), g2, "reads do not");
}
