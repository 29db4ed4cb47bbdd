//! `pct list`.
//!
//! Format `"%-10s %-10s %-12s %-20s\n"` (columns at offsets 0/11/22/35), every
//! line padded with trailing spaces; no header at all when there are no CTs.
//! The Lock column is blank when unlocked, and a long lock name
//! (`snapshot-delete`) or hostname overflows its column, so fixed offsets are
//! not trusted: fields are whitespace-separated tokens, and because a hostname
//! never contains whitespace and is never empty, 3 tokens mean "no lock" and 4
//! tokens mean "locked".

use super::ParseError;
use crate::pve::types::CtState;

/// One row of `pct list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PctListEntry {
    /// Container id.
    pub vmid: u32,
    /// Run state.
    pub status: CtState,
    /// Config lock, if any.
    pub lock: Option<String>,
    /// Hostname (or `CT<vmid>`).
    pub name: String,
}

/// Parses `pct list` output.
pub fn parse_pct_list(text: &str) -> Result<Vec<PctListEntry>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        if lineno == 1 && tokens.first() == Some(&"VMID") {
            continue;
        }
        let (vmid, status, lock, name) = match tokens.as_slice() {
            [v, s, n] => (v, s, None, n),
            [v, s, l, n] => (v, s, Some(*l), n),
            _ => {
                return Err(ParseError::new(
                    "pct list",
                    lineno,
                    format!("expected 3 or 4 columns: '{line}'"),
                ))
            }
        };
        let vmid = vmid
            .parse()
            .map_err(|_| ParseError::new("pct list", lineno, format!("bad vmid '{vmid}'")))?;
        out.push(PctListEntry {
            vmid,
            status: CtState::parse(status),
            lock: lock.map(str::to_string),
            name: name.to_string(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn sample_with_blank_lock_and_trailing_spaces() {
        let l = parse_pct_list(fixture!("pct-list.txt")).unwrap();
        assert_eq!(
            l,
            vec![
                PctListEntry {
                    vmid: 100,
                    status: CtState::Running,
                    lock: None,
                    name: "web01".into()
                },
                PctListEntry {
                    vmid: 101,
                    status: CtState::Stopped,
                    lock: Some("backup".into()),
                    name: "db01".into()
                },
            ]
        );
    }

    #[test]
    fn empty_output_has_no_header() {
        assert_eq!(
            parse_pct_list(fixture!("pct-list-empty.txt")).unwrap(),
            vec![]
        );
        assert_eq!(parse_pct_list("\n").unwrap(), vec![]);
    }

    #[test]
    fn long_names_and_long_locks_overflow_columns() {
        let l = parse_pct_list(fixture!("pct-list-long.txt")).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].name, "a-very-long-hostname-for-testing.example");
        assert_eq!(l[0].lock, None);
        assert_eq!(l[1].lock.as_deref(), Some("snapshot-delete"));
        assert_eq!(l[1].name, "x");
        assert_eq!(l[2].vmid, 999_999_999);
        assert_eq!(l[2].lock.as_deref(), Some("mounted"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_pct_list("abc running web\n").is_err());
        assert!(parse_pct_list("100 running\n").is_err());
    }
}
