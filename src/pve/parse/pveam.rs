//! `pveam available` and `pveam list`.
//!
//! `available` is `section template` on PVE 8 and `section template arch` from
//! pve-manager 9.2.7; the template stays in field 2, so fields are split on
//! whitespace. `list` has a `NAME SIZE` header and sizes like `120.78MB`
//! (MiB, two decimals).

use super::ParseError;

/// One template offered by the appliance index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvailableTemplate {
    /// `system`, `mail`, `turnkeylinux`, ...
    pub section: String,
    /// The file name to pass to `pveam download`.
    pub name: String,
    /// Architecture (PVE ≥ 9.2.7 only): `amd64`, `arm64`, `unknown`.
    pub arch: Option<String>,
}

/// One downloaded template on a storage.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTemplate {
    /// Volume id (`local:vztmpl/<file>`).
    pub volid: String,
    /// Size in bytes, rounded from the MiB figure.
    pub size: Option<u64>,
}

/// Parses `pveam available [--section S]`.
pub fn parse_available(text: &str) -> Result<Vec<AvailableTemplate>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => continue,
            [section, name] => out.push(AvailableTemplate {
                section: section.to_string(),
                name: name.to_string(),
                arch: None,
            }),
            [section, name, arch, ..] => out.push(AvailableTemplate {
                section: section.to_string(),
                name: name.to_string(),
                arch: Some(arch.to_string()),
            }),
            [_] => {
                return Err(ParseError::new(
                    "pveam available",
                    i + 1,
                    format!("expected 'section template': '{line}'"),
                ))
            }
        }
    }
    Ok(out)
}

/// Parses a `pveam list` size (`120.78MB`) into bytes.
pub fn parse_mb(s: &str) -> Option<u64> {
    let mb: f64 = s.strip_suffix("MB")?.parse().ok()?;
    let bytes = (mb * 1048576.0).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Parses `pveam list <storage>`.
pub fn parse_list(text: &str) -> Result<Vec<StoredTemplate>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => continue,
            ["NAME", "SIZE"] if out.is_empty() => continue,
            [volid, size] => out.push(StoredTemplate {
                volid: volid.to_string(),
                size: parse_mb(size),
            }),
            _ => {
                return Err(ParseError::new(
                    "pveam list",
                    i + 1,
                    format!("expected 'volid size': '{line}'"),
                ))
            }
        }
    }
    Ok(out)
}

/// Picks the newest `debian-<major>-standard_*` for `arch` from `available`
/// (highest version by numeric comparison, never hard-coded).
pub fn newest_debian_standard<'a>(
    available: &'a [AvailableTemplate],
    major: u32,
    arch: &str,
) -> Option<&'a AvailableTemplate> {
    let prefix = format!("debian-{major}-standard_");
    let suffix_arch = format!("_{arch}.");
    available
        .iter()
        .filter(|t| t.name.starts_with(&prefix) && t.name.contains(&suffix_arch))
        .filter(|t| t.arch.as_deref().is_none_or(|a| a == arch))
        .max_by_key(|t| version_key(t.name.get(prefix.len()..).unwrap_or("")))
}

/// `12.12-1_amd64.tar.zst` → `[12, 12, 1]`.
fn version_key(s: &str) -> Vec<u64> {
    s.split('_')
        .next()
        .unwrap_or("")
        .split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn available_pve8_two_columns() {
        let a = parse_available(fixture!("pveam-available-pve8.txt")).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].section, "mail");
        assert_eq!(a[2].name, "debian-12-standard_12.12-1_amd64.tar.zst");
        assert!(a.iter().all(|t| t.arch.is_none()));
    }

    #[test]
    fn available_pve9_three_columns() {
        let a = parse_available(fixture!("pveam-available-pve9.txt")).unwrap();
        assert_eq!(a.len(), 6);
        assert_eq!(a[1].name, "debian-12-standard_12.12-1_amd64.tar.zst");
        assert_eq!(a[1].arch.as_deref(), Some("amd64"));
        assert_eq!(a[5].arch.as_deref(), Some("unknown"));
        let newest = newest_debian_standard(&a, 13, "amd64").unwrap();
        assert_eq!(newest.name, "debian-13-standard_13.6-1_amd64.tar.zst");
        let a8 = parse_available(fixture!("pveam-available-pve8.txt")).unwrap();
        assert_eq!(
            newest_debian_standard(&a8, 12, "amd64").unwrap().name,
            "debian-12-standard_12.12-1_amd64.tar.zst"
        );
        assert!(newest_debian_standard(&a8, 13, "amd64").is_none());
    }

    #[test]
    fn version_compare_is_numeric() {
        assert!(version_key("12.12-1_amd64") > version_key("12.7-1_amd64"));
    }

    #[test]
    fn list_with_mb_sizes() {
        let l = parse_list(fixture!("pveam-list.txt")).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0].volid,
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"
        );
        // 120.78 MiB, rounded from 126649744 bytes.
        let size = l[0].size.unwrap();
        assert!(size.abs_diff(126649744) < 10_000, "{size}");
        assert_eq!(l[1].size, Some(3670016));
        assert_eq!(parse_list("NAME SIZE\n").unwrap(), vec![]);
        assert!(parse_list("a b c\n").is_err());
    }
}
