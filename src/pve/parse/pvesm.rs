//! `pvesm list <storage>` and `pvesm status`.
//!
//! `list`: header `Volid Format Type Size VMID` (printed even when empty), rows
//! without a VMID end after the size; PVE 9.2 may show the size as `-`
//! (unknown) or `~N` (approximate). `status`: the header changed on PVE 9.1
//! (`Total (KiB)` ...), so the first line is skipped by shape, not by text;
//! sizes are KiB; disabled storages show `N/A` as percentage.

use super::ParseError;

/// A volume size as `pvesm list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSize {
    /// Exact size in bytes.
    Exact(u64),
    /// Approximate size in bytes (`~N`, PVE 9.2).
    Approximate(u64),
    /// Unknown (`-`, PVE 9.2).
    Unknown,
}

impl VolumeSize {
    /// The size in bytes, exact or approximate.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            VolumeSize::Exact(n) | VolumeSize::Approximate(n) => Some(*n),
            VolumeSize::Unknown => None,
        }
    }
}

/// One volume on a storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// `<storage>:<volname>`.
    pub volid: String,
    /// `raw`, `subvol`, `tar.zst`, `tzst`, `iso`, ...
    pub format: String,
    /// Content type: `backup`, `vztmpl`, `rootdir`, `images`, `iso`, `snippets`.
    pub content: String,
    /// Size.
    pub size: VolumeSize,
    /// Owning guest, if any.
    pub vmid: Option<u32>,
}

/// Storage activity state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageState {
    /// `active`.
    Active,
    /// `inactive`.
    Inactive,
    /// `disabled`.
    Disabled,
    /// Anything else, verbatim.
    Other(String),
}

/// One row of `pvesm status`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageStatus {
    /// Storage id.
    pub name: String,
    /// Storage type (`dir`, `lvmthin`, `zfspool`, `nfs`, `pbs`, ...).
    pub storage_type: String,
    /// State.
    pub state: StorageState,
    /// Total KiB.
    pub total_kib: u64,
    /// Used KiB.
    pub used_kib: u64,
    /// Available KiB.
    pub avail_kib: u64,
    /// Used percentage; `None` for `N/A`.
    pub used_percent: Option<f64>,
}

fn parse_size(s: &str) -> Option<VolumeSize> {
    if s == "-" {
        return Some(VolumeSize::Unknown);
    }
    if let Some(n) = s.strip_prefix('~') {
        return n.parse().ok().map(VolumeSize::Approximate);
    }
    s.parse().ok().map(VolumeSize::Exact)
}

/// Parses `pvesm list`.
pub fn parse_list(text: &str) -> Result<Vec<Volume>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || (i == 0 && f.first() == Some(&"Volid")) {
            continue;
        }
        let err = |m: &str| ParseError::new("pvesm list", i + 1, format!("{m}: '{line}'"));
        let (volid, format, content, size, vmid) = match f.as_slice() {
            [v, fo, c, s] => (v, fo, c, s, None),
            [v, fo, c, s, id] => (v, fo, c, s, Some(id)),
            _ => return Err(err("expected 4 or 5 columns")),
        };
        let size = parse_size(size).ok_or_else(|| err("bad size"))?;
        let vmid = match vmid {
            Some(id) => Some(id.parse().map_err(|_| err("bad vmid"))?),
            None => None,
        };
        out.push(Volume {
            volid: volid.to_string(),
            format: format.to_string(),
            content: content.to_string(),
            size,
            vmid,
        });
    }
    Ok(out)
}

/// Parses `pvesm status` (PVE 8 and 9 headers).
pub fn parse_status(text: &str) -> Result<Vec<StorageStatus>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || (i == 0 && f.first() == Some(&"Name")) {
            continue;
        }
        let err = |m: &str| ParseError::new("pvesm status", i + 1, format!("{m}: '{line}'"));
        let [name, ty, state, total, used, avail, pct] = f.as_slice() else {
            return Err(err("expected 7 columns"));
        };
        let kib = |s: &str| s.parse::<u64>().map_err(|_| err("bad KiB value"));
        let used_percent = match *pct {
            "N/A" => None,
            p => Some(
                p.strip_suffix('%')
                    .unwrap_or(p)
                    .parse::<f64>()
                    .map_err(|_| err("bad percentage"))?,
            ),
        };
        out.push(StorageStatus {
            name: name.to_string(),
            storage_type: ty.to_string(),
            state: match *state {
                "active" => StorageState::Active,
                "inactive" => StorageState::Inactive,
                "disabled" => StorageState::Disabled,
                o => StorageState::Other(o.to_string()),
            },
            total_kib: kib(total)?,
            used_kib: kib(used)?,
            avail_kib: kib(avail)?,
            used_percent,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn list_pve8_rows_with_and_without_vmid() {
        let l = parse_list(fixture!("pvesm-list.txt")).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].vmid, Some(101));
        assert_eq!(l[0].format, "tar.zst");
        assert_eq!(l[0].content, "backup");
        assert_eq!(l[0].size, VolumeSize::Exact(421527101));
        assert_eq!(l[1].vmid, None);
        assert_eq!(l[1].content, "vztmpl");
        assert_eq!(
            parse_list(fixture!("pvesm-list-empty.txt")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn list_pve9_unknown_and_approximate_sizes() {
        let l = parse_list(fixture!("pvesm-list-pve9.txt")).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(l[0].size, VolumeSize::Exact(8589934592));
        assert_eq!(l[1].size, VolumeSize::Unknown);
        assert_eq!(l[1].size.bytes(), None);
        assert_eq!(l[2].size, VolumeSize::Approximate(1073741824));
        assert_eq!(l[3].format, "tar");
        assert_eq!(l[3].vmid, None);
    }

    #[test]
    fn status_pve8() {
        let s = parse_status(fixture!("pvesm-status-pve8.txt")).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "local");
        assert_eq!(s[0].storage_type, "dir");
        assert_eq!(s[0].state, StorageState::Active);
        assert_eq!(s[0].total_kib, 98497780);
        assert_eq!(s[1].used_percent, Some(5.0));
    }

    #[test]
    fn status_pve9_kib_header_and_disabled() {
        let s = parse_status(fixture!("pvesm-status-pve9.txt")).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].avail_kib, 79881132);
        assert_eq!(s[0].used_percent, Some(13.77));
        assert_eq!(s[1].state, StorageState::Disabled);
        assert_eq!(s[1].used_percent, None);
        assert_eq!(s[2].state, StorageState::Inactive);
        assert!(parse_status("Name Type\nlocal dir active 1 2\n").is_err());
    }
}
