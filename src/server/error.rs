//! The ONE place where errors become HTTP responses.
//!
//! What this module owns:
//! - `impl IntoResponse for crate::error::Error`: [`ErrorKind`] → status
//!   ([`status_of`]), body `{"error":{"code","message"}}`;
//! - the same body for what the router itself rejects: unknown route (404),
//!   wrong method (405), body over `[api] max_body_bytes` (413), and the
//!   rejections of the extractors ([`ApiJson`], [`ApiQuery`], [`ApiPath`]),
//!   which keep serde's message naming the field ("unknown field `foo`,
//!   expected one of `storage`, `template`").
//!
//! Invariants: every non-2xx response the server produces carries
//! [`ApiErrorBody`]; an [`ErrorKind::Internal`] error's `detail` goes to the
//! log, never to the client.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::api::{ApiErrorBody, ApiErrorInner};
use crate::error::{Error, ErrorKind};
use crate::secrets::Redactor;

/// The HTTP status of each error kind (the one mapping of the daemon).
pub fn status_of(kind: &ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadRequest { .. } => StatusCode::BAD_REQUEST,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Locked { .. } => StatusCode::CONFLICT,
        ErrorKind::InvalidState => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::DependencyDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response with `status` and the error body `{code, message}`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let inner = ApiErrorInner {
        code: code.to_string(),
        message: message.into(),
    };
    let mut resp = (
        status,
        axum::Json(ApiErrorBody {
            error: inner.clone(),
        }),
    )
        .into_response();
    // Router-level errors quote what the client sent (the path): [`finish`]
    // redacts them too.
    resp.extensions_mut().insert(Body(inner));
    resp
}

/// The body an [`error_response`] was rendered with, for [`finish`].
#[derive(Debug, Clone)]
struct Body(ApiErrorInner);

/// The body of `e` as the client sees it (no detail for internal errors).
fn render(e: &Error) -> Response {
    let status = status_of(&e.kind);
    let message = match &e.kind {
        // The constructor's generic text; never the detail.
        ErrorKind::Internal => Error::internal("").message,
        ErrorKind::BadRequest { field: Some(field) } if !e.message.contains(field.as_str()) => {
            format!("`{field}`: {}", e.message)
        }
        ErrorKind::Locked { holder_op } if !e.message.contains(holder_op.as_str()) => {
            format!("{} (held by operation {holder_op})", e.message)
        }
        _ => e.message.clone(),
    };
    error_response(status, e.kind.code(), message)
}

/// The error a response was rendered from, kept so [`finish`] can redact
/// and log it with the daemon's redactor.
#[derive(Debug, Clone)]
struct Rendered(std::sync::Arc<Error>);

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let mut resp = render(&self);
        resp.extensions_mut()
            .insert(Rendered(std::sync::Arc::new(self)));
        resp
    }
}

/// Last step of every response (called by the auth layer): an error body
/// (of an [`Error`], or a router-level [`error_response`] quoting the
/// request) is rendered again with secrets redacted (`***`), and an internal error's
/// detail is logged (redacted too) — the client never gets it.
pub fn finish(mut resp: Response, redactor: &Redactor) -> Response {
    let body = resp.extensions_mut().remove::<Body>();
    let mut out = if let Some(Rendered(e)) = resp.extensions_mut().remove::<Rendered>() {
        let e = redactor.redact_error((*e).clone());
        match e.kind {
            ErrorKind::Internal => tracing::error!(
                detail = e.detail.as_deref().unwrap_or(&e.message),
                "internal error answering a request"
            ),
            _ => tracing::debug!(code = e.kind.code(), message = %e.message, "request refused"),
        }
        render(&e)
    } else if let Some(Body(b)) = body {
        match redactor.redact(&b.message) {
            std::borrow::Cow::Borrowed(_) => return resp,
            std::borrow::Cow::Owned(m) => error_response(resp.status(), &b.code, m),
        }
    } else {
        return resp;
    };
    out.extensions_mut().remove::<Body>();
    let headers = std::mem::take(resp.headers_mut());
    for (name, value) in headers.iter() {
        if name != header::CONTENT_LENGTH && name != header::CONTENT_TYPE {
            out.headers_mut().append(name, value.clone());
        }
    }
    out
}

/// The router's fallback: no route has this path.
pub async fn unknown_route(uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        ErrorKind::NotFound.code(),
        format!("no such resource: {}; see GET /v1/openapi.json", uri.path()),
    )
}

/// The method fallback: the path exists, the method does not. Axum adds the
/// `Allow` header to this response.
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

/// 413 for a request body over the limit.
pub fn too_large(limit: usize) -> Response {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request body larger than {limit} bytes (`[api] max_body_bytes`)"),
    )
}

/// The field serde names in `message`, if any: "unknown field `x`",
/// "missing field `x`", or a `serde_path_to_error` prefix `a.b: ...`.
fn field_in(message: &str) -> Option<String> {
    for marker in ["unknown field `", "missing field `", "duplicate field `"] {
        if let Some(rest) = message.split(marker).nth(1) {
            if let Some(name) = rest.split('`').next() {
                return Some(name.to_string());
            }
        }
    }
    let (path, _) = message.split_once(": ")?;
    let plausible = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '[' | ']'));
    plausible.then(|| path.to_string())
}

/// A bad-request error from a deserializer's message, naming the field.
fn bad_input(what: &str, message: String) -> Error {
    let field = field_in(&message);
    Error::new(
        ErrorKind::BadRequest { field },
        format!("invalid {what}: {message}"),
    )
}

/// The deserializer's own message of a rejection, without axum's prefix
/// (the path-to-error layer keeps the field path: `storage: invalid type ...`).
fn inner_message(e: &(dyn std::error::Error + 'static)) -> String {
    e.source()
        .map_or_else(|| e.to_string(), ToString::to_string)
}

/// A rejection of one of our extractors, as an error body.
#[derive(Debug)]
pub struct Rejection(Response);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Error> for Rejection {
    fn from(e: Error) -> Self {
        Rejection(e.into_response())
    }
}

/// `Json<T>` whose rejections carry the error body: 400 naming the field
/// for bad or unknown fields and bad syntax, 400 for a missing
/// `Content-Type: application/json`, 413 over the body limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // The limit of the current config (set by the auth layer); a request
        // that bypassed it gets the default.
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(crate::config::ApiConfig::default().max_body_bytes, |l| l.0);
        if !is_json(req.headers()) {
            return Err(Error::new(
                ErrorKind::BadRequest {
                    field: Some("content-type".into()),
                },
                "expected a JSON body with `Content-Type: application/json`",
            )
            .into());
        }
        let bytes = match axum::body::to_bytes(req.into_body(), limit).await {
            Ok(b) => b,
            Err(e) if is_length_limit(&e) => return Err(Rejection(too_large(limit))),
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::BadRequest { field: None },
                    format!("cannot read the request body: {e}"),
                )
                .into())
            }
        };
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// The body limit in force (`[api] max_body_bytes` of the current config).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct.split(';').next().unwrap_or("").trim();
    mime.eq_ignore_ascii_case("application/json")
        || (mime.len() > 5
            && mime
                .get(..12)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/"))
            && mime.to_ascii_lowercase().ends_with("+json"))
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn json_rejection(rej: JsonRejection) -> Rejection {
    let err = match &rej {
        JsonRejection::JsonDataError(e) => bad_input("request body", inner_message(e)),
        JsonRejection::JsonSyntaxError(e) => Error::new(
            ErrorKind::BadRequest { field: None },
            format!("request body is not valid JSON: {}", inner_message(e)),
        ),
        other => Error::new(
            ErrorKind::BadRequest { field: None },
            format!("cannot read the request body: {}", other.body_text()),
        ),
    };
    err.into()
}

/// `Query<T>` whose rejection is a 400 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(bad_input("query", inner_message(&e)).into())
            }
            Err(other) => Err(Error::new(
                ErrorKind::BadRequest { field: None },
                format!("invalid query: {}", other.body_text()),
            )
            .into()),
        }
    }
}

/// `Path<T>` whose rejection carries the error body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                Err(bad_input("path", e.body_text()).into())
            }
            Err(other) => {
                Err(Error::internal(format!("path parameters: {}", other.body_text())).into())
            }
        }
    }
}

/// Adds `Location` to a response (for `202 Accepted`).
pub fn with_location(mut resp: Response, location: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (ErrorKind::BadRequest { field: None }, 400),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (
                ErrorKind::Locked {
                    holder_op: "x".into(),
                },
                409,
            ),
            (ErrorKind::InvalidState, 422),
            (ErrorKind::DependencyDown, 503),
            (ErrorKind::Internal, 500),
        ];
        for (kind, status) in cases {
            assert_eq!(status_of(&kind).as_u16(), status, "{kind:?}");
        }
    }

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_in("unknown field `foo`, expected one of `storage`, `template`").as_deref(),
            Some("foo")
        );
        assert_eq!(
            field_in("missing field `storage` at line 1 column 2").as_deref(),
            Some("storage")
        );
        assert_eq!(
            field_in("storage: invalid type: integer `1`, expected a string").as_deref(),
            Some("storage")
        );
        assert_eq!(field_in("expected value at line 1 column 1"), None);
    }
}
