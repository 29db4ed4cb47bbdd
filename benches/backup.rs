//! `make bench`: backups on a private sandbox node, each against what it
//! adds to, measured in the same run:
//! - backup through 1ld (the `backup` operation: storage check, spec into
//!   the container, pre-backup hook, vzdump, record) vs bare `vzdump` with
//!   the same options (target ≤ 1.1×);
//! - restore as a new deployment to healthy (the `backup.restore`
//!   operation: reserve, `pct restore --unique`, start, lease, health gate,
//!   record);
//! - verify (the `backup.verify` operation: restore into a throwaway with
//!   its link down, start, self-check, destroy).
//!
//! Needs root, the template in the appliance mirror and the agents in
//! `target/release` (`make agents-bin`); otherwise it says why and exits 1.

mod support;

use std::time::{Duration, Instant};

use oneld::api::{DeployRequest, OpStatus, Overrides, Requestor};
use oneld::config::{AppsConfig, OpsConfig};
use oneld::deploy::Env;
use oneld::events::EventBus;
use oneld::ops::kinds::backup::BackupOp;
use oneld::ops::kinds::deploy::Deploy;
use oneld::ops::kinds::deployment::{Action, DeploymentOp};
use oneld::ops::kinds::restore::{RestoreOp, RestorePlan, Target};
use oneld::ops::kinds::verify::VerifyOp;
use oneld::ops::{OpTask, Ops};
use oneld::paths::Paths;
use oneld::pve::vzdump::{Compression, VzdumpSpec};
use oneld::secrets::Secrets;
use oneld::store::Store;
use support::{sandbox_pve, stats};

const ROUNDS: usize = 5;
const TOKEN: &str = "nbt_0123456789ab.deadbeefdeadbeefdeadbeefdeadbeefdeadbeef";

fn root() -> Requestor {
    Requestor {
        uid: 0,
        user: "root".into(),
        pid: i32::try_from(std::process::id()).unwrap_or(0),
    }
}

/// Runs an operation to its end; its wall time.
async fn timed(ops: &Ops, task: Box<dyn OpTask>) -> Result<Duration, String> {
    let t0 = Instant::now();
    let op = ops.submit(task, root()).await.map_err(|e| e.message)?;
    let op = ops
        .wait(&op.id, Duration::from_secs(600))
        .await
        .map_err(|e| e.message)?;
    let took = t0.elapsed();
    if op.status != OpStatus::Succeeded {
        let log = ops
            .log(&op.id, 0)
            .map(|c| c.lines.join("\n"))
            .unwrap_or_default();
        return Err(format!(
            "{} ended {:?}: {:?}\n{log}",
            op.kind, op.status, op.error
        ));
    }
    Ok(took)
}

async fn run() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the backup bench needs root (run `make bench` as root)".into());
    }
    let agents = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release");
    if !agents.join("netbox-agent").is_file() {
        return Err("no target/release/netbox-agent: run `make agents-bin`".into());
    }
    let bridge = "sbxbb0";
    let (_node, pve) = sandbox_pve(bridge, "10.213.23.0/24").await?;
    // The agent's upstream: the fake NetBox on this node's bridge only.
    let netbox = fake_upstreams::NetBox::new()
        .with_token(fake_upstreams::Secret::new(TOKEN))
        .serve(std::net::SocketAddr::from(([10, 213, 23, 1], 0)))
        .await
        .map_err(|e| format!("fake NetBox: {e}"))?;
    let state = tempfile::tempdir().map_err(|e| e.to_string())?;
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
    let cfg = oneld::config::Config {
        apps: AppsConfig {
            agents_dir: agents,
            dir: state.path().join("apps.d"),
            ..AppsConfig::default()
        },
        state_dir: state.path().to_path_buf(),
        ..oneld::config::Config::default()
    };
    let env = Env::new(store, secrets, events, &cfg, None);
    let req = DeployRequest {
        app: "netbox-agent".into(),
        name: Some("nb".into()),
        settings: [("netbox_url".to_string(), serde_json::json!(netbox.url()))].into(),
        secrets: [("netbox_token".to_string(), TOKEN.to_string())].into(),
        overrides: Overrides {
            bridge: Some(bridge.into()),
            ..Overrides::default()
        },
        ..DeployRequest::default()
    };
    let (_, spec) = oneld::deploy::prepare(&env, &pve, &req)
        .await
        .map_err(|e| e.message)?;
    timed(&ops, Box::new(Deploy::new(env.clone(), spec))).await?;
    let rec = env
        .store
        .get_deployment("nb")
        .map_err(|e| e.to_string())?
        .ok_or("not recorded")?;
    let app = oneld::deploy::find_app(&env.catalog(), "netbox-agent").map_err(|e| e.message)?;
    let policy = oneld::backup::policy_of(&rec.spec, &env.backup);

    let (mut floor, mut through) = (vec![], vec![]);
    for _ in 0..ROUNDS {
        // Bare vzdump, the same options 1ld passes (zstd, snapshot, prune).
        let spec = VzdumpSpec {
            mode: Some(oneld::backup::mode(policy.mode)),
            compress: Some(Compression::Zstd),
            prune: Some(oneld::backup::prune(&policy)),
            remove: Some(true),
            ..VzdumpSpec::new(rec.vmid, "local")
        };
        let t0 = Instant::now();
        pve.vzdump(&spec).await.map_err(|e| e.to_string())?;
        floor.push(t0.elapsed());
        // The sandbox's archive names have one-second resolution.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        through.push(
            timed(
                &ops,
                Box::new(BackupOp::new(
                    env.clone(),
                    "nb",
                    rec.vmid,
                    policy.clone(),
                    app.manifest.data.pre_backup.clone(),
                )),
            )
            .await?,
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let newest = env
        .store
        .backups(Some("nb"))
        .map_err(|e| e.to_string())?
        .into_iter()
        .max_by_key(|b| b.time_ms)
        .ok_or("no backup recorded")?;

    let (mut restore, mut verify) = (vec![], vec![]);
    for round in 0..ROUNDS.min(3) {
        let name = format!("nb-r{round}");
        let plan = RestorePlan {
            volid: newest.volid.clone(),
            base: None,
            app: "netbox-agent".into(),
            storage: rec.spec.resources.storage.clone(),
            vmid_range: (
                app.manifest.container.vmid_range[0],
                app.manifest.container.vmid_range[1],
            ),
            health: app.manifest.health.clone(),
            target: Target::New { name: name.clone() },
        };
        restore.push(timed(&ops, Box::new(RestoreOp::new(env.clone(), plan))).await?);
        let r = env
            .store
            .get_deployment(&name)
            .map_err(|e| e.to_string())?
            .ok_or("restore not recorded")?;
        timed(
            &ops,
            Box::new(DeploymentOp::new(
                env.clone(),
                &name,
                r.vmid,
                Action::Destroy { purge: true },
            )),
        )
        .await?;
        let plan = oneld::backup::verify_plan(&env, cfg.backup.verify_vmid_range, &newest)
            .map_err(|e| e.message)?;
        verify.push(timed(&ops, Box::new(VerifyOp::new(env.clone(), plan))).await?);
    }
    timed(
        &ops,
        Box::new(DeploymentOp::new(
            env.clone(),
            "nb",
            rec.vmid,
            Action::Destroy { purge: true },
        )),
    )
    .await?;
    let size = newest.size.unwrap_or(0);
    let f = stats(&mut floor);
    let b = stats(&mut through);
    let r = stats(&mut restore);
    let v = stats(&mut verify);
    println!(
        "netbox-agent container, archive {:.1} MiB (zstd)",
        size as f64 / 1_048_576.0
    );
    println!();
    println!("| figure | rounds | min ms | median ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| floor: bare vzdump (snapshot, zstd, prune) | {ROUNDS} | {:.0} | {:.0} | {:.0} |",
        f.0, f.1, f.2
    );
    println!(
        "| backup through 1ld (check, spec, hook, vzdump, record) | {ROUNDS} | {:.0} | {:.0} | {:.0} |",
        b.0, b.1, b.2
    );
    println!(
        "| restore as new to healthy (restore, start, lease, gate, record) | {} | {:.0} | {:.0} | {:.0} |",
        ROUNDS.min(3),
        r.0,
        r.1,
        r.2
    );
    println!(
        "| verify (throwaway restore, link down, self-check, destroy) | {} | {:.0} | {:.0} | {:.0} |",
        ROUNDS.min(3),
        v.0,
        v.1,
        v.2
    );
    println!();
    println!(
        "backup through 1ld / bare vzdump (medians): {:.2}× (target ≤ 1.1×)",
        b.1 / f.1
    );
    Ok(())
}

fn main() {
    support::main_with("backup", run);
}
