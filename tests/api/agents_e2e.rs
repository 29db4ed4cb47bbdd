//! The agents end to end on the sandbox node (root tier).
//!
//! netbox-agent (issue 9): deployed by 1ld with its network scan pointed at
//! the sandbox bridge's own subnet and the stateful NetBox fake on the
//! bridge's host address. The containers on the subnet appear in NetBox;
//! the next syncs make zero writes; destroying a container orphans, then
//! prunes, its objects. Nothing outside the subnet the test created is
//! probed.

use std::time::{Duration, Instant};

use oneld::api::{OpStatus, Operation};
use serde_json::{json, Value};

use crate::daemon::root_tier;
use crate::deployments::{deploy, finish, Node, TOKEN};

/// `GET http://<ip>:<port><path>` from the host (the bridge), as JSON.
async fn get_json(ip: &str, port: u16, path: &str) -> Option<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect((ip, port)),
    )
    .await
    .ok()?
    .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf);
    let body = text.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

async fn wait_until<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ip_objects(nb: &fake_upstreams::StatefulNetBox) -> Vec<Value> {
    nb.model.objects("ipam/ip-addresses")
}

fn ip_of(objs: &[Value], ip: &str) -> Option<Value> {
    objs.iter()
        .find(|o| {
            o["address"]
                .as_str()
                .is_some_and(|a| a.split('/').next() == Some(ip))
        })
        .cloned()
}

fn tags_of(o: &Value) -> Vec<String> {
    o["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["slug"].as_str().or(t["name"].as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_netbox_agent_scans_the_sandbox_into_netbox() {
    if !root_tier(
        "root_netbox_agent_scans_the_sandbox_into_netbox",
        "containers need root",
    ) {
        return;
    }
    let n = Node::with_config("sbxnb0", "10.213.91.0/24", 0, |_, _| {});
    let nb = fake_upstreams::NetBoxModel::new(Some(fake_upstreams::Secret::new(TOKEN)))
        .expect("model")
        .serve(std::net::SocketAddr::from(([10, 213, 91, 1], 0)))
        .await
        .expect("stateful NetBox");
    let c = n.client();
    // A plain container on the subnet for the scan to find (its own agent
    // syncs nothing: every source is off by default).
    let mut other = n.request("netbox-agent", "other");
    other["settings"]["netbox_url"] = json!(nb.url());
    let (op, log) = deploy(&c, &other).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let mut req = n.request("netbox-agent", "nb");
    req["settings"] = json!({
        "netbox_url": nb.url(),
        "interval": "5s",
        "full_sync_interval": "10s",
        "scan_enabled": true,
        "scan_cidrs": ["10.213.91.0/24"],
        "scan_interval": "5s",
        // PTR lookups would go to the container's resolvers (copied from
        // the host): never outside the sandbox.
        "scan_reverse_dns": false,
        "prune_after_days": 0,
    });
    let (op, log) = deploy(&c, &req).await;
    assert_eq!(op.status, OpStatus::Succeeded, "{log}");
    let ip = |name: &'static str| {
        let c = n.client();
        async move {
            let d: Value = c
                .get(&format!("/v1/deployments/{name}"))
                .await
                .expect(200)
                .json();
            (
                d["ip"].as_str().expect("ip").to_string(),
                d["vmid"].as_u64().expect("vmid"),
            )
        }
    };
    let (nb_ip, _) = ip("nb").await;
    let (other_ip, other_vmid) = ip("other").await;

    // Both containers appear in NetBox, owned by the agent.
    let objs = wait_until("both containers' IPs in NetBox", 120, || async {
        let objs = ip_objects(&nb);
        (ip_of(&objs, &nb_ip).is_some() && ip_of(&objs, &other_ip).is_some()).then_some(objs)
    })
    .await;
    let o = ip_of(&objs, &other_ip).expect("other's IP");
    let tags = tags_of(&o);
    assert!(
        tags.iter().any(|t| t == "netbox-agent"),
        "owned by the agent: {o}"
    );
    assert!(
        objs.iter().all(|o| o["address"]
            .as_str()
            .is_some_and(|a| a.starts_with("10.213.91."))),
        "nothing outside the sandbox subnet: {objs:?}"
    );

    // The next two syncs change nothing: zero writes.
    let status = |ip: String| async move { get_json(&ip, 8080, "/status").await };
    let syncs = |v: &Value| v["agent"]["syncs"].as_u64().unwrap_or(0);
    let s0 = wait_until("the agent's /status", 60, || status(nb_ip.clone())).await;
    // Let the sync that created them finish first.
    let base = syncs(&s0) + 1;
    wait_until("a sync after the creates", 120, || {
        let ip = nb_ip.clone();
        async move { status(ip).await.filter(|v| syncs(v) >= base) }
    })
    .await;
    let before = nb.model.stats();
    let target = base + 2;
    let s = wait_until("two more syncs", 90, || {
        let ip = nb_ip.clone();
        async move { status(ip).await.filter(|v| syncs(v) >= target) }
    })
    .await;
    let after = nb.model.stats();
    assert_eq!(
        after.write_requests, before.write_requests,
        "a sync with nothing new wrote to NetBox: {s}"
    );
    assert_eq!(after.changes, before.changes, "{s}");

    // Destroy the other container: its IP is orphaned, then pruned.
    let del: Operation = c
        .delete("/v1/deployments/other?purge=true")
        .await
        .expect(202)
        .json();
    let del = finish(&c, &del.id, Duration::from_secs(90)).await;
    assert_eq!(del.status, OpStatus::Succeeded);
    assert!(!String::from_utf8_lossy(&n.pct(&["list"]).stdout).contains(&other_vmid.to_string()));
    let mut orphaned = false;
    wait_until("the gone container's IP orphaned, then pruned", 180, || {
        let objs = ip_objects(&nb);
        let found = ip_of(&objs, &other_ip);
        if let Some(o) = &found {
            if tags_of(o).iter().any(|t| t.contains("orphan")) {
                orphaned = true;
            }
        }
        let done = orphaned && found.is_none();
        async move { done.then_some(()) }
    })
    .await;
    // The agent's own container is still there, not orphaned.
    let objs = ip_objects(&nb);
    let me = ip_of(&objs, &nb_ip).expect("nb's IP stays");
    assert!(!tags_of(&me).iter().any(|t| t.contains("orphan")), "{me}");
    let del: Operation = c
        .delete("/v1/deployments/nb?purge=true")
        .await
        .expect(202)
        .json();
    finish(&c, &del.id, Duration::from_secs(90)).await;
}
