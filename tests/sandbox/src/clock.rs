//! The sandbox clock: real time unless overridden, and local-time formatting.
//!
//! `PVE_SANDBOX_NOW` (unix seconds) wins, then the file `<root>/etc/clock`
//! (one integer), then the system clock. Everything that stamps a time
//! (vzdump names, snapshot `snaptime`, log lines) must go through [`now`], so
//! retention tests can walk the calendar. Local time follows the process's
//! `TZ` like Perl's `localtime`.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{OffsetDateTime, UtcOffset};

use crate::node::Node;

/// The current time in unix seconds, honouring the overrides.
pub fn now(node: &Node) -> i64 {
    if let Ok(v) = std::env::var("PVE_SANDBOX_NOW") {
        if let Ok(t) = v.trim().parse::<i64>() {
            return t;
        }
    }
    if let Ok(text) = std::fs::read_to_string(node.clock_file()) {
        if let Ok(t) = text.trim().parse::<i64>() {
            return t;
        }
    }
    real_now()
}

/// The system clock in unix seconds.
pub fn real_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `ts` as a local date-time (UTC if the local offset can't be determined).
pub fn local(ts: i64) -> OffsetDateTime {
    let utc = OffsetDateTime::from_unix_timestamp(ts).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let off = UtcOffset::local_offset_at(utc).unwrap_or(UtcOffset::UTC);
    utc.to_offset(off)
}

/// `YYYY-MM-DD HH:MM:SS` in local time (task logs, listsnapshot).
pub fn fmt_datetime(ts: i64) -> String {
    fmt_local(ts, '-', ' ', ':')
}

/// `YYYY_MM_DD-HH_MM_SS` in local time (vzdump archive names).
pub fn fmt_vzdump(ts: i64) -> String {
    fmt_local(ts, '_', '-', '_')
}

/// `YYYY<d>MM<d>DD<mid>HH<t>MM<t>SS` in local time.
fn fmt_local(ts: i64, d: char, mid: char, t: char) -> String {
    let l = local(ts);
    format!(
        "{:04}{d}{:02}{d}{:02}{mid}{:02}{t}{:02}{t}{:02}",
        l.year(),
        u8::from(l.month()),
        l.day(),
        l.hour(),
        l.minute(),
        l.second()
    )
}

/// Parse `YYYY_MM_DD-HH_MM_SS` (local time) back to unix seconds.
pub fn parse_vzdump(stamp: &str) -> Option<i64> {
    let b = stamp.as_bytes();
    if b.len() != 19 || b[4] != b'_' || b[7] != b'_' || b[10] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| stamp.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?)
        .ok()?;
    let tod = time::Time::from_hms(
        u8::try_from(h).ok()?,
        u8::try_from(mi).ok()?,
        u8::try_from(s).ok()?,
    )
    .ok()?;
    let naive = time::PrimitiveDateTime::new(date, tod);
    // Guess the offset at that moment from the UTC reading, then correct once (DST edges).
    let guess = naive.assume_utc();
    let off = UtcOffset::local_offset_at(guess).unwrap_or(UtcOffset::UTC);
    let t = naive.assume_offset(off);
    let off2 = UtcOffset::local_offset_at(t).unwrap_or(off);
    Some(naive.assume_offset(off2).unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vzdump_roundtrip() {
        let ts = 1714557600;
        let s = fmt_vzdump(ts);
        assert_eq!(parse_vzdump(&s), Some(ts));
        assert_eq!(parse_vzdump("2024-05-01"), None);
    }
}
