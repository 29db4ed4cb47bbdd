use std::collections::BTreeSet;

use super::*;
use crate::api::DeployRequest;
use crate::apps::Catalog;
use crate::pve::parse::pvesm::{StorageState, StorageStatus};

fn storage(name: &str, avail_kib: u64) -> StorageStatus {
    StorageStatus {
        name: name.into(),
        storage_type: "dir".into(),
        state: StorageState::Active,
        total_kib: avail_kib * 2,
        used_kib: avail_kib,
        avail_kib,
        used_percent: Some(50.0),
    }
}

fn facts() -> HostFacts {
    HostFacts {
        node: "pve".into(),
        rootdir_storages: vec![storage("local-lvm", 100 << 20)],
        vztmpl_storages: vec![storage("local", 100 << 20)],
        templates: vec![
            "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst".into(),
            "local:vztmpl/debian-13-standard_13.1-2_amd64.tar.zst".into(),
        ],
        available: vec![],
        bridges: vec!["vmbr0".into()],
        guests: BTreeSet::from([140, 141]),
        held: BTreeSet::from([142]),
        names: BTreeSet::new(),
    }
}

fn cfg(agents: &std::path::Path) -> AppsConfig {
    AppsConfig {
        agents_dir: agents.to_path_buf(),
        ..AppsConfig::default()
    }
}

fn req() -> DeployRequest {
    DeployRequest {
        app: "netbox-agent".into(),
        settings: [(
            "netbox_url".to_string(),
            serde_json::json!("http://nb:8000"),
        )]
        .into(),
        secrets: [(
            "netbox_token".to_string(),
            "nbt_secret_canary_7f3a".to_string(),
        )]
        .into(),
        ..DeployRequest::default()
    }
}

#[test]
fn newest_template_by_natural_order() {
    let f = facts();
    assert_eq!(
        newest_volid(&f.templates, "debian-12-standard").map(String::as_str),
        Some("local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst")
    );
    assert_eq!(newest_volid(&f.templates, "debian-12"), None);
    assert!(natural_cmp("a10", "a9").is_gt());
}

#[test]
fn builds_the_spec_with_the_lowest_free_vmid_and_renders_files() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("netbox-agent"), b"x").unwrap();
    let c = Catalog::builtin();
    let app = c.get("netbox-agent").unwrap();
    let spec = build(app, &req(), &facts(), &cfg(d.path())).unwrap();
    assert_eq!(spec.vmid_hint, 143, "140/141 in the cluster, 142 reserved");
    assert_eq!(spec.template.download, None);
    let cfgf = spec
        .files
        .iter()
        .find(|f| f.path == "/etc/netbox-agent/config.toml")
        .unwrap();
    let Content::Text(t) = &cfgf.content else {
        panic!()
    };
    assert!(
        t.contains("url = \"http://nb:8000\"")
            && t.contains("interval_s = 300")
            && !t.contains("secret_canary"),
        "{t}"
    );
    let argv = spec.create_spec(143, "op1").to_argv(8).unwrap().join(" ");
    assert!(
        argv.contains("--description Managed by 1ld") && argv.contains("1ld-op: op1"),
        "{argv}"
    );
    let plan = spec.plan(8);
    assert_eq!(plan.vmid, 143);
    assert!(!serde_json::to_string(&plan).unwrap().contains("\"tok\""));
}

#[test]
fn missing_agent_binary_and_full_range_are_reported() {
    let d = tempfile::tempdir().unwrap();
    let c = Catalog::builtin();
    let app = c.get("netbox-agent").unwrap();
    let mut f = facts();
    f.guests = (140..=200).collect();
    let errs = build(app, &req(), &f, &cfg(d.path())).unwrap_err();
    let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("overrides.vmid: no free vmid in the app's range 140..=200")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("agent binary") && m.contains("make agents-bin")),
        "{msgs:?}"
    );
}
