//! The agent: builds from config and secrets, and its work cycle.
//!
//! The cycle today is the NetBox check (reported as the `netbox_api` health
//! check) followed by the enabled sources, of which there are none yet: the
//! default config scans nothing, and `Config::validate` refuses enabling a
//! source that does not exist.

use std::time::Duration;

use agent_runtime::config::Invalid;
use agent_runtime::health::LastCheck;
use agent_runtime::http_client::BaseUrl;
use agent_runtime::run::{AgentInfo, BuildError, Setup};
use agent_runtime::{
    Agent, CycleContext, CycleError, CycleReport, Reporter, Secret, ServiceConfig, Worker,
};

use crate::config::{Config, Secrets};
use crate::netbox::{self, ApiCheck};

/// The netbox-agent.
pub struct NetboxAgent {
    base: BaseUrl,
    token: Secret,
    timeout: Duration,
    api: Reporter,
    last: LastCheck<ApiCheck>,
    sources: Vec<(&'static str, bool)>,
}

impl NetboxAgent {
    async fn check_netbox(&self) -> ApiCheck {
        let result = netbox::check(&self.base, &self.token, self.timeout).await;
        self.api.set(result.outcome(self.base.as_str()));
        self.last.record(&result);
        result
    }
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
        let (base, api) = setup.upstream(
            "netbox.url",
            &setup.config.netbox.url,
            "netbox_token",
            &setup.secrets.netbox_token,
            "netbox_api",
            "NetBox",
        )?;
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
            last: LastCheck::default(),
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
        let (result, at) = self.last.status(|check| match check {
            ApiCheck::Ok {
                version,
                api_version,
                workers,
            } => Ok(
                serde_json::json!({"ok": true, "netbox_version": version, "api_version": api_version, "rq_workers_running": workers}),
            ),
            other => Err(other.error().map(|e| e.to_string())),
        });
        serde_json::json!({
            "netbox": {"url": self.base.as_str(), "last_check": result, "last_checked_at": at},
            "sources": self.sources.iter().map(|(n, on)| {
                (n.to_string(), serde_json::json!({"enabled": on, "state": if *on { "enabled" } else { "disabled" }}))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }
}
