//! The stateful NetBox fake against the NetBox 4.6.8 recordings: the
//! requests of `02-bootstrap`, `04-validation-errors`, `07-bulk` and
//! `09-deletes` are sent to the model in order (each file after the
//! bootstrap, as they were recorded), and every answer must have the
//! recorded status and, apart from timestamps, the recorded body. Then the
//! rules the recordings do not spell out one by one: pagination caps and
//! `next`, unknown filters, request counting, retries' injected failures.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use fake_upstreams::server::{Answer, LiveRequest};
use fake_upstreams::transcript::Transcript;
use fake_upstreams::NetBoxModel;
use hyper::header::{HeaderMap, HeaderValue};
use serde_json::{json, Value};

const BOOTSTRAP: &str = include_str!("../fixtures/netbox/02-bootstrap.json");
const VALIDATION: &str = include_str!("../fixtures/netbox/04-validation-errors.json");
const BULK: &str = include_str!("../fixtures/netbox/07-bulk.json");
const DELETES: &str = include_str!("../fixtures/netbox/09-deletes.json");

/// The sequences the recordings started from (fixtures README).
fn fresh() -> NetBoxModel {
    let m = NetBoxModel::new(None).unwrap();
    for (ep, id) in [
        ("extras/tags", 3),
        ("extras/custom-fields", 2),
        ("dcim/sites", 6),
        ("dcim/manufacturers", 3),
        ("dcim/device-types", 2),
        ("dcim/device-roles", 2),
        ("dcim/platforms", 1),
        ("dcim/devices", 4),
        ("dcim/interfaces", 3),
        ("dcim/mac-addresses", 3),
        ("ipam/ip-addresses", 4),
        ("virtualization/cluster-types", 2),
        ("virtualization/clusters", 2),
        ("virtualization/virtual-machines", 2),
        ("virtualization/interfaces", 2),
    ] {
        m.set_next_id(ep, id);
    }
    m
}

fn request(method: &str, path: &str, body: &Value, auth: Option<&str>) -> LiveRequest {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:8001"));
    if let Some(a) = auth {
        headers.insert("authorization", HeaderValue::from_str(a).unwrap());
    }
    LiveRequest {
        method: method.parse().unwrap(),
        path_and_query: path.to_string(),
        headers,
        body: if body.is_null() {
            Default::default()
        } else {
            serde_json::to_vec(body).unwrap().into()
        },
    }
}

fn send(m: &NetBoxModel, method: &str, path: &str, body: &Value) -> (u16, Value) {
    send_as(m, method, path, body, Some("Bearer <TOKEN>"))
}

fn send_as(
    m: &NetBoxModel,
    method: &str,
    path: &str,
    body: &Value,
    auth: Option<&str>,
) -> (u16, Value) {
    match m.answer_direct(&request(method, path, body, auth)) {
        Answer::Reply { reply, .. } => {
            let v = if reply.body.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&reply.body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&reply.body).into()))
            };
            (reply.status.as_u16(), v)
        }
        Answer::Unrecorded { reason } => panic!("unrecorded: {reason}"),
    }
}

/// Drops what varies between runs: timestamps.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "created" | "last_updated"))
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

/// Differences between two JSON values, as paths.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k}: missing in the fake")),
                }
            }
            for k in y.keys().filter(|k| !x.contains_key(*k)) {
                out.push(format!("{path}.{k}: extra in the fake"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: recorded {a}, fake {b}")),
    }
}

/// Replays `text` against `m`; returns every mismatch.
fn replay(m: &NetBoxModel, text: &str, name: &str) -> Vec<String> {
    let t = Transcript::parse(name, text).unwrap();
    let mut problems = Vec::new();
    for (i, ex) in t.exchanges.iter().enumerate() {
        let r = &ex.request;
        let (status, body) = send_as(m, &r.method, &r.path, &r.body, r.authorization());
        let want: Value = ex
            .response
            .body
            .as_ref()
            .and_then(|b| serde_json::from_str(b.get()).ok())
            .unwrap_or(Value::Null);
        let at = format!("{name}#{i} {} {}", r.method, r.path);
        if status != ex.response.status {
            problems.push(format!(
                "{at}: status recorded {}, fake {status} ({body})",
                ex.response.status
            ));
            continue;
        }
        if want.is_string() {
            // HTML 404 pages: only that it is not JSON.
            assert!(body.is_string(), "{at}: expected HTML, got {body}");
            continue;
        }
        let mut d = Vec::new();
        diff("", &normalize(&want), &normalize(&body), &mut d);
        problems.extend(d.into_iter().map(|p| format!("{at}: {p}")));
    }
    problems
}

#[test]
fn bootstrap_answers_match_the_recording() {
    let m = fresh();
    let problems = replay(&m, BOOTSTRAP, "02-bootstrap");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn validation_errors_match_the_recording() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let problems = replay(&m, VALIDATION, "04-validation-errors");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn bulk_answers_match_the_recording() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let problems = replay(&m, BULK, "07-bulk");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn delete_cascades_match_the_recording() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let problems = replay(&m, DELETES, "09-deletes");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn pagination_is_capped_and_next_is_followed() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let items: Vec<Value> = (0..1020)
        .map(|i| json!({"address": format!("10.2.{}.{}/16", i / 250, i % 250 + 1)}))
        .collect();
    let (s, created) = send(&m, "POST", "/api/ipam/ip-addresses/", &json!(items));
    assert_eq!(s, 201);
    assert_eq!(created.as_array().unwrap().len(), 1020);
    for limit in ["0", "5000"] {
        let (s, page) = send(
            &m,
            "GET",
            &format!("/api/ipam/ip-addresses/?limit={limit}"),
            &Value::Null,
        );
        assert_eq!(s, 200);
        assert_eq!(page["count"], 1022);
        assert_eq!(page["results"].as_array().unwrap().len(), 1000);
        assert_eq!(
            page["next"],
            "http://127.0.0.1:8001/api/ipam/ip-addresses/?limit=1000&offset=1000"
        );
    }
    // Following next, sorted parameters kept.
    let (_, p1) = send(
        &m,
        "GET",
        "/api/ipam/ip-addresses/?tag=netbox-agent&limit=1",
        &Value::Null,
    );
    assert_eq!(p1["count"], 2, "{p1}");
    assert_eq!(
        p1["next"],
        "http://127.0.0.1:8001/api/ipam/ip-addresses/?limit=1&offset=1&tag=netbox-agent"
    );
    // Default page, cursor pagination, start+offset.
    let (_, d) = send(&m, "GET", "/api/ipam/ip-addresses/", &Value::Null);
    assert_eq!(d["results"].as_array().unwrap().len(), 50);
    let (_, c) = send(
        &m,
        "GET",
        "/api/ipam/ip-addresses/?start=4&limit=50",
        &Value::Null,
    );
    assert!(c["count"].is_null());
    assert_eq!(
        c["next"],
        "http://127.0.0.1:8001/api/ipam/ip-addresses/?limit=50&start=54"
    );
    let (s, e) = send(
        &m,
        "GET",
        "/api/ipam/ip-addresses/?start=4&offset=10",
        &Value::Null,
    );
    assert_eq!(s, 400);
    assert_eq!(e, json!(["'start' and 'offset' are mutually exclusive."]));
}

#[test]
fn unknown_filters_are_ignored_and_unknown_related_slugs_are_400() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let (s, all) = send(&m, "GET", "/api/dcim/devices/?bogus=1", &Value::Null);
    assert_eq!(s, 200);
    assert_eq!(all["count"], 1);
    let (s, typo) = send(&m, "GET", "/api/dcim/devices/?nme=nothing", &Value::Null);
    assert_eq!(s, 200);
    assert_eq!(
        typo["count"], 1,
        "a misspelt filter returns the whole table"
    );
    let (s, none) = send(&m, "GET", "/api/dcim/devices/?name=nothing", &Value::Null);
    assert_eq!((s, none["count"].clone()), (200, json!(0)));
    let (s, e) = send(
        &m,
        "GET",
        "/api/dcim/devices/?site=nosuchsite",
        &Value::Null,
    );
    assert_eq!(s, 400);
    assert!(e["site"][0].as_str().unwrap().contains("nosuchsite"));
    let (s, cf) = send(
        &m,
        "GET",
        "/api/dcim/devices/?cf_agent_source_id=proxmox:node/pve1",
        &Value::Null,
    );
    assert_eq!((s, cf["count"].clone()), (200, json!(1)));
}

#[test]
fn unknown_and_read_only_fields_are_dropped_and_noop_patches_write_nothing() {
    let m = fresh();
    assert!(replay(&m, BOOTSTRAP, "02").is_empty());
    let before = m.stats().changes;
    let (s, v) = send(
        &m,
        "PATCH",
        "/api/dcim/interfaces/3/",
        &json!({"mac_address": "AA:AA:AA:AA:AA:AA", "bogus": 1, "name": "eno1"}),
    );
    assert_eq!(s, 200);
    assert_eq!(v["mac_address"], "BC:24:11:00:00:01");
    assert!(v.get("bogus").is_none());
    assert_eq!(m.stats().changes, before, "a no-op PATCH writes no change");
    let (s, _) = send(
        &m,
        "PATCH",
        "/api/dcim/devices/4/",
        &json!({"description": "x", "changelog_message": "why"}),
    );
    assert_eq!(s, 200);
    let last = m.changes().pop().unwrap();
    assert_eq!(
        (last.action, last.object_type, last.message.as_str()),
        ("update", "dcim.device", "why")
    );
}

#[test]
fn auth_classes_and_injected_failures() {
    let m = fresh();
    let (s, e) = send_as(&m, "GET", "/api/dcim/sites/", &Value::Null, None);
    assert_eq!(s, 403);
    assert_eq!(e["detail"], "Authentication credentials were not provided.");
    let (s, e) = send_as(
        &m,
        "GET",
        "/api/dcim/sites/",
        &Value::Null,
        Some("Bearer nbt_abc.def"),
    );
    assert_eq!((s, e["detail"].as_str()), (403, Some("Invalid v2 token")));
    let (s, _) = send_as(
        &m,
        "GET",
        "/api/dcim/sites/",
        &Value::Null,
        Some("Token <LEGACY_TOKEN>"),
    );
    assert_eq!(s, 200);
    m.fail_next(&[503, 429]);
    assert_eq!(send(&m, "GET", "/api/dcim/sites/", &Value::Null).0, 503);
    assert_eq!(send(&m, "GET", "/api/dcim/sites/", &Value::Null).0, 429);
    assert_eq!(send(&m, "GET", "/api/dcim/sites/", &Value::Null).0, 200);
    let st = m.stats();
    assert_eq!((st.requests, st.reads, st.write_requests), (6, 6, 0));
}

#[test]
fn the_comparison_notices_a_difference() {
    // Ids starting at 1 instead of the recorded sequences: the replay must
    // report mismatches, or the tests above prove nothing.
    let m = NetBoxModel::new(None).unwrap();
    let problems = replay(&m, BOOTSTRAP, "02-bootstrap");
    assert!(problems.len() > 10, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains(".id: recorded 3, fake 1")),
        "{problems:?}"
    );
}
