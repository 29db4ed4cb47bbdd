//! The service's journal inside a deployment's container, as served by
//! `GET /v1/deployments/{name}/logs`.
//!
//! What this module owns:
//! - [`journal_argv`]: the `journalctl` command run in the container (through
//!   `pct exec`, as argv; never a shell);
//! - [`parse_entry`]: one line of `journalctl -o json` → [`LogLine`], the
//!   message redacted.
//!
//! journald's JSON (systemd.journal-fields(7), "JSON format"): every field is
//! a string, except that a field which is not valid UTF-8 (or holds control
//! characters journald will not print) is an array of byte values, a field
//! that appears several times in one entry is an array of such values, and a
//! field over the data threshold is `null` (we pass `--all`, so it is not).
//! `__REALTIME_TIMESTAMP` is microseconds since the epoch, as a string.

use crate::api::LogLine;
use crate::pve::Line;
use crate::secrets::Redactor;
use crate::store::{now_ms, rfc3339};

/// Appended to a message that was longer than the daemon reads
/// ([`crate::pve::runner::MAX_LINE`]).
pub const CUT_MARK: &str = " …(cut)";

/// `journalctl` for `unit`: the newest `lines` entries as JSON, then (with
/// `follow`) new ones as they come. `--quiet` keeps "-- No entries --" and
/// the like off stdout.
pub fn journal_argv(unit: &str, lines: u32, follow: bool) -> Vec<String> {
    let mut argv = vec![
        "journalctl".to_string(),
        format!("--unit={unit}"),
        format!("--lines={lines}"),
        "--output=json".to_string(),
        "--output-fields=MESSAGE,PRIORITY".to_string(),
        "--all".to_string(),
        "--no-pager".to_string(),
        "--quiet".to_string(),
    ];
    if follow {
        argv.push("--follow".to_string());
    }
    argv
}

/// A journald field value as text: a string as is, a byte array decoded
/// (invalid UTF-8 replaced), several values joined by newlines, anything
/// else empty.
fn field_text(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Value::Array(items) => items.iter().map(field_text).collect::<Vec<_>>().join("\n"),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// `__REALTIME_TIMESTAMP` (µs since the epoch) as RFC 3339 UTC.
fn realtime(v: Option<&serde_json::Value>) -> Option<String> {
    use time::format_description::well_known::Rfc3339;
    let us: i128 = field_text(v?).trim().parse().ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(us.checked_mul(1000)?)
        .ok()?
        .format(&Rfc3339)
        .ok()
}

/// One line of `journalctl -o json` as a [`LogLine`], its message passed
/// through `redactor`. A line that is not a journal entry (cut, or not
/// JSON) is passed on as text with the current time, so nothing the
/// journal printed is silently lost.
pub fn parse_entry(line: &Line, redactor: &Redactor) -> LogLine {
    let parsed = if line.cut {
        None
    } else {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&line.bytes).ok()
    };
    let Some(entry) = parsed else {
        let mut text = String::from_utf8_lossy(&line.bytes).into_owned();
        if line.cut {
            text.push_str(CUT_MARK);
        }
        return LogLine {
            time: rfc3339(now_ms()),
            line: redactor.redact_string(&text),
            priority: None,
        };
    };
    let message = entry.get("MESSAGE").map(field_text).unwrap_or_default();
    let message = message.strip_suffix('\n').unwrap_or(&message);
    LogLine {
        time: realtime(entry.get("__REALTIME_TIMESTAMP")).unwrap_or_else(|| rfc3339(now_ms())),
        line: redactor.redact_string(message),
        priority: entry
            .get("PRIORITY")
            .and_then(|p| field_text(p).trim().parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Line {
        Line {
            bytes: s.as_bytes().to_vec(),
            cut: false,
        }
    }

    #[test]
    fn argv_is_plain_and_follow_is_optional() {
        let a = journal_argv("netbox-agent.service", 5, false);
        assert_eq!(a[0], "journalctl");
        assert!(a.contains(&"--unit=netbox-agent.service".to_string()));
        assert!(a.contains(&"--lines=5".to_string()));
        assert!(a.contains(&"--output=json".to_string()));
        assert!(!a.contains(&"--follow".to_string()));
        assert!(journal_argv("x.service", 0, true).contains(&"--follow".to_string()));
    }

    #[test]
    fn string_message_time_and_priority() {
        let r = Redactor::new();
        let l = parse_entry(
            &line(
                r#"{"__CURSOR":"s=1","__REALTIME_TIMESTAMP":"1764117605123456","__MONOTONIC_TIMESTAMP":"1","_BOOT_ID":"b","MESSAGE":"cycle done: 3 devices","PRIORITY":"6"}"#,
            ),
            &r,
        );
        assert_eq!(l.time, "2025-11-26T00:40:05.123456Z");
        assert_eq!(l.line, "cycle done: 3 devices");
        assert_eq!(l.priority, Some(6));
    }

    #[test]
    fn byte_array_multiple_values_null_and_missing() {
        let r = Redactor::new();
        // "héllo\x1b[0m" with invalid byte 0xff at the end.
        let l = parse_entry(
            &line(r#"{"__REALTIME_TIMESTAMP":"0","MESSAGE":[104,195,169,108,108,111,27,255]}"#),
            &r,
        );
        assert_eq!(l.line, "h\u{e9}llo\u{1b}\u{fffd}");
        assert_eq!(l.time, "1970-01-01T00:00:00Z");
        let l = parse_entry(
            &line(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":["a",[98]]}"#),
            &r,
        );
        assert_eq!(l.line, "a\nb");
        let l = parse_entry(&line(r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#), &r);
        assert_eq!(l.line, "");
        let l = parse_entry(&line(r#"{"__REALTIME_TIMESTAMP":"x"}"#), &r);
        assert_eq!((l.line.as_str(), l.priority), ("", None));
        assert!(l.time.ends_with('Z'), "{}", l.time);
    }

    #[test]
    fn secrets_are_redacted_and_non_json_passes_as_text() {
        let r = Redactor::new();
        r.add("s3cr3t-token-value");
        let l = parse_entry(
            &line(
                r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"auth with s3cr3t-token-value failed"}"#,
            ),
            &r,
        );
        assert_eq!(l.line, "auth with *** failed");
        let l = parse_entry(&line("Failed to open journal: s3cr3t-token-value"), &r);
        assert_eq!(l.line, "Failed to open journal: ***");
        let l = parse_entry(
            &Line {
                bytes: br#"{"MESSAGE":"aaaa"#.to_vec(),
                cut: true,
            },
            &r,
        );
        assert!(l.line.ends_with(CUT_MARK), "{}", l.line);
    }
}
