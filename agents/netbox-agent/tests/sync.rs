//! The sync engine against the stateful NetBox fake (`fake_upstreams::
//! NetBoxModel`, which enforces the rules measured on NetBox 4.6.8), on
//! loopback: creation in dependency order, a no-change resync with zero
//! writes, dry run, ownership conflicts, human tags kept, orphan then prune
//! (leaf-first, never through a human's IP), failing sources never orphan,
//! retries on 503/429.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::time::Duration;

use agent_runtime::Secret;
use fake_upstreams::{NetBoxModel, StatefulNetBox};
use netbox_agent::client::Client;
use netbox_agent::model::{merge, Host, Iface, IpSpec, Source, VmInfo};
use netbox_agent::sync::{self, SyncRequest, SyncSettings};
use netbox_agent::transport::Endpoint;
use serde_json::{json, Value};

async fn netbox() -> StatefulNetBox {
    NetBoxModel::new(None)
        .unwrap()
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn client(nb: &StatefulNetBox) -> Client {
    Client::new(
        Endpoint::parse(&nb.url(), None).unwrap(),
        Secret::new("<TOKEN>"),
        Duration::from_secs(10),
        4,
        Duration::from_millis(10),
    )
}

fn settings() -> SyncSettings {
    SyncSettings {
        site: "Homelab".into(),
        tag: "netbox-agent".into(),
        batch_size: 50,
        prune: true,
        prune_after_days: 0,
        adopt_existing: false,
    }
}

fn device(name: &str, mac: &str, ip: &str) -> Host {
    let mut h = Host::device(Source::Inventory, format!("inventory:{name}"), name);
    h.role = "Server".into();
    h.interfaces.push(Iface {
        name: "eth0".into(),
        mac: Some(mac.into()),
        kind: "1000base-t".into(),
        ips: vec![IpSpec {
            address: ip.into(),
            dns_name: format!("{name}.home.arpa"),
        }],
    });
    h.primary_ip4 = Some(ip.into());
    h
}

fn vm(vmid: u32, name: &str, ip: &str) -> Host {
    let mut h = Host::device(Source::Proxmox, format!("proxmox:pve/{vmid}"), name);
    h.role = "Virtual machine".into();
    h.vm = Some(VmInfo {
        cluster: "pve".into(),
        vcpus: Some(2.0),
        memory_mb: Some(2048),
        disk_mb: Some(8192),
    });
    h.interfaces.push(Iface {
        name: "net0".into(),
        mac: Some(format!("BC:24:11:00:{:02X}:{:02X}", vmid / 256, vmid % 256)),
        kind: "virtual".into(),
        ips: vec![IpSpec {
            address: ip.into(),
            dns_name: String::new(),
        }],
    });
    h.primary_ip4 = Some(ip.into());
    h
}

fn request(hosts: Vec<Host>, full: bool, dry_run: bool) -> SyncRequest {
    let authoritative: BTreeSet<Source> = hosts.iter().flat_map(|h| h.sources.clone()).collect();
    SyncRequest {
        hosts: merge(hosts),
        authoritative,
        full,
        today: "2026-11-26".into(),
        now: time::OffsetDateTime::now_utc(),
        dry_run,
    }
}

fn lab() -> Vec<Host> {
    vec![
        device("nas01", "90:09:D0:00:00:01", "192.168.1.20/24"),
        device("pve1", "BC:24:11:00:00:01", "192.168.1.10/24"),
        vm(140, "web01", "192.168.1.140/24"),
        vm(141, "db01", "192.168.1.141/24"),
    ]
}

fn find<'a>(objs: &'a [Value], key: &str, value: &str) -> &'a Value {
    objs.iter()
        .find(|o| o[key] == value)
        .unwrap_or_else(|| panic!("no object with {key} = {value} in {objs:?}"))
}

#[tokio::test]
async fn creates_in_order_then_a_resync_writes_nothing() {
    let nb = netbox().await;
    let c = client(&nb);
    let out = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert!(out.conflicts.is_empty(), "{:?}", out.conflicts);
    let m = &nb.model;
    assert_eq!(m.count("dcim/devices"), 2);
    assert_eq!(m.count("virtualization/virtual-machines"), 2);
    assert_eq!(m.count("dcim/interfaces"), 2);
    assert_eq!(m.count("virtualization/interfaces"), 2);
    assert_eq!(m.count("dcim/mac-addresses"), 4);
    assert_eq!(m.count("ipam/ip-addresses"), 4);
    let devices = m.objects("dcim/devices");
    let nas = find(&devices, "name", "nas01");
    assert_eq!(nas["primary_ip4"]["address"], "192.168.1.20/24");
    assert_eq!(nas["custom_fields"]["agent_source_id"], "inventory:nas01");
    assert_eq!(nas["custom_fields"]["last_seen"], "2026-11-26");
    let tags: Vec<&str> = nas["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["netbox-agent", "netbox-agent-inventory"]);
    let vms = m.objects("virtualization/virtual-machines");
    let web = find(&vms, "name", "web01");
    assert_eq!(web["memory"], 2048);
    assert_eq!(
        web["site"]["slug"], "homelab",
        "site inherited from the cluster"
    );
    assert_eq!(web["primary_ip4"]["address"], "192.168.1.140/24");
    let ifs = m.objects("virtualization/interfaces");
    assert_eq!(
        ifs[0]["primary_mac_address"]["mac_address"],
        "BC:24:11:00:00:8C"
    );
    // Every write carried the changelog message.
    assert!(
        m.changes()
            .iter()
            .all(|c| c.message.starts_with("netbox-agent")),
        "{:?}",
        m.changes()
    );

    let before = m.stats();
    let again = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    let after = m.stats();
    assert_eq!(
        after.write_requests - before.write_requests,
        0,
        "plan: {:?}",
        again.plan
    );
    assert_eq!(after.changes, before.changes);
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    assert!(
        after.requests - before.requests <= 15,
        "{} requests",
        after.requests - before.requests
    );
}

#[tokio::test]
async fn dry_run_plans_exactly_and_writes_nothing() {
    let nb = netbox().await;
    let c = client(&nb);
    let out = sync::run(&c, &settings(), &request(lab(), true, true))
        .await
        .unwrap();
    assert_eq!(nb.model.stats().write_requests, 0);
    assert_eq!(nb.model.stats().changes, 0);
    // Now really: one change record per planned line, the same plan.
    let real = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    assert_eq!(
        nb.model.stats().changes as usize,
        out.plan.len(),
        "{:#?}",
        out.plan
    );
    let strip = |l: &String| {
        l.split(" (#")
            .next()
            .unwrap_or(l)
            .split(": {")
            .next()
            .unwrap_or(l)
            .to_string()
    };
    assert_eq!(
        out.plan.iter().map(strip).collect::<Vec<_>>(),
        real.plan.iter().map(strip).collect::<Vec<_>>()
    );
    assert!(
        out.plan
            .iter()
            .any(|l| l.starts_with("create dcim/devices nas01")),
        "{:#?}",
        out.plan
    );

    // A change shows as a field diff.
    let mut changed = lab();
    changed[2].vm.as_mut().unwrap().memory_mb = Some(4096);
    let out = sync::run(&c, &settings(), &request(changed, true, true))
        .await
        .unwrap();
    assert_eq!(out.plan.len(), 1, "{:?}", out.plan);
    assert!(
        out.plan[0].contains("web01") && out.plan[0].contains("memory 2048.0 -> 4096"),
        "{}",
        out.plan[0]
    );
}

#[tokio::test]
async fn human_objects_are_conflicts_and_human_tags_survive() {
    let nb = netbox().await;
    let c = client(&nb);
    // A human's IP that the agent would want.
    nb.model
        .create(
            "ipam/ip-addresses",
            json!({"address": "192.168.1.20/24", "description": "printer, do not touch"}),
        )
        .unwrap();
    let out = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    assert_eq!(out.conflicts.len(), 1, "{:?}", out.conflicts);
    assert!(
        out.conflicts[0].contains("192.168.1.20/24"),
        "{}",
        out.conflicts[0]
    );
    let ips = nb.model.objects("ipam/ip-addresses");
    let human = find(&ips, "address", "192.168.1.20/24");
    assert_eq!(human["description"], "printer, do not touch");
    assert!(human["tags"].as_array().unwrap().is_empty());
    assert!(human["assigned_object"].is_null());

    // A human tags an agent device: the next sync keeps that tag.
    nb.model
        .create("extras/tags", json!({"name": "rack-a", "slug": "rack-a"}))
        .unwrap();
    let dev = find(&nb.model.objects("dcim/devices"), "name", "pve1").clone();
    let id = dev["id"].as_u64().unwrap();
    let mut tags: Vec<Value> = dev["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!({"slug": t["slug"]}))
        .collect();
    tags.push(json!({"slug": "rack-a"}));
    nb.model
        .patch(
            "dcim/devices",
            id,
            json!({"tags": tags, "description": "edited"}),
        )
        .unwrap();
    sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    let dev = find(&nb.model.objects("dcim/devices"), "name", "pve1").clone();
    let slugs: Vec<&str> = dev["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert!(slugs.contains(&"rack-a"), "{slugs:?}");
    // The agent owns the description it sets (empty here): it is put back.
    assert_eq!(dev["description"], "");

    // A device with the same name made by a human: left alone.
    let nb2 = netbox().await;
    let c2 = client(&nb2);
    sync::run(&c2, &settings(), &request(vec![], true, false))
        .await
        .unwrap();
    let site = nb2.model.objects("dcim/sites")[0]["id"].as_u64().unwrap();
    let mf = nb2
        .model
        .create(
            "dcim/manufacturers",
            json!({"name": "ACME", "slug": "acme"}),
        )
        .unwrap();
    let dt = nb2
        .model
        .create(
            "dcim/device-types",
            json!({"manufacturer": mf["id"], "model": "Box", "slug": "box"}),
        )
        .unwrap();
    let role = nb2
        .model
        .create(
            "dcim/device-roles",
            json!({"name": "Other", "slug": "other"}),
        )
        .unwrap();
    nb2.model
        .create(
            "dcim/devices",
            json!({"name": "nas01", "device_type": dt["id"], "role": role["id"], "site": site}),
        )
        .unwrap();
    let out = sync::run(&c2, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    assert!(
        out.conflicts
            .iter()
            .any(|c| c.contains("`nas01`") && c.contains("adopt_existing")),
        "{:?}",
        out.conflicts
    );
    let nas = find(&nb2.model.objects("dcim/devices"), "name", "nas01").clone();
    assert!(nas["tags"].as_array().unwrap().is_empty());
    assert_eq!(nas["device_type"]["slug"], "box");

    // With adopt_existing the agent takes it over.
    let adopt = SyncSettings {
        adopt_existing: true,
        ..settings()
    };
    let out = sync::run(&c2, &adopt, &request(lab(), true, false))
        .await
        .unwrap();
    assert!(
        !out.conflicts.iter().any(|c| c.contains("`nas01`")),
        "{:?}",
        out.conflicts
    );
    let nas = find(&nb2.model.objects("dcim/devices"), "name", "nas01").clone();
    assert_eq!(nas["custom_fields"]["agent_source_id"], "inventory:nas01");
}

#[tokio::test]
async fn gone_objects_are_orphaned_then_pruned_leaf_first_sparing_human_ips() {
    let nb = netbox().await;
    let c = client(&nb);
    sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    // A human adds an IP on the agent's nas01 interface.
    let ifs = nb.model.objects("dcim/interfaces");
    let nas_if = ifs.iter().find(|i| i["device"]["name"] == "nas01").unwrap()["id"]
        .as_u64()
        .unwrap();
    nb.model.create("ipam/ip-addresses", json!({"address": "192.168.1.99/24", "assigned_object_type": "dcim.interface", "assigned_object_id": nas_if})).unwrap();

    // nas01 and web01 disappear.
    let fewer: Vec<Host> = lab()
        .into_iter()
        .filter(|h| h.name != "nas01" && h.name != "web01")
        .collect();
    // An incremental sync never orphans.
    let out = sync::run(&c, &settings(), &request(fewer.clone(), false, false))
        .await
        .unwrap();
    assert!(out.plan.is_empty(), "{:?}", out.plan);
    // The full sync orphans (tags), deletes nothing yet.
    let out = sync::run(&c, &settings(), &request(fewer.clone(), true, false))
        .await
        .unwrap();
    let orphaned: u64 = out.counts.values().map(|c| c.orphaned).sum();
    assert_eq!(
        orphaned,
        2 + 2 + 2 + 2,
        "device+VM, their interfaces, MACs, IPs: {:#?}",
        out.plan
    );
    assert_eq!(nb.model.count("dcim/devices"), 2);
    let nas = find(&nb.model.objects("dcim/devices"), "name", "nas01").clone();
    assert!(nas["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["slug"] == "netbox-agent-orphaned"));
    // The next full sync prunes (prune_after_days = 0): web01 completely;
    // nas01's IP, MAC… but not its interface or the device, which carry the
    // human's IP.
    let out = sync::run(&c, &settings(), &request(fewer.clone(), true, false))
        .await
        .unwrap();
    let order: Vec<&str> = out
        .plan
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap())
        .collect();
    assert_eq!(order.first(), Some(&"ipam/ip-addresses"), "{:#?}", out.plan);
    assert!(
        out.conflicts.iter().any(|c| c.contains("192.168.1.99/24")),
        "{:?}",
        out.conflicts
    );
    assert_eq!(nb.model.count("virtualization/virtual-machines"), 1);
    assert_eq!(nb.model.count("dcim/devices"), 2, "nas01 kept");
    let ips = nb.model.objects("ipam/ip-addresses");
    assert!(
        ips.iter().any(|i| i["address"] == "192.168.1.99/24"),
        "the human's IP survives"
    );
    assert!(!ips.iter().any(|i| i["address"] == "192.168.1.20/24"));
    assert!(!ips.iter().any(|i| i["address"] == "192.168.1.140/24"));

    // The device comes back: the orphan tag goes.
    sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    let nas = find(&nb.model.objects("dcim/devices"), "name", "nas01").clone();
    assert!(!nas["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["slug"] == "netbox-agent-orphaned"));
    assert_eq!(nas["primary_ip4"]["address"], "192.168.1.20/24");
}

#[tokio::test]
async fn a_failing_source_orphans_nothing() {
    let nb = netbox().await;
    let c = client(&nb);
    sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    // Proxmox failed this cycle: its VMs are missing from the hosts, but it
    // is not authoritative, so nothing of it is orphaned.
    let inv_only: Vec<Host> = lab()
        .into_iter()
        .filter(|h| h.source == Source::Inventory)
        .collect();
    let mut req = request(inv_only, true, false);
    req.authoritative = BTreeSet::from([Source::Inventory]);
    let out = sync::run(&c, &settings(), &req).await.unwrap();
    assert!(out.plan.is_empty(), "{:#?}", out.plan);
}

#[tokio::test]
async fn retries_on_503_and_429() {
    let nb = netbox().await;
    let c = client(&nb);
    nb.model.fail_next(&[503, 429, 503]);
    let out = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(nb.model.count("dcim/devices"), 2);
    // Past max_attempts the error surfaces.
    nb.model.fail_next(&[503, 503, 503, 503]);
    let e = sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("503"), "{e}");
}

#[tokio::test]
async fn more_than_a_page_is_read_completely() {
    let nb = netbox().await;
    let c = client(&nb);
    let hosts: Vec<Host> = (0..1100u32)
        .map(|i| {
            let mut h = Host::device(
                Source::NetworkScan,
                format!("scan:ip:10.9.{}.{}", i / 250, i % 250 + 1),
                format!("h{i}"),
            );
            h.interfaces.push(Iface {
                name: "eth0".into(),
                mac: None,
                kind: "other".into(),
                ips: vec![IpSpec {
                    address: format!("10.9.{}.{}/16", i / 250, i % 250 + 1),
                    dns_name: String::new(),
                }],
            });
            h
        })
        .collect();
    let s = SyncSettings {
        batch_size: 500,
        ..settings()
    };
    sync::run(&c, &s, &request(hosts.clone(), true, false))
        .await
        .unwrap();
    assert_eq!(nb.model.count("dcim/devices"), 1100);
    let before = nb.model.stats();
    let out = sync::run(&c, &s, &request(hosts, true, false))
        .await
        .unwrap();
    assert!(
        out.plan.is_empty(),
        "{:?}",
        &out.plan[..out.plan.len().min(5)]
    );
    assert_eq!(nb.model.stats().write_requests, before.write_requests);
}

#[tokio::test]
async fn last_seen_moves_once_a_day_with_one_bulk_update_per_type() {
    let nb = netbox().await;
    let c = client(&nb);
    sync::run(&c, &settings(), &request(lab(), true, false))
        .await
        .unwrap();
    let mut next_day = request(lab(), true, false);
    next_day.today = "2026-11-27".into();
    let before = nb.model.stats();
    let out = sync::run(&c, &settings(), &next_day).await.unwrap();
    let after = nb.model.stats();
    // Devices, VMs and IPs carry last_seen: 2 + 2 + 4 objects, nothing else.
    assert_eq!(out.plan.len(), 8, "{:#?}", out.plan);
    assert!(
        out.plan
            .iter()
            .all(|l| l.contains("custom_fields.last_seen \"2026-11-26\" -> \"2026-11-27\"")),
        "{:#?}",
        out.plan
    );
    assert_eq!(
        after.write_requests - before.write_requests,
        3,
        "one bulk PATCH per type"
    );
    assert_eq!(after.changes - before.changes, 8);
    let dev = find(&nb.model.objects("dcim/devices"), "name", "nas01").clone();
    assert_eq!(dev["custom_fields"]["last_seen"], "2026-11-27");
}
