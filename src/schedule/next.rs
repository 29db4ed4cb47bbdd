//! Next-run computation: [`CalendarEvent::next_after`].
//!
//! The search runs on wall-clock time in the evaluation zone (the zone of the
//! given time, or UTC for a ` UTC` event) and jumps field by field, from the
//! year down to the second, to the next allowed value, the way Proxmox's
//! `compute_next_event` does; it never scans minute by minute. Years stop at
//! 2199, so every search ends.
//!
//! Daylight-saving time. Each matching wall-clock time is turned into an
//! instant:
//! - it does not exist (spring forward, e.g. 02:30 on the last Sunday of March
//!   in `Europe/Berlin`): **skipped**, the next run is the next matching time
//!   that exists (a daily `02:30` job runs the next day). Proxmox does the
//!   same: its `mktime` normalization turns 02:30 into 03:30, which no longer
//!   matches the hour, so the search moves on; systemd skips it as well.
//! - it exists twice (fall back, e.g. 02:30 on the last Sunday of October):
//!   it fires **once, at the first occurrence** (summer time), and nothing
//!   fires for wall-clock times repeated in the second pass: an every-15-minutes
//!   job pauses for that hour. This is systemd's behaviour (checked with
//!   `systemd-analyze calendar`). Proxmox differs here: its `TmEditor` carries
//!   `tm_isdst` into `mktime`, so after the 02:30 summer-time run, "03:00
//!   summer time" normalizes to 02:00 winter time and 02:30 fires a second
//!   time an hour later (reproduced with glibc's `mktime`). Running a backup
//!   job twice in one night is the worse outcome, so this module follows
//!   systemd.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan, Zoned};

use super::calendar::{CalendarEvent, Field};

/// Bound on field-jumping steps for one wall-clock search. Real expressions
/// need a few hundred at most (an impossible date walks every year to 2199 in
/// about four steps a year); the bound only guards against mistakes.
const MAX_STEPS: usize = 100_000;

/// Bound on wall-clock matches rejected for DST (each rejection jumps past
/// the transition, so two or three suffice in practice).
const MAX_DST_SKIPS: usize = 1_000;

impl CalendarEvent {
    /// The first time strictly after `after` that matches, in `after`'s time
    /// zone (or UTC for a ` UTC` event; the result is always in `after`'s
    /// zone). `None` when the event never fires again (a past date, an
    /// impossible date like `*-02-30`, or beyond the year 2199).
    ///
    /// Daylight-saving gaps are skipped and repeated hours fire once; see the
    /// module docs.
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let tz = if self.utc {
            TimeZone::UTC
        } else {
            after.time_zone().clone()
        };
        let after_ts = after.timestamp();
        let wall = after_ts.to_zoned(tz.clone()).datetime();
        // Events have whole-second resolution: the next candidate is the next
        // whole second, which is strictly after `after` even with nanoseconds.
        let mut start = wall
            .with()
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.second())
            .ok()?;
        for _ in 0..MAX_DST_SKIPS {
            let candidate = self.next_wall_at_or_after(start)?;
            let ambiguous = tz.to_ambiguous_timestamp(candidate);
            let next_start = match ambiguous.offset() {
                AmbiguousOffset::Unambiguous { offset } => {
                    let ts = offset.to_timestamp(candidate).ok()?;
                    if ts > after_ts {
                        return Some(ts.to_zoned(after.time_zone().clone()));
                    }
                    // Only reachable right after a fold, from its second pass.
                    candidate.checked_add(1.second()).ok()?
                }
                AmbiguousOffset::Gap { after: offset, .. } => {
                    // The wall time does not exist: resume where the clock
                    // lands after the jump.
                    let transition = next_transition(&tz, offset.to_timestamp(candidate).ok()?);
                    let resume = transition.map(|t| t.to_zoned(tz.clone()).datetime());
                    later(candidate.checked_add(1.second()).ok()?, resume)
                }
                AmbiguousOffset::Fold { before, after: _ } => {
                    let first = before.to_timestamp(candidate).ok()?;
                    if first > after_ts {
                        return Some(first.to_zoned(after.time_zone().clone()));
                    }
                    // `after` lies in the repeated stretch, past this time's
                    // first occurrence: nothing fires until the wall clock
                    // leaves the repeated stretch.
                    let transition = next_transition(&tz, first);
                    let resume = transition.map(|t| t.to_zoned(TimeZone::fixed(before)).datetime());
                    later(candidate.checked_add(1.second()).ok()?, resume)
                }
            };
            start = next_start;
        }
        None
    }

    /// The next `count` runs after `after` (fewer if the event ends).
    pub fn upcoming(&self, after: &Zoned, count: usize) -> Vec<Zoned> {
        let mut runs: Vec<Zoned> = Vec::with_capacity(count.min(64));
        while runs.len() < count {
            let base = runs.last().unwrap_or(after);
            match self.next_after(base) {
                Some(next) => runs.push(next),
                None => break,
            }
        }
        runs
    }

    /// The first matching wall-clock time at or after `start` (ignoring time
    /// zones), or `None` if there is none up to the year 2199.
    pub(super) fn next_wall_at_or_after(&self, start: DateTime) -> Option<DateTime> {
        let mut c = Cursor::new(start)?;
        for _ in 0..MAX_STEPS {
            if c.year > Field::Year.max() {
                return None;
            }
            let year = self.years.next_at_or_after(c.year)?;
            if year != c.year {
                c.set_year(year);
            }
            match self.months.next_at_or_after(c.month) {
                Some(month) if month == c.month => {}
                Some(month) => {
                    c.month = month;
                    c.day = 1;
                    c.midnight();
                }
                None => {
                    c.set_year(c.year + 1);
                    continue;
                }
            }
            let month_len = days_in_month(c.year, c.month)?;
            match self
                .days
                .next_at_or_after(c.day)
                .filter(|&d| d <= month_len)
            {
                Some(day) if day == c.day => {}
                Some(day) => {
                    c.day = day;
                    c.midnight();
                }
                None => {
                    c.next_month();
                    continue;
                }
            }
            let weekday = weekday(c.year, c.month, c.day)?;
            if self.weekdays >> weekday & 1 == 0 {
                let ahead = (1..7u32)
                    .find(|n| self.weekdays >> ((weekday + n) % 7) & 1 == 1)
                    .unwrap_or(7);
                c.day += ahead;
                c.midnight();
                if c.day > month_len {
                    c.next_month();
                }
                continue;
            }
            match self.hours.next_at_or_after(c.hour) {
                Some(hour) if hour == c.hour => {}
                Some(hour) => {
                    c.hour = hour;
                    c.minute = 0;
                    c.second = 0;
                }
                None => {
                    c.next_day(month_len);
                    continue;
                }
            }
            match self.minutes.next_at_or_after(c.minute) {
                Some(minute) if minute == c.minute => {}
                Some(minute) => {
                    c.minute = minute;
                    c.second = 0;
                }
                None => {
                    c.next_hour(month_len);
                    continue;
                }
            }
            match self.seconds.next_at_or_after(c.second) {
                Some(second) => c.second = second,
                None => {
                    c.next_minute(month_len);
                    continue;
                }
            }
            return c.to_datetime();
        }
        None
    }
}

/// A wall-clock position that may be momentarily out of range (day past the
/// month's end, hour 24) until the next step normalizes it.
struct Cursor {
    year: u32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Cursor {
    fn new(dt: DateTime) -> Option<Self> {
        let mut c = Cursor {
            year: 0,
            month: 1,
            day: 1,
            hour: 0,
            minute: 0,
            second: 0,
        };
        // Before year 0 (no allowed year) the search starts at 0-01-01.
        if let Ok(year) = u32::try_from(dt.year()) {
            c.year = year;
            c.month = u32::try_from(dt.month()).ok()?;
            c.day = u32::try_from(dt.day()).ok()?;
            c.hour = u32::try_from(dt.hour()).ok()?;
            c.minute = u32::try_from(dt.minute()).ok()?;
            c.second = u32::try_from(dt.second()).ok()?;
        }
        Some(c)
    }

    fn midnight(&mut self) {
        self.hour = 0;
        self.minute = 0;
        self.second = 0;
    }

    fn set_year(&mut self, year: u32) {
        self.year = year;
        self.month = 1;
        self.day = 1;
        self.midnight();
    }

    fn next_month(&mut self) {
        if self.month >= 12 {
            self.set_year(self.year + 1);
        } else {
            self.month += 1;
            self.day = 1;
            self.midnight();
        }
    }

    fn next_day(&mut self, month_len: u32) {
        if self.day >= month_len {
            self.next_month();
        } else {
            self.day += 1;
            self.midnight();
        }
    }

    fn next_hour(&mut self, month_len: u32) {
        if self.hour >= 23 {
            self.next_day(month_len);
        } else {
            self.hour += 1;
            self.minute = 0;
            self.second = 0;
        }
    }

    fn next_minute(&mut self, month_len: u32) {
        if self.minute >= 59 {
            self.next_hour(month_len);
        } else {
            self.minute += 1;
            self.second = 0;
        }
    }

    fn to_datetime(&self) -> Option<DateTime> {
        let small = |v: u32| i8::try_from(v).ok();
        DateTime::new(
            i16::try_from(self.year).ok()?,
            small(self.month)?,
            small(self.day)?,
            small(self.hour)?,
            small(self.minute)?,
            small(self.second)?,
            0,
        )
        .ok()
    }
}

fn date(year: u32, month: u32, day: u32) -> Option<Date> {
    Date::new(
        i16::try_from(year).ok()?,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
    )
    .ok()
}

fn days_in_month(year: u32, month: u32) -> Option<u32> {
    u32::try_from(date(year, month, 1)?.days_in_month()).ok()
}

/// 0 = Monday .. 6 = Sunday, as the weekday mask counts.
fn weekday(year: u32, month: u32, day: u32) -> Option<u32> {
    u32::try_from(date(year, month, day)?.weekday().to_monday_zero_offset()).ok()
}

/// The zone's first transition strictly after `ts`.
fn next_transition(tz: &TimeZone, ts: Timestamp) -> Option<Timestamp> {
    tz.following(ts).next().map(|t| t.timestamp())
}

/// `resume` if it is later than `fallback`, else `fallback`.
fn later(fallback: DateTime, resume: Option<DateTime>) -> DateTime {
    match resume {
        Some(resume) if resume > fallback => resume,
        _ => fallback,
    }
}
