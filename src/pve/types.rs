//! Typed values shared by the wrappers and the parsers: network devices,
//! container features, mount volumes, tags, statuses.
//!
//! Property strings (`net0`, `rootfs`, `features`) are parsed into these types
//! and compared as types, never as strings: PVE re-serialises them in its own
//! canonical order and fills in values (a random `hwaddr`, `type=veth`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::pve::parse::ParseError;

/// Splits a property string (`name=eth0,bridge=vmbr0`) into `(key, value)` pairs.
/// A part without `=` gets key `None` (the schema's default key, e.g. the volume).
pub fn parse_property_string(s: &str) -> Vec<(Option<&str>, &str)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (Some(k), v),
            None => (None, p),
        })
        .collect()
}

fn parse_bool(what: &'static str, v: &str) -> Result<bool, ParseError> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(ParseError::new(what, 0, format!("not a boolean: '{v}'"))),
    }
}

fn parse_num<T: std::str::FromStr>(what: &'static str, v: &str) -> Result<T, ParseError> {
    v.parse()
        .map_err(|_| ParseError::new(what, 0, format!("not a number: '{v}'")))
}

fn b(v: bool) -> &'static str {
    if v {
        "1"
    } else {
        "0"
    }
}

/// An IPv4 address with prefix length, e.g. `192.168.1.50/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0–32.
    pub prefix: u8,
}

/// An IPv6 address with prefix length, e.g. `fd00::5/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The address.
    pub addr: Ipv6Addr,
    /// Prefix length, 0–128.
    pub prefix: u8,
}

fn split_cidr<'a>(what: &'static str, s: &'a str) -> Result<(&'a str, u8), ParseError> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| ParseError::new(what, 0, format!("missing /prefix in '{s}'")))?;
    Ok((a, parse_num(what, p)?))
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (a, prefix) = split_cidr("IPv4 CIDR", s)?;
        if prefix > 32 {
            return Err(ParseError::new(
                "IPv4 CIDR",
                0,
                format!("prefix too long in '{s}'"),
            ));
        }
        Ok(Self {
            addr: parse_num("IPv4 CIDR", a)?,
            prefix,
        })
    }
}

impl std::str::FromStr for Ipv6Cidr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (a, prefix) = split_cidr("IPv6 CIDR", s)?;
        if prefix > 128 {
            return Err(ParseError::new(
                "IPv6 CIDR",
                0,
                format!("prefix too long in '{s}'"),
            ));
        }
        Ok(Self {
            addr: parse_num("IPv6 CIDR", a)?,
            prefix,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How a container interface gets its IPv4 address (`ip=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv4Config {
    /// `ip=dhcp`.
    Dhcp,
    /// `ip=manual`: PVE leaves the address alone.
    Manual,
    /// A static address.
    Static(Ipv4Cidr),
}

/// How a container interface gets its IPv6 address (`ip6=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ipv6Config {
    /// `ip6=auto` (SLAAC).
    Auto,
    /// `ip6=dhcp`.
    Dhcp,
    /// `ip6=manual`.
    Manual,
    /// A static address.
    Static(Ipv6Cidr),
}

impl fmt::Display for Ipv4Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv4Config::Dhcp => f.write_str("dhcp"),
            Ipv4Config::Manual => f.write_str("manual"),
            Ipv4Config::Static(c) => c.fmt(f),
        }
    }
}

impl fmt::Display for Ipv6Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv6Config::Auto => f.write_str("auto"),
            Ipv6Config::Dhcp => f.write_str("dhcp"),
            Ipv6Config::Manual => f.write_str("manual"),
            Ipv6Config::Static(c) => c.fmt(f),
        }
    }
}

impl std::str::FromStr for Ipv4Config {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "dhcp" => Ipv4Config::Dhcp,
            "manual" => Ipv4Config::Manual,
            _ => Ipv4Config::Static(s.parse()?),
        })
    }
}

impl std::str::FromStr for Ipv6Config {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Ok(match s {
            "auto" => Ipv6Config::Auto,
            "dhcp" => Ipv6Config::Dhcp,
            "manual" => Ipv6Config::Manual,
            _ => Ipv6Config::Static(s.parse()?),
        })
    }
}

/// A MAC address, kept upper-case with colons as PVE writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts
                .next()
                .filter(|p| p.len() == 2)
                .ok_or_else(|| ParseError::new("MAC address", 0, format!("bad MAC '{s}'")))?;
            *byte = u8::from_str_radix(p, 16)
                .map_err(|_| ParseError::new("MAC address", 0, format!("bad MAC '{s}'")))?;
        }
        if parts.next().is_some() {
            return Err(ParseError::new("MAC address", 0, format!("bad MAC '{s}'")));
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02X}:{b:02X}:{c:02X}:{d:02X}:{e:02X}:{g:02X}")
    }
}

/// A container network device (`netN`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetSpec {
    /// Interface name inside the CT (`eth0`). Required by PVE.
    pub name: String,
    /// Host bridge (`vmbr0`).
    pub bridge: Option<String>,
    /// IPv4 configuration; `None` = unset.
    pub ip: Option<Ipv4Config>,
    /// IPv4 gateway.
    pub gw: Option<Ipv4Addr>,
    /// IPv6 configuration; `None` = unset (no IPv6 config).
    pub ip6: Option<Ipv6Config>,
    /// IPv6 gateway.
    pub gw6: Option<Ipv6Addr>,
    /// MAC address; PVE generates `BC:24:11:..` when unset.
    pub hwaddr: Option<MacAddr>,
    /// Use the PVE firewall on this device.
    pub firewall: Option<bool>,
    /// VLAN tag.
    pub tag: Option<u16>,
    /// MTU.
    pub mtu: Option<u16>,
    /// Rate limit in MB/s.
    pub rate: Option<String>,
    /// Link is down.
    pub link_down: Option<bool>,
    /// VLAN trunks (`a;b`).
    pub trunks: Option<String>,
    /// PVE 9: the host runs the DHCP client for this device.
    pub host_managed: Option<bool>,
    /// Device type; PVE forces `veth`.
    pub kind: Option<String>,
    /// Keys this layer does not know, kept verbatim.
    pub other: BTreeMap<String, String>,
}

impl NetSpec {
    /// A device `name` on `bridge` with no other settings.
    pub fn new(name: impl Into<String>, bridge: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bridge: Some(bridge.into()),
            ..Self::default()
        }
    }

    /// Parses a `netN` property string in any key order.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut n = NetSpec::default();
        let mut have_name = false;
        for (k, v) in parse_property_string(s) {
            let what = "net property";
            match k {
                Some("name") | None => {
                    n.name = v.to_string();
                    have_name = true;
                }
                Some("bridge") => n.bridge = Some(v.to_string()),
                Some("ip") => n.ip = Some(v.parse()?),
                Some("gw") => n.gw = Some(parse_num(what, v)?),
                Some("ip6") => n.ip6 = Some(v.parse()?),
                Some("gw6") => n.gw6 = Some(parse_num(what, v)?),
                Some("hwaddr") => n.hwaddr = Some(v.parse()?),
                Some("firewall") => n.firewall = Some(parse_bool(what, v)?),
                Some("tag") => n.tag = Some(parse_num(what, v)?),
                Some("mtu") => n.mtu = Some(parse_num(what, v)?),
                Some("rate") => n.rate = Some(v.to_string()),
                Some("link_down") => n.link_down = Some(parse_bool(what, v)?),
                Some("trunks") => n.trunks = Some(v.to_string()),
                Some("host-managed") => n.host_managed = Some(parse_bool(what, v)?),
                Some("type") => n.kind = Some(v.to_string()),
                Some(k) => {
                    n.other.insert(k.to_string(), v.to_string());
                }
            }
        }
        if !have_name || n.name.is_empty() {
            return Err(ParseError::new(
                "net property",
                0,
                format!("no name= in '{s}'"),
            ));
        }
        Ok(n)
    }

    /// Renders the property string for `--netN` (PVE's canonical key order).
    pub fn to_property_string(&self) -> String {
        let mut parts = vec![format!("name={}", self.name)];
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        push("bridge", self.bridge.clone());
        push("firewall", self.firewall.map(|v| b(v).to_string()));
        push("gw", self.gw.map(|v| v.to_string()));
        push("gw6", self.gw6.map(|v| v.to_string()));
        push("host-managed", self.host_managed.map(|v| b(v).to_string()));
        push("hwaddr", self.hwaddr.map(|v| v.to_string()));
        push("ip", self.ip.map(|v| v.to_string()));
        push("ip6", self.ip6.map(|v| v.to_string()));
        push("link_down", self.link_down.map(|v| b(v).to_string()));
        push("mtu", self.mtu.map(|v| v.to_string()));
        push("rate", self.rate.clone());
        push("tag", self.tag.map(|v| v.to_string()));
        push("trunks", self.trunks.clone());
        push("type", self.kind.clone());
        for (k, v) in &self.other {
            parts.push(format!("{k}={v}"));
        }
        parts.join(",")
    }

    /// True when `self` (what was asked for) is satisfied by `actual` (what PVE
    /// reports): every field set here must be equal there; PVE-filled fields
    /// (`hwaddr`, `type`) left unset here are ignored.
    pub fn is_satisfied_by(&self, actual: &NetSpec) -> bool {
        fn ok<T: PartialEq>(want: &Option<T>, got: &Option<T>) -> bool {
            want.is_none() || want == got
        }
        self.name == actual.name
            && ok(&self.bridge, &actual.bridge)
            && ok(&self.ip, &actual.ip)
            && ok(&self.gw, &actual.gw)
            && ok(&self.ip6, &actual.ip6)
            && ok(&self.gw6, &actual.gw6)
            && ok(&self.hwaddr, &actual.hwaddr)
            && (self.firewall.unwrap_or(false) == actual.firewall.unwrap_or(false))
            && ok(&self.tag, &actual.tag)
            && ok(&self.mtu, &actual.mtu)
            && ok(&self.rate, &actual.rate)
            && ok(&self.trunks, &actual.trunks)
            && ok(&self.host_managed, &actual.host_managed)
    }
}

/// Container features (`features:`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Features {
    /// `nesting=1`: needed by systemd guests.
    pub nesting: bool,
    /// `keyctl=1`.
    pub keyctl: bool,
    /// `fuse=1`.
    pub fuse: bool,
    /// `mknod=1`.
    pub mknod: bool,
    /// `force_rw_sys=1`.
    pub force_rw_sys: bool,
    /// Allowed filesystem types for `mount=` (privileged CTs).
    pub mount: Vec<String>,
}

impl Features {
    /// Features for a systemd guest: `nesting=1` only.
    pub fn systemd() -> Self {
        Self {
            nesting: true,
            ..Self::default()
        }
    }

    /// Parses a `features` property string.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut f = Features::default();
        for (k, v) in parse_property_string(s) {
            let what = "features";
            match k {
                Some("nesting") => f.nesting = parse_bool(what, v)?,
                Some("keyctl") => f.keyctl = parse_bool(what, v)?,
                Some("fuse") => f.fuse = parse_bool(what, v)?,
                Some("mknod") => f.mknod = parse_bool(what, v)?,
                Some("force_rw_sys") => f.force_rw_sys = parse_bool(what, v)?,
                Some("mount") => {
                    f.mount = v
                        .split(';')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect()
                }
                // Unknown future features are ignored, not fatal.
                _ => {}
            }
        }
        Ok(f)
    }

    /// Renders the enabled features, or `None` if none is enabled.
    pub fn to_property_string(&self) -> Option<String> {
        let mut parts = Vec::new();
        for (k, on) in [
            ("force_rw_sys", self.force_rw_sys),
            ("fuse", self.fuse),
            ("keyctl", self.keyctl),
            ("mknod", self.mknod),
        ] {
            if on {
                parts.push(format!("{k}=1"));
            }
        }
        if !self.mount.is_empty() {
            parts.push(format!("mount={}", self.mount.join(";")));
        }
        if self.nesting {
            parts.push("nesting=1".to_string());
        }
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

/// A mounted volume as shown in `rootfs:`/`mpN:` (`local-lvm:vm-101-disk-0,size=8G`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MountVolume {
    /// The volume id or host path.
    pub volume: String,
    /// Mount point inside the CT (`mp=`), absent for rootfs.
    pub mp: Option<String>,
    /// Size with unit as PVE shows it (`8G`).
    pub size: Option<String>,
    /// All other keys, verbatim.
    pub other: BTreeMap<String, String>,
}

impl MountVolume {
    /// Parses a `rootfs`/`mpN` property string.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let mut m = MountVolume::default();
        for (k, v) in parse_property_string(s) {
            match k {
                None | Some("volume") => m.volume = v.to_string(),
                Some("mp") => m.mp = Some(v.to_string()),
                Some("size") => m.size = Some(v.to_string()),
                Some(k) => {
                    m.other.insert(k.to_string(), v.to_string());
                }
            }
        }
        if m.volume.is_empty() {
            return Err(ParseError::new("volume", 0, format!("no volume in '{s}'")));
        }
        Ok(m)
    }

    /// The storage id part of the volume (`local-lvm`), if it is a volume id.
    pub fn storage(&self) -> Option<&str> {
        self.volume
            .split_once(':')
            .map(|(s, _)| s)
            .filter(|_| !self.volume.starts_with('/'))
    }

    /// The size in bytes (`8G` → 8 GiB), if known.
    pub fn size_bytes(&self) -> Option<u64> {
        parse_disk_size(self.size.as_deref()?)
    }
}

/// Parses a PVE disk size (`8G`, `512M`, `1T`, `1024K`, bare = bytes).
pub fn parse_disk_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (s.get(..s.len() - 1)?, 1u64 << 10),
        'M' | 'm' => (s.get(..s.len() - 1)?, 1 << 20),
        'G' | 'g' => (s.get(..s.len() - 1)?, 1 << 30),
        'T' | 't' => (s.get(..s.len() - 1)?, 1 << 40),
        _ => (s, 1),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n.checked_mul(mult);
    }
    let f: f64 = num.parse().ok()?;
    let bytes = f * mult as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// True when `tag` is a valid PVE tag (`[a-z0-9_][a-z0-9_+.-]*`, any case).
pub fn is_valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '.' | '-'))
}

/// Normalises a tag list as PVE stores it: split on `,`, `;` or whitespace,
/// lower-case, sort, de-duplicate. `"Web,prod web"` → `["prod", "web"]`.
pub fn normalize_tags(s: &str) -> Vec<String> {
    let mut tags: Vec<String> = s
        .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect();
    tags.sort();
    tags.dedup();
    tags
}

/// Renders tags for `--tags` (normalised, `;`-joined).
pub fn render_tags<S: AsRef<str>>(tags: &[S]) -> String {
    let joined: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
    normalize_tags(&joined.join(";")).join(";")
}

/// Decodes PVE's percent-escaped description (`hello%0Aworld%0A`); bytes are
/// UTF-8 (`%C3%A9` → `é`). Invalid escapes are kept literally, invalid UTF-8 is
/// replaced.
pub fn decode_description(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) == Some(&b'%') {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        if let Some(&c) = bytes.get(i) {
            out.push(c);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A container's run state as reported by `pct list`/`pct status`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CtState {
    /// Running.
    Running,
    /// Stopped.
    Stopped,
    /// Not known (e.g. `/cluster/resources` before pvestatd has data).
    Unknown,
    /// A value this layer does not know, kept verbatim.
    Other(String),
}

impl CtState {
    /// Maps the tools' status word.
    pub fn parse(s: &str) -> Self {
        match s {
            "running" => CtState::Running,
            "stopped" => CtState::Stopped,
            "unknown" => CtState::Unknown,
            other => CtState::Other(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net0_canonical_order_parses_to_same_value() {
        let ours = NetSpec {
            ip: Some("192.168.1.50/24".parse().unwrap()),
            gw: Some(Ipv4Addr::new(192, 168, 1, 1)),
            firewall: Some(true),
            ..NetSpec::new("eth0", "vmbr0")
        };
        let rendered = ours.to_property_string();
        assert_eq!(
            rendered,
            "name=eth0,bridge=vmbr0,firewall=1,gw=192.168.1.1,ip=192.168.1.50/24"
        );
        // What PVE writes back: canonical order plus hwaddr and type.
        let back = NetSpec::parse(
            "name=eth0,bridge=vmbr0,firewall=1,gw=192.168.1.1,hwaddr=BC:24:11:5E:7A:01,ip=192.168.1.50/24,type=veth",
        )
        .unwrap();
        assert_ne!(back, ours);
        assert!(ours.is_satisfied_by(&back));
        // Any key order gives the same typed value.
        let shuffled = NetSpec::parse(
            "type=veth,ip=192.168.1.50/24,hwaddr=bc:24:11:5e:7a:01,gw=192.168.1.1,firewall=1,bridge=vmbr0,name=eth0",
        )
        .unwrap();
        assert_eq!(back, shuffled);
        assert_eq!(back.hwaddr.unwrap().to_string(), "BC:24:11:5E:7A:01");
    }

    #[test]
    fn net_ip_variants() {
        let n = NetSpec::parse("name=eth0,bridge=vmbr0,ip=dhcp,ip6=auto,tag=20,mtu=1450").unwrap();
        assert_eq!(n.ip, Some(Ipv4Config::Dhcp));
        assert_eq!(n.ip6, Some(Ipv6Config::Auto));
        assert_eq!(n.tag, Some(20));
        assert_eq!(n.mtu, Some(1450));
        let n = NetSpec::parse("name=eth1,ip=manual,ip6=fd00::5/64,gw6=fd00::1,host-managed=1")
            .unwrap();
        assert_eq!(n.ip, Some(Ipv4Config::Manual));
        assert_eq!(
            n.ip6,
            Some(Ipv6Config::Static("fd00::5/64".parse().unwrap()))
        );
        assert_eq!(n.host_managed, Some(true));
        assert!(NetSpec::parse("bridge=vmbr0").is_err());
        assert!(NetSpec::parse("name=eth0,ip=300.1.1.1/24").is_err());
        assert!(NetSpec::parse("name=eth0,ip=1.1.1.1/33").is_err());
    }

    #[test]
    fn features_roundtrip() {
        let f = Features::parse("keyctl=1,nesting=1").unwrap();
        assert!(f.nesting && f.keyctl && !f.fuse);
        assert_eq!(
            f.to_property_string().as_deref(),
            Some("keyctl=1,nesting=1")
        );
        assert_eq!(Features::default().to_property_string(), None);
        let f = Features::parse("mount=nfs;cifs,nesting=0").unwrap();
        assert_eq!(f.mount, vec!["nfs", "cifs"]);
        assert!(!f.nesting);
    }

    #[test]
    fn rootfs_volume() {
        let m = MountVolume::parse("local-lvm:vm-101-disk-0,size=8G").unwrap();
        assert_eq!(m.volume, "local-lvm:vm-101-disk-0");
        assert_eq!(m.storage(), Some("local-lvm"));
        assert_eq!(m.size_bytes(), Some(8 << 30));
        let m =
            MountVolume::parse("volume=local:101/vm-101-disk-0.raw,mp=/data,size=512M,backup=1")
                .unwrap();
        assert_eq!(m.mp.as_deref(), Some("/data"));
        assert_eq!(m.size_bytes(), Some(512 << 20));
        assert_eq!(m.other.get("backup").map(String::as_str), Some("1"));
        assert_eq!(parse_disk_size("1.5G"), Some(1610612736));
    }

    #[test]
    fn tags_normalisation() {
        assert_eq!(normalize_tags("Web,prod web"), vec!["prod", "web"]);
        assert_eq!(normalize_tags("prod;web"), vec!["prod", "web"]);
        assert_eq!(normalize_tags("b a\tc,,;a"), vec!["a", "b", "c"]);
        assert!(normalize_tags("").is_empty());
        assert_eq!(render_tags(&["Web", "prod", "web"]), "prod;web");
        assert!(is_valid_tag("my_tag.1+x-y"));
        assert!(!is_valid_tag("-bad"));
        assert!(!is_valid_tag("sp ace"));
        assert!(!is_valid_tag(""));
    }

    #[test]
    fn description_decoding() {
        assert_eq!(decode_description("managed by foo%0A"), "managed by foo\n");
        assert_eq!(decode_description("hello%0Aworld%0A"), "hello\nworld\n");
        assert_eq!(
            decode_description("line%3A with colon %25"),
            "line: with colon %"
        );
        assert_eq!(decode_description("caf%C3%A9"), "café");
        assert_eq!(decode_description("bad %ZZ and %"), "bad %ZZ and %");
        assert_eq!(decode_description("%FF"), "\u{FFFD}");
    }
}
