//! The secrets file and the [`Secret`] type.
//!
//! Secrets (API tokens, keys) live in their own TOML file, separate from the
//! config so the config can be shown and diffed freely. The file is refused
//! unless its mode is exactly 0600 or 0400 and it is owned by the user the
//! agent runs as: a token readable by others is a leak waiting to happen, and
//! an agent that silently accepted one would teach operators it is fine.
//!
//! Invariant: no error from this module quotes a value from the file; parse
//! errors name the key and line only.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A secret string. Its `Debug` is redacted, it has no `Display` and no
/// `Serialize`; [`Secret::expose`] is the one way to read it.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (tests, or values that come from elsewhere).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for putting it on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty (or only whitespace).
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A secrets file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The file does not exist.
    #[error(
        "secrets file {} does not exist; create it (TOML, owned by the agent's user, mode 0600)",
        path.display()
    )]
    Missing {
        /// The secrets file.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("cannot read secrets file {}: {source}", path.display())]
    Read {
        /// The secrets file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Group or others have some access, or the mode is otherwise unexpected.
    #[error(
        "secrets file {} has mode {mode:04o}; it must be 0600 or 0400 so that only its owner can read it (chmod 600 {})",
        path.display(), path.display()
    )]
    Mode {
        /// The secrets file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by someone other than the running user.
    #[error(
        "secrets file {} is owned by uid {owner} but the agent runs as uid {running}{}; chown it to the agent's user",
        path.display(),
        user_name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    )]
    Owner {
        /// The secrets file.
        path: PathBuf,
        /// Owner uid of the file.
        owner: u32,
        /// Effective uid of this process.
        running: u32,
        /// Name of the running user, when it has one.
        user_name: Option<String>,
    },
    /// Not a regular file.
    #[error("secrets file {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Unknown/missing key or wrong type. The value is never quoted.
    #[error("{}{}: {message}", path.display(), position(*line, key))]
    Parse {
        /// The secrets file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// Dotted key path.
        key: String,
        /// What is wrong (no values quoted).
        message: String,
    },
    /// A required secret is empty.
    #[error("{}: key `{key}` is empty", path.display())]
    Empty {
        /// The secrets file.
        path: PathBuf,
        /// The empty key.
        key: String,
    },
}

fn position(line: Option<usize>, key: &str) -> String {
    let mut s = String::new();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
    }
    if !key.is_empty() {
        s.push_str(&format!(": key `{key}`"));
    }
    s
}

/// Keeps a parse message only when it cannot contain a secret value: serde's
/// unknown/missing/duplicate-key messages quote key names, type errors quote
/// the value.
fn redact_message(message: &str) -> String {
    let safe = [
        "unknown field",
        "missing field",
        "duplicate key",
        "duplicate field",
    ];
    if safe.iter().any(|p| message.starts_with(p)) {
        message.to_string()
    } else {
        "invalid value or TOML syntax (the text is not shown: secrets are never logged)".into()
    }
}

/// Checks the file's owner and mode, then parses it as `T`.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, SecretsError> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SecretsError::Missing {
                path: path.to_path_buf(),
            })
        }
        Err(source) => {
            return Err(SecretsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    // Checked on the open file, so a swap between check and read is harmless.
    let meta = file.metadata().map_err(|source| SecretsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(SecretsError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode != 0o600 && mode != 0o400 {
        return Err(SecretsError::Mode {
            path: path.to_path_buf(),
            mode,
        });
    }
    let running = nix::unistd::geteuid();
    if meta.uid() != running.as_raw() {
        return Err(SecretsError::Owner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            running: running.as_raw(),
            user_name: nix::unistd::User::from_uid(running)
                .ok()
                .flatten()
                .map(|u| u.name),
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|source| SecretsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    crate::config::parse_toml(&text).map_err(|f| SecretsError::Parse {
        path: path.to_path_buf(),
        line: f.line,
        key: f.key,
        message: redact_message(&f.message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct S {
        token: Secret,
        #[allow(dead_code)]
        port: Option<u16>,
    }

    fn write(text: &str, mode: u32) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        (dir, path)
    }

    #[test]
    fn accepts_0600_and_0400() {
        for mode in [0o600, 0o400] {
            let (_d, path) = write("token = \"s3cr3t\"\n", mode);
            let s: S = load(&path).unwrap();
            assert_eq!(s.token.expose(), "s3cr3t");
            assert_eq!(format!("{s:?}").matches("s3cr3t").count(), 0);
        }
    }

    #[test]
    fn refuses_group_or_world_access() {
        for mode in [0o640, 0o644, 0o604, 0o660, 0o700] {
            let (_d, path) = write("token = \"s3cr3t\"\n", mode);
            let err = load::<S>(&path).unwrap_err();
            assert!(matches!(err, SecretsError::Mode { .. }), "{mode:o}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(msg.contains("0600 or 0400"), "{msg}");
        }
    }

    #[test]
    fn refuses_other_owner() {
        // Only meaningful as root, where chown to another uid is possible.
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (_d, path) = write("token = \"s3cr3t\"\n", 0o600);
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(4242)), None).unwrap();
        let err = load::<S>(&path).unwrap_err();
        assert!(
            matches!(err, SecretsError::Owner { owner: 4242, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("uid 4242"), "{err}");
    }

    #[test]
    fn missing_file_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let err = load::<S>(&dir.path().join("nope.toml")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn parse_errors_never_quote_values() {
        // A wrong type makes serde quote the value; it must not come through.
        let (_d, path) = write("token = \"s3cr3t\"\nport = \"hunter2-value\"\n", 0o600);
        let err = load::<S>(&path).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("key `port`"), "{err}");
        assert!(err.contains(":2"), "{err}");

        let (_d, path) = write("token = \"s3cr3t\"\ntokn = \"x\"\n", 0o600);
        let err = load::<S>(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `tokn`"), "{err}");

        let (_d, path) = write("token = \"s3cr3t\n", 0o600);
        let err = load::<S>(&path).unwrap_err().to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
