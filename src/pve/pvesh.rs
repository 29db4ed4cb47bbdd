//! `pvesh get ... --output-format json` for the few API reads the CLIs lack.

use super::parse::pct_status::CtStatus;
use super::parse::pvesh::{
    parse_cluster_resources, parse_cluster_vmids, parse_interfaces, parse_nextid,
    parse_status_current, ClusterCt, CtInterface,
};
use super::{parsed, Args, Pve, PveError};

impl Pve {
    async fn pvesh_get(
        &self,
        path: &str,
        extra: &[&str],
    ) -> Result<(Vec<String>, String), PveError> {
        let mut a = Args::new(&["pvesh", "get", path]);
        for e in extra {
            a.arg(e);
        }
        a.opt("output-format", "json");
        self.call_text(a.build()).await
    }

    /// `/cluster/nextid`: the lowest free id cluster-wide. Nothing is reserved:
    /// `pct create` can still race and fail with `AlreadyExists`.
    pub async fn next_vmid(&self) -> Result<u32, PveError> {
        let (argv, text) = self.pvesh_get("/cluster/nextid", &[]).await?;
        parsed(&argv, parse_nextid(&text))
    }

    /// `/cluster/resources --type vm`, LXC guests only, all nodes. Lags ~10 s.
    pub async fn cluster_cts(&self) -> Result<Vec<ClusterCt>, PveError> {
        let (argv, text) = self
            .pvesh_get("/cluster/resources", &["--type", "vm"])
            .await?;
        parsed(&argv, parse_cluster_resources(&text))
    }

    /// `/cluster/resources --type vm`: the ids of every guest (VMs and
    /// containers) on every node, with the node.
    pub async fn cluster_vmids(&self) -> Result<Vec<(u32, String)>, PveError> {
        let (argv, text) = self
            .pvesh_get("/cluster/resources", &["--type", "vm"])
            .await?;
        parsed(&argv, parse_cluster_vmids(&text))
    }

    /// `/nodes/<node>/lxc/<vmid>/interfaces` (empty for a stopped CT).
    pub async fn ct_interfaces(&self, vmid: u32) -> Result<Vec<CtInterface>, PveError> {
        let path = format!("/nodes/{}/lxc/{vmid}/interfaces", self.node());
        let (argv, text) = self.pvesh_get(&path, &[]).await?;
        parsed(&argv, parse_interfaces(&text))
    }

    /// `/nodes/<node>/lxc/<vmid>/status/current`.
    pub async fn ct_status_current(&self, vmid: u32) -> Result<CtStatus, PveError> {
        let path = format!("/nodes/{}/lxc/{vmid}/status/current", self.node());
        let (argv, text) = self.pvesh_get(&path, &[]).await?;
        parsed(&argv, parse_status_current(&text))
    }
}
