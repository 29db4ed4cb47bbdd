//! Human output: aligned tables, key/value blocks and colour for states.
//!
//! Invariants: pure functions from API types to text (snapshot-tested
//! against `tests/fixtures/cli/`); colour only when [`Style::color`] says
//! so, and then only around a cell's text, never in its padding, so columns
//! line up either way. Nothing here writes to a terminal.

use owo_colors::OwoColorize;

use crate::api::{Event, EventType, HostInfo, OpStatus, Operation, RootInfo};

/// How to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
}

impl Style {
    /// No colour (pipes, `--no-color`, `NO_COLOR`, tests).
    pub const PLAIN: Style = Style { color: false };
}

/// A colour for a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// Good: succeeded, running, healthy.
    Good,
    /// Bad: failed, unhealthy, error.
    Bad,
    /// Attention: cancelled, interrupted, stopped, degraded, unknown.
    Warn,
    /// In progress: running operations, starting.
    Busy,
    /// Unimportant: queued, dashes.
    Dim,
}

/// Paints `text` in `tone` when the style has colour.
pub fn paint(text: &str, tone: Option<Tone>, style: Style) -> String {
    match (style.color, tone) {
        (true, Some(Tone::Good)) => text.green().to_string(),
        (true, Some(Tone::Bad)) => text.red().bold().to_string(),
        (true, Some(Tone::Warn)) => text.yellow().to_string(),
        (true, Some(Tone::Busy)) => text.cyan().to_string(),
        (true, Some(Tone::Dim)) => text.dimmed().to_string(),
        _ => text.to_string(),
    }
}

/// Bold (headers) when the style has colour.
pub fn bold(text: &str, style: Style) -> String {
    if style.color {
        text.bold().to_string()
    } else {
        text.to_string()
    }
}

/// The tone of an operation state.
pub fn op_tone(s: OpStatus) -> Tone {
    match s {
        OpStatus::Succeeded => Tone::Good,
        OpStatus::Failed => Tone::Bad,
        OpStatus::Cancelled | OpStatus::Interrupted => Tone::Warn,
        OpStatus::Running => Tone::Busy,
        OpStatus::Queued => Tone::Dim,
    }
}

/// The tone of a state or health word (deployments, containers, checks).
pub fn word_tone(word: &str) -> Option<Tone> {
    match word {
        "running" | "healthy" | "ok" | "succeeded" | "active" | "yes" => Some(Tone::Good),
        "failed" | "unhealthy" | "error" | "broken" | "missing" | "no" => Some(Tone::Bad),
        "stopped" | "degraded" | "unknown" | "drifted" | "inactive" | "disabled" | "cancelled"
        | "interrupted" | "warn" => Some(Tone::Warn),
        "starting" | "stopping" | "deploying" | "queued" | "pending" | "checking" => {
            Some(Tone::Busy)
        }
        "-" => Some(Tone::Dim),
        _ => None,
    }
}

/// The wire name of an operation state.
pub fn status_name(s: OpStatus) -> &'static str {
    match s {
        OpStatus::Queued => "queued",
        OpStatus::Running => "running",
        OpStatus::Succeeded => "succeeded",
        OpStatus::Failed => "failed",
        OpStatus::Cancelled => "cancelled",
        OpStatus::Interrupted => "interrupted",
    }
}

/// One table cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Its text.
    pub text: String,
    /// Its colour.
    pub tone: Option<Tone>,
}

impl Cell {
    /// A plain cell.
    pub fn new(text: impl Into<String>) -> Self {
        Cell {
            text: text.into(),
            tone: None,
        }
    }

    /// A coloured cell.
    pub fn toned(text: impl Into<String>, tone: Option<Tone>) -> Self {
        Cell {
            text: text.into(),
            tone,
        }
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::new(s)
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::new(s)
    }
}

/// An aligned table: headers, then rows; two spaces between columns; the
/// last column is not padded (no trailing blanks).
pub fn table(headers: &[&str], rows: &[Vec<Cell>], style: Style) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(c.text.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(String, usize)>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        for (i, (text, visible)) in cells.into_iter().enumerate() {
            out.push_str(&text);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - visible + 2));
            }
        }
        out.push('\n');
    };
    line(
        headers
            .iter()
            .map(|h| (bold(h, style), h.chars().count()))
            .collect(),
        &mut out,
    );
    for row in rows {
        line(
            row.iter()
                .take(n)
                .map(|c| (paint(&c.text, c.tone, style), c.text.chars().count()))
                .collect(),
            &mut out,
        );
    }
    out
}

/// `key: value` lines with the values aligned.
pub fn fields(pairs: &[(&str, Cell)], style: Style) -> String {
    let w = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "{}{}  {}\n",
            bold(&format!("{k}:"), style),
            " ".repeat(w - k.chars().count()),
            paint(&v.text, v.tone, style)
        ));
    }
    out
}

/// An RFC 3339 time shortened for tables: `2026-01-02 03:04:05`.
pub fn short_time(t: &str) -> String {
    let t = t.trim_end_matches('Z');
    let t = t.split('.').next().unwrap_or(t);
    t.replacen('T', " ", 1)
}

/// Bytes in binary units with one decimal: `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `[2/5] download 42%`, or `-` before the first step.
pub fn progress(op: &Operation) -> String {
    let p = &op.progress;
    if p.steps == 0 {
        return "-".to_string();
    }
    let mut s = format!("[{}/{}] {}", p.step, p.steps, p.name);
    if let Some(pc) = p.percent {
        s.push_str(&format!(" {pc:.0}%"));
    }
    s
}

fn or_dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// `1ldctl ops`.
pub fn ops_table(ops: &[Operation], style: Style) -> String {
    if ops.is_empty() {
        return "no operations\n".to_string();
    }
    let rows: Vec<Vec<Cell>> = ops
        .iter()
        .map(|o| {
            let progress = if o.status.is_final() {
                "-".to_string()
            } else {
                progress(o)
            };
            vec![
                Cell::new(o.id.clone()),
                Cell::new(o.kind.clone()),
                Cell::new(or_dash(o.target.as_deref())),
                Cell::toned(status_name(o.status), Some(op_tone(o.status))),
                Cell::new(progress),
                Cell::new(short_time(&o.created_at)),
                Cell::new(o.requestor.user.clone()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "KIND", "TARGET", "STATUS", "PROGRESS", "CREATED", "BY",
        ],
        &rows,
        style,
    )
}

/// `1ldctl op ID`.
pub fn op_detail(op: &Operation, style: Style) -> String {
    let mut pairs: Vec<(&str, Cell)> = vec![
        ("id", Cell::new(op.id.clone())),
        ("kind", Cell::new(op.kind.clone())),
        ("target", Cell::new(or_dash(op.target.as_deref()))),
        (
            "status",
            Cell::toned(status_name(op.status), Some(op_tone(op.status))),
        ),
        ("progress", Cell::new(progress(op))),
        (
            "requested by",
            Cell::new(format!(
                "{} (uid {}, pid {})",
                op.requestor.user, op.requestor.uid, op.requestor.pid
            )),
        ),
        ("created", Cell::new(short_time(&op.created_at))),
        (
            "started",
            Cell::new(or_dash(op.started_at.as_deref().map(short_time).as_deref())),
        ),
        (
            "finished",
            Cell::new(or_dash(
                op.finished_at.as_deref().map(short_time).as_deref(),
            )),
        ),
        (
            "cancellable",
            Cell::new(if op.cancellable { "yes" } else { "no" }),
        ),
    ];
    if let Some(e) = &op.error {
        pairs.push((
            "error",
            Cell::toned(format!("{} ({})", e.message, e.code), Some(Tone::Bad)),
        ));
    }
    fields(&pairs, style)
}

/// `1ldctl host`.
pub fn host(h: &HostInfo, style: Style) -> String {
    let mut out = fields(
        &[
            ("node", Cell::new(h.pve.node.clone())),
            (
                "proxmox ve",
                Cell::new(format!("{} (major {})", h.pve.version, h.pve.major)),
            ),
            ("kernel", Cell::new(or_dash(h.pve.kernel.as_deref()))),
            (
                "bridges",
                Cell::new(if h.bridges.is_empty() {
                    "-".to_string()
                } else {
                    h.bridges.join(", ")
                }),
            ),
        ],
        style,
    );
    out.push('\n');
    let rows: Vec<Vec<Cell>> = h
        .storages
        .iter()
        .map(|s| {
            vec![
                Cell::new(s.name.clone()),
                Cell::new(s.storage_type.clone()),
                Cell::toned(s.state.clone(), word_tone(&s.state)),
                Cell::new(if s.content.is_empty() {
                    "-".to_string()
                } else {
                    s.content.join(",")
                }),
                Cell::new(bytes(s.avail_bytes)),
                Cell::new(bytes(s.total_bytes)),
            ]
        })
        .collect();
    out.push_str(&table(
        &["STORAGE", "TYPE", "STATE", "CONTENT", "FREE", "TOTAL"],
        &rows,
        style,
    ));
    out.push('\n');
    let mut rows: Vec<Vec<Cell>> = h
        .templates
        .downloaded
        .iter()
        .map(|t| {
            vec![
                Cell::new(t.volid.clone()),
                Cell::toned("downloaded", Some(Tone::Good)),
                Cell::new(t.size_bytes.map(bytes).unwrap_or_else(|| "-".into())),
            ]
        })
        .collect();
    for t in &h.templates.available {
        if h.templates
            .downloaded
            .iter()
            .any(|d| d.volid.ends_with(&format!("/{}", t.name)))
        {
            continue;
        }
        rows.push(vec![
            Cell::new(t.name.clone()),
            Cell::toned("available", Some(Tone::Dim)),
            Cell::new("-"),
        ]);
    }
    if rows.is_empty() {
        out.push_str("no templates\n");
    } else {
        out.push_str(&table(&["TEMPLATE", "WHERE", "SIZE"], &rows, style));
    }
    for w in &h.warnings {
        out.push_str(&format!(
            "{} {w}\n",
            paint("warning:", Some(Tone::Warn), style)
        ));
    }
    out
}

/// One event as a readable line.
pub fn event_line(e: &Event, style: Style) -> String {
    let time = short_time(&e.time);
    let p = &e.payload;
    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let (kind, text) = match e.kind {
        EventType::Operation => {
            let status = s("status");
            let tone = word_tone(&status);
            let prog = serde_json::from_value::<Operation>(p.clone())
                .map(|o| {
                    if o.status.is_final() {
                        o.error
                            .map(|e| format!(": {}", e.message))
                            .unwrap_or_default()
                    } else {
                        format!(" {}", progress(&o))
                    }
                })
                .unwrap_or_default();
            let target = p
                .get("target")
                .and_then(|v| v.as_str())
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            (
                "operation",
                format!(
                    "{} {}{target} {}{prog}",
                    s("id"),
                    s("kind"),
                    paint(&status, tone, style)
                ),
            )
        }
        EventType::Lifecycle => {
            let action = s("action");
            let text = if action == "api_request" {
                let user = p
                    .pointer("/requestor/user")
                    .and_then(|v| v.as_str())
                    .unwrap_or("?");
                let status = p.get("status").and_then(|v| v.as_u64()).unwrap_or(0);
                let tone = if status < 400 { Tone::Good } else { Tone::Bad };
                format!(
                    "{user} {} {} -> {}",
                    s("method"),
                    s("path"),
                    paint(&status.to_string(), Some(tone), style)
                )
            } else {
                let rest: Vec<String> = p
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| k.as_str() != "action")
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect()
                    })
                    .unwrap_or_default();
                format!("{action} {}", rest.join(" "))
                    .trim_end()
                    .to_string()
            };
            ("lifecycle", text)
        }
        EventType::Health => ("health", compact(p)),
        EventType::Backup => ("backup", compact(p)),
        EventType::Lagged => (
            "lagged",
            "this client fell behind; the stream ended (run again to resume)".to_string(),
        ),
    };
    format!("{time}  {:<9}  {text}\n", kind)
}

fn compact(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) => m
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => format!("{k}={s}"),
                None => format!("{k}={v}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        None => v.to_string(),
    }
}

/// `1ldctl version`.
pub fn version(client: &str, daemon: Option<&RootInfo>, style: Style) -> String {
    let mut pairs = vec![("client", Cell::new(client.to_string()))];
    match daemon {
        Some(d) => {
            let tone = (d.daemon_version != client).then_some(Tone::Warn);
            pairs.push(("daemon", Cell::toned(d.daemon_version.clone(), tone)));
            pairs.push(("api", Cell::new(d.api_versions.join(", "))));
            pairs.push(("extensions", Cell::new(d.api_extensions.join(", "))));
        }
        None => pairs.push(("daemon", Cell::toned("unreachable", Some(Tone::Bad)))),
    }
    fields(&pairs, style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_never_shifts_columns() {
        let rows = vec![vec![Cell::new("a"), Cell::toned("failed", Some(Tone::Bad))]];
        let plain = table(&["X", "STATUS"], &rows, Style::PLAIN);
        let coloured = table(&["X", "STATUS"], &rows, Style { color: true });
        assert_eq!(plain, "X  STATUS\na  failed\n");
        assert!(coloured.contains('\u{1b}'));
        let stripped: String = strip_ansi(&coloured);
        assert_eq!(stripped, plain);
    }

    fn strip_ansi(s: &str) -> String {
        let mut out = String::new();
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    }

    #[test]
    fn sizes_and_times() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536 * 1024 * 1024), "1.5 GiB");
        assert_eq!(
            short_time("2026-01-02T03:04:05.123Z"),
            "2026-01-02 03:04:05"
        );
    }
}

/// Renders the deployment-related views (`ls`, `status`, `apps`, plans, diffs).
pub mod deployments {
    use super::{bold, fields, or_dash, paint, short_time, table, word_tone, Cell, Style, Tone};
    use crate::api::{
        AppCatalog, AppInfo, ApplyPreview, ContainerState, Deployment, HealthStatus, IntendedState,
        Operation, Plan,
    };

    /// The wire name of a container state.
    pub fn state_name(s: ContainerState) -> &'static str {
        match s {
            ContainerState::Running => "running",
            ContainerState::Stopped => "stopped",
            ContainerState::Missing => "missing",
            ContainerState::Unknown => "unknown",
        }
    }

    /// The wire name of a health status.
    pub fn health_name(h: HealthStatus) -> &'static str {
        match h {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
            HealthStatus::Unknown => "unknown",
        }
    }

    fn state_cell(d: &Deployment) -> Cell {
        let s = state_name(d.state);
        // Stopped on purpose is not a warning.
        let tone = match (d.state, d.intended_state) {
            (ContainerState::Stopped, IntendedState::Stopped) => Some(Tone::Dim),
            (ContainerState::Running, IntendedState::Running) => Some(Tone::Good),
            (ContainerState::Running, IntendedState::Stopped) => Some(Tone::Warn),
            (ContainerState::Stopped, IntendedState::Running) => Some(Tone::Bad),
            _ => word_tone(s),
        };
        Cell::toned(s, tone)
    }

    /// `1ldctl ls`.
    pub fn list(ds: &[Deployment], style: Style) -> String {
        if ds.is_empty() {
            return "no deployments; deploy one with `1ldctl deploy APP` (see `1ldctl apps`)\n"
                .to_string();
        }
        let rows: Vec<Vec<Cell>> = ds
            .iter()
            .map(|d| {
                let health = match &d.supervision {
                    Some(s) => s.state.as_str(),
                    None => health_name(d.health.status),
                };
                let mut name = d.name.clone();
                if !d.drift.is_empty() {
                    name.push('*');
                }
                vec![
                    Cell::new(name),
                    Cell::new(d.app.clone()),
                    Cell::new(d.app_version.clone()),
                    Cell::new(d.vmid.to_string()),
                    state_cell(d),
                    Cell::toned(health, word_tone(health)),
                    Cell::new(or_dash(d.ip.as_deref())),
                    Cell::new(or_dash(d.last_backup.as_deref().map(short_time).as_deref())),
                ]
            })
            .collect();
        let mut out = table(
            &[
                "NAME",
                "APP",
                "VERSION",
                "VMID",
                "STATE",
                "HEALTH",
                "IP",
                "LAST BACKUP",
            ],
            &rows,
            style,
        );
        if ds.iter().any(|d| !d.drift.is_empty()) {
            out.push_str("* drifted from its recorded spec: see `1ldctl status NAME`\n");
        }
        out
    }

    fn value_text(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(","),
            other => other.to_string(),
        }
    }

    /// `1ldctl backups [NAME]`.
    pub fn backups(list: &[crate::api::BackupInfo], style: Style) -> String {
        if list.is_empty() {
            return "no backups; make one with `1ldctl backup NAME`\n".to_string();
        }
        let rows: Vec<Vec<Cell>> = list
            .iter()
            .map(|b| {
                let verified = match b.verified {
                    crate::api::Verified::Verified => "verified",
                    crate::api::Verified::Failed => "failed",
                    crate::api::Verified::Unverified => "-",
                };
                let mut flags = Vec::new();
                if b.protected {
                    flags.push("protected");
                }
                if !b.present {
                    flags.push("gone from storage");
                }
                if !b.recorded {
                    flags.push("not made by 1ld");
                }
                vec![
                    Cell::new(short_time(&b.time)),
                    Cell::new(or_dash(b.deployment.as_deref())),
                    Cell::new(b.vmid.to_string()),
                    Cell::new(b.size.map(super::bytes).unwrap_or_else(|| "-".into())),
                    Cell::toned(verified, word_tone(verified)),
                    Cell::new(if flags.is_empty() {
                        "-".to_string()
                    } else {
                        flags.join(", ")
                    }),
                    Cell::new(b.volid.clone()),
                ]
            })
            .collect();
        table(
            &[
                "TIME",
                "DEPLOYMENT",
                "VMID",
                "SIZE",
                "VERIFIED",
                "NOTE",
                "VOLID",
            ],
            &rows,
            style,
        )
    }

    /// `1ldctl upgrade --dry-run`: current → target, safety point, steps.
    pub fn upgrade_plans(list: &[crate::api::UpgradePreview]) -> String {
        if list.is_empty() {
            return "no deployments\n".to_string();
        }
        let mut out = String::new();
        for p in list {
            if p.up_to_date {
                out.push_str(&format!(
                    "{}: {} {} (up to date)\n",
                    p.name, p.app, p.from_version
                ));
                continue;
            }
            let safety = match p.safety_point {
                crate::api::SafetyPoint::Snapshot => "snapshot (pct snapshot)",
                crate::api::SafetyPoint::Backup => "backup (vzdump)",
                crate::api::SafetyPoint::None => "none: a failure cannot be rolled back",
            };
            out.push_str(&format!(
                "{}: {} {} → {}\n  safety point: {safety}\n  rollback on failure: {}\n",
                p.name,
                p.app,
                p.from_version,
                p.to_version,
                if p.rollback_on_failure { "yes" } else { "no" }
            ));
            for (i, s) in p.steps.iter().enumerate() {
                out.push_str(&format!("  {}. {s}\n", i + 1));
            }
        }
        out
    }

    /// `1ldctl health NAME`.
    pub fn health(h: &crate::api::DeploymentHealth, style: Style) -> String {
        let state = h.state.as_str();
        let mut pairs = vec![
            ("deployment", Cell::new(h.deployment.clone())),
            ("state", Cell::toned(state, word_tone(state))),
            ("since", Cell::new(short_time(&h.since))),
            ("detail", Cell::new(h.detail.clone())),
            ("probe", Cell::new(h.probe.clone())),
            (
                "uptime",
                Cell::new(match h.uptime_percent {
                    Some(p) => format!("{p:.2}% since {}", short_time(&h.window_since)),
                    None => format!("no results since {}", short_time(&h.window_since)),
                }),
            ),
            (
                "remediations",
                Cell::new(format!(
                    "{} in the last hour (limit {}){}{}",
                    h.ladder.last_hour,
                    h.ladder.max_per_hour,
                    h.ladder
                        .next_allowed_at
                        .as_deref()
                        .map(|t| format!("; next not before {}", short_time(t)))
                        .unwrap_or_default(),
                    h.ladder
                        .waiting
                        .as_deref()
                        .map(|w| format!("; waiting: {w}"))
                        .unwrap_or_default()
                )),
            ),
        ];
        if let Some(i) = &h.incident {
            let acts: Vec<String> = i
                .actions
                .iter()
                .map(|a| format!("{} at {}", a.action, short_time(&a.at)))
                .collect();
            pairs.push((
                "incident",
                Cell::toned(
                    format!(
                        "since {}: {}{}{}",
                        short_time(&i.started_at),
                        i.reason,
                        if acts.is_empty() {
                            String::new()
                        } else {
                            format!("; tried {}", acts.join(", "))
                        },
                        if i.gave_up { "; gave up" } else { "" }
                    ),
                    Some(Tone::Bad),
                ),
            ));
        }
        let mut out = fields(&pairs, style);
        if !h.results.is_empty() {
            out.push('\n');
            let shown = &h.results[h.results.len().saturating_sub(15)..];
            let rows: Vec<Vec<Cell>> = shown
                .iter()
                .map(|r| {
                    let res = r.result.as_str();
                    vec![
                        Cell::new(short_time(&r.from)),
                        Cell::new(short_time(&r.to)),
                        Cell::new(r.count.to_string()),
                        Cell::toned(res, word_tone(res)),
                        Cell::new(r.state.as_str()),
                        Cell::new(format!("{:.1}", r.latency_ms_avg)),
                        Cell::new(r.detail.chars().take(80).collect::<String>()),
                    ]
                })
                .collect();
            out.push_str(&table(
                &["FROM", "TO", "N", "RESULT", "STATE", "MS", "DETAIL"],
                &rows,
                style,
            ));
            if h.results.len() > shown.len() {
                out.push_str(&format!(
                    "({} earlier runs; `1ldctl health {} --json` has them all)\n",
                    h.results.len() - shown.len(),
                    h.deployment
                ));
            }
        }
        out
    }

    /// `1ldctl status NAME`: the deployment and its recent operations.
    pub fn status(d: &Deployment, recent: &[Operation], style: Style) -> String {
        let r = &d.resources;
        let health = health_name(d.health.status);
        let health_text = match &d.health.detail {
            Some(detail) => format!("{health} ({detail})"),
            None => health.to_string(),
        };
        let intended = match d.intended_state {
            IntendedState::Running => "running",
            IntendedState::Stopped => "stopped",
        };
        let mut out = fields(
            &[
                ("name", Cell::new(d.name.clone())),
                ("app", Cell::new(format!("{} {}", d.app, d.app_version))),
                ("node", Cell::new(format!("{} (CT {})", d.node, d.vmid))),
                ("state", state_cell(d)),
                ("intended", Cell::new(intended)),
                ("health", Cell::toned(health_text, word_tone(health))),
                (
                    "supervised",
                    match &d.supervision {
                        Some(sv) => Cell::toned(
                            format!(
                                "{} since {} ({}); `1ldctl health {}` for history",
                                sv.state.as_str(),
                                short_time(&sv.since),
                                sv.detail,
                                d.name
                            ),
                            word_tone(sv.state.as_str()),
                        ),
                        None => Cell::toned("not yet", Some(Tone::Dim)),
                    },
                ),
                (
                    "checked",
                    Cell::new(or_dash(
                        d.health.checked_at.as_deref().map(short_time).as_deref(),
                    )),
                ),
                ("ip", Cell::new(or_dash(d.ip.as_deref()))),
                (
                    "resources",
                    Cell::new(format!(
                        "{} cores, {} MiB memory, {} MiB swap, {} GiB disk on {}",
                        r.cores, r.memory, r.swap, r.disk, r.storage
                    )),
                ),
                (
                    "network",
                    Cell::new(format!(
                        "{} ip={}{} ip6={}",
                        r.bridge,
                        r.ip,
                        r.gw.as_ref()
                            .map(|g| format!(" gw={g}"))
                            .unwrap_or_default(),
                        r.ip6
                    )),
                ),
                ("onboot", Cell::new(if r.onboot { "yes" } else { "no" })),
                ("adopted", Cell::new(if d.adopted { "yes" } else { "no" })),
                (
                    "last backup",
                    Cell::new(or_dash(d.last_backup.as_deref().map(short_time).as_deref())),
                ),
                ("created", Cell::new(short_time(&d.created_at))),
                ("updated", Cell::new(short_time(&d.updated_at))),
                ("config hash", Cell::new(d.config_hash.clone())),
            ],
            style,
        );
        if !d.settings.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = d
                .settings
                .iter()
                .map(|(k, v)| vec![Cell::new(k.clone()), Cell::new(value_text(v))])
                .collect();
            out.push_str(&table(&["SETTING", "VALUE"], &rows, style));
        }
        out.push('\n');
        if d.drift.is_empty() {
            out.push_str(&format!(
                "drift: {}\n",
                paint("none", Some(Tone::Good), style)
            ));
        } else {
            let rows: Vec<Vec<Cell>> = d
                .drift
                .iter()
                .map(|x| {
                    vec![
                        Cell::new(x.field.clone()),
                        Cell::new(x.expected.clone()),
                        Cell::toned(x.actual.clone(), Some(Tone::Warn)),
                    ]
                })
                .collect();
            out.push_str(&table(&["DRIFT", "RECORDED", "ACTUAL"], &rows, style));
        }
        if !recent.is_empty() {
            out.push('\n');
            out.push_str(&bold("recent operations:", style));
            out.push('\n');
            out.push_str(&super::ops_table(recent, style));
        }
        out
    }

    /// `1ldctl apps`.
    pub fn catalog(c: &AppCatalog, style: Style) -> String {
        let rows: Vec<Vec<Cell>> = c
            .apps
            .iter()
            .map(|a| {
                vec![
                    Cell::new(a.name.clone()),
                    Cell::new(a.version.clone()),
                    Cell::new(a.source.clone()),
                    Cell::new(a.description.clone()),
                ]
            })
            .collect();
        let mut out = if rows.is_empty() {
            "no apps\n".to_string()
        } else {
            table(&["APP", "VERSION", "SOURCE", "DESCRIPTION"], &rows, style)
        };
        for e in &c.errors {
            let at = match (e.line, &e.key) {
                (Some(l), Some(k)) => format!(":{l} ({k})"),
                (Some(l), None) => format!(":{l}"),
                (None, Some(k)) => format!(" ({k})"),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "{} {}{at}: {}\n",
                paint("error:", Some(Tone::Bad), style),
                e.file,
                e.message
            ));
        }
        out
    }

    /// `1ldctl apps show APP`.
    pub fn app(a: &AppInfo, style: Style) -> String {
        let c = &a.container;
        let ports = a
            .ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = fields(
            &[
                ("app", Cell::new(format!("{} {}", a.name, a.version))),
                ("description", Cell::new(a.description.clone())),
                ("source", Cell::new(a.source.clone())),
                (
                    "container",
                    Cell::new(format!(
                        "{} cores, {} MiB memory, {} MiB swap, {} GiB disk, template {}",
                        c.cores, c.memory, c.swap, c.disk, c.template
                    )),
                ),
                ("vmids", Cell::new(format!("{}-{}", c.vmid_min, c.vmid_max))),
                (
                    "network",
                    Cell::new(format!("{} ip={} ip6={}", c.bridge, c.ip, c.ip6)),
                ),
                ("user", Cell::new(a.user.clone())),
                ("ports", Cell::new(or_dash(Some(ports.as_str())))),
                ("health", Cell::new(a.health.clone())),
            ],
            style,
        );
        out.push('\n');
        let rows: Vec<Vec<Cell>> = a
            .settings
            .iter()
            .map(|s| {
                let kind = serde_json::to_value(s.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let kind = if s.secret {
                    format!("{kind}, secret")
                } else {
                    kind
                };
                let default = if s.required {
                    Cell::toned("(required)", Some(Tone::Warn))
                } else {
                    Cell::new(or_dash(s.default.as_ref().map(value_text).as_deref()))
                };
                vec![
                    Cell::new(s.key.clone()),
                    Cell::new(kind),
                    default,
                    Cell::new(s.description.clone()),
                ]
            })
            .collect();
        if rows.is_empty() {
            out.push_str("no settings\n");
        } else {
            out.push_str(&table(
                &["SETTING", "KIND", "DEFAULT", "DESCRIPTION"],
                &rows,
                style,
            ));
        }
        out
    }

    /// A deploy plan (`deploy --dry-run`).
    pub fn plan(p: &Plan, style: Style) -> String {
        let mut out = fields(
            &[
                ("deploy", Cell::new(format!("{} {}", p.app, p.app_version))),
                ("name", Cell::new(p.name.clone())),
                ("node", Cell::new(format!("{} (CT {})", p.node, p.vmid))),
                (
                    "template",
                    Cell::new(if p.template_download {
                        format!("{} (will be downloaded)", p.template)
                    } else {
                        p.template.clone()
                    }),
                ),
                ("config hash", Cell::new(p.config_hash.clone())),
            ],
            style,
        );
        out.push_str(&format!("\n{}\n", bold("pct create:", style)));
        out.push_str(&format!("  {}\n", shell_words(&p.pct_create)));
        if !p.settings.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = p
                .settings
                .iter()
                .map(|(k, v)| vec![Cell::new(k.clone()), Cell::new(value_text(v))])
                .collect();
            out.push_str(&table(&["SETTING", "VALUE"], &rows, style));
        }
        if !p.files.is_empty() {
            out.push('\n');
            let rows: Vec<Vec<Cell>> = p
                .files
                .iter()
                .map(|f| {
                    vec![
                        Cell::new(f.path.clone()),
                        Cell::new(f.mode.clone()),
                        Cell::new(f.owner.clone()),
                        Cell::new(if f.secret {
                            format!("{} (secret)", f.source)
                        } else {
                            f.source.clone()
                        }),
                    ]
                })
                .collect();
            out.push_str(&table(&["FILE", "MODE", "OWNER", "FROM"], &rows, style));
        }
        out.push_str(&format!("\n{}\n", bold("steps:", style)));
        for (i, s) in p.steps.iter().enumerate() {
            out.push_str(&format!("  {}. {s}\n", i + 1));
        }
        for w in &p.warnings {
            out.push_str(&format!(
                "{} {w}\n",
                paint("warning:", Some(Tone::Warn), style)
            ));
        }
        out.push_str("\ndry run: nothing was changed\n");
        out
    }

    /// What `apply` would change.
    pub fn preview(p: &ApplyPreview, style: Style) -> String {
        if let Some(plan) = &p.create {
            return format!(
                "{} {} (new deployment)\n{}",
                paint("+", Some(Tone::Good), style),
                p.name,
                plan_summary(plan)
            );
        }
        if p.changes.is_empty() {
            return format!("= {}: up to date\n", p.name);
        }
        let mut out = format!("{} {}\n", paint("~", Some(Tone::Warn), style), p.name);
        for c in &p.changes {
            out.push_str(&format!(
                "    {}: {} -> {}\n",
                c.field,
                paint(&c.from, Some(Tone::Bad), style),
                paint(&c.to, Some(Tone::Good), style)
            ));
        }
        if !p.steps.is_empty() {
            out.push_str(&format!("    steps: {}\n", p.steps.join(", ")));
        }
        out
    }

    fn plan_summary(p: &Plan) -> String {
        format!(
            "    app: {} {}\n    vmid: {}\n    template: {}\n    pct create: {}\n",
            p.app,
            p.app_version,
            p.vmid,
            p.template,
            shell_words(&p.pct_create)
        )
    }

    /// An argv as a shell would need it typed.
    pub fn shell_words(argv: &[String]) -> String {
        argv.iter()
            .map(|a| {
                if !a.is_empty()
                    && a.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+%".contains(c))
                {
                    a.clone()
                } else {
                    format!("'{}'", a.replace('\'', "'\\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}
