//! The client's one error type and its stable exit codes.
//!
//! Every failure of `1ldctl` is a [`ClientError`]; [`ClientError::exit_code`]
//! maps it to the documented exit status and [`ClientError::hint`] adds what
//! to do. The codes are a contract with scripts (docs/cli.md): never
//! renumber them.

use std::path::PathBuf;

use crate::api::{ApiErrorInner, OpStatus};

/// Success.
pub const EXIT_OK: u8 = 0;
/// The operation ran and failed, was cancelled or interrupted (or the
/// daemon failed internally).
pub const EXIT_FAILED: u8 = 1;
/// Bad command line, bad input file, or the daemon rejected the request as
/// invalid (400).
pub const EXIT_USAGE: u8 = 2;
/// The thing named does not exist (404).
pub const EXIT_NOT_FOUND: u8 = 3;
/// The caller's role does not allow it (403, or the socket refused us).
pub const EXIT_DENIED: u8 = 4;
/// Conflict: locked by another operation, busy, or in the wrong state (409, 422).
pub const EXIT_CONFLICT: u8 = 5;
/// The daemon is not reachable, or cannot serve (503): `EX_UNAVAILABLE`.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// The user detached from a running operation (second Ctrl-C); it goes on.
pub const EXIT_DETACHED: u8 = 130;

/// Why a `1ldctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answers on the socket.
    #[error("cannot reach 1ldd at {} ({reason}) — is it running? systemctl status 1ld",
            socket.display())]
    Unavailable {
        /// The socket tried.
        socket: PathBuf,
        /// What connecting said (`connection refused`, `no such file or directory`).
        reason: String,
    },
    /// The socket's permissions refused the connection.
    #[error("permission denied on {}: your user may not use the 1ld API", socket.display())]
    SocketDenied {
        /// The socket.
        socket: PathBuf,
        /// The socket's group, when it could be read.
        group: Option<String>,
    },
    /// The daemon answered with an error body.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The stable code (`not_found`, `locked`, ...).
        code: String,
        /// The daemon's message.
        message: String,
    },
    /// The operation ended other than `succeeded`.
    #[error("operation {id} ({kind}) {}{}", status_word(*status),
            error.as_ref().map(|e| format!(": {}", e.message)).unwrap_or_default())]
    OperationFailed {
        /// Operation id.
        id: String,
        /// Its kind.
        kind: String,
        /// Its final state.
        status: OpStatus,
        /// Why, as the daemon recorded it.
        error: Option<ApiErrorInner>,
    },
    /// Bad command line or input.
    #[error("{0}")]
    Usage(String),
    /// A local file or stdin could not be read.
    #[error("cannot read {what}: {source}")]
    Input {
        /// What was being read (`secret 'token' from /path`).
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The daemon's answer was not what the API says.
    #[error("unexpected answer from 1ldd to {what}: {detail}")]
    Protocol {
        /// The request.
        what: String,
        /// What was wrong.
        detail: String,
    },
    /// The user detached from a running operation.
    #[error("detached from operation {id}; it goes on")]
    Detached {
        /// Operation id.
        id: String,
    },
}

fn status_word(s: OpStatus) -> &'static str {
    match s {
        OpStatus::Queued => "is queued",
        OpStatus::Running => "is running",
        OpStatus::Succeeded => "succeeded",
        OpStatus::Failed => "failed",
        OpStatus::Cancelled => "was cancelled",
        OpStatus::Interrupted => "was interrupted",
    }
}

impl ClientError {
    /// The documented exit status.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unavailable { .. } => EXIT_UNAVAILABLE,
            ClientError::SocketDenied { .. } => EXIT_DENIED,
            ClientError::Api { status, .. } => match status {
                400 | 405 | 413 => EXIT_USAGE,
                403 => EXIT_DENIED,
                404 => EXIT_NOT_FOUND,
                409 | 422 => EXIT_CONFLICT,
                503 => EXIT_UNAVAILABLE,
                _ => EXIT_FAILED,
            },
            ClientError::OperationFailed { .. } | ClientError::Protocol { .. } => EXIT_FAILED,
            ClientError::Usage(_) | ClientError::Input { .. } => EXIT_USAGE,
            ClientError::Detached { .. } => EXIT_DETACHED,
        }
    }

    /// The stable code of the `--json` error body: the daemon's code, or
    /// one of the client's own (`daemon_unavailable`, `permission_denied`,
    /// `operation_failed`, `usage`, `input`, `protocol`, `detached`).
    pub fn code(&self) -> &str {
        match self {
            ClientError::Unavailable { .. } => "daemon_unavailable",
            ClientError::SocketDenied { .. } => "permission_denied",
            ClientError::Api { code, .. } => code,
            ClientError::OperationFailed { .. } => "operation_failed",
            ClientError::Usage(_) => "usage",
            ClientError::Input { .. } => "input",
            ClientError::Protocol { .. } => "protocol",
            ClientError::Detached { .. } => "detached",
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Unavailable { socket, .. } => {
                (socket.as_os_str() != super::cli::DEFAULT_SOCKET).then(|| {
                    format!(
                        "{} is not the default socket ({}); check --socket / ONELD_SOCKET",
                        socket.display(),
                        super::cli::DEFAULT_SOCKET
                    )
                })
            }
            ClientError::SocketDenied { group, .. } => {
                let group = group.as_deref().unwrap_or("1ld");
                Some(format!(
                    "your user is not in group {group}: sudo usermod -aG {group} $USER, \
                     then log in again"
                ))
            }
            ClientError::Api {
                status: 403,
                message,
                ..
            } => {
                // The daemon names `[api] group` and `[api] admin_group` in
                // backticks; a refusal as a viewer names both.
                let names = backticked(message);
                match names.as_slice() {
                    [group, admin, ..] if message.contains("viewer") => Some(format!(
                        "your user is not in group {admin}: sudo usermod -aG {group},{admin} \
                         $USER, then log in again"
                    )),
                    [group, ..] => Some(format!(
                        "your user is not in group {group}: sudo usermod -aG {group} $USER, \
                         then log in again"
                    )),
                    [] => None,
                }
            }
            ClientError::Api {
                status: 404,
                message,
                ..
            } if message.starts_with("no such resource") => Some(
                "this 1ldd does not serve that yet; compare `1ldctl version` (client and daemon)"
                    .to_string(),
            ),
            ClientError::Api {
                status: 409, code, ..
            } if code == "locked" => {
                Some("wait for that operation (1ldctl op ID --wait) or cancel it".to_string())
            }
            ClientError::Api { status: 503, .. } => {
                Some("check the daemon's log: journalctl -u 1ld".to_string())
            }
            ClientError::OperationFailed { id, .. } => {
                Some(format!("its log: 1ldctl op {id} --log"))
            }
            ClientError::Detached { id } => Some(format!("re-attach with: 1ldctl op {id} --wait")),
            _ => None,
        }
    }

    /// The message as lines: a validation error listing several fields
    /// (`a: ...; b: ...` or one per line) becomes one line per field.
    pub fn lines(&self) -> Vec<String> {
        let text = self.to_string();
        match self {
            ClientError::Api { status: 400, .. } | ClientError::Usage(_) => split_fields(&text),
            _ => vec![text],
        }
    }
}

/// The names quoted in backticks, in order.
fn backticked(s: &str) -> Vec<String> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .filter(|n| !n.is_empty() && !n.contains(' '))
        .collect()
}

/// Splits the daemon's multi-field validation message (`N problems: a:
/// ...; b: ...`) into one line per field. A part that names no field stays
/// with the one before it; with more parts than N, the parts whose "field"
/// is not a dotted path (`candidates: ...`) are merged back first. A
/// message without the count is one problem and stays whole.
fn split_fields(text: &str) -> Vec<String> {
    let Some((n, body)) = text
        .split_once(" problems: ")
        .and_then(|(n, rest)| Some((n.parse::<usize>().ok()?, rest)))
    else {
        return vec![text.to_string()];
    };
    let mut parts: Vec<String> = Vec::new();
    for p in body.split("; ").map(str::trim).filter(|p| !p.is_empty()) {
        match parts.last_mut() {
            Some(last) if !field_prefixed(p) => {
                last.push_str("; ");
                last.push_str(p);
            }
            _ => parts.push(p.to_string()),
        }
    }
    while parts.len() > n.max(1) {
        let Some(i) = (1..parts.len()).rev().find(|&i| {
            parts[i]
                .split_once(": ")
                .is_some_and(|(f, _)| !f.contains('.'))
        }) else {
            break;
        };
        let p = parts.remove(i);
        parts[i - 1].push_str("; ");
        parts[i - 1].push_str(&p);
    }
    if parts.len() > 1 {
        parts
    } else {
        vec![text.to_string()]
    }
}

fn field_prefixed(p: &str) -> bool {
    let p = p.trim_start_matches("- ");
    p.split_once(": ").is_some_and(|(f, _)| {
        !f.is_empty()
            && f.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-[]`".contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str, message: &str) -> ClientError {
        ClientError::Api {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    #[test]
    fn exit_codes_are_stable() {
        let cases = [
            (api(400, "bad_request", "x"), 2),
            (api(403, "forbidden", "x"), 4),
            (api(404, "not_found", "x"), 3),
            (api(409, "locked", "x"), 5),
            (api(422, "invalid_state", "x"), 5),
            (api(503, "dependency_down", "x"), 69),
            (api(500, "internal", "x"), 1),
            (
                ClientError::Unavailable {
                    socket: "/s".into(),
                    reason: "connection refused".into(),
                },
                69,
            ),
            (
                ClientError::SocketDenied {
                    socket: "/s".into(),
                    group: None,
                },
                4,
            ),
            (ClientError::Usage("x".into()), 2),
            (ClientError::Detached { id: "x".into() }, 130),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e:?}");
        }
    }

    #[test]
    fn a_viewer_refusal_hints_at_both_groups() {
        let e = api(
            403,
            "forbidden",
            "user bob is a viewer (group `1ld`): read-only; changes need group `1ld-admin` \
             ([api] admin_group)",
        );
        assert_eq!(
            e.hint().unwrap(),
            "your user is not in group 1ld-admin: sudo usermod -aG 1ld,1ld-admin $USER, \
             then log in again"
        );
    }

    #[test]
    fn the_daemon_down_message_names_the_socket_and_systemctl() {
        let e = ClientError::Unavailable {
            socket: "/run/1ld/1ld.sock".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach 1ldd at /run/1ld/1ld.sock (connection refused) — is it running? \
             systemctl status 1ld"
        );
        assert!(e.hint().is_none());
    }

    #[test]
    fn validation_errors_are_listed_field_by_field() {
        let e = api(
            400,
            "bad_request",
            "2 problems: settings.admin_email: required; overrides.storage: 'nope' has no \
             content type 'rootdir'; pick one of: local-lvm",
        );
        assert_eq!(
            e.lines(),
            [
                "settings.admin_email: required",
                "overrides.storage: 'nope' has no content type 'rootdir'; pick one of: local-lvm"
            ]
        );
        let one = api(
            400,
            "bad_request",
            "unknown field `foo`; expected one of a, b",
        );
        assert_eq!(one.lines().len(), 1);
    }
}
