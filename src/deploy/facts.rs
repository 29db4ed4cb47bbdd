//! What a deploy must know about the host before it plans: storages,
//! templates, bridges, the cluster's guest ids, and the recorded
//! deployments and vmid reservations.
//!
//! Invariant: gathering only reads (`pvesm status`, `pveam list`,
//! `/cluster/resources`, `/sys/class/net`, the store); validation against
//! these facts is pure ([`super::spec`]).

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Error;
use crate::pve::parse::pvesm::{StorageState, StorageStatus};
use crate::pve::Pve;
use crate::store::Store;

/// A snapshot of the host, taken once per plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFacts {
    /// The node's name.
    pub node: String,
    /// Storages with content `rootdir`.
    pub rootdir_storages: Vec<StorageStatus>,
    /// Storages with content `vztmpl`.
    pub vztmpl_storages: Vec<StorageStatus>,
    /// Template volume ids on the active `vztmpl` storages.
    pub templates: Vec<String>,
    /// Template file names the appliance index offers (may be empty).
    pub available: Vec<String>,
    /// Bridges.
    pub bridges: Vec<String>,
    /// Every guest id in the cluster (VMs and containers, all nodes).
    pub guests: BTreeSet<u32>,
    /// vmids of recorded deployments and of running deploys' reservations.
    pub held: BTreeSet<u32>,
    /// Names of recorded deployments.
    pub names: BTreeSet<String>,
}

/// Whether a storage is usable now.
pub fn active(s: &StorageStatus) -> bool {
    s.state == StorageState::Active
}

impl HostFacts {
    /// Reads everything; the template index is best effort.
    pub async fn gather(pve: &Pve, store: &Store, sys_class_net: &Path) -> Result<Self, Error> {
        let rootdir_storages = pve.pvesm_status(None, Some("rootdir")).await?;
        let vztmpl_storages = pve.pvesm_status(None, Some("vztmpl")).await?;
        let mut templates = Vec::new();
        for s in vztmpl_storages.iter().filter(|s| active(s)) {
            if let Ok(list) = pve.pveam_list(&s.name).await {
                templates.extend(list.into_iter().map(|t| t.volid));
            }
        }
        let available = pve
            .pveam_available(Some("system"))
            .await
            .map(|v| v.into_iter().map(|t| t.name).collect())
            .unwrap_or_default();
        let guests = pve
            .cluster_vmids()
            .await?
            .into_iter()
            .map(|(v, _)| v)
            .collect();
        let deployments = store.list_deployments()?;
        let mut held: BTreeSet<u32> = deployments.iter().map(|d| d.vmid).collect();
        held.extend(store.vmid_reservations()?.into_iter().map(|(v, _)| v));
        Ok(Self {
            node: pve.node().to_string(),
            rootdir_storages,
            vztmpl_storages,
            templates,
            available,
            bridges: super::net::bridges(sys_class_net),
            guests,
            held,
            names: deployments.into_iter().map(|d| d.name).collect(),
        })
    }
}
