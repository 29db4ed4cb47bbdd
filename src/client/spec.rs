//! Spec files (`deploy -f`, `apply -f`): deployments declared in TOML,
//! turned into [`crate::api::DeployRequest`] / [`crate::api::ApplyRequest`].
//!
//! ```toml
//! # one deployment at the top level ...
//! name = "netbox"
//! app = "netbox-agent"
//! [settings]
//! netbox_url = "https://netbox.example"
//! [secrets]
//! netbox_token = "@/root/netbox.token"   # read from this file
//! [overrides]
//! memory = 512
//!
//! # ... or several as [[deployment]] tables with the same keys.
//! ```
//!
//! Invariants: unknown keys are errors naming the key; a secret is a file
//! (`"@PATH"`, relative to the spec's directory) or a literal in the spec
//! file (never argv); one trailing newline of a secret file is dropped.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::cli::{SecretArg, SecretSource};
use super::error::ClientError;
use crate::api::Overrides;

/// One declared deployment.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Deployment name (default: the app's name).
    pub name: Option<String>,
    /// The app.
    pub app: Option<String>,
    /// Non-secret settings.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Secret settings: `"@FILE"` or a literal.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Container overrides.
    #[serde(default)]
    pub overrides: Overrides,
    /// `[backup]`: the deployment's backup policy.
    #[serde(default)]
    pub backup: Option<crate::api::BackupPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    deployment: Vec<Spec>,
}

/// The deployments declared in `path`, with `@FILE` secrets read.
pub fn load(path: &Path) -> Result<Vec<Spec>, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Input {
        what: format!("spec file {}", path.display()),
        source,
    })?;
    let bad = |e: toml::de::Error| {
        ClientError::Usage(format!(
            "spec file {}: {}",
            path.display(),
            e.to_string().trim()
        ))
    };
    let table: toml::Table = text.parse().map_err(bad)?;
    let mut specs = if table.contains_key("deployment") {
        Many::deserialize(toml::Value::Table(table))
            .map_err(bad)?
            .deployment
    } else {
        vec![Spec::deserialize(toml::Value::Table(table)).map_err(bad)?]
    };
    let base = path.parent().unwrap_or(Path::new("."));
    for s in &mut specs {
        for (key, value) in s.secrets.iter_mut() {
            if let Some(file) = value.strip_prefix('@') {
                let file = base.join(file);
                *value = read_secret_file(key, &file)?;
            }
        }
    }
    Ok(specs)
}

/// Settings as JSON values.
pub fn settings_json(s: &Spec) -> Result<BTreeMap<String, serde_json::Value>, ClientError> {
    s.settings
        .iter()
        .map(|(k, v)| {
            serde_json::to_value(v)
                .map(|j| (k.clone(), j))
                .map_err(|e| ClientError::Usage(format!("setting '{k}': {e}")))
        })
        .collect()
}

fn strip_newline(mut s: String) -> String {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    s
}

fn read_secret_file(key: &str, file: &PathBuf) -> Result<String, ClientError> {
    std::fs::read_to_string(file)
        .map(strip_newline)
        .map_err(|source| ClientError::Input {
            what: format!("secret '{key}' from {}", file.display()),
            source,
        })
}

/// Reads the `--secret` arguments' values (stdin at most once).
pub fn read_secrets(args: &[SecretArg]) -> Result<BTreeMap<String, String>, ClientError> {
    let stdin_users: Vec<&str> = args
        .iter()
        .filter(|a| a.source == SecretSource::Stdin)
        .map(|a| a.key.as_str())
        .collect();
    if stdin_users.len() > 1 {
        return Err(ClientError::Usage(format!(
            "only one secret can come from stdin; got {}",
            stdin_users.join(", ")
        )));
    }
    let mut out = BTreeMap::new();
    for a in args {
        let value = match &a.source {
            SecretSource::File(f) => read_secret_file(&a.key, f)?,
            SecretSource::Stdin => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|source| ClientError::Input {
                        what: format!("secret '{}' from stdin", a.key),
                        source,
                    })?;
                strip_newline(s)
            }
        };
        if value.is_empty() {
            return Err(ClientError::Usage(format!("secret '{}' is empty", a.key)));
        }
        out.insert(a.key.clone(), value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_or_many_deployments_with_secret_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "s3cret\n").unwrap();
        let one = dir.path().join("one.toml");
        std::fs::write(
            &one,
            "name = \"nb\"\napp = \"netbox-agent\"\n[settings]\nurl = \"https://x\"\nn = 3\n\
             [secrets]\ntoken = \"@tok\"\n[overrides]\nmemory = 512\n",
        )
        .unwrap();
        let specs = load(&one).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].secrets["token"], "s3cret");
        assert_eq!(specs[0].overrides.memory, Some(512));
        assert_eq!(settings_json(&specs[0]).unwrap()["n"], 3);
        let many = dir.path().join("many.toml");
        std::fs::write(
            &many,
            "[[deployment]]\napp = \"a\"\n[[deployment]]\napp = \"b\"\nname = \"bb\"\n",
        )
        .unwrap();
        assert_eq!(load(&many).unwrap().len(), 2);
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "app = \"a\"\n[overrides]\ncpu = 2\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("cpu"), "{e}");
    }
}
