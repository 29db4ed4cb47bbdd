//! Config templates: `{{ key }}` placeholders rendered from settings.
//!
//! Syntax: `{{ key }}` renders the value as a TOML value (strings quoted
//! and escaped, lists as arrays, integers and booleans bare, durations as
//! their text quoted); `{{ key | raw }}` renders plain text (for unit files
//! and other non-TOML formats); `{{ key | secs }}` renders a duration as
//! integer seconds. An unset optional setting renders as nothing.
//!
//! Invariants: rendering never evaluates anything — a value is text that
//! ends up in a file, quoted for the format the filter names; there is no
//! shell, no expression language, no file inclusion.

use std::collections::BTreeMap;

use super::settings::Setting;

/// How a placeholder renders its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// A TOML value (the default).
    Toml,
    /// Plain text.
    Raw,
    /// A duration as integer seconds.
    Secs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String, Filter),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template line {line}: {message}")]
pub struct TemplateError {
    /// 1-based line within the template.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut consumed = 0usize;
        let line_at = |off: usize| text[..off].matches('\n').count() + 1;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| TemplateError {
                line: line_at(consumed + start),
                message: "'{{' without '}}'".into(),
            })?;
            let inner = after[..end].trim();
            let (name, filter) = match inner.split_once('|') {
                Some((n, f)) => (
                    n.trim(),
                    match f.trim() {
                        "raw" => Filter::Raw,
                        "secs" => Filter::Secs,
                        "toml" => Filter::Toml,
                        other => {
                            return Err(TemplateError {
                                line: line_at(consumed + start),
                                message: format!("unknown filter '{other}'; use raw, secs or toml"),
                            })
                        }
                    },
                ),
                None => (inner, Filter::Toml),
            };
            if !super::manifest::is_setting_key(name) {
                return Err(TemplateError {
                    line: line_at(consumed + start),
                    message: format!("'{name}' is not a variable name"),
                });
            }
            pieces.push(Piece::Var(name.to_string(), filter));
            let used = start + 2 + end + 2;
            consumed += used;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Self { pieces })
    }

    /// The variables it uses, in order, without duplicates.
    pub fn vars(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (v, _) in self.uses() {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    /// Every placeholder with its filter.
    pub fn uses(&self) -> impl Iterator<Item = (&str, Filter)> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v, f) => Some((v.as_str(), *f)),
            Piece::Text(_) => None,
        })
    }

    /// Renders with `vars` (built-ins and settings, secrets included).
    pub fn render(&self, vars: &BTreeMap<String, Setting>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v, f) => {
                    if let Some(val) = vars.get(v) {
                        out.push_str(&format_value(val, *f));
                    }
                }
            }
        }
        out
    }
}

fn format_value(v: &Setting, f: Filter) -> String {
    match (v, f) {
        (Setting::Duration { secs, .. }, Filter::Secs) => secs.to_string(),
        (Setting::Duration { text, .. }, Filter::Raw) | (Setting::Text(text), Filter::Raw) => {
            text.clone()
        }
        (Setting::Text(t), _) | (Setting::Duration { text: t, .. }, _) => toml_string(t),
        (Setting::Cidrs(v), Filter::Raw) => v.join(","),
        (Setting::Cidrs(v), _) => format!(
            "[{}]",
            v.iter()
                .map(|s| toml_string(s))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        (Setting::Bool(b), _) => b.to_string(),
        (Setting::Int(i), _) => i.to_string(),
    }
}

/// A TOML basic string with every special character escaped.
pub fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A stable 64-bit FNV-1a fingerprint, as `fnv1a64:<hex>`: detects changes
/// of rendered configuration (not a security measure).
pub fn fingerprint(parts: &[(&str, &[u8])]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (name, data) in parts {
        for b in name
            .as_bytes()
            .iter()
            .chain([0u8].iter())
            .chain(data.iter())
            .chain([0u8].iter())
        {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("fnv1a64:{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_filters_and_escapes() {
        let t =
            Template::parse("url = {{ url }}\nn = {{n}}\ni = {{ iv | secs }}\nx={{ url | raw }}")
                .unwrap();
        assert_eq!(t.vars(), vec!["url", "n", "iv"]);
        let vars = BTreeMap::from([
            ("url".to_string(), Setting::Text("a\"b $(reboot)".into())),
            ("n".to_string(), Setting::Int(3)),
            (
                "iv".to_string(),
                Setting::Duration {
                    secs: 300,
                    text: "5m".into(),
                },
            ),
        ]);
        assert_eq!(
            t.render(&vars),
            "url = \"a\\\"b $(reboot)\"\nn = 3\ni = 300\nx=a\"b $(reboot)"
        );
        let back: toml::Value = toml::from_str(
            &t.render(&vars)
                .lines()
                .take(3)
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .unwrap();
        assert_eq!(back["url"].as_str(), Some("a\"b $(reboot)"));
    }

    #[test]
    fn bad_templates() {
        assert!(Template::parse("{{ x").is_err());
        assert!(Template::parse("{{ x | shell }}").is_err());
        assert!(Template::parse("{{ ../etc }}").is_err());
    }

    #[test]
    fn fingerprint_is_stable() {
        assert_eq!(fingerprint(&[("a", b"x")]), fingerprint(&[("a", b"x")]));
        assert_ne!(fingerprint(&[("a", b"x")]), fingerprint(&[("a", b"y")]));
    }
}
