//! Proxmox's backup retention ("prune") algorithm.
//!
//! A faithful re-implementation of pve-storage's `prune_mark_backup_group`
//! and the grouping done by `Plugin::prune_backups` (see `pve-cli.md` §7):
//!
//! * only archives with the standard vzdump name are grouped (by
//!   `<type>/<vmid>`); other names are marked [`Mark::Renamed`] and kept;
//! * archives with a `.protected` sentinel are marked [`Mark::Protected`]
//!   up front, so they are kept and never count toward a keep-N;
//! * with `keep-all=1`, or without any keep option above zero, everything
//!   is kept;
//! * otherwise the options run in the fixed order last, hourly, daily,
//!   weekly, monthly, yearly over the group sorted newest first; each option
//!   only looks at entries no earlier option marked and at periods no earlier
//!   option covered, and stops at the first new period past its count;
//! * whatever is still unmarked at the end is [`Mark::Remove`].
//!
//! Period ids are computed in *local* time (like Perl's `localtime`), through
//! the caller-supplied offset function so tests can pin the time zone.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use thiserror::Error;
use time::{OffsetDateTime, UtcOffset};

/// The keep options in the order Proxmox applies them.
pub const KEEP_ORDER: [&str; 6] = [
    "keep-last",
    "keep-hourly",
    "keep-daily",
    "keep-weekly",
    "keep-monthly",
    "keep-yearly",
];

/// A bad `prune-backups` property string or keep option.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PruneError {
    /// An option name outside the prune-backups schema.
    #[error("invalid format - unknown property '{0}'")]
    UnknownOption(String),
    /// A value that is not a non-negative integer (or a boolean for keep-all).
    #[error("invalid format - {key}: type check ('integer') failed - got '{value}'")]
    BadValue {
        /// the option
        key: String,
        /// what was given
        value: String,
    },
    /// An item without `=`.
    #[error("invalid format - missing value for '{0}'")]
    MissingValue(String),
    /// The same option given twice.
    #[error("invalid format - duplicate key in comma-separated list property: {0}")]
    Duplicate(String),
}

/// The retention settings (`prune-backups` property string).
///
/// Every field is `None` when not given; that matters for the log line,
/// which lists exactly the options that were set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeepOptions {
    /// `keep-all`: keep everything.
    pub keep_all: Option<bool>,
    /// `keep-last`, `keep-hourly`, ... in [`KEEP_ORDER`].
    pub counts: [Option<u64>; 6],
}

impl KeepOptions {
    /// `keep-all=1`, what vzdump uses when nothing is configured.
    pub fn keep_all() -> Self {
        Self {
            keep_all: Some(true),
            counts: [None; 6],
        }
    }

    /// Parses a property string such as `keep-last=3,keep-daily=7`.
    pub fn parse(text: &str) -> Result<Self, PruneError> {
        let mut opts = Self::default();
        let mut seen = HashSet::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| PruneError::MissingValue(item.to_string()))?;
            if !seen.insert(key.to_string()) {
                return Err(PruneError::Duplicate(key.to_string()));
            }
            opts.set(key, value)?;
        }
        Ok(opts)
    }

    /// Sets one option by its name (`keep-last`, `keep-all`, ...).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), PruneError> {
        if key == "keep-all" {
            let v = parse_bool(value).ok_or_else(|| PruneError::BadValue {
                key: key.to_string(),
                value: value.to_string(),
            })?;
            self.keep_all = Some(v);
            return Ok(());
        }
        let idx = KEEP_ORDER
            .iter()
            .position(|k| *k == key)
            .ok_or_else(|| PruneError::UnknownOption(key.to_string()))?;
        let n: u64 = value.parse().map_err(|_| PruneError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
        })?;
        self.counts[idx] = Some(n);
        Ok(())
    }

    /// True when no option at all is set.
    pub fn is_empty(&self) -> bool {
        self.keep_all.is_none() && self.counts.iter().all(Option::is_none)
    }

    /// True when the group is kept whole: `keep-all=1` or no count above 0.
    pub fn keeps_everything(&self) -> bool {
        self.keep_all == Some(true) || self.counts.iter().all(|c| c.unwrap_or(0) == 0)
    }

    /// The sum of all counts (vzdump's "max backup limit"); 0 with keep-all.
    pub fn backup_limit(&self) -> u64 {
        if self.keep_all == Some(true) {
            return 0;
        }
        self.counts.iter().map(|c| c.unwrap_or(0)).sum()
    }

    /// `key=value` pairs sorted by key, as Perl's `sort keys` gives them.
    pub fn sorted_pairs(&self) -> Vec<(String, String)> {
        let mut map = BTreeMap::new();
        if let Some(all) = self.keep_all {
            map.insert("keep-all".to_string(), u8::from(all).to_string());
        }
        for (i, key) in KEEP_ORDER.iter().enumerate() {
            if let Some(n) = self.counts[i] {
                map.insert((*key).to_string(), n.to_string());
            }
        }
        map.into_iter().collect()
    }

    /// The vzdump log form: `keep-daily=7, keep-last=3`.
    pub fn log_string(&self) -> String {
        self.sorted_pairs()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for KeepOptions {
    /// The property-string form, `keep-daily=7,keep-last=3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self
            .sorted_pairs()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        f.write_str(&s)
    }
}

/// Proxmox's boolean spellings.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Some(true),
        "0" | "no" | "false" | "off" => Some(false),
        _ => None,
    }
}

/// What prune decided for one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Covered by a keep option (or keep-all).
    Keep,
    /// Not covered: deleted unless dry-run.
    Remove,
    /// Has a `.protected` sentinel: always kept, never counted.
    Protected,
    /// Not a standard vzdump name: always kept.
    Renamed,
}

impl Mark {
    /// The word `pvesm prune-backups --dry-run` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Keep => "keep",
            Mark::Remove => "remove",
            Mark::Protected => "protected",
            Mark::Renamed => "renamed",
        }
    }
}

/// One backup as prune sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneEntry {
    /// The volume id (`local:backup/...`) or the path (dumpdir mode).
    pub id: String,
    /// Backup time, unix seconds (from the file name when standard).
    pub ctime: i64,
    /// `lxc`, `qemu`, `openvz` or `unknown`.
    pub backup_type: String,
    /// The guest, when known.
    pub vmid: Option<u32>,
    /// The decision; `None` before marking.
    pub mark: Option<Mark>,
}

/// Local time of a unix timestamp, with the offset from `offset_of`.
fn local(ts: i64, offset_of: &dyn Fn(i64) -> UtcOffset) -> OffsetDateTime {
    let utc = OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    utc.to_offset(offset_of(ts))
}

/// The period id of option `idx` (index into [`KEEP_ORDER`]).
fn period_id(idx: usize, ts: i64, offset_of: &dyn Fn(i64) -> UtcOffset) -> String {
    if idx == 0 {
        return ts.to_string();
    }
    let t = local(ts, offset_of);
    let (y, m, d, h) = (t.year(), u8::from(t.month()), t.day(), t.hour());
    match idx {
        1 => format!("{h}/{d}/{m}/{y}"),
        2 => format!("{d}/{m}/{y}"),
        3 => {
            let (iso_year, week, _) = t.to_iso_week_date();
            format!("{week}/{iso_year}")
        }
        4 => format!("{m}/{y}"),
        _ => format!("{y}"),
    }
}

/// One pass of `$prune_mark` for option `idx` with count `keep`.
fn mark_pass(
    list: &mut [&mut PruneEntry],
    keep: u64,
    idx: usize,
    offset_of: &dyn Fn(i64) -> UtcOffset,
) {
    if keep == 0 {
        return;
    }
    let already: HashSet<String> = list
        .iter()
        .filter(|e| e.mark == Some(Mark::Keep))
        .map(|e| period_id(idx, e.ctime, offset_of))
        .collect();
    let mut newly: HashSet<String> = HashSet::new();
    for entry in list.iter_mut() {
        let id = period_id(idx, entry.ctime, offset_of);
        if entry.mark.is_some() || already.contains(&id) {
            continue;
        }
        if newly.contains(&id) {
            entry.mark = Some(Mark::Remove);
        } else {
            if newly.len() as u64 >= keep {
                break;
            }
            newly.insert(id);
            entry.mark = Some(Mark::Keep);
        }
    }
}

/// Marks one backup group (all entries of one `<type>/<vmid>`), in place.
///
/// Entries already marked (protected) keep their mark.
pub fn mark_backup_group(
    group: &mut [PruneEntry],
    keep: &KeepOptions,
    offset_of: &dyn Fn(i64) -> UtcOffset,
) {
    if keep.keeps_everything() {
        for entry in group.iter_mut() {
            if entry.mark.is_none() || entry.mark == Some(Mark::Remove) {
                entry.mark = Some(Mark::Keep);
            }
        }
        return;
    }
    let mut list: Vec<&mut PruneEntry> = group.iter_mut().collect();
    // Perl's sort is stable; newest first.
    list.sort_by_key(|e| std::cmp::Reverse(e.ctime));
    for (idx, count) in keep.counts.iter().enumerate() {
        mark_pass(&mut list, count.unwrap_or(0), idx, offset_of);
    }
    for entry in list.iter_mut() {
        if entry.mark.is_none() {
            entry.mark = Some(Mark::Remove);
        }
    }
}

/// Groups and marks a storage's backup list, like `Plugin::prune_backups`.
///
/// Entries must come with `mark` already set to `Protected` or `Renamed`
/// where that applies (non-standard names have no group). Returns the same
/// entries in their original order, all marked.
pub fn mark_all(
    mut entries: Vec<PruneEntry>,
    keep: &KeepOptions,
    offset_of: &dyn Fn(i64) -> UtcOffset,
) -> Vec<PruneEntry> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.mark == Some(Mark::Renamed) {
            continue;
        }
        let key = match e.vmid {
            Some(v) => format!("{}/{}", e.backup_type, v),
            None => e.backup_type.clone(),
        };
        groups.entry(key).or_default().push(i);
    }
    for idxs in groups.values() {
        let mut group: Vec<PruneEntry> = idxs.iter().map(|&i| entries[i].clone()).collect();
        mark_backup_group(&mut group, keep, offset_of);
        for (slot, marked) in idxs.iter().zip(group) {
            entries[*slot] = marked;
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn utc(_: i64) -> UtcOffset {
        UtcOffset::UTC
    }

    fn entry(ts: OffsetDateTime) -> PruneEntry {
        PruneEntry {
            id: format!("b{}", ts.unix_timestamp()),
            ctime: ts.unix_timestamp(),
            backup_type: "lxc".into(),
            vmid: Some(101),
            mark: None,
        }
    }

    fn marks(entries: &[PruneEntry]) -> Vec<&'static str> {
        entries
            .iter()
            .map(|e| e.mark.map(Mark::as_str).unwrap_or("-"))
            .collect()
    }

    #[test]
    fn parse_and_print() {
        let k = KeepOptions::parse("keep-last=3,keep-daily=7").unwrap();
        assert_eq!(k.counts[0], Some(3));
        assert_eq!(k.counts[2], Some(7));
        assert_eq!(k.log_string(), "keep-daily=7, keep-last=3");
        assert_eq!(k.to_string(), "keep-daily=7,keep-last=3");
        assert_eq!(k.backup_limit(), 10);
        assert!(KeepOptions::parse("keep-foo=1").is_err());
        assert!(KeepOptions::parse("keep-last=x").is_err());
        assert!(KeepOptions::parse("keep-last").is_err());
        assert!(KeepOptions::parse("keep-last=1,keep-last=2").is_err());
        assert!(KeepOptions::parse("keep-all=1").unwrap().keeps_everything());
        assert!(KeepOptions::parse("keep-last=0")
            .unwrap()
            .keeps_everything());
        assert_eq!(KeepOptions::keep_all().log_string(), "keep-all=1");
    }

    #[test]
    fn keep_last() {
        let mut g: Vec<_> = (1..=5)
            .map(|d| entry(datetime!(2024-05-01 10:00 UTC) + time::Duration::days(d)))
            .collect();
        mark_backup_group(&mut g, &KeepOptions::parse("keep-last=2").unwrap(), &utc);
        assert_eq!(marks(&g), ["remove", "remove", "remove", "keep", "keep"]);
    }

    #[test]
    fn daily_keeps_newest_of_each_day() {
        let mut g = vec![
            entry(datetime!(2024-05-01 08:00 UTC)),
            entry(datetime!(2024-05-01 20:00 UTC)),
            entry(datetime!(2024-05-02 08:00 UTC)),
            entry(datetime!(2024-05-02 20:00 UTC)),
            entry(datetime!(2024-05-03 08:00 UTC)),
        ];
        mark_backup_group(&mut g, &KeepOptions::parse("keep-daily=2").unwrap(), &utc);
        // 05-03 and 05-02 are the two newest days; the older 05-02 entry is
        // a duplicate period (remove); 05-01 is past the count (unmarked ->
        // remove).
        assert_eq!(marks(&g), ["remove", "remove", "remove", "keep", "keep"]);
    }

    #[test]
    fn protected_is_not_counted() {
        let mut g = vec![
            entry(datetime!(2024-05-01 10:00 UTC)),
            entry(datetime!(2024-05-02 10:00 UTC)),
            entry(datetime!(2024-05-03 10:00 UTC)),
        ];
        g[2].mark = Some(Mark::Protected);
        mark_backup_group(&mut g, &KeepOptions::parse("keep-last=1").unwrap(), &utc);
        assert_eq!(marks(&g), ["remove", "keep", "protected"]);
    }

    #[test]
    fn keep_all_keeps_and_preserves_protected() {
        let mut g = vec![
            entry(datetime!(2024-05-01 10:00 UTC)),
            entry(datetime!(2024-05-02 10:00 UTC)),
        ];
        g[0].mark = Some(Mark::Protected);
        mark_backup_group(&mut g, &KeepOptions::keep_all(), &utc);
        assert_eq!(marks(&g), ["protected", "keep"]);
    }

    #[test]
    fn weekly_uses_iso_weeks() {
        // 2024-12-30 (Mon) is ISO week 1 of 2025, like 2025-01-05 (Sun);
        // 2024-12-29 (Sun) is week 52 of 2024.
        let mut g = vec![
            entry(datetime!(2024-12-29 10:00 UTC)),
            entry(datetime!(2024-12-30 10:00 UTC)),
            entry(datetime!(2025-01-05 10:00 UTC)),
        ];
        mark_backup_group(&mut g, &KeepOptions::parse("keep-weekly=5").unwrap(), &utc);
        assert_eq!(marks(&g), ["keep", "remove", "keep"]);
    }

    #[test]
    fn later_options_reach_further_back() {
        // keep-last=2 takes the two newest (same day); keep-daily=2 must not
        // re-count that day and keeps the two days before it.
        let mut g = vec![
            entry(datetime!(2024-05-01 10:00 UTC)),
            entry(datetime!(2024-05-02 10:00 UTC)),
            entry(datetime!(2024-05-03 10:00 UTC)),
            entry(datetime!(2024-05-04 09:00 UTC)),
            entry(datetime!(2024-05-04 10:00 UTC)),
        ];
        let k = KeepOptions::parse("keep-last=2,keep-daily=2").unwrap();
        mark_backup_group(&mut g, &k, &utc);
        assert_eq!(marks(&g), ["remove", "keep", "keep", "keep", "keep"]);
    }

    /// The docs' example: keep-last=3, keep-daily=13, keep-yearly=9 over a
    /// daily backup history spanning several years.
    #[test]
    fn doc_example_last3_daily13_yearly9() {
        let start = datetime!(2015-01-01 12:00 UTC);
        let end = datetime!(2024-05-20 12:00 UTC);
        let mut g = Vec::new();
        let mut t = start;
        while t <= end {
            g.push(entry(t));
            t += time::Duration::days(1);
        }
        // Three extra backups on the last day: keep-last takes them.
        g.push(entry(datetime!(2024-05-20 13:00 UTC)));
        g.push(entry(datetime!(2024-05-20 14:00 UTC)));
        let k = KeepOptions::parse("keep-last=3,keep-daily=13,keep-yearly=9").unwrap();
        mark_backup_group(&mut g, &k, &utc);
        let mut kept: Vec<OffsetDateTime> = g
            .iter()
            .filter(|e| e.mark == Some(Mark::Keep))
            .map(|e| OffsetDateTime::from_unix_timestamp(e.ctime).unwrap())
            .collect();
        kept.sort();
        kept.reverse();
        assert_eq!(kept.len(), 3 + 13 + 9);
        // keep-last: the three newest (all of 2024-05-20).
        assert_eq!(kept[0], datetime!(2024-05-20 14:00 UTC));
        assert_eq!(kept[2], datetime!(2024-05-20 12:00 UTC));
        // keep-daily: the 13 days before, 05-19 back to 05-07.
        assert_eq!(kept[3], datetime!(2024-05-19 12:00 UTC));
        assert_eq!(kept[15], datetime!(2024-05-07 12:00 UTC));
        // keep-yearly: 2024 is covered already, so the newest backups of
        // 2023, 2022, ... 2015 (nine years).
        assert_eq!(kept[16], datetime!(2023-12-31 12:00 UTC));
        assert_eq!(kept[24], datetime!(2015-12-31 12:00 UTC));
        assert!(g
            .iter()
            .all(|e| e.mark == Some(Mark::Keep) || e.mark == Some(Mark::Remove)));
    }

    #[test]
    fn mark_all_groups_by_type_and_vmid() {
        let mut a = entry(datetime!(2024-05-01 10:00 UTC));
        let mut b = entry(datetime!(2024-05-02 10:00 UTC));
        let mut c = entry(datetime!(2024-05-01 10:00 UTC));
        c.vmid = Some(102);
        let mut r = entry(datetime!(2024-05-03 10:00 UTC));
        r.mark = Some(Mark::Renamed);
        a.id = "a".into();
        b.id = "b".into();
        let out = mark_all(
            vec![a, b, c, r],
            &KeepOptions::parse("keep-last=1").unwrap(),
            &utc,
        );
        assert_eq!(marks(&out), ["remove", "keep", "keep", "renamed"]);
    }

    #[test]
    fn local_offset_moves_day_boundary() {
        // 23:30 UTC and 00:30 UTC next day are the same day at UTC-2.
        let off = |_: i64| UtcOffset::from_hms(-2, 0, 0).unwrap();
        let mut g = vec![
            entry(datetime!(2024-05-01 23:30 UTC)),
            entry(datetime!(2024-05-02 00:30 UTC)),
        ];
        mark_backup_group(&mut g, &KeepOptions::parse("keep-daily=5").unwrap(), &off);
        assert_eq!(marks(&g), ["remove", "keep"]);
    }
}
