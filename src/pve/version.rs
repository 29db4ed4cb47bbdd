//! `pveversion`: which PVE major the node runs.

use super::parse::pveversion::{parse_pveversion, PveVersion};
use super::{parsed, PveError, Runner};

/// Runs plain `pveversion` and parses it.
pub async fn read_version(runner: &Runner) -> Result<PveVersion, PveError> {
    let argv = vec!["pveversion".to_string()];
    let out = runner.run(&argv, Default::default()).await?;
    super::error::classify(&argv, out.code, &out.stdout_text(), &out.stderr_text())?;
    parsed(&argv, parse_pveversion(&out.stdout_text()))
}
