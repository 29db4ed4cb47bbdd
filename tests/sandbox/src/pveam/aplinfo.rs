//! The appliance index (`aplinfo.dat`) and pveam's text output.
//!
//! The index is a list of RFC-822-like records separated by blank lines
//! (pve-manager `PVE/APLInfo.pm`). Keys are case-insensitive and stored
//! lower-cased; `Description:` takes the continuation lines that start with
//! whitespace. A record becomes a template when it has `Package`, `Type`
//! (`lxc`/`openvz`), `OS`, `Version` and `Infopage`; the template file name
//! is the last path component of `Location` (when it ends in
//! `.tar.{gz,xz,zst,bz2}`), otherwise `<os>-<package>_<version>_<arch>.tar.gz`.
//! A relative `Location` is resolved against the index's source (here: the
//! mirror directory, standing in for `http://download.proxmox.com/images`).

use std::collections::BTreeMap;

/// One template offered by the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Appliance {
    /// Every `key: value` of the record, keys lower-cased.
    pub fields: BTreeMap<String, String>,
    /// The template file name (`debian-12-standard_12.12-1_amd64.tar.zst`).
    pub template: String,
    /// `system`, `mail`, `turnkeylinux`, ... (`unknown` if missing).
    pub section: String,
    /// Where to fetch it: `<source>/<location>` for relative locations.
    pub location: String,
}

impl Appliance {
    /// A field by its lower-case name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }
    /// `Architecture`, `unknown` when missing (PVE 9's third column).
    pub fn architecture(&self) -> &str {
        self.get("architecture").unwrap_or("unknown")
    }
    /// The checksum to verify with: (`sha512`|`md5`, hex), sha512 first.
    pub fn checksum(&self) -> Option<(&'static str, &str)> {
        for (algo, key) in [("sha512", "sha512sum"), ("md5", "md5sum")] {
            if let Some(v) = self.get(key) {
                return Some((algo, v));
            }
        }
        None
    }
}

/// The parsed index: section → template → appliance (sorted maps, as pveam
/// sorts sections and templates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AplIndex {
    /// Templates by section.
    pub sections: BTreeMap<String, BTreeMap<String, Appliance>>,
    /// Records that were skipped, with pveam's warning text.
    pub warnings: Vec<String>,
}

impl AplIndex {
    /// Finds a template by file name in any section.
    pub fn find(&self, template: &str) -> Option<&Appliance> {
        self.sections.values().find_map(|s| s.get(template))
    }
    /// Adds the records of another index text (pveam reads several sources).
    pub fn merge(&mut self, other: AplIndex) {
        for (sec, list) in other.sections {
            self.sections.entry(sec).or_default().extend(list);
        }
        self.warnings.extend(other.warnings);
    }
}

const TEMPLATE_EXTS: [&str; 4] = [".tar.gz", ".tar.xz", ".tar.zst", ".tar.bz2"];

/// Parses one index text; `source` resolves relative locations.
pub fn parse(text: &str, source: &str) -> AplIndex {
    let mut index = AplIndex::default();
    for record in split_records(text) {
        let mut fields = BTreeMap::new();
        let mut in_description = false;
        let mut bad = None;
        for line in record {
            if line.starts_with([' ', '\t']) {
                if in_description {
                    let long = fields
                        .entry("description-long".to_string())
                        .or_insert_with(String::new);
                    if !long.is_empty() {
                        long.push(' ');
                    }
                    long.push_str(line.trim());
                    continue;
                }
                bad = Some(line.to_string());
                break;
            }
            let Some((key, value)) = line.split_once(':') else {
                bad = Some(line.to_string());
                break;
            };
            let key = key.trim().to_ascii_lowercase();
            in_description = key == "description";
            fields.insert(key, value.trim().to_string());
        }
        if let Some(line) = bad {
            index
                .warnings
                .push(format!("unable to parse appliance record: {line}"));
            continue;
        }
        if let Some(t) = fields.get("type") {
            if t != "lxc" && t != "openvz" {
                index.warnings.push(format!(
                    "unable to parse appliance record: unknown type '{t}'"
                ));
                continue;
            }
        }
        if fields.get("package").map(String::as_str) == Some("pve-web-news") {
            continue;
        }
        let complete = ["package", "type", "os", "version", "infopage"]
            .iter()
            .all(|k| fields.get(*k).is_some_and(|v| !v.is_empty()));
        if !complete {
            index
                .warnings
                .push("found incomplete appliance records".to_string());
            continue;
        }
        let section = fields
            .get("section")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "unknown".to_string());
        let (template, location) = match fields.get("location") {
            Some(loc) => {
                let base = loc.rsplit('/').next().unwrap_or(loc);
                let template = if TEMPLATE_EXTS.iter().any(|e| base.ends_with(e)) {
                    base.to_string()
                } else {
                    loc.clone()
                };
                let location = if is_url(loc) {
                    loc.clone()
                } else {
                    format!("{source}/{loc}")
                };
                (template, location)
            }
            None => {
                let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
                let arch = fields
                    .get("architecture")
                    .cloned()
                    .unwrap_or_else(|| "i386".into());
                let os = get("os");
                let mut template =
                    format!("{os}-{}_{}_{arch}.tar.gz", get("package"), get("version"));
                let doubled = format!("{os}-{os}-");
                if template.starts_with(&doubled) {
                    template = template.replacen(&doubled, &format!("{os}-"), 1);
                }
                let location = format!("{source}/{section}/{template}");
                (template, location)
            }
        };
        let app = Appliance {
            fields,
            template: template.clone(),
            section: section.clone(),
            location,
        };
        index
            .sections
            .entry(section)
            .or_default()
            .insert(template, app);
    }
    index
}

fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphabetic())
    })
}

/// Paragraph mode: records are separated by one or more blank lines.
fn split_records(text: &str) -> Vec<Vec<&str>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(line);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `pveam available [--section S]`: `%-15s %s` on 8, `%-15s %-60s %s`
/// (with the architecture) on 9.
pub fn format_available(index: &AplIndex, section: Option<&str>, pve_major: u8) -> String {
    let mut out = String::new();
    for (sec, list) in &index.sections {
        if section.is_some_and(|s| s != sec) {
            continue;
        }
        for (template, app) in list {
            if pve_major >= 9 {
                out.push_str(&format!(
                    "{sec:<15} {template:<60} {}\n",
                    app.architecture()
                ));
            } else {
                out.push_str(&format!("{sec:<15} {template}\n"));
            }
        }
    }
    out
}

/// `pveam list <storage>`: header `%-60s %-6s`, rows `%-60s %-4.2fMB`.
pub fn format_list(rows: &[(String, u64)]) -> String {
    let mut out = format!("{:<60} {:<6}\n", "NAME", "SIZE");
    for (volid, size) in rows {
        let mb = *size as f64 / (1024.0 * 1024.0);
        out.push_str(&format!("{volid:<60} {mb:<4.2}MB\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "\
Package: debian-12-standard
Version: 12.12-1
Type: lxc
OS: debian-12
Section: system
Architecture: amd64
Location: system/debian-12-standard_12.12-1_amd64.tar.zst
sha512sum: abc123
Infopage: https://pve.proxmox.com/wiki/Linux_Container
Description: Debian 12 Bookworm (standard)
 A small Debian Bookworm system including all standard packages.

Package: proxmox-mail-gateway
Version: 8.2-1
Type: lxc
OS: debian-12
Section: mail
Location: mail/proxmox-mail-gateway-8.2-standard_8.2-1_amd64.tar.zst
Infopage: https://www.proxmox.com
Description: Proxmox Mailgateway 8.2

Package: broken
Type: lxc

Package: old
Version: 1.0-1
Type: openvz
OS: ubuntu
Section: system
Infopage: x
Description: no location
";

    #[test]
    fn parses_records() {
        let idx = parse(INDEX, "/mirror");
        let deb = idx
            .find("debian-12-standard_12.12-1_amd64.tar.zst")
            .unwrap();
        assert_eq!(deb.section, "system");
        assert_eq!(
            deb.location,
            "/mirror/system/debian-12-standard_12.12-1_amd64.tar.zst"
        );
        assert_eq!(deb.checksum(), Some(("sha512", "abc123")));
        assert_eq!(deb.architecture(), "amd64");
        assert_eq!(
            deb.get("description-long"),
            Some("A small Debian Bookworm system including all standard packages.")
        );
        // generated name for records without Location
        assert!(idx.find("ubuntu-old_1.0-1_i386.tar.gz").is_some());
        assert_eq!(idx.warnings, ["found incomplete appliance records"]);
    }

    #[test]
    fn available_formats() {
        let idx = parse(INDEX, "/mirror");
        let v8 = format_available(&idx, None, 8);
        assert_eq!(
            v8,
            "mail            proxmox-mail-gateway-8.2-standard_8.2-1_amd64.tar.zst\n\
             system          debian-12-standard_12.12-1_amd64.tar.zst\n\
             system          ubuntu-old_1.0-1_i386.tar.gz\n"
        );
        let v9 = format_available(&idx, Some("system"), 9);
        let first = v9.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                "system          {:<60} amd64",
                "debian-12-standard_12.12-1_amd64.tar.zst"
            )
        );
        assert!(v9.lines().nth(1).unwrap().ends_with(" unknown"));
        assert_eq!(format_available(&idx, Some("turnkeylinux"), 8), "");
    }

    #[test]
    fn list_format() {
        let out = format_list(&[(
            "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst".into(),
            126_649_744,
        )]);
        let mut lines = out.lines();
        assert_eq!(lines.next().unwrap(), format!("{:<60} SIZE  ", "NAME"));
        assert_eq!(
            lines.next().unwrap(),
            format!(
                "{:<60} 120.78MB",
                "local:vztmpl/debian-12-standard_12.12-1_amd64.tar.zst"
            )
        );
    }
}
