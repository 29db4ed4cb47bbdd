//! wikijs-integration's config and secrets files.
//!
//! Config (`/etc/wikijs-integration/config.toml`): `[service]` (runtime) and
//! `[wikijs]` (where Wiki.js is). Secrets
//! (`/etc/wikijs-integration/secrets.toml`, mode 0600): `wikijs_api_key`.

use agent_runtime::config::Invalid;
use agent_runtime::http_client::BaseUrl;
use agent_runtime::{Secret, ServiceConfig};
use serde::Deserialize;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Runtime settings.
    #[serde(default)]
    pub service: ServiceConfig,
    /// The Wiki.js to publish to.
    pub wikijs: WikiConfig,
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
}

fn default_timeout() -> u64 {
    10
}

/// The secrets file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    /// Wiki.js API key (Administration → API Access), a JWT; full access, or
    /// at least `manage:api` for the health check.
    pub wikijs_api_key: Secret,
}

impl Config {
    /// Checks beyond typing.
    pub fn validate(&self) -> Result<(), Invalid> {
        BaseUrl::parse(&self.wikijs.url).map_err(|e| Invalid::new("wikijs.url", e.to_string()))?;
        if self.wikijs.timeout_s == 0 {
            return Err(Invalid::new("wikijs.timeout_s", "must be at least 1"));
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
    }

    #[test]
    fn bad_url_is_named() {
        let cfg: Config = toml::from_str("[wikijs]\nurl = \"wiki.lan\"\n").unwrap();
        assert_eq!(cfg.validate().unwrap_err().key, "wikijs.url");
    }
}
