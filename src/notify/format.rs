//! What each kind of target receives: pure functions from an alert to an
//! HTTP request (URL, headers, body). No I/O here.
//!
//! - webhook: `POST <url>`, the alert as JSON ([`webhook_body`]), headers
//!   `X-1ld-Event`, `X-1ld-Delivery`, and with a secret
//!   `X-1ld-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`;
//! - ntfy: `POST <topic url>`, body = the message, headers `Title`,
//!   `Priority` (critical → 5 urgent, warning → 4 high, info → 3 default),
//!   `Tags`, and `Authorization: Bearer <token>` with a secret;
//! - Gotify: `POST <url>/message`, JSON `{title, message, priority, extras}`,
//!   the app token in `X-Gotify-Key` (never in the URL);
//! - Home Assistant: `POST <url>/api/webhook/<webhook id>`, the webhook JSON
//!   (an automation reads it as `trigger.json`).
//!
//! Every request also carries `User-Agent: 1ldd/<version>` and the target's
//! custom headers (which cannot replace the ones above).

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use super::alert::{Alert, Severity};
use super::config::{TargetConfig, TargetKind};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("1ldd/", env!("CARGO_PKG_VERSION"));

/// One HTTP POST, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct OutRequest {
    /// Where to (may contain a secret: the Home Assistant webhook id; never log it).
    pub url: String,
    /// Headers, in order (may contain a secret: never log them).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for OutRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URL and headers may hold secrets.
        f.debug_struct("OutRequest")
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Why a request cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The kind needs a secret and none is set.
    #[error(
        "no {what} is set for target '{target}'; set it with `1ldctl notify set-secret {target}`"
    )]
    MissingSecret {
        /// The target.
        target: String,
        /// What the secret is.
        what: &'static str,
    },
}

/// What one delivery is about.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// The notification's id (0 for a test message).
    pub id: i64,
    /// The target's name.
    pub target_name: &'a str,
    /// The target.
    pub target: &'a TargetConfig,
    /// The alert.
    pub alert: &'a Alert,
    /// This node's name.
    pub node: &'a str,
    /// The target's secret, if set.
    pub secret: Option<&'a str>,
}

/// The wire name of a severity.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

/// ntfy's priority name and number for a severity.
pub fn ntfy_priority(s: Severity) -> (&'static str, u8) {
    match s {
        Severity::Critical => ("urgent", 5),
        Severity::Warning => ("high", 4),
        Severity::Info => ("default", 3),
    }
}

/// Gotify's priority (0–10; 8 and up interrupts on Android) for a severity.
pub fn gotify_priority(s: Severity) -> u8 {
    match s {
        Severity::Critical => 8,
        Severity::Warning => 5,
        Severity::Info => 2,
    }
}

/// ntfy tags: an emoji shortcode for the severity, the event, the deployment.
pub fn ntfy_tags(a: &Alert) -> String {
    let emoji = match a.severity {
        Severity::Critical => "rotating_light",
        Severity::Warning => "warning",
        Severity::Info => "information_source",
    };
    let mut tags = vec![emoji.to_string(), a.kind.as_str().to_string()];
    if let Some(d) = &a.deployment {
        tags.push(d.clone());
    }
    tags.join(",")
}

/// The JSON body of webhook and Home Assistant targets.
pub fn webhook_body(id: i64, a: &Alert, node: &str) -> Vec<u8> {
    let v = json!({
        "id": id,
        "event": a.kind.as_str(),
        "severity": severity_name(a.severity),
        "deployment": a.deployment,
        "app": a.app,
        "title": a.title,
        "message": a.message,
        "time": crate::store::rfc3339(a.time_ms),
        "node": node,
        "data": a.data,
    });
    v.to_string().into_bytes()
}

/// `sha256=<hex HMAC-SHA256(key, body)>`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Header values come from alert text: no control characters (a newline
/// would end the header).
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// The request a delivery sends.
pub fn build(d: &Delivery<'_>) -> Result<OutRequest, FormatError> {
    let a = d.alert;
    let missing = || FormatError::MissingSecret {
        target: d.target_name.to_string(),
        what: d.target.kind.secret_name(),
    };
    let mut headers: Vec<(String, String)> = vec![("User-Agent".into(), USER_AGENT.into())];
    let (url, body) = match d.target.kind {
        TargetKind::Webhook | TargetKind::HomeAssistant => {
            let body = webhook_body(d.id, a, d.node);
            headers.push(("Content-Type".into(), "application/json".into()));
            headers.push(("X-1ld-Event".into(), a.kind.as_str().into()));
            headers.push(("X-1ld-Delivery".into(), d.id.to_string()));
            let url = if d.target.kind == TargetKind::HomeAssistant {
                let id = d.secret.ok_or_else(missing)?;
                join(&d.target.url, &format!("api/webhook/{}", id.trim()))
            } else {
                if let Some(key) = d.secret {
                    headers.push((
                        "X-1ld-Signature-256".into(),
                        signature(key.as_bytes(), &body),
                    ));
                }
                d.target.url.clone()
            };
            (url, body)
        }
        TargetKind::Ntfy => {
            let (_, prio) = ntfy_priority(a.severity);
            headers.push(("Content-Type".into(), "text/plain; charset=utf-8".into()));
            headers.push(("Title".into(), header_text(&a.title)));
            headers.push(("Priority".into(), prio.to_string()));
            headers.push(("Tags".into(), header_text(&ntfy_tags(a))));
            if let Some(token) = d.secret {
                headers.push(("Authorization".into(), format!("Bearer {}", token.trim())));
            }
            (d.target.url.clone(), a.message.clone().into_bytes())
        }
        TargetKind::Gotify => {
            let token = d.secret.ok_or_else(missing)?;
            headers.push(("Content-Type".into(), "application/json".into()));
            headers.push(("X-Gotify-Key".into(), token.trim().to_string()));
            let body = json!({
                "title": a.title,
                "message": a.message,
                "priority": gotify_priority(a.severity),
                "extras": {
                    "client::display": {"contentType": "text/plain"},
                    "1ld::alert": {
                        "event": a.kind.as_str(),
                        "severity": severity_name(a.severity),
                        "deployment": a.deployment,
                        "node": d.node,
                        "data": a.data,
                    },
                },
            });
            (
                join(&d.target.url, "message"),
                body.to_string().into_bytes(),
            )
        }
    };
    for (k, v) in &d.target.headers {
        if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
            headers.push((k.clone(), v.clone()));
        }
    }
    Ok(OutRequest { url, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::alert::AlertKind;
    use std::collections::BTreeMap;

    fn alert() -> Alert {
        Alert {
            kind: AlertKind::Unhealthy,
            severity: Severity::Critical,
            deployment: Some("wiki".into()),
            app: Some("wikijs".into()),
            title: "wiki is unhealthy".into(),
            message: "3 probes failed: connection refused".into(),
            dedupe_key: Some("wiki/7/unhealthy".into()),
            time_ms: 1_767_225_600_000,
            data: json!({"incident": 7}),
        }
    }

    fn target(kind: TargetKind, url: &str) -> TargetConfig {
        TargetConfig {
            kind,
            url: url.into(),
            headers: BTreeMap::from([("X-Team".to_string(), "ops".to_string())]),
            events: vec![],
            min_severity: Severity::Info,
            ca_file: None,
        }
    }

    fn header<'a>(r: &'a OutRequest, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// RFC 4231 test case 2 (key "Jefe").
    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn webhook_json_headers_and_signature() {
        let a = alert();
        let t = target(TargetKind::Webhook, "http://127.0.0.1:9/hook");
        let d = Delivery {
            id: 42,
            target_name: "hook",
            target: &t,
            alert: &a,
            node: "pve",
            secret: None,
        };
        let r = build(&d).unwrap();
        assert_eq!(r.url, "http://127.0.0.1:9/hook");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"id": 42, "event": "unhealthy", "severity": "critical", "deployment": "wiki",
                   "app": "wikijs", "title": "wiki is unhealthy",
                   "message": "3 probes failed: connection refused",
                   "time": "2026-01-01T00:00:00Z", "node": "pve", "data": {"incident": 7}})
        );
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "x-1ld-event"), Some("unhealthy"));
        assert_eq!(header(&r, "x-1ld-delivery"), Some("42"));
        assert_eq!(header(&r, "x-team"), Some("ops"));
        assert_eq!(header(&r, "user-agent"), Some(USER_AGENT));
        assert_eq!(
            header(&r, "x-1ld-signature-256"),
            None,
            "no secret, no signature"
        );
        let signed = build(&Delivery {
            secret: Some("k3y"),
            ..d
        })
        .unwrap();
        assert_eq!(
            header(&signed, "x-1ld-signature-256"),
            Some(signature(b"k3y", &signed.body).as_str())
        );
    }

    #[test]
    fn ntfy_headers() {
        let mut a = alert();
        a.title = "line\r\nInjected: yes".into();
        let t = target(TargetKind::Ntfy, "https://ntfy.example/topic");
        let d = Delivery {
            id: 1,
            target_name: "phone",
            target: &t,
            alert: &a,
            node: "pve",
            secret: Some("tk_abc"),
        };
        let r = build(&d).unwrap();
        assert_eq!(r.url, "https://ntfy.example/topic");
        assert_eq!(r.body, a.message.as_bytes());
        assert_eq!(header(&r, "Title"), Some("line  Injected: yes"));
        assert_eq!(header(&r, "Priority"), Some("5"));
        assert_eq!(header(&r, "Tags"), Some("rotating_light,unhealthy,wiki"));
        assert_eq!(header(&r, "Authorization"), Some("Bearer tk_abc"));
        assert_eq!(ntfy_priority(Severity::Warning), ("high", 4));
        assert_eq!(ntfy_priority(Severity::Info), ("default", 3));
        let anon = build(&Delivery { secret: None, ..d }).unwrap();
        assert_eq!(header(&anon, "Authorization"), None);
    }

    #[test]
    fn gotify_and_home_assistant_need_their_secret() {
        let a = alert();
        let g = target(TargetKind::Gotify, "http://gotify.lan/");
        let d = Delivery {
            id: 3,
            target_name: "g",
            target: &g,
            alert: &a,
            node: "pve",
            secret: None,
        };
        let e = build(&d).unwrap_err();
        assert!(e.to_string().contains("1ldctl notify set-secret g"), "{e}");
        let r = build(&Delivery {
            secret: Some("AppTok\n"),
            ..d
        })
        .unwrap();
        assert_eq!(r.url, "http://gotify.lan/message", "token not in the URL");
        assert_eq!(header(&r, "X-Gotify-Key"), Some("AppTok"));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["title"], "wiki is unhealthy");
        assert_eq!(v["priority"], 8);
        assert_eq!(v["extras"]["client::display"]["contentType"], "text/plain");

        let h = target(TargetKind::HomeAssistant, "http://ha.lan:8123");
        let d = Delivery {
            id: 4,
            target_name: "ha",
            target: &h,
            alert: &a,
            node: "pve",
            secret: None,
        };
        assert!(build(&d).is_err());
        let r = build(&Delivery {
            secret: Some("hook-id-1"),
            ..d
        })
        .unwrap();
        assert_eq!(r.url, "http://ha.lan:8123/api/webhook/hook-id-1");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["event"], "unhealthy");
        assert_eq!(
            header(&r, "x-1ld-signature-256"),
            None,
            "the id is not a signing key"
        );
    }

    #[test]
    fn custom_headers_cannot_replace_ours() {
        let a = alert();
        let mut t = target(TargetKind::Webhook, "http://h/");
        t.headers.insert("content-type".into(), "text/plain".into());
        let d = Delivery {
            id: 1,
            target_name: "h",
            target: &t,
            alert: &a,
            node: "n",
            secret: None,
        };
        let r = build(&d).unwrap();
        let n = r
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .count();
        assert_eq!(n, 1);
        assert_eq!(header(&r, "content-type"), Some("application/json"));
    }
}
