//! The command line every agent binary shares.
//!
//! `--self-check` prints the health document and exits with its status
//! (0 healthy, 1 degraded, 2 unhealthy) without serving, so it works through
//! `pct exec` when the container's network is down. `--once` runs one full
//! cycle and exits 0 (ok), 1 (partial) or 2 (failed). `--dry-run` makes the
//! cycles compute without writing upstream.

use std::path::PathBuf;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

/// Parsed command line.
#[derive(Debug, Clone, Parser, PartialEq, Eq)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/AGENT/config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Run the health checks once (including the upstream probes), print the
    /// health JSON and exit 0 (healthy), 1 (degraded) or 2 (unhealthy).
    #[arg(long, conflicts_with = "once")]
    pub self_check: bool,

    /// Run one full work cycle, print its report as JSON and exit 0 (ok),
    /// 1 (partial) or 2 (failed).
    #[arg(long)]
    pub once: bool,

    /// Compute everything but write nothing upstream.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the version and exit.
    #[arg(long, short = 'V', action = ArgAction::Version)]
    version: Option<bool>,
}

impl Cli {
    /// Parses `std::env::args` for agent `name` at `version` (what `--help`
    /// and `--version` print). Exits on `--help`, `--version` or bad usage.
    pub fn parse_for(name: &'static str, version: &'static str, about: &'static str) -> Self {
        let matches = Self::command()
            .name(name)
            .bin_name(name)
            .version(version)
            .about(about)
            .disable_version_flag(true)
            .get_matches();
        match Self::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }

    /// Parses the given arguments (first is the program name); for tests.
    pub fn try_parse_for(
        name: &'static str,
        version: &'static str,
        args: &[&str],
    ) -> Result<Self, clap::Error> {
        let matches = Self::command()
            .name(name)
            .version(version)
            .disable_version_flag(true)
            .try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let cli = Cli::try_parse_for(
            "a",
            "1",
            &["a", "--config", "/x.toml", "--once", "--dry-run"],
        )
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("/x.toml")));
        assert!(cli.once && cli.dry_run && !cli.self_check);
        assert!(Cli::try_parse_for("a", "1", &["a", "--once", "--self-check"]).is_err());
        let v = Cli::try_parse_for("a", "1.2.3", &["a", "--version"]).unwrap_err();
        assert_eq!(v.kind(), clap::error::ErrorKind::DisplayVersion);
        assert!(v.to_string().contains("1.2.3"));
    }
}
