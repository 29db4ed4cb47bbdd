//! `[notify]` in `1ld.toml`: delivery settings and the named targets.
//!
//! Invariants: unknown keys are rejected; [`NotifyConfig::validate`] checks
//! every target at load time and names the offending key
//! (`notify.targets.<name>.url`); no secret lives here (HMAC keys, tokens
//! and Home Assistant webhook ids are stored with `Secrets`, see
//! [`crate::secrets::NOTIFY_NAMESPACE`]), so URLs carry no credentials.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alert::{AlertKind, Severity};

/// Longest target name.
pub const MAX_TARGET_NAME: usize = 64;

/// `[notify]`: how alerts are delivered, and where to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Seconds one delivery attempt (connect, TLS, request, response) may take.
    pub timeout_secs: u64,
    /// First pause before retrying a failed delivery (seconds); doubles
    /// after each failure (with jitter), up to `retry_max_secs`.
    pub retry_initial_secs: u64,
    /// Longest pause between two attempts (seconds).
    pub retry_max_secs: u64,
    /// A notification still undelivered this many hours after it was raised
    /// is marked `failed` (with its last error).
    pub give_up_hours: u64,
    /// Delivered and failed notifications are kept this many days.
    pub retention_days: u32,
    /// The targets, by name (`[notify.targets.<name>]`).
    pub targets: BTreeMap<String, TargetConfig>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 10,
            retry_initial_secs: 10,
            retry_max_secs: 1800,
            give_up_hours: 24,
            retention_days: 30,
            targets: BTreeMap::new(),
        }
    }
}

/// What kind of service a target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// POST of the alert as JSON to `url`, optionally HMAC-signed.
    Webhook,
    /// ntfy: POST of the message to the topic URL.
    Ntfy,
    /// Gotify: POST `<url>/message`, the app token in `X-Gotify-Key`.
    Gotify,
    /// Home Assistant: POST `<url>/api/webhook/<webhook id>`.
    #[serde(rename = "homeassistant")]
    HomeAssistant,
}

impl TargetKind {
    /// The name in the config and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Ntfy => "ntfy",
            Self::Gotify => "gotify",
            Self::HomeAssistant => "homeassistant",
        }
    }

    /// What the target's secret is, for messages.
    pub fn secret_name(self) -> &'static str {
        match self {
            Self::Webhook => "HMAC signing key (optional)",
            Self::Ntfy => "access token (optional)",
            Self::Gotify => "app token (required)",
            Self::HomeAssistant => "webhook id (required)",
        }
    }

    /// Whether delivery is impossible without a secret.
    pub fn needs_secret(self) -> bool {
        matches!(self, Self::Gotify | Self::HomeAssistant)
    }
}

fn default_min_severity() -> Severity {
    Severity::Info
}

/// `[notify.targets.<name>]`: one place alerts go to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `webhook`, `ntfy`, `gotify` or `homeassistant`.
    pub kind: TargetKind,
    /// `http://` or `https://`. webhook: the endpoint; ntfy: the topic URL
    /// (`https://ntfy.sh/mytopic`); gotify and homeassistant: the server's
    /// base URL.
    pub url: String,
    /// Extra request headers (name → value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Only these events (`unhealthy`, `recovered`, `remediation`,
    /// `gave_up`, `vanished`, `drift`); empty: all.
    #[serde(default)]
    pub events: Vec<AlertKind>,
    /// Only alerts at least this severe (`info`, `warning`, `critical`).
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// A PEM file of extra CA certificates trusted for this target (a
    /// private CA), besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl TargetConfig {
    /// Whether an alert of `kind` and `severity` goes to this target.
    pub fn wants(&self, kind: AlertKind, severity: Severity) -> bool {
        severity >= self.min_severity && (self.events.is_empty() || self.events.contains(&kind))
    }
}

/// A problem with `[notify]`: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfigError {
    /// The full key, e.g. `notify.targets.phone.url`.
    pub key: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl std::fmt::Display for NotifyConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.key, self.message)
    }
}

/// Checks a target name: 1 to 64 of `a-z A-Z 0-9 _ -`, not starting with `-`.
pub fn valid_target_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TARGET_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks an `http(s)://host[:port]/...` URL without credentials in it.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("is not a valid URL ({e}); write e.g. \"https://host:port/path\""))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".to_string()),
    }
    let Some(auth) = uri.authority() else {
        return Err("has no host; write e.g. \"https://host:port/path\"".to_string());
    };
    if auth.as_str().contains('@') {
        return Err(
            "must not contain credentials (user:password@); put a token in a secret \
             (1ldctl notify set-secret) or a header instead"
                .to_string(),
        );
    }
    if auth.host().is_empty() {
        return Err("has no host".to_string());
    }
    Ok(())
}

impl NotifyConfig {
    /// Timeout of one delivery attempt.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// Checks every value; the first problem, naming its key.
    pub fn validate(&self) -> Result<(), NotifyConfigError> {
        let bad = |key: &str, message: &str| NotifyConfigError {
            key: format!("notify.{key}"),
            message: message.to_string(),
        };
        if self.timeout_secs == 0 || self.timeout_secs > 300 {
            return Err(bad("timeout_secs", "must be from 1 to 300"));
        }
        if self.retry_initial_secs == 0 || self.retry_max_secs < self.retry_initial_secs {
            return Err(bad(
                "retry_initial_secs",
                "must be at least 1 and at most retry_max_secs",
            ));
        }
        if self.give_up_hours == 0 {
            return Err(bad("give_up_hours", "must be at least 1"));
        }
        if self.retention_days == 0 {
            return Err(bad("retention_days", "must be at least 1"));
        }
        for (name, t) in &self.targets {
            let key = |field: &str| format!("targets.{name}.{field}");
            if !valid_target_name(name) {
                return Err(bad(
                    &format!("targets.{name}"),
                    "is not a valid target name: use 1 to 64 of a-z A-Z 0-9 _ - (not starting with -)",
                ));
            }
            check_url(&t.url).map_err(|m| bad(&key("url"), &m))?;
            for (h, v) in &t.headers {
                if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(bad(
                        &key("headers"),
                        &format!("'{h}' is not a valid HTTP header name"),
                    ));
                }
                if hyper::header::HeaderValue::from_str(v).is_err() {
                    return Err(bad(
                        &key("headers"),
                        &format!(
                            "the value of '{h}' is not a valid HTTP header value (printable ASCII)"
                        ),
                    ));
                }
            }
            if t.events.contains(&AlertKind::Test) {
                return Err(bad(
                    &key("events"),
                    "cannot list \"test\" (test messages always go to the target asked for)",
                ));
            }
            if let Some(ca) = &t.ca_file {
                if !ca.is_absolute() {
                    return Err(bad(&key("ca_file"), "must be an absolute path"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        let c: NotifyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn targets_of_every_kind_parse() {
        let c = parse(
            r#"
            [targets.ops-hook]
            kind = "webhook"
            url = "https://hooks.example/1ld"
            headers = { X-Team = "ops" }
            events = ["unhealthy", "gave_up"]
            min_severity = "warning"
            [targets.phone]
            kind = "ntfy"
            url = "https://ntfy.example/homelab"
            [targets.gotify]
            kind = "gotify"
            url = "http://gotify.lan:8080"
            ca_file = "/etc/1ld/ca.pem"
            [targets.ha]
            kind = "homeassistant"
            url = "http://homeassistant.local:8123"
            "#,
        )
        .unwrap();
        assert_eq!(c.targets.len(), 4);
        let hook = &c.targets["ops-hook"];
        assert_eq!(hook.kind, TargetKind::Webhook);
        assert!(hook.wants(AlertKind::Unhealthy, Severity::Critical));
        assert!(
            !hook.wants(AlertKind::Drift, Severity::Critical),
            "filtered event"
        );
        assert!(
            !hook.wants(AlertKind::GaveUp, Severity::Info),
            "below min_severity"
        );
        assert!(c.targets["phone"].wants(AlertKind::Recovered, Severity::Info));
        assert_eq!(c.targets["ha"].kind, TargetKind::HomeAssistant);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[targets.x]\nkind = \"webhook\"\nurl = \"ftp://h/\"\n", "notify.targets.x.url"),
            ("[targets.x]\nkind = \"webhook\"\nurl = \"not a url\"\n", "notify.targets.x.url"),
            (
                "[targets.x]\nkind = \"ntfy\"\nurl = \"https://u:p@h/t\"\n",
                "notify.targets.x.url",
            ),
            (
                "[targets.x]\nkind = \"webhook\"\nurl = \"http://h/\"\nheaders = { \"a b\" = \"v\" }\n",
                "notify.targets.x.headers",
            ),
            (
                "[targets.x]\nkind = \"webhook\"\nurl = \"http://h/\"\nca_file = \"ca.pem\"\n",
                "notify.targets.x.ca_file",
            ),
            (
                "[targets.x]\nkind = \"webhook\"\nurl = \"http://h/\"\nevents = [\"test\"]\n",
                "notify.targets.x.events",
            ),
            ("[targets.\"a.b\"]\nkind = \"webhook\"\nurl = \"http://h/\"\n", "notify.targets.a.b"),
            ("timeout_secs = 0\n", "notify.timeout_secs"),
            ("retry_initial_secs = 100\nretry_max_secs = 10\n", "notify.retry_initial_secs"),
        ];
        for (text, key) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        // Unknown keys and kinds are rejected by serde, naming them.
        let e = parse("[targets.x]\nkind = \"webhook\"\nurl = \"http://h/\"\ntoken = \"t\"\n")
            .unwrap_err();
        assert!(e.contains("token"), "{e}");
        let e = parse("[targets.x]\nkind = \"slack\"\nurl = \"http://h/\"\n").unwrap_err();
        assert!(e.contains("slack"), "{e}");
        let e =
            parse("[targets.x]\nkind = \"webhook\"\nurl = \"http://h/\"\nevents = [\"nope\"]\n")
                .unwrap_err();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn names() {
        for ok in ["a", "ops-hook", "Phone_2", &"x".repeat(64)] {
            assert!(valid_target_name(ok), "{ok}");
        }
        for bad in ["", "-a", "a.b", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_target_name(bad), "{bad}");
        }
    }
}
