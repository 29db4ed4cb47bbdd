//! `/v1/operations`: list, read, log, long-poll and cancel operations.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyper::body::Bytes;

use crate::api::{LogQuery, OpLogChunk, OpStatus, Operation, OperationsQuery, WaitQuery};
use crate::error::Error;
use crate::ops::OpFilter;
use crate::server::auth::Caller;
use crate::server::error::{ApiPath, ApiQuery};
use crate::server::Ctx;

/// Default of `wait?timeout=` in seconds.
pub const WAIT_DEFAULT_SECS: u64 = 30;
/// Cap of `wait?timeout=` in seconds (clients loop for longer waits).
pub const WAIT_MAX_SECS: u64 = 300;

fn parse_status(list: &str) -> Result<Vec<OpStatus>, Error> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
                Error::bad_request(
                    "status",
                    format!(
                        "unknown operation status '{s}' in `status`; use queued, running, \
                         succeeded, failed, cancelled or interrupted"
                    ),
                )
            })
        })
        .collect()
}

/// The last rendered page of `GET /v1/operations`, keyed by the store's
/// `operations` write generation and the query. Clients (1ldctl, dashboards) poll this
/// list; while nothing was written, the same bytes are served again without
/// touching SQLite or serde. Every write to the `operations` table changes
/// the generation, so a stale page is never served.
#[derive(Debug, Default)]
pub struct ListCache(std::sync::Mutex<Option<(u64, OperationsQuery, Bytes)>>);

impl ListCache {
    fn get(&self, generation: u64, q: &OperationsQuery) -> Option<Bytes> {
        let slot = self.0.lock().ok()?;
        match &*slot {
            Some((g, key, body)) if *g == generation && key == q => Some(body.clone()),
            _ => None,
        }
    }

    fn put(&self, generation: u64, q: OperationsQuery, body: Bytes) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((generation, q, body));
        }
    }
}

fn json_bytes(body: Bytes) -> Response {
    ([(hyper::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Operations, newest first, filtered by status, kind and target.
#[utoipa::path(
    get,
    path = "/v1/operations",
    tag = "operations",
    params(OperationsQuery),
    responses(
        (status = 200, description = "Operations, newest first", body = Vec<Operation>),
        (status = 400, description = "Bad filter", body = crate::api::ApiErrorBody),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn list_operations(
    State(ctx): State<Arc<Ctx>>,
    ApiQuery(q): ApiQuery<OperationsQuery>,
) -> Result<Response, Error> {
    // The generation is read before the data (see `Store::ops_generation`).
    let generation = ctx.app.store.ops_generation();
    if let Some(body) = ctx.op_list_cache.get(generation, &q) {
        return Ok(json_bytes(body));
    }
    let filter = OpFilter {
        status: match q.status.as_deref() {
            Some(s) => parse_status(s)?,
            None => Vec::new(),
        },
        kind: q.kind.clone(),
        target: q.target.clone(),
        limit: q.limit,
    };
    let ops = ctx.app.ops.list(&filter)?;
    let body = Bytes::from(serde_json::to_vec(&ops).map_err(Error::internal)?);
    ctx.op_list_cache.put(generation, q, body.clone());
    Ok(json_bytes(body))
}

/// One operation.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, description = "The operation", body = Operation),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such operation", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_operation(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Operation>, Error> {
    ctx.app.ops.get(&id).map(Json)
}

/// An operation's log from `offset` on (admins only).
#[utoipa::path(
    get,
    path = "/v1/operations/{id}/log",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id"), LogQuery),
    responses(
        (status = 200, description = "Log lines from `offset`", body = OpLogChunk),
        (status = 400, description = "Bad `offset`", body = crate::api::ApiErrorBody),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such operation", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_operation_log(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Json<OpLogChunk>, Error> {
    ctx.app.ops.log(&id, q.offset.unwrap_or(0)).map(Json)
}

/// Waits until the operation ends or `timeout` seconds pass; returns its
/// state either way. Ends early (with the current state) on daemon shutdown.
#[utoipa::path(
    get,
    path = "/v1/operations/{id}/wait",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id"), WaitQuery),
    responses(
        (status = 200, description = "The operation when it ended, or at the timeout", body = Operation),
        (status = 400, description = "Bad `timeout`", body = crate::api::ApiErrorBody),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such operation", body = crate::api::ApiErrorBody),
    )
)]
pub async fn wait_operation(
    State(ctx): State<Arc<Ctx>>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> Result<Json<Operation>, Error> {
    let secs = q.timeout.unwrap_or(WAIT_DEFAULT_SECS).min(WAIT_MAX_SECS);
    tokio::select! {
        r = ctx.app.ops.wait(&id, Duration::from_secs(secs)) => r.map(Json),
        () = ctx.shutdown.cancelled() => ctx.app.ops.get(&id).map(Json),
    }
}

/// Requests cancellation; the operation's compensation runs. 422 when it
/// has ended or its current step cannot be cancelled.
#[utoipa::path(
    delete,
    path = "/v1/operations/{id}",
    tag = "operations",
    params(("id" = String, Path, description = "Operation id")),
    responses(
        (status = 200, description = "The operation after the cancel request", body = Operation),
        (status = 403, description = "Not an admin", body = crate::api::ApiErrorBody),
        (status = 404, description = "No such operation", body = crate::api::ApiErrorBody),
        (status = 422, description = "Already ended, or not cancellable now", body = crate::api::ApiErrorBody),
    )
)]
pub async fn cancel_operation(
    State(ctx): State<Arc<Ctx>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Operation>, Error> {
    ctx.app.ops.cancel(&id, caller.requestor).await.map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lists_parse_and_name_the_field() {
        assert_eq!(
            parse_status("queued, running").unwrap(),
            vec![OpStatus::Queued, OpStatus::Running]
        );
        let e = parse_status("running,bogus").unwrap_err();
        assert!(e.message.contains("bogus") && e.message.contains("`status`"));
    }
}
