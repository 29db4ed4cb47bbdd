//! `1ldctl notify ls|test|set-secret|delete-secret`: the commands and their
//! human rendering (pure functions, like [`super::render`]).
//!
//! Invariants: `--json` prints the daemon's JSON unchanged; a secret is read
//! from stdin or a file, never from argv, and never printed.

use hyper::Method;
use serde_json::Value;

use super::cli::{NotifyCmd, SecretArg, SecretSource};
use super::error::{ClientError, EXIT_FAILED, EXIT_OK};
use super::http::{encode, query, Client};
use super::render::{short_time, table, Cell, Style, Tone};
use super::{spec, Output};
use crate::api::{NotificationsView, NotifyTestRequest, NotifyTestResult, SecretValue};
use crate::store::NotificationStatus;

/// Runs one `1ldctl notify` command; the exit status.
pub async fn run(c: &Client, out: &Output, cmd: NotifyCmd) -> Result<u8, ClientError> {
    match cmd {
        NotifyCmd::Ls {
            status,
            target,
            limit,
            before,
        } => {
            let q = query(&[
                ("status", status),
                ("target", target),
                ("limit", limit.map(|l| l.to_string())),
                ("before", before.map(|b| b.to_string())),
            ]);
            let path = format!("/v1/notifications{q}");
            let v: Value = c.get(&path).await?;
            if out.json {
                out.json_value(&v);
            } else {
                let view: NotificationsView = typed(&format!("GET {path}"), v)?;
                out.print(&render_view(&view, out.style()));
            }
            Ok(EXIT_OK)
        }
        NotifyCmd::Test { target } => {
            let v: Value = c
                .post("/v1/notifications/test", &NotifyTestRequest { target })
                .await?;
            let results: Vec<NotifyTestResult> = typed("POST /v1/notifications/test", v.clone())?;
            if out.json {
                out.json_value(&v);
            } else {
                out.print(&render_tests(&results, out.style()));
            }
            Ok(if results.iter().all(|r| r.delivered) {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        NotifyCmd::SetSecret { target, from_file } => {
            let source = match from_file {
                Some(f) => SecretSource::File(f),
                None => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) && !out.quiet {
                        eprintln!("Enter the secret of '{target}', then Ctrl-D:");
                    }
                    SecretSource::Stdin
                }
            };
            let mut values = spec::read_secrets(&[SecretArg {
                key: target.clone(),
                source,
            }])?;
            let value = values.remove(&target).unwrap_or_default();
            let body =
                serde_json::to_vec(&SecretValue { value }).map_err(|e| ClientError::Protocol {
                    what: "PUT secret".to_string(),
                    detail: e.to_string(),
                })?;
            let path = format!("/v1/notifications/targets/{}/secret", encode(&target));
            c.send(Method::PUT, &path, Some(body)).await?;
            out.say(&format!("secret of notification target '{target}' set"));
            Ok(EXIT_OK)
        }
        NotifyCmd::DeleteSecret { target } => {
            let path = format!("/v1/notifications/targets/{}/secret", encode(&target));
            c.send(Method::DELETE, &path, None).await?;
            out.say(&format!("secret of notification target '{target}' deleted"));
            Ok(EXIT_OK)
        }
    }
}

fn typed<T: serde::de::DeserializeOwned>(what: &str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

fn dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// One line of at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn status_tone(s: NotificationStatus) -> Tone {
    match s {
        NotificationStatus::Pending => Tone::Busy,
        NotificationStatus::Delivered => Tone::Good,
        NotificationStatus::Failed => Tone::Bad,
    }
}

/// `1ldctl notify ls`: the targets, then the notifications.
pub fn render_view(v: &NotificationsView, style: Style) -> String {
    let mut out = String::new();
    if v.targets.is_empty() {
        out.push_str(
            "no notification targets configured (add [notify.targets.NAME] to /etc/1ld/1ld.toml)\n",
        );
    } else {
        let rows: Vec<Vec<Cell>> = v
            .targets
            .iter()
            .map(|t| {
                vec![
                    Cell::new(t.name.clone()),
                    Cell::new(t.kind.clone()),
                    Cell::new(t.url.clone()),
                    Cell::new(if t.has_secret { "set" } else { "-" }),
                    Cell::toned(t.pending.to_string(), (t.pending > 0).then_some(Tone::Busy)),
                    Cell::toned(t.failed.to_string(), (t.failed > 0).then_some(Tone::Bad)),
                    Cell::new(
                        t.last_delivered_at
                            .as_deref()
                            .map_or("-".to_string(), short_time),
                    ),
                    Cell::toned(
                        dash(t.last_error.as_deref().map(|e| one_line(e, 60)).as_deref()),
                        t.last_error.as_ref().map(|_| Tone::Bad),
                    ),
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "TARGET",
                "KIND",
                "URL",
                "SECRET",
                "PENDING",
                "FAILED",
                "LAST DELIVERED",
                "LAST ERROR",
            ],
            &rows,
            style,
        ));
    }
    out.push('\n');
    if v.notifications.is_empty() {
        out.push_str("no notifications\n");
        return out;
    }
    let rows: Vec<Vec<Cell>> = v
        .notifications
        .iter()
        .map(|n| {
            vec![
                Cell::new(n.id.to_string()),
                Cell::new(n.target.clone()),
                Cell::new(n.event.clone()),
                Cell::new(dash(n.deployment.as_deref())),
                Cell::toned(n.status.as_str(), Some(status_tone(n.status))),
                Cell::new(n.attempts.to_string()),
                Cell::new(short_time(&n.created_at)),
                Cell::new(dash(
                    n.last_error.as_deref().map(|e| one_line(e, 60)).as_deref(),
                )),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "ID",
            "TARGET",
            "EVENT",
            "DEPLOYMENT",
            "STATUS",
            "ATTEMPTS",
            "CREATED",
            "ERROR",
        ],
        &rows,
        style,
    ));
    out
}

/// `1ldctl notify test`: one line per target.
pub fn render_tests(results: &[NotifyTestResult], style: Style) -> String {
    let rows: Vec<Vec<Cell>> = results
        .iter()
        .map(|r| {
            vec![
                Cell::new(r.target.clone()),
                if r.delivered {
                    Cell::toned("delivered", Some(Tone::Good))
                } else {
                    Cell::toned("failed", Some(Tone::Bad))
                },
                Cell::new(r.http_status.map_or("-".to_string(), |s| s.to_string())),
                Cell::new(format!("{} ms", r.duration_ms)),
                Cell::new(dash(
                    r.error.as_deref().map(|e| one_line(e, 100)).as_deref(),
                )),
            ]
        })
        .collect();
    table(&["TARGET", "RESULT", "HTTP", "TIME", "ERROR"], &rows, style)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::notifications::Severity;
    use crate::api::{Notification, NotifyTarget};

    #[test]
    fn tables() {
        let v = NotificationsView {
            targets: vec![NotifyTarget {
                name: "ha".into(),
                kind: "homeassistant".into(),
                url: "http://ha:8123/api/webhook/***".into(),
                has_secret: true,
                pending: 1,
                failed: 0,
                last_delivered_at: None,
                last_error: Some("HTTP 500:\nboom".into()),
            }],
            notifications: vec![Notification {
                id: 7,
                target: "ha".into(),
                event: "unhealthy".into(),
                severity: Severity::Critical,
                deployment: Some("wiki".into()),
                title: "wiki is unhealthy".into(),
                status: NotificationStatus::Pending,
                attempts: 2,
                next_attempt_at: Some("2026-01-01T00:00:10Z".into()),
                last_error: Some("HTTP 500:\nboom".into()),
                created_at: "2026-01-01T00:00:00.123Z".into(),
                delivered_at: None,
            }],
        };
        let text = render_view(&v, Style::PLAIN);
        assert_eq!(
            text,
            "TARGET  KIND           URL                             SECRET  PENDING  FAILED  LAST DELIVERED  LAST ERROR\n\
             ha      homeassistant  http://ha:8123/api/webhook/***  set     1        0       -               HTTP 500: boom\n\
             \n\
             ID  TARGET  EVENT      DEPLOYMENT  STATUS   ATTEMPTS  CREATED              ERROR\n\
             7   ha      unhealthy  wiki        pending  2         2026-01-01 00:00:00  HTTP 500: boom\n"
        );
        let t = render_tests(
            &[NotifyTestResult {
                target: "ha".into(),
                delivered: false,
                http_status: None,
                error: Some("cannot connect".into()),
                duration_ms: 3,
            }],
            Style::PLAIN,
        );
        assert!(
            t.contains("ha      failed  -     3 ms  cannot connect"),
            "{t}"
        );
        assert_eq!(one_line(&"x".repeat(10), 5), "xxxx…");
    }
}
