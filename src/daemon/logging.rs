//! Logging: journald when systemd connected our stderr to the journal,
//! human-readable stderr otherwise. Structured fields (`vmid`, `op`,
//! `deployment`) travel as journald fields.
//!
//! Secrets never reach a log: every event is checked against the
//! [`Redactor`]. Clean events go to journald with their fields; an event
//! that carries a secret value is diverted to the stderr formatter, which
//! writes it through [`RedactingMakeWriter`] (`***`). Under systemd stderr
//! is the journal stream too, so the event is still logged, only without
//! journald fields.
//!
//! The filter comes from `RUST_LOG` (e.g. `oneld=debug`), default `info`.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::secrets::{RedactingMakeWriter, Redactor};

/// Whether stderr is the journal stream systemd gave us (`JOURNAL_STREAM` is
/// `<dev>:<inode>` of that stream; a redirected stderr does not match).
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(libc::STDERR_FILENO) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Collects every field value of an event as text.
#[derive(Default)]
struct FieldText(String);

impl Visit for FieldText {
    fn record_str(&mut self, _field: &Field, value: &str) {
        self.0.push_str(value);
        self.0.push('\n');
    }

    fn record_debug(&mut self, _field: &Field, value: &dyn std::fmt::Debug) {
        let _ = writeln!(self.0, "{value:?}");
    }
}

/// Passes events that do (`tainted: true`) or do not carry a secret value.
struct SecretFilter {
    redactor: Redactor,
    tainted: bool,
}

impl<S: Subscriber> Filter<S> for SecretFilter {
    fn enabled(&self, _meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _cx: &Context<'_, S>) -> bool {
        let mut text = FieldText::default();
        event.record(&mut text);
        let has_secret = matches!(self.redactor.redact(&text.0), std::borrow::Cow::Owned(_));
        has_secret == self.tainted
    }
}

/// Installs the global subscriber. Safe to call twice (the second call is a
/// no-op), so in-process tests can boot several daemons.
pub fn init(redactor: &Redactor) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = RedactingMakeWriter::new(std::io::stderr, redactor.clone());
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let clean = journald
                    .with_syslog_identifier("1ldd".to_string())
                    .with_filter(SecretFilter {
                        redactor: redactor.clone(),
                        tainted: false,
                    });
                let diverted = tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(stderr)
                    .without_time()
                    .with_filter(SecretFilter {
                        redactor: redactor.clone(),
                        tainted: true,
                    });
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(clean)
                    .with(diverted)
                    .try_init();
                return;
            }
            Err(e) => eprintln!("1ldd: journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(stderr),
        )
        .try_init();
}
