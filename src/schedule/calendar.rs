//! The calendar-event grammar: [`CalendarEvent::parse`], the normalized
//! rendering (`Display`, serde) and [`CalendarError`].
//!
//! Grammar, as Proxmox's `proxmox-time` reads it (`calendar-events.adoc`):
//!
//! ```text
//! expression := special-word | [weekdays] [date] [time]     (at least one part)
//!               followed by an optional " UTC"
//! weekdays   := day [".." day] ("," day [".." day])*        e.g. mon..fri  sat,sun  fri..mon
//! date       := [YEARS "-"] MONTHS "-" DAYS                 e.g. 2015-10-21  *-05  *-1..7
//! time       := [HOURS ":"] MINUTES [":" SECONDS]           a bare value means minutes
//! list       := "*" ["/" step] | item ("," item)*
//! item       := value [".." value] ["/" step]               a/n = a, a+n, ... up to the field's end
//! ```
//!
//! Weekday names are case-insensitive, short (`mon`) or long (`monday`), and a
//! range may wrap (`fri..mon`). Special words are lower-case, as in Proxmox.
//! Omitted parts mean: every weekday, every date, 00:00:00; omitted seconds
//! mean `:00`; `*/n` starts at the field's first value (`*/5` = `0/5`, and for
//! days and months `*/2` = `1/2`).
//!
//! Where this parser differs from `proxmox-time`, it rejects input that
//! Proxmox accepts by accident, each with a clear error: hour 24 (Proxmox reads
//! `24:00` as minute 24 of every hour), month or day 0, a repetition step of 0
//! (`5/0`), and a date glued to the time without a space. It also accepts
//! leading and trailing whitespace. Everything Proxmox documents parses the
//! same way, and the normalized rendering is accepted by Proxmox.

use std::fmt;
use std::str::FromStr;

use jiff::civil::DateTime;

/// Longest expression accepted; Proxmox's schedule property is far shorter.
pub const MAX_LEN: usize = 1024;

/// One field of a calendar event's date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// Years, 0..=2199 (systemd's upper limit, which Proxmox keeps).
    Year,
    /// Months, 1..=12.
    Month,
    /// Days of the month, 1..=31.
    Day,
    /// Hours, 0..=23.
    Hour,
    /// Minutes, 0..=59.
    Minute,
    /// Seconds, 0..=59.
    Second,
}

impl Field {
    /// The smallest value, and where `*/n` starts.
    pub const fn min(self) -> u32 {
        match self {
            Field::Month | Field::Day => 1,
            Field::Year | Field::Hour | Field::Minute | Field::Second => 0,
        }
    }

    /// The largest value.
    pub const fn max(self) -> u32 {
        match self {
            Field::Year => 2199,
            Field::Month => 12,
            Field::Day => 31,
            Field::Hour => 23,
            Field::Minute | Field::Second => 59,
        }
    }

    /// The field's name in messages.
    pub const fn name(self) -> &'static str {
        match self {
            Field::Year => "year",
            Field::Month => "month",
            Field::Day => "day",
            Field::Hour => "hour",
            Field::Minute => "minute",
            Field::Second => "second",
        }
    }

    /// Digits a value is zero-padded to in the normalized form.
    const fn width(self) -> usize {
        match self {
            Field::Year => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The allowed values of one field, as a bit set indexed by value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct ValueSet {
    words: Vec<u64>,
}

impl ValueSet {
    fn empty(field: Field) -> Self {
        ValueSet {
            words: vec![0; field.max() as usize / 64 + 1],
        }
    }

    fn full(field: Field) -> Self {
        let mut set = Self::empty(field);
        set.insert_range(field.min(), field.max(), 1);
        set
    }

    fn of(field: Field, values: &[u32]) -> Self {
        let mut set = Self::empty(field);
        for &v in values {
            set.insert(v);
        }
        set
    }

    fn insert(&mut self, v: u32) {
        if let Some(word) = self.words.get_mut(v as usize / 64) {
            *word |= 1 << (v % 64);
        }
    }

    /// Inserts `from, from + step, ...` up to and including `to`.
    fn insert_range(&mut self, from: u32, to: u32, step: u32) {
        let mut v = from;
        while v <= to {
            self.insert(v);
            match v.checked_add(step.max(1)) {
                Some(next) => v = next,
                None => break,
            }
        }
    }

    /// Whether `v` is allowed.
    pub(super) fn contains(&self, v: u32) -> bool {
        self.words
            .get(v as usize / 64)
            .is_some_and(|word| word >> (v % 64) & 1 == 1)
    }

    /// The smallest allowed value `>= v`.
    pub(super) fn next_at_or_after(&self, v: u32) -> Option<u32> {
        let mut index = v as usize / 64;
        let mut word = *self.words.get(index)? & (u64::MAX << (v % 64));
        loop {
            if word != 0 {
                return u32::try_from(index * 64)
                    .ok()?
                    .checked_add(word.trailing_zeros());
            }
            index += 1;
            word = *self.words.get(index)?;
        }
    }

    fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut next = Some(0u32);
        std::iter::from_fn(move || {
            let v = self.next_at_or_after(next?)?;
            next = v.checked_add(1);
            Some(v)
        })
    }

    fn is_full(&self, field: Field) -> bool {
        *self == Self::full(field)
    }

    /// The canonical text of this set: `*`; a step (`*/n` or `a/n` when it
    /// runs to the field's end, `a..b/n` when bounded) for the longest
    /// stepped tail of three or more values, after the values before it;
    /// other values as ranges (three or more consecutive) and single values,
    /// joined by commas. A stepped tail keeps a set like `0,1/2` of years
    /// short, so every rendering parses again.
    fn render(&self, field: Field) -> String {
        if self.is_full(field) {
            return "*".to_owned();
        }
        let values: Vec<u32> = self.iter().collect();
        let pad = |v: u32| format!("{v:0width$}", width = field.width());
        let stepped = |vals: &[u32]| -> Option<String> {
            if vals.len() < 3 {
                return None;
            }
            let step = vals[1] - vals[0];
            if step < 2 || !vals.windows(2).all(|w| w[1] - w[0] == step) {
                return None;
            }
            let (first, last) = (vals[0], vals[vals.len() - 1]);
            Some(if last + step > field.max() {
                if first == field.min() {
                    format!("*/{step}")
                } else {
                    format!("{}/{step}", pad(first))
                }
            } else {
                format!("{}..{}/{step}", pad(first), pad(last))
            })
        };
        let split = (0..values.len()).find_map(|k| stepped(&values[k..]).map(|tail| (k, tail)));
        let (head, tail) = match split {
            Some((k, tail)) => (&values[..k], Some(tail)),
            None => (&values[..], None),
        };
        let mut parts = Vec::new();
        let mut i = 0;
        while i < head.len() {
            let mut j = i;
            while j + 1 < head.len() && head[j + 1] == head[j] + 1 {
                j += 1;
            }
            if j - i >= 2 {
                parts.push(format!("{}..{}", pad(head[i]), pad(head[j])));
            } else {
                parts.extend(head[i..=j].iter().map(|&v| pad(v)));
            }
            i = j + 1;
        }
        parts.extend(tail);
        parts.join(",")
    }
}

impl fmt::Debug for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// Weekday names, Monday first (bit 0 of the weekday mask), as jiff counts.
const WEEKDAYS: [(&str, &str); 7] = [
    ("mon", "monday"),
    ("tue", "tuesday"),
    ("wed", "wednesday"),
    ("thu", "thursday"),
    ("fri", "friday"),
    ("sat", "saturday"),
    ("sun", "sunday"),
];

/// What an expression may start with.
const ANY_PART: &str = "a weekday, a date, a time or one of minutely, hourly, daily, weekly, \
                        monthly, yearly, quarterly, semiannually";

/// Every weekday.
const ALL_DAYS: u8 = 0x7f;

/// The special words, in the order the renderer prefers them.
const SPECIAL_WORDS: [&str; 10] = [
    "minutely",
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "quarterly",
    "semiannually",
    "yearly",
    "annually",
    "semi-annually",
];

/// A parsed calendar event: one set of allowed values per field.
///
/// Build it with [`CalendarEvent::parse`] (or `str::parse`); find runs with
/// [`CalendarEvent::next_after`]. `Display` (and serde, which stores the event
/// as that string) gives the normalized form, e.g. `mon..fri 02:30`, `daily`,
/// `*:*/15`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CalendarEvent {
    /// Bit `i` set: weekday `i` (0 = Monday) matches. Never zero.
    pub(super) weekdays: u8,
    pub(super) years: ValueSet,
    pub(super) months: ValueSet,
    pub(super) days: ValueSet,
    pub(super) hours: ValueSet,
    pub(super) minutes: ValueSet,
    pub(super) seconds: ValueSet,
    /// Evaluate in UTC instead of the caller's zone (the ` UTC` suffix).
    pub(super) utc: bool,
}

impl CalendarEvent {
    /// Parses an expression such as `mon..fri 02:30`, `*/15` or `daily`.
    ///
    /// Errors carry the byte position of the offending text and say what was
    /// expected there.
    pub fn parse(input: &str) -> Result<CalendarEvent, CalendarError> {
        Parser::new(input).parse()
    }

    /// Whether the event is evaluated in UTC (` UTC` suffix) rather than in
    /// the zone of the time passed to [`CalendarEvent::next_after`].
    pub fn is_utc(&self) -> bool {
        self.utc
    }

    /// Whether a wall-clock date and time matches every field (sub-second
    /// digits are ignored).
    pub fn matches(&self, dt: DateTime) -> bool {
        let weekday = dt.weekday().to_monday_zero_offset();
        let field = |v: i16| u32::try_from(v).ok();
        self.weekdays >> weekday & 1 == 1
            && field(dt.year()).is_some_and(|v| self.years.contains(v))
            && field(dt.month().into()).is_some_and(|v| self.months.contains(v))
            && field(dt.day().into()).is_some_and(|v| self.days.contains(v))
            && field(dt.hour().into()).is_some_and(|v| self.hours.contains(v))
            && field(dt.minute().into()).is_some_and(|v| self.minutes.contains(v))
            && field(dt.second().into()).is_some_and(|v| self.seconds.contains(v))
    }

    /// Every day at 00:00:00: what an expression starts as before its parts
    /// narrow it down.
    fn midnight() -> Self {
        CalendarEvent {
            weekdays: ALL_DAYS,
            years: ValueSet::full(Field::Year),
            months: ValueSet::full(Field::Month),
            days: ValueSet::full(Field::Day),
            hours: ValueSet::of(Field::Hour, &[0]),
            minutes: ValueSet::of(Field::Minute, &[0]),
            seconds: ValueSet::of(Field::Second, &[0]),
            utc: false,
        }
    }

    /// The event a special word stands for (Proxmox's table).
    fn special(word: &str) -> Option<Self> {
        let mut ev = Self::midnight();
        match word {
            "minutely" => {
                ev.hours = ValueSet::full(Field::Hour);
                ev.minutes = ValueSet::full(Field::Minute);
            }
            "hourly" => ev.hours = ValueSet::full(Field::Hour),
            "daily" => {}
            "weekly" => ev.weekdays = 1,
            "monthly" => ev.days = ValueSet::of(Field::Day, &[1]),
            "yearly" | "annually" => {
                ev.months = ValueSet::of(Field::Month, &[1]);
                ev.days = ValueSet::of(Field::Day, &[1]);
            }
            "quarterly" => {
                ev.months = ValueSet::of(Field::Month, &[1, 4, 7, 10]);
                ev.days = ValueSet::of(Field::Day, &[1]);
            }
            "semiannually" | "semi-annually" => {
                ev.months = ValueSet::of(Field::Month, &[1, 7]);
                ev.days = ValueSet::of(Field::Day, &[1]);
            }
            _ => return None,
        }
        Some(ev)
    }
}

impl fmt::Display for CalendarEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = CalendarEvent {
            utc: false,
            ..self.clone()
        };
        let suffix = if self.utc { " UTC" } else { "" };
        if let Some(word) = SPECIAL_WORDS
            .iter()
            .find(|w| Self::special(w).as_ref() == Some(&local))
        {
            return write!(f, "{word}{suffix}");
        }
        let mut parts = Vec::new();
        if self.weekdays != ALL_DAYS {
            parts.push(render_weekdays(self.weekdays));
        }
        let (years, months, days) = (
            self.years.is_full(Field::Year),
            self.months.is_full(Field::Month),
            self.days.is_full(Field::Day),
        );
        if !(years && months && days) {
            let md = format!(
                "{}-{}",
                self.months.render(Field::Month),
                self.days.render(Field::Day)
            );
            if years {
                parts.push(md);
            } else {
                parts.push(format!("{}-{md}", self.years.render(Field::Year)));
            }
        }
        let mut time = format!(
            "{}:{}",
            self.hours.render(Field::Hour),
            self.minutes.render(Field::Minute)
        );
        if self.seconds != ValueSet::of(Field::Second, &[0]) {
            time.push(':');
            time.push_str(&self.seconds.render(Field::Second));
        }
        parts.push(time);
        write!(f, "{}{suffix}", parts.join(" "))
    }
}

impl fmt::Debug for CalendarEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CalendarEvent")
            .field(&self.to_string())
            .finish()
    }
}

impl FromStr for CalendarEvent {
    type Err = CalendarError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for CalendarEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for CalendarEvent {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Weekday mask as text, Monday first: runs of three or more as `a..b`.
fn render_weekdays(mask: u8) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if mask >> i & 1 == 0 {
            i += 1;
            continue;
        }
        let mut j = i;
        while j + 1 < 7 && mask >> (j + 1) & 1 == 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}..{}", WEEKDAYS[i].0, WEEKDAYS[j].0));
        } else {
            parts.extend(WEEKDAYS[i..=j].iter().map(|d| d.0.to_owned()));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// A calendar expression that does not parse.
///
/// `Display` names the expression, what is wrong, the byte position and what
/// was expected there, e.g. `calendar 'mon..fry 02:30': unknown weekday 'fry'
/// at position 5 (expected sun, mon, tue, wed, thu, fri, sat)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("calendar '{expr}': {kind} at position {position} (expected {expected})", expected = .kind.expected())]
pub struct CalendarError {
    /// The expression (cut after 100 bytes).
    pub expr: String,
    /// Byte offset into the expression where the problem starts.
    pub position: usize,
    /// What is wrong.
    pub kind: CalendarErrorKind,
}

impl CalendarError {
    /// The expression with a `^` under the offending character, for a
    /// terminal; empty when the expression was cut before that position.
    pub fn caret_line(&self) -> String {
        match self.expr.get(..self.position) {
            Some(before) => format!("{}\n{}^", self.expr, " ".repeat(before.chars().count())),
            None => String::new(),
        }
    }
}

/// What is wrong with a calendar expression.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CalendarErrorKind {
    /// Nothing (or only whitespace) was given.
    Empty,
    /// Longer than [`MAX_LEN`] bytes.
    TooLong {
        /// The length in bytes.
        len: usize,
    },
    /// A word where a weekday belongs is no weekday.
    UnknownWeekday {
        /// The word as written.
        word: String,
    },
    /// A special word (`daily`, ...) combined with other parts.
    SpecialNotAlone {
        /// The special word.
        word: String,
    },
    /// A character (or the end) that does not fit the grammar here.
    Unexpected {
        /// The character, `None` for the end of the expression.
        found: Option<char>,
        /// What would fit.
        expected: String,
    },
    /// A value outside its field's range (minute 60, hour 24, month 13, ...).
    OutOfRange {
        /// The field.
        field: Field,
        /// The value as written.
        value: String,
    },
    /// A repetition step of 0 (`*/0`, `5/0`).
    ZeroRepetition {
        /// The field.
        field: Field,
    },
    /// A repetition step larger than the field's range (`*/60`).
    RepetitionTooLarge {
        /// The field.
        field: Field,
        /// The step as written.
        value: String,
    },
    /// A range whose start is after its end (`17..8`).
    ReversedRange {
        /// The field.
        field: Field,
        /// The start as written.
        start: u32,
        /// The end as written.
        end: u32,
    },
    /// `*` inside a list (`*,5`).
    StarInList {
        /// The field.
        field: Field,
    },
    /// More than three date or time parts (`1-2-3-4`, `1:2:3:4`).
    TooManyParts {
        /// `date` or `time`.
        what: &'static str,
    },
    /// ` UTC` with nothing before it.
    NothingBeforeUtc,
}

impl CalendarErrorKind {
    /// What would have been accepted, for the message's "(expected ...)".
    pub fn expected(&self) -> String {
        match self {
            CalendarErrorKind::Empty | CalendarErrorKind::NothingBeforeUtc => ANY_PART.to_owned(),
            CalendarErrorKind::TooLong { .. } => format!("at most {MAX_LEN} bytes"),
            CalendarErrorKind::UnknownWeekday { word } => {
                let lower = word.to_ascii_lowercase();
                let mut text = "sun, mon, tue, wed, thu, fri, sat".to_owned();
                if SPECIAL_WORDS.contains(&lower.as_str()) {
                    text.push_str(&format!("; special words are lower-case: '{lower}'"));
                }
                text
            }
            CalendarErrorKind::SpecialNotAlone { word } => {
                format!("'{word}' alone, or its parts spelled out (e.g. 'mon..fri 00:00')")
            }
            CalendarErrorKind::Unexpected { expected, .. } => expected.clone(),
            CalendarErrorKind::OutOfRange { field, .. } => {
                format!("a {field} from {} to {}", field.min(), field.max())
            }
            CalendarErrorKind::ZeroRepetition { field }
            | CalendarErrorKind::RepetitionTooLarge { field, .. } => {
                format!("a {field} step from 1 to {}", field.max())
            }
            CalendarErrorKind::ReversedRange { start, end, .. } => {
                format!("the smaller value first, e.g. {end}..{start}")
            }
            CalendarErrorKind::StarInList { field } => {
                format!("'*' alone (it already means every {field})")
            }
            CalendarErrorKind::TooManyParts { what: "date" } => "[YEARS-]MONTHS-DAYS".to_owned(),
            CalendarErrorKind::TooManyParts { .. } => "[HOURS:]MINUTES[:SECONDS]".to_owned(),
        }
    }
}

impl fmt::Display for CalendarErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalendarErrorKind::Empty => f.write_str("empty expression"),
            CalendarErrorKind::TooLong { len } => write!(f, "expression of {len} bytes"),
            CalendarErrorKind::UnknownWeekday { word } => write!(f, "unknown weekday '{word}'"),
            CalendarErrorKind::SpecialNotAlone { word } => {
                write!(f, "special word '{word}' combined with other parts")
            }
            CalendarErrorKind::Unexpected { found: Some(c), .. } => write!(f, "unexpected '{c}'"),
            CalendarErrorKind::Unexpected { found: None, .. } => {
                f.write_str("unexpected end of expression")
            }
            CalendarErrorKind::OutOfRange { field, value } => {
                write!(f, "{field} {value} out of range")
            }
            CalendarErrorKind::ZeroRepetition { field } => write!(f, "{field} repetition of 0"),
            CalendarErrorKind::RepetitionTooLarge { field, value } => {
                write!(f, "{field} repetition of {value} too large")
            }
            CalendarErrorKind::ReversedRange { field, start, end } => {
                write!(f, "reversed {field} range {start}..{end}")
            }
            CalendarErrorKind::StarInList { field } => write!(f, "'*' in a {field} list"),
            CalendarErrorKind::TooManyParts { what } => write!(f, "too many {what} parts"),
            CalendarErrorKind::NothingBeforeUtc => f.write_str("nothing before 'UTC'"),
        }
    }
}

/// Whitespace between parts: spaces and tabs (outer whitespace may be any).
fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A hand-written recursive-descent parser over the bytes of the input; all
/// positions are byte offsets into the original input.
struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// End of the part being parsed (before trailing whitespace and ` UTC`).
    end: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            input,
            pos: 0,
            end: input.len(),
        }
    }

    fn error(&self, position: usize, kind: CalendarErrorKind) -> CalendarError {
        let mut cut = self.input.len().min(100);
        while !self.input.is_char_boundary(cut) {
            cut -= 1;
        }
        CalendarError {
            expr: self.input[..cut].to_owned(),
            position,
            kind,
        }
    }

    /// The byte at the cursor, if still inside the part being parsed.
    fn peek(&self) -> Option<u8> {
        if self.pos < self.end {
            self.input.as_bytes().get(self.pos).copied()
        } else {
            None
        }
    }

    /// The character at the cursor, for error messages.
    fn found(&self) -> Option<char> {
        if self.pos < self.end {
            self.input.get(self.pos..).and_then(|s| s.chars().next())
        } else {
            None
        }
    }

    fn unexpected(&self, expected: impl Into<String>) -> CalendarError {
        self.error(
            self.pos,
            CalendarErrorKind::Unexpected {
                found: self.found(),
                expected: expected.into(),
            },
        )
    }

    fn eat(&mut self, text: &str) -> bool {
        let rest = &self.input.as_bytes()[self.pos.min(self.end)..self.end];
        if rest.starts_with(text.as_bytes()) {
            self.pos += text.len();
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    /// End of the whitespace-delimited token at the cursor.
    fn token_end(&self) -> usize {
        let bytes = self.input.as_bytes();
        let mut end = self.pos;
        while end < self.end && !is_blank(bytes[end]) {
            end += 1;
        }
        end
    }

    fn parse(mut self) -> Result<CalendarEvent, CalendarError> {
        let input = self.input;
        if input.len() > MAX_LEN {
            return Err(self.error(MAX_LEN, CalendarErrorKind::TooLong { len: input.len() }));
        }
        let bytes = input.as_bytes();
        let mut start = 0;
        while start < bytes.len() && bytes[start].is_ascii_whitespace() {
            start += 1;
        }
        let mut end = bytes.len();
        while end > start && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        if start == end {
            return Err(self.error(0, CalendarErrorKind::Empty));
        }
        let mut utc = false;
        if input[start..end].ends_with("UTC") {
            let suffix = end - 3;
            if suffix == start {
                return Err(self.error(suffix, CalendarErrorKind::NothingBeforeUtc));
            }
            if is_blank(bytes[suffix - 1]) {
                utc = true;
                end = suffix;
                while end > start && is_blank(bytes[end - 1]) {
                    end -= 1;
                }
            }
        }
        self.pos = start;
        self.end = end;
        let mut event = match CalendarEvent::special(&input[start..end]) {
            Some(event) => event,
            None => self.parts()?,
        };
        event.utc = utc;
        Ok(event)
    }

    /// `[weekdays] [date] [time]`, at least one of them.
    fn parts(&mut self) -> Result<CalendarEvent, CalendarError> {
        let mut event = CalendarEvent::midnight();
        if !self
            .found()
            .is_some_and(|c| c.is_alphanumeric() || c == '*')
        {
            return Err(self.unexpected(ANY_PART));
        }
        if self.found().is_some_and(char::is_alphabetic) {
            event.weekdays = self.weekdays()?;
            // Proxmox allows no blank between weekdays and the rest (`mon12:00`).
            match self.peek() {
                None => return Ok(event),
                Some(b) if is_blank(b) || b.is_ascii_digit() || b == b'*' => {}
                Some(_) => return Err(self.unexpected("',', '..' or a space after a weekday")),
            }
            self.skip_blanks();
            if self.found().is_some_and(char::is_alphabetic) {
                return Err(self.unexpected(
                    "a date or time after the weekdays (join weekdays with ',': mon,fri)",
                ));
            }
        }
        let token_end = self.token_end();
        if self.input[self.pos..token_end].contains('-') {
            self.date(token_end, &mut event)?;
            self.skip_blanks();
            if self.peek().is_none() {
                return Ok(event);
            }
        }
        let token_end = self.token_end();
        self.time(token_end, &mut event)?;
        self.skip_blanks();
        if self.peek().is_some() {
            return Err(self.unexpected(
                "the end of the expression (weekdays come first, then the date, then the time)",
            ));
        }
        Ok(event)
    }

    fn weekdays(&mut self) -> Result<u8, CalendarError> {
        let mut mask = 0u8;
        loop {
            let first = self.weekday()?;
            if self.eat("..") {
                let last = self.weekday()?;
                // Ranges may wrap around the week end, as in Proxmox: fri..mon.
                let mut day = first;
                loop {
                    mask |= 1 << day;
                    if day == last {
                        break;
                    }
                    day = (day + 1) % 7;
                }
            } else {
                mask |= 1 << first;
            }
            if !self.eat(",") {
                return Ok(mask);
            }
        }
    }

    /// One weekday name; returns 0 for Monday .. 6 for Sunday.
    fn weekday(&mut self) -> Result<u8, CalendarError> {
        let start = self.pos;
        let rest = &self.input[start..self.end];
        let len: usize = rest
            .chars()
            .take_while(|c| c.is_alphabetic())
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            return Err(self.unexpected("a weekday (sun, mon, tue, wed, thu, fri, sat)"));
        }
        let word = &rest[..len];
        let found = WEEKDAYS.iter().position(|(short, long)| {
            word.eq_ignore_ascii_case(short) || word.eq_ignore_ascii_case(long)
        });
        match found {
            Some(day) => {
                self.pos += len;
                Ok(day as u8)
            }
            None => {
                let kind = if SPECIAL_WORDS.contains(&word) || word == "semi" {
                    let word = if word == "semi" {
                        "semi-annually"
                    } else {
                        word
                    };
                    CalendarErrorKind::SpecialNotAlone {
                        word: word.to_owned(),
                    }
                } else {
                    CalendarErrorKind::UnknownWeekday {
                        word: word.to_owned(),
                    }
                };
                Err(self.error(start, kind))
            }
        }
    }

    /// `[YEARS-]MONTHS-DAYS`, the token ending at `token_end`.
    fn date(&mut self, token_end: usize, event: &mut CalendarEvent) -> Result<(), CalendarError> {
        let token = &self.input[self.pos..token_end];
        if let Some((offset, _)) = token.match_indices('-').nth(2) {
            return Err(self.error(
                self.pos + offset,
                CalendarErrorKind::TooManyParts { what: "date" },
            ));
        }
        if token.matches('-').count() == 2 {
            event.years = self.list(Field::Year)?;
            self.separator(b'-')?;
        }
        event.months = self.list(Field::Month)?;
        self.separator(b'-')?;
        event.days = self.list(Field::Day)?;
        self.token_done(token_end)
    }

    /// `[HOURS:]MINUTES[:SECONDS]`, the token ending at `token_end`.
    fn time(&mut self, token_end: usize, event: &mut CalendarEvent) -> Result<(), CalendarError> {
        let token = &self.input[self.pos..token_end];
        if let Some((offset, _)) = token.match_indices(':').nth(2) {
            return Err(self.error(
                self.pos + offset,
                CalendarErrorKind::TooManyParts { what: "time" },
            ));
        }
        match token.matches(':').count() {
            0 => {
                event.hours = ValueSet::full(Field::Hour);
                event.minutes = self.list(Field::Minute)?;
            }
            colons => {
                event.hours = self.list(Field::Hour)?;
                self.separator(b':')?;
                event.minutes = self.list(Field::Minute)?;
                if colons == 2 {
                    self.separator(b':')?;
                    event.seconds = self.list(Field::Second)?;
                }
            }
        }
        self.token_done(token_end)
    }

    fn separator(&mut self, sep: u8) -> Result<(), CalendarError> {
        if self.peek() == Some(sep) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(format!("a digit, ',', '..', '/' or '{}'", char::from(sep))))
        }
    }

    fn token_done(&self, token_end: usize) -> Result<(), CalendarError> {
        if self.pos == token_end {
            Ok(())
        } else {
            Err(self.unexpected("a digit, ',', '..', '/' or a space"))
        }
    }

    /// `*`, `*/n` or a comma list of `a`, `a..b`, `a/n`, `a..b/n`.
    fn list(&mut self, field: Field) -> Result<ValueSet, CalendarError> {
        let star = self.pos;
        if self.eat("*") {
            let set = if self.eat("/") {
                let step = self.step(field)?;
                let mut set = ValueSet::empty(field);
                set.insert_range(field.min(), field.max(), step);
                set
            } else {
                ValueSet::full(field)
            };
            if self.peek() == Some(b',') {
                return Err(self.error(star, CalendarErrorKind::StarInList { field }));
            }
            return Ok(set);
        }
        let mut set = ValueSet::empty(field);
        loop {
            let (start_pos, start) = self.value(field)?;
            let mut end = None;
            if self.eat("..") {
                let (_, last) = self.value(field)?;
                if start > last {
                    return Err(self.error(
                        start_pos,
                        CalendarErrorKind::ReversedRange {
                            field,
                            start,
                            end: last,
                        },
                    ));
                }
                end = Some(last);
            }
            if self.eat("/") {
                let step = self.step(field)?;
                set.insert_range(start, end.unwrap_or(field.max()), step);
            } else {
                set.insert_range(start, end.unwrap_or(start), 1);
            }
            if !self.eat(",") {
                return Ok(set);
            }
            if self.peek() == Some(b'*') {
                return Err(self.error(self.pos, CalendarErrorKind::StarInList { field }));
            }
        }
    }

    /// A run of digits; `None` when there is none. Saturates instead of
    /// overflowing; the caller range-checks.
    fn digits(&mut self) -> Option<(usize, u64, &'a str)> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        let text = &self.input[start..self.pos];
        if text.is_empty() {
            return None;
        }
        let value = text.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        Some((start, value, text))
    }

    fn value(&mut self, field: Field) -> Result<(usize, u32), CalendarError> {
        let Some((start, value, text)) = self.digits() else {
            return Err(self.unexpected(format!("a {field} (a number) or '*'")));
        };
        match u32::try_from(value) {
            Ok(v) if (field.min()..=field.max()).contains(&v) => Ok((start, v)),
            _ => Err(self.error(
                start,
                CalendarErrorKind::OutOfRange {
                    field,
                    value: shorten(text),
                },
            )),
        }
    }

    fn step(&mut self, field: Field) -> Result<u32, CalendarError> {
        let Some((start, value, text)) = self.digits() else {
            return Err(self.unexpected(format!("a {field} step (a number)")));
        };
        match u32::try_from(value) {
            Ok(0) => Err(self.error(start, CalendarErrorKind::ZeroRepetition { field })),
            Ok(v) if v <= field.max() => Ok(v),
            _ => Err(self.error(
                start,
                CalendarErrorKind::RepetitionTooLarge {
                    field,
                    value: shorten(text),
                },
            )),
        }
    }
}

/// Digits as written, cut for messages.
fn shorten(text: &str) -> String {
    if text.len() > 12 {
        format!("{}...", &text[..12])
    } else {
        text.to_owned()
    }
}
