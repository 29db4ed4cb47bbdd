//! `pct status <vmid> [--verbose]` (and the same fields from
//! `/nodes/<node>/lxc/<vmid>/status/current`, see [`super::pvesh`]).
//!
//! `key: value` lines, keys sorted. PVE 9 adds six `pressure*` keys for running
//! CTs; unknown keys are ignored. Without `--verbose` only `status:` is printed.

use std::collections::BTreeMap;

use super::ParseError;
use crate::pve::types::{normalize_tags, CtState};

/// PSI `avg10` values (PVE 9, running CTs only).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pressure {
    /// `pressurecpusome`.
    pub cpu_some: Option<f64>,
    /// `pressurecpufull`.
    pub cpu_full: Option<f64>,
    /// `pressureiosome`.
    pub io_some: Option<f64>,
    /// `pressureiofull`.
    pub io_full: Option<f64>,
    /// `pressurememorysome`.
    pub memory_some: Option<f64>,
    /// `pressurememoryfull`.
    pub memory_full: Option<f64>,
}

/// A container's status. Sizes in bytes, `uptime` in seconds; fields the
/// output did not carry are `None`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CtStatus {
    /// Run state (`status:`); `None` if the key was missing.
    pub status: Option<CtState>,
    /// Container id.
    pub vmid: Option<u32>,
    /// Hostname.
    pub name: Option<String>,
    /// CPU usage fraction (only in the API form; `pct status` skips it).
    pub cpu: Option<f64>,
    /// CPU limit.
    pub cpus: Option<f64>,
    /// Memory in use.
    pub mem: Option<u64>,
    /// Memory limit.
    pub maxmem: Option<u64>,
    /// Swap in use.
    pub swap: Option<u64>,
    /// Swap limit.
    pub maxswap: Option<u64>,
    /// Root disk used.
    pub disk: Option<u64>,
    /// Root disk size.
    pub maxdisk: Option<u64>,
    /// Bytes received.
    pub netin: Option<u64>,
    /// Bytes sent.
    pub netout: Option<u64>,
    /// Bytes read from disk.
    pub diskread: Option<u64>,
    /// Bytes written to disk.
    pub diskwrite: Option<u64>,
    /// Seconds since start.
    pub uptime: Option<u64>,
    /// Init PID when running.
    pub pid: Option<u32>,
    /// Config lock.
    pub lock: Option<String>,
    /// Tags, normalised.
    pub tags: Vec<String>,
    /// True for templates.
    pub template: bool,
    /// PSI values (PVE 9, running only).
    pub pressure: Pressure,
}

fn num<T: std::str::FromStr>(key: &str, v: &str, line: usize) -> Result<T, ParseError> {
    v.trim()
        .parse()
        .map_err(|_| ParseError::new("pct status", line, format!("bad {key} value '{v}'")))
}

/// Sizes may come as integers or (from JSON) as floats.
fn bytes(key: &str, v: &str, line: usize) -> Result<u64, ParseError> {
    if let Ok(n) = v.trim().parse::<u64>() {
        return Ok(n);
    }
    let f: f64 = num(key, v, line)?;
    if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 {
        Ok(f as u64)
    } else {
        Err(ParseError::new(
            "pct status",
            line,
            format!("bad {key} value '{v}'"),
        ))
    }
}

impl CtStatus {
    /// Builds the status from key/value pairs (line number 0 = not line-based).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (usize, &'a str, &'a str)>,
    ) -> Result<Self, ParseError> {
        let mut s = CtStatus::default();
        for (line, key, v) in pairs {
            match key {
                "status" => s.status = Some(CtState::parse(v.trim())),
                "vmid" => s.vmid = Some(num(key, v, line)?),
                "name" => s.name = Some(v.trim().to_string()),
                "cpu" => s.cpu = Some(num(key, v, line)?),
                "cpus" => s.cpus = Some(num(key, v, line)?),
                "mem" => s.mem = Some(bytes(key, v, line)?),
                "maxmem" => s.maxmem = Some(bytes(key, v, line)?),
                "swap" => s.swap = Some(bytes(key, v, line)?),
                "maxswap" => s.maxswap = Some(bytes(key, v, line)?),
                "disk" => s.disk = Some(bytes(key, v, line)?),
                "maxdisk" => s.maxdisk = Some(bytes(key, v, line)?),
                "netin" => s.netin = Some(bytes(key, v, line)?),
                "netout" => s.netout = Some(bytes(key, v, line)?),
                "diskread" => s.diskread = Some(bytes(key, v, line)?),
                "diskwrite" => s.diskwrite = Some(bytes(key, v, line)?),
                "uptime" => s.uptime = Some(bytes(key, v, line)?),
                "pid" => s.pid = Some(num(key, v, line)?),
                "lock" => s.lock = Some(v.trim().to_string()).filter(|l| !l.is_empty()),
                "tags" => s.tags = normalize_tags(v),
                "template" => s.template = v.trim() == "1",
                // PSI values are informational: a malformed one is dropped, not fatal.
                "pressurecpusome" => s.pressure.cpu_some = v.trim().parse().ok(),
                "pressurecpufull" => s.pressure.cpu_full = v.trim().parse().ok(),
                "pressureiosome" => s.pressure.io_some = v.trim().parse().ok(),
                "pressureiofull" => s.pressure.io_full = v.trim().parse().ok(),
                "pressurememorysome" => s.pressure.memory_some = v.trim().parse().ok(),
                "pressurememoryfull" => s.pressure.memory_full = v.trim().parse().ok(),
                _ => {}
            }
        }
        Ok(s)
    }
}

/// Splits `key: value` lines; lines without `: ` are errors, blank lines skipped.
pub fn key_values<'a>(
    what: &'static str,
    text: &'a str,
) -> Result<Vec<(usize, &'a str, &'a str)>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| ParseError::new(what, i + 1, format!("no 'key:' in '{line}'")))?;
        out.push((i + 1, k.trim(), v.strip_prefix(' ').unwrap_or(v)));
    }
    Ok(out)
}

/// Parses `pct status [--verbose]` output.
pub fn parse_pct_status(text: &str) -> Result<CtStatus, ParseError> {
    let s = CtStatus::from_pairs(key_values("pct status", text)?)?;
    if s.status.is_none() {
        return Err(ParseError::new("pct status", 0, "no 'status:' line"));
    }
    Ok(s)
}

/// All `key: value` pairs of `pct status --verbose`, for keys this layer does not model.
pub fn parse_pct_status_raw(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    Ok(key_values("pct status", text)?
        .into_iter()
        .map(|(_, k, v)| (k.to_string(), v.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn plain() {
        let s = parse_pct_status(fixture!("pct-status.txt")).unwrap();
        assert_eq!(s.status, Some(CtState::Running));
        assert_eq!(s.vmid, None);
    }

    #[test]
    fn verbose_pve8_stopped() {
        let s = parse_pct_status(fixture!("pct-status-verbose-pve8.txt")).unwrap();
        assert_eq!(s.status, Some(CtState::Stopped));
        assert_eq!(s.vmid, Some(101));
        assert_eq!(s.name.as_deref(), Some("web01"));
        assert_eq!(s.cpus, Some(2.0));
        assert_eq!(s.maxmem, Some(1 << 30));
        assert_eq!(s.maxswap, Some(512 << 20));
        assert_eq!(s.maxdisk, Some(8 << 30));
        assert_eq!(s.uptime, Some(0));
        assert_eq!(s.pid, None);
        assert_eq!(s.pressure, Pressure::default());
        assert!(!s.template);
    }

    #[test]
    fn verbose_pve9_running_with_pressure_and_unknown_keys() {
        let text = format!(
            "{}futurekey: whatever\n",
            fixture!("pct-status-verbose-pve9-running.txt")
        );
        let s = parse_pct_status(&text).unwrap();
        assert_eq!(s.status, Some(CtState::Running));
        assert_eq!(s.pid, Some(12345));
        assert_eq!(s.lock.as_deref(), Some("backup"));
        assert_eq!(s.tags, vec!["prod", "web"]);
        assert_eq!(s.pressure.cpu_some, Some(0.12));
        assert_eq!(s.pressure.memory_full, Some(0.0));
        assert_eq!(s.mem, Some(52428800));
        let raw = parse_pct_status_raw(&text).unwrap();
        assert_eq!(raw.get("futurekey").map(String::as_str), Some("whatever"));
    }

    #[test]
    fn missing_status_or_garbage_is_an_error() {
        assert!(parse_pct_status("vmid: 101\n").is_err());
        assert!(parse_pct_status("no colon here\n").is_err());
        assert!(parse_pct_status("status: running\nmem: lots\n").is_err());
    }
}
