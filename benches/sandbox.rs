//! `make bench`: one container's life on the sandbox PVE node, timed through
//! the typed `pve` layer (the same calls the daemon makes).
//!
//! Prints, for `ROUNDS` rounds, min/median/max of:
//! - `pct create` (template extraction into a shifted rootfs),
//! - `pct start` until the CT holds a DHCP lease from the bridge's dnsmasq,
//! - the sum of both (the floor a deploy can reach),
//! - `vzdump` (snapshot mode, zstd) and `pct restore`.
//!
//! Needs root and the template (`make bench` provides both); otherwise it
//! says why and exits non-zero, so a bench run never reports empty figures.

mod support;

use std::time::{Duration, Instant};

use oneld::pve::pct::{DestroyOptions, RestoreSpec};
use oneld::pve::vzdump::{BackupMode, Compression, VzdumpSpec};
use support::sandbox::{spec, wait_for};
use support::{sandbox_pve, stats};

const ROUNDS: usize = 3;

async fn run() -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("the sandbox bench needs root (run `make bench` as root)".into());
    }
    let bridge = "sbxb0";
    let (node, pve) = sandbox_pve(bridge, "10.213.21.0/24").await?;

    let (mut create, mut lease, mut floor, mut dump, mut restore) =
        (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let vmid = 200 + round as u32;
        let t0 = Instant::now();
        pve.pct_create(&spec(vmid, bridge))
            .await
            .map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        pve.pct_start(vmid).await.map_err(|e| e.to_string())?;
        wait_for("a DHCP lease", Duration::from_secs(60), || async {
            let ifs = pve.ct_interfaces(vmid).await.ok()?;
            ifs.iter().find(|i| i.name == "eth0")?.primary_address()
        })
        .await;
        let t2 = Instant::now();
        create.push(t1 - t0);
        lease.push(t2 - t1);
        floor.push(t2 - t0);

        let mut d = VzdumpSpec::new(vmid, "local");
        d.mode = Some(BackupMode::Snapshot);
        d.compress = Some(Compression::Zstd);
        let t3 = Instant::now();
        let backup = pve.vzdump(&d).await.map_err(|e| e.to_string())?;
        dump.push(t3.elapsed());

        let force = DestroyOptions {
            force: true,
            ..DestroyOptions::default()
        };
        pve.pct_destroy(vmid, force)
            .await
            .map_err(|e| e.to_string())?;
        let mut r = RestoreSpec::new(vmid, backup.archive.display().to_string());
        r.storage = Some("local-lvm".into());
        let t4 = Instant::now();
        pve.pct_restore(&r).await.map_err(|e| e.to_string())?;
        restore.push(t4.elapsed());
        pve.pct_destroy(vmid, DestroyOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }

    println!("sandbox PVE node, one container (Debian 12 template, unprivileged), {ROUNDS} rounds");
    println!();
    println!("| step | min ms | median ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, samples) in [
        ("pct create", &mut create),
        ("pct start → DHCP lease", &mut lease),
        ("create + start + lease (deploy floor)", &mut floor),
        ("vzdump (snapshot, zstd)", &mut dump),
        ("pct restore", &mut restore),
    ] {
        let (min, med, max) = stats(samples);
        println!("| {name} | {min:.0} | {med:.0} | {max:.0} |");
    }
    drop(node);
    Ok(())
}

fn main() {
    support::main_with("sandbox", run);
}
