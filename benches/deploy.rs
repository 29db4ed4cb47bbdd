//! `make bench`: deploy-to-healthy of `netbox-agent` on a private sandbox
//! node, against the floor measured in the same run on the same machine:
//! bare `pct create` + `pct start` + DHCP lease with the very same create
//! spec. Prints min/median/max of both and the ratio of the medians
//! (target: ≤ 1.3×).
//!
//! The deploy runs through the real operations engine and the `deploy` op
//! kind (validation, vmid reservation, create, start, lease, install, unit,
//! health gate, record), as `POST /v1/deployments` does, minus HTTP.
//!
//! Needs root, the template in the appliance mirror and the agents in
//! `target/release` (`make agents-bin`); otherwise it says why and exits
//! non-zero.

mod support;

use std::time::{Duration, Instant};

use oneld::api::{DeployRequest, OpStatus, Overrides, Requestor};
use oneld::config::{AppsConfig, OpsConfig};
use oneld::deploy::Env;
use oneld::events::EventBus;
use oneld::ops::kinds::deploy::Deploy;
use oneld::ops::kinds::deployment::{Action, DeploymentOp};
use oneld::ops::Ops;
use oneld::paths::Paths;
use oneld::pve::pct::DestroyOptions;
use oneld::secrets::Secrets;
use oneld::store::Store;
use support::sandbox::wait_for;
use support::{sandbox_pve, stats};

const ROUNDS: usize = 3;

fn root() -> Requestor {
    Requestor {
        uid: 0,
        user: "root".into(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    }
}

async fn run() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the deploy bench needs root (run `make bench` as root)".into());
    }
    let agents = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release");
    if !agents.join("netbox-agent").is_file() {
        return Err("no target/release/netbox-agent: run `make agents-bin`".into());
    }
    let bridge = "sbxbd0";
    let (_node, pve) = sandbox_pve(bridge, "10.213.22.0/24").await?;
    // The agent's upstream: the fake NetBox on this node's bridge (replaying
    // recorded transcripts), so the deploy ends healthy as in production.
    // Nothing outside the sandbox subnet is ever contacted.
    const TOKEN: &str = "nbt_0123456789ab.deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
    let netbox = fake_upstreams::NetBox::new()
        .with_token(fake_upstreams::Secret::new(TOKEN))
        .serve(std::net::SocketAddr::from(([10, 213, 22, 1], 0)))
        .await
        .map_err(|e| format!("fake NetBox: {e}"))?;
    let netbox_url = netbox.url();

    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
    if std::env::var_os("DEPLOY_BENCH_KEEP").is_some() {
        eprintln!("state kept in {}", state.path().display());
    }
    let paths = Paths::under(state.path());
    let store = Store::open(&paths).map_err(|e| e.to_string())?;
    let secrets = Secrets::open(&paths).map_err(|e| e.to_string())?;
    let events = EventBus::new();
    let ops = Ops::new(
        store.clone(),
        events.clone(),
        secrets.redactor().clone(),
        Some(pve.clone()),
        &OpsConfig::default(),
    );
    let env = Env {
        store,
        secrets,
        events,
        apps: AppsConfig {
            agents_dir: agents,
            dir: state.path().join("apps.d"),
            ..AppsConfig::default()
        },
        staging_dir: paths.staging_dir.clone(),
        backup: oneld::config::BackupConfig::default().policy(),
        alerts: None,
        notify_backup_success: false,
    };
    let req = |name: &str| DeployRequest {
        app: "netbox-agent".into(),
        name: Some(name.into()),
        settings: [("netbox_url".to_string(), serde_json::json!(netbox_url))].into(),
        secrets: [("netbox_token".to_string(), TOKEN.to_string())].into(),
        overrides: Overrides {
            bridge: Some(bridge.into()),
            ..Overrides::default()
        },
        ..DeployRequest::default()
    };

    let (mut floor, mut deploy) = (vec![], vec![]);
    for round in 0..ROUNDS {
        // Floor: the deploy's own create spec, then start and lease.
        let (_, spec) = oneld::deploy::prepare(&env, &pve, &req("floor"))
            .await
            .map_err(|e| e.message)?;
        let vmid = 180 + round as u32;
        let t0 = Instant::now();
        pve.pct_create(&spec.create_spec(vmid, "bench"))
            .await
            .map_err(|e| e.to_string())?;
        pve.pct_start(vmid).await.map_err(|e| e.to_string())?;
        wait_for("a DHCP lease", Duration::from_secs(60), || async {
            let ifs = pve.ct_interfaces(vmid).await.ok()?;
            oneld::deploy::net::ipv4_of(&ifs)
        })
        .await;
        floor.push(t0.elapsed());
        let _ = pve.pct_stop(vmid).await;
        pve.pct_destroy(
            vmid,
            DestroyOptions {
                purge: true,
                force: true,
                destroy_unreferenced_disks: true,
            },
        )
        .await
        .map_err(|e| e.to_string())?;

        // Deploy to healthy (validation included, as the API does it).
        let name = format!("nb{round}");
        let t0 = Instant::now();
        let (_, spec) = oneld::deploy::prepare(&env, &pve, &req(&name))
            .await
            .map_err(|e| e.message)?;
        let op = ops
            .submit(Box::new(Deploy::new(env.clone(), spec)), root())
            .await
            .map_err(|e| e.message)?;
        let op = ops
            .wait(&op.id, Duration::from_secs(300))
            .await
            .map_err(|e| e.message)?;
        let took = t0.elapsed();
        if op.status != OpStatus::Succeeded {
            let log = ops
                .log(&op.id, 0)
                .map(|c| c.lines.join("\n"))
                .unwrap_or_default();
            return Err(format!(
                "deploy {name} ended {:?}: {:?}\n{log}",
                op.status, op.error
            ));
        }
        deploy.push(took);
        let rec = env
            .store
            .get_deployment(&name)
            .map_err(|e| e.to_string())?
            .ok_or("not recorded")?;
        let op = ops
            .submit(
                Box::new(DeploymentOp::new(
                    env.clone(),
                    &name,
                    rec.vmid,
                    Action::Destroy { purge: true },
                )),
                root(),
            )
            .await
            .map_err(|e| e.message)?;
        ops.wait(&op.id, Duration::from_secs(120))
            .await
            .map_err(|e| e.message)?;
    }
    if std::env::var_os("DEPLOY_BENCH_KEEP").is_some() {
        std::mem::forget(state);
    }
    let f = stats(&mut floor);
    let d = stats(&mut deploy);
    println!("| figure ({ROUNDS} rounds) | min ms | median ms | max ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| floor: pct create + start + DHCP lease (same spec) | {:.0} | {:.0} | {:.0} |",
        f.0, f.1, f.2
    );
    println!("| deploy netbox-agent to healthy (validate … health gate, record) | {:.0} | {:.0} | {:.0} |", d.0, d.1, d.2);
    println!();
    println!(
        "deploy / floor (medians): {:.2}× (target ≤ 1.3×)",
        d.1 / f.1
    );
    Ok(())
}

fn main() {
    support::main_with("deploy", run);
}
