//! The agent: builds from config, secrets and the state database; its work
//! cycle (Wiki.js check, then one sync run); its own routes (`POST
//! /webhook`, `POST /wiki-agent/sync`, `GET /metrics`).
//!
//! The `state_db` check is unhealthy when the database cannot be opened,
//! fails `PRAGMA integrity_check` at start, or its last write failed; a
//! database in that state is never written to. Webhooks and the manual sync
//! only pull the runtime's trigger: cycles never overlap and requests
//! arriving during a cycle coalesce into one follow-up cycle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use agent_runtime::config::Invalid;
use agent_runtime::health::{rfc3339, LastCheck};
use agent_runtime::http_client::BaseUrl;
use agent_runtime::run::{AgentInfo, BuildError, Setup};
use agent_runtime::server::{error_response, json_response, AgentRequest, AgentResponse};
use agent_runtime::{
    Agent, CheckOutcome, CycleContext, CycleError, CycleReport, Reporter, Secret, ServiceConfig,
    TriggerHandle, Worker,
};
use hyper::{Method, StatusCode};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::client::{GraphqlWiki, WikiError};
use crate::config::{Config, Secrets};
use crate::git::{Location, Source};
use crate::store::{RunRow, Store};
use crate::sync::{Engine, Report, Settings, SyncError};
use crate::webhook::{self, Event};
use crate::wikijs::{self, ApiCheck};

/// Counters behind `/metrics`.
#[derive(Debug, Default)]
struct Metrics {
    syncs_ok: AtomicU64,
    syncs_failed: AtomicU64,
    created: AtomicU64,
    updated: AtomicU64,
    moved: AtomicU64,
    deleted: AtomicU64,
    uploaded: AtomicU64,
    hooks_accepted: AtomicU64,
    hooks_duplicate: AtomicU64,
    hooks_ignored: AtomicU64,
    hooks_rejected: AtomicU64,
    last_sync_unix: AtomicU64,
    last_sync_ms: AtomicU64,
}

/// The wikijs-integration agent.
pub struct WikiAgent {
    base: BaseUrl,
    key: Secret,
    timeout: Duration,
    api: Reporter,
    db: Reporter,
    /// `Err` holds why the database is unusable.
    store: Result<Arc<Store>, String>,
    last: LastCheck<ApiCheck>,
    engine: Option<Engine<GraphqlWiki>>,
    branch: String,
    source_desc: Option<String>,
    webhook_secret: Option<Secret>,
    signing_key: Option<Secret>,
    sync_token: Option<Secret>,
    trigger: TriggerHandle,
    full_requested: AtomicBool,
    queued: AtomicBool,
    max_body: usize,
    metrics: Metrics,
    last_report: Mutex<Option<serde_json::Value>>,
}

/// Opens the database for serving: open, integrity check, then migrate.
fn open_store(setup_dir: &std::path::Path, db: &Reporter) -> Result<Arc<Store>, String> {
    let store = Store::open(setup_dir).map_err(|e| e.to_string())?;
    match store.integrity_check() {
        Ok(Ok(())) => {}
        Ok(Err(problems)) => {
            return Err(format!(
                "{} failed its integrity check: {problems}; restore it from a backup or move it aside to start afresh",
                store.path().display()
            ))
        }
        Err(e) => return Err(e.to_string()),
    }
    let version = store.migrate().map_err(|e| e.to_string())?;
    db.set(CheckOutcome::healthy(format!(
        "{} passed its integrity check (schema v{version})",
        store.path().display()
    )));
    Ok(Arc::new(store))
}

fn nonblank(s: Option<Secret>) -> Option<Secret> {
    s.filter(|s| !s.is_blank())
}

impl Agent for WikiAgent {
    const INFO: AgentInfo = AgentInfo {
        name: "wikijs-integration",
        version: env!("CARGO_PKG_VERSION"),
        about: "1ld agent: publishes Markdown docs from Git into Wiki.js",
        default_port: 3001,
        status_path: "/wiki-agent/status",
    };
    type Config = Config;
    type Secrets = Secrets;

    fn service(config: &Config) -> &ServiceConfig {
        &config.service
    }

    fn validate(config: &Config) -> Result<(), Invalid> {
        config.validate()
    }

    fn build(setup: Setup<Config, Secrets>) -> Result<Self, BuildError> {
        let (base, api) = setup.upstream(
            "wikijs.url",
            &setup.config.wikijs.url,
            "wikijs_api_key",
            &setup.secrets.wikijs_api_key,
            "wikijs_api",
            "Wiki.js",
        )?;
        let db = setup
            .checks
            .reporter("state_db", CheckOutcome::pending("not opened yet"));
        let dir = &setup.settings.state_dir;
        let store = if setup.self_check {
            // Read-only, create nothing: see the store module.
            match Store::open_read_only(dir) {
                Ok(None) => {
                    db.set(CheckOutcome::degraded(format!(
                        "{} does not exist yet; the service creates it on first start",
                        dir.join(crate::store::DB_FILE).display()
                    )));
                    Err("no database (self-check)".to_string())
                }
                Ok(Some(store)) => match store.integrity_check() {
                    Ok(Ok(())) => {
                        db.set(CheckOutcome::healthy(format!(
                            "{} passed its integrity check",
                            store.path().display()
                        )));
                        Ok(Arc::new(store))
                    }
                    Ok(Err(p)) => Err(format!(
                        "{} failed its integrity check: {p}",
                        store.path().display()
                    )),
                    Err(e) => Err(e.to_string()),
                }
                .inspect_err(|e| db.set(CheckOutcome::unhealthy(e.clone()))),
                Err(e) => {
                    db.set(CheckOutcome::unhealthy(e.to_string()));
                    Err(e.to_string())
                }
            }
        } else {
            open_store(dir, &db).inspect_err(|e| {
                tracing::error!(error = %e, "state database unusable");
                db.set(CheckOutcome::unhealthy(e.clone()));
            })
        };
        let secrets = setup.secrets;
        let key = secrets.wikijs_api_key.clone();
        let timeout = Duration::from_secs(setup.config.wikijs.timeout_s);
        let (engine, branch, source_desc) = match (setup.config.source(), &store) {
            (Some(src), Ok(store)) => {
                let source = Source::new(
                    Location::parse(&src.repository),
                    &src.branch,
                    &src.subfolder,
                    dir,
                    &src.username,
                    nonblank(secrets.git_token.clone()),
                );
                let desc = source.describe();
                let engine = Engine {
                    wiki: GraphqlWiki::new(base.clone(), key.clone(), timeout),
                    source: Arc::new(source),
                    store: Arc::clone(store),
                    settings: Settings {
                        prefix: setup.config.wikijs.prefix.trim_matches('/').to_string(),
                        locale: setup.config.wikijs.locale.clone(),
                        asset_root: setup.config.wikijs.asset_root(),
                        on_delete: setup.config.wikijs.on_delete,
                    },
                };
                (Some(engine), src.branch.clone(), Some(desc))
            }
            (Some(src), Err(_)) => (None, src.branch.clone(), None),
            (None, _) => (None, String::new(), None),
        };
        Ok(Self {
            base,
            key,
            timeout,
            api,
            db,
            store,
            last: LastCheck::default(),
            engine,
            branch,
            source_desc,
            webhook_secret: nonblank(secrets.webhook_secret),
            signing_key: nonblank(secrets.webhook_signing_key),
            sync_token: nonblank(secrets.sync_token),
            trigger: setup.trigger,
            full_requested: AtomicBool::new(false),
            queued: AtomicBool::new(false),
            max_body: setup.config.webhook.max_body,
            metrics: Metrics::default(),
            last_report: Mutex::new(None),
        })
    }
}

fn sync_error(e: SyncError) -> CycleError {
    match e {
        SyncError::Git(g) => CycleError::Upstream {
            service: "Git".into(),
            detail: g.to_string(),
        },
        SyncError::Wiki(WikiError::Unreachable(d)) => CycleError::Unreachable {
            service: "Wiki.js".into(),
            detail: d,
        },
        SyncError::Wiki(WikiError::Auth(d)) => CycleError::Auth {
            service: "Wiki.js".into(),
            detail: d,
        },
        SyncError::Wiki(w) => CycleError::Upstream {
            service: "Wiki.js".into(),
            detail: w.to_string(),
        },
        SyncError::Store(s) => CycleError::State(s.to_string()),
        SyncError::Cancelled => CycleError::Cancelled,
    }
}

fn report_json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "commit": r.commit,
        "full_reconcile": r.full,
        "dry_run": r.dry_run,
        "up_to_date": r.up_to_date,
        "created": r.created,
        "updated": r.updated,
        "moved": r.moved,
        "deleted": r.deleted,
        "uploaded": r.uploaded,
        "deleted_assets": r.deleted_assets,
        "unchanged": r.unchanged,
        "problems": r.problems,
        "missing_links": r.missing_links.iter().map(|(s, t)| format!("{s}: {t}")).collect::<Vec<_>>(),
    })
}

impl WikiAgent {
    async fn check_wiki(&self) -> ApiCheck {
        let result = wikijs::check(&self.base, &self.key, self.timeout).await;
        self.api.set(result.outcome(self.base.as_str()));
        self.last.record(&result);
        result
    }

    async fn sync(&self, ctx: &CycleContext) -> Result<Option<Report>, CycleError> {
        let Some(engine) = &self.engine else {
            return Ok(None);
        };
        let full = self.full_requested.swap(false, Ordering::SeqCst);
        self.queued.store(false, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let result = engine.run(full, ctx.dry_run, || ctx.is_cancelled()).await;
        self.metrics.last_sync_ms.store(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.metrics.last_sync_unix.store(
            u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0),
            Ordering::Relaxed,
        );
        match result {
            Ok(r) => {
                self.metrics.syncs_ok.fetch_add(1, Ordering::Relaxed);
                let m = &self.metrics;
                m.created.fetch_add(r.created, Ordering::Relaxed);
                m.updated.fetch_add(r.updated, Ordering::Relaxed);
                m.moved.fetch_add(r.moved, Ordering::Relaxed);
                m.deleted.fetch_add(r.deleted, Ordering::Relaxed);
                m.uploaded.fetch_add(r.uploaded, Ordering::Relaxed);
                if ctx.dry_run {
                    for line in &r.plan {
                        println!("plan: {line}");
                    }
                }
                for p in &r.problems {
                    tracing::warn!(problem = %p, "sync problem");
                }
                for (s, t) in &r.missing_links {
                    tracing::warn!(document = %s, target = %t, "link to a missing document or file");
                }
                *self
                    .last_report
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(report_json(&r));
                Ok(Some(r))
            }
            Err(e) => {
                if full {
                    // Keep the request for the next cycle.
                    self.full_requested.store(true, Ordering::SeqCst);
                }
                self.metrics.syncs_failed.fetch_add(1, Ordering::Relaxed);
                Err(sync_error(e))
            }
        }
    }

    fn respond(status: StatusCode, body: serde_json::Value) -> Option<AgentResponse> {
        Some(json_response(status, &body))
    }

    async fn webhook(&self, req: AgentRequest) -> Option<AgentResponse> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let verdict = webhook::verify(
            &req.headers,
            &req.body,
            self.webhook_secret.as_ref().map(Secret::expose),
            self.signing_key.as_ref().map(Secret::expose),
            now,
        );
        let delivery = match verdict {
            Ok(d) => d,
            Err(r) => {
                self.metrics.hooks_rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(code = r.code, message = %r.message, "webhook refused");
                let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
                return Some(error_response(status, r.code, &r.message));
            }
        };
        if let (Some(id), Ok(store)) = (&delivery.id, &self.store) {
            let (store, id2, prov) = (Arc::clone(store), id.clone(), delivery.provider.as_str());
            let fresh =
                tokio::task::spawn_blocking(move || store.record_delivery(&id2, prov)).await;
            match fresh {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => {
                    self.metrics.hooks_duplicate.fetch_add(1, Ordering::Relaxed);
                    return Self::respond(
                        StatusCode::OK,
                        serde_json::json!({"duplicate": true, "delivery": id, "message": "delivery already seen; ignored"}),
                    );
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot record a webhook delivery");
                    self.db
                        .set(CheckOutcome::unhealthy(format!("last write failed: {e}")));
                    return Some(error_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "state_db",
                        "the state database cannot be written; see /health",
                    ));
                }
                Err(_) => {
                    return Some(error_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error",
                    ))
                }
            }
        }
        let provider = delivery.provider.as_str();
        match delivery.event {
            Event::Ping => Self::respond(
                StatusCode::OK,
                serde_json::json!({"pong": true, "provider": provider}),
            ),
            Event::Other(name) => {
                self.metrics.hooks_ignored.fetch_add(1, Ordering::Relaxed);
                Self::respond(
                    StatusCode::OK,
                    serde_json::json!({"ignored": true, "event": name, "message": "only push events trigger a sync"}),
                )
            }
            Event::Push { git_ref, after, .. } => {
                let wanted = format!("refs/heads/{}", self.branch);
                if git_ref != wanted {
                    self.metrics.hooks_ignored.fetch_add(1, Ordering::Relaxed);
                    return Self::respond(
                        StatusCode::OK,
                        serde_json::json!({"ignored": true, "ref": git_ref, "message": format!("not the configured branch ({wanted})")}),
                    );
                }
                if !after.is_empty() && after.chars().all(|c| c == '0') {
                    self.metrics.hooks_ignored.fetch_add(1, Ordering::Relaxed);
                    return Self::respond(
                        StatusCode::OK,
                        serde_json::json!({"ignored": true, "message": "branch deleted; pages are kept"}),
                    );
                }
                self.metrics.hooks_accepted.fetch_add(1, Ordering::Relaxed);
                self.queued.store(true, Ordering::SeqCst);
                let running = self.trigger.trigger(format!("webhook:{provider}"));
                Self::respond(
                    StatusCode::ACCEPTED,
                    serde_json::json!({"accepted": true, "provider": provider, "after": after, "queued": running}),
                )
            }
        }
    }

    /// `Some(refusal)` unless the request carries the sync token.
    fn refusal(&self, req: &AgentRequest) -> Option<AgentResponse> {
        let Some(token) = &self.sync_token else {
            return Some(error_response(
                StatusCode::FORBIDDEN,
                "sync_disabled",
                "no sync_token is set in the secrets file; set one to allow manual syncs",
            ));
        };
        let given = req
            .headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if bool::from(given.trim().as_bytes().ct_eq(token.expose().as_bytes())) {
            None
        } else {
            Some(error_response(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <sync_token from the secrets file>",
            ))
        }
    }

    fn metrics_text(&self) -> String {
        let m = &self.metrics;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in samples {
                s.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        metric(
            "wikijs_integration_syncs_total",
            "counter",
            "Sync runs by result.",
            &[
                ("{result=\"ok\"}", l(&m.syncs_ok)),
                ("{result=\"failed\"}", l(&m.syncs_failed)),
            ],
        );
        metric(
            "wikijs_integration_page_writes_total",
            "counter",
            "Wiki.js page writes by operation.",
            &[
                ("{op=\"create\"}", l(&m.created)),
                ("{op=\"update\"}", l(&m.updated)),
                ("{op=\"move\"}", l(&m.moved)),
                ("{op=\"delete\"}", l(&m.deleted)),
            ],
        );
        metric(
            "wikijs_integration_asset_uploads_total",
            "counter",
            "Asset uploads.",
            &[("", l(&m.uploaded))],
        );
        metric(
            "wikijs_integration_webhooks_total",
            "counter",
            "Webhook deliveries by outcome.",
            &[
                ("{outcome=\"accepted\"}", l(&m.hooks_accepted)),
                ("{outcome=\"duplicate\"}", l(&m.hooks_duplicate)),
                ("{outcome=\"ignored\"}", l(&m.hooks_ignored)),
                ("{outcome=\"rejected\"}", l(&m.hooks_rejected)),
            ],
        );
        metric(
            "wikijs_integration_last_sync_timestamp_seconds",
            "gauge",
            "Unix time of the last sync run.",
            &[("", l(&m.last_sync_unix))],
        );
        metric(
            "wikijs_integration_last_sync_duration_milliseconds",
            "gauge",
            "Duration of the last sync run.",
            &[("", l(&m.last_sync_ms))],
        );
        if let Ok(store) = &self.store {
            if let Ok(docs) = store.docs() {
                let mut by: std::collections::BTreeMap<String, u64> =
                    std::collections::BTreeMap::new();
                for d in docs {
                    *by.entry(d.state).or_default() += 1;
                }
                let labels: Vec<(String, u64)> = by
                    .into_iter()
                    .map(|(k, v)| (format!("{{state=\"{k}\"}}"), v))
                    .collect();
                let refs: Vec<(&str, u64)> = labels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                metric(
                    "wikijs_integration_documents",
                    "gauge",
                    "Documents by sync state.",
                    &refs,
                );
            }
        }
        s
    }
}

impl Worker for WikiAgent {
    async fn probe(&self) {
        self.check_wiki().await;
    }

    async fn cycle(&self, ctx: &CycleContext) -> Result<CycleReport, CycleError> {
        let started_at = rfc3339(OffsetDateTime::now_utc());
        let result = self.check_wiki().await;
        let store = self.store.clone().map_err(CycleError::State)?;
        let outcome = match (&result, result.error()) {
            (_, Some(e)) => Err(e),
            (ApiCheck::Ok { version, pages }, None) => match self.sync(ctx).await {
                Ok(None) => Ok(CycleReport::ok(format!(
                    "Wiki.js {} reachable, API key accepted; no [source] configured{}",
                    version.as_deref().unwrap_or("?"),
                    if ctx.dry_run { " (dry run)" } else { "" }
                ))
                .counter("wiki_pages", pages.unwrap_or(0))
                .counter("wiki_writes", 0)),
                Ok(Some(r)) if r.up_to_date => Ok(CycleReport::ok(format!(
                    "up to date at {}: nothing to do",
                    r.commit.get(..12).unwrap_or(&r.commit)
                ))
                .counter("wiki_pages", pages.unwrap_or(0))
                .counter("wiki_writes", 0)),
                Ok(Some(r)) => {
                    let summary = format!(
                        "{} at {}: {} created, {} updated, {} moved, {} deleted, {} uploaded, {} unchanged, {} problems{}",
                        if r.full { "full reconcile" } else { "sync" },
                        r.commit.get(..12).unwrap_or(&r.commit),
                        r.created,
                        r.updated,
                        r.moved,
                        r.deleted,
                        r.uploaded,
                        r.unchanged,
                        r.problems.len(),
                        if ctx.dry_run { format!(" (dry run: {} planned)", r.plan.len()) } else { String::new() }
                    );
                    let rep = if r.problems.is_empty() {
                        CycleReport::ok(summary)
                    } else {
                        CycleReport::partial(summary)
                    };
                    Ok(rep
                        .counter("wiki_pages", pages.unwrap_or(0))
                        .counter("wiki_writes", r.writes())
                        .counter("created", r.created)
                        .counter("updated", r.updated)
                        .counter("moved", r.moved)
                        .counter("deleted", r.deleted)
                        .counter("uploaded", r.uploaded)
                        .counter("unchanged", r.unchanged)
                        .counter("problems", r.problems.len() as u64)
                        .counter("planned", r.plan.len() as u64))
                }
                Err(e) => Err(e),
            },
            (_, None) => Err(CycleError::Upstream {
                service: "Wiki.js".into(),
                detail: "unexpected check result".into(),
            }),
        };
        // Local bookkeeping, also in dry-run: it writes nothing upstream.
        let trigger = ctx.trigger.to_string();
        let dry_run = ctx.dry_run;
        let (summary, error) = match &outcome {
            Ok(r) => (r.summary.clone(), None),
            Err(e) => (String::new(), Some(e.to_string())),
        };
        let write = tokio::task::spawn_blocking(move || {
            store.record_run(&RunRow {
                started_at: &started_at,
                finished_at: &rfc3339(OffsetDateTime::now_utc()),
                trigger: &trigger,
                dry_run,
                ok: error.is_none(),
                summary: &summary,
                error: error.as_deref(),
            })
        })
        .await
        .map_err(|e| CycleError::State(format!("database task failed: {e}")))?;
        match write {
            Ok(()) => self.db.set(CheckOutcome::healthy(
                "state database readable and writable (last write ok)",
            )),
            Err(e) => {
                self.db
                    .set(CheckOutcome::unhealthy(format!("last write failed: {e}")));
                return Err(CycleError::State(e.to_string()));
            }
        }
        outcome
    }

    fn status(&self) -> serde_json::Value {
        let (check, at) = self.last.status(|check| match check {
            ApiCheck::Ok { version, pages } => {
                Ok(serde_json::json!({"ok": true, "wikijs_version": version, "pages_total": pages}))
            }
            other => Err(other.error().map(|e| e.to_string())),
        });
        let state = match &self.store {
            Ok(store) => store
                .summary()
                .unwrap_or_else(|e| serde_json::json!({"error": e.to_string()})),
            Err(e) => serde_json::json!({"error": e}),
        };
        serde_json::json!({
            "wikijs": {"url": self.base.as_str(), "last_check": check, "last_checked_at": at},
            "source": self.source_desc,
            "queue": {
                "sync_requested": self.queued.load(Ordering::SeqCst),
                "full_reconcile_requested": self.full_requested.load(Ordering::SeqCst),
            },
            "last_sync": *self.last_report.lock().unwrap_or_else(PoisonError::into_inner),
            "state": state,
        })
    }

    fn has_routes() -> bool {
        true
    }

    fn max_request_body(&self) -> usize {
        self.max_body
    }

    async fn route(&self, req: AgentRequest) -> Option<AgentResponse> {
        match (req.method.clone(), req.path.as_str()) {
            (Method::POST, "/webhook") => self.webhook(req).await,
            (Method::POST, "/wiki-agent/sync") => {
                if let Some(resp) = self.refusal(&req) {
                    return Some(resp);
                }
                if self.engine.is_none() {
                    return Some(error_response(
                        StatusCode::CONFLICT,
                        "no_source",
                        "no [source] is configured; nothing to sync",
                    ));
                }
                self.full_requested.store(true, Ordering::SeqCst);
                self.queued.store(true, Ordering::SeqCst);
                let ok = self.trigger.trigger("manual");
                Self::respond(
                    StatusCode::ACCEPTED,
                    serde_json::json!({"accepted": true, "full_reconcile": true, "queued": ok}),
                )
            }
            (Method::GET, "/metrics") => {
                let mut resp = AgentResponse::new(http_body_util::Full::new(
                    hyper::body::Bytes::from(self.metrics_text()),
                ));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                Some(resp)
            }
            (_, "/webhook" | "/wiki-agent/sync" | "/metrics") => Some(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "POST /webhook, POST /wiki-agent/sync, GET /metrics",
            )),
            _ => None,
        }
    }
}
