//! Logging: to the journal when systemd connected stderr to it, otherwise
//! human-readable lines on stderr (stdout stays free for `--self-check` and
//! `--once` output).
//!
//! The filter comes from `RUST_LOG`, default `info`. Secrets must never be
//! passed to a log macro; the runtime only ever logs URLs, never headers.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Whether stderr is the journal stream systemd gave us: `JOURNAL_STREAM` is
/// `<dev>:<inode>` of that stream, and a redirected stderr does not match.
pub fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&std::io::stderr())) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Installs the global subscriber for agent `name`. A second call is a no-op.
pub fn init(name: &'static str) {
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journald) => {
                let _ = tracing_subscriber::registry()
                    .with(filter())
                    .with(journald.with_syslog_identifier(name.to_string()))
                    .try_init();
                return;
            }
            Err(e) => eprintln!("{name}: journald unavailable ({e}); logging to stderr"),
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .try_init();
}
