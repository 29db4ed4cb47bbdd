//! `pct listsnapshot <vmid>`: a tree, one snapshot per line.
//!
//! Each line is `printf("%s %-Ns %-23s %s\n", prefix, name, time, description)`:
//! the prefix is `` `-> `` with one leading space per depth level, the time is
//! `YYYY-MM-DD HH:MM:SS` (blank for `current`), the description is its first
//! line or `no-description`. The last entry is always `current`.

use super::ParseError;

/// One line of the snapshot tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// Snapshot name (`current` for the running state).
    pub name: String,
    /// Depth in the tree (0 = oldest root).
    pub depth: usize,
    /// Creation time `YYYY-MM-DD HH:MM:SS` (local time); `None` for `current`.
    pub time: Option<String>,
    /// First description line (`no-description` when none).
    pub description: String,
    /// The parent snapshot's name (the nearest shallower entry above).
    pub parent: Option<String>,
}

impl SnapshotEntry {
    /// True for the `current` pseudo-entry.
    pub fn is_current(&self) -> bool {
        self.name == "current" && self.time.is_none()
    }
}

fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Parses `pct listsnapshot` output.
pub fn parse_listsnapshot(text: &str) -> Result<Vec<SnapshotEntry>, ParseError> {
    let mut out: Vec<SnapshotEntry> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let depth = line.len() - line.trim_start_matches(' ').len();
        let rest = line
            .trim_start_matches(' ')
            .strip_prefix("`->")
            .ok_or_else(|| ParseError::new("pct listsnapshot", i + 1, "no '`->' prefix"))?
            .trim_start();
        let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(ParseError::new(
                "pct listsnapshot",
                i + 1,
                "no snapshot name",
            ));
        }
        let rest = rest.trim_start();
        let (time, description) = match rest.get(..19) {
            Some(t) if looks_like_time(t) => (Some(t.to_string()), rest.get(19..).unwrap_or("")),
            _ => (None, rest),
        };
        let parent = out
            .iter()
            .rev()
            .find(|e| e.depth < depth)
            .map(|e| e.name.clone());
        out.push(SnapshotEntry {
            name: name.to_string(),
            depth,
            time,
            description: description.trim().to_string(),
            parent,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;

    #[test]
    fn sample() {
        let s = parse_listsnapshot(fixture!("pct-listsnapshot.txt")).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "before-upgrade");
        assert_eq!(s[0].time.as_deref(), Some("2024-05-01 10:00:00"));
        assert_eq!(s[0].description, "pre apt upgrade");
        assert_eq!(s[0].parent, None);
        assert!(s[1].is_current());
        assert_eq!(s[1].description, "You are here!");
        assert_eq!(s[1].parent.as_deref(), Some("before-upgrade"));
    }

    #[test]
    fn deeper_tree_with_long_name() {
        let s = parse_listsnapshot(fixture!("pct-listsnapshot-tree.txt")).unwrap();
        let names: Vec<_> = s.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "first",
                "second",
                "a-snapshot-name-longer-than-the-column",
                "current"
            ]
        );
        assert_eq!(s[0].description, "no-description");
        assert_eq!(s[2].time.as_deref(), Some("2024-05-02 11:30:00"));
        assert_eq!(s[2].parent.as_deref(), Some("second"));
        assert_eq!(s[3].depth, 3);
        assert!(s[3].is_current());
    }

    #[test]
    fn only_current() {
        let s = parse_listsnapshot(
            "`-> current                                            You are here!\n",
        )
        .unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0].is_current());
        assert!(parse_listsnapshot("garbage\n").is_err());
    }
}
