//! `GET /v1/deployments/{name}/logs`: the service's journal inside the
//! deployment's container, newline-delimited JSON ([`LogLine`] per line).
//!
//! A read, not an operation: it changes nothing, takes no lock, and runs
//! `pct exec <vmid> --keep-env 0 -- journalctl --unit=<unit> … --output=json
//! [--follow]` through [`crate::pve`] (argv, never a shell). Admin-only
//! ([`crate::server::auth::ADMIN_ONLY_READS`]): a journal may hold secrets the
//! redactor does not know.
//!
//! Invariants:
//! - every message passes the [`crate::secrets::Redactor`];
//! - when the client disconnects (or the daemon shuts down), the response
//!   body is dropped, and with it the command's process group (killed) and
//!   the pipe the journal reader in the container writes to (`journalctl
//!   --follow` exits when its stdout is closed);
//! - errors found before the first entry (unknown deployment 404, container
//!   not running 422, `journalctl` failing) get their status; after the
//!   headers, a failure ends the stream (and is logged).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deployments::{env, pve, record};
use crate::api::{ContainerState, LogLine, LogsQuery, LOG_LINES_DEFAULT, LOG_LINES_MAX};
use crate::deploy::logs::{journal_argv, parse_entry};
use crate::deploy::view::container_state;
use crate::error::{Error, ErrorKind};
use crate::pve::pct::exec_refusal;
use crate::pve::{Line, LineStream};
use crate::secrets::Redactor;
use crate::server::error::{ApiPath, ApiQuery};
use crate::server::Ctx;

/// With `follow`, how long the first entry (or the command's end) is awaited
/// before the headers go out: an error in that time still gets its status.
pub const FIRST_ENTRY_WAIT: Duration = Duration::from_secs(2);

/// How long a finished command is given to exit after its stdout ended.
const REAP_WAIT: Duration = Duration::from_secs(5);

/// The stream's state between two lines.
struct Tail {
    lines: LineStream,
    first: Option<Line>,
    redactor: Redactor,
    stop: CancellationToken,
    /// Without `follow`: when the body must have ended.
    deadline: Option<Instant>,
    vmid: u32,
}

impl Tail {
    /// The next NDJSON line; `None` ends the body.
    async fn next(&mut self) -> Option<Bytes> {
        let line = match self.first.take() {
            Some(l) => l,
            None => {
                let read = async {
                    match self.deadline {
                        Some(d) => tokio::time::timeout_at(d, self.lines.next_line())
                            .await
                            .unwrap_or(Ok(None)),
                        None => self.lines.next_line().await,
                    }
                };
                let r = tokio::select! {
                    r = read => r,
                    () = self.stop.cancelled() => return None,
                };
                match r {
                    Ok(Some(l)) => l,
                    Ok(None) => return None,
                    Err(e) => {
                        tracing::warn!(vmid = self.vmid, error = %e, "reading the journal failed; ending the logs stream");
                        return None;
                    }
                }
            }
        };
        let entry = parse_entry(&line, &self.redactor);
        match serde_json::to_vec(&entry) {
            Ok(mut v) => {
                v.push(b'\n');
                Some(Bytes::from(v))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize a log line; ending the stream");
                None
            }
        }
    }
}

/// Reaps a command whose stdout ended and turns a failure into an error:
/// pct's refusal (container gone or stopped meanwhile), else journalctl's.
async fn finished(lines: LineStream, vmid: u32) -> Result<(), Error> {
    let out = lines
        .finish(REAP_WAIT)
        .await
        .map_err(crate::pve::PveError::from)?;
    exec_refusal(vmid, &out)?;
    if out.success() {
        return Ok(());
    }
    let why = out.stderr_text().trim().to_string();
    let status = match (out.code, out.signal) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "unknown status".to_string(),
    };
    Err(Error::new(
        ErrorKind::InvalidState,
        format!(
            "journalctl failed in CT {vmid} ({status}){}{why}",
            if why.is_empty() { "" } else { ": " }
        ),
    ))
}

/// The service's journal: the newest `lines` entries, then (with `follow`)
/// new ones until the client disconnects.
#[utoipa::path(
    get,
    path = "/v1/deployments/{name}/logs",
    tag = "deployments",
    params(("name" = String, Path, description = "Deployment name"), LogsQuery),
    responses(
        (status = 200, description = "Newline-delimited JSON, one `LogLine` per journal entry, \
         oldest first; with `follow`, open until the client disconnects, the container stops \
         or the daemon shuts down",
         content_type = "application/x-ndjson", body = LogLine),
        (status = 400, description = "`lines` out of range", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin (journals may hold secrets)", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such deployment", body = crate::api::ApiErrorBody),
        (status = 422, description = "The container is not running (or has no journal)", body = crate::api::ApiErrorBody),
        (status = 503, description = "The Proxmox tools are missing or failing", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_deployment_logs(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, Error> {
    let rec = record(&ctx, &name)?;
    let lines = q.lines.unwrap_or(LOG_LINES_DEFAULT);
    if lines > LOG_LINES_MAX {
        return Err(Error::bad_request(
            "lines",
            format!("`lines` is {lines}; at most {LOG_LINES_MAX}"),
        ));
    }
    let follow = q.follow.unwrap_or(false);
    let pve = pve(&ctx)?;
    let catalog = env(&ctx).catalog();
    let unit = catalog
        .get(&rec.app)
        .map(|a| a.manifest.service.unit.clone())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidState,
                format!(
                    "app '{}' of deployment '{}' is no longer in the catalog; its service unit \
                     is unknown",
                    rec.app, rec.name
                ),
            )
        })?;
    match container_state(pve, rec.vmid).await {
        ContainerState::Running => {}
        state => {
            let state = format!("{state:?}").to_lowercase();
            return Err(Error::new(
                ErrorKind::InvalidState,
                format!(
                    "the container of '{}' (CT {}) is {state}, so its journal cannot be read; \
                     start it first: 1ldctl start {}",
                    rec.name, rec.vmid, rec.name
                ),
            ));
        }
    }
    let mut stream = pve
        .pct_exec_stream(rec.vmid, &journal_argv(&unit, lines, follow))
        .await?;
    // The first entry, or the command's end, before the status goes out.
    let command_timeout = ctx.app.config().pve.command_timeout();
    let wait = if follow {
        FIRST_ENTRY_WAIT
    } else {
        command_timeout
    };
    let first = match tokio::time::timeout(wait, stream.next_line()).await {
        Ok(Ok(Some(line))) => Some(line),
        Ok(Ok(None)) => {
            finished(stream, rec.vmid).await?;
            return Ok(ndjson_response(Body::empty()));
        }
        Ok(Err(e)) => return Err(crate::pve::PveError::from(e).into()),
        Err(_) if follow => None,
        Err(_) => {
            return Err(Error::dependency_down(format!(
                "journalctl in CT {} printed nothing within {command_timeout:?}",
                rec.vmid
            )))
        }
    };
    let tail = Tail {
        lines: stream,
        first,
        redactor: ctx.app.secrets.redactor().clone(),
        stop: ctx.shutdown.clone(),
        deadline: (!follow).then(|| Instant::now() + command_timeout),
        vmid: rec.vmid,
    };
    let body = futures_util::stream::unfold(tail, |mut t| async move {
        let line = t.next().await?;
        Some((Ok::<_, Infallible>(line), t))
    });
    Ok(ndjson_response(Body::from_stream(body)))
}

fn ndjson_response(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
