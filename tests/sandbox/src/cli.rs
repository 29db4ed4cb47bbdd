//! Getopt::Long-style option parsing as PVE's `CLIHandler` does it.
//!
//! * `--opt v`, `-opt v`, `--opt=v`; unique prefixes are accepted (`-v` for
//!   `--verbose`), ambiguous ones are reported;
//! * permute mode: options and positional arguments may be mixed; `--` ends
//!   option parsing;
//! * booleans take an optional value (`1|0|yes|no|true|false|on|off`): the next
//!   argument is taken as the value unless it looks like an option — so
//!   `pct destroy --purge 100` really does try to parse `100` as a boolean;
//! * other options take the next argument whatever it looks like;
//! * Getopt complaints (`Unknown option: foo`) go to stderr as they happen,
//!   then the parse fails with `400 unable to parse option`;
//! * then positional arguments are filled in order (`400 not enough
//!   arguments` / `400 too many arguments`), and every value is checked
//!   against its type; all failures are reported together as
//!   `400 Parameter verification failed.` with `key: message` lines.
//!
//! The usage line is attached by [`CmdDef::parse`].

use std::collections::BTreeMap;

use crate::conf::{self, PropSchema};
use crate::error::{PveError, Result};

/// The type of an option or positional argument.
#[derive(Debug, Clone, Copy)]
pub enum OptType {
    /// Boolean with optional value, normalised to `0`/`1`.
    Bool,
    /// Integer within bounds.
    Int(i64, i64),
    /// Non-negative number.
    Number,
    /// Any string.
    Str,
    /// A VM id (100..=999999999).
    VmId,
    /// One of a fixed set.
    Enum(&'static [&'static str]),
    /// A property string, validated and canonicalised against the schema.
    Prop(&'static PropSchema),
    /// A tag list, normalised.
    Tags,
    /// A DNS name (hostname).
    DnsName,
    /// A list of config keys (`--delete`).
    ConfigIdList,
    /// A snapshot name (`[a-z][a-z0-9_-]+`, max 40).
    SnapName,
}

/// One option. `indexed = Some(max)` means `name0..=name<max>` (e.g. `net`).
#[derive(Debug, Clone, Copy)]
pub struct OptDef {
    /// The option's name (without `--`).
    pub name: &'static str,
    /// Its value type.
    pub ty: OptType,
    /// For `netN`-style options: the highest N.
    pub indexed: Option<u32>,
}

impl OptDef {
    /// A plain option.
    pub const fn new(name: &'static str, ty: OptType) -> Self {
        OptDef {
            name,
            ty,
            indexed: None,
        }
    }
    /// An indexed option (`net0`..`net<max>`).
    pub const fn indexed(name: &'static str, ty: OptType, max: u32) -> Self {
        OptDef {
            name,
            ty,
            indexed: Some(max),
        }
    }
}

/// A command's parameter definition.
#[derive(Debug, Clone, Copy)]
pub struct CmdDef<'a> {
    /// The short usage line, e.g. `pct start <vmid> [OPTIONS]`.
    pub usage: &'a str,
    /// Positional parameters in order.
    pub args: &'a [(&'a str, OptType)],
    /// Options.
    pub opts: &'a [OptDef],
    /// Whether trailing arguments are collected (`pct exec ... -- cmd`).
    pub extra_args: bool,
}

/// The parsed command line.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// Positional values by name (validated).
    pub pos: BTreeMap<String, String>,
    /// Option values by full name (validated and normalised; booleans `0`/`1`).
    pub opts: BTreeMap<String, String>,
    /// Trailing arguments (only if [`CmdDef::extra_args`]).
    pub extra: Vec<String>,
}

impl Args {
    /// An option's value.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.opts.get(name).map(String::as_str)
    }
    /// A boolean option (false if absent).
    pub fn flag(&self, name: &str) -> bool {
        self.opt(name) == Some("1")
    }
    /// A positional value (empty if absent; positional args are mandatory).
    pub fn arg(&self, name: &str) -> &str {
        self.pos.get(name).map(String::as_str).unwrap_or("")
    }
    /// The `vmid` positional as a number.
    pub fn vmid(&self) -> u32 {
        self.arg("vmid").parse().unwrap_or(0)
    }
    /// An integer option.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.opt(name).and_then(|v| v.parse().ok())
    }
}

impl CmdDef<'_> {
    fn lookup(&self, name: &str) -> Option<&OptDef> {
        self.opts.iter().find(|d| match d.indexed {
            None => d.name == name,
            Some(max) => name
                .strip_prefix(d.name)
                .and_then(|n| {
                    if n.len() > 1 && n.starts_with('0') {
                        return None;
                    }
                    n.parse::<u32>().ok()
                })
                .map(|n| n <= max)
                .unwrap_or(false),
        })
    }

    /// Parse `argv` (without the tool and subcommand); errors carry the usage line.
    pub fn parse(&self, argv: &[String]) -> Result<Args> {
        self.parse_inner(argv).map_err(|e| e.with_usage(self.usage))
    }

    fn resolve(&self, name: &str) -> std::result::Result<(String, &OptDef), String> {
        if let Some(d) = self.lookup(name) {
            return Ok((name.to_string(), d));
        }
        // Getopt::Long's auto_abbrev over the non-indexed names.
        let cands: Vec<&OptDef> = self
            .opts
            .iter()
            .filter(|d| d.indexed.is_none() && d.name.starts_with(name) && !name.is_empty())
            .collect();
        match cands.len() {
            1 => Ok((cands[0].name.to_string(), cands[0])),
            0 => Err(format!("Unknown option: {name}")),
            _ => {
                let names: Vec<&str> = cands.iter().map(|d| d.name).collect();
                Err(format!("Option {name} is ambiguous ({})", names.join(", ")))
            }
        }
    }

    fn parse_inner(&self, argv: &[String]) -> Result<Args> {
        let mut raw_opts: BTreeMap<String, (String, OptType)> = BTreeMap::new();
        let mut positional: Vec<String> = Vec::new();
        let mut getopt_failed = false;
        let mut i = 0;
        while i < argv.len() {
            let a = &argv[i];
            i += 1;
            if a == "--" {
                positional.extend(argv[i..].iter().cloned());
                break;
            }
            let body = if let Some(b) = a.strip_prefix("--") {
                b
            } else if let Some(b) = a.strip_prefix('-') {
                b
            } else {
                positional.push(a.clone());
                continue;
            };
            if body.is_empty() {
                positional.push(a.clone());
                continue;
            }
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let (full, def) = match self.resolve(name) {
                Ok(r) => r,
                Err(msg) => {
                    eprintln!("{msg}");
                    getopt_failed = true;
                    continue;
                }
            };
            let value = match (def.ty, inline) {
                (_, Some(v)) => v,
                (OptType::Bool, None) => match argv.get(i) {
                    Some(next) if !looks_like_option(next) => {
                        i += 1;
                        next.clone()
                    }
                    _ => String::new(),
                },
                (_, None) => match argv.get(i) {
                    Some(next) => {
                        i += 1;
                        next.clone()
                    }
                    None => {
                        eprintln!("Option {name} requires an argument");
                        getopt_failed = true;
                        continue;
                    }
                },
            };
            raw_opts.insert(full, (value, def.ty));
        }
        if getopt_failed {
            return Err(PveError::bad_request("unable to parse option"));
        }

        let mut args = Args::default();
        let mut errors = BTreeMap::new();
        let mut pos_iter = positional.into_iter();
        for (name, ty) in self.args {
            match pos_iter.next() {
                Some(v) => match check(*ty, name, &v) {
                    Ok(v) => {
                        args.pos.insert(name.to_string(), v);
                    }
                    Err(e) => {
                        errors.insert(name.to_string(), e);
                    }
                },
                None => return Err(PveError::bad_request("not enough arguments")),
            }
        }
        let rest: Vec<String> = pos_iter.collect();
        if !rest.is_empty() {
            if self.extra_args {
                args.extra = rest;
            } else {
                return Err(PveError::bad_request("too many arguments"));
            }
        }
        for (name, (value, ty)) in raw_opts {
            match check(ty, &name, &value) {
                Ok(v) => {
                    args.opts.insert(name, v);
                }
                Err(e) => {
                    errors.insert(name, e);
                }
            }
        }
        if !errors.is_empty() {
            return Err(PveError::params(errors));
        }
        Ok(args)
    }
}

fn looks_like_option(a: &str) -> bool {
    a == "--" || ((a.starts_with("--") && a.len() > 2) || (a.starts_with('-') && a.len() > 1))
}

/// Validate and normalise one value; the error is the text after `key: `.
pub fn check(ty: OptType, name: &str, v: &str) -> std::result::Result<String, String> {
    match ty {
        OptType::Bool => {
            if v.is_empty() {
                return Ok("1".into());
            }
            conf::parse_bool(v)
                .map(|b| if b { "1".into() } else { "0".into() })
                .ok_or_else(|| format!("type check ('boolean') failed - got '{v}'"))
        }
        OptType::Int(min, max) => conf::check_value(conf::PropType::Int(min, max), v),
        OptType::Number => conf::check_value(conf::PropType::Number, v),
        OptType::Str => Ok(v.to_string()),
        OptType::VmId => {
            let n: i64 = v.parse().map_err(|_| {
                "invalid format - value does not look like a valid VM ID".to_string()
            })?;
            if !(100..=999_999_999).contains(&n) {
                return Err("invalid format - value does not look like a valid VM ID".into());
            }
            Ok(n.to_string())
        }
        OptType::Enum(vals) => conf::check_value(conf::PropType::Enum(vals), v),
        OptType::Prop(schema) => conf::parse_prop(schema, name, v).map(|p| p.print(schema)),
        OptType::Tags => conf::normalize_tags(v),
        OptType::DnsName => {
            if is_dns_name(v) {
                Ok(v.to_string())
            } else {
                Err("invalid format - value does not look like a valid DNS name".into())
            }
        }
        OptType::ConfigIdList => {
            let mut out = Vec::new();
            for id in v.split(|c: char| c == ',' || c == ';' || c.is_whitespace()) {
                if id.is_empty() {
                    continue;
                }
                let ok = id
                    .chars()
                    .next()
                    .map(|c| c.is_ascii_lowercase())
                    .unwrap_or(false)
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !ok {
                    return Err(format!("invalid format - invalid configuration ID '{id}'"));
                }
                out.push(id.to_string());
            }
            Ok(out.join(","))
        }
        OptType::SnapName => {
            let ok = v.len() >= 2
                && v.len() <= 40
                && v.chars()
                    .next()
                    .map(|c| c.is_ascii_alphabetic())
                    .unwrap_or(false)
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if ok {
                Ok(v.to_string())
            } else {
                Err(format!("invalid format - invalid configuration ID '{v}'"))
            }
        }
    }
}

/// `pve_verify_dns_name`.
pub fn is_dns_name(v: &str) -> bool {
    if v.is_empty() || v.len() > 255 {
        return false;
    }
    v.split('.').all(|label| {
        let b = label.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static DEF: CmdDef<'static> = CmdDef {
        usage: "pct test <vmid> [OPTIONS]",
        args: &[("vmid", OptType::VmId)],
        opts: &[
            OptDef::new("verbose", OptType::Bool),
            OptDef::new("memory", OptType::Int(16, i64::MAX)),
            OptDef::indexed("net", OptType::Prop(&conf::NET_SCHEMA), 31),
            OptDef::new("force", OptType::Bool),
            OptDef::new("format", OptType::Str),
        ],
        extra_args: true,
    };

    fn sv(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn permute_and_bool() {
        let a = DEF
            .parse(&sv(&["--verbose", "-memory=512", "100", "--", "ls", "-la"]))
            .unwrap_or_default();
        assert_eq!(a.arg("vmid"), "100");
        assert!(a.flag("verbose"));
        assert_eq!(a.opt("memory"), Some("512"));
        assert_eq!(a.extra, sv(&["ls", "-la"]));
    }

    #[test]
    fn bool_eats_positional() {
        let e = DEF.parse(&sv(&["--verbose", "100"]));
        assert!(matches!(e, Err(PveError::Param { .. })));
    }

    #[test]
    fn abbrev() {
        let a = DEF
            .parse(&sv(&["100", "-v", "-mem", "64"]))
            .unwrap_or_default();
        assert!(a.flag("verbose"));
        assert_eq!(a.opt("memory"), Some("64"));
        let e = DEF.parse(&sv(&["100", "--fo"])).err().map(|e| e.render().0);
        assert_eq!(
            e.as_deref(),
            Some("400 unable to parse option\npct test <vmid> [OPTIONS]")
        );
    }

    #[test]
    fn errors() {
        let e = DEF.parse(&sv(&["100", "--memory", "8", "--net0", "foo=1,name=eth0"]));
        let (text, code) = e.err().map(|e| e.render()).unwrap_or_default();
        assert_eq!(code, 255);
        assert!(text.starts_with("400 Parameter verification failed.\nmemory: value must have a minimum value of 16\nnet0: invalid format"), "{text}");
        assert!(text.contains("net0.foo: property is not defined"), "{text}");
        assert!(text.ends_with("\npct test <vmid> [OPTIONS]"));
        let e = DEF.parse(&[]).err().map(|e| e.render().0);
        assert_eq!(
            e.as_deref(),
            Some("400 not enough arguments\npct test <vmid> [OPTIONS]")
        );
    }
}
