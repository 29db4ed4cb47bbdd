//! The agent's TOML config file and the runtime's `[service]` section.
//!
//! Every config type is deserialized with `deny_unknown_fields`; any error is
//! reported as `file:line:column: key `a.b.c`: what is wrong`, so an operator
//! can fix a rendered file without reading code. A missing file is read as an
//! empty one: defaults apply and required keys are reported as missing.
//!
//! Agent-specific checks that TOML typing cannot express (a URL scheme, a
//! range) are reported through [`Invalid`], which names the key too.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax error, unknown key, missing key or wrong type.
    #[error("{}", located(path, *line, *column, key, message))]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column of the offending text, when known.
        column: Option<usize>,
        /// Dotted key path (`netbox.timeout_s`); empty for a syntax error.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The value parsed but is not acceptable.
    #[error("{}: key `{}`: {}", path.display(), invalid.key, invalid.message)]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Which key and why.
        invalid: Invalid,
    },
}

fn located(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: &str,
    message: &str,
) -> String {
    let mut s = path.display().to_string();
    if let Some(line) = line {
        s.push_str(&format!(":{line}"));
        if let Some(column) = column {
            s.push_str(&format!(":{column}"));
        }
    }
    if !key.is_empty() {
        s.push_str(&format!(": key `{key}`"));
    }
    s.push_str(": ");
    s.push_str(message);
    s
}

/// A value that parsed but is not acceptable, with the dotted key it sits at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct Invalid {
    /// Dotted key path, e.g. `netbox.url`.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Invalid {
    /// An invalid value at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// A parse failure before it is tied to a file: used by [`crate::secrets`],
/// which must not repeat the offending value.
#[derive(Debug)]
pub(crate) struct ParseFailure {
    pub(crate) line: Option<usize>,
    pub(crate) column: Option<usize>,
    pub(crate) key: String,
    pub(crate) message: String,
}

/// Deserializes `text` as `T`, keeping the key path and the position.
pub(crate) fn parse_toml<T: DeserializeOwned>(text: &str) -> Result<T, ParseFailure> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner
            .span()
            .map(|span| line_col(text, span.start))
            .map_or((None, None), |(l, c)| (Some(l), Some(c)));
        ParseFailure {
            line,
            column,
            // serde_path_to_error writes "." for the root.
            key: if key == "." { String::new() } else { key },
            message: inner.message().trim_end().to_string(),
        }
    })
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit_once('\n')
        .map_or(before, |(_, tail)| tail)
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Reads and parses the config at `path`; a missing file reads as empty.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    parse_toml(&text).map_err(|f| ConfigError::Parse {
        path: path.to_path_buf(),
        line: f.line,
        column: f.column,
        key: f.key,
        message: f.message,
    })
}

/// The runtime's own settings: the `[service]` table every agent config has.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address the HTTP endpoints bind to; default `0.0.0.0:<agent port>`.
    pub listen: Option<SocketAddr>,
    /// Where the agent keeps its state; default `/var/lib/<agent>`.
    pub state_dir: Option<PathBuf>,
    /// The secrets file; default `/etc/<agent>/secrets.toml`.
    pub secrets_file: Option<PathBuf>,
    /// Seconds between the starts of two timer-driven cycles; default 300.
    pub interval_s: Option<u64>,
    /// Up to this many seconds are added at random to each interval, so that
    /// agents started together do not hit an upstream in step; default 10 %
    /// of the interval.
    pub jitter_s: Option<u64>,
    /// A cycle running longer than this is aborted and counted as failed;
    /// default 600.
    pub cycle_timeout_s: Option<u64>,
    /// On SIGTERM, how long a running cycle may take to reach a safe point
    /// before it is aborted; default 10. Keep it below systemd's
    /// `TimeoutStopSec`.
    pub shutdown_grace_s: Option<u64>,
}

/// [`ServiceConfig`] with defaults applied and values checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSettings {
    /// Bind address of the HTTP endpoints.
    pub listen: SocketAddr,
    /// State directory.
    pub state_dir: PathBuf,
    /// Secrets file.
    pub secrets_file: PathBuf,
    /// Interval between cycles.
    pub interval: Duration,
    /// Maximum random delay added to each interval.
    pub jitter: Duration,
    /// Per-cycle timeout.
    pub cycle_timeout: Duration,
    /// Grace period for a running cycle on shutdown.
    pub shutdown_grace: Duration,
}

impl ServiceConfig {
    /// Applies the defaults for agent `name` listening on `default_port`.
    pub fn resolve(&self, name: &str, default_port: u16) -> Result<ServiceSettings, Invalid> {
        let interval_s = self.interval_s.unwrap_or(300);
        if interval_s == 0 {
            return Err(Invalid::new(
                "service.interval_s",
                "must be at least 1 (seconds between cycles)",
            ));
        }
        let jitter_s = self.jitter_s.unwrap_or(interval_s / 10);
        if jitter_s > interval_s {
            return Err(Invalid::new(
                "service.jitter_s",
                format!("{jitter_s} is larger than service.interval_s ({interval_s})"),
            ));
        }
        let cycle_timeout_s = self.cycle_timeout_s.unwrap_or(600);
        if cycle_timeout_s == 0 {
            return Err(Invalid::new(
                "service.cycle_timeout_s",
                "must be at least 1 (seconds)",
            ));
        }
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/var/lib/{name}")));
        if !state_dir.is_absolute() {
            return Err(Invalid::new(
                "service.state_dir",
                format!("{} is not an absolute path", state_dir.display()),
            ));
        }
        let secrets_file = self
            .secrets_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/etc/{name}/secrets.toml")));
        if !secrets_file.is_absolute() {
            return Err(Invalid::new(
                "service.secrets_file",
                format!("{} is not an absolute path", secrets_file.display()),
            ));
        }
        Ok(ServiceSettings {
            listen: self
                .listen
                .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, default_port))),
            state_dir,
            secrets_file,
            interval: Duration::from_secs(interval_s),
            jitter: Duration::from_secs(jitter_s),
            cycle_timeout: Duration::from_secs(cycle_timeout_s),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_s.unwrap_or(10)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Cfg {
        #[serde(default)]
        service: ServiceConfig,
        upstream: Upstream,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Upstream {
        url: String,
        timeout_s: Option<u64>,
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let (_d, path) = write("[upstream]\nurl = \"http://x\"\ntimeout_s = \"ten\"\n");
        let err = load::<Cfg>(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}:3:", path.display())),
            "no file:line in {err}"
        );
        assert!(err.contains("key `upstream.timeout_s`"), "{err}");
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn unknown_key_is_named() {
        let (_d, path) = write("[upstream]\nurl = \"http://x\"\ntimeout = 3\n");
        let err = load::<Cfg>(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `timeout`"), "{err}");
        assert!(err.contains(":3:"), "{err}");
        assert!(err.contains("upstream"), "{err}");
    }

    #[test]
    fn unknown_service_key_is_named() {
        let (_d, path) = write("[service]\nintervall_s = 5\n[upstream]\nurl = \"u\"\n");
        let err = load::<Cfg>(&path).unwrap_err().to_string();
        assert!(err.contains("unknown field `intervall_s`"), "{err}");
        assert!(err.contains(":2:"), "{err}");
    }

    #[test]
    fn missing_key_is_named() {
        let (_d, path) = write("[upstream]\ntimeout_s = 3\n");
        let err = load::<Cfg>(&path).unwrap_err().to_string();
        assert!(err.contains("missing field `url`"), "{err}");
        assert!(err.contains("upstream"), "{err}");
    }

    #[test]
    fn syntax_error_has_position() {
        let (_d, path) = write("[upstream]\nurl = \"http://x\n");
        let err = load::<Cfg>(&path).unwrap_err();
        let ConfigError::Parse { line, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*line, Some(2), "{err}");
    }

    #[test]
    fn missing_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let err = load::<Cfg>(&dir.path().join("absent.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `upstream`"), "{err}");
    }

    #[test]
    fn service_defaults_and_checks() {
        let s = ServiceConfig::default().resolve("x-agent", 8080).unwrap();
        assert_eq!(s.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/x-agent"));
        assert_eq!(s.secrets_file, PathBuf::from("/etc/x-agent/secrets.toml"));
        assert_eq!(s.interval, Duration::from_secs(300));
        assert_eq!(s.jitter, Duration::from_secs(30));

        let bad = ServiceConfig {
            interval_s: Some(10),
            jitter_s: Some(11),
            ..Default::default()
        };
        assert_eq!(bad.resolve("x", 1).unwrap_err().key, "service.jitter_s");
        let rel = ServiceConfig {
            state_dir: Some("var/x".into()),
            ..Default::default()
        };
        assert_eq!(rel.resolve("x", 1).unwrap_err().key, "service.state_dir");
    }
}
