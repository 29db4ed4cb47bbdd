//! `fake-upstreams`: serves the fake NetBox, Wiki.js and (optionally) Home
//! Assistant on the given addresses until SIGTERM or SIGINT.
//!
//! ```text
//! fake-upstreams --netbox 10.213.7.1:8000 --wikijs 10.213.7.1:3000 \
//!     [--ha 10.213.7.1:8123] [--netbox-token-file F] [--wikijs-key-file F] [--ha-token-file F]
//!     [--wikijs-stateful]
//! ```
//!
//! `--wikijs-stateful` answers the Wiki.js page and asset API from the
//! stateful model (`wikijs_model`) instead of replaying, so
//! wikijs-integration can really sync into it (the sandbox end-to-end run).
//!
//! Addresses must be loopback or a sandbox bridge's host address (port 0
//! picks a free port). Credentials come from files (mode 0600/0400), never
//! from the command line, which `ps` shows. Once every listener is bound it
//! prints one line per fake, `<name> http://<addr>`, on stdout. Logs go to
//! stderr (`RUST_LOG`, default `info`); every unrecorded request is an
//! `ERROR` line and a 599. Exit: 0 after SIGTERM/SIGINT, 1 on a startup
//! error, 2 on a usage error.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fake_upstreams::{Error, Handle, HomeAssistant, NetBox, Secret, WikiJs};

/// Fake NetBox / Wiki.js / Home Assistant replaying real recorded transcripts.
#[derive(Debug, Parser)]
#[command(name = "fake-upstreams", version)]
#[command(group(clap::ArgGroup::new("upstreams").required(true).multiple(true).args(["netbox", "wikijs", "ha"])))]
struct Cli {
    /// Serve the fake NetBox here (e.g. 10.213.7.1:8000).
    #[arg(long, value_name = "ADDR")]
    netbox: Option<SocketAddr>,
    /// Serve the fake Wiki.js here (e.g. 10.213.7.1:3000).
    #[arg(long, value_name = "ADDR")]
    wikijs: Option<SocketAddr>,
    /// Serve the fake Home Assistant (REST) here (e.g. 10.213.7.1:8123).
    #[arg(long, value_name = "ADDR")]
    ha: Option<SocketAddr>,
    /// File holding a NetBox token to accept besides the fixtures' ones
    /// (`nbt_<key>.<secret>` or a 40-char legacy token); mode 0600/0400.
    #[arg(long, value_name = "FILE", requires = "netbox")]
    netbox_token_file: Option<PathBuf>,
    /// File holding a Wiki.js API key to accept as the admin key; mode 0600/0400.
    #[arg(long, value_name = "FILE", requires = "wikijs")]
    wikijs_key_file: Option<PathBuf>,
    /// Answer Wiki.js pages and assets from the stateful model (creates,
    /// updates, moves, uploads are kept in memory) instead of replaying.
    #[arg(long, requires = "wikijs")]
    wikijs_stateful: bool,
    /// File holding a Home Assistant token to accept; mode 0600/0400.
    #[arg(long, value_name = "FILE", requires = "ha")]
    ha_token_file: Option<PathBuf>,
}

fn secret(path: Option<&PathBuf>) -> Result<Option<Secret>, Error> {
    path.map(|p| Secret::from_file(p)).transpose()
}

async fn start(cli: &Cli) -> Result<Vec<Handle>, Error> {
    let mut handles = Vec::new();
    if let Some(addr) = cli.netbox {
        let mut fake = NetBox::new();
        if let Some(t) = secret(cli.netbox_token_file.as_ref())? {
            fake = fake.with_token(t);
        }
        handles.push(fake.serve(addr).await?);
    }
    if let Some(addr) = cli.wikijs {
        let mut fake = WikiJs::new();
        if let Some(k) = secret(cli.wikijs_key_file.as_ref())? {
            fake = fake.with_key(k);
        }
        if cli.wikijs_stateful {
            fake = fake.with_model(std::sync::Arc::new(fake_upstreams::WikiModel::new()));
        }
        handles.push(fake.serve(addr).await?);
    }
    if let Some(addr) = cli.ha {
        let mut fake = HomeAssistant::new();
        if let Some(t) = secret(cli.ha_token_file.as_ref())? {
            fake = fake.with_token(t);
        }
        handles.push(fake.serve(addr).await?);
    }
    Ok(handles)
}

async fn stop_signal() -> std::io::Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let handles = match start(&cli).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("fake-upstreams: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    for h in &handles {
        let _ = writeln!(out, "{} {}", h.name(), h.url());
    }
    let _ = out.flush();
    drop(out);
    match stop_signal().await {
        Ok(sig) => tracing::info!(signal = sig, "stopping"),
        Err(e) => {
            eprintln!("fake-upstreams: cannot wait for signals: {e}");
            return ExitCode::FAILURE;
        }
    }
    for h in handles {
        let unrecorded = h.unrecorded().len();
        if unrecorded > 0 {
            tracing::error!(
                upstream = h.name(),
                unrecorded,
                "requests were answered 599 during this run"
            );
        }
        h.shutdown().await;
    }
    ExitCode::SUCCESS
}
