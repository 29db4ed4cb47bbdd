//! vzdump's file names and the small formatting rules around them.
//!
//! * archive: `vzdump-<type>-<vmid>-YYYY_MM_DD-HH_MM_SS.tar[.zst|.gz|.lzo]`
//!   (local time at the guest's backup start), written as `<...>.tar.dat`
//!   (the last extension replaced by `.dat`) and renamed when done;
//! * log: `<basename>.log` (no `.tar*`), notes: `<archive>.notes`,
//!   protection sentinel: `<archive>.protected`;
//! * recognition follows pve-storage's `archive_info`: any
//!   `vzdump-(lxc|openvz|qemu)-<anything><ext>` is a backup, and only the
//!   exact standard shape has a vmid and a time (`is_std_name`);
//! * notes templates (`{{cluster}} {{guestname}} {{node}} {{vmid}}`, escapes
//!   `\n` and `\\` only), `archive file size` and `HH:MM:SS` durations.

use thiserror::Error;

use crate::clock;

/// Backup archive extensions as pve-storage's `BACKUP_EXT_RE_2` accepts
/// them, shortest first (the greedy `.+` in front picks the shortest tail).
const EXTENSIONS: [&str; 11] = [
    "tgz", "tar", "vma", "tar.gz", "vma.gz", "tar.lzo", "tar.zst", "tar.bz2", "vma.lzo", "vma.zst",
    "vma.bz2",
];

/// What `archive_info` knows about a backup file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// The file name itself.
    pub filename: String,
    /// `lxc`, `qemu` or `openvz`.
    pub guest_type: String,
    /// The full extension, e.g. `tar.zst` (what `pvesm list` shows as Format).
    pub extension: String,
    /// `tar`, `vma` (`tgz` counts as `tar`).
    pub format: String,
    /// `gz`, `lzo`, `zst`, `bz2`, if compressed.
    pub compression: Option<String>,
    /// The standard shape: vmid and time are known.
    pub std: Option<StdName>,
}

/// The parts of a standard vzdump name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdName {
    /// The guest id.
    pub vmid: u32,
    /// The backup time (the name's local time), unix seconds.
    pub ctime: i64,
    /// `vzdump-<type>-<vmid>-<stamp>` without extension.
    pub basename: String,
}

impl ArchiveInfo {
    /// `<basename>.log` for standard names.
    pub fn log_filename(&self) -> Option<String> {
        self.std.as_ref().map(|s| format!("{}.log", s.basename))
    }
    /// `<archive>.notes` for standard names.
    pub fn notes_filename(&self) -> Option<String> {
        self.std
            .as_ref()
            .map(|_| format!("{}.notes", self.filename))
    }
    /// The vmid of a standard name.
    pub fn vmid(&self) -> Option<u32> {
        self.std.as_ref().map(|s| s.vmid)
    }
}

/// Splits `name` into (stem, extension) like `.+$BACKUP_EXT_RE_2$`.
fn split_ext(name: &str) -> Option<(&str, &'static str)> {
    for ext in EXTENSIONS {
        if let Some(stem) = name.strip_suffix(ext).and_then(|s| s.strip_suffix('.')) {
            if !stem.is_empty() {
                return Some((stem, ext));
            }
        }
    }
    None
}

/// pve-storage's `archive_info` on a file name (a path's last component is
/// used). `None` means "not a vzdump backup at all".
pub fn archive_info(path_or_name: &str) -> Option<ArchiveInfo> {
    let name = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let (guest_type, rest) = ["lxc", "openvz", "qemu"].iter().find_map(|t| {
        name.strip_prefix("vzdump-")
            .and_then(|r| r.strip_prefix(t))
            .and_then(|r| r.strip_prefix('-'))
            .map(|r| (*t, r))
    })?;
    let (stem_rest, ext) = split_ext(rest)?;
    let (format, compression) = match ext.split_once('.') {
        Some((f, c)) => (f.to_string(), Some(c.to_string())),
        None if ext == "tgz" => ("tar".to_string(), Some("gz".to_string())),
        None => (ext.to_string(), None),
    };
    let std = parse_std(stem_rest).map(|(vmid, ctime)| StdName {
        vmid,
        ctime,
        basename: format!("vzdump-{guest_type}-{stem_rest}"),
    });
    Some(ArchiveInfo {
        filename: name.to_string(),
        guest_type: guest_type.to_string(),
        extension: ext.to_string(),
        format,
        compression,
        std,
    })
}

/// `<vmid>-YYYY_MM_DD-HH_MM_SS` with vmid `[1-9][0-9]{2,8}`.
fn parse_std(s: &str) -> Option<(u32, i64)> {
    let (vmid, stamp) = s.split_once('-')?;
    let b = vmid.as_bytes();
    if !(3..=9).contains(&b.len()) || b[0] == b'0' || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let shape_ok = stamp.len() == 19
        && stamp.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 | 13 | 16 => c == b'_',
            10 => c == b'-',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    let ctime = clock::parse_vzdump(stamp)?;
    Some((vmid.parse().ok()?, ctime))
}

/// The vmid `pvesm list` shows for a backup: any `-NNN-` before the
/// extension (`-([1-9][0-9]{2,8})-[^/]+\.<ext>$`), first match.
pub fn listing_vmid(filename: &str, extension: &str) -> Option<u32> {
    let stem = filename.strip_suffix(extension)?.strip_suffix('.')?;
    let bytes = stem.as_bytes();
    for (i, _) in stem.match_indices('-') {
        let digits: String = stem[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let end = i + 1 + digits.len();
        if (3..=9).contains(&digits.len())
            && !digits.starts_with('0')
            && bytes.get(end) == Some(&b'-')
            && end + 1 < bytes.len()
        {
            return digits.parse().ok();
        }
    }
    None
}

/// `vzdump-<type>-<vmid>-YYYY_MM_DD-HH_MM_SS` for a backup started at `ts`.
pub fn basename(guest_type: &str, vmid: u32, ts: i64) -> String {
    format!("vzdump-{guest_type}-{vmid}-{}", clock::fmt_vzdump(ts))
}

/// The temporary name while writing: the last extension replaced by `.dat`.
pub fn tmp_name(target: &str) -> String {
    match target.rfind('.') {
        Some(i) if !target[i..].contains('/') => format!("{}.dat", &target[..i]),
        _ => format!("{target}.dat"),
    }
}

/// `<archive>.protected`.
pub fn protection_file(archive: &str) -> String {
    format!("{archive}.protected")
}

/// A compressor choice from `--compress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compressor {
    /// The command line (`zstd --threads=1`).
    pub argv: Vec<String>,
    /// The extension part (`zst`, `gz`, `lzo`).
    pub ext: &'static str,
}

/// vzdump's `compressor_info`: `None` for no compression. `cpus` is used
/// for `--zstd 0` / `--pigz 1` (half the cores, rounded up).
pub fn compressor(compress: &str, zstd: u32, pigz: u32, cpus: u32) -> Option<Compressor> {
    let half = cpus.div_ceil(2).max(1);
    let argv = |v: &[&str]| v.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
    match compress {
        "" | "0" => None,
        "1" | "lzo" => Some(Compressor {
            argv: argv(&["lzop"]),
            ext: "lzo",
        }),
        "gzip" if pigz > 0 => {
            let n = if pigz == 1 { half } else { pigz };
            Some(Compressor {
                argv: vec![
                    "pigz".into(),
                    "-p".into(),
                    n.to_string(),
                    "--rsyncable".into(),
                ],
                ext: "gz",
            })
        }
        "gzip" => Some(Compressor {
            argv: argv(&["gzip", "--rsyncable"]),
            ext: "gz",
        }),
        "zstd" => {
            let n = if zstd == 0 { half } else { zstd };
            Some(Compressor {
                argv: vec!["zstd".into(), format!("--threads={n}")],
                ext: "zst",
            })
        }
        _ => None,
    }
}

/// vzdump's `format_size`: whole KB or MB (truncated), else `%.2fGB`/`TB`.
pub fn format_size(size: u64) -> String {
    let kb = size as f64 / 1024.0;
    if kb < 1024.0 {
        return format!("{}KB", kb as u64);
    }
    let mb = size as f64 / (1024.0 * 1024.0);
    if mb < 1024.0 {
        return format!("{}MB", mb as u64);
    }
    let gb = mb / 1024.0;
    if gb < 1024.0 {
        return format!("{gb:.2}GB");
    }
    format!("{:.2}TB", gb / 1024.0)
}

/// vzdump's `format_time`: `HH:MM:SS` (hours may exceed 99).
pub fn format_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

/// tar's `--totals` style figure: `1175541760 (1.1GiB, 95MiB/s)`.
pub fn tar_totals(bytes: u64, seconds: f64) -> String {
    let rate = if seconds > 0.0 {
        bytes as f64 / seconds
    } else {
        bytes as f64
    };
    format!(
        "{bytes} ({}, {}/s)",
        human_iec(bytes as f64),
        human_iec(rate)
    )
}

/// GNU tar's human size: up to 3 significant digits with an IEC unit.
fn human_iec(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 10.0 {
        format!("{}{}", v.round() as u64, UNITS[unit])
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// A notes template that vzdump refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotesError {
    /// The template has a raw newline.
    #[error("contains a line feed")]
    LineFeed,
    /// Unknown escapes or variables, in vzdump's wording.
    #[error("found unknown: {}", .0.join(", "))]
    Unknown(Vec<String>),
}

/// The variables a notes template may use.
pub const NOTES_VARS: [&str; 4] = ["cluster", "guestname", "node", "vmid"];

/// vzdump's `$verify_notes_template`.
pub fn verify_notes_template(template: &str) -> Result<(), NotesError> {
    if template.contains('\n') {
        return Err(NotesError::LineFeed);
    }
    let chars: Vec<char> = template.chars().collect();
    let mut problems = Vec::new();
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i] == '\\' {
            let c = chars[i + 1];
            if c != 'n' && c != '\\' {
                problems.push(format!("escape sequence '\\{c}' at char {i}"));
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    // `\{\{([^\s{}]+)\}\}`, reported at pos(after match) - length(var).
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i] == '{' && chars[i + 1] == '{' {
            let mut j = i + 2;
            while j < chars.len() && !chars[j].is_whitespace() && chars[j] != '{' && chars[j] != '}'
            {
                j += 1;
            }
            if j > i + 2 && j + 1 < chars.len() && chars[j] == '}' && chars[j + 1] == '}' {
                let var: String = chars[i + 2..j].iter().collect();
                if !NOTES_VARS.contains(&var.as_str()) {
                    let pos = j + 2 - var.chars().count();
                    problems.push(format!("variable '{var}' at char {pos}"));
                }
                i = j + 2;
                continue;
            }
        }
        i += 1;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(NotesError::Unknown(problems))
    }
}

/// The values a notes template is filled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotesVars {
    /// Cluster name, `standalone node` without a cluster.
    pub cluster: String,
    /// The CT's hostname (`CT<vmid>` if unset).
    pub guestname: String,
    /// This node's name.
    pub node: String,
    /// The guest id.
    pub vmid: u32,
}

/// vzdump's `$generate_notes`: verify, unescape, substitute.
pub fn render_notes(template: &str, vars: &NotesVars) -> Result<String, NotesError> {
    verify_notes_template(template)?;
    let mut unescaped = String::with_capacity(template.len());
    let mut it = template.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => unescaped.push('\n'),
                Some('\\') => unescaped.push('\\'),
                Some(other) => {
                    unescaped.push('\\');
                    unescaped.push(other);
                }
                None => unescaped.push('\\'),
            }
        } else {
            unescaped.push(c);
        }
    }
    Ok(unescaped
        .replace("{{cluster}}", &vars.cluster)
        .replace("{{guestname}}", &vars.guestname)
        .replace("{{node}}", &vars.node)
        .replace("{{vmid}}", &vars.vmid.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_names() {
        let i = archive_info("/x/dump/vzdump-lxc-101-2024_05_01-10_00_00.tar.zst").unwrap();
        assert_eq!(i.guest_type, "lxc");
        assert_eq!(i.extension, "tar.zst");
        assert_eq!(i.format, "tar");
        assert_eq!(i.compression.as_deref(), Some("zst"));
        assert_eq!(i.vmid(), Some(101));
        assert_eq!(
            i.log_filename().unwrap(),
            "vzdump-lxc-101-2024_05_01-10_00_00.log"
        );
        assert_eq!(
            i.notes_filename().unwrap(),
            "vzdump-lxc-101-2024_05_01-10_00_00.tar.zst.notes"
        );
        let plain = archive_info("vzdump-lxc-100-2024_05_01-10_00_00.tar").unwrap();
        assert_eq!(plain.extension, "tar");
        assert!(plain.std.is_some());
        let tgz = archive_info("vzdump-openvz-100-2024_05_01-10_00_00.tgz").unwrap();
        assert_eq!(tgz.format, "tar");
        assert_eq!(tgz.compression.as_deref(), Some("gz"));
    }

    #[test]
    fn renamed_and_foreign_names() {
        let r = archive_info("vzdump-lxc-101-my-copy.tar.zst").unwrap();
        assert!(r.std.is_none());
        assert!(archive_info("vzdump-lxc-101-2024_05_01-10_00_00.log").is_none());
        assert!(archive_info("backup.tar.zst").is_none());
        assert!(archive_info("vzdump-lxc-.tar").is_none());
        // vmid must be 3..9 digits without a leading zero
        assert!(archive_info("vzdump-lxc-99-2024_05_01-10_00_00.tar")
            .unwrap()
            .std
            .is_none());
        assert!(archive_info("vzdump-lxc-0101-2024_05_01-10_00_00.tar")
            .unwrap()
            .std
            .is_none());
        assert!(archive_info("vzdump-lxc-101-2024_13_01-10_00_00.tar")
            .unwrap()
            .std
            .is_none());
    }

    #[test]
    fn listing_vmid_rule() {
        assert_eq!(
            listing_vmid("vzdump-lxc-101-2024_05_01-10_00_00.tar.zst", "tar.zst"),
            Some(101)
        );
        assert_eq!(listing_vmid("vzdump-lxc-101-copy.tar", "tar"), Some(101));
        assert_eq!(listing_vmid("vzdump-lxc-x.tar", "tar"), None);
    }

    #[test]
    fn tmp_and_sidecars() {
        assert_eq!(
            tmp_name("/d/vzdump-lxc-1-x.tar.zst"),
            "/d/vzdump-lxc-1-x.tar.dat"
        );
        assert_eq!(tmp_name("/d/vzdump-lxc-1-x.tar"), "/d/vzdump-lxc-1-x.dat");
        assert_eq!(protection_file("/d/a.tar"), "/d/a.tar.protected");
    }

    #[test]
    fn compressors() {
        assert!(compressor("0", 1, 0, 2).is_none());
        assert_eq!(compressor("1", 1, 0, 2).unwrap().ext, "lzo");
        assert_eq!(
            compressor("zstd", 0, 0, 4).unwrap().argv,
            ["zstd", "--threads=2"]
        );
        assert_eq!(
            compressor("gzip", 1, 0, 4).unwrap().argv,
            ["gzip", "--rsyncable"]
        );
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(format_size(1023), "0KB");
        assert_eq!(format_size(10 * 1024 + 1000), "10KB");
        assert_eq!(format_size(402 * 1024 * 1024 + 5), "402MB");
        assert_eq!(format_size(1175541760 + 1024 * 1024 * 1024), "2.09GB");
        assert_eq!(format_duration(31), "00:00:31");
        assert_eq!(format_duration(3661), "01:01:01");
        assert_eq!(format_duration(-3), "00:00:00");
        assert_eq!(tar_totals(10240, 1.0), "10240 (10KiB, 10KiB/s)");
        assert_eq!(tar_totals(1175541760, 12.3), "1175541760 (1.1GiB, 91MiB/s)");
    }

    #[test]
    fn notes_templates() {
        let vars = NotesVars {
            cluster: "standalone node".into(),
            guestname: "web01".into(),
            node: "pve".into(),
            vmid: 101,
        };
        assert_eq!(
            render_notes(
                "{{guestname}} on {{node}}\\n#{{vmid}} \\\\ {{cluster}}",
                &vars
            )
            .unwrap(),
            "web01 on pve\n#101 \\ standalone node"
        );
        assert_eq!(
            render_notes("{{foo}}", &vars).unwrap_err().to_string(),
            "found unknown: variable 'foo' at char 4"
        );
        assert_eq!(
            render_notes("a\\tb", &vars).unwrap_err().to_string(),
            "found unknown: escape sequence '\\t' at char 1"
        );
        assert_eq!(
            verify_notes_template("a\nb").unwrap_err(),
            NotesError::LineFeed
        );
        // Braces around whitespace are not variables.
        assert!(verify_notes_template("{{ guestname }}").is_ok());
    }
}
