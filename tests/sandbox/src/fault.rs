//! Fault injection for reliability tests.
//!
//! Rules come from `$PVE_SANDBOX_FAULTS` (`;`-separated) and the file
//! `<root>/etc/faults` (one per line, `#` comments), environment first. Syntax:
//!
//! ```text
//! <tool> <subcommand|*> fail <exit-code> <text...>   # text to stderr, exit code
//! <tool> <subcommand|*> hang                          # sleep forever
//! <tool> <subcommand|*> garbage                       # junk on stdout, exit 0
//! <tool> <subcommand|*> delay <ms>                    # sleep, then run normally
//! ```
//!
//! `<tool>` is `pct`, `pveam`, `vzdump`, `pvesm`, `pvesh`, `pveversion` or `*`;
//! `<subcommand>` is the tool's first argument (`create`, `get`, or for vzdump
//! the first vmid). A trailing `once` makes the rule fire a single time: its
//! key (`env:<n>` or `file:<n>` plus the rule text) is appended to
//! `<root>/run/faults.used` under a flock. The first matching, unconsumed rule
//! wins. Rules are applied by `main` before any tool runs.

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use crate::error::{PveError, Result};
use crate::node::Node;

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print text to stderr and exit with the code.
    Fail(i32, String),
    /// Never return.
    Hang,
    /// Print junk to stdout and exit 0.
    Garbage,
    /// Sleep this many milliseconds, then proceed.
    Delay(u64),
}

/// One parsed rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Tool name or `*`.
    pub tool: String,
    /// Subcommand or `*`.
    pub sub: String,
    /// The action.
    pub action: Action,
    /// Fire only once.
    pub once: bool,
    /// Identity for `once` bookkeeping.
    pub key: String,
}

/// Parse one rule; `None` (with a message) for malformed lines.
pub fn parse_rule(line: &str, key: String) -> std::result::Result<Rule, String> {
    let line = line.trim();
    let mut it = line.splitn(4, char::is_whitespace);
    let tool = it.next().unwrap_or_default().to_string();
    let sub = it.next().unwrap_or_default().to_string();
    let verb = it.next().unwrap_or_default();
    let rest = it.next().unwrap_or_default().trim().to_string();
    if tool.is_empty() || sub.is_empty() || verb.is_empty() {
        return Err(format!("bad fault rule '{line}'"));
    }
    let (rest, once) = match rest.strip_suffix("once") {
        Some(r) if r.is_empty() || r.ends_with(char::is_whitespace) => (r.trim().to_string(), true),
        _ => (rest, false),
    };
    let action = match verb {
        "fail" => {
            let (code, text) = match rest.split_once(char::is_whitespace) {
                Some((c, t)) => (c, t.trim().to_string()),
                None => (rest.as_str(), String::new()),
            };
            let code: i32 = code
                .parse()
                .map_err(|_| format!("bad exit code in fault rule '{line}'"))?;
            Action::Fail(code, text)
        }
        "hang" => Action::Hang,
        "garbage" => Action::Garbage,
        "delay" => Action::Delay(
            rest.parse()
                .map_err(|_| format!("bad delay in fault rule '{line}'"))?,
        ),
        _ => return Err(format!("unknown fault action '{verb}' in '{line}'")),
    };
    Ok(Rule {
        tool,
        sub,
        action,
        once,
        key: format!("{key} {line}"),
    })
}

/// All rules (environment first, then the file). Malformed rules are reported on stderr and skipped.
pub fn load_rules(node: &Node) -> Vec<Rule> {
    let mut rules = Vec::new();
    if let Ok(env) = std::env::var("PVE_SANDBOX_FAULTS") {
        for (i, r) in env.split(';').enumerate() {
            if r.trim().is_empty() {
                continue;
            }
            match parse_rule(r, format!("env:{i}")) {
                Ok(rule) => rules.push(rule),
                Err(e) => eprintln!("pve-sandbox: {e}"),
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(node.faults_file()) {
        for (i, r) in text.lines().enumerate() {
            let r = r.trim();
            if r.is_empty() || r.starts_with('#') {
                continue;
            }
            match parse_rule(r, format!("file:{i}")) {
                Ok(rule) => rules.push(rule),
                Err(e) => eprintln!("pve-sandbox: {e}"),
            }
        }
    }
    rules
}

/// Apply the first matching rule for `tool` with first argument `sub`.
/// Returns `Ok(())` to proceed; `Err(Exit)` to end the process.
pub fn apply(node: &Node, tool: &str, sub: Option<&str>) -> Result<()> {
    let rules = load_rules(node);
    if rules.is_empty() {
        return Ok(());
    }
    let sub = sub.unwrap_or("");
    for rule in rules {
        if rule.tool != "*" && rule.tool != tool {
            continue;
        }
        if rule.sub != "*" && rule.sub != sub {
            continue;
        }
        if rule.once && !consume(node, &rule.key)? {
            continue;
        }
        return match rule.action {
            Action::Fail(code, text) => Err(PveError::Exit { code, msg: text }),
            Action::Hang => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Action::Garbage => {
                let mut junk = crate::util::random_bytes(96);
                for b in junk.iter_mut() {
                    // keep it printable-ish but never valid table/JSON output
                    *b = b'!' + (*b % 90);
                }
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(b"\x00\x1b[?garbage ");
                let _ = out.write_all(&junk);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
                Err(PveError::Exit {
                    code: 0,
                    msg: String::new(),
                })
            }
            Action::Delay(ms) => {
                std::thread::sleep(Duration::from_millis(ms));
                Ok(())
            }
        };
    }
    Ok(())
}

/// Mark a `once` rule used; false if it already was.
fn consume(node: &Node, key: &str) -> Result<bool> {
    let used = node.faults_used();
    let lockp = used.with_extension("lock");
    let _l = crate::lock::lock_file(&lockp, Duration::from_secs(10))?;
    let text = std::fs::read_to_string(&used).unwrap_or_default();
    if text.lines().any(|l| l == key) {
        return Ok(false);
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&used)
        .map_err(|e| PveError::io("open", &used, e))?;
    writeln!(f, "{key}").map_err(|e| PveError::io("write", &used, e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let r = parse_rule("pct create fail 2 storage is full once", "k".into());
        let r = r.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.action, Action::Fail(2, "storage is full".into()));
        assert!(r.once);
        let r = parse_rule("pvesh * delay 250", "k".into());
        assert_eq!(r.map(|r| r.action), Ok(Action::Delay(250)));
        assert!(parse_rule("pct", "k".into()).is_err());
    }
}
