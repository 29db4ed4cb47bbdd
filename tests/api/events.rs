//! `GET /v1/events` history (`follow=false`, `after`) and gap-free resume
//! (`after` with `follow`), on the in-process daemon with the sandbox tools:
//! template downloads make the events.

use oneld::api::{Event, EventType, Operation};

use crate::daemon::{Client, Daemon, LIMIT, TINY};

fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line ({e}): {l}")))
        .collect()
}

async fn history(c: &Client, query: &str) -> Vec<Event> {
    let r = c
        .get(&format!("/v1/events?follow=false{query}"))
        .await
        .expect(200);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    parse(&r.text())
}

/// Downloads the tiny template and waits for the operation to end.
async fn download(c: &Client) -> Operation {
    let op: Operation = c
        .post(
            "/v1/templates",
            &serde_json::json!({"storage": "local", "template": TINY}),
        )
        .await
        .expect(202)
        .json();
    let op: Operation = c
        .get(&format!("/v1/operations/{}/wait?timeout=15", op.id))
        .await
        .expect(200)
        .json();
    assert!(op.status.is_final(), "{op:?}");
    op
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn history_lists_held_events_filtered_and_after_a_seq() {
    let d = Daemon::start();
    let c = d.client();
    let startup = history(&c, "").await;
    let first = download(&c).await;
    let all = history(&c, "").await;
    assert!(all.len() > startup.len(), "{all:#?}");
    // Oldest first, strictly increasing, and the operation's events are there.
    assert!(
        seqs(&all).windows(2).all(|w| w[0] < w[1]),
        "{:?}",
        seqs(&all)
    );
    assert!(all.iter().any(|e| e.kind == EventType::Operation
        && e.payload["id"] == first.id.as_str()
        && e.payload["status"] == "succeeded"));
    // The audit of the POST is a lifecycle event.
    let lifecycle = history(&c, "&type=lifecycle").await;
    assert!(!lifecycle.is_empty());
    assert!(lifecycle.iter().all(|e| e.kind == EventType::Lifecycle));
    assert!(lifecycle
        .iter()
        .any(|e| e.payload["path"] == "/v1/templates" && e.payload["method"] == "POST"));
    // after=SEQ: only later ones.
    let mid = all[all.len() / 2].seq;
    let later = history(&c, &format!("&after={mid}")).await;
    assert_eq!(
        seqs(&later),
        seqs(&all)
            .into_iter()
            .filter(|s| *s > mid)
            .collect::<Vec<_>>()
    );
    let last = all.last().map(|e| e.seq).unwrap_or(0);
    assert!(history(&c, &format!("&after={last}")).await.is_empty());
    // Bad parameters name themselves.
    let (_, msg) = c.get("/v1/events?follow=maybe").await.expect(400).error();
    assert!(msg.contains("follow"), "{msg}");
    c.get("/v1/events?after=-1").await.expect(400);
}

#[tokio::test]
async fn after_with_follow_resumes_without_gaps_or_duplicates() {
    let d = Daemon::start();
    let c = d.client();
    download(&c).await;
    let held = history(&c, "").await;
    // Resume from the middle of what happened while "disconnected".
    let resume = held[held.len() / 3].seq;
    let mut stream = c.events(&format!("/v1/events?after={resume}")).await;
    // A new operation while the stream is open: live events follow the replay.
    let op = download(&c).await;
    let got = stream
        .until(LIMIT, |e| {
            e.kind == EventType::Operation
                && e.payload["id"] == op.id.as_str()
                && e.payload["status"] == "succeeded"
        })
        .await;
    let s = seqs(&got);
    assert_eq!(s.first().copied(), Some(resume + 1), "{s:?}");
    // Every type is subscribed: the seqs are contiguous (no gap, no duplicate).
    assert!(
        s.windows(2).all(|w| w[1] == w[0] + 1),
        "gap or duplicate: {s:?}"
    );
    // What was held is replayed as it was.
    let replayed: Vec<&Event> = held.iter().filter(|e| e.seq > resume).collect();
    for (a, b) in replayed.iter().zip(&got) {
        assert_eq!(*a, b);
    }

    // Without `after`, a follow stream has only live events.
    let last = history(&c, "").await.last().map(|e| e.seq).unwrap_or(0);
    let mut live = c.events("/v1/events?type=operation").await;
    let op = download(&c).await;
    let got = live
        .until(LIMIT, |e| {
            e.payload["id"] == op.id.as_str() && e.payload["status"] == "succeeded"
        })
        .await;
    assert!(got.iter().all(|e| e.seq > last), "{:?}", seqs(&got));
}
