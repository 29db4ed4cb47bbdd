//! Every filesystem path the daemon uses, in one place.
//!
//! Defaults follow the Debian package layout; each is overridable (the
//! config's `state_dir` and `[api] socket`, or [`Paths::under`] in tests)
//! so tests run entirely inside a temp dir.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/1ld/1ld.toml";
/// Default state directory (mode 0700).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/1ld";
/// Default API socket.
pub const DEFAULT_SOCKET: &str = "/run/1ld/1ld.sock";
/// Default directory of user app manifests.
pub const DEFAULT_APPS_DIR: &str = "/etc/1ld/apps.d";
/// Default directory of the agent binaries pushed into containers.
pub const DEFAULT_AGENTS_DIR: &str = "/usr/lib/1ld/agents";
/// Default `[apps] packages_dir`: `.deb` files for the optional nginx proxy.
pub const DEFAULT_PACKAGES_DIR: &str = "/var/cache/1ld/debs";

/// The resolved paths of one daemon instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// State directory (0700).
    pub state_dir: PathBuf,
    /// The SQLite database.
    pub db: PathBuf,
    /// Root-only secret files (0700 dir, 0600 files).
    pub secrets_dir: PathBuf,
    /// The API socket.
    pub socket: PathBuf,
    /// Rendered files waiting to be pushed into a container (0700; one
    /// subdirectory per operation, removed when it ends).
    pub staging_dir: PathBuf,
}

impl Paths {
    /// The paths `config` asks for.
    pub fn from_config(config: &Config) -> Self {
        Self::with(&config.state_dir, &config.api.socket)
    }

    /// State under `state_dir`, the socket at `socket`.
    pub fn with(state_dir: &Path, socket: &Path) -> Self {
        Self {
            state_dir: state_dir.to_path_buf(),
            db: state_dir.join("state.db"),
            secrets_dir: state_dir.join("secrets"),
            socket: socket.to_path_buf(),
            staging_dir: state_dir.join("staging"),
        }
    }

    /// Everything inside `root` (tests): `root/state`, `root/1ld.sock`.
    pub fn under(root: &Path) -> Self {
        Self::with(&root.join("state"), &root.join("1ld.sock"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_package_layout() {
        let p = Paths::from_config(&Config::default());
        assert_eq!(p.db, Path::new("/var/lib/1ld/state.db"));
        assert_eq!(p.secrets_dir, Path::new("/var/lib/1ld/secrets"));
        assert_eq!(p.socket, Path::new("/run/1ld/1ld.sock"));
    }

    #[test]
    fn under_keeps_everything_in_root() {
        let p = Paths::under(Path::new("/tmp/x"));
        assert!(p.db.starts_with("/tmp/x") && p.socket.starts_with("/tmp/x"));
    }
}
