//! The `1ldd` command line, in the library so the man page `1ldd.8` is
//! generated from the same definition at build time (`build.rs` includes
//! this file).
//!
//! Invariant: depends on `clap` and `std` only (the build script compiles it
//! on its own); the default config path is [`DEFAULT_CONFIG`], kept equal to
//! `crate::paths::DEFAULT_CONFIG` by a test.

use std::path::PathBuf;

use clap::Parser;

/// The default configuration file (= `crate::paths::DEFAULT_CONFIG`).
pub const DEFAULT_CONFIG: &str = "/etc/1ld/1ld.toml";

/// The 1ld daemon: deploys, supervises and backs up homelab apps in LXC
/// containers on this Proxmox VE node, and serves the 1ld API on a Unix socket.
#[derive(Debug, Parser)]
#[command(
    name = "1ldd",
    version,
    after_long_help = "1ldd is started by systemd (1ld.service, socket-activated by 1ld.socket). \
                       It serves the API on /run/1ld/1ld.sock; talk to it with 1ldctl(1).\n\n\
                       Files: /etc/1ld/1ld.toml (configuration), /var/lib/1ld (state), \
                       /run/1ld/1ld.sock (API socket).\n\n\
                       Signals: SIGTERM stops gracefully; SIGHUP reloads the configuration."
)]
pub struct Cli {
    /// Configuration file (a missing file means all defaults).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Validate the configuration file, print the result and exit.
    #[arg(long)]
    pub check_config: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_valid_and_the_default_is_the_paths_one() {
        Cli::command().debug_assert();
        assert_eq!(DEFAULT_CONFIG, crate::paths::DEFAULT_CONFIG);
    }
}
