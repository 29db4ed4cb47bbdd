//! Tests of the schedule module: the documented examples as a table, special
//! words, errors with positions, normalization, DST, a cross-check against
//! `systemd-analyze calendar`, and property tests.

#![allow(clippy::unwrap_used)]

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ToSpan, Zoned};
use proptest::prelude::*;

use super::{CalendarErrorKind, CalendarEvent, Field};

fn ev(expr: &str) -> CalendarEvent {
    CalendarEvent::parse(expr).unwrap_or_else(|e| panic!("{e}"))
}

fn zoned(text: &str) -> Zoned {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The next `n` runs, as `YYYY-MM-DDTHH:MM:SS±HH:MM` (offset included so DST
/// cases are unambiguous).
fn runs(expr: &str, base: &str, n: usize) -> Vec<String> {
    ev(expr)
        .upcoming(&zoned(base), n)
        .iter()
        .map(|z| z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
        .collect()
}

/// Wednesday.
const BASE: &str = "2024-05-15T10:07:30[UTC]";

fn check_table(base: &str, table: &[(&str, &[&str])]) {
    for (expr, expected) in table {
        let expected: Vec<String> = expected.iter().map(|s| format!("{s}+00:00")).collect();
        assert_eq!(
            runs(expr, base, expected.len().max(1)),
            expected,
            "{expr} after {base}"
        );
    }
}

#[test]
fn documented_examples() {
    // Every example of pve-cli.md "Calendar-event schedule syntax", from a
    // Wednesday 10:07:30 UTC.
    check_table(
        BASE,
        &[
            (
                "mon..fri",
                &[
                    "2024-05-16T00:00:00",
                    "2024-05-17T00:00:00",
                    "2024-05-20T00:00:00",
                ],
            ),
            (
                "sat,sun",
                &[
                    "2024-05-18T00:00:00",
                    "2024-05-19T00:00:00",
                    "2024-05-25T00:00:00",
                ],
            ),
            (
                "12:05",
                &[
                    "2024-05-15T12:05:00",
                    "2024-05-16T12:05:00",
                    "2024-05-17T12:05:00",
                ],
            ),
            (
                "*/5",
                &[
                    "2024-05-15T10:10:00",
                    "2024-05-15T10:15:00",
                    "2024-05-15T10:20:00",
                ],
            ),
            (
                "0/5",
                &[
                    "2024-05-15T10:10:00",
                    "2024-05-15T10:15:00",
                    "2024-05-15T10:20:00",
                ],
            ),
            (
                "*/15",
                &[
                    "2024-05-15T10:15:00",
                    "2024-05-15T10:30:00",
                    "2024-05-15T10:45:00",
                ],
            ),
            (
                "mon..wed 30/10",
                &[
                    "2024-05-15T10:30:00",
                    "2024-05-15T10:40:00",
                    "2024-05-15T10:50:00",
                    "2024-05-15T11:30:00",
                ],
            ),
            (
                "mon..fri 8..17,22:0/15",
                &[
                    "2024-05-15T10:15:00",
                    "2024-05-15T10:30:00",
                    "2024-05-15T10:45:00",
                    "2024-05-15T11:00:00",
                ],
            ),
            (
                "fri 12..13:5/20",
                &[
                    "2024-05-17T12:05:00",
                    "2024-05-17T12:25:00",
                    "2024-05-17T12:45:00",
                    "2024-05-17T13:05:00",
                    "2024-05-17T13:25:00",
                    "2024-05-17T13:45:00",
                    "2024-05-24T12:05:00",
                ],
            ),
            (
                "12/2:5",
                &[
                    "2024-05-15T12:05:00",
                    "2024-05-15T14:05:00",
                    "2024-05-15T16:05:00",
                    "2024-05-15T18:05:00",
                    "2024-05-15T20:05:00",
                    "2024-05-15T22:05:00",
                    "2024-05-16T12:05:00",
                ],
            ),
            (
                "*",
                &[
                    "2024-05-15T10:08:00",
                    "2024-05-15T10:09:00",
                    "2024-05-15T10:10:00",
                ],
            ),
            (
                "*-05",
                &[
                    "2024-06-05T00:00:00",
                    "2024-07-05T00:00:00",
                    "2024-08-05T00:00:00",
                ],
            ),
            (
                "Sat *-1..7 15:00",
                &[
                    "2024-06-01T15:00:00",
                    "2024-07-06T15:00:00",
                    "2024-08-03T15:00:00",
                ],
            ),
            ("2015-10-21", &[]),
            (
                "sun 01:00",
                &[
                    "2024-05-19T01:00:00",
                    "2024-05-26T01:00:00",
                    "2024-06-02T01:00:00",
                ],
            ),
            (
                "mon..fri 02:30",
                &[
                    "2024-05-16T02:30:00",
                    "2024-05-17T02:30:00",
                    "2024-05-20T02:30:00",
                ],
            ),
            (
                "daily",
                &[
                    "2024-05-16T00:00:00",
                    "2024-05-17T00:00:00",
                    "2024-05-18T00:00:00",
                ],
            ),
        ],
    );
}

#[test]
fn special_words() {
    check_table(
        BASE,
        &[
            ("minutely", &["2024-05-15T10:08:00", "2024-05-15T10:09:00"]),
            ("hourly", &["2024-05-15T11:00:00", "2024-05-15T12:00:00"]),
            ("daily", &["2024-05-16T00:00:00", "2024-05-17T00:00:00"]),
            ("weekly", &["2024-05-20T00:00:00", "2024-05-27T00:00:00"]),
            ("monthly", &["2024-06-01T00:00:00", "2024-07-01T00:00:00"]),
            ("yearly", &["2025-01-01T00:00:00", "2026-01-01T00:00:00"]),
            ("annually", &["2025-01-01T00:00:00", "2026-01-01T00:00:00"]),
            (
                "quarterly",
                &[
                    "2024-07-01T00:00:00",
                    "2024-10-01T00:00:00",
                    "2025-01-01T00:00:00",
                ],
            ),
            (
                "semiannually",
                &["2024-07-01T00:00:00", "2025-01-01T00:00:00"],
            ),
            (
                "semi-annually",
                &["2024-07-01T00:00:00", "2025-01-01T00:00:00"],
            ),
            ("daily UTC", &["2024-05-16T00:00:00"]),
        ],
    );
}

#[test]
fn proxmox_semantics() {
    // Cases Proxmox's own tests pin down, re-derived by hand; the base is
    // Thursday 1970-01-01 unless given.
    let thu = "1970-01-01T00:00:00[UTC]";
    check_table(
        thu,
        &[
            ("0", &["1970-01-01T01:00:00"]),
            ("*:0", &["1970-01-01T01:00:00"]),
            ("*:*:*", &["1970-01-01T00:00:01"]),
            ("*:3:5", &["1970-01-01T00:03:05"]),
            ("mon 2:50", &["1970-01-05T02:50:00"]),
            ("thu", &["1970-01-08T00:00:00"]),
            (
                "4..10/2:0",
                &[
                    "1970-01-01T04:00:00",
                    "1970-01-01T06:00:00",
                    "1970-01-01T08:00:00",
                    "1970-01-01T10:00:00",
                    "1970-01-02T04:00:00",
                ],
            ),
            (
                "10,5:8,4",
                &[
                    "1970-01-01T05:04:00",
                    "1970-01-01T05:08:00",
                    "1970-01-01T10:04:00",
                ],
            ),
            (
                "6,4..10:23,5/5",
                &["1970-01-01T04:05:00", "1970-01-01T04:10:00"],
            ),
            ("02-28", &["1970-02-28T00:00:00"]),
            ("02-29", &["1972-02-29T00:00:00", "1976-02-29T00:00:00"]),
            (
                "fri..mon 12:00",
                &[
                    "1970-01-02T12:00:00",
                    "1970-01-03T12:00:00",
                    "1970-01-04T12:00:00",
                    "1970-01-05T12:00:00",
                    "1970-01-09T12:00:00",
                ],
            ),
            ("2021-02-29", &[]),
            ("02-30", &[]),
            (
                "*-*-31 12:00",
                &["1970-01-31T12:00:00", "1970-03-31T12:00:00"],
            ),
            (
                "fri *-*-13",
                &[
                    "1970-02-13T00:00:00",
                    "1970-03-13T00:00:00",
                    "1970-11-13T00:00:00",
                ],
            ),
        ],
    );
    check_table(
        "1969-12-31T23:59:59[UTC]",
        &[(
            "1965/5-01-01",
            &["1970-01-01T00:00:00", "1975-01-01T00:00:00"],
        )],
    );
    let jul31 = "2020-07-31T00:00:00[UTC]";
    check_table(
        jul31,
        &[
            ("2020-7..9-2/2", &["2020-08-02T00:00:00"]),
            (
                "2020,2021-12-31",
                &["2020-12-31T00:00:00", "2021-12-31T00:00:00"],
            ),
            ("sat", &["2020-08-01T00:00:00"]),
        ],
    );
    // Strictly after: a base exactly on a match, and one nanosecond before.
    assert_eq!(
        runs("12:05", "2024-05-15T12:05:00[UTC]", 1),
        ["2024-05-16T12:05:00+00:00"]
    );
    assert_eq!(
        runs("12:05", "2024-05-15T12:04:59.999999999[UTC]", 1),
        ["2024-05-15T12:05:00+00:00"]
    );
    // The last representable years: 2199 fires, nothing after it.
    assert_eq!(
        runs("yearly", "2198-06-01T00:00:00[UTC]", 3),
        ["2199-01-01T00:00:00+00:00"]
    );
}

#[test]
fn case_and_whitespace() {
    for (a, b) in [
        ("MON..FRI 02:30", "mon..fri 02:30"),
        ("Monday,Tuesday", "mon,tue"),
        ("  mon  02:30\t", "mon 02:30"),
        ("mon\t02:30", "mon 02:30"),
        ("mon12:00", "mon 12:00"),
        ("sun,mon 00:00", "mon,sun 00:00"),
        ("mon..sun", "daily"),
        ("sun..mon", "mon,sun"),
        ("2015-10-21   ", "2015-10-21 00:00"),
    ] {
        assert_eq!(ev(a), ev(b), "{a} vs {b}");
    }
}

#[test]
fn normalized_form() {
    for (input, normalized) in [
        ("mon..fri 02:30", "mon..fri 02:30"),
        ("sat,sun", "sat,sun 00:00"),
        ("*/15", "*:*/15"),
        ("0,15,30,45", "*:*/15"),
        ("mon..wed 30/10", "mon..wed *:30/10"),
        ("mon..fri 8..17,22:0/15", "mon..fri 08..17,22:*/15"),
        ("fri 12..13:5/20", "fri 12,13:05/20"),
        ("12/2:5", "12/2:05"),
        ("*", "minutely"),
        ("*:0", "hourly"),
        ("0:0", "daily"),
        ("mon", "weekly"),
        ("*-1", "monthly"),
        ("01-01", "yearly"),
        ("annually", "yearly"),
        ("semi-annually", "semiannually"),
        ("*-1,4,7,10-1", "quarterly"),
        ("*-05", "*-05 00:00"),
        ("Sat *-1..7 15:00", "sat *-01..07 15:00"),
        ("2015-10-21", "2015-10-21 00:00"),
        ("1965/5-01-01", "1965/5-01-01 00:00"),
        ("4..10/2:0", "04..10/2:00"),
        ("12:05:30", "12:05:30"),
        ("*:*:*", "*:*:*"),
        ("fri..mon 12:00", "mon,fri..sun 12:00"),
        ("mon,wed..fri", "mon,wed..fri 00:00"),
        ("daily UTC", "daily UTC"),
        ("mon 02:30 UTC", "mon 02:30 UTC"),
        ("2020,2021-12-31", "2020,2021-12-31 00:00"),
        ("*/2-1", "*/2-01 00:00"),
        ("*-*/2", "*-*/2 00:00"),
    ] {
        let event = ev(input);
        assert_eq!(event.to_string(), normalized, "{input}");
        assert_eq!(ev(normalized), event, "{normalized} parses back");
    }
}

#[test]
fn serde_as_string() {
    let event = ev("mon..fri 02:30");
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(json, r#""mon..fri 02:30""#);
    let back: CalendarEvent = serde_json::from_str(&json).unwrap();
    assert_eq!(back, event);
    let err = serde_json::from_str::<CalendarEvent>(r#""mon..fry""#).unwrap_err();
    assert!(err.to_string().contains("unknown weekday 'fry'"), "{err}");
}

#[test]
fn errors_name_position_and_expectation() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty expression at position 0"),
        ("   ", 0, "empty expression"),
        ("UTC", 0, "nothing before 'UTC'"),
        ("mon..fry 02:30", 5, "unknown weekday 'fry'"),
        ("Daily", 0, "special words are lower-case: 'daily'"),
        ("daily 02:00", 0, "special word 'daily' combined"),
        ("semi-annually 1:00", 0, "special word 'semi-annually'"),
        ("12:60", 3, "minute 60 out of range"),
        ("24:00", 0, "hour 24 out of range"),
        ("*-13-01", 2, "month 13 out of range"),
        ("*-*-32", 4, "day 32 out of range"),
        ("*-0-1", 2, "month 0 out of range"),
        ("*-*-0", 4, "day 0 out of range"),
        ("2200-01-01", 0, "year 2200 out of range"),
        (
            "99999999999999999999",
            0,
            "minute 999999999999... out of range",
        ),
        ("*/0", 2, "minute repetition of 0"),
        ("5/0", 2, "minute repetition of 0"),
        ("*/60", 2, "minute repetition of 60 too large"),
        ("17..8:00", 0, "reversed hour range 17..8"),
        ("*,5", 0, "'*' in a minute list"),
        ("5,*", 2, "'*' in a minute list"),
        ("1:2:3:4", 5, "too many time parts"),
        ("1-2-3-4", 5, "too many date parts"),
        ("12:05:", 6, "unexpected end of expression"),
        ("12:05 mon", 6, "unexpected 'm'"),
        ("mon..", 5, "unexpected end of expression"),
        ("mon,", 4, "unexpected end of expression"),
        ("mon;fri", 3, "unexpected ';'"),
        ("12x", 2, "unexpected 'x'"),
        ("1,,2", 2, "unexpected ','"),
        ("2024-may-01", 5, "unexpected 'm'"),
        ("2015-10-2112:00", 8, "day 2112 out of range"),
        ("mön", 0, "unknown weekday 'mön'"),
        ("@daily", 0, "unexpected '@'"),
        ("dailyUTC", 0, "unknown weekday 'dailyUTC'"),
        ("mon fri", 4, "(expected a date or time after the weekdays"),
        (
            "-5",
            0,
            "(expected a weekday, a date, a time or one of minutely",
        ),
    ];
    for &(input, position, needle) in cases {
        let err = CalendarEvent::parse(input).expect_err(input);
        assert_eq!(err.position, position, "{input}: {err}");
        let text = err.to_string();
        assert!(text.contains(needle), "{input}: {text}");
        assert!(
            text.contains(&format!("at position {position} (expected ")),
            "{text}"
        );
    }
    let err = CalendarEvent::parse("mon..fry 02:30").unwrap_err();
    assert_eq!(
        err.to_string(),
        "calendar 'mon..fry 02:30': unknown weekday 'fry' at position 5 \
         (expected sun, mon, tue, wed, thu, fri, sat)"
    );
    assert_eq!(err.caret_line(), "mon..fry 02:30\n     ^");
    let err = CalendarEvent::parse("12:60").unwrap_err();
    assert_eq!(
        err.kind,
        CalendarErrorKind::OutOfRange {
            field: Field::Minute,
            value: "60".into()
        }
    );
    assert!(
        err.to_string()
            .ends_with("(expected a minute from 0 to 59)"),
        "{err}"
    );
    let long = "1".repeat(5000);
    let err = CalendarEvent::parse(&long).unwrap_err();
    assert!(matches!(err.kind, CalendarErrorKind::TooLong { len: 5000 }));
    assert!(err.expr.len() <= 100);
}

#[test]
fn dst_spring_forward_skips_the_missing_time() {
    // Europe/Berlin jumps 02:00 -> 03:00 on 2024-03-31: the daily 02:30 run
    // does not happen that day (as in Proxmox and systemd).
    assert_eq!(
        runs("02:30", "2024-03-30T12:00:00[Europe/Berlin]", 3),
        [
            "2024-04-01T02:30:00+02:00",
            "2024-04-02T02:30:00+02:00",
            "2024-04-03T02:30:00+02:00"
        ]
    );
    // An every-15-minutes job resumes at 03:00 after the jump.
    assert_eq!(
        runs("*:0/15", "2024-03-31T01:40:00[Europe/Berlin]", 3),
        [
            "2024-03-31T01:45:00+01:00",
            "2024-03-31T03:00:00+02:00",
            "2024-03-31T03:15:00+02:00"
        ]
    );
    // A whole-day job at 00:00 is unaffected.
    assert_eq!(
        runs("daily", "2024-03-30T12:00:00[Europe/Berlin]", 2),
        ["2024-03-31T00:00:00+01:00", "2024-04-01T00:00:00+02:00"]
    );
    // America/New_York jumps 02:00 -> 03:00 on 2024-03-10.
    assert_eq!(
        runs("02:30", "2024-03-09T12:00:00[America/New_York]", 2),
        ["2024-03-11T02:30:00-04:00", "2024-03-12T02:30:00-04:00"]
    );
    assert_eq!(
        runs("sun 2..3:30", "2024-03-09T12:00:00[America/New_York]", 2),
        ["2024-03-10T03:30:00-04:00", "2024-03-17T02:30:00-04:00"]
    );
}

#[test]
fn dst_fall_back_runs_once() {
    // Europe/Berlin repeats 02:00-03:00 on 2024-10-27: 02:30 fires once, at
    // the first (summer-time) occurrence.
    assert_eq!(
        runs("02:30", "2024-10-26T12:00:00[Europe/Berlin]", 2),
        ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]
    );
    // Repeating jobs run through the first pass and pause during the second.
    assert_eq!(
        runs("*:0/20", "2024-10-27T02:10:00+02:00[Europe/Berlin]", 4),
        [
            "2024-10-27T02:20:00+02:00",
            "2024-10-27T02:40:00+02:00",
            "2024-10-27T03:00:00+01:00",
            "2024-10-27T03:20:00+01:00"
        ]
    );
    // From inside the second pass, nothing fires until the hour is over.
    assert_eq!(
        runs("*:0/20", "2024-10-27T02:10:00+01:00[Europe/Berlin]", 1),
        ["2024-10-27T03:00:00+01:00"]
    );
    assert_eq!(
        runs("02:30", "2024-10-27T02:10:00+01:00[Europe/Berlin]", 1),
        ["2024-10-28T02:30:00+01:00"]
    );
    // America/New_York repeats 01:00-02:00 on 2024-11-03.
    assert_eq!(
        runs("01:30", "2024-11-02T12:00:00[America/New_York]", 2),
        ["2024-11-03T01:30:00-04:00", "2024-11-04T01:30:00-05:00"]
    );
}

#[test]
fn utc_events_ignore_the_callers_zone() {
    assert_eq!(
        runs("02:30 UTC", "2024-03-30T12:00:00[Europe/Berlin]", 3),
        [
            "2024-03-31T04:30:00+02:00",
            "2024-04-01T04:30:00+02:00",
            "2024-04-02T04:30:00+02:00"
        ]
    );
    assert!(ev("daily UTC").is_utc());
    assert!(!ev("daily").is_utc());
}

#[test]
fn system_tz_is_usable() {
    let now = Timestamp::now().to_zoned(super::system_tz());
    assert!(ev("minutely").next_after(&now).is_some());
}

/// Compares with `systemd-analyze calendar`, which Proxmox's syntax follows.
/// Skips (with a note) where the command is missing.
#[test]
fn agrees_with_systemd_analyze() {
    let probe = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        println!("note: systemd-analyze not available; cross-check skipped");
        return;
    }
    // (ours, systemd's spelling, zone, base)
    let cases: &[(&str, &str, &str, &str)] = &[
        ("mon..fri", "mon..fri", "UTC", BASE),
        ("sat,sun", "sat,sun", "UTC", BASE),
        ("12:05", "12:05", "UTC", BASE),
        ("*/5", "*:0/5", "UTC", BASE),
        ("*/15", "*:0/15", "UTC", BASE),
        ("mon..wed 30/10", "mon..wed *:30/10", "UTC", BASE),
        (
            "mon..fri 8..17,22:0/15",
            "mon..fri 8..17,22:0/15",
            "UTC",
            BASE,
        ),
        ("fri 12..13:5/20", "fri 12..13:5/20", "UTC", BASE),
        ("12/2:5", "12/2:5", "UTC", BASE),
        ("*", "*:*", "UTC", BASE),
        ("*-05", "*-05", "UTC", BASE),
        ("Sat *-1..7 15:00", "Sat *-1..7 15:00", "UTC", BASE),
        ("sun 01:00", "sun 01:00", "UTC", BASE),
        ("mon..fri 02:30", "mon..fri 02:30", "UTC", BASE),
        ("daily", "daily", "UTC", BASE),
        ("hourly", "hourly", "UTC", BASE),
        ("weekly", "weekly", "UTC", BASE),
        ("monthly", "monthly", "UTC", BASE),
        ("quarterly", "quarterly", "UTC", BASE),
        ("semiannually", "semiannually", "UTC", BASE),
        ("yearly", "yearly", "UTC", BASE),
        (
            "mon,wed..fri 23:59:59",
            "mon,wed..fri 23:59:59",
            "UTC",
            BASE,
        ),
        ("fri *-*-13", "fri *-*-13", "UTC", BASE),
        ("*-02-29 06:00", "*-02-29 06:00", "UTC", BASE),
        (
            "02:30",
            "02:30",
            "Europe/Berlin",
            "2024-03-30T12:00:00[Europe/Berlin]",
        ),
        (
            "*:0/20",
            "*:0/20",
            "Europe/Berlin",
            "2024-03-31T01:30:00[Europe/Berlin]",
        ),
        (
            "02:30",
            "02:30",
            "Europe/Berlin",
            "2024-10-26T12:00:00[Europe/Berlin]",
        ),
        (
            "*:0/20",
            "*:0/20",
            "Europe/Berlin",
            "2024-10-27T01:30:00[Europe/Berlin]",
        ),
        (
            "02:30",
            "02:30",
            "America/New_York",
            "2024-03-09T12:00:00[America/New_York]",
        ),
        (
            "01:30",
            "01:30",
            "America/New_York",
            "2024-11-02T12:00:00[America/New_York]",
        ),
        (
            "*:0/20",
            "*:0/20",
            "America/New_York",
            "2024-11-03T00:30:00[America/New_York]",
        ),
    ];
    for &(ours, theirs, zone, base) in cases {
        let base = zoned(base);
        let output = std::process::Command::new("systemd-analyze")
            .env("TZ", "UTC")
            .arg("calendar")
            .arg("--iterations=3")
            .arg(format!("--base-time=@{}", base.timestamp().as_second()))
            .arg(format!("{theirs} {zone}"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{theirs}: {stdout}");
        let expected: Vec<String> = stdout
            .lines()
            .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
            .map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                let n = words.len();
                format!("{} {}", words[n - 3], words[n - 2])
            })
            .collect();
        let got: Vec<String> = ev(ours)
            .upcoming(&base, 3)
            .iter()
            .map(|z| {
                z.with_time_zone(TimeZone::UTC)
                    .strftime("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .collect();
        assert_eq!(got, expected, "{ours} ({theirs}) in {zone} after {base}");
    }
}

// ---------------------------------------------------------------- properties

/// Text made of the grammar's characters, mostly invalid.
fn grammar_soup() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("mon"),
            Just("Fri"),
            Just("sunday"),
            Just("daily"),
            Just("UTC"),
            Just(".."),
            Just(","),
            Just("-"),
            Just(":"),
            Just("/"),
            Just("*"),
            Just(" "),
            Just("\t"),
            Just("0"),
            Just("1"),
            Just("7"),
            Just("12"),
            Just("24"),
            Just("31"),
            Just("59"),
            Just("60"),
            Just("2199"),
            Just("99999999999"),
            Just("ü"),
        ],
        0..16,
    )
    .prop_map(|parts| parts.concat())
}

/// One list for `field`, valid by construction.
fn list(field: Field) -> impl Strategy<Value = String> {
    let (lo, hi) = (field.min(), field.max());
    let item = (lo..=hi, lo..=hi, 1..=hi.max(1), 0..4u8).prop_map(move |(a, b, step, kind)| {
        let (a, b) = (a.min(b), a.max(b));
        match kind {
            0 => format!("{a}"),
            1 => format!("{a}..{b}"),
            2 => format!("{a}/{step}"),
            _ => format!("{a}..{b}/{step}"),
        }
    });
    prop_oneof![
        1 => Just("*".to_owned()),
        1 => (1..=hi.max(1)).prop_map(|step| format!("*/{step}")),
        4 => proptest::collection::vec(item, 1..4).prop_map(|items| items.join(",")),
    ]
}

fn weekdays() -> impl Strategy<Value = String> {
    const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    proptest::collection::vec((0..7usize, 0..7usize, any::<bool>()), 1..3).prop_map(|items| {
        items
            .into_iter()
            .map(|(a, b, range)| {
                if range {
                    format!("{}..{}", DAYS[a], DAYS[b])
                } else {
                    DAYS[a].to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// A valid expression that repeats at least weekly: weekdays and a time,
/// seconds always 0 (so a minute-by-minute brute force sees every run).
fn weekly_expression() -> impl Strategy<Value = String> {
    (
        proptest::option::of(weekdays()),
        list(Field::Hour),
        list(Field::Minute),
    )
        .prop_map(|(days, hours, minutes)| {
            let time = format!("{hours}:{minutes}");
            match days {
                Some(days) => format!("{days} {time}"),
                None => time,
            }
        })
}

/// Any valid expression, date and seconds included.
fn any_expression() -> impl Strategy<Value = String> {
    (
        proptest::option::of(weekdays()),
        proptest::option::of((
            proptest::option::of(list(Field::Year)),
            list(Field::Month),
            list(Field::Day),
        )),
        proptest::option::of((
            list(Field::Hour),
            list(Field::Minute),
            proptest::option::of(list(Field::Second)),
        )),
    )
        .prop_filter("at least one part", |(w, d, t)| {
            w.is_some() || d.is_some() || t.is_some()
        })
        .prop_map(|(days, date, time)| {
            let mut parts = Vec::new();
            parts.extend(days);
            if let Some((years, months, days)) = date {
                parts.push(match years {
                    Some(years) => format!("{years}-{months}-{days}"),
                    None => format!("{months}-{days}"),
                });
            }
            if let Some((hours, minutes, seconds)) = time {
                parts.push(match seconds {
                    Some(seconds) => format!("{hours}:{minutes}:{seconds}"),
                    None => format!("{hours}:{minutes}"),
                });
            }
            parts.join(" ")
        })
}

/// A base time between 2000 and 2100, any second.
fn base_time() -> impl Strategy<Value = Timestamp> {
    (946_684_800i64..4_102_444_800).prop_map(|s| Timestamp::from_second(s).unwrap())
}

/// The earliest instant that fires for `event` in `(base, limit]`, by brute
/// force over whole minutes: an instant fires if its wall-clock time matches
/// and it is that wall-clock time's first occurrence (the DST rule).
fn brute_force(event: &CalendarEvent, base: &Zoned, limit: Timestamp) -> Option<Timestamp> {
    let tz = base.time_zone();
    let mut t = base.timestamp().as_second().div_euclid(60) * 60 + 60;
    while t <= limit.as_second() {
        let ts = Timestamp::from_second(t).unwrap();
        let wall = tz.to_datetime(ts);
        if event.matches(wall) {
            let first = match tz.to_ambiguous_timestamp(wall).offset() {
                AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Gap { .. } => true,
                AmbiguousOffset::Fold { before, .. } => before.to_timestamp(wall).unwrap() == ts,
            };
            if first {
                return Some(ts);
            }
        }
        t += 60;
    }
    None
}

fn check_next(event: &CalendarEvent, base: &Zoned) -> Result<Option<Zoned>, TestCaseError> {
    let next = event.next_after(base);
    if let Some(next) = &next {
        prop_assert!(
            next.timestamp() > base.timestamp(),
            "{event} {base} -> {next}"
        );
        prop_assert_eq!(next.time_zone(), base.time_zone());
        let wall: DateTime = next.datetime();
        prop_assert!(event.matches(wall), "{} does not match {}", event, wall);
    }
    Ok(next)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Err(err) = CalendarEvent::parse(&text) {
            prop_assert!(err.position <= text.len());
            let _ = err.to_string();
            let _ = err.caret_line();
        }
    }

    #[test]
    fn grammar_soup_never_panics(text in grammar_soup(), base in base_time()) {
        match CalendarEvent::parse(&text) {
            Ok(event) => {
                prop_assert_eq!(CalendarEvent::parse(&event.to_string()), Ok(event.clone()));
                check_next(&event, &base.to_zoned(TimeZone::UTC))?;
            }
            Err(err) => {
                prop_assert!(err.position <= text.len(), "{err}");
                prop_assert!(text.is_char_boundary(err.position));
            }
        }
    }

    #[test]
    fn valid_expressions_round_trip_and_fire_after_base(text in any_expression(), base in base_time()) {
        let event = CalendarEvent::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let normalized = event.to_string();
        prop_assert_eq!(CalendarEvent::parse(&normalized), Ok(event.clone()), "{}", normalized);
        let base = base.to_zoned(TimeZone::UTC);
        if let Some(next) = check_next(&event, &base)? {
            // No earlier run: brute force when the gap is short enough.
            if next.timestamp().as_second() - base.timestamp().as_second() < 3 * 86_400
                && normalized.matches(':').count() < 2
            {
                prop_assert_eq!(brute_force(&event, &base, next.timestamp()), Some(next.timestamp()));
            }
        }
    }

    #[test]
    fn weekly_expressions_find_the_first_run(
        text in weekly_expression(),
        base in base_time(),
        berlin in any::<bool>(),
    ) {
        let event = CalendarEvent::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let tz = if berlin { TimeZone::get("Europe/Berlin").unwrap() } else { TimeZone::UTC };
        let base = base.to_zoned(tz);
        let next = check_next(&event, &base)?;
        // Every such expression fires within a week (plus a DST hour).
        let limit = base.timestamp() + (8 * 24).hours();
        prop_assert_eq!(next.map(|n| n.timestamp()), brute_force(&event, &base, limit));
    }

    #[test]
    fn weekly_expressions_around_dst(
        text in weekly_expression(),
        minutes in 0i64..(3 * 24 * 60),
        spring in any::<bool>(),
    ) {
        // Bases in the three days around Berlin's 2024 transitions.
        let event = CalendarEvent::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let start = if spring { "2024-03-30T00:00:00[Europe/Berlin]" } else { "2024-10-26T00:00:00[Europe/Berlin]" };
        let base = zoned(start).checked_add(minutes.minutes()).unwrap();
        let next = check_next(&event, &base)?;
        let limit = base.timestamp() + (8 * 24).hours();
        prop_assert_eq!(next.map(|n| n.timestamp()), brute_force(&event, &base, limit));
    }
}

/// A value before a stepped run renders as `value,step` (not the whole
/// expanded list, which could exceed `MAX_LEN` and not parse again).
#[test]
fn a_stepped_tail_after_single_values_stays_short() {
    let e = CalendarEvent::parse("0,1/2-*-*").expect("valid");
    let text = e.to_string();
    assert!(text.len() < 40, "{text}");
    assert_eq!(CalendarEvent::parse(&text), Ok(e));
}
