//! The crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can go wrong while loading transcripts or starting a fake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A transcript file could not be read.
    #[error("cannot read transcript {path}: {source}")]
    ReadTranscript {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A transcript is not valid JSON of the recorded format.
    #[error("transcript {name} is malformed: {source}")]
    Transcript {
        /// The transcript's name.
        name: String,
        /// The parse error (line and column).
        source: serde_json::Error,
    },
    /// One exchange cannot be replayed (bad status, header or body).
    #[error("transcript {name}, exchange {index}: {reason}")]
    BadExchange {
        /// The transcript's name.
        name: String,
        /// Zero-based index of the exchange.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The address breaks the network rule (loopback or the sandbox bridge only).
    #[error("refusing to listen on {addr}: {reason}")]
    AddrNotAllowed {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it is refused.
        reason: String,
    },
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A token or key file is unusable (the value itself is never shown).
    #[error("secret file {path}: {reason}")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}
