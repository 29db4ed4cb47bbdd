//! Schedules in Proxmox's calendar-event syntax (the `schedule` key of
//! `/etc/pve/jobs.cfg`): parsing, normalized rendering and next-run
//! computation.
//!
//! The module is pure: nothing here does I/O except [`system_tz`], which reads
//! the node's time zone.
//!
//! - [`calendar`] owns the grammar: [`CalendarEvent::parse`] turns text such as
//!   `mon..fri 02:30` into a [`CalendarEvent`] (one set of allowed values per
//!   field), or a [`CalendarError`] that names the byte position and what was
//!   expected there. `Display` renders the normalized form; serde uses it.
//! - [`next`] owns time: [`CalendarEvent::next_after`] finds the first
//!   matching instant strictly after a given [`jiff::Zoned`], in that value's
//!   time zone (Proxmox evaluates schedules in the node's local time).
//!
//! Invariants:
//! - Parsing never panics, on any input; every rejection is a
//!   [`CalendarError`] whose position lies inside (or at the end of) the input.
//! - A parsed event is canonical: two expressions that match the same times
//!   compare equal and render the same, and `parse(event.to_string())` gives
//!   `event` back.
//! - [`CalendarEvent::next_after`] returns a time strictly after its argument
//!   that matches every field, and no matching time lies in between. It gives
//!   up with `None` for events that can never fire again (a past date, `*-02-30`,
//!   or anything after the year 2199, systemd's limit); the search jumps field
//!   by field and never scans minute by minute.
//! - Daylight-saving time, in the node's zone: a wall-clock time that does not
//!   exist (spring forward) is skipped, and one that exists twice (fall back)
//!   fires once, at its first occurrence. Both are what systemd does
//!   (`systemd-analyze calendar` agrees). Proxmox's `proxmox-time` also skips
//!   the gap but, through `mktime`, fires twice in the repeated hour; see
//!   [`next`] for the details.

pub mod calendar;
pub mod next;

pub use calendar::{CalendarError, CalendarErrorKind, CalendarEvent, Field};

/// The node's time zone, the one Proxmox evaluates job schedules in.
///
/// Reads `TZ` and `/etc/localtime` (through [`jiff::tz::TimeZone::system`]);
/// falls back to UTC when neither names a usable zone.
pub fn system_tz() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::system()
}

#[cfg(test)]
mod tests;
