//! Restore the default SIGPIPE disposition.
//!
//! Rust ignores SIGPIPE, so `pct list | head -1` would make `println!` fail;
//! the real Perl tools just die of the signal. This is the one place that
//! needs `unsafe`.
#![allow(unsafe_code)]

use nix::sys::signal::{signal, SigHandler, Signal};

/// Set SIGPIPE back to `SIG_DFL`. Call first thing in `main`.
pub fn default_sigpipe() {
    // SAFETY: called at the start of main while the process is single-threaded;
    // SIG_DFL installs no Rust handler, so no async-signal-safety concerns.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
