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
