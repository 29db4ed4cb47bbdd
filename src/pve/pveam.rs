//! `pveam`: appliance (template) index and downloads.
//!
//! `pveam update` and `pveam download` can exit 0 although they failed:
//! [`classify`](super::error::classify) treats any real stderr text as failure,
//! and [`Pve::pveam_download`] also checks that the template is on the storage.

use super::parse::pveam::{parse_available, parse_list, AvailableTemplate, StoredTemplate};
use super::{parsed, Args, Pve, PveError, Span};

impl Pve {
    /// `pveam update`: refreshes the appliance index.
    pub async fn pveam_update(&self) -> Result<(), PveError> {
        self.call(Args::new(&["pveam", "update"]).build(), Span::Long, None)
            .await?;
        Ok(())
    }

    /// `pveam available [--section S]`.
    pub async fn pveam_available(
        &self,
        section: Option<&str>,
    ) -> Result<Vec<AvailableTemplate>, PveError> {
        let argv = Args::new(&["pveam", "available"])
            .opt_some("section", section)
            .build();
        let (argv, text) = self.call_text(argv).await?;
        parsed(&argv, parse_available(&text))
    }

    /// `pveam list <storage>`.
    pub async fn pveam_list(&self, storage: &str) -> Result<Vec<StoredTemplate>, PveError> {
        let (argv, text) = self
            .call_text(Args::new(&["pveam", "list", storage]).build())
            .await?;
        parsed(&argv, parse_list(&text))
    }

    /// `pveam download <storage> <template>`; returns the template's volume id
    /// (`<storage>:vztmpl/<template>`) once it is verifiably on the storage.
    pub async fn pveam_download(&self, storage: &str, template: &str) -> Result<String, PveError> {
        if template.is_empty() || template.contains('/') {
            return Err(PveError::Invalid {
                what: "template",
                message: format!("'{template}' is not a file name from `pveam available`"),
            });
        }
        let argv = Args::new(&["pveam", "download", storage, template]).build();
        let out = self.call(argv, Span::Long, None).await?;
        let volid = format!("{storage}:vztmpl/{template}");
        let text = out.stdout_text();
        let done = text.contains("' finished") || text.contains("no need to download");
        // The exit code is no proof: confirm the file is there.
        if done
            || self
                .pveam_list(storage)
                .await?
                .iter()
                .any(|t| t.volid == volid)
        {
            Ok(volid)
        } else {
            Err(PveError::Failed {
                argv: out.argv,
                code: out.code,
                stderr: format!(
                    "download reported no error but '{volid}' is not on storage '{storage}'"
                ),
                output_tail: String::new(),
            })
        }
    }

    /// `pveam remove <volid>`.
    pub async fn pveam_remove(&self, volid: &str) -> Result<(), PveError> {
        self.call(
            Args::new(&["pveam", "remove", volid]).build(),
            Span::Short,
            None,
        )
        .await?;
        Ok(())
    }
}
