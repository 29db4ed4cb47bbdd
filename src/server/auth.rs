//! Who is calling, and what they may do: `SO_PEERCRED` → [`Role`].
//!
//! What this module owns:
//! - [`PeerInfo`]: every connection's peer credentials (uid, gid, pid), read
//!   once at accept time from the kernel, never from anything the client sends;
//! - [`Roles`]: the decision, from the group database, with a short cache;
//! - [`authorize`]: the layer in front of every route (the fallbacks
//!   included) that enforces the role and writes the audit trail.
//!
//! Rules (issue 3):
//! - **admin**: uid 0, or a member of `[api] admin_group`;
//! - **viewer**: any other member of `[api] group`: `GET`/`HEAD` only, and
//!   not the reads listed in [`ADMIN_ONLY_READS`] (operation logs, secrets);
//! - anyone else: 403 on every request, even if the socket file's mode was
//!   loosened; a connection whose credentials cannot be read is "anyone else".
//!
//! Membership is the group database's (primary group and supplementary
//! groups of the user, `getgrouplist(3)`), plus the connecting process's own
//! gid. Lookups are cached for [`CACHE_TTL`], so a group change applies
//! within seconds without a lookup on every request.
//!
//! Every mutating request (any method but `GET`/`HEAD`/`OPTIONS`), allowed or
//! refused, is published as a `lifecycle` event: requestor (uid, user, pid),
//! role, method, path and response status. The event bus persists
//! `lifecycle` events in the store.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

use super::error::BodyLimit;
use super::Ctx;
use crate::api::{EventType, Requestor};
use crate::error::{Error, ErrorKind};

/// How long a user's or group's lookup is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Route templates a viewer may not read although they are `GET`s.
pub const ADMIN_ONLY_READS: &[&str] = &["/v1/operations/{id}/log", "/v1/deployments/{name}/logs"];

/// Most cached users; the cache is cleared when it would grow past this.
const CACHE_MAX: usize = 1024;

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// `GET` only; no logs or secrets.
    Viewer,
    /// Nothing: every request gets 403.
    Denied,
}

/// The kernel's credentials of a connection's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Effective uid of the connecting process.
    pub uid: u32,
    /// Effective gid of the connecting process.
    pub gid: u32,
    /// Its pid (0 when the kernel gives none, e.g. across pid namespaces).
    pub pid: i32,
}

/// Connect info of a Unix-socket connection: its peer, if the kernel told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo(pub Option<Peer>);

impl Connected<IncomingStream<'_, UnixListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => PeerInfo(Some(Peer {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid().unwrap_or(0),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read SO_PEERCRED; the connection is denied");
                PeerInfo(None)
            }
        }
    }
}

/// The authenticated caller of a request (a request extension set by
/// [`authorize`]; handlers extract it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its role.
    pub role: Role,
    /// Who it is, for operations and the audit trail.
    pub requestor: Requestor,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Error::internal("route without the authorize layer"))
    }
}

/// The role of a caller from its facts (pure; the whole policy).
///
/// `member_of` holds the gids of the user's groups and the process's gid;
/// a group that does not exist (`None`) has no members.
pub fn decide(uid: u32, member_of: &[u32], group: Option<u32>, admin_group: Option<u32>) -> Role {
    let member = |g: Option<u32>| g.is_some_and(|g| member_of.contains(&g));
    if uid == 0 || member(admin_group) {
        Role::Admin
    } else if member(group) {
        Role::Viewer
    } else {
        Role::Denied
    }
}

#[derive(Debug, Clone)]
struct UserFacts {
    /// The user name, if the uid has one.
    name: Option<String>,
    /// Primary and supplementary gids from the group database.
    gids: Vec<u32>,
}

#[derive(Debug)]
struct Cached<T> {
    at: Instant,
    value: T,
}

/// The role resolver: group-database lookups with a short cache.
#[derive(Debug, Clone, Default)]
pub struct Roles {
    users: Arc<Mutex<HashMap<u32, Cached<UserFacts>>>>,
    groups: Arc<Mutex<HashMap<String, Cached<Option<u32>>>>>,
}

fn fresh<T: Clone>(c: Option<&Cached<T>>) -> Option<T> {
    c.filter(|c| c.at.elapsed() < CACHE_TTL)
        .map(|c| c.value.clone())
}

fn lookup_user(uid: u32) -> UserFacts {
    use nix::unistd::{getgrouplist, Uid, User};
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => {
            let gids = CString::new(user.name.as_str())
                .ok()
                .and_then(|n| getgrouplist(&n, user.gid).ok())
                .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
                .unwrap_or_else(|| vec![user.gid.as_raw()]);
            UserFacts {
                name: Some(user.name),
                gids,
            }
        }
        Ok(None) => UserFacts {
            name: None,
            gids: Vec::new(),
        },
        Err(e) => {
            tracing::warn!(uid, error = %e, "user database lookup failed");
            UserFacts {
                name: None,
                gids: Vec::new(),
            }
        }
    }
}

fn lookup_group(name: &str) -> Option<u32> {
    match nix::unistd::Group::from_name(name) {
        Ok(g) => g.map(|g| g.gid.as_raw()),
        Err(e) => {
            tracing::warn!(group = name, error = %e, "group database lookup failed");
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while holding these locks; never propagate poison.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Roles {
    /// A resolver with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    async fn user(&self, uid: u32) -> UserFacts {
        if let Some(f) = fresh(lock(&self.users).get(&uid)) {
            return f;
        }
        // NSS may be slow (LDAP, sssd): off the async threads.
        let facts = tokio::task::spawn_blocking(move || lookup_user(uid))
            .await
            .unwrap_or(UserFacts {
                name: None,
                gids: Vec::new(),
            });
        let mut users = lock(&self.users);
        if users.len() >= CACHE_MAX {
            users.clear();
        }
        users.insert(
            uid,
            Cached {
                at: Instant::now(),
                value: facts.clone(),
            },
        );
        facts
    }

    async fn group(&self, name: &str) -> Option<u32> {
        if let Some(g) = fresh(lock(&self.groups).get(name)) {
            return g;
        }
        let owned = name.to_string();
        let gid = tokio::task::spawn_blocking(move || lookup_group(&owned))
            .await
            .unwrap_or(None);
        let mut groups = lock(&self.groups);
        if groups.len() >= CACHE_MAX {
            groups.clear();
        }
        groups.insert(
            name.to_string(),
            Cached {
                at: Instant::now(),
                value: gid,
            },
        );
        gid
    }

    /// The caller behind `peer` under the configured group names.
    pub async fn resolve(&self, peer: Peer, group: &str, admin_group: &str) -> Caller {
        let facts = self.user(peer.uid).await;
        let mut member_of = facts.gids;
        member_of.push(peer.gid);
        let role = decide(
            peer.uid,
            &member_of,
            self.group(group).await,
            self.group(admin_group).await,
        );
        Caller {
            role,
            requestor: Requestor {
                uid: peer.uid,
                user: facts.name.unwrap_or_else(|| peer.uid.to_string()),
                pid: peer.pid,
            },
        }
    }
}

fn forbidden(message: String) -> Response {
    Error::new(ErrorKind::Forbidden, message).into_response()
}

fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// The layer in front of every route: resolves the caller's role, refuses
/// what the role does not allow (403), and records mutating requests as
/// `lifecycle` events.
pub async fn authorize(State(ctx): State<Arc<Ctx>>, mut req: Request, next: Next) -> Response {
    let (group, admin_group, max_body) = {
        let cfg = ctx.app.config();
        (
            cfg.api.group.clone(),
            cfg.api.admin_group.clone(),
            cfg.api.max_body_bytes,
        )
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerInfo>>()
        .and_then(|c| c.0 .0);
    let caller = match peer {
        Some(p) => ctx.roles.resolve(p, &group, &admin_group).await,
        None => Caller {
            role: Role::Denied,
            requestor: Requestor {
                uid: u32::MAX,
                user: "unknown".into(),
                pid: 0,
            },
        },
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());

    let refusal = match caller.role {
        Role::Admin => None,
        Role::Denied => Some(format!(
            "user {} (uid {}) may not use the 1ld API: not a member of group `{group}` \
             ([api] group) or `{admin_group}` ([api] admin_group); an administrator can \
             run `usermod -aG {group} {}`",
            caller.requestor.user, caller.requestor.uid, caller.requestor.user
        )),
        Role::Viewer if !is_read(&method) => Some(format!(
            "user {} is a viewer (group `{group}`): read-only; changes need group \
             `{admin_group}` ([api] admin_group)",
            caller.requestor.user
        )),
        Role::Viewer
            if route
                .as_deref()
                .is_some_and(|r| ADMIN_ONLY_READS.contains(&r)) =>
        {
            Some(format!(
                "user {} is a viewer (group `{group}`): logs and secrets need group \
                 `{admin_group}` ([api] admin_group)",
                caller.requestor.user
            ))
        }
        Role::Viewer => None,
    };

    let audited = !is_read(&method) && method != Method::OPTIONS;
    let response = match refusal {
        Some(message) => {
            tracing::info!(
                uid = caller.requestor.uid,
                pid = caller.requestor.pid,
                %method,
                path,
                "request refused by role"
            );
            forbidden(message)
        }
        None => {
            req.extensions_mut().insert(caller.clone());
            req.extensions_mut().insert(BodyLimit(max_body));
            next.run(req).await
        }
    };
    let response = super::error::finish(response, ctx.app.secrets.redactor());
    if audited {
        audit(&ctx, &caller, &method, &path, response.status());
    }
    response
}

fn audit(ctx: &Ctx, caller: &Caller, method: &Method, path: &str, status: StatusCode) {
    let payload = serde_json::json!({
        "action": "api_request",
        "requestor": caller.requestor,
        "role": caller.role,
        "method": method.as_str(),
        "path": path,
        "status": status.as_u16(),
    });
    ctx.app.events.publish(EventType::Lifecycle, payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_admin_even_without_groups() {
        assert_eq!(decide(0, &[], None, None), Role::Admin);
    }

    #[test]
    fn admin_group_beats_group() {
        assert_eq!(decide(1000, &[10, 11], Some(10), Some(11)), Role::Admin);
        assert_eq!(decide(1000, &[11], Some(10), Some(11)), Role::Admin);
    }

    #[test]
    fn group_members_are_viewers_and_others_denied() {
        assert_eq!(decide(1000, &[10], Some(10), Some(11)), Role::Viewer);
        assert_eq!(decide(1000, &[12], Some(10), Some(11)), Role::Denied);
        // A group that does not exist has no members.
        assert_eq!(decide(1000, &[10], None, None), Role::Denied);
    }

    #[tokio::test]
    async fn root_resolves_by_name() {
        let roles = Roles::new();
        let c = roles
            .resolve(
                Peer {
                    uid: 0,
                    gid: 0,
                    pid: 1,
                },
                "no-such-group-1ld",
                "no-such-group-1ld-admin",
            )
            .await;
        assert_eq!(c.role, Role::Admin);
        assert_eq!(c.requestor.user, "root");
    }
}
