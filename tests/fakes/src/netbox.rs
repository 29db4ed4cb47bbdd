//! Fake NetBox 4.6.8 REST API.
//!
//! Replays `netbox/01-auth.json`: `GET /api/status/` (what netbox-agent
//! sends today) with valid v2 and legacy tokens under either keyword, and
//! the recorded 403s for a wrong v2 secret, an unknown v2 key, an unknown
//! legacy token, a bare `Bearer` and no header. Requests are matched on
//! method, path with query, JSON body and the *class* of the credential:
//!
//! | sent token | class | replays the exchange recorded with |
//! |---|---|---|
//! | `<TOKEN>`, or the configured token when it starts with `nbt_` | valid v2 | `Bearer <TOKEN>` / `Token <TOKEN>` (the keyword sent first) |
//! | `<LEGACY_TOKEN>`, or the configured token otherwise | valid v1 | `Token <LEGACY_TOKEN>` / `Bearer <LEGACY_TOKEN>` |
//! | `nbt_<key>.<secret>`, key of the configured token or `<KEY>` | wrong v2 secret | `Bearer nbt_<KEY>.<WRONG_SECRET>` |
//! | other `nbt_…` | unknown v2 key | `Bearer nbt_<UNKNOWN_KEY>.<SECRET>` |
//! | anything else | unknown v1 token | `Token <WRONG_LEGACY_TOKEN>` |
//! | `Bearer`/`Token` alone, or with spaces in the value | malformed | `Bearer` |
//! | no header, another scheme | none | no header |
//!
//! As in NetBox, the keyword does not decide the token's kind; the `nbt_`
//! prefix does. A refused credential on a route that was recorded (any
//! query) gets the recorded 403 of its class, since NetBox authenticates
//! before the view runs. Anything else is unrecorded (599).
//!
//! Extension point for issue 9 (device/IP sync): object creation and
//! updates (`POST`/`PATCH` on the list and detail URLs, answered in the
//! shapes of `02-bootstrap.json` and `08-updates.json`) go into
//! [`Upstream::answer`] ahead of the replay lookup, with their state behind a
//! `Mutex` in [`NetBoxFake`].

use std::net::SocketAddr;
use std::sync::Arc;

use crate::lookup;
use crate::secret::Secret;
use crate::server::{serve, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::{Recorded, Transcript};
use crate::{fixtures, Error};

/// The recorded valid credentials, by kind.
const V2: &str = "<TOKEN>";
const V1: &str = "<LEGACY_TOKEN>";

/// Builder for a fake NetBox.
#[derive(Debug, Clone, Default)]
pub struct NetBox {
    token: Option<Secret>,
    extra: Vec<Transcript>,
}

impl NetBox {
    /// A fake that accepts the fixtures' placeholder tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts `token` (a v2 `nbt_<key>.<secret>` or a legacy token).
    #[must_use]
    pub fn with_token(mut self, token: Secret) -> Self {
        self.token = Some(token);
        self
    }

    /// Replays these exchanges too (after the built-in ones).
    #[must_use]
    pub fn with_transcript(mut self, transcript: Transcript) -> Self {
        self.extra.push(transcript);
        self
    }

    /// The fake, ready to serve.
    pub fn build(self) -> Result<NetBoxFake, Error> {
        Ok(NetBoxFake {
            recorded: fixtures::recorded(fixtures::NETBOX, self.extra)?,
            token: self.token,
        })
    }

    /// Starts the fake on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<Handle, Error> {
        serve(Arc::new(self.build()?), addr).await
    }

    /// Starts a fake that accepts the fixtures' tokens on `addr`.
    pub async fn spawn(addr: SocketAddr) -> Result<Handle, Error> {
        Self::new().serve(addr).await
    }
}

/// The credential classes NetBox distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenClass {
    /// An accepted v2 token, sent with this keyword.
    ValidV2(&'static str),
    /// An accepted legacy token, sent with this keyword.
    ValidV1(&'static str),
    /// A v2 token whose key exists but whose secret is wrong.
    WrongV2Secret,
    /// A v2 token whose key does not exist.
    UnknownV2Key,
    /// A legacy token that does not exist.
    UnknownV1,
    /// `Bearer`/`Token` without a value, or a value with spaces.
    Malformed,
    /// No credentials.
    Missing,
}

impl TokenClass {
    fn is_valid(self) -> bool {
        matches!(self, Self::ValidV2(_) | Self::ValidV1(_))
    }

    /// The recorded `Authorization` values to try, best first.
    fn candidates(self) -> Vec<Option<String>> {
        let s = |v: &str| Some(v.to_string());
        let all_valid = [
            format!("Bearer {V2}"),
            format!("Token {V2}"),
            format!("Token {V1}"),
            format!("Bearer {V1}"),
        ];
        let valid = |first: String| {
            std::iter::once(Some(first.clone()))
                .chain(all_valid.iter().filter(|v| **v != first).cloned().map(Some))
                .collect()
        };
        match self {
            Self::ValidV2(kw) => valid(format!("{kw} {V2}")),
            Self::ValidV1(kw) => valid(format!("{kw} {V1}")),
            Self::WrongV2Secret => vec![
                s("Bearer nbt_<KEY>.<WRONG_SECRET>"),
                s("Bearer nbt_<UNKNOWN_KEY>.<SECRET>"),
            ],
            Self::UnknownV2Key => vec![
                s("Bearer nbt_<UNKNOWN_KEY>.<SECRET>"),
                s("Bearer nbt_<KEY>.<WRONG_SECRET>"),
            ],
            Self::UnknownV1 => vec![s("Token <WRONG_LEGACY_TOKEN>")],
            Self::Malformed => vec![s("Bearer")],
            Self::Missing => vec![None],
        }
    }
}

/// A fake NetBox (see the module docs).
#[derive(Debug)]
pub struct NetBoxFake {
    recorded: Vec<Recorded>,
    token: Option<Secret>,
}

fn v2_key(token: &str) -> Option<&str> {
    token.strip_prefix("nbt_")?.split('.').next()
}

impl NetBoxFake {
    /// Classifies an `Authorization` header value.
    pub fn classify(&self, header: Option<&str>) -> TokenClass {
        let Some(header) = header else {
            return TokenClass::Missing;
        };
        let (keyword, token) = match header.split_once(' ') {
            Some(("Bearer", t)) => ("Bearer", t),
            Some(("Token", t)) => ("Token", t),
            None if header == "Bearer" || header == "Token" => return TokenClass::Malformed,
            _ => return TokenClass::Missing,
        };
        if token.is_empty() || token.contains(char::is_whitespace) {
            return TokenClass::Malformed;
        }
        let configured = self.token.as_ref().map(Secret::expose);
        if token == V2 || (configured == Some(token) && token.starts_with("nbt_")) {
            return TokenClass::ValidV2(keyword);
        }
        if token == V1 || configured == Some(token) {
            return TokenClass::ValidV1(keyword);
        }
        match v2_key(token) {
            Some(key) if key == "<KEY>" || configured.and_then(v2_key) == Some(key) => {
                TokenClass::WrongV2Secret
            }
            Some(_) => TokenClass::UnknownV2Key,
            None => TokenClass::UnknownV1,
        }
    }
}

impl Upstream for NetBoxFake {
    fn name(&self) -> &'static str {
        "netbox"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        let class = self.classify(req.authorization());
        let candidates = class.candidates();
        lookup::answer_after_auth(
            &self.recorded,
            req,
            &candidates,
            !class.is_valid(),
            403,
            &format!(" with a credential of class {class:?}"),
            "credential",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_classes() {
        let nb = NetBox::new()
            .with_token(Secret::new(
                "nbt_abcdefabcdef.0123456789012345678901234567890123456789",
            ))
            .build()
            .unwrap();
        let c = |h: &str| nb.classify(Some(h));
        assert_eq!(c("Bearer <TOKEN>"), TokenClass::ValidV2("Bearer"));
        assert_eq!(c("Token <LEGACY_TOKEN>"), TokenClass::ValidV1("Token"));
        assert_eq!(
            c("Token nbt_abcdefabcdef.0123456789012345678901234567890123456789"),
            TokenClass::ValidV2("Token")
        );
        assert_eq!(
            c("Bearer nbt_abcdefabcdef.x123456789012345678901234567890123456789"),
            TokenClass::WrongV2Secret
        );
        assert_eq!(
            c("Bearer nbt_<KEY>.<WRONG_SECRET>"),
            TokenClass::WrongV2Secret
        );
        assert_eq!(c("Bearer nbt_zzz.yyy"), TokenClass::UnknownV2Key);
        assert_eq!(c("Token 0123"), TokenClass::UnknownV1);
        assert_eq!(c("Bearer"), TokenClass::Malformed);
        assert_eq!(c("Bearer a b"), TokenClass::Malformed);
        assert_eq!(c("Basic dXNlcjpwdw=="), TokenClass::Missing);
        assert_eq!(nb.classify(None), TokenClass::Missing);

        let legacy = NetBox::new()
            .with_token(Secret::new("0123456789abcdef0123456789abcdef01234567"))
            .build()
            .unwrap();
        assert_eq!(
            legacy.classify(Some("Bearer 0123456789abcdef0123456789abcdef01234567")),
            TokenClass::ValidV1("Bearer")
        );
    }
}
