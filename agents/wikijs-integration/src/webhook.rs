//! Push webhook verification (pure: headers and raw body in, verdict out).
//!
//! Provider detection order matters: Forgejo and Gitea also send GitHub's
//! headers (`X-GitHub-Event`, `X-Hub-Signature-256`), so `X-Forgejo-Event`
//! and `X-Gitea-Event` are looked at first. Signatures:
//!
//! | provider | event header | signature |
//! |---|---|---|
//! | Forgejo | `X-Forgejo-Event` | `X-Forgejo-Signature` (bare hex HMAC-SHA256), else `X-Gitea-Signature` |
//! | Gitea | `X-Gitea-Event` | `X-Gitea-Signature` (bare hex HMAC-SHA256) |
//! | GitLab | `X-Gitlab-Event` | `X-Gitlab-Token` (the secret itself), and the Standard Webhooks `webhook-signature` when present |
//! | GitHub | `X-GitHub-Event` | `X-Hub-Signature-256: sha256=<hex>` |
//!
//! All comparisons are constant-time over the raw body bytes. Delivery ids
//! (`X-Forgejo-Delivery`, `X-Gitea-Delivery`, `X-GitHub-Delivery`,
//! `Idempotency-Key`/`X-Gitlab-Event-UUID`, `webhook-id`) let the caller drop
//! replays. The payload is only a trigger: `ref` must be the configured
//! branch; the change set is computed from the repository, never from the
//! payload's file lists.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hyper::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Standard Webhooks: largest accepted clock difference (seconds).
pub const TOLERANCE_S: i64 = 300;

/// Who sent the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub.
    GitHub,
    /// Gitea.
    Gitea,
    /// Forgejo.
    Forgejo,
    /// GitLab.
    GitLab,
}

impl Provider {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Gitea => "gitea",
            Provider::Forgejo => "forgejo",
            Provider::GitLab => "gitlab",
        }
    }
}

/// What the delivery asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `ping` (GitHub, Gitea/Forgejo test deliveries).
    Ping,
    /// A push to `git_ref` with `before`/`after` commits.
    Push {
        /// `refs/heads/main`.
        git_ref: String,
        /// Old head (all zeros for a new branch).
        before: String,
        /// New head (all zeros for a deleted branch).
        after: String,
    },
    /// Anything else (answered, ignored).
    Other(String),
}

/// A verified delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Sender.
    pub provider: Provider,
    /// Delivery id, when the provider sends one.
    pub id: Option<String>,
    /// What it is.
    pub event: Event,
}

/// A refused delivery: HTTP status, error code and message (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// 400, 401, 403, 415.
    pub status: u16,
    /// Snake-case code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

fn reject(status: u16, code: &'static str, message: impl Into<String>) -> Reject {
    Reject {
        status,
        code,
        message: message.into(),
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hex_matches(expected: &[u8], given_hex: &str) -> bool {
    match hex::decode(given_hex.trim()) {
        Ok(given) => given.len() == expected.len() && bool::from(given.ct_eq(expected)),
        Err(_) => false,
    }
}

/// Verifies a delivery. `secret` is the shared webhook secret,
/// `signing_key` the Standard Webhooks key (`whsec_…`), `now` Unix seconds.
pub fn verify(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
    signing_key: Option<&str>,
    now: i64,
) -> Result<Delivery, Reject> {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(reject(
            403,
            "webhook_disabled",
            "no webhook_secret is set in the secrets file; set one and configure the same secret in the Git host's webhook",
        ));
    };
    let (provider, event_name) = if let Some(e) = header(headers, "x-forgejo-event") {
        (Provider::Forgejo, e)
    } else if let Some(e) = header(headers, "x-gitea-event") {
        (Provider::Gitea, e)
    } else if let Some(e) = header(headers, "x-gitlab-event") {
        (Provider::GitLab, e)
    } else if let Some(e) = header(headers, "x-github-event") {
        (Provider::GitHub, e)
    } else {
        return Err(reject(
            400,
            "unknown_provider",
            "no X-GitHub-Event, X-Gitea-Event, X-Forgejo-Event or X-Gitlab-Event header: not a GitHub, Gitea, Forgejo or GitLab webhook",
        ));
    };
    let sig_bad = |what: &str| {
        reject(
            401,
            "bad_signature",
            format!("{what} does not match the body signed with webhook_secret; check that the webhook's secret equals webhook_secret"),
        )
    };
    let id = match provider {
        Provider::Forgejo => {
            let sig = header(headers, "x-forgejo-signature")
                .or_else(|| header(headers, "x-gitea-signature"))
                .ok_or_else(|| {
                    reject(
                        401,
                        "missing_signature",
                        "Forgejo delivery without X-Forgejo-Signature: set a secret on the webhook",
                    )
                })?;
            if !hex_matches(&hmac_sha256(secret.as_bytes(), &[body]), sig) {
                return Err(sig_bad("X-Forgejo-Signature"));
            }
            header(headers, "x-forgejo-delivery").or_else(|| header(headers, "x-gitea-delivery"))
        }
        Provider::Gitea => {
            let sig = header(headers, "x-gitea-signature").ok_or_else(|| {
                reject(
                    401,
                    "missing_signature",
                    "Gitea delivery without X-Gitea-Signature: set a secret on the webhook",
                )
            })?;
            if !hex_matches(&hmac_sha256(secret.as_bytes(), &[body]), sig) {
                return Err(sig_bad("X-Gitea-Signature"));
            }
            header(headers, "x-gitea-delivery")
        }
        Provider::GitHub => {
            let sig = header(headers, "x-hub-signature-256").ok_or_else(|| {
                reject(
                    401,
                    "missing_signature",
                    "GitHub delivery without X-Hub-Signature-256: set a secret on the webhook",
                )
            })?;
            let Some(hexsig) = sig.strip_prefix("sha256=") else {
                return Err(sig_bad("X-Hub-Signature-256 (expected sha256=<hex>)"));
            };
            if !hex_matches(&hmac_sha256(secret.as_bytes(), &[body]), hexsig) {
                return Err(sig_bad("X-Hub-Signature-256"));
            }
            header(headers, "x-github-delivery")
        }
        Provider::GitLab => {
            let token = header(headers, "x-gitlab-token").ok_or_else(|| {
                reject(
                    401,
                    "missing_signature",
                    "GitLab delivery without X-Gitlab-Token: set the secret token on the webhook",
                )
            })?;
            if !bool::from(token.as_bytes().ct_eq(secret.as_bytes())) {
                return Err(reject(
                    401,
                    "bad_token",
                    "X-Gitlab-Token does not equal webhook_secret",
                ));
            }
            if let Some(sig) = header(headers, "webhook-signature") {
                verify_standard(headers, body, sig, signing_key, now)?;
            }
            header(headers, "idempotency-key")
                .or_else(|| header(headers, "x-gitlab-event-uuid"))
                .or_else(|| header(headers, "webhook-id"))
        }
    };
    let event = parse_event(provider, event_name, headers, body)?;
    Ok(Delivery {
        provider,
        id: id.map(str::to_string),
        event,
    })
}

/// Standard Webhooks: `webhook-signature: v1,<base64 HMAC-SHA256(key,
/// "{id}.{timestamp}.{body}")>` (several space-separated signatures allowed),
/// timestamp within [`TOLERANCE_S`].
fn verify_standard(
    headers: &HeaderMap,
    body: &[u8],
    sig: &str,
    key: Option<&str>,
    now: i64,
) -> Result<(), Reject> {
    let Some(key) = key else {
        return Err(reject(
            401,
            "signing_key_missing",
            "the delivery carries webhook-signature but no webhook_signing_key is set in the secrets file; set it to the webhook's signing token (whsec_…)",
        ));
    };
    let key_bytes = match key.strip_prefix("whsec_") {
        Some(k) => base64::engine::general_purpose::STANDARD
            .decode(k)
            .map_err(|_| {
                reject(
                    500,
                    "bad_signing_key",
                    "webhook_signing_key is not whsec_<base64>; copy it again from the Git host",
                )
            })?,
        None => key.as_bytes().to_vec(),
    };
    let id = header(headers, "webhook-id")
        .ok_or_else(|| reject(401, "bad_signature", "webhook-signature without webhook-id"))?;
    let ts = header(headers, "webhook-timestamp").ok_or_else(|| {
        reject(
            401,
            "bad_signature",
            "webhook-signature without webhook-timestamp",
        )
    })?;
    let t: i64 = ts
        .parse()
        .map_err(|_| reject(401, "bad_signature", "webhook-timestamp is not a number"))?;
    if (now - t).abs() > TOLERANCE_S {
        return Err(reject(401, "stale_signature", format!("webhook-timestamp is more than {TOLERANCE_S} s from this host's clock (replay or clock skew)")));
    }
    let expected = hmac_sha256(
        &key_bytes,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    let ok = sig.split_whitespace().any(|s| {
        s.strip_prefix("v1,")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|given| {
                given.len() == expected.len() && bool::from(given.ct_eq(&expected))
            })
    });
    if ok {
        Ok(())
    } else {
        Err(reject(
            401,
            "bad_signature",
            "webhook-signature does not match (Standard Webhooks v1)",
        ))
    }
}

fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    let value = text.split('&').find_map(|kv| kv.strip_prefix("payload="))?;
    let mut out = Vec::new();
    let b = value.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                out.push(u8::from_str_radix(&value[i + 1..i + 3], 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

fn parse_event(
    provider: Provider,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Event, Reject> {
    let push = match (provider, name) {
        (Provider::GitLab, "Push Hook") => true,
        (Provider::GitLab, other) => return Ok(Event::Other(other.to_string())),
        (_, "ping") => return Ok(Event::Ping),
        (_, "push") => true,
        (_, other) => return Ok(Event::Other(other.to_string())),
    };
    debug_assert!(push);
    let form = header(headers, "content-type")
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let json_bytes = if form {
        form_payload(body).ok_or_else(|| {
            reject(
                400,
                "bad_payload",
                "form-encoded delivery without a payload= field",
            )
        })?
    } else {
        body.to_vec()
    };
    let v: serde_json::Value = serde_json::from_slice(&json_bytes)
        .map_err(|e| reject(400, "bad_payload", format!("push payload is not JSON: {e}")))?;
    let s = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    };
    let git_ref =
        s("ref").ok_or_else(|| reject(400, "bad_payload", "push payload without `ref`"))?;
    Ok(Event::Push {
        git_ref,
        before: s("before").unwrap_or_default(),
        after: s("after").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(items: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in items {
            h.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","before":"a","after":"b"}"#;

    fn hex_sig(secret: &str, body: &[u8]) -> String {
        hex::encode(hmac_sha256(secret.as_bytes(), &[body]))
    }

    #[test]
    fn github_push_and_ping() {
        let sig = format!("sha256={}", hex_sig("s3cret", BODY));
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &sig),
            ("x-github-delivery", "d1"),
        ]);
        let d = verify(&h, BODY, Some("s3cret"), None, 0).unwrap();
        assert_eq!(d.provider, Provider::GitHub);
        assert_eq!(d.id.as_deref(), Some("d1"));
        assert!(matches!(d.event, Event::Push { ref git_ref, .. } if git_ref == "refs/heads/main"));
        assert_eq!(
            verify(&h, BODY, Some("other"), None, 0).unwrap_err().status,
            401
        );
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verify(&h, &tampered, Some("s3cret"), None, 0)
                .unwrap_err()
                .code,
            "bad_signature"
        );
        let ping = br#"{"zen":"x"}"#;
        let sig = format!("sha256={}", hex_sig("s3cret", ping));
        let h = headers(&[("x-github-event", "ping"), ("x-hub-signature-256", &sig)]);
        assert_eq!(
            verify(&h, ping, Some("s3cret"), None, 0).unwrap().event,
            Event::Ping
        );
    }

    #[test]
    fn gitea_is_detected_before_the_github_headers_it_also_sends() {
        // Gitea signs X-Hub-Signature-256 too; make that one wrong to prove
        // the bare-hex X-Gitea-Signature is the one checked.
        let h = headers(&[
            ("x-gitea-event", "push"),
            ("x-github-event", "push"),
            ("x-gitea-signature", &hex_sig("k", BODY)),
            ("x-hub-signature-256", "sha256=00"),
            ("x-gitea-delivery", "g1"),
        ]);
        let d = verify(&h, BODY, Some("k"), None, 0).unwrap();
        assert_eq!(d.provider, Provider::Gitea);
        assert_eq!(d.id.as_deref(), Some("g1"));
        let h = headers(&[
            ("x-forgejo-event", "push"),
            ("x-gitea-event", "push"),
            ("x-forgejo-signature", &hex_sig("k", BODY)),
            ("x-forgejo-delivery", "f1"),
        ]);
        assert_eq!(
            verify(&h, BODY, Some("k"), None, 0).unwrap().provider,
            Provider::Forgejo
        );
    }

    #[test]
    fn gitlab_token_and_standard_webhooks() {
        let h = headers(&[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "tok"),
            ("idempotency-key", "i1"),
        ]);
        assert_eq!(
            verify(&h, BODY, Some("tok"), None, 0)
                .unwrap()
                .id
                .as_deref(),
            Some("i1")
        );
        assert_eq!(
            verify(&h, BODY, Some("tok2"), None, 0).unwrap_err().code,
            "bad_token"
        );
        let key = b"0123456789abcdef0123456789abcdef";
        let whsec = format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        );
        let sig = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(key, &[b"msg_1", b".", b"1000", b".", BODY]));
        let signed = |sig: &str, ts: &str| {
            headers(&[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", "tok"),
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", ts),
                ("webhook-signature", sig),
            ])
        };
        let good = format!("v1,{sig}");
        assert!(verify(
            &signed(&good, "1000"),
            BODY,
            Some("tok"),
            Some(&whsec),
            1010
        )
        .is_ok());
        assert_eq!(
            verify(
                &signed(&good, "1000"),
                BODY,
                Some("tok"),
                Some(&whsec),
                5000
            )
            .unwrap_err()
            .code,
            "stale_signature"
        );
        assert_eq!(
            verify(
                &signed("v1,AAAA", "1000"),
                BODY,
                Some("tok"),
                Some(&whsec),
                1000
            )
            .unwrap_err()
            .code,
            "bad_signature"
        );
        assert_eq!(
            verify(&signed(&good, "1000"), BODY, Some("tok"), None, 1000)
                .unwrap_err()
                .code,
            "signing_key_missing"
        );
    }

    #[test]
    fn unknown_and_unsigned() {
        assert_eq!(
            verify(&headers(&[]), BODY, Some("k"), None, 0)
                .unwrap_err()
                .code,
            "unknown_provider"
        );
        assert_eq!(
            verify(&headers(&[("x-github-event", "push")]), BODY, None, None, 0)
                .unwrap_err()
                .status,
            403
        );
        assert_eq!(
            verify(
                &headers(&[("x-github-event", "push")]),
                BODY,
                Some("k"),
                None,
                0
            )
            .unwrap_err()
            .code,
            "missing_signature"
        );
        let sig = format!("sha256={}", hex_sig("k", b"{}"));
        let h = headers(&[("x-github-event", "issues"), ("x-hub-signature-256", &sig)]);
        assert_eq!(
            verify(&h, b"{}", Some("k"), None, 0).unwrap().event,
            Event::Other("issues".into())
        );
    }

    #[test]
    fn github_form_encoded() {
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D";
        let sig = format!("sha256={}", hex_sig("k", body));
        let h = headers(&[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &sig),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert!(
            matches!(verify(&h, body, Some("k"), None, 0).unwrap().event, Event::Push { ref git_ref, .. } if git_ref == "refs/heads/main")
        );
    }
}
