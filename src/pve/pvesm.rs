//! `pvesm`: storage listing and status.

use super::parse::pvesm::{parse_list, parse_status, StorageStatus, Volume};
use super::{parsed, Args, Pve, PveError};

impl Pve {
    /// `pvesm list <storage> [--content C] [--vmid N]`. With a vmid, templates
    /// and ISOs are not listed at all (PVE behaviour).
    pub async fn pvesm_list(
        &self,
        storage: &str,
        content: Option<&str>,
        vmid: Option<u32>,
    ) -> Result<Vec<Volume>, PveError> {
        let argv = Args::new(&["pvesm", "list", storage])
            .opt_some("content", content)
            .opt_some("vmid", vmid)
            .build();
        let (argv, text) = self.call_text(argv).await?;
        parsed(&argv, parse_list(&text))
    }

    /// `pvesm status [--storage S] [--content C]`.
    pub async fn pvesm_status(
        &self,
        storage: Option<&str>,
        content: Option<&str>,
    ) -> Result<Vec<StorageStatus>, PveError> {
        let argv = Args::new(&["pvesm", "status"])
            .opt_some("storage", storage)
            .opt_some("content", content)
            .build();
        let (argv, text) = self.call_text(argv).await?;
        parsed(&argv, parse_status(&text))
    }
}
