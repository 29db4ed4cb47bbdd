//! Proxmox's on-disk CT config format (`/etc/pve/lxc/<vmid>.conf`).
//!
//! Parse and write exactly as `PVE::LXC::Config::{parse,write}_pct_config`
//! do (pve-cli.md §2):
//!
//! * the description is leading `#` lines, URI-escaped per line
//!   ([`encode_text`]); each parsed `#` line contributes its text plus `\n`;
//! * `key: value` lines sorted by key (`digest`, `description` and the
//!   section structure are never written as keys);
//! * raw `lxc.*` keys in file order;
//! * a `[pve:pending]` section (with `delete: a,b`) and one `[snap]` section per
//!   snapshot, sorted by name, each preceded by a blank line.
//!
//! Property strings (`net0`, `rootfs`, `mpN`, `features`, `startup`) have a
//! canonical form ([`PropString::print`]): the schema's default key without
//! `key=`, then required keys, then the rest sorted. [`parse_prop`] validates
//! against [`PropSchema`]s and returns PVE's error texts.
//!
//! Writes are atomic (temp file → fsync → rename, mode 0640).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{PveError, Result};
use crate::node::Node;

/// One section of a CT config: the main one, `[pve:pending]` or a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Section {
    /// `key -> value`; `description` is kept here decoded (with its `\n`s).
    pub props: BTreeMap<String, String>,
    /// Raw `lxc.*` entries in file order.
    pub lxc: Vec<(String, String)>,
}

impl Section {
    /// A value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.get(key).map(String::as_str)
    }
    /// Set a value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.props.insert(key.to_string(), value.into());
    }
    /// Remove a value, returning it.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.props.remove(key)
    }
    /// A boolean property (`1`), false if absent.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key).map(|v| v == "1").unwrap_or(false)
    }
    /// An integer property.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
    /// The `lock:` property.
    pub fn lock(&self) -> Option<&str> {
        self.get("lock")
    }
    /// The hostname, or `CT<vmid>` like PVE.
    pub fn hostname_or_default(&self, vmid: u32) -> String {
        match self.get("hostname") {
            Some(h) => h.chars().filter(|c| !c.is_whitespace()).collect(),
            None => format!("CT{vmid}"),
        }
    }
    /// Whether the CT is unprivileged.
    pub fn unprivileged(&self) -> bool {
        self.flag("unprivileged")
    }
    /// The parsed `rootfs` property string.
    pub fn rootfs(&self) -> Option<PropString> {
        self.get("rootfs")
            .and_then(|v| parse_prop(&ROOTFS_SCHEMA, "rootfs", v).ok())
    }
    /// The parsed `features` property string (empty if unset).
    pub fn features(&self) -> PropString {
        self.get("features")
            .and_then(|v| parse_prop(&FEATURES_SCHEMA, "features", v).ok())
            .unwrap_or_default()
    }
    /// Keys of `netN` entries, in numeric order, with parsed values.
    pub fn nets(&self) -> Vec<(String, PropString)> {
        let mut v: Vec<(u32, String, PropString)> = self
            .props
            .iter()
            .filter_map(|(k, val)| {
                let n = k.strip_prefix("net")?.parse::<u32>().ok()?;
                let p = parse_prop(&NET_SCHEMA, k, val).ok()?;
                Some((n, k.clone(), p))
            })
            .collect();
        v.sort_by_key(|e| e.0);
        v.into_iter().map(|(_, k, p)| (k, p)).collect()
    }
    /// All volume-carrying keys (`rootfs`, `mpN`) with their volume, rootfs first.
    pub fn volumes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(r) = self.rootfs() {
            if let Some(v) = r.get("volume") {
                out.push(("rootfs".to_string(), v.to_string()));
            }
        }
        let mut mps: Vec<(u32, String, String)> = self
            .props
            .iter()
            .filter_map(|(k, val)| {
                let n = k.strip_prefix("mp")?.parse::<u32>().ok()?;
                let p = parse_prop(&MP_SCHEMA, k, val).ok()?;
                Some((n, k.clone(), p.get("volume")?.to_string()))
            })
            .collect();
        mps.sort_by_key(|e| e.0);
        out.extend(mps.into_iter().map(|(_, k, v)| (k, v)));
        for (k, v) in &self.props {
            if k.starts_with("unused") {
                out.push((k.clone(), v.clone()));
            }
        }
        out
    }
}

/// A whole CT config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtConfig {
    /// The applied configuration.
    pub main: Section,
    /// `[pve:pending]`, empty if none (its `delete` key lists pending deletions).
    pub pending: Section,
    /// Snapshot sections by name.
    pub snapshots: BTreeMap<String, Section>,
}

/// Problems found while parsing a config (PVE warns and goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWarning(pub String);

impl CtConfig {
    /// Parse the on-disk text. Lines PVE would warn about are collected in the
    /// second value and otherwise skipped.
    pub fn parse(vmid: u32, raw: &str) -> (CtConfig, Vec<ParseWarning>) {
        let mut res = CtConfig::default();
        let mut warnings = Vec::new();
        // 0 = main, 1 = pending, 2 = snapshot named `snap`
        let mut cur = Section::default();
        let mut cur_kind: (u8, String) = (0, String::new());
        let mut descr = String::new();

        let finish =
            |res: &mut CtConfig, kind: &(u8, String), mut sec: Section, descr: &mut String| {
                if !descr.is_empty() {
                    sec.props
                        .insert("description".into(), std::mem::take(descr));
                }
                match kind.0 {
                    0 => res.main = sec,
                    1 => res.pending = sec,
                    _ => {
                        res.snapshots.insert(kind.1.clone(), sec);
                    }
                }
            };

        for line in raw.split('\n') {
            if line.trim().is_empty() {
                continue;
            }
            if let Some(name) = section_header(line) {
                let sec = std::mem::take(&mut cur);
                finish(&mut res, &cur_kind, sec, &mut descr);
                cur_kind = if name.eq_ignore_ascii_case("pve:pending") {
                    (1, String::new())
                } else {
                    (2, name.to_string())
                };
                continue;
            }
            if let Some(rest) = line.strip_prefix('#') {
                descr.push_str(&decode_text(rest));
                descr.push('\n');
                continue;
            }
            if let Some((k, v)) = parse_lxc_line(line) {
                cur.lxc.push((k, v));
                continue;
            }
            if let Some(v) = line.strip_prefix("description:") {
                let v = v.trim();
                if !v.is_empty() {
                    descr.push_str(&decode_text(v));
                }
                continue;
            }
            if let Some((k, v)) = parse_key_line(line) {
                if k == "delete" && cur_kind.0 != 1 {
                    warnings.push(ParseWarning(format!(
                        "vm {vmid} - property 'delete' is only allowed in [pve:pending]"
                    )));
                    continue;
                }
                cur.props.insert(k, v);
                continue;
            }
            warnings.push(ParseWarning(format!(
                "vm {vmid} - unable to parse config: {line}"
            )));
        }
        finish(&mut res, &cur_kind, cur, &mut descr);
        res.main.props.remove("snapstate");
        (res, warnings)
    }

    /// Serialise like `write_pct_config`.
    pub fn write_string(&self) -> Result<String> {
        let mut raw = section_raw(&self.main)?;
        if !self.pending.props.is_empty() || !self.pending.lxc.is_empty() {
            raw.push_str("\n[pve:pending]\n");
            raw.push_str(&section_raw(&self.pending)?);
        }
        for (name, snap) in &self.snapshots {
            raw.push_str(&format!("\n[{name}]\n"));
            raw.push_str(&section_raw(snap)?);
        }
        Ok(raw)
    }

    /// The config as `pct config` sees it: pending merged in unless `current`.
    pub fn current(&self, current: bool) -> Section {
        let mut sec = self.main.clone();
        if !current {
            for (k, v) in &self.pending.props {
                if k != "delete" {
                    sec.props.insert(k.clone(), v.clone());
                }
            }
            if let Some(del) = self.pending.get("delete") {
                for opt in del.split(',') {
                    let opt = opt.trim().trim_start_matches('!');
                    sec.props.remove(opt);
                }
            }
        }
        sec
    }

    /// The most recent snapshot (the main section's `parent`).
    pub fn parent(&self) -> Option<&str> {
        self.main.get("parent")
    }
}

/// The text of one section (description comments, sorted keys, raw lxc keys).
fn section_raw(sec: &Section) -> Result<String> {
    let mut raw = String::new();
    if let Some(d) = sec.get("description") {
        // Perl's split(/\n/) drops trailing empty fields only.
        let mut pieces: Vec<&str> = d.split('\n').collect();
        while pieces.last() == Some(&"") {
            pieces.pop();
        }
        for line in pieces {
            raw.push('#');
            raw.push_str(&encode_text(line));
            raw.push('\n');
        }
    }
    for (k, v) in &sec.props {
        if matches!(k.as_str(), "digest" | "description" | "snapname") {
            continue;
        }
        if v.contains('\n') {
            return Err(PveError::die(format!(
                "detected invalid newline inside property '{k}'"
            )));
        }
        let _ = writeln!(raw, "{k}: {v}");
    }
    for (k, v) in &sec.lxc {
        let _ = writeln!(raw, "{k}: {v}");
    }
    Ok(raw)
}

fn section_header(line: &str) -> Option<&str> {
    let inner = line.trim_end().strip_prefix('[')?.strip_suffix(']')?;
    if inner.eq_ignore_ascii_case("pve:pending") {
        return Some(inner);
    }
    let mut chars = inner.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() || inner.len() < 2 {
        return None;
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        Some(inner)
    } else {
        None
    }
}

fn parse_lxc_line(line: &str) -> Option<(String, String)> {
    if !line.starts_with("lxc.") {
        return None;
    }
    let end = line
        .find(|c: char| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' || c == '.')
        })
        .unwrap_or(line.len());
    let key = &line[..end];
    let rest = &line[end..];
    let rest = if let Some(r) = rest.strip_prefix(':') {
        r
    } else {
        rest.trim_start().strip_prefix('=')?
    };
    Some((key.to_string(), rest.trim().to_string()))
}

/// `^([a-z][a-z_]*\d*):\s*(.+?)\s*$`
fn parse_key_line(line: &str) -> Option<(String, String)> {
    let (k, v) = line.split_once(':')?;
    let bytes = k.as_bytes();
    if bytes.is_empty() || !bytes[0].is_ascii_lowercase() {
        return None;
    }
    let alpha_end = k
        .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .unwrap_or(k.len());
    if !k[alpha_end..].bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    Some((k.to_string(), v.to_string()))
}

/// Read `<root>/etc/pve/lxc/<vmid>.conf`; a missing file gives PVE's
/// `Configuration file 'nodes/<node>/lxc/<vmid>.conf' does not exist`.
pub fn load(node: &Node, vmid: u32) -> Result<CtConfig> {
    let path = node.conf_path(vmid);
    match fs::read_to_string(&path) {
        Ok(raw) => {
            let (conf, warnings) = CtConfig::parse(vmid, &raw);
            for w in warnings {
                eprintln!("{}", w.0);
            }
            Ok(conf)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(PveError::die(format!(
            "Configuration file '{}' does not exist",
            node.cfs_conf_path(vmid)
        ))),
        Err(e) => Err(PveError::io("read config", path, e)),
    }
}

/// Write the config atomically (callers hold the config flock).
pub fn store(node: &Node, vmid: u32, conf: &CtConfig) -> Result<()> {
    let text = conf.write_string()?;
    write_atomic(&node.conf_path(vmid), text.as_bytes(), 0o640)
}

/// temp file → fsync → rename, with an explicit mode; parent dirs are created.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .ok_or_else(|| PveError::die(format!("no parent dir for '{}'", path.display())))?;
    fs::create_dir_all(dir).map_err(|e| PveError::io("create dir", dir, e))?;
    let fname = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{fname}.tmp.{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(PveError::io("write", path, e));
    }
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `PVE::Tools::encode_text`: UTF-8 bytes outside 0x20–0x24, 0x26–0x39,
/// 0x3b–0x7e become `%XX` (so `%`, `:` and controls are escaped, space is not).
pub fn encode_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        let keep = matches!(b, 0x20..=0x24 | 0x26..=0x39 | 0x3b..=0x7e);
        if keep {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `PVE::Tools::decode_text`: undo `%XX` escapes, then decode UTF-8 (lossy).
pub fn decode_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Normalise a tag list like `PVE::GuestHelpers::get_unique_tags` with the
/// default tag style: split on `,`, `;` or whitespace, check each tag, lower-case,
/// sort, de-duplicate, join with `;`. Error text as the schema check gives it.
pub fn normalize_tags(input: &str) -> std::result::Result<String, String> {
    let mut tags: Vec<String> = Vec::new();
    for t in input.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
        if t.is_empty() {
            continue;
        }
        if !valid_tag(t) {
            return Err("invalid format - invalid characters in tag".into());
        }
        tags.push(t.to_ascii_lowercase());
    }
    tags.sort();
    tags.dedup();
    Ok(tags.join(";"))
}

fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.'))
}

// ---------------------------------------------------------------------------
// Property strings

/// The value type of one property-string key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PropType {
    /// Any string.
    Str,
    /// Boolean, normalised to `0`/`1`.
    Bool,
    /// Integer within bounds.
    Int(i64, i64),
    /// Non-negative number.
    Number,
    /// A disk size (`8G`, `512M`, bytes), normalised by [`format_size`].
    Size,
    /// One of a fixed set.
    Enum(&'static [&'static str]),
    /// `XX:XX:XX:XX:XX:XX`, unicast.
    Mac,
    /// `a.b.c.d/nn`, `dhcp` or `manual`.
    Ip4,
    /// IPv6 CIDR, `auto`, `dhcp` or `manual`.
    Ip6,
    /// An IPv4 address.
    Gw4,
    /// An IPv6 address.
    Gw6,
}

/// One key of a property-string schema.
#[derive(Debug, Clone, Copy)]
pub struct PropKey {
    /// The key.
    pub name: &'static str,
    /// Its type.
    pub ty: PropType,
    /// Must be present.
    pub required: bool,
}

/// A property-string schema.
#[derive(Debug)]
pub struct PropSchema {
    /// The key whose `key=` may be omitted (written first, without `key=`).
    pub default_key: Option<&'static str>,
    /// All keys.
    pub keys: &'static [PropKey],
}

const fn k(name: &'static str, ty: PropType) -> PropKey {
    PropKey {
        name,
        ty,
        required: false,
    }
}
const fn req(name: &'static str, ty: PropType) -> PropKey {
    PropKey {
        name,
        ty,
        required: true,
    }
}

/// The `netN` schema: the PVE 8 keys, plus (in key order) any extra ones.
macro_rules! net_schema {
    ($($extra:expr),*) => {
        PropSchema {
            default_key: None,
            keys: &[
                req("name", PropType::Str),
                k("bridge", PropType::Str),
                k("firewall", PropType::Bool),
                k("gw", PropType::Gw4),
                k("gw6", PropType::Gw6),
                $($extra,)*
                k("hwaddr", PropType::Mac),
                k("ip", PropType::Ip4),
                k("ip6", PropType::Ip6),
                k("link_down", PropType::Bool),
                k("mtu", PropType::Int(64, 65535)),
                k("rate", PropType::Number),
                k("tag", PropType::Int(1, 4094)),
                k("trunks", PropType::Str),
                k("type", PropType::Enum(&["veth"])),
            ],
        }
    };
}

/// `netN` (PVE 8 keys).
pub static NET_SCHEMA: PropSchema = net_schema!();

/// `netN` on PVE 9 (adds `host-managed`).
pub static NET_SCHEMA_9: PropSchema = net_schema!(k("host-managed", PropType::Bool));

/// The `netN` schema of the node's PVE major version.
pub fn net_schema(node: &Node) -> &'static PropSchema {
    if node.pve_major() >= 9 {
        &NET_SCHEMA_9
    } else {
        &NET_SCHEMA
    }
}

/// `rootfs`.
pub static ROOTFS_SCHEMA: PropSchema = PropSchema {
    default_key: Some("volume"),
    keys: &[
        k("volume", PropType::Str),
        k("acl", PropType::Bool),
        k("mountoptions", PropType::Str),
        k("quota", PropType::Bool),
        k("replicate", PropType::Bool),
        k("ro", PropType::Bool),
        k("shared", PropType::Bool),
        k("size", PropType::Size),
    ],
};

/// `mpN`.
pub static MP_SCHEMA: PropSchema = PropSchema {
    default_key: Some("volume"),
    keys: &[
        k("volume", PropType::Str),
        req("mp", PropType::Str),
        k("acl", PropType::Bool),
        k("backup", PropType::Bool),
        k("mountoptions", PropType::Str),
        k("quota", PropType::Bool),
        k("replicate", PropType::Bool),
        k("ro", PropType::Bool),
        k("shared", PropType::Bool),
        k("size", PropType::Size),
    ],
};

/// `features`.
pub static FEATURES_SCHEMA: PropSchema = PropSchema {
    default_key: None,
    keys: &[
        k("force_rw_sys", PropType::Bool),
        k("fuse", PropType::Bool),
        k("keyctl", PropType::Bool),
        k("mknod", PropType::Bool),
        k("mount", PropType::Str),
        k("nesting", PropType::Bool),
    ],
};

/// `startup` (printed in the fixed order `order,up,down`).
pub static STARTUP_SCHEMA: PropSchema = PropSchema {
    default_key: Some("order"),
    keys: &[
        k("order", PropType::Int(0, i64::MAX)),
        k("up", PropType::Int(0, i64::MAX)),
        k("down", PropType::Int(0, i64::MAX)),
    ],
};

/// A parsed property string: normalised values by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropString {
    /// Values by key.
    pub map: BTreeMap<String, String>,
}

impl PropString {
    /// A value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }
    /// Set a value.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.map.insert(key.to_string(), value.into());
    }
    /// A boolean key is `1`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key) == Some("1")
    }

    /// The canonical string: default key bare, then required keys, then the
    /// rest sorted (startup: `order,up,down`).
    pub fn print(&self, schema: &PropSchema) -> String {
        if std::ptr::eq(schema, &STARTUP_SCHEMA) {
            let mut parts = Vec::new();
            for key in ["order", "up", "down"] {
                if let Some(v) = self.get(key) {
                    parts.push(format!("{key}={v}"));
                }
            }
            return parts.join(",");
        }
        let mut parts: Vec<String> = Vec::new();
        let mut done: Vec<&str> = Vec::new();
        if let Some(dk) = schema.default_key {
            if let Some(v) = self.get(dk) {
                parts.push(v.to_string());
                done.push(dk);
            }
        }
        let mut required: Vec<&str> = schema
            .keys
            .iter()
            .filter(|k| k.required)
            .map(|k| k.name)
            .collect();
        required.sort_unstable();
        for r in required {
            if done.contains(&r) {
                continue;
            }
            if let Some(v) = self.get(r) {
                parts.push(format!("{r}={v}"));
                done.push(r);
            }
        }
        for (key, v) in &self.map {
            if done.contains(&key.as_str()) {
                continue;
            }
            parts.push(format!("{key}={v}"));
        }
        parts.join(",")
    }
}

/// Parse and validate a property string against `schema`. `opt` is the option
/// name used in messages (`net0`). The error is the text after `<opt>: `.
pub fn parse_prop(
    schema: &PropSchema,
    opt: &str,
    value: &str,
) -> std::result::Result<PropString, String> {
    let mut res = PropString::default();
    let mut sub_errors: Vec<String> = Vec::new();
    for part in value.split(',') {
        if part.is_empty() {
            continue;
        }
        let (key, val) = match part.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match schema.default_key {
                Some(dk) => (dk.to_string(), part.to_string()),
                None => return Err(
                    "invalid format - value without key, but schema does not define a default key"
                        .to_string(),
                ),
            },
        };
        if res.map.contains_key(&key) {
            return Err(format!(
                "invalid format - duplicate key in comma-separated list property: {key}"
            ));
        }
        let Some(spec) = schema.keys.iter().find(|k| k.name == key) else {
            sub_errors.push(format!(
                "{opt}.{key}: property is not defined in schema and the schema does not allow additional properties"
            ));
            continue;
        };
        match check_value(spec.ty, &val) {
            Ok(v) => {
                res.map.insert(key, v);
            }
            Err(e) => sub_errors.push(format!("{opt}.{key}: {e}")),
        }
    }
    for spec in schema.keys {
        if spec.required && !res.map.contains_key(spec.name) {
            sub_errors.push(format!(
                "{opt}.{}: property is missing and it is not optional",
                spec.name
            ));
        }
    }
    if sub_errors.is_empty() {
        Ok(res)
    } else {
        Err(format!(
            "invalid format - format error\n{}",
            sub_errors.join("\n")
        ))
    }
}

/// Check one scalar against a type, returning the normalised value or PVE's message.
pub fn check_value(ty: PropType, val: &str) -> std::result::Result<String, String> {
    match ty {
        PropType::Str => Ok(val.to_string()),
        PropType::Bool => parse_bool(val)
            .map(|b| if b { "1".into() } else { "0".into() })
            .ok_or_else(|| format!("type check ('boolean') failed - got '{val}'")),
        PropType::Int(min, max) => {
            let n: i64 = val
                .parse()
                .map_err(|_| format!("type check ('integer') failed - got '{val}'"))?;
            if n < min {
                return Err(format!("value must have a minimum value of {min}"));
            }
            if n > max {
                return Err(format!("value must have a maximum value of {max}"));
            }
            Ok(n.to_string())
        }
        PropType::Number => {
            let n: f64 = val
                .parse()
                .map_err(|_| format!("type check ('number') failed - got '{val}'"))?;
            if n < 0.0 {
                return Err("value must have a minimum value of 0".into());
            }
            Ok(val.to_string())
        }
        PropType::Size => parse_size(val)
            .map(format_size)
            .ok_or_else(|| "invalid format - unable to parse size".to_string()),
        PropType::Enum(vals) => {
            if vals.contains(&val) {
                Ok(val.to_string())
            } else {
                Err(format!(
                    "value '{val}' does not have a value in the enumeration '{}'",
                    vals.join(", ")
                ))
            }
        }
        PropType::Mac => {
            let parts: Vec<&str> = val.split(':').collect();
            let ok = parts.len() == 6
                && parts
                    .iter()
                    .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
            let unicast = u8::from_str_radix(parts.first().copied().unwrap_or("01"), 16)
                .map(|b| b & 1 == 0)
                .unwrap_or(false);
            if ok && unicast {
                Ok(val.to_string())
            } else {
                Err("invalid format - value does not look like a valid unicast MAC address".into())
            }
        }
        PropType::Ip4 => {
            if matches!(val, "dhcp" | "manual") || is_cidr4(val) {
                Ok(val.to_string())
            } else {
                Err(
                    "invalid format - value does not look like a valid IPv4 network configuration"
                        .into(),
                )
            }
        }
        PropType::Ip6 => {
            let ok = matches!(val, "auto" | "dhcp" | "manual")
                || val
                    .split_once('/')
                    .map(|(a, p)| {
                        a.parse::<std::net::Ipv6Addr>().is_ok()
                            && p.parse::<u8>().map(|p| p <= 128).unwrap_or(false)
                    })
                    .unwrap_or(false);
            if ok {
                Ok(val.to_string())
            } else {
                Err(
                    "invalid format - value does not look like a valid IPv6 network configuration"
                        .into(),
                )
            }
        }
        PropType::Gw4 => val
            .parse::<std::net::Ipv4Addr>()
            .map(|_| val.to_string())
            .map_err(|_| {
                "invalid format - value does not look like a valid IPv4 address".to_string()
            }),
        PropType::Gw6 => val
            .parse::<std::net::Ipv6Addr>()
            .map(|_| val.to_string())
            .map_err(|_| {
                "invalid format - value does not look like a valid IPv6 address".to_string()
            }),
    }
}

fn is_cidr4(v: &str) -> bool {
    v.split_once('/')
        .map(|(a, p)| {
            a.parse::<std::net::Ipv4Addr>().is_ok()
                && p.parse::<u8>().map(|p| p <= 32).unwrap_or(false)
        })
        .unwrap_or(false)
}

/// `1|0|yes|no|true|false|on|off` (case-insensitive).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// `disk-size`: `\d+(\.\d+)?[KMGT]?` (bytes if no unit).
pub fn parse_size(v: &str) -> Option<u64> {
    let (num, mult) = match v.chars().last()? {
        'K' => (&v[..v.len() - 1], 1u64 << 10),
        'M' => (&v[..v.len() - 1], 1 << 20),
        'G' => (&v[..v.len() - 1], 1 << 30),
        'T' => (&v[..v.len() - 1], 1 << 40),
        _ => (v, 1),
    };
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let f: f64 = num.parse().ok()?;
    if !f.is_finite() || f < 0.0 {
        return None;
    }
    Some((f * mult as f64) as u64)
}

/// `PVE::JSONSchema::format_size`: the largest unit that divides evenly.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u64, char); 4] = [
        (1 << 40, 'T'),
        (1 << 30, 'G'),
        (1 << 20, 'M'),
        (1 << 10, 'K'),
    ];
    for (m, u) in UNITS {
        if bytes >= m && bytes.is_multiple_of(m) {
            return format!("{}{u}", bytes / m);
        }
    }
    bytes.to_string()
}

/// The `pct config` text for a section: sorted keys (description escaped on one
/// line), then raw `lxc.*` keys.
pub fn format_for_pct_config(sec: &Section) -> String {
    let mut out = String::new();
    for (k, v) in &sec.props {
        if k == "digest" {
            continue;
        }
        if k == "description" {
            let _ = writeln!(out, "{k}: {}", encode_text(v));
        } else {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    for (k, v) in &sec.lxc {
        let _ = writeln!(out, "{k}: {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "#web server\n#second%3A line\narch: amd64\nhostname: web01\nmemory: 1024\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:12:34:56,ip=dhcp,type=veth\nostype: debian\nparent: before-upgrade\nrootfs: local-lvm:vm-101-disk-0,size=8G\nswap: 512\nlxc.apparmor.profile: unconfined\n\n[pve:pending]\ndelete: swap\nmemory: 2048\n\n[before-upgrade]\n#pre apt upgrade\narch: amd64\nhostname: web01\nsnaptime: 1714550400\n";

    #[test]
    fn roundtrip() {
        let (c, w) = CtConfig::parse(101, SAMPLE);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.main.get("description"),
            Some("web server\nsecond: line\n")
        );
        assert_eq!(c.main.lxc.len(), 1);
        assert_eq!(c.pending.get("delete"), Some("swap"));
        assert_eq!(
            c.snapshots["before-upgrade"].get("description"),
            Some("pre apt upgrade\n")
        );
        assert_eq!(c.write_string().ok().as_deref(), Some(SAMPLE));
    }

    #[test]
    fn pending_merge() {
        let (c, _) = CtConfig::parse(101, SAMPLE);
        let cur = c.current(false);
        assert_eq!(cur.get("memory"), Some("2048"));
        assert_eq!(cur.get("swap"), None);
        assert_eq!(c.current(true).get("memory"), Some("1024"));
    }

    #[test]
    fn escaping() {
        assert_eq!(encode_text("a b:c%d\né"), "a b%3Ac%25d%0A%C3%A9");
        assert_eq!(decode_text("a b%3Ac%25d%0A%C3%A9"), "a b:c%d\né");
        assert_eq!(decode_text("100%"), "100%");
    }

    #[test]
    fn tags() {
        assert_eq!(normalize_tags("Web,prod web").as_deref(), Ok("prod;web"));
        assert!(normalize_tags("bad!").is_err());
    }

    #[test]
    fn net_canonical() {
        let p = parse_prop(
            &NET_SCHEMA,
            "net0",
            "type=veth,ip=dhcp,bridge=vmbr0,name=eth0,firewall=yes",
        )
        .unwrap_or_default();
        assert_eq!(
            p.print(&NET_SCHEMA),
            "name=eth0,bridge=vmbr0,firewall=1,ip=dhcp,type=veth"
        );
        let e = parse_prop(&NET_SCHEMA, "net0", "bridge=vmbr0,foo=1")
            .err()
            .unwrap_or_default();
        assert!(e.contains("net0.foo: property is not defined"), "{e}");
        assert!(e.contains("net0.name: property is missing"), "{e}");
    }

    #[test]
    fn rootfs_canonical() {
        let p = parse_prop(&ROOTFS_SCHEMA, "rootfs", "size=8192M,local-lvm:vm-1-disk-0")
            .unwrap_or_default();
        assert_eq!(p.print(&ROOTFS_SCHEMA), "local-lvm:vm-1-disk-0,size=8G");
        let s = parse_prop(&STARTUP_SCHEMA, "startup", "up=30,2").unwrap_or_default();
        assert_eq!(s.print(&STARTUP_SCHEMA), "order=2,up=30");
    }
}
