//! The settings schema: typed keys and the validation of given values.
//!
//! Invariants: [`resolve`] either returns a value for every declared key
//! (given, or its default) or every problem at once, each naming the field
//! (`settings.<key>` / `secrets.<key>`) and what would be valid. Values are
//! single-line, bounded in size, and never interpreted by a shell: they are
//! only ever rendered into files (quoted for TOML) or passed as one argv
//! element.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Deserialize;
use serde_json::Value;

use crate::api::{SettingInfo, SettingKind, SECRET_MASK};

/// Longest string value accepted unless the schema says otherwise (bytes).
pub const DEFAULT_MAX_LEN: usize = 1024;
/// Most entries a `cidr_list` may hold.
pub const MAX_LIST: usize = 256;

/// One key of `[settings]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingDef {
    /// The value's kind.
    #[serde(rename = "type")]
    pub kind: SettingKind,
    /// What it means (shown by `GET /v1/apps/{name}`).
    #[serde(default)]
    pub description: String,
    /// Must be given (no default).
    #[serde(default)]
    pub required: bool,
    /// The default (TOML value of the right kind).
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Given in `secrets`, stored apart, never shown.
    #[serde(default)]
    pub secret: bool,
    /// Smallest value (`int`).
    #[serde(default)]
    pub min: Option<i64>,
    /// Largest value (`int`).
    #[serde(default)]
    pub max: Option<i64>,
    /// Longest text value (bytes); default 1024.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// A validated setting value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `string` or `url`.
    Text(String),
    /// `cidr_list`, normalised (`10.0.0.0/24`).
    Cidrs(Vec<String>),
    /// `duration`, in seconds, with the text as given.
    Duration {
        /// Seconds.
        secs: u64,
        /// As given (`5m`).
        text: String,
    },
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
}

impl Setting {
    /// The value as JSON (for the store and the API).
    pub fn to_json(&self) -> Value {
        match self {
            Setting::Text(s) => Value::String(s.clone()),
            Setting::Cidrs(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
            Setting::Duration { text, .. } => Value::String(text.clone()),
            Setting::Bool(b) => Value::Bool(*b),
            Setting::Int(i) => Value::from(*i),
        }
    }
}

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field (`settings.netbox_url`, `overrides.storage`, `name`).
    pub field: String,
    /// What is wrong and what would be valid.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Settings after validation: every declared key has a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Non-secret values.
    pub values: BTreeMap<String, Setting>,
    /// Secret values (plain text; only for rendering and the secrets store).
    pub secrets: BTreeMap<String, String>,
}

impl Resolved {
    /// The value of `key` (secret or not).
    pub fn get(&self, key: &str) -> Option<Setting> {
        self.values
            .get(key)
            .cloned()
            .or_else(|| self.secrets.get(key).map(|s| Setting::Text(s.clone())))
    }

    /// Every setting as JSON, secrets as `"***"` (what the API shows).
    pub fn masked(&self) -> BTreeMap<String, Value> {
        let mut out: BTreeMap<String, Value> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        for k in self.secrets.keys() {
            out.insert(k.clone(), Value::String(SECRET_MASK.to_string()));
        }
        out
    }

    /// The non-secret values as JSON (what the store keeps).
    pub fn public_json(&self) -> BTreeMap<String, Value> {
        self.values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect()
    }
}

impl SettingDef {
    /// Checks the definition itself (used at manifest load).
    pub fn check(&self) -> Result<(), String> {
        if self.required && self.default.is_some() {
            return Err("a setting is either required or has a default, not both".into());
        }
        if self.secret && self.kind != SettingKind::String {
            return Err("secret settings are of type string".into());
        }
        if self.secret && self.default.is_some() {
            return Err("secret settings have no default".into());
        }
        if let (Some(lo), Some(hi)) = (self.min, self.max) {
            if lo > hi {
                return Err(format!("min {lo} is above max {hi}"));
            }
        }
        if (self.min.is_some() || self.max.is_some()) && self.kind != SettingKind::Int {
            return Err("min/max apply to int settings only".into());
        }
        if let Some(d) = &self.default {
            let json = serde_json::to_value(d).map_err(|e| e.to_string())?;
            self.value(&json)
                .map_err(|e| format!("default is invalid: {e}"))?;
        }
        Ok(())
    }

    fn max_len(&self) -> usize {
        self.max_len.unwrap_or(DEFAULT_MAX_LEN)
    }

    /// Validates one given value; the error says what would be valid.
    pub fn value(&self, v: &Value) -> Result<Setting, String> {
        match self.kind {
            SettingKind::String => text(v, self.max_len()).map(Setting::Text),
            SettingKind::Url => {
                let s = text(v, self.max_len())?;
                check_url(&s)?;
                Ok(Setting::Text(s))
            }
            SettingKind::CidrList => {
                let items: Vec<String> = match v {
                    Value::String(s) => s
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string))
                        .collect::<Option<Vec<_>>>()
                        .ok_or("expected a list of CIDR strings (\"10.0.0.0/24\")")?,
                    _ => return Err("expected a list of CIDR strings (\"10.0.0.0/24\")".into()),
                };
                if items.len() > MAX_LIST {
                    return Err(format!("{} entries; at most {MAX_LIST}", items.len()));
                }
                items
                    .iter()
                    .map(|c| normalize_cidr(c))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Setting::Cidrs)
            }
            SettingKind::Duration => {
                let s = text(v, 32)?;
                let secs = parse_duration(&s).ok_or_else(|| {
                    format!("'{s}' is not a duration; use a number with s, m, h or d (30s, 5m, 1h)")
                })?;
                Ok(Setting::Duration { secs, text: s })
            }
            SettingKind::Bool => v
                .as_bool()
                .map(Setting::Bool)
                .ok_or_else(|| "expected true or false".to_string()),
            SettingKind::Int => {
                let i = v
                    .as_i64()
                    .ok_or_else(|| "expected an integer".to_string())?;
                if let Some(lo) = self.min {
                    if i < lo {
                        return Err(format!("{i} is below the minimum {lo}"));
                    }
                }
                if let Some(hi) = self.max {
                    if i > hi {
                        return Err(format!("{i} is above the maximum {hi}"));
                    }
                }
                Ok(Setting::Int(i))
            }
        }
    }

    /// The catalog's view of this key.
    pub fn info(&self, key: &str) -> SettingInfo {
        SettingInfo {
            key: key.to_string(),
            kind: self.kind,
            description: self.description.clone(),
            required: self.required,
            default: if self.secret {
                None
            } else {
                self.default
                    .as_ref()
                    .and_then(|d| serde_json::to_value(d).ok())
            },
            secret: self.secret,
            min: self.min,
            max: self.max,
        }
    }
}

/// A single-line string of at most `max` bytes without control characters.
fn text(v: &Value, max: usize) -> Result<String, String> {
    let s = v.as_str().ok_or_else(|| "expected a string".to_string())?;
    if s.len() > max {
        return Err(format!("{} bytes; at most {max}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err("control characters (newlines, tabs, NUL) are not allowed".into());
    }
    Ok(s.to_string())
}

/// `http://` or `https://`, a host, no spaces or credentials.
pub fn check_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("'{s}' is not an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') || s.contains(char::is_whitespace) {
        return Err(format!(
            "'{s}' is not a URL with a host (http://netbox.lan:8000)"
        ));
    }
    Ok(())
}

/// Parses `10.0.0.0/24` (IPv4 CIDR) and returns it normalised.
fn normalize_cidr(s: &str) -> Result<String, String> {
    let bad = || format!("'{s}' is not an IPv4 network in CIDR form (10.0.0.0/24)");
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    if prefix > 32 {
        return Err(bad());
    }
    Ok(format!("{addr}/{prefix}"))
}

/// `30s`, `5m`, `1h`, `1d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 9 {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Validates `given` settings and `secrets` against `schema`. With
/// `current` (apply), absent secrets keep their current values.
pub fn resolve(
    schema: &BTreeMap<String, SettingDef>,
    given: &BTreeMap<String, Value>,
    secrets: &BTreeMap<String, String>,
    current_secrets: Option<&BTreeMap<String, String>>,
) -> Result<Resolved, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut out = Resolved::default();
    let keys: Vec<&str> = schema
        .iter()
        .filter(|(_, d)| !d.secret)
        .map(|(k, _)| k.as_str())
        .collect();
    let secret_keys: Vec<&str> = schema
        .iter()
        .filter(|(_, d)| d.secret)
        .map(|(k, _)| k.as_str())
        .collect();
    for k in given.keys() {
        match schema.get(k) {
            None => errs.push(FieldError::new(
                format!("settings.{}", clip(k)),
                format!("unknown setting; this app has: {}", list(&keys)),
            )),
            Some(d) if d.secret => errs.push(FieldError::new(
                format!("settings.{k}"),
                "is a secret: pass it in `secrets`, not `settings`",
            )),
            Some(_) => {}
        }
    }
    for k in secrets.keys() {
        match schema.get(k) {
            Some(d) if d.secret => {}
            Some(_) => errs.push(FieldError::new(
                format!("secrets.{k}"),
                "is not a secret: pass it in `settings`",
            )),
            None => errs.push(FieldError::new(
                format!("secrets.{}", clip(k)),
                format!("unknown secret; this app has: {}", list(&secret_keys)),
            )),
        }
    }
    for (k, d) in schema {
        if d.secret {
            let v = secrets
                .get(k)
                .cloned()
                .or_else(|| current_secrets.and_then(|c| c.get(k).cloned()));
            match v {
                Some(v) => match text(&Value::String(v.clone()), d.max_len()) {
                    Ok(v) if !v.is_empty() => {
                        out.secrets.insert(k.clone(), v);
                    }
                    Ok(_) => {
                        errs.push(FieldError::new(format!("secrets.{k}"), "must not be empty"))
                    }
                    Err(m) => errs.push(FieldError::new(format!("secrets.{k}"), m)),
                },
                None if d.required => errs.push(FieldError::new(
                    format!("secrets.{k}"),
                    format!("required: {}", d.description),
                )),
                None => {}
            }
            continue;
        }
        let given_v = given.get(k);
        let default_v = d
            .default
            .as_ref()
            .and_then(|t| serde_json::to_value(t).ok());
        match given_v.or(default_v.as_ref()) {
            Some(v) => match d.value(v) {
                Ok(s) => {
                    out.values.insert(k.clone(), s);
                }
                Err(m) => errs.push(FieldError::new(format!("settings.{k}"), m)),
            },
            None if d.required => errs.push(FieldError::new(
                format!("settings.{k}"),
                format!(
                    "required ({:?}): {}",
                    d.kind,
                    if d.description.is_empty() {
                        "no default"
                    } else {
                        &d.description
                    }
                ),
            )),
            None => {}
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// A key as shown in an error: at most 64 characters, printable.
fn clip(k: &str) -> String {
    let s: String = k.chars().filter(|c| !c.is_control()).take(64).collect();
    if s.len() < k.len() {
        format!("{s}…")
    } else {
        s
    }
}

fn list(keys: &[&str]) -> String {
    if keys.is_empty() {
        "none".to_string()
    } else {
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(kind: SettingKind) -> SettingDef {
        SettingDef {
            kind,
            description: String::new(),
            required: false,
            default: None,
            secret: false,
            min: None,
            max: None,
            max_len: None,
        }
    }

    #[test]
    fn each_kind_validates() {
        assert!(def(SettingKind::Url).value(&json!("http://x:8000")).is_ok());
        assert!(def(SettingKind::Url).value(&json!("ftp://x")).is_err());
        assert!(def(SettingKind::Url).value(&json!("http://")).is_err());
        assert_eq!(
            def(SettingKind::CidrList).value(&json!("10.0.0.0/24, 192.168.1.0/24")),
            Ok(Setting::Cidrs(vec![
                "10.0.0.0/24".into(),
                "192.168.1.0/24".into()
            ]))
        );
        assert!(def(SettingKind::CidrList)
            .value(&json!(["10.0.0.0/33"]))
            .is_err());
        assert_eq!(parse_duration("5m"), Some(300));
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("-1s"), None);
        assert!(def(SettingKind::Bool).value(&json!("true")).is_err());
        let mut i = def(SettingKind::Int);
        i.min = Some(1);
        i.max = Some(10);
        assert!(i.value(&json!(11)).is_err());
        assert!(i.value(&json!(0)).is_err());
        assert_eq!(i.value(&json!(5)), Ok(Setting::Int(5)));
        assert!(def(SettingKind::String).value(&json!("a\nb")).is_err());
        assert!(def(SettingKind::String)
            .value(&json!("x".repeat(1025)))
            .is_err());
        // Shell metacharacters are just text.
        assert!(def(SettingKind::String)
            .value(&json!("$(reboot); `id` | rm -rf /"))
            .is_ok());
    }

    #[test]
    fn resolve_reports_every_problem() {
        let mut schema = BTreeMap::new();
        let mut url = def(SettingKind::Url);
        url.required = true;
        schema.insert("url".to_string(), url);
        let mut tok = def(SettingKind::String);
        tok.secret = true;
        tok.required = true;
        schema.insert("token".to_string(), tok);
        let mut iv = def(SettingKind::Duration);
        iv.default = Some(toml::Value::String("5m".into()));
        schema.insert("interval".to_string(), iv);
        let given = BTreeMap::from([
            ("interval".to_string(), json!("soon")),
            ("nope".to_string(), json!(1)),
        ]);
        let errs = resolve(&schema, &given, &BTreeMap::new(), None).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "settings.nope",
                "settings.interval",
                "secrets.token",
                "settings.url"
            ]
        );
        let ok = resolve(
            &schema,
            &BTreeMap::from([("url".to_string(), json!("http://n"))]),
            &BTreeMap::from([("token".to_string(), "s3cret".to_string())]),
            None,
        )
        .unwrap();
        assert_eq!(ok.masked()["token"], json!("***"));
        assert_eq!(ok.masked()["interval"], json!("5m"));
    }
}
