//! Shared by the benches: the sandbox node (tests/support), the async
//! runtime and `main` of the async benches, min/median/max figures, and the
//! stored operations the daemon and client benches list.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use oneld::api::{OpStatus, Progress, Requestor};
use oneld::pve::Pve;
use oneld::store::{OpRecord, Store};

#[path = "../../tests/support/mod.rs"]
pub mod sandbox;

use sandbox::{SandboxNode, NODE, TEMPLATE};

/// The benches' runtime: multi-threaded on two workers.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// `main` of an async bench: runs `run`; without a runtime or when `run`
/// fails, says so (as the `what` bench) and exits 1.
pub fn main_with<F: Future<Output = Result<(), String>>>(what: &str, run: impl FnOnce() -> F) {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{what} bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("{what} bench failed: {e}");
        std::process::exit(1);
    }
}

/// Min, median and max of `samples` in ms (sorts them).
pub fn stats(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
    )
}

/// A private PVE 8 sandbox node on `bridge`/`subnet` with the template
/// downloaded to `local`, and the typed layer on it.
pub async fn sandbox_pve(bridge: &str, subnet: &str) -> Result<(SandboxNode, Pve), String> {
    let node = SandboxNode::up(8, bridge, subnet);
    let pve = Pve::detect(node.runner(), NODE)
        .await
        .map_err(|e| e.to_string())?;
    pve.pveam_update().await.map_err(|e| e.to_string())?;
    pve.pveam_download("local", TEMPLATE)
        .await
        .map_err(|e| e.to_string())?;
    Ok((node, pve))
}

/// Stores `n` finished `template.download` operations, a second apart and
/// ending now, of `steps` steps with `percent` at the end: their ids.
pub fn seed_operations(store: &Store, n: usize, steps: u32, percent: Option<f32>) -> Vec<String> {
    let now = oneld::store::now_ms();
    (0..n)
        .map(|i| {
            let id = format!("bench-{i:05}");
            let created = now - (n - i) as i64 * 1000;
            store
                .insert_op(&OpRecord {
                    id: id.clone(),
                    kind: "template.download".into(),
                    target: Some(format!("template/local/bench-{i}_1.0-1_amd64.tar.zst")),
                    requestor: Requestor {
                        uid: 0,
                        user: "root".into(),
                        pid: 1,
                    },
                    status: OpStatus::Succeeded,
                    error: None,
                    created_ms: created,
                    started_ms: Some(created + 10),
                    finished_ms: Some(created + 900),
                    progress: Progress {
                        step: steps,
                        steps,
                        name: "verify".into(),
                        percent,
                    },
                    cancellable: false,
                    payload: serde_json::json!({"storage": "local", "template": format!("bench-{i}")}),
                })
                .expect("insert");
            id
        })
        .collect()
}

/// `n` deployments (`bench-0000`…, vmids from 1000) as a deploy records
/// them, at loopback addresses 127.1.x.y (supervision stays off in the
/// benches that list them, so nothing probes them).
pub fn seed_deployments(store: &Store, n: usize) {
    use oneld::api::{HealthStatus, HealthSummary, IntendedState, Resources};
    let now = oneld::store::now_ms();
    for i in 0..n {
        let mut settings = std::collections::BTreeMap::new();
        settings.insert(
            "netbox_url".to_string(),
            serde_json::json!(format!("http://netbox{i}.lan:8000")),
        );
        settings.insert("interval".to_string(), serde_json::json!("5m"));
        store
            .insert_deployment(&oneld::store::DeploymentRecord {
                name: bench_name(i),
                app: "netbox-agent".into(),
                app_version: "0.1.0".into(),
                vmid: bench_vmid(i),
                node: "pve".into(),
                intended_state: IntendedState::Running,
                spec: oneld::store::StoredSpec {
                    resources: Resources {
                        cores: 2,
                        memory: 2048,
                        swap: 512,
                        disk: 8,
                        storage: "local-lvm".into(),
                        bridge: "vmbr0".into(),
                        ip: "dhcp".into(),
                        gw: None,
                        ip6: "auto".into(),
                        onboot: true,
                    },
                    tags: vec!["1ld".into(), "1ld-netbox-agent".into()],
                    settings,
                    secret_keys: vec!["netbox_token".into()],
                    supervise: Default::default(),
                    backup: Default::default(),
                },
                config_hash: format!("fnv1a64:{i:016x}"),
                ip: Some(format!("127.1.{}.{}", i / 250, i % 250 + 2)),
                health: HealthSummary {
                    status: HealthStatus::Healthy,
                    checked_at: Some("2026-01-02T03:04:05Z".into()),
                    detail: None,
                },
                drift: Vec::new(),
                adopted: false,
                created_ms: now,
                updated_ms: now,
                last_backup_ms: None,
            })
            .expect("insert deployment");
    }
}

/// The name of the `i`th seeded deployment.
pub fn bench_name(i: usize) -> String {
    format!("bench-{i:04}")
}

/// The vmid of the `i`th seeded deployment.
pub fn bench_vmid(i: usize) -> u32 {
    1000 + i as u32
}

/// LXC's command socket of a running container, as `lxc-start -P <lxc>` binds it.
pub fn command_socket(
    lxc: &std::path::Path,
    vmid: u32,
) -> Result<std::os::unix::net::UnixListener, String> {
    let name = format!("{}/{vmid}/command", lxc.display());
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .map_err(|e| format!("abstract name {name}: {e}"))?;
    std::os::unix::net::UnixListener::bind_addr(&addr).map_err(|e| format!("bind @{name}: {e}"))
}
