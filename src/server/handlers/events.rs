//! `GET /v1/events`: the event stream and the recent history,
//! newline-delimited JSON.
//!
//! - `follow=false`: the events the bus still holds ([`crate::events::RING`])
//!   with `seq > after`, oldest first, then the body ends;
//! - `follow=true` (default): the subscription is taken before the response
//!   headers go out, so a client that has the headers sees every event
//!   published afterwards. With `after`, the held events after it are sent
//!   first; the subscription was taken before the ring was read, and live
//!   events with a `seq` not above the last replayed one are dropped, so a
//!   reconnecting client resumes without gaps or duplicates (as long as the
//!   events are still held). The stream ends after a `lagged` event (the
//!   client fell behind) and when the daemon shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::{Event, EventType, EventsQuery};
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

fn ndjson(event: &Event) -> Option<Bytes> {
    match serde_json::to_vec(event) {
        Ok(mut line) => {
            line.push(b'\n');
            Some(Bytes::from(line))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an event; ending the stream");
            None
        }
    }
}

/// Streams events of the given types, one JSON object per line: with
/// `after`, the held events after that `seq` first; with `follow` (the
/// default), then the live ones.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Newline-delimited JSON events (one `Event` per line). \
         `follow=false`: the held events (after `after`) and the end of the body. \
         `follow=true` (default): held events after `after` if given, then live events \
         in `seq` order, no gaps or duplicates between the two; a `lagged` event ends the \
         stream if the client falls behind",
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
    let follow = q.follow.unwrap_or(true);
    let headers = [
        (header::CONTENT_TYPE, "application/x-ndjson"),
        (header::CACHE_CONTROL, "no-cache"),
    ];
    if !follow {
        let held = ctx.app.events.recent(&kinds, q.after.unwrap_or(0));
        let mut body = Vec::new();
        for e in &held {
            match ndjson(e) {
                Some(line) => body.extend_from_slice(&line),
                None => return Err(Error::internal("cannot serialize an event")),
            }
        }
        return Ok((headers, body).into_response());
    }
    // Subscribe first, then read the ring: an event published in between is
    // in both, and the `seq` filter below drops the second copy.
    let sub = ctx.app.events.subscribe(&kinds);
    let held: VecDeque<Event> = match q.after {
        Some(after) => ctx.app.events.recent(&kinds, after).into(),
        None => VecDeque::new(),
    };
    let replayed = held.back().map(|e| e.seq).unwrap_or(0);
    let stop = ctx.shutdown.clone();
    let stream = futures_util::stream::unfold(
        (held, sub, stop),
        move |(mut held, mut sub, stop)| async move {
            let event = match held.pop_front() {
                Some(e) => e,
                None => loop {
                    let e = tokio::select! {
                        e = sub.next() => e?,
                        () = stop.cancelled() => return None,
                    };
                    // `lagged` carries the first missed seq: always pass it on.
                    if e.seq > replayed || e.kind == EventType::Lagged {
                        break e;
                    }
                },
            };
            let line = ndjson(&event)?;
            Some((Ok::<_, Infallible>(line), (held, sub, stop)))
        },
    );
    Ok((headers, Body::from_stream(stream)).into_response())
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
