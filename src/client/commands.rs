//! The commands: one function per `1ldctl` subcommand, each returning the
//! exit status or a [`ClientError`].
//!
//! Invariants: `--json` prints the daemon's JSON unchanged (decoded into
//! [`serde_json::Value`], not re-encoded from our types, so fields a newer
//! daemon adds are kept); operations are submitted through
//! [`progress::submit`] (subscribe first, then follow); a command whose
//! route the daemon does not serve fails with the daemon's 404.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use clap::CommandFactory;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::cli::{AppsCmd, Cli, Command, DeployArgs, OpsArgs, Shell, TargetArgs, TemplateCmd};
use super::error::{ClientError, EXIT_FAILED, EXIT_OK};
use super::http::{encode, query, Client};
use super::render::{self, deployments as rd};
use super::{progress, spec, Output};
use crate::api::{
    AdoptRequest, AppCatalog, AppInfo, ApplyPreview, ApplyRequest, DeployRequest, Deployment,
    HostInfo, OpLogChunk, Operation, Plan, SettingKind, TemplateRequest,
};

/// The client's version.
pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs one parsed command line; the exit status.
pub async fn run(cli: Cli, out: &Output) -> u8 {
    let client = Client::new(&cli.global.socket).with_trace(cli.global.verbose >= 2);
    match dispatch(cli.command, &client, out).await {
        Ok(code) => code,
        Err(e) => {
            out.error(&e);
            e.exit_code()
        }
    }
}

async fn dispatch(cmd: Command, c: &Client, out: &Output) -> Result<u8, ClientError> {
    match cmd {
        Command::Version => version(c, out).await,
        Command::Host => host(c, out).await,
        Command::Notify { cmd } => super::notify::run(c, out, cmd).await,
        Command::Ops(a) => ops(c, out, &a).await,
        Command::Op { id, wait, log } => op(c, out, &id, wait, log).await,
        Command::Cancel { id } => cancel(c, out, &id).await,
        Command::Events {
            follow,
            after,
            types,
        } => {
            let types: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
            events(c, out, follow, after, &types).await
        }
        Command::Template {
            cmd:
                TemplateCmd::Download {
                    template,
                    storage,
                    no_wait,
                },
        } => {
            let req = TemplateRequest { storage, template };
            let op = progress::submit(c, out, no_wait, || c.download_template(&req)).await?;
            finish_op(out, op, no_wait)
        }
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "1ldctl", &mut buf);
            out.print(&String::from_utf8_lossy(&buf));
            Ok(EXIT_OK)
        }
        Command::Doctor => doctor(c, out).await,
        Command::Apps { cmd } => apps(c, out, cmd).await,
        Command::Ls => ls(c, out).await,
        Command::Status { name } => status(c, out, &name).await,
        Command::Start(t) => action(c, out, &t, "start").await,
        Command::Stop(t) => action(c, out, &t, "stop").await,
        Command::Restart(t) => action(c, out, &t, "restart").await,
        Command::Destroy { target, yes } => destroy(c, out, &target, yes).await,
        Command::Logs {
            name,
            follow,
            lines,
        } => logs(c, out, &name, follow, lines).await,
        Command::Health { name, since } => health(c, out, &name, &since).await,
        Command::Backup {
            name,
            storage,
            protected,
            no_wait,
        } => backup(c, out, &name, storage, protected, no_wait).await,
        Command::Backups { name } => backups(c, out, name.as_deref()).await,
        Command::Restore {
            volid,
            in_place,
            name,
            no_wait,
        } => restore(c, out, &volid, in_place, name, no_wait).await,
        Command::Verify { volid, no_wait } => verify(c, out, &volid, no_wait).await,
        Command::Upgrade {
            name,
            all,
            dry_run,
            to_version,
            force,
            no_wait,
        } => {
            let req = crate::api::UpgradeRequest {
                to_version,
                dry_run,
                force,
            };
            upgrade(c, out, name.as_deref(), all, &req, no_wait).await
        }
        Command::Adopt {
            vmid,
            app,
            name,
            no_wait,
        } => adopt(c, out, AdoptRequest { vmid, app, name }, no_wait).await,
        Command::Deploy(a) => deploy(c, out, a).await,
        Command::Apply {
            file,
            dry_run,
            no_wait,
        } => apply(c, out, &file, dry_run, no_wait).await,
    }
}

/// Decodes `v` as `T`, or says the daemon answered something else.
fn typed<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v).map_err(|e| ClientError::Protocol {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// `GET path`: printed as JSON, or decoded and rendered.
async fn show<T: DeserializeOwned>(
    c: &Client,
    out: &Output,
    path: &str,
    render: impl FnOnce(&T) -> String,
) -> Result<u8, ClientError> {
    let v: Value = c.get(path).await?;
    if out.json {
        out.json_value(&v);
    } else {
        let t: T = typed(&format!("GET {path}"), v)?;
        out.print(&render(&t));
    }
    Ok(EXIT_OK)
}

/// After an operation: JSON of the operation, or a line; the exit status
/// (1 unless it succeeded, or was only accepted with `--no-wait`).
fn finish_op(out: &Output, op: Operation, no_wait: bool) -> Result<u8, ClientError> {
    if out.json {
        out.json_value(&serde_json::to_value(&op).unwrap_or(Value::Null));
    } else if no_wait {
        out.say(&format!(
            "operation {} ({}) accepted; follow it with: 1ldctl op {} --wait",
            op.id, op.kind, op.id
        ));
    }
    if out.json && op.status.is_final() && op.status != crate::api::OpStatus::Succeeded {
        return Ok(EXIT_FAILED);
    }
    progress::outcome(op).map(|_| EXIT_OK)
}

async fn version(c: &Client, out: &Output) -> Result<u8, ClientError> {
    let daemon = c.root().await;
    if out.json {
        let v = serde_json::json!({
            "client": {"version": CLIENT_VERSION},
            "daemon": daemon.as_ref().ok(),
        });
        out.json_value(&v);
    } else {
        out.print(&render::version(
            CLIENT_VERSION,
            daemon.as_ref().ok(),
            out.style(),
        ));
    }
    daemon.map(|_| EXIT_OK)
}

async fn host(c: &Client, out: &Output) -> Result<u8, ClientError> {
    show::<HostInfo>(c, out, "/v1/host", |h| render::host(h, out.style())).await
}

async fn ops(c: &Client, out: &Output, a: &OpsArgs) -> Result<u8, ClientError> {
    let q = query(&[
        ("status", a.status.clone()),
        ("kind", a.kind.clone()),
        ("target", a.target.clone()),
        ("limit", a.limit.map(|l| l.to_string())),
    ]);
    show::<Vec<Operation>>(c, out, &format!("/v1/operations{q}"), |o| {
        render::ops_table(o, out.style())
    })
    .await
}

/// The whole log from `offset` on, as one chunk.
async fn read_log(c: &Client, id: &str) -> Result<OpLogChunk, ClientError> {
    let mut all = OpLogChunk {
        lines: Vec::new(),
        next_offset: 0,
        complete: false,
    };
    loop {
        let chunk = c.op_log(id, all.next_offset).await?;
        let more = !chunk.lines.is_empty() && chunk.next_offset > all.next_offset;
        all.lines.extend(chunk.lines);
        all.next_offset = chunk.next_offset;
        all.complete = chunk.complete;
        if !more {
            return Ok(all);
        }
    }
}

async fn op(c: &Client, out: &Output, id: &str, wait: bool, log: bool) -> Result<u8, ClientError> {
    if wait {
        let op = progress::attach(c, out, id, log && !out.json).await?;
        if out.json {
            let mut v = serde_json::to_value(&op).unwrap_or(Value::Null);
            if log {
                let chunk = read_log(c, id).await?;
                v = serde_json::json!({"operation": v, "log": chunk});
            }
            out.json_value(&v);
            return Ok(if op.status == crate::api::OpStatus::Succeeded {
                EXIT_OK
            } else {
                EXIT_FAILED
            });
        }
        out.print(&render::op_detail(&op, out.style()));
        return progress::outcome(op).map(|_| EXIT_OK);
    }
    if log {
        let chunk = read_log(c, id).await?;
        if out.json {
            out.json_value(&serde_json::to_value(&chunk).unwrap_or(Value::Null));
        } else {
            let mut text = chunk.lines.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            out.print(&text);
        }
        return Ok(EXIT_OK);
    }
    show::<Operation>(c, out, &format!("/v1/operations/{}", encode(id)), |o| {
        render::op_detail(o, out.style())
    })
    .await
}

async fn cancel(c: &Client, out: &Output, id: &str) -> Result<u8, ClientError> {
    let v: Value = c.delete(&format!("/v1/operations/{}", encode(id))).await?;
    if out.json {
        out.json_value(&v);
    } else {
        let op: Operation = typed("DELETE /v1/operations/{id}", v)?;
        out.say(&format!(
            "cancel requested for operation {} ({}); it is {} — follow it with: 1ldctl op {} --wait",
            op.id,
            op.kind,
            render::status_name(op.status),
            op.id
        ));
    }
    Ok(EXIT_OK)
}

async fn events(
    c: &Client,
    out: &Output,
    follow: bool,
    after: Option<u64>,
    types: &[&str],
) -> Result<u8, ClientError> {
    let q = query(&[
        ("type", (!types.is_empty()).then(|| types.join(","))),
        ("after", after.map(|a| a.to_string())),
        ("follow", (!follow).then(|| "false".to_string())),
    ]);
    let mut lines = c.lines(&format!("/v1/events{q}")).await?;
    let mut printed = 0usize;
    let mut sigint = progress::ctrl_c()?;
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l?,
            _ = sigint.recv() => return Ok(EXIT_OK),
        };
        let Some(line) = line else {
            if follow && !out.json {
                eprintln!("1ldctl: the event stream ended (the daemon stopped?)");
            } else if printed == 0 && !out.json {
                out.say("no recent events; follow the live stream with `1ldctl events -f`");
            }
            return Ok(EXIT_OK);
        };
        if line.trim().is_empty() {
            continue;
        }
        printed += 1;
        if out.json {
            out.print(&format!("{line}\n"));
        } else {
            let e: crate::api::Event = typed(
                "GET /v1/events",
                serde_json::from_str(&line).map_err(|e| ClientError::Protocol {
                    what: "GET /v1/events".into(),
                    detail: e.to_string(),
                })?,
            )?;
            out.print(&render::event_line(&e, out.style()));
        }
    }
}

// ---- doctor ----------------------------------------------------------------

#[derive(serde::Serialize)]
struct Check {
    name: &'static str,
    status: &'static str,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

fn check(name: &'static str, status: &'static str, detail: String, fix: Option<String>) -> Check {
    Check {
        name,
        status,
        detail,
        fix,
    }
}

async fn doctor(c: &Client, out: &Output) -> Result<u8, ClientError> {
    let mut checks = Vec::new();
    let root = c.root().await;
    match &root {
        Ok(r) => {
            checks.push(check(
                "daemon",
                "ok",
                format!(
                    "1ldd {} answers on {}",
                    r.daemon_version,
                    c.socket().display()
                ),
                None,
            ));
            checks.push(if r.daemon_version == CLIENT_VERSION {
                check(
                    "versions",
                    "ok",
                    format!("client and daemon {CLIENT_VERSION}"),
                    None,
                )
            } else {
                check(
                    "versions",
                    "warn",
                    format!("client {CLIENT_VERSION}, daemon {}", r.daemon_version),
                    Some("install the same 1ld version for both (apt upgrade 1ld)".into()),
                )
            });
        }
        Err(e) => checks.push(check("daemon", "fail", e.to_string(), e.hint())),
    }
    if root.is_ok() {
        checks.push(socket_check(c));
        // An admin-only read of a missing operation: 404 for admins, 403 for viewers.
        checks.push(match c.op_log("doctor-role-probe", 0).await {
            Err(ClientError::Api { status: 404, .. }) | Ok(_) => {
                check("role", "ok", "admin: may read and change".into(), None)
            }
            Err(e @ ClientError::Api { status: 403, .. }) => {
                check("role", "warn", "viewer: read-only".into(), e.hint())
            }
            Err(e) => check("role", "warn", format!("unknown: {e}"), None),
        });
        match c.host().await {
            Ok(h) => host_checks(&h, &mut checks),
            Err(e) => checks.push(check("proxmox tools", "fail", e.to_string(), e.hint())),
        }
    }
    checks.push(agents_check());
    let failed = checks.iter().any(|c| c.status == "fail");
    if out.json {
        out.json_value(&serde_json::json!({ "checks": checks, "ok": !failed }));
    } else {
        let rows: Vec<Vec<render::Cell>> = checks
            .iter()
            .map(|k| {
                vec![
                    render::Cell::new(k.name),
                    render::Cell::toned(k.status, render::word_tone(k.status)),
                    render::Cell::new(match &k.fix {
                        Some(f) => format!("{} — fix: {f}", k.detail),
                        None => k.detail.clone(),
                    }),
                ]
            })
            .collect();
        out.print(&render::table(
            &["CHECK", "STATUS", "DETAIL"],
            &rows,
            out.style(),
        ));
    }
    Ok(if failed { EXIT_FAILED } else { EXIT_OK })
}

fn socket_check(c: &Client) -> Check {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    match std::fs::metadata(c.socket()) {
        Ok(m) => {
            let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(m.gid()))
                .ok()
                .flatten()
                .map(|g| g.name)
                .unwrap_or_else(|| m.gid().to_string());
            let mode = m.permissions().mode() & 0o777;
            let status = if mode & 0o007 != 0 { "warn" } else { "ok" };
            check(
                "socket",
                status,
                format!("{} mode {mode:04o} group {group}", c.socket().display()),
                (status == "warn").then(|| {
                    "others can connect: set `[api] group` and restart 1ld (the socket should be 0660)"
                        .to_string()
                }),
            )
        }
        Err(e) => check("socket", "warn", format!("cannot stat: {e}"), None),
    }
}

/// `ok` listing what was `found`, or `fail` saying what is `missing` and how
/// to `fix` it.
fn found(name: &'static str, found: &[String], missing: &str, fix: &str) -> Check {
    if found.is_empty() {
        check(name, "fail", missing.into(), Some(fix.into()))
    } else {
        check(name, "ok", found.join(", "), None)
    }
}

fn host_checks(h: &HostInfo, checks: &mut Vec<Check>) {
    checks.push(check(
        "proxmox tools",
        "ok",
        format!("Proxmox VE {} on node {}", h.pve.version, h.pve.node),
        None,
    ));
    let with = |content: &str| -> Vec<String> {
        h.storages
            .iter()
            .filter(|s| s.content.iter().any(|c| c == content) && s.state == "active")
            .map(|s| s.name.clone())
            .collect()
    };
    checks.push(found(
        "container storage",
        &with("rootdir"),
        "no active storage with content type rootdir",
        "pvesm set <storage> --content rootdir,... (or add one)",
    ));
    checks.push(found(
        "template storage",
        &with("vztmpl"),
        "no active storage with content type vztmpl",
        "pvesm set local --content vztmpl,...",
    ));
    checks.push(found(
        "bridge",
        &h.bridges,
        "no Linux bridge for guests",
        "create vmbr0 in /etc/network/interfaces (Proxmox docs: network)",
    ));
    let family = "debian-12-standard";
    let downloaded = h
        .templates
        .downloaded
        .iter()
        .find(|t| t.volid.contains(family));
    let available = h
        .templates
        .available
        .iter()
        .find(|t| t.name.starts_with(family));
    checks.push(match (downloaded, available) {
        (Some(t), _) => check("template", "ok", t.volid.clone(), None),
        (None, Some(t)) => check(
            "template",
            "ok",
            format!("{} downloadable (a deploy downloads it)", t.name),
            None,
        ),
        (None, None) => check(
            "template",
            "fail",
            format!("no {family} template downloaded or in the appliance index"),
            Some("pveam update".into()),
        ),
    });
    for w in &h.warnings {
        checks.push(check("host", "warn", w.clone(), None));
    }
}

fn agents_check() -> Check {
    let dir = std::path::Path::new(crate::paths::DEFAULT_AGENTS_DIR);
    let want = ["netbox-agent", "wikijs-integration"];
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|a| !dir.join(a).is_file())
        .collect();
    if missing.is_empty() {
        check(
            "agents",
            "ok",
            format!("{}: {}", dir.display(), want.join(", ")),
            None,
        )
    } else {
        check(
            "agents",
            "warn",
            format!("missing in {}: {}", dir.display(), missing.join(", ")),
            Some("reinstall the 1ld package (apt install --reinstall 1ld)".into()),
        )
    }
}

// ---- apps and deployments --------------------------------------------------

async fn apps(c: &Client, out: &Output, cmd: Option<AppsCmd>) -> Result<u8, ClientError> {
    match cmd {
        None => show::<AppCatalog>(c, out, "/v1/apps", |a| rd::catalog(a, out.style())).await,
        Some(AppsCmd::Show { app }) => {
            show::<AppInfo>(c, out, &format!("/v1/apps/{}", encode(&app)), |a| {
                rd::app(a, out.style())
            })
            .await
        }
    }
}

async fn ls(c: &Client, out: &Output) -> Result<u8, ClientError> {
    show::<Vec<Deployment>>(c, out, "/v1/deployments", |d| rd::list(d, out.style())).await
}

async fn status(c: &Client, out: &Output, name: &str) -> Result<u8, ClientError> {
    // Asked by a person: the host now and one probe, not the snapshot.
    let path = format!("/v1/deployments/{}?live=true", encode(name));
    let v: Value = c.get(&path).await?;
    if out.json {
        out.json_value(&v);
        return Ok(EXIT_OK);
    }
    let d: Deployment = typed(&format!("GET {path}"), v)?;
    let recent: Vec<Operation> = c
        .get(&format!(
            "/v1/operations{}",
            query(&[
                ("target", Some(format!("ct/{}", d.vmid))),
                ("limit", Some("5".into()))
            ])
        ))
        .await
        .unwrap_or_default();
    out.print(&rd::status(&d, &recent, out.style()));
    Ok(EXIT_OK)
}

async fn health(c: &Client, out: &Output, name: &str, since: &str) -> Result<u8, ClientError> {
    let path = format!(
        "/v1/deployments/{}/health{}",
        encode(name),
        query(&[("since", Some(since.to_string()))])
    );
    let v: Value = c.get(&path).await?;
    if out.json {
        out.json_value(&v);
        return Ok(EXIT_OK);
    }
    let h: crate::api::DeploymentHealth = typed(&format!("GET {path}"), v)?;
    out.print(&rd::health(&h, out.style()));
    Ok(EXIT_OK)
}

/// Submits a deployment operation (`POST`/`PUT`/`DELETE` answering 202 +
/// operation) and follows it.
async fn submit_op(
    c: &Client,
    out: &Output,
    no_wait: bool,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Operation, ClientError> {
    progress::submit(c, out, no_wait, || async {
        let v: Value = c.call(method.clone(), path, body).await?;
        typed(&format!("{method} {path}"), v)
    })
    .await
}

async fn action(c: &Client, out: &Output, t: &TargetArgs, verb: &str) -> Result<u8, ClientError> {
    let path = format!("/v1/deployments/{}/{verb}", encode(&t.name));
    let op = submit_op(c, out, t.no_wait, hyper::Method::POST, &path, None).await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, t.no_wait)?;
    if done && !out.json {
        let past = match verb {
            "start" => "started",
            "stop" => "stopped",
            _ => "restarted",
        };
        out.say(&format!("{} {past}", t.name));
    }
    Ok(code)
}

async fn backup(
    c: &Client,
    out: &Output,
    name: &str,
    storage: Option<String>,
    protected: bool,
    no_wait: bool,
) -> Result<u8, ClientError> {
    let req = crate::api::BackupRequest {
        policy: crate::api::BackupPolicy {
            storage,
            protected: protected.then_some(true),
            ..Default::default()
        },
    };
    let body = serde_json::to_vec(&req).map_err(|e| ClientError::Usage(e.to_string()))?;
    let path = format!("/v1/deployments/{}/backups", encode(name));
    let op = submit_op(c, out, no_wait, hyper::Method::POST, &path, Some(body)).await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, no_wait)?;
    if done && !out.json {
        out.say(&format!("{name} backed up (see `1ldctl backups {name}`)"));
    }
    Ok(code)
}

async fn restore(
    c: &Client,
    out: &Output,
    volid: &str,
    in_place: bool,
    name: Option<String>,
    no_wait: bool,
) -> Result<u8, ClientError> {
    let req = crate::api::RestoreRequest {
        mode: if in_place {
            crate::api::RestoreMode::InPlace
        } else {
            crate::api::RestoreMode::New
        },
        name,
    };
    let body = serde_json::to_vec(&req).map_err(|e| ClientError::Usage(e.to_string()))?;
    let path = format!("/v1/backups/{}/restore", encode(volid));
    let op = submit_op(c, out, no_wait, hyper::Method::POST, &path, Some(body)).await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, no_wait)?;
    if done && !out.json {
        out.say(&format!("{volid} restored"));
    }
    Ok(code)
}

async fn upgrade(
    c: &Client,
    out: &Output,
    name: Option<&str>,
    all: bool,
    req: &crate::api::UpgradeRequest,
    no_wait: bool,
) -> Result<u8, ClientError> {
    let names: Vec<String> = match (name, all) {
        (Some(n), _) => vec![n.to_string()],
        (None, _) => c
            .get::<Vec<Deployment>>("/v1/deployments")
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect(),
    };
    let mut previews = Vec::new();
    for n in &names {
        let dry = crate::api::UpgradeRequest {
            dry_run: true,
            ..req.clone()
        };
        let p: crate::api::UpgradePreview = c
            .post(&format!("/v1/deployments/{}/upgrade", encode(n)), &dry)
            .await?;
        previews.push(p);
    }
    if req.dry_run {
        if out.json {
            out.json_value(&serde_json::to_value(&previews).unwrap_or(Value::Null));
        } else {
            out.print(&rd::upgrade_plans(&previews));
        }
        return Ok(EXIT_OK);
    }
    let mut code = EXIT_OK;
    let mut done = Vec::new();
    for p in previews
        .iter()
        .filter(|p| !p.up_to_date || (name.is_some() && req.force))
    {
        let path = format!("/v1/deployments/{}/upgrade", encode(&p.name));
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Usage(e.to_string()))?;
        let r = match submit_op(c, out, no_wait, hyper::Method::POST, &path, Some(body)).await {
            Ok(op) => {
                let ok = op.status == crate::api::OpStatus::Succeeded;
                done.push(serde_json::to_value(&op).unwrap_or(Value::Null));
                let r = if out.json {
                    Ok(if ok || no_wait { EXIT_OK } else { EXIT_FAILED })
                } else {
                    finish_op(out, op, no_wait)
                };
                if ok && !out.json {
                    out.say(&format!(
                        "{}: {} {} → {}",
                        p.name, p.app, p.from_version, p.to_version
                    ));
                }
                r
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(c) if c != EXIT_OK => code = c,
            Ok(_) => {}
            // One failed upgrade does not stop the others under --all.
            Err(e) if all => {
                eprintln!("{}: {e}", p.name);
                code = e.exit_code();
            }
            Err(e) => return Err(e),
        }
    }
    if out.json {
        out.json_value(&Value::Array(done));
    } else if previews.iter().all(|p| p.up_to_date) && !(name.is_some() && req.force) {
        out.say(&match name {
            Some(n) => format!("{n} already runs the version this node ships"),
            None => "every deployment runs the version this node ships".into(),
        });
    }
    Ok(code)
}

async fn verify(c: &Client, out: &Output, volid: &str, no_wait: bool) -> Result<u8, ClientError> {
    let path = format!("/v1/backups/{}/verify", encode(volid));
    let op = submit_op(c, out, no_wait, hyper::Method::POST, &path, None).await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, no_wait)?;
    if done && !out.json {
        out.say(&format!(
            "{volid} verified: it restores and passes its self-check"
        ));
    }
    Ok(code)
}

async fn backups(c: &Client, out: &Output, name: Option<&str>) -> Result<u8, ClientError> {
    let path = format!(
        "/v1/backups{}",
        query(&[("deployment", name.map(str::to_string))])
    );
    let v: Value = c.get(&path).await?;
    if out.json {
        out.json_value(&v);
        return Ok(EXIT_OK);
    }
    let list: Vec<crate::api::BackupInfo> = typed(&format!("GET {path}"), v)?;
    out.print(&rd::backups(&list, out.style()));
    Ok(EXIT_OK)
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

async fn destroy(c: &Client, out: &Output, t: &TargetArgs, yes: bool) -> Result<u8, ClientError> {
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(ClientError::Usage(format!(
                "refusing to destroy '{}' without --yes (stdin is not a terminal to ask on)",
                t.name
            )));
        }
        if !confirm(&format!(
            "destroy deployment '{}' and its container? Backups are kept; this cannot be undone.",
            t.name
        )) {
            out.say("not destroyed");
            return Ok(EXIT_OK);
        }
    }
    let path = format!("/v1/deployments/{}", encode(&t.name));
    let op = submit_op(c, out, t.no_wait, hyper::Method::DELETE, &path, None).await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, t.no_wait)?;
    if done && !out.json {
        out.say(&format!("{} destroyed", t.name));
    }
    Ok(code)
}

async fn logs(
    c: &Client,
    out: &Output,
    name: &str,
    follow: bool,
    lines: Option<u32>,
) -> Result<u8, ClientError> {
    let q = query(&[
        ("follow", follow.then(|| "true".to_string())),
        ("lines", lines.map(|n| n.to_string())),
    ]);
    let mut stream = c
        .lines(&format!("/v1/deployments/{}/logs{q}", encode(name)))
        .await?;
    let mut sigint = progress::ctrl_c()?;
    loop {
        let line = tokio::select! {
            l = stream.next_line() => l?,
            _ = sigint.recv() => return Ok(EXIT_OK),
        };
        let Some(line) = line else {
            return Ok(EXIT_OK);
        };
        if out.json {
            out.print(&format!("{line}\n"));
            continue;
        }
        // NDJSON entries show their message; plain text as is.
        let text = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| {
                let msg = v
                    .get("line")
                    .or_else(|| v.get("message"))
                    .or_else(|| v.get("MESSAGE"))?
                    .as_str()?
                    .to_string();
                let time = v
                    .get("time")
                    .and_then(|t| t.as_str())
                    .map(|t| format!("{}  ", render::short_time(t)))
                    .unwrap_or_default();
                Some(format!("{time}{msg}"))
            })
            .unwrap_or(line);
        out.print(&format!("{text}\n"));
    }
}

async fn adopt(
    c: &Client,
    out: &Output,
    req: AdoptRequest,
    no_wait: bool,
) -> Result<u8, ClientError> {
    let body = serde_json::to_vec(&req).map_err(|e| ClientError::Usage(e.to_string()))?;
    let path = "/v1/deployments/adopt";
    let stream = if no_wait {
        None
    } else {
        Some(c.events(&["operation"]).await?)
    };
    let v: Value = c.call(hyper::Method::POST, path, Some(body)).await?;
    // An operation (202) or the recorded deployment (200).
    if let Ok(op) = serde_json::from_value::<Operation>(v.clone()) {
        let op = if no_wait {
            op
        } else {
            progress::follow(c, out, op, stream, false).await?
        };
        return finish_op(out, op, no_wait);
    }
    if out.json {
        out.json_value(&v);
    } else {
        let d: Deployment = typed("POST /v1/deployments/adopt", v)?;
        out.say(&format!(
            "adopted CT {} as deployment '{}' ({} {})",
            d.vmid, d.name, d.app, d.app_version
        ));
    }
    Ok(EXIT_OK)
}

/// Converts `--set` values by the app's schema (bools and ints typed, the
/// rest strings); refuses secret keys given with `--set`.
fn typed_settings(
    app: Option<&AppInfo>,
    set: &[(String, String)],
) -> Result<BTreeMap<String, Value>, ClientError> {
    let mut out = BTreeMap::new();
    for (k, v) in set {
        let info = app.and_then(|a| a.settings.iter().find(|s| &s.key == k));
        if info.is_some_and(|i| i.secret) {
            return Err(ClientError::Usage(format!(
                "setting '{k}' is a secret: give it with --secret {k}=@FILE or --secret {k}=- \
                 (never on the command line)"
            )));
        }
        let value = match info.map(|i| i.kind) {
            Some(SettingKind::Bool) => match v.as_str() {
                "true" | "yes" | "1" => Value::Bool(true),
                "false" | "no" | "0" => Value::Bool(false),
                _ => Value::String(v.clone()),
            },
            Some(SettingKind::Int) => v
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(v.clone())),
            _ => Value::String(v.clone()),
        };
        out.insert(k.clone(), value);
    }
    Ok(out)
}

async fn deploy(c: &Client, out: &Output, a: DeployArgs) -> Result<u8, ClientError> {
    // Before anything else: a literal secret is refused without a request.
    let secret_args = a
        .secret
        .iter()
        .map(|s| super::cli::parse_secret(s).map_err(ClientError::Usage))
        .collect::<Result<Vec<_>, _>>()?;
    let from_file = match &a.file {
        Some(f) => {
            let mut specs = spec::load(f)?;
            if specs.len() != 1 {
                return Err(ClientError::Usage(format!(
                    "{} declares {} deployments; deploy takes one (use `1ldctl apply -f`)",
                    f.display(),
                    specs.len()
                )));
            }
            specs.pop()
        }
        None => None,
    }
    .unwrap_or_default();
    let app = a.app.clone().or(from_file.app.clone()).ok_or_else(|| {
        ClientError::Usage("which app? `1ldctl deploy APP` (see `1ldctl apps`)".into())
    })?;
    let info: Option<AppInfo> = c.get(&format!("/v1/apps/{}", encode(&app))).await.ok();
    let mut settings = spec::settings_json(&from_file)?;
    settings.extend(typed_settings(info.as_ref(), &a.set)?);
    let mut secrets = from_file.secrets.clone();
    secrets.extend(spec::read_secrets(&secret_args)?);
    let mut overrides = from_file.overrides.clone();
    overrides.cores = a.cores.or(overrides.cores);
    overrides.memory = a.memory.or(overrides.memory);
    overrides.disk = a.disk.or(overrides.disk);
    overrides.vmid = a.vmid.or(overrides.vmid);
    overrides.storage = a.storage.clone().or(overrides.storage);
    overrides.bridge = a.bridge.clone().or(overrides.bridge);
    let req = DeployRequest {
        app,
        name: a.name.clone().or(from_file.name.clone()),
        settings,
        secrets,
        overrides,
        backup: from_file.backup.clone(),
        dry_run: a.dry_run,
        keep_on_failure: a.keep_on_failure,
    };
    let body = serde_json::to_vec(&req).map_err(|e| ClientError::Usage(e.to_string()))?;
    if a.dry_run {
        let v: Value = c
            .call(hyper::Method::POST, "/v1/deployments", Some(body))
            .await?;
        if out.json {
            out.json_value(&v);
        } else {
            let plan: Plan = typed("POST /v1/deployments (dry run)", v)?;
            out.print(&rd::plan(&plan, out.style()));
        }
        return Ok(EXIT_OK);
    }
    let op = submit_op(
        c,
        out,
        a.no_wait,
        hyper::Method::POST,
        "/v1/deployments",
        Some(body),
    )
    .await?;
    let done = op.status == crate::api::OpStatus::Succeeded;
    let code = finish_op(out, op, a.no_wait)?;
    if done && !out.json {
        let name = req.name.clone().unwrap_or(req.app.clone());
        match c
            .get::<Deployment>(&format!("/v1/deployments/{}", encode(&name)))
            .await
        {
            Ok(d) => out.say(&format!(
                "deployed {} ({} {}) in CT {}{}; health: {}",
                d.name,
                d.app,
                d.app_version,
                d.vmid,
                d.ip.map(|ip| format!(" at {ip}")).unwrap_or_default(),
                rd::health_name(d.health.status)
            )),
            Err(_) => out.say(&format!("deployed {name}")),
        }
    }
    Ok(code)
}

async fn apply(
    c: &Client,
    out: &Output,
    file: &std::path::Path,
    dry_run: bool,
    no_wait: bool,
) -> Result<u8, ClientError> {
    let specs = spec::load(file)?;
    let mut code = EXIT_OK;
    let mut json_out = Vec::new();
    for s in specs {
        let app = s.app.clone().ok_or_else(|| {
            ClientError::Usage(format!("{}: a deployment without `app`", file.display()))
        })?;
        let name = s.name.clone().unwrap_or(app.clone());
        let mut req = ApplyRequest {
            app,
            settings: spec::settings_json(&s)?,
            secrets: s.secrets.clone(),
            overrides: s.overrides.clone(),
            backup: s.backup.clone(),
            dry_run: true,
            keep_on_failure: false,
        };
        let path = format!("/v1/deployments/{}", encode(&name));
        let body =
            |r: &ApplyRequest| serde_json::to_vec(r).map_err(|e| ClientError::Usage(e.to_string()));
        let v: Value = c.call(hyper::Method::PUT, &path, Some(body(&req)?)).await?;
        let preview: Result<ApplyPreview, _> = serde_json::from_value(v.clone());
        let unchanged = preview
            .as_ref()
            .map(|p| p.create.is_none() && p.changes.is_empty())
            .unwrap_or(false);
        if !out.json {
            match &preview {
                Ok(p) => out.print(&rd::preview(p, out.style())),
                Err(_) => out.say(&format!("= {name}: up to date")),
            }
        }
        if dry_run || unchanged || preview.is_err() {
            json_out.push(v);
            continue;
        }
        req.dry_run = false;
        let op = submit_op(
            c,
            out,
            no_wait,
            hyper::Method::PUT,
            &path,
            Some(body(&req)?),
        )
        .await;
        match op {
            Ok(op) => {
                if op.status.is_final() && op.status != crate::api::OpStatus::Succeeded {
                    code = EXIT_FAILED;
                    if !out.json {
                        out.error(&ClientError::OperationFailed {
                            id: op.id.clone(),
                            kind: op.kind.clone(),
                            status: op.status,
                            error: op.error.clone(),
                        });
                    }
                }
                json_out.push(serde_json::to_value(&op).unwrap_or(Value::Null));
            }
            Err(e) => return Err(e),
        }
    }
    if out.json {
        out.json_value(&Value::Array(json_out));
    }
    Ok(code)
}
