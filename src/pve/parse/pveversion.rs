//! `pveversion` (plain): `pve-manager/<version>/<repoid> (running kernel: <k>)`.
//!
//! Versions may carry a tilde (`9.0.0~22` on 9.0 betas) and two-digit patches.

use super::ParseError;

/// The PVE version of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PveVersion {
    /// Major version (8, 9, ...): what the wrappers branch on.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// The full version string (`8.2.4`, `9.0.0~22`).
    pub version: String,
    /// Running kernel, if printed.
    pub kernel: Option<String>,
}

impl PveVersion {
    /// A version with only major and minor known (for tests and configuration).
    pub fn new(major: u32, minor: u32) -> Self {
        Self {
            major,
            minor,
            version: format!("{major}.{minor}"),
            kernel: None,
        }
    }
}

fn leading_u32(s: &str) -> Option<u32> {
    let d: String = s.chars().take_while(char::is_ascii_digit).collect();
    d.parse().ok()
}

/// Parses `pveversion` output (also accepts the `pve-manager: X (running
/// version: ...)` line of `pveversion -v`).
pub fn parse_pveversion(text: &str) -> Result<PveVersion, ParseError> {
    let what = "pveversion";
    let line = text
        .lines()
        .find(|l| l.contains("pve-manager/") || l.trim_start().starts_with("pve-manager:"))
        .ok_or_else(|| ParseError::new(what, 0, "no 'pve-manager/' in output"))?;
    let version = if let Some((_, rest)) = line.split_once("pve-manager/") {
        rest.split(['/', ' ']).next().unwrap_or("")
    } else {
        line.split_once(':')
            .map(|(_, r)| r.trim_start())
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("")
    };
    let mut parts = version.split('.');
    let major = parts.next().and_then(leading_u32);
    let minor = parts.next().and_then(leading_u32);
    let (Some(major), Some(minor)) = (major, minor) else {
        return Err(ParseError::new(what, 0, format!("bad version '{version}'")));
    };
    let kernel = line
        .split_once("running kernel: ")
        .map(|(_, k)| k.trim_end().trim_end_matches(')').to_string());
    Ok(PveVersion {
        major,
        minor,
        version: version.to_string(),
        kernel,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn pve8() {
        let v = parse_pveversion(fixture!("pveversion-pve8.txt")).unwrap();
        assert_eq!((v.major, v.minor), (8, 2));
        assert_eq!(v.version, "8.2.4");
        assert_eq!(v.kernel.as_deref(), Some("6.8.8-2-pve"));
    }

    #[test]
    fn pve9_and_tilde_beta() {
        let v = parse_pveversion(fixture!("pveversion-pve9.txt")).unwrap();
        assert_eq!((v.major, v.minor), (9, 1));
        let v = parse_pveversion(fixture!("pveversion-pve9-beta.txt")).unwrap();
        assert_eq!((v.major, v.minor), (9, 0));
        assert_eq!(v.version, "9.0.0~22");
        let v = parse_pveversion("pve-manager/9.0~beta/abc (running kernel: x)\n").unwrap();
        assert_eq!((v.major, v.minor), (9, 0));
    }

    #[test]
    fn verbose_line_and_garbage() {
        let v = parse_pveversion(
            "proxmox-ve: 8.2.0 (running kernel: 6.8.8-2-pve)\npve-manager: 8.2.4 (running version: 8.2.4/faa83925c9641325)\n",
        )
        .unwrap();
        assert_eq!((v.major, v.minor), (8, 2));
        assert!(parse_pveversion("").is_err());
        assert!(parse_pveversion("pve-manager/x.y/z").is_err());
    }
}
