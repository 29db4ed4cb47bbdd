//! The agent: builds from config and secrets; its work cycle runs the due
//! sources, merges what they found and syncs it into NetBox.
//!
//! Scheduling: the runtime's loop ticks every `service.interval_s` (the
//! incremental sync interval). On each tick every enabled source whose own
//! `interval_s` has passed (0: every tick) runs; the others contribute what
//! they found last time. A source that fails keeps its last good result and
//! is not *authoritative* this cycle, so nothing of its is orphaned; the
//! other sources go on. Every tick syncs creates and updates; every
//! `sync.full_sync_interval_s` the sync is *full* and also orphans and
//! prunes. A change to an inventory file (mtime or size, checked every
//! `watch_interval_s`) triggers a cycle at once. Cycles never overlap (the
//! runtime's loop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use agent_runtime::config::Invalid;
use agent_runtime::health::LastCheck;
use agent_runtime::run::{AgentInfo, BuildError, Setup};
use agent_runtime::server::{AgentRequest, AgentResponse};
use agent_runtime::{
    Agent, CheckOutcome, CycleContext, CycleError, CycleReport, Reporter, Secret, ServiceConfig,
    TriggerHandle, Worker,
};
use http_body_util::Full;
use hyper::body::Bytes;

use crate::client::Client;
use crate::config::{
    Config, HomeAssistantConfig, ProxmoxConfig, ScanConfig, Secrets, TruenasConfig,
};
use crate::model::{merge, Host, Source};
use crate::netbox::{self, ApiCheck};
use crate::sources::{homeassistant, inventory, proxmox, scan, truenas};
use crate::sync::{self, Counts, SyncSettings};
use crate::transport::Endpoint;

/// Per-source state kept between cycles.
#[derive(Debug)]
struct SourceState {
    source: Source,
    interval: Duration,
    last_run: Option<Instant>,
    last_run_at: Option<String>,
    last_duration_ms: u64,
    last_error: Option<String>,
    /// The last good result (used while the source fails or is not due).
    cached: Option<Vec<Host>>,
    last: Counts,
    total: Counts,
    runs: u64,
    failures: u64,
    reporter: Reporter,
    extra: serde_json::Value,
}

#[derive(Debug, Default)]
struct Shared {
    sources: Vec<SourceState>,
    last_full: Option<Instant>,
    last_sync: Option<serde_json::Value>,
    last_plan: Vec<String>,
    conflicts: Vec<String>,
    syncs: u64,
    netbox_requests: u64,
    netbox_writes: u64,
    last_sync_duration_ms: u64,
    inventory_fp: Vec<Option<(std::time::SystemTime, u64)>>,
    netbox_up: bool,
}

/// The netbox-agent.
pub struct NetboxAgent {
    base: Endpoint,
    token: Secret,
    timeout: Duration,
    api: Reporter,
    last: LastCheck<ApiCheck>,
    client: Client,
    settings: SyncSettings,
    full_every: Duration,
    scan: ScanConfig,
    inventory_files: Vec<PathBuf>,
    proxmox: ProxmoxConfig,
    proxmox_secret: Option<Secret>,
    home_assistant: HomeAssistantConfig,
    ha_token: Option<Secret>,
    truenas: TruenasConfig,
    truenas_key: Option<Secret>,
    shared: Mutex<Shared>,
}

impl NetboxAgent {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn check_netbox(&self) -> ApiCheck {
        let result = netbox::check(&self.base, &self.token, self.timeout).await;
        self.api.set(result.outcome(self.base.as_str()));
        self.last.record(&result);
        self.lock().netbox_up = matches!(result, ApiCheck::Ok { .. });
        result
    }

    async fn run_source(&self, source: Source) -> Result<(Vec<Host>, serde_json::Value), String> {
        match source {
            Source::Inventory => inventory::load(&self.inventory_files)
                .map(|h| (h, serde_json::json!({"files": self.inventory_files})))
                .map_err(|e| e.to_string()),
            Source::NetworkScan => {
                let r = scan::scan(&self.scan).await?;
                let extra = serde_json::json!({
                    "targets": r.targets, "packets": r.packets, "hosts_up": r.found.len(),
                    "scan_ms": r.took.as_millis() as u64, "icmp": r.icmp.to_string(),
                });
                Ok((scan::hosts(&r), extra))
            }
            Source::Proxmox => {
                let base = Endpoint::parse(&self.proxmox.url, self.proxmox.ca_file.as_deref())?;
                let secret = self
                    .proxmox_secret
                    .as_ref()
                    .ok_or("proxmox_token_secret is missing from the secrets file")?;
                let px = proxmox::Proxmox {
                    base: &base,
                    token_id: &self.proxmox.token_id,
                    secret,
                    timeout: self.timeout,
                    cluster: self.proxmox.cluster.as_deref(),
                };
                px.discover().await.map(|h| (h, serde_json::Value::Null))
            }
            Source::HomeAssistant => {
                let base = Endpoint::parse(
                    &self.home_assistant.url,
                    self.home_assistant.ca_file.as_deref(),
                )?;
                let token = self
                    .ha_token
                    .as_ref()
                    .ok_or("home_assistant_token is missing from the secrets file")?;
                let ha = homeassistant::HomeAssistant {
                    base: &base,
                    token,
                    timeout: self.timeout,
                    prefix_length: self.home_assistant.prefix_length,
                };
                ha.discover().await.map(|h| (h, serde_json::Value::Null))
            }
            Source::Truenas => {
                let base = Endpoint::parse(&self.truenas.url, self.truenas.ca_file.as_deref())?;
                let key = self
                    .truenas_key
                    .as_ref()
                    .ok_or("truenas_api_key is missing from the secrets file")?;
                let tn = truenas::Truenas {
                    base: &base,
                    key,
                    timeout: self.timeout,
                    api: self.truenas.api,
                };
                tn.discover()
                    .await
                    .map(|(h, api)| (h, serde_json::json!({"api": api})))
            }
        }
    }

    /// Prometheus text of the counters.
    fn metrics(&self) -> String {
        let st = self.lock();
        let mut out = String::new();
        let mut family = |name: &str, help: &str, kind: &str, rows: Vec<(String, u64)>| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in rows {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        let per = |f: fn(&Counts) -> u64| -> Vec<(String, u64)> {
            st.sources
                .iter()
                .map(|s| (format!("{{source=\"{}\"}}", s.source.name()), f(&s.total)))
                .collect()
        };
        family(
            "netbox_agent_objects_created_total",
            "NetBox objects created",
            "counter",
            per(|c| c.created),
        );
        family(
            "netbox_agent_objects_updated_total",
            "NetBox objects updated",
            "counter",
            per(|c| c.updated),
        );
        family(
            "netbox_agent_objects_orphaned_total",
            "NetBox objects tagged orphaned",
            "counter",
            per(|c| c.orphaned),
        );
        family(
            "netbox_agent_objects_pruned_total",
            "NetBox objects deleted",
            "counter",
            per(|c| c.pruned),
        );
        family(
            "netbox_agent_errors_total",
            "failed writes, read-back mismatches and conflicts",
            "counter",
            per(|c| c.errors),
        );
        let seen: Vec<(String, u64)> = st
            .sources
            .iter()
            .map(|s| (format!("{{source=\"{}\"}}", s.source.name()), s.last.seen))
            .collect();
        family(
            "netbox_agent_hosts_seen",
            "hosts the source reported in its last run",
            "gauge",
            seen,
        );
        let ok: Vec<(String, u64)> = st
            .sources
            .iter()
            .map(|s| {
                (
                    format!("{{source=\"{}\"}}", s.source.name()),
                    u64::from(s.last_error.is_none() && s.runs > 0),
                )
            })
            .collect();
        family(
            "netbox_agent_source_up",
            "1 when the source's last run succeeded",
            "gauge",
            ok,
        );
        family(
            "netbox_agent_syncs_total",
            "syncs run",
            "counter",
            vec![(String::new(), st.syncs)],
        );
        family(
            "netbox_agent_netbox_requests_total",
            "requests sent to NetBox (retries included)",
            "counter",
            vec![(String::new(), st.netbox_requests)],
        );
        family(
            "netbox_agent_netbox_write_requests_total",
            "write requests sent to NetBox",
            "counter",
            vec![(String::new(), st.netbox_writes)],
        );
        family(
            "netbox_agent_last_sync_duration_ms",
            "duration of the last sync",
            "gauge",
            vec![(String::new(), st.last_sync_duration_ms)],
        );
        let up = u64::from(st.netbox_up);
        family(
            "netbox_agent_netbox_up",
            "1 when NetBox answered with the token accepted",
            "gauge",
            vec![(String::new(), up)],
        );
        out
    }
}

fn today(now: time::OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    )
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
        // As `Setup::upstream`, with https allowed (`transport`).
        let base = Endpoint::parse(
            &setup.config.netbox.url,
            setup.config.netbox.ca_file.as_deref(),
        )
        .map_err(|e| Invalid::new("netbox.url", e))?;
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
        let cfg = setup.config;
        if cfg.sources.proxmox.enabled
            && setup
                .secrets
                .proxmox_token_secret
                .as_ref()
                .is_none_or(Secret::is_blank)
        {
            return Err(BuildError::Failed(format!(
                "sources.proxmox is enabled but proxmox_token_secret in {} is missing or empty",
                setup.settings.secrets_file.display()
            )));
        }
        if cfg.sources.truenas.enabled
            && setup
                .secrets
                .truenas_api_key
                .as_ref()
                .is_none_or(Secret::is_blank)
        {
            return Err(BuildError::Failed(format!(
                "sources.truenas is enabled but truenas_api_key in {} is missing or empty",
                setup.settings.secrets_file.display()
            )));
        }
        if cfg.sources.home_assistant.enabled
            && setup
                .secrets
                .home_assistant_token
                .as_ref()
                .is_none_or(Secret::is_blank)
        {
            return Err(BuildError::Failed(format!(
                "sources.home_assistant is enabled but home_assistant_token in {} is missing or empty",
                setup.settings.secrets_file.display()
            )));
        }
        let timeout = Duration::from_secs(cfg.netbox.timeout_s);
        let client = Client::new(
            base.clone(),
            setup.secrets.netbox_token.clone(),
            timeout,
            cfg.netbox.max_attempts,
            Duration::from_millis(cfg.netbox.retry_backoff_ms),
        );
        let mut sources = Vec::new();
        for (source, enabled, interval) in [
            (
                Source::Inventory,
                cfg.sources.inventory.enabled,
                cfg.sources.inventory.interval_s,
            ),
            (
                Source::Proxmox,
                cfg.sources.proxmox.enabled,
                cfg.sources.proxmox.interval_s,
            ),
            (
                Source::Truenas,
                cfg.sources.truenas.enabled,
                cfg.sources.truenas.interval_s,
            ),
            (
                Source::HomeAssistant,
                cfg.sources.home_assistant.enabled,
                cfg.sources.home_assistant.interval_s,
            ),
            (
                Source::NetworkScan,
                cfg.sources.network_scan.enabled,
                cfg.sources.network_scan.interval_s,
            ),
        ] {
            if !enabled {
                continue;
            }
            let reporter = setup.checks.reporter(
                format!("source_{}", source.name()),
                CheckOutcome::pending(format!("{} has not run yet", source.name())),
            );
            sources.push(SourceState {
                source,
                interval: Duration::from_secs(interval),
                last_run: None,
                last_run_at: None,
                last_duration_ms: 0,
                last_error: None,
                cached: None,
                last: Counts::default(),
                total: Counts::default(),
                runs: 0,
                failures: 0,
                reporter,
                extra: serde_json::Value::Null,
            });
        }
        let files = cfg.sources.inventory.files.clone();
        if cfg.sources.inventory.enabled && !setup.self_check {
            spawn_watch(
                files.clone(),
                Duration::from_secs(cfg.sources.inventory.watch_interval_s),
                setup.trigger.clone(),
            );
        }
        Ok(Self {
            base,
            token: setup.secrets.netbox_token,
            timeout,
            api,
            last: LastCheck::default(),
            client,
            settings: SyncSettings {
                site: cfg.sync.site.clone(),
                tag: cfg.sync.tag.clone(),
                batch_size: cfg.netbox.batch_size,
                prune: cfg.sync.prune,
                prune_after_days: cfg.sync.prune_after_days,
                adopt_existing: cfg.sync.adopt_existing,
            },
            full_every: Duration::from_secs(cfg.sync.full_sync_interval_s),
            scan: cfg.sources.network_scan,
            inventory_files: files.clone(),
            proxmox: cfg.sources.proxmox,
            proxmox_secret: setup.secrets.proxmox_token_secret,
            home_assistant: cfg.sources.home_assistant,
            ha_token: setup.secrets.home_assistant_token,
            truenas: cfg.sources.truenas,
            truenas_key: setup.secrets.truenas_api_key,
            shared: Mutex::new(Shared {
                sources,
                inventory_fp: inventory::fingerprint(&files),
                ..Shared::default()
            }),
        })
    }
}

/// Polls the inventory files' mtime and size; a change requests a cycle.
fn spawn_watch(files: Vec<PathBuf>, every: Duration, trigger: TriggerHandle) {
    tokio::spawn(async move {
        let mut last = inventory::fingerprint(&files);
        loop {
            tokio::time::sleep(every).await;
            let now = inventory::fingerprint(&files);
            if now != last {
                last = now;
                tracing::info!("an inventory file changed; requesting a sync");
                if !trigger.trigger("inventory") {
                    return;
                }
            }
        }
    });
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
        if self.lock().sources.is_empty() {
            // No source: no desired state, and nothing in NetBox is touched
            // (not even the agent's tags).
            return Ok(CycleReport::ok(format!(
                "NetBox reachable, token accepted; no discovery source enabled, nothing to sync{}",
                if ctx.dry_run { " (dry run)" } else { "" }
            ))
            .counter("sources_enabled", 0)
            .counter("netbox_writes", 0));
        }
        // 1. Run the due sources.
        let fp_now = inventory::fingerprint(&self.inventory_files);
        let due: Vec<Source> = {
            let st = self.lock();
            let inv_changed = st.inventory_fp != fp_now;
            st.sources
                .iter()
                .filter(|s| {
                    s.last_run.is_none_or(|t| t.elapsed() >= s.interval)
                        || s.last_error.is_some()
                        || (s.source == Source::Inventory && inv_changed)
                })
                .map(|s| s.source)
                .collect()
        };
        let mut authoritative = BTreeSet::new();
        for source in due {
            if ctx.is_cancelled() {
                return Err(CycleError::Cancelled);
            }
            let started = Instant::now();
            let r = self.run_source(source).await;
            let mut st = self.lock();
            if source == Source::Inventory {
                st.inventory_fp = fp_now.clone();
            }
            let Some(s) = st.sources.iter_mut().find(|s| s.source == source) else {
                continue;
            };
            s.last_run = Some(Instant::now());
            s.last_run_at = Some(agent_runtime::health::rfc3339(
                time::OffsetDateTime::now_utc(),
            ));
            s.last_duration_ms = started.elapsed().as_millis() as u64;
            s.runs += 1;
            match r {
                Ok((hosts, extra)) => {
                    let mut msg = format!("{} ran ok: {} hosts", source.name(), hosts.len());
                    if let Some(icmp) = extra.get("icmp").and_then(|v| v.as_str()) {
                        msg.push_str(&format!("; {icmp}"));
                    }
                    s.reporter.set(CheckOutcome::healthy(msg));
                    s.last_error = None;
                    s.cached = Some(hosts);
                    s.extra = extra;
                    authoritative.insert(source);
                }
                Err(e) => {
                    s.failures += 1;
                    s.reporter.set(CheckOutcome::degraded(format!(
                        "{} failed: {e}{}",
                        source.name(),
                        if s.cached.is_some() {
                            " (keeping its last good result; nothing of it is orphaned)"
                        } else {
                            ""
                        }
                    )));
                    tracing::warn!(source = source.name(), "source failed: {e}");
                    s.last_error = Some(e);
                }
            }
        }
        // Sources that were not due this time but whose last run was good
        // still count as authoritative for orphaning: their data is current.
        let (hosts, full, failed) = {
            let st = self.lock();
            for s in &st.sources {
                if s.last_error.is_none() && s.cached.is_some() {
                    authoritative.insert(s.source);
                }
            }
            let hosts: Vec<Host> = st
                .sources
                .iter()
                .filter_map(|s| s.cached.clone())
                .flatten()
                .collect();
            let full = st.last_full.is_none_or(|t| t.elapsed() >= self.full_every);
            let failed: Vec<String> = st
                .sources
                .iter()
                .filter_map(|s| {
                    s.last_error
                        .as_ref()
                        .map(|e| format!("{}: {e}", s.source.name()))
                })
                .collect();
            (hosts, full, failed)
        };
        let hosts = merge(hosts);
        // 2. Sync.
        let now = time::OffsetDateTime::now_utc();
        let req = sync::SyncRequest {
            hosts,
            authoritative,
            full,
            today: today(now),
            now,
            dry_run: ctx.dry_run,
        };
        let started = Instant::now();
        let requests_before = self.client.requests();
        let writes_before = self.client.writes();
        let outcome = sync::run(&self.client, &self.settings, &req)
            .await
            .map_err(|e| CycleError::Upstream {
                service: "NetBox".into(),
                detail: e.to_string(),
            })?;
        let took = started.elapsed();
        let requests = self.client.requests() - requests_before;
        let writes = self.client.writes() - writes_before;
        if ctx.dry_run {
            println!(
                "dry run: {} change(s) planned, nothing written",
                outcome.plan.len()
            );
            for line in &outcome.plan {
                println!("  {line}");
            }
        }
        for line in &outcome.plan {
            tracing::info!(dry_run = ctx.dry_run, "{line}");
        }
        for c in &outcome.conflicts {
            tracing::warn!("conflict: {c}");
        }
        for e in &outcome.errors {
            tracing::warn!("sync error: {e}");
        }
        let mut st = self.lock();
        if full && !ctx.dry_run {
            st.last_full = Some(Instant::now());
        }
        st.syncs += 1;
        st.netbox_requests += requests;
        st.netbox_writes += writes;
        st.last_sync_duration_ms = took.as_millis() as u64;
        for s in &mut st.sources {
            let c = outcome.counts.get(&s.source).cloned().unwrap_or_default();
            s.total.seen = c.seen;
            s.total.created += c.created;
            s.total.updated += c.updated;
            s.total.orphaned += c.orphaned;
            s.total.pruned += c.pruned;
            s.total.errors += c.errors;
            s.last = c;
        }
        let total: Counts = outcome.counts.values().fold(Counts::default(), |mut a, c| {
            a.seen += c.seen;
            a.created += c.created;
            a.updated += c.updated;
            a.orphaned += c.orphaned;
            a.pruned += c.pruned;
            a.errors += c.errors;
            a
        });
        st.last_plan = outcome.plan.iter().take(500).cloned().collect();
        st.conflicts = outcome.conflicts.iter().take(200).cloned().collect();
        st.last_sync = Some(serde_json::json!({
            "at": agent_runtime::health::rfc3339(now),
            "full": full,
            "dry_run": ctx.dry_run,
            "duration_ms": took.as_millis() as u64,
            "netbox_requests": requests,
            "netbox_write_requests": writes,
            "objects_written": outcome.writes,
            "planned_changes": outcome.plan.len(),
            "conflicts": outcome.conflicts.len(),
            "errors": outcome.errors.iter().take(50).collect::<Vec<_>>(),
        }));
        drop(st);
        let summary = format!(
            "{} hosts; {} created, {} updated, {} orphaned, {} pruned, {} conflicts, {} errors; {requests} NetBox requests ({writes} writes){}{}",
            total.seen, total.created, total.updated, total.orphaned, total.pruned, outcome.conflicts.len(), outcome.errors.len(),
            if full { "; full sync" } else { "" },
            if ctx.dry_run { " (dry run: nothing written)" } else { "" },
        );
        let report = if outcome.errors.is_empty() && failed.is_empty() {
            CycleReport::ok(summary)
        } else {
            let mut s = summary;
            if !failed.is_empty() {
                s.push_str(&format!("; failed sources: {}", failed.join("; ")));
            }
            CycleReport::partial(s)
        };
        Ok(report
            .counter("hosts", total.seen)
            .counter("created", total.created)
            .counter("updated", total.updated)
            .counter("orphaned", total.orphaned)
            .counter("pruned", total.pruned)
            .counter("errors", total.errors)
            .counter("conflicts", outcome.conflicts.len() as u64)
            .counter("netbox_requests", requests)
            .counter("netbox_writes", writes))
    }

    fn status(&self) -> serde_json::Value {
        let (result, at) = self.last.status(|check| match check {
            ApiCheck::Ok { version, api_version, workers } => Ok(
                serde_json::json!({"ok": true, "netbox_version": version, "api_version": api_version, "rq_workers_running": workers}),
            ),
            other => Err(other.error().map(|e| e.to_string())),
        });
        let st = self.lock();
        let mut sources: BTreeMap<String, serde_json::Value> = Source::ALL
            .iter()
            .map(|s| {
                (
                    s.name().to_string(),
                    serde_json::json!({"enabled": false, "state": "disabled"}),
                )
            })
            .collect();
        for s in &st.sources {
            sources.insert(
                s.source.name().to_string(),
                serde_json::json!({
                    "enabled": true,
                    "state": if s.runs == 0 { "pending" } else if s.last_error.is_some() { "failed" } else { "ok" },
                    "interval_s": s.interval.as_secs(),
                    "last_run_at": s.last_run_at,
                    "last_duration_ms": s.last_duration_ms,
                    "last_error": s.last_error,
                    "runs": s.runs,
                    "failures": s.failures,
                    "last": s.last,
                    "total": s.total,
                    "details": s.extra,
                }),
            );
        }
        serde_json::json!({
            "netbox": {"url": self.base.as_str(), "last_check": result, "last_checked_at": at},
            "sources": sources,
            "last_sync": st.last_sync,
            "syncs": st.syncs,
            "last_plan": st.last_plan,
            "conflicts": st.conflicts,
        })
    }

    fn has_routes() -> bool {
        true
    }

    async fn route(&self, req: AgentRequest) -> Option<AgentResponse> {
        if req.path != "/metrics" || req.method != hyper::Method::GET {
            return None;
        }
        let mut resp = AgentResponse::new(Full::new(Bytes::from(self.metrics())));
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        Some(resp)
    }
}
