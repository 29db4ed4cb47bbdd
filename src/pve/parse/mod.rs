//! Pure parsers of the PVE tools' output, one module per tool output.
//!
//! Invariants: no I/O, and no panic on any input (each parser has a proptest);
//! unknown keys, columns and `type` values are ignored so PVE 8 and PVE 9
//! output both parse. Tests use the real-format samples in `tests/fixtures/pve/`.

pub mod pct_config;
pub mod pct_list;
pub mod pct_snapshot;
pub mod pct_status;
pub mod pveam;
pub mod pvesh;
pub mod pvesm;
pub mod pveversion;
pub mod vzdump;

/// Output that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {what} (line {line}): {message}")]
pub struct ParseError {
    /// Which output or value was being parsed.
    pub what: &'static str,
    /// 1-based line number, 0 when not line-based.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl ParseError {
    /// A parse error about `what` at `line`.
    pub fn new(what: &'static str, line: usize, message: impl Into<String>) -> Self {
        Self {
            what,
            line,
            message: message.into(),
        }
    }
}

/// Reads a fixture from `tests/fixtures/pve/` at compile time (tests only).
#[cfg(test)]
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pve/",
            $name
        ))
    };
}
#[cfg(test)]
pub(crate) use fixture;
