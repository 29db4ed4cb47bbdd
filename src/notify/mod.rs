//! Notifications: alerts about deployments, queued durably and delivered to
//! the targets configured in `[notify]`.
//!
//! - [`alert`]: what the supervisor (and later backups/upgrades) raise;
//! - [`config`]: `[notify]` (delivery settings, named targets);
//! - [`format`](mod@format): what each kind of target receives (pure functions);
//! - [`http`]: one HTTP(S) POST (hyper + rustls);
//! - [`worker`]: the delivery loop;
//! - [`Notifier`]: the handle the daemon, the API and the supervisor share.
//!
//! Invariants:
//! - raising an alert ([`Notifier::enqueue`]) is a store insert (one row per
//!   matching target, in one transaction) and never waits for a network; a
//!   `dedupe_key` is queued at most once per target, so an incident alerts
//!   once even across restarts;
//! - per target, notifications are delivered in queue order: a later one
//!   waits until the earlier is delivered or failed (head of line), so
//!   "recovered" never arrives before "unhealthy"; targets are independent
//!   and delivered in parallel;
//! - delivery is at least once: 2xx marks a row delivered; anything else is
//!   retried with exponential backoff and jitter until `[notify]
//!   give_up_hours` after the alert, then the row is `failed` with its last
//!   error; a row whose target left the configuration is `failed` at once.
//!   A restart during an attempt repeats it (receivers can deduplicate on
//!   `X-1ld-Delivery`);
//! - targets are read from the current configuration at delivery time
//!   (SIGHUP applies to queued notifications);
//! - secrets (HMAC keys, tokens, Home Assistant webhook ids) live in the
//!   secrets store under [`crate::secrets::NOTIFY_NAMESPACE`], are known to
//!   the redactor, and never appear in the queue, errors, logs or the API:
//!   stored payloads and every error text pass the redactor, and logs name
//!   the target, never its URL.

pub mod alert;
pub mod config;
pub mod format;
pub mod http;
pub mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use crate::api::NotifyTestResult as TestResult;
pub use crate::store::QueueStats;
pub use alert::{Alert, AlertKind, Severity};
pub use config::{NotifyConfig, TargetConfig, TargetKind};

use crate::api::{Notification, NotifyTarget};
use crate::config::Config;
use crate::error::Error;
use crate::secrets::{Secrets, NOTIFY_NAMESPACE};
use crate::server::SharedConfig;
use crate::store::{now_ms, rfc3339, NewNotification, NotificationRow, NotificationStatus, Store};

/// Longest accepted target secret.
pub const MAX_SECRET_BYTES: usize = 4096;

/// The notification subsystem's handle. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    secrets: Secrets,
    config: SharedConfig,
    wake: tokio::sync::Notify,
    node: String,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("node", &self.inner.node)
            .finish_non_exhaustive()
    }
}

/// What one attempt got: an HTTP status (if any answer came) and an error
/// text (redacted) unless it was a 2xx.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attempt {
    pub(crate) http_status: Option<u16>,
    pub(crate) error: Option<String>,
}

impl Notifier {
    /// The notifier over the daemon's store, secrets and shared configuration.
    pub fn new(store: Store, secrets: Secrets, config: SharedConfig) -> Notifier {
        let node = {
            let cfg = read_config(&config);
            cfg.pve
                .node
                .clone()
                .or_else(|| crate::pve::local_node_name().ok())
                .unwrap_or_else(|| "unknown".to_string())
        };
        Notifier {
            inner: Arc::new(Inner {
                store,
                secrets,
                config,
                wake: tokio::sync::Notify::new(),
                node,
            }),
        }
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        read_config(&self.inner.config)
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// Queues `alert` for every target that wants it (its `events` and
    /// `min_severity`), in one transaction, and wakes the delivery loop.
    /// Returns how many notifications were queued (0 when deduplicated or
    /// no target matches). Never waits on the network.
    pub fn enqueue(&self, alert: &Alert) -> Result<usize, Error> {
        let cfg = self.config();
        let targets: Vec<&str> = cfg
            .notify
            .targets
            .iter()
            .filter(|(_, t)| t.wants(alert.kind, alert.severity))
            .map(|(name, _)| name.as_str())
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let payload = serde_json::to_value(alert)
            .map_err(|e| Error::internal(format!("cannot serialize an alert: {e}")))?;
        let payload = self.inner.secrets.redactor().redact_json(&payload);
        let n = self.inner.store.enqueue_notifications(
            &targets,
            &NewNotification {
                event: alert.kind.as_str(),
                deployment: alert.deployment.as_deref(),
                dedupe_key: alert.dedupe_key.as_deref(),
                payload: &payload,
            },
            now_ms(),
        )?;
        if n > 0 {
            self.wake();
        }
        Ok(n)
    }

    /// The delivery loop, until `stop` (see [`worker`]). Beats `beat` at
    /// least every [`crate::daemon::notify::beat_every`].
    pub async fn run(self, stop: CancellationToken, beat: crate::daemon::notify::Beat) {
        worker::run(self, stop, beat).await;
    }

    /// How many notifications are pending, delivered and failed.
    pub fn stats(&self) -> Result<QueueStats, Error> {
        Ok(self.inner.store.notification_counts()?)
    }

    /// Sends a test message now (not queued) to `target`, or to every
    /// target; one result per target. An unknown name gives no result
    /// (check with [`Notifier::check_target`] first).
    pub async fn send_test(&self, target: Option<&str>) -> Vec<TestResult> {
        let cfg = self.config();
        let names: Vec<&String> = cfg
            .notify
            .targets
            .keys()
            .filter(|n| target.is_none_or(|t| t == n.as_str()))
            .collect();
        let alert = Alert {
            kind: AlertKind::Test,
            severity: Severity::Info,
            deployment: None,
            app: None,
            title: "1ld test notification".to_string(),
            message: format!(
                "This is a test message from 1ldd on {}: notifications to this target work.",
                self.inner.node
            ),
            dedupe_key: None,
            time_ms: now_ms(),
            data: serde_json::json!({}),
        };
        let sends = names.into_iter().map(|name| {
            let alert = &alert;
            let cfg = &cfg;
            async move {
                let start = Instant::now();
                let a = match cfg.notify.targets.get(name) {
                    Some(t) => self.attempt(0, name, t, alert, cfg.notify.timeout()).await,
                    None => Attempt {
                        http_status: None,
                        error: Some("target no longer configured".to_string()),
                    },
                };
                if let Some(e) = &a.error {
                    tracing::warn!(notify_target = %name, "test notification failed: {e}");
                }
                TestResult {
                    target: name.clone(),
                    delivered: a.error.is_none(),
                    http_status: a.http_status,
                    error: a.error,
                    duration_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                }
            }
        });
        futures_util::future::join_all(sends).await
    }

    /// 404 naming an unknown target; 400 with the fix when none is configured.
    pub fn check_target(&self, target: Option<&str>) -> Result<(), Error> {
        let cfg = self.config();
        if cfg.notify.targets.is_empty() {
            return Err(Error::bad_request(
                "target",
                "no notification targets are configured; add a [notify.targets.NAME] section \
                 to /etc/1ld/1ld.toml (see the commented examples in it) and reload 1ldd \
                 (systemctl reload 1ld)",
            ));
        }
        match target {
            Some(t) if !cfg.notify.targets.contains_key(t) => Err(unknown_target(&cfg, t)),
            _ => Ok(()),
        }
    }

    /// Stores `target`'s secret (the redactor learns it first).
    pub fn set_secret(&self, target: &str, value: &str) -> Result<(), Error> {
        let cfg = self.config();
        if !cfg.notify.targets.contains_key(target) {
            return Err(unknown_target(&cfg, target));
        }
        let value = value.trim_end_matches(['\n', '\r']);
        if value.trim().is_empty() {
            return Err(Error::bad_request("value", "the secret is empty"));
        }
        if value.len() > MAX_SECRET_BYTES {
            return Err(Error::bad_request(
                "value",
                format!("the secret is longer than {MAX_SECRET_BYTES} bytes"),
            ));
        }
        self.inner.secrets.put(NOTIFY_NAMESPACE, target, value)
    }

    /// Deletes `target`'s secret; `false` when none was set.
    pub fn remove_secret(&self, target: &str) -> Result<bool, Error> {
        let cfg = self.config();
        if !cfg.notify.targets.contains_key(target) {
            return Err(unknown_target(&cfg, target));
        }
        self.inner.secrets.remove(NOTIFY_NAMESPACE, target)
    }

    pub(crate) fn secret(&self, target: &str) -> Result<Option<String>, Error> {
        if !config::valid_target_name(target) {
            return Ok(None);
        }
        self.inner.secrets.get(NOTIFY_NAMESPACE, target)
    }

    /// Every configured target with its queue, URLs masked.
    pub fn targets(&self) -> Result<Vec<NotifyTarget>, Error> {
        let cfg = self.config();
        let redactor = self.inner.secrets.redactor();
        let mut out = Vec::new();
        for (name, t) in &cfg.notify.targets {
            let has_secret = self.secret(name)?.is_some();
            let q = self.inner.store.notification_target_queue(name)?;
            let url = match t.kind {
                TargetKind::HomeAssistant => format!(
                    "{}/api/webhook/{}",
                    t.url.trim_end_matches('/'),
                    crate::secrets::MASK
                ),
                TargetKind::Gotify => format!("{}/message", t.url.trim_end_matches('/')),
                _ => t.url.clone(),
            };
            out.push(NotifyTarget {
                name: name.clone(),
                kind: t.kind.as_str().to_string(),
                url: redactor.redact_string(&url),
                has_secret,
                pending: q.pending,
                failed: q.failed,
                last_delivered_at: q.last_delivered_ms.map(rfc3339),
                last_error: q.last_error.map(|e| redactor.redact_string(&e)),
            });
        }
        Ok(out)
    }

    /// A stored row on the wire (texts redacted).
    pub fn to_api(&self, row: &NotificationRow) -> Notification {
        let redactor = self.inner.secrets.redactor();
        let severity = row
            .payload
            .get("severity")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or(Severity::Info);
        let title = row
            .payload
            .get("title")
            .and_then(|t| t.as_str())
            .unwrap_or_default();
        Notification {
            id: row.id,
            target: row.target.clone(),
            event: row.event.clone(),
            severity,
            deployment: row.deployment.clone(),
            title: redactor.redact_string(title),
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: (row.status == NotificationStatus::Pending)
                .then(|| rfc3339(row.next_attempt_ms)),
            last_error: row.last_error.as_deref().map(|e| redactor.redact_string(e)),
            created_at: rfc3339(row.created_ms),
            delivered_at: row.delivered_ms.map(rfc3339),
        }
    }

    /// One attempt to deliver `alert` to `target` (notification `id`).
    pub(crate) async fn attempt(
        &self,
        id: i64,
        name: &str,
        target: &TargetConfig,
        alert: &Alert,
        timeout: Duration,
    ) -> Attempt {
        let redactor = self.inner.secrets.redactor();
        let fail = |http_status, e: String| Attempt {
            http_status,
            error: Some(redactor.redact_string(&e)),
        };
        let secret = match self.secret(name) {
            Ok(s) => s,
            Err(e) => return fail(None, format!("cannot read the target's secret: {e}")),
        };
        let req = match format::build(&format::Delivery {
            id,
            target_name: name,
            target,
            alert,
            node: &self.inner.node,
            secret: secret.as_deref(),
        }) {
            Ok(r) => r,
            Err(e) => return fail(None, e.to_string()),
        };
        match http::post(&req, timeout, target.ca_file.as_deref()).await {
            Ok(a) if a.ok() => Attempt {
                http_status: Some(a.status),
                error: None,
            },
            Ok(a) => {
                let mut e = format!("HTTP {}", a.status);
                if (300..400).contains(&a.status) {
                    e.push_str(" (redirects are not followed; use the final URL)");
                }
                if !a.snippet.is_empty() {
                    e.push_str(": ");
                    e.push_str(&a.snippet);
                }
                fail(Some(a.status), e)
            }
            Err(e) => fail(None, e.to_string()),
        }
    }
}

fn unknown_target(cfg: &Config, name: &str) -> Error {
    let shown: String = name.chars().filter(|c| !c.is_control()).take(64).collect();
    let known: Vec<&str> = cfg.notify.targets.keys().map(String::as_str).collect();
    Error::not_found(if known.is_empty() {
        format!("no notification target called '{shown}'; none is configured (add [notify.targets.NAME] to /etc/1ld/1ld.toml)")
    } else {
        format!(
            "no notification target called '{shown}'; configured: {}",
            known.join(", ")
        )
    })
}

fn read_config(shared: &SharedConfig) -> Arc<Config> {
    crate::server::config_snapshot(shared)
}

#[cfg(test)]
mod tests;

/// Where the supervisor (and later backups/upgrades) hand their alerts.
pub trait AlertSink: Send + Sync {
    /// Queues `alert` for every matching target. Idempotent per
    /// `dedupe_key`; never waits on a network.
    fn raise(&self, alert: &Alert) -> Result<(), crate::error::Error>;
}

impl AlertSink for Notifier {
    fn raise(&self, alert: &Alert) -> Result<(), Error> {
        self.enqueue(alert).map(|_| ())
    }
}
