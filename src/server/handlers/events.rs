//! `GET /v1/events`: the event stream, newline-delimited JSON.
//!
//! The subscription is taken before the response headers go out, so a
//! client that has the headers sees every event published afterwards. The
//! stream ends after a `lagged` event (the client fell behind) and when the
//! daemon shuts down.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::{EventType, EventsQuery};
use crate::error::Error;
use crate::server::error::ApiQuery;
use crate::server::Ctx;

/// The types a client may ask for (all of them by default).
const SUBSCRIBABLE: &[EventType] = &[
    EventType::Operation,
    EventType::Lifecycle,
    EventType::Health,
    EventType::Backup,
];

/// Parses `type=a,b`; unknown names are a 400 naming `type`.
fn parse_types(list: Option<&str>) -> Result<Vec<EventType>, Error> {
    let Some(list) = list else {
        return Ok(SUBSCRIBABLE.to_vec());
    };
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let t = EventType::parse(name).ok_or_else(|| {
            Error::bad_request(
                "type",
                format!(
                    "unknown event type '{name}' in `type`; use operation, lifecycle, \
                     health or backup"
                ),
            )
        })?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    if out.is_empty() {
        return Err(Error::bad_request(
            "type",
            "`type` is empty; use operation, lifecycle, health or backup",
        ));
    }
    Ok(out)
}

/// Streams events of the given types, one JSON object per line.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Newline-delimited JSON events (one `Event` per line)",
         content_type = "application/x-ndjson", body = crate::api::Event),
        (status = 400, description = "Unknown event type", body = crate::api::ApiErrorBody),
        (status = 403, description = "No role", body = crate::api::ApiErrorBody),
    )
)]
pub async fn get_events(
    State(ctx): State<Arc<Ctx>>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, Error> {
    let kinds = parse_types(q.types.as_deref())?;
    let sub = ctx.app.events.subscribe(&kinds);
    let stop = ctx.shutdown.clone();
    let stream = futures_util::stream::unfold((sub, stop), |(mut sub, stop)| async move {
        let event = tokio::select! {
            e = sub.next() => e?,
            () = stop.cancelled() => return None,
        };
        let mut line = match serde_json::to_vec(&event) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an event; ending the stream");
                return None;
            }
        };
        line.push(b'\n');
        Some((Ok::<_, Infallible>(Bytes::from(line)), (sub, stop)))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_and_unknown_names_the_field() {
        assert_eq!(parse_types(None).unwrap().len(), 4);
        assert_eq!(
            parse_types(Some("operation,lifecycle,operation")).unwrap(),
            vec![EventType::Operation, EventType::Lifecycle]
        );
        for bad in ["lagged", "nope", ","] {
            let e = parse_types(Some(bad)).unwrap_err();
            assert!(e.message.contains("`type`"), "{bad}: {e}");
        }
    }
}
