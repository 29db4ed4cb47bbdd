//! Finding the recorded exchange for a live request, shared by the fakes.

use crate::server::{describe_auth, Answer, LiveRequest};
use crate::transcript::Recorded;

/// The first recorded exchange, trying `auths` in order (`None` = recorded
/// without `Authorization`), whose `Authorization` is that candidate and for
/// which `same` holds.
pub(crate) fn by_auth<'a>(
    recorded: &'a [Recorded],
    auths: &[Option<String>],
    same: impl Fn(&Recorded) -> bool,
) -> Option<&'a Recorded> {
    auths.iter().find_map(|auth| {
        recorded
            .iter()
            .find(|r| r.exchange.request.authorization() == auth.as_deref() && same(r))
    })
}

/// Method, full path (with query) and JSON body equal.
pub(crate) fn same_request(r: &Recorded, live: &LiveRequest) -> bool {
    r.exchange
        .request
        .method
        .eq_ignore_ascii_case(live.method.as_str())
        && r.exchange.request.path == live.path_and_query
        && live.body_matches(&r.exchange.request.body)
}

/// Whether any exchange was recorded for this method and path (query aside).
pub(crate) fn known_route(recorded: &[Recorded], live: &LiveRequest) -> bool {
    recorded.iter().any(|r| {
        r.exchange
            .request
            .method
            .eq_ignore_ascii_case(live.method.as_str())
            && r.exchange.request.path_only() == live.path()
    })
}

/// The answer replaying `r`.
pub(crate) fn replay(r: &Recorded) -> Answer {
    Answer::Reply {
        reply: r.reply.clone(),
        from: r.from.clone(),
        note: r.exchange.note.clone(),
    }
}

/// The answer replaying `r`'s recorded authentication failure for another
/// route (the server checks credentials before the view runs, so the
/// answer does not depend on the route).
pub(crate) fn replay_auth_failure(r: &Recorded) -> Answer {
    Answer::Reply {
        reply: r.reply.clone(),
        from: format!("{} (authentication failure, same for every route)", r.from),
        note: r.exchange.note.clone(),
    }
}

/// How a fake that authenticates before the view runs answers `live`: the
/// exchange recorded for it with one of `candidates`; for a `refused`
/// credential on a recorded route, the recorded authentication failure
/// (status `denied`) of its class; else unrecorded. The reason says
/// "no exchange recorded for this request{as_class} (…)" and names the
/// `credential` ("token", "credential") a recorded route differed by.
pub(crate) fn answer_after_auth(
    recorded: &[Recorded],
    live: &LiveRequest,
    candidates: &[Option<String>],
    refused: bool,
    denied: u16,
    as_class: &str,
    credential: &str,
) -> Answer {
    if let Some(r) = by_auth(recorded, candidates, |r| same_request(r, live)) {
        return replay(r);
    }
    let known = known_route(recorded, live);
    if refused && known {
        if let Some(r) = by_auth(recorded, candidates, |r| {
            r.exchange.response.status == denied
        }) {
            return replay_auth_failure(r);
        }
    }
    Answer::Unrecorded {
        reason: format!(
            "no exchange recorded for this request{as_class} ({}){}",
            describe_auth(live.authorization()),
            if known {
                format!("; the route was recorded, but with another query, body or {credential}")
            } else {
                "; nothing was recorded for this method and path".to_string()
            }
        ),
    }
}
