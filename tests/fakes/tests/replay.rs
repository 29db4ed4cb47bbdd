//! Replay fidelity and credential behaviour of the fakes, in-process on
//! 127.0.0.1: every recorded exchange sent as recorded comes back with the
//! recorded status, headers and body bytes; credentials are classified as
//! the real servers do; anything unrecorded is a loud 599.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixture, fixture_ordered, http, Ordered, Wire};
use fake_upstreams::{Handle, HomeAssistant, NetBox, Secret, WikiJs};
use serde_json::Value;

fn lo() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// The bytes the real server sent for a recorded response body.
fn expected_body(response: &Value, ordered: &Ordered) -> Vec<u8> {
    let ct = response["headers"]["Content-Type"].as_str().unwrap_or("");
    match &response["body"] {
        Value::Null => Vec::new(),
        Value::String(s) if !ct.starts_with("application/json") => s.clone().into_bytes(),
        _ => ordered.compact().into_bytes(),
    }
}

/// Sends every exchange of `file` (except `skip`) to `fake` as recorded and
/// checks the answer byte for byte.
async fn replays_exactly(fake: &Handle, file: &str, skip: &[usize]) -> usize {
    let exchanges = fixture(file);
    let ordered = fixture_ordered(file);
    let mut checked = 0;
    for (i, (ex, ord)) in exchanges.iter().zip(&ordered).enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let req = &ex["request"];
        let headers: Vec<(&str, &str)> = req["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let body = match &req["body"] {
            Value::Null => None,
            b => Some(serde_json::to_vec(b).unwrap()),
        };
        let got: Wire = http(
            fake.addr(),
            req["method"].as_str().unwrap(),
            req["path"].as_str().unwrap(),
            &headers,
            body.as_deref(),
        )
        .await;
        let resp = &ex["response"];
        let what = format!("{file}#{i} ({} {})", req["method"], req["path"]);
        assert_eq!(
            u64::from(got.status),
            resp["status"].as_u64().unwrap(),
            "{what}: {}",
            got.text()
        );
        for (k, v) in resp["headers"].as_object().unwrap() {
            assert_eq!(got.header(k), v.as_str(), "{what}: header {k}");
        }
        let want = expected_body(resp, ord);
        assert!(
            got.body == want,
            "{what}: body differs\n got: {}\nwant: {}",
            got.text(),
            String::from_utf8_lossy(&want)
        );
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn netbox_replays_every_recorded_exchange_byte_for_byte() {
    let fake = NetBox::spawn(lo()).await.unwrap();
    assert_eq!(replays_exactly(&fake, "netbox/01-auth.json", &[]).await, 11);
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
    assert_eq!(fake.hits().len(), 11);
    assert_eq!(fake.hits()[4].from, "netbox/01-auth.json#4");
}

#[tokio::test]
async fn wikijs_replays_every_recorded_exchange_byte_for_byte() {
    let fake = WikiJs::spawn(lo()).await.unwrap();
    assert_eq!(
        replays_exactly(&fake, "wikijs/00-health.json", &[]).await,
        1
    );
    assert_eq!(replays_exactly(&fake, "wikijs/01-auth.json", &[]).await, 8);
    // #2 is the new key used *before* it was revoked; the fake models
    // `<NEW_API_KEY>` as the revoked key, so it answers #4's 500 instead.
    assert_eq!(
        replays_exactly(&fake, "wikijs/01b-auth-revoked-key.json", &[2]).await,
        5
    );
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
}

#[tokio::test]
async fn wikijs_keeps_the_recorded_key_order() {
    let fake = WikiJs::spawn(lo()).await.unwrap();
    let q = r#"{"query":"{ authentication { apiState } system { info { currentVersion dbType pagesTotal usersTotal } } }","variables":{}}"#;
    let r = http(
        fake.addr(),
        "POST",
        "/graphql",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer <TAMPERED_API_KEY>"),
        ],
        Some(q.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    // Wiki.js sends `errors` before `data`; a sorted map would not.
    assert!(
        r.text().starts_with(r#"{"errors":[{"message":"Forbidden""#),
        "{}",
        r.text()
    );
    // Non-ASCII (the recorder's `…` marker) goes out as UTF-8.
    assert!(r.text().contains('…'));
}

#[tokio::test]
async fn home_assistant_replays_every_recorded_rest_exchange() {
    let fake = HomeAssistant::spawn(lo()).await.unwrap();
    let mut n = 0;
    for f in [
        "rest_api_root_auth.json",
        "rest_config.json",
        "rest_states.json",
        "rest_state_entity.json",
        "rest_state_missing_404.json",
        "rest_template_device_area.json",
        "rest_template_errors_and_unknown.json",
    ] {
        n += replays_exactly(&fake, &format!("homeassistant/{f}"), &[]).await;
    }
    assert_eq!(n, 13);
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
}

const V2: &str = "nbt_k3y0k3y0k3y0.S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr";

async fn status(fake: &Handle, path: &str, auth: Option<&str>) -> Wire {
    let mut h = vec![("Accept", "application/json")];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    http(fake.addr(), "GET", path, &h, None).await
}

#[tokio::test]
async fn netbox_token_classes() {
    let fake = NetBox::new()
        .with_token(Secret::new(V2))
        .serve(lo())
        .await
        .unwrap();
    // The configured token, with either keyword.
    for kw in ["Bearer", "Token"] {
        let r = status(&fake, "/api/status/", Some(&format!("{kw} {V2}"))).await;
        assert_eq!(r.status, 200, "{kw}: {}", r.text());
        assert_eq!(r.json()["netbox-version"], "4.6.8");
        assert_eq!(r.header("api-version"), Some("4.6"));
    }
    // The configured key with a wrong secret; an unknown key; an unknown
    // legacy token; a bare keyword; nothing.
    let wrong = format!("Bearer {}x", &V2[..V2.len() - 1]);
    for (auth, detail) in [
        (Some(wrong.as_str()), "Invalid v2 token"),
        (Some("Bearer nbt_zzzzzzzzzzzz.secret"), "Invalid v2 token"),
        (Some("Token nbt_zzzzzzzzzzzz.secret"), "Invalid v2 token"),
        (
            Some("Token 0123456789012345678901234567890123456789"),
            "Invalid v1 token",
        ),
        (Some("Token"), "Invalid authorization header"),
        (None, "Authentication credentials were not provided."),
    ] {
        let r = status(&fake, "/api/status/", auth).await;
        assert_eq!(r.status, 403, "{auth:?}: {}", r.text());
        assert!(
            r.json()["detail"].as_str().unwrap().starts_with(detail),
            "{auth:?}: {}",
            r.text()
        );
    }
    // A refused token on a recorded route with another query: NetBox
    // authenticates first, so the recorded 403 of its class.
    let r = status(&fake, "/api/status/?format=json", Some("Token bogus")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["detail"], "Invalid v1 token");
    assert!(fake
        .hits()
        .last()
        .unwrap()
        .from
        .contains("authentication failure"));
    // The same with a valid token is not recorded: loud.
    let r = status(
        &fake,
        "/api/status/?format=json",
        Some(&format!("Bearer {V2}")),
    )
    .await;
    assert_eq!(r.status, 599);
    assert!(fake.unrecorded().len() == 1);
    // No secret in what the fake remembers.
    assert!(!format!("{:?}", fake.unrecorded()).contains("S3cr3t"));
}

const HEALTH: &str = "{ authentication { apiState } system { info { currentVersion dbType pagesTotal usersTotal } } }";

async fn graphql(fake: &Handle, auth: Option<&str>, query: &str) -> Wire {
    let mut h = vec![("Content-Type", "application/json")];
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    let body = serde_json::json!({"query": query, "variables": {}}).to_string();
    http(fake.addr(), "POST", "/graphql", &h, Some(body.as_bytes())).await
}

#[tokio::test]
async fn wikijs_key_classes() {
    let key = "eyJhbGciOiJSUzI1NiJ9.eyJhcGkiOjF9.c2ln";
    let fake = WikiJs::new()
        .with_key(Secret::new(key))
        .serve(lo())
        .await
        .unwrap();
    let ok = graphql(&fake, Some(&format!("Bearer {key}")), HEALTH).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["data"]["authentication"]["apiState"], true);
    assert_eq!(
        ok.json()["data"]["system"]["info"]["currentVersion"],
        "2.5.314"
    );
    // Whitespace in the query does not matter.
    let spaced = HEALTH.replace(' ', "\n   ");
    assert_eq!(
        graphql(&fake, Some(&format!("Bearer {key}")), &spaced)
            .await
            .status,
        200
    );
    // Any other key is silently Guest: 200 with Forbidden.
    for auth in [
        Some("Bearer eyJhbGciOiJSUzI1NiJ9.eyJhcGkiOjF9.WRONG"),
        Some("Bearer x"),
        None,
    ] {
        let r = graphql(&fake, auth, HEALTH).await;
        assert_eq!(r.status, 200, "{auth:?}");
        assert_eq!(r.json()["errors"][0]["message"], "Forbidden", "{auth:?}");
    }
    // The revoked key: 500 for any query, even one never recorded with it.
    let r = graphql(&fake, Some("Bearer <NEW_API_KEY>"), HEALTH).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "API Key is invalid or was revoked."
    );
    // /healthz needs no key and ignores one.
    let r = http(
        fake.addr(),
        "GET",
        "/healthz",
        &[("Authorization", "Bearer x")],
        None,
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"ok":true}"#));
    assert!(fake.unrecorded().is_empty(), "{:?}", fake.unrecorded());
}

#[tokio::test]
async fn unrecorded_requests_fail_loudly() {
    let nb = NetBox::spawn(lo()).await.unwrap();
    let r = status(&nb, "/api/dcim/devices/", Some("Bearer <TOKEN>")).await;
    assert_eq!(r.status, 599);
    assert!(
        r.text()
            .contains("UNRECORDED REQUEST GET /api/dcim/devices/"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("x-fake-upstream"), Some("unrecorded-request"));
    // An unknown route stays unrecorded even with a refused token.
    assert_eq!(
        status(&nb, "/api/dcim/devices/", Some("Token x"))
            .await
            .status,
        599
    );
    // A recorded route with another method or body.
    let r = http(
        nb.addr(),
        "DELETE",
        "/api/status/",
        &[("Authorization", "Bearer <TOKEN>")],
        None,
    )
    .await;
    assert_eq!(r.status, 599);
    let u = nb.unrecorded();
    assert_eq!(u.len(), 3, "{u:?}");
    assert_eq!(u[0].line, "GET /api/dcim/devices/");
    assert!(u[0].to_string().contains("ValidV2"), "{}", u[0]);

    let wiki = WikiJs::spawn(lo()).await.unwrap();
    let r = graphql(&wiki, Some("Bearer <API_KEY>"), "{ pages { list { id } } }").await;
    assert_eq!(r.status, 599);
    assert!(r.text().contains("pages { list { id } }"), "{}", r.text());
    // GraphQL without a JSON content type, and a body that is not GraphQL.
    let body = serde_json::json!({"query": HEALTH}).to_string();
    let r = http(
        wiki.addr(),
        "POST",
        "/graphql",
        &[("Authorization", "Bearer <API_KEY>")],
        Some(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 599);
    let r = http(
        wiki.addr(),
        "POST",
        "/graphql",
        &[("Content-Type", "application/json")],
        Some(b"[]"),
    )
    .await;
    assert_eq!(r.status, 599);
    assert_eq!(wiki.unrecorded().len(), 3);

    let ha = HomeAssistant::spawn(lo()).await.unwrap();
    // Refused token on a recorded route: the recorded 401; on an unknown one: 599.
    let r = http(
        ha.addr(),
        "GET",
        "/api/config",
        &[("Authorization", "Bearer nope")],
        None,
    )
    .await;
    assert_eq!((r.status, r.text().as_str()), (401, "401: Unauthorized"));
    let r = http(
        ha.addr(),
        "GET",
        "/api/services",
        &[("Authorization", "Bearer <TOKEN>")],
        None,
    )
    .await;
    assert_eq!(r.status, 599);
}

#[tokio::test]
async fn listen_rule_and_shutdown() {
    let e = NetBox::spawn("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("refusing to listen on 0.0.0.0:0"),
        "{e}"
    );
    assert!(NetBox::spawn("192.0.2.1:0".parse().unwrap()).await.is_err());
    let fake = NetBox::spawn(lo()).await.unwrap();
    let addr = fake.addr();
    fake.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still listening"
    );
}
