//! wikijs-integration's config and secrets files.
//!
//! Config (`/etc/wikijs-integration/config.toml`): `[service]` (runtime),
//! `[wikijs]` (where Wiki.js is and where pages go), `[source]` (the Git
//! repository), `[webhook]`. Secrets (`/etc/wikijs-integration/secrets.toml`,
//! mode 0600): `wikijs_api_key`, and optionally `webhook_secret`,
//! `git_token`, `sync_token`.

use agent_runtime::config::Invalid;
use agent_runtime::http_client::BaseUrl;
use agent_runtime::{Secret, ServiceConfig};
use serde::Deserialize;

use crate::convert;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Runtime settings.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The Wiki.js to publish to.
    pub wikijs: WikiConfig,
    /// The Git repository the docs come from.
    #[serde(default)]
    pub source: Option<SourceConfig>,
    /// Push webhooks.
    #[serde(default)]
    pub webhook: WebhookConfig,
}

/// What happens to a page whose document was deleted from the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnDelete {
    /// `pages.delete` (Wiki.js keeps a history row).
    #[default]
    Delete,
    /// Keep the page, set `isPublished: false`.
    Unpublish,
}

/// `[wikijs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WikiConfig {
    /// Base URL, e.g. `http://wiki.lan:3000` (GraphQL is at `/graphql`).
    pub url: String,
    /// Per-request timeout in seconds; default 10.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Wiki path prefix every page goes under (default `docs`; `""` for none).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Page locale (default `en`, the site locale of a default install).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// Asset folder (slug path) that mirrors the docs tree; default: the
    /// prefix, or `docs-assets` without one.
    #[serde(default)]
    pub asset_folder: Option<String>,
    /// `delete` (default) or `unpublish`.
    #[serde(default)]
    pub on_delete: OnDelete,
}

/// `[source]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `https://…`/`http://…` clone URL, or a local path to a repository
    /// (read in place, never written).
    pub repository: String,
    /// Branch (default `main`).
    #[serde(default = "default_branch")]
    pub branch: String,
    /// Docs folder inside the repository (default: the whole repository).
    #[serde(default)]
    pub subfolder: String,
    /// User name sent with `git_token` over HTTP(S) (default
    /// `x-access-token`, which GitHub, Gitea/Forgejo and GitLab accept).
    #[serde(default = "default_git_user")]
    pub username: String,
}

/// `[webhook]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Largest accepted body in bytes (default 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            max_body: default_max_body(),
        }
    }
}

fn default_timeout() -> u64 {
    10
}
fn default_prefix() -> String {
    "docs".into()
}
fn default_locale() -> String {
    "en".into()
}
fn default_branch() -> String {
    "main".into()
}
fn default_git_user() -> String {
    "x-access-token".into()
}
fn default_max_body() -> usize {
    1024 * 1024
}

/// The secrets file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Wiki.js API key (Administration → API Access), a JWT; full access, or
    /// at least `manage:api` for the health check.
    pub wikijs_api_key: Secret,
    /// Shared secret of the push webhooks (GitHub/Gitea/Forgejo HMAC key,
    /// GitLab token). Without it `POST /webhook` answers 403.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// Standard Webhooks signing key (`whsec_<base64>`), when GitLab signs.
    #[serde(default)]
    pub webhook_signing_key: Option<Secret>,
    /// Token for HTTPS clone URLs (a deploy token / PAT with read access).
    #[serde(default)]
    pub git_token: Option<Secret>,
    /// Bearer token for `POST /wiki-agent/sync`; without it the endpoint
    /// answers 403.
    #[serde(default)]
    pub sync_token: Option<Secret>,
}

impl WikiConfig {
    /// The asset folder slug path.
    pub fn asset_root(&self) -> String {
        match &self.asset_folder {
            Some(f) => f.trim_matches('/').to_string(),
            None if self.prefix.trim_matches('/').is_empty() => "docs-assets".into(),
            None => self.prefix.trim_matches('/').to_string(),
        }
    }
}

impl Config {
    /// The source, unless absent or with an empty `repository` (the 1ld
    /// manifest renders an unset repository as `""`): then the agent only
    /// checks Wiki.js.
    pub fn source(&self) -> Option<&SourceConfig> {
        self.source
            .as_ref()
            .filter(|s| !s.repository.trim().is_empty())
    }

    /// Checks beyond typing.
    pub fn validate(&self) -> Result<(), Invalid> {
        BaseUrl::parse(&self.wikijs.url).map_err(|e| Invalid::new("wikijs.url", e.to_string()))?;
        if self.wikijs.timeout_s == 0 {
            return Err(Invalid::new("wikijs.timeout_s", "must be at least 1"));
        }
        let prefix = self.wikijs.prefix.trim_matches('/');
        if !prefix.is_empty() {
            convert::check_wiki_path(prefix).map_err(|e| {
                Invalid::new(
                    "wikijs.prefix",
                    format!(
                        "{e}; use lower-case letters, digits, '-', '_' and '/' (e.g. \"docs\")"
                    ),
                )
            })?;
        }
        if self.wikijs.locale.is_empty() {
            return Err(Invalid::new(
                "wikijs.locale",
                "must not be empty (the site locale, e.g. \"en\")",
            ));
        }
        let root = self.wikijs.asset_root();
        if root.is_empty()
            || !root.split('/').all(|s| {
                !s.is_empty()
                    && s.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
                    })
            })
        {
            return Err(Invalid::new(
                "wikijs.asset_folder",
                "must be slug segments of [a-z0-9-_] joined by '/', e.g. \"docs-assets\"",
            ));
        }
        if let Some(src) = self.source() {
            if src.repository.starts_with("ssh://")
                || src.repository.contains('@') && !src.repository.contains("://")
            {
                return Err(Invalid::new(
                    "source.repository",
                    "SSH URLs are not supported (the container has no ssh client); use the HTTPS clone URL with git_token in the secrets file",
                ));
            }
            if src.branch.trim().is_empty() || src.branch.contains("..") || src.branch.contains(' ')
            {
                return Err(Invalid::new(
                    "source.branch",
                    "must be a branch name such as \"main\"",
                ));
            }
            if src.subfolder.split('/').any(|s| s == "..") {
                return Err(Invalid::new(
                    "source.subfolder",
                    "must be a path inside the repository (no '..')",
                ));
            }
        }
        if self.webhook.max_body < 1024 {
            return Err(Invalid::new(
                "webhook.max_body",
                "must be at least 1024 bytes",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses() {
        let cfg: Config = toml::from_str(include_str!("../config.example.toml")).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.source.unwrap().subfolder, "docs");
    }

    #[test]
    fn bad_values_are_named() {
        let cfg: Config = toml::from_str("[wikijs]\nurl = \"wiki.lan\"\n").unwrap();
        assert_eq!(cfg.validate().unwrap_err().key, "wikijs.url");
        let cfg: Config =
            toml::from_str("[wikijs]\nurl = \"http://w\"\nprefix = \"my docs\"\n").unwrap();
        assert_eq!(cfg.validate().unwrap_err().key, "wikijs.prefix");
        let cfg: Config =
            toml::from_str("[wikijs]\nurl = \"http://w\"\n[source]\nrepository = \"\"\n").unwrap();
        assert!(cfg.validate().is_ok() && cfg.source().is_none());
        let cfg: Config = toml::from_str(
            "[wikijs]\nurl = \"http://w\"\n[source]\nrepository = \"git@github.com:a/b.git\"\n",
        )
        .unwrap();
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.key, "source.repository");
        assert!(e.message.contains("HTTPS"), "{}", e.message);
        assert!(
            toml::from_str::<Config>("[wikijs]\nurl = \"http://w\"\non_delete = \"x\"\n").is_err()
        );
    }
}
