//! Tokens and keys the fakes accept: read from files (never argv, which `ps`
//! shows), kept out of `Debug` output and logs.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::Error;

/// A credential value. `Debug` is redacted; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value (surrounding whitespace is dropped).
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into().trim().to_string())
    }

    /// The value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret file: the whole file is the value (surrounding
    /// whitespace dropped). The file must not be readable by group or others
    /// (mode 0600 or 0400) and must not be empty.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::SecretFile {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "mode {mode:04o} lets group or others read it; use 0600 or 0400"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let secret = Self::new(text);
        if secret.0.is_empty() {
            return Err(bad("the file is empty".into()));
        }
        if secret.0.chars().any(char::is_whitespace) {
            return Err(bad(
                "the value contains whitespace; the file must hold only the token".into(),
            ));
        }
        Ok(secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} chars>)", self.0.chars().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Secret::new(" nbt_abc.def \n");
        assert_eq!(s.expose(), "nbt_abc.def");
        assert_eq!(format!("{s:?}"), "Secret(<11 chars>)");
    }

    #[test]
    fn file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "tok\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secret::from_file(&p).unwrap_err().to_string();
        assert!(e.contains("mode 0644"), "{e}");
        assert!(!e.contains("tok\n"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "tok");
        std::fs::write(&p, "  \n").unwrap();
        assert!(Secret::from_file(&p)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
