//! The agent: builds from config and secrets, and its work cycle.
//!
//! The cycle today is the NetBox check (reported as the `netbox_api` health
//! check) followed by the enabled sources, of which there are none yet: the
//! default config scans nothing, and `Config::validate` refuses enabling a
//! source that does not exist.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use agent_runtime::config::Invalid;
use agent_runtime::http_client::BaseUrl;
use agent_runtime::run::{AgentInfo, BuildError, Setup};
use agent_runtime::{
    Agent, CheckOutcome, CycleContext, CycleError, CycleReport, Reporter, Secret, ServiceConfig,
    Worker,
};

use crate::config::{Config, Secrets};
use crate::netbox::{self, ApiCheck};

/// The netbox-agent.
pub struct NetboxAgent {
    base: BaseUrl,
    token: Secret,
    timeout: Duration,
    api: Reporter,
    last: Mutex<Option<(ApiCheck, String)>>,
    sources: Vec<(&'static str, bool)>,
}

impl NetboxAgent {
    async fn check_netbox(&self) -> ApiCheck {
        let result = netbox::check(&self.base, &self.token, self.timeout).await;
        self.api.set(result.outcome(self.base.as_str()));
        let at = agent_runtime::health::rfc3339(time_now());
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((result.clone(), at));
        result
    }
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

impl Agent for NetboxAgent {
    const INFO: AgentInfo = AgentInfo {
        name: "netbox-agent",
        version: env!("CARGO_PKG_VERSION"),
        about: "1ld agent: discovers the homelab and keeps NetBox in step",
        default_port: 8080,
        status_path: "/status",
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
        let base = BaseUrl::parse(&setup.config.netbox.url)
            .map_err(|e| Invalid::new("netbox.url", e.to_string()))?;
        if setup.secrets.netbox_token.is_blank() {
            return Err(BuildError::Failed(format!(
                "netbox_token in {} is empty",
                setup.settings.secrets_file.display()
            )));
        }
        let api = setup.checks.reporter(
            "netbox_api",
            CheckOutcome::pending(format!("NetBox at {} not checked yet", base.as_str())),
        );
        Ok(Self {
            sources: setup
                .config
                .sources
                .all()
                .iter()
                .map(|(n, s)| (*n, s.enabled))
                .collect(),
            base,
            token: setup.secrets.netbox_token,
            timeout: Duration::from_secs(setup.config.netbox.timeout_s),
            api,
            last: Mutex::new(None),
        })
    }
}

impl Worker for NetboxAgent {
    async fn probe(&self) {
        self.check_netbox().await;
    }

    async fn cycle(&self, ctx: &CycleContext) -> Result<CycleReport, CycleError> {
        let result = self.check_netbox().await;
        if let Some(e) = result.error() {
            return Err(e);
        }
        if ctx.is_cancelled() {
            return Err(CycleError::Cancelled);
        }
        let enabled = self.sources.iter().filter(|(_, on)| *on).count();
        let version = match &result {
            ApiCheck::Ok { version, .. } => version.as_str(),
            _ => "?",
        };
        Ok(CycleReport::ok(format!(
            "NetBox {version} reachable, token accepted; {enabled} discovery sources enabled{}",
            if ctx.dry_run { " (dry run)" } else { "" }
        ))
        .counter("sources_enabled", enabled as u64)
        .counter("netbox_writes", 0))
    }

    fn status(&self) -> serde_json::Value {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (result, at) = match last.as_ref() {
            None => (serde_json::Value::Null, None),
            Some((
                ApiCheck::Ok {
                    version,
                    api_version,
                    workers,
                },
                at,
            )) => (
                serde_json::json!({"ok": true, "netbox_version": version, "api_version": api_version, "rq_workers_running": workers}),
                Some(at.clone()),
            ),
            Some((other, at)) => (
                serde_json::json!({"ok": false, "error": other.error().map(|e| e.to_string())}),
                Some(at.clone()),
            ),
        };
        serde_json::json!({
            "netbox": {"url": self.base.as_str(), "last_check": result, "last_checked_at": at},
            "sources": self.sources.iter().map(|(n, on)| {
                (n.to_string(), serde_json::json!({"enabled": on, "state": if *on { "enabled" } else { "disabled" }}))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }
}
