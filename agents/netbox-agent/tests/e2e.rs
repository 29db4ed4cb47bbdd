//! The real `netbox-agent` binary against the stateful NetBox fake on
//! loopback: inventory and scan sources end to end, `--once`, `--dry-run`,
//! the no-change second run, the inventory watch, `/status`, `/metrics` and
//! the per-source health checks, a bad inventory line.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::time::Duration;

use agent_runtime::testing::{get_json, run_to_end, terminate, wait_for, write_file, AgentEnv};
use fake_upstreams::{NetBoxModel, StatefulNetBox};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_netbox-agent");

const INVENTORY: &str = "devices:\n  - name: nas01\n    role: Storage\n    interfaces:\n      - name: eth0\n        mac: \"90:09:d0:00:00:01\"\n        ips: [\"192.168.1.20/24\"]\n  - name: printer\n    ip: 192.168.1.30/24\n";

async fn netbox() -> StatefulNetBox {
    NetBoxModel::new(None)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Config with the inventory source on `inventory` (written into the env's dir).
fn env_with(nb: &StatefulNetBox, sources: &str) -> (AgentEnv, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    let extra = sources.replace("{INV}", &inv.display().to_string());
    let e = AgentEnv::new(
        dir,
        "netbox_token = \"<TOKEN>\"\n",
        0o600,
        &extra,
        "netbox",
        &nb.url(),
    );
    (e, inv)
}

const INV_SOURCE: &str =
    "[sources.inventory]\nenabled = true\nfiles = [\"{INV}\"]\nwatch_interval_s = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_syncs_the_inventory_and_a_second_run_writes_nothing() {
    let nb = netbox().await;
    let (e, inv) = env_with(&nb, INV_SOURCE);
    write_file(&inv, INVENTORY, 0o644);

    // Dry run first: the plan on stdout, nothing written.
    let (code, out, err) =
        run_to_end(BIN, &["--config", &e.config_arg(), "--once", "--dry-run"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("dry run:"), "{out}");
    assert!(out.contains("create dcim/devices nas01"), "{out}");
    assert_eq!(nb.model.stats().write_requests, 0);

    let (code, out, err) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(nb.model.count("dcim/devices"), 2);
    assert_eq!(nb.model.count("ipam/ip-addresses"), 2);
    let record: Value = serde_json::from_str(&out).unwrap();
    assert!(
        record["counters"]["created"].as_u64().unwrap() >= 6,
        "{record}"
    );
    assert!(!out.contains("<TOKEN>") && !err.contains("<TOKEN>"));

    let before = nb.model.stats();
    let (code, out, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}");
    let after = nb.model.stats();
    assert_eq!(after.write_requests, before.write_requests, "{out}");
    assert!(
        after.requests - before.requests <= 15,
        "{} requests",
        after.requests - before.requests
    );
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["counters"]["netbox_writes"], 0, "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_reports_sources_and_metrics_and_follows_the_file() {
    let nb = netbox().await;
    let (e, inv) = env_with(&nb, INV_SOURCE);
    write_file(&inv, INVENTORY, 0o644);
    let (mut agent, port, _) = e.serve(BIN).await;
    let status = wait_for("first sync", Duration::from_secs(20), || async {
        get_json(port, "/status")
            .await
            .map(|(_, v)| v)
            .filter(|v| v["agent"]["syncs"].as_u64() >= Some(1))
    })
    .await;
    let src = &status["agent"]["sources"]["inventory"];
    assert_eq!(src["state"], "ok", "{status}");
    assert_eq!(src["last"]["seen"], 2, "{status}");
    assert_eq!(status["agent"]["sources"]["network_scan"]["enabled"], false);
    let (code, health) = get_json(port, "/health").await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        health["checks"]["source_inventory"]["status"], "healthy",
        "{health}"
    );

    let base =
        agent_runtime::http_client::BaseUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
    let m = agent_runtime::http_client::send(
        &base,
        hyper::Method::GET,
        "/metrics",
        &[],
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(m.status, 200);
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.contains("# TYPE netbox_agent_objects_created_total counter"),
        "{text}"
    );
    assert!(
        text.contains("netbox_agent_hosts_seen{source=\"inventory\"} 2"),
        "{text}"
    );
    assert!(text.contains("netbox_agent_netbox_up 1"), "{text}");

    // A new device in the file: the watch triggers a sync without waiting
    // for the hour-long interval.
    write_file(
        &inv,
        &format!("{INVENTORY}  - name: ap01\n    ip: 192.168.1.40/24\n"),
        0o644,
    );
    wait_for("ap01 in NetBox", Duration::from_secs(20), || async {
        (nb.model.count("dcim/devices") == 3).then_some(())
    })
    .await;

    // A bad line: the source fails with file:line, nothing is orphaned.
    write_file(
        &inv,
        &INVENTORY.replace("192.168.1.30/24", "192.168.1.300/24"),
        0o644,
    );
    let health = wait_for(
        "inventory check degraded",
        Duration::from_secs(20),
        || async {
            get_json(port, "/health")
                .await
                .map(|(_, v)| v)
                .filter(|v| v["checks"]["source_inventory"]["status"] == "degraded")
        },
    )
    .await;
    let msg = health["checks"]["source_inventory"]["message"]
        .as_str()
        .unwrap();
    assert!(
        msg.contains("inventory.yaml:9:") && msg.contains("192.168.1.300/24"),
        "{msg}"
    );
    assert_eq!(nb.model.count("dcim/devices"), 3);
    terminate(&mut agent, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scan_finds_a_loopback_listener() {
    let nb = netbox().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let src = format!(
        "[sources.network_scan]\nenabled = true\ncidrs = [\"127.0.0.1/32\"]\ntcp_ports = [{port}]\nicmp = false\nreverse_dns = false\n"
    );
    let (e, _) = env_with(&nb, &src);
    let (code, out, err) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let devices = nb.model.objects("dcim/devices");
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0]["name"], "127.0.0.1");
    assert!(devices[0]["description"]
        .as_str()
        .unwrap()
        .contains(&port.to_string()));
    assert_eq!(devices[0]["primary_ip4"]["address"], "127.0.0.1/32");
    assert_eq!(
        devices[0]["custom_fields"]["discovery_source"],
        "network_scan"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxmox_guests_become_vms_and_a_destroyed_one_is_orphaned_then_pruned() {
    let nb = netbox().await;
    let pve = fake_upstreams::ProxmoxFake::new(
        "netbox@pve!agent",
        "0b6e6a37-5c1b-4d54-9e3e-6c1d1b0b0c11",
    )
    .serve("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap();
    let src = format!(
        "[sync]\nfull_sync_interval_s = 0\nprune_after_days = 0\n[sources.proxmox]\nenabled = true\nurl = \"{}\"\ntoken_id = \"netbox@pve!agent\"\n",
        pve.handle.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let e = AgentEnv::new(
        dir,
        "netbox_token = \"<TOKEN>\"\nproxmox_token_secret = \"0b6e6a37-5c1b-4d54-9e3e-6c1d1b0b0c11\"\n",
        0o600,
        &src,
        "netbox",
        &nb.url(),
    );
    let (code, out, err) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        !out.contains("0b6e6a37") && !err.contains("0b6e6a37"),
        "secret leaked"
    );
    let vms = nb.model.objects("virtualization/virtual-machines");
    let names: BTreeSet<&str> = vms.iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["web01", "db01", "dns"]),
        "the template is skipped"
    );
    let web = vms.iter().find(|v| v["name"] == "web01").unwrap();
    assert_eq!(web["cluster"]["name"], "homelab");
    assert_eq!(web["memory"], 2048);
    assert_eq!(
        web["primary_ip4"]["address"], "192.168.1.140/24",
        "from the guest agent"
    );
    let web_tags: BTreeSet<&str> = web["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert!(
        web_tags.contains("netbox-agent-label-netbox")
            && web_tags.contains("netbox-agent-label-web"),
        "PVE tags: {web_tags:?}"
    );
    let dns = vms.iter().find(|v| v["name"] == "dns").unwrap();
    assert_eq!(dns["role"]["name"], "Container");
    assert_eq!(dns["primary_ip4"]["address"], "192.168.1.150/24");
    let db = vms.iter().find(|v| v["name"] == "db01").unwrap();
    assert!(db["primary_ip4"].is_null(), "no guest agent, no address");
    let node = &nb.model.objects("dcim/devices")[0];
    assert_eq!(node["name"], "pve1");
    assert_eq!(node["primary_ip4"]["address"], "192.168.1.10/24");
    let macs: BTreeSet<String> = nb
        .model
        .objects("dcim/mac-addresses")
        .iter()
        .map(|m| m["mac_address"].as_str().unwrap().to_string())
        .collect();
    assert!(macs.contains("BC:24:11:00:01:50"), "{macs:?}");

    // The container is destroyed: orphaned on the next (full) sync, pruned
    // on the one after, with its interface, MAC and IP.
    pve.fake.destroy(150);
    let (code, out, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}");
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["counters"]["orphaned"], 4, "{record}");
    assert_eq!(nb.model.count("virtualization/virtual-machines"), 3);
    let (code, out, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}");
    let record: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(record["counters"]["pruned"], 4, "{record}");
    assert_eq!(nb.model.count("virtualization/virtual-machines"), 2);
    assert!(!nb
        .model
        .objects("ipam/ip-addresses")
        .iter()
        .any(|i| i["address"] == "192.168.1.150/24"));
    // Then nothing more to do.
    let before = nb.model.stats().write_requests;
    let (code, _, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0);
    assert_eq!(nb.model.stats().write_requests, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_trackers_become_devices() {
    let nb = netbox().await;
    // REST replayed from the HA 2025.4.4 recordings, WebSocket registries
    // answered with the recorded results (see tests/fakes).
    let ha = fake_upstreams::HomeAssistant::spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let src = format!(
        "[sources.home_assistant]\nenabled = true\nurl = \"{}\"\n",
        ha.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let e = AgentEnv::new(
        dir,
        "netbox_token = \"<TOKEN>\"\nhome_assistant_token = \"<TOKEN>\"\n",
        0o600,
        &src,
        "netbox",
        &nb.url(),
    );
    let (code, out, err) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(ha.unrecorded().is_empty(), "{:?}", ha.unrecorded());
    let devices = nb.model.objects("dcim/devices");
    let names: BTreeSet<&str> = devices
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["nas", "printer"]), "{devices:?}");
    let nas = devices.iter().find(|d| d["name"] == "nas").unwrap();
    assert_eq!(nas["primary_ip4"]["address"], "198.51.100.23/24");
    assert_eq!(
        nas["custom_fields"]["agent_source_id"],
        "ha:mac:02:42:C6:33:64:17"
    );
    assert_eq!(nas["role"]["name"], "Home device");

    // A refused token: that source fails with a clear message and nothing of
    // it changes, while another source (the inventory) still syncs.
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory.yaml");
    write_file(
        &inv,
        "devices:\n  - name: ap01\n    ip: 192.168.1.40/24\n",
        0o644,
    );
    let both = format!(
        "{src}[sources.inventory]\nenabled = true\nfiles = [\"{}\"]\n",
        inv.display()
    );
    let e = AgentEnv::new(
        dir,
        "netbox_token = \"<TOKEN>\"\nhome_assistant_token = \"not-a-valid-token\"\n",
        0o600,
        &both,
        "netbox",
        &nb.url(),
    );
    let (code, out, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
    assert_eq!(code, 1, "partial: {out}");
    assert!(out.contains("Home Assistant refused the token"), "{out}");
    assert!(!out.contains("not-a-valid-token"), "{out}");
    let names: BTreeSet<String> = nb
        .model
        .objects("dcim/devices")
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["nas".to_string(), "printer".to_string(), "ap01".to_string()]),
        "HA's devices untouched, the inventory's added"
    );
    let nas = nb
        .model
        .objects("dcim/devices")
        .into_iter()
        .find(|d| d["name"] == "nas")
        .unwrap();
    assert!(
        !nas["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["slug"] == "netbox-agent-orphaned"),
        "a failed source orphans nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truenas_over_jsonrpc_and_over_rest_gives_the_same_device() {
    for rest_only in [false, true] {
        let nb = netbox().await;
        let mut fake = fake_upstreams::TruenasFake::new("1-abcdefabcdef");
        if rest_only {
            fake = fake.rest_only();
        }
        let tn = fake.serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let src = format!(
            "[sources.truenas]\nenabled = true\nurl = \"{}\"\n",
            tn.url()
        );
        let dir = tempfile::tempdir().unwrap();
        let e = AgentEnv::new(
            dir,
            "netbox_token = \"<TOKEN>\"\ntruenas_api_key = \"1-abcdefabcdef\"\n",
            0o600,
            &src,
            "netbox",
            &nb.url(),
        );
        let (code, out, err) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
        assert_eq!(code, 0, "rest_only={rest_only}: {out}\n{err}");
        assert!(
            !out.contains("abcdefabcdef") && !err.contains("abcdefabcdef"),
            "key leaked"
        );
        let devices = nb.model.objects("dcim/devices");
        assert_eq!(devices.len(), 1, "{devices:?}");
        let d = &devices[0];
        assert_eq!(d["name"], "truenas");
        assert_eq!(d["serial"], "A1B2C3");
        assert_eq!(d["device_type"]["model"], "TRUENAS-MINI-3.0-X+");
        assert_eq!(d["primary_ip4"]["address"], "192.168.1.30/24");
        let storage = &d["custom_fields"]["agent_storage"];
        assert_eq!(storage["pools"][0]["name"], "tank");
        assert_eq!(
            storage["datasets"].as_array().unwrap().len(),
            2,
            "flattened and de-duplicated: {storage}"
        );
        assert_eq!(storage["shares"]["smb"][0]["name"], "media");
        // And a second run changes nothing.
        let before = nb.model.stats().write_requests;
        let (code, _, _) = run_to_end(BIN, &["--config", &e.config_arg(), "--once"]).await;
        assert_eq!(code, 0);
        assert_eq!(
            nb.model.stats().write_requests,
            before,
            "rest_only={rest_only}"
        );
    }
}
