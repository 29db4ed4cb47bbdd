//! `GET /metrics`: Prometheus text format. Per deployment: the supervised
//! state, container up, last success, probe latency histogram,
//! remediations; operations by kind and outcome; the notification queue;
//! host commands started;
//! supervisor rounds; process memory and CPU; build info. Reads memory and
//! the store only (no host call), so a scrape is cheap.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::api::HealthState;
use crate::error::Error;
use crate::metrics::{process_stats, Exposition, Kind};
use crate::server::Ctx;
use crate::supervise::LATENCY_BUCKETS;

/// The metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "metrics",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String)))]
pub async fn get_metrics(State(ctx): State<Arc<Ctx>>) -> Result<Response, Error> {
    let app = &ctx.app;
    let sup = &app.supervisor;
    let live = sup.live();
    let rows = app.store.supervision_all()?;
    let deployments = app.store.list_deployments()?;
    let mut e = Exposition::new();
    let version = env!("CARGO_PKG_VERSION");
    e.family(
        "oneld_build_info",
        "The daemon's version (always 1).",
        Kind::Gauge,
    )
    .sample("oneld_build_info", &[("version", version)], 1.0);
    e.family("oneld_deployments", "Deployments recorded.", Kind::Gauge)
        .sample("oneld_deployments", &[], deployments.len() as f64);

    e.family(
        "oneld_deployment_health_state",
        "1 for the deployment's supervised state, 0 for the others.",
        Kind::Gauge,
    );
    for d in &deployments {
        let state = rows.get(&d.name).map(|r| r.state);
        for s in HealthState::ALL {
            e.sample(
                "oneld_deployment_health_state",
                &[
                    ("deployment", &d.name),
                    ("app", &d.app),
                    ("state", s.as_str()),
                ],
                if state == Some(s) { 1.0 } else { 0.0 },
            );
        }
    }
    e.family(
        "oneld_deployment_container_up",
        "1 when the deployment's container runs (as last read by the supervisor).",
        Kind::Gauge,
    );
    for (name, l) in &live {
        if let Some(up) = l.container_up {
            e.sample(
                "oneld_deployment_container_up",
                &[("deployment", name), ("app", &l.app)],
                if up { 1.0 } else { 0.0 },
            );
        }
    }
    e.family(
        "oneld_deployment_last_success_timestamp_seconds",
        "When a probe last passed (healthy or degraded), unix seconds.",
        Kind::Gauge,
    );
    for (name, l) in &live {
        if let Some(ms) = l.last_up_ms {
            e.sample(
                "oneld_deployment_last_success_timestamp_seconds",
                &[("deployment", name), ("app", &l.app)],
                ms as f64 / 1000.0,
            );
        }
    }
    e.family(
        "oneld_probe_duration_seconds",
        "Health probe latency since the daemon started.",
        Kind::Histogram,
    );
    for (name, l) in &live {
        if l.latency.count > 0 {
            e.histogram(
                "oneld_probe_duration_seconds",
                &[("deployment", name)],
                LATENCY_BUCKETS,
                &l.latency.counts,
                l.latency.sum,
                l.latency.count,
            );
        }
    }
    e.family(
        "oneld_remediations_total",
        "Remediations the supervisor started since the daemon started, by action.",
        Kind::Counter,
    );
    for (name, l) in &live {
        for (action, n) in &l.remediations {
            e.sample(
                "oneld_remediations_total",
                &[("deployment", name), ("action", action)],
                *n as f64,
            );
        }
    }
    e.family(
        "oneld_operations",
        "Operations kept in the store (see [ops] retention_days), by kind and status.",
        Kind::Gauge,
    );
    for (kind, status, n) in app.store.op_counts()? {
        e.sample(
            "oneld_operations",
            &[("kind", &kind), ("status", &status)],
            n as f64,
        );
    }
    e.family(
        "oneld_host_commands_total",
        "Host commands (pct, vzdump, ...) started since the daemon started.",
        Kind::Counter,
    );
    let spawned = app
        .pve
        .as_ref()
        .map(|p| p.runner().spawned_total())
        .unwrap_or_default();
    for (program, n) in spawned {
        e.sample(
            "oneld_host_commands_total",
            &[("program", &program)],
            n as f64,
        );
    }
    let q = app.notifier.stats()?;
    e.family(
        "oneld_notifications",
        "Notifications in the queue by status (pending is the queue depth).",
        Kind::Gauge,
    );
    for (status, n) in [
        ("pending", q.pending),
        ("delivered", q.delivered),
        ("failed", q.failed),
    ] {
        e.sample("oneld_notifications", &[("status", status)], n as f64);
    }
    let st = sup.stats();
    e.family(
        "oneld_supervisor_rounds_total",
        "Supervision rounds run.",
        Kind::Counter,
    )
    .sample(
        "oneld_supervisor_rounds_total",
        &[("source", &st.source)],
        st.rounds as f64,
    );
    e.family(
        "oneld_supervisor_probes_total",
        "Health results recorded.",
        Kind::Counter,
    )
    .sample("oneld_supervisor_probes_total", &[], st.probes as f64);
    e.family(
        "oneld_supervisor_host_read_errors_total",
        "Rounds whose container-state read failed.",
        Kind::Counter,
    )
    .sample(
        "oneld_supervisor_host_read_errors_total",
        &[],
        st.host_read_errors as f64,
    );
    e.family(
        "oneld_supervisor_round_seconds",
        "How long the last supervision round took.",
        Kind::Gauge,
    )
    .sample("oneld_supervisor_round_seconds", &[], st.last_round_secs);
    if let Some((rss, cpu)) = process_stats() {
        e.family(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Kind::Gauge,
        )
        .sample("process_resident_memory_bytes", &[], rss as f64);
        e.family(
            "process_cpu_seconds_total",
            "User and system CPU time spent in seconds.",
            Kind::Counter,
        )
        .sample("process_cpu_seconds_total", &[], cpu);
    }
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
        - app.started.elapsed().as_secs_f64();
    e.family(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        Kind::Gauge,
    )
    .sample("process_start_time_seconds", &[], start.floor());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        e.finish(),
    )
        .into_response())
}
