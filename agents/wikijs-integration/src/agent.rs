//! The agent: builds from config, secrets and the state database, and its
//! work cycle.
//!
//! The cycle today: the Wiki.js check (reported as `wikijs_api`), then one
//! row in the database's `runs` table. The `state_db` check is unhealthy when
//! the database cannot be opened, fails `PRAGMA integrity_check` at start, or
//! its last write failed; a database in that state is never written to.

use std::sync::Arc;
use std::time::Duration;

use agent_runtime::config::Invalid;
use agent_runtime::health::{rfc3339, LastCheck};
use agent_runtime::http_client::BaseUrl;
use agent_runtime::run::{AgentInfo, BuildError, Setup};
use agent_runtime::{
    Agent, CheckOutcome, CycleContext, CycleError, CycleReport, Reporter, Secret, ServiceConfig,
    Worker,
};
use time::OffsetDateTime;

use crate::config::{Config, Secrets};
use crate::store::{RunRow, Store};
use crate::wikijs::{self, ApiCheck};

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
        Ok(Self {
            base,
            key: setup.secrets.wikijs_api_key,
            timeout: Duration::from_secs(setup.config.wikijs.timeout_s),
            api,
            db,
            store,
            last: LastCheck::default(),
        })
    }
}

impl WikiAgent {
    async fn check_wiki(&self) -> ApiCheck {
        let result = wikijs::check(&self.base, &self.key, self.timeout).await;
        self.api.set(result.outcome(self.base.as_str()));
        self.last.record(&result);
        result
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
            (ApiCheck::Ok { version, pages }, None) => Ok(CycleReport::ok(format!(
                "Wiki.js {} reachable, API key accepted{}",
                version.as_deref().unwrap_or("?"),
                if ctx.dry_run { " (dry run)" } else { "" }
            ))
            .counter("wiki_pages", pages.unwrap_or(0))
            .counter("wiki_writes", 0)),
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
            "state": state,
        })
    }
}
