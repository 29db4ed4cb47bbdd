//! Apps: the catalog of manifests, their settings schema, and rendering.
//!
//! What it owns:
//! - [`manifest`]: the TOML format and its validation;
//! - [`settings`]: typed setting values and their validation;
//! - [`render`]: `{{ key }}` templates and the config fingerprint;
//! - [`Catalog`]: the built-in manifests (compiled in from
//!   `src/apps/builtin/*.toml`) plus the user's (`[apps] dir`, default
//!   `/etc/1ld/apps.d/*.toml`).
//!
//! Invariants: a bad user file is reported (file, line, key) and skipped;
//! the other apps still load. A user manifest with a built-in's name
//! replaces the built-in. The catalog is read fresh for each request that
//! needs it (a handful of small files), so edits need no restart.

pub mod manifest;
pub mod render;
pub mod settings;

use std::collections::BTreeMap;
use std::path::Path;

use crate::api::{AppContainer, AppInfo, AppLoadError};
pub use manifest::Manifest;

/// The built-in manifests: (file name, text).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "netbox-agent.toml",
        include_str!("builtin/netbox-agent.toml"),
    ),
    (
        "wikijs-integration.toml",
        include_str!("builtin/wikijs-integration.toml"),
    ),
];

/// Largest number of user manifest files read.
pub const MAX_USER_FILES: usize = 256;

/// One app of the catalog and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// The manifest.
    pub manifest: Manifest,
    /// `builtin` or the file's path.
    pub source: String,
}

/// The apps known right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    apps: BTreeMap<String, App>,
    errors: Vec<AppLoadError>,
}

fn load_error(file: &str, e: manifest::ManifestError) -> AppLoadError {
    AppLoadError {
        file: file.to_string(),
        line: e.line,
        key: e.key,
        message: e.message,
    }
}

impl Catalog {
    /// Built-ins only.
    pub fn builtin() -> Catalog {
        let mut c = Catalog::default();
        for (file, text) in BUILTIN {
            match manifest::parse(text) {
                Ok(m) => {
                    c.apps.insert(
                        m.name.clone(),
                        App {
                            manifest: m,
                            source: "builtin".to_string(),
                        },
                    );
                }
                // A test keeps this from happening; report rather than panic.
                Err(errs) => c.errors.extend(
                    errs.into_iter()
                        .map(|e| load_error(&format!("builtin:{file}"), e)),
                ),
            }
        }
        c
    }

    /// Built-ins plus every `*.toml` in `dir` (a missing dir is fine).
    pub fn load(dir: &Path) -> Catalog {
        let mut c = Self::builtin();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return c,
            Err(e) => {
                c.errors.push(AppLoadError {
                    file: dir.display().to_string(),
                    line: None,
                    key: None,
                    message: format!("cannot read the apps directory: {e}"),
                });
                return c;
            }
        };
        let mut files: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for path in files.into_iter().take(MAX_USER_FILES) {
            c.load_file(&path);
        }
        c
    }

    fn load_file(&mut self, path: &Path) {
        let file = path.display().to_string();
        let text = match std::fs::metadata(path) {
            Ok(m) if m.len() > manifest::MAX_MANIFEST_BYTES as u64 => {
                self.errors.push(AppLoadError {
                    file,
                    line: None,
                    key: None,
                    message: format!(
                        "{} bytes; a manifest may have at most {}",
                        m.len(),
                        manifest::MAX_MANIFEST_BYTES
                    ),
                });
                return;
            }
            _ => match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) => {
                    self.errors.push(AppLoadError {
                        file,
                        line: None,
                        key: None,
                        message: format!("cannot read: {e}"),
                    });
                    return;
                }
            },
        };
        match manifest::parse(&text) {
            Ok(m) => {
                if let Some(prev) = self.apps.get(&m.name) {
                    if prev.source != "builtin" {
                        self.errors.push(AppLoadError {
                            file,
                            line: manifest::line_of(&text, "name"),
                            key: Some("name".into()),
                            message: format!(
                                "app '{}' is already defined in {}; this file is ignored",
                                m.name, prev.source
                            ),
                        });
                        return;
                    }
                }
                self.apps.insert(
                    m.name.clone(),
                    App {
                        manifest: m,
                        source: file,
                    },
                );
            }
            Err(errs) => self
                .errors
                .extend(errs.into_iter().map(|e| load_error(&file, e))),
        }
    }

    /// The app called `name`.
    pub fn get(&self, name: &str) -> Option<&App> {
        self.apps.get(name)
    }

    /// App names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    /// Every app, sorted by name.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// Files that failed to load.
    pub fn errors(&self) -> &[AppLoadError] {
        &self.errors
    }
}

impl App {
    /// The API view.
    pub fn info(&self) -> AppInfo {
        let m = &self.manifest;
        let c = &m.container;
        AppInfo {
            name: m.name.clone(),
            description: m.description.clone(),
            version: m.version.clone(),
            source: self.source.clone(),
            container: AppContainer {
                cores: c.cores,
                memory: c.memory,
                swap: c.swap,
                disk: c.disk,
                vmid_min: c.vmid_range[0],
                vmid_max: c.vmid_range[1],
                template: c.template.clone(),
                unprivileged: c.unprivileged,
                features: c.features.clone(),
                tags: m.tags(),
                bridge: c.bridge.clone(),
                ip: c.ip.clone(),
                ip6: c.ip6.clone(),
                onboot: c.onboot,
            },
            settings: m.settings.iter().map(|(k, d)| d.info(k)).collect(),
            user: m.service.user.clone(),
            ports: m.service.ports.clone(),
            health: m.probe_text(),
            health_accept: m.health.accept.clone(),
            status_path: m
                .health
                .status_path
                .as_ref()
                .map(|p| format!(":{}{p}", m.health.port.unwrap_or_default())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_load_with_the_original_defaults() {
        let c = Catalog::builtin();
        assert!(c.errors().is_empty(), "{:?}", c.errors());
        let nb = c.get("netbox-agent").unwrap().info();
        assert_eq!(
            (nb.container.cores, nb.container.memory, nb.container.disk),
            (2, 2048, 8)
        );
        assert_eq!((nb.container.vmid_min, nb.container.vmid_max), (140, 200));
        assert_eq!(nb.health, "http :8080/health expect 200");
        assert_eq!(nb.status_path.as_deref(), Some(":8080/status"));
        assert!(nb
            .container
            .tags
            .starts_with(&["1ld".into(), "1ld-netbox-agent".into()]));
        let wk = c.get("wikijs-integration").unwrap().info();
        assert_eq!(
            (wk.container.cores, wk.container.memory, wk.container.disk),
            (2, 1024, 4)
        );
        assert_eq!((wk.container.vmid_min, wk.container.vmid_max), (130, 200));
        assert_eq!(wk.status_path.as_deref(), Some(":3001/wiki-agent/status"));
        assert_eq!(wk.container.template, "debian-12-standard");
        assert_eq!(wk.container.bridge, "vmbr0");
    }

    #[test]
    fn builtin_units_are_the_agents_units() {
        let c = Catalog::builtin();
        for (app, unit) in [
            (
                "netbox-agent",
                include_str!("../../agents/netbox-agent/netbox-agent.service"),
            ),
            (
                "wikijs-integration",
                include_str!("../../agents/wikijs-integration/wikijs-integration.service"),
            ),
        ] {
            let m = &c.get(app).unwrap().manifest;
            let f = m
                .files
                .iter()
                .find(|f| f.path.ends_with(".service"))
                .unwrap();
            assert_eq!(f.template.as_deref(), Some(unit), "{app}");
        }
    }

    #[test]
    fn the_documented_third_party_example_loads() {
        let doc = include_str!("../../docs/apps.md");
        let start = doc.find("```toml\nname = \"hello-http\"").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("\n```").unwrap();
        let m = manifest::parse(&doc[start..=end]).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(m.name, "hello-http");
        assert_eq!(m.tags(), vec!["1ld", "1ld-hello-http", "example"]);
        assert_eq!(m.settings.len(), 6);
    }

    #[test]
    fn a_bad_user_file_is_reported_and_the_rest_load() {
        let d = tempfile::tempdir().unwrap();
        let good = include_str!("builtin/netbox-agent.toml")
            .replace("name = \"netbox-agent\"", "name = \"my-agent\"");
        std::fs::write(d.path().join("a-good.toml"), good).unwrap();
        std::fs::write(
            d.path().join("b-bad.toml"),
            include_str!("builtin/netbox-agent.toml")
                .replace("name = \"netbox-agent\"", "name = \"other\"")
                .replace("cores = 2", "cores = 0"),
        )
        .unwrap();
        std::fs::write(d.path().join("c-syntax.toml"), "name = \n").unwrap();
        std::fs::write(d.path().join("ignored.txt"), "x").unwrap();
        let c = Catalog::load(d.path());
        assert_eq!(
            c.names(),
            vec!["my-agent", "netbox-agent", "wikijs-integration"]
        );
        let errs = c.errors();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].file.ends_with("b-bad.toml"));
        assert_eq!(errs[0].key.as_deref(), Some("container.cores"));
        assert!(errs[0].line.is_some());
        assert!(errs[1].file.ends_with("c-syntax.toml"));
        assert_eq!(errs[1].line, Some(1));
    }
}
