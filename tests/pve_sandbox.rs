//! The `pve` layer against the sandbox PVE node: real LXC containers, real
//! dnsmasq DHCP, once as PVE 8 and once as PVE 9.
//!
//! Root tier: runs when `PVE_SANDBOX_E2E=1` (set by `make test`), and then
//! FAILS rather than skips when a prerequisite is missing. Each run brings up
//! a private sandbox node (own state root, bridge and subnet) so it never
//! touches a sandbox the user has running, and tears it down on drop.

mod support;

use std::time::{Duration, Instant};

use oneld::pve::pct::{DestroyOptions, FileAttrs, RestoreSpec, SetSpec};
use oneld::pve::vzdump::{BackupMode, Compression, PruneOptions, VzdumpSpec};
use oneld::pve::{Pve, PveError};
use support::{enabled, spec, wait_for, SandboxNode, NODE, TEMPLATE};

async fn exec_ok(pve: &Pve, vmid: u32, cmd: &[&str]) -> String {
    let out = pve.pct_exec(vmid, cmd, None, None).await.expect("pct exec");
    assert_eq!(out.code, Some(0), "{cmd:?}: {}", out.stderr_text());
    out.stdout_text().into_owned()
}

/// The whole life of one container through the typed layer.
async fn lifecycle(major: u8, bridge: &str, subnet_prefix: &str) {
    let node = SandboxNode::up(major, bridge, &format!("{subnet_prefix}.0/24"));
    let pve = Pve::detect(node.runner(), NODE).await.expect("pveversion");
    assert_eq!(pve.major(), u32::from(major));

    // Templates: the appliance index, then a download onto `local`.
    pve.pveam_update().await.expect("pveam update");
    let available = pve
        .pveam_available(Some("system"))
        .await
        .expect("available");
    assert!(
        available.iter().any(|t| t.name == TEMPLATE),
        "{available:?}"
    );
    let volid = pve
        .pveam_download("local", TEMPLATE)
        .await
        .expect("download");
    assert_eq!(volid, format!("local:vztmpl/{TEMPLATE}"));
    // A second download finds the file and does not fail.
    pve.pveam_download("local", TEMPLATE)
        .await
        .expect("re-download");
    let stored = pve.pveam_list("local").await.expect("pveam list");
    assert_eq!(stored.len(), 1);

    let storages = pve
        .pvesm_status(None, Some("rootdir"))
        .await
        .expect("pvesm status");
    assert!(
        storages.iter().all(|s| s.name != "local")
            && storages.iter().any(|s| s.name == "local-lvm"),
        "only local-lvm holds container volumes: {storages:?}"
    );

    // The cluster-wide id namespace: a VM on the other node blocks its id.
    std::fs::write(node.path("etc/pve/other-nodes"), "pve2 qemu 150 winvm\n").expect("other");
    match pve.pct_create(&spec(150, bridge)).await {
        Err(PveError::AlreadyExists { vmid, node, .. }) => {
            assert_eq!(vmid, Some(150));
            assert_eq!(node.as_deref(), Some("pve2"));
        }
        other => panic!("create on a clashing id: {other:?}"),
    }

    // Template missing and storage unsuitable are typed.
    let mut missing = spec(151, bridge);
    missing.ostemplate = "local:vztmpl/nope_1.0_amd64.tar.zst".into();
    assert!(
        matches!(
            pve.pct_create(&missing).await,
            Err(PveError::TemplateMissing { .. })
        ),
        "missing template"
    );
    let mut wrong_storage = spec(151, bridge);
    wrong_storage.rootfs.storage = "local".into();
    assert!(
        matches!(
            pve.pct_create(&wrong_storage).await,
            Err(PveError::StorageUnsuitable { .. })
        ),
        "storage without rootdir"
    );

    let vmid = pve.next_vmid().await.expect("nextid");
    assert!(vmid >= 100 && vmid != 150);
    pve.pct_create(&spec(vmid, bridge)).await.expect("create");

    let cfg = pve.pct_config(vmid, false).await.expect("config");
    assert!(cfg.unprivileged);
    assert!(cfg.features.nesting);
    assert_eq!(cfg.tags, vec!["1ld", "1ld-test", "web"]);
    assert_eq!(
        cfg.description.as_deref(),
        Some("managed by 1ld\nkey: value 100%\n")
    );
    let net0 = cfg.net.get(&0).expect("net0");
    assert!(
        spec(vmid, bridge).options.net[&0].is_satisfied_by(net0),
        "{net0:?}"
    );
    let mac = net0.hwaddr.expect("generated MAC").to_string();
    assert!(mac.starts_with("BC:24:11:"), "{mac}");

    let list = pve.pct_list().await.expect("list");
    let row = list.iter().find(|e| e.vmid == vmid).expect("listed");
    assert_eq!(row.name, format!("sbx-{vmid}"));
    let cluster = pve.cluster_cts().await.expect("resources");
    assert!(cluster.iter().any(|c| c.vmid == vmid && c.node == NODE));
    assert!(
        !cluster.iter().any(|c| c.vmid == 150),
        "qemu guests are not CTs"
    );

    // A held lock blocks start with a typed error naming it.
    let conf_path = node.path(&format!("etc/pve/lxc/{vmid}.conf"));
    let conf = std::fs::read_to_string(&conf_path).expect("conf");
    std::fs::write(&conf_path, format!("{conf}lock: backup\n")).expect("lock");
    match pve.pct_start(vmid).await {
        Err(PveError::Locked { lock, .. }) => assert_eq!(lock, "backup"),
        other => panic!("start of a locked CT: {other:?}"),
    }
    pve.pct_unlock(vmid).await.expect("unlock");
    assert!(pve.pct_unlock(vmid).await.is_err(), "unlock without a lock");

    // exec needs a running CT.
    assert!(matches!(
        pve.pct_exec(vmid, &["true"], None, None).await,
        Err(PveError::NotRunning { .. })
    ));

    pve.pct_start(vmid).await.expect("start");
    let ip = wait_for("a DHCP lease", Duration::from_secs(60), || async {
        let ifs = pve.ct_interfaces(vmid).await.ok()?;
        ifs.iter().find(|i| i.name == "eth0")?.primary_address()
    })
    .await;
    assert!(ip.to_string().starts_with(subnet_prefix), "{ip}");
    let status = pve.pct_status(vmid, true).await.expect("status");
    assert_eq!(status.status, Some(oneld::pve::types::CtState::Running));
    assert!(status.pid.is_some());

    // systemd is init and comes up.
    let state = wait_for("systemd to settle", Duration::from_secs(60), || async {
        let out = pve
            .pct_exec(vmid, &["systemctl", "is-system-running"], None, None)
            .await
            .ok()?;
        let s = out.stdout_text().trim().to_string();
        (s == "running" || s == "degraded").then_some(s)
    })
    .await;
    assert!(state == "running" || state == "degraded");

    // exec passes stdin and the exit status through.
    let out = pve
        .pct_exec(vmid, &["cat"], Some(b"through stdin\n".to_vec()), None)
        .await
        .expect("exec cat");
    assert_eq!(out.stdout_text(), "through stdin\n");
    let out = pve
        .pct_exec(vmid, &["sh", "-c", "exit 7"], None, None)
        .await
        .expect("exec exit");
    assert_eq!(out.code, Some(7));

    // push/pull keep content, owner and mode.
    let host = tempfile::tempdir().expect("tmp");
    let src = host.path().join("payload");
    std::fs::write(&src, "payload 1ld\n").expect("write");
    let attrs = FileAttrs {
        perms: Some(0o640),
        user: Some("root".into()),
        group: Some("daemon".into()),
    };
    pve.pct_push(vmid, &src, "/root/payload", &attrs)
        .await
        .expect("push");
    assert_eq!(
        exec_ok(&pve, vmid, &["stat", "-c", "%a %U %G", "/root/payload"]).await,
        "640 root daemon\n"
    );
    assert!(
        pve.pct_push(vmid, &src, "/no/such/dir/payload", &FileAttrs::default())
            .await
            .is_err(),
        "push does not create parent directories"
    );
    let back = host.path().join("back");
    pve.pct_pull(vmid, "/root/payload", &back, &FileAttrs::default())
        .await
        .expect("pull");
    assert_eq!(
        std::fs::read_to_string(&back).expect("read"),
        "payload 1ld\n"
    );

    // pct set: tags replace the set.
    let mut set = SetSpec::default();
    set.options.tags = Some(vec!["1ld".into(), "changed".into()]);
    pve.pct_set(vmid, &set).await.expect("set");
    assert_eq!(
        pve.pct_config(vmid, false).await.expect("config").tags,
        vec!["1ld", "changed"]
    );

    // vzdump: one zstd archive with notes, listed by pvesm.
    let mut dump = VzdumpSpec::new(vmid, "local");
    dump.mode = Some(BackupMode::Snapshot);
    dump.compress = Some(Compression::Zstd);
    dump.notes_template = Some("{{guestname}} on {{node}}".into());
    dump.prune = Some(PruneOptions {
        keep_last: Some(2),
        ..PruneOptions::default()
    });
    let backup = pve.vzdump(&dump).await.expect("vzdump");
    assert!(backup.archive.exists(), "{}", backup.archive.display());
    assert_eq!(backup.log.mode.as_deref(), Some("snapshot"));
    assert!(!backup.log.mode_fallback);
    let name = backup
        .archive
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(name.starts_with(&format!("vzdump-lxc-{vmid}-")) && name.ends_with(".tar.zst"));
    let notes =
        std::fs::read_to_string(format!("{}.notes", backup.archive.display())).expect("notes");
    assert_eq!(notes.trim_end(), format!("sbx-{vmid} on {NODE}"));
    let vols = pve
        .pvesm_list("local", Some("backup"), Some(vmid))
        .await
        .expect("pvesm list");
    assert_eq!(vols.len(), 1, "{vols:?}");
    let archive_volid = vols[0].volid.clone();

    // Destroy refuses a running CT, then restore brings the same files back.
    assert!(pve
        .pct_destroy(vmid, DestroyOptions::default())
        .await
        .is_err());
    pve.pct_stop(vmid).await.expect("stop");
    pve.pct_destroy(vmid, DestroyOptions::default())
        .await
        .expect("destroy");
    assert!(matches!(
        pve.pct_status(vmid, false).await,
        Err(PveError::NotFound { .. })
    ));
    let mut restore = RestoreSpec::new(vmid, archive_volid.clone());
    restore.storage = Some("local-lvm".into());
    pve.pct_restore(&restore).await.expect("restore");
    let restored = pve.pct_config(vmid, false).await.expect("config");
    assert!(restored.unprivileged);
    assert_eq!(restored.net.get(&0).and_then(|n| n.hwaddr), net0.hwaddr);
    // A second restore onto the existing id needs --force.
    assert!(matches!(
        pve.pct_restore(&RestoreSpec::new(vmid, archive_volid))
            .await,
        Err(PveError::AlreadyExists { .. })
    ));
    pve.pct_start(vmid).await.expect("start restored");
    assert_eq!(
        exec_ok(&pve, vmid, &["cat", "/root/payload"]).await,
        "payload 1ld\n"
    );
    assert_eq!(
        exec_ok(&pve, vmid, &["stat", "-c", "%a %U %G", "/root/payload"]).await,
        "640 root daemon\n"
    );

    // On dir storage snapshot mode falls back to suspend, as Proxmox logs it.
    let cfg_path = node.path("etc/pve/storage.cfg");
    let storage_cfg = std::fs::read_to_string(&cfg_path).expect("storage.cfg");
    assert!(
        storage_cfg.contains("content backup,iso,vztmpl"),
        "{storage_cfg}"
    );
    std::fs::write(
        &cfg_path,
        storage_cfg.replace(
            "content backup,iso,vztmpl",
            "content backup,iso,rootdir,vztmpl",
        ),
    )
    .expect("write storage.cfg");
    let mut on_dir = spec(vmid + 2, bridge);
    on_dir.rootfs.storage = "local".into();
    pve.pct_create(&on_dir)
        .await
        .expect("create on dir storage");
    pve.pct_start(vmid + 2).await.expect("start on dir storage");
    let mut dump_dir = VzdumpSpec::new(vmid + 2, "local");
    dump_dir.mode = Some(BackupMode::Snapshot);
    let fallback = pve.vzdump(&dump_dir).await.expect("vzdump on dir storage");
    assert_eq!(fallback.log.mode.as_deref(), Some("suspend"));
    assert!(fallback.log.mode_fallback);
    assert!(fallback.archive.exists());
    let status = pve.pct_status(vmid + 2, false).await.expect("status");
    assert_eq!(
        status.status,
        Some(oneld::pve::types::CtState::Running),
        "resumed after the suspend-mode backup"
    );
    pve.pct_destroy(
        vmid + 2,
        DestroyOptions {
            force: true,
            ..DestroyOptions::default()
        },
    )
    .await
    .expect("destroy dir-storage CT");

    // A missing bridge is accepted at create and fails at start.
    let mut lost = spec(vmid + 1, "vmbr9");
    lost.options.hostname = Some("no-bridge".into());
    pve.pct_create(&lost)
        .await
        .expect("create with a missing bridge");
    let err = pve
        .pct_start(vmid + 1)
        .await
        .expect_err("start without bridge");
    assert!(
        err.to_string().contains("bridge 'vmbr9' does not exist"),
        "{err}"
    );

    let force = DestroyOptions {
        force: true,
        ..DestroyOptions::default()
    };
    pve.pct_destroy(vmid, force).await.expect("destroy --force");
    pve.pct_destroy(vmid + 1, DestroyOptions::default())
        .await
        .expect("destroy stopped");
    assert!(pve.pct_list().await.expect("list").is_empty());
    drop(node);
}

/// Fault injection reaches the typed layer as the errors a real node gives.
async fn faults(bridge: &str, subnet_prefix: &str) {
    let node = SandboxNode::up(8, bridge, &format!("{subnet_prefix}.0/24"));
    let faulty = |spec: &str| node.runner().with_env("PVE_SANDBOX_FAULTS", spec);

    let pve = Pve::detect(faulty("pct list hang"), NODE)
        .await
        .expect("pveversion")
        .with_timeouts(Duration::from_millis(1500), Duration::from_secs(5));
    let start = Instant::now();
    assert!(matches!(
        pve.pct_list().await,
        Err(PveError::Timeout { .. })
    ));
    assert!(start.elapsed() < Duration::from_secs(10));

    let pve = Pve::detect(faulty("pct list garbage"), NODE)
        .await
        .expect("version");
    let res = pve.pct_list().await;
    assert!(matches!(res, Err(PveError::Parse { .. })), "{res:?}");

    let pve = Pve::detect(faulty("pct start fail 255 CT is locked (snapshot)"), NODE)
        .await
        .expect("version");
    match pve.pct_start(100).await {
        Err(PveError::Locked { lock, .. }) => assert_eq!(lock, "snapshot"),
        other => panic!("{other:?}"),
    }

    // `pveam download` exits 0 on failure: the layer still reports it.
    let pve = Pve::detect(
        faulty("pveam download fail 0 checksum mismatch: got 'a' != expect 'b'"),
        NODE,
    )
    .await
    .expect("version");
    assert!(pve.pveam_download("local", TEMPLATE).await.is_err());
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pve_layer_on_the_sandbox_node() {
    if !enabled() {
        eprintln!("skipped: set PVE_SANDBOX_E2E=1 (make test does) to run the sandbox tier");
        return;
    }
    // Everything below runs under the bounding set 1ldd runs with: proof
    // that pct, vzdump, lxc and the containers need nothing it drops.
    let dropped = oneld::daemon::caps::restrict_bounding_set().expect("drop capabilities");
    assert_eq!(
        dropped.len(),
        oneld::daemon::caps::NEVER_NEEDED.len(),
        "the test must start with the full bounding set to prove anything"
    );
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    faults("sbxf0", "10.213.20").await;
    lifecycle(8, "sbxt8", "10.213.18").await;
    lifecycle(9, "sbxt9", "10.213.19").await;
}
